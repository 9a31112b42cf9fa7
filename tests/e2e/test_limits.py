"""End-to-end tests of the daemon's global bounds: unsent output (a
connection stops taking requests once its answers back up, and
max_output_total bounds all of them), shared-state data (max_memory), and
the rule that every request line gets an answer, a blank one too."""
import json
import os
import shutil
import socket
import subprocess
import sys
import unittest

import mpsuptest
from mpsuptest import Client, Daemon, DaemonTestCase, wait_for, DEFAULT_DEADLINE


def info(d):
    return d.ok("daemon.info")


def memory(d):
    """daemon.info's memory figures ({} before they existed)."""
    return info(d).get("memory", {})


def slow_reader(d):
    """A client that reads nothing: a small receive buffer, so the kernel
    holds little and the daemon's own output buffer takes the rest."""
    c = Client.__new__(Client)
    c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sock.settimeout(DEFAULT_DEADLINE)
    c.sock.connect(d.socket)
    c.buf = b""
    c.next_id = 1
    return c


class EmptyRequests(DaemonTestCase):
    """A blank line is a request like any other: it gets bad_request and
    the connection stays usable (a client counting answers must not hang)."""

    def test_blank_lines_answered(self):
        with self.d.client() as c:
            for line in (b"\n", b"   \n", b"\r\n", b" \t \r\n"):
                c.send_raw(line)
                self.assertEqual(c.recv(), {"id": None, "ok": False,
                                            "error": {"code": "bad_request",
                                                      "message": "empty request"}}, line)
            # Pipelined with real requests: one answer each, in order.
            c.send_raw(b'{"id": 1, "cmd": "ping"}\n\n{"id": 2, "cmd": "ping"}\n')
            self.assertEqual(c.recv()["id"], 1)
            self.assertEqual(c.recv()["error"]["message"], "empty request")
            self.assertEqual(c.recv()["id"], 2)
            self.assertEqual(c.ok("ping"), "pong")


class OutputAmplification(DaemonTestCase):
    """Clients that pipeline large answers without reading them hold about
    one answer each in the daemon, not max_output_bytes each."""
    CLIENTS = 20
    GETS = 12
    VALUE = 512 * 1024

    def test_pipelined_large_answers_do_not_grow_memory(self):
        self.d.ok("value.set", name="big", value="x" * self.VALUE)
        self.d.ok("value.set", name="done", value=0)
        rss_before = self.d.rss_kb()
        line = (json.dumps({"cmd": "obj.get", "name": "big"}) + "\n") * self.GETS
        line += json.dumps({"cmd": "value.add", "name": "done", "by": 1}) + "\n"
        clients = [slow_reader(self.d) for _ in range(self.CLIENTS)]
        for c in clients:
            c.send_raw(line.encode())

        # Before: every connection ran all its requests (done reaches the
        # number of clients); now each stops after its first answer.
        def settled():
            return (self.d.ok("value.get", name="done") == self.CLIENTS or
                    memory(self.d).get("paused_clients") == self.CLIENTS)
        wait_for(settled, what="every client answered or paused")
        grown = self.d.rss_kb() - rss_before
        # 20 x 12 x 512 KiB = 120 MiB when every answer is queued.
        self.assertLess(grown, 40 * 1024, "RSS grew by %d KiB" % grown)
        self.assertEqual(self.d.ok("value.get", name="done"), 0)
        self.assertGreater(memory(self.d)["output_bytes"], 0)
        # Once read, a paused client gets the rest of its answers.
        c = clients.pop()
        for _ in range(self.GETS):
            self.assertEqual(len(c.recv()["result"]), self.VALUE)
        self.assertEqual(c.recv()["result"], 1)
        for c in clients + [c]:
            c.close()
        wait_for(lambda: memory(self.d)["output_bytes"] == 0, what="the output freed")
        self.assertEqual(self.d.ok("ping"), "pong")


class OutputBudget(DaemonTestCase):
    """Past max_output_total, the client holding the most unsent output
    while not reading is dropped, until the total is back under."""
    main_config = "max_output_total = 2M\n"

    def test_worst_reader_dropped(self):
        self.d.ok("value.set", name="big", value="x" * (900 * 1024))
        self.assertEqual(memory(self.d).get("max_output_total"), 2 * 1024 * 1024)
        line = (json.dumps({"cmd": "obj.get", "name": "big"}) + "\n") * 2
        clients = [slow_reader(self.d) for _ in range(8)]
        for c in clients:
            c.send_raw(line.encode())
        wait_for(lambda: "passes max_output_total (2097152): dropping client" in
                 self.d.read_log(), what="a client dropped")
        wait_for(lambda: memory(self.d)["output_bytes"] <= 2 * 1024 * 1024,
                 what="unsent output back under max_output_total")
        # The dropped ones see the end of their stream; the others are served.
        dropped = 0
        for c in clients:
            data = b""
            while data.count(b"\n") < 2:
                chunk = c.sock.recv(1 << 20)
                if not chunk:
                    dropped += 1
                    break
                data += chunk
            c.close()
        self.assertGreater(dropped, 0)
        self.assertLess(dropped, len(clients))
        self.assertEqual(self.d.ok("ping"), "pong")


class MaxMemory(DaemonTestCase):
    """max_memory bounds the bytes of shared-state data: a mutation that
    adds data past it gets `limit` and changes nothing; reads and deletes
    keep working, and deleting gives the bytes back exactly."""
    main_config = "max_memory = 64K\n"

    def fill(self):
        """dict.set 4 KB values until refused: the keys stored, the refusal."""
        with self.d.client() as c:
            for i in range(100):
                r = c.call("dict.set", name="d", key="k%d" % i, value="v" * 4000)
                if not r["ok"]:
                    return i, r["error"]
        self.fail("max_memory never refused a mutation")

    def test_limit_then_delete(self):
        m = memory(self.d)
        self.assertEqual((m.get("state_bytes"), m.get("max_memory")), (0, 65536))
        n, err = self.fill()
        self.assertEqual(err["code"], "limit")
        self.assertIn("max_memory (65536 bytes) reached", err["message"])
        self.assertTrue(10 <= n <= 16, n)
        used = memory(self.d)["state_bytes"]
        self.assertLessEqual(used, 65536)
        # Nothing changed: the key is not there, no object was created.
        self.assertFalse(self.d.ok("dict.has", name="d", key="k%d" % n))
        self.assertEqual(self.d.err("list.append", name="l", value="w" * 4000), "limit")
        self.assertEqual([o["name"] for o in self.d.ok("obj.list")], ["d"])
        # An array's size costs more than its text: refused all the same.
        with self.d.client() as c:
            r = c.call("obj.create", name="a", type="array", typecode="d", size=4096)
        self.assertEqual(r["error"]["code"], "limit", r)
        self.assertNotIn("a", [o["name"] for o in self.d.ok("obj.list")])
        self.assertEqual(memory(self.d)["state_bytes"], used)
        # Reads, deletes and the rest work.
        self.assertEqual(len(self.d.ok("dict.get", name="d", key="k0")), 4000)
        self.assertEqual(len(self.d.ok("obj.get", name="d")), n)
        self.assertEqual(self.d.ok("dict.pop", name="d", key="k0"), "v" * 4000)
        self.d.ok("dict.del", name="d", key="k1")
        self.assertLess(memory(self.d)["state_bytes"], used - 8000)
        self.d.ok("dict.set", name="d", key="again", value="v" * 4000)
        self.d.ok("list.append", name="l", value="w" * 1000)
        self.d.ok("queue.put", name="q", item="i" * 1000)
        self.assertEqual(self.d.ok("queue.get", name="q"), "i" * 1000)
        # Deleting everything brings the count back to zero, exactly.
        for name in ("d", "l", "q"):
            self.d.ok("obj.delete", name=name)
        self.assertEqual(memory(self.d)["state_bytes"], 0)
        n2, _ = self.fill()
        self.assertEqual(n2, n)

    def test_every_type_gives_back_what_it_took(self):
        steps = [("dict.update", {"name": "d", "items": {"a": [1, 2, {"x": "y"}], "b": None}}),
                 ("dict.set", {"name": "d", "key": "a", "value": "short"}),
                 ("dict.setdefault", {"name": "d", "key": "c", "value": {"k": [1]}}),
                 ("dict.incr", {"name": "d", "key": "n", "by": 2}),
                 ("dict.cas", {"name": "d", "key": "b", "expect": None, "value": "s" * 50}),
                 ("list.extend", {"name": "l", "values": ["a", "bb", [1, 2]]}),
                 ("list.insert", {"name": "l", "index": 0, "value": {"z": 1}}),
                 ("list.set", {"name": "l", "index": 1, "value": "x" * 30}),
                 ("list.pop", {"name": "l"}),
                 ("list.remove", {"name": "l", "value": "bb"}),
                 ("value.set", {"name": "v", "value": {"deep": ["a" * 100]}}),
                 ("value.cas", {"name": "v", "expect": {"deep": ["a" * 100]}, "value": 1.5}),
                 ("queue.put", {"name": "q", "item": "x" * 100}),
                 ("obj.create", {"name": "a", "type": "array", "typecode": "i", "size": 10})]
        for cmd, params in steps:
            self.d.ok(cmd, **params)
        self.assertGreater(memory(self.d)["state_bytes"], 0)
        self.d.ok("dict.clear", name="d")
        self.d.ok("list.clear", name="l")
        for name in ("d", "l", "v", "q", "a"):
            self.d.ok("obj.delete", name=name)
        self.assertEqual(memory(self.d)["state_bytes"], 0)


class MaxMemoryAndPersistedState(unittest.TestCase):
    """Persisted state loads whatever max_memory says (the log is replayed
    through the same ops); the daemon starts, says so, and refuses growth."""

    def test_state_over_max_memory_still_loads(self):
        d = Daemon()
        state = os.path.join(d.dir, "state")
        try:
            d.write_config("", "state_file = %s\nmax_memory = 0\n" % state)
            d.start()
            for i in range(30):
                d.ok("dict.set", name="d", key="k%d" % i, value="v" * 4000)
            self.assertEqual(d.stop(), 0)
            d.write_config("", "state_file = %s\nmax_memory = 64K\n" % state)
            d.start()
            self.assertEqual(len(d.ok("obj.get", name="d")), 30)
            self.assertGreater(memory(d)["state_bytes"], 65536)
            self.assertIn("the persisted state holds more than max_memory (65536 bytes): "
                          "starting anyway", d.read_log())
            self.assertEqual(d.err("dict.set", name="d", key="new", value=1), "limit")
            d.ok("dict.del", name="d", key="k0")
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


class LimitKeys(unittest.TestCase):
    """max_memory and max_output_total are checked like the other sizes."""

    def check(self, line):
        d = Daemon("", line)
        try:
            return subprocess.run([mpsuptest.MPSUPD, "--check-config", d.conf],
                                  capture_output=True, text=True)
        finally:
            shutil.rmtree(d.dir, ignore_errors=True)

    def test_values(self):
        for line in ("max_memory = 0", "max_memory = 1G", "max_output_total = 64K"):
            p = self.check(line + "\n")
            self.assertEqual(p.returncode, 0, (line, p.stderr))
        for line, why in (("max_memory = -1", "max_memory: expected a size"),
                          ("max_memory = lots", "max_memory: expected a size"),
                          ("max_output_total = 1K", "max_output_total: expected a size of at "
                           "least 64K")):
            p = self.check(line + "\n")
            self.assertNotEqual(p.returncode, 0, line)
            self.assertIn(why, p.stderr)


if __name__ == "__main__":
    mpsuptest.main()
