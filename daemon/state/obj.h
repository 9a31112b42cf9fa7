/*
 * Shared-state objects: one flat namespace of named, typed objects (dict,
 * list, value, array, queue, event, lock, rlock, semaphore, barrier) served
 * by the state module.
 *
 * A type is one file exporting one `const struct obj_type`: how to create
 * it from options, free it, dump it, measure it and its ops table.
 * state_module.c turns every op into a `TYPE.OP` protocol command; before
 * an op runs, the generic layer (obj.c) has found (or created) the object
 * named by the `name` parameter, checked its type and read the op's
 * parameters against the op's spec, so a handler only does its work and
 * answers.
 *
 * Adding a type: one t_TYPE.c file with its descriptor, one line in
 * obj_types[] (state_module.c), one line in state.am, and tests.
 */
#ifndef MPSUPD_OBJ_H
#define MPSUPD_OBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "command.h"
#include "scope.h"
#include "waitq.h"

#define OBJ_NAME_MAX 64
#define OBJ_MAX_PARAMS 4

struct obj;
struct conn;
struct jsonw;

/*
 * One call of an op: the request, its object and its parameters in the
 * order of the op's spec. A parameter is read where it lies: in the
 * request line (scalars in place, containers built) or, for a request
 * read as a tree and while the log is replayed, in the tree (arg[i]->v).
 * obj_arg() gives it as a jansson value, built on first use and released
 * when the call ends: an op builds values only for what it stores.
 *
 * While the log is replayed at start-up (obj_replay) `replay` is set: the
 * request is a stand-in that must not be answered, obj_ok() drops the
 * result, obj_error() keeps the message in err and waitq_park() refuses.
 */
struct obj_call {
	struct request *r;
	struct obj *o;
	const struct obj_op *op;
	bool has[OBJ_MAX_PARAMS];      /* arg[i] was given (a typed null is absent) */
	json_t *built[OBJ_MAX_PARAMS]; /* obj_arg()'s values of in-place args */
	bool replay;
	bool failed; /* replay: obj_error() was called */
	char *err;   /* replay: its message */
	size_t errlen;
	/* Last: only what has[] marks is read, so obj_call_init() leaves
	 * these as they are on every request. arg[i]: into the request's
	 * members, or into tree_arg when it was read as a tree. */
	const struct mpsup_member *arg[OBJ_MAX_PARAMS];
	struct mpsup_member tree_arg[OBJ_MAX_PARAMS];
};

/* c for request r and op, all but its args cleared. */
static inline void obj_call_init(struct obj_call *c, struct request *r, const struct obj_op *op)
{
	memset(c, 0, offsetof(struct obj_call, arg));
	c->r = r;
	c->op = op;
}

/* Parameter i as a JSON value (borrowed, valid during the call), NULL when
 * absent (or out of memory building it). */
json_t *obj_arg(struct obj_call *c, int i);
/* Whether parameter i was given. */
static inline bool obj_has(const struct obj_call *c, int i)
{
	return c->has[i];
}
/* A string parameter (spec 's'): its bytes, not NUL-terminated. */
static inline const char *obj_arg_str(const struct obj_call *c, int i, size_t *ret_len)
{
	*ret_len = c->arg[i]->str_len;
	return c->arg[i]->str;
}
/* A number parameter (spec 'i', 'n' or 't') and whether it is an integer. */
static inline bool obj_arg_is_int(const struct obj_call *c, int i)
{
	return c->arg[i]->type == JSON_INTEGER;
}
static inline json_int_t obj_arg_int(const struct obj_call *c, int i)
{
	return c->arg[i]->type == JSON_INTEGER ? c->arg[i]->i : 0;
}
static inline double obj_arg_num(const struct obj_call *c, int i)
{
	return c->arg[i]->type == JSON_INTEGER ? (double)c->arg[i]->i : c->arg[i]->d;
}

/*
 * An op. spec lists the parameters besides `name`, separated by spaces, as
 * TYPE:KEY with a trailing '?' when optional. TYPE is one of
 *   o any JSON value     s string     i integer     n number
 *   a array              O object     t timeout (number >= 0 or null)
 * e.g. "s:key o:default?". Unknown keys and wrong types are bad_request.
 */
/* An op flag: the op writes its own persistence records (persist_log)
 * instead of the generic one obj_ok() writes for a mutating op. */
#define OBJ_OP_LOGS_ITSELF (1u << 8)
/* An op flag: the op may store more data (max_memory applies to it). */
#define OBJ_OP_GROWS (1u << 9)
/* An op flag: the op needs an existing object (not_found, nothing is
 * created): pure reads, where a typo must not make objects, and every op
 * of a type that has no sensible defaults (array, barrier: obj.create). */
#define OBJ_OP_EXISTING (1u << 10)

struct obj_op {
	const char *name; /* the command: "TYPE.op", e.g. "dict.get" */
	enum role role;   /* ROLE_READ for read-only ops, else ROLE_STATE */
	unsigned flags;   /* CMD_MUTATES, CMD_MAY_BLOCK, OBJ_OP_* */
	enum cmd_ret (*fn)(struct obj_call *c);
	const char *spec;
};

struct obj_type {
	const char *name;
	/* Build o->data from options (a JSON object, possibly empty: the
	 * defaults). On failure returns an error code with a message in err. */
	enum mpsup_err (*create)(struct obj *o, json_t *opts, char *err, size_t errlen);
	/* Free o->data (waiters are already gone). */
	void (*free)(struct obj *o);
	/* The whole value, for obj.get (new reference). */
	json_t *(*get)(const struct obj *o);
	/* Optional: the whole value written as text (obj.get of a big value
	 * without building it). */
	void (*get_text)(const struct obj *o, struct jsonw *w);
	/* Options from which create() rebuilds the object with its contents
	 * (new reference); NULL (the member) when the type is not persisted.
	 * A persisted type's mutating ops must be deterministic given the
	 * object and the parameters: the log records them, not their effects
	 * (daemon/persist.c). */
	json_t *(*dump)(const struct obj *o);
	/* Size for obj.list: elements, items, or held/set state. */
	size_t (*size)(const struct obj *o);
	/* True when opts (as given to obj.create) describe the same shape
	 * (typecode, size, maxsize, value, parties). Initial contents (init,
	 * items) are not compared: creating an existing object is a no-op. */
	bool (*options_equal)(const struct obj *o, json_t *opts);
	/* The data bytes of the contents (obj_mem_of() of what it stores), for
	 * max_memory: counted when created and after a clear; the ops keep
	 * the count up to date with obj_mem_adjust(). NULL: nothing stored. */
	size_t (*mem)(const struct obj *o);
	const struct obj_op *ops; /* ended by a NULL name */
};

struct obj {
	const struct obj_type *type;
	void *data;                  /* the type's state */
	struct waitq wq[OBJ_WAITQS]; /* the type's wait queues */
	unsigned n_waiters;          /* over all of wq[] */
	size_t mem;                  /* its data bytes (max_memory), overhead included */
	uint32_t hash;
	struct scope_link scope; /* scope "process": deleted when its process exits */
	struct owner owner;      /* its creator, and access "private" */
	struct obj *next;        /* hash chain */
	char name[OBJ_NAME_MAX + 1];
};

/* Is o written to the state file? Not a scoped object: it ends with its
 * process, and a restarted daemon could not tell that process again. */
static inline bool obj_persisted(const struct obj *o)
{
	return o->type->dump && !scope_bound(&o->scope);
}
/* Log r (a mutation of o) when o is persisted. */
void obj_log_request(const struct obj *o, struct request *r);

extern const struct cmd_module state_module;

extern const struct obj_type dict_type, list_type, value_type, array_type, queue_type, event_type,
	lock_type, rlock_type, semaphore_type, barrier_type, condition_type;

/* Items in all queues together (t_queue.c; max_queue_items). */
extern unsigned long queue_items_total;

/* Set while persisted state is loaded: limits (max_objects,
 * max_queue_items, max_object_items, the array size) do not apply to what
 * was accepted before. */
extern bool obj_restoring;

/*
 * Shared-state data bytes (max_memory): not RSS but an estimate of the
 * stored JSON, kept incrementally: each value counts its text plus a fixed
 * overhead per value, key and element (numbers a fixed 16, so changing one
 * in place changes nothing), each object a fixed overhead plus its name.
 * What is added is taken away the same way, so deleting gives it back.
 */
size_t obj_mem_of(json_t *v);
#define OBJ_MEM_VALUE 16 /* a number, true, false or null */
#define OBJ_MEM_NODE 32  /* a string, array or object, an object's key */
#define OBJ_MEM_SLOT 8   /* an array's or queue's element pointer */
/* An entry of a dict (key and value) / an element of a list or queue. */
size_t obj_mem_entry(size_t key_len, json_t *v);
size_t obj_mem_elem(json_t *v);
/* o's data grew by add and shrank by sub bytes. */
void obj_mem_adjust(struct obj *o, size_t add, size_t sub);
/* Count o's contents again from its type's mem() (after a clear). */
void obj_mem_recount(struct obj *o);
/* The data bytes of every object. */
uint64_t obj_mem_used(void);

/* The object called name, or NULL. */
struct obj *obj_find(const char *name);
/* Create an object (name must be valid and free); NULL with a code and a
 * message in err on failure (limit, bad options). */
struct obj *obj_create(const char *name, const struct obj_type *type, json_t *opts,
		       enum mpsup_err *ret_code, char *err, size_t errlen);
/* Delete an object: its waiters are answered not_found. */
void obj_delete(struct obj *o);
/* Delete every object (shutdown, tests). */
void obj_delete_all(void);
/* Number of objects. */
unsigned obj_count(void);
/* The descriptor of a type name, or NULL. */
const struct obj_type *obj_type_find(const char *name);
/* Call fn for every object (in no particular order; fn must not create or
 * delete objects). */
void obj_foreach(void (*fn)(struct obj *o, void *arg), void *arg);
/* Apply one logged mutation (persist.c): cmd is "obj.create", "obj.delete"
 * or TYPE.OP, params its parameters with `name`. Returns 0, or -1 with the
 * reason in err when it cannot be applied as it was the first time. */
int obj_replay(const char *cmd, json_t *params, char *err, size_t errlen);

/* Answer a call with a result (stolen) / an error. */
void obj_ok(struct obj_call *c, json_t *result);
/* obj_ok() for a read-only op whose result is written as text (w is
 * freed). */
void obj_ok_text(struct obj_call *c, struct jsonw *w);
void obj_error(struct obj_call *c, enum mpsup_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Publish object.changed for o (cheap when nobody listens). */
void obj_changed(const struct obj *o, const char *op);

/*
 * Helpers shared by the types.
 */

/* JSON equality where numbers compare by value (1 == 1.0). */
bool obj_json_equal(json_t *a, json_t *b);
/* a + b for JSON numbers: integers stay integers (false when the int64
 * range is left), anything else is a real (false when not finite). */
bool obj_num_add(json_t *a, json_t *b, json_t **ret);
/* Resolve a Python index (negative from the end) against len; false when
 * outside [0, len). */
bool obj_index(json_int_t idx, size_t len, size_t *ret);
/* Resolve Python slice bounds (NULL = absent) against len. */
void obj_slice(json_t *start, json_t *stop, size_t len, size_t *ret_start, size_t *ret_stop);
/* An integer option: absent = def; bad_request when not an integer within
 * [min, max]. */
int obj_opt_int(json_t *opts, const char *key, json_int_t def, json_int_t min, json_int_t max,
		json_int_t *ret, char *err, size_t errlen);
/* Refuse options other than those listed (NULL-terminated). */
int obj_opts_only(json_t *opts, const char *const *keys, char *err, size_t errlen);
/* Whether an object of have elements (dict keys, list items) may take
 * adding more under max_object_items; always while persisted state is
 * loaded (obj_restoring). */
bool obj_items_fit(size_t have, size_t adding);
/* The same for a call: false after answering `limit`. */
bool obj_items_room(struct obj_call *c, size_t have, size_t adding);

/*
 * Owned counters (t_lock.c): the engine of lock, rlock and semaphore. Units
 * are held by connections; a connection that closes releases what it holds
 * and the next owner is told `abandoned: true`.
 */
struct holder {
	struct conn *conn;
	unsigned count; /* units held (rlock: recursion depth) */
};

struct owned {
	unsigned value; /* units in all (1 for locks) */
	unsigned held;  /* units held now */
	bool recursive; /* rlock: the owner may acquire again */
	bool abandoned; /* a holder vanished: tell the next owner */
	struct holder *holders;
	size_t n_holders, cap_holders;
};

/* Make o->data an owned counter of value units. */
enum mpsup_err owned_create(struct obj *o, unsigned value, bool recursive, char *err,
			    size_t errlen);
void owned_free(struct obj *o);
/* {locked, owners, waiters} or, for a semaphore, {value, available, ...}. */
json_t *owned_state(const struct obj *o);
size_t owned_size(const struct obj *o);
enum cmd_ret owned_acquire(struct obj_call *c);
enum cmd_ret owned_release(struct obj_call *c);
/* The caller's holder record, or NULL after answering `conflict`. */
struct holder *owned_holder(struct obj_call *c);
/* The caller gives back everything it holds (h, its record) and waiters
 * are served; returns how many units (recursion depth) it held. */
unsigned owned_release_all(struct obj_call *c, struct holder *h);
/* Hand free units to the waiters of wq[0], longest waiting first. */
void owned_wake(struct obj *o);

#endif
