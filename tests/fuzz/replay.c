/*
 * The plain (non-libFuzzer) driver of a harness: run every file named on
 * the command line, or every regular file of the directories named there,
 * through LLVMFuzzerTestOneInput. With no arguments, replays the seed corpus
 * FUZZ_CORPUS_DIR given at build time, so `make check` needs no wrapper.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef FUZZ_CORPUS_DIR
#error "FUZZ_CORPUS_DIR must name the seed corpus directory"
#endif

/* Read a whole file; NULL with errno set on failure. */
static uint8_t *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rbe");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 65536) {
			uint8_t *nb = realloc(buf, cap + 65536);
			if (!nb) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	*ret_len = len;
	return buf;
}

static int run_file(const char *path)
{
	size_t len;
	uint8_t *data = read_file(path, &len);

	if (!data) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	return 0;
}

static int skip_dots(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Run every regular file of dir in name order; returns the count or -1. */
static int run_dir(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, skip_dots, alphasort), count = 0, bad = 0;

	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				bad = 1;
			else
				count++;
		}
		free(names[i]);
	}
	free(names);
	return bad ? -1 : count;
}

int main(int argc, char **argv)
{
	const char *def[] = { FUZZ_CORPUS_DIR };
	const char *const *args = argc > 1 ? (const char *const *)argv + 1 : def;
	int nargs = argc > 1 ? argc - 1 : 1, total = 0;

	for (int i = 0; i < nargs; i++) {
		struct stat st;
		int n;

		if (stat(args[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", args[i], strerror(errno));
			return 1;
		}
		n = S_ISDIR(st.st_mode) ? run_dir(args[i]) : run_file(args[i]) < 0 ? -1 : 1;
		if (n < 0)
			return 1;
		total += n;
	}
	if (total == 0) {
		fprintf(stderr, "replay: no input found\n");
		return 1;
	}
	printf("replay: %d inputs, no failure\n", total);
	return 0;
}
