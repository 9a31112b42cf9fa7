"""What every part of mpsup.multiprocessing shares: this process's client,
object names, creation of private scoped objects, and the value codec.

Values that are not plain JSON travel pickled inside a tagged JSON value;
the codec unpickles only for a proxy of a private object (what another uid
could have written is never unpickled)."""
import base64
import itertools
import os
import pickle
import re

from .. import errors
from ..client import shared_client

TAG = "__mpsup_pickle__"
# the keys of the protocol that an older daemon may not know yet
_EXTENSIONS = ("scope", "access", "stdio", "task_max_per_worker", "task_window")
_unsupported = set()
_client = None
_client_pid = None
_counter = itertools.count(1)
# names of objects to delete at exit when the daemon cannot scope them
_unscoped = []


def client():
    """This process's client of the daemon at $MPSUP_SOCKET (one per
    process and socket; a new one after fork)."""
    global _client, _client_pid
    _client = shared_client()
    _client_pid = os.getpid()
    return _client


def new_name(kind):
    """A name of this program's own for a new object, process or pool."""
    return "py.%d.%d.%s" % (os.getpid(), next(_counter), kind)


def call_ext(cmd, _fds=None, _prepare=None, **params):
    """A call that carries the extension keys (scope, access, stdio, ...):
    a daemon that does not know one answers bad_request naming it (and does
    nothing), and the call is made again without it (remembered for this
    process). _prepare(params) may adjust each attempt's parameters."""
    c = client()
    while True:
        p = {k: v for k, v in params.items() if k not in _unsupported}
        if _prepare is not None:
            _prepare(p)
        fds = _fds if "stdio" in p else None
        try:
            return c.call(cmd, _fds=fds, **p), p
        except errors.BadRequest as e:
            bad = [k for k in _EXTENSIONS if k in p and re.search(r"\b%s\b" % k, e.message)]
            if not bad:
                raise
            _unsupported.update(bad)


def supported(key):
    return key not in _unsupported


def create(kind, type, **options):
    """A private object of this process (deleted by mpsupd when it exits);
    returns its name."""
    name = new_name(kind)
    _, sent = call_ext("obj.create", name=name, type=type, scope="process",
                       access="private", **options)
    if "scope" not in sent:
        _unscoped.append(name)
    return name


def is_private():
    """Whether the objects this process makes are private: the daemon
    knows access "private", or (an older daemon) nobody but this uid can
    reach its socket (ours, no group or other permission)."""
    return "access" not in _unsupported or _socket_is_ours()


def _socket_is_ours():
    try:
        st = os.stat(client().socket_path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def delete_unscoped():
    """At exit, without scope support: delete what this process made."""
    c = _client if _client_pid == os.getpid() else None
    if c is None:
        return
    for name in _unscoped:
        try:
            c.call("obj.delete", name=name)
        except (errors.Error, OSError):
            pass


def _plain(v, depth=0):
    """True when v is JSON as is (and comes back as the same Python value)."""
    t = type(v)
    if v is None or t is bool or t is str:
        return True
    if t is int:
        return -(1 << 63) <= v < (1 << 63)
    if t is float:
        return v == v and v not in (float("inf"), float("-inf"))
    if depth > 32:
        return False
    if t is list:
        return all(_plain(x, depth + 1) for x in v)
    if t is dict:
        return TAG not in v and all(type(k) is str and _plain(x, depth + 1)
                                    for k, x in v.items())
    return False


def pickled(v):
    return {TAG: base64.b64encode(pickle.dumps(v, pickle.HIGHEST_PROTOCOL)).decode()}


def is_pickled(v):
    return type(v) is dict and len(v) == 1 and TAG in v


def unpickle(v):
    return pickle.loads(base64.b64decode(v[TAG]))


class Codec:
    """JSON when it fits, else pickled and tagged; private: whether the
    object is private (only then is a pickled value read back)."""

    def __init__(self, private):
        self.private = private

    def encode(self, v):
        # the usual scalars without a call of _plain (every op pays this)
        t = type(v)
        if t is str or v is None or t is bool:
            return v
        if t is int and -(1 << 63) <= v < (1 << 63):
            return v
        return v if _plain(v) else pickled(v)

    def decode(self, v):
        if type(v) is not dict:
            return v
        if is_pickled(v):
            if not self.private:
                raise errors.PermissionDenied("refusing to unpickle a value read from a "
                                              "shared object", "permission_denied")
            return unpickle(v)
        if type(v) is dict and any(is_pickled(x) for x in v.values()):
            return {k: self.decode(x) for k, x in v.items()}
        return v

    def __reduce__(self):
        return (Codec, (self.private,))


def codec():
    return Codec(is_private())
