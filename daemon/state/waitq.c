/* Wait queues of shared-state objects: parking, timeouts, cancellation. */
#include "config.h"

#include <stdlib.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */
#include "waitq.h"

void waitq_init(struct waitq *q)
{
	TAILQ_INIT(&q->head);
	q->n = 0;
}

/* Unlink w from its queue and release it; the request is left alone. */
static void waiter_free(struct waiter *w, json_t **ret_item)
{
	TAILQ_REMOVE(&w->q->head, w, entry);
	w->q->n--;
	w->o->n_waiters--;
	if (w->timer)
		event_free(w->timer);
	if (ret_item)
		*ret_item = w->item;
	else
		json_decref(w->item);
	w->r->data = NULL;
	w->r->cancel = NULL;
	free(w);
}

/* The waiting connection closed: just leave the queue. */
static void waiter_cancel(struct request *r)
{
	struct waiter *w = r->data;

	if (w)
		waiter_free(w, NULL);
}

static void waiter_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;

	(void)fd;
	(void)what;
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
	if (!w)
		goto oom;
	if (timeout >= 0) {
		struct timeval tv = tv_from_secs(timeout);

		w->timer = event_new(daemon_g.base, -1, 0, waiter_timer_cb, w);
		if (!w->timer || event_add(w->timer, &tv) < 0) {
			if (w->timer)
				event_free(w->timer);
			free(w);
			goto oom;
		}
	}
	w->r = c->r;
	w->o = o;
	w->q = q;
	w->on_timeout = on_timeout;
	w->item = item;
	TAILQ_INSERT_TAIL(&q->head, w, entry);
	q->n++;
	o->n_waiters++;
	c->r->data = w;
	c->r->cancel = waiter_cancel;
	return CMD_WAIT;
oom:
	json_decref(item);
	log_error("state", "out of memory parking a request on %s", o->name);
	obj_error(c, MPSUP_E_INTERNAL, "out of memory");
	return CMD_DONE;
}

struct request *waitq_take(struct waiter *w, json_t **ret_item)
{
	struct request *r = w->r;

	waiter_free(w, ret_item);
	return r;
}

void waitq_fail_all(struct obj *o, enum mpsup_err code, const char *msg)
{
	for (int i = 0; i < OBJ_WAITQS; i++) {
		struct waiter *w;

		while ((w = waitq_first(&o->wq[i])))
			request_error(waitq_take(w, NULL), code, "%s", msg);
	}
}
