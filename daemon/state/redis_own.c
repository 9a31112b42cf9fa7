/*
 * The redis state backend: what this host holds (owner tokens, holds
 * renewed under the host's lease, dropped when their client goes) and
 * objects of scope "process".
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "container.h"
#include "scope.h"
#include "redis_int.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

/* The owner token, host id and lease of conn for an owned op's script call. */
int rc_push_owner(struct rcall *rc, uint64_t conn_id)
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
	static const char *const drops[] = { "lock.drop", "rlock.drop", "semaphore.drop",
					     "condition.drop" };
	const char *op = drops[type == &lock_type        ? 0
			       : type == &rlock_type     ? 1
			       : type == &semaphore_type ? 2
							 : 3];
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

void hold_free(struct hold *h)
{
	conn_remove_close_hook(h->conn, hold_conn_closed, h);
	LIST_REMOVE(h, entry);
	free(h);
}

/* An owned op of rc's client succeeded with result: count what it holds. */
void hold_note(struct rcall *rc, json_t *result)
{
	const char *name = rc->argv[A_NAME];
	bool acquire = strstr(rc->op, ".acquire") != NULL;
	/* a condition's waiter has its lock back, at the depth it had: its
	 * hold did not change */
	bool rewait = json_object_get(result, "notified") != NULL;
	struct hold *h;

	if (acquire && !json_is_true(json_object_get(result, "acquired")))
		return;
	/* only acquire and release change what is held (not locked, notify...) */
	if (!acquire && !rewait && !strstr(rc->op, ".release"))
		return;
	if (rc->gone) { /* granted to a client that left: give it back */
		if (acquire || rewait)
			owned_drop(rc->owned, name,
				   (uint64_t)strtoull(strchr(rc->argv[rc->argc - 3], ':') + 1, NULL,
						      10));
		return;
	}
	if (rewait)
		return;
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
void renew_fire(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv;
	double every = rs.lease / 3;
	redisAsyncContext *ac;
	struct hold *h;
	struct scoped *sc;
	struct rcall *rc;

	(void)fd;
	(void)what;
	(void)arg;
	LIST_FOREACH(h, &rs.holds, entry)
		if ((ac = rs_name_ac(h->name))) {
			redisAsyncCommand(ac, NULL, NULL, "SET %s{%s}:l:%s 1 PX %lld", rs.prefix,
					  h->name, rs.host_id, (long long)(rs.lease * 1000));
			rs.renewals++;
		}
	LIST_FOREACH(rc, &rs.blocked, blocked)
		if (rc->ticketed && (ac = rs_ac(rc->argv[A_META], rc->argvlen[A_META]))) {
			redisAsyncCommand(ac, NULL, NULL, "SET %s:t:%s 1 PX %lld", rc->argv[A_META],
					  rc->ticket, (long long)(rs.lease * 1000));
			rs.renewals++;
		}
	LIST_FOREACH(sc, &rs.scoped, entry)
		if (sc->live && (ac = rs_name_ac(sc->name))) {
			redisAsyncCommand(ac, NULL, NULL, "SET %s{%s}:l:%s 1 PX %lld", rs.prefix,
					  sc->name, rs.host_id, (long long)(rs.lease * 1000));
			rs.renewals++;
		}
	sweep_step();
	tv.tv_sec = (time_t)every;
	tv.tv_usec = (suseconds_t)((every - (double)tv.tv_sec) * 1e6);
	evtimer_add(rs.renew, &tv);
}

/* --- objects of scope "process" ----------------------------------------------------- */

void scoped_free(struct scoped *sc)
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
void rc_notice(const char *op, const char *name, const char *arg)
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
void scoped_gone(struct scope_link *l)
{
	struct scoped *sc = CONTAINER_OF(l, struct scoped, link);

	if (sc->live)
		scoped_end(sc);
	else
		sc->ended = true;
}

/* The obj.create of sc was answered (or failed): keep sc if it made the
 * object, unless its process exited meanwhile. */
void scoped_settle(struct scoped *sc)
{
	if (!sc->live)
		scoped_free(sc);
	else if (sc->ended)
		scoped_end(sc);
}

/* The object called name was deleted through this host: stop renewing it. */
void scoped_forget(const char *name)
{
	struct scoped *sc, *next;

	for (sc = LIST_FIRST(&rs.scoped); sc; sc = next) {
		next = LIST_NEXT(sc, entry);
		if (sc->live && strcmp(sc->name, name) == 0)
			scoped_free(sc);
	}
}

/* --- blocking waits -------------------------------------------------------------- */

/* Whether k is a meta key (PREFIX{name}, nothing after); its name into
 * name (OBJ_NAME_MAX + 1 bytes). */
bool meta_key_name(const redisReply *k, char *name)
{
	size_t plen = strlen(rs.prefix), len = k->len;

	if (k->type != REDIS_REPLY_STRING || len < plen + 3 || k->str[plen] != '{' ||
	    k->str[len - 1] != '}' || len - plen - 2 > OBJ_NAME_MAX ||
	    memcmp(k->str, rs.prefix, plen) != 0)
		return false;
	snprintf(name, OBJ_NAME_MAX + 1, "%.*s", (int)(len - plen - 2), k->str + plen + 1);
	return name_valid(name, false);
}

/* --- the sweep of objects whose scope's host died ------------------------------------ */

/*
 * A scoped object lives while its host renews PREFIX{name}:l:HOST; when
 * that host dies, the next command that touches the name deletes it (the
 * script's check of sh). So that an object nobody touches again does not
 * stay in Redis for ever, every host walks the meta keys, one SCAN page
 * (COUNT 1000) per lease renewal, has a short script pick those whose
 * scope's lease key is gone, and sends each an obj.sweep: the script's
 * check, nothing else. A cluster's masters are walked one after the other,
 * and there the script is asked about one key at a time (a script's keys
 * share one slot).
 */
static const char sweep_script[] =
	"local out = {}\n"
	"for i = 1, #KEYS do\n"
	"  local sh = redis.call('HGET', KEYS[i], 'sh')\n"
	"  if sh and redis.call('EXISTS', KEYS[i] .. ':l:' .. string.match(sh, '^[^:]+')) == 0 "
	"then\n"
	"    out[#out + 1] = i\n"
	"  end\n"
	"end\n"
	"return out\n";

struct sweep_page {
	size_t n;
	char names[][OBJ_NAME_MAX + 1];
};

/* The page's dead scoped objects (1-based indexes into its names) go. */
static void sweep_picked(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sweep_page *pg = priv;
	redisReply *rp = reply;

	(void)ac;
	for (size_t i = 0; rp && rp->type == REDIS_REPLY_ARRAY && i < rp->elements; i++) {
		long long k = rp->element[i]->integer;

		if (rp->element[i]->type == REDIS_REPLY_INTEGER && k >= 1 && (size_t)k <= pg->n) {
			rc_notice("obj.sweep", pg->names[k - 1], "");
			rs.swept++;
		}
	}
	free(pg);
}

/* Ask the script about the meta keys [first, first + n) of a page. */
static void sweep_ask(char names[][OBJ_NAME_MAX + 1], const redisReply *const *keys, size_t first,
		      size_t n)
{
	struct sweep_page *pg = malloc(sizeof(*pg) + n * sizeof(pg->names[0]));
	const char **argv = calloc(n + 3, sizeof(*argv));
	size_t *lens = calloc(n + 3, sizeof(*lens));
	redisAsyncContext *ac = rs_ac(keys[first]->str, keys[first]->len);
	char count[24];

	if (pg && argv && lens && ac) {
		pg->n = n;
		snprintf(count, sizeof(count), "%zu", n);
		argv[0] = "EVAL";
		argv[1] = sweep_script;
		argv[2] = count;
		for (size_t i = 0; i < 3; i++)
			lens[i] = strlen(argv[i]);
		for (size_t i = 0; i < n; i++) {
			memcpy(pg->names[i], names[first + i], sizeof(pg->names[i]));
			argv[3 + i] = keys[first + i]->str;
			lens[3 + i] = keys[first + i]->len;
		}
		if (redisAsyncCommandArgv(ac, sweep_picked, pg, (int)n + 3, argv, lens) == REDIS_OK)
			pg = NULL;
	}
	free(pg);
	free(argv);
	free(lens);
}

/* A SCAN page of the sweep (of node priv): ask the script about its meta
 * keys; the walk goes on to the next node after a node's last page. */
static void sweep_scanned(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rp = reply, *page;
	const redisReply **keys;
	char(*names)[OBJ_NAME_MAX + 1];
	size_t n = 0;

	(void)ac;
	rs.sweeping = false;
	if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
	    rp->element[0]->type != REDIS_REPLY_STRING ||
	    rp->element[0]->len >= sizeof(rs.sweep_at))
		return; /* lost: the next renewal starts again */
	memcpy(rs.sweep_at, rp->element[0]->str, rp->element[0]->len + 1);
	if (strcmp(rs.sweep_at, "0") == 0) {
		rs.sweep_at[0] = '\0';
		rs.sweep_node = (unsigned)(uintptr_t)priv + 1;
	}
	page = rp->element[1];
	if (page->type != REDIS_REPLY_ARRAY || page->elements == 0)
		return;
	keys = calloc(page->elements, sizeof(*keys));
	names = calloc(page->elements, sizeof(*names));
	for (size_t i = 0; keys && names && i < page->elements; i++)
		if (meta_key_name(page->element[i], names[n]))
			keys[n++] = page->element[i];
	if (!rs.nodes.cluster && n)
		sweep_ask(names, keys, 0, n);
	for (size_t i = 0; rs.nodes.cluster && i < n; i++)
		sweep_ask(names, keys, i, 1);
	free(keys);
	free(names);
}

/* One step of the sweep (from each lease renewal). */
void sweep_step(void)
{
	redisAsyncContext *ac;

	if (rs.sweep_node >= rs.nodes.n)
		rs.sweep_node = 0;
	ac = rs.nodes.node[rs.sweep_node].ac;
	if (!rs.up || !ac || rs.sweeping)
		return;
	if (redisAsyncCommand(ac, sweep_scanned, (void *)(uintptr_t)rs.sweep_node,
			      "SCAN %s MATCH %s{* COUNT 1000 TYPE hash",
			      rs.sweep_at[0] ? rs.sweep_at : "0", rs.prefix) == REDIS_OK)
		rs.sweeping = true;
}
