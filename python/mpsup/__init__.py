"""mpsup: the Python client of mpsupd.

mpsup.Client is the protocol client (shared objects as Python proxies,
processes, task pools, events); mpsup.multiprocessing is a drop-in for the
standard multiprocessing module whose processes, queues and pools live in
mpsupd."""
from .errors import (BadRequest, BrokenBarrier, Conflict, Empty, Error, Exists, Full, Limit,
                     NotFound, OutOfRange, PermissionDenied, ShuttingDown, SpawnFailed,
                     Timeout, TooLarge, Unavailable, UnknownCommand, WrongType)

# loaded on first use: a child of mpsup.multiprocessing that needs no
# connection does not import the client
_LAZY = {"Client": "client", "Connection": "client", "DEFAULT_SOCKET": "client",
         "default_socket": "client", "EventStream": "procs", "ProcHandle": "procs",
         "Task": "procs", "TaskPool": "procs"}


from ._lazy import lazy_getattr

__getattr__ = lazy_getattr(globals(), _LAZY)


__version__ = "0.1.0"
__all__ = ["Client", "Connection", "DEFAULT_SOCKET", "default_socket", "Error", "BadRequest",
           "BrokenBarrier", "Conflict", "Empty", "Exists", "Full", "Limit", "NotFound",
           "OutOfRange", "PermissionDenied", "ShuttingDown", "SpawnFailed", "Timeout",
           "TooLarge", "Unavailable", "UnknownCommand", "WrongType", "EventStream",
           "ProcHandle", "Task", "TaskPool"]
