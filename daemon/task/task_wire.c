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

#include "mpsup.h"
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

ssize_t task_line_text(char **buf, size_t *cap, uint64_t id, bool list, const char *text,
		       size_t len)
{
	size_t n = 0;
	int r;

	if ((r = buf_add_head(buf, cap, &n, id, list ? "items" : "item")) < 0 ||
	    (list && (r = buf_add(buf, cap, &n, "[", 1)) < 0) ||
	    (r = buf_add(buf, cap, &n, text, len)) < 0 ||
	    (r = buf_add(buf, cap, &n, list ? "]}\n" : "}\n", list ? 3 : 2)) < 0)
		return r;
	return (ssize_t)n;
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

/* Collects where a chunk's results lie (task_chunk_read). */
struct span_walk {
	const char *base;
	struct jspan **spans;
	size_t *cap, n, count;
};

static int span_add(void *arg, const char *value, size_t len)
{
	struct span_walk *w = arg;

	if (w->n == w->count)
		return -EOVERFLOW; /* one too many: the count is wrong anyway */
	if (w->n == *w->cap) {
		size_t cap = *w->cap ? *w->cap * 2 : 256;
		struct jspan *s;
		while (cap < w->count)
			cap *= 2;
		if (!(s = realloc(*w->spans, cap * sizeof(*s))))
			return -ENOMEM;
		*w->spans = s;
		*w->cap = cap;
	}
	(*w->spans)[w->n].off = (uint32_t)(value - w->base);
	(*w->spans)[w->n++].len = (uint32_t)len;
	return 0;
}

enum task_reply task_chunk_read(const struct task_answer *a, size_t count, struct jspan **spans,
				size_t *cap, json_t **ret_errors, char *why, size_t whylen)
{
	struct span_walk w = { a->text, spans, cap, 0, count };
	json_t *errs = NULL;
	ssize_t n = mpsup_json_array_each(a->text, a->len, 0, span_add, &w);

	if (n == -ENOMEM) {
		snprintf(why, whylen, "out of memory");
		return TASK_REPLY_BAD;
	}
	if (n == -EOVERFLOW)
		n = mpsup_json_array_each(a->text, a->len, 0, NULL, NULL); /* for the message */
	if (n != (ssize_t)count) {
		snprintf(why, whylen, "%zd results for a chunk of %zu items", n < 0 ? 0 : n, count);
		return TASK_REPLY_BAD;
	}
	if (a->errors && (!(errs = mpsup_json_loadb(a->errors, a->errors_len, 0)) ||
			  !errors_valid(errs, count, why, whylen))) {
		if (!errs)
			snprintf(why, whylen, "\"errors\" is not a list");
		json_decref(errs);
		return TASK_REPLY_BAD;
	}
	*ret_errors = errs;
	return TASK_REPLY_RESULTS;
}

void task_answer_release(struct task_answer *a)
{
	json_decref(a->error);
	free(a->owned);
	memset(a, 0, sizeof(*a));
}

/* The kind of an answer whose members are id, result, results, error and
 * errors (each NULL when absent; results only when a list), filling a
 * but for text and errors; BAD with why. */
static enum task_reply answer_kind(bool id_int, json_int_t id, bool has_result, bool has_results,
				   bool has_error, struct task_answer *a, char *why, size_t whylen)
{
	bool res = has_result || has_results;

	if (!id_int) {
		snprintf(why, whylen, "no integer \"id\"");
		return TASK_REPLY_BAD;
	}
	if (id <= 0) {
		snprintf(why, whylen, "id %" JSON_INTEGER_FORMAT " is not a task id", id);
		return TASK_REPLY_BAD;
	}
	if (res == has_error) {
		snprintf(why, whylen,
			 res ? "both \"result\" (or \"results\") and \"error\""
			     : "neither \"result\" nor \"error\"");
		return TASK_REPLY_BAD;
	}
	a->id = (uint64_t)id;
	return has_result ? TASK_REPLY_RESULT : has_results ? TASK_REPLY_RESULTS : TASK_REPLY_ERROR;
}

/* A worker's error value as text: a string as it is, anything else as its
 * compact JSON. */
static json_t *error_text(json_t *err)
{
	char *s;
	json_t *v;

	if (json_is_string(err))
		return json_incref(err);
	s = json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
	v = json_string(s ? s : "error");
	free(s);
	return v;
}

/* task_reply_read() through jansson, for what the in-place reader leaves
 * (a key with escapes, many members) or refuses (jansson says why). */
static enum task_reply reply_read_tree(const char *line, size_t len, struct task_answer *a,
				       char *why, size_t whylen)
{
	char snip[TASK_SNIPPET_MAX + 8];
	json_error_t jerr;
	json_t *o, *jid, *res, *results, *err, *errs;
	enum task_reply kind;
	const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;

	if (!(o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr))) {
		task_snippet(line, len, snip, sizeof(snip));
		snprintf(why, whylen, "not a JSON object: '%s'", snip);
		return TASK_REPLY_BAD;
	}
	jid = json_object_get(o, "id");
	res = json_object_get(o, "result");
	results = json_object_get(o, "results");
	err = json_object_get(o, "error");
	errs = json_object_get(o, "errors");
	kind = answer_kind(json_is_integer(jid), json_integer_value(jid), res != NULL,
			   !res && json_is_array(results), err != NULL, a, why, whylen);
	if (kind == TASK_REPLY_RESULT || kind == TASK_REPLY_RESULTS) {
		/* the value and the errors, one after the other in one buffer */
		char *t = json_dumps(kind == TASK_REPLY_RESULT ? res : results, flags);
		char *e = kind == TASK_REPLY_RESULTS && errs ? json_dumps(errs, flags) : NULL;
		size_t tl = t ? strlen(t) : 0, el = e ? strlen(e) : 0;
		if (!t || (errs && kind == TASK_REPLY_RESULTS && !e) ||
		    !(a->owned = malloc(tl + el + 1))) {
			snprintf(why, whylen, "out of memory");
			kind = TASK_REPLY_BAD;
		} else {
			memcpy(a->owned, t, tl);
			if (e)
				memcpy(a->owned + tl, e, el);
			a->text = a->owned;
			a->len = tl;
			a->errors = e ? a->owned + tl : NULL;
			a->errors_len = el;
		}
		free(t);
		free(e);
	} else if (kind == TASK_REPLY_ERROR)
		a->error = error_text(err);
	json_decref(o);
	return kind;
}

/* Answer members read in place. */
#define ANSWER_MEMBERS 8

enum task_reply task_reply_read(const char *line, size_t len, struct task_answer *a, char *why,
				size_t whylen)
{
	struct mpsup_member m[ANSWER_MEMBERS];
	const struct mpsup_member *jid = NULL, *res = NULL, *results = NULL, *err = NULL,
				  *errs = NULL;
	enum task_reply kind;
	size_t n;

	memset(a, 0, sizeof(*a));
	if (mpsup_json_members(line, len, 0, m, ANSWER_MEMBERS, &n) < 0)
		return reply_read_tree(line, len, a, why, whylen);
	for (size_t i = 0; i < n; i++) {
		const char *k = m[i].key;
		size_t kl = m[i].key_len;
#define KEY_IS(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
		if (KEY_IS("id"))
			jid = &m[i];
		else if (KEY_IS("result"))
			res = &m[i];
		else if (KEY_IS("results"))
			results = &m[i];
		else if (KEY_IS("error"))
			err = &m[i];
		else if (KEY_IS("errors"))
			errs = &m[i];
#undef KEY_IS
	}
	kind = answer_kind(jid && jid->type == JSON_INTEGER, jid ? jid->i : 0, res != NULL,
			   !res && results && results->type == JSON_ARRAY, err != NULL, a, why,
			   whylen);
	if (kind == TASK_REPLY_RESULT) {
		a->text = res->raw;
		a->len = res->raw_len;
	} else if (kind == TASK_REPLY_RESULTS) {
		a->text = results->raw;
		a->len = results->raw_len;
		a->errors = errs ? errs->raw : NULL;
		a->errors_len = errs ? errs->raw_len : 0;
	} else if (kind == TASK_REPLY_ERROR) {
		json_t *e = mpsup_member_json(err);
		a->error = e ? error_text(e) : json_string("error");
		json_decref(e);
	}
	mpsup_members_free(m, n);
	return kind;
}

enum task_reply task_reply_parse(const char *line, size_t len, uint64_t *ret_id, json_t **ret_value,
				 char *why, size_t whylen)
{
	struct task_answer a;
	enum task_reply kind = task_reply_read(line, len, &a, why, whylen);
	json_t *v = NULL;

	if (kind == TASK_REPLY_RESULT || kind == TASK_REPLY_RESULTS) {
		v = mpsup_json_loadb(a.text, a.len, 0);
		if (kind == TASK_REPLY_RESULTS && v) /* the answer as an object */
			v = json_pack("{s:o, s:o?}", "results", v, "errors",
				      a.errors ? mpsup_json_loadb(a.errors, a.errors_len, 0)
					       : NULL);
	} else if (kind == TASK_REPLY_ERROR)
		v = json_incref(a.error);
	if (kind != TASK_REPLY_BAD && !v) {
		snprintf(why, whylen, "out of memory");
		kind = TASK_REPLY_BAD;
	}
	if (kind != TASK_REPLY_BAD) {
		*ret_id = a.id;
		*ret_value = v;
	}
	task_answer_release(&a);
	return kind;
}
