"""End-to-end tests of the descriptor budget: a daemon started with a low
RLIMIT_NOFILE raises it to the hard limit, gives its workers the limit it
was started with (or the pool's limit_nofile), refuses a pool, a scale, a
reload or a one-shot that could not get its descriptors (code limit, with
the numbers) before spawning anything, costs nothing per worker whose
output goes to null, and retries a spawn that meets EMFILE instead of
marking the worker fatal."""
import os
import resource
import shutil
import signal
import subprocess

import mpsuptest
from mpsuptest import Daemon, DaemonTestCase, wait_for, DAEMON_WRAPPER, MPSUPD

SOFT, HARD = 256, 512


class LowLimitDaemon(Daemon):
    """A daemon started with RLIMIT_NOFILE = SOFT:HARD."""

    def start(self, wait=True):
        self.log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            DAEMON_WRAPPER + [MPSUPD, "-c", self.conf] + self.args,
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, cwd=self.dir,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD)))
        if wait:
            wait_for(self.answers, what="mpsupd to answer on %s" % self.socket)
        return self


def nofile_of(pid):
    """(soft, hard) 'Max open files' of a process, from /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no Max open files line for %d" % pid)


class LowLimitCase(DaemonTestCase):
    # few clients: the budget keeps a descriptor for each
    main_config = "max_clients = 16\n"

    def setUp(self):
        self.d = LowLimitDaemon(self.config, self.main_config)
        self.d.start()

    def status(self, c):
        return c.ok("status")

    def states(self, c):
        return sorted({p["state"] for p in self.status(c)})

    def all_running(self, c, n):
        st = self.status(c)
        fatal = [p for p in st if p["state"] == "fatal"]
        self.assertEqual(fatal, [], "a worker went fatal")
        return len(st) == n and all(p["state"] == "running" for p in st)

    def free(self, c):
        d = c.ok("daemon.info")["descriptors"]
        return d["limit"] - d["used"]


class RaisedLimit(LowLimitCase):
    config = ("[pool:plain]\ncommand = sleep 1000\nprocesses = 1\nstart_secs = 0\n"
              "[pool:own]\ncommand = sleep 1000\nprocesses = 1\nstart_secs = 0\n"
              "limit_nofile = 64:128\n")

    def test_daemon_raises_children_do_not_inherit(self):
        self.assertEqual(nofile_of(self.d.pid()), (HARD, HARD))
        self.assertRegex(self.d.read_log(),
                         r"descriptor limit \(RLIMIT_NOFILE\) raised from %d to %d" % (SOFT, HARD))
        with self.d.client() as c:
            wait_for(lambda: self.all_running(c, 2), what="both workers running")
            pids = {p["name"]: p["pid"] for p in self.status(c)}
            # the limit the daemon was started with, not the raised one
            self.assertEqual(nofile_of(pids["plain:0"]), (SOFT, HARD))
            # the pool's own limit_nofile
            self.assertEqual(nofile_of(pids["own:0"]), (64, 128))
            # a one-shot too
            r = c.ok("proc.run", argv=["sleep", "1000"])
            self.assertEqual(nofile_of(r["pid"]), (SOFT, HARD))
            c.ok("proc.kill", target=r["name"])

    def test_bad_limit_nofile_refused(self):
        with self.d.client() as c:
            for bad in ("0", "10:5", "x", "-1", "1:", "99999999999999"):
                resp = c.call("pool.add", pool="bad", command="true", limit_nofile=bad)
                self.assertFalse(resp["ok"], bad)
                self.assertEqual(resp["error"]["code"], "bad_request", bad)
            self.assertNotIn("bad", [p["pool"] for p in c.ok("pool.list")])


class Budget(LowLimitCase):

    def test_info_shows_the_budget(self):
        with self.d.client() as c:
            d = c.ok("daemon.info")["descriptors"]
        self.assertEqual(d["limit"], HARD)
        self.assertGreater(d["used"], 0)
        self.assertLess(d["used"], HARD)
        self.assertEqual(d["connections"], 16)
        self.assertEqual(d["per_worker"]["capture"], 2)
        self.assertEqual(d["per_worker"]["null"], 0)
        # without journald a journal stream is captured: a pipe each
        self.assertEqual(d["per_worker"]["journal"],
                         0 if os.path.exists("/run/systemd/journal/stdout") else 2)
        self.assertEqual(d["per_worker"]["task"], 3)

    def test_pool_that_cannot_fit_is_refused_one_that_can_runs(self):
        with self.d.client() as c:
            free = self.free(c)
            resp = c.call("pool.add", pool="big", command="sleep 1000",
                          processes=free // 2 + 1, start_secs=0)
            self.assertFalse(resp["ok"], resp)
            self.assertEqual(resp["error"]["code"], "limit")
            msg = resp["error"]["message"]
            self.assertIn("file descriptors", msg)
            self.assertIn("needs %d" % ((free // 2 + 1) * 2), msg)
            self.assertIn("of %d free" % HARD, msg)
            # nothing was spawned, no pool was made
            self.assertEqual(self.status(c), [])
            self.assertEqual(c.ok("pool.list"), [])
            # exactly what fits runs, every worker, none fatal
            n = free // 2
            c.ok("pool.add", pool="fits", command="sleep 1000", processes=n, start_secs=0)
            wait_for(lambda: self.all_running(c, n), what="%d workers running" % n)
            self.assertNotIn("Too many open files", self.d.read_log())
            # and then a one-shot does not fit
            resp = c.call("proc.run", argv=["true"])
            self.assertEqual(resp["error"]["code"], "limit", resp)
            self.assertIn("a one-shot needs 3", resp["error"]["message"])

    def test_scale_that_cannot_fit_is_refused(self):
        with self.d.client() as c:
            c.ok("pool.add", pool="w", command="sleep 1000", processes=20, start_secs=0)
            wait_for(lambda: self.all_running(c, 20), what="20 workers running")
            resp = c.call("pool.scale", pool="w", processes=HARD)
            self.assertEqual(resp["error"]["code"], "limit", resp)
            self.assertIn("pool w (%d more workers x 2)" % (HARD - 20), resp["error"]["message"])
            self.assertEqual(len(self.status(c)), 20)
            c.ok("pool.scale", pool="w", processes=40)
            wait_for(lambda: self.all_running(c, 40), what="40 workers running")

    def test_reload_that_cannot_fit_is_refused(self):
        self.d.write_config("[pool:big]\ncommand = sleep 1000\nprocesses = %d\n" % HARD,
                            self.main_config)
        with self.d.client() as c:
            r = c.ok("daemon.reload")
            self.assertEqual(r["added"], [])
            self.assertEqual(len(r["failed"]), 1, r)
            self.assertIn("file descriptors", r["failed"][0]["error"])
            self.assertEqual(self.status(c), [])
            # the same pool with its output to null costs no descriptor per worker
            self.d.write_config("[pool:big]\ncommand = sleep 1000\nprocesses = %d\n"
                                "stdout = null\nstderr = null\nstart_secs = 0\n" % (HARD - 100),
                                self.main_config)
            r = c.ok("daemon.reload")
            self.assertEqual(r["added"], ["big"], r)
            self.assertEqual(r["failed"], [])
            wait_for(lambda: self.all_running(c, HARD - 100), what="workers running")

    def test_cost_per_output_mode(self):
        """What a worker costs, counted in /proc/PID/fd."""
        with self.d.client() as c:
            c.ok("ping")  # its connection is in before counting
            before = self.d.fd_count()
            c.ok("pool.add", pool="quiet", command="sleep 1000", processes=100,
                 stdout="null", stderr="null", start_secs=0)
            wait_for(lambda: self.all_running(c, 100), what="null workers running")
            quiet = self.d.fd_count() - before
            self.assertLessEqual(quiet, 3, "100 workers with null output hold %d" % quiet)
            before = self.d.fd_count()
            c.ok("pool.add", pool="loud", command="sleep 1000", processes=50, start_secs=0)
            wait_for(lambda: self.all_running(c, 150), what="captured workers running")
            loud = self.d.fd_count() - before
            self.assertGreaterEqual(loud, 100)
            self.assertLessEqual(loud, 103, "50 captured workers hold %d" % loud)
            # a task worker: its stdin and stdout are the task channel, stderr captured
            before = self.d.fd_count()
            c.ok("pool.add", pool="tasks", mode="task", command="sleep 1000", processes=20,
                 start_secs=0)
            wait_for(lambda: self.all_running(c, 170), what="task workers running")
            tasks = self.d.fd_count() - before
            self.assertGreaterEqual(tasks, 60)
            self.assertLessEqual(tasks, 63, "20 task workers hold %d" % tasks)


class Shortage(LowLimitCase):
    """Descriptors run out after the budget said yes (here: the limit is
    lowered under the daemon's feet): the spawn is retried with backoff,
    the worker is not fatal, and it runs once descriptors are back."""
    config = ("[pool:w]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 1\n"
              "start_retries = 0\nbackoff_max = 1\n")

    def test_spawn_without_descriptors_is_retried(self):
        with self.d.client() as c:
            wait_for(lambda: self.all_running(c, 2), what="workers running")
            victim = [p for p in self.status(c) if p["name"] == "w:0"][0]["pid"]
            pid = self.d.pid()
            # no descriptor left to open (this connection is open already)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (self.d.fd_count(), HARD))
            try:
                os.kill(victim, signal.SIGKILL)

                def w0():
                    p = [p for p in self.status(c) if p["name"] == "w:0"][0]
                    self.assertNotEqual(p["state"], "fatal", p)
                    return p

                def short():
                    p = w0()
                    return p["state"] == "backoff" and \
                        "Too many open files" in (p.get("reason") or "") and p
                p = wait_for(short, what="w:0 in backoff for lack of descriptors")
                self.assertEqual(p["exit_status_text"], p["reason"])
                # it keeps retrying, never fatal (start_retries = 0)
                wait_for(lambda: "w:0: spawn: Too many open files (retry 2)" in self.d.read_log(),
                         what="two retries")
                w0()
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (HARD, HARD))
            wait_for(lambda: self.all_running(c, 2), what="w:0 running again")
            p = [p for p in self.status(c) if p["name"] == "w:0"][0]
            self.assertIsNone(p["reason"])
            self.assertNotEqual(p["pid"], victim)


if __name__ == "__main__":
    mpsuptest.main()
