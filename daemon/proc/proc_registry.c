/*
 * The process registry file (see proc_registry.h): locking, reading with
 * every field checked, and writing that does not slow spawning: the lines
 * of a loop pass are appended by one write() from a deferred event, and
 * the file is compacted (rewritten from what runs) only once it holds more
 * ended groups than live ones, so the cost per spawn stays constant.
 *
 * The file lives in a directory only we can write (checked), is opened
 * relative to a descriptor of it, never through a link, created O_EXCL and
 * replaced by rename. No fsync: a crash of the daemon keeps the page cache,
 * and a crash of the machine ends the workers too (the boot id differs).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "fdio.h"
#include "hash.h"
#include "log.h"
#include "proc.h"
#include "proc_leftover.h"
#include "proc_registry.h"

/* Lines appended beyond twice the live groups before a compaction. */
#define COMPACT_SLACK 256

struct text {
	char *p;
	size_t len, cap;
};

static struct {
	int dirfd, lockfd, procfd;
	int fd;       /* the file, for appends; -1: compact next */
	char *dir;    /* for messages */
	char key[17]; /* FNV-1a 64 of the socket path, hex */
	char file[48], tmp[48], lock[48];
	char boot[PROCREG_BOOT_ID_LEN + 1];
	uint64_t self_start; /* our own start time */
	struct event *ev;
	bool pending;     /* ev is active */
	struct text pend; /* lines for the next append */
	size_t pend_lines;
	bool lost;         /* a line could not be queued: compact */
	struct text whole; /* a compaction's text */
	size_t lines;      /* p/x lines in the file */
	size_t live;       /* groups recorded as running */
	bool failing;      /* the last write failed (logged once) */
	bool truncated;    /* more groups than PROCREG_MAX_RECORDS (logged once) */
} reg = { .dirfd = -1, .lockfd = -1, .procfd = -1, .fd = -1 };

/*
 * /proc.
 */

int procreg_stat(pid_t pid, struct procreg_stat *ret)
{
	char path[32], buf[1024], *p;
	unsigned long long start;
	int fd, ppid, pgrp, sid;
	ssize_t n;

	if (reg.procfd < 0 && (reg.procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
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
	if (sscanf(p + 1,
		   " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &ret->state, &ppid, &pgrp, &sid, &start) != 5)
		return -EINVAL;
	ret->ppid = ppid;
	ret->pgrp = pgrp;
	ret->session = sid;
	ret->start = start;
	return 0;
}

uint64_t procreg_ticks(void)
{
	static long hz;
	struct timespec ts;

	if (!hz && (hz = sysconf(_SC_CLK_TCK)) <= 0)
		hz = 100;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	/* as the kernel's nsec_to_clock_t(): rounded down */
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) /
	       (1000000000u / (uint64_t)hz);
}

int procreg_fix_range(pid_t pid, uint64_t *lo, uint64_t *hi)
{
	struct procreg_stat st;
	int r;

	if (*hi - *lo <= PROCREG_MAX_RANGE)
		return 0;
	if ((r = procreg_stat(pid, &st)) < 0)
		return r;
	*lo = *hi = st.start;
	return 0;
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
	n = read(fd, buf, PROCREG_BOOT_ID_LEN + 1);
	close(fd);
	if (n < PROCREG_BOOT_ID_LEN)
		return -EIO;
	buf[PROCREG_BOOT_ID_LEN] = '\0';
	for (int i = 0; i < PROCREG_BOOT_ID_LEN; i++)
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
		ssize_t n = fd_read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	r = procreg_parse(buf, got, reg.boot, reg.key, ret, err, sizeof(err));
	if (r == 0 && ret->torn)
		log_info("proc", "%s/%s: its last line was cut short: left out", reg.dir, reg.file);
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

/* Append printf text to b (growing it); -ENOMEM leaves b as it was. */
static int text_add(struct text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int text_add(struct text *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = b->cap ? vsnprintf(b->p + b->len, room, fmt, ap) : (int)room;
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if (b->cap && (size_t)n < room) {
			b->len += (size_t)n;
			return 0;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
}

/* A "p" line the reader accepts (the timeout clamped, an odd name "-"). */
static int add_line(struct text *b, const struct procreg_rec *r)
{
	double ms = r->stop_timeout * 1000 + 0.5;

	return text_add(b, "p %d %d %llu %llu %d %llu %s\n", (int)r->pid, (int)r->pgid,
			(unsigned long long)r->start_lo, (unsigned long long)r->start_hi,
			r->stop_signal,
			ms < (double)PROCREG_MAX_TIMEOUT_MS ? (unsigned long long)ms
							    : PROCREG_MAX_TIMEOUT_MS,
			procreg_name_valid(r->name) ? r->name : "-");
}

/* Can r be written (and read back)? Not without its start time. */
static bool recordable(const struct procreg_rec *r)
{
	return r->pid > 0 && r->pid <= PROCREG_PID_MAX && r->pgid == r->pid && r->start_lo > 0 &&
	       r->start_hi >= r->start_lo && r->start_hi - r->start_lo <= PROCREG_MAX_RANGE &&
	       r->stop_signal > 0 && r->stop_signal < NSIG && r->stop_timeout >= 0;
}

static void add_each(const struct procreg_rec *r, void *arg)
{
	int *err = arg;

	if (*err || !recordable(r))
		return;
	if (reg.live == PROCREG_MAX_RECORDS) {
		reg.truncated = true;
		return;
	}
	*err = add_line(&reg.whole, r);
	reg.live++;
}

/* Write the whole file (what runs now): tmp, then rename over the old
 * one; appends go on in the new one. */
static int compact(void)
{
	int fd, r;

	if (reg.fd >= 0)
		close(reg.fd);
	reg.fd = -1;
	reg.whole.len = 0;
	reg.live = 0;
	r = text_add(&reg.whole, "%s\nboot %s\nkey %s\ndaemon %d %llu\n", PROCREG_MAGIC, reg.boot,
		     reg.key, (int)getpid(), (unsigned long long)reg.self_start);
	if (r == 0)
		proc_registry_each(add_each, &r);
	if (r < 0)
		return r;
	if (unlinkat(reg.dirfd, reg.tmp, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(reg.dirfd, reg.tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = fd_write_all(fd, reg.whole.p, reg.whole.len);
	if (r == 0 && renameat(reg.dirfd, reg.tmp, reg.dirfd, reg.file) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		unlinkat(reg.dirfd, reg.tmp, 0);
		return r;
	}
	reg.fd = fd;
	reg.lines = reg.live;
	/* a big registry's text is not kept between compactions */
	if (reg.whole.cap > 65536) {
		free(reg.whole.p);
		reg.whole = (struct text){ 0 };
	}
	return 0;
}

/* Once per loop pass: append what changed, or compact when the file holds
 * more ended groups than live ones (or an append failed). */
static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	int r = -EAGAIN;

	(void)fd;
	(void)what;
	(void)arg;
	reg.pending = false;
	if (reg.fd >= 0 && !reg.lost && reg.live <= PROCREG_MAX_RECORDS &&
	    reg.lines + reg.pend_lines <= 2 * reg.live + COMPACT_SLACK) {
		r = fd_write_all(reg.fd, reg.pend.p, reg.pend.len);
		if (r == 0)
			reg.lines += reg.pend_lines;
	}
	if (r < 0)
		r = compact();
	reg.pend.len = 0;
	reg.pend_lines = 0;
	reg.lost = false;
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

static void schedule(void)
{
	if (!reg.pending) {
		reg.pending = true;
		event_active(reg.ev, EV_TIMEOUT, 0);
	}
}

void procreg_add(const struct procreg_rec *r)
{
	if (!reg.ev || !recordable(r))
		return;
	if (add_line(&reg.pend, r) < 0)
		reg.lost = true; /* the compaction will have it */
	reg.pend_lines++;
	reg.live++;
	schedule();
}

void procreg_remove(pid_t pid, uint64_t start_lo)
{
	if (!reg.ev || start_lo == 0)
		return;
	if (text_add(&reg.pend, "x %d %llu\n", (int)pid, (unsigned long long)start_lo) < 0)
		reg.lost = true;
	reg.pend_lines++;
	if (reg.live > 0)
		reg.live--;
	schedule();
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
	uint64_t h = hash_fnv1a64(socket_path);

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
		log_warn("proc",
			 "the daemon that wrote %s/%s (pid %d) still runs: "
			 "its %zu process group%s left alone",
			 reg.dir, reg.file, (int)f.writer_pid, f.n, f.n == 1 ? "" : "s");
	else if (f.n > 0)
		leftovers_stop(f.recs, f.n, f.writer_pid);
	free(f.recs);
	free(buf);
}

int procreg_dirfd(const char **ret_dir)
{
	if (reg.dirfd < 0)
		return -ENOENT;
	*ret_dir = reg.dir;
	return reg.dirfd;
}

int procreg_open(const struct conf *conf, const char *socket_path)
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
		log_warn("proc",
			 "cannot read the boot id (%s): processes are not recorded, "
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
		if (r == -EADDRINUSE)
			goto fail;
		log_msg(configured ? LOG_LVL_ERROR : LOG_LVL_WARNING, "proc", __FILE__, __LINE__,
			"cannot lock %s/%s: %s: processes are not recorded, and what a crashed "
			"daemon left is not stopped",
			reg.dir, reg.lock, r == -EPERM ? "not a file of ours" : strerror(-r));
		if (configured)
			goto fail;
		goto off;
	}
	log_debug("proc", "process registry: %s/%s", reg.dir, reg.file);
	return 0;
fail:
	procreg_close();
	return r;
off:
	procreg_close();
	return 0;
}

void procreg_start(void)
{
	if (reg.lockfd < 0 || reg.ev)
		return;
	if (!(reg.ev = event_new(daemon_g.base, -1, 0, write_cb, NULL))) {
		log_error("proc", "out of memory: processes are not recorded");
		return;
	}
	stop_leftovers();
	/* what was left is handled: a crash from here on must not see it again */
	write_cb(-1, 0, NULL);
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
	if (reg.fd >= 0)
		close(reg.fd);
	reg.fd = -1;
	free(reg.pend.p);
	free(reg.whole.p);
	reg.pend = reg.whole = (struct text){ 0 };
	reg.pend_lines = reg.lines = reg.live = 0;
	reg.lost = reg.failing = reg.truncated = false;
}
