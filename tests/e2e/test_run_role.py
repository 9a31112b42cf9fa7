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
        self.a.ok("proc.run", argv=["/bin/true"], name="t2", daemon=True, scope="process")
        self.a.ok("proc.join", target="t2")
        self.a.ok("proc.forget", name="t2")
        self.assertEqual(pidfds(self.d.pid()), 0)

    def test_bad_scope(self):
        for v in ("thread", 1, None):
            self.assertEqual(self.a.code("obj.create", name="x", type="dict", scope=v),
                             "bad_request", v)
            self.assertEqual(self.a.code("proc.run", argv=["/bin/true"], scope=v),
                             "bad_request", v)
        self.assertEqual(self.d.ok("obj.list"), [])


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


if __name__ == "__main__":
    mpsuptest.main()
