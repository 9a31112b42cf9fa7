/* Internal to the state module: what obj.c, state_module.c and the
 * backends share, and their use of obj_params.c. */
#ifndef MPSUPD_OBJ_INT_H
#define MPSUPD_OBJ_INT_H

#include "obj.h"

/* The `name` parameter of r, checked, into buf (OBJ_NAME_MAX + 1 bytes);
 * NULL after answering bad_request. */
const char *obj_param_name(struct request *r, char *buf);
/* An op's spec (struct obj_op), parsed once when the table is built. */
struct param_spec {
	const char *key; /* into the spec string */
	size_t klen;
	char type; /* o s i n a O t */
	bool optional;
};
struct op_spec {
	struct param_spec p[OBJ_MAX_PARAMS];
	int n;
};

/* Parse spec; -1 when it is malformed or lists too many parameters. */
int obj_spec_parse(const char *spec, struct op_spec *ret);
/* Read c->r's parameters into c->arg following spec; answers bad_request
 * and returns -1 on a missing, mistyped or unknown one. */
int obj_params_read(struct obj_call *c, const struct op_spec *spec);
/* Release what obj_arg() built for c (the call ends). */
void obj_call_done(struct obj_call *c);

/* For a TYPE.OP command: its type, op and parsed spec, and its parameters
 * as help shows them ("s:name " and the op's spec). */
struct type_op {
	const struct obj_type *type;
	const struct obj_op *op;
	struct op_spec spec;
	char params[96];
};

/*
 * Where the shared state lives: the in-memory objects of this daemon
 * (local) or a Redis server shared by several daemons (redis_backend.c).
 * Every state command goes through one pointer call of the backend chosen
 * at start (state_backend in the config), so the local path keeps its
 * speed: no allocation and no copy is added in front of it.
 */
struct state_backend {
	const char *name;
	/* TYPE.OP t for r (the object is named by r's `name`). */
	enum cmd_ret (*op)(struct request *r, const struct type_op *t);
	enum cmd_ret (*obj_create)(struct request *r);
	enum cmd_ret (*obj_delete)(struct request *r);
	enum cmd_ret (*obj_get)(struct request *r);
	enum cmd_ret (*obj_list)(struct request *r);
};

/* This daemon's objects (obj.c). */
extern const struct state_backend local_state_backend;
extern const struct state_backend redis_state_backend;
/* Connect to Redis at start (blocking once, before anything is served);
 * -1 after logging why. */
int redis_backend_start(const struct conf *conf);
/* Drop every Redis connection (shutdown). */
void redis_backend_stop(void);
/* Backend, address, connection state and lease figures for daemon.info. */
void redis_backend_info(json_t *state);

#endif
