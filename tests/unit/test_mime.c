/*
 * test_mime.c: unit tests for lib/mime -- the part tree, ENVELOPE,
 * BODY/BODYSTRUCTURE, section numbers, header fields, RFC 2047/2231,
 * dates, SEARCH, and hostile input that must neither crash nor stall.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/mime/mime.h"
#include "tests/unit/test.h"

static struct mime_part *
parse(const char *msg)
{
	return mime_parse(msg, strlen(msg));
}

static char *
bodystructure(const char *msg, bool extended)
{
	struct mime_part *root = parse(msg);
	str_t s = STR_INIT;

	mime_bodystructure(msg, root, extended, &s);
	mime_free(root);
	return str_steal(&s);
}

static char *
envelope(const char *msg)
{
	struct mime_part *root = parse(msg);
	str_t s = STR_INIT;

	mime_envelope(msg, root, &s);
	mime_free(root);
	return str_steal(&s);
}

/* "2.1" -> mime_part_find; "" is the root. */
static const struct mime_part *
find(const struct mime_part *root, const char *path)
{
	uint32_t nums[16];
	size_t n = 0;
	char *end;

	while (*path != '\0' && n < 16) {
		nums[n++] = (uint32_t)strtoul(path, &end, 10);
		path = *end == '.' ? end + 1 : end;
	}
	return mime_part_find(root, nums, n);
}

static bool
body_is(const char *msg, const struct mime_part *part, const char *want)
{
	return part != NULL && part->body_len == strlen(want) &&
	    memcmp(msg + part->body_off, want, part->body_len) == 0;
}

static bool
header_is(const char *msg, const struct mime_part *part, const char *want)
{
	return part != NULL && part->hdr_len == strlen(want) &&
	    memcmp(msg + part->hdr_off, want, part->hdr_len) == 0;
}

static char *
decode(const char *v)
{
	str_t s = STR_INIT;

	mime_decode_header(v, strlen(v), &s);
	return str_steal(&s);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_crlf(void)
{
	str_t s = STR_INIT;

	test_begin("mime_to_crlf");
	mime_to_crlf("a\nb\r\nc\rd\n\n", 11, &s);
	test_assert_streq(str_c(&s), "a\r\nb\r\nc\rd\r\n\r\n");
	test_assert(mime_crlf_size("a\nb\r\nc\rd\n\n", 11) == s.len);
	str_truncate(&s, 0);
	mime_to_crlf("\n", 1, &s);
	test_assert_streq(str_c(&s), "\r\n");
	str_truncate(&s, 0);
	mime_to_crlf("", 0, &s);
	test_assert(s.len == 0);
	test_assert(mime_crlf_size("", 0) == 0);
	test_assert(mime_crlf_size("abc", 3) == 3);
	test_assert(mime_crlf_size("\r\n\r\n", 4) == 4);
	str_free(&s);
	test_end();

	test_begin("mime_append_crlf_literal");
	str_append(&s, "BODY[] ");
	mime_append_crlf_literal("a\nb\r\n\nc", 8, &s);
	test_assert_streq(str_c(&s), "BODY[] {10}\r\na\r\nb\r\n\r\nc");
	str_truncate(&s, 0);
	mime_append_crlf_literal("", 0, &s);
	test_assert_streq(str_c(&s), "{0}\r\n");
	str_truncate(&s, 0);
	mime_append_crlf_literal("\n\n\n", 3, &s);
	test_assert_streq(str_c(&s), "{6}\r\n\r\n\r\n\r\n");
	str_free(&s);
	test_end();

	/* the one-pass form, against the two-pass one: line ends at every
	 * place in and across 16-byte blocks, CRLF kept, bare CR, a CR
	 * ending one block and its LF starting the next; with the right
	 * size, sizes off by one or more, 0 and 2 len */
	test_begin("mime_append_crlf_literal_expect");
	{
		static const char alpha[] = "ab\n\r\nxyz\r\n\n";
		unsigned seed = 12345;
		bool same = true;

		for (size_t round = 0; round < 3000; round++) {
			char data[200];
			size_t len = round % 97 + (round % 7 == 0 ? 100 : 0);
			str_t want = STR_INIT, got = STR_INIT;
			uint64_t size;
			long deltas[] = { 0, 1, -1, 2, -2, 17, -17 };

			for (size_t k = 0; k < len; k++) {
				seed = seed * 1103515245u + 12345u;
				/* long runs without a line end, too */
				data[k] = (round % 5 == 0 && k % 40 != 39) ? 'q' :
				    alpha[(seed >> 16) % (sizeof(alpha) - 1)];
			}
			str_append(&want, "X ");
			mime_append_crlf_literal(data, len, &want);
			size = mime_crlf_size(data, len);
			for (size_t t = 0; t < sizeof(deltas) / sizeof(*deltas) + 2;
			    t++) {
				uint64_t e = t == 7 ? 0 : t == 8 ? 2 * (uint64_t)len :
				    (uint64_t)((long)size + deltas[t]);

				str_truncate(&got, 0);
				str_append(&got, "X ");
				mime_append_crlf_literal_expect(data, len, e, &got);
				if (got.len != want.len ||
				    memcmp(got.data, want.data, want.len) != 0)
					same = false;
			}
			str_free(&want);
			str_free(&got);
		}
		test_assert(same);
		str_truncate(&s, 0);
		mime_append_crlf_literal_expect("a\nb\r\n\nc", 8, 10, &s);
		test_assert_streq(str_c(&s), "{10}\r\na\r\nb\r\n\r\nc");
		str_truncate(&s, 0);
		mime_append_crlf_literal_expect("a\nb", 3, 3, &s);
		test_assert_streq(str_c(&s), "{4}\r\na\r\nb");
		str_free(&s);
	}
	test_end();
}

static const char simple_msg[] =
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\r\n"
    "From: \"Joe Q. Public\" <john.q.public@example.com>\r\n"
    "To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>\r\n"
    "Cc: <boss@nil.test>,\r\n"
    " \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>\r\n"
    "Subject: Saying\r\n"
    "  Hello\r\n"
    "Message-ID: <1234@local.machine.example>\r\n"
    "In-Reply-To: <3456@example.net>\r\n"
    "\r\n"
    "Hi there,\r\n"
    "this is a test.\r\n";

static void
test_simple(void)
{
	struct mime_part *root;
	char *s;

	test_begin("simple text message");
	root = parse(simple_msg);
	test_assert(root->hdr_off == 0);
	test_assert(root->body_off == root->hdr_len);
	test_assert(body_is(simple_msg, root,
	    "Hi there,\r\nthis is a test.\r\n"));
	test_assert(root->body_lines == 2);
	test_assert_streq(root->type, "text");
	test_assert_streq(root->subtype, "plain");
	test_assert(root->nparams == 1);
	test_assert_streq(root->params[0].name, "charset");
	test_assert_streq(root->params[0].value, "us-ascii");
	test_assert_streq(root->encoding, "7BIT");
	test_assert(root->nchildren == 0 && root->message == NULL);
	test_assert(root->parent == NULL);
	test_assert(find(root, "") == root);
	test_assert(find(root, "1") == root);
	test_assert(find(root, "2") == NULL);
	test_assert(find(root, "0") == NULL);
	test_assert(find(root, "1.1") == NULL);
	mime_free(root);

	s = bodystructure(simple_msg, false);
	test_assert_streq(s, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") "
	    "NIL NIL \"7BIT\" 28 2)");
	free(s);
	s = bodystructure(simple_msg, true);
	test_assert_streq(s, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") "
	    "NIL NIL \"7BIT\" 28 2 NIL NIL NIL NIL)");
	free(s);

	s = envelope(simple_msg);
	test_assert_streq(s, "(\"Sat, 24 Mar 2007 23:00:00 +0200\" "
	    "\"Saying  Hello\" "
	    "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
	    "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
	    "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
	    "((\"Mary Smith\" NIL \"mary\" \"x.test\")"
	    "(NIL NIL \"jdoe\" \"example.org\")"
	    "(\"Who?\" NIL \"one\" \"y.test\")) "
	    "((NIL NIL \"boss\" \"nil.test\")"
	    "(\"Giant; \\\"Big\\\" Box\" NIL \"sysservices\" \"example.net\")) "
	    "NIL \"<3456@example.net>\" \"<1234@local.machine.example>\")");
	free(s);
	test_end();
}

/* Dovecot's src/lib-imap/test-imap-bodystructure.c message, in wire
 * form; the expected strings are Dovecot's, with our upper-casing. */
static const char dovecot_msg[] =
    "From: user@domain.org\r\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\r\n"
    "Mime-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"foo\r\n"
    " bar\"\r\n"
    "\r\n"
    "Root MIME prologue\r\n"
    "\r\n"
    "--foo bar\r\n"
    "Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\r\n"
    "Content-ID: <foo@example.com>\r\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    "Content-Disposition: inline; foo=bar\r\n"
    "Content-Description: hellodescription\r\n"
    "Content-Language: en, fi, se\r\n"
    "Content-Location: http://example.com/test.txt\r\n"
    "\r\n"
    "hello\r\n"
    "\r\n"
    "--foo bar\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: sub@domain.org\r\n"
    "To: sub-to1@domain.org, sub-to2@domain.org\r\n"
    "Date: Sun, 12 Aug 2012 12:34:56 +0300\r\n"
    "Subject: submsg\r\n"
    "Content-Type: multipart/alternative; boundary=\"sub1\"\r\n"
    "\r\n"
    "Sub MIME prologue\r\n"
    "--sub1\r\n"
    "Content-Type: text/html\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "<p>Hello world</p>\r\n"
    "\r\n"
    "--sub1\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: ?invalid\r\n"
    "\r\n"
    "Hello another world\r\n"
    "\r\n"
    "--sub1--\r\n"
    "Sub MIME epilogue\r\n"
    "\r\n"
    "--foo bar--\r\n"
    "Root MIME epilogue\r\n";

static void
test_dovecot_vector(void)
{
	struct mime_part *root;
	const struct mime_part *p;
	char *s;

	test_begin("BODYSTRUCTURE matches Dovecot's test vector");
	s = bodystructure(dovecot_msg, true);
	test_assert_streq(s,
	    "((\"TEXT\" \"X-MYOWN\" (\"CHARSET\" \"us-ascii\" \"FOO\" "
	    "\"quoted\\\"string\") \"<foo@example.com>\" \"hellodescription\" "
	    "\"7BIT\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"INLINE\" (\"FOO\" "
	    "\"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")"
	    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 412 "
	    "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" "
	    "((NIL NIL \"sub\" \"domain.org\")) "
	    "((NIL NIL \"sub\" \"domain.org\")) "
	    "((NIL NIL \"sub\" \"domain.org\")) "
	    "((NIL NIL \"sub-to1\" \"domain.org\")"
	    "(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) "
	    "((\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"8BIT\" "
	    "20 1 NIL NIL NIL NIL)(\"TEXT\" \"PLAIN\" (\"CHARSET\" "
	    "\"us-ascii\") NIL NIL \"7BIT\" 21 1 NIL NIL NIL NIL) "
	    "\"ALTERNATIVE\" (\"BOUNDARY\" \"sub1\") NIL NIL NIL) 21 "
	    "NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"foo bar\") "
	    "NIL NIL NIL)");
	free(s);
	s = bodystructure(dovecot_msg, false);
	test_assert_streq(s,
	    "((\"TEXT\" \"X-MYOWN\" (\"CHARSET\" \"us-ascii\" \"FOO\" "
	    "\"quoted\\\"string\") \"<foo@example.com>\" \"hellodescription\" "
	    "\"7BIT\" 7 1)"
	    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 412 "
	    "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" "
	    "((NIL NIL \"sub\" \"domain.org\")) "
	    "((NIL NIL \"sub\" \"domain.org\")) "
	    "((NIL NIL \"sub\" \"domain.org\")) "
	    "((NIL NIL \"sub-to1\" \"domain.org\")"
	    "(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) "
	    "((\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"8BIT\" "
	    "20 1)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
	    "\"7BIT\" 21 1) \"ALTERNATIVE\") 21) \"MIXED\")");
	free(s);

	root = parse(dovecot_msg);
	test_assert(root->nchildren == 2);
	p = find(root, "1");
	test_assert(body_is(dovecot_msg, p, "hello\r\n"));
	test_assert(p != NULL && p->parent == root);
	p = find(root, "2");
	test_assert(p != NULL && p->message != NULL &&
	    p->message->parent == p && p->parent == root);
	test_assert(p != NULL && p->message != NULL &&
	    p->message->hdr_off == p->body_off);
	p = find(root, "2.2");
	test_assert(body_is(dovecot_msg, p, "Hello another world\r\n"));
	test_assert(p != NULL && p->parent == find(root, "2")->message &&
	    p->parent->parent == find(root, "2"));
	test_assert(find(root, "2.3") == NULL);
	test_assert(find(root, "2.1.1") == NULL);
	test_assert(find(root, "3") == NULL);
	mime_free(root);
	test_end();
}

static const char alt_msg[] =
    "From: a@b.c\r\n"
    "Subject: alt\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=\"XX\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--XX\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "plain body\r\n"
    "--XX  \r\n"
    "Content-Type: text/html\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<b>html</b>\r\n"
    "line2\r\n"
    "--XX--\r\n"
    "epilogue\r\n";

static void
test_alternative(void)
{
	struct mime_part *root;
	const struct mime_part *p;
	char *s;

	test_begin("multipart/alternative");
	s = bodystructure(alt_msg, false);
	test_assert_streq(s, "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") "
	    "NIL NIL \"7BIT\" 10 0)(\"TEXT\" \"HTML\" (\"CHARSET\" "
	    "\"us-ascii\") NIL NIL \"QUOTED-PRINTABLE\" 18 1) "
	    "\"ALTERNATIVE\")");
	free(s);
	s = bodystructure(alt_msg, true);
	test_assert_streq(s, "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") "
	    "NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL)(\"TEXT\" \"HTML\" "
	    "(\"CHARSET\" \"us-ascii\") NIL NIL \"QUOTED-PRINTABLE\" 18 1 "
	    "NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"XX\") NIL NIL "
	    "NIL)");
	free(s);

	root = parse(alt_msg);
	test_assert(root->nchildren == 2);
	p = find(root, "1");
	test_assert(header_is(alt_msg, p,
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n"));
	test_assert(body_is(alt_msg, p, "plain body"));
	p = find(root, "2");
	test_assert(body_is(alt_msg, p, "<b>html</b>\r\nline2"));
	test_assert(p != NULL && p->body_lines == 1);
	test_assert(find(root, "2.1") == NULL);
	test_assert(find(root, "3") == NULL);
	test_assert(root->body_len == strlen(alt_msg) - root->body_off);
	mime_free(root);
	test_end();
}

static const char nested_msg[] =
    "From: \"Joe Q. Public\" <joe@example.com>\r\n"
    "To: Mary <mary@x.org>\r\n"
    "Subject: nested\r\n"
    "Content-Type: multipart/mixed; boundary=outer\r\n"
    "\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "\r\n"
    "inner plain\r\n"
    "--inner\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<p>x</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Disposition: attachment; filename=\"fwd.eml\"\r\n"
    "\r\n"
    "From: bob@example.org\r\n"
    "Subject: inner msg\r\n"
    "Content-Type: multipart/mixed; boundary=b2\r\n"
    "\r\n"
    "--b2\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello from inside\r\n"
    "--b2\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "AAEC\r\n"
    "--b2--\r\n"
    "--outer--\r\n";

static void
test_nested(void)
{
	struct mime_part *root;
	const struct mime_part *p, *m;
	str_t s = STR_INIT;

	test_begin("nested multipart with message/rfc822");
	root = parse(nested_msg);
	test_assert(root->nchildren == 2);
	p = find(root, "1");
	test_assert(p != NULL && strcmp(p->subtype, "alternative") == 0);
	test_assert(body_is(nested_msg, find(root, "1.1"), "inner plain"));
	test_assert(header_is(nested_msg, find(root, "1.1"), "\r\n"));
	test_assert(body_is(nested_msg, find(root, "1.2"), "<p>x</p>"));
	test_assert(find(root, "1.3") == NULL);
	test_assert(find(root, "1.1.1") == NULL);
	p = find(root, "2");
	test_assert(p != NULL && p->message != NULL);
	test_assert_streq(p->disposition, "attachment");
	test_assert(p->ndisp_params == 1);
	test_assert_streq(p->disp_params[0].value, "fwd.eml");
	m = p->message;
	test_assert(m->hdr_off == p->body_off);
	test_assert(m->body_off + m->body_len == p->body_off + p->body_len);
	test_assert(body_is(nested_msg, p,
	    "From: bob@example.org\r\n"
	    "Subject: inner msg\r\n"
	    "Content-Type: multipart/mixed; boundary=b2\r\n"
	    "\r\n"
	    "--b2\r\n"
	    "Content-Type: text/plain\r\n"
	    "\r\n"
	    "hello from inside\r\n"
	    "--b2\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "\r\n"
	    "AAEC\r\n"
	    "--b2--"));
	test_assert(p->body_lines == 13);
	test_assert(body_is(nested_msg, find(root, "2.1"),
	    "hello from inside"));
	test_assert(body_is(nested_msg, find(root, "2.2"), "AAEC"));
	test_assert(find(root, "2.2")->parent == m);
	test_assert(find(root, "2.3") == NULL);
	test_assert(find(root, "2.1.1") == NULL);
	test_assert(find(root, "3") == NULL);

	mime_bodystructure(nested_msg, root, true, &s);
	test_assert_streq(str_c(&s),
	    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" "
	    "11 0 NIL NIL NIL NIL)(\"TEXT\" \"HTML\" "
	    "(\"CHARSET\" \"us-ascii\") "
	    "NIL NIL \"7BIT\" 8 0 NIL NIL NIL NIL) \"ALTERNATIVE\" "
	    "(\"BOUNDARY\" \"inner\") NIL NIL NIL)"
	    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 237 "
	    "(NIL \"inner msg\" ((NIL NIL \"bob\" \"example.org\")) "
	    "((NIL NIL \"bob\" \"example.org\")) "
	    "((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL NIL NIL) "
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" "
	    "17 0 NIL NIL NIL NIL)"
	    "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL "
	    "\"BASE64\" 4 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b2\") "
	    "NIL NIL NIL) 13 NIL (\"ATTACHMENT\" (\"FILENAME\" \"fwd.eml\")) "
	    "NIL NIL) \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)");
	str_truncate(&s, 0);
	mime_envelope(nested_msg, m, &s);
	test_assert_streq(str_c(&s), "(NIL \"inner msg\" "
	    "((NIL NIL \"bob\" \"example.org\")) "
	    "((NIL NIL \"bob\" \"example.org\")) "
	    "((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL NIL NIL)");
	str_free(&s);
	mime_free(root);
	test_end();
}

static void
test_digest(void)
{
	static const char msg[] =
	    "Content-Type: multipart/digest; boundary=d\r\n"
	    "\r\n"
	    "--d\r\n"
	    "\r\n"
	    "Subject: one\r\n"
	    "\r\n"
	    "body one\r\n"
	    "--d\r\n"
	    "Content-Type: text/plain\r\n"
	    "\r\n"
	    "not a message\r\n"
	    "--d--\r\n";
	struct mime_part *root;
	const struct mime_part *p;

	test_begin("multipart/digest defaults to message/rfc822");
	root = parse(msg);
	p = find(root, "1");
	test_assert(p != NULL && strcmp(p->type, "message") == 0 &&
	    strcmp(p->subtype, "rfc822") == 0 && p->nparams == 0);
	test_assert(p != NULL && p->message != NULL);
	test_assert(body_is(msg, find(root, "1.1"), "body one"));
	p = find(root, "2");
	test_assert(p != NULL && strcmp(p->type, "text") == 0);
	mime_free(root);
	test_end();
}

static const char *
param(const struct mime_part *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->nparams; i++) {
		if (strcmp(p->params[i].name, name) == 0)
			return p->params[i].value;
	}
	return NULL;
}

static void
test_params(void)
{
	static const char msg1[] =
	    "Content-Type: application/x-stuff;\r\n"
	    " title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
	    " title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
	    " title*2=\"isn't it!\"\r\n"
	    "\r\n";
	static const char msg2[] =
	    "Content-Type: TEXT/Plain (a comment) ; CHARSET = (c) \"UTF-8\" "
	    "(x);\r\n"
	    "\tname*1=\"b c\"; name*0=a; junk; x*0=1; x*2=3;\r\n"
	    "\tfilename*=utf-8''%E2%82%AC; empty=; q=\"a\\\\b\"\r\n"
	    "\r\n";
	static const char msg3[] =
	    "Content-Type: text/plain; name=caf\xc3\xa9.txt\r\n"
	    "Content-Disposition: ATTACHMENT; FileName=\"a \\\"b\\\"\"\r\n"
	    "Content-Language: EN-us , (x) de\r\n"
	    "\r\n";
	struct mime_part *root;
	char *s;

	test_begin("Content-Type parameters, RFC 2231");
	root = parse(msg1);
	test_assert_streq(root->type, "application");
	test_assert_streq(root->subtype, "x-stuff");
	test_assert(root->nparams == 1);
	test_assert_streq(root->params[0].name, "title*");
	test_assert_streq(root->params[0].value,
	    "us-ascii'en'This%20is%20even%20more%20"
	    "%2A%2A%2Afun%2A%2A%2A%20isn't it!");
	mime_free(root);
	s = bodystructure(msg1, false);
	test_assert_streq(s, "(\"APPLICATION\" \"X-STUFF\" (\"TITLE*\" "
	    "\"us-ascii'en'This%20is%20even%20more%20"
	    "%2A%2A%2Afun%2A%2A%2A%20isn't it!\") NIL NIL \"7BIT\" 0)");
	free(s);

	root = parse(msg2);
	test_assert_streq(root->type, "text");
	test_assert_streq(root->subtype, "plain");
	test_assert_streq(param(root, "charset"), "UTF-8");
	test_assert_streq(param(root, "name"), "ab c");
	test_assert_streq(param(root, "x*0"), "1");
	test_assert_streq(param(root, "x*2"), "3");
	test_assert(param(root, "x") == NULL);
	test_assert_streq(param(root, "filename*"), "utf-8''%E2%82%AC");
	test_assert_streq(param(root, "empty"), "");
	test_assert_streq(param(root, "q"), "a\\b");
	test_assert(param(root, "junk") == NULL);
	mime_free(root);

	s = bodystructure(msg3, true);
	test_assert_streq(s, "(\"TEXT\" \"PLAIN\" (\"NAME\" {9}\r\n"
	    "caf\xc3\xa9.txt \"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" "
	    "0 0 NIL (\"ATTACHMENT\" (\"FILENAME\" \"a \\\"b\\\"\")) "
	    "(\"EN-us\" \"de\") "
	    "NIL)");
	free(s);
	test_end();
}

static void
test_envelope_addresses(void)
{
	static const char msg1[] =
	    "From: Pete(A nice \\) chap) <pete(his account)@silly.test"
	    "(his host)>\r\n"
	    "Sender: <@route1.test,@route2.test:user@host.test>\r\n"
	    "Reply-To: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\n"
	    "To: A Group:Ed Jones <c@a.test>,joe@where.test,John "
	    "<jdoe@one.test>;, after@group.test\r\n"
	    "Cc: undisclosed-recipients:;\r\n"
	    "Bcc: \"Joe \\\"the\\\" Q\" <a@b>, nodomain, (only comment), ,\r\n"
	    "Subject: he said \"hi\" \\o/\r\n"
	    "\r\n";
	static const char msg2[] =
	    "Subject: caf\xc3\xa9\r\n"
	    "From: x@y (Comment Name)\r\n"
	    "Sender:\r\n"
	    "Reply-To: ,\r\n"
	    "To: \r\n"
	    "In-Reply-To: <a@b>\r\n"
	    " <c@d>\r\n"
	    "\r\n";
	char *s;

	test_begin("ENVELOPE addresses, groups, quoting");
	s = envelope(msg1);
	test_assert_streq(s, "(NIL \"he said \\\"hi\\\" \\\\o/\" "
	    "((\"Pete\" NIL \"pete\" \"silly.test\")) "
	    "((NIL \"@route1.test,@route2.test\" \"user\" \"host.test\")) "
	    "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.test\")) "
	    "((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")"
	    "(NIL NIL \"joe\" \"where.test\")"
	    "(\"John\" NIL \"jdoe\" \"one.test\")"
	    "(NIL NIL NIL NIL)(NIL NIL \"after\" \"group.test\")) "
	    "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
	    "((\"Joe \\\"the\\\" Q\" NIL \"a\" \"b\")"
	    "(NIL NIL \"nodomain\" \"\")) NIL NIL)");
	free(s);

	s = envelope(msg2);
	test_assert_streq(s, "(NIL {5}\r\ncaf\xc3\xa9 "
	    "((\"Comment Name\" NIL \"x\" \"y\")) "
	    "((\"Comment Name\" NIL \"x\" \"y\")) "
	    "((\"Comment Name\" NIL \"x\" \"y\")) "
	    "NIL NIL NIL \"<a@b> <c@d>\" NIL)");
	free(s);

	s = envelope("\r\nbody");
	test_assert_streq(s, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(s);
	s = envelope("From: \"quoted local\"@x.test, <>\r\n\r\n");
#define QL "(NIL NIL \"\\\"quoted local\\\"\" \"x.test\")(NIL NIL \"\" \"\")"
	test_assert_streq(s, "(NIL NIL (" QL ") (" QL ") (" QL ") "
	    "NIL NIL NIL NIL NIL)");
#undef QL
	free(s);
	test_end();
}

static void
test_header_fields(void)
{
	static const char hdr[] =
	    "Subject: a\r\n"
	    " b\r\n"
	    "From: x@y\r\n"
	    "To: z@w\r\n"
	    "X-Other: 1\r\n"
	    "subject : second\r\n"
	    "\r\n"
	    "Body: not a header\r\n";
	const char *names[] = { "SUBJECT", "to" };
	str_t s = STR_INIT;
	char *v;

	test_begin("header fields");
	mime_header_fields(hdr, strlen(hdr), names, 2, false, &s);
	test_assert_streq(str_c(&s), "Subject: a\r\n b\r\nTo: z@w\r\n"
	    "subject : second\r\n\r\n");
	str_truncate(&s, 0);
	mime_header_fields(hdr, strlen(hdr), names, 2, true, &s);
	test_assert_streq(str_c(&s), "From: x@y\r\nX-Other: 1\r\n\r\n");
	str_truncate(&s, 0);
	mime_header_fields(hdr, strlen(hdr), names, 0, false, &s);
	test_assert_streq(str_c(&s), "\r\n");
	str_truncate(&s, 0);
	mime_header_fields("A: 1\r\nB: 2", 10, names, 0, true, &s);
	test_assert_streq(str_c(&s), "A: 1\r\nB: 2\r\n\r\n");
	str_free(&s);

	v = mime_header_get(hdr, strlen(hdr), "subject");
	test_assert_streq(v, "a b");
	free(v);
	v = mime_header_get(hdr, strlen(hdr), "x-other");
	test_assert_streq(v, "1");
	free(v);
	test_assert(mime_header_get(hdr, strlen(hdr), "body") == NULL);
	test_assert(mime_header_get(hdr, strlen(hdr), "cc") == NULL);
	v = mime_header_get("Empty:\r\n\r\n", 10, "empty");
	test_assert_streq(v, "");
	free(v);
	v = mime_header_get("A:  x\n\ty\n", 9, "a");
	test_assert_streq(v, "x\ty");
	free(v);
	test_end();
}

static void
test_decode_header(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain text", "plain text" },
		{ "=?ISO-8859-1?Q?a?=", "a" },
		{ "=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard" },
		{ "(=?ISO-8859-1?Q?a?= b)", "(a b)" },
		{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a?=  \r\n\t=?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a_b?=)", "(a b)" },
		{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)" },
		{ "=?utf-8?B?w6k=?=", "\xc3\xa9" },
		{ "=?UTF-8?b?w6k?=", "\xc3\xa9" },
		{ "=?utf-8?B?ww==?= =?utf-8?B?qQ==?=", "\xc3\xa9" },
		{ "=?UTF-8*en?Q?x?=", "x" },
		{ "a =?utf-8?q?b?= c", "a b c" },
		{ " =?utf-8?q?b?=", " b" },
		{ "=?x-no-such-cs?Q?abc?= d", "=?x-no-such-cs?Q?abc?= d" },
		{ "=?utf-8?q?=FF?=", "=?utf-8?q?=FF?=" },
		{ "=?utf-8?q?a b?=", "=?utf-8?q?a b?=" },
		{ "=?utf-8?x?ab?=", "=?utf-8?x?ab?=" },
		{ "=?utf-8?q?ab", "=?utf-8?q?ab" },
		{ "=?utf-8//TRANSLIT?q?ab?=", "=?utf-8//TRANSLIT?q?ab?=" },
		{ "=?bad?q?x?= =?utf-8?q?y?=", "=?bad?q?x?= y" },
		{ "=?=?utf-8?q?y?=", "=?y" },
		{ "caf\xc3\xa9 =?utf-8?q?ok?=", "caf\xc3\xa9 ok" },
		{ "=?", "=?" },
		{ "", "" },
	};
	size_t i;
	char *s;

	test_begin("RFC 2047 header decoding");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = decode(cases[i].in);
		if (strcmp(s, cases[i].out) != 0)
			fprintf(stderr, "decode(\"%s\") = \"%s\"\n",
			    cases[i].in, s);
		test_assert_streq(s, cases[i].out);
		free(s);
	}
	test_end();
}

static void
test_dates(void)
{
	test_begin("dates");
	test_assert(mime_parse_date("Sat, 24 Mar 2007 23:00:00 +0200") ==
	    1174770000LL);
	test_assert(mime_parse_date("  24 Mar 2007 21:00:00 +0000 (UTC)") ==
	    1174770000LL);
	test_assert(mime_parse_date("24 mar 07 23:00 EST") == 1174795200LL);
	test_assert(mime_parse_date("Sat,24 Mar 2007 22:00:00 -0100") ==
	    1174777200LL);
	test_assert(mime_parse_date("Fri, 1 Jan 99 00:00:00 GMT") ==
	    915148800LL);
	test_assert(mime_parse_date("1 Jan 2000 00:00:00 Z") == 946684800LL);
	test_assert(mime_parse_date("1 Jan 2000 00:00:00 A") == 946684800LL);
	test_assert(mime_parse_date("1 Jan 2000 00:00:00") == 946684800LL);
	test_assert(mime_parse_date("1 January 2000 00:00:00 UT") ==
	    946684800LL);
	test_assert(mime_parse_date("31 Dec 49 23:59:59 +0000") ==
	    2524607999LL);
	test_assert(mime_parse_date("1 Jun 50 12:00:00 +0000") ==
	    -618062400LL);
	test_assert(mime_parse_date("1 Jan 100 00:00:00 +0000") ==
	    946684800LL);
	test_assert(mime_parse_date("1 Jan 2000 01:00:00 PDT") ==
	    946684800LL + 8 * 3600);
	test_assert(mime_parse_date("") == -1);
	test_assert(mime_parse_date("garbage") == -1);
	test_assert(mime_parse_date("32 Jan 2000 00:00:00 +0000") == -1);
	test_assert(mime_parse_date("1 Foo 2000 00:00:00 +0000") == -1);
	test_assert(mime_parse_date("1 Jan 2000 24:00:00 +0000") == -1);
	test_assert(mime_parse_date("1 Jan 2000") == -1);
	test_assert(mime_parse_date("1 Jan 20000 00:00 +0000") == -1);
	test_end();
}

static const char search_msg[] =
    "From: =?iso-8859-1?q?Andr=E9?= <andre@example.com>\r\n"
    "To: bob@example.org\r\n"
    "Subject: =?utf-8?B?SGVsbG8gV8O2cmxk?=\r\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
    "\r\n"
    "preamble needle-in-preamble\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "VGhlIHF1aWNrIGJyb3duIGZveA==\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "caf=E9 soft=\r\n"
    "break =3D end\r\n"
    "--b\r\n"
    "Content-Type: application/octet-stream; name=\"secret.bin\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "c2VjcmV0IHN0dWZm\r\n"
    "--b\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "Subject: inner subject\r\n"
    "\r\n"
    "inner body words\r\n"
    "--b\r\n"
    "\r\n"
    "no content type here\r\n"
    "--b--\r\n";

/* Comments inside an address are neither part of it nor its name
 * (only a comment after a bare addr-spec names it); SEARCH matches the
 * parsed address and the display name. */
static void
test_address_comments(void)
{
	static const char msg[] =
	    "From: <user-from (comment)@ (comment) domain.org>\r\n"
	    "To: user-to (c1) @ (c2) example.org, x@y (Named)\r\n"
	    "Cc: John Doe\r\n <j@x.test>, =?utf-8?q?J=C3=B6rg?= <jo@x.test>\r\n"
	    "Bcc: Team: a@b.test (A), \"Q, R\" <q@r.test>;\r\n"
	    "\r\nbody\r\n";
	struct mime_part *root;
	str_t t = STR_INIT;
	char *s;

	test_begin("addresses with comments: ENVELOPE and SEARCH");
	s = envelope(msg);
	test_assert_streq(s, "(NIL NIL "
	    "((NIL NIL \"user-from\" \"domain.org\")) "
	    "((NIL NIL \"user-from\" \"domain.org\")) "
	    "((NIL NIL \"user-from\" \"domain.org\")) "
	    "((NIL NIL \"user-to\" \"example.org\")"
	    "(\"Named\" NIL \"x\" \"y\")) "
	    "((\"John Doe\" NIL \"j\" \"x.test\")"
	    "(\"=?utf-8?q?J=C3=B6rg?=\" NIL \"jo\" \"x.test\")) "
	    "((NIL NIL \"Team\" NIL)(\"A\" NIL \"a\" \"b.test\")"
	    "(\"Q, R\" NIL \"q\" \"r.test\")(NIL NIL NIL NIL)) NIL NIL)");
	free(s);
	mime_address_text("<user-from (comment)@ (comment) domain.org>", &t);
	test_assert_streq(str_c(&t), "user-from@domain.org");
	str_truncate(&t, 0);
	mime_address_text("Team: a@b.test (A), \"Q, R\" <q@r.test>;, z@z",
	    &t);
	test_assert_streq(str_c(&t),
	    "Team: A <a@b.test>, Q, R <q@r.test>;, z@z");
	str_free(&t);

	root = parse(msg);
	test_assert(mime_search_address(msg, root, "From",
	    "user-from@domain.org"));
	test_assert(mime_search_address(msg, root, "from",
	    "USER-FROM@DOMAIN"));
	test_assert(!mime_search_address(msg, root, "From", "comment"));
	test_assert(mime_search_address(msg, root, "To",
	    "user-to@example.org"));
	test_assert(mime_search_address(msg, root, "To", "named"));
	test_assert(mime_search_address(msg, root, "Cc", "john"));
	test_assert(mime_search_address(msg, root, "Cc", "John Doe"));
	test_assert(mime_search_address(msg, root, "Cc", "j@x.test"));
	test_assert(mime_search_address(msg, root, "Cc", "j\xc3\xb6rg"));
	test_assert(mime_search_address(msg, root, "Bcc", "q@r.test"));
	test_assert(mime_search_address(msg, root, "Bcc", ""));
	test_assert(!mime_search_address(msg, root, "Reply-To", ""));
	test_assert(!mime_search_address(msg, root, "Cc", "nobody@"));
	mime_free(root);
	test_end();
}

static void
test_search(void)
{
	struct mime_part *root;

	test_begin("SEARCH header and body");
	root = parse(search_msg);
	test_assert(mime_search_header(search_msg, root, "subject",
	    "w\xc3\xb6rld"));
	test_assert(mime_search_header(search_msg, root, "Subject",
	    "HELLO"));
	test_assert(!mime_search_header(search_msg, root, "subject", "bob"));
	test_assert(mime_search_header(search_msg, root, "from",
	    "andr\xc3\xa9"));
	test_assert(mime_search_header(search_msg, root, "from",
	    "ANDRE@EXAMPLE"));
	test_assert(mime_search_header(search_msg, root, "to", ""));
	test_assert(!mime_search_header(search_msg, root, "cc", ""));
	test_assert(mime_search_header(search_msg, root, NULL, "bob@"));
	test_assert(mime_search_header(search_msg, root, NULL, "to: bob"));
	test_assert(!mime_search_header(search_msg, root, NULL, "quick"));

	test_assert(mime_search_body(search_msg, root, "QUICK BROWN", false));
	test_assert(mime_search_body(search_msg, root, "caf\xc3\xa9", false));
	test_assert(mime_search_body(search_msg, root, "softbreak = end",
	    false));
	test_assert(!mime_search_body(search_msg, root, "secret stuff",
	    false));
	test_assert(!mime_search_body(search_msg, root, "needle-in-preamble",
	    false));
	test_assert(mime_search_body(search_msg, root, "inner body", false));
	test_assert(mime_search_body(search_msg, root, "no content type",
	    false));
	test_assert(mime_search_body(search_msg, root, "", false));
	test_assert(!mime_search_body(search_msg, root, "inner subject",
	    false));
	test_assert(mime_search_body(search_msg, root, "inner subject",
	    true));
	test_assert(!mime_search_body(search_msg, root, "secret.bin", false));
	test_assert(mime_search_body(search_msg, root, "secret.bin", true));
	test_assert(mime_search_body(search_msg, root, "w\xc3\xb6rld", true));
	test_assert(!mime_search_body(search_msg, root, "w\xc3\xb6rld",
	    false));
	mime_free(root);
	test_end();
}

/* Every part inside its parent's body, parents pointing back. */
static bool
tree_ok(const char *msg, const struct mime_part *p, size_t lo, size_t hi)
{
	size_t i, lines = 0;

	if (p->hdr_off < lo || p->hdr_off + p->hdr_len != p->body_off ||
	    p->body_off + p->body_len > hi)
		return false;
	for (i = 0; i < p->body_len; i++)
		lines += msg[p->body_off + i] == '\n';
	if (lines != p->body_lines)
		return false;
	for (i = 0; i < p->nchildren; i++) {
		if (p->children[i].parent != p || !tree_ok(msg,
		    &p->children[i], p->body_off, p->body_off + p->body_len))
			return false;
	}
	return p->message == NULL || (p->message->parent == p &&
	    tree_ok(msg, p->message, p->body_off, p->body_off + p->body_len));
}

static void
test_tree_invariants(void)
{
	static const char *const msgs[] = {
		simple_msg, dovecot_msg, alt_msg, nested_msg, search_msg,
		/* an empty part right before a missing close */
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
		"--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n"
		"--i\r\nX: y\r\n\r\n--o--\r\n",
		/* a message/rfc822 with an empty body */
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: message/rfc822\r\n\r\n"
		"Subject: x\r\n\r\n--b--\r\n",
		/* a message/rfc822 whose header the boundary cuts */
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: message/rfc822\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b",
		"Content-Type: message/rfc822\n\nContent-Type: multipart/mixed;"
		" boundary=x\n\n--x\n\n--x\n",
	};
	struct mime_part *root;
	const struct mime_part *p;
	size_t i;

	test_begin("part tree invariants");
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		root = parse(msgs[i]);
		test_assert(tree_ok(msgs[i], root, 0, strlen(msgs[i])));
		mime_free(root);
	}
	root = parse(msgs[6]);
	p = find(root, "1");
	test_assert(p != NULL && p->message != NULL &&
	    p->message->body_len == 0 &&
	    p->body_off + p->body_len == p->message->body_off);
	test_assert(header_is(msgs[6], p->message, "Subject: x\r\n"));
	mime_free(root);
	test_end();
}

static void
test_malformed(void)
{
	static const char nohdr_end[] = "Subject: x\r\nFrom: y";
	static const char lf_msg[] = "Subject: x\nContent-Type: multipart/"
	    "mixed; boundary=z\n\n--z\nContent-Type: text/plain\n\nbody\n"
	    "--z--\n";
	static const char noclose[] =
	    "Content-Type: multipart/mixed; boundary=q\r\n\r\n"
	    "--q\r\n\r\none\r\n--q\r\n\r\ntwo\r\n";
	static const char noboundary[] =
	    "Content-Type: multipart/mixed; boundary=never\r\n\r\n"
	    "just text\r\n";
	static const char nobparam[] =
	    "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\ntext\r\n";
	static const char hdr_at_boundary[] =
	    "Content-Type: multipart/mixed; boundary=k\r\n\r\n"
	    "--k\r\nContent-Type: text/html\r\n--k--\r\n";
	static const char outer_stop[] =
	    "Content-Type: multipart/mixed; boundary=o\r\n\r\n"
	    "--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n"
	    "--i\r\n\r\nin\r\n--o\r\n\r\nsecond\r\n--o--\r\n";
	struct mime_part *root;
	char *s;

	test_begin("malformed input");
	root = parse(nohdr_end);
	test_assert(root->hdr_len == strlen(nohdr_end));
	test_assert(root->body_off == strlen(nohdr_end));
	test_assert(root->body_len == 0);
	mime_free(root);

	root = mime_parse("", 0);
	test_assert(root->hdr_len == 0 && root->body_len == 0);
	s = NULL;
	{
		str_t o = STR_INIT;

		mime_bodystructure("", root, true, &o);
		mime_envelope("", root, &o);
		s = str_steal(&o);
	}
	free(s);
	mime_free(root);
	mime_free(NULL);

	root = parse(lf_msg);
	test_assert(root->nchildren == 1);
	test_assert(body_is(lf_msg, find(root, "1"), "body"));
	mime_free(root);

	root = parse(noclose);
	test_assert(root->nchildren == 2);
	test_assert(body_is(noclose, find(root, "1"), "one"));
	test_assert(body_is(noclose, find(root, "2"), "two\r\n"));
	mime_free(root);

	root = parse(noboundary);
	test_assert(root->nchildren == 0);
	test_assert(find(root, "1") == NULL);
	mime_free(root);
	s = bodystructure(noboundary, false);
	test_assert_streq(s, "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") "
	    "NIL NIL \"7BIT\" 0 0) \"MIXED\")");
	free(s);
	s = bodystructure(nobparam, true);
	test_assert_streq(s, "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") "
	    "NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL) \"MIXED\" NIL NIL NIL NIL)");
	free(s);

	root = parse(hdr_at_boundary);
	test_assert(root->nchildren == 1);
	test_assert(header_is(hdr_at_boundary, find(root, "1"),
	    "Content-Type: text/html\r\n"));
	test_assert(find(root, "1") != NULL && find(root, "1")->body_len == 0);
	mime_free(root);

	root = parse(outer_stop);
	test_assert(root->nchildren == 2);
	test_assert(body_is(outer_stop, find(root, "1.1"), "in"));
	test_assert(body_is(outer_stop, find(root, "2"), "second"));
	mime_free(root);

	s = bodystructure("Content-Type: text\r\n\r\nx", false);
	test_assert_streq(s, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") "
	    "NIL NIL \"7BIT\" 1 0)");
	free(s);
	s = bodystructure("Content-Type: message/rfc822\r\n\r\n", false);
	test_assert_streq(s, "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 0 "
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" "
	    "(\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0) 0)");
	free(s);
	test_end();
}

/* n nested multiparts, each opening one child that is the next. */
static char *
nested_bomb(size_t n, bool same_boundary)
{
	str_t s = STR_INIT;
	size_t i;

	for (i = 0; i < n; i++) {
		if (same_boundary)
			str_append(&s, "Content-Type: multipart/mixed; "
			    "boundary=b\r\n\r\n--b\r\n");
		else
			str_printf(&s, "Content-Type: multipart/mixed; "
			    "boundary=b%zu\r\n\r\n--b%zu\r\n", i, i);
	}
	str_append(&s, "\r\ninnermost\r\n");
	return str_steal(&s);
}

static size_t
depth_of(const struct mime_part *p)
{
	size_t d = 0;

	while (p->nchildren > 0 || p->message != NULL) {
		p = p->nchildren > 0 ? &p->children[0] : p->message;
		d++;
	}
	return d;
}

static void
test_hostile(void)
{
	struct mime_part *root;
	str_t s = STR_INIT, o = STR_INIT;
	char *msg;
	size_t i, n;
	double t0;

	test_begin("hostile input: depth, parts, long lines");
	t0 = now();
	msg = nested_bomb(10000, false);
	root = parse(msg);
	test_assert(depth_of(root) == MIME_DEPTH_MAX);
	mime_bodystructure(msg, root, true, &o);
	test_assert(o.len > 0);
	test_assert(!mime_search_body(msg, root, "nothing", true));
	mime_free(root);
	free(msg);

	msg = nested_bomb(100000, true);
	root = parse(msg);
	test_assert(depth_of(root) == MIME_DEPTH_MAX);
	mime_free(root);
	free(msg);

	/* message/rfc822 inside message/rfc822 ... */
	for (i = 0; i < 1000; i++)
		str_append(&s, "Content-Type: message/rfc822\r\n\r\n");
	root = mime_parse(s.data, s.len);
	test_assert(depth_of(root) == MIME_DEPTH_MAX);
	str_truncate(&o, 0);
	mime_bodystructure(s.data, root, false, &o);
	test_assert(o.len > 0);
	mime_free(root);

	/* more parts than MIME_PARTS_MAX */
	str_truncate(&s, 0);
	str_append(&s, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (i = 0; i < MIME_PARTS_MAX + 100; i++)
		str_printf(&s, "--p\r\n\r\npart %zu\r\n", i);
	str_append(&s, "--p--\r\n");
	root = mime_parse(s.data, s.len);
	n = root->nchildren;
	test_assert(n == MIME_PARTS_MAX - 1);
	test_assert(n > 0 && root->children[n - 1].body_off +
	    root->children[n - 1].body_len == s.len - strlen("\r\n--p--\r\n"));
	test_assert(mime_search_body(s.data, root, "part 5098", false));
	mime_free(root);

	/* a 2 MB header line and a 2 MB run of broken encoded-words */
	str_truncate(&s, 0);
	str_append(&s, "Subject: ");
	for (i = 0; i < 2 * 1024 * 1024 / 8; i++)
		str_append(&s, "=?a?q?x=");
	str_append(&s, "\r\nContent-Type: text/plain; a=(((((((\r\n\r\n");
	root = mime_parse(s.data, s.len);
	test_assert(root->hdr_len == s.len);
	test_assert(!mime_search_header(s.data, root, "subject", "zzz"));
	test_assert(!mime_search_body(s.data, root, "zzz", true));
	str_truncate(&o, 0);
	mime_envelope(s.data, root, &o);
	test_assert(o.len > s.len / 2);
	mime_free(root);

	/* many boundary-like lines against a long boundary */
	str_truncate(&s, 0);
	str_append(&s, "Content-Type: multipart/mixed; boundary=");
	for (i = 0; i < 1000; i++)
		str_append_c(&s, 'x');
	str_append(&s, "\r\n\r\n");
	for (i = 0; i < 100000; i++)
		str_append(&s, "--xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
	root = mime_parse(s.data, s.len);
	test_assert(root->nchildren == 0);
	mime_free(root);

	/* lots of RFC 2231 sections */
	str_truncate(&s, 0);
	str_append(&s, "Content-Type: text/plain");
	for (i = 0; i < 20000; i++)
		str_printf(&s, "; n%zu*%zu=v", i % 1000, i / 1000);
	str_append(&s, "\r\n\r\n");
	root = mime_parse(s.data, s.len);
	test_assert(root->nparams == 1001);
	mime_free(root);

	fprintf(stderr, "hostile input: %.2f s\n", now() - t0);
	test_assert(now() - t0 < 20.0);
	str_free(&s);
	str_free(&o);
	test_end();
}

/* The PREVIEW text of msg (CRLF form), into a static buffer. */
static const char *
preview_of(const char *msg)
{
	static char buf[2048];
	struct mime_part *root = mime_parse(msg, strlen(msg));
	str_t out = STR_INIT;

	mime_preview(msg, root, &out);
	snprintf(buf, sizeof(buf), "%s", str_c(&out));
	str_free(&out);
	mime_free(root);
	return buf;
}

static void
test_preview(void)
{
	test_begin("mime: PREVIEW text (RFC 8970)");
	test_assert_streq(preview_of("Subject: x\r\n\r\n  a\r\n\r\n b  \r\n"),
	    "a b");
	test_assert_streq(preview_of("Subject: x\r\n\r\n"), "");
	test_assert_streq(preview_of("Subject: x\r\n"), "");
	/* references: NUL, surrogates and past U+10FFFF become U+FFFD */
	test_assert_streq(preview_of("Content-Type: text/html\r\n\r\n"
	    "&#0;&#xD800;&#x110000;&#9999999;&#99999999999;&;&#;&#x;&AMP;"),
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	    "&#99999999999;&;&#;&#x;&AMP;");
	/* unterminated markup ends the text */
	test_assert_streq(preview_of("Content-Type: text/html\r\n\r\n"
	    "a<!-- b"), "a");
	test_assert_streq(preview_of("Content-Type: text/html\r\n\r\n"
	    "a<script>b</scrip"), "a");
	test_assert_streq(preview_of("Content-Type: text/html\r\n\r\n"
	    "a<b"), "a");
	test_assert_streq(preview_of("Content-Type: text/html\r\n\r\n"
	    "<STYLE>x</style >y<Br/>z"), "y z");
	/* controls, C1 controls, NBSP, zero-width space collapse */
	test_assert_streq(preview_of("Content-Type: text/plain; charset=utf-8"
	    "\r\n\r\na\x01\xc2\x85\xc2\xa0\xe2\x80\x8b b\x7f"), "a b");
	/* overlong and truncated UTF-8 dropped */
	test_assert_streq(preview_of("Content-Type: text/plain; charset=utf-8"
	    "\r\n\r\na\xc0\xaf\xe2\x82" "b\xf4\x90\x80\x80" "c"), "abc");
	/* an attachment alone gives nothing */
	test_assert_streq(preview_of("Content-Disposition: attachment\r\n"
	    "\r\ntext"), "");
	test_end();
}

int
main(void)
{
	test_crlf();
	test_preview();
	test_simple();
	test_dovecot_vector();
	test_alternative();
	test_nested();
	test_digest();
	test_params();
	test_envelope_addresses();
	test_address_comments();
	test_header_fields();
	test_decode_header();
	test_dates();
	test_search();
	test_malformed();
	test_tree_invariants();
	test_hostile();
	return test_done();
}
