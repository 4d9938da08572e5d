/*
 * tags.c: RFC 6376 3.2 tag lists, for the ARC fields and the key records
 * (lib/trust/arc.c). libopendkim parses its own signatures but exposes no
 * tag-list parser, hence this one.
 *
 * Trust: the text is the sender's (a header field) or whoever answers
 * for its domain (a key record): every span stays inside it, at most
 * TAGS_MAX tags are kept.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/trust/tags.h"

static bool
fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
digit(char c)
{
	return c >= '0' && c <= '9';
}

int
tags_parse(const char *text, size_t len, struct tag_list *tl)
{
	size_t i = 0;

	tl->n = 0;
	while (i < len) {
		size_t s = i, e, ns, ne, vs, ve;

		while (i < len && text[i] != ';')
			i++;
		e = i;		/* the spec is text[s, e) */
		if (i < len)
			i++;	/* past ';' */
		while (s < e && fws(text[s]))
			s++;
		if (s == e) {
			/* empty: allowed only after the last ';' */
			if (e == len)
				break;
			return -1;
		}
		ns = s;
		if (!alpha(text[ns]))
			return -1;
		ne = ns + 1;
		while (ne < e && (alpha(text[ne]) || digit(text[ne]) ||
		    text[ne] == '_'))
			ne++;
		vs = ne;
		while (vs < e && fws(text[vs]))
			vs++;
		if (vs >= e || text[vs] != '=')
			return -1;
		vs++;
		while (vs < e && fws(text[vs]))
			vs++;
		ve = e;
		while (ve > vs && fws(text[ve - 1]))
			ve--;
		for (size_t k = 0; k < tl->n; k++)
			if (tl->t[k].nlen == ne - ns &&
			    memcmp(tl->t[k].name, text + ns, ne - ns) == 0)
				return -1;
		if (tl->n == TAGS_MAX)
			return -1;
		tl->t[tl->n].name = text + ns;
		tl->t[tl->n].nlen = ne - ns;
		tl->t[tl->n].value = text + vs;
		tl->t[tl->n].vlen = ve - vs;
		tl->n++;
	}
	return 0;
}

const struct tag *
tags_get(const struct tag_list *tl, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < tl->n; i++)
		if (tl->t[i].nlen == n && memcmp(tl->t[i].name, name, n) == 0)
			return &tl->t[i];
	return NULL;
}

bool
tag_is(const struct tag *t, const char *s)
{
	return t != NULL && t->vlen == strlen(s) &&
	    memcmp(t->value, s, t->vlen) == 0;
}

char *
tag_squeeze(const struct tag *t)
{
	char *out = xmalloc(t->vlen + 1);
	size_t o = 0;

	for (size_t i = 0; i < t->vlen; i++)
		if (!fws(t->value[i]))
			out[o++] = t->value[i];
	out[o] = '\0';
	return out;
}
