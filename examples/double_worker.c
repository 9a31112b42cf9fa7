/*
 * A task worker for a `mode = task` pool of mpsupd: 2X for each item X.
 *
 * Takes both task forms: {"id": N, "item": X} answered by {"id": N,
 * "result": 2X} (or {"id": N, "error": "..."} when X is not a number), and
 * chunks (pools with task_chunks = yes) {"id": N, "items": [...]}
 * answered by {"id": N, "results": [...], "errors": [[index, "..."], ...]}.
 * It reads what its stdin holds and answers every complete line of it in
 * one write: with task_window > 1 mpsupd writes several lines ahead.
 *
 *   [pool:double]
 *   mode = task
 *   command = /path/to/double_worker
 *   task_chunks = yes
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mpsup.h"

/* 2x, or NULL when x is not a number. */
static json_t *twice(const json_t *x)
{
	if (json_is_integer(x))
		return json_integer(json_integer_value(x) * 2);
	if (json_is_number(x))
		return json_real(json_number_value(x) * 2);
	return NULL;
}

/* The answer to one task line. */
static json_t *answer(json_int_t id, json_t *item, json_t *items)
{
	json_t *res, *errs;
	size_t i;
	json_t *x;

	if (!items) {
		json_t *v = twice(item);
		return v ? json_pack("{s:I, s:o}", "id", id, "result", v)
			 : json_pack("{s:I, s:s}", "id", id, "error", "item is not a number");
	}
	res = json_array();
	errs = json_array();
	json_array_foreach(items, i, x) {
		json_t *v = twice(x);
		json_array_append_new(res, v ? v : json_null());
		if (!v)
			json_array_append_new(
				errs, json_pack("[I, s]", (json_int_t)i, "item is not a number"));
	}
	if (json_array_size(errs) == 0)
		return json_pack("{s:I, s:o}", "id", id, "results", res);
	return json_pack("{s:I, s:o, s:o}", "id", id, "results", res, "errors", errs);
}

/* Append the answer to one line to out; -1 on a bad line. */
static int handle(const char *line, size_t len, char **out, size_t *olen, size_t *ocap)
{
	/* libmpsup's reader: exactly jansson's verdicts, several times faster
	 * (NULL: not here, so jansson decides) */
	json_t *task = mpsup_json_loadb(line, len, 0), *item = NULL, *items = NULL, *reply;
	json_int_t id;
	size_t n;

	if (!task)
		task = json_loadb(line, len, 0, NULL);
	if (!task ||
	    json_unpack(task, "{s:I, s?o, s?o}", "id", &id, "item", &item, "items", &items) < 0 ||
	    (!item && !json_is_array(items))) {
		json_decref(task);
		return -1;
	}
	reply = answer(id, item, items);
	for (;;) {
		n = json_dumpb(reply, *out + *olen, *ocap - *olen, JSON_COMPACT);
		if (n + 1 <= *ocap - *olen)
			break;
		*ocap = (*ocap + n + 1) * 2;
		if (!(*out = realloc(*out, *ocap)))
			return -1;
	}
	(*out)[*olen + n] = '\n';
	*olen += n + 1;
	json_decref(reply);
	json_decref(task);
	return 0;
}

int main(void)
{
	size_t cap = 1 << 16, len = 0, ocap = 1 << 16;
	char *in = malloc(cap), *out = malloc(ocap);

	if (!in || !out)
		return 1;
	for (;;) {
		size_t olen = 0, start = 0;
		char *nl;
		ssize_t n;

		if (len == cap && !(in = realloc(in, cap *= 2)))
			return 1;
		n = read(0, in + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0;
		len += (size_t)n;
		while ((nl = memchr(in + start, '\n', len - start))) {
			if (handle(in + start, (size_t)(nl - in) - start, &out, &olen, &ocap) < 0) {
				fprintf(stderr, "double_worker: bad task line\n");
				return 1;
			}
			start = (size_t)(nl - in) + 1;
		}
		memmove(in, in + start, len - start);
		len -= start;
		for (size_t off = 0; off < olen;) {
			ssize_t w = write(1, out + off, olen - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return 1;
			off += (size_t)w;
		}
	}
}
