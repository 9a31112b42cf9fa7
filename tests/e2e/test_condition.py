"""End-to-end tests of the condition type (multiprocessing.Condition):
wait releases and takes the lock back with its recursion depth, notify and
notify_all, timeouts (a notified or timed-out waiter still returns holding
the lock), producer/consumer, and a holder that dies.
"""
import select
import time

from mpsuptest import DaemonTestCase, wait_for, main


def state(c, name="C"):
    return c.ok("obj.get", name=name)


def recv_id(c, rid):
    r = c.recv()
    assert r.get("id") == rid, "got %r, wanted id %r" % (r, rid)
    return r


def pending(c, secs=0.05):
    """Whether c has an answer waiting to be read within secs."""
    return bool(c.buf) or bool(select.select([c.sock], [], [], secs)[0])


class Condition(DaemonTestCase):
    def test_must_hold(self):
        with self.d.client() as a, self.d.client() as b:
            a.ok("obj.create", name="C", type="condition")
            self.assertEqual(a.err("condition.wait", name="C", timeout=0), "conflict")
            self.assertEqual(a.err("condition.notify", name="C"), "conflict")
            self.assertEqual(a.err("condition.notify_all", name="C"), "conflict")
            a.ok("condition.acquire", name="C")
            self.assertEqual(b.err("condition.notify", name="C"), "conflict")
            self.assertEqual(a.err("condition.notify", name="C", n=-1), "bad_request")
            self.assertEqual(a.err("condition.notify", name="C", n="x"), "bad_request")
            self.assertEqual(a.ok("condition.notify", name="C", n=0), {"woken": 0})
            self.assertEqual(a.err("obj.create", name="D", type="condition", value=1),
                             "bad_request")
            self.assertEqual(b.err("condition.wait", name="nosuch"), "not_found")

    def test_notify_hands_over_on_release(self):
        with self.d.client() as cons, self.d.client() as prod:
            cons.ok("condition.acquire", name="C")
            rid = cons.send("condition.wait", name="C")
            wait_for(lambda: state(prod)["waiting"] == 1, what="consumer waiting")
            # wait released the lock
            self.assertEqual(prod.ok("condition.acquire", name="C", timeout=5),
                             {"acquired": True})
            prod.ok("list.append", name="items", value=1)
            self.assertEqual(prod.ok("condition.notify", name="C"), {"woken": 1})
            st = state(prod)
            self.assertEqual((st["waiting"], st["waiters"]), (0, 1))
            self.assertFalse(pending(cons))  # the notifier still holds it
            prod.ok("condition.release", name="C")
            self.assertEqual(recv_id(cons, rid)["result"], {"notified": True})
            # the consumer holds the lock again
            self.assertEqual(prod.ok("condition.acquire", name="C", timeout=0),
                             {"acquired": False})
            self.assertEqual(cons.ok("list.pop", name="items"), 1)
            cons.ok("condition.release", name="C")
            self.assertEqual(cons.err("condition.release", name="C"), "conflict")

    def test_notify_n_and_all(self):
        ws = [self.d.client() for _ in range(4)]
        try:
            with self.d.client() as n:
                rids = []
                for w in ws:
                    w.ok("condition.acquire", name="C")
                    rids.append(w.send("condition.wait", name="C", timeout=30))
                    wait_for(lambda: state(n)["waiting"] == len(rids), what="waiting")
                n.ok("condition.acquire", name="C")
                self.assertEqual(n.ok("condition.notify", name="C", n=2), {"woken": 2})
                n.ok("condition.release", name="C")
                # the first two, in order of waiting, one at a time
                for i in range(2):
                    self.assertEqual(recv_id(ws[i], rids[i])["result"], {"notified": True})
                    self.assertFalse(pending(ws[i + 1], 0.01))
                    ws[i].ok("condition.release", name="C")
                self.assertEqual(state(n)["waiting"], 2)
                n.ok("condition.acquire", name="C")
                self.assertEqual(n.ok("condition.notify_all", name="C"), {"woken": 2})
                n.ok("condition.release", name="C")
                for i in (2, 3):
                    self.assertEqual(recv_id(ws[i], rids[i])["result"], {"notified": True})
                    ws[i].ok("condition.release", name="C")
                self.assertEqual(state(n)["locked"], False)
        finally:
            for w in ws:
                w.close()

    def test_timeout_returns_holding(self):
        with self.d.client() as a, self.d.client() as b:
            a.ok("condition.acquire", name="C")
            t0 = time.monotonic()
            self.assertEqual(a.ok("condition.wait", name="C", timeout=0.1),
                             {"notified": False})
            self.assertGreaterEqual(time.monotonic() - t0, 0.09)
            self.assertEqual(b.ok("condition.acquire", name="C", timeout=0),
                             {"acquired": False})
            # wait(0) lets a lock waiter in first, then takes the lock back
            rid = b.send("condition.acquire", name="C")
            wait_for(lambda: state(a)["waiters"] == 1, what="b waiting for the lock")
            rida = a.send("condition.wait", name="C", timeout=0)
            self.assertEqual(recv_id(b, rid)["result"], {"acquired": True})
            self.assertFalse(pending(a))
            b.ok("condition.release", name="C")
            self.assertEqual(recv_id(a, rida)["result"], {"notified": False})
            a.ok("condition.release", name="C")

    def test_late_reacquire(self):
        """A waiter whose timeout passes while another holds the lock is
        answered only when it has the lock back, notified or not."""
        with self.d.client() as a, self.d.client() as b:
            for notified in (True, False):
                a.ok("condition.acquire", name="C")
                rid = a.send("condition.wait", name="C", timeout=0.2)
                self.assertEqual(b.ok("condition.acquire", name="C", timeout=5),
                                 {"acquired": True})
                if notified:
                    b.ok("condition.notify", name="C")
                t0 = time.monotonic()
                wait_for(lambda: time.monotonic() - t0 > 0.4, what="timeout passed")
                self.assertFalse(pending(a))
                self.assertEqual(state(b)["waiters"], 1)
                b.ok("condition.release", name="C")
                self.assertEqual(recv_id(a, rid)["result"], {"notified": notified})
                a.ok("condition.release", name="C")

    def test_depth_restored(self):
        with self.d.client() as a, self.d.client() as b:
            for _ in range(3):
                self.assertEqual(a.ok("condition.acquire", name="C"), {"acquired": True})
            rid = a.send("condition.wait", name="C")
            self.assertEqual(b.ok("condition.acquire", name="C", timeout=5),
                             {"acquired": True})
            b.ok("condition.notify_all", name="C")
            b.ok("condition.release", name="C")
            self.assertEqual(recv_id(a, rid)["result"], {"notified": True})
            for _ in range(3):
                a.ok("condition.release", name="C")
            self.assertEqual(a.err("condition.release", name="C"), "conflict")
            self.assertFalse(state(a)["locked"])
            self.assertFalse(a.ok("condition.locked", name="C"))
            a.ok("condition.acquire", name="C")
            self.assertTrue(b.ok("condition.locked", name="C"))
            self.assertEqual(b.err("condition.locked", name="nosuch"), "not_found")

    def test_holder_death(self):
        """The holder's death releases the lock to a lock waiter (abandoned)
        and wakes nobody in wait."""
        with self.d.client() as w, self.d.client() as b:
            w.ok("condition.acquire", name="C")
            ridw = w.send("condition.wait", name="C")
            wait_for(lambda: state(b)["waiting"] == 1, what="waiting")
            a = self.d.client()
            a.ok("condition.acquire", name="C")
            ridb = b.send("condition.acquire", name="C")
            wait_for(lambda: state(a)["waiters"] == 1, what="b waiting for the lock")
            a.close()
            self.assertEqual(recv_id(b, ridb)["result"], {"acquired": True, "abandoned": True})
            self.assertFalse(pending(w))
            self.assertEqual(state(b)["waiting"], 1)
            b.ok("condition.notify", name="C")
            b.ok("condition.release", name="C")
            self.assertEqual(recv_id(w, ridw)["result"], {"notified": True})
            w.ok("condition.release", name="C")

    def test_waiter_death_and_delete(self):
        with self.d.client() as a, self.d.client() as b:
            gone = self.d.client()
            gone.ok("condition.acquire", name="C")
            gone.send("condition.wait", name="C")
            wait_for(lambda: state(a)["waiting"] == 1, what="waiting")
            gone.close()
            wait_for(lambda: state(a)["waiting"] == 0, what="waiter gone")
            a.ok("condition.acquire", name="C")
            self.assertEqual(a.ok("condition.notify", name="C"), {"woken": 0})
            rid = a.send("condition.wait", name="C")
            wait_for(lambda: state(b)["waiting"] == 1, what="waiting")
            b.ok("obj.delete", name="C")
            self.assertEqual(recv_id(a, rid)["error"]["code"], "not_found")


class ConditionLimits(DaemonTestCase):
    main_config = "max_waiters = 1\n"

    def test_max_waiters_keeps_lock(self):
        with self.d.client() as a, self.d.client() as b:
            b.ok("condition.acquire", name="C")
            ridb = b.send("condition.wait", name="C")
            wait_for(lambda: state(a)["waiting"] == 1, what="waiting")
            a.ok("condition.acquire", name="C")
            self.assertEqual(a.err("condition.wait", name="C"), "limit")
            # refused: a still holds it
            self.assertEqual(a.ok("condition.notify", name="C"), {"woken": 1})
            a.ok("condition.release", name="C")
            self.assertEqual(recv_id(b, ridb)["result"], {"notified": True})


if __name__ == "__main__":
    main()
