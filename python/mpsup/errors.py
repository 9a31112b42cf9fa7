"""Protocol errors as Python exceptions.

Every error the daemon answers is an instance of mpsup.Error (with .code,
the protocol's stable error code) and, where one exists, of the built-in
exception a Python user would catch for the same situation."""
import queue
import threading


class Error(Exception):
    """An error answered by mpsupd: .code is the protocol's error code."""

    code = "internal"

    def __init__(self, message="", code=None, cmd=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.cmd = cmd

    def __str__(self):
        # KeyError would print the repr of its argument; the text is meant for humans.
        return self.message


class BadRequest(Error, ValueError):
    code = "bad_request"


class UnknownCommand(Error, NotImplementedError):
    code = "unknown_command"


class NotFound(Error, KeyError):
    code = "not_found"


class Exists(Error, FileExistsError):
    code = "exists"


class WrongType(Error, TypeError):
    code = "wrong_type"


class OutOfRange(Error, IndexError):
    code = "out_of_range"


class Timeout(Error, TimeoutError):
    code = "timeout"


class Empty(Error, queue.Empty):
    code = "empty"


class Full(Error, queue.Full):
    code = "full"


class PermissionDenied(Error, PermissionError):
    code = "permission_denied"


class TooLarge(Error, ValueError):
    code = "too_large"


class Limit(Error, OSError):
    code = "limit"


class Conflict(Error, RuntimeError, ValueError):
    """Wrong state for the request, e.g. releasing a lock one does not hold
    (threading raises RuntimeError there, multiprocessing ValueError)."""
    code = "conflict"


class BrokenBarrier(Error, threading.BrokenBarrierError):
    code = "broken"


class SpawnFailed(Error, OSError):
    code = "spawn_failed"


class ShuttingDown(Error, ConnectionError):
    code = "shutting_down"


class Unavailable(Error, ConnectionError):
    code = "unavailable"


_BY_CODE = {c.code: c for c in (BadRequest, UnknownCommand, NotFound, Exists, WrongType,
                                OutOfRange, Timeout, Empty, Full, PermissionDenied, TooLarge,
                                Limit, Conflict, BrokenBarrier, SpawnFailed, ShuttingDown,
                                Unavailable)}


def from_response(error, cmd=None):
    """The exception for an error member {code, message} of a response."""
    code = error.get("code", "internal") if isinstance(error, dict) else "internal"
    message = error.get("message", code) if isinstance(error, dict) else str(error)
    cls = _BY_CODE.get(code, Error)
    return cls(message, code, cmd)
