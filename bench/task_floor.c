/*
 * The floor of a task pool's round trip: the least a supervisor can do to
 * run N tasks over 2 workers holding one task at a time. It starts two
 * workers on pipes and keeps each busy with one write of a task line and
 * one read of its result per task, woken by epoll; no JSON, no event
 * library, no client. bench/task-vs-pool prints its rate next to mpsupd's.
 *
 *   bench/task_floor WORKER [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 2

static void send_task(int fd, int id)
{
	char line[64];
	int k = snprintf(line, sizeof(line), "{\"id\":%d,\"item\":%d}\n", id, id);

	if (write(fd, line, (size_t)k) != k) {
		perror("task_floor: write");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 100000, in[WORKERS], out[WORKERS];
	int ep = epoll_create1(EPOLL_CLOEXEC), sent = 0, done = 0;
	struct timespec t0, t1;
	char buf[4096];

	if (argc < 2 || n < WORKERS || ep < 0) {
		fprintf(stderr, "usage: task_floor WORKER [N]\n");
		return 2;
	}
	for (int i = 0; i < WORKERS; i++) {
		int a[2], b[2];
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i };

		if (pipe(a) < 0 || pipe(b) < 0)
			return 1;
		if (fork() == 0) {
			dup2(a[0], 0);
			dup2(b[1], 1);
			close(a[1]);
			close(b[0]);
			execl(argv[1], argv[1], (char *)NULL);
			_exit(127);
		}
		close(a[0]);
		close(b[1]);
		in[i] = a[1];
		out[i] = b[0];
		epoll_ctl(ep, EPOLL_CTL_ADD, out[i], &ev);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < WORKERS; i++)
		send_task(in[i], sent++);
	while (done < n) {
		struct epoll_event evs[WORKERS];
		int k = epoll_wait(ep, evs, WORKERS, -1);

		for (int j = 0; j < k; j++) {
			int i = (int)evs[j].data.u32;
			if (read(out[i], buf, sizeof(buf)) <= 0) {
				fprintf(stderr, "task_floor: worker %d ended\n", i);
				return 1;
			}
			done++; /* one line per read: the worker holds one task */
			if (sent < n)
				send_task(in[i], sent++);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.0f\n", n / ((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9));
	for (int i = 0; i < WORKERS; i++)
		close(in[i]);
	while (wait(NULL) > 0)
		;
	return 0;
}
