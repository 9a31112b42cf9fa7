/*
 * A JSON text writer for large answers of a fixed shape (status of 10 000
 * processes): members are appended as text, with no jansson value in
 * between. Building jansson objects and dumping them costs most of such an
 * answer, reals above all (jansson prints them with "%.17g").
 *
 * Keys are literal ASCII names. Strings that need no escaping are copied;
 * others go through jansson's encoder. Allocation failure is remembered
 * and reported by jsonw_ok(); writing on after it is harmless.
 */
#ifndef MPSUPD_JSONW_H
#define MPSUPD_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw {
	char *buf;
	size_t len, cap;
	bool oom;
	bool comma; /* a value was written at this level: the next needs ',' */
};

/* Start empty (jsonw_free() or hand buf over when done). */
void jsonw_init(struct jsonw *w);
void jsonw_free(struct jsonw *w);
/* No allocation failed. */
bool jsonw_ok(const struct jsonw *w);

/* '[' / '{' and ']' / '}' (a comma before the opening one when needed). */
void jsonw_open(struct jsonw *w, char c);
void jsonw_close(struct jsonw *w, char c);
/* "key": of the next value in an object. */
void jsonw_key(struct jsonw *w, const char *key);

void jsonw_null(struct jsonw *w);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_int(struct jsonw *w, long long v);
/* A string; NULL writes null. */
void jsonw_str(struct jsonw *w, const char *s);
/* A string of len bytes (it may hold NULs). */
void jsonw_strn(struct jsonw *w, const char *s, size_t len);
/* A value given as its JSON text (checked by the caller). */
void jsonw_raw(struct jsonw *w, const char *text, size_t len);
/* A number of seconds with microseconds (times: started_at, uptime). */
void jsonw_secs(struct jsonw *w, double v);

/* A string JSON takes as it is: printable ASCII, nothing to escape. */
bool jsonw_plain(const char *s, size_t len);
/* Write n in decimal into buf (at least 21 bytes); returns the length. */
size_t jsonw_fmt_int(char *buf, long long n);

#endif
