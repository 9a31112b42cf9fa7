/*
 * The process protocol commands (docs/protocol.md, "Processes" and "Pools") and the
 * proc module's lifecycle hooks: targets, status, start/stop/restart and
 * signals, proc.join. Requests that wait (start/stop/restart with wait,
 * proc.join) are parked (park.h) and checked on every state change. One-shots
 * are in proc_run_cmd.c, logs in proc_logs_cmd.c, pools in pool_cmd.c.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "command.h"
#include "jsonw.h"
#include "log.h"
#include "park.h"
#include "proc.h"
#include "proc_cgroup.h"
#include "proc_cmd.h"

/*
 * Targets.
 */

static int target_add(struct target *t, struct proc *p)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct proc **v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = p;
	return 0;
}

static void pool_members(struct target *t, struct pool *pl)
{
	for (unsigned i = 0; i < pl->n_slots; i++)
		if (pl->members[i] && !pl->members[i]->freed)
			target_add(t, pl->members[i]);
}

/* "*": everything r's peer may use through its command (the rest is
 * left out, not refused). */
static void target_all(struct request *r, struct target *t)
{
	struct pool *pl;
	struct proc *p;

	TAILQ_FOREACH(pl, &pools, entry)
		if (request_access(r, &pl->owner) == ACCESS_OK)
			pool_members(t, pl);
	TAILQ_FOREACH(p, &oneshots, os->entry)
		if (!p->freed && request_access(r, &p->os->owner) == ACCESS_OK)
			target_add(t, p);
}

/* Resolve name ("*", pool, pool:index, one-shot) into t; answers not_found,
 * or permission_denied for what r's peer may not use (access_decide). */
int target_resolve(struct request *r, const char *name, struct target *t)
{
	enum access_verdict v;
	struct pool *pl;
	struct proc *p;

	memset(t, 0, sizeof(*t));
	if (strcmp(name, "*") == 0) {
		target_all(r, t);
		return 0;
	}
	if ((pl = pool_find(name))) {
		if ((v = request_access(r, &pl->owner)) != ACCESS_OK)
			goto refused;
		pool_members(t, pl);
		return 0;
	}
	if ((p = proc_find(name)) && !p->freed) {
		if ((v = request_access(r, proc_owner(p))) != ACCESS_OK)
			goto refused;
		target_add(t, p);
		return 0;
	}
	v = ACCESS_HIDDEN;
refused:
	request_access_error(r, v, "process or pool", name);
	return -1;
}

bool target_matches(const char *target, const struct proc *p)
{
	return strcmp(target, "*") == 0 || strcmp(target, p->name) == 0 ||
	       (p->pool && strcmp(target, p->pool->name) == 0);
}

/* Answer r with the records of v[0..n) (NULL entries: gone) as a list. */
void answer_records(struct request *r, struct proc **v, size_t n)
{
	struct jsonw w;

	jsonw_init(&w);
	jsonw_open(&w, '[');
	for (size_t i = 0; i < n; i++)
		if (v[i])
			proc_record_write(v[i], &w);
	jsonw_close(&w, ']');
	request_ok_text(r, &w);
}

/*
 * Waiters.
 */

enum wait_kind { WAIT_START, WAIT_STOP, WAIT_JOIN };

/* A request waiting for processes to settle (parked: park.h). */
struct waiter {
	struct park park;
	enum wait_kind kind;
	struct proc **procs; /* NULL entries: gone */
	size_t n, next;      /* procs[0..next) were seen done */
};

static struct park_queue waiters = { TAILQ_HEAD_INITIALIZER(waiters.head), 0 };

static struct waiter *waiter_of(struct park *p)
{
	return PARK_OWNER(p, struct waiter, park);
}

static bool proc_done(const struct proc *p, enum wait_kind kind)
{
	if (!p)
		return true;
	if (kind == WAIT_START)
		return !p->restart_pending && !p->rolling_pending && !p->rolling_inflight &&
		       p->state != PS_STARTING && p->state != PS_STOPPING;
	return proc_state_final(p->state) && !p->restart_pending;
}

static void waiter_free(struct waiter *w)
{
	free(w->procs);
	free(w);
}

static json_t *join_result(const struct proc *p, bool timed_out)
{
	if (!p)
		return json_pack("{s:n, s:b}", "exitcode", "is_alive", 0);
	return json_pack("{s:o, s:b}", "exitcode",
			 proc_exitcode_known(p) ? json_integer(p->exitcode) : json_null(),
			 "is_alive", timed_out || proc_is_alive(p));
}

/* Answer r for w (whose wait is over) and free w. */
static void waiter_answer(struct waiter *w, struct request *r, bool timed_out)
{
	if (w->kind == WAIT_JOIN)
		request_ok(r, join_result(w->procs[0], timed_out));
	else
		answer_records(r, w->procs, w->n);
	waiter_free(w);
}

static bool waiter_check(struct waiter *w)
{
	while (w->next < w->n && proc_done(w->procs[w->next], w->kind))
		w->next++;
	return w->next == w->n;
}

static void waiter_cancel(struct park *p)
{
	waiter_free(waiter_of(p));
}

static void waiter_timeout(struct park *p)
{
	waiter_answer(waiter_of(p), park_take(p), true);
}

/* Answer now when everything is done, else keep r until it is. */
static enum cmd_ret wait_or_answer(struct request *r, enum wait_kind kind, struct target *t,
				   double timeout)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w) {
		free(t->v);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	w->kind = kind;
	w->procs = t->v;
	w->n = t->n;
	t->v = NULL;
	if (waiter_check(w) || timeout == 0) {
		waiter_answer(w, r, !waiter_check(w));
		return CMD_DONE;
	}
	if (park_keep(&w->park, r, &waiters, timeout, waiter_timeout, waiter_cancel) < 0) {
		waiter_free(w);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	return CMD_WAIT;
}

static void proc_cmd_notify(struct proc *p)
{
	struct park *wp, *next;

	(void)p;
	for (wp = park_first(&waiters); wp; wp = next) {
		next = park_next(wp);
		if (waiter_check(waiter_of(wp)))
			waiter_answer(waiter_of(wp), park_take(wp), false);
	}
}

static void proc_cmd_forget(struct proc *p)
{
	for (struct park *wp = park_first(&waiters); wp; wp = park_next(wp)) {
		struct waiter *w = waiter_of(wp);
		for (size_t i = 0; i < w->n; i++)
			if (w->procs[i] == p)
				w->procs[i] = NULL;
	}
	proc_cmd_notify(NULL);
}

/*
 * Commands.
 */

/* Parse {target, wait?} and resolve the target. */
static int target_params(struct request *r, struct target *t, int *ret_wait)
{
	const char *name;
	int wait = 1;

	if (ret_wait) {
		if (request_unpack(r, "{s:s, s?b}", "target", &name, "wait", &wait) < 0)
			return -1;
		*ret_wait = wait;
	} else if (request_unpack(r, "{s:s}", "target", &name) < 0)
		return -1;
	return target_resolve(r, name, t);
}

static enum cmd_ret cmd_status(struct request *r)
{
	const char *name = NULL;
	struct target t;

	if (request_unpack(r, "{s?s}", "target", &name) < 0)
		return CMD_DONE;
	if (target_resolve(r, name ? name : "*", &t) < 0)
		return CMD_DONE;
	answer_records(r, t.v, t.n);
	free(t.v);
	return CMD_DONE;
}

/* One-shots are never started again: a single one is a conflict, in a
 * group they are skipped. */
static int skip_oneshots(struct request *r, struct target *t, const char *what)
{
	size_t k = 0;

	if (t->n == 1 && t->v[0]->os) {
		request_error(r, MPSUP_E_CONFLICT, "%s is a one-shot process: it cannot be %s",
			      t->v[0]->name, what);
		free(t->v);
		return -1;
	}
	for (size_t i = 0; i < t->n; i++)
		if (!t->v[i]->os)
			t->v[k++] = t->v[i];
	t->n = k;
	return 0;
}

static enum cmd_ret cmd_start(struct request *r)
{
	struct target t;
	int wait;

	if (target_params(r, &t, &wait) < 0 || skip_oneshots(r, &t, "started again") < 0)
		return CMD_DONE;
	for (size_t i = 0; i < t.n; i++)
		proc_start(t.v[i]);
	return wait_or_answer(r, WAIT_START, &t, wait ? -1 : 0);
}

static enum cmd_ret cmd_stop(struct request *r)
{
	struct target t;
	int wait;

	if (target_params(r, &t, &wait) < 0)
		return CMD_DONE;
	for (size_t i = 0; i < t.n; i++)
		proc_stop(t.v[i]);
	return wait_or_answer(r, WAIT_STOP, &t, wait ? -1 : 0);
}

/* rolling: the targets' pools restarted max_unavailable at a time. */
static int restart_rolling(struct request *r, struct target *t, json_int_t max_unavailable)
{
	struct pool *pl = t->n ? t->v[0]->pool : NULL;
	int e;

	for (size_t i = 0; i < t->n; i++)
		if (t->v[i]->pool != pl) {
			request_error(r, MPSUP_E_BAD_REQUEST,
				      "a rolling restart takes the members of one pool");
			return -1;
		}
	if (!pl)
		return 0;
	if ((e = pool_rolling_start(pl, t->v, t->n, (unsigned)max_unavailable, false)) < 0) {
		if (e == -EBUSY)
			request_error(r, MPSUP_E_CONFLICT,
				      "pool %s: a rolling restart is under way", pl->name);
		else
			request_error(r, MPSUP_E_INTERNAL, "rolling restart: %s", strerror(-e));
		return -1;
	}
	return 0;
}

static enum cmd_ret cmd_restart(struct request *r)
{
	struct target t;
	const char *name;
	int wait = 1, rolling = 0;
	json_int_t max_unavailable = 1;

	if (request_unpack(r, "{s:s, s?b, s?b, s?I}", "target", &name, "wait", &wait, "rolling",
			   &rolling, "max_unavailable", &max_unavailable) < 0)
		return CMD_DONE;
	if (max_unavailable < 1 || max_unavailable > 100000) {
		request_error(r, MPSUP_E_BAD_REQUEST, "max_unavailable: expected 1..100000");
		return CMD_DONE;
	}
	if (target_resolve(r, name, &t) < 0 || skip_oneshots(r, &t, "restarted") < 0)
		return CMD_DONE;
	if (rolling && restart_rolling(r, &t, max_unavailable) < 0) {
		free(t.v);
		return CMD_DONE;
	}
	for (size_t i = 0; i < t.n && !rolling; i++)
		proc_restart(t.v[i]);
	return wait_or_answer(r, WAIT_START, &t, wait ? -1 : 0);
}

/* Send sig to the main process of every running process of t. */
static enum cmd_ret signal_target(struct request *r, struct target *t, int sig)
{
	if (t->n == 1 && !t->v[0]->pid) {
		request_error(r, MPSUP_E_CONFLICT, "%s is not running", t->v[0]->name);
		free(t->v);
		return CMD_DONE;
	}
	for (size_t i = 0; i < t->n; i++) {
		int e = proc_signal(t->v[i], sig);
		if (e < 0 && e != -ESRCH)
			log_warn("proc", "%s: signal %d: %s", t->v[i]->name, sig, strerror(-e));
	}
	answer_records(r, t->v, t->n);
	free(t->v);
	return CMD_DONE;
}

static enum cmd_ret cmd_terminate(struct request *r)
{
	struct target t;

	if (target_params(r, &t, NULL) < 0)
		return CMD_DONE;
	return signal_target(r, &t, SIGTERM);
}

static enum cmd_ret cmd_kill(struct request *r)
{
	struct target t;

	if (target_params(r, &t, NULL) < 0)
		return CMD_DONE;
	return signal_target(r, &t, SIGKILL);
}

static enum cmd_ret cmd_signal(struct request *r)
{
	const char *name;
	json_t *sigv;
	struct target t;
	int sig = 0;

	if (request_unpack(r, "{s:s, s:o}", "target", &name, "signal", &sigv) < 0)
		return CMD_DONE;
	if (json_is_integer(sigv) && json_integer_value(sigv) >= 1 &&
	    json_integer_value(sigv) < NSIG)
		sig = (int)json_integer_value(sigv);
	else if (!json_is_string(sigv) || conf_parse_signal(json_string_value(sigv), &sig) < 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.signal: unknown signal");
		return CMD_DONE;
	}
	if (target_resolve(r, name, &t) < 0)
		return CMD_DONE;
	return signal_target(r, &t, sig);
}

static enum cmd_ret cmd_join(struct request *r)
{
	const char *name;
	json_t *tv = NULL;
	struct target t;
	double timeout;

	if (request_unpack(r, "{s:s, s?o}", "target", &name, "timeout", &tv) < 0 ||
	    request_timeout(r, tv, &timeout) < 0 || target_resolve(r, name, &t) < 0)
		return CMD_DONE;
	if (t.n != 1) {
		free(t.v);
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "proc.join: '%s' names %zu processes, not one", name, t.n);
		return CMD_DONE;
	}
	return wait_or_answer(r, WAIT_JOIN, &t, timeout);
}

static enum cmd_ret cmd_reopen_logs(struct request *r)
{
	if (request_unpack(r, "{}") < 0)
		return CMD_DONE;
	pools_reopen_logs();
	request_ok(r, NULL);
	return CMD_DONE;
}

/*
 * The module.
 */

static void proc_module_info(json_t *info)
{
	json_t *pi = json_object();
	unsigned alive = 0, np = 0;
	struct pool *pl;
	struct proc *p;

	TAILQ_FOREACH(pl, &pools, entry) {
		np++;
		for (unsigned i = 0; i < pl->n_slots; i++)
			alive += pl->members[i] && proc_is_alive(pl->members[i]);
	}
	TAILQ_FOREACH(p, &oneshots, os->entry)
		alive += proc_is_alive(p);
	json_object_set_new(pi, "pools", json_integer(np));
	json_object_set_new(pi, "processes", json_integer(proc_count()));
	json_object_set_new(pi, "alive", json_integer(alive));
	json_object_set_new(pi, "stray_groups", json_integer(proc_stray_groups()));
	json_object_set_new(info, "processes", pi);
	json_object_set_new(info, "cgroup", proc_cgroup_info());
}

static int proc_module_start(const struct conf *conf)
{
	proc_cgroup_init(conf->cgroup);
	return proc_start_config(conf);
}

static void proc_module_stop(void (*done)(void))
{
	proc_shutdown(done);
}

static int proc_module_reload(const struct conf *newconf, json_t *changes)
{
	proc_reload(newconf, changes);
	return 0;
}

/* clang-format off: it would put the braces of a macro on lines of their own */
#define ADMIN_MUT(name, fn, extra, params)                          \
	{                                                           \
		name, ROLE_ADMIN, CMD_MUTATES | (extra), fn, params \
	}
#define RUN_MUT(name, fn, extra, params)                                      \
	{                                                                     \
		name, ROLE_RUN, CMD_MUTATES | CMD_OWNED | (extra), fn, params \
	}
/* clang-format on */

static const struct cmd_entry proc_cmds[] = {
	{ "status", ROLE_READ, 0, cmd_status, "s:target?" },
	ADMIN_MUT("proc.start", cmd_start, CMD_MAY_BLOCK, "s:target b:wait?"),
	RUN_MUT("proc.stop", cmd_stop, CMD_MAY_BLOCK, "s:target b:wait?"),
	ADMIN_MUT("proc.restart", cmd_restart, CMD_MAY_BLOCK,
		  "s:target b:wait? b:rolling? i:max_unavailable?"),
	RUN_MUT("proc.terminate", cmd_terminate, 0, "s:target"),
	RUN_MUT("proc.kill", cmd_kill, 0, "s:target"),
	RUN_MUT("proc.signal", cmd_signal, 0, "s:target o:signal"),
	RUN_MUT("proc.run", cmd_proc_run, CMD_TAKES_FDS,
		"a:argv s:name? O:env? s:cwd? b:daemon? s:stdin? o:user? o:group? s:scope? "
		"s:stdio?"),
	{ "proc.join", ROLE_READ, CMD_MAY_BLOCK, cmd_join, "s:target t:timeout?" },
	RUN_MUT("proc.forget", cmd_proc_forget, 0, "s:name"),
	{ "proc.logs", ROLE_READ, CMD_STREAMS, cmd_proc_logs, "s:target i:lines? b:follow?" },
	{ "pool.list", ROLE_READ, 0, cmd_pool_list, "" },
	{ "pool.add", ROLE_RUN, CMD_MUTATES | CMD_TAKES_FDS, cmd_pool_add,
	  "s:pool s:command s:scope? s:access? s:stdio? *:keys?" },
	RUN_MUT("pool.remove", cmd_pool_remove, CMD_MAY_BLOCK, "s:pool"),
	ADMIN_MUT("pool.scale", cmd_pool_scale, 0, "s:pool i:processes"),
	{ "daemon.reopen_logs", ROLE_ADMIN, 0, cmd_reopen_logs, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct cmd_module proc_module = {
	.capability = "processes",
	.cmds = proc_cmds,
	.info = proc_module_info,
	.metrics = proc_metrics,
	.start = proc_module_start,
	.stop = proc_module_stop,
	.reload = proc_module_reload,
};

/* What the process commands hear from supervision (registered by the
 * daemon's assembly): join waiters and log followers. */
const struct proc_observer proc_cmd_observer = {
	.settled = proc_cmd_notify,
	.gone = proc_cmd_forget,
	.pool_gone = pool_cmd_pool_gone,
	.output_line = proc_logs_notify,
};
