/* Unit tests for lib/smtp/reply.c. */
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/smtp/reply.h"
#include "test.h"

/* Parse s whole: the result, and *used / *r on success. */
static int
parse(const char *s, struct smtp_reply *r, size_t *used, const char **err)
{
	*used = 0;
	*err = NULL;
	return smtp_reply_parse(s, strlen(s), r, used, err);
}

static void
test_single(void)
{
	struct smtp_reply r;
	const char *err;
	size_t used;

	test_begin("smtp reply: one line");
	test_assert(parse("250 2.1.0 Ok\r\n", &r, &used, &err) == 1);
	test_assert(r.code == 250);
	test_assert(r.nlines == 1);
	test_assert(used == 14);
	test_assert_streq(r.text, "250 2.1.0 Ok");
	test_assert_streq(r.enhanced, "2.1.0");
	smtp_reply_clear(&r);

	/* a bare code is a whole reply (RFC 5321 4.2: text is optional) */
	test_assert(parse("354\r\nrest", &r, &used, &err) == 1);
	test_assert(r.code == 354 && used == 5);
	test_assert_streq(r.text, "354");
	test_assert_streq(r.enhanced, "");
	smtp_reply_clear(&r);

	/* LF alone ends a line too (as the reader always accepted) */
	test_assert(parse("221 bye\n", &r, &used, &err) == 1);
	test_assert(r.code == 221 && used == 8);
	test_assert_streq(r.text, "221 bye");
	smtp_reply_clear(&r);

	/* an empty text after the space */
	test_assert(parse("220 \r\n", &r, &used, &err) == 1);
	test_assert_streq(r.text, "220 ");
	smtp_reply_clear(&r);
	test_end();
}

static void
test_multi(void)
{
	struct smtp_reply r;
	const char *err;
	size_t used;
	const char *ehlo = "250-mx.test hello\r\n250-SIZE 1000\r\n"
	    "250-pipelining\r\n250-STARTTLSX\r\n250 8BITMIME\r\n250 next\r\n";

	test_begin("smtp reply: several lines");
	test_assert(parse(ehlo, &r, &used, &err) == 1);
	test_assert(r.code == 250 && r.nlines == 5);
	test_assert(used == strlen(ehlo) - strlen("250 next\r\n"));
	test_assert_streq(r.text, "250-mx.test hello 250-SIZE 1000 "
	    "250-pipelining 250-STARTTLSX 250 8BITMIME");
	test_assert(r.line_len[1] == 13);
	test_assert(memcmp(r.text + r.line_off[1], "250-SIZE 1000", 13) == 0);
	test_assert(smtp_reply_ehlo_has(&r, "PIPELINING"));
	test_assert(smtp_reply_ehlo_has(&r, "SIZE"));
	test_assert(smtp_reply_ehlo_has(&r, "8bitmime"));
	/* a keyword is whole, and the first line is the greeting */
	test_assert(!smtp_reply_ehlo_has(&r, "STARTTLS"));
	test_assert(!smtp_reply_ehlo_has(&r, "SIZ"));
	test_assert(!smtp_reply_ehlo_has(&r, "mx.test"));
	/* no enhanced code: "mx.test" is not one */
	test_assert_streq(r.enhanced, "");
	smtp_reply_clear(&r);

	test_assert(parse("550-5.1.1 no such user\r\n550 5.1.1 really\r\n",
	    &r, &used, &err) == 1);
	test_assert(r.code == 550 && r.nlines == 2);
	test_assert_streq(r.enhanced, "5.1.1");
	smtp_reply_clear(&r);

	/* "250-" with nothing after the dash is a continuation */
	test_assert(parse("250-\r\n250\r\n", &r, &used, &err) == 1);
	test_assert(r.nlines == 2);
	test_assert_streq(r.text, "250- 250");
	smtp_reply_clear(&r);
	test_end();
}

static void
test_enhanced(void)
{
	struct smtp_reply r;
	const char *err;
	size_t used;

	test_begin("smtp reply: enhanced status codes are optional");
	test_assert(parse("451 4.7.1 try later\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "4.7.1");
	smtp_reply_clear(&r);
	test_assert(parse("250 2.0.0\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "2.0.0");
	smtp_reply_clear(&r);
	test_assert(parse("554 5.123.456 x\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "5.123.456");
	smtp_reply_clear(&r);
	/* not one: another class, too many digits, no space after */
	test_assert(parse("250 5.0.0 odd\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "");
	smtp_reply_clear(&r);
	test_assert(parse("250 2.1234.0 x\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "");
	smtp_reply_clear(&r);
	test_assert(parse("250 2.0.0x\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "");
	smtp_reply_clear(&r);
	test_assert(parse("250 2.0. x\r\n", &r, &used, &err) == 1);
	test_assert_streq(r.enhanced, "");
	smtp_reply_clear(&r);
	test_end();
}

static void
test_incomplete(void)
{
	struct smtp_reply r;
	const char *err;
	size_t used;

	test_begin("smtp reply: incomplete input asks for more");
	test_assert(parse("", &r, &used, &err) == 0);
	test_assert(parse("25", &r, &used, &err) == 0);
	test_assert(parse("250 ok", &r, &used, &err) == 0);
	test_assert(parse("250 ok\r", &r, &used, &err) == 0);
	test_assert(parse("250-a\r\n", &r, &used, &err) == 0);
	test_assert(parse("250-a\r\n250 b", &r, &used, &err) == 0);
	/* what is known bad is bad at once, even before the end */
	test_assert(parse("250-a\r\nxyz\r\n250 b", &r, &used, &err) == -1);
	test_end();
}

static void
test_malformed(void)
{
	static const char *const bad[] = {
		"\r\n",			/* empty line */
		"25\r\n",		/* short code */
		"2500 ok\r\n",		/* four digits */
		"25a ok\r\n",
		" 250 ok\r\n",
		"+OK\r\n",
		"150 ok\r\n",		/* no 1yz replies in SMTP */
		"650 ok\r\n",
		"260 ok\r\n",		/* second digit 0-5 */
		"250_ok\r\n",		/* neither ' ' nor '-' */
		"250-a\r\n251 b\r\n",	/* code changes */
		"250-a\r\n550 b\r\n",
		"250 a\0b\r\n",		/* NUL (length below includes it) */
		"250 a\rb\r\n",		/* bare CR */
		"250 a\r\r\n",
	};
	struct smtp_reply r;
	const char *err;
	size_t used;

	test_begin("smtp reply: malformed replies are refused");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = strlen(bad[i]);

		if (i == 12)
			len = 9;
		err = NULL;
		test_assert(smtp_reply_parse(bad[i], len, &r, &used, &err) ==
		    -1);
		test_assert(err != NULL && err[0] != '\0');
	}
	test_end();
}

static void
test_bounds(void)
{
	struct smtp_reply r;
	const char *err;
	size_t used;
	str_t s = STR_INIT;

	test_begin("smtp reply: line and reply length bounds");
	/* a line of exactly SMTP_LINE_MAX octets is fine, one more is not */
	str_append(&s, "250 ");
	while (s.len < SMTP_LINE_MAX)
		str_append_c(&s, 'x');
	str_append(&s, "\r\n");
	test_assert(smtp_reply_parse(s.data, s.len, &r, &used, &err) == 1);
	test_assert(r.line_len[0] == SMTP_LINE_MAX);
	smtp_reply_clear(&r);
	str_truncate(&s, SMTP_LINE_MAX);
	str_append(&s, "y\r\n");
	test_assert(smtp_reply_parse(s.data, s.len, &r, &used, &err) == -1);
	/* ... and refused before its end arrives */
	test_assert(smtp_reply_parse(s.data, SMTP_LINE_MAX + 1, &r, &used,
	    &err) == 0);
	test_assert(smtp_reply_parse(s.data, SMTP_LINE_MAX + 2, &r, &used,
	    &err) == -1);

	/* SMTP_REPLY_LINES_MAX lines are fine, one more is not */
	str_truncate(&s, 0);
	for (int i = 1; i < SMTP_REPLY_LINES_MAX; i++)
		str_append(&s, "250-line\r\n");
	str_append(&s, "250 last\r\n");
	test_assert(smtp_reply_parse(s.data, s.len, &r, &used, &err) == 1);
	test_assert(r.nlines == SMTP_REPLY_LINES_MAX && used == s.len);
	smtp_reply_clear(&r);
	str_truncate(&s, s.len - strlen("250 last\r\n"));
	str_append(&s, "250-more\r\n");
	test_assert(smtp_reply_parse(s.data, s.len, &r, &used, &err) == -1);
	/* the longest reply fits SMTP_REPLY_MAX */
	test_assert((size_t)SMTP_REPLY_LINES_MAX * (SMTP_LINE_MAX + 2) <=
	    SMTP_REPLY_MAX);
	str_free(&s);
	test_end();
}

static void
test_split(void)
{
	const char *in = "220 greeting\r\n250-a\r\n250-PIPELINING\n"
	    "250 b\r\n354 go ahead\r\n";
	size_t len = strlen(in);

	test_begin("smtp reply: the same replies however the bytes arrive");
	for (size_t piece = 1; piece <= len; piece++) {
		size_t have = 0, off = 0;
		int nrep = 0;

		while (off < len) {
			struct smtp_reply r;
			const char *err;
			size_t used;
			int n;

			n = smtp_reply_parse(in + off, have - off, &r, &used,
			    &err);
			if (n == 0) {
				test_assert(have < len);
				if (have == len)
					break;
				have = have + piece < len ? have + piece : len;
				continue;
			}
			test_assert(n == 1);
			if (n != 1)
				break;
			nrep++;
			if (nrep == 1)
				test_assert(r.code == 220);
			if (nrep == 2)
				test_assert(r.code == 250 && r.nlines == 3 &&
				    smtp_reply_ehlo_has(&r, "pipelining"));
			if (nrep == 3)
				test_assert_streq(r.text, "354 go ahead");
			off += used;
			smtp_reply_clear(&r);
		}
		test_assert(nrep == 3);
	}
	test_end();
}

int
main(void)
{
	test_single();
	test_multi();
	test_enhanced();
	test_incomplete();
	test_malformed();
	test_bounds();
	test_split();
	return test_done();
}
