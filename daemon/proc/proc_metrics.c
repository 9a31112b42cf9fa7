/*
 * Metric families of supervision (docs/metrics.md): processes by pool and
 * state, starts and restarts per pool, and per process up, restarts, CPU
 * time and resident memory.
 *
 * Usage comes from /proc/PID/stat, some 10 to 40 microseconds a process:
 * read at every scrape, 10 000 processes would cost a good part of a
 * second. So the figures are cached per process: a scrape reads at most
 * USAGE_SCRAPE_READS stale ones itself and shows the rest as cached, and
 * for USAGE_KEEP_WARM seconds after a scrape a timer reads the stale ones
 * USAGE_TICK_READS at a time, so the next scrape finds them fresh (at
 * most about USAGE_FRESH seconds old). Nothing is read while nobody
 * scrapes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "daemon.h"
#include "metrics.h"
#include "proc.h"

/* CPU seconds and resident bytes of a live pid from /proc/PID/stat;
 * -errno when it cannot be read. */
static int proc_usage(pid_t pid, double *ret_cpu, double *ret_rss)
{
	static long ticks, page;
	char path[40], buf[1024], *p;
	unsigned long long ut, st;
	long long rss;
	ssize_t n;
	int fd;

	if (!ticks) {
		ticks = sysconf(_SC_CLK_TCK);
		page = sysconf(_SC_PAGESIZE);
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* after "(comm)", which may hold anything: fields 3.. */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
		   "%*d %*d %*u %*u %lld",
		   &ut, &st, &rss) != 3)
		return -EIO;
	*ret_cpu = (double)(ut + st) / (double)(ticks > 0 ? ticks : 100);
	*ret_rss = (double)rss * (double)(page > 0 ? page : 4096);
	return 0;
}

#define USAGE_FRESH 2.0        /* seconds a reading is good for */
#define USAGE_SCRAPE_READS 200 /* readings a scrape makes itself */
#define USAGE_TICK_READS 500   /* readings per refresh tick */
#define USAGE_TICK 0.1         /* seconds between refresh ticks */
#define USAGE_KEEP_WARM 120.0  /* seconds after a scrape the refresh runs */

static struct event usage_timer;
static struct event_base *usage_timer_base; /* usage_timer is assigned to it */
static double usage_warm_until;

/* Read p's usage into its cache when stale and *budget allows (counts it
 * down). Whether p has a reading of its current run now. */
static bool usage_refresh(struct proc *p, double now, unsigned *budget)
{
	double cpu, rss;

	if (!proc_is_alive(p) || p->pid <= 0)
		return false;
	if (p->usage_pid == p->pid && now - p->usage_at < USAGE_FRESH)
		return true;
	if (*budget == 0)
		return p->usage_pid == p->pid; /* stale, but of this run */
	(*budget)--;
	if (proc_usage(p->pid, &cpu, &rss) < 0)
		return false;
	p->usage_cpu = cpu;
	p->usage_rss = rss;
	p->usage_at = now;
	p->usage_pid = p->pid;
	return true;
}

/* Refresh up to budget stale readings over every process. */
static void usage_refresh_all(unsigned budget)
{
	double now = now_mono();
	struct pool *pl;
	struct proc *p;

	METRICS_POOLS_FOREACH(pl)
		for (unsigned i = 0; i < pl->n_slots && budget; i++)
			if (pl->members[i])
				usage_refresh(pl->members[i], now, &budget);
	TAILQ_FOREACH(p, &oneshots, os->entry)
		if (budget)
			usage_refresh(p, now, &budget);
}

static void usage_tick(evutil_socket_t fd, short what, void *arg);

static void usage_timer_arm(void)
{
	struct timeval tv = { 0, (suseconds_t)(USAGE_TICK * 1e6) };

	if (usage_timer_base != daemon_g.base) {
		if (event_assign(&usage_timer, daemon_g.base, -1, 0, usage_tick, NULL) < 0)
			return;
		usage_timer_base = daemon_g.base;
	}
	if (!evtimer_pending(&usage_timer, NULL))
		evtimer_add(&usage_timer, &tv);
}

/* A refresh tick: read the next stale ones while scrapes keep coming. */
static void usage_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	usage_refresh_all(USAGE_TICK_READS);
	if (now_mono() < usage_warm_until)
		usage_timer_arm();
}

/* Processes per pool and state, every state listed (zeros too). */
static void pool_states(struct evbuffer *b)
{
	struct metrics_label l[2] = { { "pool", NULL }, { "state", NULL } };
	unsigned n[PS__MAX];
	struct pool *pl;
	struct proc *p;

	metrics_family(b, "mpsup_processes", "gauge",
		       "Processes by pool and state (one-shot processes: no pool label).");
	METRICS_POOLS_FOREACH(pl) {
		memset(n, 0, sizeof(n));
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i])
				n[pl->members[i]->state]++;
		l[0].value = pl->name;
		for (int s = 0; s < PS__MAX; s++) {
			l[1].value = proc_state_name((enum proc_state)s);
			metrics_u64(b, "mpsup_processes", l, 2, n[s]);
		}
	}
	memset(n, 0, sizeof(n));
	TAILQ_FOREACH(p, &oneshots, os->entry)
		n[p->state]++;
	l[0].value = NULL;
	for (int s = 0; s < PS__MAX; s++) {
		l[1].value = proc_state_name((enum proc_state)s);
		metrics_u64(b, "mpsup_processes", l, 2, n[s]);
	}
}

/* Per pool counters: starts and restarts since the pool was made. */
static void pool_counters(struct evbuffer *b)
{
	struct metrics_label l = { "pool", NULL };
	struct pool *pl;

	metrics_family(b, "mpsup_pool_starts_total", "counter",
		       "Processes a pool spawned (restarts included).");
	METRICS_POOLS_FOREACH(pl) {
		l.value = pl->name;
		metrics_u64(b, "mpsup_pool_starts_total", &l, 1, pl->starts);
	}
	metrics_family(b, "mpsup_pool_restarts_total", "counter",
		       "Spawns of a pool's members after their first.");
	METRICS_POOLS_FOREACH(pl) {
		l.value = pl->name;
		metrics_u64(b, "mpsup_pool_restarts_total", &l, 1, pl->restarts);
	}
}

/* Calls fn for every process record: pool members, then one-shots. */
static void each_proc(struct evbuffer *b, const char *name,
		      void (*fn)(struct evbuffer *b, const char *name, const struct proc *p))
{
	struct pool *pl;
	struct proc *p;

	METRICS_POOLS_FOREACH(pl)
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i])
				fn(b, name, pl->members[i]);
	TAILQ_FOREACH(p, &oneshots, os->entry)
		fn(b, name, p);
}

static void labels_of(const struct proc *p, struct metrics_label l[2])
{
	l[0] = (struct metrics_label){ "pool", p->pool ? p->pool->name : NULL };
	l[1] = (struct metrics_label){ "name", p->name };
}

static void up_line(struct evbuffer *b, const char *name, const struct proc *p)
{
	struct metrics_label l[2];

	labels_of(p, l);
	metrics_u64(b, name, l, 2, proc_is_alive(p) && p->pid > 0);
}

static void restarts_line(struct evbuffer *b, const char *name, const struct proc *p)
{
	struct metrics_label l[2];

	labels_of(p, l);
	metrics_u64(b, name, l, 2, p->restarts);
}

static void usage_lines(struct evbuffer *cpu_b, struct evbuffer *rss_b, struct proc *p, double now,
			unsigned *budget)
{
	struct metrics_label l[2];

	if (!usage_refresh(p, now, budget))
		return;
	labels_of(p, l);
	metrics_double(cpu_b, "mpsup_process_cpu_seconds_total", l, 2, p->usage_cpu);
	metrics_double(rss_b, "mpsup_process_resident_memory_bytes", l, 2, p->usage_rss);
}

/* CPU and memory families from the cache (the memory lines wait in their
 * own buffer until the CPU family ends); keeps the refresh running. */
static void usage_families(struct evbuffer *b)
{
	struct evbuffer *rss = evbuffer_new();
	unsigned budget = USAGE_SCRAPE_READS;
	double now = now_mono();
	struct pool *pl;
	struct proc *p;

	if (!rss)
		return;
	metrics_family(b, "mpsup_process_cpu_seconds_total", "counter",
		       "User and system CPU time of a live process's main process.");
	metrics_family(rss, "mpsup_process_resident_memory_bytes", "gauge",
		       "Resident memory of a live process's main process.");
	METRICS_POOLS_FOREACH(pl)
		for (unsigned i = 0; i < pl->n_slots; i++)
			if (pl->members[i])
				usage_lines(b, rss, pl->members[i], now, &budget);
	TAILQ_FOREACH(p, &oneshots, os->entry)
		usage_lines(b, rss, p, now, &budget);
	evbuffer_add_buffer(b, rss);
	evbuffer_free(rss);
	usage_warm_until = now + USAGE_KEEP_WARM;
	usage_timer_arm();
}

void proc_metrics(struct evbuffer *b)
{
	pool_states(b);
	pool_counters(b);
	metrics_family(b, "mpsup_process_up", "gauge", "1 while the process runs, else 0.");
	each_proc(b, "mpsup_process_up", up_line);
	metrics_family(b, "mpsup_process_restarts_total", "counter",
		       "Spawns of a process after its first.");
	each_proc(b, "mpsup_process_restarts_total", restarts_line);
	if (daemon_g.conf->metrics_usage)
		usage_families(b);
}
