/*
 * preview.c: the preview text of a message (IMAP PREVIEW, RFC 8970): at
 * most 256 characters of UTF-8 from the first text part a reader would
 * see -- text/plain, else text/html with its tags, comments, scripts and
 * styles removed and its character references decoded -- transfer-
 * decoded and converted from its charset as SEARCH BODY sees it
 * (decode.c), white space and control characters collapsed to single
 * spaces, trimmed. Attachments (Content-Disposition: attachment) and
 * attached messages are not looked into; in multipart/alternative
 * text/plain wins over text/html.
 *
 * The work is bounded: only the first PREVIEW_SCAN bytes of the chosen
 * part's body are decoded, whatever the message's size, and every scan
 * is linear. Invalid UTF-8 is dropped, so the result is always valid.
 *
 * Trust: none in the message (anyone can send one): any bytes, any
 * nesting (the tree is mime.c's, bounded there), unterminated tags,
 * comments and references, references to NUL, surrogates or code points
 * past U+10FFFF (U+FFFD instead).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/str.h"
#include "lib/mime/mime.h"

/* Encoded body bytes decoded for a preview (HTML may spend many on
 * markup before the first word). */
#define PREVIEW_SCAN (64 * 1024)

static bool
is_attachment(const struct mime_part *p)
{
	return p->disposition != NULL &&
	    strcmp(p->disposition, "attachment") == 0;
}

static bool
is_text(const struct mime_part *p, const char *subtype)
{
	return p->nchildren == 0 && p->message == NULL &&
	    strcmp(p->type, "text") == 0 && strcmp(p->subtype, subtype) == 0 &&
	    !is_attachment(p);
}

/* The part the preview comes from, or NULL. */
static const struct mime_part *
pick(const struct mime_part *p, unsigned depth)
{
	const struct mime_part *r;
	size_t i;

	if (depth > MIME_DEPTH_MAX || is_attachment(p))
		return NULL;
	if (p->nchildren > 0) {
		if (strcmp(p->subtype, "alternative") == 0) {
			for (i = 0; i < p->nchildren; i++)
				if (is_text(&p->children[i], "plain"))
					return &p->children[i];
		}
		for (i = 0; i < p->nchildren; i++)
			if ((r = pick(&p->children[i], depth + 1)) != NULL)
				return r;
		return NULL;
	}
	if (is_text(p, "plain") || is_text(p, "html"))
		return p;
	return NULL;
}

static void
put_utf8(str_t *out, unsigned long c)
{
	char b[4];

	if (c == 0 || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		c = 0xfffd;
	if (c < 0x80) {
		str_append_c(out, (char)c);
	} else if (c < 0x800) {
		b[0] = (char)(0xc0 | c >> 6);
		b[1] = (char)(0x80 | (c & 0x3f));
		str_append_n(out, b, 2);
	} else if (c < 0x10000) {
		b[0] = (char)(0xe0 | c >> 12);
		b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[2] = (char)(0x80 | (c & 0x3f));
		str_append_n(out, b, 3);
	} else {
		b[0] = (char)(0xf0 | c >> 18);
		b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[3] = (char)(0x80 | (c & 0x3f));
		str_append_n(out, b, 4);
	}
}

/* "&...;" at s[0] (len bytes left): the character appended and the
 * bytes used, or 0 when it is no reference we know (the '&' stays). */
static size_t
entity(const char *s, size_t len, str_t *out)
{
	static const struct {
		const char *name;
		unsigned long c;
	} names[] = {
		{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
		{ "apos", '\'' }, { "nbsp", 0xa0 }, { "copy", 0xa9 },
		{ "reg", 0xae }, { "hellip", 0x2026 }, { "mdash", 0x2014 },
		{ "ndash", 0x2013 }, { "euro", 0x20ac },
	};
	size_t i, end;
	unsigned long c = 0;

	for (end = 1; end < len && end < 12 && s[end] != ';'; end++)
		;
	if (end >= len || s[end] != ';' || end < 2)
		return 0;
	if (s[1] == '#') {
		bool hex = end > 2 && (s[2] == 'x' || s[2] == 'X');

		i = hex ? 3 : 2;
		if (i == end)
			return 0;
		for (; i < end; i++) {
			char d = s[i];
			unsigned v;

			if (d >= '0' && d <= '9')
				v = (unsigned)(d - '0');
			else if (hex && d >= 'a' && d <= 'f')
				v = (unsigned)(d - 'a' + 10);
			else if (hex && d >= 'A' && d <= 'F')
				v = (unsigned)(d - 'A' + 10);
			else
				return 0;
			c = c * (hex ? 16 : 10) + v;
			if (c > 0x10ffff)
				c = 0x110000;	/* stays out of range */
		}
		put_utf8(out, c);
		return end + 1;
	}
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i].name) == end - 1 &&
		    strncmp(s + 1, names[i].name, end - 1) == 0) {
			put_utf8(out, names[i].c);
			return end + 1;
		}
	}
	return 0;
}

/* The end of "</name" ... ">" after i, or len. */
static size_t
skip_element(const char *s, size_t len, size_t i, const char *name)
{
	size_t nlen = strlen(name);

	for (; i + 2 + nlen <= len; i++) {
		if (s[i] == '<' && s[i + 1] == '/' &&
		    strncasecmp(s + i + 2, name, nlen) == 0) {
			const char *gt = memchr(s + i, '>', len - i);

			return gt != NULL ? (size_t)(gt - s) + 1 : len;
		}
	}
	return len;
}

/* HTML to text: tags dropped (a space where one stood), comments,
 * script, style, head and title elements dropped, references decoded. */
static void
html_text(const char *s, size_t len, str_t *out)
{
	static const char *const skipped[] = { "script", "style", "head",
	    "title" };
	size_t i = 0;

	while (i < len) {
		if (s[i] == '&') {
			size_t n = entity(s + i, len - i, out);

			if (n == 0)
				str_append_c(out, '&');
			i += n == 0 ? 1 : n;
			continue;
		}
		if (s[i] != '<') {
			str_append_c(out, s[i++]);
			continue;
		}
		if (len - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
			const char *e = memmem(s + i + 4, len - i - 4, "-->",
			    3);

			i = e != NULL ? (size_t)(e - s) + 3 : len;
			str_append_c(out, ' ');
			continue;
		}
		{
			size_t k, nstart = i + 1, nend;
			const char *gt = memchr(s + i, '>', len - i);
			size_t after = gt != NULL ? (size_t)(gt - s) + 1 : len;

			for (nend = nstart; nend < len &&
			    ((s[nend] >= 'a' && s[nend] <= 'z') ||
			    (s[nend] >= 'A' && s[nend] <= 'Z') ||
			    (s[nend] >= '0' && s[nend] <= '9')); nend++)
				;
			i = after;
			for (k = 0; k < sizeof(skipped) / sizeof(skipped[0]);
			    k++) {
				if (strlen(skipped[k]) == nend - nstart &&
				    strncasecmp(s + nstart, skipped[k],
				    nend - nstart) == 0) {
					i = skip_element(s, len, i, skipped[k]);
					break;
				}
			}
			str_append_c(out, ' ');
		}
	}
}

/* The length of the valid UTF-8 sequence at s (1-4), 0 if invalid, and
 * its code point. */
static size_t
utf8_seq(const unsigned char *s, size_t len, unsigned long *c_r)
{
	unsigned long c;
	size_t n, i;

	if (s[0] < 0x80) {
		*c_r = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (n == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	*c_r = c;
	return n;
}

/* Collapse white space and controls, drop invalid UTF-8, keep at most
 * MIME_PREVIEW_CHARS characters, trim. */
static void
collapse(const char *s, size_t len, str_t *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, chars = 0, start = out->len;
	bool space = false;

	while (i < len && chars < MIME_PREVIEW_CHARS) {
		unsigned long c;
		size_t n = utf8_seq(u + i, len - i, &c);

		if (n == 0) {
			i++;
			continue;
		}
		if (c <= 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) ||
		    c == 0xa0 || c == 0x2028 || c == 0x2029 || c == 0xfeff ||
		    c == 0x200b) {
			space = true;
			i += n;
			continue;
		}
		if (space && out->len > start) {
			/* a space only with room for what follows it */
			if (chars + 2 > MIME_PREVIEW_CHARS)
				break;
			str_append_c(out, ' ');
			chars++;
		}
		space = false;
		str_append_n(out, s + i, n);
		chars++;
		i += n;
	}
}

void
mime_preview(const char *data, const struct mime_part *root, str_t *out)
{
	const struct mime_part *p = pick(root, 0);
	struct mime_part cut;
	str_t text = STR_INIT, html = STR_INIT;

	if (p == NULL)
		return;
	cut = *p;
	if (cut.body_len > PREVIEW_SCAN)
		cut.body_len = PREVIEW_SCAN;
	mime_body_text(data, &cut, &text);
	if (strcmp(p->subtype, "html") == 0) {
		html_text(text.data != NULL ? text.data : "", text.len, &html);
		collapse(html.data != NULL ? html.data : "", html.len, out);
	} else {
		collapse(text.data != NULL ? text.data : "", text.len, out);
	}
	str_free(&text);
	str_free(&html);
}
