/* Streams: slots of max_subscribers, stream sets, ending on close. */
#include "config.h"

#include <errno.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "stream.h"

static unsigned n_streams; /* streaming connections (max_subscribers) */

bool stream_slot_take(struct conn *c, char *buf, size_t len)
{
	unsigned max = daemon_g.conf->max_subscribers;

	if (c->stream_slot)
		return true;
	if (n_streams >= role_share(max, c->role)) {
		role_share_refusal(buf, len, "max_subscribers", max, c->role);
		return false;
	}
	c->stream_slot = true;
	n_streams++;
	return true;
}

void stream_slot_give(struct conn *c)
{
	if (c->stream_slot) {
		c->stream_slot = false;
		n_streams--;
	}
}

unsigned stream_count(void)
{
	return n_streams;
}

/* The connection closed (or was dropped for not reading): leave the set,
 * give the slot back, let the owner free its record. */
static void stream_cancel_cb(struct request *r)
{
	struct stream *s = r->data;

	TAILQ_REMOVE(&s->set->head, s, entry);
	s->set->n--;
	s->r = NULL;
	r->data = NULL;
	r->cancel = NULL;
	if (r->conn)
		stream_slot_give(r->conn);
	s->on_close(s);
}

int stream_open(struct stream *s, struct request *r, struct stream_set *set, stream_fn *on_close,
		char *why, size_t len)
{
	if (r->conn && !stream_slot_take(r->conn, why, len))
		return -EBUSY;
	*s = (struct stream){ .r = r, .set = set, .on_close = on_close };
	TAILQ_INSERT_TAIL(&set->head, s, entry);
	set->n++;
	r->data = s;
	r->cancel = stream_cancel_cb;
	return 0;
}

bool stream_send_text(struct stream *s, const char *text, size_t len)
{
	return request_stream_text(s->r, text, len);
}

bool stream_send(struct stream *s, json_t *msg)
{
	/* A slow reader is closed here, which cancels (and ends) s. */
	return request_stream(s->r, msg);
}
