/*
 * mpctl: the daemon - events, reload, shutdown, info, metrics, reopen-logs
 * (mpctl(1), docs/protocol.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpctl.h"

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
	json_t *params = ctl_params_new(), *result, *msg;
	char *line;
	int rc;

	if (i < argc) {
		json_t *topics = json_array();

		for (; i < argc; i++)
			json_array_append_new(topics, ctl_str(argv[i]));
		json_object_set_new(params, "topics", topics);
	}
	ctl_stream_prepare(ctl);
	rc = ctl_call_take(ctl, "events.subscribe", params, &result);
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
	return ctl_call_say(ctl, "daemon.reopen_logs", NULL, "%slog files reopened", "");
}

const struct ctl_cmd ctl_daemon_cmds[] = {
	{ "events", cmd_events, "[TOPIC...]",
	  "Print events as they happen (topics: process pool object daemon)." },
	{ "reload", cmd_reload, "", "Re-read the configuration and apply the difference." },
	{ "shutdown", cmd_shutdown, "", "Stop every process and the daemon." },
	{ "info", cmd_info, "", "Show the daemon's figures." },
	{ "metrics", cmd_metrics, "", "Print the metrics in the Prometheus text format." },
	{ "reopen-logs", cmd_reopen_logs, "", "Reopen log files (after rotation)." },
	{ NULL, NULL, NULL, NULL },
};
