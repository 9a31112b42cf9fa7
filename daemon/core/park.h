/*
 * Parked requests: the one way a request waits.
 *
 * A parked request is a kept request (CMD_WAIT) with an optional timeout,
 * optionally standing in a FIFO queue, that is cancelled when its
 * connection closes. Shared-state waits (waitq.c), proc.join and the
 * waiting proc.start/stop/restart, pool.remove, task.wait and pool.map all
 * park through this module; none keeps its own timer or cancel hook.
 *
 * How a new kind of wait plugs in:
 *   - embed a struct park in the record of the wait (it holds what the wait
 *     is about: the object, the processes, the map...) and get back to the
 *     record from the park with container_of-style arithmetic
 *     (PARK_OWNER);
 *   - try to complete at once first: a request that can be answered now,
 *     or that has timeout 0, is answered by the handler and never parked;
 *   - otherwise park_keep(p, r, q, timeout, on_timeout, on_cancel) and
 *     return CMD_WAIT (on -ENOMEM answer `internal` and return CMD_DONE).
 *     q is the queue the wait stands in (FIFO), or NULL for a wait that is
 *     found through its record;
 *   - whatever ends the wait (a put, an exit, a task's end...) calls
 *     park_take(p), answers the returned request and frees the record;
 *   - on_timeout(p) runs once when the timeout passes: it must park_take(p)
 *     and answer (the timer is gone by then);
 *   - on_cancel(p) (may be NULL) runs when the connection closes first:
 *     the park is already out of its queue and without timer or request;
 *     it frees the record (the core frees the request afterwards).
 * A park is "kept" (park_kept) from park_keep until park_take or the
 * cancel; after that its record may be reused or freed. While a request is
 * parked its connection reads on but runs nothing more (command.h); the
 * answer lets it go on.
 *
 * The kinds of wait today, with their record and queue:
 *   shared state   struct waiter (waitq.c)      each object's wq[]
 *   process waits  struct waiter (proc_cmd.c)   one queue, checked on
 *                                               every settled process
 *   pool.remove    struct pool_waiter           one queue, by pool
 *   task.wait      struct task_waiter (task.c)  the task's waiters
 *   pool.map       struct map (task_map.c)      none (found by its tasks)
 */
#ifndef MPSUPD_PARK_H
#define MPSUPD_PARK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include "container.h"

struct event;
struct park;
struct request;

typedef void park_fn(struct park *p);

struct park {
	struct request *r;    /* NULL when not kept */
	struct park_queue *q; /* NULL: not in a queue */
	struct event *timer;  /* NULL: waits forever */
	double deadline;      /* monotonic seconds; 0 = none */
	park_fn *on_timeout, *on_cancel;
	TAILQ_ENTRY(park) entry;
};

/* Parks in arrival order. */
struct park_queue {
	TAILQ_HEAD(park_list, park) head;
	unsigned n;
};

/* The record of type `type` whose member `member` is the park p. */
#define PARK_OWNER(p, type, member) CONTAINER_OF(p, type, member)

void park_queue_init(struct park_queue *q);
/* The longest waiting park of q, or NULL. */
static inline struct park *park_first(const struct park_queue *q)
{
	return TAILQ_FIRST(&q->head);
}
/* The park after p in its queue, or NULL. */
static inline struct park *park_next(const struct park *p)
{
	return TAILQ_NEXT(p, entry);
}
static inline bool park_kept(const struct park *p)
{
	return p->r != NULL;
}

/*
 * Keep r waiting as p (p's memory is the caller's; it is overwritten):
 * at the tail of q (may be NULL), with a timeout in seconds (< 0: forever)
 * after which on_timeout(p) runs, and on_cancel(p) (may be NULL) if r's
 * connection closes first. Sets r->data and r->cancel. 0, -ENOMEM, or
 * -EINVAL for a timeout without on_timeout (nothing kept, r left alone).
 */
int park_keep(struct park *p, struct request *r, struct park_queue *q, double timeout,
	      park_fn *on_timeout, park_fn *on_cancel);
/* End p's wait: out of its queue, timer stopped; returns its request for
 * the caller to answer. p is no longer kept. */
struct request *park_take(struct park *p);
/* Move the kept p to the tail of q, waiting forever from now on (a
 * condition's notified waiter goes on to wait for the lock). */
void park_requeue(struct park *p, struct park_queue *q);
/* Parks kept now (all queues and none); for daemon.info and tests. */
unsigned park_count(void);

#endif
