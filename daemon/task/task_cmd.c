/*
 * Task pools: the protocol commands pool.map, pool.submit, task.wait and
 * task.status (docs/tasks.md), and the timeouts and cancels of the
 * requests they park. A command module on top of task.c.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "command.h"
#include "conn.h"
#include "log.h"
#include "park.h"
#include "proc.h"
#include "task_int.h"

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
	if (pool_cannot_run(pl, why, sizeof(why))) {
		request_error(r, MPSUP_E_CONFLICT, "%s", why);
		return NULL;
	}
	if (!(tp = tp_get(pl))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return NULL;
	}
	if (n > pl->conf->max_pending || tp->n_pending + n > pl->conf->max_pending) {
		request_error(r, MPSUP_E_LIMIT,
			      "pool %s: %u tasks pending, %zu more (max_pending = %u)", pl->name,
			      tp->n_pending, n, pl->conf->max_pending);
		return NULL;
	}
	return tp;
}

static enum cmd_ret cmd_pool_map(struct request *r)
{
	const char *name;
	json_t *items, *tv = NULL;
	struct task_pool *tp;
	struct map *m;
	double timeout;
	size_t n;

	if (request_unpack(r, "{s:s, s:o, s?o}", "pool", &name, "items", &items, "timeout", &tv) <
		    0 ||
	    request_timeout(r, tv, &timeout) < 0)
		return CMD_DONE;
	if (!json_is_array(items)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.map: items must be a list");
		return CMD_DONE;
	}
	n = json_array_size(items);
	if (!(tp = pool_for_tasks(r, name, n)))
		return CMD_DONE;
	if (n == 0) {
		request_ok(r, json_pack("{s:[]}", "results"));
		return CMD_DONE;
	}
	if (!(m = map_new(items, timeout))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (park_keep(&m->park, r, NULL, timeout, map_timeout, map_cancel) < 0) {
		map_maybe_free(m);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	map_enqueue(m, tp);
	m->owner = r->conn ? r->conn->uid : 0;
	tp_dispatch(tp);
	return r->replied ? CMD_DONE : CMD_WAIT;
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
	{ "pool.map", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK, cmd_pool_map,
	  "s:pool a:items t:timeout?" },
	{ "pool.submit", ROLE_STATE, CMD_MUTATES, cmd_pool_submit, "s:pool o:item" },
	{ "task.wait", ROLE_STATE, CMD_MAY_BLOCK, cmd_task_wait, "o:task t:timeout?" },
	{ "task.status", ROLE_STATE, 0, cmd_task_status, "o:task" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct cmd_module task_module = {
	.capability = "tasks",
	.cmds = task_cmds,
	.info = task_info,
	.start = task_start,
	.stop = task_stop,
};
