"""Harness of the Python package's tests: a real mpsupd (tests/e2e/mpsuptest.py)
per test class, the package on sys.path and PYTHONPATH, and the output of a
program up to pids and interleaving."""
import os
import re
import sys
import tempfile

SRCDIR = os.environ.get("MPSUP_SRCDIR", os.getcwd())
PYDIR = os.path.join(SRCDIR, "python")
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
sys.path.insert(0, PYDIR)

import mpsuptest  # noqa: E402
from mpsuptest import SCALE, wait_for  # noqa: E402,F401

class DaemonClassCase(mpsuptest.unittest.TestCase):
    """One mpsupd for the whole class (self.d); MPSUP_SOCKET and PYTHONPATH
    point at it and at the package for the test and its children."""
    config = ""
    main_config = ""
    # "redis" or "redis-cluster": always; None: as MPSUP_TEST_STATE_BACKEND says
    state_backend = None

    @classmethod
    def setUpClass(cls):
        main_config = cls.main_config
        cls.redis = None
        backend = cls.state_backend or mpsuptest.STATE_BACKEND
        if backend == "redis":
            # the state in a private redis-server
            if not mpsuptest.RedisServer.available():
                raise mpsuptest.unittest.SkipTest("redis-server is not installed")
            cls.redis = mpsuptest.RedisServer().start()
            main_config = cls.redis.config(main_config)
        elif backend == "redis-cluster":
            # the file's local Redis Cluster, emptied; stopped at exit
            if not mpsuptest.RedisCluster.available():
                raise mpsuptest.unittest.SkipTest("redis-server or redis-cli is not installed")
            main_config = mpsuptest.shared_cluster().config(main_config)
        cls.d = mpsuptest.Daemon(cls.config, main_config)
        cls.d.start()
        cls.old_env = {k: os.environ.get(k) for k in ("MPSUP_SOCKET", "PYTHONPATH")}
        os.environ["MPSUP_SOCKET"] = cls.d.socket
        pp = cls.old_env["PYTHONPATH"]
        os.environ["PYTHONPATH"] = PYDIR + (os.pathsep + pp if pp else "")
        cls.tmp = tempfile.mkdtemp(prefix="mpsup-py-")

    @classmethod
    def tearDownClass(cls):
        for k, v in cls.old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        rc = cls.d.stop()
        log = cls.d.read_log()
        if cls.redis is not None:
            cls.redis.cleanup()
        import shutil
        shutil.rmtree(cls.d.dir, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if rc not in (0, None):
            raise AssertionError("mpsupd exited with %r; log:\n%s" % (rc, log[-20000:]))

    def py_objects(self):
        """The objects and processes that mpsup.multiprocessing made."""
        mine = re.compile(r"^(u\d+\.)?py\.\d+\.")
        objs = [o["name"] for o in self.d.ok("obj.list") if mine.match(o["name"])]
        pools = [p.get("pool", p.get("name")) for p in self.d.ok("pool.list")
                 if mine.match(str(p.get("pool", p.get("name", ""))))]
        return objs + pools


def normalize(text):
    """Output up to pids, addresses, times and the worker names of the
    start methods; lines sorted (real processes interleave)."""
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    text = re.sub(r"(?i)(pid|ID|parent)([ :=]*)\d+", r"\1\2N", text)
    text = re.sub(r"\w*PoolWorker-\d+", "PoolWorker-N", text)
    text = re.sub(r"--- [0-9.e-]+ seconds ---", "--- T seconds ---", text)
    return sorted(line.rstrip() for line in text.splitlines())


main = mpsuptest.main
