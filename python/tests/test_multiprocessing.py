#!/usr/bin/env python3
"""mpsup.multiprocessing against a real mpsupd, side by side with the
standard module: the tutorials' programs, documented behaviours of
multiprocessing, locked counters, Pool errors, timeouts and terminate, a
SIGKILLed program, and pickles refused from shared objects."""
import os
import pickle
import re
import signal
import subprocess
import sys

import pyharness
from pyharness import SCALE, normalize, wait_for

import mpsup
from mpsup.multiprocessing import _runtime

SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def drop_in(src):
    """The program with only its import line changed."""
    src = re.sub(r"^from multiprocessing import", "from mpsup.multiprocessing import", src,
                 flags=re.M)
    return re.sub(r"^import multiprocessing\b",
                  "import mpsup.multiprocessing as multiprocessing", src, flags=re.M)


# Per-program allowances where the standard module's own output is not
# deterministic (racing unlocked updates; terminate() without join()).
SEED_NORMALIZE = {
    "s0_value.py": [(r"data \d+", "data N"), (r"parent process \d+", "parent process N")],
    "s1_exit.py": [(r"kill_job, exit code : (None|-15)", "kill_job, exit code : None|-15")],
}

# Documented behaviours of multiprocessing, each a program run under both
# implementations: (name, source, expected stdout).
BEHAVIOURS = [
    ("JoinableQueue.join waits for task_done", """
{IMPORT}
def consume(q, out):
    for _ in range(3):
        out.put(q.get() * 10)
        q.task_done()
if __name__ == "__main__":
    q, out = multiprocessing.JoinableQueue(), multiprocessing.Queue()
    for i in range(3):
        q.put(i)
    p = multiprocessing.Process(target=consume, args=(q, out))
    p.start()
    q.join()
    print("joined", sorted(out.get() for _ in range(3)))
    p.join()
""", "joined [0, 10, 20]\n"),
    ("Barrier broken on timeout", """
{IMPORT}
import threading
if __name__ == "__main__":
    b = multiprocessing.Barrier(2)
    try:
        b.wait(0.2)
    except threading.BrokenBarrierError:
        print("broken", b.broken)
    b.reset()
    print("reset", b.broken, b.parties)
""", "broken True\nreset False 2\n"),
    ("Condition.wait_for a predicate", """
{IMPORT}
def setter(cv, v):
    with cv:
        v.value = 7
        cv.notify_all()
if __name__ == "__main__":
    cv = multiprocessing.Condition()
    v = multiprocessing.Value("i", 0)
    with cv:
        p = multiprocessing.Process(target=setter, args=(cv, v))
        p.start()
        print(cv.wait_for(lambda: v.value == 7, timeout=30))
    p.join()
""", "True\n"),
    ("Pool.imap keeps the order of the items", """
{IMPORT}
import time
def slow(x):
    time.sleep((10 - x) * 0.02)
    return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(3) as pool:
        print(list(pool.imap(slow, range(10))))
        print(sorted(pool.imap_unordered(slow, range(10), chunksize=2)))
""", "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"),
    ("Process.exitcode after terminate and kill", """
{IMPORT}
import time
if __name__ == "__main__":
    p = multiprocessing.Process(target=time.sleep, args=(60,))
    print(p.exitcode)
    p.start()
    p.terminate()
    p.join()
    k = multiprocessing.Process(target=time.sleep, args=(60,))
    k.start()
    k.kill()
    k.join()
    print(p.exitcode, k.exitcode, p.is_alive())
""", "None\n-15 -9 False\n"),
    ("Process.exitcode after sys.exit and an exception", """
{IMPORT}
import sys
def boom():
    raise RuntimeError("x")
if __name__ == "__main__":
    a = multiprocessing.Process(target=sys.exit, args=(3,))
    b = multiprocessing.Process(target=boom)
    c = multiprocessing.Process(target=sys.exit, args=("text",))
    for p in (a, b, c):
        p.start()
        p.join()
    print(a.exitcode, b.exitcode, c.exitcode)
""", "3 1 1\n"),
    ("Queue is FIFO and get(timeout) raises queue.Empty", """
{IMPORT}
import queue
def produce(q):
    for i in range(5):
        q.put((i, "item"))
if __name__ == "__main__":
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=produce, args=(q,))
    p.start()
    print([q.get() for _ in range(5)])
    p.join()
    try:
        q.get(timeout=0.1)
    except queue.Empty:
        print("empty", q.empty())
""", "[(0, 'item'), (1, 'item'), (2, 'item'), (3, 'item'), (4, 'item')]\nempty True\n"),
    ("Value and Array keep their typecode; get_lock guards updates", """
{IMPORT}
def work(v, a):
    for _ in range(100):
        with v.get_lock():
            v.value += 1
    with a.get_lock():
        a[0] += 1
if __name__ == "__main__":
    v = multiprocessing.Value("i", 0)
    d = multiprocessing.Value("d", 1.5)
    a = multiprocessing.Array("i", [0, 1, 2])
    ps = [multiprocessing.Process(target=work, args=(v, a)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    d.value = d.value * 2
    print(v.value, d.value, type(d.value).__name__, a[:], len(a))
""", "300 3.0 float [3, 1, 2] 3\n"),
    ("Event set in one process wakes another", """
{IMPORT}
def waiter(go, done):
    if go.wait(30):
        done.set()
if __name__ == "__main__":
    go, done = multiprocessing.Event(), multiprocessing.Event()
    p = multiprocessing.Process(target=waiter, args=(go, done))
    p.start()
    print(done.wait(0.1))
    go.set()
    print(done.wait(30), go.is_set())
    p.join()
""", "False\nTrue True\n"),
    ("Pipe is duplex; a one-way pipe's ends are read-only and write-only", """
{IMPORT}
def echo(conn):
    conn.send(("echo", conn.recv()))
if __name__ == "__main__":
    a, b = multiprocessing.Pipe()
    p = multiprocessing.Process(target=echo, args=(b,))
    p.start()
    a.send({1: b"x"})
    print(a.recv(), a.poll(0.05))
    p.join()
    r, w = multiprocessing.Pipe(duplex=False)
    w.send_bytes(b"raw")
    print(r.recv_bytes())
    try:
        r.send(1)
    except OSError:
        print("read-only")
""", "('echo', {1: b'x'}) False\nb'raw'\nread-only\n"),
    ("Manager dict, list and Namespace across processes", """
{IMPORT}
def fill(d, l, ns):
    d[1] = ("tuple", 1)
    l.append({2, 3})
    ns.x = 5
if __name__ == "__main__":
    with multiprocessing.Manager() as m:
        d, l, ns = m.dict(), m.list([0]), m.Namespace()
        p = multiprocessing.Process(target=fill, args=(d, l, ns))
        p.start()
        p.join()
        print(d[1], d.get(2), list(l), ns.x, 1 in d)
""", "('tuple', 1) None [0, {2, 3}] 5 True\n"),
    ("Pool re-raises a task's exception with its type and message", """
{IMPORT}
def boom(x):
    raise KeyError("bad %s" % x)
def boom2(x):
    if x == 2:
        raise KeyError("bad %s" % x)
    return x
def square(x):
    return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        r = pool.apply_async(boom, (4,))
        try:
            r.get(30)
        except KeyError as e:
            print(type(e).__name__, e, r.successful())
        try:
            pool.map(boom2, range(3))
        except KeyError as e:
            print("map", e)
        print(pool.starmap(pow, [(2, 3), (3, 2)]), pool.apply(square, (7,)))
""", "KeyError 'bad 4' False\nmap 'bad 2'\n[8, 9] 49\n"),
    ("Pool initializer with initargs, and maxtasksperchild replaces workers", """
{IMPORT}
import os
def init(tag):
    global TAG
    TAG = tag
def task(x):
    return TAG, os.getpid()
if __name__ == "__main__":
    with multiprocessing.Pool(1, initializer=init, initargs=("ready",),
                              maxtasksperchild=2) as pool:
        out = pool.map(task, range(6), chunksize=1)
    print(sorted(set(t for t, _ in out)), len(set(p for _, p in out)))
""", "['ready'] 3\n"),
    ("Pool.map, imap and imap_unordered keep every item of a large map", """
{IMPORT}
def tag(x):
    return x, "v" * 20
def add(a, b):
    return a + b
if __name__ == "__main__":
    n = 60000
    want = [tag(i) for i in range(n)]
    with multiprocessing.Pool(3) as pool:
        print(pool.map(tag, range(n), chunksize=1) == want,
              pool.map(tag, range(n), chunksize=7) == want,
              list(pool.imap(tag, range(n), chunksize=5)) == want,
              sorted(pool.imap_unordered(tag, range(n))) == want,
              pool.starmap(add, [(i, i) for i in range(n)]) == [2 * i for i in range(n)])
""", "True True True True True\n"),
    ("Pool.imap raises a failed item at its turn and goes on", """
{IMPORT}
def boom2(x):
    if x == 2:
        raise KeyError("bad %s" % x)
    return x
if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        it, out = pool.imap(boom2, range(5)), []
        for _ in range(5):
            try:
                out.append(next(it))
            except KeyError as e:
                out.append(repr(e))
        print(out)
""", "[0, 1, \"KeyError('bad 2')\", 3, 4]\n"),
    ("apply_async and map_async run callback and error_callback before ready", """
{IMPORT}
def square(x):
    return x * x
def boom(x):
    raise ValueError("no %s" % x)
if __name__ == "__main__":
    seen = []
    with multiprocessing.Pool(2) as pool:
        r1 = pool.apply_async(square, (3,), callback=seen.append)
        r2 = pool.apply_async(boom, (1,), error_callback=lambda e: seen.append(repr(e)))
        r3 = pool.map_async(square, range(4), callback=seen.append)
        r4 = pool.map_async(boom, range(4), error_callback=lambda e: seen.append(type(e)))
        for r in (r1, r2, r3, r4):
            r.wait(60)
        print(sorted(map(str, seen)), r1.successful(), r2.successful(), r3.get())
""", "['9', \"<class 'ValueError'>\", \"ValueError('no 1')\", '[0, 1, 4, 9]'] True False "
        "[0, 1, 4, 9]\n"),
    ("AsyncResult.get(timeout) raises multiprocessing.TimeoutError", """
{IMPORT}
import time
if __name__ == "__main__":
    with multiprocessing.Pool(1) as pool:
        r = pool.apply_async(time.sleep, (30,))
        try:
            r.get(timeout=0.2)
        except multiprocessing.TimeoutError:
            print("timeout", r.ready())
""", "timeout False\n"),
    ("A large argument reaches the child", """
{IMPORT}
def size(q, big):
    q.put(len(big))
if __name__ == "__main__":
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=size, args=(q, "x" * 500000))
    p.start()
    print(q.get())
    p.join()
    print(p.exitcode)
""", "500000\n0\n"),
    ("current_process, parent_process and active_children", """
{IMPORT}
import os
def show(ppid):
    me = multiprocessing.current_process()
    print(me.name, multiprocessing.parent_process().pid == ppid)
if __name__ == "__main__":
    print(multiprocessing.current_process().name, multiprocessing.parent_process())
    p = multiprocessing.Process(target=show, args=(os.getpid(),), name="kid")
    p.start()
    p.join()
    print(multiprocessing.active_children(), multiprocessing.cpu_count() > 0)
""", "MainProcess None\nkid True\n[] True\n"),
]


def seed_env():
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)   # one write per child, as at exit
    return env


class MultiprocessingTest(pyharness.DaemonClassCase):

    def run_src(self, src, impl, name="prog.py", timeout=90, flags=(), env=None):
        path = os.path.join(self.tmp, impl + "_" + name)
        with open(path, "w") as f:
            f.write(drop_in(src) if impl == "mpsup" else src)
        return subprocess.run([sys.executable, *flags, path], capture_output=True, text=True,
                              timeout=timeout * SCALE, cwd=self.tmp, env=env or seed_env())

    def test_seed_programs(self):
        for name in sorted(os.listdir(SEEDS)):
            if not name.endswith(".py"):
                continue
            with self.subTest(seed=name):
                with open(os.path.join(SEEDS, name)) as f:
                    src = f.read()
                std = self.run_src(src, "std", name)
                ours = self.run_src(src, "mpsup", name)
                self.assertEqual(std.returncode, 0, std.stderr)
                self.assertEqual(ours.returncode, 0, ours.stderr)
                outs = []
                for out in (std.stdout, ours.stdout):
                    for pat, rep in SEED_NORMALIZE.get(name, []):
                        out = re.sub(pat, rep, out)
                    outs.append(normalize(out))
                self.assertEqual(outs[0], outs[1], "stderr of mpsup's run:\n" + ours.stderr)
                self.assertTrue(ours.stdout.strip() or name == "s1_logging.py")
                if name == "s0_value.py":
                    final = int(re.search(r"parent process (\d+)", ours.stdout).group(1))
                    self.assertTrue(0 < final <= 450, final)
                if name == "s1_logging.py":
                    for err in (std.stderr, ours.stderr):
                        self.assertIn("[INFO/MainProcess] process shutting down", err)
        self.assertEqual(self.py_objects(), [])

    def condition_supported(self):
        try:
            mpsup.Client(self.d.socket).condition("probe.condition").notify_all()
        except (mpsup.UnknownCommand, mpsup.BadRequest):
            return False
        except mpsup.Error:
            pass
        return True

    def check_behaviour(self, i, impl):
        what, src, expected = BEHAVIOURS[i]
        with self.subTest(behaviour=what, impl=impl):
            p = self.run_src(src.replace("{IMPORT}", "import multiprocessing"), impl,
                             "behaviour%d.py" % i)
            self.assertEqual(p.stdout, expected, p.stderr)
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_documented_behaviours(self):
        for i, (what, _, _) in enumerate(BEHAVIOURS):
            for impl in ("std", "mpsup"):
                if not ("Condition" in what and impl == "mpsup"):
                    self.check_behaviour(i, impl)

    def test_condition_behaviour(self):
        if not self.condition_supported():
            self.skipTest("the daemon has no condition type yet")
        self.check_behaviour([w for w, _, _ in BEHAVIOURS].index(
            "Condition.wait_for a predicate"), "mpsup")

    def test_locked_counter_8_processes(self):
        src = """
import multiprocessing
def work(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1
if __name__ == "__main__":
    v = multiprocessing.Value("i", 0)
    ps = [multiprocessing.Process(target=work, args=(v, 1000)) for _ in range(8)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print(v.value, [p.exitcode for p in ps])
"""
        p = self.run_src(src, "mpsup", "counter.py", timeout=300)
        self.assertEqual(p.stdout, "8000 [0, 0, 0, 0, 0, 0, 0, 0]\n", p.stderr)

    def test_pool_unpickles_a_maps_function_once(self):
        # each worker unpickles a map's function once, however many tasks
        # it runs, and the function's exceptions still come back
        src = """
import multiprocessing
def make():
    Counted.unpickled += 1
    return Counted()
class Counted:
    unpickled = 0
    def __reduce__(self):
        return (make, ())
    def __call__(self, x):
        if x == -1:
            raise KeyError("bad %s" % x)
        return Counted.unpickled
if __name__ == "__main__":
    f = Counted()
    with multiprocessing.Pool(2) as pool:
        a = pool.map(f, range(300), chunksize=1)
        b = list(pool.imap_unordered(f, range(300)))
        try:
            pool.map(f, [1, -1, 2])
        except KeyError as e:
            print("raised", e)
    print(max(a), max(b))
"""
        p = self.run_src(src, "mpsup", "once.py")
        self.assertEqual(p.stdout, "raised 'bad -1'\n1 1\n", p.stderr)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_child_imports_only_what_it_uses(self):
        # a child whose target needs no object neither imports the client
        # nor connects; the lazily loaded names are all there
        src = """
import sys
import multiprocessing
def show():
    print(sorted(m for m in ("mpsup.client", "mpsup.multiprocessing.pool", "json", "logging",
                             "mpsup.multiprocessing.objects", "multiprocessing.spawn",
                             "multiprocessing.util", "subprocess", "base64")
                 if m in sys.modules))
if __name__ == "__main__":
    from multiprocessing import Queue
    p = multiprocessing.Process(target=show)
    p.start()
    p.join()
    print(p.exitcode, issubclass(multiprocessing.TimeoutError, multiprocessing.ProcessError),
          issubclass(multiprocessing.TimeoutError, TimeoutError), callable(Queue),
          "Pool" in dir(multiprocessing))
"""
        p = self.run_src(src, "mpsup", "lazy.py")
        self.assertEqual(p.stdout, "[]\n0 True True True True\n", p.stderr)

    def test_child_gets_the_interpreter_flags(self):
        # as spawn: a program run with -O and -W has children with them
        src = """
import sys
import warnings
import multiprocessing
def show():
    print(sys.flags.optimize, __debug__, "error::UserWarning" in sys.warnoptions)
if __name__ == "__main__":
    p = multiprocessing.Process(target=show)
    p.start()
    p.join()
    print(p.exitcode)
"""
        flags = ("-O", "-W", "error::UserWarning")
        for impl in ("std", "mpsup"):
            with self.subTest(impl=impl):
                p = self.run_src(src, impl, "flags.py", flags=flags)
                self.assertEqual(p.stdout, "1 False True\n0\n", p.stderr)

    def test_pool_workers_get_the_interpreter_flags(self):
        src = """
import sys
import multiprocessing
def show(_):
    return (sys.flags.optimize, __debug__, "error::UserWarning" in sys.warnoptions)
if __name__ == "__main__":
    with multiprocessing.Pool(1) as pool:
        print(pool.map(show, [0]))
"""
        flags = ("-O", "-W", "error::UserWarning")
        for impl in ("std", "mpsup"):
            with self.subTest(impl=impl):
                p = self.run_src(src, impl, "poolflags.py", flags=flags)
                self.assertEqual(p.stdout, "[(1, False, True)]\n", p.stderr)

    def test_child_finds_mpsup_where_the_program_did(self):
        # the program puts the package on sys.path itself (no PYTHONPATH):
        # its children find the same package
        src = """
import os
import sys
sys.path.insert(0, %r)
import multiprocessing
def show():
    import mpsup
    print(os.path.samefile(os.path.dirname(os.path.dirname(mpsup.__file__)), sys.path[0]))
if __name__ == "__main__":
    p = multiprocessing.Process(target=show)
    p.start()
    p.join()
    print(p.exitcode)
""" % os.path.abspath(pyharness.PYDIR)
        env = seed_env()
        env.pop("PYTHONPATH", None)
        p = self.run_src(src, "mpsup", "path.py", env=env)
        self.assertEqual(p.stdout, "True\n0\n", p.stderr)

    def test_pool_worker_prepares_like_a_process_child(self):
        # a Pool worker is prepared as a Process child is: the main module
        # as __mp_main__, the name, and no multiprocessing.spawn import
        src = """
import sys
import multiprocessing
def loaded(_):
    return (sorted(m for m in ("multiprocessing.spawn", "subprocess") if m in sys.modules),
            multiprocessing.current_process().name, __name__)
if __name__ == "__main__":
    with multiprocessing.Pool(1) as pool:
        print(pool.map(loaded, [0]))
"""
        p = self.run_src(src, "mpsup", "worker.py")
        self.assertEqual(p.stdout, "[([], 'SpawnPoolWorker-1', '__mp_main__')]\n", p.stderr)

    def test_pool_without_pool_imap(self):
        # a daemon that answers pool.imap with unknown_command: the maps go
        # through pool.submit and task.wait instead, with the same results
        src = """
import multiprocessing
from mpsup import errors
from mpsup.multiprocessing import pool as pool_mod
def older_daemon(*a, **kw):
    raise errors.UnknownCommand("unknown command 'pool.imap'", "unknown_command")
def tag(x):
    if x == -1:
        raise KeyError("bad %s" % x)
    return x * 2
if __name__ == "__main__":
    pool_mod._Stream = older_daemon
    n, want = 3000, [2 * i for i in range(3000)]
    with multiprocessing.Pool(2) as pool:
        print(pool.map(tag, range(n)) == want, pool.map(tag, range(n), chunksize=1) == want,
              sorted(pool.imap_unordered(tag, range(n))) == want,
              pool.map_async(tag, range(5)).get(60))
        try:
            pool.map(tag, [1, -1, 2])
        except KeyError as e:
            print("raised", e)
    print(pool_mod._have_imap)
"""
        p = self.run_src(src, "mpsup", "noimap.py")
        self.assertEqual(p.stdout, "True True True [0, 2, 4, 6, 8]\nraised 'bad -1'\nFalse\n",
                         p.stderr)

    def test_pool_terminate_kills_workers_mid_task(self):
        src = """
import multiprocessing, os, sys, time
def pid_then_sleep(x):
    print("worker", os.getpid(), flush=True)
    time.sleep(60)
if __name__ == "__main__":
    pool = multiprocessing.Pool(2, maxtasksperchild=1)
    r = pool.map_async(pid_then_sleep, range(2), chunksize=1)
    # the test makes sys.argv[1] once both workers have said they run
    timed_out = False
    while not os.path.exists(sys.argv[1]):
        try:
            r.get(timeout=0.1)
        except multiprocessing.TimeoutError:
            timed_out = True
    print("timeout" if timed_out else "done", flush=True)
    t0 = time.monotonic()
    pool.terminate()
    print("terminated", time.monotonic() - t0 < 30, flush=True)
    time.sleep(60)
"""
        path = os.path.join(self.tmp, "terminate.py")
        with open(path, "w") as f:
            f.write(drop_in(src))
        go = os.path.join(self.tmp, "terminate.go")
        proc = subprocess.Popen([sys.executable, path, go], stdout=subprocess.PIPE, text=True,
                                env=seed_env(), cwd=self.tmp)
        try:
            lines = []
            while not lines or not lines[-1].startswith("terminated"):
                line = proc.stdout.readline()
                self.assertTrue(line, "program ended early: %r" % lines)
                lines.append(line.strip())
                if sum(x.startswith("worker") for x in lines) == 2 and not os.path.exists(go):
                    open(go, "w").close()
            self.assertIn("timeout", lines)
            self.assertIn("terminated True", lines)
            pids = [int(x.split()[1]) for x in lines if x.startswith("worker")]
            self.assertEqual(len(pids), 2, lines)
            for pid in pids:
                wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                         open("/proc/%d/stat" % pid).read().split()[2] == "Z",
                         what="worker %d to die" % pid)
            self.assertEqual(self.py_objects(), [])
        finally:
            proc.kill()
            proc.wait()

    def test_sigkilled_program_leaves_nothing(self):
        c = mpsup.Client(self.d.socket)
        try:
            c.call("obj.create", name="probe.scope", type="dict", scope="process")
            c.delete("probe.scope")
        except mpsup.BadRequest as e:
            self.skipTest("the daemon has no scope \"process\" yet: %s" % e)
        src = """
import multiprocessing, os, time
if __name__ == "__main__":
    q, lk, v = multiprocessing.Queue(), multiprocessing.Lock(), multiprocessing.Value("i", 1)
    m = multiprocessing.Manager()
    d = m.dict(a=1)
    pool = multiprocessing.Pool(2)
    print(pool.map(abs, [-1, -2]))
    p = multiprocessing.Process(target=time.sleep, args=(600,), daemon=True)
    p.start()
    lk.acquire()
    print("ready", p.pid, flush=True)
    time.sleep(600)
"""
        path = os.path.join(self.tmp, "killed.py")
        with open(path, "w") as f:
            f.write(drop_in(src))
        proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, text=True,
                                env=seed_env(), cwd=self.tmp)
        try:
            line = ""
            while not line.startswith("ready"):
                line = proc.stdout.readline()
                self.assertTrue(line, "the program ended early")
            child = int(line.split()[1])
            self.assertNotEqual(self.py_objects(), [])
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            wait_for(lambda: self.py_objects() == [], what="objects and pools to go")
            wait_for(lambda: not os.path.exists("/proc/%d" % child) or
                     open("/proc/%d/stat" % child).read().split()[2] == "Z",
                     what="the daemon child to die")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_pickles_refused_from_shared_objects(self):
        marker = os.path.join(self.tmp, "unpickled")

        class Evil:
            def __reduce__(self):
                return (open, (marker, "w"))

        c = mpsup.Client(self.d.socket)
        shared = _runtime.pickled(Evil())
        c.queue("shared.q").put(shared)
        q = mpsup.proxies.QueueProxy(c, "shared.q", _runtime.Codec(private=False))
        with self.assertRaises(PermissionError) as cm:
            q.get(timeout=5)
        self.assertIsInstance(cm.exception, mpsup.Error)
        self.assertFalse(os.path.exists(marker))
        # the plain client never unpickles: it shows the tagged value
        c.queue("shared.q").put(shared)
        self.assertEqual(c.queue("shared.q").get(timeout=5), shared)
        # a private object's value comes back as the Python value
        self.assertEqual(_runtime.Codec(private=True).decode(_runtime.pickled((1, b"x"))),
                         (1, b"x"))
        self.assertEqual(pickle.loads(pickle.dumps(_runtime.Codec(True))).private, True)

    def test_values_at_the_edges_of_json(self):
        # what JSON carries as is travels as is, the rest pickled; each
        # comes back as itself (type included) through a dict and a queue
        c = mpsup.Client(self.d.socket)
        d = mpsup.proxies.DictProxy(c, "edge.d", _runtime.Codec(private=True))
        q = mpsup.proxies.QueueProxy(c, "edge.q", _runtime.Codec(private=True))
        vals = [0, 1, -(1 << 63), (1 << 63) - 1, 1 << 63, -(1 << 63) - 1, True, False,
                None, "s", 1.5, float("inf"), (1, 2), b"x", [1, (2,)], {"a": 1}, {1: 2}]
        for i, v in enumerate(vals):
            d["k%d" % i] = v
            q.put(v)
        for i, v in enumerate(vals):
            for got in (d["k%d" % i], d.get("k%d" % i), q.get(timeout=5)):
                self.assertEqual(got, v)
                self.assertIs(type(got), type(v))
        # a plain client reads what went on the wire
        plain = c.dict("edge.d")
        self.assertEqual(plain["k3"], (1 << 63) - 1)
        self.assertIs(plain["k6"], True)
        for i in (4, 5, 11, 12, 13):
            self.assertTrue(_runtime.is_pickled(plain["k%d" % i]), vals[i])


class RunPeerTest(pyharness.mpsuptest.unittest.TestCase):
    """The drop-in as an ordinary user (nobody) with the run role: its
    processes and pool run as itself, its output reaches its own stdout."""

    def setUp(self):
        if os.getuid() != 0:
            self.skipTest("needs root to run a program as nobody")
        self.d = pyharness.mpsuptest.Daemon("[access]\nrun = nobody\n", "socket_mode = 0666")
        try:
            self.d.start()
        except AssertionError as e:
            self.d.cleanup()
            self.skipTest("this mpsupd has no run role: %s" % str(e)[-200:])
        os.chmod(self.d.dir, 0o755)
        try:
            c = mpsup.Client(self.d.socket)
            c.call("obj.create", name="probe.private", type="dict", access="private")
            c.call("pool.add", pool="probe.pool", command="/bin/true", mode="task",
                   processes=0, autostart=False, task_max_per_worker=1)
        except mpsup.BadRequest as e:
            # without access "private" a run peer's pickles are refused (its
            # socket is open to others): right, and nothing to test here
            self.tearDown()
            self.skipTest("this mpsupd has no private objects or transient pools: %s" % e)

    def tearDown(self):
        if self.d.proc is None:
            return
        rc = self.d.stop()
        log = self.d.read_log()
        import shutil
        shutil.rmtree(self.d.dir, ignore_errors=True)
        self.assertIn(rc, (0, None), log[-5000:])

    def test_program_as_nobody(self):
        src = """
import mpsup.multiprocessing as multiprocessing
import os
def child(q):
    q.put(("child", os.getuid()))
def square(x):
    return x * x, os.getuid()
if __name__ == "__main__":
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=child, args=(q,))
    p.start()
    print(q.get())
    p.join()
    with multiprocessing.Pool(2, maxtasksperchild=2) as pool:
        print(pool.map(square, range(4), chunksize=1))
    print(p.exitcode)
"""
        import tempfile
        tmp = tempfile.mkdtemp(prefix="mpsup-nobody-")
        os.chmod(tmp, 0o755)
        path = os.path.join(tmp, "prog.py")
        with open(path, "w") as f:
            f.write(src)
        env = seed_env()
        env["MPSUP_SOCKET"] = self.d.socket
        env["PYTHONPATH"] = pyharness.PYDIR
        try:
            # the system's python3: a python under /root is not nobody's to run
            py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            p = subprocess.run([py, path], capture_output=True, text=True,
                               env=env, cwd=tmp, user=65534, group=65534, extra_groups=[],
                               timeout=120 * SCALE)
        finally:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(p.stdout, "('child', 65534)\n"
                         "[(0, 65534), (1, 65534), (4, 65534), (9, 65534)]\n0\n", p.stderr)


if __name__ == "__main__":
    pyharness.main()
