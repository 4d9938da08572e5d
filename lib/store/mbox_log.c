/*
 * mbox_log.c: petrel-index.log, the append-only change log beside the
 * petrel-index base of a folder (see mbox_index.c for the base).
 *
 * A change to a folder (a flag rename, an expunge, new UIDs, learned
 * sizes, cache offsets) is one record appended to the log under the
 * folder's lock, so that its cost does not depend on the folder's size;
 * the base is rewritten (compacted) only when the log has grown to a
 * fraction of it. Readers keep their offset in the log and apply only
 * what was appended since they last looked.
 *
 * The file is text, like the base:
 *
 *   petrel-index-log 1 <log_id, 8 hex digits>\n          (28 bytes)
 *   R <seq> <len> <hash, 16 hex digits>\n<len bytes of payload>
 *   ...
 *
 * The payload is lines, each ending in '\n':
 *   s <uidnext> <modseq> <cur_s>.<cur_ns> <new_s>.<new_ns> <cache_id>
 *     <cache_dead> <messages> <unseen> <recent>     (first, one line)
 *   e <uid>                                          (expunged)
 *   m <entry>                                        (a message's state)
 * where <entry> is a base entry line: "<uid> <c|n> <size> <vsize>
 * <internaldate> <cache_off> <modseq> <name>" ("? ? ?" for the sizes
 * and date when not known yet). The s line is the folder's state after
 * the record: the directory mtimes it describes, the counts STATUS
 * shows, and the folder's highest modseq (RFC 7162). A record that
 * publishes an arrival, a flag change or an expunge raises the folder's
 * modseq by one; the m lines of the messages it changed that way carry
 * the new value, the e lines were expunged at it (and are also kept in
 * petrel-expunged, which outlives compaction: mbox_expunged.c). m lines
 * that only record learned sizes or cache offsets keep the message's
 * modseq. Older records with modseq 0 read as "no modseq yet".
 *
 * log_id ties the log to one base: the base's header names it, and a
 * log with another id (left from before a compaction) is ignored. seq
 * numbers the records: the base records the last seq it contains, the
 * first record of a new log follows it, and each record's seq is its
 * predecessor's plus one. hash is mbox_hash64() of "R <seq> <len> "
 * chained with the payload. A record that is short, fails its hash or
 * breaks the sequence ends the log for readers (a torn last write after
 * a crash); the next writer truncates the file there before appending.
 * Records are single write()s on an O_APPEND descriptor, made under
 * petrel-lock; readers take the same lock.
 *
 * Trust: the log is untrusted bytes like every file in the folder;
 * parsing is bounded and strict. A log that cannot be used only costs a
 * full re-read or re-listing, never a wrong UID: UIDs are only ever
 * taken from records whose hash checks, and they must ascend.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#define LOG_MAGIC "petrel-index-log 1 "
#define LOG_HDR (sizeof(LOG_MAGIC) - 1 + 8 + 1)
/* "R <20 digits> <20 digits> <16 hex>\n" */
#define REC_HDR_MAX 64
/* One record larger than this is garbage (a batch is a few lines per
 * changed message; a sync of a huge new folder writes the base). */
#define REC_MAX ((size_t)256 << 20)

static char *
log_path(const char *folder)
{
	return xasprintf("%s/%s", folder, MBOX_LOG_NAME);
}

static bool
get_u64(const char **pp, const char *end, uint64_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0, d;

	if (p == end || *p < '0' || *p > '9')
		return false;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*pp = p;
	*v_r = v;
	return true;
}

static bool
get_hex(const char **pp, const char *end, int digits, uint64_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0;
	int i, d;

	if (end - p < digits)
		return false;
	for (i = 0; i < digits; i++, p++) {
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

/* ---- building a record ---- */

void
mbox_log_put_state(str_t *b, const struct mbox_log_state *st)
{
	str_printf(b, "s %" PRIu32 " %" PRIu64 " %lld.%09ld %lld.%09ld "
	    "%" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRIu32 " %" PRIu32 "\n",
	    st->uidnext, st->modseq,
	    (long long)st->cur_mtime.tv_sec, (long)st->cur_mtime.tv_nsec,
	    (long long)st->new_mtime.tv_sec, (long)st->new_mtime.tv_nsec,
	    st->cache_id, st->cache_dead, st->messages, st->unseen,
	    st->recent);
}

void
mbox_log_put_expunge(str_t *b, uint32_t uid)
{
	str_printf(b, "e %" PRIu32 "\n", uid);
}

void
mbox_log_put_msg(str_t *b, const struct mbox_msg *m)
{
	str_append_n(b, "m ", 2);
	mbox_index_put_entry(b, m);
}

/* ---- the file ---- */

int
mbox_log_create(const char *folder, uint32_t id, bool durable, int *fd_r,
    const char **error_r)
{
	char *path = log_path(folder);
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char hdr[LOG_HDR + 1];
	int fd, ret = -1;

	*fd_r = -1;
	snprintf(hdr, sizeof(hdr), "%s%08" PRIx32 "\n", LOG_MAGIC, id);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW |
	    O_APPEND, 0600);
	if (fd < 0) {
		mbox_fail(error_r, "open(%s) failed: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_full(fd, hdr, LOG_HDR) < 0 ||
	    (durable && fsync(fd) < 0)) {
		mbox_fail(error_r, "write(%s) failed: %s", tmp,
		    strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		mbox_fail(error_r, "rename(%s, %s) failed: %s", tmp, path,
		    strerror(errno));
		goto fail;
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
	return ret;
}

int
mbox_log_open(const char *folder, uint32_t id, int *fd_r,
    const char **error_r)
{
	char *path = log_path(folder);
	char hdr[LOG_HDR];
	const char *p = hdr + sizeof(LOG_MAGIC) - 1;
	struct stat st;
	uint64_t v;
	ssize_t r;
	int fd;

	*fd_r = -1;
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_APPEND);
	if (fd < 0) {
		int e = errno;

		free(path);
		if (e == ENOENT || e == ELOOP)
			return 0;
		return mbox_fail(error_r, "open(%s/%s) failed: %s", folder,
		    MBOX_LOG_NAME, strerror(e));
	}
	free(path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	r = pread(fd, hdr, sizeof(hdr), 0);
	if (r != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr, LOG_MAGIC, sizeof(LOG_MAGIC) - 1) != 0 ||
	    !get_hex(&p, hdr + sizeof(hdr), 8, &v) || *p != '\n' ||
	    (uint32_t)v != id) {
		close(fd);
		return 0;
	}
	*fd_r = fd;
	return 1;
}

uint64_t
mbox_log_start(void)
{
	return LOG_HDR;
}

int
mbox_log_append(int fd, uint64_t seq, const str_t *payload, bool durable,
    const char **error_r)
{
	str_t rec = STR_INIT;
	uint64_t h;
	size_t hl;
	int ret = 0;

	str_printf(&rec, "R %" PRIu64 " %zu ", seq, payload->len);
	hl = rec.len;
	h = mbox_hash64(0, str_c(&rec), hl);
	h = mbox_hash64(h, payload->data != NULL ? payload->data : "",
	    payload->len);
	str_printf(&rec, "%016" PRIx64 "\n", h);
	str_append_n(&rec, payload->data != NULL ? payload->data : "",
	    payload->len);
	/* one write: a reader (under the lock) sees all of it or, after a
	 * crash, a torn tail that fails its hash */
	if (write_full(fd, str_c(&rec), rec.len) < 0)
		ret = mbox_fail(error_r, "write(%s) failed: %s",
		    MBOX_LOG_NAME, strerror(errno));
	else if (durable && fdatasync(fd) < 0)
		ret = mbox_fail(error_r, "fsync(%s) failed: %s",
		    MBOX_LOG_NAME, strerror(errno));
	str_free(&rec);
	return ret;
}

/* ---- reading ---- */

static bool
get_ts(const char **pp, const char *end, struct timespec *ts)
{
	uint64_t sec, nsec;
	bool neg = *pp < end && **pp == '-';

	if (neg)
		(*pp)++;
	if (!get_u64(pp, end, &sec) || sec > INT64_MAX || *pp == end ||
	    **pp != '.')
		return false;
	(*pp)++;
	if (!get_u64(pp, end, &nsec) || nsec > 999999999)
		return false;
	ts->tv_sec = neg ? -(time_t)sec : (time_t)sec;
	ts->tv_nsec = (long)nsec;
	return true;
}

static bool
get_sp_u32(const char **pp, const char *end, uint32_t *v_r)
{
	uint64_t v;

	if (*pp == end || **pp != ' ')
		return false;
	(*pp)++;
	if (!get_u64(pp, end, &v) || v > UINT32_MAX)
		return false;
	*v_r = (uint32_t)v;
	return true;
}

static bool
parse_state(const char *p, const char *end, struct mbox_log_state *st)
{
	memset(st, 0, sizeof(*st));
	if (!get_sp_u32(&p, end, &st->uidnext) || st->uidnext == 0 ||
	    p == end || *p++ != ' ' || !get_u64(&p, end, &st->modseq) ||
	    p == end || *p++ != ' ' || !get_ts(&p, end, &st->cur_mtime) ||
	    p == end || *p++ != ' ' || !get_ts(&p, end, &st->new_mtime) ||
	    !get_sp_u32(&p, end, &st->cache_id) ||
	    !get_sp_u32(&p, end, &st->cache_dead) ||
	    !get_sp_u32(&p, end, &st->messages) ||
	    !get_sp_u32(&p, end, &st->unseen) ||
	    !get_sp_u32(&p, end, &st->recent))
		return false;
	return p == end;
}

/* Check and decode one payload: all of it or nothing is applied. The
 * items point into buf (names NUL-terminated in place). */
static int
parse_payload(char *buf, size_t len, struct mbox_log_item **items_r,
    size_t *n_r)
{
	struct mbox_log_item *items = NULL;
	size_t n = 0, cap = 0;
	char *p = buf, *end = buf + len, *nl;

	while (p < end) {
		struct mbox_log_item it;

		memset(&it, 0, sizeof(it));
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL || nl - p < 2 || p[1] != ' ')
			goto bad;
		it.type = p[0];
		if (it.type == 's') {
			if (n != 0 || !parse_state(p + 1, nl, &it.st))
				goto bad;
		} else if (it.type == 'e') {
			const char *q = p + 1;

			if (n == 0 || !get_sp_u32(&q, nl, &it.m.uid) ||
			    it.m.uid == 0 || q != nl)
				goto bad;
		} else if (it.type == 'm') {
			char *q = p + 2;

			if (n == 0 || !mbox_index_parse_entry(&q, end, 2,
			    &it.m) || q != nl + 1)
				goto bad;
		} else {
			goto bad;
		}
		if (n == cap) {
			cap = cap < 16 ? 16 : cap * 2;
			items = xrealloc(items, cap * sizeof(*items));
		}
		items[n++] = it;
		p = nl + 1;
	}
	if (n == 0)
		goto bad;
	*items_r = items;
	*n_r = n;
	return 0;
bad:
	free(items);
	return -1;
}

int
mbox_log_read(int fd, uint64_t *off, uint64_t *seq, mbox_log_apply_fn *fn,
    void *ctx, bool *torn_r, const char **error_r)
{
	struct stat st;
	char *buf = NULL, *p, *end;
	size_t size, got = 0;
	ssize_t r;
	int applied = 0;

	*torn_r = false;
	if (fstat(fd, &st) < 0)
		return mbox_fail(error_r, "fstat(%s) failed: %s",
		    MBOX_LOG_NAME, strerror(errno));
	if ((uint64_t)st.st_size <= *off) {
		*torn_r = (uint64_t)st.st_size < *off;
		return 0;
	}
	if ((uint64_t)st.st_size - *off > MBOX_INDEX_MAX) {
		*torn_r = true;
		return 0;
	}
	size = (size_t)((uint64_t)st.st_size - *off);
	buf = xmalloc(size + 1);
	while (got < size) {
		r = pread(fd, buf + got, size - got, (off_t)(*off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return mbox_fail(error_r, "read(%s) failed: %s",
			    MBOX_LOG_NAME, strerror(errno));
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	p = buf;
	end = buf + got;
	while (p < end) {
		const char *q = p, *hend;
		struct mbox_log_item *items;
		uint64_t rseq, rlen, h, hash;
		size_t n, hl;
		char *nl;

		nl = memchr(p, '\n', (size_t)(end - p) < REC_HDR_MAX ?
		    (size_t)(end - p) : REC_HDR_MAX);
		if (nl == NULL || end - p < 2 || p[0] != 'R' || p[1] != ' ')
			break;
		q = p + 2;
		hend = nl;
		if (!get_u64(&q, hend, &rseq) || q == hend || *q++ != ' ' ||
		    !get_u64(&q, hend, &rlen) || q == hend || *q++ != ' ')
			break;
		hl = (size_t)(q - p);
		if (!get_hex(&q, hend, 16, &hash) || q != hend)
			break;
		if (rlen > REC_MAX || rlen > (uint64_t)(end - (nl + 1)))
			break;
		h = mbox_hash64(0, p, hl);
		h = mbox_hash64(h, nl + 1, (size_t)rlen);
		if (h != hash)
			break;
		if (rseq > *seq + 1)
			break;		/* a gap: not ours to skip */
		if (rseq == *seq + 1) {
			if (parse_payload(nl + 1, (size_t)rlen, &items,
			    &n) < 0)
				break;
			for (size_t k = 0; k < n; k++)
				fn(ctx, &items[k]);
			free(items);
			*seq = rseq;
			applied++;
		}
		p = nl + 1 + rlen;
	}
	/* the records before p were good; whatever follows is torn */
	*torn_r = p < end;
	*off += (uint64_t)(p - buf);
	free(buf);
	return applied;
}
