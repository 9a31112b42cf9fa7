/*
 * The commit barrier: what the connections (conn.h) hold their answers
 * behind, so that none leaves before the records it depends on are
 * written. The core defines it; a durable store implements it (persist.h)
 * and the assembly installs it with server_set_commit_barrier(). Its keys
 * are opaque pointers (the connections): the store only compares them.
 */
#ifndef MPSUPD_COMMIT_BARRIER_H
#define MPSUPD_COMMIT_BARRIER_H

/* What the commit barrier says of a connection's output. */
enum barrier_result {
	BARRIER_GO,        /* it depends on nothing unwritten: write it */
	BARRIER_WAIT,      /* held: fn(key) runs once its records are written */
	BARRIER_NO_MEMORY, /* it must wait but cannot be held: close the connection */
};

/* barrier(fn, key) says whether key's output may go and, when it must
 * wait, runs fn(key) once the records it depends on are written; cancel
 * forgets a pending (fn, key) (the connection closed while held);
 * forget(key) is called for every connection that closes, held or not
 * (the store may remember a key it holds nothing for yet); commit writes
 * what is pending now (a peer that hung up does not wait for the loop).
 * Without one (no durable store) answers never wait. */
struct commit_barrier {
	enum barrier_result (*barrier)(void (*fn)(void *key), void *key);
	void (*cancel)(void (*fn)(void *key), void *key);
	void (*forget)(void *key);
	void (*commit)(void);
};

#endif
