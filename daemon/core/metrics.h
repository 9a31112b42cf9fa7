/*
 * The Prometheus text exposition (docs/metrics.md): families and samples
 * written in one pass into an evbuffer, label values escaped, and the
 * fixed-bucket histograms. Each module adds its families through its
 * `metrics` hook (command.h); metrics_render() writes them all.
 */
#ifndef MPSUPD_METRICS_H
#define MPSUPD_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct metrics_label {
	const char *name;
	const char *value; /* NULL or "": the label is left out */
};

/* The # HELP and # TYPE lines of a family (type: counter, gauge, histogram). */
void metrics_family(struct evbuffer *b, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. */
void metrics_u64(struct evbuffer *b, const char *name, const struct metrics_label *l, size_t n,
		 uint64_t v);
void metrics_double(struct evbuffer *b, const char *name, const struct metrics_label *l, size_t n,
		    double v);

/* Upper bounds of the histogram buckets (seconds), +Inf not included. */
#define METRICS_BUCKETS 14
extern const double metrics_bucket_bounds[METRICS_BUCKETS];

struct metrics_hist {
	uint64_t buckets
		[METRICS_BUCKETS]; /* not cumulative: observations <= bound[i] and > bound[i-1] */
	uint64_t count;
	double sum;
};

void metrics_hist_observe(struct metrics_hist *h, double seconds);
/* The _bucket, _sum and _count lines of one histogram (the family line is
 * the caller's). */
void metrics_hist_write(struct evbuffer *b, const char *name, const struct metrics_label *l,
			size_t n, const struct metrics_hist *h);

/* The whole exposition: the core's families, then every module's. */
void metrics_render(struct evbuffer *b);

#endif
