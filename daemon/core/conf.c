/*
 * Configuration files with libinih: the [mpsupd] and [access] key tables,
 * include globs, sections, and the whole-file load that names the file,
 * the line and the key of every error. Typed values: conf_keys.c; the
 * [pool:NAME] keys: conf_pool.c.
 */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "conf.h"
#include "conf_keys.h"
#include "metrics_http.h"

#define INCLUDE_DEPTH_MAX 8
#define CONF_LINE_MAX (64 * 1024)

struct parse_state {
	struct conf *conf;
	const char *file;
	char err[CONF_ERR_MAX];
	bool err_done; /* err already carries file and line */
	int depth;
	char section[128];      /* the section of the previous key */
	struct pool_conf *pool; /* the pool being filled */
	struct hook_conf *hook; /* the hook being filled */
};

static void access_release(void *field)
{
	struct access_list *a = field;

	free(a->uids);
	free(a->gids);
	memset(a, 0, sizeof(*a));
}

/* Resolve "root @wheel 1000 *" into an access list. */
static int parse_access(void *field, const char *value, void *ctx, char *err, size_t errlen)
{
	struct access_list *a = field;
	char **words;
	int r = 0;

	(void)ctx;
	if (conf_split_words(value, &words, err, errlen) < 0)
		return -EINVAL;
	access_release(a);
	a->set = true;
	for (char **w = words; *w && r == 0; w++) {
		if (strcmp(*w, "*") == 0) {
			a->any = true;
		} else if ((*w)[0] == '@') {
			gid_t gid;
			if (conf_lookup_group(*w + 1, &gid) < 0) {
				r = conf_seterr(err, errlen, "no such group '%s'", *w + 1);
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
			uid_t uid;
			if (conf_lookup_user(*w, &uid) < 0) {
				r = conf_seterr(err, errlen, "no such user '%s'", *w);
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
static int do_include(void *field, const char *pattern, void *ctx, char *err, size_t errlen)
{
	struct parse_state *st = ctx;
	char full[PATH_MAX];
	glob_t g;
	int r;

	(void)field;
	if (pattern[0] != '/') {
		const char *slash = strrchr(st->file, '/');
		int dl = slash ? (int)(slash - st->file) : 1;
		snprintf(full, sizeof(full), "%.*s/%s", dl, slash ? st->file : ".", pattern);
	} else
		snprintf(full, sizeof(full), "%s", pattern);
	if (st->depth >= INCLUDE_DEPTH_MAX)
		return conf_seterr(err, errlen, "include: nested deeper than %d files",
				   INCLUDE_DEPTH_MAX);
	r = glob(full, GLOB_ERR, NULL, &g);
	if (r == GLOB_NOMATCH)
		return 0;
	if (r != 0)
		return conf_seterr(err, errlen, "include: cannot read '%s'", full);
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

static const char *const cgroup_modes[] = { "auto", "off", NULL };
static const char *const log_levels[] = { "error", "warning", "info", "debug", NULL };
static const char *const state_syncs[] = { "always", "everysec", "no", NULL };
static const char *const state_backends[] = { "local", "redis", NULL };

/* redis_address: an absolute Unix socket path or host:port. */
static int conf_check_redis_address(const char *value, char *err, size_t errlen)
{
	const char *colon = strrchr(value, ':');
	char *end;
	long port;

	if (value[0] == '/')
		return strlen(value) < 108 ? 0 : conf_seterr(err, errlen, "path too long");
	if (!colon || colon == value)
		return conf_seterr(err, errlen,
				   "expected a Unix socket path or host:port, not '%s'", value);
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return conf_seterr(err, errlen, "bad port in '%s'", value);
	return 0;
}

/* redis_prefix: printable, no braces (they would end the {name} hash tag). */
static int conf_check_redis_prefix(const char *value, char *err, size_t errlen)
{
	if (strlen(value) > 64)
		return conf_seterr(err, errlen, "at most 64 bytes");
	for (const char *p = value; *p; p++)
		if (*p <= ' ' || *p == '{' || *p == '}' || *p == 0x7f)
			return conf_seterr(err, errlen, "no spaces, control characters or braces");
	return 0;
}

#define MAIN(f) CONF_FIELD(struct conf, f)
/* clang-format off: it would put the braces of a macro on lines of their own */
#define MAIN_UINT(key, f, lo, hi, d)                                          \
	{                                                                     \
		key, CONF_UINT, MAIN(f), .min = (lo), .max = (hi), .def = (d) \
	}
/* clang-format on */

/* The keys of [mpsupd], with their defaults. */
static const struct conf_key main_keys[] = {
	{ "socket", CONF_PATH, MAIN(socket) },
	{ "socket_mode", CONF_MODE, MAIN(socket_mode), .max = 0777, .def = "0600" },
	{ "socket_group", CONF_STRING, MAIN(socket_group), .check = conf_check_group },
	{ "runtime_dir", CONF_PATH, MAIN(runtime_dir) },
	{ "metrics_listen", CONF_STRING, MAIN(metrics_listen), .check = metrics_listen_check },
	{ "metrics_usage", CONF_BOOL, MAIN(metrics_usage), .def = "yes" },
	{ "cgroup", CONF_ENUM, MAIN(cgroup), .names = cgroup_modes, .def = "auto" },
	{ "log_level", CONF_ENUM, MAIN(log_level), .names = log_levels, .def = "info" },
	{ "state_file", CONF_PATH, MAIN(state_file) },
	{ "state_sync", CONF_ENUM, MAIN(state_sync), .names = state_syncs, .def = "everysec" },
	{ "state_log_max_bytes", CONF_SIZE, MAIN(state_log_max_bytes), .max = UINT64_MAX,
	  .expect = "a size (like 64M)", .def = "64M" },
	{ "state_dir_check", CONF_BOOL, MAIN(state_dir_check), .def = "yes" },
	{ "persist_outage_timeout", CONF_DURATION, MAIN(persist_outage_timeout), .def = "5" },
	{ "state_backend", CONF_ENUM, MAIN(state_backend), .names = state_backends,
	  .def = "local" },
	{ "redis_address", CONF_STRING, MAIN(redis_address), .check = conf_check_redis_address,
	  .def = "/run/redis/redis-server.sock" },
	{ "redis_prefix", CONF_STRING, MAIN(redis_prefix), .check = conf_check_redis_prefix,
	  .def = "mpsup:" },
	{ "redis_lease", CONF_DURATION, MAIN(redis_lease), .def = "10" },
	{ "max_request_bytes", CONF_SIZE, MAIN(max_request_bytes), .min = 1024,
	  .max = 256 * 1024 * 1024, .expect = "a size 1K..256M", .def = "1M" },
	{ "max_output_bytes", CONF_SIZE, MAIN(max_output_bytes), .min = 4096, .max = SIZE_MAX,
	  .expect = "a size of at least 4K", .def = "16M" },
	{ "max_output_total", CONF_SIZE, MAIN(max_output_total), .min = 64 * 1024, .max = SIZE_MAX,
	  .expect = "a size of at least 64K", .def = "256M" },
	/* default: a quarter of the machine's memory (conf_defaults) */
	{ "max_memory", CONF_SIZE, MAIN(max_memory), .max = UINT64_MAX,
	  .expect = "a size (like 1G, 0 = no limit)" },
	{ "shutdown_timeout", CONF_DURATION, MAIN(shutdown_timeout), .def = "30" },
	MAIN_UINT("max_clients", max_clients, 1, 1000000, "1024"),
	/* non-admin peers; 0 = only max_clients applies */
	MAIN_UINT("max_clients_per_uid", max_clients_per_uid, 0, 1000000, "0"),
	MAIN_UINT("max_json_depth", max_json_depth, 2, 1000, "64"),
	MAIN_UINT("max_objects", max_objects, 1, 100000000, "1000000"),
	MAIN_UINT("max_object_items", max_object_items, 1, 1000000000, "10000000"),
	MAIN_UINT("max_queue_items", max_queue_items, 1, 1000000000, "1000000"),
	MAIN_UINT("max_waiters", max_waiters, 1, 1000000, "1024"),
	MAIN_UINT("max_oneshots", max_oneshots, 1, 10000000, "1000"),
	MAIN_UINT("max_processes", max_processes, 1, 1000000, "16384"),
	MAIN_UINT("max_processes_per_uid", max_processes_per_uid, 1, 1000000, "256"),
	MAIN_UINT("max_subscribers", max_subscribers, 1, 100000, "64"),
	MAIN_UINT("log_ring_lines", log_ring_lines, 0, 1000000, "200"),
	MAIN_UINT("task_results_max", task_results_max, 1, 100000000, "10000"),
	{ "task_results_age", CONF_DURATION, MAIN(task_results_age), .def = "3600" },
	{ "include", CONF_CUSTOM, .parse = do_include },
};

static const struct conf_section main_section = { main_keys,
						  sizeof(main_keys) / sizeof(main_keys[0]),
						  "unknown key" };

/* [access]: who may use each role. */
static const struct conf_key access_keys[] = {
	{ "admin", CONF_CUSTOM, MAIN(access[ROLE_ADMIN]), .parse = parse_access,
	  .release = access_release },
	{ "run", CONF_CUSTOM, MAIN(access[ROLE_RUN]), .parse = parse_access,
	  .release = access_release },
	{ "state", CONF_CUSTOM, MAIN(access[ROLE_STATE]), .parse = parse_access,
	  .release = access_release },
	{ "read", CONF_CUSTOM, MAIN(access[ROLE_READ]), .parse = parse_access,
	  .release = access_release },
};

static const struct conf_section access_section = { access_keys,
						    sizeof(access_keys) / sizeof(access_keys[0]),
						    "unknown key (admin, run, state, read)" };

/* Valid UTF-8 (what jansson accepts): every config text may end up in a
 * JSON answer (pool.list, error messages). */
static bool utf8_valid(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

struct pool_conf *conf_find_pool(const struct conf *c, const char *name)
{
	for (struct pool_conf *p = c->pools; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

/* The pool a [pool:NAME] line fills: a new one at the section's first key.
 * NULL with st->err set when the section is refused. */
bool pool_name_reserved(const char *name)
{
	size_t n = 0;

	if (name[0] != 'u')
		return false;
	while (name[1 + n] >= '0' && name[1 + n] <= '9')
		n++;
	return n > 0 && name[1 + n] == '.';
}

static struct pool_conf *section_pool(struct parse_state *st, const char *section, bool new_section)
{
	const char *name = section + 5;
	struct pool_conf *p, **tail;

	if (!new_section)
		return st->pool;
	if (conf_find_pool(st->conf, name)) {
		snprintf(st->err, sizeof(st->err), "[%s]: pool defined twice", section);
		return NULL;
	}
	if (!name_valid(name, false)) {
		snprintf(st->err, sizeof(st->err),
			 "[%s]: invalid pool name (expected [A-Za-z0-9_.-]{1,64})", section);
		return NULL;
	}
	if (pool_name_reserved(name)) {
		snprintf(st->err, sizeof(st->err),
			 "[%s]: names u<UID>.NAME are kept for the pools of run peers", section);
		return NULL;
	}
	if (!(p = pool_conf_new(name))) {
		snprintf(st->err, sizeof(st->err), "out of memory");
		return NULL;
	}
	p->file = strdup(st->file);
	/* append, keeping file order */
	for (tail = &st->conf->pools; *tail; tail = &(*tail)->next)
		;
	*tail = p;
	st->conf->n_pools++;
	st->pool = p;
	return p;
}

/* The hook a [hook:NAME] line fills: a new one at the section's first key.
 * NULL with st->err set when the section is refused. */
static struct hook_conf *section_hook(struct parse_state *st, const char *section, bool new_section)
{
	const char *name = section + 5;
	struct hook_conf *h, **tail;

	for (tail = &st->conf->hooks; *tail; tail = &(*tail)->next)
		if (new_section && strcmp((*tail)->name, name) == 0) {
			snprintf(st->err, sizeof(st->err), "[%s]: hook defined twice", section);
			return NULL;
		}
	if (!new_section)
		return st->hook;
	if (!name_valid(name, false)) {
		snprintf(st->err, sizeof(st->err),
			 "[%s]: invalid hook name (expected [A-Za-z0-9_.-]{1,64})", section);
		return NULL;
	}
	if (st->conf->n_hooks >= HOOKS_MAX) {
		snprintf(st->err, sizeof(st->err), "[%s]: more than %d hooks", section, HOOKS_MAX);
		return NULL;
	}
	if (!(h = hook_conf_new(name)) || !(h->file = strdup(st->file))) {
		hook_conf_free(h);
		snprintf(st->err, sizeof(st->err), "out of memory");
		return NULL;
	}
	*tail = h;
	st->conf->n_hooks++;
	st->hook = h;
	return h;
}

/* libinih callback: returns 1 to go on, 0 on error (ini_parse gives the line). */
static int conf_ini_handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_state *st = user;
	char sub[CONF_ERR_MAX] = "";
	bool new_section = strcmp(section, st->section) != 0;
	struct pool_conf *p;
	int r;

	if (!utf8_valid(section) || !utf8_valid(key) || !utf8_valid(value)) {
		snprintf(st->err, sizeof(st->err), "not valid UTF-8");
		return 0;
	}
	snprintf(st->section, sizeof(st->section), "%s", section);
	if (strcmp(section, "mpsupd") == 0)
		r = conf_key_set(&main_section, st->conf, st, key, value, sub, sizeof(sub));
	else if (strcmp(section, "access") == 0)
		r = conf_key_set(&access_section, st->conf, st, key, value, sub, sizeof(sub));
	else if (strncmp(section, "pool:", 5) == 0) {
		if (!(p = section_pool(st, section, new_section)))
			return 0;
		r = pool_conf_set(p, key, value, sub, sizeof(sub));
	} else if (strncmp(section, "hook:", 5) == 0) {
		struct hook_conf *h = section_hook(st, section, new_section);
		if (!h)
			return 0;
		r = hook_conf_set(h, key, value, sub, sizeof(sub));
	} else {
		snprintf(st->err, sizeof(st->err),
			 "[%s]: unknown section (mpsupd, access, pool:NAME, hook:NAME)", section);
		return 0;
	}
	/* an error inside an included file already names its file and line */
	if (r < 0 && !st->err_done)
		snprintf(st->err, sizeof(st->err), "[%s] %s: %s", section, key, sub);
	return r < 0 ? 0 : 1;
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
	for (struct hook_conf *h = st->conf->hooks; h; h = h->next) {
		char sub[CONF_ERR_MAX];

		if (hook_conf_check(h, sub, sizeof(sub)) < 0) {
			snprintf(st->err, sizeof(st->err), "%s: [hook:%s] %s", h->file, h->name,
				 sub);
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

/* A quarter of the machine's memory (max_memory's default; 0 = unknown,
 * no limit). */
static uint64_t default_max_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size / 4 : 0;
}

void conf_defaults(struct conf *c)
{
	char err[CONF_ERR_MAX];

	memset(c, 0, sizeof(*c));
	/* the table's defaults are constants that parse (tests/unit/test_conf) */
	(void)conf_keys_defaults(&main_section, c, err, sizeof(err));
	c->max_memory = default_max_memory();
}

void conf_release(struct conf *c)
{
	free(c->file);
	conf_keys_release(&main_section, c);
	conf_keys_release(&access_section, c);
	while (c->pools) {
		struct pool_conf *n = c->pools->next;
		pool_conf_free(c->pools);
		c->pools = n;
	}
	while (c->hooks) {
		struct hook_conf *n = c->hooks->next;
		hook_conf_free(c->hooks);
		c->hooks = n;
	}
}

struct conf *conf_free(struct conf *c)
{
	if (!c)
		return NULL;
	conf_release(c);
	free(c);
	return NULL;
}
