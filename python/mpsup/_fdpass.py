"""The program's standard descriptors for its children when mpsupd cannot
pass them (pool workers, whose stdin/stdout carry tasks, and a daemon
without stdio "passed"): a thread of the program hands fds 1 and 2 (and 0)
over a Unix socket in a private directory, to peers of its own uid only.
The child gets the same open files (shared offsets, as after fork)."""
import os
import shutil
import socket
import struct
import tempfile
import threading

_server = None
_lock = threading.Lock()


class _Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mpsup-stdio-")
        self.path = os.path.join(self.dir, "s")
        self.pid = os.getpid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True, name="mpsup-stdio").start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                           struct.calcsize("3i"))
                    _, uid, _ = struct.unpack("3i", cred)
                    if uid == os.getuid():
                        socket.send_fds(conn, [b"0"], [0, 1, 2])
                except OSError:
                    pass

    def close(self):
        if os.getpid() == self.pid:
            self.sock.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def server_path():
    """The path children fetch this process's descriptors from."""
    global _server
    with _lock:
        if _server is None or _server.pid != os.getpid():
            _server = _Server()
        return _server.path


def close_server():
    """At exit, after the children that needed it were joined."""
    if _server is not None:
        _server.close()


def fetch(path, targets):
    """Make our descriptors in targets (of 0, 1, 2) the program's; quietly
    keep ours when the program is gone."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(10)
            s.connect(path)
            _, fds, _, _ = socket.recv_fds(s, 16, 3)
    except OSError:
        return
    for i, fd in enumerate(fds):
        if i in targets:
            os.dup2(fd, i)
        os.close(fd)
