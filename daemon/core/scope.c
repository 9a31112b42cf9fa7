/*
 * Lifetimes bound to a peer's process (scope.h). A scope is found by pid;
 * a pid is only trusted while its pidfd shows the process alive, so a
 * recycled pid never inherits another process's things.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "scope.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 */
#endif

struct scope {
	pid_t pid;
	int pidfd;
	struct event *ev;
	LIST_HEAD(, scope_link) links;
	LIST_ENTRY(scope) entry;
};

static LIST_HEAD(, scope) scopes = LIST_HEAD_INITIALIZER(scopes);
static unsigned n_scopes;
static int (*budget)(void);

void scope_set_budget(int (*check)(void))
{
	budget = check;
}

unsigned scope_count(void)
{
	return n_scopes;
}

pid_t scope_pid(const struct scope_link *l)
{
	return l->scope ? l->scope->pid : 0;
}

static void scope_free(struct scope *s)
{
	LIST_REMOVE(s, entry);
	n_scopes--;
	event_free(s->ev);
	close(s->pidfd);
	free(s);
}

/* The process exited: every bound thing hears it, then the pidfd goes. */
static void scope_exited(struct scope *s)
{
	struct scope_link *l;

	log_debug("scope", "pid %d exited (pidfd): ending what it owned", (int)s->pid);
	while ((l = LIST_FIRST(&s->links))) {
		LIST_REMOVE(l, entry);
		l->scope = NULL;
		l->gone(l);
	}
	scope_free(s);
}

static void scope_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	scope_exited(arg);
}

/* Has the process of s exited? (Its exit event may not have run yet.) */
static bool scope_dead(const struct scope *s)
{
	struct pollfd p = { .fd = s->pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/* Clock ticks since boot when pid started (/proc/PID/stat, field 22);
 * 0 when unknown. */
static unsigned long long start_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long t = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (!(p = strrchr(buf, ')'))) /* the command may hold spaces and parens */
		return 0;
	/* after ") ": state is field 3; starttime is field 22 */
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p)
		t = strtoull(p + 1, NULL, 10);
	return t;
}

/* A pidfd for c's peer process, or -ESRCH when that process is gone. The
 * kernel's own (SO_PEERPIDFD) is taken when it has one; else pidfd_open on
 * the pid, trusted only if that process started before c connected and
 * is still running after the pidfd was opened (so the pid was not given
 * to another process in between). */
static int peer_pidfd(struct conn *c)
{
	socklen_t len = sizeof(int);
	unsigned long long st;
	long hz = sysconf(_SC_CLK_TCK);
	int fd;

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0)
		return fd; /* O_CLOEXEC: the kernel's pidfds always are */
	if (errno != ENOPROTOOPT && errno != EINVAL)
		return errno == ESRCH ? -ESRCH : -errno;
	if ((fd = (int)syscall(SYS_pidfd_open, c->pid, 0)) < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	st = start_ticks(c->pid);
	if (!st || hz <= 0 ||
	    (double)st / (double)hz > c->connected.tv_sec + c->connected.tv_nsec / 1e9) {
		close(fd);
		return -ESRCH;
	}
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 0) > 0) { /* already exited: not worth a scope */
			close(fd);
			return -ESRCH;
		}
	}
	return fd;
}

/* The live scope of pid, or NULL. */
static struct scope *scope_find(pid_t pid)
{
	struct scope *s;

	LIST_FOREACH(s, &scopes, entry)
		if (s->pid == pid) {
			if (!scope_dead(s))
				return s;
			scope_exited(s); /* its pid may be another's now */
			return NULL;
		}
	return NULL;
}

/* A new scope for c's peer; NULL with *ret_err. */
static struct scope *scope_open(struct conn *c, int *ret_err)
{
	struct scope *s;
	int fd;

	if (budget && budget() < 0) {
		*ret_err = -EMFILE;
		return NULL;
	}
	if ((fd = peer_pidfd(c)) < 0) {
		*ret_err = fd;
		return NULL;
	}
	if (!(s = calloc(1, sizeof(*s))) ||
	    !(s->ev = event_new(daemon_g.base, fd, EV_READ, scope_cb, s)) ||
	    event_add(s->ev, NULL) < 0) {
		if (s && s->ev)
			event_free(s->ev);
		free(s);
		close(fd);
		*ret_err = -ENOMEM;
		return NULL;
	}
	s->pid = c->pid;
	s->pidfd = fd;
	LIST_INIT(&s->links);
	LIST_INSERT_HEAD(&scopes, s, entry);
	n_scopes++;
	log_debug("scope", "watching pid %d (pidfd %d)", (int)s->pid, fd);
	return s;
}

int scope_bind(struct conn *c, struct scope_link *l, void (*gone)(struct scope_link *l))
{
	struct scope *s;
	int e = 0;

	if (c->pid <= 0)
		return -ESRCH;
	if (!(s = scope_find(c->pid)) && !(s = scope_open(c, &e)))
		return e;
	l->scope = s;
	l->gone = gone;
	LIST_INSERT_HEAD(&s->links, l, entry);
	return 0;
}

void scope_unbind(struct scope_link *l)
{
	struct scope *s = l->scope;

	if (!s)
		return;
	LIST_REMOVE(l, entry);
	l->scope = NULL;
	if (LIST_EMPTY(&s->links))
		scope_free(s);
}

void scope_cleanup(void)
{
	struct scope *s;
	struct scope_link *l;

	while ((s = LIST_FIRST(&scopes))) {
		while ((l = LIST_FIRST(&s->links))) {
			LIST_REMOVE(l, entry);
			l->scope = NULL;
		}
		scope_free(s);
	}
}
