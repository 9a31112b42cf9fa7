/*
 * The command table and requests. One entry per protocol command: name,
 * required role, flags and handler. Envelope parsing, role checks, the
 * one-reply-per-request rule and the reply itself live in command.c, so a
 * handler only validates its parameters (request_unpack) and answers.
 *
 * A handler answers with request_ok()/request_error() and returns CMD_DONE,
 * or keeps the request and returns CMD_WAIT (the connection's later requests
 * wait until it is answered) or CMD_STREAM (the connection becomes a stream
 * of request_stream() lines until it closes). A kept request must set
 * r->cancel: it is called if the connection closes first, after which the
 * request is freed by the core and must not be touched again.
 */
#ifndef MPSUPD_COMMAND_H
#define MPSUPD_COMMAND_H

#include <stdbool.h>

#include <jansson.h>

#include "access.h"
#include "conf.h"
#include "mpsup.h"

struct conn;
struct evbuffer;
struct request;

enum cmd_flags {
	CMD_MUTATES = 1 << 0,
	CMD_MAY_BLOCK = 1 << 1,
	CMD_STREAMS = 1 << 2,
	/* The handler reads its parameters in place (request_members), so no
	 * r->params tree is built for it (it may build one: request_params). */
	CMD_IN_PLACE = 1 << 3,
	/* Below admin, the command acts only on what the peer's uid made
	 * (role run: proc.stop of its own one-shots); see request_access. */
	CMD_OWNED = 1 << 4,
	/* The request may carry descriptors (SCM_RIGHTS: stdio "passed"). */
	CMD_TAKES_FDS = 1 << 5,
	/* A big object or array parameter (REQ_LAZY_MIN bytes and more) is
	 * checked but not built: request_raw() gives its text while exec
	 * runs, r->params holds an empty one of its type (pool.map's items). */
	CMD_RAW_VALUES = 1 << 6,
};

/* Object and array parameters of this many bytes or more are read as text
 * first (and built afterwards for a command without CMD_RAW_VALUES). */
#define REQ_LAZY_MIN 4096

enum cmd_ret { CMD_DONE = 0, CMD_WAIT, CMD_STREAM };

/*
 * params lists a command's parameters for `help`, separated by spaces, as
 * TYPE:KEY with a trailing '?' when optional. TYPE is one of
 *   o any JSON value     s string     i integer     n number     b boolean
 *   a array              O object     t timeout (number >= 0 or null)
 *   * further members (a type's options, a pool's keys)
 * e.g. "s:target b:wait?" (the same form as shared-state op specs, obj.h).
 */
struct cmd_entry {
	const char *name;
	enum role role;
	unsigned flags;
	enum cmd_ret (*exec)(struct request *r);
	const char *params;
};

/*
 * A module: its commands (an array ended by an entry with a NULL name) and
 * optional lifecycle hooks, called in table order (stop: reverse order).
 * Modules are listed by the daemon's assembly (daemon/modules.c); the
 * core runs them (lifecycle.c).
 */
struct cmd_module {
	const char *capability; /* listed by hello */
	/* Complete the command table, once, before command_init reads it. */
	void (*init)(void);
	const struct cmd_entry *cmds;
	/* Adds its figures to a daemon.info result. */
	void (*info)(json_t *info);
	/* Writes its metric families (metrics.h) into a daemon.metrics text. */
	void (*metrics)(struct evbuffer *b);
	/* After the socket listens: start work (autostart pools...). */
	int (*start)(const struct conf *conf);
	/* Orderly shutdown: call done() once everything is stopped. */
	void (*stop)(void (*done)(void));
	/* Apply a new, valid config (the running one is still daemon_g.conf);
	 * record what changed in changes ({added:[], changed:[], removed:[],
	 * failed:[{pool, error}]}). */
	int (*reload)(const struct conf *newconf, json_t *changes);
	/* The daemon begins to shut down (before any module stops). */
	void (*shutting_down)(const char *why);
	/* A reload was applied (every module's reload ran, the new config is
	 * daemon_g.conf); changes as given to reload. */
	void (*reloaded)(json_t *changes);
};

struct request {
	struct conn *conn;
	json_t *id; /* the request's id, or NULL */
	/* The request object without id and cmd: built before exec for a
	 * command without CMD_IN_PLACE (and for one that is kept), else NULL
	 * unless the line could not be read in place or request_params() ran. */
	json_t *params;
	/* Its members as they lie in the line, while exec runs, when it could
	 * be read in place (else NULL: then params is there). */
	const struct mpsup_member *members;
	size_t n_members;
	const struct cmd_entry *cmd;
	void (*cancel)(struct request *r);
	/* A kept streaming request: its connection's output was written to
	 * the socket (the peer reads again), from the loop; may be NULL. */
	void (*drained)(struct request *r);
	void *data;       /* the handler's own, while kept */
	const char *line; /* the line as received, while exec runs (else NULL) */
	size_t line_len;
	/* Descriptors that came with the line (CMD_TAKES_FDS), while exec
	 * runs; a handler takes one by setting it to -1, the rest are closed. */
	int *fds;
	int n_fds;
	bool replied;
	bool kept;    /* CMD_WAIT or CMD_STREAM */
	bool durable; /* its answer shows or changes durable state: one the
			   * commit barrier gives up on is answered unavailable */
};

/* "none", "read", "state", "admin", by enum role. */
extern const char *const role_names[];

/* Build the lookup table of the modules' commands; call once. */
void command_init(const struct cmd_module *const *mods, size_t n_mods);
/* Look up a command by name. */
const struct cmd_entry *command_find(const char *name);
/* Call fn for every command, in name order (help). */
void command_foreach(void (*fn)(const struct cmd_entry *e, void *arg), void *arg);

/* The requests answered so far, by command and code (metrics.h). */
void command_metrics(struct evbuffer *b);

/* Parse and run one request line received on c. */
void command_dispatch(struct conn *c, char *line, size_t len);
/* The same for a line that came with descriptors (fds, left for the
 * caller to close what the command did not take): only a command flagged
 * CMD_TAKES_FDS from a run peer or admin may have them, else bad_request. */
struct fd_set_rx;
void command_dispatch_fds(struct conn *c, char *line, size_t len, struct fd_set_rx *fds);

/* Answer with a result (stolen; NULL answers null). */
void request_ok(struct request *r, json_t *result);
/* Answer with a result written as JSON text (w is freed; when the writer
 * ran out of memory the client is dropped). */
struct jsonw;
void request_ok_text(struct request *r, struct jsonw *w);
/* Answer with an error. */
void request_error(struct request *r, enum mpsup_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Answer with an error object {code, message, ...} built by the caller
 * (stolen), for errors that carry more members (pool.map's index). */
void request_fail(struct request *r, json_t *error);
/*
 * Validate and read parameters with json_unpack_ex and JSON_STRICT (unknown
 * keys are refused). On failure answers bad_request and returns -1.
 */
int request_unpack(struct request *r, const char *fmt, ...);
/* Read an optional timeout parameter: absent/null = -1 (forever). Answers
 * bad_request and returns -1 for a negative or non-number value. */
int request_timeout(struct request *r, json_t *v, double *ret);
/* Send one line of a streaming request; false when the connection is gone
 * or was dropped for not reading. */
bool request_stream(struct request *r, json_t *msg);
/* Send one line of a streaming request given as JSON text (len bytes, no
 * newline); false as request_stream. */
bool request_stream_text(struct request *r, const char *text, size_t len);
/* The JSON text of r's object or array parameter key when it was left as
 * text (CMD_RAW_VALUES; valid while exec runs): true with *ret_text and
 * *ret_len; false when it was built (read it from r->params). */
bool request_raw(const struct request *r, const char *key, const char **ret_text, size_t *ret_len);
/* r's parameters as a JSON object (borrowed), built from its members on
 * first use; NULL when out of memory. */
json_t *request_params(struct request *r);
struct owner;
/* May r's peer use a thing owned as o through r's command (access_decide
 * with the peer's role and uid and the command's CMD_OWNED)? A request
 * without a connection is the daemon's own: ACCESS_OK. */
enum access_verdict request_access(const struct request *r, const struct owner *o);
/* Answer r not_found or permission_denied for verdict v about name. */
void request_access_error(struct request *r, enum access_verdict v, const char *what,
			  const char *name);
/* Free a request that was never kept (core use). */
void request_free(struct request *r);

#endif
