/*
 * GET /metrics over HTTP (libevent's evhttp) on metrics_listen: a Unix
 * socket path or a loopback address; read-only, bounded (docs/metrics.md).
 */
#ifndef MPSUPD_METRICS_HTTP_H
#define MPSUPD_METRICS_HTTP_H

#include <stddef.h>

/* Connections served at once; more wait in the listen backlog. */
#define METRICS_HTTP_MAX_CONNS 16
/* Request header bytes; a body is refused. */
#define METRICS_HTTP_MAX_HEADERS 8192
/* Seconds a client may take to send its request or read the answer. */
#define METRICS_HTTP_TIMEOUT 5

/* The config check of metrics_listen: "unix:/PATH", "HOST:PORT" with a
 * loopback HOST (127.0.0.0/8, ::1 as [::1], localhost) or "off". */
int metrics_listen_check(const char *value, char *err, size_t errlen);
/* Listen on the configured metrics_listen, if any; 0 or a negative errno. */
int metrics_http_start(void);
void metrics_http_stop(void);

#endif
