/* Unit tests for lib/smtp/parse.c. */
#include <stdlib.h>
#include <string.h>

#include "lib/smtp/parse.h"
#include "test.h"

struct out {
	char buf[256];
	size_t len;
};

static void
sink(void *ctx, const char *p, size_t n)
{
	struct out *o = ctx;

	if (o->len + n < sizeof(o->buf)) {
		memcpy(o->buf + o->len, p, n);
		o->len += n;
		o->buf[o->len] = '\0';
	}
}

static void
test_verbs(void)
{
	const char *arg;

	test_begin("smtp verbs");
	test_assert(smtp_verb("ehlo  client.test", &arg) == SMTP_EHLO);
	test_assert_streq(arg, "client.test");
	test_assert(smtp_verb("MAIL FROM:<a@b>", &arg) == SMTP_MAIL);
	test_assert_streq(arg, "FROM:<a@b>");
	test_assert(smtp_verb("StartTLS", &arg) == SMTP_STARTTLS);
	test_assert(smtp_verb("DATAX", &arg) == SMTP_UNKNOWN);
	test_assert(smtp_verb("", &arg) == SMTP_UNKNOWN);
	test_assert(smtp_verb("GET / HTTP/1.0", &arg) == SMTP_HTTP);
	test_assert(smtp_verb("lhlo mta.example", &arg) == SMTP_LHLO);
	test_assert_streq(arg, "mta.example");
	test_assert(smtp_verb("GET", &arg) == SMTP_UNKNOWN);
	test_end();
}

static void
test_paths(void)
{
	const char *rest;
	char *a;

	test_begin("smtp paths");
	a = smtp_parse_path(" <a@b.test> SIZE=1", &rest);
	test_assert_streq(a, "a@b.test");
	test_assert_streq(rest, " SIZE=1");
	free(a);
	a = smtp_parse_path("<>", &rest);
	test_assert_streq(a, "");
	free(a);
	a = smtp_parse_path("<@r1,@r2:u@d.test>", &rest);
	test_assert_streq(a, "u@d.test");
	free(a);
	test_assert(smtp_parse_path("a@b.test", &rest) == NULL);
	test_assert(smtp_parse_path("<a@b.test", &rest) == NULL);
	test_assert(smtp_parse_path("<@r1>", &rest) == NULL);
	test_end();
}

static void
test_paths_loose(void)
{
	const char *rest;
	char *a;

	test_begin("smtp paths without angle brackets");
	a = smtp_parse_path_loose(" a@b.test SIZE=1", &rest);
	test_assert_streq(a, "a@b.test");
	test_assert_streq(rest, " SIZE=1");
	free(a);
	a = smtp_parse_path_loose("a@b.test", &rest);
	test_assert_streq(a, "a@b.test");
	test_assert_streq(rest, "");
	free(a);
	a = smtp_parse_path_loose(" <c@d.test> BODY=8BITMIME", &rest);
	test_assert_streq(a, "c@d.test");
	test_assert_streq(rest, " BODY=8BITMIME");
	free(a);
	a = smtp_parse_path_loose("<>", &rest);
	test_assert_streq(a, "");
	free(a);
	test_assert(smtp_parse_path_loose("", &rest) == NULL);
	test_assert(smtp_parse_path_loose("   ", &rest) == NULL);
	test_assert(smtp_parse_path_loose("a@b.test>", &rest) == NULL);
	test_assert(smtp_parse_path_loose("x<a@b.test>", &rest) == NULL);
	test_assert(smtp_parse_path_loose("<a@b.test", &rest) == NULL);
	test_end();
}

static void
test_params(void)
{
	struct smtp_mail_params p;

	test_begin("smtp MAIL parameters");
	test_assert(smtp_mail_params(" SIZE=100 BODY=8BITMIME SMTPUTF8", 1000, false,
	    &p) == NULL);
	test_assert(p.size == 100 && p.smtputf8);
	test_assert(smtp_mail_params("", 1000, false, &p) == NULL && p.size == 0 &&
	    !p.smtputf8);
	test_assert(strncmp(smtp_mail_params(" SIZE=1001", 1000, false, &p), "552",
	    3) == 0);
	test_assert(strncmp(smtp_mail_params(" SIZE=-1", 1000, false, &p), "501",
	    3) == 0);
	test_assert(strncmp(smtp_mail_params(" SIZE=99999999999999999999999",
	    1000, false, &p), "501", 3) == 0);
	test_assert(strncmp(smtp_mail_params(" BODY=9BIT", 1000, false, &p), "501",
	    3) == 0);
	test_assert(strncmp(smtp_mail_params(" SMTPUTF8=yes", 1000, false, &p),
	    "555", 3) == 0);
	test_assert(smtp_mail_params(" AUTH=<> RET=HDRS ENVID=x", 1000, false,
	    &p) == NULL);
	/* REQUIRETLS (RFC 8689): only under TLS, and without a value */
	test_assert(smtp_mail_params(" REQUIRETLS", 1000, true, &p) == NULL &&
	    p.requiretls);
	test_assert(strncmp(smtp_mail_params(" REQUIRETLS", 1000, false, &p),
	    "555", 3) == 0);
	test_assert(strncmp(smtp_mail_params(" REQUIRETLS=yes", 1000, true,
	    &p), "555", 3) == 0);
	test_assert(smtp_mail_params(" SIZE=5", 1000, true, &p) == NULL &&
	    !p.requiretls);
	test_end();
}

static void
test_bdat(void)
{
	uint64_t n;
	bool last;

	test_begin("smtp BDAT arguments");
	test_assert(smtp_parse_bdat("10", &n, &last) == 0 && n == 10 && !last);
	test_assert(smtp_parse_bdat("0  last", &n, &last) == 0 && n == 0 &&
	    last);
	test_assert(smtp_parse_bdat("-1", &n, &last) < 0);
	test_assert(smtp_parse_bdat("10 MORE", &n, &last) < 0);
	test_assert(smtp_parse_bdat("10x", &n, &last) < 0);
	test_assert(smtp_parse_bdat("", &n, &last) < 0);
	test_assert(smtp_parse_bdat("99999999999999999999999", &n, &last) < 0);
	test_end();
}

/* Feed s line by line; return the offset after the end of DATA or 0. */
static size_t
data(const char *s, struct out *o)
{
	struct smtp_dot d;
	size_t off = 0, len = strlen(s);

	smtp_dot_init(&d);
	o->len = 0;
	o->buf[0] = '\0';
	while (off < len) {
		const char *lf = memchr(s + off, '\n', len - off);
		size_t n = lf ? (size_t)(lf - (s + off)) + 1 : len - off;

		if (lf == NULL) {
			smtp_dot_partial(&d, s + off, n, sink, o);
			break;
		}
		if (smtp_dot_line(&d, s + off, n, sink, o))
			return off + n;
		off += n;
	}
	return 0;
}

static void
test_data(void)
{
	struct out o;

	test_begin("smtp DATA end and dot-unstuffing");
	test_assert(data(".\r\n", &o) == 3 && o.len == 0);
	test_assert(data("a\r\n..b\r\n.\r\nrest", &o) == 11);
	test_assert_streq(o.buf, "a\n.b\n");
	/* smuggling: a dot line after a bare LF or CR is content */
	test_assert(data("a\n.\r\nb\r\n", &o) == 0);
	test_assert_streq(o.buf, "a\n.\nb\n");
	test_assert(data("a\n..x\n.\n", &o) == 0);
	test_assert_streq(o.buf, "a\n..x\n.\n");
	test_assert(data("a\r.\r\n..\r\n.\r\n", &o) == 12);
	test_assert_streq(o.buf, "a\r.\n.\n");
	/* CR CR LF: the CRLF is real, so is the end */
	test_assert(data("a\r\r\n.\r\n", &o) == 7);
	test_assert_streq(o.buf, "a\r\n");
	test_assert(data("a\r\n.\n", &o) == 0);
	test_assert(data("a\r\n.\r\r\n", &o) == 0);
	test_assert(data("a\n\r\n.\r\n", &o) == 7);
	test_assert_streq(o.buf, "a\n\n");
	test_end();
}

static void
test_bdat_bytes(void)
{
	struct out o = { .len = 0 };
	bool cr = false;

	test_begin("smtp BDAT CRLF to LF across chunks");
	smtp_bdat_bytes(&cr, "a\r", 2, sink, &o);
	smtp_bdat_bytes(&cr, "\nb\r", 3, sink, &o);
	smtp_bdat_bytes(&cr, "c\r\r\n", 4, sink, &o);
	smtp_bdat_bytes(&cr, "d\r", 2, sink, &o);
	smtp_bdat_end(&cr, sink, &o);
	test_assert_streq(o.buf, "a\nb\rc\r\nd\r");
	test_assert(!cr);
	test_end();
}

int
main(void)
{
	test_verbs();
	test_paths();
	test_paths_loose();
	test_params();
	test_bdat();
	test_data();
	test_bdat_bytes();
	return test_done();
}
