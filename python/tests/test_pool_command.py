#!/usr/bin/env python3
"""The Python Pool's worker command line (pool._command_line) against a real
mpsupd: the daemon splits the command with shell-like quoting and expands
its placeholders, and every word (the interpreter's path, flags, code,
directories) must reach the worker byte for byte."""
import json
import os
import subprocess
import sys

import pyharness
from pyharness import SCALE, wait_for

from mpsup.multiprocessing.pool import _command_line

# Words a path or a flag may hold: blanks, both quotes, backslashes, the
# daemon's placeholders, shell characters, non-ASCII and a newline.
HOSTILE = ["a b", "tab\there", "it's", 'say "hi"', "back\\slash", "\\", "\\\\",
           "\\'", '\\"', "%", "%%", "%(index)d", "%(name)s", "100%s", "$HOME",
           "`id`", "*", "~", "#", ";", "|", "é ü 漢", "line1\nline2", "\r", "",
           " ", "-O", "--", "'\"'\"'"]

# The worker writes its exact argv (from /proc) and stays.
CODE = """import json, os, sys
args = open('/proc/self/cmdline', 'rb').read().split(b'\\0')[:-1]
out = sys.argv[1]
with open(out + '.tmp', 'w') as f:
    json.dump([a.decode('utf-8', 'surrogateescape') for a in args], f)
os.rename(out + '.tmp', out)
import time; time.sleep(600)
"""


class PoolCommandTest(pyharness.DaemonClassCase):
    def start_pool(self, name, argv, out):
        self.d.ok("pool.add", pool=name, command=_command_line(argv), processes=1)
        self.addCleanup(self.d.ok, "pool.remove", pool=name)
        wait_for(lambda: os.path.exists(out), what="the worker's argv")
        with open(out) as f:
            return json.load(f)

    def test_every_word_reaches_the_worker(self):
        out = os.path.join(self.tmp, "argv1")
        argv = [sys.executable, "-c", CODE, out] + HOSTILE
        self.assertEqual(self.start_pool("cmd1", argv, out), argv)

    def test_interpreter_in_a_hostile_directory(self):
        # sys.executable itself under a directory named with all of them
        d = os.path.join(self.tmp, "".join(w for w in HOSTILE if "/" not in w))
        os.makedirs(d)
        exe = os.path.join(d, "py thon %(index)d '\"")
        os.symlink(sys.executable, exe)
        out = os.path.join(d, "argv2 %%")
        argv = [exe, "-c", CODE, out, "x"]
        self.assertEqual(self.start_pool("cmd2", argv, out), argv)

    def test_pool_from_a_hostile_directory(self):
        # a whole Pool: the interpreter, the program and its working
        # directory under such a name, interpreter flags on the command line
        d = os.path.join(self.tmp, "pool " + "".join(w for w in HOSTILE if "/" not in w))
        os.makedirs(d)
        exe = os.path.join(d, "py thon %(pool)s '\"")
        os.symlink(sys.executable, exe)
        prog = os.path.join(d, "prog %% 'x'.py")
        with open(prog, "w") as f:
            f.write(POOL_PROG)
        p = subprocess.run([exe, "-W", "ignore::DeprecationWarning:a b%", prog],
                           capture_output=True, timeout=90 * SCALE, cwd=d)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), [[x * x, d, exe] for x in range(3)],
                         p.stderr)


# The worker's cwd and interpreter path, as the program sees them.
POOL_PROG = """import json, os, sys
import mpsup.multiprocessing as multiprocessing
def f(x):
    return [x * x, os.getcwd(), sys.executable]
if __name__ == "__main__":
    with multiprocessing.Pool(1) as pool:
        print(json.dumps(pool.map(f, range(3))))
"""


if __name__ == "__main__":
    pyharness.main()
