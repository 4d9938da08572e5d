/*
 * test_imap_parse.c: unit tests for lib/imap/parse.c and search.c --
 * the command parser, sequence sets, FETCH attributes, SEARCH keys and
 * matching, modified UTF-7, LIST patterns, dates and response quoting,
 * on good and hostile input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/imap/parse.h"
#include "tests/unit/test.h"

/* Parse a C string as a whole command. */
static int
parse(const char *s, struct imap_cmd *cmd, const char **err)
{
	*err = NULL;
	return imap_cmd_parse(s, strlen(s), cmd, err);
}

/* Parse s, expect failure with message msg; returns true if so. */
static bool
parse_fails(const char *s, size_t len, const char *msg)
{
	struct imap_cmd cmd;
	const char *err = NULL;
	int r = imap_cmd_parse(s, len, &cmd, &err);
	bool ok = r == -1 && err != NULL && (msg == NULL || strcmp(err, msg) == 0);

	if (!ok)
		fprintf(stderr, "  parse of [%.*s]: r=%d err=%s\n", len > 80 ? 80 : (int)len, s, r,
		    err != NULL ? err : "(null)");
	imap_cmd_free(&cmd);
	return ok;
}

static bool
fails(const char *s, const char *msg)
{
	return parse_fails(s, strlen(s), msg);
}

static bool
arg_is(const struct imap_arg *a, enum imap_arg_type t, const char *s)
{
	return a->type == t && a->str != NULL && strlen(s) == a->len &&
	    memcmp(a->str, s, a->len) == 0;
}

static void
test_line_literal(void)
{
	uint64_t n = 7;
	bool ns = true;

	test_begin("imap_line_literal");
	test_assert(imap_line_literal("a LOGIN {5}", 11, &n, &ns) && n == 5 &&
	    !ns);
	test_assert(imap_line_literal("a LOGIN {12+}", 13, &n, &ns) &&
	    n == 12 && ns);
	test_assert(imap_line_literal("{0}", 3, &n, &ns) && n == 0);
	test_assert(imap_line_literal("x {18446744073709551615}", 24, &n,
	    &ns) && n == UINT64_MAX);
	test_assert(!imap_line_literal("x {18446744073709551616}", 24, &n,
	    &ns));
	test_assert(!imap_line_literal("x {}", 4, &n, &ns));
	test_assert(!imap_line_literal("x {+}", 5, &n, &ns));
	test_assert(!imap_line_literal("x {x}", 5, &n, &ns));
	test_assert(!imap_line_literal("x {5", 4, &n, &ns));
	test_assert(!imap_line_literal("x 5}", 4, &n, &ns));
	test_assert(!imap_line_literal("}", 1, &n, &ns));
	test_assert(!imap_line_literal("", 0, &n, &ns));
	test_assert(!imap_line_literal("x {5}} ", 7, &n, &ns));
	test_assert(!imap_line_literal("x {-5}", 6, &n, &ns));
	test_assert(!imap_line_literal("x {5++}", 7, &n, &ns));
	/* only the first len bytes count */
	test_assert(!imap_line_literal("x {5}", 4, &n, &ns));
	test_end();
}

static void
test_cmd_basic(void)
{
	struct imap_cmd cmd;
	const char *err;
	const char *lit = "a1 LOGIN {3}\r\nbob {4+}\r\np w\"";
	static const char nul_lit[] = "t X {5}\r\na\0\r\nb";
	const struct imap_arg *a;

	test_begin("imap_cmd_parse basic");
	test_assert(parse("a1 noop", &cmd, &err) == 0);
	test_assert_streq(cmd.tag, "a1");
	test_assert_streq(cmd.name, "NOOP");
	test_assert(!cmd.uid && cmd.nargs == 0);
	imap_cmd_free(&cmd);
	test_assert(cmd.pool == NULL && cmd.tag == NULL);

	test_assert(parse("A.2] uid fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS "
	    "(From \"To\")]<0.100>)", &cmd, &err) == 0);
	test_assert_streq(cmd.tag, "A.2]");
	test_assert_streq(cmd.name, "FETCH");
	test_assert(cmd.uid && cmd.nargs == 2);
	test_assert(arg_is(&cmd.args[0], IMAP_ARG_ATOM, "1:*"));
	a = &cmd.args[1];
	test_assert(a->type == IMAP_ARG_LIST && a->nlist == 2);
	test_assert(arg_is(&a->list[0], IMAP_ARG_ATOM, "FLAGS"));
	test_assert(arg_is(&a->list[1], IMAP_ARG_ATOM,
	    "BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100>"));
	imap_cmd_free(&cmd);

	/* quoted strings with escapes, NIL, flags, empty list, 8-bit
	 * inside quotes */
	test_assert(parse("t STORE 1 +FLAGS (\\Seen \\Deleted) \"a\\\"b\\\\c\" "
	    "NIL () \"\xc3\xa9\" \"\"", &cmd, &err) == 0);
	test_assert(cmd.nargs == 8);
	test_assert(arg_is(&cmd.args[1], IMAP_ARG_ATOM, "+FLAGS"));
	test_assert(arg_is(&cmd.args[7], IMAP_ARG_STRING, ""));
	test_assert(cmd.args[2].type == IMAP_ARG_LIST &&
	    cmd.args[2].nlist == 2 &&
	    arg_is(&cmd.args[2].list[0], IMAP_ARG_ATOM, "\\Seen"));
	test_assert(arg_is(&cmd.args[3], IMAP_ARG_STRING, "a\"b\\c"));
	test_assert(!cmd.args[3].literal);
	test_assert(arg_is(&cmd.args[4], IMAP_ARG_ATOM, "NIL"));
	test_assert(cmd.args[5].type == IMAP_ARG_LIST &&
	    cmd.args[5].nlist == 0);
	test_assert(arg_is(&cmd.args[6], IMAP_ARG_STRING, "\xc3\xa9"));
	test_assert_streq(imap_arg_astring(&cmd.args[6]), "\xc3\xa9");
	test_assert(imap_arg_astring(&cmd.args[5]) == NULL);
	test_assert_streq(imap_arg_astring(&cmd.args[4]), "NIL");
	imap_cmd_free(&cmd);
	test_assert(parse("t X \"\"", &cmd, &err) == 0 && cmd.nargs == 1 &&
	    arg_is(&cmd.args[0], IMAP_ARG_STRING, ""));
	imap_cmd_free(&cmd);

	/* literals, synchronising and not, followed by more arguments */
	test_assert(parse(lit, &cmd, &err) == 0);
	test_assert(cmd.nargs == 2);
	test_assert(arg_is(&cmd.args[0], IMAP_ARG_STRING, "bob") &&
	    cmd.args[0].literal);
	test_assert(arg_is(&cmd.args[1], IMAP_ARG_STRING, "p w\"") &&
	    cmd.args[1].literal);
	imap_cmd_free(&cmd);
	test_assert(parse("t APPEND INBOX (\\Seen) {0}\r\n", &cmd, &err) == 0);
	test_assert(cmd.nargs == 3 && arg_is(&cmd.args[2], IMAP_ARG_STRING, ""));
	imap_cmd_free(&cmd);
	test_assert(parse("t X ({2}\r\n()) y", &cmd, &err) == 0);
	test_assert(cmd.nargs == 2 && cmd.args[0].nlist == 1 &&
	    arg_is(&cmd.args[0].list[0], IMAP_ARG_STRING, "()"));
	imap_cmd_free(&cmd);

	/* a literal may hold anything, NUL and CRLF included */
	test_assert(imap_cmd_parse(nul_lit, sizeof(nul_lit) - 1, &cmd,
	    &err) == 0);
	test_assert(cmd.nargs == 1 && cmd.args[0].len == 5 &&
	    memcmp(cmd.args[0].str, "a\0\r\nb", 5) == 0 &&
	    imap_arg_astring(&cmd.args[0]) == NULL);
	imap_cmd_free(&cmd);

	/* stray spaces between arguments are tolerated, not around the
	 * command name (tag SP command) */
	test_assert(parse("t  X", &cmd, &err) == -1);
	imap_cmd_free(&cmd);
	test_assert(parse("t X  ( a  b )  c ", &cmd, &err) == 0);
	test_assert_streq(cmd.name, "X");
	test_assert(cmd.nargs == 2 && cmd.args[0].nlist == 2 &&
	    arg_is(&cmd.args[1], IMAP_ARG_ATOM, "c"));
	imap_cmd_free(&cmd);

	/* nested lists */
	test_assert(parse("t X (a (b (c)) d) e", &cmd, &err) == 0);
	test_assert(cmd.nargs == 2);
	a = &cmd.args[0];
	test_assert(a->nlist == 3 && a->list[1].type == IMAP_ARG_LIST &&
	    a->list[1].nlist == 2 && a->list[1].list[1].nlist == 1 &&
	    arg_is(&a->list[1].list[1].list[0], IMAP_ARG_ATOM, "c"));
	imap_cmd_free(&cmd);

	/* '[' without ']' is an ordinary atom character */
	test_assert(parse("t LOGIN user pa[ss", &cmd, &err) == 0);
	test_assert(cmd.nargs == 2 && arg_is(&cmd.args[1], IMAP_ARG_ATOM,
	    "pa[ss"));
	imap_cmd_free(&cmd);
	test_assert(parse("t X a[b c] d[", &cmd, &err) == 0);
	test_assert(cmd.nargs == 2 && arg_is(&cmd.args[0], IMAP_ARG_ATOM,
	    "a[b c]") && arg_is(&cmd.args[1], IMAP_ARG_ATOM, "d["));
	imap_cmd_free(&cmd);
	test_assert(parse("t X a[\"]\"]x", &cmd, &err) == 0);
	test_assert(cmd.nargs == 1 && arg_is(&cmd.args[0], IMAP_ARG_ATOM,
	    "a[\"]\"]x"));
	imap_cmd_free(&cmd);
	/* '{' inside an atom, ']' and '*' and '%' */
	test_assert(parse("t X a{3} ]b * %", &cmd, &err) == 0);
	test_assert(cmd.nargs == 4 && arg_is(&cmd.args[0], IMAP_ARG_ATOM,
	    "a{3}") && arg_is(&cmd.args[1], IMAP_ARG_ATOM, "]b"));
	imap_cmd_free(&cmd);

	/* UID with no space-separated command, and a tag of one char */
	test_assert(parse("* uid", &cmd, &err) == -1);
	imap_cmd_free(&cmd);
	test_assert(parse("t UIDFETCH", &cmd, &err) == 0 &&
	    strcmp(cmd.name, "UIDFETCH") == 0 && !cmd.uid);
	imap_cmd_free(&cmd);
	test_assert(parse("t UID  search ALL", &cmd, &err) == -1);
	imap_cmd_free(&cmd);
	test_assert(parse("t UID search ALL", &cmd, &err) == 0 &&
	    strcmp(cmd.name, "SEARCH") == 0 && cmd.uid && cmd.nargs == 1);
	imap_cmd_free(&cmd);

	/* literal8 (RFC 3516) in APPEND and [UID] REPLACE only; "~" alone
	 * is still an atom character */
	test_assert(parse("t APPEND X ~{3}\r\nabc {2+}\r\nde", &cmd,
	    &err) == 0 && cmd.nargs == 3);
	test_assert(cmd.args[1].literal && cmd.args[1].literal8 &&
	    cmd.args[1].len == 3 && memcmp(cmd.args[1].str, "abc", 3) == 0);
	test_assert(cmd.args[2].literal && !cmd.args[2].literal8);
	imap_cmd_free(&cmd);
	test_assert(parse("t UID REPLACE 1 X ~{1+}\r\nz", &cmd, &err) == 0 &&
	    cmd.nargs == 3 && cmd.args[2].literal8);
	imap_cmd_free(&cmd);
	test_assert(parse("t SELECT ~{3}\r\nabc", &cmd, &err) == -1 &&
	    strcmp(err, "literal8 is only for APPEND, REPLACE and SETMETADATA")
	    == 0);
	imap_cmd_free(&cmd);
	test_assert(parse("t SETMETADATA X (/private/a ~{2}\r\nab)", &cmd,
	    &err) == 0 && cmd.nargs == 2 && cmd.args[1].nlist == 2 &&
	    cmd.args[1].list[1].literal8 && cmd.args[1].list[1].len == 2);
	imap_cmd_free(&cmd);
	test_assert(parse("t UID APPEND X ~{3}\r\nabc", &cmd, &err) == -1);
	imap_cmd_free(&cmd);
	test_assert(parse("t LOGIN ~bob pw~", &cmd, &err) == 0 &&
	    strcmp(cmd.args[0].str, "~bob") == 0);
	imap_cmd_free(&cmd);
	test_assert(parse("t APPEND X ~{4}\r\nabc", &cmd, &err) == -1);
	imap_cmd_free(&cmd);
	test_end();
}

static void
test_cmd_errors(void)
{
	struct imap_cmd cmd;
	const char *err;
	str_t s = STR_INIT;
	clock_t t0;
	int i;

	test_begin("imap_cmd_parse hostile input");
	test_assert(fails("", "Missing tag"));
	test_assert(fails(" NOOP", "Missing tag"));
	test_assert(fails("a+b NOOP", "Invalid tag"));
	test_assert(fails("a*b NOOP", "Invalid tag"));
	test_assert(fails("a(b NOOP", "Invalid tag"));
	test_assert(fails("a\"b NOOP", "Invalid tag"));
	test_assert(fails("a{b NOOP", "Invalid tag"));
	test_assert(fails("a\\b NOOP", "Invalid tag"));
	test_assert(fails("a%b NOOP", "Invalid tag"));
	test_assert(fails("\xc3\xa9 NOOP", "Invalid tag"));
	test_assert(parse_fails("a\0 NOOP", 7, "NUL byte in command"));
	test_assert(fails("a1", "Missing command"));
	test_assert(fails("a1 ", "Missing command"));
	test_assert(fails("a1 UID", "Missing command after UID"));
	test_assert(fails("a1 UID ", "Missing command after UID"));
	test_assert(fails("a1 NO(OP", "Invalid command name"));
	test_assert(fails("a1 N\xc3\xa9", "8-bit characters not allowed in atoms"));

	/* the tag is kept when it could be read */
	test_assert(parse("tag1 X (", &cmd, &err) == -1);
	test_assert_streq(cmd.tag, "tag1");
	test_assert_streq(err, "Unbalanced parentheses");
	imap_cmd_free(&cmd);
	test_assert(parse("+ X", &cmd, &err) == -1 && cmd.tag == NULL);
	imap_cmd_free(&cmd);

	test_assert(fails("t X (a", "Unbalanced parentheses"));
	test_assert(fails("t X a)", "Unbalanced parentheses"));
	test_assert(fails("t X (a))", "Unbalanced parentheses"));
	test_assert(fails("t X )", "Unbalanced parentheses"));
	test_assert(fails("t X ((a) (b)", "Unbalanced parentheses"));
	test_assert(fails("t X (a)(b)", "Missing space between arguments"));
	test_assert(fails("t X \"a\"\"b\"", "Missing space between arguments"));
	test_assert(fails("t X a(b)", "Missing space between arguments"));
	test_assert(fails("t X {1}\r\nab", "Missing space between arguments"));

	test_assert(fails("t X \"abc", "Invalid quoted string"));
	test_assert(fails("t X \"a\\bc\"", "Invalid quoted string"));
	test_assert(fails("t X \"a\\", "Invalid quoted string"));
	test_assert(fails("t X \"a\rb\"", "Invalid quoted string"));
	test_assert(fails("t X \"a\nb\"", "Invalid quoted string"));
	test_assert(parse_fails("t X \"a\0b\"", 9, "NUL byte in command"));
	test_assert(parse_fails("t X a\0b", 7, "NUL byte in command"));
	test_assert(parse_fails("t X\0", 4, NULL));
	test_assert(parse_fails("t X (a \0)", 9, "NUL byte in command"));
	test_assert(fails("t X a\xff", "8-bit characters not allowed in atoms"));
	test_assert(fails("t X a[\xff]", "8-bit characters not allowed in atoms"));
	test_assert(fails("t X a\tb", "Invalid characters in atom"));
	test_assert(fails("t X a\r\nb", "Invalid characters in atom"));
	test_assert(fails("t X a\x7f", "Invalid characters in atom"));

	test_assert(fails("t X {3}\r\nab", "Invalid literal"));
	test_assert(fails("t X {3}\r\n", "Invalid literal"));
	test_assert(fails("t X {3}", "Invalid literal"));
	test_assert(fails("t X {3}\n", "Invalid literal"));
	test_assert(fails("t X {3}x\r\nabc", "Invalid literal"));
	test_assert(fails("t X {}\r\n", "Invalid literal"));
	test_assert(fails("t X {+}\r\n", "Invalid literal"));
	test_assert(fails("t X {a}\r\n", "Invalid literal"));
	test_assert(fails("t X {3 }\r\nabc", "Invalid literal"));
	test_assert(fails("t X {99999999999999999999999}\r\n", "Invalid literal"));
	test_assert(fails("t X {18446744073709551615}\r\nabc", "Invalid literal"));
	test_assert(fails("t X {", "Invalid literal"));

	/* nesting: IMAP_NEST_MAX levels are fine, one more is not */
	str_append(&s, "t X ");
	for (i = 0; i < IMAP_NEST_MAX; i++)
		str_append_c(&s, '(');
	str_append(&s, "a");
	for (i = 0; i < IMAP_NEST_MAX; i++)
		str_append_c(&s, ')');
	test_assert(parse(str_c(&s), &cmd, &err) == 0);
	imap_cmd_free(&cmd);
	str_truncate(&s, 0);
	str_append(&s, "t X ");
	for (i = 0; i <= IMAP_NEST_MAX; i++)
		str_append_c(&s, '(');
	for (i = 0; i <= IMAP_NEST_MAX; i++)
		str_append_c(&s, ')');
	test_assert(fails(str_c(&s), "Too deep nesting"));
	str_truncate(&s, 0);
	str_append(&s, "t X ");
	for (i = 0; i < 1000; i++)
		str_append_c(&s, '(');
	test_assert(fails(str_c(&s), "Too deep nesting"));
	for (i = 0; i < 1000; i++)
		str_append_c(&s, ')');
	test_assert(fails(str_c(&s), "Too deep nesting"));

	/* many '[' without ']': linear, not one scan to the end each */
	str_truncate(&s, 0);
	str_append(&s, "t X");
	for (i = 0; i < 9000; i++)
		str_append(&s, " a[");
	str_append_c(&s, ' ');
	for (i = 0; i < 2000000; i++)
		str_append_c(&s, 'x');
	t0 = clock();
	test_assert(parse(str_c(&s), &cmd, &err) == 0 && cmd.nargs == 9001 &&
	    arg_is(&cmd.args[0], IMAP_ARG_ATOM, "a["));
	test_assert((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
	imap_cmd_free(&cmd);

	/* argument count */
	str_truncate(&s, 0);
	str_append(&s, "t X");
	for (i = 0; i < IMAP_ARGS_MAX; i++)
		str_append(&s, " a");
	test_assert(parse(str_c(&s), &cmd, &err) == 0 &&
	    cmd.nargs == IMAP_ARGS_MAX);
	imap_cmd_free(&cmd);
	str_append(&s, " a");
	test_assert(fails(str_c(&s), "Too many arguments"));
	str_truncate(&s, 0);
	str_append(&s, "t X (");
	for (i = 0; i < IMAP_ARGS_MAX; i++)
		str_append(&s, "a ");
	str_append(&s, ")");
	test_assert(fails(str_c(&s), "Too many arguments"));
	str_free(&s);
	test_end();
}

static bool
seq_ok(const char *s, size_t n)
{
	struct imap_seqset set;
	bool ok;

	if (imap_seqset_parse(s, &set) < 0)
		return false;
	ok = set.n == n;
	imap_seqset_free(&set);
	return ok;
}

static bool
seq_bad(const char *s)
{
	struct imap_seqset set;

	if (imap_seqset_parse(s, &set) == 0) {
		imap_seqset_free(&set);
		return false;
	}
	return set.r == NULL && set.n == 0;
}

static bool
seq_fmt(const uint32_t *v, size_t n, const char *want)
{
	str_t s = STR_INIT;
	bool ok;

	imap_seqset_format(v, n, &s);
	ok = strcmp(str_c(&s), want) == 0;
	if (!ok)
		fprintf(stderr, "  format: %s\n", str_c(&s));
	str_free(&s);
	return ok;
}

static void
test_seqset(void)
{
	struct imap_seqset set;
	static const uint32_t v1[] = { 1, 2, 3, 7 }, v2[] = { 5 },
	    v3[] = { 1, 3, 4, 5, 9, 10, 4294967295U }, v4[] = { 2, 2, 3 };
	str_t s = STR_INIT;
	uint32_t i;

	test_begin("imap_seqset");
	test_assert(seq_ok("1", 1));
	test_assert(seq_ok("1,3:5,7:*", 3));
	test_assert(seq_ok("*", 1));
	test_assert(seq_ok("*:*", 1));
	test_assert(seq_ok("4294967295", 1));
	test_assert(seq_ok("001", 1));
	test_assert(seq_ok("1,2,3,4", 1));	/* merged */
	test_assert(seq_ok("5:1,3", 1));
	test_assert(seq_ok("1:*,5:*,9:*,*", 2));
	test_assert(seq_bad(""));
	test_assert(seq_bad("0"));
	test_assert(seq_bad("00"));
	test_assert(seq_bad("0:5"));
	test_assert(seq_bad("5:0"));
	test_assert(seq_bad("1:"));
	test_assert(seq_bad(":2"));
	test_assert(seq_bad(":"));
	test_assert(seq_bad("1,,2"));
	test_assert(seq_bad(",1"));
	test_assert(seq_bad("1,"));
	test_assert(seq_bad("1:2:3"));
	test_assert(seq_bad("4294967296"));
	test_assert(seq_bad("99999999999999999999999"));
	test_assert(seq_bad("-1"));
	test_assert(seq_bad(" 1"));
	test_assert(seq_bad("1 "));
	test_assert(seq_bad("a"));
	test_assert(seq_bad("1a"));
	test_assert(seq_bad("**"));
	test_assert(seq_bad("*1"));
	test_assert(seq_bad("1.2"));

	test_assert(imap_seqset_parse("3:5,10,20:*", &set) == 0);
	test_assert(!imap_seqset_has(&set, 2, 100));
	test_assert(imap_seqset_has(&set, 3, 100));
	test_assert(imap_seqset_has(&set, 5, 100));
	test_assert(!imap_seqset_has(&set, 6, 100));
	test_assert(imap_seqset_has(&set, 10, 100));
	test_assert(!imap_seqset_has(&set, 19, 100));
	test_assert(imap_seqset_has(&set, 20, 100));
	test_assert(imap_seqset_has(&set, 100, 100));
	test_assert(!imap_seqset_has(&set, 101, 100));
	/* 20:* with star 15 is 15:20 */
	test_assert(imap_seqset_has(&set, 15, 15));
	test_assert(!imap_seqset_has(&set, 14, 15));
	test_assert(imap_seqset_has(&set, 17, 15));
	imap_seqset_free(&set);
	test_assert(set.r == NULL && set.n == 0);

	test_assert(imap_seqset_parse("*", &set) == 0);
	test_assert(imap_seqset_has(&set, 7, 7) && !imap_seqset_has(&set, 6, 7));
	test_assert(!imap_seqset_has(&set, 1, 0));
	imap_seqset_free(&set);
	test_assert(imap_seqset_parse("*:4", &set) == 0);
	test_assert(set.n == 1 && set.r[0].lo == 4 &&
	    set.r[0].hi == IMAP_SEQ_STAR);
	test_assert(imap_seqset_has(&set, 4, 10) && imap_seqset_has(&set, 10, 10));
	test_assert(!imap_seqset_has(&set, 3, 10));
	test_assert(imap_seqset_has(&set, 2, 2) && imap_seqset_has(&set, 4, 2));
	test_assert(!imap_seqset_has(&set, 1, 2) && !imap_seqset_has(&set, 5, 2));
	imap_seqset_free(&set);
	test_assert(imap_seqset_parse("10:*,5:*", &set) == 0);
	test_assert(imap_seqset_has(&set, 7, 8) && imap_seqset_has(&set, 10, 8));
	test_assert(imap_seqset_has(&set, 5, 3) && !imap_seqset_has(&set, 11, 3));
	test_assert(imap_seqset_has(&set, 3, 3) && !imap_seqset_has(&set, 2, 3));
	imap_seqset_free(&set);
	test_assert(imap_seqset_parse("9,7,5:6,1", &set) == 0);
	test_assert(set.n == 3 && set.r[0].lo == 1 && set.r[1].lo == 5 &&
	    set.r[1].hi == 7 && set.r[2].lo == 9);
	for (i = 0; i <= 10; i++)
		test_assert(imap_seqset_has(&set, i, 3) ==
		    (i == 1 || (i >= 5 && i <= 7) || i == 9));
	imap_seqset_free(&set);
	/* an explicit 4294967295 is not '*' */
	test_assert(imap_seqset_parse("4294967295", &set) == 0);
	test_assert(!imap_seqset_has(&set, 5, 5));
	imap_seqset_free(&set);
	test_assert(imap_seqset_parse("1:4294967295", &set) == 0);
	test_assert(imap_seqset_has(&set, 4000000000U, 5));
	imap_seqset_free(&set);

	/* many ranges: at the limit, and past it */
	for (i = 0; i < 100000; i++)
		str_printf(&s, i > 0 ? ",%u" : "%u", i * 2 + 1);
	test_assert(imap_seqset_parse(str_c(&s), &set) == 0 &&
	    set.n == 100000);
	test_assert(imap_seqset_has(&set, 199999, 1) &&
	    !imap_seqset_has(&set, 199998, 1) &&
	    imap_seqset_has(&set, 1, 1) && !imap_seqset_has(&set, 200001, 1));
	imap_seqset_free(&set);
	str_append(&s, ",7");
	test_assert(seq_bad(str_c(&s)));
	str_free(&s);

	test_assert(seq_fmt(v1, 4, "1:3,7"));
	test_assert(seq_fmt(v2, 1, "5"));
	test_assert(seq_fmt(v3, 7, "1,3:5,9:10,4294967295"));
	test_assert(seq_fmt(v4, 3, "2:3"));
	test_assert(seq_fmt(v1, 0, ""));
	test_end();
}

/* FETCH argument from a command "t FETCH 1 <att>". */
static int
fetch(const char *att_text, struct fetch_att *att, const char **err)
{
	struct imap_cmd cmd;
	char *line = xasprintf("t FETCH 1 %s", att_text);
	int r = -1;

	*err = NULL;
	if (parse(line, &cmd, err) == 0 && cmd.nargs == 2)
		r = imap_fetch_parse(&cmd.args[1], att, err);
	else
		memset(att, 0, sizeof(*att));
	imap_cmd_free(&cmd);
	free(line);
	return r;
}

static bool
fetch_label(const char *att_text, const char *label)
{
	struct fetch_att att;
	const char *err;
	bool ok;

	if (fetch(att_text, &att, &err) < 0) {
		fprintf(stderr, "  fetch %s: %s\n", att_text, err);
		return false;
	}
	ok = att.n == 1 && strcmp(att.items[0].label, label) == 0;
	if (!ok && att.n == 1)
		fprintf(stderr, "  fetch %s: label %s\n", att_text,
		    att.items[0].label);
	imap_fetch_free(&att);
	return ok;
}

static bool
fetch_bad(const char *att_text)
{
	struct fetch_att att;
	const char *err;

	if (fetch(att_text, &att, &err) == 0) {
		fprintf(stderr, "  fetch %s: accepted\n", att_text);
		imap_fetch_free(&att);
		return false;
	}
	return err != NULL && att.items == NULL && att.n == 0;
}

static void
test_fetch(void)
{
	struct fetch_att att;
	const struct fetch_item *it;
	const char *err;

	test_begin("imap_fetch_parse");
	test_assert(fetch("ALL", &att, &err) == 0 && att.n == 4);
	test_assert(att.items[0].kind == FETCH_FLAGS &&
	    att.items[3].kind == FETCH_ENVELOPE);
	test_assert(att.need_body && !att.sets_seen);
	imap_fetch_free(&att);
	test_assert(fetch("fast", &att, &err) == 0 && att.n == 3);
	test_assert(!att.need_body && !att.sets_seen);
	test_assert_streq(att.items[2].label, "RFC822.SIZE");
	imap_fetch_free(&att);
	test_assert(fetch("Full", &att, &err) == 0 && att.n == 5);
	test_assert(att.items[4].kind == FETCH_BODY && att.need_body);
	imap_fetch_free(&att);
	test_assert(fetch_bad("(ALL)"));
	test_assert(fetch_bad("(FLAGS FAST)"));
	test_assert(fetch_bad("()"));
	test_assert(fetch_bad("\"FLAGS\""));
	test_assert(fetch_bad("(FLAGS \"UID\")"));
	test_assert(fetch_bad("(FLAGS (UID))"));
	test_assert(fetch_bad("FLAGSX"));
	test_assert(fetch_bad("BODY.PEEK"));
	test_assert(fetch_bad("RFC822.PEEK"));
	test_assert(fetch_bad("FLAGS[]"));

	test_assert(fetch("(flags uid internaldate rfc822.size envelope "
	    "body bodystructure rfc822 rfc822.header rfc822.text)", &att,
	    &err) == 0 && att.n == 10);
	test_assert(att.need_body && att.sets_seen);
	test_assert_streq(att.items[0].label, "FLAGS");
	test_assert_streq(att.items[5].label, "BODY");
	test_assert_streq(att.items[8].label, "RFC822.HEADER");
	test_assert(att.items[8].kind == FETCH_RFC822_HEADER);
	test_assert(att.items[9].kind == FETCH_RFC822_TEXT);
	imap_fetch_free(&att);

	test_assert(fetch("(UID RFC822.HEADER)", &att, &err) == 0);
	test_assert(att.need_body && !att.sets_seen);
	imap_fetch_free(&att);
	test_assert(fetch("RFC822.TEXT", &att, &err) == 0 && att.sets_seen);
	imap_fetch_free(&att);
	test_assert(fetch("(FLAGS UID)", &att, &err) == 0 && !att.need_body);
	imap_fetch_free(&att);

	/* BINARY (RFC 3516): part numbers only, SIZE without partial */
	test_assert(fetch("(BINARY[1.2]<5.10> BINARY.PEEK[] BINARY.SIZE[3])",
	    &att, &err) == 0 && att.n == 3 && att.need_body && att.sets_seen);
	test_assert(att.items[0].kind == FETCH_BINARY && !att.items[0].peek &&
	    att.items[0].npart == 2 && att.items[0].partial &&
	    att.items[0].origin == 5 && att.items[0].count == 10);
	test_assert_streq(att.items[0].label, "BINARY[1.2]<5>");
	test_assert(att.items[1].kind == FETCH_BINARY && att.items[1].peek &&
	    att.items[1].npart == 0);
	test_assert_streq(att.items[1].label, "BINARY[]");
	test_assert(att.items[2].kind == FETCH_BINARY_SIZE);
	test_assert_streq(att.items[2].label, "BINARY.SIZE[3]");
	imap_fetch_free(&att);
	test_assert(fetch("(BINARY.PEEK[1] BINARY.SIZE[1])", &att, &err) == 0 &&
	    !att.sets_seen);
	imap_fetch_free(&att);
	test_assert(fetch_bad("BINARY[HEADER]"));
	test_assert(fetch_bad("BINARY[1.TEXT]"));
	test_assert(fetch_bad("BINARY[1.MIME]"));
	test_assert(fetch_bad("BINARY.SIZE[1]<0.1>"));
	test_assert(fetch_bad("BINARY"));
	test_assert(fetch_bad("BINARY.SIZE"));
	test_assert(fetch_bad("BINARY.FOO[1]"));
	test_assert(fetch("BODY.PEEK[]", &att, &err) == 0 && att.need_body &&
	    !att.sets_seen && att.items[0].peek);
	imap_fetch_free(&att);
	test_assert(fetch("body[]", &att, &err) == 0 && att.sets_seen);
	imap_fetch_free(&att);

	test_assert(fetch("BODY[1.2.3.MIME]<10.20>", &att, &err) == 0);
	it = &att.items[0];
	test_assert(it->kind == FETCH_SECTION && !it->peek &&
	    it->npart == 3 && it->part[0] == 1 && it->part[2] == 3 &&
	    it->spec == SECT_MIME && it->partial && it->origin == 10 &&
	    it->count == 20);
	test_assert_streq(it->label, "BODY[1.2.3.MIME]<10>");
	imap_fetch_free(&att);

	test_assert(fetch("BODY.PEEK[header.fields.not (from \"X-Y\" to)]",
	    &att, &err) == 0);
	it = &att.items[0];
	test_assert(it->spec == SECT_HEADER_FIELDS_NOT && it->nfields == 3 &&
	    it->peek);
	test_assert_streq(it->fields[0], "from");
	test_assert_streq(it->fields[1], "X-Y");
	test_assert_streq(it->label, "BODY[HEADER.FIELDS.NOT (FROM X-Y TO)]");
	imap_fetch_free(&att);

	test_assert(fetch_label("BODY[]", "BODY[]"));
	test_assert(fetch_label("BODY.PEEK[]<0.4294967295>", "BODY[]<0>"));
	test_assert(fetch_label("body.peek[text]", "BODY[TEXT]"));
	test_assert(fetch_label("BODY[header]", "BODY[HEADER]"));
	test_assert(fetch_label("BODY[1]", "BODY[1]"));
	test_assert(fetch_label("BODY[1.Text]", "BODY[1.TEXT]"));
	test_assert(fetch_label("BODY[2.header]", "BODY[2.HEADER]"));
	test_assert(fetch_label("BODY[4.2.HEADER.FIELDS (Subject)]",
	    "BODY[4.2.HEADER.FIELDS (SUBJECT)]"));
	test_assert(fetch_label("BODY[HEADER.FIELDS  ( From   To )]",
	    "BODY[HEADER.FIELDS (FROM TO)]"));
	test_assert(fetch_label("BODY[HEADER.FIELDS (\"a(b\")]",
	    "BODY[HEADER.FIELDS (\"A(B\")]"));
	test_assert(fetch_label("BODY[HEADER.FIELDS (NIL)]",
	    "BODY[HEADER.FIELDS (\"NIL\")]"));
	test_assert(fetch_label("BODY[]<4294967295.1>", "BODY[]<4294967295>"));
	test_assert(fetch_label("rfc822", "RFC822"));
	test_assert(fetch_label(
	    "BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22"
	    ".23.24.25.26.27.28.29.30.31.32]",
	    "BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22"
	    ".23.24.25.26.27.28.29.30.31.32]"));

	test_assert(fetch_bad(
	    "BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22"
	    ".23.24.25.26.27.28.29.30.31.32.33]"));
	test_assert(fetch_bad("BODY[MIME]"));
	test_assert(fetch_bad("BODY[0]"));
	test_assert(fetch_bad("BODY[01]"));
	test_assert(fetch_bad("BODY[1.0]"));
	test_assert(fetch_bad("BODY[4294967296]"));
	test_assert(fetch_bad("BODY[1.]"));
	test_assert(fetch_bad("BODY[.1]"));
	test_assert(fetch_bad("BODY[1..2]"));
	test_assert(fetch_bad("BODY[.HEADER]"));
	test_assert(fetch_bad("BODY[HEADERX]"));
	test_assert(fetch_bad("BODY[HEADER ]"));
	test_assert(fetch_bad("BODY[TEXT.MIME]"));
	test_assert(fetch_bad("BODY[1.HEADER.TEXT]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS ()]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (From]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS From]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (From) x]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (From)) ]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS ((From))]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (\"\")]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (\"a b\")]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (a:b)]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (\"a\"b)]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (\"\xc3\xa9\")]"));
	test_assert(fetch_bad("BODY[HEADER.FIELDS (\"abc)]"));
	test_assert(fetch_bad("BODY[]<5>"));
	test_assert(fetch_bad("BODY[]<5.0>"));
	test_assert(fetch_bad("BODY[]<.5>"));
	test_assert(fetch_bad("BODY[]<5.>"));
	test_assert(fetch_bad("BODY[]<5.6"));
	test_assert(fetch_bad("BODY[]<5.6>x"));
	test_assert(fetch_bad("BODY[]<4294967296.1>"));
	test_assert(fetch_bad("BODY[]<1.4294967296>"));
	test_assert(fetch_bad("BODY[]x"));
	test_assert(fetch_bad("BODY[][]"));
	test_assert(fetch_bad("BODY["));
	test_assert(fetch_bad("BODYX[]"));
	test_assert(fetch_bad("RFC822<0.5>"));
	test_assert(fetch_bad("(FLAGS BODY[0])"));
	test_end();
}

/* ---- SEARCH ---- */

struct tmsg {
	const char *data;
	int loads;
};

static const char *
tload(void *ctx, size_t *len)
{
	struct tmsg *t = ctx;

	t->loads++;
	if (t->data == NULL)
		return NULL;
	*len = strlen(t->data);
	return t->data;
}

static char
tkeyword(void *ctx, const char *name)
{
	if (strcmp(name, "$Forwarded") == 0)
		return 'a';
	if (strcmp(name, "Work") == 0)
		return 'b';
	return 0;
}

static int
search(const char *keys, struct search_key **root, const char **err)
{
	struct imap_cmd cmd;
	char *line = xasprintf("t SEARCH %s", keys);
	int r = -1;

	*root = NULL;
	*err = NULL;
	if (parse(line, &cmd, err) == 0)
		r = imap_search_parse(cmd.args, cmd.nargs, root, err);
	imap_cmd_free(&cmd);
	free(line);
	return r;
}

static bool
search_bad(const char *keys, const char *msg)
{
	struct search_key *root;
	const char *err;
	int r = search(keys, &root, &err);

	if (r == 0) {
		fprintf(stderr, "  search %.80s: accepted\n", keys);
		imap_search_free(root);
		return false;
	}
	if (root != NULL || err == NULL ||
	    (msg != NULL && strcmp(err, msg) != 0)) {
		fprintf(stderr, "  search %.80s: %s\n", keys, err);
		return false;
	}
	return true;
}

/* A literal holding NUL is no search string. */
static bool
search_nul(void)
{
	static const char line[] = "t SEARCH TEXT {3}\r\na\0b";
	struct search_key *root = NULL;
	struct imap_cmd cmd;
	const char *err = NULL;
	bool ok;

	ok = imap_cmd_parse(line, sizeof(line) - 1, &cmd, &err) == 0 &&
	    imap_search_parse(cmd.args, cmd.nargs, &root, &err) == -1 &&
	    root == NULL && strcmp(err, "Invalid search key argument") == 0;
	imap_cmd_free(&cmd);
	return ok;
}

static const char test_message[] =
    "Date: Tue, 1 Jul 2003 23:30:00 -0500\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.org\r\n"
    "Subject: Hello World\r\n"
    "X-Empty: \r\n"
    "\r\n"
    "Body text with a needle inside.\r\n";

static struct search_msg
test_msg(struct tmsg *t, const char *flags, bool recent)
{
	struct search_msg m;
	long long idate;

	memset(&m, 0, sizeof(m));
	(void)imap_datetime_parse("02-Jul-2003 12:00:00 +0000", &idate);
	m.seq = 3;
	m.uid = 30;
	m.max_seq = 10;
	m.max_uid = 100;
	m.flags = flags;
	m.recent = recent;
	m.size = 1000;
	m.internaldate = idate;
	m.keyword_letter = tkeyword;
	m.load = tload;
	m.ctx = t;
	t->data = test_message;
	t->loads = 0;
	return m;
}

/* Does keys match the message? -1 if keys do not parse. */
static int
smatch(const char *keys, const struct search_msg *m)
{
	struct search_key *root;
	const char *err;
	int r;

	if (search(keys, &root, &err) != 0) {
		fprintf(stderr, "  search %.80s: %s\n", keys, err);
		return -1;
	}
	r = imap_search_match(root, m) ? 1 : 0;
	imap_search_free(root);
	return r;
}

static void
test_search_parse(void)
{
	struct search_key *root;
	const char *err;
	str_t s = STR_INIT;
	int i;

	test_begin("imap_search_parse");
	test_assert(search("ALL", &root, &err) == 0);
	test_assert(root->op == SK_AND && root->nkids == 1 &&
	    root->kids[0].op == SK_ALL);
	test_assert(!imap_search_needs_data(root));
	imap_search_free(root);
	test_assert(search("charset utf-8 from \"J\xc3\xb6rg\" 1:5 uid 3,*",
	    &root, &err) == 0);
	test_assert(root->nkids == 3 && root->kids[0].op == SK_HEADER);
	test_assert_streq(root->kids[0].header, "From");
	test_assert_streq(root->kids[0].str, "J\xc3\xb6rg");
	test_assert(root->kids[1].op == SK_SEQSET &&
	    root->kids[1].set.n == 1);
	test_assert(root->kids[2].op == SK_UID);
	test_assert(imap_search_needs_data(root));
	imap_search_free(root);
	test_assert(search("CHARSET US-ASCII ALL", &root, &err) == 0);
	imap_search_free(root);
	test_assert(search("CHARSET ISO-8859-1 ALL", &root, &err) == -2 &&
	    root == NULL);
	test_assert(strncmp(err, "[BADCHARSET (UTF-8 US-ASCII)]", 29) == 0);

	test_assert(search("answered deleted draft flagged seen unanswered "
	    "undeleted undraft unflagged unseen new old recent", &root,
	    &err) == 0 && root->nkids == 13);
	test_assert(root->kids[0].op == SK_FLAG && root->kids[0].flag == 'R');
	test_assert(root->kids[1].flag == 'T' && root->kids[2].flag == 'D' &&
	    root->kids[3].flag == 'F' && root->kids[4].flag == 'S');
	test_assert(root->kids[5].op == SK_UNFLAG &&
	    root->kids[5].flag == 'R' && root->kids[9].flag == 'S');
	test_assert(root->kids[10].op == SK_NEW &&
	    root->kids[11].op == SK_OLD && root->kids[12].op == SK_RECENT);
	test_assert(!imap_search_needs_data(root));
	imap_search_free(root);

	test_assert(search("BEFORE 1-Feb-1994 ON \"01-Feb-1994\" SINCE "
	    "{11}\r\n01-Feb-1994 LARGER 5 SMALLER 18446744073709551615 "
	    "KEYWORD $Forwarded UNKEYWORD Work", &root, &err) == 0);
	test_assert(root->nkids == 7 && root->kids[0].op == SK_BEFORE &&
	    root->kids[0].date == root->kids[1].date &&
	    root->kids[1].date == root->kids[2].date);
	test_assert(root->kids[3].op == SK_LARGER && root->kids[3].num == 5);
	test_assert(root->kids[4].num == UINT64_MAX);
	test_assert(root->kids[5].op == SK_KEYWORD);
	test_assert_streq(root->kids[5].str, "$Forwarded");
	test_assert(!imap_search_needs_data(root));
	imap_search_free(root);

	test_assert(search("OR (SEEN FLAGGED) NOT HEADER X-Foo \"\" "
	    "SENTBEFORE 1-Jan-2000", &root, &err) == 0);
	test_assert(root->nkids == 2 && root->kids[0].op == SK_OR &&
	    root->kids[0].nkids == 2 && root->kids[0].kids[0].op == SK_AND &&
	    root->kids[0].kids[0].nkids == 2);
	test_assert(root->kids[0].kids[1].op == SK_NOT &&
	    root->kids[0].kids[1].kids[0].op == SK_HEADER);
	test_assert_streq(root->kids[0].kids[1].kids[0].header, "X-Foo");
	test_assert_streq(root->kids[0].kids[1].kids[0].str, "");
	imap_search_free(root);

	test_assert(search("bcc a cc b subject c to d body e text f "
	    "sentbefore 1-Jan-2000 senton 1-Jan-2000 sentsince 1-Jan-2000",
	    &root, &err) == 0 && root->nkids == 9);
	test_assert_streq(root->kids[0].header, "Bcc");
	test_assert_streq(root->kids[1].header, "Cc");
	test_assert_streq(root->kids[2].header, "Subject");
	test_assert_streq(root->kids[3].header, "To");
	test_assert(root->kids[4].op == SK_BODY && root->kids[5].op == SK_TEXT);
	test_assert(root->kids[8].op == SK_SENTSINCE);
	imap_search_free(root);

	test_assert(search_bad("", "Missing search key"));
	test_assert(search_bad("CHARSET", "Missing search key argument"));
	test_assert(search_bad("CHARSET UTF-8", "Missing search key"));
	test_assert(search_bad("FOO", "Unknown search key"));
	test_assert(search_bad("\"ALL\"", "Invalid search key"));
	test_assert(search_bad("ALL CHARSET UTF-8", "Unknown search key"));
	test_assert(search_bad("FROM", "Missing search key argument"));
	test_assert(search_bad("FROM (a)", "Invalid search key argument"));
	test_assert(search_bad("HEADER From", "Missing search key argument"));
	test_assert(search_bad("BEFORE 32-Jan-2000", "Invalid date"));
	test_assert(search_bad("BEFORE 29-Feb-2001", "Invalid date"));
	test_assert(search_bad("BEFORE 1-Foo-2001", "Invalid date"));
	test_assert(search_bad("BEFORE 1-Jan-01", "Invalid date"));
	test_assert(search_bad("LARGER x", "Invalid number"));
	test_assert(search_bad("LARGER -1", "Invalid number"));
	test_assert(search_bad("LARGER \"\"", "Invalid number"));
	test_assert(search_bad("SMALLER 18446744073709551616", "Invalid number"));
	test_assert(search_bad("UID 0", "Invalid sequence set"));
	test_assert(search_bad("1:", "Invalid sequence set"));
	test_assert(search_bad("1,,2", "Invalid sequence set"));
	test_assert(search_bad("0", "Invalid sequence set"));
	test_assert(search_bad("NOT", "Missing search key"));
	test_assert(search_bad("OR SEEN", "Missing search key"));
	test_assert(search_bad("()", "Empty search key list"));
	test_assert(search_bad("(SEEN ())", "Empty search key list"));
	test_assert(search_bad("(SEEN FOO)", "Unknown search key"));
	test_assert(search_nul());
	test_assert(search_bad("SEEN OR DELETED (FROM)",
	    "Missing search key argument"));

	/* nesting of NOT / OR / lists */
	for (i = 0; i < IMAP_NEST_MAX; i++)
		str_append(&s, "NOT ");
	str_append(&s, "SEEN");
	test_assert(search(str_c(&s), &root, &err) == 0);
	imap_search_free(root);
	str_truncate(&s, 0);
	for (i = 0; i <= IMAP_NEST_MAX; i++)
		str_append(&s, "NOT ");
	str_append(&s, "SEEN");
	test_assert(search_bad(str_c(&s), "Too deep nesting"));
	str_truncate(&s, 0);
	for (i = 0; i < 2000; i++)
		str_append(&s, "OR SEEN ");
	str_append(&s, "SEEN");
	test_assert(search_bad(str_c(&s), "Too deep nesting"));
	str_truncate(&s, 0);
	for (i = 0; i < 5000; i++)
		str_append(&s, "NOT ");
	test_assert(search_bad(str_c(&s), "Too deep nesting"));
	str_truncate(&s, 0);
	for (i = 0; i < 20; i++)
		str_append(&s, "(NOT ");
	str_append(&s, "SEEN");
	for (i = 0; i < 20; i++)
		str_append(&s, ")");
	test_assert(search_bad(str_c(&s), "Too deep nesting"));
	str_free(&s);
	test_end();
}

static void
test_search_match(void)
{
	struct tmsg t;
	struct search_msg m = test_msg(&t, "FRS", false);
	struct search_msg n;
	struct tmsg tn;
	struct search_key *root;
	const char *err;

	test_begin("imap_search_match");
	test_assert(smatch("ALL", &m) == 1 && t.loads == 0);
	test_assert(smatch("SEEN FLAGGED ANSWERED", &m) == 1);
	test_assert(smatch("DELETED", &m) == 0 && smatch("UNDELETED", &m) == 1);
	test_assert(smatch("DRAFT", &m) == 0 && smatch("UNSEEN", &m) == 0);
	test_assert(smatch("UNANSWERED", &m) == 0 && smatch("UNDRAFT", &m) == 1);
	test_assert(smatch("UNFLAGGED", &m) == 0);
	test_assert(smatch("RECENT", &m) == 0 && smatch("OLD", &m) == 1 &&
	    smatch("NEW", &m) == 0);
	n = test_msg(&tn, "", true);
	test_assert(smatch("RECENT", &n) == 1 && smatch("OLD", &n) == 0 &&
	    smatch("NEW", &n) == 1);
	n.flags = "S";
	test_assert(smatch("NEW", &n) == 0);
	n.flags = NULL;
	test_assert(smatch("UNSEEN", &n) == 1 && smatch("SEEN", &n) == 0);
	test_assert(smatch("KEYWORD $Forwarded", &n) == 0);

	/* keywords: $Forwarded = 'a' (not set), Work = 'b' (set) */
	m.flags = "FRSb";
	test_assert(smatch("KEYWORD Work", &m) == 1);
	test_assert(smatch("KEYWORD $Forwarded", &m) == 0);
	test_assert(smatch("UNKEYWORD $Forwarded", &m) == 1);
	test_assert(smatch("KEYWORD Nope", &m) == 0);
	test_assert(smatch("UNKEYWORD Nope", &m) == 1);
	m.keyword_letter = NULL;
	test_assert(smatch("KEYWORD Work", &m) == 0);
	m.keyword_letter = tkeyword;

	/* sequence numbers and UIDs, with '*' */
	test_assert(smatch("3", &m) == 1 && smatch("1:2,4:*", &m) == 0);
	test_assert(smatch("*", &m) == 0 && smatch("2:*", &m) == 1);
	test_assert(smatch("UID 30", &m) == 1 && smatch("UID 31:*", &m) == 0);
	test_assert(smatch("UID 200:*", &m) == 0 && smatch("UID *:25", &m) == 1);
	m.seq = 10;
	test_assert(smatch("*", &m) == 1);
	m.seq = 3;

	/* sizes */
	test_assert(smatch("LARGER 999", &m) == 1 && smatch("LARGER 1000", &m) == 0);
	test_assert(smatch("SMALLER 1001", &m) == 1 && smatch("SMALLER 1000", &m) == 0);

	/* INTERNALDATE is 02-Jul-2003 12:00 UTC */
	test_assert(smatch("ON 2-Jul-2003", &m) == 1 && smatch("ON 1-Jul-2003", &m) == 0);
	test_assert(smatch("BEFORE 2-Jul-2003", &m) == 0 &&
	    smatch("BEFORE 3-Jul-2003", &m) == 1);
	test_assert(smatch("SINCE 2-Jul-2003", &m) == 1 &&
	    smatch("SINCE 3-Jul-2003", &m) == 0);
	test_assert(smatch("SINCE 1-Jan-1900", &m) == 1 &&
	    smatch("BEFORE 1-Jan-1900", &m) == 0);
	test_assert(t.loads == 0);

	/* Date: is 1 Jul 2003 23:30 -0500, which is 2 Jul in UTC */
	test_assert(smatch("SENTON 1-Jul-2003", &m) == 1);
	test_assert(t.loads == 1);
	test_assert(smatch("SENTON 2-Jul-2003", &m) == 0);
	test_assert(smatch("SENTBEFORE 2-Jul-2003", &m) == 1);
	test_assert(smatch("SENTBEFORE 1-Jul-2003", &m) == 0);
	test_assert(smatch("SENTSINCE 1-Jul-2003", &m) == 1);
	test_assert(smatch("SENTSINCE 2-Jul-2003", &m) == 0);

	/* headers, body, text */
	test_assert(smatch("FROM alice", &m) == 1 && smatch("FROM bob", &m) == 0);
	test_assert(smatch("TO BOB@example", &m) == 1);
	test_assert(smatch("SUBJECT \"hello world\"", &m) == 1);
	test_assert(smatch("CC x", &m) == 0 && smatch("BCC \"\"", &m) == 0);
	test_assert(smatch("HEADER X-Empty \"\"", &m) == 1);
	test_assert(smatch("HEADER X-Missing \"\"", &m) == 0);
	test_assert(smatch("HEADER Subject World", &m) == 1);
	test_assert(smatch("BODY needle", &m) == 1 && smatch("BODY alice", &m) == 0);
	test_assert(smatch("TEXT needle", &m) == 1 && smatch("TEXT alice", &m) == 1);
	test_assert(smatch("TEXT nowhere", &m) == 0);

	/* the message is loaded at most once per match, and not at all when
	 * a cheap key already decides */
	t.loads = 0;
	test_assert(smatch("FROM alice BODY needle SENTON 1-Jul-2003 "
	    "TEXT inside", &m) == 1 && t.loads == 1);
	t.loads = 0;
	test_assert(smatch("BODY needle DELETED", &m) == 0 && t.loads == 0);
	test_assert(smatch("OR BODY needle SEEN", &m) == 1 && t.loads == 0);
	test_assert(smatch("(BODY needle) (DELETED)", &m) == 0 && t.loads == 1);

	/* an unreadable message matches no data key */
	t.data = NULL;
	t.loads = 0;
	test_assert(smatch("BODY needle", &m) == 0);
	test_assert(smatch("NOT BODY needle", &m) == 1);
	test_assert(smatch("SENTSINCE 1-Jan-1970", &m) == 0);
	test_assert(smatch("FROM alice TEXT x SENTON 1-Jul-2003", &m) == 0);
	m.load = NULL;
	test_assert(smatch("FROM alice", &m) == 0);
	m.load = tload;
	t.data = "Subject: no date\r\n\r\nbody\r\n";
	test_assert(smatch("SENTBEFORE 1-Jan-2100", &m) == 0);
	test_assert(smatch("SENTSINCE 1-Jan-1900", &m) == 0);
	test_assert(smatch("NOT SENTON 1-Jan-2000", &m) == 1);
	t.data = "Date: not a date\r\n\r\nbody\r\n";
	test_assert(smatch("SENTSINCE 1-Jan-1900", &m) == 0);
	t.data = "";
	test_assert(smatch("SENTSINCE 1-Jan-1900", &m) == 0);
	test_assert(smatch("FROM x", &m) == 0);
	t.data = test_message;

	/* combinations */
	test_assert(smatch("OR DELETED SEEN", &m) == 1);
	test_assert(smatch("OR DELETED DRAFT", &m) == 0);
	test_assert(smatch("NOT (SEEN DELETED)", &m) == 1);
	test_assert(smatch("NOT NOT SEEN", &m) == 1);
	test_assert(smatch("(SEEN (FLAGGED (ANSWERED 3)))", &m) == 1);
	test_assert(smatch("OR (DELETED FROM alice) (NOT DRAFT UID 30)", &m) == 1);

	/* case-insensitive keys */
	test_assert(smatch("sEeN fRoM ALICE", &m) == 1);
	test_assert(search("all", &root, &err) == 0);
	imap_search_free(root);
	imap_search_free(NULL);

	/* "$" (RFC 5182): the saved UIDs, as a key and after UID; empty
	 * matches nothing; not part of a set */
	{
		static const uint32_t saved[] = { 7, 30, 41 };
		static const uint32_t other[] = { 29, 31 };

		test_assert(smatch("$", &m) == 0 && smatch("NOT $", &m) == 1);
		m.saved = saved;
		m.nsaved = 3;
		test_assert(smatch("$", &m) == 1 && smatch("UID $", &m) == 1);
		test_assert(smatch("$ SEEN", &m) == 1 &&
		    smatch("NOT $", &m) == 0);
		test_assert(smatch("OR $ 1:2", &m) == 1);
		m.saved = other;
		m.nsaved = 2;
		test_assert(smatch("$", &m) == 0 && smatch("UID $", &m) == 0);
		test_assert(smatch("OR $ 3", &m) == 1);
		test_assert(search("1,$", &root, &err) != 0 &&
		    search("UID $:4", &root, &err) != 0);
		m.saved = NULL;
		m.nsaved = 0;
	}
	test_end();
}

/* ---- mutf7 ---- */

static bool
m2u(const char *in, const char *want)
{
	str_t out = STR_INIT;
	bool ok;

	str_append(&out, "x");
	ok = imap_mutf7_to_utf8(in, strlen(in), &out) == 0 &&
	    strcmp(str_c(&out) + 1, want) == 0;
	if (!ok)
		fprintf(stderr, "  mutf7 %s -> %s\n", in, str_c(&out));
	str_free(&out);
	return ok;
}

static bool
m2u_bad(const char *in)
{
	str_t out = STR_INIT;
	bool ok;

	str_append(&out, "x");
	ok = imap_mutf7_to_utf8(in, strlen(in), &out) == -1 &&
	    strcmp(str_c(&out), "x") == 0;
	if (!ok)
		fprintf(stderr, "  mutf7 %s accepted: %s\n", in, str_c(&out));
	str_free(&out);
	return ok;
}

static bool
u2m(const char *in, size_t len, const char *want)
{
	str_t out = STR_INIT, back = STR_INIT;
	bool ok;

	ok = imap_utf8_to_mutf7(in, len, &out) == 0 &&
	    strcmp(str_c(&out), want) == 0;
	if (!ok)
		fprintf(stderr, "  utf8 -> %s\n", str_c(&out));
	/* and back again */
	ok = ok && imap_mutf7_to_utf8(out.data, out.len, &back) == 0 &&
	    back.len == len && (len == 0 || memcmp(back.data, in, len) == 0);
	str_free(&out);
	str_free(&back);
	return ok;
}

static bool
u2m_bad(const char *in, size_t len)
{
	str_t out = STR_INIT;
	bool ok;

	str_append(&out, "y");
	ok = imap_utf8_to_mutf7(in, len, &out) == -1 &&
	    strcmp(str_c(&out), "y") == 0;
	str_free(&out);
	return ok;
}

#define U2M(s, want) u2m((s), sizeof(s) - 1, (want))
#define U2M_BAD(s) u2m_bad((s), sizeof(s) - 1)

static void
test_mutf7(void)
{
	test_begin("imap mutf7");
	test_assert(m2u("", ""));
	test_assert(m2u("INBOX", "INBOX"));
	test_assert(m2u("&-", "&"));
	test_assert(m2u("a&-b&-&-", "a&b&&"));
	test_assert(m2u("~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	    "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));
	test_assert(m2u("&AOk-", "\xc3\xa9"));
	test_assert(m2u("&AOkA6Q-", "\xc3\xa9\xc3\xa9"));
	test_assert(m2u("&AOkA6QDp-", "\xc3\xa9\xc3\xa9\xc3\xa9"));
	test_assert(m2u("&2D3eAA-", "\xf0\x9f\x98\x80"));
	test_assert(m2u("&AAE-", "\x01"));
	test_assert(m2u("&AOk-&-", "\xc3\xa9&"));
	test_assert(m2u("&AOk-x&AOk-", "\xc3\xa9x\xc3\xa9"));
	test_assert(m2u(" ~", " ~"));

	test_assert(m2u_bad("&"));
	test_assert(m2u_bad("&AOk"));
	test_assert(m2u_bad("a&AOk"));
	test_assert(m2u_bad("&AOk-&AOk-"));	/* non-canonical */
	test_assert(m2u_bad("&AOk-&AOkA6Q-"));
	test_assert(m2u_bad("&AGE-"));		/* 'a' must be direct */
	test_assert(m2u_bad("&ACY-"));		/* '&' must be "&-" */
	test_assert(m2u_bad("&ACA-"));		/* ' ' */
	test_assert(m2u_bad("&AH4-"));		/* '~' */
	test_assert(m2u_bad("&AOl-"));		/* left-over bits not zero */
	test_assert(m2u_bad("&AOkA-"));		/* 6+ left-over bits */
	test_assert(m2u_bad("&AOkA6QD-"));
	test_assert(m2u_bad("&AA-"));		/* encodes nothing */
	test_assert(m2u_bad("&A-"));
	test_assert(m2u_bad("&AAA-"));		/* U+0000 */
	test_assert(m2u_bad("&2D0-"));		/* lone high surrogate */
	test_assert(m2u_bad("&2D3YPQ-"));	/* high + high */
	test_assert(m2u_bad("&3gA-"));		/* lone low surrogate */
	test_assert(m2u_bad("&2D0-&3gA-"));	/* pair split over shifts */
	test_assert(m2u_bad("&AOk/-"));		/* '/' is not modified b64 */
	test_assert(m2u_bad("&AOk=-"));
	test_assert(m2u_bad("&AO k-"));
	test_assert(m2u_bad("a\x01"));
	test_assert(m2u_bad("a\x7f"));
	test_assert(m2u_bad("\xc3\xa9"));
	test_assert(m2u_bad("a\tb"));

	test_assert(U2M("", ""));
	test_assert(U2M("INBOX.a b", "INBOX.a b"));
	test_assert(U2M("&", "&-"));
	test_assert(U2M("a&&b", "a&-&-b"));
	test_assert(U2M("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	    "~peter/mail/&U,BTFw-/&ZeVnLIqe-"));
	test_assert(U2M("\xc3\xa9\xc3\xa9\xc3\xa9", "&AOkA6QDp-"));
	test_assert(U2M("\xf0\x9f\x98\x80", "&2D3eAA-"));
	test_assert(U2M("\x01\x7f", "&AAEAfw-"));
	test_assert(U2M("\xc3\xa9&", "&AOk-&-"));
	test_assert(U2M("\xf4\x8f\xbf\xbf", "&2,,f,w-"));

	test_assert(U2M_BAD("\xc3"));			/* truncated */
	test_assert(U2M_BAD("a\xe6\x97"));
	test_assert(U2M_BAD("\x80"));			/* continuation */
	test_assert(U2M_BAD("\xc0\xaf"));		/* overlong */
	test_assert(U2M_BAD("\xc1\xbf"));
	test_assert(U2M_BAD("\xe0\x80\xaf"));
	test_assert(U2M_BAD("\xf0\x80\x80\xaf"));
	test_assert(U2M_BAD("\xed\xa0\x80"));		/* surrogate */
	test_assert(U2M_BAD("\xed\xbf\xbf"));
	test_assert(U2M_BAD("\xf4\x90\x80\x80"));	/* > U+10FFFF */
	test_assert(U2M_BAD("\xf5\x80\x80\x80"));
	test_assert(U2M_BAD("\xff"));
	test_assert(U2M_BAD("\xc3\x28"));
	test_assert(u2m_bad("a\0b", 3));		/* NUL */
	test_end();
}

/* ---- LIST patterns ---- */

static void
test_list_match(void)
{
	str_t p = STR_INIT, n = STR_INIT;
	clock_t t0;
	int i;

	test_begin("imap_list_match");
	test_assert(imap_list_match("*", "", '/'));
	test_assert(imap_list_match("%", "", '/'));
	test_assert(imap_list_match("", "", '/'));
	test_assert(!imap_list_match("", "a", '/'));
	test_assert(imap_list_match("*", "a/b/c", '/'));
	test_assert(imap_list_match("%", "abc", '/'));
	test_assert(!imap_list_match("%", "a/b", '/'));
	test_assert(imap_list_match("a/%", "a/b", '/'));
	test_assert(!imap_list_match("a/%", "a/b/c", '/'));
	test_assert(imap_list_match("a/%/c", "a/b/c", '/'));
	test_assert(imap_list_match("a/*", "a/b/c", '/'));
	test_assert(!imap_list_match("a/*", "a", '/'));
	test_assert(imap_list_match("a*", "a", '/'));
	test_assert(imap_list_match("%/%", "a/b", '/'));
	test_assert(!imap_list_match("%/%", "a/b/c", '/'));
	test_assert(imap_list_match("*c", "a/b/c", '/'));
	test_assert(imap_list_match("%c", "abc", '/'));
	test_assert(!imap_list_match("%c", "a/bc", '/'));
	test_assert(imap_list_match("a%b%c", "axxbyyc", '.'));
	test_assert(imap_list_match("a%%%c", "ac", '.'));
	test_assert(!imap_list_match("a%c", "a.c", '.'));
	test_assert(imap_list_match("a*c", "a.c", '.'));
	test_assert(imap_list_match("**a**", "bab", '.'));
	test_assert(!imap_list_match("abc", "abd", '/'));
	test_assert(!imap_list_match("abc", "ab", '/'));
	test_assert(!imap_list_match("ab", "abc", '/'));
	test_assert(!imap_list_match("Foo", "foo", '/'));
	test_assert(imap_list_match("*%", "a/b", '/'));
	test_assert(imap_list_match("%*", "a/b", '/'));

	/* INBOX in any case */
	test_assert(imap_list_match("inbox", "INBOX", '/'));
	test_assert(imap_list_match("InBoX", "INBOX", '/'));
	test_assert(imap_list_match("inbox/%", "INBOX/sub", '/'));
	test_assert(!imap_list_match("inbox/Sub", "INBOX/sub", '/'));
	test_assert(imap_list_match("in%", "INBOX", '/'));
	test_assert(!imap_list_match("inbox", "INBOXES", '/'));
	test_assert(imap_list_match("INBOXES", "INBOXES", '/'));
	test_assert(!imap_list_match("inboxes", "INBOXES", '/'));
	test_assert(!imap_list_match("inbox", "Inbox", '/'));
	test_assert(imap_list_match("%", "INBOX", '\0'));
	test_assert(imap_list_match("%", "a/b", '\0'));

	/* no exponential blow-up: many wildcards against a long name */
	for (i = 0; i < 500; i++)
		str_append(&p, "*a%");
	str_append(&p, "b");
	for (i = 0; i < 2000; i++)
		str_append_c(&n, 'a');
	t0 = clock();
	test_assert(!imap_list_match(str_c(&p), str_c(&n), '/'));
	str_append_c(&n, 'b');
	test_assert(imap_list_match(str_c(&p), str_c(&n), '/'));
	test_assert((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
	str_free(&p);
	str_free(&n);
	test_end();
}

/* ---- dates ---- */

static bool
dt_fmt(long long t, const char *want)
{
	str_t s = STR_INIT;
	bool ok;

	imap_datetime_format(t, &s);
	ok = strcmp(str_c(&s), want) == 0;
	if (!ok)
		fprintf(stderr, "  datetime %lld: %s\n", t, str_c(&s));
	str_free(&s);
	return ok;
}

static void
test_dates(void)
{
	long long t = 0;

	test_begin("imap dates");
	test_assert(imap_date_parse("1-Jan-1970") == 0);
	test_assert(imap_date_parse("01-jan-1970") == 0);
	test_assert(imap_date_parse("2-JAN-1970") == 1);
	test_assert(imap_date_parse("1-Feb-1994") == 8797);
	test_assert(imap_date_parse("29-Feb-2000") == 11016);
	test_assert(imap_date_parse("29-Feb-2004") > 0);
	test_assert(imap_date_parse("31-Dec-9999") > 0);
	test_assert(imap_date_parse("31-Dec-1969") == -2);
	test_assert(imap_date_parse("1-Jan-1900") < -2);
	test_assert(imap_date_parse("29-Feb-1900") == -1);
	test_assert(imap_date_parse("29-Feb-2001") == -1);
	test_assert(imap_date_parse("31-Apr-2001") == -1);
	test_assert(imap_date_parse("0-Jan-2001") == -1);
	test_assert(imap_date_parse("32-Jan-2001") == -1);
	test_assert(imap_date_parse("001-Jan-2001") == -1);
	test_assert(imap_date_parse("1-Jan-01") == -1);
	test_assert(imap_date_parse("1-Jan-20011") == -1);
	test_assert(imap_date_parse("1-Jan-2001 ") == -1);
	test_assert(imap_date_parse(" 1-Jan-2001") == -1);
	test_assert(imap_date_parse("1-Janu-2001") == -1);
	test_assert(imap_date_parse("1-Ja") == -1);
	test_assert(imap_date_parse("1 Jan 2001") == -1);
	test_assert(imap_date_parse("") == -1);
	test_assert(imap_date_parse("-Jan-2001") == -1);

	test_assert(imap_datetime_parse("17-Jul-1996 02:44:25 -0700", &t) == 0 &&
	    t == 837596665);
	test_assert(imap_datetime_parse(" 1-Jan-1970 00:00:00 +0000", &t) == 0 &&
	    t == 0);
	test_assert(imap_datetime_parse("01-Jan-1970 01:00:00 +0100", &t) == 0 &&
	    t == 0);
	test_assert(imap_datetime_parse("1-Jan-1970 00:00:00 -0030", &t) == 0 &&
	    t == 1800);
	test_assert(imap_datetime_parse("31-Dec-1969 23:59:59 +0000", &t) == 0 &&
	    t == -1);
	test_assert(imap_datetime_parse("30-Jun-2015 23:59:60 +0000", &t) == 0);
	test_assert(imap_datetime_parse(" 11-Jan-1970 00:00:00 +0000", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 24:00:00 -0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:60:25 -0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:44:61 -0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:44:25 -0760", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:44:25 0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:44:25 -070", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:44:25 -07000", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 2:44:25 -0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996 02:44 -0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996  02:44:25 -0700", &t) == -1);
	test_assert(imap_datetime_parse("31-Jun-1996 02:44:25 -0700", &t) == -1);
	test_assert(imap_datetime_parse("17-Jul-1996", &t) == -1);
	test_assert(imap_datetime_parse("", &t) == -1);

	test_assert(dt_fmt(0, "\"01-Jan-1970 00:00:00 +0000\""));
	test_assert(dt_fmt(837596665, "\"17-Jul-1996 09:44:25 +0000\""));
	test_assert(dt_fmt(-1, "\"31-Dec-1969 23:59:59 +0000\""));
	test_assert(dt_fmt(951782400, "\"29-Feb-2000 00:00:00 +0000\""));
	test_assert(dt_fmt(253402300799LL, "\"31-Dec-9999 23:59:59 +0000\""));
	test_assert(dt_fmt(999999999999999LL, "\"31-Dec-9999 23:59:59 +0000\""));
	test_assert(dt_fmt(-999999999999999LL, "\"01-Jan-0000 00:00:00 +0000\""));
	/* round trip */
	test_assert(imap_datetime_parse("29-Feb-2000 00:00:00 +0000", &t) == 0 &&
	    t == 951782400);
	test_end();
}

/* ---- response strings ---- */

static bool
app(void (*fn)(str_t *, const char *, size_t), const char *s, size_t len,
    const char *want, size_t wlen)
{
	str_t out = STR_INIT;
	bool ok;

	fn(&out, s, len);
	ok = out.len == wlen && memcmp(out.data, want, wlen) == 0;
	if (!ok)
		fprintf(stderr, "  append: [%s]\n", str_c(&out));
	str_free(&out);
	return ok;
}

#define APP(fn, s, want) app(fn, (s), sizeof(s) - 1, (want), sizeof(want) - 1)

static void
test_quoting(void)
{
	char big[1100];
	str_t out = STR_INIT;

	test_begin("imap response strings");
	test_assert(APP(imap_append_string, "abc", "\"abc\""));
	test_assert(APP(imap_append_string, "", "\"\""));
	test_assert(APP(imap_append_string, "a\"b\\c", "\"a\\\"b\\\\c\""));
	test_assert(APP(imap_append_string, "a\r\nb", "{4}\r\na\r\nb"));
	test_assert(APP(imap_append_string, "a\0b", "{3}\r\na\0b"));
	test_assert(APP(imap_append_string, "\xc3\xa9", "{2}\r\n\xc3\xa9"));
	test_assert(APP(imap_append_string, "a\tb", "\"a\tb\""));
	memset(big, 'x', sizeof(big));
	imap_append_string(&out, big, 1024);
	test_assert(out.len == 1026 && out.data[0] == '"');
	str_truncate(&out, 0);
	imap_append_string(&out, big, 1025);
	test_assert(out.len == 1025 + 8 &&
	    strncmp(out.data, "{1025}\r\n", 8) == 0);
	str_free(&out);

	imap_append_nstring(&out, NULL, 0);
	test_assert_streq(str_c(&out), "NIL");
	imap_append_nstring(&out, "NIL", 3);
	test_assert_streq(str_c(&out), "NIL\"NIL\"");
	str_free(&out);

	test_assert(APP(imap_append_astring, "INBOX", "INBOX"));
	test_assert(APP(imap_append_astring, "a.b-c&d~/$", "a.b-c&d~/$"));
	test_assert(APP(imap_append_astring, "", "\"\""));
	test_assert(APP(imap_append_astring, "NIL", "\"NIL\""));
	test_assert(APP(imap_append_astring, "nil", "\"nil\""));
	test_assert(APP(imap_append_astring, "NILS", "NILS"));
	test_assert(APP(imap_append_astring, "a b", "\"a b\""));
	test_assert(APP(imap_append_astring, "a(", "\"a(\""));
	test_assert(APP(imap_append_astring, "a)", "\"a)\""));
	test_assert(APP(imap_append_astring, "a{", "\"a{\""));
	test_assert(APP(imap_append_astring, "a%", "\"a%\""));
	test_assert(APP(imap_append_astring, "a*", "\"a*\""));
	test_assert(APP(imap_append_astring, "a]", "\"a]\""));
	test_assert(APP(imap_append_astring, "a\"", "\"a\\\"\""));
	test_assert(APP(imap_append_astring, "a\\", "\"a\\\\\""));
	test_assert(APP(imap_append_astring, "a\x7f", "\"a\x7f\""));
	test_assert(APP(imap_append_astring, "a\x01", "\"a\x01\""));
	test_assert(APP(imap_append_astring, "\xc3\xa9", "{2}\r\n\xc3\xa9"));
	/* IMAP4rev2: valid UTF-8 quoted, the rest as imap_append_astring */
	test_assert(APP(imap_append_astring_utf8, "\xc3\xa9", "\"\xc3\xa9\""));
	test_assert(APP(imap_append_astring_utf8, "R&D \xc3\xa9\"",
	    "\"R&D \xc3\xa9\\\"\""));
	test_assert(APP(imap_append_astring_utf8, "INBOX", "INBOX"));
	test_assert(APP(imap_append_astring_utf8, "a b", "\"a b\""));
	test_assert(APP(imap_append_astring_utf8, "\xc3", "{1}\r\n\xc3"));
	test_assert(APP(imap_append_astring_utf8, "\xc3\xa9\r", "{3}\r\n\xc3\xa9\r"));
	test_end();
}

/* imap_arg_to_mutf7: a UTF-8 mailbox argument made modified UTF-7 in
 * place; invalid UTF-8 or NUL refused, the argument left as it was. */
static void
test_arg_to_mutf7(void)
{
	struct imap_cmd cmd;
	const char *err = NULL;
	static const char line[] = "a CREATE \"Entw\xc3\xbcrfe\" \"R&D\" \"\" "
	    "\"x\xff\" {3}\r\na\0b";

	test_begin("imap arg to mutf7");
	test_assert(imap_cmd_parse(line, sizeof(line) - 1, &cmd, &err) == 0);
	test_assert(cmd.nargs == 5);
	test_assert(imap_arg_to_mutf7(&cmd, &cmd.args[0]) == 0);
	test_assert_streq(cmd.args[0].str, "Entw&APw-rfe");
	test_assert(cmd.args[0].len == strlen("Entw&APw-rfe"));
	test_assert(imap_arg_to_mutf7(&cmd, &cmd.args[1]) == 0);
	test_assert_streq(cmd.args[1].str, "R&-D");
	test_assert(imap_arg_to_mutf7(&cmd, &cmd.args[2]) == 0);
	test_assert_streq(cmd.args[2].str, "");
	test_assert(imap_arg_to_mutf7(&cmd, &cmd.args[3]) == -1);
	test_assert_streq(cmd.args[3].str, "x\xff");
	test_assert(imap_arg_to_mutf7(&cmd, &cmd.args[4]) == -1);
	imap_cmd_free(&cmd);
	test_end();
}

/* A command kept while it waits (IDLE) shrinks to its tag and name. */
static void
test_cmd_compact(void)
{
	struct imap_cmd cmd;
	const char *err;

	test_begin("imap parse: compact");
	test_assert(parse("a17 UID FETCH 1:* (FLAGS UID)", &cmd, &err) == 0);
	imap_cmd_compact(&cmd);
	test_assert_streq(cmd.tag, "a17");
	test_assert_streq(cmd.name, "FETCH");
	test_assert(cmd.uid && cmd.args == NULL && cmd.nargs == 0);
	imap_cmd_compact(&cmd);		/* twice: the same */
	test_assert_streq(cmd.tag, "a17");
	test_assert_streq(cmd.name, "FETCH");
	imap_cmd_free(&cmd);
	test_assert(cmd.tag == NULL && cmd.pool == NULL);
	/* a line that did not parse as far as its name */
	test_assert(parse("tag", &cmd, &err) < 0);
	imap_cmd_compact(&cmd);
	test_assert(cmd.name == NULL);
	imap_cmd_free(&cmd);
	test_end();
}

int
main(void)
{
	test_cmd_compact();
	test_line_literal();
	test_cmd_basic();
	test_cmd_errors();
	test_seqset();
	test_fetch();
	test_search_parse();
	test_search_match();
	test_mutf7();
	test_list_match();
	test_dates();
	test_quoting();
	test_arg_to_mutf7();
	return test_done();
}
