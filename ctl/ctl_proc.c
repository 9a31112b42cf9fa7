/*
 * mpctl: process, pool, task and daemon commands (mpctl(1); the protocol
 * commands they send are in docs/protocol.md). Each handler builds one request, calls it and prints
 * the answer: a table or a few words for humans, the exact JSON with --json.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpctl.h"

/* Report a getopt failure of a subcommand (c is '?' or ':'); exits 2. */
static _Noreturn void opt_error(const struct ctl_cmd *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];

	if (c == ':')
		ctl_usage_error(cmd, "option '%s' needs an argument", arg);
	if (optopt)
		ctl_usage_error(cmd, "unknown option '-%c'", optopt);
	ctl_usage_error(cmd, "unknown option '%s'", arg);
}

/* -h/--help of a subcommand with options. */
static _Noreturn void opt_help(const struct ctl_cmd *cmd)
{
	ctl_cmd_help(stdout, cmd);
	exit(CTL_EXIT_OK);
}

/* A new params object; exits when out of memory. */
static json_t *params_new(void)
{
	json_t *p = json_object();

	if (!p) {
		fputs("mpctl: out of memory\n", stderr);
		exit(CTL_EXIT_ERROR);
	}
	return p;
}

/* Call, then say what was done (the result with --json), drop params. */
static int call_say(struct ctl *ctl, const char *cmd, json_t *params, const char *fmt,
		    const char *arg)
{
	json_t *result;
	int rc = ctl_call(ctl, cmd, params, &result);

	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json) {
		ctl_print_result(ctl, result);
	} else {
		printf(fmt, arg);
		putchar('\n');
	}
	json_decref(result);
	return CTL_EXIT_OK;
}

/*
 * The status table.
 */

static char *fmt_uptime(const json_t *row, const json_t *v)
{
	char buf[32];

	if (!json_is_number(v) || json_is_false(json_object_get(row, "is_alive")))
		return strdup("-");
	ctl_format_duration(json_number_value(v), buf, sizeof(buf));
	return strdup(buf);
}

static const char *colour_state(const json_t *row, const json_t *v)
{
	const char *s = json_string_value(v);

	(void)row;
	if (!s)
		return NULL;
	if (strcmp(s, "running") == 0)
		return "\033[32m";
	if (strcmp(s, "starting") == 0 || strcmp(s, "stopping") == 0 || strcmp(s, "backoff") == 0)
		return "\033[33m";
	if (strcmp(s, "fatal") == 0)
		return "\033[31m";
	return NULL;
}

/* Why a process that is not alive is not running. */
static char *fmt_reason(const json_t *row, const json_t *v)
{
	if (json_is_true(json_object_get(row, "is_alive")) || !json_is_string(v))
		return strdup("-");
	return strdup(json_string_value(v));
}

static const struct ctl_column status_cols[] = {
	{ "name", "NAME", NULL, NULL },
	{ "state", "STATE", NULL, colour_state },
	{ "pid", "PID", NULL, NULL },
	{ "uptime", "UPTIME", fmt_uptime, NULL },
	{ "exitcode", "EXIT", NULL, NULL },
	{ "restarts", "RESTARTS", NULL, NULL },
	{ "busy", "BUSY", NULL, NULL },            /* task pools only */
	{ "tasks_done", "TASKS", NULL, NULL },     /* task pools only */
	{ "notify_status", "STATUS", NULL, NULL }, /* ready = notify pools only */
	{ "reason", "REASON", fmt_reason, NULL },
};

/* True for a non-empty array of objects that look like process records. */
static bool is_record_list(const json_t *v)
{
	return json_is_array(v) && json_array_size(v) > 0 &&
	       json_object_get(json_array_get(v, 0), "state") &&
	       json_object_get(json_array_get(v, 0), "name");
}

/* Whether some process of records is not alive for a known reason. */
static bool any_reason(const json_t *records)
{
	size_t i;
	json_t *rec;

	json_array_foreach(records, i, rec)
		if (!json_is_true(json_object_get(rec, "is_alive")) &&
		    json_is_string(json_object_get(rec, "reason")))
			return true;
	return false;
}

/* Whether some record has a STATUS= text (ready = notify). */
static bool any_notify_status(const json_t *records)
{
	size_t i;
	json_t *rec;

	json_array_foreach(records, i, rec)
		if (json_is_string(json_object_get(rec, "notify_status")))
			return true;
	return false;
}

/* Print process records as the status table (human) or JSON. STATUS only
 * when a process sent one, REASON (the last column) only when a process
 * has one. */
static void print_records(const struct ctl *ctl, const json_t *result)
{
	size_t ncols = sizeof(status_cols) / sizeof(status_cols[0]), n = 0;
	struct ctl_column cols[sizeof(status_cols) / sizeof(status_cols[0])];
	bool status = is_record_list(result) && any_notify_status(result);

	for (size_t i = 0; i < ncols; i++)
		if (status || strcmp(status_cols[i].key, "notify_status") != 0)
			cols[n++] = status_cols[i];
	if (!ctl->json && is_record_list(result))
		ctl_print_table(result, cols, any_reason(result) ? n : n - 1);
	else if (ctl->json || !json_is_array(result) || json_array_size(result) > 0)
		ctl_print_result(ctl, result);
}

/* status [TARGET] */
static int cmd_status(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *params = params_new(), *result;
	int rc;

	if (argc - i > 1)
		ctl_usage_error(cmd, "status takes at most one target");
	if (argc - i == 1)
		json_object_set_new(params, "target", ctl_str(argv[i]));
	rc = ctl_call(ctl, "status", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	print_records(ctl, result);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* The protocol name of a control subcommand. */
static const char *control_cmd(const char *name)
{
	static const char *const map[][2] = {
		{ "start", "proc.start" },     { "stop", "proc.stop" },
		{ "restart", "proc.restart" }, { "terminate", "proc.terminate" },
		{ "kill", "proc.kill" },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i][0], name) == 0)
			return map[i][1];
	return name;
}

/* The message printed when a stop takes long (async-signal-safe write). */
static char slow_msg[256];

static void slow_alarm(int sig)
{
	ssize_t n;

	(void)sig;
	n = write(STDERR_FILENO, slow_msg, strlen(slow_msg));
	(void)n;
}

/* After one second without an answer, say what a stop waits for. */
static void say_when_slow(const char *verb, const char *target)
{
	struct sigaction sa;

	snprintf(slow_msg, sizeof(slow_msg),
		 "mpctl: %s %s: waiting for it to exit (its stop signal, then SIGKILL after "
		 "the pool's stop_timeout)...\n",
		 verb, target);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = slow_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	alarm(1);
}

/* The pid of name in records, 0 if none. */
static json_int_t record_pid(const json_t *records, const char *name)
{
	size_t i;
	json_t *rec;

	json_array_foreach(records, i, rec)
		if (strcmp(json_string_value(json_object_get(rec, "name")) ?: "", name) == 0)
			return json_integer_value(json_object_get(rec, "pid"));
	return 0;
}

/* Whether each process of before has left the state it was signalled in
 * (its pid is gone or changed) in now. */
static bool records_moved(const json_t *before, const json_t *now)
{
	size_t i;
	json_t *rec;

	json_array_foreach(before, i, rec) {
		json_int_t pid = json_integer_value(json_object_get(rec, "pid"));
		const char *name = json_string_value(json_object_get(rec, "name"));

		if (pid && name && record_pid(now, name) == pid)
			return false;
	}
	return true;
}

/*
 * After kill/terminate: the records once the signalled processes died (or
 * after 5 s: a process may catch SIGTERM and take its time), so what is
 * shown is the state after the signal, not before it.
 */
static json_t *records_after_signal(struct ctl *ctl, const char *target, json_t *before)
{
	json_t *params = json_pack("{s:o}", "target", ctl_str(target)), *now = NULL;
	struct timespec pause = { 0, 20 * 1000 * 1000 };

	for (int i = 0; i < 250; i++) {
		json_decref(now);
		now = NULL;
		if (ctl_call(ctl, "status", params, &now) != CTL_EXIT_OK) {
			now = json_incref(before);
			break;
		}
		if (records_moved(before, now))
			break;
		nanosleep(&pause, NULL);
	}
	json_decref(params);
	return now;
}

/* start|stop|restart [--no-wait] TARGET, terminate|kill TARGET; restart
 * also [--rolling [--max-unavailable N]] */
static int cmd_control(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-wait", no_argument, NULL, 'W' },
		{ "rolling", no_argument, NULL, 'R' },
		{ "max-unavailable", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool can_wait = strcmp(cmd->name, "terminate") != 0 && strcmp(cmd->name, "kill") != 0;
	bool restart = strcmp(cmd->name, "restart") == 0;
	bool nowait = false, rolling = false;
	long max_unavailable = 0;
	json_t *params, *result;
	char *end;
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'h')
			opt_help(cmd);
		if (c == 'W' && can_wait)
			nowait = true;
		else if (c == 'R' && restart)
			rolling = true;
		else if (c == 'M' && restart) {
			max_unavailable = strtol(optarg, &end, 10);
			if (*end || max_unavailable < 1 || max_unavailable > 100000)
				ctl_usage_error(cmd,
						"--max-unavailable: expected 1..100000, not '%s'",
						optarg);
		} else
			opt_error(cmd, (c == 'W' || c == 'R' || c == 'M') ? '?' : c, argv);
	}
	if (argc - optind != 1)
		ctl_usage_error(cmd, "%s takes one target", cmd->name);
	if (max_unavailable && !rolling)
		ctl_usage_error(cmd, "--max-unavailable goes with --rolling");
	params = params_new();
	json_object_set_new(params, "target", ctl_str(argv[optind]));
	if (nowait)
		json_object_set_new(params, "wait", json_false());
	if (rolling)
		json_object_set_new(params, "rolling", json_true());
	if (max_unavailable)
		json_object_set_new(params, "max_unavailable", json_integer(max_unavailable));
	if (can_wait && !nowait && strcmp(cmd->name, "start") != 0)
		say_when_slow(strcmp(cmd->name, "stop") == 0 ? "stopping" : "restarting",
			      argv[optind]);
	rc = ctl_call(ctl, control_cmd(cmd->name), params, &result);
	alarm(0);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (!can_wait && !ctl->json) {
		json_t *after = records_after_signal(ctl, argv[optind], result);

		json_decref(result);
		result = after;
	}
	print_records(ctl, result);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* signal SIG TARGET: SIG is a name (HUP, SIGHUP, -HUP) or a number. */
static int cmd_signal(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), rc;
	const char *sig;
	json_t *params, *result;

	if (argc - i != 2)
		ctl_usage_error(cmd, "signal takes a signal and a target");
	sig = argv[i];
	if (sig[0] == '-')
		sig++;
	if (!sig[0])
		ctl_usage_error(cmd, "bad signal '%s'", argv[i]);
	params = params_new();
	json_object_set_new(params, "target", ctl_str(argv[i + 1]));
	if (strspn(sig, "0123456789") == strlen(sig))
		json_object_set_new(params, "signal",
				    json_integer(ctl_parse_count(cmd, "signal", sig)));
	else
		json_object_set_new(params, "signal", ctl_str(sig));
	rc = ctl_call(ctl, "proc.signal", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json) {
		ctl_print_result(ctl, result);
	} else {
		bool number = strspn(sig, "0123456789") == strlen(sig);
		char up[32];
		size_t k;
		json_t *rec;

		for (k = 0; sig[k] && k + 1 < sizeof(up); k++)
			up[k] = (char)toupper((unsigned char)sig[k]);
		up[k] = '\0';
		printf("sent %s%s to",
		       number                       ? "signal "
		       : strncmp(up, "SIG", 3) == 0 ? ""
						    : "SIG",
		       up);
		json_array_foreach(result, k, rec)
			printf(" %s", json_string_value(json_object_get(rec, "name")) ?: "?");
		putchar('\n');
	}
	json_decref(result);
	return CTL_EXIT_OK;
}

/* run --attach: the child got our stdin, stdout and stderr; wait for it
 * and exit as a shell would (its status, 128+N after signal N). */
static int run_attached(struct ctl *ctl, json_t *result)
{
	json_t *params = params_new(), *joined, *code;
	int rc;

	json_object_set(params, "target", json_object_get(result, "name"));
	ctl->timeout = -1; /* as long as the program runs */
	mpsup_set_timeout(ctl_connect(ctl), -1);
	rc = ctl_call(ctl, "proc.join", params, &joined);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	code = json_object_get(joined, "exitcode");
	rc = !json_is_integer(code)          ? CTL_EXIT_ERROR
	     : json_integer_value(code) >= 0 ? (int)json_integer_value(code)
					     : 128 - (int)json_integer_value(code);
	json_decref(joined);
	return rc;
}

/* run [--name N] [--daemon] [--attach] [--env K=V]... [--cwd D] [--stdin TEXT] -- CMD ARG... */
static int cmd_run(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },  { "daemon", no_argument, NULL, 'd' },
		{ "env", required_argument, NULL, 'e' },   { "cwd", required_argument, NULL, 'C' },
		{ "stdin", required_argument, NULL, 'i' }, { "user", required_argument, NULL, 'u' },
		{ "group", required_argument, NULL, 'g' }, { "attach", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },        { NULL, 0, NULL, 0 },
	};
	static const int stdio[3] = { 0, 1, 2 };
	json_t *params = params_new(), *env = NULL, *args, *result;
	bool attach = false;
	int c, i, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+:hn:de:C:i:u:g:a", opts, NULL)) != -1) {
		const char *eq;

		switch (c) {
		case 'h': json_decref(params); opt_help(cmd);
		case 'n': json_object_set_new(params, "name", ctl_str(optarg)); break;
		case 'd': json_object_set_new(params, "daemon", json_true()); break;
		case 'e':
			eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				json_decref(params); /* exits: nothing left for the leak checker */
				ctl_usage_error(cmd, "--env wants KEY=VALUE, not '%s'", optarg);
			}
			if (!env) {
				env = params_new();
				json_object_set(params, "env", env);
				json_decref(env);
			}
			json_object_setn_new(env, optarg, (size_t)(eq - optarg), ctl_str(eq + 1));
			break;
		case 'C': json_object_set_new(params, "cwd", ctl_str(optarg)); break;
		case 'i': json_object_set_new(params, "stdin", ctl_str(optarg)); break;
		case 'u': json_object_set_new(params, "user", ctl_str(optarg)); break;
		case 'g': json_object_set_new(params, "group", ctl_str(optarg)); break;
		case 'a': attach = true; break;
		default: json_decref(params); opt_error(cmd, c, argv);
		}
	}
	if (optind >= argc) {
		json_decref(params);
		ctl_usage_error(cmd, "run needs a command");
	}
	args = json_array();
	for (i = optind; i < argc; i++)
		json_array_append_new(args, ctl_str(argv[i]));
	json_object_set_new(params, "argv", args);
	if (attach)
		json_object_set_new(params, "stdio", json_string("passed"));
	rc = ctl_call_fds(ctl, "proc.run", params, attach ? stdio : NULL, attach ? 3 : 0, &result,
			  NULL);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (attach) {
		rc = run_attached(ctl, result);
		json_decref(result);
		return rc;
	}
	if (ctl->json || !json_is_object(result)) {
		ctl_print_result(ctl, result);
	} else {
		ctl_print_value(stdout, json_object_get(result, "name"), true);
		putchar(' ');
		ctl_print_value(stdout, json_object_get(result, "pid"), true);
		putchar('\n');
	}
	json_decref(result);
	return CTL_EXIT_OK;
}

/*
 * Parse "ARG... [--timeout S]" of join and wait: one positional argument
 * (returned) and an optional timeout (set in params).
 */
static const char *parse_one_with_timeout(const struct ctl_cmd *cmd, int argc, char **argv,
					  json_t *params)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
		if (c == 'h')
			opt_help(cmd);
		if (c != 't')
			opt_error(cmd, c, argv);
		json_object_set_new(params, "timeout", json_real(ctl_parse_seconds(cmd, optarg)));
	}
	if (argc - optind != 1)
		ctl_usage_error(cmd, "%s takes one argument", cmd->name);
	return argv[optind];
}

/* join TARGET [--timeout S]: print the exit code; 4 if still alive. */
static int cmd_join(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *params = params_new(), *result;
	const char *target = parse_one_with_timeout(cmd, argc, argv, params);
	int rc;

	json_object_set_new(params, "target", ctl_str(target));
	rc = ctl_call(ctl, "proc.join", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json || !json_is_object(result)) {
		ctl_print_result(ctl, result);
	} else if (!json_is_true(json_object_get(result, "is_alive"))) {
		ctl_print_value(stdout, json_object_get(result, "exitcode"), false);
		putchar('\n');
	}
	if (json_is_true(json_object_get(result, "is_alive"))) {
		fflush(stdout);
		fprintf(stderr, "mpctl: timeout: %s is still alive\n", target);
		rc = CTL_EXIT_TIMEOUT;
	}
	json_decref(result);
	return rc;
}

/*
 * The record of process name from status (a new reference), or NULL after
 * an error (*ret_rc set). A name that is a pool of several processes is a
 * usage error.
 */
static json_t *one_record(struct ctl *ctl, const struct ctl_cmd *cmd, const char *name, int *ret_rc)
{
	json_t *params = params_new(), *result, *rec, *found = NULL;
	size_t i;

	json_object_set_new(params, "target", ctl_str(name));
	*ret_rc = ctl_call(ctl, "status", params, &result);
	json_decref(params);
	if (*ret_rc != CTL_EXIT_OK)
		return NULL;
	json_array_foreach(result, i, rec) {
		const char *n = json_string_value(json_object_get(rec, "name"));

		if (n && strcmp(n, name) == 0)
			found = rec;
	}
	if (!found && json_array_size(result) == 1)
		found = json_array_get(result, 0);
	if (!found) {
		bool list = json_is_array(result);

		json_decref(result);
		if (!list)
			ctl_usage_error(cmd, "unexpected status answer for '%s'", name);
		ctl_usage_error(cmd, "'%s' is not one process (name one: POOL:INDEX)", name);
	}
	json_incref(found);
	json_decref(result);
	return found;
}

/* is-alive NAME: exit 0 when alive, 1 when not. */
static int cmd_is_alive(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *rec;
	bool alive;
	int rc;

	if (argc - i != 1)
		ctl_usage_error(cmd, "is-alive takes one process name");
	rec = one_record(ctl, cmd, argv[i], &rc);
	if (!rec)
		return rc;
	alive = json_is_true(json_object_get(rec, "is_alive"));
	puts(alive ? "true" : "false");
	json_decref(rec);
	return alive ? CTL_EXIT_OK : CTL_EXIT_ERROR;
}

/* exitcode NAME: the exit code, or null while alive / never run. */
static int cmd_exitcode(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *rec;
	int rc;

	if (argc - i != 1)
		ctl_usage_error(cmd, "exitcode takes one process name");
	rec = one_record(ctl, cmd, argv[i], &rc);
	if (!rec)
		return rc;
	ctl_print_value(stdout, json_object_get(rec, "exitcode"), false);
	putchar('\n');
	json_decref(rec);
	return CTL_EXIT_OK;
}

/* forget NAME */
static int cmd_forget(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *params;

	if (argc - i != 1)
		ctl_usage_error(cmd, "forget takes one process name");
	params = params_new();
	json_object_set_new(params, "name", ctl_str(argv[i]));
	return call_say(ctl, "proc.forget", params, "forgot %s", argv[i]);
}

/*
 * Logs.
 */

/* Print one log record: "NAME STREAM | line", or the line alone. */
/* How log lines are printed: one process's (bare, stderr marked) or
 * several (name and stream), with timestamps or not. */
struct log_fmt {
	bool single;
	bool timestamps;
};

/* ts (Unix time) as 2026-12-05T03:40:01.123Z and a space. */
static void print_log_ts(const json_t *ts)
{
	double t = json_number_value(ts);
	time_t secs = (time_t)t;
	struct tm tm;
	char buf[32];

	if (!json_is_number(ts) || !gmtime_r(&secs, &tm)) {
		fputs("-                        ", stdout);
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	printf("%s.%03dZ ", buf, (int)((t - (double)secs) * 1000) % 1000);
}

static void print_log_record(const struct ctl *ctl, const json_t *rec, const struct log_fmt *fmt)
{
	const json_t *line = json_object_get(rec, "line");
	const char *stream = json_string_value(json_object_get(rec, "stream"));

	if (ctl->json || !json_is_string(line)) {
		char *s = ctl_json_text(rec);

		puts(s);
		free(s);
		return;
	}
	if (fmt->timestamps)
		print_log_ts(json_object_get(rec, "ts"));
	if (!fmt->single) {
		ctl_print_value(stdout, json_object_get(rec, "name"), true);
		putchar(' ');
		ctl_print_value(stdout, json_object_get(rec, "stream"), true);
		fputs(" | ", stdout);
	} else if (stream && strcmp(stream, "stderr") == 0) {
		fputs("stderr | ", stdout); /* stdout lines stay bare */
	}
	fwrite(json_string_value(line), 1, json_string_length(line), stdout);
	putchar('\n');
}

/* Print log records: an array of them, {lines:[...]}, or one record. */
static void print_log_records(const struct ctl *ctl, const json_t *v, const struct log_fmt *fmt)
{
	size_t i;
	json_t *rec;

	if (json_is_object(v) && json_is_array(json_object_get(v, "lines")))
		v = json_object_get(v, "lines");
	if (json_is_array(v)) {
		json_array_foreach(v, i, rec)
			print_log_record(ctl, rec, fmt);
	} else if (!json_is_null(v)) {
		print_log_record(ctl, v, fmt);
	}
}

/* logs [-f] [-t] [-n N] TARGET */
static int cmd_logs(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "lines", required_argument, NULL, 'n' },
		{ "timestamps", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *params, *result, *msg;
	struct log_fmt fmt = { false, false };
	bool follow = false;
	long long lines = -1;
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, ":hftn:", opts, NULL)) != -1) {
		if (c == 'h')
			opt_help(cmd);
		else if (c == 'f')
			follow = true;
		else if (c == 't')
			fmt.timestamps = true;
		else if (c == 'n')
			lines = ctl_parse_count(cmd, "number of lines", optarg);
		else
			opt_error(cmd, c, argv);
	}
	if (argc - optind != 1)
		ctl_usage_error(cmd, "logs takes one target");

	/* One process: print bare lines; several: prefix name and stream. */
	params = params_new();
	json_object_set_new(params, "target", ctl_str(argv[optind]));
	rc = ctl_call(ctl, "status", params, &result);
	if (rc != CTL_EXIT_OK) {
		json_decref(params);
		return rc;
	}
	fmt.single = json_array_size(result) == 1;
	json_decref(result);

	if (lines >= 0)
		json_object_set_new(params, "lines", json_integer(lines));
	if (follow) {
		json_object_set_new(params, "follow", json_true());
		ctl_stream_prepare(ctl);
	}
	rc = ctl_call(ctl, "proc.logs", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json && !follow)
		ctl_print_result(ctl, result);
	else
		print_log_records(ctl, result, &fmt);
	json_decref(result);
	if (!follow)
		return CTL_EXIT_OK;
	ctl_stream_unbounded(ctl);
	while (!ctl_stdout_gone() && (msg = ctl_stream_next(ctl))) {
		const json_t *ok = json_object_get(msg, "ok");

		if (json_is_false(ok)) {
			fprintf(stderr, "mpctl: %s: %s\n",
				json_string_value(
					json_object_get(json_object_get(msg, "error"), "code")),
				json_string_value(
					json_object_get(json_object_get(msg, "error"), "message")));
			json_decref(msg);
			return CTL_EXIT_ERROR;
		}
		print_log_records(ctl, ok ? json_object_get(msg, "result") : msg, &fmt);
		json_decref(msg);
	}
	return CTL_EXIT_OK;
}

/*
 * Pools and tasks.
 */

/* scale POOL N */
static int cmd_scale(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), rc;
	json_t *params, *result;
	long long n;

	if (argc - i != 2)
		ctl_usage_error(cmd, "scale takes a pool and a number of processes");
	params = params_new();
	json_object_set_new(params, "pool", ctl_str(argv[i]));
	n = ctl_parse_count(cmd, "number of processes", argv[i + 1]);
	json_object_set_new(params, "processes", json_integer(n));
	rc = ctl_call(ctl, "pool.scale", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json)
		ctl_print_result(ctl, result);
	else
		printf("pool %s: %lld process%s\n", argv[i], n, n == 1 ? "" : "es");
	json_decref(result);
	return CTL_EXIT_OK;
}

static const struct ctl_column pool_cols[] = {
	{ "pool", "NAME", NULL, NULL },           { "mode", "MODE", NULL, NULL },
	{ "processes", "PROCESSES", NULL, NULL }, { "running", "RUNNING", NULL, NULL },
	{ "busy", "BUSY", NULL, NULL },           { "pending", "PENDING", NULL, NULL },
	{ "restart", "RESTART", NULL, NULL },     { "autostart", "AUTOSTART", NULL, NULL },
};

/* pools: the pool table. */
static int cmd_pools(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *result, *rows;
	int rc;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "pools takes no arguments");
	rc = ctl_call(ctl, "pool.list", NULL, &result);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json) {
		ctl_print_result(ctl, result);
		json_decref(result);
		return CTL_EXIT_OK;
	}
	rows = json_incref(result);
	if (json_is_object(result)) {
		/* {"web": {...}, ...}: one row per pool, named by its key */
		const char *name;
		json_t *pool;

		json_decref(rows);
		rows = json_array();
		json_object_foreach(result, name, pool) {
			json_t *row = json_is_object(pool) ? json_deep_copy(pool) : json_object();

			json_object_set_new(row, "pool", json_string(name));
			json_array_append_new(rows, row);
		}
	}
	if (json_is_array(rows) && json_is_object(json_array_get(rows, 0)))
		ctl_print_table(rows, pool_cols, sizeof(pool_cols) / sizeof(pool_cols[0]));
	else if (!json_is_array(rows) || json_array_size(rows) > 0)
		ctl_print_result(ctl, result);
	json_decref(rows);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* pool add POOL KEY=VALUE... | pool remove POOL | pool list */
static int cmd_pool(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), n = argc - i, rc;
	json_t *params, *result;
	const char *op;

	if (n < 1)
		ctl_usage_error(cmd, "pool needs an operation (add, remove or list)");
	op = argv[i];
	if (strcmp(op, "list") == 0) {
		if (n != 1)
			ctl_usage_error(cmd, "pool list takes no arguments");
		return cmd_pools(ctl, cmd, 1, argv + i);
	}
	if (strcmp(op, "remove") == 0) {
		if (n != 2)
			ctl_usage_error(cmd, "pool remove takes one pool");
		params = json_pack("{s:o}", "pool", ctl_str(argv[i + 1]));
		return call_say(ctl, "pool.remove", params, "removed pool %s", argv[i + 1]);
	}
	if (strcmp(op, "add") != 0)
		ctl_usage_error(cmd, "unknown pool operation '%s' (add, remove or list)", op);
	if (n < 2)
		ctl_usage_error(cmd, "pool add takes a pool and its KEY=VALUE settings");
	params = params_new();
	json_object_set_new(params, "pool", ctl_str(argv[i + 1]));
	for (int k = i + 2; k < argc; k++) {
		size_t klen = strcspn(argv[k], "=");

		if (klen == 0 || !argv[k][klen])
			ctl_usage_error(cmd, "pool add wants KEY=VALUE, not '%s'", argv[k]);
		json_object_setn_new(params, argv[k], klen, ctl_arg(argv[k] + klen + 1));
	}
	rc = ctl_call(ctl, "pool.add", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json) {
		ctl_print_result(ctl, result);
	} else {
		json_int_t procs = json_integer_value(json_object_get(result, "processes"));

		printf("added pool %s (%lld process%s, %s)\n", argv[i + 1], (long long)procs,
		       procs == 1 ? "" : "es",
		       json_is_false(json_object_get(result, "autostart")) ? "not started"
									   : "started");
	}
	json_decref(result);
	return CTL_EXIT_OK;
}

/* Print one item of a streamed map: its result (after its index when
 * unordered), or its error on stderr; false when it failed. */
static bool map_stream_item(const struct ctl *ctl, const struct mpsup_imap_item *it, bool ordered)
{
	if (ctl->json) {
		json_t *line =
			it->result ? json_pack("{s:I, s:O}", "index", (json_int_t)it->index,
					       "result", it->result)
				   : json_pack("{s:I, s:{s:s, s:s}}", "index",
					       (json_int_t)it->index, "error", "code",
					       it->error.code_name, "message", it->error.message);
		ctl_print_value(stdout, line, false);
		putchar('\n');
		json_decref(line);
	} else if (it->result) {
		if (!ordered)
			printf("%zu ", it->index);
		ctl_print_value(stdout, it->result, false);
		putchar('\n');
	}
	if (!it->result)
		fprintf(stderr, "mpctl: item %zu: %s: %s\n", it->index, it->error.code_name,
			it->error.message);
	return it->result != NULL;
}

/* map --stream: pool.imap of items, each result printed as it comes. */
static int map_stream(struct ctl *ctl, const char *pool, json_t *items, bool ordered)
{
	struct mpsup_client *c = ctl_connect(ctl);
	struct mpsup_imap_item it;
	struct mpsup_error err;
	size_t n, failed = 0;
	bool bad = false;
	int r;

	memset(&err, 0, sizeof(err));
	ctl_stream_prepare(ctl);
	r = mpsup_imap_open(c, pool, items, ordered, 0, &n, &err);
	if (r < 0)
		ctl_transport_fail(ctl, r);
	if (r > 0)
		return ctl_report_error(&err);
	ctl_stream_unbounded(ctl);
	while (!ctl_stdout_gone() && (r = mpsup_imap_next(c, &it, &failed)) == 1) {
		bad |= !map_stream_item(ctl, &it, ordered);
		json_decref(it.result);
	}
	if (ctl_stdout_gone())
		return CTL_EXIT_OK; /* the reader went away: so do we */
	if (r < 0)
		ctl_transport_fail(ctl, r);
	return bad || failed ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}

/* map [--stream|--unordered] POOL ITEM...: one result per line, in item
 * order (--stream: each as soon as it and those before it are done;
 * --unordered: each as it ends, after its index). */
static int cmd_map(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *params, *items, *result, *results, *v;
	bool stream = false, ordered = true;
	const char *pool;
	size_t k;
	int rc;

	/* options first; items are taken as they are (-5 is an item) */
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--stream") == 0)
			stream = true;
		else if (strcmp(argv[i], "--unordered") == 0)
			stream = true, ordered = false;
		else
			ctl_usage_error(cmd, "unknown option");
	}
	if (argc - i < 1)
		ctl_usage_error(cmd, "map takes a pool and items");
	pool = argv[i];
	items = json_array();
	for (i++; i < argc; i++)
		json_array_append_new(items, ctl_arg(argv[i]));
	if (stream) {
		rc = map_stream(ctl, pool, items, ordered);
		json_decref(items);
		return rc;
	}
	params = params_new();
	json_object_set_new(params, "pool", ctl_str(pool));
	json_object_set_new(params, "items", items);
	rc = ctl_call(ctl, "pool.map", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	results = json_is_object(result) ? json_object_get(result, "results") : result;
	if (ctl->json || !json_is_array(results)) {
		ctl_print_result(ctl, result);
	} else {
		json_array_foreach(results, k, v) {
			ctl_print_value(stdout, v, false);
			putchar('\n');
		}
	}
	json_decref(result);
	return CTL_EXIT_OK;
}

/* Print member key of an object result bare (or the whole result). */
static void print_member(const struct ctl *ctl, const json_t *result, const char *key)
{
	const json_t *v = json_object_get(result, key);

	if (ctl->json || !v) {
		ctl_print_result(ctl, result);
		return;
	}
	ctl_print_value(stdout, v, false);
	putchar('\n');
}

/* submit POOL ITEM: print the task id. */
static int cmd_submit(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *params, *result;
	int rc;

	if (argc - i != 2)
		ctl_usage_error(cmd, "submit takes a pool and one item");
	params = params_new();
	json_object_set_new(params, "pool", ctl_str(argv[i]));
	json_object_set_new(params, "item", ctl_arg(argv[i + 1]));
	rc = ctl_call(ctl, "pool.submit", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	print_member(ctl, result, "task");
	json_decref(result);
	return CTL_EXIT_OK;
}

/* wait TASK [--timeout S]: print the task's result. */
static int cmd_wait(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *params = params_new(), *result;
	const char *task = parse_one_with_timeout(cmd, argc, argv, params);
	int rc;

	json_object_set_new(params, "task", ctl_arg(task));
	rc = ctl_call(ctl, "task.wait", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	print_member(ctl, result, "result");
	json_decref(result);
	return CTL_EXIT_OK;
}

/* task-status TASK */
static int cmd_task_status(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), rc;
	json_t *params;

	if (argc - i != 1)
		ctl_usage_error(cmd, "task-status takes one task");
	params = params_new();
	json_object_set_new(params, "task", ctl_arg(argv[i]));
	rc = ctl_call_print_fields(ctl, "task.status", params);
	json_decref(params);
	return rc;
}

/*
 * Events.
 */

/* Print one event: "TS EVENT name from->to key=value...". */
static void print_event(const json_t *ev)
{
	static const char *const shown[] = { "ts", "event", "name", "from", "to" };
	const json_t *ts = json_object_get(ev, "ts");
	const json_t *from = json_object_get(ev, "from"), *to = json_object_get(ev, "to");
	const char *key;
	json_t *v;
	size_t i;

	if (!json_is_object(ev)) {
		ctl_print_value(stdout, ev, false);
		putchar('\n');
		return;
	}
	if (json_is_number(ts)) {
		double t = json_number_value(ts);
		time_t sec = (time_t)t;
		struct tm tm;
		char buf[32];

		if (localtime_r(&sec, &tm) && strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm))
			printf("%s.%03d ", buf, (int)((t - (double)sec) * 1000) % 1000);
		else
			printf("%g ", t);
	} else if (ts) {
		ctl_print_value(stdout, ts, true);
		putchar(' ');
	}
	ctl_print_value(stdout, json_object_get(ev, "event"), true);
	if (json_object_get(ev, "name")) {
		putchar(' ');
		ctl_print_value(stdout, json_object_get(ev, "name"), true);
	}
	if (from || to) {
		putchar(' ');
		ctl_print_value(stdout, from, true);
		fputs("->", stdout);
		ctl_print_value(stdout, to, true);
	}
	json_object_foreach((json_t *)ev, key, v) {
		bool skip = json_is_null(v);

		for (i = 0; i < sizeof(shown) / sizeof(shown[0]) && !skip; i++)
			skip = strcmp(key, shown[i]) == 0;
		if (skip)
			continue;
		printf(" %s=", key);
		ctl_print_value(stdout, v, true);
	}
	putchar('\n');
}

/* events [TOPIC...]: print events as they arrive until EOF or ^C. */
static int cmd_events(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	json_t *params = params_new(), *result, *msg;
	char *line;
	int rc;

	if (i < argc) {
		json_t *topics = json_array();

		for (; i < argc; i++)
			json_array_append_new(topics, ctl_str(argv[i]));
		json_object_set_new(params, "topics", topics);
	}
	ctl_stream_prepare(ctl);
	rc = ctl_call(ctl, "events.subscribe", params, &result);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	json_decref(result);
	ctl_stream_unbounded(ctl);
	while (!ctl_stdout_gone() && (line = ctl_stream_next_line(ctl))) {
		if (ctl->json) {
			puts(line);
			free(line);
			continue;
		}
		msg = json_loads(line, JSON_DECODE_ANY, NULL);
		if (!msg)
			puts(line);
		else if (json_object_get(msg, "ok") && json_object_get(msg, "result"))
			print_event(json_object_get(msg, "result"));
		else
			print_event(msg);
		json_decref(msg);
		free(line);
	}
	return CTL_EXIT_OK;
}

/*
 * The daemon.
 */

/* reload: print what was added, changed and removed; what failed goes to
 * stderr and makes the exit status 1. */
static int cmd_reload(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	static const char *const parts[] = { "added", "changed", "removed" };
	json_t *result, *failures, *f;
	bool any = false;
	size_t i, k;
	int rc;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "reload takes no arguments");
	rc = ctl_call(ctl, "daemon.reload", NULL, &result);
	if (rc != CTL_EXIT_OK)
		return rc;
	failures = json_object_get(result, "failed");
	if (ctl->json || !json_is_object(result)) {
		ctl_print_result(ctl, result);
		json_decref(result);
		return json_array_size(failures) ? CTL_EXIT_ERROR : CTL_EXIT_OK;
	}
	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		json_t *names = json_object_get(result, parts[i]), *n;

		if (json_array_size(names) == 0)
			continue;
		any = true;
		printf("%s:", parts[i]);
		json_array_foreach(names, k, n) {
			putchar(' ');
			ctl_print_value(stdout, n, true);
		}
		putchar('\n');
	}
	json_array_foreach(failures, k, f) {
		any = true;
		fprintf(stderr, "mpctl: reload: pool %s: %s\n",
			json_string_value(json_object_get(f, "pool")) ?: "?",
			json_string_value(json_object_get(f, "error")) ?: "failed");
		rc = CTL_EXIT_ERROR;
	}
	if (!any)
		puts("no changes");
	json_decref(result);
	return rc;
}

/* shutdown: a connection closed by the stopping daemon is success. */
static int cmd_shutdown(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	struct mpsup_error err;
	json_t *result = NULL;
	int r;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "shutdown takes no arguments");
	memset(&err, 0, sizeof(err));
	r = mpsup_call(ctl_connect(ctl), "daemon.shutdown", NULL, &result, &err);
	if (r == -ECONNRESET || r == -EPIPE) {
		if (!ctl->json)
			puts("mpsupd is shutting down");
		return CTL_EXIT_OK;
	}
	if (r < 0)
		ctl_transport_fail(ctl, r);
	if (r > 0) {
		fprintf(stderr, "mpctl: %s: %s\n", err.code_name, err.message);
		return strcmp(err.code_name, "timeout") == 0 ? CTL_EXIT_TIMEOUT : CTL_EXIT_ERROR;
	}
	if (ctl->json)
		ctl_print_result(ctl, result);
	else
		puts("mpsupd is shutting down");
	json_decref(result);
	return CTL_EXIT_OK;
}

/* info: the daemon's figures as "key: value" lines. */
/* A storage outage of the shared state, on a line of its own: it is what
 * an operator looks for. */
static void print_outage(const json_t *info)
{
	const json_t *o = json_object_get(json_object_get(info, "persistence"), "outage");
	time_t since;
	struct tm tm;
	char when[64];

	if (!json_is_object(o))
		return;
	since = (time_t)json_number_value(json_object_get(o, "since"));
	if (!localtime_r(&since, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(when, sizeof(when), "?");
	printf("STATE OUTAGE:  since %s (%.0f s): %lld bytes (%lld records) not written; %s\n",
	       when, json_number_value(json_object_get(o, "secs")),
	       (long long)json_integer_value(json_object_get(o, "pending_bytes")),
	       (long long)json_integer_value(json_object_get(o, "pending_records")),
	       json_string_value(json_object_get(o, "error")) ?: "");
}

static int cmd_info(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *result;
	int rc;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "info takes no arguments");
	if (ctl->json)
		return ctl_call_print_fields(ctl, "daemon.info", NULL);
	if ((rc = ctl_call(ctl, "daemon.info", NULL, &result)) != CTL_EXIT_OK)
		return rc;
	ctl_print_fields(result);
	print_outage(result);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* metrics: the Prometheus text as the daemon wrote it (--json: the raw
 * answer). */
static int cmd_metrics(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *result;
	int rc;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "metrics takes no arguments");
	if (ctl->json)
		return ctl_call_print_fields(ctl, "daemon.metrics", NULL);
	if ((rc = ctl_call(ctl, "daemon.metrics", NULL, &result)) != CTL_EXIT_OK)
		return rc;
	if (json_is_string(result))
		fwrite(json_string_value(result), 1, json_string_length(result), stdout);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* reopen-logs */
static int cmd_reopen_logs(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "reopen-logs takes no arguments");
	return call_say(ctl, "daemon.reopen_logs", NULL, "%slog files reopened", "");
}

const struct ctl_cmd ctl_proc_cmds[] = {
	{ "status", cmd_status, "[TARGET]", "Show processes (all, a pool, or one) as a table." },
	{ "start", cmd_control, "[--no-wait] TARGET", "Start a pool, a process or \"*\"." },
	{ "stop", cmd_control, "[--no-wait] TARGET",
	  "Stop gracefully (stop signal, SIGKILL after stop_timeout)." },
	{ "restart", cmd_control, "[--no-wait] [--rolling [--max-unavailable N]] TARGET",
	  "Stop, then start (--rolling: N at a time, each next once one runs again)." },
	{ "terminate", cmd_control, "TARGET", "Send SIGTERM." },
	{ "kill", cmd_control, "TARGET", "Send SIGKILL." },
	{ "signal", cmd_signal, "SIG TARGET", "Send a signal (HUP, SIGHUP or a number)." },
	{ "run", cmd_run,
	  "[--name N] [--daemon] [--attach] [--env K=V]... [--cwd D] [--stdin TEXT]"
	  " [--user U [--group G]] -- CMD [ARG...]",
	  "Run a one-shot process; print its name and pid (--attach: on this terminal, "
	  "exit with its status)." },
	{ "join", cmd_join, "TARGET [--timeout S]",
	  "Wait for a process to end; print its exit code (exit 4 if still alive)." },
	{ "is-alive", cmd_is_alive, "NAME", "Exit 0 when the process is alive, 1 when not." },
	{ "exitcode", cmd_exitcode, "NAME", "Print the exit code (null while alive)." },
	{ "forget", cmd_forget, "NAME", "Drop the record of a finished one-shot process." },
	{ "logs", cmd_logs, "[-f] [-t] [-n N] TARGET",
	  "Print recent output lines (stderr marked); -f follows, -t adds timestamps." },
	{ "scale", cmd_scale, "POOL N", "Set the number of processes of a pool." },
	{ "pools", cmd_pools, "", "Show the pools as a table." },
	{ "pool", cmd_pool, "add POOL KEY=VALUE... | remove POOL | list",
	  "Define a pool at run time (keys as in a config section), remove one, list them." },
	{ "map", cmd_map, "[--stream|--unordered] POOL ITEM...",
	  "Run items on a task pool; one result per line." },
	{ "submit", cmd_submit, "POOL ITEM", "Submit one task; print its id." },
	{ "wait", cmd_wait, "TASK [--timeout S]", "Wait for a task; print its result." },
	{ "task-status", cmd_task_status, "TASK", "Show the state of a task." },
	{ "events", cmd_events, "[TOPIC...]",
	  "Print events as they happen (topics: process pool object daemon)." },
	{ "reload", cmd_reload, "", "Re-read the configuration and apply the difference." },
	{ "shutdown", cmd_shutdown, "", "Stop every process and the daemon." },
	{ "info", cmd_info, "", "Show the daemon's figures." },
	{ "metrics", cmd_metrics, "", "Print the metrics in the Prometheus text format." },
	{ "reopen-logs", cmd_reopen_logs, "", "Reopen log files (after rotation)." },
	{ NULL, NULL, NULL, NULL },
};
