/*
 * The state module: the command table (obj.* and every TYPE.OP, built
 * from the types' ops at init), the backend they go to (local or redis,
 * chosen at start), the replay of logged mutations, and the module's
 * info and metrics. The namespace and the local backend are obj.c's.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "obj.h"
#include "obj_int.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

/* Every type; adding a type is one line here. */
static const struct obj_type *const obj_types[] = {
	&dict_type, &list_type,  &value_type,     &array_type,   &queue_type,     &event_type,
	&lock_type, &rlock_type, &semaphore_type, &barrier_type, &condition_type,
};
#define N_TYPES (sizeof(obj_types) / sizeof(obj_types[0]))

const struct obj_type *obj_type_find(const char *name)
{
	for (size_t i = 0; i < N_TYPES; i++)
		if (strcmp(obj_types[i]->name, name) == 0)
			return obj_types[i];
	return NULL;
}

/* --- the command table ----------------------------------------------------------------- */

#define N_OBJ_CMDS 4
#define MAX_CMDS 128

static enum cmd_ret cmd_type_op(struct request *r);
static enum cmd_ret cmd_obj_create(struct request *r);
static enum cmd_ret cmd_obj_delete(struct request *r);
static enum cmd_ret cmd_obj_get(struct request *r);
static enum cmd_ret cmd_obj_list(struct request *r);

/* obj.* first, then every TYPE.OP (filled by state_cmds_build). */
static struct cmd_entry state_cmds[MAX_CMDS + 1] = {
	{ "obj.create", ROLE_STATE, CMD_MUTATES, cmd_obj_create,
	  "s:name s:type s:scope? s:access? *:options?" },
	{ "obj.delete", ROLE_STATE, CMD_MUTATES, cmd_obj_delete, "s:name" },
	{ "obj.get", ROLE_READ, 0, cmd_obj_get, "s:name" },
	{ "obj.list", ROLE_READ, 0, cmd_obj_list, "s:type?" },
};
/* For state_cmds[i]: its type, op and spec. */
static struct type_op cmd_ops[MAX_CMDS];

/* The backend chosen at start (state_start); local until then, which is
 * what persisted state is replayed into. */
static const struct state_backend *backend = &local_state_backend;

static enum cmd_ret cmd_type_op(struct request *r)
{
	return backend->op(r, &cmd_ops[r->cmd - state_cmds]);
}

static enum cmd_ret cmd_obj_create(struct request *r)
{
	return backend->obj_create(r);
}

static enum cmd_ret cmd_obj_delete(struct request *r)
{
	return backend->obj_delete(r);
}

static enum cmd_ret cmd_obj_get(struct request *r)
{
	return backend->obj_get(r);
}

static enum cmd_ret cmd_obj_list(struct request *r)
{
	return backend->obj_list(r);
}

static size_t type_op_index(const struct cmd_entry *e)
{
	return (size_t)(e - state_cmds);
}

static const struct cmd_entry *type_op_find(const char *name)
{
	static size_t last = N_OBJ_CMDS; /* replay repeats itself: look there first */

	if (state_cmds[last].name && strcmp(state_cmds[last].name, name) == 0)
		return &state_cmds[last];
	for (size_t i = N_OBJ_CMDS; state_cmds[i].name; i++)
		if (strcmp(state_cmds[i].name, name) == 0)
			return &state_cmds[last = i];
	return NULL;
}

int obj_replay(const char *cmd, json_t *params, char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	const struct obj_type *type;
	const struct cmd_entry *e;
	struct request rq = { .params = params };
	struct obj_call c = { .r = &rq, .replay = true, .err = err, .errlen = errlen };
	enum mpsup_err code;
	struct obj *o;

	if (!name || !name_valid(name, false)) {
		snprintf(err, errlen, "no valid object name");
		return -1;
	}
	o = obj_find(name);
	if (strcmp(cmd, "obj.create") == 0) {
		const char *tname = json_string_value(json_object_get(params, "type"));
		if (!tname || !(type = obj_type_find(tname)) || !type->dump) {
			snprintf(err, errlen, "%s: no persisted type", name);
			return -1;
		}
		if (o) {
			snprintf(err, errlen, "%s exists already", name);
			return -1;
		}
		return obj_create(name, type, params, &code, err, errlen) ? 0 : -1;
	}
	if (!o) {
		snprintf(err, errlen, "no object named %s", name);
		return -1;
	}
	if (strcmp(cmd, "obj.delete") == 0) {
		obj_delete(o);
		return 0;
	}
	if (!(e = type_op_find(cmd))) {
		snprintf(err, errlen, "unknown command");
		return -1;
	}
	c.op = cmd_ops[type_op_index(e)].op;
	if (o->type != cmd_ops[type_op_index(e)].type) {
		snprintf(err, errlen, "%s is a %s", name, o->type->name);
		return -1;
	}
	rq.cmd = e;
	c.o = o;
	if (obj_params_read(&c, &cmd_ops[type_op_index(e)].spec) == 0)
		c.op->fn(&c);
	else
		c.failed = true;
	obj_call_done(&c);
	return c.failed ? -1 : 0;
}

/*
 * Turn every type's ops (each named as its command: "dict.get") into
 * commands: the module's init, run by command_init() before it reads the
 * table.
 */
static void state_cmds_build(void)
{
	size_t n = N_OBJ_CMDS;
	bool redis = daemon_g.conf && daemon_g.conf->state_backend == STATE_BACKEND_REDIS;

	if (redis)
		for (size_t i = 0; i < N_OBJ_CMDS; i++)
			state_cmds[i].flags |= CMD_MAY_BLOCK;
	for (size_t t = 0; t < N_TYPES; t++)
		for (const struct obj_op *op = obj_types[t]->ops; op->name; op++) {
			size_t tl = strlen(obj_types[t]->name);
			if (n >= MAX_CMDS)
				fatalx("state", "too many state commands (MAX_CMDS)");
			if (strncmp(op->name, obj_types[t]->name, tl) != 0 || op->name[tl] != '.')
				fatalx("state", "%s: not an op of type %s", op->name,
				       obj_types[t]->name);
			if ((size_t)snprintf(cmd_ops[n].params, sizeof(cmd_ops[n].params),
					     "s:name %s",
					     op->spec ? op->spec : "") >= sizeof(cmd_ops[n].params))
				fatalx("state", "%s: spec too long", op->name);
			/* Through Redis every op waits for its reply. */
			state_cmds[n] = (struct cmd_entry){ op->name, op->role,
							    op->flags | CMD_IN_PLACE |
								    (redis ? CMD_MAY_BLOCK : 0),
							    cmd_type_op, cmd_ops[n].params };
			cmd_ops[n].type = obj_types[t];
			cmd_ops[n].op = op;
			if (obj_spec_parse(op->spec, &cmd_ops[n].spec) < 0)
				fatalx("state", "%s: bad parameter spec '%s'", op->name, op->spec);
			n++;
		}
}

static void state_info(json_t *info)
{
	json_t *st = json_pack("{s:s}", "backend", backend->name);

	json_object_set_new(info, "objects",
			    json_pack("{s:i, s:I}", "count", (int)obj_count(), "queue_items",
				      (json_int_t)queue_items_total));
	if (backend == &redis_state_backend)
		redis_backend_info(st);
	json_object_set_new(info, "state", st);
}

/* Choose the backend: the config's state_backend, read at start only. */
static int state_start(const struct conf *conf)
{
	if (conf->state_backend != STATE_BACKEND_REDIS)
		return 0;
	if (redis_backend_start(conf) < 0)
		return -1;
	backend = &redis_state_backend;
	return 0;
}

static void state_stop(void (*done)(void))
{
	if (backend == &redis_state_backend)
		redis_backend_stop();
	done();
}

/* Objects and their sizes by type, summed in one walk. */
struct type_sums {
	uint64_t count[N_TYPES], items[N_TYPES];
};

static void type_sum(struct obj *o, void *arg)
{
	struct type_sums *t = arg;

	for (size_t i = 0; i < N_TYPES; i++)
		if (obj_types[i] == o->type) {
			t->count[i]++;
			t->items[i] += o->type->size ? o->type->size(o) : 0;
			return;
		}
}

static void state_metrics(struct evbuffer *b)
{
	struct metrics_label l = { "type", NULL };
	struct type_sums t = { { 0 }, { 0 } };

	obj_foreach(type_sum, &t);
	metrics_family(b, "mpsup_objects", "gauge", "Shared-state objects, by type.");
	for (size_t i = 0; i < N_TYPES; i++) {
		l.value = obj_types[i]->name;
		metrics_u64(b, "mpsup_objects", &l, 1, t.count[i]);
	}
	metrics_family(b, "mpsup_object_items", "gauge",
		       "Elements of shared-state objects (as obj.list's size), by type.");
	for (size_t i = 0; i < N_TYPES; i++) {
		l.value = obj_types[i]->name;
		metrics_u64(b, "mpsup_object_items", &l, 1, t.items[i]);
	}
	metrics_family(b, "mpsup_state_memory_bytes", "gauge",
		       "Bytes of shared-state data counted against max_memory.");
	metrics_u64(b, "mpsup_state_memory_bytes", NULL, 0, obj_mem_used());
}

const struct cmd_module state_module = {
	.capability = "state",
	.init = state_cmds_build,
	.cmds = state_cmds,
	.info = state_info,
	.start = state_start,
	.stop = state_stop,
	.metrics = state_metrics,
};
