/*
 * Persistence (persist.c): snapshots, in the foreground and in a child
 * process, and the switch-over to a shrunk log.
 *
 * Snapshots: a compaction (the log outgrew state_log_max_bytes and the
 * last snapshot) must not stop the event loop - a large state takes
 * seconds to serialize and fsync. A child forked from the loop writes the
 * copy-on-write image of the objects into PATH.tmp and fdatasyncs it while
 * the parent goes on serving and appending to PATH.log; one child at a
 * time. The child only reads memory and writes its file: it never takes a
 * lock another thread may have held at the fork (the background thread's mutex),
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
 *      the old file and its lock go (closed by the background thread:
 *      freeing a large file takes a while).
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
 * record written since: that is treated as a failed write ("Errors" in
 * persist_log.c). A child that fails or is killed keeps the whole log
 * (and, before its rename, PATH): PATH.tmp is removed, the failure
 * logged. Snapshots written in the foreground: at start-up after a
 * truncation, at shutdown (the loop has nothing left to serve then), and
 * the recovery snapshot ("Errors" in persist_log.c); each first kills a
 * running child (both write PATH.tmp). Without pidfds (Linux < 5.3) compaction also writes in
 * the foreground.
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
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "persist_int.h"

/* --- snapshots ---------------------------------------------------------------------------- */

struct snap_ctx {
	struct persist_buf b;
	int fd;
	int err;
	size_t count;
};

/* Count the persisted objects. */
static void snap_count(struct obj *o, void *arg)
{
	if (obj_persisted(o))
		++*(size_t *)arg;
}

/* One object into the snapshot (persisted types only). */
static void snap_obj(struct obj *o, void *arg)
{
	struct snap_ctx *s = arg;
	json_t *rec, *opts;
	int r;

	if (s->err || !obj_persisted(o))
		return;
	opts = o->type->dump(o);
	if (opts && o->owner.private) { /* who may see it, as obj.create said */
		json_object_set_new(opts, "access", json_string("private"));
		if (o->owner.set)
			json_object_set_new(opts, "owner", json_integer((json_int_t)o->owner.uid));
	}
	rec = opts ? json_pack("[s, s, o]", o->name, o->type->name, opts) : NULL;
	if (!rec) {
		s->err = -ENOMEM;
		return;
	}
	r = persist_buf_record(&s->b, rec);
	json_decref(rec);
	if (r < 0) {
		s->err = r;
		return;
	}
	s->count++;
	if (s->b.len >= SNAP_CHUNK) {
		s->err = persist_write_all(s->fd, s->b.p, s->b.len);
		s->b.len = 0;
	}
}

/* Create PATH.tmp afresh (never through a link planted at the name). */
static int tmp_create(void)
{
	int fd;

	if (unlinkat(persist_g.dir_fd, persist_g.tmp_name, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(persist_g.dir_fd, persist_g.tmp_name,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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
	s.err = v ? persist_buf_record(&s.b, v) : -ENOMEM;
	json_decref(v);
	if (!s.err)
		obj_foreach(snap_obj, &s);
	if (!s.err) {
		v = json_pack("{s:I}", "end", (json_int_t)s.count);
		s.err = v ? persist_buf_record(&s.b, v) : -ENOMEM;
		json_decref(v);
	}
	if (!s.err && s.b.len)
		s.err = persist_write_all(fd, s.b.p, s.b.len);
	persist_buf_free(&s.b);
	if (!s.err)
		s.err = persist_sync_fd(fd);
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
	if (renameat(persist_g.dir_fd, persist_g.tmp_name, persist_g.dir_fd, persist_g.name) < 0) {
		int r = -errno;
		unlinkat(persist_g.dir_fd, persist_g.tmp_name, 0);
		return r;
	}
	return persist_sync_fd(persist_g.dir_fd);
}

/* A snapshot of bytes, holding every record up to seq, is in place. */
static void snapshot_done(uint64_t bytes)
{
	persist_g.snapshot_bytes = bytes;
	persist_g.last_snapshot = now_wall();
	persist_g.snapshots++;
}

/* Write the whole state to PATH atomically and empty the log, here and
 * now (start-up, shutdown, recovery from a failed write). */
int persist_snapshot_write(void)
{
	uint64_t seq = persist_g.seq, bytes = 0;
	int fd, r;

	persist_snapshot_abort("a snapshot is written in the foreground"); /* same PATH.tmp */
	if ((fd = tmp_create()) < 0)
		return fd;
	r = snapshot_body(fd, seq, &bytes);
	if (close(fd) < 0 && !r)
		r = -errno;
	if (r < 0) {
		unlinkat(persist_g.dir_fd, persist_g.tmp_name, 0);
		return r;
	}
	/* Every record of the log is <= seq: a reader of the new snapshot
	 * skips them, so the log is emptied only once the snapshot is durable. */
	if ((r = snapshot_install()) < 0)
		return r;
	if (ftruncate(persist_g.log_fd, 0) < 0)
		return -errno;
	persist_g.log_bytes = 0;
	persist_g.log_records = 0;
	persist_g.pending.len = 0;
	persist_g.attempted = persist_g.committed = seq;
	persist_dirty_clear();
	snapshot_done(bytes);
	return 0;
}

int persist_snapshot(void)
{
	double t0 = now_mono();
	int r;

	if (!persist_g.on)
		return -EINVAL;
	if (persist_g.failed)
		return -EIO;
	r = persist_snapshot_write();
	if (r < 0) {
		log_warn("persist", "snapshot %s failed: %s (the log is kept)", persist_g.path,
			 strerror(-r));
		return r;
	}
	persist_g.last_snapshot_secs = now_mono() - t0;
	log_info("persist", "snapshot of %u objects written to %s (%" PRIu64 " bytes, %.3f s)",
		 obj_count(), persist_g.path, persist_g.snapshot_bytes,
		 persist_g.last_snapshot_secs);
	persist_barrier_release();
	return 0;
}

/* --- snapshots in a child process ---------------------------------------------------------- */

/* Compaction's snapshots are written by a child: see "Snapshots" at the top of this file. */

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
	hi = fd > persist_g.dir_fd ? fd : persist_g.dir_fd;
	if ((fd = fcntl(fd, F_DUPFD, hi + 1)) < 0 ||
	    (dir = fcntl(persist_g.dir_fd, F_DUPFD, hi + 1)) < 0 || dup2(fd, 3) < 0 ||
	    dup2(dir, 4) < 0)
		_exit(errno ? errno : EIO);
	close_range(5, ~0u, 0);
	persist_g.dir_fd = 4;
	r = snapshot_body(3, seq, &bytes);
	/* Tests: hold the finished snapshot while this file exists. */
	while (persist_g.snap_hold && access(persist_g.snap_hold, F_OK) == 0)
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
int persist_snapshot_fork(void)
{
	struct stat st;
	pid_t pid, self = getpid();
	int fd, r;

	if ((fd = tmp_create()) < 0)
		return fd;
	if (fstat(persist_g.log_fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	persist_g.snap_seq = persist_g.seq;
	persist_g.snap_log_off = (uint64_t)st.st_size;
	persist_g.snap_started = now_mono();
	if ((pid = fork()) < 0) {
		r = -errno;
		goto fail;
	}
	if (pid == 0)
		snapshot_child(fd, persist_g.snap_seq, self);
	close(fd);
	fd = -1;
	persist_g.snap_pid = pid;
	daemon_child_watch(pid, snap_child_reaped, NULL); /* one child at a time: room */
	persist_g.snap_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (persist_g.snap_pidfd < 0) {
		r = -errno;
		persist_snapshot_abort(NULL);
		return r;
	}
	persist_g.ev_snap =
		event_new(daemon_g.base, persist_g.snap_pidfd, EV_READ, snap_child_cb, NULL);
	if (!persist_g.ev_snap || event_add(persist_g.ev_snap, NULL) < 0) {
		persist_snapshot_abort(NULL);
		return -ENOMEM;
	}
	log_info("persist", "snapshot of %u objects in child %d (up to record %" PRIu64 ")",
		 obj_count(), (int)pid, persist_g.snap_seq);
	return 0;
fail:
	close(fd);
	unlinkat(persist_g.dir_fd, persist_g.tmp_name, 0);
	return r;
}

/* Forget the child (reaped or never started). */
static void snap_forget(void)
{
	if (persist_g.ev_snap)
		event_free(persist_g.ev_snap);
	persist_g.ev_snap = NULL;
	if (persist_g.snap_pidfd >= 0)
		close(persist_g.snap_pidfd);
	persist_g.snap_pidfd = -1;
	if (persist_g.snap_pid)
		daemon_child_unwatch(persist_g.snap_pid);
	persist_g.snap_pid = 0;
}

/* Kill and reap a running snapshot child; its PATH.tmp goes. why (NULL:
 * quietly) is logged. */
void persist_snapshot_abort(const char *why)
{
	int st;

	if (!persist_g.snap_pid)
		return;
	kill(persist_g.snap_pid, SIGKILL); /* not reaped yet: the pid is still ours */
	while (waitpid(persist_g.snap_pid, &st, 0) < 0 && errno == EINTR)
		;
	if (why)
		log_info("persist", "snapshot child %d stopped: %s", (int)persist_g.snap_pid, why);
	snap_forget();
	unlinkat(persist_g.dir_fd, persist_g.tmp_name, 0);
}

/* Copy left bytes of the log from offset in to the end of fd with pread and
 * write (where copy_file_range cannot); 0 or -errno. */
static int log_copy_by_hand(int fd, loff_t in, uint64_t left)
{
	char *b = malloc(SNAP_CHUNK);
	ssize_t n;
	int r = 0;

	if (!b)
		return -ENOMEM;
	while (left > 0 && !r) {
		n = pread(persist_g.log_fd, b, left < SNAP_CHUNK ? left : SNAP_CHUNK, in);
		if (n <= 0)
			r = n < 0 ? -errno : -EIO;
		else if (!(r = persist_write_all(fd, b, (size_t)n))) {
			in += n;
			left -= (uint64_t)n;
		}
	}
	free(b);
	return r;
}

/* Copy the log from off to its end into PATH.log.tmp; the new fd or -errno. */
static int log_tail_copy(uint64_t off, uint64_t *ret_bytes)
{
	loff_t in = (loff_t)off;
	struct stat st;
	uint64_t left;
	int fd, r = 0;

	if (unlinkat(persist_g.dir_fd, persist_g.logtmp_name, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(persist_g.dir_fd, persist_g.logtmp_name,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fstat(persist_g.log_fd, &st) < 0 || (uint64_t)st.st_size < off) {
		r = errno ? -errno : -EIO;
		goto out;
	}
	for (left = (uint64_t)st.st_size - off; left > 0 && !r;) {
		ssize_t n = copy_file_range(persist_g.log_fd, &in, fd, NULL, left, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
			/* no in-kernel copy here: read and write */
			r = log_copy_by_hand(fd, in, left);
			left = 0;
		} else if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
		} else {
			left -= (uint64_t)n;
		}
	}
	if (!r)
		r = persist_sync_fd(fd);
	if (!r && flock(fd, LOCK_EX | LOCK_NB) < 0)
		r = -errno;
	if (!r && fcntl(fd, F_SETFL, O_APPEND) < 0)
		r = -errno;
out:
	if (r < 0) {
		close(fd);
		unlinkat(persist_g.dir_fd, persist_g.logtmp_name, 0);
		return r;
	}
	*ret_bytes = (uint64_t)st.st_size - off;
	return fd;
}

/* Use fd as the log from now on. The background thread closes the old one
 * (after its fsync, if it is syncing it); here only if it is not running
 * or still has the one before (then it is not syncing this one: it starts a
 * sync only with no retired fd, and the first switch meanwhile retires the
 * fd it syncs). */
void persist_log_fd_switch(int fd)
{
	int old;

	pthread_mutex_lock(&persist_g.mu);
	old = persist_g.log_fd;
	persist_g.log_fd = fd;
	if (persist_g.thread_on && persist_g.retired_fd < 0) {
		persist_g.retired_fd = old;
		old = -1;
		pthread_cond_signal(&persist_g.cv);
	}
	pthread_mutex_unlock(&persist_g.mu);
	if (old >= 0)
		close(old);
}

/* Shrink the log to what was written since the child's fork. */
static int log_shrink(void)
{
	uint64_t bytes = 0;
	int fd = log_tail_copy(persist_g.snap_log_off, &bytes), r;

	if (fd < 0)
		return fd;
	if (renameat(persist_g.dir_fd, persist_g.logtmp_name, persist_g.dir_fd,
		     persist_g.log_name) < 0) {
		r = -errno;
		close(fd);
		unlinkat(persist_g.dir_fd, persist_g.logtmp_name, 0);
		return r;
	}
	persist_log_fd_switch(fd);
	persist_g.log_bytes = bytes;
	persist_g.log_records = persist_g.committed > persist_g.snap_seq
					? persist_g.committed - persist_g.snap_seq
					: 0;
	/* The old log's name now belongs to the new file: if this rename
	 * could be undone by a crash, so could every record written from
	 * now on. Treat it as a failed write: the recovery snapshot then
	 * writes everything again. */
	if ((r = persist_sync_fd(persist_g.dir_fd)) < 0)
		persist_fail("fsync of the directory of", r);
	return 0;
}

/* The snapshot child ended with wait status st: install its work. */
static void snapshot_reaped(int st)
{
	pid_t pid = persist_g.snap_pid;
	double t0 = now_mono();
	struct stat fst;
	int r;

	snap_forget();
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		persist_g.snap_failures++;
		persist_g.compact_after = now_mono() + COMPACT_BACKOFF_SECS;
		if (WIFSIGNALED(st))
			snprintf(persist_g.last_error, sizeof(persist_g.last_error),
				 "snapshot child %d killed by signal %d", (int)pid, WTERMSIG(st));
		else
			snprintf(persist_g.last_error, sizeof(persist_g.last_error),
				 "snapshot child %d failed: %s", (int)pid,
				 strerror(WEXITSTATUS(st)));
		log_warn("persist", "%s; the log %s is kept whole", persist_g.last_error,
			 persist_g.log_path);
		unlinkat(persist_g.dir_fd, persist_g.tmp_name, 0);
		return;
	}
	/* The child installed PATH. After a failed write the recovery
	 * snapshot will hold everything: keep the log as it is until then. */
	if (persist_g.failed)
		return;
	snapshot_done(fstatat(persist_g.dir_fd, persist_g.name, &fst, AT_SYMLINK_NOFOLLOW) == 0
			      ? (uint64_t)fst.st_size
			      : 0);
	persist_g.last_snapshot_secs = t0 - persist_g.snap_started;
	if ((r = log_shrink()) < 0) {
		persist_g.compact_after = now_mono() + COMPACT_BACKOFF_SECS;
		log_warn("persist", "shrinking %s after a snapshot failed: %s (it is kept whole)",
			 persist_g.log_path, strerror(-r));
		return;
	}
	log_info("persist",
		 "snapshot of record %" PRIu64 " written to %s by child %d (%" PRIu64
		 " bytes, %.3f s); log shrunk to %" PRIu64 " bytes in %.3f s",
		 persist_g.snap_seq, persist_g.path, (int)pid, persist_g.snapshot_bytes,
		 persist_g.last_snapshot_secs, persist_g.log_bytes, now_mono() - t0);
	persist_maybe_compact(); /* it may have grown past the limit meanwhile */
}

/* The child's pidfd is readable: it ended. */
static void snap_child_cb(evutil_socket_t fd, short what, void *arg)
{
	int st;
	pid_t r;

	(void)fd;
	(void)what;
	(void)arg;
	while ((r = waitpid(persist_g.snap_pid, &st, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == 0)
		return; /* not yet */
	if (r < 0) {
		/* only daemon_child_reaped() may reap it elsewhere */
		log_error("persist", "snapshot child %d: %s", (int)persist_g.snap_pid,
			  strerror(errno));
		st = EIO << 8;
	}
	snapshot_reaped(st);
}

/* Supervision's reaper collected the child first (daemon_child_reaped). */
static void snap_child_reaped(pid_t pid, int st, void *arg)
{
	(void)arg;
	if (persist_g.snap_pid && pid == persist_g.snap_pid)
		snapshot_reaped(st);
}
