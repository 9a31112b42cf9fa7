/*
 * Spawning. Everything the child needs (argv, environment, exec candidates
 * along PATH, descriptors, ids) is prepared in the parent; the child only
 * makes system calls (it runs in vfork's shared memory) and either execs or
 * writes {step, errno} to a CLOEXEC pipe and exits 127. All signals are
 * blocked around vfork so no daemon handler runs in the child; the child
 * resets every disposition, then clears its mask just before exec.
 *
 * Environment policy: a worker gets its pool's `environment` (or proc.run's
 * env), PATH (PROC_DEFAULT_PATH unless set), HOME/USER/LOGNAME/SHELL when
 * the pool names a `user`, and MPSUP_SOCKET, MPSUP_POOL, MPSUP_NAME,
 * MPSUP_INDEX, and NOTIFY_SOCKET (its own, proc_ready.c) with ready =
 * notify. Nothing of the daemon's own environment is passed on (not its
 * NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "argv.h"
#include "command.h"
#include "conn.h"
#include "fdio.h"
#include "log.h"
#include "proc.h"
#include "proc_cgroup.h"
#include "proc_ready.h"
#include "proc_registry.h"
#include "proc_spawn.h"

enum spawn_step {
	STEP_CGROUP = 1,
	STEP_SETSID,
	STEP_DUP,
	STEP_CHDIR,
	STEP_RLIMIT,
	STEP_NICE,
	STEP_OOM_SCORE,
	STEP_SETGROUPS,
	STEP_SETGID,
	STEP_SETUID,
	STEP_EXEC,
};

struct spawn_failure {
	int step;
	int err;
	int arg; /* STEP_RLIMIT: the resource */
};

/* The limit_* keys' resources, in enum pool_rlimit's order. */
static const struct {
	int resource;
	const char *name;
} rlimit_res[POOL_RLIMIT__MAX] = {
	[POOL_RLIMIT_NPROC] = { RLIMIT_NPROC, "NPROC" },
	[POOL_RLIMIT_CORE] = { RLIMIT_CORE, "CORE" },
	[POOL_RLIMIT_AS] = { RLIMIT_AS, "AS" },
	[POOL_RLIMIT_CPU] = { RLIMIT_CPU, "CPU" },
	[POOL_RLIMIT_FSIZE] = { RLIMIT_FSIZE, "FSIZE" },
	[POOL_RLIMIT_MEMLOCK] = { RLIMIT_MEMLOCK, "MEMLOCK" },
	[POOL_RLIMIT_STACK] = { RLIMIT_STACK, "STACK" },
};

/* All the child needs, built by the parent. */
struct spawn_plan {
	char **argv;
	char **envp;
	char **paths; /* exec candidates, in PATH order */
	const char *dir;
	mode_t umask;
	bool set_groups, set_ids;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
	int fd[3];
	int status_fd;
	int cgroup_fd;   /* its cgroup's cgroup.procs, -1 = none */
	bool set_nofile; /* give the child nofile (its own limit) */
	struct rlimit nofile;
	bool set_limit[POOL_RLIMIT__MAX]; /* the pool's other limit_* */
	struct rlimit limit[POOL_RLIMIT__MAX];
	int nice;          /* 0: the daemon's */
	char oom_score[8]; /* written to /proc/self/oom_score_adj; "" = the daemon's */
};

static int devnull = -1;
static struct rlimit nofile_orig;
static bool nofile_raised;

/* Raise our soft descriptor limit to the hard one, as a service manager
 * does for its services: every captured worker holds pipes here. Children
 * get back the limit we were started with. */
void proc_spawn_init(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur >= rl.rlim_max) {
		log_info("proc", "descriptor limit (RLIMIT_NOFILE): %llu",
			 (unsigned long long)rl.rlim_cur);
		return;
	}
	nofile_orig = rl;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("proc", "cannot raise the descriptor limit from %llu to %llu: %s",
			 (unsigned long long)nofile_orig.rlim_cur, (unsigned long long)rl.rlim_max,
			 strerror(errno));
		return;
	}
	nofile_raised = true;
	log_info("proc",
		 "descriptor limit (RLIMIT_NOFILE) raised from %llu to %llu; workers get %llu",
		 (unsigned long long)nofile_orig.rlim_cur, (unsigned long long)rl.rlim_max,
		 (unsigned long long)nofile_orig.rlim_cur);
}

void proc_spawn_cleanup(void)
{
	if (devnull >= 0)
		close(devnull);
	devnull = -1;
}

static int devnull_fd(void)
{
	if (devnull < 0)
		devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	return devnull;
}

/* Close every descriptor above 2 except keep. */
static void close_from_3(int keep)
{
	int max;

	if (keep > 3 && close_range(3, (unsigned)keep - 1, 0) < 0)
		goto slow;
	if (close_range((unsigned)keep + 1, ~0U, 0) < 0)
		goto slow;
	return;
slow:
	max = (int)sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 1 << 20)
		max = 1 << 20;
	for (int fd = 3; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

static __attribute__((noreturn)) void child_fail_arg(const struct spawn_plan *sp, int step, int arg)
{
	struct spawn_failure f = { step, errno, arg };

	(void)!write(sp->status_fd, &f, sizeof(f));
	_exit(127);
}

static __attribute__((noreturn)) void child_fail(const struct spawn_plan *sp, int step)
{
	struct spawn_failure f = { step, errno, -1 };

	(void)!write(sp->status_fd, &f, sizeof(f));
	_exit(127);
}

/* Set signal s to its default action. glibc refuses the signals it keeps
 * for itself (32 and 33): an ignored one, inherited from whoever started
 * mpsupd, would reach the child; the kernel call resets it (on the
 * architectures where struct sigaction has the generic layout). */
static void child_default_signal(int s, const struct sigaction *dfl)
{
	if (sigaction(s, dfl, NULL) == 0 || errno != EINVAL)
		return;
#if defined(__x86_64__) || defined(__aarch64__) || defined(__i386__) || defined(__arm__) || \
	defined(__riscv) || defined(__powerpc64__) || defined(__s390x__)
	{
		struct {
			void (*handler)(int);
			unsigned long flags;
			void (*restorer)(void);
			unsigned long mask[2];
		} k = { SIG_DFL, 0, NULL, { 0, 0 } };
		(void)syscall(SYS_rt_sigaction, s, &k, NULL, (size_t)8);
	}
#endif
}

/* The pool's other rlimits, nice and OOM score, before the ids drop
 * (raising a hard limit or lowering either needs the privilege). */
static void child_limits(const struct spawn_plan *sp)
{
	for (int i = 0; i < POOL_RLIMIT__MAX; i++)
		if (sp->set_limit[i] && setrlimit(rlimit_res[i].resource, &sp->limit[i]) < 0)
			child_fail_arg(sp, STEP_RLIMIT, i);
	if (sp->nice && setpriority(PRIO_PROCESS, 0, sp->nice) < 0)
		child_fail(sp, STEP_NICE);
	if (sp->oom_score[0]) {
		int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
		size_t len = strlen(sp->oom_score);
		if (fd < 0 || write(fd, sp->oom_score, len) != (ssize_t)len)
			child_fail(sp, STEP_OOM_SCORE);
		close(fd);
	}
}

/* The child between vfork and exec: system calls only. */
static __attribute__((noreturn)) void child_exec(const struct spawn_plan *sp)
{
	struct sigaction sa;
	sigset_t none;
	int eacces = 0, last = ENOENT;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			child_default_signal(s, &sa);
	/* into its own cgroup first: nothing it starts can be outside */
	if (sp->cgroup_fd >= 0 && write(sp->cgroup_fd, "0", 1) < 0)
		child_fail(sp, STEP_CGROUP);
	if (setsid() < 0)
		child_fail(sp, STEP_SETSID);
	for (int i = 0; i < 3; i++) {
		if (sp->fd[i] == i) {
			if (fcntl(i, F_SETFD, 0) < 0)
				child_fail(sp, STEP_DUP);
		} else if (dup2(sp->fd[i], i) < 0)
			child_fail(sp, STEP_DUP);
	}
	close_from_3(sp->status_fd);
	umask(sp->umask);
	if (sp->dir && chdir(sp->dir) < 0)
		child_fail(sp, STEP_CHDIR);
	if (sp->set_nofile && setrlimit(RLIMIT_NOFILE, &sp->nofile) < 0)
		child_fail(sp, STEP_RLIMIT);
	child_limits(sp);
	if (sp->set_groups && setgroups(sp->n_groups, sp->groups) < 0)
		child_fail(sp, STEP_SETGROUPS);
	if (sp->set_ids) {
		if (setgid(sp->gid) < 0)
			child_fail(sp, STEP_SETGID);
		if (setuid(sp->uid) < 0)
			child_fail(sp, STEP_SETUID);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (char **path = sp->paths; *path; path++) {
		execve(*path, sp->argv, sp->envp);
		if (errno == EACCES)
			eacces = 1;
		else if (errno != ENOENT && errno != ENOTDIR) {
			last = errno;
			break;
		}
	}
	errno = eacces && last == ENOENT ? EACCES : last;
	child_fail(sp, STEP_EXEC);
}

/* vfork with every signal blocked (no daemon handler may run in the
 * child); returns the pid or -1 with the error in *ret_errno. */
static pid_t spawn_child(const struct spawn_plan *sp, int *ret_errno)
{
	sigset_t all, old;
	pid_t pid;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
#if defined(__SANITIZE_ADDRESS__)
	pid = fork(); /* the sanitizers' runtime and vfork do not mix */
#else
	pid = vfork();
#endif
	if (pid == 0)
		child_exec(sp);
	*ret_errno = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

/* exec candidates for argv0: itself when it has a '/', else along PATH. */
static char **exec_paths(const char *argv0, const char *path)
{
	size_t n = 2, i = 0;
	char **v;

	if (strchr(argv0, '/')) {
		if (!(v = calloc(2, sizeof(*v))) || !(v[0] = strdup(argv0))) {
			free(v);
			return NULL;
		}
		return v;
	}
	for (const char *p = path; *p; p++)
		n += *p == ':';
	if (!(v = calloc(n, sizeof(*v))))
		return NULL;
	for (const char *p = path;;) {
		const char *end = strchrnul(p, ':');
		size_t dl = (size_t)(end - p);
		/* an empty element is the current directory, as in execvp */
		if (asprintf(&v[i], "%.*s%s%s", (int)dl, p, dl ? "/" : "", argv0) < 0) {
			v[i] = NULL;
			conf_strv_free(v);
			return NULL;
		}
		i++;
		if (!*end)
			break;
		p = end + 1;
	}
	return v;
}

struct strv {
	char **v;
	size_t n, cap;
};

static int strv_push(struct strv *s, char *str)
{
	if (!str)
		return -ENOMEM;
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv) {
			free(str);
			return -ENOMEM;
		}
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
	return 0;
}

static bool env_has(char **env, const char *key)
{
	size_t kl = strlen(key);

	for (char **e = env; e && *e; e++)
		if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
			return true;
	return false;
}

static char *kv(const char *k, const char *v)
{
	char *s;

	if (asprintf(&s, "%s=%s", k, v ? v : "") < 0)
		return NULL;
	return s;
}

char **proc_spawn_env(const struct proc *p)
{
	struct strv s = { 0 };
	char **base = p->pool ? p->pool->conf->environment : p->os->env;
	const struct pool *pl = p->pool;
	const char *user_name, *home, *shell;
	char idx[16];
	int r = 0;

	for (char **e = base; e && *e && r == 0; e++)
		if (strncmp(*e, "MPSUP_", 6) != 0)
			r = strv_push(&s, strdup(*e));
	if (r == 0 && !env_has(base, "PATH"))
		r = strv_push(&s, kv("PATH", PROC_DEFAULT_PATH));
	/* a pool's user, or the user an admin named at proc.run */
	user_name = pl ? pl->user_name : p->os->ids.user_name;
	home = pl ? pl->home : p->os->ids.home;
	shell = pl ? pl->shell : p->os->ids.shell;
	if (r == 0 && user_name) {
		if (home && !env_has(base, "HOME"))
			r = strv_push(&s, kv("HOME", home));
		if (r == 0 && !env_has(base, "USER"))
			r = strv_push(&s, kv("USER", user_name));
		if (r == 0 && !env_has(base, "LOGNAME"))
			r = strv_push(&s, kv("LOGNAME", user_name));
		if (r == 0 && shell && !env_has(base, "SHELL"))
			r = strv_push(&s, kv("SHELL", shell));
	}
	snprintf(idx, sizeof(idx), "%u", p->index);
	if (r == 0)
		r = strv_push(&s, kv("MPSUP_SOCKET", server_socket_path()));
	if (r == 0)
		r = strv_push(&s, kv("MPSUP_POOL", pl ? pl->name : ""));
	if (r == 0)
		r = strv_push(&s, kv("MPSUP_NAME", p->name));
	if (r == 0)
		r = strv_push(&s, kv("MPSUP_INDEX", pl ? idx : ""));
	if (r == 0 && proc_ready_path(p))
		r = strv_push(&s, kv("NOTIFY_SOCKET", proc_ready_path(p)));
	if (r < 0) {
		conf_strv_free(s.v);
		return NULL;
	}
	return s.v;
}

static const char *step_name(int step)
{
	switch (step) {
	case STEP_CGROUP: return "cgroup";
	case STEP_SETSID: return "setsid";
	case STEP_DUP: return "dup2";
	case STEP_CHDIR: return "chdir";
	case STEP_RLIMIT: return "setrlimit";
	case STEP_NICE: return "setpriority";
	case STEP_OOM_SCORE: return "oom_score_adj";
	case STEP_SETGROUPS: return "setgroups";
	case STEP_SETGID: return "setgid";
	case STEP_SETUID: return "setuid";
	case STEP_EXEC: return "exec";
	default: return "spawn";
	}
}

/*
 * stdout/stderr = journal: the child writes straight into journald, with
 * its process name as identifier, and mpsupd is not in the data path. Both
 * streams are logged at info unless a line starts with a "<N>" level prefix,
 * as systemd does for a service. When no journal is reachable the stream is
 * captured instead: one warning when that starts, one notice when the
 * journal is back.
 */
static int journal_fd(struct proc *p, int which)
{
	struct pool *pl = p->pool;
	bool *failing = which == 1 ? &pl->journal_failing[0] : &pl->journal_failing[1];
	int fd = sd_journal_stream_fd(p->name, LOG_INFO, 1);

	if (fd < 0) {
		if (!*failing)
			log_warn("proc", "pool %s: no journal for %s (%s): capturing it instead",
				 pl->name, which == 1 ? "stdout" : "stderr", strerror(-fd));
		*failing = true;
		return -1;
	}
	if (*failing)
		log_info("proc", "pool %s: the journal takes %s again", pl->name,
			 which == 1 ? "stdout" : "stderr");
	*failing = false;
	return fd;
}

/* The descriptor a child gets for one output stream (which: 1 or 2);
 * *ret_read is our end of a capture pipe (-1 when none); *owned says the
 * returned descriptor is ours to close once the child has it. */
static int output_fd(struct proc *p, int which, int *ret_read, bool *owned)
{
	const struct output_conf *oc = NULL;
	int pfd[2], fd;

	if (p->pool)
		oc = which == 1 ? &p->pool->conf->out : &p->pool->conf->err;
	*ret_read = -1;
	*owned = false;
	if (oc && oc->kind == OUTPUT_INHERIT)
		return which;
	if (oc && oc->kind == OUTPUT_NULL)
		return devnull_fd();
	if (oc && oc->kind == OUTPUT_JOURNAL && (fd = journal_fd(p, which)) >= 0) {
		*owned = true;
		return fd;
	}
	/* capture, file: (written by us, line by line) or journal's fallback */
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	*ret_read = pfd[0];
	*owned = true;
	return pfd[1];
}

bool proc_spawn_transient(int r)
{
	return r == -EMFILE || r == -ENFILE || r == -EAGAIN;
}

static rlim_t rlim_of(unsigned long long v)
{
	return v == ULLONG_MAX ? RLIM_INFINITY : (rlim_t)v;
}

/* The pool's limit_*, nice and oom_score_adj into sp. */
static void plan_limits(const struct pool_conf *c, struct spawn_plan *sp)
{
	for (int i = 0; i < POOL_RLIMIT__MAX; i++) {
		sp->set_limit[i] = c->limits[i].set;
		sp->limit[i].rlim_cur = rlim_of(c->limits[i].soft);
		sp->limit[i].rlim_max = rlim_of(c->limits[i].hard);
	}
	sp->nice = c->nice;
	if (c->oom_score_adj)
		snprintf(sp->oom_score, sizeof(sp->oom_score), "%d", c->oom_score_adj);
}

/* What to run and as whom: sp's argv (*ret_own_argv when built here), ids,
 * directory, environment, exec paths and descriptor limit. 0, or -errno
 * with the reason in err. */
static int plan_fill(struct proc *p, struct spawn_plan *sp, char ***ret_own_argv, char *err,
		     size_t errlen)
{
	struct pool *pl = p->pool;
	const char *path = NULL;

	if (pl) {
		if (pl->ids_error) {
			snprintf(err, errlen, "%s", pl->ids_error);
			return -EINVAL;
		}
		if (argv_build(pl->conf->command, pl->name, p->name, p->index, ret_own_argv, err,
			       errlen) < 0)
			return -EINVAL;
		sp->argv = *ret_own_argv;
		sp->dir = pl->conf->directory;
		sp->umask = pl->conf->umask;
		sp->set_ids = pl->set_ids;
		sp->uid = pl->uid;
		sp->gid = pl->gid;
		sp->groups = pl->groups;
		sp->n_groups = (size_t)pl->n_groups;
	} else {
		sp->argv = p->os->argv;
		sp->dir = p->os->cwd;
		sp->umask = 022;
		sp->set_ids = p->os->set_ids;
		sp->uid = p->os->ids.uid;
		sp->gid = p->os->ids.gid;
		sp->groups = p->os->ids.groups;
		sp->n_groups = (size_t)p->os->ids.n_groups;
	}
	sp->set_groups = sp->set_ids && geteuid() == 0;
	if (pl && pl->conf->ready == READY_NOTIFY) {
		int r = proc_ready_prepare(p, sp->set_ids ? sp->uid : geteuid(),
					   sp->set_ids ? sp->gid : getegid(), err, errlen);
		if (r < 0)
			return r;
	} else
		proc_ready_close(p);
	if (!(sp->envp = proc_spawn_env(p)))
		goto nomem;
	for (char **e = sp->envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	if (!(sp->paths = exec_paths(sp->argv[0], path ? path : PROC_DEFAULT_PATH)))
		goto nomem;
	if (pl)
		plan_limits(pl->conf, sp);
	if (pl && pl->conf->limit_nofile.set) {
		const struct conf_rlimit *lim = &pl->conf->limit_nofile;
		sp->set_nofile = true;
		sp->nofile.rlim_cur = lim->soft == ULLONG_MAX ? RLIM_INFINITY : (rlim_t)lim->soft;
		sp->nofile.rlim_max = lim->hard == ULLONG_MAX ? RLIM_INFINITY : (rlim_t)lim->hard;
	} else {
		/* the limit we were started with, not the one we raised */
		sp->set_nofile = nofile_raised;
		sp->nofile = nofile_orig;
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

/* The descriptors of one spawn besides the child's own (sp.fd). */
struct spawn_fds {
	int status[2]; /* the child reports a failed step on status[1] */
	int rd[3];     /* our ends: [0] the child's stdin end, closed after the spawn */
	int in_w;      /* our end of the child's stdin */
	bool owned[3]; /* sp.fd[i] is ours to close */
};

/* Open the child's stdin, stdout, stderr and the status pipe: 0 or -errno. */
static int fds_open(struct proc *p, bool task, struct spawn_plan *sp, struct spawn_fds *d)
{
	const int *passed = p->pool ? (p->pool->stdio_passed ? p->pool->stdio : NULL)
				    : (p->os->stdio_passed ? p->os->stdio : NULL);

	/* stdio "passed": the caller's own (the one-shot closes them after
	 * the spawn, the pool when it goes; a task worker's stdin and stdout
	 * stay its task channel) */
	if (passed && !task) {
		for (int i = 0; i < 3; i++)
			sp->fd[i] = passed[i];
		if (pipe2(d->status, O_CLOEXEC) < 0)
			return -errno;
		sp->status_fd = d->status[1];
		return 0;
	}
	if (task || (!p->pool && p->os->stdin_data)) {
		int ip[2];
		if (pipe2(ip, O_CLOEXEC) < 0)
			return -errno;
		sp->fd[0] = ip[0];
		d->in_w = ip[1];
		d->rd[0] = ip[0]; /* the child's end, closed below */
	} else if ((sp->fd[0] = devnull_fd()) < 0)
		return -errno;
	if (task) {
		int op[2];
		if (pipe2(op, O_CLOEXEC) < 0)
			return -errno;
		sp->fd[1] = op[1];
		d->rd[1] = op[0];
		d->owned[1] = true;
	} else if ((sp->fd[1] = output_fd(p, 1, &d->rd[1], &d->owned[1])) < 0)
		return -errno;
	if (passed)
		sp->fd[2] = passed[2];
	else if ((sp->fd[2] = output_fd(p, 2, &d->rd[2], &d->owned[2])) < 0)
		return -errno;
	if (pipe2(d->status, O_CLOEXEC) < 0)
		return -errno;
	sp->status_fd = d->status[1];
	return 0;
}

/* The child runs: give our ends to whoever reads them (the task channel,
 * the output pipes, the stdin feeder). */
static void fds_hand_over(struct proc *p, bool task, struct spawn_fds *d)
{
	p->out = outpipe_free(p->out);
	p->err = outpipe_free(p->err);
	if (task) {
		/* the task channel goes to whoever serves task pools (task.c);
		 * nobody (a daemon without task pools): the worker sees EOF */
		if (!proc_notify_channel(p, d->in_w, d->rd[1])) {
			close(d->in_w);
			close(d->rd[1]);
		}
		d->in_w = d->rd[1] = -1;
	} else if (d->rd[1] >= 0) {
		p->out = outpipe_new(p, d->rd[1], STREAM_STDOUT);
		d->rd[1] = -1;
	}
	if (d->rd[2] >= 0) {
		p->err = outpipe_new(p, d->rd[2], STREAM_STDERR);
		d->rd[2] = -1;
	}
	if (d->in_w >= 0) {
		stdin_feed(d->in_w, p->os->stdin_data, p->os->stdin_len);
		d->in_w = -1;
	}
}

/* Close what of d (and of sp's child ends) is still ours. */
static void fds_close(struct spawn_plan *sp, struct spawn_fds *d)
{
	for (int i = 0; i < 2; i++)
		if (d->status[i] >= 0)
			close(d->status[i]);
	if (d->rd[0] >= 0)
		close(d->rd[0]);
	if (d->in_w >= 0)
		close(d->in_w);
	for (int i = 1; i < 3; i++) {
		if (d->owned[i] && sp->fd[i] >= 0)
			close(sp->fd[i]);
		if (d->rd[i] >= 0)
			close(d->rd[i]);
	}
}

int proc_spawn(struct proc *p, char *err, size_t errlen, char *why, size_t whylen)
{
	struct spawn_plan sp = { .fd = { -1, -1, -1 }, .cgroup_fd = -1 };
	struct spawn_fds d = { .status = { -1, -1 }, .rd = { -1, -1, -1 }, .in_w = -1 };
	struct spawn_failure f;
	/* a task worker's stdin and stdout are its task channel (task.c) */
	bool task = p->pool && p->pool->conf->mode == POOL_MODE_TASK;
	char **own_argv = NULL;
	ssize_t n;
	pid_t pid;
	int r, e;

	*why = '\0';
	if ((r = plan_fill(p, &sp, &own_argv, err, errlen)) < 0)
		goto out;
	if (proc_cgroup_on() && (r = proc_cgroup_prepare(p)) != -ENOENT) {
		if (r < 0) {
			snprintf(err, errlen, "cgroup: %s", strerror(-r));
			goto out;
		}
		sp.cgroup_fd = r;
	}
	if ((r = fds_open(p, task, &sp, &d)) < 0) {
		snprintf(err, errlen, "spawn: %s", strerror(-r));
		goto out;
	}
	/* the child's start time, as /proc will show it, lies in lo..hi */
	p->start_lo = procreg_ticks();
	pid = spawn_child(&sp, &e);
	p->start_hi = procreg_ticks();
	close(d.status[1]);
	d.status[1] = -1;
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(e));
		r = -e;
		goto out;
	}
	n = fd_read(d.status[0], &f, sizeof(f));
	if (n == (ssize_t)sizeof(f)) {
		int st;
		const char *arg = f.step == STEP_EXEC     ? sp.argv[0]
				  : f.step == STEP_CHDIR  ? sp.dir
				  : f.step == STEP_RLIMIT ? (f.arg >= 0 && f.arg < POOL_RLIMIT__MAX
								     ? rlimit_res[f.arg].name
								     : "NOFILE")
							  : NULL;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (arg)
			snprintf(err, errlen, "%s %s: %s", step_name(f.step), arg, strerror(f.err));
		else
			snprintf(err, errlen, "%s: %s", step_name(f.step), strerror(f.err));
		snprintf(why, whylen, "%s: %s", step_name(f.step), strerror(f.err));
		r = f.err > 0 ? -f.err : -EIO;
		goto out;
	}
	p->pid = pid;
	p->pgid = pid;
	if (procreg_fix_range(pid, &p->start_lo, &p->start_hi) < 0)
		p->start_lo = p->start_hi = 0; /* not recorded */
	fds_hand_over(p, task, &d);
	r = 0;
out:
	if (r < 0 && !*why)
		snprintf(why, whylen, "%s", err);
	fds_close(&sp, &d);
	if (sp.cgroup_fd >= 0)
		close(sp.cgroup_fd);
	conf_strv_free(own_argv);
	conf_strv_free(sp.envp);
	conf_strv_free(sp.paths);
	return r;
}
