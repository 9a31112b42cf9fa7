/*
 * The condition type (multiprocessing.Condition): a recursive lock (the
 * owned counter of t_lock.c) with a second wait queue. wait gives the lock
 * up entirely and stands in wq[1]; a notify, or the wait's timeout, moves
 * the waiter to the lock's queue wq[0] with no timeout, where it takes the
 * lock back with the recursion depth it had and is answered {notified}.
 * So a notified waiter returns holding the lock even when that takes
 * longer than its timeout, as in Python. A holder that vanishes releases
 * the lock (abandoned) and wakes lock waiters only: nothing in wait is
 * woken by it.
 */
#include "config.h"

#include <stdint.h>

#include "obj.h"

static const char *const condition_options[] = { NULL };

static enum mpsup_err condition_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	if (obj_opts_only(opts, condition_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	return owned_create(o, 1, true, err, errlen);
}

static bool condition_options_equal(const struct obj *o, json_t *opts)
{
	char err[128];

	(void)o;
	return obj_opts_only(opts, condition_options, err, sizeof(err)) == 0;
}

/* A waiter of wq[1] goes on to wait for the lock; notified or not. */
static void condition_requeue(struct waiter *w, bool notified)
{
	json_array_set_new(w->item, 1, json_boolean(notified));
	waitq_move(w, &w->o->wq[0]);
}

/* The wait timed out: take the lock back all the same, then answer. */
static void wait_timeout(struct waiter *w)
{
	struct obj *o = w->o;

	condition_requeue(w, false);
	owned_wake(o);
}

/* wait {timeout?} -> {notified, abandoned?}; the caller must hold it. */
static enum cmd_ret condition_wait(struct obj_call *c)
{
	struct holder *h;
	double timeout;
	json_t *item;

	if (request_timeout(c->r, obj_arg(c, 0), &timeout) < 0 || !(h = owned_holder(c)))
		return CMD_DONE;
	if (!(item = json_pack("[I, b]", (json_int_t)h->count, 0))) {
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	/* Park first (refused at max_waiters: the caller keeps the lock), then
	 * let go. */
	if (waitq_park(&c->o->wq[1], c, timeout, wait_timeout, item) != CMD_WAIT)
		return CMD_DONE;
	owned_release_all(c, h);
	return CMD_WAIT;
}

/* notify {n?: 1} / notify_all -> {woken}; the caller must hold it. */
static enum cmd_ret condition_notify_n(struct obj_call *c, json_int_t n)
{
	json_int_t woken = 0;
	struct waiter *w;

	if (!owned_holder(c))
		return CMD_DONE;
	while (woken < n && (w = waitq_first(&c->o->wq[1]))) {
		condition_requeue(w, true);
		woken++;
	}
	/* The notifier holds the lock: the moved waiters get it on release. */
	obj_ok(c, json_pack("{s:I}", "woken", woken));
	return CMD_DONE;
}

static enum cmd_ret condition_notify(struct obj_call *c)
{
	json_int_t n = 1;

	if (obj_has(c, 0)) {
		if (!obj_arg_is_int(c, 0) || (n = obj_arg_int(c, 0)) < 0) {
			obj_error(c, MPSUP_E_BAD_REQUEST, "n must be an integer >= 0");
			return CMD_DONE;
		}
	}
	return condition_notify_n(c, n);
}

static enum cmd_ret condition_notify_all(struct obj_call *c)
{
	return condition_notify_n(c, INT64_MAX);
}

/* locked -> whether anyone holds it (its held count: owned_size) */
static enum cmd_ret condition_locked(struct obj_call *c)
{
	obj_ok(c, json_boolean(owned_size(c->o) > 0));
	return CMD_DONE;
}

static const struct obj_op condition_ops[] = {
	{ "condition.acquire", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK, owned_acquire,
	  "t:timeout?" },
	{ "condition.release", ROLE_STATE, CMD_MUTATES, owned_release, "" },
	{ "condition.locked", ROLE_READ, OBJ_OP_EXISTING, condition_locked, "" },
	{ "condition.wait", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK | OBJ_OP_EXISTING,
	  condition_wait, "t:timeout?" },
	{ "condition.notify", ROLE_STATE, CMD_MUTATES | OBJ_OP_EXISTING, condition_notify, "i:n?" },
	{ "condition.notify_all", ROLE_STATE, CMD_MUTATES | OBJ_OP_EXISTING, condition_notify_all,
	  "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type condition_type = {
	.name = "condition",
	.create = condition_create,
	.free = owned_free,
	.get = owned_state,
	.dump = NULL,
	.size = owned_size,
	.options_equal = condition_options_equal,
	.ops = condition_ops,
};
