/*
 * The semaphore type: a bounded semaphore (multiprocessing.BoundedSemaphore)
 * whose units belong to the connections that acquired them; releasing a
 * unit you do not hold is `conflict`. Built on the owned counter of t_lock.c.
 */
#include "config.h"

#include <stdint.h>

#include "obj.h"

static const char *const semaphore_options[] = { "value", NULL };

static enum mpsup_err semaphore_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_int_t value;

	if (obj_opts_only(opts, semaphore_options, err, errlen) < 0 ||
	    obj_opt_int(opts, "value", 1, 1, INT32_MAX, &value, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	return owned_create(o, (unsigned)value, false, err, errlen);
}

static bool semaphore_options_equal(const struct obj *o, json_t *opts)
{
	json_int_t value;
	char err[128];

	return obj_opts_only(opts, semaphore_options, err, sizeof(err)) == 0 &&
	       obj_opt_int(opts, "value", 1, 1, INT32_MAX, &value, err, sizeof(err)) == 0 &&
	       (unsigned)value == ((const struct owned *)o->data)->value;
}

/* get_value -> units available now */
static enum cmd_ret semaphore_get_value(struct obj_call *c)
{
	const struct owned *ow = c->o->data;

	obj_ok(c, json_integer((json_int_t)(ow->value - ow->held)));
	return CMD_DONE;
}

static const struct obj_op semaphore_ops[] = {
	{ "semaphore.acquire", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK, owned_acquire,
	  "t:timeout?" },
	{ "semaphore.release", ROLE_STATE, CMD_MUTATES, owned_release, "" },
	{ "semaphore.get_value", ROLE_READ, OBJ_OP_EXISTING, semaphore_get_value, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type semaphore_type = {
	.name = "semaphore",
	.create = semaphore_create,
	.free = owned_free,
	.get = owned_state,
	.dump = NULL,
	.size = owned_size,
	.options_equal = semaphore_options_equal,
	.ops = semaphore_ops,
};
