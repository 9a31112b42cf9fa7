/*
 * Persistence (persist.c): appending to the log, the group commit, the
 * commit barrier with its outage timeout, the background (fsync, close) thread, and
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
 * Errors: a failed write or fsync (or a log or state directory found
 * removed) keeps the records of that pass in memory (committed <
 * attempted) and their answers held (they were never acknowledged) for at
 * most persist_outage_timeout: then the barrier gives them up
 * (BARRIER_TIMED_OUT; the core answers the durable ones `unavailable`,
 * outcome unknown). Further mutations of persisted objects are refused
 * with `unavailable`, and it retries (on the next mutation and every
 * second) by writing a whole snapshot: that rewrites the state including
 * the unwritten records and starts an empty log, so a torn write left in
 * the log by the failure is never followed by good records. Until then the
 * names those records change are in persist_g.unwritten (read from
 * persist_g.pending), and a request about one of them (persist_read;
 * obj.list: any) is answered `unavailable` at once, so no read shows a
 * mutation a crash would lose. Once the snapshot is written the held
 * answers go out and mutations are accepted. The outage and its end are
 * events of the daemon topic.
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
#include "events.h"
#include "log.h"
#include "obj.h"
#include "persist_int.h"

/* --- the barrier ------------------------------------------------------------------- */

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
static int dirty_record(const char *p, size_t len, size_t off, void *arg, char *why, size_t whylen)
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
	persist_g.unwritten_all = false;
}

bool persist_read(struct request *r, const char *name)
{
	if (!persist_g.on || !r->conn)
		return true;
	if (!read_is_dirty(name))
		return true;
	/* The last durable value is not kept (an undo copy of every changed
	 * object): the honest answer is that it cannot be read now. */
	request_error(r, MPSUP_E_UNAVAILABLE,
		      "%s has changes not yet written (%s); it can be read once the state is "
		      "written again",
		      name ? name : "the namespace", persist_g.error);
	return false;
}

/* Arm the outage timer for the earliest deadline of a held answer. */
static void outage_timer_arm(void)
{
	double first = 0, now = now_mono();
	struct timeval tv;

	for (size_t i = 0; i < persist_g.n_waits; i++) {
		double d = persist_g.waits[i].deadline;
		if (persist_g.waits[i].fn && d && (!first || d < first))
			first = d;
	}
	if (!first || !persist_g.ev_outage)
		return;
	tv = tv_from_secs(first > now ? first - now : 0);
	event_add(persist_g.ev_outage, &tv);
}

/* Give every held answer a deadline (the log failed): now + the outage
 * timeout of the running config. */
static void outage_deadlines(void)
{
	double when = now_mono() + daemon_g.conf->persist_outage_timeout;
	bool any = false;

	for (size_t i = 0; i < persist_g.n_waits; i++)
		if (persist_g.waits[i].fn && !persist_g.waits[i].deadline) {
			persist_g.waits[i].deadline = when;
			any = true;
		}
	if (any)
		outage_timer_arm();
}

/* Drop the entries of waits that were let go or cancelled. */
static void waits_compact(void)
{
	size_t i, j;

	for (i = j = 0; i < persist_g.n_waits; i++)
		if (persist_g.waits[i].fn)
			persist_g.waits[j++] = persist_g.waits[i];
	persist_g.n_waits = j;
}

/* The records the held answers wait for failed to be written: tell their
 * holders (those that show no durable state go; the others keep waiting,
 * until written or their deadline). */
static void waits_failing(void)
{
	for (size_t i = 0, n = persist_g.n_waits; i < n; i++) {
		struct barrier_wait w = persist_g.waits[i];
		if (w.fn)
			w.fn(w.key, BARRIER_FAILING);
	}
	waits_compact();
}

/* The outage timeout passed for some held answers: give up on them. */
static void outage_cb(evutil_socket_t fd, short what, void *arg)
{
	double now = now_mono();

	(void)fd;
	(void)what;
	(void)arg;
	/* By index, over the entries there now: a callback may cancel
	 * entries or add one (its connection held again), which waits for
	 * its own deadline. */
	for (size_t i = 0, n = persist_g.n_waits; i < n; i++) {
		struct barrier_wait w = persist_g.waits[i];
		if (w.fn && w.deadline && w.deadline <= now + 0.001) {
			persist_g.waits[i].fn = NULL;
			w.fn(w.key, BARRIER_TIMED_OUT);
		}
	}
	waits_compact();
	outage_timer_arm();
}

enum barrier_result persist_barrier(void (*fn)(void *key, enum barrier_release how), void *key)
{
	struct barrier_wait *w;
	uint64_t need;

	/* Records of this pass that no commit has tried to write yet: every
	 * answer waits for them (group commit). */
	if (!persist_g.on || persist_g.seq == persist_g.attempted)
		return BARRIER_GO;
	need = persist_g.seq;
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
	persist_g.waits[persist_g.n_waits++] = (struct barrier_wait){ fn, key, need, 0 };
	if (persist_g.failed) /* mutations logged before the failure was seen */
		outage_deadlines();
	return BARRIER_WAIT;
}

void persist_barrier_cancel(void (*fn)(void *key, enum barrier_release how), void *key)
{
	for (size_t i = 0; i < persist_g.n_waits; i++)
		if (persist_g.waits[i].fn == fn && persist_g.waits[i].key == key)
			persist_g.waits[i].fn = NULL;
}

/* Let go everyone whose records are committed. */
void persist_barrier_release(void)
{
	/* By index: a callback may add (never while nothing is pending) or
	 * cancel entries. */
	for (size_t i = 0; i < persist_g.n_waits; i++) {
		struct barrier_wait w = persist_g.waits[i];
		if (w.fn && w.need <= persist_g.committed) {
			persist_g.waits[i].fn = NULL;
			w.fn(w.key, BARRIER_WRITTEN);
		}
	}
	waits_compact();
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
	persist_g.outage_since = now_wall();
	persist_g.outage_mono = now_mono();
	snprintf(persist_g.error, sizeof(persist_g.error), "%s", persist_g.last_error);
	log_error("persist", "%s; refusing mutations of persisted objects until it can be written",
		  persist_g.last_error);
	if (events_wanted(TOPIC_DAEMON))
		events_publish(TOPIC_DAEMON,
			       json_pack("{s:s, s:s, s:s, s:f}", "event", "daemon.persist_outage",
					 "file", persist_g.path, "error", persist_g.error, "since",
					 persist_g.outage_since));
	if (persist_g.ev_retry)
		event_add(persist_g.ev_retry, &tv);
	outage_deadlines(); /* the answers held now wait at most the timeout */
	waits_failing();
}

/* The state is written again: the outage is over. */
static void outage_end(void)
{
	double secs = now_mono() - persist_g.outage_mono;

	persist_g.failed = false;
	persist_g.error[0] = 0;
	persist_g.outage_since = persist_g.outage_mono = 0;
	if (persist_g.ev_retry)
		event_del(persist_g.ev_retry);
	if (persist_g.ev_outage)
		event_del(persist_g.ev_outage);
	for (size_t i = 0; i < persist_g.n_waits; i++)
		persist_g.waits[i].deadline = 0;
	log_info("persist", "state written again to %s after %.1f s; accepting mutations",
		 persist_g.path, secs);
	if (events_wanted(TOPIC_DAEMON))
		events_publish(TOPIC_DAEMON,
			       json_pack("{s:s, s:s, s:f}", "event", "daemon.persist_restored",
					 "file", persist_g.path, "outage_secs", secs));
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
	char err[300];
	int r;

	persist_g.last_retry = now_mono();
	/* A removed log or directory: a new one, if its directory is back. */
	if (persist_files_check() < 0 && (r = persist_files_reopen(err, sizeof(err))) < 0) {
		snprintf(persist_g.last_error, sizeof(persist_g.last_error), "%s", err);
		log_debug("persist", "still failing: %s", persist_g.last_error);
		return;
	}
	if ((r = persist_snapshot_write()) < 0) {
		snprintf(persist_g.last_error, sizeof(persist_g.last_error),
			 "snapshot %s failed: %s", persist_g.path, strerror(-r));
		log_debug("persist", "still failing: %s", persist_g.last_error);
		return;
	}
	outage_end();
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
	request_error(r, MPSUP_E_UNAVAILABLE,
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
	/* A removed log or directory takes writes that nobody will read:
	 * checked before every commit with always, once a second otherwise. */
	if (!persist_g.failed &&
	    (persist_g.sync == STATE_SYNC_ALWAYS || now_mono() - persist_g.files_checked >= 1.0) &&
	    (r = persist_files_check()) < 0) {
		dirty_mark();
		persist_fail("write to", r);
		return;
	}
	if (persist_g.failed) {
		/* Records logged before the failure was seen in this pass (an
		 * everysec fsync error found mid-pass), or an unloggable one:
		 * they wait for the recovery, and reads of them with them. */
		dirty_mark();
		if (now_mono() - persist_g.last_retry >= RETRY_MIN_SECS)
			persist_try_recover();
		if (persist_g.failed)
			waits_failing();
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
		double t0 = now_mono();
		if ((r = persist_sync_fd(persist_g.log_fd)) < 0) {
			/* Written, not synced: not committed either. The
			 * records stay in pending for dirty_mark() only (the
			 * recovery snapshot carries them). */
			dirty_mark();
			persist_fail("fsync of", r);
			return;
		}
		pthread_mutex_lock(&persist_g.mu);
		persist_fsync_done(now_mono() - t0);
		pthread_mutex_unlock(&persist_g.mu);
	} else if (persist_g.sync == STATE_SYNC_EVERYSEC) {
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
	persist_g.ev_outage = event_new(daemon_g.base, -1, 0, outage_cb, NULL);
	return persist_g.ev_commit && persist_g.ev_retry && persist_g.ev_outage ? 0 : -ENOMEM;
}

/* Free the events, the pending records and the barrier's waiters (NULL-safe: also after a failed persist_log_init). */
void persist_log_free(void)
{
	if (persist_g.ev_commit)
		event_free(persist_g.ev_commit);
	if (persist_g.ev_retry)
		event_free(persist_g.ev_retry);
	if (persist_g.ev_outage)
		event_free(persist_g.ev_outage);
	persist_g.ev_commit = persist_g.ev_retry = persist_g.ev_outage = NULL;
	persist_buf_free(&persist_g.pending);
	free(persist_g.waits);
	persist_g.waits = NULL;
	persist_g.n_waits = persist_g.cap_waits = 0;
	persist_dirty_clear();
	json_decref(persist_g.unwritten);
	persist_g.unwritten = NULL;
}

/* --- the background thread ----------------------------------------------------------- */

/*
 * One thread for as long as persistence is open: under everysec it
 * fdatasyncs the log once a second when records were written; in every
 * mode it closes a replaced log (persist_log_fd_switch: freeing a large
 * file takes a while). It never allocates, logs or takes a lock other
 * than mu, and it lives as long as persistence: a snapshot child forked
 * meanwhile cannot inherit a lock of a thread being created or exiting
 * (a sanitizer's allocator does not take its locks around fork).
 */
static void *sync_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&persist_g.mu);
	while (!persist_g.stop) {
		struct timespec ts;
		double t0;
		int fd, r;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		while (!persist_g.stop && persist_g.retired_fd < 0 &&
		       pthread_cond_timedwait(&persist_g.cv, &persist_g.mu, &ts) != ETIMEDOUT)
			;
		if ((fd = persist_g.retired_fd) >= 0) {
			persist_g.retired_fd = -1;
			pthread_mutex_unlock(&persist_g.mu);
			close(fd);
			pthread_mutex_lock(&persist_g.mu);
			continue;
		}
		if (persist_g.stop || !persist_g.dirty)
			continue;
		persist_g.dirty = false;
		fd = persist_g.log_fd;
		pthread_mutex_unlock(&persist_g.mu);
		t0 = now_mono();
		r = persist_sync_fd(fd);
		pthread_mutex_lock(&persist_g.mu);
		/* Replaced meanwhile (log_fd_switch): its records were copied
		 * to the new log and synced there. The loop's top closes it,
		 * not under mu (freeing a large file takes a while, and the
		 * loop takes mu on every commit). */
		if (persist_g.retired_fd == fd)
			r = 0;
		if (r < 0)
			__atomic_store_n(&persist_g.sync_err, -r, __ATOMIC_RELEASE);
		else
			persist_fsync_done(now_mono() - t0);
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
	if (persist_g.retired_fd >= 0)
		close(persist_g.retired_fd);
	persist_g.retired_fd = -1;
	persist_check_thread();
}
