"""End-to-end tests of task pools (DESIGN.md §6, docs/tasks.md): pool.map,
pool.submit, task.wait and task.status over supervised workers; workers that
crash, hang, print garbage; retries; ordering; cancellation; max_pending;
scale down with tasks in flight; shutdown; mpctl map."""
import json
import os
import signal
import socket
import sys
import time
import unittest

import mpsuptest
from mpsuptest import Client, DaemonTestCase, SRCDIR, wait_for

PY = sys.executable
DOUBLE = "%s %s" % (PY, os.path.join(SRCDIR, "examples", "double_worker.py"))
WORKER = "%s %s" % (PY, os.path.join(SRCDIR, "tests", "e2e", "task_worker.py"))


class TaskTestCase(DaemonTestCase):
    def add_pool(self, name="t", command=WORKER, processes=1, **kw):
        params = {"pool": name, "command": command, "processes": processes, "mode": "task",
                  "start_secs": 0}
        params.update(kw)
        self.d.ok("pool.add", **params)
        self.wait_running(name, processes)

    def status(self, target):
        return self.d.ok("status", target=target)

    def wait_running(self, pool, n):
        def ok():
            recs = self.status(pool)
            return recs if len(recs) == n and all(r["state"] == "running" for r in recs) \
                else None
        return wait_for(ok, what="%d workers of %s running" % (n, pool))

    def pool_entry(self, name):
        return [p for p in self.d.ok("pool.list") if p["pool"] == name][0]

    def wait_idle(self, name):
        return wait_for(lambda: (lambda p: p if p["busy"] == 0 and p["pending"] == 0 else None)(
            self.pool_entry(name)), what="pool %s idle" % name)

    def map_error(self, pool, items, **kw):
        with self.d.client() as c:
            resp = c.call("pool.map", pool=pool, items=items, **kw)
        self.assertFalse(resp["ok"], resp)
        return resp["error"]

    def path(self, name):
        return os.path.join(self.d.dir, name)


class Map(TaskTestCase):
    def test_seed_map_python_worker(self):
        # the seed: map(x*2, range(10)) through the stdlib-only example worker
        self.add_pool("double", DOUBLE, processes=2)
        res = self.d.ok("pool.map", pool="double", items=list(range(10)))
        self.assertEqual(res, {"results": [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]})
        recs = self.status("double")
        self.assertEqual(sum(r["tasks_done"] for r in recs), 10)
        self.assertTrue(all(r["busy"] is False for r in recs))
        entry = self.pool_entry("double")
        self.assertEqual((entry["mode"], entry["busy"], entry["pending"]), ("task", 0, 0))
        # an empty map answers at once; results may be any JSON value
        self.assertEqual(self.d.ok("pool.map", pool="double", items=[]), {"results": []})
        self.assertEqual(self.d.ok("pool.map", pool="double", items=[1.5, -3])["results"],
                         [3.0, -6])

    def test_c_worker(self):
        builddir = os.environ.get("MPSUP_BUILDDIR", os.path.dirname(os.path.dirname(
            os.path.abspath(os.environ.get("MPSUPD", "daemon/mpsupd")))))
        exe = os.path.join(builddir, "examples", "double_worker")
        if not os.access(exe, os.X_OK):
            self.skipTest("examples/double_worker not built")
        self.add_pool("c", exe, processes=2)
        self.assertEqual(self.d.ok("pool.map", pool="c", items=list(range(100)))["results"],
                         [2 * x for x in range(100)])
        err = self.map_error("c", [1, "x", 3])
        self.assertEqual((err["code"], err["index"]), ("internal", 1))
        self.assertEqual(err["message"], "item 1: item is not a number")

    def test_worker_error_reply(self):
        self.add_pool()
        err = self.map_error("t", [1, {"error": "ZeroDivisionError: boom"}, 3])
        self.assertEqual(err, {"code": "internal", "index": 1,
                               "message": "item 1: ZeroDivisionError: boom"})
        # an error reply is the task's failure, not the worker's: it stays up
        rec = self.status("t:0")[0]
        self.assertEqual(rec["restarts"], 0)
        self.assertEqual(self.d.ok("pool.map", pool="t", items=[4])["results"], [8])

    def test_crash_on_one_item(self):
        self.add_pool(processes=2)
        pids = {r["pid"] for r in self.status("t")}
        err = self.map_error("t", [1, 2, {"exit": 1}, 4])
        self.assertEqual(err["code"], "internal")
        self.assertEqual(err["index"], 2)
        self.assertRegex(err["message"], r"^item 2: worker t:[01] exited with status 1$")
        # the pool's policy restarts the worker and it rejoins the rotation
        recs = self.wait_running("t", 2)
        self.assertNotEqual({r["pid"] for r in recs}, pids)
        self.assertEqual(self.d.ok("pool.map", pool="t", items=list(range(6)))["results"],
                         [0, 2, 4, 6, 8, 10])

    def test_hang_past_task_timeout(self):
        self.add_pool(task_timeout=0.5)
        pid = self.status("t:0")[0]["pid"]
        t0 = time.monotonic()
        err = self.map_error("t", [{"hang": True}])
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertEqual(err["code"], "internal")
        self.assertEqual(err["message"], "item 0: task_timeout (0.5s) exceeded on worker t:0")
        # killed (SIGKILL) and restarted by the pool's policy
        rec = wait_for(lambda: (lambda r: r if r["state"] == "running" and r["pid"] != pid
                                else None)(self.status("t:0")[0]), what="t:0 restarted")
        self.assertGreaterEqual(rec["restarts"], 1)
        self.assertEqual(self.d.ok("pool.map", pool="t", items=[5])["results"], [10])

    def test_garbage_reply(self):
        self.add_pool()
        pid = self.status("t:0")[0]["pid"]
        err = self.map_error("t", [{"garbage": "hello world"}])
        self.assertEqual(err["code"], "internal")
        self.assertEqual(err["message"],
                         "item 0: bad reply from worker t:0: not a JSON object: 'hello world'")
        rec = wait_for(lambda: (lambda r: r if r["state"] == "running" and r["pid"] != pid
                                else None)(self.status("t:0")[0]), what="t:0 restarted")
        self.assertEqual(rec["restarts"], 1)
        err = self.map_error("t", [{"wrong_id": True}])
        self.assertRegex(err["message"], r"bad reply from worker t:0: id \d+ is not a task it holds$")

    def test_oversized_reply(self):
        self.d.stop()
        self.d.write_config(main_extra="max_request_bytes = 4096")
        self.d.start()
        self.add_pool()
        self.assertEqual(len(self.d.ok("pool.map", pool="t", items=[{"big": 3000}])
                             ["results"][0]), 3000)
        err = self.map_error("t", [{"big": 100000}])
        self.assertEqual(err["message"], "item 0: bad reply from worker t:0: "
                                         "a line longer than max_request_bytes (4096)")
        self.wait_running("t", 1)
        self.assertEqual(self.d.ok("pool.map", pool="t", items=[1])["results"], [2])

    def test_retries(self):
        self.add_pool(processes=2, task_retries=2)
        # dies on the first attempt, succeeds on the second (on a restarted worker)
        res = self.d.ok("pool.map", pool="t", items=[1, {"crash_once": self.path("flag")}, 3])
        self.assertEqual(res["results"], [2, "ok", 6])
        # always dies: fails after 1 + task_retries attempts, saying so
        err = self.map_error("t", [{"exit": 7}])
        self.assertRegex(err["message"],
                         r"^item 0: worker t:[01] exited with status 7 \(after 3 attempts\)$")

    def test_order_under_uneven_times(self):
        self.add_pool(processes=4)
        items = [{"sleep": [0.2, 0.0, 0.05, 0.01][i % 4] * (1 + i % 3), "value": i}
                 for i in range(24)]
        res = self.d.ok("pool.map", pool="t", items=items)["results"]
        self.assertEqual(res, list(range(24)))
        done = [r["tasks_done"] for r in self.status("t")]
        self.assertEqual(sum(done), 24)
        self.assertGreaterEqual(sum(1 for n in done if n > 0), 3, done)

    def test_map_timeout(self):
        self.add_pool()
        with self.d.client() as c:
            resp = c.call("pool.map", pool="t", items=[{"sleep": 0.05, "value": 1},
                                                        {"hang": True}, 3], timeout=0.5)
            self.assertEqual(resp["error"]["code"], "timeout")
            self.assertEqual(resp["error"]["message"], "pool.map: 1 of 3 items done after 0.5s")
            # the connection goes on; the hung task holds the worker until
            # task_timeout (none here): the third item was dropped
            self.assertEqual(c.ok("ping"), c.ok("ping"))
            self.assertEqual(self.pool_entry("t")["pending"], 0)

    def test_bad_requests(self):
        self.add_pool()
        self.assertEqual(self.d.err("pool.map", pool="nope", items=[1]), "not_found")
        self.assertEqual(self.d.err("pool.map", pool="t", items=5), "bad_request")
        self.assertEqual(self.d.err("pool.map", pool="t", items=[1], extra=1), "bad_request")
        self.assertEqual(self.d.err("pool.map", pool="t", items=[1], timeout=-1), "bad_request")
        self.d.ok("pool.add", pool="svc", command="sleep 1000", processes=1)
        self.assertEqual(self.d.err("pool.map", pool="svc", items=[1]), "conflict")
        self.assertEqual(self.d.err("pool.submit", pool="svc", item=1), "conflict")
        self.assertEqual(self.d.err("task.wait", task="x"), "bad_request")
        self.assertEqual(self.d.err("task.status", task=999999), "not_found")


class Lifecycle(TaskTestCase):
    def test_cancel_on_disconnect(self):
        self.add_pool(task_window=1)  # one task at a time: the rest stay pending
        mark = self.path("mark")
        items = [{"sleep": 0.4, "value": i, "mark": mark} for i in range(20)]
        c = self.d.client()
        c.send("pool.map", pool="t", items=items)
        wait_for(lambda: self.pool_entry("t")["busy"] == 1, what="first task running")
        self.assertEqual(self.pool_entry("t")["pending"], 19)
        c.close()
        # the pending tasks are cancelled at once; the running one finishes
        wait_for(lambda: self.pool_entry("t")["pending"] == 0, what="backlog cancelled")
        self.wait_idle("t")
        with open(mark) as f:
            self.assertEqual(f.read().split(), ["0"])
        self.assertEqual(self.status("t:0")[0]["tasks_done"], 1)
        self.assertEqual(self.d.ok("pool.map", pool="t", items=[2])["results"], [4])

    def test_submit_wait_status(self):
        self.add_pool(task_window=1)
        with self.d.client() as c:
            tid = c.ok("pool.submit", pool="t", item=21)["task"]
            self.assertIsInstance(tid, int)
            self.assertEqual(c.ok("task.wait", task=tid), {"result": 42})
            # task.wait fetches the result: it is gone
            self.assertEqual(c.err("task.wait", task=tid), "not_found")
            slow = c.ok("pool.submit", pool="t", item={"sleep": 0.5, "value": "v"})["task"]
            queued = c.ok("pool.submit", pool="t", item={"error": "nope"})["task"]
            st = wait_for(lambda: (lambda s: s if s["state"] == "running" else None)(
                c.ok("task.status", task=slow)), what="running")
            self.assertEqual((st["task"], st["pool"], st["worker"]), (slow, "t", "t:0"))
            self.assertEqual(c.ok("task.status", task=queued)["state"], "pending")
            self.assertTrue(self.status("t:0")[0]["busy"])
            self.assertEqual(c.call("task.wait", task=slow, timeout=0)["error"]["code"],
                             "timeout")
            self.assertEqual(c.call("task.wait", task=slow, timeout=0.05)["error"]["code"],
                             "timeout")
            self.assertEqual(c.ok("task.wait", task=slow), {"result": "v"})
            st = wait_for(lambda: (lambda s: s if s["state"] == "failed" else None)(
                c.ok("task.status", task=queued)), what="failed")
            self.assertEqual(st["error"], {"code": "internal", "message": "nope"})
            # status does not fetch; wait answers the task's error, then it is gone
            err = c.call("task.wait", task=queued)["error"]
            self.assertEqual(err, {"code": "internal", "message": "nope"})
            self.assertEqual(c.err("task.status", task=queued), "not_found")

    def test_wait_blocks_only_its_connection(self):
        self.add_pool()
        tid = self.d.ok("pool.submit", pool="t", item={"sleep": 0.3, "value": 1})["task"]
        with self.d.client() as a:
            a.send("task.wait", task=tid)
            self.assertEqual(self.d.ok("ping"), self.d.ok("ping"))  # others go on
            self.assertEqual(a.recv()["result"], {"result": 1})

    def test_results_evicted(self):
        self.d.stop()
        self.d.write_config(main_extra="task_results_max = 2")
        self.d.start()
        self.add_pool()
        ids = [self.d.ok("pool.submit", pool="t", item=i)["task"] for i in range(4)]
        wait_for(lambda: self.status("t:0")[0]["tasks_done"] == 4, what="4 tasks done")
        self.assertEqual(self.d.err("task.status", task=ids[0]), "not_found")
        self.assertEqual(self.d.err("task.status", task=ids[1]), "not_found")
        self.assertEqual(self.d.ok("task.wait", task=ids[3]), {"result": 6})

    def test_results_expire_by_age(self):
        self.d.stop()
        self.d.write_config(main_extra="task_results_age = 0.3")
        self.d.start()
        self.add_pool()
        tid = self.d.ok("pool.submit", pool="t", item=1)["task"]
        wait_for(lambda: self.status("t:0")[0]["tasks_done"] == 1, what="task done")
        self.assertEqual(self.d.ok("task.status", task=tid)["state"], "done")
        def evicted():
            with self.d.client() as c:
                r = c.call("task.status", task=tid)
            return not r["ok"] and r["error"]["code"] == "not_found"
        wait_for(evicted, what="the result evicted by age")

    def test_max_pending(self):
        self.add_pool(max_pending=3, task_window=1)
        self.assertEqual(self.d.err("pool.map", pool="t", items=[1, 2, 3, 4]), "limit")
        with self.d.client() as c:
            busy = c.ok("pool.submit", pool="t", item={"sleep": 0.3, "value": 0})["task"]
            wait_for(lambda: self.pool_entry("t")["busy"] == 1, what="busy")
            ids = [c.ok("pool.submit", pool="t", item=i)["task"] for i in range(3)]
            resp = c.call("pool.submit", pool="t", item=9)
            self.assertEqual(resp["error"]["code"], "limit")
            self.assertIn("max_pending = 3", resp["error"]["message"])
            self.assertEqual(c.ok("task.wait", task=busy), {"result": 0})
            self.assertEqual([c.ok("task.wait", task=i)["result"] for i in ids], [0, 2, 4])

    def test_scale_down_in_flight_loses_nothing(self):
        self.add_pool(processes=3, stop_timeout=5)
        mark = self.path("mark")
        items = [{"sleep": 0.3, "value": i, "mark": mark} for i in range(12)]
        with self.d.client() as c:
            c.send("pool.map", pool="t", items=items)
            wait_for(lambda: self.pool_entry("t")["busy"] == 3, what="3 busy")
            with self.d.client() as admin:
                admin.ok("pool.scale", pool="t", processes=1)
            resp = c.recv()
        self.assertTrue(resp["ok"], resp)
        self.assertEqual(resp["result"]["results"], list(range(12)))
        self.assertEqual(len(self.status("t")), 1)

    def test_reload_in_flight_loses_nothing(self):
        conf = ("[pool:r]\nmode = task\ncommand = %s\nprocesses = 2\nstart_secs = 0\n"
                "stop_timeout = 5\n" % WORKER)
        self.d.write_config(conf)
        self.d.ok("daemon.reload")
        self.wait_running("r", 2)
        mark = self.path("mark")
        with self.d.client() as c:
            c.send("pool.map", pool="r", items=[{"sleep": 0.3, "value": i, "mark": mark}
                                                for i in range(6)])
            wait_for(lambda: self.pool_entry("r")["busy"] == 2, what="2 busy")
            # a changed definition restarts every worker: their tasks run again
            self.d.write_config(conf + "task_timeout = 30\n")
            self.assertEqual(self.d.ok("daemon.reload")["changed"], ["r"])
            resp = c.recv()
        self.assertTrue(resp["ok"], resp)
        self.assertEqual(resp["result"]["results"], list(range(6)))
        with open(mark) as f:
            self.assertEqual(sorted(int(x) for x in f.read().split()), list(range(6)))

    def test_stop_fails_backlog(self):
        self.add_pool()
        with self.d.client() as c:
            c.send("pool.map", pool="t", items=[{"sleep": 5, "value": 1}, 2])
            wait_for(lambda: self.pool_entry("t")["busy"] == 1, what="busy")
            self.d.ok("proc.stop", target="t")
            err = c.recv()["error"]
        self.assertEqual(err["code"], "conflict")
        self.assertIn("pool t has no live worker", err["message"])
        self.assertEqual(self.d.err("pool.submit", pool="t", item=1), "conflict")
        self.d.ok("proc.start", target="t")
        self.assertEqual(self.d.ok("pool.map", pool="t", items=[3])["results"], [6])

    def test_restart_requeues_running_task(self):
        self.add_pool(stop_timeout=5)
        mark = self.path("mark")
        with self.d.client() as c:
            tid = c.ok("pool.submit", pool="t", item={"sleep": 0.5, "value": 7, "mark": mark})
            wait_for(lambda: self.pool_entry("t")["busy"] == 1, what="busy")
            self.d.ok("proc.restart", target="t")
            self.assertEqual(c.ok("task.wait", task=tid["task"]), {"result": 7})
        # the interrupted run never finished; the second one did
        with open(mark) as f:
            self.assertEqual(f.read().split(), ["7"])

    def test_remove_pool_fails_backlog(self):
        self.add_pool()
        with self.d.client() as c:
            c.send("pool.map", pool="t", items=[{"sleep": 5, "value": 1}, 2])
            wait_for(lambda: self.pool_entry("t")["busy"] == 1, what="busy")
            self.d.ok("pool.remove", pool="t")
            err = c.recv()["error"]
        self.assertEqual(err["code"], "conflict")
        self.assertIn("pool t is being removed", err["message"])

    def test_stderr_goes_to_log_stdout_does_not(self):
        self.add_pool()
        self.assertEqual(self.d.ok("pool.map", pool="t", items=[{"stderr": "to the log"}])
                         ["results"], ["logged"])
        lines = wait_for(lambda: self.d.ok("proc.logs", target="t"), what="log line")
        self.assertEqual([(l["stream"], l["line"]) for l in lines], [("stderr", "to the log")])

    def test_shutdown_fails_pending(self):
        self.add_pool()
        c = self.d.client()
        c.send("pool.map", pool="t", items=[{"hang": True}, 2])
        tid = self.d.ok("pool.submit", pool="t", item=3)["task"]
        w = self.d.client()
        w.send("task.wait", task=tid)
        wait_for(lambda: self.pool_entry("t")["busy"] == 1, what="busy")
        self.d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(c.recv()["error"]["code"], "shutting_down")
        self.assertEqual(w.recv()["error"]["code"], "shutting_down")
        c.close()
        w.close()
        self.assertEqual(self.d.stop(), 0)

    def test_events(self):
        self.add_pool(task_retries=1)
        with self.d.client() as ev:
            ev.send("events.subscribe", topics=["task"])
            self.assertTrue(ev.recv()["ok"])
            self.map_error("t", [{"exit": 2}])
            kinds = [ev.recv()["event"] for _ in range(2)]
        self.assertEqual(kinds, ["task.retry", "task.failed"])


class Ctl(TaskTestCase):
    def test_mpctl_map_submit_wait(self):
        self.add_pool("double", DOUBLE, processes=2)
        p = self.d.mpctl("map", "double", 1, 2, 3, check=0)
        self.assertEqual(p.stdout, "2\n4\n6\n")
        out = self.d.mpctl("status", "double", check=0).stdout.splitlines()
        self.assertEqual(out[0].split()[-2:], ["BUSY", "TASKS"])
        self.assertEqual(sum(int(l.split()[-1]) for l in out[1:]), 3)  # TASKS
        self.assertIn("PENDING", self.d.mpctl("pools", check=0).stdout)
        p = self.d.mpctl("--json", "map", "double", 5, check=0)
        self.assertEqual(json.loads(p.stdout), {"results": [10]})
        tid = self.d.mpctl("submit", "double", 21, check=0).stdout.strip()
        st = wait_for(lambda: (lambda s: s if s["state"] == "done" else None)(
            json.loads(self.d.mpctl("--json", "task-status", tid, check=0).stdout)),
            what="task done")
        self.assertEqual((st["result"], st["pool"]), (42, "double"))
        self.assertEqual(self.d.mpctl("wait", tid, check=0).stdout, "42\n")
        self.d.mpctl("wait", tid, check=1)  # fetched: not_found

    def test_mpctl_map_failure_exits_1(self):
        self.add_pool()
        p = self.d.mpctl("map", "t", 1, '{"exit": 1}', 3, check=1)
        self.assertEqual(p.stdout, "")
        self.assertIn("item 1: worker t:0 exited with status 1", p.stderr)
        p = self.d.mpctl("task-status", 424242, check=1)
        self.assertIn("not_found", p.stderr)


if __name__ == "__main__":
    mpsuptest.main()
