/*
 * cgroup v2: one cgroup per worker under a delegated subtree, stop and
 * stray clean-up with cgroup.kill (proc_cgroup.c).
 */
#ifndef MPSUPD_PROC_CGROUP_H
#define MPSUPD_PROC_CGROUP_H

#include <stdbool.h>

#include <jansson.h>

#include "conf.h"
#include "jsonw.h"

struct proc;

/* Find and take our subtree (once); logs once why not. */
void proc_cgroup_init(enum cgroup_mode mode);
bool proc_cgroup_on(void);
/* Make p's cgroup; returns a descriptor of its cgroup.procs for the child
 * to join with (the caller closes it), or -errno (-ENOENT: none). */
int proc_cgroup_prepare(struct proc *p);
/* Warn (at config time) about pc's cgroup limits that cannot apply. */
void proc_cgroup_check_pool(const struct pool_conf *pc);
/* Did the OOM killer kill in p's cgroup during this run? */
bool proc_cgroup_oom_killed(const struct proc *p);
/* Kill what is left in p's cgroup: 1 if something was, 0 if empty. */
int proc_cgroup_kill(const struct proc *p);
/* Does p's cgroup still hold a process (cgroup.events populated 1)? */
bool proc_cgroup_populated(const struct proc *p);
/* Remove p's cgroup (and its pool's when that was the last). */
void proc_cgroup_remove(const struct proc *p);
/* cpu_seconds and memory_bytes of p's cgroup into its record. */
void proc_cgroup_record_write(const struct proc *p, struct jsonw *w);
/* daemon.info's cgroup object: {enabled, path, why}. */
json_t *proc_cgroup_info(void);
void proc_cgroup_cleanup(void);

#endif
