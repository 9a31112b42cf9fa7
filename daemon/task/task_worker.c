/*
 * Task pools: the worker channel. A worker is one process slot of a task
 * pool; each run of it gets a fresh channel (a pipe to its stdin, one from
 * its stdout) attached at spawn. The worker joins the idle list when its
 * process is `running` and holds one task at a time: one write of the
 * task line, one read per wake-up, lines split by libmpsup's framer and
 * parsed in place. Supervision tells this file about the workers' lives
 * through task_proc_observer.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "events.h"
#include "fdio.h"
#include "jsonw.h"
#include "log.h"
#include "mpsup.h"
#include "proc.h"
#include "task.h"
#include "task_int.h"
#include "task_wire.h"

/* Room asked of the framer for one read of a worker's stdout. */
#define READ_CHUNK 4096
/* A worker that closed its stdout is given this long to exit by itself. */
#define EOF_GRACE_SECS 2.0

/* The task line being written (one for all workers: one write each). */
static char *linebuf;
static size_t linebuf_cap;

static void worker_fail(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void task_worker_exited(struct proc *p);
static bool worker_spent(struct worker *w);

/*
 * Workers.
 */

/* Whether w may take a task: its channel is open and its process is
 * running in a task pool. */
static bool worker_usable(const struct worker *w)
{
	const struct pool *pl = w->p->pool;

	return w->in_fd >= 0 && w->out_fd >= 0 && !w->killed && !w->dying && !w->eof &&
	       !task_shutting && w->p->state == PS_RUNNING && !w->p->removing && !pl->removing &&
	       pl->conf->mode == POOL_MODE_TASK;
}

/* Put w on its pool's idle list, or take it off. */
void worker_set_idle(struct worker *w, bool idle)
{
	if (w->idle == idle)
		return;
	if (idle)
		TAILQ_INSERT_TAIL(&w->tp->idle, w, ientry);
	else
		TAILQ_REMOVE(&w->tp->idle, w, ientry);
	w->idle = idle;
}

/* w no longer holds its task; returns it. */
struct task *worker_take(struct worker *w)
{
	struct task *t = w->task;

	if (!t)
		return NULL;
	w->task = NULL;
	w->tp->n_busy--;
	if (t->map)
		t->map->running--;
	if (w->timed) {
		evtimer_del(w->timer);
		w->timed = false;
	}
	if (w->wlen) {
		w->wlen = w->woff = 0;
		if (w->ev_write)
			event_del(w->ev_write);
	}
	return t;
}

/* Close w's channel (this run will get no more tasks). */
void worker_close(struct worker *w)
{
	worker_set_idle(w, false);
	if (w->ev_read)
		event_free(w->ev_read);
	if (w->ev_write)
		event_free(w->ev_write);
	w->ev_read = w->ev_write = NULL;
	if (w->in_fd >= 0)
		close(w->in_fd);
	if (w->out_fd >= 0)
		close(w->out_fd);
	w->in_fd = w->out_fd = -1;
	w->in = mpsup_framer_free(w->in);
	w->wlen = w->woff = 0;
	evtimer_del(w->timer);
	w->timed = false;
}

/* SIGKILL to w's process group. */
static void worker_kill(struct worker *w)
{
	struct proc *p = w->p;

	w->killed = true;
	if (!p->pid)
		return;
	if (p->pgid > 0 && kill(-p->pgid, SIGKILL) == 0)
		return;
	(void)proc_signal(p, SIGKILL);
}

/* w misbehaved: kill it (its pool's policy restarts it) and retry or fail
 * its task with the reason. */
static void worker_fail(struct worker *w, const char *fmt, ...)
{
	struct task_pool *tp = w->tp;
	struct task *t;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("task", "%s: %s; killing it", w->p->name, msg);
	t = worker_take(w);
	worker_close(w);
	worker_kill(w);
	if (t)
		task_retry_or_fail(tp, t, w->p->name, msg);
	tp_check(tp);
}

/* w's timer: task_timeout passed, or its grace after closing its stdout. */
static void worker_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (w->eof)
		worker_fail(w, "worker %s closed its stdout", w->p->name);
	else if (w->task)
		worker_fail(w, "task_timeout (%gs) exceeded on worker %s",
			    w->tp->pl->conf->task_timeout, w->p->name);
}

/* Flush the rest of a task line; false when w failed. */
static bool worker_flush(struct worker *w)
{
	while (w->woff < w->wlen) {
		ssize_t n = write(w->in_fd, w->wbuf + w->woff, w->wlen - w->woff);
		if (n > 0) {
			w->woff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(w->ev_write, NULL);
			return true;
		}
		worker_fail(w, "cannot write to the stdin of worker %s: %s", w->p->name,
			    n < 0 ? strerror(errno) : "closed");
		return false;
	}
	w->wlen = w->woff = 0;
	event_del(w->ev_write);
	return true;
}

static void worker_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_flush(arg);
}

/* Hand t to idle worker w: one write of its line. */
void worker_send(struct worker *w, struct task *t)
{
	double tmo = w->tp->pl->conf->task_timeout;
	ssize_t len, n;

	w->task = t;
	w->tp->n_busy++;
	t->state = TASK_RUNNING;
	t->worker = w;
	t->attempts++;
	if (t->map)
		t->map->running++;
	if (t->sub)
		snprintf(t->sub->ran_on, sizeof(t->sub->ran_on), "%s", w->p->name);
	if (tmo > 0) {
		struct timeval tv = tv_from_secs(tmo);
		evtimer_add(w->timer, &tv);
		w->timed = true;
	}
	len = task_line_format(&linebuf, &linebuf_cap, t->id, t->item);
	if (len < 0) {
		worker_take(w);
		task_end(t, NULL, MPSUP_E_INTERNAL, "out of memory");
		if (worker_usable(w))
			worker_set_idle(w, true);
		return;
	}
	do
		n = write(w->in_fd, linebuf, (size_t)len);
	while (n < 0 && errno == EINTR);
	if (n == len)
		return;
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
		worker_fail(w, "cannot write to the stdin of worker %s: %s", w->p->name,
			    strerror(errno));
		return;
	}
	/* the pipe took part of it: keep the rest for the write event */
	if (n < 0)
		n = 0;
	if (!(w->wbuf = realloc(w->wbuf, (size_t)(len - n)))) {
		worker_fail(w, "out of memory");
		return;
	}
	memcpy(w->wbuf, linebuf + n, (size_t)(len - n));
	w->wlen = (size_t)(len - n);
	w->woff = 0;
	event_add(w->ev_write, NULL);
}

/* One line from w's stdout; false when w failed. */
static bool worker_line(struct worker *w, char *line, size_t len)
{
	char why[300], snip[TASK_SNIPPET_MAX + 8];
	struct task *t;
	json_t *v = NULL;
	enum task_reply kind;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len == 0)
		return true; /* blank lines are ignored */
	if (!(t = w->task)) {
		task_snippet(line, len, snip, sizeof(snip));
		worker_fail(w, "bad reply from worker %s: output while it holds no task: '%s'",
			    w->p->name, snip);
		return false;
	}
	kind = task_reply_parse(line, len, t->id, &v, why, sizeof(why));
	if (kind == TASK_REPLY_BAD) {
		worker_fail(w, "bad reply from worker %s: %s", w->p->name, why);
		return false;
	}
	worker_take(w);
	w->tasks_done++;
	w->run_tasks++;
	if (kind == TASK_REPLY_RESULT)
		task_end(t, v, MPSUP_E_INTERNAL, NULL);
	else {
		if (events_wanted(TOPIC_TASK)) {
			t->tp = w->tp;
			publish_task("task.failed", t, w->p->name, json_string_value(v));
		}
		task_end(t, NULL, MPSUP_E_INTERNAL, json_string_value(v));
		json_decref(v);
	}
	if (worker_spent(w))
		return false;
	if (worker_usable(w)) {
		worker_set_idle(w, true);
		tp_dispatch(w->tp);
	}
	return w->out_fd >= 0;
}

/* Has w done the tasks_max_per_worker of its pool? Then it takes no more
 * and is replaced by a fresh run (graceful stop, start again): true. */
static bool worker_spent(struct worker *w)
{
	unsigned max = w->p->pool->conf->task_max_per_worker;

	if (!max || w->run_tasks < max || !worker_usable(w))
		return false;
	log_debug("task", "%s: %u tasks done (task_max_per_worker): replacing it", w->p->name,
		  w->run_tasks);
	worker_close(w);
	proc_restart(w->p);
	return true;
}

/* Handle the complete lines w's framer holds; false when w failed. */
static bool worker_lines(struct worker *w)
{
	char *line;
	size_t len;
	int r;

	/* worker_line() returns true only while w's channel is open */
	while ((r = mpsup_framer_pop(w->in, &line, &len)) > 0)
		if (!worker_line(w, line, len))
			return false;
	if (r < 0) {
		worker_fail(w,
			    "bad reply from worker %s: a line longer than max_request_bytes (%zu)",
			    w->p->name, daemon_g.conf->max_request_bytes);
		return false;
	}
	return true;
}

/* w's stdout reached its end (or failed): no more results from this run. */
static void worker_eof(struct worker *w)
{
	if (w->ev_read)
		event_del(w->ev_read);
	close(w->out_fd);
	w->out_fd = -1;
	w->eof = true;
	worker_set_idle(w, false);
	if (!w->dying && w->p->pid) {
		/* it is probably exiting: let its exit status tell why */
		struct timeval tv = tv_from_secs(EOF_GRACE_SECS);
		evtimer_add(w->timer, &tv);
		w->timed = true;
	}
}

/* Read what w wrote (once, or until nothing is left when all is set);
 * false when w failed or its stdout closed. */
static bool worker_read(struct worker *w, bool all)
{
	unsigned rounds = 0;

	if (w->in) /* a reload may have changed it */
		mpsup_framer_set_max_line(w->in, daemon_g.conf->max_request_bytes);
	while (w->out_fd >= 0 && rounds++ < 64) {
		char *p;
		ssize_t room, n;

		if ((room = mpsup_framer_space(w->in, READ_CHUNK, &p)) < 0) {
			worker_fail(w, "out of memory");
			return false;
		}
		n = fd_read(w->out_fd, p, (size_t)room);
		if (n == -EAGAIN)
			return true;
		if (n <= 0) {
			worker_eof(w);
			return false;
		}
		mpsup_framer_commit(w->in, (size_t)n);
		if (!worker_lines(w))
			return false;
		if (n < room && !all)
			return true;
	}
	return w->out_fd >= 0;
}

static void worker_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_read(arg, false);
}

/* Supervision spawned a run of worker p with these pipes: its channel. */
static void task_worker_attach(struct proc *p, int in_fd, int out_fd)
{
	struct task_pool *tp = tp_get(p->pool);
	struct worker *w = p->worker;

	if (tp && !w && (w = calloc(1, sizeof(*w)))) {
		w->p = p;
		w->tp = tp;
		w->in_fd = w->out_fd = -1;
		if (!(w->timer = evtimer_new(daemon_g.base, worker_timer_cb, w))) {
			free(w);
			w = NULL;
		} else
			p->worker = w;
	}
	if (!w) {
		log_error("task", "%s: out of memory: it gets no tasks", p->name);
		close(in_fd);
		close(out_fd);
		return;
	}
	if (w->in_fd >= 0 || w->out_fd >= 0 || w->task)
		task_worker_exited(p); /* the old run's channel (not expected) */
	fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
	fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
	w->in_fd = in_fd;
	w->out_fd = out_fd;
	w->killed = w->dying = w->eof = false;
	w->wlen = w->woff = 0;
	w->run_tasks = 0;
	w->in = mpsup_framer_new(daemon_g.conf->max_request_bytes);
	w->ev_read = event_new(daemon_g.base, out_fd, EV_READ | EV_PERSIST, worker_read_cb, w);
	w->ev_write = event_new(daemon_g.base, in_fd, EV_WRITE | EV_PERSIST, worker_write_cb, w);
	if (!w->in || !w->ev_read || !w->ev_write || event_add(w->ev_read, NULL) < 0) {
		log_error("task", "%s: cannot watch its pipes: it gets no tasks", p->name);
		worker_close(w);
	}
}

/* p exited: read its last words, then requeue, retry or fail its task. */
static void task_worker_exited(struct proc *p)
{
	struct worker *w = p->worker;
	struct task *t;
	bool stopped;

	if (!w || (w->in_fd < 0 && w->out_fd < 0 && !w->task))
		return;
	w->dying = true;
	worker_set_idle(w, false);
	if (w->out_fd >= 0)
		worker_read(w, true); /* its last words may be a result */
	stopped = p->state == PS_STOPPING && !w->killed;
	t = worker_take(w);
	worker_close(w);
	if (!t)
		return;
	if (stopped) {
		/* the operator stopped it (stop, scale, restart, reload): not the task's fault */
		log_info("task", "task %" PRIu64 ": worker %s was stopped; queued again", t->id,
			 p->name);
		t->attempts--;
		if (t->map && !park_kept(&t->map->park))
			task_end(t, NULL, MPSUP_E_INTERNAL, "discarded");
		else
			task_requeue(w->tp, t);
		return;
	}
	{
		char msg[300];
		snprintf(msg, sizeof(msg), "worker %s %s", p->name,
			 p->exit_status_text ? p->exit_status_text : "ended");
		task_retry_or_fail(w->tp, t, p->name, msg);
	}
}

/* p settled in a state: it joins or leaves the rotation. */
static void task_proc_notify(struct proc *p)
{
	struct task_pool *tp = p->pool ? p->pool->tasks : NULL;
	struct worker *w = p->worker;

	if (!tp)
		return;
	if (w) {
		if (!worker_usable(w))
			worker_set_idle(w, false);
		else if (!w->task)
			worker_set_idle(w, true);
	}
	tp_check(tp);
}

/* p's record is freed: so is its worker. */
static void task_proc_gone(struct proc *p)
{
	struct worker *w = p->worker;
	struct task *t;

	if (!w)
		return;
	t = worker_take(w);
	worker_close(w);
	if (t)
		task_retry_or_fail(w->tp, t, p->name, "worker removed");
	event_free(w->timer);
	free(w->wbuf);
	free(w);
	p->worker = NULL;
}

/* busy and tasks_done in a task-pool member's process record. */
static void task_proc_record_write(const struct proc *p, struct jsonw *out)
{
	const struct worker *w = p->worker;

	if (!p->pool || p->pool->conf->mode != POOL_MODE_TASK)
		return;
	jsonw_key(out, "busy");
	jsonw_bool(out, w && w->task);
	jsonw_key(out, "tasks_done");
	jsonw_int(out, w ? (long long)w->tasks_done : 0);
}

const struct proc_observer task_proc_observer = {
	.settled = task_proc_notify,
	.exited = task_worker_exited,
	.gone = task_proc_gone,
	.pool_gone = task_pool_gone,
	.channel = task_worker_attach,
	.record_write = task_proc_record_write,
};

void task_worker_cleanup(void)
{
	free(linebuf);
	linebuf = NULL;
	linebuf_cap = 0;
}
