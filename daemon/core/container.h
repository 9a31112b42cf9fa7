/* The struct that holds a member, from a pointer to the member. */
#ifndef MPSUPD_CONTAINER_H
#define MPSUPD_CONTAINER_H

#include <stddef.h>

/* clang-format off: clang-format 14 reads "(p) - offsetof" as a cast */
#define CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))
/* clang-format on */

#endif
