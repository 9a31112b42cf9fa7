/*
 * Streams: the one way a connection becomes a stream of lines.
 *
 * A streaming request (CMD_STREAM) takes one of max_subscribers (within
 * its peer's role share: role_share(), conn.h), stands in its module's
 * stream set, gets lines until its connection closes, and is dropped when
 * it does not read (its output passes max_output_bytes). events.subscribe
 * and proc.logs follow both stream through here, so they share one count.
 *
 * How a streaming command plugs in:
 *   - embed a struct stream in the record of the stream (topics, target...)
 *     and get back to it with STREAM_OWNER;
 *   - stream_open(s, r, set, on_close, why, len); on -EBUSY free the
 *     record and answer `limit` with why; else send the first line
 *     (mpsup_response_ok(r->id, ...)) with stream_send and return
 *     CMD_STREAM;
 *   - walk the set with stream_first/stream_next and stream_send each line;
 *     a send may end that stream (a slow reader), so take the next first;
 *   - on_close(s) runs when the stream ends (connection closed or reader
 *     dropped): s is out of its set and its slot given back; free the
 *     record there.
 */
#ifndef MPSUPD_STREAM_H
#define MPSUPD_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include <jansson.h>

#include "container.h"

struct conn;
struct request;
struct stream;

typedef void stream_fn(struct stream *s);

struct stream {
	struct request *r; /* NULL once ended */
	struct stream_set *set;
	stream_fn *on_close;
	TAILQ_ENTRY(stream) entry;
};

/* A module's streams, in the order they were opened. */
struct stream_set {
	TAILQ_HEAD(stream_list, stream) head;
	unsigned n;
};

/* clang-format off: it would put the braces of a macro on lines of their own */
#define STREAM_SET_INITIALIZER(set)                   \
	{                                             \
		TAILQ_HEAD_INITIALIZER((set).head), 0 \
	}
/* clang-format on */
/* The record of type `type` whose member `member` is the stream s. */
#define STREAM_OWNER(s, type, member) CONTAINER_OF(s, type, member)

static inline struct stream *stream_first(const struct stream_set *set)
{
	return TAILQ_FIRST(&set->head);
}
static inline struct stream *stream_next(const struct stream *s)
{
	return TAILQ_NEXT(s, entry);
}

/*
 * Make r a stream s (s's memory is the caller's) in set, with a slot of
 * max_subscribers for r's connection. Sets r->data and r->cancel. 0;
 * -EBUSY with the reason in why (no slot left for the peer's role).
 */
int stream_open(struct stream *s, struct request *r, struct stream_set *set, stream_fn *on_close,
		char *why, size_t len);
/* Send msg (not stolen) as one line of s. false when the stream ended
 * (gone, or dropped for not reading): on_close(s) ran already. */
bool stream_send(struct stream *s, json_t *msg);
/* The same for a line given as JSON text (len bytes, no newline). */
bool stream_send_text(struct stream *s, const char *text, size_t len);

/* Take one of max_subscribers for c, which is about to stream (within its
 * role's share; once per connection). false with the reason in buf. */
bool stream_slot_take(struct conn *c, char *buf, size_t len);
/* Give c's stream slot back (its stream ended); nothing if it has none. */
void stream_slot_give(struct conn *c);
/* Streaming connections (slots taken). */
unsigned stream_count(void);

#endif
