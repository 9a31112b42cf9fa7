/*
 * counter: a small mpsup worker in C using libmpsup's shared-state calls.
 *
 *   counter [-n COUNT] [NAME]
 *
 * Adds 1 to the shared value NAME (default "counter") COUNT times (default
 * 1000), each add atomic in the daemon; then, holding the lock NAME.lock,
 * records its own total in the dict NAME.workers under its process name
 * ($MPSUP_NAME when run by mpsupd, else its pid). Prints the value it saw
 * last. Connects to $MPSUP_SOCKET (set by mpsupd for its workers).
 *
 * Run many at once: the final value is exactly the sum of their counts.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpsup.h>

/* Report a failed call: a daemon error (rc 1) or a transport error. */
static int fail(const char *what, int rc, const struct mpsup_error *err)
{
	if (rc == 1)
		fprintf(stderr, "counter: %s: %s: %s\n", what, err->code_name, err->message);
	else
		fprintf(stderr, "counter: %s: %s\n", what, strerror(-rc));
	return 1;
}

int main(int argc, char **argv)
{
	const char *name = "counter", *me = getenv("MPSUP_NAME");
	char lock_name[80], dict_name[80], pid[32];
	struct mpsup_client *c;
	struct mpsup_error err;
	json_int_t value = 0;
	long count = 1000;
	bool acquired;
	int opt, rc;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n') {
			fprintf(stderr, "usage: counter [-n COUNT] [NAME]\n");
			return 2;
		}
		count = strtol(optarg, NULL, 10);
	}
	if (optind < argc)
		name = argv[optind];
	if (!me) {
		snprintf(pid, sizeof(pid), "pid-%d", (int)getpid());
		me = pid;
	}
	snprintf(lock_name, sizeof(lock_name), "%s.lock", name);
	snprintf(dict_name, sizeof(dict_name), "%s.workers", name);

	if ((rc = mpsup_connect(NULL, &c)) < 0) {
		fprintf(stderr, "counter: cannot connect to %s: %s\n", mpsup_socket_path(NULL),
			strerror(-rc));
		return 3;
	}
	for (long i = 0; i < count; i++)
		if ((rc = mpsup_value_add(c, name, 1, &value, &err)) != 0)
			return fail("value.add", rc, &err);

	/* A lock around a read-modify-write of the workers dict. */
	if ((rc = mpsup_lock_acquire(c, lock_name, -1, &acquired, &err)) != 0)
		return fail("lock.acquire", rc, &err);
	{
		json_t *n = json_integer(count);
		rc = mpsup_dict_set(c, dict_name, me, n, &err);
		json_decref(n);
		if (rc != 0)
			return fail("dict.set", rc, &err);
	}
	if ((rc = mpsup_lock_release(c, lock_name, &err)) != 0)
		return fail("lock.release", rc, &err);

	printf("%lld\n", (long long)value);
	mpsup_close(c);
	return 0;
}
