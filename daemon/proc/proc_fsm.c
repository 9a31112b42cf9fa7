/*
 * The process state machine: one table, states x events. A cell holds the
 * next state, "ignored", or one of three decisions that depend on the
 * restart policy and the retry budget (proc_fsm_input). Entry actions
 * (spawn, timers, signals) live in proc.c; this file decides only.
 */
#include "config.h"

#include <math.h>
#include <sys/wait.h>

#include "proc_fsm.h"

/* Special cells, resolved by resolve() below. */
enum {
	IGN = -1,        /* event ignored in this state */
	SPAWN_FAIL = -2, /* backoff if restart && retry, else fatal */
	START_FAIL = -3, /* died before start_secs: exited / backoff / fatal */
	RUN_END = -4,    /* died after start: exited / starting / backoff / fatal */
};

#define STOPPED PS_STOPPED
#define STARTING PS_STARTING
#define RUNNING PS_RUNNING
#define BACKOFF PS_BACKOFF
#define STOPPING PS_STOPPING
#define EXITED PS_EXITED
#define FATAL PS_FATAL

static const signed char table[PS__MAX][PE__MAX] = {
	/*              START     SPAWN_FAILED START_SECS DIED        STOP      STOP_TIMEOUT BACKOFF_ELAPSED */
	[PS_STOPPED] = { STARTING, IGN, IGN, IGN, IGN, IGN, IGN },
	[PS_STARTING] = { IGN, SPAWN_FAIL, RUNNING, START_FAIL, STOPPING, IGN, IGN },
	[PS_RUNNING] = { IGN, IGN, IGN, RUN_END, STOPPING, IGN, IGN },
	[PS_BACKOFF] = { STARTING, IGN, IGN, IGN, STOPPED, IGN, STARTING },
	[PS_STOPPING] = { IGN, IGN, IGN, STOPPED, IGN, STOPPING, IGN },
	[PS_EXITED] = { STARTING, IGN, IGN, IGN, IGN, IGN, IGN },
	[PS_FATAL] = { STARTING, IGN, IGN, IGN, IGN, IGN, IGN },
};

static int resolve(int cell, const struct proc_fsm_input *in)
{
	switch (cell) {
	case SPAWN_FAIL:
		if (in->transient)
			return BACKOFF;
		return in->restart && in->retry ? BACKOFF : FATAL;
	case START_FAIL:
		if (!in->restart)
			return EXITED;
		return in->retry ? BACKOFF : FATAL;
	case RUN_END:
		if (!in->restart)
			return EXITED;
		if (in->stable)
			return STARTING;
		return in->retry ? BACKOFF : FATAL;
	default: return cell;
	}
}

int proc_fsm_next(enum proc_state s, enum proc_event ev, const struct proc_fsm_input *in)
{
	static const struct proc_fsm_input none = { false, false, false, false };

	if ((unsigned)s >= PS__MAX || (unsigned)ev >= PE__MAX)
		return -1;
	return resolve(table[s][ev], in ? in : &none);
}

const char *proc_state_name(enum proc_state s)
{
	static const char *const names[PS__MAX] = {
		"stopped", "starting", "running", "backoff", "stopping", "exited", "fatal",
	};
	return (unsigned)s < PS__MAX ? names[s] : "unknown";
}

const char *proc_event_name(enum proc_event ev)
{
	static const char *const names[PE__MAX] = {
		"start", "spawn_failed", "start_secs",      "died",
		"stop",  "stop_timeout", "backoff_elapsed",
	};
	return (unsigned)ev < PE__MAX ? names[ev] : "none";
}

bool proc_state_alive(enum proc_state s)
{
	return s == PS_STARTING || s == PS_RUNNING || s == PS_STOPPING;
}

bool proc_state_final(enum proc_state s)
{
	return s == PS_STOPPED || s == PS_EXITED || s == PS_FATAL;
}

int proc_exitcode(int wstatus)
{
	if (WIFSIGNALED(wstatus))
		return -WTERMSIG(wstatus);
	return WEXITSTATUS(wstatus);
}

bool proc_policy_restarts(enum restart_policy policy, const uint8_t exit_codes[32], int exitcode)
{
	switch (policy) {
	case RESTART_ALWAYS: return true;
	case RESTART_ON_FAILURE:
		/* A death by signal is a failure; an exit status is one unless listed. */
		if (exitcode < 0 || exitcode > 255)
			return true;
		return !(exit_codes[exitcode / 8] & (1u << (exitcode % 8)));
	case RESTART_NEVER:
	default: return false;
	}
}

#define BACKOFF_BASE 0.5

double proc_backoff_delay(unsigned failures, double backoff_max, double jitter01)
{
	double d;

	if (backoff_max <= 0 || failures == 0)
		return 0;
	if (failures > 40)
		failures = 40;
	d = ldexp(BACKOFF_BASE, (int)failures - 1);
	if (d > backoff_max)
		d = backoff_max;
	if (jitter01 < 0)
		jitter01 = 0;
	if (jitter01 > 1)
		jitter01 = 1;
	return d * (0.5 + 0.5 * jitter01);
}
