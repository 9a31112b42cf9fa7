/*
 * The task worker protocol: one JSON line per task to the worker's stdin,
 * {"id": N, "item": V}; one line per result from its stdout,
 * {"id": N, "result": V} or {"id": N, "error": "text"}. Chunks (pools with
 * task_chunks = yes): {"id": N, "items": [V, ...]} answered by
 * {"id": N, "results": [R, ...], "errors"?: [[index, "text"], ...]} or
 * {"id": N, "error": "text"} (every item fails).
 */
#ifndef MPSUPD_TASK_WIRE_H
#define MPSUPD_TASK_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* Excerpts of bad lines in messages are at most this long (plus "..."). */
#define TASK_SNIPPET_MAX 60

enum task_reply {
	TASK_REPLY_BAD = -1,
	TASK_REPLY_RESULT = 0,
	TASK_REPLY_ERROR = 1,
	TASK_REPLY_RESULTS = 2, /* a chunk's answer: a "results" list */
};

/*
 * Build the line for task id and item ({"id":N,"item":V} and a newline) in
 * *buf (grown as needed, capacity in *cap). Returns its length, or -ENOMEM,
 * or -EINVAL when item cannot be encoded.
 */
ssize_t task_line_format(char **buf, size_t *cap, uint64_t id, const json_t *item);
/* The same from JSON text: {"id":N,"item":TEXT} or, for a chunk (list
 * set), {"id":N,"items":[TEXT]} where TEXT is its items' text with their
 * commas. */
ssize_t task_line_text(char **buf, size_t *cap, uint64_t id, bool list, const char *text,
		       size_t len);

/* A worker's answer as read in place (task_reply_read). */
struct task_answer {
	uint64_t id;
	const char *text; /* RESULT: the result's JSON text; RESULTS: the "results" list's */
	size_t len;
	const char *errors; /* RESULTS: the "errors" member's text, or NULL */
	size_t errors_len;
	json_t *error; /* ERROR: the worker's error text, a JSON string */
	char *owned;   /* what text and errors point into when not the line */
};
/*
 * Read one line a worker wrote into *a (text and errors point into the
 * line, valid while it is), building nothing but an error's text; the
 * kinds and whys of task_reply_parse(). Release a with task_answer_release.
 */
enum task_reply task_reply_read(const char *line, size_t len, struct task_answer *a, char *why,
				size_t whylen);
void task_answer_release(struct task_answer *a);
/* Where a piece of JSON text lies in a buffer (items and results of a
 * map: each is at most max_request_bytes, far below 4 GiB). */
struct jspan {
	uint32_t off, len;
};
/* Check a RESULTS answer for a chunk of count items: RESULTS with where
 * each result lies in a->text in (*spans)[0..count) (grown as needed,
 * capacity *cap) and the "errors" list in *ret_errors (new reference, or
 * NULL); BAD with why (wrong number of results, malformed "errors"). */
enum task_reply task_chunk_read(const struct task_answer *a, size_t count, struct jspan **spans,
				size_t *cap, json_t **ret_errors, char *why, size_t whylen);
/*
 * Parse one line a worker wrote: *ret_id is the task it answers. RESULT:
 * *ret_value is the result; ERROR: *ret_value is the worker's error text
 * as a JSON string; RESULTS (a "results" list): *ret_value is
 * {"results": [...], "errors"?: [...]}; all new references. BAD: why
 * says what is wrong with the line. (task_reply_read, building values.)
 */
enum task_reply task_reply_parse(const char *line, size_t len, uint64_t *ret_id, json_t **ret_value,
				 char *why, size_t whylen);
/* A printable excerpt of s[0..n) for messages (NUL-terminated in out). */
void task_snippet(const char *s, size_t n, char *out, size_t outlen);

#endif
