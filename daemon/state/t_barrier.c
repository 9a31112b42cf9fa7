/*
 * The barrier type (multiprocessing.Barrier): `parties` waiters meet, then
 * all go on with indexes 0..parties-1 in arrival order. A timeout (or
 * abort) breaks it: every waiter, and every later wait, gets `broken` until
 * reset. A waiter whose connection closes simply leaves.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "obj.h"

struct barrier {
	unsigned parties;
	bool broken;
};

static const char *const barrier_options[] = { "parties", NULL };

#define B(c) ((struct barrier *)(c)->o->data)

static enum mpsup_err barrier_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	struct barrier *b;
	json_int_t parties;

	if (obj_opts_only(opts, barrier_options, err, errlen) < 0 ||
	    obj_opt_int(opts, "parties", 1, 1, INT32_MAX, &parties, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	/* parties - 1 wait for the last one; more than max_waiters never meet. */
	if ((json_int_t)daemon_g.conf->max_waiters < parties - 1) {
		snprintf(err, errlen,
			 "'parties' %lld needs %lld waiters, more than max_waiters (%u) allows",
			 (long long)parties, (long long)parties - 1, daemon_g.conf->max_waiters);
		return MPSUP_E_LIMIT;
	}
	if (!(b = calloc(1, sizeof(*b)))) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	b->parties = (unsigned)parties;
	o->data = b;
	return MPSUP_OK;
}

static void barrier_free(struct obj *o)
{
	free(o->data);
}

static json_t *barrier_get_all(const struct obj *o)
{
	const struct barrier *b = o->data;

	return json_pack("{s:i, s:i, s:b}", "parties", (int)b->parties, "n_waiting",
			 (int)waitq_len(&o->wq[0]), "broken", b->broken);
}

static size_t barrier_size(const struct obj *o)
{
	return waitq_len(&o->wq[0]);
}

static bool barrier_options_equal(const struct obj *o, json_t *opts)
{
	json_int_t parties;
	char err[128];

	return obj_opts_only(opts, barrier_options, err, sizeof(err)) == 0 &&
	       obj_opt_int(opts, "parties", 1, 1, INT32_MAX, &parties, err, sizeof(err)) == 0 &&
	       (unsigned)parties == ((const struct barrier *)o->data)->parties;
}

/* Answer every waiter `broken` (and mark the barrier broken if asked). */
static void barrier_break(struct obj *o, bool mark)
{
	struct waiter *w;

	if (mark)
		((struct barrier *)o->data)->broken = true;
	while ((w = waitq_first(&o->wq[0])))
		request_error(waitq_take(w, NULL), MPSUP_E_BROKEN, "%s: barrier broken", o->name);
}

/* The waiter whose timeout broke the barrier hears why; the others do not. */
static void waiter_timeout(struct waiter *w)
{
	struct obj *o = w->o;

	request_error(waitq_take(w, NULL), MPSUP_E_BROKEN, "%s: barrier broken (timeout)", o->name);
	barrier_break(o, true);
}

/* wait {timeout?} -> {index} */
static enum cmd_ret barrier_wait(struct obj_call *c)
{
	struct barrier *b = B(c);
	struct waiter *w;
	double timeout;
	int index = 0;

	if (request_timeout(c->r, obj_arg(c, 0), &timeout) < 0)
		return CMD_DONE;
	if (b->broken) {
		obj_error(c, MPSUP_E_BROKEN, "%s: barrier broken", c->o->name);
		return CMD_DONE;
	}
	if (waitq_len(&c->o->wq[0]) + 1 >= b->parties) {
		obj_ok(c, json_pack("{s:i}", "index", (int)b->parties - 1));
		while ((w = waitq_first(&c->o->wq[0])))
			request_ok(waitq_take(w, NULL), json_pack("{s:i}", "index", index++));
		return CMD_DONE;
	}
	if (timeout == 0) {
		barrier_break(c->o, true);
		obj_error(c, MPSUP_E_BROKEN, "%s: barrier broken (timeout)", c->o->name);
		return CMD_DONE;
	}
	return waitq_park(&c->o->wq[0], c, timeout, waiter_timeout, NULL);
}

/* reset: waiters get `broken`; the barrier is whole again */
static enum cmd_ret barrier_reset(struct obj_call *c)
{
	barrier_break(c->o, false);
	B(c)->broken = false;
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* abort: break it on purpose */
static enum cmd_ret barrier_abort(struct obj_call *c)
{
	barrier_break(c->o, true);
	obj_ok(c, NULL);
	return CMD_DONE;
}

static const struct obj_op barrier_ops[] = {
	{ "barrier.wait", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK | OBJ_OP_EXISTING, barrier_wait,
	  "t:timeout?" },
	{ "barrier.reset", ROLE_STATE, CMD_MUTATES | OBJ_OP_EXISTING, barrier_reset, "" },
	{ "barrier.abort", ROLE_STATE, CMD_MUTATES | OBJ_OP_EXISTING, barrier_abort, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type barrier_type = {
	.name = "barrier",
	.create = barrier_create,
	.free = barrier_free,
	.get = barrier_get_all,
	.dump = NULL,
	.size = barrier_size,
	.options_equal = barrier_options_equal,
	.ops = barrier_ops,
};
