/*
 * Pools at run time: pool.list, pool.add, pool.scale and pool.remove (parked
 * until the pool is gone).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "park.h"
#include "proc_cmd.h"
#include "task.h"

/* A pool.remove waiting for its pool to be gone. */
struct pool_waiter {
	struct park park;
	struct pool *pl;
};

static struct park_queue pool_waiters = { TAILQ_HEAD_INITIALIZER(pool_waiters.head), 0 };

void pool_cmd_pool_gone(struct pool *pl)
{
	struct park *wp, *next;

	for (wp = park_first(&pool_waiters); wp; wp = next) {
		struct pool_waiter *w = PARK_OWNER(wp, struct pool_waiter, park);
		next = park_next(wp);
		if (w->pl != pl)
			continue;
		request_ok(park_take(wp), json_pack("{s:s}", "removed", pl->name));
		free(w);
	}
}

static void pool_waiter_cancel(struct park *p)
{
	free(PARK_OWNER(p, struct pool_waiter, park));
}

static json_t *pool_json(const struct pool *pl)
{
	json_t *j = pool_conf_to_json(pl->conf);
	unsigned running = 0;

	for (unsigned i = 0; i < pl->n_slots; i++)
		running += pl->members[i] && proc_is_alive(pl->members[i]);
	json_object_set_new(j, "running", json_integer(running));
	/* lines the pool's output files could not take (disk full, ...) */
	json_object_set_new(j, "output_errors",
			    json_integer((json_int_t)((pl->out ? pl->out->errors : 0) +
						      (pl->err ? pl->err->errors : 0))));
	task_pool_record(pl, j);
	return j;
}

enum cmd_ret cmd_pool_list(struct request *r)
{
	json_t *a = json_array();
	struct pool *pl;

	if (request_unpack(r, "{}") < 0) {
		json_decref(a);
		return CMD_DONE;
	}
	TAILQ_FOREACH(pl, &pools, entry)
		if (!pl->removing)
			json_array_append_new(a, pool_json(pl));
	request_ok(r, a);
	return CMD_DONE;
}

/* Its adder's process exited: the pool goes as on pool.remove. */
static void pool_scope_gone(struct scope_link *l)
{
	struct pool *pl = CONTAINER_OF(l, struct pool, scope);

	log_info("proc", "pool %s: the process that added it (scope) exited", pl->name);
	pool_remove(pl);
}

/* Answer r for a scope_bind() error e of what. */
void scope_bind_error(struct request *r, int e)
{
	if (e == -ESRCH)
		request_error(r, MPSUP_E_CONFLICT, "%s: the requesting process has exited",
			      r->cmd->name);
	else if (e == -EMFILE)
		request_error(r, MPSUP_E_LIMIT, "%s", proc_fds_refusal());
	else
		request_error(r, MPSUP_E_INTERNAL, "%s: %s", r->cmd->name, strerror(-e));
}

/* The `scope` parameter of proc.run and pool.add, taken out of r's
 * parameters: 0 absent, 1 "process", -1 after answering bad_request. */
int scope_param(struct request *r)
{
	json_t *v = json_object_get(r->params, "scope");

	if (!v)
		return 0;
	if (!json_is_string(v) || strcmp(json_string_value(v), "process") != 0 || !r->conn) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: scope must be \"process\"",
			      r->cmd->name);
		return -1;
	}
	json_object_del(r->params, "scope");
	return 1;
}

enum cmd_ret cmd_pool_add(struct request *r)
{
	char err[CONF_ERR_MAX];
	struct pool_conf *pc;
	struct pool *pl;
	int e, scoped;

	if ((scoped = scope_param(r)) < 0)
		return CMD_DONE;
	if (pool_conf_from_json(r->params, &pc, err, sizeof(err)) < 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.add: %s", err);
		return CMD_DONE;
	}
	e = pool_create(pc, pc->autostart, false, &pl);
	if (e == -EEXIST)
		request_error(r, MPSUP_E_EXISTS, "a pool or process named '%s' exists", pc->name);
	else if (e == -ENOSPC)
		request_error(r, MPSUP_E_LIMIT, "too many processes (max_processes = %u)",
			      daemon_g.conf->max_processes);
	else if (e == -EMFILE)
		request_error(r, MPSUP_E_LIMIT, "%s", proc_fds_refusal());
	else if (e < 0)
		request_error(r, MPSUP_E_INTERNAL, "pool.add: %s", strerror(-e));
	else if (scoped && (e = scope_bind(r->conn, &pl->scope, pool_scope_gone)) < 0) {
		pool_remove(pl);
		scope_bind_error(r, e);
	} else {
		if (r->conn) {
			pl->owner.set = true;
			pl->owner.uid = r->conn->uid;
		}
		request_ok(r, pool_json(pl));
	}
	pool_conf_free(pc);
	return CMD_DONE;
}

enum cmd_ret cmd_pool_remove(struct request *r)
{
	struct pool_waiter *w;
	const char *name;
	struct pool *pl;

	if (request_unpack(r, "{s:s}", "pool", &name) < 0)
		return CMD_DONE;
	if (!(pl = pool_find(name))) {
		request_error(r, MPSUP_E_NOT_FOUND, "no pool named '%.100s'", name);
		return CMD_DONE;
	}
	if (!(w = calloc(1, sizeof(*w))) ||
	    park_keep(&w->park, r, &pool_waiters, -1, NULL, pool_waiter_cancel) < 0) {
		free(w);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	w->pl = pl;
	pool_remove(pl); /* answers w when the pool is gone (maybe now) */
	return r->replied ? CMD_DONE : CMD_WAIT;
}

enum cmd_ret cmd_pool_scale(struct request *r)
{
	const char *name;
	json_int_t n;
	struct pool *pl;
	int e;

	if (request_unpack(r, "{s:s, s:I}", "pool", &name, "processes", &n) < 0)
		return CMD_DONE;
	if (!(pl = pool_find(name))) {
		request_error(r, MPSUP_E_NOT_FOUND, "no pool named '%.100s'", name);
		return CMD_DONE;
	}
	if (n < 0 || n > 100000) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.scale: processes must be 0..100000");
		return CMD_DONE;
	}
	e = pool_scale(pl, (unsigned)n);
	if (e == -ENOSPC)
		request_error(r, MPSUP_E_LIMIT, "too many processes (max_processes = %u)",
			      daemon_g.conf->max_processes);
	else if (e == -EMFILE)
		request_error(r, MPSUP_E_LIMIT, "%s", proc_fds_refusal());
	else if (e < 0)
		request_error(r, MPSUP_E_INTERNAL, "pool.scale: %s", strerror(-e));
	else
		request_ok(r, pool_json(pl));
	return CMD_DONE;
}
