/*
 * Unit tests of the request path's answering (daemon/command.c) on a real
 * connection: one end of a socketpair made a client with conn_new_for_fd,
 * the other end read by the test.
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

/* What daemon/main.c gives the daemon library. */
void daemon_shutdown(const char *why)
{
	(void)why;
	daemon_g.shutting_down = true;
}

int daemon_reload(json_t **result, char *err, size_t errlen)
{
	(void)result;
	snprintf(err, errlen, "no reload in unit tests");
	return -ENOTSUP;
}

static struct conf test_conf;
static struct conn *client;
static int peer = -1; /* the test's end of the socketpair */

static void setup(void)
{
	int sv[2];

	conf_defaults(&test_conf);
	log_init(LOG_LVL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	daemon_g.conf = &test_conf;
	daemon_g.base = event_base_new();
	ck_assert_ptr_nonnull(daemon_g.base);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	client = conn_new_for_fd(sv[0], 65534, 65534, 1);
	ck_assert_ptr_nonnull(client);
	peer = sv[1];
}

static void teardown(void)
{
	if (!client->dead)
		conn_close(client);
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK); /* frees the connection */
	event_base_free(daemon_g.base);
	close(peer);
}

/* A request kept by the connection, as command_dispatch() leaves one that
 * returned CMD_WAIT. */
static struct request *kept_request(void)
{
	struct request *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	r->conn = client;
	r->id = json_integer(7);
	r->params = json_object();
	r->kept = true;
	client->kept = r;
	return r;
}

/* What the daemon wrote to the peer so far (static buffer). */
static const char *peer_read(void)
{
	static char buf[4096];
	struct pollfd p = { .fd = peer, .events = POLLIN };
	ssize_t n;

	buf[0] = '\0';
	if (poll(&p, 1, 1000) <= 0)
		return buf;
	n = read(peer, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

START_TEST(test_kept_request_answered)
{
	request_ok(kept_request(), json_integer(5));
	ck_assert_ptr_null(client->kept);
	ck_assert(!client->dead);
	ck_assert_str_eq(peer_read(), "{\"id\":7,\"ok\":true,\"result\":5}\n");
}
END_TEST

/* An answer that cannot be built (out of memory) drops the client; the
 * kept request is freed once, after the close (it was read after
 * conn_close() had freed it). */
START_TEST(test_kept_request_without_answer_drops_client)
{
	request_fail(kept_request(), NULL);
	ck_assert(client->dead);
	ck_assert_ptr_null(client->kept);
}
END_TEST

START_TEST(test_request_without_answer_drops_client)
{
	struct request *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	r->conn = client;
	r->id = json_integer(8);
	r->params = json_object();
	request_fail(r, NULL);
	ck_assert(client->dead);
	ck_assert(r->replied);
	request_free(r); /* not kept: the caller frees it, as command_dispatch() does */
}
END_TEST

static Suite *command_suite(void)
{
	Suite *s = suite_create("command");
	TCase *tc = tcase_create("answers");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_kept_request_answered);
	tcase_add_test(tc, test_kept_request_without_answer_drops_client);
	tcase_add_test(tc, test_request_without_answer_drops_client);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(command_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
