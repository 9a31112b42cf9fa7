/*
 * Supervised processes and worker pools. A struct proc is one process slot
 * (a pool member POOL:INDEX or a one-shot started by proc.run) driven by the
 * state machine of proc_fsm.h; a struct pool holds its definition (a copy
 * of a pool_conf) and its members by index. proc.c and the files beside it
 * (proc_pool.c, proc_oneshot.c, proc_group.c, ...: docs/processes.md) own
 * their life; the protocol commands are in proc_cmd.c.
 */
#ifndef MPSUPD_PROC_H
#define MPSUPD_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <jansson.h>

#include "access.h"
#include "conf.h"
#include "proc_fsm.h"
#include "proc_output.h"
#include "scope.h"

struct event;
struct pool;
struct task_pool;
struct worker;
struct notify_sock;
struct rolling;

/* What proc.run asked for. */
/* A user and group to run as, resolved from names or numbers. */
struct run_ids {
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* every group, gid included */
	int n_groups;
	char *home, *user_name, *shell; /* from the passwd entry; NULL without one */
};

/* Resolve user and group (names or numbers; either may be NULL: the
 * daemon's own) like a pool's: passwd entry, supplementary groups (when
 * root), the passwd strings. On failure *ret_error says why (malloc'd). */
int run_ids_resolve(const char *user, const char *group, struct run_ids *ret, char **ret_error);
void run_ids_clear(struct run_ids *ids);

struct oneshot {
	char **argv;
	char **env; /* "K=V" from the request */
	char *cwd;
	bool daemon;      /* terminated at shutdown instead of waited for */
	char *stdin_data; /* written to the child's stdin, then closed */
	size_t stdin_len;
	/* stdio "passed": the caller's 0, 1, 2 (-1: none), closed after the spawn */
	int stdio[3];
	bool stdio_passed;
	bool set_ids; /* run as ids (the requesting peer, or the user an admin named) */
	struct run_ids ids;
	double finished;    /* monotonic time it reached a final state; 0 = not yet */
	struct owner owner; /* the peer that ran it */
	/* scope "process" with daemon: terminated when that process exits */
	struct scope_link scope;
	struct proc *proc;  /* its record */
	uint32_t name_hash; /* of proc->name: proc_find compares it first */
	TAILQ_ENTRY(proc) entry;
};

struct proc {
	char *name;
	struct pool *pool; /* NULL for a one-shot */
	unsigned index;
	struct oneshot *os; /* NULL for a pool member */
	enum proc_state state;
	pid_t pid;                   /* 0 once reaped */
	pid_t last_pid;              /* of the run that ended last */
	pid_t pgid;                  /* the process group of the current run */
	uint64_t start_lo, start_hi; /* its start time lies in this range (clock ticks since
				      * boot, for the process registry); 0 = unknown */
	int stop_signal;             /* of the current run (a reload may change the pool) */
	double stop_timeout;
	/* CPU seconds and resident bytes of run usage_pid, read at usage_at
	 * (monotonic) for the metrics (proc_metrics.c); usage_pid 0 = none. */
	double usage_cpu, usage_rss, usage_at;
	pid_t usage_pid;
	bool has_exitcode;
	int exitcode;
	char *exit_status_text;
	char *reason;         /* why it is not running (proc_set_reason); NULL = none */
	const char *stop_why; /* the reason its current stop gives; NULL = none yet */
	double started_wall;  /* 0 = never started */
	double started_mono;
	unsigned restarts; /* spawns after the first */
	unsigned spawns;
	unsigned failures;          /* failed starts since the last stable run */
	unsigned resource_retries;  /* spawns in a row that lacked descriptors/processes */
	bool spawn_transient;       /* the last spawn failed for lack of them: retried */
	bool restart_pending;       /* start again once stopped */
	bool removing;              /* freed once in a final state (scale down, remove) */
	bool group_wait;            /* main process reaped, waiting for its group */
	bool freed;                 /* on the free list */
	struct event *timer;        /* start_secs, ready_timeout, backoff or stop timeout */
	struct notify_sock *notify; /* ready = notify: its socket (proc_ready.c) */
	bool ready_seen;            /* READY=1 came in this run */
	bool notify_stopping;       /* STOPPING=1 came in this run */
	char *notify_status;        /* the last STATUS= of this run */
	unsigned long oom_kills;    /* its cgroup's oom_kill count at the spawn */
	bool rolling_pending;       /* queued by its pool's rolling restart */
	bool rolling_inflight;      /* restarted by it, not running again yet */
	struct outpipe *out, *err;
	struct outfile *fout, *ferr; /* its own output files (per-process file: paths) */
	struct logring ring;
	struct worker *worker;    /* task pools: its task channel (task.c) */
	struct proc *hnext;       /* pid hash chain */
	TAILQ_ENTRY(proc) gentry; /* group-wait list or free list */
};

struct pool {
	char *name;
	struct pool_conf *conf; /* own copy */
	struct proc **members;  /* by index; NULL = free slot */
	unsigned n_slots;
	struct outfile *out, *err; /* file outputs, NULL when none */
	bool err_to_out;           /* stderr goes to stdout's file */
	bool journal_failing[2];   /* stdout/stderr = journal, captured instead */
	/* the user and groups to run as, resolved once */
	bool set_ids;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int n_groups;
	char *home, *user_name, *shell;
	char *ids_error;           /* resolution failed: every spawn fails with this */
	bool removing;             /* stopping its members, then freed */
	bool from_config;          /* defined in a config file (reload manages it) */
	struct task_pool *tasks;   /* task pools: backlog and idle workers (task.c) */
	uint64_t starts, restarts; /* spawns of its members, and those after a first (metrics) */
	struct owner owner;        /* the peer that added it (pool.add) */
	struct scope_link scope;   /* scope "process": removed when that process exits */
	/* stdio "passed": the adder's 0, 1, 2, given to every run of every
	 * member (a task worker takes only 2), closed with the pool */
	int stdio[3];
	bool stdio_passed;
	struct rolling *rolling;    /* a rolling restart under way (proc_rolling.c) */
	unsigned defined_processes; /* `processes` of its definition (a scale differs) */
	TAILQ_ENTRY(pool) entry;
};

TAILQ_HEAD(pool_list, pool);
TAILQ_HEAD(proc_list, proc);

extern struct pool_list pools; /* in creation order */
/* Every pool the metrics show: all but private ones (the metrics answer
 * any reader, and a private pool's name is not disclosed). The empty then
 * keeps an else after the loop body from binding here. */
#define METRICS_POOLS_FOREACH(pl)          \
	TAILQ_FOREACH(pl, &pools, entry)   \
		if ((pl)->owner.private) { \
		} else
extern struct proc_list oneshots; /* in creation order */

/* Module set-up: subreaper, SIGCHLD and SIGUSR1 watchers. */
int proc_init(void);
/* Free everything (after stop). */
void proc_cleanup(void);

/* Processes that count against max_processes. */
unsigned proc_count(void);
/* Process groups left by a main process that died on its own, still being
 * stopped (daemon.info). */
unsigned proc_stray_groups(void);
/* Every process group we run (live children, groups being stopped, stray
 * groups), for the process registry. */
struct procreg_rec;
void proc_registry_each(void (*fn)(const struct procreg_rec *r, void *arg), void *arg);

/* Who p belongs to: a one-shot's runner, a member's pool's adder. */
const struct owner *proc_owner(const struct proc *p);
/* Processes that uid owns and that are not in a final state (the count
 * max_processes_per_uid caps). */
unsigned proc_count_of_uid(uid_t uid);

struct pool *pool_find(const char *name);
/* Create a pool from a definition (copied) and its members; start them
 * when start is set. -EEXIST, -ENOSPC (max_processes), -EMFILE (the
 * descriptor budget: proc_fds_refusal), -ENOMEM. */
int pool_create(const struct pool_conf *pc, bool start, bool from_config, struct pool **ret);
/* pool_create for pool.add: its members run as ids (a run peer's pool;
 * NULL: pc's user) and get stdio (3 descriptors, stdio "passed"; NULL:
 * none) as theirs; both are taken, also on failure. */
int pool_create_as(const struct pool_conf *pc, struct run_ids *ids, int *stdio, bool start,
		   struct pool **ret);
/* Restart the members v[0..n) of pl (others are skipped) at most
 * max_unavailable at a time, each next one once a restarted one runs
 * (proc_rolling.c). -EBUSY when a roll is under way (unless replace). */
int pool_rolling_start(struct pool *pl, struct proc *const *v, size_t n, unsigned max_unavailable,
		       bool replace);
/* Stop every member, then free the pool (asynchronously). */
void pool_remove(struct pool *pl);
/* Grow (new indexes, started) or shrink (stop the highest). -ENOSPC, -EMFILE. */
int pool_scale(struct pool *pl, unsigned processes);
/* A new definition: members restart with it (processes may change too). */
int pool_replace(struct pool *pl, const struct pool_conf *pc);
/*
 * The descriptor budget (proc_fds.c): what workers, one-shots and
 * connections cost against RLIMIT_NOFILE.
 */
/* A one-shot: stdout and stderr pipes, stdin while it is fed. */
#define PROC_FDS_ONESHOT 3
/* Count what the daemon holds before anything is supervised. */
void proc_fds_init(void);
/* Descriptors the daemon holds for one worker of pc (journal_failing: the
 * streams captured because the journal is away; may be NULL). */
unsigned proc_fds_worker_cost(const struct pool_conf *pc, const bool journal_failing[2]);
/* A new pool of pc with processes workers: its files and workers. */
unsigned proc_fds_pool_cost(const struct pool_conf *pc, unsigned processes);
/* May need more descriptors be promised? -EMFILE when not, with the
 * numbers (naming what) in proc_fds_refusal(). */
int proc_fds_check(unsigned long long need, const char *what);
const char *proc_fds_refusal(void);
/* May one more scope pidfd be opened (scope_set_budget)? -EMFILE. */
int proc_fds_check_scope(void);
/* {limit, used, daemon, connections, processes, per_worker{...}, ...} */
json_t *proc_fds_info(void);

/* Process and pool metric families (proc_metrics.c). */
struct evbuffer;
void proc_metrics(struct evbuffer *b);

/* The file p's line of stream goes to (its pool's, or its own opened on
 * first use), or NULL. */
struct outfile *pool_member_outfile(struct proc *p, int stream);
/* Close p's own output files. */
void proc_outfiles_close(struct proc *p);

/* Reopen every pool's output files. */
void pools_reopen_logs(void);

struct proc *proc_find(const char *name);
/* A new one-shot (takes os), spawned at once. On failure returns NULL
 * with the reason in err (the record is not kept); *ret_short says the
 * spawn lacked descriptors or processes. */
struct proc *oneshot_run(const char *name, struct oneshot *os, bool *ret_short, char *err,
			 size_t errlen);
/* Free a one-shot record (not alive). */
void oneshot_forget(struct proc *p);
/* A generated run-N name that is free. */
void oneshot_gen_name(char *buf, size_t len);
struct oneshot *oneshot_free(struct oneshot *os);
/* Close a one-shot's passed descriptors (after its spawn). */
void oneshot_close_stdio(struct oneshot *os);

/* Requests on one process. */
void proc_start(struct proc *p);
void proc_stop(struct proc *p);
void proc_restart(struct proc *p);
/* Send sig to the main process. -ESRCH when not running. */
int proc_signal(struct proc *p, int sig);

/* The process record (docs/protocol.md), as JSON text (status of thousands of
 * processes is written without jansson values: jsonw.h). */
struct jsonw;
void proc_record_write(const struct proc *p, struct jsonw *w);
bool proc_is_alive(const struct proc *p);
/* Why p is in backoff or fatal (the failed spawn or the death that put it
 * there); NULL in any other state. */
const char *proc_reason(const struct proc *p);
/* Set why p is not running ("exit 3", "killed by SIGKILL", ...): the one
 * place a reason is formatted; NULL fmt clears it. */
void proc_set_reason(struct proc *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* exitcode is not null: not alive, and it has run (or failed to spawn). */
bool proc_exitcode_known(const struct proc *p);

/* Shutdown: stop everything in reverse priority, then call done. */
void proc_shutdown(void (*done)(void));
/* Start autostart pools of conf in priority order. */
int proc_start_config(const struct conf *conf);
/* Apply a new config. */
void proc_reload(const struct conf *newconf, json_t *changes);

/*
 * What supervision tells the parts built on it (the process commands, task
 * pools). It never calls them by name: each registers an observer once,
 * before anything is spawned (the daemon's assembly, modules.c), and the
 * observers are called in registration order. Any member may be NULL.
 */
struct proc_observer {
	/* p settled in a new state (no intermediate state is seen). */
	void (*settled)(struct proc *p);
	/* p's main process ended (before a restart replaces its pipes). */
	void (*exited)(struct proc *p);
	/* p's record is about to be freed. */
	void (*gone)(struct proc *p);
	/* pl is being removed (its members are gone already). */
	void (*pool_gone)(struct pool *pl);
	/* p printed a line (stdout or stderr). */
	void (*output_line)(struct proc *p, const struct logline *l);
	/* A worker of a task pool was spawned: its stdin (in_fd) and stdout
	 * (out_fd) are the task channel. The first observer that has this
	 * member takes both descriptors. */
	void (*channel)(struct proc *p, int in_fd, int out_fd);
	/* More members of p's process record (status and the like). */
	void (*record_write)(const struct proc *p, struct jsonw *w);
};

#define PROC_MAX_OBSERVERS 4
/* Register o (static storage); -ENOSPC beyond PROC_MAX_OBSERVERS. */
int proc_observe(const struct proc_observer *o);

/* Tell every observer (proc.c, proc_spawn.c, proc_output.c). */
void proc_notify_settled(struct proc *p);
void proc_notify_exited(struct proc *p);
void proc_notify_gone(struct proc *p);
void proc_notify_pool_gone(struct pool *pl);
void proc_notify_output_line(struct proc *p, const struct logline *l);
bool proc_notify_channel(struct proc *p, int in_fd, int out_fd);
void proc_notify_record_write(const struct proc *p, struct jsonw *w);

#endif
