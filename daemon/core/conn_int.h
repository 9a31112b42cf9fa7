/*
 * What the files of the control socket share: the set of connections
 * (kept by conn.c, counted by server.c's admission), making a connection,
 * and queueing a built line (reply.c). Only server.c, conn.c and reply.c
 * include this; everything else uses conn.h.
 */
#ifndef MPSUPD_CONN_INT_H
#define MPSUPD_CONN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "conf.h"

struct conn;

/* Every open connection (one: conns_g, conn.c). */
struct conn_set {
	TAILQ_HEAD(conn_list, conn) all;
	unsigned n;
	unsigned n_exempt; /* workers' connections beyond the role shares */
	size_t out_total;  /* unsent output of every connection */
};
extern struct conn_set conns_g;

/* conn.c: one connection's life */
/* The peer's groups (SO_PEERGROUPS and gid), in a new array; NULL when
 * out of memory. */
gid_t *conn_peer_groups(int fd, gid_t gid, int *ret_n);
/* A client on fd with these credentials and role; takes fd and gids. */
struct conn *conn_new(int fd, uid_t uid, gid_t gid, pid_t pid, gid_t *gids, int n_gids,
		      enum role role);
/* Move the answers staged for c (if any) into its output queue; false
 * (and c closed) when they cannot be kept. */
bool conn_stage_spill(struct conn *c);
/* Where c's next answer may be built in place, *ret_room bytes; NULL when
 * c is not being dispatched (conn_queue then). conn_stage_commit() queues
 * the len bytes built there. */
char *conn_stage_room(struct conn *c, size_t *ret_room);
void conn_stage_commit(struct conn *c, size_t len);
/* Queue a complete line; false (and c closed) when it cannot be kept. */
bool conn_queue(struct conn *c, const char *data, size_t len);
/* Start and stop the output budget (max_output_total); the stop closes
 * every connection first, writing what it can. */
int conns_start(void);
void conns_stop(void);

/* server.c: the role a peer gets from the peer policy installed now */
enum role server_peer_role(uid_t uid, const gid_t *gids, int n_gids);

#endif
