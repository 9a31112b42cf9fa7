/*
 * Stopping leftovers (see proc_leftover.h). This runs once, at start-up,
 * before the event loop: it may block, with a deadline (poll on pidfds).
 *
 * Who belongs to a recorded group: our children call setsid(), so group X
 * is also session X, and every process of session X descends from its
 * leader X: a member has pgrp X, session X and a start time not before the
 * leader's recorded one. The number X cannot be given to a new process
 * while any process still has it as group or session, so while the
 * recorded leader lives (same start time) or any member does, X is the
 * recorded group and kill(-X) is safe. Each member is also held by a pidfd
 * opened before its start time is checked again, so a pid reused under us
 * is never signalled.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "proc_leftover.h"

/* Rescans for processes forked into a group while it was being stopped. */
#define LEFTOVER_ROUNDS 3
/* Pids named in one log line. */
#define LOG_PIDS 24

struct member {
	pid_t pid;
	int pidfd;
	bool gone;
	bool in_round; /* found by the current rescan */
};

struct group {
	const struct procreg_rec *rec;
	bool leader_known; /* the recorded leader is still there (maybe a zombie) */
	bool leader_alive; /* ... and not a zombie */
	bool skip;         /* its pid now belongs to someone else */
	bool killed;       /* got SIGKILL */
	double deadline;
	struct member *m;
	size_t n, cap;
};

struct leftovers {
	struct group *g;
	size_t n;
	struct group **by_pgid; /* sorted, for the /proc scan */
	unsigned stopped, killed;
};

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_signal(int fd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

static bool dead_state(char s)
{
	return s == 'Z' || s == 'X' || s == 'x';
}

/* Does st describe a live member of g? */
static bool is_member(const struct group *g, const struct procreg_stat *st)
{
	return !dead_state(st->state) && st->pgrp == g->rec->pgid && st->session == g->rec->pgid &&
	       st->start >= g->rec->start_lo;
}

/* Is the recorded leader still the process with its pid? When another
 * process (even a zombie) has the pid, the number was free at some point:
 * the recorded group ended, and a group with that id now is another's. */
static void group_check_leader(struct group *g)
{
	struct procreg_stat st;
	const struct procreg_rec *r = g->rec;

	if (procreg_stat(r->pid, &st) < 0)
		return;
	if (st.start >= r->start_lo && st.start <= r->start_hi) {
		g->leader_known = true;
		g->leader_alive = !dead_state(st.state);
		return;
	}
	g->skip = true;
	log_info("proc",
		 "leftover %s: pid %d now belongs to another process "
		 "(started at tick %llu, not %llu..%llu): left alone",
		 r->name, (int)r->pid, (unsigned long long)st.start,
		 (unsigned long long)r->start_lo, (unsigned long long)r->start_hi);
}

static int cmp_pgid(const void *a, const void *b)
{
	const struct group *x = *(const struct group *const *)a,
			   *y = *(const struct group *const *)b;

	return (x->rec->pgid > y->rec->pgid) - (x->rec->pgid < y->rec->pgid);
}

static struct group *find_group(struct leftovers *lo, pid_t pgid)
{
	size_t lo_i = 0, hi = lo->n;

	while (lo_i < hi) {
		size_t mid = (lo_i + hi) / 2;
		pid_t v = lo->by_pgid[mid]->rec->pgid;
		if (v == pgid)
			return lo->by_pgid[mid]->skip ? NULL : lo->by_pgid[mid];
		if (v < pgid)
			lo_i = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct member *find_member(struct group *g, pid_t pid)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->m[i].pid == pid)
			return &g->m[i];
	return NULL;
}

/* Hold pid by a pidfd if it is still a member of g. */
static void add_member(struct group *g, pid_t pid)
{
	struct procreg_stat st;
	struct member *m = find_member(g, pid);
	int fd;

	if (m && !m->gone) {
		m->in_round = true;
		return;
	}
	if ((fd = sys_pidfd_open(pid)) < 0) {
		static bool warned;
		/* without pidfds (Linux < 5.3) a group whose leader was found
		 * still gets its stop signal, but is not waited for */
		if (errno != ESRCH && !warned)
			log_warn("proc", "leftover %s: pidfd_open(%d): %s", g->rec->name, (int)pid,
				 strerror(errno));
		warned = warned || errno != ESRCH;
		return;
	}
	/* checked again through the pid the pidfd holds */
	if (procreg_stat(pid, &st) < 0 || !is_member(g, &st)) {
		close(fd);
		return;
	}
	if (m) { /* a pid seen gone, taken again by a new member */
		m->pidfd = fd;
		m->gone = false;
		m->in_round = true;
		return;
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 4;
		struct member *nm = realloc(g->m, cap * sizeof(*nm));
		if (!nm) {
			close(fd);
			return;
		}
		g->m = nm;
		g->cap = cap;
	}
	g->m[g->n++] = (struct member){ pid, fd, false, true };
}

/* Find the members of every group in /proc. */
static void scan(struct leftovers *lo)
{
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d) {
		log_warn("proc", "leftovers: cannot read /proc: %s", strerror(errno));
		return;
	}
	for (size_t i = 0; i < lo->n; i++)
		for (size_t j = 0; j < lo->g[i].n; j++)
			lo->g[i].m[j].in_round = false;
	while ((de = readdir(d))) {
		struct procreg_stat st;
		struct group *g;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 1 || pid == (long)getpid())
			continue;
		if (procreg_stat((pid_t)pid, &st) < 0 || dead_state(st.state))
			continue;
		if ((g = find_group(lo, st.pgrp)) && is_member(g, &st))
			add_member(g, (pid_t)pid);
	}
	closedir(d);
}

/* "1 2 3" (the first LOG_PIDS) of the members found by the last scan. */
static void pid_list(const struct group *g, char *buf, size_t len, size_t *ret_n)
{
	size_t off = 0, n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i].gone || !g->m[i].in_round)
			continue;
		if (n++ < LOG_PIDS && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? " " : "",
						(int)g->m[i].pid);
	}
	if (n > LOG_PIDS && off < len)
		snprintf(buf + off, len - off, " ...");
	*ret_n = n;
}

/* sig to g: to the whole group while it is surely the recorded one (its
 * leader was found), else to each member the last scan found, through its
 * pidfd. Never both: a second SIGTERM means "hurry" to some programs. */
static void group_signal(struct group *g, int sig)
{
	if (g->leader_known) {
		if (kill(-g->rec->pgid, sig) == 0 || errno == ESRCH)
			return;
		log_warn("proc", "leftover %s: kill(-%d): %s", g->rec->name, (int)g->rec->pgid,
			 strerror(errno));
	}
	for (size_t i = 0; i < g->n; i++) {
		struct member *m = &g->m[i];
		if (m->gone || !m->in_round)
			continue;
		if (sys_pidfd_signal(m->pidfd, sig) < 0 && errno != ESRCH)
			log_warn("proc", "leftover %s: signal to pid %d: %s", g->rec->name,
				 (int)m->pid, strerror(errno));
	}
}

/* The stop signal (and SIGCONT, so a stopped process sees it). */
static void group_stop(struct group *g, pid_t writer)
{
	const struct procreg_rec *r = g->rec;
	const char *sn = conf_signal_name(r->stop_signal);
	char sigbuf[16];
	struct log_fields f = { NULL, r->name, r->pid };
	char pids[LOG_PIDS * 9];
	size_t n;
	double t = r->stop_timeout < LEFTOVER_STOP_MAX ? r->stop_timeout : LEFTOVER_STOP_MAX;

	if (g->skip)
		return;
	pid_list(g, pids, sizeof(pids), &n);
	if (n == 0 && !g->leader_alive) {
		log_debug("proc", "leftover %s (group %d): nothing left", r->name, (int)r->pgid);
		return;
	}
	if (n == 0)
		snprintf(pids, sizeof(pids), "(not held: no pidfd)");
	if (sn)
		snprintf(sigbuf, sizeof(sigbuf), "SIG%s", sn);
	else
		snprintf(sigbuf, sizeof(sigbuf), "signal %d", r->stop_signal);
	log_info_f("proc", &f,
		   "leftover %s of the previous mpsupd (pid %d): %s to group %d, %zu process%s: %s",
		   r->name, (int)writer, sigbuf, (int)r->pgid, n, n == 1 ? "" : "es", pids);
	group_signal(g, r->stop_signal);
	if (r->stop_signal != SIGKILL && r->stop_signal != SIGCONT)
		group_signal(g, SIGCONT);
	g->deadline = now_mono() + t;
	g->killed = r->stop_signal == SIGKILL;
}

static size_t group_alive(const struct group *g)
{
	size_t n = 0;

	for (size_t i = 0; i < g->n; i++)
		n += !g->m[i].gone;
	return n;
}

static void group_kill(struct leftovers *lo, struct group *g, const char *why)
{
	struct log_fields f = { NULL, g->rec->name, g->rec->pid };
	char pids[LOG_PIDS * 9];
	size_t n;

	pid_list(g, pids, sizeof(pids), &n);
	if (n == 0)
		return;
	log_warn_f("proc", &f, "leftover %s (group %d): %s: SIGKILL to %s", g->rec->name,
		   (int)g->rec->pgid, why, pids);
	group_signal(g, SIGKILL);
	g->killed = true;
	lo->killed += (unsigned)n;
}

/* Wait until every held member is gone, SIGKILLing each group at its
 * deadline; returns at the latest LEFTOVER_KILL_WAIT after a SIGKILL. */
static void wait_groups(struct leftovers *lo)
{
	struct pollfd *pfd;
	struct member **who;
	size_t total = 0;
	double kill_end = 0;

	for (size_t i = 0; i < lo->n; i++)
		total += lo->g[i].n;
	pfd = calloc(total ? total : 1, sizeof(*pfd));
	who = calloc(total ? total : 1, sizeof(*who));
	if (!pfd || !who)
		goto out;
	for (;;) {
		double now = now_mono(), next = -1;
		size_t k = 0;
		int r, ms;

		for (size_t i = 0; i < lo->n; i++) {
			struct group *g = &lo->g[i];
			size_t alive = 0;
			for (size_t j = 0; j < g->n; j++) {
				if (g->m[j].gone)
					continue;
				pfd[k] = (struct pollfd){ g->m[j].pidfd, POLLIN, 0 };
				who[k++] = &g->m[j];
				alive++;
			}
			if (!alive)
				continue;
			if (!g->killed && now >= g->deadline) {
				char why[64];
				snprintf(why, sizeof(why), "still running after %.3gs",
					 g->rec->stop_timeout < LEFTOVER_STOP_MAX
						 ? g->rec->stop_timeout
						 : LEFTOVER_STOP_MAX);
				group_kill(lo, g, why);
				kill_end = now + LEFTOVER_KILL_WAIT;
			} else if (!g->killed && (next < 0 || g->deadline < next))
				next = g->deadline;
			else if (g->killed && kill_end == 0)
				kill_end = now + LEFTOVER_KILL_WAIT;
		}
		if (k == 0)
			break;
		if (kill_end > 0) {
			if (now >= kill_end)
				break;
			if (next < 0 || kill_end < next)
				next = kill_end;
		}
		ms = (int)((next - now) * 1000) + 1;
		r = poll(pfd, k, ms);
		if (r < 0 && errno != EINTR) {
			log_warn("proc", "leftovers: poll: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; r > 0 && i < k; i++)
			if (pfd[i].revents) {
				who[i]->gone = true;
				close(who[i]->pidfd);
				who[i]->pidfd = -1;
				lo->stopped++;
			}
	}
out:
	free(pfd);
	free(who);
}

/* What still runs after everything (logged as an error). */
static void report_survivors(struct leftovers *lo)
{
	for (size_t i = 0; i < lo->n; i++) {
		struct group *g = &lo->g[i];
		char pids[LOG_PIDS * 9];
		size_t n;

		if (!group_alive(g))
			continue;
		for (size_t j = 0; j < g->n; j++)
			g->m[j].in_round = true;
		pid_list(g, pids, sizeof(pids), &n);
		log_error("proc", "leftover %s (group %d): %zu process%s would not end: %s",
			  g->rec->name, (int)g->rec->pgid, n, n == 1 ? "" : "es", pids);
	}
}

/* Second looks: members forked while their group was stopped, or that
 * outlived the wait, get SIGKILL. */
static void sweep(struct leftovers *lo)
{
	for (int round = 0; round < LEFTOVER_ROUNDS; round++) {
		bool any = false;

		scan(lo);
		for (size_t i = 0; i < lo->n; i++)
			if (group_alive(&lo->g[i])) {
				group_kill(lo, &lo->g[i], "still there after its stop");
				any = true;
			}
		if (!any)
			return;
		wait_groups(lo);
	}
}

void leftovers_stop(const struct procreg_rec *recs, size_t n, pid_t writer)
{
	struct leftovers lo = { 0 };
	double t0 = now_mono();
	size_t found = 0, groups = 0;

	lo.g = calloc(n, sizeof(*lo.g));
	lo.by_pgid = calloc(n, sizeof(*lo.by_pgid));
	if (!lo.g || !lo.by_pgid) {
		log_error("proc", "leftovers: out of memory: %zu groups not stopped", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct group *g = &lo.g[lo.n];
		g->rec = &recs[i];
		/* never ourselves or our own group, whatever the file says */
		if (recs[i].pid == getpid() || recs[i].pgid == getpgrp())
			continue;
		group_check_leader(g);
		lo.by_pgid[lo.n] = g;
		lo.n++;
	}
	qsort(lo.by_pgid, lo.n, sizeof(*lo.by_pgid), cmp_pgid);
	scan(&lo);
	for (size_t i = 0; i < lo.n; i++) {
		found += group_alive(&lo.g[i]);
		groups += group_alive(&lo.g[i]) > 0;
		group_stop(&lo.g[i], writer);
	}
	if (found == 0) {
		log_info("proc",
			 "the previous mpsupd (pid %d) recorded %zu process group%s: "
			 "none runs any more",
			 (int)writer, n, n == 1 ? "" : "s");
		goto out;
	}
	wait_groups(&lo);
	sweep(&lo);
	report_survivors(&lo);
	log_info("proc",
		 "leftovers of the previous mpsupd (pid %d) stopped: %u process%s in "
		 "%zu group%s in %.3fs (%u by SIGKILL)",
		 (int)writer, lo.stopped, lo.stopped == 1 ? "" : "es", groups,
		 groups == 1 ? "" : "s", now_mono() - t0, lo.killed);
out:
	for (size_t i = 0; lo.g && i < lo.n; i++) {
		for (size_t j = 0; j < lo.g[i].n; j++)
			if (lo.g[i].m[j].pidfd >= 0)
				close(lo.g[i].m[j].pidfd);
		free(lo.g[i].m);
	}
	free(lo.g);
	free(lo.by_pgid);
}
