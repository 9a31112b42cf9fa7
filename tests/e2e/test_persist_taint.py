#!/usr/bin/env python3
"""Persistence's read taints end with their connection: a client that read
an object a failed commit left unwritten, and closed before its answer was
due, leaves nothing behind that holds the answers of later clients (the
core tells the commit barrier of every connection that closes)."""
import os

import test_persist
from mpsuptest import SCALE, main, wait_for


class TaintedClientCloses(test_persist.FailingWrites, test_persist.PersistCase):
    """A failing disk (test_persist.FailingWrites) leaves read taints."""

    def test_later_clients_are_not_held(self):
        self.d.ok("obj.create", name="q", type="queue")
        self.d.ok("queue.put", name="q", item=1)  # unfinished: join waits
        open(self.flag, "w").close()
        # This put meets the failure: unwritten, its answer held.
        held = self.d.client()
        held.send("queue.put", name="q", item=2)
        held.sock.settimeout(0.3)
        with self.assertRaises(OSError):
            held.recv()
        # Joiners of q read it (tainted: it shows the unwritten put) and
        # wait; they hang up before any answer (the daemon reads the join
        # before the end of the stream).
        for _ in range(8):
            j = self.d.client()
            j.send("queue.join", name="q", timeout=60)
            j.close()
            wait_for(lambda: self.d.ok("daemon.info")["clients"] <= 2, what="hang-up seen")
        # New clients (some on the memory of the closed ones) that read
        # nothing unwritten are answered at once, while the disk stays bad.
        clients = [self.d.client() for _ in range(16)]
        for c in clients:
            c.sock.settimeout(5 * SCALE)
            self.assertEqual(c.ok("ping"), "pong")
            c.close()
        self.assertFalse(self.info()["accepting_writes"])
        os.unlink(self.flag)
        held.sock.settimeout(20 * SCALE)
        self.assertTrue(held.recv()["ok"])
        held.close()


if __name__ == "__main__":
    main()
