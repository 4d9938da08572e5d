/*
 * mbox_sort.c: petrel-sort, the per-folder file of sort records: one
 * short opaque record per message (the IMAP SORT and THREAD keys that
 * lib/imap/sort.c encodes: sent date, base subject, addresses, display
 * names, Message-ID and References), so that a SORT or THREAD, in any
 * session, reads one file instead of every message's cached ENVELOPE
 * or header.
 *
 * Layout (integers little-endian):
 *   file header, 16 bytes: "PTRLSRT1", u32 uidvalidity, 4 zero bytes
 *   records, each: u32 magic "PTRS", u32 uid, u32 len, u32 check, then
 *     len bytes of record
 * check is the low half of mbox_hash64() of the first 12 header bytes
 * chained with the record. A later record of a uid replaces an earlier
 * one. The records of a (uidvalidity, uid) describe one message, which
 * never changes, so any copy is right.
 *
 * Trust: anyone who can write the maildir chooses these bytes. The file
 * is read whole only up to SORT_FILE_MAX bytes; reading stops at the
 * first record that does not check out (a torn append, garbage), and a
 * file with another UIDVALIDITY, a bad header or a bad record is
 * rewritten by the next command that has records to add. Nothing in a
 * record is trusted by this file: the decoder (lib/imap/sort.c) checks
 * every length.
 *
 * Writers are job threads (SORT, THREAD): new records are appended in
 * one O_APPEND write(), without the lock; creating the file, and
 * rewriting it with only the live records when the records of removed
 * messages outnumber them (or it was damaged), are done under the
 * folder lock through a temporary file and rename(). It is only a
 * cache: a failure to write it is logged and otherwise ignored, and a
 * missing file is made again.
 *
 * A process keeps the contents of the files it read and checked (at most
 * SORT_CACHE_FILES of them, SORT_CACHE_BYTES in all, the least recently
 * used going first), shared read-only by its sessions and job threads: a
 * SORT or THREAD whose file has the identity it had then (device, inode,
 * size, modification and change times) reads nothing and checks nothing
 * again. Any append or rewrite changes that identity.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/store/mbox_int.h"

#define SORT_MAGIC "PTRLSRT1"
#define SORT_HDR 16
#define SREC_MAGIC 0x53525450u	/* "PTRS" */
#define SREC_HDR 16
/* A file larger than this is not read (and is rewritten): some 200
 * bytes a message, so about a million messages. */
#define SORT_FILE_MAX ((size_t)256 << 20)
/* Rewrite when at least this many records are dead and they outnumber
 * the live ones. */
#define SORT_DEAD_MIN 64
/* The process's cache of checked files (see the top). */
#define SORT_CACHE_FILES 16
#define SORT_CACHE_BYTES ((size_t)64 << 20)

struct sort_cached {
	char *path;		/* NULL: a free slot */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	uint32_t uidvalidity;
	char *buf;
	size_t len;
	unsigned refs;		/* loads using buf */
	bool gone;		/* replaced: freed at the last release */
	uint64_t used;		/* for LRU */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sort_cached cache[SORT_CACHE_FILES];
static size_t cache_bytes;
static uint64_t cache_tick;

static bool
same_file(const struct sort_cached *c, const char *path,
    const struct stat *st, uint32_t uidvalidity)
{
	return c->path != NULL && !c->gone && strcmp(c->path, path) == 0 &&
	    c->dev == st->st_dev && c->ino == st->st_ino &&
	    c->size == st->st_size && c->uidvalidity == uidvalidity &&
	    c->mtime.tv_sec == st->st_mtim.tv_sec &&
	    c->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	    c->ctime.tv_sec == st->st_ctim.tv_sec &&
	    c->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static void
cache_free_slot(struct sort_cached *c)
{
	cache_bytes -= c->len;
	free(c->path);
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

/* The cached contents of path as st describes it, with a reference
 * taken; NULL if not there. */
static struct sort_cached *
cache_get(const char *path, const struct stat *st, uint32_t uidvalidity)
{
	struct sort_cached *hit = NULL;

	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < SORT_CACHE_FILES && hit == NULL; i++)
		if (same_file(&cache[i], path, st, uidvalidity))
			hit = &cache[i];
	if (hit != NULL) {
		hit->refs++;
		hit->used = ++cache_tick;
	}
	pthread_mutex_unlock(&cache_lock);
	return hit;
}

/* Keep buf (checked, len bytes, from the file st describes) and take a
 * reference; NULL (buf still the caller's) when it does not fit. Older
 * contents of the same path go. */
static struct sort_cached *
cache_put(const char *path, const struct stat *st, uint32_t uidvalidity,
    char *buf, size_t len)
{
	struct sort_cached *slot = NULL;

	if (len > SORT_CACHE_BYTES / 2)
		return NULL;
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < SORT_CACHE_FILES; i++) {
		struct sort_cached *c = &cache[i];

		if (c->path == NULL || strcmp(c->path, path) != 0)
			continue;
		if (c->refs == 0)
			cache_free_slot(c);
		else
			c->gone = true;
	}
	for (;;) {
		struct sort_cached *lru = NULL;

		slot = NULL;
		for (size_t i = 0; i < SORT_CACHE_FILES; i++) {
			struct sort_cached *c = &cache[i];

			if (c->path == NULL) {
				if (slot == NULL)
					slot = c;
			} else if (c->refs == 0 &&
			    (lru == NULL || c->used < lru->used))
				lru = c;
		}
		if (slot != NULL && cache_bytes + len <= SORT_CACHE_BYTES)
			break;
		if (lru == NULL) {
			slot = NULL;	/* all in use: not kept */
			break;
		}
		cache_free_slot(lru);
	}
	if (slot != NULL) {
		slot->path = xstrdup(path);
		slot->dev = st->st_dev;
		slot->ino = st->st_ino;
		slot->size = st->st_size;
		slot->mtime = st->st_mtim;
		slot->ctime = st->st_ctim;
		slot->uidvalidity = uidvalidity;
		slot->buf = buf;
		slot->len = len;
		slot->refs = 1;
		slot->used = ++cache_tick;
		cache_bytes += len;
	}
	pthread_mutex_unlock(&cache_lock);
	return slot;
}

static void
cache_release(struct sort_cached *c)
{
	pthread_mutex_lock(&cache_lock);
	if (--c->refs == 0 && c->gone)
		cache_free_slot(c);
	pthread_mutex_unlock(&cache_lock);
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint32_t
rec_check(const unsigned char *h, const void *rec, size_t len)
{
	return (uint32_t)mbox_hash64(mbox_hash64(0, h, 12), rec, len);
}

static void
rec_header(unsigned char *h, uint32_t uid, const void *rec, uint32_t len)
{
	put32(h, SREC_MAGIC);
	put32(h + 4, uid);
	put32(h + 8, len);
	put32(h + 12, rec_check(h, rec, len));
}

static int
sortrec_parse(const unsigned char *buf, size_t len, uint32_t uidvalidity,
    bool check, mbox_sortrec_fn *fn, void *ctx)
{
	size_t off = SORT_HDR;

	if (len < SORT_HDR || memcmp(buf, SORT_MAGIC, 8) != 0 ||
	    get32(buf + 8) != uidvalidity || get32(buf + 12) != 0)
		return -1;
	while (off < len) {
		const unsigned char *h = buf + off;
		uint32_t rlen;

		if (len - off < SREC_HDR || get32(h) != SREC_MAGIC)
			return -1;
		rlen = get32(h + 8);
		if (rlen > MBOX_SORTREC_MAX || rlen > len - off - SREC_HDR ||
		    (check && rec_check(h, h + SREC_HDR, rlen) !=
		    get32(h + 12)))
			return -1;
		fn(ctx, get32(h + 4), h + SREC_HDR, rlen);
		off += SREC_HDR + rlen;
	}
	return 0;
}

int
mbox_sortrec_parse(const unsigned char *buf, size_t len,
    uint32_t uidvalidity, mbox_sortrec_fn *fn, void *ctx)
{
	return sortrec_parse(buf, len, uidvalidity, true, fn, ctx);
}

static void
count_one(void *ctx, uint32_t uid, const unsigned char *rec, size_t len)
{
	(void)uid;
	(void)rec;
	(void)len;
	(*(size_t *)ctx)++;
}

static char *
sort_path(const struct mbox *mb)
{
	return xasprintf("%s/%s", mb->path, MBOX_SORT_NAME);
}

static void
load_one(void *ctx, uint32_t uid, const unsigned char *rec, size_t len)
{
	struct mbox_sortrecs *sr = ctx;
	long i;

	sr->nrecs++;
	/* records are mostly in UID order: try the one after the last */
	if (sr->next < sr->n && mbox_msg(sr->mb, sr->next)->uid == uid)
		i = (long)sr->next;
	else
		i = mbox_find_uid(sr->mb, uid);
	if (i < 0 || (size_t)i >= sr->n || mbox_msg(sr->mb, i)->expunged)
		return;
	sr->next = (size_t)i + 1;
	if (sr->rec[i] == NULL)
		sr->live++;
	sr->rec[i] = rec;
	sr->len[i] = (uint32_t)len;
}

void
mbox_sortrecs_load(struct mbox *mb, struct mbox_sortrecs *sr)
{
	char *path = sort_path(mb), *data = NULL;
	struct stat st;
	size_t len = 0;
	int fd;

	memset(sr, 0, sizeof(*sr));
	sr->mb = mb;
	sr->n = mb->n;
	sr->rec = xcalloc(sr->n + 1, sizeof(*sr->rec));
	sr->len = xcalloc(sr->n + 1, sizeof(*sr->len));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT) {
			log_warn("open(%s) failed: %s", path, strerror(errno));
			sr->bad = true;
		}
		sr->missing = true;
		free(path);
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > SORT_FILE_MAX) {
		sr->bad = true;
		close(fd);
		free(path);
		return;
	}
	if ((sr->cached = cache_get(path, &st, mb->uidvalidity)) != NULL) {
		/* checked when it was read: only the records' places */
		close(fd);
		free(path);
		(void)sortrec_parse((const unsigned char *)sr->cached->buf,
		    sr->cached->len, mb->uidvalidity, false, load_one, sr);
		return;
	}
	if (read_fd_all(fd, &data, &len, &st) < 0) {
		sr->bad = true;
		close(fd);
		free(path);
		return;
	}
	close(fd);
	if (mbox_sortrec_parse((const unsigned char *)data, len,
	    mb->uidvalidity, count_one, &(size_t){ 0 }) < 0) {
		/* used as far as it checks out, then written again */
		sr->bad = true;
		sr->buf = data;
		(void)mbox_sortrec_parse((const unsigned char *)data, len,
		    mb->uidvalidity, load_one, sr);
		free(path);
		return;
	}
	/* st is what was read only if the file did not change meanwhile */
	if ((size_t)st.st_size == len &&
	    (sr->cached = cache_put(path, &st, mb->uidvalidity, data, len)) !=
	    NULL)
		data = NULL;
	free(path);
	sr->buf = data;
	(void)sortrec_parse(sr->cached != NULL ?
	    (const unsigned char *)sr->cached->buf : (const unsigned char *)data,
	    len, mb->uidvalidity, false, load_one, sr);
}

void
mbox_sortrecs_add(struct mbox_sortrecs *sr, size_t i, const void *rec,
    size_t len)
{
	unsigned char h[SREC_HDR];

	if (i >= sr->n || len > MBOX_SORTREC_MAX ||
	    mbox_msg(sr->mb, i)->expunged)
		return;
	rec_header(h, mbox_msg(sr->mb, i)->uid, rec, (uint32_t)len);
	str_append_n(&sr->pend, h, sizeof(h));
	str_append_n(&sr->pend, rec, len);
	sr->npend++;
}

/* The live records and the pending ones into a new file, renamed over
 * petrel-sort. Lock held. */
static void
rewrite(struct mbox_sortrecs *sr, const char *path)
{
	struct mbox *mb = sr->mb;
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	unsigned char h[SORT_HDR];
	str_t out = STR_INIT;
	int fd;

	memset(h, 0, sizeof(h));
	memcpy(h, SORT_MAGIC, 8);
	put32(h + 8, mb->uidvalidity);
	str_append_n(&out, h, sizeof(h));
	for (size_t i = 0; i < sr->n; i++) {
		unsigned char rh[SREC_HDR];

		if (sr->rec[i] == NULL || mbox_msg(mb, i)->expunged)
			continue;
		rec_header(rh, mbox_msg(mb, i)->uid, sr->rec[i], sr->len[i]);
		str_append_n(&out, rh, sizeof(rh));
		str_append_n(&out, sr->rec[i], sr->len[i]);
	}
	str_append_n(&out, sr->pend.data, sr->pend.len);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0)
		log_warn("open(%s) failed: %s", tmp, strerror(errno));
	else if (write_full(fd, out.data, out.len) < 0) {
		log_warn("write(%s) failed: %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
	} else if (close(fd) < 0 || rename(tmp, path) < 0) {
		log_warn("writing %s failed: %s", path, strerror(errno));
		(void)unlink(tmp);
	}
	str_free(&out);
	free(tmp);
}

/* Append the pending records to an existing petrel-sort of this
 * UIDVALIDITY. 0 done, -1 there is none (or not ours). */
static int
append(struct mbox_sortrecs *sr, const char *path)
{
	unsigned char h[SORT_HDR];
	int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	int ret = 0;

	if (fd < 0)
		return -1;
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h, SORT_MAGIC, 8) != 0 ||
	    get32(h + 8) != sr->mb->uidvalidity)
		ret = -1;
	/* one write: appends from other sessions cannot interleave */
	else if (write(fd, sr->pend.data, sr->pend.len) !=
	    (ssize_t)sr->pend.len)
		log_warn("write(%s) failed: %s", path, strerror(errno));
	close(fd);
	return ret;
}

void
mbox_sortrecs_finish(struct mbox_sortrecs *sr)
{
	struct mbox *mb = sr->mb;
	const char *error;
	char *path;
	bool compact;

	if (mb == NULL)
		return;
	compact = sr->bad || (sr->nrecs - sr->live >= SORT_DEAD_MIN &&
	    sr->nrecs - sr->live > sr->live);
	if ((sr->npend > 0 || compact) && !mbox_priv(mb)->dead) {
		path = sort_path(mb);
		if (compact || sr->missing || append(sr, path) < 0) {
			if (mbox_lock(mb, &error) < 0)
				log_warn("%s", error);
			else {
				rewrite(sr, path);
				mbox_unlock(mb);
			}
		}
		free(path);
	}
	free(sr->rec);
	free(sr->len);
	free(sr->buf);
	if (sr->cached != NULL)
		cache_release(sr->cached);
	str_free(&sr->pend);
	memset(sr, 0, sizeof(*sr));
}
