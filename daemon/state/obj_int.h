/* Internal to the state module: obj.c's use of obj_params.c. */
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

#endif
