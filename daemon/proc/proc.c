/*
 * Processes and pools: creation, the state machine's entry actions,
 * reaping, stopping with escalation, one-shot retention, shutdown and
 * reload. Nothing polls: SIGCHLD (reaping), per-process timers (start_secs,
 * backoff, stop timeout) and requests drive everything.
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
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "daemon.h"
#include "jsonw.h"
#include "events.h"
#include "log.h"
#include "proc.h"
#include "proc_registry.h"
#include "proc_spawn.h"

/* A run shorter than this never resets backoff, whatever start_secs says
 * (no hot restart loop with start_secs = 0). */
#define STABLE_MIN_SECS 1.0
#define PID_BUCKETS 4096

struct pool_list pools = TAILQ_HEAD_INITIALIZER(pools);
struct proc_list oneshots = TAILQ_HEAD_INITIALIZER(oneshots);
static struct proc_list group_waits = TAILQ_HEAD_INITIALIZER(group_waits);
static struct proc_list free_list = TAILQ_HEAD_INITIALIZER(free_list);

/*
 * A stray group: what is left of a process group whose main process died on
 * its own (a crash, a kill, an exit with children in the background). Like
 * systemd's control-group kill mode, the rest of the group gets the stop
 * signal at once and SIGKILL after stop_timeout, so a worker's children
 * never outlive it; a restart does not wait for that (it runs in a new
 * group). The daemon is a subreaper, so the leftovers are its to reap.
 */
struct stray {
	pid_t pgid;
	pid_t leader;          /* its main process (gone), for the registry */
	uint64_t start_lo, start_hi;
	int stop_signal;
	double stop_timeout;
	struct event *timer;   /* SIGKILL at stop_timeout */
	TAILQ_ENTRY(stray) entry;
	char name[160];        /* the process name, for the log */
	char pool[96];         /* its pool's name, "" for a one-shot */
};
static TAILQ_HEAD(, stray) strays = TAILQ_HEAD_INITIALIZER(strays);
static unsigned n_strays;

/* The journal fields of a message about p (its run with pid). */
#define PROC_FIELDS(p, pid) \
	(&(struct log_fields){ (p)->pool ? (p)->pool->name : NULL, (p)->name, (pid) })

static struct proc *pid_hash[PID_BUCKETS];
static struct event *ev_sigchld, *ev_sigusr1, *ev_gc, *ev_shutdown, *ev_shutdown_deadline;
static unsigned n_members, n_oneshots, n_oneshots_finished;
static unsigned run_counter;
static bool initialized;

static struct {
	bool active;
	bool deadline_passed;   /* non-daemon one-shots waited long enough */
	void (*done)(void);
} shut;

static void proc_feed(struct proc *p, enum proc_event ev);
static void proc_after(struct proc *p);
static void pool_free(struct pool *pl);

/* The config being applied by proc_reload (daemon_g.conf is still the old one). */
static const struct conf *reloading;

/* The max_processes in force: the new config's while a reload applies it. */
static unsigned max_processes(void)
{
	return (reloading ? reloading : daemon_g.conf)->max_processes;
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

/*
 * Records.
 */

unsigned proc_count(void)
{
	return n_members + n_oneshots - n_oneshots_finished;
}

bool proc_is_alive(const struct proc *p)
{
	return proc_state_alive(p->state);
}

void proc_record_write(const struct proc *p, struct jsonw *w)
{
	bool alive = proc_is_alive(p);

	jsonw_open(w, '{');
	jsonw_key(w, "name");
	jsonw_str(w, p->name);
	jsonw_key(w, "pool");
	jsonw_str(w, p->pool ? p->pool->name : NULL);
	jsonw_key(w, "index");
	if (p->pool)
		jsonw_int(w, p->index);
	else
		jsonw_null(w);
	jsonw_key(w, "pid");
	if (p->pid)
		jsonw_int(w, p->pid);
	else
		jsonw_null(w);
	jsonw_key(w, "state");
	jsonw_str(w, proc_state_name(p->state));
	jsonw_key(w, "is_alive");
	jsonw_bool(w, alive);
	jsonw_key(w, "exitcode");
	if (proc_exitcode_known(p))
		jsonw_int(w, p->exitcode);
	else
		jsonw_null(w);
	jsonw_key(w, "started_at");
	if (p->started_wall > 0)
		jsonw_secs(w, p->started_wall);
	else
		jsonw_null(w);
	jsonw_key(w, "uptime");
	if (alive && p->started_mono > 0)
		jsonw_secs(w, now_mono() - p->started_mono);
	else
		jsonw_null(w);
	jsonw_key(w, "restarts");
	jsonw_int(w, p->restarts);
	jsonw_key(w, "exit_status_text");
	jsonw_str(w, p->exit_status_text);
	proc_notify_record_write(p, w);
	jsonw_close(w, '}');
}

bool proc_exitcode_known(const struct proc *p)
{
	return !proc_is_alive(p) && p->has_exitcode;
}

static void set_text(struct proc *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_text(struct proc *p, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(p->exit_status_text);
	p->exit_status_text = s;
}

static void publish_state(struct proc *p, enum proc_state from, enum proc_state to, pid_t pid,
			  bool has_code, int code)
{
	if (!events_wanted(TOPIC_PROCESS))
		return;
	events_publish(TOPIC_PROCESS,
		       json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:f}", "event", "process.state",
				 "name", p->name, "from", proc_state_name(from), "to",
				 proc_state_name(to), "pid", pid ? json_integer(pid) : json_null(),
				 "exitcode", has_code ? json_integer(code) : json_null(), "ts",
				 now_wall()));
}

static void publish_pool(const char *event, struct pool *pl)
{
	if (!events_wanted(TOPIC_POOL))
		return;
	events_publish(TOPIC_POOL, json_pack("{s:s, s:s, s:I, s:f}", "event", event, "pool",
					     pl->name, "processes",
					     (json_int_t)pl->conf->processes, "ts", now_wall()));
}

/*
 * Process objects.
 */

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static struct proc *proc_new(const char *name, struct pool *pl, unsigned index)
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
	p->pidfd = -1;
	p->state = PS_STOPPED;
	return p;
}

struct oneshot *oneshot_free(struct oneshot *os)
{
	if (!os)
		return NULL;
	conf_strv_free(os->argv);
	conf_strv_free(os->env);
	free(os->cwd);
	free(os->stdin_data);
	run_ids_clear(&os->ids);
	free(os);
	return NULL;
}

/*
 * Observers (proc.h): the parts built on supervision, called in the order
 * they registered.
 */
static const struct proc_observer *observers[PROC_MAX_OBSERVERS];
static unsigned n_observers;

int proc_observe(const struct proc_observer *o)
{
	if (n_observers == PROC_MAX_OBSERVERS)
		return -ENOSPC;
	observers[n_observers++] = o;
	return 0;
}

#define FOR_OBSERVERS(member, ...)                                  \
	for (unsigned i_ = 0; i_ < n_observers; i_++)               \
		if (observers[i_]->member)                          \
			observers[i_]->member(__VA_ARGS__)

void proc_notify_settled(struct proc *p)
{
	FOR_OBSERVERS(settled, p);
}

void proc_notify_exited(struct proc *p)
{
	FOR_OBSERVERS(exited, p);
}

void proc_notify_gone(struct proc *p)
{
	FOR_OBSERVERS(gone, p);
}

void proc_notify_pool_gone(struct pool *pl)
{
	FOR_OBSERVERS(pool_gone, pl);
}

void proc_notify_output_line(struct proc *p, const struct logline *l)
{
	FOR_OBSERVERS(output_line, p, l);
}

void proc_notify_record_write(const struct proc *p, struct jsonw *w)
{
	FOR_OBSERVERS(record_write, p, w);
}

bool proc_notify_channel(struct proc *p, int in_fd, int out_fd)
{
	for (unsigned i = 0; i < n_observers; i++)
		if (observers[i]->channel) {
			observers[i]->channel(p, in_fd, out_fd);
			return true;
		}
	return false;
}

/* Release everything of p (not running). */
static void proc_destroy(struct proc *p)
{
	proc_notify_gone(p);
	if (p->pid)
		pid_remove(p);
	if (p->group_wait)
		TAILQ_REMOVE(&group_waits, p, gentry);
	if (p->pidfd >= 0)
		close(p->pidfd);
	event_free(p->timer);
	p->out = outpipe_free(p->out);
	p->err = outpipe_free(p->err);
	logring_clear(&p->ring);
	if (p->pool) {
		if (p->index < p->pool->n_slots && p->pool->members[p->index] == p)
			p->pool->members[p->index] = NULL;
		n_members--;
	} else if (p->os) {
		TAILQ_REMOVE(&oneshots, p, os->entry);
		n_oneshots--;
		if (p->os->finished > 0)
			n_oneshots_finished--;
		oneshot_free(p->os);
	}
	free(p->exit_status_text);
	free(p->name);
	free(p);
}

/* Free p after the current callback. */
static void proc_free_later(struct proc *p)
{
	if (p->freed)
		return;
	p->freed = true;
	if (p->group_wait) {
		TAILQ_REMOVE(&group_waits, p, gentry);
		p->group_wait = false;
	}
	TAILQ_INSERT_TAIL(&free_list, p, gentry);
	event_active(ev_gc, EV_TIMEOUT, 0);
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
		if (pl && pl->removing) {
			unsigned left = 0;
			for (unsigned i = 0; i < pl->n_slots; i++)
				left += pl->members[i] != NULL;
			if (left == 0)
				pool_free(pl);
		}
	}
}

/*
 * Signals and groups.
 */

int proc_signal(struct proc *p, int sig)
{
	int r;

	if (!p->pid)
		return -ESRCH;
	if (p->pidfd >= 0) {
		r = (int)syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
		if (r == 0 || errno != ENOSYS)
			return r < 0 ? -errno : 0;
	}
	return kill(p->pid, sig) < 0 ? -errno : 0;
}

static bool group_alive(pid_t pgid)
{
	return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM);
}

static void signal_group(struct proc *p, int sig)
{
	if (p->pgid <= 0)
		return;
	if (kill(-p->pgid, sig) < 0 && errno != ESRCH)
		log_warn_f("proc", PROC_FIELDS(p, p->pid), "%s: kill(-%d, %s): %s", p->name,
			   (int)p->pgid,
			 conf_signal_name(sig) ? conf_signal_name(sig) : "?", strerror(errno));
}

/* p's stop signal to its whole group, and SIGCONT so a stopped process
 * sees it. */
static void signal_group_stop(struct proc *p)
{
	signal_group(p, p->stop_signal);
	if (p->stop_signal != SIGKILL && p->stop_signal != SIGCONT)
		signal_group(p, SIGCONT);
}

/* Is pgid the group of a process we run now? */
static bool pgid_in_use(pid_t pgid)
{
	for (unsigned b = 0; b < PID_BUCKETS; b++)
		for (struct proc *p = pid_hash[b]; p; p = p->hnext)
			if (p->pgid == pgid)
				return true;
	return false;
}

static struct stray *stray_free(struct stray *g)
{
	TAILQ_REMOVE(&strays, g, entry);
	n_strays--;
	procreg_remove(g->leader, g->start_lo);
	event_free(g->timer);
	free(g);
	return NULL;
}

static void stray_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stray *g = arg;
	struct log_fields f = { g->pool[0] ? g->pool : NULL, g->name, g->pgid };

	(void)fd;
	(void)what;
	/* The group id could have been taken again (its last member reaped by
	 * someone else, the id reused): never kill a group of ours. */
	if (group_alive(g->pgid) && !pgid_in_use(g->pgid)) {
		log_warn_f("proc", &f, "%s: the rest of group %d still runs: SIGKILL", g->name,
			   (int)g->pgid);
		kill(-g->pgid, SIGKILL);
	}
	stray_free(g);
}

/* p's main process died while not being stopped: end the rest of its group
 * (stop signal now, SIGKILL after stop_timeout). True when a stray now
 * holds the group. */
static bool stray_start(struct proc *p)
{
	struct timeval tv = tv_from_secs(p->stop_timeout);
	struct stray *g;

	if (!group_alive(p->pgid))
		return false;
	log_info_f("proc", PROC_FIELDS(p, p->pgid),
		   "%s: main process gone, stopping the rest of group %d", p->name, (int)p->pgid);
	signal_group_stop(p);
	if (p->stop_signal == SIGKILL)
		return false;
	if (!(g = calloc(1, sizeof(*g))) ||
	    !(g->timer = evtimer_new(daemon_g.base, stray_timer_cb, g))) {
		free(g);
		kill(-p->pgid, SIGKILL); /* no memory to wait: do not leave it */
		return false;
	}
	g->pgid = p->pgid;
	g->leader = p->last_pid;
	g->start_lo = p->start_lo;
	g->start_hi = p->start_hi;
	g->stop_signal = p->stop_signal;
	g->stop_timeout = p->stop_timeout;
	snprintf(g->name, sizeof(g->name), "%s", p->name);
	snprintf(g->pool, sizeof(g->pool), "%s", p->pool ? p->pool->name : "");
	TAILQ_INSERT_TAIL(&strays, g, entry);
	n_strays++;
	evtimer_add(g->timer, &tv);
	return true;
}

/* Forget stray groups that are gone (after reaping). */
static void check_strays(void)
{
	struct stray *g, *next;

	for (g = TAILQ_FIRST(&strays); g; g = next) {
		next = TAILQ_NEXT(g, entry);
		if (!group_alive(g->pgid))
			stray_free(g);
	}
}

/* Shutdown: nothing may outlive the daemon. */
static void strays_kill_all(void)
{
	struct stray *g;

	while ((g = TAILQ_FIRST(&strays))) {
		if (group_alive(g->pgid))
			kill(-g->pgid, SIGKILL);
		stray_free(g);
	}
}

unsigned proc_stray_groups(void)
{
	return n_strays;
}

/* p's run as a registry record (its leader: pid, or last_pid once reaped). */
static struct procreg_rec proc_rec(const struct proc *p, pid_t leader)
{
	return (struct procreg_rec){ leader, p->pgid, p->start_lo, p->start_hi,
				     p->stop_signal, p->stop_timeout, p->name };
}

void proc_registry_each(void (*fn)(const struct procreg_rec *r, void *arg), void *arg)
{
	struct procreg_rec r;
	struct stray *g;
	struct proc *p;

	for (unsigned b = 0; b < PID_BUCKETS; b++)
		for (p = pid_hash[b]; p; p = p->hnext) {
			r = proc_rec(p, p->pid);
			fn(&r, arg);
		}
	/* stopping, main process reaped, the rest of its group not yet gone */
	TAILQ_FOREACH(p, &group_waits, gentry) {
		r = proc_rec(p, p->last_pid);
		fn(&r, arg);
	}
	TAILQ_FOREACH(g, &strays, entry) {
		r = (struct procreg_rec){ g->leader, g->pgid, g->start_lo, g->start_hi,
					  g->stop_signal, g->stop_timeout, g->name };
		fn(&r, arg);
	}
}

/*
 * The state machine's inputs and entry actions.
 */

static struct proc_fsm_input fsm_input(const struct proc *p, enum proc_event ev)
{
	struct proc_fsm_input in = { false, false, false };
	const struct pool_conf *c;
	double stable_after;

	if (!p->pool || shut.active || p->removing || p->pool->removing)
		return in;
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
	in.stable = p->started_mono > 0 &&
		    (now_mono() - p->started_mono >= stable_after ||
		     (p->state == PS_RUNNING && c->start_secs >= STABLE_MIN_SECS));
	return in;
}

static void timer_arm(struct proc *p, double secs)
{
	struct timeval tv = tv_from_secs(secs);

	/* From now, not from the loop's cached time (a spawn took a while). */
	event_base_update_cache_time(daemon_g.base);
	evtimer_add(p->timer, &tv);
}

/* Begin a run: returns PE_START_SECS when there is no start_secs to wait,
 * PE_SPAWN_FAILED on failure, PE_NONE otherwise. */
static enum proc_event enter_starting(struct proc *p, enum proc_state from)
{
	char err[512];
	double start_secs = p->pool ? p->pool->conf->start_secs : 0;
	struct procreg_rec rec;

	if (from == PS_RUNNING)
		p->failures = 0; /* a stable run ended: backoff starts over */
	if (proc_spawn(p, err, sizeof(err)) < 0) {
		char line[600];
		p->has_exitcode = true;
		p->exitcode = 127;
		set_text(p, "%s", err);
		snprintf(line, sizeof(line), "mpsupd: %s", err);
		proc_output_line(p, STREAM_STDERR, line, strlen(line));
		log_warn_f("proc", PROC_FIELDS(p, 0), "%s: %s", p->name, err);
		return PE_SPAWN_FAILED;
	}
	if (p->spawns++ > 0)
		p->restarts++;
	p->started_wall = now_wall();
	p->started_mono = now_mono();
	p->has_exitcode = false;
	free(p->exit_status_text);
	p->exit_status_text = NULL;
	p->stop_signal = p->pool ? p->pool->conf->stop_signal : SIGTERM;
	p->stop_timeout = p->pool ? p->pool->conf->stop_timeout : 10;
	pid_insert(p);
	rec = proc_rec(p, p->pid);
	procreg_add(&rec);
	log_debug_f("proc", PROC_FIELDS(p, p->pid), "%s: spawned pid %d", p->name, (int)p->pid);
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
	case PS_STARTING:
		evtimer_del(p->timer);
		return enter_starting(p, from);
	case PS_RUNNING:
		evtimer_del(p->timer);
		return PE_NONE;
	case PS_BACKOFF:
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
			signal_group(p, SIGKILL);
			timer_arm(p, p->stop_timeout);
			return PE_NONE;
		}
		signal_group_stop(p);
		timer_arm(p, p->stop_timeout);
		return PE_NONE;
	case PS_STOPPED:
	case PS_EXITED:
		evtimer_del(p->timer);
		if (p->restart_pending && !p->removing && !shut.active) {
			p->restart_pending = false;
			p->failures = 0;
			return PE_START;
		}
		p->restart_pending = false;
		return PE_NONE;
	default:
		return PE_NONE;
	}
}

/* Feed ev to p's state machine, running entry actions and follow-ups. */
static void proc_feed(struct proc *p, enum proc_event ev)
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
	proc_notify_settled(p); /* waiters see no intermediate state */
	proc_after(p);
}

/* Book-keeping once p settled: free removed processes, one-shot
 * retention, shutdown progress. */
static void proc_after(struct proc *p)
{
	if (p->freed)
		return;
	if (p->os && proc_state_final(p->state) && p->os->finished == 0) {
		p->os->finished = now_mono();
		n_oneshots_finished++;
		if (daemon_g.conf && n_oneshots_finished > daemon_g.conf->max_oneshots) {
			struct proc *q;
			TAILQ_FOREACH(q, &oneshots, os->entry)
				if (q->os->finished > 0 && !q->freed) {
					log_debug("proc", "%s: record evicted (max_oneshots)", q->name);
					proc_free_later(q);
					break;
				}
		}
	}
	if (p->removing && proc_state_final(p->state) && !p->restart_pending)
		proc_free_later(p);
	if (shut.active && proc_state_final(p->state))
		event_active(ev_shutdown, EV_TIMEOUT, 0);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;

	(void)fd;
	(void)what;
	switch (p->state) {
	case PS_STARTING:
		proc_feed(p, PE_START_SECS);
		break;
	case PS_BACKOFF:
		proc_feed(p, PE_BACKOFF_ELAPSED);
		break;
	case PS_STOPPING:
		proc_feed(p, PE_STOP_TIMEOUT);
		break;
	default:
		break;
	}
}

/*
 * Reaping.
 */

static void describe_status(struct proc *p, int st)
{
	if (WIFSIGNALED(st)) {
		const char *name = conf_signal_name(WTERMSIG(st));
		set_text(p, "killed by signal %d (SIG%s)%s", WTERMSIG(st), name ? name : "?",
			 WCOREDUMP(st) ? ", core dumped" : "");
	} else
		set_text(p, "exited with status %d", WEXITSTATUS(st));
}

/* The main process of p ended with wait status st. */
static void proc_died(struct proc *p, int st)
{
	pid_remove(p);
	p->last_pid = p->pid;
	p->pid = 0;
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
	p->has_exitcode = true;
	p->exitcode = proc_exitcode(st);
	describe_status(p, st);
	log_info_f("proc", PROC_FIELDS(p, p->last_pid), "%s (pid %d) %s", p->name,
		   (int)p->last_pid, p->exit_status_text);
	proc_notify_exited(p); /* before a restart replaces its pipes */
	if (p->state == PS_STOPPING && group_alive(p->pgid)) {
		/* the rest of its group got the stop signal too: wait for it */
		p->group_wait = true;
		TAILQ_INSERT_TAIL(&group_waits, p, gentry);
		return;
	}
	/* the group is gone, unless a stray now holds it */
	if (p->state == PS_STOPPING || !stray_start(p))
		procreg_remove(p->last_pid, p->start_lo);
	proc_feed(p, PE_DIED);
}

static void check_group_waits(void)
{
	struct proc *p, *next;

	for (p = TAILQ_FIRST(&group_waits); p; p = next) {
		next = TAILQ_NEXT(p, gentry);
		if (group_alive(p->pgid))
			continue;
		TAILQ_REMOVE(&group_waits, p, gentry);
		p->group_wait = false;
		procreg_remove(p->last_pid, p->start_lo);
		proc_feed(p, PE_DIED);
		next = TAILQ_FIRST(&group_waits); /* the list may have changed */
	}
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
	check_group_waits();
	check_strays();
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
 * One-shots.
 */

void oneshot_gen_name(char *buf, size_t len)
{
	do
		snprintf(buf, len, "run-%u", ++run_counter);
	while (proc_find(buf) || pool_find(buf));
}

struct proc *oneshot_run(const char *name, struct oneshot *os, char *err, size_t errlen)
{
	struct proc *p = proc_new(name, NULL, 0);

	if (!p) {
		oneshot_free(os);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->os = os;
	TAILQ_INSERT_TAIL(&oneshots, p, os->entry);
	n_oneshots++;
	proc_feed(p, PE_START);
	if (p->spawns == 0) {
		snprintf(err, errlen, "%s", p->exit_status_text ? p->exit_status_text : "spawn failed");
		proc_free_later(p);
		return NULL;
	}
	return p;
}

void oneshot_forget(struct proc *p)
{
	if (p->os && !proc_state_alive(p->state))
		proc_free_later(p);
}

/*
 * Pools.
 */

struct pool *pool_find(const char *name)
{
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry)
		if (!pl->removing && strcmp(pl->name, name) == 0)
			return pl;
	return NULL;
}

struct proc *proc_find(const char *name)
{
	const char *colon = strrchr(name, ':');
	struct proc *p;

	if (colon) {
		char pname[80], *end;
		unsigned long idx;
		struct pool *pl;

		if ((size_t)(colon - name) >= sizeof(pname) || !colon[1])
			return NULL;
		memcpy(pname, name, (size_t)(colon - name));
		pname[colon - name] = '\0';
		errno = 0;
		idx = strtoul(colon + 1, &end, 10);
		if (*end || errno || colon[1] < '0' || colon[1] > '9')
			return NULL;
		if (!(pl = pool_find(pname)) || idx >= pl->n_slots)
			return NULL;
		return pl->members[idx];
	}
	TAILQ_FOREACH(p, &oneshots, os->entry)
		if (!p->freed && strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static void pool_clear_ids(struct pool *pl)
{
	free(pl->groups);
	free(pl->home);
	free(pl->user_name);
	free(pl->shell);
	free(pl->ids_error);
	pl->groups = NULL;
	pl->home = pl->user_name = pl->shell = pl->ids_error = NULL;
	pl->set_ids = false;
	pl->n_groups = 0;
}

static bool parse_id(const char *s, unsigned long *ret)
{
	char *end;

	if (!s[0] || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	*ret = strtoul(s, &end, 10);
	return !*end && !errno;
}

void run_ids_clear(struct run_ids *ids)
{
	free(ids->groups);
	free(ids->home);
	free(ids->user_name);
	free(ids->shell);
	memset(ids, 0, sizeof(*ids));
}

int run_ids_resolve(const char *user, const char *group, struct run_ids *ret, char **ret_error)
{
	struct run_ids ids = { .uid = geteuid(), .gid = getegid() };
	struct passwd *pw = NULL;
	unsigned long id;
	int ng = 64;

	*ret_error = NULL;
	if (user) {
		bool numeric = parse_id(user, &id);
		pw = numeric ? getpwuid((uid_t)id) : getpwnam(user);
		if (!pw && !numeric) {
			if (asprintf(ret_error, "user %s: no such user", user) < 0)
				*ret_error = NULL;
			return -ENOENT;
		}
		ids.uid = pw ? pw->pw_uid : (uid_t)id;
		ids.gid = pw ? pw->pw_gid : (gid_t)ids.uid;
		if (pw) {
			ids.user_name = strdup(pw->pw_name);
			ids.home = strdup(pw->pw_dir);
			ids.shell = strdup(pw->pw_shell);
		}
	}
	if (group) {
		struct group *gr;
		if (parse_id(group, &id))
			ids.gid = (gid_t)id;
		else if ((gr = getgrnam(group)))
			ids.gid = gr->gr_gid;
		else {
			run_ids_clear(&ids);
			if (asprintf(ret_error, "group %s: no such group", group) < 0)
				*ret_error = NULL;
			return -ENOENT;
		}
	}
	/* Supplementary groups: the user's (as root), else just the gid. A
	 * list that cannot be had is an error, never a partial list. */
	ids.groups = calloc((size_t)ng, sizeof(gid_t));
	if (ids.groups && pw && ids.user_name && geteuid() == 0 &&
	    getgrouplist(ids.user_name, ids.gid, ids.groups, &ng) < 0) {
		gid_t *g = realloc(ids.groups, (size_t)ng * sizeof(gid_t));
		if (g && getgrouplist(ids.user_name, ids.gid, g, &ng) >= 0) {
			ids.groups = g;
		} else {
			free(g ? g : ids.groups); /* a failed second try freed too */
			ids.groups = NULL;
		}
	} else if (ids.groups && !(pw && geteuid() == 0)) {
		ids.groups[0] = ids.gid;
		ng = 1;
	}
	if (!ids.groups || (pw && (!ids.user_name || !ids.home || !ids.shell))) {
		run_ids_clear(&ids);
		if (asprintf(ret_error, "%s: cannot read its groups (out of memory)",
			     user ? user : group) < 0)
			*ret_error = NULL;
		return -ENOMEM;
	}
	ids.n_groups = ng;
	*ret = ids;
	return 0;
}

/* Resolve the pool's user and group once (not at every spawn). */
static void pool_resolve_ids(struct pool *pl)
{
	const struct pool_conf *c = pl->conf;
	struct run_ids ids;

	pool_clear_ids(pl);
	if (!c->user && !c->group)
		return;
	if (run_ids_resolve(c->user, c->group, &ids, &pl->ids_error) < 0)
		return;
	pl->uid = ids.uid;
	pl->gid = ids.gid;
	pl->groups = ids.groups;
	pl->n_groups = ids.n_groups;
	pl->user_name = ids.user_name;
	pl->home = ids.home;
	pl->shell = ids.shell;
	/* an unprivileged daemon running the pool as itself changes nothing */
	pl->set_ids = !(geteuid() != 0 && pl->uid == geteuid() && pl->gid == getegid());
}

/* The output files of the pool, written for the user its members run as
 * (resolved before). A pool whose user is unknown runs nothing: no files. */
static void pool_open_outputs(struct pool *pl)
{
	struct safe_owner owner = {
		.uid = pl->set_ids ? pl->uid : geteuid(),
		.gid = pl->set_ids ? pl->gid : getegid(),
		.groups = pl->set_ids ? pl->groups : NULL,
		.n_groups = pl->set_ids && pl->n_groups > 0 ? (size_t)pl->n_groups : 0,
	};

	pl->out = outfile_free(pl->out);
	pl->err = outfile_free(pl->err);
	pl->err_to_out = false;
	if (pl->ids_error)
		return;
	if (pl->conf->out.kind == OUTPUT_FILE)
		pl->out = outfile_open(&pl->conf->out, &owner);
	if (pl->conf->err.kind == OUTPUT_FILE) {
		/* stdout and stderr into one file: share it */
		if (pl->out && strcmp(pl->conf->err.path, pl->conf->out.path) == 0)
			pl->err_to_out = true;
		else
			pl->err = outfile_open(&pl->conf->err, &owner);
	}
}

/* The file of a stream (stderr may share stdout's). */
void pools_reopen_logs(void)
{
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry) {
		if (pl->out)
			outfile_reopen(pl->out);
		if (pl->err)
			outfile_reopen(pl->err);
	}
}

/* Make room for index idx. */
static int pool_reserve(struct pool *pl, unsigned idx)
{
	struct proc **m;
	unsigned n;

	if (idx < pl->n_slots)
		return 0;
	n = idx + 1 > pl->n_slots * 2 ? idx + 1 : pl->n_slots * 2;
	if (!(m = realloc(pl->members, n * sizeof(*m))))
		return -ENOMEM;
	memset(m + pl->n_slots, 0, (n - pl->n_slots) * sizeof(*m));
	pl->members = m;
	pl->n_slots = n;
	return 0;
}

static struct proc *pool_add_member(struct pool *pl, unsigned idx)
{
	char name[96];
	struct proc *p;

	if (pool_reserve(pl, idx) < 0)
		return NULL;
	snprintf(name, sizeof(name), "%s:%u", pl->name, idx);
	if (!(p = proc_new(name, pl, idx)))
		return NULL;
	pl->members[idx] = p;
	n_members++;
	return p;
}

static unsigned pool_active(const struct pool *pl)
{
	unsigned n = 0;

	for (unsigned i = 0; i < pl->n_slots; i++)
		n += pl->members[i] && !pl->members[i]->removing;
	return n;
}

/* Grow or shrink to n members; new members start when start is set. */
static int pool_resize(struct pool *pl, unsigned n, bool start)
{
	unsigned active = pool_active(pl);

	if (n > active && proc_count() + (n - active) > max_processes())
		return -ENOSPC;
	for (unsigned idx = 0; active < n; idx++) {
		struct proc *p = idx < pl->n_slots ? pl->members[idx] : NULL;
		if (p && !p->removing)
			continue;
		if (p) {
			/* still stopping after a shrink: keep it, start it again */
			p->removing = false;
			if (p->freed) {
				TAILQ_REMOVE(&free_list, p, gentry);
				p->freed = false;
			}
			if (start)
				proc_start(p);
		} else {
			if (!(p = pool_add_member(pl, idx)))
				return -ENOMEM;
			if (start)
				proc_start(p);
		}
		active++;
	}
	for (unsigned idx = pl->n_slots; idx-- > 0 && active > n;) {
		struct proc *p = pl->members[idx];
		if (!p || p->removing)
			continue;
		p->removing = true;
		active--;
		proc_stop(p);
		proc_after(p);
	}
	pl->conf->processes = n;
	return 0;
}

int pool_create(const struct pool_conf *pc, bool start, bool from_config, struct pool **ret)
{
	struct pool *pl;
	int r;

	if (pool_find(pc->name) || proc_find(pc->name))
		return -EEXIST;
	if (proc_count() + pc->processes > max_processes())
		return -ENOSPC;
	if (!(pl = calloc(1, sizeof(*pl))))
		return -ENOMEM;
	if (!(pl->name = strdup(pc->name)) || !(pl->conf = pool_conf_dup(pc))) {
		free(pl->name);
		free(pl);
		return -ENOMEM;
	}
	pl->conf->processes = 0;
	pl->from_config = from_config;
	pool_resolve_ids(pl);
	if (pl->ids_error)
		log_error("proc", "pool %s: %s", pl->name, pl->ids_error);
	pool_open_outputs(pl);
	TAILQ_INSERT_TAIL(&pools, pl, entry);
	server_refresh_roles(); /* its user may connect with the state role now */
	r = pool_resize(pl, pc->processes, start && !shut.active);
	publish_pool("pool.added", pl);
	log_info("proc", "pool %s: added (%u processes)", pl->name, pc->processes);
	if (ret)
		*ret = pl;
	return r;
}

static void pool_free(struct pool *pl)
{
	log_info("proc", "pool %s: removed", pl->name);
	publish_pool("pool.removed", pl);
	TAILQ_REMOVE(&pools, pl, entry);
	server_refresh_roles();
	proc_notify_pool_gone(pl);
	outfile_free(pl->out);
	outfile_free(pl->err);
	pool_clear_ids(pl);
	pool_conf_free(pl->conf);
	free(pl->members);
	free(pl->name);
	free(pl);
}

void pool_remove(struct pool *pl)
{
	bool any = false;

	if (pl->removing)
		return;
	pl->removing = true;
	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct proc *p = pl->members[i];
		if (!p)
			continue;
		any = true;
		p->removing = true;
		proc_stop(p);
		proc_after(p);
	}
	if (!any)
		pool_free(pl);
}

int pool_scale(struct pool *pl, unsigned processes)
{
	int r = pool_resize(pl, processes, !shut.active);

	if (r == 0) {
		log_info("proc", "pool %s: scaled to %u", pl->name, processes);
		publish_pool("pool.scaled", pl);
	}
	return r;
}

int pool_replace(struct pool *pl, const struct pool_conf *pc)
{
	struct pool_conf *c = pool_conf_dup(pc);
	unsigned keep;
	int r;

	if (!c)
		return -ENOMEM;
	keep = pl->conf->processes;
	pool_conf_free(pl->conf);
	pl->conf = c;
	c->processes = keep;
	pool_resolve_ids(pl);
	server_refresh_roles();
	if (pl->ids_error)
		log_error("proc", "pool %s: %s", pl->name, pl->ids_error);
	pool_open_outputs(pl);
	/* survivors restart with the new definition; new members start fresh */
	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct proc *p = pl->members[i];
		if (!p || p->removing)
			continue;
		if (proc_state_alive(p->state))
			proc_restart(p);
		else if (c->autostart)
			proc_start(p);
	}
	r = pool_resize(pl, pc->processes, c->autostart && !shut.active);
	log_info("proc", "pool %s: definition changed, restarting", pl->name);
	publish_pool("pool.changed", pl);
	return r;
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
	/* children that ended before we watched */
	sigchld_cb(-1, 0, NULL);
	return 0;
}

/* The pools of conf sorted by priority (low first; file order within). */
static const struct pool_conf **sorted_pools(const struct conf *conf, size_t *ret_n)
{
	const struct pool_conf **v;
	size_t n = 0;

	for (const struct pool_conf *pc = conf->pools; pc; pc = pc->next)
		n++;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return NULL;
	n = 0;
	for (const struct pool_conf *pc = conf->pools; pc; pc = pc->next)
		v[n++] = pc;
	/* insertion sort: stable, so file order is kept within a priority */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && v[j - 1]->priority > v[j]->priority; j--) {
			const struct pool_conf *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	*ret_n = n;
	return v;
}

int proc_start_config(const struct conf *conf)
{
	const struct pool_conf **v;
	size_t n;
	int r;

	if ((r = proc_init()) < 0)
		return r;
	/* what a crashed daemon left goes before anything starts */
	procreg_start();
	if (!(v = sorted_pools(conf, &n)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		r = pool_create(v[i], v[i]->autostart, true, NULL);
		if (r == -ENOSPC)
			log_error("proc", "pool %s: not started: max_processes (%u) reached",
				  v[i]->name, conf->max_processes);
		else if (r < 0)
			log_error("proc", "pool %s: %s", v[i]->name, strerror(-r));
	}
	free(v);
	return 0;
}

/* Record (and log) a pool the reload could not apply. */
static void reload_failed(json_t *failed, const char *pool, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reload_failed(json_t *failed, const char *pool, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error_f("proc", &(struct log_fields){ .pool = pool }, "reload: pool %s: %s", pool,
		    msg);
	json_array_append_new(failed, json_pack("{s:s, s:s}", "pool", pool, "error", msg));
}

/* Why a pool could not be created or resized, for reload_failed(). */
static const char *pool_error(int r)
{
	static char buf[64];

	if (r != -ENOSPC)
		return strerror(-r);
	snprintf(buf, sizeof(buf), "max_processes (%u) reached", max_processes());
	return buf;
}

/* Apply newconf to the pools; changes gets only what was really done, and
 * failed: [{pool, error}] what could not be. */
void proc_reload(const struct conf *newconf, json_t *changes)
{
	json_t *added = json_object_get(changes, "added");
	json_t *changed = json_object_get(changes, "changed");
	json_t *removed = json_object_get(changes, "removed");
	json_t *failed = json_object_get(changes, "failed");
	const struct pool_conf **v;
	struct pool *pl, *next;
	size_t n;
	int r;

	if (!(v = sorted_pools(newconf, &n))) {
		log_error("proc", "reload: out of memory");
		return;
	}
	reloading = newconf;
	for (size_t i = 0; i < n; i++) {
		const struct pool_conf *pc = v[i];
		if (!(pl = pool_find(pc->name))) {
			if (proc_find(pc->name)) {
				reload_failed(failed, pc->name,
					      "not added: the name is taken by a one-shot process");
				continue;
			}
			pl = NULL;
			r = pool_create(pc, pc->autostart, true, &pl);
			if (pl)
				json_array_append_new(added, json_string(pc->name));
			if (r < 0 && pl)
				reload_failed(failed, pc->name, "added, but not with %u processes: %s",
					      pc->processes, pool_error(r));
			else if (r < 0)
				reload_failed(failed, pc->name, "not added (%u processes): %s",
					      pc->processes, pool_error(r));
			continue;
		}
		pl->from_config = true;
		if (pool_conf_differs(pl->conf, pc)) {
			/* the new definition is in place even when the resize fails */
			r = pool_replace(pl, pc);
			json_array_append_new(changed, json_string(pc->name));
			if (r < 0)
				reload_failed(failed, pc->name,
					      "definition changed, but not scaled to %u processes "
					      "(still %u): %s",
					      pc->processes, pl->conf->processes, pool_error(r));
		} else if (pl->conf->processes != pc->processes) {
			unsigned before = pl->conf->processes;
			r = pool_scale(pl, pc->processes);
			if (r == 0)
				json_array_append_new(changed, json_string(pc->name));
			else
				reload_failed(failed, pc->name, "not scaled from %u to %u processes: %s",
					      before, pc->processes, pool_error(r));
		}
	}
	for (pl = TAILQ_FIRST(&pools); pl; pl = next) {
		next = TAILQ_NEXT(pl, entry);
		if (pl->removing || !pl->from_config || conf_find_pool(newconf, pl->name))
			continue;
		json_array_append_new(removed, json_string(pl->name));
		pool_remove(pl); /* may free pl */
	}
	reloading = NULL;
	free(v);
}

/*
 * Shutdown: daemon one-shots are stopped at once; non-daemon ones are
 * waited for up to shutdown_timeout, then stopped; then pools stop in
 * reverse priority, one priority level at a time.
 */

static bool proc_settled(const struct proc *p)
{
	return proc_state_final(p->state);
}

static void shutdown_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	shut.deadline_passed = true;
	log_warn("proc", "shutdown_timeout passed: stopping the remaining one-shot processes");
	event_active(ev_shutdown, EV_TIMEOUT, 0);
}

static void shutdown_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p;
	struct pool *pl;
	bool waiting = false, pools_left = false;
	int top = INT_MIN;

	(void)fd;
	(void)what;
	(void)arg;
	if (!shut.active)
		return;
	TAILQ_FOREACH(p, &oneshots, os->entry) {
		if (proc_settled(p))
			continue;
		if ((p->os->daemon || shut.deadline_passed) && p->state != PS_STOPPING)
			proc_stop(p);
		if (!proc_settled(p))
			waiting = true;
	}
	if (waiting)
		return;
	/* the highest priority that still has something running */
	TAILQ_FOREACH(pl, &pools, entry)
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i] && !proc_settled(pl->members[i])) {
				if (pl->conf->priority > top)
					top = pl->conf->priority;
				pools_left = true;
			}
	if (pools_left) {
		TAILQ_FOREACH(pl, &pools, entry) {
			if (pl->conf->priority != top)
				continue;
			for (unsigned i = 0; i < pl->n_slots; i++)
				if (pl->members[i] && !proc_settled(pl->members[i]) &&
				    pl->members[i]->state != PS_STOPPING)
					proc_stop(pl->members[i]);
		}
		return;
	}
	/* everything stopped */
	shut.active = false;
	log_info("proc", "every process stopped");
	proc_cleanup();
	if (shut.done) {
		void (*done)(void) = shut.done;
		shut.done = NULL;
		done();
	}
}

void proc_shutdown(void (*done)(void))
{
	struct timeval tv;
	struct proc *p;
	bool non_daemon = false;

	if (!initialized) {
		done();
		return;
	}
	shut.active = true;
	shut.done = done;
	ev_shutdown = event_new(daemon_g.base, -1, 0, shutdown_step_cb, NULL);
	ev_shutdown_deadline = evtimer_new(daemon_g.base, shutdown_deadline_cb, NULL);
	TAILQ_FOREACH(p, &oneshots, os->entry)
		if (!p->os->daemon && !proc_settled(p))
			non_daemon = true;
	if (non_daemon) {
		log_info("proc", "waiting up to %.3gs for one-shot processes",
			 daemon_g.conf->shutdown_timeout);
		tv = tv_from_secs(daemon_g.conf->shutdown_timeout);
		evtimer_add(ev_shutdown_deadline, &tv);
	}
	event_active(ev_shutdown, EV_TIMEOUT, 0);
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
	if (ev_shutdown)
		event_free(ev_shutdown);
	if (ev_shutdown_deadline)
		event_free(ev_shutdown_deadline);
	ev_sigchld = ev_sigusr1 = ev_gc = ev_shutdown = ev_shutdown_deadline = NULL;
	initialized = false;
}
