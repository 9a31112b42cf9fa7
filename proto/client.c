/*
 * A client of the mpsup protocol: a Unix stream socket, a framer for the
 * answers, and an optional per-operation timeout enforced with poll().
 * The descriptor stays in blocking mode; I/O uses MSG_DONTWAIT so the fd can
 * still be handed to an event loop.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mpsup.h"

#define CLIENT_DEFAULT_MAX_LINE ((size_t)64 * 1024 * 1024)
#define NO_DEADLINE UINT64_MAX

struct mpsup_client {
	int fd;
	struct mpsup_framer *framer;
	double timeout; /* seconds, < 0 = forever */
	bool eof;
	json_int_t next_id;
};

/* Monotonic clock in microseconds. */
static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The deadline of one operation started now. */
static uint64_t client_deadline(const struct mpsup_client *c)
{
	if (c->timeout < 0)
		return NO_DEADLINE;
	if (c->timeout > 1e9) /* ~31 years: as good as forever */
		return NO_DEADLINE;
	return now_usec() + (uint64_t)(c->timeout * 1e6);
}

/* Wait until fd is ready for events or the deadline passes (-ETIMEDOUT). */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int ms = -1, r;

		if (deadline != NO_DEADLINE) {
			uint64_t now = now_usec(), left;

			left = deadline > now ? deadline - now : 0;
			/* Round up so we never wake just before the deadline. */
			ms = left / 1000 > INT32_MAX ? INT32_MAX : (int)((left + 999) / 1000);
		}
		r = poll(&pfd, 1, ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r > 0)
			return 0; /* also POLLHUP/POLLERR: the next I/O call reports it */
		if (deadline != NO_DEADLINE && now_usec() >= deadline)
			return -ETIMEDOUT;
	}
}

const char *mpsup_socket_path(const char *path)
{
	const char *env;

	if (path && *path)
		return path;
	env = getenv("MPSUP_SOCKET");
	if (env && *env)
		return env;
	return MPSUP_DEFAULT_SOCKET;
}

int mpsup_connect(const char *path, struct mpsup_client **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct mpsup_client *c;
	size_t plen;
	int fd, r;

	if (!ret)
		return -EINVAL;
	path = mpsup_socket_path(path);
	plen = strlen(path);
	if (plen >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, plen + 1);

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->timeout = -1;
	c->next_id = 1;
	c->framer = mpsup_framer_new(CLIENT_DEFAULT_MAX_LINE);
	if (!c->framer) {
		r = -ENOMEM;
		goto fail;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int soerr = 0;
		socklen_t slen = sizeof(soerr);

		if (errno != EINTR) {
			r = -errno;
			goto fail;
		}
		/* Interrupted: the connection goes on; wait for its outcome. */
		r = wait_fd(fd, POLLOUT, NO_DEADLINE);
		if (r < 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0) {
			r = -errno;
			goto fail;
		}
		if (soerr) {
			r = -soerr;
			goto fail;
		}
	}
	*ret = c;
	return 0;
fail:
	mpsup_close(c);
	return r;
}

struct mpsup_client *mpsup_close(struct mpsup_client *c)
{
	if (!c)
		return NULL;
	if (c->fd >= 0)
		close(c->fd);
	mpsup_framer_free(c->framer);
	free(c);
	return NULL;
}

int mpsup_client_fd(const struct mpsup_client *c)
{
	return c ? c->fd : -EINVAL;
}

void mpsup_set_timeout(struct mpsup_client *c, double seconds)
{
	if (!c)
		return;
	/* NaN and negatives mean forever. */
	c->timeout = seconds >= 0 ? seconds : -1;
}

void mpsup_set_max_line(struct mpsup_client *c, size_t max_line)
{
	if (c)
		mpsup_framer_set_max_line(c->framer, max_line ? max_line : CLIENT_DEFAULT_MAX_LINE);
}

/* Write all of data before the deadline; never raises SIGPIPE. */
static int write_all(struct mpsup_client *c, const char *data, size_t len, uint64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			r = wait_fd(c->fd, POLLOUT, deadline);
			if (r < 0)
				return r;
			continue;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int mpsup_send_raw(struct mpsup_client *c, const void *data, size_t len)
{
	if (!c || (!data && len))
		return -EINVAL;
	return write_all(c, data, len, client_deadline(c));
}

/* Write data with fds (SCM_RIGHTS) on its first byte, the rest as
 * write_all does. */
static int write_with_fds(struct mpsup_client *c, const char *data, size_t len, const int *fds,
			  size_t n_fds, uint64_t deadline)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MPSUP_FDS_MAX)];
	} cbuf;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	memset(&cbuf, 0, sizeof(cbuf));
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
	for (;;) {
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((n = wait_fd(c->fd, POLLOUT, deadline)) < 0)
			return (int)n;
	}
	return write_all(c, data + n, len - (size_t)n, deadline);
}

/* request as one line (malloc'ed, with '\n'); NULL when out of memory. */
static char *request_line(json_t *request, size_t *ret_len)
{
	char *text = json_dumps(request, JSON_COMPACT), *line;
	size_t len;

	if (!text)
		return NULL;
	len = strlen(text);
	if (!(line = realloc(text, len + 2))) {
		free(text);
		return NULL;
	}
	line[len++] = '\n';
	line[len] = '\0';
	*ret_len = len;
	return line;
}

int mpsup_send_with_fds(struct mpsup_client *c, json_t *request, const int *fds, size_t n_fds)
{
	size_t len;
	char *line;
	int r;

	if (!c || !json_is_object(request) || (n_fds && !fds) || n_fds > MPSUP_FDS_MAX)
		return -EINVAL;
	if (!n_fds)
		return mpsup_send(c, request);
	if (!(line = request_line(request, &len)))
		return -ENOMEM;
	r = write_with_fds(c, line, len, fds, n_fds, client_deadline(c));
	free(line);
	return r;
}

int mpsup_send(struct mpsup_client *c, json_t *request)
{
	char *text, *line;
	size_t len;
	int r;

	if (!c || !json_is_object(request))
		return -EINVAL;
	text = json_dumps(request, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	line = realloc(text, len + 2);
	if (!line) {
		free(text);
		return -ENOMEM;
	}
	line[len++] = '\n';
	line[len] = '\0';
	r = write_all(c, line, len, client_deadline(c));
	free(line);
	return r;
}

/* Next line from the socket, in place in the framer (valid until the next
 * call on c). Buffered lines are delivered before a close is reported. */
static int recv_line_in_place(struct mpsup_client *c, char **ret_line, size_t *ret_len)
{
	uint64_t deadline = client_deadline(c);

	for (;;) {
		char *buf;
		ssize_t room, n;
		int r;

		r = mpsup_framer_pop(c->framer, ret_line, ret_len);
		if (r != 0)
			return r < 0 ? r : 0;
		if (c->eof)
			return -ECONNRESET;

		room = mpsup_framer_space(c->framer, 0, &buf);
		if (room < 0)
			return (int)room;
		n = recv(c->fd, buf, (size_t)room, MSG_DONTWAIT);
		if (n > 0) {
			mpsup_framer_commit(c->framer, (size_t)n);
			continue;
		}
		if (n == 0) {
			c->eof = true;
			return -ECONNRESET;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		r = wait_fd(c->fd, POLLIN, deadline);
		if (r < 0)
			return r;
	}
}

int mpsup_recv_line(struct mpsup_client *c, char **ret_line, size_t *ret_len)
{
	char *line, *copy;
	size_t len;
	int r;

	if (!c || !ret_line)
		return -EINVAL;
	r = recv_line_in_place(c, &line, &len);
	if (r < 0)
		return r;
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM; /* the line is lost: the stream is out of step */
	memcpy(copy, line, len + 1);
	*ret_line = copy;
	if (ret_len)
		*ret_len = len;
	return 0;
}

int mpsup_recv(struct mpsup_client *c, json_t **ret_msg)
{
	json_t *msg;
	char *line;
	size_t len;
	int r;

	if (!c || !ret_msg)
		return -EINVAL;
	r = recv_line_in_place(c, &line, &len);
	if (r < 0)
		return r;
	msg = json_loadb(line, len, 0, NULL);
	if (!json_is_object(msg)) {
		json_decref(msg);
		return -EBADMSG;
	}
	*ret_msg = msg;
	return 0;
}

/*
 * Send one request with a fresh integer id and wait for the answer with the
 * same id. An error answer with a null id is accepted: the daemon could not
 * read ours (e.g. too_large).
 */
int mpsup_call(struct mpsup_client *c, const char *cmd, json_t *params, json_t **ret_result,
	       struct mpsup_error *ret_err)
{
	return mpsup_call_with_fds(c, cmd, params, NULL, 0, ret_result, ret_err);
}

int mpsup_call_with_fds(struct mpsup_client *c, const char *cmd, json_t *params, const int *fds,
			size_t n_fds, json_t **ret_result, struct mpsup_error *ret_err)
{
	struct mpsup_error err;
	json_t *req, *id, *resp = NULL, *rid = NULL, *result = NULL;
	json_int_t want;
	int r;

	if (!c || !cmd || (params && !json_is_object(params)))
		return -EINVAL;

	want = c->next_id++;
	id = json_integer(want);
	if (!id)
		return -ENOMEM;
	req = mpsup_request_new(cmd, params, id);
	json_decref(id);
	if (!req)
		return -ENOMEM;
	r = mpsup_send_with_fds(c, req, fds, n_fds);
	json_decref(req);
	if (r < 0)
		return r;

	r = mpsup_recv(c, &resp);
	if (r < 0)
		return r;
	r = mpsup_response_parse(resp, &rid, &result, &err);
	if (r < 0)
		goto out;
	if (!(json_is_integer(rid) && json_integer_value(rid) == want) &&
	    !(r == 1 && (!rid || json_is_null(rid)))) {
		r = -EPROTO;
		goto out;
	}
	if (r == 0) {
		if (ret_result)
			*ret_result = json_incref(result ? result : json_null());
	} else if (ret_err) {
		*ret_err = err;
	}
out:
	json_decref(resp);
	return r;
}
