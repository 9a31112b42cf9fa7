/*
 * [hook:NAME] sections: which events run which command, as whom
 * (docs/hooks.md). The hooks themselves run in daemon/events/hooks.c.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_keys.h"

/* events: patterns separated by spaces, each topic.name with * and ?
 * (fnmatch), e.g. "process.fatal pool.*". */
static int check_events(const char *value, char *err, size_t errlen)
{
	size_t n = 0;

	for (const char *p = value; *p;) {
		size_t len = strcspn(p, " \t");
		if (len > 128)
			return conf_seterr(err, errlen, "a pattern is longer than 128 bytes");
		for (size_t i = 0; i < len; i++)
			if (!(p[i] == '.' || p[i] == '*' || p[i] == '?' || p[i] == '_' ||
			      (p[i] >= 'a' && p[i] <= 'z')))
				return conf_seterr(err, errlen,
						   "bad pattern '%.*s' (expected names like "
						   "process.fatal or pool.*)",
						   (int)len, p);
		n += len > 0;
		p += len;
		p += strspn(p, " \t");
	}
	if (n == 0)
		return conf_seterr(err, errlen, "no event pattern");
	if (n > HOOK_PATTERNS_MAX)
		return conf_seterr(err, errlen, "more than %d patterns", HOOK_PATTERNS_MAX);
	return 0;
}

/* command: words with shell-like quoting, an absolute program. */
static int check_hook_command(const char *value, char *err, size_t errlen)
{
	char **v;
	int r;

	if ((r = conf_split_words(value, &v, err, errlen)) < 0)
		return r;
	if (!v[0] || v[0][0] != '/') {
		conf_strv_free(v);
		return conf_seterr(err, errlen, "expected an absolute program path and arguments");
	}
	conf_strv_free(v);
	return 0;
}

#define HOOK(f) CONF_FIELD(struct hook_conf, f)

static const struct conf_key hook_keys[] = {
	{ "events", CONF_STRING, HOOK(events), .check = check_events },
	{ "command", CONF_STRING, HOOK(command), .check = check_hook_command },
	{ "user", CONF_STRING, HOOK(user), .check = conf_check_user },
	{ "timeout", CONF_DURATION, HOOK(timeout), .def = "30" },
	{ "max_queued", CONF_UINT, HOOK(max_queued), .min = 0, .max = 10000, .def = "64" },
};

static const struct conf_section hook_section = { hook_keys,
						  sizeof(hook_keys) / sizeof(hook_keys[0]),
						  "unknown key (events, command, user, timeout, "
						  "max_queued)" };

struct hook_conf *hook_conf_new(const char *name)
{
	char err[CONF_ERR_MAX];
	struct hook_conf *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if (!(h->name = strdup(name)) || conf_keys_defaults(&hook_section, h, err, sizeof(err)) < 0)
		return hook_conf_free(h);
	return h;
}

int hook_conf_set(struct hook_conf *h, const char *key, const char *value, char *err, size_t errlen)
{
	return conf_key_set(&hook_section, h, NULL, key, value, err, errlen);
}

int hook_conf_check(const struct hook_conf *h, char *err, size_t errlen)
{
	if (!h->command)
		return conf_seterr(err, errlen, "hook %s: command is missing", h->name);
	if (!h->events)
		return conf_seterr(err, errlen, "hook %s: events is missing", h->name);
	if (h->timeout <= 0)
		return conf_seterr(err, errlen, "hook %s: timeout must be above 0", h->name);
	return 0;
}

struct hook_conf *hook_conf_free(struct hook_conf *h)
{
	if (!h)
		return NULL;
	conf_keys_release(&hook_section, h);
	free(h->name);
	free(h->file);
	free(h);
	return NULL;
}
