/*
 * Unit tests of the shared-state types (daemon/state/obj.c, waitq.c, t_*.c).
 *
 * The requests take the daemon's real request path: each is a line given
 * to command_dispatch() on a real connection (conn_new_for_fd on one end of
 * a socketpair, the test reading the other), so the envelope, the in-place
 * parameters, the answers and the closing of a connection are the code
 * mpsupd runs. Only the events module is replaced (a counter of what is
 * published); timeouts run on a real libevent base.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "command.h"
#include "daemon.h"
#include "events.h"
#include "log.h"
#include "obj.h"
#include "conn.h"
#include "unit.h"

/* --- the events module, counted ------------------------------------------------ */

static int n_published;
static bool listening;

int events_wanted(enum event_topic topic)
{
	(void)topic;
	return listening;
}

void events_publish(enum event_topic topic, json_t *ev)
{
	(void)topic;
	n_published++;
	json_decref(ev);
}

/* --- clients on real connections ---------------------------------------------- */

#define N_CONNS 4

static struct conf test_conf;
static json_t *answers; /* "id" -> {ok, result | code and message} */
static struct conn *conns[N_CONNS];
static int peers[N_CONNS]; /* the test's ends of the socketpairs */
static char inbuf[N_CONNS][1 << 16];
static size_t inlen[N_CONNS];
static long long next_id;

/* Make client i: a connection on a socketpair, with the state role. */
static void client_open(int i)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	conns[i] = conn_new_for_fd(sv[0], 65534, 65534, 1);
	ck_assert_ptr_nonnull(conns[i]);
	conns[i]->role = ROLE_STATE;
	peers[i] = sv[1];
	inlen[i] = 0;
}

/* Record one answer line as "id" -> {ok, result} or {ok: false, code,
 * message}. */
static void record(const char *line, size_t len)
{
	json_t *a = json_loadb(line, len, 0, NULL), *id, *err;
	char key[32];

	ck_assert_msg(a != NULL, "not JSON: %.*s", (int)len, line);
	id = json_object_get(a, "id");
	ck_assert_msg(json_is_integer(id), "answer without an id: %.*s", (int)len, line);
	snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(id));
	ck_assert_msg(!json_object_get(answers, key), "request %s answered twice", key);
	err = json_object_get(a, "error");
	if (json_is_true(json_object_get(a, "ok")))
		json_object_set_new(
			answers, key,
			json_pack("{s:b, s:O}", "ok", 1, "result", json_object_get(a, "result")));
	else
		json_object_set_new(answers, key,
				    json_pack("{s:b, s:O, s:O}", "ok", 0, "code",
					      json_object_get(err, "code"), "message",
					      json_object_get(err, "message")));
	json_decref(a);
}

/* Read what every client was sent and record its answers. */
static void collect(void)
{
	for (int i = 0; i < N_CONNS; i++) {
		ssize_t n;
		char *nl;

		while ((n = read(peers[i], inbuf[i] + inlen[i], sizeof(inbuf[i]) - inlen[i])) > 0)
			inlen[i] += (size_t)n;
		ck_assert_msg(n == 0 || errno == EAGAIN, "reading client %d: %s", i,
			      strerror(errno));
		while ((nl = memchr(inbuf[i], '\n', inlen[i]))) {
			size_t len = (size_t)(nl - inbuf[i]) + 1;
			record(inbuf[i], len - 1);
			memmove(inbuf[i], inbuf[i] + len, inlen[i] - len);
			inlen[i] -= len;
		}
		ck_assert_msg(inlen[i] < sizeof(inbuf[i]), "an answer too long for the test");
	}
}

/* Client i goes away (conn_close(), as when its peer hangs up: its waiting
 * request is cancelled, its close hooks run); a fresh client takes its
 * place. */
static void client_reopen(int i)
{
	conn_close(conns[i]);
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK); /* frees it */
	collect();
	close(peers[i]);
	client_open(i);
}

/* Close hooks of every client (lock holders register one). */
static int n_hooks(void)
{
	int n = 0;

	for (int i = 0; i < N_CONNS; i++)
		for (struct conn_hook *h = conns[i]->hooks; h; h = h->next)
			n++;
	return n;
}

/* --- helpers ----------------------------------------------------------------- */

/* Send cmd with params (a JSON object as text) on client ci as one request
 * line; returns the id. */
static long long send_on(int ci, const char *cmd, const char *params)
{
	const char *rest = params + strspn(params, " ") + 1; /* after the '{' */
	char line[8192];
	int n;

	rest += strspn(rest, " ");
	ck_assert_ptr_null(conns[ci]->kept);
	n = snprintf(line, sizeof(line), "{\"id\":%lld,\"cmd\":\"%s\"%s%s", ++next_id, cmd,
		     *rest == '}' ? "" : ",", rest);
	ck_assert(n > 0 && (size_t)n < sizeof(line));
	command_dispatch(conns[ci], line, (size_t)n);
	conn_flush(conns[ci]);
	collect();
	return next_id;
}

/* The answer of request id, or NULL while it waits. */
static json_t *answer_of(long long id)
{
	char key[32];

	collect();
	snprintf(key, sizeof(key), "%lld", id);
	return json_object_get(answers, key);
}

/* Run the event loop until id is answered (or 5 s). */
static json_t *await(long long id)
{
	for (int i = 0; i < 500 && !answer_of(id); i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(daemon_g.base, &tv);
		event_base_dispatch(daemon_g.base);
	}
	ck_assert_msg(answer_of(id) != NULL, "request %lld never answered", id);
	return answer_of(id);
}

/* An answer as text: the result as compact JSON, or "!code". */
static const char *res(json_t *a)
{
	static char buf[4096];
	char *s;

	ck_assert_ptr_nonnull(a);
	if (json_is_false(json_object_get(a, "ok"))) {
		snprintf(buf, sizeof(buf), "!%s", json_string_value(json_object_get(a, "code")));
		return buf;
	}
	s = json_dumps(json_object_get(a, "result"), JSON_ENCODE_ANY | JSON_COMPACT);
	snprintf(buf, sizeof(buf), "%s", s);
	free(s);
	return buf;
}

/* Call and return the result as compact JSON text (static buffer). */
static const char *ok_on(int ci, const char *cmd, const char *params)
{
	static char buf[4096];
	json_t *a = answer_of(send_on(ci, cmd, params));
	char *s;

	ck_assert_msg(a != NULL, "%s %s did not answer", cmd, params);
	ck_assert_msg(json_is_true(json_object_get(a, "ok")), "%s %s failed: %s", cmd, params,
		      json_string_value(json_object_get(a, "code")));
	s = json_dumps(json_object_get(a, "result"), JSON_ENCODE_ANY | JSON_COMPACT);
	snprintf(buf, sizeof(buf), "%s", s);
	free(s);
	return buf;
}

/* Call and return the error code. */
static const char *err_on(int ci, const char *cmd, const char *params)
{
	json_t *a = answer_of(send_on(ci, cmd, params));

	ck_assert_msg(a != NULL, "%s %s did not answer", cmd, params);
	ck_assert_msg(json_is_false(json_object_get(a, "ok")), "%s %s succeeded", cmd, params);
	return json_string_value(json_object_get(a, "code"));
}

/* Call and return "code: message" (static buffer). */
static const char *err_msg(const char *cmd, const char *params)
{
	static char buf[4][600];
	static int n;
	json_t *a = answer_of(send_on(0, cmd, params));

	ck_assert_msg(json_is_false(json_object_get(a, "ok")), "%s %s succeeded", cmd, params);
	n = (n + 1) % 4;
	snprintf(buf[n], sizeof(buf[n]), "%s: %s", json_string_value(json_object_get(a, "code")),
		 json_string_value(json_object_get(a, "message")));
	return buf[n];
}

#define OK(cmd, params) ok_on(0, cmd, params)
#define ERR(cmd, params) err_on(0, cmd, params)
#define ck_ok(cmd, params, want) ck_assert_str_eq(OK(cmd, params), want)
#define ck_err(cmd, params, want) ck_assert_str_eq(ERR(cmd, params), want)

static void setup(void)
{
	static const struct cmd_module *const mods[] = { &state_module };
	static bool table_built;

	log_init(LOG_LVL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	conf_defaults(&test_conf);
	test_conf.max_objects = 100;
	test_conf.max_queue_items = 10;
	test_conf.max_waiters = 3;
	daemon_g.conf = &test_conf;
	daemon_g.base = event_base_new();
	if (!table_built) /* the command table, as mpsupd builds it */
		command_init(mods, 1);
	table_built = true;
	answers = json_object();
	for (int i = 0; i < N_CONNS; i++)
		client_open(i);
	n_published = 0;
	listening = false;
}

static void teardown(void)
{
	for (int i = 0; i < N_CONNS; i++)
		conn_close(conns[i]);
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK); /* frees them */
	for (int i = 0; i < N_CONNS; i++)
		close(peers[i]);
	obj_restoring = false;
	obj_delete_all();
	ck_assert_int_eq(obj_count(), 0);
	json_decref(answers);
	event_base_free(daemon_g.base);
}

/* --- helpers of obj.c ---------------------------------------------------------- */

START_TEST(test_index_slice)
{
	size_t i, a, b;
	json_t *m1 = json_integer(-1), *m9 = json_integer(-9), *p2 = json_integer(2),
	       *p9 = json_integer(9);

	ck_assert(obj_index(0, 3, &i) && i == 0);
	ck_assert(obj_index(-1, 3, &i) && i == 2);
	ck_assert(obj_index(-3, 3, &i) && i == 0);
	ck_assert(!obj_index(-4, 3, &i));
	ck_assert(!obj_index(3, 3, &i));
	ck_assert(!obj_index(0, 0, &i));
	obj_slice(NULL, NULL, 5, &a, &b);
	ck_assert(a == 0 && b == 5);
	obj_slice(m1, NULL, 5, &a, &b);
	ck_assert(a == 4 && b == 5);
	obj_slice(m9, p2, 5, &a, &b);
	ck_assert(a == 0 && b == 2);
	obj_slice(p9, m1, 5, &a, &b);
	ck_assert(a == 5 && b == 5);
	obj_slice(p2, m9, 5, &a, &b);
	ck_assert(a == 2 && b == 2);
	json_decref(m1);
	json_decref(m9);
	json_decref(p2);
	json_decref(p9);
}
END_TEST

START_TEST(test_num_helpers)
{
	json_t *a = json_integer(INT64_MAX), *one = json_integer(1), *h = json_real(0.5), *r = NULL;

	ck_assert(!obj_num_add(a, one, &r));
	ck_assert(obj_num_add(one, one, &r) && json_integer_value(r) == 2);
	json_decref(r);
	ck_assert(obj_num_add(one, h, &r) && json_real_value(r) == 1.5);
	json_decref(r);
	r = json_real(1.0);
	ck_assert(obj_json_equal(one, r));
	ck_assert(!obj_json_equal(one, h));
	json_decref(r);
	r = json_string("1");
	ck_assert(!obj_json_equal(one, r));
	json_decref(r);
	json_decref(a);
	json_decref(one);
	json_decref(h);
}
END_TEST

START_TEST(test_namespace)
{
	char name[32];

	test_conf.max_objects = 1000;
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "{\"name\":\"o%d\"}", i);
		OK("value.add", name);
	}
	ck_assert_int_eq(obj_count(), 500);
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		ck_assert_ptr_nonnull(obj_find(name));
		ck_assert_str_eq(obj_find(name)->name, name);
	}
	ck_assert_ptr_null(obj_find("o500"));
	obj_delete(obj_find("o7"));
	ck_assert_ptr_null(obj_find("o7"));
	ck_assert_int_eq(obj_count(), 499);
	ck_assert_ptr_eq(obj_type_find("queue"), &queue_type);
	ck_assert_ptr_null(obj_type_find("nope"));
}
END_TEST

START_TEST(test_params)
{
	ck_err("dict.get", "{\"name\":\"d\"}", "bad_request");
	ck_err("dict.get", "{\"name\":\"d\",\"key\":1}", "bad_request");
	ck_err("dict.get", "{\"name\":\"d\",\"key\":\"a\",\"x\":1}", "bad_request");
	ck_err("dict.get", "{\"key\":\"a\"}", "bad_request");
	ck_err("dict.get", "{\"name\":\"a b\",\"key\":\"a\"}", "bad_request");
	ck_err("list.pop", "{\"name\":\"l\",\"index\":\"1\"}", "bad_request");
	/* Bad requests create nothing. */
	ck_assert_int_eq(obj_count(), 0);
	/* null for a typed optional parameter is "absent". */
	OK("list.append", "{\"name\":\"l\",\"value\":1}");
	ck_ok("list.pop", "{\"name\":\"l\",\"index\":null}", "1");
	ck_err("list.get", "{\"name\":\"d\",\"index\":null}", "bad_request");
}
END_TEST

/* A line that the in-place reader leaves to the tree path (a key with an
 * escape, more members than it reads in place) gets the same answers and
 * the same errors. */
START_TEST(test_params_tree_path)
{
	static const char many[] = "\"a1\":1,\"a2\":1,\"a3\":1,\"a4\":1,\"a5\":1,\"a6\":1,"
				   "\"a7\":1,\"a8\":1}";
	char line[256];

	ck_ok("dict.set", "{\"name\":\"d\",\"k\\u0065y\":\"a\",\"value\":[1,\"x\\n\"]}", "null");
	ck_ok("dict.get", "{\"name\":\"d\",\"key\":\"a\"}", "[1,\"x\\n\"]");
	ck_ok("dict.get", "{\"n\\u0061me\":\"d\",\"key\":\"a\"}", "[1,\"x\\n\"]");
	ck_ok("value.add", "{\"name\":\"v\",\"\\u0062y\":2}", "2");
	ck_ok("value.add", "{\"name\":\"v\",\"by\":2}", "4");
	ck_assert_str_eq(err_msg("dict.get", "{\"name\":\"d\",\"key\":\"a\",\"x\":1}"),
			 "bad_request: dict.get: unknown parameter 'x'");
	ck_assert_str_eq(err_msg("dict.get", "{\"name\":\"d\",\"key\":\"a\",\"\\u0078\":1}"),
			 "bad_request: dict.get: unknown parameter 'x'");
	snprintf(line, sizeof(line), "{\"name\":\"d\",\"key\":\"a\",%s", many);
	ck_assert_str_eq(err_msg("dict.get", line),
			 "bad_request: dict.get: unknown parameter 'a1'");
	ck_assert_str_eq(err_msg("dict.get", "{\"name\":\"d\",\"key\":1}"),
			 "bad_request: dict.get: 'key' must be a string, not an integer");
	ck_assert_str_eq(err_msg("dict.get", "{\"name\":\"d\",\"k\\u0065y\":1}"),
			 "bad_request: dict.get: 'key' must be a string, not an integer");
	ck_assert_str_eq(err_msg("dict.get", "{\"name\":\"d\"}"),
			 "bad_request: dict.get: missing parameter 'key'");
	ck_assert_str_eq(err_msg("dict.get", "{\"n\\u0061me\":\"d\"}"),
			 "bad_request: dict.get: missing parameter 'key'");
	ck_assert_str_eq(
		err_msg("dict.get", "{\"name\":\"a b\",\"key\":\"a\"}"),
		"bad_request: dict.get: invalid object name (expected [A-Za-z0-9_.-]{1,64})");
	ck_assert_str_eq(
		err_msg("dict.get", "{\"n\\u0061me\":\"a b\",\"key\":\"a\"}"),
		"bad_request: dict.get: invalid object name (expected [A-Za-z0-9_.-]{1,64})");
}
END_TEST

START_TEST(test_create_options)
{
	enum mpsup_err code;
	char err[256];
	json_t *opts = json_pack("{s:s, s:i}", "typecode", "i", "init", 5);
	struct obj *o = obj_create("v", &value_type, opts, &code, err, sizeof(err));

	ck_assert_ptr_nonnull(o);
	ck_assert(value_type.options_equal(o, opts));
	json_object_set_new(opts, "init", json_integer(6)); /* contents are not compared */
	ck_assert(value_type.options_equal(o, opts));
	json_object_set_new(opts, "typecode", json_string("d"));
	ck_assert(!value_type.options_equal(o, opts));
	json_object_set_new(opts, "typecode", json_string("x"));
	ck_assert_ptr_null(obj_create("w", &value_type, opts, &code, err, sizeof(err)));
	ck_assert_int_eq(code, MPSUP_E_BAD_REQUEST);
	json_decref(opts);

	opts = json_pack("{s:i}", "size", 1 << 30);
	ck_assert_ptr_null(obj_create("a", &array_type, opts, &code, err, sizeof(err)));
	ck_assert_int_eq(code, MPSUP_E_LIMIT);
	json_decref(opts);

	test_conf.max_objects = 1;
	ck_assert_ptr_null(obj_create("x", &dict_type, NULL, &code, err, sizeof(err)));
	ck_assert_int_eq(code, MPSUP_E_LIMIT);
	ck_err("dict.clear", "{\"name\":\"y\"}", "limit");
}
END_TEST

/* A peer with only the read role finds missing objects missing: TYPE.OP
 * creates nothing for it. */
START_TEST(test_read_role_creates_nothing)
{
	conns[1]->role = ROLE_READ;
	ck_assert_str_eq(err_on(1, "dict.get", "{\"name\":\"d\",\"key\":\"k\"}"), "not_found");
	ck_assert_str_eq(err_on(1, "value.get", "{\"name\":\"v\"}"), "not_found");
	ck_assert_str_eq(err_on(1, "event.is_set", "{\"name\":\"e\"}"), "not_found");
	ck_assert_str_eq(err_on(1, "lock.locked", "{\"name\":\"l\"}"), "not_found");
	ck_assert_int_eq(obj_count(), 0);
	ck_ok("obj.list", "{}", "[]");
	/* Bad parameters are still bad_request; existing objects read as usual. */
	ck_assert_str_eq(err_on(1, "dict.get", "{\"name\":\"d\"}"), "bad_request");
	OK("value.set", "{\"name\":\"v\",\"value\":5}");
	ck_assert_str_eq(ok_on(1, "value.get", "{\"name\":\"v\"}"), "5");
	ck_assert_str_eq(err_on(1, "dict.get", "{\"name\":\"v\",\"key\":\"k\"}"), "wrong_type");
	/* A wait of the state role creates; a read creates for no role. */
	ck_assert_str_eq(err_on(0, "event.is_set", "{\"name\":\"e\"}"), "not_found");
	ck_ok("event.wait", "{\"name\":\"e\",\"timeout\":0}", "{\"set\":false}");
	ck_assert_int_eq(obj_count(), 2);
}
END_TEST

/* An array costs 8 bytes per element: `size` is capped at
 * max_request_bytes / 8, except when persisted state is replayed. */
START_TEST(test_array_size_limit)
{
	char err[256];
	json_t *p;

	test_conf.max_request_bytes = 1024;
	OK("obj.create", "{\"name\":\"a\",\"type\":\"array\",\"size\":128}");
	ck_ok("array.len", "{\"name\":\"a\"}", "128");
	ck_err("obj.create", "{\"name\":\"b\",\"type\":\"array\",\"size\":129}", "limit");
	ck_err("obj.create", "{\"name\":\"b\",\"type\":\"array\",\"typecode\":\"d\",\"size\":1024}",
	       "limit");
	ck_assert_ptr_null(obj_find("b"));

	/* Logged when the limit was higher: the replay still applies. */
	p = json_pack("{s:s, s:s, s:i}", "name", "big", "type", "array", "size", 100000);
	ck_assert_int_eq(obj_replay("obj.create", p, err, sizeof(err)), -1);
	obj_restoring = true;
	ck_assert_msg(obj_replay("obj.create", p, err, sizeof(err)) == 0, "replay: %s", err);
	obj_restoring = false;
	json_decref(p);
	ck_ok("array.len", "{\"name\":\"big\"}", "100000");
}
END_TEST

/* max_object_items caps every op that adds dict keys or list items. */
START_TEST(test_max_object_items)
{
	char err[256];
	json_t *p;

	test_conf.max_object_items = 3;
	OK("dict.update", "{\"name\":\"d\",\"items\":{\"a\":1,\"b\":2}}");
	ck_err("dict.update", "{\"name\":\"d\",\"items\":{\"a\":0,\"c\":3,\"x\":4}}", "limit");
	ck_ok("dict.len", "{\"name\":\"d\"}", "2"); /* all or nothing */
	OK("dict.update", "{\"name\":\"d\",\"items\":{\"a\":0,\"c\":3}}");
	/* Full: existing keys change, new ones are refused. */
	OK("dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":9}");
	ck_ok("dict.incr", "{\"name\":\"d\",\"key\":\"a\"}", "10");
	ck_ok("dict.setdefault", "{\"name\":\"d\",\"key\":\"b\",\"value\":0}", "2");
	ck_ok("dict.cas", "{\"name\":\"d\",\"key\":\"c\",\"expect\":3,\"value\":4}",
	      "{\"swapped\":true}");
	ck_ok("dict.cas", "{\"name\":\"d\",\"key\":\"x\",\"expect\":1,\"value\":4}",
	      "{\"swapped\":false}");
	ck_err("dict.set", "{\"name\":\"d\",\"key\":\"x\",\"value\":1}", "limit");
	ck_err("dict.incr", "{\"name\":\"d\",\"key\":\"x\"}", "limit");
	ck_err("dict.setdefault", "{\"name\":\"d\",\"key\":\"x\"}", "limit");
	ck_err("dict.cas", "{\"name\":\"d\",\"key\":\"x\",\"expect\":null,\"value\":1}", "limit");
	ck_ok("dict.len", "{\"name\":\"d\"}", "3");
	OK("dict.del", "{\"name\":\"d\",\"key\":\"a\"}");
	OK("dict.set", "{\"name\":\"d\",\"key\":\"x\",\"value\":1}");

	OK("list.extend", "{\"name\":\"l\",\"values\":[1,2]}");
	ck_err("list.extend", "{\"name\":\"l\",\"values\":[3,4]}", "limit");
	OK("list.insert", "{\"name\":\"l\",\"index\":0,\"value\":0}");
	ck_err("list.append", "{\"name\":\"l\",\"value\":3}", "limit");
	ck_err("list.insert", "{\"name\":\"l\",\"index\":0,\"value\":3}", "limit");
	ck_err("list.extend", "{\"name\":\"l\",\"values\":[3]}", "limit");
	OK("list.extend", "{\"name\":\"l\",\"values\":[]}");
	OK("list.set", "{\"name\":\"l\",\"index\":0,\"value\":7}");
	ck_ok("obj.get", "{\"name\":\"l\"}", "[7,1,2]");

	ck_err("obj.create", "{\"name\":\"l2\",\"type\":\"list\",\"items\":[1,2,3,4]}", "limit");
	ck_err("obj.create",
	       "{\"name\":\"d2\",\"type\":\"dict\",\"items\":"
	       "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}}",
	       "limit");
	OK("obj.create", "{\"name\":\"l2\",\"type\":\"list\",\"items\":[1,2,3]}");

	/* Loading persisted state: what was accepted before is applied. */
	obj_restoring = true;
	p = json_pack("{s:s, s:i}", "name", "l", "value", 8);
	ck_assert_msg(obj_replay("list.append", p, err, sizeof(err)) == 0, "replay: %s", err);
	json_decref(p);
	p = json_pack("{s:s, s:s, s:{s:i, s:i, s:i, s:i}}", "name", "d3", "type", "dict", "items",
		      "a", 1, "b", 2, "c", 3, "d", 4);
	ck_assert_msg(obj_replay("obj.create", p, err, sizeof(err)) == 0, "replay: %s", err);
	json_decref(p);
	obj_restoring = false;
	ck_ok("list.len", "{\"name\":\"l\"}", "4");
	ck_ok("dict.len", "{\"name\":\"d3\"}", "4");
	ck_err("list.append", "{\"name\":\"l\",\"value\":3}", "limit");
}
END_TEST

/* dump() gives options from which create() rebuilds an equal object. */
START_TEST(test_dump_roundtrip)
{
	const struct obj_type *types[] = { &dict_type, &list_type, &value_type, &array_type,
					   &queue_type };
	enum mpsup_err code;
	char err[256];

	OK("dict.update", "{\"name\":\"dict\",\"items\":{\"a\":1,\"b\":[true]}}");
	OK("list.extend", "{\"name\":\"list\",\"values\":[1,\"x\",null]}");
	OK("obj.create", "{\"name\":\"value\",\"type\":\"value\",\"typecode\":\"i\",\"init\":-4}");
	OK("obj.create",
	   "{\"name\":\"array\",\"type\":\"array\",\"typecode\":\"d\",\"init\":[1.5,2]}");
	OK("obj.create", "{\"name\":\"queue\",\"type\":\"queue\",\"maxsize\":5}");
	OK("queue.put", "{\"name\":\"queue\",\"item\":{\"k\":1}}");
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct obj *o = obj_find(types[i]->name), *copy;
		json_t *dump = types[i]->dump(o), *a, *b;
		char name[32];

		ck_assert_ptr_nonnull(dump);
		snprintf(name, sizeof(name), "%s-copy", types[i]->name);
		copy = obj_create(name, types[i], dump, &code, err, sizeof(err));
		ck_assert_msg(copy != NULL, "%s: %s", types[i]->name, err);
		ck_assert(types[i]->options_equal(copy, dump));
		a = types[i]->get(o);
		b = types[i]->get(copy);
		ck_assert_msg(json_equal(a, b), "%s differs after a round trip", types[i]->name);
		json_decref(a);
		json_decref(b);
		json_decref(dump);
	}
	ck_assert_ptr_null(event_type.dump);
}
END_TEST

/* --- types ------------------------------------------------------------------------ */

START_TEST(test_dict)
{
	ck_ok("dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":1}", "null");
	ck_ok("dict.get", "{\"name\":\"d\",\"key\":\"a\"}", "1");
	ck_err("dict.get", "{\"name\":\"d\",\"key\":\"b\"}", "not_found");
	ck_ok("dict.get", "{\"name\":\"d\",\"key\":\"b\",\"default\":null}", "null");
	ck_ok("dict.incr", "{\"name\":\"d\",\"key\":\"a\"}", "2");
	ck_ok("dict.incr", "{\"name\":\"d\",\"key\":\"n\",\"by\":-3}", "-3");
	ck_ok("dict.incr", "{\"name\":\"d\",\"key\":\"n\",\"by\":0.5}", "-2.5");
	ck_ok("dict.incr", "{\"name\":\"d\",\"key\":\"f\",\"by\":1.5}", "1.5");
	OK("dict.set", "{\"name\":\"d\",\"key\":\"big\",\"value\":9223372036854775807}");
	ck_err("dict.incr", "{\"name\":\"d\",\"key\":\"big\"}", "out_of_range");
	OK("dict.set", "{\"name\":\"d\",\"key\":\"s\",\"value\":\"x\"}");
	ck_err("dict.incr", "{\"name\":\"d\",\"key\":\"s\"}", "conflict");
	ck_ok("dict.cas", "{\"name\":\"d\",\"key\":\"s\",\"expect\":\"x\",\"value\":1}",
	      "{\"swapped\":true}");
	ck_ok("dict.cas", "{\"name\":\"d\",\"key\":\"s\",\"expect\":\"x\",\"value\":2}",
	      "{\"swapped\":false}");
	ck_ok("dict.cas", "{\"name\":\"d\",\"key\":\"new\",\"expect\":null,\"value\":2}",
	      "{\"swapped\":true}");
	ck_ok("dict.keys", "{\"name\":\"d\"}", "[\"a\",\"n\",\"f\",\"big\",\"s\",\"new\"]");
	ck_ok("dict.pop", "{\"name\":\"d\",\"key\":\"big\"}", "9223372036854775807");
	ck_ok("dict.pop", "{\"name\":\"d\",\"key\":\"big\",\"default\":0}", "0");
	ck_err("dict.del", "{\"name\":\"d\",\"key\":\"big\"}", "not_found");
	ck_ok("dict.setdefault", "{\"name\":\"d\",\"key\":\"a\",\"value\":7}", "2");
	ck_ok("dict.has", "{\"name\":\"d\",\"key\":\"a\"}", "true");
	ck_err("dict.items", "{\"name\":\"dd\"}", "not_found");
	OK("dict.update", "{\"name\":\"dd\",\"items\":{\"x\":[1]}}");
	ck_ok("dict.items", "{\"name\":\"dd\"}", "[[\"x\",[1]]]");
	ck_ok("dict.values", "{\"name\":\"dd\"}", "[[1]]");
	ck_ok("dict.len", "{\"name\":\"d\"}", "5");
	OK("dict.clear", "{\"name\":\"d\"}");
	ck_ok("obj.get", "{\"name\":\"d\"}", "{}");
	ck_err("list.len", "{\"name\":\"d\"}", "wrong_type");
}
END_TEST

START_TEST(test_list)
{
	OK("list.extend", "{\"name\":\"l\",\"values\":[1,2,3]}");
	OK("list.insert", "{\"name\":\"l\",\"index\":-1,\"value\":9}");
	ck_ok("obj.get", "{\"name\":\"l\"}", "[1,2,9,3]");
	ck_ok("list.get", "{\"name\":\"l\",\"index\":-4}", "1");
	ck_err("list.get", "{\"name\":\"l\",\"index\":4}", "out_of_range");
	ck_ok("list.pop", "{\"name\":\"l\"}", "3");
	ck_ok("list.pop", "{\"name\":\"l\",\"index\":0}", "1");
	ck_ok("list.index", "{\"name\":\"l\",\"value\":9}", "1");
	ck_ok("list.count", "{\"name\":\"l\",\"value\":9.0}", "1");
	OK("list.remove", "{\"name\":\"l\",\"value\":2}");
	ck_err("list.remove", "{\"name\":\"l\",\"value\":2}", "not_found");
	ck_ok("list.slice", "{\"name\":\"l\",\"start\":-5}", "[9]");
	OK("list.clear", "{\"name\":\"l\"}");
	ck_err("list.pop", "{\"name\":\"l\"}", "out_of_range");
}
END_TEST

START_TEST(test_value)
{
	OK("obj.create", "{\"name\":\"v\",\"type\":\"value\",\"typecode\":\"i\",\"init\":1}");
	ck_ok("value.add", "{\"name\":\"v\",\"by\":9223372036854775806}", "9223372036854775807");
	ck_err("value.add", "{\"name\":\"v\"}", "out_of_range");
	ck_ok("value.get", "{\"name\":\"v\"}", "9223372036854775807");
	ck_err("value.add", "{\"name\":\"v\",\"by\":0.5}", "bad_request");
	ck_err("value.set", "{\"name\":\"v\",\"value\":[]}", "bad_request");
	ck_ok("value.cas", "{\"name\":\"v\",\"expect\":9223372036854775807,\"value\":0}",
	      "{\"swapped\":true}");
	ck_ok("value.add", "{\"name\":\"v\",\"by\":-9223372036854775807}", "-9223372036854775807");
	ck_ok("value.add", "{\"name\":\"v\",\"by\":-1}", "-9223372036854775808");
	ck_err("value.add", "{\"name\":\"v\",\"by\":-1}", "out_of_range");

	ck_ok("value.add", "{\"name\":\"any\"}", "1");
	OK("value.set", "{\"name\":\"any\",\"value\":{\"a\":1}}");
	ck_err("value.add", "{\"name\":\"any\"}", "conflict");
	OK("obj.create", "{\"name\":\"d\",\"type\":\"value\",\"typecode\":\"d\"}");
	ck_ok("value.add", "{\"name\":\"d\",\"by\":0.25}", "0.25");
	ck_ok("value.add", "{\"name\":\"d\"}", "1.25");
}
END_TEST

START_TEST(test_array)
{
	OK("obj.create", "{\"name\":\"a\",\"type\":\"array\",\"size\":3}");
	ck_ok("array.add", "{\"name\":\"a\",\"index\":-1,\"by\":5}", "5");
	ck_ok("array.slice", "{\"name\":\"a\"}", "[0,0,5]");
	ck_err("array.get", "{\"name\":\"a\",\"index\":3}", "out_of_range");
	ck_err("array.set", "{\"name\":\"a\",\"index\":0,\"value\":0.5}", "bad_request");
	ck_ok("array.len", "{\"name\":\"a\"}", "3");
	ck_ok("obj.create", "{\"name\":\"a\",\"type\":\"array\",\"size\":3}",
	      "{\"created\":false}");
	ck_ok("obj.create", "{\"name\":\"a\",\"type\":\"array\",\"init\":[1,2,3]}",
	      "{\"created\":false}");
	ck_err("obj.create", "{\"name\":\"a\",\"type\":\"array\",\"size\":4}", "exists");
	ck_err("obj.create", "{\"name\":\"a\",\"type\":\"array\",\"typecode\":\"d\"}", "exists");
}
END_TEST

START_TEST(test_queue_blocking)
{
	long long g1, g2, g3;

	g1 = send_on(1, "queue.get", "{\"name\":\"q\"}");
	g2 = send_on(2, "queue.get", "{\"name\":\"q\",\"timeout\":30}");
	ck_assert_ptr_null(answer_of(g1));
	ck_assert_int_eq(obj_find("q")->n_waiters, 2);
	OK("queue.put", "{\"name\":\"q\",\"item\":\"first\"}");
	OK("queue.put", "{\"name\":\"q\",\"item\":\"second\"}");
	ck_assert_str_eq(json_string_value(json_object_get(answer_of(g1), "result")), "first");
	ck_assert_str_eq(json_string_value(json_object_get(answer_of(g2), "result")), "second");
	ck_ok("queue.size", "{\"name\":\"q\"}", "0");
	/* timeout */
	g3 = send_on(1, "queue.get", "{\"name\":\"q\",\"timeout\":0.05}");
	ck_assert_str_eq(res(await(g3)), "!empty");
	ck_assert_int_eq(obj_find("q")->n_waiters, 0);
	/* a closed connection leaves the queue */
	send_on(1, "queue.get", "{\"name\":\"q\"}");
	client_reopen(1);
	ck_assert_int_eq(obj_find("q")->n_waiters, 0);
	OK("queue.put", "{\"name\":\"q\",\"item\":1}");
	ck_ok("queue.size", "{\"name\":\"q\"}", "1");
	/* join: 2 handed over + 1 queued unfinished */
	ck_err("queue.join", "{\"name\":\"q\",\"timeout\":0}", "timeout");
	g3 = send_on(2, "queue.join", "{\"name\":\"q\"}");
	OK("queue.task_done", "{\"name\":\"q\"}");
	OK("queue.task_done", "{\"name\":\"q\"}");
	ck_assert_ptr_null(answer_of(g3));
	OK("queue.task_done", "{\"name\":\"q\"}");
	ck_assert(json_is_true(json_object_get(answer_of(g3), "ok")));
	ck_err("queue.task_done", "{\"name\":\"q\"}", "conflict");
}
END_TEST

START_TEST(test_queue_full_and_limits)
{
	long long p;

	OK("obj.create", "{\"name\":\"q\",\"type\":\"queue\",\"maxsize\":1}");
	OK("queue.put", "{\"name\":\"q\",\"item\":1}");
	ck_err("queue.put", "{\"name\":\"q\",\"item\":2,\"timeout\":0}", "full");
	p = send_on(1, "queue.put", "{\"name\":\"q\",\"item\":2}");
	ck_assert_ptr_null(answer_of(p));
	ck_ok("queue.get", "{\"name\":\"q\"}", "1");
	ck_assert(json_is_true(json_object_get(answer_of(p), "ok")));
	ck_ok("queue.get", "{\"name\":\"q\"}", "2");
	p = send_on(1, "queue.put", "{\"name\":\"q\",\"item\":3}");
	ck_assert_ptr_nonnull(answer_of(p)); /* not full any more */
	p = send_on(2, "queue.put", "{\"name\":\"q\",\"item\":4,\"timeout\":0.02}");
	ck_assert_str_eq(res(await(p)), "!full");

	/* max_queue_items = 10 over all queues; 1 is in q */
	for (int i = 0; i < 9; i++)
		OK("queue.put", "{\"name\":\"big\",\"item\":0}");
	ck_err("queue.put", "{\"name\":\"big\",\"item\":0}", "limit");
	ck_assert_uint_eq(queue_items_total, 10);
	OK("obj.delete", "{\"name\":\"big\"}");
	ck_assert_uint_eq(queue_items_total, 1);

	/* max_waiters = 3 per object */
	send_on(1, "queue.get", "{\"name\":\"e\"}");
	send_on(2, "queue.get", "{\"name\":\"e\"}");
	send_on(3, "queue.get", "{\"name\":\"e\"}");
	ck_err("queue.get", "{\"name\":\"e\"}", "limit");
}
END_TEST

START_TEST(test_delete_wakes)
{
	long long g = send_on(1, "queue.get", "{\"name\":\"q\"}");
	long long l;

	OK("lock.acquire", "{\"name\":\"L\"}");
	l = send_on(2, "lock.acquire", "{\"name\":\"L\",\"timeout\":10}");
	OK("obj.delete", "{\"name\":\"q\"}");
	OK("obj.delete", "{\"name\":\"L\"}");
	ck_assert_str_eq(res(answer_of(g)), "!not_found");
	ck_assert_str_eq(res(answer_of(l)), "!not_found");
	ck_assert_int_eq(n_hooks(), 0);
	ck_err("obj.delete", "{\"name\":\"q\"}", "not_found");
	ck_err("obj.get", "{\"name\":\"q\"}", "not_found");
}
END_TEST

START_TEST(test_event)
{
	long long w1 = send_on(1, "event.wait", "{\"name\":\"e\"}");
	long long w2 = send_on(2, "event.wait", "{\"name\":\"e\",\"timeout\":0.02}");

	ck_assert_str_eq(res(await(w2)), "{\"set\":false}");
	ck_assert_ptr_null(answer_of(w1));
	OK("event.set", "{\"name\":\"e\"}");
	ck_assert(json_is_true(json_object_get(json_object_get(answer_of(w1), "result"), "set")));
	ck_ok("event.wait", "{\"name\":\"e\",\"timeout\":0}", "{\"set\":true}");
	OK("event.clear", "{\"name\":\"e\"}");
	ck_ok("event.is_set", "{\"name\":\"e\"}", "false");
	ck_ok("event.wait", "{\"name\":\"e\",\"timeout\":0}", "{\"set\":false}");
}
END_TEST

START_TEST(test_lock_ownership)
{
	long long a, b;

	ck_ok("lock.acquire", "{\"name\":\"L\"}", "{\"acquired\":true}");
	ck_assert_str_eq(err_on(1, "lock.release", "{\"name\":\"L\"}"), "conflict");
	ck_assert_str_eq(ok_on(1, "lock.acquire", "{\"name\":\"L\",\"timeout\":0}"),
			 "{\"acquired\":false}");
	a = send_on(1, "lock.acquire", "{\"name\":\"L\"}");
	b = send_on(2, "lock.acquire", "{\"name\":\"L\"}");
	/* the holder goes away: the first waiter gets it, abandoned */
	client_reopen(0);
	ck_assert_str_eq(res(answer_of(a)), "{\"acquired\":true,\"abandoned\":true}");
	ck_assert_ptr_null(answer_of(b));
	ck_assert_str_eq(ok_on(1, "lock.release", "{\"name\":\"L\"}"), "null");
	ck_assert_str_eq(res(answer_of(b)), "{\"acquired\":true}");
	ck_assert_int_eq(n_hooks(), 1);
	ck_assert_str_eq(ok_on(2, "lock.release", "{\"name\":\"L\"}"), "null");
	ck_assert_int_eq(n_hooks(), 0);
	ck_assert_str_eq(ok_on(1, "lock.locked", "{\"name\":\"L\"}"), "false");
}
END_TEST

START_TEST(test_rlock_semaphore)
{
	ck_ok("rlock.acquire", "{\"name\":\"R\"}", "{\"acquired\":true}");
	ck_ok("rlock.acquire", "{\"name\":\"R\"}", "{\"acquired\":true}");
	ck_assert_str_eq(ok_on(1, "rlock.acquire", "{\"name\":\"R\",\"timeout\":0}"),
			 "{\"acquired\":false}");
	OK("rlock.release", "{\"name\":\"R\"}");
	ck_assert_str_eq(ok_on(1, "rlock.acquire", "{\"name\":\"R\",\"timeout\":0}"),
			 "{\"acquired\":false}");
	OK("rlock.release", "{\"name\":\"R\"}");
	ck_err("rlock.release", "{\"name\":\"R\"}", "conflict");
	ck_assert_str_eq(ok_on(1, "rlock.acquire", "{\"name\":\"R\",\"timeout\":0}"),
			 "{\"acquired\":true}");

	OK("obj.create", "{\"name\":\"s\",\"type\":\"semaphore\",\"value\":2}");
	OK("semaphore.acquire", "{\"name\":\"s\"}");
	ck_assert_str_eq(ok_on(1, "semaphore.acquire", "{\"name\":\"s\"}"), "{\"acquired\":true}");
	ck_ok("semaphore.get_value", "{\"name\":\"s\"}", "0");
	ck_assert_str_eq(err_on(2, "semaphore.release", "{\"name\":\"s\"}"), "conflict");
	client_reopen(1);
	ck_ok("semaphore.get_value", "{\"name\":\"s\"}", "1");
	ck_assert_str_eq(ok_on(2, "semaphore.acquire", "{\"name\":\"s\"}"),
			 "{\"acquired\":true,\"abandoned\":true}");
	OK("semaphore.release", "{\"name\":\"s\"}");
	ck_err("semaphore.release", "{\"name\":\"s\"}", "conflict");
}
END_TEST

/* Condition: wait gives up every level, a notify moves the waiter to the
 * lock's queue, the answer comes with the lock; hooks follow the holders. */
START_TEST(test_condition)
{
	long long w, t;

	OK("condition.acquire", "{\"name\":\"C\"}");
	OK("condition.acquire", "{\"name\":\"C\"}");
	ck_assert_str_eq(err_on(1, "condition.wait", "{\"name\":\"C\"}"), "conflict");
	w = send_on(0, "condition.wait", "{\"name\":\"C\"}");
	ck_assert_int_eq(n_hooks(), 0);
	ck_assert_str_eq(ok_on(1, "condition.acquire", "{\"name\":\"C\",\"timeout\":0}"),
			 "{\"acquired\":true}");
	ck_assert_str_eq(ok_on(1, "condition.notify_all", "{\"name\":\"C\"}"), "{\"woken\":1}");
	ck_assert_ptr_null(answer_of(w));
	t = send_on(2, "condition.acquire", "{\"name\":\"C\"}");
	/* the notifier goes away: the lock goes to the first in its queue (the
	 * notified waiter), abandoned */
	client_reopen(1);
	ck_assert_str_eq(res(answer_of(w)), "{\"notified\":true,\"abandoned\":true}");
	ck_assert_ptr_null(answer_of(t));
	OK("condition.release", "{\"name\":\"C\"}");
	ck_assert_ptr_null(answer_of(t)); /* depth 2 came back */
	OK("condition.release", "{\"name\":\"C\"}");
	ck_assert_str_eq(res(answer_of(t)), "{\"acquired\":true}");
	/* a timed-out waiter waits for the lock, then answers not notified */
	w = send_on(2, "condition.wait", "{\"name\":\"C\",\"timeout\":0}");
	ck_assert_str_eq(ok_on(0, "condition.acquire", "{\"name\":\"C\",\"timeout\":0}"),
			 "{\"acquired\":true}");
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK); /* the timeout fires */
	ck_assert_str_eq(err_on(1, "condition.wait", "{\"name\":\"C\"}"), "conflict");
	ck_assert_str_eq(ok_on(0, "condition.notify", "{\"name\":\"C\",\"n\":5}"), "{\"woken\":0}");
	ck_assert_str_eq(err_on(0, "condition.notify", "{\"name\":\"C\",\"n\":-1}"), "bad_request");
	ck_assert_str_eq(err_on(1, "condition.release", "{\"name\":\"C\"}"), "conflict");
	ck_assert_ptr_null(answer_of(w));
	OK("condition.release", "{\"name\":\"C\"}");
	ck_assert_str_eq(res(await(w)), "{\"notified\":false}");
	ck_assert_int_eq(n_hooks(), 1);
	ck_assert_str_eq(ok_on(2, "condition.release", "{\"name\":\"C\"}"), "null");
	ck_assert_int_eq(n_hooks(), 0);
}
END_TEST

START_TEST(test_barrier)
{
	long long w1, w2;

	OK("obj.create", "{\"name\":\"b\",\"type\":\"barrier\",\"parties\":3}");
	w1 = send_on(1, "barrier.wait", "{\"name\":\"b\"}");
	w2 = send_on(2, "barrier.wait", "{\"name\":\"b\"}");
	ck_ok("barrier.wait", "{\"name\":\"b\"}", "{\"index\":2}");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(answer_of(w1), "result"), "index")),
			 0);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(answer_of(w2), "result"), "index")),
			 1);
	w1 = send_on(1, "barrier.wait", "{\"name\":\"b\"}");
	w2 = send_on(2, "barrier.wait", "{\"name\":\"b\",\"timeout\":0.02}");
	ck_assert_str_eq(res(await(w2)), "!broken");
	ck_assert_str_eq(res(answer_of(w1)), "!broken");
	ck_err("barrier.wait", "{\"name\":\"b\"}", "broken");
	OK("barrier.reset", "{\"name\":\"b\"}");
	ck_ok("obj.get", "{\"name\":\"b\"}", "{\"parties\":3,\"n_waiting\":0,\"broken\":false}");
}
END_TEST

/* parties - 1 requests wait for the last one: no more than max_waiters. */
START_TEST(test_barrier_parties_limit)
{
	long long w[3];

	/* max_waiters = 3 */
	ck_err("obj.create", "{\"name\":\"b\",\"type\":\"barrier\",\"parties\":5}", "limit");
	ck_err("obj.create", "{\"name\":\"b\",\"type\":\"barrier\",\"parties\":2147483647}",
	       "limit");
	ck_assert_ptr_null(obj_find("b"));
	OK("obj.create", "{\"name\":\"b\",\"type\":\"barrier\",\"parties\":4}");
	for (int i = 0; i < 3; i++)
		w[i] = send_on(i + 1, "barrier.wait", "{\"name\":\"b\"}");
	ck_ok("barrier.wait", "{\"name\":\"b\"}", "{\"index\":3}");
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(res(answer_of(w[i])), i == 0   ? "{\"index\":0}"
						       : i == 1 ? "{\"index\":1}"
								: "{\"index\":2}");
}
END_TEST

START_TEST(test_events_published)
{
	OK("dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":1}");
	ck_assert_int_eq(n_published, 0); /* nobody listens */
	listening = true;
	OK("dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":1}");
	OK("dict.get", "{\"name\":\"d\",\"key\":\"a\"}");
	ERR("dict.get", "{\"name\":\"d\",\"key\":\"zz\"}");
	ck_assert_int_eq(n_published, 1);
	OK("obj.delete", "{\"name\":\"d\"}");
	ck_assert_int_eq(n_published, 2);
}
END_TEST

static Suite *state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_index_slice);
	tcase_add_test(tc, test_num_helpers);
	tcase_add_test(tc, test_namespace);
	tcase_add_test(tc, test_params);
	tcase_add_test(tc, test_params_tree_path);
	tcase_add_test(tc, test_create_options);
	tcase_add_test(tc, test_dump_roundtrip);
	tcase_add_test(tc, test_read_role_creates_nothing);
	tcase_add_test(tc, test_array_size_limit);
	tcase_add_test(tc, test_max_object_items);
	tcase_add_test(tc, test_dict);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_value);
	tcase_add_test(tc, test_array);
	tcase_add_test(tc, test_queue_blocking);
	tcase_add_test(tc, test_condition);
	tcase_add_test(tc, test_queue_full_and_limits);
	tcase_add_test(tc, test_delete_wakes);
	tcase_add_test(tc, test_event);
	tcase_add_test(tc, test_lock_ownership);
	tcase_add_test(tc, test_rlock_semaphore);
	tcase_add_test(tc, test_barrier);
	tcase_add_test(tc, test_barrier_parties_limit);
	tcase_add_test(tc, test_events_published);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(state_suite());
}
