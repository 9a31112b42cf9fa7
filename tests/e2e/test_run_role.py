"""End-to-end tests of the `run` role (DESIGN §9): ordinary users start and
control their own processes, as themselves, and nothing else.

The tests run as root, create two users for the test (removed after) and
drive clients running as them (runpeer.py); the daemon runs as root.
"""
import os
import shutil
import signal
import unittest

import mpsuptest
from mpsuptest import Daemon, wait_for
from runpeer import RootUser, RunPeer, TestUser, why_not_runnable


USERS = {}


def setUpModule():
    if why_not_runnable():
        return
    USERS["a"] = TestUser("a")
    USERS["b"] = TestUser("b")


def tearDownModule():
    for u in USERS.values():
        u.remove()


def private_object_hidden(tc):
    """A private dict: another uid cannot tell it exists (not_found for
    every op, obj.list, events); its owner and an admin can. Run by the
    local and the redis state backends' tests; returns b's event stream."""
    a, b = tc.a, tc.b
    tc.assertEqual(a.ok("obj.create", name="pv", type="dict", access="private"),
                   {"created": True})
    ev = tc.subscribe(b, ["object"])
    a.ok("dict.set", name="pv", key="k", value=1)
    tc.assertEqual(a.ok("dict.get", name="pv", key="k"), 1)
    for cmd, params in (("dict.get", {"key": "k"}), ("dict.set", {"key": "k", "value": 2}),
                        ("dict.len", {}), ("list.append", {"value": 1}),
                        ("obj.get", {}), ("obj.delete", {}),
                        ("obj.create", {"type": "dict"}),
                        ("obj.create", {"type": "list"})):
        r = b.call(cmd, name="pv", **params)
        tc.assertEqual(r["error"]["code"], "not_found", (cmd, r))
    tc.assertEqual(b.ok("obj.list"), [])
    tc.assertEqual([o["name"] for o in a.ok("obj.list")], ["pv"])
    tc.assertEqual([o["name"] for o in tc.d.ok("obj.list")], ["pv"])
    tc.assertEqual(tc.d.ok("obj.get", name="pv"), {"k": 1})
    # b's stream skips the private object's events: the next one is the marker
    tc.d.ok("dict.set", name="marker", key="k", value=1)
    first = b.do(op="read", conn=ev)
    tc.assertEqual(first["name"], "marker", first)
    tc.assertEqual(b.code("obj.create", name="pv", type="dict", access="bogus"),
                   "not_found")
    tc.assertEqual(a.code("obj.create", name="pw", type="dict", access="bogus"),
                   "bad_request")
    return ev


class RunRoleTestCase(unittest.TestCase):
    """A root daemon whose socket the test users can reach; [access] gives
    user A the run role and user B too (each is the other's stranger)."""
    main_config = ""
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        why = why_not_runnable()
        if why:
            raise unittest.SkipTest(why)
        cls.ua, cls.ub = USERS["a"], USERS["b"]

    def setUp(self):
        self.d = Daemon("[access]\nrun = %s %s\n%s" % (self.ua.name, self.ub.name,
                                                      self.extra_config),
                        "socket_mode = 0666\n" + self.main_config)
        os.chmod(self.d.dir, 0o755)
        self.d.start()
        self.peers = []
        self.a = self.peer(self.ua)
        self.b = self.peer(self.ub)

    def peer(self, user):
        p = RunPeer(self.d.socket, user)
        self.peers.append(p)
        return p

    def tearDown(self):
        for p in self.peers:
            p.finish()
        # what the tests left running would hold the shutdown
        if self.d.proc is not None and self.d.proc.poll() is None:
            for pool in self.d.ok("pool.list"):
                self.d.ok("pool.remove", pool=pool["pool"])
            for rec in self.d.ok("status"):
                if rec["is_alive"]:  # a removed pool's members may go meanwhile
                    with self.d.client() as c:
                        c.call("proc.kill", target=rec["name"])
                        c.call("proc.join", target=rec["name"])
        rc = self.d.stop()
        log = self.d.read_log()
        shutil.rmtree(self.d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None), "mpsupd exited with %r; log:\n%s" % (rc, log))

    def record(self, name):
        return self.d.ok("status", target=name)[0]

    def proc_ids(self, pid):
        """(uid, gid, groups) of a live process, from /proc."""
        uid = gid = None
        groups = []
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                elif line.startswith("Gid:"):
                    gid = int(line.split()[1])
                elif line.startswith("Groups:"):
                    groups = sorted(int(g) for g in line.split()[1:])
        return uid, gid, groups


class RunOwnProcesses(RunRoleTestCase):

    def test_run_status_join_as_the_peer(self):
        res = self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="mine")
        self.assertEqual(res["name"], "mine")
        uid, gid, groups = self.proc_ids(res["pid"])
        self.assertEqual((uid, gid), (self.ua.uid, self.ua.gid))
        self.assertEqual(groups, [self.ua.gid])
        self.assertTrue(any(r["name"] == "mine" for r in self.a.ok("status")))
        self.assertTrue(self.a.ok("proc.join", target="mine", timeout=0)["is_alive"])
        self.assertEqual(self.a.ok("proc.terminate", target="mine")[0]["name"], "mine")
        self.assertEqual(self.a.ok("proc.join", target="mine"),
                         {"exitcode": -15, "is_alive": False})
        self.a.ok("proc.forget", name="mine")
        self.assertEqual(self.a.code("proc.join", target="mine"), "not_found")

    def test_every_control_command_on_its_own(self):
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="s1")
        self.assertEqual(self.a.ok("proc.signal", target="s1", signal="USR1")[0]["name"],
                         "s1")
        self.assertEqual(self.a.ok("proc.join", target="s1")["exitcode"], -10)
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="s2")
        self.a.ok("proc.kill", target="s2")
        self.assertEqual(self.a.ok("proc.join", target="s2")["exitcode"], -9)
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="s3")
        self.assertEqual(self.a.ok("proc.stop", target="s3")[0]["exitcode"], -15)

    def test_not_another_users_process(self):
        self.b.ok("proc.run", argv=["/bin/sleep", "30"], name="theirs")
        for cmd, params in (("proc.terminate", {"target": "theirs"}),
                            ("proc.kill", {"target": "theirs"}),
                            ("proc.stop", {"target": "theirs"}),
                            ("proc.signal", {"target": "theirs", "signal": "TERM"})):
            self.assertEqual(self.a.code(cmd, **params), "permission_denied", cmd)
        self.assertTrue(self.record("theirs")["is_alive"])
        self.b.ok("proc.kill", target="theirs")
        self.b.ok("proc.join", target="theirs")
        self.assertEqual(self.a.code("proc.forget", name="theirs"), "permission_denied")
        self.assertTrue(any(r["name"] == "theirs" for r in self.d.ok("status")))

    def test_not_an_admins_process_nor_a_pool(self):
        self.d.ok("proc.run", argv=["/bin/sleep", "30"], name="roots")
        self.d.ok("pool.add", pool="web", command="/bin/sleep 30", processes=1)
        for target in ("roots", "web", "web:0"):
            self.assertEqual(self.a.code("proc.kill", target=target), "permission_denied")
        self.assertEqual(self.a.code("proc.start", target="web"), "permission_denied")
        self.assertEqual(self.a.code("pool.scale", pool="web", processes=2),
                         "permission_denied")
        self.assertTrue(self.record("roots")["is_alive"])

    def test_star_means_its_own(self):
        self.b.ok("proc.run", argv=["/bin/sleep", "30"], name="theirs")
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="mine")
        killed = self.a.ok("proc.kill", target="*")
        self.assertEqual([r["name"] for r in killed], ["mine"])
        self.assertTrue(self.record("theirs")["is_alive"])

    def test_no_user_or_group(self):
        for params in ({"user": "root"}, {"user": 0}, {"user": self.ua.name},
                       {"group": "root"}, {"user": "root", "group": "root"}):
            self.assertEqual(self.a.code("proc.run", argv=["/bin/true"], **params),
                             "permission_denied", params)
        self.assertEqual(self.d.ok("status"), [])

    def test_state_peer_cannot_run(self):
        d2 = Daemon("[access]\nstate = %s\n" % self.ua.name, "socket_mode = 0666\n")
        os.chmod(d2.dir, 0o755)
        d2.start()
        try:
            p = RunPeer(d2.socket, self.ua)
            self.assertEqual(p.code("proc.run", argv=["/bin/true"]), "permission_denied")
            p.finish()
        finally:
            d2.cleanup()


def pidfds(pid):
    """The pidfds a process holds (the daemon: one per watched process)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:[pidfd]"
        except OSError:
            pass
    return n


class ProcessScope(RunRoleTestCase):
    """scope "process": things that end with the process that made them."""

    def test_sigkill_of_the_owner(self):
        a = self.a
        for name, typ in (("sq", "queue"), ("sd", "dict"), ("sl", "lock")):
            self.assertEqual(a.ok("obj.create", name=name, type=typ, scope="process"),
                             {"created": True})
        a.ok("dict.set", name="sd", key="k", value=1)
        holder = self.d.client()  # a lock held by another connection
        self.assertTrue(holder.ok("lock.acquire", name="sl")["acquired"])
        dmn = a.ok("proc.run", argv=["/bin/sleep", "60"], name="dmn", daemon=True,
                   scope="process")
        nd = a.ok("proc.run", argv=["/bin/sleep", "60"], name="nd", scope="process")
        root = self.peer(RootUser)
        root.ok("pool.add", pool="sp", command="/bin/sleep 60", processes=2, scope="process")
        wait_for(lambda: all(r["is_alive"] for r in self.d.ok("status", target="sp")),
                 what="the scoped pool's members")
        self.d.ok("obj.create", name="kept", type="dict")
        # one pidfd per owning process, shared by everything it owns
        self.assertEqual(pidfds(self.d.pid()), 2)
        # waiters on the scoped objects
        getter, locker = self.d.client(), self.d.client()
        getter.send("queue.get", name="sq")
        locker.send("lock.acquire", name="sl")
        wait_for(lambda: {o["name"]: o["waiters"] for o in self.d.ok("obj.list")}["sl"] == 1,
                 what="the lock's waiter")
        a.kill()
        self.assertEqual(getter.recv()["error"]["code"], "not_found")
        self.assertEqual(locker.recv()["error"]["code"], "not_found")
        getter.close()
        locker.close()
        holder.close()
        self.assertEqual(sorted(o["name"] for o in self.d.ok("obj.list")), ["kept"])
        self.assertEqual(self.d.ok("proc.join", target="dmn")["exitcode"], -15)
        self.assertTrue(self.record("nd")["is_alive"])
        self.assertEqual(nd["pid"], self.record("nd")["pid"])
        self.assertIn("pid %d exited (pidfd)" % a.pid, self.d.read_log())
        root.kill()
        wait_for(lambda: self.d.ok("pool.list") == [], what="the scoped pool removed")
        self.assertEqual(pidfds(self.d.pid()), 0)
        self.assertNotEqual(dmn["pid"], None)

    def test_things_unscoped_first_close_the_pidfd(self):
        self.a.ok("obj.create", name="t1", type="event", scope="process")
        self.assertEqual(pidfds(self.d.pid()), 1)
        self.a.ok("obj.delete", name="t1")
        self.assertEqual(pidfds(self.d.pid()), 0)
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="t2", daemon=True,
                  scope="process")
        self.assertEqual(pidfds(self.d.pid()), 1)
        self.a.ok("proc.kill", target="t2")
        self.a.ok("proc.join", target="t2")  # ended: nothing left to stop
        self.assertEqual(pidfds(self.d.pid()), 0)

    def test_bad_scope(self):
        for v in ("thread", 1, None):
            self.assertEqual(self.a.code("obj.create", name="x", type="dict", scope=v),
                             "bad_request", v)
            self.assertEqual(self.a.code("proc.run", argv=["/bin/true"], scope=v),
                             "bad_request", v)
        self.assertEqual(self.d.ok("obj.list"), [])


class PrivateAccess(RunRoleTestCase):
    """access "private": another uid cannot tell the thing exists."""

    def subscribe(self, peer, topics):
        conn = peer.connect()
        self.assertTrue(peer.call("events.subscribe", conn=conn, topics=topics)["ok"])
        return conn

    def test_private_object(self):
        private_object_hidden(self)

    def test_private_pool(self):
        a, b = self.a, self.b
        self.d.ok("pool.add", pool="pp", command="/bin/sleep 60", processes=1,
                  access="private")
        wait_for(lambda: self.record("pp:0")["is_alive"], what="pp:0")
        ev = self.subscribe(b, ["process", "pool"])
        self.d.ok("proc.restart", target="pp")
        self.d.ok("pool.scale", pool="pp", processes=2)
        for cmd, params in (("status", {"target": "pp"}), ("status", {"target": "pp:0"}),
                            ("proc.join", {"target": "pp:0", "timeout": 0}),
                            ("proc.logs", {"target": "pp"}),
                            ("proc.kill", {"target": "pp"}),
                            ("pool.submit", {"pool": "pp", "item": 1}),
                            ("pool.map", {"pool": "pp", "items": [1]})):
            r = b.call(cmd, **params)
            self.assertEqual(r["error"]["code"], "not_found", (cmd, r))
        self.assertEqual(b.ok("status"), [])
        self.assertEqual(b.ok("pool.list"), [])
        self.assertEqual(a.ok("pool.list"), [])
        self.assertEqual([p["pool"] for p in self.d.ok("pool.list")], ["pp"])
        # the metrics answer any reader: a private pool is not in them
        self.assertNotIn('"pp', b.ok("daemon.metrics"))
        self.d.ok("pool.add", pool="marker", command="/bin/sleep 60", processes=0)
        first = b.do(op="read", conn=ev)
        self.assertEqual(first.get("pool"), "marker", first)


class PrivateAcrossRestarts(RunRoleTestCase):
    """A private object stays its owner's in the state file (log and
    snapshot); a scoped one is not written at all."""
    def setUp(self):
        self.main_config = ""
        super().setUp()
        for p in self.peers:
            p.finish()
        self.d.stop()
        self.d.write_config("[access]\nrun = %s %s\n" % (self.ua.name, self.ub.name),
                            "socket_mode = 0666\nstate_file = %s\nstate_sync = always\n"
                            % os.path.join(self.d.dir, "state"))
        self.d.start()
        self.peers = []
        self.a, self.b = self.peer(self.ua), self.peer(self.ub)

    def restart(self):
        for p in self.peers:
            p.finish()
        self.peers = []
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        self.a, self.b = self.peer(self.ua), self.peer(self.ub)

    def test_log_and_snapshot(self):
        self.a.ok("obj.create", name="pv", type="dict", access="private")
        self.a.ok("dict.set", name="pv", key="k", value=1)
        self.a.ok("obj.create", name="sc", type="dict", scope="process")
        self.a.ok("dict.set", name="sc", key="k", value=1)
        self.restart()  # from the log
        self.assertEqual(self.b.code("obj.get", name="pv"), "not_found")
        self.assertEqual(self.a.ok("obj.get", name="pv"), {"k": 1})
        self.assertEqual([o["name"] for o in self.d.ok("obj.list")], ["pv"])
        self.restart()  # a clean stop wrote a snapshot
        self.assertEqual(self.b.code("obj.get", name="pv"), "not_found")
        self.assertEqual(self.b.ok("obj.list"), [])
        self.assertEqual(self.a.ok("obj.get", name="pv"), {"k": 1})


WORKER = "/usr/bin/python3 %s" % os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "task_worker.py")


class RunPools(RunRoleTestCase):
    """Transient task pools of run peers: scoped, as the peer, u<UID>.NAME."""

    def test_task_pool_as_the_peer_replaces_spent_workers(self):
        name = "u%d.work" % self.ua.uid
        res = self.a.ok("pool.add", pool=name, command=WORKER, mode="task", processes=1,
                        task_max_per_worker=2, scope="process")
        self.assertEqual(res["pool"], name)
        self.assertEqual(res["task_max_per_worker"], 2)
        wait_for(lambda: self.record(name + ":0")["state"] == "running", what="the worker")
        uid, gid, groups = self.proc_ids(self.record(name + ":0")["pid"])
        self.assertEqual((uid, gid, groups), (self.ua.uid, self.ua.gid, [self.ua.gid]))
        pids = self.a.ok("pool.map", pool=name, items=[{"pid": True}] * 5)["results"]
        self.assertEqual(pids[0], pids[1])
        self.assertEqual(pids[2], pids[3])
        self.assertEqual(len({pids[0], pids[2], pids[4]}), 3, pids)
        # b may use neither the pool's control nor a name of a's
        self.assertEqual(self.b.code("pool.remove", pool=name), "permission_denied")
        self.assertEqual(self.b.code("proc.kill", target=name), "permission_denied")
        self.assertEqual(self.a.ok("pool.remove", pool=name), {"removed": name})

    def test_rules(self):
        uid = self.ua.uid
        good = {"pool": "u%d.p" % uid, "command": "/bin/sleep 60", "scope": "process"}
        for change, code in (({"scope": None}, "permission_denied"),
                             ({"pool": "mine"}, "bad_request"),
                             ({"pool": "u%d.p" % self.ub.uid}, "bad_request"),
                             ({"pool": "u%d." % uid}, "bad_request"),
                             ({"user": "root"}, "permission_denied"),
                             ({"group": "root"}, "permission_denied"),
                             ({"stdout": "file:/tmp/x"}, "permission_denied"),
                             ({"limit_nofile": 1000000}, "permission_denied"),
                             ({"processes": 300}, "limit")):
            params = dict(good)
            params.update(change)
            params = {k: v for k, v in params.items() if v is not None}
            self.assertEqual(self.a.code("pool.add", **params), code, change)
        self.assertEqual(self.d.ok("pool.list"), [])
        self.assertEqual(self.a.code("pool.scale", pool="u%d.p" % uid, processes=1),
                         "permission_denied")

    def test_configured_pools_cannot_take_those_names(self):
        import subprocess
        conf = os.path.join(self.d.dir, "reserved.conf")
        with open(conf, "w") as f:
            f.write("[pool:u1000.web]\ncommand = /bin/true\n")
        p = subprocess.run([mpsuptest.MPSUPD, "--check-config", conf], capture_output=True,
                           text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("kept for the pools of run peers", p.stderr + p.stdout)


def fd_targets(pid):
    """What each descriptor of a process points at."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


class PassedStdio(RunRoleTestCase):
    """stdio "passed": the caller's 0, 1, 2 as SCM_RIGHTS with the line."""
    main_config = "max_oneshots = 50\n"

    def fds_now(self):
        """The daemon's descriptors once the peers' connections are in."""
        for p in self.peers:
            if p.p.poll() is None:
                p.ok("ping")
        return self.d.fd_count()

    def pipe(self, peer):
        p = peer.do(op="pipe")
        return p["r"], p["w"]

    def test_output_lands_in_the_callers_pipe(self):
        r, w = self.pipe(self.a)
        res = self.a.do(op="send", conn=self.a.conn, fds=[r, w, w],
                        req={"cmd": "proc.run", "argv": ["/bin/sh", "-c", "echo out; echo err >&2"],
                             "stdio": "passed", "name": "p1"})
        self.assertTrue(res["ok"], res)
        self.assertEqual(self.a.ok("proc.join", target="p1")["exitcode"], 0)
        got = self.a.do(op="readfd", fd=r, close=[w])
        self.assertEqual((got["data"], got["eof"]), ("out\nerr\n", True))

    def test_line_split_across_reads(self):
        r, w = self.pipe(self.a)
        res = self.a.do(op="send", conn=self.a.conn, fds=[r, w, w], split=7,
                        req={"cmd": "proc.run", "argv": ["/bin/echo", "split"],
                             "stdio": "passed", "name": "p2"})
        self.assertTrue(res["ok"], res)
        self.a.ok("proc.join", target="p2")
        self.assertEqual(self.a.do(op="readfd", fd=r, close=[w])["data"], "split\n")

    def test_other_children_do_not_get_them(self):
        r, w = self.pipe(self.a)
        res = self.a.do(op="send", conn=self.a.conn, fds=[r, w, w],
                        req={"cmd": "proc.run", "argv": ["/bin/sleep", "30"],
                             "stdio": "passed", "name": "holder"})
        self.assertTrue(res["ok"], res)
        pipe_ino = fd_targets(res["result"]["pid"])[1]
        self.assertTrue(pipe_ino.startswith("pipe:"), pipe_ino)
        other = self.d.ok("proc.run", argv=["/bin/sleep", "30"], name="other")
        # (sleep may hold a file of its own for a moment while it starts)
        wait_for(lambda: sorted(fd_targets(other["pid"])) == [0, 1, 2],
                 what="the other child's descriptors")
        self.assertNotIn(pipe_ino, fd_targets(other["pid"]).values())
        self.assertNotIn(pipe_ino, fd_targets(self.d.pid()).values())
        self.a.ok("proc.kill", target="holder")
        self.d.ok("proc.kill", target="other")

    def test_no_descriptor_kept_after_1000_runs(self):
        r, w = self.pipe(self.a)
        before = self.fds_now()
        res = self.a.do(op="runloop", conn=self.a.conn, n=1000, fds=[r, w, w],
                        req={"cmd": "proc.run", "argv": ["/bin/true"], "stdio": "passed"})
        self.assertEqual(res["done"], 1000, res)
        self.assertTrue(res["last"]["ok"], res)
        self.assertEqual(self.fds_now(), before)
        got = self.a.do(op="readfd", fd=r, close=[w])
        self.assertTrue(got["eof"], "the daemon or a child still holds the pipe")

    def test_refused_and_closed(self):
        r, w = self.pipe(self.a)
        before = self.fds_now()
        run = {"cmd": "proc.run", "argv": ["/bin/true"], "stdio": "passed"}
        for req, fds in (({"cmd": "ping"}, [r, w, w]),
                         ({"cmd": "dict.set", "name": "x", "key": "k", "value": 1}, [w]),
                         (run, [w, w]),
                         (run, [r, w, w, w]),
                         (dict(run, stdio="pipes"), [r, w, w]),
                         ({"cmd": "proc.run", "argv": ["/bin/true"]}, [r, w, w]),
                         (dict(run, stdin="x"), [r, w, w]),
                         (dict(run, stdio="bogus"), [r, w, w])):
            res = self.a.do(op="send", conn=self.a.conn, req=req, fds=fds)
            self.assertEqual(res["error"]["code"], "bad_request", (req, res))
        self.assertEqual(self.a.ok("ping"), "pong")  # the connection stays usable
        self.assertEqual(self.fds_now(), before)
        self.assertEqual(self.d.ok("status"), [])
        self.assertTrue(self.a.do(op="readfd", fd=r, close=[w])["eof"])
        # stdio passed without any descriptor
        self.assertEqual(self.a.code("proc.run", argv=["/bin/true"], stdio="passed"),
                         "bad_request")

    def test_pool_members_get_them_until_the_pool_goes(self):
        r, w = self.pipe(self.a)
        before = self.fds_now()
        name = "u%d.out" % self.ua.uid
        res = self.a.do(op="send", conn=self.a.conn, fds=[r, w, w],
                        req={"cmd": "pool.add", "pool": name, "processes": 2,
                             "command": "/bin/sh -c 'echo member $MPSUP_INDEX; exec sleep 60'",
                             "scope": "process", "stdio": "passed"})
        self.assertTrue(res["ok"], res)
        self.assertEqual(self.fds_now(), before + 4)  # and the scope's pidfd
        lines = self.a.do(op="readlines", fd=r, n=2)["data"]
        self.assertEqual(sorted(lines.splitlines()), ["member 0", "member 1"])
        self.assertEqual(self.a.ok("pool.remove", pool=name), {"removed": name})
        self.assertEqual(self.fds_now(), before)
        got = self.a.do(op="readfd", fd=r, close=[w])
        self.assertTrue(got["eof"], got)
        res = self.a.do(op="send", conn=self.a.conn, fds=[0, 1],
                        req={"cmd": "pool.add", "pool": name, "command": "/bin/true",
                             "scope": "process", "stdio": "passed"})
        self.assertEqual(res["error"]["code"], "bad_request")
        self.assertEqual(self.fds_now(), before)

    def mpctl_as(self, user, *args):
        import subprocess
        return subprocess.run(["setpriv", "--reuid=%d" % user.uid, "--regid=%d" % user.gid,
                               "--init-groups", mpsuptest.MPCTL, "-s", self.d.socket] + list(args),
                              capture_output=True, text=True, cwd="/",
                              timeout=mpsuptest.DEFAULT_DEADLINE)

    def test_mpctl_run_attach(self):
        p = self.mpctl_as(self.ua, "run", "--attach", "--", "/bin/sh", "-c",
                          "echo hello; echo oops >&2; exit 3")
        self.assertEqual((p.stdout, p.stderr, p.returncode), ("hello\n", "oops\n", 3))
        p = self.mpctl_as(self.ua, "run", "--attach", "--", "/bin/sh", "-c", "kill -9 $$")
        self.assertEqual(p.returncode, 128 + 9, p.stderr)
        p = self.mpctl_as(self.ua, "run", "--attach", "--", "/bin/true")
        self.assertEqual((p.stdout, p.returncode), ("", 0))
        uid = self.mpctl_as(self.ua, "run", "--attach", "--", "/usr/bin/id", "-u")
        self.assertEqual(uid.stdout.strip(), str(self.ua.uid))

    def test_state_peer_cannot_pass(self):
        d2 = Daemon("[access]\nstate = %s\n" % self.ua.name, "socket_mode = 0666\n")
        os.chmod(d2.dir, 0o755)
        d2.start()
        try:
            p = RunPeer(d2.socket, self.ua)
            r, w = p.do(op="pipe")["r"], p.do(op="pipe")["w"]
            p.ok("ping")  # its connection is in before counting
            before = d2.fd_count()
            res = p.do(op="send", conn=p.conn, fds=[r, w, w],
                       req={"cmd": "proc.run", "argv": ["/bin/true"], "stdio": "passed"})
            self.assertEqual(res["error"]["code"], "bad_request", res)
            self.assertEqual(d2.fd_count(), before)
            p.finish()
        finally:
            d2.cleanup()


class RunLimit(RunRoleTestCase):
    main_config = "max_processes_per_uid = 2\n"

    def test_limit_per_uid(self):
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="a1")
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="a2")
        r = self.a.call("proc.run", argv=["/bin/sleep", "30"], name="a3")
        self.assertEqual(r["error"]["code"], "limit")
        self.assertIn("max_processes_per_uid", r["error"]["message"])
        # another uid has its own count, and admins none
        self.b.ok("proc.run", argv=["/bin/sleep", "30"], name="b1")
        self.d.ok("proc.run", argv=["/bin/sleep", "30"], name="r1")
        # a finished process no longer counts
        self.a.ok("proc.kill", target="a1")
        self.a.ok("proc.join", target="a1")
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="a3")
        self.assertEqual(self.d.ok("daemon.info")["limits"]["max_processes_per_uid"], 2)

    def test_pool_members_count(self):
        self.a.ok("proc.run", argv=["/bin/sleep", "30"], name="a1")
        name = "u%d.p" % self.ua.uid
        self.assertEqual(self.a.code("pool.add", pool=name, command="/bin/sleep 30",
                                     processes=2, scope="process"), "limit")
        self.a.ok("pool.add", pool=name, command="/bin/sleep 30", processes=1, scope="process")
        self.assertEqual(self.a.code("proc.run", argv=["/bin/true"]), "limit")


if __name__ == "__main__":
    mpsuptest.main()
