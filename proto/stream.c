/*
 * Streamed answers (events.subscribe, proc.logs follow, pool.imap): a
 * request answered once as usual and then by further lines until the
 * connection closes. mpctl reads every stream through these.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpsup.h"

int mpsup_stream_open(struct mpsup_client *c, const char *cmd, json_t *params, json_t **ret_result,
		      struct mpsup_error *ret_err)
{
	/* the first answer is an ordinary one, with the request's id */
	return mpsup_call(c, cmd, params, ret_result, ret_err);
}

int mpsup_stream_next(struct mpsup_client *c, json_t **ret_msg)
{
	char *line;
	size_t len;
	json_t *msg;
	int r;

	if (!c || !ret_msg)
		return -EINVAL;
	if ((r = mpsup_recv_line(c, &line, &len)) < 0)
		return r;
	/* the fast reader, or jansson for what it leaves */
	if (!(msg = mpsup_json_loadb(line, len, 0)))
		msg = json_loadb(line, len, 0, NULL);
	free(line);
	if (!json_is_object(msg)) {
		json_decref(msg);
		return -EBADMSG;
	}
	*ret_msg = msg;
	return 0;
}

int mpsup_imap_open(struct mpsup_client *c, const char *pool, json_t *items, bool ordered,
		    size_t chunksize, size_t *ret_n, struct mpsup_error *ret_err)
{
	json_t *params, *result = NULL;
	int r;

	if (!c || !pool || !json_is_array(items))
		return -EINVAL;
	params = json_pack("{s:s, s:O, s:b}", "pool", pool, "items", items, "ordered", ordered);
	if (params && chunksize &&
	    json_object_set_new(params, "chunksize", json_integer((json_int_t)chunksize)) < 0) {
		json_decref(params);
		params = NULL;
	}
	if (!params)
		return -ENOMEM;
	r = mpsup_stream_open(c, "pool.imap", params, &result, ret_err);
	json_decref(params);
	if (r == 0) {
		json_t *n = json_object_get(result, "n");
		if (!json_is_integer(n) || json_integer_value(n) < 0)
			r = -EBADMSG;
		else if (ret_n)
			*ret_n = (size_t)json_integer_value(n);
	}
	json_decref(result);
	return r;
}

/* Fill err from an item's {code, message}. */
static void item_error(const json_t *e, struct mpsup_error *err)
{
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	int k = code ? mpsup_err_from_name(code) : -EINVAL;

	memset(err, 0, sizeof(*err));
	err->code = k < 0 ? MPSUP_E_INTERNAL : (enum mpsup_err)k;
	snprintf(err->code_name, sizeof(err->code_name), "%s", code ? code : "internal");
	snprintf(err->message, sizeof(err->message), "%s", msg ? msg : "");
}

int mpsup_imap_next(struct mpsup_client *c, struct mpsup_imap_item *ret_item, size_t *ret_failed)
{
	json_t *msg, *ix, *res, *err;
	int r;

	if (!c || !ret_item)
		return -EINVAL;
	if ((r = mpsup_stream_next(c, &msg)) < 0)
		return r;
	if (json_is_true(json_object_get(msg, "done"))) {
		json_t *f = json_object_get(msg, "failed");
		if (ret_failed)
			*ret_failed = json_is_integer(f) ? (size_t)json_integer_value(f) : 0;
		json_decref(msg);
		return 0;
	}
	ix = json_object_get(msg, "index");
	res = json_object_get(msg, "result");
	err = json_object_get(msg, "error");
	if (!json_is_integer(ix) || json_integer_value(ix) < 0 || (res != NULL) == (err != NULL)) {
		json_decref(msg);
		return -EBADMSG;
	}
	memset(ret_item, 0, sizeof(*ret_item));
	ret_item->index = (size_t)json_integer_value(ix);
	if (res)
		ret_item->result = json_incref(res);
	else
		item_error(err, &ret_item->error);
	json_decref(msg);
	return 1;
}
