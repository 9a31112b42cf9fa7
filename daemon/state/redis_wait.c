/*
 * The redis state backend: blocking waits, each on a connection of its own
 * (BLMOVE), their tickets in line, and re-arming them after Redis comes back.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "redis_link.h"
#include "redis_int.h"

/* What a blocked waiter finds when its object is deleted (remove() in the
 * script): not a JSON text, so never an item. */
static const char tomb[] = "\0mpsup-deleted";

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
void rc_untick(struct rcall *rc)
{
	rc->ticketed = false;
	rc_notice("obj.untick", rc->argv[A_NAME], rc->ticket); /* else it ends with its lease */
}

/* The script's "wait" reply str (len) to rc says a condition's waiter gave
 * up its lock and waits for a notify ("wait NAME notify"). */
bool cond_waiting(const struct rcall *rc, const char *str, size_t len)
{
	return strcmp(rc->op, "condition.wait") == 0 && len > 7 &&
	       memcmp(str + len - 7, " notify", 7) == 0;
}

/*
 * A condition's waiter was notified (news 'w') or its timeout came ('t'):
 * it goes on to take the lock back at its old depth, in the lock's line
 * and with no timeout (the script decides whether a notify came first).
 * Its timeout parameter carries the news; false after answering.
 */
bool cond_resume(struct rcall *rc, char news)
{
	if (rc_set(rc, A_MODE + 1, news == 'w' ? "=w" : "=t", 2) < 0) {
		rc_error(rc, MPSUP_E_INTERNAL, "out of memory");
		return false;
	}
	rc->cwait = false;
	rc->timeout = -1;
	rc->deadline = 0;
	rc->soonest = -1;
	return rc_send(rc);
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
	if (rc->cwait) /* notified */
		return !rc->gone && cond_resume(rc, 'w');
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

/* Whether rc may wait again once Redis is back (a barrier waiter cannot:
 * it would arrive twice). */
static bool rearm_can(const struct rcall *rc)
{
	return !rc->gone && !rs.stopping && strcmp(rc->op, "barrier.wait") != 0;
}

bool rearm_later(struct rcall *rc)
{
	if (!rearm_can(rc))
		return false;
	rc->park.on_cancel = rearm_cancel;
	LIST_INSERT_HEAD(&rs.rearm, rc, blocked);
	return true;
}

/* Redis is back: every wait the outage cut goes on (a getter's item that
 * was on its way goes back to the head of its queue first). */
void rearm_all(void)
{
	while (!LIST_EMPTY(&rs.rearm)) {
		struct rcall *rc = LIST_FIRST(&rs.rearm);

		LIST_REMOVE(rc, blocked);
		rc->park.on_cancel = call_cancel;
		rc->rearmed = true;
		if (rc->inflight && strstr(rc->inflight, "}:f:"))
			redisAsyncCommand(rs_ac(rc->argv[A_META], rc->argvlen[A_META]), NULL, NULL,
					  "LMOVE %s %s LEFT LEFT", rc->inflight, rc->argv[A_DATA]);
		if (!rc_send(rc))
			rc_free(rc);
	}
}

/* While Redis is away: answer the waits whose time is up. */
void rearm_expire(void)
{
	struct rcall *rc, *next;

	for (rc = LIST_FIRST(&rs.rearm); rc; rc = next) {
		next = LIST_NEXT(rc, blocked);
		/* (a condition's waiter needs Redis to take its lock back) */
		if (rc->deadline && now_mono() >= rc->deadline && !rc->cwait) {
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
	enum redis_redirect redirected = REDIS_REDIRECT_NONE;
	bool again = false;

	if (rp)
		redisAsyncDisconnect(ac);
	/* a cluster unblocks the waiters of a slot that moved with MOVED, and
	 * all of them with CLUSTERDOWN (the map is learnt again) */
	if (rp && rp->type == REDIS_REPLY_ERROR)
		redirected = redis_nodes_redirected(&rs.nodes, rp->str, rp->len);
	if ((!rp || redirected == REDIS_REDIRECT_RESET) && rearm_can(rc)) {
		/* Redis went (or the slot did): wait again once it is back */
		block_end(rc);
		rearm_later(rc);
		return;
	}
	if (!rp)
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: lost the connection to redis", rc->op);
	else if (redirected)
		rc_error(rc, MPSUP_E_UNAVAILABLE, "%s: redis: %.*s; retry", rc->op, (int)rp->len,
			 rp->str);
	else if (rp->type == REDIS_REPLY_NIL && rc->cwait && !rc->gone) {
		/* a condition's waiter timed out: it takes the lock back */
		block_end(rc);
		if (cond_resume(rc, 't'))
			return;
		rc_free(rc);
		return;
	} else if (rp->type == REDIS_REPLY_NIL && rc->owned && !rc->gone &&
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
		if (rc_set(rc, A_OP, "barrier.break", 13) == 0 && rc_pushs(rc, g) == 0 &&
		    rc_pushs(rc, i) == 0 && rc_send(rc))
			return;
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
			return; /* sent to its node again */
		rc_free(rc);
		return;
	}
	block_end(rc);
	rc_free(rc);
}

/* A blocked call's client left: unblock it and give back what it took. */
static void block_unblock(struct rcall *rc)
{
	redisAsyncContext *ac = rs_ac(rc->argv[A_META], rc->argvlen[A_META]);

	if (!ac) {
		redisAsyncContext *bc = rc->bc;

		redisAsyncFree(bc); /* block_reply runs and frees rc */
		return;
	}
	/* (the blocked connection is on the node of the object's slot) */
	redisAsyncCommand(ac, NULL, NULL, "CLIENT UNBLOCK %lld", rc->client_id);
	if (rc->wait == WAIT_TAKE)
		redisAsyncCommand(ac, NULL, NULL, "LMOVE %s %s LEFT LEFT", rc->inflight,
				  rc->argv[A_DATA]);
}

static void block_client_id(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *rc = priv;
	redisReply *rp = reply;

	(void)ac;
	if (rp && rp->type == REDIS_REPLY_INTEGER) {
		rc->client_id = rp->integer;
		if (rc->gone && rs_ac(rc->argv[A_META], rc->argvlen[A_META]))
			block_unblock(rc);
	}
}

static void block_cancel(struct park *p)
{
	struct rcall *rc = PARK_OWNER(p, struct rcall, park);

	rc->gone = true;
	if (rc->client_id >= 0 || !rs_ac(rc->argv[A_META], rc->argvlen[A_META]))
		block_unblock(rc);
	/* else block_client_id unblocks it */
}

/* A new connection to the node that serves key (a blocking wait's own). */
redisAsyncContext *connect_new(const char *key, size_t len)
{
	return redis_link_open(redis_nodes_addr(&rs.nodes, key, len));
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
unsigned block_count(const char *name)
{
	unsigned n = 0;
	struct rcall *rc;

	LIST_FOREACH(rc, &rs.blocked, blocked)
		n += strcmp(rc->argv[A_NAME], name) == 0;
	return n;
}

/* The script said the call must wait: block on a connection of its own. */
void block_start(struct rcall *rc)
{
	const char *name = rc->argv[A_NAME];
	char tmo[32], *inflight = NULL;
	const char *src = rc->argv[A_DATA], *dst = src, *to = "RIGHT";

	if (!block_timeout(rc, tmo, sizeof(tmo))) {
		/* a condition's waiter takes its lock back (answered if it cannot) */
		if (!rc->cwait)
			block_timeout_answer(rc);
		else if (cond_resume(rc, 't'))
			return;
		rc_free(rc);
		return;
	}
	/* as locally: max_waiters per object (each blocked wait is also a
	 * kept request of its own client, so max_clients bounds them all); a
	 * condition's waiter was counted before it let go of its lock */
	if (block_count(name) >= daemon_g.conf->max_waiters &&
	    strcmp(rc->op, "condition.wait") != 0) {
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
		else if (rc->cwait) { /* in a condition's wait: woken by a notify */
			if (asprintf(&inflight, "%s:n:%s", rc->argv[A_META], rc->ticket) < 0)
				inflight = NULL;
			src = dst = inflight;
		} else if (rc->ticket[0]) { /* in line: woken when its turn comes */
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
	    !(rc->bc = connect_new(rc->argv[A_META], rc->argvlen[A_META]))) {
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
