"""End-to-end tests of leftovers: what a previous mpsupd on the same socket
left running when it was killed (kill -9, outside systemd) is stopped, from
its process registry, before the new daemon starts its pools; a stale or
corrupt registry and a live daemon on the same socket are left alone."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

import mpsuptest
from mpsuptest import Daemon, wait_for, DEFAULT_DEADLINE, MPSUPD, SCALE

# Workers whose group holds a grandchild (sh waits for its sleep).
POOLS = """
[pool:a]
command = /bin/sh -c 'sleep 1000 & wait'
processes = 2
start_secs = 0
[pool:b]
command = sleep 1000
processes = 3
start_secs = 0
[pool:c]
command = /bin/sh -c 'sleep 1000 & sleep 1000 & wait'
processes = 1
start_secs = 0
"""
N_WORKERS = 6
N_MEMBERS = 2 * 2 + 3 + 1 * 3   # and their grandchildren

# A worker (and its grandchild) that ignore SIGTERM.
STUBBORN = """
[pool:s]
command = /bin/sh -c 'trap "" TERM; sleep 1000 & wait'
processes = 1
start_secs = 0
stop_timeout = 1
"""


def stat(pid):
    """(state, ppid, pgrp, session, start) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    w = s[s.rindex(")") + 2:].split()
    return w[0], int(w[1]), int(w[2]), int(w[3]), int(w[19])


def alive(pid):
    s = stat(pid)
    return s is not None and s[0] not in "ZXx"


def parent(pid):
    """The parent of a live pid, or None."""
    s = stat(pid)
    return s[1] if s and s[0] not in "ZXx" else None


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def group_members(pgids):
    """Live processes whose group is one of pgids."""
    out = []
    for pid in all_pids():
        s = stat(pid)
        if s and s[0] not in "ZXx" and s[2] in pgids:
            out.append(pid)
    return out


def environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    except OSError:
        return {}


def supervised(sock):
    """Live processes started for the daemon on sock (MPSUP_SOCKET)."""
    out = []
    for pid in all_pids():
        if alive(pid) and environ(pid).get(b"MPSUP_SOCKET") == sock.encode() \
                and b"MPSUP_POOL" in environ(pid):
            out.append(pid)
    return out


def registry_name(sock):
    h = 14695981039346656037
    for b in sock.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "mpsupd.%016x.procs" % h


def boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def forge(d, records, writer=None):
    """Write a registry for d's socket: records are (pid, start, signal,
    name); its writer is a process that has ended, unless given."""
    if writer is None:
        gone = subprocess.Popen(["true"])
        gone.wait()
        writer = gone.pid
    lines = ["mpsupd-processes 1", "boot " + boot_id(),
             "key " + registry_name(d.socket).split(".")[1],
             "daemon %d %d" % (writer, stat(writer)[4] if alive(writer) else 1)]
    for pid, start, sig, name in records:
        lines.append("p %d %d %d %d %d 5000 %s" % (pid, pid, start, start, sig, name))
    path = os.path.join(d.dir, registry_name(d.socket))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def unrelated_sleep():
    """A process of nobody's: its own session and group, like a worker."""
    p = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    wait_for(lambda: stat(p.pid) and stat(p.pid)[2] == p.pid, what="sleep to start")
    return p


class LeftoverTestCase(unittest.TestCase):
    def setUp(self):
        self.daemons = []
        self.procs = []

    def tearDown(self):
        bad = []
        for d in self.daemons:
            try:
                rc = d.stop(signal.SIGTERM)
            except AssertionError as e:
                bad.append(str(e))
                continue
            # a sanitizer report or a crash makes the daemon exit non-zero
            if rc not in (0, None):
                bad.append("mpsupd exited with %r; log:\n%s" % (rc, d.read_log()))
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        # whatever a failed test left
        for d in self.daemons:
            for pid in supervised(d.socket):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            shutil.rmtree(d.dir, ignore_errors=True)
        self.assertEqual(bad, [])

    def daemon(self, config):
        d = Daemon(config)
        self.daemons.append(d)
        return d.start()

    def running(self, d, n):
        """The pids of d's n members, once all run."""
        def ok():
            with d.client() as c:
                recs = c.ok("status")
            if len(recs) == n and all(r["state"] == "running" and r.get("pid") for r in recs):
                return [r["pid"] for r in recs]
            return None
        return wait_for(ok, what="%d processes running" % n)

    def members(self, workers, n):
        """The n processes of the workers' groups, once all run."""
        return wait_for(lambda: (lambda m: m if len(m) == n else None)(
            group_members(set(workers))), what="%d processes in the workers' groups" % n)

    def crash(self, d):
        """kill -9 the daemon, as outside systemd nothing stops its workers."""
        d.proc.kill()
        d.proc.wait()
        self.assertEqual(d.stop(), -signal.SIGKILL)

    def restart_log(self, d, before):
        return d.read_log()[before:]

    def test_restart_stops_what_the_killed_daemon_left(self):
        d = self.daemon(POOLS)
        workers = self.running(d, N_WORKERS)
        # a worker that ended (and its successor) before the crash
        with d.client() as c:
            first = c.ok("status", target="b:0")[0]["pid"]
        os.kill(first, signal.SIGKILL)
        workers = wait_for(lambda: (lambda w: w if first not in w else None)(
            self.running(d, N_WORKERS)), what="b:0 to be restarted")
        # every member of the workers' groups: workers and the sleeps of sh
        old = self.members(workers, N_MEMBERS)
        self.crash(d)
        self.assertTrue(all(alive(p) for p in old), "the workers outlive a killed daemon")
        before = len(d.read_log())
        d.start()
        new = self.running(d, N_WORKERS)
        log = self.restart_log(d, before)
        left = [p for p in old if alive(p)]
        self.assertEqual(left, [], "old processes still run; log:\n" + log)
        self.assertFalse(set(new) & set(old))
        # exactly the configured workers: children of the new daemon, and
        # every supervised process in one of their groups
        children = [p for p in all_pids() if parent(p) == d.pid()]
        self.assertEqual(sorted(children), sorted(new))
        now = self.members(new, N_MEMBERS)
        self.assertEqual(sorted(supervised(d.socket)), sorted(now))
        # the log says what it stopped, before the pools started
        for w in workers:
            self.assertRegex(log, r"leftover \S+ of the previous mpsupd \(pid \d+\): SIGTERM "
                             r"to group %d" % w)
        for p in old:
            self.assertRegex(log, r"\b%d\b" % p)
        self.assertRegex(log, r"leftovers of the previous mpsupd \(pid \d+\) stopped: "
                         r"%d processes in %d groups" % (len(old), N_WORKERS))
        self.assertLess(log.index("leftovers of the previous"), log.index("spawned pid"))
        # an orderly stop leaves no registry behind
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(os.path.join(d.dir, registry_name(d.socket))))

    def test_a_group_that_ignores_sigterm_gets_sigkill_after_stop_timeout(self):
        d = self.daemon(STUBBORN)
        workers = self.running(d, 1)
        old = self.members(workers, 2)
        self.crash(d)
        before = len(d.read_log())
        t0 = time.monotonic()
        d.start()
        self.running(d, 1)
        log = self.restart_log(d, before)
        self.assertEqual([p for p in old if alive(p)], [], log)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertRegex(log, r"leftover s:0 \(group %d\): still running after 1s: SIGKILL"
                         % workers[0])
        self.assertRegex(log, r"stopped: 2 processes in 1 group .*\(2 by SIGKILL\)")

    def test_a_group_whose_leader_is_gone_is_found_in_proc(self):
        # the worker exits at once, leaving a child that ignores SIGTERM: a
        # stray group the daemon is still stopping when it is killed
        conf = ("[pool:x]\ncommand = /bin/sh -c 'trap \"\" TERM; sleep 1000 & exit 0'\n"
                "processes = 1\nrestart = never\nstart_secs = 0\nstop_timeout = 5\n")
        d = self.daemon(conf)
        wait_for(lambda: d.ok("daemon.info")["processes"]["stray_groups"] == 1,
                 what="a stray group")
        self.assertEqual(d.ok("status", target="x:0")[0]["exitcode"], 0)
        left = supervised(d.socket)   # the sleep, in the group of the gone sh
        self.assertEqual(len(left), 1)
        orphan = left[0]
        pgid = stat(orphan)[2]
        self.crash(d)
        self.assertTrue(alive(orphan))
        # the recorded stop settings apply, not the new config's
        d.write_config(conf.replace("stop_timeout = 5", "stop_timeout = 1"))
        before = len(d.read_log())
        d.start()
        log = d.read_log()[before:]
        self.assertFalse(alive(orphan), log)
        self.assertRegex(log, r"leftover x:0 of the previous mpsupd \(pid \d+\): SIGTERM to "
                         r"group %d, 1 process: %d\n" % (pgid, orphan))
        self.assertRegex(log, r"leftover x:0 \(group %d\): still running after 5s: SIGKILL"
                         % pgid)

    def test_a_reused_pid_is_left_alone(self):
        d = Daemon(POOLS)
        self.daemons.append(d)
        stranger = unrelated_sleep()
        victim = unrelated_sleep()   # a real leftover: its record is right
        self.procs += [stranger, victim]
        forge(d, [(stranger.pid, stat(stranger.pid)[4] + 1, signal.SIGTERM, "a:0"),
                  (victim.pid, stat(victim.pid)[4], signal.SIGTERM, "a:1")])
        d.start()
        self.running(d, N_WORKERS)
        log = d.read_log()
        wait_for(lambda: victim.poll() is not None, what="the recorded process to end")
        self.assertEqual(victim.returncode, -signal.SIGTERM)
        self.assertIsNone(stranger.poll(), "a process with another start time was killed")
        self.assertRegex(log, r"leftover a:0: pid %d now belongs to another process" % stranger.pid)

    def test_a_registry_whose_writer_still_runs_is_left_alone(self):
        # (its lock lost: say the lock file was removed under it)
        d = Daemon(POOLS)
        self.daemons.append(d)
        writer = unrelated_sleep()
        victim = unrelated_sleep()
        self.procs += [writer, victim]
        forge(d, [(victim.pid, stat(victim.pid)[4], signal.SIGKILL, "a:0")], writer=writer.pid)
        d.start()
        self.running(d, N_WORKERS)
        self.assertRegex(d.read_log(), r"the daemon that wrote .* \(pid %d\) still runs: its 1 "
                         r"process group left alone" % writer.pid)
        self.assertIsNone(victim.poll())

    def test_corrupt_or_oversized_registry_is_ignored(self):
        victim = unrelated_sleep()
        self.procs.append(victim)
        cases = {
            # a right record, but a line the reader does not know: all of it
            # is ignored
            "unknown line": lambda d: self.append(forge(
                d, [(victim.pid, stat(victim.pid)[4], signal.SIGKILL, "a:0")]), "q 1 2\n"),
            "garbage": lambda d: self.write(d, b"\x00\xff" * 100 + b"\np 1 1 1 9 0 x\n"),
            "bad field": lambda d: self.edit(forge(
                d, [(victim.pid, stat(victim.pid)[4], signal.SIGKILL, "a:0")]),
                " 5000 a:0", " -5 a:0"),
            "oversized": lambda d: self.sparse(d, 49 << 20),
        }
        for what, make in cases.items():
            with self.subTest(what):
                d = Daemon(POOLS)
                self.daemons.append(d)
                make(d)
                d.start()
                self.running(d, N_WORKERS)
                log = d.read_log()
                self.assertRegex(log, r"mpsupd\.[0-9a-f]{16}\.procs (is corrupt|is too large)"
                                 r".*: ignored")
                self.assertIsNone(victim.poll(), "%s: a record of an ignored file was used"
                                  % what)
                self.assertEqual(d.stop(), 0)

    def write(self, d, data):
        with open(os.path.join(d.dir, registry_name(d.socket)), "wb") as f:
            f.write(data)

    def sparse(self, d, size):
        with open(os.path.join(d.dir, registry_name(d.socket)), "wb") as f:
            f.truncate(size)

    def append(self, path, text):
        with open(path, "a") as f:
            f.write(text)

    def edit(self, path, old, new):
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(old, new))

    def test_second_daemon_on_the_same_socket_leaves_the_first_alone(self):
        d = self.daemon(POOLS)
        workers = self.running(d, N_WORKERS)
        members = sorted(self.members(workers, N_MEMBERS))
        # started the usual way: the socket answers, it refuses
        d2 = Daemon(POOLS)
        self.daemons.append(d2)
        d2.socket = d.socket
        d2.write_config(POOLS)
        d2.start(wait=False)
        self.assertNotEqual(d2.proc.wait(timeout=DEFAULT_DEADLINE * SCALE), 0)
        self.assertIn("already running", d2.read_log())
        d2.stop()
        # handed a listening socket of that path (socket activation): the
        # registry's lock refuses it
        d3 = Daemon(POOLS)
        self.daemons.append(d3)
        d3.socket = d.socket
        d3.write_config(POOLS)
        aside = d.socket + ".aside"
        os.rename(d.socket, aside)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lsock.bind(d.socket)
            lsock.listen(8)
            os.rename(aside, d.socket)   # the first daemon's socket is back
            wrap = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                    "os.environ['LISTEN_FDS'] = '1'; "
                    "os.environ['LISTEN_PID'] = str(os.getpid()); "
                    "os.execv(sys.argv[2], sys.argv[2:])")
            d3.log = open(d3.logfile, "ab")
            d3.proc = subprocess.Popen([sys.executable, "-c", wrap, str(lsock.fileno()),
                                        MPSUPD, "-c", d3.conf],
                                       pass_fds=(lsock.fileno(),), stdout=d3.log,
                                       stderr=subprocess.STDOUT, env=d3.env, cwd=d3.dir)
            try:
                rc = d3.proc.wait(timeout=DEFAULT_DEADLINE * SCALE)
            except subprocess.TimeoutExpired:
                rc = None   # it runs: stopped by d3.stop() below
        finally:
            lsock.close()
        log3 = d3.read_log()
        d3.stop()
        self.assertNotIn(rc, (0, None), "a second daemon ran on a live daemon's socket:\n" + log3)
        self.assertRegex(log3, r"another mpsupd \(pid %d\) holds .*\.lock: not starting"
                         % d.pid())
        self.assertNotIn("leftover", log3)
        # the first daemon's processes all still run, and nothing was added
        self.assertTrue(all(alive(p) for p in members))
        self.assertEqual(sorted(supervised(d.socket)), members)
        self.assertEqual(sorted(self.running(d, N_WORKERS)), sorted(workers))

    def test_runtime_dir(self):
        d = Daemon(POOLS)
        self.daemons.append(d)
        run = os.path.join(d.dir, "run")
        os.mkdir(run, 0o700)
        d.write_config(POOLS, "runtime_dir = %s\n" % run)
        d.start()
        workers = self.running(d, N_WORKERS)
        old = self.members(workers, N_MEMBERS)
        self.assertTrue(os.path.exists(os.path.join(run, registry_name(d.socket))))
        self.assertFalse(os.path.exists(os.path.join(d.dir, registry_name(d.socket))))
        self.crash(d)
        before = len(d.read_log())
        d.start()
        self.running(d, N_WORKERS)
        self.assertEqual([p for p in old if alive(p)], [], d.read_log()[before:])
        self.assertEqual(d.stop(), 0)
        # a directory others may write to could hold a forged registry
        os.chmod(run, 0o777)
        before = len(d.read_log())
        d.start(wait=False)
        self.assertEqual(d.proc.wait(timeout=DEFAULT_DEADLINE * SCALE), 1)
        self.assertRegex(d.read_log()[before:],
                         r"runtime directory %s: writable by others" % re.escape(run))
        d.stop()
        self.assertEqual(supervised(d.socket), [])
        # a relative one is a config error
        d.write_config(POOLS, "runtime_dir = run\n")
        p = subprocess.run([MPSUPD, "--check-config", d.conf], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("runtime_dir must be an absolute path", p.stderr)


if __name__ == "__main__":
    mpsuptest.main()
