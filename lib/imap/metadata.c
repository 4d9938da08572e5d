/*
 * metadata.c: METADATA (RFC 5464) entry names and the text form of a
 * user's annotations (see metadata.h). A user has at most
 * IMAP_METADATA_ENTRIES_MAX entries, so lookups are linear.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/imap/metadata.h"

#define MD_HEADER "petrel-metadata 1\n"

static bool
prefix_is(const char *name, size_t len, const char *prefix, size_t *plen_r)
{
	size_t plen = strlen(prefix);

	if (len < plen || strncasecmp(name, prefix, plen) != 0 ||
	    (len > plen && name[plen] != '/'))
		return false;
	*plen_r = plen;
	return true;
}

bool
md_entry_valid(const char *name, size_t len, size_t max, bool prefix_ok,
    str_t *canon)
{
	size_t plen;

	if (name == NULL || len == 0 || len > max)
		return false;
	if (!prefix_is(name, len, "/private", &plen) &&
	    !prefix_is(name, len, "/shared", &plen))
		return false;
	if (len == plen && !prefix_ok)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		/* RFC 5464 3.2: no "*" or "%", no octet 0x00-0x19, nothing
		 * beyond ASCII; DEL and the rest of the controls too */
		if (ch < 0x20 || ch > 0x7e || ch == '*' || ch == '%')
			return false;
		if (ch == '/' && (i + 1 == len || name[i + 1] == '/'))
			return false;
	}
	if (canon != NULL) {
		size_t at = canon->len;

		str_append_n(canon, name, len);
		for (size_t i = at; i < canon->len; i++)
			if (canon->data[i] >= 'A' && canon->data[i] <= 'Z')
				canon->data[i] = (char)(canon->data[i] - 'A' +
				    'a');
	}
	return true;
}

bool
md_entry_under(const char *entry, const char *base, size_t depth)
{
	size_t blen = strlen(base), levels = 0;
	const char *rest;

	if (strncmp(entry, base, blen) != 0)
		return false;
	rest = entry + blen;
	if (*rest == '\0')
		return true;
	if (*rest != '/')
		return false;
	for (const char *p = rest; *p != '\0'; p++)
		if (*p == '/')
			levels++;
	return levels <= depth;
}

/* ---- the store ---- */

struct md_entry *
md_find(const struct md_store *st, const char *owner, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->v[i].name, name) == 0 &&
		    strcmp(st->v[i].owner, owner) == 0)
			return &st->v[i];
	return NULL;
}

static void
entry_free(struct md_entry *e)
{
	free(e->owner);
	free(e->name);
	free(e->value);
}

static void
set_value(struct md_entry *e, const char *value, size_t len)
{
	free(e->value);
	e->value = xmalloc(len + 1);
	if (len > 0)
		memcpy(e->value, value, len);
	e->value[len] = '\0';
	e->value_len = len;
}

void
md_set(struct md_store *st, const char *owner, const char *name,
    const char *value, size_t value_len)
{
	struct md_entry *e = md_find(st, owner, name);

	if (value == NULL) {
		if (e != NULL) {
			entry_free(e);
			*e = st->v[--st->n];
		}
		return;
	}
	if (e == NULL) {
		if (st->n == st->cap) {
			st->cap = st->cap != 0 ? 2 * st->cap : 16;
			st->v = xrealloc(st->v, st->cap * sizeof(*st->v));
		}
		e = &st->v[st->n++];
		memset(e, 0, sizeof(*e));
		e->owner = xstrdup(owner);
		e->name = xstrdup(name);
	}
	set_value(e, value, value_len);
}

size_t
md_drop_owner(struct md_store *st, const char *owner)
{
	size_t gone = 0;

	for (size_t i = 0; i < st->n;) {
		if (strcmp(st->v[i].owner, owner) == 0) {
			entry_free(&st->v[i]);
			st->v[i] = st->v[--st->n];
			gone++;
		} else {
			i++;
		}
	}
	return gone;
}

void
md_copy_owner(struct md_store *st, const char *from, const char *to)
{
	size_t n = st->n;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(st->v[i].owner, from) != 0)
			continue;
		/* md_set may move st->v: copy what it reads first */
		char *name = xstrdup(st->v[i].name);
		size_t len = st->v[i].value_len;
		char *value = xmalloc(len + 1);

		memcpy(value, st->v[i].value, len + 1);
		md_set(st, to, name, value, len);
		free(value);
		free(name);
	}
}

void
md_usage(const struct md_store *st, size_t *entries_r, size_t *bytes_r)
{
	size_t bytes = 0;

	for (size_t i = 0; i < st->n; i++)
		bytes += st->v[i].value_len;
	*entries_r = st->n;
	*bytes_r = bytes;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct md_entry *x = a, *y = b;
	int c = strcmp(x->owner, y->owner);

	return c != 0 ? c : strcmp(x->name, y->name);
}

void
md_sort(struct md_store *st)
{
	if (st->n > 1)
		qsort(st->v, st->n, sizeof(*st->v), entry_cmp);
}

void
md_free(struct md_store *st)
{
	for (size_t i = 0; i < st->n; i++)
		entry_free(&st->v[i]);
	free(st->v);
	memset(st, 0, sizeof(*st));
}

/* ---- the text form ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
owner_valid(const char *p, size_t len)
{
	if (len == 1 && p[0] == '-')
		return true;
	/* RFC 8474 objectid: 1-255 of letters, digits, '-', '_' */
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* One line without its LF: 0 ok (added), -1 skipped. */
static int
parse_line(struct md_store *st, const char *p, size_t len)
{
	const char *t1 = memchr(p, '\t', len), *t2, *v;
	str_t name = STR_INIT, value = STR_INIT;
	char *owner;
	size_t vlen;
	int ret = -1;

	if (t1 == NULL)
		return -1;
	t2 = memchr(t1 + 1, '\t', len - (size_t)(t1 + 1 - p));
	if (t2 == NULL || !owner_valid(p, (size_t)(t1 - p)))
		return -1;
	if (!md_entry_valid(t1 + 1, (size_t)(t2 - t1 - 1),
	    IMAP_METADATA_NAME_MAX, false, &name) ||
	    memcmp(str_c(&name), t1 + 1, name.len) != 0)
		goto out;	/* not canonical: not ours */
	v = t2 + 1;
	vlen = len - (size_t)(v - p);
	for (size_t i = 0; i < vlen; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch == '%') {
			int hi, lo;

			if (i + 2 >= vlen)
				goto out;
			hi = hexval(v[i + 1]);
			lo = hexval(v[i + 2]);
			if (hi < 0 || lo < 0)
				goto out;
			str_append_c(&value, (char)(hi * 16 + lo));
			i += 2;
		} else if (ch < 0x20 || ch == 0x7f) {
			goto out;
		} else {
			str_append_c(&value, (char)ch);
		}
	}
	owner = xstrndup(p, (size_t)(t1 - p));
	md_set(st, owner, str_c(&name), value.len > 0 ? value.data : "",
	    value.len);
	free(owner);
	ret = 0;
out:
	str_free(&name);
	str_free(&value);
	return ret;
}

void
md_parse(struct md_store *st, const char *text, size_t len,
    size_t *skipped_r)
{
	size_t skipped = 0, hlen = strlen(MD_HEADER);
	const char *p = text, *end = text + len;

	if (len >= hlen && memcmp(text, MD_HEADER, hlen) == 0)
		p += hlen;
	else if (len > 0)
		skipped++;	/* no header: the lines may still be ours */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

		/* a last line without its LF was cut short: not taken */
		if (nl == NULL || (n > 0 && parse_line(st, p, n) < 0))
			skipped++;
		p += n + (nl != NULL ? 1 : 0);
	}
	if (skipped_r != NULL)
		*skipped_r = skipped;
}

void
md_format(const struct md_store *st, str_t *out)
{
	static const char hex[] = "0123456789ABCDEF";

	str_append(out, MD_HEADER);
	for (size_t i = 0; i < st->n; i++) {
		const struct md_entry *e = &st->v[i];

		str_append(out, e->owner);
		str_append_c(out, '\t');
		str_append(out, e->name);
		str_append_c(out, '\t');
		for (size_t k = 0; k < e->value_len; k++) {
			unsigned char ch = (unsigned char)e->value[k];

			if (ch < 0x20 || ch == 0x7f || ch == '%') {
				str_append_c(out, '%');
				str_append_c(out, hex[ch >> 4]);
				str_append_c(out, hex[ch & 15]);
			} else {
				str_append_c(out, (char)ch);
			}
		}
		str_append_c(out, '\n');
	}
}
