/*
 * pool.map and pool.imap (docs/tasks.md): the items of a map, the tasks
 * (one item or a chunk of them each) fed to their pool's backlog, and the
 * answer or stream their results go to.
 *
 * A map's tasks live in one array (no allocation per task); the map is
 * answered when all are done or at its first failure, and freed once no
 * worker holds one of its tasks. The backlog and dispatch are task.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "command.h"
#include "daemon.h"
#include "park.h"
#include "proc.h"
#include "task_int.h"
#include "task_redis.h"
#include "task_wire.h"
#include "jsonw.h"
#include "mpsup.h"

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
		m->tasks[k].id = task_next_id++;
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
		t->id = task_next_id++;
		tp_enqueue(m->tp, t);
		fed = true;
	}
	if (!map_live(m) || m->fed == m->n_tasks)
		map_unfeed(m);
	return fed;
}

/* Feed tp's feeding maps, oldest first; true when one queued a task. */
bool tp_feed(struct task_pool *tp)
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
void tp_fail_feeding(struct task_pool *tp, enum mpsup_err code, const char *why)
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
 * How a map's tasks end.
 */

/* A map's task t ended in task_end(), which it does only when it failed
 * (task_end_text and task_chunk_end answer the others): its items fail
 * with code and msg. */
void map_task_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg)
{
	struct map *m = t->map;

	m->ended++;
	json_decref(result);
	for (size_t i = 0; i < task_weight(t); i++)
		map_item_end(m, t, t->index + i, NULL, code, msg);
	if (m->streamed)
		map_feed(m); /* the callers dispatch */
	map_maybe_free(m);
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
