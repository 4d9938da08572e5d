/* Unit tests for the queue file reader (lib/queue/queue.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/str.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "test.h"

#define ID "0123456789ABCDEF"

static const char good[] =
    "petrel-queue 1\n"
    "id " ID "\n"
    "arrival 1700000000\n"
    "sender a@example.test\n"
    "rcpt b@example.net -\n"
    "rcpt c@example.org smtp:[relay.test]:2525\n"
    "\n"
    "Subject: hi\n\nbody\n";

static char *
qdir(void)
{
	static char *dir;

	if (dir == NULL) {
		const char *err;

		dir = xasprintf("%s/queue", test_tmpdir());
		if (queue_dirs_make(dir, &err) < 0) {
			fprintf(stderr, "%s\n", err);
			exit(1);
		}
	}
	return dir;
}

static void
put(const char *sub, const char *data, size_t len)
{
	char *p = xasprintf("%s/%s/%s", qdir(), sub, ID);
	FILE *fp = fopen(p, "w");

	if (fp == NULL || fwrite(data, 1, len, fp) != len || fclose(fp) != 0) {
		perror(p);
		exit(1);
	}
	free(p);
}

static void
unput(const char *sub)
{
	char *p = xasprintf("%s/%s/%s", qdir(), sub, ID);

	unlink(p);
	free(p);
}

/* Read ID; the result, m filled when 1. */
static int
read_msg(struct queue_msg *m, const char **err)
{
	*err = NULL;
	return queue_msg_read(qdir(), ID, m, err);
}

static void
test_good(void)
{
	struct queue_msg m;
	const char *err;

	test_begin("queue file: a good one");
	unput("state");
	put("incoming", good, sizeof(good) - 1);
	test_assert(read_msg(&m, &err) == 1);
	test_assert_streq(m.id, ID);
	test_assert_streq(m.sender, "a@example.test");
	test_assert(m.arrival == 1700000000);
	test_assert(m.nrcpts == 2);
	if (m.nrcpts == 2) {
		test_assert_streq(m.rcpts[0].address, "b@example.net");
		test_assert_streq(m.rcpts[0].transport, "");
		test_assert_streq(m.rcpts[1].transport,
		    "smtp:[relay.test]:2525");
		test_assert(m.rcpts[0].status == QR_PENDING);
		test_assert(m.rcpts[1].next == 1700000000);
		test_assert_streq(m.rcpts[1].last, "");
	}
	test_assert(m.body_offset == (long)(strstr(good, "\n\n") - good) + 2);
	queue_msg_clear(&m);

	/* the null sender */
	{
		str_t s = STR_INIT;

		str_printf(&s, "petrel-queue 1\nid %s\narrival 5\nsender\n"
		    "rcpt x@y -\n\n", ID);
		put("incoming", s.data, s.len);
		test_assert(read_msg(&m, &err) == 1);
		test_assert_streq(m.sender, "");
		test_assert(m.body_offset == (long)s.len);
		queue_msg_clear(&m);
		str_free(&s);
	}
	/* gone: 0 */
	unput("incoming");
	test_assert(read_msg(&m, &err) == 0);
	test_assert(queue_msg_read(qdir(), "0123456789abcdef", &m, &err) ==
	    -1);
	test_end();
}

static void
test_enqueue_reads_back(void)
{
	struct queue_rcpt r[2] = {
		{ "one@example.net", "" }, { "two@example.net", "relay:x" },
	};
	struct spool sp;
	struct queue_msg m;
	const char *err;

	test_begin("queue file: what queue_enqueue writes reads back");
	unput("state");
	spool_init(&sp, test_tmpdir());
	test_assert(spool_append(&sp, "Subject: x\n\nhello\n", 18, &err) == 0);
	test_assert(queue_enqueue(qdir(), ID, "", 0, r, 2, "Received: y\n", &sp,
	    &err) == 0);
	test_assert(read_msg(&m, &err) == 1);
	test_assert(m.nrcpts == 2);
	test_assert_streq(m.sender, "");
	if (m.nrcpts == 2)
		test_assert_streq(m.rcpts[1].transport, "relay:x");
	test_assert(!m.requiretls);
	queue_msg_clear(&m);
	unput("incoming");
	/* the REQUIRETLS flag is a line of the envelope */
	test_assert(queue_enqueue(qdir(), ID, "a@b.example", QUEUE_F_REQUIRETLS,
	    r, 1, NULL, &sp, &err) == 0);
	test_assert(read_msg(&m, &err) == 1);
	test_assert(m.requiretls && !m.tls_optional && m.nrcpts == 1);
	test_assert_streq(m.sender, "a@b.example");
	queue_msg_clear(&m);
	unput("incoming");
	/* and TLS-Required: No's */
	test_assert(queue_enqueue(qdir(), ID, "a@b.example",
	    QUEUE_F_TLS_OPTIONAL, r, 1, NULL, &sp, &err) == 0);
	test_assert(read_msg(&m, &err) == 1);
	test_assert(m.tls_optional && !m.requiretls);
	queue_msg_clear(&m);
	spool_reset(&sp);
	unput("incoming");
	test_end();
}

static void
test_truncated(void)
{
	size_t hdr = (size_t)(strstr(good, "\n\n") - good) + 2;
	struct queue_msg m;
	const char *err;
	bool all = true;

	test_begin("queue file: cut anywhere in the envelope: refused");
	unput("state");
	for (size_t cut = 0; cut < hdr; cut++) {
		put("incoming", good, cut);
		if (read_msg(&m, &err) != -1 || err == NULL ||
		    strstr(err, "malformed queue file") == NULL) {
			fprintf(stderr, "cut at %zu accepted\n", cut);
			all = false;
		}
		test_assert(m.rcpts == NULL && m.sender == NULL);
	}
	test_assert(all);
	/* cut in the body: the envelope is whole, the file reads */
	put("incoming", good, hdr);
	test_assert(read_msg(&m, &err) == 1);
	queue_msg_clear(&m);
	unput("incoming");
	test_end();
}

static void
test_garbled(void)
{
	static const char *const bad[] = {
		"petrel-queue 2\nid " ID "\narrival 1\nsender a@b\nrcpt c@d -\n\n",
		"id " ID "\narrival 1\nsender a@b\nrcpt c@d -\n\n",
		"petrel-queue 1\nid 0123456789ABCDEE\narrival 1\nsender a@b\n"
		    "rcpt c@d -\n\n",
		"petrel-queue 1\narrival 12x\nsender a@b\nrcpt c@d -\n\n",
		"petrel-queue 1\narrival -1\nsender a@b\nrcpt c@d -\n\n",
		"petrel-queue 1\narrival \nsender a@b\nrcpt c@d -\n\n",
		"petrel-queue 1\narrival 99999999999999999999\nsender a@b\n"
		    "rcpt c@d -\n\n",
		"petrel-queue 1\nsender a@b\nrcpt c@d -\n\n",	/* no arrival */
		"petrel-queue 1\narrival 1\nrcpt c@d -\n\n",	/* no sender */
		"petrel-queue 1\narrival 1\nsender a@b\n\n",	/* no rcpt */
		"petrel-queue 1\narrival 1\nsender a@b\nrcpt c@d\n\n",
		"petrel-queue 1\narrival 1\nsender a@b\nrcpt  -\n\n",
		"petrel-queue 1\narrival 1\nsender a@b\nrcpt c@d \n\n",
		"petrel-queue 1\narrival 1\nsender a@b\nrcpt c@d - x\n\n",
		"petrel-queue 1\narrival 1\nsender a@b\nrcpt c@d -\nbogus\n\n",
		"\n",
		"",
	};
	struct queue_msg m;
	const char *err;

	test_begin("queue file: garbled envelopes refused");
	unput("state");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put("incoming", bad[i], strlen(bad[i]));
		test_assert(read_msg(&m, &err) == -1);
		test_assert(err != NULL);
	}
	/* a NUL inside a line */
	{
		static const char nul[] = "petrel-queue 1\narrival 1\n"
		    "sender a@b\0x\nrcpt c@d -\n\n";

		put("incoming", nul, sizeof(nul) - 1);
		test_assert(read_msg(&m, &err) == -1);
	}
	/* an overlong line, with or without an end */
	{
		str_t s = STR_INIT;

		str_append(&s, "petrel-queue 1\narrival 1\nsender ");
		for (int i = 0; i < QUEUE_LINE_MAX; i++)
			str_append_c(&s, 'a');
		put("incoming", s.data, s.len);
		test_assert(read_msg(&m, &err) == -1);
		test_assert(err != NULL && strstr(err, "too long") != NULL);
		str_append(&s, "\nrcpt c@d -\n\n");
		put("incoming", s.data, s.len);
		test_assert(read_msg(&m, &err) == -1);
		str_free(&s);
	}
	unput("incoming");
	test_end();
}

static void
test_state(void)
{
	struct queue_msg m;
	const char *err;
	str_t s = STR_INIT;

	test_begin("queue state file: read, checked, written back");
	put("incoming", good, sizeof(good) - 1);
	str_append(&s, "S 2 1700000100 250 2.0.0 Ok\nB 3 1700000200 \n");
	put("state", s.data, s.len);
	test_assert(read_msg(&m, &err) == 1);
	if (m.nrcpts == 2) {
		test_assert(m.rcpts[0].status == QR_SENT);
		test_assert(m.rcpts[0].attempts == 2);
		test_assert(m.rcpts[0].next == 1700000100);
		test_assert_streq(m.rcpts[0].last, "250 2.0.0 Ok");
		test_assert(m.rcpts[1].status == QR_BOUNCED);
		test_assert_streq(m.rcpts[1].last, "");
	}
	/* written and read back: the same */
	m.rcpts[1].status = QR_PENDING;
	free(m.rcpts[1].last);
	m.rcpts[1].last = xstrdup("451 4.7.1 later\r\nand more");
	test_assert(queue_state_write(qdir(), &m, &err) == 0);
	queue_msg_clear(&m);
	test_assert(read_msg(&m, &err) == 1);
	if (m.nrcpts == 2) {
		test_assert(m.rcpts[0].status == QR_SENT);
		test_assert(m.rcpts[1].status == QR_PENDING);
		test_assert(m.rcpts[1].attempts == 3);
		test_assert_streq(m.rcpts[1].last, "451 4.7.1 later  and more");
	}
	queue_msg_clear(&m);

	/* bad lines keep their recipient's defaults; the others count */
	static const char *const bad[] = {
		"X 1 2 x", "S x 2 y", "S 1 y z", "S -1 2 x", "S 1 -2 x",
		"S 99999999999 2 x", "S 1 99999999999999999999 x", "S1 2 x",
		"S", "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		str_truncate(&s, 0);
		str_printf(&s, "%s\nS 4 5 ok\n", bad[i]);
		put("state", s.data, s.len);
		test_assert(read_msg(&m, &err) == 1);
		if (m.nrcpts == 2) {
			test_assert(m.rcpts[0].status == QR_PENDING);
			test_assert(m.rcpts[0].attempts == 0);
			test_assert(m.rcpts[0].next == 1700000000);
			test_assert(m.rcpts[1].status == QR_SENT);
			test_assert(m.rcpts[1].attempts == 4);
		}
		queue_msg_clear(&m);
	}
	/* an overlong state line is skipped, the next one still read */
	str_truncate(&s, 0);
	str_append(&s, "S 1 2 ");
	for (int i = 0; i < QUEUE_STATE_LINE_MAX; i++)
		str_append_c(&s, 'x');
	str_append(&s, "\nB 7 8 no\n");
	put("state", s.data, s.len);
	test_assert(read_msg(&m, &err) == 1);
	if (m.nrcpts == 2) {
		test_assert(m.rcpts[0].status == QR_PENDING);
		test_assert(m.rcpts[1].status == QR_BOUNCED);
		test_assert(m.rcpts[1].attempts == 7);
	}
	queue_msg_clear(&m);
	/* a state line of the largest reply fits */
	str_truncate(&s, 0);
	str_append(&s, "P 1 2 ");
	for (int i = 0; i < SMTP_LINE_MAX * 100 + 99; i++)
		str_append_c(&s, 'r');
	str_append_c(&s, '\n');
	put("state", s.data, s.len);
	test_assert(read_msg(&m, &err) == 1);
	if (m.nrcpts == 2)
		test_assert(strlen(m.rcpts[0].last) == SMTP_LINE_MAX * 100 + 99);
	queue_msg_clear(&m);
	str_free(&s);
	unput("state");
	unput("incoming");
	test_end();
}

int
main(void)
{
	test_good();
	test_enqueue_reads_back();
	test_truncated();
	test_garbled();
	test_state();
	return test_done();
}
