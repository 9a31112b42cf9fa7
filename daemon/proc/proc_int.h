/*
 * What the files of supervision share among themselves (proc.c,
 * proc_record.c, proc_observer.c, proc_group.c, proc_ids.c, proc_pool.c, proc_oneshot.c,
 * proc_shutdown.c). Other modules use proc.h only.
 */
#ifndef MPSUPD_PROC_INT_H
#define MPSUPD_PROC_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

#include "log.h"
#include "proc.h"
#include "proc_registry.h"

/* The journal fields of a message about p (its run with pid). */
#define PROC_FIELDS(p, pid) \
	(&(struct log_fields){ (p)->pool ? (p)->pool->name : NULL, (p)->name, (pid) })

/* proc_record.c: replace the text *field with fmt formatted with ap
 * (NULL for a NULL fmt, or when out of memory). */
void proc_text_set(char **field, const char *fmt, va_list ap);

/*
 * proc.c: process objects, the pid table, the state machine's entry
 * actions, reaping.
 */

/* Has proc_init() run (and proc_cleanup() not yet)? */
bool proc_initialized(void);
/* A new process record in PS_STOPPED (a pool member when pl is set). */
struct proc *proc_new(const char *name, struct pool *pl, unsigned index);
/* Release everything of p (not running) now. */
void proc_destroy(struct proc *p);
/* Free p after the current callback. */
void proc_free_later(struct proc *p);
/* Take p back from the free list (a shrink undone before it was freed). */
void proc_unfree(struct proc *p);
/* Feed ev to p's state machine, running entry actions and follow-ups. */
void proc_feed(struct proc *p, enum proc_event ev);
/* Book-keeping once p settled (removal, one-shot retention, shutdown). */
void proc_after(struct proc *p);
/* p's run as a registry record (its leader: pid, or last_pid once reaped). */
struct procreg_rec proc_rec(const struct proc *p, pid_t leader);
/* Every process whose main process runs (the pid table). */
void pid_table_each(void (*fn)(struct proc *p, void *arg), void *arg);
/* Is pgid the group of a process we run now? */
bool pid_table_has_pgid(pid_t pgid);

/*
 * proc_group.c: process groups (signalling a run's group, waiting for a
 * stopped group to empty, stray groups).
 */

/* Does process group pgid still have a member? */
bool pgid_alive(pid_t pgid);
/* sig to p's whole group (logged when it fails). */
void proc_signal_group(struct proc *p, int sig);
/* p's stop signal to its whole group, and SIGCONT so a stopped process
 * sees it. */
void proc_signal_group_stop(struct proc *p);
/* p (stopping) lost its main process: wait for the rest of its group. */
void group_wait_start(struct proc *p);
/* p no longer waits for its group (it is being freed). */
void group_wait_cancel(struct proc *p);
/* Feed PE_DIED to processes whose group is now empty (after reaping). */
void group_waits_check(void);
/* p's main process died while not being stopped: end the rest of its
 * group. True when a stray now holds the group. */
bool stray_start(struct proc *p);
/* Forget stray groups that are gone (after reaping). */
void strays_check(void);
/* SIGKILL to every stray group (shutdown: nothing outlives the daemon). */
void strays_kill_all(void);

/*
 * proc_ids.c: the user and groups a pool runs as.
 */

/* Resolve the pool's user and group once (not at every spawn). */
void pool_resolve_ids(struct pool *pl);
/* Run pl as ids (taken: ids is emptied), as for a run peer's pool. */
void pool_take_ids(struct pool *pl, struct run_ids *ids);
void pool_clear_ids(struct pool *pl);

/*
 * proc_pool.c: pools.
 */

/* Members of every pool (they count against max_processes). */
unsigned pools_member_count(void);
/* Take p out of its pool's slots (p is being destroyed). */
void pool_member_detach(struct proc *p);
/* A member of pl was destroyed: free pl when it is being removed and
 * that was its last member. */
void pool_free_if_emptied(struct pool *pl);
/* Free pl now (its members are gone). */
void pool_free(struct pool *pl);

/*
 * proc_oneshot.c: one-shots.
 */

/* One-shots not yet in a final state (they count against max_processes). */
unsigned oneshots_live_count(void);
/* Take p (a one-shot being destroyed) off the list, free its request. */
void oneshot_detach(struct proc *p);
/* p (a one-shot) settled: retention of finished records (max_oneshots). */
void oneshot_settled(struct proc *p);

/*
 * proc_shutdown.c: shutdown in priority order.
 */

/* Is a shutdown under way (nothing starts or restarts)? */
bool proc_shutting_down(void);
/* p reached a final state: let the shutdown take its next step. */
void shutdown_progress(void);
/* Free the shutdown's events (proc_cleanup). */
void shutdown_cleanup(void);

/* Rolling restarts (proc_rolling.c): move pl's roll on after one of its
 * members settled; end it without restarting the rest. */
void pool_rolling_progress(struct pool *pl);
void pool_rolling_cancel(struct pool *pl);

#endif
