/*
 * libFuzzer harnesses. Each harness defines LLVMFuzzerTestOneInput; with
 * --enable-fuzzer it links against libFuzzer, otherwise against replay.c,
 * whose main() runs every file of a corpus directory through it (make check).
 */
#ifndef MPSUP_FUZZ_H
#define MPSUP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fail loudly: print why and abort, so libFuzzer (or make check) reports
 * the input. */
#define FUZZ_CHECK(cond, ...)                                                                    \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                            \
			fputc('\n', stderr);                                                     \
			abort();                                                                 \
		}                                                                                \
	} while (0)

#endif
