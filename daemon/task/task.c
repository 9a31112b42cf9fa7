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
#include "task_redis.h"
#include "task_wire.h"
#include "jsonw.h"
#include "mpsup.h"

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
 * Maps.
 */

/* Collects the spans of an items list (map_items_read). */
struct items_walk {
	const char *base;
	struct jspan *at;
	size_t n, cap;
};

static int items_walk_add(void *arg, const char *value, size_t len)
{
	struct items_walk *w = arg;

	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;
		struct jspan *at = realloc(w->at, cap * sizeof(*at));
		if (!at)
			return -ENOMEM;
		w->at = at;
		w->cap = cap;
	}
	w->at[w->n].off = (uint32_t)(value - w->base);
	w->at[w->n++].len = (uint32_t)len;
	return 0;
}

/* Copy the items list text[0..len) (a JSON array, checked here) and find
 * its items: *ret_text the copy (its brackets off), *ret_at their places
 * in it, *ret_n their number. -EINVAL (not a valid list), -E2BIG (past 4
 * GiB), -ENOMEM. */
int map_items_read(const char *text, size_t len, char **ret_text, struct jspan **ret_at,
		   size_t *ret_n)
{
	struct items_walk w = { 0 };
	ssize_t n;
	char *copy;

	if (len >= UINT32_MAX)
		return -E2BIG;
	if (!(copy = malloc(len ? len : 1)))
		return -ENOMEM;
	memcpy(copy, text, len);
	w.base = copy;
	if ((n = mpsup_json_array_each(copy, len, 0, items_walk_add, &w)) < 0) {
		free(copy);
		free(w.at);
		return n == -ENOMEM ? -ENOMEM : -EINVAL;
	}
	*ret_text = copy;
	*ret_at = w.at;
	*ret_n = w.n;
	return 0;
}

/* A map of the n > 0 items of items_text (their places in item_at; both
 * taken over), in chunks of chunksize items when above 1; its tasks get
 * their ids and pool from map_enqueue(). collect_errors: failed items are
 * listed in the answer (errors: "return") instead of failing the map.
 * NULL when out of memory (items_text and item_at freed). */
struct map *map_new(char *items_text, struct jspan *item_at, size_t n, double timeout,
		    size_t chunksize, bool collect_errors)
{
	size_t per = chunksize > 1 ? chunksize : 1;
	size_t nt = (n + per - 1) / per;
	struct map *m = calloc(1, sizeof(*m));

	if (!m || !(m->tasks = calloc(nt, sizeof(*m->tasks))) ||
	    !(m->res = calloc(n, sizeof(*m->res))) || !(m->fin = calloc(n, 1))) {
		if (m) {
			free(m->tasks);
			free(m->res);
		}
		free(m);
		free(items_text);
		free(item_at);
		return NULL;
	}
	m->n = n;
	m->n_tasks = nt;
	m->chunksize = per;
	m->collect = collect_errors;
	m->items_text = items_text;
	m->item_at = item_at;
	for (size_t k = 0; k < nt; k++) {
		struct task *t = &m->tasks[k];
		t->map = m;
		t->index = k * per;
		if (chunksize > 1)
			t->count = (unsigned)(n - t->index < per ? n - t->index : per);
	}
	m->timeout = timeout;
	return m;
}

/* Number m's tasks and queue them on tp's backlog, in item order (a
 * pool.imap: only the first few, map_feed()). */
void map_enqueue(struct map *m, struct task_pool *tp)
{
	m->tp = tp;
	if (m->streamed || m->waits) {
		TAILQ_INSERT_TAIL(&tp->feeding, m, fentry);
		m->feeding = true;
		map_feed(m);
		return;
	}
	for (size_t k = 0; k < m->n_tasks; k++) {
		m->tasks[k].id = next_task_id++;
		tp_enqueue(tp, &m->tasks[k]);
	}
	m->fed = m->n_tasks;
}

/* Take m off its pool's feeding list. */
static void map_unfeed(struct map *m)
{
	if (m->feeding)
		TAILQ_REMOVE(&m->tp->feeding, m, fentry);
	m->feeding = false;
}

/* Queue m's next tasks (true when it did; the caller dispatches). A
 * pool.imap: while fewer than enough to keep every worker's window full
 * twice are under way and its reader keeps up, so what waits for the
 * reader is bounded. A pool.map with wait: while the backlog has room
 * (max_pending). */
bool map_feed(struct map *m)
{
	const struct pool_conf *pc = m->tp->pl->conf;
	size_t ahead = m->streamed
			       ? 2 * (size_t)(pc->processes ? pc->processes : 1) * pc->task_window
			       : SIZE_MAX;
	/* A streamed map also counts what it holds unsent: an ordered stream
	 * keeps the results behind a slow item, so ended tasks alone would let
	 * them pile up and leave in one burst past max_output_bytes. */
	size_t per = m->n_tasks && m->tasks[0].count ? m->tasks[0].count : 1;
	bool fed = false;

	while (map_live(m) && m->fed < m->n_tasks && m->fed - m->ended < ahead &&
	       (!m->streamed || m->tasks[m->fed].index - m->emitted < ahead * per)) {
		struct task *t = &m->tasks[m->fed];
		if ((m->may_feed && !m->may_feed(m)) ||
		    (m->waits && m->tp->n_pending + task_weight(t) > pc->max_pending))
			break;
		m->fed++;
		t->id = next_task_id++;
		tp_enqueue(m->tp, t);
		fed = true;
	}
	if (!map_live(m) || m->fed == m->n_tasks)
		map_unfeed(m);
	return fed;
}

/* Feed tp's feeding maps, oldest first; true when one queued a task. */
static bool tp_feed(struct task_pool *tp)
{
	bool fed = false;

	for (struct map *m = TAILQ_FIRST(&tp->feeding), *next; m; m = next) {
		next = TAILQ_NEXT(m, fentry);
		fed |= map_feed(m);
	}
	return fed;
}

/* tp cannot run its tasks: the items its feeding maps did not queue yet
 * fail with code and why. */
static void tp_fail_feeding(struct task_pool *tp, enum mpsup_err code, const char *why)
{
	struct map *m;

	while ((m = TAILQ_FIRST(&tp->feeding))) {
		size_t from = m->fed;
		map_unfeed(m);
		m->fed = m->n_tasks;
		m->running++; /* not freed while its tasks are walked */
		for (size_t k = from; k < m->n_tasks; k++)
			task_end(&m->tasks[k], NULL, code, why);
		m->running--;
		map_maybe_free(m);
	}
}

/* Free m once it is neither answered-to-be nor holding running tasks. */
void map_maybe_free(struct map *m)
{
	if (map_live(m) || m->running)
		return;
	map_unfeed(m);
	task_redis_map_gone(m);
	for (size_t i = 0; m->errs && i < m->n; i++)
		json_decref(m->errs[i]);
	for (size_t k = 0; k < m->n_tasks; k++)
		free(m->tasks[k].out);
	free(m->errs);
	free(m->items_text);
	free(m->item_at);
	free(m->res);
	free(m->fin);
	free(m->tasks);
	free(m);
}

/* Item i of m was sent on its stream: its task's results go once all of
 * them were. */
void map_item_sent(struct map *m, size_t i)
{
	struct task *t = &m->tasks[i / m->chunksize];

	if (m->fin[i] == FIN_DONE && t->out_left && --t->out_left == 0) {
		free(t->out);
		t->out = NULL;
	}
	if (m->errs) {
		json_decref(m->errs[i]);
		m->errs[i] = NULL;
	}
}

/* Write item i's result (or null for a failed one) into w; false when
 * out of memory. */
bool map_answer_item(struct jsonw *w, const struct map *m, size_t i)
{
	const struct task *t = &m->tasks[i / m->chunksize];

	if (m->fin[i] == FIN_DONE)
		jsonw_raw(w, t->out + m->res[i].off, m->res[i].len);
	else
		jsonw_null(w);
	return jsonw_ok(w);
}

/* Take m's tasks that are still pending out of their backlog. */
void map_drop_pending(struct map *m)
{
	for (size_t k = 0; k < m->n_tasks; k++) {
		struct task *t = &m->tasks[k];
		if (t->state != TASK_PENDING)
			continue;
		if (t->tp) {
			TAILQ_REMOVE(&t->tp->backlog, t, q);
			t->tp->n_pending -= task_weight(t);
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

/* m is done: answer {"results": [...]} (and "errors": [...] with errors:
 * "return") from the results' text. */
static void map_answer(struct map *m)
{
	struct request *r = park_take(&m->park);
	struct jsonw w;
	char *e;

	jsonw_init(&w);
	jsonw_open(&w, '{');
	jsonw_key(&w, "results");
	jsonw_open(&w, '[');
	for (size_t i = 0; i < m->n;) {
		const struct task *t = &m->tasks[i / m->chunksize];
		if (t->out_whole) { /* its list's inside, as the worker wrote it */
			jsonw_raw(&w, t->out + 1, t->out_len - 2);
			i += t->count;
		} else
			map_answer_item(&w, m, i++);
	}
	jsonw_close(&w, ']');
	if (m->collect) {
		jsonw_key(&w, "errors");
		jsonw_open(&w, '[');
		for (size_t i = 0; m->errs && i < m->n; i++)
			if (m->errs[i] && (e = json_dumps(m->errs[i], JSON_COMPACT))) {
				jsonw_raw(&w, e, strlen(e));
				free(e);
			}
		jsonw_close(&w, ']');
	}
	jsonw_close(&w, '}');
	request_ok_text(r, &w);
}

/* Item i of m failed: its error object (index included with errors:
 * "return"); false when out of memory. */
static bool map_item_error(struct map *m, size_t i, enum mpsup_err code, const char *msg)
{
	if (!m->errs && !(m->errs = calloc(m->n, sizeof(*m->errs))))
		return false;
	if (m->collect)
		m->errs[i] = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)i, "code",
				       mpsup_err_name(code), "message", msg ? msg : "failed");
	else
		m->errs[i] = json_pack("{s:s, s:s}", "code", mpsup_err_name(code), "message",
				       msg ? msg : "failed");
	return m->errs[i] != NULL;
}

/* Item i of m ended: done with its result at span in the out of its task t, or
 * (span NULL) failed with code and msg, which fails the map or is listed
 * with errors: "return". Once only. */
static void map_item_end(struct map *m, struct task *t, size_t i, const struct jspan *span,
			 enum mpsup_err code, const char *msg)
{
	if (!map_live(m) || m->fin[i])
		return; /* cancelled, already failed, or a second answer */
	m->fin[i] = span ? FIN_DONE : FIN_FAILED;
	if (span) {
		m->res[i] = *span;
		t->out_left++;
	} else if ((m->streamed || m->collect) && !map_item_error(m, i, code, msg) &&
		   !m->streamed) {
		map_fail(m, SIZE_MAX, MPSUP_E_INTERNAL, "out of memory");
		return;
	}
	if (m->streamed) {
		m->item_end(m, i);
		return;
	}
	if (!span && !m->collect) {
		map_fail(m, i, code, msg);
		return;
	}
	if (++m->done == m->n)
		map_answer(m);
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
	if (m) {
		m->ended++;
		/* a map's task ends this way only when it failed (task_end_text) */
		json_decref(result);
		for (size_t i = 0; i < task_weight(t); i++)
			map_item_end(m, t, t->index + i, NULL, code, msg);
		if (m->streamed)
			map_feed(m); /* the callers dispatch */
		map_maybe_free(m);
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

/* The task t of a map was answered, failed of its items (a chunk's
 * "errors"): count its items. */
static void map_task_done(struct task *t, size_t failed)
{
	struct map *m = t->map;

	if (failed > task_weight(t))
		failed = task_weight(t);
	if (t->home) {
		t->home->outcomes[MPSUP_OK] += task_weight(t) - failed;
		t->home->outcomes[MPSUP_E_INTERNAL] += failed;
		if (t->started > 0)
			metrics_hist_observe(&t->home->duration, now_mono() - t->started);
		t->home = NULL;
	}
	t->tp = NULL;
	t->worker = NULL;
	t->state = TASK_DONE;
	m->ended++;
}

/* After t's items ended: its results go when none is kept; m is fed and
 * freed as it goes on. */
static void map_task_after(struct task *t)
{
	struct map *m = t->map;

	if (!t->out_left) {
		free(t->out);
		t->out = NULL;
	}
	if (m->streamed)
		map_feed(m); /* the caller dispatches */
	map_maybe_free(m);
}

/* Map task t (one item) was answered with the result text[0..len). */
void task_end_text(struct task *t, const char *text, size_t len)
{
	struct jspan span = { 0, (uint32_t)len };

	map_task_done(t, 0);
	if (!(t->out = malloc(len ? len : 1)))
		map_item_end(t->map, t, t->index, NULL, MPSUP_E_INTERNAL, "out of memory");
	else {
		memcpy(t->out, text, len);
		map_item_end(t->map, t, t->index, &span, MPSUP_E_INTERNAL, NULL);
	}
	map_task_after(t);
}

/* Chunk t of a pool.map was answered without errors: its results stay one
 * list (out, len bytes), copied whole into the answer, with no span per
 * item; false when one of its items ended already (a second answer). */
static bool chunk_whole(struct task *t, size_t len)
{
	struct map *m = t->map;

	if (m->streamed || !map_live(m))
		return false;
	for (size_t i = 0; i < t->count; i++)
		if (m->fin[t->index + i])
			return false;
	memset(&m->fin[t->index], FIN_DONE, t->count);
	t->out_whole = true;
	t->out_len = (uint32_t)len;
	t->out_left = t->count;
	if ((m->done += t->count) == m->n)
		map_answer(m);
	return true;
}

/* How many items of a chunk of count the checked "errors" list names: a
 * worker may name one twice (it fails once). */
static size_t errors_items(json_t *errors, size_t count)
{
	size_t n = json_array_size(errors), k, items = 0;
	unsigned char *seen;
	json_t *e;

	if (n < 2)
		return n;
	if (!(seen = calloc(count, 1)))
		return n < count ? n : count;
	json_array_foreach(errors, k, e) {
		size_t i = (size_t)json_integer_value(json_array_get(e, 0));
		items += !seen[i];
		seen[i] = 1;
	}
	free(seen);
	return items;
}

/* Chunk t was answered with a, checked by task_chunk_read(): spans says
 * where each result lies in a's text, errors is its "errors" list or
 * NULL. The failed items fail, the others take their results. */
void task_chunk_end(struct task *t, const struct task_answer *a, const struct jspan *spans,
		    json_t *errors)
{
	struct map *m = t->map;
	size_t k;
	json_t *e;

	map_task_done(t, errors_items(errors, t->count));
	json_array_foreach(errors, k, e)
		map_item_end(m, t, t->index + (size_t)json_integer_value(json_array_get(e, 0)),
			     NULL, MPSUP_E_INTERNAL, json_string_value(json_array_get(e, 1)));
	if (!(t->out = malloc(a->len ? a->len : 1))) {
		for (size_t i = 0; i < t->count; i++)
			map_item_end(m, t, t->index + i, NULL, MPSUP_E_INTERNAL, "out of memory");
	} else {
		memcpy(t->out, a->text, a->len);
		if (!errors && chunk_whole(t, a->len)) {
			map_task_after(t);
			return;
		}
		/* out stays while they end (a stream may send them all at once) */
		t->out_left++;
		for (size_t i = 0; i < t->count; i++)
			if (!m->fin[t->index + i])
				map_item_end(m, t, t->index + i, &spans[i], MPSUP_E_INTERNAL, NULL);
		t->out_left--;
	}
	map_task_after(t);
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
				      (json_int_t)n_finished, "next_id", (json_int_t)next_task_id));
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
