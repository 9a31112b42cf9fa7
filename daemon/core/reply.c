/*
 * Building the lines a connection sends (conn.h: conn_send, conn_send_reply).
 * Each is serialized into one reusable buffer and handed to the output
 * queue with one evbuffer_add (json_dump_callback would add every token
 * separately). The buffer grows to the largest line seen, so a big answer
 * (status of thousands of processes) is serialized once, not sized first;
 * the common small answers skip jansson's dumper.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "conn_int.h"
#include "jsonw.h"
#include "log.h"

static char *scratch;
static size_t scratch_cap;

/* Make scratch hold at least n bytes. */
static bool scratch_reserve(size_t n)
{
	char *p;
	size_t cap = scratch_cap ? scratch_cap : 64 * 1024;

	if (n <= scratch_cap)
		return true;
	while (cap < n)
		cap *= 2;
	if (!(p = realloc(scratch, cap)))
		return false;
	scratch = p;
	scratch_cap = cap;
	return true;
}

/* Append the compact JSON of v at buf[off] when it fits; returns the
 * offset after it either way (0 on a serialization error). */
static size_t dump_at(json_t *v, char *buf, size_t cap, size_t off)
{
	size_t room = off < cap ? cap - off : 0;
	size_t n = json_dumpb(v, room ? buf + off : NULL, room, JSON_COMPACT | JSON_ENCODE_ANY);

	return n ? off + n : 0;
}

/* Append a literal when it fits; returns the offset after it either way. */
static size_t add_lit(char *buf, size_t cap, size_t off, const char *lit, size_t len)
{
	if (off + len <= cap)
		memcpy(buf + off, lit, len);
	return off + len;
}

/*
 * Append v as dump_at() does, writing the common small answers (null,
 * booleans, integers, plain short strings) directly: jansson's dumper
 * costs some 400 instructions even for null.
 */
static size_t put_json(json_t *v, char *buf, size_t cap, size_t off)
{
	char tmp[24];

	switch (json_typeof(v)) {
	case JSON_NULL: return add_lit(buf, cap, off, "null", 4);
	case JSON_TRUE: return add_lit(buf, cap, off, "true", 4);
	case JSON_FALSE: return add_lit(buf, cap, off, "false", 5);
	case JSON_INTEGER:
		return add_lit(buf, cap, off, tmp, jsonw_fmt_int(tmp, json_integer_value(v)));
	case JSON_STRING: {
		size_t len = json_string_length(v);
		if (len <= 256 && jsonw_plain(json_string_value(v), len)) {
			off = add_lit(buf, cap, off, "\"", 1);
			off = add_lit(buf, cap, off, json_string_value(v), len);
			return add_lit(buf, cap, off, "\"", 1);
		}
		return dump_at(v, buf, cap, off);
	}
	default: return dump_at(v, buf, cap, off);
	}
}

/* Build a reply line {"id":ID,"ok":B,"result"|"error":V}\n into buf, V
 * being v or, when v is NULL, the JSON text raw. Returns its length, which
 * is more than cap when it did not fit, or 0 when a value cannot be
 * serialized. */
static size_t build_reply(char *buf, size_t cap, json_t *id, bool ok, json_t *v,
			  const char *raw, size_t raw_len)
{
	static const char mid_ok[] = ",\"ok\":true,\"result\":";
	static const char mid_err[] = ",\"ok\":false,\"error\":";
	size_t off = add_lit(buf, cap, 0, "{\"id\":", 6);

	if (!(off = id ? put_json(id, buf, cap, off) : add_lit(buf, cap, off, "null", 4)))
		return 0;
	off = ok ? add_lit(buf, cap, off, mid_ok, sizeof(mid_ok) - 1)
		 : add_lit(buf, cap, off, mid_err, sizeof(mid_err) - 1);
	if (v) {
		if (!(off = put_json(v, buf, cap, off)))
			return 0;
	} else {
		off = add_lit(buf, cap, off, raw, raw_len);
	}
	return add_lit(buf, cap, off, "}\n", 2);
}

bool conn_send_reply(struct conn *c, json_t *id, bool ok, json_t *v, const char *raw,
		     size_t raw_len)
{
	size_t n;

	if (c->dead)
		return false;
	if (!scratch_reserve(64 * 1024))
		goto fail;
	n = build_reply(scratch, scratch_cap, id, ok, v, raw, raw_len);
	if (n > scratch_cap) {
		if (!scratch_reserve(n))
			goto fail;
		n = build_reply(scratch, scratch_cap, id, ok, v, raw, raw_len);
	}
	if (n && n <= scratch_cap)
		return conn_queue(c, scratch, n);
fail:
	log_error("conn", "cannot serialize an answer for client %llu; dropping it",
		  (unsigned long long)c->id);
	conn_close(c);
	return false;
}

bool conn_send(struct conn *c, json_t *msg)
{
	size_t n;

	if (c->dead)
		return false;
	if (!scratch_reserve(64 * 1024))
		goto fail;
	n = dump_at(msg, scratch, scratch_cap - 1, 0);
	if (n > scratch_cap - 1) {
		if (!scratch_reserve(n + 1))
			goto fail;
		n = dump_at(msg, scratch, scratch_cap - 1, 0);
	}
	if (n && n <= scratch_cap - 1) {
		scratch[n] = '\n';
		return conn_queue(c, scratch, n + 1);
	}
fail:
	log_error("conn", "cannot serialize output for client %llu; dropping it",
		  (unsigned long long)c->id);
	conn_close(c);
	return false;
}
