/*
 * Worker command lines: split with shell-like quoting and expand the
 * %(index)d / %(name)s / %(pool)s placeholders (supervisord's spelling).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argv.h"
#include "conf.h"

struct strbuf {
	char *s;
	size_t len, cap;
};

static int sb_add(struct strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *ns = realloc(b->s, cap);
		if (!ns)
			return -ENOMEM;
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

char *argv_expand_word(const char *word, const char *pool, const char *name, unsigned index,
		       char *err, size_t errlen)
{
	struct strbuf b = { 0 };
	const char *p = word;
	char num[16];
	int r = 0;

	if (sb_add(&b, "", 0) < 0)
		goto nomem;
	while (*p && r == 0) {
		const char *pct = strchr(p, '%');
		if (!pct) {
			r = sb_add(&b, p, strlen(p));
			break;
		}
		if ((r = sb_add(&b, p, (size_t)(pct - p))) < 0)
			break;
		if (pct[1] == '%') {
			r = sb_add(&b, "%", 1);
			p = pct + 2;
		} else if (strncmp(pct, "%(index)d", 9) == 0) {
			snprintf(num, sizeof(num), "%u", index);
			r = sb_add(&b, num, strlen(num));
			p = pct + 9;
		} else if (strncmp(pct, "%(name)s", 8) == 0) {
			r = sb_add(&b, name, strlen(name));
			p = pct + 8;
		} else if (strncmp(pct, "%(pool)s", 8) == 0) {
			r = sb_add(&b, pool, strlen(pool));
			p = pct + 8;
		} else {
			snprintf(err, errlen,
				 "unknown placeholder in '%s' (%%(index)d, %%(name)s, %%(pool)s, "
				 "%%%%)",
				 word);
			free(b.s);
			return NULL;
		}
	}
	if (r < 0)
		goto nomem;
	return b.s;
nomem:
	free(b.s);
	snprintf(err, errlen, "out of memory");
	return NULL;
}

int argv_build(const char *command, const char *pool, const char *name, unsigned index, char ***ret,
	       char *err, size_t errlen)
{
	char **v;
	int r;

	if ((r = conf_split_words(command, &v, err, errlen)) < 0)
		return r;
	if (!v[0]) {
		conf_strv_free(v);
		snprintf(err, errlen, "empty command");
		return -EINVAL;
	}
	for (char **w = v; *w; w++) {
		char *x;
		if (!strchr(*w, '%'))
			continue;
		if (!(x = argv_expand_word(*w, pool, name, index, err, errlen))) {
			conf_strv_free(v);
			return strcmp(err, "out of memory") == 0 ? -ENOMEM : -EINVAL;
		}
		free(*w);
		*w = x;
	}
	*ret = v;
	return 0;
}
