"""Manager(): no server process of its own; mpsupd is the server. Its
dict, list, Value, Array, Namespace, queues and synchronization objects are
private objects of this program in mpsupd."""
import base64
import os
import pickle

from .. import errors
from .. import proxies
from . import _runtime, objects

# dict keys that are not strings travel pickled behind this prefix
_KEY_PREFIX = "__mpsup_key__:"


def _enc_key(k):
    if type(k) is str and not k.startswith(_KEY_PREFIX):
        return k
    return _KEY_PREFIX + base64.b64encode(pickle.dumps(k, pickle.HIGHEST_PROTOCOL)).decode()


def _dec_key(k, private):
    if not k.startswith(_KEY_PREFIX):
        return k
    if not private:
        raise errors.PermissionDenied("refusing to unpickle a key read from a shared object",
                                      "permission_denied")
    return pickle.loads(base64.b64decode(k[len(_KEY_PREFIX):]))


class DictProxy(proxies.DictProxy):
    """A manager dict: any picklable keys and values."""

    def __init__(self, name):
        super().__init__(_runtime.client(), name, _runtime.codec())

    def __reduce__(self):
        return (DictProxy, (self.name,))

    def _k(self, k):
        return _enc_key(k)

    def __getitem__(self, key):
        try:
            return self._dec(self._call("get", key=self._k(key)))
        except errors.NotFound:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        super().__setitem__(self._k(key), value)

    def __delitem__(self, key):
        try:
            self._call("del", key=self._k(key))
        except errors.NotFound:
            raise KeyError(key) from None

    def __contains__(self, key):
        return super().__contains__(self._k(key))

    def get(self, key, default=None):
        return super().get(self._k(key), default)

    def keys(self):
        return [_dec_key(k, self._codec.private) for k in super().keys()]

    def __iter__(self):
        return iter(self.keys())

    def items(self):
        return [(_dec_key(k, self._codec.private), v) for k, v in super().items()]

    def update(self, other=(), **kw):
        items = dict(other, **kw)
        self._call("update", items={self._k(k): self._enc(v) for k, v in items.items()})

    def pop(self, key, *default):
        return super().pop(self._k(key), *default)

    def setdefault(self, key, default=None):
        return super().setdefault(self._k(key), default)

    def __str__(self):
        return str(self.copy())

    def __repr__(self):
        return "<DictProxy object, typeid 'dict' at %#x>" % id(self)


class ListProxy(proxies.ListProxy):
    def __init__(self, name):
        super().__init__(_runtime.client(), name, _runtime.codec())

    def __reduce__(self):
        return (ListProxy, (self.name,))

    def __str__(self):
        return str(self._slice())

    def __repr__(self):
        return "<ListProxy object, typeid 'list' at %#x>" % id(self)


class ValueProxy(proxies.ValueProxy):
    """manager.Value: .value, get(), set(); str() as the referent's repr."""

    def __init__(self, typecode, name):
        super().__init__(_runtime.client(), name, _runtime.codec())
        self._typecode = typecode

    def __reduce__(self):
        return (ValueProxy, (self._typecode, self.name))

    def __str__(self):
        return "Value(%r, %r)" % (self._typecode, self.value)

    def __repr__(self):
        return "<ValueProxy object, typeid 'Value' at %#x>" % id(self)


class ArrayProxy(proxies.ListProxy):
    """manager.Array: a list of fixed length holding any values."""

    def __init__(self, typecode, name):
        super().__init__(_runtime.client(), name, _runtime.codec())
        self._typecode = typecode

    def __reduce__(self):
        return (ArrayProxy, (self._typecode, self.name))

    def __str__(self):
        return "array(%r, %r)" % (self._typecode, self._slice())

    def __repr__(self):
        return "<ArrayProxy object, typeid 'Array' at %#x>" % id(self)


class NamespaceProxy:
    """manager.Namespace(): attributes kept in a private dict."""

    def __init__(self, name):
        object.__setattr__(self, "_d", DictProxy(name))

    def __reduce__(self):
        return (NamespaceProxy, (self._d.name,))

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._d[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self._d[key] = value

    def __delattr__(self, key):
        try:
            del self._d[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self):
        items = sorted((k, v) for k, v in self._d.items() if not str(k).startswith("_"))
        return "Namespace(%s)" % ", ".join("%s=%r" % kv for kv in items)


class SyncManager:
    """multiprocessing.Manager(): a server-less manager; mpsupd serves."""

    def __init__(self, address=None, authkey=None, *a, **kw):
        self._state = "initial"
        self._objects = []

    def start(self, initializer=None, initargs=()):
        self._state = "started"
        _runtime.client()
        return self

    def connect(self):
        self.start()

    def shutdown(self):
        """Delete what this manager made (as the standard manager's server
        exit drops its objects)."""
        if self._state == "started" and os.getpid() == self._pid:
            c = _runtime.client()
            for name in self._objects:
                try:
                    c.call("obj.delete", name=name)
                except errors.Error:
                    pass
        self._state = "shutdown"

    join = lambda self, timeout=None: None

    def __enter__(self):
        if self._state == "initial":
            self.start()
        return self

    def __exit__(self, *a):
        self.shutdown()

    @property
    def _pid(self):
        return self.__dict__.setdefault("_owner_pid", os.getpid())

    def _new(self, kind, type, **opts):
        self._pid
        name = _runtime.create(kind, type, **opts)
        self._objects.append(name)
        return name

    def dict(self, *args, **kw):
        d = DictProxy(self._new("dict", "dict"))
        init = dict(*args, **kw)
        if init:
            d.update(init)
        return d

    def list(self, sequence=()):
        lst = ListProxy(self._new("list", "list"))
        seq = list(sequence)
        if seq:
            lst.extend(seq)
        return lst

    def Value(self, typecode, value, lock=True):
        c = _runtime.codec()
        return ValueProxy(typecode, self._new("value", "value", typecode="any",
                                              init=c.encode(value)))

    def Array(self, typecode, sequence, lock=True):
        arr = ArrayProxy(typecode, self._new("array", "list"))
        arr.extend(list(sequence))
        return arr

    def Namespace(self):
        return NamespaceProxy(self._new("namespace", "dict"))

    def Queue(self, maxsize=0):
        q = objects.Queue(maxsize)
        self._objects.append(q.name)
        return q

    def JoinableQueue(self, maxsize=0):
        q = objects.JoinableQueue(maxsize)
        self._objects.append(q.name)
        return q

    def _keep(self, obj):
        self._objects.append(obj.name)
        return obj

    def Lock(self):
        return self._keep(objects.Lock())

    def RLock(self):
        return self._keep(objects.RLock())

    def Semaphore(self, value=1):
        return self._keep(objects.Semaphore(value))

    def BoundedSemaphore(self, value=1):
        return self._keep(objects.BoundedSemaphore(value))

    def Event(self):
        return self._keep(objects.Event())

    def Condition(self, lock=None):
        return self._keep(objects.Condition(lock))

    def Barrier(self, parties, action=None, timeout=None):
        return self._keep(objects.Barrier(parties, action, timeout))

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        from .pool import Pool
        return Pool(processes, initializer, initargs, maxtasksperchild)


def Manager():
    return SyncManager().start()
