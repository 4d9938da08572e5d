/*
 * test_err.c: unit tests for lib/base/err.c -- the per-thread error
 * message and code behind `const char **error_r` -- and for the modules
 * that report through it (a spool that cannot spill, a maildir that
 * cannot be written) carrying the errno code out.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/maildir/maildir.h"
#include "lib/queue/spool.h"
#include "tests/unit/test.h"

static void
test_fail_sets_message_and_code(void)
{
	const char *error = NULL;

	test_begin("err_fail sets *error_r, the code, returns -1");
	err_clear();
	test_assert(err_last_code() == ERR_NONE);
	test_assert_streq(err_last(), "");
	test_assert(err_fail(&error, ENOSPC, "write(%s) failed: %s", "f",
	    strerror(ENOSPC)) == -1);
	test_assert(error == err_last());
	test_assert(err_last_code() == ENOSPC);
	test_assert(strncmp(error, "write(f) failed: ", 17) == 0);
	test_assert(err_code_is_full(err_last_code()));
	test_assert(err_code_is_full(EDQUOT));
	test_assert(!err_code_is_full(EIO));
	test_assert(!err_code_is_full(ERR_UTF8));

	/* NULL error_r: only recorded. */
	test_assert(err_fail(NULL, ERR_UTF8, "invalid UTF-8") == -1);
	test_assert(err_last_code() == ERR_UTF8);
	test_assert_streq(err_last(), "invalid UTF-8");
	/* Code 0 is not "no error" after a failure. */
	err_fail(NULL, 0, "unspecified");
	test_assert(err_last_code() == ERR_OTHER);
	/* ERR_* codes are apart from every errno value. */
	test_assert(ERR_OTHER > 4095 && ERR_UTF8 != ERR_8BIT);
	err_clear();
	test_assert(err_last_code() == ERR_NONE);
	test_end();
}

static void
test_earlier_message_as_argument(void)
{
	const char *e1 = NULL, *e2 = NULL;

	test_begin("err_fail: an earlier message may be an argument");
	err_fail(&e1, EACCES, "open(%s) failed", "/x/y");
	err_fail(&e2, err_last_code(), "delivery to %s: %s", "a@b", e1);
	test_assert_streq(e2, "delivery to a@b: open(/x/y) failed");
	test_assert(err_last_code() == EACCES);
	test_end();
}

static void
test_long_message_cut(void)
{
	char *big = xmalloc(ERR_MSG_MAX * 2);
	const char *error = NULL;

	test_begin("err_fail: a message longer than ERR_MSG_MAX is cut");
	memset(big, 'x', ERR_MSG_MAX * 2 - 1);
	big[ERR_MSG_MAX * 2 - 1] = '\0';
	err_fail(&error, EIO, "%s", big);
	test_assert(strlen(error) == ERR_MSG_MAX - 1);
	test_assert(err_last_code() == EIO);
	free(big);
	test_end();
}

struct thread_arg {
	const char *tmpdir;	/* does not exist: the spill fails */
	int rounds;
	int bad;		/* messages that were not this thread's */
};

static void *
spill_thread(void *p)
{
	struct thread_arg *a = p;
	char *chunk = xmalloc(SPOOL_MEM_MAX + 1);

	memset(chunk, 'a', SPOOL_MEM_MAX + 1);
	for (int i = 0; i < a->rounds; i++) {
		struct spool sp;
		const char *error = NULL;

		spool_init(&sp, a->tmpdir);
		if (spool_append(&sp, chunk, SPOOL_MEM_MAX + 1, &error) != -1 ||
		    error == NULL || strstr(error, a->tmpdir) == NULL ||
		    err_last_code() != ENOENT)
			a->bad++;
		spool_reset(&sp);
	}
	free(chunk);
	return NULL;
}

static void
test_spool_errors_per_thread(void)
{
	struct thread_arg a[2];
	pthread_t t[2];
	char *dirs[2];

	test_begin("spool: each thread reads its own error and code");
	for (int i = 0; i < 2; i++) {
		dirs[i] = xasprintf("%s/missing-%d", test_tmpdir(), i);
		a[i].tmpdir = dirs[i];
		a[i].rounds = 200;
		a[i].bad = 0;
		test_assert(pthread_create(&t[i], NULL, spill_thread,
		    &a[i]) == 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		test_assert(a[i].bad == 0);
		free(dirs[i]);
	}
	test_end();
}

static void
test_maildir_code(void)
{
	char *file = xasprintf("%s/plain-file", test_tmpdir());
	char *md = xasprintf("%s/maildir", file);
	const char *error = NULL;
	FILE *f = fopen(file, "w");

	test_begin("maildir: a failed delivery carries errno as its code");
	test_assert(f != NULL);
	if (f != NULL)
		fclose(f);
	err_clear();
	/* A path through a regular file: ENOTDIR from mkdir/open. */
	test_assert(maildir_deliver(md, "x\n", 2, NULL, &error) == -1);
	test_assert(error != NULL);
	test_assert(err_last_code() == ENOTDIR);
	free(md);
	free(file);
	test_end();
}

int
main(void)
{
	test_fail_sets_message_and_code();
	test_earlier_message_as_argument();
	test_long_message_cut();
	test_spool_errors_per_thread();
	test_maildir_code();
	return test_done();
}
