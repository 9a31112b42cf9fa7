"""get_logger() and log_to_stderr(), as the standard module's: the logger
named 'multiprocessing', and a stderr handler with the same format."""
from multiprocessing import util as _std

LOGGER_NAME = _std.LOGGER_NAME
DEFAULT_LOGGING_FORMAT = _std.DEFAULT_LOGGING_FORMAT
_log_to_stderr = False


def get_logger():
    """The 'multiprocessing' logger (the standard module's, shared with it)."""
    return _std.get_logger()


def log_to_stderr(level=None):
    """Log to stderr as '[LEVEL/ProcessName] message'; returns the logger."""
    global _log_to_stderr
    _log_to_stderr = True
    return _std.log_to_stderr(level)


# as the standard ones: nothing (and no import of logging) until a logger
# was made
def debug(msg, *args):
    _std.debug(msg, *args)


def info(msg, *args):
    _std.info(msg, *args)


def sub_debug(msg, *args):
    _std.sub_debug(msg, *args)


def __getattr__(name):
    if name == "logging":
        import logging
        return logging
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = ["get_logger", "log_to_stderr", "debug", "info", "sub_debug", "logging"]
