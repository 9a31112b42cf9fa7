/*
 * Observers (proc.h): the parts built on supervision (the process
 * commands, task pools) hear what happens to processes, called in the
 * order they registered.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>

#include "proc.h"

static const struct proc_observer *observers[PROC_MAX_OBSERVERS];
static unsigned n_observers;

int proc_observe(const struct proc_observer *o)
{
	if (n_observers == PROC_MAX_OBSERVERS)
		return -ENOSPC;
	observers[n_observers++] = o;
	return 0;
}

#define FOR_OBSERVERS(member, ...)                    \
	for (unsigned i_ = 0; i_ < n_observers; i_++) \
		if (observers[i_]->member)            \
	observers[i_]->member(__VA_ARGS__)

void proc_notify_settled(struct proc *p)
{
	FOR_OBSERVERS(settled, p)
		;
}

void proc_notify_exited(struct proc *p)
{
	FOR_OBSERVERS(exited, p)
		;
}

void proc_notify_gone(struct proc *p)
{
	FOR_OBSERVERS(gone, p)
		;
}

void proc_notify_pool_gone(struct pool *pl)
{
	FOR_OBSERVERS(pool_gone, pl)
		;
}

void proc_notify_output_line(struct proc *p, const struct logline *l)
{
	FOR_OBSERVERS(output_line, p, l)
		;
}

void proc_notify_record_write(const struct proc *p, struct jsonw *w)
{
	FOR_OBSERVERS(record_write, p, w)
		;
}

bool proc_notify_channel(struct proc *p, int in_fd, int out_fd)
{
	for (unsigned i = 0; i < n_observers; i++)
		if (observers[i]->channel) {
			observers[i]->channel(p, in_fd, out_fd);
			return true;
		}
	return false;
}
