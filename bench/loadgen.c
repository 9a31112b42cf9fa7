/*
 * loadgen: a closed-loop load generator for mpsupd. C connections each keep
 * P requests in flight (P = 1: one at a time) for N requests in total, and
 * the rate is printed. Responses are counted by their newline and checked
 * for "ok":true without a JSON parser, so the generator stays cheap.
 *
 *   loadgen -s SOCKET -c 50 -P 16 -n 1000000 -t value.add
 *
 * With -r it speaks RESP to a redis-server instead, with the equivalent
 * commands (SET, GET, INCR, RPUSH, RPOP, LPOP), so both servers face the same
 * client.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct client {
	int fd;
	long base, sent, received;
	char rbuf[1 << 16];
	size_t rlen;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int resp_mode;

/* A RESP command from words. */
static int resp(char *buf, size_t len, int argc, const char *const *argv)
{
	int n = snprintf(buf, len, "*%d\r\n", argc);

	for (int k = 0; k < argc && n > 0 && (size_t)n < len; k++)
		n += snprintf(buf + n, len - (size_t)n, "$%zu\r\n%s\r\n", strlen(argv[k]), argv[k]);
	return n;
}

/* The redis request equivalent to an mpsupd operation. */
static int build_resp(char *buf, size_t len, const char *op, long i)
{
	char key[32];

	if (strcmp(op, "dict.set") == 0 || strcmp(op, "dict.fill") == 0) {
		snprintf(key, sizeof(key), "k%ld", strcmp(op, "dict.set") == 0 ? i % 10000 : i);
		return resp(buf, len, 3, (const char *const[]){ "SET", key, "xxx" });
	}
	if (strcmp(op, "dict.get") == 0) {
		snprintf(key, sizeof(key), "k%ld", i % 10000);
		return resp(buf, len, 2, (const char *const[]){ "GET", key });
	}
	if (strcmp(op, "value.add") == 0)
		return resp(buf, len, 2, (const char *const[]){ "INCR", "bv" });
	if (strcmp(op, "list.append") == 0)
		return resp(buf, len, 3, (const char *const[]){ "RPUSH", "bl", "xxx" });
	if (strcmp(op, "list.pop") == 0)
		return resp(buf, len, 2, (const char *const[]){ "RPOP", "bl" });
	if (strcmp(op, "queue.put") == 0)
		return resp(buf, len, 3, (const char *const[]){ "RPUSH", "bq", "xxx" });
	if (strcmp(op, "queue.get") == 0)
		return resp(buf, len, 2, (const char *const[]){ "LPOP", "bq" });
	if (strcmp(op, "ping") == 0)
		return resp(buf, len, 1, (const char *const[]){ "PING" });
	return -1;
}

/*
 * The length of the first complete reply at p (0 when incomplete) and
 * whether it is an error. JSON lines end at '\n'; RESP replies used here
 * are +simple, -error, :integer and $bulk (or $-1).
 */
static size_t next_reply(const char *p, size_t n, int *is_err)
{
	const char *nl = memchr(p, '\n', n);
	size_t head;

	if (!nl)
		return 0;
	head = (size_t)(nl - p) + 1;
	if (!resp_mode) {
		*is_err = !memmem(p, head, "\"ok\":true", 9);
		return head;
	}
	*is_err = p[0] == '-';
	if (p[0] == '$') {
		long blen = atol(p + 1);
		if (blen < 0)
			return head;
		if (n < head + (size_t)blen + 2)
			return 0;
		return head + (size_t)blen + 2;
	}
	return head;
}

/* The request line of one operation; %ld is a per-request counter. */
static int build_request(char *buf, size_t len, const char *op, long i)
{
	if (resp_mode)
		return build_resp(buf, len, op, i);
	if (strcmp(op, "dict.set") == 0)
		return snprintf(buf, len,
				"{\"cmd\":\"dict.set\",\"name\":\"bd\",\"key\":\"k%ld\",\"value\":"
				"\"xxx\"}\n",
				i % 10000);
	if (strcmp(op, "dict.fill") == 0) /* unique keys: memory per key */
		return snprintf(buf, len,
				"{\"cmd\":\"dict.set\",\"name\":\"bf\",\"key\":\"k%ld\",\"value\":"
				"\"xxx\"}\n",
				i);
	if (strcmp(op, "dict.get") == 0)
		return snprintf(buf, len,
				"{\"cmd\":\"dict.get\",\"name\":\"bd\",\"key\":\"k%ld\","
				"\"default\":null}\n",
				i % 10000);
	if (strcmp(op, "value.add") == 0)
		return snprintf(buf, len, "{\"cmd\":\"value.add\",\"name\":\"bv\",\"by\":1}\n");
	if (strcmp(op, "list.append") == 0)
		return snprintf(buf, len,
				"{\"cmd\":\"list.append\",\"name\":\"bl\",\"value\":\"xxx\"}\n");
	if (strcmp(op, "list.pop") == 0)
		return snprintf(buf, len, "{\"cmd\":\"list.pop\",\"name\":\"bl\"}\n");
	if (strcmp(op, "queue.put") == 0)
		return snprintf(buf, len,
				"{\"cmd\":\"queue.put\",\"name\":\"bq\",\"item\":\"xxx\"}\n");
	if (strcmp(op, "queue.get") == 0) /* never waits: an empty queue is an error */
		return snprintf(buf, len,
				"{\"cmd\":\"queue.get\",\"name\":\"bq\",\"timeout\":0}\n");
	if (strcmp(op, "ping") == 0)
		return snprintf(buf, len, "{\"cmd\":\"ping\"}\n");
	return -1;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Send up to want requests on c in one write. */
static int send_batch(struct client *c, const char *op, long want)
{
	static char buf[1 << 20];
	size_t len = 0;

	for (long k = 0; k < want; k++) {
		int n = build_request(buf + len, sizeof(buf) - len, op, c->base + c->sent + k);
		if (n < 0 || (size_t)n >= sizeof(buf) - len)
			return -1;
		len += (size_t)n;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(c->fd, buf + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)w;
	}
	c->sent += want;
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *op = "ping";
	long total = 100000, conns = 50, depth = 1, errors = 0, done = 0, per_conn;
	struct client *cl;
	struct pollfd *pfd;
	double t0, t1;
	int opt;

	while ((opt = getopt(argc, argv, "s:c:P:n:t:r")) != -1) {
		switch (opt) {
		case 'r': resp_mode = 1; break;
		case 's': path = optarg; break;
		case 'c': conns = atol(optarg); break;
		case 'P': depth = atol(optarg); break;
		case 'n': total = atol(optarg); break;
		case 't': op = optarg; break;
		default:
			fprintf(stderr, "usage: loadgen -s SOCKET [-c CONNS] [-P DEPTH] [-n TOTAL] "
					"[-t OP]\n");
			return 2;
		}
	}
	if (!path || conns < 1 || depth < 1 || total < conns) {
		fprintf(stderr, "loadgen: need -s SOCKET, -c >= 1, -P >= 1, -n >= -c\n");
		return 2;
	}
	char probe[256];
	if (build_request(probe, sizeof(probe), op, 0) < 0) {
		fprintf(stderr, "loadgen: unknown op %s\n", op);
		return 2;
	}
	per_conn = total / conns;
	cl = calloc((size_t)conns, sizeof(*cl));
	pfd = calloc((size_t)conns, sizeof(*pfd));
	if (!cl || !pfd)
		return 1;
	for (long i = 0; i < conns; i++) {
		cl[i].fd = connect_to(path);
		if (cl[i].fd < 0) {
			perror("loadgen: connect");
			return 1;
		}
		cl[i].base = i * per_conn;
		pfd[i].fd = cl[i].fd;
		pfd[i].events = POLLIN;
	}
	t0 = now();
	for (long i = 0; i < conns; i++)
		if (send_batch(&cl[i], op, depth < per_conn ? depth : per_conn) < 0)
			return 1;
	while (done < conns) {
		if (poll(pfd, (nfds_t)conns, 30000) <= 0) {
			fprintf(stderr, "loadgen: stalled\n");
			return 1;
		}
		for (long i = 0; i < conns; i++) {
			struct client *c = &cl[i];
			long got = 0;
			ssize_t n;
			char *start;

			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
			if (n <= 0) {
				fprintf(stderr, "loadgen: connection closed\n");
				return 1;
			}
			c->rlen += (size_t)n;
			start = c->rbuf;
			for (;;) {
				int is_err;
				size_t used = next_reply(start, c->rlen - (size_t)(start - c->rbuf),
							 &is_err);
				if (!used)
					break;
				errors += is_err;
				got++;
				start += used;
			}
			c->rlen -= (size_t)(start - c->rbuf);
			memmove(c->rbuf, start, c->rlen);
			c->received += got;
			if (c->received >= per_conn) {
				pfd[i].fd = -1;
				done++;
				continue;
			}
			/* keep depth requests in flight */
			long inflight = c->sent - c->received;
			long room = per_conn - c->sent;
			long want = depth - inflight < room ? depth - inflight : room;
			if (want > 0 && (inflight == 0 || want >= depth / 2 || depth == 1))
				if (send_batch(c, op, want) < 0)
					return 1;
		}
	}
	t1 = now();
	printf("%s conns=%ld depth=%ld requests=%ld errors=%ld seconds=%.3f rate=%.0f\n", op, conns,
	       depth, per_conn * conns, errors, t1 - t0, (double)(per_conn * conns) / (t1 - t0));
	for (long i = 0; i < conns; i++)
		close(cl[i].fd);
	free(cl);
	free(pfd);
	return errors ? 1 : 0;
}
