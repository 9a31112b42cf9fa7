/*
 * Configuration parsing with libinih: [mpsupd], [access] and [pool:NAME]
 * sections, include globs, and the same key parser for pool.add requests.
 * Every error names the file, the line and the key.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "conf.h"

#define INCLUDE_DEPTH_MAX 8
#define POOL_PROCESSES_MAX 100000
#define CONF_LINE_MAX (64 * 1024)

struct parse_state {
	struct conf *conf;
	const char *file;
	char err[CONF_ERR_MAX];
	bool err_done;      /* err already carries file and line */
	int depth;
	char section[128];  /* the section of the previous key */
	struct pool_conf *pool; /* the pool being filled */
};

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{ "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "ILL", SIGILL },
	{ "TRAP", SIGTRAP }, { "ABRT", SIGABRT }, { "BUS", SIGBUS },   { "FPE", SIGFPE },
	{ "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
	{ "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CHLD", SIGCHLD },
	{ "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
	{ "TTOU", SIGTTOU }, { "URG", SIGURG },   { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
	{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
	{ "PWR", SIGPWR },   { "SYS", SIGSYS },
};

static int seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write a message into err; returns -EINVAL for "return seterr(...)". */
static int seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

bool name_valid(const char *s, bool with_colon)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		unsigned char ch = (unsigned char)s[n];
		if (!(isalnum(ch) || ch == '_' || ch == '.' || ch == '-' || (with_colon && ch == ':')))
			return false;
		if (n >= 64)
			return false;
	}
	return n >= 1;
}

int conf_parse_duration(const char *s, double *ret)
{
	char *end;
	double v, mult = 1;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || v < 0)
		return -EINVAL;
	while (*end == ' ')
		end++;
	if (strcmp(end, "ms") == 0)
		mult = 0.001;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mult = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mult = 60;
	else if (strcmp(end, "h") == 0)
		mult = 3600;
	else
		return -EINVAL;
	v *= mult;
	if (v > 1e9)
		return -ERANGE;
	*ret = v;
	return 0;
}

int conf_parse_signal(const char *s, int *ret)
{
	char *end;
	long n;

	if (!s || !*s)
		return -EINVAL;
	if (isdigit((unsigned char)s[0])) {
		errno = 0;
		n = strtol(s, &end, 10);
		if (*end || errno || n < 1 || n >= NSIG)
			return -EINVAL;
		*ret = (int)n;
		return 0;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcasecmp(s, signals[i].name) == 0) {
			*ret = signals[i].sig;
			return 0;
		}
	return -EINVAL;
}

const char *conf_signal_name(int sig)
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return NULL;
}

/* An unsigned integer within [min, max]. */
static int parse_uint(const char *s, unsigned long long min, unsigned long long max,
		      unsigned long long *ret)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end || errno)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

/* A size with an optional K/M/G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		mult = 1024, end++;
	else if (*end == 'M')
		mult = 1024 * 1024, end++;
	else if (*end == 'G')
		mult = 1024ULL * 1024 * 1024, end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*ret = v * mult;
	return 0;
}

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_mode(const char *s, mode_t *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 8);
	if (end == s || *end || errno || v < 0 || v > 07777)
		return -EINVAL;
	*ret = (mode_t)v;
	return 0;
}

char **conf_strv_free(char **v)
{
	if (!v)
		return NULL;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
	return NULL;
}

static char **strv_dup(char *const *v)
{
	size_t n = 0;
	char **r;

	if (!v)
		return NULL;
	while (v[n])
		n++;
	r = calloc(n + 1, sizeof(*r));
	if (!r)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(r[i] = strdup(v[i]))) {
			conf_strv_free(r);
			return NULL;
		}
	return r;
}

int conf_split_words(const char *s, char ***ret, char *err, size_t errlen)
{
	size_t cap = 8, n = 0, len = strlen(s);
	char **v = calloc(cap, sizeof(*v));
	char *word = malloc(len + 1);
	int r = -ENOMEM;

	if (!v || !word)
		goto fail;
	for (const char *p = s; *p;) {
		size_t wl = 0;
		char quote = 0;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		while (*p && (quote || (*p != ' ' && *p != '\t'))) {
			if (quote == '\'') {
				if (*p == '\'')
					quote = 0;
				else
					word[wl++] = *p;
				p++;
			} else if (*p == '\\' && p[1] && quote != '\'') {
				/* In double quotes only \" \\ \$ \` are escapes, as in sh. */
				if (quote == '"' && !strchr("\"\\$`", p[1]))
					word[wl++] = '\\';
				word[wl++] = p[1];
				p += 2;
			} else if (quote == '"') {
				if (*p == '"')
					quote = 0;
				else
					word[wl++] = *p;
				p++;
			} else if (*p == '"' || *p == '\'') {
				quote = *p++;
			} else {
				word[wl++] = *p++;
			}
		}
		if (quote) {
			r = seterr(err, errlen, "unterminated %c quote", quote);
			goto fail;
		}
		if (n + 1 >= cap) {
			char **nv = realloc(v, cap * 2 * sizeof(*v));
			if (!nv)
				goto fail;
			v = nv;
			cap *= 2;
		}
		if (!(v[n] = strndup(word, wl)))
			goto fail;
		v[++n] = NULL;
	}
	free(word);
	*ret = v;
	return 0;
fail:
	free(word);
	conf_strv_free(v);
	return r;
}

static void output_defaults(struct output_conf *o)
{
	memset(o, 0, sizeof(*o));
	o->kind = OUTPUT_CAPTURE;
	o->max_bytes = 50 * 1024 * 1024;
	o->backups = 5;
}

struct pool_conf *pool_conf_new(const char *name)
{
	struct pool_conf *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (!(p->name = strdup(name))) {
		free(p);
		return NULL;
	}
	p->processes = 1;
	p->mode = POOL_MODE_SERVICE;
	p->restart = RESTART_ALWAYS;
	p->exit_codes[0] = 1; /* exit status 0 is expected */
	p->start_secs = 1;
	p->start_retries = 3;
	p->backoff_max = 30;
	p->stop_signal = SIGTERM;
	p->stop_timeout = 10;
	p->umask = 022;
	output_defaults(&p->out);
	output_defaults(&p->err);
	p->autostart = true;
	p->priority = 100;
	p->task_timeout = 0;
	p->task_retries = 0;
	p->max_pending = 100000;
	return p;
}

static void output_free(struct output_conf *o)
{
	free(o->path);
}

struct pool_conf *pool_conf_free(struct pool_conf *p)
{
	if (!p)
		return NULL;
	free(p->name);
	free(p->command);
	free(p->user);
	free(p->group);
	free(p->directory);
	conf_strv_free(p->environment);
	output_free(&p->out);
	output_free(&p->err);
	free(p->file);
	free(p);
	return NULL;
}

static int dupstr(char **dst, const char *src)
{
	char *s = NULL;

	if (src && !(s = strdup(src)))
		return -ENOMEM;
	*dst = s;
	return 0;
}

struct pool_conf *pool_conf_dup(const struct pool_conf *p)
{
	struct pool_conf *q = malloc(sizeof(*q));

	if (!q)
		return NULL;
	*q = *p;
	q->next = NULL;
	q->name = q->command = q->user = q->group = q->directory = q->file = NULL;
	q->out.path = q->err.path = NULL;
	q->environment = NULL;
	if (dupstr(&q->name, p->name) || dupstr(&q->command, p->command) ||
	    dupstr(&q->user, p->user) || dupstr(&q->group, p->group) ||
	    dupstr(&q->directory, p->directory) || dupstr(&q->file, p->file) ||
	    dupstr(&q->out.path, p->out.path) || dupstr(&q->err.path, p->err.path) ||
	    (p->environment && !(q->environment = strv_dup(p->environment))))
		return pool_conf_free(q);
	return q;
}

static int set_string(char **dst, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_output(struct output_conf *o, const char *value, char *err, size_t errlen)
{
	enum output_kind kind;

	if (strcmp(value, "null") == 0)
		kind = OUTPUT_NULL;
	else if (strcmp(value, "inherit") == 0)
		kind = OUTPUT_INHERIT;
	else if (strcmp(value, "journal") == 0)
		kind = OUTPUT_JOURNAL;
	else if (strcmp(value, "capture") == 0)
		kind = OUTPUT_CAPTURE;
	else if (strncmp(value, "file:", 5) == 0) {
		if (value[5] != '/')
			return seterr(err, errlen, "file: needs an absolute path");
		kind = OUTPUT_FILE;
		if (set_string(&o->path, value + 5) < 0)
			return -ENOMEM;
	} else
		return seterr(err, errlen,
			      "expected capture, null, inherit, journal or file:/path, not '%s'", value);
	if (kind != OUTPUT_FILE) { /* a path set by an earlier key no longer applies */
		free(o->path);
		o->path = NULL;
	}
	o->kind = kind;
	return 0;
}

/* exit_codes: numbers 0..255 separated by commas or spaces. */
static int parse_exit_codes(uint8_t bits[32], const char *value, char *err, size_t errlen)
{
	uint8_t b[32] = { 0 };
	const char *p = value;

	while (*p) {
		char *end;
		long v;

		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		errno = 0;
		v = strtol(p, &end, 10);
		if (end == p || errno || v < 0 || v > 255 || (*end && *end != ' ' && *end != ','))
			return seterr(err, errlen, "expected exit statuses 0..255, not '%s'", value);
		b[v / 8] |= (uint8_t)(1u << (v % 8));
		p = end;
	}
	memcpy(bits, b, 32);
	return 0;
}

static int check_user(const char *value, char *err, size_t errlen)
{
	unsigned long long id;

	if (parse_uint(value, 0, UINT32_MAX - 1, &id) == 0)
		return 0;
	if (!getpwnam(value))
		return seterr(err, errlen, "no such user '%s'", value);
	return 0;
}

static int check_group(const char *value, char *err, size_t errlen)
{
	unsigned long long id;

	if (parse_uint(value, 0, UINT32_MAX - 1, &id) == 0)
		return 0;
	if (!getgrnam(value))
		return seterr(err, errlen, "no such group '%s'", value);
	return 0;
}

int pool_conf_set(struct pool_conf *p, const char *key, const char *value, char *err,
		  size_t errlen)
{
	unsigned long long u;
	int r;

#define BAD(...) return seterr(err, errlen, __VA_ARGS__)
	if (strcmp(key, "command") == 0) {
		char **argv;
		if (conf_split_words(value, &argv, err, errlen) < 0)
			return -EINVAL;
		r = argv[0] ? 0 : -EINVAL;
		conf_strv_free(argv);
		if (r < 0)
			BAD("empty command");
		return set_string(&p->command, value);
	} else if (strcmp(key, "processes") == 0) {
		if (parse_uint(value, 0, POOL_PROCESSES_MAX, &u) < 0)
			BAD("expected a number of processes 0..%d, not '%s'", POOL_PROCESSES_MAX, value);
		p->processes = (unsigned)u;
	} else if (strcmp(key, "mode") == 0) {
		if (strcmp(value, "service") == 0)
			p->mode = POOL_MODE_SERVICE;
		else if (strcmp(value, "task") == 0)
			p->mode = POOL_MODE_TASK;
		else
			BAD("expected service or task, not '%s'", value);
	} else if (strcmp(key, "restart") == 0) {
		if (strcmp(value, "always") == 0)
			p->restart = RESTART_ALWAYS;
		else if (strcmp(value, "on-failure") == 0)
			p->restart = RESTART_ON_FAILURE;
		else if (strcmp(value, "never") == 0)
			p->restart = RESTART_NEVER;
		else
			BAD("expected always, on-failure or never, not '%s'", value);
	} else if (strcmp(key, "exit_codes") == 0) {
		return parse_exit_codes(p->exit_codes, value, err, errlen);
	} else if (strcmp(key, "start_secs") == 0) {
		if (conf_parse_duration(value, &p->start_secs) < 0)
			BAD("expected a duration in seconds, not '%s'", value);
	} else if (strcmp(key, "start_retries") == 0) {
		if (parse_uint(value, 0, 1000000, &u) < 0)
			BAD("expected a number 0..1000000, not '%s'", value);
		p->start_retries = (unsigned)u;
	} else if (strcmp(key, "backoff_max") == 0) {
		if (conf_parse_duration(value, &p->backoff_max) < 0)
			BAD("expected a duration in seconds, not '%s'", value);
	} else if (strcmp(key, "stop_signal") == 0) {
		if (conf_parse_signal(value, &p->stop_signal) < 0)
			BAD("unknown signal '%s'", value);
	} else if (strcmp(key, "stop_timeout") == 0) {
		if (conf_parse_duration(value, &p->stop_timeout) < 0)
			BAD("expected a duration in seconds, not '%s'", value);
	} else if (strcmp(key, "user") == 0) {
		if (check_user(value, err, errlen) < 0)
			return -EINVAL;
		return set_string(&p->user, value);
	} else if (strcmp(key, "group") == 0) {
		if (check_group(value, err, errlen) < 0)
			return -EINVAL;
		return set_string(&p->group, value);
	} else if (strcmp(key, "directory") == 0) {
		if (value[0] != '/')
			BAD("directory must be an absolute path");
		return set_string(&p->directory, value);
	} else if (strcmp(key, "umask") == 0) {
		if (parse_mode(value, &p->umask) < 0 || p->umask > 0777)
			BAD("expected an octal umask, not '%s'", value);
	} else if (strcmp(key, "environment") == 0) {
		char **env;
		if (conf_split_words(value, &env, err, errlen) < 0)
			return -EINVAL;
		for (char **e = env; *e; e++) {
			char *eq = strchr(*e, '=');
			if (!eq || eq == *e) {
				seterr(err, errlen, "expected KEY=VALUE, not '%s'", *e);
				conf_strv_free(env);
				return -EINVAL;
			}
		}
		/* A later KEY= overrides an earlier one (as in sh or systemd):
		 * keep one entry per key, or the child would see the first. */
		size_t n = 0;
		for (size_t i = 0; env[i]; i++) {
			size_t kl = (size_t)(strchr(env[i], '=') - env[i]) + 1;
			bool later = false;
			for (size_t j = i + 1; env[j] && !later; j++)
				later = strncmp(env[i], env[j], kl) == 0;
			if (later)
				free(env[i]);
			else
				env[n++] = env[i];
		}
		env[n] = NULL;
		conf_strv_free(p->environment);
		p->environment = env;
	} else if (strcmp(key, "stdout") == 0) {
		return parse_output(&p->out, value, err, errlen);
	} else if (strcmp(key, "stderr") == 0) {
		return parse_output(&p->err, value, err, errlen);
	} else if (strcmp(key, "stdout_max_bytes") == 0 || strcmp(key, "stderr_max_bytes") == 0) {
		struct output_conf *o = key[3] == 'o' ? &p->out : &p->err;
		if (parse_size(value, &o->max_bytes) < 0)
			BAD("expected a size (like 10M), not '%s'", value);
	} else if (strcmp(key, "stdout_backups") == 0 || strcmp(key, "stderr_backups") == 0) {
		struct output_conf *o = key[3] == 'o' ? &p->out : &p->err;
		if (parse_uint(value, 0, 1000, &u) < 0)
			BAD("expected a number 0..1000, not '%s'", value);
		o->backups = (unsigned)u;
	} else if (strcmp(key, "autostart") == 0) {
		if (parse_bool(value, &p->autostart) < 0)
			BAD("expected yes or no, not '%s'", value);
	} else if (strcmp(key, "priority") == 0) {
		char *end;
		long v;
		errno = 0;
		v = strtol(value, &end, 10);
		if (end == value || *end || errno || v < -100000 || v > 100000)
			BAD("expected an integer priority, not '%s'", value);
		p->priority = (int)v;
	} else if (strcmp(key, "task_timeout") == 0) {
		if (conf_parse_duration(value, &p->task_timeout) < 0)
			BAD("expected a duration in seconds, not '%s'", value);
	} else if (strcmp(key, "task_retries") == 0) {
		if (parse_uint(value, 0, 100, &u) < 0)
			BAD("expected a number 0..100, not '%s'", value);
		p->task_retries = (unsigned)u;
	} else if (strcmp(key, "max_pending") == 0) {
		if (parse_uint(value, 1, 10000000, &u) < 0)
			BAD("expected a number 1..10000000, not '%s'", value);
		p->max_pending = (unsigned)u;
	} else {
		BAD("unknown key");
	}
#undef BAD
	return 0;
}

int pool_conf_check(const struct pool_conf *p, char *err, size_t errlen)
{
	if (!p->command)
		return seterr(err, errlen, "pool %s: command is missing", p->name);
	if (p->stop_timeout <= 0)
		return seterr(err, errlen, "pool %s: stop_timeout must be above 0", p->name);
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool strv_eq(char **a, char **b)
{
	if (!a || !b)
		return (!a || !*a) && (!b || !*b);
	for (; *a && *b; a++, b++)
		if (strcmp(*a, *b))
			return false;
	return !*a && !*b;
}

static bool output_eq(const struct output_conf *a, const struct output_conf *b)
{
	return a->kind == b->kind && str_eq(a->path, b->path) && a->max_bytes == b->max_bytes &&
	       a->backups == b->backups;
}

bool pool_conf_differs(const struct pool_conf *a, const struct pool_conf *b)
{
	return !(str_eq(a->command, b->command) && a->mode == b->mode &&
		 a->restart == b->restart && memcmp(a->exit_codes, b->exit_codes, 32) == 0 &&
		 a->start_secs == b->start_secs && a->start_retries == b->start_retries &&
		 a->backoff_max == b->backoff_max && a->stop_signal == b->stop_signal &&
		 a->stop_timeout == b->stop_timeout && str_eq(a->user, b->user) &&
		 str_eq(a->group, b->group) && str_eq(a->directory, b->directory) &&
		 a->umask == b->umask && strv_eq(a->environment, b->environment) &&
		 output_eq(&a->out, &b->out) && output_eq(&a->err, &b->err) &&
		 a->autostart == b->autostart && a->priority == b->priority &&
		 a->task_timeout == b->task_timeout && a->task_retries == b->task_retries &&
		 a->max_pending == b->max_pending);
}

/* Append one word, quoted (so that conf_split_words gives it back) or not. */
static int append_word(char **buf, size_t *len, size_t *cap, const char *w, bool quote)
{
	size_t need = *len + 2 * strlen(w) + 4;
	char *b = *buf;

	if (need > *cap) {
		size_t ncap = need * 2;
		if (!(b = realloc(*buf, ncap)))
			return -ENOMEM;
		*buf = b;
		*cap = ncap;
	}
	if (*len)
		b[(*len)++] = ' ';
	if (quote)
		b[(*len)++] = '"';
	for (; *w; w++) {
		if (quote && strchr("\"\\$`", *w))
			b[(*len)++] = '\\';
		b[(*len)++] = *w;
	}
	if (quote)
		b[(*len)++] = '"';
	b[*len] = '\0';
	return 0;
}

/* The text form of one JSON value of a pool.add request. */
static int json_value_text(const char *key, json_t *v, char **ret, char *err, size_t errlen)
{
	char *s = NULL;
	size_t len = 0, cap = 0;
	int r = 0;

	switch (json_typeof(v)) {
	case JSON_STRING:
		s = strdup(json_string_value(v));
		break;
	case JSON_INTEGER:
		r = asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		r = asprintf(&s, "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		s = strdup(json_is_true(v) ? "yes" : "no");
		break;
	case JSON_ARRAY: {
		/* command or exit_codes as a list; environment as ["K=V", ...] */
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			if (json_is_integer(e) && strcmp(key, "exit_codes") == 0) {
				char num[24];
				snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(e));
				r = append_word(&s, &len, &cap, num, false);
			} else if (json_is_string(e))
				r = append_word(&s, &len, &cap, json_string_value(e), true);
			else {
				free(s);
				return seterr(err, errlen, "%s: list items must be strings", key);
			}
			if (r < 0) {
				free(s);
				return -ENOMEM;
			}
		}
		if (!s)
			s = strdup("");
		break;
	}
	case JSON_OBJECT: {
		const char *k;
		json_t *e;
		if (strcmp(key, "environment") != 0)
			return seterr(err, errlen, "%s: an object is not allowed here", key);
		json_object_foreach(v, k, e) {
			char *kv;
			if (!json_is_string(e)) {
				free(s);
				return seterr(err, errlen, "environment: values must be strings");
			}
			if (asprintf(&kv, "%s=%s", k, json_string_value(e)) < 0) {
				free(s);
				return -ENOMEM;
			}
			r = append_word(&s, &len, &cap, kv, true);
			free(kv);
			if (r < 0) {
				free(s);
				return -ENOMEM;
			}
		}
		if (!s)
			s = strdup("");
		break;
	}
	default:
		return seterr(err, errlen, "%s: null is not a value", key);
	}
	if (r < 0 || !s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int pool_conf_from_json(json_t *obj, struct pool_conf **ret, char *err, size_t errlen)
{
	json_t *name = json_object_get(obj, "pool");
	struct pool_conf *p;
	const char *key;
	json_t *v;

	if (!json_is_string(name))
		return seterr(err, errlen, "missing string member \"pool\"");
	if (!name_valid(json_string_value(name), false))
		return seterr(err, errlen, "invalid pool name (expected [A-Za-z0-9_.-]{1,64})");
	if (!(p = pool_conf_new(json_string_value(name))))
		return -ENOMEM;
	json_object_foreach(obj, key, v) {
		char *text = NULL, sub[CONF_ERR_MAX];
		int r;

		/* null = the default, so pool.list output is valid pool.add input */
		if (strcmp(key, "pool") == 0 || json_is_null(v))
			continue;
		if ((r = json_value_text(key, v, &text, err, errlen)) < 0) {
			pool_conf_free(p);
			return r;
		}
		r = pool_conf_set(p, key, text, sub, sizeof(sub));
		free(text);
		if (r < 0) {
			seterr(err, errlen, "%s: %s", key, sub);
			pool_conf_free(p);
			return r;
		}
	}
	if (pool_conf_check(p, err, errlen) < 0) {
		pool_conf_free(p);
		return -EINVAL;
	}
	*ret = p;
	return 0;
}

static json_t *output_to_json(const struct output_conf *o)
{
	static const char *const kinds[] = { "null", "inherit", "file", "journal", "capture" };
	char *s;
	json_t *j;

	if (o->kind != OUTPUT_FILE)
		return json_string(kinds[o->kind]);
	if (asprintf(&s, "file:%s", o->path) < 0)
		return NULL;
	j = json_string(s);
	free(s);
	return j;
}

json_t *pool_conf_to_json(const struct pool_conf *p)
{
	static const char *const restarts[] = { "always", "on-failure", "never" };
	json_t *codes = json_array(), *env = json_object();
	const char *sig = conf_signal_name(p->stop_signal);
	char umask_text[8];

	snprintf(umask_text, sizeof(umask_text), "%04o", (unsigned)p->umask);

	for (int i = 0; i < 256; i++)
		if (p->exit_codes[i / 8] & (1u << (i % 8)))
			json_array_append_new(codes, json_integer(i));
	for (char **e = p->environment; e && *e; e++) {
		char *eq = strchr(*e, '=');
		char *k = strndup(*e, (size_t)(eq - *e));
		if (k)
			json_object_set_new(env, k, json_string(eq + 1));
		free(k);
	}
	/* every key pool_conf_set() knows, so pool.list output is pool.add input */
	return json_pack("{s:s, s:s?, s:I, s:s, s:s, s:o, s:f, s:I, s:f, s:o, s:f, s:s?, s:s?,"
			 " s:s?, s:s, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:b, s:i, s:f, s:I, s:I}",
			 "pool", p->name, "command", p->command, "processes", (json_int_t)p->processes,
			 "mode", p->mode == POOL_MODE_TASK ? "task" : "service",
			 "restart", restarts[p->restart], "exit_codes", codes,
			 "start_secs", p->start_secs, "start_retries", (json_int_t)p->start_retries,
			 "backoff_max", p->backoff_max, "stop_signal",
			 sig ? json_string(sig) : json_integer(p->stop_signal), /* SIGRTMIN+n */
			 "stop_timeout", p->stop_timeout, "user", p->user, "group", p->group,
			 "directory", p->directory, "umask", umask_text,
			 "environment", env, "stdout", output_to_json(&p->out),
			 "stderr", output_to_json(&p->err),
			 "stdout_max_bytes", (json_int_t)p->out.max_bytes,
			 "stdout_backups", (json_int_t)p->out.backups,
			 "stderr_max_bytes", (json_int_t)p->err.max_bytes,
			 "stderr_backups", (json_int_t)p->err.backups, "autostart", p->autostart,
			 "priority", p->priority, "task_timeout", p->task_timeout,
			 "task_retries", (json_int_t)p->task_retries,
			 "max_pending", (json_int_t)p->max_pending);
}

struct pool_conf *conf_find_pool(const struct conf *c, const char *name)
{
	for (struct pool_conf *p = c->pools; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

/* A quarter of the machine's memory (max_memory's default; 0 = unknown,
 * no limit). */
static uint64_t default_max_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size / 4 : 0;
}

void conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0600;
	c->log_level = 2; /* info */
	c->state_sync = STATE_SYNC_EVERYSEC;
	c->state_log_max_bytes = 64 * 1024 * 1024;
	c->state_dir_check = true;
	c->max_request_bytes = 1024 * 1024;
	c->max_clients = 1024;
	c->max_clients_per_uid = 0; /* non-admin peers; 0 = only max_clients applies */
	c->max_json_depth = 64;
	c->max_output_bytes = 16 * 1024 * 1024;
	c->max_output_total = 256 * 1024 * 1024;
	c->max_memory = default_max_memory();
	c->shutdown_timeout = 30;
	c->max_objects = 1000000;
	c->max_object_items = 10000000;
	c->max_queue_items = 1000000;
	c->max_waiters = 1024;
	c->max_oneshots = 1000;
	c->max_processes = 16384;
	c->max_subscribers = 64;
	c->log_ring_lines = 200;
	c->task_results_max = 10000;
	c->task_results_age = 3600;
}

/* Resolve "root @wheel 1000 *" into an access list. */
static int parse_access(struct access_list *a, const char *value, char *err, size_t errlen)
{
	char **words;
	int r = 0;

	if (conf_split_words(value, &words, err, errlen) < 0)
		return -EINVAL;
	free(a->uids);
	free(a->gids);
	memset(a, 0, sizeof(*a));
	a->set = true;
	for (char **w = words; *w && r == 0; w++) {
		unsigned long long id;
		if (strcmp(*w, "*") == 0) {
			a->any = true;
		} else if ((*w)[0] == '@') {
			struct group *g = NULL;
			gid_t gid;
			if (parse_uint(*w + 1, 0, UINT32_MAX - 1, &id) == 0)
				gid = (gid_t)id;
			else if ((g = getgrnam(*w + 1)))
				gid = g->gr_gid;
			else {
				r = seterr(err, errlen, "no such group '%s'", *w + 1);
				break;
			}
			gid_t *n = realloc(a->gids, (a->n_gids + 1) * sizeof(*n));
			if (!n) {
				r = -ENOMEM;
				break;
			}
			a->gids = n;
			a->gids[a->n_gids++] = gid;
		} else {
			struct passwd *pw;
			uid_t uid;
			if (parse_uint(*w, 0, UINT32_MAX - 1, &id) == 0)
				uid = (uid_t)id;
			else if ((pw = getpwnam(*w)))
				uid = pw->pw_uid;
			else {
				r = seterr(err, errlen, "no such user '%s'", *w);
				break;
			}
			uid_t *n = realloc(a->uids, (a->n_uids + 1) * sizeof(*n));
			if (!n) {
				r = -ENOMEM;
				break;
			}
			a->uids = n;
			a->uids[a->n_uids++] = uid;
		}
	}
	conf_strv_free(words);
	return r;
}

static int parse_file(struct parse_state *st, const char *path);

/* An include glob, relative to the including file's directory. */
static int do_include(struct parse_state *st, const char *pattern)
{
	char full[PATH_MAX];
	glob_t g;
	int r;

	if (pattern[0] != '/') {
		const char *slash = strrchr(st->file, '/');
		int dl = slash ? (int)(slash - st->file) : 1;
		snprintf(full, sizeof(full), "%.*s/%s", dl, slash ? st->file : ".", pattern);
	} else
		snprintf(full, sizeof(full), "%s", pattern);
	if (st->depth >= INCLUDE_DEPTH_MAX)
		return seterr(st->err, sizeof(st->err), "include: nested deeper than %d files",
			      INCLUDE_DEPTH_MAX);
	r = glob(full, GLOB_ERR, NULL, &g);
	if (r == GLOB_NOMATCH)
		return 0;
	if (r != 0)
		return seterr(st->err, sizeof(st->err), "include: cannot read '%s'", full);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *saved = st->file;
		char saved_section[sizeof(st->section)];
		struct pool_conf *saved_pool = st->pool;

		memcpy(saved_section, st->section, sizeof(saved_section));
		st->depth++;
		st->section[0] = '\0';
		r = parse_file(st, g.gl_pathv[i]);
		st->depth--;
		st->file = saved;
		st->pool = saved_pool;
		memcpy(st->section, saved_section, sizeof(saved_section));
		if (r < 0) {
			globfree(&g);
			return r;
		}
	}
	globfree(&g);
	return 0;
}

static int main_key(struct parse_state *st, const char *key, const char *value)
{
	struct conf *c = st->conf;
	char *err = st->err;
	size_t errlen = sizeof(st->err);
	unsigned long long u;
	uint64_t sz;

#define UINT_KEY(k, field, lo, hi)                                                          \
	if (strcmp(key, k) == 0) {                                                          \
		if (parse_uint(value, lo, hi, &u) < 0)                                      \
			return seterr(err, errlen, "expected a number %llu..%llu, not '%s'", \
				      (unsigned long long)(lo), (unsigned long long)(hi), value); \
		c->field = (typeof(c->field))u;                                             \
		return 0;                                                                   \
	}
	UINT_KEY("max_clients", max_clients, 1, 1000000)
	UINT_KEY("max_clients_per_uid", max_clients_per_uid, 0, 1000000)
	UINT_KEY("max_json_depth", max_json_depth, 2, 1000)
	UINT_KEY("max_objects", max_objects, 1, 100000000)
	UINT_KEY("max_object_items", max_object_items, 1, 1000000000)
	UINT_KEY("max_queue_items", max_queue_items, 1, 1000000000)
	UINT_KEY("max_waiters", max_waiters, 1, 1000000)
	UINT_KEY("max_oneshots", max_oneshots, 1, 10000000)
	UINT_KEY("max_processes", max_processes, 1, 1000000)
	UINT_KEY("max_subscribers", max_subscribers, 1, 100000)
	UINT_KEY("log_ring_lines", log_ring_lines, 0, 1000000)
	UINT_KEY("task_results_max", task_results_max, 1, 100000000)
#undef UINT_KEY
	if (strcmp(key, "socket") == 0) {
		if (value[0] != '/')
			return seterr(err, errlen, "socket must be an absolute path");
		return set_string(&c->socket, value);
	} else if (strcmp(key, "runtime_dir") == 0) {
		if (value[0] != '/')
			return seterr(err, errlen, "runtime_dir must be an absolute path");
		return set_string(&c->runtime_dir, value);
	} else if (strcmp(key, "socket_mode") == 0) {
		if (parse_mode(value, &c->socket_mode) < 0 || c->socket_mode > 0777)
			return seterr(err, errlen, "expected an octal mode, not '%s'", value);
	} else if (strcmp(key, "socket_group") == 0) {
		if (check_group(value, err, errlen) < 0)
			return -EINVAL;
		return set_string(&c->socket_group, value);
	} else if (strcmp(key, "log_level") == 0) {
		static const char *const lv[] = { "error", "warning", "info", "debug" };
		for (int i = 0; i < 4; i++)
			if (strcmp(value, lv[i]) == 0) {
				c->log_level = i;
				return 0;
			}
		return seterr(err, errlen, "expected error, warning, info or debug, not '%s'", value);
	} else if (strcmp(key, "state_file") == 0) {
		if (value[0] != '/')
			return seterr(err, errlen, "state_file must be an absolute path");
		return set_string(&c->state_file, value);
	} else if (strcmp(key, "state_sync") == 0) {
		if (strcmp(value, "always") == 0)
			c->state_sync = STATE_SYNC_ALWAYS;
		else if (strcmp(value, "everysec") == 0)
			c->state_sync = STATE_SYNC_EVERYSEC;
		else if (strcmp(value, "no") == 0)
			c->state_sync = STATE_SYNC_NO;
		else
			return seterr(err, errlen, "expected always, everysec or no, not '%s'", value);
	} else if (strcmp(key, "state_log_max_bytes") == 0) {
		if (parse_size(value, &c->state_log_max_bytes) < 0)
			return seterr(err, errlen, "expected a size (like 64M), not '%s'", value);
	} else if (strcmp(key, "state_dir_check") == 0) {
		if (parse_bool(value, &c->state_dir_check) < 0)
			return seterr(err, errlen, "expected yes or no, not '%s'", value);
	} else if (strcmp(key, "max_request_bytes") == 0) {
		if (parse_size(value, &sz) < 0 || sz < 1024 || sz > 256 * 1024 * 1024)
			return seterr(err, errlen, "expected a size 1K..256M, not '%s'", value);
		c->max_request_bytes = (size_t)sz;
	} else if (strcmp(key, "max_output_bytes") == 0) {
		if (parse_size(value, &sz) < 0 || sz < 4096)
			return seterr(err, errlen, "expected a size of at least 4K, not '%s'", value);
		c->max_output_bytes = (size_t)sz;
	} else if (strcmp(key, "max_output_total") == 0) {
		if (parse_size(value, &sz) < 0 || sz < 64 * 1024)
			return seterr(err, errlen, "expected a size of at least 64K, not '%s'", value);
		c->max_output_total = (size_t)sz;
	} else if (strcmp(key, "max_memory") == 0) {
		if (parse_size(value, &c->max_memory) < 0)
			return seterr(err, errlen, "expected a size (like 1G, 0 = no limit), not '%s'",
				      value);
	} else if (strcmp(key, "shutdown_timeout") == 0) {
		if (conf_parse_duration(value, &c->shutdown_timeout) < 0)
			return seterr(err, errlen, "expected a duration in seconds, not '%s'", value);
	} else if (strcmp(key, "task_results_age") == 0) {
		if (conf_parse_duration(value, &c->task_results_age) < 0)
			return seterr(err, errlen, "expected a duration in seconds, not '%s'", value);
	} else if (strcmp(key, "include") == 0) {
		return do_include(st, value);
	} else
		return seterr(err, errlen, "unknown key");
	return 0;
}

/* Valid UTF-8 (what jansson accepts): every config text may end up in a
 * JSON answer (pool.list, error messages). */
static bool utf8_valid(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

/* libinih callback: returns 1 to go on, 0 on error (ini_parse gives the line). */
static int conf_ini_handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_state *st = user;
	char sub[CONF_ERR_MAX];
	bool new_section = strcmp(section, st->section) != 0;
	int r;

	if (!utf8_valid(section) || !utf8_valid(key) || !utf8_valid(value)) {
		snprintf(st->err, sizeof(st->err), "not valid UTF-8");
		return 0;
	}
	snprintf(st->section, sizeof(st->section), "%s", section);
	if (strcmp(section, "mpsupd") == 0) {
		r = main_key(st, key, value);
		if (r < 0 && !st->err_done) {
			snprintf(sub, sizeof(sub), "%s", st->err);
			snprintf(st->err, sizeof(st->err), "[mpsupd] %s: %s", key, sub);
		}
		return r < 0 ? 0 : 1;
	}
	if (strcmp(section, "access") == 0) {
		enum role role;
		if (strcmp(key, "admin") == 0)
			role = ROLE_ADMIN;
		else if (strcmp(key, "state") == 0)
			role = ROLE_STATE;
		else if (strcmp(key, "read") == 0)
			role = ROLE_READ;
		else {
			snprintf(st->err, sizeof(st->err), "[access] %s: unknown key (admin, state, read)", key);
			return 0;
		}
		if (parse_access(&st->conf->access[role], value, sub, sizeof(sub)) < 0) {
			snprintf(st->err, sizeof(st->err), "[access] %s: %s", key, sub);
			return 0;
		}
		return 1;
	}
	if (strncmp(section, "pool:", 5) == 0) {
		const char *name = section + 5;
		struct pool_conf *p = conf_find_pool(st->conf, name);

		if (new_section) {
			if (p) {
				snprintf(st->err, sizeof(st->err), "[%s]: pool defined twice", section);
				return 0;
			}
			if (!name_valid(name, false)) {
				snprintf(st->err, sizeof(st->err),
					 "[%s]: invalid pool name (expected [A-Za-z0-9_.-]{1,64})", section);
				return 0;
			}
			if (!(p = pool_conf_new(name))) {
				snprintf(st->err, sizeof(st->err), "out of memory");
				return 0;
			}
			p->file = strdup(st->file);
			/* append, keeping file order */
			struct pool_conf **tail = &st->conf->pools;
			while (*tail)
				tail = &(*tail)->next;
			*tail = p;
			st->conf->n_pools++;
			st->pool = p;
		} else
			p = st->pool;
		if (pool_conf_set(p, key, value, sub, sizeof(sub)) < 0) {
			snprintf(st->err, sizeof(st->err), "[%s] %s: %s", section, key, sub);
			return 0;
		}
		return 1;
	}
	snprintf(st->err, sizeof(st->err), "[%s]: unknown section (mpsupd, access, pool:NAME)",
		 section);
	return 0;
}

/* Parse one file into st->conf; on error st->err has "FILE:LINE: ..." */
static int parse_file(struct parse_state *st, const char *path)
{
	char msg[CONF_ERR_MAX];
	FILE *f;
	int line;

	st->file = path;
	f = fopen(path, "re");
	if (!f) {
		int e = errno;
		snprintf(st->err, sizeof(st->err), "%s: %s", path, strerror(e));
		st->err_done = true;
		return -e;
	}
	line = ini_parse_file(f, conf_ini_handler, st);
	fclose(f);
	if (line == 0)
		return 0;
	if (st->err_done)
		return -EINVAL;
	snprintf(msg, sizeof(msg), "%s", st->err[0] ? st->err : "syntax error");
	snprintf(st->err, sizeof(st->err), "%s:%d: %s", path, line, msg);
	st->err_done = true;
	return -EINVAL;
}

/* The line of the header [pool:NAME] in file, or 0 (errors about a whole
 * section point at its header: the parser does not tell lines). */
static int pool_header_line(const char *file, const char *name)
{
	char buf[512];
	int n = 0, found = 0;
	FILE *f;

	if (!file || !(f = fopen(file, "re")))
		return 0;
	while (!found && fgets(buf, sizeof(buf), f)) {
		char *s = buf, *e;

		n++;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s++ != '[' || strncmp(s, "pool:", 5) != 0)
			continue;
		s += 5;
		if (!(e = strchr(s, ']')))
			continue;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - s) == strlen(name) && strncmp(s, name, (size_t)(e - s)) == 0)
			found = n;
	}
	fclose(f);
	return found;
}

/* Whole-config checks after every file is read. */
static int conf_finish(struct parse_state *st, const char *name)
{
	for (struct pool_conf *p = st->conf->pools; p; p = p->next) {
		char sub[CONF_ERR_MAX];
		int line;

		if (pool_conf_check(p, sub, sizeof(sub)) < 0) {
			line = pool_header_line(p->file, p->name);
			if (line > 0)
				snprintf(st->err, sizeof(st->err), "%s:%d: [pool:%s] %s", p->file,
					 line, p->name, sub);
			else
				snprintf(st->err, sizeof(st->err), "%s: [pool:%s] %s",
					 p->file ? p->file : name, p->name, sub);
			return -EINVAL;
		}
	}
	return 0;
}

static void ini_settings(void)
{
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = CONF_LINE_MAX;
	ini_stop_on_first_error = true;
	ini_allow_multiline = false;
}

int conf_load(const char *path, struct conf **ret, char *err, size_t errlen)
{
	struct parse_state st = { 0 };
	int r;

	ini_settings();
	if (!(st.conf = malloc(sizeof(*st.conf))))
		return -ENOMEM;
	conf_defaults(st.conf);
	if (!(st.conf->file = strdup(path))) {
		free(st.conf);
		return -ENOMEM;
	}
	r = parse_file(&st, path);
	if (r == 0)
		r = conf_finish(&st, path);
	if (r < 0) {
		snprintf(err, errlen, "%s", st.err);
		conf_free(st.conf);
		return r;
	}
	*ret = st.conf;
	return 0;
}

int conf_load_string(const char *text, const char *name, struct conf **ret, char *err,
		     size_t errlen)
{
	struct parse_state st = { 0 };
	char msg[CONF_ERR_MAX];
	int line;

	ini_settings();
	if (!(st.conf = malloc(sizeof(*st.conf))))
		return -ENOMEM;
	conf_defaults(st.conf);
	st.file = name;
	line = ini_parse_string(text, conf_ini_handler, &st);
	if (line != 0 && !st.err_done) {
		snprintf(msg, sizeof(msg), "%s", st.err[0] ? st.err : "syntax error");
		snprintf(st.err, sizeof(st.err), "%s:%d: %s", name, line, msg);
	}
	if (line == 0 && conf_finish(&st, name) == 0) {
		*ret = st.conf;
		return 0;
	}
	snprintf(err, errlen, "%s", st.err);
	conf_free(st.conf);
	return -EINVAL;
}

struct conf *conf_free(struct conf *c)
{
	if (!c)
		return NULL;
	free(c->file);
	free(c->socket);
	free(c->socket_group);
	free(c->runtime_dir);
	free(c->state_file);
	for (int i = 0; i <= ROLE_ADMIN; i++) {
		free(c->access[i].uids);
		free(c->access[i].gids);
	}
	while (c->pools) {
		struct pool_conf *n = c->pools->next;
		pool_conf_free(c->pools);
		c->pools = n;
	}
	free(c);
	return NULL;
}
