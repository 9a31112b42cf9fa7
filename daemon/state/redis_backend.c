/*
 * The redis state backend (state_backend = redis): every shared object lives
 * in a Redis server that several mpsupd share, under redis_prefix, each in
 * one hash slot ({name} hash tags: PREFIX{name} the meta hash, PREFIX{name}:d
 * its data, PREFIX{name}:j a queue's join wake-up list).
 *
 * Every op is one EVALSHA of one script (redis_script.lua; EVAL again when
 * the server answers NOSCRIPT, after a restart) on one asynchronous hiredis
 * connection: the event loop never waits for Redis. The hot ops (dict.set,
 * list.append, value.add...) try a small script first (hot_script). The request is parked
 * (park.c) until the reply comes; a client that leaves first just has its
 * answer dropped.
 *
 * Blocking waits (queue.get, queue.join, event.wait) run on a connection of
 * their own (at most max_waiters at once) with BLMOVE: a getter moves the
 * item into a list of its own (PREFIX{name}:f:HOST:N) and takes it from
 * there once answered; a getter that leaves is unblocked (CLIENT UNBLOCK)
 * and whatever it had moved goes back to the head of the queue. Joiners and
 * event waiters rotate a one-element list (BLMOVE L L), which wakes all of
 * them. Redis serves blocked clients in the order they blocked. A delete
 * leaves a tombstone where waiters block: they answer not_found.
 *
 * A private object keeps its owner's uid in Redis (checked by the script
 * against the caller's, sent after the mode); a scoped one lives while the
 * host that watches its process renews its lease (struct scoped).
 *
 * While Redis cannot be reached every state command answers `unavailable`
 * at once; the connection is retried with a backoff (0.1 s doubling to 5 s).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "conf.h"
#include "container.h"
#include "daemon.h"
#include "events.h"
#include "jsonw.h"
#include "log.h"
#include "obj.h"
#include "obj_int.h"
#include "park.h"
#include "redis_link.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

#include "redis_script.h"

/* Where things are in the argv of a script call. */
enum { A_CMD, A_SHA, A_NKEYS, A_META, A_DATA, A_JOIN, A_ROOM, A_OP, A_NAME, A_MODE };

enum wait_kind { WAIT_NONE, WAIT_TAKE, WAIT_ROTATE };

/* One op in flight: its parked request, the command (kept for the NOSCRIPT
 * retry) and, while it blocks, its own connection. */
struct rcall {
	struct park park;
	const char *op;    /* "queue.get", "obj.create"... */
	const char *tname; /* a TYPE.OP's type (object.changed events) */
	unsigned flags;    /* its flags (CMD_MUTATES: object.changed) */
	bool gone;         /* the client left: nothing to answer */
	char **argv;
	size_t *argvlen;
	int argc, cap;
	double timeout;       /* < 0: none given (forever) */
	double deadline;      /* a put or acquire waiting again: when it gives up (0: never) */
	long long soonest;    /* an acquire: ms until another host's lease may end, or -1 */
	long long bgen, bidx; /* a barrier waiter: its generation and index */
	struct conn *conn;    /* an owned op's client (valid while !gone) */
	const struct obj_type *owned; /* lock, rlock or semaphore: ownership is tracked */
	/* a blocking wait */
	enum wait_kind wait;
	redisAsyncContext *bc;
	long long client_id; /* bc's, -1 until known */
	char *inflight;      /* WAIT_TAKE: where the item is moved */
	LIST_ENTRY(rcall) blocked;
	struct scoped *scoped; /* obj.create with scope "process" */
	char ticket[64];       /* a put or acquire: its place in line (HOST:N) */
	bool ticketed;         /* it waited in line and has not gone on yet */
	bool priv;             /* the object is private, owned by owner */
	struct owner owner;
};

/* What a blocked waiter finds when its object is deleted (remove() in the
 * script): not a JSON text, so never an item. */
static const char tomb[] = "\0mpsup-deleted";

static struct {
	redisAsyncContext *ac; /* the main connection; NULL while down */
	bool up;
	bool stopping;
	char sha[41];
	char hot_sha[41]; /* hot_script's */
	char host_id[33]; /* new at each start: this daemon's owner id */
	struct event *retry;
	double backoff;
	unsigned long reconnects, lost, blocking;
	unsigned long long next_wait;
	LIST_HEAD(, rcall) blocked;
	LIST_HEAD(, hold) holds;
	LIST_HEAD(, rcall) rearm; /* waits cut by an outage, until Redis is back */
	LIST_HEAD(, scoped) scoped;
	unsigned n_scoped;
	unsigned long long next_scope;
	struct event *renew;
	/* the config's, as at start (state_backend is read at start only) */
	char address[256], prefix[80];
	double lease;
	unsigned long renewals;
	char *fmt; /* where a command is written in RESP (rc_queue) */
	size_t fmt_cap;
} rs;

/*
 * What this host's clients hold (lock, rlock, semaphore): the lease key of
 * each object held is renewed every lease/3, and a client that goes drops
 * what it held at once (TYPE.drop: the next owner is told abandoned).
 */
struct hold {
	struct conn *conn;
	const struct obj_type *type;
	unsigned count;
	LIST_ENTRY(hold) entry;
	char name[OBJ_NAME_MAX + 1];
};

/*
 * An object this host made with scope "process": while the process lives
 * the host renews PREFIX{name}:l:HOST (as for holds); when it exits the
 * host deletes the object (obj.unscope, only if it still carries mark).
 * If the host dies, the lease runs out and the next command that touches
 * the name deletes it (the script's check of sh).
 */
struct scoped {
	struct scope_link link;
	bool live;  /* created: renewed until its process exits */
	bool ended; /* its process exited while the create was in flight */
	LIST_ENTRY(scoped) entry;
	char mark[64]; /* HOST:N, the object's sh */
	char name[OBJ_NAME_MAX + 1];
};

static void main_connect(void);
static void scoped_settle(struct scoped *sc);
static void scoped_forget(const char *name);

/* --- the command of a call ------------------------------------------------- */

static void rc_untick(struct rcall *rc);

static void rc_free(struct rcall *rc)
{
	if (rc->scoped)
		scoped_settle(rc->scoped);
	if (rc->ticketed)
		rc_untick(rc);
	for (int i = 0; i < rc->argc; i++)
		free(rc->argv[i]);
	free(rc->argv);
	free(rc->argvlen);
	free(rc->inflight);
	free(rc);
}

/* Append len bytes of s, after pre when not NUL; -ENOMEM. */
static int rc_push(struct rcall *rc, char pre, const char *s, size_t len)
{
	char *a;

	if (rc->argc == rc->cap) {
		int cap = rc->cap ? rc->cap * 2 : 16;
		char **v = realloc(rc->argv, cap * sizeof(*v));
		size_t *l;

		if (!v)
			return -ENOMEM;
		rc->argv = v;
		if (!(l = realloc(rc->argvlen, cap * sizeof(*l))))
			return -ENOMEM;
		rc->argvlen = l;
		rc->cap = cap;
	}
	if (!(a = malloc(len + 2)))
		return -ENOMEM;
	if (pre)
		a[0] = pre;
	memcpy(a + !!pre, s, len);
	a[len + !!pre] = '\0';
	rc->argv[rc->argc] = a;
	rc->argvlen[rc->argc++] = len + !!pre;
	return 0;
}

static int rc_pushs(struct rcall *rc, const char *s)
{
	return rc_push(rc, 0, s, strlen(s));
}

/* v's JSON text (keys sorted: equal values are equal texts), after '='
 * when eq. */
static int rc_push_json(struct rcall *rc, json_t *v, bool eq)
{
	char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	int r;

	if (!t)
		return -ENOMEM;
	r = rc_push(rc, eq ? '=' : 0, t, strlen(t));
	free(t);
	return r;
}

/* EVALSHA sha 4 KEYS op name mode: the head of every script call. */
static struct rcall *rc_new(const char *op, const char *name, bool existing)
{
	static const char suffix[][3] = { "", ":d", ":j", ":s" };
	size_t plen = strlen(rs.prefix), nlen = strlen(name);
	struct rcall *rc = calloc(1, sizeof(*rc));
	char key[sizeof(rs.prefix) + OBJ_NAME_MAX + 8];
	int r;

	if (!rc)
		return NULL;
	rc->op = op;
	rc->timeout = -1;
	rc->client_id = -1;
	rc->soonest = -1;
	rc->bgen = -1;
	r = rc_push(rc, 0, "EVALSHA", 7) | rc_push(rc, 0, rs.sha, 40) | rc_push(rc, 0, "4", 1);
	/* PREFIX{name} and its suffixes (names are checked: they fit) */
	nlen = nlen > OBJ_NAME_MAX ? OBJ_NAME_MAX : nlen;
	memcpy(key, rs.prefix, plen);
	key[plen] = '{';
	memcpy(key + plen + 1, name, nlen);
	key[plen + 1 + nlen] = '}';
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		size_t slen = strlen(suffix[i]);

		memcpy(key + plen + nlen + 2, suffix[i], slen);
		r |= rc_push(rc, 0, key, plen + nlen + 2 + slen);
	}
	r |= rc_pushs(rc, op) | rc_push(rc, 0, name, nlen);
	r |= rc_push(rc, 0, existing ? "e" : "c", 1);
	if (r < 0) {
		rc_free(rc);
		return NULL;
	}
	return rc;
}

/* Replace rc's mode argument with a copy of mode; -ENOMEM. */
static int rc_set_mode(struct rcall *rc, const char *mode)
{
	char *a = strdup(mode);

	if (!a)
		return -ENOMEM;
	free(rc->argv[A_MODE]);
	rc->argv[A_MODE] = a;
	rc->argvlen[A_MODE] = strlen(a);
	return 0;
}

/* The caller of rc is c: unless it is an admin (or the daemon itself),
 * its uid follows the mode, for the script's check of private objects. */
static int rc_set_caller(struct rcall *rc, const struct conn *c)
{
	char buf[32];

	if (!c || c->role >= ROLE_ADMIN)
		return 0;
	snprintf(buf, sizeof(buf), "%s%u", rc->argv[A_MODE], (unsigned)c->uid);
	return rc_set_mode(rc, buf);
}

/* A put or an acquire waits in line when it must (the script's turn()):
 * give it a ticket, sent after the mode with the lease that keeps it. */
static int rc_set_ticket(struct rcall *rc)
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

static void rc_error(struct rcall *rc, enum mpsup_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void rc_error(struct rcall *rc, enum mpsup_err code, const char *fmt, ...)
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
static void rc_changed(struct rcall *rc, const char *op)
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
static void rc_private(struct rcall *rc, const char **str, size_t *len)
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

static void rc_ok(struct rcall *rc, json_t *result)
{
	struct request *r = rc_take(rc);

	if (rc->scoped && json_is_true(json_object_get(result, "created")))
		rc->scoped->live = true;
	/* a put that went on, an acquire that got it: out of line already */
	if (rc->ticketed && (!rc->owned || json_is_true(json_object_get(result, "acquired"))))
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
static void rc_reply_error(struct rcall *rc, const char *str, size_t len)
{
	const char *sp = memchr(str, ' ', len);
	char code[32];
	int e = -1;

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
static void rc_reply_json(struct rcall *rc, const char *str, size_t len)
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

static bool rc_send(struct rcall *rc);

/* The owner token, host id and lease of conn for an owned op's script call. */
static int rc_push_owner(struct rcall *rc, uint64_t conn_id)
{
	char buf[96];

	snprintf(buf, sizeof(buf), "=%s:%llu", rs.host_id, (unsigned long long)conn_id);
	if (rc_pushs(rc, buf) < 0)
		return -ENOMEM;
	snprintf(buf, sizeof(buf), "=%s", rs.host_id);
	if (rc_pushs(rc, buf) < 0)
		return -ENOMEM;
	snprintf(buf, sizeof(buf), "=%lld", (long long)(rs.lease * 1000));
	return rc_pushs(rc, buf);
}

/* Give up what conn held of name at once (a client gone). */
static void owned_drop(const struct obj_type *type, const char *name, uint64_t conn_id)
{
	static const char *const drops[] = { "lock.drop", "rlock.drop", "semaphore.drop" };
	const char *op = drops[type == &lock_type ? 0 : type == &rlock_type ? 1 : 2];
	struct rcall *t = rc_new(op, name, true);

	if (!t || rc_push_owner(t, conn_id) < 0) {
		if (t)
			rc_free(t);
		return;
	}
	t->gone = true; /* nobody to answer */
	if (!rc_send(t))
		rc_free(t);
}

static void hold_free(struct hold *h);

static void hold_conn_closed(struct conn *c, void *arg)
{
	struct hold *h = arg;

	owned_drop(h->type, h->name, c->id);
	LIST_REMOVE(h, entry);
	free(h);
}

static struct hold *hold_find(struct conn *c, const char *name)
{
	struct hold *h;

	LIST_FOREACH(h, &rs.holds, entry)
		if (h->conn == c && strcmp(h->name, name) == 0)
			return h;
	return NULL;
}

static void hold_free(struct hold *h)
{
	conn_remove_close_hook(h->conn, hold_conn_closed, h);
	LIST_REMOVE(h, entry);
	free(h);
}

/* An owned op of rc's client succeeded with result: count what it holds. */
static void hold_note(struct rcall *rc, json_t *result)
{
	const char *name = rc->argv[A_NAME];
	bool acquire = strstr(rc->op, ".acquire") != NULL;
	struct hold *h;

	if (acquire && !json_is_true(json_object_get(result, "acquired")))
		return;
	if (rc->gone) { /* granted to a client that left: give it back */
		if (acquire)
			owned_drop(rc->owned, name,
				   (uint64_t)strtoull(strchr(rc->argv[rc->argc - 3], ':') + 1, NULL,
						      10));
		return;
	}
	h = hold_find(rc->conn, name);
	if (!acquire) {
		/* released; an rlock counts its depth, the others their units */
		if (h && --h->count == 0)
			hold_free(h);
		return;
	}
	if (!h) {
		if (!(h = calloc(1, sizeof(*h))))
			return; /* the lease is not renewed: the hold ends after it */
		h->conn = rc->conn;
		h->type = rc->owned;
		snprintf(h->name, sizeof(h->name), "%s", name);
		LIST_INSERT_HEAD(&rs.holds, h, entry);
		conn_add_close_hook(rc->conn, hold_conn_closed, h);
	}
	h->count++;
}

/* Renew the lease of every object this host holds. */
static void renew_fire(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv;
	double every = rs.lease / 3;
	struct hold *h;
	struct scoped *sc;
	struct rcall *rc;

	(void)fd;
	(void)what;
	(void)arg;
	LIST_FOREACH(h, &rs.holds, entry)
		if (rs.ac) {
			redisAsyncCommand(rs.ac, NULL, NULL, "SET %s{%s}:l:%s 1 PX %lld", rs.prefix,
					  h->name, rs.host_id, (long long)(rs.lease * 1000));
			rs.renewals++;
		}
	LIST_FOREACH(rc, &rs.blocked, blocked)
		if (rs.ac && rc->ticketed) {
			redisAsyncCommand(rs.ac, NULL, NULL, "SET %s:t:%s 1 PX %lld",
					  rc->argv[A_META], rc->ticket,
					  (long long)(rs.lease * 1000));
			rs.renewals++;
		}
	LIST_FOREACH(sc, &rs.scoped, entry)
		if (rs.ac && sc->live) {
			redisAsyncCommand(rs.ac, NULL, NULL, "SET %s{%s}:l:%s 1 PX %lld", rs.prefix,
					  sc->name, rs.host_id, (long long)(rs.lease * 1000));
			rs.renewals++;
		}
	tv.tv_sec = (time_t)every;
	tv.tv_usec = (suseconds_t)((every - (double)tv.tv_sec) * 1e6);
	evtimer_add(rs.renew, &tv);
}

/* --- objects of scope "process" ----------------------------------------------------- */

static void scoped_free(struct scoped *sc)
{
	scope_unbind(&sc->link);
	LIST_REMOVE(sc, entry);
	rs.n_scoped--;
	free(sc);
}

/* Send the script's op about object name with one argument, answered to
 * nobody: this host's own bookkeeping (out of memory or Redis away: what
 * it was for ends with a lease, or is done by the next call that finds
 * it). */
static void rc_notice(const char *op, const char *name, const char *arg)
{
	struct rcall *t = rc_new(op, name, true);

	if (!t)
		return;
	t->gone = true; /* nobody to answer */
	if (rc_push(t, '=', arg, strlen(arg)) < 0 || !rc_send(t))
		rc_free(t);
}

/* Delete sc's object in Redis (if it still is the one sc made) and forget it. */
static void scoped_end(struct scoped *sc)
{
	rc_notice("obj.unscope", sc->name, sc->mark);
	scoped_free(sc);
}

/* Its process exited (scope.c): the object goes, or goes once made. */
static void scoped_gone(struct scope_link *l)
{
	struct scoped *sc = CONTAINER_OF(l, struct scoped, link);

	if (sc->live)
		scoped_end(sc);
	else
		sc->ended = true;
}

/* The obj.create of sc was answered (or failed): keep sc if it made the
 * object, unless its process exited meanwhile. */
static void scoped_settle(struct scoped *sc)
{
	if (!sc->live)
		scoped_free(sc);
	else if (sc->ended)
		scoped_end(sc);
}

/* The object called name was deleted through this host: stop renewing it. */
static void scoped_forget(const char *name)
{
	struct scoped *sc, *next;

	for (sc = LIST_FIRST(&rs.scoped); sc; sc = next) {
		next = LIST_NEXT(sc, entry);
		if (sc->live && strcmp(sc->name, name) == 0)
			scoped_free(sc);
	}
}

/* --- blocking waits -------------------------------------------------------------- */

static void call_cancel(struct park *p);

/* rc no longer blocks: out of the list, its connection closing (bc is
 * gone or going when this runs). */
static void block_end(struct rcall *rc)
{
	LIST_REMOVE(rc, blocked);
	rs.blocking--;
	rc->bc = NULL;
	rc->wait = WAIT_NONE;
	rc->park.on_cancel = call_cancel;
}

/* The wait ended without what it waited for (the timeout). */
static void block_timeout_answer(struct rcall *rc)
{
	if (strcmp(rc->op, "event.wait") == 0)
		rc_ok(rc, json_pack("{s:b}", "set", 0));
	else if (strcmp(rc->op, "queue.get") == 0)
		rc_error(rc, MPSUP_E_EMPTY, "%s: empty", rc->argv[A_NAME]);
	else if (strcmp(rc->op, "queue.put") == 0)
		rc_error(rc, MPSUP_E_FULL, "%s: full", rc->argv[A_NAME]);
	else if (rc->owned)
		rc_ok(rc, json_pack("{s:b}", "acquired", 0));
	else
		rc_error(rc, MPSUP_E_TIMEOUT, "%s: unfinished tasks", rc->argv[A_NAME]);
}

/* A blocked getter was answered: the item leaves its own list and the
 * queue's room list follows the length (queue.taken in the script). */
static void block_taken(struct rcall *rc)
{
	rc_notice("queue.taken", rc->argv[A_NAME], rc->inflight);
}

/* A getter took the tombstone of its deleted queue into its own list:
 * back to the queue for the next getter (unless the name was made again). */
static void block_pass_tomb(struct rcall *rc)
{
	rc_notice("queue.gone", rc->argv[A_NAME], rc->inflight);
}

/* rc waited in line and gives up (timeout, client gone, error): its
 * ticket leaves the line and the next in line is served. */
static void rc_untick(struct rcall *rc)
{
	rc->ticketed = false;
	rc_notice("obj.untick", rc->argv[A_NAME], rc->ticket); /* else it ends with its lease */
}

/* What a woken rc does: answer, or (a put that found room) try again. */
static bool block_woken(struct rcall *rc, redisReply *rp)
{
	if (rp->len == sizeof(tomb) - 1 && memcmp(rp->str, tomb, rp->len) == 0) {
		/* the object was deleted: as locally, not_found (a getter
		 * passes the tombstone on to the next getter) */
		if (rc->wait == WAIT_TAKE)
			block_pass_tomb(rc);
		rc_error(rc, MPSUP_E_NOT_FOUND, "%s was deleted", rc->argv[A_NAME]);
		return false;
	}
	if (rc->wait == WAIT_TAKE) {
		if (!rc->gone) {
			rc_reply_json(rc, rp->str, rp->len);
			block_taken(rc);
		}
		return false;
	}
	if (strcmp(rc->op, "barrier.wait") == 0) {
		if (rp->len == 2 && memcmp(rp->str, "ok", 2) == 0)
			rc_ok(rc, json_pack("{s:I}", "index", (json_int_t)rc->bidx));
		else
			rc_error(rc, MPSUP_E_BROKEN, "%s: barrier broken", rc->argv[A_NAME]);
		return false;
	}
	if (strcmp(rc->op, "queue.put") != 0 && !rc->owned) {
		rc_ok(rc, strcmp(rc->op, "event.wait") == 0 ? json_pack("{s:b}", "set", 1) : NULL);
		return false;
	}
	/* room or a release: try again (the script answers wait when others
	 * took it) */
	return !rc->gone && rc_send(rc);
}

/* A client waiting for Redis to come back left. */
static void rearm_cancel(struct park *p)
{
	struct rcall *rc = PARK_OWNER(p, struct rcall, park);

	LIST_REMOVE(rc, blocked);
	rc_free(rc);
}

/* Redis is back: every wait the outage cut goes on (a getter's item that
 * was on its way goes back to the head of its queue first). */
static void rearm_all(void)
{
	while (!LIST_EMPTY(&rs.rearm)) {
		struct rcall *rc = LIST_FIRST(&rs.rearm);

		LIST_REMOVE(rc, blocked);
		rc->park.on_cancel = call_cancel;
		if (rc->inflight && strstr(rc->inflight, "}:f:"))
			redisAsyncCommand(rs.ac, NULL, NULL, "LMOVE %s %s LEFT LEFT", rc->inflight,
					  rc->argv[A_DATA]);
		if (!rc_send(rc))
			rc_free(rc);
	}
}

/* While Redis is away: answer the waits whose time is up. */
static void rearm_expire(void)
{
	struct rcall *rc, *next;

	for (rc = LIST_FIRST(&rs.rearm); rc; rc = next) {
		next = LIST_NEXT(rc, blocked);
		if (rc->deadline && now_mono() >= rc->deadline) {
			LIST_REMOVE(rc, blocked);
			rc->park.on_cancel = call_cancel;
			block_timeout_answer(rc);
			rc_free(rc);
		}
	}
}

/* The BLMOVE of a blocked call answered (or its connection went). */
static void block_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply;
	bool again = false;

	if (rp)
		redisAsyncDisconnect(ac);
	if (!rp && !rc->gone && !rs.stopping && strcmp(rc->op, "barrier.wait") != 0) {
		/* Redis went: wait again once it is back (a barrier waiter
		 * cannot: it would arrive twice) */
		block_end(rc);
		rc->park.on_cancel = rearm_cancel;
		LIST_INSERT_HEAD(&rs.rearm, rc, blocked);
		return;
	}
	if (!rp)
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: lost the connection to redis", rc->op);
	else if (rp->type == REDIS_REPLY_NIL && rc->owned && !rc->gone &&
		 (!rc->deadline || now_mono() < rc->deadline - 0.002)) {
		/* a lease of another host may have ended: try again */
		block_end(rc);
		if (rc_send(rc))
			return;
		rc_free(rc);
		return;
	} else if (rp->type == REDIS_REPLY_NIL && strcmp(rc->op, "barrier.wait") == 0 &&
		   !rc->gone) {
		/* timed out: break the barrier, unless its generation passed */
		char g[24], i[24];

		block_end(rc);
		snprintf(g, sizeof(g), "=%lld", rc->bgen);
		snprintf(i, sizeof(i), "=%lld", rc->bidx);
		free(rc->argv[A_OP]);
		if ((rc->argv[A_OP] = strdup("barrier.break"))) {
			rc->argvlen[A_OP] = strlen(rc->argv[A_OP]);
			if (rc_pushs(rc, g) == 0 && rc_pushs(rc, i) == 0 && rc_send(rc))
				return;
		}
		rc_free(rc);
		return;
	} else if (rp->type == REDIS_REPLY_NIL)
		block_timeout_answer(rc);
	else if (rp->type != REDIS_REPLY_STRING)
		rc_error(rc, MPSUP_E_INTERNAL, "%s: redis: %.*s", rc->op, (int)rp->len,
			 rp->str ? rp->str : "unexpected reply");
	else {
		enum wait_kind kind = rc->wait;

		block_end(rc);
		rc->wait = kind;
		again = block_woken(rc, rp);
		rc->wait = WAIT_NONE;
		if (again)
			return; /* on the main connection again */
		rc_free(rc);
		return;
	}
	block_end(rc);
	rc_free(rc);
}

/* A blocked call's client left: unblock it and give back what it took. */
static void block_unblock(struct rcall *rc)
{
	if (!rs.ac) {
		redisAsyncContext *bc = rc->bc;

		redisAsyncFree(bc); /* block_reply runs and frees rc */
		return;
	}
	redisAsyncCommand(rs.ac, NULL, NULL, "CLIENT UNBLOCK %lld", rc->client_id);
	if (rc->wait == WAIT_TAKE)
		redisAsyncCommand(rs.ac, NULL, NULL, "LMOVE %s %s LEFT LEFT", rc->inflight,
				  rc->argv[A_DATA]);
}

static void block_client_id(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply;

	(void)ac;
	if (rp && rp->type == REDIS_REPLY_INTEGER) {
		rc->client_id = rp->integer;
		if (rc->gone && rs.ac)
			block_unblock(rc);
	}
}

static void block_cancel(struct park *p)
{
	struct rcall *rc = PARK_OWNER(p, struct rcall, park);

	rc->gone = true;
	if (rc->client_id >= 0 || !rs.ac)
		block_unblock(rc);
	/* else block_client_id unblocks it */
}

static redisAsyncContext *connect_new(void)
{
	return redis_link_open(rs.address);
}

/* Redis's timeout for rc's wait: 0 is forever, the smallest a millisecond;
 * a put waiting again for room has what is left of its own. */
static bool block_timeout(struct rcall *rc, char *buf, size_t len)
{
	double t = rc->timeout;

	if (t >= 0) { /* a wait again (retry, re-armed) has what is left */
		if (!rc->deadline)
			rc->deadline = now_mono() + t;
		if ((t = rc->deadline - now_mono()) <= 0)
			return false;
	}
	/* an acquire wakes when another host's lease may have ended */
	if (rc->owned && rc->soonest >= 0 && (t < 0 || t > rc->soonest / 1000.0 + 0.005))
		t = rc->soonest / 1000.0 + 0.005;
	snprintf(buf, len, "%.3f", t < 0 ? 0 : (t < 0.001 ? 0.001 : t));
	return true;
}

/* This host's calls blocked on the object called name (obj.list, max_waiters). */
static unsigned block_count(const char *name)
{
	unsigned n = 0;
	struct rcall *rc;

	LIST_FOREACH(rc, &rs.blocked, blocked)
		n += strcmp(rc->argv[A_NAME], name) == 0;
	return n;
}

/* The script said the call must wait: block on a connection of its own. */
static void block_start(struct rcall *rc)
{
	const char *name = rc->argv[A_NAME];
	char tmo[32], *inflight = NULL;
	const char *src = rc->argv[A_DATA], *dst = src, *to = "RIGHT";

	if (!block_timeout(rc, tmo, sizeof(tmo))) {
		block_timeout_answer(rc);
		rc_free(rc);
		return;
	}
	/* as locally: max_waiters per object (each blocked wait is also a
	 * kept request of its own client, so max_clients bounds them all) */
	if (block_count(name) >= daemon_g.conf->max_waiters) {
		rc_error(rc, MPSUP_E_LIMIT, "%s: too many waiters (max_waiters = %u)", name,
			 daemon_g.conf->max_waiters);
		rc_free(rc);
		return;
	}
	if (strcmp(rc->op, "queue.get") == 0) {
		rc->wait = WAIT_TAKE;
		if (asprintf(&inflight, "%s{%s}:f:%s:%llu", rs.prefix, name, rs.host_id,
			     ++rs.next_wait) < 0)
			inflight = NULL;
		dst = inflight;
		to = "LEFT";
	} else {
		rc->wait = WAIT_ROTATE;
		if (strcmp(rc->op, "queue.join") == 0)
			src = dst = rc->argv[A_JOIN];
		else if (rc->ticket[0]) { /* in line: woken when its turn comes */
			if (asprintf(&inflight, "%s:k:%s", rc->argv[A_META], rc->ticket) < 0)
				inflight = NULL;
			src = dst = inflight;
		} else if (strcmp(rc->op, "queue.put") == 0 || rc->owned)
			src = dst = rc->argv[A_ROOM];
		else if (strcmp(rc->op, "barrier.wait") == 0) {
			if (rc->bgen < 0 ||
			    asprintf(&inflight, "%s:g:%lld", rc->argv[A_META], rc->bgen) < 0) {
				inflight = NULL;
				rc->bgen = -1;
			}
			src = dst = inflight;
		}
	}
	if (((rc->wait == WAIT_TAKE || rc->ticket[0] || strcmp(rc->op, "barrier.wait") == 0) &&
	     !inflight) ||
	    !(rc->bc = connect_new())) {
		free(inflight);
		rc->wait = WAIT_NONE;
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: cannot connect to redis", name);
		rc_free(rc);
		return;
	}
	free(rc->inflight);
	rc->inflight = inflight;
	rc->client_id = -1;
	LIST_INSERT_HEAD(&rs.blocked, rc, blocked);
	rs.blocking++;
	rc->park.on_cancel = block_cancel;
	redisAsyncCommand(rc->bc, block_client_id, rc, "CLIENT ID");
	redisAsyncCommand(rc->bc, block_reply, rc, "BLMOVE %s %s LEFT %s %s", src, dst, to, tmo);
}

/* --- the main connection ---------------------------------------------------------- */

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
static bool rc_send(struct rcall *rc)
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
static void call_cancel(struct park *p)
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
static const char hot_script[] =
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
static enum cmd_ret rc_run(struct request *r, struct rcall *rc)
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

static void retry_later(void)
{
	struct timeval tv;

	if (rs.stopping)
		return;
	rs.backoff = redis_link_backoff(rs.backoff);
	tv.tv_sec = (time_t)rs.backoff;
	tv.tv_usec = (suseconds_t)((rs.backoff - (double)tv.tv_sec) * 1e6);
	evtimer_add(rs.retry, &tv);
}

static void main_connected(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK) {
		log_debug("redis", "cannot connect to %s: %s", rs.address, ac->errstr);
		rs.ac = NULL; /* hiredis frees it */
		retry_later();
		return;
	}
	rs.up = true;
	rs.backoff = 0;
	rearm_all();
	log_info("redis", "connected to %s", rs.address);
}

static void main_disconnected(const redisAsyncContext *ac, int status)
{
	if (rs.up && !rs.stopping)
		log_warn("redis",
			 "lost the connection to %s: %s; state commands answer "
			 "unavailable until it is back",
			 rs.address, status == REDIS_OK ? "closed" : ac->errstr);
	if (rs.up)
		rs.lost++;
	rs.up = false;
	rs.ac = NULL;
	retry_later();
}

static void main_connect(void)
{
	if (!(rs.ac = connect_new())) {
		retry_later();
		return;
	}
	redisAsyncSetConnectCallback(rs.ac, main_connected);
	redisAsyncSetDisconnectCallback(rs.ac, main_disconnected);
}

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	rs.reconnects++;
	rearm_expire();
	main_connect();
}

/* --- start and stop ------------------------------------------------------------------ */

/* A blocking PING and SCRIPT LOAD: Redis must answer before mpsupd serves. */
static int redis_check(const struct conf *conf)
{
	const char *addr = conf->redis_address;
	redisContext *ctx;
	redisReply *rp;
	int ret = -1;

	ctx = redis_link_open_sync(addr);
	if (!ctx || ctx->err) {
		log_error("redis", "state_backend = redis: cannot connect to redis_address %s: %s",
			  addr, ctx ? ctx->errstr : "out of memory");
		goto out;
	}
	rp = redisCommand(ctx, "SCRIPT LOAD %s", redis_script);
	if (!rp || rp->type != REDIS_REPLY_STRING || rp->len != 40) {
		log_error("redis", "state_backend = redis: %s does not load the state script: %s",
			  addr, rp && rp->str ? rp->str : ctx->errstr);
	} else {
		memcpy(rs.sha, rp->str, 40);
		ret = 0;
	}
	freeReplyObject(rp);
	rp = ret < 0 ? NULL : redisCommand(ctx, "SCRIPT LOAD %s", hot_script);
	if (rp && rp->type == REDIS_REPLY_STRING && rp->len == 40)
		memcpy(rs.hot_sha, rp->str, 40);
	freeReplyObject(rp);
out:
	if (ctx)
		redisFree(ctx);
	return ret;
}

int redis_backend_start(const struct conf *conf)
{
	unsigned char rnd[16];

	if (conf->redis_lease < 1) {
		log_error("redis", "redis_lease must be at least 1 second");
		return -1;
	}
	if (redis_check(conf) < 0)
		return -1;
	snprintf(rs.address, sizeof(rs.address), "%s", conf->redis_address);
	snprintf(rs.prefix, sizeof(rs.prefix), "%s", conf->redis_prefix);
	rs.lease = conf->redis_lease;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		log_error("redis", "getrandom: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(rs.host_id + 2 * i, 3, "%02x", rnd[i]);
	LIST_INIT(&rs.blocked);
	LIST_INIT(&rs.holds);
	LIST_INIT(&rs.rearm);
	LIST_INIT(&rs.scoped);
	if (!(rs.retry = evtimer_new(daemon_g.base, retry_fire, NULL)) ||
	    !(rs.renew = evtimer_new(daemon_g.base, renew_fire, NULL)))
		return -1;
	renew_fire(-1, 0, NULL);
	main_connect();
	if (!rs.ac) {
		log_error("redis", "cannot connect to %s", conf->redis_address);
		return -1;
	}
	log_info("redis", "shared state in redis at %s (prefix %s, host id %s)",
		 conf->redis_address, conf->redis_prefix, rs.host_id);
	return 0;
}

void redis_backend_stop(void)
{
	rs.stopping = true;
	while (!LIST_EMPTY(&rs.blocked)) {
		redisAsyncFree(LIST_FIRST(&rs.blocked)->bc); /* block_reply frees it */
	}
	while (!LIST_EMPTY(&rs.holds))
		hold_free(LIST_FIRST(&rs.holds));
	/* this host's scoped objects end with their lease */
	while (!LIST_EMPTY(&rs.scoped))
		scoped_free(LIST_FIRST(&rs.scoped));
	while (!LIST_EMPTY(&rs.rearm)) {
		struct rcall *rc = LIST_FIRST(&rs.rearm);

		LIST_REMOVE(rc, blocked);
		rc->park.on_cancel = call_cancel;
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: mpsupd stops", rc->op);
		rc_free(rc);
	}
	if (rs.renew)
		event_free(rs.renew);
	rs.renew = NULL;
	if (rs.ac)
		redisAsyncFree(rs.ac);
	rs.ac = NULL;
	rs.up = false;
	if (rs.retry)
		event_free(rs.retry);
	rs.retry = NULL;
	free(rs.fmt);
	rs.fmt = NULL;
	rs.fmt_cap = 0;
}

/* Objects held by this host's clients (counted per client). */
static json_int_t hold_count(void)
{
	json_int_t n = 0;
	struct hold *h;

	LIST_FOREACH(h, &rs.holds, entry)
		n++;
	return n;
}

void redis_backend_info(json_t *st)
{
	json_object_update_new(
		st, json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I}", "address",
			      rs.address, "prefix", rs.prefix, "connection",
			      rs.up ? "connected" : (rs.ac ? "connecting" : "down"), "host_id",
			      rs.host_id, "lease", rs.lease, "reconnects",
			      (json_int_t)rs.reconnects, "connections_lost", (json_int_t)rs.lost,
			      "blocked_waiters", (json_int_t)rs.blocking, "holds",
			      (json_int_t)hold_count(), "lease_renewals", (json_int_t)rs.renewals));
}

/* --- the commands ---------------------------------------------------------------------- */

/* Push c's parameters following spec: '=' and the text (a string param
 * as it is, anything else as JSON), '' when absent; an array as its count
 * and its elements, an object as its count and its key, value pairs. */
static int push_params(struct rcall *rc, struct obj_call *c, const struct op_spec *spec)
{
	int r = 0;

	for (int i = 0; i < spec->n && r == 0; i++) {
		char type = spec->p[i].type;
		json_t *v, *e;
		const char *k;
		size_t n, klen;

		if (!obj_has(c, i)) {
			/* a required value that is absent was given as null */
			r = rc_pushs(rc, spec->p[i].optional || type != 'o' ? "" : "=null");
			continue;
		}
		if (type == 's') {
			k = obj_arg_str(c, i, &klen);
			r = rc_push(rc, '=', k, klen);
			continue;
		}
		if (!(v = obj_arg(c, i)))
			return -ENOMEM;
		if (type == 't' && request_timeout(c->r, v, &rc->timeout) < 0)
			return -EINVAL; /* answered */
		if (type != 'a' && type != 'O') {
			r = rc_push_json(rc, v, true);
			continue;
		}
		char count[24];
		snprintf(count, sizeof(count), "=%zu",
			 type == 'a' ? json_array_size(v) : json_object_size(v));
		r = rc_pushs(rc, count);
		if (type == 'a')
			json_array_foreach(v, n, e)
				r |= rc_push_json(rc, e, false);
		else
			json_object_keylen_foreach(v, k, klen, e)
				r |= rc_push(rc, 0, k, klen) | rc_push_json(rc, e, false);
	}
	return r;
}

/* TYPE.OP through the script. */
static enum cmd_ret redis_op(struct request *r, const struct type_op *t)
{
	const struct obj_op *op = t->op;
	struct obj_call c = { .r = r, .op = op };
	char buf[OBJ_NAME_MAX + 1];
	const char *name = obj_param_name(r, buf);
	struct rcall *rc;
	bool existing;
	int ret = 0;

	if (!name || obj_params_read(&c, &t->spec) < 0)
		goto done;
	/* as with local objects: only the state role creates by using */
	existing = (op->flags & OBJ_OP_EXISTING) || (r->conn && r->conn->role < ROLE_STATE);
	if (!(rc = rc_new(op->name, name, existing)) || rc_set_caller(rc, r->conn) < 0 ||
	    (ret = push_params(rc, &c, &t->spec)) < 0) {
		if (rc)
			rc_free(rc);
		if (ret != -EINVAL)
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
		goto done;
	}
	if (t->type == &lock_type || t->type == &rlock_type || t->type == &semaphore_type) {
		if (!r->conn || rc_push_owner(rc, r->conn->id) < 0) {
			rc_free(rc);
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
			goto done;
		}
		rc->owned = t->type;
		rc->conn = r->conn;
	}
	if ((rc->owned && strstr(op->name, ".acquire")) || strcmp(op->name, "queue.put") == 0) {
		if (rc_set_ticket(rc) < 0) {
			rc_free(rc);
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
			goto done;
		}
	}
	rc->tname = t->type->name;
	rc->flags = op->flags;
	obj_call_done(&c);
	return rc_run(r, rc);
done:
	obj_call_done(&c);
	return CMD_DONE;
}

/* The `name` of an obj.* request; NULL after answering. */
static const char *obj_name(struct request *r)
{
	const char *name = json_string_value(json_object_get(r->params, "name"));

	if (!name || !name_valid(name, false)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: 'name' must be a valid object name",
			      r->cmd->name);
		return NULL;
	}
	return name;
}

static const char *const served_types[] = { "dict",      "list",    "value", "queue",
					    "event",     "array",   "lock",  "rlock",
					    "semaphore", "barrier", NULL };

/* Check obj.create's options as the local type does (a throw-away object). */
static bool options_valid(struct request *r, const struct obj_type *type)
{
	struct obj tmp = { .type = type };
	json_t *opts = json_deep_copy(r->params);
	enum mpsup_err code;
	char err[256];

	if (!opts) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return false;
	}
	json_object_del(opts, "name");
	json_object_del(opts, "type");
	code = type->create(&tmp, opts, err, sizeof(err));
	json_decref(opts);
	if (code != MPSUP_OK) {
		request_error(r, code, "obj.create: %s", err);
		return false;
	}
	type->free(&tmp);
	return true;
}

/* obj.create's options for the script: type, typecode, init, maxsize,
 * then the items. */
static int push_create(struct rcall *rc, json_t *p, const char *tname)
{
	json_t *tc = json_object_get(p, "typecode"), *init = json_object_get(p, "init");
	json_t *max = json_object_get(p, "maxsize"), *items = json_object_get(p, "items"), *e;
	json_t *units = json_object_get(p, "value");
	char count[24];
	const char *k;
	size_t n, klen;
	int r = rc_push(rc, '=', tname, strlen(tname));

	if (strcmp(tname, "array") == 0) {
		/* its elements: init, or size zeros */
		items = init;
		init = NULL;
		max = json_object_get(p, "size");
	}
	if (strcmp(tname, "value") == 0 || strcmp(tname, "array") == 0)
		r |= rc_push(rc, '=', json_is_string(tc) ? json_string_value(tc) : "any",
			     json_is_string(tc) ? json_string_length(tc) : 3);
	else
		r |= rc_pushs(rc, "");
	r |= init ? rc_push_json(rc, init, true) : rc_pushs(rc, "");
	if (strcmp(tname, "queue") == 0)
		r |= max ? rc_push_json(rc, max, true) : rc_pushs(rc, "=0");
	else if (strcmp(tname, "array") == 0)
		r |= max ? rc_push_json(rc, max, true) : rc_pushs(rc, "");
	else if (strcmp(tname, "semaphore") == 0)
		r |= units ? rc_push_json(rc, units, true) : rc_pushs(rc, "=1");
	else if (strcmp(tname, "barrier") == 0)
		r |= json_object_get(p, "parties")
			     ? rc_push_json(rc, json_object_get(p, "parties"), true)
			     : rc_pushs(rc, "=1");
	else
		r |= rc_pushs(rc, "");
	snprintf(count, sizeof(count), "=%zu",
		 json_is_object(items) ? json_object_size(items) : json_array_size(items));
	r |= rc_pushs(rc, count);
	if (json_is_object(items))
		json_object_keylen_foreach(items, k, klen, e)
			r |= rc_push(rc, 0, k, klen) | rc_push_json(rc, e, false);
	else if (json_is_array(items))
		json_array_foreach(items, n, e)
			r |= rc_push_json(rc, e, false);
	return r;
}

/* obj.create's tail for the script: the owner uid of a private object
 * ('?' for a bad access, checked after the existence), the scope mark and
 * the lease. */
static int push_access(struct rcall *rc, struct request *r, struct scoped *sc)
{
	json_t *a = json_object_get(r->params, "access");
	const char *s = json_string_value(a);
	char buf[64];
	int ret;

	if (!a || (s && strcmp(s, "shared") == 0))
		ret = rc_pushs(rc, "");
	else if (!s || strcmp(s, "private") != 0)
		ret = rc_pushs(rc, "?");
	else {
		/* the daemon's own (no peer) is nobody's: admins only */
		if (r->conn)
			snprintf(buf, sizeof(buf), "=%u", (unsigned)r->conn->uid);
		else
			snprintf(buf, sizeof(buf), "=-1");
		ret = rc_pushs(rc, buf);
	}
	if (sc) {
		ret |= rc_push(rc, '=', sc->mark, strlen(sc->mark));
		snprintf(buf, sizeof(buf), "=%lld", (long long)(rs.lease * 1000));
		ret |= rc_pushs(rc, buf);
	} else {
		ret |= rc_pushs(rc, "") | rc_pushs(rc, "");
	}
	return ret;
}

/* obj.create's scope "process": a record bound to the peer's process, or
 * NULL (no scope asked for, or answered when it cannot be: *ret_err). */
static struct scoped *scoped_new(struct request *r, const char *name, int *ret_err)
{
	json_t *v = json_object_get(r->params, "scope");
	struct scoped *sc;
	int e;

	*ret_err = 0;
	if (!v)
		return NULL;
	*ret_err = -1;
	if (!json_is_string(v) || strcmp(json_string_value(v), "process") != 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: scope must be \"process\"");
		return NULL;
	}
	if (!r->conn) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: no process to scope to");
		return NULL;
	}
	/* this host watches at most max_objects scoped objects */
	if (rs.n_scoped >= daemon_g.conf->max_objects) {
		request_error(r, MPSUP_E_LIMIT,
			      "obj.create: too many scoped objects on this host (max_objects = %u)",
			      daemon_g.conf->max_objects);
		return NULL;
	}
	if (!(sc = calloc(1, sizeof(*sc)))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return NULL;
	}
	if ((e = scope_bind(r->conn, &sc->link, scoped_gone)) < 0) {
		free(sc);
		if (e == -ESRCH)
			request_error(r, MPSUP_E_CONFLICT,
				      "obj.create: the requesting process has exited");
		else if (e == -EMFILE)
			request_error(
				r, MPSUP_E_LIMIT,
				"obj.create: not enough file descriptors to watch the process");
		else
			request_error(r, MPSUP_E_INTERNAL, "obj.create: %s", strerror(-e));
		return NULL;
	}
	snprintf(sc->name, sizeof(sc->name), "%s", name);
	snprintf(sc->mark, sizeof(sc->mark), "%s:%llu", rs.host_id, ++rs.next_scope);
	LIST_INSERT_HEAD(&rs.scoped, sc, entry);
	rs.n_scoped++;
	*ret_err = 0;
	return sc;
}

static enum cmd_ret redis_obj_create(struct request *r)
{
	const char *name = obj_name(r), *tname;
	const struct obj_type *type;
	struct scoped *sc;
	struct rcall *rc;
	size_t i;
	int e;

	if (!name)
		return CMD_DONE;
	tname = json_string_value(json_object_get(r->params, "type"));
	if (!tname || !(type = obj_type_find(tname))) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: 'type' must be a type name");
		return CMD_DONE;
	}
	for (i = 0; served_types[i] && strcmp(served_types[i], tname) != 0; i++)
		;
	if (!served_types[i]) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "obj.create: the redis state backend does not serve %s objects",
			      tname);
		return CMD_DONE;
	}
	if (!options_valid(r, type))
		return CMD_DONE;
	if (!(sc = scoped_new(r, name, &e)) && e < 0)
		return CMD_DONE;
	if (!(rc = rc_new("obj.create", name, false)) || rc_set_caller(rc, r->conn) < 0 ||
	    push_create(rc, r->params, tname) < 0 || push_access(rc, r, sc) < 0) {
		if (rc)
			rc_free(rc);
		if (sc)
			scoped_settle(sc);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	rc->scoped = sc; /* kept once the object is made (rc_ok) */
	rc->tname = type->name;
	rc->flags = CMD_MUTATES;
	return rc_run(r, rc);
}

/* obj.get and obj.delete: the script does it all. */
static enum cmd_ret redis_obj_named(struct request *r)
{
	const char *name;
	struct rcall *rc;

	if (request_unpack(r, "{s:s}", "name", &name) < 0 || !(name = obj_name(r)))
		return CMD_DONE;
	if (!(rc = rc_new(r->cmd->name, name, true)) || rc_set_caller(rc, r->conn) < 0) {
		if (rc)
			rc_free(rc);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	return rc_run(r, rc);
}

/* obj.list: SCAN for the meta keys (PREFIX{name}), then one script call for
 * their types and sizes. Needs one server (not a cluster). */
struct listing {
	struct park park;
	bool gone;
	const struct obj_type *type; /* the filter, or NULL */
	json_t *names;
	char who[24]; /* the caller's uid, "" for an admin: private objects */
};

static const char list_script[] =
	"local out, who = {}, ARGV[1]\n"
	"for i = 1, #KEYS, 2 do\n"
	"  local meta = redis.call('HMGET', KEYS[i], 't', 'o', 'sh')\n"
	"  local t, n = meta[1] or '', 0\n"
	"  -- hidden: another uid's private object, a scoped one whose host is gone\n"
	"  if (meta[2] and who ~= '' and meta[2] ~= who) or (meta[3] and\n"
	"      redis.call('EXISTS', KEYS[i] .. ':l:' .. string.match(meta[3], '^[^:]+')) == 0) "
	"then\n"
	"    t = ''\n"
	"  end\n"
	"  if t == 'dict' then n = redis.call('HLEN', KEYS[i + 1])\n"
	"  elseif t == 'list' or t == 'queue' then n = redis.call('LLEN', KEYS[i + 1])\n"
	"  elseif t == 'value' then n = 1\n"
	"  elseif t == 'event' then n = redis.call('EXISTS', KEYS[i + 1])\n"
	"  elseif t == 'rlock' then n = redis.call('HLEN', KEYS[i + 1])\n"
	"  elseif t == 'array' then n = redis.call('LLEN', KEYS[i + 1])\n"
	"  elseif t == 'barrier' then n = tonumber(redis.call('HGET', KEYS[i], 'c'))\n"
	"  elseif t == 'lock' or t == 'semaphore' then\n"
	"    for _, c in ipairs(redis.call('HVALS', KEYS[i + 1])) do n = n + tonumber(c) end\n"
	"  end\n"
	"  out[#out + 1] = t\n"
	"  out[#out + 1] = n\n"
	"end\n"
	"return out\n";

static void listing_free(struct listing *l)
{
	json_decref(l->names);
	free(l);
}

static void listing_fail(struct listing *l, const char *what)
{
	if (!l->gone && park_kept(&l->park))
		request_error(park_take(&l->park), MPSUP_E_UNAVAILABLE, "obj.list: %s", what);
	listing_free(l);
}

static int listing_cmp(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
		      json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/* The types and sizes came: answer, sorted by name. */
static void listing_sizes(redisAsyncContext *ac, void *reply, void *priv)
{
	struct listing *l = priv;
	redisReply *rp = reply;
	json_t *out, **v;
	size_t n = 0;

	(void)ac;
	if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 * json_array_size(l->names))
		return listing_fail(l, "redis did not answer");
	if (l->gone || !(v = calloc(rp->elements / 2 + 1, sizeof(*v))))
		return listing_fail(l, "out of memory");
	for (size_t i = 0; i < rp->elements / 2; i++) {
		const char *name = json_string_value(json_array_get(l->names, i));
		const char *t = rp->element[2 * i]->str;

		if (!t || !*t || (l->type && strcmp(t, l->type->name) != 0))
			continue;
		v[n++] = json_pack("{s:s, s:s, s:I, s:i}", "name", name, "type", t, "size",
				   (json_int_t)rp->element[2 * i + 1]->integer, "waiters",
				   (int)block_count(name));
	}
	qsort(v, n, sizeof(*v), listing_cmp);
	out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, v[i]);
	free(v);
	request_ok(park_take(&l->park), out);
	listing_free(l);
}

static void listing_scan(redisAsyncContext *ac, void *reply, void *priv);

/* Ask for the next SCAN page (the first when cursor is NULL), or for the
 * sizes after the last one. */
static void listing_next(struct listing *l, const char *cursor)
{
	const char *prefix = rs.prefix;
	size_t n = json_array_size(l->names), k = 0;
	const char **argv;
	size_t *lens;
	char **keys;

	if (!cursor || strcmp(cursor, "0") != 0) {
		if (!rs.ac || redisAsyncCommand(rs.ac, listing_scan, l,
						"SCAN %s MATCH %s{* COUNT 1000 TYPE hash",
						cursor ? cursor : "0", prefix) != REDIS_OK)
			listing_fail(l, "redis cannot be reached");
		return;
	}
	argv = calloc(2 * n + 4, sizeof(*argv));
	lens = calloc(2 * n + 4, sizeof(*lens));
	keys = calloc(2 * n + 1, sizeof(*keys));
	if (argv && lens && keys) {
		char count[24];
		int ok = 1;

		snprintf(count, sizeof(count), "%zu", 2 * n);
		argv[0] = "EVAL";
		argv[1] = list_script;
		argv[2] = count;
		for (size_t i = 0; i < n && ok; i++) {
			const char *name = json_string_value(json_array_get(l->names, i));
			ok = asprintf(&keys[k++], "%s{%s}", prefix, name) >= 0 &&
			     asprintf(&keys[k++], "%s{%s}:d", prefix, name) >= 0;
		}
		for (size_t i = 0; i < 2 * n + 3; i++) {
			if (i >= 3)
				argv[i] = keys[i - 3] ? keys[i - 3] : "";
			lens[i] = strlen(argv[i]);
		}
		argv[2 * n + 3] = l->who;
		lens[2 * n + 3] = strlen(l->who);
		if (!ok || !rs.ac ||
		    redisAsyncCommandArgv(rs.ac, listing_sizes, l, (int)(2 * n + 4), argv, lens) !=
			    REDIS_OK)
			listing_fail(l, "redis cannot be reached");
	} else {
		listing_fail(l, "out of memory");
	}
	for (size_t i = 0; keys && i < k; i++)
		free(keys[i]);
	free(keys);
	free(argv);
	free(lens);
}

/* A SCAN page: keep the names of meta keys (PREFIX{name}, nothing after). */
static void listing_scan(redisAsyncContext *ac, void *reply, void *priv)
{
	struct listing *l = priv;
	redisReply *rp = reply, *page;
	size_t plen = strlen(rs.prefix);

	(void)ac;
	if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
	    rp->element[0]->type != REDIS_REPLY_STRING)
		return listing_fail(l, "redis did not answer");
	if (l->gone)
		return listing_free(l);
	page = rp->element[1];
	for (size_t i = 0; page->type == REDIS_REPLY_ARRAY && i < page->elements; i++) {
		const char *k = page->element[i]->str;
		size_t len = page->element[i]->len;
		char name[OBJ_NAME_MAX + 1];

		if (!k || len < plen + 3 || k[plen] != '{' || k[len - 1] != '}' ||
		    len - plen - 2 > OBJ_NAME_MAX)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - plen - 2), k + plen + 1);
		if (name_valid(name, false))
			json_array_append_new(l->names, json_string(name));
	}
	if (json_array_size(l->names) > daemon_g.conf->max_objects)
		return listing_fail(l, "more objects than max_objects");
	listing_next(l, rp->element[0]->str);
}

static void listing_cancel(struct park *p)
{
	PARK_OWNER(p, struct listing, park)->gone = true;
}

static enum cmd_ret redis_obj_list(struct request *r)
{
	const char *tname = NULL;
	struct listing *l;

	if (request_unpack(r, "{s?s}", "type", &tname) < 0)
		return CMD_DONE;
	if (!rs.ac) {
		request_error(r, MPSUP_E_UNAVAILABLE, "obj.list: redis cannot be reached");
		return CMD_DONE;
	}
	if (!(l = calloc(1, sizeof(*l))) || !(l->names = json_array()) ||
	    park_keep(&l->park, r, NULL, -1, NULL, listing_cancel) < 0) {
		if (l)
			json_decref(l->names);
		free(l);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (r->conn && r->conn->role < ROLE_ADMIN)
		snprintf(l->who, sizeof(l->who), "%u", (unsigned)r->conn->uid);
	if (tname && !(l->type = obj_type_find(tname))) {
		request_error(park_take(&l->park), MPSUP_E_BAD_REQUEST,
			      "obj.list: unknown type '%.64s'", tname);
		listing_free(l);
		return CMD_DONE;
	}
	listing_next(l, NULL);
	return CMD_WAIT;
}

const struct state_backend redis_state_backend = {
	.name = "redis",
	.op = redis_op,
	.obj_create = redis_obj_create,
	.obj_delete = redis_obj_named,
	.obj_get = redis_obj_named,
	.obj_list = redis_obj_list,
};
