"""Pool: a private transient task pool in mpsupd whose workers are
`python3 -m mpsup.worker`. A chunk of items travels as one task; results
come back pickled, exceptions with their type and message."""
import base64
import binascii
import collections
import json
import multiprocessing as _std
import os
import pickle
import queue
import re
import shlex
import threading
import time

from .. import _fdpass, errors
from . import _runtime
from .process import _child_argv, current_process

# item text sent per pool.imap request (max_request_bytes is 1 MiB by default)
SEGMENT_BYTES = 512 * 1024
# pool.imap streams one map keeps open: the one read and the next, queued
STREAMS_AHEAD = 2
# bytes read from a stream at a time
READ_SIZE = 256 * 1024
# tasks submitted at a time without pool.imap
SUBMIT_WINDOW = 1024


def _command_line(argv):
    """argv as a pool's command: quoted as the daemon splits it (shell-like
    quoting, no shell) and with '%' doubled (its placeholders)."""
    return " ".join(shlex.quote(a).replace("%", "%%") for a in argv)


class TimeoutError(errors.Timeout, _std.ProcessError):
    """multiprocessing.TimeoutError: a ProcessError and the built-in
    TimeoutError."""


def _b64pickle(v):
    return base64.b64encode(pickle.dumps(v, pickle.HIGHEST_PROTOCOL)).decode()


def _task_texts(mode, func, items, chunksize):
    """The JSON texts of a map's task items, one per chunk of chunksize
    items: the function is pickled once per map and each worker unpickles
    it once (it caches it by its pickled text); the chunk is pickled per
    task. (Base64 text needs no JSON escaping.)"""
    head = '{"m":"%s","f":"%s","a":"' % (mode, _b64pickle(func))
    dumps, b64, proto = pickle.dumps, base64.b64encode, pickle.HIGHEST_PROTOCOL
    if chunksize == 1:
        return [head + b64(dumps([x], proto)).decode() + '"}' for x in items]
    return [head + b64(dumps(items[i:i + chunksize], proto)).decode() + '"}'
            for i in range(0, len(items), chunksize)]


def _segments(texts):
    """The texts in runs of about SEGMENT_BYTES: one pool.imap each."""
    seg, size = [], 0
    for t in texts:
        if seg and size + len(t) > SEGMENT_BYTES:
            yield seg
            seg, size = [], 0
        seg.append(t)
        size += len(t) + 1
    if seg:
        yield seg


# a stream line of a task's result as mpsupd writes it (others: json.loads)
_RESULT_LINE = re.compile(rb'\{"index":\d+,"result":"([A-Za-z0-9+/=]*)"\}')


def _line_outcome(line):
    """(ok, values or exception) of a stream line; None for the summary."""
    m = _RESULT_LINE.fullmatch(line)
    if m is not None:
        return pickle.loads(binascii.a2b_base64(m.group(1)))
    msg = json.loads(line)
    res = msg.get("result")
    if res is not None:
        return pickle.loads(base64.b64decode(res))
    if msg.get("done"):
        return None
    return False, errors.from_response(msg.get("error"), "pool.imap")


class _Stream:
    """One pool.imap request on a connection of its own; lines are read
    with recv into a buffer (many per wake-up)."""

    def __init__(self, pool_name, texts, ordered):
        self._conn = _runtime.client().connect()
        self._lines = collections.deque()
        self._rest = b""
        self._done = False
        req = '{"id":1,"cmd":"pool.imap","pool":%s,"ordered":%s,"items":[%s]}\n' % (
            json.dumps(pool_name), "true" if ordered else "false", ",".join(texts))
        try:
            self._conn.sock.sendall(req.encode())
            first = json.loads(self._line())
            if not first.get("ok"):
                raise errors.from_response(first.get("error"), "pool.imap")
        except BaseException:
            self.close()
            raise

    def _fill(self):
        data = self._conn.sock.recv(READ_SIZE)
        if not data:
            raise errors.ShuttingDown("pool.imap: the stream ended early", "shutting_down")
        parts = (self._rest + data).split(b"\n")
        self._rest = parts.pop()
        self._lines.extend(parts)

    def _line(self):
        while not self._lines:
            self._fill()
        return self._lines.popleft()

    def batch(self):
        """The outcomes of the lines at hand (reading if none is); None
        once the stream is done."""
        if self._done:
            return None
        out = []
        if not self._lines:
            self._fill()
        while self._lines:
            line = self._lines.popleft()
            if not line:
                continue
            o = _line_outcome(line)
            if o is None:
                self._done = True
                return out or None
            out.append(o)
        return out

    def close(self):
        self._conn.close()


class _SubmitStream:
    """_Stream's work on a daemon without pool.imap: pool.submit and
    task.wait on a connection of its own, each pipelined a window of tasks
    at a time (finished tasks are kept up to task_results_max); results in
    task order."""

    def __init__(self, pool_name, texts, ordered):
        self._conn = _runtime.client().connect()
        self._pool = json.dumps(pool_name)
        self._texts = texts
        self._pos = 0

    def _answers(self, lines, cmd):
        self._conn.sock.sendall("".join(lines).encode())
        out = []
        for _ in lines:
            r = self._conn.recv()
            out.append(r.get("result") if r.get("ok")
                       else errors.from_response(r.get("error"), cmd))
        return out

    def batch(self):
        if self._pos >= len(self._texts):
            return None
        window = self._texts[self._pos:self._pos + SUBMIT_WINDOW]
        self._pos += len(window)
        ids = []
        for r in self._answers(['{"id":0,"cmd":"pool.submit","pool":%s,"item":%s}\n'
                                % (self._pool, t) for t in window], "pool.submit"):
            if isinstance(r, errors.Error):
                raise r
            ids.append(r["task"])
        return [(False, r) if isinstance(r, errors.Error)
                else pickle.loads(base64.b64decode(r["result"]))
                for r in self._answers(['{"id":0,"cmd":"task.wait","task":%d}\n' % t
                                        for t in ids], "task.wait")]

    def close(self):
        self._conn.close()


# whether the daemon knows pool.imap (an older one answers unknown_command)
_have_imap = True


def _open_stream(pool_name, texts, ordered):
    """A _Stream (a _SubmitStream on a daemon without pool.imap); while the
    daemon has no stream slot left (max_subscribers), wait for one."""
    global _have_imap
    delay = 0.01
    while _have_imap:
        try:
            return _Stream(pool_name, texts, ordered)
        except errors.Limit:
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        except errors.UnknownCommand:
            _have_imap = False
    return _SubmitStream(pool_name, texts, ordered)


def _outcome_batches(pool_name, texts, ordered):
    """Lists of task outcomes, in task order if ordered: the tasks go in
    pool.imap requests of SEGMENT_BYTES, one streamed while the next waits
    queued in the daemon (its workers never wait for us between two)."""
    segs = _segments(texts)
    streams = collections.deque()
    try:
        for seg in segs:
            streams.append(_open_stream(pool_name, seg, ordered))
            if len(streams) >= STREAMS_AHEAD:
                break
        while streams:
            s = streams[0]
            while True:
                b = s.batch()
                if b is None:
                    break
                if b:
                    yield b
            streams.popleft().close()
            seg = next(segs, None)
            if seg is not None:
                streams.append(_open_stream(pool_name, seg, ordered))
    finally:
        for s in streams:
            s.close()


def _collect(pool_name, texts):
    """All values of a map in order (ok, values) or its first failure
    (False, exception); a failure closes the streams (the rest is
    cancelled) as the standard map reports the first failure at once."""
    values = []
    gen = _outcome_batches(pool_name, texts, True)
    try:
        for b in gen:
            for ok, v in b:
                if not ok:
                    return False, v
                values.extend(v)
    except (errors.Error, OSError, ValueError) as e:
        return False, e
    finally:
        gen.close()
    return True, values


class AsyncResult:
    """apply_async/map_async's result: get(timeout), wait, ready, successful.
    run() -> (ok, value) runs in a thread of its own."""

    def __init__(self, pool, run, callback, error_callback):
        self._event = threading.Event()
        self._value = None
        self._ok = None
        self._callback = callback
        self._error_callback = error_callback
        self._pool = pool
        pool._pending.add(self)
        threading.Thread(target=self._collect, args=(run,), daemon=True).start()

    def _collect(self, run):
        try:
            self._ok, self._value = run()
        except BaseException as e:
            self._ok, self._value = False, e
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


class _Failed:
    """A failed task among the values of an IMapIterator."""
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc


class IMapIterator:
    """imap/imap_unordered's iterator; next(timeout) as the standard one. A
    thread reads the streams to the end (the standard pool too runs every
    task whether or not the results are read) and hands their outcomes
    over in batches."""

    def __init__(self, pool_name, texts, ordered):
        self._q = queue.Queue()
        self._buf = collections.deque()
        self._end = False
        threading.Thread(target=self._read, args=(pool_name, texts, ordered),
                         daemon=True).start()

    def _read(self, pool_name, texts, ordered):
        try:
            for b in _outcome_batches(pool_name, texts, ordered):
                self._q.put(b)
        except (errors.Error, OSError, ValueError) as e:
            self._q.put([(False, e)])
        self._q.put(None)

    def __iter__(self):
        return self

    def next(self, timeout=None):
        while not self._buf:
            if self._end:
                raise StopIteration
            try:
                b = self._q.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError("no result within %s seconds" % timeout,
                                   "timeout") from None
            if b is None:
                self._end = True
                continue
            for ok, v in b:
                if ok:
                    self._buf.extend(v)
                else:
                    self._buf.append(_Failed(v))
        x = self._buf.popleft()
        if type(x) is _Failed:
            raise x.exc
        return x

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
                "PY_MPSUP_STDIO": _fdpass.server_path()}

        # the workers get the daemon's environment and these, not ours
        command = _command_line(_child_argv("mpsup.worker", our_env=False))
        res, _ = _runtime.call_ext("pool.add", _prepare=prepare, pool=self.name,
                                   command=command, **keys)
        self.name = res.get("pool", self.name)

    def __repr__(self):
        return "<%s state=%s pool_size=%d>" % (type(self).__name__, self._state,
                                               self._processes)

    def _check_running(self):
        if self._state != "RUN":
            raise ValueError("Pool not running")

    def _default_chunksize(self, n):
        chunksize, extra = divmod(n, self._processes * 4)
        return chunksize + 1 if extra else max(chunksize, 1)

    def _texts(self, mode, func, iterable, chunksize):
        """The task items of a map: chunks of chunksize items."""
        items = list(iterable)
        if chunksize is None:
            chunksize = self._default_chunksize(len(items))
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        return _task_texts(mode, func, items, chunksize)

    def _apply(self, task):
        """(ok, value) of a submitted apply task."""
        try:
            res = _runtime.client().call("task.wait", _blocking=True, task=task)
        except errors.Error as e:
            return False, e
        ok, v = pickle.loads(base64.b64decode(res["result"]))
        return ok, v[0] if ok else v

    # --- the standard API --------------------------------------------------------
    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        item = {"m": "apply", "f": _b64pickle(func),
                "a": _b64pickle([(tuple(args), dict(kwds))])}
        try:
            task = _runtime.client().call("pool.submit", pool=self.name, item=item)["task"]
        except errors.Error as e:
            # a full backlog (limit) fails the result, as a failed task does
            failure = (False, e)
            return AsyncResult(self, lambda: failure, callback, error_callback)
        return AsyncResult(self, lambda: self._apply(task), callback, error_callback)

    def apply(self, func, args=(), kwds={}):
        return self.apply_async(func, args, kwds).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        self._check_running()
        texts = self._texts("map", func, iterable, chunksize)
        return AsyncResult(self, lambda: _collect(self.name, texts), callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        self._check_running()
        texts = self._texts("star", func, iterable, chunksize)
        return AsyncResult(self, lambda: _collect(self.name, texts), callback, error_callback)

    def _map_now(self, mode, func, iterable, chunksize):
        # in the caller's thread: no hand-over between threads per result
        self._check_running()
        ok, v = _collect(self.name, self._texts(mode, func, iterable, chunksize))
        if ok:
            return v
        raise v

    def map(self, func, iterable, chunksize=None):
        return self._map_now("map", func, iterable, chunksize)

    def starmap(self, func, iterable, chunksize=None):
        return self._map_now("star", func, iterable, chunksize)

    def imap(self, func, iterable, chunksize=1):
        self._check_running()
        return IMapIterator(self.name, self._texts("map", func, iterable, chunksize), True)

    def imap_unordered(self, func, iterable, chunksize=1):
        self._check_running()
        return IMapIterator(self.name, self._texts("map", func, iterable, chunksize), False)

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

