/*
 * The supervision service's answer to who a peer of the control socket
 * is (struct peer_policy, access.h): its role from [access] and the pools'
 * users, and whether its pid is a worker of one of our pools. The daemon's
 * assembly installs it; conn.c knows nothing of pools.
 */
#ifndef MPSUPD_PEER_H
#define MPSUPD_PEER_H

#include <sys/types.h>

#include "access.h"

/* Connections a pool's workers may hold beyond the shares, per worker. */
#define PEER_WORKER_CONNS 4

/* The daemon's policy: [access], pool users and pool members. */
extern const struct peer_policy peer_policy_default;

#endif
