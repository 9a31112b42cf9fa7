#!/usr/bin/env python3
"""The redis task queue (task_queue = redis, DESIGN §12, docs/tasks.md):
several mpsupd "hosts" with workers of one pool sharing a private
redis-server; pool.map and pool.submit on one host run on every host's
workers, a host killed mid-map loses no item, a Redis restart answers
`unavailable` and then works again. With MPSUP_TEST_STATE_BACKEND=redis-cluster
(test_task_redis_cluster.py) the hosts share the file's local Redis Cluster
instead."""
import os
import shutil
import signal
import subprocess
import sys
import time

import mpsuptest
from mpsuptest import Client, Daemon, RedisServer, wait_for, main

ON_CLUSTER = mpsuptest.STATE_BACKEND == "redis-cluster"
if not RedisServer.available() or not shutil.which("redis-cli"):
    mpsuptest.skip_all("redis-server or redis-cli is not installed")

# A worker that says which host ran the item: N -> [HOST, 2N];
# {"v": N, "sleep": S} sleeps S seconds first.
WORKER_PY = r'''
import json, os, sys, time
host = os.environ["HOST"]
for line in sys.stdin:
    t = json.loads(line)
    item = t["item"]
    if isinstance(item, dict):
        time.sleep(item.get("sleep", 0))
        item = item["v"]
    sys.stdout.write(json.dumps({"id": t["id"], "result": [host, item * 2]}) + "\n")
    sys.stdout.flush()
'''

LEASE = 2


class RedisTasks(mpsuptest.unittest.TestCase):
    def setUp(self):
        if ON_CLUSTER:
            self.redis = mpsuptest.shared_cluster()
            # redis-cli on the master of pool w's keys (one hash tag)
            self.cli = ["redis-cli", "-c", "-p", str(self.redis.slot_owner(self.STREAM))]
        else:
            self.redis = RedisServer().start()
            self.addCleanup(self.redis.cleanup)
            self.cli = ["redis-cli", "-s", self.redis.socket]
        self.worker = os.path.join(self.redis.dir, "host_worker.py")
        with open(self.worker, "w") as f:
            f.write(WORKER_PY)

    def host(self, tag, processes=2, retries=2, extra=""):
        pool = ("[pool:w]\nmode = task\ntask_queue = redis\ncommand = %s %s\n"
                "processes = %d\nstart_secs = 0\ntask_retries = %d\nenvironment = HOST=%s\n%s"
                % (sys.executable, self.worker, processes, retries, tag, extra))
        d = Daemon(config_extra=pool,
                   main_extra="redis_address = %s\nredis_lease = %d\n"
                   % (self.redis.address, LEASE))
        self.addCleanup(self.stop_host, d)
        d.start()
        wait_for(lambda: (lambda r: len(r) == processes and
                          all(p["state"] == "running" for p in r))(d.ok("status", target="w")),
                 what="the workers of host %s" % tag)
        if processes:  # a host without workers only sends
            wait_for(lambda: self.queue(d).get("reading") == 1,
                     what="host %s reading its task queue" % tag)
        # (a cluster's masters answer CLUSTER INFO before the queue is up)
        wait_for(lambda: self.queue(d).get("connection") == "connected",
                 what="host %s connected to its task queue" % tag)
        return d

    STREAM = "mpsup:{task:w}:s"

    def ghost_read(self):
        """Read one entry as a consumer that never answers (a lost host):
        its id and fields."""
        out = [l for l in self.rcli("XREADGROUP", "GROUP", "g", "ghost", "COUNT", 1,
                                    "STREAMS", self.STREAM, ">") if l]
        fields = dict(zip(out[2::2], out[3::2]))
        return out[1], fields

    def rcli(self, *args):
        """redis-cli's output lines (a reply's elements, flattened)."""
        return subprocess.run(self.cli + [str(a) for a in args],
                              capture_output=True, text=True, check=True,
                              timeout=20 * mpsuptest.SCALE).stdout.split("\n")

    def stop_host(self, d):
        rc = d.stop()
        log = d.read_log()
        shutil.rmtree(d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None, -signal.SIGKILL), "mpsupd exited with %r; log:\n%s"
                      % (rc, log[-20000:]))

    @staticmethod
    def queue(d):
        return d.ok("daemon.info").get("task_queue", {})

    def entries_added(self):
        """The entries ever added to pool w's stream, as Redis counts them."""
        out = subprocess.run(self.cli + ["XINFO", "STREAM", self.STREAM],
                             capture_output=True, text=True,
                             check=True, timeout=20 * mpsuptest.SCALE).stdout.split("\n")
        return int(out[out.index("entries-added") + 1])

    def map(self, d, items, **kw):
        with Client(d.socket, timeout=120 * mpsuptest.SCALE) as c:
            return c.call("pool.map", pool="w", items=items, **kw)


class Spread(RedisTasks):
    def test_map_uses_every_hosts_workers(self):
        """pool.map of 1000 items on host A runs on A's and B's workers;
        every item is answered once, in order."""
        a, b = self.host("a"), self.host("b")
        items = [{"v": i, "sleep": 0.002} for i in range(1000)]
        r = self.map(a, items)
        self.assertTrue(r["ok"], r)
        res = r["result"]["results"]
        self.assertEqual([x[1] for x in res], [2 * i for i in range(1000)])
        hosts = {x[0] for x in res}
        self.assertEqual(hosts, {"a", "b"})
        qa, qb = self.queue(a), self.queue(b)
        self.assertEqual(qa["sent"], 1000)
        self.assertEqual(qa["answers"], 1000)
        self.assertEqual(qa["waiting"], 0)
        self.assertEqual(qb["sent"], 0)
        # B's share went through Redis from B's workers
        self.assertEqual(sum(1 for x in res if x[0] == "b") > 0, True)

    def test_map_items_batched_per_entry(self):
        """A map's items go through Redis a batch per stream entry (up to
        processes x task_window = 2 x 4 items here): fewer entries than
        items, each item answered once; single submits are batches of one."""
        a = self.host("a", extra="task_window = 4\n")
        n = 400
        r = self.map(a, list(range(n)))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["result"]["results"], [["a", 2 * i] for i in range(n)])
        q = self.queue(a)
        self.assertEqual((q["sent"], q["answers"], q["waiting"], q["held"]), (n, n, 0, 0))
        added = self.entries_added()
        self.assertLessEqual(added, n // 2)
        self.assertGreaterEqual(added, n // 8)
        self.assertEqual(q["entries"], added)
        with a.client() as c:
            ids = [c.ok("pool.submit", pool="w", item=i)["task"] for i in range(3)]
            got = [c.ok("task.wait", task=t, timeout=60 * mpsuptest.SCALE)["result"]
                   for t in ids]
        self.assertEqual(got, [["a", 0], ["a", 2], ["a", 4]])
        q2 = self.queue(a)
        self.assertEqual(q2["sent"], n + 3)
        self.assertEqual(self.entries_added(), added + 3)
        self.assertEqual(q2["entries"], added + 3)

    def test_items_and_results_keep_their_text(self):
        """Items and results with escapes, unicode and nesting go through a
        batch entry and back unchanged, for a map and a submit."""
        a = self.host("a")
        items = ["\u00e9\tx\"", [1, {"a": "\"q\\"}], 3.5, {"v": "s", "sleep": 0}, -7]
        r = self.map(a, items)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["result"]["results"],
                         [["a", items[0] * 2], ["a", items[1] * 2], ["a", 7.0], ["a", "ss"],
                          ["a", -14]])
        with a.client() as c:
            t = c.ok("pool.submit", pool="w", item=items[1])["task"]
            got = c.ok("task.wait", task=t, timeout=60 * mpsuptest.SCALE)["result"]
        self.assertEqual(got, ["a", items[1] * 2])

    def test_host_without_workers_sends(self):
        """A host whose pool has processes = 0 only sends: its maps, imaps
        and submits run on the other hosts' workers."""
        s, c = self.host("s", processes=0), self.host("c")
        r = self.map(s, list(range(50)))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["result"]["results"], [["c", 2 * i] for i in range(50)])
        with Client(s.socket, timeout=60 * mpsuptest.SCALE) as cl:
            rid = cl.send("pool.imap", pool="w", items=list(range(20)))
            self.assertEqual(cl.recv()["id"], rid)
            lines = [cl.recv() for _ in range(21)]
            self.assertEqual(lines[20], {"done": True, "n": 20, "failed": 0})
            got = [x["result"] for x in lines[:20]]
        with Client(s.socket, timeout=60 * mpsuptest.SCALE) as cl:
            t = cl.ok("pool.submit", pool="w", item=21)["task"]
            self.assertEqual(cl.ok("task.wait", task=t, timeout=30 * mpsuptest.SCALE)["result"],
                             ["c", 42])
        self.assertEqual(got, [["c", 2 * i] for i in range(20)])
        self.assertEqual(self.queue(s)["reading"], 0)

    def test_submit_and_wait_across_hosts(self):
        a, b = self.host("a"), self.host("b")
        with a.client() as c:
            ids = [c.ok("pool.submit", pool="w", item={"v": i, "sleep": 0.02})["task"]
                   for i in range(40)]
            got = [c.ok("task.wait", task=t, timeout=60 * mpsuptest.SCALE)["result"]
                   for t in ids]
        self.assertEqual([g[1] for g in got], [2 * i for i in range(40)])
        self.assertEqual({g[0] for g in got}, {"a", "b"})
        # answered once: a second wait finds nothing
        self.assertEqual(a.err("task.wait", task=ids[0], timeout=0), "not_found")

    def test_imap_across_hosts(self):
        """pool.imap streams the items of a redis pool as they end, fed a
        few at a time, from both hosts' workers."""
        a, b = self.host("a"), self.host("b")
        n = 300
        with Client(a.socket, timeout=60 * mpsuptest.SCALE) as c:
            rid = c.send("pool.imap", pool="w", items=[{"v": i, "sleep": 0.002}
                                                      for i in range(n)])
            first = c.recv()
            self.assertEqual(first, {"id": rid, "ok": True,
                                     "result": {"n": n, "chunksize": 1, "ordered": True}})
            lines = [c.recv() for _ in range(n + 1)]
        self.assertEqual([x["index"] for x in lines[:n]], list(range(n)))
        self.assertEqual([x["result"][1] for x in lines[:n]], [2 * i for i in range(n)])
        self.assertEqual({x["result"][0] for x in lines[:n]}, {"a", "b"})
        self.assertEqual(lines[n], {"done": True, "n": n, "failed": 0})
        self.assertEqual(self.queue(a)["waiting"], 0)
        self.assertEqual(self.queue(b)["held"], 0)

    def test_max_pending_bounds_what_waits_for_answers(self):
        """max_pending bounds the tasks a host sent and waits for."""
        a = self.host("a", extra="max_pending = 10\n")
        self.assertEqual(a.err("pool.map", pool="w", items=list(range(11))), "limit")
        with Client(a.socket, timeout=60 * mpsuptest.SCALE) as c:
            rid = c.send("pool.map", pool="w", items=[{"v": i, "sleep": 0.3} for i in range(8)])
            wait_for(lambda: self.queue(a)["waiting"] == 8, what="8 tasks waiting")
            self.assertEqual(a.err("pool.map", pool="w", items=[1, 2, 3]), "limit")
            self.assertEqual(a.ok("pool.map", pool="w", items=[1, 2])["results"],
                             [["a", 2], ["a", 4]])
            r = c.recv()
        self.assertEqual(r["id"], rid)
        self.assertEqual(len(r["result"]["results"]), 8)
        self.assertEqual(a.ok("pool.submit", pool="w", item=1)["task"] > 0, True)

    def test_one_host_no_chunks(self):
        """One host alone runs its maps through Redis; chunks are refused
        clearly (mpsupd batches items per stream entry itself)."""
        a = self.host("a")
        self.assertEqual(a.err("pool.map", pool="w", items=[1, 2, 3], chunksize=2),
                         "conflict")
        r = self.map(a, list(range(50)), chunksize=1)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["result"]["results"], [["a", 2 * i] for i in range(50)])


class LostHost(RedisTasks):
    def test_host_killed_mid_map(self):
        """SIGKILL host B while it runs items of A's map: B's entries are
        claimed by A after the lease; every item is answered once."""
        a, b = self.host("a"), self.host("b")
        n = 300
        items = [{"v": i, "sleep": 0.05} for i in range(n)]
        with Client(a.socket, timeout=120 * mpsuptest.SCALE) as c:
            rid = c.send("pool.map", pool="w", items=items)
            wait_for(lambda: [p for p in b.ok("pool.list") if p["pool"] == "w"][0]["running"]
                     > 0, what="host b running items")
            b.proc.kill()
            b.proc.wait()
            t0 = time.monotonic()
            r = c.recv()
            elapsed = time.monotonic() - t0
        self.assertEqual(r["id"], rid)
        self.assertTrue(r["ok"], r)
        res = r["result"]["results"]
        self.assertEqual([x[1] for x in res], [2 * i for i in range(n)])
        q = self.queue(a)
        self.assertGreater(q["claimed"], 0)
        self.assertLess(q["entries"], n)  # B died holding batches of items
        self.assertEqual(q["answers"], n)
        self.assertEqual(q["waiting"], 0)
        # the rest of the map at A's pace plus the lease and a tick
        self.assertLess(elapsed, (LEASE + 1 + n * 0.05 / 2) * mpsuptest.SCALE)

    def test_idle_host_claims_lost_entries(self):
        """A host whose workers are idle, its read of the stream waiting
        for new entries, still claims the entries of a host lost holding
        them, after the lease: the tasks are answered."""
        s = self.host("s", processes=0)  # sends only
        tasks = [s.ok("pool.submit", pool="w", item=i)["task"] for i in range(2)]
        wait_for(lambda: self.queue(s)["entries"] == 2, what="the tasks sent")
        self.rcli("XGROUP", "CREATE", self.STREAM, "g", "0")
        self.ghost_read()
        self.ghost_read()  # both held by a host that is gone
        c = self.host("c", processes=2)
        t0 = time.monotonic()
        with Client(s.socket, timeout=60 * mpsuptest.SCALE) as cl:
            got = [cl.ok("task.wait", task=t, timeout=30 * mpsuptest.SCALE)["result"]
                   for t in tasks]
        self.assertEqual(got, [["c", 0], ["c", 2]])
        self.assertLess(time.monotonic() - t0, (LEASE + 2) * 2 * mpsuptest.SCALE)
        self.assertEqual(self.queue(c)["claimed"], 2)

    def test_no_retries_left_fails_lost_items(self):
        """task_retries = 0: the items B held when it died fail (once each)
        with what happened; the others are answered."""
        a, b = self.host("a", retries=0), self.host("b", retries=0)
        n = 120
        items = [{"v": i, "sleep": 0.05} for i in range(n)]
        with Client(a.socket, timeout=120 * mpsuptest.SCALE) as c:
            rid = c.send("pool.map", pool="w", items=items, errors="return")
            wait_for(lambda: [p for p in b.ok("pool.list") if p["pool"] == "w"][0]["running"]
                     > 0, what="host b running items")
            b.proc.kill()
            b.proc.wait()
            r = c.recv()
        self.assertEqual(r["id"], rid)
        self.assertTrue(r["ok"], r)
        res, errs = r["result"]["results"], r["result"]["errors"]
        self.assertGreater(len(errs), 0)
        for e in errs:
            self.assertEqual(e["code"], "internal")
            self.assertIn("the host running it was lost (after 1 attempts)", e["message"])
            self.assertIsNone(res[e["index"]])
        failed = {e["index"] for e in errs}
        self.assertEqual([x[1] for i, x in enumerate(res) if i not in failed],
                         [2 * i for i in range(n) if i not in failed])
        self.assertEqual(self.queue(a)["answers"], n)


class Malformed(RedisTasks):
    def test_malformed_entries_fail_their_tasks(self):
        """Stream entries this version cannot run - items that are not a
        list, fields missing, read at once or claimed from a lost host -
        fail the tasks they name on their sender with a clear error, are
        acknowledged (nothing stays pending to hold back trimming) and
        leave every host running."""
        s = self.host("s", processes=0)
        tasks = [s.ok("pool.submit", pool="w", item=i)["task"] for i in range(3)]
        wait_for(lambda: self.queue(s)["entries"] == 3, what="the three tasks sent")
        self.rcli("XGROUP", "CREATE", self.STREAM, "g", "0")
        real = [self.ghost_read() for _ in range(3)]
        for eid, _ in real:  # the tasks are to come back only through the bad entries
            self.rcli("XACK", self.STREAM, "g", eid)
            self.rcli("XDEL", self.STREAM, eid)
        o = real[0][1]["o"]
        # one read by a host that dies (claimed after the lease): no x field
        self.rcli("XADD", self.STREAM, "*", "o", o, "i", real[0][1]["i"])
        self.ghost_read()
        # two read at once: items not a list of them; no o or i at all
        self.rcli("XADD", self.STREAM, "*", "o", o, "i", real[1][1]["i"], "x", "not json")
        self.rcli("XADD", self.STREAM, "*", "z", "1")
        c = self.host("c", processes=1)
        with Client(s.socket, timeout=60 * mpsuptest.SCALE) as cl:
            for t in tasks[:2]:
                r = cl.call("task.wait", task=t, timeout=30 * mpsuptest.SCALE)
                self.assertFalse(r["ok"], r)
                self.assertEqual(r["error"]["code"], "internal")
                self.assertIn("its stream entry is malformed", r["error"]["message"])
        wait_for(lambda: self.rcli("XPENDING", self.STREAM, "g")[0] == "0",
                 what="no entry left pending")
        # both hosts still serve: the third task never went anywhere
        self.assertEqual(s.err("task.wait", task=tasks[2], timeout=0.1), "timeout")
        self.assertEqual(self.map(c, [1, 2])["result"]["results"], [["c", 2], ["c", 4]])


class Outage(RedisTasks):
    def test_redis_restart(self):
        """Redis stops: task commands on the pool answer unavailable, a map
        in flight fails with unavailable, supervision goes on; Redis back:
        maps run again on both hosts."""
        a, b = self.host("a"), self.host("b")
        self.assertTrue(self.map(a, list(range(20)))["ok"])
        with Client(a.socket, timeout=60 * mpsuptest.SCALE) as c:
            rid = c.send("pool.map", pool="w", items=[{"v": i, "sleep": 0.5} for i in range(8)])
            wait_for(lambda: self.queue(a)["sent"] >= 28, what="the map sent")
            self.redis.stop(signal.SIGKILL)
            r = c.recv()
        self.assertEqual(r["id"], rid)
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["code"], "unavailable")
        wait_for(lambda: self.queue(b)["connection"] != "connected", what="b sees redis gone")
        self.assertEqual(a.err("pool.map", pool="w", items=[1]), "unavailable")
        self.assertEqual(a.err("pool.submit", pool="w", item=1), "unavailable")
        self.assertEqual(len(a.ok("status", target="w")), 2)  # supervision answers
        self.redis.start()
        for d in (a, b):
            wait_for(lambda: self.queue(d)["reading"] == 1,
                     timeout=30 * mpsuptest.SCALE, what="the task queue read again")
            # the workers finish what they held when Redis went (its answers are lost)
            wait_for(lambda: [p for p in d.ok("pool.list") if p["pool"] == "w"][0]["busy"] == 0,
                     what="the workers idle")
        r = self.map(a, [{"v": i, "sleep": 0.01} for i in range(200)])
        self.assertTrue(r["ok"], r)
        self.assertEqual([x[1] for x in r["result"]["results"]], [2 * i for i in range(200)])
        self.assertEqual({x[0] for x in r["result"]["results"]}, {"a", "b"})
        self.assertGreater(self.queue(a)["reconnects"], 0)

    def test_unreachable_at_start(self):
        d = Daemon(config_extra="[pool:w]\nmode = task\ntask_queue = redis\ncommand = cat\n",
                   main_extra="redis_address = %s\n" % os.path.join(self.redis.dir, "no.sock"))
        self.addCleanup(d.cleanup)
        d.start(wait=False)
        self.assertEqual(d.proc.wait(timeout=20 * mpsuptest.SCALE), 1)
        self.assertIn("task_queue = redis: redis_address", d.read_log())


if __name__ == "__main__":
    main()
