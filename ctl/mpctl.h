/*
 * mpctl: the operator's CLI for mpsupd. Declarations shared by the ctl
 * files: the run-time context, the subcommand tables and the helpers every
 * subcommand uses (connect, call, argument parsing, output).
 *
 * A subcommand is one entry of a table (name, handler, usage line, one-line
 * summary). mpctl.c holds the meta commands and the dispatcher; ctl_proc.c
 * the process/pool/daemon commands; ctl_state.c the shared-state commands.
 * A handler returns an exit status (enum ctl_exit); helpers that hit a usage
 * error or an unreachable daemon exit the program themselves.
 */
#ifndef MPCTL_H
#define MPCTL_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "mpsup.h"

/* Exit statuses (mpctl(1), EXIT STATUS). */
enum ctl_exit {
	CTL_EXIT_OK = 0,          /* success */
	CTL_EXIT_ERROR = 1,       /* the daemon answered with an error */
	CTL_EXIT_USAGE = 2,       /* usage error */
	CTL_EXIT_UNREACHABLE = 3, /* cannot reach the daemon */
	CTL_EXIT_TIMEOUT = 4,     /* timeout */
};

/* Run-time context of one mpctl invocation. */
struct ctl {
	const char *socket;          /* resolved socket path */
	const char *socket_from;     /* "from -s", "from MPSUP_SOCKET" or NULL: the default */
	bool json;                   /* --json: print exact result JSON */
	double timeout;              /* -t: per send/receive, < 0 = forever */
	struct mpsup_client *client; /* connected lazily by ctl_connect */
};

struct ctl_cmd {
	const char *name;
	int (*run)(struct ctl *ctl, const struct ctl_cmd *cmd, int argc, char **argv);
	const char *usage;   /* arguments, after the name */
	const char *summary; /* one line for --help */
};

/* Subcommand tables, each ended by an entry with a NULL name. */
extern const struct ctl_cmd ctl_meta_cmds[];   /* mpctl.c */
extern const struct ctl_cmd ctl_proc_cmds[];   /* ctl_proc.c */
extern const struct ctl_cmd ctl_pool_cmds[];   /* ctl_pool.c */
extern const struct ctl_cmd ctl_daemon_cmds[]; /* ctl_daemon.c */
extern const struct ctl_cmd ctl_state_cmds[];  /* ctl_state.c */

/*
 * Connection and calls (mpctl.c).
 */

/* Connect if not connected yet; exits 3 when the daemon cannot be reached. */
struct mpsup_client *ctl_connect(struct ctl *ctl);
/* Print a daemon error on stderr ("mpctl: CODE: message"); the exit
 * status it maps to. */
int ctl_report_error(const struct mpsup_error *err);
/* Exit for a transport failure (negative errno): 4 on -ETIMEDOUT, else 3. */
_Noreturn void ctl_transport_fail(struct ctl *ctl, int err);
/*
 * Call cmd with params (borrowed, may be NULL). Returns CTL_EXIT_OK with
 * *ret_result (a new reference, never NULL: JSON null for no result), or
 * after printing "mpctl: CODE: message" on stderr, CTL_EXIT_TIMEOUT for the
 * code "timeout" and CTL_EXIT_ERROR for any other. Transport failures exit.
 */
int ctl_call(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result);
/* ctl_call_code passing descriptors along (proc.run with stdio "passed"). */
int ctl_call_fds(struct ctl *ctl, const char *cmd, json_t *params, const int *fds, size_t n_fds,
		 json_t **ret_result, struct mpsup_error *ret_err);
/* Like ctl_call; an error answer is also copied into *ret_err (may be NULL;
 * code_name always set, all empty when the call succeeded). */
int ctl_call_code(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result,
		  struct mpsup_error *ret_err);
/* ctl_call, then drop params (a reference the caller gives up). */
int ctl_call_take(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result);
/* Like ctl_call, but an error answer is not printed. */
int ctl_call_quiet(struct ctl *ctl, const char *cmd, json_t *params, json_t **ret_result);
/* Like ctl_call, then print the result (ctl_print_result). */
int ctl_call_print(struct ctl *ctl, const char *cmd, json_t *params);
/* Like ctl_call, then print an object result as "key: value" lines (as
 * JSON with --json or for any other result). */
int ctl_call_print_fields(struct ctl *ctl, const char *cmd, json_t *params);
/* Receive one raw line of a stream (malloc'ed), NULL at its end. */
char *ctl_stream_next_line(struct ctl *ctl);
/*
 * Receive one message of a stream (after its request was answered); returns
 * a new reference, or NULL at the end of the stream (closed by the daemon).
 */
json_t *ctl_stream_next(struct ctl *ctl);
/* Make SIGINT end a stream quietly (exit 0); output must be flushed per line. */
void ctl_stream_prepare(struct ctl *ctl);
/* After a stream's first answer: wait for its lines forever (ignore -t). */
void ctl_stream_unbounded(struct ctl *ctl);
/* True when stdout can no longer be written (a reader went away). */
bool ctl_stdout_gone(void);

/*
 * Arguments.
 */

/* "An argument that parses as JSON is JSON, anything else is a string." */
json_t *ctl_arg(const char *text);
/* A string argument taken as it is (names, keys); exit 2 if not UTF-8. */
json_t *ctl_str(const char *text);
/* Parse a timeout in seconds (>= 0, finite); usage error otherwise. */
double ctl_parse_seconds(const struct ctl_cmd *cmd, const char *text);
/* Parse a non-negative integer; usage error otherwise. */
long long ctl_parse_count(const struct ctl_cmd *cmd, const char *what, const char *text);
/* Print "mpctl: message" and the command's usage on stderr; exit 2. */
_Noreturn void ctl_usage_error(const struct ctl_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * For subcommands without options: skip a leading "--"; answer -h/--help
 * as the only argument (prints usage, exits 0). Returns the index of the
 * first positional argument in argv.
 */
int ctl_plain_args(const struct ctl_cmd *cmd, int argc, char **argv);
/* Report a getopt failure of a subcommand (c is '?' or ':'); exits 2. */
_Noreturn void ctl_opt_error(const struct ctl_cmd *cmd, int c, char **argv);
/* -h/--help of a subcommand with options: print its help, exit 0. */
_Noreturn void ctl_opt_help(const struct ctl_cmd *cmd);
/* A new params object; exits when out of memory. */
json_t *ctl_params_new(void);
/* Call, then say what was done (fmt with arg; the result with --json);
 * drops params. */
int ctl_call_say(struct ctl *ctl, const char *cmd, json_t *params, const char *fmt,
		 const char *arg);
/* Parse "ARG [--timeout S]" (join, wait): the one positional argument,
 * the timeout set in params. */
const char *ctl_parse_one_with_timeout(const struct ctl_cmd *cmd, int argc, char **argv,
				       json_t *params);
/* Print the usage line of cmd to f. */
void ctl_cmd_usage(FILE *f, const struct ctl_cmd *cmd);
/* Print the full help of cmd (usage, summary, its operations) to f. */
void ctl_cmd_help(FILE *f, const struct ctl_cmd *cmd);
/* Shared-state commands (ctl_state.c): is cmd one, and its ops' usage. */
bool ctl_is_state_cmd(const struct ctl_cmd *cmd);
void ctl_state_help(FILE *f, const struct ctl_cmd *cmd);

/* "Did you mean": the closest candidate to word seen so far (NULL: none
 * close enough). */
struct ctl_suggest {
	const char *word;
	const char *best;
	size_t dist;
};
void ctl_suggest_consider(struct ctl_suggest *s, const char *cand);

/*
 * Output (ctl_print.c).
 */

/* Compact one-line JSON of any value (malloc'ed). */
char *ctl_json_text(const json_t *v);
/* Print v: JSON with --json; else a string bare, null nothing, others JSON. */
void ctl_print_result(const struct ctl *ctl, const json_t *v);
/* Print v as a human value: string bare, null as "-" when dash, else JSON. */
void ctl_print_value(FILE *f, const json_t *v, bool dash);
/* Format a duration in seconds as 3s, 4m12s, 2h03m, 1d02h. */
void ctl_format_duration(double seconds, char *buf, size_t size);
/* Human text of v for a table cell (null/missing -> "-"), malloc'ed. */
char *ctl_cell_text(const json_t *v);
/* Print an object as aligned "key: value" lines (uptime as a duration). */
void ctl_print_fields(const json_t *obj);

/* A column of a table of objects: key, header, optional formatter. */
struct ctl_column {
	const char *key;
	const char *header;
	char *(*format)(const json_t *row, const json_t *v); /* NULL: ctl_cell_text */
	/* Optional: escape sequences around a cell (colour); NULL = none. */
	const char *(*colour)(const json_t *row, const json_t *v);
};
/*
 * Print an aligned table of the objects of rows, one per line, with a
 * header. Columns whose key is absent from every row are left out. Colour
 * is applied only when stdout is a terminal and NO_COLOR is unset.
 */
void ctl_print_table(const json_t *rows, const struct ctl_column *cols, size_t ncols);
/* True when colour may be written to stdout. */
bool ctl_use_colour(void);

#endif
