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
#include "task_redis_int.h"

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

struct tq_state tq;

bool task_redis_pool(const struct task_pool *tp)
{
	return tp->pl->conf->mode == POOL_MODE_TASK && tp->pl->conf->task_queue == TASK_QUEUE_REDIS;
}

struct task_redis *rq_get(struct task_pool *tp)
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

void rq_close(redisAsyncContext **acp)
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

redisAsyncContext *blocking_open(struct task_redis *rq)
{
	redisAsyncContext *ac =
		redis_link_open(redis_nodes_addr(&tq.nodes, rq->stream, strlen(rq->stream)));

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
	redis_nodes_connect(&tq.nodes);
	request_error(r, MPSUP_E_UNAVAILABLE,
		      "pool %s: its task queue, redis at %s, is unreachable", tp->pl->name,
		      tq.address);
	return true;
}

void batch_clear(struct batch *b)
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

int batch_args(struct batch *b, const char *s)
{
	return batch_arg(b, s, strlen(s));
}

void flush_soon(void)
{
	if (tq.flush)
		event_active(tq.flush, EV_TIMEOUT, 1);
}

void tbuf_add(struct tbuf *b, const char *s, size_t len)
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
	if (redisAsyncCommandArgv(tq_ac(rq), NULL, NULL, (int)n, argv, lens) == REDIS_OK)
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
		if (rp && rp->type == REDIS_REPLY_ERROR &&
		    !redis_nodes_redirected(&tq.nodes, rp->str, rp->len))
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
	redisAsyncCommandArgv(tq_ac(rq), claim_reply, rq->tp, 10, argv, lens);
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
		redis_nodes_connect(&tq.nodes);
		if (!tq.up)
			continue;
		rq_results(tp->rq);
		rq_read(tp->rq);
		rq_renew(tp->rq);
		rq_claim(tp->rq);
		redisAsyncCommand(tq_ac(tp->rq), NULL, NULL, "EVAL %s 1 %s", trim_script,
				  tp->rq->stream);
	}
	tv = tv_from_secs(period < 0.25 ? 0.25 : period < 1 ? period : 1);
	evtimer_add(tq.tick, &tv);
}

static void tq_up(struct redis_nodes *rn)
{
	struct task_redis *rq;

	tq.up = true;
	if (rn->cluster)
		log_info("task", "redis task queue: connected to the cluster of %s: %u masters",
			 tq.address, rn->n);
	else
		log_info("task", "redis task queue: connected to %s", tq.address);
	LIST_FOREACH(rq, &tq.queues, entry) {
		rq_results(rq);
		rq_read(rq);
	}
}

static void tq_down(struct redis_nodes *rn, bool was_up, const char *why)
{
	struct task_redis *rq;

	(void)rn;
	if (was_up)
		log_warn("task",
			 "redis task queue: lost %s: %s; task commands on its pools answer "
			 "unavailable until it is back",
			 tq.address, why);
	else
		log_debug("task", "redis task queue: %s", why);
	tq.up = false;
	tq.pushing = 0;
	LIST_FOREACH(rq, &tq.queues, entry)
		rq_disconnect(rq);
	if (was_up)
		sent_fail(NULL, MPSUP_E_UNAVAILABLE, "the task queue's redis connection was lost");
}

static const struct redis_nodes_ops tq_ops = {
	.up = tq_up,
	.down = tq_down,
};

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

	if (LIST_EMPTY(&tq.queues) && !redis_nodes_any(&tq.nodes))
		return;
	LIST_FOREACH(rq, &tq.queues, entry) {
		reading += rq->rd_busy;
		held += rq->n_held;
	}
	q = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connection",
		      redis_nodes_state(&tq.nodes), "address", tq.address, "host_id", tq.host_id,
		      "waiting", (json_int_t)tq.n_sent, "sent", (json_int_t)tq.pushed, "answers",
		      (json_int_t)tq.answers, "dropped", (json_int_t)tq.dropped, "claimed",
		      (json_int_t)tq.claimed, "renewals", (json_int_t)tq.renewals, "reconnects",
		      (json_int_t)tq.nodes.reconnects, "connections_lost",
		      (json_int_t)tq.nodes.lost);
	/* the stream entries that carried the tasks sent (a batch each) */
	json_object_set_new(q, "entries", json_integer((json_int_t)tq.entries));
	/* pools whose stream this host is reading now; entries it holds */
	json_object_set_new(q, "reading", json_integer(reading));
	json_object_set_new(q, "held", json_integer(held));
	redis_nodes_info(&tq.nodes, q);
	json_object_set_new(info, "task_queue", q);
}

/* A blocking PING and CLUSTER SLOTS: Redis must answer before mpsupd
 * serves a redis pool; then the nodes connect on the loop. */
static int tq_check(const char *address)
{
	redisContext *ctx = redis_link_open_sync(address);
	redisReply *rp = NULL;
	char err[512] = "";
	int ret = -1;

	if (ctx && !ctx->err)
		rp = redisCommand(ctx, "PING");
	if (rp && rp->type == REDIS_REPLY_STATUS)
		ret = redis_nodes_learn(&tq.nodes, ctx, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "redis_address %s does not answer: %s", address,
			 rp && rp->str ? rp->str
			 : ctx         ? ctx->errstr
				       : "out of memory");
	if (ret < 0)
		log_error("task", "task_queue = redis: %s", err);
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
	if (redis_nodes_init(&tq.nodes, tq.address, &tq_ops) < 0 ||
	    !(tq.tick = evtimer_new(daemon_g.base, tick_fire, NULL)) ||
	    !(tq.flush = event_new(daemon_g.base, -1, 0, flush_fire, NULL)))
		return -ENOMEM;
	if (any && tq_check(conf->redis_address) < 0)
		return -1;
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
	redis_nodes_stop(&tq.nodes);
	tq.up = false;
	if (tq.tick)
		event_free(tq.tick);
	if (tq.flush)
		event_free(tq.flush);
	tq.tick = tq.flush = NULL;
	free(tq.sent);
	tq.sent = NULL;
	tq.buckets = 0;
}
