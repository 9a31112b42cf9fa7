/*
 * Safe opens for files written as root for another user. The path is
 * walked one component at a time with O_NOFOLLOW|O_DIRECTORY from "/" (not
 * openat2's RESOLVE_NO_SYMLINKS: the walk is as atomic per step, works on
 * every kernel, and lets us look at each directory we really traverse to
 * learn whether the user could change it). The file is then opened by name
 * relative to the kept directory descriptor and checked on the descriptor.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "safe_open.h"

/* Flags of every file open here: never a symlink, never block (a FIFO
 * without reader fails with ENXIO instead of hanging the daemon), never a
 * controlling terminal. */
#define FILE_FLAGS (O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
/* Attempts when a name changes between looking and opening. */
#define RACE_TRIES 3

int safe_path_split(const char *path, char **ret_dir, char **ret_name)
{
	const char *slash = strrchr(path, '/');
	char *dir, *name;

	if (path[0] != '/' || !slash)
		return -EINVAL;
	if (!slash[1])
		return -EISDIR;
	if (strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return -EINVAL;
	dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
	name = strdup(slash + 1);
	if (!dir || !name) {
		free(dir);
		free(name);
		return -ENOMEM;
	}
	*ret_dir = dir;
	*ret_name = name;
	return 0;
}

static bool owner_in_group(const struct safe_owner *o, gid_t g)
{
	if (g == o->gid)
		return true;
	for (size_t i = 0; i < o->n_groups; i++)
		if (o->groups[i] == g)
			return true;
	return false;
}

/* An access ACL may grant anyone write: count it (an fd opened O_PATH
 * cannot be asked, which counts too). */
static bool dir_has_acl(int fd)
{
	if (fgetxattr(fd, "system.posix_acl_access", NULL, 0) >= 0)
		return true;
	return errno != ENODATA && errno != ENOTSUP;
}

/* Could o (for owner root: anyone but root) add, remove or rename entries
 * of the directory open on fd? In a sticky directory (/tmp) others can add
 * entries but not move those of another: that matters for the directory
 * holding the file (last; a file can be moved in), not for one on the way
 * (a directory cannot be moved in without write access to it, which the
 * check of that directory sees). */
static bool dir_exposed(int fd, const struct stat *st, const struct safe_owner *o, bool last)
{
	bool own = o->uid == 0 ? st->st_uid != 0 : st->st_uid == o->uid;

	if (own)
		return true;
	if ((st->st_mode & S_ISVTX) && !last)
		return false;
	if (o->uid == 0)
		return st->st_mode & (S_IWGRP | S_IWOTH);
	if (st->st_mode & S_IWOTH)
		return true;
	if (!(st->st_mode & S_IWGRP))
		return false;
	return owner_in_group(o, st->st_gid) || dir_has_acl(fd);
}

/* Why name in dirfd cannot be used as what was asked: a symlink is -ELOOP. */
static int name_error(int dirfd, const char *name, int e)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return -ELOOP;
	return -e;
}

/* The directory name under dirfd, never through a symlink. */
static int dir_step(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 && errno == EACCES) /* an unprivileged daemon: search is enough */
		fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return name_error(dirfd, name, errno);
	return fd;
}

int safe_dir_walk(const char *path, safe_dir_step_fn *step, void *arg, char *ret_link,
		  size_t link_len)
{
	char comp[NAME_MAX + 1];
	const char *p = path;
	struct stat st;
	int fd, r;

	if (ret_link && link_len)
		ret_link[0] = '\0';
	if ((fd = open(path[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	for (;;) {
		size_t len;
		while (*p == '/')
			p++;
		if (step) {
			if (fstat(fd, &st) < 0) {
				r = -errno;
				goto fail;
			}
			step(fd, &st, !*p, arg);
		}
		if (!*p)
			return fd;
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			r = -ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		if ((r = dir_step(fd, comp)) < 0) {
			if (r == -ELOOP && ret_link && link_len)
				snprintf(ret_link, link_len, "%s", comp);
			goto fail;
		}
		close(fd);
		fd = r;
	}
fail:
	close(fd);
	return r;
}

struct exposure {
	const struct safe_owner *o;
	bool exposed;
};

static void add_exposure(int fd, const struct stat *st, bool last, void *arg)
{
	struct exposure *e = arg;

	e->exposed |= dir_exposed(fd, st, e->o, last);
}

int safe_dir_open(const char *path, const struct safe_owner *o, struct safe_dir *ret)
{
	struct exposure e = { .o = o, .exposed = false };
	int fd;

	if (path[0] != '/')
		return -EINVAL;
	if ((fd = safe_dir_walk(path, add_exposure, &e, NULL, 0)) < 0)
		return fd;
	*ret = (struct safe_dir){ .fd = fd, .exposed = e.exposed };
	return 0;
}

/* May the file st (in d) be written for o? */
static int check_file(const struct stat *st, const struct safe_dir *d, const struct safe_owner *o,
		      int flags)
{
	if (S_ISLNK(st->st_mode))
		return -ELOOP;
	if (S_ISCHR(st->st_mode) && (flags & SAFE_CHARDEV_OK) && !d->exposed)
		return 0;
	if (!S_ISREG(st->st_mode))
		return -EFTYPE_SAFE;
	/* a hard link to a file the user could not write */
	if (st->st_nlink != 1)
		return -EMLINK;
	/* a file of someone else that the user moved here (rename needs no
	 * write access to the file) */
	if (d->exposed && st->st_uid != o->uid)
		return -EOWNER_SAFE;
	return 0;
}

/* Checks on the open descriptor (the name may have changed since it was
 * looked at); regular files go back to blocking writes. Takes fd. */
static int check_open(int fd, const struct safe_dir *d, const struct safe_owner *o, int flags,
		      int *ret_fd)
{
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		r = -errno;
	else
		r = check_file(&st, d, o, flags);
	if (r == 0 && S_ISREG(st.st_mode) && fcntl(fd, F_SETFL, O_APPEND) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* A file just created (O_EXCL: ours): give it to the owner. Takes fd. */
static int give_new(int fd, const struct safe_owner *o, mode_t mode, int *ret_fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0 ||
	    ((st.st_uid != o->uid || st.st_gid != o->gid) && fchown(fd, o->uid, o->gid) < 0) ||
	    fchmod(fd, mode) < 0 || fcntl(fd, F_SETFL, O_APPEND) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*ret_fd = fd;
	return 0;
}

int safe_open_append(const struct safe_dir *d, const char *name, const struct safe_owner *o,
		     int flags, mode_t mode, int *ret_fd)
{
	for (int tries = 0; tries < RACE_TRIES; tries++) {
		struct stat st;
		int fd, r;

		/* look first, so a FIFO or a device is never even opened */
		if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if ((r = check_file(&st, d, o, flags)) < 0)
				return r;
			if ((fd = openat(d->fd, name, FILE_FLAGS)) >= 0)
				return check_open(fd, d, o, flags, ret_fd);
			if (errno != ENOENT)
				return name_error(d->fd, name, errno);
			continue; /* gone in between */
		}
		if (errno != ENOENT || !(flags & SAFE_CREATE))
			return -errno;
		/* new files start private and root's until they are the owner's */
		if ((fd = openat(d->fd, name, FILE_FLAGS | O_CREAT | O_EXCL, 0600)) >= 0)
			return give_new(fd, o, mode, ret_fd);
		if (errno != EEXIST)
			return -errno;
	}
	return -EAGAIN;
}

const char *safe_open_strerror(int r)
{
	switch (r) {
	case -ELOOP: return "a symbolic link on the path (never followed)";
	case -EMLINK: return "a file with more than one hard link";
	case -EFTYPE_SAFE: return "not a regular file";
	case -EOWNER_SAFE: return "owned by another user in a directory the pool's user can change";
	case -EAGAIN: return "changed while being opened";
	default: return strerror(-r);
	}
}
