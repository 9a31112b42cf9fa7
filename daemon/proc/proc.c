/*
 * Process objects: the pid table, the state machine's entry actions,
 * reaping and the requests on one process (their records as commands and
 * events show them, and lookup by name, are proc_record.c's). Nothing polls: SIGCHLD
 * (reaping), per-process timers (start_secs, backoff, stop timeout) and
 * requests drive everything. Pools are in proc_pool.c, one-shots in
 * proc_oneshot.c, process groups in proc_group.c, shutdown in
 * proc_shutdown.c (proc_int.h says what they share).
 *
 * mpsupd is a child subreaper, so orphaned grandchildren are reparented to
 * it and reaped in the same loop (waitpid(-1, WNOHANG) until nothing is
 * left: SIGCHLD coalesces). A stop signals the whole process group and is
 * complete only once the group is empty (kill(-pgid, 0) fails with ESRCH),
 * so the grandchildren of a stopped worker are gone when stop returns.
 *
 * Objects are never freed under a running callback: a process leaving for
 * good goes to a free list emptied by a deferred event.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "events.h"
#include "log.h"
#include "proc.h"
#include "proc_int.h"
#include "proc_cgroup.h"
#include "proc_ready.h"
#include "proc_registry.h"
#include "proc_spawn.h"

/* A run shorter than this never resets backoff, whatever start_secs says
 * (no hot restart loop with start_secs = 0). */
#define STABLE_MIN_SECS 1.0
#define PID_BUCKETS 4096

static struct proc_list free_list = TAILQ_HEAD_INITIALIZER(free_list);
static struct proc *pid_hash[PID_BUCKETS];
static struct event *ev_sigchld, *ev_sigusr1, *ev_gc;
static bool initialized;

bool proc_initialized(void)
{
	return initialized;
}

/*
 * Pid table.
 */

static void pid_insert(struct proc *p)
{
	unsigned b = (unsigned)p->pid % PID_BUCKETS;

	p->hnext = pid_hash[b];
	pid_hash[b] = p;
}

static void pid_remove(struct proc *p)
{
	for (struct proc **pp = &pid_hash[(unsigned)p->pid % PID_BUCKETS]; *pp; pp = &(*pp)->hnext)
		if (*pp == p) {
			*pp = p->hnext;
			p->hnext = NULL;
			return;
		}
}

static struct proc *pid_lookup(pid_t pid)
{
	for (struct proc *p = pid_hash[(unsigned)pid % PID_BUCKETS]; p; p = p->hnext)
		if (p->pid == pid)
			return p;
	return NULL;
}

void pid_table_each(void (*fn)(struct proc *p, void *arg), void *arg)
{
	for (unsigned b = 0; b < PID_BUCKETS; b++)
		for (struct proc *p = pid_hash[b]; p; p = p->hnext)
			fn(p, arg);
}

bool pid_table_has_pgid(pid_t pgid)
{
	for (unsigned b = 0; b < PID_BUCKETS; b++)
		for (struct proc *p = pid_hash[b]; p; p = p->hnext)
			if (p->pgid == pgid)
				return true;
	return false;
}

/*
 * What a process tells: its exit text, its state events.
 */

static void set_text(struct proc *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_text(struct proc *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	proc_text_set(&p->exit_status_text, fmt, ap);
	va_end(ap);
}

static void publish_state(struct proc *p, enum proc_state from, enum proc_state to, pid_t pid,
			  bool has_code, int code)
{
	if (!events_wanted(TOPIC_PROCESS))
		return;
	events_publish_visible(
		TOPIC_PROCESS, proc_owner(p)->private ? events_visible_access : NULL, proc_owner(p),
		json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s?, s:f}", "event", "process.state",
			  "name", p->name, "from", proc_state_name(from), "to", proc_state_name(to),
			  "pid", pid ? json_integer(pid) : json_null(), "exitcode",
			  has_code ? json_integer(code) : json_null(), "reason", proc_reason(p),
			  "ts", now_wall()));
}

/*
 * Process objects.
 */

static void timer_cb(evutil_socket_t fd, short what, void *arg);

struct proc *proc_new(const char *name, struct pool *pl, unsigned index)
{
	struct proc *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->name = strdup(name);
	p->timer = evtimer_new(daemon_g.base, timer_cb, p);
	if (!p->name || !p->timer) {
		free(p->name);
		if (p->timer)
			event_free(p->timer);
		free(p);
		return NULL;
	}
	p->pool = pl;
	p->index = index;
	p->state = PS_STOPPED;
	proc_set_reason(p, "not started");
	return p;
}

void proc_destroy(struct proc *p)
{
	proc_notify_gone(p);
	if (p->pid)
		pid_remove(p);
	group_wait_cancel(p);
	event_free(p->timer);
	p->out = outpipe_free(p->out);
	p->err = outpipe_free(p->err);
	logring_clear(&p->ring);
	proc_outfiles_close(p);
	if (p->pool)
		pool_member_detach(p);
	else if (p->os)
		oneshot_detach(p);
	proc_ready_close(p);
	proc_cgroup_remove(p);
	free(p->exit_status_text);
	free(p->reason);
	free(p->name);
	free(p);
}

void proc_free_later(struct proc *p)
{
	if (p->freed)
		return;
	p->freed = true;
	group_wait_cancel(p);
	TAILQ_INSERT_TAIL(&free_list, p, gentry);
	event_active(ev_gc, EV_TIMEOUT, 0);
}

void proc_unfree(struct proc *p)
{
	if (!p->freed)
		return;
	TAILQ_REMOVE(&free_list, p, gentry);
	p->freed = false;
}

static void gc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p;

	(void)fd;
	(void)what;
	(void)arg;
	while ((p = TAILQ_FIRST(&free_list))) {
		struct pool *pl = p->pool;
		TAILQ_REMOVE(&free_list, p, gentry);
		proc_destroy(p);
		if (pl)
			pool_free_if_emptied(pl);
	}
}

/*
 * Signals.
 */

int proc_signal(struct proc *p, int sig)
{
	/* No pidfd (it would cost a descriptor per process): p->pid is our
	 * child, not reaped yet, so the pid cannot have been reused. */
	if (!p->pid)
		return -ESRCH;
	return kill(p->pid, sig) < 0 ? -errno : 0;
}

/*
 * The state machine's inputs and entry actions.
 */

struct procreg_rec proc_rec(const struct proc *p, pid_t leader)
{
	return (struct procreg_rec){ leader,         p->pgid,         p->start_lo, p->start_hi,
				     p->stop_signal, p->stop_timeout, p->name };
}

static struct proc_fsm_input fsm_input(const struct proc *p, enum proc_event ev)
{
	struct proc_fsm_input in = { false, false, false, false };
	const struct pool_conf *c;
	double stable_after;

	if (!p->pool || proc_shutting_down() || p->removing || p->pool->removing)
		return in;
	in.transient = ev == PE_SPAWN_FAILED && p->spawn_transient;
	c = p->pool->conf;
	if (ev == PE_SPAWN_FAILED)
		in.restart = c->restart != RESTART_NEVER;
	else
		in.restart = proc_policy_restarts(c->restart, c->exit_codes,
						  p->has_exitcode ? p->exitcode : 0);
	in.retry = p->failures < c->start_retries;
	stable_after = c->start_secs > STABLE_MIN_SECS ? c->start_secs : STABLE_MIN_SECS;
	/* Reaching running by the start_secs timer is a stable run when that
	 * is at least the minimum: the timer may fire a little before
	 * started_mono + start_secs (libevent counts from its cached time). */
	/* a run that said STOPPING=1 ended as it meant to */
	in.stable = p->notify_stopping;
	in.stable = in.stable || (p->started_mono > 0 &&
				  (now_mono() - p->started_mono >= stable_after ||
				   (p->state == PS_RUNNING && c->start_secs >= STABLE_MIN_SECS)));
	return in;
}

static void timer_arm(struct proc *p, double secs)
{
	struct timeval tv = tv_from_secs(secs);

	/* From now, not from the loop's cached time (a spawn took a while). */
	event_base_update_cache_time(daemon_g.base);
	evtimer_add(p->timer, &tv);
}

/* May a spawn shortage be logged as a warning now (one a second)? */
static bool shortage_warn_due(void)
{
	static double last;
	double now = now_mono();

	if (last > 0 && now - last < 1.0)
		return false;
	last = now;
	return true;
}

/* Begin a run: returns PE_START_SECS when there is no start_secs to wait,
 * PE_SPAWN_FAILED on failure, PE_NONE otherwise. */
static enum proc_event enter_starting(struct proc *p, enum proc_state from)
{
	char err[512], why[256];
	double start_secs = p->pool ? p->pool->conf->start_secs : 0;
	struct procreg_rec rec;
	int r;

	if (from == PS_RUNNING)
		p->failures = 0; /* a stable run ended: backoff starts over */
	p->stop_why = NULL;
	if ((r = proc_spawn(p, err, sizeof(err), why, sizeof(why))) < 0) {
		char line[600];
		p->has_exitcode = true;
		p->exitcode = 127;
		set_text(p, "%s", err);
		proc_set_reason(p, "%s", why);
		/* out of descriptors or processes: not the program's failure */
		p->spawn_transient = proc_spawn_transient(r);
		snprintf(line, sizeof(line), "mpsupd: %s%s", err,
			 p->spawn_transient && p->pool ? " (retrying)" : "");
		proc_output_line(p, STREAM_STDERR, line, strlen(line));
		/* a shortage hits many workers at once: one warning a second,
		 * the rest (and every retry) at debug */
		if (p->spawn_transient && (p->resource_retries > 0 || !shortage_warn_due()))
			log_debug_f("proc", PROC_FIELDS(p, 0), "%s: %s (retry %u)", p->name, err,
				    p->resource_retries);
		else
			log_warn_f("proc", PROC_FIELDS(p, 0), "%s: %s%s", p->name, err,
				   p->spawn_transient && p->pool ? " (retrying with backoff)" : "");
		return PE_SPAWN_FAILED;
	}
	p->spawn_transient = false;
	p->resource_retries = 0;
	if (p->spawns++ > 0)
		p->restarts++;
	if (p->pool) {
		p->pool->starts++;
		p->pool->restarts += p->spawns > 1;
	}
	p->started_wall = now_wall();
	p->started_mono = now_mono();
	p->has_exitcode = false;
	free(p->exit_status_text);
	p->exit_status_text = NULL;
	proc_set_reason(p, NULL);
	p->stop_signal = p->pool ? p->pool->conf->stop_signal : SIGTERM;
	p->stop_timeout = p->pool ? p->pool->conf->stop_timeout : 10;
	pid_insert(p);
	rec = proc_rec(p, p->pid);
	procreg_add(&rec);
	log_debug_f("proc", PROC_FIELDS(p, p->pid), "%s: spawned pid %d", p->name, (int)p->pid);
	if (p->pool && p->pool->conf->ready == READY_NOTIFY) {
		/* running on READY=1 (proc_ready.c), failed at ready_timeout */
		if (p->pool->conf->ready_timeout > 0)
			timer_arm(p, p->pool->conf->ready_timeout);
		return PE_NONE;
	}
	if (start_secs <= 0)
		return PE_START_SECS;
	timer_arm(p, start_secs);
	return PE_NONE;
}

/* The entry action of p's new state; may return a follow-up event. */
static enum proc_event proc_enter(struct proc *p, enum proc_state from, enum proc_event ev)
{
	const struct pool_conf *c = p->pool ? p->pool->conf : NULL;

	switch (p->state) {
	case PS_STARTING: evtimer_del(p->timer); return enter_starting(p, from);
	case PS_RUNNING: evtimer_del(p->timer); return PE_NONE;
	case PS_BACKOFF:
		if (p->spawn_transient) {
			/* does not count against start_retries; waits at least a
			 * little even with backoff_max = 0 */
			p->resource_retries++;
			timer_arm(p,
				  proc_backoff_delay(p->resource_retries,
						     c && c->backoff_max > 1 ? c->backoff_max : 1,
						     (double)random() / ((double)RAND_MAX + 1)));
			return PE_NONE;
		}
		p->failures++;
		timer_arm(p, proc_backoff_delay(p->failures, c ? c->backoff_max : 0,
						(double)random() / ((double)RAND_MAX + 1)));
		return PE_NONE;
	case PS_FATAL:
		p->failures++;
		evtimer_del(p->timer);
		log_warn_f("proc", PROC_FIELDS(p, p->last_pid),
			   "%s: gave up after %u failed start%s (%s)", p->name, p->failures,
			   p->failures == 1 ? "" : "s",
			   p->exit_status_text ? p->exit_status_text : "no status");
		return PE_NONE;
	case PS_STOPPING:
		if (ev == PE_STOP_TIMEOUT) {
			log_warn_f("proc", PROC_FIELDS(p, p->pid),
				   "%s: still running %.3gs after %s: SIGKILL to group %d", p->name,
				   p->stop_timeout, conf_signal_name(p->stop_signal), (int)p->pgid);
			proc_signal_group(p, SIGKILL);
			proc_cgroup_kill(p); /* and whatever left the group */
			timer_arm(p, p->stop_timeout);
			return PE_NONE;
		}
		if (!p->stop_why)
			p->stop_why = "stopped by request";
		proc_signal_group_stop(p);
		timer_arm(p, p->stop_timeout);
		return PE_NONE;
	case PS_STOPPED:
		if (ev == PE_STOP && from != PS_STOPPING)
			proc_set_reason(p, "stopped by request"); /* out of backoff */
								  /* fall through */
	case PS_EXITED:
		evtimer_del(p->timer);
		if (p->restart_pending && !p->removing && !proc_shutting_down()) {
			p->restart_pending = false;
			p->failures = 0;
			return PE_START;
		}
		p->restart_pending = false;
		return PE_NONE;
	default: return PE_NONE;
	}
}

void proc_feed(struct proc *p, enum proc_event ev)
{
	while (ev != PE_NONE) {
		struct proc_fsm_input in = fsm_input(p, ev);
		enum proc_state from = p->state;
		pid_t pid = ev == PE_DIED ? p->last_pid : 0;
		bool died = ev == PE_DIED;
		int code = p->exitcode, to = proc_fsm_next(from, ev, &in);
		enum proc_event next;

		if (to < 0) {
			log_debug("proc", "%s: %s ignored in %s", p->name, proc_event_name(ev),
				  proc_state_name(from));
			break;
		}
		p->state = (enum proc_state)to;
		next = proc_enter(p, from, ev);
		if (from != p->state) {
			log_debug("proc", "%s: %s -> %s (%s)", p->name, proc_state_name(from),
				  proc_state_name(p->state), proc_event_name(ev));
			publish_state(p, from, p->state, died ? pid : p->pid,
				      died || (!proc_state_alive(p->state) && p->has_exitcode),
				      died ? code : p->exitcode);
		}
		ev = next;
	}
	/* an ended one-shot has nothing left for its scope to stop: its
	 * pidfd may go before a join hears of the end */
	if (p->os && proc_state_final(p->state))
		scope_unbind(&p->os->scope);
	proc_notify_settled(p); /* waiters see no intermediate state */
	proc_after(p);
}

void proc_after(struct proc *p)
{
	if (p->freed)
		return;
	if (p->os)
		oneshot_settled(p);
	if (p->removing && proc_state_final(p->state) && !p->restart_pending)
		proc_free_later(p);
	if (proc_state_final(p->state))
		shutdown_progress();
	if (p->pool && p->pool->rolling)
		pool_rolling_progress(p->pool);
}

/* No READY=1 within ready_timeout: kill the run, a failed start. */
static void ready_timeout(struct proc *p)
{
	log_warn_f("proc", PROC_FIELDS(p, p->pid), "%s: not ready after %.3gs: SIGKILL to group %d",
		   p->name, p->pool->conf->ready_timeout, (int)p->pgid);
	p->stop_why = "ready timeout";
	proc_signal_group(p, SIGKILL);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;

	(void)fd;
	(void)what;
	switch (p->state) {
	case PS_STARTING:
		if (p->pool && p->pool->conf->ready == READY_NOTIFY)
			ready_timeout(p);
		else
			proc_feed(p, PE_START_SECS);
		break;
	case PS_BACKOFF: proc_feed(p, PE_BACKOFF_ELAPSED); break;
	case PS_STOPPING: proc_feed(p, PE_STOP_TIMEOUT); break;
	default: break;
	}
}

/*
 * Reaping.
 */

/* The exit status text, and the reason unless a stop gave one. */
static void describe_status(struct proc *p, int st)
{
	if (WIFSIGNALED(st)) {
		const char *name = conf_signal_name(WTERMSIG(st));
		set_text(p, "killed by signal %d (SIG%s)%s", WTERMSIG(st), name ? name : "?",
			 WCOREDUMP(st) ? ", core dumped" : "");
	} else
		set_text(p, "exited with status %d", WEXITSTATUS(st));
	if (p->stop_why)
		proc_set_reason(p, "%s", p->stop_why);
	else if (WIFSIGNALED(st) && conf_signal_name(WTERMSIG(st)))
		proc_set_reason(p, "killed by SIG%s%s", conf_signal_name(WTERMSIG(st)),
				WCOREDUMP(st) ? " (core dumped)" : "");
	else if (WIFSIGNALED(st))
		proc_set_reason(p, "killed by signal %d", WTERMSIG(st));
	else
		proc_set_reason(p, "exit %d", WEXITSTATUS(st));
	if (proc_cgroup_oom_killed(p)) {
		proc_set_reason(p, "oom-killed");
		if (events_wanted(TOPIC_PROCESS))
			events_publish(TOPIC_PROCESS,
				       json_pack("{s:s, s:s, s:o, s:f}", "event", "process.oom",
						 "name", p->name, "pid", json_integer(p->last_pid),
						 "ts", now_wall()));
	}
}

/* The main process of p ended with wait status st. */
static void proc_died(struct proc *p, int st)
{
	pid_remove(p);
	p->last_pid = p->pid;
	p->pid = 0;
	p->has_exitcode = true;
	p->exitcode = proc_exitcode(st);
	describe_status(p, st);
	log_info_f("proc", PROC_FIELDS(p, p->last_pid), "%s (pid %d) %s", p->name, (int)p->last_pid,
		   p->exit_status_text);
	proc_notify_exited(p); /* before a restart replaces its pipes */
	if (p->state == PS_STOPPING && (pgid_alive(p->pgid) || proc_cgroup_kill(p) > 0)) {
		/* the rest of its group got the stop signal too, or what left the
		 * group was just killed through its cgroup: stopped means all of
		 * it gone (their deaths reach us as SIGCHLD: we are the subreaper) */
		group_wait_start(p);
		return;
	}
	/* what escaped the group (a daemonized child) goes with the run */
	proc_cgroup_kill(p);
	/* the group is gone, unless a stray now holds it */
	if (p->state == PS_STOPPING || !stray_start(p))
		procreg_remove(p->last_pid, p->start_lo);
	proc_feed(p, PE_DIED);
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
	int st;
	pid_t pid;

	(void)fd;
	(void)what;
	(void)arg;
	for (;;) {
		struct proc *p;

		pid = waitpid(-1, &st, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			break;
		if (daemon_child_reaped(pid, st))
			continue; /* one of the daemon's own (a snapshot): its owner has it */
		if ((p = pid_lookup(pid)))
			proc_died(p, st);
		else
			log_debug("proc", "reaped orphan %d", (int)pid);
	}
	group_waits_check();
	strays_check();
}

static void sigusr1_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_info("proc", "SIGUSR1: reopening output files");
	pools_reopen_logs();
}

/*
 * Requests on one process.
 */

void proc_start(struct proc *p)
{
	if (p->freed)
		return;
	if (p->state == PS_STOPPING) {
		p->restart_pending = true;
		return;
	}
	if (proc_state_alive(p->state))
		return;
	p->failures = 0;
	proc_feed(p, PE_START);
}

void proc_stop(struct proc *p)
{
	if (p->freed)
		return;
	p->restart_pending = false;
	if (p->state != PS_STOPPING && !proc_state_final(p->state))
		proc_feed(p, PE_STOP);
}

void proc_restart(struct proc *p)
{
	if (p->freed)
		return;
	if (p->state == PS_STARTING || p->state == PS_RUNNING) {
		p->restart_pending = true;
		proc_feed(p, PE_STOP);
	} else
		proc_start(p);
}

/*
 * Module life.
 */

int proc_init(void)
{
	if (initialized)
		return 0;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		log_warn("proc", "PR_SET_CHILD_SUBREAPER: %s (orphans will not be reaped here)",
			 strerror(errno));
	proc_spawn_init();
	srandom((unsigned)getpid() ^ (unsigned)now_mono());
	ev_sigchld = evsignal_new(daemon_g.base, SIGCHLD, sigchld_cb, NULL);
	ev_sigusr1 = evsignal_new(daemon_g.base, SIGUSR1, sigusr1_cb, NULL);
	ev_gc = event_new(daemon_g.base, -1, 0, gc_cb, NULL);
	if (!ev_sigchld || !ev_sigusr1 || !ev_gc || event_add(ev_sigchld, NULL) < 0 ||
	    event_add(ev_sigusr1, NULL) < 0) {
		log_error("proc", "cannot watch SIGCHLD/SIGUSR1");
		return -ENOMEM;
	}
	initialized = true;
	proc_fds_init();
	/* children that ended before we watched */
	sigchld_cb(-1, 0, NULL);
	return 0;
}

void proc_cleanup(void)
{
	struct pool *pl;
	struct proc *p;

	if (!initialized)
		return;
	gc_cb(-1, 0, NULL);
	strays_kill_all();
	while ((p = TAILQ_FIRST(&oneshots)))
		proc_destroy(p);
	while ((pl = TAILQ_FIRST(&pools))) {
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i])
				proc_destroy(pl->members[i]);
		pool_free(pl);
	}
	stdin_feed_cleanup();
	proc_spawn_cleanup();
	procreg_close(); /* nothing runs: nothing is left to record */
	event_free(ev_sigchld);
	event_free(ev_sigusr1);
	event_free(ev_gc);
	shutdown_cleanup();
	ev_sigchld = ev_sigusr1 = ev_gc = NULL;
	initialized = false;
	proc_cgroup_cleanup();
}
