/*
 * Daemon logging: levels and a subsystem tag. Lines go to stderr
 * ("mpsupd: LEVEL subsys: message"), or, when stderr is connected to the
 * journal ($JOURNAL_STREAM names it), to the journal with structured
 * fields: PRIORITY, MPSUP_SUBSYS, CODE_FILE, CODE_LINE and, from the
 * log_*_f() variants, MPSUP_POOL, MPSUP_PROCESS and MPSUP_PID.
 */
#ifndef MPSUPD_LOG_H
#define MPSUPD_LOG_H

#include <errno.h>
#include <stdbool.h>
#include <sys/types.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* What a message is about; NULL / 0 members are left out. The message text
 * should still name the process: stderr lines do not show these fields. */
struct log_fields {
	const char *pool;
	const char *process;
	pid_t pid;
};

/* Set the level and pick stderr or the journal. */
void log_init(enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Are messages going to the journal? */
bool log_to_journal(void);
void log_msg(enum log_level level, const char *subsys, const char *file, int line, const char *fmt,
	     ...) __attribute__((format(printf, 5, 6)));
void log_msg_fields(enum log_level level, const char *subsys, const struct log_fields *f,
		    const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Start-up failures only (never for a client's input): log and exit(1).
 * fatal() adds strerror(errno), fatalx() does not. */
_Noreturn void log_fatal(const char *subsys, int err, const char *file, int line, const char *fmt,
			 ...) __attribute__((format(printf, 5, 6)));
#define fatal(sub, ...) log_fatal(sub, errno, __FILE__, __LINE__, __VA_ARGS__)
#define fatalx(sub, ...) log_fatal(sub, 0, __FILE__, __LINE__, __VA_ARGS__)

/*
 * A rate limit for messages a peer can trigger at will (refused
 * connections, denied requests): at most LOG_BURST a second, then one line
 * saying how many were left out. Zero-initialized.
 */
#define LOG_BURST 20
struct log_ratelimit {
	double start;        /* monotonic start of the current second */
	unsigned n;          /* messages in it */
	unsigned suppressed; /* left out since the last one logged */
};
/* May a message go out now? */
bool log_allowed(struct log_ratelimit *rl);

#define log_error(sub, ...) log_msg(LOG_LVL_ERROR, sub, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(sub, ...) log_msg(LOG_LVL_WARNING, sub, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(sub, ...) log_msg(LOG_LVL_INFO, sub, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOG_LVL_DEBUG, sub, __FILE__, __LINE__, __VA_ARGS__)

/* With fields: log_info_f("proc", &(struct log_fields){ pool, name, pid }, "..."). */
#define log_error_f(sub, f, ...) \
	log_msg_fields(LOG_LVL_ERROR, sub, f, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn_f(sub, f, ...) \
	log_msg_fields(LOG_LVL_WARNING, sub, f, __FILE__, __LINE__, __VA_ARGS__)
#define log_info_f(sub, f, ...) \
	log_msg_fields(LOG_LVL_INFO, sub, f, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug_f(sub, f, ...) \
	log_msg_fields(LOG_LVL_DEBUG, sub, f, __FILE__, __LINE__, __VA_ARGS__)

#endif
