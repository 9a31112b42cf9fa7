/*
 * A task worker for a `mode = task` pool of mpsupd: reads one JSON line per
 * task, {"id": N, "item": X}, from stdin and writes {"id": N, "result": 2X}
 * (or {"id": N, "error": "..."} when X is not a number) to stdout.
 *
 *   [pool:double]
 *   mode = task
 *   command = /path/to/double_worker
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	while ((n = getline(&line, &cap, stdin)) > 0) {
		json_t *task = json_loadb(line, (size_t)n, 0, NULL), *item, *reply;
		json_int_t id;
		char *out;

		if (!task || json_unpack(task, "{s:I, s:o}", "id", &id, "item", &item) < 0) {
			fprintf(stderr, "double_worker: bad task line\n");
			return 1;
		}
		if (json_is_integer(item))
			reply = json_pack("{s:I, s:I}", "id", id, "result",
					  json_integer_value(item) * 2);
		else if (json_is_number(item))
			reply = json_pack("{s:I, s:f}", "id", id, "result",
					  json_number_value(item) * 2);
		else
			reply = json_pack("{s:I, s:s}", "id", id, "error", "item is not a number");
		out = json_dumps(reply, JSON_COMPACT);
		if (!out || printf("%s\n", out) < 0 || fflush(stdout) != 0)
			return 1;
		free(out);
		json_decref(reply);
		json_decref(task);
	}
	free(line);
	return 0;
}
