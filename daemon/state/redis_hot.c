/*
 * The redis state backend: sending calls to their node (RESP
 * written by hand), the script's answers, and the hot paths: the small
 * hot_script for the hot writes and a MULTI of HGETs for the hot reads.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "redis_int.h"

#include "redis_script.h"

static void call_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Write c, n in decimal and CRLF at p (a RESP count or length). */
static char *resp_head(char *p, char c, size_t n)
{
	char digits[24];
	size_t k = 0;

	*p++ = c;
	if (n < 10) { /* the usual count or length: no division loop */
		*p++ = (char)('0' + n);
		*p++ = '\r';
		*p++ = '\n';
		return p;
	}
	do
		digits[k++] = (char)('0' + n % 10);
	while ((n /= 10));
	while (k)
		*p++ = digits[--k];
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

/* Write the command of n arguments v (lengths l) in RESP into rs.fmt
 * (hiredis would format each argument with a printf of its own); its
 * length, 0 when out of memory. */
static size_t resp_format(int n, const char *const *v, const size_t *l)
{
	size_t need = 32;
	char *p;

	for (int i = 0; i < n; i++)
		need += l[i] + 32;
	if (need > rs.fmt_cap) {
		char *b = realloc(rs.fmt, need);

		if (!b)
			return 0;
		rs.fmt = b;
		rs.fmt_cap = need;
	}
	p = resp_head(rs.fmt, '*', (size_t)n);
	for (int i = 0; i < n; i++) {
		p = resp_head(p, '$', l[i]);
		memcpy(p, v[i], l[i]);
		p += l[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	return (size_t)(p - rs.fmt);
}

/* Queue rc's command on its node's connection; REDIS_OK or not. */
static int rc_queue(struct rcall *rc)
{
	size_t len = resp_format(rc->argc, (const char *const *)rc->argv, rc->argvlen);

	redisAsyncContext *ac = rs_ac(rc->argv[A_META], rc->argvlen[A_META]);

	if (!len || !ac)
		return REDIS_ERR;
	return redisAsyncFormattedCommand(ac, call_reply, rc, rs.fmt, len);
}

/* Send rc to its node; false after answering unavailable. */
bool rc_send(struct rcall *rc)
{
	if (rc->ticket_due) {
		if (rc_set_ticket(rc) < 0) {
			rc_error(rc, MPSUP_E_INTERNAL, "out of memory");
			return false;
		}
		rc->ticket_due = false;
	}
	if (rc_queue(rc) == REDIS_OK)
		return true;
	rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: redis cannot be reached; retry later", rc->op);
	return false;
}

/* The script's answer to a call. */
static void call_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply;
	const char *str = rp ? rp->str : NULL;
	size_t len = rp ? rp->len : 0;

	(void)ac;
	if (str && (rp->type == REDIS_REPLY_STRING || rp->type == REDIS_REPLY_ERROR))
		rc_private(rc, &str, &len);
	if (!rp) {
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: lost the connection to redis; retry",
			 rc->op);
	} else if (rp->type == REDIS_REPLY_ERROR && strncmp(rp->str, "NOSCRIPT", 8) == 0 &&
		   strcmp(rc->argv[0], "EVAL") != 0) {
		/* A restarted server forgot the script: send it along. */
		if (rc_set(rc, A_CMD, "EVAL", 4) < 0 ||
		    rc_set(rc, A_SHA, redis_script, strlen(redis_script)) < 0)
			rc_error(rc, MPSUP_E_INTERNAL, "out of memory");
		else if (rc_send(rc))
			return;
	} else if (rp->type == REDIS_REPLY_ERROR && strncmp(str, "wait ", 5) == 0) {
		const char *sp = strrchr(str, ' ');

		rc->soonest = sp && sp > str + 4 ? strtoll(sp + 1, NULL, 10) : -1;
		/* a condition's waiter gave up its lock and waits for a notify */
		if ((rc->cwait = cond_waiting(rc, str, len)))
			rc->soonest = -1;
		rc->ticketed = rc->ticket[0] != '\0';
		if (strcmp(rc->op, "barrier.wait") == 0 &&
		    sscanf(str + 5 + strlen(rc->argv[A_NAME]), " %lld %lld", &rc->bgen,
			   &rc->bidx) != 2)
			rc->bgen = -1;
		if (!rc->gone) {
			block_start(rc);
			return;
		}
	} else if (rp->type == REDIS_REPLY_ERROR && rc->rearmed &&
		   redis_nodes_redirected(&rs.nodes, rp->str, rp->len) == REDIS_REDIRECT_RESET &&
		   rearm_later(rc)) {
		/* armed again before the cluster was whole: at its next up */
		return;
	} else if (rp->type == REDIS_REPLY_ERROR) {
		rc_reply_error(rc, rp->str, rp->len);
	} else if (rc->owned && rp->type == REDIS_REPLY_STRING) {
		bool created = len && str[0] == '\1';
		json_t *v = json_loadb(str + created, len - created, JSON_DECODE_ANY, NULL);

		if (created && !rc->gone)
			rc_changed(rc, "create");
		hold_note(rc, v);
		rc_ok(rc, v);
	} else if (rp->type == REDIS_REPLY_STRING || rp->type == REDIS_REPLY_STATUS) {
		rc_reply_json(rc, str, len);
	} else if (rp->type == REDIS_REPLY_INTEGER) {
		rc_ok(rc, json_integer(rp->integer));
	} else {
		rc_ok(rc, NULL);
	}
	rc_free(rc);
}

/* The client of a call in flight left: its reply is dropped
 * (call_reply frees the call). */
void call_cancel(struct park *p)
{
	PARK_OWNER(p, struct rcall, park)->gone = true;
}

/*
 * The hot writes, on a plain object of their type (not private, not
 * scoped): a short script for each op, given the meta key alone (the data
 * and join keys are the meta key and ':d', ':j', as for the full script's
 * other keys: one slot) and only the parameters the op uses, as bare
 * texts. Redis spends about 1 400 instructions on each key or argument of
 * a script call and 3 000-8 000 on each redis.call; the full script's
 * setup costs tens of thousands. A hot script answers what it can as the
 * full script would, and false for every other case (no such object,
 * another type, an error, a bounded queue, an empty one): then the call
 * goes to the full script, the hot one having changed nothing. hot_send
 * leaves the cases it can tell (a real to add, a pop elsewhere than at an
 * end) to the full script itself.
 */
#define HOT_PLAIN(type)                                            \
	"local h = redis.call('HMGET', KEYS[1], 't', 'o', 'sh')\n" \
	"if h[1] ~= '" type "' or h[2] or h[3] then return false end\n"
/* an unbounded queue: no room list to keep, no putters in line */
#define HOT_UNBOUNDED                                                     \
	"local h = redis.call('HMGET', KEYS[1], 't', 'o', 'sh', 'max')\n" \
	"if h[1] ~= 'queue' or h[2] or h[3] or h[4] ~= '0' then return false end\n"

static const char hot_dict_set[] =
	HOT_PLAIN("dict") "redis.call('HSET', KEYS[1] .. ':d', ARGV[1], ARGV[2])\n"
			  "return 'null'\n";
static const char hot_list_append[] =
	HOT_PLAIN("list") "redis.call('RPUSH', KEYS[1] .. ':d', ARGV[1])\n"
			  "return 'null'\n";
/* ARGV[1] present: at index 0 */
static const char hot_list_pop[] =
	HOT_PLAIN("list") "if ARGV[1] then return redis.call('LPOP', KEYS[1] .. ':d') end\n"
			  "return redis.call('RPOP', KEYS[1] .. ':d')\n";
/* an integer to an integer (ARGV[1] absent: 1): HINCRBY refuses anything
 * else (a value of typecode d always holds a real's text: '.', 'e' or
 * inf); the sum comes back as an integer reply, exact below 2^53, else it
 * is read back as text */
static const char hot_value_add[] =
	HOT_PLAIN("value") "local r = redis.pcall('HINCRBY', KEYS[1], 'v', ARGV[1] or '1')\n"
			   "if type(r) ~= 'number' then return false end\n"
			   "if r > -1e15 and r < 1e15 then return r end\n"
			   "return redis.call('HGET', KEYS[1], 'v')\n";
/* the join list holds its wake-up only while u is 0 (the task_done that
 * ends the last task pushes it, creates clear it): the put that takes u
 * off 0 clears it, the others would find it gone */
static const char hot_queue_put[] = HOT_UNBOUNDED "redis.call('RPUSH', KEYS[1] .. ':d', ARGV[1])\n"
						  "if redis.call('HINCRBY', KEYS[1], 'u', 1) == 1 "
						  "then redis.call('DEL', KEYS[1] .. ':j') end\n"
						  "return 'null'\n";
static const char hot_queue_get[] = HOT_UNBOUNDED "return redis.call('LPOP', KEYS[1] .. ':d')\n";

enum { HOT_DICT_SET, HOT_LIST_APPEND, HOT_LIST_POP, HOT_VALUE_ADD, HOT_QUEUE_PUT, HOT_QUEUE_GET };

/* The hot ops: their script and its SHA1 once loaded. */
static struct hot_op {
	const char *op;
	const char *script;
	char sha[41];
} hot_ops[] = {
	[HOT_DICT_SET] = { "dict.set", hot_dict_set, "" },
	[HOT_LIST_APPEND] = { "list.append", hot_list_append, "" },
	[HOT_LIST_POP] = { "list.pop", hot_list_pop, "" },
	[HOT_VALUE_ADD] = { "value.add", hot_value_add, "" },
	[HOT_QUEUE_PUT] = { "queue.put", hot_queue_put, "" },
	[HOT_QUEUE_GET] = { "queue.get", hot_queue_get, "" },
};

#define N_HOT (sizeof(hot_ops) / sizeof(hot_ops[0]))

/* Load the hot scripts on ctx (at start); a script that does not load
 * leaves its op to the full script. */
void hot_load(redisContext *ctx)
{
	for (size_t i = 0; i < N_HOT; i++) {
		redisReply *rp = redisCommand(ctx, "SCRIPT LOAD %s", hot_ops[i].script);

		hot_ops[i].sha[0] = '\0';
		if (rp && rp->type == REDIS_REPLY_STRING && rp->len == 40)
			memcpy(hot_ops[i].sha, rp->str, 40);
		freeReplyObject(rp);
	}
}

/* Load the hot scripts on ac (a node's new connection). */
void hot_load_async(redisAsyncContext *ac)
{
	for (size_t i = 0; i < N_HOT; i++)
		if (hot_ops[i].sha[0])
			redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", hot_ops[i].script);
}

/* The hot op named op; NULL when it is not one. */
static struct hot_op *hot_find(const char *op)
{
	for (size_t i = 0; i < N_HOT; i++)
		if (strcmp(op, hot_ops[i].op) == 0)
			return &hot_ops[i];
	return NULL;
}

/* The hot script's answer: as the full script's, or false (nil): ask that. */
static void hot_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply;

	if (rp && rp->type == REDIS_REPLY_ERROR && strncmp(rp->str, "NOSCRIPT", 8) == 0) {
		/* a restarted server: load it again for the next calls */
		const struct hot_op *h = hot_find(rc->op);

		if (h)
			redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", h->script);
	} else if (rp && rp->type == REDIS_REPLY_INTEGER) {
		/* value.add's sum */
		char num[24];

		rc_reply_json(rc, num, jsonw_fmt_int(num, rp->integer));
		rc_free(rc);
		return;
	} else if (!rp || rp->type != REDIS_REPLY_NIL) {
		call_reply(ac, reply, priv);
		return;
	}
	if (!rc_send(rc))
		rc_free(rc);
}

/* Parameter i of rc (0: the first), without its '='; false when it is
 * absent. */
static bool hot_param(const struct rcall *rc, int i, const char **v, size_t *l)
{
	int k = A_MODE + 1 + i;

	if (k >= rc->argc || rc->argvlen[k] == 0)
		return false;
	*v = rc->argv[k] + 1;
	*l = rc->argvlen[k] - 1;
	return true;
}

/* Whether the text s (l bytes) is an integer: -?[0-9]+. */
static bool hot_integer(const char *s, size_t l)
{
	size_t i = l && s[0] == '-';

	if (i == l)
		return false;
	for (; i < l; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The parameters hot op h of rc passes to its script, into v, l; how
 * many, or -1 when the full script must take the call (a parameter the
 * hot one does not handle). */
static int hot_args(const struct rcall *rc, int h, const char **v, size_t *l)
{
	switch (h) {
	case HOT_DICT_SET:
		return hot_param(rc, 0, &v[0], &l[0]) && hot_param(rc, 1, &v[1], &l[1]) ? 2 : -1;
	case HOT_LIST_APPEND:
	case HOT_QUEUE_PUT: /* (an unbounded queue: a put's timeout does not matter) */
		return hot_param(rc, 0, &v[0], &l[0]) ? 1 : -1;
	case HOT_LIST_POP:
		if (!hot_param(rc, 0, &v[0], &l[0]) || (l[0] == 2 && memcmp(v[0], "-1", 2) == 0))
			return 0;
		return l[0] == 1 && v[0][0] == '0' ? 1 : -1;
	case HOT_VALUE_ADD:
		if (!hot_param(rc, 0, &v[0], &l[0]) || (l[0] == 1 && v[0][0] == '1'))
			return 0;
		return hot_integer(v[0], l[0]) ? 1 : -1;
	default:
		/* queue.get: an item there needs no timeout */
		return 0;
	}
}

/* Send rc through its op's hot script when it has one: EVALSHA SHA 1
 * META params; false when it has not (or out of memory): send it whole. */
static bool hot_send(struct rcall *rc)
{
	const struct hot_op *h = hot_find(rc->op);
	redisAsyncContext *ac = rs_ac(rc->argv[A_META], rc->argvlen[A_META]);
	/* a cluster checks the keys named: there the data and join keys are
	 * named too (a slot being moved answers ASK, never half an object) */
	int keys = rs.nodes.cluster ? 3 : 1;
	const char *v[8];
	size_t l[8], len;
	int n;

	if (!h || !h->sha[0] || !ac ||
	    (n = hot_args(rc, (int)(h - hot_ops), v + 3 + keys, l + 3 + keys)) < 0)
		return false;
	v[0] = "EVALSHA";
	v[1] = h->sha;
	v[2] = keys == 1 ? "1" : "3";
	l[0] = 7;
	l[1] = 40;
	l[2] = 1;
	for (int k = 0; k < keys; k++) {
		v[3 + k] = rc->argv[A_META + k];
		l[3 + k] = rc->argvlen[A_META + k];
	}
	len = resp_format(3 + keys + n, v, l);
	return len && redisAsyncFormattedCommand(ac, hot_reply, rc, rs.fmt, len) == REDIS_OK;
}

/* The MULTI of a read: [[type, owner, scope], value]. The value of a
 * plain object of the op's type answers; anything else (a missing key, another type, no object)
 * asks the full script, which answers it as before. */
static void read_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply, *t, *v;
	size_t tl;

	if (!rp) {
		call_reply(ac, reply, priv);
		return;
	}
	tl = strchr(rc->op, '.') - rc->op;
	/* [[type, owner, scope], value]: a private or scoped object asks the
	 * full script too (its owner, its scope's lease) */
	if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 2 &&
	    rp->element[0]->type == REDIS_REPLY_ARRAY && rp->element[0]->elements == 3 &&
	    rp->element[0]->element[1]->type == REDIS_REPLY_NIL &&
	    rp->element[0]->element[2]->type == REDIS_REPLY_NIL) {
		t = rp->element[0]->element[0];
		v = rp->element[1];
		if (t->type == REDIS_REPLY_STRING && t->len == tl &&
		    memcmp(t->str, rc->op, tl) == 0 && v->type == REDIS_REPLY_STRING) {
			rc_reply_json(rc, v->str, v->len);
			rc_free(rc);
			return;
		}
	}
	if (!rc_send(rc))
		rc_free(rc);
}

/* dict.get and value.get read with two HGETs in a MULTI, no script (an
 * EVALSHA costs Redis about twice as much); false when rc is not one. */
static bool read_send(struct rcall *rc)
{
	bool dict = strcmp(rc->op, "dict.get") == 0;
	redisAsyncContext *ac;
	const char *v[5];
	size_t l[5], len;

	/* (a default matters only when the key is missing: the full script) */
	if ((!dict && strcmp(rc->op, "value.get") != 0) ||
	    !(ac = rs_ac(rc->argv[A_META], rc->argvlen[A_META])) ||
	    (dict && (rc->argc < A_MODE + 2 || rc->argv[A_MODE + 1][0] != '=')))
		return false;
	v[0] = "HMGET";
	v[1] = rc->argv[A_META];
	v[2] = "t";
	v[3] = "o";
	v[4] = "sh";
	l[0] = 5;
	l[1] = rc->argvlen[A_META];
	l[2] = l[3] = 1;
	l[4] = 2;
	if (redisAsyncFormattedCommand(ac, NULL, NULL, "*1\r\n$5\r\nMULTI\r\n", 15) != REDIS_OK ||
	    !(len = resp_format(5, v, l)) ||
	    redisAsyncFormattedCommand(ac, NULL, NULL, rs.fmt, len) != REDIS_OK)
		return false;
	v[0] = "HGET";
	l[0] = 4;
	v[1] = dict ? rc->argv[A_DATA] : rc->argv[A_META];
	l[1] = dict ? rc->argvlen[A_DATA] : rc->argvlen[A_META];
	v[2] = dict ? rc->argv[A_MODE + 1] + 1 : "v"; /* the key, after its '=' */
	l[2] = dict ? rc->argvlen[A_MODE + 1] - 1 : 1;
	if (!(len = resp_format(3, v, l)) ||
	    redisAsyncFormattedCommand(ac, NULL, NULL, rs.fmt, len) != REDIS_OK ||
	    redisAsyncFormattedCommand(ac, read_reply, rc, "*1\r\n$4\r\nEXEC\r\n", 14) !=
		    REDIS_OK) {
		/* a MULTI left open would swallow the next commands */
		redisAsyncFormattedCommand(ac, NULL, NULL, "*1\r\n$7\r\nDISCARD\r\n", 17);
		return false;
	}
	return true;
}

/* Park r as rc and send it; the answer comes from call_reply. */
enum cmd_ret rc_run(struct request *r, struct rcall *rc)
{
	if (!rs_ac(rc->argv[A_META], rc->argvlen[A_META])) {
		request_error(r, MPSUP_E_UNAVAILABLE, "%s: redis cannot be reached; retry later",
			      rc->op);
		rc_free(rc);
		return CMD_DONE;
	}
	if (park_keep(&rc->park, r, NULL, -1, NULL, call_cancel) < 0) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		rc_free(rc);
		return CMD_DONE;
	}
	if (!read_send(rc) && !hot_send(rc) && !rc_send(rc))
		rc_free(rc);
	return CMD_WAIT;
}
