/*
 * The descriptor budget. mpsupd holds descriptors for what it supervises:
 * per worker, the read end of each captured (or file:) output pipe, plus a
 * task pool's channel; per one-shot, its two output pipes and the stdin it
 * feeds; per pool, its output files (the file and its directory); per
 * connection one socket (subscribers and waiters live on their connection
 * and cost nothing more). Against the soft RLIMIT_NOFILE (raised to the
 * hard limit at start), the budget refuses a pool, a scale, a reload or a
 * one-shot that could not get its descriptors, before anything is spawned,
 * instead of letting spawns fail half way (docs/processes.md).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "proc_int.h"
#include "scope.h"

/* Descriptors the daemon uses for itself at most beyond what was open
 * when supervision started: a spawn's pipes (status pipe, the child's
 * ends, a journal stream), a snapshot or log file being rewritten, a
 * config being read, an output file being reopened. */
#define FDS_SLACK 32

static unsigned base_fds; /* open when supervision started */
static char refusal[256]; /* why the last check failed */

/* Count our open descriptors (once, at start: /proc/self/fd). */
static unsigned count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	unsigned n = 0;

	if (!d)
		return 64; /* no /proc: a guess as large as a usual start */
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n > 0 ? n - 1 : 0; /* not the directory's own descriptor */
}

static unsigned long long fds_limit(void);
static unsigned long long conn_reserve(unsigned long long limit);

/* Warn when max_processes cannot be reached on this machine (pid_max). */
static void check_pid_max(void)
{
	unsigned long long pid_max = 0;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "re");

	if (!f)
		return;
	if (fscanf(f, "%llu", &pid_max) == 1 && daemon_g.conf &&
	    daemon_g.conf->max_processes >= pid_max)
		log_warn("proc",
			 "max_processes (%u) is not below kernel.pid_max (%llu): "
			 "spawns will fail (and be retried) before it is reached",
			 daemon_g.conf->max_processes, pid_max);
	fclose(f);
}

/* Count what we hold, and say what room that leaves. */
void proc_fds_init(void)
{
	unsigned long long limit = fds_limit(), kept;

	check_pid_max();

	base_fds = count_open_fds();
	kept = base_fds + FDS_SLACK + conn_reserve(limit);
	log_info("proc",
		 "descriptor budget: %llu, %llu kept for the daemon and its clients: room for %llu "
		 "workers with captured output, any number with null or journal output",
		 limit, kept, limit > kept ? (limit - kept) / 2 : 0);
}

/* Is journald's stream socket there? Without it a journal stream is
 * captured (proc_spawn.c) and costs a pipe. */
static bool journal_present(void)
{
	return access("/run/systemd/journal/stdout", F_OK) == 0;
}

/* The daemon's descriptors for one output stream of a worker. */
static unsigned stream_cost(const struct output_conf *oc, bool journal_failing)
{
	switch (oc->kind) {
	case OUTPUT_NULL: /* the daemon's one /dev/null */
	case OUTPUT_INHERIT: /* the daemon's own stdout/stderr */ return 0;
	case OUTPUT_JOURNAL: /* the child holds the journal stream, we close it */
		return journal_failing || !journal_present() ? 1 : 0;
	case OUTPUT_FILE: /* a pipe, the daemon writes the lines */
	case OUTPUT_CAPTURE:
	default: return 1;
	}
}

/* A worker's own output files (per-process paths): each holds the file and
 * its directory open. */
static unsigned own_file_cost(const struct pool_conf *pc, bool with_out)
{
	bool shared = pc->out.kind == OUTPUT_FILE && pc->err.kind == OUTPUT_FILE && pc->out.path &&
		      pc->err.path && strcmp(pc->out.path, pc->err.path) == 0;
	unsigned n = 0;

	if (with_out && output_per_process(&pc->out))
		n += 2;
	if (output_per_process(&pc->err) && !(with_out && shared))
		n += 2;
	return n;
}

unsigned proc_fds_worker_cost(const struct pool_conf *pc, const bool journal_failing[2])
{
	bool none[2] = { false, false };
	unsigned notify = pc->ready == READY_NOTIFY; /* its notify socket */

	if (!journal_failing)
		journal_failing = none;
	if (pc->mode == POOL_MODE_TASK) /* stdin and stdout are the task channel */
		return notify + 2 + stream_cost(&pc->err, journal_failing[1]) +
		       own_file_cost(pc, false);
	return notify + stream_cost(&pc->out, journal_failing[0]) +
	       stream_cost(&pc->err, journal_failing[1]) + own_file_cost(pc, true);
}

/* A pool's output files: each holds the file and its directory open. */
static unsigned pool_file_cost(const struct pool_conf *pc)
{
	unsigned n = 0;

	if (pc->out.kind == OUTPUT_FILE && !output_per_process(&pc->out))
		n += 2;
	if (pc->err.kind == OUTPUT_FILE && !output_per_process(&pc->err) &&
	    !(pc->out.kind == OUTPUT_FILE && strcmp(pc->out.path, pc->err.path) == 0))
		n += 2;
	return n;
}

unsigned proc_fds_pool_cost(const struct pool_conf *pc, unsigned processes)
{
	return pool_file_cost(pc) + processes * proc_fds_worker_cost(pc, NULL);
}

/* The soft descriptor limit in force. */
static unsigned long long fds_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 1ULL << 40;
	return (unsigned long long)rl.rlim_cur;
}

/* Kept for connections: max_clients, but at most a quarter of the limit
 * (past it, accept() fails and the client is refused, nothing breaks). */
static unsigned long long conn_reserve(unsigned long long limit)
{
	unsigned long long n = daemon_g.conf ? daemon_g.conf->max_clients : 0;

	return n < limit / 4 ? n : limit / 4;
}

/* Descriptors held (or promised) by every pool and live one-shot. */
static unsigned long long processes_cost(void)
{
	unsigned long long n = (unsigned long long)oneshots_live_count() * PROC_FDS_ONESHOT;
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry) {
		unsigned members = 0;
		for (unsigned i = 0; i < pl->n_slots; i++)
			members += pl->members[i] != NULL;
		n += (pl->stdio_passed ? 3 : 0) + pool_file_cost(pl->conf) +
		     (unsigned long long)members *
			     proc_fds_worker_cost(pl->conf, pl->journal_failing);
	}
	return n;
}

/* One pidfd per process that owns scoped things (scope.h). */
static unsigned long long fds_used(unsigned long long limit)
{
	return base_fds + FDS_SLACK + conn_reserve(limit) + processes_cost() + scope_count();
}

int proc_fds_check_scope(void)
{
	return proc_fds_check(1, "a watched process (scope)");
}

int proc_fds_check(unsigned long long need, const char *what)
{
	unsigned long long limit = fds_limit(), used = fds_used(limit);

	if (used + need <= limit)
		return 0;
	snprintf(refusal, sizeof(refusal),
		 "not enough file descriptors: %s needs %llu, %llu of %llu free "
		 "(RLIMIT_NOFILE %llu; in use or kept: %llu)",
		 what, need, used < limit ? limit - used : 0, limit, limit, used);
	return -EMFILE;
}

const char *proc_fds_refusal(void)
{
	return refusal;
}

/* What a worker whose stdout and stderr both go to kind costs. */
static int mode_cost(enum output_kind kind, enum pool_mode mode)
{
	struct pool_conf pc = { .mode = mode, .out = { .kind = kind }, .err = { .kind = kind } };

	return (int)proc_fds_worker_cost(&pc, NULL);
}

json_t *proc_fds_info(void)
{
	unsigned long long limit = fds_limit();

	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:i, s:i, s:i, s:i, s:i, s:i}, s:i, s:i, "
			 "s:i}",
			 "limit", (json_int_t)limit, "used", (json_int_t)fds_used(limit), "daemon",
			 (json_int_t)(base_fds + FDS_SLACK), "connections",
			 (json_int_t)conn_reserve(limit), "processes", (json_int_t)processes_cost(),
			 "per_worker", "capture", mode_cost(OUTPUT_CAPTURE, POOL_MODE_SERVICE),
			 "file", mode_cost(OUTPUT_FILE, POOL_MODE_SERVICE), "journal",
			 mode_cost(OUTPUT_JOURNAL, POOL_MODE_SERVICE), "null",
			 mode_cost(OUTPUT_NULL, POOL_MODE_SERVICE), "inherit",
			 mode_cost(OUTPUT_INHERIT, POOL_MODE_SERVICE), "task",
			 mode_cost(OUTPUT_CAPTURE, POOL_MODE_TASK), "per_oneshot", PROC_FDS_ONESHOT,
			 "per_connection", 1, "scopes", (int)scope_count());
}
