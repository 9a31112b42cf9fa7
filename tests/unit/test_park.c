/*
 * Unit tests of parked requests (daemon/core/park.c) and streams
 * (daemon/core/stream.c) on real connections: each
 * client is one end of a socketpair made a connection with conn_new_for_fd,
 * the other end is read by the test.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "park.h"
#include "stream.h"
#include "unit.h"

#define N_CLIENTS 3

static struct conf test_conf;
static struct conn *clients[N_CLIENTS];
static int peers[N_CLIENTS] = { -1, -1, -1 };

/* A wait as a module keeps it: a park inside the module's own record. */
struct wait_rec {
	struct park park;
	int tag;
};

static int n_timeouts, n_cancels;
static struct park_queue queue;

static void setup(void)
{
	conf_defaults(&test_conf);
	log_init(LOG_LVL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	daemon_g.conf = &test_conf;
	daemon_g.base = event_base_new();
	ck_assert_ptr_nonnull(daemon_g.base);
	for (int i = 0; i < N_CLIENTS; i++) {
		int sv[2];

		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
		clients[i] = conn_new_for_fd(sv[0], 65534, 65534, 1);
		ck_assert_ptr_nonnull(clients[i]);
		peers[i] = sv[1];
	}
	park_queue_init(&queue);
	n_timeouts = n_cancels = 0;
}

static void teardown(void)
{
	for (int i = 0; i < N_CLIENTS; i++)
		if (clients[i])
			conn_close(clients[i]);
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK); /* frees the connections */
	event_base_free(daemon_g.base);
	for (int i = 0; i < N_CLIENTS; i++)
		close(peers[i]);
}

/* Close client i (freed by the event loop later: forget it now). */
static void close_client(int i)
{
	conn_close(clients[i]);
	clients[i] = NULL;
}

/* A request kept by client i, as command_dispatch() leaves one that
 * returned CMD_WAIT (its id is i). */
static struct request *kept_request(int i)
{
	struct request *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	r->conn = clients[i];
	r->id = json_integer(i);
	r->params = json_object();
	r->kept = true;
	clients[i]->kept = r;
	return r;
}

/* What the daemon wrote to peer i so far (static buffer; "" after wait_ms). */
static const char *peer_read(int i, int wait_ms)
{
	static char buf[4096];
	struct pollfd p = { .fd = peers[i], .events = POLLIN };
	ssize_t n;

	buf[0] = '\0';
	if (poll(&p, 1, wait_ms) <= 0)
		return buf;
	n = read(peers[i], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Run the event loop for about secs. */
static void run_for(double secs)
{
	struct timeval tv = tv_from_secs(secs);

	event_base_loopexit(daemon_g.base, &tv);
	event_base_dispatch(daemon_g.base);
}

/* The owner's timeout: take and answer {timeout: tag}. */
static void rec_timeout(struct park *p)
{
	struct wait_rec *w = PARK_OWNER(p, struct wait_rec, park);
	struct request *r = park_take(p);

	n_timeouts++;
	request_ok(r, json_pack("{s:i}", "timeout", w->tag));
	free(w);
}

static void rec_cancel(struct park *p)
{
	n_cancels++;
	ck_assert(!park_kept(p));
	free(PARK_OWNER(p, struct wait_rec, park));
}

/* Park client i's request in a new record (on q, may be NULL). */
static struct wait_rec *park_client(int i, struct park_queue *q, double timeout)
{
	struct wait_rec *w = calloc(1, sizeof(*w));

	ck_assert_ptr_nonnull(w);
	w->tag = i;
	ck_assert_int_eq(park_keep(&w->park, kept_request(i), q, timeout, rec_timeout, rec_cancel),
			 0);
	ck_assert(park_kept(&w->park));
	return w;
}

/* A timeout fires once, answers, and leaves nothing parked. */
START_TEST(test_timeout_fires_once)
{
	double t0 = now_mono();

	park_client(0, &queue, 0.05);
	ck_assert_uint_eq(park_count(), 1);
	ck_assert_uint_eq(queue.n, 1);
	while (n_timeouts == 0 && now_mono() - t0 < 5)
		event_base_loop(daemon_g.base, EVLOOP_ONCE);
	ck_assert_int_eq(n_timeouts, 1);
	ck_assert(now_mono() - t0 >= 0.04);
	ck_assert_str_eq(peer_read(0, 1000), "{\"id\":0,\"ok\":true,\"result\":{\"timeout\":0}}\n");
	run_for(0.15);
	ck_assert_int_eq(n_timeouts, 1);
	ck_assert_str_eq(peer_read(0, 0), "");
	ck_assert_uint_eq(park_count(), 0);
	ck_assert_uint_eq(queue.n, 0);
	ck_assert_ptr_null(park_first(&queue));
	ck_assert_ptr_null(clients[0]->kept);
}
END_TEST

/* A park taken before its timeout is answered by the taker only. */
START_TEST(test_take_stops_timer)
{
	struct wait_rec *w = park_client(0, NULL, 0.02);
	struct request *r = park_take(&w->park);

	ck_assert(!park_kept(&w->park));
	ck_assert_ptr_null(r->cancel);
	request_ok(r, json_integer(1));
	free(w);
	run_for(0.1);
	ck_assert_int_eq(n_timeouts, 0);
	ck_assert_str_eq(peer_read(0, 1000), "{\"id\":0,\"ok\":true,\"result\":1}\n");
	ck_assert_uint_eq(park_count(), 0);
}
END_TEST

/* The connection closing cancels the wait: out of its queue, timer gone,
 * the owner frees its record (LSan checks it), no answer, no timeout. */
START_TEST(test_cancel_on_close)
{
	park_client(0, &queue, 0.02);
	park_client(1, &queue, -1);
	close_client(0);
	ck_assert_int_eq(n_cancels, 1);
	ck_assert_uint_eq(queue.n, 1);
	ck_assert_uint_eq(park_count(), 1);
	ck_assert_int_eq(PARK_OWNER(park_first(&queue), struct wait_rec, park)->tag, 1);
	run_for(0.1);
	ck_assert_int_eq(n_timeouts, 0);
	close_client(1); /* a wait without timer is cancelled alike */
	ck_assert_int_eq(n_cancels, 2);
	ck_assert_uint_eq(queue.n, 0);
	ck_assert_uint_eq(park_count(), 0);
}
END_TEST

/* Waits are served in arrival order; one that leaves keeps the others'. */
START_TEST(test_fifo)
{
	struct park *p;
	int order[N_CLIENTS], n = 0;

	park_client(2, &queue, 10);
	park_client(0, &queue, -1);
	park_client(1, &queue, 10);
	close_client(0);
	while ((p = park_first(&queue))) {
		struct wait_rec *w = PARK_OWNER(p, struct wait_rec, park);
		struct request *r = park_take(p);

		order[n++] = w->tag;
		request_ok(r, json_integer(n));
		free(w);
	}
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(order[0], 2);
	ck_assert_int_eq(order[1], 1);
	ck_assert_str_eq(peer_read(2, 1000), "{\"id\":2,\"ok\":true,\"result\":1}\n");
	ck_assert_str_eq(peer_read(1, 1000), "{\"id\":1,\"ok\":true,\"result\":2}\n");
	ck_assert_uint_eq(park_count(), 0);
	run_for(0.05);
	ck_assert_int_eq(n_timeouts, 0);
}
END_TEST

/* A stream as a module keeps it. */
struct stream_rec {
	struct stream stream;
	int tag;
};

static int n_closed;

static void rec_closed(struct stream *st)
{
	n_closed++;
	ck_assert_ptr_null(st->r);
	free(STREAM_OWNER(st, struct stream_rec, stream));
}

/* Open a stream for client i in set, as a streaming handler does; the
 * result of stream_open. */
static int open_client_stream(int i, struct stream_set *set, char *why, size_t len)
{
	struct stream_rec *s = calloc(1, sizeof(*s));
	struct request *r = kept_request(i);
	int e;

	ck_assert_ptr_nonnull(s);
	s->tag = i;
	e = stream_open(&s->stream, r, set, rec_closed, why, len);
	if (e < 0) {
		free(s);
		clients[i]->kept = NULL;
		request_free(r);
		return e;
	}
	clients[i]->streaming = true;
	return 0;
}

/* Streams share max_subscribers; a closed connection ends its stream and
 * gives the slot back. */
START_TEST(test_stream_slots_and_close)
{
	static struct stream_set set = STREAM_SET_INITIALIZER(set);
	char why[200] = "";

	n_closed = 0;
	test_conf.max_subscribers = 1;
	ck_assert_int_eq(open_client_stream(0, &set, why, sizeof(why)), 0);
	ck_assert_uint_eq(stream_count(), 1);
	ck_assert_int_eq(open_client_stream(1, &set, why, sizeof(why)), -EBUSY);
	ck_assert_ptr_nonnull(strstr(why, "max_subscribers (1) reached"));
	ck_assert_uint_eq(set.n, 1);
	close_client(0);
	ck_assert_int_eq(n_closed, 1);
	ck_assert_uint_eq(set.n, 0);
	ck_assert_ptr_null(stream_first(&set));
	ck_assert_uint_eq(stream_count(), 0);
	ck_assert_int_eq(open_client_stream(1, &set, why, sizeof(why)), 0);
	ck_assert_uint_eq(stream_count(), 1);
	close_client(1);
	ck_assert_int_eq(n_closed, 2);
	ck_assert_uint_eq(stream_count(), 0);
}
END_TEST

/* A reader that does not read is dropped once its output passes
 * max_output_bytes: the send says so and the stream has ended. */
START_TEST(test_stream_slow_reader_dropped)
{
	static struct stream_set set = STREAM_SET_INITIALIZER(set);
	char why[200], line[4000];
	json_t *msg;
	int sent = 0;

	memset(line, 'x', sizeof(line));
	msg = json_pack("{s:s%}", "line", line, sizeof(line));
	ck_assert_ptr_nonnull(msg);

	n_closed = 0;
	test_conf.max_output_bytes = 64 * 1024;
	ck_assert_int_eq(open_client_stream(0, &set, why, sizeof(why)), 0);
	while (sent < 100000 && stream_send(stream_first(&set), msg))
		sent++;
	json_decref(msg);
	ck_assert_int_lt(sent, 100000);
	ck_assert_int_eq(n_closed, 1);
	ck_assert_uint_eq(set.n, 0);
	ck_assert_uint_eq(stream_count(), 0);
	ck_assert(clients[0]->dead);
	clients[0] = NULL;
}
END_TEST

static Suite *park_suite(void)
{
	Suite *s = suite_create("park");
	TCase *tc = tcase_create("parked requests");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_timeout_fires_once);
	tcase_add_test(tc, test_take_stops_timer);
	tcase_add_test(tc, test_cancel_on_close);
	tcase_add_test(tc, test_fifo);
	suite_add_tcase(s, tc);
	tc = tcase_create("streams");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_stream_slots_and_close);
	tcase_add_test(tc, test_stream_slow_reader_dropped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(park_suite());
}
