/*
 * Connections to Redis on the daemon's loop (redis_link.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>

#include "daemon.h"
#include "redis_link.h"

/* Split "host:port" (conf.c checked it has a colon); an IPv6 host may be
 * in brackets, as a cluster's map names one ("[::1]:7000"). */
static void split_address(const char *addr, char *host, size_t len, int *ret_port)
{
	const char *colon = strrchr(addr, ':');
	size_t hl = (size_t)(colon - addr);

	*ret_port = atoi(colon + 1);
	if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	snprintf(host, len, "%.*s", (int)hl, addr);
}

redisAsyncContext *redis_link_open(const char *address)
{
	redisAsyncContext *ac;

	if (address[0] == '/') {
		ac = redisAsyncConnectUnix(address);
	} else {
		char host[256];
		int port;

		split_address(address, host, sizeof(host), &port);
		ac = redisAsyncConnect(host, port);
	}
	if (ac && ac->err) {
		redisAsyncFree(ac);
		return NULL;
	}
	if (ac && redisLibeventAttach(ac, daemon_g.base) != REDIS_OK) {
		redisAsyncFree(ac);
		return NULL;
	}
	return ac;
}

redisContext *redis_link_open_sync(const char *address)
{
	struct timeval tv = { REDIS_CONNECT_TIMEOUT_S, 0 };
	char host[256];
	int port;

	if (address[0] == '/')
		return redisConnectUnixWithTimeout(address, tv);
	split_address(address, host, sizeof(host), &port);
	return redisConnectWithTimeout(host, port, tv);
}

double redis_link_backoff(double prev)
{
	double b = prev > 0 ? prev * 2 : REDIS_BACKOFF_MIN;

	return b > REDIS_BACKOFF_MAX ? REDIS_BACKOFF_MAX : b;
}
