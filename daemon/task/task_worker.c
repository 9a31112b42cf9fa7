/*
 * Task pools: the worker channel. A worker is one process slot of a task
 * pool; each run of it gets a fresh channel (a pipe to its stdin, one from
 * its stdout) attached at spawn. The worker joins its pool's ready list
 * when its process is `running` and holds up to task_window tasks (its
 * held list, oldest first): their lines are written ahead into its stdin
 * through a bounded buffer, its answers come back in any order and are
 * matched by id; one read per wake-up, lines split by libmpsup's framer. Supervision tells this file about the workers' lives
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
#include "task_redis.h"
#include "task_wire.h"

/* Room asked of the framer for one read of a worker's stdout. */
#define READ_CHUNK 4096
/* A worker that closed its stdout is given this long to exit by itself. */
#define EOF_GRACE_SECS 2.0
/* A worker takes no more tasks while this much of its task lines waits
 * for its pipe (it holds at most task_window tasks anyway). */
#define WRITE_AHEAD_MAX 65536

/* What becomes of the tasks of a worker that stops or fails. */
enum release { RELEASE_FAIL, RELEASE_FAIL_OLDEST, RELEASE_REQUEUE };

/* The task line being written (one for all workers: one write each). */
static char *linebuf;
static size_t linebuf_cap;
/* Where the results of the chunk answer being read lie. */
static struct jspan *spans;
static size_t spans_cap;

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

/* Whether w may take one more task now: usable, fewer than task_window
 * held, less than WRITE_AHEAD_MAX bytes not yet taken by its pipe, and
 * within what task_max_per_worker leaves this run. */
bool worker_has_room(const struct worker *w)
{
	unsigned max = w->tp->pl->conf->task_max_per_worker;

	return worker_usable(w) && w->n_held < w->tp->pl->conf->task_window &&
	       w->wlen - w->woff < WRITE_AHEAD_MAX && (!max || w->run_tasks + w->n_held < max);
}

/* Put w on its pool's ready list (at the tail), or take it off. */
void worker_set_ready(struct worker *w, bool ready)
{
	if (w->ready == ready)
		return;
	if (ready)
		TAILQ_INSERT_TAIL(&w->tp->ready, w, rentry);
	else
		TAILQ_REMOVE(&w->tp->ready, w, rentry);
	w->ready = ready;
}

/* (Re)start w's task_timeout for its oldest task, which just became the
 * oldest: its time counts from now (docs/tasks.md, "Pipelining"). */
static void worker_timer_restart(struct worker *w)
{
	double tmo = w->tp->pl->conf->task_timeout;

	if (w->eof || w->in_fd < 0)
		return; /* the timer is the grace after EOF, or the channel is closed */
	if (w->timed)
		evtimer_del(w->timer);
	w->timed = false;
	if (tmo > 0 && w->n_held > 0) {
		struct timeval tv = tv_from_secs(tmo);
		evtimer_add(w->timer, &tv);
		w->timed = true;
	}
}

/* w no longer holds task t (NULL: its oldest); returns it, or NULL when
 * it holds nothing. */
struct task *worker_take(struct worker *w, struct task *t)
{
	bool oldest;

	if (!t && !(t = TAILQ_FIRST(&w->held)))
		return NULL;
	oldest = t == TAILQ_FIRST(&w->held);
	TAILQ_REMOVE(&w->held, t, q);
	if (--w->n_held == 0)
		w->tp->n_busy--;
	w->tp->n_running -= task_weight(t);
	if (t->map)
		t->map->running--;
	if (oldest)
		worker_timer_restart(w);
	return t;
}

/* Close w's channel (this run will get no more tasks; it keeps what it
 * holds until worker_take()). */
void worker_close(struct worker *w)
{
	worker_set_ready(w, false);
	if (w->ev_read)
		event_free(w->ev_read);
	if (w->ev_write)
		event_free(w->ev_write);
	w->ev_read = w->ev_write = NULL;
	w->wpending = false;
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

/*
 * Give back every task w holds (its channel is closed): per how, each is
 * retried or failed with msg (RELEASE_FAIL), only the oldest is and the
 * others are queued again uncounted (RELEASE_FAIL_OLDEST: their time had
 * not started), or all are queued again uncounted (RELEASE_REQUEUE). The
 * backlog gets them back at its head in the order the worker had them.
 */
static void worker_release(struct worker *w, enum release how, const char *msg)
{
	struct task_pool *tp = w->tp;
	struct task_list out = TAILQ_HEAD_INITIALIZER(out);
	struct task *t, *prev;

	/* a map is freed when none of its tasks runs: those on out count as
	 * running until each is dealt with */
	while ((t = worker_take(w, NULL))) {
		TAILQ_INSERT_TAIL(&out, t, q);
		if (t->map)
			t->map->running++;
	}
	/* backwards, so that inserting at the backlog's head keeps the order */
	for (t = TAILQ_LAST(&out, task_list); t; t = prev) {
		bool fails = how == RELEASE_FAIL ||
			     (how == RELEASE_FAIL_OLDEST && t == TAILQ_FIRST(&out));
		prev = TAILQ_PREV(t, task_list, q);
		if (fails ? !task_may_retry(tp, t) : t->map && !park_kept(&t->map->park))
			continue; /* failed or discarded in the second pass */
		TAILQ_REMOVE(&out, t, q);
		if (t->map)
			t->map->running--; /* it is queued: the map is answered-to-be */
		if (fails)
			task_retry(tp, t, w->p->name, msg);
		else {
			t->attempts--; /* it had not started */
			task_requeue(tp, t);
		}
	}
	/* forwards, so that a map hears of its lowest failed index first; a
	 * task left here that was not to fail belongs to a cancelled map, and
	 * task_fail() discards those */
	while ((t = TAILQ_FIRST(&out))) {
		TAILQ_REMOVE(&out, t, q);
		if (t->map)
			t->map->running--;
		task_fail(tp, t, w->p->name, msg);
	}
}

/* w misbehaved: kill it (its pool's policy restarts it) and retry or fail
 * the tasks it holds (per how) with the reason. */
static void worker_fail_how(struct worker *w, enum release how, const char *msg)
{
	struct task_pool *tp = w->tp;

	log_warn("task", "%s: %s; killing it", w->p->name, msg);
	worker_close(w);
	worker_kill(w);
	worker_release(w, how, msg);
	tp_check(tp);
}

static void worker_fail(struct worker *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	worker_fail_how(w, RELEASE_FAIL, msg);
}

/* w's timer: task_timeout passed for its oldest task, or its grace after
 * closing its stdout. */
static void worker_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	char msg[200];

	(void)fd;
	(void)what;
	w->timed = false;
	if (w->eof)
		worker_fail(w, "worker %s closed its stdout", w->p->name);
	else if (w->n_held > 0) {
		snprintf(msg, sizeof(msg), "task_timeout (%gs) exceeded on worker %s",
			 w->tp->pl->conf->task_timeout, w->p->name);
		worker_fail_how(w, RELEASE_FAIL_OLDEST, msg);
	}
}

/* Write what w's buffer holds until the pipe is full; false when w
 * failed. */
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
			if (!w->wpending)
				event_add(w->ev_write, NULL);
			w->wpending = true;
			return true;
		}
		worker_fail(w, "cannot write to the stdin of worker %s: %s", w->p->name,
			    n < 0 ? strerror(errno) : "closed");
		return false;
	}
	w->wlen = w->woff = 0;
	if (w->wpending)
		event_del(w->ev_write);
	w->wpending = false;
	return true;
}

/* w's pipe took more: write on, and take more tasks if there is room. */
static void worker_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (worker_flush(w) && worker_has_room(w) && !w->ready) {
		worker_set_ready(w, true);
		tp_dispatch(w->tp);
	}
}

void worker_flush_all(struct task_pool *tp)
{
	struct pool *pl = tp->pl;

	for (unsigned i = 0; i < pl->n_slots; i++) {
		struct worker *w = pl->members[i] ? pl->members[i]->worker : NULL;
		if (w && w->in_fd >= 0 && w->wlen > w->woff && !w->wpending)
			worker_flush(w);
	}
}

/* Append len bytes to w's write buffer; -ENOMEM. */
static int worker_buffer(struct worker *w, const char *s, size_t len)
{
	if (w->woff > 0 && (w->woff == w->wlen || w->woff >= w->wcap / 2)) {
		memmove(w->wbuf, w->wbuf + w->woff, w->wlen - w->woff);
		w->wlen -= w->woff;
		w->woff = 0;
	}
	if (w->wlen + len > w->wcap) {
		size_t cap = w->wcap ? w->wcap : 4096;
		char *nb;
		while (cap < w->wlen + len)
			cap *= 2;
		if (!(nb = realloc(w->wbuf, cap)))
			return -ENOMEM;
		w->wbuf = nb;
		w->wcap = cap;
	}
	memcpy(w->wbuf + w->wlen, s, len);
	w->wlen += len;
	return 0;
}

/* Hand t to w (which has room): it joins w's held tasks and its line w's
 * write buffer; worker_flush_all() writes it. */
void worker_send(struct worker *w, struct task *t)
{
	ssize_t len;

	TAILQ_INSERT_TAIL(&w->held, t, q);
	if (w->n_held++ == 0)
		w->tp->n_busy++;
	w->tp->n_running += task_weight(t);
	t->state = TASK_RUNNING;
	t->worker = w;
	t->attempts++;
	t->started = now_mono();
	if (t->map)
		t->map->running++;
	if (t->sub)
		snprintf(t->sub->ran_on, sizeof(t->sub->ran_on), "%s", w->p->name);
	if (w->n_held == 1)
		worker_timer_restart(w);
	if (t->map) {
		/* its items' text, from the first one's start to the last one's end */
		size_t n;
		const char *s = map_item_text(t->map, t->index, &n);
		const char *e = map_item_text(t->map, t->index + task_weight(t) - 1, &n) + n;
		len = task_line_text(&linebuf, &linebuf_cap, t->id, t->count > 0, s,
				     (size_t)(e - s));
	} else if (t->remote) {
		size_t n;
		const char *s = task_redis_item(t, &n);
		len = task_line_text(&linebuf, &linebuf_cap, t->id, false, s, n);
	} else
		len = task_line_format(&linebuf, &linebuf_cap, t->id, t->item);
	if (len < 0 || worker_buffer(w, linebuf, (size_t)len) < 0) {
		worker_take(w, t);
		task_end(t, NULL, MPSUP_E_INTERNAL,
			 len == -EINVAL ? "item cannot be encoded" : "out of memory");
	}
}

/* The task w holds with id, or NULL. */
static struct task *worker_find(const struct worker *w, uint64_t id)
{
	struct task *t;

	TAILQ_FOREACH(t, &w->held, q)
		if (t->id == id)
			return t;
	return NULL;
}

/* w answered t (which it no longer holds) as a says (kind). */
static void worker_answered(struct worker *w, struct task *t, enum task_reply kind,
			    struct task_answer *a, json_t *errors)
{
	json_t *v;

	if (kind == TASK_REPLY_RESULTS)
		task_chunk_end(t, a, spans, errors);
	else if (kind == TASK_REPLY_RESULT && t->map)
		task_end_text(t, a->text, a->len);
	else if (kind == TASK_REPLY_RESULT && t->remote)
		task_redis_end_text(t, a->text, a->len); /* kept as text for its sender */
	else if (kind == TASK_REPLY_RESULT) {
		/* a submitted task keeps its result as a value (task.wait) */
		if (!(v = mpsup_json_loadb(a->text, a->len, 0)))
			v = json_loadb(a->text, a->len, JSON_DECODE_ANY, NULL);
		if (v)
			task_end(t, v, MPSUP_E_INTERNAL, NULL);
		else
			task_end(t, NULL, MPSUP_E_INTERNAL, "out of memory");
	} else {
		if (events_wanted(TOPIC_TASK)) {
			t->tp = w->tp;
			publish_task("task.failed", t, w->p->name, json_string_value(a->error));
		}
		task_end(t, NULL, MPSUP_E_INTERNAL, json_string_value(a->error));
	}
}

/* One line from w's stdout; false when w failed. */
static bool worker_line(struct worker *w, char *line, size_t len)
{
	char why[300], snip[TASK_SNIPPET_MAX + 8];
	struct task_answer a;
	struct task *t;
	json_t *errors = NULL;
	enum task_reply kind;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len == 0)
		return true; /* blank lines are ignored */
	if (w->n_held == 0) {
		task_snippet(line, len, snip, sizeof(snip));
		worker_fail(w, "bad reply from worker %s: output while it holds no task: '%s'",
			    w->p->name, snip);
		return false;
	}
	kind = task_reply_read(line, len, &a, why, sizeof(why));
	if (kind == TASK_REPLY_BAD) {
		worker_fail(w, "bad reply from worker %s: %s", w->p->name, why);
		return false;
	}
	if (!(t = worker_find(w, a.id))) {
		worker_fail(w, "bad reply from worker %s: id %" PRIu64 " is not a task it holds",
			    w->p->name, a.id);
		task_answer_release(&a);
		return false;
	}
	if (t->count ? kind == TASK_REPLY_RESULT
		     : kind == TASK_REPLY_RESULTS) { /* the wrong form for the task */
		worker_fail(w, "bad reply from worker %s: \"%s\" for task %" PRIu64 " (%s)",
			    w->p->name, t->count ? "result" : "results", a.id,
			    t->count ? "a chunk" : "one item");
		task_answer_release(&a);
		return false;
	}
	if (kind == TASK_REPLY_RESULTS && task_chunk_read(&a, t->count, &spans, &spans_cap, &errors,
							  why, sizeof(why)) == TASK_REPLY_BAD) {
		worker_fail(w, "bad reply from worker %s: %s", w->p->name, why);
		task_answer_release(&a);
		return false;
	}
	worker_take(w, t);
	w->tasks_done += task_weight(t);
	w->run_tasks++; /* a chunk is one task, as for Python's maxtasksperchild */
	worker_answered(w, t, kind, &a, errors);
	json_decref(errors);
	task_answer_release(&a);
	if (worker_spent(w))
		return false;
	if (worker_has_room(w))
		worker_set_ready(w, true);
	return w->out_fd >= 0;
}

/* Has w done the task_max_per_worker of its pool? Then it takes no more
 * and is replaced by a fresh run (graceful stop, start again): true.
 * worker_has_room() never lets it hold more than it may still do, so
 * nothing is in flight by then. */
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

/* Handle the complete lines w's framer holds, then give the workers with
 * room their next tasks; false when w failed. */
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
	if (!w->dying)
		tp_dispatch(w->tp);
	return w->out_fd >= 0;
}

/* w's stdout reached its end (or failed): no more results from this run. */
static void worker_eof(struct worker *w)
{
	if (w->ev_read)
		event_del(w->ev_read);
	close(w->out_fd);
	w->out_fd = -1;
	w->eof = true;
	worker_set_ready(w, false);
	if (w->timed)
		evtimer_del(w->timer);
	w->timed = false;
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
		TAILQ_INIT(&w->held);
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
	if (w->in_fd >= 0 || w->out_fd >= 0 || w->n_held)
		task_worker_exited(p); /* the old run's channel (not expected) */
	fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
	fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
	w->in_fd = in_fd;
	w->out_fd = out_fd;
	w->killed = w->dying = w->eof = w->wpending = false;
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

/* p exited: read its last words, then requeue, retry or fail the tasks
 * it held. */
static void task_worker_exited(struct proc *p)
{
	struct worker *w = p->worker;
	char msg[300];

	if (!w || (w->in_fd < 0 && w->out_fd < 0 && !w->n_held))
		return;
	w->dying = true;
	worker_set_ready(w, false);
	if (w->out_fd >= 0)
		worker_read(w, true); /* its last words may be results */
	worker_close(w);
	if (!w->n_held)
		return;
	if (p->state == PS_STOPPING && !w->killed) {
		/* the operator stopped it (stop, scale, restart, reload): not the tasks' fault */
		log_info("task", "worker %s was stopped holding %u tasks; queued again", p->name,
			 w->n_held);
		worker_release(w, RELEASE_REQUEUE, "discarded");
		return;
	}
	snprintf(msg, sizeof(msg), "worker %s %s", p->name,
		 p->exit_status_text ? p->exit_status_text : "ended");
	worker_release(w, RELEASE_FAIL, msg);
}

/* p settled in a state: it joins or leaves the rotation. */
static void task_proc_notify(struct proc *p)
{
	struct task_pool *tp = p->pool ? p->pool->tasks : NULL;
	struct worker *w = p->worker;

	if (!tp)
		return;
	if (w)
		worker_set_ready(w, worker_has_room(w));
	tp_check(tp);
}

/* p's record is freed: so is its worker. */
static void task_proc_gone(struct proc *p)
{
	struct worker *w = p->worker;

	if (!w)
		return;
	worker_close(w);
	worker_release(w, RELEASE_FAIL, "worker removed");
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
	jsonw_bool(out, w && w->n_held);
	jsonw_key(out, "held");
	jsonw_int(out, w ? (long long)w->n_held : 0);
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
	free(spans);
	spans = NULL;
	spans_cap = 0;
}
