/*
 * The control socket: creating it (or taking the one systemd passed),
 * clearing a stale one, accepting clients, and admitting them by the shares
 * of max_clients their role may use. A peer's role comes from the peer
 * policy the assembly installs. What a connection does once admitted:
 * conn.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "access.h"
#include "command.h"
#include "conn.h"
#include "conf_keys.h"
#include "conn_int.h"
#include "daemon.h"
#include "log.h"
#include "mpsup.h"

/* The core's own view of a peer ([access] only) until the daemon's
 * assembly installs the supervision-aware one (server_set_peer_policy). */
static enum role core_role(uid_t uid, const gid_t *gids, int n_gids)
{
	return access_role(daemon_g.conf, uid, gids, n_gids, false);
}
static const struct peer_policy core_policy = { .role = core_role };
static const struct peer_policy *policy = &core_policy;

enum role server_peer_role(uid_t uid, const gid_t *gids, int n_gids)
{
	return policy->role(uid, gids, n_gids);
}

static int listen_fd = -1;
static bool listen_activated; /* handed over by systemd: not ours to unlink */
static struct event *ev_accept, *ev_accept_resume;
static char *socket_path;

const char *server_socket_path(void)
{
	return socket_path ? socket_path : "";
}

unsigned server_clients(void)
{
	return conns_g.n;
}

void server_refresh_roles(void)
{
	struct conn *c;

	TAILQ_FOREACH(c, &conns_g.all, entry) {
		enum role r = server_peer_role(c->uid, c->gids, c->n_gids);

		if (r != c->role)
			log_info("access", "client %llu (uid %d): role %s -> %s",
				 (unsigned long long)c->id, (int)c->uid, role_names[c->role],
				 role_names[r]);
		c->role = r;
	}
}

/* Refuse a client with one error line. */
static void refuse(int fd, enum mpsup_err code, const char *why)
{
	json_t *resp = mpsup_response_error(NULL, code, why);
	char *s = resp ? json_dumps(resp, JSON_COMPACT) : NULL;

	if (s) {
		size_t l = strlen(s);
		s[l] = '\n';
		(void)!send(fd, s, l + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	free(s);
	json_decref(resp);
	close(fd);
}

static unsigned conns_of_uid(uid_t uid)
{
	unsigned n = 0;
	struct conn *c;

	TAILQ_FOREACH(c, &conns_g.all, entry)
		if (c->uid == uid)
			n++;
	return n;
}

/* The part of total kept for admins, and for state peers (and admins). */
static unsigned admin_reserve(unsigned total)
{
	unsigned floor = total / 4 < 8 ? total / 4 : 8;

	return total / 32 > floor ? total / 32 : floor;
}

static unsigned state_reserve(unsigned total)
{
	unsigned floor = total / 4 < 16 ? total / 4 : 16;

	return total / 8 > floor ? total / 8 : floor;
}

unsigned role_share(unsigned total, enum role role)
{
	if (role >= ROLE_ADMIN)
		return total;
	if (role >= ROLE_STATE) /* run shares state's part */
		return total - admin_reserve(total);
	return total - admin_reserve(total) - state_reserve(total);
}

void role_share_refusal(char *buf, size_t len, const char *what, unsigned total, enum role role)
{
	unsigned share = role_share(total, role);

	if (role >= ROLE_ADMIN)
		snprintf(buf, len, "%s (%u) reached", what, total);
	else
		snprintf(buf, len,
			 "%s (%u) reached for role %s: it may use %u, the last %u are kept "
			 "for %s",
			 what, total, role_names[role], share, total - share,
			 role >= ROLE_STATE ? "admins" : "the state and admin roles");
}

/* Connections of a pool's workers admitted beyond the shares. */
static unsigned exempt_of_pool(const char *pool)
{
	unsigned n = 0;
	struct conn *c;

	TAILQ_FOREACH(c, &conns_g.all, entry)
		if (c->exempt_pool && strcmp(c->exempt_pool, pool) == 0)
			n++;
	return n;
}

/*
 * May a new peer connect? Each role may fill max_clients up to its share
 * (read < state < admin), so floods of a lower role never refuse a higher
 * one; max_clients_per_uid limits non-admins further. A worker of one of
 * our pools is let in beyond both while its pool's workers hold fewer than
 * their allowance (*ret_exempt: the pool's name). true if admitted, else
 * false with the reason in buf.
 */
static bool admission(uid_t uid, pid_t pid, enum role role, const char **ret_exempt, char *buf,
		      size_t len)
{
	const struct conf *cf = daemon_g.conf;
	unsigned counted = conns_g.n - conns_g.n_exempt, allowance;
	const char *pool;

	*ret_exempt = NULL;
	if (counted >= role_share(cf->max_clients, role))
		role_share_refusal(buf, len, "max_clients", cf->max_clients, role);
	else if (role < ROLE_ADMIN && cf->max_clients_per_uid &&
		 conns_of_uid(uid) >= cf->max_clients_per_uid)
		snprintf(buf, len, "max_clients_per_uid (%u) reached", cf->max_clients_per_uid);
	else
		return true;
	pool = policy->worker_pool ? policy->worker_pool(pid, uid, &allowance) : NULL;
	if (pool && exempt_of_pool(pool) < allowance) {
		*ret_exempt = pool;
		return true;
	}
	return false;
}

void server_set_peer_policy(const struct peer_policy *p)
{
	policy = p ? p : &core_policy;
}

/* Out of descriptors: stop accepting for a moment (the listening socket
 * stays readable, so the loop would spin on it). */
static void accept_pause(void)
{
	struct timeval tv = { 0, 100 * 1000 };

	event_del(ev_accept);
	evtimer_add(ev_accept_resume, &tv);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (ev_accept)
		event_add(ev_accept, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	static struct log_ratelimit refusals, fd_errors;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *c;
	const char *exempt;
	char why[200];
	enum role role;
	gid_t *gids;
	int fd, n_gids;

	(void)what;
	(void)arg;
	for (int i = 0; i < 64; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				if (log_allowed(&fd_errors))
					log_warn("conn", "accept: %s (pausing 100 ms)",
						 strerror(errno));
				accept_pause();
			}
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    !(gids = conn_peer_groups(fd, cred.gid, &n_gids))) {
			close(fd);
			continue;
		}
		role = server_peer_role(cred.uid, gids, n_gids);
		if (!admission(cred.uid, cred.pid, role, &exempt, why, sizeof(why))) {
			char msg[240];
			if (log_allowed(&refusals))
				log_warn("conn", "refusing uid %d pid %d: %s", (int)cred.uid,
					 (int)cred.pid, why);
			snprintf(msg, sizeof(msg), "too many clients: %s", why);
			refuse(fd, MPSUP_E_LIMIT, msg);
			free(gids);
			continue;
		}
		c = conn_new(fd, cred.uid, cred.gid, cred.pid, gids, n_gids, role);
		if (!c) {
			log_error("conn", "out of memory accepting a client");
			continue;
		}
		if (exempt) {
			if (!(c->exempt_pool = strdup(exempt))) {
				conn_close(c);
				continue;
			}
			conns_g.n_exempt++;
			log_info("conn",
				 "client %llu: worker pid %d of pool %s let in beyond the "
				 "shares of max_clients (%s)",
				 (unsigned long long)c->id, (int)c->pid, exempt, why);
		}
		log_debug("conn", "client %llu: uid %d pid %d role %d", (unsigned long long)c->id,
			  (int)c->uid, (int)c->pid, (int)c->role);
	}
}

/* Is a daemon answering at this socket path? 1 yes, 0 no (the socket is
 * stale: nothing listens on it), or a negative errno when that cannot be
 * told (then it must not be removed). The connect does not block: a full
 * backlog (EAGAIN) means a live, busy daemon. */
static int socket_answers(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 1 : -errno;
	close(fd);
	if (r == -EAGAIN || r == -EINPROGRESS)
		return 1;
	if (r == -ECONNREFUSED)
		return 0;
	return r;
}

/* Something is at path already: refuse a link or a non-socket, and a
 * socket a daemon answers on; remove a stale one. 0 or a negative errno. */
static int socket_clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int r;

	if (lstat(path, &st) < 0)
		return 0;
	if (S_ISLNK(st.st_mode)) {
		log_error("server", "%s is a symbolic link; refusing to use it", path);
		return -ELOOP;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("server", "%s exists and is not a socket; refusing to replace it", path);
		return -EEXIST;
	}
	r = socket_answers(sa);
	if (r > 0) {
		log_error("server", "another mpsupd is already running on %s", path);
		return -EADDRINUSE;
	}
	if (r < 0) {
		log_error("server", "cannot tell whether %s is in use (%s); not removing it", path,
			  strerror(-r));
		return r;
	}
	log_info("server", "removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		r = -errno;
		log_error("server", "cannot remove stale socket %s: %s", path, strerror(errno));
		return r;
	}
	return 0;
}

/* Give the bound socket at path its group and mode (socket_group,
 * socket_mode); failures are logged, not fatal. */
static void socket_set_access(const char *path)
{
	const struct conf *cf = daemon_g.conf;

	if (cf->socket_group) {
		gid_t gid;
		if (conf_lookup_group(cf->socket_group, &gid) < 0)
			log_warn("server", "no such group '%s'", cf->socket_group);
		else if (lchown(path, (uid_t)-1, gid) < 0)
			log_warn("server", "cannot give %s to group %s: %s", path, cf->socket_group,
				 strerror(errno));
	}
	if (chmod(path, cf->socket_mode) < 0)
		log_warn("server", "cannot chmod %s: %s", path, strerror(errno));
}

/* Create, bind and secure the listening socket at path: its fd, or a
 * negative errno. */
static int socket_create(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("server", "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if ((r = socket_clear_stale(path, &sa)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		log_error("server", "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	/* Check what we bound before changing its mode: never follow a link. */
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		log_error("server", "%s changed under us; refusing it", path);
		close(fd);
		return -EEXIST;
	}
	socket_set_access(path);
	if (listen(fd, 512) < 0) {
		r = -errno;
		close(fd);
		unlink(path);
		return r;
	}
	return fd;
}

/*
 * Socket activation: the first listening Unix stream socket systemd passed
 * is ours (listen_fd; *path becomes its name when it has one); anything
 * else it passed is closed (never inherited). sa holds the name. Returns
 * whether one was passed.
 */
static bool socket_take_passed(struct sockaddr_un *sa, const char **path)
{
	socklen_t len = sizeof(*sa);
	/* 1: unset LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES so no child sees them */
	int n = sd_listen_fds(1);

	for (int fd = SD_LISTEN_FDS_START; n > 0 && fd < SD_LISTEN_FDS_START + n; fd++) {
		if (listen_fd < 0 && sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
			listen_fd = fd;
			continue;
		}
		log_warn("server",
			 "ignoring passed descriptor %d (not a listening Unix stream socket)", fd);
		close(fd);
	}
	if (listen_fd < 0)
		return false;
	listen_activated = true;
	fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	memset(sa, 0, sizeof(*sa));
	if (getsockname(listen_fd, (struct sockaddr *)sa, &len) == 0 &&
	    len > offsetof(struct sockaddr_un, sun_path) && sa->sun_path[0])
		*path = sa->sun_path;
	log_info("server", "using the socket passed by systemd (%s)", *path);
	return true;
}

int server_start(void)
{
	const char *path = daemon_g.socket_override ? daemon_g.socket_override
			   : daemon_g.conf->socket  ? daemon_g.conf->socket
						    : MPSUP_DEFAULT_SOCKET;
	struct sockaddr_un sa;

	if (!socket_take_passed(&sa, &path)) {
		listen_fd = socket_create(path);
		if (listen_fd < 0)
			return listen_fd;
	}
	socket_path = strdup(path);
	ev_accept = event_new(daemon_g.base, listen_fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	ev_accept_resume = evtimer_new(daemon_g.base, accept_resume_cb, NULL);
	if (!socket_path || !ev_accept || !ev_accept_resume || conns_start() < 0 ||
	    event_add(ev_accept, NULL) < 0)
		return -ENOMEM;
	log_info("server", "listening on %s", path);
	return 0;
}

void server_stop(void)
{
	conns_stop();
	if (ev_accept)
		ev_accept = (event_free(ev_accept), NULL);
	if (ev_accept_resume)
		ev_accept_resume = (event_free(ev_accept_resume), NULL);
	if (listen_fd >= 0) {
		close(listen_fd);
		if (!listen_activated && socket_path)
			unlink(socket_path);
		listen_fd = -1;
	}
	free(socket_path);
	socket_path = NULL;
}
