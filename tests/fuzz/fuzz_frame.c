/*
 * Fuzz target: libmpsup's framer and envelope, as a client or the daemon
 * uses them. The stream is fed in chunks through both feeding paths; every
 * line popped is checked against the input (lines plus '\n' separators
 * rebuild it exactly, none exceeds the maximum), then parsed as a request
 * and as a response, and answers built from it must parse back.
 *
 * Input: byte 0 picks the maximum line (small values exercise the limit),
 * byte 1 the chunk size; the rest is the stream.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mpsup.h"

/* Answers built for a request must parse back as responses with its id. */
static void check_answers(json_t *id)
{
	struct mpsup_error err;
	json_t *ok = mpsup_response_ok(id, json_string("r"));
	json_t *bad = mpsup_response_error(id, MPSUP_E_BAD_REQUEST, "m");
	json_t *rid = NULL, *res = NULL;

	FUZZ_CHECK(ok && bad, "building an answer failed");
	FUZZ_CHECK(mpsup_response_parse(ok, &rid, &res, &err) == 0, "ok answer does not parse");
	FUZZ_CHECK(json_equal(rid ? rid : json_null(), id ? id : json_null()), "id changed");
	FUZZ_CHECK(mpsup_response_parse(bad, &rid, &res, &err) == 1, "error answer does not parse");
	FUZZ_CHECK(err.code == MPSUP_E_BAD_REQUEST, "error code changed");
	json_decref(ok);
	json_decref(bad);
}

/* One line: the depth scanner, the request parser, the response parser. */
static void check_line(const char *line, size_t len)
{
	struct mpsup_error err;
	const char *cmd;
	json_t *req = NULL, *id = NULL, *v;
	size_t depth = mpsup_json_depth(line, len);

	if (mpsup_request_parse(line, len, MPSUP_DEFAULT_MAX_DEPTH, &req, &cmd, &id, &err) == 0) {
		FUZZ_CHECK(json_is_object(req), "a request that is not an object");
		FUZZ_CHECK(cmd && json_is_string(json_object_get(req, "cmd")) &&
				   strcmp(cmd, json_string_value(json_object_get(req, "cmd"))) == 0,
			   "cmd does not match the request");
		FUZZ_CHECK(depth <= MPSUP_DEFAULT_MAX_DEPTH, "accepted depth %zu", depth);
		check_answers(json_object_get(req, "id"));
		json_decref(req);
	} else {
		FUZZ_CHECK(err.code == MPSUP_E_BAD_REQUEST || err.code == MPSUP_E_TOO_LARGE,
			   "unexpected code %d", (int)err.code);
		FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)), "unterminated message");
		json_decref(id);
	}
	/* The same bytes as a daemon answer, as a client reads them. */
	if (depth <= MPSUP_DEFAULT_MAX_DEPTH && (v = json_loadb(line, len, 0, NULL))) {
		json_t *rid, *res;
		int r = mpsup_response_parse(v, &rid, &res, &err);
		FUZZ_CHECK(r == 0 || r == 1 || r == -EBADMSG, "response_parse returned %d", r);
		if (r == 1)
			FUZZ_CHECK(mpsup_err_name(err.code), "unknown code %d", (int)err.code);
		json_decref(v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mpsup_framer *f;
	size_t max_line, chunk, off = 2, seen = 0;
	char *line;
	size_t len;
	int r = 0;

	if (size < 2)
		return 0;
	max_line = data[0] < 128 ? 1 + data[0] : MPSUP_DEFAULT_MAX_LINE;
	chunk = 1 + data[1];
	f = mpsup_framer_new(max_line);
	FUZZ_CHECK(f, "mpsup_framer_new failed");
	while (off < size && r >= 0) {
		size_t n = size - off < chunk ? size - off : chunk;
		if ((off / chunk) % 2) {
			FUZZ_CHECK(mpsup_framer_feed(f, data + off, n) == 0, "feed failed");
		} else {
			char *p;
			ssize_t room = mpsup_framer_space(f, n, &p);
			FUZZ_CHECK(room >= (ssize_t)n, "space gave %zd < %zu", room, n);
			memcpy(p, data + off, n);
			mpsup_framer_commit(f, n);
		}
		off += n;
		while ((r = mpsup_framer_pop(f, &line, &len)) == 1) {
			FUZZ_CHECK(len <= max_line, "line of %zu > max %zu", len, max_line);
			FUZZ_CHECK(line[len] == '\0', "line not terminated");
			/* the line, then "\n" or "\r\n" (CRLF is tolerated) */
			FUZZ_CHECK(seen + len < size - 2 && memcmp(line, data + 2 + seen, len) == 0,
				   "line %zu bytes at %zu does not match the input", len, seen);
			seen += len;
			if (data[2 + seen] == '\r' && seen + 1 < size - 2 &&
			    data[2 + seen + 1] == '\n')
				seen++;
			FUZZ_CHECK(data[2 + seen] == '\n', "line at %zu not ended by newline",
				   seen);
			seen++;
			check_line(line, len);
		}
		FUZZ_CHECK(r == 0 || r == -EMSGSIZE, "pop returned %d", r);
	}
	if (r == 0)
		FUZZ_CHECK(mpsup_framer_pending(f) == size - 2 - seen, "pending %zu != %zu",
			   mpsup_framer_pending(f), size - 2 - seen);
	mpsup_framer_free(f);
	return 0;
}
