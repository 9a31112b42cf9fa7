"""End-to-end tests of readiness by notification (ready = notify): a worker
is running when it sends READY=1 to its NOTIFY_SOCKET (libsystemd's
sd_notify and systemd-notify, unchanged), STATUS= is shown, STOPPING=1 is
honoured, ready_timeout fails the start, and the socket is a path only the
worker's uid can reach, bounded in datagram size."""
import array
import os
import pwd
import shutil
import socket
import stat

import mpsuptest
from mpsuptest import DaemonTestCase, wait_for

BUILD = os.environ.get("MPSUP_BUILDDIR", os.getcwd())
WORKER = os.path.join(BUILD, "tests", "e2e", "notify_worker")


class Readiness(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.gate = os.path.join(self.d.dir, "gate")

    def add(self, name, command, **kw):
        params = dict(pool=name, command=command, ready="notify", start_secs=0)
        params.update(kw)
        self.d.ok("pool.add", **params)

    def rec(self, name):
        return self.d.ok("status", target=name)[0]

    def wait_state(self, name, state):
        return wait_for(lambda: (lambda r: r if r["state"] == state else None)(self.rec(name)),
                        what="%s %s" % (name, state))

    def test_sd_notify_slow_worker(self):
        with self.d.client() as ev:
            ev.send("events.subscribe", topics=["process"])
            self.assertTrue(ev.recv()["ok"])
            self.add("slow", "%s %s 'STATUS=warming up' READY=1" % (WORKER, self.gate))
            r = self.wait_state("slow:0", "starting")
            # it stays starting as long as it says nothing (start_secs = 0)
            self.assertIsNone(r["notify_status"])
            open(self.gate, "w").close()
            seen = []
            while not (seen and seen[-1].get("to") == "running"):
                seen.append(ev.recv())
            self.assertEqual([(e["from"], e["to"]) for e in seen],
                             [("stopped", "starting"), ("starting", "running")])
        r = self.rec("slow:0")
        self.assertEqual(r["notify_status"], "warming up")
        out = self.d.mpctl("status", "slow", check=0).stdout.splitlines()
        self.assertEqual(out[0].split()[-1], "STATUS")
        self.assertTrue(out[1].endswith("warming up"), out)
        # "starting" comes at fork: the environment is the worker's once it has run exec
        path = wait_for(lambda: dict(
            l.split("=", 1) for l in open("/proc/%d/environ" % r["pid"]).read()
            .split("\0") if "=" in l).get("NOTIFY_SOCKET"), what="the worker's NOTIFY_SOCKET")
        self.assertTrue(path.startswith(self.d.dir + "/notify/%d/" % os.getuid()), path)
        st = os.stat(os.path.dirname(path))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o700, os.getuid()))

    def test_systemd_notify(self):
        tool = shutil.which("systemd-notify")
        if not tool:
            self.skipTest("no systemd-notify")
        self.add("sh", "sh -c '%s --status=\"shell up\" --ready; exec sleep 1000'" % tool)
        r = self.wait_state("sh:0", "running")
        self.assertEqual(r["notify_status"], "shell up")

    def test_never_ready(self):
        self.add("never", "sleep 1000", ready_timeout=0.3, start_retries=1, backoff_max=0.1)
        r = wait_for(lambda: (lambda r: r if r["state"] == "fatal" else None)(
            self.rec("never:0")), what="never fatal")
        self.assertEqual(r["reason"], "ready timeout")
        self.assertEqual(r["restarts"], 1)  # backoff, one retry, then gave up
        self.assertIn("not ready after 0.3s", self.d.read_log())

    def test_stopping_is_a_planned_exit(self):
        with self.d.client() as ev:
            ev.send("events.subscribe", topics=["process"])
            self.assertTrue(ev.recv()["ok"])
            # exits right after READY=1: a crash would go to backoff
            self.add("bye", "%s %s READY=1 STOPPING=1 exit" % (WORKER, self.gate),
                     backoff_max=5)
            self.wait_state("bye:0", "starting")
            open(self.gate, "w").close()
            seen = []
            while len(seen) < 3:
                e = ev.recv()
                if e.get("name") == "bye:0":
                    seen.append((e["from"], e["to"]))
            self.assertEqual(seen, [("stopped", "starting"), ("starting", "running"),
                                    ("running", "starting")])

    def test_hostile_datagrams(self):
        self.add("never", "sleep 1000", ready_timeout=0)
        r = self.wait_state("never:0", "starting")
        # "starting" comes at fork: the environment is the worker's once it has run exec
        path = wait_for(lambda: dict(
            l.split("=", 1) for l in open("/proc/%d/environ" % r["pid"]).read()
            .split("\0") if "=" in l).get("NOTIFY_SOCKET"), what="the worker's NOTIFY_SOCKET")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        # too large: dropped whole, READY=1 or not
        s.sendto(b"READY=1\n" + b"X" * 8000, path)
        # a flood: the rate bound drops most of it, the daemon answers
        s.setblocking(False)
        for _ in range(2000):
            try:
                s.sendto(b"STATUS=flood", path)
            except BlockingIOError:
                break
        s.setblocking(True)
        wait_for(lambda: self.rec("never:0")["notify_status"] == "flood", what="flood read")
        s.close()
        # read after the large one: that was not taken as READY=1
        self.assertEqual(self.rec("never:0")["state"], "starting")

    def test_datagrams_with_descriptors(self):
        """Descriptors sent along are closed unread: more than the control
        buffer holds (cut by the kernel), with a datagram too large or past
        the rate; the daemon keeps none and still reads the messages."""
        self.add("fds", "sleep 1000", ready_timeout=0)
        r = self.wait_state("fds:0", "starting")
        path = wait_for(lambda: dict(
            l.split("=", 1) for l in open("/proc/%d/environ" % r["pid"]).read()
            .split("\0") if "=" in l).get("NOTIFY_SOCKET"), what="the worker's NOTIFY_SOCKET")
        before = self.d.fd_count()
        rd, wr = os.pipe()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        many = array.array("i", [rd, wr] * 100)  # 200: past the 16 read
        try:
            for k in range(5):
                s.sendmsg([b"STATUS=with fds %d" % k],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, many)], 0, path)
            s.sendmsg([b"READY=1\n" + b"X" * 8000],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, many)], 0, path)
            s.sendmsg([b"STATUS=last"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array("i", [rd]))], 0, path)
            wait_for(lambda: self.rec("fds:0")["notify_status"] == "last", what="last read")
        finally:
            s.close()
            os.close(rd)
        # the read end is closed everywhere: a write fails at once
        with self.assertRaises(BrokenPipeError):
            os.write(wr, b"x")
        os.close(wr)
        # none kept (a client connection counted before may have closed
        # since: at most as many; a kept descriptor would add 16 a message)
        wait_for(lambda: self.d.fd_count() <= before, what="no descriptor kept")
        self.assertEqual(self.rec("fds:0")["state"], "starting")

    def test_other_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run a pool as nobody")
        tool = shutil.which("systemd-notify")
        if not tool:
            self.skipTest("no systemd-notify")
        os.chmod(self.d.dir, 0o711)  # the runtime directory must be traversable
        self.add("nob", "sh -c '%s --ready; exec sleep 1000'" % tool, user="nobody")
        self.wait_state("nob:0", "running")
        uid = pwd.getpwnam("nobody").pw_uid
        st = os.stat(os.path.join(self.d.dir, "notify", str(uid)))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o700, uid))


if __name__ == "__main__":
    mpsuptest.main()
