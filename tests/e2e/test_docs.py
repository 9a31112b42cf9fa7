"""The docs and the packaging as a newcomer meets them: every doc ships in
the Debian package, the docs are their own reference, mpsupd(8) says what
this build does, the project's license is stated everywhere, make clean
deletes nothing the repository tracks, and the demo config behaves under
any /bin/sh."""
import glob
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import mpsuptest
from mpsuptest import MPSUPD, SRCDIR

BUILDDIR = os.getcwd()


def src(*parts):
    return os.path.join(SRCDIR, *parts)


def read(path):
    with open(path) as f:
        return f.read()


def makefile_var(name):
    """A variable of the build's Makefile, as make expands it."""
    # Not the make check that runs us: its flags and job server stay out.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    p = subprocess.run(["make", "-s", "--no-print-directory", "-f",
                        os.path.join(BUILDDIR, "Makefile"),
                        "--eval=print-var-x: ; @echo $(%s)" % name, "print-var-x"],
                       capture_output=True, text=True, cwd=BUILDDIR, env=env)
    if p.returncode != 0:
        raise unittest.SkipTest("cannot ask make for %s: %s" % (name, p.stderr))
    return p.stdout.split()


class Packaging(unittest.TestCase):
    def test_every_doc_is_in_the_package(self):
        shipped = read(src("packaging", "debian", "mpsupd.docs")).split()
        docs = ["README.md", "LICENSE"] + sorted(
            os.path.relpath(p, SRCDIR) for p in glob.glob(src("docs", "*.md")))
        for d in docs:
            self.assertIn(d, shipped)
        # Every man page the build installs is in some package's file list.
        installs = "".join(read(p) for p in glob.glob(src("packaging", "debian", "*.install")))
        pages = makefile_var("dist_man_MANS") + makefile_var("man_MANS")
        self.assertIn("docs/libmpsup.3", pages)
        for page in pages:
            name = os.path.basename(page)
            section = name.rsplit(".", 1)[1]
            self.assertIn("usr/share/man/man%s/%s\n" % (section, name), installs)

    def test_license(self):
        self.assertTrue(read(src("LICENSE")).startswith("MIT License\n"))
        copyright = read(src("packaging", "debian", "copyright"))
        self.assertIn("\nLicense: Expat\n", copyright)
        self.assertNotIn("No license", copyright)
        self.assertIn("\nLicense: MIT\n", read(src("proto", "libmpsup.pc.in")))
        self.assertIn("License: MIT", read(os.path.join(BUILDDIR, "proto", "libmpsup.pc")))

    def test_make_clean_deletes_no_tracked_file(self):
        if not os.path.isdir(src(".git")) and not os.path.isfile(src(".git")) \
                or not shutil.which("git"):
            self.skipTest("not a git checkout")
        tracked = set(subprocess.run(["git", "-C", SRCDIR, "ls-files"], capture_output=True,
                                     text=True).stdout.split())
        cleaned = set(makefile_var("CLEANFILES")) | set(makefile_var("DISTCLEANFILES"))
        self.assertIn("packaging/mpsupd.service", cleaned)
        self.assertEqual(tracked & cleaned, set())


class Docs(unittest.TestCase):
    def test_docs_are_their_own_reference(self):
        """No doc sends the reader to a DESIGN.md the repository does not have."""
        files = glob.glob(src("docs", "*")) + [src("README.md"), src("ctl", "mpctl.1"),
                                                src("proto", "mpsup.h")]
        for f in files:
            self.assertNotRegex(read(f), r"DESIGN(\.md)?\b", f)

    def test_mpsupd_8_names_this_builds_default_config(self):
        out = subprocess.run([MPSUPD, "-h"], capture_output=True, text=True)
        m = re.search(r"\(default (/\S+)\)", out.stdout + out.stderr)
        self.assertIsNotNone(m, out.stdout)
        page = read(os.path.join(BUILDDIR, "docs", "mpsupd.8"))
        self.assertIn(".Pa %s .\n" % m.group(1), page)
        self.assertNotIn("@sysconfdir@", page)

    def test_mpsupd_8_renders(self):
        if not shutil.which("mandoc"):
            self.skipTest("mandoc not installed (scripts/install-deps installs it)")
        text = subprocess.run(["mandoc", "-Tutf8", os.path.join(BUILDDIR, "docs", "mpsupd.8")],
                              capture_output=True, text=True).stdout
        text = re.sub(r".\x08", "", text)
        self.assertIn("(file, else the one of -c, else the default)", " ".join(text.split()))
        synopsis = text[text.index("SYNOPSIS"):text.index("DESCRIPTION")]
        self.assertIn("--truncate-corrupt-state", synopsis)


class DemoConfig(unittest.TestCase):
    def test_flaky_delay_varies_under_any_sh(self):
        """The flaky pool's delay is random with dash too (no $RANDOM)."""
        conf = read(src("conf", "demo.conf"))
        section = conf[conf.index("[pool:flaky]"):]
        cmd = re.search(r"^command = /bin/sh -c '(.*)'$", section, re.M).group(1)
        script = cmd.replace("%(name)s", "flaky:0").replace("%%", "%")
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "sleep")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\necho \"$1\" >> %s/slept\n" % d)
            os.chmod(fake, stat.S_IRWXU)
            env = dict(os.environ, PATH=d + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
            sh = shutil.which("dash") or "/bin/sh"
            for _ in range(12):
                subprocess.run([sh, "-c", script], capture_output=True, env=env, timeout=20)
            delays = [int(x) for x in read(os.path.join(d, "slept")).split()]
        self.assertEqual(len(delays), 12)
        self.assertTrue(all(3 <= x <= 12 for x in delays), delays)
        self.assertGreater(len(set(delays)), 1, delays)


if __name__ == "__main__":
    mpsuptest.main()
