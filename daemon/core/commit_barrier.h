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
	BARRIER_WAIT,      /* held: fn(key, how) runs once it may go */
	BARRIER_NO_MEMORY, /* it must wait but cannot be held: close the connection */
};

/* Why held output may go. */
enum barrier_release {
	BARRIER_WRITTEN,   /* the records it depends on are written */
	BARRIER_FAILING,   /* writing them failed: output that shows no
			    * durable state may go (the holder cancels its wait
			    * first); the rest stays held */
	BARRIER_TIMED_OUT, /* they could not be written in time (the store's
			    * outage timeout): the answers in it that show or
			    * change durable state must not go as they are */
};

/* barrier(fn, key) says whether key's output may go and, when it must
 * wait, runs fn(key, how) once the records it depends on are written or
 * the store gives up waiting for them (and, with BARRIER_FAILING, when
 * writing them fails: the wait stays unless fn cancels it); cancel
 * forgets a pending (fn, key) (the connection closed while held, or it
 * goes on BARRIER_FAILING); commit writes what is pending now (a peer
 * that hung up does not wait for the loop). Without one (no durable
 * store) answers never wait. */
struct commit_barrier {
	enum barrier_result (*barrier)(void (*fn)(void *key, enum barrier_release how), void *key);
	void (*cancel)(void (*fn)(void *key, enum barrier_release how), void *key);
	void (*commit)(void);
};

#endif
