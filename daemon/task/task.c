/*
 * Task pools (docs/tasks.md): tasks, backlogs, dispatch and
 * the results kept for task.wait.
 *
 * Every task pool has a backlog (FIFO; a retried task goes to its head)
 * and a FIFO of ready workers (room for another task); tp_dispatch()
 * pairs them. The workers and
 * their channels are task_worker.c's; the protocol commands task_cmd.c's.
 *
 * Where a task ends:
 *   - the worker answers it: done (result) or failed (the worker's error);
 *   - the worker dies, writes a bad line or closes a pipe: the worker is
 *     killed (SIGKILL to its group) and restarted by the pool's policy;
 *     every task it held runs again while it has retries left
 *     (task_retries), else fails with what happened; task_timeout does
 *     that to the worker's oldest task only, the others are requeued;
 *   - the worker is stopped by the operator (stop, scale down, restart,
 *     reload): the task goes back to the head of the backlog, not counted;
 *   - no live worker is left in the pool (all stopped/exited/fatal, pool
 *     removed, mode no longer task): the backlog fails with `conflict`;
 *   - shutdown: everything fails with `shutting_down`.
 *
 * pool.map and pool.imap are task_map.c's. Submitted tasks are allocated
 * one by one, found by id in a hash table, and kept after they end until
 * task.wait fetches them or task_results_max / task_results_age evicts them.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "command.h"
#include "daemon.h"
#include "events.h"
#include "log.h"
#include "park.h"
#include "proc.h"
#include "task.h"
#include "task_int.h"
#include "task_redis.h"
#include "task_wire.h"
#include "jsonw.h"
#include "mpsup.h"

bool task_shutting;

uint64_t task_next_id = 1;
static struct task **subm_hash;
static size_t subm_buckets, n_subm;
static struct task_list finished = TAILQ_HEAD_INITIALIZER(finished);
static unsigned n_finished;
static struct event *ev_evict;

/*
 * Submitted tasks by id, and their retention.
 */

static struct task **subm_slot(uint64_t id)
{
	return &subm_hash[id & (subm_buckets - 1)];
}

static int subm_insert(struct task *t)
{
	if (n_subm + 1 > subm_buckets) {
		size_t nb = subm_buckets ? subm_buckets * 2 : 64;
		struct task **h = calloc(nb, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (size_t i = 0; i < subm_buckets; i++)
			for (struct task *x = subm_hash[i], *nx; x; x = nx) {
				nx = x->sub->hnext;
				x->sub->hnext = h[x->id & (nb - 1)];
				h[x->id & (nb - 1)] = x;
			}
		free(subm_hash);
		subm_hash = h;
		subm_buckets = nb;
	}
	t->sub->hnext = *subm_slot(t->id);
	*subm_slot(t->id) = t;
	n_subm++;
	return 0;
}

struct task *subm_find(uint64_t id)
{
	if (!subm_buckets)
		return NULL;
	for (struct task *t = *subm_slot(id); t; t = t->sub->hnext)
		if (t->id == id)
			return t;
	return NULL;
}

/* A new submitted task of pool (named pool) for item, owned by owner and
 * known by its id; not in the backlog yet. NULL when out of memory. */
struct task *subm_new(struct task_pool *tp, const char *pool, json_t *item, uid_t owner)
{
	struct task *t = calloc(1, sizeof(*t) + sizeof(struct subm));

	if (!t)
		return NULL;
	t->sub = (struct subm *)(t + 1);
	park_queue_init(&t->sub->waiters);
	t->sub->owner = owner;
	t->id = task_next_id++;
	t->item = json_incref(item);
	t->tp = tp;
	t->home = tp;
	if (!(t->sub->pool = strdup(pool)) || subm_insert(t) < 0) {
		json_decref(t->item);
		free(t->sub->pool);
		free(t);
		return NULL;
	}
	return t;
}

/* Forget a finished submitted task (fetched or evicted). */
void subm_free(struct task *t)
{
	for (struct task **pp = subm_slot(t->id); *pp; pp = &(*pp)->sub->hnext)
		if (*pp == t) {
			*pp = t->sub->hnext;
			break;
		}
	n_subm--;
	if (t->sub->finished > 0) {
		TAILQ_REMOVE(&finished, t, q);
		n_finished--;
	}
	json_decref(t->item);
	json_decref(t->result);
	free(t->error);
	free(t->sub->pool);
	free(t);
}

/* Run the eviction timer for the oldest kept result (task_results_age). */
static void evict_arm(void)
{
	struct task *t = TAILQ_FIRST(&finished);
	struct timeval tv;

	if (!t || !ev_evict || evtimer_pending(ev_evict, NULL))
		return;
	tv = tv_from_secs(t->sub->finished + daemon_g.conf->task_results_age - now_mono() + 0.01);
	evtimer_add(ev_evict, &tv);
}

/* Forget the kept results older than task_results_age. */
static void evict_cb(evutil_socket_t fd, short what, void *arg)
{
	struct task *t;
	double now = now_mono();

	(void)fd;
	(void)what;
	(void)arg;
	while ((t = TAILQ_FIRST(&finished)) &&
	       t->sub->finished + daemon_g.conf->task_results_age <= now) {
		log_debug("task", "task %" PRIu64 ": result evicted (task_results_age)", t->id);
		subm_free(t);
	}
	evict_arm();
}

/*
 * Requests waiting for submitted tasks.
 */

/* Answer r with finished task t (not consumed here). */
void answer_task(struct request *r, const struct task *t)
{
	if (t->state == TASK_DONE)
		request_ok(r, json_pack("{s:O}", "result", t->result));
	else
		request_error(r, t->code, "%s", t->error ? t->error : "failed");
}

/* A submitted task ended: answer its waiters (which fetches it) or keep
 * it for a later task.wait. */
static void subm_finished(struct task *t)
{
	struct park *p;

	t->sub->finished = now_mono();
	TAILQ_INSERT_TAIL(&finished, t, q);
	n_finished++;
	if (park_first(&t->sub->waiters)) {
		while ((p = park_first(&t->sub->waiters))) {
			struct request *r = park_take(p);
			free(PARK_OWNER(p, struct task_waiter, park));
			answer_task(r, t);
		}
		subm_free(t);
		return;
	}
	while (n_finished > daemon_g.conf->task_results_max) {
		struct task *old = TAILQ_FIRST(&finished);
		log_debug("task", "task %" PRIu64 ": result evicted (task_results_max)", old->id);
		subm_free(old);
	}
	evict_arm();
}

/*
 * Tasks.
 */

/* Publish a task event (task.retry, task.failed) to the task's owner. */
void publish_task(const char *event, const struct task *t, const char *worker, const char *msg)
{
	if (!events_wanted(TOPIC_TASK))
		return;
	/* A task is its submitter's (task_param()): so are its events, and
	 * their messages (a worker's error text). */
	events_publish_visible(TOPIC_TASK, events_visible_to_owner,
			       t->sub ? &t->sub->owner : &t->map->owner,
			       json_pack("{s:s, s:I, s:s?, s:s?, s:o, s:s, s:f}", "event", event,
					 "task", (json_int_t)t->id, "pool",
					 t->tp ? t->tp->pl->name : NULL, "worker", worker, "index",
					 t->map ? json_integer((json_int_t)t->index) : json_null(),
					 "message", msg, "ts", now_wall()));
}

/* t ended (it is neither pending nor held any more): result (stolen) or
 * a failure. */
void task_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg)
{
	if (t->home) {
		t->home->outcomes[result || code >= MPSUP_E__MAX ? MPSUP_OK : code] +=
			task_weight(t);
		if (t->started > 0)
			metrics_hist_observe(&t->home->duration, now_mono() - t->started);
		t->home = NULL;
	}
	t->tp = NULL;
	t->worker = NULL;
	t->state = result ? TASK_DONE : TASK_FAILED;
	if (t->remote) {
		task_redis_end(t, result, code, msg);
		return;
	}
	if (t->map) {
		map_task_end(t, result, code, msg);
		return;
	}
	if (result)
		t->result = result;
	else {
		t->code = code;
		t->error = strdup(msg);
	}
	subm_finished(t);
}

/* Put t back at the head of its backlog. */
void task_requeue(struct task_pool *tp, struct task *t)
{
	t->state = TASK_PENDING;
	t->worker = NULL;
	t->tp = tp;
	t->home = tp;
	TAILQ_INSERT_HEAD(&tp->backlog, t, q);
	tp->n_pending += task_weight(t);
}

/* Whether t, whose worker failed, may run again: it has retries left
 * (task_retries) and someone still wants it. */
bool task_may_retry(const struct task_pool *tp, const struct task *t)
{
	return !(t->map && !map_live(t->map)) && !task_shutting &&
	       t->attempts <= tp->pl->conf->task_retries;
}

/* The worker holding t failed with msg and t may run again
 * (task_may_retry()): back to the head of the backlog. */
void task_retry(struct task_pool *tp, struct task *t, const char *worker, const char *msg)
{
	log_info("task", "task %" PRIu64 ": %s; retrying (%u of %u)", t->id, msg, t->attempts,
		 tp->pl->conf->task_retries);
	publish_task("task.retry", t, worker, msg);
	task_requeue(tp, t);
}

/* The worker holding t failed with msg and t may not run again: it fails. */
void task_fail(struct task_pool *tp, struct task *t, const char *worker, const char *msg)
{
	char buf[600];

	if (t->map && !map_live(t->map)) {
		task_end(t, NULL, MPSUP_E_INTERNAL, msg); /* discarded */
		return;
	}
	if (t->attempts > 1)
		snprintf(buf, sizeof(buf), "%s (after %u attempts)", msg, t->attempts);
	else
		snprintf(buf, sizeof(buf), "%s", msg);
	log_info("task", "task %" PRIu64 " failed: %s", t->id, buf);
	t->tp = tp;
	t->home = tp;
	publish_task("task.failed", t, worker, buf);
	task_end(t, NULL, MPSUP_E_INTERNAL, buf);
}

/*
 * Pools.
 */

/* The task record of pool pl, made on first use; NULL when out of memory. */
struct task_pool *tp_get(struct pool *pl)
{
	struct task_pool *tp = pl->tasks;

	if (tp)
		return tp;
	if (!(tp = calloc(1, sizeof(*tp))))
		return NULL;
	tp->pl = pl;
	TAILQ_INIT(&tp->backlog);
	TAILQ_INIT(&tp->ready);
	TAILQ_INIT(&tp->feeding);
	pl->tasks = tp;
	return tp;
}

/* Queue t at the tail of tp's backlog. */
void tp_enqueue(struct task_pool *tp, struct task *t)
{
	if (!t->remote && task_redis_pool(tp)) {
		task_redis_push(tp, t);
		return;
	}
	t->tp = tp;
	t->home = tp;
	TAILQ_INSERT_TAIL(&tp->backlog, t, q);
	tp->n_pending += task_weight(t);
}

/* Fail every pending task of tp. */
static void tp_fail_backlog(struct task_pool *tp, enum mpsup_err code, const char *msg)
{
	struct task *t;

	while ((t = TAILQ_FIRST(&tp->backlog))) {
		TAILQ_REMOVE(&tp->backlog, t, q);
		tp->n_pending -= task_weight(t);
		t->tp = NULL; /* out of the backlog (map_drop_pending must not touch it) */
		task_end(t, NULL, code, msg);
	}
}

/* Why pl cannot run tasks now or later (NULL: it can): a task pool with a
 * member that is alive, in backoff or about to start again. here: the
 * tasks are to run on this host's workers; else a redis pool takes them
 * with none here (a host may only send to the others). */
const char *pool_cannot_run(const struct pool *pl, bool here, char *buf, size_t len)
{
	if (pl->removing)
		snprintf(buf, len, "pool %s is being removed", pl->name);
	else if (pl->conf->mode != POOL_MODE_TASK)
		snprintf(buf, len, "pool %s is not a task pool (mode = service)", pl->name);
	else if (!here && pl->conf->task_queue == TASK_QUEUE_REDIS)
		return NULL; /* other hosts' workers may run them */
	else {
		for (unsigned i = 0; i < pl->n_slots; i++) {
			const struct proc *m = pl->members[i];
			if (m && !m->removing &&
			    (proc_state_alive(m->state) || m->state == PS_BACKOFF ||
			     m->restart_pending))
				return NULL;
		}
		snprintf(buf, len, "pool %s has no live worker (all stopped, exited or fatal)",
			 pl->name);
	}
	return buf;
}

/* Hand the backlog's first tasks to the workers with room, one task each
 * in turn (a worker goes to the back of the ready list), then write what
 * each was given in one go. */
void tp_dispatch(struct task_pool *tp)
{
	struct task *t;
	struct worker *w;
	bool sent = false;

	do
		while ((t = TAILQ_FIRST(&tp->backlog)) && (w = TAILQ_FIRST(&tp->ready))) {
			TAILQ_REMOVE(&tp->backlog, t, q);
			tp->n_pending -= task_weight(t);
			worker_set_ready(w, false);
			worker_send(w, t);
			if (worker_has_room(w))
				worker_set_ready(w,
						 true); /* at the tail: the next goes elsewhere */
			sent = true;
		}
	while (!TAILQ_EMPTY(&tp->feeding) && tp_feed(tp)); /* room made: maps waiting for it */
	if (sent)
		worker_flush_all(tp);
	task_redis_pull(tp);
}

/* Fail the backlog if nothing can run it any more, else dispatch. */
void tp_check(struct task_pool *tp)
{
	char why[200];

	/* The backlog runs here; a redis pool's maps feed other hosts too. */
	if (!TAILQ_EMPTY(&tp->backlog) && pool_cannot_run(tp->pl, true, why, sizeof(why)))
		tp_fail_backlog(tp, MPSUP_E_CONFLICT, why);
	if (!TAILQ_EMPTY(&tp->feeding) && pool_cannot_run(tp->pl, false, why, sizeof(why)))
		tp_fail_feeding(tp, MPSUP_E_CONFLICT, why);
	tp_dispatch(tp);
}

/* Pool pl was removed: its backlog fails and its record goes. */
void task_pool_gone(struct pool *pl)
{
	struct task_pool *tp = pl->tasks;
	char why[200];

	if (!tp)
		return;
	snprintf(why, sizeof(why), "pool %s was removed", pl->name);
	tp_fail_backlog(tp, MPSUP_E_CONFLICT, why);
	tp_fail_feeding(tp, MPSUP_E_CONFLICT, why);
	task_redis_pool_gone(tp);
	free(tp);
	pl->tasks = NULL;
}

void task_pool_record(const struct pool *pl, json_t *j)
{
	const struct task_pool *tp = pl->tasks;

	if (pl->conf->mode != POOL_MODE_TASK)
		return;
	json_object_set_new(j, "busy", json_integer(tp ? tp->n_busy : 0));
	json_object_set_new(j, "pending", json_integer(tp ? tp->n_pending : 0));
	json_object_set_new(j, "running", json_integer(tp ? tp->n_running : 0));
}

/*
 * The module.
 */

/* daemon.info's tasks member. */
void task_info(json_t *info)
{
	unsigned pending = 0, running = 0;
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry)
		if (pl->tasks) {
			pending += pl->tasks->n_pending;
			running += pl->tasks->n_running;
		}
	json_object_set_new(info, "tasks",
			    json_pack("{s:I, s:I, s:I, s:I}", "pending", (json_int_t)pending,
				      "running", (json_int_t)running, "results_kept",
				      (json_int_t)n_finished, "next_id", (json_int_t)task_next_id));
	task_redis_info(info);
}

/* Task families: ended tasks by pool and outcome, their durations, and
 * what waits and runs now. */
void task_metrics(struct evbuffer *b)
{
	struct metrics_label l[2] = { { "pool", NULL }, { "outcome", NULL } };
	struct pool *pl;

	metrics_family(b, "mpsup_tasks_total", "counter",
		       "Tasks ended, by pool and outcome (ok or the error code).");
	METRICS_POOLS_FOREACH(pl)
		for (int o = 0; pl->tasks && o < MPSUP_E__MAX; o++)
			if (pl->tasks->outcomes[o] || o == MPSUP_OK) {
				l[0].value = pl->name;
				l[1].value = o ? mpsup_err_name((enum mpsup_err)o) : "ok";
				metrics_u64(b, "mpsup_tasks_total", l, 2, pl->tasks->outcomes[o]);
			}
	metrics_family(b, "mpsup_task_duration_seconds", "histogram",
		       "Seconds from a task's last dispatch to its end, by pool.");
	METRICS_POOLS_FOREACH(pl)
		if (pl->tasks) {
			l[0].value = pl->name;
			metrics_hist_write(b, "mpsup_task_duration_seconds", l, 1,
					   &pl->tasks->duration);
		}
	metrics_family(b, "mpsup_tasks_pending", "gauge", "Tasks waiting for a worker, by pool.");
	METRICS_POOLS_FOREACH(pl)
		if (pl->conf->mode == POOL_MODE_TASK) {
			l[0].value = pl->name;
			metrics_u64(b, "mpsup_tasks_pending", l, 1,
				    pl->tasks ? pl->tasks->n_pending : 0);
		}
	metrics_family(b, "mpsup_tasks_running", "gauge", "Tasks held by a worker, by pool.");
	METRICS_POOLS_FOREACH(pl)
		if (pl->conf->mode == POOL_MODE_TASK) {
			l[0].value = pl->name;
			metrics_u64(b, "mpsup_tasks_running", l, 1,
				    pl->tasks ? pl->tasks->n_running : 0);
		}
}

/* Start: the timer that evicts old results. */
int task_start(const struct conf *conf)
{
	ev_evict = evtimer_new(daemon_g.base, evict_cb, NULL);
	if (!ev_evict)
		return -ENOMEM;
	return task_redis_start(conf);
}

/* Shutdown: every task that has not ended fails with shutting_down, then
 * everything is freed (process supervision stops the workers next). */
void task_stop(void (*done)(void))
{
	static const char msg[] = "mpsupd is shutting down";
	struct pool *pl;
	struct task *t;

	task_shutting = true;
	TAILQ_FOREACH(pl, &pools, entry) {
		if (!pl->tasks)
			continue;
		for (unsigned i = 0; i < pl->n_slots; i++) {
			struct worker *w = pl->members[i] ? pl->members[i]->worker : NULL;
			if (!w)
				continue;
			worker_close(w);
			while ((t = worker_take(w, NULL)))
				task_end(t, NULL, MPSUP_E_SHUTTING_DOWN, msg);
		}
		tp_fail_backlog(pl->tasks, MPSUP_E_SHUTTING_DOWN, msg);
		tp_fail_feeding(pl->tasks, MPSUP_E_SHUTTING_DOWN, msg);
	}
	task_redis_stop();
	while ((t = TAILQ_FIRST(&finished)))
		subm_free(t);
	free(subm_hash);
	subm_hash = NULL;
	subm_buckets = n_subm = 0;
	if (ev_evict)
		event_free(ev_evict);
	ev_evict = NULL;
	task_worker_cleanup();
	done();
}
