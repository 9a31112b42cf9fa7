/*
 * Spawning one run of a process: argv and environment, pipes, then vfork
 * and in the child setsid, signal reset, descriptor clean-up, umask, chdir,
 * groups/gid/uid and exec. Failures before exec come back over a CLOEXEC
 * pipe as "STEP ARG: error" and count as a failed start.
 */
#ifndef MPSUPD_PROC_SPAWN_H
#define MPSUPD_PROC_SPAWN_H

#include <stdbool.h>
#include <stddef.h>

struct proc;

/* The PATH given to workers whose environment sets none. */
#define PROC_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Raise our descriptor limit (remembering the old one for children). */
void proc_spawn_init(void);
void proc_spawn_cleanup(void);
/* Start a run of p: sets p->pid, p->pgid and the output pipes. Returns 0,
 * or the negative errno of the step that failed with the reason in err
 * and its short form ("exec: No such file or directory") in why (the
 * child, if any, is reaped): -EMFILE, -ENFILE and -EAGAIN say the
 * system or the daemon lacked a resource (proc_spawn_transient). */
int proc_spawn(struct proc *p, char *err, size_t errlen, char *why, size_t whylen);
/* Is r (from proc_spawn) a lack of descriptors or processes, worth
 * retrying rather than a failed start of the program? */
bool proc_spawn_transient(int r);
/* Build the environment of p (NULL-terminated, conf_strv_free). */
char **proc_spawn_env(const struct proc *p);

#endif
