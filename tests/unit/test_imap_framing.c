/*
 * test_imap_framing.c: IMAP command framing (lib/imap/framing): the
 * events for commands with synchronising and LITERAL+ literals, refused
 * commands, overlong lines, IDLE and AUTHENTICATE lines; the same events
 * however the input is cut (at every split point, and byte by byte);
 * consumed input wiped; imap_cmd_wipe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/imap_framing_sim.h"
#include "lib/base/limits.h"
#include "tests/unit/test.h"

/* Small bounds, so every one is reached by short inputs. */
static const struct imap_framer_limits small = {
	.line_max = 40, .literal_max = 20, .cmd_max = 100, .append_max = 60,
};
/* ... and a bound before login below them. */
static const struct imap_framer_limits small_pre = {
	.line_max = 40, .literal_max = 20, .cmd_max = 100, .append_max = 60,
	.preauth_max = 30,
};
/* ... and APPEND messages over 10 bytes handed out (spooled). */
static const struct imap_framer_limits small_spool = {
	.line_max = 40, .literal_max = 20, .cmd_max = 100, .append_max = 60,
	.preauth_max = 30, .spool_min = 10,
};
static const struct imap_framer_limits real = {
	.line_max = IMAP_LINE_MAX, .literal_max = IMAP_LITERAL_MAX,
	.cmd_max = IMAP_CMD_MAX, .append_max = 10 * 1024 * 1024,
	.preauth_max = IMAP_PREAUTH_CMD_MAX,
};

/* The events for in, fed whole. */
static char *
events(const struct imap_framer_limits *lim, const char *in, size_t len,
    bool *wiped_r)
{
	struct sim m;
	bool wiped;
	char *s;

	sim_run(lim, in, len, NULL, 0, &m, &wiped);
	if (wiped_r != NULL)
		*wiped_r = wiped;
	s = xstrdup(str_c(&m.log));
	str_free(&m.log);
	return s;
}

static void
check(const struct imap_framer_limits *lim, const char *in, size_t len,
    const char *want)
{
	char *got = events(lim, in, len, NULL);

	test_assert_streq(got, want);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "  input %.60s...\n  got  %s\n  want %s\n", in,
		    got, want);
	free(got);
}
#define CHECK(lim, in, want) check(lim, in, sizeof(in) - 1, want)

/* The same events whole, split at every point, byte by byte and in
 * pieces of 2, 3, 7 and 64 bytes. Returns false on a difference. */
static bool
trickle(const struct imap_framer_limits *lim, const char *in, size_t len)
{
	struct sim whole, other;
	size_t *cuts = xcalloc(len + 1, sizeof(*cuts));
	bool wiped, ok = true;
	static const size_t steps[] = { 1, 2, 3, 7, 64 };

	sim_run(lim, in, len, NULL, 0, &whole, &wiped);
	for (size_t i = 1; i < len && ok; i++) {
		cuts[0] = i;
		sim_run(lim, in, len, cuts, 1, &other, &wiped);
		ok = sim_same(&whole, &other);
		if (!ok)
			fprintf(stderr, "  split at %zu: %s\n  whole: %s\n", i,
			    str_c(&other.log), str_c(&whole.log));
		str_free(&other.log);
	}
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]) && ok; s++) {
		size_t n = 0;

		for (size_t i = steps[s]; i < len; i += steps[s])
			cuts[n++] = i;
		sim_run(lim, in, len, cuts, n, &other, &wiped);
		ok = sim_same(&whole, &other);
		if (!ok)
			fprintf(stderr, "  pieces of %zu: %s\n  whole: %s\n",
			    steps[s], str_c(&other.log), str_c(&whole.log));
		str_free(&other.log);
	}
	str_free(&whole.log);
	free(cuts);
	return ok;
}

static void
test_commands(void)
{
	test_begin("framing: commands and literals");
	CHECK(&small, "a NOOP\r\nb CAPABILITY\n", "C:a NOOP|C:b CAPABILITY|");
	/* a synchronising literal waits for "+"; LITERAL+ does not */
	CHECK(&small, "a LOGIN {3}\r\nbob {4+}\r\npass\r\n",
	    "+|C:a LOGIN {3}\r\nbob {4+}\r\npass|");
	/* literal data is data, whatever it looks like */
	CHECK(&small, "a SEARCH TEXT {8+}\r\nb NOOP\r\n\r\n",
	    "C:a SEARCH TEXT {8+}\r\nb NOOP\r\n|");
	CHECK(&small, "a X {0}\r\n\r\n", "+|C:a X {0}\r\n|");
	/* a partial line is no event */
	CHECK(&small, "a NOO", "");
	test_end();
}

static void
test_refused(void)
{
	char in[512];

	test_begin("framing: refused commands");
	/* synchronising: no "+", so the next line is a command */
	CHECK(&small, "b SEARCH TEXT {21}\r\nc NOOP\r\n",
	    "R:b BAD Literal too large|C:c NOOP|");
	/* LITERAL+: its data is dropped, never run */
	CHECK(&small, "b SEARCH TEXT {21+}\r\nx NOOP\r\ny LOGOUT\r\nzzzz\r\n"
	    "c NOOP\r\n", "R:b BAD Literal too large|C:c NOOP|");
	/* a refused command's later LITERAL+ literals too */
	CHECK(&small, "b X {21+}\r\n123456789012345678901 {3+}\r\nq Q\r\n"
	    "c NOOP\r\n", "R:b BAD Literal too large|C:c NOOP|");
	/* too large even to drop: close */
	CHECK(&small, "b X {101+}\r\nc NOOP\r\n",
	    "R:b BAD Literal too large BYE:Literal too large|");
	/* APPEND: small before login, append_max after */
	CHECK(&small, "a APPEND INBOX {30}\r\n",
	    "R:a BAD Literal too large|");
	CHECK(&small, "l LOGIN u p\r\na APPEND INBOX {30}\r\n"
	    "123456789012345678901234567890\r\n",
	    "C:l LOGIN u p|+|C:a APPEND INBOX {30}\r\n"
	    "123456789012345678901234567890|");
	CHECK(&small, "l LOGIN u p\r\na APPEND INBOX {61}\r\nc NOOP\r\n",
	    "C:l LOGIN u p|R:a NO [TOOBIG] Message too large|C:c NOOP|");
	/* a command over cmd_max */
	snprintf(in, sizeof(in), "c X {20+}\r\n%s {20+}\r\n%s {20+}\r\n%s"
	    " {20+}\r\n%s x\r\nd NOOP\r\n", "aaaaaaaaaaaaaaaaaaaa",
	    "bbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccc",
	    "dddddddddddddddddddd");
	check(&small, in, strlen(in), "R:c BAD Command too long|C:d NOOP|");
	test_end();
}

static void
test_long_lines(void)
{
	char in[256];
	size_t n;

	test_begin("framing: overlong lines");
	CHECK(&small, "o SEARCH aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	    "n NOOP\r\n", "R:o BAD Line too long|C:n NOOP|");
	/* its tail announces a LITERAL+ literal: dropped too */
	CHECK(&small, "o X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {5+}\r\n"
	    "ABCDE\r\nn NOOP\r\n", "R:o BAD Line too long|C:n NOOP|");
	/* no plausible tag */
	CHECK(&small, " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
	    "R:* BAD Line too long|");
	/* the bound: line_max bytes and CRLF pass, one more does not */
	n = (size_t)snprintf(in, sizeof(in), "a %.*s\r\n",
	    (int)small.line_max - 2, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxx");
	test_assert(n == small.line_max + 2);
	{
		char *got = events(&small, in, n, NULL);

		test_assert(strncmp(got, "C:a xxx", 7) == 0);
		free(got);
	}
	n = (size_t)snprintf(in, sizeof(in), "a %.*s\r\n",
	    (int)small.line_max - 1, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxx");
	check(&small, in, n, "R:a BAD Line too long|");
	/* plain lines: IDLE and AUTHENTICATE */
	CHECK(&small, "i IDLE\r\nDONE\r\nn NOOP\r\n", "C:i IDLE|L:DONE|C:n NOOP|");
	CHECK(&small, "a AUTHENTICATE PLAIN\r\nAHVAcA==\r\nn NOOP\r\n",
	    "C:a AUTHENTICATE PLAIN|L:AHVAcA==|C:n NOOP|");
	CHECK(&small, "a AUTHENTICATE PLAIN AHVAcA==\r\nn NOOP\r\n",
	    "C:a AUTHENTICATE PLAIN AHVAcA==|C:n NOOP|");
	CHECK(&small, "i IDLE\r\nDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD\r\n"
	    "n NOOP\r\n", "C:i IDLE|X|C:n NOOP|");
	/* a "{5}" in a plain line is no literal */
	CHECK(&small, "i IDLE\r\nDONE {5}\r\nn NOOP\r\n",
	    "C:i IDLE|L:DONE {5}|C:n NOOP|");
	test_end();
}

/* Before login: the whole command within preauth_max, refused as soon
 * as it would pass it; after login the usual bounds. */
static void
test_preauth(void)
{
	test_begin("framing: the command bound before login");
	CHECK(&small_pre, "a LOGIN {3}\r\nbob {4+}\r\npass\r\n",
	    "+|C:a LOGIN {3}\r\nbob {4+}\r\npass|");
	/* a literal that would pass it: refused before its data; a
	 * LITERAL+ one within preauth_max is dropped, never run */
	CHECK(&small_pre, "a LOGIN {3}\r\nbob {20+}\r\nc NOOP xxxxxxxxxxxxx"
	    "\r\nd NOOP\r\n", "+|R:a BAD Command too long|C:d NOOP|");
	CHECK(&small_pre, "a LOGIN {3}\r\nbob {20}\r\nd NOOP\r\n",
	    "+|R:a BAD Command too long|C:d NOOP|");
	/* a LITERAL+ literal over it: close */
	CHECK(&small_pre, "a LOGIN u {31+}\r\nd NOOP\r\n",
	    "R:a BAD Literal too large BYE:Literal too large|");
	CHECK(&small_pre, "a LOGIN {3}\r\nbob {19+}\r\nd NOOP\r\n",
	    "+|R:a BAD Command too long|");
	/* a line: at preauth_max + 2 without its LF */
	CHECK(&small_pre, "a LOGIN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	    "d NOOP\r\n", "R:a BAD Line too long|C:d NOOP|");
	CHECK(&small_pre, "a LOGIN {3}\r\nbob aaaaaaaaaaaaaaaaaaaaa\r\n"
	    "d NOOP\r\n", "+|R:a BAD Command too long|C:d NOOP|");
	/* a SASL response line too */
	CHECK(&small_pre, "a AUTHENTICATE PLAIN\r\n"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nd NOOP\r\n",
	    "C:a AUTHENTICATE PLAIN|X|C:d NOOP|");
	/* after login: line_max, literal_max, cmd_max */
	CHECK(&small_pre, "l LOGIN u p\r\no X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "\r\np X {20+}\r\n12345678901234567890 {20+}\r\n"
	    "12345678901234567890\r\n",
	    "C:l LOGIN u p|C:o X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa|"
	    "C:p X {20+}\r\n12345678901234567890 {20+}\r\n"
	    "12345678901234567890|");
	test_end();
}

/* Inputs for the trickle test: each case above, pipelined sequences,
 * and the real bounds. */
static void
test_trickle(void)
{
	static const char *cases[] = {
		"a NOOP\r\nb CAPABILITY\n",
		"a LOGIN {3}\r\nbob {4+}\r\npass\r\nb NOOP\r\n",
		"a SEARCH TEXT {8+}\r\nb NOOP\r\n\r\nc X {0}\r\n\r\n",
		"b SEARCH TEXT {21}\r\nc NOOP\r\n",
		"b SEARCH TEXT {21+}\r\nx NOOP\r\ny LOGOUT\r\nzzzz\r\nc NOOP\r\n",
		"b X {21+}\r\n123456789012345678901 {3+}\r\nq Q\r\nc NOOP\r\n",
		"b X {101+}\r\nc NOOP\r\n",
		"l LOGIN u p\r\na APPEND INBOX {30}\r\n"
		    "123456789012345678901234567890\r\nb APPEND INBOX {61+}\r\n",
		"l LOGIN u p\r\na APPEND INBOX {61}\r\nc NOOP\r\n",
		"o SEARCH aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
		    "n NOOP\r\n",
		"o X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {5+}\r\n"
		    "ABCDE\r\nn NOOP\r\n",
		"o X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nn NOOP\r\n",
		"o X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\rn NOOP\n",
		"c X {20+}\r\naaaaaaaaaaaaaaaaaaaa {20+}\r\nbbbbbbbbbbbbbbbbbbbb"
		    " {20+}\r\ncccccccccccccccccccc {20+}\r\n"
		    "dddddddddddddddddddd x\r\nd NOOP\r\n",
		"c X {5+}\r\naaaaa aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaa {2+}\r\nzz\r\nd NOOP\r\n",
		"i IDLE\r\nDONE\r\na AUTHENTICATE PLAIN\r\nAHVAcA==\r\n"
		    "i IDLE\r\nDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD"
		    " {3+}\r\nxyz\r\nn NOOP\r\n",
		"s STARTTLS\r\nx LOGIN u p\r\n",
		"a LOGIN {3}\r\nbob {20+}\r\nc NOOP xxxxxxxxxxxxx\r\n"
		    "d NOOP\r\n",
		"a LOGIN {3}\r\nbob {20}\r\nd NOOP\r\n",
		"a LOGIN u {31+}\r\nd NOOP\r\n",
		"a LOGIN {3}\r\nbob {19+}\r\nd NOOP\r\n",
		"a LOGIN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nd NOOP\r\n",
		"a LOGIN {3}\r\nbob aaaaaaaaaaaaaaaaaaaaa\r\nd NOOP\r\n",
		"a AUTHENTICATE PLAIN\r\n"
		    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nd NOOP\r\n",
	};
	char *big;
	size_t n;

	test_begin("framing: trickle (every split point, byte by byte)");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		test_assert(trickle(&small, cases[i], strlen(cases[i])));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		test_assert(trickle(&small_pre, cases[i], strlen(cases[i])));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		test_assert(trickle(&real, cases[i], strlen(cases[i])));
	/* the real line bound, pieces only (each split is a full run) */
	big = xmalloc(3 * IMAP_LINE_MAX);
	n = (size_t)snprintf(big, 3 * IMAP_LINE_MAX, "o SEARCH TEXT ");
	memset(big + n, 'q', IMAP_LINE_MAX);
	n += IMAP_LINE_MAX;
	n += (size_t)snprintf(big + n, 64, " {4+}\r\nWXYZ\r\nn NOOP\r\n");
	{
		struct sim whole, bytes;
		size_t *cuts = xcalloc(n, sizeof(*cuts));
		bool wiped;

		for (size_t i = 1; i < n; i++)
			cuts[i - 1] = i;
		sim_run(&real, big, n, NULL, 0, &whole, &wiped);
		test_assert_streq(str_c(&whole.log),
		    "R:o BAD Line too long|C:n NOOP|");
		sim_run(&real, big, n, cuts, n - 1, &bytes, &wiped);
		test_assert(sim_same(&whole, &bytes));
		str_free(&whole.log);
		str_free(&bytes.log);
		free(cuts);
	}
	free(big);
	test_end();
}

static void
test_stop_and_wipe(void)
{
	static const char secrets[] = "a LOGIN {3}\r\nbob {4+}\r\npass\r\n"
	    "i IDLE\r\nDONE\r\nb X {21+}\r\n123456789012345678901\r\n";
	static const char append[] = "l LOGIN u p\r\n"
	    "a APPEND INBOX {5+}\r\nhello\r\n";
	struct imap_framer f;
	struct imap_frame ev;
	char in[64];
	size_t used, n;
	bool wiped;
	char *got;

	test_begin("framing: stops at each event, wipes what it took");
	/* STARTTLS: nothing after its line is taken (CVE-2011-0411) */
	imap_framer_init(&f, &real);
	n = (size_t)snprintf(in, sizeof(in), "s STARTTLS\r\nx LOGIN u p\r\n");
	test_assert(imap_framer_step(&f, in, n, 0, &used, &ev) ==
	    IMAP_FRAME_COMMAND);
	test_assert(used == strlen("s STARTTLS\r\n"));
	test_assert(ev.lines == 1);
	test_assert(memcmp(in + used, "x LOGIN", 7) == 0);
	for (size_t i = 0; i < used; i++)
		test_assert(in[i] == '\0');
	imap_framer_release(&f, true);
	test_assert(!imap_framer_partial(&f, 0));
	test_assert(imap_framer_partial(&f, 1));
	/* a partial line; no deadline while literal data is awaited */
	n = (size_t)snprintf(in, sizeof(in), "a LOGIN {3}\r\nbo");
	test_assert(imap_framer_step(&f, in, 7, 0, &used, &ev) ==
	    IMAP_FRAME_NONE && used == 7);
	test_assert(imap_framer_partial(&f, 0));
	test_assert(imap_framer_step(&f, in + 7, n - 7, 0, &used, &ev) ==
	    IMAP_FRAME_CONTINUE && used == 6);
	test_assert(!imap_framer_partial(&f, 2));
	imap_framer_deinit(&f);

	/* everything consumed is wiped: lines, literals, plain lines */
	got = events(&small, secrets, sizeof(secrets) - 1, &wiped);
	test_assert(wiped);
	free(got);
	/* ... but an APPEND's message */
	got = events(&small, append, sizeof(append) - 1, &wiped);
	test_assert_streq(got, "C:l LOGIN u p|C:a APPEND INBOX {5+}\r\nhello|");
	test_assert(!wiped);
	free(got);
	test_end();
}

static const char *spool_cases[] = {
	/* synchronising: one event for the spool and the "+" */
	"l LOGIN u p\r\na APPEND INBOX {12}\r\nhello world!\r\nn NOOP\r\n",
	"l LOGIN u p\r\na APPEND INBOX (\\Seen) {12+}\r\nhello\r\nworld"
	    "\r\nn NOOP\r\n",
	/* at spool_min: kept in the command */
	"l LOGIN u p\r\na APPEND INBOX {10}\r\n0123456789\r\n",
	/* not logged in: nothing is spooled */
	"a APPEND I {11}\r\nhello world\r\n",
	/* after a spooled literal (MULTIAPPEND): another spooled, a small
	 * one kept, one over append_max refused */
	"l LOGIN u p\r\na APPEND {12+}\r\nhello world! {11}\r\nhello again"
	    "\r\nn NOOP\r\n",
	"l LOGIN u p\r\na APPEND {12+}\r\nhello world! {3}\r\nabc\r\n",
	"l LOGIN u p\r\na APPEND {12+}\r\nhello world! {61}\r\nn NOOP\r\n",
	/* too large: refused before a byte is spooled */
	"l LOGIN u p\r\na APPEND INBOX {61}\r\nn NOOP\r\n",
	/* small literals do not add up past spool_min + cmd_max */
	"l LOGIN u p\r\na APPEND {10+}\r\n0123456789 {10+}\r\n0123456789"
	    " {10+}\r\n0123456789 {10+}\r\n0123456789 {10+}\r\n0123456789"
	    " {10+}\r\n0123456789 {10+}\r\n0123456789 {10+}\r\n0123456789"
	    " {10+}\r\n0123456789\r\nn NOOP\r\n",
	/* REPLACE and UID REPLACE (RFC 8508) carry a message as APPEND */
	"l LOGIN u p\r\na UID REPLACE 1 X {12+}\r\nhello world!\r\nn NOOP\r\n",
	"l LOGIN u p\r\na REPLACE 1 X {21}\r\n",
	"l LOGIN u p\r\na UID FETCH 1 {12+}\r\nhello world!\r\nn NOOP\r\n",
	/* a spooled command refused later (its line too long) */
	"l LOGIN u p\r\na APPEND {12+}\r\nhello world! aaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nn NOOP\r\n",
};

static void
test_spool(void)
{
	static const char *want[] = {
		"C:l LOGIN u p|S:12|D:hello world!|C:a APPEND INBOX {12}\r\n|"
		    "C:n NOOP|",
		"C:l LOGIN u p|S:12+|D:hello\r\nworld|"
		    "C:a APPEND INBOX (\\Seen) {12+}\r\n|C:n NOOP|",
		"C:l LOGIN u p|+|C:a APPEND INBOX {10}\r\n0123456789|",
		"+|C:a APPEND I {11}\r\nhello world|",
		"C:l LOGIN u p|S:12+|D:hello world!|S:11|D:hello again|"
		    "C:a APPEND {12+}\r\n {11}\r\n|C:n NOOP|",
		"C:l LOGIN u p|S:12+|D:hello world!|+|"
		    "C:a APPEND {12+}\r\n {3}\r\nabc|",
		"C:l LOGIN u p|S:12+|D:hello world!|"
		    "R:a NO [TOOBIG] Message too large|C:n NOOP|",
		"C:l LOGIN u p|R:a NO [TOOBIG] Message too large|C:n NOOP|",
		"C:l LOGIN u p|R:a BAD Command too long|C:n NOOP|",
		"C:l LOGIN u p|S:12+|D:hello world!|"
		    "C:a UID REPLACE 1 X {12+}\r\n|C:n NOOP|",
		"C:l LOGIN u p|S:21|",
		"C:l LOGIN u p|C:a UID FETCH 1 {12+}\r\nhello world!|"
		    "C:n NOOP|",
		"C:l LOGIN u p|S:12+|D:hello world!|R:a BAD Line too long|"
		    "C:n NOOP|",
	};
	static const char cmd_text[] = "a APPEND INBOX {12}\r\n";
	struct imap_framer f;
	struct imap_frame ev;
	struct imap_cmd cmd;
	const char *err = NULL;
	char in[128];
	size_t used, n, off = 0;

	test_begin("framing: large APPEND literals handed out (spool)");
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		check(&small_spool, spool_cases[i], strlen(spool_cases[i]),
		    want[i]);
		test_assert(trickle(&small_spool, spool_cases[i],
		    strlen(spool_cases[i])));
	}
	/* the data points into the input; the command parses with the
	 * spooled literal as an empty string */
	imap_framer_init(&f, &small_spool);
	n = (size_t)snprintf(in, sizeof(in), "%shello world!\r\n", cmd_text);
	test_assert(imap_framer_step(&f, in, n, IMAP_FRAMER_APPEND, &used,
	    &ev) == IMAP_FRAME_SPOOL && ev.size == 12 && ev.cont);
	off += used;
	test_assert(imap_framer_step(&f, in + off, 5, IMAP_FRAMER_APPEND,
	    &used, &ev) == IMAP_FRAME_DATA && used == 5 && !ev.last);
	test_assert(ev.data == in + off && memcmp(ev.data, "hello", 5) == 0);
	test_assert(!imap_framer_partial(&f, 3));
	off += used;
	test_assert(imap_framer_step(&f, in + off, n - off,
	    IMAP_FRAMER_APPEND, &used, &ev) == IMAP_FRAME_DATA &&
	    used == 7 && ev.last);
	off += used;
	test_assert(imap_framer_step(&f, in + off, n - off,
	    IMAP_FRAMER_APPEND, &used, &ev) == IMAP_FRAME_COMMAND);
	test_assert(ev.spool_at == strlen("a APPEND INBOX "));
	test_assert(imap_cmd_parse_spooled(ev.data, ev.len, ev.spool_at, &cmd,
	    &err) == 0);
	test_assert(cmd.nargs == 2 && cmd.args[1].spooled &&
	    cmd.args[1].literal && cmd.args[1].len == 0 &&
	    cmd.args[1].str != NULL && cmd.args[1].str[0] == '\0');
	test_assert(!cmd.args[0].spooled);
	imap_cmd_free(&cmd);
	/* without spool_at, the same text is a literal short of data */
	test_assert(imap_cmd_parse(ev.data, ev.len, &cmd, &err) < 0);
	imap_cmd_free(&cmd);
	imap_framer_release(&f, false);
	/* the next command has no spooled literal */
	n = (size_t)snprintf(in, sizeof(in), "b NOOP\r\n");
	test_assert(imap_framer_step(&f, in, n, IMAP_FRAMER_APPEND, &used,
	    &ev) == IMAP_FRAME_COMMAND && ev.spool_at == SIZE_MAX);
	imap_framer_deinit(&f);
	test_end();
}

/* MULTIAPPEND: IMAP_FRAMER_SPOOLS literals of one APPEND spooled, each
 * found by imap_cmd_parse_spools; one more refused with NO [LIMIT]. */
static void
test_spool_many(void)
{
	static const struct imap_framer_limits lim = {
		.line_max = 40, .literal_max = 20, .cmd_max = 1000,
		.append_max = 60, .spool_min = 10,
	};
	str_t in = STR_INIT, want = STR_INIT;
	struct imap_framer f;
	struct imap_frame ev;
	struct imap_cmd cmd;
	const char *err = NULL;
	size_t used, off = 0, nspooled = 0;
	char *got;

	test_begin("framing: MULTIAPPEND, several literals spooled");
	for (int extra = 0; extra <= 1; extra++) {
		str_truncate(&in, 0);
		str_truncate(&want, 0);
		str_append(&in, "l LOGIN u p\r\na APPEND X");
		str_append(&want, "C:l LOGIN u p|");
		for (int i = 0; i < IMAP_FRAMER_SPOOLS + extra; i++) {
			str_printf(&in, " {11+}\r\nhello %05d", i);
			if (i < IMAP_FRAMER_SPOOLS)
				str_printf(&want, "S:11+|D:hello %05d|", i);
		}
		str_append(&in, "\r\nn NOOP\r\n");
		if (extra) {
			str_append(&want, "R:a NO [LIMIT] Too many large "
			    "messages in one APPEND|");
		} else {
			str_append(&want, "C:a APPEND X");
			for (int i = 0; i < IMAP_FRAMER_SPOOLS; i++)
				str_append(&want, " {11+}\r\n");
			str_append(&want, "|");
		}
		str_append(&want, "C:n NOOP|");
		got = events(&lim, str_c(&in), in.len, NULL);
		test_assert_streq(got, str_c(&want));
		free(got);
		test_assert(trickle(&lim, str_c(&in), in.len));
	}
	/* the offsets given parse as spooled arguments, in order */
	str_truncate(&in, 0);
	str_append(&in, "a APPEND X {11}\r\nhello again (\\Seen) {12+}\r\n"
	    "hello world! {3}\r\nabc {13}\r\nhello, world!\r\n");
	imap_framer_init(&f, &lim);
	for (;;) {
		test_assert(imap_framer_step(&f, in.data + off, in.len - off,
		    IMAP_FRAMER_APPEND, &used, &ev) != IMAP_FRAME_NONE);
		off += used;
		if (ev.type == IMAP_FRAME_SPOOL)
			nspooled++;
		if (ev.type == IMAP_FRAME_COMMAND || off == in.len)
			break;
	}
	test_assert(ev.type == IMAP_FRAME_COMMAND && nspooled == 3 &&
	    ev.nspools == 3 && ev.spool_at == ev.spools[0]);
	test_assert(imap_cmd_parse_spools(ev.data, ev.len, ev.spools,
	    ev.nspools, &cmd, &err) == 0);
	test_assert(cmd.nargs == 6 && cmd.args[1].spooled &&
	    cmd.args[3].spooled && !cmd.args[4].spooled &&
	    cmd.args[4].len == 3 && cmd.args[5].spooled &&
	    cmd.args[2].type == IMAP_ARG_LIST);
	imap_cmd_free(&cmd);
	/* with the first one alone, the later ones lack their data */
	test_assert(imap_cmd_parse_spools(ev.data, ev.len, ev.spools, 1,
	    &cmd, &err) < 0);
	imap_cmd_free(&cmd);
	imap_framer_deinit(&f);
	str_free(&in);
	str_free(&want);
	test_end();
}

static void
test_cmd_wipe(void)
{
	static const char text[] = "a LOGIN user {11+}\r\nsecret-pass";
	struct imap_cmd cmd;
	const char *err = NULL;
	char *pass;

	test_begin("imap_cmd_wipe: LOGIN's arguments zeroed");
	test_assert(imap_cmd_parse(text, sizeof(text) - 1, &cmd, &err) == 0);
	test_assert(cmd.nargs == 2);
	pass = cmd.args[1].str;
	test_assert(memcmp(pass, "secret-pass", 11) == 0);
	imap_cmd_wipe(&cmd);
	/* the pool is still allocated: its bytes can be read */
	for (size_t i = 0; i < 11; i++)
		test_assert(pass[i] == '\0');
	imap_cmd_free(&cmd);
	test_assert(cmd.pool == NULL);
	test_end();
}

/* IDLE: the command is framed, released and the buffer given back; the
 * DONE line that follows is framed into a new one. */
static void
test_shrink(void)
{
	struct imap_framer f;
	struct imap_frame ev;
	char in1[] = "a IDLE\r\n", in2[] = "DONE\r\n";
	size_t used;

	test_begin("framing: an empty buffer given back");
	imap_framer_init(&f, &real);
	test_assert(imap_framer_step(&f, in1, sizeof(in1) - 1, 0, &used,
	    &ev) == IMAP_FRAME_COMMAND);
	test_assert(ev.len == 6 && memcmp(ev.data, "a IDLE", 6) == 0);
	imap_framer_release(&f, true);
	test_assert(f.buf.cap > 0);	/* kept for the next command */
	imap_framer_shrink(&f);
	test_assert(f.buf.cap == 0 && f.buf.data == NULL);
	test_assert(imap_framer_step(&f, in2, sizeof(in2) - 1,
	    IMAP_FRAMER_PLAIN, &used, &ev) == IMAP_FRAME_LINE);
	test_assert(ev.len == 4 && memcmp(ev.data, "DONE", 4) == 0);
	imap_framer_shrink(&f);		/* not empty: kept */
	test_assert(f.buf.data != NULL);
	imap_framer_release(&f, true);
	imap_framer_deinit(&f);
	test_end();
}

int
main(void)
{
	test_shrink();
	test_commands();
	test_refused();
	test_long_lines();
	test_preauth();
	test_trickle();
	test_stop_and_wipe();
	test_spool();
	test_spool_many();
	test_cmd_wipe();
	return test_done();
}
