/*
 * The redis state backend: its connections (a server's, or a cluster's
 * masters': daemon/core/redis_nodes.c) coming up and going down, start,
 * stop and daemon.info.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "redis_link.h"
#include "redis_int.h"

struct redis_state rs;

/* --- the nodes' connections -------------------------------------------------------- */

static void nodes_up(struct redis_nodes *rn)
{
	rs.up = true;
	rearm_all();
	if (rn->cluster)
		log_info("redis", "connected to the cluster of %s: %u masters", rs.address, rn->n);
	else
		log_info("redis", "connected to %s", rs.address);
}

static void nodes_down(struct redis_nodes *rn, bool was_up, const char *why)
{
	(void)rn;
	if (was_up)
		log_warn("redis",
			 "lost the connection to %s: %s; state commands answer "
			 "unavailable until it is back",
			 rs.address, why);
	else
		log_debug("redis", "%s", why);
	rs.up = false;
}

/* Every node knows the scripts before it runs a command (a node of a
 * cluster other than the one checked at start, a restarted server). */
static void nodes_node_open(struct redis_nodes *rn, redisAsyncContext *ac)
{
	(void)rn;
	redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", redis_script);
	hot_load_async(ac);
}

static void nodes_retrying(struct redis_nodes *rn)
{
	(void)rn;
	rearm_expire();
}

static const struct redis_nodes_ops nodes_ops = {
	.up = nodes_up,
	.down = nodes_down,
	.node_open = nodes_node_open,
	.retrying = nodes_retrying,
	.own_io = true,
};

/* --- start and stop ------------------------------------------------------------------ */

/* A blocking SCRIPT LOAD and CLUSTER SLOTS: Redis must answer before
 * mpsupd serves; then the nodes connect on the loop. */
static int redis_check(const struct conf *conf)
{
	const char *addr = conf->redis_address;
	redisContext *ctx;
	redisReply *rp;
	char err[512] = "out of memory";
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
	if (ret == 0)
		hot_load(ctx);
	if (ret == 0 && (redis_nodes_init(&rs.nodes, addr, &nodes_ops) < 0 ||
			 redis_nodes_learn(&rs.nodes, ctx, err, sizeof(err)) < 0)) {
		log_error("redis", "state_backend = redis: %s", err);
		ret = -1;
	}
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
	if (!(rs.renew = evtimer_new(daemon_g.base, renew_fire, NULL)))
		return -1;
	if (redis_check(conf) < 0)
		return -1;
	renew_fire(-1, 0, NULL);
	log_info("redis", "shared state in redis at %s (prefix %s, host id %s%s)",
		 conf->redis_address, conf->redis_prefix, rs.host_id,
		 rs.nodes.cluster ? ", a cluster" : "");
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
	redis_nodes_stop(&rs.nodes);
	rs.up = false;
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
		st,
		json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I}", "address",
			  rs.address, "prefix", rs.prefix, "connection",
			  redis_nodes_state(&rs.nodes), "host_id", rs.host_id, "lease", rs.lease,
			  "reconnects", (json_int_t)rs.nodes.reconnects, "connections_lost",
			  (json_int_t)rs.nodes.lost, "blocked_waiters", (json_int_t)rs.blocking,
			  "holds", (json_int_t)hold_count(), "lease_renewals",
			  (json_int_t)rs.renewals, "scoped_swept", (json_int_t)rs.swept));
	redis_nodes_info(&rs.nodes, st);
}
