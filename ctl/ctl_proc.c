/*
 * mpctl: process commands - status, start/stop/restart/terminate/kill,
 * signal, run, join, is-alive, exitcode, forget, logs (mpctl(1); the protocol
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
	json_t *params, *result;
	int rc;

	if (argc - i > 1)
		ctl_usage_error(cmd, "status takes at most one target");
	params = ctl_params_new(); /* after the usage errors: they exit */
	if (argc - i == 1)
		json_object_set_new(params, "target", ctl_str(argv[i]));
	rc = ctl_call_take(ctl, "status", params, &result);
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
			ctl_opt_help(cmd);
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
			ctl_opt_error(cmd, (c == 'W' || c == 'R' || c == 'M') ? '?' : c, argv);
	}
	if (argc - optind != 1)
		ctl_usage_error(cmd, "%s takes one target", cmd->name);
	if (max_unavailable && !rolling)
		ctl_usage_error(cmd, "--max-unavailable goes with --rolling");
	params = ctl_params_new();
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
	json_t *params, *result, *sigv;

	if (argc - i != 2)
		ctl_usage_error(cmd, "signal takes a signal and a target");
	sig = argv[i];
	if (sig[0] == '-')
		sig++;
	if (!sig[0])
		ctl_usage_error(cmd, "bad signal '%s'", argv[i]);
	/* a bad number exits: before anything is allocated */
	sigv = strspn(sig, "0123456789") == strlen(sig)
		       ? json_integer(ctl_parse_count(cmd, "signal", sig))
		       : ctl_str(sig);
	params = ctl_params_new();
	json_object_set_new(params, "target", ctl_str(argv[i + 1]));
	json_object_set_new(params, "signal", sigv);
	rc = ctl_call_take(ctl, "proc.signal", params, &result);
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
	json_t *params = ctl_params_new(), *joined, *code;
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
	json_t *params = ctl_params_new(), *env = NULL, *args, *result;
	bool attach = false;
	int c, i, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+:hn:de:C:i:u:g:a", opts, NULL)) != -1) {
		const char *eq;

		switch (c) {
		case 'h': json_decref(params); ctl_opt_help(cmd);
		case 'n': json_object_set_new(params, "name", ctl_str(optarg)); break;
		case 'd': json_object_set_new(params, "daemon", json_true()); break;
		case 'e':
			eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				json_decref(params); /* exits: nothing left for the leak checker */
				ctl_usage_error(cmd, "--env wants KEY=VALUE, not '%s'", optarg);
			}
			if (!env) {
				env = ctl_params_new();
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
		default: json_decref(params); ctl_opt_error(cmd, c, argv);
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

/* join TARGET [--timeout S]: print the exit code; 4 if still alive. */
static int cmd_join(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *params = ctl_params_new(), *result;
	const char *target = ctl_parse_one_with_timeout(cmd, argc, argv, params);
	int rc;

	json_object_set_new(params, "target", ctl_str(target));
	rc = ctl_call_take(ctl, "proc.join", params, &result);
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
	json_t *params = ctl_params_new(), *result, *rec, *found = NULL;
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
	params = ctl_params_new();
	json_object_set_new(params, "name", ctl_str(argv[i]));
	return ctl_call_say(ctl, "proc.forget", params, "forgot %s", argv[i]);
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
			ctl_opt_help(cmd);
		else if (c == 'f')
			follow = true;
		else if (c == 't')
			fmt.timestamps = true;
		else if (c == 'n')
			lines = ctl_parse_count(cmd, "number of lines", optarg);
		else
			ctl_opt_error(cmd, c, argv);
	}
	if (argc - optind != 1)
		ctl_usage_error(cmd, "logs takes one target");

	/* One process: print bare lines; several: prefix name and stream. */
	params = ctl_params_new();
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
	rc = ctl_call_take(ctl, "proc.logs", params, &result);
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
	{ NULL, NULL, NULL, NULL },
};
