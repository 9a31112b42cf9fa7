/*
 * proc.logs: the recent lines of a target's processes, oldest first, and
 * with follow:true a stream (stream.h) of each new line.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "proc_cmd.h"
#include "stream.h"

#define LOGS_LINES_MAX 100000

/*
 * Log followers.
 */

struct follower {
	struct stream stream;
	char *target;
};

static struct stream_set followers = STREAM_SET_INITIALIZER(followers);

static json_t *line_record(const struct proc *p, const struct logline *l)
{
	return json_pack("{s:s, s:s, s:s%, s:f}", "name", p->name, "stream",
			 l->stream == STREAM_STDERR ? "stderr" : "stdout", "line", l->text,
			 (size_t)l->len, "ts", l->ts);
}

void proc_logs_notify(struct proc *p, const struct logline *l)
{
	struct stream *st, *next;
	json_t *rec = NULL;

	for (st = stream_first(&followers); st; st = next) {
		struct follower *f = STREAM_OWNER(st, struct follower, stream);
		next = stream_next(st);
		if (!target_matches(f->target, p) ||
		    request_access(st->r, proc_owner(p)) != ACCESS_OK) /* "*" and private */
			continue;
		if (!rec && !(rec = line_record(p, l)))
			return;
		stream_send(st, rec); /* a slow reader is dropped (and its stream ends) */
	}
	json_decref(rec);
}

static void follower_closed(struct stream *st)
{
	struct follower *f = STREAM_OWNER(st, struct follower, stream);

	free(f->target);
	free(f);
}

struct linesel {
	const struct proc *p;
	const struct logline *l;
	size_t seq;
};

static int linesel_cmp(const void *a, const void *b)
{
	const struct linesel *x = a, *y = b;

	if (x->l->ts != y->l->ts)
		return x->l->ts < y->l->ts ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The last n lines of t's processes, oldest first. */
static json_t *recent_lines(struct target *t, size_t n)
{
	struct linesel *sel;
	size_t total = 0, k = 0;
	json_t *a = json_array();

	for (size_t i = 0; i < t->n; i++)
		total += t->v[i]->ring.n < n ? t->v[i]->ring.n : n;
	if (total == 0 || !(sel = calloc(total, sizeof(*sel))))
		return a;
	for (size_t i = 0; i < t->n; i++) {
		const struct logring *ring = &t->v[i]->ring;
		unsigned from = ring->n > n ? ring->n - (unsigned)n : 0;
		for (unsigned j = from; j < ring->n; j++, k++) {
			sel[k].p = t->v[i];
			sel[k].l = logring_at(ring, j);
			sel[k].seq = k;
		}
	}
	if (t->n > 1)
		qsort(sel, k, sizeof(*sel), linesel_cmp);
	for (size_t i = k > n ? k - n : 0; i < k; i++)
		json_array_append_new(a, line_record(sel[i].p, sel[i].l));
	free(sel);
	return a;
}

enum cmd_ret cmd_proc_logs(struct request *r)
{
	const char *name;
	json_int_t lines = 100;
	int follow = 0;
	struct target t;
	struct follower *f;
	char why[200];
	json_t *resp;

	if (request_unpack(r, "{s:s, s?I, s?b}", "target", &name, "lines", &lines, "follow",
			   &follow) < 0)
		return CMD_DONE;
	if (lines < 0 || lines > LOGS_LINES_MAX) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.logs: lines must be 0..%d",
			      LOGS_LINES_MAX);
		return CMD_DONE;
	}
	if (target_resolve(r, name, &t) < 0)
		return CMD_DONE;
	if (!follow) {
		request_ok(r, recent_lines(&t, (size_t)lines));
		free(t.v);
		return CMD_DONE;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->target = strdup(name))) {
		free(f);
		free(t.v);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	/* One count of streams with events.subscribe (max_subscribers). */
	if (stream_open(&f->stream, r, &followers, follower_closed, why, sizeof(why)) < 0) {
		free(f->target);
		free(f);
		free(t.v);
		request_error(r, MPSUP_E_LIMIT, "too many streams: %s", why);
		return CMD_DONE;
	}
	resp = mpsup_response_ok(r->id, recent_lines(&t, (size_t)lines));
	free(t.v);
	stream_send(&f->stream, resp);
	json_decref(resp);
	return CMD_STREAM;
}
