/* Unit tests of the configuration parser (daemon/core/conf.c). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "conf_keys.h"
#include "unit.h"

static struct conf *load_ok(const char *text)
{
	char err[CONF_ERR_MAX];
	struct conf *c = NULL;
	int r = conf_load_string(text, "test.conf", &c, err, sizeof(err));

	ck_assert_msg(r == 0, "config refused: %s", err);
	return c;
}

/* Load a bad config; returns the error message (static buffer). */
static const char *load_bad(const char *text)
{
	static char err[CONF_ERR_MAX];
	struct conf *c = NULL;

	ck_assert_int_lt(conf_load_string(text, "test.conf", &c, err, sizeof(err)), 0);
	ck_assert_ptr_null(c);
	return err;
}

START_TEST(test_defaults)
{
	struct conf *c = load_ok("[mpsupd]\n");

	ck_assert_int_eq(c->socket_mode, 0600);
	ck_assert_uint_eq(c->max_request_bytes, 1024 * 1024);
	ck_assert_uint_eq(c->max_clients, 1024);
	ck_assert_uint_eq(c->max_json_depth, 64);
	ck_assert_uint_eq(c->max_object_items, 10000000);
	ck_assert_ptr_null(c->pools);
	conf_free(c);
}
END_TEST

START_TEST(test_main_section)
{
	struct conf *c =
		load_ok("[mpsupd]\nsocket = /tmp/x.sock\nsocket_mode = 0660\n"
			"log_level = debug\nmax_request_bytes = 2M\nshutdown_timeout = 1.5\n"
			"state_sync = always ; inline comment\nmax_object_items = 5\n");

	ck_assert_str_eq(c->socket, "/tmp/x.sock");
	ck_assert_int_eq(c->socket_mode, 0660);
	ck_assert_int_eq(c->log_level, 3);
	ck_assert_uint_eq(c->max_request_bytes, 2 * 1024 * 1024);
	ck_assert_double_eq(c->shutdown_timeout, 1.5);
	ck_assert_int_eq(c->state_sync, STATE_SYNC_ALWAYS);
	ck_assert_uint_eq(c->max_object_items, 5);
	conf_free(c);
}
END_TEST

START_TEST(test_pool_section)
{
	struct conf *c =
		load_ok("[pool:web]\n"
			"command = /usr/bin/python3 -m app --id %(index)d\n"
			"processes = 4\nrestart = on-failure\nexit_codes = 0, 3 4\n"
			"start_secs = 250ms\nstop_signal = SIGINT\nstop_timeout = 2\n"
			"environment = FOO=bar BAZ=\"two words\"\nstdout = file:/tmp/w.log\n"
			"stderr = null\nautostart = no\npriority = -5\numask = 027\n"
			"limit_nofile = 4096:infinity\n"
			"[pool:db]\ncommand = sleep 1\nlimit_nofile = 300\n");
	struct pool_conf *p = c->pools;

	ck_assert_uint_eq(c->n_pools, 2);
	ck_assert_str_eq(p->name, "web");
	ck_assert_uint_eq(p->processes, 4);
	ck_assert_int_eq(p->restart, RESTART_ON_FAILURE);
	ck_assert(p->exit_codes[0] & 1);
	ck_assert(p->exit_codes[0] & (1 << 3));
	ck_assert(p->exit_codes[0] & (1 << 4));
	ck_assert(!(p->exit_codes[0] & (1 << 1)));
	ck_assert_double_eq_tol(p->start_secs, 0.25, 1e-9);
	ck_assert_int_eq(p->stop_signal, SIGINT);
	ck_assert_str_eq(p->environment[0], "FOO=bar");
	ck_assert_str_eq(p->environment[1], "BAZ=two words");
	ck_assert_ptr_null(p->environment[2]);
	ck_assert_int_eq(p->out.kind, OUTPUT_FILE);
	ck_assert_str_eq(p->out.path, "/tmp/w.log");
	ck_assert_int_eq(p->err.kind, OUTPUT_NULL);
	ck_assert(!p->autostart);
	ck_assert_int_eq(p->priority, -5);
	ck_assert_int_eq(p->umask, 027);
	ck_assert_uint_eq(p->limit_nofile.soft, 4096);
	ck_assert(p->limit_nofile.hard == ULLONG_MAX);
	ck_assert_uint_eq(p->next->limit_nofile.soft, 300);
	ck_assert_uint_eq(p->next->limit_nofile.hard, 300);
	ck_assert_str_eq(p->next->name, "db");
	ck_assert_ptr_eq(conf_find_pool(c, "db"), p->next);
	conf_free(c);
}
END_TEST

START_TEST(test_errors_name_line_and_key)
{
	ck_assert_str_eq(
		load_bad("[mpsupd]\nmax_clients = 0\n"),
		"test.conf:2: [mpsupd] max_clients: expected a number 1..1000000, not '0'");
	ck_assert_str_eq(load_bad("[mpsupd]\nmax_object_items = 0\n"),
			 "test.conf:2: [mpsupd] max_object_items: expected a number 1..1000000000, "
			 "not '0'");
	ck_assert_ptr_nonnull(strstr(load_bad("[mpsupd]\n\nnope = 1\n"),
				     "test.conf:3: [mpsupd] nope: unknown key"));
	ck_assert_ptr_nonnull(strstr(load_bad("[pool:a]\ncommand = x\nrestart = sometimes\n"),
				     "test.conf:3: [pool:a] restart"));
	ck_assert_ptr_nonnull(strstr(load_bad("[weird]\nx = 1\n"), "unknown section"));
	ck_assert_ptr_nonnull(strstr(load_bad("[pool:a]\nprocesses = 1\n"), "command is missing"));
	ck_assert_ptr_nonnull(strstr(load_bad("[pool:a]\ncommand = x\n[pool:b]\ncommand = y\n"
					      "[pool:a]\nprocesses = 2\n"),
				     "defined twice"));
	ck_assert_ptr_nonnull(
		strstr(load_bad("[pool:bad/name]\ncommand = x\n"), "invalid pool name"));
	ck_assert_ptr_nonnull(strstr(load_bad("[pool:a]\ncommand = 'unclosed\n"), "unterminated"));
	ck_assert_ptr_nonnull(strstr(load_bad("[pool:a]\ncommand = x\nuser = no-such-user-xyz\n"),
				     "no such user"));
	ck_assert_ptr_nonnull(
		strstr(load_bad("[mpsupd]\nthis line has no equals\n"), "test.conf:2:"));
	ck_assert_ptr_nonnull(
		strstr(load_bad("[access]\nadmin = no-such-user-xyz\n"), "no such user"));
}
END_TEST

START_TEST(test_durations_and_signals)
{
	double d;
	int sig;

	ck_assert_int_eq(conf_parse_duration("0.25", &d), 0);
	ck_assert_double_eq_tol(d, 0.25, 1e-12);
	ck_assert_int_eq(conf_parse_duration("2m", &d), 0);
	ck_assert_double_eq(d, 120);
	ck_assert_int_eq(conf_parse_duration("150ms", &d), 0);
	ck_assert_double_eq_tol(d, 0.15, 1e-12);
	ck_assert_int_lt(conf_parse_duration("-1", &d), 0);
	ck_assert_int_lt(conf_parse_duration("soon", &d), 0);
	ck_assert_int_lt(conf_parse_duration("nan", &d), 0);
	ck_assert_int_eq(conf_parse_signal("HUP", &sig), 0);
	ck_assert_int_eq(sig, SIGHUP);
	ck_assert_int_eq(conf_parse_signal("sigterm", &sig), 0);
	ck_assert_int_eq(sig, SIGTERM);
	ck_assert_int_eq(conf_parse_signal("9", &sig), 0);
	ck_assert_int_eq(sig, 9);
	ck_assert_int_lt(conf_parse_signal("0", &sig), 0);
	ck_assert_int_lt(conf_parse_signal("NOPE", &sig), 0);
	ck_assert_str_eq(conf_signal_name(SIGKILL), "KILL");
}
END_TEST

START_TEST(test_split_words)
{
	char **v, err[128];

	ck_assert_int_eq(
		conf_split_words("a 'b c' \"d \\\"e\\\"\" f\\ g  'h\\n'", &v, err, sizeof(err)), 0);
	ck_assert_str_eq(v[0], "a");
	ck_assert_str_eq(v[1], "b c");
	ck_assert_str_eq(v[2], "d \"e\"");
	ck_assert_str_eq(v[3], "f g");
	ck_assert_str_eq(v[4], "h\\n");
	ck_assert_ptr_null(v[5]);
	conf_strv_free(v);
	ck_assert_int_eq(conf_split_words("   ", &v, err, sizeof(err)), 0);
	ck_assert_ptr_null(v[0]);
	conf_strv_free(v);
	ck_assert_int_lt(conf_split_words("a \"b", &v, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_names)
{
	ck_assert(name_valid("web-1.a_b", false));
	ck_assert(!name_valid("", false));
	ck_assert(!name_valid("a b", false));
	ck_assert(!name_valid("\xc3\xa9t\xc3\xa9", false)); /* letters, but not ASCII */
	ck_assert(!name_valid("web:0", false));
	ck_assert(name_valid("web:0", true));
	ck_assert(name_valid("0123456789012345678901234567890123456789012345678901234567890123",
			     false));
	ck_assert(!name_valid("01234567890123456789012345678901234567890123456789012345678901234",
			      false));
}
END_TEST

START_TEST(test_include)
{
	char dir[] = "/tmp/mpsup-conf-XXXXXX", path[512], err[CONF_ERR_MAX];
	struct conf *c = NULL;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/conf.d", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/conf.d/b.conf", dir);
	f = fopen(path, "w");
	fputs("[pool:b]\ncommand = sleep 2\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/conf.d/a.conf", dir);
	f = fopen(path, "w");
	fputs("[pool:a]\ncommand = sleep 1\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/main.conf", dir);
	f = fopen(path, "w");
	fputs("[mpsupd]\ninclude = conf.d/*.conf\n[pool:main]\ncommand = sleep 3\n", f);
	fclose(f);
	ck_assert_int_eq(conf_load(path, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c->pools->name, "a");
	ck_assert_str_eq(c->pools->next->name, "b");
	ck_assert_str_eq(c->pools->next->next->name, "main");
	conf_free(c);

	/* an error inside an included file names that file and line */
	snprintf(path, sizeof(path), "%s/conf.d/b.conf", dir);
	f = fopen(path, "w");
	fputs("[pool:b]\ncommand = sleep 2\nprocesses = many\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/main.conf", dir);
	ck_assert_int_lt(conf_load(path, &c, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "conf.d/b.conf:3: [pool:b] processes") != NULL, "%s", err);

	/* a missing file */
	ck_assert_int_lt(conf_load("/nonexistent/mpsupd.conf", &c, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(path), 0);
}
END_TEST

START_TEST(test_pool_from_json)
{
	char err[CONF_ERR_MAX];
	struct pool_conf *p = NULL, *q;
	json_t *j = json_pack("{s:s, s:[s,s,s], s:i, s:b, s:{s:s}, s:f, s:[i,i]}", "pool", "x",
			      "command", "/bin/echo", "a b", "c", "processes", 3, "autostart", 0,
			      "environment", "K", "v w", "stop_timeout", 0.5, "exit_codes", 0, 2);

	ck_assert_int_eq(pool_conf_from_json(j, &p, err, sizeof(err)), 0);
	ck_assert_str_eq(p->name, "x");
	ck_assert_uint_eq(p->processes, 3);
	ck_assert(!p->autostart);
	ck_assert_str_eq(p->environment[0], "K=v w");
	ck_assert_double_eq_tol(p->stop_timeout, 0.5, 1e-12);
	ck_assert(p->exit_codes[0] & 4);
	{
		char **argv;
		ck_assert_int_eq(conf_split_words(p->command, &argv, err, sizeof(err)), 0);
		ck_assert_str_eq(argv[1], "a b");
		conf_strv_free(argv);
	}
	q = pool_conf_dup(p);
	ck_assert(!pool_conf_differs(p, q));
	q->processes = 7;
	ck_assert(!pool_conf_differs(p, q)); /* processes alone is a scale */
	q->stop_signal = SIGINT;
	ck_assert(pool_conf_differs(p, q));
	json_t *back = pool_conf_to_json(p);
	ck_assert_ptr_nonnull(back);
	ck_assert_str_eq(json_string_value(json_object_get(back, "pool")), "x");
	json_decref(back);
	pool_conf_free(q);
	pool_conf_free(p);
	json_decref(j);

	j = json_pack("{s:s, s:s, s:s}", "pool", "y", "command", "x", "bogus", "1");
	ck_assert_int_lt(pool_conf_from_json(j, &p, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "bogus"));
	json_decref(j);
	j = json_pack("{s:s}", "pool", "nocommand");
	ck_assert_int_lt(pool_conf_from_json(j, &p, err, sizeof(err)), 0);
	json_decref(j);
	j = json_pack("{s:s, s:s}", "pool", "a/b", "command", "x");
	ck_assert_int_lt(pool_conf_from_json(j, &p, err, sizeof(err)), 0);
	json_decref(j);
}
END_TEST

START_TEST(test_access)
{
	struct conf *c = load_ok("[access]\nadmin = root\nstate = @0 1234\nread = *\n");

	ck_assert(c->access[ROLE_ADMIN].set);
	ck_assert_uint_eq(c->access[ROLE_ADMIN].n_uids, 1);
	ck_assert_uint_eq(c->access[ROLE_ADMIN].uids[0], 0);
	ck_assert_uint_eq(c->access[ROLE_STATE].n_gids, 1);
	ck_assert_uint_eq(c->access[ROLE_STATE].uids[0], 1234);
	ck_assert(c->access[ROLE_READ].any);
	conf_free(c);
}
END_TEST

/* Users and groups by number or name, one way for every caller: a number
 * past 32 bits (or -1) is a name, which no one has. */
START_TEST(test_lookup_ids)
{
	uid_t uid = 7;
	gid_t gid = 7;

	ck_assert_int_eq(conf_lookup_user("0", &uid), 0);
	ck_assert_uint_eq(uid, 0);
	ck_assert_int_eq(conf_lookup_user("4294967294", &uid), 0);
	ck_assert_uint_eq(uid, 4294967294u);
	ck_assert_int_eq(conf_lookup_user("root", &uid), 0);
	ck_assert_uint_eq(uid, 0);
	ck_assert_int_eq(conf_lookup_group("root", &gid), 0);
	ck_assert_uint_eq(gid, 0);
	ck_assert_int_eq(conf_lookup_group("123", &gid), 0);
	ck_assert_uint_eq(gid, 123);
	uid = gid = 7;
	ck_assert_int_eq(conf_lookup_user("4294967295", &uid), -ENOENT);
	ck_assert_int_eq(conf_lookup_user("4294967296", &uid), -ENOENT);
	ck_assert_int_eq(conf_lookup_user("no-such-user-mp", &uid), -ENOENT);
	ck_assert_int_eq(conf_lookup_group("-1", &gid), -ENOENT);
	ck_assert_int_eq(conf_lookup_group("", &gid), -ENOENT);
	ck_assert_uint_eq(uid, 7);
	ck_assert_uint_eq(gid, 7);
}
END_TEST

/* Every default from the key tables, as the values they always were. */
START_TEST(test_table_defaults)
{
	struct conf c;
	struct pool_conf *p = pool_conf_new("d");

	conf_defaults(&c);
	ck_assert_ptr_null(c.socket);
	ck_assert_int_eq(c.socket_mode, 0600);
	ck_assert_int_eq(c.log_level, 2);
	ck_assert_int_eq(c.state_sync, STATE_SYNC_EVERYSEC);
	ck_assert_uint_eq(c.state_log_max_bytes, 64 * 1024 * 1024);
	ck_assert(c.state_dir_check);
	ck_assert_double_eq(c.persist_outage_timeout, 5);
	ck_assert_uint_eq(c.max_output_bytes, 16 * 1024 * 1024);
	ck_assert_uint_eq(c.max_output_total, 256 * 1024 * 1024);
	ck_assert_double_eq(c.shutdown_timeout, 30);
	ck_assert_uint_eq(c.max_clients_per_uid, 0);
	ck_assert_uint_eq(c.max_objects, 1000000);
	ck_assert_uint_eq(c.max_queue_items, 1000000);
	ck_assert_uint_eq(c.max_waiters, 1024);
	ck_assert_uint_eq(c.max_oneshots, 1000);
	ck_assert_uint_eq(c.max_processes, 16384);
	ck_assert_uint_eq(c.max_subscribers, 64);
	ck_assert_uint_eq(c.log_ring_lines, 200);
	ck_assert_uint_eq(c.task_results_max, 10000);
	ck_assert_double_eq(c.task_results_age, 3600);
	ck_assert(!c.access[ROLE_ADMIN].set);

	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(p->command);
	ck_assert_uint_eq(p->processes, 1);
	ck_assert_int_eq(p->mode, POOL_MODE_SERVICE);
	ck_assert_int_eq(p->restart, RESTART_ALWAYS);
	ck_assert_int_eq(p->exit_codes[0], 1);
	for (int i = 1; i < 32; i++)
		ck_assert_int_eq(p->exit_codes[i], 0);
	ck_assert_double_eq(p->start_secs, 1);
	ck_assert_uint_eq(p->start_retries, 3);
	ck_assert_double_eq(p->backoff_max, 30);
	ck_assert_int_eq(p->stop_signal, SIGTERM);
	ck_assert_double_eq(p->stop_timeout, 10);
	ck_assert_int_eq(p->umask, 022);
	ck_assert_ptr_null(p->environment);
	ck_assert_int_eq(p->out.kind, OUTPUT_CAPTURE);
	ck_assert_int_eq(p->err.kind, OUTPUT_CAPTURE);
	ck_assert_ptr_null(p->out.path);
	ck_assert_uint_eq(p->out.max_bytes, 50 * 1024 * 1024);
	ck_assert_uint_eq(p->err.max_bytes, 50 * 1024 * 1024);
	ck_assert_uint_eq(p->out.backups, 5);
	ck_assert_uint_eq(p->err.backups, 5);
	ck_assert(p->autostart);
	ck_assert_int_eq(p->priority, 100);
	ck_assert_double_eq(p->task_timeout, 0);
	ck_assert_uint_eq(p->task_retries, 0);
	ck_assert_uint_eq(p->max_pending, 100000);
	pool_conf_free(p);
	conf_release(&c);
}
END_TEST

/* The message of each key type, word for word. */
START_TEST(test_typed_errors)
{
	static const char *const cases[][2] = {
		{ "[mpsupd]\nlog_level = loud\n", "test.conf:2: [mpsupd] log_level: expected "
						  "error, warning, info or debug, not 'loud'" },
		{ "[mpsupd]\nstate_sync = often\n", "test.conf:2: [mpsupd] state_sync: expected "
						    "always, everysec or no, not 'often'" },
		{ "[mpsupd]\nmax_request_bytes = 257M\n",
		  "test.conf:2: [mpsupd] max_request_bytes: expected a size 1K..256M, not '257M'" },
		{ "[mpsupd]\nmax_output_bytes = 1K\n", "test.conf:2: [mpsupd] max_output_bytes: "
						       "expected a size of at least 4K, not '1K'" },
		{ "[mpsupd]\nsocket_mode = 01777\n",
		  "test.conf:2: [mpsupd] socket_mode: expected an octal mode, not '01777'" },
		{ "[mpsupd]\nstate_file = rel\n",
		  "test.conf:2: [mpsupd] state_file: state_file must be an absolute path" },
		{ "[mpsupd]\nstate_dir_check = maybe\n",
		  "test.conf:2: [mpsupd] state_dir_check: expected yes or no, not 'maybe'" },
		{ "[mpsupd]\npersist_outage_timeout = -1\n",
		  "test.conf:2: [mpsupd] persist_outage_timeout: expected a duration in seconds, "
		  "not "
		  "'-1'" },
		{ "[mpsupd]\nshutdown_timeout = soon\n",
		  "test.conf:2: [mpsupd] shutdown_timeout: expected a duration in seconds, not "
		  "'soon'" },
		{ "[access]\nwrite = root\n",
		  "test.conf:2: [access] write: unknown key (admin, run, state, read)" },
		{ "[pool:a]\nprocesses = 100001\n",
		  "test.conf:2: [pool:a] processes: expected a number of processes 0..100000, not "
		  "'100001'" },
		{ "[pool:a]\nmode = batch\n",
		  "test.conf:2: [pool:a] mode: expected service or task, not 'batch'" },
		{ "[pool:a]\npriority = 100001\n",
		  "test.conf:2: [pool:a] priority: expected an integer priority, not '100001'" },
		{ "[pool:a]\nstop_signal = NOPE\n",
		  "test.conf:2: [pool:a] stop_signal: unknown signal 'NOPE'" },
		{ "[pool:a]\numask = 01000\n",
		  "test.conf:2: [pool:a] umask: expected an octal umask, not '01000'" },
		{ "[pool:a]\nstdout_backups = 1001\n",
		  "test.conf:2: [pool:a] stdout_backups: expected a number 0..1000, not '1001'" },
		{ "[pool:a]\ncommand = \n", "test.conf:2: [pool:a] command: empty command" },
		{ "[pool:a]\nlimit_nofile = 10:5\n", "test.conf:2: [pool:a] limit_nofile: the soft "
						     "limit is above the hard one in '10:5'" },
		{ "[pool:a]\nlimit_nofile = 0\n", "test.conf:2: [pool:a] limit_nofile: expected N, "
						  "SOFT:HARD or infinity (N 1..2^40), "
						  "not '0'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_str_eq(load_bad(cases[i][0]), cases[i][1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("conf");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_main_section);
	tcase_add_test(tc, test_pool_section);
	tcase_add_test(tc, test_errors_name_line_and_key);
	tcase_add_test(tc, test_durations_and_signals);
	tcase_add_test(tc, test_split_words);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_include);
	tcase_add_test(tc, test_pool_from_json);
	tcase_add_test(tc, test_access);
	tcase_add_test(tc, test_lookup_ids);
	tcase_add_test(tc, test_table_defaults);
	tcase_add_test(tc, test_typed_errors);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
