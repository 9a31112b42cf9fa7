/*
 * mpctl: output - compact JSON, values, tables and "key: value" fields,
 * colour only on a terminal (mpctl.h, "Output").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpctl.h"

/*
 * Compact JSON. jansson writes reals with 17 significant digits, which
 * turns 0.1 into 0.10000000000000001; try 15 first and keep it when it
 * reads back as the same value, so numbers stay exact and short.
 */
char *ctl_json_text(const json_t *v)
{
	size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	char *s = json_dumps(v, flags | JSON_REAL_PRECISION(15));
	json_t *back;

	if (!s)
		goto full;
	back = json_loads(s, JSON_DECODE_ANY, NULL);
	if (back && json_equal(back, v)) {
		json_decref(back);
		return s;
	}
	json_decref(back);
	free(s);
full:
	s = json_dumps(v, flags);
	if (!s) {
		fputs("mpctl: out of memory\n", stderr);
		exit(CTL_EXIT_ERROR);
	}
	return s;
}

void ctl_print_value(FILE *f, const json_t *v, bool dash)
{
	char *s;

	if (!v || json_is_null(v)) {
		fputs(dash ? "-" : "null", f);
		return;
	}
	if (json_is_string(v)) {
		fwrite(json_string_value(v), 1, json_string_length(v), f);
		return;
	}
	s = ctl_json_text(v);
	fputs(s, f);
	free(s);
}

void ctl_print_result(const struct ctl *ctl, const json_t *v)
{
	if (ctl->json) {
		char *s = ctl_json_text(v ? v : json_null());

		puts(s);
		free(s);
		return;
	}
	if (!v || json_is_null(v))
		return;
	ctl_print_value(stdout, v, false);
	putchar('\n');
}

void ctl_format_duration(double seconds, char *buf, size_t size)
{
	long long s;

	if (!isfinite(seconds) || seconds < 0) {
		snprintf(buf, size, "-");
		return;
	}
	s = (long long)seconds;
	if (s < 60)
		snprintf(buf, size, "%llds", s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

char *ctl_cell_text(const json_t *v)
{
	char *s;

	if (!v || json_is_null(v))
		return strdup("-");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	s = ctl_json_text(v);
	return s;
}

bool ctl_use_colour(void)
{
	return isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
}

/* Display width of a UTF-8 string: its code points (no wide-char tables). */
static size_t ctl_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

void ctl_print_table(const json_t *rows, const struct ctl_column *cols, size_t ncols)
{
	size_t nrows = json_array_size(rows);
	size_t *width = calloc(ncols, sizeof(*width));
	bool *shown = calloc(ncols, sizeof(*shown));
	char **cells = calloc(nrows * ncols + 1, sizeof(*cells));
	bool colour = ctl_use_colour();
	size_t i, j, last = 0;

	if (!width || !shown || !cells) {
		fputs("mpctl: out of memory\n", stderr);
		exit(CTL_EXIT_ERROR);
	}
	for (j = 0; j < ncols; j++) {
		for (i = 0; i < nrows && !shown[j]; i++)
			shown[j] = json_object_get(json_array_get(rows, i), cols[j].key) != NULL;
		if (!shown[j])
			continue;
		last = j;
		width[j] = ctl_width(cols[j].header);
		for (i = 0; i < nrows; i++) {
			const json_t *row = json_array_get(rows, i);
			const json_t *v = json_object_get(row, cols[j].key);
			char *c = cols[j].format ? cols[j].format(row, v) : ctl_cell_text(v);

			if (!c) {
				fputs("mpctl: out of memory\n", stderr);
				exit(CTL_EXIT_ERROR);
			}
			cells[i * ncols + j] = c;
			if (ctl_width(c) > width[j])
				width[j] = ctl_width(c);
		}
	}
	for (j = 0; j < ncols; j++) {
		if (!shown[j])
			continue;
		printf("%s%*s", cols[j].header,
		       j == last ? 0 : (int)(width[j] - ctl_width(cols[j].header) + 2), "");
	}
	putchar('\n');
	for (i = 0; i < nrows; i++) {
		const json_t *row = json_array_get(rows, i);

		for (j = 0; j < ncols; j++) {
			const char *c = cells[i * ncols + j];
			const char *esc = NULL;

			if (!shown[j])
				continue;
			if (colour && cols[j].colour)
				esc = cols[j].colour(row, json_object_get(row, cols[j].key));
			printf("%s%s%s%*s", esc ? esc : "", c, esc ? "\033[0m" : "",
			       j == last ? 0 : (int)(width[j] - ctl_width(c) + 2), "");
		}
		putchar('\n');
	}
	for (i = 0; i < nrows * ncols; i++)
		free(cells[i]);
	free(cells);
	free(shown);
	free(width);
}

void ctl_print_fields(const json_t *obj)
{
	const char *key;
	json_t *v;
	int w = 0;

	json_object_foreach((json_t *)obj, key, v) {
		int n = (int)ctl_width(key) + 1;

		if (n > w)
			w = n;
	}
	json_object_foreach((json_t *)obj, key, v) {
		printf("%s:%*s ", key, w - (int)ctl_width(key) - 1, "");
		if (strcmp(key, "uptime") == 0 && json_is_number(v)) {
			char buf[32];

			ctl_format_duration(json_number_value(v), buf, sizeof(buf));
			fputs(buf, stdout);
		} else if (json_is_array(v) && json_array_size(v) > 0) {
			size_t i;
			json_t *item;
			bool plain = true;

			json_array_foreach(v, i, item)
				plain = plain && json_is_string(item);
			if (plain) {
				json_array_foreach(v, i, item)
					printf("%s%s", i ? " " : "", json_string_value(item));
			} else {
				ctl_print_value(stdout, v, true);
			}
		} else {
			ctl_print_value(stdout, v, true);
		}
		putchar('\n');
	}
}
