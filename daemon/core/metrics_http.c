/*
 * The metrics endpoint: evhttp on a socket of ours. evhttp 2.1 has no
 * connection limit and tells nobody when a connection it accepted ends, so
 * we make each connection's bufferevent (evhttp_set_bevcb) and keep a
 * reference to it: once evhttp frees it (its callbacks are cleared: it has
 * shut the socket for writing already) a sweep drops our reference, which
 * closes the socket. While METRICS_HTTP_MAX_CONNS are open we stop
 * accepting; the kernel's backlog holds the rest.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "conf_keys.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"

static struct evhttp *http;
static struct evhttp_bound_socket *bound;
static char *unix_path; /* ours to unlink at stop */
static struct bufferevent *conns[METRICS_HTTP_MAX_CONNS];
static unsigned n_conns;
static bool paused;
static struct event *ev_sweep;
/* How often connections evhttp let go are looked for. */
#define SWEEP_SECONDS 0.2

/* Split "HOST:PORT" ("[::1]:9464") into host and port; 0 or -EINVAL. */
static int split_host_port(const char *v, char *host, size_t hostlen, const char **ret_port)
{
	const char *colon, *h = v;
	size_t n;

	if (*v == '[') {
		const char *end = strchr(v, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		h = v + 1;
		n = (size_t)(end - h);
		colon = end + 1;
	} else {
		if (!(colon = strrchr(v, ':')) || strchr(v, ':') != colon)
			return -EINVAL;
		n = (size_t)(colon - v);
	}
	if (n == 0 || n >= hostlen || !colon[1])
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*ret_port = colon + 1;
	return 0;
}

/* Resolve a loopback HOST:PORT into sa; the reason in err on failure. */
static int loopback_resolve(const char *v, struct sockaddr_storage *sa, socklen_t *ret_len,
			    char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char host[64], *end;
	const char *port;
	unsigned long pn;
	bool loop = false;

	if (split_host_port(v, host, sizeof(host), &port) < 0)
		return conf_seterr(err, errlen, "expected unix:/PATH or HOST:PORT, not '%s'", v);
	pn = strtoul(port, &end, 10);
	if (*end || pn == 0 || pn > 65535)
		return conf_seterr(err, errlen, "bad port '%s'", port);
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return conf_seterr(err, errlen, "'%s' is not a numeric address", host);
	if (ai->ai_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, ai->ai_addr, sizeof(sin)); /* ai_addr may be less aligned */
		loop = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
	} else if (ai->ai_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, ai->ai_addr, sizeof(sin6));
		loop = IN6_IS_ADDR_LOOPBACK(&sin6.sin6_addr);
	}
	if (!loop) {
		freeaddrinfo(ai);
		return conf_seterr(err, errlen,
				   "%s is not a loopback address (metrics are served on "
				   "127.0.0.0/8, [::1] or a unix: socket only)",
				   host);
	}
	if (sa) {
		memcpy(sa, ai->ai_addr, ai->ai_addrlen);
		*ret_len = ai->ai_addrlen;
	}
	freeaddrinfo(ai);
	return 0;
}

int metrics_listen_check(const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "off") == 0 || !*value)
		return 0;
	if (strncmp(value, "unix:", 5) == 0) {
		if (value[5] != '/')
			return conf_seterr(err, errlen, "unix: needs an absolute path");
		if (strlen(value + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return conf_seterr(err, errlen, "socket path too long");
		return 0;
	}
	return loopback_resolve(value, NULL, NULL, err, errlen);
}

/* A loopback TCP listening socket; fd or a negative errno. */
static int tcp_listen(const char *v)
{
	struct sockaddr_storage sa;
	socklen_t len = 0;
	char err[200];
	int fd, one = 1;

	if (loopback_resolve(v, &sa, &len, err, sizeof(err)) < 0) {
		log_error("metrics", "metrics_listen: %s", err);
		return -EINVAL;
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 64) < 0) {
		int r = -errno;
		log_error("metrics", "cannot listen on %s: %s", v, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

/* Accept only while fewer than METRICS_HTTP_MAX_CONNS are open. */
static void accept_update(void)
{
	struct evconnlistener *l = bound ? evhttp_bound_socket_get_listener(bound) : NULL;
	bool full = n_conns >= METRICS_HTTP_MAX_CONNS;

	if (!l || full == paused)
		return;
	if (full)
		evconnlistener_disable(l);
	else
		evconnlistener_enable(l);
	paused = full;
}

/* Drop our reference to the connections evhttp has freed (all of them
 * with all set: at stop). */
static void sweep(bool all)
{
	unsigned kept = 0;

	for (unsigned i = 0; i < n_conns; i++) {
		bufferevent_event_cb ecb = NULL;
		bufferevent_getcb(conns[i], NULL, NULL, &ecb, NULL);
		if (all || !ecb)
			bufferevent_decref(conns[i]);
		else
			conns[kept++] = conns[i];
	}
	n_conns = kept;
	accept_update();
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sweep(false);
	if (!n_conns)
		event_del(ev_sweep);
}

/* A new connection: its bufferevent (evhttp sets the socket on it). */
static struct bufferevent *conn_bev(struct event_base *base, void *arg)
{
	struct timeval tv = { 0, (suseconds_t)(SWEEP_SECONDS * 1e6) };
	struct bufferevent *bev;

	(void)arg;
	sweep(false);
	/* over the limit only if the listener was not paused in time: the
	 * connection is served, and accepting stops */
	if (!(bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)))
		return NULL;
	if (n_conns < METRICS_HTTP_MAX_CONNS) {
		bufferevent_incref(bev);
		conns[n_conns++] = bev;
		if (!event_pending(ev_sweep, EV_TIMEOUT, NULL))
			event_add(ev_sweep, &tv);
	}
	accept_update();
	return bev;
}

/* The path of a request URI without its query. */
static bool uri_is_metrics(const char *uri)
{
	size_t n = strcspn(uri, "?#");
	return n == 8 && memcmp(uri, "/metrics", 8) == 0;
}

static void serve_cb(struct evhttp_request *req, void *arg)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *b;

	(void)arg;
	if (!uri || !uri_is_metrics(uri)) {
		evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		evhttp_add_header(out, "Allow", "GET, HEAD");
		evhttp_send_error(req, 405, "Method Not Allowed");
		return;
	}
	if (!(b = evbuffer_new())) {
		evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
		return;
	}
	metrics_render(b);
	evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

/* The listening socket metrics_listen names; fd or a negative errno. */
static int listen_on(const char *v)
{
	int fd;

	if (strncmp(v, "unix:", 5) != 0)
		return tcp_listen(v);
	fd = server_unix_listen(v + 5);
	if (fd >= 0 && !(unix_path = strdup(v + 5))) {
		close(fd);
		unlink(v + 5);
		return -ENOMEM;
	}
	return fd;
}

int metrics_http_start(void)
{
	const char *v = daemon_g.conf->metrics_listen;
	int fd;

	if (!v || !*v || strcmp(v, "off") == 0)
		return 0;
	if ((fd = listen_on(v)) < 0)
		return fd;
	if (!(http = evhttp_new(daemon_g.base)) ||
	    !(ev_sweep = event_new(daemon_g.base, -1, EV_PERSIST, sweep_cb, NULL))) {
		close(fd);
		metrics_http_stop();
		return -ENOMEM;
	}
	evhttp_set_max_headers_size(http, METRICS_HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, METRICS_HTTP_TIMEOUT);
	/* every method reaches serve_cb, which answers 405 */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
						 EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_bevcb(http, conn_bev, NULL);
	evhttp_set_gencb(http, serve_cb, NULL);
	if (!(bound = evhttp_accept_socket_with_handle(http, fd))) {
		close(fd);
		metrics_http_stop();
		return -ENOMEM;
	}
	log_info("metrics", "serving GET /metrics on %s", v);
	return 0;
}

void metrics_http_stop(void)
{
	if (http)
		evhttp_free(http); /* closes the bound socket, frees every connection */
	http = NULL;
	sweep(true);
	if (ev_sweep)
		event_free(ev_sweep);
	ev_sweep = NULL;
	bound = NULL;
	paused = false;
	if (unix_path)
		unlink(unix_path);
	free(unix_path);
	unix_path = NULL;
}
