/*
 * What daemon/main.c provides to the daemon library, for harnesses that
 * link daemon/libmpsupd without main.c: the global context, clocks and
 * inert reload/shutdown (the request harness never grants admin).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "daemon.h"

struct daemon daemon_g;

double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double now_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double daemon_uptime(void)
{
	return now_mono() -
	       ((double)daemon_g.started.tv_sec + (double)daemon_g.started.tv_nsec / 1e9);
}

struct timeval tv_from_secs(double s)
{
	struct timeval tv;

	if (s < 0)
		s = 0;
	tv.tv_sec = (time_t)s;
	tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
	if (tv.tv_usec >= 1000000)
		tv.tv_usec = 999999;
	return tv;
}

void daemon_shutdown(const char *why)
{
	(void)why;
	daemon_g.shutting_down = true;
}

int daemon_reload(json_t **result, char *err, size_t errlen)
{
	(void)result;
	snprintf(err, errlen, "reload is not available while fuzzing");
	return -ENOTSUP;
}
