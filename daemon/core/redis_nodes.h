/*
 * The nodes of one Redis: a single server, or every master of a Redis
 * Cluster. A user of Redis (the redis state backend, the redis task
 * queue) holds one struct redis_nodes and asks it for the connection that
 * serves a key: with one server that is its one connection; in a cluster
 * it is the master that owns the key's hash slot ({hash tag} rules).
 *
 * The map of slots is learnt with CLUSTER SLOTS: at start from the
 * configured address (blocking, as the check that Redis answers), and
 * again at every reconnect, asking in turn the configured address and the
 * masters of the last map (after a failover the configured node may be
 * gone). The nodes are up together or down together: one lost connection
 * takes down the others and the whole set reconnects after a backoff, so
 * a user sees one state (commands answer unavailable while it is down). A
 * MOVED answer means the map is out of date: the set reconnects at once
 * and learns the new one.
 */
#ifndef MPSUPD_REDIS_NODES_H
#define MPSUPD_REDIS_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#define REDIS_SLOTS 16384
/* The masters of a cluster that one set connects to. */
#define REDIS_NODES_MAX 64
/* "host:port" of a node, or a configured Unix socket path. */
#define REDIS_ADDR_MAX 256

struct redis_nodes;

/* What the user of a set is told. */
struct redis_nodes_ops {
	/* every node is connected */
	void (*up)(struct redis_nodes *rn);
	/* the set went down (was_up) or could not come up; it tries again
	 * after its backoff */
	void (*down)(struct redis_nodes *rn, bool was_up, const char *why);
	/* optional: a node's connection is open (before any command of the
	 * user is written on it: load scripts here) */
	void (*node_open)(struct redis_nodes *rn, redisAsyncContext *ac);
	/* optional: a new attempt to connect begins */
	void (*retrying)(struct redis_nodes *rn);
	/* the nodes' connections read with a persistent event and write at the
	 * end of the loop's pass (see redis_nodes.c) */
	bool own_io;
};

struct redis_node {
	redisAsyncContext *ac; /* NULL while down */
	bool up;
	char addr[REDIS_ADDR_MAX];
};

struct redis_nodes {
	const struct redis_nodes_ops *ops;
	char address[REDIS_ADDR_MAX]; /* as configured */
	bool cluster;                 /* the server is a cluster node */
	bool up, stopping;
	unsigned n; /* nodes of the set */
	struct redis_node node[REDIS_NODES_MAX];
	uint8_t slot_node[REDIS_SLOTS];  /* a cluster's: the node of each slot */
	redisAsyncContext *probe;        /* asking CLUSTER SLOTS */
	char probe_addr[REDIS_ADDR_MAX]; /* of the probe */
	char moved_to[REDIS_ADDR_MAX];   /* the master a MOVED named: asked first */
	/* the masters of the last map: asked in turn with the configured
	 * address for the next one */
	unsigned known, attempt;
	char known_addr[REDIS_NODES_MAX][REDIS_ADDR_MAX];
	/* the connections a MOVED put down, answering what they were asked
	 * before they close (what ran is not answered unavailable) */
	redisAsyncContext *draining[REDIS_NODES_MAX];
	unsigned n_draining;
	struct event *retry, *reset;
	double backoff;
	unsigned long reconnects, lost, moved;
};

/* The hash slot of key: CRC16 of its {hash tag} (or of the whole key when
 * it has none) modulo 16384. */
unsigned redis_key_slot(const char *key, size_t len);

/* Fill rn's map from a CLUSTER SLOTS reply; host is the address's host,
 * used for a node that reports no IP. 0, or -EPROTO when the reply is not
 * a full map (a slot without a master, more than REDIS_NODES_MAX masters). */
int redis_nodes_map(struct redis_nodes *rn, const redisReply *slots, const char *host);

/* Set rn up for address (nothing is connected yet); -ENOMEM. */
int redis_nodes_init(struct redis_nodes *rn, const char *address,
		     const struct redis_nodes_ops *ops);
/* Learn over ctx (a blocking connection to the address, at start) whether
 * it is a cluster and its map, then open the nodes' connections on the
 * loop: commands queue on them at once. 0, or -1 with why in err. */
int redis_nodes_learn(struct redis_nodes *rn, redisContext *ctx, char *err, size_t errlen);
/* Connect on the loop (the map asked for first) unless rn is connected,
 * connecting or waiting to try again. */
void redis_nodes_connect(struct redis_nodes *rn);
void redis_nodes_stop(struct redis_nodes *rn);

/* The connection for key (connecting or up); NULL while the set is down. */
static inline redisAsyncContext *redis_nodes_ac(const struct redis_nodes *rn, const char *key,
						size_t len)
{
	if (!rn->cluster)
		return rn->node[0].ac;
	return rn->node[rn->slot_node[redis_key_slot(key, len)]].ac;
}

/* The address of the node for key (where a dedicated connection goes). */
const char *redis_nodes_addr(const struct redis_nodes *rn, const char *key, size_t len);

/* What a cluster's error text err (len bytes) says: nothing of the kind;
 * REFUSED (ASK, TRYAGAIN: a slot is being moved); RESET (MOVED, the map
 * is out of date; CLUSTERDOWN, the cluster is not whole): the set learns
 * the map again, soon, not in this call. In both the command did not run. */
enum redis_redirect {
	REDIS_REDIRECT_NONE,
	REDIS_REDIRECT_REFUSED,
	REDIS_REDIRECT_RESET,
};
enum redis_redirect redis_nodes_redirected(struct redis_nodes *rn, const char *err, size_t len);

/* Whether any node is connected or connecting. */
bool redis_nodes_any(const struct redis_nodes *rn);

/* Add to o: cluster (bool), nodes (the masters' addresses), slots_moved
 * (MOVED answers seen). */
void redis_nodes_info(const struct redis_nodes *rn, json_t *o);

/* "connected", "connecting" or "down". */
const char *redis_nodes_state(const struct redis_nodes *rn);

#endif
