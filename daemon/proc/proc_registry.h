/*
 * The process registry: a small file in the runtime directory that lists
 * the process groups mpsupd runs (pool workers and one-shots: each leads
 * its own group), so that a daemon started after a crash of the previous
 * one (kill -9 outside systemd) stops what was left before it starts its
 * pools (proc_leftover.h). The file is named after the control socket, so
 * daemons on other sockets never touch each other's processes, and a lock
 * beside it keeps a second daemon on the same socket out.
 *
 * Format (text, one entry a line): a header, then a log of the groups
 * that started ("p") and ended ("x"), appended once per loop pass and
 * compacted (rewritten whole: tmp + rename) when it holds more ended
 * groups than live ones:
 *   mpsupd-processes 1
 *   boot BOOT_ID
 *   key KEY                        (hash of the socket path)
 *   daemon PID START               (the writer)
 *   p PID PGID LO HI SIGNAL STOP_TIMEOUT_MS NAME
 *   x PID LO
 * A process's start time is field 22 of /proc/PID/stat, in clock ticks
 * since boot; LO..HI is the range it lies in (CLOCK_BOOTTIME read before
 * and after the spawn: reading /proc there would cost more than the
 * spawn's own system calls; usually LO = HI).
 */
#ifndef MPSUPD_PROC_REGISTRY_H
#define MPSUPD_PROC_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conf.h"

/* Bounds of what the reader accepts (and the writer writes). */
#define PROCREG_MAX_RECORDS 262144
#define PROCREG_MAX_LINES (2 * PROCREG_MAX_RECORDS + 1024)
#define PROCREG_MAX_BYTES (64u << 20)
/* The widest start range recorded; a wider one is read from /proc. */
#define PROCREG_MAX_RANGE 50
#define PROCREG_NAME_MAX 96
/* The longest stop_timeout a record may carry (ms; conf's own bound). */
#define PROCREG_MAX_TIMEOUT_MS 1000000000000ull

/* One process group mpsupd ran. */
struct procreg_rec {
	pid_t pid;         /* the group's leader (our child); may be reaped already */
	pid_t pgid;        /* == pid: each child leads its own group */
	uint64_t start_lo; /* the leader's start time, clock ticks since boot, */
	uint64_t start_hi; /* lies in this range; 0 = unknown (not recorded) */
	int stop_signal;
	double stop_timeout; /* seconds */
	const char *name;    /* POOL:INDEX or a one-shot's name */
};

/* The first line of the file, and the length of a boot id. */
#define PROCREG_MAGIC "mpsupd-processes 1"
#define PROCREG_BOOT_ID_LEN 36
/* The largest pid a line may name (the kernel's PID_MAX_LIMIT on 64-bit). */
#define PROCREG_PID_MAX 4194304

/* A parsed registry file. */
struct procreg_file {
	pid_t writer_pid;
	uint64_t writer_start;
	struct procreg_rec *recs;
	size_t n;
	bool torn; /* a last line without newline was left out */
};

/* What /proc/PID/stat says about a process. */
struct procreg_stat {
	char state;
	pid_t ppid, pgrp, session;
	uint64_t start;
};

/* Read /proc/PID/stat: 0, or -errno (-ESRCH when there is no such process). */
int procreg_stat(pid_t pid, struct procreg_stat *ret);
/* Now, in the clock ticks of /proc's start times (CLOCK_BOOTTIME). */
uint64_t procreg_ticks(void);
/* Make lo..hi (from procreg_ticks() around a spawn of pid) narrow enough
 * to record, reading /proc when it is not: 0, or -errno. */
int procreg_fix_range(pid_t pid, uint64_t *lo, uint64_t *hi);

/* Can s be written as a record's name (POOL:INDEX or a one-shot's name)? */
bool procreg_name_valid(const char *s);

/*
 * Parse a registry file held in buf (len bytes, NUL-terminated; names in
 * the result point into buf, which is modified) into the groups that had
 * not ended. A file of another boot or another socket is refused with
 * -ESTALE; anything malformed with -EINVAL; the reason is in err.
 */
int procreg_parse(char *buf, size_t len, const char *boot_id, const char *key,
		  struct procreg_file *ret, char *err, size_t errlen);

/*
 * Open the registry of the daemon listening on socket_path: the runtime
 * directory (conf's runtime_dir, else the socket's directory) and the
 * lock, before any module touches state or processes. Returns 0 (also when
 * the registry is not usable in the socket's directory: a warning says
 * so), -EADDRINUSE when another live daemon holds the lock, or -errno when
 * a configured runtime_dir is unusable.
 */
int procreg_open(const struct conf *conf, const char *socket_path);
/* Stop whatever the previous daemon on this socket left running (it may
 * block, bounded), then record from now on. Before any pool starts. */
void procreg_start(void);
/* A group started / ended (its leader's pid and start range): recorded
 * at the end of this loop pass. */
void procreg_add(const struct procreg_rec *r);
void procreg_remove(pid_t pid, uint64_t start_lo);
/* An orderly end: everything is stopped; remove the file, drop the lock. */
void procreg_close(void);

/* The runtime directory (descriptor, and its path in *ret_dir), or
 * -ENOENT when there is none (the registry is off). */
int procreg_dirfd(const char **ret_dir);

#endif
