/*
 * Task pools (DESIGN.md §6): a pool with mode = task keeps long-lived
 * workers; mpsupd writes one JSON line per task to an idle worker's stdin,
 * {"id": N, "item": V}, and reads one line per result from its stdout,
 * {"id": N, "result": V} or {"id": N, "error": "text"}. A worker holds one
 * task at a time. pool.map, pool.submit, task.wait and task.status are the
 * protocol side (task_module); the wire format is in task_wire.h. The hooks
 * below are how process supervision (proc.c, proc_spawn.c) tells this
 * module about workers' lives.
 */
#ifndef MPSUPD_TASK_H
#define MPSUPD_TASK_H

#include <jansson.h>

struct pool;
struct proc;

/*
 * Hooks called by process supervision.
 */

/* A task-pool member was spawned: in_fd writes its stdin, out_fd reads its
 * stdout (both taken). */
void task_worker_attach(struct proc *p, int in_fd, int out_fd);
/* The main process of p ended (p->exit_status_text says how), before the
 * state machine reacts: read what it wrote, fail or requeue its task. */
void task_worker_exited(struct proc *p);
/* p settled in a new state (it may join or leave the rotation). */
void task_proc_notify(struct proc *p);
/* p is being freed. */
void task_proc_gone(struct proc *p);
/* pl is being freed: its backlog fails. */
void task_pool_gone(struct pool *pl);
/* Add busy/tasks_done to a task-pool member's record. */
struct jsonw;
void task_proc_record_write(const struct proc *p, struct jsonw *w);
/* Add busy/pending to a task pool's pool.list entry. */
void task_pool_record(const struct pool *pl, json_t *j);

#endif
