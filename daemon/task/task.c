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
 * pool.map tasks live in one array per map (no allocation per task); the
 * map is answered when all are done or at its first failure, and freed
 * once no worker holds one of its tasks. Submitted tasks are allocated one
 * by one, found by id in a hash table, and kept after they end until
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

bool task_shutting;

static uint64_t next_task_id = 1;
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
	t->id = next_task_id++;
	t->item = json_incref(item);
	t->tp = tp;
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
 * Maps.
 */

/* A map of items (a JSON array of n > 0 items); its tasks get their ids
 * and pool from map_enqueue(). NULL when out of memory. */
struct map *map_new(json_t *items, double timeout)
{
	size_t n = json_array_size(items);
	struct map *m = calloc(1, sizeof(*m));

	if (!m || !(m->tasks = calloc(n, sizeof(*m->tasks)))) {
		free(m);
		return NULL;
	}
	m->n = n;
	m->items = json_incref(items);
	m->timeout = timeout;
	return m;
}

/* Number m's tasks and queue them on tp's backlog, in item order. */
void map_enqueue(struct map *m, struct task_pool *tp)
{
	for (size_t i = 0; i < m->n; i++) {
		struct task *t = &m->tasks[i];
		t->id = next_task_id++;
		t->item = json_array_get(m->items, i);
		t->map = m;
		t->index = i;
		tp_enqueue(tp, t);
	}
}

/* Free m once it is neither answered-to-be nor holding running tasks. */
void map_maybe_free(struct map *m)
{
	if (park_kept(&m->park) || m->running)
		return;
	for (size_t i = 0; i < m->n; i++) {
		json_decref(m->tasks[i].result);
		free(m->tasks[i].error);
	}
	json_decref(m->items);
	free(m->tasks);
	free(m);
}

/* Take m's tasks that are still pending out of their backlog. */
void map_drop_pending(struct map *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct task *t = &m->tasks[i];
		if (t->state != TASK_PENDING)
			continue;
		if (t->tp) {
			TAILQ_REMOVE(&t->tp->backlog, t, q);
			t->tp->n_pending--;
			t->tp = NULL;
		}
		t->state = TASK_FAILED;
	}
}

/* Answer m with an error (index = SIZE_MAX: not about one item); its
 * pending tasks are dropped, running ones finish and are discarded. */
void map_fail(struct map *m, size_t index, enum mpsup_err code, const char *msg)
{
	struct request *r;
	json_t *err;
	char buf[600];

	if (!park_kept(&m->park))
		return;
	r = park_take(&m->park);
	map_drop_pending(m);
	if (index != SIZE_MAX) {
		snprintf(buf, sizeof(buf), "item %zu: %s", index, msg);
		err = json_pack("{s:s, s:s, s:I}", "code", mpsup_err_name(code), "message", buf,
				"index", (json_int_t)index);
	} else
		err = json_pack("{s:s, s:s}", "code", mpsup_err_name(code), "message", msg);
	request_fail(r, err);
}

static void map_answer(struct map *m)
{
	struct request *r = park_take(&m->park);
	json_t *a = json_array();

	for (size_t i = 0; i < m->n; i++) {
		json_array_append_new(a, m->tasks[i].result);
		m->tasks[i].result = NULL;
	}
	request_ok(r, json_pack("{s:o}", "results", a));
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
	struct map *m = t->map;

	t->tp = NULL;
	t->worker = NULL;
	t->state = result ? TASK_DONE : TASK_FAILED;
	if (m) {
		if (!park_kept(&m->park)) {
			json_decref(result); /* cancelled or already failed: discarded */
			map_maybe_free(m);
			return;
		}
		if (!result) {
			map_fail(m, t->index, code, msg);
			map_maybe_free(m);
			return;
		}
		t->result = result;
		if (++m->done == m->n) {
			map_answer(m);
			map_maybe_free(m);
		}
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
	TAILQ_INSERT_HEAD(&tp->backlog, t, q);
	tp->n_pending++;
}

/* Whether t, whose worker failed, may run again: it has retries left
 * (task_retries) and someone still wants it. */
bool task_may_retry(const struct task_pool *tp, const struct task *t)
{
	return !(t->map && !park_kept(&t->map->park)) && !task_shutting &&
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

	if (t->map && !park_kept(&t->map->park)) {
		task_end(t, NULL, MPSUP_E_INTERNAL, msg); /* discarded */
		return;
	}
	if (t->attempts > 1)
		snprintf(buf, sizeof(buf), "%s (after %u attempts)", msg, t->attempts);
	else
		snprintf(buf, sizeof(buf), "%s", msg);
	log_info("task", "task %" PRIu64 " failed: %s", t->id, buf);
	t->tp = tp;
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
	pl->tasks = tp;
	return tp;
}

/* Queue t at the tail of tp's backlog. */
void tp_enqueue(struct task_pool *tp, struct task *t)
{
	t->tp = tp;
	TAILQ_INSERT_TAIL(&tp->backlog, t, q);
	tp->n_pending++;
}

/* Fail every pending task of tp. */
static void tp_fail_backlog(struct task_pool *tp, enum mpsup_err code, const char *msg)
{
	struct task *t;

	while ((t = TAILQ_FIRST(&tp->backlog))) {
		TAILQ_REMOVE(&tp->backlog, t, q);
		tp->n_pending--;
		t->tp = NULL; /* out of the backlog (map_drop_pending must not touch it) */
		task_end(t, NULL, code, msg);
	}
}

/* Why pl cannot run tasks now or later (NULL: it can): a task pool with a
 * member that is alive, in backoff or about to start again. */
const char *pool_cannot_run(const struct pool *pl, char *buf, size_t len)
{
	if (pl->removing)
		snprintf(buf, len, "pool %s is being removed", pl->name);
	else if (pl->conf->mode != POOL_MODE_TASK)
		snprintf(buf, len, "pool %s is not a task pool (mode = service)", pl->name);
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

	while ((t = TAILQ_FIRST(&tp->backlog)) && (w = TAILQ_FIRST(&tp->ready))) {
		TAILQ_REMOVE(&tp->backlog, t, q);
		tp->n_pending--;
		worker_set_ready(w, false);
		worker_send(w, t);
		if (worker_has_room(w))
			worker_set_ready(w, true); /* at the tail: the next task goes elsewhere */
		sent = true;
	}
	if (sent)
		worker_flush_all(tp);
}

/* Fail the backlog if nothing can run it any more, else dispatch. */
void tp_check(struct task_pool *tp)
{
	char why[200];

	if (!TAILQ_EMPTY(&tp->backlog) && pool_cannot_run(tp->pl, why, sizeof(why)))
		tp_fail_backlog(tp, MPSUP_E_CONFLICT, why);
	else
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
				      (json_int_t)n_finished, "next_id", (json_int_t)next_task_id));
}

/* Start: the timer that evicts old results. */
int task_start(const struct conf *conf)
{
	(void)conf;
	ev_evict = evtimer_new(daemon_g.base, evict_cb, NULL);
	return ev_evict ? 0 : -ENOMEM;
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
	}
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
