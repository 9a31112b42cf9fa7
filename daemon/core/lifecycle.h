/*
 * The daemon's life: the modules it is made of (given by the assembly,
 * daemon/modules.c), started in order, reloaded, stopped in reverse; an
 * orderly shutdown and a reload of the config (daemon_shutdown and
 * daemon_reload, declared in daemon.h, live here).
 */
#ifndef MPSUPD_LIFECYCLE_H
#define MPSUPD_LIFECYCLE_H

#include <stddef.h>

#include <jansson.h>

#include "conf.h"

struct cmd_module;

/* The modules, in start order (static storage); call once. */
void lifecycle_init(const struct cmd_module *const *mods, size_t n_mods);
/* Start every module (after the socket listens); the first failure. */
int modules_start(const struct conf *conf);
/* Stop every module, last first; done() once all are stopped. */
void modules_stop(void (*done)(void));
/* Apply a new, valid config in every module; what changed goes in changes. */
void modules_reload(const struct conf *newconf, json_t *changes);
/* Capabilities of the modules (a new JSON array), for hello. */
json_t *modules_capabilities(void);
/* Let every module add its figures to a daemon.info result. */
void modules_info(json_t *info);
/* Every module's metric families (metrics.h). */
struct evbuffer;
void modules_metrics(struct evbuffer *b);

#endif
