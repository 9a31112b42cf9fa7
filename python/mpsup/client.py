"""mpsup.Client: the protocol client (JSON lines over mpsupd's Unix socket).

Thread safety: a call borrows an idle connection from the client's pool (or
opens one) and gives it back when the answer is in, so a call that blocks in
the daemon (queue.get, lock.acquire, proc.join, ...) holds up only its own
connection. Lock-likes are owned by a connection in the daemon, so their
proxies keep one connection per thread. After os.fork the child drops every
connection it inherited and opens its own.
"""
import json
import os
import socket
import threading
import weakref

from . import _forks, errors
from .proxies import (ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy,
                      ListProxy, LockProxy, QueueProxy, RLockProxy, SemaphoreProxy,
                      ValueProxy)
from .procs import EventStream, ProcHandle, TaskPool

DEFAULT_SOCKET = "/run/mpsupd/mpsupd.sock"
# idle connections a client keeps for reuse
MAX_IDLE = 8
# requests written ahead of their answers by call_many
PIPELINE_WINDOW = 256

_clients = weakref.WeakSet()
_shared = {}
_shared_lock = threading.Lock()


def default_socket(socket_path=None):
    """The socket: the argument, $MPSUP_SOCKET, then the system default."""
    return socket_path or os.environ.get("MPSUP_SOCKET") or DEFAULT_SOCKET


# requests are encoded compactly; NaN and infinities are not JSON
_encode_params = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _c_encoder():
    """json's C encoder made once (JSONEncoder.encode makes one per call);
    None where the json module has none. No cycle check: a cyclic value
    raises RecursionError."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        enc = make(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii,
                   None, ":", ",", False, False, False)
        if "".join(enc({"a": [1, 2.5, None, "\u00e9"]}, 0)) != '{"a":[1,2.5,null,"\\u00e9"]}':
            return None
    except Exception:
        return None
    return lambda v: "".join(enc(v, 0))


_encode_fast = _c_encoder() or _encode_params
# the start of a request line for each command name
_cmd_heads = {}
# the C scanner of the json module: one JSON value from an index of a str
_scan = json.JSONDecoder().scan_once
# bytes asked of recv at a time
RECV_SIZE = 65536


class Connection:
    """One socket to mpsupd; not thread-safe (the Client lends it to one
    thread at a time). Answers are read with recv into a buffer of our own
    (no file object in between)."""

    def __init__(self, path, timeout=None):
        self.pid = _forks.pid
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(None)
        self._timeout = None
        self._buf = b""
        # bound once: the request path calls them on every round trip
        self._sendall = self.sock.sendall
        self._recv = self.sock.recv

    def close(self):
        self.sock.close()

    def fileno(self):
        return self.sock.fileno()

    def _encode(self, cmd, params):
        # no "id": it is optional and answers come back in request order
        head = _cmd_heads.get(cmd)
        if head is None:
            head = '{"cmd":%s' % _encode_params(cmd)
            if len(_cmd_heads) < 1024:
                _cmd_heads[cmd] = head
        body = _encode_fast(params)
        if len(body) > 2:
            return (head + "," + body[1:] + "\n").encode()
        return (head + "}\n").encode()

    def send(self, cmd, params, fds=None):
        """Write one request; fds ride on the same sendmsg as SCM_RIGHTS."""
        data = self._encode(cmd, params)
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds))
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)

    def readline(self):
        """One line from the daemon without its newline; b"" at the end."""
        buf = self._buf
        i = buf.find(b"\n")
        while i < 0:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                self._buf = b""
                return buf
            start = len(buf)
            buf = buf + data if buf else data
            i = buf.find(b"\n", start)
        self._buf = buf[i + 1:]
        return buf[:i] if i else b" "

    def recv(self):
        """Read one response object (with the timeout of the last request)."""
        line = self.readline()
        if not line:
            raise ConnectionError("mpsupd closed the connection")
        try:
            return _scan(line.decode(), 0)[0]
        except StopIteration:
            return json.loads(line)     # not a JSON value: json's own error

    def request(self, cmd, params, fds=None, timeout=None):
        """One round trip; returns the response object."""
        if timeout != self._timeout:
            # a syscall each time the mode changes: only when it does
            self.sock.settimeout(timeout)
            self._timeout = timeout
        if fds:
            self.send(cmd, params, fds)
        else:
            self._sendall(self._encode(cmd, params))
        if not self._buf:
            # the usual case: one recv brings exactly the one answer line
            data = self._recv(RECV_SIZE)
            i = data.find(b"\n")
            if 0 < i == len(data) - 1:
                try:
                    return _scan(data.decode(), 0)[0]
                except StopIteration:
                    return json.loads(data)
            if not data:
                raise ConnectionError("mpsupd closed the connection")
            self._buf = data
        return self.recv()


def result_of(resp, cmd):
    """The result of a response, or its error raised as an mpsup.Error."""
    if resp.get("ok"):
        return resp.get("result")
    raise errors.from_response(resp.get("error"), cmd)


class Client:
    """A client of mpsupd. socket: path (default $MPSUP_SOCKET, then
    /run/mpsupd/mpsupd.sock); timeout: seconds to wait for the daemon to
    answer a non-blocking request (None: forever)."""

    def __init__(self, socket=None, timeout=None):
        self.socket_path = default_socket(socket)
        self.timeout = timeout
        self._idle = []
        self._pid = _forks.pid
        self._closed = False
        _clients.add(self)
        # fail early when the daemon is not there
        self._put(self._get())

    def __repr__(self):
        return "<mpsup.Client %r>" % self.socket_path

    def __reduce__(self):
        # a proxy pickled to another process finds that process's client
        return (shared_client, (self.socket_path, self.timeout))

    # --- connections ------------------------------------------------------------
    def connect(self):
        """A new connection of this client's own (for the caller to keep)."""
        return Connection(self.socket_path, self.timeout)

    def _after_fork(self):
        # The child closes its copies of the parent's sockets unused (the
        # parent's stay open): a reply meant for the parent must never be
        # read by the child.
        idle, self._idle = self._idle, []
        self._pid = _forks.pid
        for c in idle:
            c.close()

    def _get(self):
        # list.pop and list.append are atomic: no lock on this path
        if self._pid != _forks.pid:
            self._after_fork()
        try:
            return self._idle.pop()
        except IndexError:
            pass
        if self._closed:
            raise ValueError("mpsup.Client is closed")
        return self.connect()

    def _put(self, conn):
        if conn.pid != _forks.pid:
            return
        if not self._closed and len(self._idle) < MAX_IDLE:
            idle = self._idle
            idle.append(conn)
            if self._closed:
                # close() ran meanwhile: it may not have seen conn
                self._drop(idle, conn)
            return
        conn.close()

    @staticmethod
    def _drop(idle, conn):
        # conn went back to idle as close() took it: close conn unless
        # someone took it out again
        try:
            idle.remove(conn)
        except ValueError:
            return
        conn.close()

    def close(self):
        """Close the idle connections; calls in flight finish on theirs."""
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # --- calls ------------------------------------------------------------------
    def call(self, cmd, _fds=None, _blocking=False, **params):
        """Send one request, return its result; errors raise mpsup.Error
        (also the matching built-in). _blocking: the command may wait in the
        daemon, so no client timeout applies."""
        return self._call(cmd, params, _fds, _blocking)

    def _call(self, cmd, params, fds=None, blocking=False):
        """call() with the parameters as a dict the caller gives away (the
        proxies' path: no keyword packing); _get and _put inlined."""
        if self._pid != _forks.pid:
            self._after_fork()
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._get()
        try:
            resp = conn.request(cmd, params, fds, None if blocking else self.timeout)
        except BaseException:
            conn.close()
            raise
        if len(idle) < MAX_IDLE and idle is self._idle and not self._closed \
                and conn.pid == _forks.pid:
            idle.append(conn)
            if self._closed:
                # close() ran meanwhile: it may not have seen conn
                self._drop(idle, conn)
        else:
            self._put(conn)
        if resp.get("ok"):
            return resp.get("result")
        raise errors.from_response(resp.get("error"), cmd)

    def call_many(self, requests):
        """Pipeline [(cmd, params), ...] on one connection; returns the
        responses (whole objects, in request order)."""
        conn = self._get()
        out = []
        try:
            for start in range(0, len(requests), PIPELINE_WINDOW):
                window = requests[start:start + PIPELINE_WINDOW]
                data = b"".join(conn._encode(cmd, params) for cmd, params in window)
                conn.sock.sendall(data)
                for _ in window:
                    out.append(conn.recv())
        except BaseException:
            conn.close()
            raise
        self._put(conn)
        return out

    def ping(self):
        return self.call("ping")

    def hello(self):
        return self.call("hello")

    # --- shared state -----------------------------------------------------------
    def create(self, name, type, **options):
        """obj.create: a named object with options (idempotent)."""
        return self.call("obj.create", name=name, type=type, **options)

    def objects(self, type=None):
        params = {} if type is None else {"type": type}
        return self.call("obj.list", **params)

    def delete(self, name):
        return self.call("obj.delete", name=name)

    def dict(self, name):
        return DictProxy(self, name)

    def list(self, name):
        return ListProxy(self, name)

    def value(self, name, typecode=None, init=None):
        """A value; with typecode, created with it (and init) first."""
        if typecode is not None:
            opts = {"typecode": typecode}
            if init is not None:
                opts["init"] = init
            self.create(name, "value", **opts)
        return ValueProxy(self, name)

    def array(self, name, typecode=None, size_or_init=None):
        """An array; with typecode, created first (size or initial list)."""
        if typecode is not None:
            if isinstance(size_or_init, int):
                self.create(name, "array", typecode=typecode, size=size_or_init)
            else:
                self.create(name, "array", typecode=typecode, init=list(size_or_init))
        return ArrayProxy(self, name)

    def queue(self, name, maxsize=None):
        if maxsize:
            self.create(name, "queue", maxsize=maxsize)
        return QueueProxy(self, name)

    def event(self, name):
        return EventProxy(self, name)

    def lock(self, name):
        return LockProxy(self, name)

    def rlock(self, name):
        return RLockProxy(self, name)

    def semaphore(self, name, value=None):
        if value is not None:
            self.create(name, "semaphore", value=value)
        return SemaphoreProxy(self, name)

    def condition(self, name):
        return ConditionProxy(self, name)

    def barrier(self, name, parties=None):
        if parties is not None:
            self.create(name, "barrier", parties=parties)
        return BarrierProxy(self, name)

    # --- processes and pools ----------------------------------------------------
    def run(self, argv, name=None, env=None, cwd=None, daemon=False, stdin=None, **extra):
        """proc.run: a one-shot process; returns a handle. extra: further
        protocol parameters (scope, stdio, user, ...); stdio="passed" sends
        this process's descriptors 0, 1, 2 along."""
        params = {"argv": [str(a) for a in argv]}
        for k, v in (("name", name), ("env", env), ("cwd", cwd), ("stdin", stdin)):
            if v is not None:
                params[k] = v
        if daemon:
            params["daemon"] = True
        params.update(extra)
        fds = [0, 1, 2] if params.get("stdio") == "passed" else None
        res = self.call("proc.run", _fds=fds, **params)
        return ProcHandle(self, res["name"], res.get("pid"))

    def process(self, name):
        """A handle on an existing process (a one-shot or POOL:INDEX)."""
        return ProcHandle(self, name, None)

    def status(self, target=None):
        params = {} if target is None else {"target": target}
        return self.call("status", **params)

    def pools(self):
        return self.call("pool.list")

    def scale(self, pool, processes):
        return self.call("pool.scale", pool=pool, processes=processes)

    def pool(self, name):
        return TaskPool(self, name)

    def add_pool(self, name, command, **keys):
        """pool.add: define a pool at run time; returns its handle."""
        self.call("pool.add", pool=name, command=command, **keys)
        return TaskPool(self, name)

    def remove_pool(self, name):
        return self.call("pool.remove", pool=name, _blocking=True)

    def events(self, topics=None):
        """An iterator over events (a connection of its own; close() it)."""
        return EventStream(self, topics)


def shared_client(socket=None, timeout=None):
    """The client of this process for a socket (one per process, made on
    first use): what unpickled proxies use."""
    key = (default_socket(socket), timeout, _forks.pid)
    with _shared_lock:
        c = _shared.get(key)
        if c is None:
            c = _shared[key] = Client(key[0], timeout)
        return c


def _reset_after_fork():
    global _shared_lock
    _shared_lock = threading.Lock()
    for c in list(_clients):
        c._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
