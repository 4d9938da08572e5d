/*
 * fuzz_quota.c: the Maildir++ "maildirsize" file (lib/maildir/quota.c),
 * which Courier, Dovecot and petrel all append to and which anyone who
 * can write the maildir can change. The first byte picks the user's
 * quota and the size of a message being delivered; the rest is the file,
 * put in an empty maildir made with mkdtemp under $TMPDIR (or the working
 * directory). Checks:
 *  - a file read OK that ends in a line end stays OK after a delivery's
 *    append, with the usage grown by exactly that (or is refused if the
 *    sum no longer fits);
 *  - after maildir_quota_check the file reads OK with the user's byte
 *    limit (a bad, stale or foreign one is recalculated), and the answer
 *    is what that file says: the message fits under both limits.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/maildir/quota.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir, *file;

static const uint64_t limits[4] = { 1, 1000, 1u << 30, UINT64_MAX };
static const uint64_t adding[4] = { 0, 7, 999, UINT64_MAX };

static void
cleanup(void)
{
	static const char *const subs[] = { "new", "cur", "tmp" };
	char *p;

	if (dir == NULL)
		return;
	unlink(file);
	for (size_t i = 0; i < 3; i++) {
		p = xasprintf("%s/%s", dir, subs[i]);
		rmdir(p);
		free(p);
	}
	rmdir(dir);
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char *t = xasprintf("%s/petrel-fuzz-quota.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : ".");
	static const char *const subs[] = { "new", "cur", "tmp" };

	dir = mkdtemp(t);
	if (dir == NULL) {
		perror("mkdtemp");
		abort();
	}
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);

		if (mkdir(p, 0700) < 0) {
			perror(p);
			abort();
		}
		free(p);
	}
	file = xasprintf("%s/maildirsize", dir);
	atexit(cleanup);
}

static bool
fits(const struct maildir_quota *q, uint64_t limit, uint64_t add)
{
	uint64_t used = q->bytes > 0 ? (uint64_t)q->bytes : 0;
	uint64_t n = q->count > 0 ? (uint64_t)q->count : 0;

	return add <= limit && used <= limit - add &&
	    (q->limit_count == 0 || n < q->limit_count);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildir_quota q, q2;
	struct quota_limit lim = { 0 };
	const char *error;
	uint64_t limit, add;
	FILE *fp;
	int r, r2;

	if (size == 0)
		return 0;
	if (dir == NULL)
		setup();
	limit = limits[data[0] & 3];
	add = adding[data[0] >> 2 & 3];
	fp = fopen(file, "wb");
	if (fp == NULL || (size > 1 && fwrite(data + 1, 1, size - 1, fp) !=
	    size - 1) || fclose(fp) != 0) {
		perror(file);
		abort();
	}

	r = maildir_quota_read(dir, &q, &error);
	if (r == 0)
		abort();	/* the file is there */
	if (r == 1 && size > 2 && data[size - 1] == '\n') {
		int64_t b, c;
		bool over = __builtin_add_overflow(q.bytes, 7, &b) ||
		    __builtin_add_overflow(q.count, 1, &c);

		if (maildir_quota_add(dir, 7, 1, &error) != 1)
			abort();
		r2 = maildir_quota_read(dir, &q2, &error);
		if (over ? r2 != -1 : r2 != 1 || q2.bytes != b ||
		    q2.count != c || q2.limit_bytes != q.limit_bytes ||
		    q2.limit_count != q.limit_count)
			abort();
	}

	lim.bytes = limit;
	r = maildir_quota_check(dir, &lim, add, &error);
	if (r < 0)
		abort();
	if (maildir_quota_read(dir, &q2, &error) != 1 ||
	    q2.limit_bytes != limit || (r == 1) != fits(&q2, limit, add))
		abort();
	return 0;
}
