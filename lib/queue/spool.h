#ifndef PETREL_SPOOL_H
#define PETREL_SPOOL_H
/*
 * A message body being received: kept in memory up to SPOOL_MEM_MAX,
 * then spilled to an unlinked temporary file, so a 50 MB message costs a
 * file, not 50 MB of RAM per session. The spool is transient (never
 * fsync'd): durability comes from the maildir or queue file written from
 * it before the 250 reply.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

struct spool {
	str_t mem;
	int fd;			/* -1 while in memory */
	uint64_t size;
	const char *tmpdir;	/* where to spill */
};

void spool_init(struct spool *s, const char *tmpdir);
int spool_append(struct spool *s, const void *data, size_t len,
    const char **error_r);
/* Pass the whole body, in chunks, to fn (which returns 0 or -1). */
int spool_each(struct spool *s, int (*fn)(void *ctx, const void *data,
    size_t len), void *ctx);
/* Write the whole body to fd (with write(2), handling short writes). */
int spool_copy_to(struct spool *s, int fd, const char **error_r);
void spool_reset(struct spool *s);
/* Does the message's header section (before the first empty line, LF
 * line ends) have a field with this name (case-insensitive)? */
bool spool_header_has(struct spool *s, const char *name);

#endif
