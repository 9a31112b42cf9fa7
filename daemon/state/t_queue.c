/*
 * The queue type (multiprocessing.JoinableQueue): FIFO of any JSON values,
 * optional maxsize, blocking put/get with timeouts, task_done/join.
 *
 * Wait queues: getters wait while the queue is empty, putters (with their
 * item) while it is full, joiners until every item put has been marked
 * done. Invariant: getters wait only on an empty queue, putters only on a
 * full one, so a put first serves the longest waiting getter and a get
 * refills from the longest waiting putter.
 *
 * Persistence: put and get log what happened to the queue, not what was
 * asked (OBJ_OP_LOGS_ITSELF): "queue.put" with the parameters of the put
 * whose item entered, "queue.get" with those of the get that took one. A
 * put handed to a waiting getter is both; a putter admitted by a get is the
 * get, then the put. Replayed in that order on an idle queue they give the
 * same items and the same unfinished count, without waiting.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "obj.h"
#include "persist.h"

enum { WQ_GET = 0, WQ_PUT, WQ_JOIN };

struct queue {
	struct obj *o; /* its object (data bytes) */
	json_t **ring;
	size_t cap, head, len;
	json_int_t maxsize;       /* 0 = unbounded */
	unsigned long unfinished; /* put but not yet task_done */
};

/* Items in all queues together (max_queue_items). */
unsigned long queue_items_total;

/* unfinished: tasks not yet done (persistence; default: one per item). */
static const char *const queue_options[] = { "maxsize", "items", "unfinished", NULL };

#define Q(c) ((struct queue *)(c)->o->data)

static bool queue_is_full(const struct queue *q)
{
	return q->maxsize > 0 && q->len >= (size_t)q->maxsize;
}

/* Append item (stolen); -1 when out of memory (item released). */
static int queue_push(struct queue *q, json_t *item)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 8;
		json_t **ring = malloc(cap * sizeof(*ring));

		if (!ring) {
			json_decref(item);
			return -1;
		}
		for (size_t i = 0; i < q->len; i++)
			ring[i] = q->ring[(q->head + i) % q->cap];
		free(q->ring);
		q->ring = ring;
		q->cap = cap;
		q->head = 0;
	}
	q->ring[(q->head + q->len) % q->cap] = item;
	q->len++;
	queue_items_total++;
	obj_mem_adjust(q->o, obj_mem_elem(item), 0);
	return 0;
}

/* Remove the oldest item (the queue is not empty); the caller owns it. */
static json_t *queue_shift(struct queue *q)
{
	json_t *item = q->ring[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	queue_items_total--;
	obj_mem_adjust(q->o, 0, obj_mem_elem(item));
	return item;
}

static int queue_parse(json_t *opts, json_int_t *ret_maxsize, json_int_t *ret_unfinished, char *err,
		       size_t errlen)
{
	json_t *items = json_object_get(opts, "items");

	if (obj_opts_only(opts, queue_options, err, errlen) < 0 ||
	    obj_opt_int(opts, "maxsize", 0, 0, INT32_MAX, ret_maxsize, err, errlen) < 0 ||
	    obj_opt_int(opts, "unfinished", -1, 0, INT64_MAX, ret_unfinished, err, errlen) < 0)
		return -1;
	if (items && !json_is_array(items)) {
		snprintf(err, errlen, "'items' must be an array");
		return -1;
	}
	/* Not bounded by the items: task_done may run before the get. */
	if (*ret_unfinished < 0)
		*ret_unfinished = (json_int_t)json_array_size(items);
	return 0;
}

static enum mpsup_err queue_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_t *items = json_object_get(opts, "items"), *v;
	struct queue *q;
	json_int_t maxsize, unfinished;
	size_t i;

	if (queue_parse(opts, &maxsize, &unfinished, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	if (queue_items_total + json_array_size(items) > daemon_g.conf->max_queue_items &&
	    !obj_restoring) {
		snprintf(err, errlen, "too many queued items (max_queue_items = %u)",
			 daemon_g.conf->max_queue_items);
		return MPSUP_E_LIMIT;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	q->maxsize = maxsize;
	q->o = o;
	o->data = q;
	json_array_foreach(items, i, v) {
		if (queue_push(q, json_incref(v)) < 0) {
			o->type->free(o);
			snprintf(err, errlen, "out of memory");
			return MPSUP_E_INTERNAL;
		}
	}
	q->unfinished = (unsigned long)unfinished;
	return MPSUP_OK;
}

static void queue_free(struct obj *o)
{
	struct queue *q = o->data;

	while (q->len)
		json_decref(queue_shift(q));
	free(q->ring);
	free(q);
}

/* The items, oldest first. */
static json_t *queue_items(const struct queue *q)
{
	json_t *out = json_array();

	for (size_t i = 0; out && i < q->len; i++)
		json_array_append(out, q->ring[(q->head + i) % q->cap]);
	return out;
}

static json_t *queue_get_all(const struct obj *o)
{
	return queue_items(o->data);
}

static json_t *queue_dump(const struct obj *o)
{
	const struct queue *q = o->data;

	return json_pack("{s:I, s:o, s:I}", "maxsize", q->maxsize, "items", queue_items(q),
			 "unfinished", (json_int_t)q->unfinished);
}

static size_t queue_size(const struct obj *o)
{
	return ((const struct queue *)o->data)->len;
}

static bool queue_options_equal(const struct obj *o, json_t *opts)
{
	json_int_t maxsize, unfinished;
	char err[128];

	return queue_parse(opts, &maxsize, &unfinished, err, sizeof(err)) == 0 &&
	       maxsize == ((const struct queue *)o->data)->maxsize;
}

static void getter_timeout(struct waiter *w)
{
	const char *name = w->o->name;

	request_error(waitq_take(w, NULL), MPSUP_E_EMPTY, "%s: empty (timeout)", name);
}

static void putter_timeout(struct waiter *w)
{
	const char *name = w->o->name;

	request_error(waitq_take(w, NULL), MPSUP_E_FULL, "%s: full (timeout)", name);
}

static void joiner_timeout(struct waiter *w)
{
	const char *name = w->o->name;

	request_error(waitq_take(w, NULL), MPSUP_E_TIMEOUT, "%s: unfinished tasks (timeout)", name);
}

/* put {item, timeout?}: blocks while the queue is full */
static enum cmd_ret queue_put(struct obj_call *c)
{
	struct queue *q = Q(c);
	struct waiter *w;
	double timeout;

	if (request_timeout(c->r, obj_arg(c, 1), &timeout) < 0)
		return CMD_DONE;
	if ((w = waitq_first(&c->o->wq[WQ_GET]))) {
		/* Straight to the longest waiting getter. */
		struct request *getter = waitq_take(w, NULL);

		q->unfinished++;
		obj_log_request(c->o, c->r);
		obj_log_request(c->o, getter);
		obj_ok(c, NULL);
		request_ok(getter, json_incref(obj_arg(c, 0)));
		return CMD_DONE;
	}
	if (queue_is_full(q)) {
		if (timeout == 0) {
			obj_error(c, MPSUP_E_FULL, "%s: full", c->o->name);
			return CMD_DONE;
		}
		return waitq_park(&c->o->wq[WQ_PUT], c, timeout, putter_timeout,
				  json_incref(obj_arg(c, 0)));
	}
	if (queue_items_total >= daemon_g.conf->max_queue_items && !obj_restoring) {
		obj_error(c, MPSUP_E_LIMIT, "too many queued items (max_queue_items = %u)",
			  daemon_g.conf->max_queue_items);
		return CMD_DONE;
	}
	if (queue_push(q, json_incref(obj_arg(c, 0))) < 0) {
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	q->unfinished++;
	obj_log_request(c->o, c->r);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* get {timeout?} -> the oldest item; `empty` after the timeout */
static enum cmd_ret queue_get(struct obj_call *c)
{
	struct queue *q = Q(c);
	struct waiter *w;
	double timeout;
	json_t *item;

	if (request_timeout(c->r, obj_arg(c, 0), &timeout) < 0)
		return CMD_DONE;
	if (!q->len) {
		if (timeout == 0) {
			obj_error(c, MPSUP_E_EMPTY, "%s: empty", c->o->name);
			return CMD_DONE;
		}
		return waitq_park(&c->o->wq[WQ_GET], c, timeout, getter_timeout, NULL);
	}
	item = queue_shift(q);
	obj_log_request(c->o, c->r);
	if ((w = waitq_first(&c->o->wq[WQ_PUT]))) {
		/* A slot is free: the longest waiting putter's item goes in. */
		json_t *pitem;
		struct request *putter = waitq_take(w, &pitem);

		if (queue_push(q, pitem) < 0) {
			request_error(putter, MPSUP_E_INTERNAL, "out of memory");
		} else {
			q->unfinished++;
			obj_log_request(c->o, putter);
			obj_changed(c->o, "put");
			request_ok(putter, NULL);
		}
	}
	obj_ok(c, item);
	return CMD_DONE;
}

static enum cmd_ret queue_qsize(struct obj_call *c)
{
	obj_ok(c, json_integer((json_int_t)Q(c)->len));
	return CMD_DONE;
}

static enum cmd_ret queue_empty(struct obj_call *c)
{
	obj_ok(c, json_boolean(Q(c)->len == 0));
	return CMD_DONE;
}

static enum cmd_ret queue_full(struct obj_call *c)
{
	obj_ok(c, json_boolean(queue_is_full(Q(c))));
	return CMD_DONE;
}

/* task_done: one item got processed; joiners wake when none is left */
static enum cmd_ret queue_task_done(struct obj_call *c)
{
	struct queue *q = Q(c);
	struct waiter *w;

	if (q->unfinished == 0) {
		obj_error(c, MPSUP_E_CONFLICT, "%s: task_done called more times than put",
			  c->o->name);
		return CMD_DONE;
	}
	if (--q->unfinished == 0)
		while ((w = waitq_first(&c->o->wq[WQ_JOIN])))
			request_ok(waitq_take(w, NULL), NULL);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* join {timeout?}: until every item put is task_done; `timeout` error */
static enum cmd_ret queue_join(struct obj_call *c)
{
	double timeout;

	if (request_timeout(c->r, obj_arg(c, 0), &timeout) < 0)
		return CMD_DONE;
	if (Q(c)->unfinished == 0) {
		obj_ok(c, NULL);
		return CMD_DONE;
	}
	if (timeout == 0) {
		obj_error(c, MPSUP_E_TIMEOUT, "%s: unfinished tasks", c->o->name);
		return CMD_DONE;
	}
	return waitq_park(&c->o->wq[WQ_JOIN], c, timeout, joiner_timeout, NULL);
}

static const struct obj_op queue_ops[] = {
	{ "queue.put", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK | OBJ_OP_LOGS_ITSELF | OBJ_OP_GROWS,
	  queue_put, "o:item t:timeout?" },
	{ "queue.get", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK | OBJ_OP_LOGS_ITSELF, queue_get,
	  "t:timeout?" },
	{ "queue.size", ROLE_READ, OBJ_OP_EXISTING, queue_qsize, "" },
	{ "queue.empty", ROLE_READ, OBJ_OP_EXISTING, queue_empty, "" },
	{ "queue.full", ROLE_READ, OBJ_OP_EXISTING, queue_full, "" },
	{ "queue.task_done", ROLE_STATE, CMD_MUTATES, queue_task_done, "" },
	{ "queue.join", ROLE_READ, CMD_MAY_BLOCK, queue_join, "t:timeout?" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type queue_type = {
	.name = "queue",
	.create = queue_create,
	.free = queue_free,
	.get = queue_get_all,
	.dump = queue_dump,
	.size = queue_size,
	.options_equal = queue_options_equal,
	.ops = queue_ops,
};
