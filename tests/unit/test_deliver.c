/*
 * test_deliver.c: unit tests for lib/deliver/deliver.c -- one message to
 * two maildirs with quotas (both maildirsize files grow by the copy's
 * size), duplicate elimination (the same address into the same maildir
 * once, an alias's two addresses twice), a remote destination into the
 * queue, failures that stop the delivery and carry their errno as the
 * code (lib/base/err), and quarantined copies filed in Junk.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/deliver/deliver.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "tests/unit/test.h"

#define BODY "Subject: hello\n\nthe body\n"

static char *
new_maildir(const char *name, uint64_t quota)
{
	const char *error;
	char *md = xasprintf("%s/%s", test_tmpdir(), name);

	if (maildir_make(md, &error) < 0) {
		fprintf(stderr, "maildir_make: %s\n", error);
		exit(2);
	}
	/* maildirsize exists (as after the first RCPT-time check). */
	if (quota > 0 && maildir_quota_recalc(md, quota, 0, NULL, &error) < 0) {
		fprintf(stderr, "maildir_quota_recalc: %s\n", error);
		exit(2);
	}
	return md;
}

static void
dest_maildir(struct route_result *r, const char *address, const char *md,
    uint64_t quota)
{
	struct route_dest *d;

	r->status = ROUTE_OK;
	r->dests = xrealloc(r->dests, (r->ndests + 1) * sizeof(*r->dests));
	d = &r->dests[r->ndests++];
	memset(d, 0, sizeof(*d));
	d->kind = ROUTE_MAILDIR;
	d->address = xstrdup(address);
	d->maildir = xstrdup(md);
	d->quota.bytes = quota;
}

static void
dest_remote(struct route_result *r, const char *address)
{
	struct route_dest *d;

	r->status = ROUTE_OK;
	r->dests = xrealloc(r->dests, (r->ndests + 1) * sizeof(*r->dests));
	d = &r->dests[r->ndests++];
	memset(d, 0, sizeof(*d));
	d->kind = ROUTE_REMOTE;
	d->address = xstrdup(address);
	d->transport = xstrdup("");
}

/* Files in maildir/sub (new, cur, tmp). */
static size_t
count_files(const char *md, const char *sub)
{
	char *path = xasprintf("%s/%s", md, sub);
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

	free(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int64_t
usage_bytes(const char *md)
{
	struct maildir_quota q;
	const char *error;

	if (maildir_quota_read(md, &q, &error) != 1)
		return -1;
	return q.bytes;
}

static int64_t
usage_count(const char *md)
{
	struct maildir_quota q;
	const char *error;

	if (maildir_quota_read(md, &q, &error) != 1)
		return -1;
	return q.count;
}

static void
body_init(struct spool *sp)
{
	const char *error;

	spool_init(sp, test_tmpdir());
	if (spool_append(sp, BODY, strlen(BODY), &error) < 0) {
		fprintf(stderr, "spool_append: %s\n", error);
		exit(2);
	}
}

static void
test_two_maildirs_with_quota(void)
{
	char *a = new_maildir("two-a", 1000000), *b = new_maildir("two-b",
	    2000000);
	struct route_result r1 = { 0 }, r2 = { 0 };
	struct deliver_rcpt rcpts[2];
	struct deliver_ctx ctx = { test_tmpdir(), NULL };
	struct deliver_msg msg;
	struct deliver_result res;
	struct spool sp;
	const char *error = NULL;
	const char *prefix = "Received: from x\n";
	int64_t size_a, size_b;

	test_begin("deliver: two maildirs, both maildirsize files updated");
	test_assert(usage_bytes(a) == 0 && usage_count(a) == 0);
	dest_maildir(&r1, "a@example.test", a, 1000000);
	dest_maildir(&r2, "b@example.test", b, 2000000);
	rcpts[0].address = "a@example.test";
	rcpts[0].route = &r1;
	rcpts[1].address = "b@example.test";
	rcpts[1].route = &r2;
	body_init(&sp);
	memset(&msg, 0, sizeof(msg));
	msg.qid = "0000000000000001";
	msg.sender = "s@remote.test";
	msg.rcpts = rcpts;
	msg.nrcpts = 2;
	msg.prefix = prefix;
	msg.body = &sp;
	test_assert(deliver_message(&ctx, &msg, &res, &error) == 0);
	test_assert(res.delivered == 2 && res.duplicates == 0 &&
	    res.queued == 0 && res.code == ERR_NONE);
	test_assert(count_files(a, "new") == 1 && count_files(b, "new") == 1);
	test_assert(count_files(a, "tmp") == 0 && count_files(b, "tmp") == 0);
	/* Each copy: Return-Path + Delivered-To + prefix + body. */
	size_a = (int64_t)(strlen("Return-Path: <s@remote.test>\n"
	    "Delivered-To: a@example.test\n") + strlen(prefix) + strlen(BODY));
	size_b = size_a;	/* same length of address */
	test_assert(usage_bytes(a) == size_a && usage_count(a) == 1);
	test_assert(usage_bytes(b) == size_b && usage_count(b) == 1);
	/* Without a quota no maildirsize is written. */
	route_result_clear(&r1);
	memset(&r1, 0, sizeof(r1));
	{
		char *c = new_maildir("two-c", 0);
		char *msz = xasprintf("%s/maildirsize", c);
		struct stat st;

		dest_maildir(&r1, "c@example.test", c, 0);
		msg.nrcpts = 1;
		test_assert(deliver_message(&ctx, &msg, &res, &error) == 0);
		test_assert(res.delivered == 1);
		test_assert(count_files(c, "new") == 1);
		test_assert(stat(msz, &st) == -1 && errno == ENOENT);
		free(msz);
		free(c);
	}
	spool_reset(&sp);
	route_result_clear(&r1);
	route_result_clear(&r2);
	free(a);
	free(b);
	test_end();
}

static void
test_duplicates(void)
{
	char *md = new_maildir("dup", 1000000);
	struct route_result r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	struct deliver_rcpt rcpts[3];
	struct deliver_ctx ctx = { test_tmpdir(), NULL };
	struct deliver_msg msg;
	struct deliver_result res;
	struct spool sp;
	const char *error = NULL;

	test_begin("deliver: duplicates eliminated, an alias's targets not");
	/* RCPT TO:<u> twice, and an alias whose target is u and v (both in
	 * the same maildir: the self-copy idiom). */
	dest_maildir(&r1, "u@example.test", md, 1000000);
	dest_maildir(&r2, "u@example.test", md, 1000000);
	dest_maildir(&r3, "u@example.test", md, 1000000);
	dest_maildir(&r3, "v@example.test", md, 1000000);
	rcpts[0].address = "u@example.test";
	rcpts[0].route = &r1;
	rcpts[1].address = "u@example.test";
	rcpts[1].route = &r2;
	rcpts[2].address = "list@example.test";
	rcpts[2].route = &r3;
	body_init(&sp);
	memset(&msg, 0, sizeof(msg));
	msg.qid = "0000000000000002";
	msg.sender = "";
	msg.rcpts = rcpts;
	msg.nrcpts = 3;
	msg.body = &sp;
	test_assert(deliver_message(&ctx, &msg, &res, &error) == 0);
	test_assert(res.delivered == 2);
	test_assert(res.duplicates == 2);
	test_assert(count_files(md, "new") == 2);
	test_assert(usage_count(md) == 2);
	spool_reset(&sp);
	route_result_clear(&r1);
	route_result_clear(&r2);
	route_result_clear(&r3);
	free(md);
	test_end();
}

static void
test_remote_queued(void)
{
	char *qdir = xasprintf("%s/queue", test_tmpdir());
	char *md = new_maildir("mixed", 0);
	struct route_result r = { 0 };
	struct deliver_rcpt rcpt;
	struct deliver_ctx ctx = { 0 };
	struct deliver_msg msg;
	struct deliver_result res;
	struct queue_msg q;
	struct spool sp;
	const char *error = NULL;

	test_begin("deliver: remote destinations into one queue file");
	test_assert(queue_dirs_make(qdir, &error) == 0);
	ctx.queue_dir = qdir;
	ctx.dkim_dir = NULL;
	dest_remote(&r, "x@remote.test");
	dest_maildir(&r, "l@example.test", md, 0);
	dest_remote(&r, "y@remote.test");
	rcpt.address = "group@example.test";
	rcpt.route = &r;
	body_init(&sp);
	memset(&msg, 0, sizeof(msg));
	msg.qid = "00000000000000A3";
	msg.sender = "";
	msg.rcpts = &rcpt;
	msg.nrcpts = 1;
	msg.body = &sp;
	test_assert(deliver_message(&ctx, &msg, &res, &error) == 0);
	test_assert(res.delivered == 1 && res.queued == 2);
	test_assert(queue_msg_read(qdir, msg.qid, &q, &error) == 1);
	test_assert(q.nrcpts == 2);
	test_assert(q.nrcpts == 2 && strcmp(q.rcpts[0].address,
	    "x@remote.test") == 0 && strcmp(q.rcpts[1].address,
	    "y@remote.test") == 0);
	test_assert_streq(q.sender, "");
	queue_msg_clear(&q);
	spool_reset(&sp);
	route_result_clear(&r);
	free(md);
	free(qdir);
	test_end();
}

static void
test_failures_carry_the_code(void)
{
	char *file = xasprintf("%s/not-a-dir", test_tmpdir());
	char *bad = xasprintf("%s/maildir", file);
	char *ok = new_maildir("fail-ok", 0);
	char *big = new_maildir("fail-big", 0);
	char *noqueue = xasprintf("%s/no-queue", test_tmpdir());
	struct route_result r1 = { 0 }, r2 = { 0 };
	struct deliver_rcpt rcpts[2];
	struct deliver_ctx ctx = { noqueue, NULL };
	struct deliver_msg msg;
	struct deliver_result res;
	struct rlimit old, lim;
	struct spool sp;
	const char *error = NULL;
	FILE *f = fopen(file, "w");
	char *chunk;

	test_begin("deliver: a failure stops it and carries its errno");
	test_assert(f != NULL);
	if (f != NULL)
		fclose(f);
	/* 1. a maildir under a regular file: ENOTDIR; the copy before it
	 * stays, the remote one after it is not queued. */
	dest_maildir(&r1, "ok@example.test", ok, 0);
	dest_maildir(&r2, "bad@example.test", bad, 0);
	dest_remote(&r2, "far@remote.test");
	rcpts[0].address = "ok@example.test";
	rcpts[0].route = &r1;
	rcpts[1].address = "bad@example.test";
	rcpts[1].route = &r2;
	body_init(&sp);
	memset(&msg, 0, sizeof(msg));
	msg.qid = "0000000000000004";
	msg.sender = "s@example.test";
	msg.rcpts = rcpts;
	msg.nrcpts = 2;
	msg.body = &sp;
	err_clear();
	test_assert(deliver_message(&ctx, &msg, &res, &error) == -1);
	test_assert(res.delivered == 1 && res.queued == 0);
	test_assert(res.code == ENOTDIR);
	test_assert(err_last_code() == ENOTDIR);
	test_assert(error != NULL && strstr(error, bad) != NULL);
	test_assert(count_files(ok, "new") == 1);

	/* 2. only the remote one, and no queue directory: ENOENT. */
	msg.rcpts = &rcpts[1];
	msg.nrcpts = 1;
	route_result_clear(&r2);
	memset(&r2, 0, sizeof(r2));
	dest_remote(&r2, "far@remote.test");
	test_assert(deliver_message(&ctx, &msg, &res, &error) == -1);
	test_assert(res.code == ENOENT && res.queued == 0);
	test_assert(error != NULL && strstr(error, noqueue) != NULL);
	spool_reset(&sp);

	/* 3. a write refused in the middle of the body (the file size
	 * limit: EFBIG, as ENOSPC on a full disk): the write's own code
	 * comes out, nothing is left in new/ or tmp/. */
	chunk = xmalloc(SPOOL_MEM_MAX + 4096);
	memset(chunk, 'x', SPOOL_MEM_MAX + 4096);
	spool_init(&sp, test_tmpdir());
	test_assert(spool_append(&sp, chunk, SPOOL_MEM_MAX + 4096,
	    &error) == 0);
	route_result_clear(&r2);
	memset(&r2, 0, sizeof(r2));
	dest_maildir(&r2, "big@example.test", big, 0);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 65536;
	signal(SIGXFSZ, SIG_IGN);
	test_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	err_clear();
	test_assert(deliver_message(&ctx, &msg, &res, &error) == -1);
	setrlimit(RLIMIT_FSIZE, &old);
	test_assert(res.code == EFBIG);
	test_assert(err_last_code() == EFBIG);
	test_assert(error != NULL && strstr(error, strerror(EFBIG)) != NULL);
	test_assert(count_files(big, "new") == 0);
	test_assert(count_files(big, "tmp") == 0);
	free(chunk);
	spool_reset(&sp);
	route_result_clear(&r1);
	route_result_clear(&r2);
	free(file);
	free(bad);
	free(ok);
	free(big);
	free(noqueue);
	test_end();
}

static void
test_junk(void)
{
	char *md = new_maildir("junk", 1000000), *junk, *mf;
	struct route_result r = { 0 };
	struct deliver_rcpt rcpt;
	struct deliver_ctx ctx = { test_tmpdir(), NULL };
	struct deliver_msg msg;
	struct deliver_result res;
	struct spool sp;
	struct stat st;
	const char *error = NULL;

	test_begin("deliver: quarantined copies go to Junk, made when missing");
	dest_maildir(&r, "j@example.test", md, 1000000);
	rcpt.address = "j@example.test";
	rcpt.route = &r;
	body_init(&sp);
	memset(&msg, 0, sizeof(msg));
	msg.qid = "0000000000000005";
	msg.sender = "";
	msg.rcpts = &rcpt;
	msg.nrcpts = 1;
	msg.body = &sp;
	msg.junk = true;
	junk = xasprintf("%s/.Junk", md);
	mf = xasprintf("%s/maildirfolder", junk);
	test_assert(stat(junk, &st) < 0);
	for (int i = 0; i < 2; i++) {
		test_assert(deliver_message(&ctx, &msg, &res, &error) == 0);
		test_assert(res.delivered == 1);
	}
	test_assert(count_files(junk, "new") == 2);
	test_assert(count_files(md, "new") == 0);
	test_assert(stat(mf, &st) == 0);
	test_assert(usage_count(md) == 2);
	msg.junk = false;
	test_assert(deliver_message(&ctx, &msg, &res, &error) == 0);
	test_assert(count_files(md, "new") == 1);
	spool_reset(&sp);
	route_result_clear(&r);
	free(junk);
	free(mf);
	free(md);
	test_end();
}

int
main(void)
{
	test_two_maildirs_with_quota();
	test_duplicates();
	test_remote_queued();
	test_failures_carry_the_code();
	test_junk();
	return test_done();
}
