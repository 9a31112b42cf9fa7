/*
 * Shutdown: daemon one-shots are stopped at once; non-daemon ones are
 * waited for up to shutdown_timeout, then stopped; then pools stop in
 * reverse priority, one priority level at a time. Each step runs from a
 * deferred event, poked whenever a process reaches a final state.
 */
#include "config.h"

#include <limits.h>
#include <stdbool.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "proc_int.h"

static struct event *ev_shutdown, *ev_shutdown_deadline;

static struct {
	bool active;
	bool deadline_passed; /* non-daemon one-shots waited long enough */
	void (*done)(void);
} shut;

bool proc_shutting_down(void)
{
	return shut.active;
}

void shutdown_progress(void)
{
	if (shut.active)
		event_active(ev_shutdown, EV_TIMEOUT, 0);
}

void shutdown_cleanup(void)
{
	if (ev_shutdown)
		event_free(ev_shutdown);
	if (ev_shutdown_deadline)
		event_free(ev_shutdown_deadline);
	ev_shutdown = ev_shutdown_deadline = NULL;
}

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

/* Stop the one-shots not waited for (daemons, or every one once the
 * deadline passed). True while a one-shot still runs. */
static bool shutdown_oneshots(void)
{
	bool waiting = false;
	struct proc *p;

	TAILQ_FOREACH(p, &oneshots, os->entry) {
		if (proc_settled(p))
			continue;
		if ((p->os->daemon || shut.deadline_passed) && p->state != PS_STOPPING)
			proc_stop(p);
		if (!proc_settled(p))
			waiting = true;
	}
	return waiting;
}

/* Stop the members of the highest priority that still has something
 * running. True while a pool member still runs. */
static bool shutdown_pools(void)
{
	bool pools_left = false;
	struct pool *pl;
	int top = INT_MIN;

	TAILQ_FOREACH(pl, &pools, entry)
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i] && !proc_settled(pl->members[i])) {
				if (pl->conf->priority > top)
					top = pl->conf->priority;
				pools_left = true;
			}
	if (!pools_left)
		return false;
	TAILQ_FOREACH(pl, &pools, entry) {
		if (pl->conf->priority != top)
			continue;
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i] && !proc_settled(pl->members[i]) &&
			    pl->members[i]->state != PS_STOPPING)
				proc_stop(pl->members[i]);
	}
	return true;
}

static void shutdown_step_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!shut.active)
		return;
	if (shutdown_oneshots() || shutdown_pools())
		return;
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

	if (!proc_initialized()) {
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
