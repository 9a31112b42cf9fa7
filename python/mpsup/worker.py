"""A task worker of mpsup.multiprocessing.Pool: `python3 -m mpsup.worker`.

mpsupd writes one task per line on stdin and reads one result per line on
stdout (docs/tasks.md). A task's item is a pickled (mode, function, chunk);
the result is the pickled outcome: (True, [results]) or (False, exception).
The program's own stdin/stdout are moved out of the way first, so what the
task prints goes where the program's output goes."""
import base64
import json
import os
import pickle
import sys

TAG = "__mpsup_pickle__"


def _protocol_files():
    """The task channel on fresh descriptors; fd 0 becomes /dev/null and fd
    1 the program's stdout (or our stderr)."""
    rx = os.fdopen(os.dup(0), "rb")
    tx = os.fdopen(os.dup(1), "wb")
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
    if mode == "map":
        return [func(x) for x in chunk]
    if mode == "star":
        return [func(*x) for x in chunk]
    return [func(*a, **kw) for a, kw in chunk]


def _outcome(item):
    try:
        mode, func, chunk = pickle.loads(base64.b64decode(item[TAG]))
        return pickle.dumps((True, _run(mode, func, chunk)), pickle.HIGHEST_PROTOCOL)
    except BaseException as e:  # the caller gets it, with its type and message
        if isinstance(e, (KeyboardInterrupt,)):
            raise
        try:
            return pickle.dumps((False, e), pickle.HIGHEST_PROTOCOL)
        except Exception:
            return pickle.dumps((False, Exception("%s: %s" % (type(e).__name__, e))))


def main():
    rx, tx = _protocol_files()
    data = pickle.loads(base64.b64decode(os.environ.pop("PY_MPSUP_WORKER")))
    from multiprocessing import spawn
    import multiprocessing as std
    index = int(os.environ.get("MPSUP_INDEX", "0"))
    data["prep"]["name"] = "SpawnPoolWorker-%d" % (index + 1)
    spawn.prepare(data["prep"])
    from .multiprocessing import process
    process._current_process._name = std.current_process().name
    process._parent_process = process._ParentProcess("MainProcess", data["parent_pid"])
    init, initargs = pickle.loads(data["init"])
    if init is not None:
        init(*initargs)
    maxtasks = data.get("maxtasks")
    done = 0
    for line in rx:
        task = json.loads(line)
        out = _outcome(task["item"])
        sys.stdout.flush()
        sys.stderr.flush()
        tx.write(json.dumps({"id": task["id"], "result": {TAG: base64.b64encode(out).decode()}})
                 .encode() + b"\n")
        tx.flush()
        done += 1
        if maxtasks and done >= maxtasks:
            break


if __name__ == "__main__":
    main()
