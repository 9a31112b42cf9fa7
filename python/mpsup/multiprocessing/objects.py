"""Queues, pipes, locks, events, conditions, barriers, values and arrays of
mpsup.multiprocessing: private objects of this program in mpsupd, scoped to
the process that made them, pickled to children as references (name and
socket)."""
from .. import errors
from .. import proxies
from . import _runtime


def _proxy(cls, kind, type, **options):
    name = _runtime.create(kind, type, **options)
    return cls(_runtime.client(), name, _runtime.codec())


# --- synchronization ---------------------------------------------------------------
class Lock(proxies.LockProxy):
    """multiprocessing.Lock. The owner is the thread's connection: a lock
    is released by the thread that acquired it (or by its death)."""

    def __init__(self, *, ctx=None, _name=None):
        if _name is None:
            _name = _runtime.create("lock", self.type)
        super().__init__(_runtime.client(), _name, _runtime.codec())

    def acquire(self, block=True, timeout=None):
        return super().acquire(block, timeout)

    def release(self):
        try:
            super().release()
        except errors.Conflict:
            raise ValueError("semaphore or lock released too many times") from None

    def __reduce__(self):
        return (type(self)._rebuild, (self.name,))

    @classmethod
    def _rebuild(cls, name):
        return cls(_name=name)

    def __repr__(self):
        return "<%s(owner=%s)>" % (type(self).__name__,
                                   "SomeOtherProcess" if self.locked() else "None")


class RLock(Lock):
    type = "rlock"


class Semaphore(proxies.SemaphoreProxy):
    """A bounded semaphore of `value` units, owned by the connection that
    took them (mpsupd's semaphore)."""

    def __init__(self, value=1, *, ctx=None, _name=None):
        if _name is None:
            if value < 1:
                raise ValueError("mpsupd semaphores hold at least one unit")
            _name = _runtime.create("semaphore", "semaphore", value=value)
        super().__init__(_runtime.client(), _name, _runtime.codec())

    def release(self):
        try:
            super().release()
        except errors.Conflict:
            raise ValueError("semaphore or lock released too many times") from None

    def __reduce__(self):
        return (type(self)._rebuild, (self.name,))

    @classmethod
    def _rebuild(cls, name):
        return cls(_name=name)

    def __repr__(self):
        return "<%s(value=%s)>" % (type(self).__name__, self.get_value())


class BoundedSemaphore(Semaphore):
    pass


class Event(proxies.EventProxy):
    def __init__(self, *, ctx=None, _name=None):
        if _name is None:
            _name = _runtime.create("event", "event")
        super().__init__(_runtime.client(), _name, _runtime.codec())

    def __reduce__(self):
        return (Event._rebuild, (self.name,))

    @staticmethod
    def _rebuild(name):
        return Event(_name=name)

    def __repr__(self):
        return "<Event(%s)>" % ("set" if self.is_set() else "unset")


class Condition(proxies.ConditionProxy):
    """multiprocessing.Condition on mpsupd's condition type (its own lock;
    a lock argument is accepted and not used)."""

    def __init__(self, lock=None, *, ctx=None, _name=None):
        if _name is None:
            _name = _runtime.create("condition", "condition")
        super().__init__(_runtime.client(), _name, _runtime.codec())

    def __reduce__(self):
        return (Condition._rebuild, (self.name,))

    @staticmethod
    def _rebuild(name):
        return Condition(_name=name)

    def __repr__(self):
        return "<Condition(%r)>" % self.name


class Barrier(proxies.BarrierProxy):
    """multiprocessing.Barrier: action runs in the waiter that gets index 0."""

    def __init__(self, parties, action=None, timeout=None, *, ctx=None, _name=None):
        if _name is None:
            _name = _runtime.create("barrier", "barrier", parties=parties)
        super().__init__(_runtime.client(), _name, _runtime.codec())
        self._action = action
        self._timeout = timeout

    def wait(self, timeout=None):
        if timeout is None:
            timeout = self._timeout
        index = super().wait(timeout)
        if index == 0 and self._action is not None:
            try:
                self._action()
            except BaseException:
                self.abort()
                raise
        return index

    def __reduce__(self):
        return (Barrier._rebuild, (self.name, self._action, self._timeout))

    @staticmethod
    def _rebuild(name, action, timeout):
        return Barrier(0, action, timeout, _name=name)


# --- queues and pipes --------------------------------------------------------------
class Queue(proxies.QueueProxy):
    """multiprocessing.Queue: items pickled when they are not plain JSON."""

    def __init__(self, maxsize=0, *, ctx=None, _name=None):
        if _name is None:
            opts = {"maxsize": maxsize} if maxsize and maxsize > 0 else {}
            _name = _runtime.create("queue", "queue", **opts)
        super().__init__(_runtime.client(), _name, _runtime.codec())
        self._maxsize = maxsize
        self._closed = False

    def __reduce__(self):
        return (type(self)._rebuild, (self.name, self._maxsize))

    @classmethod
    def _rebuild(cls, name, maxsize):
        return cls(maxsize, _name=name)

    def put(self, obj, block=True, timeout=None):
        if self._closed:
            raise ValueError("Queue %r is closed" % self)
        super().put(obj, block, timeout)

    def get(self, block=True, timeout=None):
        if self._closed:
            raise ValueError("Queue %r is closed" % self)
        return super().get(block, timeout)

    def close(self):
        self._closed = True

    def join_thread(self):
        pass

    def cancel_join_thread(self):
        pass


class JoinableQueue(Queue):
    pass


class SimpleQueue(Queue):
    def __init__(self, *, ctx=None, _name=None):
        super().__init__(0, _name=_name)

    @classmethod
    def _rebuild(cls, name, maxsize):
        return cls(_name=name)


class Connection:
    """One end of a Pipe: two queues in mpsupd (one each way). close() is
    local to this process (other processes' copies stay open)."""

    def __init__(self, rx, tx, readable=True, writable=True):
        self._rx = rx
        self._tx = tx
        self.readable = readable
        self.writable = writable
        self._closed = False
        self._peeked = []

    @property
    def closed(self):
        return self._closed

    def _check(self, what):
        if self._closed:
            raise OSError("handle is closed")
        if what == "r" and not self.readable:
            raise OSError("connection is write-only")
        if what == "w" and not self.writable:
            raise OSError("connection is read-only")

    def send(self, obj):
        self._check("w")
        self._tx.put(obj)

    def recv(self):
        self._check("r")
        if self._peeked:
            return self._peeked.pop(0)
        return self._rx.get()

    def send_bytes(self, buf, offset=0, size=None):
        data = bytes(memoryview(buf)[offset:None if size is None else offset + size])
        self.send(data)

    def recv_bytes(self, maxlength=None):
        data = self.recv()
        if not isinstance(data, bytes):
            raise OSError("not a bytes message")
        if maxlength is not None and len(data) > maxlength:
            raise OSError("bad message length")
        return data

    def poll(self, timeout=0.0):
        """Whether there is data to recv (waits up to timeout; None: forever)."""
        self._check("r")
        if self._peeked:
            return True
        try:
            self._peeked.append(self._rx.get(timeout=timeout))
        except errors.Empty:
            return False
        return True

    def close(self):
        self._closed = True

    def fileno(self):
        raise OSError("an mpsup pipe has no file descriptor")

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __reduce__(self):
        return (Connection, (self._rx, self._tx, self.readable, self.writable))


def Pipe(duplex=True):
    """Two Connection objects; with duplex False the first only receives
    and the second only sends."""
    a = Queue()
    if not duplex:
        return Connection(a, None, True, False), Connection(None, a, False, True)
    b = Queue()
    return Connection(a, b), Connection(b, a)


# --- shared values and arrays ------------------------------------------------------
_INT_CODES = set("bBhHiIlLqQ")
_FLOAT_CODES = set("fd")
_CTYPES = {"c": "c_char", "u": "c_wchar", "b": "c_byte", "B": "c_ubyte", "h": "c_short",
           "H": "c_ushort", "i": "c_int", "I": "c_uint", "l": "c_long", "L": "c_ulong",
           "q": "c_longlong", "Q": "c_ulonglong", "f": "c_float", "d": "c_double"}


def _typecode(typecode_or_type):
    """A typecode string for a typecode or a ctypes type."""
    if isinstance(typecode_or_type, str):
        return typecode_or_type
    code = getattr(typecode_or_type, "_type_", None)
    if isinstance(code, str):
        return code
    raise TypeError("unsupported type %r" % (typecode_or_type,))


def _daemon_code(tc):
    if tc in _INT_CODES:
        return "i"
    if tc in _FLOAT_CODES:
        return "d"
    return "any"


class _WithLock:
    """What Value and Array objects made with a lock add: the lock's
    methods, through get_lock()."""

    def get_obj(self):
        return self

    def acquire(self, *a, **kw):
        return self.get_lock().acquire(*a, **kw)

    def release(self):
        return self.get_lock().release()

    def __enter__(self):
        return self.get_lock().__enter__()

    def __exit__(self, *a):
        return self.get_lock().__exit__(*a)


class Synchronized(_WithLock, proxies.ValueProxy):
    """multiprocessing.Value: .value, get_lock(), acquire/release."""

    def __init__(self, typecode, name, lock):
        super().__init__(_runtime.client(), name, _runtime.codec())
        self._typecode = typecode
        self._lock = lock

    @property
    def value(self):
        return self._dec(self._call("get"))

    @value.setter
    def value(self, v):
        if self._typecode in _INT_CODES and not isinstance(v, int):
            raise TypeError("int expected instead of %s instance" % type(v).__name__)
        if self._typecode in _FLOAT_CODES and not isinstance(v, (int, float)):
            raise TypeError("must be real number, not %s" % type(v).__name__)
        self._call("set", value=self._enc(v))

    def get_lock(self):
        if self._lock is None:
            raise AttributeError("'c_%s' object has no attribute 'get_lock'" % self._typecode)
        return self._lock

    def __reduce__(self):
        return (Synchronized, (self._typecode, self.name, self._lock))

    def __repr__(self):
        ct = _CTYPES.get(self._typecode, self._typecode)
        if self._lock is None:
            return "%s(%r)" % (ct, self.value)
        return "<Synchronized wrapper for %s(%r)>" % (ct, self.value)


def _value_lock(lock):
    """lock=True: a new RLock (as the standard module); a lock: that one."""
    if lock is True:
        return RLock()
    if not lock:
        return None
    if not isinstance(lock, (Lock, Semaphore)):
        raise AttributeError("%r has no method 'acquire'" % (lock,))
    return lock


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A shared value: typecodes b..Q are 64-bit integers in mpsupd, f/d
    doubles, anything else a pickled value."""
    tc = _typecode(typecode_or_type)
    init = args[0] if args else (0.0 if tc in _FLOAT_CODES else 0)
    code = _daemon_code(tc)
    c = _runtime.codec()
    name = _runtime.create("value", "value", typecode=code,
                           init=init if code != "any" else c.encode(init))
    return Synchronized(tc, name, _value_lock(lock))


def RawValue(typecode_or_type, *args):
    return Value(typecode_or_type, *args, lock=False)


class SynchronizedArray(_WithLock, proxies.ArrayProxy):
    """multiprocessing.Array: a fixed-length numeric array in mpsupd."""

    def __init__(self, typecode, name, lock, length):
        super().__init__(_runtime.client(), name, _runtime.codec())
        self._typecode = typecode
        self._lock = lock
        self._length = length

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if isinstance(index, int):
            if index < 0:
                index += self._length
            if not 0 <= index < self._length:
                raise IndexError("invalid index")
        return super().__getitem__(index)

    def __setitem__(self, index, value):
        if isinstance(index, int):
            if index < 0:
                index += self._length
            if not 0 <= index < self._length:
                raise IndexError("invalid index")
        super().__setitem__(index, value)

    def get_lock(self):
        if self._lock is None:
            raise AttributeError("array has no lock")
        return self._lock

    def __reduce__(self):
        return (SynchronizedArray, (self._typecode, self.name, self._lock, self._length))

    def __repr__(self):
        return "<SynchronizedArray wrapper for %s_Array_%d %r>" % (
            _CTYPES.get(self._typecode, self._typecode), self._length, list(self))


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A shared array of integers (b..Q) or floats (f, d)."""
    tc = _typecode(typecode_or_type)
    code = _daemon_code(tc)
    if code == "any":
        raise TypeError("mpsup arrays hold integers or floats (typecode %r)" % tc)
    if isinstance(size_or_initializer, int):
        opts = {"size": size_or_initializer}
        length = size_or_initializer
    else:
        init = list(size_or_initializer)
        opts = {"init": init}
        length = len(init)
    name = _runtime.create("array", "array", typecode=code, **opts)
    return SynchronizedArray(tc, name, _value_lock(lock), length)


def RawArray(typecode_or_type, size_or_initializer):
    return Array(typecode_or_type, size_or_initializer, lock=False)


__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier",
           "Queue", "JoinableQueue", "SimpleQueue", "Pipe", "Connection", "Value", "RawValue",
           "Array", "RawArray"]
