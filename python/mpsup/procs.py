"""Process handles, task pools and the event stream of mpsup.Client."""
import json

from . import errors


class ProcHandle:
    """A process supervised by mpsupd (proc.run's one-shot, or POOL:INDEX)."""

    def __init__(self, client, name, pid):
        self._client = client
        self.name = name
        self.pid = pid
        self._exitcode = None

    def __repr__(self):
        return "<mpsup process %r pid=%s>" % (self.name, self.pid)

    def record(self):
        """The process record (status)."""
        recs = self._client.call("status", target=self.name)
        return recs[0] if isinstance(recs, list) and recs else recs

    def is_alive(self):
        if self._exitcode is not None:
            return False
        rec = self.record()
        if rec.get("exitcode") is not None:
            self._exitcode = rec["exitcode"]
        return bool(rec.get("is_alive"))

    @property
    def exitcode(self):
        """Python's convention: None while alive, -N after signal N."""
        if self._exitcode is None:
            self._exitcode = self.record().get("exitcode")
        return self._exitcode

    def join(self, timeout=None):
        """Wait for the end (or timeout); returns the exit code or None."""
        p = {"target": self.name}
        if timeout is not None:
            p["timeout"] = max(0.0, timeout)
        res = self._client.call("proc.join", _blocking=True, **p)
        if not res.get("is_alive"):
            self._exitcode = res.get("exitcode")
        return self._exitcode

    def terminate(self):
        self._client.call("proc.terminate", target=self.name)

    def kill(self):
        self._client.call("proc.kill", target=self.name)

    def signal(self, sig):
        self._client.call("proc.signal", target=self.name, signal=sig)

    def forget(self):
        self._client.call("proc.forget", name=self.name)


class Task:
    """A submitted task, future-like: result(timeout), done(), exception()."""

    def __init__(self, client, task_id):
        self._client = client
        self.id = task_id
        self._done = False
        self._result = None
        self._error = None

    def __repr__(self):
        return "<mpsup task %r>" % (self.id,)

    def _wait(self, timeout):
        if self._done:
            return
        p = {"task": self.id}
        if timeout is not None:
            p["timeout"] = max(0.0, timeout)
        try:
            self._result = self._client.call("task.wait", _blocking=True, **p)["result"]
        except errors.Timeout:
            raise
        except errors.Error as e:
            self._error = e
        self._done = True

    def result(self, timeout=None):
        """The result; the task's error raised; TimeoutError at timeout."""
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self, timeout=None):
        self._wait(timeout)
        return self._error

    def done(self):
        if not self._done:
            try:
                self._wait(0)
            except errors.Timeout:
                return False
        return True

    def status(self):
        return self._client.call("task.status", task=self.id)


def _task_outcome(resp):
    """(True, result) or (False, exception) of a task.wait response."""
    if resp.get("ok"):
        return True, resp["result"]["result"]
    return False, errors.from_response(resp.get("error"), "task.wait")


class TaskPool:
    """A task pool (mode = task): map, imap, imap_unordered, submit."""

    def __init__(self, client, name):
        self._client = client
        self.name = name

    def __repr__(self):
        return "<mpsup task pool %r>" % self.name

    def submit(self, item):
        return Task(self._client, self._client.call("pool.submit", pool=self.name,
                                                    item=item)["task"])

    def _submit_all(self, items):
        resps = self._client.call_many([("pool.submit", {"pool": self.name, "item": it})
                                        for it in items])
        ids = []
        for r in resps:
            if not r.get("ok"):
                raise errors.from_response(r.get("error"), "pool.submit")
            ids.append(r["result"]["task"])
        return ids

    def map(self, items, timeout=None):
        """Results in item order (pool.map); a failed item raises."""
        p = {"pool": self.name, "items": list(items)}
        if timeout is not None:
            p["timeout"] = timeout
        return self._client.call("pool.map", _blocking=True, **p)["results"]

    def _imap(self, items, ordered, chunksize):
        """pool.imap on a connection of its own: results as the daemon
        streams them; the stream holds back while we do not read, and
        closing the generator closes the connection (the rest is cancelled)."""
        conn = self._client.connect()
        try:
            p = {"pool": self.name, "items": list(items), "ordered": ordered}
            if chunksize is not None:
                p["chunksize"] = chunksize
            conn.send("pool.imap", p)
            first = conn.recv()
            if not first.get("ok"):
                raise errors.from_response(first.get("error"), "pool.imap")
            while True:
                line = conn.readline()
                if not line:
                    break
                msg = json.loads(line)
                if msg.get("done"):
                    return
                if "error" in msg:
                    raise errors.from_response(msg["error"], "pool.imap")
                yield msg["result"]
            raise errors.ShuttingDown("pool.imap: the stream ended early")
        finally:
            conn.close()

    def imap(self, items, chunksize=None):
        """Results in item order, each as soon as it and those before it are
        done (pool.imap); a failed item raises when its turn comes."""
        return self._imap(items, True, chunksize)

    def imap_unordered(self, items, chunksize=None):
        """Results as they come, whatever their order (pool.imap with
        ordered false); a failed item raises when it comes."""
        return self._imap(items, False, chunksize)


class EventStream:
    """events.subscribe on a connection of its own; iterate for events."""

    def __init__(self, client, topics=None):
        self._conn = client.connect()
        p = {} if topics is None else {"topics": list(topics)}
        self._conn.send("events.subscribe", p)
        first = self._conn.recv()
        if not first.get("ok", True) and "error" in first:
            self._conn.close()
            raise errors.from_response(first["error"], "events.subscribe")
        self._pending = [] if "ok" in first else [first]

    def __iter__(self):
        return self

    def __next__(self):
        if self._pending:
            return self._pending.pop(0)
        line = self._conn.readline()
        if not line:
            raise StopIteration
        return json.loads(line)

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
