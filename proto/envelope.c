/* The request/response envelope of protocol version 1 (docs/protocol.md, mpsup-protocol(7)). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "mpsup.h"

json_t *mpsup_request_new(const char *cmd, json_t *params, json_t *id)
{
	json_t *req;

	if (!cmd || (params && !json_is_object(params)))
		return NULL;
	req = json_object();
	if (!req)
		return NULL;
	/* "id" and "cmd" first (jansson keeps insertion order); a param with
	 * the same name does not override them. */
	if ((id && json_object_set(req, "id", id) < 0) ||
	    json_object_set_new(req, "cmd", json_string(cmd)) < 0 ||
	    (params && json_object_update_missing(req, params) < 0)) {
		json_decref(req);
		return NULL;
	}
	return req;
}

/*
 * The fast reader stops at max_depth by itself; for anything it refuses,
 * depth is checked with a scan before jansson parses, so a hostile line
 * such as 10000 '[' never reaches jansson. Too deep is too_large; anything
 * else wrong is bad_request.
 */
int mpsup_request_parse(const char *line, size_t len, size_t max_depth, json_t **ret_req,
			const char **ret_cmd, json_t **ret_id, struct mpsup_error *ret_err)
{
	json_error_t jerr;
	json_t *req, *id, *cmd;

	if (max_depth == 0)
		max_depth = MPSUP_DEFAULT_MAX_DEPTH;
	if (ret_id)
		*ret_id = NULL;

	if (!line) {
		mpsup_error_set(ret_err, MPSUP_E_BAD_REQUEST, "empty request");
		return -EBADMSG;
	}
	/* The fast reader takes what is valid and not too deep; the rest
	 * goes the slow way, which tells why it is refused. */
	req = mpsup_json_loadb(line, len, max_depth);
	if (!req && mpsup_json_depth(line, len) > max_depth) {
		mpsup_error_set(ret_err, MPSUP_E_TOO_LARGE, "JSON nested deeper than %zu levels",
				max_depth);
		return -EBADMSG;
	}

	/* Decode any value, so a scalar gets the clearer "not an object". */
	if (!req &&
	    !(req = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr))) {
		mpsup_error_set(ret_err, MPSUP_E_BAD_REQUEST, "invalid JSON at column %d: %s",
				jerr.column, jerr.text);
		return -EBADMSG;
	}
	if (!json_is_object(req)) {
		json_decref(req);
		mpsup_error_set(ret_err, MPSUP_E_BAD_REQUEST, "request must be a JSON object");
		return -EBADMSG;
	}

	id = json_object_get(req, "id");
	cmd = json_object_get(req, "cmd");
	if (!json_is_string(cmd)) {
		if (cmd)
			mpsup_error_set(ret_err, MPSUP_E_BAD_REQUEST,
					"member \"cmd\" must be a string");
		else
			mpsup_error_set(ret_err, MPSUP_E_BAD_REQUEST,
					"missing string member \"cmd\"");
		if (ret_id && id)
			*ret_id = json_incref(id);
		json_decref(req);
		return -EBADMSG;
	}

	if (ret_cmd)
		*ret_cmd = json_string_value(cmd);
	if (ret_req)
		*ret_req = req;
	else
		json_decref(req);
	return 0;
}

int mpsup_request_read(const char *line, size_t len, size_t max_depth, json_t **ret_params,
		       json_t **ret_id, char *cmd, size_t cmd_size, struct mpsup_error *ret_err)
{
	const char *name;
	json_t *req;
	int r;

	if (max_depth == 0)
		max_depth = MPSUP_DEFAULT_MAX_DEPTH;
	*ret_id = NULL;
	if (!cmd || cmd_size == 0) {
		mpsup_error_set(ret_err, MPSUP_E_INTERNAL, "no room for the command name");
		return -EINVAL;
	}
	if (json_read_request(line, len, max_depth, ret_params, ret_id, cmd, cmd_size) == 0)
		return 0;
	/* The slow way: the same checks, and a message when it fails. */
	r = mpsup_request_parse(line, len, max_depth, &req, &name, ret_id, ret_err);
	if (r < 0)
		return r;
	snprintf(cmd, cmd_size, "%s", name);
	*ret_id = json_incref(json_object_get(req, "id"));
	json_object_del(req, "id");
	json_object_del(req, "cmd");
	*ret_params = req;
	return 0;
}

json_t *mpsup_response_ok(json_t *id, json_t *result)
{
	json_t *resp = json_object();

	if (!result)
		result = json_null();
	if (!resp || json_object_set_new(resp, "id", id ? json_incref(id) : json_null()) < 0 ||
	    json_object_set_new(resp, "ok", json_true()) < 0) {
		json_decref(result);
		json_decref(resp);
		return NULL;
	}
	/* set_new consumes result even when it fails. */
	if (json_object_set_new(resp, "result", result) < 0) {
		json_decref(resp);
		return NULL;
	}
	return resp;
}

/* Length of the valid UTF-8 sequence at s (no overlongs, surrogates or
 * code points past U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned c = s[0], min, cp;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A copy of s with every byte that is not valid UTF-8 replaced by '?':
 * messages quote client input and may cut a character in two. */
static char *utf8_sanitize(const char *s)
{
	size_t len = strlen(s), i = 0;
	char *out = malloc(len + 1);

	if (!out)
		return NULL;
	while (i < len) {
		size_t n = utf8_seq_len((const unsigned char *)s + i);
		if (n == 0) {
			out[i++] = '?';
			continue;
		}
		memcpy(out + i, s + i, n);
		i += n;
	}
	out[len] = '\0';
	return out;
}

json_t *mpsup_response_error(json_t *id, enum mpsup_err code, const char *message)
{
	const char *name = mpsup_err_name(code);
	json_t *resp, *err;

	if (!name || code == MPSUP_OK)
		name = mpsup_err_name(MPSUP_E_INTERNAL);
	err = json_pack("{s:s, s:s}", "code", name, "message", message ? message : "");
	if (!err && message) {
		/* Not UTF-8 (jansson refuses it): answer anyway, never drop it. */
		char *clean = utf8_sanitize(message);
		if (clean)
			err = json_pack("{s:s, s:s}", "code", name, "message", clean);
		free(clean);
	}
	if (!err)
		return NULL;
	resp = json_object();
	if (!resp || json_object_set_new(resp, "id", id ? json_incref(id) : json_null()) < 0 ||
	    json_object_set_new(resp, "ok", json_false()) < 0 ||
	    json_object_set(resp, "error", err) < 0) {
		json_decref(err);
		json_decref(resp);
		return NULL;
	}
	json_decref(err);
	return resp;
}

int mpsup_response_parse(json_t *resp, json_t **ret_id, json_t **ret_result,
			 struct mpsup_error *ret_err)
{
	json_t *ok, *err, *code, *message;
	const char *code_name, *text;
	int c;

	if (!json_is_object(resp))
		return -EBADMSG;
	ok = json_object_get(resp, "ok");
	if (!json_is_boolean(ok))
		return -EBADMSG;

	if (json_is_true(ok)) {
		if (ret_id)
			*ret_id = json_object_get(resp, "id");
		if (ret_result)
			*ret_result = json_object_get(resp, "result");
		return 0;
	}

	err = json_object_get(resp, "error");
	code = json_object_get(err, "code");
	message = json_object_get(err, "message");
	if (!json_is_object(err) || !json_is_string(code) || (message && !json_is_string(message)))
		return -EBADMSG;

	code_name = json_string_value(code);
	text = message ? json_string_value(message) : "";
	c = mpsup_err_from_name(code_name);
	if (ret_err) {
		/* An unknown (newer) code is kept by name and handled as internal. */
		mpsup_error_set(ret_err, c > 0 ? (enum mpsup_err)c : MPSUP_E_INTERNAL, "%s", text);
		snprintf(ret_err->code_name, sizeof(ret_err->code_name), "%s", code_name);
	}
	if (ret_id)
		*ret_id = json_object_get(resp, "id");
	return 1;
}
