/*
 * Persistence (persist.c): the state directory and its files - their
 * names, safe opening, and the plain I/O every state file goes through.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "fdio.h"
#include "persist_int.h"
#include "safe_open.h"

/* Fault injection for tests: while the file named by MPSUP_TEST_FAIL_WRITES
 * exists, writes and syncs of the state files fail with the error its
 * text names - EIO, EDQUOT, else ENOSPC - and only syncs fail when the
 * text has "fsync". The -errno for a write (sync false) or sync, or 0. */
static int fault(bool sync)
{
	char text[64] = "";
	ssize_t n;
	int fd;

	if (!persist_g.fail_flag ||
	    (fd = open(persist_g.fail_flag, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[n > 0 ? n : 0] = 0;
	if (!sync && strstr(text, "fsync"))
		return 0;
	if (strstr(text, "EIO"))
		return -EIO;
	if (strstr(text, "EDQUOT"))
		return -EDQUOT;
	return -ENOSPC;
}

/* write() all of p; 0 or -errno. */
int persist_write_all(int fd, const void *p, size_t n)
{
	int r;

	if ((r = fault(false)) < 0)
		return r;
	return fd_write_all(fd, p, n);
}

/* fdatasync; 0 or -errno. */
int persist_sync_fd(int fd)
{
	int r;

	if ((r = fault(true)) < 0)
		return r;
	return fdatasync(fd) < 0 ? -errno : 0;
}

/* Read all of the file open as fd (from offset 0). */
int persist_read_fd(int fd, struct persist_buf *ret)
{
	struct stat st;
	off_t off = 0;

	*ret = (struct persist_buf){ 0 };
	if (fstat(fd, &st) < 0)
		return -errno;
	if (persist_buf_reserve(ret, (size_t)st.st_size + 1) < 0)
		return -ENOMEM;
	for (;;) {
		ssize_t n;
		if (ret->cap - ret->len < 4096 && persist_buf_reserve(ret, 65536) < 0) {
			persist_buf_free(ret);
			return -ENOMEM;
		}
		n = pread(fd, ret->p + ret->len, ret->cap - ret->len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			persist_buf_free(ret);
			return r;
		}
		if (n == 0)
			return 0;
		ret->len += (size_t)n;
		off += n;
	}
}

/* --- the state directory and its files ------------------------------------------- */

/*
 * mpsupd may run as root while its state directory is reachable by other
 * users: every state file is opened relative to the directory's fd, never
 * through a symbolic link (O_NOFOLLOW), and must be a regular file with one
 * link owned by us - a hard link planted at PATH.log would otherwise let a
 * truncation of a torn tail cut someone else's file. With state_dir_check
 * (the default) the directory itself is reached without a symbolic link in
 * any component and nobody but us (or root) may write it, so nothing can be
 * planted there in the first place.
 */

/* What kind of file st is, for messages. */
static const char *file_kind(const struct stat *st)
{
	switch (st->st_mode & S_IFMT) {
	case S_IFLNK: return "a symbolic link";
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	default: return "not a regular file";
	}
}

/* Is st a file we may use as a state file? -errno with err naming path. */
static int file_check(const struct stat *st, const char *path, char *err, size_t errlen)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "%s is %s, not a regular file; refusing to use it", path,
			 file_kind(st));
		return S_ISLNK(st->st_mode) ? -ELOOP : -EINVAL;
	}
	if (st->st_nlink != 1) {
		snprintf(
			err, errlen,
			"%s has %lu hard links; refusing to use it (it may be another file's name)",
			path, (unsigned long)st->st_nlink);
		return -EMLINK;
	}
	if (st->st_uid != geteuid()) {
		snprintf(err, errlen,
			 "%s is owned by uid %lu, not by mpsupd's user (uid %lu); "
			 "refusing to use it",
			 path, (unsigned long)st->st_uid, (unsigned long)geteuid());
		return -EPERM;
	}
	return 0;
}

/* Open name in the state directory (path for messages) without following a
 * link and without blocking on a FIFO, then check what it is. Returns the fd,
 * -ENOENT silently when it does not exist (and flags cannot create it), or
 * -errno with err. */
int persist_file_open(const char *name, const char *path, int flags, char *err, size_t errlen)
{
	struct stat st;
	int fd, fl, r;

	fd = openat(persist_g.dir_fd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			return r;
		if (r == -ELOOP)
			snprintf(err, errlen, "%s is a symbolic link; refusing to follow it", path);
		else
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(-r));
	} else
		r = file_check(&st, path, err, errlen);
	/* A regular file: blocking I/O from now on. */
	if (r == 0 && ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)) {
		r = -errno;
		snprintf(err, errlen, "cannot set the flags of %s: %s", path, strerror(-r));
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* Is name in the state directory, if it exists, a file we may use? */
static int name_check(const char *name, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int r;

	if (fstatat(persist_g.dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		r = -errno;
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(-r));
		return r;
	}
	return file_check(&st, path, err, errlen);
}

/* Remove a leftover name (a snapshot being written when we stopped) -
 * only if it is one of ours: anything else was planted and refuses the
 * start. */
static int leftover_remove(const char *name, const char *path, char *err, size_t errlen)
{
	int r = name_check(name, path, err, errlen);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (unlinkat(persist_g.dir_fd, name, 0) < 0 && errno != ENOENT) {
		r = -errno;
		snprintf(err, errlen, "cannot remove %s: %s", path, strerror(-r));
		return r;
	}
	return 0;
}

/* Open directory dir one component at a time, none of them a symbolic
 * link (safe_dir_walk), naming the culprit. Returns the fd or -errno with
 * err. */
static int dir_open_nofollow(const char *dir, char *err, size_t errlen)
{
	char link[NAME_MAX + 1];
	int fd = safe_dir_walk(dir, NULL, NULL, link, sizeof(link));

	if (fd == -ELOOP && link[0])
		snprintf(err, errlen,
			 "state directory %s: component '%s' is a symbolic link; refusing it (name "
			 "the real directory, or set state_dir_check = no)",
			 dir, link);
	else if (fd < 0)
		snprintf(err, errlen, "state_file: cannot open the directory %s: %s", dir,
			 strerror(-fd));
	return fd;
}

/* Open the state directory into persist_g.dir_fd; with check, refuse one reached
 * through a symbolic link, or that another user could write (like sshd's
 * StrictModes). -errno with err. */
static int dir_open(const char *dir, bool check, char *err, size_t errlen)
{
	struct stat st;

	err[0] = 0;
	if (check) {
		persist_g.dir_fd = dir_open_nofollow(dir, err, errlen);
	} else if ((persist_g.dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		persist_g.dir_fd = -errno;
		snprintf(err, errlen, "state_file: cannot open the directory %s: %s", dir,
			 strerror(errno));
	}
	if (persist_g.dir_fd < 0) {
		int r = persist_g.dir_fd;
		persist_g.dir_fd = -1;
		return r;
	}
	if (!check)
		return 0;
	if (fstat(persist_g.dir_fd, &st) < 0) {
		int r = -errno;
		snprintf(err, errlen, "cannot stat the state directory %s: %s", dir, strerror(-r));
		return r;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(
			err, errlen,
			"state directory %s is owned by uid %lu, not by mpsupd's user (uid %lu) or "
			"root; refusing it (or set state_dir_check = no)",
			dir, (unsigned long)st.st_uid, (unsigned long)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "state directory %s is writable by %s (mode %04o): another user could "
			 "plant "
			 "links at the state files; refusing it (chmod go-w, or set "
			 "state_dir_check = "
			 "no)",
			 dir, st.st_mode & S_IWOTH ? "other users" : "its group",
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* pathname + suffix, malloc'ed. */
static char *path_with(const char *path, const char *suffix)
{
	size_t n = strlen(path) + strlen(suffix) + 1;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s%s", path, suffix);
	return s;
}

/* Open (creating it if need be) PATH.log into persist_g.log_fd and lock it. */
static int log_open(char *err, size_t errlen)
{
	int r;

	persist_g.log_fd = persist_file_open(persist_g.log_name, persist_g.log_path,
					     O_RDWR | O_APPEND, err, errlen);
	if (persist_g.log_fd == -ENOENT) {
		persist_g.log_fd =
			persist_file_open(persist_g.log_name, persist_g.log_path,
					  O_RDWR | O_APPEND | O_CREAT | O_EXCL, err, errlen);
		if (persist_g.log_fd >= 0)
			fsync(persist_g.dir_fd); /* created: make its name durable */
		else if (persist_g.log_fd == -ENOENT)
			snprintf(err, errlen, "cannot create %s: %s", persist_g.log_path,
				 strerror(ENOENT));
	}
	if (persist_g.log_fd < 0) {
		r = persist_g.log_fd;
		persist_g.log_fd = -1;
		return r;
	}
	if (flock(persist_g.log_fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s is in use by another process (another mpsupd?)",
			 persist_g.log_path);
		return r;
	}
	return 0;
}

/* Set up persist_g's names of path's files; the directory (malloc'ed) in ret_dir. */
static int names_init(const char *path, char **ret_dir, char *err, size_t errlen)
{
	char *dir, *slash;

	persist_g.path = strdup(path);
	persist_g.log_path = path_with(path, ".log");
	persist_g.tmp_path = path_with(path, ".tmp");
	persist_g.logtmp_path = path_with(path, ".log.tmp");
	dir = strdup(path);
	if (!persist_g.path || !persist_g.log_path || !persist_g.tmp_path ||
	    !persist_g.logtmp_path || !dir) {
		free(dir);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	slash = strrchr(dir, '/');
	persist_g.name = slash ? persist_g.path + (slash - dir) + 1 : persist_g.path;
	if (!*persist_g.name || strcmp(persist_g.name, ".") == 0 ||
	    strcmp(persist_g.name, "..") == 0) {
		free(dir);
		snprintf(err, errlen, "state_file %s does not name a file", path);
		return -EINVAL;
	}
	persist_g.log_name = path_with(persist_g.name, ".log");
	persist_g.tmp_name = path_with(persist_g.name, ".tmp");
	persist_g.logtmp_name = path_with(persist_g.name, ".log.tmp");
	if (!persist_g.log_name || !persist_g.tmp_name || !persist_g.logtmp_name) {
		free(dir);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	*ret_dir = dir;
	return 0;
}

/* Is name, if it exists, a file we may use? (-ENOENT is no error here.) */
static int name_check_absent_ok(const char *name, const char *path, char *err, size_t errlen)
{
	int r = name_check(name, path, err, errlen);

	return r == -ENOENT ? 0 : r;
}

/* Set up the names of path's files, open its directory (checked with
 * dir_check), and open and lock the log, refusing planted files; leftovers
 * of an interrupted snapshot go. 0 or -errno with err. */
int persist_files_open(const char *path, bool dir_check, char *err, size_t errlen)
{
	char *dir = NULL;
	int r;

	if ((r = names_init(path, &dir, err, errlen)) < 0)
		return r;
	persist_g.dir_check = dir_check;
	r = dir_open(dir, dir_check, err, errlen);
	free(dir);
	if (r < 0)
		return r;
	/* Refuse planted files before the log is created (they are opened
	 * or removed, and checked again, once the log's lock is held). */
	if ((r = name_check_absent_ok(persist_g.name, persist_g.path, err, errlen)) < 0 ||
	    (r = name_check_absent_ok(persist_g.tmp_name, persist_g.tmp_path, err, errlen)) < 0 ||
	    (r = name_check_absent_ok(persist_g.logtmp_name, persist_g.logtmp_path, err, errlen)) <
		    0 ||
	    (r = log_open(err, errlen)) < 0 ||
	    (r = leftover_remove(persist_g.tmp_name, persist_g.tmp_path, err, errlen)) < 0 ||
	    (r = leftover_remove(persist_g.logtmp_name, persist_g.logtmp_path, err, errlen)) < 0)
		return r;
	return 0;
}

/* Are the log and its directory still there? -ENOENT when either was
 * removed (its link count is 0: writes would go to a file nobody can
 * find again), else 0. */
int persist_files_check(void)
{
	struct stat st;

	persist_g.files_checked = now_mono();
	if (fstat(persist_g.log_fd, &st) == 0 && st.st_nlink == 0)
		return -ENOENT;
	if (fstat(persist_g.dir_fd, &st) == 0 && st.st_nlink == 0)
		return -ENOENT;
	return 0;
}

/* The directory of the state file (malloc'ed), as names_init finds it. */
static char *dir_of(const char *path)
{
	char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;

	if (!dir)
		return NULL;
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	return dir;
}

/* The log or its directory was removed (persist_files_check): open the
 * directory again by its name (made again by someone: mpsupd does not
 * create it), checked as at start-up, and a log in it, locked. The old
 * ones are let go. 0 or -errno with err. */
int persist_files_reopen(char *err, size_t errlen)
{
	int old_dir = persist_g.dir_fd, old_log = persist_g.log_fd, r;
	char *dir = dir_of(persist_g.path);

	if (!dir) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r = dir_open(dir, persist_g.dir_check, err, errlen); /* into persist_g.dir_fd */
	free(dir);
	pthread_mutex_lock(&persist_g.mu); /* the background thread reads log_fd */
	if (r >= 0 &&
	    ((r = name_check_absent_ok(persist_g.name, persist_g.path, err, errlen)) < 0 ||
	     (r = name_check_absent_ok(persist_g.tmp_name, persist_g.tmp_path, err, errlen)) < 0 ||
	     (r = log_open(err, errlen)) < 0)) { /* into persist_g.log_fd */
		if (persist_g.log_fd >= 0 && persist_g.log_fd != old_log)
			close(persist_g.log_fd);
	}
	if (r < 0) {
		if (persist_g.dir_fd >= 0 && persist_g.dir_fd != old_dir)
			close(persist_g.dir_fd);
		persist_g.dir_fd = old_dir;
		persist_g.log_fd = old_log;
		pthread_mutex_unlock(&persist_g.mu);
		return r;
	}
	r = persist_g.log_fd;
	persist_g.log_fd = old_log; /* the background thread may hold it: switch properly */
	pthread_mutex_unlock(&persist_g.mu);
	close(old_dir);
	persist_log_fd_switch(r);
	return 0;
}

/* Close the log and the directory and forget the names (NULL-safe: also
 * after a failed persist_files_open). */
void persist_files_close(void)
{
	if (persist_g.log_fd >= 0)
		close(persist_g.log_fd);
	if (persist_g.dir_fd >= 0)
		close(persist_g.dir_fd);
	persist_g.log_fd = persist_g.dir_fd = -1;
	free(persist_g.path);
	free(persist_g.log_path);
	free(persist_g.tmp_path);
	free(persist_g.log_name);
	free(persist_g.tmp_name);
	free(persist_g.logtmp_path);
	free(persist_g.logtmp_name);
	persist_g.path = persist_g.log_path = persist_g.tmp_path = NULL;
	persist_g.log_name = persist_g.tmp_name = NULL;
	persist_g.logtmp_path = persist_g.logtmp_name = NULL;
	persist_g.name = NULL;
}
