/*
 * The process registry file (see proc_registry.h): locking, reading with
 * every field checked, and a coalesced rewrite (a deferred event, so a
 * burst of spawns and reaps in one loop pass costs one write).
 *
 * The file lives in a directory only we can write (checked), is opened
 * relative to a descriptor of it, never through a link, and is replaced by
 * rename. No fsync: a crash of the daemon keeps the page cache, and a crash
 * of the machine ends the workers too (and the boot id then differs).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "proc_leftover.h"
#include "proc_registry.h"

#define MAGIC "mpsupd-processes 1"
#define BOOT_ID_LEN 36

static struct {
	int dirfd, lockfd, procfd;
	char *dir;             /* for messages */
	char key[17];          /* FNV-1a 64 of the socket path, hex */
	char file[48], tmp[48], lock[48];
	char boot[BOOT_ID_LEN + 1];
	struct event *ev;
	bool pending;
	bool failing;          /* the last write failed (logged once) */
	char *buf;             /* the text being written, reused */
	size_t cap, len;
	size_t n;
	bool truncated;        /* more groups than PROCREG_MAX_RECORDS (logged once) */
	uint64_t self_start;   /* our own start time */
} reg = { .dirfd = -1, .lockfd = -1, .procfd = -1 };

/*
 * /proc.
 */

int procreg_stat(pid_t pid, struct procreg_stat *ret)
{
	char path[32], buf[1024], *p;
	unsigned long long start;
	int fd, ppid, pgrp, sid;
	ssize_t n;

	if (reg.procfd < 0 &&
	    (reg.procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	snprintf(path, sizeof(path), "%d/stat", (int)pid);
	fd = openat(reg.procfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 && errno != ESRCH ? -errno : -ESRCH;
	buf[n] = '\0';
	/* the command name may hold anything: the fields start after its last ')' */
	if (!(p = strrchr(buf, ')')))
		return -EINVAL;
	/* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	 * cmajflt utime stime cutime cstime priority nice num_threads
	 * itrealvalue starttime */
	if (sscanf(p + 1, " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &ret->state, &ppid, &pgrp, &sid, &start) != 5)
		return -EINVAL;
	ret->ppid = ppid;
	ret->pgrp = pgrp;
	ret->session = sid;
	ret->start = start;
	return 0;
}

/*
 * Parsing.
 */

/* A decimal number in [lo, hi], the whole of s. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s || (s[0] == '0' && s[1]))
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*ret = v;
	return 0;
}

static bool rec_name_valid(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("_.:-", *s)) || n >= PROCREG_NAME_MAX)
			return false;
	return n > 0;
}

/* Split line into at most max words separated by single spaces (in
 * place); -1 for an empty word or too many. */
static int split(char *line, char **w, int max)
{
	int n = 0;

	for (;;) {
		if (n == max || *line == ' ' || *line == '\0')
			return -1;
		w[n++] = line;
		line += strcspn(line, " ");
		if (!*line)
			return n;
		*line++ = '\0';
	}
}

#define PID_MAX_LIMIT_ 4194304 /* the kernel's PID_MAX_LIMIT on 64-bit */

/* One "p ..." line (words after the tag). */
static int parse_rec(char **w, struct procreg_rec *r)
{
	uint64_t pid, pgid, start, sig, ms;

	if (parse_u64(w[0], 1, PID_MAX_LIMIT_, &pid) < 0 ||
	    parse_u64(w[1], 1, PID_MAX_LIMIT_, &pgid) < 0 || pgid != pid ||
	    parse_u64(w[2], 1, UINT64_MAX / 2, &start) < 0 || parse_u64(w[3], 1, 64, &sig) < 0 ||
	    !conf_signal_name((int)sig) || parse_u64(w[4], 0, PROCREG_MAX_TIMEOUT_MS, &ms) < 0 ||
	    !rec_name_valid(w[5]))
		return -EINVAL;
	r->pid = (pid_t)pid;
	r->pgid = (pid_t)pgid;
	r->start = start;
	r->stop_signal = (int)sig;
	r->stop_timeout = (double)ms / 1000;
	r->name = w[5];
	return 0;
}

static int bad(char *err, size_t errlen, unsigned line, const char *what)
{
	snprintf(err, errlen, "line %u: %s", line, what);
	return -EINVAL;
}

int procreg_parse(char *buf, size_t len, const char *boot_id, const char *key,
		  struct procreg_file *ret, char *err, size_t errlen)
{
	struct procreg_file f = { 0 };
	uint64_t v, v2;
	unsigned line = 0;
	bool ended = false;
	char *p = buf, *end = buf + len, *w[8];
	int n, r = -EINVAL;

	if (memchr(buf, '\0', len))
		return bad(err, errlen, 0, "binary data");
	if (len == 0 || buf[len - 1] != '\n')
		return bad(err, errlen, 0, "truncated (no final newline)");
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		*nl = '\0';
		line++;
		if (ended) {
			r = bad(err, errlen, line, "data after the end line");
			goto fail;
		}
		if (line == 1) {
			if (strcmp(p, MAGIC) != 0) {
				r = bad(err, errlen, line, "not a process registry (header)");
				goto fail;
			}
		} else if ((n = split(p, w, 8)) < 1) {
			r = bad(err, errlen, line, "malformed");
			goto fail;
		} else if (line == 2) {
			if (n != 2 || strcmp(w[0], "boot") != 0 || strlen(w[1]) != BOOT_ID_LEN) {
				r = bad(err, errlen, line, "malformed boot id");
				goto fail;
			}
			if (strcmp(w[1], boot_id) != 0) {
				snprintf(err, errlen, "written before the last boot");
				r = -ESTALE;
				goto fail;
			}
		} else if (line == 3) {
			if (n != 2 || strcmp(w[0], "key") != 0) {
				r = bad(err, errlen, line, "malformed key");
				goto fail;
			}
			if (strcmp(w[1], key) != 0) {
				snprintf(err, errlen, "written for another socket");
				r = -ESTALE;
				goto fail;
			}
		} else if (line == 4) {
			if (n != 3 || strcmp(w[0], "daemon") != 0 ||
			    parse_u64(w[1], 1, PID_MAX_LIMIT_, &v) < 0 ||
			    parse_u64(w[2], 1, UINT64_MAX / 2, &v2) < 0) {
				r = bad(err, errlen, line, "malformed daemon line");
				goto fail;
			}
			f.writer_pid = (pid_t)v;
			f.writer_start = v2;
		} else if (n == 2 && strcmp(w[0], "end") == 0) {
			if (parse_u64(w[1], 0, PROCREG_MAX_RECORDS, &v) < 0 || v != f.n) {
				r = bad(err, errlen, line, "record count differs from the end line");
				goto fail;
			}
			ended = true;
		} else if (n == 7 && strcmp(w[0], "p") == 0) {
			if (f.n == PROCREG_MAX_RECORDS) {
				r = bad(err, errlen, line, "too many records");
				goto fail;
			}
			if (!f.recs) {
				/* at most one record a line: size the array once */
				size_t lines = 0;
				for (char *q = nl + 1; q < end; q++)
					lines += *q == '\n';
				lines = lines + 1 < PROCREG_MAX_RECORDS ? lines + 1 : PROCREG_MAX_RECORDS;
				if (!(f.recs = calloc(lines, sizeof(*f.recs)))) {
					snprintf(err, errlen, "out of memory");
					r = -ENOMEM;
					goto fail;
				}
			}
			if (parse_rec(w + 1, &f.recs[f.n]) < 0) {
				r = bad(err, errlen, line, "malformed record");
				goto fail;
			}
			f.n++;
		} else {
			r = bad(err, errlen, line, "unknown line");
			goto fail;
		}
		p = nl + 1;
	}
	if (!ended || line < 5) {
		r = bad(err, errlen, line, "truncated (no end line)");
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	free(f.recs);
	return r;
}

/*
 * Files.
 */

/* A registry file is ours: a regular file owned by us, one link, not
 * writable by others. */
static bool file_trusted(const struct stat *st)
{
	return S_ISREG(st->st_mode) && st->st_uid == geteuid() && st->st_nlink == 1 &&
	       !(st->st_mode & (S_IWGRP | S_IWOTH));
}

static int read_boot_id(char *buf)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, BOOT_ID_LEN + 1);
	close(fd);
	if (n < BOOT_ID_LEN)
		return -EIO;
	buf[BOOT_ID_LEN] = '\0';
	for (int i = 0; i < BOOT_ID_LEN; i++)
		if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f') ||
		      buf[i] == '-'))
			return -EIO;
	return 0;
}

/* Open the runtime directory: ours and writable by nobody else. */
static int open_dir(const char *dir)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* Take the lock beside the registry; -EADDRINUSE when a live daemon has it. */
static int take_lock(void)
{
	struct stat st;
	char pid[24];
	int fd, n;

	fd = openat(reg.dirfd, reg.lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !file_trusted(&st)) {
		close(fd);
		return -EPERM;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
		n = (int)pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (r == -EADDRINUSE)
			log_error("proc", "another mpsupd (pid %s) holds %s/%s: not starting",
				  pid[0] ? pid : "?", reg.dir, reg.lock);
		close(fd);
		return r;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("proc", "cannot write our pid to %s/%s: %s", reg.dir, reg.lock,
			 strerror(errno));
	reg.lockfd = fd;
	return 0;
}

/* Read the registry a previous daemon left; *ret_buf holds the names. */
static int read_file(struct procreg_file *ret, char **ret_buf)
{
	char err[256], *buf;
	struct stat st;
	size_t got = 0;
	int fd, r;

	fd = openat(reg.dirfd, reg.file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0 || !file_trusted(&st)) {
		log_warn("proc", "%s/%s is not a file of ours: ignored", reg.dir, reg.file);
		close(fd);
		return -EPERM;
	}
	if (st.st_size > (off_t)PROCREG_MAX_BYTES) {
		log_warn("proc", "%s/%s is too large (%lld bytes, at most %u): ignored", reg.dir,
			 reg.file, (long long)st.st_size, PROCREG_MAX_BYTES);
		close(fd);
		return -EFBIG;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -ENOMEM;
	}
	/* never past what fstat said, even if it grows */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	r = procreg_parse(buf, got, reg.boot, reg.key, ret, err, sizeof(err));
	if (r == -ESTALE)
		log_info("proc", "%s/%s: %s: ignored", reg.dir, reg.file, err);
	else if (r < 0)
		log_warn("proc", "%s/%s is corrupt (%s): ignored", reg.dir, reg.file, err);
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret_buf = buf;
	return 0;
}

/* Is the daemon that wrote the file still running (its lock lost)? */
static bool writer_alive(const struct procreg_file *f)
{
	struct procreg_stat st;

	return f->writer_pid != getpid() && procreg_stat(f->writer_pid, &st) == 0 &&
	       st.start == f->writer_start && st.state != 'Z' && st.state != 'X';
}

/*
 * Writing.
 */

static int buf_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int buf_add(const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(reg.buf + reg.len, reg.cap - reg.len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < reg.cap - reg.len) {
			reg.len += (size_t)n;
			return 0;
		}
		size_t cap = reg.cap * 2 > reg.len + (size_t)n + 1 ? reg.cap * 2
								  : reg.len + (size_t)n + 1;
		char *nb = realloc(reg.buf, cap);
		if (!nb)
			return -ENOMEM;
		reg.buf = nb;
		reg.cap = cap;
	}
}

static void add_rec(const struct procreg_rec *r, void *arg)
{
	int *err = arg;

	if (*err || r->start == 0 || r->pgid != r->pid)
		return;
	if (reg.n == PROCREG_MAX_RECORDS) {
		reg.truncated = true;
		return;
	}
	*err = buf_add("p %d %d %llu %d %llu %s\n", (int)r->pid, (int)r->pgid,
		       (unsigned long long)r->start, r->stop_signal,
		       (unsigned long long)(r->stop_timeout * 1000 + 0.5),
		       rec_name_valid(r->name) ? r->name : "-");
	reg.n++;
}

/* Write the whole file: tmp, then rename over the old one. */
static int write_file(void)
{
	size_t off = 0;
	int fd, r = 0;

	if (!reg.buf) {
		reg.cap = 4096;
		if (!(reg.buf = malloc(reg.cap)))
			return -ENOMEM;
	}
	reg.len = 0;
	reg.n = 0;
	r = buf_add("%s\nboot %s\nkey %s\ndaemon %d %llu\n", MAGIC, reg.boot, reg.key,
		    (int)getpid(), (unsigned long long)reg.self_start);
	if (r == 0)
		proc_registry_each(add_rec, &r);
	if (r == 0)
		r = buf_add("end %zu\n", reg.n);
	if (r < 0)
		return r;
	if (unlinkat(reg.dirfd, reg.tmp, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(reg.dirfd, reg.tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < reg.len) {
		ssize_t n = write(fd, reg.buf + off, reg.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	close(fd);
	if (r == 0 && renameat(reg.dirfd, reg.tmp, reg.dirfd, reg.file) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(reg.dirfd, reg.tmp, 0);
	return r;
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	int r;

	(void)fd;
	(void)what;
	(void)arg;
	reg.pending = false;
	r = write_file();
	if (r < 0 && !reg.failing)
		log_warn("proc", "cannot write the process registry %s/%s: %s", reg.dir, reg.file,
			 strerror(-r));
	else if (r == 0 && reg.failing)
		log_info("proc", "the process registry %s/%s is written again", reg.dir, reg.file);
	reg.failing = r < 0;
	if (reg.truncated) {
		log_warn("proc", "more than %d process groups: the registry lists the first only",
			 PROCREG_MAX_RECORDS);
		reg.truncated = false;
	}
}

bool procreg_active(void)
{
	return reg.ev != NULL;
}

void procreg_changed(void)
{
	if (reg.ev && !reg.pending) {
		reg.pending = true;
		event_active(reg.ev, EV_TIMEOUT, 0);
	}
}

/*
 * Life.
 */

/* The directory part of path ("." when none). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* Name the files after the socket path. */
static void set_names(const char *socket_path)
{
	uint64_t h = 14695981039346656037ull;

	for (const char *s = socket_path; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	snprintf(reg.key, sizeof(reg.key), "%016llx", (unsigned long long)h);
	snprintf(reg.file, sizeof(reg.file), "mpsupd.%s.procs", reg.key);
	snprintf(reg.tmp, sizeof(reg.tmp), "mpsupd.%s.procs.tmp", reg.key);
	snprintf(reg.lock, sizeof(reg.lock), "mpsupd.%s.lock", reg.key);
}

/* Stop what the previous daemon's file lists (if any). */
static void stop_leftovers(void)
{
	struct procreg_file f = { 0 };
	char *buf = NULL;

	if (read_file(&f, &buf) < 0 || !buf)
		return;
	if (f.n > 0 && writer_alive(&f))
		log_warn("proc", "the daemon that wrote %s/%s (pid %d) still runs: "
				 "its %zu process groups are left alone",
			 reg.dir, reg.file, (int)f.writer_pid, f.n);
	else if (f.n > 0)
		leftovers_stop(f.recs, f.n, f.writer_pid);
	free(f.recs);
	free(buf);
}

int procreg_start(const struct conf *conf, const char *socket_path)
{
	bool configured = conf->runtime_dir != NULL;
	struct procreg_stat self;
	int r;

	if (reg.dirfd >= 0)
		return 0;
	reg.dir = configured ? strdup(conf->runtime_dir) : dir_of(socket_path);
	if (!reg.dir)
		return -ENOMEM;
	set_names(socket_path);
	if ((r = read_boot_id(reg.boot)) < 0) {
		log_warn("proc", "cannot read the boot id (%s): processes are not recorded, "
				 "and what a crashed daemon left is not stopped",
			 strerror(-r));
		goto off;
	}
	if ((r = open_dir(reg.dir)) < 0) {
		log_msg(configured ? LOG_LVL_ERROR : LOG_LVL_WARNING, "proc", __FILE__, __LINE__,
			"runtime directory %s: %s: processes are not recorded, and what a "
			"crashed daemon left is not stopped%s",
			reg.dir, r == -EPERM ? "writable by others" : strerror(-r),
			configured ? "" : " (set runtime_dir)");
		if (configured)
			goto fail;
		goto off;
	}
	reg.dirfd = r;
	if (procreg_stat(getpid(), &self) < 0)
		self.start = 1;
	reg.self_start = self.start;
	if ((r = take_lock()) < 0) {
		if (r != -EADDRINUSE)
			log_error("proc", "cannot lock %s/%s: %s", reg.dir, reg.lock,
				  strerror(r == -EPERM ? EEXIST : -r));
		goto fail;
	}
	if (!(reg.ev = event_new(daemon_g.base, -1, 0, write_cb, NULL))) {
		r = -ENOMEM;
		goto fail;
	}
	stop_leftovers();
	/* what is left is handled: a crash from here on must not see it again */
	write_cb(-1, 0, NULL);
	log_debug("proc", "process registry: %s/%s", reg.dir, reg.file);
	return 0;
fail:
	procreg_close();
	return r;
off:
	procreg_close();
	return 0;
}

void procreg_close(void)
{
	if (reg.ev)
		event_free(reg.ev);
	reg.ev = NULL;
	reg.pending = false;
	if (reg.dirfd >= 0 && reg.lockfd >= 0) {
		unlinkat(reg.dirfd, reg.file, 0);
		unlinkat(reg.dirfd, reg.tmp, 0);
	}
	if (reg.lockfd >= 0)
		close(reg.lockfd); /* the lock file stays: removing it would race a newcomer */
	if (reg.dirfd >= 0)
		close(reg.dirfd);
	if (reg.procfd >= 0)
		close(reg.procfd);
	reg.lockfd = reg.dirfd = reg.procfd = -1;
	free(reg.dir);
	reg.dir = NULL;
	free(reg.buf);
	reg.buf = NULL;
	reg.cap = reg.len = 0;
}
