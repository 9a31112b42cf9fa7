/*
 * Worker output: the read ends of a process's stdout/stderr pipes, drained
 * by the event loop into lines; a bounded ring of recent lines per process
 * (proc.logs); per pool append-only files with size-based rotation; and the
 * writer that feeds a one-shot's stdin.
 */
#ifndef MPSUPD_PROC_OUTPUT_H
#define MPSUPD_PROC_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "safe_open.h"

struct proc;
struct event;

enum { STREAM_STDOUT = 1, STREAM_STDERR = 2 };

/* Longer lines are split (bounds memory per line). */
#define LOGLINE_MAX 4096
/* A process's ring never holds more than this many bytes of text. */
#define LOGRING_BYTES_MAX (128 * 1024)

struct logline {
	double ts;
	uint32_t len;
	uint8_t stream;
	char text[]; /* valid UTF-8, NUL-terminated */
};

struct logring {
	struct logline **v;
	unsigned cap, head, n; /* circular: the oldest is v[head] */
	size_t bytes;
};

/* The i-th line held, 0 = the oldest. */
const struct logline *logring_at(const struct logring *r, unsigned i);
void logring_clear(struct logring *r);

/* An output file shared by the processes of a pool, opened as root with
 * safe_open (no symlinks, one link, the pool user's own file where that
 * user can change the directory) and created for the pool's user. */
struct outfile {
	char *path;
	char *dirpath, *name;    /* path split */
	struct safe_dir dir;     /* fd -1 when not open */
	struct safe_owner owner; /* the pool's user (groups: own copy) */
	uint64_t max_bytes;
	unsigned backups;
	int fd;       /* -1 when it could not be opened */
	bool rotates; /* a regular file (a device never rotates) */
	uint64_t size;
	uint64_t errors; /* write/open/rotate errors and refused files */
	bool failing;    /* the last operation failed (log only transitions) */
};

/* Mode of the files created (owned by the pool's user and group). */
#define OUTFILE_MODE 0640

struct outfile *outfile_open(const struct output_conf *oc, const struct safe_owner *owner);
struct outfile *outfile_free(struct outfile *f);
/* Close and open again, resolving the path anew (logrotate moved the file). */
void outfile_reopen(struct outfile *f);
/* Append one line (a newline is added); rotates past max_bytes. */
void outfile_write(struct outfile *f, const char *s, size_t n);
/* The same, after "PREFIX | " when prefix is not NULL. */
void outfile_write_line(struct outfile *f, const char *prefix, const char *s, size_t n);

/* One captured stream of one process run. */
struct outpipe {
	int fd;
	int stream;
	struct event *ev;
	struct proc *p;
	char *partial; /* an unfinished line, up to LOGLINE_MAX */
	size_t plen;
};

/* Watch fd (the read end, made non-blocking) for p. */
struct outpipe *outpipe_new(struct proc *p, int fd, int stream);
/* Read what is left, flush the partial line, close. */
struct outpipe *outpipe_free(struct outpipe *o);

/* Record one line of p's output (ring, pool file, followers). */
void proc_output_line(struct proc *p, int stream, const char *s, size_t n);

/* Write data to fd (a pipe to a child's stdin) in the background, then
 * close it. Takes fd. */
int stdin_feed(int fd, const char *data, size_t len);
/* Drop every pending stdin writer (shutdown). */
void stdin_feed_cleanup(void);

/* Replace invalid UTF-8 bytes by '?' in place. */
void utf8_sanitize(char *s, size_t n);

#endif
