/*
 * The task worker protocol: one JSON line per task to the worker's stdin,
 * {"id": N, "item": V}; one line per result from its stdout,
 * {"id": N, "result": V} or {"id": N, "error": "text"}.
 */
#ifndef MPSUPD_TASK_WIRE_H
#define MPSUPD_TASK_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* Excerpts of bad lines in messages are at most this long (plus "..."). */
#define TASK_SNIPPET_MAX 60

enum task_reply { TASK_REPLY_BAD = -1, TASK_REPLY_RESULT = 0, TASK_REPLY_ERROR = 1 };

/*
 * Build the line for task id and item ({"id":N,"item":V} and a newline) in
 * *buf (grown as needed, capacity in *cap). Returns its length, or -ENOMEM,
 * or -EINVAL when item cannot be encoded.
 */
ssize_t task_line_format(char **buf, size_t *cap, uint64_t id, const json_t *item);
/*
 * Parse one line a worker wrote: *ret_id is the task it answers. RESULT:
 * *ret_value is the result; ERROR: *ret_value is the worker's error text
 * as a JSON string; both new references. BAD: why says what is wrong with
 * the line.
 */
enum task_reply task_reply_parse(const char *line, size_t len, uint64_t *ret_id, json_t **ret_value,
				 char *why, size_t whylen);
/* A printable excerpt of s[0..n) for messages (NUL-terminated in out). */
void task_snippet(const char *s, size_t n, char *out, size_t outlen);

#endif
