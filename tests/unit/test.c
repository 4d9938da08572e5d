/* test.c: the unit-test harness (see test.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static const char *current;
static int failures, cases, case_failed;
static char tmpdir[256];

static void
cleanup_tmpdir(void)
{
	char cmd[300];

	if (tmpdir[0] != '\0' && getenv("PETREL_TEST_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		(void)!system(cmd);
	}
}

const char *
test_tmpdir(void)
{
	if (tmpdir[0] == '\0') {
		const char *base = getenv("TMPDIR");

		snprintf(tmpdir, sizeof(tmpdir), "%s/petrel-unit-XXXXXX",
		    base != NULL ? base : "/tmp");
		if (mkdtemp(tmpdir) == NULL) {
			perror("mkdtemp");
			exit(2);
		}
		atexit(cleanup_tmpdir);
	}
	return tmpdir;
}

void
test_begin(const char *name)
{
	current = name;
	case_failed = 0;
	cases++;
}

void
test_assert_at(bool ok, const char *expr, const char *file, int line)
{
	if (ok)
		return;
	fprintf(stderr, "FAIL %s: %s:%d: %s\n", current ? current : "?",
	    file, line, expr);
	case_failed = 1;
}

void
test_end(void)
{
	if (case_failed)
		failures++;
	printf("%-60s %s\n", current, case_failed ? "FAIL" : "ok");
	current = NULL;
}

int
test_done(void)
{
	printf("%d passed, %d failed\n", cases - failures, failures);
	return failures == 0 ? 0 : 1;
}
