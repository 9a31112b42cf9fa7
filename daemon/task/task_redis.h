/*
 * The redis task queue (task_queue = redis, docs/tasks.md): the hooks that
 * task.c and task_cmd.c call for a pool whose tasks go through Redis.
 */
#ifndef MPSUPD_TASK_REDIS_H
#define MPSUPD_TASK_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "command.h"
#include "task_int.h"

/* Whether tp's tasks go through Redis (its pool has task_queue = redis). */
bool task_redis_pool(const struct task_pool *tp);
/* Before pool.map/imap/submit of n tasks on a redis pool: answers and
 * returns true when Redis cannot be reached now (`unavailable`) or this
 * host's tasks waiting for their answers would pass max_pending (`limit`). */
bool task_redis_refuse(struct request *r, struct task_pool *tp, size_t n);
/* Send t (a task of this host's client) to its pool's stream; its answer
 * comes back through this host's result list and ends it (task_end). */
void task_redis_push(struct task_pool *tp, struct task *t);
/* t, a task read from Redis (t->remote), ended: keep its answer for the
 * host that sent it; once all the tasks of its stream entry ended, their
 * answers are stored and the entry acknowledged; t is freed. */
void task_redis_end(struct task *t, json_t *result, enum mpsup_err code, const char *msg);
/* The text of t's item (t->remote), *ret_len bytes. */
const char *task_redis_item(const struct task *t, size_t *ret_len);
/* t (t->remote) was answered with the result text[0..len): kept as text
 * for its sender, then t ends (task_end) and is freed. */
void task_redis_end_text(struct task *t, const char *text, size_t len);
/* tp may have room for more tasks: read some from its stream. */
void task_redis_pull(struct task_pool *tp);
/* Map m is freed: its tasks still in Redis are forgotten (their answers,
 * if any come, are dropped). */
void task_redis_map_gone(struct map *m);
/* tp's pool is removed: its tasks in Redis fail, its connections close. */
void task_redis_pool_gone(struct task_pool *tp);
/* daemon.info's task_queue member. */
void task_redis_info(json_t *info);
/* Start (-1: a pool has task_queue = redis and Redis does not answer) and
 * stop (tasks still in Redis fail with shutting_down). */
int task_redis_start(const struct conf *conf);
void task_redis_stop(void);

#endif
