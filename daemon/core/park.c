/* Parked requests: keeping, timeouts, FIFO queues, cancel on close. */
#include "config.h"

#include <errno.h>

#include <event2/event.h>

#include "command.h"
#include "daemon.h"
#include "park.h"

static unsigned n_parked;

void park_queue_init(struct park_queue *q)
{
	TAILQ_INIT(&q->head);
	q->n = 0;
}

/* Out of the queue, timer freed, request detached; returns the request. */
static struct request *park_release(struct park *p)
{
	struct request *r = p->r;

	if (p->q) {
		TAILQ_REMOVE(&p->q->head, p, entry);
		p->q->n--;
		p->q = NULL;
	}
	if (p->timer) {
		event_free(p->timer);
		p->timer = NULL;
	}
	r->data = NULL;
	r->cancel = NULL;
	p->r = NULL;
	n_parked--;
	return r;
}

/* The connection closed: leave, then let the owner free its record. */
static void park_cancel_cb(struct request *r)
{
	struct park *p = r->data;
	park_fn *on_cancel = p->on_cancel;

	park_release(p);
	if (on_cancel)
		on_cancel(p);
}

static void park_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct park *p = arg;

	(void)fd;
	(void)what;
	/* The timer does not repeat; free it now so on_timeout's take (and an
	 * owner that forgets to take) cannot see it pending again. */
	event_free(p->timer);
	p->timer = NULL;
	p->on_timeout(p);
}

int park_keep(struct park *p, struct request *r, struct park_queue *q, double timeout,
	      park_fn *on_timeout, park_fn *on_cancel)
{
	*p = (struct park){ .on_timeout = on_timeout, .on_cancel = on_cancel };
	if (timeout >= 0 && !on_timeout)
		return -EINVAL;
	if (timeout >= 0) {
		struct timeval tv = tv_from_secs(timeout);

		p->timer = event_new(daemon_g.base, -1, 0, park_timer_cb, p);
		if (!p->timer || event_add(p->timer, &tv) < 0) {
			if (p->timer)
				event_free(p->timer);
			p->timer = NULL;
			return -ENOMEM;
		}
		p->deadline = now_mono() + timeout;
	}
	p->r = r;
	if (q) {
		p->q = q;
		TAILQ_INSERT_TAIL(&q->head, p, entry);
		q->n++;
	}
	r->data = p;
	r->cancel = park_cancel_cb;
	n_parked++;
	return 0;
}

struct request *park_take(struct park *p)
{
	return park_release(p);
}

void park_requeue(struct park *p, struct park_queue *q)
{
	if (p->q) {
		TAILQ_REMOVE(&p->q->head, p, entry);
		p->q->n--;
	}
	if (p->timer) {
		event_free(p->timer);
		p->timer = NULL;
	}
	p->deadline = 0;
	p->q = q;
	TAILQ_INSERT_TAIL(&q->head, p, entry);
	q->n++;
}

unsigned park_count(void)
{
	return n_parked;
}
