/*
 * The daemon's life (lifecycle.h): module start, reload and stop in
 * order, orderly shutdown and config reload.
 */
#include "config.h"

#include <string.h>

#include "command.h"
#include "conn.h"
#include "daemon.h"
#include "lifecycle.h"
#include "log.h"
#include "notify.h"

static const struct cmd_module *const *modules;
static size_t n_modules;
#define N_MODULES n_modules

void lifecycle_init(const struct cmd_module *const *mods, size_t n_mods)
{
	modules = mods;
	n_modules = n_mods;
}

json_t *modules_capabilities(void)
{
	json_t *a = json_array();

	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->capability)
			json_array_append_new(a, json_string(modules[m]->capability));
	return a;
}

void modules_info(json_t *info)
{
	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->info)
			modules[m]->info(info);
}

void modules_metrics(struct evbuffer *b)
{
	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->metrics)
			modules[m]->metrics(b);
}

int modules_start(const struct conf *conf)
{
	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->start) {
			int r = modules[m]->start(conf);
			if (r < 0)
				return r;
		}
	return 0;
}

static void (*stop_done)(void);
static size_t stop_index;

/* Stop modules one after another, last first. */
static void stop_next(void)
{
	while (stop_index > 0) {
		const struct cmd_module *m = modules[--stop_index];
		if (m->stop) {
			m->stop(stop_next);
			return;
		}
	}
	if (stop_done) {
		void (*done)(void) = stop_done;
		stop_done = NULL;
		done();
	}
}

void modules_stop(void (*done)(void))
{
	stop_done = done;
	stop_index = N_MODULES;
	stop_next();
}

void modules_reload(const struct conf *newconf, json_t *changes)
{
	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->reload)
			modules[m]->reload(newconf, changes);
}

/* Every module stopped: the loop ends. */
static void shutdown_done(void)
{
	log_info("daemon", "stopped");
	server_stop();
	event_base_loopexit(daemon_g.base, NULL);
}

void daemon_shutdown(const char *why)
{
	if (daemon_g.shutting_down)
		return;
	daemon_g.shutting_down = true;
	log_info("daemon", "shutting down (%s)", why);
	notify_stopping();
	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->shutting_down)
			modules[m]->shutting_down(why);
	modules_stop(shutdown_done);
}

int daemon_reload(json_t **result, char *err, size_t errlen)
{
	struct conf *newconf, *old = daemon_g.conf;
	json_t *changes;
	int r;

	notify_reloading();
	r = conf_load(daemon_g.conf_path, &newconf, err, errlen);
	if (r < 0) {
		log_error("daemon", "reload refused, running config kept: %s", err);
		notify_ready();
		return r;
	}
	if ((newconf->socket || old->socket) && !daemon_g.socket_override &&
	    (!newconf->socket || !old->socket || strcmp(newconf->socket, old->socket) != 0))
		log_warn("daemon", "socket changes take effect at the next start");
	if ((newconf->metrics_listen || old->metrics_listen) &&
	    (!newconf->metrics_listen || !old->metrics_listen ||
	     strcmp(newconf->metrics_listen, old->metrics_listen) != 0))
		log_warn("daemon", "metrics_listen changes take effect at the next start");
	changes = json_pack("{s:[], s:[], s:[], s:[]}", "added", "changed", "removed", "failed");
	modules_reload(newconf, changes);
	daemon_g.conf = newconf;
	conf_free(old);
	server_refresh_roles(); /* [access] may have changed */
	log_set_level((enum log_level)newconf->log_level);
	log_info("daemon", "configuration reloaded from %s", daemon_g.conf_path);
	for (size_t m = 0; m < N_MODULES; m++)
		if (modules[m]->reloaded)
			modules[m]->reloaded(changes);
	if (result)
		*result = changes;
	else
		json_decref(changes);
	notify_ready();
	return 0;
}
