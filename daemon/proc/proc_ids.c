/*
 * The user and groups a process runs as: names or numbers resolved to the
 * passwd entry and the supplementary groups, for pools (once per
 * definition) and one-shots (per request).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf_keys.h"
#include "proc.h"
#include "proc_int.h"

void pool_clear_ids(struct pool *pl)
{
	free(pl->groups);
	free(pl->home);
	free(pl->user_name);
	free(pl->shell);
	free(pl->ids_error);
	pl->groups = NULL;
	pl->home = pl->user_name = pl->shell = pl->ids_error = NULL;
	pl->set_ids = false;
	pl->n_groups = 0;
}

void run_ids_clear(struct run_ids *ids)
{
	free(ids->groups);
	free(ids->home);
	free(ids->user_name);
	free(ids->shell);
	memset(ids, 0, sizeof(*ids));
}

/* Supplementary groups into ids->groups: the user's (as root, when the user
 * has a passwd entry), else just the gid. A list that cannot be had is an
 * error (ids->groups NULL), never a partial list. */
static void read_groups(struct run_ids *ids, bool have_passwd)
{
	int ng = 64;

	ids->groups = calloc((size_t)ng, sizeof(gid_t));
	if (ids->groups && have_passwd && ids->user_name && geteuid() == 0 &&
	    getgrouplist(ids->user_name, ids->gid, ids->groups, &ng) < 0) {
		gid_t *g = realloc(ids->groups, (size_t)ng * sizeof(gid_t));
		if (g && getgrouplist(ids->user_name, ids->gid, g, &ng) >= 0) {
			ids->groups = g;
		} else {
			free(g ? g : ids->groups); /* a failed second try freed too */
			ids->groups = NULL;
		}
	} else if (ids->groups && !(have_passwd && geteuid() == 0)) {
		ids->groups[0] = ids->gid;
		ng = 1;
	}
	ids->n_groups = ng;
}

int run_ids_resolve(const char *user, const char *group, struct run_ids *ret, char **ret_error)
{
	struct run_ids ids = { .uid = geteuid(), .gid = getegid() };
	struct passwd *pw = NULL;
	uint32_t id;

	*ret_error = NULL;
	if (user) {
		bool numeric = conf_parse_id(user, &id);
		pw = numeric ? getpwuid((uid_t)id) : getpwnam(user);
		if (!pw && !numeric) {
			if (asprintf(ret_error, "user %s: no such user", user) < 0)
				*ret_error = NULL;
			return -ENOENT;
		}
		ids.uid = pw ? pw->pw_uid : (uid_t)id;
		ids.gid = pw ? pw->pw_gid : (gid_t)ids.uid;
		if (pw) {
			ids.user_name = strdup(pw->pw_name);
			ids.home = strdup(pw->pw_dir);
			ids.shell = strdup(pw->pw_shell);
		}
	}
	if (group) {
		if (conf_lookup_group(group, &ids.gid) < 0) {
			run_ids_clear(&ids);
			if (asprintf(ret_error, "group %s: no such group", group) < 0)
				*ret_error = NULL;
			return -ENOENT;
		}
	}
	read_groups(&ids, pw != NULL);
	if (!ids.groups || (pw && (!ids.user_name || !ids.home || !ids.shell))) {
		run_ids_clear(&ids);
		if (asprintf(ret_error, "%s: cannot read its groups (out of memory)",
			     user ? user : group) < 0)
			*ret_error = NULL;
		return -ENOMEM;
	}
	*ret = ids;
	return 0;
}

void pool_take_ids(struct pool *pl, struct run_ids *ids)
{
	pool_clear_ids(pl);
	pl->uid = ids->uid;
	pl->gid = ids->gid;
	pl->groups = ids->groups;
	pl->n_groups = ids->n_groups;
	pl->user_name = ids->user_name;
	pl->home = ids->home;
	pl->shell = ids->shell;
	memset(ids, 0, sizeof(*ids));
	pl->set_ids = !(geteuid() != 0 && pl->uid == geteuid() && pl->gid == getegid());
}

void pool_resolve_ids(struct pool *pl)
{
	const struct pool_conf *c = pl->conf;
	struct run_ids ids;

	pool_clear_ids(pl);
	if (!c->user && !c->group)
		return;
	if (run_ids_resolve(c->user, c->group, &ids, &pl->ids_error) < 0)
		return;
	pl->uid = ids.uid;
	pl->gid = ids.gid;
	pl->groups = ids.groups;
	pl->n_groups = ids.n_groups;
	pl->user_name = ids.user_name;
	pl->home = ids.home;
	pl->shell = ids.shell;
	/* an unprivileged daemon running the pool as itself changes nothing */
	pl->set_ids = !(geteuid() != 0 && pl->uid == geteuid() && pl->gid == getegid());
}
