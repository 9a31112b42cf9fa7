/* A JSON text writer for large answers of a fixed shape (jsonw.h). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jsonw.h"

void jsonw_init(struct jsonw *w)
{
	memset(w, 0, sizeof(*w));
}

void jsonw_free(struct jsonw *w)
{
	free(w->buf);
	jsonw_init(w);
}

bool jsonw_ok(const struct jsonw *w)
{
	return !w->oom;
}

/* Room for n more bytes. */
static bool reserve(struct jsonw *w, size_t n)
{
	size_t cap;
	char *b;

	if (w->oom)
		return false;
	if (w->len + n <= w->cap)
		return true;
	cap = w->cap ? w->cap : 4096;
	while (cap < w->len + n)
		cap *= 2;
	if (!(b = realloc(w->buf, cap))) {
		w->oom = true;
		return false;
	}
	w->buf = b;
	w->cap = cap;
	return true;
}

static void put(struct jsonw *w, const char *s, size_t n)
{
	if (reserve(w, n)) {
		memcpy(w->buf + w->len, s, n);
		w->len += n;
	}
}

/* Before a value: the comma that separates it from the one before. */
static void value_start(struct jsonw *w)
{
	if (w->comma)
		put(w, ",", 1);
	w->comma = true;
}

void jsonw_raw(struct jsonw *w, const char *text, size_t len)
{
	value_start(w);
	put(w, text, len);
}

void jsonw_open(struct jsonw *w, char c)
{
	value_start(w);
	put(w, &c, 1);
	w->comma = false;
}

void jsonw_close(struct jsonw *w, char c)
{
	put(w, &c, 1);
	w->comma = true;
}

void jsonw_key(struct jsonw *w, const char *key)
{
	value_start(w);
	put(w, "\"", 1);
	put(w, key, strlen(key));
	put(w, "\":", 2);
	w->comma = false;
}

void jsonw_null(struct jsonw *w)
{
	value_start(w);
	put(w, "null", 4);
}

void jsonw_bool(struct jsonw *w, bool v)
{
	value_start(w);
	if (v)
		put(w, "true", 4);
	else
		put(w, "false", 5);
}

size_t jsonw_fmt_int(char *buf, long long n)
{
	/* In unsigned arithmetic, so the most negative value has a magnitude. */
	unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
	char tmp[20];
	size_t len = 0, i = 0;

	do
		tmp[i++] = (char)('0' + u % 10);
	while ((u /= 10));
	if (n < 0)
		buf[len++] = '-';
	while (i)
		buf[len++] = tmp[--i];
	return len;
}

void jsonw_int(struct jsonw *w, long long v)
{
	char tmp[24];

	value_start(w);
	put(w, tmp, jsonw_fmt_int(tmp, v));
}

bool jsonw_plain(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e || s[i] == '"' ||
		    s[i] == '\\')
			return false;
	return true;
}

void jsonw_str(struct jsonw *w, const char *s)
{
	if (!s)
		jsonw_null(w);
	else
		jsonw_strn(w, s, strlen(s));
}

void jsonw_strn(struct jsonw *w, const char *s, size_t len)
{
	size_t n;
	json_t *j;

	value_start(w);
	if (jsonw_plain(s, len)) {
		put(w, "\"", 1);
		put(w, s, len);
		put(w, "\"", 1);
		return;
	}
	/* Escapes (or text that is not UTF-8) are jansson's business. */
	if (!(j = json_stringn(s, len)) && !(j = json_stringn_nocheck(s, len))) {
		w->oom = true;
		return;
	}
	n = json_dumpb(j, NULL, 0, JSON_ENCODE_ANY);
	if (n && reserve(w, n))
		w->len += json_dumpb(j, w->buf + w->len, n, JSON_ENCODE_ANY);
	else if (!n)
		put(w, "null", 4);
	json_decref(j);
}

void jsonw_secs(struct jsonw *w, double v)
{
	char tmp[48];
	long long us, whole, frac;
	size_t n;
	int digits = 6;

	if (!isfinite(v) || fabs(v) >= 9e12) { /* not a time: exact, the slow way */
		value_start(w);
		n = (size_t)snprintf(tmp, sizeof(tmp), "%.17g", isfinite(v) ? v : 0.0);
		put(w, tmp, n);
		return;
	}
	us = llround(v * 1e6);
	value_start(w);
	if (us < 0) {
		put(w, "-", 1);
		us = -us;
	}
	whole = us / 1000000;
	frac = us % 1000000;
	put(w, tmp, jsonw_fmt_int(tmp, whole));
	/* six decimals without the trailing zeros, at least one */
	while (digits > 1 && frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	tmp[0] = '.';
	for (int i = digits; i > 0; i--) {
		tmp[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	put(w, tmp, (size_t)digits + 1);
}
