/*
 * Durable shared state: the append-only log, its commit barrier, snapshots
 * and recovery at start-up (docs/state.md "Persistence"). This file holds
 * the module and the state shared by the other parts of persistence:
 *   persist_record.c    the file format, CRC32C and framing
 *   persist_files.c     the state directory and safe opening of its files
 *   persist_log.c       appending, group commit, commit barrier, background thread,
 *                       failure and recovery
 *   persist_snapshot.c  snapshots (foreground, child) and the crash-safety argument
 *   persist_load.c      loading and replay at start-up
 *   persist_int.h       what they share: persist_g and their calls
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "persist_int.h"

#include <event2/buffer.h>

static const char *const sync_names[] = { "always", "everysec", "no" };

/* The state of every part of persistence (persist_int.h). */
struct persist_state persist_g = {
	.log_fd = -1,
	.dir_fd = -1,
	.snap_pidfd = -1,
	.retired_fd = -1,
	.mu = PTHREAD_MUTEX_INITIALIZER,
};

/* Close files and forget everything (also after a failed open). */
static void files_close(void)
{
	persist_snapshot_abort("persistence closes");
	persist_thread_stop();
	persist_files_close();
	persist_log_free();
	persist_g.on = persist_g.loading = persist_g.failed = persist_g.commit_scheduled = false;
}

/* The test hooks: a variable's value, NULL when unset or empty. */
static const char *test_env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

int persist_open(const char *path, int sync, uint64_t log_max_bytes, bool truncate_corrupt,
		 bool dir_check, char *err, size_t errlen)
{
	struct persist_load L = { 0 };
	bool rewrite = false;
	double t0 = now_mono();
	int r;

	if (persist_g.on || persist_g.path) {
		snprintf(err, errlen, "persistence is open already");
		return -EBUSY;
	}
	persist_g.fail_flag = test_env("MPSUP_TEST_FAIL_WRITES");
	persist_g.snap_hold = test_env("MPSUP_TEST_SNAPSHOT_HOLD");
	persist_g.sync = (enum state_sync)sync;
	persist_g.log_max = log_max_bytes;
	if ((r = persist_log_init()) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((r = persist_files_open(path, dir_check, err, errlen)) < 0 ||
	    (r = persist_load(&L, truncate_corrupt, &rewrite, err, errlen)) < 0)
		goto fail;
	persist_g.seq = persist_g.attempted = persist_g.committed = L.last_seq;
	if ((r = persist_thread_start()) < 0) {
		snprintf(err, errlen, "cannot start the background thread: %s", strerror(-r));
		goto fail;
	}
	persist_g.on = true;
	log_info("persist",
		 "%s: %u objects restored (%zu from the snapshot, %zu log records replayed, %zu "
		 "skipped) in %.3f s; state_sync = %s",
		 persist_g.path, obj_count(), L.objects, L.applied, L.skipped, now_mono() - t0,
		 sync_names[persist_g.sync]);
	if (rewrite && persist_snapshot() < 0)
		log_warn("persist",
			 "could not rewrite the state after truncation; the log is kept");
	return 0;
fail:
	files_close();
	return r;
}

void persist_close(bool snapshot)
{
	if (!persist_g.on)
		return;
	persist_commit();
	persist_check_thread();
	if (persist_g.failed)
		persist_try_recover();
	if (snapshot && !persist_g.failed)
		persist_snapshot();
	else if (!persist_g.failed && persist_g.sync != STATE_SYNC_NO &&
		 persist_sync_fd(persist_g.log_fd) < 0)
		log_warn("persist", "fsync of %s failed: %s", persist_g.log_path, strerror(errno));
	if (persist_g.failed)
		log_error("persist", "stopping with unwritten state: %s", persist_g.error);
	files_close();
}

/* The outage for daemon.info: since when, what waits to be written and
 * how many connections' answers are held; null while the log is written. */
static json_t *outage_info(void)
{
	size_t held = 0;

	if (!persist_g.failed)
		return json_null();
	for (size_t i = 0; i < persist_g.n_waits; i++)
		held += persist_g.waits[i].fn != NULL;
	return json_pack("{s:f, s:f, s:s, s:I, s:I, s:I}", "since", persist_g.outage_since, "secs",
			 now_mono() - persist_g.outage_mono, "error", persist_g.error,
			 "pending_bytes", (json_int_t)persist_g.pending.len, "pending_records",
			 (json_int_t)(persist_g.seq - persist_g.committed), "held_clients",
			 (json_int_t)held);
}

json_t *persist_info(void)
{
	double last_fsync;
	uint64_t fsyncs;
	json_t *info;

	if (!persist_g.on)
		return json_pack("{s:b}", "enabled", 0);
	pthread_mutex_lock(&persist_g.mu);
	last_fsync = persist_g.last_fsync;
	fsyncs = persist_g.log_fsyncs;
	pthread_mutex_unlock(&persist_g.mu);
	persist_check_thread();
	info = json_pack("{s:b, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:o, s:I, s:o, s:I, s:s?, "
			 "s:s?, s:I, s:I, s:b, s:o, s:f, s:I}",
			 "enabled", 1, "file", persist_g.path, "sync", sync_names[persist_g.sync],
			 "accepting_writes", !persist_g.failed, "seq", (json_int_t)persist_g.seq,
			 "pending_records", (json_int_t)(persist_g.seq - persist_g.committed),
			 "log_bytes", (json_int_t)persist_g.log_bytes, "log_records",
			 (json_int_t)persist_g.log_records, "last_fsync",
			 last_fsync ? json_real(last_fsync) : json_null(), "snapshot_bytes",
			 (json_int_t)persist_g.snapshot_bytes, "last_snapshot",
			 persist_g.last_snapshot ? json_real(persist_g.last_snapshot) : json_null(),
			 "snapshots", (json_int_t)persist_g.snapshots, "error",
			 persist_g.failed ? persist_g.error : NULL, "last_error",
			 persist_g.last_error[0] ? persist_g.last_error : NULL, "errors",
			 (json_int_t)persist_g.errors, "log_fsyncs", (json_int_t)fsyncs,
			 "snapshot_in_progress", persist_g.snap_pid != 0, "snapshot_pid",
			 persist_g.snap_pid ? json_integer(persist_g.snap_pid) : json_null(),
			 "last_snapshot_secs", persist_g.last_snapshot_secs, "snapshot_failures",
			 (json_int_t)persist_g.snap_failures);
	if (info) {
		json_object_set_new(info, "outage", outage_info());
		json_object_set_new(info, "outage_timeout",
				    json_real(daemon_g.conf->persist_outage_timeout));
	}
	return info;
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
	const char *old = persist_g.on ? persist_g.path : NULL;
	double t0;

	(void)changes;
	if ((old || nc->state_file) && (!old || !nc->state_file || strcmp(old, nc->state_file)))
		log_warn("persist", "state_file changes take effect at the next start");
	if (!persist_g.on)
		return 0;
	persist_g.log_max = nc->state_log_max_bytes;
	if (nc->state_sync == persist_g.sync)
		return 0;
	persist_commit();
	t0 = now_mono();
	if (persist_g.sync != STATE_SYNC_NO && persist_sync_fd(persist_g.log_fd) == 0) {
		pthread_mutex_lock(&persist_g.mu);
		persist_fsync_done(now_mono() - t0);
		pthread_mutex_unlock(&persist_g.mu);
	}
	log_info("persist", "state_sync: %s -> %s", sync_names[persist_g.sync],
		 sync_names[nc->state_sync]);
	persist_g.sync = nc->state_sync;
	return 0;
}

void persist_fsync_done(double seconds)
{
	persist_g.last_fsync = now_wall();
	persist_g.log_fsyncs++;
	metrics_hist_observe(&persist_g.fsync_seconds, seconds);
}

/* fsyncs of the state log and their latency (the everysec thread counts
 * them too: read under its lock). */
static void persist_metrics(struct evbuffer *b)
{
	struct metrics_hist h;
	uint64_t n;

	pthread_mutex_lock(&persist_g.mu);
	n = persist_g.log_fsyncs;
	h = persist_g.fsync_seconds;
	pthread_mutex_unlock(&persist_g.mu);
	metrics_family(b, "mpsup_fsyncs_total", "counter",
		       "fdatasyncs of the state log that succeeded.");
	metrics_u64(b, "mpsup_fsyncs_total", NULL, 0, n);
	metrics_family(b, "mpsup_fsync_duration_seconds", "histogram",
		       "Seconds an fdatasync of the state log took.");
	metrics_hist_write(b, "mpsup_fsync_duration_seconds", NULL, 0, &h);
}

static void persist_info_hook(json_t *info)
{
	json_object_set_new(info, "persistence", persist_info());
}

const struct cmd_module persist_module = {
	.capability = "persistence",
	.info = persist_info_hook,
	.metrics = persist_metrics,
	.start = persist_start,
	.stop = persist_stop,
	.reload = persist_reload,
};
