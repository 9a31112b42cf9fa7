/*
 * Fuzz target: the daemon's request path, end to end in memory. The input
 * is written into one end of a socketpair whose other end is a real
 * struct conn on the daemon's event loop, so bytes go through the framer,
 * the envelope parser, the role check and the command handlers against
 * live shared state, and the answers through the output path.
 *
 * Input: the first byte picks the peer's role (byte % 3: none, read,
 * state; never admin, which could spawn processes or stop the loop); the
 * rest is the byte stream the client sends before half-closing.
 *
 * Checked: no crash or sanitizer report; every line the daemon writes is a
 * JSON object, either an answer ({id, ok: true, result} or {id, ok: false,
 * error: {code, message}} with a known code) or a stream event; without a
 * role (nothing can wait or stream) every complete non-empty line gets
 * exactly one answer; the connection closes by itself after the client's
 * EOF (nothing hangs). Shared state is cleared after each input.
 * Before that, every line (and the whole input) is read by the fast JSON
 * reader of the request path and by jansson: whatever the fast reader
 * accepts, jansson must accept with the same value (mpsup_json_loadb),
 * and mpsup_request_read must give the parts or the error that
 * mpsup_request_parse gives; what mpsup_request_members takes in place it
 * must give as mpsup_request_read does; so must the in-place checker
 * (mpsup_request_members_lazy, every container left as text), and
 * mpsup_json_array_each and mpsup_json_members take only what jansson
 * takes. A pool.add line is also read by the pool
 * definition parser (pool_conf_from_json) without running it.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "command.h"
#include "lifecycle.h"
#include "modules.h"
#include "conn.h"
#include "daemon.h"
#include "fuzz.h"
#include "log.h"
#include "obj.h"

#define PEER_UID 65534 /* an unprivileged uid: peer_role() grants nothing */
#define DEADLINE_SECS 20.0

/* The daemon's output as seen by the client: a partial line. */
struct peer {
	int fd;
	char *buf;
	size_t len, cap;
	size_t lines;
};

static void setup(void)
{
	struct conf *cf = malloc(sizeof(*cf));

	FUZZ_CHECK(cf, "out of memory");
	conf_defaults(cf);
	/* Small bounds keep each input fast while still reachable. */
	cf->max_objects = 256;
	cf->max_queue_items = 4096;
	cf->max_waiters = 16;
	cf->max_output_bytes = 1 << 20;
	cf->max_request_bytes = 16 * 1024; /* reachable: -max_len=20000 */
	log_init(getenv("FUZZ_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &daemon_g.started);
	daemon_g.started_wall = time(NULL);
	daemon_g.conf = cf;
	daemon_g.conf_path = "/nonexistent/mpsupd-fuzz.conf";
	daemon_g.base = event_base_new();
	FUZZ_CHECK(daemon_g.base, "event_base_new failed");
	mpsupd_assemble();
	FUZZ_CHECK(modules_start(cf) == 0, "modules_start failed");
}

/* Check one complete output line: an answer or a stream event. */
static void check_line(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *v = json_loadb(line, len, JSON_DECODE_ANY, &jerr), *ok, *err;

	FUZZ_CHECK(v && json_is_object(v), "daemon wrote a line that is not a JSON object: %.200s",
		   line);
	if (!json_object_get(v, "event")) {
		ok = json_object_get(v, "ok");
		err = json_object_get(v, "error");
		FUZZ_CHECK(json_is_boolean(ok) && json_object_get(v, "id"), "not an answer: %.200s",
			   line);
		if (json_is_true(ok))
			FUZZ_CHECK(json_object_get(v, "result") && !err, "bad success: %.200s",
				   line);
		else
			FUZZ_CHECK(json_is_string(json_object_get(err, "code")) &&
					   mpsup_err_from_name(json_string_value(
						   json_object_get(err, "code"))) > 0 &&
					   json_is_string(json_object_get(err, "message")),
				   "bad error answer: %.200s", line);
	}
	json_decref(v);
}

/* Answers due without a role: one per complete line (a blank one too:
 * "empty request"), and one for the first line over the maximum, after
 * which the connection closes. */
static size_t answers_due(const uint8_t *data, size_t size, size_t max)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i < size; i++)
		if (data[i] == '\n') {
			size_t len = i - start;
			if (len > max)
				return n + 1;
			n++;
			start = i + 1;
		}
	return n + (size - start > max);
}

/* Read what the daemon wrote and check every complete line. */
static void peer_drain(struct peer *p)
{
	for (;;) {
		char *nl;
		ssize_t n;

		if (p->cap - p->len < 65536) {
			char *nb = realloc(p->buf, p->cap + 65536);
			FUZZ_CHECK(nb, "out of memory");
			p->buf = nb;
			p->cap += 65536;
		}
		n = read(p->fd, p->buf + p->len, p->cap - p->len);
		if (n <= 0) {
			FUZZ_CHECK(n == 0 || errno == EAGAIN || errno == EINTR ||
					   errno == ECONNRESET,
				   "read: %s", strerror(errno));
			return;
		}
		p->len += (size_t)n;
		size_t start = 0;
		while ((nl = memchr(p->buf + start, '\n', p->len - start))) {
			*nl = '\0';
			check_line(p->buf + start, (size_t)(nl - (p->buf + start)));
			p->lines++;
			start = (size_t)(nl - p->buf) + 1;
		}
		memmove(p->buf, p->buf + start, p->len - start);
		p->len -= start;
	}
}

/* The fast reader accepts only what jansson accepts, with the same value. */
static void check_reader(const char *text, size_t len)
{
	json_t *a = mpsup_json_loadb(text, len, daemon_g.conf->max_json_depth), *b;
	char *da, *db;

	if (!a)
		return; /* refusing is always allowed: jansson decides then */
	b = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	FUZZ_CHECK(b, "the fast reader accepted what jansson refuses: %.*s", (int)len, text);
	da = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
	db = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
	FUZZ_CHECK(json_equal(a, b) && da && db && strcmp(da, db) == 0,
		   "the fast reader and jansson differ: %.*s", (int)len, text);
	free(da);
	free(db);
	json_decref(a);
	json_decref(b);
}

/* What the members readers take, mpsup_request_read (r1, cmd, id,
 * params) reads the same: cmd, id and the members as params. lazy: the
 * in-place checker (every container member only checked and left as
 * text), else mpsup_request_members. */
static void check_request_members(const char *text, size_t len, int r1, const char *cmd, json_t *id,
				  json_t *params, bool lazy)
{
	const char *reader = lazy ? "the lazy reader" : "members";
	size_t depth = daemon_g.conf->max_json_depth;
	struct mpsup_member m[8];
	json_t *o, *id3 = NULL;
	char cmd3[128];
	size_t n;
	int r = lazy ? mpsup_request_members_lazy(text, len, depth, 0, m, 8, &n, &id3, cmd3,
						  sizeof(cmd3))
		     : mpsup_request_members(text, len, depth, m, 8, &n, &id3, cmd3, sizeof(cmd3));

	if (r < 0)
		return;
	FUZZ_CHECK(r1 == 0, "%s took what request_read refuses: %.*s", reader, (int)len, text);
	FUZZ_CHECK(strcmp(cmd3, cmd) == 0, "%s: cmd %s vs %s", reader, cmd3, cmd);
	FUZZ_CHECK((!id && !id3) || json_equal(id, id3), "%s: ids differ: %.*s", reader, (int)len,
		   text);
	o = json_object();
	FUZZ_CHECK(o, "out of memory");
	for (size_t i = 0; i < n; i++)
		json_object_setn_new_nocheck(o, m[i].key, m[i].key_len, mpsup_member_json(&m[i]));
	FUZZ_CHECK(json_object_size(o) == n && json_equal(o, params), "%s: members differ: %.*s",
		   reader, (int)len, text);
	json_decref(o);
	json_decref(id3);
	mpsup_members_free(m, n);
}

/* Counts the elements mpsup_json_array_each() hands over. */
static int count_elem(void *arg, const char *value, size_t len)
{
	(void)value;
	(void)len;
	++*(size_t *)arg;
	return 0;
}

/* mpsup_json_array_each() and mpsup_json_members() accept only what
 * jansson accepts: an array of as many elements, an object of as many
 * members. */
static void check_checkers(const char *text, size_t len)
{
	struct mpsup_member m[8];
	size_t seen = 0, n;
	ssize_t k =
		mpsup_json_array_each(text, len, daemon_g.conf->max_json_depth, count_elem, &seen);
	json_t *b;

	if (k >= 0) {
		b = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
		FUZZ_CHECK(json_is_array(b) && json_array_size(b) == (size_t)k && seen == (size_t)k,
			   "array_each took what jansson refuses: %.*s", (int)len, text);
		json_decref(b);
	}
	if (mpsup_json_members(text, len, daemon_g.conf->max_json_depth, m, 8, &n) == 0) {
		b = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
		FUZZ_CHECK(json_is_object(b) && json_object_size(b) == n,
			   "json_members took what jansson refuses: %.*s", (int)len, text);
		for (size_t i = 0; i < n; i++) {
			json_t *v = mpsup_member_json(&m[i]);
			FUZZ_CHECK(v && json_equal(v, json_object_getn(b, m[i].key, m[i].key_len)),
				   "json_members differs: %.*s", (int)len, text);
			json_decref(v);
		}
		json_decref(b);
		mpsup_members_free(m, n);
	}
}

static void check_request_read(const char *text, size_t len)
{
	size_t depth = daemon_g.conf->max_json_depth;
	json_t *params = NULL, *id = NULL, *req = NULL, *id2 = NULL;
	struct mpsup_error e1, e2;
	const char *name;
	char cmd[128];
	int r1 = mpsup_request_read(text, len, depth, &params, &id, cmd, sizeof(cmd), &e1);
	int r2 = mpsup_request_parse(text, len, depth, &req, &name, &id2, &e2);

	FUZZ_CHECK(r1 == r2, "request_read %d, request_parse %d: %.*s", r1, r2, (int)len, text);
	check_request_members(text, len, r1, cmd, id, params, false);
	check_request_members(text, len, r1, cmd, id, params, true);
	if (r1 == 0) {
		FUZZ_CHECK(strncmp(cmd, name, sizeof(cmd) - 1) == 0, "cmd %s vs %s", cmd, name);
		id2 = json_incref(json_object_get(req, "id"));
		json_object_del(req, "id");
		json_object_del(req, "cmd");
		FUZZ_CHECK(json_equal(params, req), "params differ: %.*s", (int)len, text);
		/* pool.add needs admin, which the connection never has (it would
		 * spawn): its parser of client JSON is fuzzed here on its own. */
		if (strcmp(cmd, "pool.add") == 0) {
			struct pool_conf *pc = NULL;
			char err[512];

			if (pool_conf_from_json(params, &pc, err, sizeof(err)) == 0)
				pool_conf_free(pc);
		}
	} else {
		FUZZ_CHECK(e1.code == e2.code && strcmp(e1.message, e2.message) == 0,
			   "errors differ: %s / %s", e1.message, e2.message);
	}
	FUZZ_CHECK((!id && !id2) || json_equal(id, id2), "ids differ: %.*s", (int)len, text);
	json_decref(params);
	json_decref(req);
	json_decref(id);
	json_decref(id2);
}

static void check_reader_lines(const uint8_t *data, size_t size)
{
	size_t start = 0;

	check_reader((const char *)data, size);
	for (size_t i = 0; i < size; i++)
		if (data[i] == '\n') {
			check_reader((const char *)data + start, i - start);
			check_checkers((const char *)data + start, i - start);
			check_request_read((const char *)data + start, i - start);
			start = i + 1;
		}
	if (start)
		check_reader((const char *)data + start, size - start);
}

static void on_close(struct conn *c, void *arg)
{
	(void)c;
	*(bool *)arg = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum role roles[] = { ROLE_NONE, ROLE_READ, ROLE_STATE };
	static bool ready;
	struct peer p = { .fd = -1 };
	bool closed = false;
	enum role c_role;
	struct conn *c;
	double deadline;
	size_t off = 1;
	int sv[2];

	if (!ready) {
		setup();
		ready = true;
	}
	if (size < 1)
		return 0;
	check_reader_lines(data + 1, size - 1);
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
		   "socketpair: %s", strerror(errno));
	c = conn_new_for_fd(sv[0], PEER_UID, PEER_UID, getpid());
	FUZZ_CHECK(c, "conn_new_for_fd failed");
	c->role = c_role = roles[data[0] % 3];
	conn_add_close_hook(c, on_close, &closed);
	p.fd = sv[1];

	deadline = now_mono() + DEADLINE_SECS;
	while (off < size && !closed) {
		ssize_t n = write(sv[1], data + off, size - off);
		if (n > 0)
			off += (size_t)n;
		else
			FUZZ_CHECK(errno == EAGAIN || errno == EINTR, "write: %s", strerror(errno));
		peer_drain(&p);
		event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
		FUZZ_CHECK(now_mono() < deadline,
			   "the daemon stopped reading (%zu of %zu bytes sent)", off, size);
	}
	shutdown(sv[1], SHUT_WR);
	while (!closed) {
		peer_drain(&p);
		event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
		FUZZ_CHECK(now_mono() < deadline,
			   "the connection did not close after the peer's EOF");
	}
	peer_drain(&p);
	if (c_role == ROLE_NONE) {
		size_t due = answers_due(data + 1, size - 1, daemon_g.conf->max_request_bytes);
		FUZZ_CHECK(p.lines == due, "%zu answers where %zu are due", p.lines, due);
	}
	/* Let deferred frees run, then forget this input's state. */
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
	obj_delete_all();
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
	FUZZ_CHECK(server_clients() == 0, "%u connections left after close", server_clients());
	close(sv[1]);
	free(p.buf);
	return 0;
}
