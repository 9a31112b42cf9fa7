/* Unit tests of the task worker protocol (daemon/task/task.c): the task line
 * mpsupd writes and the parsing of the result lines workers write. */
#include "config.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "task_wire.h"
#include "unit.h"

static char *buf;
static size_t cap;

static void teardown(void)
{
	free(buf);
	buf = NULL;
	cap = 0;
}

static void check_line(uint64_t id, json_t *item, const char *want)
{
	ssize_t n = task_line_format(&buf, &cap, id, item);

	ck_assert_int_eq(n, (ssize_t)strlen(want));
	ck_assert(memcmp(buf, want, (size_t)n) == 0);
	json_decref(item);
}

START_TEST(test_line_format)
{
	check_line(1, json_integer(21), "{\"id\":1,\"item\":21}\n");
	check_line(18446744073709551615ULL, json_string("a\"b"),
		   "{\"id\":18446744073709551615,\"item\":\"a\\\"b\"}\n");
	check_line(7, json_pack("{s:[i,n,b]}", "k", 1, 0),
		   "{\"id\":7,\"item\":{\"k\":[1,null,false]}}\n");
	check_line(8, json_null(), "{\"id\":8,\"item\":null}\n");
}
END_TEST

START_TEST(test_line_format_grows)
{
	/* an item far larger than the buffer: one call, exact line */
	size_t big = 300000;
	char *s = malloc(big + 1);
	json_t *item;
	ssize_t n;

	memset(s, 'x', big);
	s[big] = '\0';
	item = json_string(s);
	n = task_line_format(&buf, &cap, 3, item);
	json_decref(item);
	ck_assert_int_eq(n, (ssize_t)(strlen("{\"id\":3,\"item\":\"\"}\n") + big));
	ck_assert(buf[n - 1] == '\n' && buf[n - 2] == '}');
	ck_assert(cap >= (size_t)n);
	free(s);
}
END_TEST

static enum task_reply parse(const char *line, uint64_t id, json_t **v, char *why)
{
	uint64_t got = 0;
	enum task_reply k;

	*v = NULL;
	why[0] = '\0';
	k = task_reply_parse(line, strlen(line), &got, v, why, 200);
	if (k != TASK_REPLY_BAD && got != id) {
		/* the worker channel matches the id among the tasks it holds */
		snprintf(why, 200, "id %" PRIu64 " instead of %" PRIu64, got, id);
		json_decref(*v);
		*v = NULL;
		return TASK_REPLY_BAD;
	}
	return k;
}

START_TEST(test_reply_ok)
{
	char why[200];
	json_t *v;

	ck_assert_int_eq(parse("{\"id\": 5, \"result\": 10}", 5, &v, why), TASK_REPLY_RESULT);
	ck_assert(json_integer_value(v) == 10);
	json_decref(v);
	ck_assert_int_eq(parse("{\"result\": null, \"id\": 5}  ", 5, &v, why), TASK_REPLY_RESULT);
	ck_assert(json_is_null(v));
	json_decref(v);
	ck_assert_int_eq(parse("{\"id\":5,\"error\":\"boom\"}", 5, &v, why), TASK_REPLY_ERROR);
	ck_assert_str_eq(json_string_value(v), "boom");
	json_decref(v);
	/* a non-string error keeps its JSON text */
	ck_assert_int_eq(parse("{\"id\":5,\"error\":{\"type\":\"E\"}}", 5, &v, why),
			 TASK_REPLY_ERROR);
	ck_assert_str_eq(json_string_value(v), "{\"type\":\"E\"}");
	json_decref(v);
}
END_TEST

START_TEST(test_reply_bad)
{
	char why[200];
	json_t *v;

	ck_assert_int_eq(parse("hello", 1, &v, why), TASK_REPLY_BAD);
	ck_assert(strstr(why, "not a JSON object: 'hello'"));
	ck_assert_int_eq(parse("[1]", 1, &v, why), TASK_REPLY_BAD);
	ck_assert_int_eq(parse("{\"id\": 2, \"result\": 1}", 1, &v, why), TASK_REPLY_BAD);
	ck_assert(strstr(why, "id 2 instead of 1"));
	ck_assert_int_eq(parse("{\"id\": \"1\", \"result\": 1}", 1, &v, why), TASK_REPLY_BAD);
	ck_assert(strstr(why, "no integer"));
	ck_assert_int_eq(parse("{\"id\": 1}", 1, &v, why), TASK_REPLY_BAD);
	ck_assert(strstr(why, "neither"));
	ck_assert_int_eq(parse("{\"id\": 1, \"result\": 1, \"error\": \"x\"}", 1, &v, why),
			 TASK_REPLY_BAD);
	ck_assert_int_eq(parse("{\"id\": 1, \"result\": 1, \"result\": 2}", 1, &v, why),
			 TASK_REPLY_BAD);
	ck_assert_int_eq(parse("{\"id\": 1, \"result\": 1} trailing", 1, &v, why), TASK_REPLY_BAD);
	ck_assert_int_eq(parse("{\"id\": -1, \"result\": 1}", 1, &v, why), TASK_REPLY_BAD);
	ck_assert_int_eq(parse("", 1, &v, why), TASK_REPLY_BAD);
	ck_assert(v == NULL);
	/* the excerpt is bounded and printable */
	{
		char line[400];
		memset(line, 'a', sizeof(line) - 1);
		line[sizeof(line) - 1] = '\0';
		line[3] = '\x01';
		ck_assert_int_eq(parse(line, 1, &v, why), TASK_REPLY_BAD);
		ck_assert(strstr(why, "aaa?aa"));
		ck_assert(strstr(why, "...'"));
		ck_assert(strlen(why) < 120);
	}
}
END_TEST

static Suite *task_suite(void)
{
	Suite *s = suite_create("task");
	TCase *tc = tcase_create("protocol");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, test_line_format);
	tcase_add_test(tc, test_line_format_grows);
	tcase_add_test(tc, test_reply_ok);
	tcase_add_test(tc, test_reply_bad);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(task_suite());
}
