"""End-to-end tests of snapshots written by a child process
(docs/state.md "Persistence"): while a compaction's child writes tens of MB
of state, the daemon answers (ping, status, reads and writes); when it
ends, the snapshot replaces the old one and the log keeps only what was
written since; a kill -9 of the daemon during a snapshot, a killed child
and a shutdown during a snapshot lose no acknowledged write.

MPSUP_TEST_SNAPSHOT_HOLD (a fault-injection hook of mpsupd) makes the
child wait, once its snapshot is written and synced, while a file exists:
the tests decide when the snapshot ends instead of racing it.
"""
import json
import os
import random
import signal
import unittest

import test_persist
from mpsuptest import Daemon, SCALE, main, wait_for

VALUE = "x" * 100_000


def pid_alive(pid):
    """Is pid a live (not zombie) process?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def snapshot_seq(path):
    """The seq of the snapshot file's header record."""
    with open(path, "rb") as f:
        hdr = f.read(12)
        n = int.from_bytes(hdr[:4], "little")
        return json.loads(f.read(n))["seq"]


class SnapshotCase(unittest.TestCase):
    fill_mb = 20
    sync = "everysec"

    def setUp(self):
        tag = "%d-%d" % (os.getpid(), random.randrange(10**9))
        self.hold = "/tmp/mpsup-snaphold-" + tag
        self.failflag = "/tmp/mpsup-failflag-" + tag
        open(self.hold, "w").close()
        self.d = Daemon(env={"MPSUP_TEST_SNAPSHOT_HOLD": self.hold,
                             "MPSUP_TEST_FAIL_WRITES": self.failflag})
        self.state = os.path.join(self.d.dir, "state")
        self.acked = {}
        # no compaction while filling
        self.configure(0)
        self.d.start()
        self.fill()

    def tearDown(self):
        for f in (self.hold, self.failflag):
            if os.path.exists(f):
                os.unlink(f)
        res = getattr(getattr(self, "_outcome", None), "result", None)
        failed = bool(res and (res.failures or res.errors))
        rc = self.d.stop()
        if failed or rc not in (0, None):
            print("---- mpsupd log ----\n" + self.d.read_log()[-8000:])
        self.d.cleanup()
        self.assertIn(rc, (0, None), "mpsupd exited with %r" % rc)

    def configure(self, log_max):
        self.d.write_config(main_extra="state_file = %s\nstate_sync = %s\n"
                            "state_log_max_bytes = %d\n" % (self.state, self.sync, log_max))

    def fill(self):
        """fill_mb MB of dict values, pipelined."""
        n = self.fill_mb * 10
        with self.d.client() as c:
            for i in range(n):
                c.send("dict.set", name="big", key="k%d" % i, value=VALUE)
            for i in range(n):
                self.assertTrue(c.recv()["ok"])
                self.acked["k%d" % i] = VALUE

    def info(self, c=None):
        if c is not None:
            return c.ok("daemon.info")["persistence"]
        return self.d.ok("daemon.info")["persistence"]

    def trigger(self):
        """Lower the log limit and write: the commit starts a snapshot child;
        returns (its pid, daemon.info before)."""
        before = self.info()
        self.assertFalse(before.get("snapshot_in_progress"))
        self.configure(1 << 20)
        self.d.ok("daemon.reload")
        self.write("trigger")
        # (a snapshot written in the foreground is never seen in progress)
        info = wait_for(lambda: (lambda i: i.get("snapshot_in_progress") and i)(self.info()),
                        timeout=5, what="a snapshot in progress")
        pid = info["snapshot_pid"]
        self.assertTrue(pid_alive(pid))
        with open("/proc/%d/stat" % pid) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        self.assertEqual(ppid, self.d.pid())
        return pid, before

    def write(self, key, c=None):
        if c is None:
            self.d.ok("dict.set", name="big", key=key, value=key)
        else:
            c.ok("dict.set", name="big", key=key, value=key)
        self.acked[key] = key

    def kill(self):
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait(timeout=20 * SCALE)
        self.d.stop()

    def check_recovered(self):
        self.d.start()
        with self.d.client() as c:
            self.assertEqual(c.ok("dict.len", name="big"), len(self.acked))
            for k, v in self.acked.items():
                self.assertEqual(c.ok("dict.get", name="big", key=k), v, k)
        self.assertFalse(os.path.exists(self.state + ".tmp"))
        self.assertFalse(os.path.exists(self.state + ".log.tmp"))


class ChildSnapshot(SnapshotCase):
    def test_daemon_answers_while_the_child_writes(self):
        pid, before = self.trigger()
        # The snapshot cannot end while held, so every answer below came
        # while it was in progress.
        with self.d.client() as c:
            for i in range(20):
                self.assertTrue(c.call("ping")["ok"])
                self.write("during-%d" % i, c)
                self.assertEqual(c.ok("dict.get", name="big", key="k7"), VALUE)
            c.ok("status")
            info = self.info(c)
        self.assertTrue(info["snapshot_in_progress"])
        self.assertEqual(info["snapshot_pid"], pid)
        self.assertEqual(info["snapshots"], before["snapshots"])
        self.assertTrue(pid_alive(pid))
        # the child wrote all of it before it holds
        wait_for(lambda: os.path.getsize(self.state + ".tmp") > self.fill_mb * 1_000_000,
                 what="the child's snapshot")
        os.unlink(self.hold)
        info = wait_for(lambda: (lambda i: not i["snapshot_in_progress"] and i)(self.info()),
                        what="the snapshot to end")
        self.assertEqual(info["snapshots"], before["snapshots"] + 1)
        self.assertEqual(info["snapshot_failures"], 0)
        self.assertIsNone(info["snapshot_pid"])
        wait_for(lambda: not pid_alive(pid), what="the child to be reaped")
        # the snapshot holds the state as of the trigger; the log only what
        # was written since (20 small records)
        self.assertGreater(os.path.getsize(self.state), self.fill_mb * 1_000_000)
        self.assertLess(info["log_bytes"], 10_000)
        self.assertEqual(os.path.getsize(self.state + ".log"), info["log_bytes"])
        self.assertFalse(os.path.exists(self.state + ".tmp"))
        seq = snapshot_seq(self.state)
        self.assertEqual(seq + info["log_records"], info["seq"])
        # the log's lock moved to the new log: a second daemon is refused
        test_persist.assert_second_daemon_refused(self, self.state, "in use by another process")
        # a crash now recovers from the new snapshot and the shrunk log
        self.write("after")
        self.kill()
        self.check_recovered()

    def test_kill_9_during_a_snapshot_loses_nothing(self):
        pid, _ = self.trigger()
        with self.d.client() as c:
            for i in range(50):
                self.write("during-%d" % i, c)
        self.kill()
        # the child dies with the daemon and holds nothing of it
        wait_for(lambda: not pid_alive(pid), what="the child to die with the daemon")
        self.check_recovered()

    def test_killed_child_leaves_snapshot_and_log_untouched(self):
        with open(self.state + ".log", "rb") as f:
            log_before = f.read()
        pid, before = self.trigger()
        self.write("during")
        os.kill(pid, signal.SIGKILL)
        info = wait_for(lambda: (lambda i: not i["snapshot_in_progress"] and i)(self.info()),
                        what="the child's end to be seen")
        self.assertEqual(info["snapshot_failures"], 1)
        self.assertEqual(info["snapshots"], before["snapshots"])
        self.assertIn("snapshot child %d killed by signal 9" % pid, self.d.read_log())
        self.assertFalse(os.path.exists(self.state))  # no snapshot was ever written
        self.assertFalse(os.path.exists(self.state + ".tmp"))
        with open(self.state + ".log", "rb") as f:
            self.assertTrue(f.read().startswith(log_before))
        self.kill()
        self.check_recovered()

    def test_shutdown_during_a_snapshot(self):
        pid, _ = self.trigger()
        self.write("during")
        self.assertEqual(self.d.stop(), 0)
        self.assertFalse(pid_alive(pid))
        self.assertIn("snapshot child %d stopped" % pid, self.d.read_log())
        # the clean shutdown's snapshot holds everything: the log is empty
        self.assertEqual(os.path.getsize(self.state + ".log"), 0)
        self.check_recovered()

    def test_failed_write_during_a_snapshot(self):
        """The recovery snapshot (in the foreground) replaces the child's."""
        pid, _ = self.trigger()
        self.write("before-failure")
        open(self.failflag, "w").close()
        held = self.d.client()
        held.send("dict.set", name="big", key="held", value="held")
        # (an answer of the failed write's pass is held with it: wait for
        # the failure before asking anything)
        wait_for(lambda: "refusing mutations" in self.d.read_log(), what="the failure")
        with self.d.client() as c:
            self.assertFalse(self.info(c)["accepting_writes"])
            self.assertTrue(c.call("ping")["ok"])
        os.unlink(self.failflag)
        self.assertTrue(held.recv()["ok"])  # acknowledged once recovered
        held.close()
        self.acked["held"] = "held"
        info = wait_for(lambda: (lambda i: i["accepting_writes"] and i)(self.info()),
                        what="the recovery")
        self.assertFalse(info["snapshot_in_progress"])
        self.assertFalse(pid_alive(pid))
        self.assertIn("snapshot child %d stopped" % pid, self.d.read_log())
        self.assertEqual(info["log_bytes"], 0)
        self.write("after")
        self.kill()
        self.check_recovered()


class ChildSnapshotAlways(SnapshotCase):
    """The same with state_sync = always (no fsync thread: the log's fd is
    switched by the loop alone)."""
    sync = "always"
    fill_mb = 5
    test_daemon_answers_while_the_child_writes = \
        ChildSnapshot.test_daemon_answers_while_the_child_writes
    test_kill_9_during_a_snapshot_loses_nothing = \
        ChildSnapshot.test_kill_9_during_a_snapshot_loses_nothing


if __name__ == "__main__":
    main()
