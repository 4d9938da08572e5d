/*
 * test_imap_sort.c: unit tests for lib/imap/sort.c -- base subjects
 * (RFC 5256 section 2.1), sort programs, the keys taken from a header,
 * ordering with ties, and both threading algorithms on threads built by
 * hand from RFC 5256's rules (missing, duplicate and looping IDs,
 * references to absent messages, identical dates, a deep chain).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/imap/parse.h"
#include "lib/imap/sort.h"
#include "lib/mime/mime.h"
#include "tests/unit/test.h"

static bool
base_is(const char *subject, const char *want, bool want_reply)
{
	str_t out = STR_INIT;
	bool reply = !want_reply, ok;

	imap_base_subject(subject, &out, &reply);
	ok = strcmp(str_c(&out), want) == 0 && reply == want_reply;
	if (!ok)
		fprintf(stderr, "  base subject of [%s]: [%s] reply=%d\n",
		    subject != NULL ? subject : "(null)", str_c(&out), reply);
	str_free(&out);
	return ok;
}

static void
test_base_subject(void)
{
	test_begin("imap_base_subject");
	test_assert(base_is("hello", "HELLO", false));
	test_assert(base_is("Re: hello", "HELLO", true));
	test_assert(base_is("RE:hello", "HELLO", true));
	test_assert(base_is("re: Re: RE: hello", "HELLO", true));
	test_assert(base_is("Fwd: hello", "HELLO", true));
	test_assert(base_is("Fw: hello", "HELLO", true));
	test_assert(base_is("hello (fwd)", "HELLO", true));
	test_assert(base_is("hello (FWD)  (fwd) ", "HELLO", true));
	test_assert(base_is("Re [list]: hello", "HELLO", true));
	test_assert(base_is("Re : hello", "HELLO", true));
	test_assert(base_is("[list] Re: hello", "HELLO", true));
	test_assert(base_is("[a][b] [c] Re: hello", "HELLO", true));
	test_assert(base_is("Re: [PATCH] hello", "HELLO", true));
	/* a blob alone is not removed: nothing would be left (step 4) */
	test_assert(base_is("[PATCH]", "[PATCH]", false));
	test_assert(base_is("Re: [PATCH]", "[PATCH]", true));
	test_assert(base_is("[PATCH] hello", "HELLO", false));
	test_assert(base_is("[fwd: hello]", "HELLO", true));
	test_assert(base_is("Re: [Fwd: Re: hello (fwd)]", "HELLO", true));
	test_assert(base_is("[fwd: [fwd: hello]]", "HELLO", true));
	test_assert(base_is("Reply: hello", "REPLY: HELLO", false));
	test_assert(base_is("Rehello", "REHELLO", false));
	test_assert(base_is("Fwdx: hello", "FWDX: HELLO", false));
	test_assert(base_is("  hello \t  world  ", "HELLO WORLD", false));
	test_assert(base_is("Re:\thello\t\tworld", "HELLO WORLD", true));
	test_assert(base_is("", "", false));
	test_assert(base_is(NULL, "", false));
	test_assert(base_is("Re:", "", true));
	test_assert(base_is("(fwd)", "", true));
	/* RFC 2047 words are decoded before the markers are looked for;
	 * only ASCII letters are case-mapped */
	test_assert(base_is("=?UTF-8?Q?Re:_caf=C3=A9?=", "CAF\xc3\xa9", true));
	test_assert(base_is("=?ISO-8859-1?Q?Aw=3A_K=F6ln?= (fwd)",
	    "AW: K\xc3\xb6LN", true));
	/* a blob holds ASCII only (BLOBCHAR) */
	test_assert(base_is("[K\xc3\xb6ln] hello", "[K\xc3\xb6LN] HELLO",
	    false));
	test_end();
}

/* The sort program of "SORT <prog> UTF-8 ALL". */
static int
prog_of(const char *prog, struct sort_prog *p, const char **err)
{
	struct imap_cmd cmd;
	char buf[512];
	int r;

	snprintf(buf, sizeof(buf), "a SORT %s UTF-8 ALL", prog);
	*err = NULL;
	if (imap_cmd_parse(buf, strlen(buf), &cmd, err) < 0) {
		imap_cmd_free(&cmd);
		return -2;
	}
	r = imap_sort_parse_program(&cmd.args[0], p, err);
	imap_cmd_free(&cmd);
	return r;
}

static void
test_program(void)
{
	struct sort_prog p;
	const char *err;

	test_begin("imap_sort_parse_program");
	test_assert(prog_of("(REVERSE DATE subject)", &p, &err) == 0);
	test_assert(p.n == 2 && p.keys[0].kind == SORTK_DATE &&
	    p.keys[0].reverse && p.keys[1].kind == SORTK_SUBJECT &&
	    !p.keys[1].reverse);
	test_assert(imap_sort_needs(&p) == (SORT_NEED_DATE |
	    SORT_NEED_SUBJECT));
	test_assert(imap_sort_needs_info(&p));
	test_assert(prog_of("(ARRIVAL CC DATE FROM SIZE SUBJECT TO "
	    "DISPLAYFROM DISPLAYTO)", &p, &err) == 0 && p.n == 9);
	test_assert(prog_of("(SUBJECT FROM)", &p, &err) == 0 &&
	    !imap_sort_needs_info(&p));
	test_assert(prog_of("()", &p, &err) == -1);
	test_assert(prog_of("(REVERSE)", &p, &err) == -1);
	test_assert(prog_of("(DATE REVERSE)", &p, &err) == -1);
	test_assert(prog_of("(REVERSE REVERSE DATE)", &p, &err) == -1);
	test_assert(prog_of("(BOGUS)", &p, &err) == -1);
	test_assert(prog_of("(DATE (SUBJECT))", &p, &err) == -1);
	test_assert(prog_of("(\"DATE\")", &p, &err) == -1);
	test_assert(prog_of("DATE", &p, &err) == -1);
	test_assert(prog_of("(DATE DATE DATE DATE DATE DATE DATE DATE DATE "
	    "DATE DATE DATE DATE DATE DATE DATE)", &p, &err) == 0);
	test_assert(prog_of("(DATE DATE DATE DATE DATE DATE DATE DATE DATE "
	    "DATE DATE DATE DATE DATE DATE DATE DATE)", &p, &err) == -1);
	test_end();
}

static void
test_fill(void)
{
	struct sort_msg m;
	str_t hdr = STR_INIT;

	test_begin("imap_sort_msg_fill");
	memset(&m, 0, sizeof(m));
	m.internaldate = 1000;
	str_append(&hdr,
	    "From: \"Smith, Bob\" <Bob.Smith@Example.org>, other@x\r\n"
	    "To: undisclosed: ann@x, ben@y;, carl@z\r\n"
	    "Cc: (a comment) <cc.Local (c) @ (d) host.example>\r\n"
	    "Subject: Re: [list] The\r\n  Topic\r\n"
	    "Date: Mon, 2 Mar 2026 10:00:00 +0200\r\n"
	    "Message-ID: < id1@x >\r\n"
	    "In-Reply-To: <irt@x>\r\n"
	    "References: <r1@x> junk <r2@x>\r\n\t<r3@x>\r\n"
	    "\r\n"
	    "Subject: not the header\r\n");
	imap_sort_msg_fill(&m, hdr.data, hdr.len, 0xff);
	test_assert_streq(m.subject, "THE TOPIC");
	test_assert(m.reply);
	test_assert_streq(m.from, "BOB.SMITH");
	test_assert_streq(m.to, "ANN");
	test_assert_streq(m.cc, "CC.LOCAL");
	test_assert_streq(m.display_from, "SMITH, BOB");
	/* no display name: the addr-spec (RFC 5957) */
	test_assert_streq(m.display_to, "ANN@X");
	/* 10:00 +0200 is 08:00 UTC */
	test_assert(m.date == 1772438400LL);
	test_assert_streq(m.msgid, "id1@x");
	test_assert(m.nrefs == 3);
	test_assert(m.nrefs == 3 && strcmp(m.refs[0], "r1@x") == 0 &&
	    strcmp(m.refs[2], "r3@x") == 0);
	imap_sort_msg_clear(&m);

	/* LF line ends; no Date: INTERNALDATE; In-Reply-To without
	 * References; an encoded display name */
	memset(&m, 0, sizeof(m));
	m.internaldate = 1234;
	str_truncate(&hdr, 0);
	str_append(&hdr, "From: =?UTF-8?Q?J=C3=BCrgen?= <j@x>\n"
	    "In-Reply-To: John's message <irt1@x> <irt2@x>\nDate: garbage\n"
	    "\nSubject: body\n");
	imap_sort_msg_fill(&m, hdr.data, hdr.len, 0xff);
	test_assert(m.date == 1234);
	test_assert_streq(m.display_from, "J\xc3\xbcRGEN");
	test_assert_streq(m.from, "J");
	test_assert_streq(m.to, "");
	test_assert_streq(m.cc, "");
	test_assert_streq(m.display_to, "");
	test_assert_streq(m.subject, "");
	test_assert(m.msgid == NULL);
	test_assert(m.nrefs == 1 && strcmp(m.refs[0], "irt1@x") == 0);
	imap_sort_msg_clear(&m);

	/* References keeps the last IMAP_THREAD_REFS_MAX (64) IDs */
	str_truncate(&hdr, 0);
	str_append(&hdr, "References:");
	for (int i = 1; i <= 70; i++)
		str_printf(&hdr, " <r%d@x>", i);
	str_append(&hdr, "\r\n\r\n");
	memset(&m, 0, sizeof(m));
	imap_sort_msg_fill(&m, hdr.data, hdr.len, SORT_NEED_IDS);
	test_assert(m.nrefs == 64 && strcmp(m.refs[0], "r7@x") == 0 &&
	    strcmp(m.refs[63], "r70@x") == 0);
	imap_sort_msg_clear(&m);
	/* ... and at most 4096 bytes of them: 900-byte IDs, four kept; an
	 * ID longer than 998 bytes is skipped */
	str_truncate(&hdr, 0);
	str_append(&hdr, "References:");
	for (int i = 0; i < 10; i++) {
		str_printf(&hdr, " <%d", i);
		for (int k = 0; k < 898; k++)
			str_append_c(&hdr, 'i');
		str_append_c(&hdr, '>');
	}
	str_append(&hdr, " <");
	for (int k = 0; k < 999; k++)
		str_append_c(&hdr, 'j');
	str_append(&hdr, ">\r\n\r\n");
	memset(&m, 0, sizeof(m));
	imap_sort_msg_fill(&m, hdr.data, hdr.len, SORT_NEED_IDS);
	test_assert(m.nrefs == 4 && m.refs[0][0] == '6' &&
	    m.refs[3][0] == '9' && strlen(m.refs[3]) == 899);
	imap_sort_msg_clear(&m);
	/* string keys keep their first 1024 bytes */
	str_truncate(&hdr, 0);
	str_append(&hdr, "Subject: Re: ");
	for (int k = 0; k < 3000; k++)
		str_append_c(&hdr, 'a');
	str_append(&hdr, "\r\nFrom: \"");
	for (int k = 0; k < 2000; k++)
		str_append_c(&hdr, 'b');
	str_append(&hdr, "\" <x@y>\r\n\r\n");
	memset(&m, 0, sizeof(m));
	imap_sort_msg_fill(&m, hdr.data, hdr.len, 0xff);
	test_assert(strlen(m.subject) == 1024 && m.subject[0] == 'A' &&
	    m.reply);
	test_assert(strlen(m.display_from) == 1024 &&
	    m.display_from[1023] == 'B');
	imap_sort_msg_clear(&m);
	/* an empty header */
	memset(&m, 0, sizeof(m));
	imap_sort_msg_fill(&m, "", 0, 0xff);
	test_assert_streq(m.subject, "");
	test_assert(m.nrefs == 0 && m.msgid == NULL);
	imap_sort_msg_clear(&m);
	str_free(&hdr);
	test_end();
}

static bool
same_str(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The keys from a header and from the ENVELOPE made of it agree. */
static bool
envelope_agrees(const char *hdr)
{
	const unsigned need = 0xff & ~SORT_NEED_IDS;
	struct sort_msg a, b;
	str_t wire = STR_INIT, env = STR_INIT;
	bool ok;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.internaldate = b.internaldate = 777;
	imap_sort_msg_fill(&a, hdr, strlen(hdr), need);
	mime_to_crlf(hdr, strlen(hdr), &wire);
	mime_envelope_header(wire.data, wire.len, &env);
	ok = imap_sort_msg_fill_envelope(&b, str_c(&env), need) == 0 &&
	    a.date == b.date && a.reply == b.reply &&
	    same_str(a.subject, b.subject) && same_str(a.from, b.from) &&
	    same_str(a.to, b.to) && same_str(a.cc, b.cc) &&
	    same_str(a.display_from, b.display_from) &&
	    same_str(a.display_to, b.display_to);
	if (!ok)
		fprintf(stderr, "  envelope %s: [%s|%s|%s|%s|%s] vs "
		    "[%s|%s|%s|%s|%s]\n", str_c(&env), a.subject, a.from,
		    a.to, a.cc, a.display_from, b.subject, b.from, b.to, b.cc,
		    b.display_from);
	imap_sort_msg_clear(&a);
	imap_sort_msg_clear(&b);
	str_free(&wire);
	str_free(&env);
	return ok;
}

static void
test_fill_envelope(void)
{
	struct sort_msg m;

	test_begin("imap_sort_msg_fill_envelope");
	test_assert(envelope_agrees(
	    "From: \"Smith, Bob\" <Bob.Smith@Example.org>, other@x\n"
	    "To: undisclosed: ann@x, ben@y;, carl@z\n"
	    "Cc: (a comment) <cc.Local (c) @ (d) host.example>\n"
	    "Subject: Re: [list] The\n  Topic\n"
	    "Date: Mon, 2 Mar 2026 10:00:00 +0200\n\n"));
	test_assert(envelope_agrees(
	    "From: =?UTF-8?Q?J=C3=BCrgen?= <j@x>\nTo: undisclosed:;\n"
	    "Subject: =?UTF-8?Q?Fwd:_caf=C3=A9?= (fwd)\nDate: garbage\n\n"));
	test_assert(envelope_agrees("Subject: \"quoted\" \\ back\n"
	    "From: \"a \\\"b\\\" c\" <q@x>\nTo: plain@host\n\n"));
	test_assert(envelope_agrees("Subject: 8bit K\xc3\xb6ln\n"
	    "From: K\xc3\xb6ln <k@x>\nTo: <@route:r@x>\n\n"));
	test_assert(envelope_agrees("Subject: a)(b \"x)(\"\nTo: a@b\n\n"));
	test_assert(envelope_agrees("Subject: K\xc3\xb6ln )(x {3}\n"
	    "From: \"x)(y\" <z@w>\n\n"));
	test_assert(envelope_agrees("\n"));
	test_assert(envelope_agrees("From: local-only\nTo: @\n\n"));
	/* References are not in an ENVELOPE; garbage is refused */
	memset(&m, 0, sizeof(m));
	test_assert(imap_sort_msg_fill_envelope(&m, "(NIL NIL NIL NIL NIL "
	    "NIL NIL NIL NIL NIL)", SORT_NEED_IDS) == -1);
	test_assert(imap_sort_msg_fill_envelope(&m, "(NIL NIL)",
	    SORT_NEED_SUBJECT) == -1);
	test_assert(imap_sort_msg_fill_envelope(&m, "(NIL", SORT_NEED_SUBJECT)
	    == -1);
	test_assert(imap_sort_msg_fill_envelope(&m, "", SORT_NEED_SUBJECT)
	    == -1);
	test_assert(m.subject == NULL);
	test_assert(imap_sort_msg_fill_envelope(&m, "(NIL NIL NIL NIL NIL "
	    "NIL NIL NIL NIL NIL)", SORT_NEED_SUBJECT | SORT_NEED_FROM) == 0);
	test_assert(same_str(m.subject, "") && same_str(m.from, ""));
	imap_sort_msg_clear(&m);
	test_end();
}

/* A message for the sort and thread tests. */
static void
mk(struct sort_msg *m, uint32_t seq, const char *hdr, long long internal)
{
	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->uid = seq * 10;
	m->internaldate = internal;
	m->size = 100;
	imap_sort_msg_fill(m, hdr, strlen(hdr), 0xff);
}

static void
clear_all(struct sort_msg *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		imap_sort_msg_clear(&v[i]);
}

/* Sort v by prog; the sequence numbers in order as "1 2 3". */
static bool
sorted_is(struct sort_msg *v, size_t n, const char *prog, const char *want)
{
	struct sort_msg *p[16];
	struct sort_prog sp;
	const char *err;
	str_t got = STR_INIT;
	bool ok;

	if (prog_of(prog, &sp, &err) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		p[i] = &v[i];
	imap_sort(&sp, p, n);
	for (size_t i = 0; i < n; i++)
		str_printf(&got, "%s%u", i > 0 ? " " : "", p[i]->seq);
	ok = strcmp(str_c(&got), want) == 0;
	if (!ok)
		fprintf(stderr, "  SORT %s: [%s], want [%s]\n", prog,
		    str_c(&got), want);
	str_free(&got);
	return ok;
}

static void
test_sort(void)
{
	struct sort_msg v[6];

	test_begin("imap_sort");
	mk(&v[0], 1, "Subject: Re: beta\nFrom: Zed <zed@x>\nTo: b@x\n"
	    "Date: Tue, 3 Mar 2026 10:00:00 +0000\n\n", 500);
	mk(&v[1], 2, "Subject: alpha\nFrom: amy@x\nCc: c@x\n"
	    "Date: Mon, 2 Mar 2026 10:00:00 +0000\n\n", 400);
	mk(&v[2], 3, "Subject: BETA\nFrom: \"Amy\" <zz@x>\nTo: a@x\n\n", 300);
	mk(&v[3], 4, "Subject: [x] Alpha\nFrom: Bob <amy@y>\nTo: A@y\n"
	    "Date: Mon, 2 Mar 2026 10:00:00 +0000\n\n", 300);
	mk(&v[4], 5, "Subject: gamma\n"
	    "Date: Mon, 2 Mar 2026 11:00:00 +0100\n\n", 200);
	mk(&v[5], 6, "\n", 100);
	v[0].size = 30;
	v[1].size = 10;
	v[2].size = 30;
	v[3].size = 20;
	v[4].size = 10;
	v[5].size = 40;
	/* no Subject sorts first (""); ties by sequence number */
	test_assert(sorted_is(v, 6, "(SUBJECT)", "6 2 4 1 3 5"));
	test_assert(sorted_is(v, 6, "(REVERSE SUBJECT)", "5 1 3 2 4 6"));
	test_assert(sorted_is(v, 6, "(ARRIVAL)", "6 5 3 4 2 1"));
	test_assert(sorted_is(v, 6, "(REVERSE ARRIVAL)", "1 2 3 4 5 6"));
	/* DATE: 5 is 10:00 UTC like 2 and 4; 3 and 6 fall back to
	 * INTERNALDATE (1970) */
	test_assert(sorted_is(v, 6, "(DATE)", "6 3 2 4 5 1"));
	test_assert(sorted_is(v, 6, "(REVERSE DATE)", "1 2 4 5 3 6"));
	test_assert(sorted_is(v, 6, "(SIZE)", "2 5 4 1 3 6"));
	test_assert(sorted_is(v, 6, "(SIZE REVERSE ARRIVAL)", "2 5 4 1 3 6"));
	test_assert(sorted_is(v, 6, "(REVERSE SIZE ARRIVAL)", "6 3 1 4 5 2"));
	/* FROM: the local part only ("amy" twice, "zed", "zz", none) */
	test_assert(sorted_is(v, 6, "(FROM)", "5 6 2 4 1 3"));
	test_assert(sorted_is(v, 6, "(FROM REVERSE SUBJECT)", "5 6 2 4 1 3"));
	test_assert(sorted_is(v, 6, "(TO)", "2 5 6 3 4 1"));
	test_assert(sorted_is(v, 6, "(CC)", "1 3 4 5 6 2"));
	/* DISPLAYFROM: "Amy", "amy@x", "Bob", "Zed", "" */
	test_assert(sorted_is(v, 6, "(DISPLAYFROM)", "5 6 3 2 4 1"));
	test_assert(sorted_is(v, 6, "(DISPLAYTO)", "2 5 6 3 4 1"));
	test_assert(sorted_is(v, 6, "(SUBJECT DATE)", "6 2 4 3 1 5"));
	test_assert(sorted_is(v, 0, "(SUBJECT)", ""));
	clear_all(v, 6);
	test_end();
}

/* Thread n messages given as header texts (internaldate = 1000 + seq,
 * so messages without Date keep the mailbox's order). */
static bool
thread_is(enum thread_algo algo, const char *const *hdrs, size_t n,
    bool uid, const char *want)
{
	struct sort_msg *v = xcalloc(n + 1, sizeof(*v));
	str_t got = STR_INIT;
	bool ok;

	for (size_t i = 0; i < n; i++)
		mk(&v[i], (uint32_t)(i + 1), hdrs[i], 1000 + (long long)i);
	imap_thread(algo, v, n, uid, &got);
	ok = strcmp(str_c(&got), want) == 0;
	if (!ok)
		fprintf(stderr, "  THREAD: [%s], want [%s]\n", str_c(&got),
		    want);
	clear_all(v, n);
	free(v);
	str_free(&got);
	return ok;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void
test_orderedsubject(void)
{
	/* three subjects; the dates do not follow the mailbox order */
	static const char *const h[] = {
		"Subject: A\nDate: Mon, 2 Mar 2026 01:00:00 +0000\n",
		"Subject: Re: B\nDate: Mon, 2 Mar 2026 02:00:00 +0000\n",
		"Subject: B\nDate: Mon, 2 Mar 2026 03:00:00 +0000\n",
		"Subject: Re: A\nDate: Mon, 2 Mar 2026 04:00:00 +0000\n",
		"Subject: a\nDate: Mon, 2 Mar 2026 00:00:00 +0000\n",
		"Subject: C\nDate: Mon, 2 Mar 2026 05:00:00 +0000\n",
		"Subject: re: b\nDate: Mon, 2 Mar 2026 06:00:00 +0000\n",
	};
	static const char *const same[] = {
		"Subject: x\nDate: Mon, 2 Mar 2026 01:00:00 +0000\n",
		"Subject: x\nDate: Mon, 2 Mar 2026 01:00:00 +0000\n",
		"Subject: y\nDate: Mon, 2 Mar 2026 01:00:00 +0000\n",
	};

	test_begin("thread ORDEREDSUBJECT");
	/* thread A: 5 (earliest), then 1 and 4 as its children; B: 2
	 * with 3 and 7; C: 6 alone; threads by their first date */
	test_assert(thread_is(THREAD_ORDEREDSUBJECT, h, N(h), false,
	    "(5 (1)(4))(2 (3)(7))(6)"));
	test_assert(thread_is(THREAD_ORDEREDSUBJECT, h, N(h), true,
	    "(50 (10)(40))(20 (30)(70))(60)"));
	/* one child: in line; identical dates: sequence order */
	test_assert(thread_is(THREAD_ORDEREDSUBJECT, same, N(same), false,
	    "(1 2)(3)"));
	test_assert(thread_is(THREAD_ORDEREDSUBJECT, h, 0, false, ""));
	test_assert(thread_is(THREAD_ORDEREDSUBJECT, h, 1, false, "(1)"));
	test_end();
}

static void
test_references(void)
{
	/* 1 <- 2 <- 3, 1 <- 4; 5 and 6 reply to <x> which is not here;
	 * 7 has no Message-ID and no references but a "Re:" subject */
	static const char *const tree[] = {
		"Message-ID: <a>\nSubject: topic\n",
		"Message-ID: <b>\nReferences: <a>\nSubject: Re: topic\n",
		"Message-ID: <c>\nReferences: <a> <b>\nSubject: Re: topic\n",
		"Message-ID: <d>\nIn-Reply-To: <a>\nSubject: Re: topic\n",
		"Message-ID: <e>\nReferences: <x>\nSubject: other\n",
		"Message-ID: <f>\nReferences: <x>\nSubject: Re: other\n",
		"Subject: Re: topic\n",
	};
	/* References naming a chain of absent messages: the dummies go */
	static const char *const absent[] = {
		"Message-ID: <m1>\nReferences: <g1> <g2> <g3>\nSubject: s1\n",
		"Message-ID: <m2>\nReferences: <g1> <g2>\nSubject: s2\n",
	};
	/* a loop: 1 says <b> is its parent, 2 (<b>) says 1 is */
	static const char *const loop[] = {
		"Message-ID: <a>\nReferences: <b>\nSubject: one\n",
		"Message-ID: <b>\nReferences: <a>\nSubject: two\n",
		"Message-ID: <c>\nReferences: <c>\nSubject: three\n",
		"Message-ID: <d>\nReferences: <d> <e> <d>\nSubject: four\n",
	};
	/* a duplicate Message-ID: the second copy is a message of its own;
	 * replies thread under the first */
	static const char *const dup[] = {
		"Message-ID: <same>\nSubject: first\n",
		"Message-ID: <same>\nSubject: second\n",
		"Message-ID: <r>\nReferences: <same>\nSubject: Re: first\n",
	};
	/* the same subject without references: non-replies under a dummy,
	 * a reply under the original */
	static const char *const subj[] = {
		"Message-ID: <1>\nSubject: plan\n",
		"Message-ID: <2>\nSubject: plan\n",
		"Message-ID: <3>\nSubject: Re: lunch\n",
		"Message-ID: <4>\nSubject: lunch\n",
		"Message-ID: <5>\nSubject: \n",
		"Message-ID: <6>\nSubject: \n",
	};
	/* siblings by date, not by mailbox order; identical dates by
	 * sequence number */
	static const char *const dates[] = {
		"Message-ID: <p>\nSubject: s\n"
		"Date: Mon, 2 Mar 2026 10:00:00 +0000\n",
		"Message-ID: <q>\nReferences: <p>\nSubject: Re: s\n"
		"Date: Mon, 2 Mar 2026 12:00:00 +0000\n",
		"Message-ID: <r>\nReferences: <p>\nSubject: Re: s\n"
		"Date: Mon, 2 Mar 2026 11:00:00 +0000\n",
		"Message-ID: <s>\nReferences: <p>\nSubject: Re: s\n"
		"Date: Mon, 2 Mar 2026 11:00:00 +0000\n",
		"Message-ID: <t>\nSubject: earlier\n"
		"Date: Sun, 1 Mar 2026 10:00:00 +0000\n",
	};
	/* a message whose parent arrives later, and a parent presumed from
	 * one message's References corrected by the parent's own */
	static const char *const late[] = {
		"Message-ID: <c>\nReferences: <a> <b>\nSubject: Re: z\n",
		"Message-ID: <b>\nSubject: Re: z\n",
		"Message-ID: <a>\nSubject: z\n",
	};

	/* replies that named <p> and <k1>..<k3> as ancestors; then the
	 * <k> messages themselves, saying their parent is <q>: they move
	 * from the presumed <p> to <q>, and <p> is left without children */
	static const char *const moved[] = {
		"Message-ID: <r1>\nReferences: <p> <k1>\n",
		"Message-ID: <r2>\nReferences: <p> <k2>\n",
		"Message-ID: <r3>\nReferences: <p> <k3>\n",
		"Message-ID: <k1>\nReferences: <q>\n",
		"Message-ID: <k2>\nReferences: <q>\n",
		"Message-ID: <k3>\nReferences: <q>\n",
	};

	test_begin("thread REFERENCES");
	test_assert(thread_is(THREAD_REFERENCES, moved, N(moved), false,
	    "((4 1)(5 2)(6 3))"));
	test_assert(thread_is(THREAD_REFERENCES, tree, N(tree), false,
	    "(1 (2 3)(4)(7))((5)(6))"));
	test_assert(thread_is(THREAD_REFERENCES, tree, N(tree), true,
	    "(10 (20 30)(40)(70))((50)(60))"));
	test_assert(thread_is(THREAD_REFERENCES, absent, N(absent), false,
	    "((1)(2))"));
	test_assert(thread_is(THREAD_REFERENCES, loop, N(loop), false,
	    "(2 1)(3)(4)"));
	test_assert(thread_is(THREAD_REFERENCES, dup, N(dup), false,
	    "(1 3)(2)"));
	test_assert(thread_is(THREAD_REFERENCES, subj, N(subj), false,
	    "((1)(2))(4 3)(5)(6)"));
	test_assert(thread_is(THREAD_REFERENCES, dates, N(dates), false,
	    "(5)(1 (3)(4)(2))"));
	test_assert(thread_is(THREAD_REFERENCES, late, N(late), false,
	    "(3 2 1)"));
	test_assert(thread_is(THREAD_REFERENCES, tree, 0, false, ""));
	test_end();
}

/* A chain of 20,000 replies, each referring to the one before, and
 * 20,000 replies to one message: no recursion, linear enough. */
static void
test_deep(void)
{
	const size_t n = 20000;
	struct sort_msg *v = xcalloc(n, sizeof(*v));
	str_t out = STR_INIT, want = STR_INIT;
	char hdr[256];

	test_begin("thread REFERENCES deep");
	for (size_t i = 0; i < n; i++) {
		if (i == 0)
			snprintf(hdr, sizeof(hdr),
			    "Message-ID: <m0>\nSubject: deep\n");
		else
			snprintf(hdr, sizeof(hdr), "Message-ID: <m%zu>\n"
			    "In-Reply-To: <m%zu>\nSubject: Re: deep\n", i,
			    i - 1);
		mk(&v[i], (uint32_t)(i + 1), hdr, 1000 + (long long)i);
	}
	imap_thread(THREAD_REFERENCES, v, n, false, &out);
	str_append_c(&want, '(');
	for (size_t i = 0; i < n; i++)
		str_printf(&want, "%s%zu", i > 0 ? " " : "", i + 1);
	str_append_c(&want, ')');
	test_assert(strcmp(str_c(&out), str_c(&want)) == 0);
	clear_all(v, n);

	/* a wide one: every message replies to the first */
	for (size_t i = 0; i < n; i++) {
		snprintf(hdr, sizeof(hdr), "Message-ID: <w%zu>\n%s"
		    "Subject: wide\n", i, i > 0 ? "References: <w0>\n" : "");
		mk(&v[i], (uint32_t)(i + 1), hdr, 1000 + (long long)i);
	}
	str_truncate(&out, 0);
	str_truncate(&want, 0);
	imap_thread(THREAD_REFERENCES, v, n, false, &out);
	str_append(&want, "(1 ");
	for (size_t i = 1; i < n; i++)
		str_printf(&want, "(%zu)", i + 1);
	str_append_c(&want, ')');
	test_assert(strcmp(str_c(&out), str_c(&want)) == 0);
	clear_all(v, n);
	free(v);
	str_free(&out);
	str_free(&want);
	test_end();
}

/* Random messages (strings sharing long prefixes, 8-bit bytes, empty
 * and missing ones, equal and negative dates): imap_sort gives a
 * permutation in the order of a plain comparison of every key, ties by
 * sequence number, for programs of one to three keys, reversed too. */
static uint32_t rnd_state = 12345;

static uint32_t
rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}

static char *
rnd_str(void)
{
	static const char *const stems[] = { "", "a", "meeting", "meeting",
	    "meeting report", "meeting report q", "\xc3\xa9t\xc3\xa9",
	    "zz", "\x7f" };
	char buf[64];
	const char *stem = stems[rnd() % (sizeof(stems) / sizeof(stems[0]))];

	if (rnd() % 7 == 0)
		return NULL;
	snprintf(buf, sizeof(buf), "%s%c", stem,
	    rnd() % 3 == 0 ? '\0' : (char)(' ' + rnd() % 95));
	return xstrdup(buf);
}

static int
ref_str(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

static int
ref_key(enum sort_kind k, const struct sort_msg *a, const struct sort_msg *b)
{
	switch (k) {
	case SORTK_ARRIVAL:
		return (a->internaldate > b->internaldate) -
		    (a->internaldate < b->internaldate);
	case SORTK_DATE:
		return (a->date > b->date) - (a->date < b->date);
	case SORTK_SIZE:
		return (a->size > b->size) - (a->size < b->size);
	case SORTK_CC:
		return ref_str(a->cc, b->cc);
	case SORTK_FROM:
		return ref_str(a->from, b->from);
	case SORTK_SUBJECT:
		return ref_str(a->subject, b->subject);
	case SORTK_TO:
		return ref_str(a->to, b->to);
	case SORTK_DISPLAYFROM:
		return ref_str(a->display_from, b->display_from);
	case SORTK_DISPLAYTO:
		return ref_str(a->display_to, b->display_to);
	}
	return 0;
}

static int
ref_cmp(const struct sort_prog *p, const struct sort_msg *a,
    const struct sort_msg *b)
{
	for (size_t i = 0; i < p->n; i++) {
		int r = ref_key(p->keys[i].kind, a, b);

		if (r != 0)
			return p->keys[i].reverse ? -r : r;
	}
	return (a->seq > b->seq) - (a->seq < b->seq);
}

static void
test_sort_random(void)
{
	static const char *const progs[] = { "(SUBJECT)", "(REVERSE SUBJECT)",
	    "(DATE)", "(REVERSE DATE)", "(ARRIVAL)", "(SIZE)",
	    "(REVERSE SIZE)", "(FROM)", "(TO DATE)", "(CC REVERSE ARRIVAL)",
	    "(DISPLAYFROM SUBJECT)", "(REVERSE DISPLAYTO REVERSE SIZE)",
	    "(SUBJECT REVERSE DATE SIZE)" };
	enum { N = 1500 };
	struct sort_msg *v = xcalloc(N, sizeof(*v));
	struct sort_msg **p = xcalloc(N, sizeof(*p));
	unsigned char *seen = xcalloc(N + 1, 1);

	test_begin("imap_sort random");
	for (size_t i = 0; i < N; i++) {
		v[i].seq = (uint32_t)i + 1;
		v[i].uid = (uint32_t)i * 3 + 1;
		v[i].size = rnd() % 5 == 0 ? UINT64_MAX - rnd() % 3 : rnd() % 50;
		v[i].internaldate = (long long)(rnd() % 40) - 20;
		v[i].date = rnd() % 9 == 0 ? -(long long)(rnd() % 3) :
		    (long long)(rnd() % 30) * 1000000000LL;
		v[i].subject = rnd_str();
		v[i].from = rnd_str();
		v[i].to = rnd_str();
		v[i].cc = rnd_str();
		v[i].display_from = rnd_str();
		v[i].display_to = rnd_str();
	}
	for (size_t k = 0; k < sizeof(progs) / sizeof(progs[0]); k++) {
		struct sort_prog sp;
		const char *err;
		bool ok = true;

		test_assert(prog_of(progs[k], &sp, &err) == 0);
		for (size_t i = 0; i < N; i++)
			p[(i * 7919) % N] = &v[i];	/* shuffled */
		imap_sort(&sp, p, N);
		memset(seen, 0, N + 1);
		for (size_t i = 0; i < N; i++) {
			if (seen[p[i]->seq]++)
				ok = false;
			if (i > 0 && ref_cmp(&sp, p[i - 1], p[i]) >= 0)
				ok = false;
		}
		if (!ok)
			fprintf(stderr, "  SORT %s out of order\n", progs[k]);
		test_assert(ok);
	}
	clear_all(v, N);
	free(v);
	free(p);
	free(seen);
	test_end();
}

int
main(void)
{
	test_base_subject();
	test_program();
	test_fill();
	test_fill_envelope();
	test_sort();
	test_sort_random();
	test_orderedsubject();
	test_references();
	test_deep();
	return test_done();
}
