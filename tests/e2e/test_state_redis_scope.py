#!/usr/bin/env python3
"""Private objects and objects of scope "process" on the redis state backend
(DESIGN §9, §12): the owner uid kept in Redis, the scope ended by the host
that watches the process, or by its lease when that host dies. Two "hosts"
(mpsupd daemons) share a private redis-server; clients run as test users.
With MPSUP_TEST_STATE_BACKEND=redis-cluster (test_state_redis_scope_cluster.py)
they share the file's local Redis Cluster instead."""
import os
import shutil
import subprocess
import time
import unittest

import mpsuptest
from mpsuptest import Daemon, RedisServer, wait_for
from runpeer import RunPeer, why_not_runnable
from test_run_role import (RunRoleTestCase, pidfds, private_object_hidden,  # noqa: F401
                           setUpModule, tearDownModule)

LEASE = 2
ON_CLUSTER = mpsuptest.STATE_BACKEND == "redis-cluster"


class RedisRunRole(RunRoleTestCase):
    """RunRoleTestCase's daemon (host A, self.d) keeping its state in a
    private redis-server; host() makes another host sharing it."""

    def setUp(self):
        if ON_CLUSTER:
            if not mpsuptest.RedisCluster.available():
                raise unittest.SkipTest("redis-server or redis-cli is not installed")
            self.redis = mpsuptest.shared_cluster()
        else:
            if not RedisServer.available():
                raise unittest.SkipTest("redis-server is not installed")
            self.redis = RedisServer().start()
            self.addCleanup(self.redis.cleanup)
        self.main_config = self.redis.config("redis_lease = %d\n" % LEASE)
        super().setUp()

    def host(self):
        d = Daemon("[access]\nrun = %s %s\n" % (self.ua.name, self.ub.name),
                   "socket_mode = 0666\n" + self.main_config)
        os.chmod(d.dir, 0o755)
        d.start()
        self.addCleanup(self.stop_host, d)
        return d

    def stop_host(self, d):
        rc = d.stop()
        shutil.rmtree(d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None, -9), "mpsupd exited with %r" % rc)

    def redis_keys(self):
        if ON_CLUSTER:  # every master's
            return sorted(k for p in self.redis.ports for k in self.redis.keys(p))
        out = subprocess.run(["redis-cli", "-s", self.redis.socket, "--scan"],
                             capture_output=True, text=True, check=True).stdout
        return sorted(out.split())

    def names(self, d):
        return sorted(o["name"] for o in d.ok("obj.list"))


class PrivateObjects(RedisRunRole):

    def subscribe(self, peer, topics):
        conn = peer.connect()
        self.assertTrue(peer.call("events.subscribe", conn=conn, topics=topics)["ok"])
        return conn

    def test_private_object(self):
        ev = private_object_hidden(self)
        a, b = self.a, self.b
        # the short paths (no script) of the hot ops check the owner too
        a.ok("obj.create", name="pval", type="value", typecode="i", access="private")
        a.ok("obj.create", name="plist", type="list", access="private")
        a.ok("value.add", name="pval", by=2)
        for name, cmd, params in (("pval", "value.get", {}), ("pval", "value.add", {"by": 1}),
                                  ("plist", "list.append", {"value": 1}),
                                  ("plist", "list.pop", {})):
            r = b.call(cmd, name=name, **params)
            self.assertEqual(r["error"]["code"], "not_found", (cmd, r))
        self.assertEqual(a.ok("value.get", name="pval"), 2)
        self.assertEqual(a.ok("obj.get", name="plist"), [])
        a.ok("obj.delete", name="pval")
        a.ok("obj.delete", name="plist")
        self.assertEqual([o["name"] for o in b.ok("obj.list")], ["marker"])
        # none of their events reached b either
        self.d.ok("dict.set", name="marker2", key="k", value=1)
        e = b.do(op="read", conn=ev)
        while e["name"] == "marker":  # its create and its set
            e = b.do(op="read", conn=ev)
        self.assertEqual(e["name"], "marker2", e)

    def test_private_across_hosts(self):
        """The owner uid lives in Redis: host B hides A's private object
        from other uids, and serves it to its owner's."""
        self.a.ok("obj.create", name="pq", type="queue", access="private")
        self.a.ok("queue.put", name="pq", item="secret")
        h2 = self.host()
        a2, b2 = RunPeer(h2.socket, self.ua), RunPeer(h2.socket, self.ub)
        self.peers += [a2, b2]
        for cmd, params in (("queue.get", {"timeout": 0}), ("queue.put", {"item": 1}),
                            ("queue.size", {}), ("obj.get", {}), ("obj.delete", {})):
            self.assertEqual(b2.code(cmd, name="pq", **params), "not_found", cmd)
        self.assertEqual(b2.ok("obj.list"), [])
        self.assertEqual(a2.ok("queue.size", name="pq"), 1)
        self.assertEqual(a2.ok("queue.get", name="pq"), "secret")


class ScopedObjects(RedisRunRole):

    def test_owner_sigkill_deletes_and_wakes(self):
        """The owning process dies: its host deletes the scoped objects in
        Redis; waiters on both hosts get not_found; others' objects stay."""
        h2 = self.host()
        a = self.a
        for name, typ in (("sq", "queue"), ("sd", "dict"), ("sl", "lock")):
            self.assertEqual(a.ok("obj.create", name=name, type=typ, scope="process"),
                             {"created": True})
        a.ok("dict.set", name="sd", key="k", value=1)
        self.d.ok("obj.create", name="kept", type="dict")
        self.assertEqual(pidfds(self.d.pid()), 1)
        self.assertEqual(self.names(h2), ["kept", "sd", "sl", "sq"])
        holder = h2.client()
        self.addCleanup(holder.close)
        self.assertTrue(holder.ok("lock.acquire", name="sl")["acquired"])
        getter, locker = h2.client(), self.d.client()
        self.addCleanup(getter.close)
        self.addCleanup(locker.close)
        gid = getter.send("queue.get", name="sq")
        lid = locker.send("lock.acquire", name="sl")
        wait_for(lambda: h2.ok("daemon.info")["state"]["blocked_waiters"] == 1
                 and self.d.ok("daemon.info")["state"]["blocked_waiters"] == 1,
                 what="the waiters blocked in redis")
        a.kill()
        r = getter.recv()
        self.assertEqual((r["id"], r["error"]["code"]), (gid, "not_found"), r)
        r = locker.recv()
        self.assertEqual((r["id"], r["error"]["code"]), (lid, "not_found"), r)
        self.assertEqual(self.names(h2), ["kept"])
        self.assertEqual(self.names(self.d), ["kept"])
        self.assertEqual(h2.err("obj.get", name="sd"), "not_found")
        self.assertEqual(pidfds(self.d.pid()), 0)

    def test_host_death_ends_scope_after_lease(self):
        """The host watching the process is SIGKILLed: its scoped object
        is gone for every other host once redis_lease has passed (and not
        before), and its name is free."""
        h2 = self.host()
        self.a.ok("obj.create", name="sx", type="dict", scope="process")
        self.a.ok("dict.set", name="sx", key="k", value=1)
        self.assertEqual(h2.ok("dict.get", name="sx", key="k"), 1)
        # past a lease: the living host renews it
        time.sleep(LEASE * 1.5)
        self.assertEqual(h2.ok("dict.get", name="sx", key="k"), 1)
        t0 = time.monotonic()
        self.d.proc.kill()
        self.d.proc.wait()
        self.assertEqual(h2.ok("dict.get", name="sx", key="k"), 1)
        wait_for(lambda: self.names(h2) == [], timeout=(LEASE + 2) * mpsuptest.SCALE,
                 what="the scoped object to end with its host's lease")
        self.assertGreater(time.monotonic() - t0, LEASE / 3)
        self.assertEqual(h2.err("dict.get", name="sx", key="k"), "not_found")
        self.assertEqual(h2.ok("obj.create", name="sx", type="list"), {"created": True})
        self.assertEqual(h2.ok("obj.get", name="sx"), [])
        self.assertFalse([k for k in self.redis_keys() if "{sx}" in k and ":l:" not in k
                          and not k.endswith("{sx}")], self.redis_keys())
        self.d.proc = None  # killed: nothing to stop

    def test_dead_hosts_objects_swept_untouched(self):
        """No command touches the dead host's scoped objects again: the
        living host's sweep deletes them from Redis after the lease."""
        h2 = self.host()
        for n in ("sw1", "sw2"):
            self.a.ok("obj.create", name=n, type="dict", scope="process")
            self.a.ok("dict.set", name=n, key="k", value=1)
        self.a.ok("obj.create", name="kept", type="dict")
        self.a.ok("dict.set", name="kept", key="k", value=1)
        self.d.proc.kill()
        self.d.proc.wait()

        def left():
            return [k for k in self.redis_keys() if "{sw" in k]
        wait_for(lambda: not left(), timeout=(2 * LEASE + 2) * mpsuptest.SCALE,
                 what="the dead host's scoped objects swept from Redis")
        self.assertEqual(h2.ok("daemon.info")["state"]["scoped_swept"], 2)
        self.assertEqual(h2.ok("dict.get", name="kept", key="k"), 1)
        self.d.proc = None  # killed: nothing to stop

    def test_delete_unscopes(self):
        self.a.ok("obj.create", name="t1", type="event", scope="process")
        self.assertEqual(pidfds(self.d.pid()), 1)
        self.assertEqual(self.a.ok("obj.create", name="t1", type="event", scope="process"),
                         {"created": False})
        self.assertEqual(pidfds(self.d.pid()), 1)
        self.a.ok("obj.delete", name="t1")
        self.assertEqual(pidfds(self.d.pid()), 0)
        self.assertEqual(self.names(self.d), [])

    def test_bad_scope(self):
        for v in ("thread", 1, None):
            self.assertEqual(self.a.code("obj.create", name="x", type="dict", scope=v),
                             "bad_request", v)
        self.assertEqual(self.d.ok("obj.list"), [])


if __name__ == "__main__":
    if why_not_runnable():
        mpsuptest.skip_all(why_not_runnable())
    mpsuptest.main()
