/*
 * fuzz_smtp_reply.c: the outbound client's SMTP reply parser
 * (lib/smtp/reply.c) on the input as a stream of replies, with checks:
 *  - the replies, and where a malformed one stops the stream, are the same
 *    whether the bytes come at once or in pieces whose size comes from the
 *    input (as the client reads them from the network);
 *  - a reply is what the syntax says: a code of 2-5/0-5/0-9 on every line,
 *    lines within the bounds, its text the lines joined by one space,
 *    taking no more octets than it was given.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/smtp/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a stream of replies came to: their texts and codes, one after the
 * other, and how the stream ended (0 incomplete, -1 malformed). */
struct result {
	char *log;
	size_t len, cap;
	int end;
	size_t consumed;
};

static void
record(struct result *res, const struct smtp_reply *r)
{
	size_t need = res->len + r->textlen + 32;

	if (need > res->cap) {
		res->cap = need * 2;
		res->log = xrealloc(res->log, res->cap);
	}
	res->len += (size_t)snprintf(res->log + res->len, 32, "%d %u %s|",
	    r->code, r->nlines, r->enhanced);
	memcpy(res->log + res->len, r->text, r->textlen);
	res->len += r->textlen;
}

static void
check(const struct smtp_reply *r, const uint8_t *in, size_t used)
{
	size_t sum = 0;

	if (r->code < 200 || r->code > 559 || r->code % 100 > 59 ||
	    r->nlines == 0 || r->nlines > SMTP_REPLY_LINES_MAX ||
	    used == 0 || used > SMTP_REPLY_MAX || in[used - 1] != '\n' ||
	    strlen(r->text) != r->textlen || r->textlen > used)
		abort();
	for (unsigned i = 0; i < r->nlines; i++) {
		const char *line = r->text + r->line_off[i];
		size_t n = r->line_len[i];

		if (n < 3 || n > SMTP_LINE_MAX ||
		    (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0') != r->code)
			abort();
		/* only the last line ends the reply */
		if (i + 1 < r->nlines ? n < 4 || line[3] != '-' :
		    n > 3 && line[3] != ' ')
			abort();
		if (r->line_off[i] != sum)
			abort();
		sum += n + 1;
		/* the line is the input's, octet for octet */
		if (memmem(in, used, line, n) == NULL)
			abort();
	}
	if (sum - 1 != r->textlen)
		abort();
	if (r->enhanced[0] != '\0' && r->enhanced[0] != '0' + r->code / 100)
		abort();
	(void)smtp_reply_ehlo_has(r, "PIPELINING");
}

/* Feed data in pieces of `piece` octets (0: all at once), parsing
 * whatever is complete after each. */
static void
run(const uint8_t *data, size_t size, size_t piece, struct result *res)
{
	size_t have = piece == 0 ? size : 0, off = 0;

	memset(res, 0, sizeof(*res));
	for (;;) {
		struct smtp_reply r;
		const char *err = NULL;
		size_t used = 0;
		int n;

		n = smtp_reply_parse((const char *)data + off, have - off, &r,
		    &used, &err);
		if (n < 0) {
			if (err == NULL || err[0] == '\0')
				abort();
			res->end = -1;
			break;
		}
		if (n == 0) {
			if (have == size) {
				res->end = 0;
				break;
			}
			have = have + piece < size ? have + piece : size;
			continue;
		}
		if (used > have - off)
			abort();
		check(&r, data + off, used);
		record(res, &r);
		smtp_reply_clear(&r);
		off += used;
	}
	res->consumed = off;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result whole, pieces, bytes;
	size_t piece = size > 0 ? (size_t)data[0] % 17 + 1 : 1;

	run(data, size, 0, &whole);
	run(data, size, piece, &pieces);
	/* one octet at a time costs a parse per octet: short inputs only */
	run(data, size, size <= 512 ? 1 : piece, &bytes);
	if (whole.end != pieces.end || whole.end != bytes.end ||
	    whole.consumed != pieces.consumed ||
	    whole.consumed != bytes.consumed ||
	    whole.len != pieces.len || whole.len != bytes.len ||
	    (whole.len > 0 && (memcmp(whole.log, pieces.log, whole.len) != 0 ||
	    memcmp(whole.log, bytes.log, whole.len) != 0)))
		abort();
	free(whole.log);
	free(pieces.log);
	free(bytes.log);
	return 0;
}
