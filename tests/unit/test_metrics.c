/* Unit tests of the metrics text (daemon/core/metrics.c): label values
 * escaped as the exposition format wants, empty labels left out, integer
 * and float values, and cumulative histogram buckets. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics.h"
#include "unit.h"

/* The text written into b, as a string (b is emptied). */
static char *text_of(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_label_escaping)
{
	struct evbuffer *b = evbuffer_new();
	struct metrics_label l[3] = { { "a", "x\"y\\z\nw" }, { "b", NULL }, { "c", "" } };
	char *s;

	metrics_u64(b, "m_total", l, 3, 5);
	s = text_of(b);
	ck_assert_str_eq(s, "m_total{a=\"x\\\"y\\\\z\\nw\"} 5\n");
	free(s);
	metrics_u64(b, "m", l + 1, 2, 0);
	metrics_u64(b, "m", NULL, 0, UINT64_MAX);
	metrics_double(b, "g", NULL, 0, 0.25);
	s = text_of(b);
	ck_assert_str_eq(s, "m 0\nm 18446744073709551615\ng 0.25\n");
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_family_and_histogram)
{
	struct evbuffer *b = evbuffer_new();
	struct metrics_hist h;
	struct metrics_label l = { "pool", "t" };
	char *s;

	memset(&h, 0, sizeof(h));
	metrics_hist_observe(&h, 0.0002); /* <= 0.0005 */
	metrics_hist_observe(&h, 0.003);  /* <= 0.005 */
	metrics_hist_observe(&h, 1000);   /* +Inf only */
	metrics_family(b, "d_seconds", "histogram", "Durations.");
	metrics_hist_write(b, "d_seconds", &l, 1, &h);
	s = text_of(b);
	ck_assert_ptr_nonnull(
		strstr(s, "# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_bucket{pool=\"t\",le=\"0.0001\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_bucket{pool=\"t\",le=\"0.0005\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_bucket{pool=\"t\",le=\"0.005\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_bucket{pool=\"t\",le=\"300\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_bucket{pool=\"t\",le=\"+Inf\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_count{pool=\"t\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_sum{pool=\"t\"} 1000.0032"));
	free(s);
	evbuffer_free(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_test(tc, test_label_escaping);
	tcase_add_test(tc, test_family_and_histogram);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
