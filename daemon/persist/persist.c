/*
 * Durable shared state: the append-only log, its commit barrier, snapshots
 * and recovery at start-up (docs/state.md "Persistence").
 *
 * Files (state_file = PATH): PATH is the last snapshot, PATH.log the log of
 * every mutation since, PATH.tmp a snapshot being written. Each is opened
 * relative to the directory's fd, never through a link, and must be a
 * regular file with one link owned by us ("the state directory" below).
 * Both files are a sequence of frames:
 *
 *   u32 len | u32 crc32c(payload) | u32 crc32c(first 8 bytes) | payload
 *
 * (little-endian). The header has its own checksum so that a damaged length
 * is recognised as damage, not followed blindly.
 *
 * Log payload: the JSON array [SEQ, CMD, PARAMS] - a state command as it
 * was applied (e.g. [17,"dict.set",{"name":"d","key":"k","value":1}]).
 * PARAMS is usually the request line exactly as received (its "id" and
 * "cmd" members are ignored by replay): parsing the same text gives the
 * same values, and copying it costs far less than serializing the parsed
 * request again.
 * Why commands and not resulting values: every op of a persisted type is a
 * deterministic function of the object and its parameters, so the command
 * is exact, small (a list.append of one item costs the item, not the list)
 * and cheap to build.
 * What is not deterministic is logged as what happened, not as what was
 * asked: an object created on first use is an explicit "obj.create" record,
 * and a queue logs its own effects ("queue.put" when an item enters,
 * "queue.get" when one leaves - a put handed straight to a waiting getter is
 * both, a putter admitted when a get frees a slot is a get then a put), so
 * replay never waits, times out or depends on which client was connected.
 * Failed ops are not logged. SEQ counts records from 1 without gaps; a
 * snapshot remembers the last SEQ it includes, so log records at or below
 * it (left by a crash between the snapshot's rename and the log's
 * truncation) are skipped, and a gap is corruption.
 *
 * Snapshot payloads: {"mpsup_snapshot":1,"seq":S,"objects":N,"time":T}, then
 * one ["name","type",OPTIONS] per object (OPTIONS from the type's dump, from
 * which obj_create() rebuilds it), then {"end":N}.
 *
 * Commit: records are framed into one buffer as ops run; a commit event,
 * activated by the first record of a pass, runs after the callbacks of that
 * pass and writes the buffer with one write() (plus fdatasync() with
 * state_sync = always: group commit). Until then conn_flush() holds every
 * connection's output (persist_barrier), so no answer - and no read of a
 * value not yet written - leaves before the records (after a failed write,
 * see Errors). everysec: a thread
 * fdatasyncs the log once a second when it changed. no: the kernel decides.
 *
 * Snapshots: a compaction (the log outgrew state_log_max_bytes and the
 * last snapshot) must not stop the event loop - a large state takes
 * seconds to serialize and fsync. A child forked from the loop writes the
 * copy-on-write image of the objects into PATH.tmp and fdatasyncs it while
 * the parent goes on serving and appending to PATH.log; one child at a
 * time. The child only reads memory and writes its file: it never takes a
 * lock another thread may have held at the fork (the fsync thread's mutex),
 * never logs, closes every other descriptor (the log's lock must go with
 * the daemon; it also dies with it: PR_SET_PDEATHSIG) and leaves with
 * _exit. Then:
 *   1. the child renames PATH.tmp over PATH and fsyncs the directory (so
 *      the loop never pays for replacing a large file);
 *   2. its end is seen through a pidfd (supervision's waitpid(-1) loop, which
 *      may reap it first, hands its status over: daemon_child_watch),
 *      and in one callback of the loop the log's bytes written since the
 *      fork are copied to PATH.log.tmp, which is fdatasynced, locked,
 *      renamed over PATH.log (the directory fsynced) and becomes the log;
 *      the old file and its lock go (closed by a thread: freeing a large
 *      file takes a while).
 * Why a crash at any point recovers every acknowledged record: the fork
 * happens at the end of a commit, when the log holds records 1..S' ending
 * at offset O, and the child's image is the state after record S >= S'
 * (S > S' only if a barrier callback logged more in that pass: those are
 * written past O). Until step 1 is durable, recovery finds the old PATH
 * and the whole log, as before. After it, the new PATH (seq S) and the
 * whole log: records <= S are skipped, the rest replayed from S+1. After
 * step 2, PATH and the log from O on: records <= S skipped, S+1.. follow
 * without a gap. The copy, rename and switch of the fd happen in one
 * callback of the single-threaded loop, so nothing is appended to the old
 * log after it was copied; the new log is synced before its rename, so
 * what the old one had synced stays synced. If the directory fsync after
 * step 2 fails, the rename might be undone by a crash together with every
 * record written since: that is treated as a failed write (below). A child
 * that fails or is killed keeps the whole log (and, before its rename,
 * PATH): PATH.tmp is removed, the failure logged. Snapshots written in
 * the foreground: at start-up after a
 * truncation, at shutdown (the loop has nothing left to serve then), and
 * the recovery snapshot below; each first kills a running child (both
 * write PATH.tmp). Without pidfds (Linux < 5.3) compaction also writes in
 * the foreground.
 *
 * Errors: a failed write or fsync keeps the records of that pass in memory
 * (committed < attempted) and their answers held (they were never
 * acknowledged), refuses further mutations of persisted objects with
 * `internal`, and retries (on the next mutation and every second) by
 * writing a whole snapshot: that rewrites the state including the held
 * records and starts an empty log, so a torn write left in the log by the
 * failure is never followed by good records. Until then the names those
 * records change are in P.unwritten (read from P.pending), and a request
 * about one of them (persist_read; obj.list: any) taints its connection:
 * its next persist_barrier() waits for the recovery too, so no later read
 * shows a mutation a crash would lose. Once the snapshot is written the
 * held answers go out and mutations are accepted.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "persist.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

#define RETRY_SECS 1.0          /* retry timer after a failure */
#define RETRY_MIN_SECS 0.1      /* no quicker retries on the mutation path */
#define COMPACT_BACKOFF_SECS 10 /* after a failed compaction */
#define SNAP_CHUNK (1u << 20)   /* snapshot write size */

static const char *const sync_names[] = { "always", "everysec", "no" };

/* A growing byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
};

/* Someone waiting for the commit barrier. */
struct barrier_wait {
	void (*fn)(void *arg);
	void *arg;
	uint64_t need; /* the last record it may depend on */
};

/* A connection that read what an unwritten record changed (persist_read):
 * its output waits for that record, at its next persist_barrier(). */
struct taint {
	struct conn *conn;
	uint64_t need;
};

static struct {
	bool on;               /* persistence active */
	bool loading;          /* replaying: persist_log() does nothing */
	char *path, *log_path, *tmp_path, *logtmp_path; /* for messages */
	const char *name;      /* the names in the directory (basenames) */
	char *log_name, *tmp_name, *logtmp_name;        /* PATH.log.tmp: a log being shrunk */
	int log_fd, dir_fd;    /* every file is opened relative to dir_fd */
	enum state_sync sync;
	uint64_t log_max;
	const char *fail_flag; /* MPSUP_TEST_FAIL_WRITES */

	struct buf pending;    /* framed records not yet written */
	uint64_t seq;          /* last record appended */
	uint64_t attempted;    /* last record a commit tried to write */
	uint64_t committed;    /* last record written (and synced per mode) */
	uint64_t log_bytes, log_records;
	struct event *ev_commit, *ev_retry;
	bool commit_scheduled;

	uint64_t snapshot_bytes;
	double last_snapshot;  /* wall clock, 0 = never */
	double last_snapshot_secs;
	unsigned long snapshots;
	double compact_after;  /* monotonic: no compaction before */

	/* The snapshot child (see "snapshots in a child process"). */
	pid_t snap_pid;        /* 0: none running */
	int snap_pidfd;
	struct event *ev_snap;
	uint64_t snap_seq;     /* the last record it holds */
	uint64_t snap_log_off; /* the log's size at its fork */
	double snap_started;   /* monotonic */
	unsigned long snap_failures;
	const char *snap_hold; /* MPSUP_TEST_SNAPSHOT_HOLD */

	bool failed;           /* refusing mutations */
	char error[300];       /* why, while failed */
	char last_error[300];
	unsigned long errors;
	double last_retry;     /* monotonic */

	struct barrier_wait *waits;
	size_t n_waits, cap_waits;

	/* After a failed commit (committed < attempted): the names of the
	 * objects the unwritten records change, or all (unwritten_all). */
	json_t *unwritten;
	bool unwritten_all;
	bool hold_all;         /* a taint could not be kept: hold every answer */
	struct taint *taints;
	size_t n_taints, cap_taints;

	/* everysec thread; mu guards dirty, stop, sync_err, last_fsync, log_fd
	 * changes and the two fds below */
	pthread_t thread;
	int syncing_fd;        /* the fd it is syncing now, or -1 */
	int retired_fd;        /* a replaced log fd it closes after syncing */
	bool thread_on, stop, dirty;
	int sync_err;          /* errno of a failed background fsync */
	double last_fsync;     /* wall clock, 0 = never */
	uint64_t log_fsyncs;   /* fdatasyncs of the log that succeeded */
	pthread_mutex_t mu;
	pthread_cond_t cv;
} P = { .log_fd = -1, .dir_fd = -1, .snap_pidfd = -1, .syncing_fd = -1, .retired_fd = -1,
	.mu = PTHREAD_MUTEX_INITIALIZER };

/* --- small helpers ------------------------------------------------------------ */

/* Make room for n more bytes; -ENOMEM. */
static int buf_reserve(struct buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->cap - b->len >= n)
		return 0;
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	if (!(p = realloc(b->p, cap)))
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

/* Fault injection for tests: while the file named by MPSUP_TEST_FAIL_WRITES
 * exists, writes and syncs of the state files fail with ENOSPC. */
static bool fault(void)
{
	return P.fail_flag && access(P.fail_flag, F_OK) == 0;
}

/* write() all of p; 0 or -errno. */
static int write_all(int fd, const void *p, size_t n)
{
	const char *s = p;

	if (fault())
		return -ENOSPC;
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fdatasync; 0 or -errno. */
static int sync_fd(int fd)
{
	if (fault())
		return -ENOSPC;
	return fdatasync(fd) < 0 ? -errno : 0;
}

/* Read all of the file open as fd (from offset 0). */
static int read_fd(int fd, struct buf *ret)
{
	struct stat st;
	off_t off = 0;

	*ret = (struct buf){ 0 };
	if (fstat(fd, &st) < 0)
		return -errno;
	if (buf_reserve(ret, (size_t)st.st_size + 1) < 0)
		return -ENOMEM;
	for (;;) {
		ssize_t n;
		if (ret->cap - ret->len < 4096 && buf_reserve(ret, 65536) < 0) {
			buf_free(ret);
			return -ENOMEM;
		}
		n = pread(fd, ret->p + ret->len, ret->cap - ret->len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			buf_free(ret);
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
		snprintf(err, errlen,
			 "%s has %lu hard links; refusing to use it (it may be another file's name)",
			 path, (unsigned long)st->st_nlink);
		return -EMLINK;
	}
	if (st->st_uid != geteuid()) {
		snprintf(err, errlen, "%s is owned by uid %lu, not by mpsupd's user (uid %lu); "
			 "refusing to use it", path, (unsigned long)st->st_uid,
			 (unsigned long)geteuid());
		return -EPERM;
	}
	return 0;
}

/* Open name in the state directory (path for messages) without following a
 * link and without blocking on a FIFO, then check what it is. Returns the fd,
 * -ENOENT silently when it does not exist (and flags cannot create it), or
 * -errno with err. */
static int file_open(const char *name, const char *path, int flags, char *err, size_t errlen)
{
	struct stat st;
	int fd, fl, r;

	fd = openat(P.dir_fd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
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

	if (fstatat(P.dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
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
	if (unlinkat(P.dir_fd, name, 0) < 0 && errno != ENOENT) {
		r = -errno;
		snprintf(err, errlen, "cannot remove %s: %s", path, strerror(-r));
		return r;
	}
	return 0;
}

/* Open directory dir one component at a time, none of them a symbolic
 * link (what openat2's RESOLVE_NO_SYMLINKS does, on any kernel, and naming
 * the culprit). Returns the fd or -errno with err. */
static int dir_open_nofollow(const char *dir, char *err, size_t errlen)
{
	char *copy = strdup(dir), *comp, *save = NULL;
	int fd, r = 0;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fd = open(dir[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		r = -errno;
	for (comp = strtok_r(copy, "/", &save); fd >= 0 && comp; comp = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;

		if (next < 0) {
			r = -errno;
			if (fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
				snprintf(err, errlen,
					 "state directory %s: component '%s' is a symbolic link; refusing "
					 "it (name the real directory, or set state_dir_check = no)",
					 dir, comp);
				r = -ELOOP;
			}
		}
		close(fd);
		fd = next;
	}
	free(copy);
	if (fd < 0 && !err[0])
		snprintf(err, errlen, "state_file: cannot open the directory %s: %s", dir,
			 strerror(-r));
	return fd < 0 ? r : fd;
}

/* Open the state directory into P.dir_fd; with check, refuse one reached
 * through a symbolic link, or that another user could write (like sshd's
 * StrictModes). -errno with err. */
static int dir_open(const char *dir, bool check, char *err, size_t errlen)
{
	struct stat st;

	err[0] = 0;
	if (check) {
		P.dir_fd = dir_open_nofollow(dir, err, errlen);
	} else if ((P.dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		P.dir_fd = -errno;
		snprintf(err, errlen, "state_file: cannot open the directory %s: %s", dir,
			 strerror(errno));
	}
	if (P.dir_fd < 0) {
		int r = P.dir_fd;
		P.dir_fd = -1;
		return r;
	}
	if (!check)
		return 0;
	if (fstat(P.dir_fd, &st) < 0) {
		int r = -errno;
		snprintf(err, errlen, "cannot stat the state directory %s: %s", dir, strerror(-r));
		return r;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errlen,
			 "state directory %s is owned by uid %lu, not by mpsupd's user (uid %lu) or "
			 "root; refusing it (or set state_dir_check = no)", dir,
			 (unsigned long)st.st_uid, (unsigned long)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "state directory %s is writable by %s (mode %04o): another user could plant "
			 "links at the state files; refusing it (chmod go-w, or set state_dir_check = "
			 "no)", dir, st.st_mode & S_IWOTH ? "other users" : "its group",
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* --- CRC32C and frames ---------------------------------------------------------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Tables for slicing-by-8 over the reflected Castagnoli polynomial. */
static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same with the SSE4.2 crc32 instruction (the Castagnoli polynomial). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
							     size_t len)
{
	uint64_t c = ~crc;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	for (; len; p++, len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p);
	return ~(uint32_t)c;
}
#endif

uint32_t persist_crc32c(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
	static int hw = -1;

	if (hw < 0)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (hw)
		return crc32c_hw(crc, data, len);
#endif
	return persist_crc32c_sw(crc, data, len);
}

uint32_t persist_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
			      (uint32_t)p[7] << 24;
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void persist_frame(unsigned char *hdr, const void *payload, uint32_t len)
{
	put_le32(hdr, len);
	put_le32(hdr + 4, persist_crc32c(0, payload, len));
	put_le32(hdr + 8, persist_crc32c(0, hdr, 8));
}

/* Is there a good frame at off? Its payload length in ret_len. */
static bool frame_ok(const unsigned char *p, size_t size, size_t off, uint32_t *ret_len)
{
	uint32_t len;

	if (size - off < PERSIST_HDR)
		return false;
	p += off;
	if (persist_crc32c(0, p, 8) != get_le32(p + 8))
		return false;
	len = get_le32(p);
	if (len > PERSIST_RECORD_MAX || size - off - PERSIST_HDR < len ||
	    persist_crc32c(0, p + PERSIST_HDR, len) != get_le32(p + 4))
		return false;
	*ret_len = len;
	return true;
}

void persist_scan(const char *buf, size_t len, persist_record_fn *fn, void *arg,
		  struct persist_scan *ret)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t off = 0;
	uint32_t n;

	*ret = (struct persist_scan){ .end = PERSIST_SCAN_OK };
	while (off < len) {
		if (!frame_ok(p, len, off, &n)) {
			/* Damage. A torn write only ever loses the end of the
			 * file: if a good frame starts anywhere after this
			 * point, something else happened. */
			ret->bad_off = off;
			ret->end = PERSIST_SCAN_TORN;
			snprintf(ret->why, sizeof(ret->why), "bad or incomplete record (%zu bytes left)",
				 len - off);
			for (size_t o = off + 1; o + PERSIST_HDR <= len; o++) {
				uint32_t m;
				if (frame_ok(p, len, o, &m)) {
					ret->end = PERSIST_SCAN_CORRUPT;
					snprintf(ret->why, sizeof(ret->why),
						 "bad record, with a good record at offset %zu after it", o);
					break;
				}
			}
			return;
		}
		if (fn && fn(buf + off + PERSIST_HDR, n, off, arg, ret->why, sizeof(ret->why)) < 0) {
			ret->bad_off = off;
			ret->end = PERSIST_SCAN_CORRUPT;
			return;
		}
		off += PERSIST_HDR + n;
		ret->records++;
		ret->good_end = off;
	}
}

/* Append a frame holding the payload built at b->p[start + PERSIST_HDR..]. */
static void frame_close(struct buf *b, size_t start)
{
	persist_frame((unsigned char *)b->p + start, b->p + start + PERSIST_HDR,
		      (uint32_t)(b->len - start - PERSIST_HDR));
}

/* Dump v compactly at the end of b; -ENOMEM. */
static int buf_dump(struct buf *b, json_t *v)
{
	size_t n = json_dumpb(v, b->p + b->len, b->cap - b->len, JSON_COMPACT | JSON_ENCODE_ANY);

	if (n > b->cap - b->len) {
		if (buf_reserve(b, n) < 0)
			return -ENOMEM;
		n = json_dumpb(v, b->p + b->len, b->cap - b->len, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	if (n == 0)
		return -EINVAL;
	b->len += n;
	return 0;
}

/* Append one framed JSON record to b; -errno. */
static int buf_record(struct buf *b, json_t *v)
{
	size_t start = b->len;
	int r;

	if (buf_reserve(b, PERSIST_HDR + 256) < 0)
		return -ENOMEM;
	b->len += PERSIST_HDR;
	if ((r = buf_dump(b, v)) < 0 || b->len - start - PERSIST_HDR > PERSIST_RECORD_MAX) {
		b->len = start;
		return r < 0 ? r : -E2BIG;
	}
	frame_close(b, start);
	return 0;
}

/* --- the barrier ------------------------------------------------------------------- */

/* The taint of connection c: its index, or -1. */
static ssize_t taint_find(const struct conn *c)
{
	for (size_t i = 0; i < P.n_taints; i++)
		if (P.taints[i].conn == c)
			return (ssize_t)i;
	return -1;
}

static void taint_closed(struct conn *c, void *arg);

/* Forget taint i (and its close hook). */
static void taint_drop(size_t i)
{
	struct conn *c = P.taints[i].conn;

	P.taints[i] = P.taints[--P.n_taints];
	conn_remove_close_hook(c, taint_closed, NULL);
}

/* A tainted connection closed before its next answer. */
static void taint_closed(struct conn *c, void *arg)
{
	ssize_t t = taint_find(c);

	(void)arg;
	if (t >= 0)
		taint_drop((size_t)t);
}

/* Forget every taint (persistence closes). */
static void taints_clear(void)
{
	while (P.n_taints)
		taint_drop(P.n_taints - 1);
	free(P.taints);
	P.taints = NULL;
	P.cap_taints = 0;
}

/* Does a read of name (NULL: of the whole namespace) depend on a record
 * that a failed commit left unwritten? */
static bool read_is_dirty(const char *name)
{
	if (P.committed >= P.attempted)
		return false; /* no failed commit left anything unwritten */
	if (P.unwritten_all || !P.unwritten || !name)
		return true;
	return json_object_get(P.unwritten, name) != NULL;
}

/* One unwritten record: the object it changed is dirty. */
static int dirty_record(const char *p, size_t len, size_t off, void *arg, char *why,
			size_t whylen)
{
	json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	const char *name = json_string_value(json_object_get(json_array_get(v, 2), "name"));

	(void)off;
	(void)arg;
	if (!name || json_object_set_new(P.unwritten, name, json_true()) < 0) {
		snprintf(why, whylen, "no name");
		P.unwritten_all = true;
	}
	json_decref(v);
	return P.unwritten_all ? -1 : 0;
}

/* A commit failed: remember what the records it could not write (all of
 * P.pending) touch, for persist_read(). */
static void dirty_mark(void)
{
	struct persist_scan sc;

	if (!P.unwritten && !(P.unwritten = json_object()))
		P.unwritten_all = true;
	if (!P.unwritten_all)
		persist_scan(P.pending.p, P.pending.len, dirty_record, NULL, &sc);
}

/* Everything is written: nothing is dirty. */
static void dirty_clear(void)
{
	if (P.unwritten)
		json_object_clear(P.unwritten);
	P.unwritten_all = P.hold_all = false;
}

void persist_read(struct request *r)
{
	const char *name;
	struct taint *t;
	ssize_t i;

	if (!P.on || !r->conn)
		return;
	name = json_string_value(json_object_get(r->params, "name"));
	if (!read_is_dirty(name))
		return;
	if ((i = taint_find(r->conn)) >= 0) {
		P.taints[i].need = P.attempted;
		return;
	}
	if (P.n_taints == P.cap_taints) {
		size_t cap = P.cap_taints ? P.cap_taints * 2 : 16;
		if (!(t = realloc(P.taints, cap * sizeof(*t)))) {
			/* Cannot remember this connection: hold every one. */
			log_error("persist", "out of memory holding a read; holding every answer");
			P.hold_all = true;
			return;
		}
		P.taints = t;
		P.cap_taints = cap;
	}
	/* The hook first: without memory for it the connection is closed,
	 * and a taint must never point at a closed connection. */
	conn_add_close_hook(r->conn, taint_closed, NULL);
	if (r->conn->dead)
		return;
	P.taints[P.n_taints++] = (struct taint){ r->conn, P.attempted };
}

bool persist_barrier(void (*fn)(void *arg), void *arg)
{
	struct barrier_wait *w;
	uint64_t need = 0;
	ssize_t t;

	if (!P.on)
		return false;
	/* Records of this pass that no commit has tried to write yet: every
	 * answer waits for them (group commit). */
	if (P.seq != P.attempted || P.hold_all)
		need = P.seq;
	/* arg is the connection (conn_flush): an answer of it read an object
	 * that an unwritten record of a failed commit changed. */
	if ((t = taint_find(arg)) >= 0) {
		if (P.taints[t].need > need)
			need = P.taints[t].need;
		taint_drop((size_t)t);
	}
	if (need <= P.committed)
		return false;
	if (P.n_waits == P.cap_waits) {
		size_t cap = P.cap_waits ? P.cap_waits * 2 : 64;
		if (!(w = realloc(P.waits, cap * sizeof(*w)))) {
			/* Cannot remember it: commit now instead. After a
			 * failure that does not let it go: it stays held
			 * (without a wake-up) rather than show unwritten
			 * state. */
			persist_commit();
			if (need <= P.committed)
				return false;
			/* Not shown, never acknowledged, and no wake-up: the
			 * connection goes (conn_flush sees it closed). */
			log_error("persist", "out of memory holding an answer; closing its client");
			conn_close(arg);
			return true;
		}
		P.waits = w;
		P.cap_waits = cap;
	}
	P.waits[P.n_waits++] = (struct barrier_wait){ fn, arg, need };
	return true;
}

void persist_barrier_cancel(void (*fn)(void *arg), void *arg)
{
	for (size_t i = 0; i < P.n_waits; i++)
		if (P.waits[i].fn == fn && P.waits[i].arg == arg)
			P.waits[i].fn = NULL;
}

/* Let go everyone whose records are committed. */
static void barrier_release(void)
{
	size_t i, j;

	/* By index: a callback may add (never while nothing is pending) or
	 * cancel entries. */
	for (i = 0; i < P.n_waits; i++) {
		struct barrier_wait w = P.waits[i];
		if (w.fn && w.need <= P.committed) {
			P.waits[i].fn = NULL;
			w.fn(w.arg);
		}
	}
	for (i = j = 0; i < P.n_waits; i++)
		if (P.waits[i].fn)
			P.waits[j++] = P.waits[i];
	P.n_waits = j;
	for (i = P.n_taints; i-- > 0;)
		if (P.taints[i].need <= P.committed)
			taint_drop(i);
}

/* --- failure and recovery ----------------------------------------------------------- */

static int snapshot_write(void);

/* Stop accepting mutations: what failed, with -errno. */
static void fail(const char *what, int err)
{
	struct timeval tv = tv_from_secs(RETRY_SECS);

	P.errors++;
	snprintf(P.last_error, sizeof(P.last_error), "%s %s failed: %s", what, P.log_path,
		 strerror(-err));
	if (P.failed)
		return;
	P.failed = true;
	snprintf(P.error, sizeof(P.error), "%s", P.last_error);
	log_error("persist", "%s; refusing mutations of persisted objects until it can be written",
		  P.last_error);
	if (P.ev_retry)
		event_add(P.ev_retry, &tv);
}

/* A background fsync failed: that is a failure too. */
static void check_thread(void)
{
	int err;

	if (!__atomic_load_n(&P.sync_err, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&P.mu);
	err = P.sync_err;
	P.sync_err = 0;
	pthread_mutex_unlock(&P.mu);
	if (err)
		fail("fsync of", -err);
}

/* Try to get out of the failed state by writing a whole snapshot. */
static void try_recover(void)
{
	int r;

	P.last_retry = now_mono();
	if ((r = snapshot_write()) < 0) {
		snprintf(P.last_error, sizeof(P.last_error), "snapshot %s failed: %s", P.path,
			 strerror(-r));
		log_debug("persist", "still failing: %s", P.last_error);
		return;
	}
	P.failed = false;
	P.error[0] = 0;
	if (P.ev_retry)
		event_del(P.ev_retry);
	log_info("persist", "state written again to %s; accepting mutations", P.path);
	barrier_release();
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = tv_from_secs(RETRY_SECS);

	(void)fd;
	(void)what;
	(void)arg;
	if (!P.failed)
		return;
	try_recover();
	if (P.failed)
		event_add(P.ev_retry, &tv);
}

bool persist_writable(struct request *r)
{
	if (!P.on)
		return true;
	check_thread();
	if (!P.failed)
		return true;
	if (now_mono() - P.last_retry >= RETRY_MIN_SECS)
		try_recover();
	if (!P.failed)
		return true;
	request_error(r, MPSUP_E_INTERNAL,
		      "shared state cannot be persisted (%s); mutations are refused until it can",
		      P.error);
	return false;
}

/* --- appending and committing ---------------------------------------------------------- */

/* Append a record [SEQ,"cmd",PARAMS] with PARAMS as text (line) or dumped
 * from params. */
static void log_append(const char *cmd, json_t *params, const char *line, size_t line_len)
{
	struct buf *b = &P.pending;
	size_t start = b->len, cmd_len = strlen(cmd);
	char num[24], *d = num + sizeof(num);
	uint64_t seq = P.seq + 1;

	if (buf_reserve(b, PERSIST_HDR + sizeof(num) + cmd_len + line_len + 8) < 0)
		goto oom;
	do /* no printf on this path */
		*--d = (char)('0' + seq % 10);
	while ((seq /= 10));
	b->len += PERSIST_HDR;
	b->p[b->len++] = '[';
	memcpy(b->p + b->len, d, (size_t)(num + sizeof(num) - d));
	b->len += (size_t)(num + sizeof(num) - d);
	b->p[b->len++] = ',';
	b->p[b->len++] = '"';
	memcpy(b->p + b->len, cmd, cmd_len);
	b->len += cmd_len;
	b->p[b->len++] = '"';
	b->p[b->len++] = ',';
	if (line) {
		memcpy(b->p + b->len, line, line_len);
		b->len += line_len;
	} else if (buf_dump(b, params) < 0 || buf_reserve(b, 1) < 0) {
		b->len = start;
		goto oom;
	}
	b->p[b->len++] = ']';
	frame_close(b, start);
	P.seq++;
	if (!P.commit_scheduled) {
		P.commit_scheduled = true;
		event_active(P.ev_commit, EV_TIMEOUT, 0);
	}
	return;
oom:
	/* The mutation is done but cannot be logged: do as for a failed
	 * write (its answer waits, the recovery snapshot will carry it). */
	P.seq++;
	P.unwritten_all = true; /* its object is not known */
	fail("recording a mutation for", -ENOMEM);
	if (!P.commit_scheduled) {
		P.commit_scheduled = true;
		event_active(P.ev_commit, EV_TIMEOUT, 0);
	}
}

void persist_log(const char *cmd, json_t *params)
{
	if (P.on && !P.loading)
		log_append(cmd, params, NULL, 0);
}

void persist_log_request(struct request *r)
{
	if (P.on && !P.loading)
		log_append(r->cmd->name, r->params, r->line, r->line ? r->line_len : 0);
}

static int snapshot_fork(void);

/* Compact when the log outgrew both its limit and the last snapshot: in a
 * child, one at a time. */
static void maybe_compact(void)
{
	int r;

	if (P.snap_pid || P.failed || !P.log_max || P.log_bytes <= P.log_max ||
	    P.log_bytes <= P.snapshot_bytes || now_mono() < P.compact_after)
		return;
	r = snapshot_fork();
	if (r == -ENOSYS) {
		r = persist_snapshot(); /* no pidfds (Linux < 5.3): in the foreground */
	} else if (r < 0) {
		snprintf(P.last_error, sizeof(P.last_error), "snapshot child: %s", strerror(-r));
		log_warn("persist", "cannot start a snapshot child: %s", strerror(-r));
	}
	if (r < 0)
		P.compact_after = now_mono() + COMPACT_BACKOFF_SECS;
}

void persist_commit(void)
{
	uint64_t upto = P.seq;
	int r;

	P.commit_scheduled = false;
	if (!P.on || P.seq == P.attempted)
		return;
	P.attempted = upto;
	if (P.failed) {
		/* Records logged before the failure was seen in this pass (an
		 * everysec fsync error found mid-pass), or an unloggable one:
		 * they wait for the recovery, and reads of them with them. */
		dirty_mark();
		if (now_mono() - P.last_retry >= RETRY_MIN_SECS)
			try_recover();
		return;
	}
	r = write_all(P.log_fd, P.pending.p, P.pending.len);
	if (r < 0) {
		dirty_mark();
		fail("write to", r);
		return;
	}
	P.log_bytes += P.pending.len;
	P.log_records += upto - P.committed;
	if (P.sync == STATE_SYNC_ALWAYS) {
		if ((r = sync_fd(P.log_fd)) < 0) {
			/* Written, not synced: not committed either. The
			 * records stay in pending for dirty_mark() only (the
			 * recovery snapshot carries them). */
			dirty_mark();
			fail("fsync of", r);
			return;
		}
		pthread_mutex_lock(&P.mu);
		P.last_fsync = now_wall();
		P.log_fsyncs++;
		pthread_mutex_unlock(&P.mu);
	} else if (P.thread_on) {
		pthread_mutex_lock(&P.mu);
		P.dirty = true;
		pthread_mutex_unlock(&P.mu);
	}
	P.pending.len = 0;
	P.committed = upto;
	barrier_release();
	maybe_compact();
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	persist_commit();
}

/* --- the everysec thread --------------------------------------------------------------- */

static void *sync_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&P.mu);
	while (!P.stop) {
		struct timespec ts;
		int fd, r;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		while (!P.stop && pthread_cond_timedwait(&P.cv, &P.mu, &ts) != ETIMEDOUT)
			;
		if (P.stop || !P.dirty)
			continue;
		P.dirty = false;
		fd = P.syncing_fd = P.log_fd;
		pthread_mutex_unlock(&P.mu);
		r = sync_fd(fd);
		pthread_mutex_lock(&P.mu);
		P.syncing_fd = -1;
		if (P.retired_fd == fd) {
			/* replaced meanwhile (log_fd_switch): its records were
			 * copied to the new log and synced there */
			close(fd);
			P.retired_fd = -1;
			r = 0;
		}
		if (r < 0)
			__atomic_store_n(&P.sync_err, -r, __ATOMIC_RELEASE);
		else {
			P.last_fsync = now_wall();
			P.log_fsyncs++;
		}
	}
	pthread_mutex_unlock(&P.mu);
	return NULL;
}

static int thread_start(void)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int r;

	if (P.thread_on)
		return 0;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&P.cv, &ca);
	pthread_condattr_destroy(&ca);
	P.stop = false;
	/* Signals belong to the event loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&P.thread, NULL, sync_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		pthread_cond_destroy(&P.cv);
		return -r;
	}
	P.thread_on = true;
	return 0;
}

static void thread_stop(void)
{
	if (!P.thread_on)
		return;
	pthread_mutex_lock(&P.mu);
	P.stop = true;
	pthread_cond_signal(&P.cv);
	pthread_mutex_unlock(&P.mu);
	pthread_join(P.thread, NULL);
	pthread_cond_destroy(&P.cv);
	P.thread_on = false;
	check_thread();
}

/* --- snapshots ---------------------------------------------------------------------------- */

struct snap_ctx {
	struct buf b;
	int fd;
	int err;
	size_t count;
};

/* Count the persisted objects. */
static void snap_count(struct obj *o, void *arg)
{
	if (o->type->dump)
		++*(size_t *)arg;
}

/* One object into the snapshot (persisted types only). */
static void snap_obj(struct obj *o, void *arg)
{
	struct snap_ctx *s = arg;
	json_t *rec, *opts;
	int r;

	if (s->err || !o->type->dump)
		return;
	opts = o->type->dump(o);
	rec = opts ? json_pack("[s, s, o]", o->name, o->type->name, opts) : NULL;
	if (!rec) {
		s->err = -ENOMEM;
		return;
	}
	r = buf_record(&s->b, rec);
	json_decref(rec);
	if (r < 0) {
		s->err = r;
		return;
	}
	s->count++;
	if (s->b.len >= SNAP_CHUNK) {
		s->err = write_all(s->fd, s->b.p, s->b.len);
		s->b.len = 0;
	}
}

/* Create PATH.tmp afresh (never through a link planted at the name). */
static int tmp_create(void)
{
	int fd;

	if (unlinkat(P.dir_fd, P.tmp_name, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(P.dir_fd, P.tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	return fd;
}

/* Write the objects as they are now, the state after record seq, to fd and
 * fdatasync it; its size in ret_bytes. Touches nothing but memory and fd:
 * the snapshot child runs it too. */
static int snapshot_body(int fd, uint64_t seq, uint64_t *ret_bytes)
{
	struct snap_ctx s = { .fd = fd };
	size_t count = 0;
	off_t end;
	json_t *v;

	obj_foreach(snap_count, &count);
	v = json_pack("{s:i, s:I, s:I, s:f}", "mpsup_snapshot", 1, "seq", (json_int_t)seq,
		      "objects", (json_int_t)count, "time", now_wall());
	s.err = v ? buf_record(&s.b, v) : -ENOMEM;
	json_decref(v);
	if (!s.err)
		obj_foreach(snap_obj, &s);
	if (!s.err) {
		v = json_pack("{s:I}", "end", (json_int_t)s.count);
		s.err = v ? buf_record(&s.b, v) : -ENOMEM;
		json_decref(v);
	}
	if (!s.err && s.b.len)
		s.err = write_all(fd, s.b.p, s.b.len);
	buf_free(&s.b);
	if (!s.err)
		s.err = sync_fd(fd);
	if (!s.err && (end = lseek(fd, 0, SEEK_END)) < 0)
		s.err = -errno;
	if (!s.err)
		*ret_bytes = (uint64_t)end;
	return s.err;
}

/* PATH.tmp (complete and synced) becomes PATH: rename, then sync the
 * directory. Before that sync the old snapshot may come back after a crash,
 * so the log must stay whole until it returned 0. */
static int snapshot_install(void)
{
	if (renameat(P.dir_fd, P.tmp_name, P.dir_fd, P.name) < 0) {
		int r = -errno;
		unlinkat(P.dir_fd, P.tmp_name, 0);
		return r;
	}
	return sync_fd(P.dir_fd);
}

/* A snapshot of bytes, holding every record up to seq, is in place. */
static void snapshot_done(uint64_t bytes)
{
	P.snapshot_bytes = bytes;
	P.last_snapshot = now_wall();
	P.snapshots++;
}

static void snapshot_abort(const char *why);

/* Write the whole state to PATH atomically and empty the log, here and
 * now (start-up, shutdown, recovery from a failed write). */
static int snapshot_write(void)
{
	uint64_t seq = P.seq, bytes = 0;
	int fd, r;

	snapshot_abort("a snapshot is written in the foreground"); /* same PATH.tmp */
	if ((fd = tmp_create()) < 0)
		return fd;
	r = snapshot_body(fd, seq, &bytes);
	if (close(fd) < 0 && !r)
		r = -errno;
	if (r < 0) {
		unlinkat(P.dir_fd, P.tmp_name, 0);
		return r;
	}
	/* Every record of the log is <= seq: a reader of the new snapshot
	 * skips them, so the log is emptied only once the snapshot is durable. */
	if ((r = snapshot_install()) < 0)
		return r;
	if (ftruncate(P.log_fd, 0) < 0)
		return -errno;
	P.log_bytes = 0;
	P.log_records = 0;
	P.pending.len = 0;
	P.attempted = P.committed = seq;
	dirty_clear();
	snapshot_done(bytes);
	return 0;
}

int persist_snapshot(void)
{
	double t0 = now_mono();
	int r;

	if (!P.on)
		return -EINVAL;
	if (P.failed)
		return -EIO;
	r = snapshot_write();
	if (r < 0) {
		log_warn("persist", "snapshot %s failed: %s (the log is kept)", P.path, strerror(-r));
		return r;
	}
	P.last_snapshot_secs = now_mono() - t0;
	log_info("persist", "snapshot of %u objects written to %s (%" PRIu64 " bytes, %.3f s)",
		 obj_count(), P.path, P.snapshot_bytes, P.last_snapshot_secs);
	barrier_release();
	return 0;
}

/* --- snapshots in a child process ---------------------------------------------------------- */

/* Compaction's snapshots are written by a child: see "Snapshots" at the top. */

/* The child: write the snapshot to fd and leave (exit status: 0 or errno). */
static __attribute__((noreturn)) void snapshot_child(int fd, uint64_t seq, pid_t parent)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	uint64_t bytes;
	sigset_t none;
	int r, hi, dir;

	/* Die with the daemon: a stray child would keep PATH.tmp busy. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(ESRCH);
	/* The loop's signal handlers write to its (shared) socketpair. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Background work: on a busy machine the loop's CPU comes first (nice,
	 * not SCHED_IDLE: a saturated machine must not starve it for hours
	 * while the log grows). */
	setpriority(PRIO_PROCESS, 0, getpriority(PRIO_PROCESS, 0) + 10);
	/* Hold nothing of the daemon's but the snapshot (fd 3) and the
	 * directory (fd 4): not clients' sockets, workers' pipes, nor the log
	 * (its lock must go with the daemon). */
	hi = fd > P.dir_fd ? fd : P.dir_fd;
	if ((fd = fcntl(fd, F_DUPFD, hi + 1)) < 0 || (dir = fcntl(P.dir_fd, F_DUPFD, hi + 1)) < 0 ||
	    dup2(fd, 3) < 0 || dup2(dir, 4) < 0)
		_exit(errno ? errno : EIO);
	close_range(5, ~0u, 0);
	P.dir_fd = 4;
	r = snapshot_body(3, seq, &bytes);
	/* Tests: hold the finished snapshot while this file exists. */
	while (P.snap_hold && access(P.snap_hold, F_OK) == 0)
		usleep(10000);
	/* Install it here: the whole log is still there (records <= seq are
	 * skipped after it), and replacing a large file costs the loop nothing. */
	if (r == 0)
		r = snapshot_install();
	_exit(r < 0 ? (-r & 0xff ? -r & 0xff : EIO) : 0);
}

static void snap_child_cb(evutil_socket_t fd, short what, void *arg);
static void snap_child_reaped(pid_t pid, int st, void *arg);

/* Start a snapshot in a child; 0, or -errno (-ENOSYS: no pidfds). */
static int snapshot_fork(void)
{
	struct stat st;
	pid_t pid, self = getpid();
	int fd, r;

	if ((fd = tmp_create()) < 0)
		return fd;
	if (fstat(P.log_fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	P.snap_seq = P.seq;
	P.snap_log_off = (uint64_t)st.st_size;
	P.snap_started = now_mono();
	if ((pid = fork()) < 0) {
		r = -errno;
		goto fail;
	}
	if (pid == 0)
		snapshot_child(fd, P.snap_seq, self);
	close(fd);
	fd = -1;
	P.snap_pid = pid;
	daemon_child_watch(pid, snap_child_reaped, NULL); /* one child at a time: room */
	P.snap_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (P.snap_pidfd < 0) {
		r = -errno;
		snapshot_abort(NULL);
		return r;
	}
	P.ev_snap = event_new(daemon_g.base, P.snap_pidfd, EV_READ, snap_child_cb, NULL);
	if (!P.ev_snap || event_add(P.ev_snap, NULL) < 0) {
		snapshot_abort(NULL);
		return -ENOMEM;
	}
	log_info("persist", "snapshot of %u objects in child %d (up to record %" PRIu64 ")",
		 obj_count(), (int)pid, P.snap_seq);
	return 0;
fail:
	close(fd);
	unlinkat(P.dir_fd, P.tmp_name, 0);
	return r;
}

/* Forget the child (reaped or never started). */
static void snap_forget(void)
{
	if (P.ev_snap)
		event_free(P.ev_snap);
	P.ev_snap = NULL;
	if (P.snap_pidfd >= 0)
		close(P.snap_pidfd);
	P.snap_pidfd = -1;
	if (P.snap_pid)
		daemon_child_unwatch(P.snap_pid);
	P.snap_pid = 0;
}

/* Kill and reap a running snapshot child; its PATH.tmp goes. why (NULL:
 * quietly) is logged. */
static void snapshot_abort(const char *why)
{
	int st;

	if (!P.snap_pid)
		return;
	kill(P.snap_pid, SIGKILL); /* not reaped yet: the pid is still ours */
	while (waitpid(P.snap_pid, &st, 0) < 0 && errno == EINTR)
		;
	if (why)
		log_info("persist", "snapshot child %d stopped: %s", (int)P.snap_pid, why);
	snap_forget();
	unlinkat(P.dir_fd, P.tmp_name, 0);
}

/* Copy the log from off to its end into PATH.log.tmp; the new fd or -errno. */
static int log_tail_copy(uint64_t off, uint64_t *ret_bytes)
{
	loff_t in = (loff_t)off;
	struct stat st;
	uint64_t left;
	int fd, r = 0;

	if (unlinkat(P.dir_fd, P.logtmp_name, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(P.dir_fd, P.logtmp_name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	if (fstat(P.log_fd, &st) < 0 || (uint64_t)st.st_size < off) {
		r = errno ? -errno : -EIO;
		goto out;
	}
	for (left = (uint64_t)st.st_size - off; left > 0 && !r;) {
		ssize_t n = copy_file_range(P.log_fd, &in, fd, NULL, left, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			      errno == EOPNOTSUPP)) {
			/* no in-kernel copy here: read and write */
			char *b = malloc(SNAP_CHUNK);
			if (!b)
				r = -ENOMEM;
			while (b && left > 0 && !r) {
				n = pread(P.log_fd, b, left < SNAP_CHUNK ? left : SNAP_CHUNK, in);
				if (n <= 0)
					r = n < 0 ? -errno : -EIO;
				else if (!(r = write_all(fd, b, (size_t)n))) {
					in += n;
					left -= (uint64_t)n;
				}
			}
			free(b);
		} else if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
		} else {
			left -= (uint64_t)n;
		}
	}
	if (!r)
		r = sync_fd(fd);
	if (!r && flock(fd, LOCK_EX | LOCK_NB) < 0)
		r = -errno;
	if (!r && fcntl(fd, F_SETFL, O_APPEND) < 0)
		r = -errno;
out:
	if (r < 0) {
		close(fd);
		unlinkat(P.dir_fd, P.logtmp_name, 0);
		return r;
	}
	*ret_bytes = (uint64_t)st.st_size - off;
	return fd;
}

static void *closer_main(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

/* Close fd in a thread: the last close of a large unlinked file frees its
 * blocks and drops its cached pages, which takes a while. */
static void close_later(int fd)
{
	pthread_attr_t a;
	pthread_t t;
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* signals belong to the loop */
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, closer_main, (void *)(intptr_t)fd) != 0)
		close(fd);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Use fd as the log from now on (the fsync thread may be syncing the old
 * one: it closes it then). */
static void log_fd_switch(int fd)
{
	int old;

	pthread_mutex_lock(&P.mu);
	old = P.log_fd;
	P.log_fd = fd;
	if (P.syncing_fd == old) {
		P.retired_fd = old;
		old = -1;
	}
	pthread_mutex_unlock(&P.mu);
	if (old >= 0)
		close_later(old);
}

/* Shrink the log to what was written since the child's fork. */
static int log_shrink(void)
{
	uint64_t bytes = 0;
	int fd = log_tail_copy(P.snap_log_off, &bytes), r;

	if (fd < 0)
		return fd;
	if (renameat(P.dir_fd, P.logtmp_name, P.dir_fd, P.log_name) < 0) {
		r = -errno;
		close(fd);
		unlinkat(P.dir_fd, P.logtmp_name, 0);
		return r;
	}
	log_fd_switch(fd);
	P.log_bytes = bytes;
	P.log_records = P.committed > P.snap_seq ? P.committed - P.snap_seq : 0;
	/* The old log's name now belongs to the new file: if this rename
	 * could be undone by a crash, so could every record written from
	 * now on. Treat it as a failed write: the recovery snapshot then
	 * writes everything again. */
	if ((r = sync_fd(P.dir_fd)) < 0)
		fail("fsync of the directory of", r);
	return 0;
}

/* The snapshot child ended with wait status st: install its work. */
static void snapshot_reaped(int st)
{
	pid_t pid = P.snap_pid;
	double t0 = now_mono();
	struct stat fst;
	int r;

	snap_forget();
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		P.snap_failures++;
		P.compact_after = now_mono() + COMPACT_BACKOFF_SECS;
		if (WIFSIGNALED(st))
			snprintf(P.last_error, sizeof(P.last_error),
				 "snapshot child %d killed by signal %d", (int)pid, WTERMSIG(st));
		else
			snprintf(P.last_error, sizeof(P.last_error), "snapshot child %d failed: %s",
				 (int)pid, strerror(WEXITSTATUS(st)));
		log_warn("persist", "%s; the log %s is kept whole", P.last_error, P.log_path);
		unlinkat(P.dir_fd, P.tmp_name, 0);
		return;
	}
	/* The child installed PATH. After a failed write the recovery
	 * snapshot will hold everything: keep the log as it is until then. */
	if (P.failed)
		return;
	snapshot_done(fstatat(P.dir_fd, P.name, &fst, AT_SYMLINK_NOFOLLOW) == 0 ?
			      (uint64_t)fst.st_size : 0);
	P.last_snapshot_secs = t0 - P.snap_started;
	if ((r = log_shrink()) < 0) {
		P.compact_after = now_mono() + COMPACT_BACKOFF_SECS;
		log_warn("persist", "shrinking %s after a snapshot failed: %s (it is kept whole)",
			 P.log_path, strerror(-r));
		return;
	}
	log_info("persist", "snapshot of record %" PRIu64 " written to %s by child %d (%" PRIu64
		 " bytes, %.3f s); log shrunk to %" PRIu64 " bytes in %.3f s",
		 P.snap_seq, P.path, (int)pid, P.snapshot_bytes, P.last_snapshot_secs, P.log_bytes,
		 now_mono() - t0);
	maybe_compact(); /* it may have grown past the limit meanwhile */
}

/* The child's pidfd is readable: it ended. */
static void snap_child_cb(evutil_socket_t fd, short what, void *arg)
{
	int st;
	pid_t r;

	(void)fd;
	(void)what;
	(void)arg;
	while ((r = waitpid(P.snap_pid, &st, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == 0)
		return; /* not yet */
	if (r < 0) {
		/* only daemon_child_reaped() may reap it elsewhere */
		log_error("persist", "snapshot child %d: %s", (int)P.snap_pid, strerror(errno));
		st = EIO << 8;
	}
	snapshot_reaped(st);
}

/* Supervision's reaper collected the child first (daemon_child_reaped). */
static void snap_child_reaped(pid_t pid, int st, void *arg)
{
	(void)arg;
	if (P.snap_pid && pid == P.snap_pid)
		snapshot_reaped(st);
}

/* --- loading ------------------------------------------------------------------------------ */

struct load_ctx {
	bool header, ended;
	bool any_start;      /* snapshot header lost: take the log from anywhere */
	uint64_t snap_seq;   /* last record the snapshot includes */
	uint64_t last_seq;   /* last log record applied (or snap_seq) */
	size_t objects, expected, applied, skipped;
};

/* Parse a payload as JSON; NULL with why. */
static json_t *payload_json(const char *p, size_t len, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

	if (!v)
		snprintf(why, whylen, "not JSON: %s", jerr.text);
	return v;
}

static int snap_record(const char *p, size_t len, size_t off, void *arg, char *why,
		       size_t whylen)
{
	struct load_ctx *L = arg;
	json_t *v = payload_json(p, len, why, whylen);
	const struct obj_type *type;
	const char *name, *tname;
	json_t *opts;
	enum mpsup_err code;
	char err[256];
	int rc = -1;

	(void)off;
	if (!v)
		return -1;
	if (L->ended) {
		snprintf(why, whylen, "data after the end record");
	} else if (!L->header) {
		json_int_t seq, n;
		int version;
		if (json_unpack(v, "{s:i, s:I, s:I}", "mpsup_snapshot", &version, "seq", &seq,
				"objects", &n) < 0 || version != 1 || seq < 0 || n < 0) {
			snprintf(why, whylen, "not an mpsup snapshot header");
		} else {
			L->header = true;
			L->snap_seq = L->last_seq = (uint64_t)seq;
			L->expected = (size_t)n;
			rc = 0;
		}
	} else if (json_is_object(v)) {
		json_int_t n;
		if (json_unpack(v, "{s:I}", "end", &n) < 0 || (size_t)n != L->objects ||
		    L->objects != L->expected) {
			snprintf(why, whylen, "end record does not match %zu objects", L->objects);
		} else {
			L->ended = true;
			rc = 0;
		}
	} else if (json_unpack(v, "[s, s, o]", &name, &tname, &opts) < 0 ||
		   !json_is_object(opts) || !name_valid(name, false)) {
		snprintf(why, whylen, "bad object record");
	} else if (!(type = obj_type_find(tname)) || !type->dump) {
		snprintf(why, whylen, "object %.64s has an unknown type '%.32s'", name, tname);
	} else if (obj_find(name)) {
		snprintf(why, whylen, "object %.64s appears twice", name);
	} else if (!obj_create(name, type, opts, &code, err, sizeof(err))) {
		snprintf(why, whylen, "object %.64s: %s", name, err);
	} else {
		L->objects++;
		rc = 0;
	}
	json_decref(v);
	return rc;
}

static int log_record(const char *p, size_t len, size_t off, void *arg, char *why,
		      size_t whylen)
{
	struct load_ctx *L = arg;
	json_t *v = payload_json(p, len, why, whylen), *params;
	const char *cmd;
	json_int_t seq;
	char err[256];
	int rc = -1;

	(void)off;
	if (!v)
		return -1;
	if (json_unpack(v, "[I, s, o]", &seq, &cmd, &params) < 0 || seq < 1 ||
	    !json_is_object(params)) {
		snprintf(why, whylen, "not a log record");
		json_decref(v);
		return -1;
	}
	/* a request line: its envelope is not a parameter */
	json_object_del(params, "id");
	json_object_del(params, "cmd");
	if ((uint64_t)seq <= L->snap_seq) {
		L->skipped++; /* older than the snapshot */
		rc = 0;
	} else if ((uint64_t)seq != L->last_seq + 1 && !(L->any_start && !L->applied)) {
		snprintf(why, whylen, "record %lld follows record %" PRIu64 " (missing records%s)",
			 (long long)seq, L->last_seq, L->last_seq ? "" : ": is the snapshot gone?");
	} else if (obj_replay(cmd, params, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "record %lld (%.40s) cannot be replayed: %s", (long long)seq, cmd,
			 err);
	} else {
		L->last_seq = (uint64_t)seq;
		L->applied++;
		rc = 0;
	}
	json_decref(v);
	return rc;
}

/* Close files and forget everything (also after a failed open). */
static void files_close(void)
{
	snapshot_abort("persistence closes");
	thread_stop();
	if (P.log_fd >= 0)
		close(P.log_fd);
	if (P.dir_fd >= 0)
		close(P.dir_fd);
	P.log_fd = P.dir_fd = -1;
	if (P.ev_commit)
		event_free(P.ev_commit);
	if (P.ev_retry)
		event_free(P.ev_retry);
	P.ev_commit = P.ev_retry = NULL;
	free(P.path);
	free(P.log_path);
	free(P.tmp_path);
	free(P.log_name);
	free(P.tmp_name);
	free(P.logtmp_path);
	free(P.logtmp_name);
	P.path = P.log_path = P.tmp_path = P.log_name = P.tmp_name = NULL;
	P.logtmp_path = P.logtmp_name = NULL;
	P.name = NULL;
	buf_free(&P.pending);
	free(P.waits);
	P.waits = NULL;
	P.n_waits = P.cap_waits = 0;
	taints_clear();
	dirty_clear();
	json_decref(P.unwritten);
	P.unwritten = NULL;
	P.on = P.loading = P.failed = P.commit_scheduled = false;
}

/* Load PATH into the namespace; 0, or -errno with err. */
static int load_snapshot(struct load_ctx *L, bool truncate_corrupt, bool *ret_rewrite,
			 char *err, size_t errlen)
{
	struct persist_scan sc;
	struct buf f;
	int fd = file_open(P.name, P.path, O_RDONLY, err, errlen), r;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	r = read_fd(fd, &f);
	close(fd);
	if (r < 0) {
		snprintf(err, errlen, "cannot read %s: %s", P.path, strerror(-r));
		return r;
	}
	persist_scan(f.p, f.len, snap_record, L, &sc);
	if (sc.end == PERSIST_SCAN_OK && (!L->header || !L->ended)) {
		sc.end = PERSIST_SCAN_CORRUPT;
		sc.bad_off = f.len;
		snprintf(sc.why, sizeof(sc.why), "%s", L->header ? "no end record" : "empty file");
	}
	P.snapshot_bytes = f.len;
	buf_free(&f);
	if (sc.end == PERSIST_SCAN_OK) {
		log_info("persist", "snapshot %s: %zu objects up to record %" PRIu64, P.path,
			 L->objects, L->snap_seq);
		return 0;
	}
	/* Written to a temporary file and renamed when complete: any damage is
	 * corruption, a torn tail included. */
	if (!truncate_corrupt) {
		snprintf(err, errlen,
			 "snapshot %s is corrupt at offset %zu: %s; refusing to start "
			 "(--truncate-corrupt-state keeps what precedes the damage)",
			 P.path, sc.bad_off, sc.why);
		return -EBADMSG;
	}
	log_error("persist",
		  "snapshot %s is corrupt at offset %zu: %s; --truncate-corrupt-state: keeping the "
		  "%zu objects before it",
		  P.path, sc.bad_off, sc.why, L->objects);
	if (!L->header)
		L->any_start = true; /* no seq known: take the log as it is */
	*ret_rewrite = true;
	return 0;
}

/* Replay PATH.log; 0, or -errno with err. */
static int load_log(struct load_ctx *L, bool truncate_corrupt, bool *ret_rewrite, char *err,
		    size_t errlen)
{
	struct persist_scan sc;
	struct buf f;
	size_t size;
	int r = read_fd(P.log_fd, &f);

	if (r < 0) {
		snprintf(err, errlen, "cannot read %s: %s", P.log_path, strerror(-r));
		return r;
	}
	persist_scan(f.p, f.len, log_record, L, &sc);
	size = f.len;
	buf_free(&f);
	P.log_bytes = sc.good_end;
	P.log_records = sc.records;
	if (sc.end == PERSIST_SCAN_OK)
		return 0;
	if (sc.end == PERSIST_SCAN_TORN) {
		log_warn("persist", "%s: dropping a torn last record at offset %zu (%zu bytes; a "
			 "write interrupted by a crash, never acknowledged)",
			 P.log_path, sc.bad_off, size - sc.bad_off);
	} else if (!truncate_corrupt) {
		snprintf(err, errlen,
			 "state log %s is corrupt at offset %zu: %s; refusing to start "
			 "(--truncate-corrupt-state drops the log from that offset on, %zu bytes)",
			 P.log_path, sc.bad_off, sc.why, size - sc.bad_off);
		return -EBADMSG;
	} else {
		log_error("persist",
			  "state log %s is corrupt at offset %zu: %s; --truncate-corrupt-state: "
			  "dropping %zu bytes from there",
			  P.log_path, sc.bad_off, sc.why, size - sc.bad_off);
		*ret_rewrite = true;
	}
	if (ftruncate(P.log_fd, (off_t)sc.bad_off) < 0 || fdatasync(P.log_fd) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot truncate %s: %s", P.log_path, strerror(errno));
		return r;
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

/* Open (creating it if need be) PATH.log into P.log_fd and lock it. */
static int log_open(char *err, size_t errlen)
{
	int r;

	P.log_fd = file_open(P.log_name, P.log_path, O_RDWR | O_APPEND, err, errlen);
	if (P.log_fd == -ENOENT) {
		P.log_fd = file_open(P.log_name, P.log_path, O_RDWR | O_APPEND | O_CREAT | O_EXCL,
				     err, errlen);
		if (P.log_fd >= 0)
			fsync(P.dir_fd); /* created: make its name durable */
		else if (P.log_fd == -ENOENT)
			snprintf(err, errlen, "cannot create %s: %s", P.log_path, strerror(ENOENT));
	}
	if (P.log_fd < 0) {
		r = P.log_fd;
		P.log_fd = -1;
		return r;
	}
	if (flock(P.log_fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s is in use by another process (another mpsupd?)",
			 P.log_path);
		return r;
	}
	return 0;
}

/* Set up P's names of path's files; the directory (malloc'ed) in ret_dir. */
static int names_init(const char *path, char **ret_dir, char *err, size_t errlen)
{
	char *dir, *slash;

	P.path = strdup(path);
	P.log_path = path_with(path, ".log");
	P.tmp_path = path_with(path, ".tmp");
	P.logtmp_path = path_with(path, ".log.tmp");
	dir = strdup(path);
	if (!P.path || !P.log_path || !P.tmp_path || !P.logtmp_path || !dir) {
		free(dir);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	slash = strrchr(dir, '/');
	P.name = slash ? P.path + (slash - dir) + 1 : P.path;
	if (!*P.name || strcmp(P.name, ".") == 0 || strcmp(P.name, "..") == 0) {
		free(dir);
		snprintf(err, errlen, "state_file %s does not name a file", path);
		return -EINVAL;
	}
	P.log_name = path_with(P.name, ".log");
	P.tmp_name = path_with(P.name, ".tmp");
	P.logtmp_name = path_with(P.name, ".log.tmp");
	if (!P.log_name || !P.tmp_name || !P.logtmp_name) {
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

int persist_open(const char *path, int sync, uint64_t log_max_bytes, bool truncate_corrupt,
		 bool dir_check, char *err, size_t errlen)
{
	struct load_ctx L = { 0 };
	bool rewrite = false;
	char *dir = NULL;
	double t0 = now_mono();
	int r;

	if (P.on || P.path) {
		snprintf(err, errlen, "persistence is open already");
		return -EBUSY;
	}
	P.fail_flag = getenv("MPSUP_TEST_FAIL_WRITES");
	if (P.fail_flag && !*P.fail_flag)
		P.fail_flag = NULL;
	P.snap_hold = getenv("MPSUP_TEST_SNAPSHOT_HOLD");
	if (P.snap_hold && !*P.snap_hold)
		P.snap_hold = NULL;
	P.sync = (enum state_sync)sync;
	P.log_max = log_max_bytes;
	P.ev_commit = event_new(daemon_g.base, -1, 0, commit_cb, NULL);
	P.ev_retry = event_new(daemon_g.base, -1, 0, retry_cb, NULL);
	if (!P.ev_commit || !P.ev_retry) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	if ((r = names_init(path, &dir, err, errlen)) < 0)
		goto fail;
	r = dir_open(dir, dir_check, err, errlen);
	free(dir);
	if (r < 0)
		goto fail;
	/* Refuse planted files before the log is created (they are opened
	 * or removed, and checked again, once the log's lock is held). */
	if (((r = name_check(P.name, P.path, err, errlen)) < 0 && r != -ENOENT) ||
	    ((r = name_check(P.tmp_name, P.tmp_path, err, errlen)) < 0 && r != -ENOENT) ||
	    ((r = name_check(P.logtmp_name, P.logtmp_path, err, errlen)) < 0 && r != -ENOENT) ||
	    (r = log_open(err, errlen)) < 0 ||
	    (r = leftover_remove(P.tmp_name, P.tmp_path, err, errlen)) < 0 ||
	    (r = leftover_remove(P.logtmp_name, P.logtmp_path, err, errlen)) < 0)
		goto fail;

	P.loading = true;
	obj_restoring = true;
	r = load_snapshot(&L, truncate_corrupt, &rewrite, err, errlen);
	if (r == 0)
		r = load_log(&L, truncate_corrupt, &rewrite, err, errlen);
	obj_restoring = false;
	P.loading = false;
	if (r < 0)
		goto fail;
	P.seq = P.attempted = P.committed = L.last_seq;
	if (P.sync == STATE_SYNC_EVERYSEC && (r = thread_start()) < 0) {
		snprintf(err, errlen, "cannot start the fsync thread: %s", strerror(-r));
		goto fail;
	}
	P.on = true;
	log_info("persist",
		 "%s: %u objects restored (%zu from the snapshot, %zu log records replayed, %zu "
		 "skipped) in %.3f s; state_sync = %s",
		 P.path, obj_count(), L.objects, L.applied, L.skipped, now_mono() - t0,
		 sync_names[P.sync]);
	if (rewrite && persist_snapshot() < 0)
		log_warn("persist", "could not rewrite the state after truncation; the log is kept");
	return 0;
fail:
	files_close();
	return r;
}

void persist_close(bool snapshot)
{
	if (!P.on)
		return;
	persist_commit();
	check_thread();
	if (P.failed)
		try_recover();
	if (snapshot && !P.failed)
		persist_snapshot();
	else if (!P.failed && P.sync != STATE_SYNC_NO && sync_fd(P.log_fd) < 0)
		log_warn("persist", "fsync of %s failed: %s", P.log_path, strerror(errno));
	if (P.failed)
		log_error("persist", "stopping with unwritten state: %s", P.error);
	files_close();
}

json_t *persist_info(void)
{
	double last_fsync;
	uint64_t fsyncs;

	if (!P.on)
		return json_pack("{s:b}", "enabled", 0);
	pthread_mutex_lock(&P.mu);
	last_fsync = P.last_fsync;
	fsyncs = P.log_fsyncs;
	pthread_mutex_unlock(&P.mu);
	check_thread();
	return json_pack("{s:b, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:o, s:I, s:o, s:I, s:s?, "
			 "s:s?, s:I, s:I, s:b, s:o, s:f, s:I}",
			 "enabled", 1, "file", P.path, "sync", sync_names[P.sync],
			 "accepting_writes", !P.failed, "seq", (json_int_t)P.seq,
			 "pending_records", (json_int_t)(P.seq - P.committed),
			 "log_bytes", (json_int_t)P.log_bytes,
			 "log_records", (json_int_t)P.log_records,
			 "last_fsync", last_fsync ? json_real(last_fsync) : json_null(),
			 "snapshot_bytes", (json_int_t)P.snapshot_bytes,
			 "last_snapshot", P.last_snapshot ? json_real(P.last_snapshot) : json_null(),
			 "snapshots", (json_int_t)P.snapshots,
			 "error", P.failed ? P.error : NULL,
			 "last_error", P.last_error[0] ? P.last_error : NULL,
			 "errors", (json_int_t)P.errors, "log_fsyncs", (json_int_t)fsyncs,
			 "snapshot_in_progress", P.snap_pid != 0,
			 "snapshot_pid", P.snap_pid ? json_integer(P.snap_pid) : json_null(),
			 "last_snapshot_secs", P.last_snapshot_secs,
			 "snapshot_failures", (json_int_t)P.snap_failures);
}

/* --- the module ------------------------------------------------------------------------------ */

static int persist_start(const struct conf *conf)
{
	char err[512];
	int r;

	if (!conf->state_file)
		return 0;
	r = persist_open(conf->state_file, conf->state_sync, conf->state_log_max_bytes,
			 daemon_g.truncate_corrupt_state, conf->state_dir_check, err, sizeof(err));
	if (r < 0)
		log_error("persist", "%s", err);
	return r;
}

/* Clean shutdown: everything goes into a snapshot. Runs after the modules
 * started later (process supervision) have stopped. */
static void persist_stop(void (*done)(void))
{
	persist_close(true);
	done();
}

static int persist_reload(const struct conf *nc, json_t *changes)
{
	const char *old = P.on ? P.path : NULL;

	(void)changes;
	if ((old || nc->state_file) && (!old || !nc->state_file || strcmp(old, nc->state_file)))
		log_warn("persist", "state_file changes take effect at the next start");
	if (!P.on)
		return 0;
	P.log_max = nc->state_log_max_bytes;
	if (nc->state_sync == P.sync)
		return 0;
	persist_commit();
	if (nc->state_sync == STATE_SYNC_EVERYSEC) {
		if (thread_start() < 0) {
			log_error("persist", "cannot start the fsync thread; state_sync stays %s",
				  sync_names[P.sync]);
			return 0;
		}
	} else {
		thread_stop();
	}
	if (P.sync != STATE_SYNC_NO && sync_fd(P.log_fd) == 0) {
		pthread_mutex_lock(&P.mu);
		P.last_fsync = now_wall();
		P.log_fsyncs++;
		pthread_mutex_unlock(&P.mu);
	}
	log_info("persist", "state_sync: %s -> %s", sync_names[P.sync], sync_names[nc->state_sync]);
	P.sync = nc->state_sync;
	return 0;
}

static void persist_info_hook(json_t *info)
{
	json_object_set_new(info, "persistence", persist_info());
}

const struct cmd_module persist_module = {
	.capability = "persistence",
	.info = persist_info_hook,
	.start = persist_start,
	.stop = persist_stop,
	.reload = persist_reload,
};
