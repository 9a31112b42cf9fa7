/*
 * Task pools: the protocol commands pool.map, pool.submit, task.wait and
 * task.status (docs/tasks.md), and the timeouts and cancels of the
 * requests they park. A command module on top of task.c.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "jsonw.h"
#include "log.h"
#include "park.h"
#include "proc.h"
#include "stream.h"
#include "task_int.h"
#include "task_redis.h"

/* A pool.imap queues no more tasks while this much of its stream is
 * unsent (its reader is slow): the daemon holds about this much for it. */
#define IMAP_OUT_MAX (256 * 1024)

static struct stream_set imaps = STREAM_SET_INITIALIZER(imaps);

static const char *const task_state_names[] = { "pending", "running", "done", "failed" };

/*
 * Parked requests: task.wait waiters and pool.map maps.
 */

/* A task.wait's connection closed. */
static void waiter_cancel(struct park *p)
{
	free(PARK_OWNER(p, struct task_waiter, park));
}

/* A task.wait's timeout passed: the task is left alone. */
static void waiter_timeout(struct park *p)
{
	struct task_waiter *w = PARK_OWNER(p, struct task_waiter, park);
	struct request *r = park_take(p);
	uint64_t id = w->t->id;

	free(w);
	request_error(r, MPSUP_E_TIMEOUT, "task %" PRIu64 " has not finished", id);
}

/* A pool.map's connection closed: its pending tasks are dropped. */
static void map_cancel(struct park *p)
{
	struct map *m = PARK_OWNER(p, struct map, park);

	map_drop_pending(m);
	log_debug("task", "pool.map cancelled: its connection closed (%zu of %zu done)", m->done,
		  m->n);
	map_maybe_free(m);
}

/* A pool.map's timeout passed: answered with timeout, as a failure. */
static void map_timeout(struct park *p)
{
	struct map *m = PARK_OWNER(p, struct map, park);
	char msg[160];

	snprintf(msg, sizeof(msg), "pool.map: %zu of %zu items done after %gs", m->done, m->n,
		 m->timeout);
	map_fail(m, SIZE_MAX, MPSUP_E_TIMEOUT, msg);
	map_maybe_free(m);
}

/*
 * Commands.
 */

/* The task pool named name, ready to take n more tasks; answers and
 * returns NULL when not. */
static struct task_pool *pool_for_tasks(struct request *r, const char *name, size_t n)
{
	struct task_pool *tp;
	struct pool *pl;
	char why[200];

	if (!(pl = pool_find(name)) || request_access(r, &pl->owner) != ACCESS_OK) {
		request_error(r, MPSUP_E_NOT_FOUND, "no pool named '%.100s'", name);
		return NULL;
	}
	if (pool_cannot_run(pl, false, why, sizeof(why))) {
		request_error(r, MPSUP_E_CONFLICT, "%s", why);
		return NULL;
	}
	if (!(tp = tp_get(pl))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return NULL;
	}
	if (task_redis_pool(tp) && task_redis_refuse(r, tp, n))
		return NULL;
	if (n > pl->conf->max_pending || tp->n_pending + n > pl->conf->max_pending) {
		request_error(r, MPSUP_E_LIMIT,
			      "pool %s: %u tasks pending, %zu more (max_pending = %u)", pl->name,
			      tp->n_pending, n, pl->conf->max_pending);
		return NULL;
	}
	return tp;
}

/* r's items (a list: items as read) as their text and places (map_new);
 * answers and returns -1 when they cannot be had. */
static int request_items(struct request *r, json_t *items, char **ret_text, struct jspan **ret_at,
			 size_t *ret_n)
{
	const char *text;
	char *dumped = NULL;
	size_t len;
	int rc;

	if (!json_is_array(items)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: items must be a list", r->cmd->name);
		return -1;
	}
	/* a short list, or a line not read in place, came as a tree */
	if (!request_raw(r, "items", &text, &len)) {
		if (!(dumped = json_dumps(items, JSON_COMPACT))) {
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
			return -1;
		}
		text = dumped;
		len = strlen(dumped);
	}
	rc = map_items_read(text, len, ret_text, ret_at, ret_n);
	free(dumped);
	if (rc == -E2BIG)
		request_error(r, MPSUP_E_TOO_LARGE, "%s: items past 4 GiB", r->cmd->name);
	else if (rc < 0)
		request_error(r, MPSUP_E_INTERNAL, "%s: %s", r->cmd->name,
			      rc == -ENOMEM ? "out of memory" : "items cannot be read");
	return rc < 0 ? -1 : 0;
}

/* pool.map's chunk size for n items on tp's pool: the chunksize parameter
 * cs (0: absent), else Python's default when the pool takes chunks
 * (ceil(n / (4 * processes))), else 1. Answers and returns 0 when cs does
 * not suit the pool. */
static size_t map_chunksize(struct request *r, const struct task_pool *tp, size_t n, json_int_t cs)
{
	const struct pool_conf *pc = tp->pl->conf;
	size_t per = 4 * (size_t)(pc->processes ? pc->processes : 1);

	if (pc->task_queue == TASK_QUEUE_REDIS) {
		if (cs <= 1)
			return 1; /* task_redis.c batches items per stream entry */
		request_error(r, MPSUP_E_CONFLICT,
			      "pool.map: pool %s does not take chunks (task_queue = redis)",
			      tp->pl->name);
		return 0;
	}
	if (cs > 1 && !pc->task_chunks) {
		request_error(r, MPSUP_E_CONFLICT,
			      "pool.map: pool %s does not take chunks (task_chunks = no)",
			      tp->pl->name);
		return 0;
	}
	if (cs >= 1)
		return (size_t)cs;
	return pc->task_chunks ? (n + per - 1) / per : 1;
}

static enum cmd_ret cmd_pool_map(struct request *r)
{
	const char *name, *errors = "raise";
	json_t *items, *tv = NULL;
	json_int_t cs = 0;
	int wait = 0;
	struct task_pool *tp;
	struct map *m;
	double timeout;
	size_t n, chunksize;

	char *text = NULL;
	struct jspan *at = NULL;

	if (request_unpack(r, "{s:s, s:o, s?o, s?I, s?s, s?b}", "pool", &name, "items", &items,
			   "timeout", &tv, "chunksize", &cs, "errors", &errors, "wait",
			   &wait) < 0 ||
	    request_timeout(r, tv, &timeout) < 0)
		return CMD_DONE;
	if (!json_is_array(items)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.map: items must be a list");
		return CMD_DONE;
	}
	if (json_object_get(r->params, "chunksize") && (cs < 1 || cs > 1000000)) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "pool.map: chunksize must be an integer from 1 to 1000000");
		return CMD_DONE;
	}
	if (strcmp(errors, "raise") != 0 && strcmp(errors, "return") != 0) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "pool.map: errors must be \"raise\" or \"return\"");
		return CMD_DONE;
	}
	if (request_items(r, items, &text, &at, &n) < 0)
		return CMD_DONE;
	/* wait: queued as the backlog has room (map_feed) instead of limit */
	if (!(tp = pool_for_tasks(r, name, wait ? 0 : n)) ||
	    !(chunksize = map_chunksize(r, tp, n, cs)))
		goto done;
	if (n == 0) {
		request_ok(r, json_pack("{s:[]}", "results"));
		goto done;
	}
	if (wait && (chunksize < n ? chunksize : n) > tp->pl->conf->max_pending) {
		request_error(r, MPSUP_E_LIMIT,
			      "pool %s: a chunk of %zu items can never fit (max_pending = %u)",
			      tp->pl->name, chunksize, tp->pl->conf->max_pending);
		goto done;
	}
	m = map_new(text, at, n, timeout, chunksize, strcmp(errors, "return") == 0);
	text = NULL; /* the map's now */
	at = NULL;
	if (!m) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (park_keep(&m->park, r, NULL, timeout, map_timeout, map_cancel) < 0) {
		map_maybe_free(m);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	m->waits = wait;
	map_enqueue(m, tp);
	m->owner = r->conn ? r->conn->uid : 0;
	tp_dispatch(tp);
	return r->replied ? CMD_DONE : CMD_WAIT;
done:
	free(text);
	free(at);
	return CMD_DONE;
}

/*
 * pool.imap: a map whose items are streamed as they end.
 */

/* Whether m's reader keeps up: its unsent output is below IMAP_OUT_MAX
 * and half of max_output_bytes (past which a stream is dropped). */
static bool imap_may_feed(struct map *m)
{
	const struct conn *c = m->stream.r ? m->stream.r->conn : NULL;
	size_t max = daemon_g.conf->max_output_bytes / 2;

	return !c || conn_out_len(c) < (max < IMAP_OUT_MAX ? max : IMAP_OUT_MAX);
}

/* Send item i's line, {"index": i, "result"|"error": V}; false when the
 * stream ended (m must not be freed here: the caller's map_maybe_free()
 * does it). */
static bool imap_send(struct map *m, size_t i)
{
	static const char oom[] = "{\"code\":\"internal\",\"message\":\"out of memory\"}";
	static struct jsonw w; /* reused: one line at a time */
	bool done = m->fin[i] == FIN_DONE, ok;
	char *e = NULL;

	w.len = 0;
	w.comma = false;
	jsonw_open(&w, '{');
	jsonw_key(&w, "index");
	jsonw_int(&w, (long long)i);
	jsonw_key(&w, done ? "result" : "error");
	if (done)
		map_answer_item(&w, m, i);
	else if (m->errs && m->errs[i] && (e = json_dumps(m->errs[i], JSON_COMPACT)))
		jsonw_raw(&w, e, strlen(e));
	else
		jsonw_raw(&w, oom, sizeof(oom) - 1);
	free(e);
	jsonw_close(&w, '}');
	map_item_sent(m, i);
	m->emitted++;
	m->failed += !done;
	if (!jsonw_ok(&w)) {
		jsonw_free(&w);
		return false;
	}
	ok = stream_send_text(&m->stream, w.buf, w.len);
	return ok;
}

/* Item i of m ended: send it (unordered) or every item now in order. */
static void imap_item_end(struct map *m, size_t i)
{
	json_t *sum;

	m->in_emit = true;
	if (!m->ordered) {
		if (!imap_send(m, i))
			goto out;
	} else
		while (m->next_emit < m->n && m->fin[m->next_emit])
			if (!imap_send(m, m->next_emit++))
				goto out;
	if (m->emitted == m->n) {
		sum = json_pack("{s:b, s:I, s:I}", "done", 1, "n", (json_int_t)m->n, "failed",
				(json_int_t)m->failed);
		stream_send(&m->stream, sum);
		json_decref(sum);
	}
out:
	m->in_emit = false;
}

/* The reader read: queue more of the map. */
static void imap_drained(struct request *r)
{
	struct map *m = STREAM_OWNER(r->data, struct map, stream);

	if (map_live(m) && map_feed(m))
		tp_dispatch(m->tp);
}

/* The stream ended (closed, or dropped): pending tasks go, the running
 * ones finish and are discarded. */
static void imap_closed(struct stream *s)
{
	struct map *m = STREAM_OWNER(s, struct map, stream);

	m->live = false;
	map_drop_pending(m);
	log_debug("task", "pool.imap ended: %zu of %zu items sent", m->emitted, m->n);
	if (!m->in_emit)
		map_maybe_free(m);
}

static enum cmd_ret cmd_pool_imap(struct request *r)
{
	const char *name;
	json_t *items, *first;
	json_int_t cs = 0;
	int ordered = 1;
	struct task_pool *tp;
	struct map *m;
	size_t n, chunksize;
	char why[200];

	char *text = NULL;
	struct jspan *at = NULL;

	if (request_unpack(r, "{s:s, s:o, s?b, s?I}", "pool", &name, "items", &items, "ordered",
			   &ordered, "chunksize", &cs) < 0)
		return CMD_DONE;
	if (!json_is_array(items)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.imap: items must be a list");
		return CMD_DONE;
	}
	if (json_object_get(r->params, "chunksize") && (cs < 1 || cs > 1000000)) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "pool.imap: chunksize must be an integer from 1 to 1000000");
		return CMD_DONE;
	}
	if (request_items(r, items, &text, &at, &n) < 0)
		return CMD_DONE;
	/* queued a few at a time (map_feed): the backlog must have room for
	 * one item, not the whole map (max_request_bytes bounds that) */
	if (!(tp = pool_for_tasks(r, name, n ? 1 : 0)) ||
	    !(chunksize = map_chunksize(r, tp, n, cs))) {
		free(text);
		free(at);
		return CMD_DONE;
	}
	if (cs == 0)
		chunksize = 1; /* as multiprocessing.Pool.imap: its default is 1 */
	if (!(m = map_new(text, at, n, 0, chunksize, false))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	m->streamed = m->live = true;
	m->ordered = ordered;
	m->item_end = imap_item_end;
	m->may_feed = imap_may_feed;
	if (stream_open(&m->stream, r, &imaps, imap_closed, why, sizeof(why)) < 0) {
		m->live = false;
		map_maybe_free(m);
		request_error(r, MPSUP_E_LIMIT, "too many streams: %s", why);
		return CMD_DONE;
	}
	r->drained = imap_drained;
	m->owner = r->conn ? r->conn->uid : 0;
	first = mpsup_response_ok(r->id,
				  json_pack("{s:I, s:I, s:b}", "n", (json_int_t)n, "chunksize",
					    (json_int_t)chunksize, "ordered", ordered));
	m->in_emit = true;
	if (!stream_send(&m->stream, first) || n == 0) {
		json_decref(first);
		m->in_emit = false;
		if (n == 0 && map_live(m)) {
			json_t *sum = json_pack("{s:b, s:I, s:I}", "done", 1, "n", 0, "failed", 0);
			stream_send(&m->stream, sum);
			json_decref(sum);
		}
		if (!map_live(m))
			map_maybe_free(m);
		return CMD_STREAM;
	}
	json_decref(first);
	m->in_emit = false;
	map_enqueue(m, tp);
	tp_dispatch(tp);
	return CMD_STREAM;
}

static enum cmd_ret cmd_pool_submit(struct request *r)
{
	const char *name;
	json_t *item;
	struct task_pool *tp;
	struct task *t;

	if (request_unpack(r, "{s:s, s:o}", "pool", &name, "item", &item) < 0 ||
	    !(tp = pool_for_tasks(r, name, 1)))
		return CMD_DONE;
	if (!(t = subm_new(tp, name, item, r->conn ? r->conn->uid : 0))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	tp_enqueue(tp, t);
	request_ok(r, json_pack("{s:I}", "task", (json_int_t)t->id));
	tp_dispatch(tp);
	return CMD_DONE;
}

/* Read {task} (an integer) and find the submitted task; answers on failure. */
static struct task *task_param(struct request *r, json_t *v)
{
	struct task *t;

	if (!json_is_integer(v) || json_integer_value(v) <= 0) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "%s: task must be a task id (a positive integer)", r->cmd->name);
		return NULL;
	}
	t = subm_find((uint64_t)json_integer_value(v));
	/* Task ids are sequential: another user's results are not yours to
	 * read or take (an admin may). */
	if (t && r->conn && r->conn->role < ROLE_ADMIN && r->conn->uid != t->sub->owner)
		t = NULL;
	if (!t)
		request_error(r, MPSUP_E_NOT_FOUND,
			      "no task %" JSON_INTEGER_FORMAT " (unknown, fetched or evicted)",
			      json_integer_value(v));
	return t;
}

static enum cmd_ret cmd_task_wait(struct request *r)
{
	json_t *id, *tv = NULL;
	struct task_waiter *w;
	struct task *t;
	double timeout;

	if (request_unpack(r, "{s:o, s?o}", "task", &id, "timeout", &tv) < 0 ||
	    request_timeout(r, tv, &timeout) < 0 || !(t = task_param(r, id)))
		return CMD_DONE;
	if (t->sub->finished > 0) {
		answer_task(r, t);
		subm_free(t);
		return CMD_DONE;
	}
	if (timeout == 0) {
		request_error(r, MPSUP_E_TIMEOUT, "task %" PRIu64 " has not finished", t->id);
		return CMD_DONE;
	}
	if (!(w = calloc(1, sizeof(*w))) ||
	    park_keep(&w->park, r, &t->sub->waiters, timeout, waiter_timeout, waiter_cancel) < 0) {
		free(w);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	w->t = t;
	return CMD_WAIT;
}

static enum cmd_ret cmd_task_status(struct request *r)
{
	json_t *id, *res;
	struct task *t;

	if (request_unpack(r, "{s:o}", "task", &id) < 0 || !(t = task_param(r, id)))
		return CMD_DONE;
	res = json_pack("{s:I, s:s, s:s, s:I}", "task", (json_int_t)t->id, "state",
			task_state_names[t->state], "pool", t->sub->pool, "attempts",
			(json_int_t)t->attempts);
	if (t->sub->ran_on[0])
		json_object_set_new(res, "worker", json_string(t->sub->ran_on));
	if (t->state == TASK_DONE)
		json_object_set(res, "result", t->result);
	else if (t->state == TASK_FAILED)
		json_object_set_new(res, "error",
				    json_pack("{s:s, s:s}", "code", mpsup_err_name(t->code),
					      "message", t->error ? t->error : "failed"));
	request_ok(r, res);
	return CMD_DONE;
}

/*
 * The module: its commands; its life (start, stop, info) is task.c's.
 */

static const struct cmd_entry task_cmds[] = {
	{ "pool.map", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK | CMD_RAW_VALUES, cmd_pool_map,
	  "s:pool a:items t:timeout? i:chunksize? s:errors? b:wait?" },
	{ "pool.imap", ROLE_STATE, CMD_MUTATES | CMD_STREAMS | CMD_RAW_VALUES, cmd_pool_imap,
	  "s:pool a:items b:ordered? i:chunksize?" },
	{ "pool.submit", ROLE_STATE, CMD_MUTATES, cmd_pool_submit, "s:pool o:item" },
	{ "task.wait", ROLE_STATE, CMD_MAY_BLOCK, cmd_task_wait, "o:task t:timeout?" },
	{ "task.status", ROLE_STATE, 0, cmd_task_status, "o:task" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct cmd_module task_module = {
	.capability = "tasks",
	.cmds = task_cmds,
	.info = task_info,
	.metrics = task_metrics,
	.start = task_start,
	.stop = task_stop,
};
