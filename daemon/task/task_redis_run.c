/*
 * The redis task queue, running side: entries read from the pool's stream
 * (or claimed from a lost host) run here as local tasks; their answers are
 * stored for their senders and the entries acknowledged in one
 * transaction (task_redis.c says how).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "log.h"
#include "proc.h"
#include "task_redis_int.h"

static void rentry_put(struct rentry *re);
static int ack_add(struct task_redis *rq, const char *entry, const char *origin, const char *text);

void ack_send(struct task_redis *rq, const struct batch *b)
{
	int n = b->n / 3, k;
	const char **argv = calloc((size_t)n + 3, sizeof(*argv));
	size_t *lens = calloc((size_t)n + 3, sizeof(*lens));
	bool *done = calloc((size_t)n, 1);
	redisAsyncContext *ac = tq_ac(rq);
	char key[300];

	if (!argv || !lens || !done || !ac)
		goto out;
	redisAsyncCommand(ac, NULL, NULL, "MULTI");
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
		redisAsyncCommandArgv(ac, NULL, NULL, k, argv, lens);
		redisAsyncCommand(ac, NULL, NULL, "EXPIRE %s " RESULTS_TTL, key);
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
	redisAsyncCommandArgv(ac, NULL, NULL, n + 3, argv, lens);
	/* the delivery counts of claimed entries */
	argv[1] = "HDEL";
	argv[2] = rq->tries;
	lens[1] = 4;
	lens[2] = strlen(rq->tries);
	redisAsyncCommandArgv(ac, NULL, NULL, n + 2, argv + 1, lens + 1);
	redisAsyncCommand(ac, NULL, NULL, "EXEC");
out:
	free(argv);
	free(lens);
	free(done);
}

unsigned rq_room(const struct task_redis *rq, bool reads)
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
	if ((!n || b.oom || ack_add(rq, eid, origin, b.s) < 0) && tq_ac(rq))
		redisAsyncCommand(tq_ac(rq), NULL, NULL, "XACK %s g %s", rq->stream, eid);
	free(b.s);
}

void rentry_add(struct task_redis *rq, const redisReply *eid, const char *origin,
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
		redis_nodes_redirected(&tq.nodes, rp->str, rp->len); /* a MOVED: the new map */
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

void rq_read(struct task_redis *rq)
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
