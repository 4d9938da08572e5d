/*
 * spool.c: message bodies during reception (see spool.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/queue/spool.h"

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
		if (s->fd < 0 || write_full(s->fd, s->mem.data, s->mem.len) < 0)
			return err_fail(error_r, errno, "cannot spool to %s: %s",
			    s->tmpdir, strerror(errno));
		str_free(&s->mem);
	}
	if (write_full(s->fd, data, len) < 0)
		return err_fail(error_r, errno, "spool write: %s",
		    strerror(errno));
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
	return err_fail(error_r, errno, "copy: %s", strerror(errno));
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

struct header_scan {
	const char *name;
	size_t nlen;
	char head[80];		/* the start of the current line */
	size_t hlen;
	bool bol, found, done;
};

static void
header_scan(struct header_scan *h, const char *p, size_t len)
{
	for (size_t i = 0; i < len && !h->done; i++) {
		char c = p[i];

		if (h->bol && c == '\n') {
			h->done = true;		/* the empty line */
			break;
		}
		h->bol = false;
		if (c == '\n') {
			h->bol = true;
			h->hlen = 0;
			continue;
		}
		if (h->hlen < sizeof(h->head)) {
			h->head[h->hlen++] = c;
			if (h->hlen == h->nlen + 1 && h->head[h->nlen] == ':' &&
			    strncasecmp(h->head, h->name, h->nlen) == 0) {
				h->found = h->done = true;
				break;
			}
		}
	}
}

bool
spool_header_has(struct spool *s, const char *name)
{
	struct header_scan h;
	char buf[65536];
	off_t off = 0;

	memset(&h, 0, sizeof(h));
	h.name = name;
	h.nlen = strlen(name);
	h.bol = true;
	if (h.nlen + 1 > sizeof(h.head))
		return false;
	if (s->fd < 0) {
		header_scan(&h, s->mem.data ? s->mem.data : "", s->mem.len);
		return h.found;
	}
	while (!h.done) {
		ssize_t n = pread(s->fd, buf, sizeof(buf), off);

		if (n <= 0)
			break;
		header_scan(&h, buf, (size_t)n);
		off += n;
	}
	return h.found;
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
