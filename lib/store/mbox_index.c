/*
 * mbox_index.c: the petrel-index file of a folder, and the UIDs kept
 * from a Dovecot dovecot-uidlist or Courier courierimapuiddb (or from
 * the readable lines of a corrupt petrel-index) when it is rebuilt.
 *
 * petrel-index is text, every line ends with '\n':
 *
 *   petrel-index 2 <uidvalidity> <uidnext> <cur_s>.<cur_ns>
 *     <new_s>.<new_ns> <cache_id> <cache_dead> <messages> <unseen>
 *     <recent> <log_id> <log_seq> <modseq> <body_len> <hash>
 *                                                     (one line)
 *   <uid> <c|n> <size> <vsize> <internaldate> <cache_off> <modseq> <name>
 *   ...                                               (<messages> lines)
 *
 * It is the base of the folder's state; the changes since it was
 * written are in petrel-index.log (mbox_log.c), the log whose id is
 * log_id, from the record after log_seq on. modseq in the header is
 * the folder's highest modification sequence (RFC 7162 CONDSTORE), the
 * one on an entry the message's (the folder's modseq when it arrived
 * or its flags last changed); an index written before CONDSTORE has 0
 * there, read as modseq 1 for the messages, and the folder gets its
 * first modseq at the next change (mbox_modseq_floor). Version 1 (no
 * log_id, log_seq, modseq) is still read, and replaced by version 2 at
 * the first change.
 *
 * A message whose file has not been looked at yet (a sync only lists
 * the directories) has "? ? ?" for size, vsize and internaldate.
 *
 * cur_*, new_*: the directory mtimes recorded at the last listing (0.0:
 * list next time). cache_id: the petrel-cache the cache_off values
 * belong to; cache_dead: messages removed since it was compacted.
 * messages/unseen/recent: counts for STATUS, which reads only this
 * line. body_len: bytes after the first line. hash: 16 hex digits of
 * mbox_hash64() over the first line up to the hash, chained with the
 * body. Entries are in ascending uid order, all below uidnext; name is
 * the file name in cur/ ('c') or new/ ('n'). Any deviation (torn file,
 * bad checksum, unknown version, stray byte) makes the file corrupt
 * and it is rebuilt.
 *
 * About 70-115 bytes per message: 100,000 messages are about 7-12 MB,
 * read and parsed in a few tens of milliseconds. The file is never
 * changed in place: it is written to petrel-index.tmp.<pid> and renamed
 * (when first built, and when its log has grown to a quarter of it).
 *
 * Trust: all files read here are untrusted bytes; parsing is bounded
 * and strict, and never crashes on garbage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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

#define INDEX_MAGIC_V1 "petrel-index 1 "
#define INDEX_MAGIC "petrel-index 2 "
/* The header line is about 120 bytes. */
#define HEADER_MAX 512
/* Shortest entry line: "1 c 0 0 0 0 x\n" (or "1 c ? ? ? 0 x\n"). */
#define ENTRY_MIN 14
/* size, vsize and internaldate of a message not looked at yet */
#define PENDING "? ? ?"


/* ---- parsing helpers over [*pp, end) ---- */

static bool
get_u64(const char **pp, const char *end, uint64_t max, uint64_t *v_r)
{
	const uint64_t maxdiv = max / 10, maxmod = max % 10;
	const char *p = *pp;
	uint64_t v = 0, d;

	if (p == end || *p < '0' || *p > '9')
		return false;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		d = (uint64_t)(*p - '0');
		if (v > maxdiv || (v == maxdiv && d > maxmod))
			return false;
		v = v * 10 + d;
	}
	*pp = p;
	*v_r = v;
	return true;
}

static bool
get_u32(const char **pp, const char *end, uint32_t *v_r)
{
	uint64_t v;

	if (!get_u64(pp, end, UINT32_MAX, &v))
		return false;
	*v_r = (uint32_t)v;
	return true;
}

static bool
get_i64(const char **pp, const char *end, long long *v_r)
{
	bool neg = *pp < end && **pp == '-';
	const char *p = *pp + (neg ? 1 : 0);
	uint64_t v;

	if (!get_u64(&p, end, (uint64_t)LLONG_MAX, &v))
		return false;
	*v_r = neg ? -(long long)v : (long long)v;
	*pp = p;
	return true;
}

static bool
get_c(const char **pp, const char *end, char c)
{
	if (*pp == end || **pp != c)
		return false;
	(*pp)++;
	return true;
}

static bool
get_ts(const char **pp, const char *end, struct timespec *ts)
{
	long long sec;
	uint64_t nsec;

	if (!get_i64(pp, end, &sec) || !get_c(pp, end, '.') ||
	    !get_u64(pp, end, 999999999, &nsec))
		return false;
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = (long)nsec;
	return true;
}

static bool
get_hex64(const char **pp, const char *end, uint64_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0;
	int i, d;

	if (end - p < 16)
		return false;
	for (i = 0; i < 16; i++, p++) {
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*pp = p;
	*v_r = v;
	return true;
}

/* A stored name: the rest of the line, no control characters, no '/',
 * not a dot file, at most NAME_MAX bytes. */
static bool
name_ok(const char *p, size_t len)
{
	size_t i;

	if (len == 0 || len > NAME_MAX || p[0] == '.')
		return false;
	for (i = 0; i < len; i++) {
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '/')
			return false;
	}
	return true;
}

/* ---- reading ---- */

/* Whole file, NUL-terminated. 0 ok, 1 missing, 2 not a sane regular
 * file, -1 I/O error. *fd_r (if not NULL) keeps the file open. */
static int
read_whole(const char *path, size_t max, int *fd_r, char **buf_r,
    size_t *len_r, const char **error_r)
{
	struct stat st;
	size_t size, got = 0;
	ssize_t r;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		if (errno == ELOOP)
			return 2;
		return mbox_fail(error_r, "open(%s) failed: %s", path,
		    strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		mbox_fail(error_r, "fstat(%s) failed: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		close(fd);
		return 2;
	}
	size = (size_t)st.st_size;
	buf = xmalloc_fill(size + 1);	/* read() fills it, got ends it */
	while (got < size) {
		r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			mbox_fail(error_r, "read(%s) failed: %s", path,
			    strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;	/* shrank meanwhile: the parser decides */
		got += (size_t)r;
	}
	buf[got] = '\0';
	*buf_r = buf;
	*len_r = got;
	if (fd_r != NULL)
		*fd_r = fd;
	else
		close(fd);
	return 0;
}

/* The first line. *hash_at: where the hash digits start; *body: after
 * the '\n'. */
static bool
parse_header(const char *buf, size_t len, struct mbox_index *idx,
    uint64_t *body_len, uint64_t *hash, const char **hash_at,
    const char **body)
{
	const char *end = buf + (len < HEADER_MAX ? len : HEADER_MAX);
	const char *p = buf;

	if ((size_t)(end - p) < sizeof(INDEX_MAGIC) - 1)
		return false;
	if (memcmp(p, INDEX_MAGIC, sizeof(INDEX_MAGIC) - 1) == 0)
		idx->version = 2;
	else if (memcmp(p, INDEX_MAGIC_V1, sizeof(INDEX_MAGIC_V1) - 1) == 0)
		idx->version = 1;
	else
		return false;
	p += sizeof(INDEX_MAGIC) - 1;
	if (!get_u32(&p, end, &idx->uidvalidity) || idx->uidvalidity == 0 ||
	    !get_c(&p, end, ' ') ||
	    !get_u32(&p, end, &idx->uidnext) || idx->uidnext == 0 ||
	    !get_c(&p, end, ' ') ||
	    !get_ts(&p, end, &idx->cur_mtime) || !get_c(&p, end, ' ') ||
	    !get_ts(&p, end, &idx->new_mtime) || !get_c(&p, end, ' ') ||
	    !get_u32(&p, end, &idx->cache_id) || !get_c(&p, end, ' ') ||
	    !get_u32(&p, end, &idx->cache_dead) || !get_c(&p, end, ' ') ||
	    !get_u32(&p, end, &idx->messages) || !get_c(&p, end, ' ') ||
	    !get_u32(&p, end, &idx->unseen) || !get_c(&p, end, ' ') ||
	    !get_u32(&p, end, &idx->recent) || !get_c(&p, end, ' '))
		return false;
	if (idx->version >= 2 &&
	    (!get_u32(&p, end, &idx->log_id) || !get_c(&p, end, ' ') ||
	    !get_u64(&p, end, UINT64_MAX, &idx->log_seq) ||
	    !get_c(&p, end, ' ') ||
	    !get_u64(&p, end, UINT64_MAX, &idx->modseq) ||
	    !get_c(&p, end, ' ')))
		return false;
	if (!get_u64(&p, end, UINT64_MAX, body_len) || !get_c(&p, end, ' '))
		return false;
	*hash_at = p;
	if (!get_hex64(&p, end, hash) || !get_c(&p, end, '\n'))
		return false;
	*body = p;
	return true;
}

/* One entry line at *pp; the '\n' becomes NUL and m->name points at
 * the name in place. Version 2 has a modseq after cache_off (0, from
 * before CONDSTORE, is taken as 1; version 1 has none: 1). */
bool
mbox_index_parse_entry(char **pp, char *end, int version,
    struct mbox_msg *m)
{
	const char *p = *pp;
	char *nl, *name, flags[MAILDIR_FLAGS_MAX + 1];
	uint64_t v;

	memset(m, 0, sizeof(*m));
	if (!get_u32(&p, end, &m->uid) || m->uid == 0 ||
	    !get_c(&p, end, ' ') || p == end || (*p != 'c' && *p != 'n'))
		return false;
	m->in_cur = *p++ == 'c';
	if (!get_c(&p, end, ' '))
		return false;
	if (p < end && *p == '?') {
		/* not looked at yet */
		if ((size_t)(end - p) < sizeof(PENDING) - 1 ||
		    memcmp(p, PENDING, sizeof(PENDING) - 1) != 0)
			return false;
		p += sizeof(PENDING) - 1;
		m->info_pending = true;
	} else if (!get_u64(&p, end, UINT64_MAX, &m->size) ||
	    !get_c(&p, end, ' ') ||
	    !get_u64(&p, end, UINT64_MAX, &m->vsize) ||
	    !get_c(&p, end, ' ') || !get_i64(&p, end, &m->internaldate)) {
		return false;
	}
	if (!get_c(&p, end, ' ') || !get_u64(&p, end, UINT64_MAX, &v) ||
	    !get_c(&p, end, ' '))
		return false;
	m->cache_off = v;
	v = 1;
	if (version >= 2 && (!get_u64(&p, end, UINT64_MAX, &v) ||
	    !get_c(&p, end, ' ')))
		return false;
	m->modseq = v != 0 ? v : 1;
	name = (char *)p;
	nl = memchr(name, '\n', (size_t)(end - name));
	if (nl == NULL || !name_ok(name, (size_t)(nl - name)))
		return false;
	*nl = '\0';
	m->name = name;
	mbox_name_flags(name, flags);
	m->flagbits = mbox_flags_bits(flags);
	*pp = nl + 1;
	return true;
}

static int
parse_body(struct mbox_index *idx, char *body, char *end)
{
	char *p = body;
	uint32_t last = 0;
	size_t k;

	if (idx->messages > (size_t)(end - body) / ENTRY_MIN)
		return -1;
	/* room (an eighth more, untouched pages until used) for what the
	 * log adds before the next rewrite, so the handle that adopts the
	 * array does not copy it at its first new message */
	idx->cap = idx->messages + idx->messages / 8 + 64;
	idx->msgs = xcalloc(idx->cap, sizeof(*idx->msgs));
	for (k = 0; k < idx->messages; k++) {
		struct mbox_msg *m = &idx->msgs[k];

		if (!mbox_index_parse_entry(&p, end, (int)idx->version, m) ||
		    m->uid <= last ||
		    m->uid >= idx->uidnext)
			return -1;
		last = m->uid;
	}
	idx->n = idx->messages;
	return p == end ? 0 : -1;
}

int
mbox_index_read(const char *folder, bool header_only, int *fd_r,
    struct mbox_index *idx, const char **error_r)
{
	char *path = xasprintf("%s/%s", folder, MBOX_INDEX_NAME);
	const char *hash_at, *body;
	uint64_t body_len, hash, h;
	char head[HEADER_MAX];
	size_t len;
	ssize_t r;
	int fd = -1, ret;

	memset(idx, 0, sizeof(*idx));
	if (header_only) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			ret = errno == ENOENT ? MBOX_INDEX_MISSING :
			    errno == ELOOP ? MBOX_INDEX_CORRUPT :
			    mbox_fail(error_r, "open(%s) failed: %s", path,
			    strerror(errno));
			free(path);
			return ret;
		}
		r = pread(fd, head, sizeof(head), 0);
		close(fd);
		free(path);
		if (r < 0)
			return mbox_fail(error_r, "read(%s) failed: %s",
			    MBOX_INDEX_NAME, strerror(errno));
		if (!parse_header(head, (size_t)r, idx, &body_len, &hash,
		    &hash_at, &body))
			return MBOX_INDEX_CORRUPT;
		idx->header_ok = true;
		return MBOX_INDEX_OK;
	}

	ret = read_whole(path, MBOX_INDEX_MAX, &fd, &idx->buf, &len, error_r);
	free(path);
	if (ret != 0)
		return ret < 0 ? -1 : ret == 1 ? MBOX_INDEX_MISSING :
		    MBOX_INDEX_CORRUPT;
	idx->buflen = len + 1;
	if (!parse_header(idx->buf, len, idx, &body_len, &hash, &hash_at,
	    &body))
		goto corrupt;
	idx->header_ok = true;
	if (body_len != (uint64_t)(idx->buf + len - body))
		goto corrupt;
	h = mbox_hash64(0, idx->buf, (size_t)(hash_at - idx->buf));
	h = mbox_hash64(h, body, (size_t)body_len);
	if (h != hash)
		goto corrupt;
	if (parse_body(idx, idx->buf + (body - idx->buf), idx->buf + len) < 0)
		goto corrupt;
	if (fd_r != NULL)
		*fd_r = fd;
	else
		close(fd);
	return MBOX_INDEX_OK;
corrupt:
	free(idx->msgs);
	idx->msgs = NULL;
	idx->n = 0;
	if (fd_r != NULL)
		*fd_r = fd;	/* its identity, for the rebuild's write */
	else
		close(fd);
	return MBOX_INDEX_CORRUPT;
}

void
mbox_index_free(struct mbox_index *idx)
{
	free(idx->msgs);
	free(idx->buf);
	idx->msgs = NULL;
	idx->buf = NULL;
	idx->n = 0;
}

/* ---- writing ---- */

static void
put_u64(str_t *s, uint64_t v)
{
	char buf[24];
	size_t i = sizeof(buf);

	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	str_append_n(s, buf + i, sizeof(buf) - i);
}

void
mbox_index_put_entry(str_t *s, const struct mbox_msg *m)
{
	put_u64(s, m->uid);
	str_append_n(s, m->in_cur ? " c " : " n ", 3);
	if (m->info_pending) {
		str_append_n(s, PENDING " ", sizeof(PENDING));
		goto rest;
	}
	put_u64(s, m->size);
	str_append_c(s, ' ');
	put_u64(s, m->vsize);
	str_append_c(s, ' ');
	if (m->internaldate < 0) {
		str_append_c(s, '-');
		put_u64(s, (uint64_t)0 - (uint64_t)m->internaldate);
	} else {
		put_u64(s, (uint64_t)m->internaldate);
	}
	str_append_c(s, ' ');
rest:
	put_u64(s, m->cache_off);
	str_append_c(s, ' ');
	put_u64(s, m->modseq);
	str_append_c(s, ' ');
	str_append(s, m->name);
	str_append_c(s, '\n');
}

int
mbox_index_write(const struct mbox *mb, bool durable, uint32_t log_id,
    uint64_t log_seq, int *fd_r, const char **error_r)
{
	const struct mbox_priv *p = mb->priv;
	str_t body = STR_INIT, head = STR_INIT;
	uint32_t messages = 0, unseen = 0, recent = 0;
	char *path, *tmp;
	uint64_t h;
	size_t i;
	int fd, ret = -1;

	str_reserve(&body, mb->n * 120 + 1);
	for (i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);

		if (m->expunged)
			continue;
		messages++;
		if (!mbox_msg_has(m, 'S'))
			unseen++;
		if (!m->in_cur)
			recent++;
		mbox_index_put_entry(&body, m);
	}
	str_printf(&head, "%s%" PRIu32 " %" PRIu32 " %lld.%09ld %lld.%09ld "
	    "%" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRIu32 " "
	    "%" PRIu32 " %" PRIu64 " %" PRIu64 " %zu ",
	    INDEX_MAGIC, mb->uidvalidity, mb->uidnext,
	    (long long)p->cur_mtime.tv_sec, (long)p->cur_mtime.tv_nsec,
	    (long long)p->new_mtime.tv_sec, (long)p->new_mtime.tv_nsec,
	    p->cache_id, p->cache_dead, messages, unseen, recent, log_id,
	    log_seq, p->modseq, body.len);
	h = mbox_hash64(0, str_c(&head), head.len);
	h = mbox_hash64(h, str_c(&body), body.len);
	str_printf(&head, "%016" PRIx64 "\n", h);

	path = xasprintf("%s/%s", mb->path, MBOX_INDEX_NAME);
	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		mbox_fail(error_r, "open(%s) failed: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_full(fd, str_c(&head), head.len) < 0 ||
	    write_full(fd, str_c(&body), body.len) < 0) {
		mbox_fail(error_r, "write(%s) failed: %s", tmp,
		    strerror(errno));
		goto fail;
	}
	if (durable && fsync(fd) < 0) {
		mbox_fail(error_r, "fsync(%s) failed: %s", tmp,
		    strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		mbox_fail(error_r, "rename(%s, %s) failed: %s", tmp, path,
		    strerror(errno));
		goto fail;
	}
	if (durable && fsync_dir(mb->path, error_r) < 0) {
		close(fd);
		goto out;
	}
	*fd_r = fd;
	ret = 0;
	goto out;
fail:
	close(fd);
	(void)unlink(tmp);
out:
	free(tmp);
	free(path);
	str_free(&head);
	str_free(&body);
	return ret;
}

/* ---- importing UIDs ---- */

static void
import_add(struct mbox_import *imp, size_t *cap, const char *file,
    size_t flen, uint32_t uid)
{
	size_t klen = 0;

	while (klen < flen && file[klen] != ':')
		klen++;
	if (klen == 0 || !name_ok(file, klen))
		return;
	if (imp->n > 0 && uid <= imp->ents[imp->n - 1].uid)
		return;		/* UIDs must ascend */
	if (imp->n == *cap) {
		*cap = *cap < 64 ? 64 : *cap * 2;
		imp->ents = xrealloc(imp->ents, *cap * sizeof(*imp->ents));
	}
	imp->ents[imp->n].key = file;
	imp->ents[imp->n].key_len = klen;
	imp->ents[imp->n].uid = uid;
	imp->ents[imp->n].used = false;
	imp->n++;
}

static int
key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int
import_cmp(const void *a, const void *b)
{
	const struct mbox_import_ent *x = a, *y = b;
	int c = key_cmp(x->key, x->key_len, y->key, y->key_len);

	if (c != 0)
		return c;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Sort by key, drop duplicate keys (the lowest UID stays), make
 * uidnext exceed every UID (an entry at UINT32_MAX is dropped: there
 * would be no UID left after it). */
static void
import_finish(struct mbox_import *imp)
{
	const struct mbox_import_ent *a, *b;
	size_t k, out = 0;

	if (imp->n > 0 && imp->ents[imp->n - 1].uid == UINT32_MAX)
		imp->n--;
	if (imp->n > 0 && imp->ents[imp->n - 1].uid >= imp->uidnext)
		imp->uidnext = imp->ents[imp->n - 1].uid + 1;
	if (imp->uidnext == 0)
		imp->uidnext = 1;
	if (imp->n > 0)
		qsort(imp->ents, imp->n, sizeof(*imp->ents), import_cmp);
	for (k = 0; k < imp->n; k++) {
		a = &imp->ents[out > 0 ? out - 1 : 0];
		b = &imp->ents[k];
		if (out > 0 &&
		    key_cmp(a->key, a->key_len, b->key, b->key_len) == 0)
			continue;
		imp->ents[out++] = *b;
	}
	imp->n = out;
}

/* Next line of [*pp, end): returns its start, sets *len (without
 * "\r\n"), advances *pp. NULL at the end. */
static const char *
next_line(const char **pp, const char *end, size_t *len)
{
	const char *p = *pp, *nl;

	if (p >= end)
		return NULL;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL)
		nl = end;
	*pp = nl < end ? nl + 1 : end;
	*len = (size_t)(nl - p);
	if (*len > 0 && p[*len - 1] == '\r')
		(*len)--;
	return p;
}

/*
 * dovecot-uidlist (version 3: "3 V<uidvalidity> N<nextuid> ..." then
 * "<uid> [<key><value> ...] :<filename>"; version 1, which is also
 * Courier's courierimapuiddb: "1 <uidvalidity> <nextuid>" then
 * "<uid> <filename>"). Lines that do not parse are skipped; a header
 * that does not parse means nothing is imported.
 */
static void
import_parse(struct mbox_import *imp, char *buf, size_t len)
{
	const char *p = buf, *end = buf + len, *line, *q, *lend, *f;
	uint32_t uid, v;
	size_t llen, cap = 0;
	int version;

	imp->uidvalidity = 0;
	imp->uidnext = 1;
	line = next_line(&p, end, &llen);
	if (line == NULL || llen < 2 || line[1] != ' ')
		return;
	lend = line + llen;
	version = line[0] == '3' ? 3 : line[0] == '1' ? 1 : 0;
	q = line + 2;
	if (version == 3) {
		while (q < lend) {
			char k = *q++;

			if ((k == 'V' || k == 'N') && get_u32(&q, lend, &v)) {
				if (k == 'V')
					imp->uidvalidity = v;
				else
					imp->uidnext = v;
			}
			while (q < lend && *q != ' ')
				q++;
			while (q < lend && *q == ' ')
				q++;
		}
	} else if (version == 1) {
		if (!get_u32(&q, lend, &imp->uidvalidity) ||
		    !get_c(&q, lend, ' ') || !get_u32(&q, lend, &imp->uidnext))
			imp->uidvalidity = 0;
	}
	if (imp->uidvalidity == 0)
		return;
	while ((line = next_line(&p, end, &llen)) != NULL) {
		lend = line + llen;
		q = line;
		if (!get_u32(&q, lend, &uid) || uid == 0 || q == lend ||
		    *q != ' ')
			continue;
		if (version == 3) {
			f = NULL;
			for (; q + 1 < lend; q++) {
				if (q[0] == ' ' && q[1] == ':') {
					f = q + 2;
					break;
				}
			}
			if (f == NULL)
				continue;
		} else {
			f = q + 1;
		}
		/* a UID the list gives out is never given again, even when
		 * its entry is not imported */
		if (uid >= imp->uidnext && uid < UINT32_MAX)
			imp->uidnext = uid + 1;
		import_add(imp, &cap, f, (size_t)(lend - f), uid);
	}
	import_finish(imp);
}

/* The readable entries of a corrupt petrel-index whose header parsed. */
static void
import_salvage(struct mbox_import *imp, struct mbox_index *idx)
{
	const char *p, *end, *line, *lend, *q;
	uint32_t uid;
	size_t llen, cap = 0;
	int fields, want = idx->version >= 2 ? 7 : 6;

	imp->buf = idx->buf;
	idx->buf = NULL;
	imp->source = MBOX_INDEX_NAME;
	imp->uidvalidity = idx->uidvalidity;
	imp->uidnext = idx->uidnext;
	/* parse_entry() may have turned some '\n' into NUL */
	for (size_t i = 0; i + 1 < idx->buflen; i++) {
		if (imp->buf[i] == '\0')
			imp->buf[i] = '\n';
	}
	p = imp->buf;
	end = imp->buf + idx->buflen - 1;
	(void)next_line(&p, end, &llen);	/* the header */
	while ((line = next_line(&p, end, &llen)) != NULL) {
		lend = line + llen;
		q = line;
		if (!get_u32(&q, lend, &uid) || uid == 0)
			continue;
		for (fields = 0; fields < want && q < lend; q++) {
			if (*q == ' ')
				fields++;
		}
		if (fields == want)
			import_add(imp, &cap, q, (size_t)(lend - q), uid);
	}
	import_finish(imp);
}

static bool
import_file(const char *folder, const char *name, struct mbox_import *imp)
{
	char *path = xasprintf("%s/%s", folder, name);
	const char *error;
	size_t len;
	int r;

	r = read_whole(path, MBOX_INDEX_MAX, NULL, &imp->buf, &len, &error);
	if (r < 0)
		log_warn("%s", error);
	free(path);
	if (r != 0)
		return false;
	imp->source = name;
	import_parse(imp, imp->buf, len);
	if (imp->uidvalidity != 0)
		return true;
	mbox_import_free(imp);
	return false;
}

void
mbox_import_load(const char *folder, struct mbox_index *idx,
    struct mbox_import *imp)
{
	memset(imp, 0, sizeof(*imp));
	if (idx != NULL && idx->header_ok && idx->buf != NULL) {
		import_salvage(imp, idx);
		return;
	}
	if (import_file(folder, MBOX_DOVECOT_UIDLIST, imp))
		return;
	(void)import_file(folder, MBOX_COURIER_UIDDB, imp);
}

struct mbox_import_ent *
mbox_import_find(struct mbox_import *imp, const char *key, size_t key_len)
{
	size_t lo = 0, hi = imp->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = key_cmp(key, key_len, imp->ents[mid].key,
		    imp->ents[mid].key_len);
		if (c == 0)
			return &imp->ents[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void
mbox_import_free(struct mbox_import *imp)
{
	free(imp->ents);
	free(imp->buf);
	memset(imp, 0, sizeof(*imp));
}
