/*
 * The parameters of a state op (obj.h, struct obj_call): read where they lie,
 * in the request line (members read in place by libmpsup) or in a tree (a
 * line read the slow way, the log replayed), and checked against the op's
 * spec once, for every op.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "conf.h"
#include "obj.h"
#include "obj_int.h"

/* Whether a and b (len bytes each) are equal: short keys, no call; 4 to
 * 8 bytes as two words that may overlap. */
static inline bool key_eq(const char *a, const char *b, size_t len)
{
	uint32_t x[2], y[2];

	if (len >= 4 && len <= 8) {
		memcpy(&x[0], a, 4);
		memcpy(&x[1], a + (len - 4), 4);
		memcpy(&y[0], b, 4);
		memcpy(&y[1], b + (len - 4), 4);
		return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
	}
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* What an absent parameter reads as (nothing reads it but by mistake). */
static const struct mpsup_member absent = { .type = JSON_NULL };

/* v as a member (borrowed: m->v is v whatever its type). */
static void member_of(json_t *v, struct mpsup_member *m)
{
	m->type = json_typeof(v);
	m->str = json_string_value(v);
	m->str_len = json_string_length(v);
	m->i = json_integer_value(v);
	m->d = json_real_value(v);
	m->v = v;
}

/* r's parameter key (klen bytes): in the line when it was read in place,
 * else from its tree into *tree. NULL when absent. */
static const struct mpsup_member *param_get(struct request *r, const char *key, size_t klen,
					    struct mpsup_member *tree)
{
	json_t *v;

	if (r->members) {
		for (size_t i = 0; i < r->n_members; i++)
			if (r->members[i].key_len == klen && key_eq(r->members[i].key, key, klen))
				return &r->members[i];
		return NULL;
	}
	if (!(v = json_object_getn(r->params, key, klen)))
		return NULL;
	member_of(v, tree);
	return tree;
}

json_t *obj_arg(struct obj_call *c, int i)
{
	if (!c->has[i])
		return NULL;
	if (c->arg[i]->v)
		return c->arg[i]->v;
	if (!c->built[i])
		c->built[i] = mpsup_member_json(c->arg[i]);
	return c->built[i];
}

/* Release what obj_arg() built for c. */
void obj_call_done(struct obj_call *c)
{
	for (int i = 0; i < OBJ_MAX_PARAMS; i++) {
		json_decref(c->built[i]);
		c->built[i] = NULL;
	}
}

static const char *json_kind(json_type t)
{
	switch (t) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static bool param_type_ok(char t, json_type type)
{
	switch (t) {
	case 's': return type == JSON_STRING;
	case 'i': return type == JSON_INTEGER;
	case 'n':
	case 't': return type == JSON_INTEGER || type == JSON_REAL;
	case 'a': return type == JSON_ARRAY;
	case 'O': return type == JSON_OBJECT;
	default: return true;
	}
}

static const char *param_type_name(char t)
{
	switch (t) {
	case 's': return "a string";
	case 'i': return "an integer";
	case 'n': return "a number";
	case 't': return "a number of seconds";
	case 'a': return "an array";
	case 'O': return "an object";
	default: return "a JSON value";
	}
}

int obj_spec_parse(const char *spec, struct op_spec *ret)
{
	struct op_spec s = { .n = 0 };

	for (const char *p = spec ? spec : ""; *p;) {
		struct param_spec *ps = &s.p[s.n];
		const char *end = p + 2;

		if (s.n == OBJ_MAX_PARAMS || p[1] != ':' || !strchr("osinaOt", p[0]))
			return -1;
		while (*end && *end != ' ' && *end != '?')
			end++;
		ps->type = p[0];
		ps->key = p + 2;
		ps->klen = (size_t)(end - ps->key);
		ps->optional = *end == '?';
		if (!ps->klen)
			return -1;
		p = end + ps->optional;
		while (*p == ' ')
			p++;
		s.n++;
	}
	*ret = s;
	return 0;
}

/* Whether key (klen bytes) is `name` or a parameter of spec. */
static bool spec_knows(const struct op_spec *spec, const char *key, size_t klen)
{
	if (klen == 4 && key_eq(key, "name", 4))
		return true;
	for (int i = 0; i < spec->n; i++)
		if (spec->p[i].klen == klen && key_eq(spec->p[i].key, key, klen))
			return true;
	return false;
}

/* Answer bad_request for the first parameter of r that spec does not know
 * (there is one). */
static void param_unknown(struct obj_call *c, const struct op_spec *spec)
{
	struct request *r = c->r;
	const char *key = "?";
	size_t klen = 1;

	if (r->members) {
		for (size_t i = 0; i < r->n_members; i++)
			if (!spec_knows(spec, r->members[i].key, r->members[i].key_len)) {
				key = r->members[i].key;
				klen = r->members[i].key_len;
				break;
			}
	} else {
		const char *k;
		json_t *v;

		json_object_foreach(r->params, k, v)
			if (!spec_knows(spec, k, strlen(k))) {
				key = k;
				klen = strlen(k);
				break;
			}
	}
	obj_error(c, MPSUP_E_BAD_REQUEST, "%s: unknown parameter '%.*s'", r->cmd->name,
		  (int)(klen > 64 ? 64 : klen), key);
}

int obj_params_read(struct obj_call *c, const struct op_spec *spec)
{
	struct request *r = c->r;
	size_t found = 1; /* name */

	for (int i = 0; i < spec->n; i++) {
		const struct param_spec *ps = &spec->p[i];
		const struct mpsup_member *m = param_get(r, ps->key, ps->klen, &c->tree_arg[i]);
		bool have = m != NULL;

		found += have;
		if (have && m->type == JSON_NULL && ps->type != 'o' && ps->optional)
			have = false; /* null = absent for typed optional params */
		if (!have && !ps->optional) {
			obj_error(c, MPSUP_E_BAD_REQUEST, "%s: missing parameter '%.*s'",
				  r->cmd->name, (int)ps->klen, ps->key);
			return -1;
		}
		if (have && !param_type_ok(ps->type, m->type)) {
			obj_error(c, MPSUP_E_BAD_REQUEST, "%s: '%.*s' must be %s, not %s",
				  r->cmd->name, (int)ps->klen, ps->key, param_type_name(ps->type),
				  json_kind(m->type));
			return -1;
		}
		c->has[i] = have;
		c->arg[i] = have ? m : &absent;
	}
	if (found != (r->members ? r->n_members : json_object_size(r->params))) {
		param_unknown(c, spec);
		return -1;
	}
	return 0;
}

/* The `name` parameter, checked, into buf (OBJ_NAME_MAX + 1 bytes); NULL
 * after answering bad_request. */
const char *obj_param_name(struct request *r, char *buf)
{
	struct mpsup_member tree;
	const struct mpsup_member *m = param_get(r, "name", 4, &tree);

	if (!m) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: missing parameter 'name'", r->cmd->name);
		return NULL;
	}
	if (m->type == JSON_STRING && m->str_len <= OBJ_NAME_MAX) {
		memcpy(buf, m->str, m->str_len);
		buf[m->str_len] = '\0';
		if (name_valid(buf, false))
			return buf;
	}
	request_error(r, MPSUP_E_BAD_REQUEST,
		      "%s: invalid object name (expected [A-Za-z0-9_.-]{1,64})", r->cmd->name);
	return NULL;
}
