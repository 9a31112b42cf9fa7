/*
 * What the files of the redis task queue share (task_redis.c: the
 * connection, the queues, leases and the module's life; task_redis_send.c:
 * sending tasks and reading their answers; task_redis_run.c: running the
 * entries read from the stream and acknowledging them). See task_redis.c
 * for how it works; the other modules use task_redis.h.
 */
#ifndef MPSUPD_TASK_REDIS_INT_H
#define MPSUPD_TASK_REDIS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/util.h>
#include <hiredis/async.h>

#include "redis_nodes.h"
#include "task_redis.h"

/* Entries acknowledged at once, at most. */
#define BATCH_MAX 256
/* While its stream has a backlog (a read got all it asked for) a host
 * reads this many times what its workers hold at once (the next tasks wait
 * here, not a round trip away); else only what they can take now, so that
 * a burst is shared among the hosts. */
#define READ_AHEAD 8
/* Items per stream entry, at most, and their text's bytes (past one item). */
#define ENTRY_ITEMS_MAX 64
#define ENTRY_BYTES_MAX 65536
/* XADDs sent and not answered yet, at most. */
#define PUSH_WINDOW 2048
/* Answers read at once from a result list. */
#define RESULTS_BATCH "512"
/* How long an answer list of a host that is gone stays in Redis. */
#define RESULTS_TTL "86400"

/* A stream entry read from Redis: a batch of tasks, answered and
 * acknowledged once all have ended. */
struct rentry {
	struct task_redis *rq;     /* NULL once its pool or the module went */
	TAILQ_ENTRY(rentry) entry; /* rq->held */
	unsigned n, left;          /* its items; those not ended yet */
	bool skip;                 /* one was not run here: not acknowledged */
	char **answers;            /* per item: "id,answer" (answer_entry()) */
	char *items;               /* the items' text (map_items_read()) */
	struct jspan *at;          /* per item: its text in items */
	char entry_id[48];
	char origin[33]; /* the sending host */
};

/* An item of an entry, run here as a local task. */
struct rtask {
	struct task t;
	struct subm sub; /* events, ran_on (no id of the submitted tasks' hash) */
	struct rentry *re;
	unsigned idx;         /* in re */
	json_int_t origin_id; /* its task's id on the sending host */
};

/* An XADD's tasks (its reply's private data). */
struct pushed {
	unsigned n;
	uint64_t ids[];
};

/* What is gathered over a turn of the loop (copies): the tasks to send
 * (pairs: id, item text) or the entries to acknowledge (triples: entry id,
 * sender, answer). */
struct batch {
	char **argv;
	size_t *lens;
	int n, cap;
	uint64_t *ids; /* pushes: the tasks' ids (an XADD that fails fails its task) */
	size_t n_ids;
};

/* A redis pool's queue on this host. */
struct task_redis {
	struct batch push, ack; /* sent at the end of the loop's turn (tq.flush) */
	int push_off;           /* push: the first not sent yet */
	struct task_pool *tp;
	redisAsyncContext *rd;  /* XREADGROUP (blocking), NULL when closed */
	redisAsyncContext *res; /* BLMPOP of this host's answers */
	unsigned reading;       /* entries asked for by the XREADGROUP in flight */
	bool rd_busy, res_busy; /* a blocking read is in flight */
	bool backlog;           /* the last read got all it asked for: read ahead */
	TAILQ_HEAD(, rentry) held;
	unsigned n_held; /* entries */
	unsigned n_sent; /* tasks of this host waiting for their answer (max_pending) */
	LIST_ENTRY(task_redis) entry;
	char stream[200], tries[200], results[240], results_pre[208];
};

/* A task this host sent, by id, until its answer comes. */
struct sent {
	uint64_t id;
	struct task *t;
	struct task_redis *rq; /* counts it (NULL: none) */
	struct sent *next;
};

/* A text being built; oom once an append failed. */
struct tbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

/* The module's state (task_redis.c). */
struct tq_state {
	struct redis_nodes nodes; /* commands: the server, or a cluster's masters */
	bool up, stopping;
	struct event *tick, *flush;
	/* the config's, as at start (read at start only) */
	char address[256], prefix[80];
	double lease;
	char host_id[33];
	unsigned pushing; /* XADDs unanswered */
	uint64_t next_id; /* ids of the tasks read from Redis (local to their workers) */
	struct sent **sent;
	size_t buckets, n_sent;
	LIST_HEAD(, task_redis) queues;
	unsigned long long pushed, entries, answers, dropped, claimed, renewals;
};
extern struct tq_state tq;

/* The connection for rq's keys (all in its pool's slot); NULL while down. */
static inline redisAsyncContext *tq_ac(const struct task_redis *rq)
{
	return redis_nodes_ac(&tq.nodes, rq->stream, strlen(rq->stream));
}

/* task_redis.c */
/* tp's queue, made on first use; NULL when out of memory. */
struct task_redis *rq_get(struct task_pool *tp);
/* Close a blocking connection of rq (its callbacks see no owner). */
void rq_close(redisAsyncContext **acp);
/* A new blocking connection for rq. */
redisAsyncContext *blocking_open(struct task_redis *rq);
/* Empty b, and append a copy of the string s to it (-ENOMEM). */
void batch_clear(struct batch *b);
int batch_args(struct batch *b, const char *s);
/* The end of this turn of the loop sends what was gathered. */
void flush_soon(void);
/* Append len bytes of s to b (b->oom once that failed). */
void tbuf_add(struct tbuf *b, const char *s, size_t len);

/* task_redis_send.c */
/* The slot of the sent tasks' table where id is or would go. */
struct sent **sent_slot(uint64_t id);
/* Take the sent task with id out of the table; NULL when not there. */
struct task *sent_take(uint64_t id);
/* Fail every sent task (of tp only, unless NULL) with code and msg. A map
 * is kept (running) until all of its tasks here are dealt with. */
void sent_fail(const struct task_pool *tp, enum mpsup_err code, const char *msg);
/* Items per stream entry for tp's pool: what its workers here hold at
 * once (a host that reads an entry has work for all of its workers, two
 * hosts share a map of a few entries), ENTRY_ITEMS_MAX at most. */
unsigned entry_bound(const struct task_pool *tp);
/* Send rq's gathered tasks (XADD a batch of them per entry) and
 * acknowledgements (ack_send). */
void rq_flush(struct task_redis *rq);
/* tq.flush's callback: send what every queue gathered. */
void flush_fire(evutil_socket_t fd, short what, void *arg);
/* Wait for this host's answers on rq's pool. */
void rq_results(struct task_redis *rq);

/* task_redis_run.c */
/* Store the answers of b's entries (triples: entry, its sender, the
 * answer) for their senders, then acknowledge the entries, in one
 * MULTI/EXEC (atomic: an entry is acknowledged only with its answer
 * stored). Out of memory: not acknowledged (they run again after the
 * lease). */
void ack_send(struct task_redis *rq, const struct batch *b);
/* How many more tasks this host's workers of rq's pool can take; with
 * reads: beyond what the read in flight asked for. A claim does not count
 * that read: an idle host's read waits for new entries, and a lost host's
 * entries must not wait for it (the read may then bring up to twice the
 * room). */
unsigned rq_room(const struct task_redis *rq, bool reads);
/* An entry read from Redis (entry id eid, from host origin, its tasks'
 * ids there, the items' text, delivered deliveries times before): queue
 * its items here. */
void rentry_add(struct task_redis *rq, const redisReply *eid, const char *origin,
		const char *ids_text, const redisReply *items, unsigned deliveries);
/* Read as many entries as the workers have room for (blocking until some
 * come; entries of entry_bound() items counted); the group is made on a
 * new connection first. */
void rq_read(struct task_redis *rq);

#endif
