/* Check unit tests for libmpsup: framing, JSON depth, envelope, error
 * codes, response parsing and the client against an in-test server. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mpsup.h"
#include "unit.h"

/* ---- framing ------------------------------------------------------------ */

START_TEST(test_frame_byte_by_byte)
{
	const char *in = "hello\nworld\n\n";
	const char *want[] = { "hello", "world", "" };
	struct mpsup_framer *f = mpsup_framer_new(64);
	size_t got = 0;

	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; in[i]; i++) {
		char *line;
		size_t len;
		int r;

		ck_assert_int_eq(mpsup_framer_feed(f, in + i, 1), 0);
		while ((r = mpsup_framer_pop(f, &line, &len)) == 1) {
			ck_assert_uint_lt(got, 3);
			ck_assert_str_eq(line, want[got]);
			ck_assert_uint_eq(len, strlen(want[got]));
			got++;
		}
		ck_assert_int_eq(r, 0);
	}
	ck_assert_uint_eq(got, 3);
	ck_assert_uint_eq(mpsup_framer_pending(f), 0);
	ck_assert_ptr_null(mpsup_framer_free(f));
}
END_TEST

START_TEST(test_frame_joined)
{
	struct mpsup_framer *f = mpsup_framer_new(64);
	char *line;
	size_t len;

	ck_assert_int_eq(mpsup_framer_feed(f, "a\nbb\nccc\ndd", 11), 0);
	ck_assert_uint_eq(mpsup_framer_pending(f), 11);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "a");
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "bb");
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "ccc");
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 0);
	ck_assert_uint_eq(mpsup_framer_pending(f), 2);
	ck_assert_int_eq(mpsup_framer_feed(f, "d\n", 2), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "ddd");
	mpsup_framer_free(f);
}
END_TEST

START_TEST(test_frame_max_line_exact)
{
	struct mpsup_framer *f = mpsup_framer_new(8);
	char *line;
	size_t len;

	ck_assert_int_eq(mpsup_framer_feed(f, "12345678", 8), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 0); /* max bytes, no '\n' yet: fine */
	ck_assert_int_eq(mpsup_framer_feed(f, "\n", 1), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "12345678");
	ck_assert_uint_eq(len, 8);
	mpsup_framer_free(f);
}
END_TEST

START_TEST(test_frame_max_line_plus_one)
{
	struct mpsup_framer *f = mpsup_framer_new(8);
	char *line = NULL;
	size_t len = 0;

	ck_assert_int_eq(mpsup_framer_feed(f, "ok\n123456789\nnext\n", 18), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "ok");
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), -EMSGSIZE);
	/* Sticky: the stream is out of step. */
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), -EMSGSIZE);
	mpsup_framer_free(f);
}
END_TEST

START_TEST(test_frame_partial_too_big)
{
	struct mpsup_framer *f = mpsup_framer_new(8);
	char *line;
	size_t len;

	ck_assert_int_eq(mpsup_framer_feed(f, "12345", 5), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 0);
	ck_assert_int_eq(mpsup_framer_feed(f, "6789", 4), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), -EMSGSIZE);
	mpsup_framer_free(f);
}
END_TEST

START_TEST(test_frame_space_commit)
{
	struct mpsup_framer *f = mpsup_framer_new(0);
	char *p, *line;
	size_t len;
	ssize_t room;

	room = mpsup_framer_space(f, 0, &p);
	ck_assert_int_gt(room, 6);
	memcpy(p, "abc\nde", 6);
	mpsup_framer_commit(f, 6);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "abc");
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 0);
	ck_assert_uint_eq(mpsup_framer_pending(f), 2);

	room = mpsup_framer_space(f, 100000, &p);
	ck_assert_int_ge(room, 100000);
	memcpy(p, "f\n", 2);
	mpsup_framer_commit(f, 2);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "def");
	ck_assert_uint_eq(len, 3);
	ck_assert_uint_eq(mpsup_framer_pending(f), 0);
	mpsup_framer_free(f);
}
END_TEST

/* Many lines through space/commit in odd chunk sizes: exercises compaction
 * and growth; every line must come out intact and in order. */
START_TEST(test_frame_stream)
{
	struct mpsup_framer *f = mpsup_framer_new(5000);
	size_t total = 0, in_off = 0, out_off = 0, next_line = 0;
	char *stream;
	const size_t nlines = 3000;

	for (size_t i = 0; i < nlines; i++)
		total += (i * 37) % 4000 + 1;
	stream = malloc(total);
	ck_assert_ptr_nonnull(stream);
	for (size_t i = 0, o = 0; i < nlines; i++) {
		size_t l = (i * 37) % 4000;

		for (size_t k = 0; k < l; k++)
			stream[o + k] = (char)('a' + (i + k) % 26);
		stream[o + l] = '\n';
		o += l + 1;
	}

	while (in_off < total || mpsup_framer_pending(f)) {
		size_t chunk = (in_off * 7 + 13) % 9000 + 1;
		char *p, *line;
		size_t len;
		ssize_t room;
		int r;

		if (chunk > total - in_off)
			chunk = total - in_off;
		room = mpsup_framer_space(f, chunk, &p);
		ck_assert_int_ge(room, (ssize_t)chunk);
		memcpy(p, stream + in_off, chunk);
		mpsup_framer_commit(f, chunk);
		in_off += chunk;
		while ((r = mpsup_framer_pop(f, &line, &len)) == 1) {
			size_t l = (next_line * 37) % 4000;

			ck_assert_uint_eq(len, l);
			/* one assertion per line: Check asserts are not free */
			ck_assert(memcmp(line, stream + out_off, l) == 0);
			ck_assert_int_eq(line[len], '\0');
			out_off += l + 1;
			next_line++;
		}
		ck_assert_int_eq(r, 0);
		if (in_off == total)
			break;
	}
	ck_assert_uint_eq(next_line, nlines);
	ck_assert_uint_eq(mpsup_framer_pending(f), 0);
	free(stream);
	mpsup_framer_free(f);
}
END_TEST

START_TEST(test_frame_crlf)
{
	struct mpsup_framer *f = mpsup_framer_new(8);
	char *line;
	size_t len;

	ck_assert_int_eq(mpsup_framer_feed(f, "abc\r\n\r\nx\ry\n", 12), 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "abc");
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "");
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(mpsup_framer_pop(f, &line, &len), 1);
	ck_assert_str_eq(line, "x\ry"); /* only a trailing CR is stripped */
	mpsup_framer_free(f);
}
END_TEST

START_TEST(test_frame_null_safe)
{
	char *line;

	ck_assert_ptr_null(mpsup_framer_free(NULL));
	ck_assert_uint_eq(mpsup_framer_pending(NULL), 0);
	ck_assert_int_eq(mpsup_framer_pop(NULL, &line, NULL), -EINVAL);
	ck_assert_int_eq(mpsup_framer_feed(NULL, "x", 1), -EINVAL);
}
END_TEST

/* ---- JSON depth --------------------------------------------------------- */

static size_t depth_of(const char *s)
{
	return mpsup_json_depth(s, strlen(s));
}

START_TEST(test_json_depth)
{
	ck_assert_uint_eq(depth_of(""), 0);
	ck_assert_uint_eq(depth_of("42"), 0);
	ck_assert_uint_eq(depth_of("{}"), 1);
	ck_assert_uint_eq(depth_of("[[[]]]"), 3);
	ck_assert_uint_eq(depth_of("[[], [[]], []]"), 3);
	ck_assert_uint_eq(depth_of("{\"a\":\"[[[[{{\"}"), 1);
	ck_assert_uint_eq(depth_of("{\"a\":\"\\\"[[[\"}"), 1);      /* escaped quote */
	ck_assert_uint_eq(depth_of("[\"\\\\\", [1]]"), 2);          /* escaped backslash */
	ck_assert_uint_eq(depth_of("{\"a]]]}}\":{\"b\":[1]}}"), 3); /* brackets in a key */
	ck_assert_uint_eq(depth_of("]]]][["), 2);                   /* garbage does not wrap */
	/* len bounds the scan */
	ck_assert_uint_eq(mpsup_json_depth("[[[[", 2), 2);
}
END_TEST

/* ---- the fast JSON reader ---------------------------------------------- */

/* jansson's verdict on text, as the request path asks it. */
static json_t *jansson_load(const char *s, size_t len)
{
	return json_loadb(s, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
}

/* The fast reader must accept text (of length len) and agree with jansson
 * on the value, its types and the order of object members. */
static void read_same(const char *s, size_t len)
{
	json_t *a = mpsup_json_loadb(s, len, 0), *b = jansson_load(s, len);
	char *da, *db;

	ck_assert_msg(a != NULL, "fast reader refused: %s", s);
	ck_assert_msg(b != NULL, "jansson refused: %s", s);
	ck_assert_msg(json_equal(a, b), "values differ: %s", s);
	da = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
	db = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
	ck_assert_str_eq(da, db);
	free(da);
	free(db);
	json_decref(a);
	json_decref(b);
}

#define READ_SAME(lit) read_same(lit, sizeof(lit) - 1)

/* The fast reader refuses; jansson_refuses: and so does jansson. */
static void read_refused(const char *s, size_t len, bool jansson_refuses)
{
	json_t *a = mpsup_json_loadb(s, len, 0), *b = jansson_load(s, len);

	ck_assert_msg(a == NULL, "fast reader accepted: %s", s);
	if (jansson_refuses)
		ck_assert_msg(b == NULL, "jansson accepted: %s", s);
	json_decref(b);
}

#define REFUSED(lit) read_refused(lit, sizeof(lit) - 1, true)

START_TEST(test_json_read_valid)
{
	json_t *v;

	READ_SAME("{\"id\":7,\"cmd\":\"dict.set\",\"name\":\"d\",\"key\":\"k\",\"value\":[1,2.5,"
		  "null]}");
	READ_SAME(" \t\r\n{ \"a\" : [ true , false , null ] , \"b\" : { } , \"c\" : [ ] } \n");
	READ_SAME("\"\"");
	READ_SAME("{\"\":1}");
	READ_SAME("[0,-0,1,-1,10,123456789]");
	READ_SAME("[9223372036854775807,-9223372036854775808]"); /* int64 bounds */
	READ_SAME("[1.5,-0.0,1e5,1E+5,1e-5,2.5E-3,0.1,1e308,1e-400,4.9e-324]");
	READ_SAME("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]");                 /* every short escape */
	READ_SAME("[\"\\u00e9\\u20AC\\ud83d\\ude00\\u0001\\uFFFF\"]"); /* \u, a surrogate pair */
	READ_SAME("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\x7f\"]"); /* raw UTF-8 */
	READ_SAME("{\"\\u0061\":1,\"b\\n\":2}"); /* escaped keys */
	READ_SAME(
		"{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":1}]}"); /* same key, other objects */
	READ_SAME("{\"z\":1,\"a\":2,\"m\":3}");                           /* member order kept */

	/* Long strings (heap) with and without escapes. */
	{
		char s[1200];
		size_t n = 0;
		s[n++] = '"';
		for (int i = 0; i < 290; i++) {
			memcpy(s + n, i % 2 ? "\\n" : "ab", 2);
			n += 2;
		}
		s[n++] = '"';
		read_same(s, n);
		memset(s + 1, 'x', n - 2);
		read_same(s, n);
	}

	/* Types: integers stay integers, reals reals. */
	v = mpsup_json_loadb("[1,1.0,-5,1e2]", 14, 0);
	ck_assert_ptr_nonnull(v);
	ck_assert(json_is_integer(json_array_get(v, 0)));
	ck_assert(json_is_real(json_array_get(v, 1)));
	ck_assert_int_eq(json_integer_value(json_array_get(v, 2)), -5);
	ck_assert(json_is_real(json_array_get(v, 3)));
	json_decref(v);

	/* len bounds the text; nothing is read past it. */
	v = mpsup_json_loadb("[1]]]", 3, 0);
	ck_assert_ptr_nonnull(v);
	json_decref(v);
}
END_TEST

START_TEST(test_json_read_refused)
{
	/* Structure. */
	REFUSED("");
	REFUSED("   ");
	REFUSED("{");
	REFUSED("{\"a\"}");
	REFUSED("{\"a\":}");
	REFUSED("{\"a\":1,}");
	REFUSED("[1,]");
	REFUSED("[1 2]");
	REFUSED("{1:2}");
	REFUSED("{\"a\":1} x");
	REFUSED("{\"a\":1}{}");
	REFUSED("tru");
	REFUSED("truex");
	REFUSED("nul");
	REFUSED("True");
	/* Duplicate keys, at the top and nested, also when spelled differently. */
	REFUSED("{\"a\":1,\"a\":2}");
	REFUSED("{\"a\":1,\"b\":2,\"a\":1}");
	REFUSED("{\"x\":{\"k\":1,\"k\":1}}");
	REFUSED("[{\"k\":[],\"k\":[]}]");
	REFUSED("{\"a\":1,\"\\u0061\":2}");
	/* Strings. */
	REFUSED("\"abc");
	REFUSED("\"a\tb\""); /* control character */
	REFUSED("\"a\nb\"");
	REFUSED("\"\\x\"");   /* unknown escape */
	REFUSED("\"\\u12\""); /* short \u */
	REFUSED("\"\\u12g4\"");
	REFUSED("\"\\u0000\"");      /* NUL, in a value... */
	REFUSED("{\"a\\u0000\":1}"); /* ...and in a key */
	REFUSED("\"\\ud800\"");      /* lone high surrogate */
	REFUSED("\"\\ud800x\"");
	REFUSED("\"\\ud800\\u0041\"");
	REFUSED("\"\\udc00\""); /* lone low surrogate */
	REFUSED("\"\\");
	/* Invalid UTF-8: stray continuation, overlong forms, surrogates, past
	 * U+10FFFF, bytes never used, a sequence cut short. */
	REFUSED("\"\x80\"");
	REFUSED("\"\xc0\x80\"");
	REFUSED("\"\xc1\xbf\"");
	REFUSED("\"\xe0\x80\x80\"");
	REFUSED("\"\xf0\x80\x80\x80\"");
	REFUSED("\"\xed\xa0\x80\"");
	REFUSED("\"\xf4\x90\x80\x80\"");
	REFUSED("\"\xf5\x80\x80\x80\"");
	REFUSED("\"\xff\"");
	REFUSED("\"\xe2\x82\"");
	REFUSED("\"\xc3");
	REFUSED("[\xc3\xa9]");
	read_refused("\"a\0b\"", 5, true); /* a NUL byte */
	/* Numbers. */
	REFUSED("01");
	REFUSED("-01");
	REFUSED("+1");
	REFUSED("-");
	REFUSED("1.");
	REFUSED(".5");
	REFUSED("1e");
	REFUSED("1e+");
	REFUSED("0x10");
	REFUSED("9223372036854775808"); /* int64 + 1: too big, not a real */
	REFUSED("-9223372036854775809");
	REFUSED("99999999999999999999");
	REFUSED("1e400"); /* real overflow */
	REFUSED("-1e400");
	REFUSED("NaN");
	REFUSED("Infinity");
	/* Unusual but valid: left to jansson. */
	read_refused("0.1000000000000000000000000000000000000000000000000000000000000001", 66,
		     false);
}
END_TEST

/* Strings are scanned a word at a time: put each kind of byte that ends a
 * plain run at every position of strings of every length around a word,
 * with more text after them or none, and compare with jansson. */
START_TEST(test_json_read_string_words)
{
	static const char *const specials[] = { "\"",      "\\n",          "\\\"",
						"\\u00e9", "\xc3\xa9",     "\x01",
						"\x7f",    "\xe2\x82\xac", "\xff" };
	char s[64];

	for (size_t len = 0; len < 20; len++)
		for (size_t at = 0; at <= len; at++)
			for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++)
				for (int tail = 0; tail < 2; tail++) {
					const char *sp = specials[k];
					int n;

					n = snprintf(s, sizeof(s), "[\"%.*s%s%.*s\"%s]", (int)at,
						     "abcdefghijklmnopqrstuvwxyz", sp,
						     (int)(len - at), "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
						     tail ? ",\"tail-of-the-line\"" : "");
					ck_assert_int_lt(n, (int)sizeof(s));
					if (strcmp(sp, "\"") == 0 || strcmp(sp, "\x01") == 0 ||
					    strcmp(sp, "\xff") == 0)
						read_refused(s, (size_t)n, true);
					else
						read_same(s, (size_t)n);
				}
}
END_TEST

START_TEST(test_json_read_depth)
{
	char s[2100];
	json_t *v;

	/* Arrays and objects nest at most max_depth deep; scalars do not count. */
	ck_assert_ptr_null(mpsup_json_loadb("[[1]]", 5, 1));
	v = mpsup_json_loadb("[[1]]", 5, 2);
	ck_assert_ptr_nonnull(v);
	json_decref(v);
	v = mpsup_json_loadb("1", 1, 1);
	ck_assert_ptr_nonnull(v);
	json_decref(v);
	ck_assert_ptr_null(mpsup_json_loadb("{\"a\":{}}", 8, 1));
	/* 0 and anything above 1000 mean 1000 (jansson stops at 2048 values). */
	memset(s, '[', 1000);
	memset(s + 1000, ']', 1000);
	v = mpsup_json_loadb(s, 2000, 0);
	ck_assert_ptr_nonnull(v);
	json_decref(v);
	memset(s, '[', 1001);
	memset(s + 1001, ']', 1001);
	ck_assert_ptr_null(mpsup_json_loadb(s, 2002, 0));
	ck_assert_ptr_null(mpsup_json_loadb(s, 2002, 5000));
	ck_assert_ptr_null(mpsup_json_loadb(NULL, 0, 0));
}
END_TEST

/* ---- envelope ------------------------------------------------------------ */

/* Parse a request line given as a C string. */
static int parse(const char *s, json_t **req, const char **cmd, json_t **id,
		 struct mpsup_error *err)
{
	return mpsup_request_parse(s, strlen(s), MPSUP_DEFAULT_MAX_DEPTH, req, cmd, id, err);
}

START_TEST(test_request_valid)
{
	json_t *req = NULL, *id = NULL;
	const char *cmd = NULL;
	struct mpsup_error err;

	ck_assert_int_eq(parse("{\"id\":7,\"cmd\":\"ping\",\"x\":[1]}", &req, &cmd, &id, &err), 0);
	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(cmd, "ping");
	ck_assert_ptr_null(id); /* only written on failure */
	ck_assert_int_eq(json_integer_value(json_object_get(req, "id")), 7);
	ck_assert(json_is_array(json_object_get(req, "x")));
	json_decref(req);

	/* no id at all is fine */
	ck_assert_int_eq(parse("{\"cmd\":\"hello\"}", &req, &cmd, &id, &err), 0);
	ck_assert_str_eq(cmd, "hello");
	json_decref(req);
}
END_TEST

/* Expect a failed parse with code and message prefix; returns ret_id. */
static json_t *parse_fail(const char *s, enum mpsup_err code, const char *prefix)
{
	json_t *req = NULL, *id = (json_t *)1;
	const char *cmd = NULL;
	struct mpsup_error err;

	ck_assert_int_eq(parse(s, &req, &cmd, &id, &err), -EBADMSG);
	ck_assert_ptr_null(req);
	ck_assert_ptr_null(cmd);
	ck_assert_int_eq(err.code, code);
	ck_assert_str_eq(err.code_name, mpsup_err_name(code));
	ck_assert_msg(strncmp(err.message, prefix, strlen(prefix)) == 0,
		      "message '%s' does not start with '%s'", err.message, prefix);
	return id;
}

START_TEST(test_request_invalid)
{
	json_t *id;

	ck_assert_ptr_null(parse_fail("{\"cmd\":", MPSUP_E_BAD_REQUEST, "invalid JSON at column "));
	ck_assert_ptr_null(parse_fail("", MPSUP_E_BAD_REQUEST, "invalid JSON"));
	ck_assert_ptr_null(
		parse_fail("{\"cmd\":\"x\"} trailing", MPSUP_E_BAD_REQUEST, "invalid JSON"));
	ck_assert_ptr_null(
		parse_fail("[1,2]", MPSUP_E_BAD_REQUEST, "request must be a JSON object"));
	ck_assert_ptr_null(parse_fail("42", MPSUP_E_BAD_REQUEST, "request must be a JSON object"));
	ck_assert_ptr_null(
		parse_fail("\"cmd\"", MPSUP_E_BAD_REQUEST, "request must be a JSON object"));
	ck_assert_ptr_null(parse_fail("{}", MPSUP_E_BAD_REQUEST, "missing string member \"cmd\""));
	/* Refused by the fast reader, then explained by jansson. */
	ck_assert_ptr_null(parse_fail("{\"cmd\":\"ping\",\"cmd\":\"ping\"}", MPSUP_E_BAD_REQUEST,
				      "invalid JSON at column 19: duplicate object key"));
	ck_assert_ptr_null(parse_fail("{\"cmd\":\"p\\u0000\"}", MPSUP_E_BAD_REQUEST,
				      "invalid JSON at column"));
	ck_assert_ptr_null(parse_fail("{\"cmd\":\"ping\",\"n\":9223372036854775808}",
				      MPSUP_E_BAD_REQUEST, "invalid JSON at column"));

	id = parse_fail("{\"id\":\"abc\"}", MPSUP_E_BAD_REQUEST, "missing string member \"cmd\"");
	ck_assert_str_eq(json_string_value(id), "abc");
	json_decref(id);

	id = parse_fail("{\"id\":3,\"cmd\":5}", MPSUP_E_BAD_REQUEST,
			"member \"cmd\" must be a string");
	ck_assert_int_eq(json_integer_value(id), 3);
	json_decref(id);

	id = parse_fail("{\"id\":{\"k\":[1]},\"cmd\":null}", MPSUP_E_BAD_REQUEST, "member");
	ck_assert(json_is_object(id));
	json_decref(id);
}
END_TEST

/* mpsup_request_read: the parts, by the fast reader and by the slow way. */
static void read_parts(const char *line, const char *want_cmd, const char *want_id,
		       const char *want_params)
{
	json_t *params = NULL, *id = NULL;
	struct mpsup_error err;
	char cmd[16], *d;

	ck_assert_int_eq(
		mpsup_request_read(line, strlen(line), 0, &params, &id, cmd, sizeof(cmd), &err), 0);
	ck_assert_str_eq(cmd, want_cmd);
	if (want_id) {
		d = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
		ck_assert_str_eq(d, want_id);
		free(d);
	} else {
		ck_assert_ptr_null(id);
	}
	d = json_dumps(params, JSON_COMPACT);
	ck_assert_str_eq(d, want_params);
	free(d);
	json_decref(params);
	json_decref(id);
}

START_TEST(test_request_read)
{
	json_t *params = NULL, *id = NULL;
	struct mpsup_error err;
	char cmd[16];
	const char *bad;

	read_parts("{\"id\":7,\"cmd\":\"dict.set\",\"name\":\"d\",\"key\":\"k\"}", "dict.set", "7",
		   "{\"name\":\"d\",\"key\":\"k\"}");
	read_parts("{\"name\":\"d\",\"cmd\":\"ping\"}", "ping", NULL, "{\"name\":\"d\"}");
	read_parts("{\"cmd\":\"ping\",\"id\":{\"a\":[1,\"x\"]}}", "ping", "{\"a\":[1,\"x\"]}",
		   "{}");
	/* Escaped member names and command; "id"/"cmd" deeper are parameters. */
	read_parts("{\"\\u0063md\":\"p\\u0069ng\",\"i\\u0064\":1,\"x\":{\"id\":2,\"cmd\":3}}",
		   "ping", "1", "{\"x\":{\"id\":2,\"cmd\":3}}");
	/* A command longer than the room is cut (and then found nowhere). */
	read_parts("{\"cmd\":\"abcdefghijklmnopqrstuvwxyz\"}", "abcdefghijklmno", NULL, "{}");
	/* The slow way (a long real) gives the same parts. */
	read_parts("{\"id\":1,\"cmd\":\"ping\",\"r\":0."
		   "1000000000000000000000000000000000000000000000000000000000000001}",
		   "ping", "1", "{\"r\":0.10000000000000001}");

	/* Failures carry the messages of mpsup_request_parse and the id. */
	bad = "{\"id\":3,\"cmd\":\"a\",\"cmd\":\"b\"}";
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 0, &params, &id, cmd, sizeof(cmd), &err),
		-EBADMSG);
	ck_assert_int_eq(err.code, MPSUP_E_BAD_REQUEST);
	ck_assert_msg(strstr(err.message, "duplicate object key"), "%s", err.message);
	bad = "{\"id\":1,\"id\":2,\"cmd\":\"a\"}";
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 0, &params, &id, cmd, sizeof(cmd), &err),
		-EBADMSG);
	ck_assert_msg(strstr(err.message, "duplicate object key"), "%s", err.message);
	bad = "{\"id\":3,\"cmd\":5}";
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 0, &params, &id, cmd, sizeof(cmd), &err),
		-EBADMSG);
	ck_assert_str_eq(err.message, "member \"cmd\" must be a string");
	ck_assert_int_eq(json_integer_value(id), 3);
	json_decref(id);
	bad = "{\"id\":4}";
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 0, &params, &id, cmd, sizeof(cmd), &err),
		-EBADMSG);
	ck_assert_str_eq(err.message, "missing string member \"cmd\"");
	ck_assert_int_eq(json_integer_value(id), 4);
	json_decref(id);
	bad = "[\"cmd\"]";
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 0, &params, &id, cmd, sizeof(cmd), &err),
		-EBADMSG);
	ck_assert_str_eq(err.message, "request must be a JSON object");
	ck_assert_ptr_null(id);
	bad = "{\"cmd\":\"x\",\"a\":[[[[1]]]]}";
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 4, &params, &id, cmd, sizeof(cmd), &err),
		-EBADMSG);
	ck_assert_int_eq(err.code, MPSUP_E_TOO_LARGE);
	ck_assert_int_eq(
		mpsup_request_read(bad, strlen(bad), 5, &params, &id, cmd, sizeof(cmd), &err), 0);
	json_decref(params);
}
END_TEST

/* mpsup_request_members on line: -1 when refused, else 0 with the members
 * as an object equal to what mpsup_request_read gives (and the same cmd
 * and id). *ret_types: each member's json_type, in order. */
static int members_same(const char *line, int *ret_types)
{
	struct mpsup_member m[4];
	json_t *params = NULL, *id = NULL, *id2 = NULL, *o;
	struct mpsup_error err;
	char cmd[16], cmd2[16];
	size_t n;

	if (mpsup_request_members(line, strlen(line), 0, m, 4, &n, &id, cmd, sizeof(cmd)) < 0)
		return -1;
	ck_assert_int_eq(
		mpsup_request_read(line, strlen(line), 0, &params, &id2, cmd2, sizeof(cmd2), &err),
		0);
	ck_assert_str_eq(cmd, cmd2);
	ck_assert((!id && !id2) || json_equal(id, id2));
	o = json_object();
	for (size_t i = 0; i < n; i++) {
		ret_types[i] = m[i].type;
		json_object_setn_new_nocheck(o, m[i].key, m[i].key_len, mpsup_member_json(&m[i]));
	}
	ck_assert_int_eq(json_object_size(o), n);
	ck_assert_msg(json_equal(o, params), "members differ: %s", line);
	json_decref(o);
	json_decref(params);
	json_decref(id);
	json_decref(id2);
	mpsup_members_free(m, n);
	return 0;
}

/* Collects the elements mpsup_json_array_each walks, joined by '|'. */
static int collect_elem(void *arg, const char *v, size_t len)
{
	char *out = arg;

	if (out[0])
		strcat(out, "|");
	strncat(out, v, len);
	return strlen(out) > 40 ? -E2BIG : 0;
}

START_TEST(test_json_array_each)
{
	char out[256] = "";
	const char *t;

	t = " [ 1 , \"a,]\" ,{\"k\":[2, {}]}, null,-0.5e3 ] ";
	ck_assert_int_eq(mpsup_json_array_each(t, strlen(t), 0, collect_elem, out), 5);
	ck_assert_str_eq(out, "1|\"a,]\"|{\"k\":[2, {}]}|null|-0.5e3");
	ck_assert_int_eq(mpsup_json_array_each("[]", 2, 0, NULL, NULL), 0);
	/* refused as mpsup_json_loadb refuses */
	ck_assert_int_eq(mpsup_json_array_each("[1,]", 4, 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mpsup_json_array_each("{}", 2, 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mpsup_json_array_each("[01]", 4, 0, NULL, NULL), -EINVAL);
	t = "[{\"a\":1,\"a\":2}]"; /* duplicate key */
	ck_assert_int_eq(mpsup_json_array_each(t, strlen(t), 0, NULL, NULL), -EINVAL);
	t = "[{\"a\":1,\"\\u0061\":2}]"; /* the same key, escaped: jansson's check */
	ck_assert_int_eq(mpsup_json_array_each(t, strlen(t), 0, NULL, NULL), -EINVAL);
	t = "[{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,"
	    "\"j\":10,\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"q\":17,\"a\":0}]";
	ck_assert_int_eq(mpsup_json_array_each(t, strlen(t), 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mpsup_json_array_each("[\"\\ud800\"]", 10, 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mpsup_json_array_each("[99999999999999999999]", 22, 0, NULL, NULL),
			 -EINVAL);
	ck_assert_int_eq(mpsup_json_array_each("[123456789012345678]", 20, 0, NULL, NULL), 1);
	ck_assert_int_eq(mpsup_json_array_each("[-9223372036854775808]", 22, 0, NULL, NULL), 1);
	ck_assert_int_eq(mpsup_json_array_each("[[[1]]]", 7, 2, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mpsup_json_array_each("[[[1]]]", 7, 3, NULL, NULL), 1);
	/* fn stops the walk */
	out[0] = '\0';
	t = "[\"0123456789\",\"0123456789\",\"0123456789\",\"0123456789\"]";
	ck_assert_int_eq(mpsup_json_array_each(t, strlen(t), 0, collect_elem, out), -E2BIG);
}
END_TEST

/* jansson allocations made while a test counts them */
static size_t json_allocs;

static void *counting_malloc(size_t n)
{
	json_allocs++;
	return malloc(n);
}

/* A nested object (depth deep, each level with a key that needs the
 * duplicate check of jansson: escaped, or past the 16 checked by hand)
 * around a list of bulk integers, inside a list: checking it must not
 * build the inner values again at every level (a client's request held
 * mpsupd for seconds). */
static void deep_keys(size_t depth, size_t bulk, bool many_keys, bool dup)
{
	size_t cap = 64 + depth * 200 + bulk * 2, n = 0;
	char *t = malloc(cap);

	ck_assert_ptr_nonnull(t);
	t[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		n += (size_t)snprintf(t + n, cap - n, "{\"v\":");
	t[n++] = '[';
	for (size_t i = 0; i < bulk; i++)
		n += (size_t)snprintf(t + n, cap - n, "%s7", i ? "," : "");
	t[n++] = ']';
	for (size_t i = 0; i < depth; i++) {
		if (many_keys)
			for (char k = 'a'; k <= 'q'; k++)
				n += (size_t)snprintf(t + n, cap - n, ",\"%c\":%d", k, k);
		else
			n += (size_t)snprintf(t + n, cap - n, ",\"\\n\":0");
		if (dup && i == depth / 2)
			n += (size_t)snprintf(t + n, cap - n, ",\"\\u0076\":1"); /* "v" again */
		t[n++] = '}';
	}
	t[n++] = ']';
	json_allocs = 0;
	json_set_alloc_funcs(counting_malloc, free);
	ck_assert_int_eq(mpsup_json_array_each(t, n, 0, NULL, NULL), dup ? -EINVAL : 1);
	json_set_alloc_funcs(malloc, free);
	/* a few per level (the keys jansson checks), none per inner value */
	ck_assert_uint_lt(json_allocs, depth * 64);
	free(t);
}

START_TEST(test_json_check_deep_keys)
{
	deep_keys(60, 20000, false, false);
	deep_keys(60, 20000, true, false);
	deep_keys(60, 20000, false, true);
	deep_keys(60, 20000, true, true);
}
END_TEST

START_TEST(test_members_lazy)
{
	struct mpsup_member m[4];
	json_t *id = NULL, *v;
	char cmd[16], line[9000];
	size_t n, off;

	/* a long list is checked and left as text; a short one is built */
	off = (size_t)snprintf(line, sizeof(line), "{\"cmd\":\"x\",\"s\":[1],\"l\":[0");
	while (off < 5000)
		off += (size_t)snprintf(line + off, sizeof(line) - off, ",1");
	off += (size_t)snprintf(line + off, sizeof(line) - off, "]}");
	ck_assert_int_eq(
		mpsup_request_members_lazy(line, off, 0, 4096, m, 4, &n, &id, cmd, sizeof(cmd)), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_ptr_nonnull(m[0].v);
	ck_assert_ptr_null(m[1].v);
	ck_assert_int_eq(m[1].type, JSON_ARRAY);
	ck_assert(m[1].raw[0] == '[' && m[1].raw[m[1].raw_len - 1] == ']');
	v = mpsup_member_json(&m[1]); /* built on demand */
	ck_assert_uint_gt(json_array_size(v), 2000);
	json_decref(v);
	mpsup_members_free(m, n);
	/* an invalid long list is refused as a whole */
	line[off - 3] = ',';
	ck_assert_int_eq(
		mpsup_request_members_lazy(line, off, 0, 4096, m, 4, &n, &id, cmd, sizeof(cmd)),
		-1);
	/* plain objects: every container as text, scalars with their text */
	ck_assert_int_eq(mpsup_json_members("{\"id\": 7, \"results\": [1, 2], \"e\": \"x\"}", 38, 0,
					    m, 4, &n),
			 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(m[0].i, 7);
	ck_assert(m[1].v == NULL && m[1].raw_len == 6 && memcmp(m[1].raw, "[1, 2]", 6) == 0);
	ck_assert(m[2].raw_len == 3 && memcmp(m[2].raw, "\"x\"", 3) == 0);
	mpsup_members_free(m, n);
	ck_assert_int_eq(mpsup_json_members("{\"a\":1,\"a\":2}", 13, 0, m, 4, &n), -EINVAL);
	ck_assert_int_eq(mpsup_json_members("[1]", 3, 0, m, 4, &n), -EINVAL);
}
END_TEST

START_TEST(test_request_members)
{
	int t[4];

	ck_assert_int_eq(members_same("{\"id\":7,\"cmd\":\"dict.set\",\"name\":\"d\",\"key\":\"k\","
				      "\"value\":[1,2.5,null]}",
				      t),
			 0);
	ck_assert(t[0] == JSON_STRING && t[1] == JSON_STRING && t[2] == JSON_ARRAY);
	ck_assert_int_eq(members_same(" { \"cmd\" : \"x\" , \"a\" : -12 , \"b\" : 1.5e3 , "
				      "\"c\" : true , \"d\" : null } ",
				      t),
			 0);
	ck_assert(t[0] == JSON_INTEGER && t[1] == JSON_REAL && t[2] == JSON_TRUE &&
		  t[3] == JSON_NULL);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"s\":\"a\\n\\u00e9\",\"f\":false,"
				      "\"o\":{\"k\":[{}]},\"i\":-9223372036854775808}",
				      t),
			 0);
	ck_assert(t[0] == JSON_STRING && t[1] == JSON_FALSE && t[2] == JSON_OBJECT &&
		  t[3] == JSON_INTEGER);
	ck_assert_int_eq(members_same("{\"cmd\":\"ping\"}", t), 0);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"id\":{\"a\":1},\"u\":\"\xc3\xa9\"}", t), 0);
	/* Refused: left to mpsup_request_read, which reads or explains. */
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"k\\u0065y\":1}", t), -1); /* escaped key */
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}", t),
			 -1); /* more than the room */
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":1,\"a\":2}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":01}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":1", t), -1);
	ck_assert_int_eq(members_same("{\"a\":1}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":1}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":99999999999999999999}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":\"\\ud800\"}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\",\"a\":[1,]}", t), -1);
	ck_assert_int_eq(members_same("{\"cmd\":\"x\"} x", t), -1);
	ck_assert_int_eq(members_same("[\"cmd\"]", t), -1);
}
END_TEST

/* Build {"cmd":"x","a":[[...]]} with the given total depth. */
static char *deep_request(size_t depth)
{
	const char *head = "{\"cmd\":\"x\",\"a\":";
	size_t hl = strlen(head), n = depth - 1;
	char *s = malloc(hl + 2 * n + 2), *p;

	ck_assert_ptr_nonnull(s);
	memcpy(s, head, hl);
	p = s + hl;
	memset(p, '[', n);
	memset(p + n, ']', n);
	p[2 * n] = '}';
	p[2 * n + 1] = '\0';
	return s;
}

START_TEST(test_request_depth)
{
	json_t *req = NULL, *id = NULL;
	const char *cmd;
	struct mpsup_error err;
	char *s;

	s = deep_request(MPSUP_DEFAULT_MAX_DEPTH);
	ck_assert_int_eq(parse(s, &req, &cmd, &id, &err), 0);
	json_decref(req);
	free(s);

	s = deep_request(MPSUP_DEFAULT_MAX_DEPTH + 1);
	ck_assert_int_eq(parse(s, &req, &cmd, &id, &err), -EBADMSG);
	ck_assert_int_eq(err.code, MPSUP_E_TOO_LARGE);
	ck_assert_str_eq(err.message, "JSON nested deeper than 64 levels");
	free(s);

	/* 10000 levels (unbalanced too): refused by the scan, no parser recursion */
	s = malloc(10001);
	memset(s, '[', 10000);
	s[10000] = '\0';
	ck_assert_int_eq(mpsup_request_parse(s, 10000, 64, &req, &cmd, &id, &err), -EBADMSG);
	ck_assert_int_eq(err.code, MPSUP_E_TOO_LARGE);
	ck_assert_ptr_null(id);
	free(s);
	s = deep_request(10000);
	ck_assert_int_eq(parse(s, &req, &cmd, &id, &err), -EBADMSG);
	ck_assert_int_eq(err.code, MPSUP_E_TOO_LARGE);
	free(s);
}
END_TEST

/* Compact dump of a value, for comparisons. */
static char *dump(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(test_request_new)
{
	json_t *params = json_pack("{s:i, s:s}", "a", 2, "cmd", "evil");
	json_t *id = json_integer(1);
	json_t *req;
	char *s;

	req = mpsup_request_new("x.y", params, id);
	s = dump(req);
	ck_assert_str_eq(s, "{\"id\":1,\"cmd\":\"x.y\",\"a\":2}");
	free(s);
	json_decref(req);

	req = mpsup_request_new("ping", NULL, NULL);
	s = dump(req);
	ck_assert_str_eq(s, "{\"cmd\":\"ping\"}");
	free(s);
	json_decref(req);

	ck_assert_ptr_null(mpsup_request_new(NULL, NULL, NULL));
	ck_assert_ptr_null(mpsup_request_new("x", id, NULL)); /* params must be an object */
	json_decref(params);
	json_decref(id);
}
END_TEST

START_TEST(test_response_build)
{
	json_t *id = json_string("r1"), *resp;
	char *s;

	resp = mpsup_response_ok(id, json_pack("{s:b}", "set", 1));
	s = dump(resp);
	ck_assert_str_eq(s, "{\"id\":\"r1\",\"ok\":true,\"result\":{\"set\":true}}");
	free(s);
	json_decref(resp);

	resp = mpsup_response_ok(NULL, NULL);
	s = dump(resp);
	ck_assert_str_eq(s, "{\"id\":null,\"ok\":true,\"result\":null}");
	free(s);
	json_decref(resp);

	resp = mpsup_response_error(id, MPSUP_E_NOT_FOUND, "no pool \"web\"");
	s = dump(resp);
	ck_assert_str_eq(s, "{\"id\":\"r1\",\"ok\":false,\"error\":"
			    "{\"code\":\"not_found\",\"message\":\"no pool \\\"web\\\"\"}}");
	free(s);
	json_decref(resp);

	resp = mpsup_response_error(NULL, (enum mpsup_err)999, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(resp, "error"), "code")),
			 "internal");
	json_decref(resp);
	json_decref(id);
}
END_TEST

/* ---- error codes --------------------------------------------------------- */

START_TEST(test_error_table)
{
	static const char *const names[] = {
		"ok",
		"bad_request",
		"unknown_command",
		"not_found",
		"exists",
		"wrong_type",
		"out_of_range",
		"timeout",
		"empty",
		"full",
		"permission_denied",
		"too_large",
		"limit",
		"conflict",
		"broken",
		"spawn_failed",
		"shutting_down",
		"internal",
		"unavailable",
	};
	struct mpsup_error err;

	ck_assert_uint_eq(sizeof(names) / sizeof(names[0]), MPSUP_E__MAX);
	for (int i = 0; i < MPSUP_E__MAX; i++) {
		const char *n = mpsup_err_name((enum mpsup_err)i);

		ck_assert_ptr_nonnull(n);
		ck_assert_str_eq(n, names[i]);
		ck_assert_int_eq(mpsup_err_from_name(n), i);
		ck_assert_uint_lt(strlen(n), sizeof(err.code_name));
	}
	ck_assert_ptr_null(mpsup_err_name(MPSUP_E__MAX));
	ck_assert_ptr_null(mpsup_err_name((enum mpsup_err) - 1));
	ck_assert_int_eq(mpsup_err_from_name("nope"), -EINVAL);
	ck_assert_int_eq(mpsup_err_from_name(""), -EINVAL);
	ck_assert_int_eq(mpsup_err_from_name(NULL), -EINVAL);

	mpsup_error_set(&err, MPSUP_E_FULL, "queue %s is full (%d)", "q", 3);
	ck_assert_int_eq(err.code, MPSUP_E_FULL);
	ck_assert_str_eq(err.code_name, "full");
	ck_assert_str_eq(err.message, "queue q is full (3)");
	mpsup_error_set(NULL, MPSUP_E_FULL, "x"); /* harmless */
}
END_TEST

/* ---- response parsing ---------------------------------------------------- */

/* Parse a response given as text; returns the result of mpsup_response_parse. */
static int parse_resp(const char *text, json_t **ret_result, struct mpsup_error *err)
{
	json_t *resp = json_loads(text, JSON_DECODE_ANY, NULL), *id = NULL, *result = NULL;
	int r;

	ck_assert_ptr_nonnull(resp);
	r = mpsup_response_parse(resp, &id, &result, err);
	if (ret_result)
		*ret_result = json_incref(result);
	json_decref(resp);
	return r;
}

START_TEST(test_response_parse)
{
	struct mpsup_error err;
	json_t *result;

	ck_assert_int_eq(parse_resp("{\"id\":1,\"ok\":true,\"result\":[1,2]}", &result, &err), 0);
	ck_assert_uint_eq(json_array_size(result), 2);
	json_decref(result);

	ck_assert_int_eq(parse_resp("{\"ok\":true}", &result, &err), 0);
	ck_assert_ptr_null(result);

	memset(&err, 0, sizeof(err));
	ck_assert_int_eq(parse_resp("{\"id\":1,\"ok\":false,\"error\":{\"code\":\"empty\","
				    "\"message\":\"queue q is empty\"}}",
				    NULL, &err),
			 1);
	ck_assert_int_eq(err.code, MPSUP_E_EMPTY);
	ck_assert_str_eq(err.code_name, "empty");
	ck_assert_str_eq(err.message, "queue q is empty");

	/* a code from a newer daemon: internal, but the name is kept */
	ck_assert_int_eq(parse_resp("{\"ok\":false,\"error\":{\"code\":\"future_thing\","
				    "\"message\":\"m\"}}",
				    NULL, &err),
			 1);
	ck_assert_int_eq(err.code, MPSUP_E_INTERNAL);
	ck_assert_str_eq(err.code_name, "future_thing");

	ck_assert_int_eq(parse_resp("[1]", NULL, &err), -EBADMSG);
	ck_assert_int_eq(parse_resp("{}", NULL, &err), -EBADMSG);
	ck_assert_int_eq(parse_resp("{\"ok\":1,\"result\":2}", NULL, &err), -EBADMSG);
	ck_assert_int_eq(parse_resp("{\"ok\":false}", NULL, &err), -EBADMSG);
	ck_assert_int_eq(parse_resp("{\"ok\":false,\"error\":\"x\"}", NULL, &err), -EBADMSG);
	ck_assert_int_eq(parse_resp("{\"ok\":false,\"error\":{\"message\":\"x\"}}", NULL, &err),
			 -EBADMSG);
	ck_assert_int_eq(parse_resp("{\"ok\":false,\"error\":{\"code\":1}}", NULL, &err), -EBADMSG);
	ck_assert_int_eq(mpsup_response_parse(NULL, NULL, NULL, NULL), -EBADMSG);
}
END_TEST

/* ---- client against an in-test server ------------------------------------ */

/*
 * A one-connection server thread built on the library itself. Commands:
 * "fail" -> not_found error; "sleep" -> no answer; "close" -> hang up;
 * "badid" -> answer with another id; "big" -> a 100 KiB answer;
 * "value.add" -> by + 100; "lock.acquire" -> {"acquired": true};
 * "pool.imap" -> a stream of three items (one failed) and its summary,
 * then hang up; "stream.cut" -> a first answer, one line, hang up;
 * anything else -> the request echoed as the result.
 */
struct server {
	char dir[64];
	char path[100];
	int lfd;
	pthread_t thread;
};

static struct server srv;

/* Send one response object followed by '\n' (the client may be gone). */
static void server_send(int fd, json_t *resp)
{
	char *s = json_dumps(resp, JSON_COMPACT);
	size_t len = strlen(s), off = 0;

	s = realloc(s, len + 2);
	s[len++] = '\n';
	while (off < len) {
		ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(s);
	json_decref(resp);
}

/* Answer one request line; returns false to hang up. */
static bool server_handle(int fd, const char *line, size_t len)
{
	struct mpsup_error err;
	json_t *req = NULL, *id = NULL;
	const char *cmd = NULL;

	if (mpsup_request_parse(line, len, 0, &req, &cmd, &id, &err) < 0) {
		server_send(fd, mpsup_response_error(id, err.code, err.message));
		json_decref(id);
		return true;
	}
	id = json_object_get(req, "id");
	if (strcmp(cmd, "close") == 0) {
		json_decref(req);
		return false;
	} else if (strcmp(cmd, "sleep") == 0) {
		/* no answer */
	} else if (strcmp(cmd, "fail") == 0) {
		server_send(fd, mpsup_response_error(id, MPSUP_E_NOT_FOUND, "no such thing"));
	} else if (strcmp(cmd, "badid") == 0) {
		json_t *other = json_string("other");

		server_send(fd, mpsup_response_ok(other, NULL));
		json_decref(other);
	} else if (strcmp(cmd, "big") == 0) {
		char *s = malloc(100 * 1024 + 1);

		memset(s, 'x', 100 * 1024);
		s[100 * 1024] = '\0';
		server_send(fd, mpsup_response_ok(id, json_string(s)));
		free(s);
	} else if (strcmp(cmd, "value.add") == 0) {
		json_int_t by = json_integer_value(json_object_get(req, "by"));

		server_send(fd, mpsup_response_ok(id, json_integer(by + 100)));
	} else if (strcmp(cmd, "lock.acquire") == 0) {
		server_send(fd, mpsup_response_ok(id, json_pack("{s:b}", "acquired", 1)));
	} else if (strcmp(cmd, "pool.imap") == 0) {
		server_send(fd, mpsup_response_ok(
					id, json_pack("{s:I, s:O}", "n",
						      (json_int_t)json_array_size(
							      json_object_get(req, "items")),
						      "ordered", json_object_get(req, "ordered"))));
		server_send(fd, json_pack("{s:i, s:i}", "index", 0, "result", 10));
		server_send(fd, json_pack("{s:i, s:{s:s, s:s}}", "index", 2, "error", "code",
					  "internal", "message", "bad item"));
		server_send(fd, json_pack("{s:i, s:s}", "index", 1, "result", "x"));
		server_send(fd, json_pack("{s:b, s:i, s:i}", "done", 1, "n", 3, "failed", 1));
		json_decref(req);
		return false;
	} else if (strcmp(cmd, "stream.cut") == 0) {
		server_send(fd, mpsup_response_ok(id, NULL));
		server_send(fd, json_pack("{s:i}", "index", 0));
		json_decref(req);
		return false;
	} else {
		server_send(fd, mpsup_response_ok(id, json_deep_copy(req)));
	}
	json_decref(req);
	return true;
}

static void *server_main(void *arg)
{
	struct mpsup_framer *f = mpsup_framer_new(0);
	int fd = accept(srv.lfd, NULL, NULL);
	bool open = fd >= 0;

	(void)arg;
	while (open) {
		char *buf, *line;
		size_t len;
		ssize_t n = mpsup_framer_space(f, 0, &buf);
		int r;

		n = recv(fd, buf, (size_t)n, 0);
		if (n <= 0)
			break;
		mpsup_framer_commit(f, (size_t)n);
		while (open && (r = mpsup_framer_pop(f, &line, &len)) == 1)
			open = server_handle(fd, line, len);
	}
	if (fd >= 0)
		close(fd);
	mpsup_framer_free(f);
	return NULL;
}

static void server_start(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	strcpy(srv.dir, "/tmp/mpsup-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(srv.dir));
	snprintf(srv.path, sizeof(srv.path), "%s/sock", srv.dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", srv.path);
	srv.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(srv.lfd, 0);
	ck_assert_int_eq(bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(srv.lfd, 4), 0);
	ck_assert_int_eq(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
}

static void server_stop(void)
{
	pthread_join(srv.thread, NULL);
	close(srv.lfd);
	unlink(srv.path);
	rmdir(srv.dir);
}

/* Connect a client to the test server. */
static struct mpsup_client *client_new(void)
{
	struct mpsup_client *c = NULL;

	ck_assert_int_eq(mpsup_connect(srv.path, &c), 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_ge(mpsup_client_fd(c), 0);
	return c;
}

START_TEST(test_client_call)
{
	struct mpsup_client *c = client_new();
	struct mpsup_error err;
	json_t *params = json_pack("{s:i}", "a", 1), *result = NULL;

	ck_assert_int_eq(mpsup_call(c, "echo", params, &result, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(result, "cmd")), "echo");
	ck_assert_int_eq(json_integer_value(json_object_get(result, "a")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(result, "id")), 1);
	json_decref(result);

	ck_assert_int_eq(mpsup_call(c, "echo", NULL, &result, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(result, "id")), 2);
	json_decref(result);

	ck_assert_int_eq(mpsup_call(c, "echo", NULL, NULL, NULL), 0); /* result not wanted */

	memset(&err, 0, sizeof(err));
	result = NULL;
	ck_assert_int_eq(mpsup_call(c, "fail", NULL, &result, &err), 1);
	ck_assert_ptr_null(result);
	ck_assert_int_eq(err.code, MPSUP_E_NOT_FOUND);
	ck_assert_str_eq(err.code_name, "not_found");
	ck_assert_str_eq(err.message, "no such thing");

	ck_assert_int_eq(mpsup_call(c, "badid", NULL, &result, &err), -EPROTO);
	json_decref(params);
	params = json_array();
	ck_assert_int_eq(mpsup_call(c, "x", params, &result, &err), -EINVAL);
	json_decref(params);
	ck_assert_ptr_null(mpsup_close(c));
	ck_assert_ptr_null(mpsup_close(NULL));
	server_stop();
}
END_TEST

START_TEST(test_client_imap)
{
	struct mpsup_client *c = client_new();
	struct mpsup_imap_item it;
	struct mpsup_error err;
	json_t *items = json_pack("[i, i, i]", 1, 2, 3), *msg = NULL;
	size_t n = 0, failed = 99;

	ck_assert_int_eq(mpsup_imap_open(c, "p", items, false, 0, &n, &err), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(mpsup_imap_next(c, &it, &failed), 1);
	ck_assert_uint_eq(it.index, 0);
	ck_assert_int_eq(json_integer_value(it.result), 10);
	json_decref(it.result);
	ck_assert_int_eq(mpsup_imap_next(c, &it, &failed), 1);
	ck_assert_uint_eq(it.index, 2);
	ck_assert_ptr_null(it.result);
	ck_assert_int_eq(it.error.code, MPSUP_E_INTERNAL);
	ck_assert_str_eq(it.error.message, "bad item");
	ck_assert_int_eq(mpsup_imap_next(c, &it, &failed), 1);
	ck_assert_str_eq(json_string_value(it.result), "x");
	json_decref(it.result);
	ck_assert_int_eq(mpsup_imap_next(c, &it, &failed), 0);
	ck_assert_uint_eq(failed, 1);
	/* the server hung up after the summary */
	ck_assert_int_eq(mpsup_stream_next(c, &msg), -ECONNRESET);
	ck_assert_int_eq(mpsup_imap_open(c, "p", NULL, true, 0, &n, &err), -EINVAL);
	json_decref(items);
	mpsup_close(c);
	server_stop();
}
END_TEST

START_TEST(test_client_stream_cut)
{
	struct mpsup_client *c = client_new();
	struct mpsup_imap_item it;
	struct mpsup_error err;
	json_t *result = NULL;

	ck_assert_int_eq(mpsup_stream_open(c, "stream.cut", NULL, &result, &err), 0);
	json_decref(result);
	/* a line that is no item, then the end before any summary */
	ck_assert_int_eq(mpsup_imap_next(c, &it, NULL), -EBADMSG);
	ck_assert_int_eq(mpsup_imap_next(c, &it, NULL), -ECONNRESET);
	mpsup_close(c);
	server_stop();
}
END_TEST

START_TEST(test_client_pipelining)
{
	struct mpsup_client *c = client_new();
	const int n = 50;

	for (int i = 0; i < n; i++) {
		json_t *id = json_integer(i), *req = mpsup_request_new("echo", NULL, id);

		ck_assert_int_eq(mpsup_send(c, req), 0);
		json_decref(req);
		json_decref(id);
	}
	/* a raw line in the middle of the pipeline: not JSON -> bad_request, still usable */
	ck_assert_int_eq(mpsup_send_raw(c, "{oops\n", 6), 0);
	for (int i = 0; i < n; i++) {
		json_t *resp = NULL, *rid = NULL, *result = NULL;

		ck_assert_int_eq(mpsup_recv(c, &resp), 0);
		ck_assert_int_eq(mpsup_response_parse(resp, &rid, &result, NULL), 0);
		ck_assert_int_eq(json_integer_value(rid), i);
		json_decref(resp);
	}
	{
		char *line = NULL;
		size_t len = 0;

		ck_assert_int_eq(mpsup_recv_line(c, &line, &len), 0);
		ck_assert_uint_eq(len, strlen(line));
		ck_assert_ptr_nonnull(strstr(line, "\"bad_request\""));
		ck_assert_ptr_nonnull(strstr(line, "\"id\":null"));
		free(line);
	}
	mpsup_close(c);
	server_stop();
}
END_TEST

START_TEST(test_client_timeout)
{
	struct mpsup_client *c = client_new();
	struct timespec a, b;
	json_t *result = NULL;
	double elapsed;

	mpsup_set_timeout(c, 0.2);
	clock_gettime(CLOCK_MONOTONIC, &a);
	ck_assert_int_eq(mpsup_call(c, "sleep", NULL, &result, NULL), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	elapsed = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	ck_assert_msg(elapsed >= 0.19 && elapsed < 2.0, "elapsed %f", elapsed);
	ck_assert_ptr_null(result);

	mpsup_set_timeout(c, 0); /* poll once */
	ck_assert_int_eq(mpsup_recv(c, &result), -ETIMEDOUT);
	mpsup_close(c);
	server_stop();
}
END_TEST

START_TEST(test_client_peer_close)
{
	struct mpsup_client *c = client_new();
	json_t *result = NULL;
	int r;

	ck_assert_int_eq(mpsup_call(c, "close", NULL, &result, NULL), -ECONNRESET);
	ck_assert_int_eq(mpsup_recv(c, &result), -ECONNRESET);
	server_stop();
	/* writing to a closed peer: an error, never SIGPIPE */
	r = mpsup_call(c, "echo", NULL, &result, NULL);
	ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "r = %d", r);
	mpsup_close(c);
}
END_TEST

START_TEST(test_client_max_line)
{
	struct mpsup_client *c = client_new();
	json_t *result = NULL;

	ck_assert_int_eq(mpsup_call(c, "big", NULL, &result, NULL), 0);
	ck_assert_uint_eq(json_string_length(result), 100 * 1024);
	json_decref(result);
	mpsup_set_max_line(c, 1000);
	ck_assert_int_eq(mpsup_call(c, "big", NULL, &result, NULL), -EMSGSIZE);
	mpsup_close(c);
	server_stop();
}
END_TEST

START_TEST(test_client_calls)
{
	struct mpsup_client *c = client_new();
	struct mpsup_error err;
	json_int_t v = 0;
	json_t *value = NULL, *item = json_pack("{s:i}", "job", 9);
	bool acquired = false;

	ck_assert_int_eq(mpsup_value_add(c, "counter", 5, &v, &err), 0);
	ck_assert_int_eq(v, 105);
	ck_assert_int_eq(mpsup_dict_set(c, "d", "k", item, &err), 0);

	/* the server echoes: check the params that went out */
	ck_assert_int_eq(mpsup_dict_get(c, "d", "k", &value, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(value, "cmd")), "dict.get");
	ck_assert_str_eq(json_string_value(json_object_get(value, "name")), "d");
	ck_assert_str_eq(json_string_value(json_object_get(value, "key")), "k");
	json_decref(value);

	ck_assert_int_eq(mpsup_queue_put(c, "q", item, -1, &err), 0);
	ck_assert_int_eq(mpsup_queue_get(c, "q", -1, &value, &err), 0);
	ck_assert_ptr_null(json_object_get(value, "timeout"));
	json_decref(value);
	ck_assert_int_eq(mpsup_queue_get(c, "q", 0.25, &value, &err), 0);
	ck_assert(json_real_value(json_object_get(value, "timeout")) == 0.25);
	json_decref(value);
	ck_assert_int_eq(mpsup_queue_get(c, "q", 0, &value, &err), 0);
	ck_assert(json_is_number(json_object_get(value, "timeout")));
	json_decref(value);

	ck_assert_int_eq(mpsup_lock_acquire(c, "l", 1.5, &acquired, &err), 0);
	ck_assert(acquired);
	ck_assert_int_eq(mpsup_lock_release(c, "l", &err), 0);
	ck_assert_int_eq(mpsup_lock_release(c, NULL, &err), -EINVAL);
	/* a NaN timeout is refused before anything is sent */
	ck_assert_int_eq(mpsup_queue_get(c, "q", NAN, &value, &err), -EINVAL);
	ck_assert_int_eq(mpsup_queue_put(c, "q", item, NAN, &err), -EINVAL);
	ck_assert_int_eq(mpsup_lock_acquire(c, "l", NAN, &acquired, &err), -EINVAL);
	ck_assert_int_eq(mpsup_value_add(c, "counter", 1, &v, &err), 0); /* still in step */
	ck_assert_int_eq(v, 101);

	json_decref(item);
	mpsup_close(c);
	server_stop();
}
END_TEST

START_TEST(test_client_connect_errors)
{
	struct mpsup_client *c = NULL;
	char longpath[300];

	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	ck_assert_int_eq(mpsup_connect(longpath, &c), -ENAMETOOLONG);
	ck_assert_int_eq(mpsup_connect("/nonexistent/mpsup.sock", &c), -ENOENT);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_socket_path)
{
	unsetenv("MPSUP_SOCKET");
	ck_assert_str_eq(mpsup_socket_path(NULL), MPSUP_DEFAULT_SOCKET);
	setenv("MPSUP_SOCKET", "/tmp/x.sock", 1);
	ck_assert_str_eq(mpsup_socket_path(NULL), "/tmp/x.sock");
	ck_assert_str_eq(mpsup_socket_path("/a/b"), "/a/b");
	setenv("MPSUP_SOCKET", "", 1);
	ck_assert_str_eq(mpsup_socket_path(NULL), MPSUP_DEFAULT_SOCKET);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("frame");
	tcase_add_test(tc, test_frame_byte_by_byte);
	tcase_add_test(tc, test_frame_joined);
	tcase_add_test(tc, test_frame_max_line_exact);
	tcase_add_test(tc, test_frame_max_line_plus_one);
	tcase_add_test(tc, test_frame_partial_too_big);
	tcase_add_test(tc, test_frame_space_commit);
	tcase_add_test(tc, test_frame_stream);
	tcase_add_test(tc, test_frame_crlf);
	tcase_add_test(tc, test_frame_null_safe);
	tcase_add_test(tc, test_json_depth);
	tcase_add_test(tc, test_json_read_valid);
	tcase_add_test(tc, test_json_read_refused);
	tcase_add_test(tc, test_json_read_string_words);
	tcase_add_test(tc, test_json_read_depth);
	suite_add_tcase(s, tc);

	tc = tcase_create("envelope");
	tcase_add_test(tc, test_request_valid);
	tcase_add_test(tc, test_request_invalid);
	tcase_add_test(tc, test_request_depth);
	tcase_add_test(tc, test_request_read);
	tcase_add_test(tc, test_request_members);
	tcase_add_test(tc, test_json_array_each);
	tcase_add_test(tc, test_members_lazy);
	tcase_add_test(tc, test_json_check_deep_keys);
	tcase_add_test(tc, test_request_new);
	tcase_add_test(tc, test_response_build);
	tcase_add_test(tc, test_error_table);
	tcase_add_test(tc, test_response_parse);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	tcase_add_checked_fixture(tc, server_start, NULL);
	tcase_add_test(tc, test_client_call);
	tcase_add_test(tc, test_client_pipelining);
	tcase_add_test(tc, test_client_imap);
	tcase_add_test(tc, test_client_stream_cut);
	tcase_add_test(tc, test_client_timeout);
	tcase_add_test(tc, test_client_peer_close);
	tcase_add_test(tc, test_client_max_line);
	tcase_add_test(tc, test_client_calls);
	suite_add_tcase(s, tc);

	tc = tcase_create("connect");
	tcase_add_test(tc, test_client_connect_errors);
	tcase_add_test(tc, test_socket_path);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(proto_suite());
}
