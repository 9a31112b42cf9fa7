/*
 * The array type (multiprocessing.Array): a fixed-length array of signed
 * 64-bit integers (typecode "i") or doubles ("d"), created with a size or
 * an init list.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "obj.h"

struct array {
	bool is_double;
	size_t len;
	union {
		json_int_t *i;
		double *d;
	} u;
};

static const char *const array_options[] = { "typecode", "size", "init", NULL };

#define A(c) ((struct array *)(c)->o->data)

/* Bytes per element, of either typecode. */
#define ELEM_BYTES 8

/* Parse shape options: kind and length (-1 when neither size nor init is
 * given). -1 with err on invalid options, -2 when `size` asks for more
 * than max_request_bytes of memory (not while persisted state is loaded:
 * the limit may have been lowered since the array was made). */
static int array_shape(json_t *opts, bool *ret_double, long long *ret_len, char *err, size_t errlen)
{
	json_t *tc = json_object_get(opts, "typecode"), *init = json_object_get(opts, "init");
	json_int_t size;
	size_t max_bytes = daemon_g.conf ? daemon_g.conf->max_request_bytes : 1 << 20;
	json_int_t max = (json_int_t)(max_bytes / ELEM_BYTES);

	if (obj_opts_only(opts, array_options, err, errlen) < 0)
		return -1;
	if (!tc || json_is_null(tc) || (json_is_string(tc) && !strcmp(json_string_value(tc), "i")))
		*ret_double = false;
	else if (json_is_string(tc) && !strcmp(json_string_value(tc), "d"))
		*ret_double = true;
	else {
		snprintf(err, errlen, "'typecode' must be \"i\" or \"d\"");
		return -1;
	}
	if (obj_opt_int(opts, "size", -1, 0, INT64_MAX, &size, err, errlen) < 0)
		return -1;
	if (size > max && !obj_restoring) {
		snprintf(err, errlen,
			 "'size' %lld needs more than max_request_bytes (%zu) of memory: at most "
			 "%lld elements of %d bytes",
			 (long long)size, max_bytes, (long long)max, ELEM_BYTES);
		return -2;
	}
	if (init && !json_is_null(init)) {
		size_t i;
		json_t *v;

		if (!json_is_array(init)) {
			snprintf(err, errlen, "'init' must be an array");
			return -1;
		}
		if (size >= 0 && (size_t)size != json_array_size(init)) {
			snprintf(err, errlen, "'size' and the length of 'init' differ");
			return -1;
		}
		json_array_foreach(init, i, v)
			if (*ret_double ? !json_is_number(v) : !json_is_integer(v)) {
				snprintf(err, errlen, "'init' must hold only %s",
					 *ret_double ? "numbers" : "integers");
				return -1;
			}
		size = (json_int_t)json_array_size(init);
	}
	*ret_len = size;
	return 0;
}

static enum mpsup_err array_create(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_t *init = json_object_get(opts, "init");
	struct array *a;
	long long len;
	bool is_double;
	int rc = array_shape(opts, &is_double, &len, err, errlen);

	if (rc < 0)
		return rc == -2 ? MPSUP_E_LIMIT : MPSUP_E_BAD_REQUEST;
	if (len < 0)
		len = 0;
	if (!(a = calloc(1, sizeof(*a))) || !(a->u.i = calloc((size_t)len + 1, ELEM_BYTES))) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return MPSUP_E_INTERNAL;
	}
	a->is_double = is_double;
	a->len = (size_t)len;
	if (json_is_array(init))
		for (size_t i = 0; i < a->len; i++) {
			if (is_double)
				a->u.d[i] = json_number_value(json_array_get(init, i));
			else
				a->u.i[i] = json_integer_value(json_array_get(init, i));
		}
	o->data = a;
	return MPSUP_OK;
}

static void array_free(struct obj *o)
{
	struct array *a = o->data;

	free(a->u.i);
	free(a);
}

/* One element as JSON. */
static json_t *array_elem(const struct array *a, size_t i)
{
	return a->is_double ? json_real(a->u.d[i]) : json_integer(a->u.i[i]);
}

/* Elements [start, stop) as a JSON array. */
static json_t *array_range(const struct array *a, size_t start, size_t stop)
{
	json_t *out = json_array();

	for (size_t i = start; out && i < stop; i++)
		json_array_append_new(out, array_elem(a, i));
	return out;
}

static json_t *array_get_all(const struct obj *o)
{
	const struct array *a = o->data;

	return array_range(a, 0, a->len);
}

static json_t *array_dump(const struct obj *o)
{
	const struct array *a = o->data;

	return json_pack("{s:s, s:o}", "typecode", a->is_double ? "d" : "i", "init",
			 array_range(a, 0, a->len));
}

static size_t array_size(const struct obj *o)
{
	return ((const struct array *)o->data)->len;
}

/* Data bytes: the fixed elements (counted once: set and add change none). */
static size_t array_mem(const struct obj *o)
{
	return ((const struct array *)o->data)->len * sizeof(double);
}

static bool array_options_equal(const struct obj *o, json_t *opts)
{
	const struct array *a = o->data;
	char err[128];
	long long len;
	bool is_double;

	return array_shape(opts, &is_double, &len, err, sizeof(err)) == 0 &&
	       is_double == a->is_double && (len < 0 || (size_t)len == a->len);
}

/* Resolve the index parameter; false after answering out_of_range. */
static bool array_index(struct obj_call *c, size_t *ret)
{
	if (obj_index(json_integer_value(obj_arg(c, 0)), A(c)->len, ret))
		return true;
	obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: index %lld out of range (length %zu)", c->o->name,
		  (long long)json_integer_value(obj_arg(c, 0)), A(c)->len);
	return false;
}

/* An integer array takes only integers. */
static bool array_fits(struct obj_call *c, json_t *v, const char *what)
{
	if (A(c)->is_double || json_is_integer(v))
		return true;
	obj_error(c, MPSUP_E_BAD_REQUEST, "%s: '%s' must be an integer (typecode i)", c->o->name,
		  what);
	return false;
}

/* get {index} */
static enum cmd_ret array_get(struct obj_call *c)
{
	size_t i;

	if (array_index(c, &i))
		obj_ok(c, array_elem(A(c), i));
	return CMD_DONE;
}

/* set {index, value} */
static enum cmd_ret array_set(struct obj_call *c)
{
	size_t i;

	if (!array_index(c, &i) || !array_fits(c, obj_arg(c, 1), "value"))
		return CMD_DONE;
	if (A(c)->is_double)
		A(c)->u.d[i] = json_number_value(obj_arg(c, 1));
	else
		A(c)->u.i[i] = json_integer_value(obj_arg(c, 1));
	obj_ok(c, NULL);
	return CMD_DONE;
}

/* add {index, by?:1} -> the new element */
static enum cmd_ret array_add(struct obj_call *c)
{
	json_t *by = obj_arg(c, 1);
	size_t i;

	if (!array_index(c, &i) || (by && !array_fits(c, by, "by")))
		return CMD_DONE;
	if (A(c)->is_double) {
		double d = A(c)->u.d[i] + (by ? json_number_value(by) : 1);

		if (!isfinite(d)) {
			obj_error(c, MPSUP_E_OUT_OF_RANGE, "%s: the result overflows a double",
				  c->o->name);
			return CMD_DONE;
		}
		A(c)->u.d[i] = d;
	} else {
		json_int_t s;
		if (__builtin_add_overflow(A(c)->u.i[i], by ? json_integer_value(by) : 1, &s)) {
			obj_error(c, MPSUP_E_OUT_OF_RANGE,
				  "%s: the result leaves the 64-bit integer range", c->o->name);
			return CMD_DONE;
		}
		A(c)->u.i[i] = s;
	}
	obj_ok(c, array_elem(A(c), i));
	return CMD_DONE;
}

/* slice {start?, stop?} */
static enum cmd_ret array_slice(struct obj_call *c)
{
	size_t start, stop;

	obj_slice(obj_arg(c, 0), obj_arg(c, 1), A(c)->len, &start, &stop);
	obj_ok(c, array_range(A(c), start, stop));
	return CMD_DONE;
}

static enum cmd_ret array_len(struct obj_call *c)
{
	obj_ok(c, json_integer((json_int_t)A(c)->len));
	return CMD_DONE;
}

static const struct obj_op array_ops[] = {
	{ "array.get", ROLE_READ, OBJ_OP_EXISTING, array_get, "i:index" },
	{ "array.set", ROLE_STATE, CMD_MUTATES | OBJ_OP_EXISTING, array_set, "i:index n:value" },
	{ "array.add", ROLE_STATE, CMD_MUTATES | OBJ_OP_EXISTING, array_add, "i:index n:by?" },
	{ "array.slice", ROLE_READ, OBJ_OP_EXISTING, array_slice, "i:start? i:stop?" },
	{ "array.len", ROLE_READ, OBJ_OP_EXISTING, array_len, "" },
	{ NULL, 0, 0, NULL, NULL },
};

const struct obj_type array_type = {
	.name = "array",
	.create = array_create,
	.free = array_free,
	.get = array_get_all,
	.dump = array_dump,
	.size = array_size,
	.mem = array_mem,
	.options_equal = array_options_equal,
	.ops = array_ops,
};
