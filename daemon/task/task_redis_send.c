/*
 * The redis task queue, sending side: the tasks of this host's clients go
 * to the pool's stream a batch per entry, and their answers come back
 * through this host's answer list (task_redis.c says how).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "task_redis_int.h"

static void push_fail(struct task *t);

struct sent **sent_slot(uint64_t id)
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

struct task *sent_take(uint64_t id)
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

void sent_fail(const struct task_pool *tp, enum mpsup_err code, const char *msg)
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

/* An XADD's reply: an error fails its tasks. */
static void push_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rp = reply;
	struct pushed *pu = priv;
	struct task *t;

	(void)ac;
	if (tq.pushing && --tq.pushing == PUSH_WINDOW / 2)
		flush_soon(); /* room: send what waits */
	if (rp && rp->type == REDIS_REPLY_ERROR)
		redis_nodes_redirected(&tq.nodes, rp->str, rp->len); /* a MOVED: the new map */
	for (unsigned k = 0; rp && rp->type == REDIS_REPLY_ERROR && k < pu->n; k++)
		if ((t = sent_take(pu->ids[k])) && t->state == TASK_PENDING)
			task_end(t, NULL, MPSUP_E_UNAVAILABLE, rp->str);
	free(pu);
}

unsigned entry_bound(const struct task_pool *tp)
{
	const struct pool_conf *pc = tp->pl->conf;
	unsigned long n = (unsigned long)pc->processes * pc->task_window;

	return n < 1 ? 1 : n > ENTRY_ITEMS_MAX ? ENTRY_ITEMS_MAX : (unsigned)n;
}

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
	if (!tq_ac(rq) ||
	    redisAsyncCommandArgv(tq_ac(rq), push_reply, pu, 9, argv, lens) != REDIS_OK) {
		free(pu); /* the connection goes: sent_fail() fails them */
		return k;
	}
	tq.pushed += n;
	tq.entries++;
	tq.pushing++;
	return k;
}

void rq_flush(struct task_redis *rq)
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

void flush_fire(evutil_socket_t fd, short what, void *arg)
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
		redis_nodes_redirected(&tq.nodes, rp->str, rp->len);
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

void rq_results(struct task_redis *rq)
{
	if (!tq.up || rq->res_busy)
		return;
	if (!rq->res && !(rq->res = blocking_open(rq)))
		return;
	if (redisAsyncCommand(rq->res, results_reply, NULL,
			      "BLMPOP 0 1 %s LEFT COUNT " RESULTS_BATCH, rq->results) == REDIS_OK)
		rq->res_busy = true;
}
