/*
 * proc_run_loop: the two loops of bench/proc-run, timed alike.
 *   proc_run_loop spawn N          posix_spawn /bin/true + waitpid, N times
 *   proc_run_loop mpsup SOCKET N   proc.run /bin/true + proc.join, N times
 * Prints the seconds the loop took.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "mpsup.h"

extern char **environ;

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* posix_spawn + waitpid of /bin/true, n times (its own session, as
 * mpsupd's children). */
static int spawn_loop(int n)
{
	static char a0[] = "/bin/true";
	char *const args[] = { a0, NULL };
	posix_spawnattr_t attr;
	pid_t pid;
	int st;

	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
	for (int i = 0; i < n; i++) {
		if (posix_spawn(&pid, a0, NULL, &attr, args, environ) != 0) {
			perror("posix_spawn");
			return 1;
		}
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "waitpid: unexpected status\n");
			return 1;
		}
	}
	posix_spawnattr_destroy(&attr);
	return 0;
}

/* proc.run + proc.join of /bin/true, n times, one round trip each. */
static int mpsup_loop(const char *path, int n)
{
	struct mpsup_client *c;
	struct mpsup_error err;
	json_t *run = json_pack("{s:[s]}", "argv", "/bin/true"), *res, *join;
	int r;

	if ((r = mpsup_connect(path, &c)) < 0) {
		fprintf(stderr, "connect %s: %s\n", path, strerror(-r));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		if (mpsup_call(c, "proc.run", run, &res, &err) != 0) {
			fprintf(stderr, "proc.run: %s\n", err.message);
			return 1;
		}
		join = json_pack("{s:O}", "target", json_object_get(res, "name"));
		json_decref(res);
		r = mpsup_call(c, "proc.join", join, &res, &err);
		json_decref(join);
		if (r != 0 || json_integer_value(json_object_get(res, "exitcode")) != 0) {
			fprintf(stderr, "proc.join: %s\n", r ? err.message : "exit status not 0");
			return 1;
		}
		json_decref(res);
	}
	json_decref(run);
	mpsup_close(c);
	return 0;
}

int main(int argc, char **argv)
{
	double t0 = now();
	int r;

	if (argc == 3 && strcmp(argv[1], "spawn") == 0)
		r = spawn_loop(atoi(argv[2]));
	else if (argc == 4 && strcmp(argv[1], "mpsup") == 0)
		r = mpsup_loop(argv[2], atoi(argv[3]));
	else {
		fprintf(stderr, "usage: proc_run_loop spawn N | mpsup SOCKET N\n");
		return 2;
	}
	if (r == 0)
		printf("%.6f\n", now() - t0);
	return r;
}
