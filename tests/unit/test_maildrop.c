/*
 * test_maildrop.c: unit tests for lib/store/maildrop.c, the POP3
 * maildrop on INBOX's index -- the [IN-USE] lock, the listing (sizes,
 * the stable part of the names that UIDL shows, delivery order, new/
 * left alone), UIDs equal to those an IMAP handle sees, reading a
 * message renamed meanwhile, and the UPDATE state (expunge, \Seen,
 * maildirsize).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/store/mailbox.h"
#include "lib/store/maildrop.h"
#include "tests/unit/test.h"

static unsigned int drop_seq;

#define M1 "1700000001.M1P1.host,S=6,W=9"
#define M2 "1700000002.M2P2.host,S=11,W=12"
#define M3 "1700000003.M3P3.other"	/* no sizes in the name */
#define M0 "1600000000.M9P9.late"	/* older name, put in last */

static char *
mkdrop(void)
{
	char *path = xasprintf("%s/drop-%u", test_tmpdir(), ++drop_seq);
	const char *error;

	if (maildir_make(path, &error) < 0) {
		fprintf(stderr, "maildir_make: %s\n", error);
		exit(2);
	}
	return path;
}

static void
put(const char *md, const char *sub, const char *name, const char *content)
{
	char *path = xasprintf("%s/%s/%s", md, sub, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, content, strlen(content)) !=
	    (ssize_t)strlen(content) || close(fd) < 0) {
		perror(path);
		exit(2);
	}
	free(path);
}

static int
count_dir(const char *md, const char *sub)
{
	char *p = xasprintf("%s/%s", md, sub);
	DIR *d = opendir(p);
	struct dirent *de;
	int n = 0;

	free(p);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Three messages: two in new/ (one without sizes in its name), one read
 * one in cur/. */
static char *
sample(void)
{
	char *md = mkdrop();

	put(md, "new", M1, "a\nb\nc\n");
	put(md, "cur", M2 ":2,S", "hello\nworld");
	put(md, "new", M3, "x\ny\n");
	return md;
}

/* The UID an IMAP handle (read-only, like EXAMINE) gives the message
 * whose name starts with key; 0 if none. */
static uint32_t
imap_uid(const char *md, const char *key)
{
	struct mbox *mb;
	const char *err;
	uint32_t uid = 0;

	if (mbox_open(md, true, &mb, &err) < 0)
		return 0;
	for (size_t i = 0; i < mb->n; i++)
		if (!mbox_msg(mb, i)->expunged &&
		    strncmp(mbox_msg(mb, i)->name, key, strlen(key)) == 0)
			uid = mbox_msg(mb, i)->uid;
	mbox_close(&mb);
	return uid;
}

static const struct maildir_msg *
find(const struct maildir_msg *msgs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (msgs[i].key_len == strlen(key) &&
		    memcmp(msgs[i].name, key, msgs[i].key_len) == 0)
			return &msgs[i];
	return NULL;
}

static void
test_empty(void)
{
	char *md = xasprintf("%s/no-such-maildir", test_tmpdir());
	struct maildir_msg *msgs = (struct maildir_msg *)1;
	size_t n = 99, gone = 5;
	const char *err;
	int fd = 7;

	test_begin("maildrop: no maildir yet is an empty drop");
	test_assert(store_drop_lock(md, &fd, &err) == 0);
	test_assert(fd == -1);
	test_assert(store_drop_list(md, &msgs, &n, &err) == 0);
	test_assert(n == 0 && msgs == NULL);
	test_assert(store_drop_update(md, NULL, 0, NULL, NULL, &gone,
	    &err) == 0);
	test_assert(gone == 0);
	test_end();
	free(md);
}

static void
test_lock(void)
{
	char *md = mkdrop();
	const char *err;
	int fd1, fd2;

	test_begin("maildrop: a second POP3 session finds it in use");
	test_assert(store_drop_lock(md, &fd1, &err) == 0 && fd1 >= 0);
	test_assert(store_drop_lock(md, &fd2, &err) == 1);
	close(fd1);
	test_assert(store_drop_lock(md, &fd2, &err) == 0 && fd2 >= 0);
	close(fd2);
	test_end();
	free(md);
}

static void
test_list(void)
{
	char *md = sample();
	struct maildir_msg *msgs;
	const struct maildir_msg *m1, *m2, *m3;
	size_t n;
	const char *err;

	test_begin("maildrop: listing");
	test_assert(store_drop_list(md, &msgs, &n, &err) == 0);
	test_assert(n == 3);
	m1 = find(msgs, n, M1);
	m2 = find(msgs, n, M2);
	m3 = find(msgs, n, M3);
	test_assert(m1 != NULL && m2 != NULL && m3 != NULL);
	if (m1 == NULL || m2 == NULL || m3 == NULL)
		goto out;
	/* delivery order */
	test_assert(m1 == &msgs[0] && m2 == &msgs[1] && m3 == &msgs[2]);
	test_assert(m1->size == 6 && m1->vsize == 9);
	test_assert(m2->size == 11 && m2->vsize == 12);
	test_assert(m3->size == 4 && m3->vsize == 6);
	test_assert(!m1->in_cur && m2->in_cur && !m3->in_cur);
	test_assert_streq(m2->flags, "S");
	test_assert(m1->uid != 0 && m2->uid != 0 && m3->uid != 0);
	test_assert(m1->uid != m2->uid && m2->uid != m3->uid);
	/* listing leaves new/ alone: IMAP still gets its \Recent */
	test_assert(count_dir(md, "new") == 2 && count_dir(md, "cur") == 1);
out:
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

static void
test_same_uids(void)
{
	char *md = sample();
	struct maildir_msg *msgs, *again;
	size_t n, n2;
	struct mbox *mb;
	const char *err;

	test_begin("maildrop: the UIDs IMAP sees, before and after IMAP");
	/* POP3 first: the UIDs it assigns are IMAP's */
	test_assert(store_drop_list(md, &msgs, &n, &err) == 0 && n == 3);
	for (size_t i = 0; i < n; i++) {
		char *key = xstrndup(msgs[i].name, msgs[i].key_len);

		test_assert(imap_uid(md, key) == msgs[i].uid);
		free(key);
	}
	/* an IMAP SELECT moves new/ to cur/ (names get ":2,"): the
	 * UIDs and the stable parts (the UIDLs) do not change */
	test_assert(mbox_open(md, false, &mb, &err) == 0);
	mbox_close(&mb);
	test_assert(count_dir(md, "new") == 0);
	test_assert(store_drop_list(md, &again, &n2, &err) == 0 && n2 == 3);
	for (size_t i = 0; i < n && i < n2; i++) {
		test_assert(again[i].uid == msgs[i].uid);
		test_assert(again[i].key_len == msgs[i].key_len);
		test_assert(memcmp(again[i].name, msgs[i].name,
		    msgs[i].key_len) == 0);
		test_assert(again[i].in_cur);
	}
	/* a file another program drops in with an older name: a higher
	 * UID, listed first as before */
	put(md, "new", M0, "late\n");
	maildir_msgs_free(&again, n2);
	test_assert(store_drop_list(md, &again, &n2, &err) == 0 && n2 == 4);
	if (n2 == 4) {
		test_assert(again[0].key_len == strlen(M0));
		test_assert(again[0].uid > msgs[2].uid);
		test_assert(again[0].uid == imap_uid(md, M0));
	}
	maildir_msgs_free(&again, n2);
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

static void
test_read(void)
{
	char *md = sample();
	struct maildir_msg *msgs;
	struct mbox *mb;
	size_t n, len;
	char *data;
	const char *err;
	long k;

	test_begin("maildrop: reading, also after a rename by IMAP");
	test_assert(store_drop_list(md, &msgs, &n, &err) == 0 && n == 3);
	data = NULL;
	test_assert(store_drop_read(md, &msgs[1], &data, &len, &err) == 0);
	test_assert(data != NULL && len == 11 &&
	    memcmp(data, "hello\nworld", 11) == 0);
	free(data);
	/* IMAP flags message 1: its file is renamed into cur/ */
	test_assert(mbox_open(md, false, &mb, &err) == 0);
	k = mbox_find_uid(mb, msgs[0].uid);
	test_assert(k >= 0);
	if (k >= 0)
		test_assert(mbox_set_flags(mb, (size_t)k, "F", &err) == 0);
	mbox_close(&mb);
	test_assert(!msgs[0].in_cur);
	data = NULL;
	test_assert(store_drop_read(md, &msgs[0], &data, &len, &err) == 0);
	test_assert(data != NULL && len == 6 &&
	    memcmp(data, "a\nb\nc\n", 6) == 0);
	free(data);
	test_assert(msgs[0].in_cur && strstr(msgs[0].name, ":2,F") != NULL);
	/* expunged by IMAP: gone */
	test_assert(mbox_open(md, false, &mb, &err) == 0);
	k = mbox_find_uid(mb, msgs[2].uid);
	test_assert(k >= 0);
	if (k >= 0) {
		size_t idx = (size_t)k;

		test_assert(mbox_expunge(mb, &idx, 1, &err) == 0);
	}
	mbox_close(&mb);
	test_assert(store_drop_read(md, &msgs[2], &data, &len, &err) == 1);
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

static void
test_update(void)
{
	char *md = sample();
	struct maildir_msg *msgs, *after;
	struct maildir_quota q;
	size_t n, n2, gone;
	bool deleted[3] = { true, false, false };
	bool seen[3] = { false, false, true };
	bool none[3] = { false, false, false };
	const char *err;
	int fd;

	test_begin("maildrop: UPDATE deletes, sets \\Seen, lowers the quota");
	test_assert(maildir_quota_recalc(md, 1000000, 0, NULL, &err) == 0);
	test_assert(store_drop_lock(md, &fd, &err) == 0 && fd >= 0);
	test_assert(store_drop_list(md, &msgs, &n, &err) == 0 && n == 3);
	/* nothing to do: nothing changes */
	test_assert(store_drop_update(md, msgs, n, none, none, &gone,
	    &err) == 0 && gone == 0);
	test_assert(count_dir(md, "new") == 2);
	test_assert(store_drop_update(md, msgs, n, deleted, seen, &gone,
	    &err) == 0);
	test_assert(gone == 1);
	close(fd);
	test_assert(imap_uid(md, M1) == 0);
	test_assert(imap_uid(md, M3) == msgs[2].uid);
	test_assert(store_drop_list(md, &after, &n2, &err) == 0 && n2 == 2);
	if (n2 == 2) {
		test_assert(after[0].uid == msgs[1].uid);
		test_assert(after[1].uid == msgs[2].uid);
		test_assert(after[1].in_cur);
		test_assert_streq(after[1].flags, "S");
	}
	test_assert(count_dir(md, "new") == 0 && count_dir(md, "cur") == 2);
	test_assert(maildir_quota_read(md, &q, &err) == 1);
	test_assert(q.bytes == 15 && q.count == 2);
	/* a message removed by another program meanwhile: it counts as
	 * deleted, and the quota is the remover's business */
	{
		bool del2[2] = { true, false }, seen2[2] = { false, false };

		char *path = maildir_msg_path(md, &after[0]);

		test_assert(unlink(path) == 0);
		free(path);
		test_assert(store_drop_update(md, after, n2, del2, seen2, &gone,
		    &err) == 0 && gone == 1);
		test_assert(maildir_quota_read(md, &q, &err) == 1);
		test_assert(q.bytes == 15 && q.count == 2);
	}
	maildir_msgs_free(&after, n2);
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

int
main(void)
{
	log_set_level(LOG_LVL_ERROR);
	test_empty();
	test_lock();
	test_list();
	test_same_uids();
	test_read();
	test_update();
	return test_done();
}
