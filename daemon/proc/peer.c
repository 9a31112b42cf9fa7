/*
 * The daemon's peer policy (peer.h): roles from [access] and the pools'
 * users, and pool workers by pid.
 */
#include "config.h"

#include <unistd.h>

#include "access.h"
#include "daemon.h"
#include "peer.h"
#include "proc.h"

/* Is uid a user that some pool's workers run as? (Resolved when the pool
 * was made: no name lookup here.) */
static bool pool_user(uid_t uid)
{
	const struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry)
		if (pl->set_ids && !pl->ids_error && pl->uid == uid)
			return true;
	return false;
}

/* The role of a peer: [access], and users that pool workers run as get at
 * least state unless [access] sets `state`. */
static enum role peer_role(uid_t uid, const gid_t *gids, int n_gids)
{
	return access_role(daemon_g.conf, uid, gids, n_gids, pool_user(uid));
}

/* The pool whose running member has this pid. Walks the members of the
 * pools that run as uid: asked only when the shares would refuse a peer,
 * and a flood from a user no pool runs as costs no walk. */
static const char *worker_pool(pid_t pid, uid_t uid, unsigned *ret_allowance)
{
	const struct pool *pl;

	if (pid <= 0)
		return NULL;
	TAILQ_FOREACH(pl, &pools, entry) {
		if (pl->removing || (pl->set_ids ? pl->uid : geteuid()) != uid)
			continue;
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i] && pl->members[i]->pid == pid &&
			    !pl->members[i]->removing) {
				*ret_allowance = pl->conf->processes * PEER_WORKER_CONNS;
				return pl->name;
			}
	}
	return NULL;
}

const struct peer_policy peer_policy_default = {
	.role = peer_role,
	.worker_pool = worker_pool,
};
