/*
 * Hooks ([hook:NAME], docs/hooks.md): a command run for matching events,
 * the event as one JSON line on its stdin. One instance per hook at a
 * time; later events wait in a bounded queue, beyond which they are
 * dropped and counted; a run that outlives its timeout is killed.
 */
#ifndef MPSUPD_HOOKS_H
#define MPSUPD_HOOKS_H

#include <jansson.h>

#include "conf.h"

struct evbuffer;

/* Take the hooks of conf (start, reload): hooks kept by name keep their
 * queue and running instance. */
void hooks_configure(const struct conf *conf);
/* The event topics (events.h) some hook may want. */
unsigned hooks_topics(void);
/* An event was published: queue it for every hook it matches. */
void hooks_event(json_t *ev);
/* Kill running hooks and free everything (shutdown). */
void hooks_stop(void);
/* daemon.info's hooks member; metric families. */
json_t *hooks_info(void);
void hooks_metrics(struct evbuffer *b);

#endif
