#!/usr/bin/env python3
"""The drop-in mpsup.multiprocessing against an mpsupd whose state lives in
Redis (state_backend = redis), a Condition among them: its objects are private to the program's uid
and end with its process, there as with the local backend."""
import os
import subprocess
import sys

import pyharness
from pyharness import SCALE, wait_for

PROGRAM = """
import mpsup.multiprocessing as multiprocessing
import sys

def child(q, d, lock, v, cond, flag):
    for i in range(50):
        with lock:
            v.value += 1
    d["child"] = [1, {"k": (2, 3)}]   # a tuple: pickled in the dict
    with cond:
        flag.value = 1
        cond.notify_all()
    q.put(("done", b"bytes"))

if __name__ == "__main__":
    q, lock, v = multiprocessing.Queue(), multiprocessing.Lock(), multiprocessing.Value("i", 0)
    cond, flag = multiprocessing.Condition(), multiprocessing.Value("i", 0)
    with multiprocessing.Manager() as m:
        d = m.dict(a=1)
        p = multiprocessing.Process(target=child, args=(q, d, lock, v, cond, flag))
        p.start()
        for i in range(50):
            with lock:
                v.value += 1
        with cond:
            print("notified", cond.wait_for(lambda: flag.value == 1, timeout=60))
        print(q.get(timeout=60))
        p.join()
        print(p.exitcode, v.value, sorted(d.items()))
        print("ready", flush=True)
        sys.stdin.readline()
"""


class DropInOnRedis(pyharness.DaemonClassCase):
    state_backend = "redis"

    def rcli(self, *args):
        return subprocess.run(["redis-cli", "-s", self.redis.socket] + list(args),
                              capture_output=True, text=True, check=True).stdout

    def metas(self):
        """The meta keys of the program's objects in Redis."""
        return [k for k in self.rcli("--scan", "--pattern", "mpsup:{py.*}").split()]

    def test_program_queue_dict_lock_value_condition(self):
        path = os.path.join(self.tmp, "prog.py")
        with open(path, "w") as f:
            f.write(PROGRAM)
        proc = subprocess.Popen([sys.executable, path], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=self.tmp)
        try:
            out = []
            while not out or out[-1] != "ready\n":
                line = proc.stdout.readline()
                if not line:
                    self.fail("the program ended early: %s%s"
                              % ("".join(out), proc.stderr.read()))
                out.append(line)
            self.assertEqual(out, ["notified True\n", "('done', b'bytes')\n",
                                   "0 100 [('a', 1), ('child', [1, {'k': (2, 3)}])]\n",
                                   "ready\n"])
            # every object it made is private to its uid and scoped to it
            metas = self.metas()
            self.assertGreaterEqual(len(metas), 6, metas)
            for k in metas:
                self.assertEqual(self.rcli("HGET", k, "o").strip(), str(os.getuid()), k)
                self.assertTrue(self.rcli("HGET", k, "sh").strip(), k)
            self.assertNotEqual(self.py_objects(), [])
            proc.stdin.close()
            self.assertEqual(proc.wait(timeout=60 * SCALE), 0, proc.stderr.read())
            # its process ended: its objects are deleted in Redis
            wait_for(lambda: self.py_objects() == [], what="the program's objects to go")
            self.assertEqual(self.metas(), [])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()


if __name__ == "__main__":
    if not pyharness.mpsuptest.RedisServer.available():
        pyharness.mpsuptest.skip_all("redis-server is not installed")
    pyharness.main()
