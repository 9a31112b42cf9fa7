#!/usr/bin/env python3
"""The redis state backend's hot ops (dict.set/get, list.append/pop,
value.add/get, queue.put/get): what each costs Redis (its command counts)
and that their short path answers as the full one does at every edge."""
import shutil
import signal

import mpsuptest
from mpsuptest import Daemon, RedisServer, main, redis_call, wait_for

if not RedisServer.available():
    mpsuptest.skip_all("redis-server is not installed")


class HotOps(mpsuptest.unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.cleanup)
        self.d = Daemon(main_extra=self.redis.config()).start()
        self.addCleanup(self.stop_daemon)

    def stop_daemon(self):
        rc = self.d.stop()
        log = self.d.read_log()
        shutil.rmtree(self.d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None, -signal.SIGKILL), "mpsupd exited with %r; log:\n%s"
                      % (rc, log[-20000:]))

    def commands(self, op, n=10, **params):
        """Redis's command counts for n times op."""
        redis_call(self.redis.socket, "CONFIG", "RESETSTAT")
        for _ in range(n):
            self.d.ok(op, **params)
        counts = {}
        for line in redis_call(self.redis.socket, "INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line[len("cmdstat_"):].partition(":")
                if name.split("|")[0] not in ("config", "info"):
                    counts[name] = int(rest.split(",")[0].split("=")[1])
        return counts

    def test_one_command_beside_the_type(self):
        """An op on an object of its type costs Redis one script call with
        the type's HGET and the op's own command (a read: the two HGETs in a
        MULTI), nothing more (no LLEN, no re-reads)."""
        d = self.d
        d.ok("dict.set", name="d", key="k", value="v")
        d.ok("list.append", name="l", value=1)
        d.ok("value.add", name="v")
        d.ok("queue.put", name="q", item=1)
        self.assertEqual(self.commands("dict.set", name="d", key="k", value="x"),
                         {"evalsha": 10, "hmget": 10, "hset": 10})
        # reads: two HGETs in a MULTI, no script
        self.assertEqual(self.commands("dict.get", name="d", key="k"),
                         {"multi": 10, "hmget": 10, "hget": 10, "exec": 10})
        self.assertEqual(self.commands("list.append", name="l", value=2),
                         {"evalsha": 10, "hmget": 10, "rpush": 10})
        self.assertEqual(self.commands("list.pop", name="l"),
                         {"evalsha": 10, "hmget": 10, "rpop": 10})
        self.assertEqual(self.commands("value.add", name="v", by=2),
                         {"evalsha": 10, "hmget": 10, "hincrby": 10})
        self.assertEqual(self.commands("value.get", name="v"),
                         {"multi": 10, "hmget": 10, "hget": 10, "exec": 10})
        # an unbounded queue: its maxsize in the same HMGET; the join list
        # is cleared by the put that takes u off 0 alone (above)
        self.assertEqual(self.commands("queue.put", name="q", item="x"),
                         {"evalsha": 10, "hmget": 10, "rpush": 10, "hincrby": 10})
        self.assertEqual(self.commands("queue.get", name="q", timeout=0),
                         {"evalsha": 10, "hmget": 10, "lpop": 10})

    def test_hot_script_arguments(self):
        """Each hot script gets the meta key and the parameters it uses, as
        bare texts (every argument costs Redis), nothing more: no op name,
        no timeout, no by of 1."""
        d = self.d
        d.ok("dict.set", name="d", key="k", value="v")
        for v in range(3):
            d.ok("list.append", name="l", value=v)
        d.ok("value.add", name="v")
        d.ok("queue.put", name="q", item=1)
        redis_call(self.redis.socket, "CONFIG", "SET", "slowlog-log-slower-than", "0")
        self.addCleanup(redis_call, self.redis.socket, "CONFIG", "SET",
                        "slowlog-log-slower-than", "10000")

        def sent(op, **params):
            redis_call(self.redis.socket, "SLOWLOG", "RESET")
            d.ok(op, **params)
            calls = [e[3] for e in redis_call(self.redis.socket, "SLOWLOG", "GET", "100")
                     if e[3][0].lower() == "evalsha"]
            self.assertEqual(len(calls), 1, calls)
            return calls[0][2:]  # from the number of keys on

        def meta(name):
            keys = redis_call(self.redis.socket, "KEYS", "*{%s}" % name)
            self.assertEqual(len(keys), 1, keys)
            return keys[0]

        # the meta key alone (the others are named after it)
        self.assertEqual(sent("dict.set", name="d", key="k", value="x"),
                         ["1", meta("d"), "k", '"x"'])
        self.assertEqual(sent("list.append", name="l", value=[2]), ["1", meta("l"), "[2]"])
        self.assertEqual(sent("list.pop", name="l"), ["1", meta("l")])
        self.assertEqual(sent("list.pop", name="l", index=-1), ["1", meta("l")])
        self.assertEqual(sent("list.pop", name="l", index=0), ["1", meta("l"), "0"])
        self.assertEqual(sent("value.add", name="v"), ["1", meta("v")])
        self.assertEqual(sent("value.add", name="v", by=1), ["1", meta("v")])
        self.assertEqual(sent("value.add", name="v", by=-5), ["1", meta("v"), "-5"])
        self.assertEqual(sent("queue.put", name="q", item="y", timeout=5), ["1", meta("q"), '"y"'])
        self.assertEqual(sent("queue.get", name="q", timeout=5), ["1", meta("q")])
        self.assertEqual(d.ok("obj.get", name="d"), {"k": "x"})
        self.assertEqual(d.ok("obj.get", name="l"), [1])
        self.assertEqual(d.ok("value.get", name="v"), -2)
        self.assertEqual(d.ok("obj.get", name="q"), ["y"])

    def test_join_list_across_puts(self):
        """The join list holds its wake-up while no task is unfinished; the
        put that makes one unfinished clears it, and a join waits again."""
        d = self.d
        d.ok("queue.put", name="q", item=1)
        j = redis_call(self.redis.socket, "KEYS", "*{q}")[0] + ":j"
        self.assertEqual(d.ok("queue.get", name="q", timeout=0), 1)
        d.ok("queue.task_done", name="q")
        self.assertEqual(redis_call(self.redis.socket, "EXISTS", j), 1)
        d.ok("queue.join", name="q", timeout=0)
        counts = self.commands("queue.put", name="q", item=2)
        self.assertEqual(counts.get("del"), 1, counts)  # the first put of ten alone
        self.assertEqual(redis_call(self.redis.socket, "EXISTS", j), 0)
        self.assertEqual(d.err("queue.join", name="q", timeout=0), "timeout")
        self.assertEqual(d.err("queue.join", name="q", timeout=0.2), "timeout")
        for _ in range(10):
            d.ok("queue.get", name="q", timeout=0)
            d.ok("queue.task_done", name="q")
        d.ok("queue.join", name="q", timeout=0)
        self.assertEqual(redis_call(self.redis.socket, "EXISTS", j), 1)

    def test_after_a_redis_restart(self):
        """A restarted Redis has forgotten both scripts: the first op gets
        its answer through the full one, and the hot path is back after."""
        d = self.d
        d.ok("list.append", name="l", value=1)
        self.redis.stop()
        self.redis.start()
        wait_for(lambda: d.ok("daemon.info")["state"]["connection"] == "connected",
                 what="mpsupd to reconnect")
        d.ok("list.append", name="l", value=2)  # made anew: Redis kept nothing
        self.assertEqual(self.commands("list.append", name="l", value=3),
                         {"evalsha": 10, "hmget": 10, "rpush": 10})
        self.assertEqual(d.ok("obj.get", name="l"), [2] + [3] * 10)

    def test_commands_larger_than_the_socket_buffer(self):
        """A command that does not fit in the socket to Redis at once is
        written as the socket drains, the calls behind it after it."""
        d = self.d
        big = ["%06d" % i * 150000 for i in range(3)]  # 900 kB each
        clients = [d.client() for _ in big]
        try:
            for c, v in zip(clients, big):
                c.send("dict.set", name="d", key=v[:6], value=v)
            d.ok("value.add", name="v")
            for c in clients:
                self.assertIsNone(c.recv()["result"])
        finally:
            for c in clients:
                c.close()
        for v in big:
            self.assertEqual(d.ok("dict.get", name="d", key=v[:6]), v)
        self.assertEqual(d.ok("value.add", name="v"), 2)

    def test_value_add_edges(self):
        d = self.d
        d.ok("obj.create", name="big", type="value", typecode="i", init=2**62)
        self.assertEqual(d.ok("value.add", name="big", by=1), 2**62 + 1)  # past 2^53
        self.assertEqual(d.ok("value.add", name="big", by=-(2**62)), 1)
        self.assertEqual(d.ok("value.add", name="big", by=10**15 - 1), 10**15)
        self.assertEqual(d.err("value.add", name="big", by=1.5), "bad_request")
        d.ok("value.set", name="big", value=2**63 - 1)
        self.assertEqual(d.err("value.add", name="big"), "out_of_range")
        self.assertEqual(d.ok("value.get", name="big"), 2**63 - 1)
        d.ok("obj.create", name="real", type="value", typecode="d", init=1)
        self.assertEqual(d.ok("value.add", name="real", by=2), 3.0)
        self.assertIsInstance(d.ok("value.get", name="real"), float)
        d.ok("value.set", name="any", value=1.5)
        self.assertEqual(d.ok("value.add", name="any", by=1), 2.5)
        d.ok("value.set", name="any", value="x")
        self.assertEqual(d.err("value.add", name="any"), "conflict")
        d.ok("value.set", name="any", value=-7)
        self.assertEqual(d.ok("value.add", name="any", by=-3), -10)
        d.ok("list.append", name="l", value=1)
        self.assertEqual(d.err("value.add", name="l"), "wrong_type")

    def test_list_dict_queue_edges(self):
        d = self.d
        for v in ("a", "b", "c", "d"):
            d.ok("list.append", name="l", value=v)
        self.assertEqual(d.ok("list.pop", name="l", index=0), "a")
        self.assertEqual(d.ok("list.pop", name="l", index=-1), "d")
        self.assertEqual(d.ok("list.pop", name="l", index=1), "c")
        self.assertEqual(d.ok("list.pop", name="l"), "b")
        self.assertEqual(d.err("list.pop", name="l"), "out_of_range")
        self.assertEqual(d.err("dict.set", name="l", key="k", value=1), "wrong_type")
        self.assertEqual(d.err("dict.get", name="d", key="k"), "not_found")
        d.ok("dict.set", name="d", key="k", value=None)
        self.assertIsNone(d.ok("dict.get", name="d", key="k"))
        self.assertEqual(d.ok("dict.get", name="d", key="nope", default=5), 5)
        self.assertEqual(d.err("dict.get", name="l", key="k"), "wrong_type")
        self.assertEqual(d.err("dict.get", name="nothing", key="k"), "not_found")
        self.assertEqual(d.err("value.get", name="d"), "wrong_type")
        self.assertEqual(d.err("value.get", name="nothing"), "not_found")
        # replies that are not plain ASCII text go through jansson
        for v in ["\u00e9t\u00e9\n\"", {"b": [1, 2.5, None], "a": True}, 2**62, -0.5, "", False]:
            d.ok("dict.set", name="d", key="k", value=v)
            self.assertEqual(d.ok("dict.get", name="d", key="k"), v)
            d.ok("list.append", name="l", value=v)
            self.assertEqual(d.ok("list.pop", name="l"), v)
        d.ok("obj.create", name="bq", type="queue", maxsize=1)
        d.ok("queue.put", name="bq", item=1)
        self.assertEqual(d.err("queue.put", name="bq", item=2, timeout=0), "full")
        self.assertEqual(d.ok("queue.get", name="bq", timeout=0), 1)
        self.assertEqual(d.err("queue.get", name="bq", timeout=0), "empty")
        d.ok("queue.put", name="q", item=[1])
        self.assertEqual(d.ok("queue.get", name="q", timeout=0), [1])
        self.assertEqual(d.err("queue.get", name="q", timeout=0), "empty")
        d.ok("queue.task_done", name="q")
        d.ok("queue.join", name="q", timeout=0)


if __name__ == "__main__":
    main()
