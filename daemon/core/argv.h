/*
 * Worker command lines: a pool's `command` split into words with shell-like
 * quoting (conf_split_words; no shell is ever involved) and the
 * %(index)d, %(name)s and %(pool)s placeholders expanded in every word.
 */
#ifndef MPSUPD_ARGV_H
#define MPSUPD_ARGV_H

#include <stddef.h>

/* Expand placeholders in one word; "%%" is a literal '%'. Returns a new
 * string or NULL with a message in err (unknown placeholder, no memory). */
char *argv_expand_word(const char *word, const char *pool, const char *name, unsigned index,
		       char *err, size_t errlen);
/*
 * Split command and expand placeholders. *ret is a NULL-terminated vector
 * (free with conf_strv_free). Returns 0, -EINVAL with a message in err, or
 * -ENOMEM.
 */
int argv_build(const char *command, const char *pool, const char *name, unsigned index, char ***ret,
	       char *err, size_t errlen);

#endif
