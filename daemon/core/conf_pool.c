/*
 * [pool:NAME] sections and pool.add requests: the pool keys' table, their
 * own parsers (exit_codes, environment, stdout/stderr, command), and the
 * pool definition's life: new, copy, compare, free, to and from JSON.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "argv.h"
#include "conf_keys.h"

#define POOL_PROCESSES_MAX 100000

static const char *const pool_modes[] = { "service", "task", NULL };
static const char *const task_queues[] = { "local", "redis", NULL };
static const char *const ready_modes[] = { "started", "notify", NULL };
static const char *const restart_policies[] = { "always", "on-failure", "never", NULL };

/* stdout, stderr: capture, null, inherit, journal or file:/path. */
bool output_per_process(const struct output_conf *o)
{
	return o->kind == OUTPUT_FILE && o->path && strstr(o->path, "%(");
}

/* Every component of path is a name: not empty, ".", ".." or too long. */
static int path_components_check(const char *path, char *err, size_t errlen)
{
	if (strlen(path) >= PATH_MAX)
		return conf_seterr(err, errlen, "'%.80s...' is too long", path);
	for (const char *c = path + 1; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return conf_seterr(err, errlen, "'%s': a path component is empty, . or ..",
					   path);
		if (n > NAME_MAX)
			return conf_seterr(err, errlen, "'%s': a path component is too long", path);
		c += n + (c[n] == '/');
	}
	return 0;
}

char *output_path_expand(const struct output_conf *o, const char *pool, const char *name,
			 unsigned index, char *err, size_t errlen)
{
	char *path;

	if (strchr(pool, '/') || strchr(name, '/')) {
		conf_seterr(err, errlen, "a process name with '/' cannot name a file");
		return NULL;
	}
	if (!(path = argv_expand_word(o->path, pool, name, index, err, errlen)))
		return NULL;
	if (path_components_check(path, err, errlen) < 0) {
		free(path);
		return NULL;
	}
	return path;
}

/* A file: path's placeholders are known and make sound paths for the
 * pool's processes (the largest index gives the longest path). */
static int output_check(const struct output_conf *o, const char *key, const char *pool, char *err,
			size_t errlen)
{
	char sub[CONF_ERR_MAX], name[128], *path;

	if (!output_per_process(o))
		return 0;
	snprintf(name, sizeof(name), "%s:%u", pool, UINT_MAX);
	if (!(path = output_path_expand(o, pool, name, UINT_MAX, sub, sizeof(sub))))
		return conf_seterr(err, errlen, "%s: %s", key, sub);
	free(path);
	return 0;
}

static int parse_output(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	struct output_conf *o = field;
	enum output_kind kind;

	(void)ctx;

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
			return conf_seterr(err, errlen, "file: needs an absolute path");
		char *x;
		if (strchr(value, '%')) { /* known placeholders only ("%%": a '%') */
			if (!(x = argv_expand_word(value + 5, "pool", "pool:0", 0, err, errlen)))
				return -EINVAL;
			free(x);
		}
		kind = OUTPUT_FILE;
		if (conf_set_string(&o->path, value + 5) < 0)
			return -ENOMEM;
	} else
		return conf_seterr(
			err, errlen,
			"expected capture, null, inherit, journal or file:/path, not '%s'", value);
	if (kind != OUTPUT_FILE) { /* a path set by an earlier key no longer applies */
		free(o->path);
		o->path = NULL;
	}
	o->kind = kind;
	return 0;
}

/* exit_codes: numbers 0..255 separated by commas or spaces. */
static int parse_exit_codes(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	uint8_t *bits = field, b[32] = { 0 };
	const char *p = value;

	(void)ctx;

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
			return conf_seterr(err, errlen, "expected exit statuses 0..255, not '%s'",
					   value);
		b[v / 8] |= (uint8_t)(1u << (v % 8));
		p = end;
	}
	memcpy(bits, b, 32);
	return 0;
}

/* environment: KEY=VALUE words; a later KEY= overrides an earlier one (as
 * in sh or systemd): one entry per key is kept, or the child would see the
 * first. */
static int parse_environment(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	char ***dst = field, **env;
	size_t n = 0;

	(void)ctx;
	if (conf_split_words(value, &env, err, errlen) < 0)
		return -EINVAL;
	for (char **e = env; *e; e++) {
		char *eq = strchr(*e, '=');
		if (!eq || eq == *e) {
			conf_seterr(err, errlen, "expected KEY=VALUE, not '%s'", *e);
			conf_strv_free(env);
			return -EINVAL;
		}
	}
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
	conf_strv_free(*dst);
	*dst = env;
	return 0;
}

static void output_release(void *field)
{
	struct output_conf *o = field;

	free(o->path);
	o->path = NULL;
}

static int output_copy(void *dst, const void *src)
{
	struct output_conf *d = dst;
	const struct output_conf *o = src;

	d->path = o->path ? strdup(o->path) : NULL;
	return o->path && !d->path ? -ENOMEM : 0;
}

/* The kind and path (max_bytes and backups are keys of their own). */
static bool output_equal(const void *a, const void *b)
{
	const struct output_conf *x = a, *y = b;

	return x->kind == y->kind && conf_str_eq(x->path, y->path);
}

static json_t *output_to_json(const void *field)
{
	static const char *const kinds[] = { "null", "inherit", "file", "journal", "capture" };
	const struct output_conf *o = field;
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

static json_t *exit_codes_to_json(const void *field)
{
	const uint8_t *bits = field;
	json_t *codes = json_array();

	for (int i = 0; codes && i < 256; i++)
		if (bits[i / 8] & (1u << (i % 8)))
			json_array_append_new(codes, json_integer(i));
	return codes;
}

static void environment_release(void *field)
{
	*(char ***)field = conf_strv_free(*(char ***)field);
}

static int environment_copy(void *dst, const void *src)
{
	char *const *env = *(char **const *)src;

	*(char ***)dst = env ? conf_strv_dup(env) : NULL;
	return env && !*(char ***)dst ? -ENOMEM : 0;
}

/* NULL and an empty list are the same environment. */
static bool environment_equal(const void *a, const void *b)
{
	char **x = *(char **const *)a, **y = *(char **const *)b;

	if (!x || !y)
		return (!x || !*x) && (!y || !*y);
	for (; *x && *y; x++, y++)
		if (strcmp(*x, *y))
			return false;
	return !*x && !*y;
}

/* The environment as {KEY: VALUE}. */
static json_t *environment_to_json(const void *field)
{
	char *const *env = *(char **const *)field;
	json_t *obj = json_object();

	for (char *const *e = env; obj && e && *e; e++) {
		char *eq = strchr(*e, '=');
		char *k = strndup(*e, (size_t)(eq - *e));
		if (k)
			json_object_set_new(obj, k, json_string(eq + 1));
		free(k);
	}
	return obj;
}

/* One bound of an rlimit: a number min..2^40 or "infinity". */
static int parse_rlim_value(const char *v, size_t len, unsigned long long min,
			    unsigned long long *ret)
{
	unsigned long long n = 0;

	if (len == 8 && strncmp(v, "infinity", 8) == 0) {
		*ret = ULLONG_MAX;
		return 0;
	}
	if (len == 0 || len > 13)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (unsigned long long)(v[i] - '0');
	}
	if (n < min || n > (1ULL << 40))
		return -EINVAL;
	*ret = n;
	return 0;
}

/* limit_*: "N" (soft and hard), "SOFT:HARD" or "infinity"; N from min. */
static int parse_rlimit_from(struct conf_rlimit *rl, unsigned long long min, const char *value,
			     char *err, size_t errlen)
{
	struct conf_rlimit r = { .set = true };
	const char *colon = strchr(value, ':');

	if (colon ? parse_rlim_value(value, (size_t)(colon - value), min, &r.soft) < 0 ||
			    parse_rlim_value(colon + 1, strlen(colon + 1), min, &r.hard) < 0
		  : parse_rlim_value(value, strlen(value), min, &r.soft) < 0)
		return conf_seterr(err, errlen,
				   "expected N, SOFT:HARD or infinity (N %llu..2^40), not '%s'",
				   min, value);
	if (!colon)
		r.hard = r.soft;
	if (r.soft > r.hard)
		return conf_seterr(err, errlen, "the soft limit is above the hard one in '%s'",
				   value);
	*rl = r;
	return 0;
}

/* limit_nofile: a descriptor limit of 0 makes no sense. */
static int parse_rlimit(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	(void)ctx;
	return parse_rlimit_from(field, 1, value, err, errlen);
}

/* The other limit_* keys: 0 is a limit too (limit_core = 0). */
static int parse_rlimit0(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	(void)ctx;
	return parse_rlimit_from(field, 0, value, err, errlen);
}

static bool rlimit_equal(const void *a, const void *b)
{
	const struct conf_rlimit *x = a, *y = b;

	return x->set == y->set && (!x->set || (x->soft == y->soft && x->hard == y->hard));
}

static json_t *rlimit_to_json(const void *field)
{
	const struct conf_rlimit *rl = field;
	char buf[64], s[24] = "infinity", h[24] = "infinity";

	if (!rl->set)
		return json_null();
	if (rl->soft != ULLONG_MAX)
		snprintf(s, sizeof(s), "%llu", rl->soft);
	if (rl->hard != ULLONG_MAX)
		snprintf(h, sizeof(h), "%llu", rl->hard);
	snprintf(buf, sizeof(buf), "%s:%s", s, h);
	return json_string(buf);
}

/* cpu_max: "N%" of one CPU (1..100000), or "max" (none). */
static int parse_cpu_max(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	unsigned long n;
	char *end;

	(void)ctx;
	if (strcmp(value, "max") == 0) {
		*(unsigned *)field = 0;
		return 0;
	}
	errno = 0;
	n = strtoul(value, &end, 10);
	if (errno || end == value || strcmp(end, "%") != 0 || n < 1 || n > 100000 ||
	    value[0] == '-')
		return conf_seterr(err, errlen, "expected N%% (1..100000) or max, not '%s'", value);
	*(unsigned *)field = (unsigned)n;
	return 0;
}

static json_t *cpu_max_to_json(const void *field)
{
	unsigned v = *(const unsigned *)field;
	char buf[24];

	if (!v)
		return json_string("max");
	snprintf(buf, sizeof(buf), "%u%%", v);
	return json_string(buf);
}

/* command: shell-like words, at least one. */
static int check_command(const char *value, char *err, size_t errlen)
{
	char **argv;
	bool empty;

	if (conf_split_words(value, &argv, err, errlen) < 0)
		return -EINVAL;
	empty = !argv[0];
	conf_strv_free(argv);
	if (empty)
		return conf_seterr(err, errlen, "empty command");
	return 0;
}

#define POOL(f) CONF_FIELD(struct pool_conf, f)
#define OUTPUT_OPS                                                             \
	.release = output_release, .copy = output_copy, .equal = output_equal, \
	.to_json = output_to_json
#define RLIMIT_KEY(name, i)                                                                        \
	{                                                                                          \
		name, CONF_CUSTOM, POOL(limits[i]), .parse = parse_rlimit0, .equal = rlimit_equal, \
						    .to_json = rlimit_to_json                      \
	}
#define ENVIRONMENT_OPS                                                                       \
	.release = environment_release, .copy = environment_copy, .equal = environment_equal, \
	.to_json = environment_to_json

/* The keys of [pool:NAME] and pool.add, with their defaults. */
static const struct conf_key pool_keys[] = {
	{ "command", CONF_STRING, POOL(command), .check = check_command },
	{ "processes", CONF_UINT, POOL(processes), .min = 0, .max = POOL_PROCESSES_MAX,
	  .expect = "a number of processes", .scale = true, .def = "1" },
	{ "mode", CONF_ENUM, POOL(mode), .names = pool_modes, .def = "service" },
	{ "restart", CONF_ENUM, POOL(restart), .names = restart_policies, .def = "always" },
	{ "exit_codes", CONF_CUSTOM, POOL(exit_codes), .parse = parse_exit_codes,
	  .to_json = exit_codes_to_json, .def = "0" },
	{ "start_secs", CONF_DURATION, POOL(start_secs), .def = "1" },
	{ "ready", CONF_ENUM, POOL(ready), .names = ready_modes, .def = "started" },
	{ "ready_timeout", CONF_DURATION, POOL(ready_timeout), .def = "30" },
	{ "start_retries", CONF_UINT, POOL(start_retries), .min = 0, .max = 1000000, .def = "3" },
	{ "backoff_max", CONF_DURATION, POOL(backoff_max), .def = "30" },
	{ "stop_signal", CONF_SIGNAL, POOL(stop_signal), .def = "TERM" },
	{ "stop_timeout", CONF_DURATION, POOL(stop_timeout), .def = "10" },
	{ "user", CONF_STRING, POOL(user), .check = conf_check_user },
	{ "group", CONF_STRING, POOL(group), .check = conf_check_group },
	{ "directory", CONF_PATH, POOL(directory) },
	{ "umask", CONF_MODE, POOL(umask), .max = 0777, .expect = "an octal umask", .def = "022" },
	{ "limit_nofile", CONF_CUSTOM, POOL(limit_nofile), .parse = parse_rlimit,
	  .equal = rlimit_equal, .to_json = rlimit_to_json },
	RLIMIT_KEY("limit_nproc", POOL_RLIMIT_NPROC),
	RLIMIT_KEY("limit_core", POOL_RLIMIT_CORE),
	RLIMIT_KEY("limit_as", POOL_RLIMIT_AS),
	RLIMIT_KEY("limit_cpu", POOL_RLIMIT_CPU),
	RLIMIT_KEY("limit_fsize", POOL_RLIMIT_FSIZE),
	RLIMIT_KEY("limit_memlock", POOL_RLIMIT_MEMLOCK),
	RLIMIT_KEY("limit_stack", POOL_RLIMIT_STACK),
	{ "memory_max", CONF_SIZE, POOL(memory_max), .max = UINT64_MAX,
	  .expect = "a size (like 512M)", .def = "0" },
	{ "memory_high", CONF_SIZE, POOL(memory_high), .max = UINT64_MAX,
	  .expect = "a size (like 512M)", .def = "0" },
	{ "cpu_max", CONF_CUSTOM, POOL(cpu_max), .parse = parse_cpu_max,
	  .to_json = cpu_max_to_json },
	{ "pids_max", CONF_UINT, POOL(pids_max), .min = 0, .max = 4194304,
	  .expect = "a number of processes", .def = "0" },
	{ "nice", CONF_INT, POOL(nice), .smin = -20, .smax = 19, .expect = "a nice value -20..19",
	  .def = "0" },
	{ "oom_score_adj", CONF_INT, POOL(oom_score_adj), .smin = -1000, .smax = 1000,
	  .expect = "an OOM score adjustment -1000..1000", .def = "0" },
	{ "environment", CONF_CUSTOM, POOL(environment), .parse = parse_environment,
	  ENVIRONMENT_OPS },
	{ "stdout", CONF_CUSTOM, POOL(out), .parse = parse_output, OUTPUT_OPS, .def = "capture" },
	{ "stderr", CONF_CUSTOM, POOL(err), .parse = parse_output, OUTPUT_OPS, .def = "capture" },
	{ "stdout_max_bytes", CONF_SIZE, POOL(out.max_bytes), .max = UINT64_MAX,
	  .expect = "a size (like 10M)", .def = "50M" },
	{ "stdout_backups", CONF_UINT, POOL(out.backups), .min = 0, .max = 1000, .def = "5" },
	{ "stderr_max_bytes", CONF_SIZE, POOL(err.max_bytes), .max = UINT64_MAX,
	  .expect = "a size (like 10M)", .def = "50M" },
	{ "stderr_backups", CONF_UINT, POOL(err.backups), .min = 0, .max = 1000, .def = "5" },
	{ "output_prefix", CONF_BOOL, POOL(output_prefix), .def = "no" },
	{ "autostart", CONF_BOOL, POOL(autostart), .def = "yes" },
	{ "priority", CONF_INT, POOL(priority), .smin = -100000, .smax = 100000,
	  .expect = "an integer priority", .def = "100" },
	{ "task_timeout", CONF_DURATION, POOL(task_timeout), .def = "0" },
	{ "task_retries", CONF_UINT, POOL(task_retries), .min = 0, .max = 100, .def = "0" },
	{ "task_window", CONF_UINT, POOL(task_window), .min = 1, .max = 1024, .def = "16" },
	{ "task_chunks", CONF_BOOL, POOL(task_chunks), .def = "no" },
	{ "task_queue", CONF_ENUM, POOL(task_queue), .names = task_queues, .def = "local" },
	{ "max_pending", CONF_UINT, POOL(max_pending), .min = 1, .max = 10000000, .def = "100000" },
	{ "task_max_per_worker", CONF_UINT, POOL(task_max_per_worker), .min = 0, .max = 1000000000,
	  .def = "0" },
};

static const struct conf_section pool_section = { pool_keys,
						  sizeof(pool_keys) / sizeof(pool_keys[0]),
						  "unknown key" };

struct pool_conf *pool_conf_new(const char *name)
{
	char err[CONF_ERR_MAX];
	struct pool_conf *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (!(p->name = strdup(name)) || conf_keys_defaults(&pool_section, p, err, sizeof(err)) < 0)
		return pool_conf_free(p);
	return p;
}

/* *dst = a copy of src (NULL stays NULL). */
static int dupstr(char **dst, const char *src)
{
	char *s = NULL;

	if (src && !(s = strdup(src)))
		return -ENOMEM;
	*dst = s;
	return 0;
}

int pool_conf_set(struct pool_conf *p, const char *key, const char *value, char *err, size_t errlen)
{
	return conf_key_set(&pool_section, p, NULL, key, value, err, errlen);
}

int pool_conf_check(const struct pool_conf *p, char *err, size_t errlen)
{
	if (!p->command)
		return conf_seterr(err, errlen, "pool %s: command is missing", p->name);
	if (p->stop_timeout <= 0)
		return conf_seterr(err, errlen, "pool %s: stop_timeout must be above 0", p->name);
	if (output_check(&p->out, "stdout", p->name, err, errlen) < 0 ||
	    output_check(&p->err, "stderr", p->name, err, errlen) < 0)
		return -EINVAL;
	return 0;
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

/* A JSON list as words: command or exit_codes as a list; environment as
 * ["K=V", ...]. */
static int json_list_text(const char *key, json_t *v, char **ret, char *err, size_t errlen)
{
	char *s = NULL;
	size_t len = 0, cap = 0, i;
	json_t *e;
	int r;

	json_array_foreach(v, i, e) {
		if (json_is_integer(e) && strcmp(key, "exit_codes") == 0) {
			char num[24];
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(e));
			r = append_word(&s, &len, &cap, num, false);
		} else if (json_is_string(e))
			r = append_word(&s, &len, &cap, json_string_value(e), true);
		else {
			free(s);
			return conf_seterr(err, errlen, "%s: list items must be strings", key);
		}
		if (r < 0) {
			free(s);
			return -ENOMEM;
		}
	}
	*ret = s ? s : strdup("");
	return *ret ? 0 : -ENOMEM;
}

/* An environment object {K: V} as quoted K=V words. */
static int json_env_text(json_t *v, char **ret, char *err, size_t errlen)
{
	char *s = NULL, *kv;
	size_t len = 0, cap = 0;
	const char *k;
	json_t *e;
	int r;

	json_object_foreach(v, k, e) {
		if (!json_is_string(e)) {
			free(s);
			return conf_seterr(err, errlen, "environment: values must be strings");
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
	*ret = s ? s : strdup("");
	return *ret ? 0 : -ENOMEM;
}

/* The text form of one JSON value of a pool.add request. */
static int json_value_text(const char *key, json_t *v, char **ret, char *err, size_t errlen)
{
	char *s = NULL;
	int r = 0;

	switch (json_typeof(v)) {
	case JSON_STRING: s = strdup(json_string_value(v)); break;
	case JSON_INTEGER: r = asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
	case JSON_REAL: r = asprintf(&s, "%.17g", json_real_value(v)); break;
	case JSON_TRUE:
	case JSON_FALSE: s = strdup(json_is_true(v) ? "yes" : "no"); break;
	case JSON_ARRAY: return json_list_text(key, v, ret, err, errlen);
	case JSON_OBJECT:
		if (strcmp(key, "environment") != 0)
			return conf_seterr(err, errlen, "%s: an object is not allowed here", key);
		return json_env_text(v, ret, err, errlen);
	default: return conf_seterr(err, errlen, "%s: null is not a value", key);
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
		return conf_seterr(err, errlen, "missing string member \"pool\"");
	if (!name_valid(json_string_value(name), false))
		return conf_seterr(err, errlen,
				   "invalid pool name (expected [A-Za-z0-9_.-]{1,64})");
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
			conf_seterr(err, errlen, "%s: %s", key, sub);
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

struct pool_conf *pool_conf_free(struct pool_conf *p)
{
	if (!p)
		return NULL;
	free(p->name);
	free(p->file);
	conf_keys_release(&pool_section, p);
	free(p);
	return NULL;
}

struct pool_conf *pool_conf_dup(const struct pool_conf *p)
{
	struct pool_conf *q = malloc(sizeof(*q));
	int r;

	if (!q)
		return NULL;
	*q = *p;
	q->next = NULL;
	r = conf_keys_copy(&pool_section, q, p);
	q->name = q->file = NULL;
	if (r < 0 || dupstr(&q->name, p->name) || dupstr(&q->file, p->file))
		return pool_conf_free(q);
	return q;
}

bool pool_conf_differs(const struct pool_conf *a, const struct pool_conf *b)
{
	return !conf_keys_equal(&pool_section, a, b);
}

json_t *pool_conf_to_json(const struct pool_conf *p)
{
	json_t *obj = json_pack("{s:s}", "pool", p->name);

	/* every key pool_conf_set() knows, so pool.list output is pool.add input */
	if (obj && conf_keys_to_json(&pool_section, p, obj) < 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}
