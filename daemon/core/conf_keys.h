/*
 * Config keys as tables (inside the config module only): each section is
 * one static array of struct conf_key, one line per key, naming the key, its
 * type and bounds, the field it fills (offsetof) and its default. One setter
 * parses any key of any section; one function applies a section's defaults.
 * The same tables free, copy, compare and show (JSON) what they describe.
 * Adding a key = one table line + the struct field + docs/mpsupd.conf.5.
 */
#ifndef MPSUPD_CONF_KEYS_H
#define MPSUPD_CONF_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

enum conf_type {
	CONF_UINT,     /* decimal, within [min, max]; any unsigned field width */
	CONF_INT,      /* signed decimal within [smin, smax] (an int field) */
	CONF_BOOL,     /* yes/no, true/false, on/off, 1/0 */
	CONF_SIZE,     /* bytes with a K/M/G suffix, within [min, max] */
	CONF_DURATION, /* seconds, or with ms/s/m/min/h (a double field) */
	CONF_ENUM,     /* one of names[], stored as its index */
	CONF_STRING,   /* any text (char *), after the optional check */
	CONF_PATH,     /* an absolute path (char *) */
	CONF_MODE,     /* octal permission bits up to max (mode_t) */
	CONF_SIGNAL,   /* a signal name or number (int) */
	CONF_CUSTOM,   /* parsed by the key's own parse function */
};

/* A key's own parser (CONF_CUSTOM): field points into the structure being
 * filled, ctx is the section's context (the include parser needs it). */
typedef int (*conf_parse_fn)(void *field, const char *value, void *ctx, char *err, size_t errlen);
/* A check run before a CONF_STRING value is stored. */
typedef int (*conf_check_fn)(const char *value, char *err, size_t errlen);
/* What a CONF_CUSTOM field owns: free it (and reset it); copy it into a
 * field that holds a byte copy (owning nothing on failure); compare; show. */
typedef void (*conf_release_fn)(void *field);
typedef int (*conf_copy_fn)(void *dst, const void *src);
typedef bool (*conf_equal_fn)(const void *a, const void *b);
typedef json_t *(*conf_json_fn)(const void *field);

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t offset;               /* of the field in the section's structure */
	size_t size;                 /* of the field (CONF_UINT, CONF_SIZE, CONF_ENUM) */
	unsigned long long min, max; /* CONF_UINT, CONF_SIZE, CONF_MODE (max) */
	long long smin, smax;        /* CONF_INT */
	const char *const *names;    /* CONF_ENUM: NULL-terminated, in enum order */
	/* What the error says is expected: "expected <expect>, not 'VALUE'"
	 * (CONF_UINT: "<expect> MIN..MAX", default "a number"; the defaults
	 * of the others: "a duration in seconds", "an octal mode",
	 * "an integer", "a size"). */
	const char *expect;
	conf_check_fn check; /* CONF_STRING */
	conf_parse_fn parse; /* CONF_CUSTOM */
	/* CONF_CUSTOM, each optional: nothing owned, equal bytes, not shown */
	conf_release_fn release;
	conf_copy_fn copy;
	conf_equal_fn equal;
	conf_json_fn to_json;
	bool scale; /* a change is a scale, not a new definition (processes) */
	/* The default as it would be written in the file; NULL = zero/NULL
	 * (or set by code beside the table). */
	const char *def;
};

/* The keys of one section. */
struct conf_section {
	const struct conf_key *keys;
	size_t n_keys;
	const char *unknown; /* the message for a key not in the table */
};

#define CONF_FIELD(type, field) .offset = offsetof(type, field), .size = sizeof(((type *)0)->field)

/* Set key of section sec in the structure at base from its text form.
 * Returns 0, or a negative errno with the problem (no file, line or key) in
 * err; the field is left alone on error. */
int conf_key_set(const struct conf_section *sec, void *base, void *ctx, const char *key,
		 const char *value, char *err, size_t errlen);
/* Set every key of sec that has a default; -EINVAL names a bad default. */
int conf_keys_defaults(const struct conf_section *sec, void *base, char *err, size_t errlen);

/* Free what the fields of sec own at base (NULL-tolerant fields). */
void conf_keys_release(const struct conf_section *sec, void *base);
/* Give dst, a byte copy of src, its own copies; on -ENOMEM the fields not
 * copied are NULL (conf_keys_release is safe either way). */
int conf_keys_copy(const struct conf_section *sec, void *dst, const void *src);
/* True when every key but the scale keys has the same value in a and b. */
bool conf_keys_equal(const struct conf_section *sec, const void *a, const void *b);
/* Set every shown key of base in obj ({key: value}, in table order);
 * -ENOMEM when a value cannot be made. */
int conf_keys_to_json(const struct conf_section *sec, const void *base, json_t *obj);
bool conf_str_eq(const char *a, const char *b);

/* Typed parsers shared by the config files. */
int conf_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int conf_parse_uint(const char *s, unsigned long long min, unsigned long long max,
		    unsigned long long *ret);
int conf_parse_size(const char *s, uint64_t *ret);
int conf_parse_bool(const char *s, bool *ret);
int conf_parse_mode(const char *s, mode_t *ret);
/* A user or group by name or number that exists (numbers always do). */
/* A user or group id written as a number (0..4294967294; -1 means "none"). */
bool conf_parse_id(const char *s, uint32_t *ret);
/* A user or group named by number or by name: 0, or -ENOENT. */
int conf_lookup_user(const char *s, uid_t *ret);
int conf_lookup_group(const char *s, gid_t *ret);
int conf_check_user(const char *value, char *err, size_t errlen);
int conf_check_group(const char *value, char *err, size_t errlen);
/* Replace *dst with a copy of value. */
int conf_set_string(char **dst, const char *value);
char **conf_strv_dup(char *const *v);

#endif
