/*
 * Connections to Redis on the daemon's loop (hiredis async, libevent
 * adapter), shared by the redis state backend (daemon/state/redis_*.c)
 * and the redis task queue (daemon/task/task_redis.c): how an address is
 * reached, the blocking check at start, and the reconnect backoff.
 */
#ifndef MPSUPD_REDIS_LINK_H
#define MPSUPD_REDIS_LINK_H

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

/* The first and the longest wait before connecting again (seconds). */
#define REDIS_BACKOFF_MIN 0.1
#define REDIS_BACKOFF_MAX 5.0
/* How long the blocking check at start waits for Redis. */
#define REDIS_CONNECT_TIMEOUT_S 2

/* An asynchronous connection to address (an absolute Unix socket path or
 * host:port) attached to the daemon's loop; NULL when it cannot even start. */
redisAsyncContext *redis_link_open(const char *address);
/* A blocking connection to address (start-up checks only); NULL when out
 * of memory, else check ->err. */
redisContext *redis_link_open_sync(const char *address);
/* The wait before the next attempt after one that waited prev (0: none yet). */
double redis_link_backoff(double prev);

#endif
