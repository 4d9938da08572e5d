/*
 * test_mailbox.c: unit tests for lib/store/mailbox.c (and mbox_index.c,
 * mbox_cache.c) -- UID assignment and stability across handles and
 * processes, new/ -> cur/ and \Recent, flag changes and expunges seen by
 * other handles, dovecot-uidlist / courierimapuiddb import, rebuilding
 * corrupt indexes, keywords, the cache, STATUS, and a 20,000-message
 * folder whose warm open trusts the index.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/store/mailbox.h"
#include "lib/maildir/maildir.h"
#include "tests/unit/test.h"

static unsigned int folder_seq;

/* A message's flag letters, sorted (up to four calls in an
 * expression). */
static const char *
msg_flags(const struct mbox_msg *m)
{
	static char buf[4][53];
	static unsigned int k;

	return mbox_msg_flags(m, buf[k++ % 4]);
}

/* A fresh maildir folder under the test directory. malloc'd. */
static char *
mkfolder(const char *what)
{
	char *path = xasprintf("%s/%s-%u", test_tmpdir(), what, ++folder_seq);
	const char *error;

	if (maildir_make(path, &error) < 0) {
		fprintf(stderr, "maildir_make: %s\n", error);
		exit(2);
	}
	return path;
}

static void
write_file(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, content, strlen(content)) !=
	    (ssize_t)strlen(content) || close(fd) < 0) {
		perror(path);
		exit(2);
	}
}

/* folder/sub/name with content; mtime set when > 0. */
static void
put_msg(const char *folder, const char *sub, const char *name,
    const char *content, time_t mtime)
{
	char *path = xasprintf("%s/%s/%s", folder, sub, name);

	write_file(path, content);
	if (mtime > 0) {
		struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };

		utimensat(AT_FDCWD, path, ts, 0);
	}
	free(path);
}

/* Give cur/ and new/ an mtime in the past, so the index may trust it. */
static void
age_dirs(const char *folder)
{
	struct timespec ts[2];
	char *p;
	int d;

	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= 100;
	ts[1] = ts[0];
	for (d = 0; d < 2; d++) {
		p = xasprintf("%s/%s", folder, d ? "cur" : "new");
		utimensat(AT_FDCWD, p, ts, 0);
		free(p);
	}
}

static struct timespec
dir_mtime(const char *folder, const char *sub)
{
	char *p = xasprintf("%s/%s", folder, sub);
	struct stat st;

	if (stat(p, &st) < 0)
		memset(&st, 0, sizeof(st));
	free(p);
	return st.st_mtim;
}

static void
set_dir_mtime(const char *folder, const char *sub, struct timespec t)
{
	char *p = xasprintf("%s/%s", folder, sub);
	struct timespec ts[2] = { t, t };

	utimensat(AT_FDCWD, p, ts, 0);
	free(p);
}

static int
count_dir(const char *folder, const char *sub)
{
	char *p = xasprintf("%s/%s", folder, sub);
	struct dirent *de;
	DIR *d = opendir(p);
	int n = 0;

	free(p);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

static bool
file_exists(const char *folder, const char *sub, const char *name)
{
	char *p = xasprintf("%s/%s/%s", folder, sub, name);
	struct stat st;
	bool ok = stat(p, &st) == 0;

	free(p);
	return ok;
}

static bool
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The message whose name starts with key (up to ':'), or NULL. */
static struct mbox_msg *
find_key(struct mbox *mb, const char *key)
{
	size_t i, kl = strlen(key);

	for (i = 0; i < mb->n; i++) {
		if (strncmp(mbox_msg(mb, i)->name, key, kl) == 0 &&
		    (mbox_msg(mb, i)->name[kl] == ':' ||
		    mbox_msg(mb, i)->name[kl] == '\0'))
			return mbox_msg(mb, i);
	}
	return NULL;
}

static size_t
live_count(const struct mbox *mb)
{
	size_t i, n = 0;

	for (i = 0; i < mb->n; i++)
		n += !mbox_msg(mb, i)->expunged;
	return n;
}

static double
elapsed_ms(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a->tv_sec) * 1e3 +
	    (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

static struct mbox *
open_ok(const char *folder, bool readonly)
{
	struct mbox *mb = NULL;
	const char *error = NULL;

	if (mbox_open(folder, readonly, &mb, &error) < 0) {
		fprintf(stderr, "mbox_open(%s): %s\n", folder, error);
		return NULL;
	}
	return mb;
}

/* The cache of message i holds want (a macro: failures name the line). */
#define cache_is(mb, i, kind, want) do {				\
	char *cache_v_ = mbox_cache_get((mb), (i), (kind));		\
									\
	test_assert_streq(cache_v_, (want));				\
	free(cache_v_);							\
} while (0)

/* ---- tests ---- */

static void
test_fresh(void)
{
	char *f = mkfolder("fresh");
	struct mbox *mb, *mb2;
	struct mbox_msg *m;
	const char *error;
	size_t i;

	test_begin("mailbox: fresh folder gets UIDs 1..n in name order");
	/* created out of order; names order them */
	put_msg(f, "new", "1700000003.M5P1.host", "c\n", 1700000003);
	put_msg(f, "new", "1700000001.M9P1.host,S=4,W=6", "a\nb\n",
	    1700000001);
	put_msg(f, "new", "1700000002.M1P1.host", "x\r\ny\nz", 1700000002);
	put_msg(f, "cur", "1700000001.M10P1.host:2,S", "hello\n", 1700000009);
	put_msg(f, "new", ".hidden", "x", 0);
	put_msg(f, "new", "bad\001name", "x", 0);
	{
		/* a directory is not a message, whatever its name */
		char *d = xasprintf("%s/cur/1700000004.M1P1.host:2,", f);

		test_assert(mkdir(d, 0700) == 0);
		free(d);
	}
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb == NULL)
		goto out;
	test_assert(mb->uidvalidity > 1600000000u);
	test_assert(mb->n == 4);
	test_assert(mb->uidnext == 5);
	for (i = 0; i < mb->n; i++) {
		test_assert(mbox_msg(mb, i)->uid == i + 1);
		test_assert(mbox_msg(mb, i)->in_cur);
		test_assert(!mbox_msg(mb, i)->expunged);
		test_assert(!mbox_msg(mb, i)->flags_changed);
	}
	test_assert(starts_with(mbox_msg(mb, 0)->name, "1700000001.M9P1"));
	test_assert(starts_with(mbox_msg(mb, 1)->name, "1700000001.M10P1"));
	test_assert(starts_with(mbox_msg(mb, 2)->name, "1700000002.M1P1"));
	test_assert(starts_with(mbox_msg(mb, 3)->name, "1700000003.M5P1"));
	/* new/ files moved to cur/ with ":2," and recent; cur/ one not */
	test_assert_streq(mbox_msg(mb, 0)->name, "1700000001.M9P1.host,S=4,W=6:2,");
	test_assert(mbox_msg(mb, 0)->recent);
	test_assert(!mbox_msg(mb, 1)->recent);
	test_assert_streq(msg_flags(mbox_msg(mb, 1)), "S");
	test_assert(mbox_msg(mb, 2)->recent && mbox_msg(mb, 3)->recent);
	test_assert(file_exists(f, "cur", "1700000003.M5P1.host:2,"));
	test_assert(count_dir(f, "new") == 1);	/* the skipped one */
	/* the sync only listed the directories: no file looked at */
	for (i = 0; i < mb->n; i++) {
		test_assert(mbox_msg(mb, i)->info_pending);
		test_assert(mbox_msg(mb, i)->size == 0 && mbox_msg(mb, i)->vsize == 0);
	}
	/* ... and the index says so to another handle */
	mb2 = open_ok(f, false);
	test_assert(mb2 != NULL && mb2->n == 4);
	for (i = 0; mb2 != NULL && i < mb2->n; i++)
		test_assert(mbox_msg(mb2, i)->info_pending);
	mbox_close(&mb2);
	for (i = 0; i < 3; i++)
		test_assert(mbox_msg_info(mb, i, &error) == 0);
	/* sizes: from S=/W=, else counted (bare LFs count twice) */
	test_assert(mbox_msg(mb, 0)->size == 4 && mbox_msg(mb, 0)->vsize == 6);
	test_assert(mbox_msg(mb, 1)->size == 6 && mbox_msg(mb, 1)->vsize == 7);
	test_assert(mbox_msg(mb, 2)->size == 6 && mbox_msg(mb, 2)->vsize == 7);
	/* internaldate: the mtime */
	test_assert(mbox_msg(mb, 0)->internaldate == 1700000001);
	test_assert(mbox_msg(mb, 1)->internaldate == 1700000009);
	test_assert(!mbox_msg(mb, 0)->info_pending);
	/* learned from a read of the whole file (FETCH): no new look */
	test_assert(mbox_msg(mb, 3)->info_pending);
	{
		char *p = mbox_msg_path(mb, mbox_msg(mb, 3));
		struct stat st;

		test_assert(stat(p, &st) == 0);
		st.st_mtim.tv_sec = 1700000077;
		mbox_msg_learn(mb, 3, &st, 3);
		free(p);
	}
	test_assert(!mbox_msg(mb, 3)->info_pending);
	test_assert(mbox_msg(mb, 3)->size == 2 && mbox_msg(mb, 3)->vsize == 3);
	test_assert(mbox_msg(mb, 3)->internaldate == 1700000077);
	/* learning twice changes nothing */
	{
		struct stat st = { .st_mode = S_IFREG, .st_size = 50 };

		mbox_msg_learn(mb, 3, &st, 60);
		test_assert(mbox_msg(mb, 3)->size == 2);
	}
	test_assert(mbox_flush(mb, &error) == 0);
	test_assert(mbox_find_uid(mb, 3) == 2);
	test_assert(mbox_find_uid(mb, 9) == -1);
	m = mbox_msg(mb, 2);
	{
		char *p = mbox_msg_path(mb, m);
		char *want = xasprintf("%s/cur/%s", f, m->name);

		test_assert_streq(p, want);
		free(p);
		free(want);
	}
	/* a second handle: same UIDs, nothing recent */
	mb2 = open_ok(f, false);
	test_assert(mb2 != NULL);
	if (mb2 != NULL) {
		test_assert(mb2->uidvalidity == mb->uidvalidity);
		test_assert(mb2->n == 4);
		for (i = 0; i < mb2->n && i < mb->n; i++) {
			test_assert(mbox_msg(mb2, i)->uid == mbox_msg(mb, i)->uid);
			test_assert_streq(mbox_msg(mb2, i)->name, mbox_msg(mb, i)->name);
			test_assert(!mbox_msg(mb2, i)->recent);
			test_assert(mbox_msg(mb2, i)->internaldate ==
			    mbox_msg(mb, i)->internaldate);
		}
		mbox_close(&mb2);
	}
	/* a file not looked at yet that vanishes: the message is gone */
	put_msg(f, "cur", "1700000005.M1P1.host:2,", "late\n", 1700000005);
	test_assert(mbox_sync(mb, &i, &error) == 0 && i == 1);
	test_assert(mb->n == 5 && mbox_msg(mb, 4)->info_pending);
	{
		char *p = mbox_msg_path(mb, mbox_msg(mb, 4));

		test_assert(unlink(p) == 0);
		free(p);
	}
	test_assert(mbox_msg_info(mb, 4, &error) == 1);
	test_assert(mbox_msg(mb, 4)->expunged);
	mbox_close(&mb);
	test_assert(mb == NULL);
out:
	free(f);
	test_end();
}

static void
test_stability(void)
{
	char *f = mkfolder("stable"), *path = NULL;
	struct mbox *a, *b;
	const char *error;
	uint32_t uidv;
	size_t added = 99;

	test_begin("mailbox: UIDs stable across reopen and two handles");
	for (int i = 0; i < 3; i++) {
		test_assert(maildir_deliver(f, "Subject: x\n\nhi\n", 15, NULL,
		    &error) == 0);
	}
	a = open_ok(f, false);
	test_assert(a != NULL && a->n == 3);
	if (a == NULL)
		goto out;
	uidv = a->uidvalidity;
	mbox_close(&a);
	a = open_ok(f, false);
	b = open_ok(f, false);
	test_assert(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		goto out2;
	test_assert(a->uidvalidity == uidv && b->uidvalidity == uidv);
	test_assert(a->n == 3 && mbox_msg(a, 2)->uid == 3 && !mbox_msg(a, 2)->recent);

	/* a delivery: the first handle to sync gets it recent */
	test_assert(maildir_deliver(f, "Subject: y\n\nnew\n", 16, &path,
	    &error) == 0);
	test_assert(mbox_sync(a, &added, &error) == 0);
	test_assert(added == 1);
	test_assert(a->n == 4 && mbox_msg(a, 3)->uid == 4 && mbox_msg(a, 3)->recent);
	test_assert(a->uidnext == 5);
	test_assert(mbox_sync(b, &added, &error) == 0);
	test_assert(added == 1);
	test_assert(b->n == 4 && mbox_msg(b, 3)->uid == 4 && !mbox_msg(b, 3)->recent);
	test_assert_streq(mbox_msg(b, 3)->name, mbox_msg(a, 3)->name);
	test_assert(b->uidnext == 5);

	/* the other way round, two at once */
	test_assert(maildir_deliver(f, "1\n", 2, NULL, &error) == 0);
	test_assert(maildir_deliver(f, "2\n", 2, NULL, &error) == 0);
	test_assert(mbox_sync(b, &added, &error) == 0);
	test_assert(added == 2 && b->n == 6);
	test_assert(mbox_msg(b, 4)->uid == 5 && mbox_msg(b, 5)->uid == 6);
	test_assert(mbox_msg(b, 4)->recent && mbox_msg(b, 5)->recent);
	test_assert(mbox_sync(a, &added, &error) == 0);
	test_assert(added == 2 && a->n == 6);
	test_assert(mbox_msg(a, 5)->uid == 6 && !mbox_msg(a, 5)->recent);
	test_assert_streq(mbox_msg(a, 5)->name, mbox_msg(b, 5)->name);
	/* nothing new: nothing added */
	test_assert(mbox_sync(a, &added, &error) == 0 && added == 0);
out2:
	mbox_close(&a);
	mbox_close(&b);
	/* reopen: the same */
	a = open_ok(f, true);
	test_assert(a != NULL && a->n == 6 && a->uidvalidity == uidv);
	test_assert(a != NULL && a->uidnext == 7);
	mbox_close(&a);
out:
	free(path);
	free(f);
	test_end();
}

/* The flag letters of an entry as bits and back (struct mbox_msg
 * keeps them in a uint64_t). */
static void
test_flag_bits(void)
{
	struct mbox_msg m;
	char out[53], all[53];
	size_t n = 0;

#if UINTPTR_MAX == UINT64_MAX
	test_assert(sizeof(struct mbox_msg) == 72);
#endif
	for (char c = 'A'; c <= 'Z'; c++)
		all[n++] = c;
	for (char c = 'a'; c <= 'z'; c++)
		all[n++] = c;
	all[n] = '\0';
	test_assert(mbox_flags_bits("") == 0);
	test_assert(mbox_flags_bits("A") == 1);
	test_assert(mbox_flags_bits("Z") == (uint64_t)1 << 25);
	test_assert(mbox_flags_bits("a") == (uint64_t)1 << 26);
	test_assert(mbox_flags_bits("z") == (uint64_t)1 << 51);
	test_assert(mbox_flags_bits(all) == ((uint64_t)1 << 52) - 1);
	test_assert_streq(mbox_bits_flags(mbox_flags_bits(all), out), all);
	/* not letters: ignored; order and repeats do not matter */
	test_assert(mbox_flags_bits("S,2:@[`{ \x7f\x80\xff") ==
	    mbox_flags_bits("S"));
	test_assert_streq(mbox_bits_flags(mbox_flags_bits("zSaSDTF"), out),
	    "DFSTaz");
	test_assert_streq(mbox_bits_flags(0, out), "");
	/* bits above the 52 letters make no letters */
	test_assert_streq(mbox_bits_flags(~(uint64_t)0 << 52 | 1, out), "A");
	memset(&m, 0, sizeof(m));
	m.flagbits = mbox_flags_bits("PRSb");
	test_assert(mbox_msg_has(&m, 'S') && mbox_msg_has(&m, 'b'));
	test_assert(!mbox_msg_has(&m, 'T') && !mbox_msg_has(&m, 's'));
	test_assert(!mbox_msg_has(&m, '\0') && !mbox_msg_has(&m, ','));
	test_assert_streq(mbox_msg_flags(&m, out), "PRSb");
}

static void
test_flags(void)
{
	char *f = mkfolder("flags"), *from, *to;
	struct mbox *a, *b;
	const char *error;
	struct mbox_msg *m;
	size_t added;

	test_begin("mailbox: flag changes seen by other handles");
	put_msg(f, "cur", "1700000001.M1P1.h,S=2,W=3:2,", "a\n", 0);
	put_msg(f, "cur", "1700000002.M1P1.h,S=2,W=3:2,S", "b\n", 0);
	put_msg(f, "new", "1700000003.M1P1.h,S=2,W=3", "c\n", 0);
	a = open_ok(f, false);
	b = open_ok(f, false);
	test_assert(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		goto out;
	test_assert(mbox_set_flags(a, 0, "SFS", &error) == 0);
	test_assert_streq(msg_flags(mbox_msg(a, 0)), "FS");
	test_assert_streq(mbox_msg(a, 0)->name, "1700000001.M1P1.h,S=2,W=3:2,FS");
	test_assert(!mbox_msg(a, 0)->flags_changed);
	test_assert(file_exists(f, "cur", "1700000001.M1P1.h,S=2,W=3:2,FS"));
	test_assert(mbox_set_flags(a, 1, "x!", &error) == -1);
	test_assert(mbox_set_flags(a, 7, "S", &error) == -1);
	test_assert(mbox_flush(a, &error) == 0);
	test_assert(mbox_sync(b, &added, &error) == 0 && added == 0);
	test_assert(mbox_msg(b, 0)->flags_changed);
	test_assert_streq(msg_flags(mbox_msg(b, 0)), "FS");
	test_assert(!mbox_msg(b, 1)->flags_changed);
	test_assert(mbox_msg(b, 0)->uid == 1);
	mbox_msg(b, 0)->flags_changed = false;

	/* another tool renames a file: same UID, new flags */
	from = xasprintf("%s/cur/1700000002.M1P1.h,S=2,W=3:2,S", f);
	to = xasprintf("%s/cur/1700000002.M1P1.h,S=2,W=3:2,RS", f);
	test_assert(rename(from, to) == 0);
	free(from);
	free(to);
	test_assert(mbox_sync(b, &added, &error) == 0 && added == 0);
	test_assert(mbox_msg(b, 1)->flags_changed);
	test_assert_streq(msg_flags(mbox_msg(b, 1)), "RS");
	test_assert(mbox_msg(b, 1)->uid == 2 && !mbox_msg(b, 1)->expunged);
	test_assert(mbox_sync(a, &added, &error) == 0 && added == 0);
	test_assert(mbox_msg(a, 1)->flags_changed);
	test_assert_streq(mbox_msg(a, 1)->name, "1700000002.M1P1.h,S=2,W=3:2,RS");
	test_assert(!mbox_msg(a, 0)->flags_changed);

	/* a stale handle renames a file someone else renamed meanwhile:
	 * it finds the new name, no expunge, and applies its own change
	 * (+D) to the new flags (T stays: no lost flag) */
	from = xasprintf("%s/cur/1700000003.M1P1.h,S=2,W=3:2,", f);
	to = xasprintf("%s/cur/1700000003.M1P1.h,S=2,W=3:2,T", f);
	test_assert(rename(from, to) == 0);
	test_assert(mbox_set_flags(b, 2, "D", &error) == 0);
	test_assert_streq(mbox_msg(b, 2)->name, "1700000003.M1P1.h,S=2,W=3:2,DT");
	test_assert(!mbox_msg(b, 2)->expunged);
	test_assert(file_exists(f, "cur", "1700000003.M1P1.h,S=2,W=3:2,DT"));
	test_assert(count_dir(f, "cur") == 3);
	/* a vanished file: expunged, 1 */
	free(from);
	free(to);
	to = xasprintf("%s/cur/1700000003.M1P1.h,S=2,W=3:2,DT", f);
	unlink(to);
	free(to);
	test_assert(mbox_set_flags(b, 2, "S", &error) == 1);
	test_assert(mbox_msg(b, 2)->expunged);
	test_assert(mbox_set_flags(b, 2, "S", &error) == 1);

	/* the trusted-mtime path: an aged directory, then a change */
	age_dirs(f);
	test_assert(mbox_sync(a, &added, &error) == 0);	/* records it */
	m = mbox_msg(a, 0);
	m->flags_changed = false;
	from = xasprintf("%s/cur/%s", f, m->name);
	to = xasprintf("%s/cur/1700000001.M1P1.h,S=2,W=3:2,", f);
	test_assert(rename(from, to) == 0);
	free(from);
	free(to);
	test_assert(mbox_sync(a, &added, &error) == 0);
	test_assert(mbox_msg(a, 0)->flags_changed);
	test_assert_streq(msg_flags(mbox_msg(a, 0)), "");
	test_assert(mbox_msg(a, 2)->expunged);
out:
	mbox_close(&a);
	mbox_close(&b);
	free(f);
	test_end();
}

static void
test_readonly(void)
{
	char *f = mkfolder("ro");
	struct mbox *mb, *rw;
	const char *error;
	size_t idx = 0;

	test_begin("mailbox: read-only handles leave new/ alone");
	put_msg(f, "new", "1700000001.M1P1.h", "a\n", 0);
	put_msg(f, "new", "1700000002.M1P1.h", "b\n", 0);
	mb = open_ok(f, true);
	test_assert(mb != NULL);
	if (mb == NULL)
		goto out;
	test_assert(mb->n == 2 && !mbox_msg(mb, 0)->in_cur && !mbox_msg(mb, 0)->recent);
	test_assert(count_dir(f, "new") == 2);
	test_assert(mbox_set_flags(mb, 0, "S", &error) == -1);
	test_assert(mbox_expunge(mb, &idx, 1, &error) == -1);
	/* keywords may still be named (COPY and APPEND targets) */
	test_assert(mbox_keyword_letter(mb, "Junk", true) == 'a');
	/* a read-write handle takes them: same UIDs, recent there */
	rw = open_ok(f, false);
	test_assert(rw != NULL && rw->n == 2);
	if (rw != NULL) {
		test_assert(mbox_msg(rw, 0)->uid == 1 && mbox_msg(rw, 0)->recent);
		test_assert(mbox_msg(rw, 1)->uid == 2 && mbox_msg(rw, 1)->in_cur);
		mbox_close(&rw);
	}
	test_assert(count_dir(f, "new") == 0);
	test_assert(mbox_sync(mb, NULL, &error) == 0);
	test_assert(mbox_msg(mb, 0)->in_cur && !mbox_msg(mb, 0)->recent);
	test_assert(!mbox_msg(mb, 0)->flags_changed && !mbox_msg(mb, 0)->expunged);
	mbox_close(&mb);
out:
	free(f);
	test_end();
}

static void
test_expunge(void)
{
	char *f = mkfolder("expunge"), *name;
	struct mbox *a, *b;
	const char *error;
	uint32_t *seqs = NULL;
	size_t n = 0, idx[3], i;

	test_begin("mailbox: expunge, seen by another handle, purge");
	for (i = 0; i < 6; i++) {
		name = xasprintf("17000000%02zu.M1P1.h,S=2,W=3", i);
		put_msg(f, "cur", name, "x\n", 0);
		free(name);
	}
	a = open_ok(f, false);
	b = open_ok(f, false);
	test_assert(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		goto out;
	idx[0] = 1;
	idx[1] = 3;
	idx[2] = 3;	/* twice is fine */
	test_assert(mbox_expunge(a, idx, 3, &error) == 0);
	test_assert(mbox_msg(a, 1)->expunged && mbox_msg(a, 3)->expunged);
	test_assert(count_dir(f, "cur") == 4);
	test_assert(mbox_flush(a, &error) == 0);
	/* still listed until purge */
	test_assert(a->n == 6);
	test_assert(mbox_sync(b, NULL, &error) == 0);
	test_assert(b->n == 6);
	test_assert(mbox_msg(b, 1)->expunged && mbox_msg(b, 3)->expunged);
	test_assert(!mbox_msg(b, 0)->expunged && !mbox_msg(b, 2)->expunged);
	/* a file removed by someone else */
	name = mbox_msg_path(b, mbox_msg(b, 5));
	unlink(name);
	free(name);
	test_assert(mbox_sync(b, NULL, &error) == 0);
	test_assert(mbox_msg(b, 5)->expunged);
	mbox_purge(b, &seqs, &n);
	test_assert(n == 3);
	if (n == 3)
		test_assert(seqs[0] == 6 && seqs[1] == 4 && seqs[2] == 2);
	free(seqs);
	test_assert(b->n == 3);
	test_assert(mbox_msg(b, 0)->uid == 1 && mbox_msg(b, 1)->uid == 3 &&
	    mbox_msg(b, 2)->uid == 5);
	test_assert(mbox_find_uid(b, 4) == -1 && mbox_find_uid(b, 5) == 2);
	mbox_purge(b, &seqs, &n);
	test_assert(n == 0 && seqs == NULL);
	/* an already vanished file counts as done */
	name = mbox_msg_path(a, mbox_msg(a, 0));
	unlink(name);
	free(name);
	idx[0] = 0;
	test_assert(mbox_expunge(a, idx, 1, &error) == 0);
	test_assert(mbox_msg(a, 0)->expunged);
	test_assert(mbox_sync(a, NULL, &error) == 0);
	test_assert(mbox_msg(a, 5)->expunged);
	test_assert(live_count(a) == 2);
	/* reopen: the survivors */
	mbox_close(&b);
	b = open_ok(f, false);
	test_assert(b != NULL && b->n == 2);
	if (b != NULL)
		test_assert(mbox_msg(b, 0)->uid == 3 && mbox_msg(b, 1)->uid == 5);
out:
	mbox_close(&a);
	mbox_close(&b);
	free(f);
	test_end();
}

/* ---- expunges against a model ---- */

/* The folder's messages as the test knows them: ascending uids, and
 * every uid ever seen (small numbers here). */
#define MODEL_UIDS	4096
struct model {
	uint32_t *uid;
	size_t n, cap;
	bool seen[MODEL_UIDS];
};

static void
model_add(struct model *md, uint32_t uid)
{
	size_t i;

	if (md->n == md->cap) {
		md->cap = md->cap < 64 ? 64 : md->cap * 2;
		md->uid = xrealloc(md->uid, md->cap * sizeof(*md->uid));
	}
	for (i = md->n; i > 0 && md->uid[i - 1] > uid; i--)
		md->uid[i] = md->uid[i - 1];
	md->uid[i] = uid;
	md->n++;
	if (uid < MODEL_UIDS)
		md->seen[uid] = true;
}

static bool
model_has(const struct model *md, uint32_t uid)
{
	size_t lo = 0, hi = md->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (md->uid[mid] == uid)
			return true;
		if (md->uid[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static void
model_del(struct model *md, uint32_t uid)
{
	size_t i;

	for (i = 0; i < md->n && md->uid[i] != uid; i++)
		;
	if (i < md->n) {
		memmove(&md->uid[i], &md->uid[i + 1],
		    (md->n - i - 1) * sizeof(*md->uid));
		md->n--;
	}
}

static uint32_t
lcg(uint64_t *st)
{
	*st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(*st >> 33);
}

/* Sync h and purge it: what it had and what arrived, less what is
 * gone, must be the model; the sequence numbers purge reports (the
 * EXPUNGE responses) are the positions of the gone ones, descending,
 * and a message that arrived since is added to the model. Returns false
 * on a mismatch (already reported). */
static bool
model_sync(struct mbox *h, struct model *alive)
{
	const char *error;
	uint32_t *seqs = NULL, *want;
	size_t n = 0, nw = 0, i;
	bool ok = true;

	if (mbox_sync(h, NULL, &error) != 0) {
		test_assert(!"mbox_sync failed");
		return false;
	}
	want = xcalloc(h->n + 1, sizeof(*want));
	for (i = 0; i < h->n; i++) {
		const struct mbox_msg *m = mbox_msg(h, i);

		if (i > 0 && mbox_msg(h, i - 1)->uid >= m->uid)
			ok = false;	/* not ascending */
		if (m->uid >= MODEL_UIDS)
			ok = false;
		else if (!alive->seen[m->uid] && !m->expunged)
			model_add(alive, m->uid);	/* arrived */
		if (m->expunged != !model_has(alive, m->uid))
			ok = false;
		if (m->expunged)
			want[nw++] = (uint32_t)(i + 1);
	}
	mbox_purge(h, &seqs, &n);
	if (n != nw)
		ok = false;
	for (i = 0; ok && i < n; i++)
		ok = seqs[i] == want[nw - 1 - i];
	if (h->n != alive->n)
		ok = false;
	for (i = 0; ok && i < h->n; i++) {
		ok = mbox_msg(h, i)->uid == alive->uid[i] &&
		    !mbox_msg(h, i)->expunged &&
		    mbox_find_uid(h, alive->uid[i]) == (long)i;
	}
	if (!ok) {
		/* what differs */
		fprintf(stderr, "handle: %zu messages, %zu purged; model: "
		    "%zu messages, %zu gone\nhandle:", h->n, n, alive->n, nw);
		for (i = 0; i < h->n; i++)
			fprintf(stderr, " %u", mbox_msg(h, i)->uid);
		fprintf(stderr, "\nmodel:");
		for (i = 0; i < alive->n; i++)
			fprintf(stderr, " %u", alive->uid[i]);
		fprintf(stderr, "\n");
	}
	test_assert(ok);
	free(seqs);
	free(want);
	return ok;
}

/* Expunges of every shape (first, last, one, several, a run, all) by
 * two handles in turn, with new messages arriving between them and
 * found either by name (as APPEND does) or by a sync: the sequence
 * numbers, UIDs and \Deleted sets both handles show match a list kept
 * by the test, and so does a handle opened at the end. */
static void
test_expunge_model(void)
{
	char *f = mkfolder("expmodel"), *path = NULL;
	struct mbox *h[2] = { NULL, NULL }, *c = NULL, *mb;
	static struct model alive;
	uint64_t st = 42;
	const char *error;
	size_t *idx = NULL, *pick = NULL, np, nd, i, k, step;
	uint32_t uid, *seqs = NULL;
	size_t n;
	bool ok = true;

	test_begin("mailbox: expunges in many patterns against a model");
	for (i = 0; i < 60; i++)
		test_assert(maildir_deliver(f, "m\n", 2, NULL, &error) == 0);
	h[0] = open_ok(f, false);
	h[1] = open_ok(f, false);
	test_assert(h[0] != NULL && h[1] != NULL);
	if (h[0] == NULL || h[1] == NULL)
		goto out;
	for (i = 0; i < h[0]->n; i++)
		model_add(&alive, mbox_msg(h[0], i)->uid);
	test_assert(alive.n == 60);
	for (step = 0; ok && step < 300; step++) {
		mb = h[lcg(&st) % 2];
		if (!(ok = model_sync(mb, &alive)))
			break;
		if (lcg(&st) % 3 == 0) {
			/* arrivals: k new messages */
			k = 1 + lcg(&st) % 4;
			for (i = 0; i < k; i++) {
				test_assert(maildir_deliver(f, "n\n", 2,
				    &path, &error) == 0);
				if (path != NULL && lcg(&st) % 2 == 0) {
					uid = mbox_uid_of_added(mb,
					    strrchr(path, '/') + 1, &error);
					/* (the other handle may have
					   found it first) */
					test_assert(uid > 0 &&
					    uid < MODEL_UIDS);
					if (uid > 0 && uid < MODEL_UIDS &&
					    !alive.seen[uid])
						model_add(&alive, uid);
				}
				free(path);
				path = NULL;
			}
			continue;
		}
		if (mb->n == 0)
			continue;
		/* which ones: ascending indexes */
		pick = xcalloc(mb->n, sizeof(*pick));
		np = 0;
		switch (step % 6) {
		case 0:		/* the first */
			pick[np++] = 0;
			break;
		case 1:		/* the last */
			pick[np++] = mb->n - 1;
			break;
		case 2:		/* one anywhere */
			pick[np++] = lcg(&st) % mb->n;
			break;
		case 3:		/* a run */
			i = lcg(&st) % mb->n;
			k = 1 + lcg(&st) % 20;
			while (np < k && i < mb->n)
				pick[np++] = i++;
			break;
		case 4:		/* scattered */
			for (i = 0; i < mb->n; i++)
				if (lcg(&st) % 7 == 0)
					pick[np++] = i;
			break;
		default:	/* all of them, now and then */
			if (step % 60 == 5)
				for (i = 0; i < mb->n; i++)
					pick[np++] = i;
			else
				pick[np++] = lcg(&st) % mb->n;
			break;
		}
		for (i = 0; i < np; i++)
			test_assert(mbox_set_flags(mb, pick[i], "T",
			    &error) == 0);
		/* EXPUNGE's \Deleted set is exactly those */
		nd = mbox_deleted(mb, &idx);
		ok = nd == np;
		for (i = 0; ok && i < nd; i++)
			ok = idx[i] == pick[i];
		test_assert(ok);
		test_assert(mbox_expunge(mb, idx, nd, &error) == 0);
		for (i = 0; i < np; i++)
			model_del(&alive, mbox_msg(mb, pick[i])->uid);
		/* this handle's EXPUNGE responses */
		mbox_purge(mb, &seqs, &n);
		ok = ok && n == np;
		for (i = 0; ok && i < n; i++)
			ok = seqs[i] == pick[np - 1 - i] + 1;
		test_assert(ok);
		free(seqs);
		seqs = NULL;
		free(idx);
		idx = NULL;
		free(pick);
		pick = NULL;
	}
	test_assert(ok);
	for (i = 0; ok && i < 2; i++)
		ok = model_sync(h[i], &alive);
	/* a new handle sees the same */
	c = open_ok(f, false);
	test_assert(c != NULL && c->n == alive.n);
	for (i = 0; c != NULL && ok && i < c->n; i++)
		ok = mbox_msg(c, i)->uid == alive.uid[i];
	test_assert(ok);
	test_assert(mbox_deleted(h[0], &idx) == 0 && idx == NULL);
out:
	free(pick);
	free(idx);
	free(seqs);
	free(alive.uid);
	mbox_close(&c);
	mbox_close(&h[0]);
	mbox_close(&h[1]);
	free(f);
	test_end();
}

static void
test_import(void)
{
	char *f, *p;
	struct mbox *mb;
	struct mbox_msg *m;

	test_begin("mailbox: dovecot-uidlist v3 import keeps UIDs");
	f = mkfolder("dovecot3");
	put_msg(f, "cur", "1600000001.M1P1.h,S=2,W=3:2,S", "a\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h,S=2,W=3:2,", "b\n", 0);
	put_msg(f, "new", "1600000003.M1P1.h,S=2,W=3", "c\n", 0);
	put_msg(f, "cur", "1500000000.M1P1.h:2,", "old but unlisted\n", 0);
	p = xasprintf("%s/dovecot-uidlist", f);
	write_file(p, "3 V1234567 N40 G0123456789abcdef\n"
	    "17 :1600000002.M1P1.h,S=2,W=3\n"
	    "12 W3 S2 :1600000001.M1P1.h,S=2,W=3:2,S\n"	/* out of order */
	    "30 GUID=x :1600000003.M1P1.h,S=2,W=3\n"
	    "35 :1600000009.M1P1.gone\n"
	    "garbage line\n");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb != NULL) {
		test_assert(mb->uidvalidity == 1234567);
		test_assert(mb->n == 4);
		m = find_key(mb, "1600000002.M1P1.h,S=2,W=3");
		test_assert(m != NULL && m->uid == 17);
		/* 12 came after 17: not ascending, so not imported */
		m = find_key(mb, "1600000001.M1P1.h,S=2,W=3");
		test_assert(m != NULL && m->uid >= 40);
		m = find_key(mb, "1600000003.M1P1.h,S=2,W=3");
		test_assert(m != NULL && m->uid == 30 && m->recent);
		m = find_key(mb, "1500000000.M1P1.h");
		test_assert(m != NULL && m->uid == 40);
		test_assert(mbox_msg(mb, mb->n - 1)->uid == 41);
		test_assert(mb->uidnext == 42);
		for (size_t i = 1; i < mb->n; i++)
			test_assert(mbox_msg(mb, i - 1)->uid < mbox_msg(mb, i)->uid);
		mbox_close(&mb);
	}
	free(f);
	test_end();

	test_begin("mailbox: dovecot-uidlist v1 and courierimapuiddb import");
	f = mkfolder("dovecot1");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h:2,", "b\n", 0);
	p = xasprintf("%s/dovecot-uidlist", f);
	write_file(p, "1 99 8\n3 1600000001.M1P1.h\n5 1600000002.M1P1.h:2,\n");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->uidvalidity == 99 && mb->n == 2);
	if (mb != NULL && mb->n == 2) {
		test_assert(mbox_msg(mb, 0)->uid == 3 && mbox_msg(mb, 1)->uid == 5);
		test_assert(mb->uidnext == 8);
	}
	mbox_close(&mb);
	free(f);

	f = mkfolder("courier");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h:2,RS", "b\n", 0);
	put_msg(f, "new", "1600000003.M1P1.h", "c\n", 0);
	p = xasprintf("%s/courierimapuiddb", f);
	write_file(p, "1 424242 60\n50 1600000001.M1P1.h:2,S\n"
	    "51 1600000002.M1P1.h\n");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->uidvalidity == 424242 && mb->n == 3);
	if (mb != NULL && mb->n == 3) {
		test_assert(mbox_msg(mb, 0)->uid == 50 && mbox_msg(mb, 1)->uid == 51);
		test_assert_streq(msg_flags(mbox_msg(mb, 1)), "RS");
		test_assert(mbox_msg(mb, 2)->uid == 60 && mbox_msg(mb, 2)->recent);
		test_assert(mb->uidnext == 61);
	}
	mbox_close(&mb);
	/* the index now wins over the uidlist */
	p = xasprintf("%s/courierimapuiddb", f);
	write_file(p, "1 5 2\n1 1600000001.M1P1.h\n");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->uidvalidity == 424242);
	mbox_close(&mb);
	free(f);
	test_end();
}

static char *
read_all(const char *path, size_t *len_r)
{
	str_t s = STR_INIT;
	char buf[65536];
	ssize_t r;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		str_append_n(&s, buf, (size_t)r);
	close(fd);
	*len_r = s.len;
	return str_steal(&s);
}

static void
write_bytes(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) < 0) {
		perror(path);
		exit(2);
	}
}

/* The file's text (malloc'd; "" when missing). */
static char *
text_of(const char *folder, const char *name)
{
	char *p = xasprintf("%s/%s", folder, name);
	size_t len;
	char *t = read_all(p, &len);

	free(p);
	return t != NULL ? t : xstrdup("");
}

#define file_is(folder, name, want) do {				\
	char *file_v_ = text_of((folder), (name));			\
									\
	test_assert_streq(file_v_, (want));				\
	free(file_v_);							\
} while (0)

static bool
exists(const char *folder, const char *name)
{
	char *p = xasprintf("%s/%s", folder, name);
	bool ok = access(p, F_OK) == 0;

	free(p);
	return ok;
}

/* Sync mb; 0 expected. */
static void
sync_ok(struct mbox *mb)
{
	const char *error = NULL;

	if (mbox_sync(mb, NULL, &error) < 0) {
		fprintf(stderr, "mbox_sync: %s\n", error);
		test_assert(false);
	}
}

/* Has msgs[] entry key the keyword name? */
static bool
has_kw(struct mbox *mb, const char *key, const char *name)
{
	struct mbox_msg *m = find_key(mb, key);
	char letter = mbox_keyword_letter(mb, name, false);

	return m != NULL && letter != 0 && mbox_msg_has(m, letter);
}

static void
test_legacy_uids(void)
{
	char *f, *p, *want;
	struct mbox *mb;
	const char *error;
	size_t idx;

	test_begin("mailbox: dovecot-uidlist kept current (fields, N, lock)");
	f = mkfolder("dovecot-keep");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	put_msg(f, "new", "1600000002.M1P1.h", "b\n", 0);
	p = xasprintf("%s/dovecot-uidlist", f);
	write_file(p, "3 V77 N5 G0123abcd\n1 P0000abc :1600000001.M1P1.h\n");
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->uidvalidity == 77 && mb->n == 2);
	if (mb == NULL)
		goto out;
	test_assert(find_key(mb, "1600000002.M1P1.h")->uid == 5);
	file_is(f, "dovecot-uidlist", "3 V77 G0123abcd N6\n"
	    "1 P0000abc :1600000001.M1P1.h\n5 :1600000002.M1P1.h\n");
	test_assert(!exists(f, "dovecot-uidlist.lock"));
	/* an expunge gives out no UID: the list stays */
	idx = 1;
	test_assert(mbox_expunge(mb, &idx, 1, &error) == 0);
	sync_ok(mb);
	file_is(f, "dovecot-uidlist", "3 V77 G0123abcd N6\n"
	    "1 P0000abc :1600000001.M1P1.h\n5 :1600000002.M1P1.h\n");
	/* Dovecot holds its lock: the list waits, then catches up */
	want = xasprintf("%s/dovecot-uidlist.lock", f);
	write_file(want, "");
	put_msg(f, "new", "1600000003.M1P1.h", "c\n", 0);
	sync_ok(mb);
	test_assert(find_key(mb, "1600000003.M1P1.h") != NULL &&
	    find_key(mb, "1600000003.M1P1.h")->uid == 6);
	file_is(f, "dovecot-uidlist", "3 V77 G0123abcd N6\n"
	    "1 P0000abc :1600000001.M1P1.h\n5 :1600000002.M1P1.h\n");
	test_assert(exists(f, "dovecot-uidlist.lock"));
	unlink(want);
	free(want);
	put_msg(f, "new", "1600000004.M1P1.h", "d\n", 0);
	sync_ok(mb);
	file_is(f, "dovecot-uidlist", "3 V77 G0123abcd N8\n"
	    "1 P0000abc :1600000001.M1P1.h\n5 :1600000002.M1P1.h\n"
	    "6 :1600000003.M1P1.h\n7 :1600000004.M1P1.h\n");
	/* another generation's list is left alone */
	write_file(p, "3 V99 N1\n");
	put_msg(f, "new", "1600000005.M1P1.h", "e\n", 0);
	sync_ok(mb);
	file_is(f, "dovecot-uidlist", "3 V99 N1\n");
	/* and a list that does not parse */
	write_file(p, "garbage\n");
	put_msg(f, "new", "1600000006.M1P1.h", "f\n", 0);
	sync_ok(mb);
	file_is(f, "dovecot-uidlist", "garbage\n");
	mbox_close(&mb);
out:
	free(p);
	free(f);
	test_end();

	test_begin("mailbox: a UID in dovecot-uidlist is never given again");
	f = mkfolder("dovecot-skip");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	put_msg(f, "new", "1600000002.M1P1.h", "b\n", 0);
	p = xasprintf("%s/dovecot-uidlist", f);
	/* 50 names no file petrel could keep, "90 x" is no record */
	write_file(p, "3 V78 N2\n1 :1600000001.M1P1.h\n50 :.bad\n90 x\n");
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->n == 2);
	if (mb != NULL) {
		test_assert(find_key(mb, "1600000002.M1P1.h")->uid == 51);
		file_is(f, "dovecot-uidlist", "3 V78 N52\n"
		    "1 :1600000001.M1P1.h\n50 :.bad\n90 x\n"
		    "51 :1600000002.M1P1.h\n");
		mbox_close(&mb);
	}
	free(p);
	free(f);
	test_end();

	test_begin("mailbox: courierimapuiddb rewritten from the folder");
	f = mkfolder("courier-keep");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h:2,", "b\n", 0);
	p = xasprintf("%s/courierimapuiddb", f);
	write_file(p, "1 4242 3\n1 1600000001.M1P1.h\n2 1600000002.M1P1.h\n");
	chmod(p, 0640);
	put_msg(f, "new", "1600000003.M1P1.h", "c\n", 0);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->uidvalidity == 4242 && mb->n == 3);
	if (mb == NULL)
		goto out2;
	file_is(f, "courierimapuiddb", "1 4242 4\n1 1600000001.M1P1.h\n"
	    "2 1600000002.M1P1.h\n3 1600000003.M1P1.h\n");
	{
		struct stat st;

		test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
	}
	idx = 1;
	test_assert(mbox_expunge(mb, &idx, 1, &error) == 0);
	put_msg(f, "new", "1600000004.M1P1.h", "d\n", 0);
	sync_ok(mb);
	file_is(f, "courierimapuiddb", "1 4242 5\n1 1600000001.M1P1.h\n"
	    "3 1600000003.M1P1.h\n4 1600000004.M1P1.h\n");
	mbox_close(&mb);
out2:
	free(p);
	free(f);
	test_end();

	test_begin("mailbox: a new folder beside legacy ones gets their files");
	f = mkfolder("legacy-root");
	write_file(p = xasprintf("%s/dovecot-uidlist", f), "3 V1 N1\n");
	free(p);
	write_file(p = xasprintf("%s/courierimapuiddb", f), "1 1 1\n");
	free(p);
	p = xasprintf("%s/courierimapkeywords", f);
	mkdir(p, 0700);
	free(p);
	p = xasprintf("%s/.Sub", f);
	{
		const char *err;

		test_assert(maildir_make(p, &err) == 0);
		write_file(want = xasprintf("%s/maildirfolder", p), "");
		free(want);
	}
	mb = open_ok(p, false);
	test_assert(mb != NULL);
	if (mb != NULL) {
		want = xasprintf("3 V%u N1\n", mb->uidvalidity);
		file_is(p, "dovecot-uidlist", want);
		free(want);
		want = xasprintf("1 %u 1\n", mb->uidvalidity);
		file_is(p, "courierimapuiddb", want);
		free(want);
		test_assert(exists(p, "courierimapkeywords"));
		put_msg(p, "new", "1600000001.M1P1.h", "a\n", 0);
		sync_ok(mb);
		want = xasprintf("3 V%u N2\n1 :1600000001.M1P1.h\n",
		    mb->uidvalidity);
		file_is(p, "dovecot-uidlist", want);
		free(want);
		mbox_close(&mb);
	}
	free(p);
	/* a folder of a maildir without them gets none */
	p = xasprintf("%s/plain", test_tmpdir());
	{
		const char *err;
		char *sub = xasprintf("%s/.Sub", p);

		test_assert(maildir_make(p, &err) == 0);
		test_assert(maildir_make(sub, &err) == 0);
		write_file(want = xasprintf("%s/maildirfolder", sub), "");
		free(want);
		mb = open_ok(sub, false);
		test_assert(mb != NULL);
		mbox_close(&mb);
		test_assert(!exists(sub, "dovecot-uidlist"));
		test_assert(!exists(sub, "courierimapuiddb"));
		test_assert(!exists(sub, "courierimapkeywords"));
		free(sub);
	}
	free(p);
	free(f);
	test_end();
}

static void
test_legacy_courier_keywords(void)
{
	char *f, *p;
	struct mbox *mb;
	const char *error;
	struct mbox_msg *m;
	char flags[MAILDIR_FLAGS_MAX + 1];

	test_begin("mailbox: Courier keywords read once, changes written back");
	f = mkfolder("courier-kw");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h:2,", "b\n", 0);
	put_msg(f, "cur", "1600000003.M1P1.h:2,", "c\n", 0);
	put_msg(f, "new", "1600000004.M1P1.h", "d\n", 0);
	p = xasprintf("%s/courierimapkeywords", f);
	mkdir(p, 0700);
	free(p);
	write_file(p = xasprintf("%s/courierimapkeywords/:list", f),
	    "$Label1\ncustom\nbad(name\n\n1600000001.M1P1.h:0 1 2 7\n"
	    "1600000002.M1P1.h:1\nnocolon\n1600000009.M1P1.gone:0\n");
	free(p);
	/* 2: the newest update wins over :list and an older update */
	write_file(p = xasprintf("%s/courierimapkeywords/.100.1600000002.M1P1.h",
	    f), "older\n");
	free(p);
	write_file(p = xasprintf("%s/courierimapkeywords/1600000002.M1P1.h",
	    f), "$Label2\n");
	free(p);
	/* 3: the higher of two older updates */
	write_file(p = xasprintf("%s/courierimapkeywords/.100.1600000003.M1P1.h",
	    f), "mid\n");
	free(p);
	write_file(p = xasprintf("%s/courierimapkeywords/.200.1600000003.M1P1.h",
	    f), "newer\nnewer2\n\nignored\n");
	free(p);
	write_file(p = xasprintf("%s/courierimapkeywords/.tmp.1.x", f),
	    "scratch\n");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->n == 4);
	if (mb == NULL)
		goto out;
	test_assert(has_kw(mb, "1600000001.M1P1.h", "$Label1"));
	test_assert(has_kw(mb, "1600000001.M1P1.h", "custom"));
	test_assert(strchr(msg_flags(find_key(mb, "1600000001.M1P1.h")), 'S'));
	test_assert(mbox_keyword_letter(mb, "bad(name", false) == 0);
	test_assert(has_kw(mb, "1600000002.M1P1.h", "$Label2"));
	test_assert(!has_kw(mb, "1600000002.M1P1.h", "custom"));
	test_assert(!has_kw(mb, "1600000002.M1P1.h", "older"));
	test_assert(has_kw(mb, "1600000003.M1P1.h", "newer"));
	test_assert(has_kw(mb, "1600000003.M1P1.h", "newer2"));
	test_assert(!has_kw(mb, "1600000003.M1P1.h", "mid"));
	test_assert(!has_kw(mb, "1600000003.M1P1.h", "ignored"));
	test_assert(mbox_keyword_letter(mb, "scratch", false) == 0);
	m = find_key(mb, "1600000004.M1P1.h");
	test_assert(m != NULL && strpbrk(msg_flags(m),
	    "abcdefghijklmnopqrstuvwxyz") == NULL);
	test_assert(exists(f, "petrel-courier-keywords"));
	/* no update file was written for what was read */
	test_assert(!exists(f, "courierimapkeywords/1600000001.M1P1.h"));
	/* a change is written back as the newest update */
	m = find_key(mb, "1600000001.M1P1.h");
	snprintf(flags, sizeof(flags), "S%c",
	    mbox_keyword_letter(mb, "$Label1", false));
	test_assert(mbox_set_flags(mb, (size_t)mbox_find_uid(mb, m->uid), flags,
	    &error) == 0);
	file_is(f, "courierimapkeywords/1600000001.M1P1.h", "$Label1\n");
	/* a system flag alone writes nothing */
	m = find_key(mb, "1600000004.M1P1.h");
	test_assert(mbox_set_flags(mb, (size_t)mbox_find_uid(mb, m->uid), "F",
	    &error) == 0);
	test_assert(!exists(f, "courierimapkeywords/1600000004.M1P1.h"));
	/* all keywords removed: an empty update */
	m = find_key(mb, "1600000002.M1P1.h");
	test_assert(mbox_set_flags(mb, (size_t)mbox_find_uid(mb, m->uid), "",
	    &error) == 0);
	file_is(f, "courierimapkeywords/1600000002.M1P1.h", "");
	/* a new message with a keyword (APPEND) */
	snprintf(flags, sizeof(flags), "1600000005.M1P1.h:2,%c",
	    mbox_keyword_letter(mb, "newer", false));
	put_msg(f, "cur", flags, "e\n", 0);
	sync_ok(mb);
	file_is(f, "courierimapkeywords/1600000005.M1P1.h", "newer\n");
	mbox_close(&mb);
	/* read once: Courier's files are not read again */
	write_file(p = xasprintf("%s/courierimapkeywords/1600000004.M1P1.h",
	    f), "late\n");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb != NULL) {
		test_assert(mbox_keyword_letter(mb, "late", false) == 0);
		mbox_close(&mb);
	}
out:
	free(f);
	test_end();
}

static void
test_legacy_dovecot_keywords(void)
{
	char *f, *p, *lock;
	struct mbox *mb;

	test_begin("mailbox: new keywords under Dovecot's uidlist lock");
	f = mkfolder("dovecot-kw");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\n", 0);
	write_file(p = xasprintf("%s/dovecot-uidlist", f),
	    "3 V5 N2\n1 :1600000001.M1P1.h\n");
	free(p);
	write_file(p = xasprintf("%s/dovecot-keywords", f), "0 $Label1\n");
	free(p);
	/* a stale keywords dot-lock (Dovecot takes it only under the
	 * uidlist lock) is no obstacle */
	write_file(p = xasprintf("%s/dovecot-keywords.lock", f), "junk");
	free(p);
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb == NULL)
		goto out;
	test_assert(mbox_keyword_letter(mb, "$label1", true) == 'a');
	test_assert(mbox_keyword_letter(mb, "custom", true) == 'b');
	file_is(f, "dovecot-keywords", "0 $Label1\n1 custom\n");
	test_assert(!exists(f, "dovecot-keywords.lock"));
	test_assert(!exists(f, "dovecot-uidlist.lock"));
	/* Dovecot holds the uidlist lock: no new keyword meanwhile, and
	 * the list it may be writing is not touched */
	lock = xasprintf("%s/dovecot-uidlist.lock", f);
	write_file(lock, "");
	test_assert(mbox_keyword_letter(mb, "later", true) == 0);
	file_is(f, "dovecot-keywords", "0 $Label1\n1 custom\n");
	test_assert(exists(f, "dovecot-uidlist.lock"));
	/* names Dovecot added are read under the lock */
	unlink(lock);
	free(lock);
	write_file(p = xasprintf("%s/dovecot-keywords", f),
	    "0 $Label1\n1 custom\n2 fromdovecot\n");
	free(p);
	test_assert(mbox_keyword_letter(mb, "later", true) == 'd');
	file_is(f, "dovecot-keywords",
	    "0 $Label1\n1 custom\n2 fromdovecot\n3 later\n");
	mbox_close(&mb);
out:
	free(f);
	test_end();
}

static void
test_corrupt(void)
{
	char *f = mkfolder("corrupt"), *ipath, *good, *bad, *name;
	struct mbox *mb;
	uint32_t uidv;
	size_t len, i;
	int round;

	test_begin("mailbox: corrupt index is rebuilt, UIDs kept if possible");
	for (i = 0; i < 10; i++) {
		name = xasprintf("16000000%02zu.M1P1.h,S=2,W=3:2,", i);
		put_msg(f, "cur", name, "x\n", 0);
		free(name);
	}
	/* UIDs that differ from name order: expunge the first two,
	 * deliver two more */
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->n == 10);
	if (mb == NULL)
		goto out;
	{
		size_t idx[2] = { 0, 1 };
		const char *error;

		test_assert(mbox_expunge(mb, idx, 2, &error) == 0);
		put_msg(f, "cur", "1500000000.M1P1.h:2,", "early\n", 0);
		test_assert(mbox_sync(mb, NULL, &error) == 0);
	}
	uidv = mb->uidvalidity;
	mbox_close(&mb);
	ipath = xasprintf("%s/petrel-index", f);
	good = read_all(ipath, &len);
	test_assert(good != NULL && len > 100);
	if (good == NULL)
		goto out2;

	/* a flipped byte in the body: header parses, UIDs salvaged */
	bad = xstrndup(good, len);
	bad[len - 1] = ' ';
	write_bytes(ipath, bad, len);
	free(bad);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->n == 9 && mb->uidvalidity == uidv);
	if (mb != NULL && mb->n == 9) {
		test_assert(mbox_msg(mb, 0)->uid == 3);
		test_assert(find_key(mb, "1500000000.M1P1.h")->uid == 11);
		test_assert(mb->uidnext == 12);
	}
	mbox_close(&mb);

	/* random garbage and truncations never crash, always rebuild */
	srand(12345);
	for (round = 0; round < 60; round++) {
		size_t cut = (size_t)rand() % (len + 1);

		if (round < 20) {
			write_bytes(ipath, good, cut);
		} else if (round < 40) {
			bad = xstrndup(good, len);
			for (i = 0; i < 1 + (size_t)rand() % 8; i++)
				bad[(size_t)rand() % len] = (char)rand();
			write_bytes(ipath, bad, len);
			free(bad);
		} else {
			bad = xmalloc(cut + 1);
			for (i = 0; i < cut; i++)
				bad[i] = (char)rand();
			if (round % 2 == 0 && cut > 20)
				memcpy(bad, "petrel-index 1 ", 15);
			write_bytes(ipath, bad, cut);
			free(bad);
		}
		mb = open_ok(f, false);
		test_assert(mb != NULL && live_count(mb) == 9);
		if (mb != NULL) {
			for (i = 1; i < mb->n; i++)
				test_assert(mbox_msg(mb, i - 1)->uid <
				    mbox_msg(mb, i)->uid);
			test_assert(mb->uidnext > mbox_msg(mb, mb->n - 1)->uid);
		}
		mbox_close(&mb);
	}
	/* garbage dovecot-uidlist and courierimapuiddb too */
	for (round = 0; round < 30; round++) {
		char *up = xasprintf("%s/%s", f, round % 2 ? "dovecot-uidlist" :
		    "courierimapuiddb");
		size_t cut = (size_t)rand() % 400;

		bad = xmalloc(cut + 1);
		for (i = 0; i < cut; i++)
			bad[i] = (char)(round % 3 ? rand() % 128 : rand());
		if (cut > 10 && round % 4 == 0)
			memcpy(bad, "3 V7 N9 \n1 :", 12);
		else if (cut > 10 && round % 4 == 1)
			memcpy(bad, "1 5 6\n1 1", 9);
		write_bytes(up, bad, cut);
		free(bad);
		unlink(ipath);
		mb = open_ok(f, false);
		test_assert(mb != NULL && live_count(mb) == 9);
		mbox_close(&mb);
		unlink(up);
		free(up);
	}
	free(good);
out2:
	free(ipath);
out:
	free(f);
	test_end();
}

static void
test_keywords(void)
{
	char *f = mkfolder("kw"), *p, *text;
	struct mbox *a, *b;
	size_t len;

	test_begin("mailbox: keywords in dovecot-keywords");
	p = xasprintf("%s/dovecot-keywords", f);
	write_file(p, "1 $Forwarded\n5 Work\r\nx junk\n27 Bad\n");
	a = open_ok(f, false);
	b = open_ok(f, false);
	test_assert(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		goto out;
	test_assert_streq(a->keywords[1], "$Forwarded");
	test_assert_streq(a->keywords[5], "Work");
	test_assert(a->keywords[0] == NULL);
	test_assert(mbox_keyword_letter(a, "$forwarded", false) == 'b');
	test_assert(mbox_keyword_letter(a, "WORK", true) == 'f');
	test_assert(mbox_keyword_letter(a, "Junk", false) == 0);
	test_assert(mbox_keyword_letter(a, "Junk", true) == 'a');
	test_assert(mbox_keyword_letter(a, "NonJunk", true) == 'c');
	test_assert(mbox_keyword_letter(a, "junk", true) == 'a');
	test_assert(mbox_keyword_letter(a, "bad name", true) == 0);
	test_assert(mbox_keyword_letter(a, "", true) == 0);
	test_assert_streq(a->keywords[0], "Junk");
	/* the other handle sees them, also after its own additions */
	test_assert(mbox_keyword_letter(b, "JUNK", false) == 'a');
	test_assert(mbox_keyword_letter(b, "Later", true) == 'd');
	test_assert(mbox_keyword_letter(a, "later", false) == 'd');
	text = read_all(p, &len);
	test_assert_streq(text, "0 Junk\n1 $Forwarded\n2 NonJunk\n3 Later\n"
	    "5 Work\n");
	free(text);
	/* all 26 taken: 0 */
	for (int i = 0; i < 30; i++) {
		char *kw = xasprintf("kw%d", i);
		char l = mbox_keyword_letter(a, kw, true);

		test_assert(i < 21 ? l >= 'a' && l <= 'z' : l == 0);
		free(kw);
	}
	/* keyword letters as flags */
	put_msg(f, "cur", "1700000001.M1P1.h:2,", "x\n", 0);
	test_assert(mbox_sync(a, NULL, NULL) == 0);
	test_assert(a->n == 1 && mbox_set_flags(a, 0, "aSd", NULL) == 0);
	test_assert_streq(msg_flags(mbox_msg(a, 0)), "Sad");
	mbox_close(&a);
	a = open_ok(f, true);
	test_assert(a != NULL && a->n == 1);
	if (a != NULL && a->n == 1) {
		test_assert_streq(msg_flags(mbox_msg(a, 0)), "Sad");
		test_assert_streq(a->keywords[3], "Later");
	}
out:
	mbox_close(&a);
	mbox_close(&b);
	free(p);
	free(f);
	test_end();
}

static void
test_keywords_hostile(void)
{
	char *f = mkfolder("kwbad"), *p;
	struct mbox *a;

	/* found while writing fuzz_mailbox_files: names that are not atoms went
	 * into FLAGS responses as they were */
	test_begin("mailbox: dovecot-keywords names that are not atoms");
	p = xasprintf("%s/dovecot-keywords", f);
	write_file(p, "0 ok\n1 a)b\n2 \\Deleted\n3 caf\xc3\xa9\n4 {5}\n"
	    "5 \"q\"\n6 x]\n7 *\n8 50%\n9 $Label1\n");
	a = open_ok(f, false);
	test_assert(a != NULL);
	if (a != NULL) {
		test_assert_streq(a->keywords[0], "ok");
		for (int i = 1; i <= 8; i++)
			test_assert(a->keywords[i] == NULL);
		test_assert_streq(a->keywords[9], "$Label1");
		test_assert(mbox_keyword_letter(a, "a)b", true) == 0);
	}
	mbox_close(&a);
	free(p);
	free(f);
	test_end();
}

static void
test_cache(void)
{
	char *f = mkfolder("cache"), *v, *cpath, *name, *data;
	struct mbox *a, *b;
	const char *error;
	struct stat st;
	size_t i, len, *idx;
	off_t before;
	bool ok;

	test_begin("mailbox: cache put/get, persistence, damage, compaction");
	for (i = 0; i < 300; i++) {
		name = xasprintf("1700%06zu.M1P1.h,S=2,W=3:2,", i);
		put_msg(f, "cur", name, "x\n", 0);
		free(name);
	}
	a = open_ok(f, false);
	test_assert(a != NULL && a->n == 300);
	if (a == NULL)
		goto out;
	test_assert(mbox_cache_get(a, 0, MBOX_CACHE_ENVELOPE) == NULL);
	for (i = 0; i < a->n; i++) {
		v = xasprintf("(\"envelope %zu\")", i);
		mbox_cache_put(a, i, MBOX_CACHE_ENVELOPE, v);
		free(v);
		v = xasprintf("(\"text\" \"plain\" %zu)", i);
		mbox_cache_put(a, i, MBOX_CACHE_BODYSTRUCTURE, v);
		free(v);
	}
	mbox_cache_put(a, 5, MBOX_CACHE_ENVELOPE, "(\"newer\")");
	mbox_cache_put(a, 6, MBOX_CACHE_BODY, "");
	mbox_cache_put(a, 9999, MBOX_CACHE_BODY, "x");
	cache_is(a, 7, MBOX_CACHE_ENVELOPE, "(\"envelope 7\")");
	cache_is(a, 5, MBOX_CACHE_ENVELOPE, "(\"newer\")");
	cache_is(a, 6, MBOX_CACHE_BODY, "");
	test_assert(mbox_cache_get(a, 7, MBOX_CACHE_BODY) == NULL);
	test_assert(mbox_cache_get(a, 9999, MBOX_CACHE_BODY) == NULL);
	mbox_close(&a);

	/* persisted, and visible to another handle */
	a = open_ok(f, false);
	b = open_ok(f, true);
	test_assert(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		goto out2;
	cache_is(a, 299, MBOX_CACHE_BODYSTRUCTURE, "(\"text\" \"plain\" 299)");
	cache_is(b, 5, MBOX_CACHE_ENVELOPE, "(\"newer\")");
	/* b (read-only) caches too; a learns the offset at its sync */
	mbox_cache_put(b, 10, MBOX_CACHE_BODY, "BODY10");
	test_assert(mbox_flush(b, &error) == 0);
	test_assert(mbox_sync(a, NULL, &error) == 0);
	cache_is(a, 10, MBOX_CACHE_BODY, "BODY10");
	mbox_close(&b);

	/* puts for many messages are appended together, at the flush */
	cpath = xasprintf("%s/petrel-cache", f);
	test_assert(stat(cpath, &st) == 0);
	before = st.st_size;
	for (i = 20; i < 30; i++)
		mbox_cache_put(a, i, MBOX_CACHE_BODY, "(\"batched\")");
	test_assert(stat(cpath, &st) == 0 && st.st_size == before);
	v = mbox_cache_get(a, 25, MBOX_CACHE_BODY);	/* flushes */
	test_assert_streq(v, "(\"batched\")");
	free(v);
	test_assert(stat(cpath, &st) == 0 && st.st_size > before);
	before = st.st_size;
	mbox_cache_put(a, 30, MBOX_CACHE_BODY, "(\"thirty\")");
	test_assert(mbox_flush(a, &error) == 0);
	test_assert(stat(cpath, &st) == 0 && st.st_size > before);
	b = open_ok(f, true);
	test_assert(b != NULL);
	if (b != NULL) {
		cache_is(b, 30, MBOX_CACHE_BODY, "(\"thirty\")");
		cache_is(b, 21, MBOX_CACHE_BODY, "(\"batched\")");
		mbox_close(&b);
	}

	/* a damaged tail: a miss, never garbage */
	test_assert(stat(cpath, &st) == 0);
	data = read_all(cpath, &len);
	ok = true;
	for (size_t cut = len - 70; data != NULL && cut < len; cut += 7) {
		write_bytes(cpath, data, cut);
		mbox_close(&a);
		a = open_ok(f, false);
		if (a == NULL)
			break;
		v = mbox_cache_get(a, 10, MBOX_CACHE_BODY);
		if (v != NULL && strcmp(v, "BODY10") != 0)
			ok = false;
		free(v);
		v = mbox_cache_get(a, 1, MBOX_CACHE_ENVELOPE);
		if (v == NULL || strcmp(v, "(\"envelope 1\")") != 0)
			ok = false;
		free(v);
	}
	test_assert(ok);
	/* random bytes everywhere after the header: misses or the truth */
	if (data != NULL) {
		srand(7);
		for (i = 0; i < 200; i++)
			data[32 + (size_t)rand() % (len - 32)] = (char)rand();
		write_bytes(cpath, data, len);
		ok = true;
		for (i = 0; a != NULL && i < a->n; i++) {
			char *want = xasprintf("(\"envelope %zu\")", i);

			v = mbox_cache_get(a, i, MBOX_CACHE_ENVELOPE);
			if (v != NULL && strcmp(v, want) != 0 &&
			    strcmp(v, "(\"newer\")") != 0)
				ok = false;
			free(v);
			free(want);
		}
		test_assert(ok);
		write_bytes(cpath, data, len);
	}
	free(data);
	/* a cache of another UIDVALIDITY is never used */
	write_bytes(cpath, "PTRLCCH1\x01\x00\x00\x00\x01\x00\x00\x00"
	    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32);
	mbox_close(&a);
	a = open_ok(f, false);
	test_assert(a != NULL);
	if (a == NULL)
		goto out3;
	test_assert(mbox_cache_get(a, 1, MBOX_CACHE_ENVELOPE) == NULL);
	mbox_cache_put(a, 1, MBOX_CACHE_ENVELOPE, "again");
	cache_is(a, 1, MBOX_CACHE_ENVELOPE, "again");

	/* compaction once most records are dead */
	for (i = 0; i < a->n; i++) {
		v = xasprintf("envelope-%zu-%s", i, "padding padding padding");
		mbox_cache_put(a, i, MBOX_CACHE_ENVELOPE, v);
		free(v);
	}
	test_assert(mbox_flush(a, &error) == 0);
	test_assert(stat(cpath, &st) == 0);
	before = st.st_size;
	idx = xcalloc(250, sizeof(*idx));
	for (i = 0; i < 250; i++)
		idx[i] = i;
	test_assert(mbox_expunge(a, idx, 250, &error) == 0);
	free(idx);
	/* expunged but not purged: still served */
	v = mbox_cache_get(a, 3, MBOX_CACHE_ENVELOPE);
	test_assert(v != NULL && starts_with(v, "envelope-3-"));
	free(v);
	test_assert(mbox_sync(a, NULL, &error) == 0);
	test_assert(stat(cpath, &st) == 0);
	test_assert(st.st_size < before / 3);
	v = mbox_cache_get(a, 260, MBOX_CACHE_ENVELOPE);
	test_assert(v != NULL && starts_with(v, "envelope-260-"));
	free(v);
	mbox_close(&a);
	a = open_ok(f, false);
	test_assert(a != NULL && a->n == 50);
	if (a != NULL) {
		v = mbox_cache_get(a, 49, MBOX_CACHE_ENVELOPE);
		test_assert(v != NULL && starts_with(v, "envelope-299-"));
		free(v);
		/* gone with the replaced cache of another UIDVALIDITY */
		test_assert(mbox_cache_get(a, 49,
		    MBOX_CACHE_BODYSTRUCTURE) == NULL);
	}
out3:
	free(cpath);
out2:
	mbox_close(&a);
	mbox_close(&b);
out:
	free(f);
	test_end();
}

static void
test_added(void)
{
	char *f = mkfolder("added"), *path = NULL, *base;
	struct mbox_msg *m;
	struct maildir_tmp *tmp;
	struct mbox *mb;
	const char *error;
	uint32_t uid;
	long i;

	test_begin("mailbox: mbox_uid_of_added and internaldate");
	put_msg(f, "cur", "1600000001.M1P1.h:2,", "x\n", 0);
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb == NULL)
		goto out;
	/* APPEND: into cur/ with flags and a date */
	test_assert(maildir_tmp_open(f, &tmp, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "Subject: a\n\nb\n", 14,
	    &error) == 0);
	maildir_tmp_set_mtime(tmp, 1234567890, 0);
	test_assert(maildir_tmp_commit_flags(&tmp, "S", &path, &error) == 0);
	uid = mbox_uid_of_added(mb, path, &error);
	test_assert(uid == 2);
	i = mbox_find_uid(mb, uid);
	test_assert(i == 1);
	if (i == 1) {
		m = mbox_msg(mb, i);
		test_assert(m->internaldate == 1234567890LL);
		test_assert_streq(msg_flags(m), "S");
		test_assert(m->size == 14 && m->vsize == 17);
		/* added while this handle has the folder open read-write:
		 * \Recent here (RFC 3501 2.3.2) */
		test_assert(m->recent);
	}
	free(path);
	path = NULL;
	/* COPY without flags: lands in new/, found by base name */
	test_assert(maildir_deliver(f, "z\n", 2, &path, &error) == 0);
	base = strrchr(path, '/') + 1;
	uid = mbox_uid_of_added(mb, base, &error);
	test_assert(uid == 3);
	i = mbox_find_uid(mb, 3);
	test_assert(i == 2 && mbox_msg(mb, 2)->recent && mbox_msg(mb, 2)->in_cur);
	test_assert(mbox_uid_of_added(mb, "nonexistent.M1", &error) == 0);
	mbox_close(&mb);
	/* the date survives a reopen */
	mb = open_ok(f, true);
	test_assert(mb != NULL && mb->n == 3);
	if (mb != NULL && mb->n == 3)
		test_assert(mbox_msg(mb, 1)->internaldate == 1234567890LL);
	mbox_close(&mb);
out:
	free(path);
	free(f);
	test_end();
}

/* A message added through a read-only handle (COPY, APPEND, MOVE into
 * a folder another session has open) is \Recent in exactly one
 * read-write handle: the first to sync. */
static void
test_recent_added(void)
{
	char *f = mkfolder("recentadd"), *path = NULL;
	struct mbox *a = NULL, *b = NULL, *ro = NULL;
	struct maildir_tmp *tmp;
	uint32_t uidv, next, msgs, unseen, recent, uid;
	const char *error;

	test_begin("mailbox: \\Recent of added messages goes to one handle");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "x\n", 0);
	a = open_ok(f, false);
	b = open_ok(f, false);
	ro = open_ok(f, true);
	test_assert(a != NULL && b != NULL && ro != NULL);
	if (a == NULL || b == NULL || ro == NULL)
		goto out;
	test_assert(!mbox_msg(a, 0)->recent && !mbox_msg(b, 0)->recent);
	/* COPY into the folder through a read-only target handle */
	test_assert(maildir_tmp_open(f, &tmp, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "Subject: c\n\nc\n", 14,
	    &error) == 0);
	test_assert(maildir_tmp_commit_flags(&tmp, "S", &path, &error) == 0);
	uid = mbox_uid_of_added(ro, path, &error);
	test_assert(uid == 2);
	test_assert(ro->n == 2 && mbox_msg(ro, 1)->recent);	/* shown only */
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	test_assert(msgs == 2 && recent == 1);
	/* the first read-write handle to sync takes it, the other not */
	test_assert(mbox_sync(b, NULL, &error) == 0);
	test_assert(b->n == 2 && mbox_msg(b, 1)->recent && b->nrecent == 1);
	test_assert(mbox_sync(a, NULL, &error) == 0);
	test_assert(a->n == 2 && !mbox_msg(a, 1)->recent && a->nrecent == 0);
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	test_assert(msgs == 2 && recent == 0);
	/* a handle opened later does not get it either */
	mbox_close(&ro);
	ro = open_ok(f, false);
	test_assert(ro != NULL && ro->n == 2 && !mbox_msg(ro, 1)->recent);
out:
	free(path);
	mbox_close(&a);
	mbox_close(&b);
	mbox_close(&ro);
	free(f);
	test_end();
}

/* A folder deleted or re-created under an open handle: its syncs fail
 * with -2 from then on, and closing it writes nothing into the new
 * folder. */
static void
test_recreated(void)
{
	char *f = mkfolder("recreate"), *away, *idx;
	struct mbox *mb, *other;
	const char *error;
	struct stat st;

	test_begin("mailbox: a deleted or re-created folder ends the handle");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "x\n", 0);
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb == NULL)
		goto out;
	/* something to write (a learned size) */
	test_assert(mbox_msg_info(mb, 0, &error) == 0);
	away = xasprintf("%s.away", f);
	test_assert(rename(f, away) == 0);
	/* made again, no index yet: a flush (no listing) notices too */
	test_assert(maildir_make(f, &error) == 0);
	put_msg(f, "cur", "1600000009.M1P1.h:2,", "y\n", 0);
	test_assert(mbox_flush(mb, &error) == -2);
	test_assert(strstr(error, "deleted or re-created") != NULL);
	test_assert(mbox_sync(mb, NULL, &error) == -2);
	mbox_close(&mb);
	idx = xasprintf("%s/%s", f, "petrel-index");
	test_assert(stat(idx, &st) < 0 && errno == ENOENT);
	free(idx);
	/* a new handle indexes the new folder afresh */
	other = open_ok(f, false);
	test_assert(other != NULL && other->n == 1 &&
	    mbox_msg(other, 0)->uid == 1);
	mbox_close(&other);
	/* deleted: the same */
	mb = open_ok(f, false);
	test_assert(mb != NULL);
	if (mb != NULL) {
		char *away2 = xasprintf("%s.away2", f);

		test_assert(rename(f, away2) == 0);
		test_assert(mbox_sync(mb, NULL, &error) == -2);
		test_assert(mbox_sync(mb, NULL, &error) == -2);
		mbox_close(&mb);
		free(away2);
	}
	free(away);
out:
	free(f);
	test_end();
}

static void
test_status(void)
{
	char *f = mkfolder("status"), *p;
	uint32_t uidv, next, msgs, unseen, recent;
	struct mbox *mb;
	const char *error;

	test_begin("mailbox: mbox_status");
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "x\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h:2,", "x\n", 0);
	put_msg(f, "cur", "1600000003.M1P1.h:2,FS", "x\n", 0);
	/* cold: no index yet */
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	test_assert(msgs == 3 && unseen == 1 && recent == 0 && next == 4);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->uidvalidity == uidv);
	mbox_close(&mb);
	/* new mail: counted as recent, not moved */
	put_msg(f, "new", "1600000004.M1P1.h", "x\n", 0);
	put_msg(f, "new", "1600000005.M1P1.h", "x\n", 0);
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	test_assert(msgs == 5 && unseen == 3 && recent == 2 && next == 6);
	test_assert(count_dir(f, "new") == 2);
	/* warm: aged directories, recorded; STATUS reads the index only
	 * (a file removed behind its back with the mtime restored is not
	 * noticed: proof that it did not list) */
	age_dirs(f);
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	{
		struct timespec t = dir_mtime(f, "cur");

		p = xasprintf("%s/cur/1600000002.M1P1.h:2,", f);
		unlink(p);
		free(p);
		set_dir_mtime(f, "cur", t);
	}
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	test_assert(msgs == 5 && unseen == 3 && recent == 2 && next == 6);
	p = xasprintf("%s/nonexistent", f);
	test_assert(mbox_status(p, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == -1);
	free(p);
	free(f);
	test_end();
}

static void
test_status_size(void)
{
	char *f = mkfolder("status-size"), *p;
	uint64_t size;
	const char *error;

	test_begin("mailbox: mbox_status_size");
	test_assert(mbox_status_size(f, &size, &error) == 0 && size == 0);
	/* LF counted as CRLF; CRLF as it is; W= from the name unread */
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "a\nbb\n", 0);
	put_msg(f, "cur", "1600000002.M1P1.h:2,", "a\r\nb\r\n", 0);
	put_msg(f, "new", "1600000003.M1P1.h,S=3,W=1000", "x\n", 0);
	test_assert(mbox_status_size(f, &size, &error) == 0);
	test_assert(size == 7 + 6 + 1000);
	/* learned sizes are kept in the index: a file rewritten behind
	 * its back (same name, directories unchanged) is not read again */
	p = xasprintf("%s/cur/1600000001.M1P1.h:2,S", f);
	test_assert(truncate(p, 0) == 0);
	free(p);
	test_assert(mbox_status_size(f, &size, &error) == 0);
	test_assert(size == 7 + 6 + 1000);
	p = xasprintf("%s/nonexistent", f);
	test_assert(mbox_status_size(p, &size, &error) == -1);
	free(p);
	free(f);
	test_end();
}

static void
test_objectid(void)
{
	char *f = mkfolder("objectid"), *p;
	char id[MBOX_OBJECTID_MAX + 1], id2[MBOX_OBJECTID_MAX + 1];
	const char *error;
	int fd;

	test_begin("mailbox: object ids and save dates (RFC 8474, 8514)");
	test_assert(mbox_objectid_valid("a", 1));
	test_assert(mbox_objectid_valid("Ab-_9", 5));
	test_assert(!mbox_objectid_valid("", 0));
	test_assert(!mbox_objectid_valid("a.b", 3));
	test_assert(!mbox_objectid_valid("a b", 3));
	/* MAILBOXID: made once, then read back */
	test_assert(mbox_mailboxid(f, id, &error) == 0);
	test_assert(id[0] == 'F' && strlen(id) == 33);
	test_assert(mbox_objectid_valid(id, strlen(id)));
	test_assert(mbox_mailboxid(f, id2, &error) == 0);
	test_assert_streq(id, id2);
	/* a damaged file is an error, not replaced */
	p = xasprintf("%s/petrel-mailboxid", f);
	fd = open(p, O_WRONLY | O_TRUNC);
	test_assert(fd >= 0 && write(fd, "bad id!\n", 8) == 8);
	close(fd);
	test_assert(mbox_mailboxid(f, id2, &error) == -1);
	test_assert(unlink(p) == 0);
	test_assert(mbox_mailboxid(f, id2, &error) == 0);
	test_assert(strcmp(id, id2) != 0);
	free(p);
	/* EMAILID: the base name's hash, flags and fields aside; E= wins
	 * when valid */
	mbox_emailid("1600000001.M1P1.h,S=3:2,S", id);
	mbox_emailid("1600000001.M1P1.h,S=3,W=5:2,FS", id2);
	test_assert_streq(id, id2);
	test_assert(id[0] == 'M' && strlen(id) == 17);
	mbox_emailid("1600000002.M1P1.h,S=3:2,S", id2);
	test_assert(strcmp(id, id2) != 0);
	mbox_emailid("1700000000.M9P9.h,S=3,E=Mabc-1_2:2,S", id2);
	test_assert_streq(id2, "Mabc-1_2");
	mbox_emailid("1700000000.M9P9.h,S=3,E=bad.id", id2);
	test_assert(id2[0] == 'M' && strlen(id2) == 17);
	mbox_emailid("1700000000.M9P9.h:2,E=Mflags", id2);
	test_assert(strcmp(id2, "Mflags") != 0);
	mbox_emailid("noname", id2);
	test_assert(mbox_objectid_valid(id2, strlen(id2)));
	/* SAVEDATE: the seconds that begin the name */
	test_assert(mbox_savedate("1600000001.M1P1.h:2,S") == 1600000001LL);
	test_assert(mbox_savedate("1600000001") == -1);
	test_assert(mbox_savedate("foo.bar") == -1);
	test_assert(mbox_savedate("12.M1") == -1);		/* before 1990 */
	test_assert(mbox_savedate("9999999999.M1") == -1);	/* future */
	test_assert(mbox_savedate("1234567890123.M1") == -1);
	test_assert(mbox_savedate("") == -1);
	free(f);
	test_end();
}

static void
test_large(void)
{
	const int total = 20000;
	char *f = mkfolder("large"), *name, *from, *to;
	struct timespec t0, saved;
	struct mbox *mb;
	struct mbox_msg *m;
	const char *error;
	uint32_t uidv, next, msgs, unseen, recent;
	double cold, warm, warm2;
	int i;

	test_begin("mailbox: 20,000 messages, warm open trusts the index");
	for (i = 0; i < total; i++) {
		name = xasprintf("17%08d.M%dP4242.mail.example.org,S=30,W=31"
		    ":2,%s", i, i % 1000000, i % 3 ? "S" : "");
		put_msg(f, "cur", name, "Subject: t\n\nbody of message\n", 0);
		free(name);
	}
	age_dirs(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mb = open_ok(f, false);
	cold = elapsed_ms(&t0);
	test_assert(mb != NULL && mb->n == (size_t)total);
	if (mb == NULL)
		goto out;
	test_assert(mbox_msg(mb, total - 1)->uid == (uint32_t)total);
	mbox_close(&mb);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	mb = open_ok(f, false);
	warm = elapsed_ms(&t0);
	test_assert(mb != NULL && mb->n == (size_t)total);
	mbox_close(&mb);

	/* rename a file behind the index's back, restoring cur/'s mtime:
	 * the warm open must still report the old name (no readdir) */
	saved = dir_mtime(f, "cur");
	from = xasprintf("%s/cur/1700000123.M123P4242.mail.example.org,S=30,"
	    "W=31:2,", f);
	to = xasprintf("%s/cur/1700000123.M123P4242.mail.example.org,S=30,"
	    "W=31:2,FS", f);
	test_assert(rename(from, to) == 0);
	set_dir_mtime(f, "cur", saved);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mb = open_ok(f, false);
	warm2 = elapsed_ms(&t0);
	test_assert(mb != NULL);
	if (mb == NULL)
		goto out2;
	m = mbox_msg(mb, 123);
	test_assert(m->uid == 124);
	test_assert_streq(msg_flags(m), "");
	test_assert(strstr(m->name, ":2,FS") == NULL);
	test_assert(mbox_status(f, &uidv, &next, &msgs, &unseen, &recent,
	    &error) == 0);
	test_assert(msgs == (uint32_t)total && next == (uint32_t)total + 1);
	test_assert(unseen == (uint32_t)(total + 2) / 3);
	/* only new/ changed: only new/ is listed (the rename in cur/ is
	 * still not seen) */
	{
		size_t added = 0;

		put_msg(f, "new", "1800000000.M1P1.h", "new\n", 0);
		test_assert(mbox_sync(mb, &added, &error) == 0 && added == 1);
		test_assert(mbox_msg(mb, total)->uid == (uint32_t)total + 1);
		test_assert(mbox_msg(mb, total)->recent);
		test_assert(strstr(mbox_msg(mb, 123)->name, ":2,FS") == NULL);
	}
	/* once the directory's mtime moves, the change is found */
	clock_gettime(CLOCK_REALTIME, &saved);
	set_dir_mtime(f, "cur", saved);
	test_assert(mbox_sync(mb, NULL, &error) == 0);
	m = mbox_msg(mb, 123);
	test_assert(m->uid == 124 && m->flags_changed);
	test_assert_streq(msg_flags(m), "FS");
	test_assert(live_count(mb) == (size_t)total + 1);
	mbox_close(&mb);
	printf("    20k messages: cold open %.1f ms, warm open %.1f ms, "
	    "%.1f ms\n", cold, warm, warm2);
out2:
	free(from);
	free(to);
out:
	free(f);
	test_end();
}

/* Children deliver and sync concurrently; every handle must agree. */
static void
test_processes(void)
{
	const int nchild = 4, rounds = 15;
	char *f = mkfolder("procs"), *out;
	struct mbox *mb;
	const char *error;
	pid_t pids[4];
	int c, status;
	bool ok = true;

	test_begin("mailbox: several processes agree on UIDs");
	for (c = 0; c < nchild; c++) {
		pids[c] = fork();
		if (pids[c] < 0) {
			perror("fork");
			exit(2);
		}
		if (pids[c] == 0) {
			struct mbox *cm = NULL;
			FILE *fp;
			int r;

			if (mbox_open(f, c == 3, &cm, &error) < 0)
				_exit(3);
			for (r = 0; r < rounds; r++) {
				if (maildir_deliver(f, "m\n", 2, NULL,
				    &error) < 0 ||
				    mbox_sync(cm, NULL, &error) < 0)
					_exit(4);
				if (cm->n > 0 && c != 3)
					(void)mbox_set_flags(cm, (size_t)r %
					    cm->n, r % 2 ? "S" : "F", &error);
			}
			if (mbox_sync(cm, NULL, &error) < 0)
				_exit(5);
			out = xasprintf("%s/uids.%d", test_tmpdir(), c);
			fp = fopen(out, "w");
			if (fp == NULL)
				_exit(6);
			for (size_t i = 0; i < cm->n; i++) {
				if (!mbox_msg(cm, i)->expunged)
					fprintf(fp, "%u %.*s\n", mbox_msg(cm, i)->uid,
					    (int)strcspn(mbox_msg(cm, i)->name, ":"),
					    mbox_msg(cm, i)->name);
			}
			fclose(fp);
			mbox_close(&cm);
			_exit(0);
		}
	}
	for (c = 0; c < nchild; c++) {
		if (waitpid(pids[c], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			ok = false;
	}
	test_assert(ok);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->n == (size_t)(nchild * rounds));
	if (mb == NULL)
		goto out;
	for (size_t i = 0; i < mb->n; i++)
		test_assert(mbox_msg(mb, i)->uid == i + 1);
	for (c = 0; c < nchild; c++) {
		char line[512], key[400];
		unsigned int uid;
		struct mbox_msg *m;
		FILE *fp;
		int lines = 0;

		out = xasprintf("%s/uids.%d", test_tmpdir(), c);
		fp = fopen(out, "r");
		free(out);
		test_assert(fp != NULL);
		if (fp == NULL)
			continue;
		while (fgets(line, sizeof(line), fp) != NULL) {
			if (sscanf(line, "%u %399s", &uid, key) != 2)
				continue;
			lines++;
			m = find_key(mb, key);
			if (m == NULL || m->uid != uid)
				ok = false;
		}
		fclose(fp);
		test_assert(lines >= rounds && lines <= nchild * rounds);
	}
	test_assert(ok);
	test_assert(count_dir(f, "new") == 0);
out:
	mbox_close(&mb);
	free(f);
	test_end();
}

static void
test_errors(void)
{
	struct mbox *mb = NULL;
	const char *error = NULL;
	char *f;

	test_begin("mailbox: open errors");
	f = xasprintf("%s/missing", test_tmpdir());
	test_assert(mbox_open(f, false, &mb, &error) == -1 && mb == NULL);
	test_assert(error != NULL && strstr(error, "missing") != NULL);
	free(f);
	test_assert(mbox_open("", false, &mb, &error) == -1);
	f = mkfolder("dup");
	/* the same stable key in new/ and cur/: one message */
	put_msg(f, "cur", "1600000001.M1P1.h:2,S", "x\n", 0);
	put_msg(f, "new", "1600000001.M1P1.h", "x\n", 0);
	mb = open_ok(f, false);
	test_assert(mb != NULL && mb->n == 1);
	if (mb != NULL)
		test_assert(mbox_msg(mb, 0)->in_cur);
	mbox_close(&mb);
	mbox_close(&mb);	/* NULL-safe */
	free(f);
	test_end();
}

int
main(void)
{
	/* the corruption tests log a warning per rebuild */
	log_set_level(LOG_LVL_ERROR);
	test_flag_bits();
	test_fresh();
	test_stability();
	test_flags();
	test_readonly();
	test_expunge();
	test_expunge_model();
	test_import();
	test_legacy_uids();
	test_legacy_courier_keywords();
	test_legacy_dovecot_keywords();
	test_corrupt();
	test_keywords();
	test_keywords_hostile();
	test_cache();
	test_added();
	test_recent_added();
	test_recreated();
	test_status();
	test_status_size();
	test_objectid();
	test_errors();
	test_processes();
	test_large();
	return test_done();
}
