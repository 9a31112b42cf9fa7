/*
 * Task pools (DESIGN.md §6, docs/tasks.md).
 *
 * Every task pool has a backlog (FIFO; a retried task goes to its head)
 * and a FIFO of idle workers; tp_dispatch() pairs them. A worker is one
 * process slot of the pool; each run of it gets a fresh channel (a pipe to
 * its stdin, one from its stdout) attached at spawn. The worker joins the
 * idle list when its process is `running` and holds one task at a time:
 * one write of the task line, one read per result line, parsed in place.
 *
 * Where a task ends:
 *   - the worker answers it: done (result) or failed (the worker's error);
 *   - the worker dies, writes a bad line, exceeds task_timeout or closes a
 *     pipe: the worker is killed (SIGKILL to its group) and restarted by
 *     the pool's policy; the task runs again while it has retries left
 *     (task_retries), else it fails with what happened;
 *   - the worker is stopped by the operator (stop, scale down, restart,
 *     reload): the task goes back to the head of the backlog, not counted;
 *   - no live worker is left in the pool (all stopped/exited/fatal, pool
 *     removed, mode no longer task): the backlog fails with `conflict`;
 *   - shutdown: everything fails with `shutting_down`.
 *
 * pool.map tasks live in one array per map (no allocation per task); the
 * map is answered when all are done or at its first failure, and freed
 * once no worker holds one of its tasks. Submitted tasks are allocated one
 * by one, found by id in a hash table, and kept after they end until
 * task.wait fetches them or task_results_max / task_results_age evicts them.
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

#include "command.h"
#include "conn.h"
#include "jsonw.h"
#include "daemon.h"
#include "events.h"
#include "log.h"
#include "park.h"
#include "proc.h"
#include "task.h"
#include "task_wire.h"

/* A result line may be this long before max_request_bytes applies. */
#define RBUF_INITIAL 4096
/* A worker that closed its stdout is given this long to exit by itself. */
#define EOF_GRACE_SECS 2.0

enum task_state { TASK_PENDING = 0, TASK_RUNNING, TASK_DONE, TASK_FAILED };

static const char *const task_state_names[] = { "pending", "running", "done", "failed" };

struct map;
struct worker;
struct task_pool;

/* What only a submitted task has (allocated with it). */
struct subm {
	char *pool;                   /* its pool's name */
	uid_t owner;                  /* the submitting peer: only it (or an admin) sees it */
	char ran_on[96];              /* the worker that ran it last */
	double finished;              /* monotonic; 0 = not yet */
	struct park_queue waiters;    /* task.wait requests */
	struct task *hnext;           /* id hash chain */
};

struct task {
	uint64_t id;
	enum task_state state;
	unsigned attempts;            /* dispatches so far */
	enum mpsup_err code;          /* TASK_FAILED */
	json_t *item;                 /* borrowed from the map's items, or owned (submit) */
	json_t *result;               /* TASK_DONE */
	char *error;                  /* TASK_FAILED */
	struct task_pool *tp;         /* NULL once it left the pool */
	struct worker *worker;        /* TASK_RUNNING */
	struct map *map;              /* NULL for a submitted task */
	size_t index;                 /* in the map */
	struct subm *sub;             /* NULL for a map task */
	TAILQ_ENTRY(task) q;          /* the pool's backlog, or the finished list */
};

TAILQ_HEAD(task_list, task);

struct map {
	struct park park;             /* the request; not kept once answered or cancelled */
	struct task *tasks;
	size_t n, done;
	unsigned running;             /* tasks held by workers */
	uid_t owner;                  /* the requesting peer (events go to it) */
	json_t *items;
	double timeout;
};

struct worker {
	struct proc *p;
	struct task_pool *tp;
	int in_fd, out_fd;            /* -1 when closed */
	struct event *ev_read, *ev_write, *timer;
	char *rbuf;                   /* unparsed output */
	size_t rlen, rcap;
	char *wbuf;                   /* the rest of a line the pipe did not take */
	size_t wlen, woff;
	struct task *task;
	bool idle;                    /* on tp->idle */
	bool killed;                  /* this run was killed by us */
	bool dying;                   /* its death is being handled */
	bool eof;                     /* its stdout closed */
	bool timed;                   /* its timer runs for task_timeout */
	unsigned long long tasks_done;
	TAILQ_ENTRY(worker) ientry;
};

struct task_pool {
	struct pool *pl;
	struct task_list backlog;
	unsigned n_pending, n_busy;
	TAILQ_HEAD(, worker) idle;
};

/* A task.wait request (parked on its task's waiters). */
struct task_waiter {
	struct park park;
	struct task *t;
};

static uint64_t next_task_id = 1;
static struct task **subm_hash;
static size_t subm_buckets, n_subm;
static struct task_list finished = TAILQ_HEAD_INITIALIZER(finished);
static unsigned n_finished;
static struct event *ev_evict;
static bool shutting;
static char *linebuf;
static size_t linebuf_cap;

static void tp_dispatch(struct task_pool *tp);
static void tp_check(struct task_pool *tp);
static void task_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg);
static void worker_fail(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Submitted tasks by id, and their retention.
 */

static struct task **subm_slot(uint64_t id)
{
	return &subm_hash[id & (subm_buckets - 1)];
}

static int subm_insert(struct task *t)
{
	if (n_subm + 1 > subm_buckets) {
		size_t nb = subm_buckets ? subm_buckets * 2 : 64;
		struct task **h = calloc(nb, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (size_t i = 0; i < subm_buckets; i++)
			for (struct task *x = subm_hash[i], *nx; x; x = nx) {
				nx = x->sub->hnext;
				x->sub->hnext = h[x->id & (nb - 1)];
				h[x->id & (nb - 1)] = x;
			}
		free(subm_hash);
		subm_hash = h;
		subm_buckets = nb;
	}
	t->sub->hnext = *subm_slot(t->id);
	*subm_slot(t->id) = t;
	n_subm++;
	return 0;
}

static struct task *subm_find(uint64_t id)
{
	if (!subm_buckets)
		return NULL;
	for (struct task *t = *subm_slot(id); t; t = t->sub->hnext)
		if (t->id == id)
			return t;
	return NULL;
}

/* Forget a finished submitted task (fetched or evicted). */
static void subm_free(struct task *t)
{
	for (struct task **pp = subm_slot(t->id); *pp; pp = &(*pp)->sub->hnext)
		if (*pp == t) {
			*pp = t->sub->hnext;
			break;
		}
	n_subm--;
	if (t->sub->finished > 0) {
		TAILQ_REMOVE(&finished, t, q);
		n_finished--;
	}
	json_decref(t->item);
	json_decref(t->result);
	free(t->error);
	free(t->sub->pool);
	free(t);
}

static void evict_arm(void)
{
	struct task *t = TAILQ_FIRST(&finished);
	struct timeval tv;

	if (!t || !ev_evict || evtimer_pending(ev_evict, NULL))
		return;
	tv = tv_from_secs(t->sub->finished + daemon_g.conf->task_results_age - now_mono() + 0.01);
	evtimer_add(ev_evict, &tv);
}

static void evict_cb(evutil_socket_t fd, short what, void *arg)
{
	struct task *t;
	double now = now_mono();

	(void)fd;
	(void)what;
	(void)arg;
	while ((t = TAILQ_FIRST(&finished)) &&
	       t->sub->finished + daemon_g.conf->task_results_age <= now) {
		log_debug("task", "task %" PRIu64 ": result evicted (task_results_age)", t->id);
		subm_free(t);
	}
	evict_arm();
}

/*
 * Requests waiting for submitted tasks.
 */

/* Answer r with finished task t (not consumed here). */
static void answer_task(struct request *r, const struct task *t)
{
	if (t->state == TASK_DONE)
		request_ok(r, json_pack("{s:O}", "result", t->result));
	else
		request_error(r, t->code, "%s", t->error ? t->error : "failed");
}

static void waiter_cancel(struct park *p)
{
	free(PARK_OWNER(p, struct task_waiter, park));
}

static void waiter_timeout(struct park *p)
{
	struct task_waiter *w = PARK_OWNER(p, struct task_waiter, park);
	struct request *r = park_take(p);
	uint64_t id = w->t->id;

	free(w);
	request_error(r, MPSUP_E_TIMEOUT, "task %" PRIu64 " has not finished", id);
}

/* A submitted task ended: answer its waiters (which fetches it) or keep
 * it for a later task.wait. */
static void subm_finished(struct task *t)
{
	struct park *p;

	t->sub->finished = now_mono();
	TAILQ_INSERT_TAIL(&finished, t, q);
	n_finished++;
	if (park_first(&t->sub->waiters)) {
		while ((p = park_first(&t->sub->waiters))) {
			struct request *r = park_take(p);
			free(PARK_OWNER(p, struct task_waiter, park));
			answer_task(r, t);
		}
		subm_free(t);
		return;
	}
	while (n_finished > daemon_g.conf->task_results_max) {
		struct task *old = TAILQ_FIRST(&finished);
		log_debug("task", "task %" PRIu64 ": result evicted (task_results_max)", old->id);
		subm_free(old);
	}
	evict_arm();
}

/*
 * Maps.
 */

static void map_maybe_free(struct map *m)
{
	if (park_kept(&m->park) || m->running)
		return;
	for (size_t i = 0; i < m->n; i++) {
		json_decref(m->tasks[i].result);
		free(m->tasks[i].error);
	}
	json_decref(m->items);
	free(m->tasks);
	free(m);
}

/* Take m's tasks that are still pending out of their backlog. */
static void map_drop_pending(struct map *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct task *t = &m->tasks[i];
		if (t->state != TASK_PENDING)
			continue;
		if (t->tp) {
			TAILQ_REMOVE(&t->tp->backlog, t, q);
			t->tp->n_pending--;
			t->tp = NULL;
		}
		t->state = TASK_FAILED;
	}
}

/* Answer m with an error (index = SIZE_MAX: not about one item); its
 * pending tasks are dropped, running ones finish and are discarded. */
static void map_fail(struct map *m, size_t index, enum mpsup_err code, const char *msg)
{
	struct request *r;
	json_t *err;
	char buf[600];

	if (!park_kept(&m->park))
		return;
	r = park_take(&m->park);
	map_drop_pending(m);
	if (index != SIZE_MAX) {
		snprintf(buf, sizeof(buf), "item %zu: %s", index, msg);
		err = json_pack("{s:s, s:s, s:I}", "code", mpsup_err_name(code), "message", buf,
				"index", (json_int_t)index);
	} else
		err = json_pack("{s:s, s:s}", "code", mpsup_err_name(code), "message", msg);
	request_fail(r, err);
}

static void map_answer(struct map *m)
{
	struct request *r = park_take(&m->park);
	json_t *a = json_array();

	for (size_t i = 0; i < m->n; i++) {
		json_array_append_new(a, m->tasks[i].result);
		m->tasks[i].result = NULL;
	}
	request_ok(r, json_pack("{s:o}", "results", a));
}

static void map_cancel(struct park *p)
{
	struct map *m = PARK_OWNER(p, struct map, park);

	map_drop_pending(m);
	log_debug("task", "pool.map cancelled: its connection closed (%zu of %zu done)", m->done,
		  m->n);
	map_maybe_free(m);
}

static void map_timeout(struct park *p)
{
	struct map *m = PARK_OWNER(p, struct map, park);
	char msg[160];

	snprintf(msg, sizeof(msg), "pool.map: %zu of %zu items done after %gs", m->done, m->n,
		 m->timeout);
	map_fail(m, SIZE_MAX, MPSUP_E_TIMEOUT, msg);
	map_maybe_free(m);
}

/*
 * Tasks.
 */

static void publish_task(const char *event, const struct task *t, const char *worker,
			 const char *msg)
{
	if (!events_wanted(TOPIC_TASK))
		return;
	/* A task is its submitter's (task_param()): so are its events, and
	 * their messages (a worker's error text). */
	events_publish_visible(TOPIC_TASK, events_visible_to_owner,
			       t->sub ? &t->sub->owner : &t->map->owner,
		       json_pack("{s:s, s:I, s:s?, s:s?, s:o, s:s, s:f}", "event", event, "task",
				 (json_int_t)t->id, "pool", t->tp ? t->tp->pl->name : NULL,
				 "worker", worker, "index",
				 t->map ? json_integer((json_int_t)t->index) : json_null(),
				 "message", msg, "ts", now_wall()));
}

/* t ended (it is neither pending nor held any more): result (stolen) or
 * a failure. */
static void task_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg)
{
	struct map *m = t->map;

	t->tp = NULL;
	t->worker = NULL;
	t->state = result ? TASK_DONE : TASK_FAILED;
	if (m) {
		if (!park_kept(&m->park)) {
			json_decref(result); /* cancelled or already failed: discarded */
			map_maybe_free(m);
			return;
		}
		if (!result) {
			map_fail(m, t->index, code, msg);
			map_maybe_free(m);
			return;
		}
		t->result = result;
		if (++m->done == m->n) {
			map_answer(m);
			map_maybe_free(m);
		}
		return;
	}
	if (result)
		t->result = result;
	else {
		t->code = code;
		t->error = strdup(msg);
	}
	subm_finished(t);
}

/* Put t back at the head of its backlog. */
static void task_requeue(struct task_pool *tp, struct task *t)
{
	t->state = TASK_PENDING;
	t->worker = NULL;
	t->tp = tp;
	TAILQ_INSERT_HEAD(&tp->backlog, t, q);
	tp->n_pending++;
}

/* The worker holding t failed with msg: run t again while it has
 * retries left, else fail it. */
static void task_retry_or_fail(struct task_pool *tp, struct task *t, const char *worker,
			       const char *msg)
{
	unsigned retries = tp->pl->conf->task_retries;
	char buf[600];

	if (t->map && !park_kept(&t->map->park)) {
		task_end(t, NULL, MPSUP_E_INTERNAL, msg);
		return;
	}
	if (!shutting && t->attempts <= retries) {
		log_info("task", "task %" PRIu64 ": %s; retrying (%u of %u)", t->id, msg, t->attempts,
			 retries);
		publish_task("task.retry", t, worker, msg);
		task_requeue(tp, t);
		return;
	}
	if (t->attempts > 1)
		snprintf(buf, sizeof(buf), "%s (after %u attempts)", msg, t->attempts);
	else
		snprintf(buf, sizeof(buf), "%s", msg);
	log_info("task", "task %" PRIu64 " failed: %s", t->id, buf);
	t->tp = tp;
	publish_task("task.failed", t, worker, buf);
	task_end(t, NULL, MPSUP_E_INTERNAL, buf);
}

/*
 * Workers.
 */

static bool worker_usable(const struct worker *w)
{
	const struct pool *pl = w->p->pool;

	return w->in_fd >= 0 && w->out_fd >= 0 && !w->killed && !w->dying && !w->eof &&
	       !shutting && w->p->state == PS_RUNNING && !w->p->removing && !pl->removing &&
	       pl->conf->mode == POOL_MODE_TASK;
}

static void worker_set_idle(struct worker *w, bool idle)
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
static struct task *worker_take(struct worker *w)
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
static void worker_close(struct worker *w)
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
	w->rlen = w->wlen = w->woff = 0;
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
static void worker_send(struct worker *w, struct task *t)
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
	if (worker_usable(w)) {
		worker_set_idle(w, true);
		tp_dispatch(w->tp);
	}
	return w->out_fd >= 0;
}

/* Handle the complete lines in w's buffer; false when w failed. */
static bool worker_lines(struct worker *w)
{
	size_t max = daemon_g.conf->max_request_bytes;
	char *start = w->rbuf, *end = w->rbuf + w->rlen, *nl;

	while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
		char *line = start;
		start = nl + 1;
		if (!worker_line(w, line, (size_t)(nl - line)))
			return false;
	}
	w->rlen = (size_t)(end - start);
	if (w->rlen && start != w->rbuf)
		memmove(w->rbuf, start, w->rlen);
	if (w->rlen > max) {
		worker_fail(w, "bad reply from worker %s: a line longer than max_request_bytes (%zu)",
			    w->p->name, max);
		return false;
	}
	return true;
}

/* Read what w wrote (once, or until nothing is left when all is set);
 * false when w failed or its stdout closed. */
static bool worker_read(struct worker *w, bool all)
{
	size_t max = daemon_g.conf->max_request_bytes + 1;
	unsigned rounds = 0;

	while (w->out_fd >= 0 && rounds++ < 64) {
		ssize_t n;
		size_t room;

		if (w->rcap - w->rlen < RBUF_INITIAL / 2 && w->rcap < max) {
			size_t ncap = w->rcap ? w->rcap * 2 : RBUF_INITIAL;
			char *nb;
			if (ncap > max)
				ncap = max;
			if (!(nb = realloc(w->rbuf, ncap))) {
				worker_fail(w, "out of memory");
				return false;
			}
			w->rbuf = nb;
			w->rcap = ncap;
		}
		room = w->rcap - w->rlen;
		n = read(w->out_fd, w->rbuf + w->rlen, room);
		if (n > 0) {
			w->rlen += (size_t)n;
			if (!worker_lines(w))
				return false;
			if ((size_t)n < room && !all)
				return true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		/* EOF (or an error): no more results from this run */
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
		return false;
	}
	return w->out_fd >= 0;
}

static void worker_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_read(arg, false);
}

static struct task_pool *tp_get(struct pool *pl)
{
	struct task_pool *tp = pl->tasks;

	if (tp)
		return tp;
	if (!(tp = calloc(1, sizeof(*tp))))
		return NULL;
	tp->pl = pl;
	TAILQ_INIT(&tp->backlog);
	TAILQ_INIT(&tp->idle);
	pl->tasks = tp;
	return tp;
}

static void task_worker_exited(struct proc *p);

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
	w->rlen = w->wlen = w->woff = 0;
	w->ev_read = event_new(daemon_g.base, out_fd, EV_READ | EV_PERSIST, worker_read_cb, w);
	w->ev_write = event_new(daemon_g.base, in_fd, EV_WRITE | EV_PERSIST, worker_write_cb, w);
	if (!w->ev_read || !w->ev_write || event_add(w->ev_read, NULL) < 0) {
		log_error("task", "%s: cannot watch its pipes: it gets no tasks", p->name);
		worker_close(w);
	}
}

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
	free(w->rbuf);
	free(w->wbuf);
	free(w);
	p->worker = NULL;
}

/*
 * Pools.
 */

/* Fail every pending task of tp. */
static void tp_fail_backlog(struct task_pool *tp, enum mpsup_err code, const char *msg)
{
	struct task *t;

	while ((t = TAILQ_FIRST(&tp->backlog))) {
		TAILQ_REMOVE(&tp->backlog, t, q);
		tp->n_pending--;
		t->tp = NULL; /* out of the backlog (map_drop_pending must not touch it) */
		task_end(t, NULL, code, msg);
	}
}

/* Why pl cannot run tasks now or later (NULL: it can): a task pool with a
 * member that is alive, in backoff or about to start again. */
static const char *pool_cannot_run(const struct pool *pl, char *buf, size_t len)
{
	if (pl->removing)
		snprintf(buf, len, "pool %s is being removed", pl->name);
	else if (pl->conf->mode != POOL_MODE_TASK)
		snprintf(buf, len, "pool %s is not a task pool (mode = service)", pl->name);
	else {
		for (unsigned i = 0; i < pl->n_slots; i++) {
			const struct proc *m = pl->members[i];
			if (m && !m->removing &&
			    (proc_state_alive(m->state) || m->state == PS_BACKOFF || m->restart_pending))
				return NULL;
		}
		snprintf(buf, len, "pool %s has no live worker (all stopped, exited or fatal)",
			 pl->name);
	}
	return buf;
}

static void tp_dispatch(struct task_pool *tp)
{
	struct task *t;
	struct worker *w;

	while ((t = TAILQ_FIRST(&tp->backlog)) && (w = TAILQ_FIRST(&tp->idle))) {
		TAILQ_REMOVE(&tp->backlog, t, q);
		tp->n_pending--;
		worker_set_idle(w, false);
		worker_send(w, t);
	}
}

/* Fail the backlog if nothing can run it any more, else dispatch. */
static void tp_check(struct task_pool *tp)
{
	char why[200];

	if (!TAILQ_EMPTY(&tp->backlog) && pool_cannot_run(tp->pl, why, sizeof(why)))
		tp_fail_backlog(tp, MPSUP_E_CONFLICT, why);
	else
		tp_dispatch(tp);
}

static void task_pool_gone(struct pool *pl)
{
	struct task_pool *tp = pl->tasks;
	char why[200];

	if (!tp)
		return;
	snprintf(why, sizeof(why), "pool %s was removed", pl->name);
	tp_fail_backlog(tp, MPSUP_E_CONFLICT, why);
	free(tp);
	pl->tasks = NULL;
}

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

void task_pool_record(const struct pool *pl, json_t *j)
{
	const struct task_pool *tp = pl->tasks;

	if (pl->conf->mode != POOL_MODE_TASK)
		return;
	json_object_set_new(j, "busy", json_integer(tp ? tp->n_busy : 0));
	json_object_set_new(j, "pending", json_integer(tp ? tp->n_pending : 0));
}

/*
 * Commands.
 */

/* The task pool named name, ready to take n more tasks; answers and
 * returns NULL when not. */
static struct task_pool *pool_for_tasks(struct request *r, const char *name, size_t n)
{
	struct task_pool *tp;
	struct pool *pl;
	char why[200];

	if (!(pl = pool_find(name))) {
		request_error(r, MPSUP_E_NOT_FOUND, "no pool named '%.100s'", name);
		return NULL;
	}
	if (pool_cannot_run(pl, why, sizeof(why))) {
		request_error(r, MPSUP_E_CONFLICT, "%s", why);
		return NULL;
	}
	if (!(tp = tp_get(pl))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return NULL;
	}
	if (n > pl->conf->max_pending || tp->n_pending + n > pl->conf->max_pending) {
		request_error(r, MPSUP_E_LIMIT, "pool %s: %u tasks pending, %zu more (max_pending = %u)",
			      pl->name, tp->n_pending, n, pl->conf->max_pending);
		return NULL;
	}
	return tp;
}

static enum cmd_ret cmd_pool_map(struct request *r)
{
	const char *name;
	json_t *items, *tv = NULL;
	struct task_pool *tp;
	struct map *m;
	double timeout;
	size_t n;

	if (request_unpack(r, "{s:s, s:o, s?o}", "pool", &name, "items", &items, "timeout", &tv) <
		    0 ||
	    request_timeout(r, tv, &timeout) < 0)
		return CMD_DONE;
	if (!json_is_array(items)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "pool.map: items must be a list");
		return CMD_DONE;
	}
	n = json_array_size(items);
	if (!(tp = pool_for_tasks(r, name, n)))
		return CMD_DONE;
	if (n == 0) {
		request_ok(r, json_pack("{s:[]}", "results"));
		return CMD_DONE;
	}
	if (!(m = calloc(1, sizeof(*m))) || !(m->tasks = calloc(n, sizeof(*m->tasks)))) {
		free(m);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	m->n = n;
	m->items = json_incref(items);
	m->timeout = timeout;
	if (park_keep(&m->park, r, NULL, timeout, map_timeout, map_cancel) < 0) {
		map_maybe_free(m);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	for (size_t i = 0; i < n; i++) {
		struct task *t = &m->tasks[i];
		t->id = next_task_id++;
		t->item = json_array_get(items, i);
		t->map = m;
		t->index = i;
		t->tp = tp;
		TAILQ_INSERT_TAIL(&tp->backlog, t, q);
	}
	tp->n_pending += (unsigned)n;
	m->owner = r->conn ? r->conn->uid : 0;
	tp_dispatch(tp);
	return r->replied ? CMD_DONE : CMD_WAIT;
}

static enum cmd_ret cmd_pool_submit(struct request *r)
{
	const char *name;
	json_t *item;
	struct task_pool *tp;
	struct task *t;

	if (request_unpack(r, "{s:s, s:o}", "pool", &name, "item", &item) < 0 ||
	    !(tp = pool_for_tasks(r, name, 1)))
		return CMD_DONE;
	if (!(t = calloc(1, sizeof(*t) + sizeof(struct subm)))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	t->sub = (struct subm *)(t + 1);
	park_queue_init(&t->sub->waiters);
	t->sub->owner = r->conn ? r->conn->uid : 0;
	t->id = next_task_id++;
	t->item = json_incref(item);
	t->tp = tp;
	if (!(t->sub->pool = strdup(name)) || subm_insert(t) < 0) {
		json_decref(t->item);
		free(t->sub->pool);
		free(t);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	TAILQ_INSERT_TAIL(&tp->backlog, t, q);
	tp->n_pending++;
	request_ok(r, json_pack("{s:I}", "task", (json_int_t)t->id));
	tp_dispatch(tp);
	return CMD_DONE;
}

/* Read {task} (an integer) and find the submitted task; answers on failure. */
static struct task *task_param(struct request *r, json_t *v)
{
	struct task *t;

	if (!json_is_integer(v) || json_integer_value(v) <= 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: task must be a task id (a positive integer)",
			      r->cmd->name);
		return NULL;
	}
	t = subm_find((uint64_t)json_integer_value(v));
	/* Task ids are sequential: another user's results are not yours to
	 * read or take (an admin may). */
	if (t && r->conn && r->conn->role < ROLE_ADMIN && r->conn->uid != t->sub->owner)
		t = NULL;
	if (!t)
		request_error(r, MPSUP_E_NOT_FOUND,
			      "no task %" JSON_INTEGER_FORMAT " (unknown, fetched or evicted)",
			      json_integer_value(v));
	return t;
}

static enum cmd_ret cmd_task_wait(struct request *r)
{
	json_t *id, *tv = NULL;
	struct task_waiter *w;
	struct task *t;
	double timeout;

	if (request_unpack(r, "{s:o, s?o}", "task", &id, "timeout", &tv) < 0 ||
	    request_timeout(r, tv, &timeout) < 0 || !(t = task_param(r, id)))
		return CMD_DONE;
	if (t->sub->finished > 0) {
		answer_task(r, t);
		subm_free(t);
		return CMD_DONE;
	}
	if (timeout == 0) {
		request_error(r, MPSUP_E_TIMEOUT, "task %" PRIu64 " has not finished", t->id);
		return CMD_DONE;
	}
	if (!(w = calloc(1, sizeof(*w))) ||
	    park_keep(&w->park, r, &t->sub->waiters, timeout, waiter_timeout, waiter_cancel) < 0) {
		free(w);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	w->t = t;
	return CMD_WAIT;
}

static enum cmd_ret cmd_task_status(struct request *r)
{
	json_t *id, *res;
	struct task *t;

	if (request_unpack(r, "{s:o}", "task", &id) < 0 || !(t = task_param(r, id)))
		return CMD_DONE;
	res = json_pack("{s:I, s:s, s:s, s:I}", "task", (json_int_t)t->id, "state",
			task_state_names[t->state], "pool", t->sub->pool, "attempts",
			(json_int_t)t->attempts);
	if (t->sub->ran_on[0])
		json_object_set_new(res, "worker", json_string(t->sub->ran_on));
	if (t->state == TASK_DONE)
		json_object_set(res, "result", t->result);
	else if (t->state == TASK_FAILED)
		json_object_set_new(res, "error",
				    json_pack("{s:s, s:s}", "code", mpsup_err_name(t->code), "message",
					      t->error ? t->error : "failed"));
	request_ok(r, res);
	return CMD_DONE;
}

/*
 * The module.
 */

static void task_module_info(json_t *info)
{
	unsigned pending = 0, busy = 0;
	struct pool *pl;

	TAILQ_FOREACH(pl, &pools, entry)
		if (pl->tasks) {
			pending += pl->tasks->n_pending;
			busy += pl->tasks->n_busy;
		}
	json_object_set_new(info, "tasks",
			    json_pack("{s:I, s:I, s:I, s:I}", "pending", (json_int_t)pending,
				      "running", (json_int_t)busy, "results_kept",
				      (json_int_t)n_finished, "next_id", (json_int_t)next_task_id));
}

static int task_module_start(const struct conf *conf)
{
	(void)conf;
	ev_evict = evtimer_new(daemon_g.base, evict_cb, NULL);
	return ev_evict ? 0 : -ENOMEM;
}

/* Shutdown: every task that has not ended fails with shutting_down, then
 * everything is freed (process supervision stops the workers next). */
static void task_module_stop(void (*done)(void))
{
	static const char msg[] = "mpsupd is shutting down";
	struct pool *pl;
	struct task *t;

	shutting = true;
	TAILQ_FOREACH(pl, &pools, entry) {
		if (!pl->tasks)
			continue;
		for (unsigned i = 0; i < pl->n_slots; i++) {
			struct worker *w = pl->members[i] ? pl->members[i]->worker : NULL;
			if (!w)
				continue;
			t = worker_take(w);
			worker_close(w);
			if (t)
				task_end(t, NULL, MPSUP_E_SHUTTING_DOWN, msg);
		}
		tp_fail_backlog(pl->tasks, MPSUP_E_SHUTTING_DOWN, msg);
	}
	while ((t = TAILQ_FIRST(&finished)))
		subm_free(t);
	free(subm_hash);
	subm_hash = NULL;
	subm_buckets = n_subm = 0;
	if (ev_evict)
		event_free(ev_evict);
	ev_evict = NULL;
	free(linebuf);
	linebuf = NULL;
	linebuf_cap = 0;
	done();
}

static const struct cmd_entry task_cmds[] = {
	{ "pool.map", ROLE_STATE, CMD_MUTATES | CMD_MAY_BLOCK, cmd_pool_map },
	{ "pool.submit", ROLE_STATE, CMD_MUTATES, cmd_pool_submit },
	{ "task.wait", ROLE_STATE, CMD_MAY_BLOCK, cmd_task_wait },
	{ "task.status", ROLE_STATE, 0, cmd_task_status },
	{ NULL, 0, 0, NULL },
};

const struct cmd_module task_module = {
	.capability = "tasks",
	.cmds = task_cmds,
	.info = task_module_info,
	.start = task_module_start,
	.stop = task_module_stop,
};

const struct proc_observer task_proc_observer = {
	.settled = task_proc_notify,
	.exited = task_worker_exited,
	.gone = task_proc_gone,
	.pool_gone = task_pool_gone,
	.channel = task_worker_attach,
	.record_write = task_proc_record_write,
};
