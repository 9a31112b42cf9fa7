/*
 * The command table and the request path: parse the envelope, find the
 * command, check the peer's role, run the handler and make sure every
 * request gets exactly one answer.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "conn.h"
#include "jsonw.h"
#include "daemon.h"
#include "hash.h"
#include "log.h"
#include "stream.h"

static const struct cmd_entry **table; /* sorted by name */
static size_t table_len;
/* An open-addressing index into table, for command_find (a power of two,
 * at least twice table_len: probes stay short). */
static const struct cmd_entry **index_slots;
static size_t index_mask;


static int entry_cmp(const void *a, const void *b)
{
	const struct cmd_entry *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

void command_init(const struct cmd_module *const *mods, size_t n_mods)
{
	size_t n = 0, i = 0;


	for (size_t m = 0; m < n_mods; m++) {
		if (mods[m]->init)
			mods[m]->init();
		for (const struct cmd_entry *e = mods[m]->cmds; e && e->name; e++)
			n++;
	}
	table = calloc(n, sizeof(*table));
	if (!table)
		fatalx("command", "out of memory");
	for (size_t m = 0; m < n_mods; m++)
		for (const struct cmd_entry *e = mods[m]->cmds; e && e->name; e++)
			table[i++] = e;
	table_len = n;
	qsort(table, table_len, sizeof(*table), entry_cmp);
	for (i = 1; i < table_len; i++)
		if (strcmp(table[i - 1]->name, table[i]->name) == 0)
			log_error("command", "command %s is defined twice", table[i]->name);
	for (n = 16; n < 2 * table_len; n *= 2)
		;
	index_slots = calloc(n, sizeof(*index_slots));
	if (!index_slots)
		fatalx("command", "out of memory");
	index_mask = n - 1;
	for (i = 0; i < table_len; i++) {
		size_t h = hash_fnv1a32(table[i]->name) & index_mask;
		while (index_slots[h])
			h = (h + 1) & index_mask;
		index_slots[h] = table[i];
	}
}

const struct cmd_entry *command_find(const char *name)
{
	if (!index_slots)
		return NULL;
	for (size_t h = hash_fnv1a32(name) & index_mask; index_slots[h]; h = (h + 1) & index_mask)
		if (strcmp(index_slots[h]->name, name) == 0)
			return index_slots[h];
	return NULL;
}

void command_foreach(void (*fn)(const struct cmd_entry *e, void *arg), void *arg)
{
	for (size_t i = 0; i < table_len; i++)
		fn(table[i], arg);
}

void request_free(struct request *r)
{
	if (!r)
		return;
	json_decref(r->id);
	json_decref(r->params);
	free(r);
}

/* Write the answer of r (v: result or error object, stolen; or, when v is
 * NULL and raw is not, the result as JSON text) and, for a kept request,
 * let its connection go on. */
static void request_finish(struct request *r, bool ok, json_t *v, const char *raw,
			   size_t raw_len)
{
	struct conn *c = r->conn;
	bool kept = r->kept;

	if (r->replied) {
		log_error("command", "%s answered twice", r->cmd ? r->cmd->name : "request");
		json_decref(v);
		return;
	}
	r->replied = true;
	/* A kept request is ours to free from here on: conn_close() (below, or
	 * from a failing send) must not cancel or free it under us. */
	if (kept && c->kept == r)
		c->kept = NULL;
	if (!v && !raw) {
		log_error("command", "out of memory building an answer; dropping client");
		conn_close(c);
	} else {
		uint64_t from = c->out_queued;
		conn_send_reply(c, r->id, ok, v, raw, raw_len);
		json_decref(v);
		if (r->durable)
			conn_mark_durable(c, from);
	}
	if (kept) {
		if (c->streaming)
			stream_slot_give(c);
		c->streaming = false;
		request_free(r);
		conn_flush(c);
		conn_resume(c);
	}
}

void request_ok_text(struct request *r, struct jsonw *w)
{
	request_finish(r, true, NULL, jsonw_ok(w) ? w->buf : NULL, w->len);
	jsonw_free(w);
}

void request_ok(struct request *r, json_t *result)
{
	request_finish(r, true, result ? result : json_null(), NULL, 0);
}

void request_error(struct request *r, enum mpsup_err code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	request_finish(r, false,
		       json_pack("{s:s, s:s}", "code", mpsup_err_name(code), "message", msg), NULL, 0);
}

void request_fail(struct request *r, json_t *error)
{
	request_finish(r, false, error, NULL, 0);
}

int request_unpack(struct request *r, const char *fmt, ...)
{
	json_error_t jerr;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = json_vunpack_ex(r->params, &jerr, JSON_STRICT, fmt, ap);
	va_end(ap);
	if (rc < 0) {
		request_error(r, MPSUP_E_BAD_REQUEST, "%s: %s", r->cmd->name, jerr.text);
		return -1;
	}
	return 0;
}

int request_timeout(struct request *r, json_t *v, double *ret)
{
	double t;

	if (!v || json_is_null(v)) {
		*ret = -1;
		return 0;
	}
	if (!json_is_number(v) || (t = json_number_value(v)) < 0 || t > 1e9) {
		request_error(r, MPSUP_E_BAD_REQUEST,
			      "%s: timeout must be a number of seconds >= 0", r->cmd->name);
		return -1;
	}
	*ret = t;
	return 0;
}

bool request_stream(struct request *r, json_t *msg)
{
	struct conn *c = r->conn;

	if (c->dead || !conn_send(c, msg))
		return false;
	conn_flush(c);
	return !c->dead;
}

const char *const role_names[] = { "none", "read", "state", "admin" };

/* Longer than any command name; the unknown-command message quotes 100. */
#define CMD_NAME_MAX 128

/* Answer a line that could not become a request. */
static void reply_early(struct conn *c, json_t *id, enum mpsup_err code, const char *msg)
{
	json_t *resp = mpsup_response_error(id, code, msg);

	if (resp) {
		conn_send(c, resp);
		json_decref(resp);
	}
}

void command_dispatch(struct conn *c, char *line, size_t len)
{
	struct mpsup_error err;
	const struct cmd_entry *cmd;
	struct request *r;
	char name[CMD_NAME_MAX]; /* a longer name is cut: no command is found */
	json_t *req, *id = NULL;
	enum cmd_ret ret;

	/* Every line gets an answer, a blank one too: a client that counts
	 * answers must not wait forever for one. */
	if (strspn(line, " \t\r") == len) {
		reply_early(c, NULL, MPSUP_E_BAD_REQUEST, "empty request");
		return;
	}
	if (mpsup_request_read(line, len, daemon_g.conf->max_json_depth, &req, &id, name,
			       sizeof(name), &err) < 0) {
		reply_early(c, id, err.code, err.message);
		json_decref(id);
		return;
	}
	cmd = command_find(name);
	if (!cmd) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown command '%.100s'", name);
		reply_early(c, id, MPSUP_E_UNKNOWN_COMMAND, msg);
		goto out;
	}
	if (c->role < cmd->role) {
		static struct log_ratelimit denials;
		char msg[160];
		if (log_allowed(&denials))
			log_warn("access", "denied %s to uid %d pid %d (role %s, needs %s)",
				 cmd->name, (int)c->uid, (int)c->pid, role_names[c->role],
				 role_names[cmd->role]);
		snprintf(msg, sizeof(msg), "%s needs the %s role", cmd->name, role_names[cmd->role]);
		reply_early(c, id, MPSUP_E_PERMISSION_DENIED, msg);
		goto out;
	}
	if (daemon_g.shutting_down && (cmd->flags & CMD_MUTATES)) {
		reply_early(c, id, MPSUP_E_SHUTTING_DOWN, "mpsupd is shutting down");
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		reply_early(c, id, MPSUP_E_INTERNAL, "out of memory");
		goto out;
	}
	r->conn = c;
	r->cmd = cmd;
	r->id = id;
	id = NULL;
	r->params = req;
	req = NULL;
	r->line = line; /* persist.c logs a mutation as it was received */
	r->line_len = len;
	ret = cmd->exec(r);
	r->line = NULL;
	if (ret == CMD_DONE || r->replied) {
		if (!r->replied) {
			log_error("command", "%s returned without an answer", cmd->name);
			request_error(r, MPSUP_E_INTERNAL, "%s did not answer", cmd->name);
		}
		request_free(r);
	} else {
		/* The table says which commands wait or stream: a handler that
		 * does what its entry does not declare is a bug worth a line. */
		if (!r->cancel)
			log_error("command", "%s kept a request without a cancel hook", cmd->name);
		if (ret == CMD_WAIT && !(cmd->flags & CMD_MAY_BLOCK))
			log_error("command", "%s waits but is not flagged CMD_MAY_BLOCK", cmd->name);
		if (ret == CMD_STREAM && !(cmd->flags & CMD_STREAMS))
			log_error("command", "%s streams but is not flagged CMD_STREAMS", cmd->name);
		r->kept = true;
		c->kept = r;
		c->streaming = ret == CMD_STREAM;
	}
out:
	json_decref(req);
	json_decref(id);
}
