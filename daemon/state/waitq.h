/*
 * Wait queues: the one place where shared-state requests block.
 *
 * A waiter is a kept request parked on one of an object's wait queues
 * (struct obj has OBJ_WAITQS of them: the queue type uses getters, putters
 * and joiners; the others use one). Waiters are served in arrival order.
 *
 * How a blocking op plugs in:
 *   - it first tries to complete at once; with timeout 0 it answers its
 *     timeout result itself;
 *   - otherwise it returns waitq_park(q, c, timeout, on_timeout, item),
 *     which keeps the request (CMD_WAIT) or answers `limit` when the object
 *     has max_waiters already;
 *   - whatever makes the wait end (put, release, set, ...) takes the waiter
 *     with waitq_take() and answers the returned request;
 *   - on_timeout(w) runs when the timer fires: it must take w and answer.
 * The module handles the rest: the waiting connection closing (the waiter
 * just leaves its queue) and the object being deleted (waitq_fail_all:
 * every waiter gets not_found). A waiter is a parked request (park.h) with
 * the object's bookkeeping (max_waiters, the item) around it.
 */
#ifndef MPSUPD_WAITQ_H
#define MPSUPD_WAITQ_H

#include <sys/queue.h>

#include <jansson.h>

#include "command.h"
#include "park.h"

#define OBJ_WAITQS 3

struct obj;
struct obj_call;
struct event;
struct waiter;

typedef void waiter_timeout_fn(struct waiter *w);

struct waiter {
	struct park park; /* the request, its timer and queue place */
	struct obj *o;
	waiter_timeout_fn *on_timeout;
	json_t *item; /* payload kept with the waiter (queue.put) */
};

struct waitq {
	struct park_queue pq;
};

void waitq_init(struct waitq *q);
/* The longest waiting waiter of q, or NULL. */
static inline struct waiter *waitq_first(struct waitq *q)
{
	struct park *p = park_first(&q->pq);

	return p ? PARK_OWNER(p, struct waiter, park) : NULL;
}
/* How many wait on q. */
static inline unsigned waitq_len(const struct waitq *q)
{
	return q->pq.n;
}
/*
 * Keep c's request waiting on q (timeout in seconds, < 0 = forever). item
 * (stolen, may be NULL) stays with the waiter. Returns CMD_WAIT, or
 * CMD_DONE after answering limit/internal.
 */
enum cmd_ret waitq_park(struct waitq *q, struct obj_call *c, double timeout,
			waiter_timeout_fn *on_timeout, json_t *item);
/* End a wait: detach and free w; returns its request, to be answered by
 * the caller (the request is freed by the core once answered). If
 * ret_item is not NULL it receives the waiter's item (else it is released). */
struct request *waitq_take(struct waiter *w, json_t **ret_item);
/* Move w to the tail of q (another queue of its object), without timeout
 * from now on; it keeps its item. */
void waitq_move(struct waiter *w, struct waitq *q);
/* Answer every waiter of o with an error (used when o is deleted). */
void waitq_fail_all(struct obj *o, enum mpsup_err code, const char *msg);

#endif
