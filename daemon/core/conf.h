/*
 * Configuration: the [mpsupd], [access] and [pool:NAME] sections of
 * mpsupd.conf(5), parsed with libinih into plain structures. A config is
 * parsed whole and validated before anything uses it (reload swaps it in
 * only when valid).
 */
#ifndef MPSUPD_CONF_H
#define MPSUPD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define CONF_ERR_MAX 512

enum pool_mode { POOL_MODE_SERVICE = 0, POOL_MODE_TASK };
enum task_queue_kind { TASK_QUEUE_LOCAL = 0, TASK_QUEUE_REDIS };
enum cgroup_mode { CGROUP_AUTO = 0, CGROUP_OFF };
enum ready_mode { READY_STARTED = 0, READY_NOTIFY };
enum restart_policy { RESTART_ALWAYS = 0, RESTART_ON_FAILURE, RESTART_NEVER };
enum output_kind { OUTPUT_NULL = 0, OUTPUT_INHERIT, OUTPUT_FILE, OUTPUT_JOURNAL, OUTPUT_CAPTURE };
enum state_sync { STATE_SYNC_ALWAYS = 0, STATE_SYNC_EVERYSEC, STATE_SYNC_NO };
enum state_backend_kind { STATE_BACKEND_LOCAL = 0, STATE_BACKEND_REDIS };

struct output_conf {
	enum output_kind kind;
	char *path;         /* OUTPUT_FILE */
	uint64_t max_bytes; /* rotate above this size; 0 = never */
	unsigned backups;   /* rotated files kept */
};

/* A file: output whose path has %(name)s, %(index)d or %(pool)s: one
 * file per process. */
bool output_per_process(const struct output_conf *o);
/* The path of o for a process (pool, name, index): malloc'd, or NULL with
 * why in err (a placeholder value that would make a path component "." or
 * "..", an empty one, or one too long). */
char *output_path_expand(const struct output_conf *o, const char *pool, const char *name,
			 unsigned index, char *err, size_t errlen);

/* One [pool:NAME] section or pool.add request. */
/* A resource limit for workers (limit_*). */
struct conf_rlimit {
	unsigned long long soft, hard; /* ULLONG_MAX = infinity */
	bool set;
};

/* The limit_* keys besides limit_nofile, in this order (conf_pool.c). */
enum pool_rlimit {
	POOL_RLIMIT_NPROC = 0,
	POOL_RLIMIT_CORE,
	POOL_RLIMIT_AS,
	POOL_RLIMIT_CPU,
	POOL_RLIMIT_FSIZE,
	POOL_RLIMIT_MEMLOCK,
	POOL_RLIMIT_STACK,
	POOL_RLIMIT__MAX
};

/* Who a process, pool or object belongs to, as far as access goes. */
struct owner {
	uid_t uid;    /* the uid of the peer that made it */
	bool set;     /* made by a peer (config pools and the like are nobody's) */
	bool private; /* access "private": hidden from every other non-admin uid */
};

struct pool_conf {
	char *name;
	char *command; /* as written; split by argv_split() at spawn */
	unsigned processes;
	enum pool_mode mode;
	enum restart_policy restart;
	uint8_t exit_codes[32]; /* bitmap of "expected" exit statuses */
	double start_secs;
	unsigned start_retries;
	double backoff_max;
	int stop_signal;
	double stop_timeout;
	char *user;
	char *group;
	char *directory;
	mode_t umask;
	struct conf_rlimit
		limit_nofile; /* the workers' RLIMIT_NOFILE; unset: the daemon's original */
	struct conf_rlimit limits[POOL_RLIMIT__MAX]; /* unset: inherited */
	int nice;                                    /* 0 = the daemon's */
	int oom_score_adj;                           /* 0 = the daemon's */
	enum ready_mode ready;                       /* when a member counts as running */
	double ready_timeout;                        /* notify: READY=1 within; 0 = none */
	uint64_t memory_max, memory_high;            /* cgroup limits in bytes; 0 = none */
	unsigned cpu_max;                            /* percent of one CPU; 0 = none */
	unsigned pids_max;                           /* 0 = none */
	char **environment;                          /* NULL-terminated "K=V" list */
	struct output_conf out;
	struct output_conf err;
	bool output_prefix; /* file lines start with the process name */
	bool autostart;
	int priority;
	double task_timeout; /* 0 = none */
	unsigned task_retries;
	unsigned task_window; /* tasks in flight per worker */
	bool task_chunks;     /* its workers take {"items": [...]} lines */
	/* redis: one queue shared by every host's mpsupd (task_redis.c) */
	enum task_queue_kind task_queue;
	unsigned max_pending;
	unsigned task_max_per_worker; /* tasks before a worker is replaced; 0 = no limit */
	char *file;                   /* where it was defined (NULL for pool.add) */
	int line;
	struct owner owner; /* pool.add: its adder and access (not a config key) */
	struct pool_conf *next;
};

/* One role's allow list from [access]: users, @groups and "*". */
struct access_list {
	bool any;
	uid_t *uids;
	size_t n_uids;
	gid_t *gids;
	size_t n_gids;
	bool set; /* the key appeared in the config */
};

enum role { ROLE_NONE = 0, ROLE_READ, ROLE_STATE, ROLE_RUN, ROLE_ADMIN };

/* One [hook:NAME] section (conf_hook.c, docs/hooks.md). */
#define HOOKS_MAX 64
#define HOOK_PATTERNS_MAX 32
struct hook_conf {
	char *name;
	char *events;  /* patterns separated by spaces */
	char *command; /* words, split at each run; no shell */
	char *user;    /* NULL: the daemon's */
	double timeout;
	unsigned max_queued;
	char *file;
	struct hook_conf *next;
};

struct hook_conf *hook_conf_new(const char *name);
int hook_conf_set(struct hook_conf *h, const char *key, const char *value, char *err,
		  size_t errlen);
/* Whole-section checks: command and events present. */
int hook_conf_check(const struct hook_conf *h, char *err, size_t errlen);
struct hook_conf *hook_conf_free(struct hook_conf *h);

struct conf {
	char *file;
	char *socket;
	mode_t socket_mode;
	char *socket_group;
	char *metrics_listen;    /* unix:/PATH or a loopback HOST:PORT; NULL = off */
	struct hook_conf *hooks; /* in file order */
	unsigned n_hooks;
	bool metrics_usage;      /* per-process CPU and memory in the metrics (/proc reads) */
	char *runtime_dir;       /* the process registry's directory; NULL = the socket's */
	enum cgroup_mode cgroup; /* one cgroup per worker when delegated (auto) */
	int log_level;
	char *state_file;
	enum state_sync state_sync;
	uint64_t state_log_max_bytes;
	bool state_dir_check;          /* refuse a state directory others may write */
	double persist_outage_timeout; /* answers held by a failed write: then unavailable */
	enum state_backend_kind state_backend; /* read at start only */
	char *redis_address;                   /* a Unix socket path or host:port */
	char *redis_prefix;                    /* before every key */
	double redis_lease;                    /* holds of a host that is gone expire */

	size_t max_request_bytes;
	unsigned max_clients;
	unsigned max_clients_per_uid;
	unsigned max_json_depth;
	size_t max_output_bytes; /* a connection's unsent output before it is dropped */
	size_t max_output_total; /* all connections' unsent output */
	double shutdown_timeout;

	uint64_t max_memory; /* shared-state data bytes; 0 = no limit */
	unsigned max_objects;
	unsigned max_object_items;      /* dict keys / list items per object */
	unsigned max_queue_items;       /* all queues together */
	unsigned max_waiters;           /* per object */
	unsigned max_oneshots;          /* finished one-shot records kept */
	unsigned max_processes;         /* all processes together */
	unsigned max_processes_per_uid; /* run by one non-admin uid (role run) */
	unsigned max_subscribers;
	unsigned log_ring_lines;   /* per process */
	unsigned task_results_max; /* finished submitted tasks kept */
	double task_results_age;

	struct access_list access[ROLE_ADMIN + 1]; /* indexed by enum role */

	struct pool_conf *pools; /* in file order */
	unsigned n_pools;
};

/* Is name of the form u<UID>.NAME, kept for the pools run peers add
 * (so a configured pool never meets one)? */
bool pool_name_reserved(const char *name);

/* Defaults for every key. */
void conf_defaults(struct conf *c);
/*
 * Load and validate a config file (and its includes). On failure returns a
 * negative errno and writes "FILE:LINE: key: problem" to err.
 */
int conf_load(const char *path, struct conf **ret, char *err, size_t errlen);
/* Parse a config from a string (tests, fuzzing); name is used in messages. */
int conf_load_string(const char *text, const char *name, struct conf **ret, char *err,
		     size_t errlen);
/* Free what c holds (its strings, pools, hooks), not c itself. */
void conf_release(struct conf *c);
struct conf *conf_free(struct conf *c);

/* A pool with defaults and the given name. */
struct pool_conf *pool_conf_new(const char *name);
struct pool_conf *pool_conf_free(struct pool_conf *p);
struct pool_conf *pool_conf_dup(const struct pool_conf *p);
/* Set one key of a pool from its text form; -EINVAL with a message in err. */
int pool_conf_set(struct pool_conf *p, const char *key, const char *value, char *err,
		  size_t errlen);
/* Check a complete pool (command present...); -EINVAL with err. */
int pool_conf_check(const struct pool_conf *p, char *err, size_t errlen);
/* Build a pool from a pool.add request {pool, key: value...}; values may be
 * strings, numbers or booleans. */
int pool_conf_from_json(json_t *obj, struct pool_conf **ret, char *err, size_t errlen);
/* True when two pool definitions differ in anything but `processes`. */
bool pool_conf_differs(const struct pool_conf *a, const struct pool_conf *b);
struct pool_conf *conf_find_pool(const struct conf *c, const char *name);
/* The pool definition as JSON (for pool.list). */
json_t *pool_conf_to_json(const struct pool_conf *p);

/* Parsers shared with the protocol. */
int conf_parse_duration(const char *s, double *ret);
int conf_parse_signal(const char *s, int *ret);
const char *conf_signal_name(int sig);
/* Split shell-like words ('single', "double" quotes, backslash escapes; no
 * expansion). *ret is a NULL-terminated vector for conf_strv_free(). */
int conf_split_words(const char *s, char ***ret, char *err, size_t errlen);
char **conf_strv_free(char **v); /* NULL-tolerant; returns NULL */
/* Names: [A-Za-z0-9_.-]{1,64} (with_colon also allows ':'). */
bool name_valid(const char *s, bool with_colon);

#endif
