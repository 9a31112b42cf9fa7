"""Pool: a private transient task pool in mpsupd whose workers are
`python3 -m mpsup.worker`. A chunk of items travels as one task; results
come back pickled, exceptions with their type and message."""
import base64
import itertools
import os
import pickle
import queue
import sys
import threading

from .. import _fdpass, errors
from . import _runtime
from .process import current_process

# waits written ahead of their answers by a result reader
WAIT_WINDOW = 128
# submits per pipelined batch
SUBMIT_BATCH = 512
# tasks submitted ahead of the results read (task_results_max is 10000 by default)
MAX_OUTSTANDING = 2048


class TimeoutError(errors.Timeout):
    """multiprocessing.TimeoutError (also the built-in TimeoutError)."""


def _item(mode, func, chunk):
    return {_runtime.TAG: base64.b64encode(
        pickle.dumps((mode, func, chunk), pickle.HIGHEST_PROTOCOL)).decode()}


def _outcome(resp):
    """(ok, values or exception) of a task.wait response."""
    if not resp.get("ok"):
        return False, errors.from_response(resp.get("error"), "task.wait")
    return pickle.loads(base64.b64decode(resp["result"]["result"][_runtime.TAG]))


def _chunks(mode, func, items, chunksize):
    it = iter(items)
    while True:
        chunk = list(itertools.islice(it, chunksize))
        if not chunk:
            return
        yield _item(mode, func, chunk), len(chunk)


class _Results:
    """Outcomes of tasks: a submitter thread submits the items in pipelined
    batches, never more than MAX_OUTSTANDING ahead of the readers (mpsupd
    keeps a bounded number of finished tasks); `readers` threads, each with
    a connection of its own and its waits pipelined, collect them. One
    reader gives results in task order, several as they come."""

    def __init__(self, pool, items, readers):
        self._q = queue.Queue()
        self._pool = pool
        self._ids = queue.Queue()
        self._room = threading.Semaphore(MAX_OUTSTANDING)
        self.count = len(items)
        readers = max(1, min(readers, len(items)))
        threading.Thread(target=self._submit, args=(items,), daemon=True).start()
        for _ in range(readers):
            threading.Thread(target=self._read, daemon=True).start()

    def _submit(self, items):
        c = _runtime.client()
        done = 0
        try:
            for start in range(0, len(items), SUBMIT_BATCH):
                batch = items[start:start + SUBMIT_BATCH]
                for _ in batch:
                    self._room.acquire()
                ids = Pool._submitted(c.call_many([
                    ("pool.submit", {"pool": self._pool.name, "item": it}) for it in batch]))
                for t in ids:
                    self._ids.put(t)
                done += len(batch)
        except (errors.Error, OSError, ValueError) as e:
            for _ in range(len(items) - done):
                self._q.put((False, e))
        self._ids.put(None)

    def _read(self):
        try:
            conn = _runtime.client().connect()
        except OSError as e:
            self._fail_rest(e)
            return
        pending, end = 0, False
        try:
            while True:
                while not end and pending < WAIT_WINDOW:
                    try:
                        t = self._ids.get(block=pending == 0)
                    except queue.Empty:
                        break
                    if t is None:
                        self._ids.put(None)     # the other readers end too
                        end = True
                        break
                    conn.send("task.wait", {"task": t})
                    pending += 1
                if pending == 0:
                    return
                out = _outcome(conn.recv())
                pending -= 1
                self._room.release()
                self._q.put(out)
        except (OSError, ValueError) as e:
            for _ in range(pending):
                self._q.put((False, e))
            self._fail_rest(e)
        finally:
            conn.close()

    def _fail_rest(self, e):
        while True:
            t = self._ids.get()
            if t is None:
                self._ids.put(None)
                return
            self._q.put((False, e))

    def next(self, timeout=None):
        """(ok, values) of the next finished task."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no result within %s seconds" % timeout, "timeout") from None


class AsyncResult:
    """apply_async/map_async's result: get(timeout), wait, ready, successful."""

    def __init__(self, pool, items, single, callback, error_callback):
        self._event = threading.Event()
        self._value = None
        self._ok = None
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._pool = pool
        pool._pending.add(self)
        t = threading.Thread(target=self._collect, args=(items,), daemon=True)
        t.start()

    def _collect(self, items):
        res = _Results(self._pool, items, 1)
        values, err = [], None
        for _ in items:
            ok, v = res.next()
            if ok:
                values.extend(v)
            elif err is None:
                err = v
        self._ok = err is None
        self._value = (values[0] if self._single else values) if self._ok else err
        try:
            if self._ok and self._callback is not None:
                self._callback(self._value)
            if not self._ok and self._error_callback is not None:
                self._error_callback(self._value)
        finally:
            self._event.set()
            self._pool._pending.discard(self)

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("%r not ready" % self)
        return self._ok

    def wait(self, timeout=None):
        self._event.wait(timeout)

    def get(self, timeout=None):
        if not self._event.wait(timeout):
            raise TimeoutError("result not ready within %s seconds" % timeout, "timeout")
        if self._ok:
            return self._value
        raise self._value


ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator:
    """imap/imap_unordered's iterator; next(timeout) as the standard one."""

    def __init__(self, pool, items, readers):
        self._res = _Results(pool, items, readers)
        self._buf = []
        self._left = len(items)

    def __iter__(self):
        return self

    def next(self, timeout=None):
        while not self._buf:
            if self._left == 0:
                raise StopIteration
            ok, v = self._res.next(timeout)
            self._left -= 1
            if not ok:
                raise v
            self._buf.extend(reversed(v))
        return self._buf.pop()

    __next__ = next


class Pool:
    """multiprocessing.Pool on a private transient task pool of mpsupd."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None):
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._state = "RUN"
        self._pending = set()
        self._owner = os.getpid()
        # u<UID>.NAME: the form of a run peer's transient pool
        self.name = "u%d.%s" % (os.getuid(), _runtime.new_name("pool"))
        self._add(initializer, initargs, maxtasksperchild)
        _pools.add(self)

    def _add(self, initializer, initargs, maxtasksperchild):
        from multiprocessing import spawn
        prep = spawn.get_preparation_data(current_process().name)
        for k in ("authkey", "start_method", "log_to_stderr", "name"):
            prep.pop(k, None)
        data = {"prep": prep, "parent_pid": os.getpid(),
                "init": pickle.dumps((initializer, tuple(initargs)), pickle.HIGHEST_PROTOCOL)}
        keys = {"mode": "task", "processes": self._processes, "directory": os.getcwd(),
                "start_secs": 0, "scope": "process", "access": "private"}
        if maxtasksperchild:
            keys["task_max_per_worker"] = maxtasksperchild

        def prepare(p):
            d = dict(data)
            if maxtasksperchild and "task_max_per_worker" not in p:
                # an older daemon: the worker leaves by itself after N tasks,
                # and must not hold more than one
                d["maxtasks"] = maxtasksperchild
                if _runtime.supported("task_window"):
                    p["task_window"] = 1
                # a task sent to it as it leaves goes to the next worker
                p["task_retries"] = 1
            p["environment"] = {
                "PY_MPSUP_WORKER": base64.b64encode(pickle.dumps(d)).decode(),
                "PY_MPSUP_STDIO": _fdpass.server_path(),
                "PYTHONPATH": os.pathsep.join(x for x in sys.path if x)}

        res, _ = _runtime.call_ext("pool.add", _prepare=prepare, pool=self.name,
                                   command="%s -m mpsup.worker" % sys.executable, **keys)
        self.name = res.get("pool", self.name)

    def __repr__(self):
        return "<%s state=%s pool_size=%d>" % (type(self).__name__, self._state,
                                               self._processes)

    def _check_running(self):
        if self._state != "RUN":
            raise ValueError("Pool not running")

    @staticmethod
    def _submitted(resps):
        out = []
        for r in resps:
            if not r.get("ok"):
                raise errors.from_response(r.get("error"), "pool.submit")
            out.append(r["result"]["task"])
        return out

    def _default_chunksize(self, n):
        chunksize, extra = divmod(n, self._processes * 4)
        return chunksize + 1 if extra else max(chunksize, 1)

    def _map_items(self, mode, func, iterable, chunksize):
        """The task items of a map: chunks of chunksize items, pickled."""
        items = list(iterable)
        if chunksize is None:
            chunksize = self._default_chunksize(len(items))
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        return [it for it, _ in _chunks(mode, func, items, chunksize)]

    # --- the standard API --------------------------------------------------------
    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        items = [_item("apply", func, [(tuple(args), dict(kwds))])]
        return AsyncResult(self, items, True, callback, error_callback)

    def apply(self, func, args=(), kwds={}):
        return self.apply_async(func, args, kwds).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        self._check_running()
        items = self._map_items("map", func, iterable, chunksize)
        return AsyncResult(self, items, False, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        self._check_running()
        items = self._map_items("star", func, iterable, chunksize)
        return AsyncResult(self, items, False, callback, error_callback)

    def map(self, func, iterable, chunksize=None):
        return self.map_async(func, iterable, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        return self.starmap_async(func, iterable, chunksize).get()

    def imap(self, func, iterable, chunksize=1):
        self._check_running()
        return IMapIterator(self, self._map_items("map", func, iterable, chunksize), 1)

    def imap_unordered(self, func, iterable, chunksize=1):
        self._check_running()
        return IMapIterator(self, self._map_items("map", func, iterable, chunksize),
                            self._processes)

    def close(self):
        """No more tasks; join() then waits for the submitted ones."""
        if self._state == "RUN":
            self._state = "CLOSE"

    def terminate(self):
        """Stop the workers now, tasks in flight included."""
        self._state = "TERMINATE"
        self._remove()

    def join(self):
        if self._state == "RUN":
            raise ValueError("Pool is still running")
        for r in list(self._pending):
            r.wait()
        self._remove()

    def _remove(self):
        if os.getpid() != self._owner or getattr(self, "_removed", False):
            return
        self._removed = True
        _pools.discard(self)
        try:
            _runtime.client().remove_pool(self.name)
        except errors.NotFound:
            pass

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *a):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")


_pools = set()


def _terminate_pools():
    for p in list(_pools):
        try:
            p.terminate()
        except (errors.Error, OSError):
            pass

