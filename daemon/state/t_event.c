/* The event type (multiprocessing.Event): a flag that waiters block on. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "obj.h"

struct event_obj {
	bool set;
};

static const char *const event_options[] = { NULL };

#define E(c) ((struct event_obj *)(c)->o->data)

static enum mpsup_err event_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	if (obj_opts_only(opts, event_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	if (!(o->data = calloc(1, sizeof(struct event_obj)))) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	return MPSUP_OK;
}

static void event_obj_free(struct obj *o)
{
	free(o->data);
}

static json_t *event_get_all(const struct obj *o)
{
	return json_boolean(((const struct event_obj *)o->data)->set);
}

static size_t event_size(const struct obj *o)
{
	return ((const struct event_obj *)o->data)->set;
}

static bool event_options_equal(const struct obj *o, json_t *opts)
{
	char err[128];

	(void)o;
	return obj_opts_only(opts, event_options, err, sizeof(err)) == 0;
}

/* set: every waiter wakes with {set: true} */
static enum cmd_ret event_set(struct obj_call *c)
{
	struct waiter *w;

	E(c)->set = true;
	obj_ok(c, NULL);
	while ((w = waitq_first(&c->o->wq[0])))
		request_ok(waitq_take(w, NULL), json_pack("{s:b}", "set", 1));
	return CMD_DONE;
}

static enum cmd_ret event_clear(struct obj_call *c)
{
	E(c)->set = false;
	obj_ok(c, NULL);
	return CMD_DONE;
}

static enum cmd_ret event_is_set(struct obj_call *c)
{
	obj_ok(c, json_boolean(E(c)->set));
	return CMD_DONE;
}

static void waiter_timeout(struct waiter *w)
{
	request_ok(waitq_take(w, NULL), json_pack("{s:b}", "set", 0));
}

/* wait {timeout?} -> {set} */
static enum cmd_ret event_wait(struct obj_call *c)
{
	double timeout;

	if (request_timeout(c->r, obj_arg(c, 0), &timeout) < 0)
		return CMD_DONE;
	if (E(c)->set || timeout == 0) {
		obj_ok(c, json_pack("{s:b}", "set", E(c)->set));
		return CMD_DONE;
	}
	return waitq_park(&c->o->wq[0], c, timeout, waiter_timeout, NULL);
}

static const struct obj_op event_ops[] = {
	{ "event.set", ROLE_STATE, CMD_MUTATES, event_set, "" },
	{ "event.clear", ROLE_STATE, CMD_MUTATES, event_clear, "" },
	{ "event.is_set", ROLE_READ, OBJ_OP_EXISTING, event_is_set, "" },
	{ "event.wait", ROLE_READ, CMD_MAY_BLOCK, event_wait, "t:timeout?" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type event_type = {
	.name = "event",
	.create = event_create,
	.free = event_obj_free,
	.get = event_get_all,
	.dump = NULL,
	.size = event_size,
	.options_equal = event_options_equal,
	.ops = event_ops,
};
