/* FNV-1a string hashes: the command index, the object table, the process
 * registry's file names. Not for anything a peer could exploit by
 * choosing colliding names beyond what a probe sequence absorbs. */
#ifndef MPSUPD_HASH_H
#define MPSUPD_HASH_H

#include <stdint.h>

static inline uint32_t hash_fnv1a32(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static inline uint64_t hash_fnv1a64(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

#endif
