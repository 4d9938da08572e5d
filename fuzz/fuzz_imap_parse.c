/*
 * fuzz_imap_parse.c: libFuzzer target for lib/imap/parse.c and search.c.
 *
 * The input is one whole IMAP command as the session hands it over.
 * Everything that parses is pushed through the other parsers (FETCH
 * attributes, SEARCH keys and matching, sequence sets, dates, mailbox
 * names, LIST patterns, quoting), and a few properties are checked:
 * modified UTF-7 round-trips, sequence-set membership agrees with a
 * naive reading of the set, formatted sets parse back to the same
 * members. The input is also read as a user's petrel-metadata file
 * (lib/imap/metadata.c) and every argument as a METADATA entry name:
 * what the file parser keeps formats and parses back to the same text,
 * and a valid entry name's canonical form is valid and canonical.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     fuzz/fuzz_imap_parse.c lib/imap/parse.c lib/imap/search.c \
 *     lib/imap/metadata.c lib/mime/\*.c lib/base/alloc.c lib/base/str.c \
 *     lib/base/log.c lib/base/base64.c -o fuzz_imap_parse
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/base/limits.h"
#include "lib/imap/metadata.h"
#include "lib/imap/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_message[] =
    "Date: Tue, 1 Jul 2003 23:30:00 -0500\r\n"
    "From: Alice <alice@example.com>\r\n"
    "Subject: =?UTF-8?Q?caf=C3=A9?=\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello world\r\n"
    "--b--\r\n";

static const char *
fuzz_load(void *ctx, size_t *len)
{
	*len = sizeof(fuzz_message) - 1;
	return fuzz_message;
}

static char
fuzz_keyword(void *ctx, const char *name)
{
	return name[0] == 'k' ? 'a' : 0;
}

/* Modified UTF-7 both ways: whatever decodes must encode back to the
 * same bytes, and whatever encodes must decode back. */
static void
check_mutf7(const char *s, size_t len)
{
	str_t a = STR_INIT, b = STR_INIT;

	if (imap_mutf7_to_utf8(s, len, &a) == 0) {
		if (imap_utf8_to_mutf7(a.data, a.len, &b) != 0 ||
		    b.len != len || (len > 0 && memcmp(b.data, s, len) != 0)) {
			fprintf(stderr, "mutf7 does not round-trip\n");
			abort();
		}
	}
	str_free(&a);
	str_free(&b);
	if (imap_utf8_to_mutf7(s, len, &a) == 0) {
		if (imap_mutf7_to_utf8(a.data, a.len, &b) != 0 ||
		    b.len != len || (len > 0 && memcmp(b.data, s, len) != 0)) {
			fprintf(stderr, "utf8 -> mutf7 does not round-trip\n");
			abort();
		}
	}
	str_free(&a);
	str_free(&b);
}

/* Membership by reading the set text directly (s parsed already). */
static bool
naive_has(const char *s, uint32_t v, uint32_t star)
{
	while (*s != '\0') {
		uint64_t a, b;
		char *end;

		a = *s == '*' ? star : strtoull(s, &end, 10);
		s = *s == '*' ? s + 1 : end;
		if (a == UINT32_MAX)
			a = UINT32_MAX - 1;
		b = a;
		if (*s == ':') {
			s++;
			b = *s == '*' ? star : strtoull(s, &end, 10);
			s = *s == '*' ? s + 1 : end;
			if (b == UINT32_MAX)
				b = UINT32_MAX - 1;
		}
		if ((v >= a && v <= b) || (v >= b && v <= a))
			return true;
		if (*s == ',')
			s++;
	}
	return false;
}

static void
check_seqset(const char *s)
{
	static const uint32_t stars[] = { 0, 1, 5, 30, 4294967294U };
	struct imap_seqset set;
	uint32_t v, vals[64];
	size_t i, n = 0;
	str_t f = STR_INIT;

	if (imap_seqset_parse(s, &set) < 0)
		return;
	for (i = 0; i < sizeof(stars) / sizeof(stars[0]); i++) {
		for (v = 0; v <= 40; v++) {
			if (imap_seqset_has(&set, v, stars[i]) !=
			    naive_has(s, v, stars[i])) {
				fprintf(stderr, "seqset %s: %u (star %u)\n", s,
				    v, stars[i]);
				abort();
			}
		}
	}
	/* the members among 1..40 with star 30, formatted and parsed */
	for (v = 1; v <= 40; v++) {
		if (imap_seqset_has(&set, v, 30))
			vals[n++] = v;
	}
	imap_seqset_free(&set);
	if (n == 0)
		return;
	imap_seqset_format(vals, n, &f);
	if (imap_seqset_parse(str_c(&f), &set) < 0)
		abort();
	for (v = 0; v <= 41; v++) {
		bool want = false;

		for (i = 0; i < n; i++)
			want = want || vals[i] == v;
		if (imap_seqset_has(&set, v, 30) != want)
			abort();
	}
	imap_seqset_free(&set);
	str_free(&f);
}

static void
check_strings(const char *s, size_t len)
{
	str_t out = STR_INIT;
	long long t;

	imap_append_string(&out, s, len);
	imap_append_astring(&out, s, len);
	imap_append_nstring(&out, s, len);
	str_free(&out);
	check_mutf7(s, len);
	if (strlen(s) != len)
		return;
	(void)imap_date_parse(s);
	if (imap_datetime_parse(s, &t) == 0) {
		imap_datetime_format(t, &out);
		str_free(&out);
	}
	check_seqset(s);
}

static void
fuzz_arg(const struct imap_arg *arg)
{
	struct fetch_att att;
	const char *err;
	size_t i;

	if (imap_fetch_parse(arg, &att, &err) == 0)
		imap_fetch_free(&att);
	if (arg->type == IMAP_ARG_LIST) {
		for (i = 0; i < arg->nlist; i++)
			fuzz_arg(&arg->list[i]);
		return;
	}
	check_strings(arg->str, arg->len);
}

static void
fuzz_search(const struct imap_cmd *cmd)
{
	struct search_key *root;
	struct search_msg m;
	const char *err;

	if (imap_search_parse(cmd->args, cmd->nargs, &root, &err) != 0)
		return;
	memset(&m, 0, sizeof(m));
	m.seq = 3;
	m.uid = 7;
	m.max_seq = 5;
	m.max_uid = 9;
	m.flags = "FSa";
	m.recent = true;
	m.size = 1234;
	m.internaldate = 1057100000;
	m.keyword_letter = fuzz_keyword;
	m.load = fuzz_load;
	(void)imap_search_needs_data(root);
	(void)imap_search_match(root, &m);
	m.load = NULL;
	m.flags = NULL;
	(void)imap_search_match(root, &m);
	imap_search_free(root);
}

/* An argument as a METADATA entry name: a valid one's canonical form
 * is valid and its own canonical form. */
static void
check_entry(const struct imap_arg *a)
{
	str_t c = STR_INIT, c2 = STR_INIT;

	if (a->type != IMAP_ARG_LIST &&
	    md_entry_valid(a->str, a->len, IMAP_METADATA_NAME_MAX, true, &c)) {
		if (!md_entry_valid(c.data, c.len, IMAP_METADATA_NAME_MAX, true,
		    &c2) || c2.len != c.len || memcmp(c.data, c2.data, c.len) != 0) {
			fprintf(stderr, "entry name not canonical\n");
			abort();
		}
		(void)md_entry_under(str_c(&c), "/private", SIZE_MAX);
	}
	str_free(&c);
	str_free(&c2);
}

/* The input as a petrel-metadata file: what is kept formats, parses
 * back whole and formats the same. */
static void
check_metadata_file(const char *buf, size_t size)
{
	struct md_store st = { 0 }, back = { 0 };
	str_t t1 = STR_INIT, t2 = STR_INIT;
	size_t skipped;

	md_parse(&st, buf, size, &skipped);
	md_format(&st, &t1);
	md_parse(&back, t1.data, t1.len, &skipped);
	md_format(&back, &t2);
	if (skipped != 0 || back.n != st.n || t1.len != t2.len ||
	    memcmp(t1.data, t2.data, t1.len) != 0) {
		fprintf(stderr, "petrel-metadata does not round-trip\n");
		abort();
	}
	str_free(&t1);
	str_free(&t2);
	md_free(&st);
	md_free(&back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct imap_cmd cmd;
	const char *err, *p, *n;
	uint64_t lit;
	bool nonsync;
	size_t i;

	(void)imap_line_literal(buf, size, &lit, &nonsync);
	if (imap_cmd_parse(buf, size, &cmd, &err) == 0) {
		for (i = 0; i < cmd.nargs; i++) {
			fuzz_arg(&cmd.args[i]);
			check_entry(&cmd.args[i]);
			for (size_t k = 0; cmd.args[i].type == IMAP_ARG_LIST &&
			    k < cmd.args[i].nlist; k++)
				check_entry(&cmd.args[i].list[k]);
		}
		fuzz_search(&cmd);
		if (cmd.nargs >= 2 &&
		    (p = imap_arg_astring(&cmd.args[0])) != NULL &&
		    (n = imap_arg_astring(&cmd.args[1])) != NULL &&
		    strlen(p) * strlen(n) < 1000000)
			(void)imap_list_match(p, n, cmd.args[1].len > 0 ?
			    n[0] : '/');
	}
	imap_cmd_free(&cmd);
	check_mutf7(buf, size);
	check_metadata_file(buf, size);
	return 0;
}
