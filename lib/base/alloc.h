#ifndef PETREL_ALLOC_H
#define PETREL_ALLOC_H
/* Allocation wrappers: every allocation is zeroed, running out of memory is
 * fatal (there is no sane recovery mid-protocol), and free-through-pointer
 * helpers leave NULL behind. */
#include <stddef.h>

void *xmalloc(size_t size);
/* The one exception to zeroing: a buffer the caller fills whole at once
 * (read() into it, a memcpy), where zeroing megabytes first only costs. */
void *xmalloc_fill(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define xfree(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

#endif
