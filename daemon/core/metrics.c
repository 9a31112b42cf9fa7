/*
 * The Prometheus text exposition format, version 0.0.4: one pass into an
 * evbuffer (thousands of processes: no string is built twice).
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "command.h"
#include "daemon.h"
#include "lifecycle.h"
#include "metrics.h"
#include "conn.h"

const double metrics_bucket_bounds[METRICS_BUCKETS] = {
	0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300,
};

void metrics_family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped. */
static void add_escaped(struct evbuffer *b, const char *v)
{
	const char *s = v;

	for (const char *p = v; *p; p++) {
		const char *esc = *p == '\\'   ? "\\\\"
				  : *p == '"'  ? "\\\""
				  : *p == '\n' ? "\\n"
					       : NULL;
		if (!esc)
			continue;
		evbuffer_add(b, s, (size_t)(p - s));
		evbuffer_add(b, esc, 2);
		s = p + 1;
	}
	evbuffer_add(b, s, strlen(s));
}

/* name{k="v",...} (the braces only when a label has a value). */
static void add_series(struct evbuffer *b, const char *name, const char *suffix,
		       const struct metrics_label *l, size_t n)
{
	bool open = false;

	evbuffer_add(b, name, strlen(name));
	if (suffix)
		evbuffer_add(b, suffix, strlen(suffix));
	for (size_t i = 0; i < n; i++) {
		if (!l[i].value || !*l[i].value)
			continue;
		evbuffer_add(b, open ? "," : "{", 1);
		open = true;
		evbuffer_add(b, l[i].name, strlen(l[i].name));
		evbuffer_add(b, "=\"", 2);
		add_escaped(b, l[i].value);
		evbuffer_add(b, "\"", 1);
	}
	if (open)
		evbuffer_add(b, "}", 1);
}

/* " 12345\n" without printf: the hot path of a large scrape. */
static void add_u64_value(struct evbuffer *b, uint64_t v)
{
	char buf[24];
	size_t i = sizeof(buf);

	buf[--i] = '\n';
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf[--i] = ' ';
	evbuffer_add(b, buf + i, sizeof(buf) - i);
}

static void add_double_value(struct evbuffer *b, double v)
{
	char buf[40];
	int len;

	if (isnan(v))
		len = snprintf(buf, sizeof(buf), " NaN\n");
	else if (isinf(v))
		len = snprintf(buf, sizeof(buf), v > 0 ? " +Inf\n" : " -Inf\n");
	else
		len = snprintf(buf, sizeof(buf), " %.17g\n", v);
	evbuffer_add(b, buf, (size_t)len);
}

void metrics_u64(struct evbuffer *b, const char *name, const struct metrics_label *l, size_t n,
		 uint64_t v)
{
	add_series(b, name, NULL, l, n);
	add_u64_value(b, v);
}

void metrics_double(struct evbuffer *b, const char *name, const struct metrics_label *l, size_t n,
		    double v)
{
	add_series(b, name, NULL, l, n);
	add_double_value(b, v);
}

void metrics_hist_observe(struct metrics_hist *h, double seconds)
{
	size_t i = 0;

	if (!(seconds >= 0))
		seconds = 0;
	while (i < METRICS_BUCKETS && seconds > metrics_bucket_bounds[i])
		i++;
	if (i < METRICS_BUCKETS)
		h->buckets[i]++;
	h->count++;
	h->sum += seconds;
}

/* The labels of l plus le (at most 3 of l). */
#define HIST_LABELS_MAX 4

void metrics_hist_write(struct evbuffer *b, const char *name, const struct metrics_label *l,
			size_t n, const struct metrics_hist *h)
{
	struct metrics_label ll[HIST_LABELS_MAX];
	uint64_t cum = 0;
	char le[32];

	if (n > HIST_LABELS_MAX - 1)
		n = HIST_LABELS_MAX - 1;
	if (n)
		memcpy(ll, l, n * sizeof(*l));
	ll[n].name = "le";
	ll[n].value = le;
	for (size_t i = 0; i < METRICS_BUCKETS; i++) {
		cum += h->buckets[i];
		snprintf(le, sizeof(le), "%g", metrics_bucket_bounds[i]);
		add_series(b, name, "_bucket", ll, n + 1);
		add_u64_value(b, cum);
	}
	snprintf(le, sizeof(le), "+Inf");
	add_series(b, name, "_bucket", ll, n + 1);
	add_u64_value(b, h->count);
	add_series(b, name, "_sum", l, n);
	add_double_value(b, h->sum);
	add_series(b, name, "_count", l, n);
	add_u64_value(b, h->count);
}

void metrics_render(struct evbuffer *b)
{
	metrics_family(b, "mpsup_uptime_seconds", "gauge", "Seconds since mpsupd started.");
	metrics_double(b, "mpsup_uptime_seconds", NULL, 0, daemon_uptime());
	metrics_family(b, "mpsup_clients", "gauge", "Connected clients of the control socket.");
	metrics_u64(b, "mpsup_clients", NULL, 0, server_clients());
	command_metrics(b);
	modules_metrics(b);
}
