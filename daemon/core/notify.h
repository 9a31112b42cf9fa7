/*
 * systemd service notifications (sd_notify protocol): READY=1, STATUS=,
 * RELOADING=1, STOPPING=1 and watchdog pings from the event loop. Without
 * $NOTIFY_SOCKET every call is a cheap no-op, so the daemon runs the same
 * from a terminal.
 *
 * notify_init() takes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID out of
 * the environment at start-up (no child can inherit them, however it is
 * spawned) and keeps what it needs.
 */
#ifndef MPSUPD_NOTIFY_H
#define MPSUPD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct event_base;

/* Read and unset the notify and watchdog variables; call before anything
 * is spawned. */
void notify_init(void);
/* Start the watchdog timer (half of WATCHDOG_USEC) and the STATUS timer. */
int notify_start(struct event_base *base);
/* Stop the timers and close the notify socket. */
void notify_cleanup(void);

/* Is a service manager listening? */
bool notify_enabled(void);
/* The watchdog interval in microseconds, 0 when off. */
unsigned long long notify_watchdog_usec(void);

/* READY=1 (start-up done, or a reload finished) with a fresh STATUS=. */
void notify_ready(void);
/* RELOADING=1 with MONOTONIC_USEC= (systemd >= 253 wants it). */
void notify_reloading(void);
/* STOPPING=1. */
void notify_stopping(void);
/* STATUS=text now (printf-style), e.g. a fatal start-up error. */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The figures behind STATUS= may have changed: the summary is sent again
 * (at most once a second) if its text differs. Modules may call this on
 * every state change; it costs a flag. */
void notify_status_changed(void);

/*
 * The one-line summary "N pools, M processes running, K fatal" built from
 * a daemon.info result: N from "pools" or "processes.pools" (an integer, or
 * a list/object counted), M from "processes.running" (else
 * "processes.alive"), K from "processes.fatal". A missing figure counts as
 * 0; N falls back to conf_pools.
 */
void notify_summary(json_t *info, unsigned conf_pools, char *buf, size_t len);

#endif
