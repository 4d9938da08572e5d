/*
 * str.c: the one string type for bytes of any origin.
 *
 * Growth is geometric; every append keeps a terminating NUL after len so
 * str_c() is O(1). Nothing here trusts its input to be text.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"

void
str_reserve(str_t *s, size_t extra)
{
	size_t need, cap;

	if (extra > (size_t)-1 / 2 - s->len)
		fatal("string too large");
	need = s->len + extra + 1;
	if (need <= s->cap)
		return;
	cap = s->cap ? s->cap : 32;
	while (cap < need)
		cap *= 2;
	s->data = xrealloc(s->data, cap);
	s->cap = cap;
	/* a string that was empty has no terminator yet: str_c() and
	 * str_steal() on it must give "" */
	s->data[s->len] = '\0';
}

void
str_append_n(str_t *s, const void *data, size_t len)
{
	str_reserve(s, len);
	if (len > 0)
		memcpy(s->data + s->len, data, len);
	s->len += len;
	s->data[s->len] = '\0';
}

/* The decimal digits of v, without printf (IMAP answers that name
 * thousands of numbers: SORT, THREAD). */
void
str_append_u32(str_t *s, uint32_t v)
{
	char buf[10];
	size_t n = 0;

	do {
		buf[sizeof(buf) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	str_append_n(s, buf + sizeof(buf) - n, n);
}

void
str_append(str_t *s, const char *cstr)
{
	str_append_n(s, cstr, strlen(cstr));
}

void
str_append_c_grow(str_t *s, char c)
{
	str_append_n(s, &c, 1);
}

void
str_vprintf(str_t *s, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		fatal("str_vprintf: bad format");
	str_reserve(s, (size_t)n);
	vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
	s->len += (size_t)n;
}

void
str_printf(str_t *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_vprintf(s, fmt, ap);
	va_end(ap);
}

void
str_truncate(str_t *s, size_t len)
{
	if (len < s->len) {
		s->len = len;
		s->data[len] = '\0';
	}
}

const char *
str_c(const str_t *s)
{
	return s->data != NULL ? s->data : "";
}

char *
str_steal(str_t *s)
{
	char *p = s->data != NULL ? s->data : xstrdup("");

	s->data = NULL;
	s->len = s->cap = 0;
	return p;
}

void
str_free(str_t *s)
{
	free(s->data);
	s->data = NULL;
	s->len = s->cap = 0;
}

void
str_append_json(str_t *s, const char *cstr)
{
	const unsigned char *p;

	str_append_c(s, '"');
	for (p = (const unsigned char *)cstr; *p != '\0'; p++) {
		switch (*p) {
		case '"': str_append(s, "\\\""); break;
		case '\\': str_append(s, "\\\\"); break;
		case '\n': str_append(s, "\\n"); break;
		case '\r': str_append(s, "\\r"); break;
		case '\t': str_append(s, "\\t"); break;
		default:
			if (*p < 0x20)
				str_printf(s, "\\u%04x", *p);
			else
				str_append_c(s, (char)*p);
		}
	}
	str_append_c(s, '"');
}

void
str_lower(char *cstr)
{
	for (; *cstr != '\0'; cstr++)
		*cstr = (char)tolower((unsigned char)*cstr);
}

char *
str_trim(char *cstr)
{
	char *end;

	while (isspace((unsigned char)*cstr))
		cstr++;
	end = cstr + strlen(cstr);
	while (end > cstr && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return cstr;
}

bool
str_has_suffix(const char *cstr, const char *suffix)
{
	size_t a = strlen(cstr), b = strlen(suffix);

	return a >= b && strcmp(cstr + a - b, suffix) == 0;
}

size_t
str_utf8_next(const unsigned char *p, size_t left, unsigned *cp_r)
{
	unsigned c = p[0], cp, min;
	size_t need;

	if (c < 0x80) {
		*cp_r = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
		min = 0x80;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		min = 0x800;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		min = 0x10000;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (left < need + 1)
		return 0;
	for (size_t i = 1; i <= need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return need + 1;
}

bool
str_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned cp;

	while (len > 0) {
		size_t n = *p < 0x80 ? 1 : str_utf8_next(p, len, &cp);

		if (n == 0)
			return false;
		p += n;
		len -= n;
	}
	return true;
}

bool
str_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

int
str_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
