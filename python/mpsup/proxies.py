"""Proxies for mpsupd's shared objects, with the standard Python protocols.

A proxy holds a client and a name, nothing else: it is cheap, and every
operation is one request. codec (optional) turns Python values into JSON
values and back (mpsup.multiprocessing pickles what JSON cannot carry).
"""
import collections.abc
import threading
import time

from . import _forks, errors


class _Identity:
    """The default codec: values are JSON."""

    @staticmethod
    def encode(v):
        return v

    @staticmethod
    def decode(v):
        return v


class ObjectProxy:
    """Base of the proxies: one named object of one type."""

    type = None

    def __init__(self, client, name, codec=None):
        self._client = client
        self.name = name
        self._codec = codec or _Identity

    def _call(self, op, _blocking=False, **params):
        params["name"] = self.name
        return self._client._call(self.type + "." + op, params, None, _blocking)

    def _enc(self, v):
        return self._codec.encode(v)

    def _dec(self, v):
        return self._codec.decode(v)

    def delete(self):
        """Delete the object in the daemon."""
        self._client.call("obj.delete", name=self.name)

    def get_all(self):
        """obj.get: the whole object as the daemon shows it."""
        return self._client.call("obj.get", name=self.name)

    def __repr__(self):
        return "<mpsup %s %r>" % (self.type, self.name)


class DictProxy(ObjectProxy, collections.abc.MutableMapping):
    """A shared dict (keys are strings)."""

    type = "dict"

    def __getitem__(self, key):
        try:
            return self._dec(self._call("get", key=key))
        except errors.NotFound:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        codec = self._codec
        if codec is not _Identity:
            value = codec.encode(value)
        self._client._call(self.type + ".set", {"name": self.name, "key": key, "value": value})

    def __delitem__(self, key):
        try:
            self._call("del", key=key)
        except errors.NotFound:
            raise KeyError(key) from None

    def _read(self, op, empty, **params):
        # a dict nobody wrote yet reads as empty
        try:
            return self._call(op, **params)
        except errors.NotFound:
            return empty

    def __len__(self):
        return self._read("len", 0)

    def __iter__(self):
        return iter(self._read("keys", []))

    def __contains__(self, key):
        return bool(self._read("has", False, key=key))

    def get(self, key, default=None):
        codec = self._codec
        if codec is _Identity:
            try:
                return self._client._call(self.type + ".get",
                                          {"name": self.name, "key": key, "default": default})
            except errors.NotFound:
                return default
        default = codec.encode(default)
        return codec.decode(self._read("get", default, key=key, default=default))

    def keys(self):
        return self._read("keys", [])

    def values(self):
        return [self._dec(v) for v in self._read("values", [])]

    def items(self):
        return [(k, self._dec(v)) for k, v in self._read("items", [])]

    def copy(self):
        return dict(self.items())

    def update(self, other=(), **kw):
        items = dict(other, **kw)
        self._call("update", items={k: self._enc(v) for k, v in items.items()})

    _NONE = object()

    def pop(self, key, default=_NONE):
        if default is self._NONE:
            try:
                return self._dec(self._call("pop", key=key))
            except errors.NotFound:
                raise KeyError(key) from None
        return self._dec(self._call("pop", key=key, default=self._enc(default)))

    def setdefault(self, key, default=None):
        return self._dec(self._call("setdefault", key=key, value=self._enc(default)))

    def clear(self):
        self._call("clear")

    def incr(self, key, by=1):
        """Atomic add (a missing key counts as 0); returns the new value."""
        return self._call("incr", key=key, by=by)

    def cas(self, key, expect, value):
        """Compare and swap; returns True when swapped."""
        return self._call("cas", key=key, expect=self._enc(expect),
                          value=self._enc(value))["swapped"]

    def __eq__(self, other):
        if isinstance(other, collections.abc.Mapping):
            return self.copy() == dict(other.items())
        return NotImplemented

    def __repr__(self):
        return repr(self.copy())


class ListProxy(ObjectProxy, collections.abc.MutableSequence):
    """A shared list."""

    type = "list"

    def _read(self, op, empty, **params):
        try:
            return self._call(op, **params)
        except errors.NotFound:
            return empty

    def _slice(self, start=None, stop=None):
        params = {}
        if start is not None:
            params["start"] = start
        if stop is not None:
            params["stop"] = stop
        return [self._dec(v) for v in self._read("slice", [], **params)]

    def __getitem__(self, index):
        if isinstance(index, slice):
            if index.step in (None, 1):
                return self._slice(index.start, index.stop)
            return self._slice()[index]
        try:
            return self._dec(self._call("get", index=index))
        except errors.NotFound:
            raise IndexError("list index out of range") from None

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            raise TypeError("slice assignment is not supported by a shared list")
        try:
            self._call("set", index=index, value=self._enc(value))
        except errors.NotFound:
            raise IndexError("list assignment index out of range") from None

    def __delitem__(self, index):
        if isinstance(index, slice):
            raise TypeError("slice deletion is not supported by a shared list")
        self.pop(index)

    def __len__(self):
        return self._read("len", 0)

    def __iter__(self):
        return iter(self._slice())

    def __contains__(self, value):
        return value in self._slice()

    def insert(self, index, value):
        self._call("insert", index=index, value=self._enc(value))

    def append(self, value):
        self._call("append", value=self._enc(value))

    def extend(self, values):
        self._call("extend", values=[self._enc(v) for v in values])

    def pop(self, index=-1):
        try:
            return self._dec(self._call("pop", index=index))
        except errors.NotFound:
            raise IndexError("pop from empty list") from None

    def remove(self, value):
        try:
            self._call("remove", value=self._enc(value))
        except errors.NotFound:
            raise ValueError("list.remove(x): x not in list") from None

    def index(self, value, *args):
        if args:
            return self._slice().index(value, *args)
        try:
            return self._call("index", value=self._enc(value))
        except errors.NotFound:
            raise ValueError("%r is not in list" % (value,)) from None

    def count(self, value):
        return self._read("count", 0, value=self._enc(value))

    def clear(self):
        self._call("clear")

    def __eq__(self, other):
        if isinstance(other, (list, ListProxy)):
            return self._slice() == list(other)
        return NotImplemented

    def __repr__(self):
        return repr(self._slice())


class ValueProxy(ObjectProxy):
    """A shared value: .value, add, cas."""

    type = "value"

    @property
    def value(self):
        v = self._client._call(self.type + ".get", {"name": self.name})
        codec = self._codec
        return v if codec is _Identity else codec.decode(v)

    @value.setter
    def value(self, v):
        codec = self._codec
        if codec is not _Identity:
            v = codec.encode(v)
        self._client._call(self.type + ".set", {"name": self.name, "value": v})

    def get(self):
        return self.value

    def set(self, v):
        self.value = v

    def add(self, by=1):
        """Atomic add; returns the new value."""
        return self._call("add", by=by)

    def cas(self, expect, value):
        return self._call("cas", expect=self._enc(expect), value=self._enc(value))["swapped"]

    def __repr__(self):
        return "<mpsup value %r %r>" % (self.name, self.value)


class ArrayProxy(ObjectProxy, collections.abc.MutableSequence):
    """A shared fixed-length numeric array."""

    type = "array"

    def __len__(self):
        return self._call("len")

    def __getitem__(self, index):
        if isinstance(index, slice):
            if index.step in (None, 1):
                p = {k: v for k, v in (("start", index.start), ("stop", index.stop))
                     if v is not None}
                return self._call("slice", **p)
            return self._call("slice")[index]
        return self._call("get", index=index)

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            idx = range(*index.indices(len(self)))
            values = list(value)
            if len(values) != len(idx):
                raise ValueError("can only assign a sequence of the same length")
            for i, v in zip(idx, values):
                self._call("set", index=i, value=v)
            return
        self._call("set", index=index, value=value)

    def __delitem__(self, index):
        raise TypeError("an array has a fixed length")

    def insert(self, index, value):
        raise TypeError("an array has a fixed length")

    def __iter__(self):
        return iter(self._call("slice"))

    def add(self, index, by=1):
        return self._call("add", index=index, by=by)

    def __repr__(self):
        return repr(self._call("slice"))


class QueueProxy(ObjectProxy):
    """A shared FIFO with the queue.Queue API (task_done/join included)."""

    type = "queue"

    def put(self, item, block=True, timeout=None):
        codec = self._codec
        p = {"name": self.name,
             "item": item if codec is _Identity else codec.encode(item)}
        if not block:
            p["timeout"] = 0
        elif timeout is not None:
            p["timeout"] = max(0.0, timeout)
        self._client._call(self.type + ".put", p, None, True)

    def get(self, block=True, timeout=None):
        p = {"name": self.name}
        if not block:
            p["timeout"] = 0
        elif timeout is not None:
            p["timeout"] = max(0.0, timeout)
        v = self._client._call(self.type + ".get", p, None, True)
        codec = self._codec
        return v if codec is _Identity else codec.decode(v)

    def put_nowait(self, item):
        self.put(item, False)

    def get_nowait(self):
        return self.get(False)

    def _read(self, op, empty):
        try:
            return self._call(op)
        except errors.NotFound:
            return empty

    def qsize(self):
        return self._read("size", 0)

    def __len__(self):
        return self.qsize()

    def empty(self):
        return self._read("empty", True)

    def full(self):
        return self._read("full", False)

    def task_done(self):
        try:
            self._call("task_done")
        except errors.Conflict as e:
            raise ValueError(str(e)) from None

    def join(self, timeout=None):
        p = {} if timeout is None else {"timeout": timeout}
        self._call("join", _blocking=True, **p)


class EventProxy(ObjectProxy):
    """A shared event (threading.Event API)."""

    type = "event"

    def set(self):
        self._call("set")

    def clear(self):
        self._call("clear")

    def is_set(self):
        try:
            return self._call("is_set")
        except errors.NotFound:
            return False

    def wait(self, timeout=None):
        p = {} if timeout is None else {"timeout": max(0.0, timeout)}
        return self._call("wait", _blocking=True, **p)["set"]


class _Owned(ObjectProxy):
    """Lock-likes: the daemon's owner is the connection, so every thread
    keeps a connection of its own for this object."""

    def __init__(self, client, name, codec=None):
        super().__init__(client, name, codec)
        self._local = threading.local()

    def _call(self, op, _blocking=False, **params):
        params["name"] = self.name
        return self._request(self.type + "." + op, params)

    def _request(self, cmd, params):
        # one round trip on this thread's connection
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != _forks.pid:
            conn = self._local.conn = self._client.connect()
        try:
            resp = conn.request(cmd, params)
        except BaseException:
            self._local.conn = None
            conn.close()
            raise
        if resp.get("ok"):
            return resp.get("result")
        raise errors.from_response(resp.get("error"), cmd)

    def acquire(self, block=True, timeout=None):
        p = {"name": self.name}
        if not block:
            p["timeout"] = 0
        elif timeout is not None and timeout >= 0:
            p["timeout"] = timeout
        return self._request(self.type + ".acquire", p)["acquired"]

    def release(self):
        self._request(self.type + ".release", {"name": self.name})

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *a):
        self.release()

    def close(self):
        """Drop this thread's connection (what it holds is released)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and conn.pid == _forks.pid:
            conn.close()

    def __getstate__(self):
        return {"_client": self._client, "name": self.name, "_codec": self._codec}

    def __setstate__(self, st):
        self.__dict__.update(st)
        self._local = threading.local()


class LockProxy(_Owned):
    type = "lock"

    def locked(self):
        try:
            return self._call("locked")
        except errors.NotFound:
            return False


class RLockProxy(LockProxy):
    type = "rlock"


class SemaphoreProxy(_Owned):
    type = "semaphore"

    def get_value(self):
        """Units available now."""
        return self.get_all()["available"]


class ConditionProxy(_Owned):
    """A shared condition variable (threading.Condition API)."""

    type = "condition"

    def wait(self, timeout=None):
        p = {} if timeout is None else {"timeout": max(0.0, timeout)}
        return self._call("wait", **p)["notified"]

    def wait_for(self, predicate, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.wait(left)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n=1):
        self._call("notify", n=n)

    def notify_all(self):
        self._call("notify_all")


class BarrierProxy(_Owned):
    """A shared barrier (threading.Barrier API); created with parties."""

    type = "barrier"

    def wait(self, timeout=None):
        p = {} if timeout is None else {"timeout": max(0.0, timeout)}
        return self._call("wait", **p)["index"]

    def reset(self):
        self._call("reset")

    def abort(self):
        self._call("abort")

    @property
    def parties(self):
        return self.get_all()["parties"]

    @property
    def n_waiting(self):
        return self.get_all()["n_waiting"]

    @property
    def broken(self):
        return self.get_all()["broken"]
