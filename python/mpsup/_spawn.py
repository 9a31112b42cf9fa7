"""The child side of mpsup.multiprocessing.Process: `python3 -m mpsup._spawn`.

Like the standard spawn start method: prepare the interpreter (sys.path,
working directory, the parent's main module imported as __mp_main__), then
unpickle the process object and run it."""
import base64
import os
import pickle
import sys


def main():
    blob = os.environ.pop("PY_MPSUP_SPAWN", None)
    if blob is None:
        # a large process object waits in a private value of the parent
        from .client import Client
        c = Client()
        name = os.environ.pop("PY_MPSUP_SPAWN_OBJ")
        blob = c.call("value.get", name=name)
        c.call("obj.delete", name=name)
        c.close()
    data = pickle.loads(base64.b64decode(blob))
    stdio = os.environ.pop("PY_MPSUP_STDIO", None)
    if stdio:
        from . import _fdpass
        _fdpass.fetch(stdio, (0, 1, 2))
    prep = data["prep"]
    level = prep.pop("mpsup_log_level", None)
    from multiprocessing import spawn
    import multiprocessing as std
    spawn.prepare(prep)
    # logging's processName comes from the standard module's current process
    std.current_process().name = prep.get("name", "MainProcess")
    from .multiprocessing import util
    if level is not None:
        util.log_to_stderr(level)
    proc = pickle.loads(data["process"])
    sys.exit(proc._bootstrap())


if __name__ == "__main__":
    main()
