/* Unit tests of process supervision: the state machine table, restart
 * policy, backoff, exit codes (daemon/proc/proc_fsm.c) and command lines
 * (daemon/core/argv.c). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "argv.h"
#include "conf.h"
#include "daemon.h"
#include "jsonw.h"
#include "proc_fsm.h"
#include "proc_registry.h"
#include "unit.h"

static const struct proc_fsm_input NONE = { false, false, false, false };

static int next(enum proc_state s, enum proc_event ev, bool restart, bool retry, bool stable)
{
	struct proc_fsm_input in = { restart, retry, stable, false };
	return proc_fsm_next(s, ev, &in);
}

START_TEST(test_fsm_start_paths)
{
	/* start from every resting state */
	ck_assert_int_eq(proc_fsm_next(PS_STOPPED, PE_START, &NONE), PS_STARTING);
	ck_assert_int_eq(proc_fsm_next(PS_EXITED, PE_START, &NONE), PS_STARTING);
	ck_assert_int_eq(proc_fsm_next(PS_FATAL, PE_START, &NONE), PS_STARTING);
	ck_assert_int_eq(proc_fsm_next(PS_BACKOFF, PE_START, &NONE), PS_STARTING);
	/* already up: ignored */
	ck_assert_int_eq(proc_fsm_next(PS_STARTING, PE_START, &NONE), -1);
	ck_assert_int_eq(proc_fsm_next(PS_RUNNING, PE_START, &NONE), -1);
	ck_assert_int_eq(proc_fsm_next(PS_STOPPING, PE_START, &NONE), -1);
	ck_assert_int_eq(proc_fsm_next(PS_STARTING, PE_START_SECS, &NONE), PS_RUNNING);
	ck_assert_int_eq(proc_fsm_next(PS_BACKOFF, PE_BACKOFF_ELAPSED, &NONE), PS_STARTING);
}
END_TEST

START_TEST(test_fsm_failed_starts)
{
	/* spawn failure: retry while the budget lasts, fatal after; never -> fatal */
	ck_assert_int_eq(next(PS_STARTING, PE_SPAWN_FAILED, true, true, false), PS_BACKOFF);
	ck_assert_int_eq(next(PS_STARTING, PE_SPAWN_FAILED, true, false, false), PS_FATAL);
	ck_assert_int_eq(next(PS_STARTING, PE_SPAWN_FAILED, false, true, false), PS_FATAL);
	{
		/* no descriptor or process to spawn with: backoff, never fatal */
		struct proc_fsm_input t = { false, false, false, true };
		ck_assert_int_eq(proc_fsm_next(PS_STARTING, PE_SPAWN_FAILED, &t), PS_BACKOFF);
	}
	/* died before start_secs */
	ck_assert_int_eq(next(PS_STARTING, PE_DIED, true, true, false), PS_BACKOFF);
	ck_assert_int_eq(next(PS_STARTING, PE_DIED, true, false, false), PS_FATAL);
	ck_assert_int_eq(next(PS_STARTING, PE_DIED, false, true, false), PS_EXITED);
}
END_TEST

START_TEST(test_fsm_deaths_after_start)
{
	ck_assert_int_eq(next(PS_RUNNING, PE_DIED, false, true, true), PS_EXITED);
	ck_assert_int_eq(next(PS_RUNNING, PE_DIED, true, true, true), PS_STARTING);
	ck_assert_int_eq(next(PS_RUNNING, PE_DIED, true, false, true), PS_STARTING);
	ck_assert_int_eq(next(PS_RUNNING, PE_DIED, true, true, false), PS_BACKOFF);
	ck_assert_int_eq(next(PS_RUNNING, PE_DIED, true, false, false), PS_FATAL);
}
END_TEST

START_TEST(test_fsm_stopping)
{
	ck_assert_int_eq(proc_fsm_next(PS_RUNNING, PE_STOP, &NONE), PS_STOPPING);
	ck_assert_int_eq(proc_fsm_next(PS_STARTING, PE_STOP, &NONE), PS_STOPPING);
	ck_assert_int_eq(proc_fsm_next(PS_BACKOFF, PE_STOP, &NONE), PS_STOPPED);
	ck_assert_int_eq(proc_fsm_next(PS_STOPPED, PE_STOP, &NONE), -1);
	ck_assert_int_eq(proc_fsm_next(PS_EXITED, PE_STOP, &NONE), -1);
	ck_assert_int_eq(proc_fsm_next(PS_STOPPING, PE_STOP_TIMEOUT, &NONE), PS_STOPPING);
	/* a stopping process is never restarted, whatever the policy says */
	ck_assert_int_eq(next(PS_STOPPING, PE_DIED, true, true, true), PS_STOPPED);
	ck_assert_int_eq(next(PS_STOPPING, PE_DIED, true, true, false), PS_STOPPED);
}
END_TEST

START_TEST(test_fsm_table_total)
{
	/* every cell is a state or "ignored"; nothing leaves a final state but start */
	for (int s = 0; s < PS__MAX; s++)
		for (int e = 0; e < PE__MAX; e++)
			for (int bits = 0; bits < 8; bits++) {
				int to = next((enum proc_state)s, (enum proc_event)e, bits & 1,
					      bits & 2, bits & 4);
				ck_assert(to >= -1 && to < PS__MAX);
				if (proc_state_final((enum proc_state)s) && e != PE_START)
					ck_assert_int_eq(to, -1);
			}
	ck_assert_int_eq(proc_fsm_next(PS__MAX, PE_START, &NONE), -1);
	ck_assert_int_eq(proc_fsm_next(PS_STOPPED, PE__MAX, &NONE), -1);
	ck_assert_str_eq(proc_state_name(PS_BACKOFF), "backoff");
	ck_assert_str_eq(proc_event_name(PE_STOP_TIMEOUT), "stop_timeout");
	ck_assert(proc_state_alive(PS_STOPPING));
	ck_assert(!proc_state_alive(PS_BACKOFF));
	ck_assert(proc_state_final(PS_FATAL));
	ck_assert(!proc_state_final(PS_BACKOFF));
}
END_TEST

START_TEST(test_exitcode_and_policy)
{
	uint8_t codes[32] = { 0 };

	ck_assert_int_eq(proc_exitcode(0), 0);
	ck_assert_int_eq(proc_exitcode(3 << 8), 3);
	ck_assert_int_eq(proc_exitcode(SIGTERM), -15);
	ck_assert_int_eq(proc_exitcode(SIGKILL | 0x80), -9);

	codes[0] = 1 | (1 << 2); /* 0 and 2 expected */
	ck_assert(proc_policy_restarts(RESTART_ALWAYS, codes, 0));
	ck_assert(!proc_policy_restarts(RESTART_NEVER, codes, 1));
	ck_assert(!proc_policy_restarts(RESTART_ON_FAILURE, codes, 0));
	ck_assert(!proc_policy_restarts(RESTART_ON_FAILURE, codes, 2));
	ck_assert(proc_policy_restarts(RESTART_ON_FAILURE, codes, 1));
	ck_assert(proc_policy_restarts(RESTART_ON_FAILURE, codes, -9));
}
END_TEST

START_TEST(test_backoff)
{
	/* no jitter factor at the top: 0.5, 1, 2, 4 ... capped */
	ck_assert_double_eq_tol(proc_backoff_delay(1, 30, 0.999999), 0.5, 1e-4);
	ck_assert_double_eq_tol(proc_backoff_delay(2, 30, 0.999999), 1.0, 1e-4);
	ck_assert_double_eq_tol(proc_backoff_delay(4, 30, 0.999999), 4.0, 1e-4);
	ck_assert_double_eq_tol(proc_backoff_delay(20, 30, 0.999999), 30.0, 1e-3);
	ck_assert_double_eq_tol(proc_backoff_delay(1000000, 30, 0.999999), 30.0, 1e-3);
	/* jitter keeps it within [d/2, d] */
	ck_assert_double_eq_tol(proc_backoff_delay(3, 30, 0), 1.0, 1e-9);
	for (int i = 0; i < 100; i++) {
		double d = proc_backoff_delay(5, 30, i / 100.0);
		ck_assert(d >= 4.0 && d <= 8.0);
	}
	ck_assert_double_eq(proc_backoff_delay(0, 30, 0.5), 0);
	ck_assert_double_eq(proc_backoff_delay(3, 0, 0.5), 0);
	ck_assert(proc_backoff_delay(3, 0.25, 1) <= 0.25);
}
END_TEST

static char **build(const char *cmd, const char *pool, const char *name, unsigned idx)
{
	char err[256];
	char **v = NULL;
	int r = argv_build(cmd, pool, name, idx, &v, err, sizeof(err));

	ck_assert_msg(r == 0, "argv_build(%s): %s", cmd, err);
	return v;
}

START_TEST(test_argv_split_and_expand)
{
	char **v = build("/usr/bin/python3 -m app.worker --id %(index)d", "web", "web:3", 3);

	ck_assert_str_eq(v[0], "/usr/bin/python3");
	ck_assert_str_eq(v[3], "--id");
	ck_assert_str_eq(v[4], "3");
	ck_assert_ptr_null(v[5]);
	conf_strv_free(v);

	v = build("sh -c 'echo %(name)s in \"%(pool)s\"; exit 0' 100%% x%(index)dy", "p", "p:0", 0);
	ck_assert_str_eq(v[0], "sh");
	ck_assert_str_eq(v[2], "echo p:0 in \"p\"; exit 0");
	ck_assert_str_eq(v[3], "100%");
	ck_assert_str_eq(v[4], "x0y");
	ck_assert_ptr_null(v[5]);
	conf_strv_free(v);

	/* quoting keeps spaces; placeholders never split words */
	v = build("printf \"%%s\\n\" \"two words\" a\\ b %(name)s", "a b", "n m", 12);
	ck_assert_str_eq(v[1], "%s\\n");
	ck_assert_str_eq(v[2], "two words");
	ck_assert_str_eq(v[3], "a b");
	ck_assert_str_eq(v[4], "n m");
	conf_strv_free(v);
}
END_TEST

START_TEST(test_argv_errors)
{
	char err[256];
	char **v = NULL;

	ck_assert_int_eq(argv_build("", "p", "p:0", 0, &v, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(argv_build("   ", "p", "p:0", 0, &v, err, sizeof(err)), -EINVAL);
	ck_assert_int_lt(argv_build("echo 'open", "p", "p:0", 0, &v, err, sizeof(err)), 0);
	ck_assert_int_eq(argv_build("echo %(bogus)s", "p", "p:0", 0, &v, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "placeholder"));
	ck_assert_int_eq(argv_build("echo 50%", "p", "p:0", 0, &v, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(v);
}
END_TEST

/* ---- jsonw: the text writer of process records ---------------------------- */

/* w's text, parsed, equals the JSON text want (and is valid JSON). */
static void check_jsonw(struct jsonw *w, const char *want)
{
	json_t *got, *exp;
	json_error_t e;

	ck_assert(jsonw_ok(w));
	got = json_loadb(w->buf, w->len, JSON_DECODE_ANY, &e);
	ck_assert_msg(got, "not JSON: %.*s (%s)", (int)w->len, w->buf, e.text);
	exp = json_loads(want, JSON_DECODE_ANY, NULL);
	ck_assert_ptr_nonnull(exp);
	ck_assert_msg(json_equal(got, exp), "%.*s != %s", (int)w->len, w->buf, want);
	json_decref(got);
	json_decref(exp);
	jsonw_free(w);
}

START_TEST(test_jsonw)
{
	struct jsonw w;
	char buf[32];

	jsonw_init(&w);
	jsonw_open(&w, '[');
	jsonw_open(&w, '{');
	jsonw_key(&w, "s");
	jsonw_str(&w, "plain");
	jsonw_key(&w, "e");
	jsonw_str(&w, "q\"uote\nnew \xc3\xa9");
	jsonw_key(&w, "n");
	jsonw_str(&w, NULL);
	jsonw_key(&w, "b");
	jsonw_bool(&w, false);
	jsonw_close(&w, '}');
	jsonw_open(&w, '{');
	jsonw_close(&w, '}');
	jsonw_int(&w, -9223372036854775807LL - 1);
	jsonw_int(&w, 9223372036854775807LL);
	jsonw_int(&w, 0);
	jsonw_null(&w);
	jsonw_close(&w, ']');
	check_jsonw(&w, "[{\"s\":\"plain\",\"e\":\"q\\\"uote\\nnew \u00e9\",\"n\":null,"
			"\"b\":false},{},-9223372036854775808,9223372036854775807,0,null]");

	/* seconds: microseconds, always a real, trailing zeros dropped */
	jsonw_init(&w);
	jsonw_open(&w, '[');
	jsonw_secs(&w, 0);
	jsonw_secs(&w, 1.5);
	jsonw_secs(&w, 1795323629.123456);
	jsonw_secs(&w, -2.25);
	jsonw_secs(&w, 0.0000004);
	jsonw_secs(&w, 1e300);
	jsonw_close(&w, ']');
	ck_assert(jsonw_ok(&w));
	ck_assert_msg(w.len > 0 && memcmp(w.buf, "[0.0,1.5,1795323629.123456,-2.25,0.0,", 37) == 0,
		      "%.*s", (int)w.len, w.buf);
	check_jsonw(&w, "[0.0,1.5,1795323629.123456,-2.25,0.0,1e300]");

	ck_assert_int_eq(jsonw_fmt_int(buf, -42), 3);
	ck_assert(memcmp(buf, "-42", 3) == 0);
	ck_assert(jsonw_plain("abc:0_-.", 8));
	ck_assert(!jsonw_plain("a\"b", 3));
	ck_assert(!jsonw_plain("\x7f", 1));
}
END_TEST

#define BOOT "bb619cc7-5dfc-4f60-a1c9-829305a98932"
#define HEAD "mpsupd-processes 1\nboot " BOOT "\nkey 00000000000000aa\ndaemon 10 5\n"

/* Parse text (copied: the parser writes into its buffer). */
static int reg_parse(const char *text, struct procreg_file *f, char **ret_buf)
{
	char err[256];
	size_t len = strlen(text);
	char *buf = malloc(len + 1);
	int r;

	memcpy(buf, text, len + 1);
	memset(f, 0, sizeof(*f));
	r = procreg_parse(buf, len, BOOT, "00000000000000aa", f, err, sizeof(err));
	*ret_buf = buf;
	return r;
}

START_TEST(test_registry_replay)
{
	struct procreg_file f;
	char *buf;

	/* 100 ended; 200 replaced by a new run of the same pid; a stale end of
	 * 300 (another start) is not its end; 400 runs */
	ck_assert_int_eq(reg_parse(HEAD "p 100 100 7 7 15 10000 a:0\n"
					"p 200 200 8 9 15 1500 a:1\n"
					"x 100 7\n"
					"p 300 300 9 9 9 0 run-1\n"
					"x 300 8\n"
					"p 200 200 20 20 2 10 a:1\n"
					"p 400 400 21 21 15 10000 b:0\n"
					"x 999 1\n",
				   &f, &buf),
			 0);
	ck_assert_int_eq(f.writer_pid, 10);
	ck_assert_uint_eq(f.writer_start, 5);
	ck_assert_uint_eq(f.n, 3);
	ck_assert_int_eq(f.recs[0].pid, 300);
	ck_assert_int_eq(f.recs[0].stop_signal, 9);
	ck_assert_str_eq(f.recs[0].name, "run-1");
	ck_assert_int_eq(f.recs[1].pid, 200);
	ck_assert_uint_eq(f.recs[1].start_lo, 20);
	ck_assert_int_eq(f.recs[1].stop_signal, 2);
	ck_assert(f.recs[1].stop_timeout > 0.0099 && f.recs[1].stop_timeout < 0.0101);
	ck_assert_int_eq(f.recs[2].pid, 400);
	ck_assert(!f.torn);
	free(f.recs);
	free(buf);

	/* any signal a pool may name, by number too */
	ck_assert_int_eq(reg_parse(HEAD "p 100 100 7 7 40 10000 a:0\n", &f, &buf), 0);
	ck_assert_int_eq(f.recs[0].stop_signal, 40);
	free(f.recs);
	free(buf);

	/* a last line cut short is left out, the rest is used */
	ck_assert_int_eq(reg_parse(HEAD "p 100 100 7 7 15 10000 a:0\np 200 2", &f, &buf), 0);
	ck_assert(f.torn);
	ck_assert_uint_eq(f.n, 1);
	free(f.recs);
	free(buf);
}
END_TEST

START_TEST(test_registry_refused)
{
	static const char *const corrupt[] = {
		"",
		"mpsupd-processes 2\nboot " BOOT "\nkey 00000000000000aa\ndaemon 10 5\n",
		"mpsupd-processes 1\nboot " BOOT "\nkey 00000000000000aa\n",
		"mpsupd-processes 1\nboot x\nkey 00000000000000aa\ndaemon 10 5\n",
		"mpsupd-processes 1\nboot " BOOT "\nkey 00000000000000aa\ndaemon 0 5\n",
		"mpsupd-processes 1\nboot " BOOT "\nkey  00000000000000aa\ndaemon 10 5\n",
		HEAD "p 100 101 7 7 15 10000 a:0\n",  /* not its own group */
		HEAD "p 100 100 7 70 15 10000 a:0\n", /* too wide a start range */
		HEAD "p 100 100 8 7 15 10000 a:0\n",  /* hi below lo */
		HEAD "p 100 100 0 0 15 10000 a:0\n",
		HEAD "p 100 100 7 7 0 10000 a:0\n", /* no signal 0 */
		HEAD "p 100 100 7 7 65 10000 a:0\n",
		HEAD "p 100 100 7 7 15 -1 a:0\n",
		HEAD "p 100 100 7 7 15 1000000000001 a:0\n",
		HEAD "p 100 100 7 7 15 10 a/0\n", /* a name we never write */
		HEAD "p 100 100 7 7 15 10 a:0 x\n",
		HEAD "p 0100 100 7 7 15 10 a:0\n", /* numbers as we write them */
		HEAD "p 5000000 5000000 7 7 15 10 a:0\n",
		HEAD "p 100 100 7 7 15 10 a:0\nx 100\n",
		HEAD "p 100 100 7 7 15 10 a:0\n\n",
		HEAD "end 1\n",
	};
	struct procreg_file f;
	char *buf;

	for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
		ck_assert_msg(reg_parse(corrupt[i], &f, &buf) == -EINVAL, "case %zu accepted", i);
		free(buf);
	}
	/* binary data */
	{
		char text[] = HEAD "p 100 100 7 7 15 10 a:0\n";
		char err[256];
		text[sizeof(HEAD)] = '\0';
		ck_assert_int_eq(procreg_parse(text, sizeof(text) - 1, BOOT, "00000000000000aa", &f,
					       err, sizeof(err)),
				 -EINVAL);
	}
	/* another boot, another socket */
	ck_assert_int_eq(reg_parse("mpsupd-processes 1\nboot bb619cc7-5dfc-4f60-a1c9-829305a98933\n"
				   "key 00000000000000aa\ndaemon 10 5\n",
				   &f, &buf),
			 -ESTALE);
	free(buf);
	ck_assert_int_eq(reg_parse("mpsupd-processes 1\nboot " BOOT "\nkey 00000000000000ab\n"
				   "daemon 10 5\n",
				   &f, &buf),
			 -ESTALE);
	free(buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = tcase_create("proc");

	tcase_add_test(tc, test_fsm_start_paths);
	tcase_add_test(tc, test_fsm_failed_starts);
	tcase_add_test(tc, test_fsm_deaths_after_start);
	tcase_add_test(tc, test_fsm_stopping);
	tcase_add_test(tc, test_fsm_table_total);
	tcase_add_test(tc, test_exitcode_and_policy);
	tcase_add_test(tc, test_backoff);
	tcase_add_test(tc, test_argv_split_and_expand);
	tcase_add_test(tc, test_argv_errors);
	tcase_add_test(tc, test_jsonw);
	tcase_add_test(tc, test_registry_replay);
	tcase_add_test(tc, test_registry_refused);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
