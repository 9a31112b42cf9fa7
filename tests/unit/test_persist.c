/*
 * Unit tests of durable shared state (daemon/persist/persist.c): the record format
 * and CRC32C, the loader's verdicts (good, empty, torn tail, corruption),
 * and snapshot + replay equivalence.
 *
 * Requests run through the real request path: a socketpair end stands in
 * for an accepted client (conn_new_for_fd), so the commit barrier and the
 * commit event are the daemon's own.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "command.h"
#include "modules.h"
#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "obj.h"
#include "persist.h"
#include "persist_int.h"
#include "conn.h"
#include "unit.h"

/* --- fixture: a state directory and clients ---------------------------------- */

static char dir[64], path[128], log_path[160];

struct client {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static struct client cl[2];

static void client_open(struct client *c)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	ck_assert_ptr_nonnull(conn_new_for_fd(sv[1], getuid(), getgid(), getpid()));
	c->fd = sv[0];
	c->len = 0;
}

static void setup(void)
{
	static struct conf cf;
	static bool once;

	if (!once) {
		once = true;
		conf_defaults(&cf);
		log_init(getenv("PERSIST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
		signal(SIGPIPE, SIG_IGN);
		daemon_g.conf = &cf;
		daemon_g.base = event_base_new();
		mpsupd_assemble();
	}
	snprintf(dir, sizeof(dir), "/tmp/test_persist.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);
	snprintf(log_path, sizeof(log_path), "%s/state.log", dir);
	client_open(&cl[0]);
	client_open(&cl[1]);
}

static void teardown(void)
{
	char cmd[128];

	persist_close(false);
	obj_delete_all();
	close(cl[0].fd);
	close(cl[1].fd);
	for (int i = 0; i < 20; i++) /* let the daemon side see the EOFs */
		event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
	unsetenv("MPSUP_TEST_FAIL_WRITES");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Send one request line (JSON text of the params, cmd added). */
static void send_req(int ci, const char *cmd, const char *params)
{
	char line[4096];
	int n = snprintf(line, sizeof(line), "{\"cmd\":\"%s\"%s%s\n", cmd,
			 strcmp(params, "{}") ? "," : "", strcmp(params, "{}") ? params + 1 : "}");

	ck_assert(n > 0 && (size_t)n < sizeof(line));
	ck_assert_int_eq(write(cl[ci].fd, line, (size_t)n), n);
}

/* The next answer on client ci (runs the loop; NULL after timeout s). */
static json_t *recv_ans(int ci, double timeout)
{
	struct client *c = &cl[ci];
	double end = now_mono() + timeout;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			json_t *v = json_loadb(c->buf, (size_t)(nl - c->buf), 0, NULL);
			size_t used = (size_t)(nl - c->buf) + 1;
			memmove(c->buf, nl + 1, c->len - used);
			c->len -= used;
			ck_assert_ptr_nonnull(v);
			return v;
		}
		if (now_mono() > end)
			return NULL;
		event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
		if (n > 0)
			c->len += (size_t)n;
		else
			usleep(1000);
	}
}

/* Call and return the answer (ok or not); the caller decrefs. */
static json_t *call(int ci, const char *cmd, const char *params)
{
	json_t *a;

	send_req(ci, cmd, params);
	a = recv_ans(ci, 10);
	ck_assert_msg(a != NULL, "%s: no answer", cmd);
	return a;
}

/* Call and insist on success. */
static void ok(int ci, const char *cmd, const char *params)
{
	json_t *a = call(ci, cmd, params);

	ck_assert_msg(json_is_true(json_object_get(a, "ok")), "%s %s failed: %s", cmd, params,
		      json_dumps(a, JSON_COMPACT));
	json_decref(a);
}

/* The error code of a call that must fail (static buffer). */
static const char *err_code(int ci, const char *cmd, const char *params)
{
	static char code[64];
	json_t *a = call(ci, cmd, params);

	ck_assert_msg(json_is_false(json_object_get(a, "ok")), "%s unexpectedly succeeded", cmd);
	snprintf(code, sizeof(code), "%s",
		 json_string_value(json_object_get(json_object_get(a, "error"), "code")));
	json_decref(a);
	return code;
}

/* Every persisted object as [[name, type, dump]...] sorted by name; dicts
 * keep their key order (it is part of the state). */
static void dump_one(struct obj *o, void *arg)
{
	if (o->type->dump)
		json_array_append_new(
			arg, json_pack("[s, s, o]", o->name, o->type->name, o->type->dump(o)));
}

static int by_name(const void *a, const void *b)
{
	return strcmp(json_string_value(json_array_get(*(json_t *const *)a, 0)),
		      json_string_value(json_array_get(*(json_t *const *)b, 0)));
}

static char *state_text(void)
{
	json_t *all = json_array(), *sorted = json_array();
	json_t **v;
	size_t n;
	char *s;

	obj_foreach(dump_one, all);
	n = json_array_size(all);
	v = calloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(all, i);
	qsort(v, n, sizeof(*v), by_name);
	for (size_t i = 0; i < n; i++)
		json_array_append(sorted, v[i]);
	s = json_dumps(sorted, JSON_COMPACT);
	free(v);
	json_decref(all);
	json_decref(sorted);
	return s;
}

static void open_ok(int sync, bool truncate)
{
	char err[512];
	int r = persist_open(path, sync, 64 << 20, truncate, true, err, sizeof(err));

	ck_assert_msg(r == 0, "persist_open: %s", err);
}

/* Forget the in-memory state and load it again from the files. */
static void reload(void)
{
	persist_close(false);
	obj_delete_all();
	ck_assert_uint_eq(obj_count(), 0);
	open_ok(STATE_SYNC_ALWAYS, false);
}

static off_t file_size(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? st.st_size : -1;
}

/* --- record format ------------------------------------------------------------ */

START_TEST(test_crc32c)
{
	const char *s = "123456789";

	/* The standard check value of CRC-32C (Castagnoli). */
	ck_assert_uint_eq(persist_crc32c(0, s, 9), 0xE3069283u);
	/* Incremental over any split equals one pass. */
	for (size_t k = 0; k <= 9; k++)
		ck_assert_uint_eq(persist_crc32c(persist_crc32c(0, s, k), s + k, 9 - k),
				  0xE3069283u);
	ck_assert_uint_eq(persist_crc32c(0, "", 0), 0);
	ck_assert_uint_eq(persist_crc32c_sw(0, s, 9), 0xE3069283u);
}
END_TEST

/* Bit by bit, straight from the definition. */
static uint32_t crc_ref(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

START_TEST(test_crc32c_against_reference)
{
	unsigned char buf[300];

	srand(42);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rand();
	/* every length and alignment, both implementations */
	for (size_t off = 0; off < 9; off++)
		for (size_t n = 0; n + off <= sizeof(buf); n += 7) {
			uint32_t want = crc_ref(buf + off, n);
			ck_assert_uint_eq(persist_crc32c(0, buf + off, n), want);
			ck_assert_uint_eq(persist_crc32c_sw(0, buf + off, n), want);
		}
}
END_TEST

START_TEST(test_frame_layout)
{
	unsigned char hdr[PERSIST_HDR];
	const char *p = "[1,\"dict.set\",{}]";
	uint32_t len = (uint32_t)strlen(p), v;

	persist_frame(hdr, p, len);
	v = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
	    (uint32_t)hdr[3] << 24;
	ck_assert_uint_eq(v, len);
	v = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
	    (uint32_t)hdr[7] << 24;
	ck_assert_uint_eq(v, persist_crc32c(0, p, len));
	v = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16 |
	    (uint32_t)hdr[11] << 24;
	ck_assert_uint_eq(v, persist_crc32c(0, hdr, 8));
}
END_TEST

/* Three framed records; offsets of each in off[]. */
static size_t three(char *buf, size_t off[3])
{
	const char *pl[3] = { "[1,\"a\",{}]", "[2,\"bb\",{\"x\":1}]", "[3,\"ccc\",{}]" };
	size_t len = 0;

	for (int i = 0; i < 3; i++) {
		uint32_t n = (uint32_t)strlen(pl[i]);
		off[i] = len;
		persist_frame((unsigned char *)buf + len, pl[i], n);
		memcpy(buf + len + PERSIST_HDR, pl[i], n);
		len += PERSIST_HDR + n;
	}
	return len;
}

static int count_fn(const char *p, size_t len, size_t off, void *arg, char *why, size_t wl)
{
	(void)p;
	(void)len;
	(void)off;
	(void)why;
	(void)wl;
	++*(int *)arg;
	return 0;
}

START_TEST(test_scan_good_and_empty)
{
	char buf[256];
	size_t off[3], len = three(buf, off);
	struct persist_scan sc;
	int n = 0;

	persist_scan(buf, len, count_fn, &n, &sc);
	ck_assert_int_eq(sc.end, PERSIST_SCAN_OK);
	ck_assert_int_eq(n, 3);
	ck_assert_uint_eq(sc.records, 3);
	ck_assert_uint_eq(sc.good_end, len);
	n = 0;
	persist_scan(buf, 0, count_fn, &n, &sc);
	ck_assert_int_eq(sc.end, PERSIST_SCAN_OK);
	ck_assert_int_eq(n, 0);
	ck_assert_uint_eq(sc.good_end, 0);
}
END_TEST

START_TEST(test_scan_torn_tail)
{
	char buf[256];
	size_t off[3], len = three(buf, off);
	struct persist_scan sc;

	/* Cut anywhere inside the last record: torn, at its start. */
	for (size_t cut = off[2] + 1; cut < len; cut++) {
		int n = 0;
		persist_scan(buf, cut, count_fn, &n, &sc);
		ck_assert_int_eq(sc.end, PERSIST_SCAN_TORN);
		ck_assert_uint_eq(sc.bad_off, off[2]);
		ck_assert_uint_eq(sc.good_end, off[2]);
		ck_assert_int_eq(n, 2);
	}
	/* Zeros after the last record (space allocated, data lost). */
	memset(buf + len, 0, 40);
	persist_scan(buf, len + 40, NULL, NULL, &sc);
	ck_assert_int_eq(sc.end, PERSIST_SCAN_TORN);
	ck_assert_uint_eq(sc.bad_off, len);
}
END_TEST

START_TEST(test_scan_flipped_byte)
{
	char buf[256];
	size_t off[3], len = three(buf, off);
	struct persist_scan sc;

	/* Any flipped byte in the first two records is corruption, named at
	 * the damaged record, since good records follow. */
	for (size_t i = 0; i < off[2]; i++) {
		size_t rec = i < off[1] ? 0 : 1;
		buf[i] ^= 0x20;
		persist_scan(buf, len, NULL, NULL, &sc);
		ck_assert_msg(sc.end == PERSIST_SCAN_CORRUPT, "byte %zu: end %d", i, sc.end);
		ck_assert_uint_eq(sc.bad_off, off[rec]);
		ck_assert_uint_eq(sc.good_end, off[rec]);
		buf[i] ^= 0x20;
	}
	/* In the last record it cannot be told from a torn write. */
	buf[len - 2] ^= 1;
	persist_scan(buf, len, NULL, NULL, &sc);
	ck_assert_int_eq(sc.end, PERSIST_SCAN_TORN);
	ck_assert_uint_eq(sc.bad_off, off[2]);
}
END_TEST

static int refuse_second(const char *p, size_t len, size_t off, void *arg, char *why, size_t wl)
{
	(void)p;
	(void)len;
	(void)arg;
	if (off == 0)
		return 0;
	snprintf(why, wl, "no thanks");
	return -1;
}

START_TEST(test_scan_refused_record)
{
	char buf[256];
	size_t off[3], len = three(buf, off);
	struct persist_scan sc;

	persist_scan(buf, len, refuse_second, NULL, &sc);
	ck_assert_int_eq(sc.end, PERSIST_SCAN_CORRUPT);
	ck_assert_uint_eq(sc.bad_off, off[1]);
	ck_assert_str_eq(sc.why, "no thanks");
}
END_TEST

/* --- the loader on real files -------------------------------------------------- */

START_TEST(test_load_empty)
{
	int fd = open(log_path, O_CREAT | O_WRONLY, 0600);

	ck_assert_int_ge(fd, 0);
	close(fd);
	open_ok(STATE_SYNC_ALWAYS, false);
	ck_assert_uint_eq(obj_count(), 0);
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"k\",\"value\":1}");
	ck_assert_int_gt(file_size(log_path), 0);
	reload();
	ok(0, "dict.get", "{\"name\":\"d\",\"key\":\"k\"}");
}
END_TEST

START_TEST(test_load_torn_tail)
{
	off_t full, before;

	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "list.append", "{\"name\":\"l\",\"value\":1}");
	ok(0, "list.append", "{\"name\":\"l\",\"value\":2}");
	before = file_size(log_path);
	ok(0, "list.append", "{\"name\":\"l\",\"value\":3}");
	full = file_size(log_path);
	persist_close(false);
	obj_delete_all();
	/* A crash in the middle of the last write. */
	ck_assert_int_eq(truncate(log_path, before + (full - before) / 2), 0);
	open_ok(STATE_SYNC_ALWAYS, false);
	ck_assert_int_eq(file_size(log_path), before); /* truncated at the tear */
	{
		json_t *a = call(0, "list.slice", "{\"name\":\"l\"}");
		char *s = json_dumps(json_object_get(a, "result"), JSON_COMPACT);
		ck_assert_str_eq(s, "[1,2]");
		free(s);
		json_decref(a);
	}
	/* And the log goes on from there. */
	ok(0, "list.append", "{\"name\":\"l\",\"value\":4}");
	reload();
	{
		json_t *a = call(0, "list.slice", "{\"name\":\"l\"}");
		char *s = json_dumps(json_object_get(a, "result"), JSON_COMPACT);
		ck_assert_str_eq(s, "[1,2,4]");
		free(s);
		json_decref(a);
	}
}
END_TEST

START_TEST(test_load_corrupt)
{
	char err[512];
	off_t second;
	int fd, r;

	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "value.add", "{\"name\":\"v\",\"by\":1}"); /* create + add */
	second = file_size(log_path);
	ok(0, "value.add", "{\"name\":\"v\",\"by\":10}");
	ok(0, "value.add", "{\"name\":\"v\",\"by\":100}");
	persist_close(false);
	obj_delete_all();
	/* Flip a byte inside the payload of the record at `second`. */
	fd = open(log_path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	{
		char c;
		ck_assert_int_eq(pread(fd, &c, 1, second + PERSIST_HDR + 3), 1);
		c ^= 0x04;
		ck_assert_int_eq(pwrite(fd, &c, 1, second + PERSIST_HDR + 3), 1);
	}
	close(fd);
	r = persist_open(path, STATE_SYNC_ALWAYS, 64 << 20, false, true, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	{
		char want[64];
		snprintf(want, sizeof(want), "corrupt at offset %lld", (long long)second);
		ck_assert_msg(strstr(err, want) != NULL, "message: %s", err);
	}
	obj_delete_all();
	/* The operator's choice: keep what precedes the damage. */
	open_ok(STATE_SYNC_ALWAYS, true);
	{
		json_t *a = call(0, "value.get", "{\"name\":\"v\"}");
		ck_assert_int_eq(json_integer_value(json_object_get(a, "result")), 1);
		json_decref(a);
	}
	/* ...and it was rewritten clean: a normal start works. */
	reload();
	ok(0, "value.get", "{\"name\":\"v\"}");
}
END_TEST

START_TEST(test_load_gap_and_lock)
{
	char err[512];
	int r;

	open_ok(STATE_SYNC_NO, false);
	/* A second opener of the same files is refused. */
	{
		int fd = open(log_path, O_RDWR);
		ck_assert_int_ne(flock(fd, LOCK_EX | LOCK_NB), 0);
		close(fd);
	}
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":1}");
	ck_assert_int_eq(persist_snapshot(), 0);
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"b\",\"value\":2}");
	persist_close(false);
	obj_delete_all();
	/* Without its snapshot the log starts in the middle: refused. */
	ck_assert_int_eq(unlink(path), 0);
	r = persist_open(path, STATE_SYNC_NO, 64 << 20, false, true, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	ck_assert_msg(strstr(err, "offset 0") && strstr(err, "snapshot"), "message: %s", err);
	obj_delete_all();
}
END_TEST

/* --- snapshot + replay equivalence ------------------------------------------------ */

/* Mutations of every persisted type, including the queue's hand-offs
 * between waiting getters and putters (two clients). */
static void workload(void)
{
	json_t *a;

	ok(0, "obj.create", "{\"name\":\"cfg\",\"type\":\"dict\",\"items\":{\"x\":1,\"y\":[1,2]}}");
	ok(0, "dict.set", "{\"name\":\"cfg\",\"key\":\"z\",\"value\":{\"deep\":[true,null]}}");
	ok(0, "dict.set",
	   "{\"name\":\"cfg\",\"key\":\"\\u00e9\\u2603 \\\"q\\\"\",\"value\":\"v\"}");
	ok(0, "dict.update", "{\"name\":\"cfg\",\"items\":{\"x\":10,\"w\":0.1}}");
	ok(0, "dict.incr", "{\"name\":\"cfg\",\"key\":\"n\",\"by\":5}");
	ok(0, "dict.incr", "{\"name\":\"cfg\",\"key\":\"w\",\"by\":0.2}");
	ok(0, "dict.pop", "{\"name\":\"cfg\",\"key\":\"y\"}");
	ok(0, "dict.setdefault", "{\"name\":\"cfg\",\"key\":\"s\",\"value\":7}");
	ok(0, "dict.cas", "{\"name\":\"cfg\",\"key\":\"s\",\"expect\":7,\"value\":8}");
	ok(0, "dict.del", "{\"name\":\"cfg\",\"key\":\"z\"}");
	ok(0, "dict.pop", "{\"name\":\"created-by-a-pop\",\"key\":\"k\",\"default\":0}");
	ok(0, "list.extend", "{\"name\":\"l\",\"values\":[1,2,3,4,5]}");
	ok(0, "list.insert", "{\"name\":\"l\",\"index\":-2,\"value\":\"i\"}");
	ok(0, "list.set", "{\"name\":\"l\",\"index\":0,\"value\":\"first\"}");
	ok(0, "list.pop", "{\"name\":\"l\"}");
	ok(0, "list.pop", "{\"name\":\"l\",\"index\":1}");
	ok(0, "list.remove", "{\"name\":\"l\",\"value\":3}");
	ok(0, "obj.create", "{\"name\":\"vi\",\"type\":\"value\",\"typecode\":\"i\",\"init\":40}");
	ok(0, "value.add", "{\"name\":\"vi\",\"by\":2}");
	ok(0, "obj.create", "{\"name\":\"vd\",\"type\":\"value\",\"typecode\":\"d\"}");
	ok(0, "value.add", "{\"name\":\"vd\",\"by\":0.1}");
	ok(0, "value.add", "{\"name\":\"vd\",\"by\":0.2}");
	ok(0, "value.set", "{\"name\":\"va\",\"value\":{\"any\":\"thing\"}}");
	ok(0, "value.cas", "{\"name\":\"va\",\"expect\":{\"any\":\"thing\"},\"value\":[1]}");
	ok(0, "obj.create", "{\"name\":\"ar\",\"type\":\"array\",\"typecode\":\"d\",\"size\":4}");
	ok(0, "array.set", "{\"name\":\"ar\",\"index\":1,\"value\":2.5}");
	ok(0, "array.add", "{\"name\":\"ar\",\"index\":-1,\"by\":1e300}");
	ok(0, "obj.create", "{\"name\":\"gone\",\"type\":\"list\"}");
	ok(0, "obj.delete", "{\"name\":\"gone\"}");
	/* not persisted: */
	ok(0, "event.set", "{\"name\":\"ev\"}");
	ok(0, "lock.acquire", "{\"name\":\"lk\"}");

	/* queue: a getter waits (client 1), a put hands its item over */
	ok(0, "obj.create", "{\"name\":\"q\",\"type\":\"queue\",\"maxsize\":2}");
	send_req(1, "queue.get", "{\"name\":\"q\",\"timeout\":10}");
	ck_assert_ptr_null(recv_ans(1, 0.05));
	ok(0, "queue.put", "{\"name\":\"q\",\"item\":\"handed\"}");
	a = recv_ans(1, 5);
	ck_assert_str_eq(json_string_value(json_object_get(a, "result")), "handed");
	json_decref(a);
	/* fill it; a putter waits (client 1); a get admits it */
	ok(0, "queue.put", "{\"name\":\"q\",\"item\":1}");
	ok(0, "queue.put", "{\"name\":\"q\",\"item\":2}");
	send_req(1, "queue.put", "{\"name\":\"q\",\"item\":3}");
	ck_assert_ptr_null(recv_ans(1, 0.05));
	ok(0, "queue.get", "{\"name\":\"q\"}");
	a = recv_ans(1, 5);
	ck_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	ok(0, "queue.task_done", "{\"name\":\"q\"}");
	ok(0, "queue.task_done", "{\"name\":\"q\"}");
	/* refused ops leave no record */
	ck_assert_str_eq(err_code(0, "queue.put", "{\"name\":\"q\",\"item\":9,\"timeout\":0}"),
			 "full");
	ck_assert_str_eq(err_code(0, "list.get", "{\"name\":\"cfg\",\"index\":0}"), "wrong_type");
}

START_TEST(test_replay_equivalence)
{
	char *before, *after;

	open_ok(STATE_SYNC_ALWAYS, false);
	workload();
	before = state_text();

	/* log only */
	reload();
	after = state_text();
	ck_assert_str_eq(after, before);
	free(after);
	ck_assert_ptr_null(obj_find("ev")); /* events, locks: not persisted */
	ck_assert_ptr_null(obj_find("lk"));
	/* the unfinished count came back: 4 puts - 2 task_done */
	ok(0, "queue.task_done", "{\"name\":\"q\"}");
	ok(0, "queue.task_done", "{\"name\":\"q\"}");
	ck_assert_str_eq(err_code(0, "queue.task_done", "{\"name\":\"q\"}"), "conflict");
	free(before);
	before = state_text();

	/* snapshot, then more log */
	ck_assert_int_eq(persist_snapshot(), 0);
	ck_assert_int_eq(file_size(log_path), 0);
	ok(0, "list.append", "{\"name\":\"l\",\"value\":\"after the snapshot\"}");
	ok(0, "queue.get", "{\"name\":\"q\"}");
	free(before);
	before = state_text();
	reload();
	after = state_text();
	ck_assert_str_eq(after, before);
	free(after);

	/* snapshot only (clean close) */
	persist_close(true);
	ck_assert_int_eq(file_size(log_path), 0);
	obj_delete_all();
	open_ok(STATE_SYNC_ALWAYS, false);
	after = state_text();
	ck_assert_str_eq(after, before);
	free(after);
	free(before);
}
END_TEST

START_TEST(test_snapshot_skips_older_records)
{
	char *before, *after;
	char *logcopy;
	size_t n;
	FILE *f;

	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "list.append", "{\"name\":\"l\",\"value\":1}");
	ok(0, "list.append", "{\"name\":\"l\",\"value\":2}");
	/* Keep the log as it was before the snapshot truncated it... */
	f = fopen(log_path, "rb");
	logcopy = malloc(1 << 16);
	n = fread(logcopy, 1, 1 << 16, f);
	fclose(f);
	ck_assert_int_eq(persist_snapshot(), 0);
	ok(0, "list.append", "{\"name\":\"l\",\"value\":3}");
	before = state_text();
	persist_close(false);
	obj_delete_all();
	/* ...and put it back in front: a crash between rename and truncate. */
	{
		char *rest = malloc(1 << 16);
		size_t m;
		f = fopen(log_path, "rb");
		m = fread(rest, 1, 1 << 16, f);
		fclose(f);
		f = fopen(log_path, "wb");
		fwrite(logcopy, 1, n, f);
		fwrite(rest, 1, m, f);
		fclose(f);
		free(rest);
	}
	free(logcopy);
	open_ok(STATE_SYNC_ALWAYS, false);
	after = state_text();
	ck_assert_str_eq(after, before);
	free(after);
	free(before);
}
END_TEST

/* --- write failures ---------------------------------------------------------------- */

/* The fault-injection flag file (MPSUP_TEST_FAIL_WRITES): writes fail while
 * it exists. */
static void fail_flag(char *flag, size_t len)
{
	snprintf(flag, len, "%s/fail", dir);
	setenv("MPSUP_TEST_FAIL_WRITES", flag, 1);
}

static void disk_fails(const char *flag)
{
	int fd = open(flag, O_CREAT | O_WRONLY, 0600);

	ck_assert_int_ge(fd, 0);
	close(fd);
}

/* The error code of an answer (static buffer; "" when it succeeded). */
static const char *code_of(json_t *a)
{
	static char code[64];

	snprintf(code, sizeof(code), "%s",
		 json_is_true(json_object_get(a, "ok"))
			 ? ""
			 : json_string_value(json_object_get(json_object_get(a, "error"), "code")));
	return code;
}

START_TEST(test_write_failure_holds_and_recovers)
{
	char flag[160];
	json_t *a;

	daemon_g.conf->persist_outage_timeout = 30; /* longer than the test */
	fail_flag(flag, sizeof(flag));
	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":1}");
	ok(0, "value.add", "{\"name\":\"o\",\"by\":5}");
	disk_fails(flag);
	/* The write fails: the answer is held, never an acknowledgement. */
	send_req(0, "dict.set", "{\"name\":\"d\",\"key\":\"b\",\"value\":2}");
	ck_assert_ptr_null(recv_ans(0, 0.2));
	/* Others: reads of objects the failed record did not change work,
	 * mutations of persisted objects are refused at once (even of d),
	 * other objects work. */
	a = call(1, "value.get", "{\"name\":\"o\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "result")), 5);
	json_decref(a);
	ck_assert_str_eq(err_code(1, "dict.set", "{\"name\":\"d\",\"key\":\"c\",\"value\":3}"),
			 "unavailable");
	ck_assert_str_eq(err_code(1, "list.append", "{\"name\":\"new\",\"value\":3}"),
			 "unavailable");
	ok(1, "event.set", "{\"name\":\"e\"}");
	ok(1, "ping", "{}");
	ck_assert_ptr_null(obj_find("new"));
	/* The disk comes back: the held answer goes out. */
	unlink(flag);
	a = recv_ans(0, 5);
	ck_assert_ptr_nonnull(a);
	ck_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	ok(1, "dict.set", "{\"name\":\"d\",\"key\":\"c\",\"value\":3}");
	reload();
	a = call(0, "dict.len", "{\"name\":\"d\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "result")), 3);
	json_decref(a);
}
END_TEST

/* A read of an object that an unwritten (failed) record changed answers
 * unavailable at once, whichever client asks and however many passes
 * later: it must not show a mutation a crash would lose, nor wait. */
START_TEST(test_read_of_unwritten_mutation_is_unavailable)
{
	char flag[160];
	json_t *a;

	daemon_g.conf->persist_outage_timeout = 30;
	fail_flag(flag, sizeof(flag));
	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "value.set", "{\"name\":\"v\",\"value\":\"old\"}");
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"a\",\"value\":1}");
	ok(0, "dict.set", "{\"name\":\"keep\",\"key\":\"a\",\"value\":1}");
	disk_fails(flag);
	/* One pass, two unwritten records: v changed, d deleted. */
	send_req(0, "value.set", "{\"name\":\"v\",\"value\":\"NEW\"}");
	send_req(0, "obj.delete", "{\"name\":\"d\"}");
	ck_assert_ptr_null(recv_ans(0, 0.2));
	/* Later passes: an untouched object reads at once... */
	a = call(1, "dict.get", "{\"name\":\"keep\",\"key\":\"a\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "result")), 1);
	json_decref(a);
	/* ...v, the deleted d and the namespace are unavailable, at once. */
	ck_assert_str_eq(err_code(1, "value.get", "{\"name\":\"v\"}"), "unavailable");
	ck_assert_str_eq(err_code(1, "obj.get", "{\"name\":\"d\"}"), "unavailable");
	ck_assert_str_eq(err_code(1, "obj.list", "{}"), "unavailable");
	ok(1, "ping", "{}");
	/* The disk comes back: everything held goes out, now durable. */
	unlink(flag);
	for (int i = 0; i < 2; i++) {
		a = recv_ans(0, 5);
		ck_assert_ptr_nonnull(a);
		ck_assert(json_is_true(json_object_get(a, "ok")));
		json_decref(a);
	}
	a = call(1, "value.get", "{\"name\":\"v\"}");
	ck_assert_str_eq(json_string_value(json_object_get(a, "result")), "NEW");
	json_decref(a);
	ck_assert_str_eq(err_code(1, "obj.get", "{\"name\":\"d\"}"), "not_found");
	ok(1, "obj.list", "{}");
	reload();
	a = call(0, "value.get", "{\"name\":\"v\"}");
	ck_assert_str_eq(json_string_value(json_object_get(a, "result")), "NEW");
	json_decref(a);
	ck_assert_ptr_null(obj_find("d"));
}
END_TEST

/* Answers held past persist_outage_timeout: those that show or change
 * persisted state (the mutation, a read of it in the same pass) become
 * unavailable with their ids; the others of the pass (ping, an event)
 * go as they were; the mutation is written with the recovery. */
START_TEST(test_held_answers_time_out)
{
	static const char batch[] =
		"{\"id\":1,\"cmd\":\"dict.set\",\"name\":\"d\",\"key\":\"k\",\"value\":2}\n"
		"{\"id\":\"two\",\"cmd\":\"ping\"}\n"
		"{\"id\":3,\"cmd\":\"dict.get\",\"name\":\"d\",\"key\":\"k\"}\n"
		"{\"id\":4,\"cmd\":\"event.set\",\"name\":\"e\"}\n";
	char flag[160];
	double t0;
	json_t *a;

	daemon_g.conf->persist_outage_timeout = 0.4;
	fail_flag(flag, sizeof(flag));
	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"k\",\"value\":1}");
	disk_fails(flag);
	t0 = now_mono();
	ck_assert_int_eq(write(cl[0].fd, batch, sizeof(batch) - 1), (ssize_t)sizeof(batch) - 1);
	ck_assert_ptr_null(recv_ans(0, 0.2));
	a = recv_ans(0, 5);
	ck_assert_ptr_nonnull(a);
	ck_assert(now_mono() - t0 >= 0.39);
	ck_assert_int_eq(json_integer_value(json_object_get(a, "id")), 1);
	ck_assert_str_eq(code_of(a), "unavailable");
	ck_assert_ptr_nonnull(
		strstr(json_string_value(json_object_get(json_object_get(a, "error"), "message")),
		       "outcome is unknown"));
	json_decref(a);
	a = recv_ans(0, 1);
	ck_assert_str_eq(json_string_value(json_object_get(a, "id")), "two");
	ck_assert_str_eq(json_string_value(json_object_get(a, "result")), "pong");
	json_decref(a);
	a = recv_ans(0, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(a, "id")), 3);
	ck_assert_str_eq(code_of(a), "unavailable");
	json_decref(a);
	a = recv_ans(0, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(a, "id")), 4);
	ck_assert_str_eq(code_of(a), "");
	json_decref(a);
	/* The connection goes on: unwritten d is unavailable, e answers. */
	ck_assert_str_eq(err_code(0, "dict.get", "{\"name\":\"d\",\"key\":\"k\"}"), "unavailable");
	ok(0, "event.is_set", "{\"name\":\"e\"}");
	/* The disk comes back: the timed-out mutation is in the state. */
	unlink(flag);
	for (int i = 0; i < 300; i++) {
		a = call(1, "dict.get", "{\"name\":\"d\",\"key\":\"k\"}");
		if (!*code_of(a))
			break;
		json_decref(a);
		a = NULL;
		usleep(10000);
	}
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(json_integer_value(json_object_get(a, "result")), 2);
	json_decref(a);
	reload();
	a = call(0, "dict.get", "{\"name\":\"d\",\"key\":\"k\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "result")), 2);
	json_decref(a);
}
END_TEST

/* The pass whose write fails: answers on other connections that show no
 * persisted state (ping, a lock) go at once, not after the timeout; the
 * mutation's stays held. Both requests are read before the loop runs, so
 * they are answered in one pass. */
START_TEST(test_failed_pass_lets_other_answers_go)
{
	char flag[160];
	json_t *a;

	daemon_g.conf->persist_outage_timeout = 30;
	fail_flag(flag, sizeof(flag));
	open_ok(STATE_SYNC_ALWAYS, false);
	ok(0, "dict.set", "{\"name\":\"d\",\"key\":\"k\",\"value\":1}");
	disk_fails(flag);
	send_req(0, "dict.set", "{\"name\":\"d\",\"key\":\"k\",\"value\":2}");
	send_req(1, "lock.acquire", "{\"name\":\"lk\"}");
	a = recv_ans(1, 2);
	ck_assert_ptr_nonnull(a);
	ck_assert(json_is_true(json_object_get(json_object_get(a, "result"), "acquired")));
	json_decref(a);
	ck_assert_ptr_null(recv_ans(0, 0.3));
	unlink(flag);
	a = recv_ans(0, 5);
	ck_assert_ptr_nonnull(a);
	ck_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
}
END_TEST

/* --- the background thread and replaced logs ----------------------------------- */

/*
 * fdatasync and close are wrapped (-Wl,--wrap, persist.am): the background
 * thread's fdatasync can be held at a gate, and the close of one watched
 * fd records whether persist_g.mu was held meanwhile.
 */
int __real_fdatasync(int fd);
int __real_close(int fd);
int __wrap_fdatasync(int fd);
int __wrap_close(int fd);

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_on, gate_entered, gate_open, watch_closed, watch_mu_held;
static int watch_fd = -1;
static pthread_t main_thread;

int __wrap_fdatasync(int fd)
{
	pthread_mutex_lock(&gate_mu);
	if (gate_on && !pthread_equal(pthread_self(), main_thread)) {
		gate_entered = true;
		pthread_cond_broadcast(&gate_cv);
		while (!gate_open)
			pthread_cond_wait(&gate_cv, &gate_mu);
	}
	pthread_mutex_unlock(&gate_mu);
	return __real_fdatasync(fd);
}

int __wrap_close(int fd)
{
	bool watched, held = false;
	int r;

	pthread_mutex_lock(&gate_mu);
	watched = fd >= 0 && fd == watch_fd;
	pthread_mutex_unlock(&gate_mu);
	if (watched) {
		/* EBUSY: someone (the closing thread itself) holds mu */
		held = pthread_mutex_trylock(&persist_g.mu) != 0;
		if (!held)
			pthread_mutex_unlock(&persist_g.mu);
	}
	r = __real_close(fd);
	if (watched) {
		pthread_mutex_lock(&gate_mu);
		watch_mu_held = held;
		watch_closed = true;
		watch_fd = -1;
		pthread_cond_broadcast(&gate_cv);
		pthread_mutex_unlock(&gate_mu);
	}
	return r;
}

/* Wait (up to 10 s) until *flag is set under gate_mu. */
static bool gate_wait(const bool *flag)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&gate_mu);
	while (!*flag && pthread_cond_timedwait(&gate_cv, &gate_mu, &ts) == 0)
		;
	ok = *flag;
	pthread_mutex_unlock(&gate_mu);
	return ok;
}

/* A log replaced while the background thread fsyncs it is closed by that
 * thread without holding mu: the loop takes mu on every commit, and the
 * last close of a large replaced log takes a while. */
START_TEST(test_replaced_log_closed_outside_the_lock)
{
	int old, fresh;
	char p2[200];

	main_thread = pthread_self();
	open_ok(STATE_SYNC_EVERYSEC, false);
	pthread_mutex_lock(&gate_mu);
	gate_on = true;
	pthread_mutex_unlock(&gate_mu);
	pthread_mutex_lock(&persist_g.mu);
	persist_g.dirty = true; /* as a commit under everysec */
	pthread_mutex_unlock(&persist_g.mu);
	ck_assert_msg(gate_wait(&gate_entered), "the background thread did not fsync");
	/* it is syncing the log now: replace it */
	snprintf(p2, sizeof(p2), "%s/other.log", dir);
	fresh = open(p2, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(fresh, 0);
	old = persist_g.log_fd;
	pthread_mutex_lock(&gate_mu);
	watch_fd = old;
	pthread_mutex_unlock(&gate_mu);
	persist_log_fd_switch(fresh);
	pthread_mutex_lock(&gate_mu);
	ck_assert(!watch_closed); /* not by the loop: the thread is syncing it */
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
	ck_assert_msg(gate_wait(&watch_closed), "the replaced log was not closed");
	ck_assert_msg(!watch_mu_held, "the replaced log was closed holding persist_g.mu");
	ck_assert_int_eq(persist_g.log_fd, fresh);
	ck_assert_int_eq(fcntl(old, F_GETFD), -1); /* closed once, not leaked */
	pthread_mutex_lock(&gate_mu);
	gate_on = false;
	pthread_mutex_unlock(&gate_mu);
}
END_TEST

static Suite *persist_suite(void)
{
	Suite *s = suite_create("persist");
	TCase *t = tcase_create("format");

	tcase_add_test(t, test_crc32c);
	tcase_add_test(t, test_crc32c_against_reference);
	tcase_add_test(t, test_frame_layout);
	tcase_add_test(t, test_scan_good_and_empty);
	tcase_add_test(t, test_scan_torn_tail);
	tcase_add_test(t, test_scan_flipped_byte);
	tcase_add_test(t, test_scan_refused_record);
	suite_add_tcase(s, t);
	t = tcase_create("files");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 30);
	tcase_add_test(t, test_load_empty);
	tcase_add_test(t, test_load_torn_tail);
	tcase_add_test(t, test_load_corrupt);
	tcase_add_test(t, test_load_gap_and_lock);
	tcase_add_test(t, test_replay_equivalence);
	tcase_add_test(t, test_snapshot_skips_older_records);
	tcase_add_test(t, test_write_failure_holds_and_recovers);
	tcase_add_test(t, test_read_of_unwritten_mutation_is_unavailable);
	tcase_add_test(t, test_held_answers_time_out);
	tcase_add_test(t, test_failed_pass_lets_other_answers_go);
	tcase_add_test(t, test_replaced_log_closed_outside_the_lock);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(persist_suite());
}
