/* The stable error codes of the protocol and their wire names (docs/protocol.md, mpsup-protocol(7)). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mpsup.h"

/* The one table: index = enum mpsup_err, value = wire name. */
static const char *const err_names[MPSUP_E__MAX] = {
	[MPSUP_OK] = "ok",
	[MPSUP_E_BAD_REQUEST] = "bad_request",
	[MPSUP_E_UNKNOWN_COMMAND] = "unknown_command",
	[MPSUP_E_NOT_FOUND] = "not_found",
	[MPSUP_E_EXISTS] = "exists",
	[MPSUP_E_WRONG_TYPE] = "wrong_type",
	[MPSUP_E_OUT_OF_RANGE] = "out_of_range",
	[MPSUP_E_TIMEOUT] = "timeout",
	[MPSUP_E_EMPTY] = "empty",
	[MPSUP_E_FULL] = "full",
	[MPSUP_E_PERMISSION_DENIED] = "permission_denied",
	[MPSUP_E_TOO_LARGE] = "too_large",
	[MPSUP_E_LIMIT] = "limit",
	[MPSUP_E_CONFLICT] = "conflict",
	[MPSUP_E_BROKEN] = "broken",
	[MPSUP_E_SPAWN_FAILED] = "spawn_failed",
	[MPSUP_E_SHUTTING_DOWN] = "shutting_down",
	[MPSUP_E_INTERNAL] = "internal",
	[MPSUP_E_UNAVAILABLE] = "unavailable",
};

const char *mpsup_err_name(enum mpsup_err code)
{
	if ((unsigned)code >= MPSUP_E__MAX)
		return NULL;
	return err_names[code];
}

int mpsup_err_from_name(const char *name)
{
	if (!name)
		return -EINVAL;
	for (int i = 0; i < MPSUP_E__MAX; i++)
		if (err_names[i] && strcmp(err_names[i], name) == 0)
			return i;
	return -EINVAL;
}

/* Fill code, code_name and message; an out-of-range code becomes internal. */
void mpsup_error_set(struct mpsup_error *err, enum mpsup_err code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	if ((unsigned)code >= MPSUP_E__MAX)
		code = MPSUP_E_INTERNAL;
	err->code = code;
	snprintf(err->code_name, sizeof(err->code_name), "%s", err_names[code]);
	err->message[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
}
