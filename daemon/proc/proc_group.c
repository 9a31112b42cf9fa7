/*
 * Process groups: every run has its own, and a stop is complete only once
 * the group is empty. Here: signalling a run's group, waiting for a stopped
 * group to empty after its main process was reaped, the stray groups that a
 * main process dying on its own leaves, and every group we run for the
 * process registry.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "proc_cgroup.h"
#include "proc_int.h"
#include "proc_registry.h"

/* Stopping, main process reaped, the rest of its group not yet gone. */
static struct proc_list group_waits = TAILQ_HEAD_INITIALIZER(group_waits);

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
	pid_t leader; /* its main process (gone), for the registry */
	uint64_t start_lo, start_hi;
	int stop_signal;
	double stop_timeout;
	struct event *timer; /* SIGKILL at stop_timeout */
	TAILQ_ENTRY(stray) entry;
	char name[160]; /* the process name, for the log */
	char pool[96];  /* its pool's name, "" for a one-shot */
};
static TAILQ_HEAD(, stray) strays = TAILQ_HEAD_INITIALIZER(strays);
static unsigned n_strays;

/*
 * Signalling a group.
 */

bool pgid_alive(pid_t pgid)
{
	return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM);
}

void proc_signal_group(struct proc *p, int sig)
{
	if (p->pgid <= 0)
		return;
	if (kill(-p->pgid, sig) < 0 && errno != ESRCH)
		log_warn_f("proc", PROC_FIELDS(p, p->pid), "%s: kill(-%d, %s): %s", p->name,
			   (int)p->pgid, conf_signal_name(sig) ? conf_signal_name(sig) : "?",
			   strerror(errno));
}

void proc_signal_group_stop(struct proc *p)
{
	proc_signal_group(p, p->stop_signal);
	if (p->stop_signal != SIGKILL && p->stop_signal != SIGCONT)
		proc_signal_group(p, SIGCONT);
}

/*
 * Stray groups.
 */

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
	if (pgid_alive(g->pgid) && !pid_table_has_pgid(g->pgid)) {
		log_warn_f("proc", &f, "%s: the rest of group %d still runs: SIGKILL", g->name,
			   (int)g->pgid);
		kill(-g->pgid, SIGKILL);
	}
	stray_free(g);
}

/* Stop signal now, SIGKILL after stop_timeout. */
bool stray_start(struct proc *p)
{
	struct timeval tv = tv_from_secs(p->stop_timeout);
	struct stray *g;

	if (!pgid_alive(p->pgid))
		return false;
	log_info_f("proc", PROC_FIELDS(p, p->pgid),
		   "%s: main process gone, stopping the rest of group %d", p->name, (int)p->pgid);
	proc_signal_group_stop(p);
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

void strays_check(void)
{
	struct stray *g, *next;

	for (g = TAILQ_FIRST(&strays); g; g = next) {
		next = TAILQ_NEXT(g, entry);
		if (!pgid_alive(g->pgid))
			stray_free(g);
	}
}

void strays_kill_all(void)
{
	struct stray *g;

	while ((g = TAILQ_FIRST(&strays))) {
		if (pgid_alive(g->pgid))
			kill(-g->pgid, SIGKILL);
		stray_free(g);
	}
}

unsigned proc_stray_groups(void)
{
	return n_strays;
}

/*
 * Group waits.
 */

void group_wait_start(struct proc *p)
{
	p->group_wait = true;
	TAILQ_INSERT_TAIL(&group_waits, p, gentry);
}

void group_wait_cancel(struct proc *p)
{
	if (!p->group_wait)
		return;
	TAILQ_REMOVE(&group_waits, p, gentry);
	p->group_wait = false;
}

void group_waits_check(void)
{
	struct proc *p, *next;

	for (p = TAILQ_FIRST(&group_waits); p; p = next) {
		next = TAILQ_NEXT(p, gentry);
		/* the group, then what left it (killed through the cgroup,
		 * until its cgroup.events says "populated 0") */
		if (pgid_alive(p->pgid) || proc_cgroup_kill(p) > 0)
			continue;
		TAILQ_REMOVE(&group_waits, p, gentry);
		p->group_wait = false;
		procreg_remove(p->last_pid, p->start_lo);
		proc_feed(p, PE_DIED);
		next = TAILQ_FIRST(&group_waits); /* the list may have changed */
	}
}

/*
 * The process registry's view.
 */

struct registry_walk {
	void (*fn)(const struct procreg_rec *r, void *arg);
	void *arg;
};

/* One live process of the pid table, as its registry record. */
static void registry_live(struct proc *p, void *arg)
{
	const struct registry_walk *w = arg;
	struct procreg_rec r = proc_rec(p, p->pid);

	w->fn(&r, w->arg);
}

void proc_registry_each(void (*fn)(const struct procreg_rec *r, void *arg), void *arg)
{
	struct procreg_rec r;
	struct stray *g;
	struct proc *p;

	pid_table_each(registry_live, &(struct registry_walk){ fn, arg });
	/* stopping, main process reaped, the rest of its group not yet gone */
	TAILQ_FOREACH(p, &group_waits, gentry) {
		r = proc_rec(p, p->last_pid);
		fn(&r, arg);
	}
	TAILQ_FOREACH(g, &strays, entry) {
		r = (struct procreg_rec){ g->leader,      g->pgid,         g->start_lo, g->start_hi,
					  g->stop_signal, g->stop_timeout, g->name };
		fn(&r, arg);
	}
}
