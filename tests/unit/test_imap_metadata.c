/*
 * test_imap_metadata.c: unit tests for lib/imap/metadata.c -- RFC 5464
 * entry names (section 3.2), DEPTH matching, and the text form of a
 * user's annotations: every octet of a value kept, damaged lines
 * skipped, the store's set, removal, copy and drop by owner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/limits.h"
#include "lib/base/str.h"
#include "lib/imap/metadata.h"
#include "tests/unit/test.h"

static bool
valid(const char *name, bool prefix_ok, const char *want)
{
	str_t c = STR_INIT;
	bool ok = md_entry_valid(name, strlen(name), IMAP_METADATA_NAME_MAX,
	    prefix_ok, &c);

	if (ok && want != NULL && strcmp(str_c(&c), want) != 0)
		ok = false;
	str_free(&c);
	return ok;
}

static void
test_names(void)
{
	char longname[IMAP_METADATA_NAME_MAX + 2];

	test_begin("md_entry_valid");
	test_assert(valid("/private/comment", false, "/private/comment"));
	test_assert(valid("/Shared/Comment", false, "/shared/comment"));
	test_assert(valid("/shared/vendor/x/y", false, NULL));
	test_assert(!valid("/private", false, NULL));
	test_assert(valid("/private", true, "/private"));
	test_assert(valid("/SHARED", true, "/shared"));
	test_assert(!valid("/privatex/a", true, NULL));
	test_assert(!valid("/other/a", true, NULL));
	test_assert(!valid("private/a", true, NULL));
	test_assert(!valid("", true, NULL));
	test_assert(!valid("/", true, NULL));
	test_assert(!valid("/private/", true, NULL));
	test_assert(!valid("/private//a", true, NULL));
	test_assert(!valid("/private/a*", true, NULL));
	test_assert(!valid("/private/%", true, NULL));
	test_assert(!valid("/private/a\tb", true, NULL));
	test_assert(!valid("/private/a\x7f", true, NULL));
	test_assert(!valid("/private/caf\xc3\xa9", true, NULL));
	test_assert(!md_entry_valid("/private/a\0b", 11, 100, false, NULL));
	memset(longname, 'a', sizeof(longname) - 1);
	memcpy(longname, "/private/", 9);
	longname[sizeof(longname) - 1] = '\0';
	test_assert(!valid(longname, false, NULL));
	longname[sizeof(longname) - 2] = '\0';
	test_assert(valid(longname, false, NULL));
	test_end();

	test_begin("md_entry_under");
	test_assert(md_entry_under("/a/b", "/a/b", 0));
	test_assert(!md_entry_under("/a/b/c", "/a/b", 0));
	test_assert(md_entry_under("/a/b/c", "/a/b", 1));
	test_assert(!md_entry_under("/a/b/c/d", "/a/b", 1));
	test_assert(md_entry_under("/a/b/c/d", "/a/b", SIZE_MAX));
	test_assert(!md_entry_under("/a/bc", "/a/b", SIZE_MAX));
	test_assert(!md_entry_under("/a", "/a/b", SIZE_MAX));
	test_end();
}

static void
test_store(void)
{
	struct md_store st = { 0 }, back = { 0 };
	char all[256];
	str_t text = STR_INIT;
	size_t skipped = 9, n, bytes;
	struct md_entry *e;

	test_begin("md_set, md_format, md_parse");
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (char)i;
	md_set(&st, MD_SERVER, "/shared/comment", "hello", 5);
	md_set(&st, "Fabc", "/private/bin", all, sizeof(all));
	md_set(&st, "Fabc", "/private/empty", "", 0);
	md_set(&st, "Fabc", "/private/pct", "100%", 4);
	md_set(&st, "Fabc", "/private/pct", "50%", 3);	/* replaced */
	md_set(&st, "Fabc", "/private/gone", "x", 1);
	md_set(&st, "Fabc", "/private/gone", NULL, 0);
	md_set(&st, "Fabc", "/private/never", NULL, 0);
	test_assert(st.n == 4);
	md_usage(&st, &n, &bytes);
	test_assert(n == 4 && bytes == 5 + 256 + 0 + 3);
	md_sort(&st);
	test_assert(strcmp(st.v[0].owner, "-") == 0);
	md_format(&st, &text);
	test_assert(strncmp(str_c(&text), "petrel-metadata 1\n", 18) == 0);
	test_assert(memchr(text.data, '\0', text.len) == NULL);
	md_parse(&back, text.data, text.len, &skipped);
	test_assert(skipped == 0 && back.n == 4);
	e = md_find(&back, "Fabc", "/private/bin");
	test_assert(e != NULL && e->value_len == 256 &&
	    memcmp(e->value, all, 256) == 0);
	e = md_find(&back, "Fabc", "/private/pct");
	test_assert(e != NULL && strcmp(e->value, "50%") == 0);
	e = md_find(&back, "Fabc", "/private/empty");
	test_assert(e != NULL && e->value_len == 0);
	test_assert(md_find(&back, "-", "/private/bin") == NULL);
	test_end();

	test_begin("md_copy_owner, md_drop_owner");
	md_copy_owner(&back, "Fabc", "Fdef");
	test_assert(back.n == 7);
	e = md_find(&back, "Fdef", "/private/bin");
	test_assert(e != NULL && e->value_len == 256 &&
	    memcmp(e->value, all, 256) == 0);
	test_assert(md_drop_owner(&back, "Fabc") == 3);
	test_assert(back.n == 4 && md_find(&back, "Fabc", "/private/bin") ==
	    NULL);
	test_assert(md_drop_owner(&back, "Fnone") == 0);
	test_end();

	test_begin("md_parse damaged");
	md_free(&back);
	{
		static const char bad[] =
		    "petrel-metadata 1\n"
		    "-\t/private/ok\ta%0Ab\n"
		    "-\t/private/BIG\tnot canonical\n"
		    "-\t/private/pct\t%4\n"
		    "-\t/private/hex\t%zz\n"
		    "-\t/private/ctl\ta\rb\n"
		    "F!\t/private/owner\tx\n"
		    "\t/private/noowner\tx\n"
		    "-\t/private/x*\tx\n"
		    "no tabs\n"
		    "\n"
		    "-\t/private/cut\tno newline";

		md_parse(&back, bad, sizeof(bad) - 1, &skipped);
		test_assert(back.n == 1 && skipped == 9);
		test_assert(back.n == 1 && strcmp(back.v[0].value, "a\nb") == 0);
	}
	md_free(&back);
	md_parse(&back, "garbage", 7, &skipped);
	test_assert(back.n == 0 && skipped == 2);
	md_parse(&back, "", 0, &skipped);
	test_assert(back.n == 0 && skipped == 0);
	test_end();

	str_free(&text);
	md_free(&st);
	md_free(&back);
}

int
main(void)
{
	test_names();
	test_store();
	return test_done();
}
