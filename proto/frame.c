/*
 * Line framing: an incremental splitter of '\n'-terminated lines with a
 * maximum line size, and a depth scanner that refuses deep JSON cheaply.
 *
 * Buffer layout: [consumed | pending (start..end) | free (end..alloc)].
 * Lines are popped in place; the consumed prefix is reclaimed lazily, only
 * when the free tail is too small. 'scan' remembers how far the pending data
 * has already been searched for '\n', so no byte is scanned twice.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "mpsup.h"

#define FRAMER_MIN_ALLOC 4096
#define FRAMER_DEFAULT_READ 16384

struct mpsup_framer {
	char *buf;
	size_t alloc;
	size_t start; /* first pending byte */
	size_t end;   /* one past the last pending byte */
	size_t scan;  /* bytes in start..scan hold no '\n' */
	size_t max_line;
	int error; /* sticky -EMSGSIZE */
};

/* Clamp a user limit: 0 means the default, and keep arithmetic in range. */
static size_t framer_limit(size_t max_line)
{
	if (max_line == 0)
		return MPSUP_DEFAULT_MAX_LINE;
	if (max_line > SIZE_MAX / 4)
		return SIZE_MAX / 4;
	return max_line;
}

struct mpsup_framer *mpsup_framer_new(size_t max_line)
{
	struct mpsup_framer *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->max_line = framer_limit(max_line);
	return f;
}

struct mpsup_framer *mpsup_framer_free(struct mpsup_framer *f)
{
	if (f) {
		free(f->buf);
		free(f);
	}
	return NULL;
}

void mpsup_framer_set_max_line(struct mpsup_framer *f, size_t max_line)
{
	if (f)
		f->max_line = framer_limit(max_line);
}

/* Make room for n more bytes after 'end': compact or grow, whichever is cheap. */
static int framer_reserve(struct mpsup_framer *f, size_t n)
{
	size_t used, want, nalloc;
	char *nbuf;

	if (f->alloc - f->end >= n)
		return 0;

	if (f->start == f->end) {
		/* Nothing pending: rewinding is free. */
		f->start = f->end = f->scan = 0;
		if (f->alloc >= n)
			return 0;
	}

	used = f->end - f->start;
	if (n > SIZE_MAX / 2 - used)
		return -ENOMEM;
	want = used + n;

	/* Compact only when it frees at least half the buffer, so the bytes
	 * moved are paid for by the bytes consumed (amortised O(1)). */
	if (want <= f->alloc && used <= f->alloc / 2) {
		memmove(f->buf, f->buf + f->start, used);
		f->scan -= f->start;
		f->end = used;
		f->start = 0;
		return 0;
	}

	nalloc = f->alloc < FRAMER_MIN_ALLOC ? FRAMER_MIN_ALLOC : f->alloc;
	while (nalloc < want)
		nalloc *= 2; /* want <= SIZE_MAX / 2: cannot overflow */
	nbuf = malloc(nalloc);
	if (!nbuf)
		return -ENOMEM;
	if (used)
		memcpy(nbuf, f->buf + f->start, used);
	free(f->buf);
	f->buf = nbuf;
	f->alloc = nalloc;
	f->scan -= f->start;
	f->end = used;
	f->start = 0;
	return 0;
}

int mpsup_framer_feed(struct mpsup_framer *f, const void *data, size_t len)
{
	int r;

	if (!f || (!data && len))
		return -EINVAL;
	if (len == 0)
		return 0;
	r = framer_reserve(f, len);
	if (r < 0)
		return r;
	memcpy(f->buf + f->end, data, len);
	f->end += len;
	return 0;
}

ssize_t mpsup_framer_space(struct mpsup_framer *f, size_t min, char **ret_ptr)
{
	size_t room;
	int r;

	if (!f || !ret_ptr)
		return -EINVAL;
	if (min == 0)
		min = FRAMER_DEFAULT_READ;
	r = framer_reserve(f, min);
	if (r < 0)
		return r;
	room = f->alloc - f->end;
	if (room > SSIZE_MAX)
		room = SSIZE_MAX;
	*ret_ptr = f->buf + f->end;
	return (ssize_t)room;
}

void mpsup_framer_commit(struct mpsup_framer *f, size_t n)
{
	if (!f)
		return;
	/* Never trust a count beyond the room handed out. */
	if (n > f->alloc - f->end)
		n = f->alloc - f->end;
	f->end += n;
}

int mpsup_framer_pop(struct mpsup_framer *f, char **ret_line, size_t *ret_len)
{
	char *nl, *line;
	size_t len;

	if (!f)
		return -EINVAL;
	if (f->error)
		return f->error;

	nl = f->end > f->scan ? memchr(f->buf + f->scan, '\n', f->end - f->scan) : NULL;
	if (!nl) {
		f->scan = f->end;
		if (f->end - f->start > f->max_line)
			return (f->error = -EMSGSIZE);
		if (f->start == f->end)
			f->start = f->end = f->scan = 0;
		return 0;
	}

	line = f->buf + f->start;
	len = (size_t)(nl - line);
	if (len > f->max_line)
		return (f->error = -EMSGSIZE);

	*nl = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	f->start = f->scan = (size_t)(nl - f->buf) + 1;

	if (ret_line)
		*ret_line = line;
	if (ret_len)
		*ret_len = len;
	return 1;
}

size_t mpsup_framer_pending(const struct mpsup_framer *f)
{
	return f ? f->end - f->start : 0;
}

size_t mpsup_json_depth(const char *text, size_t len)
{
	size_t depth = 0, max = 0;
	bool in_string = false;

	if (!text)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];

		if (in_string) {
			if (ch == '\\')
				i++; /* the escaped char cannot end the string */
			else if (ch == '"')
				in_string = false;
			continue;
		}
		switch (ch) {
		case '"': in_string = true; break;
		case '[':
		case '{':
			if (++depth > max)
				max = depth;
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		default: break;
		}
	}
	return max;
}
