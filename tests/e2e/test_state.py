"""End-to-end tests of the shared-state server (DESIGN §3 Shared state):
every type and op, every error path, blocking and wake-up order, timeouts,
ownership, limits, and the seed scenarios.

Set MPSUP_STRESS_LARGE=1 for the larger stress run.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

from mpsuptest import DaemonTestCase, Client, wait_for, SCALE, main, local_only

I64_MAX = 2**63 - 1
I64_MIN = -2**63


def waiters(c, name):
    """Number of requests waiting on object name (from obj.list)."""
    for o in c.ok("obj.list"):
        if o["name"] == name:
            return o["waiters"]
    return 0


def wait_waiters(c, name, n):
    wait_for(lambda: waiters(c, name) == n, what="%d waiters on %s" % (n, name))


def recv_id(c, rid):
    r = c.recv()
    assert r.get("id") == rid, "got %r, wanted id %r" % (r, rid)
    return r


# A child process speaking the raw protocol (the seed scenarios).
CHILD_LIB = r'''
import json, socket, sys
class C:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
    def ok(self, cmd, **p):
        p["cmd"] = cmd
        self.s.sendall(json.dumps(p).encode() + b"\n")
        r = json.loads(self.f.readline())
        if not r.get("ok"):
            raise SystemExit("%s failed: %r" % (cmd, r))
        return r.get("result")
c = C(sys.argv[1])
'''


class Dicts(DaemonTestCase):
    def test_dict_ops(self):
        with self.d.client() as c:
            self.assertIsNone(c.ok("dict.set", name="d", key="a", value=1))
            c.ok("dict.set", name="d", key="b", value={"x": [1, 2]})
            self.assertEqual(c.ok("dict.get", name="d", key="a"), 1)
            self.assertEqual(c.ok("dict.get", name="d", key="b"), {"x": [1, 2]})
            self.assertEqual(c.err("dict.get", name="d", key="zz"), "not_found")
            self.assertEqual(c.ok("dict.get", name="d", key="zz", default=None), None)
            self.assertEqual(c.ok("dict.get", name="d", key="zz", default=7), 7)
            self.assertTrue(c.ok("dict.has", name="d", key="a"))
            self.assertFalse(c.ok("dict.has", name="d", key="zz"))
            self.assertEqual(c.ok("dict.keys", name="d"), ["a", "b"])
            self.assertEqual(c.ok("dict.values", name="d"), [1, {"x": [1, 2]}])
            self.assertEqual(c.ok("dict.items", name="d"), [["a", 1], ["b", {"x": [1, 2]}]])
            self.assertEqual(c.ok("dict.len", name="d"), 2)
            c.ok("dict.update", name="d", items={"c": 3, "a": 10})
            self.assertEqual(c.ok("dict.get", name="d", key="a"), 10)
            self.assertEqual(c.ok("dict.len", name="d"), 3)
            self.assertEqual(c.ok("dict.pop", name="d", key="c"), 3)
            self.assertEqual(c.err("dict.pop", name="d", key="c"), "not_found")
            self.assertEqual(c.ok("dict.pop", name="d", key="c", default="dflt"), "dflt")
            self.assertEqual(c.ok("dict.setdefault", name="d", key="a", value=99), 10)
            self.assertEqual(c.ok("dict.setdefault", name="d", key="n", value=5), 5)
            self.assertIsNone(c.ok("dict.setdefault", name="d", key="m"))
            self.assertIsNone(c.ok("dict.del", name="d", key="m"))
            self.assertEqual(c.err("dict.del", name="d", key="m"), "not_found")
            self.assertEqual(c.ok("obj.get", name="d"),
                             {"a": 10, "b": {"x": [1, 2]}, "n": 5})
            c.ok("dict.clear", name="d")
            self.assertEqual(c.ok("dict.len", name="d"), 0)
            # keys with odd characters
            c.ok("dict.set", name="d", key="k\u00e9 y\nz", value=True)
            self.assertEqual(c.ok("dict.keys", name="d"), ["k\u00e9 y\nz"])

    def test_dict_incr_cas(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("dict.incr", name="d", key="n"), 1)
            self.assertEqual(c.ok("dict.incr", name="d", key="n", by=41), 42)
            self.assertEqual(c.ok("dict.incr", name="d", key="n", by=-2), 40)
            self.assertEqual(c.ok("dict.incr", name="d", key="f", by=0.5), 0.5)
            self.assertEqual(c.ok("dict.incr", name="d", key="n", by=0.5), 40.5)
            c.ok("dict.set", name="d", key="big", value=I64_MAX)
            self.assertEqual(c.err("dict.incr", name="d", key="big"), "out_of_range")
            self.assertEqual(c.ok("dict.get", name="d", key="big"), I64_MAX)
            c.ok("dict.set", name="d", key="s", value="text")
            self.assertEqual(c.err("dict.incr", name="d", key="s"), "conflict")
            self.assertEqual(c.err("dict.incr", name="d", key="n", by="x"), "bad_request")
            self.assertEqual(c.ok("dict.cas", name="d", key="s", expect="text", value="new"),
                             {"swapped": True})
            self.assertEqual(c.ok("dict.cas", name="d", key="s", expect="text", value="x"),
                             {"swapped": False})
            self.assertEqual(c.ok("dict.get", name="d", key="s"), "new")
            # a missing key matches expect null: set-if-absent
            self.assertEqual(c.ok("dict.cas", name="d", key="new", expect=None, value=1),
                             {"swapped": True})
            self.assertEqual(c.ok("dict.cas", name="d", key="new", expect=None, value=2),
                             {"swapped": False})
            # numbers compare by value
            self.assertEqual(c.ok("dict.cas", name="d", key="new", expect=1.0, value=3),
                             {"swapped": True})

    def test_incr_result_not_shared(self):
        # A value read earlier must not change under a later incr.
        with self.d.client() as c:
            c.ok("dict.set", name="d", key="n", value=1)
            c.ok("list.append", name="l", value=1)
            v = c.ok("dict.items", name="d")
            c.ok("dict.incr", name="d", key="n")
            self.assertEqual(v, [["n", 1]])
            self.assertEqual(c.ok("dict.get", name="d", key="n"), 2)

    def test_dict_params(self):
        with self.d.client() as c:
            self.assertEqual(c.err("dict.get", name="d"), "bad_request")
            self.assertEqual(c.err("dict.get", name="d", key=1), "bad_request")
            self.assertEqual(c.err("dict.set", name="d", key="a"), "bad_request")
            self.assertEqual(c.err("dict.set", name="d", key="a", value=1, extra=2),
                             "bad_request")
            self.assertEqual(c.err("dict.update", name="d", items=[1]), "bad_request")
            self.assertEqual(c.err("dict.get", key="a"), "bad_request")
            self.assertEqual(c.err("dict.get", name="", key="a"), "bad_request")
            self.assertEqual(c.err("dict.get", name="a/b", key="a"), "bad_request")
            self.assertEqual(c.err("dict.get", name="x" * 65, key="a"), "bad_request")
            self.assertEqual(c.err("dict.get", name=5, key="a"), "bad_request")
            c.ok("dict.set", name="x" * 64, key="a", value=1)
            self.assertEqual(c.err("dict.frobnicate", name="d"), "unknown_command")


class Lists(DaemonTestCase):
    def test_list_ops(self):
        with self.d.client() as c:
            c.ok("list.append", name="l", value=1)
            c.ok("list.extend", name="l", values=[2, 3, 4])
            self.assertEqual(c.ok("obj.get", name="l"), [1, 2, 3, 4])
            c.ok("list.insert", name="l", index=0, value=0)
            c.ok("list.insert", name="l", index=-1, value=3.5)
            c.ok("list.insert", name="l", index=100, value=9)
            c.ok("list.insert", name="l", index=-100, value=-1)
            self.assertEqual(c.ok("obj.get", name="l"), [-1, 0, 1, 2, 3, 3.5, 4, 9])
            self.assertEqual(c.ok("list.get", name="l", index=0), -1)
            self.assertEqual(c.ok("list.get", name="l", index=-1), 9)
            self.assertEqual(c.ok("list.get", name="l", index=-8), -1)
            self.assertEqual(c.err("list.get", name="l", index=8), "out_of_range")
            self.assertEqual(c.err("list.get", name="l", index=-9), "out_of_range")
            c.ok("list.set", name="l", index=-2, value="four")
            self.assertEqual(c.err("list.set", name="l", index=99, value=0), "out_of_range")
            self.assertEqual(c.ok("list.pop", name="l"), 9)
            self.assertEqual(c.ok("list.pop", name="l", index=0), -1)
            self.assertEqual(c.ok("list.pop", name="l", index=-1), "four")
            self.assertEqual(c.err("list.pop", name="l", index=10), "out_of_range")
            self.assertEqual(c.ok("obj.get", name="l"), [0, 1, 2, 3, 3.5])
            c.ok("list.append", name="l", value=2)
            self.assertEqual(c.ok("list.index", name="l", value=2), 2)
            self.assertEqual(c.ok("list.count", name="l", value=2), 2)
            self.assertEqual(c.ok("list.count", name="l", value=2.0), 2)
            self.assertEqual(c.err("list.index", name="l", value=42), "not_found")
            c.ok("list.remove", name="l", value=2)
            self.assertEqual(c.err("list.remove", name="l", value=42), "not_found")
            self.assertEqual(c.ok("obj.get", name="l"), [0, 1, 3, 3.5, 2])
            self.assertEqual(c.ok("list.len", name="l"), 5)
            self.assertEqual(c.ok("list.slice", name="l"), [0, 1, 3, 3.5, 2])
            self.assertEqual(c.ok("list.slice", name="l", start=1, stop=3), [1, 3])
            self.assertEqual(c.ok("list.slice", name="l", start=-2), [3.5, 2])
            self.assertEqual(c.ok("list.slice", name="l", stop=-3), [0, 1])
            self.assertEqual(c.ok("list.slice", name="l", start=4, stop=1), [])
            self.assertEqual(c.ok("list.slice", name="l", start=-100, stop=100),
                             [0, 1, 3, 3.5, 2])
            self.assertEqual(c.ok("list.slice", name="l", start=None, stop=2), [0, 1])
            c.ok("list.clear", name="l")
            self.assertEqual(c.err("list.pop", name="l"), "out_of_range")
            self.assertEqual(c.err("list.get", name="l", index="0"), "bad_request")
            self.assertEqual(c.err("list.extend", name="l", values=1), "bad_request")


class Values(DaemonTestCase):
    def test_value_default(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("value.add", name="v", by=0), 0)
            self.assertEqual(c.ok("value.get", name="v"), 0)
            self.assertEqual(c.ok("value.add", name="v", by=5), 5)
            self.assertEqual(c.ok("value.add", name="v"), 6)
            c.ok("value.set", name="v", value="text")
            self.assertEqual(c.err("value.add", name="v", by=1), "conflict")
            self.assertEqual(c.ok("value.cas", name="v", expect="text", value=[1]),
                             {"swapped": True})
            self.assertEqual(c.ok("obj.get", name="v"), [1])
            c.ok("value.set", name="v", value=1.5)
            self.assertEqual(c.ok("value.add", name="v", by=1), 2.5)
            c.ok("value.set", name="v", value=I64_MAX)
            self.assertEqual(c.err("value.add", name="v", by=1), "out_of_range")

    def test_value_int(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("obj.create", name="i", type="value", typecode="i",
                                  init=10), {"created": True})
            self.assertEqual(c.ok("value.add", name="i", by=-20), -10)
            self.assertEqual(c.err("value.add", name="i", by=0.5), "bad_request")
            self.assertEqual(c.err("value.set", name="i", value="x"), "bad_request")
            self.assertEqual(c.err("value.set", name="i", value=1.5), "bad_request")
            c.ok("value.set", name="i", value=I64_MAX - 1)
            self.assertEqual(c.ok("value.add", name="i", by=1), I64_MAX)
            self.assertEqual(c.err("value.add", name="i", by=1), "out_of_range")
            self.assertEqual(c.ok("value.get", name="i"), I64_MAX)
            c.ok("value.set", name="i", value=I64_MIN)
            self.assertEqual(c.err("value.add", name="i", by=-1), "out_of_range")
            self.assertEqual(c.ok("value.get", name="i"), I64_MIN)
            self.assertEqual(c.ok("value.cas", name="i", expect=I64_MIN, value=3),
                             {"swapped": True})
            self.assertEqual(c.ok("value.cas", name="i", expect=4, value=5),
                             {"swapped": False})
            self.assertEqual(c.err("value.cas", name="i", expect=3, value="x"), "bad_request")
            self.assertEqual(c.ok("value.get", name="i"), 3)

    def test_value_double(self):
        with self.d.client() as c:
            c.ok("obj.create", name="f", type="value", typecode="d")
            self.assertEqual(c.ok("value.get", name="f"), 0.0)
            self.assertEqual(c.ok("value.add", name="f", by=0.25), 0.25)
            self.assertEqual(c.ok("value.add", name="f", by=2), 2.25)
            c.ok("value.set", name="f", value=3)
            self.assertEqual(c.ok("value.get", name="f"), 3.0)
            self.assertEqual(c.err("value.set", name="f", value=None), "bad_request")
            self.assertEqual(c.ok("value.cas", name="f", expect=3, value=1.5),
                             {"swapped": True})
            c.ok("value.set", name="f", value=1.5e308)
            self.assertEqual(c.err("value.add", name="f", by=1.5e308), "out_of_range")
            self.assertEqual(c.ok("value.get", name="f"), 1.5e308)
            c.ok("value.set", name="any", value=1.5e308)
            self.assertEqual(c.err("value.add", name="any", by=1.5e308), "out_of_range")
            c.ok("dict.set", name="d", key="k", value=1.5e308)
            self.assertEqual(c.err("dict.incr", name="d", key="k", by=1.5e308), "out_of_range")
            c.ok("obj.create", name="a", type="array", typecode="d", init=[1.5e308])
            self.assertEqual(c.err("array.add", name="a", index=0, by=1.5e308), "out_of_range")

    def test_value_options(self):
        with self.d.client() as c:
            self.assertEqual(c.err("obj.create", name="x", type="value", typecode="q"),
                             "bad_request")
            self.assertEqual(c.err("obj.create", name="x", type="value", typecode="i",
                                   init=1.5), "bad_request")
            self.assertEqual(c.err("obj.create", name="x", type="value", color="red"),
                             "bad_request")
            self.assertEqual(c.ok("obj.list"), [])


class Arrays(DaemonTestCase):
    def test_array_ops(self):
        with self.d.client() as c:
            c.ok("obj.create", name="a", type="array", typecode="i", size=4)
            self.assertEqual(c.ok("obj.get", name="a"), [0, 0, 0, 0])
            c.ok("array.set", name="a", index=1, value=5)
            c.ok("array.set", name="a", index=-1, value=7)
            self.assertEqual(c.ok("array.get", name="a", index=-3), 5)
            self.assertEqual(c.ok("array.add", name="a", index=1, by=10), 15)
            self.assertEqual(c.ok("array.add", name="a", index=0), 1)
            self.assertEqual(c.ok("array.len", name="a"), 4)
            self.assertEqual(c.ok("array.slice", name="a", start=1), [15, 0, 7])
            self.assertEqual(c.ok("array.slice", name="a", start=-2, stop=-1), [0])
            self.assertEqual(c.err("array.get", name="a", index=4), "out_of_range")
            self.assertEqual(c.err("array.set", name="a", index=-5, value=1), "out_of_range")
            self.assertEqual(c.err("array.set", name="a", index=0, value=1.5), "bad_request")
            self.assertEqual(c.err("array.set", name="a", index=0, value="1"), "bad_request")
            c.ok("array.set", name="a", index=0, value=I64_MAX)
            self.assertEqual(c.err("array.add", name="a", index=0), "out_of_range")

            c.ok("obj.create", name="b", type="array", typecode="d", init=[1, 2.5])
            self.assertEqual(c.ok("obj.get", name="b"), [1.0, 2.5])
            self.assertEqual(c.ok("array.add", name="b", index=0, by=0.5), 1.5)
            self.assertEqual(c.err("obj.create", name="e", type="array", typecode="i",
                                   init=[1, 2.5]), "bad_request")
            self.assertEqual(c.err("obj.create", name="e", type="array", size=2,
                                   init=[1]), "bad_request")
            self.assertEqual(c.err("obj.create", name="e", type="array", size=-1),
                             "bad_request")
            self.assertEqual(c.err("obj.create", name="e", type="array", size=10**12),
                             "limit")
            self.assertEqual(c.err("obj.create", name="e", type="array", typecode="x"),
                             "bad_request")
            # No defaults: an array exists only through obj.create.
            for cmd, params in (("array.len", {}), ("array.get", {"index": 0}),
                                ("array.set", {"index": 0, "value": 1})):
                self.assertEqual(c.err(cmd, name="z", **params), "not_found")
            self.assertNotIn("z", [o["name"] for o in c.ok("obj.list")])


class Queues(DaemonTestCase):
    def test_queue_ops(self):
        with self.d.client() as c:
            c.ok("obj.create", name="q", type="queue", maxsize=2)
            self.assertTrue(c.ok("queue.empty", name="q"))
            c.ok("queue.put", name="q", item={"job": 1})
            c.ok("queue.put", name="q", item=[2])
            self.assertTrue(c.ok("queue.full", name="q"))
            self.assertEqual(c.ok("queue.size", name="q"), 2)
            self.assertEqual(c.err("queue.put", name="q", item=3, timeout=0), "full")
            t0 = time.monotonic()
            self.assertEqual(c.err("queue.put", name="q", item=3, timeout=0.2), "full")
            self.assertGreaterEqual(time.monotonic() - t0, 0.19)
            self.assertEqual(c.ok("obj.get", name="q"), [{"job": 1}, [2]])
            self.assertEqual(c.ok("queue.get", name="q"), {"job": 1})
            self.assertEqual(c.ok("queue.get", name="q", timeout=0), [2])
            self.assertEqual(c.err("queue.get", name="q", timeout=0), "empty")
            t0 = time.monotonic()
            self.assertEqual(c.err("queue.get", name="q", timeout=0.15), "empty")
            self.assertGreaterEqual(time.monotonic() - t0, 0.14)
            self.assertFalse(c.ok("queue.full", name="q"))
            self.assertEqual(c.err("queue.get", name="q", timeout=-1), "bad_request")
            self.assertEqual(c.err("queue.get", name="q", timeout="1"), "bad_request")
            # join / task_done
            self.assertEqual(c.err("queue.join", name="q", timeout=0), "timeout")
            c.ok("queue.task_done", name="q")
            self.assertEqual(c.err("queue.join", name="q", timeout=0.05), "timeout")
            c.ok("queue.task_done", name="q")
            self.assertIsNone(c.ok("queue.join", name="q"))
            self.assertEqual(c.err("queue.task_done", name="q"), "conflict")
            self.assertEqual(c.err("obj.create", name="x", type="queue", maxsize=-1),
                             "bad_request")

    def test_get_woken_by_put(self):
        with self.d.client() as a, self.d.client() as b:
            rid = a.send("queue.get", name="q")
            wait_waiters(b, "q", 1)
            b.ok("queue.put", name="q", item="hello")
            self.assertEqual(recv_id(a, rid)["result"], "hello")
            self.assertEqual(b.ok("queue.size", name="q"), 0)
            # the item was handed over: one unfinished task
            self.assertEqual(b.err("queue.join", name="q", timeout=0), "timeout")

    def test_blocked_connection_holds_only_itself(self):
        with self.d.client() as a, self.d.client() as b:
            rid = a.send("queue.get", name="q")
            rid2 = a.send("ping")
            wait_waiters(b, "q", 1)
            self.assertEqual(b.ok("ping"), "pong")
            b.ok("queue.put", name="q", item=1)
            self.assertEqual(recv_id(a, rid)["result"], 1)
            self.assertEqual(recv_id(a, rid2)["result"], "pong")

    def test_fifo_getters(self):
        getters = [self.d.client() for _ in range(4)]
        try:
            with self.d.client() as p:
                rids = []
                for i, g in enumerate(getters):
                    rids.append(g.send("queue.get", name="q"))
                    wait_waiters(p, "q", i + 1)
                for i in range(4):
                    p.ok("queue.put", name="q", item=i)
                for i, g in enumerate(getters):
                    self.assertEqual(recv_id(g, rids[i])["result"], i)
        finally:
            for g in getters:
                g.close()

    def test_put_blocks_when_full(self):
        with self.d.client() as a, self.d.client() as b:
            a.ok("obj.create", name="q", type="queue", maxsize=1)
            a.ok("queue.put", name="q", item=1)
            r1 = b.send("queue.put", name="q", item=2)
            wait_waiters(a, "q", 1)
            with self.d.client() as c2:
                r2 = c2.send("queue.put", name="q", item=3)
                wait_waiters(a, "q", 2)
                self.assertEqual(a.ok("queue.get", name="q"), 1)
                self.assertTrue(recv_id(b, r1)["ok"])
                self.assertEqual(a.ok("queue.get", name="q"), 2)
                self.assertTrue(recv_id(c2, r2)["ok"])
                self.assertEqual(a.ok("queue.get", name="q"), 3)

    def test_join_woken(self):
        with self.d.client() as a, self.d.client() as b:
            a.ok("queue.put", name="q", item=1)
            rid = b.send("queue.join", name="q")
            wait_waiters(a, "q", 1)
            a.ok("queue.get", name="q")
            a.ok("queue.task_done", name="q")
            self.assertTrue(recv_id(b, rid)["ok"])

    def test_timeout_then_usable(self):
        # A timed-out getter must not swallow a later item.
        with self.d.client() as a:
            self.assertEqual(a.err("queue.get", name="q", timeout=0.05), "empty")
            a.ok("queue.put", name="q", item=1)
            self.assertEqual(a.ok("queue.size", name="q"), 1)
            self.assertEqual(waiters(a, "q"), 0)

    def test_getter_disconnect(self):
        with self.d.client() as b:
            a = self.d.client()
            a.send("queue.get", name="q")
            wait_waiters(b, "q", 1)
            a.close()
            wait_waiters(b, "q", 0)
            b.ok("queue.put", name="q", item="kept")
            self.assertEqual(b.ok("queue.get", name="q", timeout=0), "kept")


class Events(DaemonTestCase):
    def test_event(self):
        with self.d.client() as a, self.d.client() as b:
            self.assertEqual(a.err("event.is_set", name="e"), "not_found")
            # A wait creates it: a waiter may come before its setter.
            self.assertEqual(a.ok("event.wait", name="e", timeout=0), {"set": False})
            self.assertFalse(a.ok("event.is_set", name="e"))
            t0 = time.monotonic()
            self.assertEqual(a.ok("event.wait", name="e", timeout=0.1), {"set": False})
            self.assertGreaterEqual(time.monotonic() - t0, 0.09)
            with self.d.client() as c2:
                r1 = b.send("event.wait", name="e")
                r2 = c2.send("event.wait", name="e", timeout=30)
                wait_waiters(a, "e", 2)
                a.ok("event.set", name="e")
                self.assertEqual(recv_id(b, r1)["result"], {"set": True})
                self.assertEqual(recv_id(c2, r2)["result"], {"set": True})
            self.assertTrue(a.ok("event.is_set", name="e"))
            self.assertEqual(a.ok("event.wait", name="e"), {"set": True})
            self.assertTrue(a.ok("obj.get", name="e"))
            a.ok("event.clear", name="e")
            self.assertFalse(a.ok("event.is_set", name="e"))


class Locks(DaemonTestCase):
    def test_lock(self):
        with self.d.client() as a, self.d.client() as b:
            self.assertEqual(a.ok("lock.acquire", name="L"), {"acquired": True})
            self.assertTrue(a.ok("lock.locked", name="L"))
            self.assertEqual(b.ok("lock.acquire", name="L", timeout=0), {"acquired": False})
            t0 = time.monotonic()
            self.assertEqual(b.ok("lock.acquire", name="L", timeout=0.1), {"acquired": False})
            self.assertGreaterEqual(time.monotonic() - t0, 0.09)
            self.assertEqual(b.err("lock.release", name="L"), "conflict")
            # a plain lock is not re-entrant
            self.assertEqual(a.ok("lock.acquire", name="L", timeout=0), {"acquired": False})
            rid = b.send("lock.acquire", name="L")
            wait_waiters(a, "L", 1)
            a.ok("lock.release", name="L")
            self.assertEqual(recv_id(b, rid)["result"], {"acquired": True})
            self.assertEqual(a.err("lock.release", name="L"), "conflict")
            st = a.ok("obj.get", name="L")
            self.assertTrue(st["locked"])
            self.assertEqual(len(st["owners"]), 1)
            b.ok("lock.release", name="L")
            self.assertFalse(a.ok("lock.locked", name="L"))

    def test_abandoned_lock(self):
        with self.d.client() as b:
            a = self.d.client()
            a.ok("lock.acquire", name="L")
            rid = b.send("lock.acquire", name="L")
            with self.d.client() as w:
                wait_waiters(w, "L", 1)
            a.close()
            self.assertEqual(recv_id(b, rid)["result"], {"acquired": True, "abandoned": True})
            b.ok("lock.release", name="L")
            # told once only
            self.assertEqual(b.ok("lock.acquire", name="L"), {"acquired": True})
            b.ok("lock.release", name="L")

    def test_abandoned_without_waiter(self):
        with self.d.client() as b:
            with self.d.client() as a:
                a.ok("lock.acquire", name="L")
            wait_for(lambda: not b.ok("lock.locked", name="L"), what="lock released")
            self.assertEqual(b.ok("lock.acquire", name="L"), {"acquired": True, "abandoned": True})

    def test_fifo_acquirers(self):
        with self.d.client() as a:
            a.ok("lock.acquire", name="L")
            others = [self.d.client() for _ in range(3)]
            try:
                rids = []
                for i, o in enumerate(others):
                    rids.append(o.send("lock.acquire", name="L"))
                    wait_waiters(a, "L", i + 1)
                a.ok("lock.release", name="L")
                for i, o in enumerate(others):
                    self.assertEqual(recv_id(o, rids[i])["result"], {"acquired": True})
                    if i + 1 < len(others):
                        # the next one still waits
                        self.assertEqual(waiters(a, "L"), len(others) - i - 1)
                    o.ok("lock.release", name="L")
            finally:
                for o in others:
                    o.close()

    def test_rlock(self):
        with self.d.client() as a, self.d.client() as b:
            self.assertEqual(a.ok("rlock.acquire", name="R"), {"acquired": True})
            self.assertEqual(a.ok("rlock.acquire", name="R", timeout=0), {"acquired": True})
            self.assertEqual(b.ok("rlock.acquire", name="R", timeout=0), {"acquired": False})
            self.assertEqual(b.err("rlock.release", name="R"), "conflict")
            rid = b.send("rlock.acquire", name="R")
            wait_waiters(a, "R", 1)
            a.ok("rlock.release", name="R")
            self.assertEqual(waiters(a, "R"), 1)  # still held once
            a.ok("rlock.release", name="R")
            self.assertEqual(recv_id(b, rid)["result"], {"acquired": True})
            self.assertEqual(a.err("rlock.release", name="R"), "conflict")
            b.ok("rlock.release", name="R")
            self.assertEqual(b.err("rlock.release", name="R"), "conflict")

    def test_semaphore(self):
        with self.d.client() as a, self.d.client() as b, self.d.client() as c3:
            c3.ok("obj.create", name="s", type="semaphore", value=2)
            self.assertEqual(a.ok("semaphore.acquire", name="s"), {"acquired": True})
            self.assertEqual(a.ok("semaphore.acquire", name="s"), {"acquired": True})
            self.assertEqual(c3.ok("semaphore.get_value", name="s"), 0)
            self.assertEqual(b.ok("semaphore.acquire", name="s", timeout=0),
                             {"acquired": False})
            # bounded: releasing what you do not hold
            self.assertEqual(b.err("semaphore.release", name="s"), "conflict")
            rid = b.send("semaphore.acquire", name="s")
            wait_waiters(c3, "s", 1)
            a.ok("semaphore.release", name="s")
            self.assertEqual(recv_id(b, rid)["result"], {"acquired": True})
            a.ok("semaphore.release", name="s")
            self.assertEqual(a.err("semaphore.release", name="s"), "conflict")
            self.assertEqual(c3.ok("semaphore.get_value", name="s"), 1)
            self.assertEqual(c3.ok("obj.list")[0]["size"], 1)
            self.assertEqual(c3.err("obj.create", name="t", type="semaphore", value=0),
                             "bad_request")

    def test_semaphore_abandoned(self):
        with self.d.client() as b:
            b.ok("obj.create", name="s", type="semaphore", value=3)
            with self.d.client() as a:
                for _ in range(3):
                    a.ok("semaphore.acquire", name="s")
                rid = b.send("semaphore.acquire", name="s")
                with self.d.client() as w:
                    wait_waiters(w, "s", 1)
            self.assertEqual(recv_id(b, rid)["result"], {"acquired": True, "abandoned": True})
            with self.d.client() as w:
                wait_for(lambda: w.ok("semaphore.get_value", name="s") == 2,
                         what="units released")


class Barriers(DaemonTestCase):
    def test_barrier(self):
        cs = [self.d.client() for _ in range(3)]
        try:
            cs[0].ok("obj.create", name="b", type="barrier", parties=3)
            r0 = cs[0].send("barrier.wait", name="b")
            wait_waiters(cs[2], "b", 1)
            r1 = cs[1].send("barrier.wait", name="b")
            wait_waiters(cs[2], "b", 2)
            self.assertEqual(cs[2].ok("barrier.wait", name="b"), {"index": 2})
            self.assertEqual(recv_id(cs[0], r0)["result"], {"index": 0})
            self.assertEqual(recv_id(cs[1], r1)["result"], {"index": 1})
            # reusable
            r1 = cs[1].send("barrier.wait", name="b")
            wait_waiters(cs[2], "b", 1)
            r0 = cs[0].send("barrier.wait", name="b", timeout=0.2)
            # timeout breaks it for everyone; only the wait that timed out says so
            e0, e1 = recv_id(cs[0], r0)["error"], recv_id(cs[1], r1)["error"]
            self.assertEqual((e0["code"], e1["code"]), ("broken", "broken"))
            self.assertTrue(e0["message"].endswith("(timeout)"), e0)
            self.assertFalse(e1["message"].endswith("(timeout)"), e1)
            self.assertEqual(cs[1].err("barrier.wait", name="b"), "broken")
            self.assertTrue(cs[1].ok("obj.get", name="b")["broken"])
            cs[1].ok("barrier.reset", name="b")
            self.assertFalse(cs[1].ok("obj.get", name="b")["broken"])
            # reset answers waiters broken
            r0 = cs[0].send("barrier.wait", name="b")
            wait_waiters(cs[2], "b", 1)
            cs[1].ok("barrier.reset", name="b")
            self.assertEqual(recv_id(cs[0], r0)["error"]["code"], "broken")
            cs[1].ok("barrier.abort", name="b")
            self.assertEqual(cs[1].err("barrier.wait", name="b"), "broken")
            cs[1].ok("barrier.reset", name="b")
            self.assertEqual(cs[1].err("barrier.wait", name="b", timeout=0), "broken")
            self.assertEqual(cs[1].err("obj.create", name="x", type="barrier", parties=0),
                             "bad_request")
            # No defaults: a barrier exists only through obj.create.
            r = cs[1].call("barrier.wait", name="one")
            self.assertEqual(r["error"]["code"], "not_found")
            self.assertIn("obj.create", r["error"]["message"])
            cs[1].ok("obj.create", name="one", type="barrier", parties=1)
            self.assertEqual(cs[1].ok("barrier.wait", name="one"), {"index": 0})
        finally:
            for c in cs:
                c.close()


class MissingObjects(DaemonTestCase):
    """A pure read of a missing object is not_found and creates nothing (a
    typo must not make objects); mutations and waits still create (a
    consumer may come first); array and barrier only through obj.create."""

    READS = [("dict.get", {"key": "k"}), ("dict.has", {"key": "k"}), ("dict.keys", {}),
             ("dict.values", {}), ("dict.items", {}), ("dict.len", {}),
             ("list.get", {"index": 0}), ("list.index", {"value": 1}),
             ("list.count", {"value": 1}), ("list.len", {}), ("list.slice", {}),
             ("value.get", {}), ("queue.size", {}), ("queue.empty", {}),
             ("queue.full", {}), ("event.is_set", {}), ("lock.locked", {}),
             ("rlock.locked", {}), ("semaphore.get_value", {}), ("array.len", {}),
             ("array.get", {"index": 0}), ("array.slice", {}),
             ("array.set", {"index": 0, "value": 1}), ("barrier.wait", {"timeout": 0}),
             ("barrier.reset", {}), ("obj.get", {})]

    def test_reads_create_nothing(self):
        with self.d.client() as c:
            for cmd, params in self.READS:
                r = c.call(cmd, name="hitz", **params)
                self.assertEqual(r.get("error", {}).get("code"), "not_found", (cmd, r))
                self.assertIn("hitz", r["error"]["message"])
            self.assertEqual(c.ok("obj.list"), [])
            # A read with a default is still a read.
            self.assertEqual(c.err("dict.get", name="d", key="k", default=0), "not_found")
            self.assertEqual(c.ok("obj.list"), [])

    def test_mutations_and_waits_create(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("value.add", name="v", by=2), 2)
            self.assertEqual(c.ok("value.get", name="v"), 2)
            c.ok("dict.set", name="d", key="k", value=1)
            self.assertEqual(c.err("queue.get", name="q", timeout=0), "empty")
            self.assertEqual(c.ok("event.wait", name="e", timeout=0), {"set": False})
            self.assertEqual(c.ok("lock.acquire", name="l"), {"acquired": True})
            self.assertEqual(sorted(o["name"] for o in c.ok("obj.list")),
                             ["d", "e", "l", "q", "v"])
            self.assertEqual(c.ok("queue.size", name="q"), 0)

    def test_blocked_getter_first(self):
        with self.d.client() as a, self.d.client() as b:
            rid = a.send("queue.get", name="jobs", timeout=30)
            wait_waiters(b, "jobs", 1)
            b.ok("queue.put", name="jobs", item="x")
            self.assertEqual(recv_id(a, rid)["result"], "x")


class Objects(DaemonTestCase):
    def test_create_list_get_delete(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("obj.create", name="q", type="queue", maxsize=3),
                             {"created": True})
            self.assertEqual(c.ok("obj.create", name="q", type="queue", maxsize=3),
                             {"created": False})
            self.assertEqual(c.err("obj.create", name="q", type="queue", maxsize=4), "exists")
            self.assertEqual(c.err("obj.create", name="q", type="queue"), "exists")
            self.assertEqual(c.err("obj.create", name="q", type="dict"), "exists")
            self.assertEqual(c.err("obj.create", name="q", type="nope"), "bad_request")
            self.assertEqual(c.err("obj.create", name="q"), "bad_request")
            self.assertEqual(c.err("obj.create", name="bad name", type="dict"), "bad_request")
            c.ok("obj.create", name="v", type="value", typecode="i", init=3)
            self.assertEqual(c.ok("obj.create", name="v", type="value", typecode="i"),
                             {"created": False})
            self.assertEqual(c.err("obj.create", name="v", type="value", typecode="d"),
                             "exists")
            c.ok("obj.create", name="d", type="dict", items={"a": 1})
            c.ok("obj.create", name="l", type="list", items=[1, 2])
            self.assertEqual(c.ok("dict.get", name="d", key="a"), 1)
            self.assertEqual(c.ok("list.len", name="l"), 2)
            c.ok("queue.put", name="q", item=1)
            for t in ("event", "lock", "rlock", "semaphore", "barrier", "array"):
                c.ok("obj.create", name="o-" + t, type=t)
            lst = c.ok("obj.list")
            self.assertEqual([o["name"] for o in lst], sorted(o["name"] for o in lst))
            by = {o["name"]: o for o in lst}
            self.assertEqual(by["q"]["type"], "queue")
            self.assertEqual(by["q"]["size"], 1)
            self.assertEqual(by["d"]["size"], 1)
            self.assertEqual(by["l"]["size"], 2)
            self.assertEqual(by["v"]["size"], 1)
            self.assertEqual([o["name"] for o in c.ok("obj.list", type="lock")], ["o-lock"])
            self.assertEqual(c.ok("obj.get", name="v"), 3)
            self.assertEqual(c.err("obj.get", name="nope"), "not_found")
            self.assertEqual(c.err("obj.delete", name="nope"), "not_found")
            self.assertIsNone(c.ok("obj.delete", name="q"))
            self.assertEqual(c.err("obj.get", name="q"), "not_found")
            self.assertEqual(c.err("obj.get", name="q", extra=1), "bad_request")
            # wrong_type both ways
            self.assertEqual(c.err("list.append", name="d", value=1), "wrong_type")
            self.assertEqual(c.err("dict.get", name="l", key="a"), "wrong_type")
            # a deleted name can take another type
            c.ok("obj.delete", name="d")
            c.ok("list.append", name="d", value=1)

    def test_delete_wakes_waiters(self):
        with self.d.client() as a, self.d.client() as b, self.d.client() as c:
            r1 = a.send("queue.get", name="q")
            wait_waiters(c, "q", 1)
            b.ok("lock.acquire", name="L")
            with self.d.client() as x:
                r2 = x.send("lock.acquire", name="L")
                wait_waiters(c, "L", 1)
                c.ok("obj.delete", name="L")
                self.assertEqual(recv_id(x, r2)["error"]["code"], "not_found")
            c.ok("obj.delete", name="q")
            self.assertEqual(recv_id(a, r1)["error"]["code"], "not_found")
            # the old holder holds nothing now
            self.assertEqual(b.err("lock.release", name="L"), "conflict")
            self.assertEqual(b.ok("lock.acquire", name="L"), {"acquired": True})

    def test_events_stream(self):
        with self.d.client() as s, self.d.client() as c:
            s.ok("events.subscribe", topics=["object"])
            c.ok("dict.set", name="d", key="a", value=1)
            c.ok("dict.get", name="d", key="a")  # read: no event
            c.ok("value.add", name="v", by=1)
            seen = []
            while len(seen) < 4:
                ev = s.recv()
                seen.append((ev["event"], ev["name"], ev["op"]))
            self.assertEqual(seen, [("object.changed", "d", "create"),
                                    ("object.changed", "d", "set"),
                                    ("object.changed", "v", "create"),
                                    ("object.changed", "v", "add")])

    @local_only("daemon.info's objects count this daemon's objects")
    def test_info(self):
        with self.d.client() as c:
            c.ok("queue.put", name="q", item=1)
            info = c.ok("daemon.info")
            self.assertEqual(info["objects"], {"count": 1, "queue_items": 1})
            self.assertIn("state", c.ok("hello")["capabilities"])


class Limits(DaemonTestCase):
    main_config = "max_objects = 3\nmax_queue_items = 4\nmax_waiters = 2\n"

    @local_only("max_objects counts this daemon's objects")
    def test_max_objects(self):
        with self.d.client() as c:
            c.ok("dict.set", name="a", key="k", value=1)
            c.ok("obj.create", name="b", type="list")
            c.ok("value.add", name="c")
            self.assertEqual(c.err("dict.set", name="d", key="k", value=1), "limit")
            self.assertEqual(c.err("obj.create", name="d", type="dict"), "limit")
            c.ok("obj.delete", name="a")
            c.ok("obj.create", name="d", type="dict")

    @local_only("max_queue_items counts this daemon's queues")
    def test_max_queue_items(self):
        with self.d.client() as c:
            c.ok("queue.put", name="q1", item=1)
            c.ok("queue.put", name="q1", item=2)
            c.ok("queue.put", name="q2", item=3)
            c.ok("queue.put", name="q2", item=4)
            self.assertEqual(c.err("queue.put", name="q1", item=5), "limit")
            self.assertEqual(c.err("obj.create", name="q3", type="queue", items=[1]), "limit")
            c.ok("queue.get", name="q2")
            c.ok("queue.put", name="q1", item=5)

    def test_max_waiters(self):
        with self.d.client() as a, self.d.client() as b, self.d.client() as c:
            a.send("queue.get", name="q")
            b.send("queue.get", name="q")
            wait_waiters(c, "q", 2)
            self.assertEqual(c.err("queue.get", name="q"), "limit")
            self.assertEqual(c.ok("event.wait", name="e", timeout=0), {"set": False})

    def test_barrier_parties_within_max_waiters(self):
        with self.d.client() as c:
            r = c.call("obj.create", name="b", type="barrier", parties=2**31 - 1)
            self.assertEqual(r["error"]["code"], "limit", r)
            self.assertIn("max_waiters", r["error"]["message"])
            self.assertEqual(c.err("obj.create", name="b", type="barrier", parties=4), "limit")
            # max_waiters = 2: two wait, the third passes.
            c.ok("obj.create", name="b", type="barrier", parties=3)
            with self.d.client() as a, self.d.client() as b:
                a.send("barrier.wait", name="b")
                b.send("barrier.wait", name="b")
                wait_waiters(c, "b", 2)
                self.assertEqual(c.ok("barrier.wait", name="b"), {"index": 2})
                self.assertEqual({a.recv()["result"]["index"], b.recv()["result"]["index"]},
                                 {0, 1})


@local_only("max_memory and max_object_items count this daemon's memory (Redis has maxmemory)")
class MemoryLimits(DaemonTestCase):
    main_config = "max_request_bytes = 4096\nmax_object_items = 5\n"

    def test_array_size_is_bytes(self):
        with self.d.client() as c:
            c.ok("obj.create", name="a", type="array", size=512)  # 512 * 8 = 4096
            r = c.call("obj.create", name="b", type="array", typecode="d", size=513)
            self.assertEqual(r["error"]["code"], "limit", r)
            self.assertIn("max_request_bytes", r["error"]["message"])
            self.assertEqual(c.err("obj.create", name="b", type="array", size=4096), "limit")
            self.assertEqual([o["name"] for o in c.ok("obj.list")], ["a"])

    def test_max_object_items(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("daemon.info")["limits"]["max_object_items"], 5)
            c.ok("list.extend", name="l", values=[1, 2, 3, 4])
            c.ok("list.append", name="l", value=5)
            r = c.call("list.append", name="l", value=6)
            self.assertEqual(r["error"]["code"], "limit", r)
            self.assertIn("max_object_items", r["error"]["message"])
            self.assertEqual(c.err("list.insert", name="l", index=0, value=0), "limit")
            self.assertEqual(c.err("list.extend", name="l", values=[6]), "limit")
            c.ok("list.pop", name="l")
            c.ok("list.append", name="l", value=6)
            self.assertEqual(c.ok("obj.get", name="l"), [1, 2, 3, 4, 6])

            c.ok("dict.update", name="d", items={"a": 1, "b": 2, "c": 3, "d": 4})
            self.assertEqual(c.err("dict.update", name="d", items={"e": 5, "f": 6}), "limit")
            c.ok("dict.setdefault", name="d", key="e", value=5)
            for cmd, params in (("dict.set", {"value": 1}), ("dict.incr", {}),
                                ("dict.setdefault", {}),
                                ("dict.cas", {"expect": None, "value": 1})):
                self.assertEqual(c.err(cmd, name="d", key="new", **params), "limit", cmd)
            c.ok("dict.set", name="d", key="a", value=10)  # an existing key
            self.assertEqual(c.ok("dict.len", name="d"), 5)
            self.assertEqual(c.err("obj.create", name="l2", type="list",
                                   items=list(range(6))), "limit")


def run_child(sock, body, *args):
    return subprocess.Popen([sys.executable, "-c", CHILD_LIB + body, sock] + [str(a) for a in args])


def wait_children(procs):
    for p in procs:
        p.wait(timeout=60 * SCALE)
        assert p.returncode == 0, "child exited %s" % p.returncode


class Seeds(DaemonTestCase):
    def test_nine_processes_add(self):
        body = "for _ in range(50): c.ok('value.add', name='counter', by=1)\n"
        wait_children([run_child(self.d.socket, body) for _ in range(9)])
        self.assertEqual(self.d.ok("value.get", name="counter"), 450)

    def test_child_multiplies(self):
        with self.d.client() as c:
            c.ok("obj.create", name="arr", type="array", typecode="d", init=[1, 2.5, -3])
            c.ok("obj.create", name="lst", type="list", items=[1, 2, 3])
            body = r'''
for i in range(c.ok("array.len", name="arr")):
    c.ok("array.set", name="arr", index=i, value=c.ok("array.get", name="arr", index=i) * 10)
for i in range(c.ok("list.len", name="lst")):
    c.ok("list.set", name="lst", index=i, value=c.ok("list.get", name="lst", index=i) * 10)
c.ok("dict.set", name="shared", key="child", value="done")
'''
            wait_children([run_child(self.d.socket, body)])
            self.assertEqual(c.ok("obj.get", name="arr"), [10.0, 25.0, -30.0])
            self.assertEqual(c.ok("obj.get", name="lst"), [10, 20, 30])
            self.assertEqual(c.ok("dict.get", name="shared", key="child"), "done")

    def test_producers_subtotals(self):
        body = r'''
n = int(sys.argv[2])
c.ok("queue.put", name="totals", item=sum(range(n * 100, n * 100 + 100)))
'''
        procs = [run_child(self.d.socket, body, n) for n in range(5)]
        with self.d.client() as c:
            total = sum(c.ok("queue.get", name="totals", timeout=30 * SCALE) for _ in range(5))
        wait_children(procs)
        self.assertEqual(total, sum(range(500)))

    def test_stress_value_add(self):
        clients = 50
        per = 1000 * (10 if os.environ.get("MPSUP_STRESS_LARGE") else 1)
        errors = []

        def worker():
            try:
                with self.d.client() as c:
                    for start in range(0, per, 100):
                        n = min(100, per - start)
                        payload = b"".join(b'{"cmd":"value.add","name":"n","by":1}\n'
                                           for _ in range(n))
                        c.send_raw(payload)
                        for _ in range(n):
                            r = c.recv()
                            if not r.get("ok"):
                                errors.append(r)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120 * SCALE)
        self.assertEqual(errors, [])
        self.assertEqual(self.d.ok("value.get", name="n"), clients * per)


def counter_binary():
    build = os.environ.get("MPSUP_BUILDDIR") or os.path.join(
        os.path.dirname(os.path.abspath(os.environ.get("MPSUPD", "daemon/mpsupd"))), "..")
    path = os.path.join(build, "examples", "counter")
    return path if os.access(path, os.X_OK) else None


class Example(DaemonTestCase):
    @unittest.skipUnless(counter_binary(), "examples/counter not built")
    def test_counter_workers(self):
        env = dict(os.environ, MPSUP_SOCKET=self.d.socket)
        procs = [subprocess.Popen([counter_binary(), "-n", "200", "hits"], env=env,
                                  stdout=subprocess.PIPE) for _ in range(4)]
        for p in procs:
            p.communicate(timeout=60 * SCALE)
            self.assertEqual(p.returncode, 0)
        self.assertEqual(self.d.ok("value.get", name="hits"), 800)
        self.assertEqual(sorted(self.d.ok("obj.get", name="hits.workers").values()),
                         [200] * 4)
        self.assertFalse(self.d.ok("lock.locked", name="hits.lock"))


if __name__ == "__main__":
    main()
