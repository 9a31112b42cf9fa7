/*
 * Readiness by notification (ready = notify): each member of such a pool
 * gets NOTIFY_SOCKET, a datagram socket of ours in the runtime directory,
 * and speaks sd_notify's protocol to it: READY=1 makes it running,
 * STATUS= is shown in its record, STOPPING=1 says it is going away on its
 * own. The socket lives in RUNTIME/notify/UID/, a directory of mode 0700
 * owned by the member's uid: nobody else can reach it (no abstract names:
 * those are open to every local user). A message must also carry that uid
 * (SO_PASSCRED). Datagrams are bounded in size (larger ones are dropped)
 * and in rate (per socket, per second); descriptors passed along are
 * closed unread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "proc.h"
#include "proc_int.h"
#include "proc_ready.h"
#include "proc_registry.h"

#define NOTIFY_DGRAM_MAX 4096 /* sd_notify's messages are short */
#define NOTIFY_RATE_MAX 100   /* datagrams a socket may send a second */
#define NOTIFY_READ_BATCH 32  /* read at most this many per wake-up */
#define NOTIFY_STATUS_MAX 200 /* STATUS= text kept */
#define NOTIFY_RCVBUF (64 * 1024)

struct notify_sock {
	int fd;
	struct event *ev;
	char *path;
	uid_t uid;
	double window; /* start of the current rate window (monotonic) */
	unsigned in_window;
	unsigned long dropped;
};

/* Open (making it if needed) RUNTIME/notify, then its UID/ directory of
 * mode 0700 owned by uid; the path of the latter in buf. */
static int uid_dir(uid_t uid, gid_t gid, char *buf, size_t len)
{
	const char *rt;
	int rfd = procreg_dirfd(&rt), nfd, ufd, r = 0;
	char name[24];
	struct stat st;

	if (rfd < 0)
		return -ENOENT;
	if (mkdirat(rfd, "notify", 0711) < 0 && errno != EEXIST)
		return -errno;
	if ((nfd = openat(rfd, "notify", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(nfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(nfd);
		return -EPERM; /* not ours: someone else made it */
	}
	snprintf(name, sizeof(name), "%u", (unsigned)uid);
	if (mkdirat(nfd, name, 0700) < 0 && errno != EEXIST)
		r = -errno;
	else if ((ufd = openat(nfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = -errno;
	else {
		/* only we can create in notify/: give it to the uid, 0700 */
		if (fstat(ufd, &st) < 0 ||
		    ((st.st_uid != uid || st.st_gid != gid) && fchown(ufd, uid, gid) < 0) ||
		    ((st.st_mode & 07777) != 0700 && fchmod(ufd, 0700) < 0))
			r = -errno;
		close(ufd);
	}
	close(nfd);
	if (r == 0 && (size_t)snprintf(buf, len, "%s/notify/%s", rt, name) >= len)
		r = -ENAMETOOLONG;
	return r;
}

static void notify_cb(evutil_socket_t fd, short what, void *arg);

/* Make p's socket (bound, SO_PASSCRED, watched). */
static int sock_open(struct proc *p, uid_t uid, gid_t gid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct notify_sock *ns;
	char dir[sizeof(sa.sun_path)];
	int one = 1, rcv = NOTIFY_RCVBUF, r;
	mode_t old;

	if ((r = uid_dir(uid, gid, dir, sizeof(dir))) < 0)
		return r;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, p->name) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (!(ns = calloc(1, sizeof(*ns))) || !(ns->path = strdup(sa.sun_path))) {
		free(ns);
		return -ENOMEM;
	}
	ns->uid = uid;
	ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ns->fd < 0)
		goto fail;
	/* the path's last part may be anything the uid left there */
	if (unlink(sa.sun_path) < 0 && errno != ENOENT)
		goto fail;
	old = umask(0); /* the directory keeps others out; the uid must write */
	r = bind(ns->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || setsockopt(ns->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		goto fail;
	(void)setsockopt(ns->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	if (!(ns->ev = event_new(daemon_g.base, ns->fd, EV_READ | EV_PERSIST, notify_cb, p)) ||
	    event_add(ns->ev, NULL) < 0) {
		errno = ENOMEM;
		goto fail;
	}
	p->notify = ns;
	return 0;
fail:
	r = -errno;
	if (ns->ev)
		event_free(ns->ev);
	if (ns->fd >= 0)
		close(ns->fd);
	free(ns->path);
	free(ns);
	return r;
}

/* Throw away what is queued (from an earlier run). */
static void sock_drain(struct notify_sock *ns)
{
	char buf[64];

	for (int i = 0; i < 4096; i++)
		if (recv(ns->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC) < 0)
			break;
}

int proc_ready_prepare(struct proc *p, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	int r;

	p->ready_seen = false;
	p->notify_stopping = false;
	free(p->notify_status);
	p->notify_status = NULL;
	if (p->notify && p->notify->uid != uid)
		proc_ready_close(p); /* a reload changed the user */
	if (p->notify) {
		sock_drain(p->notify);
		return 0;
	}
	if ((r = sock_open(p, uid, gid)) < 0) {
		snprintf(err, errlen, "notify socket: %s",
			 r == -ENOENT ? "no runtime directory (set runtime_dir)" : strerror(-r));
		return r;
	}
	return 0;
}

const char *proc_ready_path(const struct proc *p)
{
	return p->notify ? p->notify->path : NULL;
}

void proc_ready_close(struct proc *p)
{
	struct notify_sock *ns = p->notify;

	if (!ns)
		return;
	event_free(ns->ev);
	close(ns->fd);
	unlink(ns->path);
	free(ns->path);
	free(ns);
	p->notify = NULL;
	free(p->notify_status);
	p->notify_status = NULL;
}

/* Keep STATUS= text: bounded, control characters replaced. */
static void set_status(struct proc *p, const char *v, size_t len)
{
	char *s;

	if (len > NOTIFY_STATUS_MAX)
		len = NOTIFY_STATUS_MAX;
	if (!(s = strndup(v, len)))
		return;
	for (char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	free(p->notify_status);
	p->notify_status = s;
}

/* One datagram's assignments, a line each. */
static void handle_message(struct proc *p, const char *msg, size_t len)
{
	bool ready = false;

	for (size_t i = 0; i < len;) {
		const char *line = msg + i, *nl = memchr(line, '\n', len - i);
		size_t ll = nl ? (size_t)(nl - line) : len - i;

		if (ll == 7 && memcmp(line, "READY=1", 7) == 0)
			ready = true;
		else if (ll == 10 && memcmp(line, "STOPPING=1", 10) == 0)
			p->notify_stopping = true;
		else if (ll >= 7 && memcmp(line, "STATUS=", 7) == 0)
			set_status(p, line + 7, ll - 7);
		i += ll + 1;
	}
	if (ready && !p->ready_seen && p->state == PS_STARTING) {
		p->ready_seen = true;
		log_debug("proc", "%s: READY=1", p->name);
		proc_feed(p, PE_START_SECS);
	}
}

/* May ns take one more datagram this second? */
static bool rate_ok(struct proc *p, struct notify_sock *ns)
{
	double now = now_mono();

	if (now - ns->window >= 1.0) {
		if (ns->dropped)
			log_warn("proc", "%s: %lu notify messages dropped (more than %d a second)",
				 p->name, ns->dropped, NOTIFY_RATE_MAX);
		ns->window = now;
		ns->in_window = 0;
		ns->dropped = 0;
	}
	if (ns->in_window >= NOTIFY_RATE_MAX) {
		ns->dropped++;
		return false;
	}
	ns->in_window++;
	return true;
}

/* Close descriptors a sender passed; its credentials into ret_cred (false
 * when it sent none). The control data is copied out: CMSG_DATA is not
 * aligned for the types it carries. */
static bool control_creds(struct msghdr *mh, struct ucred *ret_cred)
{
	bool have = false;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_CREDENTIALS &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
			memcpy(ret_cred, CMSG_DATA(c), sizeof(*ret_cred));
			have = true;
		} else if (c->cmsg_type == SCM_RIGHTS) {
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < n; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				close(fd);
			}
		}
	}
	return have;
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;
	struct notify_sock *ns = p->notify;
	static char buf[NOTIFY_DGRAM_MAX];
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(16 * sizeof(int))];
	} ctl;

	(void)what;
	for (int i = 0; i < NOTIFY_READ_BATCH && p->notify == ns; i++) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = &ctl,
				     .msg_controllen = sizeof(ctl) };
		struct ucred cred;
		bool have_cred;
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0)
			return;
		have_cred = control_creds(&mh, &cred);
		if (!rate_ok(p, ns) || (mh.msg_flags & MSG_TRUNC))
			continue;
		if (!have_cred || (cred.uid != ns->uid && cred.uid != 0))
			continue;
		handle_message(p, buf, (size_t)n);
	}
}
