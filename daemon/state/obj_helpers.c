/* Helpers shared by the shared-state types (obj.h). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "obj.h"

/* --- helpers for the types ------------------------------------------------------------ */

bool obj_json_equal(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b)) {
		if (json_is_integer(a) && json_is_integer(b))
			return json_integer_value(a) == json_integer_value(b);
		return json_number_value(a) == json_number_value(b);
	}
	return json_equal(a, b);
}

bool obj_num_add(json_t *a, json_t *b, json_t **ret)
{
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t s;
		if (__builtin_add_overflow(json_integer_value(a), json_integer_value(b), &s))
			return false;
		*ret = json_integer(s);
	} else {
		double d = json_number_value(a) + json_number_value(b);
		if (!isfinite(d))
			return false;
		*ret = json_real(d);
	}
	return true;
}

bool obj_index(json_int_t idx, size_t len, size_t *ret)
{
	if (idx < 0)
		idx += (json_int_t)len;
	if (idx < 0 || (size_t)idx >= len)
		return false;
	*ret = (size_t)idx;
	return true;
}

/* One slice bound, Python style: negative from the end, clamped. */
static size_t slice_bound(json_t *v, size_t len, size_t def)
{
	json_int_t i;

	if (!v)
		return def;
	i = json_integer_value(v);
	if (i < 0) {
		i += (json_int_t)len;
		if (i < 0)
			i = 0;
	}
	return (size_t)i > len ? len : (size_t)i;
}

void obj_slice(json_t *start, json_t *stop, size_t len, size_t *ret_start, size_t *ret_stop)
{
	*ret_start = slice_bound(start, len, 0);
	*ret_stop = slice_bound(stop, len, len);
	if (*ret_stop < *ret_start)
		*ret_stop = *ret_start;
}

int obj_opt_int(json_t *opts, const char *key, json_int_t def, json_int_t min, json_int_t max,
		json_int_t *ret, char *err, size_t errlen)
{
	json_t *v = json_object_get(opts, key);

	if (!v || json_is_null(v)) {
		*ret = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(err, errlen, "'%s' must be an integer in [%lld, %lld]", key,
			 (long long)min, (long long)max);
		return -1;
	}
	*ret = json_integer_value(v);
	return 0;
}

int obj_opts_only(json_t *opts, const char *const *keys, char *err, size_t errlen)
{
	const char *key;
	json_t *v;

	json_object_foreach(opts, key, v) {
		bool known = strcmp(key, "name") == 0 || strcmp(key, "type") == 0 ||
			     strcmp(key, "scope") == 0;
		for (const char *const *k = keys; *k && !known; k++)
			known = strcmp(*k, key) == 0;
		if (!known) {
			snprintf(err, errlen, "unknown option '%.64s'", key);
			return -1;
		}
	}
	return 0;
}

bool obj_items_fit(size_t have, size_t adding)
{
	size_t max = daemon_g.conf->max_object_items;

	return obj_restoring || (adding <= max && have <= max - adding);
}

bool obj_items_room(struct obj_call *c, size_t have, size_t adding)
{
	if (obj_items_fit(have, adding))
		return true;
	obj_error(c, MPSUP_E_LIMIT, "%s: %zu %s would be more than max_object_items (%u)",
		  c->o->name, have + adding, c->o->type == &dict_type ? "keys" : "items",
		  daemon_g.conf->max_object_items);
	return false;
}
