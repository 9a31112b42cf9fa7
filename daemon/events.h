/*
 * Event streams: events.subscribe turns a connection into a stream of event
 * lines; any module publishes with events_publish(). A subscriber that does
 * not read is dropped when its output passes the connection output bound.
 */
#ifndef MPSUPD_EVENTS_H
#define MPSUPD_EVENTS_H

#include <jansson.h>

enum event_topic {
	TOPIC_PROCESS = 1 << 0,
	TOPIC_POOL = 1 << 1,
	TOPIC_OBJECT = 1 << 2,
	TOPIC_DAEMON = 1 << 3,
	TOPIC_TASK = 1 << 4,
};

/* Publish ev (stolen; "event" and "ts" members are expected, ts is added
 * when missing) to the subscribers of topic. Cheap when nobody listens. */
void events_publish(enum event_topic topic, json_t *ev);
/* True when someone listens to topic (skip building the event otherwise). */
int events_wanted(enum event_topic topic);
unsigned events_subscribers(void);

#endif
