"""End-to-end tests of the `help` command: the commands a peer may use,
each with its role, parameters and flags, generated from the daemon's
command tables (the access side is in test_access.py)."""
import mpsuptest
from mpsuptest import DaemonTestCase


class Help(DaemonTestCase):
    def test_list_is_the_command_table(self):
        cmds = self.d.ok("help")
        names = [c["name"] for c in cmds]
        self.assertEqual(names, sorted(names))
        self.assertEqual(len(names), len(set(names)))
        for name in ("hello", "ping", "help", "status", "proc.run", "pool.add",
                     "pool.remove", "dict.get", "barrier.wait", "obj.create",
                     "events.subscribe", "task.wait", "daemon.shutdown"):
            self.assertIn(name, names)
        # Every listed command exists: none answers unknown_command.
        with self.d.client() as c:
            for name in names:
                if name in ("daemon.shutdown", "events.subscribe", "proc.logs"):
                    continue
                r = c.call(name, zz_not_a_param=1)
                self.assertNotEqual(r.get("error", {}).get("code"), "unknown_command", r)
        # Every command has a role and well-formed parameters.
        for c in cmds:
            self.assertIn(c["role"], ("read", "state", "run", "admin"), c)
            for p in c["params"]:
                self.assertEqual(set(p), {"name", "type", "optional"}, c)
                self.assertIn(p["type"], ("string", "integer", "number", "boolean", "array",
                                          "object", "timeout", "members", "any"), c)

    def test_one_command(self):
        self.assertEqual(self.d.ok("help", command="dict.get"), {
            "name": "dict.get", "role": "read", "allowed": True,
            "flags": ["needs_object"],
            "params": [{"name": "name", "type": "string", "optional": False},
                       {"name": "key", "type": "string", "optional": False},
                       {"name": "default", "type": "any", "optional": True}]})
        self.assertEqual(self.d.ok("help", command="proc.stop"), {
            "name": "proc.stop", "role": "run", "allowed": True,
            "flags": ["mutates", "blocks", "own"],
            "params": [{"name": "target", "type": "string", "optional": False},
                       {"name": "wait", "type": "boolean", "optional": True}]})
        self.assertEqual(self.d.ok("help", command="queue.get")["flags"], ["mutates", "blocks"])
        self.assertEqual(self.d.ok("help", command="barrier.wait")["flags"],
                         ["mutates", "blocks", "needs_object"])
        self.assertEqual(self.d.ok("help", command="events.subscribe")["flags"], ["streams"])
        self.assertEqual(self.d.ok("help", command="ping")["params"], [])

    def test_errors(self):
        self.assertEqual(self.d.err("help", command="dict.frob"), "unknown_command")
        self.assertEqual(self.d.err("help", command=5), "bad_request")
        self.assertEqual(self.d.err("help", other=1), "bad_request")
        self.assertTrue(self.d.answers())


if __name__ == "__main__":
    mpsuptest.main()
