/*
 * Persistence (persist.c): the format of the state files, CRC32C and
 * record framing, and the byte buffer records are built in.
 *
 * Files (state_file = PATH): PATH is the last snapshot, PATH.log the log of
 * every mutation since, PATH.tmp a snapshot being written. Each is opened
 * relative to the directory's fd, never through a link, and must be a
 * regular file with one link owned by us (persist_files.c).
 * Both files are a sequence of frames:
 *
 *   u32 len | u32 crc32c(payload) | u32 crc32c(first 8 bytes) | payload
 *
 * (little-endian). The header has its own checksum so that a damaged length
 * is recognised as damage, not followed blindly.
 *
 * Log payload: the JSON array [SEQ, CMD, PARAMS] - a state command as it
 * was applied (e.g. [17,"dict.set",{"name":"d","key":"k","value":1}]).
 * PARAMS is usually the request line exactly as received (its "id" and
 * "cmd" members are ignored by replay): parsing the same text gives the
 * same values, and copying it costs far less than serializing the parsed
 * request again.
 * Why commands and not resulting values: every op of a persisted type is a
 * deterministic function of the object and its parameters, so the command
 * is exact, small (a list.append of one item costs the item, not the list)
 * and cheap to build.
 * What is not deterministic is logged as what happened, not as what was
 * asked: an object created on first use is an explicit "obj.create" record,
 * and a queue logs its own effects ("queue.put" when an item enters,
 * "queue.get" when one leaves - a put handed straight to a waiting getter is
 * both, a putter admitted when a get frees a slot is a get then a put), so
 * replay never waits, times out or depends on which client was connected.
 * Failed ops are not logged. SEQ counts records from 1 without gaps; a
 * snapshot remembers the last SEQ it includes, so log records at or below
 * it (left by a crash between the snapshot's rename and the log's
 * truncation) are skipped, and a gap is corruption.
 *
 * Snapshot payloads: {"mpsup_snapshot":1,"seq":S,"objects":N,"time":T}, then
 * one ["name","type",OPTIONS] per object (OPTIONS from the type's dump, from
 * which obj_create() rebuilds it), then {"end":N}.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist_int.h"

/* --- the byte buffer ------------------------------------------------------------ */

/* Make room for n more bytes; -ENOMEM. */
int persist_buf_reserve(struct persist_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->cap - b->len >= n)
		return 0;
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	if (!(p = realloc(b->p, cap)))
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void persist_buf_free(struct persist_buf *b)
{
	free(b->p);
	*b = (struct persist_buf){ 0 };
}

/* --- CRC32C and frames ---------------------------------------------------------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Tables for slicing-by-8 over the reflected Castagnoli polynomial. */
static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same with the SSE4.2 crc32 instruction (the Castagnoli polynomial). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
							    size_t len)
{
	uint64_t c = ~crc;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	for (; len; p++, len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p);
	return ~(uint32_t)c;
}
#endif

uint32_t persist_crc32c(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
	static int hw = -1;

	if (hw < 0)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (hw)
		return crc32c_hw(crc, data, len);
#endif
	return persist_crc32c_sw(crc, data, len);
}

uint32_t persist_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
			      (uint32_t)p[7] << 24;
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void persist_frame(unsigned char *hdr, const void *payload, uint32_t len)
{
	put_le32(hdr, len);
	put_le32(hdr + 4, persist_crc32c(0, payload, len));
	put_le32(hdr + 8, persist_crc32c(0, hdr, 8));
}

/* Is there a good frame at off? Its payload length in ret_len. */
static bool frame_ok(const unsigned char *p, size_t size, size_t off, uint32_t *ret_len)
{
	uint32_t len;

	if (size - off < PERSIST_HDR)
		return false;
	p += off;
	if (persist_crc32c(0, p, 8) != get_le32(p + 8))
		return false;
	len = get_le32(p);
	if (len > PERSIST_RECORD_MAX || size - off - PERSIST_HDR < len ||
	    persist_crc32c(0, p + PERSIST_HDR, len) != get_le32(p + 4))
		return false;
	*ret_len = len;
	return true;
}

void persist_scan(const char *buf, size_t len, persist_record_fn *fn, void *arg,
		  struct persist_scan *ret)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t off = 0;
	uint32_t n;

	*ret = (struct persist_scan){ .end = PERSIST_SCAN_OK };
	while (off < len) {
		if (!frame_ok(p, len, off, &n)) {
			/* Damage. A torn write only ever loses the end of the
			 * file: if a good frame starts anywhere after this
			 * point, something else happened. */
			ret->bad_off = off;
			ret->end = PERSIST_SCAN_TORN;
			snprintf(ret->why, sizeof(ret->why),
				 "bad or incomplete record (%zu bytes left)", len - off);
			for (size_t o = off + 1; o + PERSIST_HDR <= len; o++) {
				uint32_t m;
				if (frame_ok(p, len, o, &m)) {
					ret->end = PERSIST_SCAN_CORRUPT;
					snprintf(ret->why, sizeof(ret->why),
						 "bad record, with a good record at offset %zu "
						 "after it",
						 o);
					break;
				}
			}
			return;
		}
		if (fn &&
		    fn(buf + off + PERSIST_HDR, n, off, arg, ret->why, sizeof(ret->why)) < 0) {
			ret->bad_off = off;
			ret->end = PERSIST_SCAN_CORRUPT;
			return;
		}
		off += PERSIST_HDR + n;
		ret->records++;
		ret->good_end = off;
	}
}

/* Append a frame holding the payload built at b->p[start + PERSIST_HDR..]. */
void persist_frame_close(struct persist_buf *b, size_t start)
{
	persist_frame((unsigned char *)b->p + start, b->p + start + PERSIST_HDR,
		      (uint32_t)(b->len - start - PERSIST_HDR));
}

/* Dump v compactly at the end of b; -ENOMEM. */
int persist_buf_dump(struct persist_buf *b, json_t *v)
{
	size_t n = json_dumpb(v, b->p + b->len, b->cap - b->len, JSON_COMPACT | JSON_ENCODE_ANY);

	if (n > b->cap - b->len) {
		if (persist_buf_reserve(b, n) < 0)
			return -ENOMEM;
		n = json_dumpb(v, b->p + b->len, b->cap - b->len, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	if (n == 0)
		return -EINVAL;
	b->len += n;
	return 0;
}

/* Append one framed JSON record to b; -errno. */
int persist_buf_record(struct persist_buf *b, json_t *v)
{
	size_t start = b->len;
	int r;

	if (persist_buf_reserve(b, PERSIST_HDR + 256) < 0)
		return -ENOMEM;
	b->len += PERSIST_HDR;
	if ((r = persist_buf_dump(b, v)) < 0 || b->len - start - PERSIST_HDR > PERSIST_RECORD_MAX) {
		b->len = start;
		return r < 0 ? r : -E2BIG;
	}
	persist_frame_close(b, start);
	return 0;
}
