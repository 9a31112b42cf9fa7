/*
 * The task worker protocol (docs/tasks.md): the line mpsupd
 * writes to a worker's stdin for one task, and the parsing of the result
 * line the worker writes back. Pure functions (no daemon state).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task_wire.h"

/* Make room for need more bytes after *len in *buf. */
static int buf_reserve(char **buf, size_t *cap, size_t len, size_t need)
{
	size_t c = *cap ? *cap : 256;
	char *nb;

	if (len + need <= *cap)
		return 0;
	while (c < len + need)
		c *= 2;
	if (!(nb = realloc(*buf, c)))
		return -ENOMEM;
	*buf = nb;
	*cap = c;
	return 0;
}

/* Append s[0..n) at *len. */
static int buf_add(char **buf, size_t *cap, size_t *len, const char *s, size_t n)
{
	if (buf_reserve(buf, cap, *len, n) < 0)
		return -ENOMEM;
	memcpy(*buf + *len, s, n);
	*len += n;
	return 0;
}

/* Append v's compact JSON at *len; -ENOMEM, -EINVAL (not encodable). */
static int buf_add_json(char **buf, size_t *cap, size_t *len, const json_t *v)
{
	const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	size_t n;

	for (int pass = 0; pass < 2; pass++) {
		if (buf_reserve(buf, cap, *len, 64) < 0)
			return -ENOMEM;
		/* json_dumpb returns the full size even when it did not fit */
		if ((n = json_dumpb(v, *buf + *len, *cap - *len, flags)) == 0)
			return -EINVAL;
		if (n <= *cap - *len) {
			*len += n;
			return 0;
		}
		if (buf_reserve(buf, cap, *len, n) < 0)
			return -ENOMEM;
	}
	return -EINVAL; /* grew between the passes: cannot happen */
}

/* Append {"id":N," and the member name key ("item" or "items"). */
static int buf_add_head(char **buf, size_t *cap, size_t *len, uint64_t id, const char *key)
{
	char head[80], digits[24];
	size_t hl = 0, nd = 0;

	/* by hand: this runs once per task */
	do
		digits[nd++] = (char)('0' + id % 10);
	while ((id /= 10) > 0);
	memcpy(head, "{\"id\":", 6);
	hl = 6;
	while (nd > 0)
		head[hl++] = digits[--nd];
	hl += (size_t)snprintf(head + hl, sizeof(head) - hl, ",\"%s\":", key);
	return buf_add(buf, cap, len, head, hl);
}

ssize_t task_line_format(char **buf, size_t *cap, uint64_t id, const json_t *item)
{
	size_t len = 0;
	int r;

	if ((r = buf_add_head(buf, cap, &len, id, "item")) < 0 ||
	    (r = buf_add_json(buf, cap, &len, item)) < 0 ||
	    (r = buf_add(buf, cap, &len, "}\n", 2)) < 0)
		return r;
	return (ssize_t)len;
}

ssize_t task_chunk_format(char **buf, size_t *cap, uint64_t id, const json_t *items, size_t start,
			  size_t count)
{
	size_t len = 0;
	int r;

	if ((r = buf_add_head(buf, cap, &len, id, "items")) < 0 ||
	    (r = buf_add(buf, cap, &len, "[", 1)) < 0)
		return r;
	for (size_t i = 0; i < count; i++)
		if ((i > 0 && (r = buf_add(buf, cap, &len, ",", 1)) < 0) ||
		    (r = buf_add_json(buf, cap, &len, json_array_get(items, start + i))) < 0)
			return r;
	if ((r = buf_add(buf, cap, &len, "]}\n", 3)) < 0)
		return r;
	return (ssize_t)len;
}

void task_snippet(const char *s, size_t n, char *out, size_t outlen)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 4 < outlen; i++) {
		if (i == TASK_SNIPPET_MAX) {
			memcpy(out + k, "...", 3);
			k += 3;
			break;
		}
		out[k++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	}
	out[k] = '\0';
}

/* Check a chunk reply's "errors": a list of [index, "text"] pairs with
 * indexes below count; false with why. */
static bool errors_valid(const json_t *errs, size_t count, char *why, size_t whylen)
{
	size_t i;
	json_t *e;

	if (!json_is_array(errs)) {
		snprintf(why, whylen, "\"errors\" is not a list");
		return false;
	}
	json_array_foreach(errs, i, e) {
		json_t *ix = json_array_get(e, 0);
		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(ix) ||
		    json_integer_value(ix) < 0 || (size_t)json_integer_value(ix) >= count ||
		    !json_is_string(json_array_get(e, 1))) {
			snprintf(why, whylen,
				 "\"errors\" item %zu is not [index, \"text\"] of an item", i);
			return false;
		}
	}
	return true;
}

enum task_reply task_chunk_reply_check(json_t *reply, size_t count, char *why, size_t whylen)
{
	json_t *res = json_object_get(reply, "results"), *errs = json_object_get(reply, "errors");

	if (json_array_size(res) != count) {
		snprintf(why, whylen, "%zu results for a chunk of %zu items", json_array_size(res),
			 count);
		return TASK_REPLY_BAD;
	}
	if (errs && !errors_valid(errs, count, why, whylen))
		return TASK_REPLY_BAD;
	return TASK_REPLY_RESULTS;
}

enum task_reply task_reply_parse(const char *line, size_t len, uint64_t *ret_id, json_t **ret_value,
				 char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *o, *jid, *res, *err;
	char snip[TASK_SNIPPET_MAX + 8];
	enum task_reply kind;

	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		task_snippet(line, len, snip, sizeof(snip));
		snprintf(why, whylen, "not a JSON object: '%s'", snip);
		return TASK_REPLY_BAD;
	}
	jid = json_object_get(o, "id");
	res = json_object_get(o, "result");
	err = json_object_get(o, "error");
	if (!res && json_is_array(json_object_get(o, "results")))
		res = o; /* a chunk's answer: the caller checks it (task_chunk_reply_check) */
	if (!json_is_integer(jid)) {
		snprintf(why, whylen, "no integer \"id\"");
		goto bad;
	}
	if (json_integer_value(jid) <= 0) {
		snprintf(why, whylen, "id %" JSON_INTEGER_FORMAT " is not a task id",
			 json_integer_value(jid));
		goto bad;
	}
	if ((res != NULL) == (err != NULL)) {
		snprintf(why, whylen,
			 res ? "both \"result\" (or \"results\") and \"error\""
			     : "neither \"result\" nor \"error\"");
		goto bad;
	}
	*ret_id = (uint64_t)json_integer_value(jid);
	if (res == o) {
		*ret_value = json_incref(o);
		kind = TASK_REPLY_RESULTS;
	} else if (res) {
		*ret_value = json_incref(res);
		kind = TASK_REPLY_RESULT;
	} else if (json_is_string(err)) {
		*ret_value = json_incref(err);
		kind = TASK_REPLY_ERROR;
	} else {
		/* not a string: keep its JSON text */
		char *s = json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
		*ret_value = json_string(s ? s : "error");
		free(s);
		kind = TASK_REPLY_ERROR;
	}
	json_decref(o);
	return kind;
bad:
	json_decref(o);
	return TASK_REPLY_BAD;
}
