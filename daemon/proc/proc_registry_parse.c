/*
 * Reading the process registry file (see proc_registry.h): every field of
 * every line checked, the lines replayed into the groups that had not ended.
 * Pure: no file, no daemon state, so the unit tests drive it directly.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "proc_registry.h"

/* A decimal number in [lo, hi], the whole of s. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s || (s[0] == '0' && s[1]))
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*ret = v;
	return 0;
}

bool procreg_name_valid(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("_.:-", *s)) ||
		    n >= PROCREG_NAME_MAX)
			return false;
	return n > 0;
}

/* Split line into at most max words separated by single spaces (in
 * place); -EINVAL for an empty word or too many. */
static int split(char *line, char **w, int max)
{
	int n = 0;

	for (;;) {
		if (n == max || *line == ' ' || *line == '\0')
			return -EINVAL;
		w[n++] = line;
		line += strcspn(line, " ");
		if (!*line)
			return n;
		*line++ = '\0';
	}
}

/* One "p ..." line (words after the tag). */
static int parse_rec(char **w, struct procreg_rec *r)
{
	uint64_t pid, pgid, lo, hi, sig, ms;

	if (parse_u64(w[0], 1, PROCREG_PID_MAX, &pid) < 0 ||
	    parse_u64(w[1], 1, PROCREG_PID_MAX, &pgid) < 0 || pgid != pid ||
	    parse_u64(w[2], 1, UINT64_MAX / 2, &lo) < 0 ||
	    parse_u64(w[3], lo, lo + PROCREG_MAX_RANGE, &hi) < 0 ||
	    parse_u64(w[4], 1, NSIG - 1, &sig) < 0 ||
	    parse_u64(w[5], 0, PROCREG_MAX_TIMEOUT_MS, &ms) < 0 || !procreg_name_valid(w[6]))
		return -EINVAL;
	r->pid = (pid_t)pid;
	r->pgid = (pid_t)pgid;
	r->start_lo = lo;
	r->start_hi = hi;
	r->stop_signal = (int)sig;
	r->stop_timeout = (double)ms / 1000;
	r->name = w[6];
	return 0;
}

static int bad(char *err, size_t errlen, unsigned line, const char *what)
{
	snprintf(err, errlen, "line %u: %s", line, what);
	return -EINVAL;
}

/* The replay: pid -> the latest "p" of that pid (open addressing). */
struct slot {
	pid_t pid;
	uint32_t idx; /* into recs, + 1; 0 = empty */
};

static struct slot *slot_find(struct slot *t, size_t mask, pid_t pid)
{
	size_t h = ((uint32_t)pid * 2654435761u) & mask;

	while (t[h].idx && t[h].pid != pid)
		h = (h + 1) & mask;
	return &t[h];
}

/* The header: magic, boot id, key, writer. */
static int parse_header(char **lines, const char *boot_id, const char *key, struct procreg_file *f,
			char *err, size_t errlen)
{
	char *w[4];
	uint64_t v, v2;

	if (strcmp(lines[0], PROCREG_MAGIC) != 0)
		return bad(err, errlen, 1, "not a process registry (header)");
	if (split(lines[1], w, 4) != 2 || strcmp(w[0], "boot") != 0 ||
	    strlen(w[1]) != PROCREG_BOOT_ID_LEN)
		return bad(err, errlen, 2, "malformed boot id");
	if (strcmp(w[1], boot_id) != 0) {
		snprintf(err, errlen, "written before the last boot");
		return -ESTALE;
	}
	if (split(lines[2], w, 4) != 2 || strcmp(w[0], "key") != 0)
		return bad(err, errlen, 3, "malformed key");
	if (strcmp(w[1], key) != 0) {
		snprintf(err, errlen, "written for another socket");
		return -ESTALE;
	}
	if (split(lines[3], w, 4) != 3 || strcmp(w[0], "daemon") != 0 ||
	    parse_u64(w[1], 1, PROCREG_PID_MAX, &v) < 0 ||
	    parse_u64(w[2], 1, UINT64_MAX / 2, &v2) < 0)
		return bad(err, errlen, 4, "malformed daemon line");
	f->writer_pid = (pid_t)v;
	f->writer_start = v2;
	return 0;
}

/* Replay the p/x lines into f->recs (the groups that did not end). */
static int replay(char **lines, size_t n_lines, struct procreg_file *f, char *err, size_t errlen)
{
	size_t cap = 16, live = 0, n = 0;
	struct slot *t;
	char *w[10];
	uint64_t pid, lo;
	int r = 0;

	while (cap < 2 * n_lines)
		cap *= 2;
	t = calloc(cap, sizeof(*t));
	f->recs = calloc(n_lines ? n_lines : 1, sizeof(*f->recs));
	if (!t || !f->recs) {
		free(t);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 4; i < n_lines && r == 0; i++) {
		unsigned ln = (unsigned)i + 1;
		int nw = split(lines[i], w, 10);
		struct slot *sl;

		if (nw == 8 && strcmp(w[0], "p") == 0) {
			if (parse_rec(w + 1, &f->recs[n]) < 0) {
				r = bad(err, errlen, ln, "malformed record");
				break;
			}
			sl = slot_find(t, cap - 1, f->recs[n].pid);
			if (sl->idx && f->recs[sl->idx - 1].pid) /* the pid was taken again */
				f->recs[sl->idx - 1].pid = 0;
			else
				live++;
			sl->pid = f->recs[n].pid;
			sl->idx = (uint32_t)++n;
			if (live > PROCREG_MAX_RECORDS)
				r = bad(err, errlen, ln, "too many records");
		} else if (nw == 3 && strcmp(w[0], "x") == 0) {
			if (parse_u64(w[1], 1, PROCREG_PID_MAX, &pid) < 0 ||
			    parse_u64(w[2], 1, UINT64_MAX / 2, &lo) < 0) {
				r = bad(err, errlen, ln, "malformed end of a group");
				break;
			}
			/* an end the replay cannot match is one of a pid taken again */
			sl = slot_find(t, cap - 1, (pid_t)pid);
			if (sl->idx && f->recs[sl->idx - 1].pid &&
			    f->recs[sl->idx - 1].start_lo == lo) {
				f->recs[sl->idx - 1].pid = 0;
				live--;
			}
		} else
			r = bad(err, errlen, ln, "unknown line");
	}
	free(t);
	if (r < 0)
		return r;
	/* keep the live ones, in order */
	f->n = 0;
	for (size_t i = 0; i < n; i++)
		if (f->recs[i].pid)
			f->recs[f->n++] = f->recs[i];
	return 0;
}

int procreg_parse(char *buf, size_t len, const char *boot_id, const char *key,
		  struct procreg_file *ret, char *err, size_t errlen)
{
	struct procreg_file f = { 0 };
	size_t n_lines = 0, i = 0;
	char **lines, *p;
	int r;

	if (memchr(buf, '\0', len))
		return bad(err, errlen, 0, "binary data");
	/* a last line cut short (a write that failed half way) is left out */
	while (len > 0 && buf[len - 1] != '\n') {
		f.torn = true;
		buf[--len] = '\0';
	}
	for (p = buf; p < buf + len; p++)
		n_lines += *p == '\n';
	if (n_lines < 4)
		return bad(err, errlen, (unsigned)n_lines, "truncated header");
	if (n_lines > PROCREG_MAX_LINES)
		return bad(err, errlen, PROCREG_MAX_LINES, "too many lines");
	if (!(lines = calloc(n_lines, sizeof(*lines)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (p = buf; i < n_lines; i++) {
		char *nl = strchr(p, '\n');
		*nl = '\0';
		lines[i] = p;
		p = nl + 1;
	}
	r = parse_header(lines, boot_id, key, &f, err, errlen);
	if (r == 0)
		r = replay(lines, n_lines, &f, err, errlen);
	free(lines);
	if (r < 0) {
		free(f.recs);
		return r;
	}
	*ret = f;
	return 0;
}
