/*
 * test_subscriptions.c: unit tests for lib/maildir/subscriptions.c --
 * the lines of Dovecot's "subscriptions" (versions 1 and 2) and
 * Courier's "courierimapsubscribed", reading both, and changes written
 * back in the format each file had, other lines kept.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/str.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/subscriptions.h"
#include "tests/unit/test.h"

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
write_file(const char *md, const char *name, const char *content)
{
	char *path = xasprintf("%s/%s", md, name);
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(content, f) == EOF || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	free(path);
}

/* The file's contents, malloc'd; NULL if there is none. */
static char *
read_file(const char *md, const char *name)
{
	char *path = xasprintf("%s/%s", md, name);
	FILE *f = fopen(path, "r");
	str_t s = STR_INIT;
	int c;

	free(path);
	if (f == NULL)
		return NULL;
	while ((c = fgetc(f)) != EOF)
		str_append_c(&s, (char)c);
	fclose(f);
	if (s.len == 0)
		return xstrdup("");
	return str_steal(&s);
}

static bool
file_is(const char *md, const char *name, const char *want)
{
	char *got = read_file(md, name);
	bool ok = got != NULL && strcmp(got, want) == 0;

	if (!ok)
		fprintf(stderr, "%s/%s: got [%s], want [%s]\n", md, name,
		    got == NULL ? "(none)" : got, want);
	free(got);
	return ok;
}

static bool
parses_to(enum maildir_subs_format fmt, const char *line, const char *want)
{
	str_t f = STR_INIT;
	int r = maildir_subs_parse_line(fmt, line, strlen(line), &f);
	bool ok = want == NULL ? r == 0 :
	    r == 1 && strcmp(str_c(&f), want) == 0;

	str_free(&f);
	return ok;
}

static bool
formats_to(enum maildir_subs_format fmt, const char *folder, const char *want)
{
	str_t out = STR_INIT;
	bool ok;

	maildir_subs_format_line(fmt, folder, &out);
	ok = strcmp(str_c(&out), want) == 0;
	str_free(&out);
	return ok;
}

static void
test_lines(void)
{
	test_begin("subscription lines: Dovecot version 1");
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "Work.Projects",
	    "Work.Projects"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "inbox", "INBOX"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "Sent.", "Sent"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "Sent\r", "Sent"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "&AMQ-rger",
	    "&AMQ-rger"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "", NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "../etc", NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "a/b", NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "shared/bob/INBOX",
	    NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT1, "Work\tProjects", NULL));
	test_assert(formats_to(MAILDIR_SUBS_DOVECOT1, "Work.Projects",
	    "Work.Projects"));
	test_end();

	test_begin("subscription lines: Dovecot version 2");
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "Work\tProjects",
	    "Work.Projects"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "Work", "Work"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "INBOX", "INBOX"));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "a\tb\tc", "a.b.c"));
	/* a level holding the on-disk separator names no folder */
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "Work.Projects", NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "a\001tb", NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "\tWork", NULL));
	test_assert(parses_to(MAILDIR_SUBS_DOVECOT2, "a\t\tb", NULL));
	test_assert(formats_to(MAILDIR_SUBS_DOVECOT2, "Work.Projects",
	    "Work\tProjects"));
	test_assert(formats_to(MAILDIR_SUBS_DOVECOT2, "INBOX", "INBOX"));
	test_end();

	test_begin("subscription lines: Courier");
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "INBOX", "INBOX"));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "Inbox", "INBOX"));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "INBOX.Work.Projects",
	    "Work.Projects"));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "inbox.Sent", "Sent"));
	/* INBOX.INBOX is a folder ".INBOX" to Courier, never the INBOX */
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "INBOX.INBOX", NULL));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "INBOX.", NULL));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "Work", NULL));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "shared.bob.Work", NULL));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "#shared.x", NULL));
	test_assert(parses_to(MAILDIR_SUBS_COURIER1, "INBOX..x", NULL));
	test_assert(formats_to(MAILDIR_SUBS_COURIER1, "INBOX", "INBOX"));
	test_assert(formats_to(MAILDIR_SUBS_COURIER1, "Work.Projects",
	    "INBOX.Work.Projects"));
	test_end();
}

struct seen {
	char buf[512];
};

static void
collect(void *ctx, const char *folder)
{
	struct seen *s = ctx;

	snprintf(s->buf + strlen(s->buf), sizeof(s->buf) - strlen(s->buf),
	    "%s;", folder);
}

static const char *
read_all(const char *md, struct seen *s)
{
	const char *err;

	s->buf[0] = '\0';
	if (maildir_subs_read(md, collect, s, &err) < 0)
		return NULL;
	return s->buf;
}

static size_t
tmp_entries(const char *md)
{
	char *tmp = xasprintf("%s/tmp", md);
	DIR *d = opendir(tmp);
	struct dirent *de;
	size_t n = 0;

	free(tmp);
	while (d != NULL && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	if (d != NULL)
		closedir(d);
	return n;
}

static void
test_dovecot2_file(void)
{
	char *md = new_maildir("dovecot2");
	const char *err, *sent = "Sent", *wp = "Work.Projects";
	struct seen s;

	test_begin("Dovecot version 2: read, changed, kept version 2");
	write_file(md, MAILDIR_SUBS_DOVECOT,
	    "V\t2\n\nINBOX\nWork\nWork\tProjects\nshared/bob/INBOX\n");
	test_assert(maildir_subs_exist(md));
	test_assert_streq(read_all(md, &s), "INBOX;Work;Work.Projects;");
	test_assert(maildir_subs_set(md, &sent, 1, true, &err) == 0);
	test_assert(file_is(md, MAILDIR_SUBS_DOVECOT,
	    "V\t2\n\nINBOX\nWork\nWork\tProjects\nshared/bob/INBOX\n"
	    "Sent\n"));
	test_assert(maildir_subs_set(md, &wp, 1, false, &err) == 0);
	test_assert(file_is(md, MAILDIR_SUBS_DOVECOT,
	    "V\t2\n\nINBOX\nWork\nshared/bob/INBOX\nSent\n"));
	/* no Courier file appears, nothing is left in tmp/ */
	test_assert(read_file(md, MAILDIR_SUBS_COURIER) == NULL);
	test_assert(tmp_entries(md) == 0);
	test_end();
	free(md);
}

static void
test_dovecot1_file(void)
{
	char *md = new_maildir("dovecot1");
	const char *err, *two[] = { "Sent", "Sent" };
	struct seen s;
	struct stat st1, st2;
	char *path = xasprintf("%s/%s", md, MAILDIR_SUBS_DOVECOT);

	test_begin("Dovecot version 1: kept version 1, a no-op not written");
	write_file(md, MAILDIR_SUBS_DOVECOT, "INBOX\nWork.Projects");
	test_assert_streq(read_all(md, &s), "INBOX;Work.Projects;");
	test_assert(maildir_subs_set(md, two, 2, true, &err) == 0);
	test_assert(file_is(md, MAILDIR_SUBS_DOVECOT,
	    "INBOX\nWork.Projects\nSent\n"));
	test_assert(stat(path, &st1) == 0);
	test_assert(maildir_subs_set(md, two, 1, true, &err) == 0);
	test_assert(maildir_subs_set(md, (const char *[]){ "Gone" }, 1,
	    false, &err) == 0);
	test_assert(stat(path, &st2) == 0);
	test_assert(st1.st_ino == st2.st_ino);	/* not rewritten */
	test_end();
	free(path);
	free(md);
}

static void
test_courier_file(void)
{
	char *md = new_maildir("courier");
	const char *err, *work = "Work", *sent = "Sent", *inbox = "INBOX";
	struct seen s;
	struct stat st;
	char *path = xasprintf("%s/%s", md, MAILDIR_SUBS_COURIER);

	test_begin("Courier: read, changed in its format, mode kept");
	write_file(md, MAILDIR_SUBS_COURIER,
	    "INBOX\nINBOX.Sent\nshared.bob.Work\nINBOX.Work.Projects\n");
	test_assert(chmod(path, 0640) == 0);
	test_assert_streq(read_all(md, &s), "INBOX;Sent;Work.Projects;");
	test_assert(maildir_subs_set(md, &work, 1, true, &err) == 0);
	test_assert(maildir_subs_set(md, &sent, 1, false, &err) == 0);
	test_assert(maildir_subs_set(md, &inbox, 1, false, &err) == 0);
	test_assert(file_is(md, MAILDIR_SUBS_COURIER,
	    "shared.bob.Work\nINBOX.Work.Projects\nINBOX.Work\n"));
	test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
	test_assert(read_file(md, MAILDIR_SUBS_DOVECOT) == NULL);
	test_end();
	free(path);
	free(md);
}

static void
test_both_files(void)
{
	char *md = new_maildir("both");
	const char *err, *work = "Work", *sent = "Sent";
	struct seen s;

	test_begin("both files: the union read, both kept current");
	write_file(md, MAILDIR_SUBS_DOVECOT, "V\t2\n\nINBOX\nWork\n");
	write_file(md, MAILDIR_SUBS_COURIER, "INBOX\nINBOX.Sent\n");
	test_assert_streq(read_all(md, &s), "INBOX;Work;INBOX;Sent;");
	test_assert(maildir_subs_set(md, &work, 1, false, &err) == 0);
	test_assert(maildir_subs_set(md, &sent, 1, true, &err) == 0);
	test_assert(file_is(md, MAILDIR_SUBS_DOVECOT,
	    "V\t2\n\nINBOX\nSent\n"));
	test_assert(file_is(md, MAILDIR_SUBS_COURIER, "INBOX\nINBOX.Sent\n"));
	test_end();
	free(md);
}

static void
test_none_and_refusals(void)
{
	char *md = new_maildir("none");
	const char *err, *bad = "../x", *inbox = "INBOX", *gone = "Gone";
	char *big, *link;
	struct seen s;

	test_begin("no file: made on a subscribe only; refusals");
	test_assert(!maildir_subs_exist(md));
	test_assert_streq(read_all(md, &s), "");
	test_assert(maildir_subs_set(md, &gone, 1, false, &err) == 0);
	test_assert(!maildir_subs_exist(md));
	test_assert(maildir_subs_set(md, &bad, 1, true, &err) < 0);
	test_assert(!maildir_subs_exist(md));
	test_assert(maildir_subs_set(md, &inbox, 1, true, &err) == 0);
	test_assert(file_is(md, MAILDIR_SUBS_DOVECOT, "INBOX\n"));
	/* a symbolic link is not followed, read or replaced */
	link = xasprintf("%s/%s", md, MAILDIR_SUBS_COURIER);
	test_assert(symlink("/etc/passwd", link) == 0);
	test_assert(read_all(md, &s) == NULL);
	test_assert(maildir_subs_set(md, &inbox, 1, false, &err) < 0);
	unlink(link);
	/* one larger than the bound is refused, not read */
	big = xmalloc(MAILDIR_SUBS_READ_MAX + 2);
	memset(big, 'a', MAILDIR_SUBS_READ_MAX + 1);
	write_file(md, MAILDIR_SUBS_COURIER, big);
	test_assert(read_all(md, &s) == NULL);
	test_end();
	free(big);
	free(link);
	free(md);
}

int
main(void)
{
	test_lines();
	test_dovecot2_file();
	test_dovecot1_file();
	test_courier_file();
	test_both_files();
	test_none_and_refusals();
	return test_done();
}
