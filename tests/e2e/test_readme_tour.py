"""README.md's "A short tour of mpctl", run line by line against mpsupd
with conf/demo.conf, each line checked against what the README says it
does. A tour line this test does not know fails it: the README and the
test change together."""
import json
import os
import re
import shlex
import signal
import subprocess
import threading

import mpsuptest
from mpsuptest import MPCTL, SCALE, SRCDIR, DEFAULT_DEADLINE, Daemon, wait_for


def tour_lines():
    """The tour's command lines: [(line, [argv, ...])] (';' separates commands)."""
    with open(os.path.join(SRCDIR, "README.md")) as f:
        text = f.read()
    section = text[text.index("## A short tour of mpctl"):]
    section = section[:section.index("\n## ", 5)]
    out = []
    for line in section.splitlines():
        if not line.startswith("    mpctl"):
            continue
        code = re.split(r"\s+#", line.strip(), maxsplit=1)[0]
        lex = shlex.shlex(code, posix=True, punctuation_chars=";")
        lex.whitespace_split = True
        cmds = [[]]
        for tok in lex:
            if tok == ";":
                cmds.append([])
            else:
                cmds[-1].append(tok)
        out.append((code, cmds))
    return out


def demo_config():
    """conf/demo.conf without its [mpsupd] section (the test has its own
    socket): the pools, and the main keys as extra main settings."""
    with open(os.path.join(SRCDIR, "conf", "demo.conf")) as f:
        text = f.read()
    main, pools = text.split("[mpsupd]", 1)[1].split("\n[", 1)
    main = "\n".join(l for l in main.splitlines() if not l.startswith("socket"))
    return main, "[" + pools


class Tour(mpsuptest.unittest.TestCase):
    def setUp(self):
        main, pools = demo_config()
        self.d = Daemon(pools, main)
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def mpctl(self, argv, check=0):
        return self.d.mpctl(*argv[1:], check=check)

    def stream_first_line(self, argv, trigger=None):
        """Start a streaming command, return its first line, end it with ^C."""
        env = dict(self.d.env, MPSUP_SOCKET=self.d.socket)
        p = subprocess.Popen([MPCTL] + argv[1:], stdout=subprocess.PIPE, text=True, env=env)
        timer = threading.Timer(DEFAULT_DEADLINE, p.kill)
        timer.start()
        try:
            if trigger:
                trigger()
            line = p.stdout.readline()
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(), 0)
        finally:
            timer.cancel()
            p.stdout.close()
        return line

    def status(self, target):
        return self.d.ok("status", target=target)

    def running(self, name):
        r = self.status(name)[0]
        return r["pid"] if r["state"] == "running" else None

    def test_tour(self):
        lines = tour_lines()
        self.assertGreater(len(lines), 15)
        for code, cmds in lines:
            with self.subTest(line=code):
                check = getattr(self, "line_" + re.sub(r"\W+", "_", " ".join(cmds[0][1:3])).strip("_"),
                                None)
                self.assertIsNotNone(check, "README tour line without a check: " + code)
                check(code, cmds)

    # One method per tour line, named after its first command and argument.
    def line_hello(self, code, cmds):
        out = self.mpctl(cmds[0]).stdout
        self.assertRegex(out, r"(?m)^protocol: +1$")
        self.assertRegex(out, r"(?m)^capabilities: .*processes")

    def line_status(self, code, cmds):
        wait_for(lambda: self.running("clock:0") and self.running("clock:1"),
                 what="the clocks to run")
        out = self.mpctl(cmds[0]).stdout.splitlines()
        self.assertEqual(out[0].split()[:6], ["NAME", "STATE", "PID", "UPTIME", "EXIT",
                                             "RESTARTS"])
        names = [l.split()[0] for l in out[1:]]
        for n in ("clock:0", "clock:1", "flaky:0", "double:0", "double:1"):
            self.assertIn(n, names)

    def line_pools(self, code, cmds):
        out = self.mpctl(cmds[0]).stdout.splitlines()
        self.assertEqual(out[0].split()[:3], ["NAME", "MODE", "PROCESSES"])
        self.assertEqual(sorted(l.split()[0] for l in out[1:]), ["clock", "double", "flaky"])

    def line_logs_f(self, code, cmds):
        line = self.stream_first_line(cmds[0])
        self.assertRegex(line, r"^clock:[01] stdout \| clock [01]: \d\d:\d\d:\d\d$")

    def line_kill_clock_0(self, code, cmds):
        pid = wait_for(lambda: self.running("clock:0"), what="clock:0 to run")
        out = self.mpctl(cmds[0]).stdout.splitlines()
        row = dict(zip(out[0].split(), out[1].split()))
        self.assertEqual(row["NAME"], "clock:0")
        self.assertNotEqual(row["PID"], str(pid))
        new = wait_for(lambda: self.running("clock:0"), what="clock:0 to come back")
        self.assertNotEqual(new, pid)

    def line_scale_clock(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "pool clock: 4 processes\n")
        self.assertEqual(len(self.status("clock")), 4)

    def line_map_double(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "2\n4\n6\n")

    def line_run_name(self, code, cmds):
        self.assertRegex(self.mpctl(cmds[0]).stdout, r"^job \d+\n$")

    def line_join_job(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "3\n")
        self.assertEqual(self.mpctl(cmds[1]).stdout, "3\n")

    def line_value_add(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "1\n")

    def line_dict_set(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "")
        self.assertEqual(self.mpctl(cmds[1]).stdout, "fast\n")

    def line_dict_get(self, code, cmds):
        p = self.mpctl(cmds[0], check=1)
        self.assertEqual(p.stderr, "mpctl: not_found: no dict named cgf\n")
        self.assertNotIn("cgf", [o["name"] for o in self.d.ok("obj.list")])

    def line_queue_put(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "")
        self.assertEqual(self.mpctl(cmds[1]).stdout, '{"n":1}\n')

    def line_objects(self, code, cmds):
        out = self.mpctl(cmds[0]).stdout.splitlines()
        self.assertEqual(out[0].split(), ["NAME", "TYPE", "SIZE"])
        self.assertEqual([l.split()[:2] for l in out[1:]],
                         [["cfg", "dict"], ["hits", "value"], ["jobs", "queue"]])

    def line_events(self, code, cmds):
        def change():
            wait_for(lambda: self.d.ok("daemon.info")["subscribers"] >= 1,
                     what="the subscriber")
            self.d.ok("dict.set", name="cfg", key="mode", value="slow")
        line = self.stream_first_line(cmds[0], trigger=change)
        self.assertRegex(line, r"^\S+ object\.changed cfg type=dict op=set$")

    def line_info(self, code, cmds):
        self.assertRegex(self.mpctl(cmds[0]).stdout, r"(?m)^pid: +%d$" % self.d.pid())

    def line_json_status(self, code, cmds):
        records = json.loads(self.mpctl(cmds[0]).stdout)
        self.assertIn("clock:0", [r["name"] for r in records])

    def line_call_cmd_ping(self, code, cmds):
        self.assertEqual(json.loads(self.mpctl(cmds[0]).stdout),
                         {"id": None, "ok": True, "result": "pong"})

    def line_help_dict(self, code, cmds):
        out = self.mpctl(cmds[0]).stdout
        self.assertEqual(out, self.d.mpctl("dict", "-h", check=0).stdout)
        self.assertIn("  dict get NAME KEY [DEFAULT]\n", out)

    def line_help_dict_get(self, code, cmds):
        self.assertTrue(self.mpctl(cmds[0]).stdout.startswith(
            "dict.get (protocol command; role read, needs_object)\n"))

    def line_reload(self, code, cmds):
        # The config still says 2 clocks; the tour scaled to 4 at runtime:
        # a reload keeps that scale (the file's processes did not change).
        self.assertEqual(self.mpctl(cmds[0]).stdout, "no changes\n")
        self.assertEqual(len(self.status("clock")), 4)

    def line_shutdown(self, code, cmds):
        self.assertEqual(self.mpctl(cmds[0]).stdout, "mpsupd is shutting down\n")
        wait_for(lambda: self.d.proc.poll() is not None, what="mpsupd to exit")
        self.assertEqual(self.d.proc.returncode, 0)


if __name__ == "__main__":
    mpsuptest.main()
