"""End-to-end tests of process reasons: every record that is not running
says why (exec failure, exit status, signal, stop by request), in status,
in process.state events and in mpctl status's REASON column."""
import os
import signal

import mpsuptest
from mpsuptest import DaemonTestCase, wait_for

CONFIG = """
[pool:badexec]
command = /nonexistent/prog
start_retries = 0
[pool:three]
command = sh -c 'exit 3'
restart = never
start_secs = 0
[pool:victim]
command = sleep 1000
restart = never
start_secs = 0
[pool:idle]
command = sleep 1000
start_secs = 0
[pool:manual]
command = sleep 1000
autostart = no
"""


class Reasons(DaemonTestCase):
    config = CONFIG

    def rec(self, name):
        return self.d.ok("status", target=name)[0]

    def wait_reason(self, name, state, reason):
        return wait_for(lambda: (lambda r: r if r["state"] == state and r["reason"] == reason
                                 else None)(self.rec(name)),
                        what="%s %s with reason %r (now %r)" % (name, state, reason,
                                                               self.rec(name)))

    def test_exec_failure(self):
        self.wait_reason("badexec:0", "fatal", "exec: No such file or directory")

    def test_exit_status(self):
        self.wait_reason("three:0", "exited", "exit 3")

    def test_killed_by_signal(self):
        r = wait_for(lambda: (lambda r: r if r["state"] == "running" else None)(
            self.rec("victim:0")), what="victim running")
        self.assertIsNone(r["reason"])
        os.kill(r["pid"], signal.SIGKILL)
        self.wait_reason("victim:0", "exited", "killed by SIGKILL")

    def test_stopped_by_request_and_event(self):
        wait_for(lambda: self.rec("idle:0")["state"] == "running", what="idle running")
        with self.d.client() as ev:
            ev.send("events.subscribe", topics=["process"])
            self.assertTrue(ev.recv()["ok"])
            self.d.ok("proc.stop", target="idle:0")
            self.wait_reason("idle:0", "stopped", "stopped by request")
            while True:
                e = ev.recv()
                if e.get("event") == "process.state" and e.get("to") == "stopped":
                    self.assertEqual(e["reason"], "stopped by request")
                    break

    def test_not_started(self):
        self.assertEqual(self.rec("manual:0")["reason"], "not started")

    def test_status_column(self):
        self.wait_reason("three:0", "exited", "exit 3")
        out = self.d.mpctl("status", "three", check=0).stdout.splitlines()
        self.assertEqual(out[0].split()[-1], "REASON")
        self.assertTrue(out[1].endswith("exit 3"), out)


if __name__ == "__main__":
    mpsuptest.main()
