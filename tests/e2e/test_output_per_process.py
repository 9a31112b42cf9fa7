"""End-to-end tests of per-process output (DESIGN.md §11): %(name)s,
%(index)d and %(pool)s in file: paths give one file per process, with
rotation and backups per file; placeholders that are unknown or would make
a bad path are config errors; output_prefix puts the process name in front
of each line; mpctl logs marks stderr lines and -t adds timestamps."""
import os
import re
import shutil
import subprocess
import unittest

import mpsuptest
from mpsuptest import Daemon, MPSUPD, wait_for

WORKER = ("/bin/sh -c 'echo out-$MPSUP_NAME; echo err-$MPSUP_NAME >&2; "
          "exec sleep 1000'")
# a 100-byte line every few ms, then sleep
CHATTY = ("/bin/sh -c 'i=0; while [ $i -lt 200 ]; do "
          "echo $MPSUP_NAME-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
          "i=$((i+1)); done; exec sleep 1000'")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class PerProcessFilesTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.logs = os.path.join(self.d.dir, "logs")
        os.mkdir(self.logs)

    def tearDown(self):
        self.d.cleanup()

    def start(self, pool_conf):
        self.d.write_config(config_extra="[pool:web]\nprocesses = 2\nstart_secs = 0\n"
                            + pool_conf)
        self.d.start()

    def test_one_file_per_process(self):
        self.start("command = %s\nstdout = file:%s/%%(pool)s-%%(index)d.out\n"
                   "stderr = file:%s/%%(name)s.err\n" % (WORKER, self.logs, self.logs))
        for i in (0, 1):
            out = os.path.join(self.logs, "web-%d.out" % i)
            err = os.path.join(self.logs, "web:%d.err" % i)
            wait_for(lambda: read(out) and read(err), what="files of web:%d" % i)
            self.assertEqual(read(out), "out-web:%d\n" % i)
            self.assertEqual(read(err), "err-web:%d\n" % i)
        self.assertEqual(sorted(os.listdir(self.logs)),
                         ["web-0.out", "web-1.out", "web:0.err", "web:1.err"])
        # a restart appends to the same file
        self.d.ok("proc.restart", target="web:1")
        wait_for(lambda: read(os.path.join(self.logs, "web-1.out")).count("out-") == 2,
                 what="web:1's second line")
        self.assertEqual(read(os.path.join(self.logs, "web-0.out")), "out-web:0\n")

    def test_shared_template_and_prefix(self):
        self.start("command = %s\nstdout = file:%s/%%(name)s.log\n"
                   "stderr = file:%s/%%(name)s.log\noutput_prefix = yes\n"
                   % (WORKER, self.logs, self.logs))
        path = os.path.join(self.logs, "web:1.log")
        wait_for(lambda: read(path).count("\n") == 2, what="two lines in web:1.log")
        self.assertEqual(sorted(read(path).splitlines()),
                         ["web:1 | err-web:1", "web:1 | out-web:1"])

    def test_prefix_in_a_shared_file(self):
        self.start("command = %s\nstdout = file:%s/all.log\noutput_prefix = yes\n"
                   % (WORKER, self.logs))
        path = os.path.join(self.logs, "all.log")
        wait_for(lambda: read(path).count("\n") == 2, what="two lines in all.log")
        self.assertEqual(sorted(read(path).splitlines()),
                         ["web:0 | out-web:0", "web:1 | out-web:1"])

    def test_rotation_per_file(self):
        self.start("command = %s\nstdout = file:%s/%%(index)d.out\n"
                   "stdout_max_bytes = 4K\nstdout_backups = 2\nstderr = null\n"
                   % (CHATTY, self.logs))

        def done(i):
            # the last line is in the current file; 200 lines of ~80 bytes
            # rotated at 4K: two backups kept, older ones gone
            return "web:%d-199-" % i in read(os.path.join(self.logs, "%d.out" % i))
        for i in (0, 1):
            wait_for(lambda: done(i), what="web:%d's last line" % i)
        names = sorted(os.listdir(self.logs))
        self.assertEqual(names, ["0.out", "0.out.1", "0.out.2", "1.out", "1.out.1", "1.out.2"])
        for i in (0, 1):
            for n in ("%d.out" % i, "%d.out.1" % i):
                text = read(os.path.join(self.logs, n))
                self.assertLessEqual(len(text), 4096)
                self.assertTrue(all(l.startswith("web:%d-" % i) for l in text.splitlines()), n)

    def test_link_at_a_process_file_is_refused(self):
        victim = os.path.join(self.d.dir, "victim")
        with open(victim, "w") as f:
            f.write("secret\n")
        os.symlink(victim, os.path.join(self.logs, "web-0.out"))
        self.start("command = %s\nstdout = file:%s/web-%%(index)d.out\nstderr = null\n"
                   % (WORKER, self.logs))
        wait_for(lambda: read(os.path.join(self.logs, "web-1.out")), what="web-1.out")
        wait_for(lambda: "web-0.out" in self.d.read_log(), what="the refusal logged")
        self.assertEqual(read(victim), "secret\n")
        self.assertEqual(self.d.ok("ping"), "pong")


class PlaceholderConfigTest(unittest.TestCase):
    def check(self, section):
        d = Daemon(config_extra=section)
        try:
            p = subprocess.run([MPSUPD, "--check-config", d.conf], capture_output=True,
                               text=True, timeout=30)
            return p.returncode, p.stdout + p.stderr
        finally:
            shutil.rmtree(d.dir, ignore_errors=True)

    def test_unknown_placeholder(self):
        rc, out = self.check("[pool:web]\ncommand = sleep 1\nstdout = file:/tmp/%(user)s.log\n")
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"mpsupd\.conf:\d+: .*stdout.*%\(user\)s")

    def test_dot_dot_from_a_pool_name(self):
        rc, out = self.check("[pool:..]\ncommand = sleep 1\nstdout = file:/tmp/x/%(pool)s/out\n")
        self.assertNotEqual(rc, 0)
        self.assertIn("stdout", out)
        self.assertIn("..", out)

    def test_too_long(self):
        name = "p" * 64
        rc, out = self.check("[pool:%s]\ncommand = sleep 1\nstderr = file:/tmp/%s\n"
                             % (name, "%(name)s" * 5))
        self.assertNotEqual(rc, 0)
        self.assertIn("stderr", out)
        self.assertIn("too long", out)

    def test_good_templates(self):
        rc, out = self.check("[pool:web]\ncommand = sleep 1\n"
                             "stdout = file:/var/log/%(pool)s/%(index)d-100%%.log\n")
        self.assertEqual(rc, 0, out)


class LogsCommandTest(mpsuptest.DaemonTestCase):
    def test_stderr_marked_and_timestamps(self):
        self.d.ok("pool.add", pool="web", command=WORKER, processes=2, start_secs=0)
        wait_for(lambda: len(self.d.ok("proc.logs", target="web")) == 4, what="four lines")
        out = self.d.mpctl("logs", "web:0", check=0).stdout.splitlines()
        self.assertEqual(sorted(out), ["out-web:0", "stderr | err-web:0"])
        out = self.d.mpctl("logs", "-t", "web:0", check=0).stdout.splitlines()
        self.assertEqual(len(out), 2)
        for line in out:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                             r"(out-web:0|stderr \| err-web:0)$")
        out = self.d.mpctl("logs", "-t", "web", check=0).stdout.splitlines()
        self.assertEqual(len(out), 4)
        self.assertTrue(all(re.match(r"^\S+Z web:[01] (stdout|stderr) \| ", l) for l in out), out)


if __name__ == "__main__":
    mpsuptest.main()
