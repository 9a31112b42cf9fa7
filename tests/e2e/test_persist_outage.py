#!/usr/bin/env python3
"""Storage outages of durable shared state (docs/state.md "When the disk
fails"): nothing waits on storage without a bound. A full file system (a
small tmpfs this test mounts, as root), an fsync that fails with EIO, a
write that fails with EDQUOT (the fault hook of test_persist.FailingWrites)
and a state directory that is removed all behave the same way:

* the request in flight when the write failed is answered `unavailable`
  ("the outcome is unknown") after persist_outage_timeout;
* a read of an object with unwritten changes is `unavailable` at once;
* refused mutations are `unavailable`; other objects, ping and supervision
  work; daemon.info shows the outage and the `daemon` topic tells of its
  start and end;
* once the storage is back, everything - the in-flight mutation too - is in
  the state, and still there after a restart.
"""
import os
import shutil
import subprocess
import tempfile
import time

import test_persist
from mpsuptest import SCALE, main, wait_for

TIMEOUT = 1.5  # persist_outage_timeout of these tests


class OutageCase(test_persist.PersistCase):
    """A PersistCase with a short persist_outage_timeout and the checks the
    outage tests share."""

    def configure(self, extra=""):
        super().configure("persist_outage_timeout = %s\n%s" % (TIMEOUT, extra))

    def subscribe(self):
        """A client streaming the daemon topic."""
        s = self.d.client()
        self.assertTrue(s.call("events.subscribe", topics=["daemon"])["ok"])
        return s

    def next_event(self, s, name):
        """The next event called name on stream s (others are skipped)."""
        while True:
            ev = s.recv()
            if ev.get("event") == name:
                return ev

    def assert_held_then_unavailable(self, c, t0):
        """The answer c waits for comes as `unavailable` (outcome unknown)
        after the timeout, within a bound; returns it."""
        c.sock.settimeout(TIMEOUT + 10 * SCALE)
        resp = c.recv()
        took = time.monotonic() - t0
        self.assertFalse(resp["ok"], resp)
        self.assertEqual(resp["error"]["code"], "unavailable")
        self.assertIn("outcome is unknown", resp["error"]["message"])
        self.assertGreaterEqual(took, TIMEOUT - 0.05)
        self.assertLess(took, TIMEOUT + 3 * SCALE)
        return resp

    def assert_outage_answers(self, touched, why):
        """During the outage: a read of the touched dict is unavailable at
        once, mutations are refused as unavailable, other objects, ping and
        supervision work, daemon.info and mpctl info show the outage."""
        with self.d.client() as c:
            t0 = time.monotonic()
            resp = c.call("dict.get", name=touched, key="k0")
            self.assertLess(time.monotonic() - t0, 1.0 * SCALE)
            self.assertEqual(resp["error"]["code"], "unavailable")
            resp = c.call("dict.set", name="other", key="x", value=1)
            self.assertEqual(resp["error"]["code"], "unavailable")
            self.assertIn(why, resp["error"]["message"])
            self.assertEqual(c.ok("value.get", name="o"), "durable")
            self.assertEqual(c.ok("ping"), "pong")
            self.assertTrue(c.ok("lock.acquire", name="lk")["acquired"])
            c.ok("lock.release", name="lk")
            run = c.ok("proc.run", argv=["/bin/sh", "-c", "exit 3"])
            self.assertEqual(c.ok("proc.join", target=run["name"], timeout=10 * SCALE)
                             ["exitcode"], 3)
            info = c.ok("daemon.info")["persistence"]
        self.assertFalse(info["accepting_writes"])
        outage = info["outage"]
        self.assertIsNotNone(outage)
        self.assertLessEqual(outage["since"], time.time())
        self.assertGreater(outage["since"], time.time() - 120)
        self.assertGreater(outage["pending_bytes"], 0)
        self.assertGreaterEqual(outage["pending_records"], 1)
        self.assertIn(why, outage["error"])
        self.assertEqual(info["outage_timeout"], TIMEOUT)
        out = self.d.mpctl("info", check=0).stdout
        self.assertRegex(out, r"STATE OUTAGE: +since .*: %d bytes \(%d records\) not written; .*%s"
                         % (outage["pending_bytes"], outage["pending_records"], why))

    def assert_restored(self, sub):
        """The storage is back: the end of the outage is told and shown."""
        ev = self.next_event(sub, "daemon.persist_restored")
        self.assertGreater(ev["outage_secs"], 0)
        wait_for(lambda: self.info()["accepting_writes"], what="recovery")
        self.assertIsNone(self.info()["outage"])


class SmallFilesystem:
    """Mixed into an OutageCase: the state file on a 1 MiB tmpfs this test
    mounts (root only; skipped, saying why, where it cannot), 640 KiB of
    it taken by self.filler, which the test can remove."""

    def setUp(self):
        self.mnt = None
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a small tmpfs")
        mnt = tempfile.mkdtemp(prefix="mpsup-tmpfs-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mnt],
                           capture_output=True)
        if r.returncode != 0:
            os.rmdir(mnt)
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
        self.mnt = mnt
        self.filler = os.path.join(mnt, "filler")
        with open(self.filler, "wb") as f:
            f.write(b"\0" * (640 * 1024))
        super().setUp()

    def configure(self, extra=""):
        if self.mnt:
            self.state = os.path.join(self.mnt, "state")
            self.log = self.state + ".log"
        super().configure(extra)

    def tearDown(self):
        if self.mnt:
            try:
                super().tearDown()
            finally:
                subprocess.run(["umount", self.mnt])
                os.rmdir(self.mnt)

    def test_full_disk(self):
        big = "x" * 16000
        self.d.ok("value.set", name="o", value="durable")
        sub = self.subscribe()
        acked, held_key = [], None
        c = self.d.client()
        c.sock.settimeout(TIMEOUT + 10 * SCALE)
        for i in range(200):
            key = "k%d" % i
            t0 = time.monotonic()
            c.send("dict.set", name="d", key=key, value=big)
            resp = c.recv()
            if not resp["ok"]:
                # The write of the request in flight failed: its answer
                # waited for the timeout, and says the outcome is unknown.
                self.assertEqual(resp["error"]["code"], "unavailable")
                self.assertIn("outcome is unknown", resp["error"]["message"])
                took = time.monotonic() - t0
                self.assertGreaterEqual(took, TIMEOUT - 0.05)
                self.assertLess(took, TIMEOUT + 3 * SCALE)
                held_key = key
                break
            acked.append(key)
        self.assertIsNotNone(held_key, "the file system never filled up")
        ev = self.next_event(sub, "daemon.persist_outage")
        self.assertIn("No space left on device", ev["error"])
        self.assert_outage_answers("d", "No space left on device")
        # The same client goes on: refused, not held.
        self.assertEqual(c.err("dict.set", name="d", key="again", value=1), "unavailable")
        c.close()
        # Room again: the state, the in-flight mutation included, is written.
        os.unlink(self.filler)
        self.assert_restored(sub)
        sub.close()
        self.assertEqual(len(self.d.ok("dict.get", name="d", key=held_key)), len(big))
        self.d.ok("dict.set", name="d", key="after", value=1)
        self.kill()
        self.restart()
        keys = set(self.d.ok("dict.keys", name="d"))
        self.assertEqual(keys, set(acked) | {held_key, "after"})
        self.assertEqual(self.d.ok("value.get", name="o"), "durable")


class FullDiskAlways(SmallFilesystem, OutageCase):
    """The file system fills up with state_sync = always."""
    sync = "always"


class FullDiskEverysec(SmallFilesystem, OutageCase):
    """The file system fills up with state_sync = everysec."""
    sync = "everysec"


class FailingStorage(test_persist.FailingWrites, OutageCase):
    """Errors a file system cannot easily be made to give, through the
    fault hook: the flag file's text names the error (and "fsync": only
    syncs fail)."""

    def fail_with(self, text, why):
        self.d.ok("value.set", name="o", value="durable")
        self.d.ok("dict.set", name="d", key="k0", value="old")
        sub = self.subscribe()
        with open(self.flag, "w") as f:
            f.write(text)
        c = self.d.client()
        t0 = time.monotonic()
        c.send("dict.set", name="d", key="k0", value="NEW")
        self.assert_held_then_unavailable(c, t0)
        self.assertIn(why, self.next_event(sub, "daemon.persist_outage")["error"])
        self.assert_outage_answers("d", why)
        c.close()
        os.unlink(self.flag)
        self.assert_restored(sub)
        sub.close()
        self.assertEqual(self.d.ok("dict.get", name="d", key="k0"), "NEW")
        self.kill()
        self.restart()
        self.assertEqual(self.d.ok("dict.get", name="d", key="k0"), "NEW")

    def test_fsync_eio(self):
        self.fail_with("EIO fsync", "Input/output error")

    def test_write_edquot(self):
        self.fail_with("EDQUOT", "Disk quota exceeded")

    def test_timeout_changes_on_reload(self):
        """persist_outage_timeout changes on daemon.reload: an answer held
        from then on waits for the new value (longer than the old one: a
        lower bound holds on a loaded machine)."""
        longer = TIMEOUT + 1.5
        super(OutageCase, self).configure("persist_outage_timeout = %s\n" % longer)
        self.d.ok("daemon.reload")
        self.assertEqual(self.info()["outage_timeout"], longer)
        open(self.flag, "w").close()
        with self.d.client() as c:
            t0 = time.monotonic()
            c.send("value.set", name="v", value=1)
            self.assertEqual(c.recv()["error"]["code"], "unavailable")
            self.assertGreaterEqual(time.monotonic() - t0, longer - 0.05)
        os.unlink(self.flag)
        wait_for(lambda: self.info()["accepting_writes"], what="recovery")
        self.assertEqual(self.d.ok("value.get", name="v"), 1)


class StateDirectoryRemoved(OutageCase):
    """The state directory is removed under a running daemon: writes would
    go to a file nobody finds again, so it is an outage too; when the
    directory is made again the state is written there."""

    def configure(self, extra=""):
        self.stdir = os.path.join(self.d.dir, "st")
        os.makedirs(self.stdir, mode=0o700, exist_ok=True)
        self.state = os.path.join(self.stdir, "state")
        self.log = self.state + ".log"
        self.d.write_config(main_extra="state_file = %s\nstate_sync = always\n"
                            "persist_outage_timeout = %s\n%s" % (self.state, TIMEOUT, extra))

    def test_directory_removed_and_made_again(self):
        self.d.ok("value.set", name="o", value="durable")
        self.d.ok("dict.set", name="d", key="k0", value="old")
        sub = self.subscribe()
        shutil.rmtree(self.stdir)
        c = self.d.client()
        t0 = time.monotonic()
        c.send("dict.set", name="d", key="k0", value="NEW")
        self.assert_held_then_unavailable(c, t0)
        why = "No such file or directory"
        self.assertIn(why, self.next_event(sub, "daemon.persist_outage")["error"])
        self.assert_outage_answers("d", why)
        c.close()
        os.mkdir(self.stdir, 0o700)
        self.assert_restored(sub)
        sub.close()
        self.assertTrue(os.path.exists(self.state))
        self.kill()
        self.restart()
        self.assertEqual(self.d.ok("dict.get", name="d", key="k0"), "NEW")
        self.assertEqual(self.d.ok("value.get", name="o"), "durable")


if __name__ == "__main__":
    main()
