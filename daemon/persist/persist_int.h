/*
 * Persistence's internal interface: the state its files share (persist_g)
 * and the calls between them. Only the files of daemon/persist include
 * this; other modules use persist.h. Which file holds what: persist.c.
 */
#ifndef MPSUPD_PERSIST_INT_H
#define MPSUPD_PERSIST_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "conf.h"
#include "metrics.h"
#include "persist.h"

struct event;

#define RETRY_SECS 1.0          /* retry timer after a failure */
#define RETRY_MIN_SECS 0.1      /* no quicker retries on the mutation path */
#define COMPACT_BACKOFF_SECS 10 /* after a failed compaction */
#define SNAP_CHUNK (1u << 20)   /* snapshot write size */

/* A growing byte buffer. */
struct persist_buf {
	char *p;
	size_t len, cap;
};

/* Someone waiting for the commit barrier: fn(key, BARRIER_WRITTEN) once
 * need is written, or fn(key, BARRIER_TIMED_OUT) at deadline. */
struct barrier_wait {
	void (*fn)(void *key, enum barrier_release how);
	void *key;
	uint64_t need;   /* the last record it may depend on */
	double deadline; /* monotonic, set once the log failed; 0 = none */
};

/* Persistence's state (one: persist_g). */
struct persist_state {
	bool on;                                        /* persistence active */
	bool loading;                                   /* replaying: persist_log() does nothing */
	char *path, *log_path, *tmp_path, *logtmp_path; /* for messages */
	const char *name;                               /* the names in the directory (basenames) */
	char *log_name, *tmp_name, *logtmp_name;        /* PATH.log.tmp: a log being shrunk */
	int log_fd, dir_fd;   /* every file is opened relative to dir_fd */
	bool dir_check;       /* state_dir_check, for reopening the directory */
	double files_checked; /* monotonic: the last persist_files_check() */
	enum state_sync sync;
	uint64_t log_max;
	const char *fail_flag; /* MPSUP_TEST_FAIL_WRITES */

	struct persist_buf pending; /* framed records not yet written */
	uint64_t seq;               /* last record appended */
	uint64_t attempted;         /* last record a commit tried to write */
	uint64_t committed;         /* last record written (and synced per mode) */
	uint64_t log_bytes, log_records;
	struct event *ev_commit, *ev_retry;
	bool commit_scheduled;

	uint64_t snapshot_bytes;
	double last_snapshot; /* wall clock, 0 = never */
	double last_snapshot_secs;
	unsigned long snapshots;
	double compact_after; /* monotonic: no compaction before */

	/* The snapshot child (persist_snapshot.c). */
	pid_t snap_pid; /* 0: none running */
	int snap_pidfd;
	struct event *ev_snap;
	uint64_t snap_seq;     /* the last record it holds */
	uint64_t snap_log_off; /* the log's size at its fork */
	double snap_started;   /* monotonic */
	unsigned long snap_failures;
	const char *snap_hold; /* MPSUP_TEST_SNAPSHOT_HOLD */

	bool failed;             /* refusing mutations */
	double outage_since;     /* wall clock of the failure, while failed */
	double outage_mono;      /* the same, monotonic */
	struct event *ev_outage; /* times out held answers (persist_outage_timeout) */
	char error[300];         /* why, while failed */
	char last_error[300];
	unsigned long errors;
	double last_retry; /* monotonic */

	struct barrier_wait *waits;
	size_t n_waits, cap_waits;

	/* After a failed commit (committed < attempted): the names of the
	 * objects the unwritten records change, or all (unwritten_all). */
	json_t *unwritten;
	bool unwritten_all;

	/* the background thread (persist_log.c); mu guards dirty, stop,
	 * sync_err, last_fsync, log_fd changes and retired_fd */
	pthread_t thread;
	int retired_fd; /* a replaced log fd it closes (after syncing it), or -1 */
	bool thread_on, stop, dirty;
	int sync_err;                      /* errno of a failed background fsync */
	double last_fsync;                 /* wall clock, 0 = never */
	uint64_t log_fsyncs;               /* fdatasyncs of the log that succeeded */
	struct metrics_hist fsync_seconds; /* their durations */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* The one persistence of the daemon (persist.c). */
extern struct persist_state persist_g;

/* What loading found (persist_load.c). */
struct persist_load {
	bool header, ended;
	bool any_start;    /* snapshot header lost: take the log from anywhere */
	uint64_t snap_seq; /* last record the snapshot includes */
	uint64_t last_seq; /* last log record applied (or snap_seq) */
	size_t objects, expected, applied, skipped;
};

/* persist_record.c: byte buffers and framed records */
int persist_buf_reserve(struct persist_buf *b, size_t n);
void persist_buf_free(struct persist_buf *b);
int persist_buf_dump(struct persist_buf *b, json_t *v);
int persist_buf_record(struct persist_buf *b, json_t *v);
void persist_frame_close(struct persist_buf *b, size_t start);

/* persist_files.c: the state directory and its files */
int persist_write_all(int fd, const void *p, size_t n);
int persist_sync_fd(int fd);
/* An fsync of the log succeeded in seconds (call with mu held). */
void persist_fsync_done(double seconds);
int persist_read_fd(int fd, struct persist_buf *ret);
int persist_file_open(const char *name, const char *path, int flags, char *err, size_t errlen);
int persist_files_open(const char *path, bool dir_check, char *err, size_t errlen);
void persist_files_close(void);
int persist_files_check(void);
int persist_files_reopen(char *err, size_t errlen);

/* persist_log.c: appending, commit, barrier, background thread, failures */
int persist_log_init(void);
void persist_log_free(void);
void persist_fail(const char *what, int err);
void persist_check_thread(void);
void persist_try_recover(void);
void persist_barrier_release(void);
void persist_dirty_clear(void);
void persist_maybe_compact(void);
int persist_thread_start(void);
void persist_thread_stop(void);

/* persist_snapshot.c: snapshots */
int persist_snapshot_write(void);
int persist_snapshot_fork(void);
void persist_log_fd_switch(int fd);
void persist_snapshot_abort(const char *why);

/* persist_load.c: loading at start-up */
int persist_load(struct persist_load *L, bool truncate_corrupt, bool *ret_rewrite, char *err,
		 size_t errlen);

#endif
