"""Harness for end-to-end tests: start a real mpsupd on a private socket in a
temporary directory, talk to it over the raw protocol or through mpctl.

Every wait has a deadline (wait_for); no test sleeps blindly.
"""
import atexit
import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

MPSUPD = os.environ.get("MPSUPD", os.path.abspath("daemon/mpsupd"))
MPCTL = os.environ.get("MPCTL", os.path.abspath("ctl/mpctl"))
SRCDIR = os.environ.get("MPSUP_SRCDIR", os.getcwd())
# Slow machines and sanitizer builds get longer deadlines.
SCALE = float(os.environ.get("MPSUP_TEST_TIMEOUT_SCALE", "1"))
DEFAULT_DEADLINE = 20.0 * SCALE
# A command line run in front of mpsupd, e.g. valgrind through libtool
# (make check-valgrind). It must exec the daemon (same pid) and report its
# findings on the daemon's stderr; valgrind's are checked at stop().
DAEMON_WRAPPER = shlex.split(os.environ.get("MPSUP_TEST_DAEMON_WRAPPER", ""))
VALGRIND_SUMMARY = re.compile(r"^==\d+== ERROR SUMMARY: (\d+) errors", re.M)
# Where DaemonTestCase's daemons keep their shared state: "local" (the
# default), "redis" (a private redis-server per test) or "redis-cluster" (a
# local 3-master Redis Cluster shared by a test file, emptied for each test),
# so the state tests run against every backend (test_state_redis.py runs them
# with redis, test_state_redis_cluster.py on the cluster).
STATE_BACKEND = os.environ.get("MPSUP_TEST_STATE_BACKEND", "local")
REDIS_BACKENDS = ("redis", "redis-cluster")


def wait_for(cond, timeout=None, interval=0.01, what="condition"):
    """Poll cond() until it returns a true value; fail after timeout
    seconds, scaled by MPSUP_TEST_TIMEOUT_SCALE (default: DEFAULT_DEADLINE,
    which is scaled already)."""
    end = time.monotonic() + (DEFAULT_DEADLINE if timeout is None else timeout * SCALE)
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def test_seed():
    """The seed of a randomized test: MPSUP_SEED when given, else a new one;
    printed so that a failure can be replayed with MPSUP_SEED=N."""
    seed = int(os.environ.get("MPSUP_SEED") or int.from_bytes(os.urandom(4), "big"))
    sys.stderr.write("random seed %d (MPSUP_SEED=%d replays it)\n" % (seed, seed))
    return seed


class RedisServer:
    """A private redis-server on a Unix socket in its own temp dir (no TCP),
    persistence off unless appendonly is asked for."""

    def __init__(self, appendonly=False):
        self.dir = tempfile.mkdtemp(prefix="mpsup-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.address = self.socket  # what redis_address names
        self.appendonly = appendonly
        self.proc = None

    @staticmethod
    def available():
        return shutil.which("redis-server") is not None

    def start(self):
        args = ["redis-server", "--port", "0", "--unixsocket", self.socket,
                "--unixsocketperm", "700", "--dir", self.dir, "--save", "",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers, what="redis-server to answer on %s" % self.socket)
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited with %s" % self.proc.returncode)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect(self.socket)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False
        finally:
            s.close()

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=DEFAULT_DEADLINE)
        self.proc = None

    def config(self, extra=""):
        """The [mpsupd] lines of a daemon that keeps its state here."""
        return "state_backend = redis\nredis_address = %s\n%s" % (self.socket, extra)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def resp_encode(*args):
    """One RESP command (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_read(f):
    """One RESP reply from the file f: text, an integer, None or a list;
    an error reply is returned as RedisError (not raised)."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise EOFError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    n = int(rest)
    if n < 0:
        return None
    if kind == b"*":
        return [resp_read(f) for _ in range(n)]
    return f.read(n + 2)[:n].decode(errors="replace")


class RedisError(str):
    """An error reply of Redis (its text)."""


def redis_call(address, *args, timeout=10.0):
    """One command on a fresh connection to address (a Unix socket path or a
    TCP port on 127.0.0.1); its reply (resp_read)."""
    if isinstance(address, int):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = ("127.0.0.1", address)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address
    with s:
        s.settimeout(timeout * SCALE)
        s.connect(target)
        s.sendall(resp_encode(*args))
        with s.makefile("rb") as f:
            return resp_read(f)


# prctl(PR_SET_PDEATHSIG, SIGKILL) in a cluster node's child: a test run
# that is killed outright (no atexit) takes its redis-servers with it.
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)


def free_cluster_port(taken=()):
    """A TCP port on 127.0.0.1 that is free now, below 55535, whose cluster
    bus port (port + 10000) is free too, and not in taken (nor their bus
    ports). The kernel picks it; redis-server may still lose a race for it,
    which RedisCluster.start retries."""
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 55535 or port in taken or any(port == t + 10000 or port + 10000 == t
                                                     for t in taken):
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
                try:
                    b.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
        return port
    raise AssertionError("found no free TCP port pair for a cluster node")


class RedisCluster:
    """A local Redis Cluster of `masters` redis-server masters (no replicas)
    on 127.0.0.1, each on a free TCP port, its cluster config, log and data
    in a private temp dir, persistence off unless appendonly is asked for.
    Same interface as RedisServer: start, answers, stop, config, cleanup;
    start after stop brings the same nodes back on the same ports (the
    cluster's layout kept, its data only with appendonly)."""

    SLOTS = 16384
    BIND_TRIES = 10

    def __init__(self, masters=3, appendonly=False):
        self.dir = tempfile.mkdtemp(prefix="mpsup-rcluster-")
        self.masters = masters
        self.appendonly = appendonly
        self.ports = []  # one per node, fixed at the first start
        self.procs = []
        self.created = False
        _LIVE_CLUSTERS.add(self)
        _cleanup_clusters_on_sigterm()

    @staticmethod
    def available():
        return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None

    @property
    def address(self):
        """What redis_address names: the first node (any node would do)."""
        return "127.0.0.1:%d" % self.ports[0]

    def node_dir(self, port):
        return os.path.join(self.dir, "node-%d" % port)

    def node_log(self, port):
        try:
            with open(os.path.join(self.node_dir(port), "redis.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def spawn(self, port):
        """Start the node of port; its Popen (not waited for)."""
        d = self.node_dir(port)
        os.makedirs(d, exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--dir", d, "--save", "",
                "--logfile", os.path.join(d, "redis.log")]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)

    def wait_node(self, port, proc):
        """Wait until the node of port answers: True; False when it could
        not bind its ports (another process took them meanwhile)."""
        def up():
            if proc.poll() is not None:
                return "exited"
            try:
                return redis_call(port, "PING", timeout=2) == "PONG" and "up"
            except OSError:
                return False
        if wait_for(up, what="cluster node on port %d to answer" % port) == "up":
            return True
        log = self.node_log(port)
        if "Address already in use" in log:
            shutil.rmtree(self.node_dir(port), ignore_errors=True)
            return False
        raise AssertionError("redis-server on port %d exited with %s; log:\n%s"
                             % (port, proc.returncode, log[-4000:]))

    def start(self):
        """Start the nodes (all at once: a master turns ok no sooner than
        2 s after its start), join them with redis-cli --cluster create and
        wait until the cluster is ok."""
        if self.created:
            return self.restart()
        for _ in range(self.BIND_TRIES):
            while len(self.ports) < self.masters:
                port = free_cluster_port(self.ports)
                self.ports.append(port)
                self.procs.append(self.spawn(port))
            bound = [self.wait_node(p, proc) for p, proc in zip(self.ports, self.procs)]
            self.ports = [p for p, ok in zip(self.ports, bound) if ok]
            self.procs = [proc for proc, ok in zip(self.procs, bound) if ok]
            if len(self.ports) == self.masters:
                break
        else:
            raise AssertionError("no free ports for the cluster's nodes")
        nodes = ["127.0.0.1:%d" % p for p in self.ports]
        r = subprocess.run(["redis-cli", "--cluster", "create"] + nodes +
                           ["--cluster-replicas", "0", "--cluster-yes"],
                           capture_output=True, text=True, timeout=DEFAULT_DEADLINE)
        if r.returncode != 0:
            raise AssertionError("redis-cli --cluster create failed (%d):\n%s%s"
                                 % (r.returncode, r.stdout, r.stderr))
        self.created = True
        wait_for(self.healthy, what="cluster %s to be ok" % " ".join(nodes))
        return self

    def restart(self):
        """Bring every stopped node back on its port with its nodes.conf."""
        for i, port in enumerate(self.ports):
            if self.procs[i] is None or self.procs[i].poll() is not None:
                self.procs[i] = self.spawn(port)
        for port, proc in zip(self.ports, self.procs):
            if not self.wait_node(port, proc):
                raise AssertionError("port %d was taken while its node was down" % port)
        wait_for(self.healthy, what="cluster to be ok again")
        return self

    def answers(self):
        """Every node runs and answers PING."""
        if not self.procs:
            return False
        for port, proc in zip(self.ports, self.procs):
            if proc is None or proc.poll() is not None:
                raise AssertionError("cluster node on port %d is not running" % port)
            try:
                if redis_call(port, "PING", timeout=2) != "PONG":
                    return False
            except OSError:
                return False
        return True

    def cluster_info(self, port):
        """CLUSTER INFO of the node of port, as a dict of text."""
        r = redis_call(port, "CLUSTER", "INFO", timeout=2)
        return dict(line.split(":", 1) for line in r.split("\r\n") if ":" in line)

    def healthy(self):
        """Every node runs, says cluster_state:ok, knows every node and sees
        all 16384 slots assigned."""
        if not self.answers():
            return False
        for port in self.ports:
            try:
                info = self.cluster_info(port)
            except OSError:
                return False
            if (info.get("cluster_state") != "ok"
                    or int(info.get("cluster_slots_assigned", 0)) != self.SLOTS
                    or int(info.get("cluster_known_nodes", 0)) != self.masters):
                return False
        return True

    def running(self):
        """Whether every node process still runs (no connection made)."""
        return bool(self.procs) and all(p is not None and p.poll() is None for p in self.procs)

    def flushall(self):
        """Empty every master (between the tests sharing this cluster)."""
        for port in self.ports:
            r = redis_call(port, "FLUSHALL")
            if r != "OK":
                raise AssertionError("FLUSHALL on port %d: %r" % (port, r))

    def keys(self, port):
        """The keys the node of port holds (small test data sets only)."""
        return sorted(redis_call(port, "KEYS", "*"))

    def slot_owner(self, key):
        """The port of the master that owns key's slot (CLUSTER KEYSLOT and
        CLUSTER SLOTS of the first node)."""
        slot = redis_call(self.ports[0], "CLUSTER", "KEYSLOT", key)
        for lo, hi, master, *_ in redis_call(self.ports[0], "CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return master[1]
        raise AssertionError("no master owns slot %d" % slot)

    def stop(self, sig=signal.SIGTERM):
        """Stop every node (SIGTERM: they exit without saving)."""
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(timeout=DEFAULT_DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self.procs[i] = None

    def config(self, extra=""):
        """The [mpsupd] lines of a daemon that keeps its state here."""
        return "state_backend = redis\nredis_address = %s\n%s" % (self.address, extra)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            _LIVE_CLUSTERS.discard(self)


# Every RedisCluster not cleaned up yet, stopped at exit whatever happened.
_LIVE_CLUSTERS = set()
_SHARED_CLUSTER = None


@atexit.register
def _cleanup_clusters():
    for c in list(_LIVE_CLUSTERS):
        c.cleanup()


def _on_sigterm(signum, frame):
    """A test run stopped by SIGTERM (no atexit): stop the clusters and
    remove their dirs, then die of SIGTERM as before."""
    _cleanup_clusters()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _cleanup_clusters_on_sigterm():
    # only where nobody else handles SIGTERM, and from the main thread
    # (the only one that may set handlers)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def shared_cluster():
    """The one RedisCluster of this test process, started on first use and
    emptied (FLUSHALL) for each user; a test that stopped or killed it
    leaves it for cleanup, and the next user gets a fresh one."""
    global _SHARED_CLUSTER
    c = _SHARED_CLUSTER
    if c is not None:
        try:
            if c.running() and c.healthy():
                c.flushall()
                return c
        except (OSError, EOFError, AssertionError):
            pass
        c.cleanup()
        _SHARED_CLUSTER = None
    c = RedisCluster()
    try:
        c.start()
    except BaseException:
        c.cleanup()  # the next user tries afresh, nothing of this one left
        raise
    _SHARED_CLUSTER = c
    return c


def local_only(reason):
    """Decorate a test the redis state backends do not run (says why)."""
    return unittest.skipIf(STATE_BACKEND in REDIS_BACKENDS,
                           "local state backend only: " + reason)


class Client:
    """A raw protocol client: JSON lines over the Unix socket."""

    def __init__(self, path, timeout=DEFAULT_DEADLINE):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.next_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, cmd, **params):
        msg = {"id": self.next_id, "cmd": cmd}
        self.next_id += 1
        msg.update(params)
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        return msg["id"]

    def recv_line(self):
        """One raw line (bytes, without newline); b'' at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self):
        line = self.recv_line()
        if not line:
            raise EOFError("connection closed")
        return json.loads(line)

    def call(self, cmd, **params):
        """Send a request, return the whole response object."""
        rid = self.send(cmd, **params)
        resp = self.recv()
        assert resp.get("id") == rid, "response id %r != %r" % (resp.get("id"), rid)
        return resp

    def ok(self, cmd, **params):
        """Call and return the result; fail on an error answer."""
        resp = self.call(cmd, **params)
        if not resp.get("ok"):
            raise AssertionError("%s failed: %r" % (cmd, resp))
        return resp.get("result")

    def err(self, cmd, **params):
        """Call and return the error code; fail on success."""
        resp = self.call(cmd, **params)
        if resp.get("ok"):
            raise AssertionError("%s unexpectedly succeeded: %r" % (cmd, resp))
        return resp["error"]["code"]


class Daemon:
    """A private mpsupd: its own temp dir, socket and config."""

    def __init__(self, config_extra="", main_extra="", env=None, args=()):
        self.dir = tempfile.mkdtemp(prefix="mpsup-e2e-")
        self.socket = os.path.join(self.dir, "mpsupd.sock")
        self.conf = os.path.join(self.dir, "mpsupd.conf")
        self.logfile = os.path.join(self.dir, "mpsupd.log")
        self.write_config(config_extra, main_extra)
        self.env = dict(os.environ)
        self.env.pop("MPSUP_SOCKET", None)
        if env:
            self.env.update(env)
        self.args = list(args)
        self.proc = None

    def write_config(self, config_extra="", main_extra=""):
        with open(self.conf, "w") as f:
            f.write("[mpsupd]\nsocket = %s\nlog_level = debug\n%s\n%s\n"
                    % (self.socket, main_extra, config_extra))

    def start(self, wait=True):
        self.log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(DAEMON_WRAPPER + [MPSUPD, "-c", self.conf] + self.args,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.dir)
        if wait:
            wait_for(self.answers, what="mpsupd to answer on %s" % self.socket)
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("mpsupd exited with %s; log:\n%s"
                                 % (self.proc.returncode, self.read_log()))
        try:
            with Client(self.socket, timeout=2) as c:
                return c.ok("ping") is not None or True
        except OSError:
            return False

    def client(self):
        return Client(self.socket)

    def ok(self, cmd, **params):
        with self.client() as c:
            return c.ok(cmd, **params)

    def err(self, cmd, **params):
        with self.client() as c:
            return c.err(cmd, **params)

    def mpctl(self, *args, input=None, timeout=DEFAULT_DEADLINE, check=None):
        """Run mpctl against this daemon; returns CompletedProcess (text)."""
        env = dict(self.env)
        env["MPSUP_SOCKET"] = self.socket
        p = subprocess.run([MPCTL] + [str(a) for a in args], input=input,
                           capture_output=True, text=True, env=env,
                           timeout=timeout * SCALE)
        if check is not None and p.returncode != check:
            raise AssertionError("mpctl %s: exit %d (wanted %d)\nstdout: %s\nstderr: %s"
                                 % (" ".join(map(str, args)), p.returncode, check,
                                    p.stdout, p.stderr))
        return p

    def pid(self):
        return self.proc.pid

    def read_log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def sanitized(self):
        """Whether this mpsupd runs with AddressSanitizer, whose quarantine
        keeps freed memory resident (RSS bounds do not hold there)."""
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return "libasan" in f.read()

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def stop(self, sig=signal.SIGTERM, timeout=DEFAULT_DEADLINE):
        """Stop the daemon; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("mpsupd did not exit after %s; log:\n%s"
                                     % (sig, self.read_log()))
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        self.check_wrapper_report()
        self.check_command_table()
        return rc

    # What command.c logs when a handler breaks the command table's rules.
    TABLE_BUGS = re.compile(r"returned without an answer|kept a request without a cancel"
                            r"|is not flagged CMD_")

    def check_command_table(self):
        """Every e2e run checks the one-reply rule and the wait/stream flags."""
        m = self.TABLE_BUGS.search(self.read_log())
        if m:
            raise AssertionError("mpsupd broke a command-table rule (%s); log:\n%s"
                                 % (m.group(0), self.read_log()[-30000:]))

    def check_wrapper_report(self):
        """Under valgrind: fail on any error or leak it reported, whatever
        the exit status the test expected (a daemon SIGKILLed reports
        nothing, which is not a failure)."""
        if not DAEMON_WRAPPER:
            return
        log = self.read_log()
        errors = [int(n) for n in VALGRIND_SUMMARY.findall(log)]
        tool = next((w for w in DAEMON_WRAPPER if "valgrind" in w), DAEMON_WRAPPER[0])
        sys.stderr.write("%s: errors per mpsupd run: %s\n" % (os.path.basename(tool), errors))
        if any(errors):
            raise AssertionError("%s reported errors in mpsupd; log:\n%s"
                                 % (tool, log[-30000:]))

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class DaemonTestCase(unittest.TestCase):
    """A test case with a fresh daemon per test (self.d)."""
    config = ""
    main_config = ""

    def setUp(self):
        main_config = self.main_config
        self.redis = None
        if STATE_BACKEND == "redis":
            if not RedisServer.available():
                self.skipTest("redis-server is not installed")
            self.redis = RedisServer().start()
            self.addCleanup(self.redis.cleanup)
            main_config = self.redis.config(main_config)
        elif STATE_BACKEND == "redis-cluster":
            if not RedisCluster.available():
                self.skipTest("redis-server or redis-cli is not installed")
            self.redis = shared_cluster()
            main_config = self.redis.config(main_config)
        self.d = Daemon(self.config, main_config)
        self.d.start()

    def tearDown(self):
        failed = False
        outcome = getattr(self, "_outcome", None)
        if outcome is not None:
            res = getattr(outcome, "result", None)
            if res is not None:
                failed = bool(res.failures or res.errors)
        if self.d.proc is not None and self.d.proc.poll() is not None \
                and self.d.proc.returncode not in (0, None):
            failed = True
        if failed:
            sys.stderr.write("---- mpsupd log ----\n%s\n" % self.d.read_log())
        rc = self.d.stop()
        log = self.d.read_log()
        shutil.rmtree(self.d.dir, ignore_errors=True)
        # A sanitizer report or crash makes the daemon exit non-zero.
        self.assertIn(rc, (0, None), "mpsupd exited with %r; log:\n%s" % (rc, log))


class TapResult(unittest.TextTestResult):
    """unittest's verbose report on stderr, and one TAP line per test on
    stdout, so automake's TAP driver counts every test: a skipped test
    shows as SKIP in make check's summary, not hidden inside a PASS."""

    def __init__(self, stream, descriptions, verbosity):
        super().__init__(stream, descriptions, verbosity)
        self.tap_n = 0
        self.tap_state = None

    def _tap(self, state):
        # the first bad outcome of a test (a failed subtest included) wins
        if self.tap_state is None or self.tap_state[0] == "ok":
            self.tap_state = state

    def startTest(self, test):
        super().startTest(test)
        self.tap_state = None

    def addSuccess(self, test):
        super().addSuccess(test)
        self._tap(("ok", ""))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._tap(("not ok", ""))

    def addError(self, test, err):
        super().addError(test, err)
        self._tap(("not ok", ""))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._tap(("not ok", ""))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._tap(("ok", " # SKIP " + reason.replace("\n", " ")))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._tap(("ok", " # expected failure"))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._tap(("not ok", " # unexpected success"))

    def stopTest(self, test):
        super().stopTest(test)
        state, note = self.tap_state or ("not ok", " # no outcome")
        self.tap_n += 1
        sys.stdout.write("%s %d - %s%s\n" % (state, self.tap_n, test.id(), note))
        sys.stdout.flush()


def skip_all(reason):
    """The whole file cannot run here: say so in TAP (make check shows SKIP)."""
    sys.stdout.write("1..0 # SKIP %s\n" % reason)
    sys.exit(0)


def main():
    """Run the calling file's tests: TAP on stdout, unittest's report on
    stderr (the test's .log file gets both)."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules["__main__"])
    names = sys.argv[1:]
    if names:
        suite = unittest.defaultTestLoader.loadTestsFromNames(names, sys.modules["__main__"])
    sys.stdout.write("1..%d\n" % suite.countTestCases())
    sys.stdout.flush()
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=TapResult)
    result = runner.run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
