/*
 * Roles from [access]: who may do what on the control socket. The core's
 * own view of a peer; the supervision service refines it (peer.c: users
 * that pools run as, pool workers) through struct peer_policy.
 */
#ifndef MPSUPD_ACCESS_H
#define MPSUPD_ACCESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "conf.h"

/* The role of a peer: root and the daemon's own user are admin; [access]
 * grants the rest (the highest role whose list matches). A peer that no
 * list names but that default_state says deserves it (e.g. a user pool
 * workers run as, while [access] sets no `state`) gets state. */
enum role access_role(const struct conf *cf, uid_t uid, const gid_t *gids, int n_gids,
		      bool default_state);

/* Who a process, pool or object belongs to, as far as access goes. */
struct owner {
	uid_t uid;    /* the uid of the peer that made it */
	bool set;     /* made by a peer (config pools and the like are nobody's) */
	bool private; /* access "private": hidden from every other non-admin uid */
};

/* What access_decide() says. */
enum access_verdict {
	ACCESS_OK = 0,
	ACCESS_HIDDEN, /* answer not_found: its existence is not disclosed */
	ACCESS_DENIED, /* answer permission_denied */
};

/* The one place that decides whether a peer (role, uid) may use a thing
 * owned as o: admins may use everything; a private thing is hidden from
 * any other uid; a command flagged owned_only (proc.stop, proc.kill...)
 * lets a non-admin act only on what its own uid made. */
enum access_verdict access_decide(enum role role, uid_t uid, bool owned_only,
				  const struct owner *o);

/* How the connection layer asks about a peer: installed by the daemon's
 * assembly (server_set_peer_policy), so the core needs no pool. */
struct peer_policy {
	/* The role of a peer with these credentials. */
	enum role (*role)(uid_t uid, const gid_t *gids, int n_gids);
	/* When pid (of user uid) is a live worker of a pool: the pool's name
	 * (valid until the loop runs again) and how many connections its
	 * workers may hold beyond the role shares of max_clients; NULL
	 * otherwise. */
	const char *(*worker_pool)(pid_t pid, uid_t uid, unsigned *ret_allowance);
};

#endif
