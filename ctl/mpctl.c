/*
 * mpctl: main, global options, the subcommand dispatcher, the meta commands
 * (hello, ping, call, help) and the helpers shared by every subcommand:
 * connecting, calling, argument parsing and output.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpctl.h"

static const char *const ctl_tables_names[] = {
	"Meta", "Processes", "Pools and tasks", "The daemon", "Shared state",
};

static const struct ctl_cmd *const ctl_tables[] = {
	ctl_meta_cmds, ctl_proc_cmds, ctl_pool_cmds, ctl_daemon_cmds, ctl_state_cmds,
};

#define NTABLES (sizeof(ctl_tables) / sizeof(ctl_tables[0]))

/*
 * Connection and calls.
 */

/* Say where mpctl looked and how to look elsewhere; exit 3. */
static _Noreturn void ctl_unreachable(const struct ctl *ctl, int err)
{
	fflush(stdout);
	fprintf(stderr, "mpctl: cannot reach mpsupd at %s: %s\n", ctl->socket, strerror(err));
	fprintf(stderr,
		"mpctl: is mpsupd running? That socket is %s; name another with "
		"-s SOCKET or MPSUP_SOCKET.\n",
		ctl->socket_from ? ctl->socket_from : "the default");
	exit(CTL_EXIT_UNREACHABLE);
}

struct mpsup_client *ctl_connect(struct ctl *ctl)
{
	int r;

	if (ctl->client)
		return ctl->client;
	r = mpsup_connect(ctl->socket, &ctl->client);
	if (r < 0) {
		ctl->client = NULL;
		ctl_unreachable(ctl, -r);
	}
	if (ctl->timeout >= 0)
		mpsup_set_timeout(ctl->client, ctl->timeout);
	return ctl->client;
}

_Noreturn void ctl_transport_fail(struct ctl *ctl, int err)
{
	fflush(stdout);
	if (err == -ETIMEDOUT) {
		fprintf(stderr, "mpctl: timeout: no answer from mpsupd at %s within %gs\n",
			ctl->socket, ctl->timeout);
		exit(CTL_EXIT_TIMEOUT);
	}
	/* It was reached: the hint about choosing a socket would mislead. */
	fprintf(stderr, "mpctl: cannot reach mpsupd at %s: %s\n", ctl->socket,
		strerror(err < 0 ? -err : EIO));
	exit(CTL_EXIT_UNREACHABLE);
}

int ctl_report_error(const struct mpsup_error *err)
{
	const char *code = err->code_name[0] ? err->code_name : mpsup_err_name(err->code);

	fprintf(stderr, "mpctl: %s: %s\n", code ? code : "internal", err->message);
	if (err->code == MPSUP_E_TIMEOUT || (code && strcmp(code, "timeout") == 0))
		return CTL_EXIT_TIMEOUT;
	return CTL_EXIT_ERROR;
}

int ctl_call_code(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result,
		  struct mpsup_error *ret_err)
{
	return ctl_call_fds(ctl, cmd, params, NULL, 0, ret_result, ret_err);
}

int ctl_call_fds(struct ctl *ctl, const char *cmd, json_t *params, const int *fds, size_t n_fds,
		 json_t **ret_result, struct mpsup_error *ret_err)
{
	struct mpsup_error local = { 0 }, *err = ret_err ? ret_err : &local;
	json_t *result = NULL;
	int r;

	memset(err, 0, sizeof(*err));
	r = mpsup_call_with_fds(ctl_connect(ctl), cmd, params, fds, n_fds, &result, err);
	if (r < 0)
		ctl_transport_fail(ctl, r);
	if (r > 0) {
		const char *name = err->code_name[0] ? err->code_name : mpsup_err_name(err->code);

		if (!err->code_name[0])
			snprintf(err->code_name, sizeof(err->code_name), "%s",
				 name ? name : "internal");
		return ctl_report_error(err);
	}
	*ret_result = result ? result : json_null();
	return CTL_EXIT_OK;
}

int ctl_call_quiet(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result)
{
	struct mpsup_error err;
	json_t *result = NULL;
	int r;

	memset(&err, 0, sizeof(err));
	r = mpsup_call(ctl_connect(ctl), cmd, params, &result, &err);
	if (r < 0)
		ctl_transport_fail(ctl, r);
	if (r > 0)
		return CTL_EXIT_ERROR;
	*ret_result = result ? result : json_null();
	return CTL_EXIT_OK;
}

int ctl_call(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result)
{
	return ctl_call_code(ctl, cmd, params, ret_result, NULL);
}

int ctl_call_take(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result)
{
	int rc = ctl_call(ctl, cmd, params, ret_result);

	json_decref(params);
	return rc;
}

int ctl_call_print(struct ctl *ctl, const char *cmd, json_t *params)
{
	json_t *result;
	int rc = ctl_call(ctl, cmd, params, &result);

	if (rc != CTL_EXIT_OK)
		return rc;
	ctl_print_result(ctl, result);
	json_decref(result);
	return CTL_EXIT_OK;
}

int ctl_call_print_fields(struct ctl *ctl, const char *cmd, json_t *params)
{
	json_t *result;
	int rc = ctl_call(ctl, cmd, params, &result);

	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json || !json_is_object(result))
		ctl_print_result(ctl, result);
	else
		ctl_print_fields(result);
	json_decref(result);
	return CTL_EXIT_OK;
}

char *ctl_stream_next_line(struct ctl *ctl)
{
	char *line = NULL;
	size_t len = 0;
	int r = mpsup_recv_line(ctl_connect(ctl), &line, &len);

	if (r == -ECONNRESET || r == -EPIPE || (r >= 0 && !line))
		return NULL;
	if (r < 0)
		ctl_transport_fail(ctl, r);
	return line;
}

json_t *ctl_stream_next(struct ctl *ctl)
{
	json_t *msg = NULL;
	int r = mpsup_stream_next(ctl_connect(ctl), &msg);

	if (r == -ECONNRESET || r == -EPIPE)
		return NULL;
	if (r < 0)
		ctl_transport_fail(ctl, r);
	return msg;
}

/* SIGINT/SIGTERM during a stream: the user is done watching. */
static void ctl_stream_stop(int sig)
{
	(void)sig;
	_exit(CTL_EXIT_OK);
}

void ctl_stream_prepare(struct ctl *ctl)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ctl_stream_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	(void)ctl;
}

void ctl_stream_unbounded(struct ctl *ctl)
{
	mpsup_set_timeout(ctl_connect(ctl), -1);
}

bool ctl_stdout_gone(void)
{
	return fflush(stdout) == EOF || ferror(stdout);
}

/*
 * Arguments.
 */

/* Exit 2 for an argument that is not valid UTF-8 (the protocol is UTF-8). */
static _Noreturn void ctl_bad_utf8(const char *text)
{
	fprintf(stderr, "mpctl: argument is not valid UTF-8: %s\n", text);
	exit(CTL_EXIT_USAGE);
}

json_t *ctl_arg(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);

	if (v)
		return v;
	v = json_string(text);
	if (!v)
		ctl_bad_utf8(text);
	return v;
}

json_t *ctl_str(const char *text)
{
	json_t *v = json_string(text);

	if (!v)
		ctl_bad_utf8(text);
	return v;
}

/* text as a number of seconds (finite, >= 0) into *ret; false if it is not one. */
static bool seconds_parse(const char *text, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || *end || !isfinite(v) || v < 0)
		return false;
	*ret = v;
	return true;
}

double ctl_parse_seconds(const struct ctl_cmd *cmd, const char *text)
{
	double v;

	if (!seconds_parse(text, &v))
		ctl_usage_error(cmd, "bad number of seconds: '%s'", text);
	return v;
}

long long ctl_parse_count(const struct ctl_cmd *cmd, const char *what, const char *text)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || end == text || *end || v < 0)
		ctl_usage_error(cmd, "bad %s: '%s'", what, text);
	return v;
}

/* The optimal-string-alignment distance of a and b (typos: one letter
 * wrong, missing, extra, or two swapped each count 1). */
static size_t ctl_distance(const char *a, const char *b)
{
	enum { MAXLEN = 40 };
	size_t la = strlen(a), lb = strlen(b), d[MAXLEN + 1][MAXLEN + 1];

	if (la > MAXLEN || lb > MAXLEN)
		return (size_t)-1;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1], v = d[i - 1][j - 1] + cost;

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

void ctl_suggest_consider(struct ctl_suggest *s, const char *cand)
{
	size_t d = ctl_distance(s->word, cand), len = strlen(s->word);

	/* At most 2 edits, and fewer than the word has letters. */
	if (d <= 2 && d < len && (!s->best || d < s->dist)) {
		s->best = cand;
		s->dist = d;
	}
}

/* The mpctl command closest to name, or NULL. */
static const char *ctl_suggest_cmd(const char *name)
{
	struct ctl_suggest s = { .word = name };

	for (size_t t = 0; t < NTABLES; t++)
		for (const struct ctl_cmd *c = ctl_tables[t]; c->name; c++)
			ctl_suggest_consider(&s, c->name);
	return s.best;
}

/* Exit 2 for an unknown command, with the closest one if any. */
static _Noreturn void ctl_unknown_cmd(const struct ctl_cmd *cmd, const char *name)
{
	const char *best = ctl_suggest_cmd(name);

	if (best)
		ctl_usage_error(cmd, "unknown command '%s'; did you mean '%s'?", name, best);
	ctl_usage_error(cmd, "unknown command '%s'", name);
}

void ctl_cmd_usage(FILE *f, const struct ctl_cmd *cmd)
{
	fprintf(f, "usage: mpctl [-s SOCKET] [--json] %s%s%s\n", cmd->name,
		cmd->usage[0] ? " " : "", cmd->usage);
}

/* The global usage summary (without the command list). */
static void ctl_short_usage(FILE *f)
{
	fputs("usage: mpctl [-s SOCKET] [--json] [-t SECONDS] COMMAND [ARGS...]\n"
	      "       mpctl -h | --help | --version\n",
	      f);
}

_Noreturn void ctl_usage_error(const struct ctl_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("mpctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd) {
		ctl_cmd_usage(stderr, cmd);
	} else {
		ctl_short_usage(stderr);
		fputs("Run 'mpctl --help' for the list of commands.\n", stderr);
	}
	exit(CTL_EXIT_USAGE);
}

void ctl_cmd_help(FILE *f, const struct ctl_cmd *cmd)
{
	ctl_cmd_usage(f, cmd);
	fprintf(f, "%s\n", cmd->summary);
	if (ctl_is_state_cmd(cmd))
		ctl_state_help(f, cmd);
}

int ctl_plain_args(const struct ctl_cmd *cmd, int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		ctl_cmd_help(stdout, cmd);
		exit(CTL_EXIT_OK);
	}
	if (argc > 1 && strcmp(argv[1], "--") == 0)
		return 2;
	return 1;
}

/*
 * What the subcommands share: options, params, calls.
 */

/* Report a getopt failure of a subcommand (c is '?' or ':'); exits 2. */
_Noreturn void ctl_opt_error(const struct ctl_cmd *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];

	if (c == ':')
		ctl_usage_error(cmd, "option '%s' needs an argument", arg);
	if (optopt)
		ctl_usage_error(cmd, "unknown option '-%c'", optopt);
	ctl_usage_error(cmd, "unknown option '%s'", arg);
}

/* -h/--help of a subcommand with options. */
_Noreturn void ctl_opt_help(const struct ctl_cmd *cmd)
{
	ctl_cmd_help(stdout, cmd);
	exit(CTL_EXIT_OK);
}

/* A new params object; exits when out of memory. */
json_t *ctl_params_new(void)
{
	json_t *p = json_object();

	if (!p) {
		fputs("mpctl: out of memory\n", stderr);
		exit(CTL_EXIT_ERROR);
	}
	return p;
}

/* Call, then say what was done (the result with --json), drop params. */
int ctl_call_say(struct ctl *ctl, const char *cmd, json_t *params, const char *fmt, const char *arg)
{
	json_t *result;
	int rc = ctl_call_take(ctl, cmd, params, &result);

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
 * Parse "ARG... [--timeout S]" of join and wait: one positional argument
 * (returned) and an optional timeout (set in params).
 */
const char *ctl_parse_one_with_timeout(const struct ctl_cmd *cmd, int argc, char **argv,
				       json_t *params)
{
	const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	double timeout = -1;

	/* The errors exit: params goes first (nothing left for the leak checker). */
	optind = 0;
	while ((c = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
		if (c != 't')
			json_decref(params);
		if (c == 'h')
			ctl_opt_help(cmd);
		if (c != 't')
			ctl_opt_error(cmd, c, argv);
		if (!seconds_parse(optarg, &timeout)) {
			json_decref(params);
			ctl_parse_seconds(cmd, optarg); /* says why and exits */
		}
	}
	if (argc - optind != 1) {
		json_decref(params);
		ctl_usage_error(cmd, "%s takes one argument", cmd->name);
	}
	if (timeout >= 0)
		json_object_set_new(params, "timeout", json_real(timeout));
	return argv[optind];
}

/*
 * Meta commands.
 */

/* hello: who is answering, human-readably. */
static int cmd_hello(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "hello takes no arguments");
	return ctl_call_print_fields(ctl, "hello", NULL);
}

/* ping: is the daemon there. */
static int cmd_ping(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	json_t *result;
	int rc;

	if (ctl_plain_args(cmd, argc, argv) != argc)
		ctl_usage_error(cmd, "ping takes no arguments");
	rc = ctl_call(ctl, "ping", NULL, &result);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json)
		ctl_print_result(ctl, result);
	else if (json_is_null(result) || json_is_true(result))
		puts("pong");
	else
		ctl_print_result(ctl, result);
	json_decref(result);
	return CTL_EXIT_OK;
}

/* call: send one raw request line, print the raw response line. */
static int cmd_call(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv);
	struct mpsup_client *c;
	char *buf, *resp = NULL;
	size_t n, len = 0;
	json_t *msg, *err;
	int r, rc = CTL_EXIT_ERROR;

	if (argc - i != 1)
		ctl_usage_error(cmd, "call takes one request (a JSON object)");
	n = strlen(argv[i]);
	if (memchr(argv[i], '\n', n))
		ctl_usage_error(cmd, "the request must be one line");
	buf = malloc(n + 2);
	if (!buf) {
		fputs("mpctl: out of memory\n", stderr);
		return CTL_EXIT_ERROR;
	}
	memcpy(buf, argv[i], n);
	buf[n] = '\n';
	buf[n + 1] = '\0';
	c = ctl_connect(ctl);
	r = mpsup_send_raw(c, buf, n + 1);
	free(buf);
	if (r < 0)
		ctl_transport_fail(ctl, r);
	r = mpsup_recv_line(c, &resp, &len);
	if (r >= 0 && !resp)
		r = -ECONNRESET;
	if (r < 0)
		ctl_transport_fail(ctl, r);
	fwrite(resp, 1, len, stdout);
	putchar('\n');
	msg = json_loadb(resp, len, 0, NULL);
	free(resp);
	if (json_is_true(json_object_get(msg, "ok"))) {
		rc = CTL_EXIT_OK;
	} else {
		err = json_object_get(json_object_get(msg, "error"), "code");
		if (json_is_string(err) && strcmp(json_string_value(err), "timeout") == 0)
			rc = CTL_EXIT_TIMEOUT;
	}
	json_decref(msg);
	return rc;
}

static void ctl_help(FILE *f);

/* Find a subcommand by name in every table. */
static const struct ctl_cmd *ctl_find(const char *name)
{
	size_t t;
	const struct ctl_cmd *c;

	for (t = 0; t < NTABLES; t++)
		for (c = ctl_tables[t]; c->name; c++)
			if (strcmp(c->name, name) == 0)
				return c;
	return NULL;
}

/* Print a protocol command as the daemon's help describes it. */
static void print_proto_help(const json_t *h)
{
	const json_t *flags = json_object_get(h, "flags"), *params = json_object_get(h, "params");
	const json_t *v;
	size_t i;

	printf("%s (protocol command; role %s", json_string_value(json_object_get(h, "name")),
	       json_string_value(json_object_get(h, "role")));
	json_array_foreach(flags, i, v)
		printf(", %s", json_string_value(v));
	printf(")\n");
	if (json_array_size(params) == 0)
		puts("  no parameters");
	json_array_foreach(params, i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));

		printf("  %-10s %s%s\n", name ? name : "?",
		       json_string_value(json_object_get(v, "type")),
		       json_is_true(json_object_get(v, "optional")) ? ", optional" : "");
	}
	if (json_is_false(json_object_get(h, "allowed")))
		puts("  (your role may not use it)");
	printf("Send it with: mpctl call '{\"cmd\":\"%s\", ...}'\n",
	       json_string_value(json_object_get(h, "name")));
}

/* help [COMMAND]: the list of commands, one command's full usage, or (for
 * a protocol command such as dict.get) the daemon's description of it. */
static int cmd_help(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv)
{
	int i = ctl_plain_args(cmd, argc, argv), rc;
	const struct ctl_cmd *c;
	json_t *params, *result;

	if (argc - i > 1)
		ctl_usage_error(cmd, "help takes at most one command");
	if (argc - i == 0) {
		ctl_help(stdout);
		return CTL_EXIT_OK;
	}
	c = ctl_find(argv[i]);
	if (c) {
		ctl_cmd_help(stdout, c);
		return CTL_EXIT_OK;
	}
	if (!strchr(argv[i], '.'))
		ctl_unknown_cmd(cmd, argv[i]);
	params = json_pack("{s:o}", "command", ctl_str(argv[i]));
	rc = ctl_call_take(ctl, "help", params, &result);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json)
		ctl_print_result(ctl, result);
	else
		print_proto_help(result);
	json_decref(result);
	return CTL_EXIT_OK;
}

const struct ctl_cmd ctl_meta_cmds[] = {
	{ "hello", cmd_hello, "", "Show the daemon's name, version, protocol, pid and uptime." },
	{ "ping", cmd_ping, "", "Check that the daemon answers." },
	{ "call", cmd_call, "JSON", "Send one raw request line and print the raw response line." },
	{ "help", cmd_help, "[COMMAND | PROTOCOL.COMMAND]",
	  "Show the list of commands, one command's usage, or a protocol command (dict.get)." },
	{ NULL, NULL, NULL, NULL },
};

/* The full help text: options and every command's usage. */
static void ctl_help(FILE *f)
{
	size_t t;
	const struct ctl_cmd *c;

	ctl_short_usage(f);
	fputs("\nOptions:\n"
	      "  -s, --socket PATH    the daemon's socket (else $MPSUP_SOCKET, "
	      "else " MPSUP_DEFAULT_SOCKET ")\n"
	      "  -j, --json           print the exact result JSON\n"
	      "  -t, --timeout SECS   give up (exit 4) when the daemon does not answer in time\n"
	      "  -h, --help           show this help\n"
	      "      --version        show the version\n",
	      f);
	for (t = 0; t < NTABLES; t++) {
		fprintf(f, "\n%s:\n", ctl_tables_names[t]);
		for (c = ctl_tables[t]; c->name; c++)
			fprintf(f, "  %s%s%s\n", c->name, c->usage[0] ? " " : "", c->usage);
	}
	fputs("\nGlobal options may also follow the command (before a '--'). 'mpctl help COMMAND'\n"
	      "shows one command; 'mpctl help dict.get' asks the daemon about a protocol command.\n"
	      "Arguments that parse as JSON are JSON (1, true, {\"a\":1}); anything else is a\n"
	      "string. Exit status: 0 success, 1 the daemon answered an error, 2 usage error,\n"
	      "3 cannot reach the daemon, 4 timeout. See mpctl(1).\n",
	      f);
}

/* Whether arg is opt or "opt=VALUE"; *ret_value: the VALUE or NULL. */
static bool ctl_long_opt(const char *arg, const char *opt, const char **ret_value)
{
	size_t n = strlen(opt);

	if (strncmp(arg, opt, n) != 0 || (arg[n] && arg[n] != '='))
		return false;
	*ret_value = arg[n] ? arg + n + 1 : NULL;
	return true;
}

/* run's options that take a value: the value is not its command yet. */
static bool ctl_run_value_opt(const char *arg)
{
	static const char *const opts[] = { "-n", "--name",  "-e", "--env",  "-C", "--cwd",
					    "-i", "--stdin", "-u", "--user", "-g", "--group" };

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(arg, opts[i]) == 0)
			return true;
	return false;
}

/*
 * Take the global options that follow the command (-j/--json, -s/--socket,
 * -t/--timeout) out of argv (argv[0] is the command), up to a "--" and, for
 * run, up to its command line. join and wait keep -t/--timeout: theirs is
 * the wait's; logs keeps -t (timestamps). Returns the new argc.
 */
static int ctl_late_globals(struct ctl *ctl, const struct ctl_cmd *cmd, const char **socket_opt,
			    int argc, char **argv)
{
	bool run = strcmp(cmd->name, "run") == 0;
	bool own_timeout = strcmp(cmd->name, "join") == 0 || strcmp(cmd->name, "wait") == 0;
	bool own_t = own_timeout || strcmp(cmd->name, "logs") == 0;
	int in = 1, out = 1;

	while (in < argc) {
		const char *a = argv[in], *v = NULL;

		if (strcmp(a, "--") == 0 || (run && a[0] != '-'))
			break;
		if (strcmp(a, "-j") == 0 || strcmp(a, "--json") == 0) {
			ctl->json = true;
			in++;
		} else if (strcmp(a, "-s") == 0 || ctl_long_opt(a, "--socket", &v)) {
			if (!v && in + 1 >= argc)
				ctl_usage_error(NULL, "option '%s' needs an argument", a);
			*socket_opt = v ? v : argv[in + 1];
			in += v ? 1 : 2;
		} else if ((!own_t && strcmp(a, "-t") == 0) ||
			   (!own_timeout && ctl_long_opt(a, "--timeout", &v))) {
			if (!v && in + 1 >= argc)
				ctl_usage_error(NULL, "option '%s' needs an argument", a);
			ctl->timeout = ctl_parse_seconds(NULL, v ? v : argv[in + 1]);
			in += v ? 1 : 2;
		} else {
			/* run: keep an option and its value together */
			int n = run && ctl_run_value_opt(a) && in + 1 < argc ? 2 : 1;

			while (n--)
				argv[out++] = argv[in++];
		}
	}
	while (in < argc)
		argv[out++] = argv[in++];
	argv[out] = NULL;
	return out;
}

/* Flush stdout at exit; a write error is an error (a closed pipe is not). */
static int ctl_close_stdout(int rc)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		if (errno == EPIPE)
			return rc;
		fprintf(stderr, "mpctl: write error: %s\n", strerror(errno));
		return rc ? rc : CTL_EXIT_ERROR;
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },  { "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },       { NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .timeout = -1 };
	const char *socket_opt = NULL;
	const struct ctl_cmd *cmd;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:s:jt:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': socket_opt = optarg; break;
		case 'j': ctl.json = true; break;
		case 't': ctl.timeout = ctl_parse_seconds(NULL, optarg); break;
		case 'h': ctl_help(stdout); return ctl_close_stdout(CTL_EXIT_OK);
		case 'V': puts("mpctl " PACKAGE_VERSION); return ctl_close_stdout(CTL_EXIT_OK);
		case ':': ctl_usage_error(NULL, "option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				ctl_usage_error(NULL, "unknown option '-%c'", optopt);
			ctl_usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		ctl_usage_error(NULL, "no command given");
	cmd = ctl_find(argv[optind]);
	if (!cmd)
		ctl_unknown_cmd(NULL, argv[optind]);
	else
		argc = optind +
		       ctl_late_globals(&ctl, cmd, &socket_opt, argc - optind, argv + optind);
	ctl.socket = mpsup_socket_path(socket_opt);
	if (!ctl.socket)
		ctl.socket = MPSUP_DEFAULT_SOCKET;
	if (socket_opt && *socket_opt)
		ctl.socket_from = "from -s";
	else if (getenv("MPSUP_SOCKET") && *getenv("MPSUP_SOCKET"))
		ctl.socket_from = "from MPSUP_SOCKET";
	/* A daemon that goes away mid-write is exit 3, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	rc = cmd->run(&ctl, cmd, argc - optind, argv + optind);
	ctl.client = mpsup_close(ctl.client);
	return ctl_close_stdout(rc);
}
