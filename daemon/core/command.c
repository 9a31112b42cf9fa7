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
#include "metrics.h"
#include "stream.h"

#include <event2/buffer.h>

static const struct cmd_entry **table; /* sorted by name */
static size_t table_len;
/* An open-addressing index of table's rows plus one (0: empty), for
 * command_find and the counters (a power of two, at least twice
 * table_len: probes stay short). */
static size_t *index_slots;
/* command_row()'s last answer, which command_find() tries first (reset
 * with the table). */
static const struct cmd_entry *last;
static size_t last_row;
static size_t index_mask;
/* Answers by command (table order; the last row: lines that named no
 * command) and code (MPSUP_OK or an error code). */
#define REQ_OUTCOMES MPSUP_E__MAX
static uint64_t (*req_counts)[REQ_OUTCOMES];

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
	last = NULL;
	table = calloc(n, sizeof(*table));
	if (!table)
		fatalx("command", "out of memory");
	for (size_t m = 0; m < n_mods; m++)
		for (const struct cmd_entry *e = mods[m]->cmds; e && e->name; e++)
			table[i++] = e;
	table_len = n;
	qsort(table, table_len, sizeof(*table), entry_cmp);
	req_counts = calloc(n + 1, sizeof(*req_counts));
	if (!req_counts)
		fatalx("command", "out of memory");
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
		index_slots[h] = i + 1;
	}
}

const struct cmd_entry *command_find(const char *name)
{
	if (!index_slots)
		return NULL;
	/* Runs of one command: the one counted last is one compare away. */
	if (last && strcmp(last->name, name) == 0)
		return last;
	for (size_t h = hash_fnv1a32(name) & index_mask; index_slots[h]; h = (h + 1) & index_mask)
		if (strcmp(table[index_slots[h] - 1]->name, name) == 0)
			return table[index_slots[h] - 1];
	return NULL;
}

/* cmd's row in table (table_len for one not in it): its counters' row.
 * Requests come in runs of one command: the last answer is kept. */
static size_t command_row(const struct cmd_entry *cmd)
{
	if (cmd == last)
		return last_row;
	for (size_t h = hash_fnv1a32(cmd->name) & index_mask; index_slots[h];
	     h = (h + 1) & index_mask)
		if (table[index_slots[h] - 1] == cmd) {
			last = cmd;
			return last_row = index_slots[h] - 1;
		}
	return table_len;
}

void command_foreach(void (*fn)(const struct cmd_entry *e, void *arg), void *arg)
{
	for (size_t i = 0; i < table_len; i++)
		fn(table[i], arg);
}

/* Count one answer of cmd (NULL: no command) with code (MPSUP_OK...). */
static void request_count(const struct cmd_entry *cmd, int outcome)
{
	if (!req_counts || outcome < 0 || outcome >= REQ_OUTCOMES)
		return;
	req_counts[cmd ? command_row(cmd) : table_len][outcome]++;
}

/* The code of an error object {code, ...} (internal when it has none). */
static int error_outcome(json_t *error)
{
	int code = mpsup_err_from_name(json_string_value(json_object_get(error, "code")));
	return code > 0 ? code : MPSUP_E_INTERNAL;
}

void command_metrics(struct evbuffer *b)
{
	struct metrics_label l[2] = { { "command", NULL }, { "code", NULL } };

	metrics_family(b, "mpsup_requests_total", "counter",
		       "Requests answered, by command and outcome (ok or the error code).");
	for (size_t row = 0; req_counts && row <= table_len; row++)
		for (int o = 0; o < REQ_OUTCOMES; o++) {
			if (!req_counts[row][o])
				continue;
			l[0].value = row < table_len ? table[row]->name : "(none)";
			l[1].value = o ? mpsup_err_name((enum mpsup_err)o) : "ok";
			metrics_u64(b, "mpsup_requests_total", l, 2, req_counts[row][o]);
		}
}

/* Freed requests kept for the next ones (a request per line: calloc and
 * free were a twentieth of a small request's cost). Not under ASan, which
 * must see a request used after it was freed. */
#ifndef __SANITIZE_ADDRESS__
#define REQ_CACHE 32
static struct request *req_cache[REQ_CACHE];
static size_t req_cached;
#endif

/* A zeroed request; NULL when out of memory. */
static struct request *request_new(void)
{
#ifdef REQ_CACHE
	if (req_cached) {
		struct request *r = req_cache[--req_cached];
		memset(r, 0, sizeof(*r));
		return r;
	}
#endif
	return calloc(1, sizeof(struct request));
}

void request_free(struct request *r)
{
	if (!r)
		return;
	json_decref(r->id);
	json_decref(r->params);
#ifdef REQ_CACHE
	if (req_cached < REQ_CACHE) {
		req_cache[req_cached++] = r;
		return;
	}
#endif
	free(r);
}

/* Write the answer of r (v: result or error object, stolen; or, when v is
 * NULL and raw is not, the result as JSON text) and, for a kept request,
 * let its connection go on. */
static void request_finish(struct request *r, bool ok, json_t *v, const char *raw, size_t raw_len)
{
	struct conn *c = r->conn;
	bool kept = r->kept;

	if (r->replied) {
		log_error("command", "%s answered twice", r->cmd ? r->cmd->name : "request");
		json_decref(v);
		return;
	}
	r->replied = true;
	request_count(r->cmd, ok ? MPSUP_OK : v ? error_outcome(v) : MPSUP_E_INTERNAL);
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
		       json_pack("{s:s, s:s}", "code", mpsup_err_name(code), "message", msg), NULL,
		       0);
}

void request_fail(struct request *r, json_t *error)
{
	request_finish(r, false, error, NULL, 0);
}

json_t *request_params(struct request *r)
{
	json_t *p;

	if (r->params || !r->members)
		return r->params;
	if (!(p = json_object()))
		return NULL;
	for (size_t i = 0; i < r->n_members; i++) {
		const struct mpsup_member *m = &r->members[i];
		json_t *v;
		/* left as text (CMD_RAW_VALUES): the handler reads request_raw() */
		if ((m->type == JSON_ARRAY || m->type == JSON_OBJECT) && !m->v)
			v = m->type == JSON_ARRAY ? json_array() : json_object();
		else
			v = mpsup_member_json(m);
		if (json_object_setn_new_nocheck(p, m->key, m->key_len, v) < 0) {
			json_decref(p);
			return NULL;
		}
	}
	return r->params = p;
}

int request_unpack(struct request *r, const char *fmt, ...)
{
	json_error_t jerr;
	va_list ap;
	int rc;

	if (!request_params(r)) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		return -1;
	}
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

bool request_raw(const struct request *r, const char *key, const char **ret_text, size_t *ret_len)
{
	size_t klen = strlen(key);

	for (size_t i = 0; r->members && i < r->n_members; i++) {
		const struct mpsup_member *m = &r->members[i];
		if (m->key_len != klen || memcmp(m->key, key, klen) != 0)
			continue;
		if ((m->type != JSON_ARRAY && m->type != JSON_OBJECT) || m->v)
			return false;
		*ret_text = m->raw;
		*ret_len = m->raw_len;
		return true;
	}
	return false;
}

bool request_stream_text(struct request *r, const char *text, size_t len)
{
	struct conn *c = r->conn;

	if (c->dead || !conn_send_text(c, text, len))
		return false;
	conn_flush(c);
	return !c->dead;
}

bool request_stream(struct request *r, json_t *msg)
{
	struct conn *c = r->conn;

	if (c->dead || !conn_send(c, msg))
		return false;
	conn_flush(c);
	return !c->dead;
}

enum access_verdict request_access(const struct request *r, const struct owner *o)
{
	if (!r->conn)
		return ACCESS_OK;
	return access_decide(r->conn->role, r->conn->uid, r->cmd && (r->cmd->flags & CMD_OWNED), o);
}

void request_access_error(struct request *r, enum access_verdict v, const char *what,
			  const char *name)
{
	if (v == ACCESS_HIDDEN)
		request_error(r, MPSUP_E_NOT_FOUND, "no %s named '%.100s'", what, name);
	else
		request_error(r, MPSUP_E_PERMISSION_DENIED,
			      "%s: '%.100s' was not started by uid %d", r->cmd->name, name,
			      (int)r->conn->uid);
}

const char *const role_names[] = { "none", "read", "state", "run", "admin" };

/* Longer than any command name; the unknown-command message quotes 100. */
#define CMD_NAME_MAX 128

/* Answer a line that could not become a request (cmd: the command it
 * named, when there is one). */
static void reply_early_cmd(struct conn *c, const struct cmd_entry *cmd, json_t *id,
			    enum mpsup_err code, const char *msg)
{
	json_t *resp = mpsup_response_error(id, code, msg);

	request_count(cmd, (int)code);

	if (resp) {
		conn_send(c, resp);
		json_decref(resp);
	}
}

static void reply_early(struct conn *c, json_t *id, enum mpsup_err code, const char *msg)
{
	reply_early_cmd(c, NULL, id, code, msg);
}

/* Members read in place per request; a request with more takes the tree
 * path (mpsup_request_read), which no op needs. */
#define REQ_MEMBERS_MAX 8

/* A parsed line: its envelope and its members (in place) or its tree. */
struct line_read {
	json_t *id, *params;
	struct mpsup_member members[REQ_MEMBERS_MAX];
	size_t n_members;
	bool in_place;
	char name[CMD_NAME_MAX]; /* a longer name is cut: no command is found */
};

/* Read line into lr, in place when it can be; -1 after answering. */
static int line_read(struct conn *c, char *line, size_t len, struct line_read *lr)
{
	size_t depth = daemon_g.conf->max_json_depth;
	struct mpsup_error err;

	if (mpsup_request_members_lazy(line, len, depth, REQ_LAZY_MIN, lr->members, REQ_MEMBERS_MAX,
				       &lr->n_members, &lr->id, lr->name, sizeof(lr->name)) == 0) {
		lr->in_place = true;
		return 0;
	}
	/* The tree path reads what the in-place one leaves, or explains. */
	if (mpsup_request_read(line, len, depth, &lr->params, &lr->id, lr->name, sizeof(lr->name),
			       &err) < 0) {
		reply_early(c, lr->id, err.code, err.message);
		return -1;
	}
	return 0;
}

/* Build the members lr left as text for cmd, which reads trees; false
 * when out of memory. */
static bool line_build(struct line_read *lr, const struct cmd_entry *cmd)
{
	if (!lr->in_place || (cmd->flags & CMD_RAW_VALUES))
		return true;
	for (size_t i = 0; i < lr->n_members; i++) {
		struct mpsup_member *m = &lr->members[i];
		if ((m->type == JSON_ARRAY || m->type == JSON_OBJECT) && !m->v &&
		    !(m->v = mpsup_json_loadb(m->raw, m->raw_len, 0)))
			return false;
	}
	return true;
}

/* Whether c may run cmd now; answers when not. */
static bool command_allowed(struct conn *c, const struct cmd_entry *cmd, json_t *id)
{
	char msg[160];

	if (c->role < cmd->role) {
		static struct log_ratelimit denials;
		if (log_allowed(&denials))
			log_warn("access", "denied %s to uid %d pid %d (role %s, needs %s)",
				 cmd->name, (int)c->uid, (int)c->pid, role_names[c->role],
				 role_names[cmd->role]);
		snprintf(msg, sizeof(msg), "%s needs the %s role", cmd->name,
			 role_names[cmd->role]);
		reply_early_cmd(c, cmd, id, MPSUP_E_PERMISSION_DENIED, msg);
		return false;
	}
	if (daemon_g.shutting_down && (cmd->flags & CMD_MUTATES)) {
		reply_early_cmd(c, cmd, id, MPSUP_E_SHUTTING_DOWN, "mpsupd is shutting down");
		return false;
	}
	return true;
}

/* Run r's handler and keep r or free it by what it returned. */
static void request_run(struct request *r)
{
	const struct cmd_entry *cmd = r->cmd;
	struct conn *c = r->conn;
	enum cmd_ret ret;

	if (!(cmd->flags & CMD_IN_PLACE) && !request_params(r)) {
		request_error(r, MPSUP_E_INTERNAL, "out of memory");
		request_free(r);
		return;
	}
	ret = cmd->exec(r);
	if (ret == CMD_DONE || r->replied) {
		if (!r->replied) {
			log_error("command", "%s returned without an answer", cmd->name);
			request_error(r, MPSUP_E_INTERNAL, "%s did not answer", cmd->name);
		}
		request_free(r);
		return;
	}
	/* The table says which commands wait or stream: a handler that does
	 * what its entry does not declare is a bug worth a line. */
	if (!r->cancel)
		log_error("command", "%s kept a request without a cancel hook", cmd->name);
	if (ret == CMD_WAIT && !(cmd->flags & CMD_MAY_BLOCK))
		log_error("command", "%s waits but is not flagged CMD_MAY_BLOCK", cmd->name);
	if (ret == CMD_STREAM && !(cmd->flags & CMD_STREAMS))
		log_error("command", "%s streams but is not flagged CMD_STREAMS", cmd->name);
	/* The line goes away: a kept request keeps its parameters as a tree
	 * (persistence logs a put that completes later from it). */
	if (!request_params(r))
		log_error("command", "out of memory keeping the parameters of %s", cmd->name);
	r->line = NULL;
	r->members = NULL;
	r->n_members = 0;
	r->fds = NULL; /* the caller closes what was not taken */
	r->n_fds = 0;
	r->kept = true;
	c->kept = r;
	c->streaming = ret == CMD_STREAM;
}

void command_dispatch(struct conn *c, char *line, size_t len)
{
	command_dispatch_fds(c, line, len, NULL);
}

/* May this line's descriptors go to cmd? Answers bad_request when not. */
static bool fds_allowed(struct conn *c, const struct cmd_entry *cmd, struct fd_set_rx *fds,
			json_t *id)
{
	const char *why = NULL;

	if (!fds)
		return true;
	if (fds->bad)
		why = "malformed descriptor data (truncated, or sent with several parts of the "
		      "line)";
	else if (!(cmd->flags & CMD_TAKES_FDS))
		why = "this command takes no descriptors";
	else if (c->role < ROLE_RUN)
		why = "passing descriptors needs the run role";
	if (!why)
		return true;
	reply_early(c, id, MPSUP_E_BAD_REQUEST, why);
	return false;
}

void command_dispatch_fds(struct conn *c, char *line, size_t len, struct fd_set_rx *fds)
{
	const struct cmd_entry *cmd;
	struct line_read lr;
	struct request *r;

	/* Every line gets an answer, a blank one too: a client that counts
	 * answers must not wait forever for one. */
	if (len == 0 ||
	    ((*line == ' ' || *line == '\t' || *line == '\r') && strspn(line, " \t\r") == len)) {
		reply_early(c, NULL, MPSUP_E_BAD_REQUEST, "empty request");
		return;
	}
	lr.id = lr.params = NULL;
	lr.n_members = 0;
	lr.in_place = false;
	if (line_read(c, line, len, &lr) < 0)
		goto out;
	cmd = command_find(lr.name);
	if (!cmd) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown command '%.100s'", lr.name);
		reply_early(c, lr.id, MPSUP_E_UNKNOWN_COMMAND, msg);
		goto out;
	}
	if (!fds_allowed(c, cmd, fds, lr.id) || !command_allowed(c, cmd, lr.id))
		goto out;
	if (!line_build(&lr, cmd)) {
		reply_early_cmd(c, cmd, lr.id, MPSUP_E_INTERNAL, "out of memory");
		goto out;
	}
	r = request_new();
	if (!r) {
		reply_early(c, lr.id, MPSUP_E_INTERNAL, "out of memory");
		goto out;
	}
	r->conn = c;
	r->cmd = cmd;
	r->id = lr.id;
	lr.id = NULL;
	r->params = lr.params;
	lr.params = NULL;
	if (lr.in_place) {
		r->members = lr.members;
		r->n_members = lr.n_members;
	}
	r->line = line; /* persist.c logs a mutation as it was received */
	r->line_len = len;
	if (fds) {
		r->fds = fds->fd;
		r->n_fds = fds->n;
	}
	/* Past this call r may be kept: it must not point into the line. */
	request_run(r);
out:
	mpsup_members_free(lr.members, lr.n_members);
	json_decref(lr.params);
	json_decref(lr.id);
}
