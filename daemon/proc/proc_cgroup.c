/*
 * cgroup v2 ([mpsupd] cgroup = auto): when mpsupd runs in a cgroup v2
 * subtree it may manage (its own cgroup, not the root, writable, with
 * cgroup.kill: what systemd's Delegate=yes gives a service), it moves
 * itself to the leaf OWN/daemon and puts each worker in its own cgroup,
 * OWN/pools/POOL/INDEX, and each one-shot in OWN/run/NAME. The child joins
 * it before exec (it writes "0" to the cgroup's cgroup.procs, opened by
 * the parent). When a worker's main process has ended, whatever is left in
 * its cgroup (a daemonized or group-escaped child) is killed with
 * cgroup.kill; "populated 0" in cgroup.events says it is all gone. The
 * mount and our cgroup come from /proc/self/mountinfo and /proc/self/cgroup,
 * never from an assumed path. Without a usable cgroup v2 supervision works
 * as before, said once in the log and in daemon.info.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "proc.h"
#include "proc_cgroup.h"

static struct {
	bool on;
	bool memory; /* the memory controller is available (memory.current) */
	bool ctl[3]; /* memory, cpu, pids: enabled for the workers' cgroups */
	char *base;  /* our own cgroup's directory */
	char why[200];
} cg;

/* The cgroup2 mount point and its root (fields 5 and 4 of mountinfo). */
static int find_mount(char **ret_mnt, char **ret_root)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r == -ENOENT && getline(&line, &cap, f) > 0) {
		char root[4096], mnt[4096], *dash = strstr(line, " - ");
		if (!dash || strncmp(dash + 3, "cgroup2 ", 8) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2)
			continue;
		/* mountinfo escapes spaces as \040: such a path is not for us */
		if (strchr(mnt, '\\') || strchr(root, '\\'))
			continue;
		*ret_mnt = strdup(mnt);
		*ret_root = strdup(root);
		r = *ret_mnt && *ret_root ? 0 : -ENOMEM;
	}
	free(line);
	fclose(f);
	return r;
}

/* Our cgroup v2 path ("0::PATH" in /proc/self/cgroup). */
static int own_path(char **ret)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r == -ENOENT && (n = getline(&line, &cap, f)) > 0) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		*ret = strdup(line + 3);
		r = *ret ? 0 : -ENOMEM;
	}
	free(line);
	fclose(f);
	return r;
}

/* Write s to DIR/FILE. */
static int write_file(const char *dir, const char *file, const char *s)
{
	char path[4096];
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Read DIR/FILE (bounded) into buf. */
static int read_small(const char *dir, const char *file, char *buf, size_t len)
{
	char path[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	n = fd_read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	return 0;
}

static int mkdir_in(const char *base, const char *rel)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", base, rel);
	if (mkdir(path, 0755) == 0)
		return 1; /* made now */
	return errno == EEXIST ? 0 : -errno;
}

/* Is our cgroup one we may manage? Fills cg.base; the reason in cg.why. */
static bool usable(void)
{
	char *mnt = NULL, *root = NULL, *own = NULL, probe[4096];
	const char *rel;
	bool ok = false;

	if (find_mount(&mnt, &root) < 0) {
		snprintf(cg.why, sizeof(cg.why), "no cgroup2 mount");
		goto out;
	}
	if (own_path(&own) < 0) {
		snprintf(cg.why, sizeof(cg.why), "no cgroup v2 entry in /proc/self/cgroup");
		goto out;
	}
	rel = own;
	if (strcmp(root, "/") != 0 && strncmp(own, root, strlen(root)) == 0)
		rel = own + strlen(root);
	if (!*rel || strcmp(rel, "/") == 0) {
		snprintf(cg.why, sizeof(cg.why), "in the root cgroup of %s (not delegated)", mnt);
		goto out;
	}
	if (asprintf(&cg.base, "%s%s", mnt, rel) < 0) {
		cg.base = NULL;
		goto out;
	}
	snprintf(probe, sizeof(probe), "%s/cgroup.kill", cg.base);
	if (access(cg.base, W_OK) < 0 || access(probe, W_OK) < 0) {
		snprintf(cg.why, sizeof(cg.why),
			 "%s not writable or without cgroup.kill (not delegated)", cg.base);
		goto out;
	}
	ok = true;
out:
	free(mnt);
	free(root);
	free(own);
	if (!ok) {
		free(cg.base);
		cg.base = NULL;
	}
	return ok;
}

static bool rel_of(const struct proc *p, char *buf, size_t len);

static const char *const ctl_names[3] = { "memory", "cpu", "pids" };

/* Does the space-separated list have word w? */
static bool has_word(const char *list, const char *w)
{
	size_t l = strlen(w);

	for (const char *s = list; (s = strstr(s, w)); s += l)
		if ((s == list || s[-1] == ' ') && (s[l] == ' ' || s[l] == '\n' || !s[l]))
			return true;
	return false;
}

/* Turn on for the children of DIR what controllers we have (each alone:
 * one missing does not stop the others; one that fails is off). */
static void enable_in(const char *dir)
{
	char buf[32];

	for (int i = 0; i < 3; i++) {
		if (!cg.ctl[i])
			continue;
		snprintf(buf, sizeof(buf), "+%s", ctl_names[i]);
		if (write_file(dir, "cgroup.subtree_control", buf) < 0)
			cg.ctl[i] = false;
	}
}

/* The memory, cpu and pids controllers our subtree has, enabled down to
 * OWN/pools (a pool's own directory gets them when it is made). */
static void enable_controllers(void)
{
	char ctl[512], dir[4096];

	if (read_small(cg.base, "cgroup.controllers", ctl, sizeof(ctl)) < 0)
		ctl[0] = '\0';
	for (int i = 0; i < 3; i++)
		cg.ctl[i] = has_word(ctl, ctl_names[i]);
	enable_in(cg.base);
	snprintf(dir, sizeof(dir), "%s/pools", cg.base);
	enable_in(dir);
	cg.memory = cg.ctl[0];
}

void proc_cgroup_check_pool(const struct pool_conf *pc)
{
	const char *key[4] = { "memory_max", "memory_high", "cpu_max", "pids_max" };
	bool set[4] = { pc->memory_max > 0, pc->memory_high > 0, pc->cpu_max > 0,
			pc->pids_max > 0 };
	int need[4] = { 0, 0, 1, 2 };

	for (int i = 0; i < 4; i++) {
		if (!set[i] || (cg.on && cg.ctl[need[i]]))
			continue;
		if (!cg.on)
			log_warn("proc", "pool %s: %s ignored: no cgroups (%s)", pc->name, key[i],
				 cg.why[0] ? cg.why : "not set up");
		else
			log_warn("proc", "pool %s: %s ignored: no %s controller in %s", pc->name,
				 key[i], ctl_names[need[i]], cg.base);
	}
}

/* The pool's limits into the cgroup DIR ("max" for those unset). */
static void apply_limits(const struct pool_conf *pc, const char *dir)
{
	char v[64];

	if (cg.ctl[0]) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)pc->memory_max);
		(void)write_file(dir, "memory.max", pc->memory_max ? v : "max");
		snprintf(v, sizeof(v), "%llu", (unsigned long long)pc->memory_high);
		(void)write_file(dir, "memory.high", pc->memory_high ? v : "max");
	}
	if (cg.ctl[1]) {
		snprintf(v, sizeof(v), "%llu 100000", (unsigned long long)pc->cpu_max * 1000);
		(void)write_file(dir, "cpu.max", pc->cpu_max ? v : "max 100000");
	}
	if (cg.ctl[2]) {
		snprintf(v, sizeof(v), "%u", pc->pids_max);
		(void)write_file(dir, "pids.max", pc->pids_max ? v : "max");
	}
}

/* The oom_kill count of DIR's memory.events (0 when unknown). */
static unsigned long oom_kills(const char *dir)
{
	char buf[512], *s;

	if (!cg.ctl[0] || read_small(dir, "memory.events", buf, sizeof(buf)) < 0)
		return 0;
	s = strstr(buf, "oom_kill ");
	return s ? strtoul(s + 9, NULL, 10) : 0;
}

bool proc_cgroup_oom_killed(const struct proc *p)
{
	char rel[256], dir[4096];

	if (!rel_of(p, rel, sizeof(rel)))
		return false;
	snprintf(dir, sizeof(dir), "%s/%s", cg.base, rel);
	return oom_kills(dir) > p->oom_kills;
}

void proc_cgroup_init(enum cgroup_mode mode)
{
	char pid[24];
	int r;

	if (cg.on || cg.why[0])
		return; /* once per daemon life */
	if (mode == CGROUP_OFF) {
		snprintf(cg.why, sizeof(cg.why), "cgroup = off");
		return;
	}
	if (!usable()) {
		log_info("proc", "cgroups: not used: %s", cg.why);
		return;
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if ((r = mkdir_in(cg.base, "daemon")) < 0 || (r = mkdir_in(cg.base, "pools")) < 0 ||
	    (r = mkdir_in(cg.base, "run")) < 0 ||
	    (r = write_file(cg.base, "daemon/cgroup.procs", pid)) < 0) {
		snprintf(cg.why, sizeof(cg.why), "%s: %s", cg.base, strerror(-r));
		log_warn("proc", "cgroups: not used: %s", cg.why);
		free(cg.base);
		cg.base = NULL;
		return;
	}
	cg.on = true;
	enable_controllers();
	log_info("proc", "cgroups: one per worker under %s", cg.base);
}

bool proc_cgroup_on(void)
{
	return cg.on;
}

/* The cgroup directory of p (relative to cg.base) in buf; false if none. */
static bool rel_of(const struct proc *p, char *buf, size_t len)
{
	int n;

	if (!cg.on || strchr(p->name, '/') || p->name[0] == '.')
		return false;
	if (p->pool)
		n = snprintf(buf, len, "pools/%s/%u", p->pool->name, p->index);
	else
		n = snprintf(buf, len, "run/%s", p->name);
	return n > 0 && (size_t)n < len;
}

int proc_cgroup_prepare(struct proc *p)
{
	char rel[256], path[4096];
	int r, fd;

	if (!rel_of(p, rel, sizeof(rel)))
		return -ENOENT;
	if (p->pool) {
		char pooldir[200];
		snprintf(pooldir, sizeof(pooldir), "pools/%s", p->pool->name);
		if ((r = mkdir_in(cg.base, pooldir)) < 0)
			return r;
		if (r == 1) {
			snprintf(path, sizeof(path), "%s/%s", cg.base, pooldir);
			enable_in(path);
		}
	}
	if ((r = mkdir_in(cg.base, rel)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s", cg.base, rel);
	if (p->pool)
		apply_limits(p->pool->conf, path);
	p->oom_kills = oom_kills(path);
	snprintf(path, sizeof(path), "%s/%s/cgroup.procs", cg.base, rel);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	return fd; /* the caller closes it after the spawn */
}

/* Is p's cgroup still populated (1), empty (0), or unknown (<0)? */
static int populated(const char *rel)
{
	char dir[4096], buf[256], *s;

	snprintf(dir, sizeof(dir), "%s/%s", cg.base, rel);
	if (read_small(dir, "cgroup.events", buf, sizeof(buf)) < 0)
		return -1;
	s = strstr(buf, "populated ");
	return s ? s[10] == '1' : -1;
}

int proc_cgroup_kill(const struct proc *p)
{
	char rel[256], dir[4096];

	if (!rel_of(p, rel, sizeof(rel)) || populated(rel) != 1)
		return 0;
	snprintf(dir, sizeof(dir), "%s/%s", cg.base, rel);
	log_info("proc", "%s: killing what is left in its cgroup", p->name);
	return write_file(dir, "cgroup.kill", "1") < 0 ? -errno : 1;
}

bool proc_cgroup_populated(const struct proc *p)
{
	char rel[256];

	return rel_of(p, rel, sizeof(rel)) && populated(rel) == 1;
}

void proc_cgroup_remove(const struct proc *p)
{
	char rel[256], dir[4096];

	if (!rel_of(p, rel, sizeof(rel)))
		return;
	snprintf(dir, sizeof(dir), "%s/%s", cg.base, rel);
	if (rmdir(dir) < 0 && errno == EBUSY) {
		(void)write_file(dir, "cgroup.kill", "1");
		return; /* gone later; the next spawn reuses it */
	}
	if (p->pool) {
		snprintf(dir, sizeof(dir), "%s/pools/%s", cg.base, p->pool->name);
		(void)rmdir(dir); /* the last member's goes with the pool */
	}
}

void proc_cgroup_record_write(const struct proc *p, struct jsonw *w)
{
	char rel[256], dir[4096], buf[1024], *s;

	if (!rel_of(p, rel, sizeof(rel)))
		return;
	snprintf(dir, sizeof(dir), "%s/%s", cg.base, rel);
	jsonw_key(w, "cpu_seconds");
	if (read_small(dir, "cpu.stat", buf, sizeof(buf)) == 0 && (s = strstr(buf, "usage_usec ")))
		jsonw_secs(w, strtod(s + 11, NULL) / 1e6);
	else
		jsonw_null(w);
	jsonw_key(w, "memory_bytes");
	if (cg.memory && read_small(dir, "memory.current", buf, sizeof(buf)) == 0)
		jsonw_int(w, strtoll(buf, NULL, 10));
	else
		jsonw_null(w); /* no memory controller here */
}

json_t *proc_cgroup_info(void)
{
	return json_pack("{s:b, s:s?, s:s?}", "enabled", cg.on, "path", cg.base, "why",
			 cg.on ? NULL : cg.why);
}

void proc_cgroup_cleanup(void)
{
	if (cg.base) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/pools", cg.base);
		(void)rmdir(dir);
		snprintf(dir, sizeof(dir), "%s/run", cg.base);
		(void)rmdir(dir);
	}
	free(cg.base);
	cg.base = NULL;
	cg.on = false;
}
