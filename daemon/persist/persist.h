/*
 * Durable shared state (docs/state.md "Persistence"): an append-only log of
 * framed records, one per mutation of a persisted object (dict, list,
 * value, array, queue), and snapshots that compact it. On by `state_file`.
 *
 * The state module calls:
 *   - persist_writable(r) before it mutates a persisted object: false (with
 *     `unavailable` answered) while the log cannot be written;
 *   - persist_log(cmd, params) once a mutation is done, before its answer;
 *   - persist_read(r, name) before it answers a request about a named object
 *     (or the namespace): false (with `unavailable` answered) when the
 *     answer could show a mutation that a failed commit left unwritten;
 *   - nothing else: the records of one event-loop pass are written (and
 *     with state_sync = always fsynced) together by a commit that runs at
 *     the end of the pass.
 * The connections hold their output behind that commit: the core asks
 * persist_barrier() before it writes (commit_barrier.h), so no answer
 * leaves the daemon before the records it may depend on are written (as
 * far as state_sync promises):
 *   - while records of the current pass are not yet written, every answer
 *     of every connection waits for them (group commit);
 *   - when a write or fsync failed, its records stay unwritten (applied in
 *     memory, not on disk) until a recovery snapshot writes them: the
 *     answers of their pass that show durable state wait for that, at
 *     most persist_outage_timeout (the others go when the write fails:
 *     BARRIER_FAILING); then the barrier gives up on them
 *     (BARRIER_TIMED_OUT) and the core answers them `unavailable`.
 *     A later request about an object they change (any object, for
 *     obj.list; obj.create/obj.delete of such a name too) is answered
 *     `unavailable` at once by persist_read(). Other answers go out:
 *     reads of other objects, ping, status, daemon.info, events.
 * So a reader never sees a mutation that could be lost by a crash.
 */
#ifndef MPSUPD_PERSIST_H
#define MPSUPD_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "command.h"
#include "commit_barrier.h"

extern const struct cmd_module persist_module;

/* May a persisted object be mutated now? When the last write failed this
 * retries it; if that fails too, r is answered `unavailable` and false is
 * returned. Always true when persistence is off. */
bool persist_writable(struct request *r);

/* Append the record of a mutation as applied: a state command (e.g.
 * "dict.set", "obj.create") and its parameters, `name` included. Replaying
 * the command with these parameters on the state before it gives the state
 * after it. No-op when persistence is off or while loading. */
void persist_log(const char *cmd, json_t *params);
/* The same for a request whose handler made the mutation: logs its line as
 * received while the handler runs (cheaper), else its parameters. */
void persist_log_request(struct request *r);

/* Before answering r about the object called name (NULL: the whole
 * namespace): if a failed commit left a record changing it unwritten, r is
 * answered `unavailable` and false is returned (the last durable value is
 * not kept: see docs/state.md). True otherwise, at no cost while nothing
 * failed. */
bool persist_read(struct request *r, const char *name);

/*
 * The commit barrier (commit_barrier.h); key is the connection whose
 * output asks, never looked into. While records of the current pass are
 * not yet written, returns BARRIER_WAIT and remembers (fn, key):
 * fn(key, BARRIER_WRITTEN) runs once those records are on disk (as far as
 * state_sync promises; after a failure, once the recovery snapshot is), or
 * fn(key, BARRIER_TIMED_OUT) once they have failed to be written for
 * persist_outage_timeout. Returns BARRIER_GO when the output depends on
 * nothing unwritten: the caller may write at once; BARRIER_NO_MEMORY when
 * it must wait but cannot be remembered: the caller must drop the output
 * (close the connection).
 */
enum barrier_result persist_barrier(void (*fn)(void *key, enum barrier_release how), void *key);
/* Forget a (fn, key) given to persist_barrier (the connection closed). */
void persist_barrier_cancel(void (*fn)(void *key, enum barrier_release how), void *key);

/* Write and sync what is pending now (normally run by the loop). */
void persist_commit(void);

/* --- building blocks, exposed for unit tests ------------------------------ */

/* Frame header: payload length, CRC32C of the payload, CRC32C of those 8
 * bytes (all little-endian). */
#define PERSIST_HDR 12
/* A record larger than this is not written, and not believed when read. */
#define PERSIST_RECORD_MAX (1u << 30)

/* CRC32C (Castagnoli), continuing from crc (0 to start). */
uint32_t persist_crc32c(uint32_t crc, const void *data, size_t len);
/* The portable implementation (persist_crc32c uses SSE4.2 where it can). */
uint32_t persist_crc32c_sw(uint32_t crc, const void *data, size_t len);
/* Fill the PERSIST_HDR bytes of a frame for a payload. */
void persist_frame(unsigned char *hdr, const void *payload, uint32_t len);

enum persist_scan_end {
	PERSIST_SCAN_OK = 0,  /* every byte belongs to a good record */
	PERSIST_SCAN_TORN,    /* a bad tail with no good record after it */
	PERSIST_SCAN_CORRUPT, /* a bad record with good data after it, or fn refused one */
};

struct persist_scan {
	enum persist_scan_end end;
	size_t records;  /* good records passed to fn */
	size_t good_end; /* offset just after the last good record */
	size_t bad_off;  /* where the damage starts (end != OK) */
	char why[160];
};

/*
 * Walk the records of buf. fn(payload, len, offset, arg, why, whylen)
 * returns 0 to go on, or -1 with a reason in why: the record is then
 * treated as corrupt. Stops at the first bad record: when a good record
 * starts anywhere after it the file is corrupt, otherwise its tail is torn.
 */
typedef int persist_record_fn(const char *payload, size_t len, size_t off, void *arg, char *why,
			      size_t whylen);
void persist_scan(const char *buf, size_t len, persist_record_fn *fn, void *arg,
		  struct persist_scan *ret);

/*
 * Open (or create) the state files of path, load the snapshot and replay
 * the log into the (empty) namespace, and start logging with sync mode.
 * truncate_corrupt: drop a corrupt log from the damage on instead of
 * failing. dir_check: refuse a directory reached through a symbolic link or
 * writable by another user (state files are always opened without following
 * links and must be regular, singly linked and ours). Returns 0 or a
 * negative errno, with the reason in err.
 */
int persist_open(const char *path, int sync, uint64_t log_max_bytes, bool truncate_corrupt,
		 bool dir_check, char *err, size_t errlen);
/* Write a snapshot now, in the foreground (a snapshot child running is
 * killed first), and empty the log; 0 or a negative errno. Compaction
 * writes its snapshots in a child process instead (persist_snapshot.c). */
int persist_snapshot(void);
/* Commit, snapshot (when clean) and close; persistence is off afterwards. */
void persist_close(bool snapshot);
/* Figures for daemon.info (a new object). */
json_t *persist_info(void);

#endif
