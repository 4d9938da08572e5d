/* Unit tests for lib/trust/canon.c (RFC 6376 3.4 canonicalization) and
 * lib/trust/tags.c (RFC 6376 3.2 tag lists), the pieces of ARC
 * (lib/trust/arc.c) that need no DNS. The expected canonical forms were
 * made apart from this code by dkimpy (python3-dkim's
 * dkim.canonicalization Relaxed and Simple), from CRLF input; the same
 * input with LF line ends must give the same octets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/trust/canon.h"
#include "lib/trust/tags.h"
#include "test.h"

static void
collect(void *ctx, const char *data, size_t len)
{
	str_append_n(ctx, data, len);
}

/* Canonicalize in, fed one octet at a time and whole, with CRLF and
 * with LF line ends: all four must equal want. */
static bool
body_is(bool relaxed, const char *in, const char *want)
{
	str_t lf = STR_INIT;
	bool ok = true;

	for (const char *p = in; *p != '\0'; p++)
		if (!(p[0] == '\r' && p[1] == '\n'))
			str_append_c(&lf, *p);
	for (int form = 0; form < 2; form++) {
		const char *text = form == 0 ? in : str_c(&lf);

		for (int step = 0; step < 2; step++) {
			struct canon_body cb;
			str_t out = STR_INIT;
			size_t n = strlen(text);

			canon_body_init(&cb, relaxed, collect, &out);
			if (step == 0) {
				canon_body_feed(&cb, text, n);
			} else {
				for (size_t i = 0; i < n; i++)
					canon_body_feed(&cb, text + i, 1);
			}
			canon_body_end(&cb);
			if (out.len != strlen(want) ||
			    memcmp(str_c(&out), want, out.len) != 0) {
				fprintf(stderr, "%s body of [%s] (%s, %s): [%s]\n",
				    relaxed ? "relaxed" : "simple", in,
				    form ? "LF" : "CRLF", step ? "octets" :
				    "whole", str_c(&out));
				ok = false;
			}
			str_free(&out);
		}
	}
	str_free(&lf);
	return ok;
}

static void
test_body(void)
{
	test_begin("canon: bodies (answers from dkimpy)");
	test_assert(body_is(true, "", ""));
	test_assert(body_is(false, "", "\r\n"));
	test_assert(body_is(true, "\r\n", ""));
	test_assert(body_is(false, "\r\n", "\r\n"));
	test_assert(body_is(true, "a  b \t c  \r\n\r\n\r\n", "a b c\r\n"));
	test_assert(body_is(false, "a  b \t c  \r\n\r\n\r\n",
	    "a  b \t c  \r\n"));
	test_assert(body_is(true, " lead\r\n\t\r\nx\r\n \r\n",
	    " lead\r\n\r\nx\r\n"));
	test_assert(body_is(false, " lead\r\n\t\r\nx\r\n \r\n",
	    " lead\r\n\t\r\nx\r\n \r\n"));
	test_assert(body_is(true, "no end", "no end\r\n"));
	test_assert(body_is(false, "no end", "no end\r\n"));
	test_assert(body_is(true, "x\r\n\r\ny \r\n", "x\r\n\r\ny\r\n"));
	test_assert(body_is(false, "x\r\n\r\ny \r\n", "x\r\n\r\ny \r\n"));
	test_end();
}

static bool
header_is(bool relaxed, const char *field, bool crlf, const char *want)
{
	str_t out = STR_INIT;
	bool ok;

	canon_header(&out, relaxed, field, strlen(field), crlf);
	ok = strcmp(str_c(&out), want) == 0;
	if (!ok)
		fprintf(stderr, "header [%s]: [%s]\n", field, str_c(&out));
	str_free(&out);
	return ok;
}

static void
test_header(void)
{
	test_begin("canon: header fields (answers from dkimpy)");
	test_assert(header_is(true, "SubJect :  a  \r\n\t b\tc  \r\n", true,
	    "subject:a b c\r\n"));
	test_assert(header_is(true, "SubJect :  a  \n\t b\tc  \n", true,
	    "subject:a b c\r\n"));
	test_assert(header_is(true, "From: <x@y>\n", false, "from:<x@y>"));
	test_assert(header_is(true, "X-Empty:\n", true, "x-empty:\r\n"));
	/* simple: as it is, LF made CRLF */
	test_assert(header_is(false, "SubJect :  a \n\tb\n", true,
	    "SubJect :  a \r\n\tb\r\n"));
	test_assert(header_is(false, "From: x\r\n", false, "From: x"));
	test_end();
}

static bool
val_is(const struct tag_list *tl, const char *name, const char *want)
{
	const struct tag *t = tags_get(tl, name);

	return t != NULL && t->vlen == strlen(want) &&
	    memcmp(t->value, want, t->vlen) == 0;
}

static void
test_tags(void)
{
	struct tag_list tl;
	const char *sig = " i=1; a=rsa-sha256;\n\td=example.org; s=sel;\n\t"
	    "h=from : to;\n\tbh=AB\n\t CD=; b=QUJD\n\t REVG ;";
	char *sq;

	test_begin("tags: RFC 6376 3.2 lists");
	test_assert(tags_parse(sig, strlen(sig), &tl) == 0);
	test_assert(tl.n == 7);
	test_assert(val_is(&tl, "i", "1"));
	test_assert(val_is(&tl, "d", "example.org"));
	test_assert(val_is(&tl, "h", "from : to"));
	test_assert(val_is(&tl, "b", "QUJD\n\t REVG"));
	sq = tag_squeeze(tags_get(&tl, "bh"));
	test_assert_streq(sq, "ABCD=");
	free(sq);
	test_assert(tags_get(&tl, "x") == NULL);
	test_assert(tags_get(&tl, "I") == NULL);	/* names: case counts */
	test_assert(tags_parse("", 0, &tl) == 0 && tl.n == 0);
	test_assert(tags_parse("v=DKIM1; p=", 11, &tl) == 0 && tl.n == 2);
	test_assert(val_is(&tl, "p", ""));
	/* refused: no '=', an empty spec inside, a bad name, a duplicate */
	test_assert(tags_parse("a=1; b", 6, &tl) < 0);
	test_assert(tags_parse("a=1;; b=2", 9, &tl) < 0);
	test_assert(tags_parse("1a=1", 4, &tl) < 0);
	test_assert(tags_parse("a-b=1", 5, &tl) < 0);
	test_assert(tags_parse("a=1; a=2", 8, &tl) < 0);
	test_assert(tags_parse("\x01\x02;;;=;==;v=;d=;s=", 19, &tl) < 0);
	{
		/* more than TAGS_MAX tags */
		str_t many = STR_INIT;

		for (int i = 0; i <= TAGS_MAX; i++)
			str_printf(&many, "t%d=%d;", i, i);
		test_assert(tags_parse(many.data, many.len, &tl) < 0);
		str_free(&many);
	}
	test_end();
}

int
main(void)
{
	test_body();
	test_header();
	test_tags();
	return test_done();
}
