/*
 * What daemon/main.c provides to the daemon library, for harnesses that
 * link daemon/libmpsupd without main.c: inert reload and shutdown (the
 * request harness never grants admin). The context and clocks come from
 * daemon/core/daemon.c.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "daemon.h"

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
