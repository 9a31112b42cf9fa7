"""End-to-end tests of the daemon core: envelope, framing, hostile input,
limits, the control socket and the configuration."""
import json
import os
import signal
import socket
import stat
import subprocess
import time

import mpsuptest
from mpsuptest import Client, Daemon, DaemonTestCase, wait_for, MPSUPD


class Envelope(DaemonTestCase):
    def still_answers(self):
        with self.d.client() as c:
            self.assertEqual(c.ok("ping"), "pong")

    def test_hello(self):
        r = self.d.ok("hello")
        self.assertEqual(r["server"], "mpsupd")
        self.assertEqual(r["protocol"], 1)
        self.assertEqual(r["pid"], self.d.pid())
        self.assertIn("meta", r["capabilities"])

    def test_hello_through_mpctl(self):
        p = self.d.mpctl("--json", "hello", check=0)
        self.assertEqual(json.loads(p.stdout)["server"], "mpsupd")

    def test_pipelining_three_in_one_write(self):
        with self.d.client() as c:
            c.send_raw(b'{"id":"a","cmd":"ping"}\n{"id":2,"cmd":"hello"}\n'
                       b'{"id":[3],"cmd":"daemon.info"}\n')
            ids = [c.recv()["id"] for _ in range(3)]
            self.assertEqual(ids, ["a", 2, [3]])

    def test_integer_ids_and_results_exact(self):
        with self.d.client() as c:
            for n in (0, 7, -1, 10, -10, 123456789, 2**63 - 1, -2**63):
                c.send_raw(b'{"id":%d,"cmd":"ping"}\n' % n)
                self.assertTrue(c.recv_line().startswith(b'{"id":%d,"ok":true' % n), n)
                if c.call("value.set", name="n", value=n)["ok"]:
                    c.send_raw(b'{"cmd":"value.get","name":"n"}\n')
                    self.assertTrue(c.recv_line().endswith(b'"result":%d}' % n), n)

    def test_unknown_command_keeps_id(self):
        with self.d.client() as c:
            r = c.call("no.such.thing")
            self.assertFalse(r["ok"])
            self.assertEqual(r["error"]["code"], "unknown_command")
            self.assertEqual(r["id"], 1)
            self.assertEqual(c.ok("ping"), "pong")

    def test_unknown_parameter_refused(self):
        self.assertEqual(self.d.err("ping", bogus=1), "bad_request")

    def test_bad_input_keeps_connection(self):
        cases = [b"this is not json", b"[1,2,3]", b'"just a string"', b"42",
                 b'{"id":7}', b'{"cmd":5}', b'{"cmd":"ping"', b"\xff\xfe\x00\x01binary\x80",
                 b'{"cmd":"ping","id":1,"id":2}']
        with self.d.client() as c:
            for bad in cases:
                c.send_raw(bad + b"\n")
                r = c.recv()
                self.assertFalse(r["ok"], bad)
                self.assertEqual(r["error"]["code"], "bad_request", bad)
                self.assertEqual(c.ok("ping"), "pong")
        self.still_answers()

    def test_missing_cmd_returns_id(self):
        with self.d.client() as c:
            c.send_raw(b'{"id":"x"}\n')
            r = c.recv()
            self.assertEqual(r["id"], "x")
            self.assertEqual(r["error"]["code"], "bad_request")

    def test_deep_nesting(self):
        with self.d.client() as c:
            c.send_raw(b"[" * 10000 + b"\n")
            r = c.recv()
            self.assertEqual(r["error"]["code"], "too_large")
            self.assertIn("deep", r["error"]["message"])
            c.send_raw(b'{"cmd":"ping","x":' + b"[" * 100 + b"]" * 100 + b"}\n")
            self.assertEqual(c.recv()["error"]["code"], "too_large")
            self.assertEqual(c.ok("ping"), "pong")
        self.still_answers()

    def test_too_large_line_closes(self):
        with self.d.client() as c:
            try:
                c.send_raw(b'{"cmd":"ping","pad":"' + b"x" * (3 * 1024 * 1024) + b'"}\n')
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.recv()
            self.assertEqual(r["error"]["code"], "too_large")
            self.assertEqual(c.recv_line(), b"")  # closed
        self.still_answers()

    def test_half_open_connections_do_not_block_others(self):
        held = []
        try:
            for i in range(200):
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.d.socket)
                s.sendall(b'{"cmd":"ping","half":"' + b"y" * 1000)
                held.append(s)
            t0 = time.monotonic()
            self.still_answers()
            self.assertLess(time.monotonic() - t0, 5 * mpsuptest.SCALE)
            info = self.d.ok("daemon.info")
            self.assertGreaterEqual(info["clients"], 200)
        finally:
            for s in held:
                s.close()
        wait_for(lambda: self.d.ok("daemon.info")["clients"] == 1, what="clients to go")

    def test_pipelined_big_answers_all_come(self):
        # Output backs up past max_output_bytes/2 many times over while
        # the rest of the requests wait in the input buffer.
        with self.d.client() as c:
            if not c.call("dict.set", name="big", key="k", value="x" * 200000)["ok"]:
                self.skipTest("no shared state")
            n = 200
            c.send_raw(b"".join(b'{"id":%d,"cmd":"dict.get","name":"big","key":"k"}\n' % i
                                for i in range(n)))
            for i in range(n):
                r = c.recv()
                self.assertEqual(r["id"], i)
                self.assertEqual(len(r["result"]), 200000)
        self.still_answers()

    def test_pipelined_answers_keep_their_order_across_sizes(self):
        # One batch mixes answers that fit the output stage, answers larger
        # than it, and more small ones than it holds: every answer comes,
        # in the order of the requests.
        with self.d.client() as c:
            if not c.call("dict.set", name="mix", key="big", value="y" * 70000)["ok"]:
                self.skipTest("no shared state")
            c.call("dict.set", name="mix", key="small", value="s")
            keys = []
            for i in range(3000):
                keys.append("big" if i % 500 == 250 else "small")
            c.send_raw(b"".join(b'{"id":%d,"cmd":"dict.get","name":"mix","key":"%s"}\n'
                                % (i, k.encode()) for i, k in enumerate(keys)))
            for i, k in enumerate(keys):
                r = c.recv()
                self.assertEqual(r["id"], i)
                self.assertEqual(r["result"], "y" * 70000 if k == "big" else "s")
        self.still_answers()

    def test_half_close_still_answered(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.d.socket)
        s.sendall(b'{"id":1,"cmd":"ping"}\n{"id":2,"cmd":"ping"}\n')
        s.shutdown(socket.SHUT_WR)
        data = b""
        s.settimeout(10)
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        lines = [json.loads(l) for l in data.splitlines()]
        self.assertEqual([l["id"] for l in lines], [1, 2])

    def test_many_pipelined_without_reading(self):
        # A client that writes far more than it reads is slowed down, never
        # lets the daemon's memory grow without bound, and gets every answer.
        n = 20000
        with self.d.client() as c:
            payload = b'{"cmd":"ping"}\n' * n
            import threading
            t = threading.Thread(target=c.send_raw, args=(payload,))
            t.start()
            got = 0
            while got < n:
                r = c.recv()
                self.assertTrue(r["ok"])
                got += 1
            t.join()

    def test_shutdown_command(self):
        with self.d.client() as c:
            self.assertTrue(c.ok("daemon.shutdown")["shutting_down"])
        self.d.proc.wait(timeout=20)
        self.assertEqual(self.d.proc.returncode, 0)
        self.assertFalse(os.path.exists(self.d.socket))


class Limits(DaemonTestCase):
    main_config = "max_clients = 3\nmax_request_bytes = 4096\nmax_json_depth = 8\n"

    def test_max_clients(self):
        held = [self.d.client() for _ in range(3)]
        try:
            for c in held:
                self.assertEqual(c.ok("ping"), "pong")
            extra = Client(self.d.socket)
            r = extra.recv()
            self.assertEqual(r["error"]["code"], "limit")
            extra.close()
        finally:
            for c in held:
                c.close()

        def one_client():
            try:
                return self.d.ok("daemon.info")["clients"] == 1
            except AssertionError:  # still refused: the others are not gone yet
                return False
        wait_for(one_client, what="clients to go")

    def test_max_subscribers(self):
        self.d.stop()
        self.d.write_config(main_extra="max_subscribers = 2\n")
        self.d.start()
        subs = [self.d.client() for _ in range(2)]
        for s in subs:
            s.send("events.subscribe")
            self.assertTrue(s.recv()["ok"])
        self.assertEqual(self.d.err("events.subscribe"), "limit")
        subs[0].close()
        wait_for(lambda: self.d.ok("daemon.info")["subscribers"] == 1, what="one left")
        with self.d.client() as s:
            s.send("events.subscribe")
            self.assertTrue(s.recv()["ok"])
        subs[1].close()

    def test_configured_request_size(self):
        with self.d.client() as c:
            c.send_raw(b'{"cmd":"ping","p":"' + b"z" * 5000 + b'"}\n')
            self.assertEqual(c.recv()["error"]["code"], "too_large")

    def test_configured_depth(self):
        with self.d.client() as c:
            c.send_raw(b'{"cmd":"ping","x":[[[[[[[[[1]]]]]]]]]}\n')
            self.assertEqual(c.recv()["error"]["code"], "too_large")
            c.send_raw(b'{"cmd":"ping","x":[[[[[[1]]]]]]}\n')
            self.assertEqual(c.recv()["error"]["code"], "bad_request")  # depth ok, unknown key


class Socket(DaemonTestCase):
    def test_mode_0600_by_default(self):
        st = os.lstat(self.d.socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def test_second_daemon_refused(self):
        p = subprocess.run([MPSUPD, "-c", self.d.conf], capture_output=True, text=True,
                           timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("already running", p.stderr)
        self.assertEqual(self.d.ok("ping"), "pong")

    def test_sigterm_exits_cleanly(self):
        self.d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.d.proc.wait(timeout=20), 0)
        self.assertFalse(os.path.exists(self.d.socket))

    def test_repeated_sigterm_still_exits_cleanly(self):
        # An impatient service manager or operator: SIGTERM again and again
        # until the daemon is gone, through the whole teardown (made longer
        # by state to free).
        with self.d.client() as c:
            for i in range(200):
                c.send("dict.update", name="d%d" % i,
                       items={"k%d" % j: [j] for j in range(500)})
            for i in range(200):
                self.assertTrue(c.recv()["ok"])
        deadline = time.monotonic() + 20 * mpsuptest.SCALE
        while self.d.proc.poll() is None and time.monotonic() < deadline:
            try:
                self.d.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                break
        self.assertEqual(self.d.proc.wait(timeout=20), 0)

    def test_sighup_with_bad_config_keeps_running(self):
        with open(self.d.conf, "a") as f:
            f.write("bogus_key = 1\n")
        self.d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in self.d.read_log(), what="reload refusal")
        self.assertEqual(self.d.ok("ping"), "pong")


class SocketPath(mpsuptest.unittest.TestCase):
    def run_daemon_expect_failure(self, d, text):
        p = subprocess.run([MPSUPD, "-c", d.conf], capture_output=True, text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(text, p.stderr)

    def test_regular_file_refused(self):
        d = Daemon()
        try:
            with open(d.socket, "w") as f:
                f.write("precious")
            self.run_daemon_expect_failure(d, "not a socket")
            with open(d.socket) as f:
                self.assertEqual(f.read(), "precious")
        finally:
            d.cleanup()

    def test_symlink_refused(self):
        d = Daemon()
        try:
            target = os.path.join(d.dir, "target")
            os.symlink(target, d.socket)
            self.run_daemon_expect_failure(d, "symbolic link")
            self.assertFalse(os.path.exists(target))
        finally:
            d.cleanup()

    def test_stale_socket_replaced(self):
        d = Daemon()
        try:
            s = socket.socket(socket.AF_UNIX)
            s.bind(d.socket)
            s.close()  # bound, nobody listening: stale
            d.start()
            self.assertEqual(d.ok("ping"), "pong")
        finally:
            d.cleanup()

    def test_socket_option_overrides_config(self):
        d = Daemon()
        try:
            other = os.path.join(d.dir, "other.sock")
            d.args = ["-s", other]
            d.socket = other
            d.start()
            self.assertEqual(d.ok("ping"), "pong")
        finally:
            d.cleanup()


class Config(mpsuptest.unittest.TestCase):
    def check(self, text):
        d = Daemon(config_extra=text)
        try:
            return subprocess.run([MPSUPD, "--check-config", d.conf], capture_output=True,
                                  text=True, timeout=20), d.conf
        finally:
            d.cleanup()

    def test_check_config_ok(self):
        p, _ = self.check("[pool:web]\ncommand = sleep 100\nprocesses = 2\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok", p.stdout)

    def test_check_config_names_file_line_key(self):
        p, path = self.check("[pool:web]\ncommand = sleep 100\nprocesses = lots\n")
        self.assertNotEqual(p.returncode, 0)
        # [mpsupd], socket, log_level, "", [pool:web], command, processes -> line 7
        self.assertIn("%s:7:" % path, p.stderr)
        self.assertIn("processes", p.stderr)

    def test_section_error_names_the_header_line(self):
        p, path = self.check("[pool:web]\nprocesses = 2\n")
        self.assertNotEqual(p.returncode, 0)
        # the header [pool:web] is line 5 (see above); the key is named
        self.assertIn("%s:5: [pool:web]" % path, p.stderr)
        self.assertIn("command is missing", p.stderr)

    def test_demo_config_is_valid(self):
        demo = os.path.join(mpsuptest.SRCDIR, "conf", "demo.conf")
        p = subprocess.run([MPSUPD, "--check-config", demo], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        example = os.path.join(mpsuptest.SRCDIR, "conf", "mpsupd.conf.example")
        p = subprocess.run([MPSUPD, "--check-config", example], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_reload_invalid_answers_error(self):
        d = Daemon()
        try:
            d.start()
            with open(d.conf, "a") as f:
                f.write("[pool:x]\nprocesses = 1\n")  # no command
            with d.client() as c:
                r = c.call("daemon.reload")
                self.assertFalse(r["ok"])
                self.assertIn("command", r["error"]["message"])
                self.assertIn(d.conf, r["error"]["message"])
                self.assertEqual(c.ok("ping"), "pong")
        finally:
            d.cleanup()

    def test_version_and_help(self):
        p = subprocess.run([MPSUPD, "--version"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertTrue(p.stdout.startswith("mpsupd "))
        p = subprocess.run([MPSUPD, "--bogus"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    mpsuptest.main()
