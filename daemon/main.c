/*
 * mpsupd: the mpsup supervisor daemon. Runs in the foreground with one
 * libevent loop; SIGTERM/SIGINT shut it down in order, SIGHUP reloads.
 * Under systemd it speaks sd_notify (notify.c), takes a socket handed over
 * by socket activation (conn.c) and logs to the journal (log.c).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "command.h"
#include "modules.h"
#include "conn.h"
#include "daemon.h"
#include "lifecycle.h"
#include "log.h"
#include "notify.h"
#include "proc_registry.h"
#include "scope.h"

#define DEFAULT_CONFIG SYSCONFDIR "/mpsupd/mpsupd.conf"

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	char err[CONF_ERR_MAX];

	(void)what;
	(void)arg;
	if (sig == SIGHUP && daemon_g.shutting_down) {
		/* a reload now could add pools after the process module stopped */
		log_warn("daemon", "SIGHUP ignored: shutting down");
	} else if (sig == SIGHUP) {
		log_info("daemon", "SIGHUP: reloading");
		daemon_reload(NULL, err, sizeof(err));
	} else if (daemon_g.shutting_down) {
		log_info("daemon", "%s again: still stopping", strsignal((int)sig));
	} else {
		daemon_shutdown(strsignal((int)sig));
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mpsupd [-c FILE] [-s SOCKET] [--check-config [FILE]] [--version] [-h]\n"
		"\n"
		"  -c, --config FILE      configuration file (default %s)\n"
		"  -s, --socket PATH      control socket (overrides the config)\n"
		"      --check-config     validate the configuration and exit\n"
		"      --truncate-corrupt-state  start even if the state log is corrupt,\n"
		"                         dropping it from the damage on\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             this help\n",
		DEFAULT_CONFIG);
}

/* Read the command line into daemon_g; -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, bool *ret_check_only)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "check-config", optional_argument, NULL, 'C' },
		{ "truncate-corrupt-state", no_argument, NULL, 'T' }, /* persist.c */
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*ret_check_only = false;
	daemon_g.conf_path = DEFAULT_CONFIG;
	while ((opt = getopt_long(argc, argv, "c:s:Vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': daemon_g.conf_path = optarg; break;
		case 's': daemon_g.socket_override = optarg; break;
		case 'C':
			*ret_check_only = true;
			if (optarg)
				daemon_g.conf_path = optarg;
			else if (optind < argc && argv[optind][0] != '-')
				daemon_g.conf_path = argv[optind++];
			break;
		case 'T': daemon_g.truncate_corrupt_state = true; break;
		case 'V': printf("mpsupd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mpsupd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

/* The shutdown is done: free what is left. A second SIGTERM (an impatient
 * operator or service manager) must not kill the process by signal
 * meanwhile, once event_free() has put the default handlers back. */
static void free_after_shutdown(struct event **sig_events, const int *sigs, int n)
{
	sigset_t late;

	sigemptyset(&late);
	for (int i = 0; i < n; i++)
		sigaddset(&late, sigs[i]);
	sigprocmask(SIG_BLOCK, &late, NULL);
	notify_cleanup();
	for (int i = 0; i < n; i++)
		event_free(sig_events[i]);
	scope_cleanup(); /* what the modules did not unbind */
	event_base_free(daemon_g.base);
	conf_free(daemon_g.conf);
}

int main(int argc, char **argv)
{
	const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	struct event *sig_events[3];
	char err[CONF_ERR_MAX];
	bool check_only;
	int r;

	if ((r = parse_options(argc, argv, &check_only)) >= 0)
		return r;
	log_init(LOG_LVL_INFO);
	if (conf_load(daemon_g.conf_path, &daemon_g.conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "mpsupd: %s\n", err);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration ok (%u pool%s)\n", daemon_g.conf_path,
		       daemon_g.conf->n_pools, daemon_g.conf->n_pools == 1 ? "" : "s");
		conf_free(daemon_g.conf);
		return 0;
	}
	log_set_level((enum log_level)daemon_g.conf->log_level);
	/* Take the service manager's variables out of the environment before
	 * anything can be spawned; LISTEN_* go in server_start(). */
	notify_init();
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &daemon_g.started);
	daemon_g.started_wall = time(NULL);

	daemon_g.base = event_base_new();
	if (!daemon_g.base)
		fatalx("daemon", "cannot create the event loop");
	for (int i = 0; i < 3; i++) {
		sig_events[i] = evsignal_new(daemon_g.base, sigs[i], signal_cb, NULL);
		if (!sig_events[i] || event_add(sig_events[i], NULL) < 0)
			fatalx("daemon", "cannot watch signal %d", sigs[i]);
	}
	mpsupd_assemble();
	r = server_start();
	/* sd_listen_fds(1) unset these already; make sure whatever happened. */
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	if (r < 0) {
		log_error("daemon", "cannot listen: %s", strerror(-r));
		notify_status("cannot listen: %s", strerror(-r));
		return 1;
	}
	log_info("daemon", "mpsupd %s started (pid %d, config %s)", PACKAGE_VERSION, (int)getpid(),
		 daemon_g.conf_path);
	/* one daemon per socket (its lock), before the state or any process
	 * is touched */
	if (procreg_open(daemon_g.conf, server_socket_path()) < 0 ||
	    modules_start(daemon_g.conf) < 0) {
		log_error("daemon", "start-up failed");
		notify_status("start-up failed");
		server_stop();
		return 1;
	}
	if (notify_start(daemon_g.base) < 0) {
		log_error("daemon", "cannot set up service notifications");
		server_stop();
		return 1;
	}
	notify_ready();
	event_base_dispatch(daemon_g.base);
	free_after_shutdown(sig_events, sigs, 3);
	return daemon_g.exit_code;
}
