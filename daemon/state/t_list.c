/* The list type: a JSON array of any values (Manager().list()). */
#include "config.h"

#include <stdio.h>

#include "daemon.h"
#include "obj.h"

#define L(c) ((json_t *)(c)->o->data)

static const char *const list_options[] = { "items", NULL };

static enum mpsup_err list_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_t *items = json_object_get(opts, "items");

	if (obj_opts_only(opts, list_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	if (items && !json_is_array(items)) {
		snprintf(err, errlen, "'items' must be an array");
		return MPSUP_E_BAD_REQUEST;
	}
	if (items && !obj_items_fit(0, json_array_size(items))) {
		snprintf(err, errlen, "'items' holds %zu items, more than max_object_items (%u)",
			 json_array_size(items), daemon_g.conf->max_object_items);
		return MPSUP_E_LIMIT;
	}
	o->data = items ? json_copy(items) : json_array();
	if (!o->data) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	return MPSUP_OK;
}

static void list_free(struct obj *o)
{
	json_decref(o->data);
}

/* Borrowed state: serialize it before the event loop runs again. */
static json_t *list_get_all(const struct obj *o)
{
	return json_incref(o->data);
}

static json_t *list_dump(const struct obj *o)
{
	return json_pack("{s:O}", "items", (json_t *)o->data);
}

static size_t list_size(const struct obj *o)
{
	return json_array_size(o->data);
}

static size_t list_mem(const struct obj *o)
{
	return obj_mem_of(o->data);
}

static bool list_options_equal(const struct obj *o, json_t *opts)
{
	char err[128];

	(void)o;
	return obj_opts_only(opts, list_options, err, sizeof(err)) == 0;
}

/* The index parameter resolved, or NULL-equivalent false after answering. */
static bool list_index(struct obj_call *c, json_t *v, size_t *ret)
{
	if (obj_index(json_integer_value(v), json_array_size(L(c)), ret))
		return true;
	obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: index %lld out of range (length %zu)", c->o->name,
		  (long long)json_integer_value(v), json_array_size(L(c)));
	return false;
}

static enum cmd_ret list_oom(struct obj_call *c)
{
	obj_error(c, MPSUP_E_INTERNAL, "out of memory");
	return CMD_DONE;
}

/* append {value} */
static enum cmd_ret list_append(struct obj_call *c)
{
	if (!obj_items_room(c, json_array_size(L(c)), 1))
		return CMD_DONE;
	if (json_array_append(L(c), obj_arg(c, 0)) < 0)
		return list_oom(c);
	obj_mem_adjust(c->o, obj_mem_elem(obj_arg(c, 0)), 0);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* extend {values: []} */
static enum cmd_ret list_extend(struct obj_call *c)
{
	size_t i, add = 0;
	json_t *v;

	if (!obj_items_room(c, json_array_size(L(c)), json_array_size(obj_arg(c, 0))))
		return CMD_DONE;
	if (json_array_extend(L(c), obj_arg(c, 0)) < 0)
		return list_oom(c);
	json_array_foreach(obj_arg(c, 0), i, v)
		add += obj_mem_elem(v);
	obj_mem_adjust(c->o, add, 0);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* insert {index, value}: Python's list.insert (the index is clamped) */
static enum cmd_ret list_insert(struct obj_call *c)
{
	json_int_t i = json_integer_value(obj_arg(c, 0)), len = (json_int_t)json_array_size(L(c));

	if (i < 0 && (i += len) < 0)
		i = 0;
	if (i > len)
		i = len;
	if (!obj_items_room(c, (size_t)len, 1))
		return CMD_DONE;
	if (json_array_insert(L(c), (size_t)i, obj_arg(c, 1)) < 0)
		return list_oom(c);
	obj_mem_adjust(c->o, obj_mem_elem(obj_arg(c, 1)), 0);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* get {index} */
static enum cmd_ret list_get(struct obj_call *c)
{
	size_t i;

	if (list_index(c, obj_arg(c, 0), &i))
		obj_ok(c, json_incref(json_array_get(L(c), i)));
	return CMD_DONE;
}

/* set {index, value} */
static enum cmd_ret list_set(struct obj_call *c)
{
	size_t i;

	size_t old;

	if (!list_index(c, obj_arg(c, 0), &i))
		return CMD_DONE;
	old = obj_mem_elem(json_array_get(L(c), i));
	if (json_array_set(L(c), i, obj_arg(c, 1)) < 0)
		return list_oom(c);
	obj_mem_adjust(c->o, obj_mem_elem(obj_arg(c, 1)), old);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* pop {index?:-1} -> the item */
static enum cmd_ret list_pop(struct obj_call *c)
{
	size_t n = json_array_size(L(c)), i;
	json_t *v;

	if (n == 0) {
		obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: pop from an empty list", c->o->name);
		return CMD_DONE;
	}
	if (!obj_has(c, 0))
		i = n - 1;
	else if (!list_index(c, obj_arg(c, 0), &i))
		return CMD_DONE;
	v = json_incref(json_array_get(L(c), i));
	json_array_remove(L(c), i);
	obj_mem_adjust(c->o, 0, obj_mem_elem(v));
	obj_ok(c, v);
	return CMD_DONE;
}

/* The first position of value, or -1. */
static long list_find(json_t *l, json_t *value)
{
	size_t i;
	json_t *v;

	json_array_foreach(l, i, v)
		if (obj_json_equal(v, value))
			return (long)i;
	return -1;
}

/* remove {value}: the first equal item; not_found when there is none */
static enum cmd_ret list_remove(struct obj_call *c)
{
	long i = list_find(L(c), obj_arg(c, 0));

	if (i < 0) {
		obj_error(c, MPSUP_E_NOT_FOUND, "%s: value not in list", c->o->name);
		return CMD_DONE;
	}
	obj_mem_adjust(c->o, 0, obj_mem_elem(json_array_get(L(c), (size_t)i)));
	json_array_remove(L(c), (size_t)i);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* index {value} -> position of the first equal item */
static enum cmd_ret list_index_of(struct obj_call *c)
{
	long i = list_find(L(c), obj_arg(c, 0));

	if (i < 0) {
		obj_error(c, MPSUP_E_NOT_FOUND, "%s: value not in list", c->o->name);
		return CMD_DONE;
	}
	obj_ok(c, json_integer(i));
	return CMD_DONE;
}

static enum cmd_ret list_count(struct obj_call *c)
{
	json_int_t n = 0;
	size_t i;
	json_t *v;

	json_array_foreach(L(c), i, v)
		n += obj_json_equal(v, obj_arg(c, 0));
	obj_ok(c, json_integer(n));
	return CMD_DONE;
}

static enum cmd_ret list_len(struct obj_call *c)
{
	obj_ok(c, json_integer((json_int_t)json_array_size(L(c))));
	return CMD_DONE;
}

/* slice {start?, stop?} -> items [start, stop) */
static enum cmd_ret list_slice(struct obj_call *c)
{
	size_t start, stop;
	json_t *out = json_array();

	obj_slice(obj_arg(c, 0), obj_arg(c, 1), json_array_size(L(c)), &start, &stop);
	for (size_t i = start; out && i < stop; i++)
		json_array_append(out, json_array_get(L(c), i));
	obj_ok(c, out);
	return CMD_DONE;
}

static enum cmd_ret list_clear(struct obj_call *c)
{
	json_array_clear(L(c));
	obj_mem_recount(c->o);
	obj_ok(c, NULL);
	return CMD_DONE;
}

static const struct obj_op list_ops[] = {
	{ "list.append", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, list_append, "o:value" },
	{ "list.extend", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, list_extend, "a:values" },
	{ "list.insert", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, list_insert, "i:index o:value" },
	{ "list.get", ROLE_READ, OBJ_OP_EXISTING, list_get, "i:index" },
	{ "list.set", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, list_set, "i:index o:value" },
	{ "list.pop", ROLE_STATE, CMD_MUTATES, list_pop, "i:index?" },
	{ "list.remove", ROLE_STATE, CMD_MUTATES, list_remove, "o:value" },
	{ "list.index", ROLE_READ, OBJ_OP_EXISTING, list_index_of, "o:value" },
	{ "list.count", ROLE_READ, OBJ_OP_EXISTING, list_count, "o:value" },
	{ "list.len", ROLE_READ, OBJ_OP_EXISTING, list_len, "" },
	{ "list.slice", ROLE_READ, OBJ_OP_EXISTING, list_slice, "i:start? i:stop?" },
	{ "list.clear", ROLE_STATE, CMD_MUTATES, list_clear, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type list_type = {
	.name = "list",
	.create = list_create,
	.free = list_free,
	.get = list_get_all,
	.dump = list_dump,
	.size = list_size,
	.mem = list_mem,
	.options_equal = list_options_equal,
	.ops = list_ops,
};
