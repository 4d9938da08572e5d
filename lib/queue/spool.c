/*
 * spool.c: message bodies during reception (see spool.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/queue/spool.h"

static char spool_err[256];


void
spool_init(struct spool *s, const char *tmpdir)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->tmpdir = tmpdir;
}

int
spool_append(struct spool *s, const void *data, size_t len,
    const char **error_r)
{
	if (s->fd < 0 && s->mem.len + len <= SPOOL_MEM_MAX) {
		str_append_n(&s->mem, data, len);
		s->size += len;
		return 0;
	}
	if (s->fd < 0) {
		s->fd = open(s->tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (s->fd < 0 || write_full(s->fd, s->mem.data, s->mem.len) < 0) {
			snprintf(spool_err, sizeof(spool_err),
			    "cannot spool to %s: %s", s->tmpdir,
			    strerror(errno));
			*error_r = spool_err;
			return -1;
		}
		str_free(&s->mem);
	}
	if (write_full(s->fd, data, len) < 0) {
		snprintf(spool_err, sizeof(spool_err), "spool write: %s",
		    strerror(errno));
		*error_r = spool_err;
		return -1;
	}
	s->size += len;
	return 0;
}

int
spool_copy_to(struct spool *s, int fd, const char **error_r)
{
	char buf[65536];
	off_t off = 0;

	if (s->fd < 0) {
		if (write_full(fd, s->mem.data ? s->mem.data : "", s->mem.len) < 0)
			goto fail;
		return 0;
	}
	for (;;) {
		ssize_t n = pread(s->fd, buf, sizeof(buf), off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			return 0;
		if (write_full(fd, buf, (size_t)n) < 0)
			goto fail;
		off += n;
	}
fail:
	snprintf(spool_err, sizeof(spool_err), "copy: %s", strerror(errno));
	*error_r = spool_err;
	return -1;
}

void
spool_reset(struct spool *s)
{
	const char *tmpdir = s->tmpdir;

	str_free(&s->mem);
	if (s->fd >= 0)
		close(s->fd);
	spool_init(s, tmpdir);
}

bool
spool_header_has(struct spool *s, const char *name)
{
	char buf[65536];
	const char *p, *end;
	size_t len, nlen = strlen(name);

	if (s->fd < 0) {
		p = s->mem.data ? s->mem.data : "";
		len = s->mem.len;
	} else {
		ssize_t n = pread(s->fd, buf, sizeof(buf), 0);

		if (n < 0)
			return false;
		p = buf;
		len = (size_t)n;
	}
	end = p + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (llen == 0)
			break;		/* end of the header section */
		if (llen > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0)
			return true;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return false;
}

int
spool_each(struct spool *s, int (*fn)(void *ctx, const void *data,
    size_t len), void *ctx)
{
	char buf[65536];
	off_t off = 0;

	if (s->fd < 0)
		return s->mem.len == 0 ? 0 : fn(ctx, s->mem.data, s->mem.len);
	for (;;) {
		ssize_t n = pread(s->fd, buf, sizeof(buf), off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (fn(ctx, buf, (size_t)n) < 0)
			return -1;
		off += n;
	}
}
