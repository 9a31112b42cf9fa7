/*
 * Who a peer of the control socket is, as the connection layer needs to
 * know it: its role (from [access] and the pools' users) and whether its
 * pid is a worker of one of our pools. conn.c asks through struct
 * peer_policy only, so it knows nothing of pools or access lists.
 */
#ifndef MPSUPD_PEER_H
#define MPSUPD_PEER_H

#include <sys/types.h>

#include "conf.h"

struct peer_policy {
	/* The role of a peer with these credentials. */
	enum role (*role)(uid_t uid, const gid_t *gids, int n_gids);
	/* When pid (of user uid) is a live worker of a pool: the pool's name
	 * (valid until the loop runs again) and how many connections its
	 * workers may hold beyond the role shares of max_clients; NULL
	 * otherwise. */
	const char *(*worker_pool)(pid_t pid, uid_t uid, unsigned *ret_allowance);
};

/* Connections a pool's workers may hold beyond the shares, per worker. */
#define PEER_WORKER_CONNS 4

/* The daemon's policy: [access], pool users and pool members. */
extern const struct peer_policy peer_policy_default;

#endif
