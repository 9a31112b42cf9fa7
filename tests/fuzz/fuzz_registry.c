/*
 * Fuzz target: the process registry's reader (procreg_parse), which runs
 * as root at start-up on a file a crashed daemon left: it must refuse
 * anything malformed with a reason, never crash, and what it accepts must
 * hold only records the stopping of leftovers can trust (a group led by
 * its pid, a narrow start range, a real signal, a name we write).
 *
 * Input: the file's bytes. The boot id and key are fixed; the seeds use
 * them.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proc_registry.h"

#define BOOT "bb619cc7-5dfc-4f60-a1c9-829305a98932"
#define KEY "00000000000000aa"

static void check_rec(const struct procreg_rec *r)
{
	FUZZ_CHECK(r->pid > 0 && r->pgid == r->pid, "record of pid %d, group %d", (int)r->pid,
		   (int)r->pgid);
	FUZZ_CHECK(r->start_lo > 0 && r->start_hi >= r->start_lo &&
			   r->start_hi - r->start_lo <= PROCREG_MAX_RANGE,
		   "start range %llu..%llu", (unsigned long long)r->start_lo,
		   (unsigned long long)r->start_hi);
	FUZZ_CHECK(r->stop_signal > 0 && r->stop_signal < NSIG, "signal %d", r->stop_signal);
	FUZZ_CHECK(r->stop_timeout >= 0 && r->stop_timeout <= PROCREG_MAX_TIMEOUT_MS / 1000.0,
		   "stop_timeout %g", r->stop_timeout);
	FUZZ_CHECK(r->name && r->name[0] && strlen(r->name) <= PROCREG_NAME_MAX &&
			   strspn(r->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "0123456789_.:-") == strlen(r->name),
		   "name '%s'", r->name ? r->name : "(null)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct procreg_file f;
	char err[256] = "", *buf;
	int r;

	if (size > PROCREG_MAX_BYTES)
		return 0; /* the reader never gets more */
	buf = malloc(size + 1);
	FUZZ_CHECK(buf, "out of memory");
	memcpy(buf, data, size);
	buf[size] = '\0';
	memset(&f, 0, sizeof(f));
	r = procreg_parse(buf, size, BOOT, KEY, &f, err, sizeof(err));
	if (r == 0) {
		FUZZ_CHECK(f.n <= PROCREG_MAX_RECORDS, "%zu records", f.n);
		FUZZ_CHECK(f.writer_pid > 0, "writer pid %d", (int)f.writer_pid);
		for (size_t i = 0; i < f.n; i++)
			check_rec(&f.recs[i]);
		/* the live records are distinct pids (a pid taken again replaces) */
		for (size_t i = 0; i + 1 < f.n && f.n < 64; i++)
			for (size_t j = i + 1; j < f.n; j++)
				FUZZ_CHECK(f.recs[i].pid != f.recs[j].pid, "pid %d twice",
					   (int)f.recs[i].pid);
		free(f.recs);
	} else {
		FUZZ_CHECK(r == -EINVAL || r == -ESTALE || r == -ENOMEM, "error %d", r);
		FUZZ_CHECK(err[0], "a refused file without a message");
	}
	free(buf);
	return 0;
}
