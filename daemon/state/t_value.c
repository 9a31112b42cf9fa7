/*
 * The value type (multiprocessing.Value): typecode "i" (signed 64-bit
 * integer: leaving the range is out_of_range, never a wrap), "d" (double)
 * or "any" (any JSON value; add works while it holds a number).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj.h"

enum value_kind { VALUE_INT, VALUE_DOUBLE, VALUE_ANY };

struct value {
	enum value_kind kind;
	union {
		json_int_t i;
		double d;
		json_t *any;
	} u;
};

static const char *const value_codes[] = { "i", "d", "any" };
static const char *const value_options[] = { "typecode", "init", NULL };

#define V(c) ((struct value *)(c)->o->data)

/* Parse the typecode option (absent = "any"); -1 when invalid. */
static int value_kind_parse(json_t *opts)
{
	json_t *tc = json_object_get(opts, "typecode");

	if (!tc || json_is_null(tc))
		return VALUE_ANY;
	for (int k = 0; k < 3; k++)
		if (json_is_string(tc) && strcmp(json_string_value(tc), value_codes[k]) == 0)
			return k;
	return -1;
}

/* Whether v can be stored in a value of kind k. */
static bool value_fits(enum value_kind k, json_t *v)
{
	return k == VALUE_ANY || (k == VALUE_INT ? json_is_integer(v) : json_is_number(v));
}

/* Store v (borrowed; checked with value_fits) in x. */
static void value_store(struct value *x, json_t *v)
{
	switch (x->kind) {
	case VALUE_INT: x->u.i = json_integer_value(v); break;
	case VALUE_DOUBLE: x->u.d = json_number_value(v); break;
	case VALUE_ANY:
		json_incref(v);
		json_decref(x->u.any);
		x->u.any = v;
		break;
	}
}

/* The current value as JSON (new reference). */
static json_t *value_json(const struct value *x)
{
	switch (x->kind) {
	case VALUE_INT: return json_integer(x->u.i);
	case VALUE_DOUBLE: return json_real(x->u.d);
	default: return json_incref(x->u.any);
	}
}

static enum mpsup_err value_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	int kind = value_kind_parse(opts);
	json_t *init = json_object_get(opts, "init");
	struct value *x;

	if (obj_opts_only(opts, value_options, err, errlen) < 0)
		return MPSUP_E_BAD_REQUEST;
	if (kind < 0) {
		snprintf(err, errlen, "'typecode' must be \"i\", \"d\" or \"any\"");
		return MPSUP_E_BAD_REQUEST;
	}
	if (init && !value_fits(kind, init)) {
		snprintf(err, errlen, "'init' must be %s",
			 kind == VALUE_INT ? "an integer" : "a number");
		return MPSUP_E_BAD_REQUEST;
	}
	if (!(x = calloc(1, sizeof(*x)))) {
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	x->kind = kind;
	if (kind == VALUE_ANY) {
		x->u.any = init ? json_incref(init) : json_integer(0);
		if (!x->u.any) {
			free(x);
			snprintf(err, errlen, "out of memory");
			return MPSUP_E_INTERNAL;
		}
	} else if (init) {
		value_store(x, init);
	}
	o->data = x;
	return MPSUP_OK;
}

/* Data bytes: a number counts the same whatever it holds. */
static size_t value_mem(const struct obj *o)
{
	const struct value *x = o->data;

	return x->kind == VALUE_ANY ? obj_mem_of(x->u.any) : OBJ_MEM_VALUE;
}

/* Store v in c's value and count the difference. */
static void value_replace(struct obj_call *c, json_t *v)
{
	size_t old = value_mem(c->o);

	value_store(V(c), v);
	obj_mem_adjust(c->o, value_mem(c->o), old);
}

static void value_free(struct obj *o)
{
	struct value *x = o->data;

	if (x->kind == VALUE_ANY)
		json_decref(x->u.any);
	free(x);
}

static json_t *value_get_all(const struct obj *o)
{
	return value_json(o->data);
}

static json_t *value_dump(const struct obj *o)
{
	const struct value *x = o->data;

	return json_pack("{s:s, s:o}", "typecode", value_codes[x->kind], "init", value_json(x));
}

static size_t value_size(const struct obj *o)
{
	(void)o;
	return 1;
}

static bool value_options_equal(const struct obj *o, json_t *opts)
{
	const struct value *x = o->data;
	json_t *init = json_object_get(opts, "init");
	char err[128];

	return obj_opts_only(opts, value_options, err, sizeof(err)) == 0 &&
	       value_kind_parse(opts) == (int)x->kind && (!init || value_fits(x->kind, init));
}

/* Refuse v when it does not fit; true when it does. */
static bool value_check(struct obj_call *c, json_t *v, const char *what)
{
	if (value_fits(V(c)->kind, v))
		return true;
	obj_error(c, MPSUP_E_BAD_REQUEST, "%s: '%s' must be %s (typecode %s)", c->o->name, what,
		  V(c)->kind == VALUE_INT ? "an integer" : "a number", value_codes[V(c)->kind]);
	return false;
}

static enum cmd_ret value_get(struct obj_call *c)
{
	obj_ok(c, value_json(V(c)));
	return CMD_DONE;
}

/* set {value} */
static enum cmd_ret value_set(struct obj_call *c)
{
	if (!value_check(c, obj_arg(c, 0), "value"))
		return CMD_DONE;
	value_replace(c, obj_arg(c, 0));
	obj_ok(c, NULL);
	return CMD_DONE;
}

static enum cmd_ret value_overflow(struct obj_call *c)
{
	obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: the result is out of range", c->o->name);
	return CMD_DONE;
}

/* add {by?:1} -> the new value, atomically */
static enum cmd_ret value_add(struct obj_call *c)
{
	struct value *x = V(c);
	bool by = obj_has(c, 0); /* a number (spec 'n'), read in place */
	json_int_t bi = by ? obj_arg_int(c, 0) : 1;

	switch (x->kind) {
	case VALUE_INT:
		if (by && !obj_arg_is_int(c, 0) && !value_check(c, obj_arg(c, 0), "by"))
			return CMD_DONE;
		if (__builtin_add_overflow(x->u.i, bi, &bi))
			return value_overflow(c);
		x->u.i = bi;
		obj_ok(c, json_integer(x->u.i));
		return CMD_DONE;
	case VALUE_DOUBLE: {
		double d = x->u.d + (by ? obj_arg_num(c, 0) : 1);

		if (!isfinite(d))
			return value_overflow(c);
		x->u.d = d;
		obj_ok(c, json_real(x->u.d));
		return CMD_DONE;
	}
	case VALUE_ANY: break;
	}
	if (!json_is_number(x->u.any)) {
		obj_error(c, MPSUP_E_CONFLICT, "%s does not hold a number", c->o->name);
		return CMD_DONE;
	}
	if (json_is_integer(x->u.any) && (!by || obj_arg_is_int(c, 0))) {
		json_int_t s;

		if (__builtin_add_overflow(json_integer_value(x->u.any), bi, &s))
			return value_overflow(c);
		if (x->u.any->refcount == 1) {
			json_integer_set(x->u.any, s); /* in place: no allocation */
		} else {
			json_decref(x->u.any);
			x->u.any = json_integer(s);
		}
	} else {
		double d = json_number_value(x->u.any) + (by ? obj_arg_num(c, 0) : 1);

		if (!isfinite(d))
			return value_overflow(c);
		if (json_is_real(x->u.any) && x->u.any->refcount == 1) {
			json_real_set(x->u.any, d);
		} else {
			json_decref(x->u.any);
			x->u.any = json_real(d);
		}
	}
	if (!x->u.any) {
		x->u.any = json_null();
		obj_error(c, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	obj_ok(c, json_incref(x->u.any));
	return CMD_DONE;
}

/* cas {expect, value} -> {swapped} */
static enum cmd_ret value_cas(struct obj_call *c)
{
	json_t *cur;
	bool swap;

	if (!value_check(c, obj_arg(c, 1), "value"))
		return CMD_DONE;
	switch (V(c)->kind) {
	case VALUE_INT:
		swap = json_is_integer(obj_arg(c, 0))
			       ? json_integer_value(obj_arg(c, 0)) == V(c)->u.i
			       : json_real_value(obj_arg(c, 0)) == (double)V(c)->u.i &&
					 json_is_real(obj_arg(c, 0));
		break;
	case VALUE_DOUBLE:
		swap = json_is_number(obj_arg(c, 0)) &&
		       json_number_value(obj_arg(c, 0)) == V(c)->u.d;
		break;
	default:
		cur = V(c)->u.any;
		swap = obj_json_equal(cur, obj_arg(c, 0));
		break;
	}
	if (swap)
		value_replace(c, obj_arg(c, 1));
	obj_ok(c, json_pack("{s:b}", "swapped", swap));
	return CMD_DONE;
}

static const struct obj_op value_ops[] = {
	{ "value.get", ROLE_READ, OBJ_OP_EXISTING, value_get, "" },
	{ "value.set", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, value_set, "o:value" },
	{ "value.add", ROLE_STATE, CMD_MUTATES, value_add, "n:by?" },
	{ "value.cas", ROLE_STATE, CMD_MUTATES | OBJ_OP_GROWS, value_cas, "o:expect o:value" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type value_type = {
	.name = "value",
	.create = value_create,
	.free = value_free,
	.get = value_get_all,
	.dump = value_dump,
	.size = value_size,
	.mem = value_mem,
	.options_equal = value_options_equal,
	.ops = value_ops,
};
