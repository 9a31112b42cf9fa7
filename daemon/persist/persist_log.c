/*
 * Persistence (persist.c): appending to the log, the group commit, the
 * commit barrier with its read taints, the everysec fsync thread, and
 * failure and recovery.
 *
 * Commit: records are framed into one buffer as ops run; a commit event,
 * activated by the first record of a pass, runs after the callbacks of that
 * pass and writes the buffer with one write() (plus fdatasync() with
 * state_sync = always: group commit). Until then the core holds every
 * connection's output (persist_barrier, commit_barrier.h), so no answer -
 * and no read of a value not yet written - leaves before the records
 * (after a failed write, see Errors). everysec: a thread fdatasyncs the
 * log once a second when it changed. no: the kernel decides.
 *
 * Errors: a failed write or fsync keeps the records of that pass in memory
 * (committed < attempted) and their answers held (they were never
 * acknowledged), refuses further mutations of persisted objects with
 * `internal`, and retries (on the next mutation and every second) by
 * writing a whole snapshot: that rewrites the state including the held
 * records and starts an empty log, so a torn write left in the log by the
 * failure is never followed by good records. Until then the names those
 * records change are in persist_g.unwritten (read from persist_g.pending),
 * and a request about one of them (persist_read; obj.list: any) taints its
 * connection - an opaque barrier key, dropped by persist_barrier_forget()
 * when the connection closes: its next persist_barrier() waits for the
 * recovery too, so no later read shows a mutation a crash would lose. Once
 * the snapshot is written the held answers go out and mutations are
 * accepted.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "persist_int.h"

/* --- the barrier ------------------------------------------------------------------- */

/* The taint of key: its index, or -1. */
static ssize_t taint_find(const void *key)
{
	for (size_t i = 0; i < persist_g.n_taints; i++)
		if (persist_g.taints[i].key == key)
			return (ssize_t)i;
	return -1;
}

/* Forget taint i. */
static void taint_drop(size_t i)
{
	persist_g.taints[i] = persist_g.taints[--persist_g.n_taints];
}

void persist_barrier_forget(void *key)
{
	ssize_t t = taint_find(key);

	if (t >= 0)
		taint_drop((size_t)t);
}

/* Forget every taint (persistence closes). */
static void taints_clear(void)
{
	while (persist_g.n_taints)
		taint_drop(persist_g.n_taints - 1);
	free(persist_g.taints);
	persist_g.taints = NULL;
	persist_g.cap_taints = 0;
}

/* Does a read of name (NULL: of the whole namespace) depend on a record
 * that a failed commit left unwritten? */
static bool read_is_dirty(const char *name)
{
	if (persist_g.committed >= persist_g.attempted)
		return false; /* no failed commit left anything unwritten */
	if (persist_g.unwritten_all || !persist_g.unwritten || !name)
		return true;
	return json_object_get(persist_g.unwritten, name) != NULL;
}

/* One unwritten record: the object it changed is dirty. */
static int dirty_record(const char *p, size_t len, size_t off, void *arg, char *why,
			size_t whylen)
{
	json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	const char *name = json_string_value(json_object_get(json_array_get(v, 2), "name"));

	(void)off;
	(void)arg;
	if (!name || json_object_set_new(persist_g.unwritten, name, json_true()) < 0) {
		snprintf(why, whylen, "no name");
		persist_g.unwritten_all = true;
	}
	json_decref(v);
	return persist_g.unwritten_all ? -1 : 0;
}

/* A commit failed: remember what the records it could not write (all of
 * persist_g.pending) touch, for persist_read(). */
static void dirty_mark(void)
{
	struct persist_scan sc;

	if (!persist_g.unwritten && !(persist_g.unwritten = json_object()))
		persist_g.unwritten_all = true;
	if (!persist_g.unwritten_all)
		persist_scan(persist_g.pending.p, persist_g.pending.len, dirty_record, NULL, &sc);
}

/* Everything is written: nothing is dirty. */
void persist_dirty_clear(void)
{
	if (persist_g.unwritten)
		json_object_clear(persist_g.unwritten);
	persist_g.unwritten_all = persist_g.hold_all = false;
}

void persist_read(struct request *r, const char *name)
{
	void *key = r->conn; /* opaque: only compared with barrier keys */
	struct taint *t;
	ssize_t i;

	if (!persist_g.on || !key)
		return;
	if (!read_is_dirty(name))
		return;
	if ((i = taint_find(key)) >= 0) {
		persist_g.taints[i].need = persist_g.attempted;
		return;
	}
	if (persist_g.n_taints == persist_g.cap_taints) {
		size_t cap = persist_g.cap_taints ? persist_g.cap_taints * 2 : 16;
		if (!(t = realloc(persist_g.taints, cap * sizeof(*t)))) {
			/* Cannot remember this connection: hold every one. */
			log_error("persist", "out of memory holding a read; holding every answer");
			persist_g.hold_all = true;
			return;
		}
		persist_g.taints = t;
		persist_g.cap_taints = cap;
	}
	persist_g.taints[persist_g.n_taints++] = (struct taint){ key, persist_g.attempted };
}

enum barrier_result persist_barrier(void (*fn)(void *key), void *key)
{
	struct barrier_wait *w;
	uint64_t need = 0;
	ssize_t t;

	if (!persist_g.on)
		return BARRIER_GO;
	/* Records of this pass that no commit has tried to write yet: every
	 * answer waits for them (group commit). */
	if (persist_g.seq != persist_g.attempted || persist_g.hold_all)
		need = persist_g.seq;
	/* An answer to key read an object that an unwritten record of a
	 * failed commit changed. */
	if ((t = taint_find(key)) >= 0) {
		if (persist_g.taints[t].need > need)
			need = persist_g.taints[t].need;
		taint_drop((size_t)t);
	}
	if (need <= persist_g.committed)
		return BARRIER_GO;
	if (persist_g.n_waits == persist_g.cap_waits) {
		size_t cap = persist_g.cap_waits ? persist_g.cap_waits * 2 : 64;
		if (!(w = realloc(persist_g.waits, cap * sizeof(*w)))) {
			/* Cannot remember it: commit now instead. After a
			 * failure that does not let it go: it must not be
			 * shown, and no wake-up would come. */
			persist_commit();
			if (need <= persist_g.committed)
				return BARRIER_GO;
			log_error("persist", "out of memory holding an answer; closing its client");
			return BARRIER_NO_MEMORY;
		}
		persist_g.waits = w;
		persist_g.cap_waits = cap;
	}
	persist_g.waits[persist_g.n_waits++] = (struct barrier_wait){ fn, key, need };
	return BARRIER_WAIT;
}

void persist_barrier_cancel(void (*fn)(void *key), void *key)
{
	for (size_t i = 0; i < persist_g.n_waits; i++)
		if (persist_g.waits[i].fn == fn && persist_g.waits[i].key == key)
			persist_g.waits[i].fn = NULL;
}

/* Let go everyone whose records are committed. */
void persist_barrier_release(void)
{
	size_t i, j;

	/* By index: a callback may add (never while nothing is pending) or
	 * cancel entries. */
	for (i = 0; i < persist_g.n_waits; i++) {
		struct barrier_wait w = persist_g.waits[i];
		if (w.fn && w.need <= persist_g.committed) {
			persist_g.waits[i].fn = NULL;
			w.fn(w.key);
		}
	}
	for (i = j = 0; i < persist_g.n_waits; i++)
		if (persist_g.waits[i].fn)
			persist_g.waits[j++] = persist_g.waits[i];
	persist_g.n_waits = j;
	for (i = persist_g.n_taints; i-- > 0;)
		if (persist_g.taints[i].need <= persist_g.committed)
			taint_drop(i);
}

/* --- failure and recovery ----------------------------------------------------------- */


/* Stop accepting mutations: what failed, with -errno. */
void persist_fail(const char *what, int err)
{
	struct timeval tv = tv_from_secs(RETRY_SECS);

	persist_g.errors++;
	snprintf(persist_g.last_error, sizeof(persist_g.last_error), "%s %s failed: %s", what,
		 persist_g.log_path, strerror(-err));
	if (persist_g.failed)
		return;
	persist_g.failed = true;
	snprintf(persist_g.error, sizeof(persist_g.error), "%s", persist_g.last_error);
	log_error("persist", "%s; refusing mutations of persisted objects until it can be written",
		  persist_g.last_error);
	if (persist_g.ev_retry)
		event_add(persist_g.ev_retry, &tv);
}

/* A background fsync failed: that is a failure too. */
void persist_check_thread(void)
{
	int err;

	if (!__atomic_load_n(&persist_g.sync_err, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&persist_g.mu);
	err = persist_g.sync_err;
	persist_g.sync_err = 0;
	pthread_mutex_unlock(&persist_g.mu);
	if (err)
		persist_fail("fsync of", -err);
}

/* Try to get out of the failed state by writing a whole snapshot. */
void persist_try_recover(void)
{
	int r;

	persist_g.last_retry = now_mono();
	if ((r = persist_snapshot_write()) < 0) {
		snprintf(persist_g.last_error, sizeof(persist_g.last_error),
			 "snapshot %s failed: %s", persist_g.path, strerror(-r));
		log_debug("persist", "still failing: %s", persist_g.last_error);
		return;
	}
	persist_g.failed = false;
	persist_g.error[0] = 0;
	if (persist_g.ev_retry)
		event_del(persist_g.ev_retry);
	log_info("persist", "state written again to %s; accepting mutations", persist_g.path);
	persist_barrier_release();
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = tv_from_secs(RETRY_SECS);

	(void)fd;
	(void)what;
	(void)arg;
	if (!persist_g.failed)
		return;
	persist_try_recover();
	if (persist_g.failed)
		event_add(persist_g.ev_retry, &tv);
}

bool persist_writable(struct request *r)
{
	if (!persist_g.on)
		return true;
	persist_check_thread();
	if (!persist_g.failed)
		return true;
	if (now_mono() - persist_g.last_retry >= RETRY_MIN_SECS)
		persist_try_recover();
	if (!persist_g.failed)
		return true;
	request_error(r, MPSUP_E_INTERNAL,
		      "shared state cannot be persisted (%s); mutations are refused until it can",
		      persist_g.error);
	return false;
}

/* --- appending and committing ---------------------------------------------------------- */

/* Append a record [SEQ,"cmd",PARAMS] with PARAMS as text (line) or dumped
 * from params. */
static void log_append(const char *cmd, json_t *params, const char *line, size_t line_len)
{
	struct persist_buf *b = &persist_g.pending;
	size_t start = b->len, cmd_len = strlen(cmd);
	char num[24], *d = num + sizeof(num);
	uint64_t seq = persist_g.seq + 1;

	if (persist_buf_reserve(b, PERSIST_HDR + sizeof(num) + cmd_len + line_len + 8) < 0)
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
	} else if (persist_buf_dump(b, params) < 0 || persist_buf_reserve(b, 1) < 0) {
		b->len = start;
		goto oom;
	}
	b->p[b->len++] = ']';
	persist_frame_close(b, start);
	persist_g.seq++;
	if (!persist_g.commit_scheduled) {
		persist_g.commit_scheduled = true;
		event_active(persist_g.ev_commit, EV_TIMEOUT, 0);
	}
	return;
oom:
	/* The mutation is done but cannot be logged: do as for a failed
	 * write (its answer waits, the recovery snapshot will carry it). */
	persist_g.seq++;
	persist_g.unwritten_all = true; /* its object is not known */
	persist_fail("recording a mutation for", -ENOMEM);
	if (!persist_g.commit_scheduled) {
		persist_g.commit_scheduled = true;
		event_active(persist_g.ev_commit, EV_TIMEOUT, 0);
	}
}

void persist_log(const char *cmd, json_t *params)
{
	if (persist_g.on && !persist_g.loading)
		log_append(cmd, params, NULL, 0);
}

void persist_log_request(struct request *r)
{
	if (persist_g.on && !persist_g.loading)
		log_append(r->cmd->name, r->params, r->line, r->line ? r->line_len : 0);
}


/* Compact when the log outgrew both its limit and the last snapshot: in a
 * child, one at a time. */
void persist_maybe_compact(void)
{
	int r;

	if (persist_g.snap_pid || persist_g.failed || !persist_g.log_max ||
	    persist_g.log_bytes <= persist_g.log_max ||
	    persist_g.log_bytes <= persist_g.snapshot_bytes || now_mono() < persist_g.compact_after)
		return;
	r = persist_snapshot_fork();
	if (r == -ENOSYS) {
		r = persist_snapshot(); /* no pidfds (Linux < 5.3): in the foreground */
	} else if (r < 0) {
		snprintf(persist_g.last_error, sizeof(persist_g.last_error), "snapshot child: %s",
			 strerror(-r));
		log_warn("persist", "cannot start a snapshot child: %s", strerror(-r));
	}
	if (r < 0)
		persist_g.compact_after = now_mono() + COMPACT_BACKOFF_SECS;
}

void persist_commit(void)
{
	uint64_t upto = persist_g.seq;
	int r;

	persist_g.commit_scheduled = false;
	if (!persist_g.on || persist_g.seq == persist_g.attempted)
		return;
	persist_g.attempted = upto;
	if (persist_g.failed) {
		/* Records logged before the failure was seen in this pass (an
		 * everysec fsync error found mid-pass), or an unloggable one:
		 * they wait for the recovery, and reads of them with them. */
		dirty_mark();
		if (now_mono() - persist_g.last_retry >= RETRY_MIN_SECS)
			persist_try_recover();
		return;
	}
	r = persist_write_all(persist_g.log_fd, persist_g.pending.p, persist_g.pending.len);
	if (r < 0) {
		dirty_mark();
		persist_fail("write to", r);
		return;
	}
	persist_g.log_bytes += persist_g.pending.len;
	persist_g.log_records += upto - persist_g.committed;
	if (persist_g.sync == STATE_SYNC_ALWAYS) {
		if ((r = persist_sync_fd(persist_g.log_fd)) < 0) {
			/* Written, not synced: not committed either. The
			 * records stay in pending for dirty_mark() only (the
			 * recovery snapshot carries them). */
			dirty_mark();
			persist_fail("fsync of", r);
			return;
		}
		pthread_mutex_lock(&persist_g.mu);
		persist_g.last_fsync = now_wall();
		persist_g.log_fsyncs++;
		pthread_mutex_unlock(&persist_g.mu);
	} else if (persist_g.thread_on) {
		pthread_mutex_lock(&persist_g.mu);
		persist_g.dirty = true;
		pthread_mutex_unlock(&persist_g.mu);
	}
	persist_g.pending.len = 0;
	persist_g.committed = upto;
	persist_barrier_release();
	persist_maybe_compact();
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	persist_commit();
}

/* Create the commit and retry events; 0 or -ENOMEM. */
int persist_log_init(void)
{
	persist_g.ev_commit = event_new(daemon_g.base, -1, 0, commit_cb, NULL);
	persist_g.ev_retry = event_new(daemon_g.base, -1, 0, retry_cb, NULL);
	return persist_g.ev_commit && persist_g.ev_retry ? 0 : -ENOMEM;
}

/* Free the events, the pending records, the barrier's waiters and the
 * taints (NULL-safe: also after a failed persist_log_init). */
void persist_log_free(void)
{
	if (persist_g.ev_commit)
		event_free(persist_g.ev_commit);
	if (persist_g.ev_retry)
		event_free(persist_g.ev_retry);
	persist_g.ev_commit = persist_g.ev_retry = NULL;
	persist_buf_free(&persist_g.pending);
	free(persist_g.waits);
	persist_g.waits = NULL;
	persist_g.n_waits = persist_g.cap_waits = 0;
	taints_clear();
	persist_dirty_clear();
	json_decref(persist_g.unwritten);
	persist_g.unwritten = NULL;
}

/* --- the everysec thread --------------------------------------------------------------- */

static void *sync_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&persist_g.mu);
	while (!persist_g.stop) {
		struct timespec ts;
		int fd, r;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		while (!persist_g.stop &&
		       pthread_cond_timedwait(&persist_g.cv, &persist_g.mu, &ts) != ETIMEDOUT)
			;
		if (persist_g.stop || !persist_g.dirty)
			continue;
		persist_g.dirty = false;
		fd = persist_g.syncing_fd = persist_g.log_fd;
		pthread_mutex_unlock(&persist_g.mu);
		r = persist_sync_fd(fd);
		pthread_mutex_lock(&persist_g.mu);
		persist_g.syncing_fd = -1;
		if (persist_g.retired_fd == fd) {
			/* replaced meanwhile (log_fd_switch): its records were
			 * copied to the new log and synced there */
			close(fd);
			persist_g.retired_fd = -1;
			r = 0;
		}
		if (r < 0)
			__atomic_store_n(&persist_g.sync_err, -r, __ATOMIC_RELEASE);
		else {
			persist_g.last_fsync = now_wall();
			persist_g.log_fsyncs++;
		}
	}
	pthread_mutex_unlock(&persist_g.mu);
	return NULL;
}

int persist_thread_start(void)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int r;

	if (persist_g.thread_on)
		return 0;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&persist_g.cv, &ca);
	pthread_condattr_destroy(&ca);
	persist_g.stop = false;
	/* Signals belong to the event loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&persist_g.thread, NULL, sync_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		pthread_cond_destroy(&persist_g.cv);
		return -r;
	}
	persist_g.thread_on = true;
	return 0;
}

void persist_thread_stop(void)
{
	if (!persist_g.thread_on)
		return;
	pthread_mutex_lock(&persist_g.mu);
	persist_g.stop = true;
	pthread_cond_signal(&persist_g.cv);
	pthread_mutex_unlock(&persist_g.mu);
	pthread_join(persist_g.thread, NULL);
	pthread_cond_destroy(&persist_g.cv);
	persist_g.thread_on = false;
	persist_check_thread();
}
