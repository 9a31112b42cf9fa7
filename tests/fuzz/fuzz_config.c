/*
 * Fuzz target: the configuration parser (conf_load_string) and what the
 * daemon does with a parsed config: each pool as pool.list shows it must
 * define the same pool again through pool.add (pool_conf_from_json), and a
 * copy must equal its original. A refused config must say why.
 *
 * Input: the config text (an embedded NUL ends it). Relative includes are
 * resolved against an empty directory.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "log.h"

/* Run relative includes against an empty directory: inputs stay
 * independent of the working directory. */
static void setup(void)
{
	char dir[] = "/tmp/mpsup-fuzz-config-XXXXXX";

	log_init(LOG_LVL_ERROR);
	if (mkdtemp(dir) && chdir(dir) == 0)
		rmdir(dir); /* the cwd stays valid and empty */
}

static void check_pool(const struct pool_conf *p)
{
	char err[CONF_ERR_MAX];
	struct pool_conf *copy = pool_conf_dup(p), *back = NULL;
	json_t *j = pool_conf_to_json(p);

	FUZZ_CHECK(copy, "pool_conf_dup failed");
	FUZZ_CHECK(!pool_conf_differs(p, copy), "a copy of pool %s differs", p->name);
	FUZZ_CHECK(j, "pool_conf_to_json failed for pool %s", p->name);
	/* A pool as listed must be accepted again as it is (pool.add of pool.list). */
	if (p->command) {
		int r = pool_conf_from_json(j, &back, err, sizeof(err));
		char *text = json_dumps(j, JSON_COMPACT);
		FUZZ_CHECK(r == 0, "pool %s as JSON is refused: %s\n%s", p->name, err, text);
		FUZZ_CHECK(!pool_conf_differs(p, back), "pool %s changes through JSON: %s", p->name,
			   text);
		free(text);
	}
	pool_conf_free(back);
	pool_conf_free(copy);
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char err[CONF_ERR_MAX] = "";
	struct conf *cf = NULL;
	char *text;

	if (!ready) {
		setup();
		ready = true;
	}
	text = malloc(size + 1);
	FUZZ_CHECK(text, "out of memory");
	memcpy(text, data, size);
	text[size] = '\0';
	if (conf_load_string(text, "fuzz.conf", &cf, err, sizeof(err)) == 0) {
		FUZZ_CHECK(cf, "success without a config");
		for (const struct pool_conf *p = cf->pools; p; p = p->next)
			check_pool(p);
		conf_free(cf);
	} else {
		FUZZ_CHECK(err[0], "a refused config without a message");
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)), "unterminated message");
	}
	free(text);
	return 0;
}
