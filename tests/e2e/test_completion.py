"""The bash completion of mpctl (packaging/mpctl.bash-completion), sourced
by a real bash and asked for completions against a real mpsupd."""
import os
import re
import shutil
import subprocess
import tempfile

import mpsuptest
from mpsuptest import MPCTL, SCALE, DaemonTestCase

SCRIPT = os.path.join(os.environ.get("MPSUP_SRCDIR", "."), "packaging", "mpctl.bash-completion")


class Completion(DaemonTestCase):
    config = "[pool:clock]\ncommand = sleep 1000\nstart_secs = 0\n"

    def setUp(self):
        if not shutil.which("bash"):
            self.skipTest("no bash")
        super().setUp()
        # Files in the working directory must never show up as targets.
        self.cwd = tempfile.mkdtemp(prefix="mpsup-compl-")
        for name in ("afile", "bfile"):
            open(os.path.join(self.cwd, name), "w").close()

    def tearDown(self):
        shutil.rmtree(self.cwd, ignore_errors=True)
        super().tearDown()

    def complete(self, *words):
        """COMPREPLY for the command line `mpctl -s SOCKET WORDS...` (the
        last word is the one being completed)."""
        line = [MPCTL, "-s", self.d.socket] + list(words)
        script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _mpctl; '
                  'printf "%s\\n" "${COMPREPLY[@]}"')
        p = subprocess.run(["bash", "-c", script, "bash", os.path.abspath(SCRIPT)] + line,
                           capture_output=True, text=True, cwd=self.cwd, timeout=20 * SCALE)
        self.assertEqual(p.returncode, 0, p.stderr)
        return sorted(w for w in p.stdout.split("\n") if w)

    def test_targets_are_not_files(self):
        self.assertEqual(self.complete("status", ""), ["*", "clock", "clock:0"])
        self.assertEqual(self.complete("kill", "cl"), ["clock", "clock:0"])
        self.assertEqual(self.complete("status", "--json", ""), ["*", "clock", "clock:0"])

    def test_run_user_and_group(self):
        self.assertIn("--user", self.complete("run", "--"))
        self.assertIn("--group", self.complete("run", "--"))
        self.assertIn("root", self.complete("run", "--user", "ro"))
        self.assertIn("root", self.complete("run", "--group", "ro"))

    def test_pool_commands(self):
        self.assertEqual(self.complete("pool", ""), ["add", "list", "remove"])
        self.assertEqual(self.complete("pool", "remove", ""), ["clock"])
        self.assertIn("command=", self.complete("pool", "add", "batch", "c"))

    def test_map_options(self):
        self.assertEqual(self.complete("map", "--"), ["--stream", "--unordered"])
        self.assertEqual(self.complete("map", "--stream", "cl"), ["clock"])
        self.assertEqual(self.complete("map", "cl"), ["clock"])

    def test_commands_are_mpctls(self):
        """The completed commands are exactly those of mpctl --help."""
        text = subprocess.run([MPCTL, "--help"], capture_output=True, text=True).stdout
        listed = set(re.findall(r"^  ([a-z][a-z-]*)", text, re.M))
        self.assertEqual(set(self.complete("")), listed)


if __name__ == "__main__":
    mpsuptest.main()
