/*
 * reply.c: the SMTP reply parser of the outbound client (RFC 5321 4.2,
 * enhanced status codes RFC 2034 / RFC 3463).
 *
 * Trust: the input is a remote server's. Nothing is guessed: a line whose
 * code is not three digits, whose fourth octet is neither '-' nor ' ', a
 * code that changes within a reply, a NUL or a bare CR, a line over
 * SMTP_LINE_MAX octets or a reply over SMTP_REPLY_LINES_MAX lines is an
 * error, decided as soon as the octets that show it have arrived.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/smtp/reply.h"

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1..3 digits; returns the count. */
static size_t
digits(const char *p, size_t len)
{
	size_t n = 0;

	while (n < len && n < 4 && is_digit(p[n]))
		n++;
	return n >= 1 && n <= 3 ? n : 0;
}

/* "c.sss.ddd" opening text[0..len), followed by a space or the end. */
static void
enhanced_code(struct smtp_reply *r, const char *text, size_t len)
{
	size_t i = 0, n;

	if (len < 5 || text[0] != '0' + r->code / 100 || text[1] != '.')
		return;
	i = 2;
	if ((n = digits(text + i, len - i)) == 0)
		return;
	i += n;
	if (i >= len || text[i] != '.')
		return;
	i++;
	if ((n = digits(text + i, len - i)) == 0)
		return;
	i += n;
	if (i < len && text[i] != ' ')
		return;
	memcpy(r->enhanced, text, i);
	r->enhanced[i] = '\0';
}

int
smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
    size_t *used_r, const char **error_r)
{
	size_t pos = 0, textlen = 0;
	unsigned nlines = 0;
	int code = 0;
	bool last = false;

	memset(r, 0, sizeof(*r));
	/* First pass: find the end of the reply and check every line. */
	while (!last) {
		const char *line = buf + pos, *lf;
		size_t n;
		int c;

		lf = pos < len ? memchr(line, '\n', len - pos) : NULL;
		if (lf == NULL) {
			/* A partial line: only its length can be judged
			 * (its last octet may be the CR of CRLF). */
			if (len - pos > SMTP_LINE_MAX + 1) {
				*error_r = "line too long";
				return -1;
			}
			return 0;
		}
		n = (size_t)(lf - line);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n > SMTP_LINE_MAX) {
			*error_r = "line too long";
			return -1;
		}
		if (n < 3 || line[0] < '2' || line[0] > '5' ||
		    line[1] < '0' || line[1] > '5' || !is_digit(line[2])) {
			*error_r = "no reply code";
			return -1;
		}
		if (n > 3 && line[3] != ' ' && line[3] != '-') {
			*error_r = "reply code not followed by space or '-'";
			return -1;
		}
		if (memchr(line, '\0', n) != NULL ||
		    memchr(line, '\r', n) != NULL) {
			*error_r = "NUL or bare CR in a reply line";
			return -1;
		}
		c = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0');
		if (nlines > 0 && c != code) {
			*error_r = "reply code changes between lines";
			return -1;
		}
		code = c;
		last = n == 3 || line[3] == ' ';
		nlines++;
		if (!last && nlines == SMTP_REPLY_LINES_MAX) {
			*error_r = "too many lines in a reply";
			return -1;
		}
		textlen += n + (nlines > 1);
		pos = (size_t)(lf - buf) + 1;
	}

	/* Second pass: collect the lines. */
	r->code = code;
	r->nlines = nlines;
	r->text = xmalloc(textlen + 1);
	r->textlen = textlen;
	textlen = 0;
	for (size_t p = 0, i = 0; i < nlines; i++) {
		const char *line = buf + p;
		const char *lf = memchr(line, '\n', pos - p);
		size_t n = (size_t)(lf - line);

		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (i > 0)
			r->text[textlen++] = ' ';
		r->line_off[i] = (uint32_t)textlen;
		r->line_len[i] = (uint32_t)n;
		memcpy(r->text + textlen, line, n);
		textlen += n;
		p = (size_t)(lf - buf) + 1;
	}
	r->text[textlen] = '\0';
	if (r->line_len[0] > 4)
		enhanced_code(r, r->text + 4, r->line_len[0] - 4);
	*used_r = pos;
	return 1;
}

void
smtp_reply_clear(struct smtp_reply *r)
{
	free(r->text);
	r->text = NULL;
	r->textlen = 0;
	r->nlines = 0;
}

bool
smtp_reply_ehlo_has(const struct smtp_reply *r, const char *keyword)
{
	size_t kl = strlen(keyword);

	for (unsigned i = 1; i < r->nlines; i++) {
		size_t n = r->line_len[i];
		const char *kw;

		if (n < 4 + kl)
			continue;
		kw = r->text + r->line_off[i] + 4;
		if (strncasecmp(kw, keyword, kl) != 0)
			continue;
		if (n == 4 + kl || kw[kl] == ' ')
			return true;
	}
	return false;
}
