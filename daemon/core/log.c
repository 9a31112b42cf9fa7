/*
 * Daemon logging: "mpsupd: LEVEL subsys: message" lines on stderr, or
 * journal entries with structured fields when stderr is the journal.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

/* our CODE_FILE/CODE_LINE are the caller's, not journal_write()'s */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "daemon.h"
#include "log.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static enum log_level cur_level = LOG_LVL_INFO;
static bool journal;
static const char *const level_names[] = { "error", "warning", "info", "debug" };
static const int level_priorities[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

/* Is stderr the stream systemd connected to the journal? $JOURNAL_STREAM
 * is "DEVICE:INODE" of that stream; a redirected stderr no longer matches. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	if ((unsigned long long)st.st_dev != dev || (unsigned long long)st.st_ino != ino)
		return false;
	/* sd_journal_send() drops entries silently when journald's socket is
	 * missing (a container, a test): then stderr is the better bet. */
	return access(JOURNAL_SOCKET, F_OK) == 0;
}

void log_init(enum log_level level)
{
	cur_level = level;
	setvbuf(stderr, NULL, _IOLBF, 0);
	journal = stderr_is_journal();
}

void log_set_level(enum log_level level)
{
	cur_level = level;
}

enum log_level log_get_level(void)
{
	return cur_level;
}

bool log_to_journal(void)
{
	return journal;
}

/* Append "NAME=value" as one iovec item backed by buf (at most len). */
static void field(struct iovec *iov, int *n, char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void field(struct iovec *iov, int *n, char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	iov[*n].iov_base = buf;
	iov[*n].iov_len = (size_t)r < len ? (size_t)r : len - 1;
	(*n)++;
}

/* One journal entry; false when the journal did not take it. */
static bool journal_write(enum log_level level, const char *subsys, const struct log_fields *f,
			  const char *file, int line, const char *text)
{
	char msg[2200], prio[16], sub[96], cfile[256], cline[32], pool[96], proc[96], pid[32];
	static char ident[] = "SYSLOG_IDENTIFIER=mpsupd";
	struct iovec iov[10];
	int n = 0;

	field(iov, &n, msg, sizeof(msg), "MESSAGE=%s: %s", subsys, text);
	field(iov, &n, prio, sizeof(prio), "PRIORITY=%d", level_priorities[level]);
	iov[n++] = (struct iovec){ ident, sizeof(ident) - 1 };
	field(iov, &n, sub, sizeof(sub), "MPSUP_SUBSYS=%s", subsys);
	field(iov, &n, cfile, sizeof(cfile), "CODE_FILE=%s", file);
	field(iov, &n, cline, sizeof(cline), "CODE_LINE=%d", line);
	if (f && f->pool)
		field(iov, &n, pool, sizeof(pool), "MPSUP_POOL=%s", f->pool);
	if (f && f->process)
		field(iov, &n, proc, sizeof(proc), "MPSUP_PROCESS=%s", f->process);
	if (f && f->pid > 0)
		field(iov, &n, pid, sizeof(pid), "MPSUP_PID=%ld", (long)f->pid);
	return sd_journal_sendv(iov, n) >= 0;
}

static void log_vmsg(enum log_level level, const char *subsys, const struct log_fields *f,
		     const char *file, int line, const char *fmt, va_list ap)
{
	char buf[2048];
	int saved = errno;

	if (level > cur_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (!journal || !journal_write(level, subsys, f, file, line, buf))
		fprintf(stderr, "mpsupd: %s %s: %s\n", level_names[level], subsys, buf);
	errno = saved;
}

void log_msg(enum log_level level, const char *subsys, const char *file, int line, const char *fmt,
	     ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, subsys, NULL, file, line, fmt, ap);
	va_end(ap);
}

void log_msg_fields(enum log_level level, const char *subsys, const struct log_fields *f,
		    const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, subsys, f, file, line, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *subsys, int err, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err)
		log_msg(LOG_LVL_ERROR, subsys, file, line, "%s: %s", msg, strerror(err));
	else
		log_msg(LOG_LVL_ERROR, subsys, file, line, "%s", msg);
	exit(EXIT_FAILURE);
}

bool log_allowed(struct log_ratelimit *rl)
{
	double now = now_mono();

	if (now - rl->start >= 1.0) {
		if (rl->suppressed)
			log_warn("log", "%u similar messages were left out (more than %d a second)",
				 rl->suppressed, LOG_BURST);
		rl->start = now;
		rl->n = 0;
		rl->suppressed = 0;
	}
	if (rl->n < LOG_BURST) {
		rl->n++;
		return true;
	}
	rl->suppressed++;
	return false;
}
