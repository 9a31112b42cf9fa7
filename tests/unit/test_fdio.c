/* Unit tests of the descriptor helpers (daemon/core/fdio.c): a read that
 * says "nothing now", "end" and "bytes" apart, a write of all of it, and
 * EINTR retried when a signal interrupts a blocking read. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "fdio.h"
#include "unit.h"

START_TEST(test_read_results)
{
	int p[2];
	char buf[16];

	ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	ck_assert_int_eq(fd_read(p[0], buf, sizeof(buf)), -EAGAIN);
	ck_assert_int_eq(fd_write_all(p[1], "hello", 5), 0);
	ck_assert_int_eq(fd_read(p[0], buf, sizeof(buf)), 5);
	ck_assert_mem_eq(buf, "hello", 5);
	close(p[1]);
	ck_assert_int_eq(fd_read(p[0], buf, sizeof(buf)), 0);
	close(p[0]);
	ck_assert_int_eq(fd_read(p[0], buf, sizeof(buf)), -EBADF);
}
END_TEST

START_TEST(test_write_errors)
{
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fd_write_all(p[1], "x", 1), -EPIPE);
	ck_assert_int_eq(fd_write_all(p[1], "", 0), 0);
	close(p[1]);
}
END_TEST

static int alarm_fd = -1;
static volatile sig_atomic_t alarms;

/* The only writer: the data arrives while the read is interrupted. */
static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
	(void)!write(alarm_fd, "ok", 2);
}

/* A signal without SA_RESTART interrupts the blocking read (read() fails
 * with EINTR); fd_read reads again and returns what the handler wrote. */
START_TEST(test_read_retries_eintr)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { .it_value = { 0, 100000 } };
	int p[2];
	char buf[8];

	ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	alarm_fd = p[1];
	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	ck_assert_int_eq(fd_read(p[0], buf, sizeof(buf)), 2);
	ck_assert_mem_eq(buf, "ok", 2);
	ck_assert_int_eq(alarms, 1);
	close(p[0]);
	close(p[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fdio");
	TCase *tc = tcase_create("fdio");

	tcase_add_test(tc, test_read_results);
	tcase_add_test(tc, test_write_errors);
	tcase_add_test(tc, test_read_retries_eintr);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
