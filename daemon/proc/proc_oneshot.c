/*
 * One-shots (proc.run): their records, generated names, and the retention
 * of finished records (max_oneshots, oldest first).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "hash.h"
#include "log.h"
#include "proc.h"
#include "proc_int.h"

struct proc_list oneshots = TAILQ_HEAD_INITIALIZER(oneshots);
static unsigned n_oneshots, n_oneshots_finished;
static unsigned run_counter;

unsigned oneshots_live_count(void)
{
	return n_oneshots - n_oneshots_finished;
}

struct oneshot *oneshot_free(struct oneshot *os)
{
	if (!os)
		return NULL;
	scope_unbind(&os->scope);
	oneshot_close_stdio(os);
	conf_strv_free(os->argv);
	conf_strv_free(os->env);
	free(os->cwd);
	free(os->stdin_data);
	run_ids_clear(&os->ids);
	free(os);
	return NULL;
}

void oneshot_close_stdio(struct oneshot *os)
{
	for (int i = 0; i < 3 && os->stdio_passed; i++)
		if (os->stdio[i] >= 0) {
			close(os->stdio[i]);
			os->stdio[i] = -1;
		}
}

void oneshot_gen_name(char *buf, size_t len)
{
	do
		snprintf(buf, len, "run-%u", ++run_counter);
	while (proc_find(buf) || pool_find(buf));
}

struct proc *oneshot_run(const char *name, struct oneshot *os, bool *ret_short, char *err,
			 size_t errlen)
{
	struct proc *p = proc_new(name, NULL, 0);

	*ret_short = false;
	if (!p) {
		oneshot_free(os);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->os = os;
	os->proc = p;
	os->name_hash = hash_fnv1a32(p->name);
	TAILQ_INSERT_TAIL(&oneshots, p, os->entry);
	n_oneshots++;
	proc_feed(p, PE_START);
	oneshot_close_stdio(os); /* the child has them, or never will */
	if (p->spawns == 0) {
		snprintf(err, errlen, "%s",
			 p->exit_status_text ? p->exit_status_text : "spawn failed");
		*ret_short = p->spawn_transient;
		proc_free_later(p);
		return NULL;
	}
	return p;
}

void oneshot_forget(struct proc *p)
{
	if (p->os && !proc_state_alive(p->state))
		proc_free_later(p);
}

void oneshot_detach(struct proc *p)
{
	TAILQ_REMOVE(&oneshots, p, os->entry);
	n_oneshots--;
	if (p->os->finished > 0)
		n_oneshots_finished--;
	oneshot_free(p->os);
}

void oneshot_settled(struct proc *p)
{
	struct proc *q;

	if (!proc_state_final(p->state) || p->os->finished != 0)
		return;
	p->os->finished = now_mono();
	n_oneshots_finished++;
	if (!daemon_g.conf || n_oneshots_finished <= daemon_g.conf->max_oneshots)
		return;
	TAILQ_FOREACH(q, &oneshots, os->entry)
		if (q->os->finished > 0 && !q->freed) {
			log_debug("proc", "%s: record evicted (max_oneshots)", q->name);
			proc_free_later(q);
			break;
		}
}
