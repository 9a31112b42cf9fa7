/*
 * A worker for the readiness tests: calls libsystemd's sd_notify() as a
 * service would. Usage: notify_worker DELAY_MS [MESSAGE...]: sleeps
 * DELAY_MS, sends each MESSAGE (e.g. "STATUS=warming up", "READY=1") with
 * sd_notify, then sleeps until killed. "exit" as a message exits 0.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	while (strcmp(argv[1], "-") != 0 && access(argv[1], F_OK) < 0)
		poll(NULL, 0, 10);
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "exit") == 0)
			return 0;
		if (sd_notify(0, argv[i]) <= 0)
			fprintf(stderr, "sd_notify %s failed\n", argv[i]);
	}
	for (;;)
		pause();
}
