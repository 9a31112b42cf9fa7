/*
 * Persistence (persist.c): loading the snapshot and replaying the log at
 * start-up (the format: persist_record.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "obj.h"
#include "persist_int.h"

/* --- loading ------------------------------------------------------------------------------ */

/* Parse a payload as JSON; NULL with why. */
static json_t *payload_json(const char *p, size_t len, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

	if (!v)
		snprintf(why, whylen, "not JSON: %s", jerr.text);
	return v;
}

static int snap_record(const char *p, size_t len, size_t off, void *arg, char *why, size_t whylen)
{
	struct persist_load *L = arg;
	json_t *v = payload_json(p, len, why, whylen);
	const struct obj_type *type;
	const char *name, *tname;
	json_t *opts;
	enum mpsup_err code;
	char err[256];
	int rc = -EINVAL;

	(void)off;
	if (!v)
		return -EINVAL;
	if (L->ended) {
		snprintf(why, whylen, "data after the end record");
	} else if (!L->header) {
		json_int_t seq, n;
		int version;
		if (json_unpack(v, "{s:i, s:I, s:I}", "mpsup_snapshot", &version, "seq", &seq,
				"objects", &n) < 0 ||
		    version != 1 || seq < 0 || n < 0) {
			snprintf(why, whylen, "not an mpsup snapshot header");
		} else {
			L->header = true;
			L->snap_seq = L->last_seq = (uint64_t)seq;
			L->expected = (size_t)n;
			rc = 0;
		}
	} else if (json_is_object(v)) {
		json_int_t n;
		if (json_unpack(v, "{s:I}", "end", &n) < 0 || (size_t)n != L->objects ||
		    L->objects != L->expected) {
			snprintf(why, whylen, "end record does not match %zu objects", L->objects);
		} else {
			L->ended = true;
			rc = 0;
		}
	} else if (json_unpack(v, "[s, s, o]", &name, &tname, &opts) < 0 || !json_is_object(opts) ||
		   !name_valid(name, false)) {
		snprintf(why, whylen, "bad object record");
	} else if (!(type = obj_type_find(tname)) || !type->dump) {
		snprintf(why, whylen, "object %.64s has an unknown type '%.32s'", name, tname);
	} else if (obj_find(name)) {
		snprintf(why, whylen, "object %.64s appears twice", name);
	} else if (!obj_create(name, type, opts, &code, err, sizeof(err))) {
		snprintf(why, whylen, "object %.64s: %s", name, err);
	} else {
		L->objects++;
		rc = 0;
	}
	json_decref(v);
	return rc;
}

static int log_record(const char *p, size_t len, size_t off, void *arg, char *why, size_t whylen)
{
	struct persist_load *L = arg;
	json_t *v = payload_json(p, len, why, whylen), *params;
	const char *cmd;
	json_int_t seq;
	char err[256];
	int rc = -EINVAL;

	(void)off;
	if (!v)
		return -EINVAL;
	if (json_unpack(v, "[I, s, o]", &seq, &cmd, &params) < 0 || seq < 1 ||
	    !json_is_object(params)) {
		snprintf(why, whylen, "not a log record");
		json_decref(v);
		return -EINVAL;
	}
	/* a request line: its envelope is not a parameter */
	json_object_del(params, "id");
	json_object_del(params, "cmd");
	if ((uint64_t)seq <= L->snap_seq) {
		L->skipped++; /* older than the snapshot */
		rc = 0;
	} else if ((uint64_t)seq != L->last_seq + 1 && !(L->any_start && !L->applied)) {
		snprintf(why, whylen, "record %lld follows record %" PRIu64 " (missing records%s)",
			 (long long)seq, L->last_seq, L->last_seq ? "" : ": is the snapshot gone?");
	} else if (obj_replay(cmd, params, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "record %lld (%.40s) cannot be replayed: %s", (long long)seq,
			 cmd, err);
	} else {
		L->last_seq = (uint64_t)seq;
		L->applied++;
		rc = 0;
	}
	json_decref(v);
	return rc;
}

/* Load PATH into the namespace; 0, or -errno with err. */
static int load_snapshot(struct persist_load *L, bool truncate_corrupt, bool *ret_rewrite,
			 char *err, size_t errlen)
{
	struct persist_scan sc;
	struct persist_buf f;
	int fd = persist_file_open(persist_g.name, persist_g.path, O_RDONLY, err, errlen), r;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	r = persist_read_fd(fd, &f);
	close(fd);
	if (r < 0) {
		snprintf(err, errlen, "cannot read %s: %s", persist_g.path, strerror(-r));
		return r;
	}
	persist_scan(f.p, f.len, snap_record, L, &sc);
	if (sc.end == PERSIST_SCAN_OK && (!L->header || !L->ended)) {
		sc.end = PERSIST_SCAN_CORRUPT;
		sc.bad_off = f.len;
		snprintf(sc.why, sizeof(sc.why), "%s", L->header ? "no end record" : "empty file");
	}
	persist_g.snapshot_bytes = f.len;
	persist_buf_free(&f);
	if (sc.end == PERSIST_SCAN_OK) {
		log_info("persist", "snapshot %s: %zu objects up to record %" PRIu64,
			 persist_g.path, L->objects, L->snap_seq);
		return 0;
	}
	/* Written to a temporary file and renamed when complete: any damage is
	 * corruption, a torn tail included. */
	if (!truncate_corrupt) {
		snprintf(err, errlen,
			 "snapshot %s is corrupt at offset %zu: %s; refusing to start "
			 "(--truncate-corrupt-state keeps what precedes the damage)",
			 persist_g.path, sc.bad_off, sc.why);
		return -EBADMSG;
	}
	log_error("persist",
		  "snapshot %s is corrupt at offset %zu: %s; --truncate-corrupt-state: keeping the "
		  "%zu objects before it",
		  persist_g.path, sc.bad_off, sc.why, L->objects);
	if (!L->header)
		L->any_start = true; /* no seq known: take the log as it is */
	*ret_rewrite = true;
	return 0;
}

/* Replay PATH.log; 0, or -errno with err. */
static int load_log(struct persist_load *L, bool truncate_corrupt, bool *ret_rewrite, char *err,
		    size_t errlen)
{
	struct persist_scan sc;
	struct persist_buf f;
	size_t size;
	int r = persist_read_fd(persist_g.log_fd, &f);

	if (r < 0) {
		snprintf(err, errlen, "cannot read %s: %s", persist_g.log_path, strerror(-r));
		return r;
	}
	persist_scan(f.p, f.len, log_record, L, &sc);
	size = f.len;
	persist_buf_free(&f);
	persist_g.log_bytes = sc.good_end;
	persist_g.log_records = sc.records;
	if (sc.end == PERSIST_SCAN_OK)
		return 0;
	if (sc.end == PERSIST_SCAN_TORN) {
		log_warn("persist",
			 "%s: dropping a torn last record at offset %zu (%zu bytes; a "
			 "write interrupted by a crash, never acknowledged)",
			 persist_g.log_path, sc.bad_off, size - sc.bad_off);
	} else if (!truncate_corrupt) {
		snprintf(err, errlen,
			 "state log %s is corrupt at offset %zu: %s; refusing to start "
			 "(--truncate-corrupt-state drops the log from that offset on, %zu bytes)",
			 persist_g.log_path, sc.bad_off, sc.why, size - sc.bad_off);
		return -EBADMSG;
	} else {
		log_error("persist",
			  "state log %s is corrupt at offset %zu: %s; --truncate-corrupt-state: "
			  "dropping %zu bytes from there",
			  persist_g.log_path, sc.bad_off, sc.why, size - sc.bad_off);
		*ret_rewrite = true;
	}
	if (ftruncate(persist_g.log_fd, (off_t)sc.bad_off) < 0 || fdatasync(persist_g.log_fd) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot truncate %s: %s", persist_g.log_path,
			 strerror(errno));
		return r;
	}
	return 0;
}

/* Load PATH and replay PATH.log into the (empty) namespace, with
 * persist_log() off and obj's limits lifted (obj_restoring); 0, or -errno with err. */
int persist_load(struct persist_load *L, bool truncate_corrupt, bool *ret_rewrite, char *err,
		 size_t errlen)
{
	int r;

	persist_g.loading = true;
	obj_restoring = true;
	r = load_snapshot(L, truncate_corrupt, ret_rewrite, err, errlen);
	if (r == 0)
		r = load_log(L, truncate_corrupt, ret_rewrite, err, errlen);
	obj_restoring = false;
	persist_g.loading = false;
	return r;
}
