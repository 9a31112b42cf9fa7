"""A task worker of mpsup.multiprocessing.Pool: `python3 -m mpsup.worker`.

mpsupd writes one task per line on stdin and reads one result per line on
stdout (docs/tasks.md). A task's item is {"m": mode, "f": the pickled
function, "a": the pickled chunk}; the result is the pickled outcome:
(True, [results]) or (False, exception), base64 in the reply's "result".
The program's own stdin/stdout are moved out of the way first, so what the
task prints goes where the program's output goes."""
import base64
import binascii
import json
import os
import pickle
import re
import sys
import time

# a task line as mpsupd writes it (others: json.loads)
_TASK_LINE = re.compile(rb'\{"id":(\d+),"item":\{"m":"(\w+)","f":"([A-Za-z0-9+/=]*)",'
                        rb'"a":"([A-Za-z0-9+/=]*)"\}\}\r?')
# pickled functions a worker keeps unpickled
FUNC_CACHE = 64
# bytes read from the task channel at a time
READ_SIZE = 64 * 1024
# seconds a finished result may wait for the other lines of its read
HOLD_SECS = 0.005


def _protocol_files():
    """The task channel on fresh descriptors; fd 0 becomes /dev/null and fd
    1 the program's stdout (or our stderr)."""
    rx = os.dup(0)
    tx = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    stdio = os.environ.pop("PY_MPSUP_STDIO", None)
    if stdio:
        from . import _fdpass
        _fdpass.fetch(stdio, (1, 2))
    return rx, tx


def _run(mode, func, chunk):
    if mode == b"map":
        return [func(x) for x in chunk]
    if mode == b"star":
        return [func(*x) for x in chunk]
    return [func(*a, **kw) for a, kw in chunk]


class _Tasks:
    """Runs task items {"m": mode, "f": pickled function, "a": pickled
    chunk}; a map's function is unpickled once (cached by its text)."""

    def __init__(self):
        self._funcs = {}

    def _func(self, text):
        f = self._funcs.get(text)
        if f is None:
            if len(self._funcs) >= FUNC_CACHE:
                self._funcs.clear()
            f = self._funcs[text] = pickle.loads(binascii.a2b_base64(text))
        return f

    def outcome(self, mode, func, chunk):
        """The pickled outcome of an item (its parts as base64): (True,
        [results]) or (False, exception)."""
        try:
            func = self._func(func)
            chunk = pickle.loads(binascii.a2b_base64(chunk))
            return pickle.dumps((True, _run(mode, func, chunk)), pickle.HIGHEST_PROTOCOL)
        except BaseException as e:  # the caller gets it, with its type and message
            if isinstance(e, KeyboardInterrupt):
                raise
            try:
                return pickle.dumps((False, e), pickle.HIGHEST_PROTOCOL)
            except Exception:
                return pickle.dumps((False, Exception("%s: %s" % (type(e).__name__, e))))


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _serve(rx, tx, maxtasks):
    """Answer the task lines on fd rx on fd tx: the answers to the lines
    one read brought go out in one write (mpsupd writes up to task_window
    lines ahead), or as soon as one of them waited HOLD_SECS: a result
    may wait for the next task of its worker to end. Returns after maxtasks
    tasks (None: at the end of the input)."""
    tasks = _Tasks()
    rest, done = b"", 0
    while True:
        data = os.read(rx, READ_SIZE)
        if not data:
            return
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        out, since = [], None
        for line in lines:
            m = _TASK_LINE.fullmatch(line)
            if m is not None:
                tid, item = int(m.group(1)), m.group(2, 3, 4)
            elif line.strip():
                task = json.loads(line)
                tid, it = task["id"], task["item"]
                item = it["m"].encode(), it["f"].encode(), it["a"].encode()
            else:
                continue
            res = binascii.b2a_base64(tasks.outcome(*item), newline=False)
            out.append(b'{"id":%d,"result":"%s"}\n' % (tid, res))
            done += 1
            if maxtasks and done >= maxtasks:
                break
            now = time.monotonic()
            if since is None:
                since = now
            elif now - since > HOLD_SECS:
                _flush(tx, out)
                out, since = [], None
        _flush(tx, out)
        if maxtasks and done >= maxtasks:
            return


def _flush(tx, out):
    # what the tasks printed goes before their results
    sys.stdout.flush()
    sys.stderr.flush()
    if out:
        _write_all(tx, b"".join(out))


def main():
    rx, tx = _protocol_files()
    data = pickle.loads(base64.b64decode(os.environ.pop("PY_MPSUP_WORKER")))
    import multiprocessing as std
    from ._spawn import prepare
    index = int(os.environ.get("MPSUP_INDEX", "0"))
    data["prep"]["name"] = "SpawnPoolWorker-%d" % (index + 1)
    prepare(data["prep"])
    from .multiprocessing import process
    process._current_process._name = std.current_process().name
    process._parent_process = process._ParentProcess("MainProcess", data["parent_pid"])
    init, initargs = pickle.loads(data["init"])
    if init is not None:
        init(*initargs)
    _serve(rx, tx, data.get("maxtasks"))


if __name__ == "__main__":
    main()
