/* What every unit test program shares: run a suite, exit 1 on a failure. */
#ifndef MPSUP_TEST_UNIT_H
#define MPSUP_TEST_UNIT_H

#include <check.h>

static inline int unit_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
