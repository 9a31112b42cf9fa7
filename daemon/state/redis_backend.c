/*
 * The redis state backend (state_backend = redis): every shared object lives
 * in a Redis server that several mpsupd share, under redis_prefix, each in
 * one hash slot ({name} hash tags: PREFIX{name} the meta hash, PREFIX{name}:d
 * its data, PREFIX{name}:j a queue's join wake-up list).
 *
 * Every op is one EVALSHA of one script (redis_script.lua; EVAL again when
 * the server answers NOSCRIPT, after a restart) on one asynchronous hiredis
 * connection: the event loop never waits for Redis. The hot ops (dict.set,
 * list.append, value.add...) try a short script of their own first (hot_ops). The request is parked
 * (park.c) until the reply comes; a client that leaves first just has its
 * answer dropped.
 *
 * Blocking waits (queue.get, queue.join, event.wait) run on a connection of
 * their own (at most max_waiters at once) with BLMOVE: a getter moves the
 * item into a list of its own (PREFIX{name}:f:HOST:N) and takes it from
 * there once answered; a getter that leaves is unblocked (CLIENT UNBLOCK)
 * and whatever it had moved goes back to the head of the queue. Joiners and
 * event waiters rotate a one-element list (BLMOVE L L), which wakes all of
 * them. Redis serves blocked clients in the order they blocked. A delete
 * leaves a tombstone where waiters block: they answer not_found.
 *
 * A private object keeps its owner's uid in Redis (checked by the script
 * against the caller's, sent after the mode); a scoped one lives while the
 * host that watches its process renews its lease (struct scoped).
 *
 * While Redis cannot be reached every state command answers `unavailable`
 * at once; the connection is retried with a backoff (0.1 s doubling to 5 s).
 *
 * This file: the backend interface and the commands. A call's command and
 * answer are in redis_call.c, ownership and scope in redis_own.c, blocking
 * waits in redis_wait.c, sending and the hot paths in redis_hot.c, the main
 * connection in redis_conn.c (redis_int.h).
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "scope.h"
#include "redis_int.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

/* --- the commands ---------------------------------------------------------------------- */

/* Push c's parameters following spec: '=' and the text (a string param
 * as it is, anything else as JSON), '' when absent; an array as its count
 * and its elements, an object as its count and its key, value pairs. */
static int push_params(struct rcall *rc, struct obj_call *c, const struct op_spec *spec)
{
	int r = 0;

	for (int i = 0; i < spec->n && r == 0; i++) {
		char type = spec->p[i].type;
		json_t *v, *e;
		const char *k;
		size_t n, klen;

		if (!obj_has(c, i)) {
			/* a required value that is absent was given as null */
			r = rc_pushs(rc, spec->p[i].optional || type != 'o' ? "" : "=null");
			continue;
		}
		if (type == 's') {
			k = obj_arg_str(c, i, &klen);
			r = rc_push(rc, '=', k, klen);
			continue;
		}
		if (!(v = obj_arg(c, i)))
			return -ENOMEM;
		if (type == 't' && request_timeout(c->r, v, &rc->timeout) < 0)
			return -EINVAL; /* answered */
		if (type != 'a' && type != 'O') {
			r = rc_push_json(rc, v, true);
			continue;
		}
		char count[24];
		snprintf(count, sizeof(count), "=%zu",
			 type == 'a' ? json_array_size(v) : json_object_size(v));
		r = rc_pushs(rc, count);
		if (type == 'a')
			json_array_foreach(v, n, e)
				r |= rc_push_json(rc, e, false);
		else
			json_object_keylen_foreach(v, k, klen, e)
				r |= rc_push(rc, 0, k, klen) | rc_push_json(rc, e, false);
	}
	return r;
}

/* TYPE.OP through the script. */
static enum cmd_ret redis_op(struct request *r, const struct type_op *t)
{
	const struct obj_op *op = t->op;
	struct obj_call c = { .r = r, .op = op };
	char buf[OBJ_NAME_MAX + 1];
	const char *name = obj_param_name(r, buf);
	struct rcall *rc;
	bool existing;
	int ret = 0;

	if (!name || obj_params_read(&c, &t->spec) < 0)
		goto done;
	/* as with local objects: only the state role creates by using */
	existing = (op->flags & OBJ_OP_EXISTING) || (r->conn && r->conn->role < ROLE_STATE);
	if (!(rc = rc_new(op->name, name, existing)) || rc_set_caller(rc, r->conn) < 0 ||
	    (ret = push_params(rc, &c, &t->spec)) < 0) {
		if (rc)
			rc_free(rc);
		if (ret != -EINVAL)
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
		goto done;
	}
	if (t->type == &lock_type || t->type == &rlock_type || t->type == &semaphore_type ||
	    t->type == &condition_type) {
		if (!r->conn || rc_push_owner(rc, r->conn->id) < 0) {
			rc_free(rc);
			request_error(r, MPSUP_E_INTERNAL, "out of memory");
			goto done;
		}
		rc->owned = t->type;
		rc->conn = r->conn;
	}
	/* a condition's waiter keeps its place in wait as it would in line (a
	 * hot script needs no ticket: it is made if the full script is asked) */
	rc->ticket_due = (rc->owned && strstr(op->name, ".acquire")) ||
			 strcmp(op->name, "queue.put") == 0 ||
			 strcmp(op->name, "condition.wait") == 0;
	/* refused before the script lets go of the lock: the caller keeps it
	 * (as locally; its waiting again for the lock is not refused) */
	if (strcmp(op->name, "condition.wait") == 0 &&
	    block_count(name) >= daemon_g.conf->max_waiters) {
		rc_free(rc);
		request_error(r, MPSUP_E_LIMIT, "%s: too many waiters (max_waiters = %u)", name,
			      daemon_g.conf->max_waiters);
		goto done;
	}
	rc->tname = t->type->name;
	rc->flags = op->flags;
	obj_call_done(&c);
	return rc_run(r, rc);
done:
	obj_call_done(&c);
	return CMD_DONE;
}

/* The `name` of an obj.* request; NULL after answering. */
static const char *obj_name(struct request *r)
{
	const char *name = json_string_value(json_object_get(r->params, "name"));

	if (!name || !name_valid(name, false)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: 'name' must be a valid object name",
			      r->cmd->name);
		return NULL;
	}
	return name;
}

static const char *const served_types[] = { "dict",      "list",    "value",     "queue",
					    "event",     "array",   "lock",      "rlock",
					    "semaphore", "barrier", "condition", NULL };

/* Check obj.create's options as the local type does (a throw-away object). */
static bool options_valid(struct request *r, const struct obj_type *type)
{
	struct obj tmp = { .type = type };
	json_t *opts = json_deep_copy(r->params);
	enum mpsup_err code;
	char err[256];

	if (!opts) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return false;
	}
	json_object_del(opts, "name");
	json_object_del(opts, "type");
	code = type->create(&tmp, opts, err, sizeof(err));
	json_decref(opts);
	if (code != MPSUP_OK) {
		request_error(r, code, "obj.create: %s", err);
		return false;
	}
	type->free(&tmp);
	return true;
}

/* obj.create's options for the script: type, typecode, init, maxsize,
 * then the items. */
static int push_create(struct rcall *rc, json_t *p, const char *tname)
{
	json_t *tc = json_object_get(p, "typecode"), *init = json_object_get(p, "init");
	json_t *max = json_object_get(p, "maxsize"), *items = json_object_get(p, "items"), *e;
	json_t *units = json_object_get(p, "value");
	char count[24];
	const char *k;
	size_t n, klen;
	int r = rc_push(rc, '=', tname, strlen(tname));

	if (strcmp(tname, "array") == 0) {
		/* its elements: init, or size zeros */
		items = init;
		init = NULL;
		max = json_object_get(p, "size");
	}
	if (strcmp(tname, "value") == 0 || strcmp(tname, "array") == 0)
		r |= rc_push(rc, '=', json_is_string(tc) ? json_string_value(tc) : "any",
			     json_is_string(tc) ? json_string_length(tc) : 3);
	else
		r |= rc_pushs(rc, "");
	r |= init ? rc_push_json(rc, init, true) : rc_pushs(rc, "");
	if (strcmp(tname, "queue") == 0)
		r |= max ? rc_push_json(rc, max, true) : rc_pushs(rc, "=0");
	else if (strcmp(tname, "array") == 0)
		r |= max ? rc_push_json(rc, max, true) : rc_pushs(rc, "");
	else if (strcmp(tname, "semaphore") == 0)
		r |= units ? rc_push_json(rc, units, true) : rc_pushs(rc, "=1");
	else if (strcmp(tname, "barrier") == 0)
		r |= json_object_get(p, "parties")
			     ? rc_push_json(rc, json_object_get(p, "parties"), true)
			     : rc_pushs(rc, "=1");
	else
		r |= rc_pushs(rc, "");
	snprintf(count, sizeof(count), "=%zu",
		 json_is_object(items) ? json_object_size(items) : json_array_size(items));
	r |= rc_pushs(rc, count);
	if (json_is_object(items))
		json_object_keylen_foreach(items, k, klen, e)
			r |= rc_push(rc, 0, k, klen) | rc_push_json(rc, e, false);
	else if (json_is_array(items))
		json_array_foreach(items, n, e)
			r |= rc_push_json(rc, e, false);
	return r;
}

/* obj.create's tail for the script: the owner uid of a private object
 * ('?' for a bad access, checked after the existence), the scope mark and
 * the lease. */
static int push_access(struct rcall *rc, struct request *r, struct scoped *sc)
{
	json_t *a = json_object_get(r->params, "access");
	const char *s = json_string_value(a);
	char buf[64];
	int ret;

	if (!a || (s && strcmp(s, "shared") == 0))
		ret = rc_pushs(rc, "");
	else if (!s || strcmp(s, "private") != 0)
		ret = rc_pushs(rc, "?");
	else {
		/* the daemon's own (no peer) is nobody's: admins only */
		if (r->conn)
			snprintf(buf, sizeof(buf), "=%u", (unsigned)r->conn->uid);
		else
			snprintf(buf, sizeof(buf), "=-1");
		ret = rc_pushs(rc, buf);
	}
	if (sc) {
		ret |= rc_push(rc, '=', sc->mark, strlen(sc->mark));
		snprintf(buf, sizeof(buf), "=%lld", (long long)(rs.lease * 1000));
		ret |= rc_pushs(rc, buf);
	} else {
		ret |= rc_pushs(rc, "") | rc_pushs(rc, "");
	}
	return ret;
}

/* obj.create's scope "process": a record bound to the peer's process, or
 * NULL (no scope asked for, or answered when it cannot be: *ret_err). */
static struct scoped *scoped_new(struct request *r, const char *name, int *ret_err)
{
	json_t *v = json_object_get(r->params, "scope");
	struct scoped *sc;
	int e;

	*ret_err = 0;
	if (!v)
		return NULL;
	*ret_err = -1;
	if (!json_is_string(v) || strcmp(json_string_value(v), "process") != 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: scope must be \"process\"");
		return NULL;
	}
	if (!r->conn) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: no process to scope to");
		return NULL;
	}
	/* this host watches at most max_objects scoped objects */
	if (rs.n_scoped >= daemon_g.conf->max_objects) {
		request_error(r, MPSUP_E_LIMIT,
			      "obj.create: too many scoped objects on this host (max_objects = %u)",
			      daemon_g.conf->max_objects);
		return NULL;
	}
	if (!(sc = calloc(1, sizeof(*sc)))) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return NULL;
	}
	if ((e = scope_bind(r->conn, &sc->link, scoped_gone)) < 0) {
		free(sc);
		if (e == -ESRCH)
			request_error(r, MPSUP_E_CONFLICT,
				      "obj.create: the requesting process has exited");
		else if (e == -EMFILE)
			request_error(
				r, MPSUP_E_LIMIT,
				"obj.create: not enough file descriptors to watch the process");
		else
			request_error(r, MPSUP_E_INTERNAL, "obj.create: %s", strerror(-e));
		return NULL;
	}
	snprintf(sc->name, sizeof(sc->name), "%s", name);
	snprintf(sc->mark, sizeof(sc->mark), "%s:%llu", rs.host_id, ++rs.next_scope);
	LIST_INSERT_HEAD(&rs.scoped, sc, entry);
	rs.n_scoped++;
	*ret_err = 0;
	return sc;
}

static enum cmd_ret redis_obj_create(struct request *r)
{
	const char *name = obj_name(r), *tname;
	const struct obj_type *type;
	struct scoped *sc;
	struct rcall *rc;
	size_t i;
	int e;

	if (!name)
		return CMD_DONE;
	tname = json_string_value(json_object_get(r->params, "type"));
	if (!tname || !(type = obj_type_find(tname))) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: 'type' must be a type name");
		return CMD_DONE;
	}
	for (i = 0; served_types[i] && strcmp(served_types[i], tname) != 0; i++)
		;
	if (!served_types[i]) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "obj.create: the redis state backend does not serve %s objects",
			      tname);
		return CMD_DONE;
	}
	if (!options_valid(r, type))
		return CMD_DONE;
	if (!(sc = scoped_new(r, name, &e)) && e < 0)
		return CMD_DONE;
	if (!(rc = rc_new("obj.create", name, false)) || rc_set_caller(rc, r->conn) < 0 ||
	    push_create(rc, r->params, tname) < 0 || push_access(rc, r, sc) < 0) {
		if (rc)
			rc_free(rc);
		if (sc)
			scoped_settle(sc);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	rc->scoped = sc; /* kept once the object is made (rc_ok) */
	rc->tname = type->name;
	rc->flags = CMD_MUTATES;
	return rc_run(r, rc);
}

/* obj.get and obj.delete: the script does it all. */
static enum cmd_ret redis_obj_named(struct request *r)
{
	const char *name;
	struct rcall *rc;

	if (request_unpack(r, "{s:s}", "name", &name) < 0 || !(name = obj_name(r)))
		return CMD_DONE;
	if (!(rc = rc_new(r->cmd->name, name, true)) || rc_set_caller(rc, r->conn) < 0) {
		if (rc)
			rc_free(rc);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	return rc_run(r, rc);
}

/* obj.list: SCAN every node for the meta keys (PREFIX{name}), then script
 * calls for their types and sizes: one for them all on a single server;
 * one per object in a cluster, where a script's keys share one slot. */
struct listing {
	struct park park;
	bool gone, failed;
	const struct obj_type *type; /* the filter, or NULL */
	json_t *names;
	unsigned node;     /* the node being scanned */
	unsigned long gen; /* the nodes' connections lost when it began */
	unsigned pending;  /* size calls not answered yet */
	size_t next;       /* the first name not asked about yet */
	char **types;      /* per name: its type ("" hidden), its size */
	long long *sizes;
	char who[24]; /* the caller's uid, "" for an admin: private objects */
};

/* The names [first, first + n) of a listing, asked in one call. */
struct list_part {
	struct listing *l;
	size_t first, n;
};

static const char list_script[] =
	"local out, who = {}, ARGV[1]\n"
	"for i = 1, #KEYS, 2 do\n"
	"  local meta = redis.call('HMGET', KEYS[i], 't', 'o', 'sh')\n"
	"  local t, n = meta[1] or '', 0\n"
	"  -- hidden: another uid's private object, a scoped one whose host is gone\n"
	"  if (meta[2] and who ~= '' and meta[2] ~= who) or (meta[3] and\n"
	"      redis.call('EXISTS', KEYS[i] .. ':l:' .. string.match(meta[3], '^[^:]+')) == 0) "
	"then\n"
	"    t = ''\n"
	"  end\n"
	"  if t == 'dict' then n = redis.call('HLEN', KEYS[i + 1])\n"
	"  elseif t == 'list' or t == 'queue' then n = redis.call('LLEN', KEYS[i + 1])\n"
	"  elseif t == 'value' then n = 1\n"
	"  elseif t == 'event' then n = redis.call('EXISTS', KEYS[i + 1])\n"
	"  elseif t == 'rlock' or t == 'condition' then n = redis.call('HLEN', KEYS[i + 1])\n"
	"  elseif t == 'array' then n = redis.call('LLEN', KEYS[i + 1])\n"
	"  elseif t == 'barrier' then n = tonumber(redis.call('HGET', KEYS[i], 'c'))\n"
	"  elseif t == 'lock' or t == 'semaphore' then\n"
	"    for _, c in ipairs(redis.call('HVALS', KEYS[i + 1])) do n = n + tonumber(c) end\n"
	"  end\n"
	"  out[#out + 1] = t\n"
	"  out[#out + 1] = n\n"
	"end\n"
	"return out\n";

static void listing_free(struct listing *l)
{
	for (size_t i = 0; l->types && i < json_array_size(l->names); i++)
		free(l->types[i]);
	free(l->types);
	free(l->sizes);
	json_decref(l->names);
	free(l);
}

static void listing_fail(struct listing *l, const char *what)
{
	if (!l->gone && park_kept(&l->park))
		request_error(park_take(&l->park), MPSUP_E_UNAVAILABLE, "obj.list: %s", what);
	listing_free(l);
}

static int listing_cmp(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
		      json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/* Every size came: answer, sorted by name. */
static void listing_answer(struct listing *l)
{
	size_t names = json_array_size(l->names), n = 0;
	json_t *out, **v;

	if (l->gone || l->failed)
		return listing_fail(l, "redis did not answer");
	if (!(v = calloc(names + 1, sizeof(*v))))
		return listing_fail(l, "out of memory");
	for (size_t i = 0; i < names; i++) {
		const char *name = json_string_value(json_array_get(l->names, i));
		const char *t = l->types[i];

		if (!t || !*t || (l->type && strcmp(t, l->type->name) != 0))
			continue;
		v[n++] = json_pack("{s:s, s:s, s:I, s:i}", "name", name, "type", t, "size",
				   (json_int_t)l->sizes[i], "waiters", (int)block_count(name));
	}
	qsort(v, n, sizeof(*v), listing_cmp);
	out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, v[i]);
	free(v);
	request_ok(park_take(&l->park), out);
	listing_free(l);
}

static bool listing_ask(struct listing *l, size_t first, size_t n);

/*
 * Keep at most LIST_WINDOW size calls in flight (a cluster asks one per
 * object: a listing of many objects would otherwise queue them all in
 * hiredis's output at once); answer once the last has come.
 */
#define LIST_WINDOW 64
static void listing_pump(struct listing *l)
{
	size_t names = json_array_size(l->names);
	size_t per = rs.nodes.cluster ? 1 : names;

	while (!l->failed && !l->gone && l->next < names && l->pending < LIST_WINDOW) {
		if (!listing_ask(l, l->next, per)) {
			l->failed = true;
			break;
		}
		l->next += per;
		l->pending++;
	}
	if (l->pending == 0)
		listing_answer(l);
}

/* The types and sizes of a part came. */
static void listing_sizes(redisAsyncContext *ac, void *reply, void *priv)
{
	struct list_part *pt = priv;
	struct listing *l = pt->l;
	redisReply *rp = reply;

	(void)ac;
	if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 * pt->n)
		l->failed = true;
	for (size_t i = 0; !l->failed && i < pt->n; i++) {
		const redisReply *t = rp->element[2 * i], *z = rp->element[2 * i + 1];

		if (t->type == REDIS_REPLY_STRING &&
		    !(l->types[pt->first + i] = strndup(t->str, t->len)))
			l->failed = true;
		l->sizes[pt->first + i] = z->type == REDIS_REPLY_INTEGER ? z->integer : 0;
	}
	free(pt);
	l->pending--;
	listing_pump(l);
}

/* Ask for the types and sizes of names [first, first + n). */
static bool listing_ask(struct listing *l, size_t first, size_t n)
{
	const char **argv = calloc(2 * n + 4, sizeof(*argv));
	size_t *lens = calloc(2 * n + 4, sizeof(*lens)), k = 0;
	char **keys = calloc(2 * n + 1, sizeof(*keys)), count[24];
	struct list_part *pt = malloc(sizeof(*pt));
	redisAsyncContext *ac = NULL;
	bool ok = argv && lens && keys && pt;

	snprintf(count, sizeof(count), "%zu", 2 * n);
	for (size_t i = 0; i < n && ok; i++) {
		const char *name = json_string_value(json_array_get(l->names, first + i));

		ok = asprintf(&keys[k++], "%s{%s}", rs.prefix, name) >= 0 &&
		     asprintf(&keys[k++], "%s{%s}:d", rs.prefix, name) >= 0;
	}
	if (ok && (ac = rs_ac(keys[0], strlen(keys[0])))) {
		argv[0] = "EVAL";
		argv[1] = list_script;
		argv[2] = count;
		for (size_t i = 0; i < 2 * n + 3; i++) {
			if (i >= 3)
				argv[i] = keys[i - 3];
			lens[i] = strlen(argv[i]);
		}
		argv[2 * n + 3] = l->who;
		lens[2 * n + 3] = strlen(l->who);
		*pt = (struct list_part){ l, first, n };
		ok = redisAsyncCommandArgv(ac, listing_sizes, pt, (int)(2 * n + 4), argv, lens) ==
		     REDIS_OK;
		if (ok)
			pt = NULL;
	}
	for (size_t i = 0; keys && i < k; i++)
		free(keys[i]);
	free(keys);
	free(argv);
	free(lens);
	free(pt);
	return ok && ac;
}

/* After the last SCAN page: ask for every name's type and size. */
static void listing_sizes_ask(struct listing *l)
{
	size_t names = json_array_size(l->names);

	if (names == 0)
		return listing_answer(l);
	l->types = calloc(names, sizeof(*l->types));
	l->sizes = calloc(names, sizeof(*l->sizes));
	if (!l->types || !l->sizes)
		return listing_fail(l, "out of memory");
	listing_pump(l);
}

static void listing_scan(redisAsyncContext *ac, void *reply, void *priv);

/* Ask for the next SCAN page (the first of a node when cursor is NULL),
 * the next node's after a node's last, the sizes after the last node's. */
static void listing_next(struct listing *l, const char *cursor)
{
	redisAsyncContext *ac;

	/* a page a drained connection answered after a MOVED: the nodes (and
	 * their order) may have changed since */
	if (rs.nodes.lost != l->gen)
		return listing_fail(l, "the cluster's connections were lost; retry");
	if (cursor && strcmp(cursor, "0") == 0) {
		if (++l->node >= rs.nodes.n)
			return listing_sizes_ask(l);
		cursor = NULL;
	}
	ac = l->node < rs.nodes.n ? rs.nodes.node[l->node].ac : NULL;
	if (!ac || redisAsyncCommand(ac, listing_scan, l, "SCAN %s MATCH %s{* COUNT 1000 TYPE hash",
				     cursor ? cursor : "0", rs.prefix) != REDIS_OK)
		listing_fail(l, "redis cannot be reached");
}

/* A SCAN page: keep the names of meta keys (PREFIX{name}, nothing after). */
static void listing_scan(redisAsyncContext *ac, void *reply, void *priv)
{
	struct listing *l = priv;
	redisReply *rp = reply, *page;

	(void)ac;
	if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
	    rp->element[0]->type != REDIS_REPLY_STRING)
		return listing_fail(l, "redis did not answer");
	if (l->gone)
		return listing_free(l);
	page = rp->element[1];
	for (size_t i = 0; page->type == REDIS_REPLY_ARRAY && i < page->elements; i++) {
		char name[OBJ_NAME_MAX + 1];

		if (meta_key_name(page->element[i], name))
			json_array_append_new(l->names, json_string(name));
	}
	if (json_array_size(l->names) > daemon_g.conf->max_objects)
		return listing_fail(l, "more objects than max_objects");
	listing_next(l, rp->element[0]->str);
}

static void listing_cancel(struct park *p)
{
	PARK_OWNER(p, struct listing, park)->gone = true;
}

static enum cmd_ret redis_obj_list(struct request *r)
{
	const char *tname = NULL;
	struct listing *l;

	if (request_unpack(r, "{s?s}", "type", &tname) < 0)
		return CMD_DONE;
	if (!redis_nodes_any(&rs.nodes)) {
		request_error(r, MPSUP_E_UNAVAILABLE, "obj.list: redis cannot be reached");
		return CMD_DONE;
	}
	if (!(l = calloc(1, sizeof(*l))) || !(l->names = json_array()) ||
	    park_keep(&l->park, r, NULL, -1, NULL, listing_cancel) < 0) {
		if (l)
			json_decref(l->names);
		free(l);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	if (r->conn && r->conn->role < ROLE_ADMIN)
		snprintf(l->who, sizeof(l->who), "%u", (unsigned)r->conn->uid);
	if (tname && !(l->type = obj_type_find(tname))) {
		request_error(park_take(&l->park), MPSUP_E_BAD_REQUEST,
			      "obj.list: unknown type '%.64s'", tname);
		listing_free(l);
		return CMD_DONE;
	}
	l->gen = rs.nodes.lost;
	listing_next(l, NULL);
	return CMD_WAIT;
}

const struct state_backend redis_state_backend = {
	.name = "redis",
	.op = redis_op,
	.obj_create = redis_obj_create,
	.obj_delete = redis_obj_named,
	.obj_get = redis_obj_named,
	.obj_list = redis_obj_list,
};
