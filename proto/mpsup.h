/*
 * libmpsup: framing, envelope, error codes and a client for the mpsup
 * protocol (JSON lines over a Unix socket). See mpsup-protocol(7).
 *
 * The library never logs, aborts or exits: every failure is a return value.
 * Functions return 0 (or a count) on success and a negative errno on failure;
 * ret_* output parameters are written only on success.
 */
#ifndef MPSUP_H
#define MPSUP_H

#include <stddef.h>
#include <stdbool.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPSUP_PROTOCOL_VERSION 1
#define MPSUP_DEFAULT_SOCKET "/run/mpsupd/mpsupd.sock"
#define MPSUP_DEFAULT_MAX_LINE (1024 * 1024)
#define MPSUP_DEFAULT_MAX_DEPTH 64

/* Stable error codes of the protocol (docs/protocol.md, mpsup-protocol(7)). */
enum mpsup_err {
	MPSUP_OK = 0,
	MPSUP_E_BAD_REQUEST,
	MPSUP_E_UNKNOWN_COMMAND,
	MPSUP_E_NOT_FOUND,
	MPSUP_E_EXISTS,
	MPSUP_E_WRONG_TYPE,
	MPSUP_E_OUT_OF_RANGE,
	MPSUP_E_TIMEOUT,
	MPSUP_E_EMPTY,
	MPSUP_E_FULL,
	MPSUP_E_PERMISSION_DENIED,
	MPSUP_E_TOO_LARGE,
	MPSUP_E_LIMIT,
	MPSUP_E_CONFLICT,
	MPSUP_E_BROKEN,
	MPSUP_E_SPAWN_FAILED,
	MPSUP_E_SHUTTING_DOWN,
	MPSUP_E_INTERNAL,
	MPSUP_E_UNAVAILABLE, /* a backend cannot be reached; retry */
	MPSUP_E__MAX
};

/* The wire name of an error code ("bad_request"); NULL when out of range. */
const char *mpsup_err_name(enum mpsup_err code);
/* The code for a wire name; -EINVAL when the name is unknown. */
int mpsup_err_from_name(const char *name);

/* An error answered by the daemon. */
struct mpsup_error {
	enum mpsup_err code; /* MPSUP_E_INTERNAL when code_name is unknown */
	char code_name[32];
	char message[512];
};

/*
 * Framing: an incremental splitter of newline-terminated lines with a
 * maximum line size. Data can be fed by copy (mpsup_framer_feed) or read
 * straight into the buffer (mpsup_framer_space + mpsup_framer_commit).
 */
struct mpsup_framer;

struct mpsup_framer *mpsup_framer_new(size_t max_line);
struct mpsup_framer *mpsup_framer_free(struct mpsup_framer *f);
/* Append bytes; -ENOMEM when out of memory. */
int mpsup_framer_feed(struct mpsup_framer *f, const void *data, size_t len);
/*
 * Room to read into: at least min bytes at *ret_ptr (min 0 = a default).
 * Returns the room available or -ENOMEM.
 */
ssize_t mpsup_framer_space(struct mpsup_framer *f, size_t min, char **ret_ptr);
/* Declare n bytes written at the pointer given by mpsup_framer_space. */
void mpsup_framer_commit(struct mpsup_framer *f, size_t n);
/*
 * Pop one complete line (without its '\n', NUL-terminated in place; valid
 * until the next call on f). Returns 1 with a line, 0 when no complete line
 * is buffered, -EMSGSIZE when a line is longer than max_line (the framer is
 * then unusable: close the connection).
 */
int mpsup_framer_pop(struct mpsup_framer *f, char **ret_line, size_t *ret_len);
/* Bytes currently buffered (complete and partial lines). */
size_t mpsup_framer_pending(const struct mpsup_framer *f);
/* Change the maximum line size (0 = default); applies from the next pop. */
void mpsup_framer_set_max_line(struct mpsup_framer *f, size_t max_line);

/*
 * JSON nesting depth of a text, without parsing it (strings and escapes are
 * skipped). Used to refuse deep input before handing it to a parser.
 */
size_t mpsup_json_depth(const char *text, size_t len);
/*
 * Read JSON text into a new jansson value, several times faster than
 * json_loadb(). Accepts exactly what json_loadb(text, len, JSON_DECODE_ANY
 * | JSON_REJECT_DUPLICATES) accepts, with the same values, as long as
 * arrays and objects nest at most max_depth deep (0: 1000, also the most).
 * NULL says nothing more than "not here": invalid, too deep or unusual
 * (a real number of 64 characters or more); ask json_loadb() for the
 * verdict and its message.
 */
json_t *mpsup_json_loadb(const char *text, size_t len, size_t max_depth);

/*
 * Envelope.
 */

/* Build {"id": id, "cmd": cmd, ...params}. id and params may be NULL; both
 * are borrowed. Returns a new reference or NULL. */
json_t *mpsup_request_new(const char *cmd, json_t *params, json_t *id);
/*
 * Parse one request line: JSON, an object, nesting <= max_depth, a string
 * "cmd". On success *ret_req is a new reference and *ret_cmd points into it.
 * On failure fills ret_err (bad_request / too_large), sets *ret_id to the
 * request id when one could be read (new reference, else NULL) and returns
 * -EBADMSG.
 */
int mpsup_request_parse(const char *line, size_t len, size_t max_depth, json_t **ret_req,
			const char **ret_cmd, json_t **ret_id, struct mpsup_error *ret_err);
/*
 * For servers: read a request line with the checks and errors of
 * mpsup_request_parse(), and hand it over in parts: *ret_params is the
 * request object without "id" and "cmd" (new reference), *ret_id the id
 * (new reference or NULL; on failure too, when it could be read) and cmd
 * the command name, NUL-terminated and cut to cmd_size - 1 bytes (make it
 * longer than any command). Cheaper than parsing and taking the members
 * out. 0 or a negative errno.
 */
int mpsup_request_read(const char *line, size_t len, size_t max_depth, json_t **ret_params,
		       json_t **ret_id, char *cmd, size_t cmd_size, struct mpsup_error *ret_err);
/*
 * One member of a request object as it lies in the line: scalars are read
 * in place (no jansson value), objects, arrays and strings with escapes
 * are built (v, a new reference), but for containers read lazily (see
 * mpsup_request_members_lazy: checked, v NULL, their text in raw).
 */
struct mpsup_member {
	const char *key; /* into the line (a key with escapes is refused) */
	size_t key_len;
	json_type type;
	const char *str; /* JSON_STRING: into the line, or v's text */
	size_t str_len;
	json_int_t i;    /* JSON_INTEGER */
	double d;        /* JSON_REAL */
	json_t *v;       /* JSON_OBJECT, JSON_ARRAY, an escaped string; else NULL */
	const char *raw; /* the value's JSON text as it lies in the line */
	size_t raw_len;
};
/*
 * Read a request line as mpsup_request_read() does, but leave its members
 * (besides id and cmd) as they lie in the line: up to cap of them into
 * members, *ret_n their number. 0, or -1 for "not here": invalid, more
 * than cap members, a key with escapes, anything unusual; the caller then
 * takes mpsup_request_read(), which reads it or explains. Free with
 * mpsup_members_free().
 */
int mpsup_request_members(const char *line, size_t len, size_t max_depth,
			  struct mpsup_member *members, size_t cap, size_t *ret_n, json_t **ret_id,
			  char *cmd, size_t cmd_size);
/*
 * mpsup_request_members, but an object or array member whose text is
 * lazy_min bytes or longer is only checked (exactly as it would be read)
 * and left as text: type JSON_OBJECT/JSON_ARRAY, v NULL, its text in raw
 * (SIZE_MAX: none is). For servers that pass big values on as text.
 */
int mpsup_request_members_lazy(const char *line, size_t len, size_t max_depth, size_t lazy_min,
			       struct mpsup_member *members, size_t cap, size_t *ret_n,
			       json_t **ret_id, char *cmd, size_t cmd_size);
/*
 * Read the JSON object text[0..len) member by member in place, as
 * mpsup_request_members does (no envelope: "id" and "cmd" are members like
 * the others), every object or array left as checked text (v NULL, raw).
 * 0, or -EINVAL when the text is not such an object (invalid, more than
 * cap members, a key with escapes, deeper than max_depth).
 */
int mpsup_json_members(const char *text, size_t len, size_t max_depth, struct mpsup_member *members,
		       size_t cap, size_t *ret_n);
/*
 * Check the JSON array text[0..len) exactly as mpsup_json_loadb() would
 * read it, building nothing, and call fn (when not NULL) with the text of
 * each element in order (no space around it); fn returning < 0 stops the
 * walk with that value. Returns the number of elements, or -EINVAL when
 * the text is not a valid array (nested at most max_depth deep, 0: 1000)
 * or is unusual as for mpsup_json_loadb() (a real of 64 characters or
 * more): ask jansson then.
 */
ssize_t mpsup_json_array_each(const char *text, size_t len, size_t max_depth,
			      int (*fn)(void *arg, const char *value, size_t len), void *arg);
/* Release the values built for members (the members stay readable but
 * for v). */
void mpsup_members_free(struct mpsup_member *members, size_t n);
/* A member's value as a jansson value (new reference). */
json_t *mpsup_member_json(const struct mpsup_member *m);
/* {"id": id, "ok": true, "result": result}; result is stolen, id borrowed. */
json_t *mpsup_response_ok(json_t *id, json_t *result);
/* {"id": id, "ok": false, "error": {code, message}}; id borrowed. */
json_t *mpsup_response_error(json_t *id, enum mpsup_err code, const char *message);
/*
 * Read a response. Returns 0 for success (*ret_result: borrowed reference,
 * may be NULL), 1 for an error response (ret_err filled), -EBADMSG when the
 * object is not a response. ret_id (borrowed) may be NULL.
 */
int mpsup_response_parse(json_t *resp, json_t **ret_id, json_t **ret_result,
			 struct mpsup_error *ret_err);
/* Fill an error record from code and printf-style text. */
void mpsup_error_set(struct mpsup_error *err, enum mpsup_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Client.
 */
struct mpsup_client;

/* The socket path to use: path if not NULL, else $MPSUP_SOCKET, else the default. */
const char *mpsup_socket_path(const char *path);
/* Connect; -errno on failure (-ENAMETOOLONG for a path that does not fit). */
int mpsup_connect(const char *path, struct mpsup_client **ret);
struct mpsup_client *mpsup_close(struct mpsup_client *c);
int mpsup_client_fd(const struct mpsup_client *c);
/* Timeout of each send/receive in seconds; < 0 = wait forever (default). */
void mpsup_set_timeout(struct mpsup_client *c, double seconds);
/* Maximum response line accepted (default 64 MiB). */
void mpsup_set_max_line(struct mpsup_client *c, size_t max_line);

/* Send one request object (pipelining: send many, then receive). */
int mpsup_send(struct mpsup_client *c, json_t *request);
/* Descriptors one request may carry (the daemon refuses more). */
#define MPSUP_FDS_MAX 8
/* Send one request with descriptors (SCM_RIGHTS on the line's first byte,
 * so the daemon gives them to this request); the caller keeps its own
 * copies. n_fds 0: mpsup_send. */
int mpsup_send_with_fds(struct mpsup_client *c, json_t *request, const int *fds, size_t n_fds);
/* Send bytes as they are (a raw line must end with '\n'). */
int mpsup_send_raw(struct mpsup_client *c, const void *data, size_t len);
/* Receive one line (a new reference to the parsed object). -ETIMEDOUT,
 * -ECONNRESET (closed), -EBADMSG (not a JSON object), -EMSGSIZE. */
int mpsup_recv(struct mpsup_client *c, json_t **ret_msg);
/* Receive one raw line (malloc'ed, NUL-terminated, no '\n'). */
int mpsup_recv_line(struct mpsup_client *c, char **ret_line, size_t *ret_len);
/*
 * Synchronous call: send {cmd, ...params} (params borrowed, may be NULL) and
 * wait for its answer. Returns 0 with *ret_result (new reference, may be
 * NULL if not wanted), 1 when the daemon answered an error (ret_err filled),
 * or a negative errno for transport failures.
 */
int mpsup_call(struct mpsup_client *c, const char *cmd, json_t *params, json_t **ret_result,
	       struct mpsup_error *ret_err);
/*
 * mpsup_call with descriptors passed along (SCM_RIGHTS), e.g. 0, 1, 2 for
 * proc.run with stdio "passed". The caller keeps its copies (the daemon
 * gets its own). Returns like mpsup_call; -EINVAL for more than
 * MPSUP_FDS_MAX.
 */
int mpsup_call_with_fds(struct mpsup_client *c, const char *cmd, json_t *params, const int *fds,
			size_t n_fds, json_t **ret_result, struct mpsup_error *ret_err);

/*
 * Streams: a request answered once as usual, then by further lines (one
 * JSON object each) until the connection closes: events.subscribe,
 * proc.logs with follow, pool.imap. A connection that streams serves
 * nothing else; close it to stop the stream.
 */
/* Send the request and read its first answer, as mpsup_call (0 with
 * *ret_result, 1 with ret_err, or a negative errno); after 0 read the
 * stream's lines with mpsup_stream_next(). */
int mpsup_stream_open(struct mpsup_client *c, const char *cmd, json_t *params, json_t **ret_result,
		      struct mpsup_error *ret_err);
/* The next line of a stream as a new reference: 0; -ECONNRESET when the
 * daemon closed it (its end, or the reader was dropped for not reading),
 * -ETIMEDOUT, -EBADMSG (not a JSON object), -EMSGSIZE. */
int mpsup_stream_next(struct mpsup_client *c, json_t **ret_msg);

/* One item of a pool.imap stream. */
struct mpsup_imap_item {
	size_t index;             /* in the items given */
	json_t *result;           /* new reference; NULL when the item failed */
	struct mpsup_error error; /* result NULL: why the item failed */
};
/*
 * Start a pool.imap of items (borrowed) on pool: results in item order
 * (ordered) or as they end; chunksize 0: the daemon's default (1). 0 with
 * *ret_n the number of items, 1 when the daemon refused (ret_err), or a
 * negative errno. Then read the items with mpsup_imap_next().
 */
int mpsup_imap_open(struct mpsup_client *c, const char *pool, json_t *items, bool ordered,
		    size_t chunksize, size_t *ret_n, struct mpsup_error *ret_err);
/*
 * The next item of a pool.imap: 1 with *ret_item (json_decref its result),
 * 0 at the end of the stream (*ret_failed: how many items failed), or a
 * negative errno: -ECONNRESET when the stream ended before its summary,
 * -EBADMSG for a line that is not an item.
 */
int mpsup_imap_next(struct mpsup_client *c, struct mpsup_imap_item *ret_item, size_t *ret_failed);

/*
 * Convenience calls for shared state. Each returns like mpsup_call.
 */
int mpsup_value_add(struct mpsup_client *c, const char *name, json_int_t by, json_int_t *ret_value,
		    struct mpsup_error *ret_err);
int mpsup_dict_set(struct mpsup_client *c, const char *name, const char *key, json_t *value,
		   struct mpsup_error *ret_err);
int mpsup_dict_get(struct mpsup_client *c, const char *name, const char *key, json_t **ret_value,
		   struct mpsup_error *ret_err);
int mpsup_queue_put(struct mpsup_client *c, const char *name, json_t *item, double timeout,
		    struct mpsup_error *ret_err);
int mpsup_queue_get(struct mpsup_client *c, const char *name, double timeout, json_t **ret_item,
		    struct mpsup_error *ret_err);
int mpsup_lock_acquire(struct mpsup_client *c, const char *name, double timeout, bool *ret_acquired,
		       struct mpsup_error *ret_err);
int mpsup_lock_release(struct mpsup_client *c, const char *name, struct mpsup_error *ret_err);

#ifdef __cplusplus
}
#endif
#endif
