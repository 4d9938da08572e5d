/*
 * mbox_cache.c: petrel-cache, the append-only store of per-message
 * strings (ENVELOPE, BODYSTRUCTURE, BODY, the PREVIEW text) of a folder.
 *
 * Layout (integers little-endian):
 *   file header, 32 bytes: "PTRLCCH1", u32 uidvalidity, u32 id,
 *     16 zero bytes
 *   records, each: u32 magic "PTRC", u8 kind, 3 zero bytes, u32 uid,
 *     u32 len, u64 prev, u64 hash, then len bytes of value
 * hash is mbox_hash64() of the first 24 header bytes chained with the
 * value. prev is the offset of the previous record of the same uid (0:
 * none), so each message's records form a chain, newest first; the
 * index keeps the newest offset per message (mbox_msg.cache_off) and the
 * id of the cache file the offsets belong to. A get is one or a few
 * pread()s; nothing ever reads the whole file except a compaction.
 *
 * Every record is checked before use (magic, uid, length, hash), so a
 * torn tail, garbage, or an offset into another cache file is a miss,
 * never wrong data: the value for (uidvalidity, uid) never changes, and
 * a cache whose header has another UIDVALIDITY is replaced.
 * Appends are single O_APPEND write()s, without the lock; creating and
 * compacting the file are done under it. When more messages with
 * records have been removed than are left (counted in the index), the
 * live records are copied to a new file (new id) that replaces the old.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/store/mbox_int.h"

#define CACHE_MAGIC "PTRLCCH1"
#define CACHE_HDR 32
#define REC_MAGIC 0x43525450u	/* "PTRC" */
#define REC_HDR 32
/* A value larger than this is not cached (BODYSTRUCTURE of absurd
 * MIME trees). */
#define VALUE_MAX (16u << 20)
/* Records followed per get before giving up (4 kinds, a few rewrites). */
#define CHAIN_MAX 32
/* Compact when at least this many messages' records are dead, and they
 * outnumber the live ones. */
#define DEAD_MIN 128
/* Compaction writes in chunks of this size. */
#define COMPACT_CHUNK (1024 * 1024)
/* Pending records are appended when they reach this size. */
#define PEND_MAX (256 * 1024)

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void
put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static char *
cache_path(const struct mbox *mb)
{
	return xasprintf("%s/%s", mb->path, MBOX_CACHE_NAME);
}

void
mbox_cache_close(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;

	if (p->cache_fd >= 0)
		close(p->cache_fd);
	p->cache_fd = -1;
	p->cache_fd_id = 0;
}

/* Forget every offset: they belong to another cache file. */
static void
cache_reset_offsets(struct mbox *mb, uint32_t id)
{
	struct mbox_priv *p = mb->priv;
	bool any = false;
	size_t i;

	for (i = 0; i < mb->n; i++) {
		if (mbox_msg(mb, i)->cache_off != 0)
			any = true;
		mbox_msg(mb, i)->cache_off = 0;
	}
	if (any || p->cache_id != id)
		p->dirty = p->rewrite = true;	/* every entry changed */
	p->cache_id = id;
}

/* Open petrel-cache if its header is ours. 0 ok, -1 missing or not
 * usable (*bad: it exists but is garbage or of another UIDVALIDITY). */
static int
cache_open(struct mbox *mb, bool *bad)
{
	struct mbox_priv *p = mb->priv;
	char *path = cache_path(mb);
	unsigned char hdr[CACHE_HDR];
	uint32_t id;
	ssize_t r;
	int fd;

	*bad = false;
	fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT) {
			*bad = errno == ELOOP;
			log_warn("open(%s) failed: %s", path, strerror(errno));
		}
		free(path);
		return -1;
	}
	r = pread(fd, hdr, sizeof(hdr), 0);
	if (r != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr, CACHE_MAGIC, 8) != 0 ||
	    get32(hdr + 8) != mb->uidvalidity || get32(hdr + 12) == 0) {
		if (r < 0)
			log_warn("read(%s) failed: %s", path, strerror(errno));
		*bad = r >= 0;
		close(fd);
		free(path);
		return -1;
	}
	free(path);
	id = get32(hdr + 12);
	mbox_cache_close(mb);
	p->cache_fd = fd;
	p->cache_fd_id = id;
	if (id != p->cache_id)
		cache_reset_offsets(mb, id);
	return 0;
}

/* Write a fresh cache file with only a header to tmp. fd returned
 * (O_WRONLY), or -1. */
static int
cache_new_file(const struct mbox *mb, const char *tmp, uint32_t id)
{
	unsigned char hdr[CACHE_HDR];
	int fd;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, CACHE_MAGIC, 8);
	put32(hdr + 8, mb->uidvalidity);
	put32(hdr + 12, id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		log_warn("open(%s) failed: %s", tmp, strerror(errno));
		return -1;
	}
	if (write_full(fd, hdr, sizeof(hdr)) < 0) {
		log_warn("write(%s) failed: %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		return -1;
	}
	return fd;
}

/* Make sure the cache is open, creating (or replacing a garbage one)
 * under the lock. 0 ok, -1 no cache. */
static int
cache_ensure(struct mbox *mb, bool create)
{
	char *path, *tmp;
	const char *error;
	bool bad;
	int fd, ret = -1;

	if (mbox_priv(mb)->cache_fd >= 0)
		return 0;
	if (mbox_priv(mb)->cache_failed)
		return -1;
	if (cache_open(mb, &bad) == 0)
		return 0;
	if (!create)
		return -1;
	if (mbox_lock(mb, &error) < 0) {
		log_warn("%s", error);
		return -1;
	}
	if (cache_open(mb, &bad) == 0) {
		ret = 0;	/* someone else made it meanwhile */
		goto out;
	}
	path = cache_path(mb);
	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	fd = cache_new_file(mb, tmp, mbox_random_id());
	if (fd >= 0) {
		if (close(fd) < 0 || rename(tmp, path) < 0) {
			log_warn("creating %s failed: %s", path,
			    strerror(errno));
			(void)unlink(tmp);
		} else {
			ret = cache_open(mb, &bad);
		}
	}
	free(tmp);
	free(path);
out:
	if (ret < 0)
		mbox_priv(mb)->cache_failed = true;
	mbox_unlock(mb);
	return ret;
}

/* Record header for (kind, uid, value, prev). */
static void
rec_header(unsigned char *h, int kind, uint32_t uid, const char *value,
    uint32_t len, uint64_t prev)
{
	memset(h, 0, REC_HDR);
	put32(h, REC_MAGIC);
	h[4] = (unsigned char)kind;
	put32(h + 8, uid);
	put32(h + 12, len);
	put64(h + 16, prev);
	put64(h + 24, mbox_hash64(mbox_hash64(0, h, 24), value, len));
}

/* Value of the newest record of kind in the chain at off (uid's), or
 * NULL. */
static char *
cache_read(int fd, uint64_t off, uint32_t uid, int kind)
{
	unsigned char h[REC_HDR];
	uint32_t len;
	uint64_t prev;
	char *value;
	int steps;

	for (steps = 0; steps < CHAIN_MAX && off >= CACHE_HDR; steps++) {
		if (pread(fd, h, sizeof(h), (off_t)off) != (ssize_t)sizeof(h) ||
		    get32(h) != REC_MAGIC || get32(h + 8) != uid)
			return NULL;
		len = get32(h + 12);
		prev = get64(h + 16);
		if (h[4] == kind) {
			if (len > VALUE_MAX)
				return NULL;
			value = xmalloc((size_t)len + 1);
			if (pread(fd, value, len, (off_t)(off + REC_HDR)) !=
			    (ssize_t)len ||
			    mbox_hash64(mbox_hash64(0, h, 24), value, len) !=
			    get64(h + 24)) {
				free(value);
				return NULL;
			}
			value[len] = '\0';
			return value;
		}
		if (prev >= off)
			return NULL;
		off = prev;
	}
	return NULL;
}

char *
mbox_cache_get(struct mbox *mb, size_t i, enum mbox_cache_kind kind)
{
	struct mbox_msg *m;

	if (i >= mb->n || (int)kind < 0 || kind >= MBOX_CACHE_KINDS)
		return NULL;
	m = mbox_msg(mb, i);
	if (m->cache_pend) {
		mbox_cache_flush(mb);
		m = mbox_msg(mb, i);
	}
	if (m->cache_off == 0)
		return NULL;	/* expunged ones too, until mbox_purge */
	if (cache_ensure(mb, false) < 0 || m->cache_off == 0)
		return NULL;
	return cache_read(mbox_priv(mb)->cache_fd, m->cache_off, m->uid,
	    (int)kind);
}

void
mbox_cache_put(struct mbox *mb, size_t i, enum mbox_cache_kind kind,
    const char *value)
{
	struct mbox_priv *p = mb->priv;
	struct mbox_msg *m;
	unsigned char h[REC_HDR];
	size_t len;

	if (i >= mb->n || (int)kind < 0 || kind >= MBOX_CACHE_KINDS ||
	    value == NULL)
		return;
	m = mbox_msg(mb, i);
	len = strlen(value);
	if (m->expunged || len > VALUE_MAX)
		return;
	if (cache_ensure(mb, true) < 0)
		return;
	if (m->cache_pend) {
		mbox_cache_flush(mb);	/* prev must be a real offset */
		m = mbox_msg(mb, i);
	}
	if (p->npend == p->pend_cap) {
		p->pend_cap = p->pend_cap < 64 ? 64 : p->pend_cap * 2;
		p->pend_uid = xrealloc(p->pend_uid,
		    p->pend_cap * sizeof(*p->pend_uid));
		p->pend_off = xrealloc(p->pend_off,
		    p->pend_cap * sizeof(*p->pend_off));
	}
	p->pend_uid[p->npend] = m->uid;
	p->pend_off[p->npend] = p->cache_pend.len;
	p->npend++;
	m->cache_pend = true;
	rec_header(h, (int)kind, m->uid, value, (uint32_t)len, m->cache_off);
	str_append_n(&p->cache_pend, h, sizeof(h));
	str_append_n(&p->cache_pend, value, len);
	if (p->cache_pend.len >= PEND_MAX)
		mbox_cache_flush(mb);
}

void
mbox_cache_flush(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	size_t total = p->cache_pend.len, k;
	ssize_t w;
	off_t end;
	long i;

	if (p->npend == 0)
		return;
	if (p->cache_fd < 0)
		goto out;	/* closed meanwhile (replaced): drop them */
	/* one write: appends from other handles cannot interleave */
	w = write(p->cache_fd, p->cache_pend.data, total);
	if (w != (ssize_t)total) {
		if (w < 0)
			log_warn("write(%s/%s) failed: %s", mb->path,
			    MBOX_CACHE_NAME, strerror(errno));
		goto out;
	}
	end = lseek(p->cache_fd, 0, SEEK_CUR);
	if (end < (off_t)(CACHE_HDR + total)) {
		if (end < 0)
			log_warn("lseek(%s/%s) failed: %s", mb->path,
			    MBOX_CACHE_NAME, strerror(errno));
		goto out;
	}
	for (k = 0; k < p->npend; k++) {
		i = mbox_find_uid(mb, p->pend_uid[k]);
		if (i < 0 || mbox_msg(mb, i)->expunged)
			continue;
		mbox_msg(mb, i)->cache_off = (uint64_t)end - total +
		    p->pend_off[k];
		mbox_chg_add(mb, p->pend_uid[k]);
	}
out:
	for (k = 0; k < p->npend; k++) {
		i = mbox_find_uid(mb, p->pend_uid[k]);
		if (i >= 0)
			mbox_msg(mb, i)->cache_pend = false;
	}
	mbox_cache_free(mb);
}

void
mbox_cache_free(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;

	/* an idle session keeps nothing */
	str_free(&p->cache_pend);
	free(p->pend_uid);
	free(p->pend_off);
	p->pend_uid = NULL;
	p->pend_off = NULL;
	p->npend = p->pend_cap = 0;
}

/* Copy the live records into tmp (fd), in chunks. New offsets go to
 * offs. 0 ok, -1 write error. */
static int
compact_copy(struct mbox *mb, int fd, uint64_t *offs)
{
	str_t buf = STR_INIT;
	unsigned char h[REC_HDR];
	uint64_t pos = CACHE_HDR, prev;
	size_t i, len;
	char *value;
	int kind, ret = 0;

	for (i = 0; i < mb->n && ret == 0; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);

		if (m->expunged || m->cache_off == 0)
			continue;
		prev = 0;
		for (kind = 0; kind < MBOX_CACHE_KINDS; kind++) {
			value = cache_read(mbox_priv(mb)->cache_fd, m->cache_off,
			    m->uid, kind);
			if (value == NULL)
				continue;
			len = strlen(value);
			rec_header(h, kind, m->uid, value, (uint32_t)len, prev);
			str_append_n(&buf, h, sizeof(h));
			str_append_n(&buf, value, len);
			free(value);
			prev = pos;
			pos += REC_HDR + len;
		}
		offs[i] = prev;
		if (buf.len >= COMPACT_CHUNK) {
			ret = write_full(fd, buf.data, buf.len);
			str_truncate(&buf, 0);
		}
	}
	if (ret == 0 && buf.len > 0)
		ret = write_full(fd, buf.data, buf.len);
	str_free(&buf);
	return ret;
}

void
mbox_cache_maybe_compact(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	char *path, *tmp;
	uint64_t *offs;
	size_t i, live = 0;
	uint32_t id;
	bool bad;
	int fd;

	if (p->cache_dead < DEAD_MIN || p->cache_dead < p->cache_recount_at)
		return;
	for (i = 0; i < mb->n; i++) {
		if (!mbox_msg(mb, i)->expunged && mbox_msg(mb, i)->cache_off != 0)
			live++;
	}
	if (p->cache_dead <= live) {
		/* count again only when twice as many are dead: not a walk
		 * of the folder at every sync */
		p->cache_recount_at = p->cache_dead * 2;
		return;
	}
	p->cache_recount_at = 0;
	if (cache_ensure(mb, false) < 0) {
		p->cache_dead = 0;	/* nothing to compact */
		p->dirty = true;
		return;
	}
	path = cache_path(mb);
	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	id = mbox_random_id();
	offs = xcalloc(mb->n + 1, sizeof(*offs));
	fd = cache_new_file(mb, tmp, id);
	if (fd < 0)
		goto out;
	if (compact_copy(mb, fd, offs) < 0 || close(fd) < 0) {
		log_warn("writing %s failed: %s", tmp, strerror(errno));
		(void)unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) < 0) {
		log_warn("rename(%s) failed: %s", tmp, strerror(errno));
		(void)unlink(tmp);
		goto out;
	}
	mbox_cache_close(mb);
	for (i = 0; i < mb->n; i++)
		mbox_msg(mb, i)->cache_off = offs[i];
	p->cache_id = id;
	p->cache_dead = 0;
	p->dirty = p->rewrite = true;	/* every offset moved */
	(void)cache_open(mb, &bad);
out:
	free(offs);
	free(tmp);
	free(path);
}
