"""End-to-end tests of the metrics (DESIGN.md §11, docs/metrics.md):
daemon.metrics and mpctl metrics answer the Prometheus text format, which
promtool accepts, and the numbers follow known actions (starts, restarts,
tasks, requests, fsyncs); metrics_listen serves GET /metrics over HTTP on a
Unix socket or a loopback address, read-only, bounded and timed out."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

import mpsuptest
from mpsuptest import Daemon, DaemonTestCase, MPSUPD, SRCDIR, wait_for

PY = sys.executable
WORKER = "%s %s" % (PY, os.path.join(SRCDIR, "tests", "e2e", "task_worker.py"))
PROMTOOL = shutil.which("promtool")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, metric, **labels):
    return samples.get((metric, frozenset(labels.items())))


def promtool_check(test, text):
    if not PROMTOOL:
        test.skipTest("promtool not installed (Debian package prometheus)")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    test.assertEqual(p.returncode, 0, "promtool: %s%s\n%s" % (p.stdout, p.stderr, text[:3000]))


def http_get(sock_path, request, timeout=10):
    """Send a raw HTTP request on the Unix socket; (status, headers, body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout * mpsuptest.SCALE)
    s.connect(sock_path)
    try:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    return status, lines[1:], body


class MetricsNumbersTest(DaemonTestCase):
    def setUp(self):
        self.d = Daemon()
        # persisted state (fsyncs counted), in the daemon's own temp dir
        self.d.write_config(main_extra="state_file = %s\nstate_sync = always\n"
                            % os.path.join(self.d.dir, "state"))
        self.d.start()

    def metrics(self):
        text = self.d.ok("daemon.metrics")
        self.assertIsInstance(text, str)
        return text

    def test_numbers_after_known_actions(self):
        self.d.ok("pool.add", pool="web", command="sleep 1000", processes=2, start_secs=0)
        self.d.ok("pool.add", pool="t", command=WORKER, processes=1, mode="task",
                  start_secs=0)
        wait_for(lambda: all(r["state"] == "running" for r in self.d.ok("status")),
                 what="every process running")
        self.d.ok("proc.restart", target="web")
        self.d.ok("proc.restart", target="web:1")
        wait_for(lambda: all(r["state"] == "running" for r in self.d.ok("status", target="web")),
                 what="web running again")
        res = self.d.ok("pool.map", pool="t", items=[1, 2, 3])
        self.assertEqual(res["results"], [2, 4, 6])
        self.d.err("pool.map", pool="t", items=[{"error": "no"}])
        for _ in range(3):
            self.d.ok("dict.set", name="d", key="k", value=1)
        self.d.err("dict.get", name="nothere", key="k")
        text = self.metrics()
        s = parse(text)
        self.assertEqual(value(s, "mpsup_processes", pool="web", state="running"), 2)
        self.assertEqual(value(s, "mpsup_processes", pool="web", state="fatal"), 0)
        self.assertEqual(value(s, "mpsup_pool_starts_total", pool="web"), 5)
        self.assertEqual(value(s, "mpsup_pool_restarts_total", pool="web"), 3)
        self.assertEqual(value(s, "mpsup_process_restarts_total", pool="web", name="web:0"), 1)
        self.assertEqual(value(s, "mpsup_process_restarts_total", pool="web", name="web:1"), 2)
        self.assertEqual(value(s, "mpsup_process_up", pool="web", name="web:1"), 1)
        self.assertIsNotNone(value(s, "mpsup_process_resident_memory_bytes", pool="web",
                                   name="web:0"))
        self.assertEqual(value(s, "mpsup_tasks_total", pool="t", outcome="ok"), 3)
        self.assertEqual(value(s, "mpsup_tasks_total", pool="t", outcome="internal"), 1)
        self.assertEqual(value(s, "mpsup_task_duration_seconds_count", pool="t"), 4)
        self.assertEqual(value(s, "mpsup_task_duration_seconds_bucket", pool="t", le="+Inf"), 4)
        self.assertEqual(value(s, "mpsup_requests_total", command="dict.set", code="ok"), 3)
        self.assertEqual(value(s, "mpsup_requests_total", command="dict.get",
                               code="not_found"), 1)
        self.assertEqual(value(s, "mpsup_requests_total", command="pool.map", code="ok"), 1)
        self.assertEqual(value(s, "mpsup_objects", type="dict"), 1)
        self.assertEqual(value(s, "mpsup_object_items", type="dict"), 1)
        self.assertGreaterEqual(value(s, "mpsup_fsyncs_total"), 3)
        self.assertEqual(value(s, "mpsup_fsync_duration_seconds_count"),
                         value(s, "mpsup_fsyncs_total"))
        self.assertGreaterEqual(value(s, "mpsup_clients"), 1)
        promtool_check(self, text)

    def test_usage_cached_and_refreshed(self):
        """A scrape reads at most 200 processes' usage itself; the refresh
        after it reads the rest, and a busy process's CPU time moves on."""
        self.d.ok("pool.add", pool="many", command="sleep 1000", processes=250, start_secs=0)
        self.d.ok("pool.add", pool="busy", command=PY + " -c 'while True: pass'",
                  processes=1, start_secs=0)
        wait_for(lambda: sum(r["state"] == "running" for r in self.d.ok("status")) == 251,
                 what="251 processes running")

        def usage_lines():
            s = parse(self.metrics())
            return s, [k for k in s if k[0] == "mpsup_process_cpu_seconds_total"]

        s, first = usage_lines()
        self.assertLessEqual(len(first), 200)
        wait_for(lambda: len(usage_lines()[1]) == 251, what="every process's usage read")
        s, _ = usage_lines()
        cpu0 = value(s, "mpsup_process_cpu_seconds_total", pool="busy", name="busy:0")
        wait_for(lambda: value(usage_lines()[0], "mpsup_process_cpu_seconds_total",
                               pool="busy", name="busy:0") > cpu0,
                 what="the busy process's CPU time read again")

    def test_fatal_pool_and_oneshots(self):
        self.d.ok("pool.add", pool="bad", command="false", processes=2, start_secs=1,
                  start_retries=1)
        wait_for(lambda: all(r["state"] == "fatal" for r in self.d.ok("status", target="bad")),
                 what="bad fatal")
        self.d.ok("proc.run", argv=["true"], name="once")
        wait_for(lambda: self.d.ok("status", target="once")[0]["state"] == "exited",
                 what="once exited")
        s = parse(self.metrics())
        self.assertEqual(value(s, "mpsup_processes", pool="bad", state="fatal"), 2)
        self.assertEqual(value(s, "mpsup_processes", state="exited"), 1)
        self.assertEqual(value(s, "mpsup_process_up", name="once"), 0)
        self.assertEqual(value(s, "mpsup_process_up", pool="bad", name="bad:0"), 0)

    def test_mpctl_metrics(self):
        p = self.d.mpctl("metrics", check=0)
        self.assertIn("# TYPE mpsup_requests_total counter\n", p.stdout)
        promtool_check(self, p.stdout)


class MetricsHttpTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.path = os.path.join(self.d.dir, "metrics.sock")
        self.d.write_config(main_extra="metrics_listen = unix:%s\n" % self.path)
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def test_get_metrics(self):
        status, headers, body = http_get(self.path, b"GET /metrics HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertIn("content-type: text/plain; version=0.0.4; charset=utf-8",
                      [h.lower() for h in headers])
        promtool_check(self, body.decode())
        self.assertTrue(os.path.exists(self.path))
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_read_only(self):
        self.assertEqual(http_get(self.path, b"POST /metrics HTTP/1.0\r\n"
                                  b"Content-Length: 0\r\n\r\n")[0], 405)
        self.assertEqual(http_get(self.path, b"DELETE /metrics HTTP/1.0\r\n\r\n")[0], 405)
        self.assertEqual(http_get(self.path, b"GET / HTTP/1.0\r\n\r\n")[0], 404)
        self.assertEqual(http_get(self.path, b"GET /metricsx HTTP/1.0\r\n\r\n")[0], 404)
        self.assertEqual(http_get(self.path, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")[0], 200)

    def test_bounded_request(self):
        big = b"GET /metrics HTTP/1.0\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        try:
            status = http_get(self.path, big)[0]
        except (ConnectionResetError, BrokenPipeError, IndexError, ValueError):
            status = None  # dropped without an answer: also refused
        self.assertNotEqual(status, 200)
        body = (b"GET /metrics HTTP/1.0\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
        try:
            status = http_get(self.path, body)[0]
        except (ConnectionResetError, BrokenPipeError, IndexError, ValueError):
            status = None
        self.assertNotEqual(status, 200)
        self.assertEqual(http_get(self.path, b"GET /metrics HTTP/1.0\r\n\r\n")[0], 200)

    def test_connection_limit_and_idle_timeout(self):
        idle = []
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
            idle.append(s)
        # the daemon takes them one by one: wait until all 16 are accepted
        # (a 17th is then left in the backlog, unanswered)
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.connect(self.path)
        extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        extra.settimeout(1.0)
        with self.assertRaises(socket.timeout):
            extra.recv(100)
        # the control socket still answers meanwhile
        self.assertEqual(self.d.ok("ping"), "pong")
        idle.pop().close()
        extra.settimeout(10 * mpsuptest.SCALE)
        self.assertRegex(extra.recv(100), rb"^HTTP/1\.[01] 200 ")
        extra.close()
        # idle clients are closed after the timeout (5 s)
        idle[0].settimeout(20 * mpsuptest.SCALE)
        t0 = time.monotonic()
        self.assertEqual(idle[0].recv(100), b"")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        for s in idle:
            s.close()
        self.assertEqual(http_get(self.path, b"GET /metrics HTTP/1.0\r\n\r\n")[0], 200)


class MetricsListenConfigTest(unittest.TestCase):
    def check(self, value):
        d = Daemon(main_extra="metrics_listen = %s\n" % value)
        try:
            return subprocess.run([MPSUPD, "--check-config", d.conf], capture_output=True,
                                  text=True, timeout=30)
        finally:
            shutil.rmtree(d.dir, ignore_errors=True)

    def test_non_loopback_refused(self):
        for v in ("0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464", "example.com:80",
                  "127.0.0.1:0", "127.0.0.1", "unix:relative"):
            p = self.check(v)
            self.assertNotEqual(p.returncode, 0, v)
            self.assertIn("metrics_listen", p.stdout + p.stderr, v)
        for v in ("127.0.0.1:9464", "[::1]:9464", "localhost:9464", "off"):
            self.assertEqual(self.check(v).returncode, 0, v)

    def test_loopback_tcp(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        d = Daemon(main_extra="metrics_listen = 127.0.0.1:%d\n" % port)
        try:
            d.start()
            c = socket.create_connection(("127.0.0.1", port), timeout=10 * mpsuptest.SCALE)
            c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            c.close()
            self.assertTrue(data.startswith(b"HTTP/1.0 200"), data[:200])
            self.assertIn(b"mpsup_uptime_seconds", data)
        finally:
            d.cleanup()


if __name__ == "__main__":
    mpsuptest.main()
