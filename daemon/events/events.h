/*
 * Event streams: events.subscribe turns a connection into a stream of event
 * lines; any module publishes with events_publish(). A subscriber that does
 * not read is dropped when its output passes the connection output bound.
 */
#ifndef MPSUPD_EVENTS_H
#define MPSUPD_EVENTS_H

#include <stdbool.h>

#include <jansson.h>

enum event_topic {
	TOPIC_PROCESS = 1 << 0,
	TOPIC_POOL = 1 << 1,
	TOPIC_OBJECT = 1 << 2,
	TOPIC_DAEMON = 1 << 3,
	TOPIC_TASK = 1 << 4,
};

struct conn;

/* Publish ev (stolen; "event" and "ts" members are expected, ts is added
 * when missing) to the subscribers of topic. Cheap when nobody listens. */
void events_publish(enum event_topic topic, json_t *ev);
/* May the peer of c see an event about something private (arg says
 * what: a task's or, later, an object's owner)? */
typedef bool event_visible_fn(const struct conn *c, const void *arg);
/* Publish ev (stolen) to the subscribers of topic for whom visible(c, arg)
 * holds. */
void events_publish_visible(enum event_topic topic, event_visible_fn *visible, const void *arg,
			    json_t *ev);
/* Admins and the peer whose uid is *(const uid_t *)owner see it. */
bool events_visible_to_owner(const struct conn *c, const void *owner);
/* May the peer of c use the thing owned as *(const struct owner *)owner
 * (access_decide: a private thing is its uid's and admins')? */
bool events_visible_access(const struct conn *c, const void *owner);
/* True when someone listens to topic (skip building the event otherwise). */
int events_wanted(enum event_topic topic);
unsigned events_subscribers(void);

#endif
