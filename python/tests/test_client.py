#!/usr/bin/env python3
"""mpsup.Client against a real mpsupd: every proxy and its Python protocols,
errors as built-ins, threads sharing a client while one is blocked, fork,
processes, task pools and events."""
import collections.abc
import json
import os
import shutil
import socket
import queue
import subprocess
import sys
import tempfile
import threading
import time

import pyharness
from pyharness import SCALE, wait_for

import mpsup
from mpsup import errors

WORKER = os.path.join(pyharness.SRCDIR, "tests", "e2e", "task_worker.py")


class ClientTest(pyharness.DaemonClassCase):
    config = """
[pool:tw]
command = %s %s
mode = task
processes = 2
""" % (sys.executable, WORKER)

    def setUp(self):
        self.c = mpsup.Client(self.d.socket, timeout=20 * SCALE)
        self.n = getattr(ClientTest, "_n", 0) + 1
        ClientTest._n = self.n

    def tearDown(self):
        self.c.close()

    def name(self, kind):
        return "%s%d" % (kind, self.n)

    def test_discovery(self):
        self.assertEqual(mpsup.Client().socket_path, self.d.socket)  # $MPSUP_SOCKET
        old = os.environ.pop("MPSUP_SOCKET")
        try:
            self.assertEqual(mpsup.default_socket(), "/run/mpsupd/mpsupd.sock")
            with self.assertRaises(OSError):
                mpsup.Client(os.path.join(self.tmp, "no-such.sock"))
        finally:
            os.environ["MPSUP_SOCKET"] = old
        self.assertEqual(self.c.hello()["protocol"], 1)
        self.assertEqual(self.c.call("ping"), self.c.ping())

    def test_dict(self):
        d = self.c.dict(self.name("d"))
        self.assertIsInstance(d, collections.abc.MutableMapping)
        self.assertEqual(len(d), 0)                 # nobody wrote it: empty
        self.assertNotIn("a", d)
        self.assertEqual(self.c.objects(), [o for o in self.c.objects()])
        self.assertFalse(any(o["name"] == d.name for o in self.c.objects()))
        d["a"] = 1
        d.update({"b": [1, 2]}, c={"x": None})
        self.assertEqual(len(d), 3)
        self.assertIn("a", d)
        self.assertEqual(sorted(d), ["a", "b", "c"])
        self.assertEqual(d["b"], [1, 2])
        self.assertEqual(d.get("zz"), None)
        self.assertEqual(d.get("zz", 7), 7)
        with self.assertRaises(KeyError) as cm:
            d["zz"]
        self.assertEqual(cm.exception.args[0], "zz")
        with self.assertRaises(KeyError):
            del d["zz"]
        self.assertEqual(sorted(d.keys()), ["a", "b", "c"])
        self.assertIn([1, 2], d.values())
        self.assertEqual(dict(d.items())["c"], {"x": None})
        self.assertEqual(d.copy(), {"a": 1, "b": [1, 2], "c": {"x": None}})
        self.assertEqual(d, {"a": 1, "b": [1, 2], "c": {"x": None}})
        self.assertEqual(d.setdefault("a", 5), 1)
        self.assertEqual(d.setdefault("e", 5), 5)
        self.assertEqual(d.pop("e"), 5)
        self.assertEqual(d.pop("e", "dflt"), "dflt")
        with self.assertRaises(KeyError):
            d.pop("e")
        self.assertEqual(d.incr("n"), 1)
        self.assertEqual(d.incr("n", 5), 6)
        self.assertTrue(d.cas("n", 6, 7))
        self.assertFalse(d.cas("n", 6, 8))
        self.assertEqual(d["n"], 7)
        del d["n"]
        self.assertNotIn("n", d)
        self.assertIn("'a': 1", repr(d))
        d.clear()
        self.assertEqual(len(d), 0)
        d.delete()
        with self.assertRaises(mpsup.NotFound):
            d.get_all()

    def test_list(self):
        lst = self.c.list(self.name("l"))
        self.assertIsInstance(lst, collections.abc.MutableSequence)
        self.assertEqual(len(lst), 0)
        self.assertEqual(list(lst), [])
        lst.append(1)
        lst.extend([2, 3, 4])
        lst.insert(0, 0)
        self.assertEqual(lst[:], [0, 1, 2, 3, 4])
        self.assertEqual(lst[-1], 4)
        self.assertEqual(lst[1:3], [1, 2])
        self.assertEqual(lst[::2], [0, 2, 4])
        lst[0] = "zero"
        self.assertEqual(lst[0], "zero")
        self.assertEqual(lst.index(2), 2)
        self.assertEqual(lst.count(2), 1)
        self.assertIn(3, lst)
        self.assertEqual(lst.pop(), 4)
        self.assertEqual(lst.pop(0), "zero")
        lst.remove(2)
        del lst[0]
        self.assertEqual(lst, [3])
        self.assertEqual(repr(lst), "[3]")
        with self.assertRaises(IndexError):
            lst[10]
        with self.assertRaises(IndexError):
            lst[10] = 1
        with self.assertRaises(ValueError):
            lst.remove(99)
        with self.assertRaises(ValueError):
            lst.index(99)
        lst += [5, 6]
        self.assertEqual(list(reversed(lst)), [6, 5, 3])
        lst.clear()
        with self.assertRaises(IndexError):
            lst.pop()

    def test_value_and_array(self):
        v = self.c.value(self.name("v"), "i", 5)
        self.assertEqual(v.value, 5)
        v.value = 7
        self.assertEqual(v.get(), 7)
        self.assertEqual(v.add(3), 10)
        self.assertTrue(v.cas(10, 1))
        self.assertFalse(v.cas(10, 2))
        w = self.c.value(self.name("w"), "i", (1 << 62))
        with self.assertRaises(OverflowError if False else IndexError):
            w.add(1 << 62)                       # out_of_range, never a wrap
        with self.assertRaises(KeyError):
            self.c.value(self.name("missing")).value
        a = self.c.array(self.name("a"), "d", [1, 2, 3])
        self.assertEqual(len(a), 3)
        a[0] = 5
        self.assertEqual(list(a), [5.0, 2.0, 3.0])
        self.assertEqual(a[1:], [2.0, 3.0])
        self.assertEqual(a.add(1, 0.5), 2.5)
        a[0:2] = [7, 8]
        self.assertEqual(a[:2], [7.0, 8.0])
        with self.assertRaises(IndexError):
            a[3]
        with self.assertRaises(TypeError):
            a.append(1)
        b = self.c.array(self.name("b"), "i", 4)
        self.assertEqual(list(b), [0, 0, 0, 0])

    def test_queue(self):
        q = self.c.queue(self.name("q"), maxsize=2)
        self.assertTrue(q.empty())
        self.assertEqual(q.qsize(), 0)
        q.put({"a": 1})
        q.put_nowait([2])
        self.assertTrue(q.full())
        self.assertEqual(len(q), 2)
        with self.assertRaises(queue.Full):
            q.put(3, timeout=0.05)
        with self.assertRaises(queue.Full):
            q.put_nowait(3)
        self.assertEqual(q.get(), {"a": 1})
        self.assertEqual(q.get_nowait(), [2])
        with self.assertRaises(queue.Empty):
            q.get_nowait()
        t0 = time.monotonic()
        with self.assertRaises(queue.Empty):
            q.get(timeout=0.2)
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        with self.assertRaises(queue.Empty):
            q.get(block=False)
        # joinable: join waits for task_done
        q.task_done()
        q.task_done()
        q.join(timeout=5)
        q.put(1)
        with self.assertRaises(TimeoutError):
            q.join(timeout=0.1)
        q.get()
        q.task_done()
        q.join(timeout=5)
        with self.assertRaises(ValueError):
            q.task_done()

    def test_event(self):
        e = self.c.event(self.name("e"))
        self.assertFalse(e.is_set())
        self.assertFalse(e.wait(0.05))
        threading.Timer(0.1, e.set).start()
        self.assertTrue(e.wait(10 * SCALE))
        self.assertTrue(e.is_set())
        e.clear()
        self.assertFalse(e.is_set())

    def test_locks(self):
        lk = self.c.lock(self.name("lock"))
        self.assertFalse(lk.locked())
        with lk:
            self.assertTrue(lk.locked())
            got = []
            t = threading.Thread(target=lambda: got.append(lk.acquire(timeout=0.1)))
            t.start()
            t.join()
            self.assertEqual(got, [False])       # another thread is another owner
        self.assertFalse(lk.locked())
        with self.assertRaises(RuntimeError):
            lk.release()                        # conflict: not held
        rl = self.c.rlock(self.name("rlock"))
        with rl:
            with rl:
                self.assertTrue(rl.locked())
        self.assertFalse(rl.locked())
        s = self.c.semaphore(self.name("sem"), 2)
        self.assertTrue(s.acquire())
        self.assertTrue(s.acquire())
        self.assertFalse(s.acquire(block=False))
        self.assertEqual(s.get_value(), 0)
        s.release()
        s.release()
        self.assertEqual(s.get_value(), 2)

    def test_lock_abandoned_by_closed_connection(self):
        lk = self.c.lock(self.name("lock"))
        self.assertTrue(lk.acquire())
        lk.close()                              # its connection: what it held is released
        other = self.c.lock(self.name("lock"))
        self.assertTrue(other.acquire(timeout=5))
        other.release()

    def test_barrier(self):
        b = self.c.barrier(self.name("bar"), 2)
        self.assertEqual(b.parties, 2)
        self.assertEqual(b.n_waiting, 0)
        out = []
        t = threading.Thread(target=lambda: out.append(b.wait(10 * SCALE)))
        t.start()
        wait_for(lambda: b.n_waiting == 1, what="a waiter")
        out.append(b.wait(10 * SCALE))
        t.join()
        self.assertEqual(sorted(out), [0, 1])
        with self.assertRaises(threading.BrokenBarrierError):
            b.wait(0.05)
        self.assertTrue(b.broken)
        b.reset()
        self.assertFalse(b.broken)
        b.abort()
        with self.assertRaises(mpsup.BrokenBarrier):
            b.wait()

    def test_condition(self):
        cv = self.c.condition(self.name("cond"))
        try:
            with cv:
                self.assertFalse(cv.wait(0.05))
        except (mpsup.BadRequest, mpsup.UnknownCommand) as e:
            self.skipTest("the daemon has no condition type yet: %s" % e)
        flag = self.c.value(self.name("flag"), "i", 0)

        def notifier():
            with cv:
                flag.value = 1
                cv.notify_all()

        with cv:
            threading.Timer(0.1, notifier).start()
            self.assertTrue(cv.wait_for(lambda: flag.value == 1, timeout=10 * SCALE))

    def test_blocked_call_does_not_hold_up_other_threads(self):
        q = self.c.queue(self.name("q"))
        got = []
        t = threading.Thread(target=lambda: got.append(q.get()))
        t.start()
        wait_for(lambda: [o for o in self.c.objects() if o["name"] == q.name
                          and o["waiters"] == 1], what="the getter to block")
        d = self.c.dict(self.name("d"))
        t0 = time.monotonic()
        for i in range(200):
            d["k"] = i
            self.assertEqual(d["k"], i)
        self.assertLess(time.monotonic() - t0, 10 * SCALE)
        self.assertTrue(t.is_alive())           # still blocked, we were not
        q.put("x")
        t.join(10 * SCALE)
        self.assertEqual(got, ["x"])

    def test_many_threads_one_client(self):
        d = self.c.dict(self.name("d"))
        errs = []

        def work(k):
            try:
                for i in range(100):
                    d["t%d" % k] = i
                    if d["t%d" % k] != i:
                        errs.append((k, i))
                d.incr("sum", 1)
            except Exception as e:
                errs.append(e)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        self.assertEqual(d["sum"], 8)

    def test_fork_reconnects(self):
        d = self.c.dict(self.name("d"))
        d["parent"] = 0                          # the client has a pooled connection
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            ok = 1
            try:
                for i in range(300):
                    d["child"] = i
                    if d["child"] != i:
                        ok = 0
            except BaseException:
                ok = 0
            os.write(w, b"%d" % ok)
            os._exit(0)
        os.close(w)
        for i in range(300):
            d["parent"] = i
            self.assertEqual(d["parent"], i)
        self.assertEqual(os.read(r, 10), b"1")
        os.close(r)
        os.waitpid(pid, 0)
        self.assertEqual(d["child"], 299)

    def test_replies_read_from_one_buffer(self):
        # replies that arrive together (pipelined), one larger than a recv,
        # an empty params object, and no getpid system call per request
        d = self.c.dict(self.name("d"))
        resps = self.c.call_many([("dict.set", {"name": d.name, "key": "k%d" % i, "value": i})
                                  for i in range(600)] +
                                 [("dict.get", {"name": d.name, "key": "k%d" % i})
                                  for i in range(600)])
        self.assertEqual([r["result"] for r in resps[600:]], list(range(600)))
        big = "\u00e9x" * 60000
        d["big"] = big
        self.assertEqual(d["big"], big)
        self.assertEqual(self.c.call("ping"), self.c.ping())
        calls = []
        real = os.getpid
        os.getpid = lambda: calls.append(1) or real()
        try:
            for i in range(50):
                d["n"] = i
                self.assertEqual(d["n"], i)
        finally:
            os.getpid = real
        self.assertEqual(calls, [])
        with self.assertRaises(ValueError):
            d["nan"] = float("nan")
        self.assertEqual(d["n"], 49)

    def test_error_mapping(self):
        cases = [("not_found", KeyError), ("empty", queue.Empty), ("full", queue.Full),
                 ("timeout", TimeoutError), ("permission_denied", PermissionError),
                 ("out_of_range", IndexError), ("broken", threading.BrokenBarrierError),
                 ("bad_request", ValueError), ("wrong_type", TypeError),
                 ("conflict", RuntimeError), ("limit", OSError),
                 ("unavailable", ConnectionError), ("internal", mpsup.Error)]
        for code, builtin in cases:
            e = errors.from_response({"code": code, "message": "m"})
            self.assertIsInstance(e, builtin, code)
            self.assertIsInstance(e, mpsup.Error, code)
            self.assertEqual(e.code, code)
            self.assertEqual(str(e), "m")
        # and from the daemon itself
        self.c.dict(self.name("d"))["a"] = 1
        with self.assertRaises(TypeError) as cm:
            self.c.list(self.name("d")).append(1)
        self.assertEqual(cm.exception.code, "wrong_type")
        with self.assertRaises(NotImplementedError):
            self.c.call("no.such.command")
        with self.assertRaises(ValueError):
            self.c.call("dict.set", name=self.name("d"))
        with self.assertRaises(KeyError):
            self.c.call("proc.join", target="no-such-process")

    def test_run(self):
        p = self.c.run(["/bin/sh", "-c", "exit 3"], name=self.name("run"))
        self.assertEqual(p.join(20 * SCALE), 3)
        self.assertEqual(p.exitcode, 3)
        self.assertFalse(p.is_alive())
        p.forget()
        s = self.c.run(["/bin/sleep", "60"])
        self.assertTrue(s.is_alive())
        self.assertIsNone(s.exitcode)
        self.assertIsNone(s.join(0.05))
        s.terminate()
        self.assertEqual(s.join(20 * SCALE), -15)
        k = self.c.run(["/bin/sleep", "60"], env={"A": "1"}, cwd="/")
        k.kill()
        self.assertEqual(k.join(20 * SCALE), -9)
        self.assertTrue(any(r["name"] == k.name for r in self.c.status()))
        with self.assertRaises(ValueError):
            self.c.run([])

    def test_task_pool(self):
        self.assertTrue(any(p.get("pool") == "tw" or p.get("name") == "tw"
                            for p in self.c.pools()))
        tw = self.c.pool("tw")
        self.assertEqual(tw.map([1, 2, 3]), [2, 4, 6])
        t = tw.submit(21)
        self.assertEqual(t.result(20 * SCALE), 42)
        self.assertTrue(t.done())
        self.assertEqual(list(tw.imap(range(600))), [2 * i for i in range(600)])
        self.assertEqual(sorted(tw.imap_unordered(range(50))), [2 * i for i in range(50)])
        # a failed item raises at its turn, after the results before it
        it = tw.imap([1, 2, {"error": "bad three"}, 4])
        self.assertEqual([next(it), next(it)], [2, 4])
        with self.assertRaises(mpsup.Error) as cm:
            next(it)
        self.assertIn("bad three", str(cm.exception))
        # leaving a stream early closes its connection: the pool goes on
        it = tw.imap(range(10000))
        self.assertEqual(next(it), 0)
        it.close()
        self.assertEqual(tw.map([5]), [10])
        bad = tw.submit({"error": "no good"})
        with self.assertRaises(mpsup.Error) as cm:
            bad.result(20 * SCALE)
        self.assertIn("no good", str(cm.exception))
        self.assertIsInstance(bad.exception(), mpsup.Error)
        slow = tw.submit({"sleep": 30, "value": 1})
        with self.assertRaises(TimeoutError):
            slow.result(0.1)
        self.assertFalse(slow.done())

    def test_events(self):
        with self.c.events(["object"]) as ev:
            self.c.dict(self.name("evd"))["k"] = 1
            e = next(ev)
            self.assertEqual(e["event"], "object.changed")
            self.assertEqual(e["name"], self.name("evd"))

    def test_proxies_pickle_as_references(self):
        import pickle
        d = self.c.dict(self.name("pd"))
        d["x"] = 1
        d2 = pickle.loads(pickle.dumps(d))
        self.assertEqual(d2.name, d.name)
        self.assertEqual(d2["x"], 1)
        lk = pickle.loads(pickle.dumps(self.c.lock(self.name("pl"))))
        with lk:
            self.assertTrue(lk.locked())


class ReadmeTour(pyharness.DaemonClassCase):
    """README's Python lines of the tour, run after the mpctl line before
    them, with conf/demo.conf's pools."""
    config = open(os.path.join(pyharness.SRCDIR, "conf", "demo.conf")).read().split(
        "\n[pool:", 1)[1].join(["[pool:", ""])

    def test_python_lines(self):
        with open(os.path.join(pyharness.SRCDIR, "README.md")) as f:
            lines = [l.strip() for l in f if l.startswith("    python3 -c")]
        self.assertEqual(len(lines), 2, lines)
        self.d.mpctl("dict", "set", "cfg", "mode", '"fast"', check=0)
        for line, want in zip(lines, ["fast", "[2, 4, 6]"]):
            code = line.split("'")[1]
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=60 * SCALE)
            self.assertEqual(p.stdout.strip(), want, p.stderr)
            self.assertIn("# " + want, line)


class ScriptedPeer:
    """A Unix socket server that answers the client's requests as a script
    says: how the answer bytes arrive (split, together, never, or not at
    all) is what a real mpsupd cannot be made to do on demand."""

    def __init__(self, tmp, answers):
        self.path = os.path.join(tmp, "peer.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(8)
        # per request: a list of chunks (bytes, or an Event to wait for), or None
        self.answers = answers
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.answers:
            conn, _ = self.srv.accept()
            with conn:
                buf = b""
                while self.answers:
                    while b"\n" not in buf:
                        data = conn.recv(4096)
                        if not data:
                            break
                        buf += data
                    if b"\n" not in buf:
                        break
                    line, buf = buf.split(b"\n", 1)
                    self.requests.append(json.loads(line))
                    chunks = self.answers.pop(0)
                    if chunks is None:          # drop the connection unanswered
                        break
                    for i, chunk in enumerate(chunks):
                        if isinstance(chunk, threading.Event):
                            chunk.wait(60)          # until the test says
                            continue
                        if i:
                            time.sleep(0.05)    # a separate recv on the client
                        conn.sendall(chunk)

    def close(self):
        self.srv.close()


class RequestPathTest(pyharness.mpsuptest.unittest.TestCase):
    """The client's request path against a scripted peer: answers split
    across reads, several answers in one read, a closed connection, a
    client timeout; every request one line without an id."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mpsup-peer-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_answers_however_they_arrive(self):
        ok = b'{"ok":true,"result":%d}\n'
        peer = ScriptedPeer(self.tmp, [
            [b'{"ok":tr', b'ue,"result":1}\n'],             # split in two reads
            [ok % 2 + b'{"ok":true,', b'"result":3}\n'],     # one and a half
            [],                                              # (the half's rest)
            [b'{"ok":false,"error":{"code":"not_found","message":"m"}}\n'],
            None,                                            # closed unanswered
            [ok % 5]])
        c = mpsup.Client(peer.path)
        try:
            d = c.dict("d")
            self.assertEqual(d["a"], 1)
            self.assertEqual(d["b"], 2)
            self.assertEqual(c.call("ping"), 3)             # from the buffer
            self.assertEqual(d.get("c", 7), 7)
            with self.assertRaises(ConnectionError):
                d["x"] = 1
            self.assertEqual(c.value("v").value, 5)         # on a new connection
        finally:
            c.close()
            peer.close()
        self.assertEqual(peer.requests, [
            {"cmd": "dict.get", "name": "d", "key": "a"},
            {"cmd": "dict.get", "name": "d", "key": "b"},
            {"cmd": "ping"},
            {"cmd": "dict.get", "name": "d", "key": "c", "default": 7},
            {"cmd": "dict.set", "name": "d", "key": "x", "value": 1},
            {"cmd": "value.get", "name": "v"}])

    def test_client_timeout(self):
        # no answer within the client's timeout: TimeoutError, that
        # connection is dropped (its late answer never read as another's)
        peer = ScriptedPeer(self.tmp, [[], [b'{"ok":true,"result":"pong"}\n']])
        c = mpsup.Client(peer.path, timeout=0.2)
        try:
            with self.assertRaises(TimeoutError):
                c.ping()
            self.assertEqual(c.ping(), "pong")
        finally:
            c.close()
            peer.close()

    def test_close_with_a_call_in_flight(self):
        # close() while a call waits: the call ends normally, its connection
        # is closed (not kept), and the client refuses further calls
        gate = threading.Event()
        peer = ScriptedPeer(self.tmp, [[gate, b'{"ok":true,"result":1}\n']])
        c = mpsup.Client(peer.path)
        got = []
        t = threading.Thread(target=lambda: got.append(c.call("queue.get", _blocking=True)))
        try:
            t.start()
            wait_for(lambda: peer.requests, 10 * SCALE)
            c.close()
            gate.set()
            t.join(10 * SCALE)
            self.assertEqual(got, [1])
            self.assertEqual(c._idle, [])
            with self.assertRaises(ValueError):
                c.ping()
        finally:
            gate.set()
            peer.close()


if __name__ == "__main__":
    pyharness.main()
