/*
 * The redis state backend: its main connection (reconnected with a
 * backoff), start, stop and daemon.info.
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

/* --- the main connection ---------------------------------------------------------- */

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

/*
 * The main connection's events, in place of the libevent adapter's once
 * it is connected: a persistent read event (the adapter's is re-armed, two
 * epoll_ctl, after every read), and commands written when the loop's pass
 * over its ready events ends (the adapter waits for the next pass's
 * epoll_wait to report the socket writable, arming and disarming a write
 * event around it); a write event only while the socket is full.
 */
struct main_io {
	redisAsyncContext *ac;
	struct event *rd, *wr, *flush;
	bool rd_on, flushing;
	/* the adapter's, which frees its events */
	void *adapter;
	void (*adapter_cleanup)(void *adapter);
};

static void io_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redisAsyncHandleRead(((struct main_io *)arg)->ac);
}

/* Write what is queued (the end of a pass, or the socket has room again). */
static void io_write(evutil_socket_t fd, short what, void *arg)
{
	struct main_io *io = arg;

	(void)fd;
	(void)what;
	io->flushing = true;
	redisAsyncHandleWrite(io->ac);
	io->flushing = false;
}

static void io_add_read(void *arg)
{
	struct main_io *io = arg;

	if (!io->rd_on)
		io->rd_on = event_add(io->rd, NULL) == 0;
}

static void io_del_read(void *arg)
{
	struct main_io *io = arg;

	event_del(io->rd);
	io->rd_on = false;
}

/* A command was queued (flush at the end of this pass), or a write left
 * some behind (wait for room). */
static void io_add_write(void *arg)
{
	struct main_io *io = arg;

	if (io->flushing)
		event_add(io->wr, NULL);
	else if (!event_pending(io->flush, EV_WRITE, NULL))
		event_active(io->flush, EV_WRITE, 1);
}

static void io_del_write(void *arg)
{
	event_del(((struct main_io *)arg)->wr);
}

static void io_cleanup(void *arg)
{
	struct main_io *io = arg;

	event_free(io->rd);
	event_free(io->wr);
	event_free(io->flush);
	if (io->adapter_cleanup)
		io->adapter_cleanup(io->adapter);
	free(io);
}

/* Put the main_io hooks on ac (connected); the adapter's stay on failure. */
static void io_take_over(redisAsyncContext *ac)
{
	struct main_io *io = calloc(1, sizeof(*io));

	if (!io)
		return;
	io->ac = ac;
	io->rd = event_new(daemon_g.base, ac->c.fd, EV_READ | EV_PERSIST, io_read, io);
	io->wr = event_new(daemon_g.base, ac->c.fd, EV_WRITE, io_write, io);
	io->flush = event_new(daemon_g.base, -1, 0, io_write, io);
	if (!io->rd || !io->wr || !io->flush) {
		if (io->rd)
			event_free(io->rd);
		if (io->wr)
			event_free(io->wr);
		if (io->flush)
			event_free(io->flush);
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

static void main_connected(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK) {
		log_debug("redis", "cannot connect to %s: %s", rs.address, ac->errstr);
		rs.ac = NULL; /* hiredis frees it */
		retry_later();
		return;
	}
	io_take_over(rs.ac);
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
	if (ret == 0)
		hot_load(ctx);
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
		st, json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I}", "address",
			      rs.address, "prefix", rs.prefix, "connection",
			      rs.up ? "connected" : (rs.ac ? "connecting" : "down"), "host_id",
			      rs.host_id, "lease", rs.lease, "reconnects",
			      (json_int_t)rs.reconnects, "connections_lost", (json_int_t)rs.lost,
			      "blocked_waiters", (json_int_t)rs.blocking, "holds",
			      (json_int_t)hold_count(), "lease_renewals", (json_int_t)rs.renewals,
			      "scoped_swept", (json_int_t)rs.swept));
}
