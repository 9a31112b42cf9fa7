"""End-to-end tests of hooks (DESIGN.md §11, docs/hooks.md): [hook:NAME]
runs its command (exec, no shell) for matching events with the event as one
JSON line on stdin, as the configured user; one instance at a time, later
events queued up to max_queued and then dropped and counted; a hook that
hangs is killed after its timeout; a hook's failure never touches a pool."""
import json
import os
import pwd
import shutil
import subprocess
import unittest

import mpsuptest
from mpsuptest import Daemon, MPSUPD, wait_for


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f.read().splitlines()]
    except FileNotFoundError:
        return []


def info_hook(d, name):
    return [h for h in d.ok("daemon.info")["hooks"] if h["name"] == name][0]


class HooksTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.out = os.path.join(self.d.dir, "hook.out")

    def tearDown(self):
        self.d.cleanup()

    def start(self, extra):
        self.d.write_config(config_extra=extra)
        self.d.start()

    def test_receives_exactly_the_fatal_event(self):
        self.start("[hook:alert]\nevents = process.fatal\n"
                   "command = /bin/sh -c 'cat >> %s'\n"
                   "[pool:good]\ncommand = sleep 1000\nstart_secs = 0\n"
                   "[pool:bad]\ncommand = /bin/false\nstart_secs = 1\nstart_retries = 1\n"
                   % self.out)
        wait_for(lambda: len(lines(self.out)) == 1, what="the fatal event")
        # other process events happen meanwhile (good starts, stops); then a
        # second fatal pool: its line comes after, and nothing in between
        self.d.ok("proc.restart", target="good")
        self.d.ok("pool.add", pool="bad2", command="/bin/false", start_secs=1, start_retries=0)
        wait_for(lambda: len(lines(self.out)) == 2, what="the second fatal event")
        got = lines(self.out)
        self.assertEqual([(e["event"], e["name"], e["to"]) for e in got],
                         [("process.state", "bad:0", "fatal"),
                          ("process.state", "bad2:0", "fatal")])
        self.assertEqual(info_hook(self.d, "alert")["runs"], 2)
        self.assertEqual([r["state"] for r in self.d.ok("status", target="good")], ["running"])

    def test_queue_bound_and_drops(self):
        self.start("[hook:slow]\nevents = pool.*\nmax_queued = 2\n"
                   "command = /bin/sh -c 'cat >> %s; sleep %d'\n"
                   % (self.out, int(5 * mpsuptest.SCALE)))
        with self.d.client() as c:
            for i in range(6):
                c.ok("pool.add", pool="p%d" % i, command="sleep 1000", autostart=False)
        h = info_hook(self.d, "slow")
        self.assertEqual((h["running"], h["queued"], h["dropped"]), (True, 2, 3))
        s = self.d.ok("daemon.metrics")
        self.assertIn('mpsup_hook_events_dropped_total{hook="slow"} 3\n', s)
        # the queued ones run one after the other
        wait_for(lambda: len(lines(self.out)) == 3, timeout=60, what="three runs")
        self.assertEqual([e["pool"] for e in lines(self.out)], ["p0", "p1", "p2"])

    def test_hanging_hook_is_killed_and_pool_unaffected(self):
        self.start("[hook:hang]\nevents = pool.added\ntimeout = 1\n"
                   "command = /bin/sleep 1000\n"
                   "[hook:broken]\nevents = pool.added\ncommand = /nonexistent/hook\n"
                   "[hook:fails]\nevents = pool.added\ncommand = /bin/false\n")
        self.d.ok("pool.add", pool="web", command="sleep 1000", start_secs=0)
        wait_for(lambda: info_hook(self.d, "hang")["timeouts"] == 1, timeout=30,
                 what="the hung hook killed")
        wait_for(lambda: info_hook(self.d, "broken")["failures"] == 1, what="broken counted")
        wait_for(lambda: info_hook(self.d, "fails")["failures"] == 1, what="fails counted")
        h = info_hook(self.d, "hang")
        self.assertEqual((h["running"], h["runs"], h["failures"]), (False, 1, 1))
        self.assertEqual([r["state"] for r in self.d.ok("status", target="web")], ["running"])
        self.assertIn("hook hang: still running after 1 s; killed", self.d.read_log())

    @unittest.skipUnless(os.geteuid() == 0, "needs root (the hook runs as nobody)")
    def test_runs_as_the_configured_user(self):
        os.chmod(self.d.dir, 0o755)
        outdir = os.path.join(self.d.dir, "o")
        os.mkdir(outdir)
        os.chmod(outdir, 0o777)
        out = os.path.join(outdir, "id")
        self.start("[hook:who]\nevents = pool.added\nuser = nobody\n"
                   "command = /bin/sh -c 'id -u > %s; cat >> %s.json'\n" % (out, out))
        self.d.ok("pool.add", pool="web", command="sleep 1000", autostart=False)
        wait_for(lambda: os.path.exists(out + ".json") and lines(out + ".json"),
                 what="the hook's output")
        with open(out) as f:
            self.assertEqual(int(f.read()), pwd.getpwnam("nobody").pw_uid)
        self.assertEqual(lines(out + ".json")[0]["event"], "pool.added")


class HookConfigTest(unittest.TestCase):
    def check(self, section):
        d = Daemon(config_extra=section)
        try:
            p = subprocess.run([MPSUPD, "--check-config", d.conf], capture_output=True,
                               text=True, timeout=30)
            return p.returncode, p.stdout + p.stderr
        finally:
            shutil.rmtree(d.dir, ignore_errors=True)

    def test_errors(self):
        for section, want in [
                ("[hook:a]\nevents = process.fatal\ncommand = page-me\n", "command"),
                ("[hook:a]\nevents = Process.Fatal\ncommand = /bin/true\n", "events"),
                ("[hook:a]\nevents = process.fatal\ncommand = /bin/true\nshell = yes\n",
                 "shell"),
                ("[hook:a]\nevents = process.fatal\n", "command is missing"),
                ("[hook:a]\ncommand = /bin/true\n", "events is missing"),
                ("[hook:a]\nevents = x\ncommand = /bin/true\nuser = no-such-user-x\n",
                 "user")]:
            rc, out = self.check(section)
            self.assertNotEqual(rc, 0, section)
            self.assertIn(want, out, section)
            self.assertIn("mpsupd.conf", out, section)
        rc, out = self.check("[hook:a]\nevents = process.fatal pool.*\n"
                             "command = /usr/local/bin/page-oncall --urgent\n")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    mpsuptest.main()
