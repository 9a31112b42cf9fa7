/*
 * One connection's life on the control socket: it reads straight into its
 * framer, runs every complete line it holds, and writes all the answers of
 * one read with one write; the write event is armed only when the socket
 * would block. A connection whose request waits (CMD_WAIT) runs nothing
 * more until that request is answered; one that streams discards input and
 * is dropped when it stops reading. Output waits behind the commit barrier
 * (commit_barrier.h) and all connections share an output budget
 * (max_output_total). The listening socket and admission: server.c; the
 * lines sent: reply.c.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "command.h"
#include "conn.h"
#include "conn_int.h"
#include "daemon.h"
#include "log.h"
#include "mpsup.h"
#include "stream.h"

#define READ_CHUNK (64 * 1024)
#define LINGER_SECS 2.0         /* how long a closing peer may keep sending */
#define LINGER_BYTES (64 << 20) /* and how much */
#define MAX_PEER_GROUPS 256
#define OUTPUT_PAUSE_BYTES (256 * 1024) /* see output_backed_up() */
#define STAGE_BYTES (64 * 1024)

/* The connections (conn_int.h). */
struct conn_set conns_g = { .all = TAILQ_HEAD_INITIALIZER(conns_g.all) };
static struct event *ev_budget; /* enforces max_output_total from the loop */

/*
 * The answers of the connection being dispatched, gathered here and handed
 * to its output evbuffer in one piece when its batch ends (an evbuffer_add
 * per answer costs more than the answer's own work on the hot ops). At most
 * one connection owns it, one whose lines are being run: every other path
 * to an output queue, and every look at one, moves it out first.
 */
static struct {
	struct conn *owner;
	size_t len;
	char buf[STAGE_BYTES];
} stage;

size_t conn_out_len(const struct conn *c)
{
	return evbuffer_get_length(c->out) + (stage.owner == c ? stage.len : 0);
}

bool conn_stage_spill(struct conn *c)
{
	if (stage.owner != c || !c)
		return true;
	stage.owner = NULL;
	if (evbuffer_add(c->out, stage.buf, stage.len) < 0) {
		conns_g.out_total -= stage.len;
		stage.len = 0;
		log_error("conn", "cannot queue output for client %llu; dropping it",
			  (unsigned long long)c->id);
		conn_close(c);
		return false;
	}
	stage.len = 0;
	return true;
}

/* No durable store: answers never wait (server_set_commit_barrier). */
static enum barrier_result no_barrier_wait(void (*fn)(void *key, enum barrier_release how),
					   void *key)
{
	(void)fn;
	(void)key;
	return BARRIER_GO;
}
static void no_barrier_cancel(void (*fn)(void *key, enum barrier_release how), void *key)
{
	(void)fn;
	(void)key;
}
static void no_barrier_commit(void)
{
}
static const struct commit_barrier no_barrier = {
	.barrier = no_barrier_wait,
	.cancel = no_barrier_cancel,
	.commit = no_barrier_commit,
};
static const struct commit_barrier *barrier = &no_barrier;
static uint64_t next_conn_id = 1;

static void conn_process(struct conn *c);
static void conn_update_events(struct conn *c);
static void conn_linger(struct conn *c);
static bool conn_wants_read(struct conn *c);
static void conn_barrier_passed(void *arg, enum barrier_release how);

gid_t *conn_peer_groups(int fd, gid_t gid, int *ret_n)
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
	free(c->durable);
	free(c);
}

void fd_set_rx_close(struct fd_set_rx *s)
{
	for (int i = 0; i < s->n; i++)
		if (s->fd[i] >= 0)
			close(s->fd[i]);
	s->n = 0;
}

void conn_close(struct conn *c)
{
	struct conn_hook *h;

	if (c->dead)
		return;
	c->dead = true;
	for (int i = 0; i < c->n_rx; i++)
		fd_set_rx_close(&c->rx[i]);
	c->n_rx = 0;
	if (c->held)
		barrier->cancel(conn_barrier_passed, c);
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
	TAILQ_REMOVE(&conns_g.all, c, entry);
	conns_g.n--;
	conns_g.n_exempt -= c->exempt_pool != NULL;
	stream_slot_give(c);
	/* Its output will never be written: give the memory back now. */
	if (stage.owner == c) {
		conns_g.out_total -= stage.len;
		stage.owner = NULL;
		stage.len = 0;
	}
	conns_g.out_total -= evbuffer_get_length(c->out);
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

char *conn_stage_room(struct conn *c, size_t *ret_room)
{
	struct conn *o = stage.owner;

	if (!c->in_dispatch || c->streaming || c->dead)
		return NULL;
	if (o && o != c && !conn_stage_spill(o))
		return NULL; /* o closed: try again, the stage is free */
	*ret_room = STAGE_BYTES - stage.len;
	return stage.buf + stage.len;
}

/* len more bytes of c's queued (budget counted). */
static inline void queued(struct conn *c, size_t len)
{
	conns_g.out_total += len;
	c->out_queued += len;
	/* Over the budget: the loop drops the worst reader (not here: a
	 * caller may be walking a list that closing would change). */
	if (conns_g.out_total > daemon_g.conf->max_output_total && ev_budget)
		event_active(ev_budget, EV_TIMEOUT, 0);
}

void conn_stage_commit(struct conn *c, size_t len)
{
	stage.owner = c;
	stage.len += len;
	queued(c, len);
}

/* Queue a complete line; drops a stream that is not read. */
bool conn_queue(struct conn *c, const char *data, size_t len)
{
	size_t room;
	char *p = conn_stage_room(c, &room);

	if (p && len > room && conn_stage_spill(c))
		p = conn_stage_room(c, &room);
	if (p && len <= room) {
		memcpy(p, data, len);
		conn_stage_commit(c, len);
		return true;
	}
	if (!conn_stage_spill(c))
		return false;
	if (evbuffer_add(c->out, data, len) < 0) {
		log_error("conn", "cannot queue output for client %llu; dropping it",
			  (unsigned long long)c->id);
		conn_close(c);
		return false;
	}
	queued(c, len);
	if (c->streaming && evbuffer_get_length(c->out) > daemon_g.conf->max_output_bytes) {
		log_warn("conn", "client %llu (pid %d) does not read its stream; dropping it",
			 (unsigned long long)c->id, (int)c->pid);
		conn_close(c);
		return false;
	}
	return true;
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

void conn_mark_durable(struct conn *c, uint64_t from)
{
	struct out_span *d;

	if (c->dead || from == c->out_queued)
		return;
	if (c->n_durable == c->cap_durable) {
		size_t cap = c->cap_durable ? c->cap_durable * 2 : 8;
		if (!(d = realloc(c->durable, cap * sizeof(*d)))) {
			/* It could not be replaced if the barrier gave up:
			 * it must not go out unmarked. */
			log_error("conn", "out of memory marking an answer; dropping client %llu",
				  (unsigned long long)c->id);
			conn_close(c);
			return;
		}
		c->durable = d;
		c->cap_durable = cap;
	}
	c->durable[c->n_durable++] = (struct out_span){ from, c->out_queued };
}

/* Forget the durable spans that are written (they are in order). */
static void durable_written(struct conn *c)
{
	size_t k = 0;

	while (k < c->n_durable && c->durable[k].end <= c->out_written)
		k++;
	if (k) {
		memmove(c->durable, c->durable + k, (c->n_durable - k) * sizeof(*c->durable));
		c->n_durable -= k;
	}
}

/* Does c's held output show durable state (a marked answer the barrier
 * has not let go)? A stream is taken to (its events may tell of it). */
static bool durable_held(const struct conn *c)
{
	return c->streaming || (c->n_durable && c->durable[c->n_durable - 1].end > c->out_released);
}

/* The commit barrier let c's output go (how: written, or given up on, and
 * then its durable answers are replaced first; or the write failed, and
 * output that shows no durable state goes now): write it. */
static void conn_barrier_passed(void *arg, enum barrier_release how)
{
	struct conn *c = arg;

	if (how == BARRIER_FAILING) {
		if (durable_held(c))
			return; /* until written or timed out */
		barrier->cancel(conn_barrier_passed, c);
	}
	c->held = false;
	if (how == BARRIER_TIMED_OUT)
		conn_rewrite_durable(c);
	if (!c->dead)
		conn_flush(c);
}

/* More unsent output than a connection may pile up before it stops taking
 * requests: OUTPUT_PAUSE_BYTES (or half of max_output_bytes when that is
 * less). Small, so a client that pipelines large answers without reading
 * them holds about one answer's worth, not many. */
static bool output_backed_up(const struct conn *c)
{
	size_t mark = daemon_g.conf->max_output_bytes / 2;

	return conn_out_len(c) > (mark < OUTPUT_PAUSE_BYTES ? mark : OUTPUT_PAUSE_BYTES);
}

unsigned server_paused_clients(void)
{
	unsigned n = 0;
	struct conn *c;

	TAILQ_FOREACH(c, &conns_g.all, entry)
		n += c->output_paused;
	return n;
}

size_t server_output_bytes(void)
{
	return conns_g.out_total;
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
	while (conns_g.out_total > max) {
		struct conn *c, *worst = NULL;

		TAILQ_FOREACH(c, &conns_g.all, entry)
			if (c->write_blocked && (!worst || conn_out_len(c) > conn_out_len(worst)))
				worst = c;
		if (!worst) {
			if (log_allowed(&nobody_to_drop))
				log_warn("conn",
					 "unsent output (%zu bytes) passes max_output_total "
					 "(%zu) but every client reads",
					 conns_g.out_total, max);
			return;
		}
		log_warn("conn",
			 "unsent output (%zu bytes) passes max_output_total (%zu): dropping "
			 "client %llu (uid %d pid %d), which holds %zu bytes and does not read",
			 conns_g.out_total, max, (unsigned long long)worst->id, (int)worst->uid,
			 (int)worst->pid, conn_out_len(worst));
		conn_close(worst);
	}
}

/* Write what c->out holds: one write() when it is one piece (the common
 * case: a batch of answers), evbuffer's writev otherwise. */
static int conn_write_out(struct conn *c)
{
	struct evbuffer_iovec v;
	ssize_t n;

	if (stage.owner == c && evbuffer_get_length(c->out) == 0) {
		/* a batch of answers, straight from the stage */
		n = write(c->fd, stage.buf, stage.len);
		if (n > 0 && (stage.len -= (size_t)n) > 0)
			memmove(stage.buf, stage.buf + n, stage.len);
		if (stage.len == 0)
			stage.owner = NULL;
	} else if (!conn_stage_spill(c)) {
		errno = EPIPE; /* c is closed */
		return -1;
	} else if (evbuffer_peek(c->out, -1, NULL, &v, 1) != 1) {
		n = evbuffer_write(c->out, c->fd);
	} else {
		n = write(c->fd, v.iov_base, v.iov_len);
		if (n > 0)
			evbuffer_drain(c->out, (size_t)n);
	}
	if (n > 0) {
		conns_g.out_total -= (size_t)n;
		c->out_written += (uint64_t)n;
		if (c->n_durable)
			durable_written(c);
	}
	return (int)n;
}

void conn_flush(struct conn *c)
{
	enum barrier_result held;

	/* Commit barrier: while mutations of this event-loop pass are not yet
	 * written to the state log (and synced with state_sync = always), the
	 * answers - which may acknowledge them or show their effects - wait;
	 * conn_barrier_passed() writes them after the commit (persist.h). */
	if (c->held) {
		conn_stage_spill(c);
		return;
	}
	if (!c->dead && conn_out_len(c) > 0 &&
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
		/* the answers wait in c's own queue (a close here cancels
		 * the wait: c->held) */
		if (!conn_stage_spill(c))
			return;
		event_del(c->ev_write);
		if (!conn_wants_read(c))
			event_del(c->ev_read);
		return;
	}
	c->out_released = c->out_queued;
	c->write_blocked = false;
	while (!c->dead && conn_out_len(c) > 0) {
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
	/* what the socket did not take waits in c's own queue */
	if (!conn_stage_spill(c) || c->dead)
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
	bool want_write = conn_out_len(c) > 0;

	if (want_write)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
	if (conn_wants_read(c))
		event_add(c->ev_read, NULL);
	else
		event_del(c->ev_read);
}

/* Keep the descriptors of a message (cm) for the line holding input byte
 * at; false when too many sets wait (the peer floods: close it). */
static bool conn_take_fds(struct conn *c, struct msghdr *mh, uint64_t at)
{
	struct fd_set_rx *s;
	struct cmsghdr *cm;

	if (c->n_rx == CONN_FD_SETS) {
		for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				     i++)
					close(((int *)(void *)CMSG_DATA(cm))[i]);
		return false;
	}
	s = &c->rx[c->n_rx++];
	memset(s, 0, sizeof(*s));
	s->at = at;
	s->bad = (mh->msg_flags & MSG_CTRUNC) != 0;
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			s->bad = true;
			continue;
		}
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd = ((int *)(void *)CMSG_DATA(cm))[i];
			if (s->n < CONN_FDS_MAX)
				s->fd[s->n++] = fd;
			else {
				close(fd);
				s->bad = true;
			}
		}
	}
	return true;
}

/* Read what the socket has; returns false when the connection is gone.
 * Descriptors passed with the data (SCM_RIGHTS) wait for their line. */
static bool conn_read(struct conn *c)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * CONN_FDS_MAX)];
	} cbuf;
	struct msghdr mh = { 0 };
	struct iovec iov;
	char *p;
	ssize_t room, n;

	room = mpsup_framer_space(c->in, READ_CHUNK, &p);
	if (room < 0) {
		conn_close(c);
		return false;
	}
	iov.iov_base = p;
	iov.iov_len = (size_t)room;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof(cbuf.buf);
	n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	if (n >= 0 && mh.msg_controllen > 0 && !conn_take_fds(c, &mh, c->in_total)) {
		log_warn("conn", "client %llu (uid %d pid %d): too many descriptor sets; closing",
			 (unsigned long long)c->id, (int)c->uid, (int)c->pid);
		conn_close(c);
		return false;
	}
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
	if (c->streaming) { /* a stream takes no more requests */
		for (int i = 0; i < c->n_rx; i++)
			fd_set_rx_close(&c->rx[i]);
		c->n_rx = 0;
		return true;
	}
	mpsup_framer_commit(c->in, (size_t)n);
	c->in_total += (uint64_t)n;
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

/* The descriptors that came with the line of input bytes [start, end):
 * moved into *ret (several sets on one line make a bad one); false when
 * none did. */
static bool line_fds(struct conn *c, uint64_t start, uint64_t end, struct fd_set_rx *ret)
{
	bool any = false;

	while (c->n_rx > 0 && c->rx[0].at < end) {
		struct fd_set_rx *s = &c->rx[0];
		if (!any) {
			*ret = *s;
			ret->bad = ret->bad || s->at < start;
		} else {
			for (int i = 0; i < s->n; i++)
				if (ret->n < CONN_FDS_MAX)
					ret->fd[ret->n++] = s->fd[i];
				else
					close(s->fd[i]);
			ret->bad = true;
		}
		any = true;
		memmove(&c->rx[0], &c->rx[1], (size_t)(c->n_rx - 1) * sizeof(c->rx[0]));
		c->n_rx--;
	}
	return any;
}

/* Run every complete request line buffered on c, in order. */
static void conn_process(struct conn *c)
{
	bool drained = false;
	struct fd_set_rx fds;
	size_t len, before;
	char *line;
	int r;

	c->in_dispatch = true;
	while (!c->dead && !c->kept && !c->closing) {
		if (output_backed_up(c)) {
			c->output_paused = true; /* conn_flush() resumes it */
			break;
		}
		before = mpsup_framer_pending(c->in);
		r = mpsup_framer_pop(c->in, &line, &len);
		if (r == 0) {
			drained = true;
			break;
		}
		if (r < 0) {
			conn_too_large(c);
			break;
		}
		{
			uint64_t start = c->in_popped;
			c->in_popped += before - mpsup_framer_pending(c->in);
			if (c->n_rx && line_fds(c, start, c->in_popped, &fds)) {
				command_dispatch_fds(c, line, len, &fds);
				fd_set_rx_close(&fds); /* what the command did not take */
				continue;
			}
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
	struct conn *c = arg;

	(void)fd;
	(void)what;
	conn_flush(c);
	/* a stream that holds back while its reader is slow goes on */
	if (!c->dead && c->kept && c->kept->drained)
		c->kept->drained(c->kept);
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

void server_set_commit_barrier(const struct commit_barrier *b)
{
	barrier = b ? b : &no_barrier;
}

/*
 * A client on an already connected socket with the given credentials:
 * server.c's accept makes every client with conn_new() too, so tests and fuzzing (one end of
 * a socketpair) go through the same set-up. Takes fd; NULL on failure.
 */
struct conn *conn_new_for_fd(int fd, uid_t uid, gid_t gid, pid_t pid)
{
	int n_gids;
	gid_t *gids = conn_peer_groups(fd, gid, &n_gids);

	if (!gids) {
		close(fd);
		return NULL;
	}
	return conn_new(fd, uid, gid, pid, gids, n_gids, server_peer_role(uid, gids, n_gids));
}

struct conn *conn_new(int fd, uid_t uid, gid_t gid, pid_t pid, gid_t *gids, int n_gids,
		      enum role role)
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
	clock_gettime(CLOCK_BOOTTIME, &c->connected);
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	c->role = role;
	c->ev_read = event_new(daemon_g.base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->ev_write = event_new(daemon_g.base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
	c->ev_resume = event_new(daemon_g.base, -1, 0, conn_resume_cb, c);
	TAILQ_INSERT_TAIL(&conns_g.all, c, entry);
	conns_g.n++;
	if (!c->ev_read || !c->ev_write || !c->ev_resume) {
		conn_close(c);
		return NULL;
	}
	event_add(c->ev_read, NULL);
	return c;
}

int conns_start(void)
{
	if (!ev_budget)
		ev_budget = event_new(daemon_g.base, -1, 0, budget_cb, NULL);
	return ev_budget ? 0 : -ENOMEM;
}

void conns_stop(void)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&conns_g.all))) {
		conn_flush(c);
		if (!c->dead)
			conn_close(c);
	}
	if (ev_budget)
		ev_budget = (event_free(ev_budget), NULL);
}
