"""Process: a fresh interpreter started by mpsupd (proc.run with scope
"process" and stdio "passed"), which imports the parent's main module as
__mp_main__ like the spawn start method and runs the pickled process object."""
import atexit
import binascii
import itertools
import os
import pickle
import signal
import sys
import threading

from .. import errors

# the largest pickled process passed in the child's environment
SPAWN_ENV_MAX = 96 * 1024
_children = set()
_children_lock = threading.Lock()


def _exitcode_name(code):
    """-15 -> "-SIGTERM", as the standard repr shows it (the table is made
    when first needed, not when a child imports this module)."""
    global _exitcode_to_name
    if _exitcode_to_name is None:
        _exitcode_to_name = {-s: "-" + signal.Signals(s).name for s in signal.valid_signals()
                             if isinstance(s, signal.Signals)}
    return _exitcode_to_name.get(code, code)


_exitcode_to_name = None


class _ParentProcess:
    """parent_process() in a child: what the child knows of its parent."""

    def __init__(self, name, pid):
        self._name = name
        self._pid = pid

    name = property(lambda self: self._name)
    pid = property(lambda self: self._pid)
    ident = pid
    daemon = False

    def is_alive(self):
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __repr__(self):
        return "<_ParentProcess name=%r parent=%s unknown>" % (self._name, self._pid)


class BaseProcess:
    """multiprocessing.Process, run by mpsupd."""

    _counter = itertools.count(1)

    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None, *,
                 daemon=None):
        assert group is None, "group argument must be None for now"
        cur = current_process()
        self._identity = cur._identity + (next(BaseProcess._counter),)
        self._config = dict(cur._config)
        self._parent_pid = os.getpid()
        self._parent_name = cur.name
        self._handle = None
        self._closed = False
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._name = name or type(self).__name__ + "-" + ":".join(map(str, self._identity))
        if daemon is not None:
            self.daemon = daemon

    def run(self):
        """The process's work; subclasses override it."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    def __getstate__(self):
        st = dict(self.__dict__)
        st["_handle"] = None
        return st

    def _check_closed(self):
        if self._closed:
            raise ValueError("process object is closed")

    def start(self):
        """Start the process through mpsupd."""
        self._check_closed()
        assert self._handle is None, "cannot start a process twice"
        assert self._parent_pid == os.getpid(), \
            "can only start a process object created by current process"
        assert not _current_process._config.get("daemon"), \
            "daemonic processes are not allowed to have children"
        _reap()
        self._handle = _launch(self)
        with _children_lock:
            _children.add(self)

    def _poll(self):
        if self._handle is None:
            return None
        return self._handle.exitcode

    def terminate(self):
        self._check_closed()
        if self._handle is not None and self._poll() is None:
            self._handle.terminate()

    def kill(self):
        self._check_closed()
        if self._handle is not None and self._poll() is None:
            self._handle.kill()

    def join(self, timeout=None):
        self._check_closed()
        assert self._parent_pid == os.getpid(), "can only join a child process"
        assert self._handle is not None, "can only join a started process"
        if self._handle.join(timeout) is not None:
            with _children_lock:
                _children.discard(self)

    def is_alive(self):
        self._check_closed()
        if self is _current_process:
            return True
        assert self._parent_pid == os.getpid(), "can only test a child process"
        if self._handle is None:
            return False
        if self._handle.is_alive():
            return True
        with _children_lock:
            _children.discard(self)
        return False

    def close(self):
        """Release the record in mpsupd; the process must have ended."""
        if self._handle is not None:
            if self._poll() is None:
                raise ValueError("Cannot close a process while it is still running. "
                                 "You should first call join() or terminate().")
            try:
                self._handle.forget()
            except errors.Error:
                pass
            with _children_lock:
                _children.discard(self)
        self._closed = True

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, name):
        assert isinstance(name, str), "name must be a string"
        self._name = name

    @property
    def daemon(self):
        return self._config.get("daemon", False)

    @daemon.setter
    def daemon(self, daemonic):
        assert self._handle is None, "process has already started"
        self._config["daemon"] = daemonic

    @property
    def authkey(self):
        return self._config.get("authkey", b"")

    @authkey.setter
    def authkey(self, authkey):
        self._config["authkey"] = bytes(authkey)

    @property
    def exitcode(self):
        self._check_closed()
        return self._poll()

    @property
    def ident(self):
        self._check_closed()
        if self is _current_process:
            return os.getpid()
        return self._handle and self._handle.pid

    pid = ident

    @property
    def sentinel(self):
        raise NotImplementedError("mpsup processes have no sentinel descriptor; use join()")

    def __repr__(self):
        exitcode = None
        if self is _current_process:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._parent_pid != os.getpid():
            status = "unknown"
        elif self._handle is None:
            status = "initial"
        else:
            exitcode = self._poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, "name=%r" % self._name]
        if self._handle is not None:
            info.append("pid=%s" % self._handle.pid)
        info.append("parent=%s" % self._parent_pid)
        info.append(status)
        if exitcode is not None:
            info.append("exitcode=%s" % _exitcode_name(exitcode))
        if self.daemon:
            info.append("daemon")
        return "<%s>" % " ".join(info)

    def _bootstrap(self):
        """In the child: run, and turn the outcome into an exit code as the
        standard module does."""
        global _current_process, _parent_process
        from . import util
        _current_process = self
        _parent_process = _ParentProcess(self._parent_name, self._parent_pid)
        with _children_lock:
            _children.clear()
        try:
            util.info("child process calling self.run()")
            self.run()
            exitcode = 0
        except SystemExit as e:
            if e.code is None:
                exitcode = 0
            elif isinstance(e.code, int):
                exitcode = e.code
            else:
                sys.stderr.write(str(e.code) + "\n")
                exitcode = 1
        except BaseException:
            exitcode = 1
            import traceback
            sys.stderr.write("Process %s:\n" % self.name)
            traceback.print_exc()
        finally:
            util.info("process exiting with exitcode %d" % exitcode)
            _exit_function()
            try:
                sys.stdout.flush()
            finally:
                sys.stderr.flush()
        return exitcode


class Process(BaseProcess):
    pass


class _MainProcess(BaseProcess):
    def __init__(self):
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None
        self._handle = None
        self._closed = False
        self._config = {"authkey": os.urandom(32)}


_current_process = _MainProcess()
_parent_process = None


def current_process():
    return _current_process


def parent_process():
    return _parent_process


def _reap():
    with _children_lock:
        kids = list(_children)
    for p in kids:
        if p._handle is not None and p._handle._exitcode is not None:
            with _children_lock:
                _children.discard(p)


def active_children():
    """The children still running (finished ones are forgotten)."""
    with _children_lock:
        kids = list(_children)
    return [p for p in kids if p.is_alive()]


def _spawn_env(proc):
    """The child's environment: ours, plus what _spawn needs."""
    from . import _runtime
    from multiprocessing import spawn
    prep = spawn.get_preparation_data(proc._name)
    prep.pop("authkey", None)
    prep.pop("start_method", None)
    prep.pop("log_to_stderr", None)
    from . import util
    prep["mpsup_log_level"] = util.get_logger().level if util._log_to_stderr else None
    data = {"prep": prep, "process": pickle.dumps(proc, pickle.HIGHEST_PROTOCOL),
            "parent_pid": os.getpid()}
    env = dict(os.environ)
    # binascii rather than base64: the child decodes it without importing base64
    blob = binascii.b2a_base64(pickle.dumps(data, pickle.HIGHEST_PROTOCOL),
                               newline=False).decode()
    if len(blob) <= SPAWN_ENV_MAX:
        env["PY_MPSUP_SPAWN"] = blob
    else:
        # larger than one environment string may be (MAX_ARG_STRLEN): a
        # private value of this process that the child reads and deletes
        env["PY_MPSUP_SPAWN_OBJ"] = _runtime.create("spawn", "value", typecode="any",
                                                    init=blob)
    env["MPSUP_SOCKET"] = _runtime.client().socket_path
    return env


def _child_argv(module="mpsup._spawn", our_env=True):
    """The command line of a child running module's main(): our interpreter
    with our interpreter flags (-O, -W, -X ..., as the standard spawn passes
    them), and -c rather than -m (runpy's imports would cost the child more
    than the rest of its start). When the program found mpsup somewhere the
    child would not look by itself (its own sys.path; $PYTHONPATH only if
    our_env: the child has our environment), the code puts that directory
    first until prepare sets the program's sys.path."""
    from multiprocessing import util
    code = "from %s import main; main()" % module
    pkg_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if pkg_dir not in _default_path(our_env):
        code = "import sys; sys.path.insert(0, %r); %s" % (pkg_dir, code)
    return [sys.executable] + util._args_from_interpreter_flags() + ["-c", code]


def _default_path(our_env):
    """Where a child with our flags finds packages by itself: the site
    directories and, with our environment, $PYTHONPATH (not under -S, -E,
    -I)."""
    import site
    dirs = []
    if not sys.flags.no_site:
        dirs += site.getsitepackages()
        if site.ENABLE_USER_SITE:
            dirs.append(site.getusersitepackages())
    if our_env and not sys.flags.ignore_environment:
        dirs += [d for d in os.environ.get("PYTHONPATH", "").split(os.pathsep) if d]
    return {os.path.abspath(d) for d in dirs}


def _launch(proc):
    """proc.run of a fresh interpreter running mpsup._spawn."""
    from .. import _fdpass
    from . import _runtime
    env = _spawn_env(proc)
    params = dict(argv=_child_argv(),
                  name=_runtime.new_name("proc"),
                  env=env, cwd=os.getcwd(), daemon=bool(proc.daemon), scope="process",
                  stdio="passed")
    for f in (sys.stdout, sys.stderr):
        f.flush()

    def prepare(p):
        if "stdio" not in p:
            # the daemon cannot take our descriptors: the child fetches them
            p["env"]["PY_MPSUP_STDIO"] = _fdpass.server_path()

    res, _ = _runtime.call_ext("proc.run", _fds=[0, 1, 2], _prepare=prepare, **params)
    from ..procs import ProcHandle
    return ProcHandle(_runtime.client(), res["name"], res.get("pid"))


def _exit_function():
    """At exit, as the standard module: terminate daemonic children, join
    the others."""
    with _children_lock:
        kids = list(_children)
    for p in kids:
        if p.daemon and p._handle is not None:
            try:
                p.terminate()
            except (errors.Error, OSError):
                pass
    for p in kids:
        if p._handle is not None:
            try:
                p._handle.join()
            except (errors.Error, OSError):
                pass
    with _children_lock:
        _children.clear()


def _at_exit():
    # a process that never reached the daemon has nothing to clean up
    _runtime = sys.modules.get(__package__ + "._runtime")
    if _runtime is None or _runtime._client_pid != os.getpid():
        return
    from . import util
    util.info("process shutting down")
    pool = sys.modules.get(__package__ + ".pool")
    if pool is not None:
        pool._terminate_pools()
    _exit_function()
    _runtime.delete_unscoped()
    fdpass = sys.modules.get("mpsup._fdpass")
    if fdpass is not None:
        fdpass.close_server()


atexit.register(_at_exit)
