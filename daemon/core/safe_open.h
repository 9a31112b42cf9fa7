/*
 * Opening files the daemon (root) writes on behalf of a less privileged
 * user, in directories that user may be able to change: no symlink is ever
 * followed on any component, the file must be a regular file with exactly
 * one link, and where the user can change a directory on the way, an
 * existing file must be the user's own. Errors are negative errno; the
 * module never logs.
 */
#ifndef MPSUPD_SAFE_OPEN_H
#define MPSUPD_SAFE_OPEN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The user the files are written for. */
struct safe_owner {
	uid_t uid;
	gid_t gid;
	const gid_t *groups; /* supplementary groups (may be NULL) */
	size_t n_groups;
};

/* An opened directory and whether the owner (for owner root: anyone but
 * root) could change the entries of it or of a directory above it. */
struct safe_dir {
	int fd;
	bool exposed;
};

enum {
	SAFE_CREATE = 1 << 0,     /* create the file, owned by the owner */
	SAFE_CHARDEV_OK = 1 << 1, /* a character device is fine where nobody
				     * but root could have put it (/dev/null) */
};

/* Split an absolute path into its directory and its last component (no
 * ".", ".." or empty last component). */
int safe_path_split(const char *path, char **ret_dir, char **ret_name);

/* Called with each directory a walk opens (last: the one asked for). */
typedef void safe_dir_step_fn(int fd, const struct stat *st, bool last, void *arg);
/* Open the directory path (absolute, or relative to the working directory)
 * one component at a time, never through a symlink: -ELOOP when one is
 * met, its name then in ret_link (when given). Returns the fd or -errno. */
int safe_dir_walk(const char *path, safe_dir_step_fn *step, void *arg, char *ret_link,
		  size_t link_len);
/* safe_dir_walk of an absolute path, learning whether the owner could
 * change a directory on the way. */
int safe_dir_open(const char *path, const struct safe_owner *o, struct safe_dir *ret);

/* Open name in d for appending (write-only, O_APPEND, non-blocking,
 * close-on-exec): -ELOOP a symlink, -EMLINK more than one link,
 * -EFTYPE_SAFE not a regular file, -EOWNER_SAFE someone else's file
 * where the owner could have put it, -ENOENT when missing and SAFE_CREATE is not
 * given. A file created gets mode and the owner's uid and gid. */
int safe_open_append(const struct safe_dir *d, const char *name, const struct safe_owner *o,
		     int flags, mode_t mode, int *ret_fd);

/* The wrong file type (Linux has no EFTYPE) and the wrong owner: errnos
 * that no open returns, so safe_open_strerror can tell them apart. */
#define EFTYPE_SAFE EBADFD
#define EOWNER_SAFE ENOTUNIQ

/* Words for the errors above (strerror for any other). */
const char *safe_open_strerror(int r);

#endif
