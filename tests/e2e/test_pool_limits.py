"""End-to-end tests of a pool's process limits: limit_* rlimits, nice and
oom_score_adj are applied in the child before exec (seen in /proc), bad
values are config errors naming file, line and key, and a limit the child
cannot get fails its start with the step as reason."""
import os
import subprocess

import mpsuptest
from mpsuptest import DaemonTestCase, Daemon, MPSUPD, wait_for

CONFIG = """
[pool:lim]
command = sleep 1000
start_secs = 0
limit_core = 0
limit_nproc = 300:400
limit_cpu = 3600:infinity
limit_stack = 1048576:4194304
limit_fsize = infinity
limit_memlock = 65536
limit_as = infinity
nice = 7
oom_score_adj = 300
[pool:plain]
command = sleep 1000
start_secs = 0
"""

ROWS = {"core": "Max core file size", "nproc": "Max processes", "cpu": "Max cpu time",
        "stack": "Max stack size", "fsize": "Max file size",
        "memlock": "Max locked memory", "as": "Max address space"}


def limits_of(pid):
    """/proc/PID/limits as {row name: (soft, hard)} (strings)."""
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        for line in f.readlines()[1:]:
            name = line[:26].strip()
            soft, hard = line[26:].split()[:2]
            out[name] = (soft, hard)
    return out


def nice_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def oom_of(pid):
    with open("/proc/%d/oom_score_adj" % pid) as f:
        return int(f.read())


class Limits(DaemonTestCase):
    config = CONFIG

    def pid(self, name):
        return wait_for(lambda: (lambda r: r["state"] == "running" and r["pid"])(
            self.d.ok("status", target=name)[0]), what=name + " running")

    def test_applied_before_exec(self):
        pid = self.pid("lim:0")
        lim = limits_of(pid)
        want = {"core": ("0", "0"), "nproc": ("300", "400"), "cpu": ("3600", "unlimited"),
                "stack": ("1048576", "4194304"), "fsize": ("unlimited", "unlimited"),
                "memlock": ("65536", "65536"), "as": ("unlimited", "unlimited")}
        for k, v in want.items():
            self.assertEqual(lim[ROWS[k]], v, k)
        self.assertEqual(nice_of(pid), 7 + os.getpriority(os.PRIO_PROCESS, self.d.pid()))
        self.assertEqual(oom_of(pid), 300)

    def test_unset_inherits(self):
        pid = self.pid("plain:0")
        self.assertEqual(nice_of(pid), nice_of(self.d.pid()))
        self.assertEqual(oom_of(pid), oom_of(self.d.pid()))
        self.assertEqual(limits_of(pid)[ROWS["core"]], limits_of(self.d.pid())[ROWS["core"]])

    def test_pool_add_and_bad_values(self):
        with self.d.client() as c:
            for key, bad in (("limit_core", "10:5"), ("limit_nproc", "x"), ("nice", "20"),
                             ("nice", "-21"), ("oom_score_adj", "1001"), ("limit_as", "-1"),
                             ("limit_stack", "99999999999999")):
                resp = c.call("pool.add", pool="bad", command="true", **{key: bad})
                self.assertFalse(resp["ok"], (key, bad))
                self.assertEqual(resp["error"]["code"], "bad_request", (key, bad))
                self.assertIn(key, resp["error"]["message"])
            c.ok("pool.add", pool="added", command="sleep 1000", start_secs=0, nice=3,
                 limit_core="1024")
        pid = self.pid("added:0")
        self.assertEqual(limits_of(pid)[ROWS["core"]], ("1024", "1024"))
        self.assertEqual(nice_of(pid), 3 + nice_of(self.d.pid()))

    def test_unobtainable_limit_fails_the_start(self):
        # a descriptor limit above fs.nr_open is refused even to root
        with self.d.client() as c:
            c.ok("pool.add", pool="huge", command="sleep 1000", start_secs=0,
                 start_retries=0, limit_nofile="1048576:%d" % (1 << 40))
        r = wait_for(lambda: (lambda r: r["state"] == "fatal" and r)(
            self.d.ok("status", target="huge:0")[0]), what="huge fatal")
        self.assertTrue(r["reason"].startswith("setrlimit: "), r)
        self.assertIn("setrlimit NOFILE: ", r["exit_status_text"])


class ConfigErrors(mpsuptest.unittest.TestCase):
    def check(self, line, key):
        d = Daemon("[pool:p]\ncommand = true\n%s\n" % line)
        try:
            p = subprocess.run([MPSUPD, "--check-config", d.conf], capture_output=True,
                               text=True)
            self.assertNotEqual(p.returncode, 0)
            with open(d.conf) as f:
                n = f.read().splitlines().index(line) + 1
            self.assertIn("%s:%d: [pool:p] %s:" % (d.conf, n, key), p.stderr)
            self.assertNotIn("unknown key", p.stderr)
        finally:
            d.cleanup()

    def test_errors_name_file_line_key(self):
        for line, key in (("limit_core = 5:1", "limit_core"), ("nice = high", "nice"),
                          ("oom_score_adj = -2000", "oom_score_adj"),
                          ("limit_cpu = 1:2:3", "limit_cpu")):
            self.check(line, key)


if __name__ == "__main__":
    mpsuptest.main()
