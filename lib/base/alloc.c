/*
 * alloc.c: x* allocation wrappers.
 *
 * Out of memory is treated as a broken environment: we log and exit rather
 * than thread an error through every caller (the OpenSMTPD/Postfix habit).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"

void *
xmalloc(size_t size)
{
	void *p = calloc(1, size ? size : 1);
	if (p == NULL)
		fatal("out of memory allocating %zu bytes", size);
	return p;
}

void *
xmalloc_fill(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (p == NULL)
		fatal("out of memory allocating %zu bytes", size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		fatal("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (q == NULL)
		fatal("out of memory reallocating %zu bytes", size);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		fatal("out of memory formatting a string");
	va_end(ap);
	return p;
}
