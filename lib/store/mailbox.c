/*
 * mailbox.c: one Maildir folder as an IMAP mailbox (see mailbox.h): the
 * sync that assigns UIDs, flag changes, expunges and keywords. The file
 * formats are in mbox_index.c (petrel-index, uidlist import) and
 * mbox_cache.c (petrel-cache).
 *
 * Concurrency. Every handle (struct mbox) keeps its own copy of the
 * folder state in msgs; petrel-index plus its change log
 * petrel-index.log is the shared truth. Every change (assigning UIDs,
 * renaming or unlinking message files, appending to the log, writing
 * the index or dovecot-keywords) happens under an exclusive flock() on
 * petrel-lock, and a handle first applies what others appended to the
 * log since it last looked (or re-reads and merges the index when it
 * was rewritten). New UIDs are logged (and fdatasync'd) before the lock
 * is released, so each is assigned exactly once and every handle learns
 * the same ones. Any write comes after such a refresh under the same
 * lock (index_write_locked() refuses otherwise). Expunges and flag
 * changes are published at the end of the command (mbox_flush), cache
 * offsets and learned sizes at the next sync, flush or close. A change
 * is one log record, whatever the folder's size; the index is rewritten
 * only when the log has grown to a quarter of it.
 *
 * Listing. The index records the mtimes of cur/ and new/ as they were
 * just before they were last listed; a directory whose mtime still
 * equals the recorded one is not read. A change in the same timestamp
 * tick as the recorded mtime would be invisible, so an mtime less than
 * a clock tick old (a second on file systems with whole-second
 * timestamps) is never recorded ({0, 0}: list next time). Our own
 * renames and unlinks in cur/ record cur/'s mtime after the change when
 * the handle knew cur/ in full just before it (see claim_begin()), so
 * neither this handle nor others list cur/ for them; new/ is never
 * claimed. The index and log thus describe the directories as they
 * were at the recorded mtimes. Another program renaming files
 * while we readdir() can hide one from the listing, so a known message
 * that is not seen is only expunged when the directory provably did
 * not change during the listing; else it waits for the next sync.
 *
 * Trust: file names in cur/ and new/, and the index, cache, uidlist and
 * keyword files next to them, are untrusted bytes (other programs and
 * users can write them). Names that cannot be stored in the index
 * (control characters) are skipped; garbage files are rebuilt or
 * ignored, never trusted. The folder path itself is trusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/store/mailbox.h"
#include "lib/store/mbox_int.h"
#include "lib/maildir/maildir.h"

/* A listing that found messages missing while the directory may have
 * been changing (a rename during readdir() can hide a file) is repeated
 * this often, LIST_QUIET_NS apart; a directory whose mtime is younger
 * than that may still be changing within the same timestamp tick. */
#define LIST_ATTEMPTS 3
#define LIST_QUIET_NS 20000000L
/* mbox_set_flags() retries when another program keeps renaming. */
#define RENAME_ATTEMPTS 3
/* dovecot-keywords larger than this is garbage. */
#define KEYWORDS_FILE_MAX (64 * 1024)
/* Longest keyword we create (Dovecot's limit is similar). */
#define KEYWORD_MAX 255
/* Timestamp granularity assumed of file systems with sub-second
 * timestamps (ext4, XFS, Btrfs, tmpfs: 1 ns). */
#define TS_GRAIN_NS 1000000LL
/* The log is compacted into the base when it exceeds this fraction of
 * the base (and LOG_COMPACT_MIN bytes). */
#define LOG_COMPACT_DIV 4
#define LOG_COMPACT_MIN (256 * 1024)
/* Flag changes kept track of for mbox_take_changed(); beyond this the
 * caller looks at every message. */
#define FCHG_MAX 65536

/* ---- small helpers ---- */

static uint64_t
load_le64(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	    (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
	    (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	    (uint64_t)p[7] << 56;
}

uint64_t
mbox_hash64(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t w = 0;
	size_t i;

	h ^= (uint64_t)len * 0x9e3779b97f4a7c15ULL;
	for (; len >= 8; p += 8, len -= 8) {
		h = (h ^ load_le64(p)) * 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
	}
	for (i = 0; i < len; i++)
		w |= (uint64_t)p[i] << (8 * i);
	h = (h ^ w ^ 0x94d049bb133111ebULL) * 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 29;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 32;
	return h;
}

uint32_t
mbox_random_id(void)
{
	static _Thread_local uint32_t counter;
	uint32_t id;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint32_t)time(NULL) * 2654435761u ^
		    (uint32_t)getpid() << 16 ^ ++counter;
	return id != 0 ? id : 1;
}

void
mbox_name_flags(const char *name, char flags[MAILDIR_FLAGS_MAX + 1])
{
	const char *colon = strchr(name, ':'), *f;
	size_t n;

	flags[0] = '\0';
	if (colon == NULL || colon[1] != '2' || colon[2] != ',')
		return;
	/* the usual case: already sorted and unique (A-Z before a-z) */
	f = colon + 3;
	for (n = 0; f[n] != '\0' && n < MAILDIR_FLAGS_MAX; n++) {
		if (!((f[n] >= 'A' && f[n] <= 'Z') ||
		    (f[n] >= 'a' && f[n] <= 'z')) ||
		    (n > 0 && (unsigned char)f[n] <= (unsigned char)f[n - 1]))
			break;
	}
	if (f[n] == '\0') {
		memcpy(flags, f, n + 1);
		return;
	}
	if (maildir_flags_normalize(f, strlen(f), flags) < 0)
		flags[0] = '\0';
}

void
mbox_name_free(struct mbox_priv *p, char *name)
{
	uintptr_t a = (uintptr_t)name, b = (uintptr_t)p->buf;

	if (p->buf != NULL && a >= b && a < b + p->buflen)
		return;
	free(name);
}

/* Bytes before ':' (the stable part of a Maildir name). */
static size_t
key_len(const char *name)
{
	return strcspn(name, ":");
}

static bool
key_eq(const char *name, const char *key, size_t klen)
{
	return strncmp(name, key, klen) == 0 &&
	    (name[klen] == ':' || name[klen] == '\0');
}

static bool
ts_set(struct timespec t)
{
	return t.tv_sec != 0 || t.tv_nsec != 0;
}

static bool
ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* The mtime to record for a directory stat()ed after now (the coarse
 * clock, CLOCK_REALTIME_COARSE, which file systems stamp changes with)
 * was taken: only one older than the clock's tick then, so any later
 * change gets another timestamp. A file system with whole-second
 * timestamps (tv_nsec 0) needs a second; others TS_GRAIN_NS. */
static struct timespec
ts_trusted(const struct stat *st, const struct timespec *now)
{
	struct timespec zero = { 0, 0 };
	const struct timespec *m = &st->st_mtim;
	long long d;

	if (m->tv_nsec == 0)
		return m->tv_sec + 1 < now->tv_sec ? *m : zero;
	d = ((long long)now->tv_sec - (long long)m->tv_sec) * 1000000000LL +
	    (now->tv_nsec - m->tv_nsec);
	return d > TS_GRAIN_NS ? *m : zero;
}

static void
uids_add(uint32_t **a, size_t *n, size_t *cap, uint32_t uid)
{
	if (*n == *cap) {
		*cap = *cap < 16 ? 16 : *cap * 2;
		*a = xrealloc(*a, *cap * sizeof(**a));
	}
	(*a)[(*n)++] = uid;
}

/* Account msgs[i]'s contribution to the counts STATUS shows (sign -1
 * before a change, +1 after), and note a \Deleted one. */
static void
msg_count(struct mbox_priv *p, const struct mbox_msg *m, int sign)
{
	char flags[MAILDIR_FLAGS_MAX + 1];

	if (m->expunged)
		return;
	mbox_name_flags(m->name, flags);
	p->messages += (uint32_t)sign;
	if (!maildir_flags_has(flags, 'S'))
		p->unseen += (uint32_t)sign;
	if (sign > 0 && maildir_flags_has(flags, 'T'))
		uids_add(&p->del, &p->ndel, &p->del_cap, m->uid);
	if (!m->in_cur)
		p->recent += (uint32_t)sign;
}

static void
msg_count_all(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	size_t i;

	p->messages = p->unseen = p->recent = 0;
	p->nexpunged = p->nxuids = 0;
	for (i = 0; i < mb->n; i++) {
		msg_count(p, mbox_msg(mb, i), 1);
		if (mbox_msg(mb, i)->expunged) {
			p->nexpunged++;
			uids_add(&p->xuids, &p->nxuids, &p->xuids_cap,
			    mbox_msg(mb, i)->uid);
		}
	}
}


void
mbox_chg_add(struct mbox *mb, uint32_t uid)
{
	struct mbox_priv *p = mb->priv;

	uids_add(&p->chg, &p->nchg, &p->chg_cap, uid);
	p->dirty = true;
}

void
mbox_mod_add(struct mbox *mb, uint32_t uid)
{
	struct mbox_priv *p = mb->priv;

	uids_add(&p->mod, &p->nmod, &p->mod_cap, uid);
	mbox_chg_add(mb, uid);
}

/* The message is expunged (its file is gone): count it, and log it. */
static void
set_expunged(struct mbox *mb, size_t i, bool log)
{
	struct mbox_priv *p = mb->priv;
	struct mbox_msg *m = mbox_msg(mb, i);

	if (m->expunged)
		return;
	msg_count(p, m, -1);
	m->expunged = true;
	p->nexpunged++;
	uids_add(&p->xuids, &p->nxuids, &p->xuids_cap, m->uid);
	if (log)
		uids_add(&p->gone, &p->ngone, &p->gone_cap, m->uid);
}

static char *
sub_path(const struct mbox *mb, const char *sub, const char *name)
{
	return xasprintf("%s/%s/%s", mb->path, sub, name);
}

static void
msgs_append(struct mbox *mb, const struct mbox_msg *m)
{
	struct mbox_priv *p = mb->priv;

	size_t slot;

	if (p->seq_off + mb->n == p->seq_cap) {
		if (p->seq_off > 0 && p->seq_off >= p->seq_cap / 4) {
			/* room in front (purges moved the start): use it */
			memmove(p->seq_mem, mb->seq, mb->n * sizeof(*mb->seq));
			p->seq_off = 0;
		} else {
			p->seq_cap = p->seq_cap < 64 ? 64 : p->seq_cap * 2;
			p->seq_mem = xrealloc(p->seq_mem,
			    p->seq_cap * sizeof(*p->seq_mem));
		}
		mb->seq = p->seq_mem + p->seq_off;
	}
	if (p->nfree > 0) {
		slot = p->freeslots[--p->nfree];
	} else {
		if (p->nslab == p->slab_cap) {
			p->slab_cap = p->slab_cap < 64 ? 64 : p->slab_cap * 2;
			mb->slab = xrealloc(mb->slab,
			    p->slab_cap * sizeof(*mb->slab));
		}
		if (p->nslab >= UINT32_MAX)
			panic("mbox: too many messages in one folder");
		slot = p->nslab++;
	}
	mb->slab[slot] = *m;
	mb->seq[mb->n++] = (uint32_t)slot;
	msg_count(p, m, 1);
}

/* The entry at slot is no longer used (its message purged, or dropped
 * from the end of the list): the next message added takes it. */
static void
slot_free(struct mbox *mb, uint32_t slot)
{
	struct mbox_priv *p = mb->priv;

	if (p->nfree == p->free_cap) {
		p->free_cap = p->free_cap < 16 ? 16 : p->free_cap * 2;
		p->freeslots = xrealloc(p->freeslots,
		    p->free_cap * sizeof(*p->freeslots));
	}
	p->freeslots[p->nfree++] = slot;
}

static void
touched_add(struct mbox_priv *p, size_t i)
{
	if (p->ntouched == p->touched_cap) {
		p->touched_cap = p->touched_cap < 16 ? 16 : p->touched_cap * 2;
		p->touched = xrealloc(p->touched,
		    p->touched_cap * sizeof(*p->touched));
	}
	p->touched[p->ntouched++] = i;
}

/* msgs[i] now has this file name (the caller's malloc'd string). */
static void
set_name(struct mbox *mb, size_t i, char *name, bool in_cur)
{
	struct mbox_msg *m = mbox_msg(mb, i);

	msg_count(mb->priv, m, -1);
	mbox_name_free(mb->priv, m->name);
	m->name = name;
	m->in_cur = in_cur;
	msg_count(mb->priv, m, 1);
	touched_add(mb->priv, i);
}

/* After a sync: messages whose name changed get their flags from it,
 * and flags_changed when those differ from what the caller saw. */
static void
finish_touched(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	char flags[MAILDIR_FLAGS_MAX + 1];
	struct mbox_msg *m;
	size_t k;

	for (k = 0; k < p->ntouched; k++) {
		if (p->touched[k] >= mb->n)
			continue;	/* added, then rolled back */
		m = mbox_msg(mb, p->touched[k]);
		if (m->expunged)
			continue;
		mbox_name_flags(m->name, flags);
		if (mbox_flags_bits(flags) != m->flagbits) {
			m->flagbits = mbox_flags_bits(flags);
			m->flags_changed = true;
			if (p->nfchg < FCHG_MAX)
				uids_add(&p->fchg, &p->nfchg, &p->fchg_cap,
				    m->uid);
			else
				p->fchg_over = true;
		}
	}
	p->ntouched = 0;
}

static void
mark_expunged(struct mbox *mb, size_t i)
{
	struct mbox_msg *m = mbox_msg(mb, i);

	if (m->expunged)
		return;
	set_expunged(mb, i, true);
	if (m->cache_off != 0)
		mbox_priv(mb)->cache_dead++;
	mbox_priv(mb)->dirty = true;
}

/*
 * Claiming a directory's mtime after our own change. A handle whose
 * recorded mtime of a directory equals the directory's (it knows
 * every name in it) and that then renames or unlinks a file there under
 * the lock records the directory's new mtime, and logs it: no handle
 * needs to list the directory for that change. A change by another
 * program between our stat() calls in the same timestamp tick would be
 * attributed to us; kernels with fine-grained timestamps after a
 * stat() (Linux 6.13 and later on ext4, XFS, Btrfs, tmpfs) give such a
 * change a later mtime, older ones leave a window of one tick (a few
 * ms). Any file found missing re-lists (mbox_set_flags, mbox_expunge,
 * mbox_msg_info, mbox_uid_of_added), and new/ is never claimed:
 * deliveries land there without the lock.
 */
static bool
claim_begin(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	char *dpath;
	struct stat st;
	bool ok;

	if (!ts_set(p->cur_mtime))
		return false;
	dpath = xasprintf("%s/cur", mb->path);
	ok = stat(dpath, &st) == 0 && ts_eq(st.st_mtim, p->cur_mtime);
	free(dpath);
	return ok;
}

static void
claim_end(struct mbox *mb, bool claimed)
{
	struct mbox_priv *p = mb->priv;
	char *dpath;
	struct stat st;

	if (!claimed)
		return;
	dpath = xasprintf("%s/cur", mb->path);
	if (stat(dpath, &st) == 0 && st.st_mtim.tv_nsec != 0) {
		p->cur_mtime = st.st_mtim;
	} else {
		p->cur_mtime = (struct timespec){ 0, 0 };
	}
	p->dirty = true;
	free(dpath);
}

/* rename() that does not replace an existing target. */
static int
rename_noreplace(const char *from, const char *to)
{
	struct stat st;

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* No RENAME_NOREPLACE on this file system: check first (other
	 * petrel processes are kept out by the lock). */
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	return rename(from, to);
}

/* ---- the lock ---- */

int
mbox_lock(struct mbox *mb, const char **error_r)
{
	while (flock(mbox_priv(mb)->lock_fd, LOCK_EX) < 0) {
		if (errno != EINTR)
			return mbox_fail(error_r, "flock(%s/%s) failed: %s",
			    mb->path, MBOX_LOCK_NAME, strerror(errno));
	}
	return 0;
}

void
mbox_unlock(struct mbox *mb)
{
	if (flock(mbox_priv(mb)->lock_fd, LOCK_UN) < 0)
		log_warn("flock(%s/%s, LOCK_UN) failed: %s", mb->path,
		    MBOX_LOCK_NAME, strerror(errno));
}

/* ---- keywords (dovecot-keywords) ---- */

static bool
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	    a->st_size == b->st_size && ts_eq(a->st_mtim, b->st_mtim);
}

/* An IMAP flag-keyword (RFC 3501: an atom): the names go into FLAGS and
 * FETCH responses as they are, so one read from dovecot-keywords must not
 * hold a parenthesis, quote, brace, backslash (a "\\Deleted" there would
 * read as the system flag), wildcard, ']' or a non-ASCII octet. */
static bool
keyword_valid(const char *name)
{
	const unsigned char *p;

	if (name == NULL || *name == '\0' || strlen(name) > KEYWORD_MAX)
		return false;
	for (p = (const unsigned char *)name; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f ||
		    strchr("(){%*\"\\]", *p) != NULL)
			return false;
	}
	return true;
}

/* "<index> <name>" lines; index 0..25. Anything else is skipped. */
static void
keywords_parse(struct mbox *mb, char *buf)
{
	char *line, *next, *end, *name;
	unsigned long idx;
	size_t k;

	for (k = 0; k < 26; k++)
		xfree(&mb->keywords[k]);
	for (line = buf; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] < '0' || line[0] > '9')
			continue;
		errno = 0;
		idx = strtoul(line, &end, 10);
		if (errno != 0 || idx >= 26 || *end != ' ')
			continue;
		name = end + 1;
		name[strcspn(name, "\r")] = '\0';
		if (!keyword_valid(name) || mb->keywords[idx] != NULL)
			continue;
		mb->keywords[idx] = xstrdup(name);
	}
}

/* Re-read dovecot-keywords if it changed (or always, with force). A
 * missing or unreadable file keeps the names we know. */
static void
keywords_load(struct mbox *mb, bool force)
{
	struct mbox_priv *p = mb->priv;
	char *path = xasprintf("%s/%s", mb->path, MBOX_KEYWORDS_NAME);
	char *buf = NULL;
	struct stat st;
	ssize_t r;
	int fd = -1;

	if (!force && p->kw_seen && stat(path, &st) == 0 &&
	    same_file(&st, &p->kw_st))
		goto out;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("open(%s) failed: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		log_warn("fstat(%s) failed: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > KEYWORDS_FILE_MAX) {
		log_warn("%s: not a keyword file, ignored", path);
		goto out;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	r = pread(fd, buf, (size_t)st.st_size, 0);
	if (r < 0) {
		log_warn("read(%s) failed: %s", path, strerror(errno));
		goto out;
	}
	buf[r] = '\0';
	keywords_parse(mb, buf);
	p->kw_st = st;
	p->kw_seen = true;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(path);
}

/* Rewrite dovecot-keywords from mb->keywords, as Dovecot does: written
 * to dovecot-keywords.lock and renamed over it (Dovecot's own dot-lock,
 * which it takes only while it holds the dovecot-uidlist lock, as our
 * caller does, so a lock file found there is a stale one). Lock held. */
static int
keywords_write(struct mbox *mb)
{
	char *path = xasprintf("%s/%s", mb->path, MBOX_KEYWORDS_NAME);
	char *tmp = xasprintf("%s.lock", path);
	str_t s = STR_INIT;
	int fd, ret = -1;
	size_t k;

	for (k = 0; k < 26; k++) {
		if (mb->keywords[k] != NULL)
			str_printf(&s, "%zu %s\n", k, mb->keywords[k]);
	}
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		log_warn("open(%s) failed: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_full(fd, s.data != NULL ? s.data : "", s.len) < 0 ||
	    close(fd) < 0) {
		log_warn("write(%s) failed: %s", tmp, strerror(errno));
		(void)unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) < 0) {
		log_warn("rename(%s) failed: %s", tmp, strerror(errno));
		(void)unlink(tmp);
		goto out;
	}
	ret = 0;
out:
	str_free(&s);
	free(tmp);
	free(path);
	return ret;
}

static char
keyword_find(const struct mbox *mb, const char *name)
{
	size_t k;

	for (k = 0; k < 26; k++) {
		if (mb->keywords[k] != NULL &&
		    strcasecmp(mb->keywords[k], name) == 0)
			return (char)('a' + k);
	}
	return 0;
}

char
mbox_keyword_letter(struct mbox *mb, const char *name, bool create)
{
	const char *error;
	char letter;
	size_t k;
	int ulock;

	if (!keyword_valid(name))
		return 0;
	keywords_load(mb, false);
	letter = keyword_find(mb, name);
	/* A read-only handle may still name a new keyword: COPY and APPEND
	 * open their target read-only (no \Recent taken) but store flags. */
	if (letter != 0 || !create)
		return letter;
	if (mbox_lock(mb, &error) < 0) {
		log_warn("%s", error);
		return 0;
	}
	/* Dovecot names new keywords only while it holds its uidlist
	 * lock: so do we, and read the names again under it */
	if (mbox_legacy_uidlist_lock(mb, &ulock) < 0) {
		mbox_unlock(mb);
		return 0;
	}
	keywords_load(mb, true);
	letter = keyword_find(mb, name);
	for (k = 0; letter == 0 && k < 26; k++) {
		if (mb->keywords[k] != NULL)
			continue;
		mb->keywords[k] = xstrdup(name);
		if (keywords_write(mb) < 0) {
			xfree(&mb->keywords[k]);
			break;
		}
		letter = (char)('a' + k);
	}
	mbox_legacy_uidlist_unlock(mb, ulock);
	mbox_unlock(mb);
	return letter;
}

/* ---- the index: re-reading and merging ---- */

static bool folder_gone(const struct mbox *mb, const struct stat *st,
    const char **error_r);

struct sync_ctx {
	bool take_new;		/* move new/ to cur/ (and mark recent) */
	bool list;		/* list the directories if needed */
	struct mbox_import imp;	/* rebuilding: UIDs to keep */
	bool importing;
	size_t fresh_from;	/* msgs[fresh_from..] got new UIDs */
	uint32_t uidnext_before;
	bool assigned;
};

/* Is petrel-index still the file we last read or wrote? */
static bool
index_unchanged(const struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	char *path = xasprintf("%s/%s", mb->path, MBOX_INDEX_NAME);
	struct stat a, b;
	bool same;

	same = p->index_fd >= 0 && stat(path, &a) == 0 &&
	    fstat(p->index_fd, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino;
	free(path);
	return same;
}

/* First load: the handle takes over the parsed index. The entries'
 * names point into the index text; they are copied together into a block
 * of their own and the text (numbers the entries hold parsed) is freed,
 * which makes a handle about a third smaller for every message it holds
 * (each session of a folder has one). */
static void
index_adopt(struct mbox *mb, struct mbox_index *idx)
{
	struct mbox_priv *p = mb->priv;
	uintptr_t b = (uintptr_t)idx->buf;
	size_t total = 0, at = 0;
	char *names;

	for (size_t i = 0; i < idx->n; i++)
		total += strlen(idx->msgs[i].name) + 1;
	names = xmalloc_fill(total > 0 ? total : 1);	/* filled below */
	for (size_t i = 0; i < idx->n; i++) {
		char *name = idx->msgs[i].name;
		size_t len = strlen(name) + 1;
		uintptr_t a = (uintptr_t)name;

		memcpy(names + at, name, len);
		idx->msgs[i].name = names + at;
		at += len;
		if (idx->buf == NULL || a < b || a >= b + idx->buflen)
			free(name);	/* not in the text: its own copy */
	}
	free(idx->buf);
	if (idx->n >= UINT32_MAX)
		panic("mbox: too many messages in one folder");
	/* (a handle that lost its log and starts over has no messages
	   left, only the arrays) */
	free(mb->slab);
	free(p->seq_mem);
	free(p->buf);
	p->nfree = 0;
	mb->slab = idx->msgs;
	mb->n = idx->n;
	p->nslab = idx->n;
	p->slab_cap = idx->cap > idx->n ? idx->cap : idx->n;
	p->seq_cap = p->slab_cap + 1;
	p->seq_mem = xmalloc(p->seq_cap * sizeof(*p->seq_mem));
	p->seq_off = 0;
	mb->seq = p->seq_mem;
	for (size_t i = 0; i < idx->n; i++)
		mb->seq[i] = (uint32_t)i;
	p->buf = names;
	p->buflen = total > 0 ? total : 1;
	idx->msgs = NULL;
	idx->n = 0;
	idx->buf = NULL;
	mb->uidvalidity = idx->uidvalidity;
	mb->uidnext = idx->uidnext;
	p->cur_mtime = idx->cur_mtime;
	p->new_mtime = idx->new_mtime;
	p->cache_id = idx->cache_id;
	p->cache_dead = idx->cache_dead;
	p->loaded = true;
	msg_count_all(mb);
}

/* Another process rewrote the index: take its view, keeping what only
 * this handle knows (expunged entries until mbox_purge, newer cache
 * records). Both lists are sorted by uid. */
static void
index_merge(struct mbox *mb, struct mbox_index *idx)
{
	struct mbox_priv *p = mb->priv;
	size_t n0 = mb->n, i = 0, j = 0;
	uint32_t maxuid = n0 > 0 ? mbox_msg(mb, n0 - 1)->uid : 0;
	bool same_cache = idx->cache_id == 0 || idx->cache_id == p->cache_id;
	struct mbox_msg *m, *d, add;

	while (i < n0 || j < idx->n) {
		if (j == idx->n ||
		    (i < n0 && mbox_msg(mb, i)->uid < idx->msgs[j].uid)) {
			/* gone: another process found the file missing */
			set_expunged(mb, i, false);
			i++;
			continue;
		}
		d = &idx->msgs[j];
		if (i == n0 || mbox_msg(mb, i)->uid > d->uid) {
			if (d->uid > maxuid) {
				add = *d;
				add.name = xstrdup(d->name);
				add.recent = false;
				msgs_append(mb, &add);
			}
			j++;
			continue;
		}
		m = mbox_msg(mb, i);
		if (!m->expunged) {
			if (m->in_cur != d->in_cur ||
			    strcmp(m->name, d->name) != 0)
				set_name(mb, i, xstrdup(d->name), d->in_cur);
			if (!d->info_pending) {
				m->size = d->size;
				m->vsize = d->vsize;
				m->internaldate = d->internaldate;
				m->info_pending = false;
			} else if (!m->info_pending) {
				/* we know more */
				mbox_chg_add(mb, m->uid);
			}
			if (!same_cache || d->cache_off > m->cache_off)
				m->cache_off = d->cache_off;
			if (d->modseq > m->modseq)
				m->modseq = d->modseq;
		}
		i++;
		j++;
	}
	if (idx->uidnext > mb->uidnext)
		mb->uidnext = idx->uidnext;
	p->cur_mtime = idx->cur_mtime;
	p->new_mtime = idx->new_mtime;
	p->cache_dead = idx->cache_dead;
	if (!same_cache) {
		mbox_cache_close(mb);
		p->cache_id = idx->cache_id;
	}
}

/* A new UIDVALIDITY: the time, as Courier and Dovecot do, but above
 * the one a leftover petrel-cache remembers (an index rebuilt within
 * the same second must not reuse it). */
/*
 * A UIDVALIDITY never handed out before in this maildir: folders deleted
 * and made again within one second, or renamed away and a new one made
 * under the old name, must not get the same value (RFC 3501 2.3.1.1),
 * so the maildir keeps the last one given in "petrel-uidvalidity" (as
 * Dovecot keeps dovecot-uidvalidity). A folder's maildir is its parent
 * when it is a Maildir++ folder (has "maildirfolder"), else itself.
 * Failing to keep the file only loses that guarantee, so it is not an
 * error.
 */
static uint32_t
root_uidvalidity(const char *path, uint32_t v)
{
	char *marker = xasprintf("%s/maildirfolder", path);
	char *root, *file, buf[32];
	ssize_t r;
	int fd;

	if (access(marker, F_OK) == 0) {
		char *slash;

		root = xstrdup(path);
		while ((slash = strrchr(root, '/')) != NULL && slash[1] == '\0')
			*slash = '\0';		/* trailing slashes */
		if ((slash = strrchr(root, '/')) != NULL)
			*slash = '\0';
	} else {
		root = xstrdup(path);
	}
	free(marker);
	file = xasprintf("%s/petrel-uidvalidity", root);
	free(root);
	fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(file);
	if (fd < 0)
		return v;
	if (flock(fd, LOCK_EX) == 0) {
		r = pread(fd, buf, sizeof(buf) - 1, 0);
		if (r > 0) {
			unsigned long old;

			buf[r] = '\0';
			old = strtoul(buf, NULL, 10);
			if (old >= v && old < UINT32_MAX)
				v = (uint32_t)old + 1;
		}
		r = snprintf(buf, sizeof(buf), "%u\n", v);
		if (pwrite(fd, buf, (size_t)r, 0) == r)
			(void)ftruncate(fd, r);
	}
	close(fd);
	return v;
}

static uint32_t
new_uidvalidity(const struct mbox *mb)
{
	uint32_t v = (uint32_t)time(NULL), old;
	char *path = xasprintf("%s/%s", mb->path, MBOX_CACHE_NAME);
	unsigned char hdr[16];
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd >= 0) {
		r = pread(fd, hdr, sizeof(hdr), 0);
		if (r == (ssize_t)sizeof(hdr) &&
		    memcmp(hdr, "PTRLCCH1", 8) == 0) {
			old = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 |
			    (uint32_t)hdr[10] << 16 | (uint32_t)hdr[11] << 24;
			if (old >= v && old != UINT32_MAX)
				v = old + 1;
		}
		close(fd);
	}
	if (v == 0)
		v = 1;
	return root_uidvalidity(mb->path, v);
}

/* One change from the log (another handle's), applied as index_merge
 * applies a rewritten base. */
static void
log_apply(void *ctx, const struct mbox_log_item *it)
{
	struct mbox *mb = ctx;
	struct mbox_priv *p = mb->priv;
	const struct mbox_msg *d = &it->m;
	struct mbox_msg *m, add;
	long i;

	switch (it->type) {
	case 's':
		if (it->st.uidnext > mb->uidnext)
			mb->uidnext = it->st.uidnext;
		p->cur_mtime = it->st.cur_mtime;
		p->new_mtime = it->st.new_mtime;
		p->cache_dead = it->st.cache_dead;
		if (it->st.modseq > p->modseq)
			p->modseq = it->st.modseq;
		break;
	case 'e':
		i = mbox_find_uid(mb, d->uid);
		if (i >= 0)
			set_expunged(mb, (size_t)i, false);
		break;
	case 'm':
		i = mbox_find_uid(mb, d->uid);
		if (i < 0) {
			if (d->uid >= mb->uidnext)
				mb->uidnext = d->uid + 1;
			if (mb->n > 0 && d->uid <= mbox_msg(mb, mb->n - 1)->uid)
				break;	/* expunged and purged here */
			add = *d;
			add.name = xstrdup(d->name);
			add.recent = false;
			msgs_append(mb, &add);
			break;
		}
		m = mbox_msg(mb, i);
		if (m->expunged)
			break;
		if (m->in_cur != d->in_cur || strcmp(m->name, d->name) != 0)
			set_name(mb, (size_t)i, xstrdup(d->name), d->in_cur);
		if (!d->info_pending) {
			m->size = d->size;
			m->vsize = d->vsize;
			m->internaldate = d->internaldate;
			m->info_pending = false;
		}
		if (d->cache_off > m->cache_off)
			m->cache_off = d->cache_off;
		if (d->modseq > m->modseq)
			m->modseq = d->modseq;
		break;
	}
}

/* Apply what other handles appended to the log since we last looked.
 * A log that the base names but that is missing or another's was lost
 * (deleted): the UIDs it gave out are unknown, so the folder gets a new
 * UIDVALIDITY (a handle that is open fails, as when the folder is
 * recreated). 0 ok, -1 error, 1 lost. */
static int
log_refresh(struct mbox *mb, const char **error_r)
{
	struct mbox_priv *p = mb->priv;
	bool torn;
	int r;

	if (p->log_id == 0)
		return 0;
	if (p->log_fd >= 0) {
		/* still the file at the name? (deleted or replaced: lost) */
		char *path = xasprintf("%s/%s", mb->path, MBOX_LOG_NAME);
		struct stat a, b;
		bool same = stat(path, &a) == 0 && fstat(p->log_fd, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino;

		free(path);
		if (!same) {
			close(p->log_fd);
			p->log_fd = -1;
		}
	}
	if (p->log_fd < 0) {
		r = mbox_log_open(mb->path, p->log_id, &p->log_fd, error_r);
		if (r < 0)
			return -1;
		if (r == 0)
			return 1;
		p->log_off = mbox_log_start();
		p->log_torn = false;
	}
	r = mbox_log_read(p->log_fd, &p->log_off, &p->log_seq, log_apply, mb,
	    &torn, error_r);
	if (r < 0)
		return -1;
	p->log_torn = torn;
	return 0;
}

/* Before a change under the lock: apply what other handles logged
 * meanwhile, so that this handle's view of cur/ (and the mtime it may
 * claim) is current. Only when the base is unchanged; anything else
 * waits for the next sync. */
static void
log_catch_up(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	const char *error;

	if (p->index_fd < 0 || p->log_fd < 0 || !index_unchanged(mb))
		return;
	p->ntouched = 0;
	if (log_refresh(mb, &error) < 0)
		log_warn("%s", error);
	finish_touched(mb);
}

/* Bring msgs up to date with petrel-index and its log if another
 * process changed them. A missing or corrupt index: a loaded handle
 * keeps what it knows and lists everything again; a new one rebuilds
 * (importing UIDs). */
static int
index_refresh(struct mbox *mb, struct sync_ctx *ctx, const char **error_r)
{
	struct mbox_priv *p = mb->priv;
	struct timespec zero = { 0, 0 };
	struct mbox_index idx;
	struct stat st;
	bool lost = false, was_loaded = p->loaded;
	int r, fd = -1;

	if (p->index_fd >= 0 && index_unchanged(mb)) {
		r = log_refresh(mb, error_r);
		if (r <= 0)
			return r;
		mbox_fail(error_r, "%s/%s is lost: the folder must be "
		    "re-indexed (a new UIDVALIDITY)", mb->path, MBOX_LOG_NAME);
		return -2;
	}
	r = mbox_index_read(mb->path, false, &fd, &idx, error_r);
	if (r < 0)
		return -1;
	if (r == MBOX_INDEX_OK && idx.uidvalidity != mb->uidvalidity &&
	    p->loaded) {
		mbox_index_free(&idx);
		close(fd);
		mbox_fail(error_r, "%s: UIDVALIDITY changed from %u to %u "
		    "(folder recreated?)", mb->path, mb->uidvalidity,
		    idx.uidvalidity);
		return -2;
	}
	if (r == MBOX_INDEX_OK) {
		/* the log this base names: everything after log_seq */
		if (p->log_fd >= 0)
			close(p->log_fd);
		p->log_fd = -1;
		p->log_id = idx.log_id;
		p->log_seq = idx.log_seq;
		if (idx.modseq > p->modseq)
			p->modseq = idx.modseq;
		if (p->modseq == 0)
			p->dirty = true;	/* from before CONDSTORE: the
						   folder gets its first modseq */
		p->base_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		p->rewrite = idx.version < 2;	/* no log yet */
		if (!p->loaded)
			index_adopt(mb, &idx);
		else
			index_merge(mb, &idx);
		mbox_index_free(&idx);
		if (p->index_fd >= 0)
			close(p->index_fd);
		p->index_fd = fd;
		r = log_refresh(mb, error_r);
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (was_loaded) {
			mbox_fail(error_r, "%s/%s is lost: the folder must "
			    "be re-indexed (a new UIDVALIDITY)", mb->path,
			    MBOX_LOG_NAME);
			return -2;
		}
		log_warn("%s/%s is lost: re-indexing the folder with a new "
		    "UIDVALIDITY", mb->path, MBOX_LOG_NAME);
		lost = true;
		fd = -1;
		r = MBOX_INDEX_MISSING;
	}
	if (lost) {
		size_t i;

		/* start over: UIDs given out in the lost log are unknown */
		for (i = 0; i < mb->n; i++)
			mbox_name_free(p, mbox_msg(mb, i)->name);
		mb->n = 0;
		p->nslab = p->nfree = 0;	/* every slot free */
		p->loaded = false;
		p->log_id = 0;
		p->log_seq = 0;
		fd = p->index_fd;
		p->index_fd = -1;
	}
	/* no index: removed, or the folder was re-created (a handle
	 * that wrote ours into it would undo the new one's UIDs) */
	if (p->loaded && folder_gone(mb, NULL, error_r)) {
		if (fd >= 0)
			close(fd);
		mbox_index_free(&idx);
		return -2;
	}
	if (r == MBOX_INDEX_CORRUPT)
		log_warn("%s/%s is corrupt, rebuilding it", mb->path,
		    MBOX_INDEX_NAME);
	/* the file we will replace (-1: none, or not a regular file) */
	if (p->index_fd >= 0)
		close(p->index_fd);
	p->index_fd = fd;
	p->cur_mtime = p->new_mtime = zero;
	p->dirty = p->durable = p->rewrite = true;
	if (!p->loaded) {
		mbox_import_load(mb->path, r == MBOX_INDEX_CORRUPT ? &idx :
		    NULL, &ctx->imp);
		ctx->importing = true;
		if (ctx->imp.uidvalidity != 0 && !lost) {
			log_info("%s: keeping UIDVALIDITY %u and UIDs from %s",
			    mb->path, ctx->imp.uidvalidity, ctx->imp.source);
			mb->uidvalidity = ctx->imp.uidvalidity;
			mb->uidnext = ctx->imp.uidnext;
		} else {
			mb->uidvalidity = new_uidvalidity(mb);
			mb->uidnext = 1;
			if (!lost)
				mbox_legacy_create(mb);
		}
		p->cache_id = 0;
		p->cache_dead = 0;
		p->loaded = true;
		msg_count_all(mb);
		/* modseqs: the history is unknown, so start above anything
		 * a client may have seen (mbox_expunged.c) */
		if (r == MBOX_INDEX_CORRUPT && idx.header_ok &&
		    idx.modseq > p->modseq)
			p->modseq = idx.modseq;
		if (mbox_modseq_floor() > p->modseq)
			p->modseq = mbox_modseq_floor();
		p->xlog_reset = true;
	}
	mbox_index_free(&idx);
	return 0;
}

/* ---- listing cur/ and new/ ---- */

struct lent {
	size_t off;		/* name in the arena */
	size_t len;
	bool in_cur;
	unsigned char dtype;	/* d_type from readdir() */
};

struct listing {
	str_t arena;
	struct lent *ents;
	size_t n, cap;
};

struct fresh {
	char *name;		/* points into the arena */
	size_t len, klen;
	bool in_cur;
	unsigned char dtype;
	unsigned long long sec;	/* the name's time, for sorting */
	unsigned long usec;
	struct mbox_msg m;
};

/* A name we can keep in the index: no control characters. */
static bool
name_storable(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > NAME_MAX || name[0] == '.')
		return false;
	for (i = 0; i < len; i++) {
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	}
	return true;
}

static int
list_dir(struct mbox *mb, bool cur, struct listing *l, const char **error_r)
{
	char *dpath = xasprintf("%s/%s", mb->path, cur ? "cur" : "new");
	struct dirent *de;
	struct lent *e;
	size_t len;
	DIR *d;

	d = opendir(dpath);
	if (d == NULL) {
		mbox_fail(error_r, "opendir(%s) failed: %s", dpath,
		    strerror(errno));
		free(dpath);
		return -1;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		len = strlen(de->d_name);
		if (!name_storable(de->d_name, len) ||
		    (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;	/* directories, symlinks... */
		if (l->n == l->cap) {
			l->cap = l->cap < 256 ? 256 : l->cap * 2;
			l->ents = xrealloc(l->ents, l->cap * sizeof(*l->ents));
		}
		e = &l->ents[l->n++];
		e->off = l->arena.len;
		e->len = len;
		e->in_cur = cur;
		e->dtype = de->d_type;
		str_append_n(&l->arena, de->d_name, len + 1);
	}
	if (errno != 0) {
		mbox_fail(error_r, "readdir(%s) failed: %s", dpath,
		    strerror(errno));
		closedir(d);
		free(dpath);
		return -1;
	}
	closedir(d);
	free(dpath);
	return 0;
}

/* Open-addressing table of msgs indexes by stable key. The hash is
 * kept in the slot so a probe touches a name only when it matches. */
struct kh_slot {
	uint32_t idx;		/* position in cand + 1, 0 empty */
	uint32_t hash;
};

/* The messages a listing is matched against: those in the directories
 * listed. When only new/ is listed (a delivery), that is the few
 * messages in new/, not the whole folder. */
struct keyhash {
	struct kh_slot *slots;
	size_t mask;
	size_t *cand;		/* msgs indexes */
	size_t ncand;
};

static uint32_t
kh_hash(const char *key, size_t klen)
{
	return (uint32_t)mbox_hash64(0, key, klen);
}

/* cand position + 1 of key, or 0; *slot_r: where it is or would go. */
static size_t
kh_lookup(const struct keyhash *h, const struct mbox *mb, const char *key,
    size_t klen, uint32_t hash, size_t *slot_r)
{
	const struct kh_slot *sl;
	size_t s;

	for (s = hash & h->mask; (sl = &h->slots[s])->idx != 0;
	    s = (s + 1) & h->mask) {
		if (sl->hash == hash &&
		    key_eq(mbox_msg(mb, h->cand[sl->idx - 1])->name, key, klen))
			break;
	}
	*slot_r = s;
	return h->slots[s].idx;
}

static size_t
kh_find(const struct keyhash *h, const struct mbox *mb, const char *key,
    size_t klen)
{
	size_t s;

	return kh_lookup(h, mb, key, klen, kh_hash(key, klen), &s);
}

/* The non-expunged messages in the listed directories, by key; a
 * duplicate key keeps the first. */
static void
kh_build(struct keyhash *h, const struct mbox *mb, const bool list[2])
{
	const struct mbox_priv *p = mb->priv;
	size_t cap = 16, i, s, k, klen, left;
	const char *name;
	uint32_t hash;

	h->ncand = 0;
	if (list[1]) {
		h->cand = xmalloc((mb->n + 1) * sizeof(*h->cand));
		for (i = 0; i < mb->n; i++) {
			if (!mbox_msg(mb, i)->expunged)
				h->cand[h->ncand++] = i;
		}
	} else {
		/* only new/: its messages are counted (recent), and they
		 * are the last ones but for a few left by EXAMINE */
		h->cand = xmalloc((p->recent + 1) * sizeof(*h->cand));
		for (i = mb->n, left = p->recent; left > 0 && i-- > 0; ) {
			if (mbox_msg(mb, i)->expunged || mbox_msg(mb, i)->in_cur)
				continue;
			h->cand[h->ncand++] = i;
			left--;
		}
		/* ascending, as the caller walks them */
		for (k = 0; k < h->ncand / 2; k++) {
			size_t t = h->cand[k];

			h->cand[k] = h->cand[h->ncand - 1 - k];
			h->cand[h->ncand - 1 - k] = t;
		}
	}
	while (cap < h->ncand * 2)
		cap *= 2;
	h->slots = xcalloc(cap, sizeof(*h->slots));
	h->mask = cap - 1;
	for (k = 0; k < h->ncand; k++) {
		name = mbox_msg(mb, h->cand[k])->name;
		klen = key_len(name);
		hash = kh_hash(name, klen);
		if (kh_lookup(h, mb, name, klen, hash, &s) != 0)
			continue;
		h->slots[s].idx = (uint32_t)(k + 1);
		h->slots[s].hash = hash;
	}
}

/* "<secs>.M<usecs>..." as numbers, for delivery order. */
static void
name_time(const char *name, unsigned long long *sec, unsigned long *usec)
{
	char *end;

	*sec = strtoull(name, &end, 10);
	*usec = 0;
	if (end[0] == '.' && end[1] == 'M')
		*usec = strtoul(end + 2, NULL, 10);
}

/* Delivery order (time, then the stable key), cur/ before new/ for
 * the same key, so duplicates end up next to each other. */
static int
fresh_cmp(const void *a, const void *b)
{
	const struct fresh *x = a, *y = b;
	size_t n;
	int c;

	if (x->sec != y->sec)
		return x->sec < y->sec ? -1 : 1;
	if (x->usec != y->usec)
		return x->usec < y->usec ? -1 : 1;
	n = x->klen < y->klen ? x->klen : y->klen;
	c = memcmp(x->name, y->name, n);
	if (c != 0)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return (int)y->in_cur - (int)x->in_cur;
}

static int
fresh_uid_cmp(const void *a, const void *b)
{
	const struct fresh *x = a, *y = b;

	return x->m.uid < y->m.uid ? -1 : x->m.uid > y->m.uid;
}

/* Bytes and bytes with every bare LF counted as CRLF. */
static int
count_vsize(int fd, uint64_t *size_r, uint64_t *vsize_r)
{
	static const size_t bufsize = 65536;
	char *buf = xmalloc(bufsize);
	uint64_t size = 0, extra = 0;
	char prev = '\0';
	ssize_t n, i;

	for (;;) {
		n = read(fd, buf, bufsize);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (i = 0; i < n; i++) {
			if (buf[i] == '\n' && prev != '\r')
				extra++;
			prev = buf[i];
		}
		size += (uint64_t)n;
	}
	free(buf);
	if (n < 0)
		return -1;
	*size_r = size;
	*vsize_r = size + extra;
	return 0;
}

static void
info_set(struct mbox_msg *m, const struct maildir_name *mn,
    const struct stat *st, uint64_t vsize)
{
	m->internaldate = (long long)st->st_mtim.tv_sec;
	m->size = mn->has_size ? mn->size : (uint64_t)st->st_size;
	m->vsize = mn->has_vsize ? mn->vsize : vsize;
	m->info_pending = false;
}

static void
name_info(const char *name, struct maildir_name *mn)
{
	if (maildir_name_parse(name, strlen(name), mn) < 0)
		mn->has_size = mn->has_vsize = false;
}

/* Size, vsize and internaldate of a message from its file: stat() it,
 * and read it when the name has no W=. 0 ok, 1 it is gone (vanished
 * or not a regular file). */
static int
file_info(const struct mbox *mb, struct mbox_msg *m)
{
	struct maildir_name mn;
	char *path = mbox_msg_path(mb, m);
	struct stat st;
	uint64_t size, vsize = 0;
	int fd = -1, ret = 1;

	name_info(m->name, &mn);
	if (!mn.has_vsize) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
		    O_NONBLOCK);
		if (fd < 0 || fstat(fd, &st) < 0) {
			if (errno != ENOENT && errno != ELOOP)
				log_warn("open(%s) failed: %s", path,
				    strerror(errno));
			goto out;
		}
	} else if (lstat(path, &st) < 0) {
		if (errno != ENOENT)
			log_warn("stat(%s) failed: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode))
		goto out;
	if (!mn.has_vsize && count_vsize(fd, &size, &vsize) < 0) {
		log_warn("read(%s) failed: %s", path, strerror(errno));
		vsize = (uint64_t)st.st_size;
	}
	info_set(m, &mn, &st, vsize);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

int
mbox_msg_info(struct mbox *mb, size_t i, const char **error_r)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct mbox_msg *m = mbox_msg(mb, i);

		if (!m->info_pending)
			return 0;
		if (m->expunged)
			return 1;
		if (file_info(mb, m) == 0) {
			mbox_chg_add(mb, m->uid);
			return 0;
		}
		/* renamed by another session meanwhile? (list again: a
		 * claimed mtime may hide another program's rename) */
		mbox_priv(mb)->cur_mtime = (struct timespec){ 0, 0 };
		mbox_priv(mb)->new_mtime = (struct timespec){ 0, 0 };
		if (attempt == 0 && mbox_sync(mb, NULL, error_r) < 0)
			return -1;
	}
	return 1;
}

void
mbox_msg_learn(struct mbox *mb, size_t i, const struct stat *st,
    uint64_t vsize)
{
	struct mbox_msg *m = mbox_msg(mb, i);
	struct maildir_name mn;

	if (!m->info_pending || !S_ISREG(st->st_mode))
		return;
	name_info(m->name, &mn);
	info_set(m, &mn, st, vsize);
	mbox_chg_add(mb, m->uid);
}

/* Is there a file of a message named so (any type: lstat), or, with
 * regular, a regular file (readdir() did not say)? */
static bool
msg_file_exists(const struct mbox *mb, bool in_cur, const char *name,
    bool regular)
{
	char *path = sub_path(mb, in_cur ? "cur" : "new", name);
	struct stat st;
	bool ok = lstat(path, &st) == 0 && (!regular || S_ISREG(st.st_mode));

	free(path);
	return ok;
}

static bool
fresh_same_key(const struct fresh *a, const struct fresh *b)
{
	return a->klen == b->klen && memcmp(a->name, b->name, a->klen) == 0;
}

struct match {
	size_t *chosen;		/* per cand position: listing index + 1 */
	size_t *fresh;		/* listing indexes of unknown keys */
	size_t nfresh;
	size_t missing;		/* known, in a listed directory, not seen */
};

static void
match_listing(const struct mbox *mb, const struct keyhash *h,
    const struct listing *l, const bool list[2], struct match *mt)
{
	const struct lent *e, *c;
	const struct mbox_msg *m;
	const char *name;
	size_t k, j;

	memset(mt->chosen, 0, (h->ncand + 1) * sizeof(*mt->chosen));
	mt->nfresh = mt->missing = 0;
	for (k = 0; k < l->n; k++) {
		e = &l->ents[k];
		name = l->arena.data + e->off;
		j = kh_find(h, mb, name, key_len(name));
		if (j == 0) {
			mt->fresh[mt->nfresh++] = k;
			continue;
		}
		j--;
		if (mt->chosen[j] != 0) {
			/* the same key twice: a rename during readdir can
			 * show both names; keep the one that exists */
			c = &l->ents[mt->chosen[j] - 1];
			if (!msg_file_exists(mb, c->in_cur,
			    l->arena.data + c->off, false))
				mt->chosen[j] = k + 1;
			continue;
		}
		mt->chosen[j] = k + 1;
	}
	for (j = 0; j < h->ncand; j++) {
		m = mbox_msg(mb, h->cand[j]);
		if (!m->expunged && mt->chosen[j] == 0 && list[m->in_cur])
			mt->missing++;
	}
}

/* New files: dedupe, stat, give UIDs (imported or next), append. */
static int
add_fresh(struct mbox *mb, struct sync_ctx *ctx, const struct listing *l,
    const struct match *mt, bool incomplete[2], const char **error_r)
{
	struct mbox_priv *p = mb->priv;
	struct mbox_import_ent *ie;
	struct fresh *f;
	size_t nf = 0, k, out;
	uint32_t last;
	char flags[MAILDIR_FLAGS_MAX + 1];

	if (mt->nfresh == 0)
		return 0;
	f = xcalloc(mt->nfresh, sizeof(*f));
	for (k = 0; k < mt->nfresh; k++) {
		const struct lent *e = &l->ents[mt->fresh[k]];

		f[nf].name = l->arena.data + e->off;
		f[nf].len = e->len;
		f[nf].klen = key_len(f[nf].name);
		f[nf].in_cur = e->in_cur;
		f[nf].dtype = e->dtype;
		name_time(f[nf].name, &f[nf].sec, &f[nf].usec);
		nf++;
	}
	qsort(f, nf, sizeof(*f), fresh_cmp);
	/* Nothing is read or stat()ed here (a sync of a big new folder
	 * only lists it): size, vsize and internaldate wait until a
	 * command needs them (mbox_msg_info). */
	for (k = out = 0; k < nf; k++) {
		if (k + 1 < nf && fresh_same_key(&f[k], &f[k + 1]) &&
		    !msg_file_exists(mb, f[k].in_cur, f[k].name, false))
			continue;	/* renamed during the listing */
		if (out > 0 && fresh_same_key(&f[out - 1], &f[k]))
			continue;	/* same key in cur/ and new/ */
		if (f[k].dtype == DT_UNKNOWN &&
		    !msg_file_exists(mb, f[k].in_cur, f[k].name, true)) {
			incomplete[f[k].in_cur] = true;
			continue;
		}
		f[k].m.info_pending = true;
		f[out++] = f[k];
	}
	nf = out;
	for (k = 0; ctx->importing && k < nf; k++) {
		ie = mbox_import_find(&ctx->imp, f[k].name, f[k].klen);
		if (ie != NULL && !ie->used) {
			ie->used = true;
			f[k].m.uid = ie->uid;
		}
	}
	ctx->uidnext_before = mb->uidnext;
	for (k = 0; k < nf; k++) {
		if (f[k].m.uid != 0)
			continue;
		if (mb->uidnext == 0 || mb->uidnext == UINT32_MAX) {
			free(f);
			return mbox_fail(error_r, "%s: out of UIDs (UIDNEXT "
			    "%u)", mb->path, mb->uidnext);
		}
		f[k].m.uid = mb->uidnext++;
	}
	if (ctx->importing)
		qsort(f, nf, sizeof(*f), fresh_uid_cmp);
	ctx->fresh_from = mb->n;
	ctx->assigned = nf > 0;
	last = mb->n > 0 ? mbox_msg(mb, mb->n - 1)->uid : 0;
	for (k = 0; k < nf; k++) {
		if (f[k].m.uid <= last)
			continue;	/* cannot happen: UIDs only grow */
		last = f[k].m.uid;
		f[k].m.name = xstrndup(f[k].name, f[k].len);
		f[k].m.in_cur = f[k].in_cur;
		mbox_name_flags(f[k].m.name, flags);
		f[k].m.flagbits = mbox_flags_bits(flags);
		msgs_append(mb, &f[k].m);
		mbox_mod_add(mb, f[k].m.uid);
	}
	if (nf > 0)
		p->dirty = p->durable = true;
	free(f);
	return 0;
}

/* Was the directory perhaps changing while it was listed? Its mtime
 * moved, or it is so recent that a change in the same timestamp tick
 * (a few ms) would not have moved it. */
static bool
list_disturbed(const struct stat *before, const struct stat *after,
    const struct timespec *now)
{
	long long dt;

	if (!ts_eq(before->st_mtim, after->st_mtim))
		return true;
	dt = ((long long)now->tv_sec - (long long)before->st_mtim.tv_sec) *
	    1000000000LL + (now->tv_nsec - before->st_mtim.tv_nsec);
	return dt < LIST_QUIET_NS && dt > -1000000000LL;
}

static int
stat_sub(const struct mbox *mb, const char *sub, struct stat *st,
    const char **error_r)
{
	char *dpath = xasprintf("%s/%s", mb->path, sub);
	int ret = 0;

	if (stat(dpath, st) < 0)
		ret = mbox_fail(error_r, "stat(%s) failed: %s", dpath,
		    strerror(errno));
	free(dpath);
	return ret;
}

/* Was the folder deleted or re-created since the handle was opened?
 * Its cur/ is missing, or (st: cur/'s stat) is another directory, or
 * (when cur/ changed: the only way a re-created folder can look like
 * the old one is reusing cur/'s inode number) another folder's
 * petrel-mailboxid is there. */
static bool
folder_gone(const struct mbox *mb, const struct stat *st,
    const char **error_r)
{
	const struct mbox_priv *p = mb->priv;
	char *cur = xasprintf("%s/cur", mb->path);
	struct stat cst;
	bool gone, look = true;

	if (st == NULL) {
		gone = lstat(cur, &cst) < 0 ? errno == ENOENT :
		    cst.st_dev != p->cur_dev || cst.st_ino != p->cur_ino;
	} else {
		gone = st->st_dev != p->cur_dev || st->st_ino != p->cur_ino;
		look = !ts_set(p->cur_mtime) ||
		    !ts_eq(p->cur_mtime, st->st_mtim);
	}
	free(cur);
	if (!gone && look && p->mailboxid != NULL) {
		char id[MBOX_OBJECTID_MAX + 1];
		const char *err;
		int r = mbox_mailboxid_peek(mb->path, id, &err);

		gone = r == 0 || (r > 0 && strcmp(id, p->mailboxid) != 0);
	}
	if (gone)
		mbox_fail(error_r, "%s was deleted or re-created", mb->path);
	return gone;
}

/*
 * List cur/ and new/ where their mtime differs from the recorded one,
 * and bring msgs up to date: renamed files (same stable key) keep their
 * UID, new ones get UIDs, missing ones are expunged -- but only after a
 * listing during which the directory provably did not change (another
 * program's rename during readdir() can hide a file): otherwise the
 * listing is repeated, and if it stays busy the missing ones wait for
 * the next sync.
 */
static int
dirs_sync(struct mbox *mb, struct sync_ctx *ctx, const char **error_r)
{
	static const char *const subs[2] = { "new", "cur" };
	static const struct timespec pause = { 0, LIST_QUIET_NS };
	struct mbox_priv *p = mb->priv;
	struct timespec *rec[2] = { &p->new_mtime, &p->cur_mtime };
	struct listing l = { STR_INIT, NULL, 0, 0 };
	struct match mt = { NULL, NULL, 0, 0 };
	bool list[2], incomplete[2] = { false, false }, stable;
	struct keyhash h = { NULL, 0, NULL, 0 };
	struct stat st[2], st2;
	struct timespec now, cnow, t;
	struct mbox_msg *m;
	int d, attempt, ret = -1;
	size_t j;

	clock_gettime(CLOCK_REALTIME_COARSE, &cnow);
	clock_gettime(CLOCK_REALTIME, &now);
	for (d = 0; d < 2; d++) {
		if (stat_sub(mb, subs[d], &st[d], error_r) < 0)
			return folder_gone(mb, NULL, error_r) ? -2 : -1;
		if (d == 1 && folder_gone(mb, &st[d], error_r))
			return -2;
		list[d] = !ts_set(*rec[d]) || !ts_eq(*rec[d], st[d].st_mtim);
	}
	if (!list[0] && !list[1])
		return 0;

	kh_build(&h, mb, list);
	mt.chosen = xcalloc(h.ncand + 1, sizeof(*mt.chosen));
	for (attempt = 1; ; attempt++) {
		str_truncate(&l.arena, 0);
		l.n = 0;
		for (d = 0; d < 2; d++) {
			if (list[d] && list_dir(mb, d == 1, &l, error_r) < 0)
				goto out;
		}
		free(mt.fresh);
		mt.fresh = xcalloc(l.n + 1, sizeof(*mt.fresh));
		match_listing(mb, &h, &l, list, &mt);
		stable = true;
		for (d = 0; d < 2 && mt.missing > 0; d++) {
			if (list[d] && (stat_sub(mb, subs[d], &st2, error_r) < 0 ||
			    list_disturbed(&st[d], &st2, &now)))
				stable = false;
		}
		if (stable || attempt == LIST_ATTEMPTS)
			break;
		nanosleep(&pause, NULL);
		clock_gettime(CLOCK_REALTIME_COARSE, &cnow);
		clock_gettime(CLOCK_REALTIME, &now);
		for (d = 0; d < 2; d++) {
			if (list[d] && stat_sub(mb, subs[d], &st[d], error_r) < 0)
				goto out;
		}
	}

	for (size_t c = 0; c < h.ncand; c++) {
		const struct lent *e;

		j = h.cand[c];
		m = mbox_msg(mb, j);
		if (m->expunged)
			continue;
		if (mt.chosen[c] == 0) {
			if (!list[m->in_cur])
				continue;
			/* gone, unless the listing may have missed it */
			if (!stable ||
			    msg_file_exists(mb, m->in_cur, m->name, false))
				incomplete[m->in_cur] = true;
			else
				mark_expunged(mb, j);
			continue;
		}
		e = &l.ents[mt.chosen[c] - 1];
		if (m->in_cur != e->in_cur ||
		    strcmp(m->name, l.arena.data + e->off) != 0) {
			set_name(mb, j, xstrndup(l.arena.data + e->off,
			    e->len), e->in_cur);
			mbox_mod_add(mb, m->uid);
		}
	}
	if (add_fresh(mb, ctx, &l, &mt, incomplete, error_r) < 0)
		goto out;
	for (d = 0; d < 2; d++) {
		if (!list[d])
			continue;
		t = incomplete[d] ? (struct timespec){ 0, 0 } :
		    ts_trusted(&st[d], &cnow);
		if (!ts_eq(t, *rec[d])) {
			*rec[d] = t;
			p->dirty = true;
		}
	}
	ret = 0;
out:
	str_free(&l.arena);
	free(l.ents);
	free(mt.chosen);
	free(mt.fresh);
	free(h.slots);
	free(h.cand);
	return ret;
}

/* Unless readonly: move new/ files to cur/ (":2," appended) and mark
 * them recent in this handle. Trouble with one file is logged and the
 * file left for the next sync. */
static void
take_new(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	struct timespec zero = { 0, 0 };
	struct mbox_msg *m;
	char *from, *to, *newname;
	bool claimed = false, any = false;
	size_t i;

	/* new/ holds few messages: look for them from the end, where
	 * new ones are, and only as far as the recent count says */
	for (i = mb->n; p->recent > 0 && i-- > 0; ) {
		m = mbox_msg(mb, i);
		if (m->expunged || m->in_cur)
			continue;
		if (!any) {
			claimed = claim_begin(mb);
			any = true;
		}
		newname = strchr(m->name, ':') != NULL ? xstrdup(m->name) :
		    xasprintf("%s:2,", m->name);
		from = sub_path(mb, "new", m->name);
		to = sub_path(mb, "cur", newname);
		if (rename_noreplace(from, to) == 0) {
			set_name(mb, i, newname, true);
			if (!m->recent)
				mb->nrecent++;
			m->recent = true;
			mbox_chg_add(mb, m->uid);
			newname = NULL;
		} else if (errno == ENOENT) {
			/* moved or deleted by someone else: look again */
			p->new_mtime = p->cur_mtime = zero;
			p->dirty = true;
		} else {
			log_warn("rename(%s, %s) failed: %s", from, to,
			    strerror(errno));
		}
		free(newname);
		free(from);
		free(to);
	}
	/* (an ENOENT above has cleared cur_mtime: nothing to claim) */
	if (any)
		claim_end(mb, claimed && ts_set(p->cur_mtime));
}

/*
 * \Recent (RFC 3501 2.3.2, RFC 9051 2.3.2): a message is \Recent in
 * exactly one session, the first that has the folder open read-write
 * and syncs after the message arrived, however it came (delivery,
 * APPEND, COPY, MOVE, from this process or another). petrel-recent
 * holds "<uidvalidity> <uid>\n": no session has taken the messages from
 * uid on. A read-write handle that syncs with take_new and finds such
 * messages marks them recent and moves the file's uid to UIDNEXT, under
 * the lock, so exactly one handle gets each. Read-only handles (EXAMINE,
 * STATUS, the targets of COPY and APPEND) show them recent without
 * taking them; a POP3 maildrop ignores them. Files moved from new/ to
 * cur/ are recent in the handle that moved them (take_new), as before.
 * A missing file is made: when the index was just built, at UIDNEXT
 * (what was there before is not new), else at the first UID this sync
 * gave out. Losing the file loses only \Recent, so it is written by
 * rename() without fsync.
 */
static bool
recent_read(const char *folder, uint32_t uidvalidity, uint32_t *uid_r)
{
	char *path = xasprintf("%s/%s", folder, MBOX_RECENT_NAME);
	char buf[32], *q;
	uint64_t v[2] = { 0, 0 };
	ssize_t r;
	int fd, k;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	free(path);
	if (fd < 0)
		return false;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return false;
	buf[r] = '\0';
	q = buf;
	for (k = 0; k < 2; k++) {
		if (*q < '0' || *q > '9')
			return false;
		for (; *q >= '0' && *q <= '9' && v[k] <= UINT32_MAX; q++)
			v[k] = v[k] * 10 + (uint64_t)(*q - '0');
		if (v[k] > UINT32_MAX || *q++ != (k == 0 ? ' ' : '\n'))
			return false;
	}
	if (*q != '\0' || v[0] != uidvalidity || v[1] == 0)
		return false;
	*uid_r = (uint32_t)v[1];
	return true;
}

static void
recent_write(const struct mbox *mb, uint32_t uid)
{
	char *path = xasprintf("%s/%s", mb->path, MBOX_RECENT_NAME);
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char buf[32];
	int fd, len;

	len = snprintf(buf, sizeof(buf), "%u %u\n", mb->uidvalidity, uid);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0 || write_full(fd, buf, (size_t)len) < 0 ||
	    close(fd) < 0 || rename(tmp, path) < 0) {
		log_warn("%s: cannot write %s: %s", mb->path,
		    MBOX_RECENT_NAME, strerror(errno));
		if (fd >= 0)
			(void)unlink(tmp);
	}
	free(tmp);
	free(path);
}

/* After a sync that published its changes (lock held): take or show
 * the messages no session has taken as \Recent yet. built: the index
 * was built in this sync; first_new: the first UID this sync gave out
 * (UIDNEXT if none). */
static void
recent_sync(struct mbox *mb, bool take, bool built, uint32_t first_new)
{
	struct mbox_priv *p = mb->priv;
	uint32_t top = mb->n > 0 ? mbox_msg(mb, mb->n - 1)->uid : 0, r;
	bool take_them = take && !mb->readonly;
	struct mbox_msg *m;
	size_t i;

	if (p->keep_new || (p->recent_uid != 0 && top < p->recent_uid))
		return;		/* nothing that can be unclaimed */
	if (!recent_read(mb->path, mb->uidvalidity, &r)) {
		r = built ? mb->uidnext : first_new;
		recent_write(mb, r);
	}
	if (r > mb->uidnext)
		r = mb->uidnext;
	if (take_them || mb->readonly) {
		for (i = mb->n; i-- > 0 && mbox_msg(mb, i)->uid >= r; ) {
			m = mbox_msg(mb, i);
			if (m->expunged || m->recent)
				continue;
			m->recent = true;
			mb->nrecent++;
		}
	}
	if (take_them && r < mb->uidnext) {
		r = mb->uidnext;
		recent_write(mb, r);
	}
	p->recent_uid = r;
	/* read-only: shown up to top, look again only for newer ones */
	if (mb->readonly && top >= r)
		p->recent_uid = top + 1;
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
changes_clear(struct mbox_priv *p)
{
	p->nchg = p->ngone = p->nmod = 0;
	if (p->mod_cap > 1024) {
		xfree(&p->mod);
		p->mod_cap = 0;
	}
	if (p->chg_cap > 1024) {
		xfree(&p->chg);
		p->chg_cap = 0;
	}
	if (p->gone_cap > 1024) {
		xfree(&p->gone);
		p->gone_cap = 0;
	}
}

/* Write msgs to petrel-index (compaction, or the first write), with a
 * new log when there is none. 0 ok, -1 error. */
static int
base_write(struct mbox *mb, const char **error_r)
{
	struct mbox_priv *p = mb->priv;
	uint32_t id = p->log_id;
	int fd, lfd = -1;
	struct stat st;

	if (id == 0 || p->log_fd < 0) {
		/* the log first: a base never names a log that is not
		 * there (a missing one means it was lost) */
		id = mbox_random_id();
		if (mbox_log_create(mb->path, id, p->durable, &lfd,
		    error_r) < 0)
			return -1;
	}
	if (mbox_index_write(mb, p->durable, id, p->log_seq, &fd,
	    error_r) < 0) {
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	if (lfd >= 0) {
		if (p->log_fd >= 0)
			close(p->log_fd);
		p->log_fd = lfd;
		p->log_id = id;
	} else if (ftruncate(p->log_fd, (off_t)mbox_log_start()) < 0) {
		/* harmless: its records are all <= log_seq of the base */
		log_warn("ftruncate(%s/%s) failed: %s", mb->path,
		    MBOX_LOG_NAME, strerror(errno));
	}
	p->log_off = mbox_log_start();
	p->log_torn = false;
	if (p->index_fd >= 0)
		close(p->index_fd);
	p->index_fd = fd;
	p->base_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	p->rewrite = false;
	return 0;
}

/* Append the changes since the last write as one log record. 0 ok, -1
 * error. */
static int
log_write(struct mbox *mb, const char **error_r)
{
	struct mbox_priv *p = mb->priv;
	struct mbox_log_state st;
	str_t b = STR_INIT;
	struct stat lst;
	uint32_t last = 0;
	long i;
	size_t k;
	int ret = -1;

	if (p->log_torn) {
		/* a torn record (a crash) ends the log: cut it off */
		if (ftruncate(p->log_fd, (off_t)p->log_off) < 0)
			return mbox_fail(error_r, "ftruncate(%s/%s) failed: "
			    "%s", mb->path, MBOX_LOG_NAME, strerror(errno));
		p->log_torn = false;
	}
	memset(&st, 0, sizeof(st));
	st.uidnext = mb->uidnext;
	st.modseq = p->modseq;
	st.cur_mtime = p->cur_mtime;
	st.new_mtime = p->new_mtime;
	st.cache_id = p->cache_id;
	st.cache_dead = p->cache_dead;
	st.messages = p->messages;
	st.unseen = p->unseen;
	st.recent = p->recent;
	mbox_log_put_state(&b, &st);
	if (p->ngone > 1)
		qsort(p->gone, p->ngone, sizeof(*p->gone), uid_cmp);
	for (k = 0; k < p->ngone; k++) {
		if (k > 0 && p->gone[k] == p->gone[k - 1])
			continue;
		mbox_log_put_expunge(&b, p->gone[k]);
	}
	if (p->nchg > 1)
		qsort(p->chg, p->nchg, sizeof(*p->chg), uid_cmp);
	for (k = 0; k < p->nchg; k++) {
		if (p->chg[k] == last)
			continue;
		last = p->chg[k];
		i = mbox_find_uid(mb, last);
		if (i < 0 || mbox_msg(mb, i)->expunged)
			continue;
		mbox_log_put_msg(&b, mbox_msg(mb, i));
	}
	if (mbox_log_append(p->log_fd, p->log_seq + 1, &b, p->durable,
	    error_r) < 0) {
		/* whatever part reached the file is torn: cut it next
		 * time */
		p->log_torn = true;
		goto out;
	}
	p->log_seq++;
	if (fstat(p->log_fd, &lst) == 0)
		p->log_off = (uint64_t)lst.st_size;
	ret = 0;
out:
	str_free(&b);
	return ret;
}

/* Before publishing (lock held, the handle current): the changes that
 * take a modseq get the next one, expunges are recorded with it in
 * petrel-expunged. */
static void
modseq_assign(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	uint64_t before;
	size_t k, n;
	long i;

	if (p->modseq == 0)
		p->modseq = mbox_modseq_floor();
	before = p->modseq;
	if (p->xlog_reset) {
		mbox_xlog_reset(mb, before);
		p->xlog_reset = false;
	}
	if (p->nmod == 0 && p->ngone == 0)
		return;
	p->modseq++;
	for (k = 0; k < p->nmod; k++) {
		i = mbox_find_uid(mb, p->mod[k]);
		if (i >= 0)
			mbox_msg(mb, i)->modseq = p->modseq;
	}
	/* (mod is cleared with the other changes once published: if the
	 * write fails they get a newer modseq at the next attempt, above
	 * whatever other handles published meanwhile) */
	if (p->ngone == 0)
		return;
	if (p->ngone > 1)
		qsort(p->gone, p->ngone, sizeof(*p->gone), uid_cmp);
	for (k = n = 0; k < p->ngone; k++)
		if (n == 0 || p->gone[k] != p->gone[n - 1])
			p->gone[n++] = p->gone[k];
	p->ngone = n;
	mbox_xlog_append(mb, p->gone, p->ngone, p->modseq, before);
}

/* Publish msgs: a log record, or the base when it must be rewritten
 * or the log has grown to a fraction of it. Only after index_refresh()
 * under the same lock: the files on disk must be the ones we last read
 * or wrote (or none), else we would undo another process's work
 * (UIDs!). 0 written, -1 the write failed (disk full...), -2 the file
 * changed. */
static int
index_write_locked(struct mbox *mb, const char **error_r)
{
	struct mbox_priv *p = mb->priv;

	if (p->index_fd >= 0 && !index_unchanged(mb)) {
		mbox_fail(error_r, "%s/%s changed under the lock "
		    "(not writing it)", mb->path, MBOX_INDEX_NAME);
		return -2;
	}
	modseq_assign(mb);
	if (!p->rewrite && p->log_fd >= 0 && p->log_id != 0 &&
	    p->index_fd >= 0) {
		if (log_write(mb, error_r) < 0)
			return -1;
		changes_clear(p);
		p->dirty = p->durable = false;
		if (p->log_off < LOG_COMPACT_MIN ||
		    p->log_off < p->base_size / LOG_COMPACT_DIV)
			return 0;
		/* published; compacting is only an optimisation */
		if (base_write(mb, error_r) < 0)
			log_warn("%s", *error_r);
		return 0;
	}
	if (base_write(mb, error_r) < 0)
		return -1;
	changes_clear(p);
	p->dirty = p->durable = false;
	return 0;
}

/* Undo the UIDs given in a sync whose index write failed: they were
 * never published, and the next sync lists everything again. */
static void
sync_rollback(struct mbox *mb, struct sync_ctx *ctx)
{
	struct mbox_priv *p = mb->priv;
	struct timespec zero = { 0, 0 };
	size_t i;

	if (ctx->assigned) {
		for (i = ctx->fresh_from; i < mb->n; i++) {
			msg_count(p, mbox_msg(mb, i), -1);
			if (mbox_msg(mb, i)->recent && mb->nrecent > 0)
				mb->nrecent--;
			mbox_name_free(p, mbox_msg(mb, i)->name);
			slot_free(mb, mb->seq[i]);
		}
		mb->n = ctx->fresh_from;
		mb->uidnext = ctx->uidnext_before;
	}
	p->cur_mtime = p->new_mtime = zero;
	p->dirty = true;
}

/* The sync, lock held. With ctx->list the directories are listed when
 * their mtimes say so; without, only the index is merged and written. */
static int
sync_locked(struct mbox *mb, struct sync_ctx *ctx, size_t *added_r,
    const char **error_r)
{
	struct mbox_priv *p = mb->priv;
	size_t n0 = mb->n;
	int ret = -1, r;

	if (p->dead) {
		mbox_fail(error_r, "%s was deleted or re-created", mb->path);
		return -2;
	}
	p->ntouched = 0;
	if (p->ndel > mb->n + 1024) {
		size_t *idx;

		(void)mbox_deleted(mb, &idx);	/* drops stale entries */
		free(idx);
	}
	mbox_cache_flush(mb);
	if ((r = index_refresh(mb, ctx, error_r)) < 0) {
		ret = r;
		goto out;
	}
	if (ctx->list) {
		keywords_load(mb, false);
		if ((r = dirs_sync(mb, ctx, error_r)) < 0) {
			sync_rollback(mb, ctx);
			ret = r;
			goto out;
		}
		if (ctx->take_new && !mb->readonly && !p->keep_new)
			take_new(mb);
		mbox_cache_maybe_compact(mb);
	}
	if (p->dirty) {
		int w = index_write_locked(mb, error_r);

		if (w == -2)
			goto fail;
		if (w < 0) {
			/* Cannot record new UIDs (disk full...): the
			 * messages that have UIDs stay usable, so that the
			 * user can still read and expunge; the new ones wait,
			 * unseen, until a write works. */
			log_warn("%s; new messages wait until it can be "
			    "written", *error_r);
			sync_rollback(mb, ctx);
			ret = 0;
			goto out;
		}
	}
	if (ctx->assigned && mb->uidnext != ctx->uidnext_before)
		mbox_legacy_update(mb, ctx->uidnext_before);
	recent_sync(mb, ctx->take_new, ctx->importing, ctx->assigned ?
	    ctx->uidnext_before : mb->uidnext);
	ret = 0;
	goto out;
fail:
	sync_rollback(mb, ctx);
out:
	if (ret == -2)
		p->dead = true;	/* the handle is useless: see mbox_sync */
	finish_touched(mb);
	if (ctx->importing)
		mbox_import_free(&ctx->imp);
	ctx->importing = false;
	if (added_r != NULL)
		*added_r = mb->n > n0 ? mb->n - n0 : 0;
	return ret;
}

/* Merge the index if someone rewrote it, then write ours if it has
 * changes. Lock held. */
static int
flush_locked(struct mbox *mb, const char **error_r)
{
	struct sync_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	return sync_locked(mb, &ctx, NULL, error_r);
}

static int
sync_full(struct mbox *mb, bool take, size_t *added_r, const char **error_r)
{
	struct sync_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	ctx.list = true;
	ctx.take_new = take;
	return sync_locked(mb, &ctx, added_r, error_r);
}

/* ---- the public API ---- */

static char *
path_trim(const char *path)
{
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	return xstrndup(path, len);
}

static int
open_mode(const char *path, bool readonly, bool keep_new, struct mbox **mb_r,
    const char **error_r)
{
	struct mbox_priv *p;
	struct mbox *mb;
	struct stat st;
	char *lpath;
	int ret;

	*mb_r = NULL;
	if (path == NULL || *path == '\0')
		return mbox_fail(error_r, "empty mailbox path");
	mb = xcalloc(1, sizeof(*mb));
	p = xcalloc(1, sizeof(*p));
	mb->priv = p;
	mb->path = path_trim(path);
	mb->readonly = readonly;
	p->keep_new = keep_new;
	p->lock_fd = p->index_fd = p->cache_fd = p->log_fd = -1;
	/* The folder and its cur/ new/ are its own: lstat, no symbolic
	 * link (one could lead into another user's maildir). */
	for (int d = 0; d < 3; d++) {
		char *dpath = d == 2 ? xstrdup(mb->path) :
		    xasprintf("%s/%s", mb->path, d ? "cur" : "new");

		ret = lstat(dpath, &st);
		if (ret == 0 && d == 1) {
			p->cur_dev = st.st_dev;
			p->cur_ino = st.st_ino;
		}
		if (ret < 0 || !S_ISDIR(st.st_mode)) {
			mbox_fail(error_r, "%s: %s", dpath, ret < 0 ?
			    strerror(errno) : S_ISLNK(st.st_mode) ?
			    "a symbolic link: refused" : "not a directory");
			free(dpath);
			goto fail;
		}
		free(dpath);
	}
	/* the folder's id beside cur/'s inode (folder_gone): made now
	 * by a writer, only read by a reader; without one the inode is
	 * all there is to go by */
	{
		char id[MBOX_OBJECTID_MAX + 1];
		const char *err;

		if ((readonly ? mbox_mailboxid_peek(mb->path, id, &err) :
		    mbox_mailboxid(mb->path, id, &err) == 0 ? 1 : -1) > 0)
			p->mailboxid = xstrdup(id);
	}
	lpath = xasprintf("%s/%s", mb->path, MBOX_LOCK_NAME);
	p->lock_fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (p->lock_fd < 0) {
		mbox_fail(error_r, "open(%s) failed: %s", lpath,
		    strerror(errno));
		free(lpath);
		goto fail;
	}
	free(lpath);
	if (mbox_lock(mb, error_r) < 0)
		goto fail;
	keywords_load(mb, false);
	ret = sync_full(mb, true, NULL, error_r);
	mbox_unlock(mb);
	if (ret < 0)
		goto fail;
	/* expunges read from the log: a new handle never saw them */
	mbox_purge(mb, NULL, NULL);
	mbox_legacy_kw_import(mb);
	*mb_r = mb;
	return 0;
fail:
	mb->priv = p;
	p->dirty = false;
	mbox_close(&mb);
	return -1;
}

int
mbox_open(const char *path, bool readonly, struct mbox **mb_r,
    const char **error_r)
{
	return open_mode(path, readonly, false, mb_r, error_r);
}

int
mbox_open_keep_new(const char *path, struct mbox **mb_r,
    const char **error_r)
{
	return open_mode(path, false, true, mb_r, error_r);
}

void
mbox_close(struct mbox **mbp)
{
	struct mbox *mb = *mbp;
	struct mbox_priv *p;
	const char *error;
	size_t i;

	if (mb == NULL)
		return;
	p = mb->priv;
	/* a folder deleted or re-created: nothing of ours goes into the
	 * one now at the path */
	if (!p->dead)
		mbox_cache_flush(mb);
	if (p->dirty && p->loaded && p->lock_fd >= 0 && !p->dead) {
		/* unwritten flag changes, expunges, cache offsets */
		if (mbox_lock(mb, &error) < 0) {
			log_warn("%s: index not written: %s", mb->path, error);
		} else {
			if (flush_locked(mb, &error) < 0)
				log_warn("%s: index not written: %s",
				    mb->path, error);
			mbox_unlock(mb);
		}
	}
	mbox_cache_close(mb);
	mbox_cache_free(mb);
	for (i = 0; i < mb->n; i++)
		mbox_name_free(p, mbox_msg(mb, i)->name);
	for (i = 0; i < 26; i++)
		free(mb->keywords[i]);
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	if (p->index_fd >= 0)
		close(p->index_fd);
	if (p->log_fd >= 0)
		close(p->log_fd);
	free(p->buf);
	free(p->touched);
	free(p->mailboxid);
	free(p->chg);
	free(p->gone);
	free(p->mod);
	free(p->fchg);
	free(p->del);
	free(p->xuids);
	free(p->freeslots);
	free(mb->slab);
	free(p->seq_mem);
	free(p);
	free(mb->path);
	free(mb);
	*mbp = NULL;
}

int
mbox_sync(struct mbox *mb, size_t *added_r, const char **error_r)
{
	int ret;

	if (added_r != NULL)
		*added_r = 0;
	if (mbox_lock(mb, error_r) < 0)
		return -1;
	ret = sync_full(mb, true, added_r, error_r);
	mbox_unlock(mb);
	return ret;
}

int
mbox_flush(struct mbox *mb, const char **error_r)
{
	int ret;

	mbox_cache_flush(mb);
	if (!mbox_priv(mb)->dirty)
		return 0;
	if (mbox_lock(mb, error_r) < 0)
		return -1;
	ret = flush_locked(mb, error_r);
	mbox_unlock(mb);
	return ret;
}

void
mbox_purge(struct mbox *mb, uint32_t **seqs_r, size_t *n_r)
{
	mbox_purge_uids(mb, seqs_r, NULL, n_r);
}

void
mbox_purge_uids(struct mbox *mb, uint32_t **seqs_r, uint32_t **uids_r,
    size_t *n_r)
{
	struct mbox_priv *p = mb->priv;
	uint32_t *seqs = NULL, *uids = NULL;
	size_t *pos, k, ns = 0, out, i;
	long f;

	if (seqs_r != NULL)
		*seqs_r = NULL;
	if (uids_r != NULL)
		*uids_r = NULL;
	if (n_r != NULL)
		*n_r = 0;
	if (p->nexpunged == 0) {
		p->nxuids = 0;
		return;		/* the usual case: nothing to look at */
	}
	/* where the expunged ones are, from their uids (no walk of the
	 * folder); the others move down in one memmove() per run */
	if (p->nxuids > 1)
		qsort(p->xuids, p->nxuids, sizeof(*p->xuids), uid_cmp);
	pos = xmalloc((p->nxuids + 1) * sizeof(*pos));
	for (k = 0; k < p->nxuids; k++) {
		if (k > 0 && p->xuids[k] == p->xuids[k - 1])
			continue;
		f = mbox_find_uid(mb, p->xuids[k]);
		if (f >= 0 && mbox_msg(mb, f)->expunged)
			pos[ns++] = (size_t)f;
	}
	if (ns != p->nexpunged)
		panic("mbox_purge: %zu expunged messages found, %zu counted",
		    ns, p->nexpunged);
	if (seqs_r != NULL)
		seqs = xcalloc(ns, sizeof(*seqs));
	if (uids_r != NULL)
		uids = xcalloc(ns, sizeof(*uids));
	for (k = 0; k < ns; k++) {
		struct mbox_msg *m = mbox_msg(mb, pos[k]);

		/* descending, as EXPUNGE responses are sent */
		if (seqs != NULL)
			seqs[ns - 1 - k] = (uint32_t)(pos[k] + 1);
		if (uids != NULL)
			uids[ns - 1 - k] = m->uid;
		if (m->recent && mb->nrecent > 0)
			mb->nrecent--;
		mbox_name_free(p, m->name);
		m->name = NULL;
		slot_free(mb, mb->seq[pos[k]]);
	}
	/* Close the gaps in seq by moving whichever side is shorter: the
	 * messages after the first one gone down, or those before the
	 * last one gone up (seq then starts later in its allocation). */
	if (mb->n - pos[0] <= pos[ns - 1] + 1) {
		out = pos[0];
		for (k = 0; k < ns; k++) {
			size_t next = k + 1 < ns ? pos[k + 1] : mb->n;

			i = pos[k] + 1;
			if (next > i)
				memmove(&mb->seq[out], &mb->seq[i],
				    (next - i) * sizeof(*mb->seq));
			out += next - i;
		}
	} else {
		out = pos[ns - 1] + 1;	/* the end of the moved part */
		for (k = ns; k-- > 0;) {
			size_t prev = k > 0 ? pos[k - 1] + 1 : 0;

			i = pos[k] - prev;
			out -= i;
			if (i > 0)
				memmove(&mb->seq[out], &mb->seq[prev],
				    i * sizeof(*mb->seq));
		}
		if (out != ns)
			panic("mbox_purge: %zu left in front, %zu gone",
			    out, ns);
		mb->seq += ns;
		p->seq_off += ns;
	}
	mb->n -= ns;
	p->nexpunged = p->nxuids = 0;
	free(pos);
	if (seqs_r != NULL)
		*seqs_r = seqs;
	if (uids_r != NULL)
		*uids_r = uids;
	if (n_r != NULL)
		*n_r = ns;
}

size_t
mbox_deleted(struct mbox *mb, size_t **idx_r)
{
	struct mbox_priv *p = mb->priv;
	size_t k, n = 0, out = 0;
	uint32_t last = 0;
	size_t *idx;
	long i;

	*idx_r = NULL;
	if (p->ndel > 1)
		qsort(p->del, p->ndel, sizeof(*p->del), uid_cmp);
	idx = xmalloc((p->ndel + 1) * sizeof(*idx));
	for (k = 0; k < p->ndel; k++) {
		if (p->del[k] == last)
			continue;
		last = p->del[k];
		i = mbox_find_uid(mb, last);
		if (i < 0 || mbox_msg(mb, i)->expunged ||
		    !mbox_msg_has(mbox_msg(mb, i), 'T'))
			continue;	/* stale */
		p->del[out++] = last;
		idx[n++] = (size_t)i;
	}
	p->ndel = out;
	if (n == 0)
		xfree(&idx);
	*idx_r = idx;
	return n;
}

long
mbox_take_changed(struct mbox *mb, uint32_t **uids_r)
{
	struct mbox_priv *p = mb->priv;
	long n = (long)p->nfchg;

	*uids_r = NULL;
	if (p->fchg_over) {
		p->fchg_over = false;
		p->nfchg = 0;
		return -1;
	}
	if (n > 0) {
		if (p->nfchg > 1)
			qsort(p->fchg, p->nfchg, sizeof(*p->fchg),
			    uid_cmp);
		*uids_r = xmalloc(p->nfchg * sizeof(**uids_r));
		memcpy(*uids_r, p->fchg, p->nfchg * sizeof(**uids_r));
	}
	p->nfchg = 0;
	if (p->fchg_cap > 1024) {
		xfree(&p->fchg);
		p->fchg_cap = 0;
	}
	return n;
}

long
mbox_find_uid(const struct mbox *mb, uint32_t uid)
{
	size_t lo = 0, hi = mb->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (mbox_msg(mb, mid)->uid == uid)
			return (long)mid;
		if (mbox_msg(mb, mid)->uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

char *
mbox_msg_path(const struct mbox *mb, const struct mbox_msg *m)
{
	return sub_path(mb, m->in_cur ? "cur" : "new", m->name);
}

/* Rename msgs[i] to carry flags (normalized). 0 ok, 1 the file is not
 * there (any more), -1 error. Lock held. */
static int
rename_flags(struct mbox *mb, size_t i, const char *flags,
    const char **error_r)
{
	struct mbox_msg *m = mbox_msg(mb, i);
	size_t klen = key_len(m->name);
	char *newname, *from, *to;
	bool claimed;
	int ret = 0;

	newname = xasprintf("%.*s:2,%s", (int)klen, m->name, flags);
	if (m->in_cur && strcmp(newname, m->name) == 0) {
		free(newname);
		m->flagbits = mbox_flags_bits(flags);
		return 0;
	}
	from = mbox_msg_path(mb, m);
	to = sub_path(mb, "cur", newname);
	claimed = claim_begin(mb);
	if (rename_noreplace(from, to) < 0) {
		if (errno == ENOENT)
			ret = 1;
		else
			ret = mbox_fail(error_r, "rename(%s, %s) failed: %s",
			    from, to, strerror(errno));
		free(newname);
	} else {
		msg_count(mb->priv, m, -1);
		mbox_name_free(mb->priv, m->name);
		m->name = newname;
		m->in_cur = true;
		msg_count(mb->priv, m, 1);
		m->flagbits = mbox_flags_bits(flags);
		mbox_mod_add(mb, m->uid);
		claim_end(mb, claimed);
	}
	free(from);
	free(to);
	return ret;
}

/* flags = (cur - del) + add, as letters sorted into out. */
static const char *
flags_apply(uint64_t cur, uint64_t add, uint64_t del,
    char out[MAILDIR_FLAGS_MAX + 1])
{
	return mbox_bits_flags((cur & ~del) | add, out);
}

int
mbox_set_flags(struct mbox *mb, size_t i, const char *flags,
    const char **error_r)
{
	return mbox_set_flags_cond(mb, i, flags, 0, error_r);
}

int
mbox_set_flags_cond(struct mbox *mb, size_t i, const char *flags,
    uint64_t unchangedsince, const char **error_r)
{
	char nflags[MAILDIR_FLAGS_MAX + 1], before[MAILDIR_FLAGS_MAX + 1];
	struct timespec zero = { 0, 0 };
	uint64_t nbits, add, del;
	int ret, attempt;

	if (mb->readonly)
		return mbox_fail(error_r, "%s is open read-only", mb->path);
	if (i >= mb->n)
		return mbox_fail(error_r, "no message %zu", i + 1);
	if (flags == NULL ||
	    maildir_flags_normalize(flags, strlen(flags), nflags) < 0)
		return mbox_fail(error_r, "invalid Maildir flags");
	if (mbox_msg(mb, i)->expunged)
		return 1;
	/* What this change adds and removes, against the flags this
	 * session knows: applied again to the fresh flags if another
	 * process changed them meanwhile, so its changes are kept. */
	nbits = mbox_flags_bits(nflags);
	add = nbits & ~mbox_msg(mb, i)->flagbits;
	del = mbox_msg(mb, i)->flagbits & ~nbits;
	if (mbox_lock(mb, error_r) < 0)
		return -1;
	log_catch_up(mb);
	if (unchangedsince != 0 && !index_unchanged(mb) &&
	    flush_locked(mb, error_r) < 0) {
		/* the base was rewritten: its modseqs are needed */
		mbox_unlock(mb);
		return -1;
	}
	if (mbox_msg(mb, i)->expunged) {
		mbox_unlock(mb);
		return 1;
	}
	if (unchangedsince != 0 && mbox_msg(mb, i)->modseq > unchangedsince) {
		mbox_unlock(mb);
		return 2;
	}
	mbox_msg_flags(mbox_msg(mb, i), before);
	if (mbox_msg(mb, i)->flagbits != nbits)
		flags_apply(mbox_msg(mb, i)->flagbits, add, del, nflags);
	ret = rename_flags(mb, i, nflags, error_r);
	for (attempt = 1; ret == 1 && attempt <= RENAME_ATTEMPTS; attempt++) {
		/* renamed or removed by someone else: find out which */
		mbox_priv(mb)->cur_mtime = mbox_priv(mb)->new_mtime = zero;
		if (sync_full(mb, false, NULL, error_r) < 0)
			ret = -1;
		else if (mbox_msg(mb, i)->expunged)
			break;
		else
			ret = rename_flags(mb, i,
			    flags_apply(mbox_msg(mb, i)->flagbits, add, del,
			    nflags), error_r);
	}
	if (ret == 1 && !mbox_msg(mb, i)->expunged)
		ret = mbox_fail(error_r, "%s: the file of UID %u keeps moving",
		    mb->path, mbox_msg(mb, i)->uid);
	if (ret == 0 && !mbox_msg(mb, i)->expunged)
		mbox_legacy_kw_changed(mb, i, before);
	mbox_unlock(mb);
	return ret;
}

/* unlink msgs[i]'s file. 0 done, 1 not there, -1 error. */
static int
unlink_msg(struct mbox *mb, size_t i, const char **error_r)
{
	char *path = mbox_msg_path(mb, mbox_msg(mb, i));
	bool claimed = mbox_msg(mb, i)->in_cur && claim_begin(mb);
	int ret = 0;

	if (unlink(path) == 0) {
		claim_end(mb, claimed);
	} else {
		if (errno == ENOENT)
			ret = 1;
		else
			ret = mbox_fail(error_r, "unlink(%s) failed: %s", path,
			    strerror(errno));
	}
	free(path);
	return ret;
}

int
mbox_expunge(struct mbox *mb, const size_t *idx, size_t n,
    const char **error_r)
{
	struct timespec zero = { 0, 0 };
	bool vanished = true;
	const char *werr;
	int ret = 0, r, attempt;
	size_t k;

	if (mb->readonly)
		return mbox_fail(error_r, "%s is open read-only", mb->path);
	if (mbox_lock(mb, error_r) < 0)
		return -1;
	log_catch_up(mb);
	for (attempt = 0; ret == 0 && vanished; attempt++) {
		if (attempt > 0) {
			if (attempt > RENAME_ATTEMPTS) {
				ret = mbox_fail(error_r, "%s: message files "
				    "keep moving", mb->path);
				break;
			}
			/* renamed (a flag change) or removed by someone
			 * else? A sync tells: it expunges what is gone */
			mbox_priv(mb)->cur_mtime = zero;
			mbox_priv(mb)->new_mtime = zero;
			if (sync_full(mb, false, NULL, error_r) < 0) {
				ret = -1;
				break;
			}
		}
		vanished = false;
		for (k = 0; k < n && ret == 0; k++) {
			if (idx[k] >= mb->n || mbox_msg(mb, idx[k])->expunged)
				continue;
			r = unlink_msg(mb, idx[k], error_r);
			if (r == 0)
				mark_expunged(mb, idx[k]);
			else if (r == 1)
				vanished = true;
			else
				ret = -1;
		}
	}
	/* publish at once: other handles then need not find out by
	 * listing the directory */
	if (flush_locked(mb, &werr) < 0 && ret == 0)
		ret = mbox_fail(error_r, "%s", werr);
	mbox_unlock(mb);
	return ret;
}

/* Is a message with this key among the last ones? (An added file gets
 * the highest UID unless files older by name arrived meanwhile.) */
static bool
added_found(const struct mbox *mb, const char *key, size_t klen)
{
	size_t i, seen = 0;

	for (i = mb->n; i-- > 0 && seen < 1024; seen++) {
		if (!mbox_msg(mb, i)->expunged && key_eq(mbox_msg(mb, i)->name, key,
		    klen))
			return true;
	}
	return false;
}

uint32_t
mbox_uid_of_added(struct mbox *mb, const char *name, const char **error_r)
{
	const char *base, *slash;
	uint32_t uid = 0;
	size_t i, klen;

	if (name == NULL) {
		mbox_fail(error_r, "no file name");
		return 0;
	}
	slash = strrchr(name, '/');
	base = slash != NULL ? slash + 1 : name;
	klen = key_len(base);
	if (klen == 0) {
		mbox_fail(error_r, "invalid message file name \"%s\"", name);
		return 0;
	}
	if (mbox_lock(mb, error_r) < 0)
		return 0;
	if (sync_full(mb, true, NULL, error_r) < 0)
		goto out;
	if (!added_found(mb, base, klen)) {
		/* the caller's file landed in the same timestamp tick as a
		 * change another handle claimed: list the directories */
		mbox_priv(mb)->cur_mtime = (struct timespec){ 0, 0 };
		mbox_priv(mb)->new_mtime = (struct timespec){ 0, 0 };
		if (sync_full(mb, true, NULL, error_r) < 0)
			goto out;
	}
	for (i = mb->n; i-- > 0; ) {
		struct mbox_msg *m = mbox_msg(mb, i);

		if (m->expunged || !key_eq(m->name, base, klen))
			continue;
		uid = m->uid;
		/* a file just added: learn its size and date now, while it
		 * is in the page cache */
		if (m->info_pending && file_info(mb, m) == 0)
			mbox_chg_add(mb, m->uid);
		break;
	}
	if (uid == 0)
		mbox_fail(error_r, "%s: no message \"%.*s\" after sync",
		    mb->path, (int)klen, base);
out:
	mbox_unlock(mb);
	return uid;
}

static void
count_msgs(const struct mbox *mb, uint32_t *messages, uint32_t *unseen,
    uint32_t *recent)
{
	size_t i;

	*messages = *unseen = *recent = 0;
	for (i = 0; i < mb->n; i++) {
		if (mbox_msg(mb, i)->expunged)
			continue;
		(*messages)++;
		if (!mbox_msg_has(mbox_msg(mb, i), 'S'))
			(*unseen)++;
		if (mbox_msg(mb, i)->recent || !mbox_msg(mb, i)->in_cur)
			(*recent)++;
	}
}

static void
status_apply(void *ctx, const struct mbox_log_item *it)
{
	struct mbox_index *idx = ctx;

	if (it->type != 's')
		return;
	idx->uidnext = it->st.uidnext;
	idx->cur_mtime = it->st.cur_mtime;
	idx->new_mtime = it->st.new_mtime;
	idx->messages = it->st.messages;
	idx->unseen = it->st.unseen;
	idx->recent = it->st.recent;
	if (it->st.modseq > idx->modseq)
		idx->modseq = it->st.modseq;
}

/* The header's counts brought up to date by the log's records. false:
 * the log is missing (the caller opens the folder). */
static bool
status_log(const char *path, struct mbox_index *idx)
{
	const char *error;
	uint64_t off = mbox_log_start(), seq = idx->log_seq;
	bool torn;
	int fd, r;

	if (idx->version < 2)
		return true;
	if (mbox_log_open(path, idx->log_id, &fd, &error) <= 0)
		return false;
	r = mbox_log_read(fd, &off, &seq, status_apply, idx, &torn, &error);
	close(fd);
	return r >= 0;
}

/* Do cur/ and new/ still have the mtimes the index recorded? */
static bool
status_dirs_warm(const char *path, const struct mbox_index *idx)
{
	struct stat st;
	char *dpath;
	bool warm = ts_set(idx->cur_mtime) && ts_set(idx->new_mtime);

	for (int d = 0; d < 2 && warm; d++) {
		dpath = xasprintf("%s/%s", path, d ? "cur" : "new");
		warm = stat(dpath, &st) == 0 && ts_eq(st.st_mtim,
		    d ? idx->cur_mtime : idx->new_mtime);
		free(dpath);
	}
	return warm;
}

int
mbox_status(const char *path, uint32_t *uidvalidity_r, uint32_t *uidnext_r,
    uint32_t *messages_r, uint32_t *unseen_r, uint32_t *recent_r,
    const char **error_r)
{
	struct mbox_index idx;
	struct mbox *mb;
	struct stat st[2];
	char *trimmed, *dpath;
	bool warm = false;
	int r, d;

	if (path == NULL || *path == '\0')
		return mbox_fail(error_r, "empty mailbox path");
	if (maildir_check_dirs(path, error_r) < 0)
		return -1;	/* a symbolic link on the way: refused */
	trimmed = path_trim(path);
	r = mbox_index_read(trimmed, true, NULL, &idx, error_r);
	if (r == MBOX_INDEX_OK && status_log(trimmed, &idx) &&
	    ts_set(idx.cur_mtime) && ts_set(idx.new_mtime)) {
		warm = true;
		for (d = 0; d < 2 && warm; d++) {
			dpath = xasprintf("%s/%s", trimmed, d ? "cur" : "new");
			warm = stat(dpath, &st[d]) == 0 && ts_eq(st[d].st_mtim,
			    d ? idx.cur_mtime : idx.new_mtime);
			free(dpath);
		}
	}
	if (warm) {
		uint32_t first;

		*uidvalidity_r = idx.uidvalidity;
		*uidnext_r = idx.uidnext;
		*messages_r = idx.messages;
		*unseen_r = idx.unseen;
		*recent_r = idx.recent;
		/* not taken by any session yet: the last ones (exact unless
		 * some of them were expunged before anyone took them) */
		if (recent_read(trimmed, idx.uidvalidity, &first))
			*recent_r = first >= idx.uidnext ? 0 :
			    idx.uidnext - first < idx.messages ?
			    idx.uidnext - first : idx.messages;
		mbox_index_free(&idx);
		free(trimmed);
		return 0;
	}
	free(trimmed);
	mbox_index_free(&idx);
	if (mbox_open(path, true, &mb, error_r) < 0)
		return -1;
	*uidvalidity_r = mb->uidvalidity;
	*uidnext_r = mb->uidnext;
	count_msgs(mb, messages_r, unseen_r, recent_r);
	mbox_close(&mb);
	return 0;
}

int
mbox_status_deleted(const char *path, uint32_t *deleted_r,
    const char **error_r)
{
	struct mbox *mb;
	uint32_t n = 0;

	if (mbox_open(path, true, &mb, error_r) < 0)
		return -1;
	for (size_t i = 0; i < mb->n; i++)
		if (!mbox_msg(mb, i)->expunged && mbox_msg_has(mbox_msg(mb, i), 'T'))
			n++;
	mbox_close(&mb);
	*deleted_r = n;
	return 0;
}

int
mbox_status_size(const char *path, uint64_t *size_r, const char **error_r)
{
	struct mbox *mb;
	uint64_t sum = 0;
	int r;

	if (mbox_open(path, true, &mb, error_r) < 0)
		return -1;
	for (size_t i = 0; i < mb->n; i++) {
		struct mbox_msg *m = mbox_msg(mb, i);
		struct maildir_name mn;

		if (m->expunged)
			continue;
		if (m->info_pending) {
			name_info(m->name, &mn);
			if (mn.has_vsize) {
				sum += mn.vsize;
				continue;
			}
			if ((r = mbox_msg_info(mb, i, error_r)) < 0) {
				mbox_close(&mb);
				return -1;
			}
			m = mbox_msg(mb, i);
			if (r > 0 || m->expunged)
				continue;	/* gone meanwhile */
		}
		sum += m->vsize;
	}
	mbox_close(&mb);
	*size_r = sum;
	return 0;
}

bool
mbox_has_expunged(const struct mbox *mb)
{
	const struct mbox_priv *p = mb->priv;

	return p->nexpunged > 0;
}

uint64_t
mbox_highestmodseq(const struct mbox *mb)
{
	const struct mbox_priv *p = mb->priv;

	return p->modseq != 0 ? p->modseq : 1;
}

int
mbox_status_modseq(const char *path, uint64_t *modseq_r,
    const char **error_r)
{
	struct mbox_index idx;
	struct mbox *mb;
	char *trimmed;
	int r;

	if (path == NULL || *path == '\0')
		return mbox_fail(error_r, "empty mailbox path");
	if (maildir_check_dirs(path, error_r) < 0)
		return -1;
	trimmed = path_trim(path);
	r = mbox_index_read(trimmed, true, NULL, &idx, error_r);
	/* the published value, when the directories have not changed
	 * since (else a sync publishes what changed: a delivery) */
	if (r == MBOX_INDEX_OK && status_log(trimmed, &idx) &&
	    idx.modseq != 0 && status_dirs_warm(trimmed, &idx)) {
		*modseq_r = idx.modseq;
		mbox_index_free(&idx);
		free(trimmed);
		return 0;
	}
	mbox_index_free(&idx);
	free(trimmed);
	if (mbox_open(path, true, &mb, error_r) < 0)
		return -1;
	*modseq_r = mbox_highestmodseq(mb);
	mbox_close(&mb);
	return 0;
}
