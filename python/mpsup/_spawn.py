"""The child side of mpsup.multiprocessing.Process (run by `python3 -c`).

Like the standard spawn start method: prepare the interpreter (sys.path,
working directory, the parent's main module imported as __mp_main__), then
unpickle the process object and run it. The preparation is done here rather
than by multiprocessing.spawn.prepare: that module imports
multiprocessing.util and with it subprocess, which a child whose program
does not use them would import only for this."""
import binascii
import os
import pickle
import sys

# the main modules replaced by __mp_main__, kept alive as spawn keeps them
_old_mains = []


def _run_main(run):
    """Make the module dict that run() returns the child's __main__ and
    __mp_main__ (the old __main__ is kept referenced)."""
    import types
    mod = types.ModuleType("__mp_main__")
    _old_mains.append(sys.modules["__main__"])
    mod.__dict__.update(run())
    sys.modules["__main__"] = sys.modules["__mp_main__"] = mod


def _main_from_path(path):
    """The parent's main script, run under the name __mp_main__ (not when
    this interpreter runs that file already, nor for IPython)."""
    if os.path.splitext(os.path.basename(path))[0] == "ipython":
        return
    if getattr(sys.modules["__main__"], "__file__", None) == path:
        return
    import runpy
    _run_main(lambda: runpy.run_path(path, run_name="__mp_main__"))


def _main_from_name(name):
    """The parent's main module (python -m NAME), imported as __mp_main__
    (a package's __main__ is not run again)."""
    if name == "__main__" or name.endswith(".__main__"):
        return
    if getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", None) == name:
        return
    import runpy
    _run_main(lambda: runpy.run_module(name, run_name="__mp_main__", alter_sys=True))


def prepare(prep):
    """What the standard spawn child does with its preparation data:
    names, logging, sys.path and sys.argv, the directories, the main
    module."""
    import multiprocessing as std
    from multiprocessing import process as std_process
    # logging's processName comes from the standard module's current process
    std.current_process().name = prep.get("name", "MainProcess")
    if "log_level" in prep:
        from multiprocessing import util as std_util
        std_util.get_logger().setLevel(prep["log_level"])
    if "sys_path" in prep:
        sys.path = prep["sys_path"]
    if "sys_argv" in prep:
        sys.argv = prep["sys_argv"]
    if "dir" in prep:
        os.chdir(prep["dir"])
    if "orig_dir" in prep:
        std_process.ORIGINAL_DIR = prep["orig_dir"]
    if "init_main_from_name" in prep:
        _main_from_name(prep["init_main_from_name"])
    elif "init_main_from_path" in prep:
        _main_from_path(prep["init_main_from_path"])


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
    data = pickle.loads(binascii.a2b_base64(blob))
    stdio = os.environ.pop("PY_MPSUP_STDIO", None)
    if stdio:
        from . import _fdpass
        _fdpass.fetch(stdio, (0, 1, 2))
    prep = data["prep"]
    level = prep.pop("mpsup_log_level", None)
    prepare(prep)
    if level is not None:
        from .multiprocessing import util
        util.log_to_stderr(level)
    proc = pickle.loads(data["process"])
    sys.exit(proc._bootstrap())


if __name__ == "__main__":
    main()
