/*
 * Process records: what a process is seen as (its JSON record, owner,
 * reason, exit code), the counts of processes, and lookup by name
 * (POOL:INDEX or a one-shot's). The process objects and their life are
 * proc.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "jsonw.h"
#include "hash.h"
#include "proc.h"
#include "proc_int.h"
#include "proc_cgroup.h"

/*
 * Records.
 */

unsigned proc_count(void)
{
	return pools_member_count() + oneshots_live_count();
}

const struct owner *proc_owner(const struct proc *p)
{
	static const struct owner nobody;

	if (p->os)
		return &p->os->owner;
	return p->pool ? &p->pool->owner : &nobody;
}

/* Walks the one-shots and the pools a peer added: a few thousand records
 * at most (max_oneshots), asked once per proc.run or pool.add. */
unsigned proc_count_of_uid(uid_t uid)
{
	unsigned n = 0;
	struct pool *pl;
	struct proc *p;

	TAILQ_FOREACH(p, &oneshots, os->entry)
		n += !p->freed && p->os->owner.set && p->os->owner.uid == uid &&
		     !proc_state_final(p->state);
	TAILQ_FOREACH(pl, &pools, entry) {
		unsigned m = 0;
		if (!pl->owner.set || pl->owner.uid != uid || pl->removing)
			continue;
		for (unsigned i = 0; i < pl->n_slots; i++)
			m += pl->members[i] && !pl->members[i]->freed &&
			     !proc_state_final(pl->members[i]->state);
		n += m ? m : 1; /* an empty pool still holds a pidfd, maybe descriptors */
	}
	return n;
}

bool proc_is_alive(const struct proc *p)
{
	return proc_state_alive(p->state);
}

void proc_record_write(const struct proc *p, struct jsonw *w)
{
	bool alive = proc_is_alive(p);

	jsonw_open(w, '{');
	jsonw_key(w, "name");
	jsonw_str(w, p->name);
	jsonw_key(w, "pool");
	jsonw_str(w, p->pool ? p->pool->name : NULL);
	jsonw_key(w, "index");
	if (p->pool)
		jsonw_int(w, p->index);
	else
		jsonw_null(w);
	jsonw_key(w, "pid");
	if (p->pid)
		jsonw_int(w, p->pid);
	else
		jsonw_null(w);
	jsonw_key(w, "state");
	jsonw_str(w, proc_state_name(p->state));
	jsonw_key(w, "is_alive");
	jsonw_bool(w, alive);
	jsonw_key(w, "exitcode");
	if (proc_exitcode_known(p))
		jsonw_int(w, p->exitcode);
	else
		jsonw_null(w);
	jsonw_key(w, "started_at");
	if (p->started_wall > 0)
		jsonw_secs(w, p->started_wall);
	else
		jsonw_null(w);
	jsonw_key(w, "uptime");
	if (alive && p->started_mono > 0)
		jsonw_secs(w, now_mono() - p->started_mono);
	else
		jsonw_null(w);
	jsonw_key(w, "restarts");
	jsonw_int(w, p->restarts);
	jsonw_key(w, "exit_status_text");
	jsonw_str(w, p->exit_status_text);
	jsonw_key(w, "reason");
	jsonw_str(w, proc_reason(p));
	if (p->pool && p->pool->conf->ready == READY_NOTIFY) {
		jsonw_key(w, "notify_status");
		jsonw_str(w, alive ? p->notify_status : NULL);
		jsonw_key(w, "notify_stopping");
		jsonw_bool(w, alive && p->notify_stopping);
	}
	proc_cgroup_record_write(p, w);
	proc_notify_record_write(p, w);
	jsonw_close(w, '}');
}

const char *proc_reason(const struct proc *p)
{
	return proc_is_alive(p) ? NULL : p->reason;
}

void proc_text_set(char **field, const char *fmt, va_list ap)
{
	char *s = NULL;

	if (fmt && vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	free(*field);
	*field = s;
}

void proc_set_reason(struct proc *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	proc_text_set(&p->reason, fmt, ap);
	va_end(ap);
}

bool proc_exitcode_known(const struct proc *p)
{
	return !proc_is_alive(p) && p->has_exitcode;
}

/*
 * Lookup by name: POOL:INDEX or a one-shot's.
 */

struct proc *proc_find(const char *name)
{
	const char *colon = strrchr(name, ':');
	struct proc *p;
	uint32_t h;

	if (colon) {
		char pname[80], *end;
		unsigned long idx;
		struct pool *pl;

		if ((size_t)(colon - name) >= sizeof(pname) || !colon[1])
			return NULL;
		memcpy(pname, name, (size_t)(colon - name));
		pname[colon - name] = '\0';
		errno = 0;
		idx = strtoul(colon + 1, &end, 10);
		if (*end || errno || colon[1] < '0' || colon[1] > '9')
			return NULL;
		if (!(pl = pool_find(pname)) || idx >= pl->n_slots)
			return NULL;
		return pl->members[idx];
	}
	/* one-shots: up to max_oneshots finished records stay, and a new
	 * name is looked up in all of them; the hash spares most strcmp */
	h = hash_fnv1a32(name);
	TAILQ_FOREACH(p, &oneshots, os->entry)
		if (!p->freed && p->os->name_hash == h && strcmp(p->name, name) == 0)
			return p;
	return NULL;
}
