/*
 * reply.h: SMTP replies as a client reads them (RFC 5321 4.2), apart from
 * the outbound session so that the parser can be tested and fuzzed alone.
 */
#ifndef PETREL_SMTP_REPLY_H
#define PETREL_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/limits.h"

/* A reply has at most this many lines (each at most SMTP_LINE_MAX octets
 * before its line end), so it never takes more than SMTP_REPLY_MAX octets
 * of input: a caller that holds that much without a complete reply has
 * been told -1 already. */
#define SMTP_REPLY_LINES_MAX 100
#define SMTP_REPLY_MAX (SMTP_REPLY_LINES_MAX * (SMTP_LINE_MAX + 2))

struct smtp_reply {
	int code;		/* 200..559, the same on every line */
	char enhanced[12];	/* RFC 3463 "x.y.z" opening the first line's
				   text, of the code's class; "" if none */
	unsigned nlines;
	/* Every line as received without its line end, the lines joined by
	 * one space: what logs and bounces quote. */
	char *text;
	size_t textlen;
	/* Line i is text[line_off[i] .. line_off[i] + line_len[i]). */
	uint32_t line_off[SMTP_REPLY_LINES_MAX];
	uint32_t line_len[SMTP_REPLY_LINES_MAX];
};

/*
 * Parse one reply at the start of buf[0..len). Every line is
 * Reply-code [ ("-" / SP) text ] followed by LF or CRLF, the code three
 * digits (2-5, 0-5, 0-9); "-" announces another line; every line of a
 * reply has the same code; no NUL or bare CR in a line.
 *   1: *r is the reply (free with smtp_reply_clear) and *used_r the
 *      octets it took, through the last line end;
 *   0: no complete reply yet, nothing wrong so far (read more);
 *  -1: malformed; *error_r (static text) says why.
 * The outcome depends only on the bytes: a caller that gets 0 and calls
 * again with more of the same input gets what one call on all of it gives.
 */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
    size_t *used_r, const char **error_r);
void smtp_reply_clear(struct smtp_reply *r);

/* Does an EHLO reply list `keyword` (case-insensitive, on a line after the
 * first, followed by a space or the end of the line)? */
bool smtp_reply_ehlo_has(const struct smtp_reply *r, const char *keyword);

#endif
