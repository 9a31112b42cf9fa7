"""mpsup: the Python client of mpsupd.

mpsup.Client is the protocol client (shared objects as Python proxies,
processes, task pools, events); mpsup.multiprocessing is a drop-in for the
standard multiprocessing module whose processes, queues and pools live in
mpsupd."""
from .client import Client, Connection, DEFAULT_SOCKET, default_socket
from .errors import (BadRequest, BrokenBarrier, Conflict, Empty, Error, Exists, Full, Limit,
                     NotFound, OutOfRange, PermissionDenied, ShuttingDown, SpawnFailed,
                     Timeout, TooLarge, Unavailable, UnknownCommand, WrongType)
from .procs import EventStream, ProcHandle, Task, TaskPool

__version__ = "0.1.0"
__all__ = ["Client", "Connection", "DEFAULT_SOCKET", "default_socket", "Error", "BadRequest",
           "BrokenBarrier", "Conflict", "Empty", "Exists", "Full", "Limit", "NotFound",
           "OutOfRange", "PermissionDenied", "ShuttingDown", "SpawnFailed", "Timeout",
           "TooLarge", "Unavailable", "UnknownCommand", "WrongType", "EventStream",
           "ProcHandle", "Task", "TaskPool"]
