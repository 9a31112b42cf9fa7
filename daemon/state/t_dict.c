/* The dict type: a JSON object of any values (Manager().dict()). */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "daemon.h"
#include "obj.h"

#define D(c) ((json_t *)(c)->o->data)

/* The key parameter: a string that may hold any character. */
#define KEY(c) (c)->arg[0]->str, (c)->arg[0]->str_len

static const char *const dict_options[] = { "items", NULL };

static enum mpsup_err dict_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_t *items = json_object_get(opts, "items");

	if (obj_opts_only(opts, dict_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	if (items && !json_is_object(items)) {
		snprintf(err, errlen, "'items' must be an object");
		return MPSUP_E_BAD_REQUEST;
	}
	if (items && !obj_items_fit(0, json_object_size(items))) {
		snprintf(err, errlen, "'items' holds %zu keys, more than max_object_items (%u)",
			 json_object_size(items), daemon_g.conf->max_object_items);
		return MPSUP_E_LIMIT;
	}
	o->data = items ? json_copy(items) : json_object();
	if (!o->data) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	return MPSUP_OK;
}

static void dict_free(struct obj *o)
{
	json_decref(o->data);
}

/* Borrowed state: serialize it before the event loop runs again. */
static json_t *dict_get_all(const struct obj *o)
{
	return json_incref(o->data);
}

static json_t *dict_dump(const struct obj *o)
{
	return json_pack("{s:O}", "items", (json_t *)o->data);
}

static size_t dict_size(const struct obj *o)
{
	return json_object_size(o->data);
}

static size_t dict_mem(const struct obj *o)
{
	return obj_mem_of(o->data);
}

/* The key of c now holds v (NULL: nothing) instead of old (NULL: was not
 * there): count the difference. */
static void dict_mem_swap(struct obj_call *c, json_t *old, json_t *v)
{
	size_t klen = c->arg[0]->str_len;

	obj_mem_adjust(c->o, v ? obj_mem_entry(klen, v) : 0, old ? obj_mem_entry(klen, old) : 0);
}

static bool dict_options_equal(const struct obj *o, json_t *opts)
{
	char err[128];

	(void)o;
	return obj_opts_only(opts, dict_options, err, sizeof(err)) == 0;
}

/* get {key, default?} */
static enum cmd_ret dict_get(struct obj_call *c)
{
	json_t *v = json_object_getn(D(c), KEY(c));

	if (!v && !(v = obj_arg(c, 1))) {
		obj_error(c, MPSUP_E_NOT_FOUND, "%s: no key '%.100s'", c->o->name,
			  json_string_value(obj_arg(c, 0)));
		return CMD_DONE;
	}
	obj_ok(c, json_incref(v));
	return CMD_DONE;
}

/* set {key, value} */
static enum cmd_ret dict_set(struct obj_call *c)
{
	json_t *old = json_object_getn(D(c), KEY(c));

	/* A new key needs room (max_object_items). */
	if (!old && !obj_items_room(c, json_object_size(D(c)), 1))
		return CMD_DONE;
	json_incref(old);
	if (json_object_setn_new_nocheck(D(c), KEY(c), json_incref(obj_arg(c, 1))) < 0) {
		json_decref(old);
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	dict_mem_swap(c, old, obj_arg(c, 1));
	json_decref(old);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* del {key}: not_found when missing */
static enum cmd_ret dict_del(struct obj_call *c)
{
	json_t *old = json_object_getn(D(c), KEY(c));

	if (!old) {
		obj_error(c, MPSUP_E_NOT_FOUND, "%s: no key '%.100s'", c->o->name,
			  json_string_value(obj_arg(c, 0)));
		return CMD_DONE;
	}
	dict_mem_swap(c, old, NULL);
	json_object_deln(D(c), KEY(c));
	obj_ok(c, NULL);
	return CMD_DONE;
}

static enum cmd_ret dict_has(struct obj_call *c)
{
	obj_ok(c, json_boolean(json_object_getn(D(c), KEY(c)) != NULL));
	return CMD_DONE;
}

static enum cmd_ret dict_keys(struct obj_call *c)
{
	json_t *keys = json_array();
	const char *k;
	size_t klen;
	json_t *v;

	json_object_keylen_foreach(D(c), k, klen, v)
		json_array_append_new(keys, json_stringn_nocheck(k, klen));
	obj_ok(c, keys);
	return CMD_DONE;
}

static enum cmd_ret dict_values(struct obj_call *c)
{
	json_t *vals = json_array();
	const char *k;
	json_t *v;

	json_object_foreach(D(c), k, v)
		json_array_append(vals, v);
	obj_ok(c, vals);
	return CMD_DONE;
}

/* items -> [[key, value], ...] */
static enum cmd_ret dict_items(struct obj_call *c)
{
	json_t *items = json_array();
	const char *k;
	size_t klen;
	json_t *v;

	json_object_keylen_foreach(D(c), k, klen, v)
		json_array_append_new(items, json_pack("[s%O]", k, klen, v));
	obj_ok(c, items);
	return CMD_DONE;
}

static enum cmd_ret dict_len(struct obj_call *c)
{
	obj_ok(c, json_integer((json_int_t)json_object_size(D(c))));
	return CMD_DONE;
}

/* update {items: {}}: all or nothing under max_object_items */
static enum cmd_ret dict_update(struct obj_call *c)
{
	size_t fresh = 0, klen, add = 0, sub = 0;
	const char *k;
	json_t *v, *old;

	json_object_keylen_foreach(obj_arg(c, 0), k, klen, v) {
		old = json_object_getn(D(c), k, klen);
		fresh += !old;
		add += obj_mem_entry(klen, v);
		sub += old ? obj_mem_entry(klen, old) : 0;
	}
	if (!obj_items_room(c, json_object_size(D(c)), fresh))
		return CMD_DONE;
	if (json_object_update(D(c), obj_arg(c, 0)) < 0) {
		obj_mem_recount(c->o); /* some keys may have been set */
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	obj_mem_adjust(c->o, add, sub);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* pop {key, default?} -> the value removed (or default) */
static enum cmd_ret dict_pop(struct obj_call *c)
{
	json_t *v = json_object_getn(D(c), KEY(c));

	if (!v) {
		if (!obj_arg(c, 1)) {
			obj_error(c, MPSUP_E_NOT_FOUND, "%s: no key '%.100s'", c->o->name,
				  json_string_value(obj_arg(c, 0)));
			return CMD_DONE;
		}
		obj_ok(c, json_incref(obj_arg(c, 1)));
		return CMD_DONE;
	}
	json_incref(v);
	dict_mem_swap(c, v, NULL);
	json_object_deln(D(c), KEY(c));
	obj_ok(c, v);
	return CMD_DONE;
}

/* setdefault {key, value?} -> the value now stored */
static enum cmd_ret dict_setdefault(struct obj_call *c)
{
	json_t *v = json_object_getn(D(c), KEY(c));

	if (!v) {
		if (!obj_items_room(c, json_object_size(D(c)), 1))
			return CMD_DONE;
		v = obj_arg(c, 1) ? obj_arg(c, 1) : json_null();
		if (json_object_setn_new_nocheck(D(c), KEY(c), json_incref(v)) < 0) {
			obj_error(c, MPSUP_E_INTERNAL, "out of memory");
			return CMD_DONE;
		}
		dict_mem_swap(c, NULL, v);
	}
	obj_ok(c, json_incref(v));
	return CMD_DONE;
}

static enum cmd_ret dict_clear(struct obj_call *c)
{
	json_object_clear(D(c));
	obj_mem_recount(c->o);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* incr {key, by?:1} -> the new value; a missing key counts as 0 */
static enum cmd_ret dict_incr(struct obj_call *c)
{
	json_t *by = obj_arg(c, 1), *cur = json_object_getn(D(c), KEY(c)), *sum;

	if (cur && !json_is_number(cur)) {
		obj_error(c, MPSUP_E_CONFLICT, "%s: '%.100s' does not hold a number", c->o->name,
			  json_string_value(obj_arg(c, 0)));
		return CMD_DONE;
	}
	if (!cur && !obj_items_room(c, json_object_size(D(c)), 1))
		return CMD_DONE;
	if ((!cur || json_is_integer(cur)) && (!by || json_is_integer(by))) {
		json_int_t b = by ? json_integer_value(by) : 1, s;

		if (__builtin_add_overflow(cur ? json_integer_value(cur) : 0, b, &s)) {
			obj_error(c, MPSUP_E_OUT_OF_RANGE,
				  "%s: '%.100s' would leave the 64-bit integer range", c->o->name,
				  json_string_value(obj_arg(c, 0)));
			return CMD_DONE;
		}
		/* In place when nobody else holds the number: no allocation. */
		if (cur && cur->refcount == 1) {
			json_integer_set(cur, s);
			obj_ok(c, json_incref(cur));
			return CMD_DONE;
		}
		sum = json_integer(s);
	} else {
		double d = (cur ? json_number_value(cur) : 0) + (by ? json_number_value(by) : 1);

		if (!isfinite(d)) {
			obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: '%.100s' would overflow a double",
				  c->o->name, json_string_value(obj_arg(c, 0)));
			return CMD_DONE;
		}
		sum = json_real(d);
	}
	if (!sum || json_object_setn_new_nocheck(D(c), KEY(c), json_incref(sum)) < 0) {
		json_decref(sum);
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (!cur) /* a number replacing a number counts the same */
		dict_mem_swap(c, NULL, sum);
	obj_ok(c, sum);
	return CMD_DONE;
}

/* cas {key, expect, value} -> {swapped}; a missing key matches expect null */
static enum cmd_ret dict_cas(struct obj_call *c)
{
	json_t *cur = json_object_getn(D(c), KEY(c));
	bool swap = cur ? obj_json_equal(cur, obj_arg(c, 1)) : json_is_null(obj_arg(c, 1));

	if (swap && !cur && !obj_items_room(c, json_object_size(D(c)), 1))
		return CMD_DONE;
	if (swap) {
		json_incref(cur);
		if (json_object_setn_new_nocheck(D(c), KEY(c), json_incref(obj_arg(c, 2))) < 0) {
			json_decref(cur);
			obj_error(c, MPSUP_E_INTERNAL, "out of memory");
			return CMD_DONE;
		}
		dict_mem_swap(c, cur, obj_arg(c, 2));
		json_decref(cur);
	}
	obj_ok(c, json_pack("{s:b}", "swapped", swap));
	return CMD_DONE;
}

static const struct obj_op dict_ops[] = {
	{ "dict.get", ROLE_READ, OBJ_OP_EXISTING, dict_get, "s:key o:default?" },
	{ "dict.set", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, dict_set, "s:key o:value" },
	{ "dict.del", ROLE_STATE, CMD_MUTATES, dict_del, "s:key" },
	{ "dict.has", ROLE_READ, OBJ_OP_EXISTING, dict_has, "s:key" },
	{ "dict.keys", ROLE_READ, OBJ_OP_EXISTING, dict_keys, "" },
	{ "dict.values", ROLE_READ, OBJ_OP_EXISTING, dict_values, "" },
	{ "dict.items", ROLE_READ, OBJ_OP_EXISTING, dict_items, "" },
	{ "dict.len", ROLE_READ, OBJ_OP_EXISTING, dict_len, "" },
	{ "dict.update", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, dict_update, "O:items" },
	{ "dict.pop", ROLE_STATE, CMD_MUTATES, dict_pop, "s:key o:default?" },
	{ "dict.setdefault", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, dict_setdefault,
	  "s:key o:value?" },
	{ "dict.clear", ROLE_STATE, CMD_MUTATES, dict_clear, "" },
	{ "dict.incr", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, dict_incr, "s:key n:by?" },
	{ "dict.cas", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, dict_cas, "s:key o:expect o:value" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type dict_type = {
	.name = "dict",
	.create = dict_create,
	.free = dict_free,
	.get = dict_get_all,
	.dump = dict_dump,
	.size = dict_size,
	.mem = dict_mem,
	.options_equal = dict_options_equal,
	.ops = dict_ops,
};
