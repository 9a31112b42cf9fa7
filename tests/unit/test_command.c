/*
 * Unit tests of the request path's answering (daemon/core/command.c) on a real
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
#include "peer.h"
#include "stream.h"
#include "unit.h"

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

/* The shares of max_clients and max_subscribers by role (conn.h). */
START_TEST(test_role_shares)
{
	static const struct {
		unsigned total, read, state;
	} want[] = {
		{ 1024, 864, 992 }, { 64, 40, 56 }, { 20, 10, 15 },           { 16, 8, 12 },
		{ 4, 2, 3 },        { 1, 1, 1 },    { 100000, 84375, 96875 },
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ck_assert_uint_eq(role_share(want[i].total, ROLE_NONE), want[i].read);
		ck_assert_uint_eq(role_share(want[i].total, ROLE_READ), want[i].read);
		ck_assert_uint_eq(role_share(want[i].total, ROLE_STATE), want[i].state);
		ck_assert_uint_eq(role_share(want[i].total, ROLE_RUN), want[i].state);
		ck_assert_uint_eq(role_share(want[i].total, ROLE_ADMIN), want[i].total);
	}
}
END_TEST

static enum role always_state(uid_t uid, const gid_t *gids, int n_gids)
{
	(void)uid;
	(void)gids;
	(void)n_gids;
	return ROLE_STATE;
}

/* Roles come from the peer policy; a stream slot is taken once per
 * connection, within the role's share, and given back. */
/* The one access decision: admins everything, private things their
 * uid's, CMD_OWNED commands only on what the peer's uid made. */
START_TEST(test_access_decide)
{
	const struct owner nobody = { 0 }, mine = { .uid = 1001, .set = true },
			   theirs = { .uid = 1002, .set = true },
			   secret = { .uid = 1002, .set = true, .private = true },
			   my_secret = { .uid = 1001, .set = true, .private = true };

	ck_assert_int_eq(access_decide(ROLE_RUN, 1001, true, &mine), ACCESS_OK);
	ck_assert_int_eq(access_decide(ROLE_RUN, 1001, true, &theirs), ACCESS_DENIED);
	ck_assert_int_eq(access_decide(ROLE_RUN, 1001, true, &nobody), ACCESS_DENIED);
	ck_assert_int_eq(access_decide(ROLE_RUN, 1001, false, &theirs), ACCESS_OK);
	ck_assert_int_eq(access_decide(ROLE_READ, 1001, false, &secret), ACCESS_HIDDEN);
	ck_assert_int_eq(access_decide(ROLE_RUN, 1001, true, &secret), ACCESS_HIDDEN);
	ck_assert_int_eq(access_decide(ROLE_READ, 1001, false, &my_secret), ACCESS_OK);
	ck_assert_int_eq(access_decide(ROLE_ADMIN, 0, true, &secret), ACCESS_OK);
	ck_assert_int_eq(access_decide(ROLE_ADMIN, 0, true, &nobody), ACCESS_OK);
	ck_assert_int_eq(access_decide(ROLE_STATE, 1001, false, NULL), ACCESS_OK);
}
END_TEST

START_TEST(test_policy_and_stream_slots)
{
	static const struct peer_policy state_policy = { .role = always_state };
	char why[200];

	ck_assert_int_eq(client->role, ROLE_NONE); /* no [access]: nobody gets nothing */
	server_set_peer_policy(&state_policy);
	server_refresh_roles();
	ck_assert_int_eq(client->role, ROLE_STATE);
	server_set_peer_policy(&peer_policy_default);

	test_conf.max_subscribers = 16; /* state may use 12 */
	ck_assert(stream_slot_take(client, why, sizeof(why)));
	ck_assert(stream_slot_take(client, why, sizeof(why)));
	ck_assert_uint_eq(stream_count(), 1);
	test_conf.max_subscribers = 1; /* its share is 1: full */
	stream_slot_give(client);
	ck_assert_uint_eq(stream_count(), 0);
	ck_assert(stream_slot_take(client, why, sizeof(why)));
	stream_slot_give(client);
	client->role = ROLE_READ;
	test_conf.max_subscribers = 4; /* read may use 2 */
	ck_assert(stream_slot_take(client, why, sizeof(why)));
	ck_assert_uint_eq(stream_count(), 1);
	conn_close(client); /* gives it back */
	ck_assert_uint_eq(stream_count(), 0);
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
	tcase_add_test(tc, test_role_shares);
	tcase_add_test(tc, test_policy_and_stream_slots);
	tcase_add_test(tc, test_access_decide);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(command_suite());
}
