"""End-to-end tests of cgroup v2 supervision: with a delegated cgroup v2
subtree, mpsupd moves itself to a leaf and puts every worker in its own
cgroup (pools/POOL/INDEX, run/NAME) before exec; a worker that double-forks
and escapes its process group still dies at stop (cgroup.kill); records
carry cpu_seconds (memory_bytes with the memory controller); daemon.info
says whether cgroups are used. The test finds cgroup2 the way the daemon
does (/proc/self/mountinfo, /proc/self/cgroup) and, when it runs in the root
cgroup as root, makes a delegated cgroup for the daemon as systemd's
Delegate=yes would; without either it skips, saying why."""
import os
import signal
import time

import mpsuptest
from mpsuptest import Daemon, DaemonTestCase, wait_for


def cgroup2():
    """(mount point, our cgroup path) or None."""
    mnt = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.startswith("cgroup2 "):
                mnt = left.split()[4]
                break
    if not mnt:
        return None
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return mnt, line[3:].strip()
    return None


def delegated_parent():
    """A cgroup directory a daemon started now would be delegated, and the
    cgroup we are in; or (None, why)."""
    cg = cgroup2()
    if not cg:
        return None, "no cgroup2 mount"
    mnt, own = cg
    if own != "/":
        path = mnt + own
        if os.access(path, os.W_OK) and os.path.exists(path + "/cgroup.kill"):
            return path, None
        return None, "our cgroup %s is not delegated" % path
    if os.geteuid() != 0 or not os.access(mnt, os.W_OK):
        return None, "in the root cgroup of %s and not root" % mnt
    return mnt, None


def rmtree_cgroup(path):
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class CgroupCase(DaemonTestCase):
    """A daemon started in its own delegated cgroup."""

    def setUp(self):
        parent, why = delegated_parent()
        if not parent:
            self.skipTest("no usable cgroup v2: " + why)
        self.made = None
        cg = cgroup2()
        if cg[1] == "/":
            # as systemd would for a Delegate=yes service: a cgroup of its own
            self.made = os.path.join(parent, "mpsup-e2e-%d" % os.getpid())
            os.mkdir(self.made)
            self.addCleanup(rmtree_cgroup, self.made)
            with open(self.made + "/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
            try:
                super().setUp()
            finally:
                with open(parent + "/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
            self.base = self.made
        else:
            super().setUp()
            self.base = parent

    def pid_of(self, name):
        return wait_for(lambda: (lambda r: r["state"] == "running" and r["pid"])(
            self.d.ok("status", target=name)[0]), what=name + " running")


class Cgroups(CgroupCase):
    config = "[pool:w]\ncommand = sleep 1000\nstart_secs = 0\n"

    def test_placement_and_info(self):
        info = self.d.ok("daemon.info")["cgroup"]
        self.assertEqual((info["enabled"], info["path"]), (True, self.base))
        pid = self.pid_of("w:0")
        mnt = cgroup2()[0]
        with open("/proc/%d/cgroup" % pid) as f:
            self.assertIn("0::%s/pools/w/0\n" % self.base[len(mnt):], f.read())
        with open("/proc/%d/cgroup" % self.d.pid()) as f:
            self.assertIn("0::%s/daemon\n" % self.base[len(mnt):], f.read())
        r = self.d.ok("status", target="w:0")[0]
        self.assertIsInstance(r["cpu_seconds"], float)
        self.assertIn("memory_bytes", r)
        r = self.d.ok("proc.run", argv=["sleep", "1000"])
        with open("/proc/%d/cgroup" % r["pid"]) as f:
            self.assertIn("/run/%s\n" % r["name"], f.read())
        self.d.ok("proc.kill", target=r["name"])

    def test_escaped_child_dies_at_stop(self):
        esc = os.path.join(self.d.dir, "escaped")
        self.d.ok("pool.add", pool="esc", start_secs=0, command=[
            "sh", "-c", "(setsid sleep 1000 & echo $! > %s); exec sleep 1000" % esc])
        self.pid_of("esc:0")
        wait_for(lambda: os.path.exists(esc) and open(esc).read().strip(), what="escapee")
        pid = int(open(esc).read())
        main = self.pid_of("esc:0")
        wait_for(lambda: os.getpgid(pid) != os.getpgid(main), what="the child's own session")
        # a stop answers once the cgroup is empty: the escapee is gone by then
        self.d.ok("proc.stop", target="esc", wait=True)
        self.assertFalse(alive(pid), "the escaped child outlived the stop")
        self.assertIn("esc:0: killing what is left in its cgroup", self.d.read_log())


    def test_limits_or_a_warning(self):
        ctl = open(os.path.join(self.base, "cgroup.controllers")).read().split()
        self.d.ok("pool.add", pool="lim", command="sleep 1000", start_secs=0,
                  memory_max="64M", pids_max=50, cpu_max="50%")
        pid = self.pid_of("lim:0")
        mnt = cgroup2()[0]
        rel = open("/proc/%d/cgroup" % pid).read().split("0::", 1)[1].split()[0]
        for key, c, f, want in (("memory_max", "memory", "memory.max", "67108864"),
                                ("pids_max", "pids", "pids.max", "50"),
                                ("cpu_max", "cpu", "cpu.max", "50000 100000")):
            if c in ctl:
                self.assertEqual(open(mnt + rel + "/" + f).read().strip(), want)
            else:
                self.assertIn("pool lim: %s ignored: no %s controller in %s"
                              % (key, c, self.base), self.d.read_log())

    def test_oom_killed(self):
        ctl = open(os.path.join(self.base, "cgroup.controllers")).read().split()
        if "memory" not in ctl:
            self.skipTest("no memory controller in this cgroup v2 tree (%s)" % self.base)
        with self.d.client() as ev:
            ev.send("events.subscribe", topics=["process"])
            self.assertTrue(ev.recv()["ok"])
            self.d.ok("pool.add", pool="hog", restart="never", start_secs=0, memory_max="32M",
                      command=["python3", "-c", "b = []\nwhile True: b.append(bytearray(1 << 20))"])
            while ev.recv().get("event") != "process.oom":
                pass
        wait_for(lambda: self.d.ok("status", target="hog:0")[0]["reason"] == "oom-killed",
                 what="hog oom-killed")


class CgroupOff(DaemonTestCase):
    main_config = "cgroup = off\n"

    def test_off(self):
        info = self.d.ok("daemon.info")["cgroup"]
        self.assertEqual(info, {"enabled": False, "path": None, "why": "cgroup = off"})
        self.d.ok("pool.add", pool="lim", command="sleep 1000", memory_max="64M")
        self.assertIn("pool lim: memory_max ignored: no cgroups (cgroup = off)",
                      self.d.read_log())
        self.assertEqual(self.d.err("pool.add", pool="bad", command="true", cpu_max="50"),
                         "bad_request")


if __name__ == "__main__":
    mpsuptest.main()
