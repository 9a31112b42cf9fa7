/* Unit tests of safe opens (daemon/core/safe_open.c): path splitting, symlinks
 * on the path and at the name, hard links, FIFOs, devices, created files
 * and, as root, someone else's file where the owner can change the
 * directory. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safe_open.h"
#include "unit.h"

static char tmp[64];
static struct safe_owner me;

static void setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/safe-open-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	me = (struct safe_owner){ .uid = geteuid(), .gid = getegid() };
}

static void rm(const char *name)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/%s", tmp, name);
	(void)unlink(p);
}

static void teardown(void)
{
	const char *names[] = { "f", "l", "h", "p", "sub", "other", "dangling" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		rm(names[i]);
	ck_assert_int_eq(rmdir(tmp), 0);
}

/* Open name in tmp with flags; the fd, or the negative errno. */
static int try_open(const char *name, int flags)
{
	struct safe_dir d;
	int fd = -1, r;

	ck_assert_int_eq(safe_dir_open(tmp, &me, &d), 0);
	ck_assert(d.exposed == (geteuid() != 0)); /* ours; for root: nobody else's */
	r = safe_open_append(&d, name, &me, flags, 0640, &fd);
	close(d.fd);
	return r < 0 ? r : fd;
}

START_TEST(test_path_split)
{
	char *dir, *name;

	ck_assert_int_eq(safe_path_split("/a/b/c.log", &dir, &name), 0);
	ck_assert_str_eq(dir, "/a/b");
	ck_assert_str_eq(name, "c.log");
	free(dir);
	free(name);
	ck_assert_int_eq(safe_path_split("/c.log", &dir, &name), 0);
	ck_assert_str_eq(dir, "/");
	ck_assert_str_eq(name, "c.log");
	free(dir);
	free(name);
	ck_assert_int_eq(safe_path_split("/a/", &dir, &name), -EISDIR);
	ck_assert_int_eq(safe_path_split("a/b", &dir, &name), -EINVAL);
	ck_assert_int_eq(safe_path_split("/a/..", &dir, &name), -EINVAL);
}
END_TEST

START_TEST(test_create_and_reopen)
{
	struct stat st;
	int fd = try_open("f", SAFE_CREATE);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & (O_APPEND | O_NONBLOCK | O_ACCMODE),
			 O_APPEND | O_WRONLY);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert_int_eq(write(fd, "x\n", 2), 2);
	close(fd);
	fd = try_open("f", 0);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(try_open("missing", 0), -ENOENT);
}
END_TEST

START_TEST(test_refusals)
{
	char p[128], q[128];
	struct safe_dir d;
	int fd;

	fd = try_open("f", SAFE_CREATE);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/l", tmp);
	ck_assert_int_eq(symlink("f", p), 0);
	ck_assert_int_eq(try_open("l", SAFE_CREATE), -ELOOP);
	snprintf(p, sizeof(p), "%s/dangling", tmp);
	ck_assert_int_eq(symlink("nowhere", p), 0);
	ck_assert_int_eq(try_open("dangling", SAFE_CREATE), -ELOOP);
	snprintf(p, sizeof(p), "%s/f", tmp);
	snprintf(q, sizeof(q), "%s/h", tmp);
	ck_assert_int_eq(link(p, q), 0);
	ck_assert_int_eq(try_open("f", SAFE_CREATE), -EMLINK);
	ck_assert_int_eq(try_open("h", SAFE_CREATE), -EMLINK);
	snprintf(p, sizeof(p), "%s/p", tmp);
	ck_assert_int_eq(mkfifo(p, 0600), 0);
	ck_assert_int_eq(try_open("p", SAFE_CREATE | SAFE_CHARDEV_OK), -EFTYPE_SAFE);
	/* a symlink on the way to the directory */
	snprintf(p, sizeof(p), "%s/sub", tmp);
	ck_assert_int_eq(symlink(".", p), 0);
	ck_assert_int_eq(safe_dir_open(p, &me, &d), -ELOOP);
	snprintf(q, sizeof(q), "%s/sub/", tmp);
	ck_assert_int_eq(safe_dir_open(q, &me, &d), -ELOOP);
	ck_assert_str_eq(safe_open_strerror(-ELOOP),
			 "a symbolic link on the path (never followed)");
}
END_TEST

START_TEST(test_devices)
{
	struct safe_dir d;
	int fd = -1;

	ck_assert_int_eq(safe_dir_open("/dev", &me, &d), 0);
	if (!d.exposed) { /* a root-owned /dev */
		ck_assert_int_eq(safe_open_append(&d, "null", &me, SAFE_CHARDEV_OK, 0640, &fd), 0);
		ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK); /* a device never blocks us */
		close(fd);
	}
	ck_assert_int_eq(safe_open_append(&d, "null", &me, 0, 0640, &fd), -EFTYPE_SAFE);
	close(d.fd);
}
END_TEST

/* As root: a file of another user where the owner can change the
 * directory is refused; a new file is given to the owner. */
START_TEST(test_foreign_owner)
{
	struct safe_owner nob = { .uid = 65534, .gid = 65534 };
	char p[128];
	struct safe_dir d;
	struct stat st;
	int fd;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(chown(tmp, 65534, 65534), 0);
	ck_assert_int_eq(safe_dir_open(tmp, &nob, &d), 0);
	ck_assert(d.exposed);
	snprintf(p, sizeof(p), "%s/other", tmp);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(safe_open_append(&d, "other", &nob, SAFE_CREATE, 0640, &fd), -EOWNER_SAFE);
	ck_assert_int_eq(safe_open_append(&d, "f", &nob, SAFE_CREATE, 0640, &fd), 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_uid, 65534);
	ck_assert_int_eq(st.st_gid, 65534);
	close(fd);
	ck_assert_int_eq(safe_open_append(&d, "f", &nob, 0, 0640, &fd), 0);
	close(fd);
	close(d.fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("safe_open");
	TCase *tc = tcase_create("safe_open");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_path_split);
	tcase_add_test(tc, test_create_and_reopen);
	tcase_add_test(tc, test_refusals);
	tcase_add_test(tc, test_devices);
	tcase_add_test(tc, test_foreign_owner);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
