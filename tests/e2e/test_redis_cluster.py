#!/usr/bin/env python3
"""The redis backends on a local 3-master Redis Cluster (DESIGN §12): the
harness's cluster itself (starts ok on free ports, is emptied between tests,
leaves nothing behind), then mpsupd routing every object's keys to the
master that owns their hash tag's slot: objects spread over the masters,
each whole on one, obj.list sees them all, a blocked queue.get on one host
is woken by another host's put, and a redis task pool maps through it."""
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile

import mpsuptest
from mpsuptest import Client, Daemon, RedisCluster, redis_call, shared_cluster, wait_for, main

if not RedisCluster.available():
    mpsuptest.skip_all("redis-server or redis-cli is not installed")

PREFIX = "mpsup:"
# An object's hash tag: the text between the first { and the next }.
TAG = re.compile(r"\{([^}]*)\}")


def proc_gone(pid):
    """Whether pid no longer runs (or is a zombie nobody waits for)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Harness(mpsuptest.unittest.TestCase):
    """The test cluster itself, without mpsupd."""

    def test_cluster_starts_ok_and_leaves_nothing(self):
        c = RedisCluster()
        self.addCleanup(c.cleanup)
        c.start()
        self.assertEqual(len(set(c.ports)), 3)
        for p in c.ports:
            self.assertLess(p, 55535)
            info = c.cluster_info(p)
            self.assertEqual(info["cluster_state"], "ok")
            self.assertEqual(info["cluster_slots_assigned"], "16384")
            self.assertEqual(info["cluster_known_nodes"], "3")
            self.assertEqual(info["cluster_size"], "3")
        masters = {m[1] for _, _, m, *_ in redis_call(c.ports[0], "CLUSTER", "SLOTS")}
        self.assertEqual(masters, set(c.ports))
        self.assertEqual(c.config("x = 1\n"),
                         "state_backend = redis\nredis_address = 127.0.0.1:%d\nx = 1\n"
                         % c.ports[0])
        # keys written where their slot lives spread over the masters
        for i in range(30):
            self.assertEqual(redis_call(c.slot_owner("k{%d}" % i), "SET", "k{%d}" % i, i), "OK")
        counts = [len(c.keys(p)) for p in c.ports]
        self.assertEqual(sum(counts), 30)
        self.assertGreaterEqual(sum(1 for n in counts if n), 2)
        # a node asked for another's key answers MOVED (what mpsupd must follow)
        other = next(p for p in c.ports if p != c.slot_owner("k{0}"))
        self.assertTrue(redis_call(other, "GET", "k{0}").startswith("MOVED "))
        pids, d = [p.pid for p in c.procs], c.dir
        c.cleanup()
        self.assertTrue(all(proc_gone(p) for p in pids), pids)
        self.assertFalse(os.path.exists(d))

    def test_restart_keeps_the_nodes(self):
        """stop then start brings the same nodes back on the same ports,
        ok again, without their data (persistence is off)."""
        c = RedisCluster()
        self.addCleanup(c.cleanup)
        c.start()
        ports = list(c.ports)
        redis_call(c.slot_owner("k"), "SET", "k", 1)
        c.stop(signal.SIGKILL)
        self.assertFalse(c.running())
        c.start()
        self.assertEqual(c.ports, ports)
        self.assertTrue(c.healthy())
        self.assertEqual([c.keys(p) for p in ports], [[], [], []])

    def test_shared_cluster_emptied_then_replaced_when_killed(self):
        a = shared_cluster()
        redis_call(a.slot_owner("k"), "SET", "k", 1)
        b = shared_cluster()
        self.assertIs(a, b)
        self.assertEqual([b.keys(p) for p in b.ports], [[], [], []])
        pids, d = [p.pid for p in a.procs], a.dir
        a.stop(signal.SIGKILL)
        c = shared_cluster()
        self.assertIsNot(c, a)
        self.assertTrue(c.healthy())
        self.assertTrue(all(proc_gone(p) for p in pids))
        self.assertFalse(os.path.exists(d))


# A test run with a cluster that ends as argv[1] says: "fail" (an uncaught
# error), or killed by the test ("wait").
RUN = r'''
import sys
sys.path.insert(0, sys.argv[2])
import mpsuptest
c = mpsuptest.shared_cluster()
print(c.dir, *[p.pid for p in c.procs], flush=True)
if sys.argv[1] == "fail":
    raise AssertionError("a failing test")
sys.stdin.read()
'''


class Leftovers(mpsuptest.unittest.TestCase):
    """A test run leaves no redis-server behind however it ends."""

    def run_ending(self, how, sig=None):
        """Start RUN; kill it with sig when given; its cluster's dir and
        node pids, once it has ended (its exit status checked)."""
        p = subprocess.Popen([sys.executable, "-c", RUN, how, os.path.dirname(__file__) or "."],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(p.stdin.close)
        self.addCleanup(p.stdout.close)
        line = p.stdout.readline().split()
        self.assertEqual(len(line), 4, line)
        if sig is not None:
            p.send_signal(sig)
        rc = p.wait(timeout=60 * mpsuptest.SCALE)
        self.assertEqual(rc, 1 if sig is None else -sig)
        return line[0], [int(x) for x in line[1:]]

    def gone(self, pids):
        wait_for(lambda: all(proc_gone(p) for p in pids), what="nodes %s gone" % pids)

    def test_failing_run(self):
        d, pids = self.run_ending("fail")
        self.gone(pids)
        self.assertFalse(os.path.exists(d))

    def test_terminated_run(self):
        d, pids = self.run_ending("wait", signal.SIGTERM)
        self.gone(pids)
        self.assertFalse(os.path.exists(d))

    def test_killed_run(self):
        """SIGKILL: no atexit, no handler; the nodes die with their parent
        (their dir stays: nobody is left to remove it)."""
        d, pids = self.run_ending("wait", signal.SIGKILL)
        self.addCleanup(shutil.rmtree, d, True)
        self.gone(pids)


class Script(mpsuptest.unittest.TestCase):
    """scripts/redis-cluster, the operator's way to a local cluster."""
    SCRIPT = os.path.join(mpsuptest.SRCDIR, "scripts", "redis-cluster")

    def script(self, *args, check=0):
        p = subprocess.run(["sh", self.SCRIPT] + [str(a) for a in args], capture_output=True,
                           text=True, timeout=60 * mpsuptest.SCALE)
        self.assertEqual(p.returncode, check, (args, p.stdout, p.stderr))
        return p

    def pids(self, d, ports):
        """The node pids of the script's cluster in d."""
        out = []
        for p in ports:
            with open(os.path.join(d, "node-%d" % p, "redis.pid")) as f:
                out.append(int(f.read()))
        return out

    def kill_left(self, d, ports):
        """Whatever the test did: no node of d left running."""
        for p in ports:
            try:
                with open(os.path.join(d, "node-%d" % p, "redis.pid")) as f:
                    os.kill(int(f.read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def test_start_use_stop_start_again(self):
        top = tempfile.mkdtemp(prefix="mpsup-script-")
        self.addCleanup(shutil.rmtree, top, True)
        d = os.path.join(top, "c")
        ports = []
        for _ in range(3):
            ports.append(mpsuptest.free_cluster_port(ports))
        self.addCleanup(self.kill_left, d, ports)
        out = self.script("start", d, *ports).stdout
        self.assertEqual(out, "redis_address = 127.0.0.1:%d\n" % ports[0])
        self.assertEqual(self.script("status", d).stdout,
                         "".join("127.0.0.1:%d ok\n" % p for p in ports))
        daemon = Daemon(main_extra="state_backend = redis\n" + out)
        self.addCleanup(daemon.cleanup)
        daemon.start()
        for i in range(20):
            daemon.ok("value.add", name="v%d" % i, by=i)
        self.assertEqual(daemon.ok("daemon.info")["state"]["nodes"],
                         ["127.0.0.1:%d" % p for p in ports])
        self.assertEqual(len(daemon.ok("obj.list")), 20)
        daemon.stop()
        # a cluster there already: other ports are refused
        self.assertIn("holds a cluster", self.script("start", d, 1, 2, 3, check=1).stderr)
        pids = self.pids(d, ports)
        self.script("stop", d)
        self.assertTrue(all(proc_gone(p) for p in pids))
        self.assertEqual(self.script("status", d).stdout,
                         "".join("127.0.0.1:%d down\n" % p for p in ports))
        # the same nodes come back, empty
        self.assertEqual(self.script("start", d).stdout, out)
        self.assertEqual(sum(len(redis_call(p, "KEYS", "*")) for p in ports), 0)
        self.script("stop", d)

    def test_bad_ports(self):
        d = tempfile.mkdtemp(prefix="mpsup-script-")
        self.addCleanup(shutil.rmtree, d, True)
        self.assertIn("must be 1-55535", self.script("start", d, 7001, 7002, 60000,
                                                     check=1).stderr)
        self.assertIn("not a port", self.script("start", d, 7001, "x", 7003, check=1).stderr)
        self.assertIn("usage", self.script("start", d, 7001, check=2).stderr)
        self.assertIn("no cluster", self.script("stop", d, check=1).stderr)
        self.assertEqual(os.listdir(d), [])


class OnCluster(mpsuptest.unittest.TestCase):
    """mpsupd daemons ("hosts") keeping their state on the file's cluster."""

    def setUp(self):
        self.redis = shared_cluster()

    def host(self, main_extra="", config_extra=""):
        d = Daemon(config_extra=config_extra, main_extra=self.redis.config(main_extra))
        self.addCleanup(self.stop_host, d)
        return d.start()

    def stop_host(self, d):
        failed = d.proc is not None and d.proc.poll() not in (None, 0)
        rc = d.stop()
        log = d.read_log()
        shutil.rmtree(d.dir, ignore_errors=True)
        if failed or rc not in (0, None):
            sys.stderr.write("---- mpsupd log ----\n%s\n" % log[-20000:])
        self.assertIn(rc, (0, None), "mpsupd exited with %r" % rc)

    def keys_by_master(self):
        """{port: the keys that master holds}."""
        return {p: self.redis.keys(p) for p in self.redis.ports}

    def names_per_master(self, port_of_name=None):
        """{object name: the set of masters holding its keys}, from every
        master's own key list (no routing by the test)."""
        where = {}
        for port, keys in self.keys_by_master().items():
            for k in keys:
                self.assertTrue(k.startswith(PREFIX), k)
                m = TAG.search(k)
                self.assertIsNotNone(m, "key without a hash tag: %r" % k)
                where.setdefault(m.group(1), set()).add(port)
        return where

    def name_on(self, port, stem):
        """An object name stem0, stem1, ... whose slot is on master port."""
        for i in range(1000):
            name = "%s%d" % (stem, i)
            if self.redis.slot_owner("%s{%s}" % (PREFIX, name)) == port:
                return name
        raise AssertionError("no name of %s* hashes to port %d" % (stem, port))


class Routing(OnCluster):
    def test_info_connected(self):
        d = self.host()
        # (right after start the masters may still be answering CLUSTER INFO)
        st = wait_for(lambda: (lambda s: s["connection"] == "connected" and s)(
            d.ok("daemon.info")["state"]), what="mpsupd connected to every master")
        self.assertEqual(st["backend"], "redis")
        self.assertEqual(st["address"], self.redis.address)
        self.assertIs(st["cluster"], True)
        self.assertEqual(sorted(st["nodes"]), sorted("127.0.0.1:%d" % p for p in self.redis.ports))
        self.assertEqual(st["slots_moved"], 0)  # the slot map learnt at connect holds

    # obj.create's extra parameters and a first write, per type
    KINDS = (("dict", {}, ("dict.set", {"key": "k", "value": 1})),
             ("list", {}, ("list.append", {"value": 1})),
             ("queue", {}, ("queue.put", {"item": 1})),
             ("value", {"typecode": "i"}, ("value.set", {"value": 7})),
             ("lock", {}, ("lock.acquire", {})),
             ("event", {}, ("event.set", {})),
             ("semaphore", {"value": 2}, ("semaphore.acquire", {})),
             ("array", {"typecode": "i", "size": 4}, ("array.set", {"index": 1, "value": 5})))

    def test_objects_spread_each_whole_on_one_master(self):
        """50 objects of 8 types: their keys land on at least 2 masters,
        every object's keys all on the master of its slot; obj.list on
        another host lists all 50."""
        a, b = self.host(), self.host()
        names = {}
        with a.client() as c:
            for i in range(50):
                kind, params, (op, args) = self.KINDS[i % len(self.KINDS)]
                name = "o%d-%s" % (i, kind)
                self.assertEqual(c.ok("obj.create", name=name, type=kind, **params),
                                 {"created": True}, name)
                c.ok(op, name=name, **args)
                names[name] = kind
            where = self.names_per_master()
        self.assertEqual(set(where), set(names))
        for name, ports in where.items():
            self.assertEqual(len(ports), 1, "%s's keys are on %s" % (name, sorted(ports)))
            self.assertEqual(ports, {self.redis.slot_owner("%s{%s}" % (PREFIX, name))}, name)
        used = set().union(*where.values())
        self.assertGreaterEqual(len(used), 2, "every object on one master: %s" % used)
        listed = {o["name"]: o["type"] for o in b.ok("obj.list")}
        self.assertEqual(listed, names)
        self.assertEqual(b.ok("dict.get", name="o0-dict", key="k"), 1)
        self.assertEqual(b.ok("value.get", name="o3-value"), 7)

    def test_blocked_get_woken_by_other_host(self):
        """A queue.get blocked on host B, for a queue on each master, is
        woken by host A's put."""
        a, b = self.host(), self.host()
        self.assertNotEqual(a.ok("daemon.info")["state"]["host_id"],
                            b.ok("daemon.info")["state"]["host_id"])
        names = [self.name_on(p, "q") for p in self.redis.ports]
        getters = []
        for name in names:
            cb = b.client()
            self.addCleanup(cb.close)
            getters.append((cb, cb.send("queue.get", name=name, timeout=60), name))

        def all_blocked():
            # a getter answered before any put fails at once, with its answer
            ready = select.select([cb.sock for cb, _, _ in getters], [], [], 0)[0]
            for cb, _, name in getters:
                if cb.sock in ready or cb.buf:
                    raise AssertionError("queue.get of %s answered before a put: %r"
                                         % (name, cb.recv()))
            return b.ok("daemon.info")["state"]["blocked_waiters"] == len(names)
        wait_for(all_blocked, what="%d blocked getters on host b" % len(names))
        for name in names:
            a.ok("queue.put", name=name, item={"for": name})
        for cb, rid, name in getters:
            self.assertEqual(cb.recv(), {"id": rid, "ok": True, "result": {"for": name}})
        for name in names:
            self.assertEqual(a.ok("queue.size", name=name), 0)


class TaskPool(OnCluster):
    def test_map_through_the_cluster(self):
        """pool.map of 200 items through a task_queue = redis pool: every
        item answered once, in order, and the pool's stream is on the master
        of its slot."""
        worker = os.path.join(mpsuptest.SRCDIR, "tests", "e2e", "task_worker.py")
        d = self.host("redis_lease = 2\n",
                      "[pool:w]\nmode = task\ntask_queue = redis\ncommand = %s %s\n"
                      "processes = 2\nstart_secs = 0\n" % (sys.executable, worker))
        wait_for(lambda: d.ok("daemon.info").get("task_queue", {}).get("reading") == 1,
                 what="the pool reading its task queue")
        with Client(d.socket, timeout=120 * mpsuptest.SCALE) as c:
            r = c.call("pool.map", pool="w", items=list(range(200)))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["result"]["results"], [2 * i for i in range(200)])
        q = d.ok("daemon.info")["task_queue"]
        self.assertEqual((q["sent"], q["answers"], q["waiting"]), (200, 200, 0))
        self.assertIs(q["cluster"], True)
        self.assertEqual(sorted(q["nodes"]), sorted("127.0.0.1:%d" % p for p in self.redis.ports))
        stream = "%s{task:w}:s" % PREFIX
        owner = self.redis.slot_owner(stream)
        info = redis_call(owner, "XINFO", "STREAM", stream)
        self.assertGreater(info[info.index("entries-added") + 1], 0)  # items go batched
        for p in self.redis.ports:
            if p != owner:
                self.assertNotIn(stream, self.redis.keys(p))


class SlotMoves(OnCluster):
    """A slot that moves to another master while mpsupd runs (MOVED): the
    commands on it answer unavailable at most while mpsupd learns the new
    map, nothing acknowledged is lost or applied twice, a blocked getter
    waits on."""

    def move_slot(self, key, to=None):
        """Move key's slot to another master (as redis-cli --cluster reshard
        does: IMPORTING, MIGRATING, MIGRATE its keys, NODE on every master);
        the port it went to. Moved back when the test ends."""
        ports = self.redis.ports
        src = self.redis.slot_owner(key)
        dst = to or next(p for p in ports if p != src)
        slot = redis_call(ports[0], "CLUSTER", "KEYSLOT", key)
        ids = {p: redis_call(p, "CLUSTER", "MYID") for p in ports}
        self.assertEqual(redis_call(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]), "OK")
        self.assertEqual(redis_call(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]), "OK")
        keys = redis_call(src, "CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            self.assertEqual(redis_call(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000,
                                        "KEYS", *keys), "OK")
        for p in ports:
            self.assertEqual(redis_call(p, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]), "OK")
        wait_for(lambda: all(self.slot_owner_at(p, slot) == dst for p in ports),
                 what="every master agreeing slot %d moved" % slot)
        if to is None:
            self.addCleanup(self.move_slot, key, src)
        return dst

    def slot_owner_at(self, port, slot):
        for lo, hi, master, *_ in redis_call(port, "CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return master[1]
        return None

    def ok_soon(self, c, cmd, **params):
        """cmd's result, asked again while it answers unavailable (mpsupd
        learning the new map); the number of unavailable answers."""
        misses = [0]

        def once():
            r = c.call(cmd, **params)
            if not r["ok"]:
                self.assertEqual(r["error"]["code"], "unavailable", r)
                misses[0] += 1
            return r
        return wait_for(lambda: (lambda r: r["ok"] and r)(once()),
                        what="%s answered after the move" % cmd)["result"], misses[0]

    def test_moved_slot_learnt_data_kept(self):
        d = self.host()
        with d.client() as c:
            c.ok("obj.create", name="mv", type="dict")
            c.ok("dict.set", name="mv", key="k", value=41)
            self.move_slot("%s{mv}" % PREFIX)
            v, _ = self.ok_soon(c, "dict.get", name="mv", key="k")
            self.assertEqual(v, 41)
            self.ok_soon(c, "dict.set", name="mv", key="k", value=42)
            self.assertEqual(c.ok("dict.get", name="mv", key="k"), 42)
        st = wait_for(lambda: (lambda s: s["connection"] == "connected" and s)(
            d.ok("daemon.info")["state"]), what="connected again")
        self.assertGreaterEqual(st["slots_moved"], 1)

    def test_blocked_getter_waits_on_across_the_move(self):
        d = self.host()
        d.ok("obj.create", name="mq", type="queue")
        with d.client() as g:
            rid = g.send("queue.get", name="mq", timeout=60)
            wait_for(lambda: d.ok("daemon.info")["state"]["blocked_waiters"] == 1,
                     what="the getter blocked")
            self.move_slot("%s{mq}" % PREFIX)
            with d.client() as c:
                self.ok_soon(c, "queue.put", name="mq", item="after the move")
            self.assertEqual(g.recv(), {"id": rid, "ok": True, "result": "after the move"})

    def test_writes_in_flight_elsewhere_answered_once(self):
        """value.add pipelined on an object whose slot stays while another
        slot moves: every add answered ok is in the value, and no add that
        ran is answered unavailable (the old connections drain)."""
        d = self.host()
        stay = self.name_on(self.redis.ports[0], "stay")
        d.ok("obj.create", name=stay, type="value", typecode="i")
        oks = moved = 0
        with d.client() as c, d.client() as m:
            for i in range(10):
                move = self.name_on(self.redis.ports[1], "move%d-" % i)
                self.ok_soon(m, "obj.create", name=move, type="dict")
                self.move_slot("%s{%s}" % (PREFIX, move), self.redis.ports[2])
                self.addCleanup(self.move_slot, "%s{%s}" % (PREFIX, move), self.redis.ports[1])
                ids = [c.send("value.add", name=stay, by=1) for _ in range(100)]
                # MOVED: mpsupd learns the new map while the adds are on their way
                moved += not m.call("dict.set", name=move, key="k", value=1)["ok"]
                for rid in ids:
                    r = c.recv()
                    self.assertEqual(r["id"], rid)
                    oks += r["ok"]
                    if not r["ok"]:  # not run: the new map was being learnt
                        self.assertEqual(r["error"]["code"], "unavailable", r)
            total, _ = self.ok_soon(c, "value.get", name=stay)
        self.assertEqual(total, oks)
        self.assertGreater(moved, 0)
        self.assertGreater(oks, 0)


if __name__ == "__main__":
    main()
