/*
 * What the files of the redis state backend share (redis_backend.c the
 * commands, redis_call.c a call's command and answer, redis_own.c ownership
 * and scope, redis_wait.c blocking waits, redis_hot.c sending and the hot
 * paths, redis_conn.c the nodes' connections): private to daemon/state/redis_*.c.
 */
#ifndef MPSUPD_REDIS_INT_H
#define MPSUPD_REDIS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "conf.h"
#include "obj.h"
#include "obj_int.h"
#include "park.h"
#include "redis_nodes.h"
#include "scope.h"

/* Where things are in the argv of a script call. */
enum { A_CMD, A_SHA, A_NKEYS, A_META, A_DATA, A_JOIN, A_ROOM, A_OP, A_NAME, A_MODE };

enum wait_kind { WAIT_NONE, WAIT_TAKE, WAIT_ROTATE };

/* What a call's command holds without allocating (arguments, bytes). */
#define RC_ARGV_IN 16
#define RC_TEXT_IN 384
struct rc_chunk;

/* One op in flight: its parked request, the command (kept for the NOSCRIPT
 * retry) and, while it blocks, its own connection. */
struct rcall {
	struct park park;
	const char *op;    /* "queue.get", "obj.create"... */
	const char *tname; /* a TYPE.OP's type (object.changed events) */
	unsigned flags;    /* its flags (CMD_MUTATES: object.changed) */
	bool gone;         /* the client left: nothing to answer */
	char **argv;       /* argv_in, or a larger array once it outgrows it */
	size_t *argvlen;
	int argc, cap;
	bool ticket_due;      /* a put or acquire: its ticket, set before the full script */
	struct rc_chunk *big; /* texts past text_in (rc_text) */
	size_t text_used;
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
	bool cwait;            /* a condition.wait waiting for a notify (cond_resume) */
	bool rearmed;          /* its wait was armed again after Redis was lost */
	bool priv;             /* the object is private, owned by owner */
	struct owner owner;
	/* the usual command lives here: no allocation per argument */
	char *argv_in[RC_ARGV_IN];
	size_t argvlen_in[RC_ARGV_IN];
	char text_in[RC_TEXT_IN];
};

struct redis_state {
	struct redis_nodes nodes; /* the server, or a cluster's masters */
	bool up;
	bool stopping;
	char sha[41];
	char host_id[33]; /* new at each start: this daemon's owner id */
	unsigned long blocking;
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
	/* the sweep (redis_own.c): the next SCAN cursor ("" or "0": from the
	 * start), whether a page is asked, objects swept */
	char sweep_at[24];
	unsigned sweep_node; /* the node walked (a cluster's masters in turn) */
	bool sweeping;
	unsigned long swept;
	char *fmt; /* where a command is written in RESP (rc_queue) */
	size_t fmt_cap;
};
extern struct redis_state rs;

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

/* The connection that serves key (a cluster's master of its slot); NULL
 * while Redis is down. */
static inline redisAsyncContext *rs_ac(const char *key, size_t len)
{
	return redis_nodes_ac(&rs.nodes, key, len);
}

/* The connection that serves object name's keys; NULL while Redis is down. */
redisAsyncContext *rs_name_ac(const char *name);

/* Whether k is a meta key (PREFIX{name}); its name into name. */
bool meta_key_name(const redisReply *k, char *name);
/* One step of the sweep of objects whose scope's host died. */
void sweep_step(void);

/* The script (redis_script.lua, generated into redis_script.h). */
extern const char redis_script[];

/* redis_call.c: the command of a call, answering */
void rc_free(struct rcall *rc);
int rc_push(struct rcall *rc, char pre, const char *s, size_t len);
int rc_set(struct rcall *rc, int i, const char *s, size_t len);
int rc_pushs(struct rcall *rc, const char *s);
int rc_push_json(struct rcall *rc, json_t *v, bool eq);
struct rcall *rc_new(const char *op, const char *name, bool existing);
int rc_set_caller(struct rcall *rc, const struct conn *c);
int rc_set_ticket(struct rcall *rc);
void rc_error(struct rcall *rc, enum mpsup_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void rc_changed(struct rcall *rc, const char *op);
void rc_private(struct rcall *rc, const char **str, size_t *len);
void rc_ok(struct rcall *rc, json_t *result);
void rc_reply_error(struct rcall *rc, const char *str, size_t len);
void rc_reply_json(struct rcall *rc, const char *str, size_t len);

/* redis_own.c: ownership and leases, scope "process" */
int rc_push_owner(struct rcall *rc, uint64_t conn_id);
void hold_free(struct hold *h);
void hold_note(struct rcall *rc, json_t *result);
void renew_fire(evutil_socket_t fd, short what, void *arg);
void scoped_free(struct scoped *sc);
void rc_notice(const char *op, const char *name, const char *arg);
void scoped_gone(struct scope_link *l);
void scoped_settle(struct scoped *sc);
void scoped_forget(const char *name);

/* redis_wait.c: blocking waits */
void rc_untick(struct rcall *rc);
void rearm_all(void);
/* Keep rc's wait for when Redis is back (rc not blocked: block_end first);
 * false when it cannot wait again (gone, stopping, a barrier waiter). */
bool rearm_later(struct rcall *rc);
void rearm_expire(void);
redisAsyncContext *connect_new(const char *key, size_t len);
unsigned block_count(const char *name);
void block_start(struct rcall *rc);
bool cond_waiting(const struct rcall *rc, const char *str, size_t len);
bool cond_resume(struct rcall *rc, char news);

/* redis_hot.c: sending to a node, the hot paths */
void hot_load(redisContext *ctx);
void hot_load_async(redisAsyncContext *ac);
bool rc_send(struct rcall *rc);
void call_cancel(struct park *p);
enum cmd_ret rc_run(struct request *r, struct rcall *rc);

#endif
