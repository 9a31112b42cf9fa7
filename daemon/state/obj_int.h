/* Internal to the state module: obj.c's use of obj_params.c. */
#ifndef MPSUPD_OBJ_INT_H
#define MPSUPD_OBJ_INT_H

#include "obj.h"

/* The `name` parameter of r, checked, into buf (OBJ_NAME_MAX + 1 bytes);
 * NULL after answering bad_request. */
const char *obj_param_name(struct request *r, char *buf);
/* Read c->r's parameters into c->arg following spec (struct obj_op);
 * answers bad_request and returns -1 on a missing, mistyped or unknown
 * one. */
int obj_params_read(struct obj_call *c, const char *spec);
/* Release what obj_arg() built for c (the call ends). */
void obj_call_done(struct obj_call *c);

#endif
