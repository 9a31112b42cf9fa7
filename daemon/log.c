/* Daemon logging to stderr: "LEVEL subsys: message". */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum log_level cur_level = LOG_LVL_INFO;
static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_init(enum log_level level)
{
	cur_level = level;
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void log_set_level(enum log_level level)
{
	cur_level = level;
}

enum log_level log_get_level(void)
{
	return cur_level;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	if (strcmp(s, "warn") == 0)
		return LOG_LVL_WARNING;
	return -1;
}

void log_msg(enum log_level level, const char *subsys, const char *file, int line,
	     const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	(void)file;
	(void)line;
	if (level > cur_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "mpsupd: %s %s: %s\n", level_names[level], subsys, buf);
}
