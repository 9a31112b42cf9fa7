"""End-to-end tests of access control and per-peer limits (DESIGN §8,
the access rules), seen from an unprivileged peer.

The tests run as root and drive a client running as nobody:nogroup (setpriv,
or runuser) so SO_PEERCRED reports another uid. The daemon's socket is made
reachable for nobody (socket_mode = 0666, a 0755 temp dir): what is tested
is the role check, not the socket mode (0600 by default, see test_core.py).
"""
import json
import os
import pwd
import grp
import shutil
import socket
import subprocess
import sys
import time
import unittest

import mpsuptest
from runpeer import RUN_CLIENT
from mpsuptest import Client, Daemon, wait_for, DEFAULT_DEADLINE, SCALE

NOBODY = "nobody"
NOGROUP = "nogroup"

# The client that runs as nobody: one JSON command per stdin line, one JSON
# answer per stdout line, so a test can hold connections open as long as it
# likes. Every socket operation has a timeout: the child cannot hang.
NOBODY_CLIENT = RUN_CLIENT


def drop_privileges_prefix():
    """The command prefix that runs a program as nobody:nogroup, or None."""
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=" + NOBODY, "--regid=" + NOGROUP, "--clear-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", NOBODY, "-g", NOGROUP, "--"]
    return None


def why_not_runnable():
    if os.geteuid() != 0:
        return "needs root to run a client as another user"
    try:
        pwd.getpwnam(NOBODY)
        grp.getgrnam(NOGROUP)
    except KeyError:
        return "no %s user or %s group" % (NOBODY, NOGROUP)
    if drop_privileges_prefix() is None:
        return "neither setpriv nor runuser is installed"
    return None


class Nobody:
    """A protocol client running as nobody:nogroup in a child process."""

    def __init__(self, socket_path, prefix=None):
        self.p = subprocess.Popen(
            (prefix or drop_privileges_prefix()) + [sys.executable, "-c", NOBODY_CLIENT,
                                                    socket_path, str(DEFAULT_DEADLINE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
        hello = self._recv()
        self.pid, self.uid, self.gid = hello["pid"], hello["uid"], hello["gid"]
        self.groups = hello["groups"]

    def _recv(self):
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError("the nobody client died (exit %s)" % self.p.wait())
        return json.loads(line)

    def _do(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return self._recv()

    def connect(self):
        r = self._do(op="connect")
        if "conn" not in r:
            raise AssertionError("nobody cannot connect: %r" % r)
        return r["conn"]

    def send(self, conn, cmd, **params):
        req = {"id": cmd, "cmd": cmd}
        req.update(params)
        return self._do(op="send", conn=conn, req=req)

    def read(self, conn):
        return self._do(op="read", conn=conn)

    def close(self, conn):
        return self._do(op="close", conn=conn)

    def call(self, cmd, **params):
        """One request on a fresh connection: the whole response."""
        c = self.connect()
        try:
            return self.send(c, cmd, **params)
        finally:
            self.close(c)

    def code(self, cmd, **params):
        """The error code of a request, or "ok"."""
        r = self.call(cmd, **params)
        if r.get("ok"):
            return "ok"
        return r.get("error", {}).get("code", repr(r))

    def finish(self):
        self.p.stdin.close()
        self.p.stdout.close()
        self.p.wait(timeout=DEFAULT_DEADLINE)


class AccessTestCase(unittest.TestCase):
    """A daemon whose socket nobody can reach, and a client running as nobody."""
    config = ""
    main_config = ""

    @classmethod
    def setUpClass(cls):
        why = why_not_runnable()
        if why:
            raise unittest.SkipTest(why)

    def setUp(self):
        self.d = Daemon(self.config, "socket_mode = 0666\n" + self.main_config)
        os.chmod(self.d.dir, 0o755)
        self.d.start()
        self.nobody = Nobody(self.d.socket)
        self.assertEqual(self.nobody.uid, pwd.getpwnam(NOBODY).pw_uid)

    def tearDown(self):
        self.nobody.finish()
        rc = self.d.stop()
        log = self.d.read_log()
        shutil.rmtree(self.d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None), "mpsupd exited with %r; log:\n%s" % (rc, log))

    def capabilities(self):
        return self.d.ok("hello")["capabilities"]

    def need_state(self):
        if "state" not in self.capabilities():
            self.skipTest("the daemon has no shared-state module (no 'state' capability)")

    def assert_denial_logged(self, cmd):
        """The daemon logged the denial of cmd with nobody's uid and pid."""
        want = "denied %s to uid %d pid %d" % (cmd, self.nobody.uid, self.nobody.pid)
        wait_for(lambda: want in self.d.read_log(), what="log line '%s'" % want)

    def objects(self):
        return {o["name"] for o in self.d.ok("obj.list")}


class NoAccessSection(AccessTestCase):
    """Without [access], a peer that is neither root nor the daemon's user
    gets nothing at all."""

    def test_everything_denied(self):
        for cmd in ("hello", "ping", "daemon.info", "events.subscribe"):
            self.assertEqual(self.nobody.code(cmd), "permission_denied", cmd)
        self.assertEqual(self.nobody.code("daemon.reload"), "permission_denied")
        self.assertEqual(self.nobody.code("daemon.shutdown"), "permission_denied")
        self.assert_denial_logged("daemon.shutdown")
        self.assert_denial_logged("daemon.reload")
        self.assert_denial_logged("hello")
        # Nothing happened: the daemon runs and was not reloaded.
        self.assertIsNone(self.d.proc.poll())
        self.assertEqual(self.d.ok("ping"), "pong")
        self.assertNotIn("configuration reloaded", self.d.read_log())

    def test_state_denied_and_nothing_changes(self):
        self.need_state()
        self.d.ok("value.set", name="n", value=5)
        self.assertEqual(self.nobody.code("value.add", name="n", by=1), "permission_denied")
        self.assertEqual(self.nobody.code("value.get", name="n"), "permission_denied")
        self.assertEqual(self.nobody.code("dict.set", name="fresh", key="k", value=1),
                         "permission_denied")
        self.assertEqual(self.d.ok("value.get", name="n"), 5)
        self.assertNotIn("fresh", self.objects())
        self.assert_denial_logged("value.add")

    def test_denied_connection_stays_usable(self):
        c = self.nobody.connect()
        for _ in range(3):
            r = self.nobody.send(c, "daemon.shutdown")
            self.assertEqual(r["error"]["code"], "permission_denied")
            self.assertEqual(r["id"], "daemon.shutdown")
            self.assertIn("admin", r["error"]["message"])
        self.nobody.close(c)
        self.assertEqual(self.d.ok("ping"), "pong")


class ReadForEveryone(AccessTestCase):
    config = "[access]\nread = *\n"

    def test_help_lists_what_the_peer_may_use(self):
        mine = self.nobody.call("help")["result"]
        self.assertEqual({c["role"] for c in mine}, {"read"})
        names = {c["name"] for c in mine}
        self.assertIn("status", names)
        self.assertIn("dict.get", names)
        self.assertNotIn("dict.set", names)
        self.assertNotIn("proc.kill", names)
        everything = {c["name"] for c in self.d.ok("help")}
        self.assertLess(names, everything)
        one = self.nobody.call("help", command="proc.kill")["result"]
        self.assertEqual((one["role"], one["allowed"]), ("run", False))
        self.assertIs(self.d.ok("help", command="proc.kill")["allowed"], True)

    def test_read_allowed_admin_denied(self):
        self.assertEqual(self.nobody.call("hello")["result"]["server"], "mpsupd")
        info = self.nobody.call("daemon.info")["result"]
        self.assertEqual(info["pid"], self.d.pid())
        self.assertEqual(self.nobody.code("ping"), "ok")
        self.assertEqual(self.nobody.code("daemon.shutdown"), "permission_denied")
        self.assertEqual(self.nobody.code("daemon.reload"), "permission_denied")
        self.assert_denial_logged("daemon.shutdown")
        self.assertIsNone(self.d.proc.poll())
        self.assertEqual(self.d.ok("ping"), "pong")

    def test_read_cannot_change_state(self):
        self.need_state()
        self.d.ok("value.set", name="n", value=5)
        self.assertEqual(self.nobody.code("value.add", name="n", by=1), "permission_denied")
        self.assertEqual(self.nobody.code("value.set", name="n", value=0), "permission_denied")
        self.assertEqual(self.nobody.code("obj.delete", name="n"), "permission_denied")
        self.assertEqual(self.d.ok("value.get", name="n"), 5)
        self.assert_denial_logged("value.add")

    def test_read_cannot_create_objects(self):
        self.need_state()
        for cmd, params in (("dict.get", {"key": "k"}), ("value.get", {}),
                            ("event.is_set", {}), ("obj.get", {})):
            r = self.nobody.call(cmd, name="missing", **params)
            self.assertEqual(r.get("error", {}).get("code"), "not_found", (cmd, r))
            self.assertIn("missing", r["error"]["message"])
        # A wait would create the object: that is the state role's right.
        r = self.nobody.call("event.wait", name="missing", timeout=0)
        self.assertEqual(r.get("error", {}).get("code"), "not_found", r)
        self.assertIn("state role", r["error"]["message"])
        self.assertEqual(self.d.ok("obj.list"), [])
        # What exists can be read.
        self.d.ok("value.set", name="n", value=5)
        self.assertEqual(self.nobody.call("value.get", name="n")["result"], 5)
        self.assertEqual(self.objects(), {"n"})


class StateForNobody(AccessTestCase):
    config = "[access]\nstate = nobody\n"

    def test_state_allowed_admin_denied(self):
        self.need_state()
        self.assertEqual(self.nobody.call("value.add", name="n", by=2)["result"], 2)
        self.assertEqual(self.nobody.call("value.add", name="n", by=3)["result"], 5)
        self.assertEqual(self.d.ok("value.get", name="n"), 5)
        # A higher role includes the lower ones.
        self.assertEqual(self.nobody.code("hello"), "ok")
        self.assertEqual(self.nobody.code("daemon.shutdown"), "permission_denied")
        self.assertEqual(self.nobody.code("daemon.reload"), "permission_denied")
        self.assert_denial_logged("daemon.shutdown")
        self.assertIsNone(self.d.proc.poll())


class TaskResultsAreTheSubmitters(AccessTestCase):
    """Task ids are sequential: a state peer cannot read or take another
    user's submitted results (an admin can)."""
    config = ("[access]\nstate = nobody\n[pool:t]\nmode = task\nstart_secs = 0\n"
              "command = %s %s\n" % (sys.executable,
                                     os.path.join(mpsuptest.SRCDIR, "examples",
                                                  "double_worker.py")))

    def test_other_users_task_not_found(self):
        if "tasks" not in self.capabilities():
            self.skipTest("no task pools")
        wait_for(lambda: self.d.ok("status", target="t")[0]["state"] == "running",
                 what="the worker")
        mine = self.d.ok("pool.submit", pool="t", item=2)["task"]
        self.assertEqual(self.nobody.code("task.status", task=mine), "not_found")
        self.assertEqual(self.nobody.code("task.wait", task=mine), "not_found")
        theirs = self.nobody.call("pool.submit", pool="t", item=5)["result"]["task"]
        self.assertEqual(self.nobody.call("task.wait", task=theirs)["result"], {"result": 10})
        self.assertEqual(self.d.ok("task.wait", task=mine), {"result": 4})


class TaskEventsAreTheSubmitters(AccessTestCase):
    """Events about a task go to its submitter and admins only: another
    user's subscriber never sees them (nor their error text)."""
    config = ("[access]\nstate = nobody\n[pool:t]\nmode = task\nstart_secs = 0\n"
              "command = %s %s\n" % (sys.executable,
                                     os.path.join(mpsuptest.SRCDIR, "tests", "e2e",
                                                  "task_worker.py")))

    def test_other_users_task_events_not_delivered(self):
        if "tasks" not in self.capabilities():
            self.skipTest("no task pools")
        wait_for(lambda: self.d.ok("status", target="t")[0]["state"] == "running",
                 what="the worker")
        sub = self.nobody.connect()
        self.assertTrue(self.nobody.send(sub, "events.subscribe", topics=["task"])["ok"])
        with self.d.client() as root_sub:
            self.assertTrue(root_sub.call("events.subscribe", topics=["task"])["ok"])
            mine = self.d.ok("pool.submit", pool="t", item={"error": "root's secret"})["task"]
            self.assertEqual(self.d.err("task.wait", task=mine), "internal")
            theirs = self.nobody.call("pool.submit", pool="t",
                                      item={"error": "nobody's own"})["result"]["task"]
            self.assertEqual(self.nobody.code("task.wait", task=theirs), "internal")
            # Events come in order: nobody's first is about its own task.
            ev = self.nobody.read(sub)
            self.assertEqual((ev["event"], ev["task"], ev["message"]),
                             ("task.failed", theirs, "nobody's own"), ev)
            # An admin sees both.
            seen = [root_sub.recv() for _ in range(2)]
            self.assertEqual([(e["task"], e["message"]) for e in seen],
                             [(mine, "root's secret"), (theirs, "nobody's own")])
        self.nobody.close(sub)


class StateForGroup(AccessTestCase):
    """@group entries match the peer's primary group."""
    config = "[access]\nstate = @%s\n" % NOGROUP

    def test_group_grants_state(self):
        self.need_state()
        self.assertEqual(self.nobody.call("value.add", name="g", by=1)["result"], 1)
        self.assertEqual(self.nobody.code("daemon.shutdown"), "permission_denied")


class StateForSupplementaryGroup(AccessTestCase):
    """@group entries match a supplementary group of the peer too."""
    config = "[access]\nstate = @daemon\n"

    def test_supplementary_group_grants_state(self):
        self.need_state()
        if not shutil.which("setpriv"):
            self.skipTest("needs setpriv to give the client a supplementary group")
        extra = grp.getgrnam("daemon").gr_gid
        member = Nobody(self.d.socket, ["setpriv", "--reuid=" + NOBODY, "--regid=" + NOGROUP,
                                        "--groups=%d" % extra, "--"])
        try:
            self.assertEqual(member.groups, [extra])
            self.assertEqual(member.call("value.add", name="g", by=1)["result"], 1)
        finally:
            member.finish()
        # without the group: nothing
        self.assertEqual(self.nobody.code("value.add", name="g", by=1), "permission_denied")


class PoolUserGetsState(AccessTestCase):
    """The users pool workers run as get the state role by default, so
    workers can use shared state (never started here: autostart = no)."""
    config = ("[pool:w]\ncommand = /bin/sleep 1000\nuser = %s\nautostart = no\n"
              % NOBODY)

    def test_worker_user_has_state(self):
        self.need_state()
        self.assertEqual(self.nobody.call("value.add", name="w", by=1)["result"], 1)
        self.assertEqual(self.nobody.code("daemon.shutdown"), "permission_denied")


class PoolUserWithReadForAll(AccessTestCase):
    """`read = *` does not take the pool user's default state role away."""
    config = ("[access]\nread = *\n[pool:w]\ncommand = /bin/sleep 1000\nuser = %s\n"
              "autostart = no\n" % NOBODY)

    def test_worker_user_still_has_state(self):
        self.need_state()
        self.assertEqual(self.nobody.call("value.add", name="w", by=1)["result"], 1)
        self.assertEqual(self.nobody.code("daemon.shutdown"), "permission_denied")


class PoolUserAddedAtRunTime(AccessTestCase):
    """A pool added with pool.add gives its user state, on connections that
    are already open too; removing it takes that away."""

    def test_state_follows_the_pools(self):
        self.need_state()
        c = self.nobody.connect()
        self.assertEqual(self.nobody.send(c, "value.add", name="n", by=1)["error"]["code"],
                         "permission_denied")
        self.d.ok("pool.add", pool="w", command=["/bin/sleep", "1000"], user=NOBODY,
                  autostart=False)
        self.assertEqual(self.nobody.send(c, "value.add", name="n", by=1)["result"], 1)
        self.d.ok("pool.remove", pool="w")
        self.assertEqual(self.nobody.send(c, "value.add", name="n", by=1)["error"]["code"],
                         "permission_denied")
        self.nobody.close(c)


class AccessReload(AccessTestCase):
    """A reload that changes [access] applies to open connections at once."""
    config = "[access]\nread = *\n"

    def test_open_connection_gets_the_new_role(self):
        self.need_state()
        c = self.nobody.connect()
        self.assertEqual(self.nobody.send(c, "value.add", name="n", by=1)["error"]["code"],
                         "permission_denied")
        self.d.write_config("[access]\nstate = nobody\n", "socket_mode = 0666\n")
        self.d.ok("daemon.reload")
        self.assertEqual(self.nobody.send(c, "value.add", name="n", by=1)["result"], 1)
        self.d.write_config("", "socket_mode = 0666\n")
        self.d.ok("daemon.reload")
        self.assertEqual(self.nobody.send(c, "ping")["error"]["code"], "permission_denied")
        self.assertIn("role state -> none", self.d.read_log())
        self.nobody.close(c)


def as_user(user, group):
    """The setpriv prefix that runs a program as user:group, or None."""
    if not shutil.which("setpriv"):
        return None
    try:
        pwd.getpwnam(user)
        grp.getgrnam(group)
    except KeyError:
        return None
    return ["setpriv", "--reuid=" + user, "--regid=" + group, "--clear-groups", "--"]


# A second unprivileged user, for a state peer beside the read peer nobody.
OTHER, OTHER_GROUP = "daemon", "daemon"


class RoleShares(AccessTestCase):
    """max_clients is shared by role: read peers may fill it up to what is
    kept for state peers and admins, state peers up to what is kept for
    admins (max_clients = 20: 5 kept for admins, 5 more for state peers)."""
    config = "[access]\nread = *\nstate = %s\n" % OTHER
    main_config = "max_clients = 20\n"

    def setUp(self):
        super().setUp()
        prefix = as_user(OTHER, OTHER_GROUP)
        if prefix is None:
            self.skipTest("needs setpriv and a %s user" % OTHER)
        self.other = Nobody(self.d.socket, prefix)

    def tearDown(self):
        self.other.finish()
        super().tearDown()

    def flood(self, peer, limit=30):
        """Connect as peer until refused: (held connections, the refusal)."""
        held = []
        for _ in range(limit):
            c = peer.connect()
            r = peer.send(c, "ping")
            if "oserror" in r:  # refused and closed before the ping went out
                r = peer.read(c)
            if not r.get("ok"):
                peer.close(c)
                return held, r
            held.append(c)
        self.fail("never refused")

    def test_read_flood_leaves_state_and_admin_their_share(self):
        held, r = self.flood(self.nobody)
        self.assertEqual(r.get("error", {}).get("code"), "limit", r)
        self.assertEqual(r["error"]["message"],
                         "too many clients: max_clients (20) reached for role read: it may use "
                         "10, the last 10 are kept for the state and admin roles")
        # A connection of the harness may still be counted for a moment.
        self.assertIn(len(held), (9, 10))
        # A state peer still gets in, as many times as is kept for it.
        state = [self.other.connect() for _ in range(5)]
        for c in state:
            self.assertEqual(self.other.send(c, "value.add", name="n", by=1).get("ok"), True)
        # And so do admins, beyond that.
        roots = [self.d.client() for _ in range(5)]
        for rc in roots:
            self.assertEqual(rc.ok("ping"), "pong")
        for rc in roots:
            rc.close()
        for c in state:
            self.other.close(c)
        for h in held:
            self.nobody.close(h)
        self.assertIn("refusing uid %d pid %d: max_clients (20) reached for role read"
                      % (self.nobody.uid, self.nobody.pid), self.d.read_log())

    def test_state_flood_leaves_admins_their_share(self):
        held, r = self.flood(self.other)
        self.assertEqual(r["error"]["message"],
                         "too many clients: max_clients (20) reached for role state: it may use "
                         "15, the last 5 are kept for admins")
        self.assertIn(len(held), (14, 15))
        # Read peers get nothing more while state peers hold their share.
        c = self.nobody.connect()
        r = self.nobody.read(c)
        self.assertEqual(r.get("error", {}).get("code"), "limit", r)
        self.nobody.close(c)
        roots = [self.d.client() for _ in range(5)]
        for rc in roots:
            self.assertEqual(rc.ok("ping"), "pong")
        for rc in roots:
            rc.close()
        for h in held:
            self.other.close(h)


# A pool worker that opens two connections, pings on each and says how it
# went on stdout (proc.logs), then holds them. (No percent sign and no
# backslash: the command line has %(index)d placeholders and escapes.)
WORKER_PINGS = r"""
import json, socket, sys, time
held, oks = [], []
for _ in range(2):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sys.argv[1])
    s.sendall(b'{"id": 1, "cmd": "ping"}' + bytes([10]))
    f = s.makefile("rb")
    oks.append(json.loads(f.readline() or b"{}").get("ok", False))
    held.append((s, f))
print("worker pings: " + " ".join(map(str, oks)), flush=True)
time.sleep(1000)
"""


# A python the pool's user may run (ours may live under root's home).
SYSTEM_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


class WorkersBeyondTheShares(AccessTestCase):
    """A pool worker (its pid is one of ours) gets in even when its role's
    share of max_clients is used up, up to PEER_WORKER_CONNS per worker."""
    config = "[access]\nread = *\n"
    main_config = "max_clients = 20\n"

    def test_worker_connects_when_state_peers_fill_their_share(self):
        prefix = as_user(OTHER, OTHER_GROUP)
        if prefix is None:
            self.skipTest("needs setpriv and a %s user" % OTHER)
        # The pool's user gets state, so its other processes flood as state.
        self.d.ok("pool.add", pool="w", processes=1, user=OTHER, autostart=False,
                  start_secs=0,
                  command=[SYSTEM_PYTHON, "-c", WORKER_PINGS, self.d.socket])
        other = Nobody(self.d.socket, prefix)
        try:
            held = []
            while True:
                c = other.connect()
                r = other.send(c, "ping")
                if "oserror" in r:
                    r = other.read(c)
                if not r.get("ok"):
                    other.close(c)
                    break
                held.append(c)
            self.assertEqual(r.get("error", {}).get("code"), "limit", r)
            self.d.ok("proc.start", target="w")

            def pings():
                lines = [l["line"] for l in self.d.ok("proc.logs", target="w", lines=10)]
                return [l for l in lines if l.startswith("worker pings:")]
            wait_for(pings, what="the worker's pings")
            self.assertEqual(pings(), ["worker pings: True True"], self.d.read_log())
            self.assertIn("of pool w let in beyond the shares of max_clients",
                          self.d.read_log())
            # Admins are not crowded out by the worker's connections.
            with self.d.client() as rc:
                self.assertEqual(rc.ok("ping"), "pong")
            self.d.ok("proc.stop", target="w")
            for h in held:
                other.close(h)
        finally:
            other.finish()


class StreamShares(AccessTestCase):
    """events.subscribe and proc.logs follow share one count, max_subscribers,
    with the same shares by role (16: 4 kept for admins, 4 more for state
    peers)."""
    config = "[access]\nread = *\nstate = %s\n" % OTHER
    main_config = "max_subscribers = 16\n"

    def stream(self, peer, i):
        """Open a stream as peer (a subscription or, for odd i, a follow)."""
        c = peer.connect()
        if i % 2:
            return c, peer.send(c, "proc.logs", target="x", follow=True)
        return c, peer.send(c, "events.subscribe")

    def test_read_streams_leave_state_and_admins_theirs(self):
        prefix = as_user(OTHER, OTHER_GROUP)
        if prefix is None:
            self.skipTest("needs setpriv and a %s user" % OTHER)
        other = Nobody(self.d.socket, prefix)
        self.d.ok("proc.run", argv=["true"], name="x")
        self.d.ok("proc.join", target="x")
        held, theirs, roots = [], [], []
        try:
            for i in range(8):
                c, r = self.stream(self.nobody, i)
                self.assertTrue(r.get("ok"), (i, r))
                held.append(c)
            for cmd, params in (("events.subscribe", {}),
                                ("proc.logs", {"target": "x", "follow": True})):
                r = self.nobody.call(cmd, **params)
                self.assertEqual(r.get("error", {}).get("code"), "limit", r)
                self.assertEqual(r["error"]["message"],
                                 "too many streams: max_subscribers (16) reached for role read: "
                                 "it may use 8, the last 8 are kept for the state and admin "
                                 "roles")
            self.assertEqual(self.d.ok("daemon.info")["memory"]["streams"], 8)
            # A state peer gets the 4 kept for it, not more.
            for i in range(4):
                c, r = self.stream(other, i)
                self.assertTrue(r.get("ok"), (i, r))
                theirs.append(c)
            r = other.call("events.subscribe")
            self.assertEqual(r["error"]["message"],
                             "too many streams: max_subscribers (16) reached for role state: "
                             "it may use 12, the last 4 are kept for admins")
            # Admins get the rest.
            for i in range(4):
                rc = self.d.client()
                if i % 2:
                    self.assertTrue(rc.call("proc.logs", target="x", follow=True)["ok"])
                else:
                    self.assertTrue(rc.call("events.subscribe")["ok"])
                roots.append(rc)
            with self.d.client() as rc:
                self.assertEqual(rc.call("events.subscribe")["error"]["message"],
                                 "too many streams: max_subscribers (16) reached")
            # A closed stream gives its slot back (read peers still wait for
            # fewer than 8 streams in all).
            roots.pop().close()
            wait_for(lambda: self.d.ok("daemon.info")["memory"]["streams"] == 15,
                     what="the stream slot given back")
            self.assertEqual(self.nobody.code("events.subscribe"), "limit")
            rc = self.d.client()
            self.assertTrue(rc.call("events.subscribe")["ok"])
            roots.append(rc)
        finally:
            for rc in roots:
                rc.close()
            for c in theirs:
                other.close(c)
            other.finish()
            for h in held:
                self.nobody.close(h)


class PoolUserWithExplicitState(AccessTestCase):
    """An explicit state list replaces that default."""
    config = ("[access]\nstate = root\n[pool:w]\ncommand = /bin/sleep 1000\n"
              "user = %s\nautostart = no\n" % NOBODY)

    def test_worker_user_has_nothing(self):
        self.assertEqual(self.nobody.code("hello"), "permission_denied")
        self.assertEqual(self.nobody.code("value.add", name="w", by=1), "permission_denied")


class AdminForNobody(AccessTestCase):
    config = "[access]\nadmin = nobody\n"

    def test_admin_granted_by_config(self):
        self.assertEqual(self.nobody.code("daemon.reload"), "ok")
        wait_for(lambda: "configuration reloaded" in self.d.read_log(), what="the reload")


class OneShotRunsAsThePeer(AccessTestCase):
    """DESIGN §8: a one-shot runs as the requesting peer: its uid, gid and
    every supplementary group; only an admin may name another user."""
    config = "[access]\nadmin = nobody\n"

    def setUp(self):
        super().setUp()
        if not shutil.which("setpriv"):
            self.skipTest("needs setpriv to give the client a supplementary group")
        self.extra = grp.getgrnam("daemon").gr_gid  # a group nobody is not in
        self.peer = Nobody(self.d.socket, ["setpriv", "--reuid=" + NOBODY, "--regid=" + NOGROUP,
                                           "--groups=%d" % self.extra, "--"])

    def tearDown(self):
        self.peer.finish()
        super().tearDown()

    def run_id(self, client, name, **params):
        r = client.call("proc.run", argv=["sh", "-c", "id -u; id -g; id -G"], name=name,
                        **params)
        self.assertTrue(r.get("ok"), r)
        self.assertEqual(self.d.ok("proc.join", target=name)["exitcode"], 0)
        return [l["line"] for l in self.d.ok("proc.logs", target=name, lines=10)]

    def test_uid_gid_and_groups_of_the_peer(self):
        self.assertEqual(self.peer.groups, [self.extra])
        uid, gid, groups = self.run_id(self.peer, "peer")
        self.assertEqual((int(uid), int(gid)), (self.peer.uid, self.peer.gid))
        self.assertEqual(set(map(int, groups.split())), {self.peer.gid, self.extra})

    def test_admin_names_a_user(self):
        root = self.run_id(self.peer, "asroot", user="root")
        self.assertEqual(root[:2], ["0", "0"])
        uid, gid, _ = self.run_id(self.peer, "asnum", user=self.peer.uid, group="users")
        self.assertEqual((int(uid), int(gid)), (self.peer.uid, grp.getgrnam("users").gr_gid))


class UnprivilegedDaemonNamesAUser(unittest.TestCase):
    """A daemon that is not root cannot become another user: proc.run with
    user=root is spawn_failed at setgid/setuid and the command never runs."""

    @classmethod
    def setUpClass(cls):
        why = why_not_runnable()
        if why:
            raise unittest.SkipTest(why)

    def test_failed_setuid_never_runs_the_command(self):
        d = Daemon("")
        nobody = pwd.getpwnam(NOBODY)
        os.chmod(d.dir, 0o755)
        os.chown(d.dir, nobody.pw_uid, nobody.pw_gid)
        marker = os.path.join(d.dir, "ran")
        try:
            d.log = open(d.logfile, "ab")
            d.proc = subprocess.Popen(drop_privileges_prefix() + [mpsuptest.MPSUPD, "-c", d.conf],
                                      stdout=d.log, stderr=subprocess.STDOUT, env=d.env,
                                      cwd=d.dir)
            wait_for(d.answers, what="mpsupd running as nobody")
            n = Nobody(d.socket)
            try:
                r = n.call("proc.run", argv=["touch", marker], name="x", user="root")
                self.assertFalse(r.get("ok"), r)
                self.assertEqual(r["error"]["code"], "spawn_failed")
                self.assertRegex(r["error"]["message"], r"set(groups|gid|uid)")
                self.assertEqual(n.code("status", target="x"), "not_found")
                self.assertFalse(os.path.exists(marker))
                # the daemon's own user is fine
                r = n.call("proc.run", argv=["touch", marker], name="y", user=NOBODY)
                self.assertTrue(r.get("ok"), r)
            finally:
                n.finish()
            wait_for(lambda: os.path.exists(marker), what="y to run")
            self.assertEqual(os.stat(marker).st_uid, nobody.pw_uid)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


class PerUidLimit(AccessTestCase):
    config = "[access]\nread = *\n"
    main_config = "max_clients_per_uid = 2\n"

    def test_third_connection_of_a_uid_refused(self):
        a, b = self.nobody.connect(), self.nobody.connect()
        self.assertEqual(self.nobody.send(a, "ping")["result"], "pong")
        self.assertEqual(self.nobody.send(b, "ping")["result"], "pong")
        c = self.nobody.connect()
        r = self.nobody.read(c)
        self.assertEqual(r.get("error", {}).get("code"), "limit", r)
        self.assertIn("max_clients_per_uid", r["error"]["message"])
        self.assertEqual(self.nobody.read(c), {"eof": True})
        self.nobody.close(c)
        # Another uid is not affected: it gets its own connections (admins
        # are not limited per uid). Retried: the harness's own earlier
        # connection may not be closed on the daemon's side yet.
        def root_gets_two():
            with self.d.client() as r1, self.d.client() as r2:
                try:
                    return r1.call("ping").get("ok") and r2.call("ping").get("ok")
                except (OSError, EOFError):
                    return False
        wait_for(root_gets_two, what="two connections of root")
        self.assertIn("refusing uid %d pid %d: max_clients_per_uid" %
                      (self.nobody.uid, self.nobody.pid), self.d.read_log())
        # The held ones still work; once one closes, nobody may connect again.
        self.assertEqual(self.nobody.send(a, "ping")["result"], "pong")
        self.nobody.close(a)

        def reconnects():
            c2 = self.nobody.connect()
            r = self.nobody.send(c2, "ping")
            self.nobody.close(c2)
            return r.get("ok")
        wait_for(reconnects, what="a new connection once one closed")
        self.nobody.close(b)


class SlowSubscriber(AccessTestCase):
    """A subscriber that never reads is dropped once the daemon's output for
    it passes max_output_bytes, and the daemon's memory stays bounded."""
    main_config = "max_output_bytes = 64K\n"

    def test_never_reading_subscriber_dropped(self):
        sub = Client(self.d.socket)
        # A small receive buffer: the kernel holds less, the daemon's bound
        # is reached sooner.
        sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub.send("events.subscribe", topics=["daemon", "object"])
        wait_for(lambda: self.d.ok("daemon.info").get("subscribers") == 1,
                 what="the subscription")
        rss_before = self.d.rss_kb()
        use_state = "state" in self.capabilities()
        batch = 200
        deadline = time.monotonic() + 60 * SCALE
        with self.d.client() as gen:
            while self.d.ok("daemon.info").get("subscribers") != 0:
                if time.monotonic() > deadline:
                    self.fail("the subscriber was never dropped; log:\n" + self.d.read_log())
                # Pipeline a batch of event sources, then read the answers.
                for i in range(batch):
                    if use_state:
                        gen.send("dict.set", name="x" * 60, key="k%d" % i, value="v" * 200)
                    else:
                        gen.send("daemon.reload")
                for _ in range(batch):
                    self.assertTrue(gen.recv()["ok"])
        self.assertIn("does not read its stream; dropping it", self.d.read_log())
        # The dropped subscriber sees what was written, then EOF.
        sub.sock.settimeout(DEFAULT_DEADLINE)
        while sub.sock.recv(65536):
            pass
        sub.close()
        grown = self.d.rss_kb() - rss_before
        self.assertLess(grown, 32 * 1024, "RSS grew by %d KiB" % grown)
        self.assertEqual(self.d.ok("ping"), "pong")


if __name__ == "__main__":
    why = why_not_runnable()
    if why:
        mpsuptest.skip_all(why)
    mpsuptest.main()
