/*
 * Readiness by notification (ready = notify): a worker's NOTIFY_SOCKET,
 * sd_notify's protocol (READY=1, STATUS=, STOPPING=1). See proc_ready.c.
 */
#ifndef MPSUPD_PROC_READY_H
#define MPSUPD_PROC_READY_H

#include <stddef.h>
#include <sys/types.h>

struct proc;

/* Before a spawn of p (running as uid/gid): its socket made or emptied of
 * an earlier run's messages, its readiness reset. 0, or -errno with the
 * reason in err. */
int proc_ready_prepare(struct proc *p, uid_t uid, gid_t gid, char *err, size_t errlen);
/* The path of p's socket (NOTIFY_SOCKET), NULL when it has none. */
const char *proc_ready_path(const struct proc *p);
/* Close and remove p's socket, if any. */
void proc_ready_close(struct proc *p);

#endif
