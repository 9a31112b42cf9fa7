/*
 * Hooks: fork and exec (no shell) the hook's command as its user, in its
 * own session, with the event on stdin; reaped through the daemon's child
 * watch (supervision's waitpid(-1) may collect it first).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "daemon.h"
#include "events.h"
#include "hooks.h"
#include "log.h"
#include "metrics.h"

/* A queued event line longer than this is dropped (a pipe's capacity:
 * written in one go, the hook reads at its pace). */
#define HOOK_LINE_MAX 65536
#define HOOK_GROUPS_MAX 256

struct hook {
	struct hook_conf *conf; /* own copy of the fields we use */
	char *patterns[HOOK_PATTERNS_MAX];
	unsigned n_patterns, topics;
	char **queue; /* lines, circular */
	unsigned q_head, q_len, q_cap;
	pid_t pid; /* running instance, 0 = none */
	struct event *timer;
	bool killed, removed;
	uint64_t runs, failures, timeouts, dropped;
	struct hook *next;
};

static struct hook *hooks;
static unsigned topics_mask;

static const struct {
	const char *name;
	enum event_topic topic;
} topic_names[] = {
	{ "process", TOPIC_PROCESS }, { "pool", TOPIC_POOL }, { "object", TOPIC_OBJECT },
	{ "daemon", TOPIC_DAEMON },   { "task", TOPIC_TASK },
};

/* The topics a pattern can match: its part before the first '.' matched
 * against each topic's name ("*": all of them). */
static unsigned pattern_topics(const char *pat)
{
	char first[160];
	unsigned m = 0;

	snprintf(first, sizeof(first), "%.*s", (int)strcspn(pat, "."), pat);
	for (size_t i = 0; i < sizeof(topic_names) / sizeof(topic_names[0]); i++)
		if (fnmatch(first, topic_names[i].name, 0) == 0)
			m |= topic_names[i].topic;
	return m;
}

static void hook_free(struct hook *h)
{
	while (h->q_len) {
		free(h->queue[h->q_head]);
		h->q_head = (h->q_head + 1) % h->q_cap;
		h->q_len--;
	}
	free(h->queue);
	for (unsigned i = 0; i < h->n_patterns; i++)
		free(h->patterns[i]);
	if (h->timer)
		event_free(h->timer);
	hook_conf_free(h->conf);
	free(h);
}

/* A copy of c's fields (its next and file are not ours). */
static struct hook_conf *conf_copy(const struct hook_conf *c)
{
	struct hook_conf *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->timeout = c->timeout;
	x->max_queued = c->max_queued;
	if (!(x->name = strdup(c->name)) || !(x->events = strdup(c->events)) ||
	    !(x->command = strdup(c->command)) || (c->user && !(x->user = strdup(c->user))))
		return hook_conf_free(x);
	return x;
}

/* Give h the settings of c: patterns and topics. 0 or -ENOMEM. */
static int hook_set(struct hook *h, const struct hook_conf *c)
{
	struct hook_conf *x = conf_copy(c);

	if (!x)
		return -ENOMEM;
	for (unsigned i = 0; i < h->n_patterns; i++)
		free(h->patterns[i]);
	h->n_patterns = h->topics = 0;
	hook_conf_free(h->conf);
	h->conf = x;
	for (const char *p = x->events; *p && h->n_patterns < HOOK_PATTERNS_MAX;) {
		size_t len = strcspn(p, " \t");
		if (len && (h->patterns[h->n_patterns] = strndup(p, len))) {
			h->topics |= pattern_topics(h->patterns[h->n_patterns]);
			h->n_patterns++;
		}
		p += len;
		p += strspn(p, " \t");
	}
	return 0;
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg);

void hooks_configure(const struct conf *conf)
{
	struct hook *h, **pp;

	for (h = hooks; h; h = h->next)
		h->removed = true;
	for (const struct hook_conf *c = conf->hooks; c; c = c->next) {
		for (h = hooks; h && strcmp(h->conf->name, c->name); h = h->next)
			;
		if (!h) {
			if (!(h = calloc(1, sizeof(*h))) ||
			    !(h->timer = evtimer_new(daemon_g.base, timeout_cb, h))) {
				free(h);
				log_error("hooks", "hook %s: out of memory", c->name);
				continue;
			}
			h->next = hooks;
			hooks = h;
		}
		if (hook_set(h, c) < 0)
			log_error("hooks", "hook %s: out of memory", c->name);
		h->removed = false;
	}
	topics_mask = 0;
	for (pp = &hooks; (h = *pp);) {
		if (h->removed && !h->pid) {
			*pp = h->next;
			hook_free(h);
			continue;
		}
		if (!h->removed)
			topics_mask |= h->topics;
		pp = &h->next;
	}
}

unsigned hooks_topics(void)
{
	return topics_mask;
}

/*
 * Running one instance.
 */

/* The user's ids, resolved in the parent (the child only calls system
 * calls: the daemon has threads). */
struct hook_ids {
	bool set;
	uid_t uid;
	gid_t gid;
	gid_t groups[HOOK_GROUPS_MAX];
	int n_groups;
};

static int ids_resolve(const char *user, struct hook_ids *ids)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	ids->set = false;
	if (!user)
		return 0;
	if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) != 0 || !res) {
		char *end;
		unsigned long n = strtoul(user, &end, 10);
		if (*user && !*end &&
		    (getpwuid_r((uid_t)n, &pw, buf, sizeof(buf), &res) != 0 || !res))
			return -ENOENT;
		if (!res)
			return -ENOENT;
	}
	ids->set = true;
	ids->uid = pw.pw_uid;
	ids->gid = pw.pw_gid;
	ids->n_groups = HOOK_GROUPS_MAX;
	if (getgrouplist(pw.pw_name, pw.pw_gid, ids->groups, &ids->n_groups) < 0) {
		ids->groups[0] = pw.pw_gid;
		ids->n_groups = 1;
	}
	return 0;
}

/* In the child: its own session, stdin the event, stdout to /dev/null,
 * stderr the daemon's; default signals; the user's ids; exec. */
static void __attribute__((noreturn))
child_exec(int in_fd, char **argv, const struct hook_ids *ids, const char *name)
{
	static char path_env[] =
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	char hook_env[96];
	char *envp[] = { path_env, hook_env, NULL };
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	int null_fd;

	snprintf(hook_env, sizeof(hook_env), "MPSUP_HOOK=%s", name);
	setsid();
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (dup2(in_fd, 0) < 0 || (null_fd >= 0 && dup2(null_fd, 1) < 0))
		_exit(127);
	close_range(3, ~0U, 0);
	if (ids->set && (setgroups((size_t)ids->n_groups, ids->groups) < 0 ||
			 setgid(ids->gid) < 0 || setuid(ids->uid) < 0))
		_exit(126);
	if (chdir("/") < 0)
		_exit(127);
	execve(argv[0], argv, envp);
	_exit(127);
}

static void hook_next(struct hook *h);

/* The instance ended (reaped by whoever collected it). */
static void reaped_cb(pid_t pid, int status, void *arg)
{
	struct hook *h = arg;
	struct hook **pp;

	(void)pid;
	h->pid = 0;
	evtimer_del(h->timer);
	if (h->killed) {
		h->timeouts++;
		h->failures++;
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		h->failures++;
		if (WIFEXITED(status))
			log_warn("hooks", "hook %s: exited with status %d", h->conf->name,
				 WEXITSTATUS(status));
		else
			log_warn("hooks", "hook %s: killed by signal %d", h->conf->name,
				 WTERMSIG(status));
	}
	h->killed = false;
	if (h->removed) {
		for (pp = &hooks; *pp != h; pp = &(*pp)->next)
			;
		*pp = h->next;
		hook_free(h);
		return;
	}
	hook_next(h);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hook *h = arg;

	(void)fd;
	(void)what;
	if (!h->pid)
		return;
	log_warn("hooks", "hook %s: still running after %g s; killed", h->conf->name,
		 h->conf->timeout);
	h->killed = true;
	kill(-h->pid, SIGKILL); /* its session: what it started goes too */
	kill(h->pid, SIGKILL);
}

/* Start h with line (taken): 0, or -errno (the line is dropped). */
static int hook_run(struct hook *h, char *line)
{
	struct timeval tv = tv_from_secs(h->conf->timeout);
	struct hook_ids ids;
	char **argv = NULL, err[200];
	int pfd[2], r;
	size_t len = strlen(line);
	pid_t pid;

	if ((r = ids_resolve(h->conf->user, &ids)) < 0) {
		log_warn("hooks", "hook %s: no such user '%s'", h->conf->name, h->conf->user);
		goto out;
	}
	if ((r = conf_split_words(h->conf->command, &argv, err, sizeof(err))) < 0 || !argv[0]) {
		log_warn("hooks", "hook %s: command: %s", h->conf->name, err);
		r = -EINVAL;
		goto out;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	/* the whole line fits in the pipe (HOOK_LINE_MAX): write it now */
	fcntl(pfd[1], F_SETPIPE_SZ, HOOK_LINE_MAX);
	if (write(pfd[1], line, len) != (ssize_t)len) {
		r = -EIO;
		close(pfd[0]);
		close(pfd[1]);
		goto out;
	}
	close(pfd[1]);
	if ((pid = fork()) < 0) {
		r = -errno;
		close(pfd[0]);
		goto out;
	}
	if (pid == 0)
		child_exec(pfd[0], argv, &ids, h->conf->name);
	close(pfd[0]);
	if (daemon_child_watch(pid, reaped_cb, h) < 0) {
		/* cannot be told of its end: do not let it run unwatched */
		kill(pid, SIGKILL);
		r = -ENOSPC;
		goto out;
	}
	h->pid = pid;
	h->runs++;
	evtimer_add(h->timer, &tv);
	r = 0;
out:
	if (r < 0)
		h->failures++;
	conf_strv_free(argv);
	free(line);
	return r;
}

/* Run the next queued line, if any (failures go on to the next one). */
static void hook_next(struct hook *h)
{
	while (!h->pid && h->q_len) {
		char *line = h->queue[h->q_head];
		h->q_head = (h->q_head + 1) % h->q_cap;
		h->q_len--;
		hook_run(h, line);
	}
}

/* Queue line (taken) for h; dropped and counted beyond max_queued. */
static void hook_push(struct hook *h, char *line)
{
	static struct log_ratelimit drops;

	if (!h->pid) {
		hook_run(h, line);
		return;
	}
	if (h->q_len >= h->conf->max_queued) {
		free(line);
		h->dropped++;
		if (log_allowed(&drops))
			log_warn("hooks",
				 "hook %s: %u events queued already; event dropped (%llu so far)",
				 h->conf->name, h->q_len, (unsigned long long)h->dropped);
		return;
	}
	if (!h->q_cap || h->q_len == h->q_cap) {
		unsigned cap = h->q_cap ? h->q_cap * 2 : 8;
		char **q = malloc(cap * sizeof(*q));
		if (!q) {
			free(line);
			h->dropped++;
			return;
		}
		for (unsigned i = 0; i < h->q_len; i++)
			q[i] = h->queue[(h->q_head + i) % h->q_cap];
		free(h->queue);
		h->queue = q;
		h->q_cap = cap;
		h->q_head = 0;
	}
	h->queue[(h->q_head + h->q_len) % h->q_cap] = line;
	h->q_len++;
}

/* Whether ev matches one of h's patterns: by its event name, and a
 * process.state event also as process.<to> (process.fatal). */
static bool hook_matches(const struct hook *h, const char *name, const char *alias)
{
	for (unsigned i = 0; i < h->n_patterns; i++)
		if (fnmatch(h->patterns[i], name, 0) == 0 ||
		    (alias && fnmatch(h->patterns[i], alias, 0) == 0))
			return true;
	return false;
}

void hooks_event(json_t *ev)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *to = json_string_value(json_object_get(ev, "to"));
	char alias[64], *text = NULL;
	size_t len = 0;

	if (!hooks || !name)
		return;
	if (strcmp(name, "process.state") == 0 && to)
		snprintf(alias, sizeof(alias), "process.%s", to);
	for (struct hook *h = hooks; h; h = h->next) {
		char *line;
		if (h->removed ||
		    !hook_matches(h, name, strcmp(name, "process.state") == 0 && to ? alias : NULL))
			continue;
		if (!text) {
			if (!(text = json_dumps(ev, JSON_COMPACT)))
				return;
			len = strlen(text);
		}
		if (len + 1 >= HOOK_LINE_MAX || !(line = malloc(len + 2))) {
			h->dropped++;
			continue;
		}
		memcpy(line, text, len);
		line[len] = '\n';
		line[len + 1] = '\0';
		hook_push(h, line);
	}
	free(text);
}

void hooks_stop(void)
{
	struct hook *h;

	while ((h = hooks)) {
		hooks = h->next;
		if (h->pid) {
			daemon_child_unwatch(h->pid);
			kill(-h->pid, SIGKILL);
			kill(h->pid, SIGKILL);
		}
		hook_free(h);
	}
	topics_mask = 0;
}

json_t *hooks_info(void)
{
	json_t *a = json_array();

	for (struct hook *h = hooks; a && h; h = h->next)
		json_array_append_new(a, json_pack("{s:s, s:b, s:i, s:I, s:I, s:I, s:I}", "name",
						   h->conf->name, "running", h->pid != 0, "queued",
						   (int)h->q_len, "runs", (json_int_t)h->runs,
						   "failures", (json_int_t)h->failures, "timeouts",
						   (json_int_t)h->timeouts, "dropped",
						   (json_int_t)h->dropped));
	return a;
}

void hooks_metrics(struct evbuffer *b)
{
	struct metrics_label l = { "hook", NULL };

	metrics_family(b, "mpsup_hook_runs_total", "counter", "Hook commands started.");
	for (struct hook *h = hooks; h; h = h->next) {
		l.value = h->conf->name;
		metrics_u64(b, "mpsup_hook_runs_total", &l, 1, h->runs);
	}
	metrics_family(b, "mpsup_hook_failures_total", "counter",
		       "Hook runs that failed to start, exited non-zero, died or timed out.");
	for (struct hook *h = hooks; h; h = h->next) {
		l.value = h->conf->name;
		metrics_u64(b, "mpsup_hook_failures_total", &l, 1, h->failures);
	}
	metrics_family(b, "mpsup_hook_events_dropped_total", "counter",
		       "Events a hook did not run for: its queue was full.");
	for (struct hook *h = hooks; h; h = h->next) {
		l.value = h->conf->name;
		metrics_u64(b, "mpsup_hook_events_dropped_total", &l, 1, h->dropped);
	}
}
