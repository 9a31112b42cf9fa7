"""End-to-end tests of mpctl's meta commands, options, output and exit
statuses (DESIGN.md §4) against a real mpsupd. Process, pool and shared-state
commands are tested with the modules that serve them."""
import json
import os
import socket
import subprocess
import tempfile
import threading

import mpsuptest
from mpsuptest import MPCTL, SCALE, DaemonTestCase, wait_for


def run_mpctl(*args, env=None, timeout=20):
    """Run mpctl without a daemon (MPSUP_SOCKET removed unless given)."""
    e = dict(os.environ)
    e.pop("MPSUP_SOCKET", None)
    if env:
        e.update(env)
    return subprocess.run([MPCTL] + list(args), capture_output=True, text=True,
                          env=e, timeout=timeout * SCALE)


class FakeServer:
    """A Unix socket that accepts connections and then either closes them at
    once or holds them without answering."""

    def __init__(self, mode):
        self.dir = tempfile.mkdtemp(prefix="mpsup-ctl-")
        self.path = os.path.join(self.dir, "fake.sock")
        self.mode = mode
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.held = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "close":
                try:
                    c.recv(65536)
                except OSError:
                    pass
                c.close()
            else:
                self.held.append(c)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class TestMeta(DaemonTestCase):
    def test_hello_human(self):
        p = self.d.mpctl("hello", check=0)
        fields = dict(line.split(":", 1) for line in p.stdout.splitlines())
        fields = {k: v.strip() for k, v in fields.items()}
        self.assertEqual(fields["server"], "mpsupd")
        self.assertEqual(fields["protocol"], "1")
        self.assertEqual(int(fields["pid"]), self.d.pid())
        self.assertIn("version", fields)
        self.assertRegex(fields["uptime"], r"^\d+[smhd]")
        self.assertEqual(p.stderr, "")

    def test_hello_json(self):
        p = self.d.mpctl("--json", "hello", check=0)
        self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout)
        r = json.loads(p.stdout)
        self.assertEqual(r["server"], "mpsupd")
        self.assertEqual(r["protocol"], 1)
        self.assertEqual(r["pid"], self.d.pid())
        self.assertIsInstance(r["uptime"], (int, float))
        self.assertEqual(r, self.d.ok("hello") | {"uptime": r["uptime"]})

    def test_ping(self):
        self.assertEqual(self.d.mpctl("ping", check=0).stdout, "pong\n")

    def test_call_ping(self):
        p = self.d.mpctl("call", '{"cmd":"ping","id":7}', check=0)
        self.assertEqual(len(p.stdout.splitlines()), 1)
        r = json.loads(p.stdout)
        self.assertIs(r["ok"], True)
        self.assertEqual(r["id"], 7)

    def test_call_unknown_command(self):
        p = self.d.mpctl("call", '{"cmd":"nope"}', check=1)
        r = json.loads(p.stdout)
        self.assertIs(r["ok"], False)
        self.assertEqual(r["error"]["code"], "unknown_command")
        self.assertIn("unknown_command", p.stdout)

    def test_call_raw_line_not_json(self):
        p = self.d.mpctl("call", "this is not json", check=1)
        self.assertEqual(json.loads(p.stdout)["error"]["code"], "bad_request")
        self.assertTrue(self.d.answers())

    def test_call_needs_one_request(self):
        for args in (["call"], ["call", "{}", "{}"], ["call", '{"cmd":\n"ping"}']):
            p = self.d.mpctl(*args, check=2)
            self.assertIn("usage:", p.stderr)

    def test_info(self):
        r = json.loads(self.d.mpctl("--json", "info", check=0).stdout)
        self.assertEqual(r["pid"], self.d.pid())
        p = self.d.mpctl("info", check=0)
        self.assertIn("pid:", p.stdout)

    def test_socket_option_overrides_environment(self):
        # d.mpctl sets MPSUP_SOCKET to the daemon; -s must win over it.
        bad = os.path.join(self.d.dir, "absent.sock")
        p = self.d.mpctl("-s", bad, "hello", check=3)
        self.assertIn(bad, p.stderr)
        p = run_mpctl("-s", self.d.socket, "--json", "hello")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["pid"], self.d.pid())

    def test_environment_socket(self):
        p = run_mpctl("ping", env={"MPSUP_SOCKET": self.d.socket})
        self.assertEqual((p.returncode, p.stdout), (0, "pong\n"), p.stderr)

    def test_shutdown(self):
        self.d.mpctl("shutdown", check=0)
        wait_for(lambda: self.d.proc.poll() is not None, what="mpsupd to exit")
        self.assertEqual(self.d.proc.returncode, 0)
        p = self.d.mpctl("hello", check=3)
        self.assertEqual(p.stderr.splitlines()[1],
                         "mpctl: is mpsupd running? That socket is from MPSUP_SOCKET; name "
                         "another with -s SOCKET or MPSUP_SOCKET.")


class TestNoDaemon(mpsuptest.unittest.TestCase):
    def test_unreachable(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "nothing.sock")
            for args in (["-s", path, "hello"], ["-s", path, "call", '{"cmd":"ping"}']):
                p = run_mpctl(*args)
                self.assertEqual(p.returncode, 3, p.stderr)
                self.assertEqual(p.stdout, "")
                self.assertEqual(p.stderr, (
                    "mpctl: cannot reach mpsupd at %s: No such file or directory\n"
                    "mpctl: is mpsupd running? That socket is from -s; name another with "
                    "-s SOCKET or MPSUP_SOCKET.\n" % path))
            p = run_mpctl("hello", env={"MPSUP_SOCKET": path})
            self.assertEqual(p.returncode, 3)
            self.assertEqual(p.stderr.splitlines()[0],
                             "mpctl: cannot reach mpsupd at %s: No such file or directory" % path)
            self.assertIn("That socket is from MPSUP_SOCKET;", p.stderr)

    def test_socket_path_too_long(self):
        p = run_mpctl("-s", "/tmp/" + "x" * 200, "hello")
        self.assertEqual(p.returncode, 3)
        self.assertEqual(len(p.stderr.splitlines()), 2)
        self.assertIn("name another with -s SOCKET or MPSUP_SOCKET", p.stderr)

    def test_connection_dropped(self):
        srv = FakeServer("close")
        try:
            for args in (["hello"], ["call", '{"cmd":"ping"}']):
                p = run_mpctl("-s", srv.path, *args)
                self.assertEqual(p.returncode, 3, p.stderr)
                self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
                self.assertIn("cannot reach mpsupd at %s" % srv.path, p.stderr)
        finally:
            srv.close()

    def test_timeout_option(self):
        srv = FakeServer("hold")
        try:
            p = run_mpctl("-s", srv.path, "-t", "0.3", "hello")
            self.assertEqual(p.returncode, 4, p.stderr)
            self.assertIn("timeout", p.stderr)
        finally:
            srv.close()

    def test_usage_errors(self):
        cases = [
            [],                      # no command
            ["frobnicate"],          # unknown command
            ["--bogus", "hello"],    # unknown option
            ["-t"],                  # option without its argument
            ["-t", "soon", "hello"], # not a number
            ["-t", "-1", "hello"],
            ["hello", "extra"],
            ["status", "a", "b"],
            ["join"],
            ["join", "x", "--timeout", "later"],
            ["join", "x", "--bogus"],
            ["join", "x", "y"],
            ["wait", "--timeout", "-1", "t"],
            ["signal", "99999999999999999999999", "x"],
            ["scale", "web", "many"],
            ["pool", "add", "w", "NOEQUALS"],
            ["logs", "-n", "many", "x"],
            ["run"],
            ["run", "--env", "NOEQUALS", "--", "true"],
            ["scale", "web"],
            ["scale", "web", "-3"],
            ["dict", "get"],
            ["dict", "get", "d"],
            ["dict", "set", "d", "k"],
            ["dict", "keys", "d", "extra"],
            ["value", "cas", "v", "1"],
            ["obj", "create", "x"],
            ["obj", "create", "x", "queue", "[1]"],
            ["obj", "frob", "x"],
        ]
        for args in cases:
            # No daemon anywhere: a usage error is found before connecting.
            p = run_mpctl("-s", "/nonexistent/mpsupd.sock", *args)
            self.assertEqual(p.returncode, 2, "mpctl %s: %s" % (args, p.stderr))
            self.assertTrue(p.stderr.startswith("mpctl: "), p.stderr)
            self.assertIn("usage: mpctl", p.stderr)
            self.assertEqual(p.stdout, "")

    def test_version(self):
        p = run_mpctl("--version")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^mpctl \d+\.\d+\.\d+\S*\n$")

    def test_help(self):
        p = run_mpctl("--help")
        self.assertEqual(p.returncode, 0)
        for word in ("status", "run", "logs", "dict", "queue", "call", "--json"):
            self.assertIn(word, p.stdout)
        p = run_mpctl("help", "join")
        self.assertEqual(p.returncode, 0)
        self.assertIn("join TARGET", p.stdout)
        p = run_mpctl("dict", "-h")
        self.assertEqual(p.returncode, 0)
        self.assertIn("dict incr NAME KEY [BY]", p.stdout)


class TestAgainstSupervisor(DaemonTestCase):
    """mpctl's tables against a real daemon with pools."""
    config = "[pool:web]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 0\n"

    def test_pools_and_status_tables(self):
        wait_for(lambda: all(p["state"] == "running" for p in self.d.ok("status")),
                 what="workers running")
        out = self.d.mpctl("pools", check=0).stdout
        self.assertRegex(out, r"(?m)^NAME\s+MODE")
        self.assertRegex(out, r"(?m)^web\s+service\s+2\s+2")
        out = self.d.mpctl("status", check=0).stdout
        self.assertRegex(out, r"(?m)^web:0\s+running\s+\d+")
        self.assertRegex(out, r"(?m)^web:1\s+running\s+\d+")
        self.assertEqual(self.d.mpctl("is-alive", "web:1").returncode, 0)

    def on_a_tty(self, env, *args):
        """mpctl's output when its stdout is a terminal."""
        import pty
        master, slave = pty.openpty()
        p = subprocess.Popen([MPCTL] + list(args), stdout=slave, env=env)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        self.assertEqual(p.wait(timeout=10 * SCALE), 0)
        return out

    def test_colour_only_on_a_tty(self):
        wait_for(lambda: all(p["state"] == "running" for p in self.d.ok("status")),
                 what="workers running")
        self.assertNotIn("\033[", self.d.mpctl("status", check=0).stdout)
        env = dict(os.environ, MPSUP_SOCKET=self.d.socket)
        env.pop("NO_COLOR", None)
        self.assertIn(b"\033[32mrunning", self.on_a_tty(env, "status"))
        env["NO_COLOR"] = "1"
        self.assertNotIn(b"\033[", self.on_a_tty(env, "status"))

    def test_value_add_through_mpctl(self):
        self.assertEqual(self.d.mpctl("value", "add", "hits", "5", check=0).stdout.strip(), "5")
        self.assertEqual(self.d.mpctl("value", "get", "hits", check=0).stdout.strip(), "5")


class TestStateCommands(DaemonTestCase):
    """mpctl TYPE OP NAME [ARGS]: argument and result rules, exit statuses."""

    def test_timeouts_exit_4(self):
        p = self.d.mpctl("queue", "get", "q", "0.1", check=4)
        self.assertIn("empty", p.stderr)
        self.d.mpctl("queue", "get", "q", "0", check=4)
        self.d.ok("obj.create", name="small", type="queue", maxsize=1)
        self.d.mpctl("queue", "put", "small", "1", check=0)
        p = self.d.mpctl("queue", "put", "small", "2", "0.1", check=4)
        self.assertIn("full", p.stderr)
        self.d.ok("obj.create", name="b", type="barrier", parties=2)
        p = self.d.mpctl("barrier", "wait", "b", "0.1", check=4)
        self.assertIn("broken", p.stderr)
        # Broken before: an error, not a timeout of this wait.
        p = self.d.mpctl("barrier", "wait", "b", "10", check=1)
        self.assertIn("broken", p.stderr)
        self.d.mpctl("barrier", "wait", "b", check=1)
        # Broken while it waits by another wait's timeout: an error too.
        self.d.ok("obj.create", name="b2", type="barrier", parties=3)
        env = dict(self.d.env, MPSUP_SOCKET=self.d.socket)
        waiter = subprocess.Popen([MPCTL, "barrier", "wait", "b2", "60"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: self.d.ok("obj.get", name="b2")["n_waiting"] == 1,
                     what="mpctl waiting at the barrier")
            self.d.mpctl("barrier", "wait", "b2", "0.1", check=4)
            _, err = waiter.communicate(timeout=30 * SCALE)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        self.assertEqual(waiter.returncode, 1, err)
        self.assertIn("broken", err)
        self.assertEqual(self.d.mpctl("event", "wait", "e", "0", check=4).stdout,
                         '{"set":false}\n')
        # Without a timeout these ops would block; with one that does not
        # expire they succeed.
        self.d.ok("queue.put", name="q", item="job")
        self.assertEqual(self.d.mpctl("queue", "get", "q", "5", check=0).stdout, "job\n")
        self.d.mpctl("queue", "get", "small", "5", check=0)
        # Other errors of these ops stay 1.
        self.d.ok("dict.set", name="notq", key="k", value=1)
        self.d.mpctl("queue", "get", "notq", "0", check=1)

    def test_add_defaults_to_one(self):
        self.assertEqual(self.d.mpctl("value", "add", "v", check=0).stdout, "1\n")
        self.assertEqual(self.d.mpctl("value", "add", "v", check=0).stdout, "2\n")
        self.assertEqual(self.d.mpctl("value", "add", "v", "0.5", check=0).stdout, "2.5\n")
        self.d.ok("obj.create", name="a", type="array", size=3)
        self.assertEqual(self.d.mpctl("array", "add", "a", "1", check=0).stdout, "1\n")
        self.assertEqual(self.d.mpctl("array", "add", "a", "1", "5", check=0).stdout, "6\n")
        self.assertEqual(self.d.ok("obj.get", name="a"), [0, 6, 0])
        self.d.mpctl("array", "add", "a", check=2)
        self.d.mpctl("value", "add", "v", "1", "2", check=2)

    def test_arguments_json_else_string(self):
        cases = [("1", 1), ("-2.5", -2.5), ("true", True), ("null", None),
                 ('{"a":1}', {"a": 1}), ("[1,\"x\"]", [1, "x"]), ('"quoted"', "quoted"),
                 ("hello", "hello"), ("007", "007"), ("two words", "two words"),
                 ("{broken", "{broken"), ("", "")]
        for i, (text, value) in enumerate(cases):
            self.d.mpctl("dict", "set", "d", "k%d" % i, text, check=0)
            self.assertEqual(self.d.ok("dict.get", name="d", key="k%d" % i), value, text)
        # Dict keys are strings even when they look like JSON.
        self.d.mpctl("dict", "set", "d", "1", "x", check=0)
        self.assertEqual(self.d.ok("dict.get", name="d", key="1"), "x")

    def test_results_print_rule(self):
        self.d.ok("dict.update", name="d", items={"s": "hello world", "n": 7, "o": {"a": [1]},
                                                   "q": 'say "hi"', "z": None})
        out = lambda *a: self.d.mpctl(*a, check=0).stdout
        self.assertEqual(out("dict", "get", "d", "s"), "hello world\n")  # a string: bare
        self.assertEqual(out("dict", "get", "d", "q"), 'say "hi"\n')
        self.assertEqual(out("dict", "get", "d", "n"), "7\n")
        self.assertEqual(json.loads(out("dict", "get", "d", "o")), {"a": [1]})
        self.assertEqual(out("dict", "get", "d", "z"), "")  # null: nothing
        self.assertEqual(out("--json", "dict", "get", "d", "s"), '"hello world"\n')
        self.assertEqual(out("--json", "dict", "get", "d", "z"), "null\n")

    def test_objects_table(self):
        self.assertEqual(self.d.mpctl("objects", check=0).stdout, "")
        self.d.ok("dict.update", name="config", items={"a": 1, "b": 2})
        self.d.ok("queue.put", name="jobs", item=1)
        self.d.ok("obj.create", name="a-long-array-name", type="array", size=12)
        lines = self.d.mpctl("objects", check=0).stdout.splitlines()
        self.assertEqual([l.split() for l in lines],
                         [["NAME", "TYPE", "SIZE"], ["a-long-array-name", "array", "12"],
                          ["config", "dict", "2"], ["jobs", "queue", "1"]])
        # Aligned: every column starts at the same offset on every line.
        for col in ("TYPE", "SIZE"):
            at = lines[0].index(col)
            for l in lines[1:]:
                self.assertNotEqual(l[at], " ", lines)
                self.assertEqual(l[at - 1], " ", lines)
        self.assertEqual(self.d.mpctl("obj", "list", check=0).stdout, "\n".join(lines) + "\n")
        rows = json.loads(self.d.mpctl("--json", "objects", check=0).stdout)
        self.assertEqual([(r["name"], r["type"], r["size"]) for r in rows],
                         [("a-long-array-name", "array", 12), ("config", "dict", 2),
                          ("jobs", "queue", 1)])
        self.d.mpctl("objects", "extra", check=2)


class TestProcessCommands(DaemonTestCase):
    """mpctl's process commands driving a real daemon: exit statuses and
    output."""
    config = "[pool:web]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 0\n"

    def rec(self, name):
        return {r["name"]: r for r in self.d.ok("status", target=name)}[name]

    def running(self, name):
        return wait_for(lambda: (lambda r: r if r["state"] == "running" else None)(self.rec(name)),
                        what="%s running" % name)

    def test_stop_start_restart(self):
        pid = self.running("web:0")["pid"]
        self.d.mpctl("stop", "web:0", check=0)
        self.assertEqual(self.rec("web:0")["state"], "stopped")
        self.assertEqual(self.d.mpctl("is-alive", "web:0", check=1).stdout.strip(), "false")
        self.d.mpctl("start", "web:0", check=0)
        pid2 = self.running("web:0")["pid"]
        self.assertNotEqual(pid2, pid)
        self.d.mpctl("restart", "web", check=0)
        self.assertNotEqual(self.running("web:0")["pid"], pid2)
        self.running("web:1")
        self.assertEqual(self.d.mpctl("stop", "nosuch").returncode, 1)

    def test_terminate_kill_signal(self):
        with self.d.client() as c:
            for n in ("t", "k", "s"):
                c.ok("proc.run", argv=["sleep", "1000"], name=n, daemon=True)
        self.d.mpctl("terminate", "t", check=0)
        self.d.mpctl("kill", "k", check=0)
        self.d.mpctl("signal", "USR1", "s", check=0)
        self.assertEqual(self.d.mpctl("join", "t", check=0).stdout.strip(), "-15")
        self.assertEqual(self.d.mpctl("join", "k", check=0).stdout.strip(), "-9")
        self.assertEqual(self.d.mpctl("join", "s", check=0).stdout.strip(), "-10")
        self.assertEqual(self.d.mpctl("exitcode", "k", check=0).stdout.strip(), "-9")
        self.assertNotEqual(self.d.mpctl("signal", "NOSUCHSIG", "web:0").returncode, 0)

    def test_run_join_exitcode_is_alive_forget(self):
        out = self.d.mpctl("run", "--name", "job", "--env", "GREETING=hi", "--",
                           "sh", "-c", 'echo "$GREETING"; exit 3', check=0).stdout.split()
        self.assertEqual(out[0], "job")
        self.assertRegex(out[1], r"^\d+$")
        self.assertEqual(self.d.mpctl("join", "job", check=0).stdout.strip(), "3")
        self.assertEqual(self.d.mpctl("exitcode", "job", check=0).stdout.strip(), "3")
        self.assertEqual(self.d.mpctl("is-alive", "job", check=1).stdout.strip(), "false")
        self.assertEqual(self.d.mpctl("logs", "job", check=0).stdout, "hi\n")
        self.d.mpctl("forget", "job", check=0)
        self.assertEqual(self.d.err("status", target="job"), "not_found")
        self.assertEqual(self.d.mpctl("exitcode", "job").returncode, 1)
        # a generated name
        name = self.d.mpctl("run", "true", check=0).stdout.split()[0]
        self.assertRegex(name, r"^run-\d+$")

    def test_join_timeout_exits_4(self):
        self.d.mpctl("run", "--name", "long", "--daemon", "sleep", "1000", check=0)
        p = self.d.mpctl("join", "long", "--timeout", "0.2", check=4)
        self.assertIn("still alive", p.stderr)
        self.assertEqual(self.d.mpctl("is-alive", "long", check=0).stdout.strip(), "true")
        self.assertEqual(self.d.mpctl("exitcode", "long", check=0).stdout.strip(), "null")
        # a live one-shot cannot be forgotten
        self.assertEqual(self.d.mpctl("forget", "long").returncode, 1)
        self.d.mpctl("kill", "long", check=0)

    def test_run_as_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        import pwd
        self.d.mpctl("run", "--name", "nb", "--user", "nobody", "--", "id", "-u", check=0)
        self.d.mpctl("join", "nb", check=0)
        self.assertEqual(self.d.mpctl("logs", "nb", check=0).stdout.strip(),
                         str(pwd.getpwnam("nobody").pw_uid))
        p = self.d.mpctl("run", "--user", "no-such-user-mp", "--", "true", check=1)
        self.assertIn("no such user", p.stderr)

    def test_logs_n(self):
        self.d.mpctl("run", "--name", "many", "--", "sh", "-c", "seq 1 10", check=0)
        self.d.mpctl("join", "many", check=0)
        self.assertEqual(self.d.mpctl("logs", "-n", "3", "many", check=0).stdout, "8\n9\n10\n")
        self.assertEqual(len(self.d.mpctl("logs", "many", check=0).stdout.split()), 10)

    def test_scale(self):
        self.running("web:1")
        self.d.mpctl("scale", "web", "3", check=0)
        self.running("web:2")
        self.d.mpctl("scale", "web", "1", check=0)
        wait_for(lambda: len(self.d.ok("status", target="web")) == 1, what="web shrunk")
        self.assertEqual(self.d.mpctl("scale", "nosuch", "1").returncode, 1)
        self.assertEqual(self.d.mpctl("scale", "web", "x").returncode, 2)

    def test_reload(self):
        self.running("web:1")
        self.assertEqual(self.d.mpctl("reload", check=0).stdout.strip(), "no changes")
        self.d.write_config("[pool:web]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 0\n"
                            "[pool:api]\ncommand = sleep 1000\nstart_secs = 0\n")
        self.assertEqual(self.d.mpctl("reload", check=0).stdout.strip(), "added: api")
        self.running("api:0")
        self.d.write_config("[pool:web]\ncommand = sleep 1000\nprocesses = 2\nstart_secs = 0\n"
                            "[pool:api]\ncommand = sleep 1000\nstart_secs = 0\n"
                            "[pool:big]\ncommand = sleep 1000\nprocesses = 9\n",
                            "max_processes = 4\n")
        p = self.d.mpctl("reload", check=1)
        self.assertIn("mpctl: reload: pool big: not added", p.stderr)
        self.d.write_config("[pool:web]\nbogus = 1\n")
        self.assertEqual(self.d.mpctl("reload").returncode, 1)



class TestHumanOutput(DaemonTestCase):
    """What a newcomer reads: a table or one short sentence per command, the
    exact words; JSON only with --json (which, like -s, may follow the
    command)."""
    config = ("[pool:clock]\ncommand = sleep 1000\nstart_secs = 0\n"
              "[pool:broken]\ncommand = /nonexistent/prog\nstart_retries = 0\nstart_secs = 0\n"
              "[pool:stubborn]\ncommand = sh -c \"trap '' TERM; while :; do sleep 0.1; done\"\n"
              "start_secs = 0\nstop_timeout = 3\nautostart = false\n")

    def running_pid(self, name):
        def pid():
            r = self.d.ok("status", target=name)[0]
            return r["pid"] if r["state"] == "running" else None
        return wait_for(pid, what="%s to run" % name)

    def test_global_options_after_the_command(self):
        p = self.d.mpctl("status", "clock", "--json", check=0)
        self.assertEqual(json.loads(p.stdout)[0]["name"], "clock:0")
        p = run_mpctl("ping", "-s", self.d.socket)
        self.assertEqual((p.returncode, p.stdout), (0, "pong\n"), p.stderr)
        p = run_mpctl("dict", "set", "d", "k", "1", "--socket=" + self.d.socket, "-j")
        self.assertEqual((p.returncode, p.stdout), (0, "null\n"), p.stderr)
        # After "--" an option is an argument.
        p = self.d.mpctl("dict", "get", "d", "--", "--json", check=1)
        p = self.d.mpctl("run", "--name", "echo", "--json", "--", "echo", "--json", check=0)
        self.assertEqual(json.loads(p.stdout)["name"], "echo")
        wait_for(lambda: self.d.ok("status", target="echo")[0]["state"] == "exited",
                 what="echo to end")
        self.assertEqual(self.d.mpctl("logs", "echo", check=0).stdout, "--json\n")

    def test_did_you_mean(self):
        p = self.d.mpctl("stauts", check=2)
        self.assertEqual(p.stderr.splitlines()[0],
                         "mpctl: unknown command 'stauts'; did you mean 'status'?")
        p = self.d.mpctl("help", "pols", check=2)
        self.assertEqual(p.stderr.splitlines()[0],
                         "mpctl: unknown command 'pols'; did you mean 'pools'?")
        p = self.d.mpctl("dict", "frob", "x", check=1)
        self.assertEqual(p.stderr,
                         "mpctl: unknown_command: unknown command 'dict.frob'\n"
                         "mpctl: dict operations: cas clear del get has incr items keys len "
                         "pop set setdefault update values\n")
        p = self.d.mpctl("queue", "task-dne", "q", check=1)
        self.assertEqual(p.stderr.splitlines()[1:], [
            "mpctl: queue operations: empty full get join put size task-done",
            "mpctl: did you mean 'queue task-done'?"])

    def test_help_command(self):
        full = self.d.mpctl("dict", "-h", check=0).stdout
        self.assertEqual(self.d.mpctl("help", "dict", check=0).stdout, full)
        self.assertIn("  dict incr NAME KEY [BY]\n", full)
        self.assertEqual(self.d.mpctl("help", "dict.get", check=0).stdout,
                         "dict.get (protocol command; role read, needs_object)\n"
                         "  name       string\n"
                         "  key        string\n"
                         "  default    any, optional\n"
                         "Send it with: mpctl call '{\"cmd\":\"dict.get\", ...}'\n")
        p = self.d.mpctl("help", "dict.frob", check=1)
        self.assertEqual(p.stderr, "mpctl: unknown_command: unknown command 'dict.frob'\n")
        self.assertIn("pool add POOL KEY=VALUE...", self.d.mpctl("help", check=0).stdout)

    def test_status_reason(self):
        wait_for(lambda: self.d.ok("status", target="broken")[0]["state"] == "fatal",
                 what="broken to give up")
        self.assertEqual(self.d.mpctl("status", "broken", check=0).stdout,
                         "NAME      STATE  PID  UPTIME  EXIT  RESTARTS  REASON\n"
                         "broken:0  fatal  -    -       127   0         "
                         "exec: No such file or directory\n")
        pid = self.running_pid("clock:0")
        out = self.d.mpctl("status", "clock", check=0).stdout.splitlines()
        self.assertEqual(out[0].split(), ["NAME", "STATE", "PID", "UPTIME", "EXIT", "RESTARTS"])
        self.assertEqual(out[1].split()[:3], ["clock:0", "running", str(pid)])

    def test_kill_shows_the_state_after(self):
        pid = self.running_pid("clock:0")
        out = self.d.mpctl("kill", "clock:0", check=0).stdout.splitlines()
        row = dict(zip(out[0].split(), out[1].split()))
        # Restarted (restart = always) or on its way: not the killed pid.
        self.assertNotEqual(row["PID"], str(pid), out)
        self.assertIn(row["STATE"], ("starting", "running", "backoff"), out)
        pid = self.running_pid("clock:0")
        out = self.d.mpctl("terminate", "clock", check=0).stdout.splitlines()
        self.assertNotIn(str(pid), out[1].split(), out)
        self.d.mpctl("stop", "clock", check=0)
        out = self.d.mpctl("stop", "clock", check=0).stdout.splitlines()
        self.assertEqual(out[1].split()[:3], ["clock:0", "stopped", "-"])

    def test_slow_stop_says_what_it_waits_for(self):
        self.d.mpctl("start", "stubborn", check=0)
        p = self.d.mpctl("stop", "stubborn", check=0)
        self.assertEqual(p.stderr,
                         "mpctl: stopping stubborn: waiting for it to exit (its stop signal, "
                         "then SIGKILL after the pool's stop_timeout)...\n")
        self.assertEqual(p.stdout.splitlines()[1].split()[:2], ["stubborn:0", "stopped"])
        # A quick stop says nothing.
        self.running_pid("clock:0")
        self.assertEqual(self.d.mpctl("stop", "clock", check=0).stderr, "")

    def test_sentences(self):
        self.running_pid("clock:0")
        self.assertEqual(self.d.mpctl("signal", "winch", "clock", check=0).stdout,
                         "sent SIGWINCH to clock:0\n")
        self.assertEqual(self.d.mpctl("signal", "SIGCONT", "clock:0", check=0).stdout,
                         "sent SIGCONT to clock:0\n")
        self.assertEqual(self.d.mpctl("scale", "clock", "2", check=0).stdout,
                         "pool clock: 2 processes\n")
        self.assertEqual(self.d.mpctl("scale", "clock", "1", check=0).stdout,
                         "pool clock: 1 process\n")
        self.assertEqual(self.d.mpctl("pool", "add", "batch", "command=sleep 50",
                                      "autostart=false", check=0).stdout,
                         "added pool batch (1 process, not started)\n")
        self.assertEqual(self.d.ok("status", target="batch")[0]["state"], "stopped")
        self.assertEqual(self.d.mpctl("pool", "add", "batch", "command=sleep 50",
                                      check=1).stderr,
                         "mpctl: exists: a pool or process named 'batch' exists\n")
        self.assertEqual(self.d.mpctl("pool", "remove", "batch", check=0).stdout,
                         "removed pool batch\n")
        self.assertEqual(self.d.err("status", target="batch"), "not_found")
        self.assertEqual(self.d.mpctl("obj", "create", "a", "array", '{"size": 2}',
                                      check=0).stdout, "created array a\n")
        self.assertEqual(self.d.mpctl("obj", "create", "a", "array", '{"size": 2}',
                                      check=0).stdout,
                         "array a exists already with these options\n")
        self.assertEqual(self.d.mpctl("obj", "delete", "a", check=0).stdout, "deleted a\n")
        self.d.mpctl("run", "--name", "once", "--", "true", check=0)
        wait_for(lambda: self.d.ok("status", target="once")[0]["state"] == "exited",
                 what="once to end")
        self.assertEqual(self.d.mpctl("forget", "once", check=0).stdout, "forgot once\n")
        self.assertEqual(self.d.mpctl("reopen-logs", check=0).stdout, "log files reopened\n")
        self.assertEqual(self.d.mpctl("shutdown", check=0).stdout, "mpsupd is shutting down\n")
        wait_for(lambda: self.d.proc.poll() is not None, what="mpsupd to exit")

    def test_missing_objects(self):
        p = self.d.mpctl("value", "get", "hitz", check=1)
        self.assertEqual(p.stderr, "mpctl: not_found: no value named hitz\n")
        self.assertEqual(self.d.mpctl("objects", check=0).stdout, "")
        p = self.d.mpctl("barrier", "wait", "b", "0", check=1)
        self.assertEqual(p.stderr, "mpctl: not_found: no barrier named b "
                                   "(create it with obj.create)\n")


class TestCheckConfig(mpsuptest.unittest.TestCase):
    def test_one_pool_is_singular(self):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "c.conf")
            with open(conf, "w") as f:
                f.write("[pool:web]\ncommand = sleep 1\n")
            p = subprocess.run([mpsuptest.MPSUPD, "--check-config", conf],
                               capture_output=True, text=True, timeout=20 * SCALE)
            self.assertEqual(p.stdout, "%s: configuration ok (1 pool)\n" % conf, p.stderr)

if __name__ == "__main__":
    mpsuptest.main()
