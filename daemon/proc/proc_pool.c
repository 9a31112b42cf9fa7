/*
 * Pools: creation from a definition, members by index, scaling, removal,
 * their output files, the pools of the config at start-up (in priority
 * order) and reload.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "daemon.h"
#include "events.h"
#include "log.h"
#include "proc.h"
#include "proc_cgroup.h"
#include "proc_int.h"
#include "proc_registry.h"

/* "process" or "processes" */
#define PLURAL_ES(n) ((n) == 1 ? "" : "es")

struct pool_list pools = TAILQ_HEAD_INITIALIZER(pools);
static unsigned n_members;

/* The config being applied by proc_reload (daemon_g.conf is still the old one). */
static const struct conf *reloading;

/* The max_processes in force: the new config's while a reload applies it. */
static unsigned max_processes(void)
{
	return (reloading ? reloading : daemon_g.conf)->max_processes;
}

static void publish_pool(const char *event, struct pool *pl)
{
	if (!events_wanted(TOPIC_POOL))
		return;
	events_publish_visible(
		TOPIC_POOL, pl->owner.private ? events_visible_access : NULL, &pl->owner,
		json_pack("{s:s, s:s, s:I, s:f}", "event", event, "pool", pl->name, "processes",
			  (json_int_t)pl->conf->processes, "ts", now_wall()));
}

struct pool *pool_find(const char *name)
{
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry)
		if (!pl->removing && strcmp(pl->name, name) == 0)
			return pl;
	return NULL;
}

unsigned pools_member_count(void)
{
	return n_members;
}

void pool_member_detach(struct proc *p)
{
	if (p->index < p->pool->n_slots && p->pool->members[p->index] == p)
		p->pool->members[p->index] = NULL;
	n_members--;
}

void pool_free_if_emptied(struct pool *pl)
{
	unsigned left = 0;

	if (!pl->removing)
		return;
	for (unsigned i = 0; i < pl->n_slots; i++)
		left += pl->members[i] != NULL;
	if (left == 0)
		pool_free(pl);
}

/* Who the pool's files are written for: the user its members run as. */
static struct safe_owner pool_owner(const struct pool *pl)
{
	return (struct safe_owner){
		.uid = pl->set_ids ? pl->uid : geteuid(),
		.gid = pl->set_ids ? pl->gid : getegid(),
		.groups = pl->set_ids ? pl->groups : NULL,
		.n_groups = pl->set_ids && pl->n_groups > 0 ? (size_t)pl->n_groups : 0,
	};
}

void proc_outfiles_close(struct proc *p)
{
	p->fout = outfile_free(p->fout);
	p->ferr = outfile_free(p->ferr);
}

/* The output files of the pool, written for the user its members run as
 * (resolved before). A pool whose user is unknown runs nothing: no files.
 * Per-process files are (re)opened at their process's next line. */
static void pool_open_outputs(struct pool *pl)
{
	struct safe_owner owner = pool_owner(pl);
	const struct pool_conf *pc = pl->conf;

	pl->out = outfile_free(pl->out);
	pl->err = outfile_free(pl->err);
	for (unsigned i = 0; i < pl->n_slots; i++)
		if (pl->members[i])
			proc_outfiles_close(pl->members[i]);
	/* stdout and stderr into one file (or one per process): share it */
	pl->err_to_out = pc->out.kind == OUTPUT_FILE && pc->err.kind == OUTPUT_FILE &&
			 strcmp(pc->err.path, pc->out.path) == 0;
	if (pl->ids_error)
		return;
	if (pc->out.kind == OUTPUT_FILE && !output_per_process(&pc->out))
		pl->out = outfile_open(&pc->out, &owner);
	if (pc->err.kind == OUTPUT_FILE && !pl->err_to_out && !output_per_process(&pc->err))
		pl->err = outfile_open(&pc->err, &owner);
}

/* p's own file for o (stdout's or stderr's), opened with its path expanded. */
static struct outfile *member_file_open(struct proc *p, const struct output_conf *o)
{
	struct safe_owner owner = pool_owner(p->pool);
	struct output_conf x = *o;
	struct outfile *f;
	char err[256];

	if (!(x.path = output_path_expand(o, p->pool->name, p->name, p->index, err, sizeof(err)))) {
		static struct log_ratelimit refusals;
		if (log_allowed(&refusals))
			log_error("proc", "%s: output file: %s", p->name, err);
		return NULL;
	}
	f = outfile_open(&x, &owner);
	free(x.path);
	return f;
}

struct outfile *pool_member_outfile(struct proc *p, int stream)
{
	struct pool *pl = p->pool;
	bool to_out = stream == STREAM_STDOUT || pl->err_to_out;
	const struct output_conf *o = to_out ? &pl->conf->out : &pl->conf->err;
	struct outfile **mine = to_out ? &p->fout : &p->ferr;

	if (!output_per_process(o))
		return to_out ? pl->out : pl->err;
	if (!*mine && !pl->ids_error)
		*mine = member_file_open(p, o);
	return *mine;
}

void pools_reopen_logs(void)
{
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry) {
		if (pl->out)
			outfile_reopen(pl->out);
		if (pl->err)
			outfile_reopen(pl->err);
		for (unsigned i = 0; i < pl->n_slots; i++) {
			struct proc *p = pl->members[i];
			if (p && p->fout)
				outfile_reopen(p->fout);
			if (p && p->ferr)
				outfile_reopen(p->ferr);
		}
	}
}

/* Make room for index idx. */
static int pool_reserve(struct pool *pl, unsigned idx)
{
	struct proc **m;
	unsigned n;

	if (idx < pl->n_slots)
		return 0;
	n = idx + 1 > pl->n_slots * 2 ? idx + 1 : pl->n_slots * 2;
	if (!(m = realloc(pl->members, n * sizeof(*m))))
		return -ENOMEM;
	memset(m + pl->n_slots, 0, (n - pl->n_slots) * sizeof(*m));
	pl->members = m;
	pl->n_slots = n;
	return 0;
}

static struct proc *pool_add_member(struct pool *pl, unsigned idx)
{
	char name[96];
	struct proc *p;

	if (pool_reserve(pl, idx) < 0)
		return NULL;
	snprintf(name, sizeof(name), "%s:%u", pl->name, idx);
	if (!(p = proc_new(name, pl, idx)))
		return NULL;
	pl->members[idx] = p;
	n_members++;
	return p;
}

static unsigned pool_active(const struct pool *pl)
{
	unsigned n = 0;

	for (unsigned i = 0; i < pl->n_slots; i++)
		n += pl->members[i] && !pl->members[i]->removing;
	return n;
}

/* May pl grow by more members (the descriptor budget)? */
static int pool_grow_fits(const struct pool *pl, unsigned more)
{
	unsigned cost = proc_fds_worker_cost(pl->conf, pl->journal_failing);
	char what[160];

	snprintf(what, sizeof(what), "pool %s (%u more worker%s x %u)", pl->name, more,
		 more == 1 ? "" : "s", cost);
	return proc_fds_check((unsigned long long)more * cost, what);
}

/* Grow or shrink to n members; new members start when start is set. */
static int pool_resize(struct pool *pl, unsigned n, bool start)
{
	unsigned active = pool_active(pl);

	if (n > active && proc_count() + (n - active) > max_processes())
		return -ENOSPC;
	/* members still stopping after a shrink hold their descriptors:
	 * only new slots cost more */
	if (n > active && pool_grow_fits(pl, n - active) < 0)
		return -EMFILE;
	for (unsigned idx = 0; active < n; idx++) {
		struct proc *p = idx < pl->n_slots ? pl->members[idx] : NULL;
		if (p && !p->removing)
			continue;
		if (p) {
			/* still stopping after a shrink: keep it, start it again */
			p->removing = false;
			proc_unfree(p);
			if (start)
				proc_start(p);
		} else {
			if (!(p = pool_add_member(pl, idx)))
				return -ENOMEM;
			if (start)
				proc_start(p);
		}
		active++;
	}
	for (unsigned idx = pl->n_slots; idx-- > 0 && active > n;) {
		struct proc *p = pl->members[idx];
		if (!p || p->removing)
			continue;
		p->removing = true;
		active--;
		proc_stop(p);
		proc_after(p);
	}
	pl->conf->processes = n;
	return 0;
}

/* pool_create with the ids to run as (NULL: pc's user and group). */
static int pool_make(const struct pool_conf *pc, struct run_ids *as, int *stdio, bool start,
		     bool from_config, struct pool **ret)
{
	char what[160];
	struct pool *pl;
	int r;

	if (pool_find(pc->name) || proc_find(pc->name))
		return -EEXIST;
	if (proc_count() + pc->processes > max_processes())
		return -ENOSPC;
	snprintf(what, sizeof(what), "pool %s (%u worker%s x %u)", pc->name, pc->processes,
		 pc->processes == 1 ? "" : "s", proc_fds_worker_cost(pc, NULL));
	if (proc_fds_check(proc_fds_pool_cost(pc, pc->processes), what) < 0)
		return -EMFILE;
	if (!(pl = calloc(1, sizeof(*pl))))
		return -ENOMEM;
	if (!(pl->name = strdup(pc->name)) || !(pl->conf = pool_conf_dup(pc))) {
		free(pl->name);
		free(pl);
		return -ENOMEM;
	}
	pl->conf->processes = 0;
	pl->defined_processes = pc->processes;
	pl->from_config = from_config;
	pl->owner = pc->owner;
	pl->stdio[0] = pl->stdio[1] = pl->stdio[2] = -1;
	if (stdio) {
		pl->stdio_passed = true;
		for (int i = 0; i < 3; i++) {
			pl->stdio[i] = stdio[i];
			stdio[i] = -1; /* ours now */
		}
	}
	if (as)
		pool_take_ids(pl, as);
	else
		pool_resolve_ids(pl);
	proc_cgroup_check_pool(pl->conf);
	if (pl->ids_error)
		log_error("proc", "pool %s: %s", pl->name, pl->ids_error);
	pool_open_outputs(pl);
	TAILQ_INSERT_TAIL(&pools, pl, entry);
	server_refresh_roles(); /* its user may connect with the state role now */
	r = pool_resize(pl, pc->processes, start && !proc_shutting_down());
	publish_pool("pool.added", pl);
	log_info("proc", "pool %s: added (%u process%s)", pl->name, pc->processes,
		 PLURAL_ES(pc->processes));
	if (ret)
		*ret = pl;
	return r;
}

int pool_create(const struct pool_conf *pc, bool start, bool from_config, struct pool **ret)
{
	return pool_make(pc, NULL, NULL, start, from_config, ret);
}

int pool_create_as(const struct pool_conf *pc, struct run_ids *ids, int *stdio, bool start,
		   struct pool **ret)
{
	int r = pool_make(pc, ids, stdio, start, false, ret);

	if (ids)
		run_ids_clear(ids); /* what pool_take_ids did not take */
	for (int i = 0; stdio && i < 3; i++)
		if (stdio[i] >= 0) { /* not taken: the pool was refused */
			close(stdio[i]);
			stdio[i] = -1;
		}
	return r;
}

void pool_free(struct pool *pl)
{
	scope_unbind(&pl->scope);
	pool_rolling_cancel(pl);
	log_info("proc", "pool %s: removed", pl->name);
	publish_pool("pool.removed", pl);
	TAILQ_REMOVE(&pools, pl, entry);
	server_refresh_roles();
	proc_notify_pool_gone(pl);
	outfile_free(pl->out);
	outfile_free(pl->err);
	for (int i = 0; i < 3 && pl->stdio_passed; i++)
		if (pl->stdio[i] >= 0)
			close(pl->stdio[i]);
	pool_clear_ids(pl);
	pool_conf_free(pl->conf);
	free(pl->members);
	free(pl->name);
	free(pl);
}

void pool_remove(struct pool *pl)
{
	bool any = false;

	if (pl->removing)
		return;
	pl->removing = true;
	scope_unbind(&pl->scope);
	pool_rolling_cancel(pl);
	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct proc *p = pl->members[i];
		if (!p)
			continue;
		any = true;
		p->removing = true;
		proc_stop(p);
		proc_after(p);
	}
	if (!any)
		pool_free(pl);
}

int pool_scale(struct pool *pl, unsigned processes)
{
	int r = pool_resize(pl, processes, !proc_shutting_down());

	if (r == 0) {
		log_info("proc", "pool %s: scaled to %u", pl->name, processes);
		publish_pool("pool.scaled", pl);
	}
	return r;
}

int pool_replace(struct pool *pl, const struct pool_conf *pc)
{
	struct pool_conf *c = pool_conf_dup(pc);
	struct proc **alive;
	unsigned keep, target;
	size_t n = 0;
	int r;

	if (!c || !(alive = calloc(pl->n_slots ? pl->n_slots : 1, sizeof(*alive)))) {
		pool_conf_free(c);
		return -ENOMEM;
	}
	keep = pl->conf->processes;
	/* a runtime scale stays unless the definition's count changed */
	target = pc->processes != pl->defined_processes ? pc->processes : keep;
	pl->defined_processes = pc->processes;
	pool_conf_free(pl->conf);
	pl->conf = c;
	c->processes = keep;
	pool_resolve_ids(pl);
	proc_cgroup_check_pool(pl->conf);
	server_refresh_roles();
	if (pl->ids_error)
		log_error("proc", "pool %s: %s", pl->name, pl->ids_error);
	pool_open_outputs(pl);
	/* survivors restart with the new definition one at a time (a rolling
	 * restart); new members start fresh */
	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct proc *p = pl->members[i];
		if (!p || p->removing)
			continue;
		if (proc_state_alive(p->state))
			alive[n++] = p;
		else if (c->autostart)
			proc_start(p);
	}
	log_info("proc", "pool %s: definition changed, restarting", pl->name);
	if (n == 0 || pool_rolling_start(pl, alive, n, 1, true) < 0)
		for (size_t i = 0; i < n; i++)
			proc_restart(alive[i]);
	free(alive);
	r = pool_resize(pl, target, c->autostart && !proc_shutting_down());
	publish_pool("pool.changed", pl);
	return r;
}

/*
 * The config's pools: at start-up and at reload.
 */

/* The pools of conf sorted by priority (low first; file order within). */
static const struct pool_conf **sorted_pools(const struct conf *conf, size_t *ret_n)
{
	const struct pool_conf **v;
	size_t n = 0;

	for (const struct pool_conf *pc = conf->pools; pc; pc = pc->next)
		n++;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return NULL;
	n = 0;
	for (const struct pool_conf *pc = conf->pools; pc; pc = pc->next)
		v[n++] = pc;
	/* insertion sort: stable, so file order is kept within a priority */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && v[j - 1]->priority > v[j]->priority; j--) {
			const struct pool_conf *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	*ret_n = n;
	return v;
}

int proc_start_config(const struct conf *conf)
{
	const struct pool_conf **v;
	size_t n;
	int r;

	if ((r = proc_init()) < 0)
		return r;
	/* what a crashed daemon left goes before anything starts */
	procreg_start();
	if (!(v = sorted_pools(conf, &n)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		r = pool_create(v[i], v[i]->autostart, true, NULL);
		if (r == -ENOSPC)
			log_error("proc", "pool %s: not started: max_processes (%u) reached",
				  v[i]->name, conf->max_processes);
		else if (r == -EMFILE)
			log_error("proc", "pool %s: not started: %s", v[i]->name,
				  proc_fds_refusal());
		else if (r < 0)
			log_error("proc", "pool %s: %s", v[i]->name, strerror(-r));
	}
	free(v);
	return 0;
}

/* Record (and log) a pool the reload could not apply. */
static void reload_failed(json_t *failed, const char *pool, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reload_failed(json_t *failed, const char *pool, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error_f("proc", &(struct log_fields){ .pool = pool }, "reload: pool %s: %s", pool, msg);
	json_array_append_new(failed, json_pack("{s:s, s:s}", "pool", pool, "error", msg));
}

/* Why a pool could not be created or resized, for reload_failed(). */
static const char *pool_error(int r)
{
	static char buf[64];

	if (r == -EMFILE)
		return proc_fds_refusal();
	if (r != -ENOSPC)
		return strerror(-r);
	snprintf(buf, sizeof(buf), "max_processes (%u) reached", max_processes());
	return buf;
}

/* Reload: pc names a pool that does not exist yet. */
static void reload_add(const struct pool_conf *pc, json_t *added, json_t *failed)
{
	struct pool *pl = NULL;
	int r;

	if (proc_find(pc->name)) {
		reload_failed(failed, pc->name,
			      "not added: the name is taken by a one-shot process");
		return;
	}
	r = pool_create(pc, pc->autostart, true, &pl);
	if (pl)
		json_array_append_new(added, json_string(pc->name));
	if (r < 0 && pl)
		reload_failed(failed, pc->name, "added, but not with %u process%s: %s",
			      pc->processes, PLURAL_ES(pc->processes), pool_error(r));
	else if (r < 0)
		reload_failed(failed, pc->name, "not added (%u process%s): %s", pc->processes,
			      PLURAL_ES(pc->processes), pool_error(r));
}

/* Would pl, redefined by pc (its output modes may change what a worker
 * costs), fit the descriptor budget? Members being removed still count. */
static int replace_fits(const struct pool *pl, const struct pool_conf *pc)
{
	unsigned members = 0, active = pool_active(pl), target;
	unsigned long long before, after;
	char what[160];

	for (unsigned i = 0; i < pl->n_slots; i++)
		members += pl->members[i] != NULL;
	target = pc->processes > active ? members + (pc->processes - active) : members;
	before = proc_fds_pool_cost(pl->conf, 0) +
		 (unsigned long long)members * proc_fds_worker_cost(pl->conf, pl->journal_failing);
	after = proc_fds_pool_cost(pc, target);
	if (after <= before)
		return 0;
	snprintf(what, sizeof(what), "pool %s (%u worker%s x %u)", pc->name, pc->processes,
		 pc->processes == 1 ? "" : "s", proc_fds_worker_cost(pc, NULL));
	return proc_fds_check(after - before, what);
}

/* Reload: pl is defined again by pc (changed, scaled or the same). */
static void reload_update(struct pool *pl, const struct pool_conf *pc, json_t *changed,
			  json_t *failed)
{
	int r;

	pl->from_config = true;
	if (pool_conf_differs(pl->conf, pc) && replace_fits(pl, pc) < 0) {
		reload_failed(failed, pc->name, "definition not changed: %s", proc_fds_refusal());
	} else if (pool_conf_differs(pl->conf, pc)) {
		/* the new definition is in place even when the resize fails */
		r = pool_replace(pl, pc);
		json_array_append_new(changed, json_string(pc->name));
		if (r < 0)
			reload_failed(failed, pc->name,
				      "definition changed, but not scaled to %u process%s "
				      "(still %u): %s",
				      pc->processes, PLURAL_ES(pc->processes), pl->conf->processes,
				      pool_error(r));
	} else if (pl->defined_processes != pc->processes) {
		/* the file's count changed (a runtime scale alone is kept) */
		unsigned before = pl->conf->processes;
		r = pool_scale(pl, pc->processes);
		if (r == 0) {
			pl->defined_processes = pc->processes;
			json_array_append_new(changed, json_string(pc->name));
		} else
			reload_failed(failed, pc->name, "not scaled from %u to %u process%s: %s",
				      before, pc->processes, PLURAL_ES(pc->processes),
				      pool_error(r));
	}
}

/* Apply newconf to the pools; changes gets only what was really done, and
 * failed: [{pool, error}] what could not be. */
void proc_reload(const struct conf *newconf, json_t *changes)
{
	json_t *added = json_object_get(changes, "added");
	json_t *changed = json_object_get(changes, "changed");
	json_t *removed = json_object_get(changes, "removed");
	json_t *failed = json_object_get(changes, "failed");
	const struct pool_conf **v;
	struct pool *pl, *next;
	size_t n;

	if (!(v = sorted_pools(newconf, &n))) {
		log_error("proc", "reload: out of memory");
		return;
	}
	reloading = newconf;
	for (size_t i = 0; i < n; i++) {
		if ((pl = pool_find(v[i]->name)))
			reload_update(pl, v[i], changed, failed);
		else
			reload_add(v[i], added, failed);
	}
	for (pl = TAILQ_FIRST(&pools); pl; pl = next) {
		next = TAILQ_NEXT(pl, entry);
		if (pl->removing || !pl->from_config || conf_find_pool(newconf, pl->name))
			continue;
		json_array_append_new(removed, json_string(pl->name));
		pool_remove(pl); /* may free pl */
	}
	reloading = NULL;
	free(v);
}
