/*
 * The redis state backend: a call's command (the script's argv: keys, op,
 * name, mode, parameters) and answering its request from the reply.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "jsonw.h"
#include "redis_int.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

/* --- the command of a call ------------------------------------------------- */

/* A block of a call's texts that did not fit in its text_in. */
struct rc_chunk {
	struct rc_chunk *next;
	size_t size, used;
	char text[];
};

void rc_free(struct rcall *rc)
{
	if (rc->scoped)
		scoped_settle(rc->scoped);
	if (rc->ticketed)
		rc_untick(rc);
	while (rc->big) {
		struct rc_chunk *k = rc->big;

		rc->big = k->next;
		free(k);
	}
	if (rc->argv != rc->argv_in) {
		free(rc->argv);
		free(rc->argvlen);
	}
	free(rc->inflight);
	free(rc);
}

/* Room for n bytes of rc's texts, freed with rc; NULL when out of memory. */
static char *rc_text(struct rcall *rc, size_t n)
{
	struct rc_chunk *k = rc->big;
	char *p;

	if (RC_TEXT_IN - rc->text_used >= n) {
		p = rc->text_in + rc->text_used;
		rc->text_used += n;
		return p;
	}
	if (!k || k->size - k->used < n) {
		size_t size = n > 2048 ? n : 2048;

		if (!(k = malloc(sizeof(*k) + size)))
			return NULL;
		k->size = size;
		k->used = 0;
		k->next = rc->big;
		rc->big = k;
	}
	p = k->text + k->used;
	k->used += n;
	return p;
}

/* A copy of len bytes of s after pre when not NUL, NUL-terminated, in rc's
 * texts; NULL when out of memory. */
static char *rc_copy(struct rcall *rc, char pre, const char *s, size_t len)
{
	char *a = rc_text(rc, len + 2);

	if (!a)
		return NULL;
	if (pre)
		a[0] = pre;
	memcpy(a + !!pre, s, len);
	a[len + !!pre] = '\0';
	return a;
}

/* Room for one more argument; -ENOMEM. */
static int rc_grow(struct rcall *rc)
{
	int cap = rc->cap * 2;
	char **v;
	size_t *l;

	if (rc->argc < rc->cap)
		return 0;
	v = malloc(cap * sizeof(*v));
	l = malloc(cap * sizeof(*l));
	if (!v || !l) {
		free(v);
		free(l);
		return -ENOMEM;
	}
	memcpy(v, rc->argv, rc->argc * sizeof(*v));
	memcpy(l, rc->argvlen, rc->argc * sizeof(*l));
	if (rc->argv != rc->argv_in) {
		free(rc->argv);
		free(rc->argvlen);
	}
	rc->argv = v;
	rc->argvlen = l;
	rc->cap = cap;
	return 0;
}

/* Append len bytes of s, after pre when not NUL; -ENOMEM. */
int rc_push(struct rcall *rc, char pre, const char *s, size_t len)
{
	char *a;

	if (rc_grow(rc) < 0 || !(a = rc_copy(rc, pre, s, len)))
		return -ENOMEM;
	rc->argv[rc->argc] = a;
	rc->argvlen[rc->argc++] = len + !!pre;
	return 0;
}

/* Replace argument i with a copy of len bytes of s (where it was when it
 * fits: a call that waits again and again does not grow); -ENOMEM. */
int rc_set(struct rcall *rc, int i, const char *s, size_t len)
{
	char *a = len <= rc->argvlen[i] ? rc->argv[i] : rc_copy(rc, 0, s, len);

	if (!a)
		return -ENOMEM;
	if (a == rc->argv[i]) {
		memmove(a, s, len);
		a[len] = '\0';
	}
	rc->argv[i] = a;
	rc->argvlen[i] = len;
	return 0;
}

int rc_pushs(struct rcall *rc, const char *s)
{
	return rc_push(rc, 0, s, strlen(s));
}

/* v's JSON text (keys sorted: equal values are equal texts), after '='
 * when eq. */
int rc_push_json(struct rcall *rc, json_t *v, bool eq)
{
	const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS;
	char small[256];
	size_t n;
	char *a;

	/* the usual item (a printable ASCII string, an integer) as jansson
	 * would write it, without its dump's cost */
	if (json_is_string(v) && json_string_length(v) < sizeof(small) - 3 &&
	    jsonw_plain(json_string_value(v), json_string_length(v))) {
		n = json_string_length(v);
		small[0] = '=';
		small[1] = '"';
		memcpy(small + 2, json_string_value(v), n);
		small[n + 2] = '"';
		return rc_push(rc, 0, small + !eq, n + 2 + eq);
	}
	if (json_is_integer(v)) {
		n = jsonw_fmt_int(small + 1, json_integer_value(v));
		small[0] = '=';
		return rc_push(rc, 0, small + !eq, n + eq);
	}
	if ((n = json_dumpb(v, small + 1, sizeof(small) - 1, flags)) == 0)
		return -ENOMEM;
	if (n < sizeof(small) - 1) {
		/* the usual item: written once, copied once */
		small[0] = '=';
		return rc_push(rc, 0, small + !eq, n + eq);
	}
	if (rc_grow(rc) < 0 || !(a = rc_text(rc, n + 2)))
		return -ENOMEM;
	a[0] = '=';
	if (json_dumpb(v, a + 1, n, flags) != n)
		return -ENOMEM;
	a[n + 1] = '\0';
	rc->argv[rc->argc] = a + !eq;
	rc->argvlen[rc->argc++] = n + eq;
	return 0;
}

/* Append the len bytes at *p (in rc's texts, NUL-terminated) as an
 * argument of rc's head; *p moves past them. */
static void rc_head(struct rcall *rc, char **p, size_t len)
{
	rc->argv[rc->argc] = *p;
	rc->argvlen[rc->argc++] = len;
	(*p)[len] = '\0';
	*p += len + 1;
}

/* Write len bytes of s at *p as an argument of rc's head. */
static void rc_head_copy(struct rcall *rc, char **p, const char *s, size_t len)
{
	memcpy(*p, s, len);
	rc_head(rc, p, len);
}

/* EVALSHA sha 4 KEYS op name mode: the head of every script call. */
redisAsyncContext *rs_name_ac(const char *name)
{
	char key[sizeof(rs.prefix) + OBJ_NAME_MAX + 3];
	int n = snprintf(key, sizeof(key), "%s{%s}", rs.prefix, name);

	return rs_ac(key, n < 0 ? 0 : (size_t)n < sizeof(key) ? (size_t)n : sizeof(key) - 1);
}

struct rcall *rc_new(const char *op, const char *name, bool existing)
{
	static const char suffix[][3] = { "", ":d", ":j", ":s" };
	size_t plen = strlen(rs.prefix), nlen = strlen(name), olen = strlen(op);
	struct rcall *rc = calloc(1, sizeof(*rc));
	size_t klen;
	char *p;

	if (!rc)
		return NULL;
	rc->argv = rc->argv_in;
	rc->argvlen = rc->argvlen_in;
	rc->cap = RC_ARGV_IN;
	rc->op = op;
	rc->timeout = -1;
	rc->client_id = -1;
	rc->soonest = -1;
	rc->bgen = -1;
	nlen = nlen > OBJ_NAME_MAX ? OBJ_NAME_MAX : nlen;
	klen = plen + nlen + 2;
	/* the head's ten arguments in one block, each NUL-terminated */
	if (!(p = rc_text(rc, 8 + 41 + 2 + 4 * (klen + 3) + olen + 1 + nlen + 1 + 2))) {
		rc_free(rc);
		return NULL;
	}
	rc_head_copy(rc, &p, "EVALSHA", 7);
	rc_head_copy(rc, &p, rs.sha, 40);
	rc_head_copy(rc, &p, "4", 1);
	/* PREFIX{name} and its suffixes (names are checked: they fit) */
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		size_t slen = strlen(suffix[i]);

		memcpy(p, rs.prefix, plen);
		p[plen] = '{';
		memcpy(p + plen + 1, name, nlen);
		p[plen + 1 + nlen] = '}';
		memcpy(p + klen, suffix[i], slen);
		rc_head(rc, &p, klen + slen);
	}
	rc_head_copy(rc, &p, op, olen);
	rc_head_copy(rc, &p, name, nlen);
	rc_head_copy(rc, &p, existing ? "e" : "c", 1);
	return rc;
}

/* Replace rc's mode argument with a copy of mode; -ENOMEM. */
static int rc_set_mode(struct rcall *rc, const char *mode)
{
	return rc_set(rc, A_MODE, mode, strlen(mode));
}

/* The caller of rc is c: unless it is an admin (or the daemon itself),
 * its uid follows the mode, for the script's check of private objects. */
int rc_set_caller(struct rcall *rc, const struct conn *c)
{
	char buf[32];

	if (!c || c->role >= ROLE_ADMIN)
		return 0;
	snprintf(buf, sizeof(buf), "%s%u", rc->argv[A_MODE], (unsigned)c->uid);
	return rc_set_mode(rc, buf);
}

/* A put or an acquire waits in line when it must (the script's turn()):
 * give it a ticket, sent after the mode with the lease that keeps it. */
int rc_set_ticket(struct rcall *rc)
{
	char buf[160];

	snprintf(rc->ticket, sizeof(rc->ticket), "%s:%llu", rs.host_id, ++rs.next_wait);
	snprintf(buf, sizeof(buf), "%s/%s/%lld", rc->argv[A_MODE], rc->ticket,
		 (long long)(rs.lease * 1000));
	return rc_set_mode(rc, buf);
}

/* --- answering ---------------------------------------------------------------- */

/* The request of rc, taken from its park; NULL when the client left. */
static struct request *rc_take(struct rcall *rc)
{
	if (rc->gone || !park_kept(&rc->park))
		return NULL;
	return park_take(&rc->park);
}

void rc_error(struct rcall *rc, enum mpsup_err code, const char *fmt, ...)
{
	struct request *r = rc_take(rc);
	char msg[512];
	va_list ap;

	if (!r)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	request_error(r, code, "%s", msg);
}

/* Publish object.changed for rc's object (as obj_changed does locally:
 * this host's subscribers hear of this host's ops). */
void rc_changed(struct rcall *rc, const char *op)
{
	if (!rc->tname || !events_wanted(TOPIC_OBJECT))
		return;
	/* a private object's events reach its owner's uid and admins only */
	events_publish_visible(TOPIC_OBJECT, rc->priv ? events_visible_access : NULL, &rc->owner,
			       json_pack("{s:s, s:s, s:s, s:s}", "event", "object.changed", "name",
					 rc->argv[A_NAME], "type", rc->tname, "op", op));
}

/* A reply of a private object starts with \2 UID \2: note the owner and
 * step over it. */
void rc_private(struct rcall *rc, const char **str, size_t *len)
{
	const char *end;

	if (!*len || (*str)[0] != '\2' || !(end = memchr(*str + 1, '\2', *len - 1)))
		return;
	rc->priv = true;
	rc->owner.private = true;
	rc->owner.set = (*str)[1] != '-';
	rc->owner.uid = (uid_t)strtoul(*str + 1, NULL, 10);
	*len -= (size_t)(end + 1 - *str);
	*str = end + 1;
}

void rc_ok(struct rcall *rc, json_t *result)
{
	struct request *r = rc_take(rc);

	if (rc->scoped && json_is_true(json_object_get(result, "created")))
		rc->scoped->live = true;
	/* a put that went on, an acquire that got it: out of line already */
	if (rc->ticketed && (!rc->owned || json_is_true(json_object_get(result, "acquired")) ||
			     json_object_get(result, "notified")))
		rc->ticketed = false;
	if (strcmp(rc->op, "obj.delete") == 0)
		scoped_forget(rc->argv[A_NAME]);
	if (!r) {
		json_decref(result);
		return;
	}
	if ((rc->flags & CMD_MUTATES) &&
	    (strcmp(rc->op, "obj.create") != 0 || json_is_true(json_object_get(result, "created"))))
		rc_changed(rc, strchr(rc->op, '.') + 1);
	request_ok(r, result);
}

/* Answer an error reply of the script: "code message". */
void rc_reply_error(struct rcall *rc, const char *str, size_t len)
{
	const char *sp = memchr(str, ' ', len);
	char code[32];
	int e = -1;

	if (redis_nodes_redirected(&rs.nodes, str, len)) {
		/* a cluster's slot moves (or the cluster is down): it did not run */
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: redis: %.*s; retry", rc->op, (int)len, str);
		return;
	}
	if (sp && (size_t)(sp - str) < sizeof(code)) {
		memcpy(code, str, sp - str);
		code[sp - str] = '\0';
		e = mpsup_err_from_name(code);
	}
	if (e < 0 || e == MPSUP_OK)
		rc_error(rc, MPSUP_E_INTERNAL, "%s: redis: %.*s", rc->op, (int)len, str);
	else
		rc_error(rc, e, "%.*s", (int)(len - (sp + 1 - str)), sp + 1);
}

/* A reply text that is JSON as it is and answers unchanged: null, true,
 * false, a small integer, or a string of printable ASCII without escapes
 * (the usual item: anything else is read and written again by jansson). */
static bool reply_plain(const char *s, size_t len)
{
	size_t i = len && s[0] == '-';

	if ((len == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "true", 4) == 0)) ||
	    (len == 5 && memcmp(s, "false", 5) == 0))
		return true;
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
		return jsonw_plain(s + 1, len - 2);
	/* -?(0|[1-9][0-9]*), at most 18 digits: in jansson's range */
	if (i == len || len - i > 18 || (s[i] == '0' && len - i > 1))
		return false;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Answer rc with the JSON text of a plain reply, as it is. */
static void rc_ok_plain(struct rcall *rc, const char *str, size_t len)
{
	struct request *r;
	struct jsonw w;

	if ((rc->flags & CMD_MUTATES) && !rc->gone && park_kept(&rc->park))
		rc_changed(rc, strchr(rc->op, '.') + 1);
	if (!(r = rc_take(rc)))
		return;
	jsonw_init(&w);
	jsonw_raw(&w, str, len);
	request_ok_text(r, &w);
}

/* Answer a JSON text reply (after \1 when the op created its object). */
void rc_reply_json(struct rcall *rc, const char *str, size_t len)
{
	json_error_t jerr;
	json_t *v;

	if (len && str[0] == '\1') {
		if (!rc->gone)
			rc_changed(rc, "create");
		str++;
		len--;
	}
	/* as it is: a plain answer of an op that needs no note of it (obj.*
	 * ops and waits in line go through rc_ok) */
	if (strncmp(rc->op, "obj.", 4) != 0 && !rc->ticketed && !rc->scoped &&
	    reply_plain(str, len)) {
		rc_ok_plain(rc, str, len);
		return;
	}
	v = json_loadb(str, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

	if (!v && !(len == 4 && memcmp(str, "null", 4) == 0))
		rc_error(rc, MPSUP_E_INTERNAL, "%s: unreadable reply from redis: %s", rc->op,
			 jerr.text);
	else
		rc_ok(rc, v);
}

/* --- ownership ------------------------------------------------------------------- */
