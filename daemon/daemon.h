/* The daemon's global context: event loop, running config, lifetime. */
#ifndef MPSUPD_DAEMON_H
#define MPSUPD_DAEMON_H

#include <stdbool.h>
#include <time.h>

#include <event2/event.h>

#include "conf.h"

struct daemon {
	struct event_base *base;
	struct conf *conf;        /* the running config */
	const char *conf_path;    /* -c */
	const char *socket_override; /* -s */
	struct timespec started;  /* CLOCK_MONOTONIC */
	time_t started_wall;
	bool shutting_down;
	bool truncate_corrupt_state; /* --truncate-corrupt-state (persist.c) */
	int exit_code;
};

extern struct daemon daemon_g;

/* Seconds since start-up (monotonic). */
double daemon_uptime(void);
/* Monotonic clock in seconds. */
double now_mono(void);
/* Wall clock in seconds (for "ts" fields). */
double now_wall(void);
/* Begin an orderly shutdown (idempotent). */
void daemon_shutdown(const char *why);
/* Re-read the config file; on success the new config replaces the running
 * one. Returns 0, or -errno with the message in err. result, when not NULL,
 * receives what changed. */
int daemon_reload(json_t **result, char *err, size_t errlen);
/* A timeval from seconds (for event_add). */
struct timeval tv_from_secs(double s);

#endif
