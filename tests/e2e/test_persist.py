"""End-to-end tests of durable shared state (docs/state.md
"Persistence"): acknowledged writes survive SIGKILL at random moments, a
clean shutdown leaves a snapshot, a corrupt log stops start-up at its
offset unless --truncate-corrupt-state, and a failing disk refuses
mutations without acknowledging them, keeps the daemon working and
recovers.

MPSUP_STRESS_LARGE=1 runs 1000 kill cycles instead of 20.
"""
import collections
import json
import os
import random
import signal
import subprocess
import threading
import time
import unittest

import mpsuptest
from mpsuptest import Client, Daemon, DaemonTestCase, wait_for, SCALE, main

CYCLES = 1000 if os.environ.get("MPSUP_STRESS_LARGE") else 20
WRITERS = 3


def frames(data):
    """(offset, payload length) of every complete frame of a state file."""
    out, off = [], 0
    while off + 12 <= len(data):
        n = int.from_bytes(data[off:off + 4], "little")
        if off + 12 + n > len(data):
            break
        out.append((off, n))
        off += 12 + n
    return out


def assert_second_daemon_refused(test, state, why):
    """A second daemon on the state file exits non-zero saying why."""
    other = Daemon()
    try:
        other.write_config(main_extra="state_file = %s\n" % state)
        other.start(wait=False)
        test.assertNotEqual(other.proc.wait(timeout=20 * SCALE), 0)
        test.assertIn(why, other.read_log())
    finally:
        other.cleanup()


class PersistCase(unittest.TestCase):
    """A daemon with state_file in its directory; restartable."""
    sync = "always"
    env = None
    args = ()

    def setUp(self):
        self.d = Daemon(env=self.env, args=self.args)
        self.state = os.path.join(self.d.dir, "state")
        self.log = self.state + ".log"
        self.configure()
        self.d.start()

    def configure(self, extra=""):
        self.d.write_config(main_extra="state_file = %s\nstate_sync = %s\n%s"
                            % (self.state, self.sync, extra))

    def tearDown(self):
        res = getattr(getattr(self, "_outcome", None), "result", None)
        failed = bool(res and (res.failures or res.errors))
        rc = self.d.stop()
        if failed or rc not in (0, None):
            print("---- mpsupd log ----\n" + self.d.read_log()[-8000:])
        self.d.cleanup()
        self.assertIn(rc, (0, None), "mpsupd exited with %r" % rc)

    def kill(self):
        """SIGKILL the daemon and wait for it to be gone."""
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait(timeout=20 * SCALE)
        self.d.stop()

    def restart(self, args=None):
        if args is not None:
            self.d.args = list(args)
        self.d.start()

    def info(self):
        return self.d.ok("daemon.info")["persistence"]

    def start_fails(self):
        """Start and expect an exit with an error; returns the log."""
        self.d.start(wait=False)
        rc = self.d.proc.wait(timeout=20 * SCALE)
        self.d.stop()
        self.assertNotEqual(rc, 0)
        return self.d.read_log()


class Writer(threading.Thread):
    """One client doing sequential mutations on its own objects and recording
    what was acknowledged (and the one request in flight when it broke)."""

    def __init__(self, sock, t, model, counter):
        super().__init__(daemon=True)
        self.sock, self.t, self.model, self.counter = sock, t, model, counter
        self.acked = []       # (op, value) acknowledged this cycle
        self.inflight = None  # (op, value) sent, no answer
        self.failure = None

    def run(self):
        try:
            c = Client(self.sock, timeout=30 * SCALE)
        except OSError:
            return
        t = self.t
        q = collections.deque(self.model["queue"])
        try:
            while True:
                n = next(self.counter)
                kind = ("dict", "list", "value", "put", "get")[n % 5]
                if kind == "dict":
                    req = ("dict.set", dict(name="kd", key="t%d-%d" % (t, n), value=n))
                elif kind == "list":
                    req = ("list.append", dict(name="kl%d" % t, value=n))
                elif kind == "value":
                    req = ("value.add", dict(name="kv%d" % t, by=1))
                elif kind == "put":
                    req = ("queue.put", dict(name="kq%d" % t, item=n))
                else:
                    req = ("queue.get", dict(name="kq%d" % t, timeout=0))
                self.inflight = (kind, n)
                try:
                    resp = c.call(req[0], **req[1])
                except (OSError, EOFError, ValueError):
                    return  # killed: inflight stays
                self.inflight = None
                if kind == "get":
                    # Live check of the model: FIFO, nothing lost or added.
                    if resp.get("ok"):
                        if not q or resp["result"] != q[0]:
                            self.failure = "queue.get gave %r, model head %r" % (
                                resp["result"], q[0] if q else None)
                            return
                        q.popleft()
                    elif resp["error"]["code"] != "empty" or q:
                        self.failure = "queue.get: %r with model %r" % (resp, list(q))
                        return
                    else:
                        continue  # empty: nothing changed
                elif not resp.get("ok"):
                    self.failure = "%s failed: %r" % (req[0], resp)
                    return
                elif kind == "put":
                    q.append(n)
                self.acked.append((kind, resp.get("result") if kind == "get" else n))
        finally:
            c.close()


class KillCycles(PersistCase):
    sync = "always"

    def read_state(self, c, t):
        """What the daemon holds of writer t."""
        def get(name, default):
            r = c.call("obj.get", name=name)
            if r.get("ok"):
                return r["result"]
            self.assertEqual(r["error"]["code"], "not_found")
            return default
        d = get("kd", {})
        prefix = "t%d-" % t
        return {
            "dict": {k: v for k, v in d.items() if k.startswith(prefix)},
            "list": get("kl%d" % t, []),
            "value": get("kv%d" % t, 0),
            "queue": get("kq%d" % t, []),
        }

    def check(self, t, model, w, actual):
        """actual must be model + what w had acknowledged, and possibly its
        request in flight - nothing else."""
        exp = {"dict": dict(model["dict"]), "list": list(model["list"]),
               "value": model["value"], "queue": list(model["queue"])}
        for kind, v in w.acked:
            if kind == "dict":
                exp["dict"]["t%d-%d" % (t, v)] = v
            elif kind == "list":
                exp["list"].append(v)
            elif kind == "value":
                exp["value"] += 1
            elif kind == "put":
                exp["queue"].append(v)
            elif kind == "get":
                exp["queue"].pop(0)
        options = [exp]
        if w.inflight:
            kind, v = w.inflight
            alt = {"dict": dict(exp["dict"]), "list": list(exp["list"]),
                   "value": exp["value"], "queue": list(exp["queue"])}
            if kind == "dict":
                alt["dict"]["t%d-%d" % (t, v)] = v
            elif kind == "list":
                alt["list"].append(v)
            elif kind == "value":
                alt["value"] += 1
            elif kind == "put":
                alt["queue"].append(v)
            elif kind == "get" and alt["queue"]:
                alt["queue"].pop(0)
            options.append(alt)
        self.assertIn(actual, options,
                      "writer %d: after restart %r\nexpected %r\n(in flight %r)"
                      % (t, actual, exp, w.inflight))

    def test_sigkill_loses_no_acknowledged_write(self):
        rng = random.Random(mpsuptest.test_seed())
        counters = [iter(range(i * 10**9, (i + 1) * 10**9)) for i in range(WRITERS)]
        models = [{"dict": {}, "list": [], "value": 0, "queue": []} for _ in range(WRITERS)]
        total = 0
        for cycle in range(CYCLES):
            writers = [Writer(self.d.socket, t, models[t], counters[t]) for t in range(WRITERS)]
            for w in writers:
                w.start()
            # Kill at a random moment once some writes went through.
            wait_for(lambda: sum(len(w.acked) for w in writers) >= 3
                     or any(not w.is_alive() for w in writers),
                     what="the first acknowledged writes")
            time.sleep(rng.uniform(0, 0.15))
            self.kill()
            for w in writers:
                w.join(30 * SCALE)
                self.assertFalse(w.is_alive())
                self.assertIsNone(w.failure, w.failure)
            total += sum(len(w.acked) for w in writers)
            self.restart()
            with self.d.client() as c:
                for t, w in enumerate(writers):
                    actual = self.read_state(c, t)
                    self.check(t, models[t], w, actual)
                    models[t] = actual
            self.assertNotIn("corrupt", self.d.read_log())
        self.assertGreater(total, CYCLES * 3)


class Files(PersistCase):
    def test_clean_shutdown_writes_a_snapshot(self):
        with self.d.client() as c:
            c.ok("dict.set", name="d", key="a", value=[1, 2])
            c.ok("obj.create", name="q", type="queue", maxsize=5)
            c.ok("queue.put", name="q", item="x")
            c.ok("queue.put", name="q", item="y")
            c.ok("queue.task_done", name="q")
            c.ok("event.set", name="e")
            info = c.ok("daemon.info")["persistence"]
        self.assertTrue(info["enabled"])
        self.assertEqual(info["sync"], "always")
        self.assertTrue(info["accepting_writes"])
        self.assertGreater(info["log_bytes"], 0)
        self.assertIsNotNone(info["last_fsync"])
        self.assertEqual(info["errors"], 0)
        out = self.d.mpctl("info", check=0).stdout
        self.assertIn("persistence:", out)
        self.assertEqual(self.d.stop(), 0)
        self.assertGreater(os.path.getsize(self.state), 0)
        self.assertEqual(os.path.getsize(self.log), 0)
        self.assertFalse(os.path.exists(self.state + ".tmp"))
        self.assertEqual(os.stat(self.state).st_mode & 0o777, 0o600)
        self.restart()
        with self.d.client() as c:
            self.assertEqual(c.ok("dict.get", name="d", key="a"), [1, 2])
            self.assertEqual(c.ok("obj.get", name="q"), ["x", "y"])
            # one task of two is done: one more task_done, then conflict
            c.ok("queue.task_done", name="q")
            self.assertEqual(c.err("queue.task_done", name="q"), "conflict")
            # events are not persisted
            self.assertEqual(c.err("obj.get", name="e"), "not_found")
            info = c.ok("daemon.info")["persistence"]
        self.assertGreater(info["snapshot_bytes"], 0)

    def test_limits_lowered_since_do_not_stop_the_replay(self):
        with self.d.client() as c:
            c.ok("obj.create", name="a", type="array", size=1000)  # 8000 bytes
            c.ok("array.set", name="a", index=999, value=7)
            c.ok("list.extend", name="l", values=[1, 2, 3])
            c.ok("dict.update", name="d", items={"a": 1, "b": 2, "c": 3})
        self.kill()  # the records stay in the log: they are replayed
        self.configure("max_request_bytes = 1024\nmax_object_items = 2\n")
        self.restart()
        with self.d.client() as c:
            self.assertEqual(c.ok("array.get", name="a", index=999), 7)
            self.assertEqual(c.ok("list.len", name="l"), 3)
            self.assertEqual(c.ok("dict.len", name="d"), 3)
            # The lowered limits apply to what comes now.
            self.assertEqual(c.err("obj.create", name="b", type="array", size=1000), "limit")
            self.assertEqual(c.err("list.append", name="l", value=4), "limit")
        self.assertEqual(self.d.stop(), 0)  # a snapshot of the same state
        self.restart()
        self.assertEqual(self.d.ok("dict.len", name="d"), 3)
        self.assertEqual(self.d.ok("array.len", name="a"), 1000)

    def test_corrupt_log_stops_start_up_at_its_offset(self):
        with self.d.client() as c:
            for i in range(10):
                c.ok("list.append", name="l", value=i)
        self.kill()
        with open(self.log, "rb") as f:
            data = bytearray(f.read())
        fr = frames(data)
        self.assertEqual(len(fr), 11)  # create + 10 appends
        off, n = fr[5]
        data[off + 12 + n // 2] ^= 0x01
        with open(self.log, "wb") as f:
            f.write(data)
        log = self.start_fails()
        self.assertIn("corrupt at offset %d" % off, log)
        self.assertIn("--truncate-corrupt-state", log)
        # The operator decides: keep what precedes the damage.
        self.restart(args=["--truncate-corrupt-state"])
        self.assertEqual(self.d.ok("obj.get", name="l"), [0, 1, 2, 3])
        self.d.ok("list.append", name="l", value="new")
        self.d.stop()
        self.restart(args=[])
        self.assertEqual(self.d.ok("obj.get", name="l"), [0, 1, 2, 3, "new"])

    def test_torn_last_record_is_dropped(self):
        with self.d.client() as c:
            for i in range(5):
                c.ok("dict.set", name="d", key="k%d" % i, value=i)
        self.kill()
        with open(self.log, "rb") as f:
            data = f.read()
        off, n = frames(data)[-1]
        with open(self.log, "wb") as f:
            f.write(data[:off + 12 + n // 2])
        self.restart()
        self.assertEqual(sorted(self.d.ok("dict.keys", name="d")), ["k0", "k1", "k2", "k3"])
        self.assertIn("torn last record at offset %d" % off, self.d.read_log())
        self.assertEqual(os.path.getsize(self.log), off)

    def test_corrupt_snapshot_stops_start_up(self):
        self.d.ok("dict.set", name="d", key="a", value=1)
        self.d.ok("dict.set", name="e", key="b", value=2)
        self.d.stop()
        with open(self.state, "rb") as f:
            data = bytearray(f.read())
        off, n = frames(data)[1]  # the first object
        data[off + 12 + 2] ^= 0x40
        with open(self.state, "wb") as f:
            f.write(data)
        log = self.start_fails()
        self.assertIn("snapshot %s is corrupt at offset %d" % (self.state, off), log)

    def test_one_daemon_per_state_file(self):
        assert_second_daemon_refused(self, self.state, "in use")


class OtherModes(PersistCase):
    sync = "everysec"

    def test_everysec_then_no_then_always(self):
        self.d.ok("value.add", name="v", by=5)
        self.assertEqual(self.info()["sync"], "everysec")
        wait_for(lambda: self.info()["last_fsync"] is not None, what="the background fsync")
        # no: acknowledged writes are in the kernel's hands, which survive
        # the daemon's death.
        for mode in ("no", "always"):
            self.sync = mode
            self.configure()
            self.d.ok("daemon.reload")
            self.assertEqual(self.info()["sync"], mode)
            self.d.ok("value.add", name="v", by=1)
        self.kill()
        self.restart()
        self.assertEqual(self.d.ok("value.get", name="v"), 7)

    def test_fsyncs_follow_the_mode(self):
        """always: an fdatasync before every acknowledgement (each of these
        sequential writes is its own event-loop pass); no: none."""
        for mode, at_least, at_most in (("always", 20, None), ("no", 0, 0)):
            self.sync = mode
            self.configure()
            self.d.ok("daemon.reload")
            before = self.info()["log_fsyncs"]
            with self.d.client() as c:
                for i in range(20):
                    c.ok("value.add", name="f", by=1)
            done = self.info()["log_fsyncs"] - before
            self.assertGreaterEqual(done, at_least, mode)
            if at_most is not None:
                self.assertLessEqual(done, at_most, mode)

    def test_compaction_when_the_log_grows(self):
        self.configure("state_log_max_bytes = 4K\n")
        self.d.ok("daemon.reload")
        with self.d.client() as c:
            for i in range(400):
                c.ok("value.add", name="v", by=1)
        # snapshots are written by a child: wait for the last one
        info = wait_for(lambda: (lambda i: not i["snapshot_in_progress"] and i)(self.info()),
                        what="the snapshot child to finish")
        self.assertGreaterEqual(info["snapshots"], 1)
        self.assertLess(info["log_bytes"], 4096 + 200)
        # the replaced logs are closed (by the background thread)
        wait_for(lambda: not self.replaced_logs(), what="replaced logs closed")
        self.kill()
        self.restart()
        self.assertEqual(self.d.ok("value.get", name="v"), 400)

    def test_compaction_with_state_sync_always(self):
        self.sync = "always"
        self.configure("state_log_max_bytes = 4K\n")
        self.d.ok("daemon.reload")
        with self.d.client() as c:
            for i in range(300):
                c.ok("dict.set", name="d", key="k%d" % (i % 20), value=i)
        info = wait_for(lambda: (lambda i: not i["snapshot_in_progress"] and i)(self.info()),
                        what="the snapshot child to finish")
        self.assertGreaterEqual(info["snapshots"], 1)
        wait_for(lambda: not self.replaced_logs(), what="replaced logs closed")
        self.kill()
        self.restart()
        self.assertEqual(self.d.ok("dict.get", name="d", key="k19"), 299)

    def replaced_logs(self):
        """The daemon's descriptors of log files no longer in the directory."""
        fds = "/proc/%d/fd" % self.d.proc.pid
        out = []
        for fd in os.listdir(fds):
            try:
                target = os.readlink(os.path.join(fds, fd))
            except FileNotFoundError:
                continue
            if ".log" in target and target.endswith(" (deleted)"):
                out.append(target)
        return out


class FailingWrites:
    """Mixed into a PersistCase: writes fail with ENOSPC while the flag
    file self.flag exists (MPSUP_TEST_FAIL_WRITES, a fault-injection hook
    of mpsupd)."""

    def setUp(self):
        self.flag = "/tmp/mpsup-failflag-%d-%d" % (os.getpid(), random.randrange(10**9))
        self.env = {"MPSUP_TEST_FAIL_WRITES": self.flag}
        super().setUp()

    def tearDown(self):
        if os.path.exists(self.flag):
            os.unlink(self.flag)
        super().tearDown()


class FailingDisk(FailingWrites, PersistCase):
    """Mutations refused and recovered around a failing disk (held answers
    wait longer than these tests: test_persist_outage.py times them out)."""

    def configure(self, extra=""):
        super().configure("persist_outage_timeout = 300\n" + extra)

    def test_mutations_refused_then_recovered(self):
        self.d.ok("dict.set", name="d", key="before", value=1)
        self.d.ok("value.set", name="other", value="ok")
        open(self.flag, "w").close()
        held = self.d.client()
        held.send("dict.set", name="d", key="held", value=2)
        reader = self.d.client()
        with self.d.client() as c:
            # The request that met the failure is not acknowledged...
            held.sock.settimeout(0.3)
            with self.assertRaises(OSError):
                held.recv()
            held.sock.settimeout(20 * SCALE)
            # ...others are refused with a clear error...
            resp = c.call("dict.set", name="d", key="refused", value=3)
            self.assertFalse(resp["ok"])
            self.assertEqual(resp["error"]["code"], "unavailable")
            self.assertIn("No space left on device", resp["error"]["message"])
            self.assertEqual(c.err("list.append", name="newlist", value=1), "unavailable")
            self.assertEqual(c.err("obj.delete", name="other"), "unavailable")
            # ...and the daemon keeps working: reads of objects the failed
            # mutation did not change, ping, other objects.
            self.assertEqual(c.ok("value.get", name="other"), "ok")
            # A read of d would show the unacknowledged "held": it is
            # unavailable (another client, a later pass).
            self.assertEqual(reader.err("dict.get", name="d", key="held"), "unavailable")
            c.ok("ping")
            c.ok("event.set", name="e")
            self.assertTrue(c.ok("lock.acquire", name="lk")["acquired"])
            c.ok("lock.release", name="lk")
            c.ok("status")
            info = c.ok("daemon.info")["persistence"]
            self.assertFalse(info["accepting_writes"])
            self.assertIn("No space left", info["error"])
            self.assertGreaterEqual(info["errors"], 1)
            # The disk comes back: the held answer goes out, writes resume.
            os.unlink(self.flag)
            self.assertTrue(held.recv()["ok"])
            self.assertEqual(reader.ok("dict.get", name="d", key="held"), 2)
            wait_for(lambda: self.info()["accepting_writes"], what="recovery")
            self.assertEqual(c.ok("dict.get", name="d", key="before"), 1)
            c.ok("dict.set", name="d", key="after", value=4)
            self.assertIsNone(c.ok("daemon.info")["persistence"]["error"])
        held.close()
        reader.close()
        self.kill()
        self.restart()
        self.assertEqual(sorted(self.d.ok("dict.keys", name="d")), ["after", "before", "held"])

    def failed_write(self):
        """v = "old" on disk; then the disk fails and a client's value.set of
        "NEW" is held unanswered. Returns that client."""
        self.d.ok("value.set", name="v", value="old")
        open(self.flag, "w").close()
        w = self.d.client()
        w.send("value.set", name="v", value="NEW")
        w.sock.settimeout(0.3)
        with self.assertRaises(OSError):
            w.recv()
        return w

    def test_held_client_hanging_up_does_not_spin(self):
        """A client whose answer is held by the failure hangs up: the daemon
        does not busy-loop on its end-of-file while the disk stays bad."""
        w = self.failed_write()
        w.close()
        wait_for(lambda: self.d.ok("daemon.info")["clients"] <= 2, what="hang-up seen")

        def cpu():
            with open("/proc/%d/stat" % self.d.pid()) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu(), time.monotonic()
        time.sleep(1.0)  # measuring CPU use over a second of wall time
        used = cpu() - c0
        # spinning is a whole second of CPU; the bound leaves room for
        # sanitizers and valgrind (MPSUP_TEST_TIMEOUT_SCALE)
        self.assertLess(used, min(0.9, 0.5 * SCALE) * (time.monotonic() - t0),
                        "mpsupd used %.2fs of CPU in %.2fs" % (used, time.monotonic() - t0))
        os.unlink(self.flag)
        wait_for(lambda: self.info()["accepting_writes"], what="recovery")

    def test_reader_never_sees_what_a_crash_loses(self):
        """A mutation whose write failed is not shown to anyone: SIGKILL
        during the failure, and the value after the restart is the one
        every reader saw."""
        w = self.failed_write()
        seen = []
        with self.d.client() as r:
            resp = r.call("value.get", name="v")
            if resp["ok"]:
                seen.append(resp["result"])
            else:
                self.assertEqual(resp["error"]["code"], "unavailable")
            self.d.ok("ping")
            self.assertFalse(self.info()["accepting_writes"])
        w.close()
        self.kill()
        os.unlink(self.flag)
        self.restart()
        after = self.d.ok("value.get", name="v")
        self.assertEqual(after, "old")
        for v in seen:
            self.assertEqual(v, after, "a reader saw %r, lost by the crash" % v)
        self.assertEqual(seen, [])


if __name__ == "__main__":
    main()
