/* Wait queues of shared-state objects: parked requests (park.c) counted
 * against max_waiters, with the item a waiting put carries. */
#include "config.h"

#include <stdlib.h>

#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */
#include "waitq.h"

void waitq_init(struct waitq *q)
{
	park_queue_init(&q->pq);
}

/* Release w (already taken or cancelled); its item to *ret_item or away. */
static void waiter_free(struct waiter *w, json_t **ret_item)
{
	w->o->n_waiters--;
	if (ret_item)
		*ret_item = w->item;
	else
		json_decref(w->item);
	free(w);
}

/* The waiting connection closed: the park left its queue already. */
static void waiter_cancel(struct park *p)
{
	waiter_free(PARK_OWNER(p, struct waiter, park), NULL);
}

static void waiter_timeout(struct park *p)
{
	struct waiter *w = PARK_OWNER(p, struct waiter, park);

	w->on_timeout(w);
}

enum cmd_ret waitq_park(struct waitq *q, struct obj_call *c, double timeout,
			waiter_timeout_fn *on_timeout, json_t *item)
{
	struct obj *o = c->o;
	struct waiter *w;

	if (c->replay) { /* a logged op never waited: the log does not fit the state */
		json_decref(item);
		obj_error(c, MPSUP_E_CONFLICT, "%s: the op would wait", o->name);
		return CMD_DONE;
	}
	if (o->n_waiters >= daemon_g.conf->max_waiters) {
		json_decref(item);
		obj_error(c, MPSUP_E_LIMIT, "%s has %u waiters already (max_waiters)", o->name,
			  o->n_waiters);
		return CMD_DONE;
	}
	w = calloc(1, sizeof(*w));
	if (!w || park_keep(&w->park, c->r, &q->pq, timeout, waiter_timeout, waiter_cancel) < 0) {
		free(w);
		json_decref(item);
		log_error("state", "out of memory parking a request on %s", o->name);
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	w->o = o;
	w->on_timeout = on_timeout;
	w->item = item;
	o->n_waiters++;
	return CMD_WAIT;
}

struct request *waitq_take(struct waiter *w, json_t **ret_item)
{
	struct request *r = park_take(&w->park);

	waiter_free(w, ret_item);
	return r;
}

void waitq_move(struct waiter *w, struct waitq *q)
{
	park_requeue(&w->park, &q->pq);
}

void waitq_fail_all(struct obj *o, enum mpsup_err code, const char *msg)
{
	for (int i = 0; i < OBJ_WAITQS; i++) {
		struct waiter *w;

		while ((w = waitq_first(&o->wq[i])))
			request_error(waitq_take(w, NULL), code, "%s", msg);
	}
}
