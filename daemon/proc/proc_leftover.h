/*
 * Leftovers: the process groups a previous mpsupd on the same socket left
 * running when it died without stopping them (kill -9 outside systemd).
 * Before the pools start, each group its registry lists gets its recorded
 * stop signal, then SIGKILL after its stop_timeout, like a stop; every
 * step is logged. A pid that now belongs to another process (another start
 * time) is left alone.
 */
#ifndef MPSUPD_PROC_LEFTOVER_H
#define MPSUPD_PROC_LEFTOVER_H

#include <stddef.h>
#include <sys/types.h>

#include "proc_registry.h"

/* The longest wait for a group before SIGKILL, whatever it recorded, and
 * the wait after SIGKILL: start-up is bounded. */
#define LEFTOVER_STOP_MAX 60.0
#define LEFTOVER_KILL_WAIT 5.0

/* Stop what recs (from the registry of the daemon with pid writer) still
 * runs; returns once it is gone or the bounds passed. */
void leftovers_stop(const struct procreg_rec *recs, size_t n, pid_t writer);

#endif
