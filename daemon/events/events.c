/*
 * events.subscribe and the publisher every module calls. Subscribers are
 * streams (stream.h); a closed or slow subscriber ends itself.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "events.h"
#include "hooks.h"
#include "log.h"
#include "stream.h"

struct subscriber {
	struct stream stream;
	unsigned topics;
};

static struct stream_set subs = STREAM_SET_INITIALIZER(subs);
static unsigned topic_counts[5];

static const struct {
	const char *name;
	enum event_topic topic;
} topics[] = {
	{ "process", TOPIC_PROCESS }, { "pool", TOPIC_POOL }, { "object", TOPIC_OBJECT },
	{ "daemon", TOPIC_DAEMON },   { "task", TOPIC_TASK },
};
#define N_TOPICS (sizeof(topics) / sizeof(topics[0]))

static void count_topics(unsigned mask, int delta)
{
	for (size_t i = 0; i < N_TOPICS; i++)
		if (mask & topics[i].topic)
			topic_counts[i] = (unsigned)((int)topic_counts[i] + delta);
}

int events_wanted(enum event_topic topic)
{
	if (hooks_topics() & topic)
		return 1;
	for (size_t i = 0; i < N_TOPICS; i++)
		if (topics[i].topic == topic)
			return topic_counts[i] > 0;
	return 0;
}

unsigned events_subscribers(void)
{
	return subs.n;
}

void events_publish_visible(enum event_topic topic, event_visible_fn *visible, const void *arg,
			    json_t *ev)
{
	struct stream *st, *next;

	if (!ev)
		return;
	if (!json_object_get(ev, "ts"))
		json_object_set_new(ev, "ts", json_real(now_wall()));
	if (hooks_topics() & topic)
		hooks_event(ev);
	for (st = stream_first(&subs); st; st = next) {
		struct subscriber *s = STREAM_OWNER(st, struct subscriber, stream);
		next = stream_next(st);
		if (!(s->topics & topic))
			continue;
		if (visible && !visible(st->r->conn, arg))
			continue;
		stream_send(st, ev); /* may end s */
	}
	json_decref(ev);
}

void events_publish(enum event_topic topic, json_t *ev)
{
	events_publish_visible(topic, NULL, NULL, ev);
}

bool events_visible_to_owner(const struct conn *c, const void *owner)
{
	return c && (c->role >= ROLE_ADMIN || c->uid == *(const uid_t *)owner);
}

bool events_visible_access(const struct conn *c, const void *owner)
{
	return c && access_decide(c->role, c->uid, false, owner) == ACCESS_OK;
}

static void subscriber_closed(struct stream *st)
{
	struct subscriber *s = STREAM_OWNER(st, struct subscriber, stream);

	count_topics(s->topics, -1);
	free(s);
}

/* events.subscribe {topics?} -> an ok line, then one line per event. */
static enum cmd_ret cmd_subscribe(struct request *r)
{
	json_t *list = NULL, *t, *resp;
	unsigned mask = 0;
	char why[200];
	struct subscriber *s;
	size_t i;

	if (request_unpack(r, "{s?o}", "topics", &list) < 0)
		return CMD_DONE;
	if (list && !json_is_array(list)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "topics must be a list");
		return CMD_DONE;
	}
	if (!list || json_array_size(list) == 0)
		mask = TOPIC_PROCESS | TOPIC_POOL | TOPIC_OBJECT | TOPIC_DAEMON | TOPIC_TASK;
	json_array_foreach(list, i, t) {
		size_t k;
		for (k = 0; k < N_TOPICS; k++)
			if (json_is_string(t) && strcmp(json_string_value(t), topics[k].name) == 0)
				break;
		if (k == N_TOPICS) {
			request_error(r, MPSUP_E_BAD_REQUEST,
				      "unknown topic (process, pool, object, daemon, task)");
			return CMD_DONE;
		}
		mask |= topics[k].topic;
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (stream_open(&s->stream, r, &subs, subscriber_closed, why, sizeof(why)) < 0) {
		free(s);
		request_error(r, MPSUP_E_LIMIT, "too many streams: %s", why);
		return CMD_DONE;
	}
	s->topics = mask;
	count_topics(mask, 1);
	resp = mpsup_response_ok(r->id, json_pack("{s:b}", "subscribed", 1));
	stream_send(&s->stream, resp);
	json_decref(resp);
	return CMD_STREAM;
}

static void events_info(json_t *info)
{
	json_object_set_new(info, "subscribers", json_integer(subs.n));
	json_object_set_new(info, "hooks", hooks_info());
}

static int events_start(const struct conf *conf)
{
	hooks_configure(conf);
	return 0;
}

static int events_reload(const struct conf *newconf, json_t *changes)
{
	(void)changes;
	hooks_configure(newconf);
	return 0;
}

static void events_stop(void (*done)(void))
{
	hooks_stop();
	done();
}

static const struct cmd_entry events_cmds[] = {
	{ "events.subscribe", ROLE_READ, CMD_STREAMS, cmd_subscribe, "a:topics?" },
	{ NULL, 0, 0, NULL, NULL },
};

/* The daemon's own events: shutdown begins, a reload was applied. */
static void events_shutting_down(const char *why)
{
	if (events_wanted(TOPIC_DAEMON))
		events_publish(TOPIC_DAEMON,
			       json_pack("{s:s, s:s}", "event", "daemon.shutdown", "reason", why));
}

static void events_reloaded(json_t *changes)
{
	if (events_wanted(TOPIC_DAEMON))
		events_publish(TOPIC_DAEMON, json_pack("{s:s, s:O}", "event", "daemon.reload",
						       "changes", changes));
}

const struct cmd_module events_module = {
	.capability = "events",
	.cmds = events_cmds,
	.info = events_info,
	.metrics = hooks_metrics,
	.start = events_start,
	.stop = events_stop,
	.reload = events_reload,
	.shutting_down = events_shutting_down,
	.reloaded = events_reloaded,
};
