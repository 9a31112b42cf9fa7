/*
 * The lock and rlock types (multiprocessing.Lock/RLock), and the owned
 * counter they share with semaphore: units held by connections, handed to
 * waiters in arrival order, released when the holding connection closes
 * (the next owner then gets `abandoned: true`).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "obj.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

#define OW(o) ((struct owned *)(o)->data)

enum mpsup_err owned_create(struct obj *o, unsigned value, bool recursive, char *err, size_t errlen)
{
	struct owned *ow = calloc(1, sizeof(*ow));

	if (!ow) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	ow->value = value;
	ow->recursive = recursive;
	o->data = ow;
	return MPSUP_OK;
}

static void owned_conn_closed(struct conn *conn, void *arg);

void owned_free(struct obj *o)
{
	struct owned *ow = OW(o);

	for (size_t i = 0; i < ow->n_holders; i++)
		conn_remove_close_hook(ow->holders[i].conn, owned_conn_closed, o);
	free(ow->holders);
	free(ow);
}

json_t *owned_state(const struct obj *o)
{
	const struct owned *ow = OW(o);
	json_t *owners = json_array();

	for (size_t i = 0; owners && i < ow->n_holders; i++)
		json_array_append_new(owners, json_pack("{s:I, s:i, s:i}", "client",
							(json_int_t)ow->holders[i].conn->id, "pid",
							(int)ow->holders[i].conn->pid, "count",
							(int)ow->holders[i].count));
	if (o->type == &semaphore_type)
		return json_pack("{s:i, s:i, s:o, s:i}", "value", (int)ow->value, "available",
				 (int)(ow->value - ow->held), "owners", owners, "waiters",
				 (int)waitq_len(&o->wq[0]));
	if (o->type == &condition_type) /* waiting: in wait, not yet notified */
		return json_pack("{s:b, s:o, s:i, s:i}", "locked", ow->held > 0, "owners", owners,
				 "waiters", (int)waitq_len(&o->wq[0]), "waiting",
				 (int)waitq_len(&o->wq[1]));
	return json_pack("{s:b, s:o, s:i}", "locked", ow->held > 0, "owners", owners, "waiters",
			 (int)waitq_len(&o->wq[0]));
}

size_t owned_size(const struct obj *o)
{
	return OW(o)->held;
}

static struct holder *holder_find(struct owned *ow, struct conn *conn)
{
	for (size_t i = 0; i < ow->n_holders; i++)
		if (ow->holders[i].conn == conn)
			return &ow->holders[i];
	return NULL;
}

static void holder_remove(struct owned *ow, struct holder *h)
{
	*h = ow->holders[--ow->n_holders];
}

/* conn takes count more units (count > 1: a condition's waiter takes its
 * recursion depth back). Returns whether the previous owner had vanished
 * (reported once, to this owner), or -1 when out of memory. */
static int owned_take(struct obj *o, struct conn *conn, unsigned count)
{
	struct owned *ow = OW(o);
	struct holder *h = holder_find(ow, conn);
	bool abandoned = ow->abandoned;

	if (!h) {
		if (ow->n_holders == ow->cap_holders) {
			size_t cap = ow->cap_holders ? ow->cap_holders * 2 : 2;
			struct holder *hs = realloc(ow->holders, cap * sizeof(*hs));

			if (!hs)
				return -1;
			ow->holders = hs;
			ow->cap_holders = cap;
		}
		h = &ow->holders[ow->n_holders++];
		h->conn = conn;
		h->count = 0;
		conn_add_close_hook(conn, owned_conn_closed, o);
		if (ow->recursive)
			ow->held++; /* a recursive lock counts its holder once */
	}
	h->count += count;
	if (!ow->recursive)
		ow->held += count;
	ow->abandoned = false;
	return abandoned;
}

/* The answer {KEY: value, abandoned?: true} to a take. */
static json_t *owned_answer(const char *key, bool value, int abandoned)
{
	if (abandoned)
		return json_pack("{s:b, s:b}", key, value, "abandoned", 1);
	return json_pack("{s:b}", key, value);
}

/* A waiter with an item is a condition's waiter taking the lock back: its
 * item is [depth, notified] and its answer {notified}. */
void owned_wake(struct obj *o)
{
	struct owned *ow = OW(o);
	struct waiter *w;

	while (ow->held < ow->value && (w = waitq_first(&o->wq[0]))) {
		json_t *item;
		struct request *r = waitq_take(w, &item);
		unsigned count = item ? (unsigned)json_integer_value(json_array_get(item, 0)) : 1;
		int abandoned = owned_take(o, r->conn, count);
		json_t *res = NULL;

		if (abandoned >= 0)
			res = item ? owned_answer("notified", json_is_true(json_array_get(item, 1)),
						  abandoned)
				   : owned_answer("acquired", true, abandoned);
		json_decref(item);
		if (res)
			request_ok(r, res);
		else
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
	}
}

/* A holder's connection closed: release everything it held. */
static void owned_conn_closed(struct conn *conn, void *arg)
{
	struct obj *o = arg;
	struct owned *ow = OW(o);
	struct holder *h = holder_find(ow, conn);

	if (!h)
		return;
	ow->held -= ow->recursive ? 1 : h->count;
	holder_remove(ow, h);
	ow->abandoned = true;
	obj_changed(o, "abandon");
	owned_wake(o);
}

static void acquire_timeout(struct waiter *w)
{
	request_ok(waitq_take(w, NULL), json_pack("{s:b}", "acquired", 0));
}

/* acquire {timeout?} -> {acquired, abandoned?} */
enum cmd_ret owned_acquire(struct obj_call *c)
{
	struct owned *ow = OW(c->o);
	struct holder *h;
	double timeout;

	if (request_timeout(c->r, obj_arg(c, 0), &timeout) < 0)
		return CMD_DONE;
	if (ow->recursive && (h = holder_find(ow, c->r->conn))) {
		h->count++;
		obj_ok(c, json_pack("{s:b}", "acquired", 1));
		return CMD_DONE;
	}
	if (ow->held < ow->value && !waitq_first(&c->o->wq[0])) {
		int abandoned = owned_take(c->o, c->r->conn, 1);

		if (abandoned < 0)
			obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		else
			obj_ok(c, owned_answer("acquired", true, abandoned));
		return CMD_DONE;
	}
	if (timeout == 0) {
		obj_ok(c, json_pack("{s:b}", "acquired", 0));
		return CMD_DONE;
	}
	return waitq_park(&c->o->wq[0], c, timeout, acquire_timeout, NULL);
}

struct holder *owned_holder(struct obj_call *c)
{
	struct holder *h = holder_find(OW(c->o), c->r->conn);

	if (!h)
		obj_error(c, MPSUP_E_CONFLICT, "%s is not held by this connection", c->o->name);
	return h;
}

unsigned owned_release_all(struct obj_call *c, struct holder *h)
{
	struct owned *ow = OW(c->o);
	unsigned count = h->count;

	ow->held -= ow->recursive ? 1 : count;
	holder_remove(ow, h);
	conn_remove_close_hook(c->r->conn, owned_conn_closed, c->o);
	owned_wake(c->o);
	return count;
}

/* release: `conflict` unless this connection holds it */
enum cmd_ret owned_release(struct obj_call *c)
{
	struct owned *ow = OW(c->o);
	struct holder *h = owned_holder(c);

	if (!h)
		return CMD_DONE;
	if (--h->count == 0) {
		holder_remove(ow, h);
		conn_remove_close_hook(c->r->conn, owned_conn_closed, c->o);
		if (ow->recursive)
			ow->held--;
	}
	if (!ow->recursive)
		ow->held--;
	obj_ok(c, NULL);
	owned_wake(c->o);
	return CMD_DONE;
}

/* locked -> whether anyone holds it */
static enum cmd_ret lock_locked(struct obj_call *c)
{
	obj_ok(c, json_boolean(OW(c->o)->held > 0));
	return CMD_DONE;
}

static const char *const lock_options[] = { NULL };

static enum mpsup_err lock_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	if (obj_opts_only(opts, lock_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	return owned_create(o, 1, false, err, errlen);
}

static enum mpsup_err rlock_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	if (obj_opts_only(opts, lock_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	return owned_create(o, 1, true, err, errlen);
}

static bool lock_options_equal(const struct obj *o, json_t *opts)
{
	char err[128];

	(void)o;
	return obj_opts_only(opts, lock_options, err, sizeof(err)) == 0;
}

static const struct obj_op lock_ops[] = {
	{ "lock.acquire", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK, owned_acquire, "t:timeout?" },
	{ "lock.release", ROLE_STATE, CMD_MUTATES, owned_release, "" },
	{ "lock.locked", ROLE_READ, OBJ_OP_EXISTING, lock_locked, "" },
	{ NULL, 0, 0, NULL, NULL },
};

/* The same ops: an rlock differs from a lock in how it counts (create). */
static const struct obj_op rlock_ops[] = {
	{ "rlock.acquire", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK, owned_acquire, "t:timeout?" },
	{ "rlock.release", ROLE_STATE, CMD_MUTATES, owned_release, "" },
	{ "rlock.locked", ROLE_READ, OBJ_OP_EXISTING, lock_locked, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type lock_type = {
	.name = "lock",
	.create = lock_create,
	.free = owned_free,
	.get = owned_state,
	.dump = NULL,
	.size = owned_size,
	.options_equal = lock_options_equal,
	.ops = lock_ops,
};

const struct obj_type rlock_type = {
	.name = "rlock",
	.create = rlock_create,
	.free = owned_free,
	.get = owned_state,
	.dump = NULL,
	.size = owned_size,
	.options_equal = lock_options_equal,
	.ops = rlock_ops,
};
