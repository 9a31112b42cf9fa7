"""Stress: 1000 concurrent clients x 100 atomic increments of one shared
value give exactly 100 000, every intermediate value is seen exactly once,
and the daemon's descriptor count returns to its baseline afterwards.

Clients are spread over a few processes, each driving its share of the
connections with one selector: every connection keeps one request in flight
(a closed loop), so all 1000 really are concurrent. Tunable for manual runs:
MPSUP_STRESS_CLIENTS, MPSUP_STRESS_INCREMENTS.
"""
import json
import multiprocessing
import os
import resource
import selectors
import socket
import sys
import time
import unittest

import mpsuptest
from mpsuptest import Daemon, wait_for, DEFAULT_DEADLINE, SCALE

CLIENTS = int(os.environ.get("MPSUP_STRESS_CLIENTS", "1000"))
INCREMENTS = int(os.environ.get("MPSUP_STRESS_INCREMENTS", "100"))
WORKERS = 4
NAME = "stress-counter"


def raise_fd_limit(need):
    """Raise the soft RLIMIT_NOFILE towards the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_clients(path, n_clients, increments, deadline, results):
    """One worker process: n_clients connections, each sending `increments`
    value.add requests one at a time. Puts (values seen, errors) on results."""
    sel = selectors.DefaultSelector()
    seen, errors = [], []
    req = (json.dumps({"cmd": "value.add", "name": NAME, "by": 1}) + "\n").encode()
    left = {}
    try:
        for _ in range(n_clients):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, [b""])
            left[s] = increments
        for s in left:  # one request in flight per connection
            s.sendall(req)
        while left:
            if time.monotonic() > deadline:
                errors.append("deadline passed with %d connections busy" % len(left))
                break
            for key, _ in sel.select(timeout=1.0):
                s, buf = key.fileobj, key.data
                chunk = s.recv(65536)
                if not chunk:
                    errors.append("connection closed early")
                    sel.unregister(s)
                    s.close()
                    del left[s]
                    continue
                buf[0] += chunk
                while b"\n" in buf[0] and s in left:
                    line, buf[0] = buf[0].split(b"\n", 1)
                    resp = json.loads(line)
                    if resp.get("ok") is not True:
                        errors.append(resp)
                    else:
                        seen.append(resp["result"])
                    left[s] -= 1
                    if left[s]:
                        s.sendall(req)
                    else:
                        sel.unregister(s)
                        s.close()
                        del left[s]
    except Exception as e:  # report, do not hang the parent
        errors.append("%s: %s" % (e.__class__.__name__, e))
    finally:
        for s in list(left):
            s.close()
    results.put((seen, errors[:20]))


class ConcurrentIncrements(unittest.TestCase):
    def setUp(self):
        limit = raise_fd_limit(CLIENTS + 256)
        if limit < CLIENTS + 64:
            self.skipTest("RLIMIT_NOFILE is %d; %d clients need more" % (limit, CLIENTS))
        # The daemon inherits the raised limit.
        self.d = Daemon(main_extra="max_clients = %d\nlog_level = info\n" % (CLIENTS + 100))
        self.d.start()
        if "state" not in self.d.ok("hello")["capabilities"]:
            self.d.cleanup()
            self.skipTest("the daemon has no shared-state module (no 'state' capability)")

    def tearDown(self):
        rc = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertIn(rc, (0, None), "mpsupd exited with %r; log:\n%s" % (rc, log))

    def test_1000_clients_100_increments(self):
        self.d.ok("obj.create", name=NAME, type="value", typecode="i", init=0)
        base = self.fd_baseline()
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        deadline = time.monotonic() + 120 * SCALE
        share = [CLIENTS // WORKERS + (i < CLIENTS % WORKERS) for i in range(WORKERS)]
        started = time.monotonic()
        procs = [ctx.Process(target=run_clients,
                             args=(self.d.socket, n, INCREMENTS, deadline, results))
                 for n in share if n]
        for p in procs:
            p.start()
        seen, errors = [], []
        for _ in procs:
            s, e = results.get(timeout=max(1.0, deadline - time.monotonic() + 10))
            seen += s
            errors += e
        for p in procs:
            p.join(DEFAULT_DEADLINE)
        elapsed = time.monotonic() - started
        total = CLIENTS * INCREMENTS
        sys.stderr.write("%d clients x %d increments: %.1f s (%.0f requests/s)\n"
                         % (CLIENTS, INCREMENTS, elapsed, total / elapsed))
        self.assertEqual(errors, [])
        self.assertEqual(self.d.ok("value.get", name=NAME), total)
        # Atomic: every intermediate value was handed out exactly once.
        self.assertEqual(len(seen), total)
        self.assertEqual(sorted(seen), list(range(1, total + 1)))
        # Every connection is gone on the daemon's side too.
        wait_for(lambda: self.d.fd_count() == base,
                 what="the daemon's fd count back to %d (now %d)" % (base, self.d.fd_count()))
        self.assertEqual(self.fd_baseline(), base)

    def fd_baseline(self):
        """The daemon's fd count without clients: measured while exactly one
        client (this one) is connected, minus its descriptor."""
        def one_client():
            with self.d.client() as c:
                return c.ok("daemon.info")["clients"] == 1 and self.d.fd_count() - 1
        return wait_for(one_client, what="a daemon without other clients")


if __name__ == "__main__":
    mpsuptest.main()
