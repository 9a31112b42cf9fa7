"""End-to-end tests of the state files' safety (docs/state.md "Persistence"):
mpsupd may run as root with its state directory reachable by other users,
so a symbolic or hard link planted at the state file, its .log or its .tmp
is refused at start with a message naming the file (the file it points to
is left exactly as it was), and a state directory that another user could
write is refused unless state_dir_check = no.
"""
import os
import shutil
import stat
import tempfile
import unittest

from mpsuptest import Client, Daemon, main, wait_for

SUFFIXES = ("", ".log", ".tmp", ".log.tmp")


class FilesCase(unittest.TestCase):
    """A daemon whose state_file lives in a subdirectory (self.sdir), and a
    victim file outside it that planted links point to."""

    def setUp(self):
        self.d = Daemon()
        self.sdir = os.path.join(self.d.dir, "st")
        os.mkdir(self.sdir, 0o700)
        self.state = os.path.join(self.sdir, "state")
        self.vdir = tempfile.mkdtemp(prefix="mpsup-victim-")
        self.victim = os.path.join(self.vdir, "secret")
        # Not a state file: a reader of it as a log sees a torn tail, which
        # a careless start-up truncates.
        with open(self.victim, "wb") as f:
            f.write(b"root-only secret, do not touch\n" * 64)
        os.chmod(self.victim, 0o600)
        os.utime(self.victim, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
        self.before = self.victim_state()

    def tearDown(self):
        self.d.cleanup()
        shutil.rmtree(self.vdir, ignore_errors=True)

    def configure(self, extra=""):
        self.d.write_config(main_extra="state_file = %s\nstate_sync = always\n%s"
                            % (self.state, extra))

    def victim_state(self):
        st = os.lstat(self.victim)
        with open(self.victim, "rb") as f:
            return (f.read(), st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))

    def start_fails(self):
        """Start, expect a non-zero exit; returns what it logged."""
        skip = len(self.d.read_log())
        self.d.start(wait=False)
        # it exits, or (wrongly) starts serving
        wait_for(lambda: self.d.proc.poll() is not None or self.serving(),
                 what="mpsupd to exit")
        log = self.d.read_log()[skip:]
        rc = self.d.stop()
        self.assert_victim_untouched()
        self.assertNotIn(rc, (0, -15), "mpsupd started; log:\n" + log)
        return log

    def serving(self):
        try:
            with Client(self.d.socket, timeout=2) as c:
                return c.ok("ping") is not None or True
        except OSError:
            return False

    def assert_victim_untouched(self):
        self.assertEqual(self.victim_state(), self.before, "the victim file changed")


class PlantedLinks(FilesCase):
    def refused(self, suffix, how, why):
        for name in os.listdir(self.sdir):
            os.unlink(os.path.join(self.sdir, name))
        planted = self.state + suffix
        how(self.victim, planted)
        self.configure()
        log = self.start_fails()
        self.assertIn(planted, log)
        self.assertIn(why, log)
        self.assert_victim_untouched()
        # the planted name is left for the operator to look at
        self.assertTrue(os.path.lexists(planted))

    def test_symlink_at_each_file_is_refused(self):
        for suffix in SUFFIXES:
            with self.subTest(file="state" + suffix):
                self.refused(suffix, os.symlink, "is a symbolic link")
                if suffix != ".log":
                    self.assertFalse(os.path.lexists(self.state + ".log"))

    def test_hard_link_at_each_file_is_refused(self):
        for suffix in SUFFIXES:
            with self.subTest(file="state" + suffix):
                self.refused(suffix, os.link, "has 2 hard links")
                if suffix != ".log":
                    self.assertFalse(os.path.lexists(self.state + ".log"))

    def test_dangling_symlink_at_the_log_is_not_created(self):
        target = os.path.join(self.vdir, "created")
        os.symlink(target, self.state + ".log")
        self.configure()
        log = self.start_fails()
        self.assertIn("is a symbolic link", log)
        self.assertFalse(os.path.exists(target))

    def test_fifo_at_the_state_file_does_not_hang(self):
        os.mkfifo(self.state)
        self.configure()
        log = self.start_fails()
        self.assertIn(self.state + " is a FIFO", log)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to chown")
    def test_state_file_of_another_user_is_refused(self):
        with open(self.state + ".log", "wb"):
            pass
        os.chown(self.state + ".log", 65534, 65534)
        self.configure()
        log = self.start_fails()
        self.assertIn(self.state + ".log is owned by uid 65534", log)


class StateDirectory(FilesCase):
    def test_writable_by_others_is_refused(self):
        for mode, who in ((0o777, "other users"), (0o1777, "other users"),
                          (0o770, "its group"), (0o1730, "its group")):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.sdir, mode)
                self.configure()
                log = self.start_fails()
                self.assertIn("state directory %s is writable by %s (mode %04o)"
                              % (self.sdir, who, mode), log)
                self.assertFalse(os.path.exists(self.state + ".log"))

    def test_override_accepts_a_writable_directory(self):
        os.chmod(self.sdir, 0o1777)
        self.configure("state_dir_check = no\n")
        self.d.start()
        self.d.ok("dict.set", name="d", key="k", value="kept")
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        self.assertEqual(self.d.ok("dict.get", name="d", key="k"), "kept")
        self.assertEqual(self.d.stop(), 0)

    def test_override_still_refuses_planted_links(self):
        os.chmod(self.sdir, 0o1777)
        os.symlink(self.victim, self.state + ".log")
        self.configure("state_dir_check = no\n")
        log = self.start_fails()
        self.assertIn(self.state + ".log is a symbolic link", log)
        self.assert_victim_untouched()

    def test_symlink_in_the_directory_path_is_refused(self):
        link = os.path.join(self.d.dir, "via")
        os.symlink(self.sdir, link)
        self.state = os.path.join(link, "state")
        self.configure()
        log = self.start_fails()
        self.assertIn("component 'via' is a symbolic link", log)
        self.configure("state_dir_check = no\n")
        self.d.start()
        self.d.ok("value.set", name="v", value=1)
        self.assertEqual(self.d.stop(), 0)
        self.assertTrue(os.path.isfile(os.path.join(self.sdir, "state")))

    @unittest.skipUnless(os.geteuid() == 0, "needs root to chown")
    def test_owned_by_another_user_is_refused(self):
        os.chown(self.sdir, 65534, 65534)
        self.configure()
        log = self.start_fails()
        self.assertIn("state directory %s is owned by uid 65534" % self.sdir, log)

    def test_normal_directory_works_and_keeps_the_data(self):
        self.configure()
        self.d.start()
        with self.d.client() as c:
            c.ok("dict.set", name="d", key="k", value=[1, 2])
            c.ok("list.append", name="l", value="x")
        self.assertEqual(self.d.stop(), 0)
        # a leftover snapshot of ours (a crash while writing one) is removed
        with open(self.state + ".tmp", "wb") as f:
            f.write(b"partial")
        self.d.start()
        self.assertFalse(os.path.exists(self.state + ".tmp"))
        self.assertEqual(self.d.ok("dict.get", name="d", key="k"), [1, 2])
        self.assertEqual(self.d.ok("list.get", name="l", index=0), "x")
        self.assertEqual(self.d.stop(), 0)
        for suffix in ("", ".log"):
            st = os.lstat(self.state + suffix)
            self.assertTrue(stat.S_ISREG(st.st_mode))
            self.assertEqual(st.st_nlink, 1)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)


if __name__ == "__main__":
    main()
