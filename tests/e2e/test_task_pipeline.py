"""End-to-end tests of pipelined task dispatch (docs/tasks.md, "Pipelining"):
task_window tasks in flight per worker, answers in any order matched by id,
a worker killed or timed out with several tasks in flight, task_timeout
counted from when a task could start."""
import os
import signal
import sys

import mpsuptest
from mpsuptest import wait_for
from test_task import TaskTestCase, WORKER

PY = sys.executable

# A worker that reads every task line available (up to HOLD), then answers
# them newest first; each result says how many tasks it held at once.
REORDER = r'''
import json, os, select, sys
HOLD = int(sys.argv[1])
buf = b""
held = []
def answer():
    n = len(held)
    for t in reversed(held):
        sys.stdout.write(json.dumps({"id": t["id"], "result": {"v": t["item"], "held": n}}) + "\n")
    sys.stdout.flush()
    del held[:]
while True:
    r, _, _ = select.select([0], [], [], 0.2 if held else None)
    if not r:
        answer()
        continue
    data = os.read(0, 65536)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        held.append(json.loads(line))
        if len(held) == HOLD:
            answer()
'''


class Pipeline(TaskTestCase):
    def reorder_pool(self, name, hold, **kw):
        path = self.path("reorder.py")
        with open(path, "w") as f:
            f.write(REORDER)
        self.add_pool(name, "%s %s %d" % (PY, path, hold), **kw)

    def held(self, proc):
        return self.status(proc)[0]["held"]

    def test_answers_out_of_order_with_window(self):
        # one worker, window 4: it gets 4 lines before it answers any, and
        # answers them newest first; the map's results are in item order
        self.reorder_pool("r", 4, task_window=4)
        res = self.d.ok("pool.map", pool="r", items=list(range(20)))["results"]
        self.assertEqual([x["v"] for x in res], list(range(20)))
        self.assertEqual(max(x["held"] for x in res), 4)
        # submitted tasks too: each wait gets its own task's result
        with self.d.client() as c:
            ids = [c.ok("pool.submit", pool="r", item=i)["task"] for i in range(8)]
            self.assertEqual([c.ok("task.wait", task=t)["result"]["v"] for t in ids],
                             list(range(8)))
        rec = self.status("r:0")[0]
        self.assertEqual((rec["tasks_done"], rec["held"], rec["busy"]), (28, 0, False))

    def test_window_one_is_one_at_a_time(self):
        self.reorder_pool("r", 4, task_window=1)
        res = self.d.ok("pool.map", pool="r", items=list(range(6)))["results"]
        self.assertEqual([x["v"] for x in res], list(range(6)))
        self.assertEqual({x["held"] for x in res}, {1})

    def test_spread_over_workers(self):
        # tasks go to the workers in turn, not 16 to the first
        self.add_pool(processes=2, task_window=16)
        items = [{"sleep": 0.05, "value": i} for i in range(8)]
        self.assertEqual(self.d.ok("pool.map", pool="t", items=items)["results"],
                         list(range(8)))
        self.assertEqual(sorted(r["tasks_done"] for r in self.status("t")), [4, 4])

    def submit_hung_head(self, c, head, n_behind):
        """Submit head then n_behind numbers to the single worker t:0 and
        wait until it holds 1 + n_behind of them."""
        ids = [c.ok("pool.submit", pool="t", item=head)["task"]]
        ids += [c.ok("pool.submit", pool="t", item=i)["task"] for i in range(1, 1 + n_behind)]
        wait_for(lambda: self.held("t:0") == 1 + n_behind, what="t:0 holds them all")
        return ids

    def test_kill_fails_exactly_the_tasks_held(self):
        self.add_pool(task_window=4)
        with self.d.client() as c:
            ids = self.submit_hung_head(c, {"hang": True}, 3)
            more = [c.ok("pool.submit", pool="t", item=i)["task"] for i in (4, 5)]
            entry = self.pool_entry("t")
            self.assertEqual((entry["busy"], entry["running"], entry["pending"]), (1, 4, 2))
            pid = self.status("t:0")[0]["pid"]
            os.kill(pid, signal.SIGKILL)
            for t in ids:
                err = c.call("task.wait", task=t)["error"]
                self.assertEqual(err, {"code": "internal",
                                       "message": "worker t:0 killed by signal 9 (SIGKILL)"})
            # the two that were still pending run on the restarted worker
            self.assertEqual([c.ok("task.wait", task=t)["result"] for t in more], [8, 10])

    def test_kill_retries_exactly_the_tasks_held(self):
        self.add_pool(task_window=4, task_retries=1)
        with self.d.client() as c:
            ids = self.submit_hung_head(c, {"hang_once": self.path("flag")}, 3)
            more = [c.ok("pool.submit", pool="t", item=i)["task"] for i in (4, 5)]
            # the worker runs the first task (it hangs this once)
            wait_for(lambda: os.path.exists(self.path("flag")), what="first task started")
            os.kill(self.status("t:0")[0]["pid"], signal.SIGKILL)
            for t in ids + more:
                wait_for(lambda: c.ok("task.status", task=t)["state"] == "done",
                         what="task %d done" % t)
            self.assertEqual([c.ok("task.status", task=t)["attempts"] for t in ids + more],
                             [2, 2, 2, 2, 1, 1])
            self.assertEqual([c.ok("task.wait", task=t)["result"] for t in ids + more],
                             ["ok", 2, 4, 6, 8, 10])

    def test_timeout_of_a_task_with_others_behind_it(self):
        self.add_pool(task_window=4, task_timeout=1.0)
        with self.d.client() as c:
            ids = self.submit_hung_head(c, {"hang": True}, 2)
            err = c.call("task.wait", task=ids[0])["error"]
            self.assertEqual(err, {"code": "internal",
                                   "message": "task_timeout (1s) exceeded on worker t:0"})
            # the tasks behind it had not started: they run again, uncounted
            self.assertEqual([c.ok("task.wait", task=t)["result"] for t in ids[1:]], [2, 4])
        self.assertGreaterEqual(self.status("t:0")[0]["restarts"], 1)

    def test_timeout_counts_from_when_a_task_could_start(self):
        # three tasks of 0.6 s written at once to one worker: 1.8 s in all,
        # but none of them runs longer than task_timeout (1.2 s)
        self.add_pool(task_window=4, task_timeout=1.2)
        items = [{"sleep": 0.6, "value": i} for i in range(3)]
        self.assertEqual(self.d.ok("pool.map", pool="t", items=items)["results"], [0, 1, 2])
        rec = self.status("t:0")[0]
        self.assertEqual((rec["restarts"], rec["tasks_done"]), (0, 3))

    def test_unknown_id_is_a_bad_reply(self):
        self.add_pool(task_window=4)
        with self.d.client() as c:
            ids = self.submit_hung_head(c, {"sleep": 0.3, "value": 1}, 2)
            bad = c.ok("pool.submit", pool="t", item={"wrong_id": True})["task"]
            err = c.call("task.wait", task=bad)["error"]
            self.assertRegex(err["message"],
                             r"^bad reply from worker t:0: id \d+ is not a task it holds$")
            self.assertEqual([c.ok("task.wait", task=t)["result"] for t in ids], [1, 2, 4])


if __name__ == "__main__":
    mpsuptest.main()
