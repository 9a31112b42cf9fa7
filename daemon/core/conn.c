/*
 * The control socket and its connections. Each connection reads straight
 * into its framer, runs every complete line it holds, and writes all the
 * answers of one read with one write; the write event is armed only when
 * the socket would block. A connection whose request waits (CMD_WAIT) runs
 * nothing more until that request is answered; one that streams discards
 * input and is dropped when it stops reading.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "jsonw.h"
#include "log.h"
#include "mpsup.h"
#include "access.h"
#include "stream.h"

#define READ_CHUNK (64 * 1024)
#define LINGER_SECS 2.0        /* how long a closing peer may keep sending */
#define LINGER_BYTES (64 << 20) /* and how much */
#define MAX_PEER_GROUPS 256
#define OUTPUT_PAUSE_BYTES (256 * 1024) /* see output_backed_up() */

static TAILQ_HEAD(conn_list, conn) conns = TAILQ_HEAD_INITIALIZER(conns);
static unsigned n_conns;
static unsigned n_exempt;     /* workers' connections beyond the role shares */
static size_t out_total;      /* unsent output of every connection */
static struct event *ev_budget; /* enforces max_output_total from the loop */
/* The core's own view of a peer ([access] only) until the daemon's
 * assembly installs the supervision-aware one (server_set_peer_policy). */
static enum role core_role(uid_t uid, const gid_t *gids, int n_gids)
{
	return access_role(daemon_g.conf, uid, gids, n_gids, false);
}
static const struct peer_policy core_policy = { .role = core_role };
static const struct peer_policy *policy = &core_policy;

/* No durable store: answers never wait (server_set_commit_barrier). */
static enum barrier_result no_barrier_wait(void (*fn)(void *key), void *key)
{
	(void)fn;
	(void)key;
	return BARRIER_GO;
}
static void no_barrier_cancel(void (*fn)(void *key), void *key)
{
	(void)fn;
	(void)key;
}
static void no_barrier_forget(void *key)
{
	(void)key;
}
static void no_barrier_commit(void)
{
}
static const struct commit_barrier no_barrier = {
	.barrier = no_barrier_wait,
	.cancel = no_barrier_cancel,
	.forget = no_barrier_forget,
	.commit = no_barrier_commit,
};
static const struct commit_barrier *barrier = &no_barrier;
static uint64_t next_conn_id = 1;
static int listen_fd = -1;
static bool listen_activated; /* handed over by systemd: not ours to unlink */
static struct event *ev_accept, *ev_accept_resume;
static char *socket_path;

static void conn_process(struct conn *c);
static void conn_update_events(struct conn *c);
static void conn_linger(struct conn *c);
static bool conn_wants_read(struct conn *c);
static void conn_barrier_passed(void *arg);
static struct conn *conn_new(int fd, uid_t uid, gid_t gid, pid_t pid, gid_t *gids, int n_gids);

const char *server_socket_path(void)
{
	return socket_path ? socket_path : "";
}

unsigned server_clients(void)
{
	return n_conns;
}

/* The peer's groups: its supplementary groups (SO_PEERGROUPS) and its
 * primary group, in a new array; NULL when out of memory. */
static gid_t *peer_groups(int fd, gid_t gid, int *ret_n)
{
	gid_t *gids = malloc(sizeof(gid_t) * (MAX_PEER_GROUPS + 1));
	socklen_t len = sizeof(gid_t) * MAX_PEER_GROUPS;
	int n = 0;

	if (!gids)
		return NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) == 0)
		n = (int)(len / sizeof(gid_t));
	gids[n++] = gid;
	*ret_n = n;
	return gids;
}

void server_refresh_roles(void)
{
	struct conn *c;

	TAILQ_FOREACH(c, &conns, entry) {
		enum role r = policy->role(c->uid, c->gids, c->n_gids);

		if (r != c->role)
			log_info("access", "client %llu (uid %d): role %s -> %s",
				 (unsigned long long)c->id, (int)c->uid, role_names[c->role],
				 role_names[r]);
		c->role = r;
	}
}

/* Free a closed connection (deferred so no callback runs on freed memory). */
static void conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	mpsup_framer_free(c->in);
	if (c->out)
		evbuffer_free(c->out);
	free(c->gids);
	free(c->exempt_pool);
	free(c);
}

void conn_close(struct conn *c)
{
	struct conn_hook *h;

	if (c->dead)
		return;
	c->dead = true;
	if (c->held)
		barrier->cancel(conn_barrier_passed, c);
	barrier->forget(c);
	if (c->kept) {
		struct request *r = c->kept;
		c->kept = NULL;
		if (r->cancel)
			r->cancel(r);
		request_free(r);
	}
	while ((h = c->hooks)) {
		c->hooks = h->next;
		h->fn(c, h->arg);
		free(h);
	}
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_resume);
	close(c->fd);
	TAILQ_REMOVE(&conns, c, entry);
	n_conns--;
	n_exempt -= c->exempt_pool != NULL;
	stream_slot_give(c);
	/* Its output will never be written: give the memory back now. */
	out_total -= evbuffer_get_length(c->out);
	evbuffer_drain(c->out, evbuffer_get_length(c->out));
	log_debug("conn", "client %llu closed", (unsigned long long)c->id);
	event_base_once(daemon_g.base, -1, EV_TIMEOUT, conn_free_cb, c, NULL);
}

void conn_close_after_write(struct conn *c)
{
	c->closing = true;
	conn_flush(c);
}

void conn_add_close_hook(struct conn *c, conn_hook_fn *fn, void *arg)
{
	struct conn_hook *h;

	for (h = c->hooks; h; h = h->next)
		if (h->fn == fn && h->arg == arg)
			return;
	h = malloc(sizeof(*h));
	if (!h) {
		log_error("conn", "out of memory adding a close hook; dropping client %llu",
			  (unsigned long long)c->id);
		conn_close(c);
		return;
	}
	h->fn = fn;
	h->arg = arg;
	h->next = c->hooks;
	c->hooks = h;
}

void conn_remove_close_hook(struct conn *c, conn_hook_fn *fn, void *arg)
{
	for (struct conn_hook **p = &c->hooks; *p; p = &(*p)->next)
		if ((*p)->fn == fn && (*p)->arg == arg) {
			struct conn_hook *h = *p;
			*p = h->next;
			free(h);
			return;
		}
}

/*
 * Serialize into one reusable buffer and hand it to the output buffer with
 * one evbuffer_add (json_dump_callback would add every token separately).
 * The buffer grows to the largest line seen, so a big answer (status of
 * thousands of processes) is serialized once, not sized first.
 */
static char *scratch;
static size_t scratch_cap;

/* Make scratch hold at least n bytes. */
static bool scratch_reserve(size_t n)
{
	char *p;
	size_t cap = scratch_cap ? scratch_cap : 64 * 1024;

	if (n <= scratch_cap)
		return true;
	while (cap < n)
		cap *= 2;
	if (!(p = realloc(scratch, cap)))
		return false;
	scratch = p;
	scratch_cap = cap;
	return true;
}

/* Append the compact JSON of v at buf[off] when it fits; returns the
 * offset after it either way (0 on a serialization error). */
static size_t dump_at(json_t *v, char *buf, size_t cap, size_t off)
{
	size_t room = off < cap ? cap - off : 0;
	size_t n = json_dumpb(v, room ? buf + off : NULL, room, JSON_COMPACT | JSON_ENCODE_ANY);

	return n ? off + n : 0;
}

/* Append a literal when it fits; returns the offset after it either way. */
static size_t add_lit(char *buf, size_t cap, size_t off, const char *lit, size_t len)
{
	if (off + len <= cap)
		memcpy(buf + off, lit, len);
	return off + len;
}

/*
 * Append v as dump_at() does, writing the common small answers (null,
 * booleans, integers, plain short strings) directly: jansson's dumper
 * costs some 400 instructions even for null.
 */
static size_t put_json(json_t *v, char *buf, size_t cap, size_t off)
{
	char tmp[24];

	switch (json_typeof(v)) {
	case JSON_NULL: return add_lit(buf, cap, off, "null", 4);
	case JSON_TRUE: return add_lit(buf, cap, off, "true", 4);
	case JSON_FALSE: return add_lit(buf, cap, off, "false", 5);
	case JSON_INTEGER:
		return add_lit(buf, cap, off, tmp, jsonw_fmt_int(tmp, json_integer_value(v)));
	case JSON_STRING: {
		size_t len = json_string_length(v);
		if (len <= 256 && jsonw_plain(json_string_value(v), len)) {
			off = add_lit(buf, cap, off, "\"", 1);
			off = add_lit(buf, cap, off, json_string_value(v), len);
			return add_lit(buf, cap, off, "\"", 1);
		}
		return dump_at(v, buf, cap, off);
	}
	default: return dump_at(v, buf, cap, off);
	}
}

/* Build a reply line {"id":ID,"ok":B,"result"|"error":V}\n into buf, V
 * being v or, when v is NULL, the JSON text raw. Returns its length, which
 * is more than cap when it did not fit, or 0 when a value cannot be
 * serialized. */
static size_t build_reply(char *buf, size_t cap, json_t *id, bool ok, json_t *v,
			  const char *raw, size_t raw_len)
{
	static const char mid_ok[] = ",\"ok\":true,\"result\":";
	static const char mid_err[] = ",\"ok\":false,\"error\":";
	size_t off = add_lit(buf, cap, 0, "{\"id\":", 6);

	if (!(off = id ? put_json(id, buf, cap, off) : add_lit(buf, cap, off, "null", 4)))
		return 0;
	off = ok ? add_lit(buf, cap, off, mid_ok, sizeof(mid_ok) - 1)
		 : add_lit(buf, cap, off, mid_err, sizeof(mid_err) - 1);
	if (v) {
		if (!(off = put_json(v, buf, cap, off)))
			return 0;
	} else {
		off = add_lit(buf, cap, off, raw, raw_len);
	}
	return add_lit(buf, cap, off, "}\n", 2);
}

/* Queue a complete line; drops a stream that is not read. */
static bool conn_queue(struct conn *c, const char *data, size_t len)
{
	if (evbuffer_add(c->out, data, len) < 0) {
		log_error("conn", "cannot queue output for client %llu; dropping it",
			  (unsigned long long)c->id);
		conn_close(c);
		return false;
	}
	out_total += len;
	/* Over the budget: the loop drops the worst reader (not here: a
	 * caller may be walking a list that closing would change). */
	if (out_total > daemon_g.conf->max_output_total && ev_budget)
		event_active(ev_budget, EV_TIMEOUT, 0);
	if (c->streaming && evbuffer_get_length(c->out) > daemon_g.conf->max_output_bytes) {
		log_warn("conn", "client %llu (pid %d) does not read its stream; dropping it",
			 (unsigned long long)c->id, (int)c->pid);
		conn_close(c);
		return false;
	}
	return true;
}

bool conn_send_reply(struct conn *c, json_t *id, bool ok, json_t *v, const char *raw,
		     size_t raw_len)
{
	size_t n;

	if (c->dead)
		return false;
	if (!scratch_reserve(64 * 1024))
		goto fail;
	n = build_reply(scratch, scratch_cap, id, ok, v, raw, raw_len);
	if (n > scratch_cap) {
		if (!scratch_reserve(n))
			goto fail;
		n = build_reply(scratch, scratch_cap, id, ok, v, raw, raw_len);
	}
	if (n && n <= scratch_cap)
		return conn_queue(c, scratch, n);
fail:
	log_error("conn", "cannot serialize an answer for client %llu; dropping it",
		  (unsigned long long)c->id);
	conn_close(c);
	return false;
}

bool conn_send(struct conn *c, json_t *msg)
{
	size_t n;

	if (c->dead)
		return false;
	if (!scratch_reserve(64 * 1024))
		goto fail;
	n = dump_at(msg, scratch, scratch_cap - 1, 0);
	if (n > scratch_cap - 1) {
		if (!scratch_reserve(n + 1))
			goto fail;
		n = dump_at(msg, scratch, scratch_cap - 1, 0);
	}
	if (n && n <= scratch_cap - 1) {
		scratch[n] = '\n';
		return conn_queue(c, scratch, n + 1);
	}
fail:
	log_error("conn", "cannot serialize output for client %llu; dropping it",
		  (unsigned long long)c->id);
	conn_close(c);
	return false;
}

/*
 * Close without losing the last answer: closing a socket that still has
 * unread input makes the kernel send RST, which can destroy the answer
 * before the peer reads it. So shut down our side and discard what the peer
 * still sends, until it closes, LINGER_BYTES or LINGER_SECS.
 */
static void conn_linger(struct conn *c)
{
	struct timeval tv = tv_from_secs(LINGER_SECS);

	if (c->lingering)
		return;
	if (c->eof || shutdown(c->fd, SHUT_WR) < 0) {
		conn_close(c);
		return;
	}
	c->lingering = true;
	event_del(c->ev_write);
	event_add(c->ev_read, NULL);
	event_add(c->ev_resume, &tv);
}

/* Discard input of a lingering connection; returns false once closed. */
static bool conn_linger_read(struct conn *c)
{
	char buf[16384];
	ssize_t n;

	for (size_t total = 0; total < LINGER_BYTES; total += (size_t)n) {
		n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return true;
		if (n <= 0)
			break;
	}
	conn_close(c);
	return false;
}

/* The commit barrier let c's output go: write it now. */
static void conn_barrier_passed(void *arg)
{
	struct conn *c = arg;

	c->held = false;
	conn_flush(c);
}

/* More unsent output than a connection may pile up before it stops taking
 * requests: OUTPUT_PAUSE_BYTES (or half of max_output_bytes when that is
 * less). Small, so a client that pipelines large answers without reading
 * them holds about one answer's worth, not many. */
static bool output_backed_up(const struct conn *c)
{
	size_t mark = daemon_g.conf->max_output_bytes / 2;

	return evbuffer_get_length(c->out) > (mark < OUTPUT_PAUSE_BYTES ? mark : OUTPUT_PAUSE_BYTES);
}

unsigned server_paused_clients(void)
{
	unsigned n = 0;
	struct conn *c;

	TAILQ_FOREACH(c, &conns, entry)
		n += c->output_paused;
	return n;
}

size_t server_output_bytes(void)
{
	return out_total;
}

/*
 * max_output_total is passed: close the connection with the most unsent
 * output among those whose socket is full (they do not read), until the
 * total is back under. Connections being written are left alone: their
 * output is on its way.
 */
static void budget_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct log_ratelimit nobody_to_drop;
	size_t max = daemon_g.conf->max_output_total;

	(void)fd;
	(void)what;
	(void)arg;
	while (out_total > max) {
		struct conn *c, *worst = NULL;

		TAILQ_FOREACH(c, &conns, entry)
			if (c->write_blocked && (!worst || evbuffer_get_length(c->out) >
							      evbuffer_get_length(worst->out)))
				worst = c;
		if (!worst) {
			if (log_allowed(&nobody_to_drop))
				log_warn("conn", "unsent output (%zu bytes) passes max_output_total "
					 "(%zu) but every client reads", out_total, max);
			return;
		}
		log_warn("conn", "unsent output (%zu bytes) passes max_output_total (%zu): dropping "
			 "client %llu (uid %d pid %d), which holds %zu bytes and does not read",
			 out_total, max, (unsigned long long)worst->id, (int)worst->uid,
			 (int)worst->pid, evbuffer_get_length(worst->out));
		conn_close(worst);
	}
}

/* Write what c->out holds: one write() when it is one piece (the common
 * case: a batch of answers), evbuffer's writev otherwise. */
static int conn_write_out(struct conn *c)
{
	struct evbuffer_iovec v;
	ssize_t n;

	if (evbuffer_peek(c->out, -1, NULL, &v, 1) != 1) {
		n = evbuffer_write(c->out, c->fd);
	} else {
		n = write(c->fd, v.iov_base, v.iov_len);
		if (n > 0)
			evbuffer_drain(c->out, (size_t)n);
	}
	if (n > 0)
		out_total -= (size_t)n;
	return (int)n;
}

void conn_flush(struct conn *c)
{
	enum barrier_result held;

	/* Commit barrier: while mutations of this event-loop pass are not yet
	 * written to the state log (and synced with state_sync = always), the
	 * answers - which may acknowledge them or show their effects - wait;
	 * conn_barrier_passed() writes them after the commit (persist.h). */
	if (c->held)
		return;
	if (!c->dead && evbuffer_get_length(c->out) > 0 &&
	    (held = barrier->barrier(conn_barrier_passed, c)) != BARRIER_GO) {
		if (held == BARRIER_NO_MEMORY) {
			/* Never shown, never acknowledged, and no wake-up
			 * would come: the connection goes. */
			log_error("conn", "cannot hold the output of client %llu; closing it",
				  (unsigned long long)c->id);
			conn_close(c);
			return;
		}
		c->held = true;
		event_del(c->ev_write);
		if (!conn_wants_read(c))
			event_del(c->ev_read);
		return;
	}
	c->write_blocked = false;
	while (!c->dead && evbuffer_get_length(c->out) > 0) {
		int n = conn_write_out(c);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->write_blocked = true; /* the peer does not read */
				break;
			}
			if (errno == EINTR)
				continue;
			log_debug("conn", "client %llu: write: %s", (unsigned long long)c->id,
				  strerror(errno));
			conn_close(c);
			return;
		}
	}
	if (c->dead)
		return;
	if (c->closing && evbuffer_get_length(c->out) == 0) {
		conn_linger(c);
		return;
	}
	/* Requests left unread while the output backed up: run them once it
	 * has drained below the mark (from the loop: not under a caller). */
	if (c->output_paused && !c->in_dispatch && !output_backed_up(c)) {
		c->output_paused = false;
		conn_resume(c);
	}
	conn_update_events(c);
}

/* Whether to read more: not while the output backs up or a request waits
 * with a full input buffer (backpressure instead of memory growth). */
static bool conn_wants_read(struct conn *c)
{
	size_t limit = daemon_g.conf->max_request_bytes + READ_CHUNK;

	if (c->eof || c->closing)
		return false;
	if (output_backed_up(c) && !c->streaming)
		return false;
	if (c->kept && !c->streaming && mpsup_framer_pending(c->in) > limit)
		return false;
	return true;
}

static void conn_update_events(struct conn *c)
{
	bool want_write = evbuffer_get_length(c->out) > 0;

	if (want_write)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
	if (conn_wants_read(c))
		event_add(c->ev_read, NULL);
	else
		event_del(c->ev_read);
}

/* Read what the socket has; returns false when the connection is gone. */
static bool conn_read(struct conn *c)
{
	char *p;
	ssize_t room, n;

	room = mpsup_framer_space(c->in, READ_CHUNK, &p);
	if (room < 0) {
		conn_close(c);
		return false;
	}
	n = read(c->fd, p, (size_t)room);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return true;
		conn_close(c);
		return false;
	}
	if (n == 0) {
		/* Nothing more will come: stop watching (end-of-file stays
		 * readable, and a connection whose answers are held would spin). */
		c->eof = true;
		event_del(c->ev_read);
		return true;
	}
	if (c->streaming) /* a stream takes no more requests */
		return true;
	mpsup_framer_commit(c->in, (size_t)n);
	return true;
}

/* Answer an oversized line and close. */
static void conn_too_large(struct conn *c)
{
	char msg[128];
	json_t *resp;

	snprintf(msg, sizeof(msg), "request line longer than %zu bytes",
		 daemon_g.conf->max_request_bytes);
	resp = mpsup_response_error(NULL, MPSUP_E_TOO_LARGE, msg);
	if (resp) {
		conn_send(c, resp);
		json_decref(resp);
	}
	log_warn("conn", "client %llu (uid %d pid %d): %s; closing", (unsigned long long)c->id,
		 (int)c->uid, (int)c->pid, msg);
	conn_close_after_write(c);
}

/* Run every complete request line buffered on c, in order. */
static void conn_process(struct conn *c)
{
	bool drained = false;
	char *line;
	size_t len;
	int r;

	c->in_dispatch = true;
	while (!c->dead && !c->kept && !c->closing) {
		if (output_backed_up(c)) {
			c->output_paused = true; /* conn_flush() resumes it */
			break;
		}
		r = mpsup_framer_pop(c->in, &line, &len);
		if (r == 0) {
			drained = true;
			break;
		}
		if (r < 0) {
			conn_too_large(c);
			break;
		}
		command_dispatch(c, line, len);
	}
	c->in_dispatch = false;
	if (c->dead)
		return;
	if (c->eof) {
		/* A peer that hung up does not wait for anything: a kept request
		 * is cancelled rather than completed into a closed socket (a
		 * queue item would be lost). Otherwise answer what it sent. */
		if (c->kept) {
			barrier->commit(); /* the answers must not wait: write now */
			conn_flush(c);
			if (!c->dead)
				conn_close(c);
			return;
		}
		if (drained)
			c->closing = true;
	}
	conn_flush(c);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->lingering) {
		conn_linger_read(c);
		return;
	}
	if (!conn_read(c))
		return;
	conn_process(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_flush(arg);
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->lingering) /* the linger timer */
		conn_close(c);
	else
		conn_process(c);
}

void conn_resume(struct conn *c)
{
	if (!c->dead)
		event_active(c->ev_resume, EV_TIMEOUT, 0);
}

/* Refuse a client with one error line. */
static void refuse(int fd, enum mpsup_err code, const char *why)
{
	json_t *resp = mpsup_response_error(NULL, code, why);
	char *s = resp ? json_dumps(resp, JSON_COMPACT) : NULL;

	if (s) {
		size_t l = strlen(s);
		s[l] = '\n';
		(void)!send(fd, s, l + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	free(s);
	json_decref(resp);
	close(fd);
}

static unsigned conns_of_uid(uid_t uid)
{
	unsigned n = 0;
	struct conn *c;

	TAILQ_FOREACH(c, &conns, entry)
		if (c->uid == uid)
			n++;
	return n;
}

/* The part of total kept for admins, and for state peers (and admins). */
static unsigned admin_reserve(unsigned total)
{
	unsigned floor = total / 4 < 8 ? total / 4 : 8;

	return total / 32 > floor ? total / 32 : floor;
}

static unsigned state_reserve(unsigned total)
{
	unsigned floor = total / 4 < 16 ? total / 4 : 16;

	return total / 8 > floor ? total / 8 : floor;
}

unsigned role_share(unsigned total, enum role role)
{
	if (role >= ROLE_ADMIN)
		return total;
	if (role == ROLE_STATE)
		return total - admin_reserve(total);
	return total - admin_reserve(total) - state_reserve(total);
}

void role_share_refusal(char *buf, size_t len, const char *what, unsigned total,
			enum role role)
{
	unsigned share = role_share(total, role);

	if (role >= ROLE_ADMIN)
		snprintf(buf, len, "%s (%u) reached", what, total);
	else
		snprintf(buf, len, "%s (%u) reached for role %s: it may use %u, the last %u are kept "
			 "for %s", what, total, role_names[role], share, total - share,
			 role == ROLE_STATE ? "admins" : "the state and admin roles");
}

/* Connections of a pool's workers admitted beyond the shares. */
static unsigned exempt_of_pool(const char *pool)
{
	unsigned n = 0;
	struct conn *c;

	TAILQ_FOREACH(c, &conns, entry)
		if (c->exempt_pool && strcmp(c->exempt_pool, pool) == 0)
			n++;
	return n;
}

/*
 * May a new peer connect? Each role may fill max_clients up to its share
 * (read < state < admin), so floods of a lower role never refuse a higher
 * one; max_clients_per_uid limits non-admins further. A worker of one of
 * our pools is let in beyond both while its pool's workers hold fewer than
 * their allowance (*ret_exempt: the pool's name). true if admitted, else
 * false with the reason in buf.
 */
static bool admission(uid_t uid, pid_t pid, enum role role, const char **ret_exempt, char *buf,
		      size_t len)
{
	const struct conf *cf = daemon_g.conf;
	unsigned counted = n_conns - n_exempt, allowance;
	const char *pool;

	*ret_exempt = NULL;
	if (counted >= role_share(cf->max_clients, role))
		role_share_refusal(buf, len, "max_clients", cf->max_clients, role);
	else if (role < ROLE_ADMIN && cf->max_clients_per_uid &&
		 conns_of_uid(uid) >= cf->max_clients_per_uid)
		snprintf(buf, len, "max_clients_per_uid (%u) reached", cf->max_clients_per_uid);
	else
		return true;
	pool = policy->worker_pool ? policy->worker_pool(pid, uid, &allowance) : NULL;
	if (pool && exempt_of_pool(pool) < allowance) {
		*ret_exempt = pool;
		return true;
	}
	return false;
}

void server_set_peer_policy(const struct peer_policy *p)
{
	policy = p ? p : &core_policy;
}

void server_set_commit_barrier(const struct commit_barrier *b)
{
	barrier = b ? b : &no_barrier;
}

/* Out of descriptors: stop accepting for a moment (the listening socket
 * stays readable, so the loop would spin on it). */
static void accept_pause(void)
{
	struct timeval tv = { 0, 100 * 1000 };

	event_del(ev_accept);
	evtimer_add(ev_accept_resume, &tv);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (ev_accept)
		event_add(ev_accept, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	static struct log_ratelimit refusals, fd_errors;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *c;
	const char *exempt;
	char why[200];
	enum role role;
	gid_t *gids;
	int fd, n_gids;

	(void)what;
	(void)arg;
	for (int i = 0; i < 64; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				if (log_allowed(&fd_errors))
					log_warn("conn", "accept: %s (pausing 100 ms)", strerror(errno));
				accept_pause();
			}
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    !(gids = peer_groups(fd, cred.gid, &n_gids))) {
			close(fd);
			continue;
		}
		role = policy->role(cred.uid, gids, n_gids);
		if (!admission(cred.uid, cred.pid, role, &exempt, why, sizeof(why))) {
			char msg[240];
			if (log_allowed(&refusals))
				log_warn("conn", "refusing uid %d pid %d: %s", (int)cred.uid,
					 (int)cred.pid, why);
			snprintf(msg, sizeof(msg), "too many clients: %s", why);
			refuse(fd, MPSUP_E_LIMIT, msg);
			free(gids);
			continue;
		}
		c = conn_new(fd, cred.uid, cred.gid, cred.pid, gids, n_gids);
		if (!c) {
			log_error("conn", "out of memory accepting a client");
			continue;
		}
		if (exempt) {
			if (!(c->exempt_pool = strdup(exempt))) {
				conn_close(c);
				continue;
			}
			n_exempt++;
			log_info("conn", "client %llu: worker pid %d of pool %s let in beyond the "
				 "shares of max_clients (%s)", (unsigned long long)c->id,
				 (int)c->pid, exempt, why);
		}
		log_debug("conn", "client %llu: uid %d pid %d role %d", (unsigned long long)c->id,
			  (int)c->uid, (int)c->pid, (int)c->role);
	}
}

/* Is a daemon answering at this socket path? */
/* Is a daemon answering at this socket path? 1 yes, 0 no (the socket is
 * stale: nothing listens on it), or a negative errno when that cannot be
 * told (then it must not be removed). The connect does not block: a full
 * backlog (EAGAIN) means a live, busy daemon. */
static int socket_answers(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 1 : -errno;
	close(fd);
	if (r == -EAGAIN || r == -EINPROGRESS)
		return 1;
	if (r == -ECONNREFUSED)
		return 0;
	return r;
}

/* Create, bind and secure the listening socket at path. */
static int socket_create(const char *path)
{
	const struct conf *cf = daemon_g.conf;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("server", "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode)) {
			log_error("server", "%s is a symbolic link; refusing to use it", path);
			return -ELOOP;
		}
		if (!S_ISSOCK(st.st_mode)) {
			log_error("server", "%s exists and is not a socket; refusing to replace it", path);
			return -EEXIST;
		}
		r = socket_answers(&sa);
		if (r > 0) {
			log_error("server", "another mpsupd is already running on %s", path);
			return -EADDRINUSE;
		}
		if (r < 0) {
			log_error("server", "cannot tell whether %s is in use (%s); not removing it",
				  path, strerror(-r));
			return r;
		}
		log_info("server", "removing stale socket %s", path);
		if (unlink(path) < 0 && errno != ENOENT) {
			r = -errno;
			log_error("server", "cannot remove stale socket %s: %s", path, strerror(errno));
			return r;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		log_error("server", "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	/* Check what we bound before changing its mode: never follow a link. */
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		log_error("server", "%s changed under us; refusing it", path);
		close(fd);
		return -EEXIST;
	}
	if (cf->socket_group) {
		struct group *g = getgrnam(cf->socket_group);
		char *end;
		gid_t gid = g ? g->gr_gid : (gid_t)strtoul(cf->socket_group, &end, 10);
		if (lchown(path, (uid_t)-1, gid) < 0)
			log_warn("server", "cannot give %s to group %s: %s", path, cf->socket_group,
				 strerror(errno));
	}
	if (chmod(path, cf->socket_mode) < 0)
		log_warn("server", "cannot chmod %s: %s", path, strerror(errno));
	if (listen(fd, 512) < 0) {
		r = -errno;
		close(fd);
		unlink(path);
		return r;
	}
	return fd;
}

int server_start(void)
{
	const char *path = daemon_g.socket_override ? daemon_g.socket_override
		: daemon_g.conf->socket ? daemon_g.conf->socket : MPSUP_DEFAULT_SOCKET;
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	/* 1: unset LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES so no child sees them */
	int n = sd_listen_fds(1);

	/* Socket activation: the first listening Unix stream socket is ours;
	 * anything else systemd passed is closed (never inherited). */
	for (int fd = SD_LISTEN_FDS_START; n > 0 && fd < SD_LISTEN_FDS_START + n; fd++) {
		if (listen_fd < 0 && sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
			listen_fd = fd;
			continue;
		}
		log_warn("server", "ignoring passed descriptor %d (not a listening Unix stream socket)",
			 fd);
		close(fd);
	}
	if (listen_fd >= 0) {
		listen_activated = true;
		fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
		fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
		memset(&sa, 0, sizeof(sa));
		if (getsockname(listen_fd, (struct sockaddr *)&sa, &len) == 0 &&
		    len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0])
			path = sa.sun_path;
		log_info("server", "using the socket passed by systemd (%s)", path);
	} else {
		listen_fd = socket_create(path);
		if (listen_fd < 0)
			return listen_fd;
	}
	socket_path = strdup(path);
	ev_accept = event_new(daemon_g.base, listen_fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	ev_accept_resume = evtimer_new(daemon_g.base, accept_resume_cb, NULL);
	ev_budget = event_new(daemon_g.base, -1, 0, budget_cb, NULL);
	if (!socket_path || !ev_accept || !ev_accept_resume || !ev_budget ||
	    event_add(ev_accept, NULL) < 0)
		return -ENOMEM;
	log_info("server", "listening on %s", path);
	return 0;
}

void server_stop(void)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&conns))) {
		conn_flush(c);
		if (!c->dead)
			conn_close(c);
	}
	if (ev_accept)
		ev_accept = (event_free(ev_accept), NULL);
	if (ev_accept_resume)
		ev_accept_resume = (event_free(ev_accept_resume), NULL);
	if (ev_budget)
		ev_budget = (event_free(ev_budget), NULL);
	if (listen_fd >= 0) {
		close(listen_fd);
		if (!listen_activated && socket_path)
			unlink(socket_path);
		listen_fd = -1;
	}
	free(socket_path);
	socket_path = NULL;
}

/*
 * A client on an already connected socket with the given credentials:
 * accept_cb() makes every client with it, so tests and fuzzing (one end of
 * a socketpair) go through the same set-up. Takes fd; NULL on failure.
 */
struct conn *conn_new_for_fd(int fd, uid_t uid, gid_t gid, pid_t pid)
{
	int n_gids;
	gid_t *gids = peer_groups(fd, gid, &n_gids);

	if (!gids) {
		close(fd);
		return NULL;
	}
	return conn_new(fd, uid, gid, pid, gids, n_gids);
}

/* A client on fd with these credentials; takes fd and gids. */
static struct conn *conn_new(int fd, uid_t uid, gid_t gid, pid_t pid, gid_t *gids, int n_gids)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c || !(c->in = mpsup_framer_new(daemon_g.conf->max_request_bytes)) ||
	    !(c->out = evbuffer_new())) {
		if (c)
			mpsup_framer_free(c->in);
		free(c);
		free(gids);
		close(fd);
		return NULL;
	}
	c->gids = gids;
	c->n_gids = n_gids;
	c->id = next_conn_id++;
	c->fd = fd;
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	c->role = policy->role(uid, c->gids, c->n_gids);
	c->ev_read = event_new(daemon_g.base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->ev_write = event_new(daemon_g.base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
	c->ev_resume = event_new(daemon_g.base, -1, 0, conn_resume_cb, c);
	TAILQ_INSERT_TAIL(&conns, c, entry);
	n_conns++;
	if (!c->ev_read || !c->ev_write || !c->ev_resume) {
		conn_close(c);
		return NULL;
	}
	event_add(c->ev_read, NULL);
	return c;
}
