/*
 * One-shot processes on request: proc.run (argv, env, cwd, stdin, who it
 * runs as) and proc.forget.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "container.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "proc_cmd.h"

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

/* Who a one-shot runs as (docs/processes.md): the user (and group) an admin named,
 * else the requesting peer with all its groups when the daemon is root. */
static int run_as(struct request *r, struct oneshot *os, const char *user, const char *group)
{
	char *why = NULL;

	if (user) {
		if (run_ids_resolve(user, group, &os->ids, &why) < 0) {
			request_error(r, MPSUP_E_SPAWN_FAILED, "proc.run: %s",
				      why ? why : "cannot resolve the user");
			free(why);
			return -1;
		}
		/* an unprivileged daemon running it as itself changes nothing */
		os->set_ids =
			!(geteuid() != 0 && os->ids.uid == geteuid() && os->ids.gid == getegid());
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
		/* the connection lists the primary gid after the supplementary
		 * ones, which may hold it too: each group once */
		for (int i = 0; i < r->conn->n_gids; i++) {
			int j = 0;
			while (j < os->ids.n_groups && os->ids.groups[j] != r->conn->gids[i])
				j++;
			if (j == os->ids.n_groups)
				os->ids.groups[os->ids.n_groups++] = r->conn->gids[i];
		}
	} else {
		if (!(os->ids.groups = calloc(1, sizeof(gid_t))))
			return -ENOMEM;
		os->ids.groups[0] = r->conn->gid;
		os->ids.n_groups = 1;
	}
	return 0;
}

/* Check proc.run's argv, env, cwd and name, and that one more process
 * fits; answers and returns -EINVAL when something does not. */
static int run_check(struct request *r, json_t *argv, json_t *env, const char *cwd,
		     const char *name)
{
	json_t *a;
	size_t i;

	if (!json_is_array(argv) || json_array_size(argv) == 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: argv must be a non-empty list");
		return -EINVAL;
	}
	json_array_foreach(argv, i, a)
		if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a)) {
			request_error(r, MPSUP_E_BAD_REQUEST,
				      "proc.run: argv items must be strings without NUL");
			return -EINVAL;
		}
	if (env && !json_is_object(env)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: env must be an object");
		return -EINVAL;
	}
	if (cwd && cwd[0] != '/') {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: cwd must be an absolute path");
		return -EINVAL;
	}
	if (name && !name_valid(name, false)) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "proc.run: invalid name (expected [A-Za-z0-9_.-]{1,64})");
		return -EINVAL;
	}
	if (name && (proc_find(name) || pool_find(name))) {
		request_error(r, MPSUP_E_EXISTS, "a process or pool named '%s' exists", name);
		return -EINVAL;
	}
	if (proc_count() >= daemon_g.conf->max_processes) {
		request_error(r, MPSUP_E_LIMIT, "too many processes (max_processes = %u)",
			      daemon_g.conf->max_processes);
		return -EINVAL;
	}
	if (r->conn && r->conn->role < ROLE_ADMIN &&
	    proc_count_of_uid(r->conn->uid) >= daemon_g.conf->max_processes_per_uid) {
		request_error(r, MPSUP_E_LIMIT,
			      "uid %d runs too many processes (max_processes_per_uid = %u)",
			      (int)r->conn->uid, daemon_g.conf->max_processes_per_uid);
		return -EINVAL;
	}
	if (proc_fds_check(PROC_FDS_ONESHOT, "a one-shot") < 0) {
		request_error(r, MPSUP_E_LIMIT, "%s", proc_fds_refusal());
		return -EINVAL;
	}
	return 0;
}

/* The process that ran a daemon one-shot with scope "process" exited:
 * terminate it (stop signal, SIGKILL after stop_timeout), like Python's
 * daemon children at exit. */
static void oneshot_scope_gone(struct scope_link *l)
{
	struct oneshot *os = CONTAINER_OF(l, struct oneshot, scope);

	if (!os->proc || !proc_is_alive(os->proc))
		return;
	log_info("proc", "%s: the process that ran it (scope) exited: stopping it",
		 os->proc->name);
	proc_stop(os->proc);
}

enum cmd_ret cmd_proc_run(struct request *r)
{
	json_t *argv, *env = NULL, *a, *juser = NULL, *jgroup = NULL;
	const char *name = NULL, *cwd = NULL, *in = NULL, *bad = NULL, *user, *group;
	size_t in_len = 0, i;
	int daemon = 0, e, scoped;
	bool short_of;
	char gen[32], err[512], ubuf[24], gbuf[24];
	struct oneshot *os;
	struct proc *p;

	if (!request_params(r) || (scoped = scope_param(r)) < 0) {
		if (!r->replied)
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (request_unpack(r, "{s:o, s?s, s?o, s?s, s?b, s?s%, s?o, s?o}", "argv", &argv, "name",
			   &name, "env", &env, "cwd", &cwd, "daemon", &daemon, "stdin", &in,
			   &in_len, "user", &juser, "group", &jgroup) < 0)
		return CMD_DONE;
	if (id_param(r, "user", juser, ubuf, sizeof(ubuf), &user) < 0 ||
	    id_param(r, "group", jgroup, gbuf, sizeof(gbuf), &group) < 0)
		return CMD_DONE;
	/* role run: always as the peer itself */
	if ((user || group) && r->conn && r->conn->role < ROLE_ADMIN) {
		request_error(r, MPSUP_E_PERMISSION_DENIED,
			      "proc.run: only an admin may name a user or group");
		return CMD_DONE;
	}
	if (group && !user) {
		request_error(r, MPSUP_E_BAD_REQUEST, "proc.run: group needs user");
		return CMD_DONE;
	}
	if (run_check(r, argv, env, cwd, name) < 0)
		return CMD_DONE;
	if (!name) {
		oneshot_gen_name(gen, sizeof(gen));
		name = gen;
	}
	if (!(os = calloc(1, sizeof(*os))) ||
	    !(os->argv = calloc(json_array_size(argv) + 1, sizeof(char *))))
		goto nomem;
	json_array_foreach(argv, i, a)
		if (!(os->argv[i] = strdup(json_string_value(a))))
			goto nomem;
	if (!(os->env = env_from_json(env, &bad))) {
		oneshot_free(os);
		if (bad) {
			request_error(r, MPSUP_E_BAD_REQUEST,
				      "proc.run: env '%.100s': keys are names, values strings",
				      bad);
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
	if (r->conn) {
		os->owner.set = true;
		os->owner.uid = r->conn->uid;
	}
	/* a non-daemon child runs on after its runner: nothing to watch */
	if (scoped && daemon && (e = scope_bind(r->conn, &os->scope, oneshot_scope_gone)) < 0) {
		oneshot_free(os);
		scope_bind_error(r, e);
		return CMD_DONE;
	}
	if ((e = run_as(r, os, user, group)) < 0) {
		oneshot_free(os);
		if (e == -ENOMEM)
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (!(p = oneshot_run(name, os, &short_of, err, sizeof(err)))) {
		/* out of descriptors or processes: a limit, not the program's fault */
		request_error(r, short_of ? MPSUP_E_LIMIT : MPSUP_E_SPAWN_FAILED, "%s", err);
		return CMD_DONE;
	}
	request_ok(r, json_pack("{s:s, s:i}", "name", p->name, "pid", (int)p->pid));
	return CMD_DONE;
nomem:
	oneshot_free(os);
	request_error(r, MPSUP_E_INTERNAL, "out of memory");
	return CMD_DONE;
}

enum cmd_ret cmd_proc_forget(struct request *r)
{
	enum access_verdict v;
	const char *name;
	struct proc *p;

	if (request_unpack(r, "{s:s}", "name", &name) < 0)
		return CMD_DONE;
	if (!(p = proc_find(name)) || p->freed) {
		request_error(r, MPSUP_E_NOT_FOUND, "no process named '%.100s'", name);
		return CMD_DONE;
	}
	if ((v = request_access(r, proc_owner(p))) != ACCESS_OK) {
		request_access_error(r, v, "process", name);
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
