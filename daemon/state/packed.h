/*
 * Packed values: a sequence of JSON values kept as bytes, not as jansson
 * trees (the list type's storage). A string, number, true, false or null
 * costs its bytes and an offset, against two allocations and a pointer as
 * a jansson value; containers are kept as their compact JSON text. Values
 * are built as jansson values only when read.
 *
 * Each value is one entry in one byte buffer, found through an offset per
 * position: reading position i is O(1), inserting or removing in the middle
 * moves the offsets after it (as an array of pointers would). Space left by
 * removed or replaced entries is reclaimed by compacting the buffer once
 * it is half dead.
 *
 * The data bytes each value stands for (max_memory's accounting) are kept
 * as obj_mem_elem() counts them, so a packed list is charged as a jansson
 * array of the same values would be.
 */
#ifndef MPSUP_STATE_PACKED_H
#define MPSUP_STATE_PACKED_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct jsonw;
struct mpsup_member;

struct packed {
	unsigned char *bytes;
	size_t used, cap, dead; /* bytes written, allocated, held by removed entries */
	size_t *off;            /* the entry of each position */
	size_t n, ncap;
	size_t mem; /* obj_mem_elem() of every value */
};

#define PACKED_INIT                          \
	{                                    \
		NULL, 0, 0, 0, NULL, 0, 0, 0 \
	}

/* Release everything (also to clear p): p is empty afterwards. */
void packed_free(struct packed *p);
/* Insert the value of m (a request parameter) before position at (at == n
 * appends). 0, or -ENOMEM (nothing changed). */
int packed_insert_member(struct packed *p, size_t at, const struct mpsup_member *m);
/* Insert v before position at. 0, or -ENOMEM (nothing changed). */
int packed_insert_json(struct packed *p, size_t at, json_t *v);
/* Replace the value at position i with v. 0, or -ENOMEM (nothing changed). */
int packed_set_json(struct packed *p, size_t i, json_t *v);
/* The value at position i as a new jansson value; NULL when out of memory. */
json_t *packed_get(const struct packed *p, size_t i);
/* Remove position i. */
void packed_remove(struct packed *p, size_t i);
/* obj_mem_elem() of the value at position i. */
size_t packed_mem_at(const struct packed *p, size_t i);
/* Whether the value at i equals v as obj_json_equal() says. */
bool packed_equal(const struct packed *p, size_t i, json_t *v);
/* Positions [start, stop) as the text of an array, into w (which says
 * when it ran out of memory): no jansson value is built. */
void packed_write(const struct packed *p, size_t start, size_t stop, struct jsonw *w);
/* Positions [start, stop) as a new array; NULL when out of memory. */
json_t *packed_array(const struct packed *p, size_t start, size_t stop);

#endif
