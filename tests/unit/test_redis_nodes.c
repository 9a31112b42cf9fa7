/* Unit tests of the nodes of a Redis (daemon/core/redis_nodes.c): key
 * slots as Redis Cluster computes them (the figures are redis-server's
 * own CLUSTER KEYSLOT answers), and the map read from CLUSTER SLOTS. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "redis_link.h"
#include "redis_nodes.h"
#include "unit.h"

static unsigned slot(const char *key)
{
	return redis_key_slot(key, strlen(key));
}

START_TEST(test_key_slots)
{
	ck_assert_uint_eq(slot("123456789"), 12739);
	ck_assert_uint_eq(slot("foo"), 12182);
	ck_assert_uint_eq(slot(""), 0);
	/* the {hash tag} alone counts */
	ck_assert_uint_eq(slot("{user1000}.following"), 3443);
	ck_assert_uint_eq(slot("user1000"), 3443);
	ck_assert_uint_eq(slot("mpsup:{d1}:d"), 8604);
	ck_assert_uint_eq(slot("mpsup:{d1}"), slot("d1"));
	/* the first '{' and the next '}'; an empty tag hashes the whole key */
	ck_assert_uint_eq(slot("foo{bar}{zap}"), 5061);
	ck_assert_uint_eq(slot("foo{{bar}}zap"), 4015);
	ck_assert_uint_eq(slot("{bar"), 4015);
	ck_assert_uint_eq(slot("foo{}{bar}"), 8363);
	ck_assert_uint_eq(slot("{{bar"), 16086);
	/* a length, not a NUL, ends the key */
	ck_assert_uint_eq(redis_key_slot("foo{bar}", 3), 12182);
}
END_TEST

/* Reply building blocks (hiredis's own constructors are private). */
static redisReply r_int(long long v)
{
	return (redisReply){ .type = REDIS_REPLY_INTEGER, .integer = v };
}

static redisReply r_str(const char *s)
{
	return (redisReply){ .type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s) };
}

static redisReply r_arr(redisReply **e, size_t n)
{
	return (redisReply){ .type = REDIS_REPLY_ARRAY, .element = e, .elements = n };
}

/* A range lo..hi served by the master ip:port, as CLUSTER SLOTS gives it. */
struct range {
	redisReply lo, hi, ip, port, master, row;
	redisReply *m[3], *r[3];
};

static void range_set(struct range *g, long long lo, long long hi, const char *ip, long long port)
{
	g->lo = r_int(lo);
	g->hi = r_int(hi);
	g->ip = r_str(ip);
	g->port = r_int(port);
	g->m[0] = &g->ip;
	g->m[1] = &g->port;
	g->master = r_arr(g->m, 2);
	g->r[0] = &g->lo;
	g->r[1] = &g->hi;
	g->r[2] = &g->master;
	g->row = r_arr(g->r, 3);
}

START_TEST(test_map_full)
{
	static struct redis_nodes rn;
	struct range g[3];
	redisReply *rows[3], all;

	range_set(&g[0], 0, 5460, "10.0.0.1", 7001);
	range_set(&g[1], 5461, 10922, "", 7002); /* no IP: the address's host */
	range_set(&g[2], 10923, 16383, "10.0.0.1", 7001);
	for (int i = 0; i < 3; i++)
		rows[i] = &g[i].row;
	all = r_arr(rows, 3);
	memset(&rn, 0, sizeof(rn));
	ck_assert_int_eq(redis_nodes_map(&rn, &all, "redis.example"), 0);
	ck_assert_uint_eq(rn.n, 2);
	ck_assert_str_eq(rn.node[0].addr, "10.0.0.1:7001");
	ck_assert_str_eq(rn.node[1].addr, "redis.example:7002");
	ck_assert_uint_eq(rn.slot_node[0], 0);
	ck_assert_uint_eq(rn.slot_node[5461], 1);
	ck_assert_uint_eq(rn.slot_node[10922], 1);
	ck_assert_uint_eq(rn.slot_node[16383], 0);
	rn.cluster = true;
	ck_assert_str_eq(redis_nodes_addr(&rn, "x{foo}", 6), "10.0.0.1:7001"); /* 12182 */
	ck_assert_str_eq(redis_nodes_addr(&rn, "{user1000}", 10), "10.0.0.1:7001");
	ck_assert_str_eq(redis_nodes_addr(&rn, "d1", 2), "redis.example:7002"); /* 8604 */
}
END_TEST

START_TEST(test_map_refused)
{
	static struct redis_nodes rn;
	struct range g[2];
	redisReply *rows[2], all, bad = r_str("x");

	/* a slot with no master */
	range_set(&g[0], 0, 5460, "10.0.0.1", 7001);
	range_set(&g[1], 5462, 16383, "10.0.0.2", 7002);
	rows[0] = &g[0].row;
	rows[1] = &g[1].row;
	all = r_arr(rows, 2);
	memset(&rn, 0, sizeof(rn));
	ck_assert_int_eq(redis_nodes_map(&rn, &all, ""), -EPROTO);
	ck_assert_uint_eq(rn.n, 0);
	/* out of range, upside down, a port that is not one */
	range_set(&g[1], 5461, 16384, "10.0.0.2", 7002);
	ck_assert_int_eq(redis_nodes_map(&rn, &all, ""), -EPROTO);
	range_set(&g[1], 16383, 5461, "10.0.0.2", 7002);
	ck_assert_int_eq(redis_nodes_map(&rn, &all, ""), -EPROTO);
	range_set(&g[1], 5461, 16383, "10.0.0.2", 70000);
	ck_assert_int_eq(redis_nodes_map(&rn, &all, ""), -EPROTO);
	/* not a map at all */
	ck_assert_int_eq(redis_nodes_map(&rn, &bad, ""), -EPROTO);
	ck_assert_int_eq(redis_nodes_map(&rn, NULL, ""), -EPROTO);
	/* and the fixed one is taken */
	range_set(&g[1], 5461, 16383, "10.0.0.2", 7002);
	ck_assert_int_eq(redis_nodes_map(&rn, &all, ""), 0);
	ck_assert_uint_eq(rn.n, 2);
}
END_TEST

START_TEST(test_redirections)
{
	static struct redis_nodes rn;

	memset(&rn, 0, sizeof(rn));
	/* the map is learnt again: a slot moved, or the cluster is not whole */
	ck_assert_int_eq(redis_nodes_redirected(&rn, "MOVED 3999 127.0.0.1:6381", 25),
			 REDIS_REDIRECT_RESET);
	ck_assert_uint_eq(rn.moved, 1);
	/* the master it names is asked first for the new map */
	ck_assert_str_eq(rn.moved_to, "127.0.0.1:6381");
	ck_assert_int_eq(redis_nodes_redirected(&rn, "CLUSTERDOWN The cluster is down", 31),
			 REDIS_REDIRECT_RESET);
	/* a slot being moved: refused, the map stays */
	ck_assert_int_eq(redis_nodes_redirected(&rn, "ASK 3999 127.0.0.1:6381", 23),
			 REDIS_REDIRECT_REFUSED);
	ck_assert_int_eq(redis_nodes_redirected(&rn, "TRYAGAIN Multiple keys", 22),
			 REDIS_REDIRECT_REFUSED);
	ck_assert_uint_eq(rn.moved, 1);
	ck_assert(!redis_nodes_redirected(&rn, "MOVEDX", 6));
	ck_assert(!redis_nodes_redirected(&rn, "not_found x: no such object", 27));
	ck_assert(!redis_nodes_redirected(&rn, NULL, 0));
	ck_assert(!redis_nodes_redirected(&rn, "MOVED 1", 5));
}
END_TEST

/* --- a set of nodes against a fake server on a Unix socket ------------------------ */

static int fake_fd = -1, peer_fd = -1, ups, downs, downs_was_up;
static char fake_path[108], last_why[512];

static void t_up(struct redis_nodes *rn)
{
	(void)rn;
	ups++;
}

static void t_down(struct redis_nodes *rn, bool was_up, const char *why)
{
	(void)rn;
	downs++;
	downs_was_up += was_up;
	snprintf(last_why, sizeof(last_why), "%s", why);
}

static const struct redis_nodes_ops t_ops = {
	.up = t_up,
	.down = t_down,
	.own_io = true,
};

static void fake_listen(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/mpsup-unit-XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(fake_path, sizeof(fake_path), "%s/redis.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fake_path);
	fake_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fake_fd, 0);
	ck_assert_int_eq(bind(fake_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fake_fd, 4), 0);
}

static void fake_unlisten(void)
{
	char dir[sizeof(fake_path)];

	close(fake_fd);
	if (fake_path[0] != '/')
		return; /* host:port */
	unlink(fake_path);
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(fake_path, '/') - fake_path), fake_path);
	rmdir(dir);
}

static void fake_read_until(int fd, const char *what);

/* Accept the probe, read its CLUSTER SLOTS and answer it answer; run the
 * loop until the probe is done (a server's: the set is up or down). */
static void fake_probe(struct redis_nodes *rn, const char *answer)
{
	redis_nodes_connect(rn);
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
	peer_fd = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(peer_fd, 0);
	fake_read_until(peer_fd, "SLOTS");
	ck_assert_int_eq(write(peer_fd, answer, strlen(answer)), (ssize_t)strlen(answer));
	for (int i = 0; i < 100 && rn->probe; i++)
		event_base_loop(daemon_g.base, EVLOOP_ONCE);
}

/* A fake server on 127.0.0.1 (a cluster's map names host:port). */
static void fake_listen_tcp(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	fake_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fake_fd, 0);
	ck_assert_int_eq(bind(fake_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fake_fd, 4), 0);
	ck_assert_int_eq(getsockname(fake_fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(fake_path, sizeof(fake_path), "127.0.0.1:%u", ntohs(sa.sin_port));
}

static void fake_setup_at(struct redis_nodes *rn, bool tcp)
{
	signal(SIGPIPE, SIG_IGN);
	ups = downs = downs_was_up = 0;
	last_why[0] = '\0';
	daemon_g.base = event_base_new();
	ck_assert_ptr_nonnull(daemon_g.base);
	if (tcp)
		fake_listen_tcp();
	else
		fake_listen();
	ck_assert_int_eq(redis_nodes_init(rn, fake_path, &t_ops), 0);
}

static void fake_setup(struct redis_nodes *rn)
{
	fake_setup_at(rn, false);
}

static void fake_teardown(struct redis_nodes *rn)
{
	redis_nodes_stop(rn);
	if (peer_fd >= 0)
		close(peer_fd);
	peer_fd = -1;
	fake_unlisten();
	event_base_free(daemon_g.base);
	daemon_g.base = NULL;
}

static const char not_cluster[] = "-ERR This instance has cluster support disabled\r\n";

/* A single server reached by the probe: its connection, node 0 now, still
 * tells the set it is lost (hiredis 0.14 keeps the probe's disconnect
 * callback). */
START_TEST(test_probe_server_lost)
{
	static struct redis_nodes rn;

	fake_setup(&rn);
	fake_probe(&rn, not_cluster);
	ck_assert_int_eq(ups, 1);
	ck_assert(!rn.cluster);
	ck_assert_ptr_nonnull(rn.node[0].ac);
	close(peer_fd);
	peer_fd = -1;
	for (int i = 0; i < 100 && !downs; i++)
		event_base_loop(daemon_g.base, EVLOOP_ONCE);
	ck_assert_int_eq(downs_was_up, 1);
	ck_assert(!rn.up);
	ck_assert_ptr_null(rn.node[0].ac);
	fake_teardown(&rn);
}
END_TEST

/* A write that fails (the server went) frees the context inside the
 * nodes' own write event: nothing of it is touched after (ASan). */
START_TEST(test_write_fails)
{
	static struct redis_nodes rn;

	fake_setup(&rn);
	fake_probe(&rn, not_cluster);
	ck_assert_int_eq(ups, 1);
	close(peer_fd);
	peer_fd = -1;
	/* queued before the loop sees the close: written first, EPIPE */
	ck_assert_int_eq(redisAsyncCommand(rn.node[0].ac, NULL, NULL, "PING"), REDIS_OK);
	for (int i = 0; i < 100 && !downs; i++)
		event_base_loop(daemon_g.base, EVLOOP_ONCE);
	ck_assert_int_eq(downs_was_up, 1);
	ck_assert_ptr_null(rn.node[0].ac);
	fake_teardown(&rn);
}
END_TEST

/* A node that cannot answer yet (LOADING) is not taken for a single
 * server: the set stays down and tries again. */
START_TEST(test_probe_loading)
{
	static struct redis_nodes rn;

	fake_setup(&rn);
	fake_probe(&rn, "-LOADING Redis is loading the dataset in memory\r\n");
	ck_assert_int_eq(ups, 0);
	ck_assert_int_eq(downs, 1);
	ck_assert_ptr_nonnull(strstr(last_why, "LOADING"));
	ck_assert(!redis_nodes_any(&rn));
	ck_assert_str_eq(redis_nodes_state(&rn), "down");
	fake_teardown(&rn);
}
END_TEST

static int pongs, nulls;

static void t_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rp = reply;

	(void)ac;
	(void)priv;
	if (!rp)
		nulls++;
	else if (rp->type == REDIS_REPLY_STATUS && strcmp(rp->str, "PONG") == 0)
		pongs++;
}

/* Read from fd (the loop running) until buf holds what. */
static void fake_read_until(int fd, const char *what)
{
	char buf[512] = "";
	size_t len = 0;

	for (int i = 0; i < 1000 && !strstr(buf, what); i++) {
		ssize_t n;

		event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
		n = recv(fd, buf + len, sizeof(buf) - 1 - len, MSG_DONTWAIT);
		len += n > 0 ? (size_t)n : 0;
		buf[len] = '\0';
		if (n <= 0)
			usleep(5000);
	}
	ck_assert_ptr_nonnull(strstr(buf, what));
}

/* A one-master cluster on the fake (its map names the fake itself):
 * answer the probe, accept the node's connection and answer its CLUSTER
 * INFO with state; the node's connection. */
static int fake_cluster(struct redis_nodes *rn, const char *state)
{
	char map[256], info[64];
	int node_fd;

	fake_setup_at(rn, true);
	snprintf(map, sizeof(map), "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%s\r\n",
		 strchr(fake_path, ':') + 1);
	fake_probe(rn, map);
	node_fd = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(node_fd, 0);
	fake_read_until(node_fd, "INFO");
	snprintf(info, sizeof(info), "$%zu\r\n%s\r\n", strlen(state), state);
	ck_assert_int_eq(write(node_fd, info, strlen(info)), (ssize_t)strlen(info));
	for (int i = 0; i < 100 && !ups && !downs; i++)
		event_base_loop(daemon_g.base, EVLOOP_ONCE);
	return node_fd;
}

/* A node that says the cluster is not ok (a master just restarted) does
 * not bring the set up: it tries again after its backoff. */
START_TEST(test_cluster_not_ok)
{
	static struct redis_nodes rn;
	int node_fd = fake_cluster(&rn, "cluster_state:fail");

	ck_assert_int_eq(ups, 0);
	ck_assert_int_eq(downs, 1);
	ck_assert_ptr_nonnull(strstr(last_why, "not ok"));
	ck_assert(!redis_nodes_any(&rn));
	close(node_fd);
	fake_teardown(&rn);
}
END_TEST

/* A MOVED puts the cluster's connections down, but a command already on
 * its way still gets its answer (it ran: not answered unavailable). */
START_TEST(test_moved_drains)
{
	static struct redis_nodes rn;
	int node_fd = fake_cluster(&rn, "cluster_state:ok");

	ck_assert_int_eq(ups, 1);
	ck_assert(rn.cluster);
	pongs = nulls = 0;
	ck_assert_int_eq(redisAsyncCommand(rn.node[0].ac, t_reply, NULL, "PING"), REDIS_OK);
	fake_read_until(node_fd, "PING");
	ck_assert(redis_nodes_redirected(&rn, "MOVED 1 127.0.0.1:1", 19));
	event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(downs_was_up, 1);
	ck_assert_ptr_null(rn.node[0].ac);
	ck_assert_int_eq(write(node_fd, "+PONG\r\n", 7), 7);
	for (int i = 0; i < 100 && !pongs && !nulls; i++)
		event_base_loop(daemon_g.base, EVLOOP_ONCE);
	ck_assert_int_eq(nulls, 0);
	ck_assert_int_eq(pongs, 1);
	/* then it closes */
	fake_read_until(node_fd, "");
	for (int i = 0; i < 100 && rn.n_draining; i++)
		event_base_loop(daemon_g.base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(rn.n_draining, 0);
	close(node_fd);
	fake_teardown(&rn);
}
END_TEST

/* A master the map names by an IPv6 address ("[::1]:port") is reached. */
START_TEST(test_ipv6_node)
{
	static struct redis_nodes rn;
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct range g[1];
	redisReply *rows[1], all;
	redisContext *ctx;
	char port[8];

	ck_assert_int_ge(fd, 0);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd); /* no IPv6 loopback here */
		return;
	}
	ck_assert_int_eq(listen(fd, 1), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	memset(&rn, 0, sizeof(rn));
	range_set(&g[0], 0, 16383, "::1", ntohs(sa.sin6_port));
	rows[0] = &g[0].row;
	all = r_arr(rows, 1);
	ck_assert_int_eq(redis_nodes_map(&rn, &all, ""), 0);
	snprintf(port, sizeof(port), "%u", ntohs(sa.sin6_port));
	ck_assert_ptr_nonnull(strstr(rn.node[0].addr, port));
	ctx = redis_link_open_sync(rn.node[0].addr);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_msg(!ctx->err, "%s: %s", rn.node[0].addr, ctx->errstr);
	redisFree(ctx);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("redis_nodes");
	TCase *tc = tcase_create("redis_nodes");

	tcase_add_test(tc, test_key_slots);
	tcase_add_test(tc, test_map_full);
	tcase_add_test(tc, test_map_refused);
	tcase_add_test(tc, test_redirections);
	tcase_add_test(tc, test_probe_server_lost);
	tcase_add_test(tc, test_write_fails);
	tcase_add_test(tc, test_probe_loading);
	tcase_add_test(tc, test_ipv6_node);
	tcase_add_test(tc, test_moved_drains);
	tcase_add_test(tc, test_cluster_not_ok);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
