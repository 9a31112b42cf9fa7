/*
 * A fast JSON reader that builds jansson values (the request path).
 *
 * json_loadb() reads its input one byte at a time through a stream
 * callback, copies every token into a growing buffer and checks it again;
 * a 60-byte request costs it ~12 000 instructions and ~20 allocations.
 * This reader walks the text once with a pointer and creates the values
 * directly, copying nothing but the strings the values keep.
 *
 * It accepts exactly what json_loadb(JSON_DECODE_ANY |
 * JSON_REJECT_DUPLICATES) accepts, with the same values, and never says
 * why it refuses: NULL means "not here" - invalid, nested deeper than
 * asked, or merely unusual (a real number of 64 characters or more) - and
 * the caller asks jansson for the verdict and the message. So a refusal is
 * never wrong, only slower; an acceptance must be exactly jansson's.
 * Rules kept from jansson: strict UTF-8 (no overlong forms, surrogates or
 * code points above U+10FFFF), no control characters in strings, no
 * \u0000, surrogate escapes only in pairs, no leading zeros, integers
 * within int64 (else an error, not a real), reals that overflow refused,
 * duplicate keys refused in every object, whitespace only around tokens.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "mpsup.h"

/* jansson counts values (a scalar inside N containers is at N + 1) and
 * stops at JSON_PARSER_MAX_DEPTH (2048); staying far below it keeps the
 * two readers' verdicts equal and the recursion short. */
#define READ_MAX_DEPTH 1000
#define REAL_MAX_CHARS 64 /* longer numbers go to jansson */
#define STR_STACK 256     /* decoded strings up to this size stay on the stack */

struct reader {
	const unsigned char *p, *end;
	size_t depth, max_depth;
	size_t lazy_min; /* members: containers this long or longer stay text */
};

/* A request's envelope, taken out of the top-level object as it is read. */
struct envelope {
	json_t *id; /* NULL: absent */
	char *cmd;  /* the command name, cut to cmd_size - 1 bytes */
	size_t cmd_size;
	bool has_cmd;
};

static json_t *read_value(struct reader *r);

/* Bytes that stand for themselves in a string: printable ASCII but the
 * quote and the backslash (a table: one load per byte in the hot loop). */
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char str_plain[256] = {
	R16(0), R16(0), /* 0x00-0x1f: control characters */
	1,      1,      0,      1,      1,      1,      1,      1,
	1,      1,      1,      1,      1,      1,      1,      1, /* 0x20-0x2f: '"' */
	R16(1), R16(1),                                            /* 0x30-0x4f */
	1,      1,      1,      1,      1,      1,      1,      1,
	1,      1,      1,      1,      0,      1,      1,      1,      /* 0x50-0x5f: '\\' */
	R16(1), R16(1),                                                 /* 0x60-0x7f */
	R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* UTF-8: checked */
};
#undef R16

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The high bit of each byte of x that is not plain (see str_plain): a
 * control character, '"', '\\' or a byte of 0x80 and up. Exact for the
 * lowest such byte, which is all the caller uses: a false mark can only
 * follow a true one, through a borrow. A plain byte (0x20-0x7f but the
 * two) minus 0x20, or xor either special byte minus one, stays below 0x80
 * and borrows nothing; a byte of 0x80 and up is marked by its own bit. */
static inline uint64_t word_stops(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;

	return (((x ^ (ones * '"')) - ones) | ((x ^ (ones * '\\')) - ones) | (x - ones * 0x20) |
		x) &
	       high;
}
#endif

/* The first byte at or after q (before end) that is not plain. Eight bytes
 * a step where the machine allows: request strings are short, so most end
 * within one word. */
static inline __attribute__((always_inline)) const unsigned char *plain_run(
	const unsigned char *q, const unsigned char *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (end - q >= 8) {
		uint64_t x, stops;

		memcpy(&x, q, sizeof(x));
		if ((stops = word_stops(x)))
			return q + (__builtin_ctzll(stops) >> 3);
		q += 8;
	}
#endif
	while (q < end && str_plain[*q])
		q++;
	return q;
}

static inline void skip_space(struct reader *r)
{
	/* Most calls find a token at once: one compare for them. */
	while (r->p < r->end && *r->p <= ' ' &&
	       (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
		r->p++;
}

/* Take the byte c when it is the next token (space before it skipped). */
static inline __attribute__((always_inline)) bool take(struct reader *r, unsigned char c)
{
	/* Compact text has no space: one look for it. */
	if (r->p < r->end && *r->p == c) {
		r->p++;
		return true;
	}
	skip_space(r);
	if (r->p < r->end && *r->p == c) {
		r->p++;
		return true;
	}
	return false;
}

/* After a member or an element: 1 at a ',' (taken, with the space after
 * it), 0 at the closing byte (taken), -1 at anything else. */
static inline __attribute__((always_inline)) int next_item(struct reader *r, unsigned char close)
{
	if (take(r, ',')) {
		skip_space(r);
		return 1;
	}
	return take(r, close) ? 0 : -1;
}

/* Length of the valid UTF-8 sequence at s (before end) that does not start
 * with an ASCII byte, or 0. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end)
{
	unsigned c = s[0], min, cp;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	if ((size_t)(end - s) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Four hex digits at s (before end); -1 when they are not. */
static long hex4(const unsigned char *s, const unsigned char *end)
{
	long v = 0;

	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		unsigned c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Write code point cp as UTF-8 at out; returns the bytes written. */
static size_t utf8_put(unsigned long cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decode the escapes of the string body s..end (already checked to hold no
 * control characters and only valid UTF-8) into out, which has room for
 * end - s bytes (a decoded string is never longer). Returns the length,
 * or -1 on a bad escape, a lone surrogate or \u0000. */
static ssize_t unescape(const unsigned char *s, const unsigned char *end, char *out)
{
	char *o = out;

	while (s < end) {
		long cp, lo;

		if (*s != '\\') {
			*o++ = (char)*s++;
			continue;
		}
		s++; /* the scan guarantees a byte after the backslash */
		switch (*s++) {
		case '"': *o++ = '"'; continue;
		case '\\': *o++ = '\\'; continue;
		case '/': *o++ = '/'; continue;
		case 'b': *o++ = '\b'; continue;
		case 'f': *o++ = '\f'; continue;
		case 'n': *o++ = '\n'; continue;
		case 'r': *o++ = '\r'; continue;
		case 't': *o++ = '\t'; continue;
		case 'u': break;
		default: return -1;
		}
		if ((cp = hex4(s, end)) <= 0) /* \u0000 is refused, as jansson does */
			return -1;
		s += 4;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return -1;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (end - s < 6 || s[0] != '\\' || s[1] != 'u' ||
			    (lo = hex4(s + 2, end)) < 0xdc00 || lo > 0xdfff)
				return -1;
			s += 6;
			cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
		}
		o += utf8_put((unsigned long)cp, o);
	}
	return o - out;
}

/*
 * Read the string whose opening quote is at r->p. *ret_s and *ret_len: its
 * value, pointing into the text when it has no escapes, else into tmp
 * (STR_STACK bytes) or into *ret_heap, which the caller frees. false when
 * it is not a valid string.
 */
static inline __attribute__((always_inline)) bool read_string(struct reader *r, const char **ret_s,
							      size_t *ret_len, char *tmp,
							      char **ret_heap)
{
	const unsigned char *start = ++r->p, *q = start, *end = r->end;
	bool escaped = false;
	char *out;
	ssize_t n;

	*ret_heap = NULL;
	for (;;) {
		q = plain_run(q, end);
		if (q >= end || *q < 0x20)
			return false;
		if (*q == '"')
			break;
		if (*q == '\\') {
			if (end - q < 2)
				return false;
			escaped = true;
			q += 2; /* what follows is checked by unescape() */
			if (q[-1] < 0x20 || q[-1] >= 0x80)
				return false;
			continue;
		}
		size_t l = utf8_len(q, end);
		if (!l)
			return false;
		q += l;
	}
	r->p = q + 1;
	if (!escaped) {
		*ret_s = (const char *)start;
		*ret_len = (size_t)(q - start);
		return true;
	}
	out = tmp;
	if ((size_t)(q - start) > STR_STACK && !(out = *ret_heap = malloc((size_t)(q - start))))
		return false;
	if ((n = unescape(start, q, out)) < 0) {
		free(*ret_heap);
		*ret_heap = NULL;
		return false;
	}
	*ret_s = out;
	*ret_len = (size_t)n;
	return true;
}

static bool is_digit(const unsigned char *q, const unsigned char *end)
{
	return q < end && *q >= '0' && *q <= '9';
}

/* Scan the number at r->p: an integer when it has no fraction or exponent
 * (and must fit in int64, as in jansson; *ret_i), else a real (*ret_d).
 * false when it is not a number jansson reads the same way. */
static bool scan_number(struct reader *r, bool *ret_real, json_int_t *ret_i, double *ret_d)
{
	const unsigned char *s = r->p, *q = s, *end = r->end;
	bool neg = false, real = false;

	if (*q == '-') {
		neg = true;
		q++;
	}
	if (!is_digit(q, end))
		return false;
	if (*q == '0') {
		if (is_digit(++q, end))
			return false;
	} else {
		while (is_digit(q, end))
			q++;
	}
	if (q < end && *q == '.') {
		if (!is_digit(++q, end))
			return false;
		while (is_digit(q, end))
			q++;
		real = true;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (!is_digit(q, end))
			return false;
		while (is_digit(q, end))
			q++;
		real = true;
	}
	r->p = q;
	*ret_real = real;
	if (!real) {
		uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
		const unsigned char *d = s + neg;

		/* 18 digits never overflow: no check (a division) for them */
		for (const unsigned char *safe = q - d > 18 ? d + 18 : q; d < safe; d++)
			v = v * 10 + (unsigned)(*d - '0');
		for (; d < q; d++) {
			unsigned digit = *d - '0';
			if (v > (limit - digit) / 10)
				return false; /* jansson: too big integer */
			v = v * 10 + digit;
		}
		if (neg)
			*ret_i = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)v;
		else
			*ret_i = (json_int_t)v;
	} else {
		char buf[REAL_MAX_CHARS], *e;
		size_t len = (size_t)(q - s);
		double d;

		if (len >= sizeof(buf))
			return false;
		memcpy(buf, s, len);
		buf[len] = '\0';
		errno = 0;
		d = strtod(buf, &e);
		/* e short of the end: a locale with another decimal point. */
		if (e != buf + len || (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL)))
			return false;
		*ret_d = d;
	}
	return true;
}

static json_t *read_number(struct reader *r)
{
	json_int_t i;
	double d;
	bool real;

	if (!scan_number(r, &real, &i, &d))
		return NULL;
	return real ? json_real(d) : json_integer(i);
}

/* A literal true/false/null at r->p. */
static json_t *read_word(struct reader *r, const char *word, size_t len, json_t *v)
{
	if ((size_t)(r->end - r->p) < len || memcmp(r->p, word, len) != 0)
		return NULL;
	r->p += len;
	return v;
}

/* Take the member key (klen bytes) of the top-level object into env when
 * it is "id" or "cmd": 1 taken, 0 not an envelope member, -1 refused (a
 * duplicate, a cmd that is not a string: jansson explains). */
static int envelope_take(struct reader *r, struct envelope *env, const char *key, size_t klen)
{
	char tmp[STR_STACK], *heap;
	const char *s;
	size_t len;

	if (klen == 2 && memcmp(key, "id", 2) == 0) {
		if (env->id || !(env->id = read_value(r)))
			return -1;
		return 1;
	}
	if (klen != 3 || memcmp(key, "cmd", 3) != 0)
		return 0;
	if (env->has_cmd || r->p >= r->end || *r->p != '"' || !read_string(r, &s, &len, tmp, &heap))
		return -1;
	if (len >= env->cmd_size)
		len = env->cmd_size - 1;
	memcpy(env->cmd, s, len);
	env->cmd[len] = '\0';
	env->has_cmd = true;
	if (heap) /* rare: no call on the hot path */
		free(heap);
	return 1;
}

/* An object; env: the top-level object of a request, whose "id" and "cmd"
 * go there instead of into the object. */
static json_t *read_object(struct reader *r, struct envelope *env)
{
	json_t *o = json_object();
	char tmp[STR_STACK];

	if (!o)
		return NULL;
	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		return o;
	}
	for (;;) {
		const char *key;
		size_t klen, size;
		char *heap;
		json_t *v;

		if (r->p >= r->end || *r->p != '"' || !read_string(r, &key, &klen, tmp, &heap))
			goto fail;
		if (!take(r, ':')) {
			free(heap);
			goto fail;
		}
		skip_space(r);
		if (env) {
			int taken = envelope_take(r, env, key, klen);
			free(taken ? heap : NULL);
			if (taken < 0)
				goto fail;
			if (taken)
				goto next;
		}
		/* The key lives in tmp (or heap) while the value is read: a
		 * nested object uses its own frame's tmp. */
		v = read_value(r);
		size = json_object_size(o);
		/* A key seen before leaves the size unchanged: a duplicate. */
		if (!v || json_object_setn_new_nocheck(o, key, klen, v) < 0 ||
		    json_object_size(o) == size) {
			free(heap);
			goto fail;
		}
		free(heap);
	next:
		switch (next_item(r, '}')) {
		case 1: continue;
		case 0: return o;
		default: goto fail;
		}
	}
fail:
	json_decref(o);
	return NULL;
}

static json_t *read_array(struct reader *r)
{
	json_t *a = json_array();

	if (!a)
		return NULL;
	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		return a;
	}
	for (;;) {
		json_t *v = read_value(r);

		if (!v || json_array_append_new(a, v) < 0)
			goto fail;
		switch (next_item(r, ']')) {
		case 1: continue;
		case 0: return a;
		default: goto fail;
		}
	}
fail:
	json_decref(a);
	return NULL;
}

static json_t *read_container(struct reader *r, bool object)
{
	json_t *v;

	if (++r->depth > r->max_depth)
		return NULL;
	v = object ? read_object(r, NULL) : read_array(r);
	r->depth--;
	return v;
}

/* The value at r->p (no space before it). */
static json_t *read_value(struct reader *r)
{
	if (r->p >= r->end)
		return NULL;
	switch (*r->p) {
	case '"': {
		char tmp[STR_STACK], *heap;
		const char *s;
		size_t len;
		json_t *v;

		if (!read_string(r, &s, &len, tmp, &heap))
			return NULL;
		v = json_stringn_nocheck(s, len);
		free(heap);
		return v;
	}
	case '{': return read_container(r, true);
	case '[': return read_container(r, false);
	case 't': return read_word(r, "true", 4, json_true());
	case 'f': return read_word(r, "false", 5, json_false());
	case 'n': return read_word(r, "null", 4, json_null());
	default:
		if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
			return read_number(r);
		return NULL;
	}
}

/*
 * Checking without building: the verdict of read_value() on the value at
 * r->p, moving past it, with no jansson value made (but for the keys of
 * an object whose duplicates only jansson's hash table judges cheaply).
 */

static bool skip_value(struct reader *r);

/* An object's key as it lies in the text (no escapes). */
struct skip_key {
	const char *s;
	size_t len;
};

/* Keys skip_object() checks for duplicates by hand; past them (or at an
 * escaped key) jansson's hash table holds the keys. */
#define SKIP_KEYS 16

/* Add key to set (the object's keys so far, made from the nk in keys
 * when NULL); false at a duplicate or out of memory. */
static bool key_set_add(json_t **set, const struct skip_key *keys, size_t nk, const char *key,
			size_t klen)
{
	size_t size;

	if (!*set) {
		if (!(*set = json_object()))
			return false;
		for (size_t i = 0; i < nk; i++)
			if (json_object_setn_new_nocheck(*set, keys[i].s, keys[i].len,
							 json_null()) < 0)
				return false;
	}
	size = json_object_size(*set);
	/* A key seen before leaves the size unchanged: a duplicate. */
	return json_object_setn_new_nocheck(*set, key, klen, json_null()) == 0 &&
	       json_object_size(*set) > size;
}

/* The object at r->p checked, its values only skipped (never built: a
 * value nested in many such objects is still read once). */
static bool skip_object(struct reader *r)
{
	struct skip_key keys[SKIP_KEYS];
	size_t nk = 0;
	json_t *set = NULL;
	bool ok = false;

	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		return true;
	}
	for (;;) {
		char tmp[STR_STACK], *heap;
		const char *key;
		size_t klen;
		bool fresh = true;

		if (r->p >= r->end || *r->p != '"' || !read_string(r, &key, &klen, tmp, &heap))
			goto out;
		if (set || key == tmp || heap || nk == SKIP_KEYS)
			fresh = key_set_add(&set, keys, nk, key, klen);
		else {
			for (size_t i = 0; i < nk; i++)
				if (keys[i].len == klen && memcmp(keys[i].s, key, klen) == 0)
					fresh = false; /* a duplicate */
			keys[nk].s = key;
			keys[nk++].len = klen;
		}
		free(heap);
		if (!fresh || !take(r, ':'))
			goto out;
		skip_space(r);
		if (!skip_value(r))
			goto out;
		switch (next_item(r, '}')) {
		case 1: continue;
		case 0: ok = true; goto out;
		default: goto out;
		}
	}
out:
	json_decref(set);
	return ok;
}

static bool skip_array(struct reader *r)
{
	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		return true;
	}
	for (;;) {
		if (!skip_value(r))
			return false;
		switch (next_item(r, ']')) {
		case 1: continue;
		case 0: return true;
		default: return false;
		}
	}
}

static bool skip_container(struct reader *r, bool object)
{
	bool ok;

	if (++r->depth > r->max_depth)
		return false;
	ok = object ? skip_object(r) : skip_array(r);
	r->depth--;
	return ok;
}

/* Move past the integer of at most 18 digits at r->p (it cannot overflow:
 * nothing to compute); false, not moving, for anything else (scan_number
 * judges it). */
static inline bool skip_number(struct reader *r)
{
	const unsigned char *q = r->p + (*r->p == '-'), *end = r->end, *d = q;

	while (q < end && *q >= '0' && *q <= '9')
		q++;
	if (q == d || q - d > 18 || (*d == '0' && q - d > 1) ||
	    (q < end && (*q == '.' || *q == 'e' || *q == 'E')))
		return false;
	r->p = q;
	return true;
}

static bool skip_value(struct reader *r)
{
	json_int_t i;
	double d;
	bool real;

	if (r->p >= r->end)
		return false;
	switch (*r->p) {
	case '"': {
		char tmp[STR_STACK], *heap;
		const char *s;
		size_t len;
		bool ok = read_string(r, &s, &len, tmp, &heap);
		free(heap);
		return ok;
	}
	case '{': return skip_container(r, true);
	case '[': return skip_container(r, false);
	case 't': return read_word(r, "true", 4, json_true()) != NULL;
	case 'f': return read_word(r, "false", 5, json_false()) != NULL;
	case 'n': return read_word(r, "null", 4, json_null()) != NULL;
	default:
		if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
			return skip_number(r) || scan_number(r, &real, &i, &d);
		return false;
	}
}

/* Whether the container at s spans at least min bytes (brackets matched
 * outside strings, nothing checked: a cheap look before choosing to build
 * it or to check it and leave it as text). */
static bool container_at_least(const unsigned char *s, const unsigned char *end, size_t min)
{
	size_t depth = 0;

	if ((size_t)(end - s) < min)
		return false;
	end = s + min;
	for (const unsigned char *q = s; q < end; q++) {
		switch (*q) {
		case '"':
			for (q++; q < end && *q != '"'; q++)
				if (*q == '\\')
					q++;
			break;
		case '[':
		case '{': depth++; break;
		case ']':
		case '}':
			if (--depth == 0)
				return false;
			break;
		default: break;
		}
	}
	return true;
}

ssize_t mpsup_json_array_each(const char *text, size_t len, size_t max_depth,
			      int (*fn)(void *arg, const char *value, size_t len), void *arg)
{
	struct reader r = {
		.depth = 1,
		.max_depth = max_depth && max_depth < READ_MAX_DEPTH ? max_depth : READ_MAX_DEPTH,
	};
	ssize_t n = 0;
	int rc;

	if (!text)
		return -EINVAL;
	r.p = (const unsigned char *)text;
	r.end = r.p + len;
	skip_space(&r);
	if (r.p >= r.end || *r.p != '[')
		return -EINVAL;
	r.p++;
	skip_space(&r);
	if (r.p < r.end && *r.p == ']') {
		r.p++;
		goto end;
	}
	for (;;) {
		const unsigned char *v = r.p;

		if (!skip_value(&r))
			return -EINVAL;
		if (fn && (rc = fn(arg, (const char *)v, (size_t)(r.p - v))) < 0)
			return rc;
		n++;
		skip_space(&r);
		if (r.p < r.end && *r.p == ',') {
			r.p++;
			skip_space(&r);
			continue;
		}
		if (r.p < r.end && *r.p == ']') {
			r.p++;
			break;
		}
		return -EINVAL;
	}
end:
	skip_space(&r);
	return r.p == r.end ? n : -EINVAL;
}

json_t *mpsup_json_loadb(const char *text, size_t len, size_t max_depth)
{
	struct reader r = {
		.max_depth = max_depth && max_depth < READ_MAX_DEPTH ? max_depth : READ_MAX_DEPTH,
	};
	json_t *v;

	if (!text)
		return NULL;
	r.p = (const unsigned char *)text;
	r.end = r.p + len;
	skip_space(&r);
	if (!(v = read_value(&r)))
		return NULL;
	skip_space(&r);
	if (r.p != r.end) {
		json_decref(v);
		return NULL;
	}
	return v;
}

int json_read_request(const char *line, size_t len, size_t max_depth, json_t **ret_params,
		      json_t **ret_id, char *cmd, size_t cmd_size)
{
	struct reader r = {
		.depth = 1,
		.max_depth = max_depth && max_depth < READ_MAX_DEPTH ? max_depth : READ_MAX_DEPTH,
	};
	struct envelope env = { .cmd = cmd, .cmd_size = cmd_size };
	json_t *params;

	if (!line || cmd_size == 0)
		return -1;
	r.p = (const unsigned char *)line;
	r.end = r.p + len;
	skip_space(&r);
	if (r.p >= r.end || *r.p != '{')
		return -1;
	params = read_object(&r, &env);
	skip_space(&r);
	if (!params || r.p != r.end || !env.has_cmd) {
		json_decref(params);
		json_decref(env.id);
		return -1;
	}
	*ret_params = params;
	*ret_id = env.id;
	return 0;
}

/* The value at r->p as member m: scalars stay in the text (a string with
 * escapes is built), containers are built. */
static bool member_value(struct reader *r, struct mpsup_member *m)
{
	char tmp[STR_STACK], *heap;
	bool real;

	m->v = NULL;
	if (r->p >= r->end)
		return false;
	switch (*r->p) {
	case '"':
		if (!read_string(r, &m->str, &m->str_len, tmp, &heap))
			return false;
		m->type = JSON_STRING;
		if (m->str == tmp || heap) {
			/* Escaped: decoded into tmp or heap, which do not last. */
			m->v = json_stringn_nocheck(m->str, m->str_len);
			free(heap);
			if (!m->v)
				return false;
			m->str = json_string_value(m->v);
		}
		return true;
	case '{':
	case '[':
		m->type = *r->p == '{' ? JSON_OBJECT : JSON_ARRAY;
		if (r->lazy_min != SIZE_MAX && container_at_least(r->p, r->end, r->lazy_min))
			return skip_container(r, *r->p == '{'); /* left as text: m->raw */
		return (m->v = read_container(r, *r->p == '{')) != NULL;
	case 't': m->type = JSON_TRUE; return read_word(r, "true", 4, json_true()) != NULL;
	case 'f': m->type = JSON_FALSE; return read_word(r, "false", 5, json_false()) != NULL;
	case 'n': m->type = JSON_NULL; return read_word(r, "null", 4, json_null()) != NULL;
	default:
		if (!scan_number(r, &real, &m->i, &m->d))
			return false;
		m->type = real ? JSON_REAL : JSON_INTEGER;
		return true;
	}
}

/* Read one member "key": value at r->p into env or members[*n]; false when
 * refused (see mpsup_request_members). */
static bool member_read(struct reader *r, struct envelope *env, struct mpsup_member *members,
			size_t cap, size_t *n)
{
	char tmp[STR_STACK], *heap;
	const char *key;
	size_t klen;
	int taken;

	if (r->p >= r->end || *r->p != '"' || !read_string(r, &key, &klen, tmp, &heap))
		return false;
	if (key == tmp || heap) { /* an escaped key: the tree path reads it */
		free(heap);
		return false;
	}
	if (!take(r, ':'))
		return false;
	skip_space(r);
	/* Only "id" and "cmd" are the envelope's: one look spares the call. */
	if (env && (klen == 2 || klen == 3) && (taken = envelope_take(r, env, key, klen)) != 0)
		return taken > 0;
	if (*n == cap)
		return false;
	for (size_t i = 0; i < *n; i++)
		if (members[i].key_len == klen && memcmp(members[i].key, key, klen) == 0)
			return false; /* a duplicate: refused, the tree path explains */
	members[*n].key = key;
	members[*n].key_len = klen;
	members[*n].raw = (const char *)r->p;
	if (!member_value(r, &members[*n]))
		return false;
	members[*n].raw_len = (size_t)((const char *)r->p - members[*n].raw);
	++*n;
	return true;
}

/* Read the members of the object at r->p (the envelope's into env when
 * env is given); false when refused. */
static bool read_members(struct reader *r, struct envelope *env, struct mpsup_member *members,
			 size_t cap, size_t *n)
{
	skip_space(r);
	if (r->p >= r->end || *r->p != '{')
		return false;
	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		goto end;
	}
	for (;;) {
		if (!member_read(r, env, members, cap, n))
			return false;
		switch (next_item(r, '}')) {
		case 1: continue;
		case 0: goto end;
		default: return false;
		}
	}
end:
	skip_space(r);
	return r->p == r->end;
}

int mpsup_request_members_lazy(const char *line, size_t len, size_t max_depth, size_t lazy_min,
			       struct mpsup_member *members, size_t cap, size_t *ret_n,
			       json_t **ret_id, char *cmd, size_t cmd_size)
{
	struct reader r = {
		.depth = 1,
		.max_depth = max_depth && max_depth < READ_MAX_DEPTH ? max_depth : READ_MAX_DEPTH,
		.lazy_min = lazy_min,
	};
	struct envelope env = { .cmd = cmd, .cmd_size = cmd_size };
	size_t n = 0;

	if (!line || !cmd || cmd_size == 0)
		return -1;
	r.p = (const unsigned char *)line;
	r.end = r.p + len;
	if (!read_members(&r, &env, members, cap, &n) || !env.has_cmd) {
		mpsup_members_free(members, n);
		json_decref(env.id);
		return -1;
	}
	*ret_n = n;
	*ret_id = env.id;
	return 0;
}

int mpsup_request_members(const char *line, size_t len, size_t max_depth,
			  struct mpsup_member *members, size_t cap, size_t *ret_n, json_t **ret_id,
			  char *cmd, size_t cmd_size)
{
	return mpsup_request_members_lazy(line, len, max_depth, SIZE_MAX, members, cap, ret_n,
					  ret_id, cmd, cmd_size);
}

int mpsup_json_members(const char *text, size_t len, size_t max_depth, struct mpsup_member *members,
		       size_t cap, size_t *ret_n)
{
	struct reader r = {
		.depth = 1,
		.max_depth = max_depth && max_depth < READ_MAX_DEPTH ? max_depth : READ_MAX_DEPTH,
		.lazy_min = 0,
	};
	size_t n = 0;

	if (!text)
		return -EINVAL;
	r.p = (const unsigned char *)text;
	r.end = r.p + len;
	if (!read_members(&r, NULL, members, cap, &n)) {
		mpsup_members_free(members, n);
		return -EINVAL;
	}
	*ret_n = n;
	return 0;
}

void mpsup_members_free(struct mpsup_member *members, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_decref(members[i].v);
		members[i].v = NULL;
	}
}

json_t *mpsup_member_json(const struct mpsup_member *m)
{
	switch (m->type) {
	case JSON_OBJECT:
	case JSON_ARRAY: return m->v ? json_incref(m->v) : mpsup_json_loadb(m->raw, m->raw_len, 0);
	case JSON_STRING:
		return m->v ? json_incref(m->v) : json_stringn_nocheck(m->str, m->str_len);
	case JSON_INTEGER: return json_integer(m->i);
	case JSON_REAL: return json_real(m->d);
	case JSON_TRUE: return json_true();
	case JSON_FALSE: return json_false();
	default: return json_null();
	}
}
