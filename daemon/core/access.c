/*
 * Roles from [access] (access.h).
 */
#include "config.h"

#include <unistd.h>

#include "access.h"

/* Is uid/gids in an [access] list? */
static bool access_match(const struct access_list *a, uid_t uid, const gid_t *gids, int n_gids)
{
	if (a->any)
		return true;
	for (size_t i = 0; i < a->n_uids; i++)
		if (a->uids[i] == uid)
			return true;
	for (size_t i = 0; i < a->n_gids; i++)
		for (int j = 0; j < n_gids; j++)
			if (a->gids[i] == gids[j])
				return true;
	return false;
}

enum role access_role(const struct conf *cf, uid_t uid, const gid_t *gids, int n_gids,
		      bool default_state)
{
	if (uid == 0 || uid == geteuid())
		return ROLE_ADMIN;
	for (enum role r = ROLE_ADMIN; r > ROLE_STATE; r--)
		if (access_match(&cf->access[r], uid, gids, n_gids))
			return r;
	if (access_match(&cf->access[ROLE_STATE], uid, gids, n_gids) ||
	    (!cf->access[ROLE_STATE].set && default_state))
		return ROLE_STATE;
	if (access_match(&cf->access[ROLE_READ], uid, gids, n_gids))
		return ROLE_READ;
	return ROLE_NONE;
}

enum access_verdict access_decide(enum role role, uid_t uid, bool owned_only, const struct owner *o)
{
	bool mine = o && o->set && o->uid == uid;

	if (role >= ROLE_ADMIN || mine)
		return ACCESS_OK;
	if (o && o->private)
		return ACCESS_HIDDEN;
	return owned_only ? ACCESS_DENIED : ACCESS_OK;
}
