/* The list type: a sequence of any JSON values (Manager().list()), packed. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "jsonw.h"
#include "obj.h"
#include "packed.h"

#define L(c) ((struct packed *)(c)->o->data)
#define P(o) ((struct packed *)(o)->data)

static const char *const list_options[] = { "items", NULL };

static enum mpsup_err list_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_t *items = json_object_get(opts, "items"), *v;
	struct packed *p;
	size_t i;

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
	if (!(p = calloc(1, sizeof(*p))))
		goto oom;
	json_array_foreach(items, i, v)
		if (packed_insert_json(p, i, v) < 0) {
			packed_free(p);
			free(p);
			goto oom;
		}
	o->data = p;
	return MPSUP_OK;
oom:
	snprintf(err, errlen, "out of memory");
	return MPSUP_E_INTERNAL;
}

static void list_free(struct obj *o)
{
	packed_free(P(o));
	free(o->data);
}

static json_t *list_get_all(const struct obj *o)
{
	return packed_array(P(o), 0, P(o)->n);
}

static void list_get_text(const struct obj *o, struct jsonw *w)
{
	packed_write(P(o), 0, P(o)->n, w);
}

static json_t *list_dump(const struct obj *o)
{
	json_t *items = list_get_all(o);

	return items ? json_pack("{s:o}", "items", items) : NULL;
}

static size_t list_size(const struct obj *o)
{
	return P(o)->n;
}

/* As obj_mem_of() counts the same values in a jansson array. */
static size_t list_mem(const struct obj *o)
{
	return OBJ_MEM_NODE + P(o)->mem;
}

static bool list_options_equal(const struct obj *o, json_t *opts)
{
	char err[128];

	(void)o;
	return obj_opts_only(opts, list_options, err, sizeof(err)) == 0;
}

/* The index parameter resolved, or false after answering. */
static bool list_index(struct obj_call *c, json_t *v, size_t *ret)
{
	if (obj_index(json_integer_value(v), L(c)->n, ret))
		return true;
	obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: index %lld out of range (length %zu)", c->o->name,
		  (long long)json_integer_value(v), L(c)->n);
	return false;
}

static enum cmd_ret list_oom(struct obj_call *c)
{
	obj_error(c, MPSUP_E_INTERNAL, "out of memory");
	return CMD_DONE;
}

/* Insert parameter i (as it lies in the request) before position at. */
static enum cmd_ret list_put(struct obj_call *c, size_t at, int i)
{
	size_t mem = L(c)->mem;

	if (!obj_items_room(c, L(c)->n, 1))
		return CMD_DONE;
	if (packed_insert_member(L(c), at, c->arg[i]) < 0)
		return list_oom(c);
	obj_mem_adjust(c->o, L(c)->mem - mem, 0);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* append {value} */
static enum cmd_ret list_append(struct obj_call *c)
{
	return list_put(c, L(c)->n, 0);
}

/* extend {values: []} */
static enum cmd_ret list_extend(struct obj_call *c)
{
	size_t i, n = L(c)->n, mem = L(c)->mem;
	json_t *v;

	if (!obj_items_room(c, n, json_array_size(obj_arg(c, 0))))
		return CMD_DONE;
	json_array_foreach(obj_arg(c, 0), i, v)
		if (packed_insert_json(L(c), L(c)->n, v) < 0) {
			while (L(c)->n > n) /* all or nothing */
				packed_remove(L(c), L(c)->n - 1);
			return list_oom(c);
		}
	obj_mem_adjust(c->o, L(c)->mem - mem, 0);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* insert {index, value}: Python's list.insert (the index is clamped) */
static enum cmd_ret list_insert(struct obj_call *c)
{
	json_int_t i = json_integer_value(obj_arg(c, 0)), len = (json_int_t)L(c)->n;

	if (i < 0 && (i += len) < 0)
		i = 0;
	if (i > len)
		i = len;
	return list_put(c, (size_t)i, 1);
}

/* get {index} */
static enum cmd_ret list_get(struct obj_call *c)
{
	size_t i;
	json_t *v;

	if (!list_index(c, obj_arg(c, 0), &i))
		return CMD_DONE;
	if (!(v = packed_get(L(c), i)))
		return list_oom(c);
	obj_ok(c, v);
	return CMD_DONE;
}

/* set {index, value} */
static enum cmd_ret list_set(struct obj_call *c)
{
	size_t i, mem = L(c)->mem;

	if (!list_index(c, obj_arg(c, 0), &i))
		return CMD_DONE;
	if (packed_set_json(L(c), i, obj_arg(c, 1)) < 0)
		return list_oom(c);
	if (L(c)->mem >= mem)
		obj_mem_adjust(c->o, L(c)->mem - mem, 0);
	else
		obj_mem_adjust(c->o, 0, mem - L(c)->mem);
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* Remove position i, giving its data bytes back. */
static void list_drop(struct obj_call *c, size_t i)
{
	obj_mem_adjust(c->o, 0, packed_mem_at(L(c), i));
	packed_remove(L(c), i);
}

/* pop {index?:-1} -> the item */
static enum cmd_ret list_pop(struct obj_call *c)
{
	size_t n = L(c)->n, i;
	json_t *v;

	if (n == 0) {
		obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: pop from an empty list", c->o->name);
		return CMD_DONE;
	}
	if (!obj_has(c, 0))
		i = n - 1;
	else if (!list_index(c, obj_arg(c, 0), &i))
		return CMD_DONE;
	if (!(v = packed_get(L(c), i)))
		return list_oom(c);
	list_drop(c, i);
	obj_ok(c, v);
	return CMD_DONE;
}

/* The first position of value, or -1. */
static long list_find(const struct packed *p, json_t *value)
{
	for (size_t i = 0; i < p->n; i++)
		if (packed_equal(p, i, value))
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
	list_drop(c, (size_t)i);
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

	for (size_t i = 0; i < L(c)->n; i++)
		n += packed_equal(L(c), i, obj_arg(c, 0));
	obj_ok(c, json_integer(n));
	return CMD_DONE;
}

static enum cmd_ret list_len(struct obj_call *c)
{
	obj_ok(c, json_integer((json_int_t)L(c)->n));
	return CMD_DONE;
}

/* slice {start?, stop?} -> items [start, stop) */
static enum cmd_ret list_slice(struct obj_call *c)
{
	size_t start, stop;
	struct jsonw w;

	obj_slice(obj_arg(c, 0), obj_arg(c, 1), L(c)->n, &start, &stop);
	jsonw_init(&w);
	packed_write(L(c), start, stop, &w);
	obj_ok_text(c, &w);
	return CMD_DONE;
}

static enum cmd_ret list_clear(struct obj_call *c)
{
	packed_free(L(c));
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
	.get_text = list_get_text,
	.dump = list_dump,
	.size = list_size,
	.mem = list_mem,
	.options_equal = list_options_equal,
	.ops = list_ops,
};
