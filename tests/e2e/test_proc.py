"""End-to-end tests of process supervision: one-shots with Python Process
semantics, pools (restart, backoff, fatal, stop escalation, scale), reload,
output capture and files, logs, events."""
import json
import os
import signal
import subprocess
import time
import unittest

import mpsuptest
from mpsuptest import (Client, Daemon, DaemonTestCase, wait_for, DAEMON_WRAPPER, MPSUPD,
                       SCALE)

SLEEP_POOL = "[pool:w]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 0.2\n"


def by_name(records):
    return {r["name"]: r for r in records}


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ProcTestCase(DaemonTestCase):
    def status(self, target=None):
        with self.d.client() as c:
            return c.ok("status", **({"target": target} if target else {}))

    def record(self, name):
        return by_name(self.status(name))[name]

    def wait_state(self, name, state, what=None):
        return wait_for(lambda: (lambda r: r if r["state"] == state else None)(self.record(name)),
                        what=what or "%s to be %s" % (name, state))

    def wait_pool_running(self, pool, n):
        def ok():
            recs = self.status(pool)
            return recs if len(recs) == n and all(r["state"] == "running" for r in recs) else None
        return wait_for(ok, what="%d members of %s running" % (n, pool))

    def logs(self, target, lines=100):
        return self.d.ok("proc.logs", target=target, lines=lines)

    def log_lines(self, target, stream=None):
        return [l["line"] for l in self.logs(target) if stream is None or l["stream"] == stream]

    def add_pool(self, name, command, **kw):
        params = {"pool": name, "command": command}
        params.update(kw)
        return self.d.ok("pool.add", **params)


class OneShots(ProcTestCase):
    def test_seed_scenario_exitcodes(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("proc.run", argv=["true"], name="zero")["name"], "zero")
            c.ok("proc.run", argv=["sh", "-c", "exit 1"], name="one")
            pid = c.ok("proc.run", argv=["sleep", "1000"], name="term")["pid"]
            c.ok("proc.run", argv=["sleep", "1000"], name="killed")
            rec = by_name(c.ok("status", target="term"))["term"]
            self.assertTrue(rec["is_alive"])
            self.assertIsNone(rec["exitcode"])
            self.assertEqual(rec["pid"], pid)
            self.assertIsNone(rec["pool"])
            c.ok("proc.terminate", target="term")
            c.ok("proc.kill", target="killed")
            self.assertEqual(c.ok("proc.join", target="zero"), {"exitcode": 0, "is_alive": False})
            self.assertEqual(c.ok("proc.join", target="one"), {"exitcode": 1, "is_alive": False})
            self.assertEqual(c.ok("proc.join", target="term"),
                             {"exitcode": -15, "is_alive": False})
            self.assertEqual(c.ok("proc.join", target="killed"),
                             {"exitcode": -9, "is_alive": False})
            recs = by_name(c.ok("status"))
            self.assertEqual(recs["zero"]["state"], "exited")
            self.assertEqual(recs["one"]["exit_status_text"], "exited with status 1")
            self.assertEqual(recs["term"]["exit_status_text"], "killed by signal 15 (SIGTERM)")
            self.assertFalse(pid_alive(pid))
            # records stay until forgotten; names are unique
            self.assertEqual(c.err("proc.run", argv=["true"], name="zero"), "exists")
            c.ok("proc.forget", name="zero")
            self.assertEqual(c.err("status", target="zero"), "not_found")
            self.assertEqual(c.err("proc.forget", name="zero"), "not_found")

    def test_generated_names_and_forget_alive(self):
        with self.d.client() as c:
            r = c.ok("proc.run", argv=["sleep", "1000"])
            self.assertTrue(r["name"].startswith("run-"))
            self.assertEqual(c.err("proc.forget", name=r["name"]), "conflict")
            self.assertEqual(c.err("proc.start", target=r["name"]), "conflict")
            c.ok("proc.stop", target=r["name"])
            rec = by_name(c.ok("status", target=r["name"]))[r["name"]]
            self.assertEqual(rec["state"], "stopped")
            self.assertEqual(rec["exitcode"], -15)
            c.ok("proc.forget", name=r["name"])

    def test_join_timeout(self):
        with self.d.client() as c:
            c.ok("proc.run", argv=["sleep", "1000"], name="long")
            t0 = time.monotonic()
            self.assertEqual(c.ok("proc.join", target="long", timeout=0.3),
                             {"exitcode": None, "is_alive": True})
            self.assertGreaterEqual(time.monotonic() - t0, 0.25)
            self.assertEqual(c.ok("proc.join", target="long", timeout=0),
                             {"exitcode": None, "is_alive": True})
            # a join blocks only its own connection
            c.send("proc.join", target="long")
            with self.d.client() as c2:
                c2.ok("proc.kill", target="long")
            self.assertEqual(c.recv()["result"], {"exitcode": -9, "is_alive": False})

    def test_exec_failure(self):
        with self.d.client() as c:
            r = c.call("proc.run", argv=["/nope/missing"])
            self.assertFalse(r["ok"])
            self.assertEqual(r["error"]["code"], "spawn_failed")
            self.assertEqual(r["error"]["message"],
                             "exec /nope/missing: No such file or directory")
            r = c.call("proc.run", argv=["true"], cwd="/nope/dir")
            self.assertEqual(r["error"]["code"], "spawn_failed")
            self.assertIn("chdir /nope/dir", r["error"]["message"])

    def test_bad_params(self):
        with self.d.client() as c:
            self.assertEqual(c.err("proc.run", argv=[]), "bad_request")
            self.assertEqual(c.err("proc.run", argv="true"), "bad_request")
            self.assertEqual(c.err("proc.run", argv=[1]), "bad_request")
            self.assertEqual(c.err("proc.run", argv=["true"], name="a:b"), "bad_request")
            self.assertEqual(c.err("proc.run", argv=["true"], cwd="rel"), "bad_request")
            self.assertEqual(c.err("proc.run", argv=["true"], env={"A": 1}), "bad_request")
            self.assertEqual(c.err("proc.run", argv=["true"], bogus=1), "bad_request")
            self.assertEqual(c.err("proc.join", target="nope"), "not_found")
            self.assertEqual(c.err("proc.signal", target="*", signal="NOPE"), "bad_request")
            self.assertEqual(c.err("proc.logs", target="*", lines=-1), "bad_request")

    def test_stdin_env_cwd_and_descriptors(self):
        script = ("import os,sys\n"
                  "print(sys.stdin.read().strip())\n"
                  "fds=[]\n"
                  "for fd in range(3,4096):\n"
                  "  try: os.fstat(fd); fds.append(fd)\n"
                  "  except OSError: pass\n"
                  "print('fds', fds)\n"
                  "print('cwd', os.getcwd())\n"
                  "for k in sorted(os.environ): print('env', k, os.environ[k])\n")
        with self.d.client() as c:
            c.ok("proc.run", argv=["python3", "-c", script], name="py", stdin="hello stdin\n",
                 env={"FOO": "bar baz"}, cwd="/tmp")
            self.assertEqual(c.ok("proc.join", target="py")["exitcode"], 0)
        out = self.log_lines("py")
        self.assertEqual(out[0], "hello stdin")
        self.assertIn("fds []", out)
        self.assertIn("cwd /tmp", out)
        env = {l.split(" ", 2)[1]: l.split(" ", 2)[2] for l in out if l.startswith("env ")}
        self.assertEqual(env["FOO"], "bar baz")
        self.assertEqual(env["MPSUP_SOCKET"], self.d.socket)
        self.assertEqual(env["MPSUP_NAME"], "py")
        self.assertIn("PATH", env)
        for leak in ("NOTIFY_SOCKET", "LISTEN_FDS", "WATCHDOG_USEC", "PYTHONPATH", "HOME"):
            self.assertNotIn(leak, env)

    def test_clean_signal_state(self):
        # mpsupd ignores SIGPIPE and blocks signals for libevent: a child has
        # an empty mask and default dispositions (ignored ones survive exec).
        for how in ("oneshot", "pool"):
            if how == "oneshot":
                self.d.ok("proc.run", argv=["cat", "/proc/self/status"], name="sig")
                self.d.ok("proc.join", target="sig")
                name = "sig"
            else:
                self.add_pool("sigpool", ["sh", "-c", "exec cat /proc/self/status; "],
                              restart="never", start_secs=0)
                self.wait_state("sigpool:0", "exited")
                name = "sigpool"
            lines = dict(l.split(":", 1) for l in self.log_lines(name) if ":" in l)
            self.assertEqual(int(lines["SigBlk"].strip(), 16), 0, how)
            self.assertEqual(int(lines["SigIgn"].strip(), 16), 0, how)

    def test_logs_lines(self):
        with self.d.client() as c:
            c.ok("proc.run", argv=["sh", "-c", "for i in 1 2 3 4 5; do echo out$i; done; "
                                   "echo err >&2"], name="p")
            c.ok("proc.join", target="p")
        wait_for(lambda: len(self.logs("p")) == 6, what="six lines")
        self.assertEqual(self.log_lines("p", "stdout"), ["out%d" % i for i in range(1, 6)])
        self.assertEqual(self.log_lines("p", "stderr"), ["err"])
        last = self.logs("p", lines=2)
        self.assertEqual(len(last), 2)
        self.assertEqual({l["name"] for l in last}, {"p"})
        self.assertEqual(self.logs("p", lines=0), [])
        self.assertEqual(self.d.err("proc.logs", target="nope"), "not_found")

    def test_follow_streams_new_lines(self):
        with self.d.client() as f:
            with self.d.client() as c:
                c.ok("proc.run", argv=["cat"], name="echoer", stdin="")
            wait_for(lambda: self.record("echoer")["state"] == "exited", what="echoer")
            f.send("proc.logs", target="*", follow=True, lines=1)
            first = f.recv()
            self.assertTrue(first["ok"])
            self.assertEqual(first["result"], [])
            with self.d.client() as c:
                c.ok("proc.run", argv=["sh", "-c", "echo live one; echo live two"], name="talk")
            got = [f.recv(), f.recv()]
            self.assertEqual([g["line"] for g in got], ["live one", "live two"])
            self.assertEqual({g["name"] for g in got}, {"talk"})
            self.assertEqual({g["stream"] for g in got}, {"stdout"})


@unittest.skipUnless(os.geteuid() == 0, "needs root to run as another user")
class RunAsUser(ProcTestCase):
    def test_user_nobody(self):
        import pwd
        nobody = pwd.getpwnam("nobody")
        self.d.ok("proc.run", argv=["sh", "-c", 'id -u; id -g; echo "$USER $HOME"'],
                  name="nb", user="nobody")
        self.assertEqual(self.d.ok("proc.join", target="nb")["exitcode"], 0)
        self.assertEqual(self.log_lines("nb"),
                         [str(nobody.pw_uid), str(nobody.pw_gid),
                          "nobody %s" % nobody.pw_dir])
        # a numeric uid, and a running process's credentials
        pid = self.d.ok("proc.run", argv=["sleep", "1000"], name="num",
                        user=str(nobody.pw_uid), group="0", daemon=True)["pid"]
        with open("/proc/%d/status" % pid) as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        self.assertEqual(st["Uid"].split()[0], str(nobody.pw_uid))
        self.assertEqual(st["Gid"].split()[0], "0")

    def test_unknown_user_never_runs(self):
        marker = os.path.join(self.d.dir, "ran")
        with self.d.client() as c:
            r = c.call("proc.run", argv=["touch", marker], name="x", user="no-such-user-mp")
            self.assertFalse(r["ok"])
            self.assertEqual(r["error"]["code"], "spawn_failed")
            self.assertIn("no-such-user-mp: no such user", r["error"]["message"])
            self.assertEqual(c.err("status", target="x"), "not_found")
            self.assertEqual(c.err("proc.run", argv=["true"], group="0"), "bad_request")
            self.assertEqual(c.err("proc.run", argv=["true"], user=[1]), "bad_request")
            # a number past 32 bits is no uid (it once wrapped to 0, root)
            for big in ("4294967296", "4294967295", "99999999999999999999"):
                r = c.call("proc.run", argv=["touch", marker], user=big)
                self.assertEqual(r["error"]["code"], "spawn_failed", big)
                self.assertIn("no such user", r["error"]["message"])
        self.assertFalse(os.path.exists(marker))


class Retention(ProcTestCase):
    main_config = "max_oneshots = 2\n"

    def test_oldest_finished_evicted(self):
        with self.d.client() as c:
            for n in ("a", "b", "c"):
                c.ok("proc.run", argv=["true"], name=n)
                c.ok("proc.join", target=n)
            wait_for(lambda: c.call("status", target="a")["ok"] is False, what="eviction of a")
            self.assertEqual(set(by_name(c.ok("status"))), {"b", "c"})


class Limits(ProcTestCase):
    main_config = "max_processes = 3\n"
    config = "[pool:w]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 0\n"

    def test_max_processes(self):
        with self.d.client() as c:
            c.ok("proc.run", argv=["sleep", "1000"], name="x")
            self.assertEqual(c.err("proc.run", argv=["sleep", "1000"]), "limit")
            self.assertEqual(c.err("pool.scale", pool="w", processes=3), "limit")
            self.assertEqual(c.err("pool.add", pool="p", command="sleep 1"), "limit")
            c.ok("proc.kill", target="x")
            c.ok("proc.join", target="x")
            # a finished one-shot no longer counts
            c.ok("pool.scale", pool="w", processes=3)


class Pools(ProcTestCase):
    config = SLEEP_POOL

    def test_status_record_and_pool_list(self):
        recs = by_name(self.wait_pool_running("w", 2))
        r = recs["w:0"]
        self.assertEqual(set(r), {"name", "pool", "index", "pid", "state", "is_alive", "exitcode",
                                  "started_at", "uptime", "restarts", "exit_status_text", "reason"})
        self.assertEqual((r["pool"], r["index"], r["is_alive"], r["exitcode"]), ("w", 0, True, None))
        self.assertEqual(self.status("w:1")[0]["name"], "w:1")
        pools = self.d.ok("pool.list")
        self.assertEqual([p["pool"] for p in pools], ["w"])
        self.assertEqual(pools[0]["processes"], 2)
        self.assertEqual(pools[0]["running"], 2)
        self.assertEqual(self.d.err("status", target="w:9"), "not_found")
        self.assertEqual(self.d.err("status", target="nope"), "not_found")

    def test_kill9_worker_restarted_with_new_pid(self):
        recs = by_name(self.wait_pool_running("w", 2))
        old = recs["w:0"]["pid"]
        os.kill(old, signal.SIGKILL)
        r = wait_for(lambda: (lambda r: r if r["pid"] not in (None, old) else None)(
            self.record("w:0")), what="a new pid for w:0")
        self.assertEqual(r["restarts"], 1)
        self.wait_state("w:0", "running")
        self.assertEqual(self.record("w:1")["pid"], recs["w:1"]["pid"])

    def test_proc_kill_and_signal_restart(self):
        recs = by_name(self.wait_pool_running("w", 2))
        with self.d.client() as c:
            c.ok("proc.signal", target="w:1", signal="SIGHUP")
            c.ok("proc.signal", target="w:0", signal=9)
        wait_for(lambda: all(r["restarts"] == 1 for r in self.status("w")), what="restarts")
        new = by_name(self.wait_pool_running("w", 2))
        self.assertNotEqual(new["w:0"]["pid"], recs["w:0"]["pid"])
        self.assertNotEqual(new["w:1"]["pid"], recs["w:1"]["pid"])

    def test_stop_start_restart(self):
        recs = by_name(self.wait_pool_running("w", 2))
        with self.d.client() as c:
            stopped = by_name(c.ok("proc.stop", target="w"))
            self.assertEqual({r["state"] for r in stopped.values()}, {"stopped"})
            self.assertEqual(stopped["w:0"]["exitcode"], -15)
            self.assertFalse(pid_alive(recs["w:0"]["pid"]))
            c.ok("proc.start", target="w:0")
            self.assertEqual(self.record("w:0")["state"], "running")
            self.assertEqual(self.record("w:1")["state"], "stopped")
            c.ok("proc.start", target="*")
            before = by_name(self.status("w"))
            restarted = by_name(c.ok("proc.restart", target="w:1"))
            self.assertEqual(restarted["w:1"]["state"], "running")
            self.assertNotEqual(restarted["w:1"]["pid"], before["w:1"]["pid"])
            self.assertEqual(self.record("w:0")["pid"], before["w:0"]["pid"])
            # wait:false answers at once
            r = c.ok("proc.stop", target="w", wait=False)
            self.assertEqual(len(r), 2)
            wait_for(lambda: all(x["state"] == "stopped" for x in self.status("w")), what="stop")

    def test_scale_up_and_down_keeps_survivors(self):
        recs = by_name(self.wait_pool_running("w", 2))
        with self.d.client() as c:
            c.ok("pool.scale", pool="w", processes=4)
            grown = by_name(self.wait_pool_running("w", 4))
            for n in ("w:0", "w:1"):
                self.assertEqual(grown[n]["pid"], recs[n]["pid"])
                self.assertEqual(grown[n]["restarts"], 0)
            c.ok("pool.scale", pool="w", processes=1)
            wait_for(lambda: [r["name"] for r in self.status("w")] == ["w:0"], what="shrink")
            self.assertEqual(self.record("w:0")["pid"], recs["w:0"]["pid"])
            for n in ("w:1", "w:2", "w:3"):
                self.assertFalse(pid_alive(grown[n]["pid"]))
            self.assertEqual(c.ok("pool.list")[0]["processes"], 1)
            c.ok("pool.scale", pool="w", processes=0)
            wait_for(lambda: self.status("w") == [], what="scale to 0")
            self.assertEqual(c.err("pool.scale", pool="nope", processes=1), "not_found")

    def test_events_see_process_state(self):
        recs = by_name(self.wait_pool_running("w", 2))
        with self.d.client() as sub:
            sub.send("events.subscribe", topics=["process", "pool"])
            self.assertTrue(sub.recv()["ok"])
            os.kill(recs["w:1"]["pid"], signal.SIGKILL)
            ev = sub.recv()
            self.assertEqual(ev["event"], "process.state")
            self.assertEqual((ev["name"], ev["from"], ev["pid"], ev["exitcode"]),
                             ("w:1", "running", recs["w:1"]["pid"], -9))
            self.assertIn(ev["to"], ("starting", "backoff"))
            self.assertIsInstance(ev["ts"], float)
            self.d.ok("pool.scale", pool="w", processes=3)
            seen = []
            while not any(e.get("event") == "pool.scaled" for e in seen):
                seen.append(sub.recv())
            self.assertEqual([e for e in seen if e["event"] == "pool.scaled"][0]["processes"], 3)

    def test_pool_add_remove(self):
        with self.d.client() as c:
            self.assertEqual(c.err("pool.add", pool="w", command="sleep 1"), "exists")
            self.assertEqual(c.err("pool.add", pool="x", command="sleep 1", bogus=1),
                             "bad_request")
            self.assertEqual(c.err("pool.add", pool="x"), "bad_request")
            r = c.ok("pool.add", pool="x", command=["sleep", "1000"], processes=2, start_secs=0)
            self.assertEqual(r["pool"], "x")
            recs = self.wait_pool_running("x", 2)
            c.ok("pool.remove", pool="x")
            self.assertEqual(c.err("status", target="x"), "not_found")
            for r in recs:
                self.assertFalse(pid_alive(r["pid"]))
            self.assertEqual(c.err("pool.remove", pool="x"), "not_found")
            c.ok("pool.add", pool="x", command="sleep 1000", autostart=False)
            self.assertEqual(self.record("x:0")["state"], "stopped")


class StopEscalation(ProcTestCase):
    def test_ignores_sigterm_then_sigkill_and_grandchildren_gone(self):
        script = ("trap '' TERM\n"
                  "sleep 1000 & echo child $!\n"
                  "sleep 1000 & echo child $!\n"
                  "echo ready\n"
                  "wait\n")
        self.add_pool("stubborn", ["sh", "-c", script], stop_timeout=1, start_secs=0)
        wait_for(lambda: "ready" in self.log_lines("stubborn"), what="worker ready")
        kids = [int(l.split()[1]) for l in self.log_lines("stubborn") if l.startswith("child")]
        self.assertEqual(len(kids), 2)
        main = self.record("stubborn:0")["pid"]
        t0 = time.monotonic()
        rec = self.d.ok("proc.stop", target="stubborn")[0]
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual(rec["state"], "stopped")
        self.assertEqual(rec["exitcode"], -9)
        for pid in kids + [main]:
            self.assertFalse(pid_alive(pid), "pid %d still there after stop" % pid)

    def test_graceful_stop_takes_grandchildren(self):
        self.add_pool("family", ["sh", "-c", "sleep 1000 & echo child $!; wait"], start_secs=0)
        wait_for(lambda: any(l.startswith("child") for l in self.log_lines("family")),
                 what="child")
        kid = int([l for l in self.log_lines("family") if l.startswith("child")][0].split()[1])
        self.d.ok("proc.stop", target="family")
        self.assertFalse(pid_alive(kid))

    def test_children_of_a_dead_worker_do_not_outlive_it(self):
        # The main process dies on its own (SIGKILL here): the rest of its
        # group gets the stop signal at once, while the worker restarts.
        self.add_pool("leaky", ["sh", "-c", "sleep 1000 & echo child $!; wait"], start_secs=0)
        wait_for(lambda: any(l.startswith("child") for l in self.log_lines("leaky")),
                 what="child")
        kid = int([l for l in self.log_lines("leaky") if l.startswith("child")][0].split()[1])
        main = self.record("leaky:0")["pid"]
        os.kill(main, signal.SIGKILL)
        wait_for(lambda: not pid_alive(kid), what="the dead worker's child gone")
        wait_for(lambda: self.record("leaky:0")["pid"] not in (None, main)
                 and self.record("leaky:0")["state"] == "running", what="restart")
        wait_for(lambda: self.d.ok("daemon.info")["processes"]["stray_groups"] == 0,
                 what="no stray group left")

    def test_stray_child_ignoring_the_stop_signal_is_killed(self):
        script = "sh -c \"trap '' TERM; echo child \\$\\$; while :; do sleep 0.1; done\" & wait"
        self.add_pool("stray", ["sh", "-c", script], start_secs=0, stop_timeout=2,
                      restart="never")
        wait_for(lambda: any(l.startswith("child") for l in self.log_lines("stray")),
                 what="child")
        kid = int([l for l in self.log_lines("stray") if l.startswith("child")][0].split()[1])
        os.kill(self.record("stray:0")["pid"], signal.SIGKILL)
        self.wait_state("stray:0", "exited")
        self.assertEqual(self.d.ok("daemon.info")["processes"]["stray_groups"], 1)
        wait_for(lambda: not pid_alive(kid), what="SIGKILL after stop_timeout")
        wait_for(lambda: self.d.ok("daemon.info")["processes"]["stray_groups"] == 0,
                 what="no stray group left")


class Failures(ProcTestCase):
    def test_always_failing_command_goes_fatal(self):
        with self.d.client() as sub:
            sub.send("events.subscribe", topics=["process"])
            self.assertTrue(sub.recv()["ok"])
            self.add_pool("bad", ["sh", "-c", "echo oops >&2; exit 3"], start_secs=1,
                          start_retries=2, backoff_max=0.2)
            r = self.wait_state("bad:0", "fatal")
            self.assertEqual(r["exitcode"], 3)
            self.assertEqual(r["exit_status_text"], "exited with status 3")
            self.assertFalse(r["is_alive"])
            self.assertEqual(r["restarts"], 2)
            seen = []
            while not any(e["to"] == "fatal" for e in seen):
                seen.append(sub.recv())
            self.assertIn("backoff", [e["to"] for e in seen])
        self.assertIn("oops", self.log_lines("bad", "stderr"))
        # a manual start tries again
        self.d.ok("proc.start", target="bad:0", wait=False)
        self.assertIn(self.record("bad:0")["state"], ("starting", "backoff", "fatal"))

    def test_exec_failure_in_status(self):
        self.add_pool("nope", "/nope/prog --x", start_retries=1, backoff_max=0.1)
        r = self.wait_state("nope:0", "fatal")
        self.assertEqual(r["exit_status_text"], "exec /nope/prog: No such file or directory")
        self.assertIn("mpsupd: exec /nope/prog: No such file or directory",
                      self.log_lines("nope:0", "stderr"))

    def test_restart_policies(self):
        self.add_pool("never", ["sh", "-c", "exit 0"], restart="never", start_secs=0)
        self.add_pool("onfail", ["sh", "-c", "exit 2"], restart="on-failure", exit_codes="0,2",
                      start_secs=0)
        self.assertEqual(self.wait_state("never:0", "exited")["exitcode"], 0)
        self.assertEqual(self.wait_state("onfail:0", "exited")["exitcode"], 2)
        self.assertEqual(self.record("onfail:0")["restarts"], 0)

    def test_placeholders_and_pool_env(self):
        self.add_pool("ph", ["sh", "-c", "echo %(pool)s %(name)s %(index)d "
                             "$MPSUP_POOL $MPSUP_NAME $MPSUP_INDEX $FOO; sleep 1000"],
                      processes=2, environment={"FOO": "foo"}, start_secs=0)
        wait_for(lambda: self.log_lines("ph:1"), what="output")
        self.assertEqual(self.log_lines("ph:1"), ["ph ph:1 1 ph ph:1 1 foo"])


class Output(ProcTestCase):
    main_config = "max_output_bytes = 64K\n"

    def setUp(self):
        # ASan's quarantine keeps freed memory for a while: keep it small so
        # RSS measures what the daemon holds
        asan = os.environ.get("ASAN_OPTIONS", "")
        self.d = Daemon(self.config, self.main_config,
                        env={"ASAN_OPTIONS": (asan + ":" if asan else "") +
                             "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"})
        self.d.start()

    def test_file_output_and_reopen(self):
        path = os.path.join(self.d.dir, "out.log")
        self.add_pool("f", ["sh", "-c", "echo hello; echo oops >&2; sleep 1000"],
                      stdout="file:" + path, stderr="file:" + path, start_secs=0)
        wait_for(lambda: read(path).count("\n") == 2,
                 what="two lines in the file")
        self.assertEqual(sorted(read(path).split()), ["hello", "oops"])
        os.rename(path, path + ".old")
        self.d.ok("daemon.reopen_logs")
        self.d.ok("proc.restart", target="f")
        wait_for(lambda: "hello" in read(path),
                 what="output in the reopened file")
        os.rename(path, path + ".old2")
        os.kill(self.d.pid(), signal.SIGUSR1)
        wait_for(lambda: os.path.exists(path), what="reopen on SIGUSR1")
        # the ring still has it
        self.assertIn("hello", self.log_lines("f", "stdout"))

    def test_rotation(self):
        path = os.path.join(self.d.dir, "rot.log")
        self.add_pool("r", ["sh", "-c", "i=0; while [ $i -lt 60 ]; do echo line-$i; "
                            "i=$((i+1)); done; sleep 1000"],
                      stdout="file:" + path, stdout_max_bytes=200, stdout_backups=2,
                      start_secs=0)
        wait_for(lambda: "line-59" in self.log_lines("r"), what="all lines")
        for f in (path, path + ".1", path + ".2"):
            self.assertTrue(os.path.exists(f), f)
            self.assertLessEqual(os.path.getsize(f), 200)
        self.assertFalse(os.path.exists(path + ".3"))
        self.assertIn("line-59", read(path))

    def test_disk_error_counted_supervision_goes_on(self):
        # /dev/full takes the open and refuses every write (ENOSPC).
        self.add_pool("full", ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; "
                               "echo ready >&2; sleep 1000"], stdout="file:/dev/full",
                      start_secs=0)
        wait_for(lambda: "ready" in self.log_lines("full", "stderr"), what="worker output")
        wait_for(lambda: [p for p in self.d.ok("pool.list")
                          if p["pool"] == "full"][0]["output_errors"] >= 5,
                 what="5 lines counted as lost")
        self.assertIn("output file /dev/full: write", self.d.read_log())
        # supervision goes on: a killed worker is restarted
        pid = self.record("full:0")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.record("full:0")["pid"] not in (None, pid), what="restart")
        self.assertIn("line-1", self.log_lines("full"))

    def test_log_ring_keeps_the_last_lines(self):
        self.d.stop()
        self.d.write_config(main_extra="log_ring_lines = 5")
        self.d.start()
        self.add_pool("chatty", ["sh", "-c", "for i in $(seq 1 20); do echo l$i; done; "
                                 "sleep 1000"], start_secs=0)
        wait_for(lambda: "l20" in self.log_lines("chatty"), what="the last line")
        self.assertEqual(self.log_lines("chatty"), ["l16", "l17", "l18", "l19", "l20"])

    def test_null_output(self):
        self.add_pool("quiet", ["sh", "-c", "echo hidden; sleep 1000"], stdout="null",
                      start_secs=0)
        self.wait_pool_running("quiet", 1)
        self.d.ok("proc.restart", target="quiet")
        self.assertEqual(self.logs("quiet"), [])

    def test_flood_keeps_memory_bounded(self):
        # a follower that never reads, too
        lazy = self.d.client()
        lazy.send("proc.logs", target="*", follow=True)
        rss0 = self.d.rss_kb()
        line = "x" * 100
        self.add_pool("flood", ["sh", "-c", "yes %s | head -c 60000000" % line],
                      restart="never", start_secs=0)
        self.wait_state("flood:0", "exited", what="flood to end (60 MB read)")
        rss = self.d.rss_kb()
        print("flood: RSS %d -> %d KiB" % (rss0, rss))
        if not DAEMON_WRAPPER:  # under valgrind, most of the RSS is valgrind's
            self.assertLess(rss - rss0, 30 * 1024, "RSS grew from %d to %d KiB" % (rss0, rss))
        tail = self.logs("flood", lines=5)
        self.assertEqual(len(tail), 5)
        self.assertEqual(tail[-1]["line"][:100], line[:len(tail[-1]["line"][:100])])
        # a long line is split at 4 KiB
        self.d.ok("proc.run", argv=["python3", "-c", "print('y' * 10000)"], name="long")
        self.d.ok("proc.join", target="long")
        wait_for(lambda: len(self.logs("long")) == 3, what="split lines")
        self.assertEqual([len(l["line"]) for l in self.logs("long")], [4096, 4096, 1808])
        lazy.close()


class Reload(ProcTestCase):
    config = ("[pool:a]\ncommand = sleep 1000\nstart_secs = 0\n"
              "[pool:b]\ncommand = sleep 1000\nstart_secs = 0\n"
              "[pool:d]\ncommand = sleep 1000\nstart_secs = 0\n")

    def pids(self):
        return {r["name"]: r["pid"] for r in self.status()}

    def test_invalid_config_changes_nothing(self):
        before = by_name(self.wait_pool_running("*", 3))
        self.d.write_config("[pool:a]\ncommand = sleep 1000\nbogus_key = 1\n")
        with self.d.client() as c:
            r = c.call("daemon.reload")
            self.assertFalse(r["ok"])
            self.assertIn("bogus_key", r["error"]["message"])
        self.assertEqual(self.pids(), {n: r["pid"] for n, r in before.items()})
        self.assertEqual([p["pool"] for p in self.d.ok("pool.list")], ["a", "b", "d"])

    def test_add_change_remove(self):
        before = by_name(self.wait_pool_running("*", 3))
        self.d.ok("pool.add", pool="runtime", command="sleep 1000", start_secs=0)
        self.d.write_config("[pool:a]\ncommand = sleep 1000\nstart_secs = 0\n"
                            "[pool:b]\ncommand = sleep 999\nstart_secs = 0\n"
                            "[pool:c]\ncommand = sleep 1000\nstart_secs = 0\nprocesses = 2\n")
        r = self.d.ok("daemon.reload")
        self.assertEqual((r["added"], r["changed"], r["removed"]), (["c"], ["b"], ["d"]))
        self.wait_pool_running("c", 2)
        # the name is free at once; its worker is stopped in the background
        wait_for(lambda: self.d.err("status", target="d") == "not_found", what="d removed")
        wait_for(lambda: not pid_alive(before["d:0"]["pid"]), what="d:0 stopped")
        b = self.wait_state("b:0", "running")
        self.assertNotEqual(b["pid"], before["b:0"]["pid"])
        self.assertEqual(self.record("a:0")["pid"], before["a:0"]["pid"])
        # pools added at run time are not the config's to remove
        self.assertEqual(self.record("runtime:0")["state"], "running")
        # processes alone: a scale, survivors untouched
        self.d.write_config("[pool:a]\ncommand = sleep 1000\nstart_secs = 0\nprocesses = 3\n"
                            "[pool:b]\ncommand = sleep 999\nstart_secs = 0\n"
                            "[pool:c]\ncommand = sleep 1000\nstart_secs = 0\nprocesses = 2\n")
        r = self.d.ok("daemon.reload")
        self.assertEqual((r["added"], r["changed"], r["removed"]), ([], ["a"], []))
        recs = by_name(self.wait_pool_running("a", 3))
        self.assertEqual(recs["a:0"]["pid"], before["a:0"]["pid"])


class ReloadFailures(ProcTestCase):
    """daemon.reload answers only what it did; what it could not do is in
    failed (and logged)."""
    main_config = "max_processes = 3\n"
    config = "[pool:a]\ncommand = sleep 1000\nstart_secs = 0\n"

    def test_failed_add_scale_and_name_taken(self):
        self.wait_pool_running("a", 1)
        self.d.ok("proc.run", argv=["sleep", "1000"], name="taken", daemon=True)
        self.d.write_config("[pool:a]\ncommand = sleep 1000\nstart_secs = 0\nprocesses = 5\n"
                            "[pool:big]\ncommand = sleep 1000\nprocesses = 4\n"
                            "[pool:taken]\ncommand = sleep 1000\n"
                            "[pool:ok]\ncommand = sleep 1000\nstart_secs = 0\n",
                            "max_processes = 3\n")
        r = self.d.ok("daemon.reload")
        self.assertEqual((r["added"], r["changed"], r["removed"]), (["ok"], [], []))
        failed = {f["pool"]: f["error"] for f in r["failed"]}
        self.assertEqual(sorted(failed), ["a", "big", "taken"])
        self.assertIn("max_processes", failed["big"])
        self.assertIn("max_processes", failed["a"])
        self.assertIn("one-shot", failed["taken"])
        self.assertEqual(sorted(p["pool"] for p in self.d.ok("pool.list")), ["a", "ok"])
        self.assertEqual(len(self.status("a")), 1)
        log = self.d.read_log()
        self.assertIn("reload: pool big: not added", log)
        self.assertIn("reload: pool a: not scaled from 1 to 5", log)

    def test_the_new_max_processes_applies(self):
        self.wait_pool_running("a", 1)
        self.d.write_config("[pool:a]\ncommand = sleep 1000\nstart_secs = 0\n"
                            "[pool:big]\ncommand = sleep 1000\nprocesses = 4\nstart_secs = 0\n",
                            "max_processes = 10\n")
        r = self.d.ok("daemon.reload")
        self.assertEqual((r["added"], r["failed"]), (["big"], []))
        self.wait_pool_running("big", 4)

    def test_changed_definition_that_cannot_grow(self):
        self.wait_pool_running("a", 1)
        self.d.write_config("[pool:a]\ncommand = sleep 999\nstart_secs = 0\nprocesses = 9\n",
                            "max_processes = 3\n")
        r = self.d.ok("daemon.reload")
        self.assertEqual(r["changed"], ["a"])
        self.assertEqual([f["pool"] for f in r["failed"]], ["a"])
        self.assertIn("definition changed", r["failed"][0]["error"])
        self.wait_pool_running("a", 1)


class Priority(ProcTestCase):
    """Start-up in priority order (low first), shutdown in reverse, one
    level at a time (file order here is 3, 1, 2)."""
    config = "".join("[pool:p%d]\ncommand = sleep 1000\nstart_secs = 0\npriority = %d\n"
                     "stop_timeout = 5\n" % (n, n) for n in (3, 1, 2))

    def test_start_in_priority_order_stop_in_reverse(self):
        self.wait_pool_running("*", 3)
        log = self.d.read_log()
        spawned = [log.index("p%d:0: spawned pid" % n) for n in (1, 2, 3)]
        self.assertEqual(spawned, sorted(spawned), log)
        self.assertEqual(self.d.stop(), 0)
        log = self.d.read_log()
        # a level is asked to stop only once the level above is gone
        for hi, lo in ((3, 2), (2, 1)):
            self.assertLess(log.index("p%d:0 (pid" % hi),
                            log.index("p%d:0: running -> stopping" % lo), log)


class ShutdownOrder(ProcTestCase):
    main_config = "shutdown_timeout = 20\n"

    def test_daemon_oneshot_stopped_at_once_other_waited_for(self):
        done = os.path.join(self.d.dir, "done")
        with self.d.client() as c:
            c.ok("proc.run", argv=["sleep", "1000"], name="bg", daemon=True)
            c.ok("proc.run", argv=["sh", "-c", "sleep 1.5; echo ok > %s" % done], name="fg")
        t0 = time.monotonic()
        self.d.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "bg (pid" in self.d.read_log(), what="bg stopped")
        self.assertFalse(os.path.exists(done), "bg was stopped while fg still ran")
        self.assertEqual(self.d.stop(), 0)
        elapsed = time.monotonic() - t0
        log = self.d.read_log()
        self.assertRegex(log, r"bg \(pid \d+\) killed by signal 15")
        self.assertRegex(log, r"fg \(pid \d+\) exited with status 0")
        self.assertEqual(read(done), "ok\n")
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 15 * SCALE)


class WorkerSetup(ProcTestCase):
    def test_umask_and_directory(self):
        wd = os.path.join(self.d.dir, "work")
        os.mkdir(wd)
        self.add_pool("u", "sh -c 'umask; pwd; exec sleep 1000'", umask="027", directory=wd,
                      start_secs=0)
        wait_for(lambda: len(self.log_lines("u:0")) == 2, what="umask and pwd")
        self.assertEqual(self.log_lines("u:0"), ["0027", wd])

class Inherit(unittest.TestCase):
    def test_inherit_is_the_daemons_own_stdout_and_stderr(self):
        # the daemon's stdout and stderr kept apart (the harness merges them)
        d = Daemon("[pool:inh]\ncommand = sh -c 'echo inherited-out; echo inherited-err >&2; "
                   "exec sleep 1000'\nstdout = inherit\nstderr = inherit\nstart_secs = 0\n")
        out, err = os.path.join(d.dir, "out"), os.path.join(d.dir, "err")
        try:
            with open(out, "wb") as fo, open(err, "wb") as fe:
                d.log = open(d.logfile, "ab")
                d.proc = subprocess.Popen(DAEMON_WRAPPER + [MPSUPD, "-c", d.conf], stdout=fo,
                                          stderr=fe, env=d.env, cwd=d.dir)
            wait_for(d.answers, what="mpsupd")
            wait_for(lambda: "inherited-out" in read(out) and "inherited-err" in read(err),
                     what="the worker's lines")
            self.assertNotIn("inherited-err", read(out))
            self.assertNotIn("inherited-out", read(err))
            self.assertEqual(d.ok("proc.logs", target="inh:0", lines=10), [])
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()

class Shutdown(unittest.TestCase):
    def test_oneshots_and_pools_stopped_at_shutdown(self):
        d = Daemon("[pool:w]\ncommand = sleep 1000\nstart_secs = 0\n",
                   "shutdown_timeout = 0.5\n")
        d.start()
        try:
            with d.client() as c:
                dpid = c.ok("proc.run", argv=["sleep", "1000"], daemon=True)["pid"]
                npid = c.ok("proc.run", argv=["sleep", "1000"])["pid"]
                wpid = wait_for(lambda: c.ok("status", target="w:0")[0]["pid"], what="worker")
            t0 = time.monotonic()
            self.assertEqual(d.stop(), 0)
            self.assertGreaterEqual(time.monotonic() - t0, 0.4)
            for pid in (dpid, npid, wpid):
                self.assertFalse(pid_alive(pid))
        finally:
            d.cleanup()

    def test_sighup_while_shutting_down_is_ignored(self):
        d = Daemon("", "shutdown_timeout = 30\n")
        d.start()
        try:
            with d.client() as c:
                pid = c.ok("proc.run", argv=["sleep", "1000"], name="slow")["pid"]
            d.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: "waiting up to" in d.read_log(), what="shutdown to begin")
            d.write_config("[pool:late]\ncommand = sleep 1000\n", "shutdown_timeout = 30\n")
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "SIGHUP ignored" in d.read_log(), what="SIGHUP to be logged")
            os.kill(pid, signal.SIGKILL)
            self.assertEqual(d.stop(), 0)
            log = d.read_log()
            self.assertNotIn("pool late", log)
            self.assertNotIn("configuration reloaded", log)
        finally:
            d.cleanup()


if __name__ == "__main__":
    mpsuptest.main()
