/* The daemon's global context and clocks, shared by mpsupd and the test
 * and fuzz programs that link the daemon library without main.c. */
#include "config.h"

#include <errno.h>
#include <sys/time.h>
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

static struct {
	pid_t pid;
	daemon_child_fn *fn;
	void *arg;
} children[DAEMON_MAX_CHILDREN];

int daemon_child_watch(pid_t pid, daemon_child_fn *fn, void *arg)
{
	for (size_t i = 0; i < DAEMON_MAX_CHILDREN; i++)
		if (!children[i].pid) {
			children[i].pid = pid;
			children[i].fn = fn;
			children[i].arg = arg;
			return 0;
		}
	return -ENOSPC;
}

void daemon_child_unwatch(pid_t pid)
{
	for (size_t i = 0; i < DAEMON_MAX_CHILDREN; i++)
		if (children[i].pid == pid)
			children[i].pid = 0;
}

bool daemon_child_reaped(pid_t pid, int status)
{
	for (size_t i = 0; i < DAEMON_MAX_CHILDREN; i++)
		if (pid > 0 && children[i].pid == pid) {
			children[i].pid = 0;
			children[i].fn(pid, status, children[i].arg);
			return true;
		}
	return false;
}
