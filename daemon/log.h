/* Daemon logging: levels and a subsystem tag; stderr or the journal. */
#ifndef MPSUPD_LOG_H
#define MPSUPD_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error|warning|info|debug"; -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *subsys, const char *file, int line,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define log_error(sub, ...) log_msg(LOG_LVL_ERROR, sub, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(sub, ...) log_msg(LOG_LVL_WARNING, sub, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(sub, ...) log_msg(LOG_LVL_INFO, sub, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOG_LVL_DEBUG, sub, __FILE__, __LINE__, __VA_ARGS__)

#endif
