"""get_logger() and log_to_stderr(), as the standard module's: the logger
named 'multiprocessing', and a stderr handler with the same format.

The standard multiprocessing.util (which imports subprocess) is imported
when a logger is asked for, not before: until then no logger exists, and
debug() and info() have nothing to do, as in the standard module."""
import sys

LOGGER_NAME = "multiprocessing"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"
_log_to_stderr = False


def get_logger():
    """The 'multiprocessing' logger (the standard module's, shared with it)."""
    from multiprocessing import util as std
    return std.get_logger()


def log_to_stderr(level=None):
    """Log to stderr as '[LEVEL/ProcessName] message'; returns the logger."""
    global _log_to_stderr
    from multiprocessing import util as std
    _log_to_stderr = True
    return std.log_to_stderr(level)


def _std_loaded():
    # the standard util once something imported it (and so may have a logger)
    return sys.modules.get("multiprocessing.util")


def debug(msg, *args):
    std = _std_loaded()
    if std is not None:
        std.debug(msg, *args)


def info(msg, *args):
    std = _std_loaded()
    if std is not None:
        std.info(msg, *args)


def sub_debug(msg, *args):
    std = _std_loaded()
    if std is not None:
        std.sub_debug(msg, *args)


def __getattr__(name):
    if name == "logging":
        import logging
        return logging
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = ["get_logger", "log_to_stderr", "debug", "info", "sub_debug", "logging"]
