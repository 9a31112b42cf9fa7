#!/usr/bin/env python3
"""The redis state backend across "hosts": several mpsupd (each its own host
id) sharing one private redis-server, and what happens when Redis goes away
(DESIGN §12). With MPSUP_TEST_STATE_BACKEND=redis-cluster
(test_state_redis_hosts_cluster.py) the hosts share the file's local Redis
Cluster instead."""
import os
import shutil
import signal
import threading
import time

import mpsuptest
from mpsuptest import Client, Daemon, RedisServer, wait_for, main

ON_CLUSTER = mpsuptest.STATE_BACKEND == "redis-cluster"
if not (mpsuptest.RedisCluster if ON_CLUSTER else RedisServer).available():
    mpsuptest.skip_all("redis-server or redis-cli is not installed")


class RedisHosts(mpsuptest.unittest.TestCase):
    """A redis-server and mpsupd daemons started on demand, all cleaned up."""
    appendonly = False

    def setUp(self):
        if ON_CLUSTER and not self.appendonly:
            self.redis = mpsuptest.shared_cluster()
            return
        kind = mpsuptest.RedisCluster if ON_CLUSTER else RedisServer
        self.redis = kind(appendonly=self.appendonly).start()
        self.addCleanup(self.redis.cleanup)

    def host(self, extra=""):
        d = Daemon(main_extra=self.redis.config(extra))
        self.addCleanup(self.stop_host, d)
        return d.start()

    def stop_host(self, d):
        """Stop d; a crash or a sanitizer report (non-zero exit) fails the
        test, a SIGKILL the test sent does not."""
        rc = d.stop()
        log = d.read_log()
        shutil.rmtree(d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None, -signal.SIGKILL), "mpsupd exited with %r; log:\n%s"
                      % (rc, log[-20000:]))

    def blocked(self, d, n):
        wait_for(lambda: d.ok("daemon.info")["state"]["blocked_waiters"] == n,
                 what="%d blocked waiters" % n)

    def acquired_past_dead_host(self, a, b, cb, cmd, name, lease):
        """cb (a client of host b) waits in cmd for name, which host a holds;
        a's mpsupd is SIGKILLed: cb gets it, abandoned, within lease + 1 s.
        Returns the seconds it waited after the kill."""
        rid = cb.send(cmd, name=name)
        self.blocked(b, 1)
        t0 = time.monotonic()
        a.proc.kill()
        a.proc.wait()
        r = cb.recv()
        elapsed = time.monotonic() - t0
        self.assertEqual(r, {"id": rid, "ok": True,
                             "result": {"acquired": True, "abandoned": True}})
        self.assertLess(elapsed, (lease + 1) * mpsuptest.SCALE)
        return elapsed


class CrossHost(RedisHosts):
    def test_info(self):
        a, b = self.host(), self.host()
        ia, ib = (wait_for(lambda: (lambda s: s["connection"] == "connected" and s)(
            h.ok("daemon.info")["state"]), what="connected") for h in (a, b))
        self.assertEqual(ia["backend"], "redis")
        self.assertEqual(ia["address"], self.redis.address)
        self.assertIs(ia["cluster"], ON_CLUSTER)
        self.assertEqual(sorted(ia["nodes"]), sorted("127.0.0.1:%d" % p for p in self.redis.ports)
                         if ON_CLUSTER else [])
        self.assertEqual(ia["connection"], "connected")
        self.assertEqual(ia["lease"], 10)
        self.assertNotEqual(ia["host_id"], ib["host_id"])

    def test_blocked_consumer_gets_other_hosts_put(self):
        a, b = self.host(), self.host()
        with b.client() as cb:
            rid = cb.send("queue.get", name="jobs")
            self.blocked(b, 1)
            a.ok("queue.put", name="jobs", item={"from": "a"})
            r = cb.recv()
            self.assertEqual(r["id"], rid)
            self.assertEqual(r["result"], {"from": "a"})
        self.assertEqual(a.ok("queue.size", name="jobs"), 0)
        self.assertEqual(b.ok("obj.get", name="jobs"), [])

    def test_shared_namespace_types(self):
        a, b = self.host(), self.host()
        a.ok("dict.set", name="cfg", key="k", value=[1, {"x": None}])
        self.assertEqual(b.ok("dict.get", name="cfg", key="k"), [1, {"x": None}])
        self.assertEqual(b.err("list.append", name="cfg", value=1), "wrong_type")
        a.ok("obj.create", name="n", type="value", typecode="i", init=2**63 - 2)
        self.assertEqual(b.ok("value.add", name="n"), 2**63 - 1)
        self.assertEqual(a.err("value.add", name="n"), "out_of_range")
        self.assertEqual(b.ok("value.get", name="n"), 2**63 - 1)
        self.assertEqual([o["name"] for o in b.ok("obj.list")], ["cfg", "n"])

    def test_event_wakes_other_host(self):
        a, b = self.host(), self.host()
        with b.client() as cb:
            rid = cb.send("event.wait", name="go", timeout=30)
            self.blocked(b, 1)
            a.ok("event.set", name="go")
            self.assertEqual(cb.recv(), {"id": rid, "ok": True, "result": {"set": True}})

    def test_getter_that_leaves_loses_nothing(self):
        """A getter blocked on B leaves; the item A puts next is not lost
        to it: a getter on A takes it."""
        a, b = self.host(), self.host()
        cb = b.client()
        cb.send("queue.get", name="q")
        self.blocked(b, 1)
        cb.close()
        self.blocked(b, 0)
        a.ok("queue.put", name="q", item=7)
        self.assertEqual(a.ok("queue.get", name="q", timeout=5), 7)

    def test_delete_wakes_other_hosts_waiters(self):
        """obj.delete on host A answers every waiter blocked in Redis, on
        host B and on A, not_found (as the local backend does); the name
        is free and clean for a new object at once."""
        a, b = self.host(), self.host()
        a.ok("obj.create", name="full", type="queue", maxsize=1)
        a.ok("queue.put", name="full", item=0)
        a.ok("queue.put", name="joined", item=1)
        holder = a.client()
        self.addCleanup(holder.close)
        holder.ok("lock.acquire", name="L")
        a.ok("obj.create", name="S", type="semaphore", value=1)
        holder.ok("semaphore.acquire", name="S")
        a.ok("obj.create", name="B", type="barrier", parties=3)
        waits = [(b, "queue.get", {"name": "q"}), (b, "queue.get", {"name": "q"}),
                 (a, "queue.get", {"name": "q"}),
                 (b, "queue.put", {"name": "full", "item": 1}),
                 (b, "queue.join", {"name": "joined"}),
                 (b, "event.wait", {"name": "ev"}), (a, "event.wait", {"name": "ev"}),
                 (b, "lock.acquire", {"name": "L"}),
                 (b, "semaphore.acquire", {"name": "S"}),
                 (b, "barrier.wait", {"name": "B"})]
        clients = []
        for d, cmd, params in waits:
            c = d.client()
            self.addCleanup(c.close)
            clients.append((c, c.send(cmd, timeout=60, **params), cmd))
        self.blocked(b, 8)
        self.blocked(a, 2)
        t0 = time.monotonic()
        for name in ("q", "full", "joined", "ev", "L", "S", "B"):
            a.ok("obj.delete", name=name)
        for c, rid, cmd in clients:
            r = c.recv()
            self.assertEqual((r["id"], r.get("error", {}).get("code")), (rid, "not_found"),
                             (cmd, r))
            self.assertIn("was deleted", r["error"]["message"])
        self.assertLess(time.monotonic() - t0, 10 * mpsuptest.SCALE)
        self.blocked(a, 0)
        self.blocked(b, 0)
        # nothing of the old objects is left in the new ones
        self.assertEqual(b.err("queue.get", name="q", timeout=0), "empty")
        self.assertEqual(b.ok("queue.size", name="q"), 0)
        a.ok("queue.put", name="q", item="new")
        self.assertEqual(b.ok("queue.get", name="q", timeout=5), "new")
        self.assertEqual(b.ok("event.wait", name="ev", timeout=0), {"set": False})
        self.assertEqual(b.ok("lock.acquire", name="L", timeout=0), {"acquired": True})
        self.assertEqual(sorted(o["name"] for o in a.ok("obj.list")), ["L", "ev", "q"])

    def test_fifo_putters_and_acquirers_across_hosts(self):
        """Putters blocked on a full queue and acquirers blocked on a lock
        and a semaphore, arriving on alternate hosts, go on in arrival
        order; one that gives up leaves the line."""
        a, b = self.host(), self.host()
        a.ok("obj.create", name="q", type="queue", maxsize=1)
        a.ok("queue.put", name="q", item=0)
        a.ok("obj.create", name="S", type="semaphore", value=1)
        holder = a.client()
        self.addCleanup(holder.close)
        holder.ok("lock.acquire", name="L")
        holder.ok("semaphore.acquire", name="S")
        for obj, cmd in (("q", "queue.put"), ("L", "lock.acquire"), ("S", "semaphore.acquire")):
            waiting = []
            for i in range(6):
                d = (b, a)[i % 2]
                c = d.client()
                self.addCleanup(c.close)
                params = {"item": i + 1} if cmd == "queue.put" else {}
                if i == 2:
                    params["timeout"] = 0.3  # gives up before its turn
                waiting.append((c, c.send(cmd, name=obj, **params), i))
                self.blocked(d, (i + 2) // 2 if d is b else (i + 1) // 2)
            c, rid, _ = waiting.pop(2)
            r = c.recv()
            self.assertEqual(r["id"], rid)
            self.assertIn(r.get("error", {}).get("code") or r["result"],
                          ("full", {"acquired": False}), r)
            self.blocked(a, 3)
            self.blocked(b, 2)
            order, got, prev = [], [], holder
            for c, rid, i in waiting:
                if cmd == "queue.put":
                    got.append(holder.ok("queue.get", name="q"))
                else:
                    prev.ok(cmd.replace("acquire", "release"), name=obj)
                # the first in line goes on (another could not: no room)
                r = c.recv()
                self.assertEqual(r["id"], rid)
                self.assertTrue(r["ok"], r)
                if cmd != "queue.put":
                    self.assertEqual(r["result"], {"acquired": True})
                    prev = c
                order.append(i)
            if cmd == "queue.put":
                got.append(holder.ok("queue.get", name="q"))
                self.assertEqual(got, [0, 1, 2, 4, 5, 6])
            else:
                prev.ok(cmd.replace("acquire", "release"), name=obj)
            self.assertEqual(order, [0, 1, 3, 4, 5], cmd)
            self.blocked(a, 0)
            self.blocked(b, 0)

    def test_scoped_objects_bounded(self):
        """A host watches at most max_objects scoped objects (limit past
        it); a delete gives the room back."""
        a = self.host("max_objects = 2\n")
        with a.client() as c:
            for n in ("s1", "s2"):
                self.assertEqual(c.ok("obj.create", name=n, type="dict", scope="process"),
                                 {"created": True})
            self.assertEqual(c.err("obj.create", name="s3", type="dict", scope="process"),
                             "limit")
            self.assertEqual(sorted(o["name"] for o in c.ok("obj.list")), ["s1", "s2"])
            c.ok("obj.delete", name="s1")
            self.assertEqual(c.ok("obj.create", name="s3", type="dict", scope="process"),
                             {"created": True})

    def test_value_add_three_hosts(self):
        """3 hosts x 8 clients x 1000 value.add: exactly 24000."""
        hosts = [self.host() for _ in range(3)]
        n, errors = 1000, []

        def adder(d):
            try:
                with Client(d.socket, timeout=60 * mpsuptest.SCALE) as c:
                    for _ in range(n):
                        c.send("value.add", name="hits")
                    for _ in range(n):
                        r = c.recv()
                        if not r.get("ok"):
                            errors.append(r)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=adder, args=(d,)) for d in hosts for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for d in hosts:
            self.assertEqual(d.ok("value.get", name="hits"), 3 * 8 * n)


class Leases(RedisHosts):
    lease = 2

    def test_lease_renewed_while_held(self):
        a, b = self.host("redis_lease = %d\n" % self.lease), self.host()
        with a.client() as ca:
            self.assertEqual(ca.ok("lock.acquire", name="L"), {"acquired": True})
            end = time.monotonic() + 2.5 * self.lease
            while time.monotonic() < end:
                self.assertEqual(b.ok("lock.acquire", name="L", timeout=0),
                                 {"acquired": False})
                time.sleep(0.2)
            self.assertGreater(a.ok("daemon.info")["state"]["lease_renewals"], 2)

    def test_disconnect_releases_at_once(self):
        a, b = self.host(), self.host()
        ca = a.client()
        ca.ok("lock.acquire", name="L")
        with b.client() as cb:
            rid = cb.send("lock.acquire", name="L", timeout=30)
            self.blocked(b, 1)
            t0 = time.monotonic()
            ca.close()
            r = cb.recv()
            self.assertEqual(r, {"id": rid, "ok": True,
                                 "result": {"acquired": True, "abandoned": True}})
            self.assertLess(time.monotonic() - t0, 2)

    def test_abandoned_after_holder_host_dies(self):
        """A lock held on host A is abandoned for host B's waiter once A's
        mpsupd is SIGKILLed: within lease + 1 s."""
        a = self.host("redis_lease = %d\n" % self.lease)
        b = self.host("redis_lease = %d\n" % self.lease)
        ca = a.client()
        self.assertEqual(ca.ok("lock.acquire", name="L"), {"acquired": True})
        self.assertEqual(ca.ok("semaphore.acquire", name="S"), {"acquired": True})
        with b.client() as cb:
            elapsed = self.acquired_past_dead_host(a, b, cb, "lock.acquire", "L", self.lease)
            self.assertGreater(elapsed, self.lease / 3 - 0.1)  # the lease held till then
            self.assertEqual(cb.ok("semaphore.acquire", name="S", timeout=0),
                             {"acquired": True, "abandoned": True})
        ca.close()



class Conditions(RedisHosts):
    """A condition shared by two hosts: notify and the lock's lease."""
    lease = 2

    def state(self, d):
        return d.ok("obj.get", name="C")

    def test_waiter_notified_by_other_host(self):
        a, b = self.host(), self.host()
        with a.client() as ca, b.client() as cb:
            self.assertEqual(cb.ok("condition.acquire", name="C"), {"acquired": True})
            cb.ok("condition.acquire", name="C")  # depth 2
            rid = cb.send("condition.wait", name="C", timeout=60)
            self.blocked(b, 1)
            self.assertEqual(self.state(a)["waiting"], 1)
            # the wait let go of both levels
            self.assertEqual(ca.ok("condition.acquire", name="C", timeout=5),
                             {"acquired": True})
            self.assertEqual(ca.ok("condition.notify", name="C"), {"woken": 1})
            st = self.state(a)
            self.assertEqual((st["waiting"], st["waiters"]), (0, 1))
            ca.ok("condition.release", name="C")
            self.assertEqual(cb.recv(), {"id": rid, "ok": True, "result": {"notified": True}})
            # b holds it again, at depth 2
            self.assertEqual(ca.ok("condition.acquire", name="C", timeout=0),
                             {"acquired": False})
            cb.ok("condition.release", name="C")
            self.assertTrue(self.state(a)["locked"])
            cb.ok("condition.release", name="C")
            self.assertEqual(cb.err("condition.release", name="C"), "conflict")
            self.assertFalse(self.state(a)["locked"])

    def test_abandoned_after_holder_host_dies(self):
        """A condition held on host A is abandoned for host B's acquirer once
        A's mpsupd is SIGKILLed (within lease + 1 s); A's waiter in wait is
        dropped with its host: a notify wakes nobody."""
        a = self.host("redis_lease = %d\n" % self.lease)
        b = self.host("redis_lease = %d\n" % self.lease)
        ca, cw = a.client(), a.client()
        cw.ok("condition.acquire", name="C")
        cw.send("condition.wait", name="C")
        self.blocked(a, 1)
        self.assertEqual(ca.ok("condition.acquire", name="C"), {"acquired": True})
        with b.client() as cb:
            self.acquired_past_dead_host(a, b, cb, "condition.acquire", "C", self.lease)
            wait_for(lambda: self.state(b)["waiting"] == 0, what="A's waiter dropped")
            self.assertEqual(cb.ok("condition.notify", name="C"), {"woken": 0})
            cb.ok("condition.release", name="C")
        ca.close()
        cw.close()

    def test_producers_consumers_two_hosts(self):
        """Consumers on both hosts wait on one condition for items that
        producers on both hosts append and notify: every item is taken once,
        and every waiter returns holding the lock (no one else is in)."""
        hosts = [self.host(), self.host()]
        n_items, errors, got = 200, [], []
        lock = threading.Lock()

        def enter(c):  # holding the lock: nobody else is inside
            self.assertEqual(c.ok("value.add", name="inside"), 1)

        def leave(c):
            self.assertEqual(c.ok("value.add", name="inside", by=-1), 0)

        def consumer(d, k, timeout):
            try:
                with d.client() as c:
                    for _ in range(k):
                        c.ok("condition.acquire", name="C")
                        enter(c)
                        while c.ok("list.len", name="items") == 0:
                            leave(c)
                            c.ok("condition.wait", name="C", timeout=timeout)
                            enter(c)
                        item = c.ok("list.pop", name="items", index=0)
                        leave(c)
                        c.ok("condition.release", name="C")
                        with lock:
                            got.append(item)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        def producer(d, base, k):
            try:
                with d.client() as c:
                    for i in range(k):
                        c.ok("condition.acquire", name="C")
                        enter(c)
                        c.ok("list.append", name="items", value=base + i)
                        c.ok("condition.notify", name="C")
                        leave(c)
                        c.ok("condition.release", name="C")
            except Exception as e:
                errors.append(e)

        hosts[0].ok("obj.create", name="items", type="list")
        # two wait long, two time out often (a timeout meets notifies)
        ts = [threading.Thread(target=consumer, args=(hosts[i % 2], n_items // 4,
                                                      5 if i < 2 else 0.01))
              for i in range(4)]
        ts += [threading.Thread(target=producer, args=(hosts[i], i * n_items // 2,
                                                        n_items // 2)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * mpsuptest.SCALE)
        self.assertEqual(errors, [])
        self.assertFalse(any(t.is_alive() for t in ts))
        self.assertEqual(sorted(got), list(range(n_items)))
        st = self.state(hosts[1])
        self.assertEqual((st["locked"], st["waiting"], st["waiters"]), (False, 0, 0))

    def test_locked_keeps_the_hold(self):
        """Asking whether it is locked changes nothing the holder holds: its
        lease is still renewed and its disconnect still releases at once."""
        a, b = self.host(), self.host()
        ca = a.client()
        ca.ok("lock.acquire", name="L")
        self.assertTrue(ca.ok("lock.locked", name="L"))
        self.assertEqual(a.ok("daemon.info")["state"]["holds"], 1)
        ca.ok("condition.acquire", name="C")
        self.assertTrue(ca.ok("condition.locked", name="C"))
        self.assertEqual(ca.ok("condition.notify", name="C"), {"woken": 0})
        self.assertEqual(a.ok("daemon.info")["state"]["holds"], 2)
        ca.close()
        with b.client() as cb:
            self.assertEqual(cb.ok("lock.acquire", name="L", timeout=5),
                             {"acquired": True, "abandoned": True})
            self.assertEqual(cb.ok("condition.acquire", name="C", timeout=5),
                             {"acquired": True, "abandoned": True})

class Outage(RedisHosts):
    appendonly = True  # appendfsync always: what was answered survives a restart

    def test_unreachable_at_start(self):
        d = Daemon(main_extra="state_backend = redis\nredis_address = %s\n"
                   % os.path.join(self.redis.dir, "nothing.sock"))
        self.addCleanup(d.cleanup)
        d.start(wait=False)
        self.assertEqual(d.proc.wait(timeout=20 * mpsuptest.SCALE), 1)
        self.assertIn("cannot connect to redis_address", d.read_log())

    def test_restart_mid_run(self):
        a = self.host()
        a.ok("obj.create", name="w", type="queue")
        a.ok("dict.set", name="d", key="acked", value=1)
        cg, ct = a.client(), a.client()
        self.addCleanup(cg.close)
        self.addCleanup(ct.close)
        rid = cg.send("queue.get", name="w")
        tid = ct.send("queue.get", name="w", timeout=0.5)
        self.blocked(a, 2)
        self.redis.stop(signal.SIGKILL)  # a crash: only the fsynced log is left
        # every state command: unavailable at once
        t0 = time.monotonic()
        self.assertEqual(a.err("dict.get", name="d", key="acked"), "unavailable")
        self.assertLess(time.monotonic() - t0, 2)
        # supervision goes on
        self.assertEqual(a.ok("status"), [])
        self.assertEqual(a.ok("daemon.info")["state"]["connection"], "down")
        # a waiter whose time is up while Redis is away gets its timeout answer
        r = ct.recv()
        self.assertEqual((r["id"], r["error"]["code"]), (tid, "empty"))
        self.redis.start()

        def back():
            with a.client() as c:
                return c.call("dict.get", name="d", key="acked").get("ok")
        wait_for(back, what="redis to be back")
        # acknowledged before the crash (appendfsync always): still there
        self.assertEqual(a.ok("dict.get", name="d", key="acked"), 1)
        # (a command may get through before a cluster's CLUSTER INFO is in)
        info = wait_for(lambda: (lambda s: s["connection"] == "connected" and s)(
            a.ok("daemon.info")["state"]), what="connected")
        self.assertGreaterEqual(info["connections_lost"], 1)
        # the getter blocked before the crash waits again (re-armed); the
        # script is loaded again on NOSCRIPT
        self.blocked(a, 1)
        a.ok("queue.put", name="w", item="after")
        self.assertEqual(cg.recv(), {"id": rid, "ok": True, "result": "after"})

    def test_restarted_twice(self):
        """The connection made again after a restart (the probe's, which
        becomes the server's) notices the next restart too."""
        a = self.host()
        a.ok("dict.set", name="d", key="acked", value=1)

        def back():
            with a.client() as c:
                return c.call("dict.get", name="d", key="acked").get("ok")

        def state():
            return a.ok("daemon.info")["state"]["connection"]
        for n in (1, 2):
            self.redis.stop(signal.SIGKILL)
            wait_for(lambda: state() == "down", what="loss %d seen" % n)
            self.assertEqual(a.err("dict.get", name="d", key="acked"), "unavailable")
            self.redis.start()
            wait_for(back, what="redis to be back (%d)" % n)
        info = wait_for(lambda: (lambda s: s["connection"] == "connected" and s)(
            a.ok("daemon.info")["state"]), what="connected")
        self.assertEqual(info["connections_lost"], 2)

    def test_condition_waiter_rearmed(self):
        """A waiter in condition.wait when Redis restarts waits on once it is
        back, and is woken by a notify then."""
        a = self.host()
        cw, cn = a.client(), a.client()
        self.addCleanup(cw.close)
        self.addCleanup(cn.close)
        cw.ok("condition.acquire", name="C")
        rid = cw.send("condition.wait", name="C")
        self.blocked(a, 1)
        self.redis.stop(signal.SIGKILL)
        self.assertEqual(cn.err("condition.acquire", name="C"), "unavailable")
        self.redis.start()

        def back():
            with a.client() as c:
                return c.call("condition.locked", name="C").get("ok")
        wait_for(back, what="redis to be back")
        self.blocked(a, 1)
        self.assertFalse(a.ok("condition.locked", name="C"))
        cn.ok("condition.acquire", name="C")
        self.assertEqual(cn.ok("condition.notify", name="C"), {"woken": 1})
        cn.ok("condition.release", name="C")
        self.assertEqual(cw.recv(), {"id": rid, "ok": True, "result": {"notified": True}})
        cw.ok("condition.release", name="C")

if __name__ == "__main__":
    main()
