/* Internal to libmpsup: the fast reader's request entry (json_read.c). */
#ifndef MPSUP_JSON_READ_H
#define MPSUP_JSON_READ_H

#include <stddef.h>

#include <jansson.h>

/*
 * Read a request line that is a JSON object with a string "cmd", taking
 * "id" and "cmd" out of it as they are read: *ret_params is the rest (new
 * reference), *ret_id the id (new reference, NULL when absent), cmd the
 * command name (cut to cmd_size - 1 bytes). 0, or -1 for "not here" as
 * with mpsup_json_loadb(), for anything else too (no object, no string
 * "cmd"): the caller then takes the slow path, which explains.
 */
int json_read_request(const char *line, size_t len, size_t max_depth, json_t **ret_params,
		      json_t **ret_id, char *cmd, size_t cmd_size);

#endif
