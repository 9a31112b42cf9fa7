/*
 * Task pools (docs/tasks.md): a pool with mode = task keeps long-lived
 * workers; mpsupd writes one JSON line per task to a worker's stdin,
 * {"id": N, "item": V}, and reads one line per result from its stdout,
 * {"id": N, "result": V} or {"id": N, "error": "text"}. A worker holds up
 * to task_window tasks, written ahead, answered in any order. pool.map,
 * pool.submit, task.wait and task.status are the protocol side (task_module, task_cmd.c); the wire format is in
 * task_wire.h, the records shared inside daemon/task/ in task_int.h.
 * Supervision tells it about workers' lives through task_proc_observer.
 */
#ifndef MPSUPD_TASK_H
#define MPSUPD_TASK_H

#include <jansson.h>

struct pool;
struct proc;

/* How supervision tells this module about task workers' lives (proc.h):
 * the channel of a spawned worker, its exit (read what it wrote, fail or
 * requeue its task), its settled states (joining or leaving the rotation),
 * its record freed, its pool removed (the backlog fails), and busy /
 * tasks_done in its process record. Registered by the daemon's assembly. */
extern const struct proc_observer task_proc_observer;
/* Add busy/pending to a task pool's pool.list entry. */
void task_pool_record(const struct pool *pl, json_t *j);

#endif
