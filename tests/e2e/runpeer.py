"""Unprivileged peers for the end-to-end tests of the `run` role: users
created for the test (useradd, removed after) and a protocol client that
runs as one of them in a child process.

The client reads one JSON command per stdin line and writes one JSON answer
per stdout line, so a test can keep connections open, and kill the client
(SIGKILL) to see what the daemon does with what it owned.
"""
import json
import os
import pwd
import shutil
import subprocess
import sys

from mpsuptest import DEFAULT_DEADLINE

RUN_CLIENT = r"""
import array, json, os, socket, sys
path, timeout = sys.argv[1], float(sys.argv[2])
conns = {}
n = 0
def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
def answer(f):
    line = f.readline()
    return json.loads(line) if line else {"eof": True}
out({"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(),
     "groups": os.getgroups()})
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["op"] == "connect":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(path)
            n += 1
            conns[n] = (s, s.makefile("rb"))
            out({"conn": n})
        elif cmd["op"] == "send":
            s, f = conns[cmd["conn"]]
            data = json.dumps(cmd["req"]).encode() + b"\n"
            fds = cmd.get("fds")
            if fds is not None:
                cut = cmd.get("split", len(data))
                s.sendmsg([data[:cut]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array("i", fds))])
                if cut < len(data):
                    s.sendall(data[cut:])
            else:
                s.sendall(data)
            if cmd.get("noreply"):
                out({"sent": True})
            else:
                out(answer(f))
        elif cmd["op"] == "read":
            out(answer(conns[cmd["conn"]][1]))
        elif cmd["op"] == "pipe":
            r, w = os.pipe()
            out({"r": r, "w": w})
        elif cmd["op"] == "readfd":
            os.close(cmd["close"]) if cmd.get("close") is not None else None
            data = b""
            while True:
                b = os.read(cmd["fd"], 65536)
                if not b:
                    break
                data += b
            out({"data": data.decode(errors="replace")})
        elif cmd["op"] == "close":
            s, f = conns.pop(cmd["conn"])
            f.close()
            s.close()
            out({"closed": True})
    except (OSError, ValueError) as e:
        out({"oserror": "%s: %s" % (e.__class__.__name__, e)})
"""


def why_not_runnable():
    """Why users cannot be made and run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create users and run clients as them"
    for tool in ("useradd", "userdel", "setpriv"):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    return None


class TestUser:
    """A system user made for the test (its own group), removed by remove()."""

    def __init__(self, tag):
        self.name = "mpsr%s%d" % (tag, os.getpid() % 100000)
        subprocess.run(["userdel", "-f", self.name], capture_output=True)
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", self.name],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def remove(self):
        subprocess.run(["userdel", "-f", self.name], capture_output=True)


class RootUser:
    """Root, for a peer that is admin but still a process of its own."""
    name, uid, gid = "root", 0, 0


class RunPeer:
    """A protocol client running as user in a child process."""

    def __init__(self, socket_path, user):
        self.user = user
        self.p = subprocess.Popen(
            ["setpriv", "--reuid=%d" % user.uid, "--regid=%d" % user.gid,
             "--clear-groups" if user.uid == 0 else "--init-groups",
             "--", sys.executable, "-c", RUN_CLIENT, socket_path, str(DEFAULT_DEADLINE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
        hello = self._recv()
        self.pid, self.uid, self.gid = hello["pid"], hello["uid"], hello["gid"]
        self.conn = self.connect()

    def _recv(self):
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError("the %s client died (exit %s)"
                                 % (self.user.name, self.p.wait()))
        return json.loads(line)

    def do(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return self._recv()

    def connect(self):
        r = self.do(op="connect")
        if "conn" not in r:
            raise AssertionError("%s cannot connect: %r" % (self.user.name, r))
        return r["conn"]

    def call(self, cmd, conn=None, **params):
        """The whole answer of one request on conn (default: its first)."""
        req = {"id": cmd, "cmd": cmd}
        req.update(params)
        return self.do(op="send", conn=conn or self.conn, req=req)

    def ok(self, cmd, **params):
        r = self.call(cmd, **params)
        if not r.get("ok"):
            raise AssertionError("%s as %s failed: %r" % (cmd, self.user.name, r))
        return r["result"]

    def code(self, cmd, **params):
        """The error code of a request, or "ok"."""
        r = self.call(cmd, **params)
        return "ok" if r.get("ok") else r.get("error", {}).get("code", repr(r))

    def kill(self):
        """SIGKILL the client: everything it owned is orphaned at once."""
        self.p.kill()
        self.p.wait(timeout=DEFAULT_DEADLINE)
        self.p.stdin.close()
        self.p.stdout.close()

    def finish(self):
        if self.p.poll() is not None:
            return
        self.p.stdin.close()
        self.p.stdout.close()
        self.p.wait(timeout=DEFAULT_DEADLINE)
