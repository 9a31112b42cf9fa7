/*
 * The life of every supervised process (pool member or one-shot) as one
 * state x event table. The table and the few decisions it depends on
 * (restart policy, retries, backoff) are pure functions here; proc.c feeds
 * events and performs each state's entry action.
 */
#ifndef MPSUPD_PROC_FSM_H
#define MPSUPD_PROC_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"

enum proc_state {
	PS_STOPPED = 0, /* never started, or stopped on request */
	PS_STARTING,    /* spawned, up for less than start_secs */
	PS_RUNNING,
	PS_BACKOFF,  /* failed to start, retry pending */
	PS_STOPPING, /* stop signal sent, waiting for the process group to go */
	PS_EXITED,   /* ended, the policy says no restart */
	PS_FATAL,    /* gave up after start_retries */
	PS__MAX
};

enum proc_event {
	PE_NONE = -1,
	PE_START = 0,       /* start requested */
	PE_SPAWN_FAILED,    /* fork, set-up or exec failed */
	PE_START_SECS,      /* start_secs elapsed while starting */
	PE_DIED,            /* the process ended (while stopping: and its group is empty) */
	PE_STOP,            /* stop requested */
	PE_STOP_TIMEOUT,    /* stop_timeout elapsed: SIGKILL */
	PE_BACKOFF_ELAPSED, /* time to retry */
	PE__MAX
};

/* What the decisions of a transition depend on. */
struct proc_fsm_input {
	bool restart;   /* the policy wants this death (or failure) restarted */
	bool retry;     /* failed starts so far < start_retries */
	bool stable;    /* the run that ended lasted long enough to reset backoff */
	bool transient; /* the spawn lacked descriptors or processes: retried, whatever the
			 * policy and retries say */
};

/* The next state, or -1 when ev does not apply in s (ignored). */
int proc_fsm_next(enum proc_state s, enum proc_event ev, const struct proc_fsm_input *in);

const char *proc_state_name(enum proc_state s);
const char *proc_event_name(enum proc_event ev);
/* A process exists (is_alive): starting, running or stopping. */
bool proc_state_alive(enum proc_state s);
/* Nothing more will happen without a request: stopped, exited, fatal. */
bool proc_state_final(enum proc_state s);

/* Python's exitcode from a wait status: the status, or minus the signal. */
int proc_exitcode(int wstatus);
/* Whether policy restarts a process that ended with exitcode. */
bool proc_policy_restarts(enum restart_policy policy, const uint8_t exit_codes[32], int exitcode);
/*
 * Backoff before retry number failures (1 = first retry): 0.5 s doubling,
 * capped at backoff_max, times a jitter factor in [0.5, 1] from jitter01
 * in [0, 1).
 */
double proc_backoff_delay(unsigned failures, double backoff_max, double jitter01);

#endif
