/*
 * canon.c: RFC 6376 3.4 canonicalization. libopendkim does this inside
 * its signing and verifying but exposes no function for it, and ARC
 * (lib/trust/arc.c) needs it for its own fields, hence this small copy
 * of the algorithm (tests/unit/test_arc.c checks it against answers made
 * by dkimpy).
 *
 *   relaxed header: name lower-cased, trailing WSP of the name gone;
 *     value unfolded, WSP runs one SP, WSP at both ends gone;
 *   relaxed body: WSP runs one SP, WSP at line ends gone, empty lines
 *     at the end gone, a CRLF after a last line that had none; an empty
 *     body stays empty;
 *   simple header: as it is; simple body: empty lines at the end gone,
 *     an empty body is one CRLF.
 */
#include <string.h>

#include "lib/trust/canon.h"

static bool
wsp(char c)
{
	return c == ' ' || c == '\t';
}

void
canon_header(str_t *out, bool relaxed, const char *field, size_t len,
    bool crlf)
{
	const char *colon = memchr(field, ':', len);
	size_t i, n;
	bool space = false, started = false;

	/* without its final line end */
	while (len > 0 && (field[len - 1] == '\n' || field[len - 1] == '\r'))
		len--;
	if (!relaxed || colon == NULL) {
		for (i = 0; i < len; i++) {
			if (field[i] == '\n' && (i == 0 || field[i - 1] != '\r'))
				str_append_c(out, '\r');
			str_append_c(out, field[i]);
		}
		if (crlf)
			str_append(out, "\r\n");
		return;
	}
	n = (size_t)(colon - field);
	while (n > 0 && wsp(field[n - 1]))
		n--;
	for (i = 0; i < n; i++) {
		char c = field[i];

		str_append_c(out, c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
	}
	str_append_c(out, ':');
	for (i = (size_t)(colon - field) + 1; i < len; i++) {
		char c = field[i];

		if (c == '\r' || c == '\n')
			continue;	/* unfolded */
		if (wsp(c)) {
			space = true;
			continue;
		}
		if (space && started)
			str_append_c(out, ' ');
		space = false;
		started = true;
		str_append_c(out, c);
	}
	if (crlf)
		str_append(out, "\r\n");
}

static void
flush(struct canon_body *cb)
{
	if (cb->blen > 0)
		cb->emit(cb->ctx, cb->buf, cb->blen);
	cb->blen = 0;
}

static void
put(struct canon_body *cb, const char *p, size_t n)
{
	cb->any = true;
	while (n > 0) {
		size_t k = sizeof(cb->buf) - cb->blen;

		if (k > n)
			k = n;
		memcpy(cb->buf + cb->blen, p, k);
		cb->blen += k;
		p += k;
		n -= k;
		if (cb->blen == sizeof(cb->buf))
			flush(cb);
	}
}

void
canon_body_init(struct canon_body *cb, bool relaxed,
    void (*emit)(void *ctx, const char *data, size_t len), void *ctx)
{
	memset(cb, 0, sizeof(*cb));
	cb->relaxed = relaxed;
	cb->emit = emit;
	cb->ctx = ctx;
}

static void
line_end(struct canon_body *cb)
{
	if (cb->line_content) {
		put(cb, "\r\n", 2);
	} else if (!cb->relaxed && cb->wsp_run.len > 0) {
		/* simple: a line of white space is not empty */
		for (; cb->empty_lines > 0; cb->empty_lines--)
			put(cb, "\r\n", 2);
		put(cb, cb->wsp_run.data, cb->wsp_run.len);
		put(cb, "\r\n", 2);
	} else {
		cb->empty_lines++;
	}
	str_truncate(&cb->wsp_run, 0);
	cb->line_content = false;
	cb->wsp = false;
}

static void
octet(struct canon_body *cb, char c)
{
	if (wsp(c)) {
		if (cb->relaxed)
			cb->wsp = true;
		else if (cb->line_content)
			put(cb, &c, 1);
		else
			str_append_c(&cb->wsp_run, c);
		return;
	}
	if (!cb->line_content) {
		for (; cb->empty_lines > 0; cb->empty_lines--)
			put(cb, "\r\n", 2);
		if (cb->wsp_run.len > 0)
			put(cb, cb->wsp_run.data, cb->wsp_run.len);
		str_truncate(&cb->wsp_run, 0);
	}
	if (cb->wsp)
		put(cb, " ", 1);
	cb->wsp = false;
	cb->line_content = true;
	put(cb, &c, 1);
}

void
canon_body_feed(struct canon_body *cb, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = data[i];

		if (cb->cr) {
			cb->cr = false;
			if (c == '\n') {
				line_end(cb);
				continue;
			}
			octet(cb, '\r');
		}
		if (c == '\r')
			cb->cr = true;
		else if (c == '\n')
			line_end(cb);
		else
			octet(cb, c);
	}
}

void
canon_body_end(struct canon_body *cb)
{
	if (cb->cr) {
		cb->cr = false;
		octet(cb, '\r');
	}
	if (cb->line_content || (!cb->relaxed && cb->wsp_run.len > 0))
		line_end(cb);
	if (!cb->relaxed && !cb->any)
		put(cb, "\r\n", 2);
	flush(cb);
	str_free(&cb->wsp_run);
}
