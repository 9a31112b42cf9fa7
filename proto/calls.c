/*
 * Convenience calls for shared state. Each builds the params, runs
 * mpsup_call and unpacks the result; a negative timeout leaves the
 * "timeout" param out (block forever).
 */
#include "config.h"

#include <errno.h>

#include "mpsup.h"

/* mpsup_call that consumes params. */
static int call_steal(struct mpsup_client *c, const char *cmd, json_t *params, json_t **ret_result,
		      struct mpsup_error *ret_err)
{
	int r;

	if (!params)
		return -ENOMEM;
	r = mpsup_call(c, cmd, params, ret_result, ret_err);
	json_decref(params);
	return r;
}

/* call_steal with a timeout member added: none when it is negative
 * (forever), -EINVAL when it is NaN. */
static int call_timed(struct mpsup_client *c, const char *cmd, json_t *params, double timeout,
		      json_t **ret_result, struct mpsup_error *ret_err)
{
	if (params && timeout != timeout) { /* NaN */
		json_decref(params);
		return -EINVAL;
	}
	if (params && timeout >= 0 &&
	    json_object_set_new(params, "timeout", json_real(timeout)) < 0) {
		json_decref(params);
		return -ENOMEM;
	}
	return call_steal(c, cmd, params, ret_result, ret_err);
}

int mpsup_value_add(struct mpsup_client *c, const char *name, json_int_t by, json_int_t *ret_value,
		    struct mpsup_error *ret_err)
{
	json_t *result = NULL;
	int r;

	if (!name)
		return -EINVAL;
	r = call_steal(c, "value.add", json_pack("{s:s, s:I}", "name", name, "by", by), &result,
		       ret_err);
	if (r != 0)
		return r;
	if (!json_is_integer(result)) {
		/* A "d" (float) value has no json_int_t answer. */
		json_decref(result);
		return -EBADMSG;
	}
	if (ret_value)
		*ret_value = json_integer_value(result);
	json_decref(result);
	return 0;
}

int mpsup_dict_set(struct mpsup_client *c, const char *name, const char *key, json_t *value,
		   struct mpsup_error *ret_err)
{
	if (!name || !key)
		return -EINVAL;
	return call_steal(c, "dict.set",
			  json_pack("{s:s, s:s, s:O}", "name", name, "key", key, "value",
				    value ? value : json_null()),
			  NULL, ret_err);
}

int mpsup_dict_get(struct mpsup_client *c, const char *name, const char *key, json_t **ret_value,
		   struct mpsup_error *ret_err)
{
	if (!name || !key)
		return -EINVAL;
	return call_steal(c, "dict.get", json_pack("{s:s, s:s}", "name", name, "key", key),
			  ret_value, ret_err);
}

int mpsup_queue_put(struct mpsup_client *c, const char *name, json_t *item, double timeout,
		    struct mpsup_error *ret_err)
{
	if (!name)
		return -EINVAL;
	return call_timed(c, "queue.put",
			  json_pack("{s:s, s:O}", "name", name, "item", item ? item : json_null()),
			  timeout, NULL, ret_err);
}

int mpsup_queue_get(struct mpsup_client *c, const char *name, double timeout, json_t **ret_item,
		    struct mpsup_error *ret_err)
{
	if (!name)
		return -EINVAL;
	return call_timed(c, "queue.get", json_pack("{s:s}", "name", name), timeout, ret_item,
			  ret_err);
}

int mpsup_lock_acquire(struct mpsup_client *c, const char *name, double timeout, bool *ret_acquired,
		       struct mpsup_error *ret_err)
{
	json_t *result = NULL, *acquired;
	int r;

	if (!name)
		return -EINVAL;
	r = call_timed(c, "lock.acquire", json_pack("{s:s}", "name", name), timeout, &result,
		       ret_err);
	if (r != 0)
		return r;
	acquired = json_object_get(result, "acquired");
	if (!json_is_boolean(acquired)) {
		json_decref(result);
		return -EBADMSG;
	}
	if (ret_acquired)
		*ret_acquired = json_is_true(acquired);
	json_decref(result);
	return 0;
}

int mpsup_lock_release(struct mpsup_client *c, const char *name, struct mpsup_error *ret_err)
{
	if (!name)
		return -EINVAL;
	return call_steal(c, "lock.release", json_pack("{s:s}", "name", name), NULL, ret_err);
}
