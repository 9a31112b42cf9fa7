/*
 * The shared-state namespace and the local backend: named objects in one
 * hash table and the bytes they count against max_memory, answering an op,
 * the generic obj.* commands, and TYPE.OP on this daemon's objects (name
 * lookup, auto-creation or not_found (OBJ_OP_EXISTING) and type checks
 * happen here, once; the parameters are read by obj_params.c). The command
 * table, the choice of backend and replay are state_module.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "container.h"
#include "daemon.h"
#include "hash.h"
#include "events.h"
#include "jsonw.h"
#include "log.h"
#include "obj.h"
#include "obj_int.h"
#include "persist.h"
#include "conn.h" /* after obj.h: conn.h needs struct conn declared */

/* --- the namespace --------------------------------------------------------- */

static struct obj **buckets;
static size_t n_buckets;
static unsigned n_objects;
static uint64_t mem_used;

/* What an object costs besides its contents (struct, name, hash slot). */
#define OBJ_MEM_OVERHEAD (sizeof(struct obj) + 2 * sizeof(void *))
#define MEM_VALUE OBJ_MEM_VALUE
#define MEM_NODE OBJ_MEM_NODE
#define MEM_SLOT OBJ_MEM_SLOT

bool obj_restoring;

struct obj *obj_find(const char *name)
{
	uint32_t h;

	if (!n_buckets)
		return NULL;
	h = hash_fnv1a32(name);
	for (struct obj *o = buckets[h & (n_buckets - 1)]; o; o = o->next)
		if (o->hash == h && strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

/* Double the bucket array (or make the first one). */
static int table_grow(void)
{
	size_t n = n_buckets ? n_buckets * 2 : 64;
	struct obj **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n_buckets; i++) {
		struct obj *o, *next;
		for (o = buckets[i]; o; o = next) {
			next = o->next;
			o->next = b[o->hash & (n - 1)];
			b[o->hash & (n - 1)] = o;
		}
	}
	free(buckets);
	buckets = b;
	n_buckets = n;
	return 0;
}

unsigned obj_count(void)
{
	return n_objects;
}

/* o's access and, when persisted state is loaded, its owner's uid, from
 * the generic options; -1 with err. */
static int owner_read(struct obj *o, json_t *opts, char *err, size_t errlen)
{
	json_t *v = json_object_get(opts, "access");

	if (v) {
		const char *s = json_string_value(v);
		if (!s || (strcmp(s, "private") != 0 && strcmp(s, "shared") != 0)) {
			snprintf(err, errlen, "access must be \"private\" or \"shared\"");
			return -1;
		}
		o->owner.private = strcmp(s, "private") == 0;
	}
	if ((v = json_object_get(opts, "owner")) && obj_restoring) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > (json_int_t)UINT32_MAX - 1) {
			snprintf(err, errlen, "bad owner");
			return -1;
		}
		o->owner.set = true;
		o->owner.uid = (uid_t)json_integer_value(v);
	}
	return 0;
}

struct obj *obj_create(const char *name, const struct obj_type *type, json_t *opts,
		       enum mpsup_err *ret_code, char *err, size_t errlen)
{
	struct obj *o;
	enum mpsup_err code;

	if (n_objects >= daemon_g.conf->max_objects && !obj_restoring) {
		*ret_code = MPSUP_E_LIMIT;
		snprintf(err, errlen, "too many objects (max_objects = %u)",
			 daemon_g.conf->max_objects);
		return NULL;
	}
	if ((n_objects >= n_buckets && table_grow() < 0) || !(o = calloc(1, sizeof(*o)))) {
		*ret_code = MPSUP_E_INTERNAL;
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(o->name, sizeof(o->name), "%s", name);
	o->type = type;
	for (int i = 0; i < OBJ_WAITQS; i++)
		waitq_init(&o->wq[i]);
	code = owner_read(o, opts, err, errlen) < 0 ? MPSUP_E_BAD_REQUEST
						    : type->create(o, opts, err, errlen);
	if (code != MPSUP_OK) {
		free(o);
		*ret_code = code;
		return NULL;
	}
	o->hash = hash_fnv1a32(o->name);
	o->next = buckets[o->hash & (n_buckets - 1)];
	buckets[o->hash & (n_buckets - 1)] = o;
	n_objects++;
	obj_mem_adjust(o, OBJ_MEM_OVERHEAD + strlen(o->name) + (type->mem ? type->mem(o) : 0), 0);
	return o;
}

void obj_log_request(const struct obj *o, struct request *r)
{
	if (obj_persisted(o))
		persist_log_request(r);
}

void obj_delete(struct obj *o)
{
	char msg[OBJ_NAME_MAX + 32];

	scope_unbind(&o->scope);
	for (struct obj **p = &buckets[o->hash & (n_buckets - 1)]; *p; p = &(*p)->next)
		if (*p == o) {
			*p = o->next;
			break;
		}
	n_objects--;
	/* The type's state goes first (locks drop their owners' close hooks),
	 * so answering the waiters cannot lead back into it. */
	o->type->free(o);
	o->data = NULL;
	mem_used -= o->mem; /* what free() did not give back already */
	snprintf(msg, sizeof(msg), "%s was deleted", o->name);
	waitq_fail_all(o, MPSUP_E_NOT_FOUND, msg);
	free(o);
}

void obj_foreach(void (*fn)(struct obj *o, void *arg), void *arg)
{
	for (size_t i = 0; i < n_buckets; i++)
		for (struct obj *o = buckets[i]; o; o = o->next)
			fn(o, arg);
}

void obj_delete_all(void)
{
	for (size_t i = 0; i < n_buckets; i++)
		while (buckets[i])
			obj_delete(buckets[i]);
	free(buckets);
	buckets = NULL;
	n_buckets = 0;
}

/* --- data bytes (max_memory) ---------------------------------------------------- */

size_t obj_mem_of(json_t *v)
{
	size_t n = MEM_NODE, i, klen;
	const char *k;
	json_t *e;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		json_object_keylen_foreach(v, k, klen, e)
			n += obj_mem_entry(klen, e);
		(void)k;
		return n;
	case JSON_ARRAY:
		json_array_foreach(v, i, e)
			n += obj_mem_elem(e);
		return n;
	case JSON_STRING: return n + json_string_length(v);
	default: return MEM_VALUE;
	}
}

size_t obj_mem_entry(size_t key_len, json_t *v)
{
	return MEM_NODE + key_len + obj_mem_of(v);
}

size_t obj_mem_elem(json_t *v)
{
	return MEM_SLOT + obj_mem_of(v);
}

uint64_t obj_mem_used(void)
{
	return mem_used;
}

void obj_mem_adjust(struct obj *o, size_t add, size_t sub)
{
	static bool warned;
	uint64_t max = daemon_g.conf ? daemon_g.conf->max_memory : 0;

	o->mem += add;
	o->mem -= sub;
	mem_used += add;
	mem_used -= sub;
	/* Persisted state is loaded whatever its size; say so once. */
	if (obj_restoring && max && mem_used > max && !warned) {
		warned = true;
		log_warn("state",
			 "the persisted state holds more than max_memory (%llu bytes): "
			 "starting anyway; mutations that add data get `limit` until some is "
			 "deleted",
			 (unsigned long long)max);
	}
}

void obj_mem_recount(struct obj *o)
{
	size_t now = OBJ_MEM_OVERHEAD + strlen(o->name) + (o->type->mem ? o->type->mem(o) : 0);

	obj_mem_adjust(o, now, o->mem);
}

/* Room for adding bytes of data under max_memory? false after answering
 * `limit` (nothing changed yet). Persisted state loads whatever it holds. */
static bool mem_room(struct request *r, size_t adding)
{
	uint64_t max = daemon_g.conf->max_memory;

	if (!max || obj_restoring || !r->conn || mem_used + adding <= max)
		return true;
	request_error(r, MPSUP_E_LIMIT,
		      "%s: max_memory (%llu bytes) reached: shared-state data uses %llu bytes and "
		      "this adds up to %zu; delete something first",
		      r->cmd->name, (unsigned long long)max, (unsigned long long)mem_used, adding);
	return false;
}

/* What parameter m may add when stored (as obj_mem_elem() counts it). */
static size_t member_mem(const struct mpsup_member *m)
{
	if (m->v)
		return obj_mem_elem(m->v);
	return MEM_SLOT + (m->type == JSON_STRING ? MEM_NODE + m->str_len : MEM_VALUE);
}

/* What the data parameters of a call may add (its values and keys). */
static size_t call_mem(const struct obj_call *c)
{
	size_t n = 0;

	for (int i = 0; i < OBJ_MAX_PARAMS; i++)
		if (c->has[i])
			n += member_mem(c->arg[i]);
	return n;
}

/* --- answering --------------------------------------------------------------- */

void obj_changed(const struct obj *o, const char *op)
{
	if (!events_wanted(TOPIC_OBJECT))
		return;
	/* a private object's events reach its owner's uid and admins only */
	events_publish_visible(TOPIC_OBJECT, o->owner.private ? events_visible_access : NULL,
			       &o->owner,
			       json_pack("{s:s, s:s, s:s, s:s}", "event", "object.changed", "name",
					 o->name, "type", o->type->name, "op", op));
}

void obj_ok(struct obj_call *c, json_t *result)
{
	if (c->replay) {
		json_decref(result);
		return;
	}
	/* Log and publish before answering: the answer may resume the
	 * connection, and must not leave before its record (persist.h). */
	if (c->op && (c->op->flags & CMD_MUTATES)) {
		if (!(c->op->flags & OBJ_OP_LOGS_ITSELF))
			obj_log_request(c->o, c->r);
		obj_changed(c->o, strchr(c->op->name, '.') + 1); /* the op */
	}
	request_ok(c->r, result);
}

void obj_ok_text(struct obj_call *c, struct jsonw *w)
{
	if (c->replay)
		jsonw_free(w);
	else
		request_ok_text(c->r, w);
}

void obj_error(struct obj_call *c, enum mpsup_err code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->replay) {
		c->failed = true;
		snprintf(c->err, c->errlen, "%s: %s", mpsup_err_name(code), msg);
		return;
	}
	request_error(c->r, code, "%s", msg);
}

/* --- TYPE.OP ----------------------------------------------------------------------- */

/* Find c's object called name, or create it (auto-creation); false after
 * answering. */
static bool call_object(struct obj_call *c, const struct obj_type *type, const char *name)
{
	struct request *r = c->r;
	const struct obj_op *op = c->op;

	c->o = obj_find(name);
	if (c->o && request_access(r, &c->o->owner) != ACCESS_OK) {
		/* private: as if missing, and its name cannot be taken */
		request_error(r, MPSUP_E_NOT_FOUND, "no %s named %s", type->name, name);
		return false;
	}
	if (!c->o) {
		enum mpsup_err code;
		char err[256];

		/* A pure read, or a type without defaults: nothing to create. */
		if (op->flags & OBJ_OP_EXISTING) {
			request_error(r, MPSUP_E_NOT_FOUND, "no %s named %s%s", type->name, name,
				      (op->flags & (CMD_MUTATES | CMD_MAY_BLOCK))
					      ? " (create it with obj.create)"
					      : "");
			return false;
		}
		/* Auto-creation makes an object: the state role's right, even
		 * when the op only reads. A read-only peer sees a missing
		 * object as missing (no conn: replay and unit paths). */
		if (r->conn && r->conn->role < ROLE_STATE) {
			request_error(r, MPSUP_E_NOT_FOUND,
				      "no object %s; creating one needs the state role", name);
			return false;
		}
		/* Creating a persisted object is a mutation, even for a read. */
		if (type->dump && !persist_writable(r))
			return false;
		if (!mem_room(r, OBJ_MEM_OVERHEAD + strlen(name) +
					 ((op->flags & OBJ_OP_GROWS) ? call_mem(c) : 0)))
			return false;
		c->o = obj_create(name, type, NULL, &code, err, sizeof(err));
		if (!c->o) {
			request_error(r, code, "%s: %s", name, err);
			return false;
		}
		if (type->dump) {
			json_t *p = json_pack("{s:s, s:s}", "name", name, "type", type->name);
			persist_log("obj.create", p);
			json_decref(p);
		}
		obj_changed(c->o, "create");
	} else if (c->o->type != type) {
		request_error(r, MPSUP_E_WRONG_TYPE, "%s is a %s, not a %s", name, c->o->type->name,
			      type->name);
		return false;
	} else if ((op->flags & CMD_MUTATES) && type->dump && !persist_writable(r)) {
		return false;
	} else if ((op->flags & OBJ_OP_GROWS) && !mem_room(r, call_mem(c))) {
		return false;
	}
	return true;
}

/* Run TYPE.OP (t) for r. */
static enum cmd_ret op_run(struct request *r, const struct type_op *t)
{
	const struct obj_type *type = t->type;
	const struct obj_op *op = t->op;
	struct obj_call c;
	char buf[OBJ_NAME_MAX + 1];
	const char *name = obj_param_name(r, buf);
	enum cmd_ret ret = CMD_DONE;

	obj_call_init(&c, r, op);

	if (!name)
		return CMD_DONE;
	/* While the log cannot be written a mutation is refused before
	 * anything of the state shows in its answer, and so is any other
	 * request about a name an unwritten record changed (persist.h). */
	if ((op->flags & CMD_MUTATES) && type->dump && !persist_writable(r))
		return CMD_DONE;
	if (!persist_read(r, name))
		return CMD_DONE;
	r->durable = type->dump != NULL;
	if (obj_params_read(&c, &t->spec) == 0 && call_object(&c, type, name))
		ret = op->fn(&c);
	obj_call_done(&c);
	return ret;
}

/* --- obj.* ---------------------------------------------------------------------------- */

/* Its creator's process exited: a scoped object goes (waiters get
 * not_found, holders lose their hold), as on obj.delete. */
static void obj_scope_gone(struct scope_link *l)
{
	struct obj *o = CONTAINER_OF(l, struct obj, scope);

	obj_changed(o, "delete");
	obj_delete(o);
}

/* obj.create's scope: absent (false) or "process" (true); -1 after
 * answering bad_request. */
static int create_scope(struct request *r)
{
	json_t *v = json_object_get(r->params, "scope");

	if (!v)
		return 0;
	if (!json_is_string(v) || strcmp(json_string_value(v), "process") != 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: scope must be \"process\"",
			      r->cmd->name);
		return -1;
	}
	if (!r->conn) { /* the daemon's own requests have no process */
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: no process to scope to", r->cmd->name);
		return -1;
	}
	return 1;
}

/* Bind o to r's peer process; answers and deletes o when it cannot be. */
static int create_bind(struct request *r, struct obj *o)
{
	int e = scope_bind(r->conn, &o->scope, obj_scope_gone);

	if (e == 0)
		return 0;
	obj_delete(o);
	if (e == -ESRCH)
		request_error(r, MPSUP_E_CONFLICT, "obj.create: the requesting process has exited");
	else if (e == -EMFILE)
		request_error(r, MPSUP_E_LIMIT,
			      "obj.create: not enough file descriptors to watch the process");
	else
		request_error(r, MPSUP_E_INTERNAL, "obj.create: %s", strerror(-e));
	return -1;
}

/* Log obj.create: a private object's record names its owner's uid, which
 * the request line does not hold. */
static void create_log(struct request *r, struct obj *o)
{
	json_t *p;

	if (!o->owner.private || !o->owner.set) {
		obj_log_request(o, r);
		return;
	}
	if (!obj_persisted(o) || !(p = json_copy(r->params)))
		return;
	json_object_set_new(p, "owner", json_integer((json_int_t)o->owner.uid));
	persist_log("obj.create", p);
	json_decref(p);
}

/* obj.create {name, type, scope?, access?, ...options} -> {created} */
static enum cmd_ret obj_create_local(struct request *r)
{
	char buf[OBJ_NAME_MAX + 1];
	const char *name = obj_param_name(r, buf), *tname;
	const struct obj_type *type;
	enum mpsup_err code;
	char err[256];
	struct obj *o;
	int scoped;

	if (!name || !persist_read(r, name))
		return CMD_DONE;
	r->durable = true;
	if ((scoped = create_scope(r)) < 0)
		return CMD_DONE;
	tname = json_string_value(json_object_get(r->params, "type"));
	if (!tname) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: 'type' must be a string");
		return CMD_DONE;
	}
	if (!(type = obj_type_find(tname))) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.create: unknown type '%.64s'", tname);
		return CMD_DONE;
	}
	if ((o = obj_find(name)) && request_access(r, &o->owner) != ACCESS_OK) {
		request_error(r, MPSUP_E_NOT_FOUND, "no object named %s (a private one)", name);
		return CMD_DONE;
	}
	if (o) {
		if (o->type != type)
			request_error(r, MPSUP_E_EXISTS, "%s exists as a %s", name, o->type->name);
		else if (!type->options_equal(o, r->params))
			request_error(r, MPSUP_E_EXISTS, "%s exists with other options", name);
		else
			request_ok(r, json_pack("{s:b}", "created", 0));
		return CMD_DONE;
	}
	if (type->dump && !persist_writable(r))
		return CMD_DONE;
	if (!mem_room(r, OBJ_MEM_OVERHEAD + strlen(name) + obj_mem_of(r->params)))
		return CMD_DONE;
	if (!(o = obj_create(name, type, r->params, &code, err, sizeof(err)))) {
		request_error(r, code, "obj.create: %s", err);
		return CMD_DONE;
	}
	/* Options such as an array's size cost more than their text: undo
	 * what the estimate let through (nothing was logged or published). */
	if (r->conn && daemon_g.conf->max_memory && mem_used > daemon_g.conf->max_memory) {
		size_t took = o->mem;

		obj_delete(o);
		mem_room(r, took); /* answers limit: the count is back, took does not fit */
		return CMD_DONE;
	}
	if (r->conn) {
		o->owner.set = true;
		o->owner.uid = r->conn->uid;
	}
	if (scoped && create_bind(r, o) < 0)
		return CMD_DONE;
	create_log(r, o);
	obj_changed(o, "create");
	request_ok(r, json_pack("{s:b}", "created", 1));
	return CMD_DONE;
}

static int obj_name_cmp(const void *a, const void *b)
{
	const struct obj *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* obj.list {type?} -> [{name, type, size, waiters}] sorted by name */
static enum cmd_ret obj_list_local(struct request *r)
{
	const char *tname = NULL;
	const struct obj_type *type = NULL;
	struct obj **all;
	size_t n = 0;
	json_t *list;

	if (request_unpack(r, "{s?s}", "type", &tname) < 0)
		return CMD_DONE;
	if (tname && !(type = obj_type_find(tname))) {
		request_error(r, MPSUP_E_BAD_REQUEST, "obj.list: unknown type '%.64s'", tname);
		return CMD_DONE;
	}
	if (!persist_read(r, NULL)) /* the whole namespace */
		return CMD_DONE;
	r->durable = true;
	all = malloc((n_objects + 1) * sizeof(*all));
	list = json_array();
	if (!all || !list) {
		free(all);
		json_decref(list);
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return CMD_DONE;
	}
	for (size_t i = 0; i < n_buckets; i++)
		for (struct obj *o = buckets[i]; o; o = o->next)
			if ((!type || o->type == type) && request_access(r, &o->owner) == ACCESS_OK)
				all[n++] = o;
	qsort(all, n, sizeof(*all), obj_name_cmp);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:i}", "name", all[i]->name,
						      "type", all[i]->type->name, "size",
						      (json_int_t)all[i]->type->size(all[i]),
						      "waiters", (int)all[i]->n_waiters));
	free(all);
	request_ok(r, list);
	return CMD_DONE;
}

/* The existing object named by r's `name`; NULL after answering. */
static struct obj *existing(struct request *r)
{
	const char *name;
	struct obj *o;

	if (request_unpack(r, "{s:s}", "name", &name) < 0)
		return NULL;
	if (!name_valid(name, false)) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: invalid object name", r->cmd->name);
		return NULL;
	}
	if (!persist_read(r, name)) /* even not_found may show an unwritten delete */
		return NULL;
	r->durable = true;
	if (!(o = obj_find(name)) || request_access(r, &o->owner) != ACCESS_OK) {
		request_error(r, MPSUP_E_NOT_FOUND, "no object named %s", name);
		return NULL;
	}
	return o;
}

/* obj.get {name} -> the whole value */
static enum cmd_ret obj_get_local(struct request *r)
{
	struct obj *o = existing(r);

	struct jsonw w;

	if (o && o->type->get_text) {
		jsonw_init(&w);
		o->type->get_text(o, &w);
		request_ok_text(r, &w);
	} else if (o) {
		request_ok(r, o->type->get(o));
	}
	return CMD_DONE;
}

/* obj.delete {name}: waiters get not_found; holders lose their hold. */
static enum cmd_ret obj_delete_local(struct request *r)
{
	struct obj *o = existing(r);

	if (!o)
		return CMD_DONE;
	if (obj_persisted(o)) {
		if (!persist_writable(r))
			return CMD_DONE;
		persist_log_request(r);
	}
	obj_changed(o, "delete");
	obj_delete(o);
	request_ok(r, NULL);
	return CMD_DONE;
}

/* --- the local backend ------------------------------------------------------- */

/* This daemon's objects. */
const struct state_backend local_state_backend = {
	.name = "local",
	.op = op_run,
	.obj_create = obj_create_local,
	.obj_delete = obj_delete_local,
	.obj_get = obj_get_local,
	.obj_list = obj_list_local,
};
