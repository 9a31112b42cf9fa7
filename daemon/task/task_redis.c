/*
 * The redis task queue (task_queue = redis, docs/tasks.md, DESIGN §12):
 * the tasks of such a pool go through one Redis stream that the pool's
 * workers on every host consume.
 *
 * Keys, all in the pool's hash slot (PREFIX{task:POOL}):
 *   :s       the stream of tasks, fields o (the sending host's id), i (its
 *            task id there) and x (the item's JSON text); consumer group g,
 *            one consumer per host;
 *   :r:HOST  the answers for HOST, JSON texts {"i": id, "r": result} or
 *            {"i": id, "c": code, "e": message};
 *   :n       delivery counts of the entries claimed from a lost host.
 *
 * The sending host XADDs each task and keeps it by id until its answer
 * comes (BLMPOP on a connection of its own per pool: no polling); the
 * first answer ends the task, a second one (an entry run twice) is
 * dropped. A consuming host reads entries (XREADGROUP, blocking, on a
 * connection of its own per pool) as far as its workers have room
 * (see rq_room()), runs them as local tasks (t->remote) and, once
 * one ends, pushes its answer and acknowledges the entry in one MULTI/EXEC
 * (an entry is acknowledged only once its answer is stored); acknowledged
 * entries are trimmed away every tick (XTRIM MINID the oldest pending).
 * While it holds entries a host renews them (XCLAIM JUSTID resets their
 * idle time) every tick; an entry idle longer than redis_lease belongs to a
 * host that died or lost Redis and is claimed by a live one (XAUTOCLAIM,
 * every tick), which counts a retry against task_retries (past them the
 * sender gets the failure).
 *
 * While Redis cannot be reached task commands on these pools answer
 * `unavailable`, the tasks this host sent and is waiting for fail with
 * `unavailable`, the connections are retried with a backoff, and the reads
 * start again once Redis is back.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include <event2/event.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "redis_link.h"
#include "task_redis.h"

/* Entries acknowledged at once, at most. */
#define BATCH_MAX 256
/* While its stream has a backlog (a read got all it asked for) a host
 * reads this many times what its workers hold at once (the next tasks wait
 * here, not a round trip away); else only what they can take now, so that
 * a burst is shared among the hosts. */
#define READ_AHEAD 8
/* XADDs sent and not answered yet, at most. */
#define PUSH_WINDOW 2048
/* Answers read at once from a result list. */
#define RESULTS_BATCH "512"
/* How long an answer list of a host that is gone stays in Redis. */
#define RESULTS_TTL "86400"

/* A task read from Redis, run here as a local task. */
struct rtask {
	struct task t;
	struct subm sub; /* events, ran_on (no id of the submitted tasks' hash) */
	struct task_redis *rq;
	TAILQ_ENTRY(rtask) entry; /* rq->held */
	char entry_id[48];        /* its stream entry */
	char origin[33];          /* the sending host */
	char origin_task[24];     /* its id there */
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
	TAILQ_HEAD(, rtask) held;
	unsigned n_held;
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

/* KEYS: stream. Delete the entries before the oldest one pending (or the
 * last delivered when none is): acknowledged ones. */
static const char trim_script[] = "local p = redis.call('XPENDING', KEYS[1], 'g') "
				  "local min = p[2] "
				  "if not min then "
				  "  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do "
				  "    local h = {} "
				  "    for k = 1, #g, 2 do h[g[k]] = g[k + 1] end "
				  "    if h['name'] == 'g' then min = h['last-delivered-id'] end "
				  "  end "
				  "end "
				  "if not min then return 0 end "
				  "return redis.call('XTRIM', KEYS[1], 'MINID', '~', min)";

/* KEYS: stream, tries; ARGV: consumer, min idle ms, count, task_retries,
 * the answer keys' prefix. Entries past their retries are answered with a
 * failure; the others are returned as id, deliveries, o, i, x. */
static const char claim_script[] =
	"local r = redis.call('XAUTOCLAIM', KEYS[1], 'g', ARGV[1], ARGV[2], '0-0', 'COUNT', "
	"ARGV[3]) "
	"local out = {} "
	"for _, e in ipairs(r[2]) do "
	"  if e and e[2] then "
	"    local h = {} "
	"    for k = 1, #e[2], 2 do h[e[2][k]] = e[2][k + 1] end "
	"    local n = redis.call('HINCRBY', KEYS[2], e[1], 1) "
	"    if n > tonumber(ARGV[4]) then "
	"      redis.call('RPUSH', ARGV[5] .. h['o'], '{\"i\":' .. h['i'] .. "
	"        ',\"c\":\"internal\",\"e\":\"the host running it was lost (after ' .. n .. "
	"        ' attempts)\"}') "
	"      redis.call('XACK', KEYS[1], 'g', e[1]) "
	"      redis.call('XDEL', KEYS[1], e[1]) "
	"      redis.call('HDEL', KEYS[2], e[1]) "
	"    else "
	"      table.insert(out, e[1]) table.insert(out, n) table.insert(out, h['o']) "
	"      table.insert(out, h['i']) table.insert(out, h['x']) "
	"    end "
	"  end "
	"end "
	"return out";

static struct {
	redisAsyncContext *ac; /* commands; NULL while down */
	bool up, stopping;
	struct event *retry, *tick, *flush;
	double backoff;
	/* the config's, as at start (read at start only) */
	char address[256], prefix[80];
	double lease;
	char host_id[33];
	unsigned pushing; /* XADDs unanswered */
	uint64_t next_id; /* ids of the tasks read from Redis (local to their workers) */
	struct sent **sent;
	size_t buckets, n_sent;
	LIST_HEAD(, task_redis) queues;
	unsigned long long pushed, answers, dropped, claimed, renewals, reconnects, lost;
} tq;

static void tq_connect(void);
static void batch_clear(struct batch *b);
static void rq_read(struct task_redis *rq);
static void rq_results(struct task_redis *rq);

/*
 * The tasks this host sent, by id.
 */

static struct sent **sent_slot(uint64_t id)
{
	return &tq.sent[id & (tq.buckets - 1)];
}

static int sent_add(struct task *t, struct task_redis *rq)
{
	struct sent *s;

	if (tq.n_sent + 1 > tq.buckets) {
		size_t nb = tq.buckets ? tq.buckets * 2 : 256;
		struct sent **h = calloc(nb, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (size_t i = 0; i < tq.buckets; i++)
			for (struct sent *x = tq.sent[i], *nx; x; x = nx) {
				nx = x->next;
				x->next = h[x->id & (nb - 1)];
				h[x->id & (nb - 1)] = x;
			}
		free(tq.sent);
		tq.sent = h;
		tq.buckets = nb;
	}
	if (!(s = malloc(sizeof(*s))))
		return -ENOMEM;
	s->id = t->id;
	s->t = t;
	if ((s->rq = rq))
		rq->n_sent++;
	s->next = *sent_slot(t->id);
	*sent_slot(t->id) = s;
	tq.n_sent++;
	return 0;
}

/* Take the sent task with id out of the table; NULL when not there. */
static struct task *sent_take(uint64_t id)
{
	struct task *t;

	if (!tq.buckets)
		return NULL;
	for (struct sent **pp = sent_slot(id), *s; (s = *pp); pp = &s->next)
		if (s->id == id) {
			*pp = s->next;
			t = s->t;
			if (s->rq)
				s->rq->n_sent--;
			free(s);
			tq.n_sent--;
			return t;
		}
	return NULL;
}

/* Fail every sent task (of tp only, unless NULL) with code and msg. A map
 * is kept (running) until all of its tasks here are dealt with. */
static void sent_fail(const struct task_pool *tp, enum mpsup_err code, const char *msg)
{
	struct task_list out = TAILQ_HEAD_INITIALIZER(out);
	struct task *t;

	for (size_t i = 0; i < tq.buckets; i++)
		for (struct sent **pp = &tq.sent[i], *s; (s = *pp);) {
			if (tp && s->t->home != tp && (!s->rq || s->rq != tp->rq)) {
				pp = &s->next;
				continue;
			}
			*pp = s->next;
			t = s->t;
			if (s->rq)
				s->rq->n_sent--;
			free(s);
			tq.n_sent--;
			if (t->state != TASK_PENDING)
				continue; /* its map was cancelled */
			TAILQ_INSERT_TAIL(&out, t, q);
			if (t->map)
				t->map->running++;
		}
	while ((t = TAILQ_FIRST(&out))) {
		TAILQ_REMOVE(&out, t, q);
		if (t->map)
			t->map->running--;
		task_end(t, NULL, code, msg);
	}
}

/*
 * Queues.
 */

bool task_redis_pool(const struct task_pool *tp)
{
	return tp->pl->conf->mode == POOL_MODE_TASK && tp->pl->conf->task_queue == TASK_QUEUE_REDIS;
}

/* tp's queue, made on first use; NULL when out of memory. */
static struct task_redis *rq_get(struct task_pool *tp)
{
	struct task_redis *rq = tp->rq;

	if (rq)
		return rq;
	if (!(rq = calloc(1, sizeof(*rq))))
		return NULL;
	rq->tp = tp;
	TAILQ_INIT(&rq->held);
	snprintf(rq->stream, sizeof(rq->stream), "%s{task:%s}:s", tq.prefix, tp->pl->name);
	snprintf(rq->tries, sizeof(rq->tries), "%s{task:%s}:n", tq.prefix, tp->pl->name);
	snprintf(rq->results_pre, sizeof(rq->results_pre), "%s{task:%s}:r:", tq.prefix,
		 tp->pl->name);
	snprintf(rq->results, sizeof(rq->results), "%s%s", rq->results_pre, tq.host_id);
	LIST_INSERT_HEAD(&tq.queues, rq, entry);
	tp->rq = rq;
	return rq;
}

/* Close a blocking connection of rq (its callbacks see no owner). */
static void rq_close(redisAsyncContext **acp)
{
	redisAsyncContext *ac = *acp;

	*acp = NULL;
	if (ac) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

/* rq's blocking connections close (Redis lost, pool gone, stop). */
static void rq_disconnect(struct task_redis *rq)
{
	rq_close(&rq->rd);
	rq_close(&rq->res);
	rq->rd_busy = rq->res_busy = false;
	rq->reading = 0;
	batch_clear(&rq->push); /* their tasks fail (sent_fail) */
	rq->push_off = 0;
	batch_clear(&rq->ack); /* their entries run again after the lease */
}

/* The tasks rq holds forget it (their pool or the module goes; their
 * workers end them later). */
static void rq_detach(struct task_redis *rq)
{
	struct rtask *rt;

	while ((rt = TAILQ_FIRST(&rq->held))) {
		TAILQ_REMOVE(&rq->held, rt, entry);
		rt->rq = NULL;
	}
	rq->n_held = 0;
}

/* Drop the tasks rq holds from Redis (not acknowledged: after the lease
 * another host claims them) and free rq. */
static void rq_free(struct task_redis *rq)
{
	rq_disconnect(rq);
	rq_detach(rq);
	LIST_REMOVE(rq, entry);
	rq->tp->rq = NULL;
	free(rq);
}

/* A blocking connection closed. */
static void blocking_disconnected(const redisAsyncContext *ac, int status)
{
	struct task_redis *rq = ac->data;

	(void)status;
	if (!rq)
		return;
	if (ac == rq->rd) {
		rq->rd = NULL;
		rq->rd_busy = false;
		rq->reading = 0;
	} else if (ac == rq->res) {
		rq->res = NULL;
		rq->res_busy = false;
	}
}

/* A new blocking connection for rq. */
static redisAsyncContext *blocking_open(struct task_redis *rq)
{
	redisAsyncContext *ac = redis_link_open(tq.address);

	if (!ac)
		return NULL;
	ac->data = rq;
	redisAsyncSetDisconnectCallback(ac, blocking_disconnected);
	return ac;
}

bool task_redis_refuse(struct request *r, struct task_pool *tp, size_t n)
{
	struct task_redis *rq = rq_get(tp);
	unsigned max = tp->pl->conf->max_pending;

	if (!rq) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return true;
	}
	if (tq.up && (n > max || rq->n_sent + n > max)) {
		request_error(
			r, MPSUP_E_LIMIT,
			"pool %s: %u tasks sent to redis from here and not answered, %zu more "
			"(max_pending = %u)",
			tp->pl->name, rq->n_sent, n, max);
		return true;
	}
	if (tq.up)
		return false;
	if (!tq.ac && !tq.stopping && !evtimer_pending(tq.retry, NULL))
		tq_connect();
	request_error(r, MPSUP_E_UNAVAILABLE,
		      "pool %s: its task queue, redis at %s, is unreachable", tp->pl->name,
		      tq.address);
	return true;
}

/*
 * Sending tasks and reading their answers.
 */

/*
 * What is gathered over one turn of the loop: the tasks to send, pipelined
 * (PUSH_WINDOW unanswered at most), and the entries to acknowledge, in one
 * transaction (BATCH_MAX at most).
 */

static void batch_clear(struct batch *b)
{
	for (int k = 0; k < b->n; k++)
		free(b->argv[k]);
	free(b->argv);
	free(b->lens);
	free(b->ids);
	memset(b, 0, sizeof(*b));
}

/* Append a copy of s[0..len); -ENOMEM. */
static int batch_arg(struct batch *b, const char *s, size_t len)
{
	char *c;

	if (b->n == b->cap) {
		int nc = b->cap ? b->cap * 2 : 64;
		char **a = realloc(b->argv, (size_t)nc * sizeof(*a));
		size_t *l;
		if (!a)
			return -ENOMEM;
		b->argv = a;
		if (!(l = realloc(b->lens, (size_t)nc * sizeof(*l))))
			return -ENOMEM;
		b->lens = l;
		b->cap = nc;
	}
	if (!(c = malloc(len + 1)))
		return -ENOMEM;
	memcpy(c, s, len);
	c[len] = '\0';
	b->argv[b->n] = c;
	b->lens[b->n++] = len;
	return 0;
}

static int batch_args(struct batch *b, const char *s)
{
	return batch_arg(b, s, strlen(s));
}

/* The end of this turn of the loop sends what was gathered. */
static void flush_soon(void)
{
	if (tq.flush)
		event_active(tq.flush, EV_TIMEOUT, 1);
}

/* An XADD's reply: an error fails its task. */
static void push_one_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rp = reply;
	struct task *t;

	(void)ac;
	if (tq.pushing && --tq.pushing == PUSH_WINDOW / 2)
		flush_soon(); /* room: send what waits */
	if (rp && rp->type == REDIS_REPLY_ERROR && (t = sent_take((uint64_t)(uintptr_t)priv)) &&
	    t->state == TASK_PENDING)
		task_end(t, NULL, MPSUP_E_UNAVAILABLE, rp->str);
}

/* Store the answers of b's entries (triples: entry, its sender, the
 * answer) for their senders, then acknowledge the entries, in one
 * MULTI/EXEC (atomic: an entry is acknowledged only with its answer
 * stored). Out of memory: not acknowledged (they run again after the
 * lease). */
static void ack_send(struct task_redis *rq, const struct batch *b)
{
	int n = b->n / 3, k;
	const char **argv = calloc((size_t)n + 3, sizeof(*argv));
	size_t *lens = calloc((size_t)n + 3, sizeof(*lens));
	bool *done = calloc((size_t)n, 1);
	char key[300];

	if (!argv || !lens || !done)
		goto out;
	redisAsyncCommand(tq.ac, NULL, NULL, "MULTI");
	for (int i = 0; i < n; i++) {
		if (done[i])
			continue;
		snprintf(key, sizeof(key), "%s%s", rq->results_pre, b->argv[3 * i + 1]);
		argv[0] = "RPUSH";
		argv[1] = key;
		k = 2;
		for (int j = i; j < n; j++)
			if (!done[j] && strcmp(b->argv[3 * j + 1], b->argv[3 * i + 1]) == 0) {
				argv[k] = b->argv[3 * j + 2];
				lens[k++] = b->lens[3 * j + 2];
				done[j] = true;
			}
		lens[0] = 5;
		lens[1] = strlen(key);
		redisAsyncCommandArgv(tq.ac, NULL, NULL, k, argv, lens);
		redisAsyncCommand(tq.ac, NULL, NULL, "EXPIRE %s " RESULTS_TTL, key);
	}
	argv[0] = "XACK";
	argv[1] = rq->stream;
	argv[2] = "g";
	for (int i = 0; i < n; i++) {
		argv[3 + i] = b->argv[3 * i];
		lens[3 + i] = b->lens[3 * i];
	}
	lens[0] = 4;
	lens[1] = strlen(rq->stream);
	lens[2] = 1;
	redisAsyncCommandArgv(tq.ac, NULL, NULL, n + 3, argv, lens);
	/* the delivery counts of claimed entries */
	argv[1] = "HDEL";
	argv[2] = rq->tries;
	lens[1] = 4;
	lens[2] = strlen(rq->tries);
	redisAsyncCommandArgv(tq.ac, NULL, NULL, n + 2, argv + 1, lens + 1);
	redisAsyncCommand(tq.ac, NULL, NULL, "EXEC");
out:
	free(argv);
	free(lens);
	free(done);
}

/* Send rq's gathered tasks (XADD each) and acknowledgements (ack_send). */
static void rq_flush(struct task_redis *rq)
{
	struct batch *b = &rq->push;
	int k;
	const char *argv[9] = { "XADD", rq->stream, "*", "o", tq.host_id, "i", NULL, "x", NULL };
	size_t lens[9];

	for (int i = 0; i < 6; i++)
		lens[i] = strlen(argv[i]);
	lens[7] = 1;
	/* plain XADDs, pipelined (cheaper in Redis than one script adding
	 * many), PUSH_WINDOW at most unanswered: hiredis moves its unsent
	 * output after each write, a long one costs */
	for (k = rq->push_off; k + 1 < b->n && tq.up && tq.pushing < PUSH_WINDOW; k += 2) {
		argv[6] = b->argv[k];
		lens[6] = b->lens[k];
		argv[8] = b->argv[k + 1];
		lens[8] = b->lens[k + 1];
		if (redisAsyncCommandArgv(tq.ac, push_one_reply, (void *)(uintptr_t)b->ids[k / 2],
					  9, argv, lens) == REDIS_OK) {
			tq.pushed++;
			tq.pushing++;
		}
		/* else the connection goes: sent_fail() fails it */
	}
	rq->push_off = k;
	if (k + 1 >= b->n || !tq.up) {
		batch_clear(b);
		rq->push_off = 0;
	}
	if (rq->ack.n && tq.up)
		ack_send(rq, &rq->ack);
	batch_clear(&rq->ack);
}

static void flush_fire(evutil_socket_t fd, short what, void *arg)
{
	struct task_redis *rq;

	(void)fd;
	(void)what;
	(void)arg;
	LIST_FOREACH(rq, &tq.queues, entry)
		rq_flush(rq);
}

/* A task that could not be sent fails from the loop, not inside its
 * sender's enqueue loop (which a map freed at once would break). */
static void push_failed(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = sent_take((uint64_t)(uintptr_t)arg);

	(void)fd;
	(void)what;
	if (t && t->state == TASK_PENDING) {
		struct task_pool *tp = t->home;
		task_end(t, NULL, MPSUP_E_UNAVAILABLE, "its task queue in redis is unreachable");
		tp_dispatch(tp);
	}
}

/* Fail t from the loop (push_failed); at once when even that fails. */
static void push_fail(struct task *t)
{
	const struct timeval zero = { 0, 0 };

	if (sent_add(t, NULL) < 0 || event_base_once(daemon_g.base, -1, EV_TIMEOUT, push_failed,
						     (void *)(uintptr_t)t->id, &zero) < 0) {
		sent_take(t->id);
		task_end(t, NULL, MPSUP_E_INTERNAL, "out of memory");
	}
}

/* Add task id with its item (text) to rq's gathered pushes. */
static int push_add(struct task_redis *rq, uint64_t id, const char *text)
{
	struct batch *b = &rq->push;
	char ids[24];

	if (b->n_ids % 64 == 0) {
		uint64_t *n = realloc(b->ids, (b->n_ids + 64) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->ids = n;
	}
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	if (batch_args(b, ids))
		return -ENOMEM;
	if (batch_args(b, text)) {
		free(b->argv[--b->n]);
		return -ENOMEM;
	}
	b->ids[b->n_ids++] = id;
	flush_soon();
	return 0;
}

void task_redis_push(struct task_pool *tp, struct task *t)
{
	struct task_redis *rq = rq_get(tp);
	char *text = NULL;
	const char *item;
	size_t len;

	t->tp = NULL; /* in no backlog: map_drop_pending() only marks it */
	t->home = tp;
	t->state = TASK_PENDING;
	if (t->map) { /* one item per task here: its text as the request had it */
		item = map_item_text(t->map, t->index, &len);
		text = strndup(item, len);
	} else {
		text = json_dumps(t->item, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	if (!rq || !tq.up || !text || sent_add(t, rq) < 0) {
		free(text);
		push_fail(t);
		return;
	}
	if (push_add(rq, t->id, text) < 0) {
		sent_take(t->id);
		push_fail(t);
	}
	free(text);
}

/* One answer for this host: end the task it names, once. */
static void answer_one(const char *s, size_t len)
{
	json_t *a = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL), *res;
	json_int_t id = json_integer_value(json_object_get(a, "i"));
	struct task *t;
	enum mpsup_err code = MPSUP_E_INTERNAL;
	const char *cname, *e;

	if (!a || id <= 0) {
		log_warn("task", "redis task queue: a malformed answer dropped");
		json_decref(a);
		return;
	}
	if (!(t = sent_take((uint64_t)id)) || t->state != TASK_PENDING) {
		tq.dropped++;
		json_decref(a);
		return; /* answered already, or its map was cancelled */
	}
	tq.answers++;
	if ((res = json_object_get(a, "r")) && t->map) {
		/* a map keeps its results as text */
		char *text = json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY);
		if (text)
			task_end_text(t, text, strlen(text));
		else
			task_end(t, NULL, MPSUP_E_INTERNAL, "out of memory");
		free(text);
	} else if (res) {
		task_end(t, json_incref(res), MPSUP_E_INTERNAL, NULL);
	} else {
		if ((cname = json_string_value(json_object_get(a, "c"))))
			for (int k = 1; k < MPSUP_E__MAX; k++)
				if (strcmp(mpsup_err_name((enum mpsup_err)k), cname) == 0)
					code = (enum mpsup_err)k;
		e = json_string_value(json_object_get(a, "e"));
		task_end(t, NULL, code, e ? e : "failed on another host");
	}
	json_decref(a);
}

/* BLMPOP's reply: the answers, in order; then wait for more. */
static void results_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct task_redis *rq = ac->data;
	redisReply *rp = reply, *vals;

	(void)priv;
	if (!rq)
		return;
	rq->res_busy = false;
	if (!rp)
		return; /* the connection went */
	if (rp->type == REDIS_REPLY_ERROR) {
		log_warn("task", "redis task queue: reading answers: %s", rp->str);
		rq_close(&rq->res); /* opened again at the next tick */
		return;
	}
	if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 2 &&
	    (vals = rp->element[1])->type == REDIS_REPLY_ARRAY) {
		struct task_pool *tp = rq->tp;
		for (size_t k = 0; k < vals->elements; k++)
			if (vals->element[k]->type == REDIS_REPLY_STRING)
				answer_one(vals->element[k]->str, vals->element[k]->len);
		tp_dispatch(tp); /* a pool.imap may have fed more */
	}
	rq_results(rq);
}

/* Wait for this host's answers on rq's pool. */
static void rq_results(struct task_redis *rq)
{
	if (!tq.up || rq->res_busy)
		return;
	if (!rq->res && !(rq->res = blocking_open(rq)))
		return;
	if (redisAsyncCommand(rq->res, results_reply, NULL,
			      "BLMPOP 0 1 %s LEFT COUNT " RESULTS_BATCH, rq->results) == REDIS_OK)
		rq->res_busy = true;
}

/*
 * Consuming tasks.
 */

/* How many more tasks this host's workers of rq's pool can take. */
static unsigned rq_room(const struct task_redis *rq)
{
	const struct task_pool *tp = rq->tp;
	const struct pool_conf *pc = tp->pl->conf;
	unsigned cap = (rq->backlog ? READ_AHEAD : 1) * pc->processes * pc->task_window, used;
	char why[200];

	if (task_shutting || !task_redis_pool(tp) || pool_cannot_run(tp->pl, why, sizeof(why)))
		return 0;
	used = tp->n_running + tp->n_pending + rq->reading;
	return cap > used ? cap - used : 0;
}

/* A task read from Redis (entry id eid, from host origin, its task id
 * there, the item's text, delivered deliveries times before): queue it
 * here. */
static void rtask_add(struct task_redis *rq, const redisReply *eid, const char *origin,
		      const char *oid, const redisReply *item, unsigned deliveries)
{
	struct rtask *rt = calloc(1, sizeof(*rt));
	json_t *v = item ? json_loadb(item->str, item->len, JSON_DECODE_ANY, NULL) : NULL;

	if (!rt || !v || strlen(origin) >= sizeof(rt->origin) ||
	    strlen(oid) >= sizeof(rt->origin_task) || eid->len >= sizeof(rt->entry_id)) {
		log_warn("task", "redis task queue %s: entry %s dropped (%s)", rq->stream, eid->str,
			 rt && v ? "malformed" : "out of memory");
		json_decref(v);
		free(rt);
		return;
	}
	rt->rq = rq;
	rt->t.id = ++tq.next_id;
	rt->t.remote = true;
	rt->t.item = v;
	rt->t.sub = &rt->sub;
	rt->t.attempts = deliveries;
	park_queue_init(&rt->sub.waiters);
	memcpy(rt->entry_id, eid->str, eid->len);
	snprintf(rt->origin, sizeof(rt->origin), "%s", origin);
	snprintf(rt->origin_task, sizeof(rt->origin_task), "%s", oid);
	TAILQ_INSERT_TAIL(&rq->held, rt, entry);
	rq->n_held++;
	tp_enqueue(rq->tp, &rt->t);
}

/* The value of field name in a stream entry's field list, or NULL. */
static const redisReply *entry_field(const redisReply *f, const char *name)
{
	for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
		if (f->element[k]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[k]->str, name) == 0 &&
		    f->element[k + 1]->type == REDIS_REPLY_STRING)
			return f->element[k + 1];
	return NULL;
}

/* XREADGROUP's reply: queue the entries, read again. */
static void read_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct task_redis *rq = ac->data;
	redisReply *rp = reply, *ents;
	unsigned asked;

	(void)priv;
	if (!rq)
		return;
	asked = rq->reading;
	rq->rd_busy = false;
	rq->reading = 0;
	if (!rp)
		return;
	if (rp->type == REDIS_REPLY_ERROR) {
		log_warn("task", "redis task queue %s: %s", rq->stream, rp->str);
		rq_close(&rq->rd); /* a new one creates the group again */
		return;
	}
	if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 1 &&
	    rp->element[0]->type == REDIS_REPLY_ARRAY && rp->element[0]->elements == 2 &&
	    (ents = rp->element[0]->element[1])->type == REDIS_REPLY_ARRAY) {
		rq->backlog = ents->elements >= asked;
		for (size_t k = 0; k < ents->elements; k++) {
			const redisReply *e = ents->element[k], *o, *i;
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
				continue;
			o = entry_field(e->element[1], "o");
			i = entry_field(e->element[1], "i");
			if (o && i)
				rtask_add(rq, e->element[0], o->str, i->str,
					  entry_field(e->element[1], "x"), 0);
		}
		tp_dispatch(rq->tp); /* which reads again while there is room */
		return;
	}
	rq_read(rq);
}

/* Read as many entries as the workers have room for (blocking until some
 * come); the group is made on a new connection first. */
static void rq_read(struct task_redis *rq)
{
	unsigned room;

	if (!tq.up || rq->rd_busy || !(room = rq_room(rq)))
		return;
	if (!rq->rd) {
		if (!(rq->rd = blocking_open(rq)))
			return;
		redisAsyncCommand(rq->rd, NULL, NULL, "XGROUP CREATE %s g 0 MKSTREAM", rq->stream);
	}
	if (redisAsyncCommand(rq->rd, read_reply, NULL,
			      "XREADGROUP GROUP g %s COUNT %u BLOCK 0 STREAMS %s >", tq.host_id,
			      room, rq->stream) == REDIS_OK) {
		rq->rd_busy = true;
		rq->reading = room;
	}
}

void task_redis_pull(struct task_pool *tp)
{
	if (tp->rq)
		rq_read(tp->rq);
}

/* Add an answer (for host origin) and the acknowledgement of its entry
 * to rq's gathered acknowledgements. */
static int ack_add(struct task_redis *rq, const char *entry, const char *origin, const char *text)
{
	struct batch *b = &rq->ack;
	int n0 = b->n;

	if (batch_args(b, entry) || batch_args(b, origin) || batch_args(b, text)) {
		while (b->n > n0)
			free(b->argv[--b->n]);
		return -ENOMEM;
	}
	if (b->n / 3 >= BATCH_MAX)
		rq_flush(rq);
	else
		flush_soon();
	return 0;
}

void task_redis_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg)
{
	struct rtask *rt = (struct rtask *)t;
	struct task_redis *rq = rt->rq;
	json_int_t oid;
	json_t *a;
	char *text = NULL;

	if (!rq)
		goto out; /* its pool went */
	TAILQ_REMOVE(&rq->held, rt, entry);
	rq->n_held--;
	/* not run here (no worker left, shutdown): not acknowledged, another
	 * host claims it after the lease */
	if (!result && (code == MPSUP_E_CONFLICT || code == MPSUP_E_SHUTTING_DOWN))
		goto out;
	oid = (json_int_t)strtoull(rt->origin_task, NULL, 10);
	a = result ? json_pack("{s:I, s:O}", "i", oid, "r", result)
		   : json_pack("{s:I, s:s, s:s}", "i", oid, "c", mpsup_err_name(code), "e",
			       msg ? msg : "failed");
	text = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(a);
	if (text && tq.up && ack_add(rq, rt->entry_id, rt->origin, text) < 0)
		log_warn("task", "redis task queue: out of memory: entry %s not acknowledged",
			 rt->entry_id);
	/* else lost with Redis: the entry runs again if Redis kept it */
	free(text);
out:
	json_decref(result);
	json_decref(t->item);
	free(t->error);
	free(rt);
}

/*
 * Leases: renew what this host holds, claim what lost hosts held.
 */

/* Reset the idle time of the entries rq holds (XCLAIM JUSTID). */
static void rq_renew(struct task_redis *rq)
{
	size_t n = 6 + rq->n_held, k = 0;
	const char **argv;
	size_t *lens;
	struct rtask *rt;

	if (!rq->n_held || !(argv = calloc(n, sizeof(*argv))))
		return;
	if (!(lens = calloc(n, sizeof(*lens)))) {
		free(argv);
		return;
	}
	argv[k++] = "XCLAIM";
	argv[k++] = rq->stream;
	argv[k++] = "g";
	argv[k++] = tq.host_id;
	argv[k++] = "0";
	TAILQ_FOREACH(rt, &rq->held, entry)
		argv[k++] = rt->entry_id;
	argv[k++] = "JUSTID";
	for (size_t i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	if (redisAsyncCommandArgv(tq.ac, NULL, NULL, (int)n, argv, lens) == REDIS_OK)
		tq.renewals++;
	free(argv);
	free(lens);
}

/* The claim script's reply: run the entries claimed. */
static void claim_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct task_pool *tp = priv;
	struct task_redis *rq;
	redisReply *rp = reply;
	bool any = false;

	(void)ac;
	if (!rp || rp->type != REDIS_REPLY_ARRAY) {
		if (rp && rp->type == REDIS_REPLY_ERROR)
			log_warn("task", "redis task queue: claiming: %s", rp->str);
		return;
	}
	/* tp may be gone: find it among the live queues */
	LIST_FOREACH(rq, &tq.queues, entry)
		if (rq->tp == tp)
			break;
	if (!rq)
		return; /* the entries stay claimed by us: claimed again after the lease */
	for (size_t k = 0; k + 4 < rp->elements; k += 5) {
		const redisReply *e = rp->element[k];
		log_info("task",
			 "redis task queue %s: entry %s of a lost host claimed (attempt %lld)",
			 rq->stream, e->str, rp->element[k + 1]->integer + 1);
		tq.claimed++;
		rtask_add(rq, e, rp->element[k + 2]->str, rp->element[k + 3]->str,
			  rp->element[k + 4], (unsigned)rp->element[k + 1]->integer);
		any = true;
	}
	if (any)
		tp_dispatch(tp);
}

/* Claim entries idle past the lease, as many as there is room for. */
static void rq_claim(struct task_redis *rq)
{
	char idle[24], count[16], retries[16];
	unsigned room = rq_room(rq);
	const char *argv[10];
	size_t lens[10];

	if (!room)
		return;
	snprintf(idle, sizeof(idle), "%lld", (long long)(tq.lease * 1000));
	snprintf(count, sizeof(count), "%u", room);
	snprintf(retries, sizeof(retries), "%u", rq->tp->pl->conf->task_retries);
	argv[0] = "EVAL";
	argv[1] = claim_script;
	argv[2] = "2";
	argv[3] = rq->stream;
	argv[4] = rq->tries;
	argv[5] = tq.host_id;
	argv[6] = idle;
	argv[7] = count;
	argv[8] = retries;
	argv[9] = rq->results_pre;
	for (int k = 0; k < 10; k++)
		lens[k] = strlen(argv[k]);
	redisAsyncCommandArgv(tq.ac, claim_reply, rq->tp, 10, argv, lens);
}

/* Every tick: a queue for every redis pool, its reads armed, its holds
 * renewed, lost hosts' entries claimed. */
static void tick_fire(evutil_socket_t fd, short what, void *arg)
{
	double period = tq.lease / 4;
	struct timeval tv;
	struct pool *pl;

	(void)fd;
	(void)what;
	(void)arg;
	TAILQ_FOREACH(pl, &pools, entry) {
		struct task_pool *tp = pl->tasks;
		if (tp && tp->rq && !task_redis_pool(tp)) {
			/* reloaded with task_queue = local (or mode = service) */
			sent_fail(tp, MPSUP_E_CONFLICT, "the pool's task_queue changed");
			rq_free(tp->rq);
			continue;
		}
		if (pl->conf->mode != POOL_MODE_TASK || pl->conf->task_queue != TASK_QUEUE_REDIS ||
		    pl->removing || !(tp = tp_get(pl)) || !rq_get(tp))
			continue;
		if (!tq.ac && !tq.stopping && !evtimer_pending(tq.retry, NULL))
			tq_connect();
		if (!tq.up)
			continue;
		rq_results(tp->rq);
		rq_read(tp->rq);
		rq_renew(tp->rq);
		rq_claim(tp->rq);
		redisAsyncCommand(tq.ac, NULL, NULL, "EVAL %s 1 %s", trim_script, tp->rq->stream);
	}
	tv = tv_from_secs(period < 0.25 ? 0.25 : period < 1 ? period : 1);
	evtimer_add(tq.tick, &tv);
}

/*
 * The command connection.
 */

static void retry_later(void)
{
	struct timeval tv;

	if (tq.stopping)
		return;
	tq.backoff = redis_link_backoff(tq.backoff);
	tv = tv_from_secs(tq.backoff);
	evtimer_add(tq.retry, &tv);
}

static void tq_connected(const redisAsyncContext *ac, int status)
{
	struct task_redis *rq;

	if (status != REDIS_OK) {
		log_debug("task", "redis task queue: cannot connect: %s", ac->errstr);
		tq.ac = NULL;
		retry_later();
		return;
	}
	tq.up = true;
	tq.backoff = 0;
	log_info("task", "redis task queue: connected to %s", tq.address);
	LIST_FOREACH(rq, &tq.queues, entry) {
		rq_results(rq);
		rq_read(rq);
	}
}

static void tq_disconnected(const redisAsyncContext *ac, int status)
{
	struct task_redis *rq;
	bool was = tq.up;

	if (was && !tq.stopping)
		log_warn("task",
			 "redis task queue: lost %s: %s; task commands on its pools answer "
			 "unavailable until it is back",
			 tq.address, status == REDIS_OK ? "closed" : ac->errstr);
	tq.lost += was;
	tq.up = false;
	tq.ac = NULL;
	tq.pushing = 0;
	LIST_FOREACH(rq, &tq.queues, entry)
		rq_disconnect(rq);
	if (was)
		sent_fail(NULL, MPSUP_E_UNAVAILABLE, "the task queue's redis connection was lost");
	retry_later();
}

static void tq_connect(void)
{
	if (!(tq.ac = redis_link_open(tq.address))) {
		retry_later();
		return;
	}
	redisAsyncSetConnectCallback(tq.ac, tq_connected);
	redisAsyncSetDisconnectCallback(tq.ac, tq_disconnected);
}

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	tq.reconnects++;
	tq_connect();
}

/*
 * The module's hooks.
 */

void task_redis_map_gone(struct map *m)
{
	if (!tq.n_sent || !m->tp || !m->tp->rq || m->ended >= m->fed)
		return;
	for (size_t k = 0; k < m->fed; k++) {
		struct task *t = &m->tasks[k];
		/* only if the table still points at this map's task */
		for (struct sent *s = tq.buckets ? *sent_slot(t->id) : NULL; s; s = s->next)
			if (s->t == t) {
				sent_take(t->id);
				break;
			}
	}
}

void task_redis_pool_gone(struct task_pool *tp)
{
	char why[200];

	if (!tp->rq)
		return;
	snprintf(why, sizeof(why), "pool %s was removed", tp->pl->name);
	sent_fail(tp, MPSUP_E_CONFLICT, why);
	rq_free(tp->rq);
}

void task_redis_info(json_t *info)
{
	const struct task_redis *rq;
	json_int_t reading = 0, held = 0;
	json_t *q;

	if (LIST_EMPTY(&tq.queues) && !tq.ac)
		return;
	LIST_FOREACH(rq, &tq.queues, entry) {
		reading += rq->rd_busy;
		held += rq->n_held;
	}
	q = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connection",
		      tq.up ? "connected" : (tq.ac ? "connecting" : "down"), "address", tq.address,
		      "host_id", tq.host_id, "waiting", (json_int_t)tq.n_sent, "sent",
		      (json_int_t)tq.pushed, "answers", (json_int_t)tq.answers, "dropped",
		      (json_int_t)tq.dropped, "claimed", (json_int_t)tq.claimed, "renewals",
		      (json_int_t)tq.renewals, "reconnects", (json_int_t)tq.reconnects,
		      "connections_lost", (json_int_t)tq.lost);
	/* pools whose stream this host is reading now; entries it holds */
	json_object_set_new(q, "reading", json_integer(reading));
	json_object_set_new(q, "held", json_integer(held));
	json_object_set_new(info, "task_queue", q);
}

/* A blocking PING: Redis must answer before mpsupd serves a redis pool. */
static int tq_check(const char *address)
{
	redisContext *ctx = redis_link_open_sync(address);
	redisReply *rp = NULL;
	int ret = -1;

	if (ctx && !ctx->err)
		rp = redisCommand(ctx, "PING");
	if (rp && rp->type == REDIS_REPLY_STATUS)
		ret = 0;
	else
		log_error("task", "task_queue = redis: redis_address %s does not answer: %s",
			  address,
			  rp && rp->str ? rp->str
			  : ctx         ? ctx->errstr
					: "out of memory");
	freeReplyObject(rp);
	if (ctx)
		redisFree(ctx);
	return ret;
}

int task_redis_start(const struct conf *conf)
{
	unsigned char rnd[16];
	const struct pool_conf *pc;
	bool any = false;

	for (pc = conf->pools; pc; pc = pc->next)
		any |= pc->mode == POOL_MODE_TASK && pc->task_queue == TASK_QUEUE_REDIS;
	if (any && conf->redis_lease < 1) {
		log_error("task", "task_queue = redis: redis_lease must be at least 1 second");
		return -1;
	}
	if (any && tq_check(conf->redis_address) < 0)
		return -1;
	snprintf(tq.address, sizeof(tq.address), "%s", conf->redis_address);
	snprintf(tq.prefix, sizeof(tq.prefix), "%s", conf->redis_prefix);
	tq.lease = conf->redis_lease;
	/* apart from the local tasks' ids: a worker never holds two alike */
	tq.next_id = UINT64_C(1) << 62;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return -errno;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(tq.host_id + 2 * i, 3, "%02x", rnd[i]);
	LIST_INIT(&tq.queues);
	if (!(tq.retry = evtimer_new(daemon_g.base, retry_fire, NULL)) ||
	    !(tq.tick = evtimer_new(daemon_g.base, tick_fire, NULL)) ||
	    !(tq.flush = event_new(daemon_g.base, -1, 0, flush_fire, NULL)))
		return -ENOMEM;
	if (any)
		tq_connect();
	tick_fire(-1, 0, NULL);
	return 0;
}

void task_redis_stop(void)
{
	tq.stopping = true;
	sent_fail(NULL, MPSUP_E_SHUTTING_DOWN, "mpsupd is shutting down");
	while (!LIST_EMPTY(&tq.queues)) {
		rq_free(LIST_FIRST(&tq.queues));
	}
	if (tq.ac)
		redisAsyncFree(tq.ac);
	tq.ac = NULL;
	tq.up = false;
	if (tq.tick)
		event_free(tq.tick);
	if (tq.retry)
		event_free(tq.retry);
	if (tq.flush)
		event_free(tq.flush);
	tq.tick = tq.retry = tq.flush = NULL;
	free(tq.sent);
	tq.sent = NULL;
	tq.buckets = 0;
}
