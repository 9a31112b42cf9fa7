/* The modules mpsupd is made of (modules.c). */
#ifndef MPSUPD_MODULES_H
#define MPSUPD_MODULES_H

#include <stddef.h>

struct cmd_module;

extern const struct cmd_module *const mpsupd_modules[];
extern const size_t mpsupd_n_modules;

/* Put mpsupd together: command_init() with every module, the peer
 * policy of supervision, the commit barrier of persistence. Call once, before the socket listens. */
void mpsupd_assemble(void);

#endif
