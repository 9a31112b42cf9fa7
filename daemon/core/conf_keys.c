/*
 * Typed config values: the parsers of numbers, sizes, durations, signals,
 * modes, booleans and shell-like words, and the one setter that parses any
 * key of a section table (conf_keys.h) into its field.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "conf_keys.h"

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{ "HUP", SIGHUP },       { "INT", SIGINT },   { "QUIT", SIGQUIT },   { "ILL", SIGILL },
	{ "TRAP", SIGTRAP },     { "ABRT", SIGABRT }, { "BUS", SIGBUS },     { "FPE", SIGFPE },
	{ "KILL", SIGKILL },     { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV },   { "USR2", SIGUSR2 },
	{ "PIPE", SIGPIPE },     { "ALRM", SIGALRM }, { "TERM", SIGTERM },   { "CHLD", SIGCHLD },
	{ "CONT", SIGCONT },     { "STOP", SIGSTOP }, { "TSTP", SIGTSTP },   { "TTIN", SIGTTIN },
	{ "TTOU", SIGTTOU },     { "URG", SIGURG },   { "XCPU", SIGXCPU },   { "XFSZ", SIGXFSZ },
	{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
	{ "PWR", SIGPWR },       { "SYS", SIGSYS },
};

/* Write a message into err; returns -EINVAL for "return conf_seterr(...)". */
int conf_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* The bytes of a name: 1, and 2 for ':' (allowed with_colon). */
static const unsigned char name_byte[256] = {
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['_'] = 1,
	['.'] = 1,         ['-'] = 1,         [':'] = 2,
};

bool name_valid(const char *s, bool with_colon)
{
	unsigned char allow = with_colon ? 3 : 1;
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (!(name_byte[(unsigned char)s[n]] & allow) || n >= 64)
			return false;
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
int conf_parse_uint(const char *s, unsigned long long min, unsigned long long max,
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
int conf_parse_size(const char *s, uint64_t *ret)
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

/* yes/no, true/false, on/off, 1/0 (any case). */
int conf_parse_bool(const char *s, bool *ret)
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

/* Octal permission bits 0..07777. */
int conf_parse_mode(const char *s, mode_t *ret)
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

char **conf_strv_dup(char *const *v)
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
			r = conf_seterr(err, errlen, "unterminated %c quote", quote);
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

bool conf_parse_id(const char *s, uint32_t *ret)
{
	unsigned long long id;

	if (conf_parse_uint(s, 0, UINT32_MAX - 1, &id) < 0) /* -1 is "no id" */
		return false;
	*ret = (uint32_t)id;
	return true;
}

int conf_lookup_user(const char *s, uid_t *ret)
{
	struct passwd *pw;
	uint32_t id;

	if (conf_parse_id(s, &id)) {
		*ret = (uid_t)id;
		return 0;
	}
	if (!(pw = getpwnam(s)))
		return -ENOENT;
	*ret = pw->pw_uid;
	return 0;
}

int conf_lookup_group(const char *s, gid_t *ret)
{
	struct group *gr;
	uint32_t id;

	if (conf_parse_id(s, &id)) {
		*ret = (gid_t)id;
		return 0;
	}
	if (!(gr = getgrnam(s)))
		return -ENOENT;
	*ret = gr->gr_gid;
	return 0;
}

int conf_check_user(const char *value, char *err, size_t errlen)
{
	uid_t uid;

	if (conf_lookup_user(value, &uid) < 0)
		return conf_seterr(err, errlen, "no such user '%s'", value);
	return 0;
}

int conf_check_group(const char *value, char *err, size_t errlen)
{
	gid_t gid;

	if (conf_lookup_group(value, &gid) < 0)
		return conf_seterr(err, errlen, "no such group '%s'", value);
	return 0;
}

int conf_set_string(char **dst, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* Store v into an unsigned field of the given width. */
static void store_unsigned(void *field, size_t size, unsigned long long v)
{
	switch (size) {
	case 1: *(uint8_t *)field = (uint8_t)v; break;
	case 2: *(uint16_t *)field = (uint16_t)v; break;
	case 4: *(uint32_t *)field = (uint32_t)v; break;
	default: *(uint64_t *)field = (uint64_t)v; break;
	}
}

/* A signed decimal within [k->smin, k->smax] (strtol's syntax). */
static int parse_int(const struct conf_key *k, const char *value, int *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (end == value || *end || errno || v < k->smin || v > k->smax)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* An enum value by name; the error lists the names: "a, b or c". */
static int set_enum(const struct conf_key *k, void *field, const char *value, char *err,
		    size_t errlen)
{
	char names[256] = "";
	size_t len = 0;

	for (size_t i = 0; k->names[i]; i++)
		if (strcmp(value, k->names[i]) == 0) {
			store_unsigned(field, k->size, i);
			return 0;
		}
	for (size_t i = 0; k->names[i] && len < sizeof(names); i++)
		len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
					i == 0            ? ""
					: k->names[i + 1] ? ", "
							  : " or ",
					k->names[i]);
	return conf_seterr(err, errlen, "expected %s, not '%s'", names, value);
}

/* The numeric types: parse into a local, check, store. */
static int set_number(const struct conf_key *k, void *field, const char *value, char *err,
		      size_t errlen)
{
	unsigned long long u;
	uint64_t sz;
	double d;
	mode_t m;
	int i;

	switch (k->type) {
	case CONF_UINT:
		if (conf_parse_uint(value, k->min, k->max, &u) < 0)
			return conf_seterr(err, errlen, "expected %s %llu..%llu, not '%s'",
					   k->expect ? k->expect : "a number", k->min, k->max,
					   value);
		store_unsigned(field, k->size, u);
		return 0;
	case CONF_INT:
		if (parse_int(k, value, &i) < 0)
			break;
		*(int *)field = i;
		return 0;
	case CONF_SIZE:
		if (conf_parse_size(value, &sz) < 0 || sz < k->min || sz > k->max)
			break;
		store_unsigned(field, k->size, sz);
		return 0;
	case CONF_DURATION:
		if (conf_parse_duration(value, &d) < 0)
			break;
		*(double *)field = d;
		return 0;
	case CONF_MODE:
		if (conf_parse_mode(value, &m) < 0 || m > k->max)
			break;
		*(mode_t *)field = m;
		return 0;
	default: return -EINVAL;
	}
	if (k->expect)
		return conf_seterr(err, errlen, "expected %s, not '%s'", k->expect, value);
	if (k->type == CONF_DURATION)
		return conf_seterr(err, errlen, "expected a duration in seconds, not '%s'", value);
	if (k->type == CONF_MODE)
		return conf_seterr(err, errlen, "expected an octal mode, not '%s'", value);
	return conf_seterr(err, errlen, "expected %s, not '%s'",
			   k->type == CONF_INT ? "an integer" : "a size", value);
}

/* Parse value as key k into its field at base + k->offset. */
static int key_set(const struct conf_key *k, void *base, void *ctx, const char *value, char *err,
		   size_t errlen)
{
	void *field = (char *)base + k->offset;
	int sig;

	switch (k->type) {
	case CONF_BOOL:
		if (conf_parse_bool(value, field) < 0)
			return conf_seterr(err, errlen, "expected yes or no, not '%s'", value);
		return 0;
	case CONF_ENUM: return set_enum(k, field, value, err, errlen);
	case CONF_SIGNAL:
		if (conf_parse_signal(value, &sig) < 0)
			return conf_seterr(err, errlen, "unknown signal '%s'", value);
		*(int *)field = sig;
		return 0;
	case CONF_PATH:
		if (value[0] != '/')
			return conf_seterr(err, errlen, "%s must be an absolute path", k->name);
		return conf_set_string(field, value);
	case CONF_STRING:
		if (k->check && k->check(value, err, errlen) < 0)
			return -EINVAL;
		return conf_set_string(field, value);
	case CONF_CUSTOM: return k->parse(field, value, ctx, err, errlen);
	default: return set_number(k, field, value, err, errlen);
	}
}

int conf_key_set(const struct conf_section *sec, void *base, void *ctx, const char *key,
		 const char *value, char *err, size_t errlen)
{
	int r;

	for (size_t i = 0; i < sec->n_keys; i++) {
		if (strcmp(sec->keys[i].name, key) != 0)
			continue;
		r = key_set(&sec->keys[i], base, ctx, value, err, errlen);
		if (r == -ENOMEM)
			conf_seterr(err, errlen, "out of memory");
		return r;
	}
	return conf_seterr(err, errlen, "%s", sec->unknown);
}

int conf_keys_defaults(const struct conf_section *sec, void *base, char *err, size_t errlen)
{
	char sub[CONF_ERR_MAX];
	int r;

	for (size_t i = 0; i < sec->n_keys; i++) {
		const struct conf_key *k = &sec->keys[i];

		if (!k->def)
			continue;
		r = key_set(k, base, NULL, k->def, sub, sizeof(sub));
		if (r < 0) {
			conf_seterr(err, errlen, "default of %s: %s", k->name, sub);
			return r;
		}
	}
	return 0;
}

/* Read an unsigned field of the given width. */
static unsigned long long load_unsigned(const void *field, size_t size)
{
	switch (size) {
	case 1: return *(const uint8_t *)field;
	case 2: return *(const uint16_t *)field;
	case 4: return *(const uint32_t *)field;
	default: return *(const uint64_t *)field;
	}
}

/* Both NULL, or the same text. */
bool conf_str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

void conf_keys_release(const struct conf_section *sec, void *base)
{
	for (size_t i = 0; i < sec->n_keys; i++) {
		const struct conf_key *k = &sec->keys[i];
		void *field = (char *)base + k->offset;

		if (k->type == CONF_STRING || k->type == CONF_PATH) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (k->type == CONF_CUSTOM && k->release)
			k->release(field);
	}
}

int conf_keys_copy(const struct conf_section *sec, void *dst, const void *src)
{
	int r = 0;

	/* every key is visited even after a failure: none may keep a pointer
	 * it shares with src */
	for (size_t i = 0; i < sec->n_keys; i++) {
		const struct conf_key *k = &sec->keys[i];
		void *d = (char *)dst + k->offset;
		const void *s = (const char *)src + k->offset;

		if (k->type == CONF_STRING || k->type == CONF_PATH) {
			const char *text = *(char *const *)s;
			*(char **)d = text ? strdup(text) : NULL;
			if (text && !*(char **)d)
				r = -ENOMEM;
		} else if (k->type == CONF_CUSTOM && k->copy && k->copy(d, s) < 0)
			r = -ENOMEM;
	}
	return r;
}

bool conf_keys_equal(const struct conf_section *sec, const void *a, const void *b)
{
	for (size_t i = 0; i < sec->n_keys; i++) {
		const struct conf_key *k = &sec->keys[i];
		const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
		bool eq;

		if (k->scale)
			continue;
		if (k->type == CONF_STRING || k->type == CONF_PATH)
			eq = conf_str_eq(*(char *const *)fa, *(char *const *)fb);
		else if (k->type == CONF_DURATION)
			eq = *(const double *)fa == *(const double *)fb;
		else if (k->type == CONF_CUSTOM && k->equal)
			eq = k->equal(fa, fb);
		else
			eq = memcmp(fa, fb, k->size) == 0;
		if (!eq)
			return false;
	}
	return true;
}

/* One key's value as JSON (NULL: no memory, or not valid UTF-8). */
static json_t *key_to_json(const struct conf_key *k, const void *field)
{
	const char *text, *sig;
	char mode[8];

	switch (k->type) {
	case CONF_UINT:
	case CONF_SIZE: return json_integer((json_int_t)load_unsigned(field, k->size));
	case CONF_INT: return json_integer(*(const int *)field);
	case CONF_BOOL: return json_boolean(*(const bool *)field);
	case CONF_DURATION: return json_real(*(const double *)field);
	case CONF_ENUM: return json_string(k->names[load_unsigned(field, k->size)]);
	case CONF_STRING:
	case CONF_PATH: text = *(char *const *)field; return text ? json_string(text) : json_null();
	case CONF_MODE:
		snprintf(mode, sizeof(mode), "%04o", (unsigned)*(const mode_t *)field);
		return json_string(mode);
	case CONF_SIGNAL:
		sig = conf_signal_name(*(const int *)field);
		/* SIGRTMIN+n has no name */
		return sig ? json_string(sig) : json_integer(*(const int *)field);
	default: return k->to_json(field);
	}
}

int conf_keys_to_json(const struct conf_section *sec, const void *base, json_t *obj)
{
	for (size_t i = 0; i < sec->n_keys; i++) {
		const struct conf_key *k = &sec->keys[i];

		if (k->type == CONF_CUSTOM && !k->to_json)
			continue;
		if (json_object_set_new(obj, k->name,
					key_to_json(k, (const char *)base + k->offset)))
			return -ENOMEM;
	}
	return 0;
}
