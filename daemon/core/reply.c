/*
 * Building the lines a connection sends (conn.h: conn_send, conn_send_reply).
 * An answer to the connection being dispatched is built in place in the
 * output stage (conn.c), which goes to the connection's evbuffer once per
 * batch; any other line is serialized into one reusable buffer and handed
 * to the output queue with one evbuffer_add (json_dump_callback would add
 * every token separately). The buffer grows to the largest line seen, so a big answer
 * (status of thousands of processes) is serialized once, not sized first;
 * the common small answers skip jansson's dumper.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

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
static size_t build_reply(char *buf, size_t cap, json_t *id, bool ok, json_t *v, const char *raw,
			  size_t raw_len)
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
	size_t n, room;
	char *at;

	if (c->dead)
		return false;
	/* Built where it is queued when it fits there: no copy. */
	if ((at = conn_stage_room(c, &room)) &&
	    (n = build_reply(at, room, id, ok, v, raw, raw_len)) && n <= room) {
		conn_stage_commit(c, n);
		return true;
	}
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

bool conn_send_text(struct conn *c, const char *text, size_t len)
{
	if (c->dead)
		return false;
	if (!scratch_reserve(len + 1)) {
		log_error("conn", "out of memory for output to client %llu; dropping it",
			  (unsigned long long)c->id);
		conn_close(c);
		return false;
	}
	memcpy(scratch, text, len);
	scratch[len] = '\n';
	return conn_queue(c, scratch, len + 1);
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

/* What an answer given up on says (conn_rewrite_durable). */
static const char gave_up_msg[] =
	"{\"code\":\"unavailable\",\"message\":\"shared state could not be written in time "
	"(persist_outage_timeout): the outcome is unknown; a change this request made is kept "
	"if and when the state is written again\"}";

/* Append to out the `unavailable` answer for the reply line (len bytes)
 * taken from the held output: same id. false when out of memory. */
static bool add_gave_up(struct evbuffer *out, const char *line, size_t len)
{
	json_t *v = json_loadb(line, len, 0, NULL);
	size_t n;
	bool ok = false;

	/* Our own line: it parses; if memory ran out, the id is lost (null) */
	n = build_reply(scratch, scratch_cap, json_object_get(v, "id"), false, NULL, gave_up_msg,
			sizeof(gave_up_msg) - 1);
	if (n > scratch_cap && scratch_reserve(n))
		n = build_reply(scratch, scratch_cap, json_object_get(v, "id"), false, NULL,
				gave_up_msg, sizeof(gave_up_msg) - 1);
	if (n && n <= scratch_cap)
		ok = evbuffer_add(out, scratch, n) == 0;
	json_decref(v);
	return ok;
}

void conn_rewrite_durable(struct conn *c)
{
	struct evbuffer *out;
	uint64_t pos = c->out_written;
	size_t old_len, new_len;
	char *line = NULL;
	bool ok;

	if (!conn_stage_spill(c))
		return;
	out = evbuffer_new();
	old_len = evbuffer_get_length(c->out);
	ok = out && scratch_reserve(64 * 1024);

	for (size_t i = 0; ok && i < c->n_durable; i++) {
		struct out_span d = c->durable[i];
		size_t len = (size_t)(d.end - d.start);
		/* Output the barrier let go before (a full socket kept it)
		 * leaves as it is. */
		if (d.start < c->out_released || d.start < pos)
			continue;
		char *p = realloc(line, len);
		if (p)
			line = p;
		ok = p &&
		     evbuffer_remove_buffer(c->out, out, (size_t)(d.start - pos)) ==
			     (int)(d.start - pos) &&
		     evbuffer_remove(c->out, line, len) == (int)len && add_gave_up(out, line, len);
		pos = d.end;
	}
	free(line);
	if (!ok || evbuffer_add_buffer(out, c->out) < 0) {
		/* The held answers must not go out as they are. */
		log_error("conn", "out of memory answering client %llu; closing it",
			  (unsigned long long)c->id);
		if (out)
			evbuffer_free(out);
		conn_close(c);
		return;
	}
	evbuffer_free(c->out);
	c->out = out;
	new_len = evbuffer_get_length(out);
	conns_g.out_total = conns_g.out_total - old_len + new_len;
	c->out_queued = c->out_written + new_len;
	c->n_durable = 0;
}
