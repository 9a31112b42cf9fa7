/*
 * mpctl: shared-state commands (mpctl(1), docs/state.md).
 *
 *   mpctl TYPE OP NAME [ARGS]  ->  {"cmd": "TYPE.OP", "name": NAME, ...}
 *
 * Positional ARGS are mapped to the op's parameters by the table below; an
 * op that is not in the table takes no arguments (len, keys, clear, set,
 * release, ...), so a new argument-less op needs no change here. Values are
 * JSON when they parse as JSON, else strings; dict keys are always strings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpctl.h"

enum arg_kind {
	ARG_JSON, /* JSON if it parses, else a string */
	ARG_STR,  /* a string as typed */
};

struct state_param {
	const char *key;
	enum arg_kind kind;
};

/* The positional arguments of one TYPE.OP. */
struct state_op {
	const char *type;
	const char *op;
	unsigned nrequired; /* the rest of params is optional, in order */
	struct state_param params[3];
	const char *usage;
	/* The error code the op answers when its timeout expired (exit 4). */
	const char *timeout_code;
};

/* clang-format off: it would put the braces of a macro on lines of their own */
#define P(k)                \
	{                   \
		k, ARG_JSON \
	}
#define S(k)               \
	{                  \
		k, ARG_STR \
	}
/* clang-format on */

static const struct state_op state_ops[] = {
	{ "dict", "get", 1, { S("key"), P("default") }, "KEY [DEFAULT]", NULL },
	{ "dict", "set", 2, { S("key"), P("value") }, "KEY VALUE", NULL },
	{ "dict", "del", 1, { S("key") }, "KEY", NULL },
	{ "dict", "has", 1, { S("key") }, "KEY", NULL },
	{ "dict", "pop", 1, { S("key"), P("default") }, "KEY [DEFAULT]", NULL },
	{ "dict", "setdefault", 2, { S("key"), P("value") }, "KEY VALUE", NULL },
	{ "dict", "incr", 1, { S("key"), P("by") }, "KEY [BY]", NULL },
	{ "dict", "cas", 3, { S("key"), P("expect"), P("value") }, "KEY EXPECT VALUE", NULL },
	{ "dict", "update", 1, { P("items") }, "JSON-OBJECT", NULL },
	{ "list", "append", 1, { P("value") }, "VALUE", NULL },
	{ "list", "extend", 1, { P("values") }, "JSON-ARRAY", NULL },
	{ "list", "insert", 2, { P("index"), P("value") }, "INDEX VALUE", NULL },
	{ "list", "get", 1, { P("index") }, "INDEX", NULL },
	{ "list", "set", 2, { P("index"), P("value") }, "INDEX VALUE", NULL },
	{ "list", "pop", 0, { P("index") }, "[INDEX]", NULL },
	{ "list", "remove", 1, { P("value") }, "VALUE", NULL },
	{ "list", "index", 1, { P("value") }, "VALUE", NULL },
	{ "list", "count", 1, { P("value") }, "VALUE", NULL },
	{ "list", "slice", 0, { P("start"), P("stop") }, "[START [STOP]]", NULL },
	{ "value", "set", 1, { P("value") }, "VALUE", NULL },
	{ "value", "add", 0, { P("by") }, "[BY]", NULL },
	{ "value", "cas", 2, { P("expect"), P("value") }, "EXPECT VALUE", NULL },
	{ "array", "get", 1, { P("index") }, "INDEX", NULL },
	{ "array", "set", 2, { P("index"), P("value") }, "INDEX VALUE", NULL },
	{ "array", "add", 1, { P("index"), P("by") }, "INDEX [BY]", NULL },
	{ "array", "slice", 0, { P("start"), P("stop") }, "[START [STOP]]", NULL },
	{ "queue", "put", 1, { P("item"), P("timeout") }, "ITEM [TIMEOUT]", "full" },
	{ "queue", "get", 0, { P("timeout") }, "[TIMEOUT]", "empty" },
	{ "queue", "join", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "event", "wait", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "lock", "acquire", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "rlock", "acquire", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "semaphore", "acquire", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "condition", "acquire", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "condition", "wait", 0, { P("timeout") }, "[TIMEOUT]", NULL },
	{ "condition", "notify", 0, { P("n") }, "[N]", NULL },
	{ "barrier", "wait", 0, { P("timeout") }, "[TIMEOUT]", "broken" },
};

#undef P
#undef S

#define NPARAMS(o) (sizeof((o)->params) / sizeof((o)->params[0]))

/* The table entry of type.op, or NULL (an op without arguments). */
static const struct state_op *state_op_find(const char *type, const char *op)
{
	size_t i;

	for (i = 0; i < sizeof(state_ops) / sizeof(state_ops[0]); i++)
		if (strcmp(state_ops[i].type, type) == 0 && strcmp(state_ops[i].op, op) == 0)
			return &state_ops[i];
	return NULL;
}

/* The number of parameters an op can take. */
static unsigned state_op_max(const struct state_op *o)
{
	unsigned n = 0;

	while (n < NPARAMS(o) && o->params[n].key)
		n++;
	return n;
}

static int cmd_state(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv);

bool ctl_is_state_cmd(const struct ctl_cmd *cmd)
{
	return cmd->run == cmd_state;
}

/* TYPE -h, help TYPE: the ops that take arguments. */
void ctl_state_help(FILE *f, const struct ctl_cmd *cmd)
{
	size_t i;

	for (i = 0; i < sizeof(state_ops) / sizeof(state_ops[0]); i++)
		if (strcmp(state_ops[i].type, cmd->name) == 0)
			fprintf(f, "  %s %s NAME %s\n", cmd->name, state_ops[i].op,
				state_ops[i].usage);
	fputs("Other ops take no arguments (see mpctl(1)).\n", f);
}

/*
 * After unknown_command for TYPE.OP: list TYPE's operations as the daemon's
 * help gives them (the daemon's tables are the list), with the closest one.
 */
static void state_list_ops(struct ctl *ctl, const char *type, const char *op)
{
	struct ctl_suggest s = { .word = op };
	json_t *all = NULL, *c;
	size_t n = strlen(type), i;
	char *names[64];
	size_t k = 0;

	if (ctl_call_quiet(ctl, "help", NULL, &all) != CTL_EXIT_OK)
		return;
	json_array_foreach(all, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));

		if (k < 64 && name && strncmp(name, type, n) == 0 && name[n] == '.') {
			char *d = strdup(name + n + 1);

			for (char *p = d; p && *p; p++)
				if (*p == '_')
					*p = '-'; /* mpctl's spelling: task-done */
			if (d)
				names[k++] = d;
		}
	}
	if (k) {
		fprintf(stderr, "mpctl: %s operations:", type);
		for (i = 0; i < k; i++) {
			fprintf(stderr, " %s", names[i]);
			ctl_suggest_consider(&s, names[i]);
		}
		fputc('\n', stderr);
		if (s.best)
			fprintf(stderr, "mpctl: did you mean '%s %s'?\n", type, s.best);
	}
	for (i = 0; i < k; i++)
		free(names[i]);
	json_decref(all);
}

/*
 * A blocking op whose timeout expired answers a result, not an error;
 * mpctl still exits 4 for it so that scripts can tell.
 */
static bool state_timed_out(const char *op, const json_t *result)
{
	if (strcmp(op, "wait") == 0)
		return json_is_false(json_object_get(result, "set"));
	if (strcmp(op, "acquire") == 0)
		return json_is_false(json_object_get(result, "acquired"));
	return false;
}

/*
 * A blocking op whose timeout expired answering its timeout error (queue
 * get: empty, put: full, barrier wait: broken) exits 4 as well. Only with
 * a timeout argument; `broken` only when this wait's timeout broke the
 * barrier (the daemon says "(timeout)"): a barrier broken before answers
 * at once, an error.
 */
static bool state_error_timed_out(const struct state_op *o, json_t *params,
				  const struct mpsup_error *err)
{
	static const char mark[] = "(timeout)";
	size_t len = strlen(err->message);

	if (!o || !o->timeout_code || !json_is_number(json_object_get(params, "timeout")) ||
	    strcmp(err->code_name, o->timeout_code) != 0)
		return false;
	return strcmp(err->code_name, "broken") != 0 ||
	       (len >= sizeof(mark) - 1 &&
		strcmp(err->message + len - (sizeof(mark) - 1), mark) == 0);
}

/* TYPE OP NAME [ARGS] */
static int cmd_state(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	const struct state_op *o;
	json_t *params, *result;
	struct mpsup_error err;
	char wire[64], op[48];
	unsigned nargs, k;
	size_t i;
	int rc;

	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		ctl_cmd_help(stdout, cmd);
		return CTL_EXIT_OK;
	}
	if (argc < 3)
		ctl_usage_error(cmd, "%s needs an operation and an object name", cmd->name);
	if (strlen(argv[1]) >= sizeof(op))
		ctl_usage_error(cmd, "unknown operation '%s'", argv[1]);
	/* task-done, is-set: the shell-friendly spelling of task_done, is_set */
	for (i = 0; argv[1][i]; i++)
		op[i] = argv[1][i] == '-' ? '_' : argv[1][i];
	op[i] = '\0';
	o = state_op_find(cmd->name, op);
	if (argc > 3 && strcmp(argv[3], "--") == 0) {
		/* TYPE OP NAME -- ARGS: what follows is data, even "-j" */
		argv[3] = argv[2];
		argv[2] = argv[1];
		argv++;
		argc--;
	}
	nargs = (unsigned)(argc - 3);
	if (!o && nargs > 0)
		ctl_usage_error(cmd, "%s %s takes no arguments", cmd->name, op);
	if (o && (nargs < o->nrequired || nargs > state_op_max(o)))
		ctl_usage_error(cmd, "%s %s wants NAME %s", cmd->name, op, o->usage);

	params = json_object();
	json_object_set_new(params, "name", ctl_str(argv[2]));
	for (k = 0; k < nargs; k++) {
		const char *text = argv[3 + k];

		json_object_set_new(params, o->params[k].key,
				    o->params[k].kind == ARG_STR ? ctl_str(text) : ctl_arg(text));
	}
	snprintf(wire, sizeof(wire), "%s.%s", cmd->name, op);
	rc = ctl_call_code(ctl, wire, params, &result, &err);
	if (rc == CTL_EXIT_ERROR && state_error_timed_out(o, params, &err))
		rc = CTL_EXIT_TIMEOUT;
	if (rc == CTL_EXIT_ERROR && strcmp(err.code_name, "unknown_command") == 0)
		state_list_ops(ctl, cmd->name, argv[1]);
	json_decref(params);
	if (rc != CTL_EXIT_OK)
		return rc;
	ctl_print_result(ctl, result);
	if (state_timed_out(op, result))
		rc = CTL_EXIT_TIMEOUT;
	json_decref(result);
	return rc;
}

static const struct ctl_column object_cols[] = {
	{ "name", "NAME", NULL, NULL },
	{ "type", "TYPE", NULL, NULL },
	{ "size", "SIZE", NULL, NULL },
};

/* objects: the table of shared objects. */
static int cmd_objects(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *result;
	int rc;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "objects takes no arguments");
	rc = ctl_call(ctl, "obj.list", NULL, &result);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (!ctl->json && json_is_array(result) && json_is_object(json_array_get(result, 0)))
		ctl_print_table(result, object_cols, sizeof(object_cols) / sizeof(object_cols[0]));
	else if (ctl->json || !json_is_array(result) || json_array_size(result) > 0)
		ctl_print_result(ctl, result);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* obj get|delete NAME, obj create NAME TYPE [OPTIONS-JSON], obj list */
static int cmd_obj(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), n = argc - i;
	const char *op;
	json_t *params, *result;
	int rc;

	if (n < 1)
		ctl_usage_error(cmd, "obj needs an operation");
	op = argv[i];
	if (strcmp(op, "list") == 0) {
		if (n != 1)
			ctl_usage_error(cmd, "obj list takes no arguments");
		return cmd_objects(ctl, cmd, 1, argv + i);
	}
	params = json_object();
	if (strcmp(op, "get") == 0 || strcmp(op, "delete") == 0) {
		if (n != 2)
			ctl_usage_error(cmd, "obj %s takes one object name", op);
		json_object_set_new(params, "name", ctl_str(argv[i + 1]));
	} else if (strcmp(op, "create") == 0) {
		json_t *options;

		if (n != 3 && n != 4)
			ctl_usage_error(cmd, "obj create takes NAME TYPE [OPTIONS-JSON]");
		if (n == 4) {
			options = json_loads(argv[i + 3], 0, NULL);
			if (!json_is_object(options))
				ctl_usage_error(cmd, "options must be a JSON object, not '%s'",
						argv[i + 3]);
			json_object_update(params, options);
			json_decref(options);
		}
		json_object_set_new(params, "name", ctl_str(argv[i + 1]));
		json_object_set_new(params, "type", ctl_str(argv[i + 2]));
	} else {
		ctl_usage_error(cmd, "unknown obj operation '%s'", op);
	}
	if (strcmp(op, "get") == 0) {
		rc = ctl_call_print(ctl, "obj.get", params);
		json_decref(params);
		return rc;
	}
	rc = ctl_call(ctl, strcmp(op, "delete") == 0 ? "obj.delete" : "obj.create", params,
		      &result);
	if (rc == CTL_EXIT_OK && ctl->json)
		ctl_print_result(ctl, result);
	else if (rc == CTL_EXIT_OK && strcmp(op, "delete") == 0)
		printf("deleted %s\n", argv[i + 1]);
	else if (rc == CTL_EXIT_OK && json_is_true(json_object_get(result, "created")))
		printf("created %s %s\n", argv[i + 2], argv[i + 1]);
	else if (rc == CTL_EXIT_OK)
		printf("%s %s exists already with these options\n", argv[i + 2], argv[i + 1]);
	if (rc == CTL_EXIT_OK)
		json_decref(result);
	json_decref(params);
	return rc;
}

#define STATE_USAGE "OP NAME [ARGS...]"

const struct ctl_cmd ctl_state_cmds[] = {
	{ "dict", cmd_state, STATE_USAGE,
	  "A shared dict (get set del has keys values items len update pop setdefault clear incr "
	  "cas)." },
	{ "list", cmd_state, STATE_USAGE,
	  "A shared list (append extend insert get set pop remove index count len slice clear)." },
	{ "value", cmd_state, STATE_USAGE, "A shared value (get set add cas)." },
	{ "array", cmd_state, STATE_USAGE, "A fixed-length typed array (get set add slice len)." },
	{ "queue", cmd_state, STATE_USAGE,
	  "A FIFO queue (put get size empty full task-done join)." },
	{ "event", cmd_state, STATE_USAGE, "An event (set clear is-set wait)." },
	{ "lock", cmd_state, STATE_USAGE,
	  "A lock, held by this mpctl until it exits (acquire release)." },
	{ "rlock", cmd_state, STATE_USAGE, "A re-entrant lock (acquire release)." },
	{ "semaphore", cmd_state, STATE_USAGE, "A bounded semaphore (acquire release)." },
	{ "barrier", cmd_state, STATE_USAGE, "A barrier (wait reset)." },
	{ "condition", cmd_state, STATE_USAGE,
	  "A condition (acquire release wait notify notify-all)." },
	{ "objects", cmd_objects, "", "Show the shared objects as a table." },
	{ "obj", cmd_obj, "get|delete NAME | create NAME TYPE [OPTIONS-JSON] | list",
	  "Read, delete or create a shared object of any type." },
	{ NULL, NULL, NULL, NULL },
};
