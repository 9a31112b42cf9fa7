/*
 * Unit tests of packed values (daemon/state/packed.c): every JSON type
 * kept and read back, the equality of obj_json_equal(), the data bytes of
 * obj_mem_elem(), and random inserts, replacements and removals against a
 * jansson array doing the same (MPSUP_SEED replays a run).
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonw.h"
#include "mpsup.h"
#include "obj.h"
#include "packed.h"
#include "unit.h"

static json_t *J(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

	ck_assert_msg(v != NULL, "bad test JSON %s", text);
	return v;
}

/* Insert the value of text at the end of p. */
static void put_text(struct packed *p, const char *text)
{
	json_t *v = J(text);

	ck_assert_int_eq(packed_insert_json(p, p->n, v), 0);
	json_decref(v);
}

/* p holds exactly the values of model, and charges what they weigh. */
static void ck_same(const struct packed *p, json_t *model)
{
	size_t mem = 0;

	ck_assert_uint_eq(p->n, json_array_size(model));
	for (size_t i = 0; i < p->n; i++) {
		json_t *v = packed_get(p, i), *m = json_array_get(model, i);

		ck_assert_msg(json_equal(v, m), "position %zu differs", i);
		ck_assert_int_eq(json_typeof(v), json_typeof(m));
		ck_assert_uint_eq(packed_mem_at(p, i), obj_mem_elem(m));
		mem += obj_mem_elem(m);
		json_decref(v);
	}
	ck_assert_uint_eq(p->mem, mem);
}

static const char *const values[] = {
	"null",
	"true",
	"false",
	"0",
	"-9223372036854775808",
	"9223372036854775807",
	"1.5",
	"-0.0",
	"1e300",
	"\"\"",
	"\"xxx\"",
	"\"a\\u0000b\"",
	"\"\\u00e9\\ud83d\\ude00\"",
	"[]",
	"{}",
	"[1,[2,[3]],{\"k\":null}]",
	"{\"b\":1,\"a\":[\"x\"]}",
};
#define N_VALUES (sizeof(values) / sizeof(values[0]))

START_TEST(test_round_trip)
{
	struct packed p = PACKED_INIT;
	json_t *model = json_array();

	for (size_t i = 0; i < N_VALUES; i++) {
		put_text(&p, values[i]);
		json_array_append_new(model, J(values[i]));
	}
	ck_same(&p, model);
	/* As text: what jansson writes for the same values. */
	struct jsonw w;
	char *expect = json_dumps(model, JSON_COMPACT);
	jsonw_init(&w);
	packed_write(&p, 0, p.n, &w);
	ck_assert(jsonw_ok(&w));
	ck_assert_uint_eq(w.len, strlen(expect));
	ck_assert_msg(memcmp(w.buf, expect, w.len) == 0, "%.*s != %s", (int)w.len, w.buf, expect);
	free(expect);
	jsonw_free(&w);
	jsonw_init(&w);
	packed_write(&p, 2, 2, &w);
	ck_assert_uint_eq(w.len, 2);
	ck_assert(memcmp(w.buf, "[]", 2) == 0);
	jsonw_free(&w);

	json_t *all = packed_array(&p, 0, p.n), *part = packed_array(&p, 3, 5);
	ck_assert(json_equal(all, model));
	ck_assert_uint_eq(json_array_size(part), 2);
	ck_assert(json_equal(json_array_get(part, 1), json_array_get(model, 4)));
	json_decref(all);
	json_decref(part);
	packed_free(&p);
	ck_assert_uint_eq(p.n, 0);
	json_decref(model);
}
END_TEST

/* Parameters as they lie in a request line (strings unescaped, in place). */
START_TEST(test_members)
{
	const char line[] = "{\"cmd\":\"list.append\",\"s\":\"xxx\",\"e\":\"a\\nb\",\"i\":-7,"
			    "\"d\":2.25,\"t\":true,\"z\":null,\"o\":{\"x\":[1]}}";
	const char *expect[] = {
		"\"xxx\"", "\"a\\nb\"", "-7", "2.25", "true", "null", "{\"x\":[1]}"
	};
	struct mpsup_member m[8];
	struct packed p = PACKED_INIT;
	json_t *id = NULL, *model = json_array();
	char cmd[32];
	size_t n;

	ck_assert_int_eq(
		mpsup_request_members(line, strlen(line), 8, m, 8, &n, &id, cmd, sizeof(cmd)), 0);
	ck_assert_uint_eq(n, 7);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(packed_insert_member(&p, 0, &m[i]), 0);
		json_array_insert_new(model, 0, J(expect[i]));
	}
	ck_same(&p, model);
	mpsup_members_free(m, n);
	json_decref(id);
	json_decref(model);
	packed_free(&p);
}
END_TEST

START_TEST(test_equal)
{
	struct packed p = PACKED_INIT;
	const char *in[] = { "1",     "1.0",  "\"1\"",        "{\"a\":1,\"b\":2}",
			     "[1,2]", "null", "\"a\\u0000b\"" };
	struct {
		size_t at;
		const char *v;
		bool eq;
	} cases[] = {
		{ 0, "1", true },
		{ 0, "1.0", true },
		{ 1, "1", true },
		{ 0, "\"1\"", false },
		{ 2, "\"1\"", true },
		{ 2, "1", false },
		{ 3, "{\"b\":2,\"a\":1}", true },
		{ 3, "{\"a\":1}", false },
		{ 4, "[1,2]", true },
		{ 4, "[2,1]", false },
		{ 5, "null", true },
		{ 5, "false", false },
		{ 6, "\"a\\u0000b\"", true },
		{ 6, "\"a\"", false },
		{ 4, "{}", false },
	};

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		put_text(&p, in[i]);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *v = J(cases[i].v);
		ck_assert_msg(packed_equal(&p, cases[i].at, v) == cases[i].eq, "case %zu", i);
		json_decref(v);
	}
	packed_free(&p);
}
END_TEST

/* Random inserts, replacements and removals against a jansson array; the
 * bytes stay bounded by what is live (dead entries are compacted away). */
START_TEST(test_random_ops)
{
	const char *env = getenv("MPSUP_SEED");
	unsigned seed =
		env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)getpid() ^ (unsigned)time(NULL);
	struct packed p = PACKED_INIT;
	json_t *model = json_array();
	size_t live_max = 0;

	fprintf(stderr, "test_random_ops: random seed %u (MPSUP_SEED=%u replays it)\n", seed, seed);
	srand(seed);
	for (int step = 0; step < 200000; step++) {
		int op = rand() % 10;
		size_t n = p.n, at = n ? (size_t)rand() % n : 0;
		json_t *v = J(values[(size_t)rand() % N_VALUES]);

		/* Grow for the first half, then shrink to nothing. */
		if ((step < 100000 && op < 5) || (step >= 100000 && op < 2) || !n) {
			if (op & 1)
				at = n;
			ck_assert_int_eq(packed_insert_json(&p, at, v), 0);
			json_array_insert(model, at, v);
		} else if (op < 7) {
			ck_assert_int_eq(packed_set_json(&p, at, v), 0);
			json_array_set(model, at, v);
		} else {
			if (op == 9)
				at = n - 1; /* pop from the end reclaims at once */
			packed_remove(&p, at);
			json_array_remove(model, at);
		}
		json_decref(v);
		if (p.used - p.dead > live_max)
			live_max = p.used - p.dead;
		ck_assert_msg(p.dead < 4096 || p.dead * 2 < p.used,
			      "step %d: %zu of %zu bytes dead", step, p.dead, p.used);
		if (step % 10007 == 0)
			ck_same(&p, model);
	}
	ck_same(&p, model);
	ck_assert_uint_gt(live_max, 4096); /* compaction was reached */
	packed_free(&p);
	json_decref(model);
}
END_TEST

/* A plain string item costs its bytes and an offset (the point of it). */
START_TEST(test_compact_size)
{
	struct packed p = PACKED_INIT;
	json_t *v = json_string("xxx");

	for (int i = 0; i < 300000; i++) /* past BIG_BUF: mapped buffers */
		ck_assert_int_eq(packed_insert_json(&p, p.n, v), 0);
	ck_assert_uint_eq(p.used, 300000 * 5);
	packed_remove(&p, 0);
	ck_assert_uint_eq(p.dead, 5);
	while (p.n > 1)
		packed_remove(&p, p.n - 1);
	ck_assert_uint_eq(p.used - p.dead, 5);
	json_decref(v);
	packed_free(&p);
}
END_TEST

static Suite *packed_suite(void)
{
	Suite *s = suite_create("packed");
	TCase *tc = tcase_create("packed");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_members);
	tcase_add_test(tc, test_equal);
	tcase_add_test(tc, test_random_ops);
	tcase_add_test(tc, test_compact_size);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(packed_suite());
}
