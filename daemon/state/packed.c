/* Packed values: JSON values kept as bytes (see packed.h). */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "jsonw.h"
#include "mpsup.h"
#include "obj.h"
#include "packed.h"

/* An entry: a tag byte, then
 *   P_INT, P_REAL: the 8 bytes of the number;
 *   P_STR: the length (varint), the bytes (valid UTF-8, maybe with NULs);
 *   P_JSON: the text's length (varint), its data bytes (varint), the compact
 *           JSON text of an array or object. */
enum { P_NULL, P_TRUE, P_FALSE, P_INT, P_REAL, P_STR, P_JSON };

#define VARINT_MAX 10     /* a size_t in 7-bit groups */
#define BIG_BUF (1 << 20) /* buffers this large are mapped pages */
#define COMPACT_MIN 4096  /* dead bytes worth a compaction */
#define JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

static unsigned char *varint_put(unsigned char *q, size_t v)
{
	while (v >= 0x80) {
		*q++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*q++ = (unsigned char)v;
	return q;
}

static const unsigned char *varint_get(const unsigned char *q, size_t *ret)
{
	size_t v = 0;
	unsigned shift = 0;

	while (*q & 0x80) {
		v |= (size_t)(*q++ & 0x7f) << shift;
		shift += 7;
	}
	*ret = v | (size_t)*q++ << shift;
	return q;
}

/* One entry, read. */
struct entry {
	int tag;
	size_t len;      /* P_STR, P_JSON: bytes of the payload */
	size_t mem;      /* P_JSON: its data bytes */
	const void *val; /* the payload */
	size_t size;     /* the whole entry's bytes */
};

static void entry_read(const struct packed *p, size_t i, struct entry *e)
{
	const unsigned char *start = p->bytes + p->off[i], *q = start + 1;

	e->tag = *start;
	e->len = 0;
	switch (e->tag) {
	case P_INT:
	case P_REAL: e->len = 8; break;
	case P_STR: q = varint_get(q, &e->len); break;
	case P_JSON:
		q = varint_get(q, &e->len);
		q = varint_get(q, &e->mem);
		break;
	default: break;
	}
	e->val = q;
	e->size = (size_t)(q - start) + e->len;
}

static size_t entry_mem(const struct entry *e)
{
	switch (e->tag) {
	case P_STR: return OBJ_MEM_SLOT + OBJ_MEM_NODE + e->len;
	case P_JSON: return e->mem;
	default: return OBJ_MEM_SLOT + OBJ_MEM_VALUE;
	}
}

/*
 * Buffers: small ones from malloc, large ones (BIG_BUF and up, a multiple
 * of the page size) mapped, so that growing one moves its pages with
 * mremap instead of copying (and faulting in) every byte again.
 */
static void buf_free(void *b, size_t cap)
{
	if (cap >= BIG_BUF)
		munmap(b, cap);
	else
		free(b);
}

/* b (cap bytes, used of them kept) grown or shrunk to ncap bytes; NULL
 * when out of memory (b unchanged). */
static void *buf_resize(void *b, size_t cap, size_t used, size_t ncap)
{
	void *n;

	if (ncap < BIG_BUF && cap < BIG_BUF)
		return realloc(b, ncap);
	if (ncap >= BIG_BUF && cap >= BIG_BUF) {
		n = mremap(b, cap, ncap, MREMAP_MAYMOVE);
		return n == MAP_FAILED ? NULL : n;
	}
	if (ncap >= BIG_BUF) {
		/* cppcheck-suppress invalidFunctionArg ; fd -1 with MAP_ANONYMOUS */
		n = mmap(NULL, ncap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (n == MAP_FAILED)
			return NULL;
	} else if (!(n = malloc(ncap))) {
		return NULL;
	}
	if (used)
		memcpy(n, b, used);
	buf_free(b, cap);
	return n;
}

/* A capacity of at least need: a power of two from 256 (so at BIG_BUF and
 * above a multiple of the page size). */
static size_t buf_cap(size_t need)
{
	size_t cap = 256;

	while (cap < need)
		cap *= 2;
	return cap;
}

/* Room for an entry of up to need bytes and one more position. */
static int reserve(struct packed *p, size_t need)
{
	if (p->used + need > p->cap) {
		size_t cap = buf_cap(p->used + need);
		unsigned char *b = buf_resize(p->bytes, p->cap, p->used, cap);

		if (!b)
			return -ENOMEM;
		p->bytes = b;
		p->cap = cap;
	}
	if (p->n == p->ncap) {
		size_t size = buf_cap((p->n + 1) * sizeof(*p->off));
		size_t *off = buf_resize(p->off, p->ncap * sizeof(*off), p->n * sizeof(*off), size);

		if (!off)
			return -ENOMEM;
		p->off = off;
		p->ncap = size / sizeof(*off);
	}
	return 0;
}

/* Write a scalar's entry at the end of the bytes (room reserved). */
static void put_scalar(struct packed *p, int tag, const void *val, size_t len)
{
	unsigned char *q = p->bytes + p->used;

	*q++ = (unsigned char)tag;
	if (tag == P_STR)
		q = varint_put(q, len);
	if (len)
		memcpy(q, val, len);
	p->used = (size_t)(q - p->bytes) + len;
}

/* Append the entry of v to the bytes (not to the positions); its offset. */
static int put_json(struct packed *p, json_t *v, size_t *ret_off)
{
	size_t off = p->used, len = 0, mem;
	json_int_t i;
	double d;
	int tag;
	unsigned char *q;

	switch (json_typeof(v)) {
	case JSON_STRING:
		len = json_string_length(v);
		if (reserve(p, 1 + VARINT_MAX + len) < 0)
			return -ENOMEM;
		put_scalar(p, P_STR, json_string_value(v), len);
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		if (reserve(p, 9) < 0)
			return -ENOMEM;
		i = json_integer_value(v);
		d = json_real_value(v);
		tag = json_is_integer(v) ? P_INT : P_REAL;
		put_scalar(p, tag, tag == P_INT ? (const void *)&i : (const void *)&d, 8);
		break;
	case JSON_ARRAY:
	case JSON_OBJECT:
		len = json_dumpb(v, NULL, 0, JSON_FLAGS);
		mem = obj_mem_elem(v);
		if (!len || reserve(p, 1 + 2 * VARINT_MAX + len) < 0)
			return -ENOMEM;
		q = p->bytes + p->used;
		*q++ = P_JSON;
		q = varint_put(q, len);
		q = varint_put(q, mem);
		if (json_dumpb(v, (char *)q, len, JSON_FLAGS) != len)
			return -ENOMEM;
		p->used = (size_t)(q - p->bytes) + len;
		break;
	default:
		if (reserve(p, 1) < 0)
			return -ENOMEM;
		tag = json_is_true(v) ? P_TRUE : json_is_false(v) ? P_FALSE : P_NULL;
		put_scalar(p, tag, NULL, 0);
		break;
	}
	*ret_off = off;
	return 0;
}

/* Append the entry of m to the bytes; its offset. */
static int put_member(struct packed *p, const struct mpsup_member *m, size_t *ret_off)
{
	size_t off = p->used;
	int tag;

	if (m->v)
		return put_json(p, m->v, ret_off);
	switch (m->type) {
	case JSON_STRING:
		if (reserve(p, 1 + VARINT_MAX + m->str_len) < 0)
			return -ENOMEM;
		put_scalar(p, P_STR, m->str, m->str_len);
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		if (reserve(p, 9) < 0)
			return -ENOMEM;
		tag = m->type == JSON_INTEGER ? P_INT : P_REAL;
		put_scalar(p, tag, tag == P_INT ? (const void *)&m->i : (const void *)&m->d, 8);
		break;
	default:
		if (reserve(p, 1) < 0)
			return -ENOMEM;
		tag = m->type == JSON_TRUE ? P_TRUE : m->type == JSON_FALSE ? P_FALSE : P_NULL;
		put_scalar(p, tag, NULL, 0);
		break;
	}
	*ret_off = off;
	return 0;
}

/* Rewrite the bytes in position order without the dead entries, once at
 * least half of them are dead: removals cost O(1) amortized bytes. */
static void maybe_compact(struct packed *p)
{
	size_t live = p->used - p->dead, pos = 0, cap = buf_cap(live);
	unsigned char *b;
	struct entry e;

	if (p->dead < COMPACT_MIN || p->dead * 2 < p->used)
		return;
	if (!(b = buf_resize(NULL, 0, 0, cap)))
		return; /* keep the dead bytes; try again at the next removal */
	for (size_t i = 0; i < p->n; i++) {
		entry_read(p, i, &e);
		memcpy(b + pos, p->bytes + p->off[i], e.size);
		p->off[i] = pos;
		pos += e.size;
	}
	buf_free(p->bytes, p->cap);
	p->bytes = b;
	p->used = pos;
	p->cap = cap;
	p->dead = 0;
}

/* Give position at (made free) the entry written at off. */
static void place(struct packed *p, size_t at, size_t off)
{
	struct entry e;

	memmove(p->off + at + 1, p->off + at, (p->n - at) * sizeof(*p->off));
	p->off[at] = off;
	p->n++;
	entry_read(p, at, &e);
	p->mem += entry_mem(&e);
}

int packed_insert_member(struct packed *p, size_t at, const struct mpsup_member *m)
{
	size_t off;

	if (put_member(p, m, &off) < 0)
		return -ENOMEM;
	place(p, at, off);
	return 0;
}

int packed_insert_json(struct packed *p, size_t at, json_t *v)
{
	size_t off;

	if (put_json(p, v, &off) < 0)
		return -ENOMEM;
	place(p, at, off);
	return 0;
}

/* The entry at i is no longer used: reclaim it at once when it is the last
 * one written, else count it dead. */
static void drop_entry(struct packed *p, size_t i)
{
	struct entry e;

	entry_read(p, i, &e);
	p->mem -= entry_mem(&e);
	if (p->off[i] + e.size == p->used)
		p->used = p->off[i];
	else
		p->dead += e.size;
}

int packed_set_json(struct packed *p, size_t i, json_t *v)
{
	size_t off;
	struct entry e;

	if (put_json(p, v, &off) < 0)
		return -ENOMEM;
	/* The old entry is never the last written now: it counts as dead. */
	entry_read(p, i, &e);
	p->mem -= entry_mem(&e);
	p->dead += e.size;
	p->off[i] = off;
	entry_read(p, i, &e);
	p->mem += entry_mem(&e);
	maybe_compact(p);
	return 0;
}

void packed_remove(struct packed *p, size_t i)
{
	drop_entry(p, i);
	memmove(p->off + i, p->off + i + 1, (p->n - i - 1) * sizeof(*p->off));
	p->n--;
	if (!p->n) /* give the pages back; cheap for a small list */
		packed_free(p);
	else
		maybe_compact(p);
}

json_t *packed_get(const struct packed *p, size_t i)
{
	struct entry e;
	json_int_t n;
	double d;

	entry_read(p, i, &e);
	switch (e.tag) {
	case P_TRUE: return json_true();
	case P_FALSE: return json_false();
	case P_INT: memcpy(&n, e.val, 8); return json_integer(n);
	case P_REAL: memcpy(&d, e.val, 8); return json_real(d);
	/* Written from a validated request or a jansson string. */
	case P_STR: return json_stringn_nocheck(e.val, e.len);
	case P_JSON: return json_loadb(e.val, e.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	default: return json_null();
	}
}

size_t packed_mem_at(const struct packed *p, size_t i)
{
	struct entry e;

	entry_read(p, i, &e);
	return entry_mem(&e);
}

bool packed_equal(const struct packed *p, size_t i, json_t *v)
{
	struct entry e;
	json_t *x;
	bool eq;

	entry_read(p, i, &e);
	switch (e.tag) {
	case P_STR:
		return json_is_string(v) && json_string_length(v) == e.len &&
		       memcmp(json_string_value(v), e.val, e.len) == 0;
	case P_TRUE: return json_is_true(v);
	case P_FALSE: return json_is_false(v);
	case P_NULL: return json_is_null(v);
	case P_JSON:
		if (!json_is_array(v) && !json_is_object(v))
			return false;
		break;
	default:
		if (!json_is_number(v))
			return false;
		break;
	}
	/* Numbers (1 equals 1.0) and containers compare as jansson values. */
	x = packed_get(p, i);
	eq = x && obj_json_equal(x, v);
	json_decref(x);
	return eq;
}

json_t *packed_array(const struct packed *p, size_t start, size_t stop)
{
	json_t *a = json_array();

	for (size_t i = start; a && i < stop; i++)
		if (json_array_append_new(a, packed_get(p, i)) < 0) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

/* A real as jansson writes it (the reply must not depend on the path). */
static void write_real(struct jsonw *w, double d)
{
	char buf[64];
	json_t *j = json_real(d);
	size_t n = j ? json_dumpb(j, buf, sizeof(buf), JSON_ENCODE_ANY) : 0;

	json_decref(j);
	if (n && n <= sizeof(buf))
		jsonw_raw(w, buf, n);
	else
		w->oom = true;
}

void packed_write(const struct packed *p, size_t start, size_t stop, struct jsonw *w)
{
	struct entry e;
	json_int_t n;
	double d;

	jsonw_open(w, '[');
	for (size_t i = start; i < stop && jsonw_ok(w); i++) {
		entry_read(p, i, &e);
		switch (e.tag) {
		case P_TRUE: jsonw_bool(w, true); break;
		case P_FALSE: jsonw_bool(w, false); break;
		case P_INT:
			memcpy(&n, e.val, 8);
			jsonw_int(w, n);
			break;
		case P_REAL:
			memcpy(&d, e.val, 8);
			write_real(w, d);
			break;
		case P_STR: jsonw_strn(w, e.val, e.len); break;
		case P_JSON: jsonw_raw(w, e.val, e.len); break;
		default: jsonw_null(w); break;
		}
	}
	jsonw_close(w, ']');
}

void packed_free(struct packed *p)
{
	buf_free(p->bytes, p->cap);
	buf_free(p->off, p->ncap * sizeof(*p->off));
	*p = (struct packed)PACKED_INIT;
}
