/*
 * The nodes of one Redis: a server or a cluster's masters (redis_nodes.h).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "redis_link.h"
#include "redis_nodes.h"

/* --- slots ------------------------------------------------------------------------ */

/* CRC16-CCITT (XMODEM: polynomial 0x1021, no reflection, start 0), the
 * checksum of Redis Cluster's key slots; a table of the 256 bytes. */
static uint16_t crc_table[256];

static void crc_init(void)
{
	for (unsigned b = 0; b < 256; b++) {
		uint16_t c = (uint16_t)(b << 8);

		for (int k = 0; k < 8; k++)
			c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
		crc_table[b] = c;
	}
}

static uint16_t crc16(const char *s, size_t len)
{
	uint16_t c = 0;

	if (!crc_table[1])
		crc_init();
	for (size_t i = 0; i < len; i++)
		c = (uint16_t)((c << 8) ^ crc_table[((c >> 8) ^ (unsigned char)s[i]) & 0xff]);
	return c;
}

unsigned redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	/* the tag: from the first '{' to the next '}', when it is not empty */
	if (open) {
		size_t off = (size_t)(open - key) + 1;

		close = memchr(open + 1, '}', len - off);
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) & (REDIS_SLOTS - 1);
	}
	return crc16(key, len) & (REDIS_SLOTS - 1);
}

/* The host part of address ("" for a Unix socket path). */
static void address_host(const char *address, char *host, size_t len)
{
	const char *colon = strrchr(address, ':');

	if (address[0] == '/' || !colon)
		snprintf(host, len, "%s", "");
	else
		snprintf(host, len, "%.*s", (int)(colon - address), address);
}

/* The index of the master at ip:port in rn (added when new); -1 when full. */
static int map_node(struct redis_nodes *rn, unsigned *n, const redisReply *ip,
		    const redisReply *port, const char *host)
{
	char addr[REDIS_ADDR_MAX];
	const char *h = ip->str && ip->len && strcmp(ip->str, "?") != 0 ? ip->str : host;

	if (!h[0])
		h = "127.0.0.1";
	snprintf(addr, sizeof(addr), strchr(h, ':') ? "[%s]:%lld" : "%s:%lld", h, port->integer);
	for (unsigned i = 0; i < *n; i++)
		if (strcmp(rn->node[i].addr, addr) == 0)
			return (int)i;
	if (*n == REDIS_NODES_MAX)
		return -1;
	snprintf(rn->node[*n].addr, sizeof(rn->node[*n].addr), "%s", addr);
	return (int)(*n)++;
}

int redis_nodes_map(struct redis_nodes *rn, const redisReply *slots, const char *host)
{
	static uint8_t seen[REDIS_SLOTS];
	unsigned n = 0, covered = 0;

	if (!slots || slots->type != REDIS_REPLY_ARRAY)
		return -EPROTO;
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < slots->elements; i++) {
		const redisReply *r = slots->element[i], *m;
		long long lo, hi;
		int k;

		if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
		    r->element[0]->type != REDIS_REPLY_INTEGER ||
		    r->element[1]->type != REDIS_REPLY_INTEGER)
			return -EPROTO;
		lo = r->element[0]->integer;
		hi = r->element[1]->integer;
		m = r->element[2];
		if (lo < 0 || hi >= REDIS_SLOTS || lo > hi || m->type != REDIS_REPLY_ARRAY ||
		    m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer <= 0 ||
		    m->element[1]->integer > 65535)
			return -EPROTO;
		if ((k = map_node(rn, &n, m->element[0], m->element[1], host)) < 0)
			return -EPROTO;
		for (long long s = lo; s <= hi; s++) {
			covered += !seen[s];
			seen[s] = 1;
			rn->slot_node[s] = (uint8_t)k;
		}
	}
	if (covered != REDIS_SLOTS)
		return -EPROTO;
	rn->n = n;
	return 0;
}

/* --- the nodes' own events ------------------------------------------------------------ */

/*
 * A node's events, in place of the libevent adapter's once it is
 * connected: a persistent read event (the adapter's is re-armed, two
 * epoll_ctl, after every read), and commands written when the loop's pass
 * over its ready events ends (the adapter waits for the next pass's
 * epoll_wait to report the socket writable, arming and disarming a write
 * event around it); a write event only while the socket is full.
 */
struct node_io {
	redisAsyncContext *ac;
	struct event *rd, *wr, *flush;
	bool rd_on, flushing;
	bool freed; /* by a failed write, inside io_write: it frees io */
	/* the adapter's, which frees its events */
	void *adapter;
	void (*adapter_cleanup)(void *adapter);
};

static void io_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redisAsyncHandleRead(((struct node_io *)arg)->ac);
}

/* Write what is queued (the end of a pass, or the socket has room again). */
static void io_write(evutil_socket_t fd, short what, void *arg)
{
	struct node_io *io = arg;

	(void)fd;
	(void)what;
	io->flushing = true;
	redisAsyncHandleWrite(io->ac);
	if (io->freed) { /* the write failed: the context went, io_cleanup ran */
		free(io);
		return;
	}
	io->flushing = false;
}

static void io_add_read(void *arg)
{
	struct node_io *io = arg;

	if (!io->rd_on)
		io->rd_on = event_add(io->rd, NULL) == 0;
}

static void io_del_read(void *arg)
{
	struct node_io *io = arg;

	event_del(io->rd);
	io->rd_on = false;
}

/* A command was queued (flush at the end of this pass), or a write left
 * some behind (wait for room). */
static void io_add_write(void *arg)
{
	struct node_io *io = arg;

	if (io->flushing)
		event_add(io->wr, NULL);
	else if (!event_pending(io->flush, EV_WRITE, NULL))
		event_active(io->flush, EV_WRITE, 1);
}

static void io_del_write(void *arg)
{
	event_del(((struct node_io *)arg)->wr);
}

static void io_free_events(struct node_io *io)
{
	if (io->rd)
		event_free(io->rd);
	if (io->wr)
		event_free(io->wr);
	if (io->flush)
		event_free(io->flush);
}

static void io_cleanup(void *arg)
{
	struct node_io *io = arg;

	io_free_events(io);
	if (io->adapter_cleanup)
		io->adapter_cleanup(io->adapter);
	if (io->flushing)
		io->freed = true; /* io_write frees it once hiredis returns */
	else
		free(io);
}

/* Put the node_io hooks on ac (connected); the adapter's stay on failure. */
static void io_take_over(redisAsyncContext *ac)
{
	struct node_io *io = calloc(1, sizeof(*io));

	if (!io)
		return;
	io->ac = ac;
	io->rd = event_new(daemon_g.base, ac->c.fd, EV_READ | EV_PERSIST, io_read, io);
	io->wr = event_new(daemon_g.base, ac->c.fd, EV_WRITE, io_write, io);
	io->flush = event_new(daemon_g.base, -1, 0, io_write, io);
	if (!io->rd || !io->wr || !io->flush) {
		io_free_events(io);
		free(io);
		return;
	}
	/* the adapter's events go quiet; its cleanup frees them */
	ac->ev.delRead(ac->ev.data);
	ac->ev.delWrite(ac->ev.data);
	io->adapter = ac->ev.data;
	io->adapter_cleanup = ac->ev.cleanup;
	ac->ev.data = io;
	ac->ev.addRead = io_add_read;
	ac->ev.delRead = io_del_read;
	ac->ev.addWrite = io_add_write;
	ac->ev.delWrite = io_del_write;
	ac->ev.cleanup = io_cleanup;
	io_add_read(io);
	io_add_write(io);
}

/* --- up and down ---------------------------------------------------------------------- */

static void nodes_connect(struct redis_nodes *rn);

static int node_index(const struct redis_nodes *rn, const redisAsyncContext *ac)
{
	for (unsigned i = 0; i < rn->n; i++)
		if (rn->node[i].ac == ac)
			return (int)i;
	return -1;
}

/* Close every connection of rn. With drain, a connected one takes no new
 * command but answers those written already before it closes (one that
 * ran on a master that is fine must not be answered unavailable); else,
 * and for the probe and those still connecting, what was queued on it is
 * answered with a NULL reply (their users' callbacks run now). */
static void nodes_close(struct redis_nodes *rn, bool drain)
{
	redisAsyncContext *ac[REDIS_NODES_MAX + 1];
	unsigned n = 0;

	/* forgotten first: their callbacks find no connection to use */
	if (rn->probe)
		ac[n++] = rn->probe;
	rn->probe = NULL;
	for (unsigned i = 0; i < rn->n; i++) {
		if (rn->node[i].ac)
			ac[n++] = rn->node[i].ac;
		rn->node[i].ac = NULL;
		rn->node[i].up = false;
	}
	for (unsigned i = 0; i < n; i++) {
		if (drain && (ac[i]->c.flags & REDIS_CONNECTED) &&
		    rn->n_draining < REDIS_NODES_MAX) {
			rn->draining[rn->n_draining++] = ac[i];
			redisAsyncDisconnect(ac[i]); /* node_disconnected forgets it */
		} else {
			redisAsyncFree(ac[i]);
		}
	}
}

static void retry_later(struct redis_nodes *rn)
{
	struct timeval tv;

	if (rn->stopping || evtimer_pending(rn->retry, NULL))
		return;
	rn->backoff = redis_link_backoff(rn->backoff);
	tv.tv_sec = (time_t)rn->backoff;
	tv.tv_usec = (suseconds_t)((rn->backoff - (double)tv.tv_sec) * 1e6);
	evtimer_add(rn->retry, &tv);
}

/* One connection failed or closed: the set goes down and tries again. */
static void nodes_fail(struct redis_nodes *rn, const char *why)
{
	bool was_up = rn->up;

	rn->up = false;
	if (was_up)
		rn->lost++;
	nodes_close(rn, !rn->stopping);
	if (rn->stopping)
		return;
	rn->ops->down(rn, was_up, why);
	retry_later(rn);
}

/* Node i is up; the set is when every node is. */
static void node_up(struct redis_nodes *rn, unsigned i)
{
	rn->node[i].up = true;
	for (unsigned k = 0; k < rn->n; k++)
		if (!rn->node[k].up)
			return;
	rn->up = true;
	rn->backoff = 0;
	rn->attempt = 0;
	rn->ops->up(rn);
}

/* A cluster node's CLUSTER INFO: it is up once it says the cluster is ok
 * (a master just restarted answers CLUSTERDOWN a while: the waits re-armed
 * on it then would be answered unavailable); else the set tries again
 * after its backoff. */
static void node_state(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_nodes *rn = priv;
	redisReply *rp = reply;
	char why[REDIS_ADDR_MAX + 64];
	int i;

	if (!rp || (i = node_index(rn, ac)) < 0)
		return; /* closed with the set */
	if (rp->type != REDIS_REPLY_STRING || !strstr(rp->str, "cluster_state:ok")) {
		snprintf(why, sizeof(why), "%s: the cluster is not ok", rn->node[i].addr);
		nodes_fail(rn, why);
		return;
	}
	node_up(rn, (unsigned)i);
}

static void node_connected(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct redis_nodes *rn = ac->data;
	int i = rn ? node_index(rn, ac) : -1;
	char why[REDIS_ADDR_MAX + 128];

	if (i < 0)
		return;
	if (status != REDIS_OK) {
		rn->node[i].ac = NULL; /* hiredis frees it */
		snprintf(why, sizeof(why), "cannot connect to %s: %s", rn->node[i].addr,
			 ac->errstr);
		nodes_fail(rn, why);
		return;
	}
	if (rn->ops->own_io)
		io_take_over(ac);
	if (rn->cluster)
		redisAsyncCommand(ac, node_state, rn, "CLUSTER INFO");
	else
		node_up(rn, (unsigned)i);
}

/* Forget ac among the draining connections (it closed). */
static void drain_forget(struct redis_nodes *rn, const redisAsyncContext *ac)
{
	for (unsigned i = 0; i < rn->n_draining; i++)
		if (rn->draining[i] == ac) {
			rn->draining[i] = rn->draining[--rn->n_draining];
			return;
		}
}

static void node_disconnected(const redisAsyncContext *ac, int status)
{
	struct redis_nodes *rn = ac->data;
	int i = rn ? node_index(rn, ac) : -1;
	char why[REDIS_ADDR_MAX + 128];

	if (i < 0) {
		if (rn)
			drain_forget(rn, ac);
		return;
	}
	rn->node[i].ac = NULL; /* hiredis frees it */
	snprintf(why, sizeof(why), "%s: %s", rn->node[i].addr,
		 status == REDIS_OK ? "closed" : ac->errstr);
	nodes_fail(rn, why);
}

/* Open node i's connection (its commands queue until it is connected). */
static int node_open(struct redis_nodes *rn, unsigned i)
{
	redisAsyncContext *ac = redis_link_open(rn->node[i].addr);

	if (!ac)
		return -1;
	ac->data = rn;
	rn->node[i].ac = ac;
	rn->node[i].up = false;
	redisAsyncSetConnectCallback(ac, node_connected);
	redisAsyncSetDisconnectCallback(ac, node_disconnected);
	if (rn->ops->node_open)
		rn->ops->node_open(rn, ac);
	return 0;
}

/* Open a connection to every node of the map. */
static void nodes_open(struct redis_nodes *rn)
{
	char why[REDIS_ADDR_MAX + 64];

	for (unsigned i = 0; i < rn->n; i++)
		if (node_open(rn, i) < 0) {
			snprintf(why, sizeof(why), "cannot connect to %s", rn->node[i].addr);
			nodes_fail(rn, why);
			return;
		}
}

/* Keep the masters of a cluster's map: where to ask for the next one. */
static void nodes_remember(struct redis_nodes *rn)
{
	rn->known = rn->n;
	for (unsigned i = 0; i < rn->n; i++)
		memcpy(rn->known_addr[i], rn->node[i].addr, sizeof(rn->known_addr[i]));
}

/* Whether CLUSTER SLOTS's error says the server is not a cluster node
 * ("ERR This instance has cluster support disabled", an unknown or
 * forbidden command), not that a node cannot answer yet (LOADING, BUSY,
 * MASTERDOWN, NOAUTH...): a cluster node taken for a server would get
 * every key. */
static bool not_cluster(const redisReply *rp)
{
	return rp->str && (strncmp(rp->str, "ERR", 3) == 0 || strncmp(rp->str, "NOPERM", 6) == 0);
}

/* The probe's CLUSTER SLOTS: a cluster's map, or a single server (whose
 * connection the probe then becomes). */
static void probe_slots(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_nodes *rn = priv;
	redisReply *rp = reply;
	char host[REDIS_ADDR_MAX], why[2 * REDIS_ADDR_MAX];

	if (!rp || ac != rn->probe)
		return; /* closed with the set (nodes_close) */
	rn->probe = NULL;
	if (rp->type == REDIS_REPLY_ERROR && !not_cluster(rp)) {
		snprintf(why, sizeof(why), "%s: CLUSTER SLOTS: %s", rn->probe_addr, rp->str);
		redisAsyncDisconnect(ac);
		nodes_fail(rn, why);
		return;
	}
	if (rp->type == REDIS_REPLY_ERROR) {
		/* "ERR This instance has cluster support disabled" */
		rn->cluster = false;
		rn->n = 1;
		snprintf(rn->node[0].addr, sizeof(rn->node[0].addr), "%s", rn->probe_addr);
		rn->node[0].ac = ac; /* probe_disconnected hands its loss on */
		if (rn->ops->node_open)
			rn->ops->node_open(rn, ac);
		node_connected(ac, REDIS_OK);
		return;
	}
	address_host(rn->probe_addr, host, sizeof(host));
	redisAsyncDisconnect(ac);
	if (redis_nodes_map(rn, rp, host) < 0) {
		nodes_fail(rn, "CLUSTER SLOTS: not every slot has a master");
		return;
	}
	rn->cluster = true;
	nodes_remember(rn);
	nodes_open(rn);
}

static void probe_connected(const redisAsyncContext *ac, int status)
{
	struct redis_nodes *rn = ac->data;
	char why[REDIS_ADDR_MAX + 128];

	if (!rn || ac != rn->probe)
		return;
	if (status != REDIS_OK) {
		rn->probe = NULL; /* hiredis frees it */
		snprintf(why, sizeof(why), "cannot connect to %s: %s", rn->probe_addr, ac->errstr);
		nodes_fail(rn, why);
	}
}

/* The probe's disconnect callback, also once the probe is a single
 * server's node 0 (hiredis 0.14 refuses to set a second one). */
static void probe_disconnected(const redisAsyncContext *ac, int status)
{
	struct redis_nodes *rn = ac->data;

	if (rn && ac == rn->probe) {
		rn->probe = NULL;
		nodes_fail(rn, "closed while asked for its slots");
	} else if (rn) {
		node_disconnected(ac, status);
	}
}

/* Connect again: ask for the map first, in turn the configured address
 * and the masters of the last map (the configured node may be the one
 * that failed, a replica of it serving its slots now). */
static void nodes_connect(struct redis_nodes *rn)
{
	unsigned k = rn->attempt++ % (1 + rn->known);
	char why[REDIS_ADDR_MAX + 64];

	/* after a MOVED, first the master it named: its map is new */
	snprintf(rn->probe_addr, sizeof(rn->probe_addr), "%s",
		 rn->moved_to[0] ? rn->moved_to
		 : k             ? rn->known_addr[k - 1]
				 : rn->address);
	rn->moved_to[0] = '\0';
	rn->n = 0;
	if (!(rn->probe = redis_link_open(rn->probe_addr))) {
		snprintf(why, sizeof(why), "cannot connect to %s", rn->probe_addr);
		nodes_fail(rn, why);
		return;
	}
	rn->probe->data = rn;
	redisAsyncSetConnectCallback(rn->probe, probe_connected);
	redisAsyncSetDisconnectCallback(rn->probe, probe_disconnected);
	redisAsyncCommand(rn->probe, probe_slots, rn, "CLUSTER SLOTS");
}

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
	struct redis_nodes *rn = arg;

	(void)fd;
	(void)what;
	rn->reconnects++;
	if (rn->ops->retrying)
		rn->ops->retrying(rn);
	nodes_connect(rn);
}

/* A MOVED or a CLUSTERDOWN was seen: learn the map again (outside the
 * reply's callback); the old connections drain (nodes_fail). */
static void reset_fire(evutil_socket_t fd, short what, void *arg)
{
	struct redis_nodes *rn = arg;

	(void)fd;
	(void)what;
	if (!rn->up || rn->stopping)
		return;
	rn->backoff = 0;
	nodes_fail(rn, "the cluster's slots moved or it is not whole: learning its map again");
}

int redis_nodes_init(struct redis_nodes *rn, const char *address, const struct redis_nodes_ops *ops)
{
	memset(rn, 0, sizeof(*rn));
	rn->ops = ops;
	snprintf(rn->address, sizeof(rn->address), "%s", address);
	if (!(rn->retry = evtimer_new(daemon_g.base, retry_fire, rn)) ||
	    !(rn->reset = event_new(daemon_g.base, -1, 0, reset_fire, rn)))
		return -ENOMEM;
	return 0;
}

int redis_nodes_learn(struct redis_nodes *rn, redisContext *ctx, char *err, size_t errlen)
{
	redisReply *rp = redisCommand(ctx, "CLUSTER SLOTS");
	char host[REDIS_ADDR_MAX];
	int ret = 0;

	if (!rp) {
		snprintf(err, errlen, "%s: %s", rn->address, ctx->errstr);
		return -1;
	}
	if (rp->type == REDIS_REPLY_ERROR && !not_cluster(rp)) {
		snprintf(err, errlen, "%s: CLUSTER SLOTS: %s", rn->address, rp->str);
		ret = -1;
	} else if (rp->type == REDIS_REPLY_ERROR) {
		rn->cluster = false;
		rn->n = 1;
		snprintf(rn->node[0].addr, sizeof(rn->node[0].addr), "%s", rn->address);
	} else {
		address_host(rn->address, host, sizeof(host));
		rn->cluster = true;
		if (redis_nodes_map(rn, rp, host) < 0) {
			snprintf(err, errlen, "%s is a cluster node whose CLUSTER SLOTS %s",
				 rn->address,
				 "does not give every slot a master (or has too many masters)");
			ret = -1;
		}
	}
	freeReplyObject(rp);
	if (ret < 0)
		return ret;
	if (rn->cluster)
		nodes_remember(rn);
	nodes_open(rn);
	return 0;
}

void redis_nodes_connect(struct redis_nodes *rn)
{
	if (rn->stopping || rn->probe || redis_nodes_any(rn) || evtimer_pending(rn->retry, NULL))
		return;
	nodes_connect(rn);
}

void redis_nodes_stop(struct redis_nodes *rn)
{
	rn->stopping = true;
	rn->up = false;
	nodes_close(rn, false);
	while (rn->n_draining) { /* node_disconnected forgets it (or not) */
		redisAsyncContext *ac = rn->draining[--rn->n_draining];

		redisAsyncFree(ac);
	}
	if (rn->retry)
		event_free(rn->retry);
	if (rn->reset)
		event_free(rn->reset);
	rn->retry = rn->reset = NULL;
}

const char *redis_nodes_addr(const struct redis_nodes *rn, const char *key, size_t len)
{
	if (!rn->cluster)
		return rn->address;
	return rn->node[rn->slot_node[redis_key_slot(key, len)]].addr;
}

/* Whether s (len bytes) starts with the word w and a blank. */
static bool starts(const char *s, size_t len, const char *w)
{
	size_t n = strlen(w);

	return len > n && memcmp(s, w, n) == 0 && s[n] == ' ';
}

enum redis_redirect redis_nodes_redirected(struct redis_nodes *rn, const char *err, size_t len)
{
	bool moved;

	if (!err)
		return REDIS_REDIRECT_NONE;
	if ((moved = starts(err, len, "MOVED")) || starts(err, len, "CLUSTERDOWN")) {
		const char *to = moved ? memrchr(err, ' ', len) : NULL;

		rn->moved += moved;
		/* "MOVED SLOT HOST:PORT": ask HOST:PORT for the next map */
		if (to && (size_t)(err + len - to - 1) < sizeof(rn->moved_to))
			snprintf(rn->moved_to, sizeof(rn->moved_to), "%.*s",
				 (int)(err + len - to - 1), to + 1);
		if (rn->reset && !event_pending(rn->reset, EV_TIMEOUT, NULL))
			event_active(rn->reset, EV_TIMEOUT, 1);
		return REDIS_REDIRECT_RESET;
	}
	if (starts(err, len, "ASK") || starts(err, len, "TRYAGAIN"))
		return REDIS_REDIRECT_REFUSED;
	return REDIS_REDIRECT_NONE;
}

bool redis_nodes_any(const struct redis_nodes *rn)
{
	for (unsigned i = 0; i < rn->n; i++)
		if (rn->node[i].ac)
			return true;
	return false;
}

const char *redis_nodes_state(const struct redis_nodes *rn)
{
	if (rn->up)
		return "connected";
	return redis_nodes_any(rn) || rn->probe ? "connecting" : "down";
}

void redis_nodes_info(const struct redis_nodes *rn, json_t *o)
{
	json_t *nodes = json_array();

	for (unsigned i = 0; nodes && rn->cluster && i < rn->n; i++)
		json_array_append_new(nodes, json_string(rn->node[i].addr));
	json_object_set_new(o, "cluster", json_boolean(rn->cluster));
	if (nodes)
		json_object_set_new(o, "nodes", nodes);
	json_object_set_new(o, "slots_moved", json_integer((json_int_t)rn->moved));
}
