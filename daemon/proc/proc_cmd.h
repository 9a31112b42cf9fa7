/*
 * What the process commands share (private to them): a
 * command's target (a name resolved to processes), the records answer, and
 * the handlers each file of the commands gives proc_cmd.c's table.
 */
#ifndef MPSUPD_PROC_CMD_H
#define MPSUPD_PROC_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "command.h"
#include "proc.h"

/* The processes a command names ("*", a pool, pool:index, a one-shot). */
struct target {
	struct proc **v;
	size_t n, cap;
};

/* Resolve name into t (t->v is the caller's to free); answers not_found. */
int target_resolve(struct request *r, const char *name, struct target *t);
/* Does target (a name as a command gave it) name p? */
bool target_matches(const char *target, const struct proc *p);
/* Answer r with the records of v[0..n) (NULL entries: gone) as a list. */
void answer_records(struct request *r, struct proc **v, size_t n);

/* proc_run_cmd.c: one-shots */
enum cmd_ret cmd_proc_run(struct request *r);
enum cmd_ret cmd_proc_forget(struct request *r);

/* proc_logs_cmd.c: recent lines and followers */
enum cmd_ret cmd_proc_logs(struct request *r);
void proc_logs_notify(struct proc *p, const struct logline *l);

/* pool_cmd.c: pools at run time, and the scope parameter they share with
 * proc.run */
int scope_param(struct request *r);
void scope_bind_error(struct request *r, int e);
enum cmd_ret cmd_pool_list(struct request *r);
enum cmd_ret cmd_pool_add(struct request *r);
enum cmd_ret cmd_pool_remove(struct request *r);
enum cmd_ret cmd_pool_scale(struct request *r);
void pool_cmd_pool_gone(struct pool *pl);

#endif
