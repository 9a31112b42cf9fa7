"""A drop-in for the standard multiprocessing module on mpsupd.

    import mpsup.multiprocessing as multiprocessing

Processes are started by mpsupd (a fresh interpreter that imports the main
module as __mp_main__, like the spawn start method); queues, pipes, locks,
values, arrays and manager objects are private objects of the program in
mpsupd, deleted when the process that made them exits; Pool runs on a
private task pool of mpsupd. See docs/python.md."""
import os as _os
import multiprocessing as _std

from .process import (BaseProcess, Process, current_process, parent_process,
                      active_children)
from .util import get_logger, log_to_stderr

ProcessError = _std.ProcessError
BufferTooShort = _std.BufferTooShort
AuthenticationError = _std.AuthenticationError

# loaded on first use, so that a child imports no more than it needs
_LAZY = {"Manager": "managers", "SyncManager": "managers", "Pool": "pool",
         "TimeoutError": "pool"}
_LAZY.update(dict.fromkeys(("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event",
                            "Condition", "Barrier", "Queue", "JoinableQueue", "SimpleQueue",
                            "Pipe", "Value", "RawValue", "Array", "RawArray"), "objects"))


from .._lazy import lazy_getattr

__getattr__ = lazy_getattr(globals(), _LAZY)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def cpu_count():
    n = _os.cpu_count()
    if n is None:
        raise NotImplementedError("cannot determine number of cpus")
    return n


def freeze_support():
    pass


def get_start_method(allow_none=False):
    return "spawn"


def set_start_method(method, force=False):
    """Accepted and ignored: mpsupd always starts a fresh interpreter."""


def get_all_start_methods():
    return ["spawn"]


def set_executable(executable):
    pass


def set_forkserver_preload(module_names):
    pass


def allow_connection_pickling():
    pass


def get_context(method=None):
    """This module (one start method: mpsupd's spawn)."""
    import sys
    return sys.modules[__name__]


__all__ = ["Process", "BaseProcess", "current_process", "parent_process", "active_children",
           "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier",
           "Queue", "JoinableQueue", "SimpleQueue", "Pipe", "Value", "RawValue", "Array",
           "RawArray", "Manager", "SyncManager", "Pool", "get_logger", "log_to_stderr",
           "ProcessError", "BufferTooShort", "AuthenticationError", "TimeoutError",
           "cpu_count", "freeze_support", "get_start_method", "set_start_method",
           "get_all_start_methods", "set_executable", "set_forkserver_preload",
           "allow_connection_pickling", "get_context"]
