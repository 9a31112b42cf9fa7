/*
 * Rolling restarts: a pool's members restarted a few at a time, so that
 * never more than max_unavailable of them are down (not running; a pool
 * with ready = notify is running only after READY=1). The next member goes
 * only once a restarted one is running again. Members already down go
 * first (restarting them costs nothing); a restarted member that fails to
 * come back (backoff, fatal, exited) stops the roll: the ones not yet
 * restarted keep running the old program. One roll per pool at a time; a
 * reload that changes the pool replaces the roll under way.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "events.h"
#include "log.h"
#include "proc.h"
#include "proc_int.h"

struct rolling {
	unsigned max_unavailable;
	unsigned *queue; /* member indexes, in restart order */
	size_t n, next;
	bool busy, again; /* progress() runs (a restart re-enters it) */
};

static void publish_rolling(const struct pool *pl, const char *state, const char *why)
{
	if (!events_wanted(TOPIC_POOL))
		return;
	events_publish(TOPIC_POOL,
		       json_pack("{s:s, s:s, s:s, s:s?, s:f}", "event", "pool.rolling", "pool",
				 pl->name, "state", state, "reason", why, "ts", now_wall()));
}

static struct proc *member(const struct pool *pl, unsigned index)
{
	struct proc *p = index < pl->n_slots ? pl->members[index] : NULL;

	return p && !p->removing && !p->freed ? p : NULL;
}

/* Is p up for the roll's count (running, and not on its way out)? */
static bool up(const struct proc *p)
{
	return p->state == PS_RUNNING && !p->restart_pending && !p->notify_stopping;
}

/* End pl's roll; members still queued are let go (their waiters told). */
static void rolling_end(struct pool *pl, const char *state, const char *why)
{
	struct rolling *ro = pl->rolling;

	pl->rolling = NULL;
	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct proc *p = pl->members[i];
		bool was = p && (p->rolling_pending || p->rolling_inflight);
		if (!p)
			continue;
		p->rolling_pending = p->rolling_inflight = false;
		if (was && !p->freed)
			proc_notify_settled(p);
	}
	if (why)
		log_warn("proc", "pool %s: rolling restart stopped: %s", pl->name, why);
	else
		log_info("proc", "pool %s: rolling restart %s", pl->name, state);
	publish_rolling(pl, state, why);
	free(ro->queue);
	free(ro);
}

void pool_rolling_cancel(struct pool *pl)
{
	if (pl->rolling)
		rolling_end(pl, "cancelled", NULL);
}

/* Settle restarted members; NULL, or why the roll must stop. */
static const char *settle(struct pool *pl, unsigned *ret_inflight, unsigned *ret_down)
{
	static char why[160];
	unsigned inflight = 0, down = 0;

	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct proc *p = member(pl, i);
		if (!p)
			continue;
		if (p->rolling_inflight && up(p)) {
			p->rolling_inflight = false;
			proc_notify_settled(p); /* its restart's waiters */
		} else if (p->rolling_inflight && !p->restart_pending &&
			   (p->state == PS_BACKOFF || p->state == PS_FATAL ||
			    p->state == PS_EXITED)) {
			snprintf(why, sizeof(why), "%s did not come back (%s)", p->name,
				 p->reason ? p->reason : proc_state_name(p->state));
			return why;
		} else if (p->rolling_inflight && p->state == PS_STOPPED && !p->restart_pending) {
			p->rolling_inflight = false; /* stopped by request meanwhile */
			proc_notify_settled(p);
		}
		inflight += p->rolling_inflight;
		down += !up(p) && p->state != PS_STOPPED;
	}
	*ret_inflight = inflight;
	*ret_down = down;
	return NULL;
}

/* Restart the next members while the bound allows. */
static void advance(struct pool *pl)
{
	struct rolling *ro = pl->rolling;
	unsigned inflight, down;
	const char *why;

	if ((why = settle(pl, &inflight, &down))) {
		rolling_end(pl, "aborted", why);
		return;
	}
	while (ro->next < ro->n && inflight < ro->max_unavailable) {
		struct proc *p = member(pl, ro->queue[ro->next]);
		if (!p || !p->rolling_pending) {
			ro->next++;
			continue;
		}
		if (up(p) && down >= ro->max_unavailable)
			break; /* taking it down would exceed the bound */
		ro->next++;
		down += up(p);
		p->rolling_pending = false;
		p->rolling_inflight = true;
		inflight++;
		proc_restart(p); /* re-enters pool_rolling_progress: busy */
		if (pl->rolling != ro)
			return;
	}
	if (ro->next >= ro->n && inflight == 0)
		rolling_end(pl, "done", NULL);
}

void pool_rolling_progress(struct pool *pl)
{
	struct rolling *ro = pl ? pl->rolling : NULL;

	if (!ro)
		return;
	if (ro->busy) {
		ro->again = true;
		return;
	}
	ro->busy = true;
	do {
		ro->again = false;
		advance(pl);
	} while (pl->rolling == ro && ro->again);
	if (pl->rolling == ro)
		ro->busy = false;
}

int pool_rolling_start(struct pool *pl, struct proc *const *v, size_t n, unsigned max_unavailable,
		       bool replace)
{
	struct rolling *ro;
	size_t k = 0;

	if (pl->rolling && !replace)
		return -EBUSY;
	pool_rolling_cancel(pl);
	if (!(ro = calloc(1, sizeof(*ro))) || !(ro->queue = calloc(n ? n : 1, sizeof(unsigned)))) {
		free(ro);
		return -ENOMEM;
	}
	ro->max_unavailable = max_unavailable ? max_unavailable : 1;
	/* members that are down first, then the running ones */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n; i++)
			if (v[i]->pool == pl && !v[i]->rolling_pending && up(v[i]) == (pass == 1)) {
				v[i]->rolling_pending = true;
				ro->queue[k++] = v[i]->index;
			}
	ro->n = k;
	pl->rolling = ro;
	log_info("proc", "pool %s: rolling restart of %zu, at most %u down", pl->name, k,
		 ro->max_unavailable);
	publish_rolling(pl, "started", NULL);
	pool_rolling_progress(pl);
	return 0;
}
