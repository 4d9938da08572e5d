/*
 * mime.c: the MIME part tree of one message -- header fields, the
 * Content-* fields (RFC 2045, RFC 2231) and multipart / message nesting
 * (RFC 2046). ENVELOPE and BODYSTRUCTURE are in envelope.c; RFC 2047,
 * dates and SEARCH in decode.c.
 *
 * The parse is one pass: every header is scanned once, and a body scan
 * checks each line start against the open boundaries (at most
 * MIME_DEPTH_MAX of them). Hostile input therefore costs O(depth * size)
 * and never more. A line ends at LF; the CR before it is optional so a
 * stray bare LF is only a shorter line ending, never a crash.
 */
#include <ctype.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/mime/mime.h"

/* Highest RFC 2231 section number (name*N) we join. */
#define PARAM_SECTION_MAX	9999

/* A header field inside a header block; offsets relative to the block. */
struct field {
	size_t start, end;	/* the field with its continuation lines
				   and final line ending */
	size_t name_len;	/* the name at start, trailing WSP trimmed */
	size_t value, value_end; /* after the ':' up to the line ending */
};

/* One open multipart boundary. */
struct boundary {
	const char *s;
	size_t len;
};

struct parser {
	const char *data;
	size_t len;
	struct boundary stack[MIME_DEPTH_MAX + 1];
	size_t nbound;
	size_t nparts;
};

/* Where a part's content stopped: at a boundary line or the end. */
struct stop {
	size_t pos;		/* start of the boundary line, or len */
	size_t next;		/* just after the boundary line */
	int level;		/* index in the stack; -1: the end */
	bool close;		/* "--b--" */
};

/* A growable parameter list. */
struct plist {
	struct mime_param *v;
	size_t n, cap;
};

/* An RFC 2231 section: name*N[*]=value. */
struct section {
	char *name;		/* the whole name as given */
	size_t base_len;	/* the name before the '*' */
	unsigned idx;
	bool ext;		/* charset'lang'%XX form */
	size_t order;		/* position, for a stable sort */
	char *value;
};

/* Lines. */

static size_t
line_end(const char *d, size_t len, size_t pos)
{
	const char *lf;

	if (pos >= len)
		return len;
	lf = memchr(d + pos, '\n', len - pos);
	return lf == NULL ? len : (size_t)(lf - d) + 1;
}

static bool
empty_line_at(const char *d, size_t len, size_t pos)
{
	return (pos < len && d[pos] == '\n') ||
	    (pos + 1 < len && d[pos] == '\r' && d[pos + 1] == '\n');
}

static size_t
count_lines(const char *d, size_t len)
{
	const char *p = d, *end = d + len;
	size_t n = 0;

	if (len == 0)
		return 0;
	while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n++;
		if (++p == end)
			break;
	}
	return n;
}

/* The CRLF form of data appended to out, which has room for its size
 * bytes (mime_crlf_size). */
static void
crlf_copy(const char *data, size_t len, uint64_t size, str_t *out)
{
	const char *p, *start, *end, *lf;
	char *d;

	str_reserve(out, (size_t)size);
	d = out->data + out->len;
	start = p = data;
	end = data + len;
	while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf == data || lf[-1] != '\r') {
			memcpy(d, start, (size_t)(lf - start));
			d += lf - start;
			*d++ = '\r';
			*d++ = '\n';
			start = lf + 1;
		}
		p = lf + 1;
		if (p == end)
			break;
	}
	memcpy(d, start, (size_t)(end - start));
	d += end - start;
	out->len = (size_t)(d - out->data);
	out->data[out->len] = '\0';
}

void
mime_to_crlf(const char *data, size_t len, str_t *out)
{
	if (len == 0)
		return;
	/* sized exactly first, then copied without further checks */
	crlf_copy(data, len, mime_crlf_size(data, len), out);
}

void
mime_append_crlf_literal(const char *data, size_t len, str_t *out)
{
	uint64_t size = mime_crlf_size(data, len);

	str_printf(out, "{%llu}\r\n", (unsigned long long)size);
	if (len > 0)
		crlf_copy(data, len, size, out);
}

/* crlf_copy with the size only expected: false, and out as it was, when
 * the CRLF form is not exactly size bytes. One pass that reads each byte
 * once: with SSE2, 16 bytes are looked at and stored at a time (a store
 * may run past what is kept, never past the room reserved), a line end
 * found among them is written and the next 16 start after it. */
static bool
crlf_copy_expect(const char *data, size_t len, size_t size, str_t *out)
{
	const char *p = data, *end = data + len;
	char *d, *dend;

	str_reserve(out, size);
	d = out->data + out->len;
	dend = d + size;
#ifdef __SSE2__
	{
		const __m128i nl = _mm_set1_epi8('\n');

		/* 16 bytes stored, then at most one CR more than read */
		while (end - p >= 16 && dend - d >= 17) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			unsigned mask = (unsigned)_mm_movemask_epi8(
			    _mm_cmpeq_epi8(v, nl));
			const char *lf;
			unsigned k;

			_mm_storeu_si128((__m128i *)d, v);
			if (mask == 0) {
				p += 16;
				d += 16;
				continue;
			}
			k = (unsigned)__builtin_ctz(mask);
			lf = p + k;
			if (lf == data || lf[-1] != '\r') {
				d[k] = '\r';
				d[k + 1] = '\n';
				d += k + 2;
			} else {
				d += k + 1;
			}
			p += k + 1;
		}
	}
#endif
	for (; p < end; p++) {
		if (*p == '\n' && (p == data || p[-1] != '\r')) {
			if (dend - d < 2)
				return false;
			*d++ = '\r';
		} else if (d == dend) {
			return false;
		}
		*d++ = *p;
	}
	if (d != dend)
		return false;
	out->len += size;
	out->data[out->len] = '\0';
	return true;
}

void
mime_append_crlf_literal_expect(const char *data, size_t len,
    uint64_t expect, str_t *out)
{
	size_t mark = out->len;

	/* the CRLF form is between len and 2 len bytes; a size outside
	 * cannot be right and is not tried */
	if (len > 0 && expect >= len && expect / 2 <= len) {
		str_printf(out, "{%llu}\r\n", (unsigned long long)expect);
		if (crlf_copy_expect(data, len, (size_t)expect, out))
			return;
		str_truncate(out, mark);
	}
	mime_append_crlf_literal(data, len, out);
}

uint64_t
mime_crlf_size(const char *data, size_t len)
{
	const char *p, *end, *lf;
	uint64_t n = len;

	if (len == 0)
		return 0;
	p = data;
	end = data + len;
	while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf == data || lf[-1] != '\r')
			n++;
		p = lf + 1;
		if (p == end)
			break;
	}
	return n;
}

/* Header fields. */

/* The next field of the block at *pos; false at the empty line or the
 * end. Lines without a ':' (and a leading continuation) are skipped. */
static bool
field_next(const char *hdr, size_t len, size_t *pos, struct field *f)
{
	const char *colon;
	size_t p, first, e;

	while ((p = *pos) < len && !empty_line_at(hdr, len, p)) {
		first = line_end(hdr, len, p);
		e = first;
		while (e < len && (hdr[e] == ' ' || hdr[e] == '\t'))
			e = line_end(hdr, len, e);
		*pos = e;
		if (hdr[p] == ' ' || hdr[p] == '\t')
			continue;
		colon = memchr(hdr + p, ':', first - p);
		if (colon == NULL)
			continue;
		f->start = p;
		f->end = e;
		f->value = (size_t)(colon - hdr) + 1;
		f->name_len = (size_t)(colon - hdr) - p;
		while (f->name_len > 0 && (hdr[p + f->name_len - 1] == ' ' ||
		    hdr[p + f->name_len - 1] == '\t'))
			f->name_len--;
		if (f->name_len == 0)
			continue;
		f->value_end = e;
		if (e > f->value && hdr[e - 1] == '\n') {
			f->value_end--;
			if (f->value_end > f->value && hdr[e - 2] == '\r')
				f->value_end--;
		}
		return true;
	}
	return false;
}

static bool
field_is(const char *hdr, const struct field *f, const char *name)
{
	return strlen(name) == f->name_len &&
	    strncasecmp(hdr + f->start, name, f->name_len) == 0;
}

/* The value unfolded (CRLF / LF dropped), leading WSP trimmed. */
static char *
field_value(const char *hdr, const struct field *f)
{
	str_t s = STR_INIT;
	size_t i = f->value, end = f->value_end, e;
	const char *lf;

	while (i < end && (hdr[i] == ' ' || hdr[i] == '\t'))
		i++;
	str_reserve(&s, end - i);
	str_append_n(&s, "", 0);	/* NUL-terminated even when empty */
	while (i < end) {
		lf = memchr(hdr + i, '\n', end - i);
		e = lf == NULL ? end : (size_t)(lf - hdr);
		str_append_n(&s, hdr + i, e > i && lf != NULL &&
		    hdr[e - 1] == '\r' ? e - i - 1 : e - i);
		i = e + 1;
	}
	return str_steal(&s);
}

char *
mime_header_get(const char *hdr, size_t len, const char *name)
{
	struct field f;
	size_t pos = 0;

	while (field_next(hdr, len, &pos, &f)) {
		if (field_is(hdr, &f, name))
			return field_value(hdr, &f);
	}
	return NULL;
}

void
mime_header_get_first(const char *hdr, size_t len, const char *const *names,
    size_t n, char **values)
{
	struct field f;
	size_t pos = 0, i, left = n;

	for (i = 0; i < n; i++)
		values[i] = NULL;
	while (left > 0 && field_next(hdr, len, &pos, &f)) {
		for (i = 0; i < n; i++) {
			if (values[i] == NULL && field_is(hdr, &f, names[i])) {
				values[i] = field_value(hdr, &f);
				left--;
				break;
			}
		}
	}
}

void
mime_header_fields(const char *hdr, size_t len, const char *const *names,
    size_t nnames, bool exclude, str_t *out)
{
	struct field f;
	size_t pos = 0, i;
	bool match;

	while (field_next(hdr, len, &pos, &f)) {
		match = false;
		for (i = 0; i < nnames && !match; i++)
			match = field_is(hdr, &f, names[i]);
		if (match == exclude)
			continue;
		str_append_n(out, hdr + f.start, f.end - f.start);
		if (hdr[f.end - 1] != '\n')
			str_append_n(out, "\r\n", 2);
	}
	str_append_n(out, "\r\n", 2);
}

/* RFC 2045 structured values: tokens, quoted strings, comments. */

static void
skip_cfws(const char **pp)
{
	const char *p = *pp;
	size_t depth;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			break;
		for (depth = 0; *p != '\0'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
	*pp = p;
}

static bool
is_token_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static size_t
token_len(const char *p)
{
	size_t n = 0;

	while (is_token_char((unsigned char)p[n]))
		n++;
	return n;
}

/* The token at *pp (lower-cased if lower), or NULL. */
static char *
read_token(const char **pp, bool lower)
{
	size_t n = token_len(*pp);
	char *t;

	if (n == 0)
		return NULL;
	t = xstrndup(*pp, n);
	if (lower)
		str_lower(t);
	*pp += n;
	return t;
}

/* A quoted string (unescaped) or a loose run of value characters. */
static char *
read_value(const char **pp)
{
	const char *p = *pp;
	str_t s = STR_INIT;

	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			str_append_c(&s, *p);
		}
		if (*p == '"')
			p++;
	} else {
		for (; *p != '\0' && strchr(";()\" \t\r\n", *p) == NULL; p++)
			str_append_c(&s, *p);
	}
	*pp = p;
	return str_steal(&s);
}

static void
plist_add(struct plist *l, char *name, char *value)
{
	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 4 : l->cap * 2;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n].name = name;
	l->v[l->n].value = value;
	l->n++;
}

/* name*N, name*N* or name*: an RFC 2231 section. */
static bool
section_parse(char *name, struct section *s)
{
	const char *star = strchr(name, '*'), *p;
	unsigned long idx = 0;

	if (star == NULL || star == name)
		return false;
	p = star + 1;
	if (*p >= '0' && *p <= '9') {
		for (; *p >= '0' && *p <= '9'; p++) {
			idx = idx * 10 + (unsigned long)(*p - '0');
			if (idx > PARAM_SECTION_MAX)
				return false;
		}
		s->ext = *p == '*';
		if (s->ext)
			p++;
	} else {
		s->ext = true;
	}
	if (*p != '\0')
		return false;
	s->name = name;
	s->base_len = (size_t)(star - name);
	s->idx = (unsigned)idx;
	return true;
}

static int
section_cmp(const void *a, const void *b)
{
	const struct section *x = a, *y = b;
	size_t n = x->base_len < y->base_len ? x->base_len : y->base_len;
	int c = memcmp(x->name, y->name, n);

	if (c != 0)
		return c;
	if (x->base_len != y->base_len)
		return x->base_len < y->base_len ? -1 : 1;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static bool
same_base(const struct section *a, const struct section *b)
{
	return a->base_len == b->base_len &&
	    memcmp(a->name, b->name, a->base_len) == 0;
}

/* Join sections 0..n-1 of one name into name[*]=value; when any of them
 * is extended the plain ones get '%' escaped, as Dovecot does, so the
 * joined value stays one valid extended value. */
static void
section_join(struct section *s, size_t n, struct plist *out)
{
	str_t v = STR_INIT;
	bool ext = false;
	size_t i;
	const char *c;

	for (i = 0; i < n; i++)
		ext = ext || s[i].ext;
	if (ext && !s[0].ext)
		str_append(&v, "''");
	for (i = 0; i < n; i++) {
		for (c = s[i].value; ext && !s[i].ext && *c != '\0'; c++) {
			if (*c == '%')
				str_append(&v, "%25");
			else
				str_append_c(&v, *c);
		}
		if (!ext || s[i].ext)
			str_append(&v, s[i].value);
		free(s[i].value);
		if (i > 0)
			free(s[i].name);
	}
	s[0].name[s[0].base_len] = '\0';
	plist_add(out, xasprintf("%s%s", s[0].name, ext ? "*" : ""),
	    str_steal(&v));
	free(s[0].name);
}

/* Sort the RFC 2231 sections and join each complete run 0, 1, 2, ...;
 * a name with gaps or repeats keeps its sections as separate params. */
static void
sections_merge(struct section *s, size_t n, struct plist *out)
{
	size_t i, j, k;
	bool ok;

	qsort(s, n, sizeof(*s), section_cmp);
	for (i = 0; i < n; i = j) {
		ok = true;
		for (j = i; j < n && same_base(&s[i], &s[j]); j++)
			ok = ok && s[j].idx == j - i;
		if (ok) {
			section_join(s + i, j - i, out);
			continue;
		}
		for (k = i; k < j; k++)
			plist_add(out, s[k].name, s[k].value);
	}
}

/* "; name=value" pairs after a Content-Type or Content-Disposition
 * value. Junk is skipped a character at a time. */
static void
parse_params(const char *p, struct mime_param **params_r, size_t *n_r)
{
	struct plist l = { NULL, 0, 0 };
	struct section *secs = NULL, s;
	size_t nsecs = 0, cap = 0, order = 0;
	char *name;

	for (;;) {
		skip_cfws(&p);
		if (*p == '\0')
			break;
		if (*p++ != ';')
			continue;
		skip_cfws(&p);
		if ((name = read_token(&p, true)) == NULL)
			continue;
		skip_cfws(&p);
		if (*p != '=') {
			free(name);
			continue;
		}
		p++;
		skip_cfws(&p);
		if (!section_parse(name, &s)) {
			plist_add(&l, name, read_value(&p));
			continue;
		}
		s.value = read_value(&p);
		s.order = order++;
		if (nsecs == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			secs = xrealloc(secs, cap * sizeof(*secs));
		}
		secs[nsecs++] = s;
	}
	if (nsecs > 0)
		sections_merge(secs, nsecs, &l);
	free(secs);
	*params_r = l.v;
	*n_r = l.n;
}

static const char *
param_get(const struct mime_param *v, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(v[i].name, name) == 0)
			return v[i].value;
	}
	return NULL;
}

/* Content-* fields. */

static void
parse_content_type(struct mime_part *part, const char *value)
{
	const char *p = value;
	char *type, *subtype = NULL;

	skip_cfws(&p);
	if ((type = read_token(&p, true)) == NULL)
		return;
	skip_cfws(&p);
	if (*p == '/') {
		p++;
		skip_cfws(&p);
		subtype = read_token(&p, true);
	}
	if (subtype == NULL) {
		free(type);
		return;
	}
	part->type = type;
	part->subtype = subtype;
	parse_params(p, &part->params, &part->nparams);
}

static void
parse_encoding(struct mime_part *part, const char *value)
{
	const char *p = value;
	char *enc;

	skip_cfws(&p);
	if ((enc = read_token(&p, true)) == NULL)
		return;
	for (char *c = enc; *c != '\0'; c++)
		*c = (char)toupper((unsigned char)*c);
	part->encoding = enc;
}

static void
parse_disposition(struct mime_part *part, const char *value)
{
	const char *p = value;

	skip_cfws(&p);
	if ((part->disposition = read_token(&p, true)) == NULL)
		return;
	parse_params(p, &part->disp_params, &part->ndisp_params);
}

static void
parse_language(struct mime_part *part, const char *value)
{
	const char *p = value;
	size_t cap = 0;
	char *tag;

	for (;;) {
		skip_cfws(&p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '"')
			tag = read_value(&p);
		else if ((tag = read_token(&p, false)) == NULL)
			break;
		if (part->nlanguages == cap) {
			cap = cap == 0 ? 2 : cap * 2;
			part->languages = xrealloc(part->languages,
			    cap * sizeof(*part->languages));
		}
		part->languages[part->nlanguages++] = tag;
	}
}

/* Store one Content-<suffix> field; the first of each kind wins. */
static void
content_field(struct mime_part *part, const char *suffix, size_t n,
    char *value, bool *have_type)
{
#define SUFFIX_IS(lit) (n == sizeof(lit) - 1 && \
	strncasecmp(suffix, lit, sizeof(lit) - 1) == 0)
	if (SUFFIX_IS("type") && !*have_type) {
		*have_type = true;
		parse_content_type(part, value);
	} else if (SUFFIX_IS("transfer-encoding") && part->encoding == NULL)
		parse_encoding(part, value);
	else if (SUFFIX_IS("disposition") && part->disposition == NULL)
		parse_disposition(part, value);
	else if (SUFFIX_IS("language") && part->languages == NULL)
		parse_language(part, value);
	else if (SUFFIX_IS("id") && part->id == NULL) {
		part->id = value;
		return;
	} else if (SUFFIX_IS("description") && part->description == NULL) {
		part->description = value;
		return;
	} else if (SUFFIX_IS("md5") && part->md5 == NULL) {
		part->md5 = value;
		return;
	} else if (SUFFIX_IS("location") && part->location == NULL) {
		part->location = value;
		return;
	}
	free(value);
#undef SUFFIX_IS
}

static void
parse_content_fields(const char *hdr, size_t len, struct mime_part *part,
    bool digest)
{
	struct field f;
	size_t pos = 0;
	bool have_type = false;

	while (field_next(hdr, len, &pos, &f)) {
		if (f.name_len <= 8 ||
		    strncasecmp(hdr + f.start, "content-", 8) != 0)
			continue;
		content_field(part, hdr + f.start + 8, f.name_len - 8,
		    field_value(hdr, &f), &have_type);
	}
	if (part->type == NULL) {
		part->type = xstrdup(digest ? "message" : "text");
		part->subtype = xstrdup(digest ? "rfc822" : "plain");
	}
	if (strcmp(part->type, "text") == 0 &&
	    param_get(part->params, part->nparams, "charset") == NULL) {
		struct plist l = { part->params, part->nparams,
		    part->nparams };

		plist_add(&l, xstrdup("charset"), xstrdup("us-ascii"));
		part->params = l.v;
		part->nparams = l.n;
	}
	if (part->encoding == NULL)
		part->encoding = xstrdup("7BIT");
}

/* The part tree. */

/* Does a boundary line of an open multipart start at pos? */
static bool
boundary_at(const struct parser *p, size_t pos, struct stop *st)
{
	const char *d = p->data + pos;
	size_t avail = p->len - pos, i, k;
	const struct boundary *b;

	if (avail < 2 || d[0] != '-' || d[1] != '-')
		return false;
	for (i = p->nbound; i-- > 0;) {
		b = &p->stack[i];
		if (avail - 2 < b->len || memcmp(d + 2, b->s, b->len) != 0)
			continue;
		k = 2 + b->len;
		st->close = avail - k >= 2 && d[k] == '-' && d[k + 1] == '-';
		if (st->close)
			k += 2;
		while (k < avail && (d[k] == ' ' || d[k] == '\t'))
			k++;
		if (k < avail && d[k] == '\r' && (k + 1 == avail ||
		    d[k + 1] == '\n'))
			k++;
		if (k < avail && d[k] != '\n')
			continue;
		st->pos = pos;
		st->next = pos + (k < avail ? k + 1 : k);
		st->level = (int)i;
		return true;
	}
	return false;
}

/* The first boundary line at or after the line start pos. */
static struct stop
find_stop(const struct parser *p, size_t pos)
{
	struct stop st;

	if (p->nbound > 0) {
		for (; pos < p->len; pos = line_end(p->data, p->len, pos)) {
			if (boundary_at(p, pos, &st))
				return st;
		}
	}
	st.pos = st.next = p->len;
	st.level = -1;
	st.close = false;
	return st;
}

/* Where content that began at off ends: the line ending before a
 * boundary line belongs to the boundary (RFC 2046 5.1.1). */
static size_t
content_end(const struct parser *p, const struct stop *st, size_t off)
{
	size_t end = st->pos;

	if (st->level < 0)
		return end;
	if (end > off && p->data[end - 1] == '\n') {
		end--;
		if (end > off && p->data[end - 1] == '\r')
			end--;
	}
	return end;
}

/* The header runs to its empty line, or to a boundary line, or to the
 * end of the data. */
static void
parse_header(const struct parser *p, struct mime_part *part, size_t pos)
{
	struct stop st;

	part->hdr_off = pos;
	while (pos < p->len) {
		if (empty_line_at(p->data, p->len, pos)) {
			pos = line_end(p->data, p->len, pos);
			break;
		}
		if (p->nbound > 0 && boundary_at(p, pos, &st))
			break;
		pos = line_end(p->data, p->len, pos);
	}
	part->hdr_len = pos - part->hdr_off;
	part->body_off = pos;
}

static struct stop parse_part(struct parser *, struct mime_part *, size_t,
    size_t, bool);

static struct mime_part *
add_child(struct mime_part *part, size_t *cap)
{
	struct mime_part *c;

	if (part->nchildren == *cap) {
		*cap = *cap == 0 ? 4 : *cap * 2;
		part->children = xrealloc(part->children,
		    *cap * sizeof(*part->children));
	}
	c = &part->children[part->nchildren++];
	memset(c, 0, sizeof(*c));
	c->parent = part;
	return c;
}

/* The children array may have moved while it grew: point the
 * grandchildren back at their parents. */
static void
fix_parents(struct mime_part *part)
{
	struct mime_part *c;
	size_t i, j;

	for (i = 0; i < part->nchildren; i++) {
		c = &part->children[i];
		for (j = 0; j < c->nchildren; j++)
			c->children[j].parent = c;
		if (c->message != NULL)
			c->message->parent = c;
	}
}

/* Past MIME_PARTS_MAX: the rest of this multipart's content goes into
 * the last child's body. */
static struct stop
fold_rest(const struct parser *p, struct mime_part *part, struct stop st,
    int level)
{
	struct mime_part *last;

	while (st.level == level && !st.close)
		st = find_stop(p, st.next);
	if (part->nchildren > 0) {
		last = &part->children[part->nchildren - 1];
		last->body_len = content_end(p, &st, last->body_off) -
		    last->body_off;
		last->body_lines = count_lines(p->data + last->body_off,
		    last->body_len);
	}
	return st;
}

static struct stop
parse_multipart(struct parser *p, struct mime_part *part, const char *b,
    size_t depth)
{
	int level = (int)p->nbound;
	bool digest = strcmp(part->subtype, "digest") == 0;
	size_t cap = 0;
	struct stop st;

	p->stack[p->nbound].s = b;
	p->stack[p->nbound].len = strlen(b);
	p->nbound++;
	st = find_stop(p, part->body_off);	/* past the preamble */
	while (st.level == level && !st.close) {
		if (p->nparts >= MIME_PARTS_MAX) {
			st = fold_rest(p, part, st, level);
			break;
		}
		p->nparts++;
		st = parse_part(p, add_child(part, &cap), st.next, depth + 1,
		    digest);
	}
	p->nbound--;
	if (st.level == level)			/* past the epilogue */
		st = find_stop(p, st.next);
	fix_parents(part);
	return st;
}

static struct stop
parse_message(struct parser *p, struct mime_part *part, size_t depth)
{
	struct mime_part *m;

	if (p->nparts >= MIME_PARTS_MAX)
		return find_stop(p, part->body_off);
	p->nparts++;
	m = xcalloc(1, sizeof(*m));
	m->parent = part;
	part->message = m;
	return parse_part(p, m, part->body_off, depth + 1, false);
}

/* A part ends where its last child or its message ends, minus the line
 * ending a boundary takes; in degenerate cases (an empty part right
 * before the boundary) that child reached past it. Pull it back so
 * every part stays inside its parent. */
static void
clamp_end(const struct parser *p, struct mime_part *part, size_t end)
{
	size_t body_end = part->body_off + part->body_len;

	if (part->hdr_off > end)
		part->hdr_off = end;
	if (part->body_off >= end) {	/* the body was empty */
		part->body_off = end;
		part->hdr_len = end - part->hdr_off;
		part->body_len = part->body_lines = 0;
	} else if (body_end > end) {
		part->body_len = end - part->body_off;
		part->body_lines -= count_lines(p->data + end, body_end - end);
	}
	if (part->nchildren > 0)
		clamp_end(p, &part->children[part->nchildren - 1], end);
	if (part->message != NULL)
		clamp_end(p, part->message, end);
}

static struct stop
parse_part(struct parser *p, struct mime_part *part, size_t pos,
    size_t depth, bool digest)
{
	const char *b;
	struct stop st;

	parse_header(p, part, pos);
	parse_content_fields(p->data + part->hdr_off, part->hdr_len, part,
	    digest);
	b = param_get(part->params, part->nparams, "boundary");
	if (depth < MIME_DEPTH_MAX && strcmp(part->type, "multipart") == 0 &&
	    b != NULL && *b != '\0')
		st = parse_multipart(p, part, b, depth);
	else if (depth < MIME_DEPTH_MAX &&
	    strcmp(part->type, "message") == 0 &&
	    strcmp(part->subtype, "rfc822") == 0)
		st = parse_message(p, part, depth);
	else
		st = find_stop(p, part->body_off);
	part->body_len = content_end(p, &st, part->body_off) - part->body_off;
	part->body_lines = count_lines(p->data + part->body_off,
	    part->body_len);
	if (part->nchildren > 0)
		clamp_end(p, &part->children[part->nchildren - 1],
		    part->body_off + part->body_len);
	if (part->message != NULL)
		clamp_end(p, part->message, part->body_off + part->body_len);
	return st;
}

struct mime_part *
mime_parse(const char *data, size_t len)
{
	struct parser p;
	struct mime_part *root;

	memset(&p, 0, sizeof(p));
	p.data = data != NULL ? data : "";
	p.len = data != NULL ? len : 0;
	p.nparts = 1;
	root = xcalloc(1, sizeof(*root));
	(void)parse_part(&p, root, 0, 0, false);
	return root;
}

static void
free_params(struct mime_param *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

static void
free_part(struct mime_part *part)
{
	size_t i;

	free(part->type);
	free(part->subtype);
	free_params(part->params, part->nparams);
	free(part->id);
	free(part->description);
	free(part->encoding);
	free(part->md5);
	free(part->disposition);
	free_params(part->disp_params, part->ndisp_params);
	for (i = 0; i < part->nlanguages; i++)
		free(part->languages[i]);
	free(part->languages);
	free(part->location);
	for (i = 0; i < part->nchildren; i++)
		free_part(&part->children[i]);
	free(part->children);
	if (part->message != NULL) {
		free_part(part->message);
		free(part->message);
	}
}

void
mime_free(struct mime_part *root)
{
	if (root == NULL)
		return;
	free_part(root);
	free(root);
}

/* Section numbers (RFC 3501 6.4.5). */

static bool
is_multipart(const struct mime_part *part)
{
	return strcmp(part->type, "multipart") == 0;
}

const struct mime_part *
mime_part_find(const struct mime_part *root, const uint32_t *nums,
    size_t n)
{
	const struct mime_part *cur = root;
	bool in_msg = true;	/* cur is a message whose parts we number */
	size_t i;
	uint32_t k;

	for (i = 0; i < n; i++) {
		k = nums[i];
		if (k == 0)
			return NULL;
		if (!in_msg && !is_multipart(cur)) {
			/* a message/rfc822 part: number its message */
			if (cur->message == NULL)
				return NULL;
			cur = cur->message;
		}
		if (is_multipart(cur)) {
			if (k > cur->nchildren)
				return NULL;
			cur = &cur->children[k - 1];
		} else if (k != 1) {
			return NULL;
		}
		in_msg = false;
	}
	return cur;
}
