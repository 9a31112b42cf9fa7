/*
 * The daemon's assembly: which modules it is made of, in start order. The
 * core (command.c) runs them from this list and never names a module
 * itself; mpsupd, the unit tests and the fuzz harnesses all use this list.
 */
#include "config.h"

#include "command.h"
#include "conn.h"
#include "lifecycle.h"
#include "peer.h"
#include "persist.h"
#include "proc.h"
#include "scope.h"
#include "task.h"
#include "modules.h"

extern const struct cmd_module meta_module;
extern const struct cmd_module events_module;
extern const struct cmd_module state_module;
extern const struct cmd_module persist_module;
extern const struct cmd_module proc_module;
extern const struct cmd_module task_module;
extern const struct proc_observer proc_cmd_observer;

/* Adding a module is one line here. */
const struct cmd_module *const mpsupd_modules[] = {
	&meta_module,    &events_module, &state_module,
	&persist_module, /* loads the state before anything serves it; stops after proc */
	&proc_module,    &task_module, /* after proc: its stop fails the tasks before workers stop */
};
const size_t mpsupd_n_modules = sizeof(mpsupd_modules) / sizeof(mpsupd_modules[0]);

/* Answers wait for the records they depend on (persist.h). */
static const struct commit_barrier persist_commit_barrier = {
	.barrier = persist_barrier,
	.cancel = persist_barrier_cancel,
	.commit = persist_commit,
};

void mpsupd_assemble(void)
{
	lifecycle_init(mpsupd_modules, mpsupd_n_modules);
	command_init(mpsupd_modules, mpsupd_n_modules);
	server_set_peer_policy(&peer_policy_default);
	server_set_commit_barrier(&persist_commit_barrier);
	/* a scope's pidfd counts in the descriptor budget */
	scope_set_budget(proc_fds_check_scope);
	/* what supervision tells the process commands, then task pools
	 * (join waiters see a state before the task rotation reacts to it) */
	proc_observe(&proc_cmd_observer);
	proc_observe(&task_proc_observer);
}
