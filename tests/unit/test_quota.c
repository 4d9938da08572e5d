/*
 * test_quota.c: unit tests for lib/maildir/quota.c -- reading hand-written
 * and Courier-style maildirsize files, appending deltas, recalculation
 * from the messages, and the Maildir++ recalculation triggers in
 * maildir_quota_check().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "tests/unit/test.h"

/* maildir_quota_check with a byte limit only. */
static int
qcheck(const char *md, uint64_t bytes, uint64_t adding, const char **error)
{
	struct quota_limit l = { .bytes = bytes };

	return maildir_quota_check(md, &l, adding, error);
}

static char *
new_maildir(const char *name)
{
	const char *error;
	char *md = xasprintf("%s/%s", test_tmpdir(), name);

	if (maildir_make(md, &error) < 0) {
		fprintf(stderr, "maildir_make: %s\n", error);
		exit(2);
	}
	return md;
}

static void
write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(content, f) == EOF || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
}

static void
write_maildirsize(const char *md, const char *content)
{
	char *p = xasprintf("%s/maildirsize", md);

	write_file(p, content);
	free(p);
}

static char *
read_maildirsize(const char *md)
{
	char *p = xasprintf("%s/maildirsize", md), buf[8192];
	FILE *f = fopen(p, "r");
	size_t n;

	free(p);
	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return xstrdup(buf);
}

static off_t
maildirsize_size(const char *md)
{
	char *p = xasprintf("%s/maildirsize", md);
	struct stat st;
	off_t ret = stat(p, &st) == 0 ? st.st_size : -1;

	free(p);
	return ret;
}

static void
age_maildirsize(const char *md, time_t secs)
{
	char *p = xasprintf("%s/maildirsize", md);
	struct timespec ts[2];

	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - secs;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	if (utimensat(AT_FDCWD, p, ts, 0) == -1) {
		perror("utimensat");
		exit(2);
	}
	free(p);
}

static void
test_read(void)
{
	static const char *const bad[] = {
		"abcS\n", "100X\n", "100S,100S\n", "100S,\n", "S\n",
		"1000S\n12\n", "1000S\n12 x\n", "1000S\n1 2 3\n",
		"1000S\n12 3",	/* torn last line */
		"1000S\n9223372036854775807 1\n1 0\n",	/* overflow */
		"1000S\n99999999999999999999 1\n",
		"1000S\n--1 1\n",
	};
	struct maildir_quota q;
	const char *error;
	char *md;
	size_t i;

	md = new_maildir("read");
	test_begin("maildir_quota_read: missing file");
	test_assert(maildir_quota_read(md, &q, &error) == 0);
	test_end();

	test_begin("maildir_quota_read: hand-written file");
	write_maildirsize(md, "1000000S,1000C\n100 2\n  50   1\n-20 -1\n");
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.limit_bytes == 1000000 && q.limit_count == 1000);
	test_assert(q.bytes == 130 && q.count == 2);

	/* Courier pads the totals line; count first is allowed too */
	write_maildirsize(md, "500C,2000S\n      1234        5\n");
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.limit_bytes == 2000 && q.limit_count == 500);
	test_assert(q.bytes == 1234 && q.count == 5);

	write_maildirsize(md, "1000C\n1 1\n\n2 1\n");
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.limit_bytes == 0 && q.limit_count == 1000);
	test_assert(q.bytes == 3 && q.count == 2);

	write_maildirsize(md, "\n10 1\n");
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.limit_bytes == 0 && q.limit_count == 0 && q.bytes == 10);

	write_maildirsize(md, "0S");
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.limit_bytes == 0 && q.bytes == 0 && q.count == 0);

	write_maildirsize(md, "100S\n-5 -1\n");
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.bytes == -5 && q.count == -1);
	test_end();

	test_begin("maildir_quota_read: malformed files");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		write_maildirsize(md, bad[i]);
		test_assert(maildir_quota_read(md, &q, &error) == -1);
		test_assert(error != NULL && strstr(error, "malformed") != NULL);
	}

	/* larger than MAILDIRSIZE_READ_MAX: refused, not slurped */
	{
		size_t n = MAILDIRSIZE_READ_MAX + 4096, off;
		char *big = xmalloc(n + 1);

		off = (size_t)snprintf(big, n, "1000S\n");
		while (off + 4 <= n)
			off += (size_t)snprintf(big + off, 5, "0 0\n");
		big[off] = '\0';
		write_maildirsize(md, big);
		free(big);
		error = NULL;
		test_assert(maildir_quota_read(md, &q, &error) == -1);
		test_assert(error != NULL && strstr(error, "too large") != NULL);
		test_assert(qcheck(md, 1000, 1, &error) == 1);
		test_assert(maildir_quota_read(md, &q, &error) == 1);
		test_assert(q.bytes == 0 && q.count == 0);
	}
	test_end();
	free(md);
}

static void
test_add(void)
{
	struct maildir_quota q;
	const char *error;
	char *md, *p;

	md = new_maildir("add");
	test_begin("maildir_quota_add");
	/* no file: nothing happens, nothing is created */
	test_assert(maildir_quota_add(md, 100, 1, &error) == 0);
	test_assert(maildirsize_size(md) == -1);
	write_maildirsize(md, "1000S\n10 1\n");
	test_assert(maildir_quota_add(md, 100, 1, &error) == 1);
	test_assert(maildir_quota_add(md, -10, -1, &error) == 1);
	test_assert(maildir_quota_add(md, 0, 0, &error) == 0);
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.bytes == 100 && q.count == 1);
	p = read_maildirsize(md);
	test_assert_streq(p, "1000S\n10 1\n100 1\n-10 -1\n");
	free(p);
	test_end();
	free(md);
}

static void
test_recalc(void)
{
	struct maildir_quota q;
	const char *error;
	char *md, *p, *path1, *path2, *sent, *plain, *junk;
	int fd;

	md = new_maildir("recalc");
	test_begin("maildir_quota_recalc counts every folder");
	test_assert(maildir_deliver(md, "12345", 5, &path1, &error) == 0);
	test_assert(maildir_deliver(md, "1234567890", 10, &path2,
	    &error) == 0);
	test_assert(maildir_make_folder(md, "Sent", &error) == 0);
	sent = xasprintf("%s/.Sent", md);
	test_assert(maildir_deliver(sent, "abc", 3, NULL, &error) == 0);
	/* a name without S=: its size comes from stat */
	plain = xasprintf("%s/cur/1234.plain:2,S", md);
	write_file(plain, "0123456789012345678901234567890123456789");
	/* a dot file, tmp/ and a non-folder .dir are not counted */
	p = xasprintf("%s/cur/.hidden", md);
	write_file(p, "xx");
	free(p);
	test_assert(maildir_deliver(md, "", 0, NULL, &error) == 0);
	test_assert(maildir_make(md, &error) == 0);
	p = xasprintf("%s/tmp/inprogress", md);
	write_file(p, "xxxxxxxx");
	free(p);
	junk = xasprintf("%s/.notafolder", md);
	test_assert(mkdir(junk, 0700) == 0);
	p = xasprintf("%s/.notafolder/new", md);
	test_assert(mkdir(p, 0700) == 0);
	free(p);
	p = xasprintf("%s/.notafolder/new/x,S=1000", md);
	write_file(p, "x");
	free(p);

	test_assert(maildir_quota_recalc(md, 100000, 0, &q, &error) == 0);
	test_assert(q.bytes == 5 + 10 + 3 + 40 + 0 && q.count == 5);
	test_assert(q.limit_bytes == 100000 && q.limit_count == 0);
	p = read_maildirsize(md);
	test_assert_streq(p, "100000S\n58 5\n");
	free(p);
	memset(&q, 0, sizeof(q));
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.bytes == 58 && q.count == 5 && q.limit_bytes == 100000);
	/* the recalculation's tmp file is gone */
	p = xasprintf("%s/tmp", md);
	fd = open(p, O_RDONLY | O_DIRECTORY);
	test_assert(fd >= 0);
	close(fd);
	free(p);
	test_end();

	test_begin("recalc after a deletion");
	test_assert(unlink(path2) == 0);
	test_assert(maildir_quota_recalc(md, 100000, 7, &q, &error) == 0);
	test_assert(q.bytes == 48 && q.count == 4);
	p = read_maildirsize(md);
	test_assert_streq(p, "100000S,7C\n48 4\n");
	free(p);
	test_assert(maildir_quota_recalc(md, 0, 3, NULL, &error) == 0);
	p = read_maildirsize(md);
	test_assert_streq(p, "3C\n48 4\n");
	free(p);
	test_assert(maildir_quota_recalc(md, 0, 0, NULL, &error) == 0);
	p = read_maildirsize(md);
	test_assert_streq(p, "0S\n48 4\n");
	free(p);
	test_end();

	test_begin("recalc on a maildir without tmp/ makes it");
	p = xasprintf("%s/notmp", test_tmpdir());
	test_assert(mkdir(p, 0700) == 0);
	test_assert(maildir_quota_recalc(p, 10, 0, &q, &error) == 0);
	test_assert(q.bytes == 0 && q.count == 0);
	free(p);
	test_end();

	free(junk);
	free(plain);
	free(sent);
	free(path1);
	free(path2);
	free(md);
}

static void
test_check(void)
{
	struct maildir_quota q;
	const char *error;
	char *md, *p, *big;
	size_t i, off;

	md = new_maildir("check");
	test_begin("maildir_quota_check under and over");
	test_assert(maildir_deliver(md, "0123456789", 10, NULL, &error) == 0);
	test_assert(qcheck(md, 0, 1u << 30, &error) == 1);
	test_assert(maildirsize_size(md) == -1);	/* 0 = no quota */
	/* missing file: recalculated */
	test_assert(qcheck(md, 100, 90, &error) == 1);
	p = read_maildirsize(md);
	test_assert_streq(p, "100S\n10 1\n");
	free(p);
	test_assert(qcheck(md, 100, 91, &error) == 0);
	test_assert(qcheck(md, 100, 1000, &error) == 0);
	/* deltas count */
	test_assert(maildir_quota_add(md, 50, 1, &error) == 1);
	test_assert(qcheck(md, 100, 40, &error) == 1);
	test_assert(qcheck(md, 100, 41, &error) == 0);
	test_end();

	test_begin("check recalculates on a different limit");
	/* the file says 60 used; the messages say 10 */
	test_assert(qcheck(md, 200, 150, &error) == 1);
	p = read_maildirsize(md);
	test_assert_streq(p, "200S\n10 1\n");
	free(p);
	test_end();

	test_begin("check recalculates a malformed file");
	write_maildirsize(md, "200S\n10 1\ngarbage\n");
	test_assert(qcheck(md, 200, 190, &error) == 1);
	p = read_maildirsize(md);
	test_assert_streq(p, "200S\n10 1\n");
	free(p);
	test_end();

	test_begin("stale over-quota file: recalculated only when old");
	write_maildirsize(md, "200S\n10 1\n500 5\n");
	test_assert(qcheck(md, 200, 10, &error) == 0);
	age_maildirsize(md, MAILDIRSIZE_MAX_AGE - 60);
	test_assert(qcheck(md, 200, 10, &error) == 0);
	age_maildirsize(md, MAILDIRSIZE_MAX_AGE + 60);
	test_assert(qcheck(md, 200, 10, &error) == 1);
	test_assert(maildirsize_size(md) == (off_t)strlen("200S\n10 1\n"));
	/* an old file under quota is left alone */
	write_maildirsize(md, "200S\n10 1\n5 0\n");
	age_maildirsize(md, 3600);
	test_assert(qcheck(md, 200, 10, &error) == 1);
	test_assert(maildir_quota_read(md, &q, &error) == 1 && q.bytes == 15);
	test_end();

	test_begin("check recalculates past MAILDIRSIZE_MAX bytes");
	/* wrong deltas that sum to "full", in a file just over the limit */
	big = xmalloc(MAILDIRSIZE_MAX + 64);
	off = (size_t)snprintf(big, 64, "200S\n10 1\n");
	for (i = 0; off <= MAILDIRSIZE_MAX; i++)
		off += (size_t)snprintf(big + off, 64, "1 0\n");
	write_maildirsize(md, big);
	test_assert(maildirsize_size(md) > MAILDIRSIZE_MAX);
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.bytes == (int64_t)(10 + i));
	test_assert(qcheck(md, 200, 10, &error) == 1);
	test_assert(maildirsize_size(md) == (off_t)strlen("200S\n10 1\n"));
	/* at the limit exactly: not recalculated */
	off = (size_t)snprintf(big, 64, "200S\n10 1\n");
	while (off + 4 <= MAILDIRSIZE_MAX)
		off += (size_t)snprintf(big + off, 64, "0 0\n");
	big[off] = '\0';
	write_maildirsize(md, big);
	test_assert(qcheck(md, 200, 10, &error) == 1);
	test_assert(maildirsize_size(md) == (off_t)off);
	free(big);
	test_end();

	test_begin("count limit from the definition is honoured and kept");
	write_maildirsize(md, "200S,1C\n10 1\n");
	test_assert(qcheck(md, 200, 1, &error) == 0);
	test_assert(qcheck(md, 300, 1, &error) == 0);
	p = read_maildirsize(md);
	test_assert_streq(p, "300S,1C\n10 1\n");
	free(p);
	test_end();

	test_begin("check on a maildir that does not exist yet");
	p = xasprintf("%s/nobody/Maildir", test_tmpdir());
	test_assert(qcheck(p, 100, 100, &error) == 1);
	test_assert(qcheck(p, 100, 101, &error) == 0);
	free(p);
	p = xasprintf("%s/nobody", test_tmpdir());
	test_assert(access(p, F_OK) == -1 && errno == ENOENT);
	free(p);
	test_end();

	test_begin("folders count towards the quota");
	p = xasprintf("%s/maildirsize", md);
	test_assert(unlink(p) == 0);	/* drop the 1C limit from above */
	free(p);
	test_assert(maildir_make_folder(md, "Sent", &error) == 0);
	p = xasprintf("%s/.Sent", md);
	test_assert(maildir_deliver(p, "0123456789012345678901234567890123456789",
	    40, NULL, &error) == 0);
	free(p);
	test_assert(qcheck(md, 60, 10, &error) == 1);
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.bytes == 50 && q.count == 2);
	test_assert(qcheck(md, 60, 11, &error) == 0);
	test_end();
	free(md);
}

static void
test_limit_parse(void)
{
	static const char *const bad[] = {
		"abc", "5X", "5C,5C", "5S,", "-5", "5 S", "1000S 2C",
	};
	struct quota_limit l;

	test_begin("quota_limit_parse: bytes and Courier definitions");
	test_assert(quota_limit_parse("1048576", &l) == 0 &&
	    l.bytes == 1048576 && l.count == 0);
	test_assert(quota_limit_parse(" 42 ", &l) == 0 && l.bytes == 42);
	test_assert(quota_limit_parse("1000S,2C", &l) == 0 &&
	    l.bytes == 1000 && l.count == 2);
	test_assert(quota_limit_parse("2C,1000S", &l) == 0 &&
	    l.bytes == 1000 && l.count == 2);
	test_assert(quota_limit_parse("5C", &l) == 0 && l.bytes == 0 &&
	    l.count == 5);
	test_assert(quota_limit_parse("1000S", &l) == 0 && l.bytes == 1000 &&
	    l.count == 0);
	test_assert(quota_limit_parse("", &l) == 0 && !quota_limit_set(&l));
	test_assert(quota_limit_parse("0", &l) == 0 && !quota_limit_set(&l));
	test_assert(quota_limit_parse("0S", &l) == 0 && !quota_limit_set(&l));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		l.bytes = l.count = 9;
		test_assert(quota_limit_parse(bad[i], &l) == -1 &&
		    !quota_limit_set(&l));
	}
	test_end();
}

static void
test_check_count(void)
{
	struct quota_limit count_only = { .count = 2 };
	struct quota_limit both = { .bytes = 1000, .count = 2 };
	const char *error;
	char *md, *s;

	test_begin("maildir_quota_check with a message count (Courier's C)");
	/* "5C" is a count, not 5 bytes: a large message fits */
	md = new_maildir("count-only");
	test_assert(maildir_quota_check(md, &count_only, 1u << 20,
	    &error) == 1);
	s = read_maildirsize(md);
	test_assert(s != NULL && strcmp(s, "2C\n0 0\n") == 0);
	free(s);
	test_assert(maildir_quota_add(md, 100000, 1, &error) == 1);
	test_assert(maildir_quota_check(md, &count_only, 1, &error) == 1);
	test_assert(maildir_quota_add(md, 100000, 1, &error) == 1);
	/* two messages stored: a third is refused, whatever its size */
	test_assert(maildir_quota_check(md, &count_only, 1, &error) == 0);
	test_assert(maildir_quota_add(md, -100000, -1, &error) == 1);
	test_assert(maildir_quota_check(md, &count_only, 1, &error) == 1);
	free(md);

	/* both parts: the header is kept as Courier wrote it */
	md = new_maildir("count-and-bytes");
	write_maildirsize(md, "1000S,2C\n0 0\n");
	test_assert(maildir_quota_check(md, &both, 500, &error) == 1);
	test_assert(maildir_quota_add(md, 500, 1, &error) == 1);
	test_assert(maildir_quota_check(md, &both, 600, &error) == 0);
	test_assert(maildir_quota_check(md, &both, 400, &error) == 1);
	test_assert(maildir_quota_add(md, 10, 1, &error) == 1);
	test_assert(maildir_quota_check(md, &both, 1, &error) == 0);
	s = read_maildirsize(md);
	test_assert(s != NULL && strcmp(s, "1000S,2C\n0 0\n500 1\n10 1\n")
	    == 0);
	free(s);
	/* a recalculation writes both parts */
	write_maildirsize(md, "1000S,2C\ngarbage\n");
	test_assert(maildir_quota_check(md, &both, 1, &error) == 1);
	s = read_maildirsize(md);
	test_assert(s != NULL && strncmp(s, "1000S,2C\n", 9) == 0);
	free(s);
	/* the directory's count replaces the file's */
	write_maildirsize(md, "1000S,9C\n0 0\n");
	test_assert(maildir_quota_check(md, &both, 1, &error) == 1);
	s = read_maildirsize(md);
	test_assert(s != NULL && strncmp(s, "1000S,2C\n", 9) == 0);
	free(s);
	free(md);
	test_end();
}

/* The claim of docs/reliability.md: appends from concurrent deliveries
 * (processes, as workers are) are single O_APPEND writes, so none is lost
 * or torn: 8 processes x 300 deltas of different sizes add up exactly. */
#define CONC_PROCS 8
#define CONC_ADDS 300

static void
test_add_concurrent(void)
{
	struct maildir_quota q;
	const char *error;
	pid_t pids[CONC_PROCS];
	int64_t want = 0;
	char *md, *s;
	size_t lines = 0;

	md = new_maildir("add-concurrent");
	write_maildirsize(md, "100000000S\n0 0\n");
	test_begin("maildir_quota_add from 8 processes at once");
	for (int i = 0; i < CONC_PROCS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			for (int j = 0; j < CONC_ADDS; j++)
				if (maildir_quota_add(md, 1000 * (i + 1) + j, 1,
				    &error) != 1)
					_exit(1);
			_exit(0);
		}
		test_assert(pids[i] > 0);
		for (int j = 0; j < CONC_ADDS; j++)
			want += 1000 * (i + 1) + j;
	}
	for (int i = 0; i < CONC_PROCS; i++) {
		int status = -1;

		test_assert(waitpid(pids[i], &status, 0) == pids[i]);
		test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	test_assert(maildir_quota_read(md, &q, &error) == 1);
	test_assert(q.bytes == want);
	test_assert(q.count == CONC_PROCS * CONC_ADDS);
	s = xasprintf("%s/maildirsize", md);
	{
		FILE *f = fopen(s, "r");
		char line[128];

		while (f != NULL && fgets(line, sizeof(line), f) != NULL)
			lines++;
		if (f != NULL)
			fclose(f);
	}
	test_assert(lines == 2 + CONC_PROCS * CONC_ADDS);
	free(s);
	test_end();
	free(md);
}

int
main(void)
{
	test_read();
	test_add();
	test_add_concurrent();
	test_recalc();
	test_check();
	test_limit_parse();
	test_check_count();
	return test_done();
}
