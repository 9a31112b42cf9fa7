/*
 * spawn_loop: the peer of mpsupd's spawn benchmark. Starts N copies of
 * "sleep 1000" with posix_spawn (each in its own session, like mpsupd's
 * workers), prints the time it took, then kills and reaps them.
 *   spawn_loop N
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	static char a0[] = "sleep", a1[] = "1000";
	char *const args[] = { a0, a1, NULL };
	posix_spawnattr_t attr;
	struct timespec t0, t1;
	pid_t *pids = calloc((size_t)n, sizeof(*pids));

	if (!pids || n < 1)
		return 2;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++)
		if (posix_spawnp(&pids[i], "sleep", NULL, &attr, args, environ) != 0) {
			perror("posix_spawn");
			return 1;
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("posix_spawn loop: %d processes in %.3f s\n", n,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	for (int i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < n; i++)
		waitpid(pids[i], NULL, 0);
	free(pids);
	return 0;
}
