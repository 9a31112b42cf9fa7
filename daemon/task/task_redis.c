/*
 * The redis task queue (task_queue = redis, docs/tasks.md, DESIGN §12):
 * the tasks of such a pool go through one Redis stream that the pool's
 * workers on every host consume.
 *
 * Keys, all in the pool's hash slot (PREFIX{task:POOL}):
 *   :s       the stream of tasks, an entry a batch of them: fields o (the
 *            sending host's id), i (its task ids there, space-separated) and
 *            x (the items' JSON texts as one list); consumer group g, one
 *            consumer per host;
 *   :r:HOST  the answers for HOST, one per entry: a JSON list of pairs,
 *            a task id and its result, or minus its id and
 *            {"c": code, "e": message} (read as text: a map's results stay
 *            text);
 *   :n       delivery counts of the entries claimed from a lost host.
 *
 * The sending host XADDs the tasks gathered in a turn of the loop, up to
 * entry_bound() items (ENTRY_BYTES_MAX of text) per entry, so that Redis's
 * and mpsupd's cost per entry is paid per batch, and keeps each task by id
 * until its answer comes (BLMPOP on a connection of its own per pool: no polling); the
 * first answer ends the task, a second one (an entry run twice) is
 * dropped. A consuming host reads entries (XREADGROUP, blocking, on a
 * connection of its own per pool) as far as its workers have room
 * (see rq_room()), runs each item as a local task (t->remote) and, once
 * all of an entry's items ended, pushes their answers and acknowledges the
 * entry in one MULTI/EXEC (an entry is acknowledged only once its answers
 * are stored; one not run whole here is not acknowledged); acknowledged
 * entries are trimmed away every tick (XTRIM MINID the oldest pending).
 * While it holds entries a host renews them (XCLAIM JUSTID resets their
 * idle time) every tick; an entry idle longer than redis_lease belongs to a
 * host that died or lost Redis and is claimed by a live one (XAUTOCLAIM,
 * every tick), which counts a retry of each of its items against
 * task_retries (past them the sender gets the failure of each).
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
 * failure of each of their tasks, and so are entries without their three
 * fields (nothing can run them; answered when they name a sender and
 * tasks); the others are returned as id, deliveries, o, i, x. */
static const char claim_script[] =
	"local r = redis.call('XAUTOCLAIM', KEYS[1], 'g', ARGV[1], ARGV[2], '0-0', 'COUNT', "
	"ARGV[3]) "
	"local out = {} "
	"for _, e in ipairs(r[2]) do "
	"  if e and e[2] then "
	"    local h = {} "
	"    for k = 1, #e[2], 2 do h[e[2][k]] = e[2][k + 1] end "
	"    local n = redis.call('HINCRBY', KEYS[2], e[1], 1) "
	"    local whole = h['o'] and h['i'] and h['x'] "
	"    if n > tonumber(ARGV[4]) or not whole then "
	"      local why = whole and ('the host running it was lost (after ' .. n .. "
	"' attempts)') or 'its stream entry is malformed' "
	"      local a = {} "
	"      for id in string.gmatch(h['i'] or '', '%d+') do "
	"        table.insert(a, '-' .. id .. ',{\"c\":\"internal\",\"e\":\"' .. why .. "
	"'\"}') "
	"      end "
	"      if #a > 0 and h['o'] then "
	"        redis.call('RPUSH', ARGV[5] .. h['o'], '[' .. table.concat(a, ',') .. ']') "
	"      end "
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
	unsigned long long pushed, entries, answers, dropped, claimed, renewals, reconnects, lost;
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
	struct rentry *re;

	while ((re = TAILQ_FIRST(&rq->held))) {
		TAILQ_REMOVE(&rq->held, re, entry);
		re->rq = NULL;
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

/* An XADD's reply: an error fails its tasks. */
static void push_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rp = reply;
	struct pushed *pu = priv;
	struct task *t;

	(void)ac;
	if (tq.pushing && --tq.pushing == PUSH_WINDOW / 2)
		flush_soon(); /* room: send what waits */
	for (unsigned k = 0; rp && rp->type == REDIS_REPLY_ERROR && k < pu->n; k++)
		if ((t = sent_take(pu->ids[k])) && t->state == TASK_PENDING)
			task_end(t, NULL, MPSUP_E_UNAVAILABLE, rp->str);
	free(pu);
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

/* A text being built; oom once an append failed. */
struct tbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void tbuf_add(struct tbuf *b, const char *s, size_t len)
{
	if (b->oom)
		return;
	if (b->len + len > b->cap) {
		size_t nc = (b->len + len) * 2;
		char *n = realloc(b->s, nc);
		if (!n) {
			b->oom = true;
			return;
		}
		b->s = n;
		b->cap = nc;
	}
	memcpy(b->s + b->len, s, len);
	b->len += len;
}

/* Items per stream entry for tp's pool: what its workers here hold at
 * once (a host that reads an entry has work for all of its workers, two
 * hosts share a map of a few entries), ENTRY_ITEMS_MAX at most. */
static unsigned entry_bound(const struct task_pool *tp)
{
	const struct pool_conf *pc = tp->pl->conf;
	unsigned long n = (unsigned long)pc->processes * pc->task_window;

	return n < 1 ? 1 : n > ENTRY_ITEMS_MAX ? ENTRY_ITEMS_MAX : (unsigned)n;
}

static void push_fail(struct task *t);

/* The tasks of pu could not be sent: they fail (from the loop). */
static void push_fail_all(struct pushed *pu)
{
	struct task *t;

	for (unsigned k = 0; k < pu->n; k++)
		if ((t = sent_take(pu->ids[k])))
			push_fail(t);
	free(pu);
}

/* XADD rq's gathered tasks from pair k on as one entry (bound of them at
 * most, ENTRY_BYTES_MAX of items' text past the first); ids and x are
 * scratch. Returns the first pair not sent. */
static int push_entry(struct task_redis *rq, int k, unsigned bound, struct tbuf *ids,
		      struct tbuf *x)
{
	const struct batch *b = &rq->push;
	const char *argv[9] = { "XADD", rq->stream, "*", "o", tq.host_id, "i", NULL, "x", NULL };
	size_t lens[9];
	struct pushed *pu = malloc(sizeof(*pu) + bound * sizeof(pu->ids[0]));
	unsigned n;

	if (!pu) {
		struct task *t = sent_take(b->ids[k / 2]);
		if (t)
			push_fail(t);
		return k + 2;
	}
	pu->n = 0;
	ids->len = x->len = 0;
	tbuf_add(x, "[", 1);
	while (k + 1 < b->n && pu->n < bound &&
	       (!pu->n || x->len + b->lens[k + 1] < ENTRY_BYTES_MAX)) {
		if (pu->n) {
			tbuf_add(ids, " ", 1);
			tbuf_add(x, ",", 1);
		}
		tbuf_add(ids, b->argv[k], b->lens[k]);
		tbuf_add(x, b->argv[k + 1], b->lens[k + 1]);
		pu->ids[pu->n++] = b->ids[k / 2];
		k += 2;
	}
	tbuf_add(x, "]", 1);
	if (ids->oom || x->oom) {
		ids->oom = x->oom = false;
		push_fail_all(pu);
		return k;
	}
	for (int i = 0; i < 6; i++)
		lens[i] = strlen(argv[i]);
	lens[7] = 1;
	argv[6] = ids->s;
	lens[6] = ids->len;
	argv[8] = x->s;
	lens[8] = x->len;
	n = pu->n;
	if (redisAsyncCommandArgv(tq.ac, push_reply, pu, 9, argv, lens) != REDIS_OK) {
		free(pu); /* the connection goes: sent_fail() fails them */
		return k;
	}
	tq.pushed += n;
	tq.entries++;
	tq.pushing++;
	return k;
}

/* Send rq's gathered tasks (XADD a batch of them per entry) and
 * acknowledgements (ack_send). */
static void rq_flush(struct task_redis *rq)
{
	struct batch *b = &rq->push;
	struct tbuf ids = { 0 }, x = { 0 };
	unsigned bound = entry_bound(rq->tp);
	int k = rq->push_off;

	/* plain XADDs, pipelined (cheaper in Redis than one script adding
	 * many), PUSH_WINDOW at most unanswered: hiredis moves its unsent
	 * output after each write, a long one costs */
	while (k + 1 < b->n && tq.up && tq.pushing < PUSH_WINDOW)
		k = push_entry(rq, k, bound, &ids, &x);
	free(ids.s);
	free(x.s);
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

/* One answer for this host: end the task it names (id; -id: it failed)
 * with the text v[0..len) (its result, or {"c": code, "e": message}), once. */
static void answer_one(json_int_t id, const char *v, size_t len)
{
	struct task *t;
	enum mpsup_err code = MPSUP_E_INTERNAL;
	json_t *a;
	const char *cname, *e;

	if (!(t = sent_take((uint64_t)(id < 0 ? -id : id))) || t->state != TASK_PENDING) {
		tq.dropped++;
		return; /* answered already, or its map was cancelled */
	}
	tq.answers++;
	if (id > 0 && t->map) {
		task_end_text(t, v, len); /* a map keeps its results as text */
		return;
	}
	if (!(a = json_loadb(v, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL))) {
		task_end(t, NULL, MPSUP_E_INTERNAL, "a malformed answer from another host");
	} else if (id > 0) {
		task_end(t, a, MPSUP_E_INTERNAL, NULL);
		return;
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

/* Walks an entry's answers: pairs of a task id and its answer. */
static int answer_walk(void *arg, const char *value, size_t len)
{
	json_int_t *id = arg;
	char *end;

	if (*id) {
		answer_one(*id, value, len);
		*id = 0;
		return 0;
	}
	/* value lies in a NUL-terminated reply: strtoll stops at its end */
	*id = (json_int_t)strtoll(value, &end, 10);
	return *id && end == value + len ? 0 : -EINVAL;
}

/* An entry's answers for this host: a list [id, answer, id, answer...]
 * (answer_one()), read as text. */
static void answer_entry(const char *s, size_t len)
{
	json_int_t id = 0;
	json_t *l;

	if (mpsup_json_array_each(s, len, 0, answer_walk, &id) >= 0)
		return;
	/* unusual text (or malformed): through jansson */
	l = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!json_is_array(l) || json_array_size(l) % 2)
		log_warn("task", "redis task queue: a malformed answer dropped");
	for (size_t k = 0; k + 1 < json_array_size(l); k += 2) {
		char *v = json_dumps(json_array_get(l, k + 1), JSON_COMPACT | JSON_ENCODE_ANY);
		id = json_integer_value(json_array_get(l, k));
		if (v && id)
			answer_one(id, v, strlen(v));
		free(v);
	}
	json_decref(l);
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
				answer_entry(vals->element[k]->str, vals->element[k]->len);
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

/* How many more tasks this host's workers of rq's pool can take; with
 * reads: beyond what the read in flight asked for. A claim does not count
 * that read: an idle host's read waits for new entries, and a lost host's
 * entries must not wait for it (the read may then bring up to twice the
 * room). */
static unsigned rq_room(const struct task_redis *rq, bool reads)
{
	const struct task_pool *tp = rq->tp;
	const struct pool_conf *pc = tp->pl->conf;
	unsigned cap = (rq->backlog ? READ_AHEAD : 1) * pc->processes * pc->task_window, used;
	char why[200];

	if (task_shutting || !task_redis_pool(tp) ||
	    pool_cannot_run(tp->pl, true, why, sizeof(why)))
		return 0;
	used = tp->n_running + tp->n_pending + (reads ? rq->reading : 0);
	return cap > used ? cap - used : 0;
}

static void rentry_put(struct rentry *re);
static int ack_add(struct task_redis *rq, const char *entry, const char *origin, const char *text);

/* The task ids of an entry (space-separated) into ids[n]; -EINVAL unless
 * there are n of them. */
static int entry_ids(const char *s, json_int_t *ids, size_t n)
{
	size_t k = 0;
	char *end;

	while (*s) {
		unsigned long long v = strtoull(s, &end, 10);
		if (end == s || k == n || v == 0 || v > INT64_MAX)
			return -EINVAL;
		ids[k++] = (json_int_t)v;
		s = *end == ' ' ? end + 1 : end;
		if (*end && *end != ' ')
			return -EINVAL;
	}
	return k == n ? 0 : -EINVAL;
}

/* Queue item k of entry re (task id oid on its sender, delivered
 * deliveries times before) here; false when out of memory. */
static bool rtask_add(struct rentry *re, unsigned k, json_int_t oid, unsigned deliveries)
{
	struct rtask *rt = calloc(1, sizeof(*rt));

	if (!rt)
		return false;
	rt->re = re;
	rt->idx = k;
	rt->origin_id = oid;
	rt->t.id = ++tq.next_id;
	rt->t.remote = true;
	rt->t.sub = &rt->sub;
	rt->t.attempts = deliveries;
	park_queue_init(&rt->sub.waiters);
	re->left++;
	tp_enqueue(re->rq->tp, &rt->t);
	return true;
}

/* The items of an entry (a JSON list's text) into re's items and at,
 * their number in *ret_n (> 0); -EINVAL, -ENOMEM. */
static int entry_items(struct rentry *re, const char *text, size_t len, size_t *ret_n)
{
	int rc = map_items_read(text, len, &re->items, &re->at, ret_n);
	json_t *v;
	char *c;

	if (rc == -EINVAL) { /* unusual text: as jansson writes it */
		v = json_loadb(text, len, JSON_DECODE_ANY, NULL);
		c = json_is_array(v) ? json_dumps(v, JSON_COMPACT) : NULL;
		rc = c ? map_items_read(c, strlen(c), &re->items, &re->at, ret_n) : -EINVAL;
		free(c);
		json_decref(v);
	}
	return rc < 0 ? rc : *ret_n ? 0 : -EINVAL;
}

/* The tasks ids_text names (space-separated), sent by host origin, fail:
 * their stream entry eid cannot be run here (malformed: written by
 * something else, or by another version of mpsupd). It is acknowledged,
 * so that it neither runs again nor holds back the trimming of the
 * stream; origin or ids_text NULL: there is no one to answer. */
static void rentry_refuse(struct task_redis *rq, const char *eid, const char *origin,
			  const char *ids_text)
{
	static const char why[] = ",{\"c\":\"internal\",\"e\":\"its stream entry is malformed\"}";
	struct tbuf b = { 0 };
	char id[24], *end;
	int n = 0;

	log_warn("task", "redis task queue %s: entry %s is malformed: its tasks fail", rq->stream,
		 eid);
	if (origin && strlen(origin) < sizeof(((struct rentry *)0)->origin))
		for (const char *s = ids_text; s && *s && n < ENTRY_ITEMS_MAX; s = end, n++) {
			unsigned long long v = strtoull(s, &end, 10);
			if (end == s || v == 0 || v > INT64_MAX || (*end && *end != ' '))
				break;
			tbuf_add(&b, n ? ",-" : "[-", 2);
			tbuf_add(&b, id, (size_t)snprintf(id, sizeof(id), "%llu", v));
			tbuf_add(&b, why, sizeof(why) - 1);
			end += *end == ' ';
		}
	tbuf_add(&b, "]", 2); /* with its NUL */
	if (!n || b.oom || ack_add(rq, eid, origin, b.s) < 0)
		redisAsyncCommand(tq.ac, NULL, NULL, "XACK %s g %s", rq->stream, eid);
	free(b.s);
}

/* An entry read from Redis (entry id eid, from host origin, its tasks'
 * ids there, the items' text, delivered deliveries times before): queue
 * its items here. */
static void rentry_add(struct task_redis *rq, const redisReply *eid, const char *origin,
		       const char *ids_text, const redisReply *items, unsigned deliveries)
{
	struct rentry *re = calloc(1, sizeof(*re));
	size_t n = 0;
	int rc = !re ? -ENOMEM : items ? entry_items(re, items->str, items->len, &n) : -EINVAL;
	json_int_t *ids = n ? calloc(n, sizeof(*ids)) : NULL;

	if (rc == 0 && (!ids || !(re->answers = calloc(n, sizeof(*re->answers)))))
		rc = -ENOMEM;
	if (rc == 0 && (entry_ids(ids_text, ids, n) < 0 || strlen(origin) >= sizeof(re->origin) ||
			eid->len >= sizeof(re->entry_id)))
		rc = -EINVAL;
	if (rc < 0) {
		if (rc == -EINVAL)
			rentry_refuse(rq, eid->str, origin, ids_text);
		else /* not acknowledged: it runs again after the lease */
			log_warn("task", "redis task queue %s: out of memory: entry %s left",
				 rq->stream, eid->str);
		if (re) {
			free(re->answers);
			free(re->items);
			free(re->at);
		}
		free(re);
		free(ids);
		return;
	}
	re->rq = rq;
	re->n = (unsigned)n;
	re->left = 1; /* held while its items are queued (one may end at once) */
	memcpy(re->entry_id, eid->str, eid->len);
	snprintf(re->origin, sizeof(re->origin), "%s", origin);
	TAILQ_INSERT_TAIL(&rq->held, re, entry);
	rq->n_held++;
	for (size_t k = 0; k < n && re->rq; k++)
		if (!rtask_add(re, (unsigned)k, ids[k], deliveries)) {
			re->skip = true; /* runs again after the lease */
			break;
		}
	free(ids);
	rentry_put(re);
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
		rq->backlog =
			ents->elements >= (asked + entry_bound(rq->tp) - 1) / entry_bound(rq->tp);
		for (size_t k = 0; k < ents->elements; k++) {
			const redisReply *e = ents->element[k], *o, *i;
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
			    e->element[0]->type != REDIS_REPLY_STRING)
				continue;
			o = entry_field(e->element[1], "o");
			i = entry_field(e->element[1], "i");
			if (o && i)
				rentry_add(rq, e->element[0], o->str, i->str,
					   entry_field(e->element[1], "x"), 0);
			else
				rentry_refuse(rq, e->element[0]->str, o ? o->str : NULL,
					      i ? i->str : NULL);
		}
		tp_dispatch(rq->tp); /* which reads again while there is room */
		return;
	}
	rq_read(rq);
}

/* Read as many entries as the workers have room for (blocking until some
 * come; entries of entry_bound() items counted); the group is made on a
 * new connection first. */
static void rq_read(struct task_redis *rq)
{
	unsigned room, bound = entry_bound(rq->tp);

	if (!tq.up || rq->rd_busy || !(room = rq_room(rq, true)))
		return;
	if (!rq->rd) {
		if (!(rq->rd = blocking_open(rq)))
			return;
		redisAsyncCommand(rq->rd, NULL, NULL, "XGROUP CREATE %s g 0 MKSTREAM", rq->stream);
	}
	if (redisAsyncCommand(rq->rd, read_reply, NULL,
			      "XREADGROUP GROUP g %s COUNT %u BLOCK 0 STREAMS %s >", tq.host_id,
			      (room + bound - 1) / bound, rq->stream) == REDIS_OK) {
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

/* The answers of re's items as one JSON list (answer_entry()); NULL when
 * out of memory. */
static char *rentry_answers(const struct rentry *re)
{
	struct tbuf b = { 0 };

	tbuf_add(&b, "[", 1);
	for (unsigned k = 0; k < re->n; k++) {
		if (k)
			tbuf_add(&b, ",", 1);
		tbuf_add(&b, re->answers[k], strlen(re->answers[k]));
	}
	tbuf_add(&b, "]", 2); /* with its NUL */
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

/* One of re's items ended (or its queueing did): once all did, answer and
 * acknowledge re, unless one was not run here, and free it. */
static void rentry_put(struct rentry *re)
{
	struct task_redis *rq = re->rq;
	char *text = NULL;

	if (--re->left)
		return;
	if (rq) {
		TAILQ_REMOVE(&rq->held, re, entry);
		rq->n_held--;
	}
	/* not acknowledged: another host claims it after the lease */
	if (rq && !re->skip && tq.up &&
	    (!(text = rentry_answers(re)) || ack_add(rq, re->entry_id, re->origin, text) < 0))
		log_warn("task", "redis task queue: out of memory: entry %s not acknowledged",
			 re->entry_id);
	/* else lost with Redis: the entry runs again if Redis kept it */
	free(text);
	for (unsigned k = 0; k < re->n; k++)
		free(re->answers[k]);
	free(re->answers);
	free(re->items);
	free(re->at);
	free(re);
}

const char *task_redis_item(const struct task *t, size_t *ret_len)
{
	const struct rtask *rt = (const struct rtask *)t;

	*ret_len = rt->re->at[rt->idx].len;
	return rt->re->items + rt->re->at[rt->idx].off;
}

void task_redis_end_text(struct task *t, const char *text, size_t len)
{
	struct rtask *rt = (struct rtask *)t;
	struct rentry *re = rt->re;
	char id[24];
	size_t il;

	if (re->rq && !re->skip) {
		il = (size_t)snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT ",", rt->origin_id);
		if ((re->answers[rt->idx] = malloc(il + len + 1))) {
			memcpy(re->answers[rt->idx], id, il);
			memcpy(re->answers[rt->idx] + il, text, len);
			re->answers[rt->idx][il + len] = '\0';
		} else {
			re->skip = true;
		}
	}
	task_end(t, json_null(), MPSUP_E_INTERNAL, NULL); /* the answer is kept */
}

void task_redis_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg)
{
	struct rtask *rt = (struct rtask *)t;
	struct rentry *re = rt->re;
	char *text;
	json_t *a;

	/* not run here (no worker left, shutdown): its entry is not
	 * acknowledged, another host claims it after the lease */
	if (!result && (code == MPSUP_E_CONFLICT || code == MPSUP_E_SHUTTING_DOWN))
		re->skip = true;
	if (re->rq && !re->skip && !re->answers[rt->idx]) {
		a = result ? json_incref(result)
			   : json_pack("{s:s, s:s}", "c", mpsup_err_name(code), "e",
				       msg ? msg : "failed");
		text = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text || asprintf(&re->answers[rt->idx], "%" JSON_INTEGER_FORMAT ",%s",
				      result ? rt->origin_id : -rt->origin_id, text) < 0) {
			re->answers[rt->idx] = NULL;
			re->skip = true;
		}
		free(text);
		json_decref(a);
	}
	rentry_put(re);
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
	struct rentry *re;

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
	TAILQ_FOREACH(re, &rq->held, entry)
		argv[k++] = re->entry_id;
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
		if (e->type != REDIS_REPLY_STRING ||
		    rp->element[k + 1]->type != REDIS_REPLY_INTEGER ||
		    rp->element[k + 2]->type != REDIS_REPLY_STRING ||
		    rp->element[k + 3]->type != REDIS_REPLY_STRING ||
		    rp->element[k + 4]->type != REDIS_REPLY_STRING) {
			log_warn("task", "redis task queue %s: a malformed claim answer",
				 rq->stream);
			break; /* the rest would be out of step */
		}
		log_info("task",
			 "redis task queue %s: entry %s of a lost host claimed (attempt %lld)",
			 rq->stream, e->str, rp->element[k + 1]->integer + 1);
		tq.claimed++;
		rentry_add(rq, e, rp->element[k + 2]->str, rp->element[k + 3]->str,
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
	unsigned room = rq_room(rq, false);
	const char *argv[10];
	size_t lens[10];

	if (!room)
		return;
	snprintf(idle, sizeof(idle), "%lld", (long long)(tq.lease * 1000));
	snprintf(count, sizeof(count), "%u",
		 (room + entry_bound(rq->tp) - 1) / entry_bound(rq->tp));
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
	/* the stream entries that carried the tasks sent (a batch each) */
	json_object_set_new(q, "entries", json_integer((json_int_t)tq.entries));
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
