/*
 * fuzz_smtp_parse.c: the SMTP command parser (verbs, MAIL/RCPT paths,
 * ESMTP parameters, BDAT arguments) on every line of the input, and the
 * DATA and BDAT readers on the whole input, with three checks:
 *  - DATA ends only at <CRLF>.<CRLF> (or at a first line ".\r\n"), never
 *    at a dot line after a bare CR or LF (SMTP smuggling);
 *  - what DATA and BDAT store does not depend on how the bytes were cut
 *    into reads (one read, or pieces whose size comes from the input);
 *  - BDAT stores exactly the input with CRLF turned into LF.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/smtp/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
	char *buf;
	size_t len, cap;
};

static void
sink(void *ctx, const char *p, size_t n)
{
	struct out *o = ctx;

	if (o->len + n > o->cap) {
		o->cap = (o->len + n) * 2 + 16;
		o->buf = xrealloc(o->buf, o->cap);
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void
commands(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		const uint8_t *lf = memchr(data + off, '\n', size - off);
		size_t n = lf ? (size_t)(lf - (data + off)) : size - off;
		char *line = xmalloc(n + 1);
		const char *arg, *rest;
		char *addr = NULL;
		struct smtp_mail_params mp;
		uint64_t bsize;
		bool last;

		memcpy(line, data + off, n);
		line[n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[n - 1] = '\0';
		switch (smtp_verb(line, &arg)) {
		case SMTP_MAIL:
			if (strncasecmp(arg, "FROM:", 5) == 0)
				addr = smtp_parse_path(arg + 5, &rest);
			break;
		case SMTP_RCPT:
			if (strncasecmp(arg, "TO:", 3) == 0)
				addr = smtp_parse_path(arg + 3, &rest);
			break;
		case SMTP_BDAT:
			if (smtp_parse_bdat(arg, &bsize, &last) == 0 &&
			    strchr(arg, '-') != NULL)
				abort();	/* no negative sizes */
			break;
		default:
			break;
		}
		if (addr != NULL) {
			/* the address stops before '>', rest after it */
			if (strchr(addr, '>') != NULL || rest < arg ||
			    rest > line + n || rest[-1] != '>')
				abort();
			/* an accepted SIZE is within the limit */
			if (smtp_mail_params(rest, 1000000, n % 2 == 0, &mp) ==
			    NULL && mp.size > 1000000)
				abort();
			/* REQUIRETLS only under TLS */
			if (n % 2 == 1 && smtp_mail_params(rest, 1000000,
			    false, &mp) == NULL && mp.requiretls)
				abort();
			free(addr);
		}
		free(line);
		off += n + 1;
	}
}

/* The DATA reader as the session drives it: whole lines, and a partial
 * line (all but its last byte) once `partial` bytes wait without LF.
 * Returns the input offset just past the end of DATA, or 0. */
static size_t
read_data(const uint8_t *data, size_t size, size_t piece, size_t partial,
    struct out *o)
{
	struct smtp_dot d;
	size_t have = 0, used = 0;

	smtp_dot_init(&d);
	while (used < size) {
		const uint8_t *lf;

		if (have < size)
			have = have + piece < size ? have + piece : size;
		for (;;) {
			lf = memchr(data + used, '\n', have - used);
			if (lf != NULL) {
				size_t n = (size_t)(lf - (data + used)) + 1;

				if (smtp_dot_line(&d, (const char *)data +
				    used, n, sink, o))
					return used + n;
				used += n;
				continue;
			}
			if (have - used >= partial && have - used > 1) {
				smtp_dot_partial(&d, (const char *)data + used,
				    have - used - 1, sink, o);
				used = have - 1;
			}
			break;
		}
		if (have == size && memchr(data + used, '\n',
		    size - used) == NULL)
			break;
	}
	return 0;
}

static void
data_checks(const uint8_t *data, size_t size)
{
	struct out a = { 0 }, b = { 0 };
	size_t piece = size > 0 ? (size_t)data[0] % 7 + 1 : 1;
	/* as in the session, a partial line is longer than ".\r\n" */
	size_t partial = size > 1 ? (size_t)data[1] % 13 + 4 : 4;
	size_t end_a = read_data(data, size, size + 1, (size_t)-1, &a);
	size_t end_b = read_data(data, size, piece, partial, &b);

	if (end_a != 0) {
		/* ends in ".\r\n" after "\r\n" (or at the very start) */
		if (end_a < 3 || memcmp(data + end_a - 3, ".\r\n", 3) != 0)
			abort();
		if (end_a > 3 && (end_a < 5 ||
		    memcmp(data + end_a - 5, "\r\n", 2) != 0))
			abort();
	}
	/* the same end and content, however the bytes arrived; content
	 * after a partial piece that was never completed may differ only
	 * when no end was found */
	if (end_a != end_b)
		abort();
	if (end_a != 0 && (a.len != b.len || (a.len > 0 &&
	    memcmp(a.buf, b.buf, a.len) != 0)))
		abort();
	free(a.buf);
	free(b.buf);
}

static void
bdat_checks(const uint8_t *data, size_t size)
{
	struct out a = { 0 }, ref = { 0 };
	bool pending = false;
	size_t piece = size > 0 ? (size_t)data[0] % 5 + 1 : 1;

	for (size_t off = 0; off < size; off += piece)
		smtp_bdat_bytes(&pending, (const char *)data + off,
		    off + piece < size ? piece : size - off, sink, &a);
	smtp_bdat_end(&pending, sink, &a);
	for (size_t i = 0; i < size; i++)
		if (!(data[i] == '\r' && i + 1 < size && data[i + 1] == '\n'))
			sink(&ref, (const char *)data + i, 1);
	if (a.len != ref.len || (a.len > 0 &&
	    memcmp(a.buf, ref.buf, a.len) != 0))
		abort();
	free(a.buf);
	free(ref.buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	commands(data, size);
	data_checks(data, size);
	bdat_checks(data, size);
	return 0;
}
