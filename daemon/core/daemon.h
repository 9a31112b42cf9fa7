/* The daemon's global context: event loop, running config, lifetime. */
#ifndef MPSUPD_DAEMON_H
#define MPSUPD_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include <event2/event.h>

#include "conf.h"

struct daemon {
	struct event_base *base;
	struct conf *conf;           /* the running config */
	const char *conf_path;       /* -c */
	const char *socket_override; /* -s */
	struct timespec started;     /* CLOCK_MONOTONIC */
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
/*
 * Children the daemon forks for its own work (a state snapshot), not
 * supervised processes: supervision's reaper (waitpid(-1)) may collect one
 * first and hands its status to the owner through daemon_child_reaped.
 * The owner watches its pid right after the fork and unwatches it once it
 * reaped the child itself.
 */
typedef void daemon_child_fn(pid_t pid, int status, void *arg);
#define DAEMON_MAX_CHILDREN (4 + HOOKS_MAX) /* a snapshot or so, and one per hook */
/* 0, or -ENOSPC beyond DAEMON_MAX_CHILDREN. */
int daemon_child_watch(pid_t pid, daemon_child_fn *fn, void *arg);
void daemon_child_unwatch(pid_t pid);
/* Called by a reaper with a status it collected: true when pid was a
 * watched child (it is unwatched, and its owner told). */
bool daemon_child_reaped(pid_t pid, int status);

/* A timeval from seconds (for event_add). */
struct timeval tv_from_secs(double s);

#endif
