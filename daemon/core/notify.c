/*
 * The sd_notify protocol, spoken directly: one datagram of "KEY=VALUE\n"
 * lines to the socket named by $NOTIFY_SOCKET. We do not call sd_notify()
 * because it reads the variable from the environment at each call, and the
 * environment must not carry it (children would inherit it).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "command.h"
#include "daemon.h"
#include "lifecycle.h"
#include "log.h"
#include "notify.h"

#define STATUS_MAX 256
#define STATUS_MIN_INTERVAL 1.0 /* seconds between two STATUS= updates */

static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len; /* 0 = no service manager */
static int notify_fd = -1;
static unsigned long long watchdog_usec;
static struct event *ev_watchdog;
static struct event *ev_status;      /* periodic: resend STATUS= when it changed */
static struct event *ev_status_soon; /* one-shot after notify_status_changed() */
static char last_status[STATUS_MAX];
static double last_status_at = -1e9;
static bool stopping;
static bool reloading;

/* Keep the address of $NOTIFY_SOCKET ("/path" or "@abstract"). */
static void notify_parse_socket(const char *s)
{
	size_t n;

	if (!s || !*s)
		return;
	n = strlen(s);
	if ((s[0] != '/' && s[0] != '@') || n >= sizeof(notify_addr.sun_path)) {
		log_warn("notify", "NOTIFY_SOCKET=%s is not supported; not notifying", s);
		return;
	}
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, s, n);
	if (s[0] == '@')
		notify_addr.sun_path[0] = '\0';
	notify_addr_len =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (s[0] == '/' ? 1 : 0));
}

void notify_init(void)
{
	uint64_t usec = 0;

	notify_parse_socket(getenv("NOTIFY_SOCKET"));
	/* Checks WATCHDOG_PID against our pid and unsets both variables. */
	if (sd_watchdog_enabled(1, &usec) > 0 && usec > 0)
		watchdog_usec = usec;
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	if (watchdog_usec && !notify_addr_len) {
		log_warn("notify", "WATCHDOG_USEC is set but NOTIFY_SOCKET is not: no pings");
		watchdog_usec = 0;
	}
}

bool notify_enabled(void)
{
	return notify_addr_len > 0;
}

unsigned long long notify_watchdog_usec(void)
{
	return watchdog_usec;
}

/* Send one datagram; a failure is logged once per errno, never fatal. */
static void notify_send(const char *msg)
{
	static int last_errno;
	ssize_t n;

	if (!notify_addr_len)
		return;
	if (notify_fd < 0) {
		struct timeval tv = { 2, 0 }; /* never wedge on a stuck manager */

		notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (notify_fd < 0) {
			log_warn("notify", "socket: %s", strerror(errno));
			return;
		}
		setsockopt(notify_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	do
		n = sendto(notify_fd, msg, strlen(msg), MSG_NOSIGNAL,
			   (const struct sockaddr *)&notify_addr, notify_addr_len);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != last_errno)
			log_warn("notify", "cannot notify the service manager: %s",
				 strerror(errno));
		last_errno = errno;
		return;
	}
	last_errno = 0;
	log_debug("notify", "sent %.*s", (int)strcspn(msg, "\n"), msg);
}

/* An integer member, or the size of a list/object, or the "count" of an
 * object; def when absent. */
static long long figure(json_t *v, long long def)
{
	json_t *count;

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_array(v))
		return (long long)json_array_size(v);
	if (json_is_object(v)) {
		count = json_object_get(v, "count");
		return json_is_integer(count) ? json_integer_value(count)
					      : (long long)json_object_size(v);
	}
	return def;
}

void notify_summary(json_t *info, unsigned conf_pools, char *buf, size_t len)
{
	json_t *procs = json_object_get(info, "processes");
	json_t *pools_v = json_object_get(info, "pools");
	long long pools, running = 0, fatal = 0;

	if (!pools_v && json_is_object(procs))
		pools_v = json_object_get(procs, "pools");
	pools = figure(pools_v, conf_pools);
	if (json_is_object(procs)) {
		json_t *run = json_object_get(procs, "running");
		running = figure(run ? run : json_object_get(procs, "alive"), 0);
		fatal = figure(json_object_get(procs, "fatal"), 0);
	} else if (json_is_integer(procs)) {
		running = json_integer_value(procs);
	}
	snprintf(buf, len, "%lld pool%s, %lld process%s running, %lld fatal", pools,
		 pools == 1 ? "" : "s", running, running == 1 ? "" : "es", fatal);
}

/* The current STATUS= text: the module figures of daemon.info. */
static void status_text(char *buf, size_t len)
{
	char summary[STATUS_MAX];
	json_t *info = json_object();

	if (info)
		modules_info(info);
	notify_summary(info, daemon_g.conf ? daemon_g.conf->n_pools : 0, summary, sizeof(summary));
	json_decref(info);
	snprintf(buf, len, "%s%s",
		 stopping    ? "Stopping: "
		 : reloading ? "Reloading: "
			     : "",
		 summary);
}

/* Send STATUS= if its text changed since the last one (or always when
 * force); extra lines (READY=1...) go in the same datagram. */
static void status_send(const char *extra, bool force)
{
	char text[STATUS_MAX], msg[STATUS_MAX + 128];

	status_text(text, sizeof(text));
	if (!force && strcmp(text, last_status) == 0)
		return;
	snprintf(msg, sizeof(msg), "%sSTATUS=%s", extra ? extra : "", text);
	notify_send(msg);
	snprintf(last_status, sizeof(last_status), "%s", text);
	last_status_at = now_mono();
}

static void status_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	status_send(NULL, false);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
}

int notify_start(struct event_base *base)
{
	struct timeval tv;

	if (!notify_addr_len)
		return 0;
	ev_status = event_new(base, -1, EV_PERSIST, status_cb, NULL);
	ev_status_soon = evtimer_new(base, status_cb, NULL);
	tv = tv_from_secs(STATUS_MIN_INTERVAL);
	if (!ev_status || !ev_status_soon || event_add(ev_status, &tv) < 0)
		return -ENOMEM;
	if (watchdog_usec) {
		tv.tv_sec = (time_t)(watchdog_usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(watchdog_usec / 2 % 1000000);
		ev_watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, NULL);
		if (!ev_watchdog || event_add(ev_watchdog, &tv) < 0)
			return -ENOMEM;
		log_info("notify", "watchdog enabled: pinging every %llu ms", watchdog_usec / 2000);
		notify_send("WATCHDOG=1");
	}
	return 0;
}

void notify_cleanup(void)
{
	if (ev_watchdog)
		ev_watchdog = (event_free(ev_watchdog), NULL);
	if (ev_status)
		ev_status = (event_free(ev_status), NULL);
	if (ev_status_soon)
		ev_status_soon = (event_free(ev_status_soon), NULL);
	if (notify_fd >= 0)
		notify_fd = (close(notify_fd), -1);
}

void notify_ready(void)
{
	if (stopping) /* a reload that raced with shutdown */
		return;
	reloading = false;
	status_send("READY=1\n", true);
}

void notify_reloading(void)
{
	char msg[128];
	struct timespec ts;

	if (!notify_addr_len || stopping)
		return;
	reloading = true;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg),
		 "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading configuration",
		 (unsigned long long)ts.tv_sec * 1000000ULL +
			 (unsigned long long)ts.tv_nsec / 1000);
	notify_send(msg);
}

void notify_stopping(void)
{
	stopping = true;
	notify_send("STOPPING=1\nSTATUS=Stopping");
	snprintf(last_status, sizeof(last_status), "Stopping");
}

void notify_status(const char *fmt, ...)
{
	char text[STATUS_MAX], msg[STATUS_MAX + 8];
	va_list ap;

	if (!notify_addr_len)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	text[strcspn(text, "\n")] = '\0';
	snprintf(msg, sizeof(msg), "STATUS=%s", text);
	notify_send(msg);
	snprintf(last_status, sizeof(last_status), "%s", text);
}

void notify_status_changed(void)
{
	struct timeval tv;
	double wait;

	if (!ev_status_soon || evtimer_pending(ev_status_soon, NULL))
		return;
	wait = last_status_at + STATUS_MIN_INTERVAL - now_mono();
	tv = tv_from_secs(wait > 0 ? wait : 0);
	evtimer_add(ev_status_soon, &tv);
}
