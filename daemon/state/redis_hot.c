/*
 * The redis state backend: sending calls on the main connection (RESP
 * written by hand), the script's answers, and the hot paths: the small
 * hot_script for the hot writes and a MULTI of HGETs for the hot reads.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"

#include "redis_script.h"

static void call_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Write c, n in decimal and CRLF at p (a RESP count or length). */
static char *resp_head(char *p, char c, size_t n)
{
	char digits[24];
	size_t k = 0;

	*p++ = c;
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

/* Queue rc's command on the main connection; REDIS_OK or not. */
static int rc_queue(struct rcall *rc)
{
	size_t len = resp_format(rc->argc, (const char *const *)rc->argv, rc->argvlen);

	if (!len)
		return REDIS_ERR;
	return redisAsyncFormattedCommand(rs.ac, call_reply, rc, rs.fmt, len);
}

/* Send rc on the main connection; false after answering unavailable. */
bool rc_send(struct rcall *rc)
{
	if (rs.ac && rc_queue(rc) == REDIS_OK)
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
		free(rc->argv[0]);
		free(rc->argv[1]);
		rc->argv[0] = strdup("EVAL");
		rc->argv[1] = strdup(redis_script);
		rc->argvlen[0] = 4;
		rc->argvlen[1] = strlen(redis_script);
		if (rc->argv[0] && rc->argv[1] && rc_send(rc))
			return;
		if (!rc->argv[0] || !rc->argv[1])
			rc_error(rc, MPSUP_E_INTERNAL, "out of memory");
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

/* The client of a call on the main connection left: its reply is dropped
 * (call_reply frees the call). */
void call_cancel(struct park *p)
{
	PARK_OWNER(p, struct rcall, park)->gone = true;
}

/*
 * The hot writes, on a plain object of their type (not private, not
 * scoped): a script of their own with the
 * meta and data keys and the op's parameters only (each argument of a
 * script call costs Redis about 1 400 instructions, the full script's
 * setup tens of thousands). It answers what it can as the full script
 * would, and false for every other case (no such object, another type, an
 * error, a real to add, a bounded queue, an empty one): then the call goes to the
 * full script, the hot one having changed nothing.
 */
const char hot_script[] =
	"local m, d, op = KEYS[1], KEYS[2], ARGV[1]\n"
	"local a1, a2 = ARGV[2] or '', ARGV[3] or ''\n"
	/* a private or scoped object: the full script checks its owner and
	 * its scope's lease */
	"local h = redis.call('HMGET', m, 't', 'o', 'sh')\n"
	"local t = h[1]\n"
	"if not t or h[2] or h[3] or string.find(op, t .. '.', 1, true) ~= 1 then return false "
	"end\n"
	"if op == 'dict.set' then\n"
	"  if a1 == '' or a2 == '' then return false end\n"
	"  redis.call('HSET', d, string.sub(a1, 2), string.sub(a2, 2))\n"
	"  return 'null'\n"
	"elseif op == 'list.append' then\n"
	"  if a1 == '' then return false end\n"
	"  redis.call('RPUSH', d, string.sub(a1, 2))\n"
	"  return 'null'\n"
	"elseif op == 'list.pop' then\n"
	"  local v = false\n"
	"  if a1 == '' or a1 == '=-1' then v = redis.call('RPOP', d)\n"
	"  elseif a1 == '=0' then v = redis.call('LPOP', d) end\n"
	"  return v\n"
	"elseif op == 'value.add' then\n"
	/* an integer to an integer: HINCRBY refuses anything else (a value of
	 * typecode d always holds a real's text: '.', 'e' or inf); the sum
	 * comes back as a double, exact below 2^53, else it is read back */
	"  local by = '1'\n"
	"  if a1 ~= '' then by = string.sub(a1, 2) end\n"
	"  if not string.find(by, '^%-?%d+$') then return false end\n"
	"  local r = redis.pcall('HINCRBY', m, 'v', by)\n"
	"  if type(r) ~= 'number' then return false end\n"
	"  if r > -1e15 and r < 1e15 then return string.format('%d', r) end\n"
	"  return redis.call('HGET', m, 'v')\n"
	"elseif (op == 'queue.put' or op == 'queue.get') and redis.call('HGET', m, 'max') == '0' "
	"then\n"
	/* an unbounded queue: no room list to keep */
	"  if op == 'queue.get' then return redis.call('LPOP', d) end\n"
	"  if a1 == '' then return false end\n"
	"  redis.call('RPUSH', d, string.sub(a1, 2))\n"
	"  redis.call('HINCRBY', m, 'u', 1)\n"
	"  redis.call('DEL', KEYS[3])\n"
	"  return 'null'\n"
	"end\n"
	"return false\n";

static const char *const hot_ops[] = { "dict.set",  "list.append", "list.pop",
				       "value.add", "queue.put",   "queue.get" };

/* The hot script's answer: as the full script's, or false (nil): ask that. */
static void hot_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply;

	if (rp && rp->type == REDIS_REPLY_ERROR && strncmp(rp->str, "NOSCRIPT", 8) == 0) {
		/* a restarted server: load it again for the next calls */
		redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", hot_script);
	} else if (!rp || rp->type != REDIS_REPLY_NIL) {
		call_reply(ac, reply, priv);
		return;
	}
	if (!rc_send(rc))
		rc_free(rc);
}

/* Send rc through the hot script when its op is a hot one; false when it
 * is not (or out of memory): send it whole. */
static bool hot_send(struct rcall *rc)
{
	int nparams = rc->argc - (A_MODE + 1);
	const char *v[9];
	size_t l[9], len;
	size_t i;

	for (i = 0; i < sizeof(hot_ops) / sizeof(hot_ops[0]); i++)
		if (strcmp(rc->op, hot_ops[i]) == 0)
			break;
	if (i == sizeof(hot_ops) / sizeof(hot_ops[0]) || nparams > 2 || !rs.hot_sha[0] || !rs.ac)
		return false;
	v[0] = "EVALSHA";
	v[1] = rs.hot_sha;
	v[2] = "3";
	v[3] = rc->argv[A_META];
	v[4] = rc->argv[A_DATA];
	v[5] = rc->argv[A_JOIN];
	v[6] = rc->argv[A_OP];
	l[0] = 7;
	l[1] = 40;
	l[2] = 1;
	l[3] = rc->argvlen[A_META];
	l[4] = rc->argvlen[A_DATA];
	l[5] = rc->argvlen[A_JOIN];
	l[6] = rc->argvlen[A_OP];
	for (int k = 0; k < nparams; k++) {
		v[7 + k] = rc->argv[A_MODE + 1 + k];
		l[7 + k] = rc->argvlen[A_MODE + 1 + k];
	}
	len = resp_format(7 + nparams, v, l);
	return len && redisAsyncFormattedCommand(rs.ac, hot_reply, rc, rs.fmt, len) == REDIS_OK;
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
	const char *v[5];
	size_t l[5], len;

	/* (a default matters only when the key is missing: the full script) */
	if ((!dict && strcmp(rc->op, "value.get") != 0) || !rs.ac ||
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
	if (redisAsyncFormattedCommand(rs.ac, NULL, NULL, "*1\r\n$5\r\nMULTI\r\n", 15) !=
		    REDIS_OK ||
	    !(len = resp_format(5, v, l)) ||
	    redisAsyncFormattedCommand(rs.ac, NULL, NULL, rs.fmt, len) != REDIS_OK)
		return false;
	v[0] = "HGET";
	l[0] = 4;
	v[1] = dict ? rc->argv[A_DATA] : rc->argv[A_META];
	l[1] = dict ? rc->argvlen[A_DATA] : rc->argvlen[A_META];
	v[2] = dict ? rc->argv[A_MODE + 1] + 1 : "v"; /* the key, after its '=' */
	l[2] = dict ? rc->argvlen[A_MODE + 1] - 1 : 1;
	if (!(len = resp_format(3, v, l)) ||
	    redisAsyncFormattedCommand(rs.ac, NULL, NULL, rs.fmt, len) != REDIS_OK ||
	    redisAsyncFormattedCommand(rs.ac, read_reply, rc, "*1\r\n$4\r\nEXEC\r\n", 14) !=
		    REDIS_OK) {
		/* a MULTI left open would swallow the next commands */
		redisAsyncFormattedCommand(rs.ac, NULL, NULL, "*1\r\n$7\r\nDISCARD\r\n", 17);
		return false;
	}
	return true;
}

/* Park r as rc and send it; the answer comes from call_reply. */
enum cmd_ret rc_run(struct request *r, struct rcall *rc)
{
	if (!rs.ac) {
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
