/*
 * test_sieve.c: unit tests for lib/sieve -- the parser on RFC 5228's
 * examples, errors with their line numbers, the bounds, the wildcard
 * matcher (captures, escapes, a pathological pattern in linear work)
 * and the interpreter's actions and implicit keep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/sieve/sieve.h"
#include "tests/unit/test.h"

/* The errors of a script that must fail ("" if it parsed). */
static char *
errors_of(const char *text)
{
	struct sieve_script *s = NULL;
	str_t err = STR_INIT;

	if (sieve_parse(text, strlen(text), &s, &err) == 0) {
		sieve_free(s);
		str_free(&err);
		return xstrdup("");
	}
	test_assert(s == NULL);
	if (err.data == NULL)
		str_append(&err, "");
	return str_steal(&err);
}

static bool
parses(const char *text)
{
	char *e = errors_of(text);
	bool ok = *e == '\0';

	if (!ok)
		fprintf(stderr, "unexpected: %s", e);
	free(e);
	return ok;
}

static bool
fails_with(const char *text, const char *want)
{
	char *e = errors_of(text);
	bool ok = strstr(e, want) != NULL;

	if (!ok)
		fprintf(stderr, "wanted \"%s\", got \"%s\"\n", want, e);
	free(e);
	return ok;
}

/* RFC 5228 section 9 (the example script) and other forms of 2.x. */
static const char *rfc_example =
    "#\n"
    "# Example Sieve Filter\n"
    "# Declare any optional features or extension used by the script\n"
    "#\n"
    "require [\"fileinto\"];\n"
    "\n"
    "#\n"
    "# Handle messages from known mailing lists\n"
    "# Move messages from IETF filter discussion list to filter mailbox\n"
    "#\n"
    "if header :is \"Sender\" \"owner-ietf-mta-filters@imc.org\"\n"
    "        {\n"
    "        fileinto \"filter\";  # move to \"filter\" mailbox\n"
    "        }\n"
    "#\n"
    "# Keep all messages to or from people in my company\n"
    "#\n"
    "elsif address :DOMAIN :is [\"From\", \"To\"] \"example.com\"\n"
    "        {\n"
    "        keep;               # keep in \"In\" mailbox\n"
    "        }\n"
    "\n"
    "#\n"
    "# Try and catch unsolicited email.  If a message is not to me,\n"
    "# or it contains a subject known to be spam, file it away.\n"
    "#\n"
    "elsif anyof (NOT address :all :contains\n"
    "               [\"To\", \"Cc\", \"Bcc\"] \"me@example.com\",\n"
    "             header :matches \"subject\"\n"
    "               [\"*make*money*fast*\", \"*university*dipl*mas*\"])\n"
    "        {\n"
    "        fileinto \"spam\";   # move to \"spam\" mailbox\n"
    "        }\n"
    "else\n"
    "        {\n"
    "        # Move all other (non-company) mail to \"personal\"\n"
    "        # mailbox.\n"
    "        fileinto \"personal\";\n"
    "        }\n";

static void
test_parse_ok(void)
{
	test_begin("sieve parse: RFC 5228 forms");
	test_assert(parses(rfc_example));
	test_assert(parses(""));
	test_assert(parses("keep;"));
	test_assert(parses("if size :over 100K { discard; }"));
	test_assert(parses("if size :under 1G { keep; }"));
	test_assert(parses("/* c */ # line\r\nkeep;\r\n"));
	test_assert(parses("require \"fileinto\";\n"
	    "fileinto text: # comment\n..dot\nline\n.\n;"));
	test_assert(parses("if header :contains [\"a\",\"b\"] \"\\\"q\\\\\" "
	    "{ stop; }"));
	test_assert(parses("require [\"variables\", \"relational\", "
	    "\"comparator-i;ascii-numeric\"];\n"
	    "if header :count \"ge\" :comparator \"i;ascii-numeric\" "
	    "\"to\" \"3\" { set :lower \"x\" \"Y\"; }"));
	test_end();
}

static void
test_parse_errors(void)
{
	test_begin("sieve parse: errors with line numbers");
	test_assert(fails_with("keep;\nfileint \"x\";", "line 2: unknown "
	    "command 'fileint'"));
	test_assert(fails_with("keep;\n\nfileinto \"x\";", "line 3: command "
	    "'fileinto' requires extension 'fileinto' (missing require)"));
	test_assert(fails_with("if foo { keep; }", "line 1: unknown test "
	    "'foo'"));
	test_assert(fails_with("if size 10 { keep; }", "needs one of"));
	test_assert(fails_with("if size :over \"10\" { keep; }",
	    "must be a number"));
	test_assert(fails_with("\nif header :bogus \"a\" \"b\" { keep; }",
	    "line 2: header: unknown tag ':bogus'"));
	test_assert(fails_with("if header :is :contains \"a\" \"b\" {}",
	    "conflicts"));
	test_assert(fails_with("redirect [\"a@b\", \"c@d\"];",
	    "must be a string"));
	test_assert(fails_with("keep", "line 1: expected ';' or '{'"));
	test_assert(fails_with("keep;\nif true {\nkeep;\n", "line 2: block "
	    "not closed"));
	test_assert(fails_with("keep;\n\"abc", "line 2: unterminated "
	    "string"));
	test_assert(fails_with("/* open", "unterminated comment"));
	test_assert(fails_with("keep;\nrequire \"fileinto\";",
	    "line 2: require must come"));
	test_assert(fails_with("require \"regex\";", "unsupported "
	    "extension 'regex'"));
	test_assert(fails_with("require \"vacation\";\n"
	    "vacation :seconds 60 \"x\";", "line 2: vacation: tag "
	    "':seconds' requires extension 'vacation-seconds'"));
	test_assert(fails_with("require \"vacation\";\n"
	    "vacation :days \"7\" \"x\";", "line 2: vacation: tag ':days' "
	    "needs a number argument"));
	test_assert(fails_with("require \"vacation-seconds\";\n"
	    "vacation :days 1 :seconds 60 \"x\";", "conflicts with"));
	test_assert(fails_with("require \"nonesuch\";", "unknown extension"));
	test_assert(fails_with("else { keep; }", "else without a preceding "
	    "if"));
	test_assert(fails_with("if true keep;", "line 1:"));
	test_assert(fails_with("fileinto :copy \"x\";", "requires"));
	test_assert(fails_with("require \"fileinto\"; fileinto :copy \"x\";",
	    "tag ':copy' requires extension 'copy'"));
	test_assert(fails_with("if header :comparator \"i;nope\" \"a\" \"b\" "
	    "{}", "unknown comparator"));
	test_assert(fails_with("if size :over 99999999999G {}", "too large"));
	test_assert(fails_with("if address :regex \"from\" \"x\" {}",
	    "regex"));
	test_end();
}

static void
test_parse_bounds(void)
{
	str_t s = STR_INIT;

	test_begin("sieve parse: bounds");
	for (int i = 0; i < 100; i++)
		str_append(&s, "if true {");
	test_assert(fails_with(str_c(&s), "nesting deeper"));
	str_truncate(&s, 0);
	for (int i = 0; i < 100; i++)
		str_append(&s, "not ");
	str_append(&s, "true");
	str_truncate(&s, 0);
	str_append(&s, "if ");
	for (int i = 0; i < 100; i++)
		str_append(&s, "not ");
	str_append(&s, "true {}");
	test_assert(fails_with(str_c(&s), "nesting deeper"));
	str_truncate(&s, 0);
	for (int i = 0; i < SIEVE_NODES_MAX + 1; i++)
		str_append(&s, "stop;");
	test_assert(fails_with(str_c(&s), "more than"));
	str_truncate(&s, 0);
	str_append_c(&s, '"');
	for (int i = 0; i < SIEVE_STRING_MAX + 1; i++)
		str_append_c(&s, 'a');
	str_append(&s, "\";");
	test_assert(fails_with(str_c(&s), "string longer"));
	test_assert(fails_with("\x01", "unexpected byte 0x01"));
	/* a NUL inside the text is just a bad byte */
	{
		struct sieve_script *sc = NULL;
		str_t err = STR_INIT;

		test_assert(sieve_parse("keep;\0", 6, &sc, &err) < 0);
		str_free(&err);
	}
	str_free(&s);
	test_end();
}

static bool
m(const char *v, const char *p, bool fold)
{
	uint64_t work = 0;

	return sieve_match(v, strlen(v), p, strlen(p), fold, NULL, NULL,
	    &work);
}

static void
test_match(void)
{
	char *caps[SIEVE_MATCH_CAPS];
	size_t n = 0;
	uint64_t work = 0;
	str_t v = STR_INIT, p = STR_INIT;

	test_begin("sieve match: wildcards");
	test_assert(m("", "", false));
	test_assert(m("", "*", false));
	test_assert(!m("", "?", false));
	test_assert(m("abc", "a?c", false));
	test_assert(m("ABC", "a*", true));
	test_assert(!m("ABC", "a*", false));
	test_assert(m("a*c", "a\\*c", false));
	test_assert(!m("abc", "a\\*c", false));
	test_assert(m("x?", "x\\?", false));
	test_assert(m("\xc3\xa9t\xc3\xa9", "?t?", false));
	test_assert(m("make lots of money fast", "*make*money*fast*", true));
	test_assert(!m("make money", "*make*money*fast*", true));
	/* captures: leftmost wildcards take as little as they can */
	test_assert(sieve_match("xaxbxa bb", 9, "*a*b*", 5, false, caps, &n,
	    &work));
	test_assert(n == 4);
	test_assert_streq(caps[0], "xaxbxa bb");
	test_assert_streq(caps[1], "x");
	test_assert_streq(caps[2], "x");
	test_assert_streq(caps[3], "xa bb");
	for (size_t i = 0; i < n; i++)
		free(caps[i]);
	/* a pattern that is exponential for a naive backtracker */
	for (int i = 0; i < 5000; i++)
		str_append_c(&v, 'a');
	for (int i = 0; i < 50; i++)
		str_append(&p, "*a");
	str_append(&p, "*b");
	work = 0;
	test_assert(!sieve_match(v.data, v.len, p.data, p.len, false, NULL,
	    NULL, &work));
	test_assert(work < 5000u * 110);
	str_free(&v);
	str_free(&p);
	test_end();
}

static char *
run_text(const char *script, const char *msg)
{
	struct sieve_script *s = NULL;
	/* currentdate: 2024-07-01T12:00:00Z */
	struct sieve_msg sm = { msg, strlen(msg), "from@example.org",
		"bob+tag@example.net", 0, 1719835200 };
	struct sieve_result res;
	str_t err = STR_INIT, out = STR_INIT;

	if (sieve_parse(script, strlen(script), &s, &err) < 0) {
		fprintf(stderr, "%s", str_c(&err));
		str_free(&err);
		return xstrdup("parse error");
	}
	sieve_run(s, &sm, NULL, &res);
	sieve_result_text(&res, &out);
	sieve_result_clear(&res);
	sieve_free(s);
	if (out.data == NULL)
		str_append(&out, "");
	return str_steal(&out);
}

static bool
runs_to(const char *script, const char *msg, const char *want)
{
	char *got = run_text(script, msg);
	bool ok = strcmp(got, want) == 0;

	if (!ok)
		fprintf(stderr, "wanted:\n%sgot:\n%s", want, got);
	free(got);
	return ok;
}

static void
test_run(void)
{
	const char *msg = "From: Alice <alice@example.com>\r\n"
	    "To: bob+tag@example.net, carol@example.net\r\n"
	    "Subject: =?utf-8?q?Caf=C3=A9?= meeting\r\n"
	    "\r\n"
	    "Hello\r\n";

	test_begin("sieve run: actions and implicit keep");
	test_assert(runs_to("", msg, "store INBOX (implicit keep)\n"));
	test_assert(runs_to("discard;", msg, "discard\n"));
	test_assert(runs_to("require \"fileinto\";\n"
	    "if header :contains \"subject\" \"caf\xc3\xa9\" "
	    "{ fileinto \"Cafe\"; }", msg, "store Cafe\n"));
	test_assert(runs_to("require [\"fileinto\", \"copy\"];\n"
	    "fileinto :copy \"A\";", msg,
	    "store A\nstore INBOX (implicit keep)\n"));
	test_assert(runs_to("require [\"fileinto\", \"subaddress\"];\n"
	    "if address :detail \"to\" \"tag\" { fileinto \"T\"; }", msg,
	    "store T\n"));
	test_assert(runs_to("require [\"envelope\", \"fileinto\"];\n"
	    "if envelope :domain \"to\" \"example.net\" "
	    "{ fileinto \"E\"; }", msg, "store E\n"));
	test_assert(runs_to("require [\"fileinto\", \"variables\"];\n"
	    "if address :matches \"from\" \"*@*\" "
	    "{ fileinto \"${2}/${1}\"; }", msg, "store example.com/alice\n"));
	test_assert(runs_to("require \"imap4flags\";\n"
	    "addflag [\"\\\\Seen\", \"\\\\Seen \\\\Flagged\"];", msg,
	    "store INBOX (implicit keep) flags \\Seen \\Flagged\n"));
	test_assert(runs_to("redirect \"a@x.org\"; redirect \"b@x.org\"; "
	    "redirect \"c@x.org\"; redirect \"d@x.org\"; "
	    "redirect \"e@x.org\";", msg, "error line 1: more than 4 "
	    "redirects\nstore INBOX (implicit keep)\n"));
	test_assert(runs_to("require \"reject\";\nreject \"no\";", msg,
	    "reject no\n"));
	test_assert(runs_to("require [\"reject\", \"fileinto\"];\n"
	    "fileinto \"x\"; reject \"no\";", msg,
	    "error line 2: reject conflicts with another action\n"
	    "store INBOX (implicit keep)\n"));
	/* vacation: the period bounded, the keep stays, one per run */
	test_assert(runs_to("require \"vacation\";\nvacation \"away\";", msg,
	    "vacation 604800 reason away\nstore INBOX (implicit keep)\n"));
	test_assert(runs_to("require \"vacation\";\n"
	    "vacation :days 1000 :subject \"Out\" \"away\";", msg,
	    "vacation 7776000 subject Out reason away\n"
	    "store INBOX (implicit keep)\n"));
	test_assert(runs_to("require \"vacation-seconds\";\n"
	    "vacation :seconds 1 \"away\";", msg,
	    "vacation 60 reason away\nstore INBOX (implicit keep)\n"));
	test_assert(runs_to("require \"vacation\";\n"
	    "vacation \"a\"; vacation \"b\";", msg,
	    "error line 2: more than one vacation action\n"
	    "store INBOX (implicit keep)\n"));
	test_end();
}

/* date, currentdate and index (RFC 5260). */
static void
test_date(void)
{
	const char *msg = "Received: from a by b; Tue, 2 Jan 2024 "
	    "03:04:05 +0100\r\n"
	    "Received: from c by d; Wed, 03 Jan 2024 23:59:58 -0230\r\n"
	    "Date: Mon, 1 Jan 2024 22:30:00 -0500\r\n"
	    "From: a@example.com\r\n"
	    "To: x@example.net\r\n"
	    "To: y@example.org, z@example.org\r\n"
	    "Subject: s\r\n"
	    "\r\n"
	    "body\r\n";
	static const struct {
		const char *part, *orig, *zone;
	} parts[] = {
		{ "year", "2024", "2024" }, { "month", "01", "01" },
		{ "day", "01", "02" }, { "date", "2024-01-01", "2024-01-02" },
		{ "julian", "60310", "60311" }, { "hour", "22", "09" },
		{ "minute", "30", "00" }, { "second", "00", "00" },
		{ "time", "22:30:00", "09:00:00" },
		{ "iso8601", "2024-01-01T22:30:00-05:00",
		  "2024-01-02T09:00:00+05:30" },
		{ "std11", "Mon, 01 Jan 2024 22:30:00 -0500",
		  "Tue, 02 Jan 2024 09:00:00 +0530" },
		{ "zone", "-0500", "+0530" }, { "weekday", "1", "2" },
	};
	const char *pre = "require [\"date\", \"index\", \"variables\", "
	    "\"fileinto\", \"relational\", "
	    "\"comparator-i;ascii-numeric\"];\n";
	char script[512], want[128];

	test_begin("sieve date: every date-part, zones, index, currentdate");
	setenv("TZ", "UTC0", 1);
	tzset();
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		snprintf(script, sizeof(script), "%sif date :originalzone "
		    ":matches \"date\" \"%s\" \"*\" { fileinto \"${0}\"; }",
		    pre, parts[i].part);
		snprintf(want, sizeof(want), "store %s\n", parts[i].orig);
		test_assert(runs_to(script, msg, want));
		snprintf(script, sizeof(script), "%sif date :zone \"+0530\" "
		    ":matches \"date\" \"%s\" \"*\" { fileinto \"${0}\"; }",
		    pre, parts[i].part);
		snprintf(want, sizeof(want), "store %s\n", parts[i].zone);
		test_assert(runs_to(script, msg, want));
	}
	/* no zone: the local one (TZ), UTC here ("Z" in iso8601) */
	test_assert(runs_to("require [\"date\", \"variables\", "
	    "\"fileinto\"];\nif date :matches \"date\" \"iso8601\" \"*\" "
	    "{ fileinto \"${0}\"; }", msg, "store 2024-01-02T03:30:00Z\n"));
	setenv("TZ", "EST5", 1);
	tzset();
	test_assert(runs_to("require [\"date\", \"variables\", "
	    "\"fileinto\"];\nif date :matches \"date\" \"std11\" \"*\" "
	    "{ fileinto \"${0}\"; }", msg,
	    "store Mon, 01 Jan 2024 22:30:00 -0500\n"));
	/* a malformed :zone means the local zone, as Pigeonhole does */
	test_assert(runs_to("require [\"date\", \"variables\", "
	    "\"fileinto\"];\nif date :zone \"bogus\" :matches \"date\" "
	    "\"zone\" \"*\" { fileinto \"${0}\"; }", msg, "store -0500\n"));
	setenv("TZ", "UTC0", 1);
	tzset();
	/* Received: the date after the last ';'; the first field, or
	 * the :index one (from the end with :last) */
	test_assert(runs_to("require [\"date\", \"fileinto\"];\n"
	    "if date :originalzone :is \"received\" \"zone\" \"+0100\" "
	    "{ fileinto \"first\"; }", msg, "store first\n"));
	snprintf(script, sizeof(script), "%sif date :index 1 :last "
	    ":originalzone :is \"received\" \"zone\" \"-0230\" "
	    "{ fileinto \"last\"; }", pre);
	test_assert(runs_to(script, msg, "store last\n"));
	snprintf(script, sizeof(script), "%sif date :index 3 \"received\" "
	    "\"year\" \"2024\" { fileinto \"no\"; }", pre);
	test_assert(runs_to(script, msg, "store INBOX (implicit keep)\n"));
	/* relational :value with the numeric comparator, :count */
	snprintf(script, sizeof(script), "%sif allof(date :value \"ge\" "
	    ":comparator \"i;ascii-numeric\" \"date\" \"year\" \"2023\", "
	    "date :value \"lt\" :originalzone \"date\" \"date\" "
	    "\"2024-01-02\", date :count \"eq\" \"date\" \"year\" \"1\", "
	    "date :count \"eq\" \"x-none\" \"year\" \"0\") "
	    "{ fileinto \"rel\"; }", pre);
	test_assert(runs_to(script, msg, "store rel\n"));
	/* a missing field, an unparseable date, an unknown part: false */
	test_assert(runs_to("require [\"date\", \"fileinto\"];\n"
	    "if anyof(date :matches \"x-none\" \"year\" \"*\", "
	    "date :matches \"subject\" \"year\" \"*\", "
	    "date :matches \"date\" \"fortnight\" \"*\") "
	    "{ fileinto \"no\"; }", msg, "store INBOX (implicit keep)\n"));
	/* currentdate */
	snprintf(script, sizeof(script), "%sif currentdate :zone \"-0700\" "
	    ":matches \"iso8601\" \"*\" { fileinto \"${0}\"; }", pre);
	test_assert(runs_to(script, msg, "store 2024-07-01T05:00:00-07:00\n"));
	snprintf(script, sizeof(script), "%sif currentdate :value \"gt\" "
	    "\"date\" \"2024-06-30\" { fileinto \"after\"; }", pre);
	test_assert(runs_to(script, msg, "store after\n"));
	/* index on header and address */
	snprintf(script, sizeof(script), "%sif header :index 2 :matches "
	    "\"received\" \"*\" { fileinto \"${0}\"; }", pre);
	test_assert(runs_to(script, msg, "store from c by d; Wed, 03 Jan "
	    "2024 23:59:58 -0230\n"));
	snprintf(script, sizeof(script), "%sif address :index 1 :last "
	    ":count \"eq\" :comparator \"i;ascii-numeric\" \"to\" \"2\" "
	    "{ fileinto \"two\"; }", pre);
	test_assert(runs_to(script, msg, "store two\n"));
	snprintf(script, sizeof(script), "%sif address :index 1 :is "
	    "\"to\" \"y@example.org\" { fileinto \"no\"; }", pre);
	test_assert(runs_to(script, msg, "store INBOX (implicit keep)\n"));
	/* validation */
	test_assert(fails_with("require \"index\";\nif header :last "
	    "\"to\" \"x\" { stop; }", "line 2: header: ':last' needs "
	    "':index'"));
	test_assert(fails_with("require \"index\";\nif header :index 0 "
	    "\"to\" \"x\" { stop; }", "line 2: header: ':index' counts "
	    "from 1"));
	test_assert(fails_with("if header :index 1 \"to\" \"x\" { stop; }",
	    "line 1: header: tag ':index' requires extension 'index'"));
	test_assert(fails_with("if date \"date\" \"year\" \"2024\" "
	    "{ stop; }", "line 1: test 'date' requires extension 'date'"));
	test_assert(fails_with("require \"date\";\nif date :zone \"+0100\" "
	    ":originalzone \"date\" \"year\" \"2024\" { stop; }",
	    "conflicts with ':zone'"));
	test_assert(fails_with("require \"date\";\nif currentdate "
	    ":originalzone \"year\" \"2024\" { stop; }",
	    "currentdate: unknown tag ':originalzone'"));
	test_assert(fails_with("require \"date\";\nif date \"year\" "
	    "\"2024\" { stop; }", "date: expected 3 positional arguments"));
	test_end();
}

/* editheader (RFC 5293). */
static void
test_editheader(void)
{
	const char *msg = "Received: from a by b; Tue, 2 Jan 2024 "
	    "03:04:05 +0100\r\n"
	    "From: a@example.com\r\n"
	    "X-Tag: one\r\n"
	    "X-Tag: two\r\n"
	    "X-Tag: =?utf-8?q?caf=C3=A9?=\r\n"
	    "Subject: s\r\n"
	    "\r\n"
	    "body\r\n";
	const char *pre = "require [\"editheader\", \"index\", "
	    "\"variables\", \"fileinto\", \"copy\"];\n";
	char script[1024];
	str_t big = STR_INIT;

	test_begin("sieve editheader: add, delete, what later actions get");
	/* the copy filed before the change is as it came; the one after
	 * and the implicit keep have the edits; tests see them */
	snprintf(script, sizeof(script), "%sfileinto :copy \"A\";\n"
	    "addheader \"X-New\" \"v1\";\n"
	    "addheader :last \"X-End\" \"v2\";\n"
	    "if header :is \"x-new\" \"v1\" { fileinto :copy \"B\"; }\n"
	    "deleteheader :index 2 \"x-tag\";\n"
	    "deleteheader :contains \"x-tag\" \"caf\u00e9\";\n"
	    "deleteheader \"subject\";\n", pre);
	test_assert(runs_to(script, msg,
	    "store A\n"
	    "store B\n"
	    "  | X-New: v1\n"
	    "  | Received: from a by b; Tue, 2 Jan 2024 03:04:05 +0100\n"
	    "  | From: a@example.com\n"
	    "  | X-Tag: one\n"
	    "  | X-Tag: two\n"
	    "  | X-Tag: =?utf-8?q?caf=C3=A9?=\n"
	    "  | Subject: s\n"
	    "  | X-End: v2\n"
	    "store INBOX (implicit keep)\n"
	    "  | X-New: v1\n"
	    "  | Received: from a by b; Tue, 2 Jan 2024 03:04:05 +0100\n"
	    "  | From: a@example.com\n"
	    "  | X-Tag: one\n"
	    "  | X-End: v2\n"));
	/* :last counts from the end; without patterns every field goes */
	snprintf(script, sizeof(script), "%sdeleteheader :index 1 :last "
	    "\"x-tag\";\ndeleteheader :index 1 \"x-tag\";\n"
	    "if header :is \"x-tag\" \"two\" { fileinto \"two\"; }", pre);
	test_assert(runs_to(script, msg, "store two\n"
	    "  | Received: from a by b; Tue, 2 Jan 2024 03:04:05 +0100\n"
	    "  | From: a@example.com\n"
	    "  | X-Tag: two\n"
	    "  | Subject: s\n"));
	/* protected fields are left alone (the message stays as it came) */
	test_assert(runs_to("require [\"editheader\", \"fileinto\"];\n"
	    "deleteheader \"received\"; deleteheader \"RETURN-PATH\";\n"
	    "addheader \"Auto-Submitted\" \"no\";\n"
	    "addheader \"Received\" \"forged\";\n"
	    "if allof(not exists \"auto-submitted\", exists \"received\") "
	    "{ fileinto \"ok\"; }", msg, "store ok\n"));
	/* folded and encoded values */
	test_assert(runs_to("require \"editheader\";\n"
	    "deleteheader \"x-tag\"; deleteheader \"received\";\n"
	    "addheader :last \"X-U\" \"Gr\xc3\xbc\xc3\x9f\xc3\xa9\";\n"
	    "addheader :last \"X-L\" \"aaaaaaaaaa bbbbbbbbbb cccccccccc "
	    "dddddddddd eeeeeeeeee ffffffffff gggggggggg\";\n"
	    "addheader :last \"X-CR\" \"a\r\nb\";", msg,
	    "store INBOX (implicit keep)\n"
	    "  | Received: from a by b; Tue, 2 Jan 2024 03:04:05 +0100\n"
	    "  | From: a@example.com\n"
	    "  | Subject: s\n"
	    "  | X-U: =?UTF-8?B?R3LDvMOfw6k=?=\n"
	    "  | X-L: aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee "
	    "ffffffffff\n"
	    "  |  gggggggggg\n"
	    "  | X-CR: =?UTF-8?B?YSAgYg==?=\n"));
	/* bounds: fields added, one field's size, a bad name at run time */
	str_append(&big, "require \"editheader\";\n");
	for (int i = 0; i <= SIEVE_ADDHEADER_MAX; i++)
		str_append(&big, "addheader \"X-N\" \"v\";\n");
	test_assert(runs_to(str_c(&big), msg, "error line 66: addheader: "
	    "more than 64 fields added\nstore INBOX (implicit keep)\n"));
	str_truncate(&big, 0);
	str_append(&big, "require \"editheader\";\naddheader \"X-B\" \"");
	for (int i = 0; i < 300; i++)
		str_append(&big, "word word ");
	str_append(&big, "\";\n");
	test_assert(runs_to(str_c(&big), msg, "error line 2: addheader: "
	    "field longer than 2048 bytes\nstore INBOX (implicit keep)\n"));
	str_free(&big);
	test_assert(runs_to("require [\"editheader\", \"variables\"];\n"
	    "set \"n\" \"a b\"; addheader \"${n}\" \"v\";", msg,
	    "error line 2: addheader: bad field name 'a b'\n"
	    "store INBOX (implicit keep)\n"));
	/* validation */
	test_assert(fails_with("addheader \"X\" \"v\";", "line 1: command "
	    "'addheader' requires extension 'editheader'"));
	test_assert(fails_with("require \"editheader\";\naddheader \"X:\" "
	    "\"v\";", "line 2: addheader: bad field name 'X:'"));
	test_assert(fails_with("require \"editheader\";\ndeleteheader "
	    "[\"a\", \"b\"];", "line 2: deleteheader: the field name must "
	    "be a string"));
	test_assert(fails_with("require \"editheader\";\ndeleteheader :last "
	    "\"x\";", "line 2: deleteheader: ':last' needs ':index'"));
	test_assert(fails_with("require [\"editheader\", \"relational\"];\n"
	    "deleteheader :count \"eq\" \"x\" \"1\";",
	    "deleteheader: unknown tag ':count'"));
	test_assert(parses("require \"editheader\";\naddheader :last \"X\" "
	    "\"v\";\ndeleteheader \"x\";"));
	test_end();
}

/* duplicate (RFC 7352): the callback says "seen" for the IDs in ctx
 * ("handle|id" words); the marks to record are printed after the
 * actions as "mark HANDLE|ID SECONDS [last]". */
static bool
seen_cb(void *ctx, const char *handle, const char *id)
{
	char key[256];

	snprintf(key, sizeof(key), " %s|%s ", handle, id);
	return strstr(ctx, key) != NULL;
}

static bool
dup_runs_to(const char *script, const char *msg, const char *seen,
    const char *want)
{
	struct sieve_script *s = NULL;
	struct sieve_msg sm = { msg, strlen(msg), "from@example.org",
		"bob@example.net", 0, 0, seen_cb, (void *)seen };
	struct sieve_result res;
	str_t err = STR_INIT, out = STR_INIT;
	bool ok;

	if (sieve_parse(script, strlen(script), &s, &err) < 0) {
		fprintf(stderr, "%s", str_c(&err));
		str_free(&err);
		return false;
	}
	sieve_run(s, &sm, NULL, &res);
	sieve_result_text(&res, &out);
	for (size_t i = 0; i < res.ndups; i++)
		str_printf(&out, "mark %s|%s %llu%s\n", res.dups[i].handle,
		    res.dups[i].id, (unsigned long long)res.dups[i].seconds,
		    res.dups[i].last ? " last" : "");
	ok = strcmp(str_c(&out), want) == 0;
	if (!ok)
		fprintf(stderr, "wanted:\n%sgot:\n%s", want, str_c(&out));
	sieve_result_clear(&res);
	sieve_free(s);
	str_free(&out);
	return ok;
}

static void
test_duplicate(void)
{
	const char *msg = "From: a@example.com\r\n"
	    "Message-ID:  <1@example.com>\r\n"
	    "X-Ticket: T-42\r\n"
	    "Subject: s\r\n"
	    "\r\n"
	    "body\r\n";
	const char *pre = "require [\"duplicate\", \"fileinto\", "
	    "\"variables\"];\n";
	char script[512];

	test_begin("sieve duplicate: IDs, handles, periods, marks");
	/* default: the Message-ID, 7 days; marked whether seen or not */
	snprintf(script, sizeof(script), "%sif duplicate { discard; }", pre);
	test_assert(dup_runs_to(script, msg, "",
	    "store INBOX (implicit keep)\nmark |<1@example.com> 604800\n"));
	test_assert(dup_runs_to(script, msg, " |<1@example.com> ",
	    "discard\nmark |<1@example.com> 604800\n"));
	/* :header, :uniqueid (with variables), :handle, :seconds, :last */
	snprintf(script, sizeof(script), "%sif duplicate :handle \"t\" "
	    ":header \"x-ticket\" :seconds 60 :last { fileinto \"Dup\"; }\n"
	    "set \"u\" \"mine\";\n"
	    "if duplicate :uniqueid \"${u}-1\" :seconds 9999999 "
	    "{ fileinto \"U\"; }", pre);
	test_assert(dup_runs_to(script, msg, " t|T-42 ",
	    "store Dup\nmark t|T-42 60 last\nmark |mine-1 604800\n"));
	test_assert(dup_runs_to(script, msg, " |T-42 |mine-1 ",
	    "store U\nmark t|T-42 60 last\nmark |mine-1 604800\n"));
	/* no such field: false, nothing marked; the same ID twice: one
	 * mark, the same answer */
	snprintf(script, sizeof(script), "%sif duplicate :header \"x-none\" "
	    "{ discard; }\nif duplicate { fileinto \"A\"; }\n"
	    "if duplicate :last :seconds 10 { fileinto \"B\"; }", pre);
	test_assert(dup_runs_to(script, msg, "",
	    "store INBOX (implicit keep)\nmark |<1@example.com> 604800 last\n"));
	/* the message with no Message-ID */
	test_assert(dup_runs_to("require \"duplicate\";\n"
	    "if duplicate { discard; }", "Subject: x\r\n\r\nb\r\n", "",
	    "store INBOX (implicit keep)\n"));
	/* a run-time error records nothing */
	test_assert(dup_runs_to("require [\"duplicate\", \"fileinto\"];\n"
	    "if duplicate { stop; }\nfileinto \"\";", msg, "",
	    "error line 3: fileinto: empty folder name\n"
	    "store INBOX (implicit keep)\n"));
	/* validation */
	test_assert(fails_with("if duplicate { stop; }",
	    "test 'duplicate' requires extension 'duplicate'"));
	test_assert(fails_with("require \"duplicate\";\nif duplicate "
	    ":header \"a\" :uniqueid \"b\" { stop; }",
	    "conflicts with ':header'"));
	test_assert(fails_with("require [\"duplicate\", \"vacation\"];\n"
	    "vacation :seconds 60 \"x\";", "vacation: tag ':seconds' "
	    "requires extension 'vacation-seconds'"));
	test_assert(fails_with("require [\"duplicate\"];\n"
	    "if header :last \"a\" \"b\" { stop; }",
	    "tag ':last' requires extension 'index'"));
	test_assert(parses("require \"duplicate\";\nif duplicate :handle "
	    "\"h\" :seconds 1 :last { stop; }"));
	test_end();
}

/* include (RFC 6609): scripts by name from a table; "p:" personal,
 * "g:" global. */
static const char *const inc_table[][2] = {
	{ "p:sub", "require [\"include\", \"variables\", \"fileinto\"];\n"
	  "global \"who\";\n"
	  "fileinto \"sub-${who}-${local}\";\n"
	  "set \"who\" \"sub\";\nreturn;\nfileinto \"never\";\n" },
	{ "g:spam", "require [\"fileinto\"];\n"
	  "if header :contains \"subject\" \"spam\" "
	  "{ fileinto \"Junk\"; stop; }\n" },
	{ "p:self", "require \"include\";\ninclude \"self\";\n" },
	{ "p:deep", "require \"include\";\ninclude \"deeper\";\n" },
	{ "p:deeper", "require \"include\";\ninclude \"deep\";\n" },
	{ "p:broken", "fileint \"x\";\n" },
	{ "p:again", "require [\"include\", \"fileinto\", \"copy\"];\n"
	  "fileinto :copy \"again\";\n" },
};

static struct sieve_script *inc_held[16];
static size_t inc_nheld;

static const struct sieve_script *
inc_cb(void *ctx, bool global, const char *name, bool *missing_r,
    char **error_r)
{
	char key[64];

	snprintf(key, sizeof(key), "%c:%s", global ? 'g' : 'p', name);
	for (size_t i = 0; i < sizeof(inc_table) / sizeof(inc_table[0]); i++) {
		struct sieve_script *sc = NULL;
		str_t err = STR_INIT;

		if (strcmp(inc_table[i][0], key) != 0)
			continue;
		if (sieve_parse(inc_table[i][1], strlen(inc_table[i][1]), &sc,
		    &err) < 0) {
			*error_r = str_steal(&err);
			return NULL;
		}
		if (inc_nheld < 16)
			inc_held[inc_nheld++] = sc;
		return sc;
	}
	*missing_r = true;
	return NULL;
}

static bool
inc_runs_to(const char *script, const char *msg, const char *want)
{
	struct sieve_script *s = NULL;
	struct sieve_msg sm = { msg, strlen(msg), "from@example.org",
		"bob@example.net", 0, 0, NULL, NULL, inc_cb, NULL };
	struct sieve_result res;
	str_t err = STR_INIT, out = STR_INIT;
	bool ok;

	if (sieve_parse(script, strlen(script), &s, &err) < 0) {
		fprintf(stderr, "%s", str_c(&err));
		str_free(&err);
		return false;
	}
	sieve_run(s, &sm, NULL, &res);
	sieve_result_text(&res, &out);
	ok = strcmp(str_c(&out), want) == 0;
	if (!ok)
		fprintf(stderr, "wanted:\n%sgot:\n%s", want, str_c(&out));
	sieve_result_clear(&res);
	sieve_free(s);
	str_free(&out);
	for (size_t i = 0; i < inc_nheld; i++)
		sieve_free(inc_held[i]);
	inc_nheld = 0;
	return ok;
}

static void
test_include(void)
{
	const char *msg = "From: a@example.com\r\nSubject: buy spam\r\n"
	    "\r\nbody\r\n";
	const char *ham = "From: a@example.com\r\nSubject: hello\r\n"
	    "\r\nbody\r\n";
	const char *pre = "require [\"include\", \"variables\", "
	    "\"fileinto\"];\n";
	char script[512];

	test_begin("sieve include: personal, global, once, optional, global "
	    "variables, return, bounds");
	/* global variables shared, local ones not; return ends the
	 * included script only; :once; :optional */
	snprintf(script, sizeof(script), "%sglobal \"who\";\n"
	    "set \"who\" \"main\"; set \"local\" \"mine\";\n"
	    "include \"sub\";\ninclude :once \"sub\";\n"
	    "include :optional \"missing\";\n"
	    "fileinto \"after-${who}-${local}\";", pre);
	test_assert(inc_runs_to(script, ham,
	    "store sub-main-\nstore after-sub-mine\n"));
	/* without :once a script runs each time; stop in a global one
	 * ends everything */
	snprintf(script, sizeof(script), "%sinclude \"again\"; "
	    "include :personal \"again\";\ninclude :global \"spam\";\n"
	    "fileinto \"not-spam\";", pre);
	test_assert(inc_runs_to(script, msg, "store again\nstore Junk\n"));
	test_assert(inc_runs_to(script, ham,
	    "store again\nstore not-spam\n"));
	/* errors: missing, itself, a cycle, a script that does not parse */
	snprintf(script, sizeof(script), "%sinclude \"missing\";", pre);
	test_assert(inc_runs_to(script, ham, "error line 2: include: no "
	    "personal script 'missing'\nstore INBOX (implicit keep)\n"));
	snprintf(script, sizeof(script), "%sinclude :global \"sub\";", pre);
	test_assert(inc_runs_to(script, ham, "error line 2: include: no "
	    "global script 'sub'\nstore INBOX (implicit keep)\n"));
	snprintf(script, sizeof(script), "%sinclude \"self\";", pre);
	test_assert(inc_runs_to(script, ham, "error self: line 2: include: "
	    "'self' includes itself\nstore INBOX (implicit keep)\n"));
	snprintf(script, sizeof(script), "%sinclude \"deep\";", pre);
	test_assert(inc_runs_to(script, ham, "error deeper: line 2: include: "
	    "'deep' includes itself\nstore INBOX (implicit keep)\n"));
	snprintf(script, sizeof(script), "%sinclude :optional \"broken\";",
	    pre);
	test_assert(inc_runs_to(script, ham, "error line 2: include "
	    "'broken': line 1: unknown command 'fileint'\n"
	    "store INBOX (implicit keep)\n"));
	/* return at the top ends the script */
	test_assert(inc_runs_to("require [\"include\", \"fileinto\"];\n"
	    "return; fileinto \"x\";", ham, "store INBOX (implicit keep)\n"));
	/* validation */
	test_assert(fails_with("include \"a\";", "command 'include' requires "
	    "extension 'include'"));
	test_assert(fails_with("require \"include\";\ninclude 1;",
	    "include: argument 1 must be a string, found a number"));
	test_assert(fails_with("require \"include\";\ninclude \"a/b\";",
	    "line 2: include: bad script name 'a/b'"));
	test_assert(fails_with("require \"include\";\ninclude :global "
	    ":personal \"a\";", "conflicts with ':global'"));
	test_assert(fails_with("require \"include\";\nglobal \"a\";",
	    "line 2: global requires extension 'variables'"));
	test_assert(fails_with("require [\"include\", \"variables\"];\n"
	    "global \"1a\";", "global: bad variable name '1a'"));
	test_end();
}

int
main(void)
{
	test_parse_ok();
	test_parse_errors();
	test_parse_bounds();
	test_match();
	test_run();
	test_date();
	test_editheader();
	test_duplicate();
	test_include();
	return test_done();
}
