/*
 * mpctl: pools and their tasks - scale, pools, pool add/remove/list, map,
 * submit, wait, task-status (mpctl(1), docs/protocol.md).
 */
#include <stdio.h>
#include <string.h>

#include "mpctl.h"

/* scale POOL N */
static int cmd_scale(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), rc;
	json_t *params, *result;
	long long n;

	if (argc - i != 2)
		ctl_usage_error(cmd, "scale takes a pool and a number of processes");
	n = ctl_parse_count(cmd, "number of processes", argv[i + 1]); /* exits if bad */
	params = ctl_params_new();
	json_object_set_new(params, "pool", ctl_str(argv[i]));
	json_object_set_new(params, "processes", json_integer(n));
	rc = ctl_call_take(ctl, "pool.scale", params, &result);
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
		return ctl_call_say(ctl, "pool.remove", params, "removed pool %s", argv[i + 1]);
	}
	if (strcmp(op, "add") != 0)
		ctl_usage_error(cmd, "unknown pool operation '%s' (add, remove or list)", op);
	if (n < 2)
		ctl_usage_error(cmd, "pool add takes a pool and its KEY=VALUE settings");
	params = ctl_params_new();
	json_object_set_new(params, "pool", ctl_str(argv[i + 1]));
	for (int k = i + 2; k < argc; k++) {
		size_t klen = strcspn(argv[k], "=");

		if (klen == 0 || !argv[k][klen]) {
			json_decref(params); /* exits: nothing left for the leak checker */
			ctl_usage_error(cmd, "pool add wants KEY=VALUE, not '%s'", argv[k]);
		}
		json_object_setn_new(params, argv[k], klen, ctl_arg(argv[k] + klen + 1));
	}
	rc = ctl_call_take(ctl, "pool.add", params, &result);
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
	params = ctl_params_new();
	json_object_set_new(params, "pool", ctl_str(pool));
	json_object_set_new(params, "items", items);
	rc = ctl_call_take(ctl, "pool.map", params, &result);
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
	params = ctl_params_new();
	json_object_set_new(params, "pool", ctl_str(argv[i]));
	json_object_set_new(params, "item", ctl_arg(argv[i + 1]));
	rc = ctl_call_take(ctl, "pool.submit", params, &result);
	if (rc != CTL_EXIT_OK)
		return rc;
	print_member(ctl, result, "task");
	json_decref(result);
	return CTL_EXIT_OK;
}

/* wait TASK [--timeout S]: print the task's result. */
static int cmd_wait(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *params = ctl_params_new(), *result;
	const char *task = ctl_parse_one_with_timeout(cmd, argc, argv, params);
	int rc;

	json_object_set_new(params, "task", ctl_arg(task));
	rc = ctl_call_take(ctl, "task.wait", params, &result);
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
	params = ctl_params_new();
	json_object_set_new(params, "task", ctl_arg(argv[i]));
	rc = ctl_call_print_fields(ctl, "task.status", params);
	json_decref(params);
	return rc;
}

const struct ctl_cmd ctl_pool_cmds[] = {
	{ "scale", cmd_scale, "POOL N", "Set the number of processes of a pool." },
	{ "pools", cmd_pools, "", "Show the pools as a table." },
	{ "pool", cmd_pool, "add POOL KEY=VALUE... | remove POOL | list",
	  "Define a pool at run time (keys as in a config section), remove one, list them." },
	{ "map", cmd_map, "[--stream|--unordered] POOL ITEM...",
	  "Run items on a task pool; one result per line." },
	{ "submit", cmd_submit, "POOL ITEM", "Submit one task; print its id." },
	{ "wait", cmd_wait, "TASK [--timeout S]", "Wait for a task; print its result." },
	{ "task-status", cmd_task_status, "TASK", "Show the state of a task." },
	{ NULL, NULL, NULL, NULL },
};
