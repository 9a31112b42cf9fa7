/*
 * Lifetimes bound to a peer's process (scope "process", docs/protocol.md):
 * one pidfd per owning process, watched on the event loop, shared by
 * everything bound to it. When the process exits, however it exits, each
 * bound thing hears gone() once (objects are deleted, pools removed, daemon
 * one-shots terminated by the modules that own them).
 */
#ifndef MPSUPD_SCOPE_H
#define MPSUPD_SCOPE_H

#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>

struct conn;
struct scope;

/* One thing bound to a scope; embedded in its owner, zeroed when unbound. */
struct scope_link {
	struct scope *scope;
	/* The process exited: l is unbound already; the owner frees itself. */
	void (*gone)(struct scope_link *l);
	LIST_ENTRY(scope_link) entry;
};

/* Bind l to the process of c's peer (opening its pidfd, or sharing the one
 * open): 0, -ESRCH (the peer process is gone, or its pid is another's
 * now), -EMFILE (the descriptor budget), -ENOMEM. */
int scope_bind(struct conn *c, struct scope_link *l, void (*gone)(struct scope_link *l));
/* The thing goes first: unbind it (no-op when unbound); the last one
 * closes the pidfd. */
void scope_unbind(struct scope_link *l);
/* Is l bound? */
static inline bool scope_bound(const struct scope_link *l)
{
	return l->scope != NULL;
}
/* The pid l is bound to (0 when unbound). */
pid_t scope_pid(const struct scope_link *l);
/* pidfds open (the descriptor budget counts them). */
unsigned scope_count(void);
/* May one more descriptor be opened? Installed by the daemon's assembly
 * (the descriptor budget); NULL: always. */
void scope_set_budget(int (*check)(void));
/* Close every pidfd, unbinding without gone() (shutdown). */
void scope_cleanup(void);

#endif
