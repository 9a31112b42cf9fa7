"""End-to-end tests of pool output files written by a root mpsupd for a pool
that runs as nobody (DESIGN §5 stdout/stderr = file:, §8).

The pool's log directory belongs to nobody, so nobody can put anything at
the names mpsupd writes: the output file, its backups, the directories on
the way. The test plays that user (what it plants is chowned to nobody; a
hard link is made as root, as protected_hardlinks would stop nobody, since
what is tested is the link count check) and aims each name at a root-only
victim. Then it drives every way the daemon opens, rotates or truncates:
start, worker restart, rotation, daemon.reopen_logs, SIGUSR1 and reload.
Nothing outside may be created, appended or truncated, the daemon must stay
responsive, and the refusal must show (output_errors, the daemon's log).
"""
import grp
import os
import pwd
import signal
import stat
import sys
import unittest

import mpsuptest
from mpsuptest import Daemon, wait_for

NOBODY = "nobody"
NOGROUP = "nogroup"
SECRET = b"root only\n"
# a line every 20 ms, each one unique (pid and counter)
WORKER = "/bin/sh -c 'i=0; while :; do echo line-$$-$i; i=$((i+1)); sleep 0.02; done'"


def why_not_runnable():
    if os.geteuid() != 0:
        return "needs root (the daemon must run as root, the pool as nobody)"
    try:
        pwd.getpwnam(NOBODY)
        grp.getgrnam(NOGROUP)
    except KeyError:
        return "no %s user or %s group" % (NOBODY, NOGROUP)
    return None


class OutputFilesTestCase(unittest.TestCase):
    """A root daemon (not started yet) with a nobody-owned home/logs
    directory under its temp dir and a root-only victim directory."""

    @classmethod
    def setUpClass(cls):
        why = why_not_runnable()
        if why:
            raise unittest.SkipTest(why)
        cls.uid = pwd.getpwnam(NOBODY).pw_uid
        cls.gid = grp.getgrnam(NOGROUP).gr_gid

    def setUp(self):
        self.d = Daemon()
        self.gen = 0
        base = self.d.dir  # root 0700
        self.home = os.path.join(base, "home")
        self.logs = os.path.join(self.home, "logs")
        for p in (self.home, self.logs):
            os.mkdir(p, 0o755)
            os.chown(p, self.uid, self.gid)
        self.victim_dir = os.path.join(base, "victim")
        os.mkdir(self.victim_dir, 0o700)
        # what an escape would hit: names the daemon writes, inside the victim dir
        self.victims = {}
        for name in ("secret", "out.log", "out.log.1"):
            self.victims[name] = self.make_victim(name)
        self.victim_listing = sorted(os.listdir(self.victim_dir))
        self.pools = {}

    def tearDown(self):
        failed = False
        outcome = getattr(self, "_outcome", None)
        res = getattr(outcome, "result", None) if outcome else None
        if res is not None:
            failed = bool(res.failures or res.errors)
        if failed and self.d.proc is not None:
            sys.stderr.write("---- mpsupd log ----\n%s\n" % self.d.read_log()[-20000:])
        rc = self.d.stop()
        self.d.cleanup()
        self.assertIn(rc, (0, None), "mpsupd exited with %r" % rc)

    def make_victim(self, name):
        path = os.path.join(self.victim_dir, name)
        with open(path, "wb") as f:
            f.write(SECRET)
        os.chmod(path, 0o600)
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
        return path

    def plant_symlink(self, where, target):
        """A symlink of nobody's at where, replacing what is there in one
        step (the daemon may be rotating)."""
        tmp = where + ".planting"
        os.symlink(target, tmp)
        os.lchown(tmp, self.uid, self.gid)
        os.rename(tmp, where)

    def plant_hard_link(self, where, target):
        tmp = where + ".planting"
        os.link(target, tmp)
        os.rename(tmp, where)

    # the daemon

    def pool_conf(self, name, path, **keys):
        keys.setdefault("stdout", "file:" + path)
        lines = ["[pool:%s]" % name, "command = " + WORKER, "user = " + NOBODY,
                 "group = " + NOGROUP, "directory = /", "start_secs = 0",
                 "environment = GEN=%d" % self.gen]
        lines += ["%s = %s" % kv for kv in keys.items()]
        return "\n".join(lines) + "\n"

    def configure(self):
        self.d.write_config("".join(self.pool_conf(n, p, **k)
                                    for n, (p, k) in self.pools.items()))

    def start(self, **pools):
        """Start the daemon with pools {name: (path, {key: value})}."""
        self.pools = pools
        self.configure()
        self.d.start()
        for name in pools:
            self.wait_output(name)

    def last_line(self, pool):
        lines = self.d.ok("proc.logs", target=pool, lines=1)
        return lines[-1]["line"] if lines else None

    def wait_output(self, pool, n=5):
        """Wait until pool printed n more lines: they went through its file
        (the file is written before the ring)."""
        before = self.last_line(pool)

        def moved():
            recent = [l["line"] for l in self.d.ok("proc.logs", target=pool, lines=n)]
            return len(recent) == n and before not in recent
        wait_for(moved, what="%d new lines from %s" % (n, pool))

    def output_errors(self, pool):
        return [p for p in self.d.ok("pool.list") if p["pool"] == pool][0]["output_errors"]

    def triggers(self):
        """Every way mpsupd opens the files again, each followed by output."""
        yield "start"
        for pool in self.pools:
            self.d.ok("proc.restart", target=pool)
        yield "worker restart"
        self.d.ok("daemon.reopen_logs")
        yield "daemon.reopen_logs"
        os.kill(self.d.pid(), signal.SIGUSR1)
        yield "SIGUSR1"
        self.gen += 1
        self.configure()
        changes = self.d.ok("daemon.reload")
        self.assertEqual(sorted(changes["changed"]), sorted(self.pools), changes)
        yield "reload"

    # checks

    def assert_victims_intact(self, when):
        self.assertEqual(sorted(os.listdir(self.victim_dir)), self.victim_listing,
                         "a file appeared in the victim dir after " + when)
        for path in self.victims.values():
            st = os.stat(path)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), SECRET, "%s written after %s" % (path, when))
            self.assertEqual(st.st_mtime_ns, 1_000_000_000_000_000_000,
                             "%s touched after %s" % (path, when))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600), path)

    def assert_refused(self, pool, path, why, when):
        wait_for(lambda: self.output_errors(pool) > 0,
                 what="output_errors of %s after %s" % (pool, when))
        wait_for(lambda: "output file %s: refused: %s" % (path, why) in self.d.read_log(),
                 what="the refusal of %s (%s) in the log after %s" % (path, why, when))
        self.assertEqual(self.d.ok("ping"), "pong")

    def run_planted(self, path, why, **keys):
        """Start a pool writing to path (planted), then every trigger."""
        self.start(w=(path, keys))
        for when in self.triggers():
            self.wait_output("w")
            self.assert_victims_intact(when)
            self.assert_refused("w", path, why, when)


class PlantedAtTheOutputFile(OutputFilesTestCase):
    """What nobody put at out.log (or on the way to it) before the daemon
    opens it is refused at every open."""

    def test_symlink_to_a_root_file(self):
        out = os.path.join(self.logs, "out.log")
        self.plant_symlink(out, self.victims["secret"])
        self.run_planted(out, "a symbolic link")

    def test_dangling_symlink_into_a_root_dir(self):
        out = os.path.join(self.logs, "out.log")
        self.plant_symlink(out, os.path.join(self.victim_dir, "created"))
        self.run_planted(out, "a symbolic link")

    def test_intermediate_directory_is_a_symlink(self):
        # nobody owns home: logs becomes a link to the victim dir
        os.rmdir(self.logs)
        self.plant_symlink(self.logs, self.victim_dir)
        out = os.path.join(self.logs, "out.log")
        self.run_planted(out, "a symbolic link", stdout_max_bytes=300, stdout_backups=1)

    def test_hard_link_to_a_root_file(self):
        out = os.path.join(self.logs, "out.log")
        os.link(self.victims["secret"], out)
        self.run_planted(out, "a file with more than one hard link")

    def test_fifo(self):
        out = os.path.join(self.logs, "out.log")
        os.mkfifo(out, 0o666)
        os.chown(out, self.uid, self.gid)
        self.run_planted(out, "not a regular file")

    def test_root_file_moved_in(self):
        # rename needs no write access to the file: a root file nobody
        # could move into its directory must not be appended to
        out = os.path.join(self.logs, "out.log")
        os.rename(self.make_victim("moved"), out)
        self.victims["moved"] = out
        self.run_planted(out, "owned by another user")


class PlantedWhileRunning(OutputFilesTestCase):
    """Names changed by nobody under a running daemon: rotation and reopen
    work in the directory opened and never follow what was planted."""

    def test_truncation_without_backups_stays_on_the_open_file(self):
        out = os.path.join(self.logs, "out.log")
        self.start(w=(out, {"stdout_max_bytes": 400, "stdout_backups": 0}))
        # nobody moves its file away and puts a link to the victim there
        os.rename(out, out + ".mine")
        self.plant_symlink(out, self.victims["secret"])
        for _ in range(3):  # > 400 bytes: rotations (truncations) happened
            self.wait_output("w", n=10)
        self.assert_victims_intact("rotation without backups")
        self.assertLessEqual(os.path.getsize(out + ".mine"), 400)
        self.d.ok("daemon.reopen_logs")
        self.wait_output("w")
        self.assert_victims_intact("daemon.reopen_logs")
        self.assert_refused("w", out, "a symbolic link", "daemon.reopen_logs")

    def test_rotation_through_planted_backup_names_and_directory(self):
        out = os.path.join(self.logs, "out.log")
        self.start(w=(out, {"stdout_max_bytes": 300, "stdout_backups": 2}))
        # every backup name aimed at the victims, then the directory itself
        self.plant_symlink(out + ".1", self.victims["secret"])
        self.plant_hard_link(out + ".2", self.victims["out.log.1"])
        os.rename(self.logs, self.logs + ".real")
        self.plant_symlink(self.logs, self.victim_dir)
        for _ in range(4):
            self.wait_output("w", n=10)
        self.d.ok("proc.stop", target="w")  # no rotation under the checks
        self.assert_victims_intact("rotation")
        # rotation went on in the directory that was opened
        real = os.path.join(self.logs + ".real", "out.log")
        self.assertTrue(os.path.exists(real + ".1"))
        self.assertLessEqual(os.path.getsize(real), 300)
        self.d.ok("proc.start", target="w")
        self.d.ok("daemon.reopen_logs")
        self.wait_output("w")
        self.assert_victims_intact("daemon.reopen_logs")
        self.assert_refused("w", out, "a symbolic link", "daemon.reopen_logs")


class CreatedFiles(OutputFilesTestCase):
    """Files mpsupd creates belong to the pool's user, mode 0640; rotation
    works; a root-owned directory (like /var/log/app) works too."""

    def assert_owned(self, path):
        st = os.lstat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode), path)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                         (self.uid, self.gid, 0o640), path)

    def test_rotation_in_a_user_directory(self):
        out = os.path.join(self.logs, "out.log")
        self.start(w=(out, {"stdout_max_bytes": 300, "stdout_backups": 2}))
        wait_for(lambda: os.path.exists(out + ".2"), what="two rotations")
        self.d.ok("proc.stop", target="w")  # no rotation under the checks
        for p in (out, out + ".1", out + ".2"):
            self.assert_owned(p)
            self.assertLessEqual(os.path.getsize(p), 300, p)
        self.assertFalse(os.path.exists(out + ".3"))
        self.assertEqual(self.output_errors("w"), 0)
        # the pool's own file, which it may change, is reopened fine
        self.d.ok("proc.start", target="w")
        os.rename(out, out + ".old")
        self.d.ok("daemon.reopen_logs")
        wait_for(lambda: os.path.exists(out), what="the reopened file")
        self.wait_output("w")
        self.assert_owned(out)
        self.assertEqual(self.output_errors("w"), 0)

    def test_root_directory_and_an_operator_file(self):
        # a root 0755 directory nobody cannot change: a new file is the
        # pool's; one the operator made (root's, 0644) is appended to
        app = os.path.join(self.d.dir, "app")
        os.mkdir(app, 0o755)
        out, err = os.path.join(app, "out.log"), os.path.join(app, "err.log")
        with open(err, "wb") as f:
            f.write(b"operator\n")
        os.chmod(err, 0o644)
        self.d.start()
        self.d.ok("pool.add", pool="e", user=NOBODY, group=NOGROUP, directory="/",
                  command=["/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 1000"],
                  stdout="file:" + out, stderr="file:" + err, start_secs=0)

        def read(p):
            with open(p, "rb") as f:
                return f.read()
        wait_for(lambda: read(err) == b"operator\nto-stderr\n", what="stderr appended")
        wait_for(lambda: os.path.exists(out) and read(out) == b"to-stdout\n",
                 what="stdout in a new file")
        self.assert_owned(out)
        st = os.stat(err)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o644))
        self.assertEqual(self.output_errors("e"), 0)


if __name__ == "__main__":
    why = why_not_runnable()
    if why:
        mpsuptest.skip_all(why)
    mpsuptest.main()
