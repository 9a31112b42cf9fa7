/*
 * Client connections on the control socket: a read buffer split into lines,
 * an output buffer written once per batch, peer credentials and a role, and
 * close hooks for modules that hold per-connection state (locks, waiters,
 * subscriptions).
 */
#ifndef MPSUPD_CONN_H
#define MPSUPD_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "commit_barrier.h"
#include "conf.h"

struct conn;
struct request;
struct evbuffer;
struct event;
struct mpsup_framer;

typedef void conn_hook_fn(struct conn *c, void *arg);

/* A queued answer that shows or changes durable state (request.durable):
 * its bytes in the connection's output, counted from its first byte. */
struct out_span {
	uint64_t start, end;
};

struct conn_hook {
	conn_hook_fn *fn;
	void *arg;
	struct conn_hook *next;
};

/* Descriptors one message may carry (SCM_RIGHTS); a message with more is
 * refused (its line answered bad_request, every descriptor closed). */
#define CONN_FDS_MAX 8
/* Descriptor sets received and waiting for their line to be read. */
#define CONN_FD_SETS 4

/* Descriptors that came with the byte at offset `at` of the input. */
struct fd_set_rx {
	uint64_t at;
	int fd[CONN_FDS_MAX];
	int n;
	bool bad; /* truncated (MSG_CTRUNC) or merged with another set */
};

struct conn {
	uint64_t id;
	int fd;
	struct event *ev_read;
	struct event *ev_write;
	struct mpsup_framer *in;
	struct evbuffer *out;
	uid_t uid;
	gid_t gid;
	gid_t *gids; /* every group of the peer, gid included */
	int n_gids;
	pid_t pid;
	struct timespec connected; /* CLOCK_BOOTTIME when accepted (scope.c) */
	enum role role;
	struct request *kept; /* a waiting or streaming request */
	bool streaming;
	bool closing;   /* close once the output is written */
	bool dead;      /* closed; freed later */
	bool eof;       /* the peer shut down its writing side */
	bool lingering; /* answered and shut down; discarding input */
	bool in_dispatch;
	bool output_paused; /* requests wait until the output drains */
	bool held;          /* output waits for the commit barrier */
	bool write_blocked; /* the last write found the socket full */
	bool stream_slot;   /* holds one of max_subscribers (stream.h) */
	char *exempt_pool;  /* a worker of this pool let in beyond the shares */
	struct event *ev_resume;
	/* Output counted since the connection began: queued, written, and
	 * let go by the commit barrier; the durable answers not yet written
	 * (rewritten when the barrier gives up on them, reply.c). */
	uint64_t out_queued, out_written, out_released;
	struct out_span *durable;
	size_t n_durable, cap_durable;
	struct conn_hook *hooks;
	uint64_t in_total, in_popped; /* input bytes read, and taken as lines */
	struct fd_set_rx rx[CONN_FD_SETS];
	int n_rx;
	TAILQ_ENTRY(conn) entry;
};

/* Start listening on the configured socket (or one handed over by systemd). */
int server_start(void);
/* Work out every connection's role again (after a reload or a change of
 * pools: [access] and the pool users may have changed). */
void server_refresh_roles(void);
/* Stop listening, close every connection and remove the socket file. */
void server_stop(void);
/* A listening Unix socket at path made like the control socket (a stale
 * one replaced, never through a link, socket_mode and socket_group): its
 * fd or a negative errno. */
int server_unix_listen(const char *path);
/* Number of connected clients. */
unsigned server_clients(void);
/* The socket path in use. */
const char *server_socket_path(void);
/* Connections that stopped taking requests until their output drains;
 * unsent output of all connections in bytes. (Streams: stream.h.) */
unsigned server_paused_clients(void);
size_t server_output_bytes(void);
/* The output c holds that is not written yet, in bytes. */
size_t conn_out_len(const struct conn *c);
/* Ask p about peers (NULL: the core's own, [access] only; the daemon's
 * assembly installs supervision's, peer.h). */
struct peer_policy;
void server_set_peer_policy(const struct peer_policy *p);

/* Hold answers behind b (commit_barrier.h; NULL: never). */
void server_set_commit_barrier(const struct commit_barrier *b);
/* How much of total (max_clients, max_subscribers) peers of role may use:
 * all of it for admins, less what is kept for admins for state peers, less
 * what is kept for state peers too for the rest. */
unsigned role_share(unsigned total, enum role role);
/* Why a peer of role was refused one of total slots of what (in buf). */
void role_share_refusal(char *buf, size_t len, const char *what, unsigned total, enum role role);

/* Queue one JSON line for c. Returns false when c is (now) gone. */
bool conn_send(struct conn *c, json_t *msg);
/* Queue one line given as JSON text (len bytes; the newline is added).
 * Returns false when c is (now) gone. */
bool conn_send_text(struct conn *c, const char *text, size_t len);
/* Queue a reply line {"id", "ok", "result"|"error"} without building the
 * reply object (id may be NULL); the value is v or, when v is NULL, the
 * JSON text raw (raw_len bytes). */
bool conn_send_reply(struct conn *c, json_t *id, bool ok, json_t *v, const char *raw,
		     size_t raw_len);
/* The answer queued since out_queued was from (conn_send_reply) shows or
 * changes durable state: if the commit barrier gives up on it, it is
 * replaced by an `unavailable` error. */
void conn_mark_durable(struct conn *c, uint64_t from);
/* Replace every durable answer of c's held output by an `unavailable`
 * error with the same id (the commit barrier gave up on it). */
void conn_rewrite_durable(struct conn *c);
/* Write queued output now (arming the write event only when it would block). */
void conn_flush(struct conn *c);
/* Close after pending output has been written. */
void conn_close_after_write(struct conn *c);
/* Close the descriptors of s and empty it. */
void fd_set_rx_close(struct fd_set_rx *s);
/* Close at once (freed after the current callback). */
void conn_close(struct conn *c);
/* The kept request of c is done: continue with its buffered requests. */
void conn_resume(struct conn *c);
void conn_add_close_hook(struct conn *c, conn_hook_fn *fn, void *arg);
void conn_remove_close_hook(struct conn *c, conn_hook_fn *fn, void *arg);
/* A client on a connected socket with these credentials: an accepted one,
 * or a socketpair end in tests and fuzzing. Takes fd; NULL on failure. */
struct conn *conn_new_for_fd(int fd, uid_t uid, gid_t gid, pid_t pid);

#endif
