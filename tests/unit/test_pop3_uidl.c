/*
 * test_pop3_uidl.c: unit tests for lib/store/pop3_uidl.c, the POP3
 * UIDLs in Courier's and Dovecot's forms: courierpop3dsizelist read in
 * its versions and kept as Courier keeps it (new numbers, messages gone,
 * made with the first message, never a number twice), dovecot-uidlist's
 * P fields and the %08x%08x form (lower case, as Dovecot writes it),
 * auto, and a list that cannot be written.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/store/maildrop.h"
#include "tests/unit/test.h"

#define M1 "1700000001.M1P1.host,S=6,W=9"
#define M2 "1700000002.M2P2.host"
#define M3 "1700000003.M3P3.host"
#define M4 "1700000004.M4P4.host"

static unsigned int seq;

static char *
mkdrop(void)
{
	char *path = xasprintf("%s/uidl-%u", test_tmpdir(), ++seq);
	const char *error;

	if (maildir_make(path, &error) < 0) {
		fprintf(stderr, "maildir_make: %s\n", error);
		exit(2);
	}
	return path;
}

static void
put(const char *md, const char *name, const char *content)
{
	char *path = xasprintf("%s/%s", md, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write_full(fd, content, strlen(content)) < 0 ||
	    close(fd) < 0) {
		perror(path);
		exit(2);
	}
	free(path);
}

static char *
get(const char *md, const char *name)
{
	char *path = xasprintf("%s/%s", md, name);
	int fd = open(path, O_RDONLY);
	struct stat st;
	char *data = NULL;
	size_t len;

	if (fd >= 0 && read_fd_all(fd, &data, &len, &st) < 0)
		data = NULL;
	if (fd >= 0)
		close(fd);
	free(path);
	return data;
}

/* The UIDL the POP3 server answers (m->uidl, or the file-name form's
 * stable part) of the message whose name starts with key; NULL if the
 * message is not in the listing. */
static const char *
uidl(const struct maildir_msg *msgs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++) {
		if (strncmp(msgs[i].name, key, strlen(key)) != 0)
			continue;
		return msgs[i].uidl != NULL ? msgs[i].uidl : "(name)";
	}
	return NULL;
}

static bool
list(const char *md, enum store_uidl_format fmt, struct maildir_msg **m,
    size_t *n)
{
	const char *err;

	if (store_drop_list_uidl(md, fmt, m, n, &err) < 0) {
		fprintf(stderr, "list: %s\n", err);
		return false;
	}
	return true;
}

static void
test_parse(void)
{
	enum store_uidl_format f;

	test_begin("pop3 uidl: format names");
	test_assert(store_uidl_format_parse("filename", &f) == 0 &&
	    f == STORE_UIDL_FILENAME);
	test_assert(store_uidl_format_parse("courier", &f) == 0 &&
	    f == STORE_UIDL_COURIER);
	test_assert(store_uidl_format_parse("dovecot", &f) == 0 &&
	    f == STORE_UIDL_DOVECOT);
	test_assert(store_uidl_format_parse("auto", &f) == 0 &&
	    f == STORE_UIDL_AUTO);
	test_assert(store_uidl_format_parse("Courier", &f) < 0);
	test_assert(store_uidl_format_parse("", &f) < 0);
	test_end();
}

static void
test_courier_v3(void)
{
	char *md = mkdrop(), *text;
	struct maildir_msg *msgs = NULL;
	size_t n = 0;

	test_begin("pop3 uidl: courier list, version 3");
	put(md, "cur/" M1 ":2,S", "a\nb\nc\n");
	put(md, "cur/" M2 ":2,", "hello\n");
	put(md, "new/" M3, "x\n");
	/* M2 listed under an older flag state; M9 is gone */
	put(md, "courierpop3dsizelist",
	    "/3 12 1600000000\n"
	    M1 ":2, 9 5:1600000000:0\n"
	    "1699999999.M9P9.host:2,S 30 7:1600000000:0\n"
	    M2 ":2,S 7 11:1500000000:1\n"
	    "garbage line\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert(n == 3);
	test_assert_streq(uidl(msgs, n, M1), "UID5-1600000000");
	test_assert_streq(uidl(msgs, n, M2), "UID11-1500000000");
	test_assert_streq(uidl(msgs, n, M3), "UID12-1600000000");
	maildir_msgs_free(&msgs, n);
	text = get(md, "courierpop3dsizelist");
	test_assert(text != NULL);
	if (text != NULL) {
		test_assert(strncmp(text, "/3 13 1600000000\n", 17) == 0);
		test_assert(strstr(text, "M9P9") == NULL);
		test_assert(strstr(text, M2 ":2, 7 11:1500000000:1\n") !=
		    NULL);
		test_assert(strstr(text, M3 " 3 12:1600000000:0\n") != NULL);
	}
	free(text);
	/* again, after a flag change: the same, and no new number */
	{
		char *from = xasprintf("%s/new/%s", md, M3);
		char *to = xasprintf("%s/cur/%s:2,S", md, M3);

		test_assert(rename(from, to) == 0);
		free(from);
		free(to);
	}
	put(md, "new/" M4, "y\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert(n == 4);
	test_assert_streq(uidl(msgs, n, M3), "UID12-1600000000");
	test_assert_streq(uidl(msgs, n, M4), "UID13-1600000000");
	maildir_msgs_free(&msgs, n);
	/* the filename form ignores the list */
	test_assert(list(md, STORE_UIDL_FILENAME, &msgs, &n));
	test_assert_streq(uidl(msgs, n, M1), "(name)");
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

static void
test_courier_old(void)
{
	char *md = mkdrop(), *text;
	struct maildir_msg *msgs = NULL;
	size_t n = 0;

	test_begin("pop3 uidl: courier lists, versions 0 to 2");
	put(md, "cur/" M1 ":2,S", "a\n");
	put(md, "cur/" M2 ":2,", "b\n");
	put(md, "courierpop3dsizelist", "/2 8 1400000000\n"
	    M1 ":2,S 3 4:1400000000\n" M2 " 3 6\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert(n == 2);
	test_assert_streq(uidl(msgs, n, M1), "UID4-1400000000");
	/* version 2 needs <uidv>: M2's entry is no entry */
	test_assert_streq(uidl(msgs, n, M2), "UID8-1400000000");
	maildir_msgs_free(&msgs, n);
	text = get(md, "courierpop3dsizelist");
	test_assert(text != NULL && strncmp(text, "/2 9 1400000000\n",
	    16) == 0);
	free(text);

	put(md, "courierpop3dsizelist", "/1 8\n"
	    M1 ":2,S 3 4\n" M2 " 3 6\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert_streq(uidl(msgs, n, M1), "UID4");
	test_assert_streq(uidl(msgs, n, M2), "UID6");
	maildir_msgs_free(&msgs, n);
	/* rewritten as version 2, which Courier 5 reads: the same */
	text = get(md, "courierpop3dsizelist");
	test_assert(text != NULL && strncmp(text, "/2 8 ", 5) == 0);
	free(text);
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert_streq(uidl(msgs, n, M1), "UID4");
	maildir_msgs_free(&msgs, n);

	put(md, "courierpop3dsizelist", M1 ":2,S 3\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	/* version 0: the name before ':' */
	test_assert_streq(uidl(msgs, n, M1), "1700000001.M1P1.host,S=6,W=9");
	maildir_msgs_free(&msgs, n);
	put(md, "cur/1700000005.M5P5.a+b:2,", "c\n");
	put(md, "courierpop3dsizelist",
	    "1700000005.M5P5.a+b:2, 3\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	/* with '+' written as "+2B" */
	test_assert_streq(uidl(msgs, n, "1700000005.M5"),
	    "1700000005.M5P5.a+2Bb");
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

static void
test_courier_new_list(void)
{
	char *md = mkdrop(), *text, want[64];
	struct maildir_msg *msgs = NULL;
	size_t n = 0;
	unsigned long t0 = (unsigned long)time(NULL), uidv = 0;

	test_begin("pop3 uidl: courier list made with the first message");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert(n == 0);
	maildir_msgs_free(&msgs, n);
	text = get(md, "courierpop3dsizelist");
	test_assert(text == NULL);	/* nothing to number yet */
	free(text);
	put(md, "new/" M2, "b\n");
	put(md, "new/" M1, "a\n");
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert(n == 2);
	text = get(md, "courierpop3dsizelist");
	test_assert(text != NULL && sscanf(text, "/3 3 %lu", &uidv) == 1);
	test_assert(uidv >= t0 && uidv <= t0 + 60);
	free(text);
	/* delivery order, from 1 */
	snprintf(want, sizeof(want), "UID1-%lu", uidv);
	test_assert_streq(uidl(msgs, n, M1), want);
	snprintf(want, sizeof(want), "UID2-%lu", uidv);
	test_assert_streq(uidl(msgs, n, M2), want);
	maildir_msgs_free(&msgs, n);
	test_end();
	free(md);
}

static void
test_courier_unwritable(void)
{
	char *md = mkdrop(), *path;
	struct maildir_msg *msgs = NULL;
	size_t n = 0;

	test_begin("pop3 uidl: a courier list that cannot be written");
	put(md, "cur/" M1 ":2,S", "a\n");
	put(md, "new/" M2, "b\n");
	put(md, "courierpop3dsizelist", "/3 5 1600000000\n"
	    M1 " 3 4:1600000000:0\n");
	/* the temporary file's name taken by a directory */
	path = xasprintf("%s/courierpop3dsizelist.petrel-tmp", md);
	test_assert(mkdir(path, 0700) == 0);
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	/* M2 would need number 5, which is not on disk: not shown */
	test_assert(n == 1);
	test_assert_streq(uidl(msgs, n, M1), "UID4-1600000000");
	test_assert(uidl(msgs, n, M2) == NULL);
	maildir_msgs_free(&msgs, n);
	rmdir(path);
	test_assert(list(md, STORE_UIDL_COURIER, &msgs, &n));
	test_assert(n == 2);
	test_assert_streq(uidl(msgs, n, M2), "UID5-1600000000");
	maildir_msgs_free(&msgs, n);
	free(path);
	test_end();
	free(md);
}

static void
test_dovecot(void)
{
	char *md = mkdrop();
	struct maildir_msg *msgs = NULL;
	size_t n = 0;

	test_begin("pop3 uidl: dovecot");
	put(md, "cur/" M1 ":2,S", "a\n");
	put(md, "cur/" M2 ":2,", "b\n");
	put(md, "new/" M3, "c\n");
	put(md, "dovecot-uidlist", "3 V1234 N300 G0123456789abcdef\n"
	    "5 :" M1 ":2,S\n"
	    "7 W3 Pold-uidl-7 S2 :" M2 ":2,\n");
	test_assert(list(md, STORE_UIDL_DOVECOT, &msgs, &n));
	test_assert(n == 3);
	test_assert_streq(uidl(msgs, n, M1), "00000005000004d2");
	test_assert_streq(uidl(msgs, n, M2), "old-uidl-7");
	/* a message new to the folder: its petrel UID, from uidnext */
	test_assert_streq(uidl(msgs, n, M3), "0000012c000004d2");
	maildir_msgs_free(&msgs, n);
	test_assert(get(md, "courierpop3dsizelist") == NULL);
	test_end();
	free(md);
}

static void
test_auto(void)
{
	char *a = mkdrop(), *b = mkdrop(), *c = mkdrop(), *d = mkdrop();

	test_begin("pop3 uidl: auto");
	put(b, "courierpop3dsizelist", "/3 1 1600000000\n");
	put(b, "dovecot-uidlist", "3 V1 N1\n");
	put(c, "dovecot-uidlist", "3 V1 N1\n");
	put(c, "courierimapuiddb", "1 1 1\n");
	put(d, "courierimapuiddb", "1 1 1\n");
	test_assert(store_uidl_format_of(a, STORE_UIDL_AUTO) ==
	    STORE_UIDL_FILENAME);
	test_assert(store_uidl_format_of(b, STORE_UIDL_AUTO) ==
	    STORE_UIDL_COURIER);
	test_assert(store_uidl_format_of(c, STORE_UIDL_AUTO) ==
	    STORE_UIDL_DOVECOT);
	test_assert(store_uidl_format_of(d, STORE_UIDL_AUTO) ==
	    STORE_UIDL_COURIER);
	test_assert(store_uidl_format_of(d, STORE_UIDL_DOVECOT) ==
	    STORE_UIDL_DOVECOT);
	test_end();
	free(a);
	free(b);
	free(c);
	free(d);
}

int
main(void)
{
	log_set_level(LOG_LVL_ERROR);
	test_parse();
	test_courier_v3();
	test_courier_old();
	test_courier_new_list();
	test_courier_unwritable();
	test_dovecot();
	test_auto();
	return test_done();
}
