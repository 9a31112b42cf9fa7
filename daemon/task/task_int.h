/*
 * Task pools, internal: the records shared by the files of daemon/task/
 * (task.c: tasks, backlogs, dispatch, retention; task_map.c: maps;
 * task_worker.c: the worker channel and the proc observer; task_cmd.c: the
 * protocol commands). Other modules use task.h.
 */
#ifndef MPSUPD_TASK_INT_H
#define MPSUPD_TASK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>
#include <jansson.h>

#include "command.h"
#include "metrics.h"
#include "park.h"
#include "stream.h"
#include "task_wire.h"

struct map;
struct worker;
struct task_pool;
struct mpsup_framer;
struct pool;
struct proc;
struct conf;
struct jsonw;

enum task_state { TASK_PENDING = 0, TASK_RUNNING, TASK_DONE, TASK_FAILED };
/* What became of one item of a map. */
enum { FIN_NOT = 0, FIN_DONE, FIN_FAILED };

/* What only a submitted task has (allocated with it). */
struct subm {
	char *pool;                /* its pool's name */
	uid_t owner;               /* the submitting peer: only it (or an admin) sees it */
	char ran_on[96];           /* the worker that ran it last */
	double finished;           /* monotonic; 0 = not yet */
	struct park_queue waiters; /* task.wait requests */
	struct task *hnext;        /* id hash chain */
};

struct task {
	uint64_t id;
	enum task_state state;
	unsigned attempts;      /* dispatches so far */
	enum mpsup_err code;    /* TASK_FAILED */
	json_t *item;           /* submit: its item (owned); a map's: map_item_text() */
	json_t *result;         /* TASK_DONE of a submitted task */
	char *out;              /* a map's: its results' JSON text (spans in map->res) */
	unsigned out_left;      /* results in out not sent yet (pool.imap frees it at 0) */
	uint32_t out_len;       /* out_whole: the length of its results list */
	bool out_whole;         /* a pool.map chunk answered whole: out is its list */
	char *error;            /* TASK_FAILED */
	struct task_pool *tp;   /* NULL once it left the pool */
	struct task_pool *home; /* the pool it is counted in (metrics) until it ends */
	double started;         /* monotonic time of its last dispatch; 0 = never */
	struct worker *worker;  /* TASK_RUNNING: it is on worker->held */
	struct map *map;        /* NULL for a submitted task */
	size_t index;           /* in the map (a chunk: its first item) */
	unsigned count;         /* a chunk of a map: its items; 0: one item */
	struct subm *sub;       /* NULL for a map task */
	bool remote;            /* read from a redis task queue (task_redis.c) */
	TAILQ_ENTRY(task) q; /* the pool's backlog, its worker's held list, or the finished list */
};

TAILQ_HEAD(task_list, task);

struct map {
	struct park park;   /* the request; not kept once answered or cancelled */
	struct task *tasks; /* one per item, or one per chunk */
	size_t n_tasks;
	size_t n, done;        /* items */
	size_t chunksize;      /* items per task (the last may have fewer) */
	char *items_text;      /* the items' JSON text, as the request had it */
	struct jspan *item_at; /* per item: its text in items_text */
	struct jspan *res;     /* per item done: its result's text in its task's out */
	json_t **errs;         /* per failed item: its error (made at the first failure) */
	uint8_t *fin;          /* per item: FIN_* */
	bool collect;          /* errors: "return": failed items are listed, the map goes on */
	/* pool.imap: items are streamed as they end (task_cmd.c); tasks are
	 * queued a few at a time (map_feed) while the reader keeps up */
	struct stream stream;
	bool streamed, live, ordered;
	bool in_emit;      /* sending its lines: a stream that ends does not free it */
	size_t fed, ended; /* tasks queued so far, tasks ended */
	size_t next_emit;  /* ordered: the next item to send */
	size_t emitted, failed;
	void (*item_end)(struct map *m, size_t i); /* fin[i] was just set */
	bool (*may_feed)(struct map *m);           /* false while the reader lags */
	bool waits;   /* pool.map wait: true: queued as the backlog has room */
	bool feeding; /* on tp->feeding: tasks left to queue */
	TAILQ_ENTRY(map) fentry;
	struct task_pool *tp;
	unsigned running; /* tasks held by workers */
	uid_t owner;      /* the requesting peer (events go to it) */
	double timeout;
};

struct worker {
	struct proc *p;
	struct task_pool *tp;
	int in_fd, out_fd; /* -1 when closed */
	struct event *ev_read, *ev_write, *timer;
	struct mpsup_framer *in; /* unparsed output of this run (NULL when closed) */
	char *wbuf;              /* task lines written ahead, not yet taken by the pipe */
	size_t wlen, woff, wcap;
	struct task_list held; /* tasks sent and not answered, oldest first */
	unsigned n_held;
	bool ready;    /* on tp->ready: it has room for another task */
	bool wpending; /* ev_write is armed */
	bool killed;   /* this run was killed by us */
	bool dying;    /* its death is being handled */
	bool eof;      /* its stdout closed */
	bool timed;    /* its timer runs for task_timeout (of its oldest task) */
	unsigned long long tasks_done;
	unsigned run_tasks; /* finished by this run (task_max_per_worker) */
	TAILQ_ENTRY(worker) rentry;
};

struct task_pool {
	struct pool *pl;
	struct task_list backlog;
	unsigned n_pending;              /* tasks in the backlog */
	unsigned n_busy;                 /* workers holding a task */
	unsigned n_running;              /* tasks held by workers */
	uint64_t outcomes[MPSUP_E__MAX]; /* ended tasks by code (MPSUP_OK: a result) */
	struct metrics_hist duration;    /* dispatch to end, of tasks that ran */
	TAILQ_HEAD(, worker) ready;      /* workers with room (task_window, write-ahead bound) */
	TAILQ_HEAD(, map) feeding;       /* maps queued a few tasks at a time, oldest first */
	struct task_redis *rq;           /* task_queue = redis: its queue (task_redis.c) */
};

/* A task.wait request (parked on its task's waiters). */
struct task_waiter {
	struct park park;
	struct task *t;
};

/* Whether m is still wanted: its pool.map is waiting, or its pool.imap
 * stream is open. */
static inline bool map_live(const struct map *m)
{
	return m->streamed ? m->live : park_kept(&m->park);
}

/* What t weighs in a backlog (max_pending counts items). */
static inline unsigned task_weight(const struct task *t)
{
	return t->count ? t->count : 1;
}

/* The JSON text of item i of m (len in *ret_len). */
static inline const char *map_item_text(const struct map *m, size_t i, size_t *ret_len)
{
	*ret_len = m->item_at[i].len;
	return m->items_text + m->item_at[i].off;
}

/* The daemon is shutting down: no task is dispatched or retried. */
extern bool task_shutting;

/* task.c: the next task id (submitted tasks and maps' tasks share them). */
extern uint64_t task_next_id;

/* task.c: submitted tasks and their retention. */
struct task *subm_new(struct task_pool *tp, const char *pool, json_t *item, uid_t owner);
struct task *subm_find(uint64_t id);
void subm_free(struct task *t);
void answer_task(struct request *r, const struct task *t);

/* task_map.c: maps. */
struct map *map_new(char *items_text, struct jspan *item_at, size_t n, double timeout,
		    size_t chunksize, bool collect_errors);
int map_items_read(const char *text, size_t len, char **ret_text, struct jspan **ret_at,
		   size_t *ret_n);
void map_item_sent(struct map *m, size_t i);
bool map_answer_item(struct jsonw *w, const struct map *m, size_t i);
void map_enqueue(struct map *m, struct task_pool *tp);
bool map_feed(struct map *m);
void map_maybe_free(struct map *m);
void map_drop_pending(struct map *m);
void map_fail(struct map *m, size_t index, enum mpsup_err code, const char *msg);
bool tp_feed(struct task_pool *tp);
void tp_fail_feeding(struct task_pool *tp, enum mpsup_err code, const char *why);
void map_task_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg);
void task_end_text(struct task *t, const char *text, size_t len);
struct task_answer;
void task_chunk_end(struct task *t, const struct task_answer *a, const struct jspan *spans,
		    json_t *errors);

/* task.c: how tasks end. */
void publish_task(const char *event, const struct task *t, const char *worker, const char *msg);
void task_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg);
void task_requeue(struct task_pool *tp, struct task *t);
bool task_may_retry(const struct task_pool *tp, const struct task *t);
void task_retry(struct task_pool *tp, struct task *t, const char *worker, const char *msg);
void task_fail(struct task_pool *tp, struct task *t, const char *worker, const char *msg);

/* task.c: pools' backlogs. */
struct task_pool *tp_get(struct pool *pl);
void tp_enqueue(struct task_pool *tp, struct task *t);
void tp_dispatch(struct task_pool *tp);
void tp_check(struct task_pool *tp);
void task_pool_gone(struct pool *pl);
const char *pool_cannot_run(const struct pool *pl, bool here, char *buf, size_t len);

/* task.c: the module's life (task_module is in task_cmd.c). */
void task_info(json_t *info);
/* Task metric families (metrics.h). */
void task_metrics(struct evbuffer *b);
int task_start(const struct conf *conf);
void task_stop(void (*done)(void));

/* task_worker.c: the worker channel. */
void worker_set_ready(struct worker *w, bool ready);
bool worker_has_room(const struct worker *w);
void worker_send(struct worker *w, struct task *t);
void worker_flush_all(struct task_pool *tp);
struct task *worker_take(struct worker *w, struct task *t);
void worker_close(struct worker *w);
/* Free the worker channel's shared buffers (at shutdown). */
void task_worker_cleanup(void);

#endif
