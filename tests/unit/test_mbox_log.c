/*
 * test_mbox_log.c: unit tests for lib/store/mbox_log.c, the change log
 * beside petrel-index: the record format (append, read from an offset,
 * sequence numbers), a torn or garbled tail, a log of another base
 * (generation), and through the mailbox API: changes seen by another
 * handle through the log, compaction into a new base, a torn tail cut
 * off by the next writer, a lost log, the claimed cur/ mtime, and the
 * upgrade of a version 1 index.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/store/mailbox.h"
#include "lib/store/mbox_int.h"
#include "lib/maildir/maildir.h"
#include "tests/unit/test.h"

/* A message's flag letters, sorted (up to four calls in an
 * expression). */
static const char *
msg_flags(const struct mbox_msg *m)
{
	static char buf[4][53];
	static unsigned int k;

	return mbox_msg_flags(m, buf[k++ % 4]);
}

static unsigned int folder_seq;

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
write_file(const char *path, const char *content, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, content, len) != (ssize_t)len ||
	    close(fd) < 0) {
		perror(path);
		exit(2);
	}
}

static void
put_msgs(const char *folder, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/cur/17000000%02zu.M%zuP1.h,S=2,"
		    "W=3:2,", folder, i, i);

		write_file(path, "x\n", 2);
		free(path);
	}
}

/* Give cur/ and new/ an mtime in the past (a listing trusts it). */
static void
age_dirs(const char *folder)
{
	struct timespec ts[2];
	char *p;

	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= 10;
	ts[1] = ts[0];
	for (int d = 0; d < 2; d++) {
		p = xasprintf("%s/%s", folder, d ? "cur" : "new");
		utimensat(AT_FDCWD, p, ts, 0);
		free(p);
	}
}

static off_t
file_size(const char *folder, const char *name)
{
	char *p = xasprintf("%s/%s", folder, name);
	struct stat st;
	off_t size = stat(p, &st) == 0 ? st.st_size : -1;

	free(p);
	return size;
}

static ino_t
file_ino(const char *folder, const char *name)
{
	char *p = xasprintf("%s/%s", folder, name);
	struct stat st;
	ino_t ino = stat(p, &st) == 0 ? st.st_ino : 0;

	free(p);
	return ino;
}

/* ---- the record format ---- */

struct seen {
	struct mbox_log_item items[16];
	char names[16][64];
	size_t n;
};

static void
collect(void *ctx, const struct mbox_log_item *it)
{
	struct seen *s = ctx;

	if (s->n == 16)
		return;
	s->items[s->n] = *it;
	if (it->type == 'm') {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s",
		    it->m.name);
		s->items[s->n].m.name = s->names[s->n];
	}
	s->n++;
}

static void
payload(str_t *b, uint32_t uidnext, uint32_t uid, const char *name)
{
	struct mbox_log_state st;
	struct mbox_msg m;

	memset(&st, 0, sizeof(st));
	st.uidnext = uidnext;
	st.cur_mtime.tv_sec = 1700000000;
	st.cur_mtime.tv_nsec = 123456789;
	st.messages = 7;
	st.unseen = 2;
	st.recent = 1;
	mbox_log_put_state(b, &st);
	memset(&m, 0, sizeof(m));
	m.uid = uid;
	m.in_cur = true;
	m.size = 10;
	m.vsize = 12;
	m.internaldate = -5;
	m.cache_off = 99;
	m.name = (char *)name;
	mbox_log_put_msg(b, &m);
	mbox_log_put_expunge(b, uid - 1);
}

static void
test_format(void)
{
	char *f = mkfolder("format");
	str_t b = STR_INIT;
	struct seen s;
	const char *error;
	uint64_t off, seq;
	bool torn;
	int fd, fd2;

	test_begin("log: records appended and read back from an offset");
	test_assert(mbox_log_create(f, 0x1234abcd, false, &fd, &error) == 0);
	payload(&b, 11, 10, "1700000000.M1P1.h:2,S");
	test_assert(mbox_log_append(fd, 1, &b, false, &error) == 0);
	str_truncate(&b, 0);
	payload(&b, 12, 11, "1700000001.M2P1.h:2,");
	test_assert(mbox_log_append(fd, 2, &b, true, &error) == 0);

	memset(&s, 0, sizeof(s));
	off = mbox_log_start();
	seq = 0;
	test_assert(mbox_log_read(fd, &off, &seq, collect, &s, &torn,
	    &error) == 2);
	test_assert(!torn && seq == 2 && off == (uint64_t)file_size(f,
	    MBOX_LOG_NAME));
	test_assert(s.n == 6);
	test_assert(s.items[0].type == 's' && s.items[0].st.uidnext == 11 &&
	    s.items[0].st.cur_mtime.tv_sec == 1700000000 &&
	    s.items[0].st.cur_mtime.tv_nsec == 123456789 &&
	    s.items[0].st.messages == 7 && s.items[0].st.unseen == 2 &&
	    s.items[0].st.recent == 1);
	test_assert(s.items[1].type == 'm' && s.items[1].m.uid == 10 &&
	    s.items[1].m.size == 10 && s.items[1].m.vsize == 12 &&
	    s.items[1].m.internaldate == -5 && s.items[1].m.cache_off == 99 &&
	    s.items[1].m.in_cur);
	test_assert_streq(s.items[1].m.name, "1700000000.M1P1.h:2,S");
	test_assert(s.items[2].type == 'e' && s.items[2].m.uid == 9);
	test_assert(s.items[4].type == 'm' && s.items[4].m.uid == 11);

	/* nothing new: nothing applied */
	memset(&s, 0, sizeof(s));
	test_assert(mbox_log_read(fd, &off, &seq, collect, &s, &torn,
	    &error) == 0 && s.n == 0 && !torn);
	/* a reader whose base already holds record 1 applies only 2 */
	off = mbox_log_start();
	seq = 1;
	test_assert(mbox_log_read(fd, &off, &seq, collect, &s, &torn,
	    &error) == 1 && s.n == 3 && s.items[1].m.uid == 11);

	/* a record whose seq leaves a gap is not applied */
	str_truncate(&b, 0);
	payload(&b, 14, 13, "1700000003.M3P1.h:2,");
	test_assert(mbox_log_append(fd, 4, &b, false, &error) == 0);
	memset(&s, 0, sizeof(s));
	test_assert(mbox_log_read(fd, &off, &seq, collect, &s, &torn,
	    &error) == 0 && s.n == 0 && torn && seq == 2);

	/* generation: the log of another base is not opened */
	test_assert(mbox_log_open(f, 0x1234abcd, &fd2, &error) == 1);
	close(fd2);
	test_assert(mbox_log_open(f, 0x1234abce, &fd2, &error) == 0 &&
	    fd2 == -1);
	close(fd);
	str_free(&b);
	free(f);
	test_end();
}

static void
test_torn(void)
{
	char *f = mkfolder("torn"), *path;
	str_t b = STR_INIT;
	struct seen s;
	const char *error;
	uint64_t off, seq, good;
	off_t size;
	bool torn;
	int fd;

	test_begin("log: a torn or garbled last record is not applied");
	path = xasprintf("%s/%s", f, MBOX_LOG_NAME);
	test_assert(mbox_log_create(f, 7, false, &fd, &error) == 0);
	payload(&b, 11, 10, "1700000000.M1P1.h:2,S");
	test_assert(mbox_log_append(fd, 1, &b, false, &error) == 0);
	good = (uint64_t)file_size(f, MBOX_LOG_NAME);
	test_assert(mbox_log_append(fd, 2, &b, false, &error) == 0);
	size = file_size(f, MBOX_LOG_NAME);
	/* every cut of the second record leaves the first one */
	for (off_t cut = (off_t)good; cut < size; cut += 7) {
		test_assert(ftruncate(fd, cut) == 0);
		memset(&s, 0, sizeof(s));
		off = mbox_log_start();
		seq = 0;
		test_assert(mbox_log_read(fd, &off, &seq, collect, &s, &torn,
		    &error) == 1);
		test_assert(seq == 1 && off == good && s.n == 3);
		test_assert(torn == (cut > (off_t)good));
	}
	/* a flipped byte in the payload fails the hash */
	test_assert(ftruncate(fd, (off_t)good) == 0);
	test_assert(mbox_log_append(fd, 2, &b, false, &error) == 0);
	{
		/* (pwrite() on an O_APPEND descriptor appends) */
		int wfd = open(path, O_RDWR);
		char c;

		test_assert(pread(wfd, &c, 1, (off_t)good + 40) == 1);
		c ^= 0x01;
		test_assert(pwrite(wfd, &c, 1, (off_t)good + 40) == 1);
		close(wfd);
	}
	off = mbox_log_start();
	seq = 0;
	memset(&s, 0, sizeof(s));
	test_assert(mbox_log_read(fd, &off, &seq, collect, &s, &torn,
	    &error) == 1 && torn && off == good);
	close(fd);
	/* garbage for a header: not a log */
	write_file(path, "petrel-index-log 1 zzzzzzzz\n", 28);
	test_assert(mbox_log_open(f, 7, &fd, &error) == 0);
	str_free(&b);
	free(path);
	free(f);
	test_end();
}

/* ---- through the mailbox ---- */

static struct mbox *
open_ok(const char *folder)
{
	struct mbox *mb = NULL;
	const char *error;

	if (mbox_open(folder, false, &mb, &error) < 0) {
		fprintf(stderr, "mbox_open(%s): %s\n", folder, error);
		return NULL;
	}
	return mb;
}

static struct mbox_log_state last_state;

static void
state_of(void *ctx, const struct mbox_log_item *it)
{
	(void)ctx;
	if (it->type == 's')
		last_state = it->st;
}

static void
test_handles(void)
{
	char *f = mkfolder("handles"), *cur;
	struct mbox *a, *b, *c;
	const char *error;
	struct stat st;
	uint64_t off = mbox_log_start(), seq = 0;
	uint32_t uv;
	size_t added, idx[1];
	ino_t base;
	bool torn;
	int fd;

	test_begin("log: changes reach other handles through the log");
	put_msgs(f, 5);
	age_dirs(f);
	a = open_ok(f);
	b = open_ok(f);
	test_assert(a != NULL && b != NULL && a->n == 5 && b->n == 5);
	if (a == NULL || b == NULL)
		goto out;
	uv = a->uidvalidity;
	base = file_ino(f, MBOX_INDEX_NAME);
	test_assert(mbox_set_flags(a, 1, "FS", &error) == 0);
	test_assert(mbox_flush(a, &error) == 0);
	idx[0] = 3;
	test_assert(mbox_expunge(a, idx, 1, &error) == 0);
	/* the base stays, the log grows */
	test_assert(file_ino(f, MBOX_INDEX_NAME) == base);
	test_assert(file_size(f, MBOX_LOG_NAME) > (off_t)mbox_log_start());
	/* the log says cur/ is as it is now: nobody lists it again */
	cur = xasprintf("%s/cur", f);
	test_assert(stat(cur, &st) == 0);
	test_assert(mbox_log_open(f, ((struct mbox_priv *)a->priv)->log_id,
	    &fd, &error) == 1);
	test_assert(mbox_log_read(fd, &off, &seq, state_of, NULL, &torn,
	    &error) >= 2);
	close(fd);
	test_assert(last_state.cur_mtime.tv_sec == st.st_mtim.tv_sec &&
	    last_state.cur_mtime.tv_nsec == st.st_mtim.tv_nsec);
	test_assert(last_state.messages == 4);
	free(cur);

	test_assert(mbox_sync(b, &added, &error) == 0 && added == 0);
	test_assert(strcmp(msg_flags(mbox_msg(b, 1)), "FS") == 0 &&
	    mbox_msg(b, 1)->flags_changed);
	test_assert(mbox_msg(b, 3)->expunged && !mbox_msg(b, 2)->expunged);
	mbox_purge(b, NULL, NULL);
	test_assert(b->n == 4);

	/* a torn tail (a writer that died) is cut off by the next one */
	{
		char *lp = xasprintf("%s/%s", f, MBOX_LOG_NAME);
		int lfd = open(lp, O_WRONLY | O_APPEND);

		test_assert(lfd >= 0 && write(lfd, "R 99 5", 6) == 6);
		close(lfd);
		free(lp);
	}
	test_assert(mbox_set_flags(b, 0, "S", &error) == 0);
	test_assert(mbox_flush(b, &error) == 0);
	test_assert(mbox_sync(a, &added, &error) == 0);
	test_assert(strcmp(msg_flags(mbox_msg(a, 0)), "S") == 0);

	/* a new handle: base + log */
	c = open_ok(f);
	test_assert(c != NULL && c->n == 4 && c->uidvalidity == uv);
	if (c != NULL)
		test_assert(strcmp(msg_flags(mbox_msg(c, 0)), "S") == 0 &&
		    strcmp(msg_flags(mbox_msg(c, 1)), "FS") == 0 &&
		    mbox_msg(c, 2)->uid == 3 && mbox_msg(c, 3)->uid == 5);
	mbox_close(&c);

	/* compaction: enough changes and the base is rewritten (a new
	 * generation), the log starts again; b reads the new base */
	for (int r = 0; r < 4000 && file_ino(f, MBOX_INDEX_NAME) == base;
	    r++) {
		test_assert(mbox_set_flags(a, 2, r % 2 ? "F" : "",
		    &error) == 0);
		if (mbox_flush(a, &error) < 0)
			break;
	}
	test_assert(file_ino(f, MBOX_INDEX_NAME) != base);
	test_assert(file_size(f, MBOX_LOG_NAME) < 4096);
	test_assert(mbox_set_flags(a, 2, "DS", &error) == 0);
	test_assert(mbox_flush(a, &error) == 0);
	test_assert(mbox_sync(b, &added, &error) == 0);
	test_assert(b->n == 4 && strcmp(msg_flags(mbox_msg(b, 2)), "DS") == 0);
	c = open_ok(f);
	test_assert(c != NULL && c->n == 4 && c->uidvalidity == uv &&
	    c->uidnext == 6);
	if (c != NULL)
		test_assert(strcmp(msg_flags(mbox_msg(c, 2)), "DS") == 0);
	mbox_close(&c);

	/* a lost log: never guess UIDs; a new UIDVALIDITY */
	{
		char *lp = xasprintf("%s/%s", f, MBOX_LOG_NAME);

		unlink(lp);
		free(lp);
	}
	test_assert(mbox_sync(a, &added, &error) < 0);
	c = open_ok(f);
	test_assert(c != NULL && c->n == 4 && c->uidvalidity != uv);
	mbox_close(&c);
out:
	mbox_close(&a);
	mbox_close(&b);
	free(f);
	test_end();
}

/* A version 1 index (before the log) keeps its UIDs and is upgraded. */
static void
test_upgrade(void)
{
	char *f = mkfolder("upgrade"), *path;
	str_t head = STR_INIT, body = STR_INIT;
	struct mbox *mb;
	const char *error;
	uint64_t h;

	test_begin("log: a version 1 petrel-index keeps its UIDs");
	put_msgs(f, 3);
	age_dirs(f);
	str_printf(&body, "7 c ? ? ? 0 1700000000.M0P1.h,S=2,W=3:2,\n"
	    "8 c 2 3 1700000000 0 1700000001.M1P1.h,S=2,W=3:2,\n"
	    "20 c ? ? ? 0 1700000002.M2P1.h,S=2,W=3:2,\n");
	str_printf(&head, "petrel-index 1 4242 21 0.000000000 0.000000000 0 0 "
	    "3 3 0 %zu ", body.len);
	h = mbox_hash64(0, str_c(&head), head.len);
	h = mbox_hash64(h, str_c(&body), body.len);
	str_printf(&head, "%016" PRIx64 "\n", h);
	str_append_n(&head, str_c(&body), body.len);
	path = xasprintf("%s/%s", f, MBOX_INDEX_NAME);
	write_file(path, str_c(&head), head.len);
	mb = open_ok(f);
	test_assert(mb != NULL && mb->uidvalidity == 4242 && mb->n == 3);
	if (mb != NULL) {
		test_assert(mbox_msg(mb, 0)->uid == 7 && mbox_msg(mb, 1)->uid == 8 &&
		    mbox_msg(mb, 2)->uid == 20 && mb->uidnext == 21);
		test_assert(mbox_set_flags(mb, 0, "S", &error) == 0);
		test_assert(mbox_flush(mb, &error) == 0);
	}
	mbox_close(&mb);
	mb = open_ok(f);
	test_assert(mb != NULL && mb->uidvalidity == 4242 && mb->n == 3);
	if (mb != NULL)
		test_assert(mbox_msg(mb, 0)->uid == 7 && mbox_msg(mb, 2)->uid == 20 &&
		    strcmp(msg_flags(mbox_msg(mb, 0)), "S") == 0);
	mbox_close(&mb);
	test_assert(file_size(f, MBOX_LOG_NAME) >= (off_t)mbox_log_start());
	str_free(&head);
	str_free(&body);
	free(path);
	free(f);
	test_end();
}

/* ---- modseqs (RFC 7162) ---- */

static void
test_modseq(void)
{
	char *f = mkfolder("modseq"), *path;
	struct mbox *a, *b;
	const char *error;
	uint64_t h0, h1, h2, h3;
	uint32_t *uids;
	size_t idx[1], n;
	bool exact;

	test_begin("log: modseqs rise with every change, in every handle");
	put_msgs(f, 4);
	age_dirs(f);
	a = open_ok(f);
	b = open_ok(f);
	test_assert(a != NULL && b != NULL && a->n == 4 && b->n == 4);
	if (a == NULL || b == NULL)
		goto out;
	h0 = mbox_highestmodseq(a);
	/* a new index starts above any earlier value: the time */
	test_assert(h0 > (uint64_t)1700000000 * 1000000);
	test_assert(mbox_highestmodseq(b) == h0);
	for (size_t i = 0; i < a->n; i++)
		test_assert(mbox_msg(a, i)->modseq >= 1 && mbox_msg(a, i)->modseq <= h0);
	/* a flag change: the next modseq, for the message and the folder */
	test_assert(mbox_set_flags(a, 1, "FS", &error) == 0);
	test_assert(mbox_flush(a, &error) == 0);
	h1 = mbox_highestmodseq(a);
	test_assert(h1 == h0 + 1 && mbox_msg(a, 1)->modseq == h1);
	/* the other handle learns both from the log */
	test_assert(mbox_sync(b, NULL, &error) == 0);
	test_assert(mbox_highestmodseq(b) == h1 && mbox_msg(b, 1)->modseq == h1);
	/* its own change follows, never the same value */
	test_assert(mbox_set_flags(b, 2, "S", &error) == 0);
	test_assert(mbox_flush(b, &error) == 0);
	h2 = mbox_highestmodseq(b);
	test_assert(h2 == h1 + 1 && mbox_msg(b, 2)->modseq == h2);
	/* UNCHANGEDSINCE: a (not synced) is refused for message 2 */
	test_assert(mbox_set_flags_cond(a, 2, "F", h1, &error) == 2);
	test_assert(mbox_set_flags_cond(a, 3, "F", h2, &error) == 0);
	test_assert(mbox_flush(a, &error) == 0);
	test_assert(mbox_highestmodseq(a) == h2 + 1);
	/* an expunge: a new modseq, and petrel-expunged knows the UID */
	idx[0] = 0;
	test_assert(mbox_expunge(a, idx, 1, &error) == 0);
	h3 = mbox_highestmodseq(a);
	test_assert(h3 == h2 + 2);
	test_assert(mbox_vanished(a, h2, &uids, &n, &exact) == 0 && exact);
	test_assert(n == 1 && uids[0] == mbox_msg(a, 0)->uid);
	free(uids);
	test_assert(mbox_vanished(a, h3, &uids, &n, &exact) == 0 && exact &&
	    n == 0);
	/* the status read agrees */
	test_assert(mbox_status_modseq(f, &h0, &error) == 0 && h0 == h3);
	mbox_close(&a);
	mbox_close(&b);
	/* durable: a new handle reads the same values */
	a = open_ok(f);
	test_assert(a != NULL && mbox_highestmodseq(a) == h3 && a->n == 3 &&
	    mbox_msg(a, 0)->modseq == h1 && mbox_msg(a, 1)->modseq == h2);
	mbox_close(&a);
	/* a rebuilt index starts above everything before */
	path = xasprintf("%s/%s", f, MBOX_INDEX_NAME);
	test_assert(unlink(path) == 0);
	free(path);
	a = open_ok(f);
	test_assert(a != NULL && mbox_highestmodseq(a) > h3);
	if (a != NULL) {
		for (size_t i = 0; i < a->n; i++)
			test_assert(mbox_msg(a, i)->modseq > h3);
		/* what was expunged before is not known exactly any more */
		test_assert(mbox_vanished(a, h2, &uids, &n, &exact) == 0 &&
		    !exact && n == 0 && uids == NULL);
	}
out:
	mbox_close(&a);
	mbox_close(&b);
	free(f);
	test_end();
}

int
main(void)
{
	log_set_level(LOG_LVL_ERROR);
	test_format();
	test_torn();
	test_handles();
	test_upgrade();
	test_modseq();
	return test_done();
}
