/* Meta and daemon commands: hello, ping, help, daemon.info/reload/shutdown. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "events.h"
#include "lifecycle.h"
#include "obj.h"
#include "proc.h"
#include "stream.h"

/* hello -> who we are and what we can do. */
static enum cmd_ret cmd_hello(struct request *r)
{
	json_t *client = NULL;

	if (request_unpack(r, "{s?o}", "client", &client) < 0)
		return CMD_DONE;
	request_ok(r, json_pack("{s:s, s:s, s:i, s:i, s:f, s:o}", "server", "mpsupd", "version",
				PACKAGE_VERSION, "protocol", MPSUP_PROTOCOL_VERSION, "pid",
				(int)getpid(), "uptime", daemon_uptime(), "capabilities",
				modules_capabilities()));
	return CMD_DONE;
}

static enum cmd_ret cmd_ping(struct request *r)
{
	if (request_unpack(r, "{}") < 0)
		return CMD_DONE;
	request_ok(r, json_string("pong"));
	return CMD_DONE;
}

/* The JSON type name of a parameter spec letter (command.h). */
static const char *help_type(char t)
{
	switch (t) {
	case 's': return "string";
	case 'i': return "integer";
	case 'n': return "number";
	case 'b': return "boolean";
	case 'a': return "array";
	case 'O': return "object";
	case 't': return "timeout";
	case '*': return "members";
	default: return "any";
	}
}

/* A spec ("s:key o:default?") as [{name, type, optional}]. */
static json_t *help_params(const char *spec)
{
	json_t *list = json_array();

	for (const char *p = spec ? spec : ""; list && *p;) {
		const char *key, *end;

		if (*p == ' ') {
			p++;
			continue;
		}
		key = p[1] == ':' ? p + 2 : p;
		for (end = key; *end && *end != ' ' && *end != '?'; end++)
			;
		json_array_append_new(list, json_pack("{s:s%, s:s, s:b}", "name", key,
						      (size_t)(end - key), "type", help_type(p[0]),
						      "optional", *end == '?'));
		p = *end == '?' ? end + 1 : end;
	}
	return list;
}

/* One command as help shows it: {name, role, params, flags}. */
static json_t *help_entry(const struct cmd_entry *e)
{
	json_t *flags = json_array();

	if (e->flags & CMD_MUTATES)
		json_array_append_new(flags, json_string("mutates"));
	if (e->flags & CMD_MAY_BLOCK)
		json_array_append_new(flags, json_string("blocks"));
	if (e->flags & CMD_STREAMS)
		json_array_append_new(flags, json_string("streams"));
	if (e->flags & OBJ_OP_EXISTING)
		json_array_append_new(flags, json_string("needs_object"));
	if (e->flags & CMD_OWNED)
		json_array_append_new(flags, json_string("own"));
	return json_pack("{s:s, s:s, s:o, s:o}", "name", e->name, "role", role_names[e->role],
			 "params", help_params(e->params), "flags", flags);
}

struct help_walk {
	json_t *list;
	enum role role;
};

static void help_add(const struct cmd_entry *e, void *arg)
{
	struct help_walk *w = arg;

	if (e->role <= w->role)
		json_array_append_new(w->list, help_entry(e));
}

/* help {command?} -> the commands this peer may use, or one (with
 * `allowed`), from the command tables themselves. */
static enum cmd_ret cmd_help(struct request *r)
{
	struct help_walk w = { .role = r->conn ? r->conn->role : ROLE_ADMIN };
	const char *name = NULL;
	const struct cmd_entry *e;
	json_t *one;

	if (request_unpack(r, "{s?s}", "command", &name) < 0)
		return CMD_DONE;
	if (!name) {
		w.list = json_array();
		command_foreach(help_add, &w);
		request_ok(r, w.list);
		return CMD_DONE;
	}
	if (!(e = command_find(name))) {
		request_error(r, MPSUP_E_UNKNOWN_COMMAND, "unknown command '%.100s'", name);
		return CMD_DONE;
	}
	if (!(one = help_entry(e))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	json_object_set_new(one, "allowed", json_boolean(e->role <= w.role));
	request_ok(r, one);
	return CMD_DONE;
}

/* daemon.info -> figures of the daemon and of every module. */
static enum cmd_ret cmd_info(struct request *r)
{
	const struct conf *cf = daemon_g.conf;
	json_t *info;

	if (request_unpack(r, "{}") < 0)
		return CMD_DONE;
	info = json_pack("{s:s, s:i, s:f, s:f, s:s, s:s?, s:i, s:b, s:{s:I, s:i, s:i, s:i, s:I,"
			 " s:i, s:I, s:i, s:i, s:i, s:i, s:i, s:i}}",
			 "version", PACKAGE_VERSION, "pid", (int)getpid(), "uptime",
			 daemon_uptime(), "started_at", (double)daemon_g.started_wall, "socket",
			 server_socket_path(), "config", cf->file, "clients", (int)server_clients(),
			 "shutting_down", daemon_g.shutting_down, "limits", "max_request_bytes",
			 (json_int_t)cf->max_request_bytes, "max_clients", (int)cf->max_clients,
			 "max_clients_per_uid", (int)cf->max_clients_per_uid, "max_json_depth",
			 (int)cf->max_json_depth, "max_output_bytes",
			 (json_int_t)cf->max_output_bytes, "max_objects", (int)cf->max_objects,
			 "max_object_items", (json_int_t)cf->max_object_items, "max_queue_items",
			 (int)cf->max_queue_items, "max_waiters", (int)cf->max_waiters,
			 "max_processes", (int)cf->max_processes, "max_processes_per_uid",
			 (int)cf->max_processes_per_uid, "max_oneshots", (int)cf->max_oneshots,
			 "max_subscribers", (int)cf->max_subscribers);
	/* Memory bounds: shared-state data (max_memory) and unsent output
	 * (max_output_total); clients paused until their output drains;
	 * streams (max_subscribers). */
	if (info)
		json_object_set_new(info, "memory",
				    json_pack("{s:I, s:I, s:I, s:I, s:i, s:i}", "state_bytes",
					      (json_int_t)obj_mem_used(), "max_memory",
					      (json_int_t)cf->max_memory, "output_bytes",
					      (json_int_t)server_output_bytes(), "max_output_total",
					      (json_int_t)cf->max_output_total, "paused_clients",
					      (int)server_paused_clients(), "streams",
					      (int)stream_count()));
	/* Descriptors: RLIMIT_NOFILE, what is used or kept, what a worker
	 * costs by output mode (proc_fds.c). */
	if (info)
		json_object_set_new(info, "descriptors", proc_fds_info());
	if (info)
		modules_info(info);
	request_ok(r, info);
	return CMD_DONE;
}

static void shutdown_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	daemon_shutdown("daemon.shutdown request");
}

/* daemon.shutdown: answer first, then stop everything. */
static enum cmd_ret cmd_shutdown(struct request *r)
{
	if (request_unpack(r, "{}") < 0)
		return CMD_DONE;
	request_ok(r, json_pack("{s:b}", "shutting_down", 1));
	conn_flush(r->conn);
	event_base_once(daemon_g.base, -1, EV_TIMEOUT, shutdown_cb, NULL, NULL);
	return CMD_DONE;
}

/* daemon.reload: the whole new config or nothing. */
static enum cmd_ret cmd_reload(struct request *r)
{
	char err[CONF_ERR_MAX];
	json_t *changes = NULL;

	if (request_unpack(r, "{}") < 0)
		return CMD_DONE;
	if (daemon_reload(&changes, err, sizeof(err)) < 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s", err);
		return CMD_DONE;
	}
	request_ok(r, changes);
	return CMD_DONE;
}

static const struct cmd_entry meta_cmds[] = {
	{ "hello", ROLE_READ, 0, cmd_hello, "o:client?" },
	{ "ping", ROLE_READ, 0, cmd_ping, "" },
	{ "help", ROLE_READ, 0, cmd_help, "s:command?" },
	{ "daemon.info", ROLE_READ, 0, cmd_info, "" },
	{ "daemon.reload", ROLE_ADMIN, CMD_MUTATES, cmd_reload, "" },
	{ "daemon.shutdown", ROLE_ADMIN, 0, cmd_shutdown, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct cmd_module meta_module = {
	.capability = "meta",
	.cmds = meta_cmds,
};
