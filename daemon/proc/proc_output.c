/*
 * Worker output. Pipes are non-blocking and drained by the event loop a
 * bounded amount per wake-up; lines go to the process's ring (bounded in
 * lines and bytes), the pool's file, and live followers. A flooding worker
 * costs CPU, never unbounded memory. Disk errors are counted and logged on
 * change, never fatal.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "daemon.h"
#include "fdio.h"
#include "log.h"
#include "proc.h"
#include "proc_output.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKEUP 4

/*
 * Ring.
 */

const struct logline *logring_at(const struct logring *r, unsigned i)
{
	if (i >= r->n)
		return NULL;
	return r->v[(r->head + i) % r->cap];
}

static void logring_drop_oldest(struct logring *r)
{
	struct logline *l = r->v[r->head];

	r->bytes -= l->len;
	free(l);
	r->v[r->head] = NULL;
	r->head = (r->head + 1) % r->cap;
	r->n--;
}

void logring_clear(struct logring *r)
{
	while (r->n)
		logring_drop_oldest(r);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* Add l (taken) keeping at most max lines and LOGRING_BYTES_MAX bytes. */
static void logring_push(struct logring *r, struct logline *l, unsigned max)
{
	if (max == 0) {
		free(l);
		return;
	}
	while (r->n && (r->n >= max || r->bytes + l->len > LOGRING_BYTES_MAX))
		logring_drop_oldest(r);
	if (r->n == r->cap) {
		/* grow: unroll into a new array (the ring is full, head may be anywhere) */
		unsigned cap = r->cap ? r->cap * 2 : 8;
		struct logline **v;
		if (cap > max)
			cap = max;
		v = calloc(cap, sizeof(*v));
		if (!v) {
			free(l);
			return;
		}
		for (unsigned i = 0; i < r->n; i++)
			v[i] = r->v[(r->head + i) % r->cap];
		free(r->v);
		r->v = v;
		r->cap = cap;
		r->head = 0;
	}
	r->v[(r->head + r->n) % r->cap] = l;
	r->n++;
	r->bytes += l->len;
}

void utf8_sanitize(char *s, size_t n)
{
	unsigned char *u = (unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned char c = u[i];
		size_t len;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else {
			u[i++] = '?';
			continue;
		}
		if (i + len > n)
			goto bad;
		for (size_t k = 1; k < len; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = (cp << 6) | (u[i + k] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			goto bad;
		i += len;
		continue;
	bad:
		u[i++] = '?';
	}
}

void proc_output_line(struct proc *p, int stream, const char *s, size_t n)
{
	struct outfile *f = NULL;
	struct logline *l;

	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (p->pool)
		f = pool_member_outfile(p, stream);
	if (f)
		outfile_write_line(f, p->pool->conf->output_prefix ? p->name : NULL, s, n);
	l = malloc(sizeof(*l) + n + 1);
	if (!l)
		return;
	l->ts = now_wall();
	l->len = (uint32_t)n;
	l->stream = (uint8_t)stream;
	memcpy(l->text, s, n);
	l->text[n] = '\0';
	utf8_sanitize(l->text, n);
	proc_notify_output_line(p, l);
	logring_push(&p->ring, l, daemon_g.conf ? daemon_g.conf->log_ring_lines : 200);
}

/*
 * Files.
 */

static void outfile_error(struct outfile *f, const char *what, int e)
{
	f->errors++;
	if (!f->failing)
		log_error("proc", "output file %s: %s: %s (output is dropped until it works again)",
			  f->path, what, strerror(e));
	f->failing = true;
}

/* A file safe_open would not write (r < 0): a refusal or an error. */
static void outfile_open_error(struct outfile *f, int r)
{
	bool refused = r == -ELOOP || r == -EMLINK || r == -EFTYPE_SAFE || r == -EOWNER_SAFE;

	f->errors++;
	if (!f->failing && refused)
		log_warn("proc",
			 "output file %s: refused: %s (output is dropped until it is fixed)",
			 f->path, safe_open_strerror(r));
	else if (!f->failing)
		log_error("proc",
			  "output file %s: open: %s (output is dropped until it works again)",
			  f->path, safe_open_strerror(r));
	f->failing = true;
}

static void outfile_ok(struct outfile *f)
{
	if (f->failing)
		log_info("proc", "output file %s: writing again", f->path);
	f->failing = false;
}

static void outfile_close_dir(struct outfile *f)
{
	if (f->dir.fd >= 0)
		close(f->dir.fd);
	f->dir.fd = -1;
}

/* Open the file (resolving its directory again when walk is set or it is
 * not open). Output files are opened by the daemon as root, like systemd's
 * StandardOutput=file: (opened before privileges are dropped), so a log
 * under a root-owned /var/log/app works; safe_open keeps the pool's user
 * from steering that root open at a file the user could not write. */
static void outfile_do_open(struct outfile *f, bool walk)
{
	struct stat st;
	int r;

	if (walk || f->dir.fd < 0) {
		outfile_close_dir(f);
		if ((r = safe_dir_open(f->dirpath, &f->owner, &f->dir)) < 0) {
			f->dir.fd = -1;
			outfile_open_error(f, r);
			return;
		}
	}
	r = safe_open_append(&f->dir, f->name, &f->owner, SAFE_CREATE | SAFE_CHARDEV_OK,
			     OUTFILE_MODE, &f->fd);
	if (r < 0) {
		f->fd = -1;
		outfile_open_error(f, r);
		return;
	}
	f->rotates = fstat(f->fd, &st) == 0 && S_ISREG(st.st_mode);
	f->size = f->rotates ? (uint64_t)st.st_size : 0;
}

struct outfile *outfile_open(const struct output_conf *oc, const struct safe_owner *owner)
{
	struct outfile *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->fd = f->dir.fd = -1;
	f->owner = *owner;
	f->owner.groups = NULL;
	if (owner->n_groups && (f->owner.groups = malloc(owner->n_groups * sizeof(gid_t))))
		memcpy((gid_t *)f->owner.groups, owner->groups, owner->n_groups * sizeof(gid_t));
	if (!(f->path = strdup(oc->path)) || (owner->n_groups && !f->owner.groups))
		return outfile_free(f);
	if (safe_path_split(oc->path, &f->dirpath, &f->name) < 0)
		return outfile_free(f);
	f->max_bytes = oc->max_bytes;
	f->backups = oc->backups;
	outfile_do_open(f, true);
	return f;
}

struct outfile *outfile_free(struct outfile *f)
{
	if (!f)
		return NULL;
	if (f->fd >= 0)
		close(f->fd);
	outfile_close_dir(f);
	free((gid_t *)f->owner.groups);
	free(f->dirpath);
	free(f->name);
	free(f->path);
	free(f);
	return NULL;
}

void outfile_reopen(struct outfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	f->failing = false; /* an operator asked: say how this attempt went */
	outfile_do_open(f, true);
}

/* name.N-1 -> name.N ... name -> name.1 in the directory opened (renameat
 * moves entries and never follows them), then a fresh name. Without
 * backups the descriptor checked at open is truncated, never the name. */
static void outfile_rotate(struct outfile *f)
{
	char from[NAME_MAX + 16], to[NAME_MAX + 16];

	if (f->backups == 0) {
		if (ftruncate(f->fd, 0) < 0)
			outfile_error(f, "truncate", errno);
		else
			f->size = 0;
		return;
	}
	close(f->fd);
	f->fd = -1;
	for (unsigned i = f->backups; i >= 1; i--) {
		if (i > 1)
			snprintf(from, sizeof(from), "%s.%u", f->name, i - 1);
		else
			snprintf(from, sizeof(from), "%s", f->name);
		snprintf(to, sizeof(to), "%s.%u", f->name, i);
		if (renameat(f->dir.fd, from, f->dir.fd, to) < 0 && errno != ENOENT)
			outfile_error(f, "rotate", errno);
	}
	outfile_do_open(f, false);
}

void outfile_write(struct outfile *f, const char *s, size_t n)
{
	outfile_write_line(f, NULL, s, n);
}

void outfile_write_line(struct outfile *f, const char *prefix, const char *s, size_t n)
{
	size_t plen = prefix ? strlen(prefix) : 0;
	struct iovec iov[4] = { { (void *)prefix, plen },
				{ (void *)" | ", prefix ? 3 : 0 },
				{ (void *)s, n },
				{ (void *)"\n", 1 } };
	size_t total = plen + (prefix ? 3 : 0) + n + 1;
	ssize_t w;

	if (f->fd >= 0 && f->rotates && f->max_bytes && f->size > 0 &&
	    f->size + total > f->max_bytes)
		outfile_rotate(f);
	if (f->fd < 0) {
		/* try again now and then: the disk may be back (a failed open
		 * counts itself; a line dropped without trying counts here) */
		if (f->errors % 64 == 0)
			outfile_do_open(f, false);
		else
			f->errors++;
		if (f->fd < 0)
			return;
	}
	w = writev(f->fd, iov, 4);
	if (w < 0) {
		outfile_error(f, "write", errno);
		return;
	}
	f->size += (uint64_t)w;
	if ((size_t)w != total) {
		outfile_error(f, "write", ENOSPC);
		return;
	}
	outfile_ok(f);
}

/*
 * Pipes.
 */

/* Split data into lines for o's process; keeps an unfinished tail. Lines
 * longer than LOGLINE_MAX are cut into several. */
static void outpipe_feed(struct outpipe *o, const char *data, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n, part;

		if (o->plen == 0 && nl && take <= LOGLINE_MAX) {
			proc_output_line(o->p, o->stream, data, take);
			data += take + 1;
			n -= take + 1;
			continue;
		}
		if (o->plen == 0 && take > LOGLINE_MAX) {
			proc_output_line(o->p, o->stream, data, LOGLINE_MAX);
			data += LOGLINE_MAX;
			n -= LOGLINE_MAX;
			continue;
		}
		if (!o->partial && !(o->partial = malloc(LOGLINE_MAX)))
			return;
		part = take < LOGLINE_MAX - o->plen ? take : LOGLINE_MAX - o->plen;
		memcpy(o->partial + o->plen, data, part);
		o->plen += part;
		data += part;
		n -= part;
		if (o->plen == LOGLINE_MAX || (nl && part == take)) {
			proc_output_line(o->p, o->stream, o->partial, o->plen);
			o->plen = 0;
			if (n > 0 && *data == '\n') {
				data++;
				n--;
			}
		}
	}
}

/* Read up to max bytes; returns false at EOF or on error. */
static bool outpipe_read(struct outpipe *o, size_t max)
{
	static char buf[READ_CHUNK];
	size_t done = 0;

	while (done < max) {
		ssize_t n = fd_read(o->fd, buf, sizeof(buf));
		if (n <= 0)
			return n == -EAGAIN;
		outpipe_feed(o, buf, (size_t)n);
		done += (size_t)n;
		if ((size_t)n < sizeof(buf))
			return true;
	}
	return true;
}

static void outpipe_flush_partial(struct outpipe *o)
{
	if (o->plen) {
		proc_output_line(o->p, o->stream, o->partial, o->plen);
		o->plen = 0;
	}
	free(o->partial);
	o->partial = NULL;
}

static void outpipe_close(struct outpipe *o)
{
	outpipe_flush_partial(o);
	if (o->ev) {
		event_free(o->ev);
		o->ev = NULL;
	}
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
}

static void outpipe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct outpipe *o = arg;

	(void)fd;
	(void)what;
	if (!outpipe_read(o, READ_CHUNK * READS_PER_WAKEUP))
		outpipe_close(o); /* EOF: every writer is gone; o stays until the run ends */
}

struct outpipe *outpipe_new(struct proc *p, int fd, int stream)
{
	struct outpipe *o = calloc(1, sizeof(*o));

	if (!o) {
		close(fd);
		return NULL;
	}
	o->fd = fd;
	o->stream = stream;
	o->p = p;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	o->ev = event_new(daemon_g.base, fd, EV_READ | EV_PERSIST, outpipe_cb, o);
	if (!o->ev || event_add(o->ev, NULL) < 0) {
		log_error("proc", "%s: cannot watch output pipe", p->name);
		outpipe_close(o);
	}
	return o;
}

struct outpipe *outpipe_free(struct outpipe *o)
{
	if (!o)
		return NULL;
	if (o->fd >= 0)
		(void)outpipe_read(o, LOGRING_BYTES_MAX);
	outpipe_close(o);
	free(o);
	return NULL;
}

/*
 * stdin writers: a one-shot's stdin data, written as the pipe takes it.
 */

struct feeder {
	int fd;
	struct event *ev;
	struct evbuffer *buf;
	LIST_ENTRY(feeder) entry;
};

static LIST_HEAD(, feeder) feeders = LIST_HEAD_INITIALIZER(feeders);

static void feeder_free(struct feeder *f)
{
	LIST_REMOVE(f, entry);
	if (f->ev)
		event_free(f->ev);
	if (f->buf)
		evbuffer_free(f->buf);
	close(f->fd);
	free(f);
}

static void feeder_cb(evutil_socket_t fd, short what, void *arg)
{
	struct feeder *f = arg;
	int n;

	(void)what;
	while (evbuffer_get_length(f->buf) > 0) {
		n = evbuffer_write(f->buf, fd);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break; /* EPIPE: the child does not read; drop the rest */
	}
	feeder_free(f);
}

int stdin_feed(int fd, const char *data, size_t len)
{
	struct feeder *f = calloc(1, sizeof(*f));

	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	f->fd = fd;
	LIST_INSERT_HEAD(&feeders, f, entry);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	f->buf = evbuffer_new();
	f->ev = event_new(daemon_g.base, fd, EV_WRITE | EV_PERSIST, feeder_cb, f);
	if (!f->buf || !f->ev || evbuffer_add(f->buf, data, len) < 0 ||
	    event_add(f->ev, NULL) < 0) {
		feeder_free(f);
		return -ENOMEM;
	}
	return 0;
}

void stdin_feed_cleanup(void)
{
	while (!LIST_EMPTY(&feeders))
		feeder_free(LIST_FIRST(&feeders));
}
