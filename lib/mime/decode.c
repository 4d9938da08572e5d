/*
 * decode.c: what SEARCH looks at -- RFC 2047 encoded-words, transfer
 * decoding (base64, quoted-printable), charsets to UTF-8 through iconv,
 * and RFC 5322 dates.
 *
 * Every scan here is linear: a broken "=?" gives up at the point its
 * own scan reached, so hostile headers cannot make the decoder rescan.
 * Matching folds ASCII letters only and uses memmem on folded copies.
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/mime/mime.h"

#define CHARSET_MAX	64

/* One RFC 2047 encoded-word: =?charset?e?text?= */
struct eword {
	char charset[CHARSET_MAX + 1];
	char enc;		/* 'B' or 'Q' */
	size_t text, text_len;	/* offsets into the value */
	size_t end;		/* just after the "?=" */
};

/* Adjacent encoded-words in one charset, decoded but not yet converted
 * (a character may be split across words). */
struct ew_run {
	char charset[CHARSET_MAX + 1];
	str_t bytes;
	size_t raw_start, raw_end;
	bool active;
	bool decoded;		/* the last flushed run converted */
};

/* Charsets. */

/* A charset name iconv may see: RFC 2231 "*lang" dropped, only name
 * characters (no "//TRANSLIT" or paths from a hostile message). */
static bool
charset_clean(const char *in, size_t len, char *out)
{
	size_t i;
	const char *star = memchr(in, '*', len);

	if (star != NULL)
		len = (size_t)(star - in);
	if (len == 0 || len > CHARSET_MAX)
		return false;
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)in[i]) &&
		    strchr("-_.:+", in[i]) == NULL)
			return false;
		out[i] = in[i];
	}
	out[len] = '\0';
	return true;
}

static bool
charset_is_utf8(const char *cs)
{
	return strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
	    strcasecmp(cs, "us-ascii") == 0;
}

/* src in charset appended to out as UTF-8. strict: fail (appending
 * nothing) on any invalid input; else invalid bytes are copied as they
 * are. false if iconv does not know the charset. */
static bool
to_utf8(const char *charset, const char *src, size_t len, bool strict,
    str_t *out)
{
	iconv_t cd;
	char *in = (char *)src, *o;
	size_t inleft = len, oleft, mark = out->len, room;
	bool ok = true;

	cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return false;
	str_reserve(out, 1);
	while (inleft > 0 && ok) {
		room = inleft * 2 + 16;
		str_reserve(out, room);
		o = out->data + out->len;
		oleft = room;
		if (iconv(cd, &in, &inleft, &o, &oleft) != (size_t)-1) {
			out->len += room - oleft;
			continue;
		}
		out->len += room - oleft;
		if (errno == E2BIG)
			continue;
		if (strict) {
			ok = false;
		} else {
			/* EILSEQ or EINVAL: keep the byte, go on */
			str_append_c(out, *in);
			in++;
			inleft--;
			iconv(cd, NULL, NULL, NULL, NULL);
		}
	}
	iconv_close(cd);
	if (!ok)
		out->len = mark;
	out->data[out->len] = '\0';
	return ok;
}

/* Transfer encodings. */

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Lenient base64: characters outside the alphabet are ignored. */
static void
decode_base64(const char *s, size_t len, str_t *out)
{
	unsigned bits = 0;
	int nbits = 0, v;
	size_t i;

	str_reserve(out, len / 4 * 3 + 3);
	for (i = 0; i < len; i++) {
		if ((v = b64_value((unsigned char)s[i])) < 0)
			continue;
		bits = (bits << 6) | (unsigned)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			str_append_c(out, (char)((bits >> nbits) & 0xff));
		}
	}
}


/* Quoted-printable (RFC 2045 6.7); header = the RFC 2047 "Q" form. */
static void
decode_qp(const char *s, size_t len, bool header, str_t *out)
{
	size_t i, j;
	int hi, lo;

	str_reserve(out, len);
	for (i = 0; i < len; i++) {
		if (header && s[i] == '_') {
			str_append_c(out, ' ');
			continue;
		}
		if (s[i] != '=') {
			str_append_c(out, s[i]);
			continue;
		}
		if (i + 2 < len &&
		    (hi = str_hexval((unsigned char)s[i + 1])) >= 0 &&
		    (lo = str_hexval((unsigned char)s[i + 2])) >= 0) {
			str_append_c(out, (char)(hi << 4 | lo));
			i += 2;
			continue;
		}
		/* a soft line break, maybe after transport padding */
		for (j = i + 1; j < len && (s[j] == ' ' || s[j] == '\t'); j++)
			;
		if (j < len && s[j] == '\r' && j + 1 < len && s[j + 1] == '\n')
			j++;
		if (j == len || s[j] == '\n') {
			i = j;
			continue;
		}
		str_append_c(out, '=');
	}
}

/* RFC 2047. */

/* Parse an encoded-word at i (value[i] == '=', value[i + 1] == '?').
 * On failure *resume is where scanning may go on: no encoded-word can
 * start before it. */
static bool
eword_parse(const char *v, size_t len, size_t i, struct eword *ew,
    size_t *resume)
{
	size_t p = i + 2, cs = p, t;

	*resume = i + 1;
	while (p < len && v[p] != '?' && v[p] != '=' &&
	    !isspace((unsigned char)v[p]))
		p++;
	if (p + 3 >= len || v[p] != '?' || v[p + 2] != '?') {
		*resume = p > i + 2 ? p : i + 1;
		return false;
	}
	ew->enc = (char)toupper((unsigned char)v[p + 1]);
	if ((ew->enc != 'B' && ew->enc != 'Q') ||
	    !charset_clean(v + cs, p - cs, ew->charset))
		return false;
	t = p + 3;
	for (p = t; p + 1 < len && !(v[p] == '?' && v[p + 1] == '='); p++) {
		if (isspace((unsigned char)v[p])) {
			*resume = p;
			return false;
		}
	}
	if (p + 1 >= len) {
		*resume = len;
		return false;
	}
	ew->text = t;
	ew->text_len = p - t;
	ew->end = p + 2;
	return true;
}

static bool
only_space(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (!isspace((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Convert the pending run, or copy its raw text if that fails. */
static void
run_flush(const char *v, struct ew_run *run, str_t *out)
{
	if (!run->active)
		return;
	run->decoded = to_utf8(run->charset, str_c(&run->bytes),
	    run->bytes.len, true, out);
	if (!run->decoded)
		str_append_n(out, v + run->raw_start,
		    run->raw_end - run->raw_start);
	str_truncate(&run->bytes, 0);
	run->active = false;
}

void
mime_decode_header(const char *value, size_t len, str_t *out)
{
	struct ew_run run;
	struct eword ew;
	size_t i = 0, text = 0, resume;

	memset(&run, 0, sizeof(run));
	while (i + 1 < len) {
		if (value[i] != '=' || value[i + 1] != '?') {
			i++;
			continue;
		}
		if (!eword_parse(value, len, i, &ew, &resume)) {
			i = resume;
			continue;
		}
		if (run.active && (!only_space(value + run.raw_end,
		    i - run.raw_end) || strcasecmp(run.charset,
		    ew.charset) != 0))
			run_flush(value, &run, out);
		if (!run.active) {
			/* white space between adjacent words is dropped */
			if (!(run.decoded && text == run.raw_end &&
			    only_space(value + text, i - text)))
				str_append_n(out, value + text, i - text);
			memcpy(run.charset, ew.charset, sizeof(run.charset));
			run.raw_start = i;
			run.active = true;
		}
		if (ew.enc == 'B')
			decode_base64(value + ew.text, ew.text_len, &run.bytes);
		else
			decode_qp(value + ew.text, ew.text_len, true,
			    &run.bytes);
		run.raw_end = text = i = ew.end;
	}
	run_flush(value, &run, out);
	if (len > text)
		str_append_n(out, value + text, len - text);
	str_free(&run.bytes);
}

/* Dates (RFC 5322 3.3 and 4.3). */

static void
skip_space(const char **pp)
{
	while (isspace((unsigned char)**pp) || **pp == ',')
		(*pp)++;
}

/* 1..max digits; false if there are none or more. */
static bool
read_num(const char **pp, int max, int *v, int *ndigits)
{
	const char *p = *pp;
	int n = 0;

	*v = 0;
	while (isdigit((unsigned char)*p) && n <= max) {
		*v = *v * 10 + (*p - '0');
		p++;
		n++;
	}
	if (n == 0 || n > max)
		return false;
	*pp = p;
	if (ndigits != NULL)
		*ndigits = n;
	return true;
}

/* Zone offset in minutes east of UTC; unknown names count as UTC. */
static int
zone_minutes(const char *p)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = {
		{ "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "Z", 0 },
		{ "EST", -5 }, { "EDT", -4 }, { "CST", -6 }, { "CDT", -5 },
		{ "MST", -7 }, { "MDT", -6 }, { "PST", -8 }, { "PDT", -7 },
	};
	char name[8];
	size_t i, n;
	int sign, v;

	if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		for (i = 0, v = 0; i < 4; i++) {
			if (!isdigit((unsigned char)p[i]))
				return 0;
			v = v * 10 + (p[i] - '0');
		}
		if (v % 100 > 59)
			return 0;
		return sign * (v / 100 * 60 + v % 100);
	}
	for (n = 0; n < sizeof(name) - 1 && isalpha((unsigned char)p[n]);
	    n++)
		name[n] = (char)toupper((unsigned char)p[n]);
	name[n] = '\0';
	for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (strcmp(name, zones[i].name) == 0)
			return zones[i].hours * 60;
	}
	return 0;	/* military letters and the rest: RFC 5322 4.3 */
}

static int
month_index(const char **pp)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	const char *p = *pp;
	char m[4];
	int i;

	for (i = 0; i < 3; i++) {
		if (!isalpha((unsigned char)p[i]))
			return -1;
		m[i] = (char)tolower((unsigned char)p[i]);
	}
	m[3] = '\0';
	for (i = 0; i < 12; i++) {
		if (strncmp(months + i * 3, m, 3) == 0)
			break;
	}
	if (i == 12)
		return -1;
	for (p += 3; isalpha((unsigned char)*p); p++)
		;
	*pp = p;
	return i;
}

long long
mime_parse_date(const char *value)
{
	return mime_parse_date_zone(value, NULL);
}

long long
mime_parse_date_zone(const char *value, int *zone_r)
{
	const char *p = value;
	struct tm tm;
	int day, mon, year, ydigits, hour, min, sec = 0;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	skip_space(&p);
	if (isalpha((unsigned char)*p)) {	/* day of week */
		while (isalpha((unsigned char)*p))
			p++;
		skip_space(&p);
	}
	if (!read_num(&p, 2, &day, NULL))
		return -1;
	skip_space(&p);
	if ((mon = month_index(&p)) < 0)
		return -1;
	skip_space(&p);
	if (!read_num(&p, 4, &year, &ydigits))
		return -1;
	if (ydigits <= 2)
		year += year < 50 ? 2000 : 1900;
	else if (ydigits == 3)
		year += 1900;
	skip_space(&p);
	if (!read_num(&p, 2, &hour, NULL) || *p++ != ':' ||
	    !read_num(&p, 2, &min, NULL))
		return -1;
	if (*p == ':' && (p++, !read_num(&p, 2, &sec, NULL)))
		return -1;
	if (day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -1;
	skip_space(&p);
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	if (zone_r != NULL)
		*zone_r = zone_minutes(p);
	return (long long)t - (long long)zone_minutes(p) * 60;
}

/* SEARCH. */

static void
fold_ascii(char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
	}
}

/* Does s (folded here, in place) contain the folded needle? */
static bool
contains(str_t *s, const char *needle, size_t nlen)
{
	if (nlen == 0)
		return true;
	if (s->len < nlen)
		return false;
	fold_ascii(s->data, s->len);
	return memmem(s->data, s->len, needle, nlen) != NULL;
}

/* The fields of a header block one by one, unfolded and decoded; with
 * value_only the name and ':' are left out; with addr (value_only too)
 * each value is first parsed as addresses (mime_address_text). */
static bool
fields_contain(const char *blk, size_t len, bool value_only, bool addr,
    const char *needle, size_t nlen)
{
	str_t raw = STR_INIT, dec = STR_INIT, txt = STR_INIT;
	size_t pos = 0, end, i;
	const char *lf, *colon;
	bool found = false;

	while (!found && pos < len && blk[pos] != '\n' &&
	    !(blk[pos] == '\r' && pos + 1 < len && blk[pos + 1] == '\n')) {
		str_truncate(&raw, 0);
		for (end = pos; end < len; ) {	/* one field, unfolded */
			lf = memchr(blk + end, '\n', len - end);
			i = lf == NULL ? len : (size_t)(lf - blk);
			str_append_n(&raw, blk + end, i > end && lf != NULL &&
			    blk[i - 1] == '\r' ? i - end - 1 : i - end);
			end = lf == NULL ? len : i + 1;
			if (end >= len || (blk[end] != ' ' && blk[end] != '\t'))
				break;
		}
		pos = end;
		i = 0;
		if (value_only && raw.len > 0 &&
		    (colon = memchr(raw.data, ':', raw.len)) != NULL) {
			i = (size_t)(colon - raw.data) + 1;
			while (i < raw.len && (raw.data[i] == ' ' ||
			    raw.data[i] == '\t'))
				i++;
		}
		str_truncate(&dec, 0);
		if (addr) {
			str_truncate(&txt, 0);
			mime_address_text(raw.data != NULL ?
			    str_c(&raw) + i : "", &txt);
			mime_decode_header(str_c(&txt), txt.len, &dec);
		} else {
			mime_decode_header(raw.data != NULL ? raw.data + i :
			    "", raw.len - i, &dec);
		}
		found = contains(&dec, needle, nlen) ||
		    (addr && nlen == 0);
	}
	str_free(&raw);
	str_free(&dec);
	str_free(&txt);
	return found;
}

static char *
fold_needle(const char *needle, size_t *nlen)
{
	char *n = xstrdup(needle);

	*nlen = strlen(n);
	fold_ascii(n, *nlen);
	return n;
}

static bool
header_contains(const char *data, const struct mime_part *part,
    const char *name, bool addr, const char *needle, size_t nlen)
{
	const char *hdr = data + part->hdr_off;
	str_t sel = STR_INIT;
	bool found;

	if (name == NULL)
		return fields_contain(hdr, part->hdr_len, false, false,
		    needle, nlen);
	mime_header_fields(hdr, part->hdr_len, &name, 1, false, &sel);
	found = fields_contain(sel.data, sel.len, true, addr, needle, nlen);
	str_free(&sel);
	return found;
}

bool
mime_search_header(const char *data, const struct mime_part *root,
    const char *name, const char *needle)
{
	size_t nlen;
	char *n = fold_needle(needle, &nlen);
	bool found = header_contains(data, root, name, false, n, nlen);

	free(n);
	return found;
}

bool
mime_search_address(const char *data, const struct mime_part *root,
    const char *name, const char *needle)
{
	size_t nlen;
	char *n = fold_needle(needle, &nlen);
	bool found = header_contains(data, root, name, true, n, nlen);

	free(n);
	return found;
}

int
mime_part_decoded(const char *data, const struct mime_part *part, str_t *out)
{
	const char *body = data + part->body_off, *e = part->encoding;

	if (part->children != NULL || part->message != NULL ||
	    strcmp(e, "7BIT") == 0 || strcmp(e, "8BIT") == 0 ||
	    strcmp(e, "BINARY") == 0)
		str_append_n(out, body, part->body_len);
	else if (strcmp(e, "BASE64") == 0)
		decode_base64(body, part->body_len, out);
	else if (strcmp(e, "QUOTED-PRINTABLE") == 0)
		decode_qp(body, part->body_len, false, out);
	else
		return -1;
	return 0;
}

/* A text part's body as UTF-8. */
static void
body_text(const char *data, const struct mime_part *part, str_t *out)
{
	const char *body = data + part->body_off, *cs = NULL;
	char charset[CHARSET_MAX + 1];
	str_t dec = STR_INIT;
	size_t i;

	if (strcmp(part->encoding, "BASE64") == 0)
		decode_base64(body, part->body_len, &dec);
	else if (strcmp(part->encoding, "QUOTED-PRINTABLE") == 0)
		decode_qp(body, part->body_len, false, &dec);
	else
		str_append_n(&dec, body, part->body_len);
	for (i = 0; i < part->nparams; i++) {
		if (strcmp(part->params[i].name, "charset") == 0)
			cs = part->params[i].value;
	}
	if (cs == NULL || !charset_clean(cs, strlen(cs), charset) ||
	    charset_is_utf8(charset) ||
	    !to_utf8(charset, str_c(&dec), dec.len, false, out))
		str_append_n(out, dec.data, dec.len);
	str_free(&dec);
}

void
mime_body_text(const char *data, const struct mime_part *part, str_t *out)
{
	body_text(data, part, out);
}

static bool
part_contains(const char *data, const struct mime_part *part,
    const char *needle, size_t nlen, bool text)
{
	str_t body = STR_INIT;
	size_t i;
	bool found;

	if (text && header_contains(data, part, NULL, false, needle, nlen))
		return true;
	for (i = 0; i < part->nchildren; i++) {
		if (part_contains(data, &part->children[i], needle, nlen,
		    text))
			return true;
	}
	if (part->message != NULL)
		return part_contains(data, part->message, needle, nlen, text);
	if (strcmp(part->type, "text") != 0)
		return false;
	body_text(data, part, &body);
	found = contains(&body, needle, nlen);
	str_free(&body);
	return found;
}

bool
mime_search_body(const char *data, const struct mime_part *root,
    const char *needle, bool text)
{
	size_t nlen;
	char *n = fold_needle(needle, &nlen);
	bool found;

	found = nlen == 0 || part_contains(data, root, n, nlen, text);
	free(n);
	return found;
}

/* Header fields written. */

void
mime_field_make(const char *name, const char *value, str_t *out)
{
	size_t col, n = strlen(value);
	bool plain = true;

	str_append(out, name);
	str_append_c(out, ':');
	col = strlen(name) + 1;
	for (size_t i = 0; i < n && plain; i++) {
		unsigned char c = (unsigned char)value[i];

		plain = (c >= 0x20 && c < 0x7f) || c == '\t';
	}
	for (size_t i = 0, run = 0; i < n && plain; i++) {
		run = value[i] == ' ' || value[i] == '\t' ? 0 : run + 1;
		plain = run <= 900;	/* a line stays under 998 */
	}
	if (plain && strstr(value, "=?") == NULL) {
		/* words, folded before one that would pass column 78 */
		const char *p = value;

		while (*p == ' ' || *p == '\t')
			p++;
		while (*p != '\0') {
			size_t w = strcspn(p, " \t");

			if (col > 1 + strlen(name) + 1 && col + 1 + w > 78) {
				str_append(out, "\r\n");
				col = 0;
			}
			str_append_c(out, ' ');
			str_append_n(out, p, w);
			col += 1 + w;
			p += w;
			while (*p == ' ' || *p == '\t')
				p++;
		}
		if (col == strlen(name) + 1)
			str_append_c(out, ' ');
		str_append(out, "\r\n");
		return;
	}
	/* RFC 2047 "B" words of at most 45 bytes (60 characters of base64,
	 * 72 with the markers), cut between UTF-8 characters, one a line;
	 * control characters become spaces */
	for (size_t i = 0; i < n;) {
		char chunk[48];
		size_t k = 0;

		while (i < n) {
			unsigned char c = (unsigned char)value[i];
			size_t cl = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ?
			    3 : c >= 0xc0 ? 2 : 1;

			if (cl > n - i)
				cl = n - i;
			if (k + cl > 45)
				break;
			for (size_t j = 0; j < cl; j++) {
				c = (unsigned char)value[i + j];
				chunk[k++] = c < 0x20 || c == 0x7f ? ' ' :
				    (char)c;
			}
			i += cl;
		}
		if (col > 0 && col + 1 + 72 > 78 && out->len > 0 &&
		    out->data[out->len - 1] != ':') {
			str_append(out, "\r\n");
			col = 0;
		}
		str_append(out, " =?UTF-8?B?");
		base64_encode(out, chunk, k);
		str_append(out, "?=");
		col += 84;
	}
	str_append(out, "\r\n");
}
