/*
 * The process protocol commands (DESIGN.md §3 Processes and Pools) and the
 * proc module's lifecycle hooks. Requests that wait (proc.start/stop/
 * restart with wait, proc.join, pool.remove) are kept as waiters checked on
 * every state change; proc.logs follow:true keeps a follower that gets each
 * new line of the processes its target names.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "jsonw.h"
#include "log.h"
#include "park.h"
#include "stream.h"
#include "proc.h"
#include "task.h"

#define LOGS_LINES_MAX 100000

/*
 * Targets.
 */

struct target {
	struct proc **v;
	size_t n, cap;
};

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

/* Resolve name ("*", pool, pool:index, one-shot) into t; answers not_found. */
static int target_resolve(struct request *r, const char *name, struct target *t)
{
	struct pool *pl;
	struct proc *p;

	memset(t, 0, sizeof(*t));
	if (strcmp(name, "*") == 0) {
		TAILQ_FOREACH(pl, &pools, entry)
			pool_members(t, pl);
		TAILQ_FOREACH(p, &oneshots, os->entry)
			if (!p->freed)
				target_add(t, p);
		return 0;
	}
	if ((pl = pool_find(name))) {
		pool_members(t, pl);
		return 0;
	}
	if ((p = proc_find(name)) && !p->freed) {
		target_add(t, p);
		return 0;
	}
	request_error(r, MPSUP_E_NOT_FOUND, "no process or pool named '%.100s'", name);
	return -1;
}

static bool target_matches(const char *target, const struct proc *p)
{
	return strcmp(target, "*") == 0 || strcmp(target, p->name) == 0 ||
	       (p->pool && strcmp(target, p->pool->name) == 0);
}

/* Answer r with the records of v[0..n) (NULL entries: gone) as a list. */
static void answer_records(struct request *r, struct proc **v, size_t n)
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
	struct proc **procs;   /* NULL entries: gone */
	size_t n, next;        /* procs[0..next) were seen done */
};

/* A pool.remove waiting for its pool to be gone. */
struct pool_waiter {
	struct park park;
	struct pool *pl;
};

static struct park_queue waiters = {TAILQ_HEAD_INITIALIZER(waiters.head), 0};
static struct park_queue pool_waiters = {TAILQ_HEAD_INITIALIZER(pool_waiters.head), 0};

static struct waiter *waiter_of(struct park *p)
{
	return PARK_OWNER(p, struct waiter, park);
}

static bool proc_done(const struct proc *p, enum wait_kind kind)
{
	if (!p)
		return true;
	if (kind == WAIT_START)
		return !p->restart_pending && p->state != PS_STARTING && p->state != PS_STOPPING;
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
			 proc_exitcode_known(p) ? json_integer(p->exitcode) : json_null(), "is_alive",
			 timed_out || proc_is_alive(p));
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

static void proc_cmd_pool_gone(struct pool *pl)
{
	struct park *wp, *next;

	for (wp = park_first(&pool_waiters); wp; wp = next) {
		struct pool_waiter *w = PARK_OWNER(wp, struct pool_waiter, park);
		next = park_next(wp);
		if (w->pl != pl)
			continue;
		request_ok(park_take(wp), json_pack("{s:s}", "removed", pl->name));
		free(w);
	}
}

static void pool_waiter_cancel(struct park *p)
{
	free(PARK_OWNER(p, struct pool_waiter, park));
}

/*
 * Log followers.
 */

struct follower {
	struct stream stream;
	char *target;
};

static struct stream_set followers = STREAM_SET_INITIALIZER(followers);

static json_t *line_record(const struct proc *p, const struct logline *l)
{
	return json_pack("{s:s, s:s, s:s%, s:f}", "name", p->name, "stream",
			 l->stream == STREAM_STDERR ? "stderr" : "stdout", "line", l->text,
			 (size_t)l->len, "ts", l->ts);
}

static void proc_logs_notify(struct proc *p, const struct logline *l)
{
	struct stream *st, *next;
	json_t *rec = NULL;

	for (st = stream_first(&followers); st; st = next) {
		struct follower *f = STREAM_OWNER(st, struct follower, stream);
		next = stream_next(st);
		if (!target_matches(f->target, p))
			continue;
		if (!rec && !(rec = line_record(p, l)))
			return;
		stream_send(st, rec); /* a slow reader is dropped (and its stream ends) */
	}
	json_decref(rec);
}

static void follower_closed(struct stream *st)
{
	struct follower *f = STREAM_OWNER(st, struct follower, stream);

	free(f->target);
	free(f);
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

static enum cmd_ret cmd_restart(struct request *r)
{
	struct target t;
	int wait;

	if (target_params(r, &t, &wait) < 0 || skip_oneshots(r, &t, "restarted") < 0)
		return CMD_DONE;
	for (size_t i = 0; i < t.n; i++)
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

/* env {"K": "V"} -> ["K=V", ...]; NULL on a bad entry. */
static char **env_from_json(json_t *env, const char **ret_bad)
{
	size_t n = env ? json_object_size(env) : 0, i = 0;
	char **v = calloc(n + 1, sizeof(*v));
	const char *k;
	json_t *val;

	if (!v)
		return NULL;
	json_object_foreach(env, k, val) {
		if (!k[0] || strchr(k, '=') || !json_is_string(val) ||
		    asprintf(&v[i], "%s=%s", k, json_string_value(val)) < 0) {
			v[i] = NULL;
			*ret_bad = k;
			conf_strv_free(v);
			return NULL;
		}
		i++;
	}
	return v;
}

/* proc.run's user or group: a name or a number (a string or an integer). */
static int id_param(struct request *r, const char *key, json_t *v, char *buf, size_t len,
		    const char **ret)
{
	*ret = NULL;
	if (!v)
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) < (json_int_t)UINT32_MAX) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		*ret = buf;
		return 0;
	}
	if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 256 &&
	    strlen(json_string_value(v)) == json_string_length(v)) {
		*ret = json_string_value(v);
		return 0;
	}
	request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: %s must be a name or a number", key);
	return -1;
}

/* Who a one-shot runs as (DESIGN §8): the user (and group) an admin named,
 * else the requesting peer with all its groups when the daemon is root. */
static int run_as(struct request *r, struct oneshot *os, const char *user, const char *group)
{
	char *why = NULL;

	if (user) {
		if (r->conn->role != ROLE_ADMIN) {
			request_error(r, MPSUP_E_PERMISSION_DENIED,
				      "proc.run: only an admin may name a user");
			return -1;
		}
		if (run_ids_resolve(user, group, &os->ids, &why) < 0) {
			request_error(r, MPSUP_E_SPAWN_FAILED, "proc.run: %s",
				      why ? why : "cannot resolve the user");
			free(why);
			return -1;
		}
		/* an unprivileged daemon running it as itself changes nothing */
		os->set_ids = !(geteuid() != 0 && os->ids.uid == geteuid() &&
				os->ids.gid == getegid());
		return 0;
	}
	if (geteuid() != 0 || r->conn->uid == 0)
		return 0;
	os->set_ids = true;
	os->ids.uid = r->conn->uid;
	os->ids.gid = r->conn->gid;
	if (r->conn->n_gids > 0 && r->conn->gids) {
		if (!(os->ids.groups = calloc((size_t)r->conn->n_gids, sizeof(gid_t))))
			return -ENOMEM;
		memcpy(os->ids.groups, r->conn->gids, (size_t)r->conn->n_gids * sizeof(gid_t));
		os->ids.n_groups = r->conn->n_gids;
	} else {
		if (!(os->ids.groups = calloc(1, sizeof(gid_t))))
			return -ENOMEM;
		os->ids.groups[0] = r->conn->gid;
		os->ids.n_groups = 1;
	}
	return 0;
}

static enum cmd_ret cmd_run(struct request *r)
{
	json_t *argv, *env = NULL, *a, *juser = NULL, *jgroup = NULL;
	const char *name = NULL, *cwd = NULL, *in = NULL, *bad = NULL, *user, *group;
	size_t in_len = 0, i;
	int daemon = 0, e;
	char gen[32], err[512], ubuf[24], gbuf[24];
	struct oneshot *os;
	struct proc *p;

	if (request_unpack(r, "{s:o, s?s, s?o, s?s, s?b, s?s%, s?o, s?o}", "argv", &argv, "name",
			   &name, "env", &env, "cwd", &cwd, "daemon", &daemon, "stdin", &in,
			   &in_len, "user", &juser, "group", &jgroup) < 0)
		return CMD_DONE;
	if (id_param(r, "user", juser, ubuf, sizeof(ubuf), &user) < 0 ||
	    id_param(r, "group", jgroup, gbuf, sizeof(gbuf), &group) < 0)
		return CMD_DONE;
	if (group && !user) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: group needs user");
		return CMD_DONE;
	}
	if (!json_is_array(argv) || json_array_size(argv) == 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: argv must be a non-empty list");
		return CMD_DONE;
	}
	json_array_foreach(argv, i, a)
		if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a)) {
			request_error(r, MPSUP_E_BAD_REQUEST,
				      "proc.run: argv items must be strings without NUL");
			return CMD_DONE;
		}
	if (env && !json_is_object(env)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: env must be an object");
		return CMD_DONE;
	}
	if (cwd && cwd[0] != '/') {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: cwd must be an absolute path");
		return CMD_DONE;
	}
	if (name && !name_valid(name, false)) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "proc.run: invalid name (expected [A-Za-z0-9_.-]{1,64})");
		return CMD_DONE;
	}
	if (name && (proc_find(name) || pool_find(name))) {
		request_error(r, MPSUP_E_EXISTS, "a process or pool named '%s' exists", name);
		return CMD_DONE;
	}
	if (proc_count() >= daemon_g.conf->max_processes) {
		request_error(r, MPSUP_E_LIMIT, "too many processes (max_processes = %u)",
			      daemon_g.conf->max_processes);
		return CMD_DONE;
	}
	if (!name) {
		oneshot_gen_name(gen, sizeof(gen));
		name = gen;
	}
	if (!(os = calloc(1, sizeof(*os))) || !(os->argv = calloc(json_array_size(argv) + 1,
								  sizeof(char *))))
		goto nomem;
	json_array_foreach(argv, i, a)
		if (!(os->argv[i] = strdup(json_string_value(a))))
			goto nomem;
	if (!(os->env = env_from_json(env, &bad))) {
		oneshot_free(os);
		if (bad) {
			request_error(r, MPSUP_E_BAD_REQUEST,
				      "proc.run: env '%.100s': keys are names, values strings", bad);
			return CMD_DONE;
		}
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (cwd && !(os->cwd = strdup(cwd)))
		goto nomem;
	if (in) {
		if (!(os->stdin_data = malloc(in_len ? in_len : 1)))
			goto nomem;
		memcpy(os->stdin_data, in, in_len);
		os->stdin_len = in_len;
	}
	os->daemon = daemon;
	if ((e = run_as(r, os, user, group)) < 0) {
		oneshot_free(os);
		if (e == -ENOMEM)
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (!(p = oneshot_run(name, os, err, sizeof(err)))) {
		request_error(r, MPSUP_E_SPAWN_FAILED, "%s", err);
		return CMD_DONE;
	}
	request_ok(r, json_pack("{s:s, s:i}", "name", p->name, "pid", (int)p->pid));
	return CMD_DONE;
nomem:
	oneshot_free(os);
	request_error(r, MPSUP_E_INTERNAL, "out of memory");
	return CMD_DONE;
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
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.join: '%s' names %zu processes, not one",
			      name, t.n);
		return CMD_DONE;
	}
	return wait_or_answer(r, WAIT_JOIN, &t, timeout);
}

static enum cmd_ret cmd_forget(struct request *r)
{
	const char *name;
	struct proc *p;

	if (request_unpack(r, "{s:s}", "name", &name) < 0)
		return CMD_DONE;
	if (!(p = proc_find(name)) || p->freed) {
		request_error(r, MPSUP_E_NOT_FOUND, "no process named '%.100s'", name);
		return CMD_DONE;
	}
	if (!p->os) {
		request_error(r, MPSUP_E_CONFLICT,
			      "%s is a pool member (use pool.scale or pool.remove)", name);
		return CMD_DONE;
	}
	if (proc_is_alive(p)) {
		request_error(r, MPSUP_E_CONFLICT, "%s is still alive", name);
		return CMD_DONE;
	}
	oneshot_forget(p);
	request_ok(r, NULL);
	return CMD_DONE;
}

struct linesel {
	const struct proc *p;
	const struct logline *l;
	size_t seq;
};

static int linesel_cmp(const void *a, const void *b)
{
	const struct linesel *x = a, *y = b;

	if (x->l->ts != y->l->ts)
		return x->l->ts < y->l->ts ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The last n lines of t's processes, oldest first. */
static json_t *recent_lines(struct target *t, size_t n)
{
	struct linesel *sel;
	size_t total = 0, k = 0;
	json_t *a = json_array();

	for (size_t i = 0; i < t->n; i++)
		total += t->v[i]->ring.n < n ? t->v[i]->ring.n : n;
	if (total == 0 || !(sel = calloc(total, sizeof(*sel))))
		return a;
	for (size_t i = 0; i < t->n; i++) {
		const struct logring *ring = &t->v[i]->ring;
		unsigned from = ring->n > n ? ring->n - (unsigned)n : 0;
		for (unsigned j = from; j < ring->n; j++, k++) {
			sel[k].p = t->v[i];
			sel[k].l = logring_at(ring, j);
			sel[k].seq = k;
		}
	}
	if (t->n > 1)
		qsort(sel, k, sizeof(*sel), linesel_cmp);
	for (size_t i = k > n ? k - n : 0; i < k; i++)
		json_array_append_new(a, line_record(sel[i].p, sel[i].l));
	free(sel);
	return a;
}

static enum cmd_ret cmd_logs(struct request *r)
{
	const char *name;
	json_int_t lines = 100;
	int follow = 0;
	struct target t;
	struct follower *f;
	char why[200];
	json_t *resp;

	if (request_unpack(r, "{s:s, s?I, s?b}", "target", &name, "lines", &lines, "follow",
			   &follow) < 0)
		return CMD_DONE;
	if (lines < 0 || lines > LOGS_LINES_MAX) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.logs: lines must be 0..%d",
			      LOGS_LINES_MAX);
		return CMD_DONE;
	}
	if (target_resolve(r, name, &t) < 0)
		return CMD_DONE;
	if (!follow) {
		request_ok(r, recent_lines(&t, (size_t)lines));
		free(t.v);
		return CMD_DONE;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->target = strdup(name))) {
		free(f);
		free(t.v);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	/* One count of streams with events.subscribe (max_subscribers). */
	if (stream_open(&f->stream, r, &followers, follower_closed, why, sizeof(why)) < 0) {
		free(f->target);
		free(f);
		free(t.v);
		request_error(r, MPSUP_E_LIMIT, "too many streams: %s", why);
		return CMD_DONE;
	}
	resp = mpsup_response_ok(r->id, recent_lines(&t, (size_t)lines));
	free(t.v);
	stream_send(&f->stream, resp);
	json_decref(resp);
	return CMD_STREAM;
}

static json_t *pool_json(const struct pool *pl)
{
	json_t *j = pool_conf_to_json(pl->conf);
	unsigned running = 0;

	for (unsigned i = 0; i < pl->n_slots; i++)
		running += pl->members[i] && proc_is_alive(pl->members[i]);
	json_object_set_new(j, "running", json_integer(running));
	/* lines the pool's output files could not take (disk full, ...) */
	json_object_set_new(j, "output_errors",
			    json_integer((json_int_t)((pl->out ? pl->out->errors : 0) +
						      (pl->err ? pl->err->errors : 0))));
	task_pool_record(pl, j);
	return j;
}

static enum cmd_ret cmd_pool_list(struct request *r)
{
	json_t *a = json_array();
	struct pool *pl;

	if (request_unpack(r, "{}") < 0) {
		json_decref(a);
		return CMD_DONE;
	}
	TAILQ_FOREACH(pl, &pools, entry)
		if (!pl->removing)
			json_array_append_new(a, pool_json(pl));
	request_ok(r, a);
	return CMD_DONE;
}

static enum cmd_ret cmd_pool_add(struct request *r)
{
	char err[CONF_ERR_MAX];
	struct pool_conf *pc;
	struct pool *pl;
	int e;

	if (pool_conf_from_json(r->params, &pc, err, sizeof(err)) < 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.add: %s", err);
		return CMD_DONE;
	}
	e = pool_create(pc, pc->autostart, false, &pl);
	if (e == -EEXIST)
		request_error(r, MPSUP_E_EXISTS, "a pool or process named '%s' exists", pc->name);
	else if (e == -ENOSPC)
		request_error(r, MPSUP_E_LIMIT, "too many processes (max_processes = %u)",
			      daemon_g.conf->max_processes);
	else if (e < 0)
		request_error(r, MPSUP_E_INTERNAL, "pool.add: %s", strerror(-e));
	else
		request_ok(r, pool_json(pl));
	pool_conf_free(pc);
	return CMD_DONE;
}

static enum cmd_ret cmd_pool_remove(struct request *r)
{
	struct pool_waiter *w;
	const char *name;
	struct pool *pl;

	if (request_unpack(r, "{s:s}", "pool", &name) < 0)
		return CMD_DONE;
	if (!(pl = pool_find(name))) {
		request_error(r, MPSUP_E_NOT_FOUND, "no pool named '%.100s'", name);
		return CMD_DONE;
	}
	if (!(w = calloc(1, sizeof(*w))) ||
	    park_keep(&w->park, r, &pool_waiters, -1, NULL, pool_waiter_cancel) < 0) {
		free(w);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	w->pl = pl;
	pool_remove(pl); /* answers w when the pool is gone (maybe now) */
	return r->replied ? CMD_DONE : CMD_WAIT;
}

static enum cmd_ret cmd_pool_scale(struct request *r)
{
	const char *name;
	json_int_t n;
	struct pool *pl;
	int e;

	if (request_unpack(r, "{s:s, s:I}", "pool", &name, "processes", &n) < 0)
		return CMD_DONE;
	if (!(pl = pool_find(name))) {
		request_error(r, MPSUP_E_NOT_FOUND, "no pool named '%.100s'", name);
		return CMD_DONE;
	}
	if (n < 0 || n > 100000) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.scale: processes must be 0..100000");
		return CMD_DONE;
	}
	e = pool_scale(pl, (unsigned)n);
	if (e == -ENOSPC)
		request_error(r, MPSUP_E_LIMIT, "too many processes (max_processes = %u)",
			      daemon_g.conf->max_processes);
	else if (e < 0)
		request_error(r, MPSUP_E_INTERNAL, "pool.scale: %s", strerror(-e));
	else
		request_ok(r, pool_json(pl));
	return CMD_DONE;
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
}

static int proc_module_start(const struct conf *conf)
{
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

#define ADMIN_MUT(name, fn, extra, params) { name, ROLE_ADMIN, CMD_MUTATES | (extra), fn, params }

static const struct cmd_entry proc_cmds[] = {
	{ "status", ROLE_READ, 0, cmd_status, "s:target?" },
	ADMIN_MUT("proc.start", cmd_start, CMD_MAY_BLOCK, "s:target b:wait?"),
	ADMIN_MUT("proc.stop", cmd_stop, CMD_MAY_BLOCK, "s:target b:wait?"),
	ADMIN_MUT("proc.restart", cmd_restart, CMD_MAY_BLOCK, "s:target b:wait?"),
	ADMIN_MUT("proc.terminate", cmd_terminate, 0, "s:target"),
	ADMIN_MUT("proc.kill", cmd_kill, 0, "s:target"),
	ADMIN_MUT("proc.signal", cmd_signal, 0, "s:target o:signal"),
	ADMIN_MUT("proc.run", cmd_run, 0,
		  "a:argv s:name? O:env? s:cwd? b:daemon? s:stdin? o:user? o:group?"),
	{ "proc.join", ROLE_READ, CMD_MAY_BLOCK, cmd_join, "s:target t:timeout?" },
	ADMIN_MUT("proc.forget", cmd_forget, 0, "s:name"),
	{ "proc.logs", ROLE_READ, CMD_STREAMS, cmd_logs, "s:target i:lines? b:follow?" },
	{ "pool.list", ROLE_READ, 0, cmd_pool_list, "" },
	ADMIN_MUT("pool.add", cmd_pool_add, 0, "s:pool s:command *:keys?"),
	ADMIN_MUT("pool.remove", cmd_pool_remove, CMD_MAY_BLOCK, "s:pool"),
	ADMIN_MUT("pool.scale", cmd_pool_scale, 0, "s:pool i:processes"),
	{ "daemon.reopen_logs", ROLE_ADMIN, 0, cmd_reopen_logs, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct cmd_module proc_module = {
	.capability = "processes",
	.cmds = proc_cmds,
	.info = proc_module_info,
	.start = proc_module_start,
	.stop = proc_module_stop,
	.reload = proc_module_reload,
};

/* What the process commands hear from supervision (registered by the
 * daemon's assembly): join waiters and log followers. */
const struct proc_observer proc_cmd_observer = {
	.settled = proc_cmd_notify,
	.gone = proc_cmd_forget,
	.pool_gone = proc_cmd_pool_gone,
	.output_line = proc_logs_notify,
};
