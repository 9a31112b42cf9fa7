"""End-to-end tests of rolling restarts: proc.restart {rolling: true,
max_unavailable} and mpctl restart --rolling never have more than N members
of a pool down (sampled through process events), the next member goes only
once a restarted one is ready (READY=1 with ready = notify), and a reload
that changes a pool restarts it that way, keeping a runtime scale unless
the file's `processes` changed."""
import os

import mpsuptest
from mpsuptest import DaemonTestCase, wait_for

BUILD = os.environ.get("MPSUP_BUILDDIR", os.getcwd())
WORKER = os.path.join(BUILD, "tests", "e2e", "notify_worker")
POOL = "[pool:w]\ncommand = sleep 1000\nprocesses = %d\nstart_secs = 0.2\n"


class Sampler:
    """Follows a pool's members through process events; records the fewest
    running at any point."""

    def __init__(self, d, pool):
        self.pool = pool
        self.c = d.client()
        self.c.send("events.subscribe", topics=["process", "pool"])
        assert self.c.recv()["ok"]
        recs = d.ok("status", target=pool)
        self.state = {r["name"]: r["state"] for r in recs}
        self.min_running = self.running()
        self.log = []

    def running(self):
        return sum(s == "running" for s in self.state.values())

    def until(self, pred):
        while True:
            e = self.c.recv()
            self.log.append(e)
            if e.get("event") == "process.state" and e["name"].startswith(self.pool + ":"):
                self.state[e["name"]] = e["to"]
                self.min_running = min(self.min_running, self.running())
            if pred(e):
                return e

    def until_rolled(self):
        e = self.until(lambda e: e.get("event") == "pool.rolling" and e["pool"] == self.pool
                       and e["state"] != "started")
        return e["state"]

    def close(self):
        self.c.close()


class Rolling(DaemonTestCase):
    config = POOL % 4

    def pids(self, pool="w"):
        return {r["name"]: r["pid"] for r in self.d.ok("status", target=pool)}

    def all_running(self, pool, n):
        return wait_for(lambda: (lambda recs: len(recs) == n and
                                 all(r["state"] == "running" for r in recs) and recs)(
            self.d.ok("status", target=pool)), what="%d of %s running" % (n, pool))

    def roll(self, n, **kw):
        self.all_running("w", n)
        before = self.pids()
        s = Sampler(self.d, "w")
        try:
            self.d.ok("proc.restart", target="w", rolling=True, **kw)
            self.assertEqual(s.until_rolled(), "done")
            return s.min_running, before
        finally:
            s.close()

    def test_one_at_a_time(self):
        low, before = self.roll(4)
        self.assertEqual(low, 3)
        after = self.pids()
        self.assertTrue(all(after[k] != before[k] for k in before), (before, after))

    def test_two_at_a_time(self):
        low, _ = self.roll(4, max_unavailable=2)
        self.assertEqual(low, 2)

    def test_mpctl(self):
        self.all_running("w", 4)
        s = Sampler(self.d, "w")
        try:
            out = self.d.mpctl("restart", "--rolling", "--max-unavailable", "3", "w", check=0)
            self.assertEqual(len(out.stdout.splitlines()), 5, out.stdout)
            # restart waits: the roll is over when it answers
            self.assertEqual(s.until_rolled(), "done")
            self.assertEqual(s.min_running, 1)
        finally:
            s.close()
        self.d.mpctl("restart", "--max-unavailable", "2", "w", check=2)

    def test_bad_requests(self):
        self.d.ok("pool.add", pool="other", command="sleep 1000")
        with self.d.client() as c:
            self.assertEqual(c.err("proc.restart", target="*", rolling=True), "bad_request")
            self.assertEqual(c.err("proc.restart", target="w", rolling=True,
                                   max_unavailable=0), "bad_request")


class RollingNotify(DaemonTestCase):
    def test_waits_for_ready(self):
        gate = os.path.join(self.d.dir, "gate")
        open(gate, "w").close()
        self.d.ok("pool.add", pool="n", command="%s %s READY=1" % (WORKER, gate),
                  processes=3, ready="notify", start_secs=0)
        wait_for(lambda: all(r["state"] == "running" for r in self.d.ok("status", target="n")),
                 what="n running")
        os.unlink(gate)
        s = Sampler(self.d, "n")
        try:
            self.d.ok("proc.restart", target="n", rolling=True, wait=False)
            first = s.until(lambda e: e.get("to") == "starting")["name"]
            # held: the restarted one has not said READY=1
            self.assertEqual(self.d.err("proc.restart", target="n", rolling=True), "conflict")
            states = {r["name"]: r["state"] for r in self.d.ok("status", target="n")}
            self.assertEqual(sorted(states.values()), ["running", "running", "starting"])
            open(gate, "w").close()
            s.until_rolled()
            order = [(e["name"], e["to"]) for e in s.log if e.get("event") == "process.state"]
            # the second stop comes after the first is running again
            ready_at = order.index((first, "running"))
            stops = [i for i, (n, to) in enumerate(order) if to == "stopping"]
            self.assertEqual(len(stops), 3, order)
            self.assertLess(stops[0], ready_at)
            self.assertGreater(stops[1], ready_at, order)
            self.assertEqual(s.min_running, 2)
        finally:
            s.close()


class RollingReload(DaemonTestCase):
    config = POOL % 2

    def test_reload_rolls_and_keeps_scale(self):
        self.d.ok("pool.scale", pool="w", processes=4)
        wait_for(lambda: (lambda r: len(r) == 4 and all(x["state"] == "running" for x in r))(
            self.d.ok("status", target="w")), what="4 running")
        self.d.write_config((POOL % 2).replace("sleep 1000", "sleep 1001"))
        s = Sampler(self.d, "w")
        try:
            self.assertEqual(self.d.ok("daemon.reload")["changed"], ["w"])
            self.assertEqual(s.until_rolled(), "done")
            self.assertEqual(s.min_running, 3)
        finally:
            s.close()
        recs = self.d.ok("status", target="w")
        self.assertEqual(len(recs), 4)  # the runtime scale stayed
        # the file's processes changed: that count wins
        self.d.write_config((POOL % 3).replace("sleep 1000", "sleep 1001"))
        self.d.ok("daemon.reload")
        wait_for(lambda: len(self.d.ok("status", target="w")) == 3, what="3 members")


if __name__ == "__main__":
    mpsuptest.main()
