/*
 * The task worker protocol (docs/tasks.md): the line mpsupd
 * writes to a worker's stdin for one task, and the parsing of the result
 * line the worker writes back. Pure functions (no daemon state).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task_wire.h"

ssize_t task_line_format(char **buf, size_t *cap, uint64_t id, const json_t *item)
{
	const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	static const char pre[] = "{\"id\":", post[] = ",\"item\":";
	char head[48], digits[24];
	size_t hl = 0, nd = 0, n;

	/* the head by hand: this runs once per task */
	do
		digits[nd++] = (char)('0' + id % 10);
	while ((id /= 10) > 0);
	memcpy(head, pre, sizeof(pre) - 1);
	hl = sizeof(pre) - 1;
	while (nd > 0)
		head[hl++] = digits[--nd];
	memcpy(head + hl, post, sizeof(post) - 1);
	hl += sizeof(post) - 1;
	for (int pass = 0; pass < 2; pass++) {
		if (*cap < hl + 256) {
			char *nb = realloc(*buf, hl + 256);
			if (!nb)
				return -ENOMEM;
			*buf = nb;
			*cap = hl + 256;
		}
		/* json_dumpb returns the full size even when it did not fit */
		if ((n = json_dumpb(item, *buf + hl, *cap - hl - 2, flags)) == 0)
			return -EINVAL; /* not encodable */
		if (hl + n + 2 <= *cap) {
			memcpy(*buf, head, hl);
			(*buf)[hl + n] = '}';
			(*buf)[hl + n + 1] = '\n';
			return (ssize_t)(hl + n + 2);
		}
		char *nb = realloc(*buf, hl + n + 2);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = hl + n + 2;
	}
	return -EINVAL; /* grew between the passes: cannot happen */
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
			 res ? "both \"result\" and \"error\""
			     : "neither \"result\" nor \"error\"");
		goto bad;
	}
	*ret_id = (uint64_t)json_integer_value(jid);
	if (res) {
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
