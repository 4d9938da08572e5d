/*
 * mbox_legacy.c: the UID files of the servers a maildir came from,
 * kept current in the folders that have them, so that Dovecot or
 * Courier-IMAP started on the tree again (a rollback) shows the UIDs
 * and UIDVALIDITY petrel gave.
 *
 *   dovecot-uidlist   (Dovecot, version 3) "3 V<uidvalidity> N<nextuid>
 *                     [G<guid>] ..." then "<uid> [<field> ...]
 *                     :<filename>" per message. Dovecot itself appends
 *                     lines for new messages while it holds the dot-lock
 *                     dovecot-uidlist.lock and rewrites the file by
 *                     writing the lock file and renaming it over the
 *                     list. petrel does the latter: the lines already
 *                     there stay as they are (with their fields), the
 *                     messages with UIDs above the last listed one get a
 *                     line "<uid> :<name before ':'>", and N is raised
 *                     to petrel's UIDNEXT so that Dovecot never gives a
 *                     UID again that petrel gave.
 *   courierimapuiddb  (Courier-IMAP) "1 <uidvalidity> <nextuid>" then
 *                     "<uid> <name before ':'>" per message. Rewritten
 *                     whole from the folder's messages (as Courier
 *                     rewrites it) through a temporary file and rename.
 *
 *   courierimapkeywords/  (Courier-IMAP's keywords) ":list": the keyword
 *                     names, one a line, an empty line, then
 *                     "<name before ':'>:<n> <n> ..." per message (n
 *                     indexes the names); beside it, per message, update
 *                     files that replace the message's whole keyword set
 *                     (names one a line): "<name before ':'>" is the
 *                     newest, ".<t>.<name before ':'>" older ones (the
 *                     highest t wins), ".tmp.*" are being written. petrel
 *                     reads them once, at the first writable open of a
 *                     folder that has the directory, into its own keyword
 *                     letters (dovecot-keywords and the file names), and
 *                     marks that with an empty file petrel-courier-keywords;
 *                     every later keyword change (STORE, APPEND, COPY,
 *                     MOVE) is written back as the newest update file, made
 *                     in the folder's tmp/ and renamed into the directory,
 *                     as Courier writes it; Courier folds it into :list.
 *
 * Only a file whose UIDVALIDITY is the folder's is touched: one of
 * another generation is left alone. A file that is missing is not
 * made, except in a folder petrel creates (a fresh UIDVALIDITY) in a
 * maildir whose INBOX has one: there it is made with the folder's
 * UIDVALIDITY, so the old server keeps it too. These files are read and
 * written whole: their cost grows with the folder, which is why only
 * folders that had them pay it, and only when UIDs are given out
 * (petrel's own index keeps its flat cost, SPEC 6.1).
 *
 * Trust: the files are untrusted bytes; a file that does not parse is
 * left alone (with a warning), never a crash. Called with petrel-lock
 * held; failures are logged, never errors of the sync (the UIDs are in
 * petrel-index either way; the next assignment catches up).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/store/mbox_int.h"

/* Waiting for Dovecot's dot-lock: this many tries, LOCK_WAIT_NS apart
 * (1 s); a lock file older than LOCK_STALE_SEC that does not change is
 * a crashed holder's (Dovecot's own stale timeout for the list is two
 * minutes). */
#define LOCK_TRIES	50
#define LOCK_WAIT_NS	20000000L
#define LOCK_STALE_SEC	120

#define COURIER_KW_DIR		"courierimapkeywords"
#define COURIER_KW_LIST		":list"
#define COURIER_KW_MARK		"petrel-courier-keywords"
/* A keyword update file larger than this is garbage (26 keywords fit in
 * a few kB). */
#define COURIER_KW_FILE_MAX	((size_t)64 * 1024)

/* The length of the stable part of a message file name (before ':'). */
static size_t
legacy_key_len(const char *name)
{
	return strcspn(name, ":");
}

/* An unsigned decimal at *pp (at most 32 bits), advancing *pp. */
static bool
legacy_u32(const char **pp, const char *end, uint32_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (p >= end || *p < '0' || *p > '9')
		return false;
	while (p < end && *p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return false;
		p++;
	}
	*pp = p;
	*v_r = (uint32_t)v;
	return true;
}

/* The file at path, whole, if it is a regular file of sane size: 1 read
 * (*st_r its stat), 0 missing or not one, -1 error (logged). */
static int
legacy_read(const char *path, char **buf_r, size_t *len_r, struct stat *st_r)
{
	int fd, ret = -1;

	*buf_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT || errno == ELOOP)
			return 0;
		log_warn("open(%s) failed: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st_r) < 0) {
		log_warn("fstat(%s) failed: %s", path, strerror(errno));
	} else if (!S_ISREG(st_r->st_mode) ||
	    (uint64_t)st_r->st_size > MBOX_INDEX_MAX) {
		log_warn("%s: not a regular file of a sane size, left alone",
		    path);
		ret = 0;
	} else if (read_fd_all(fd, buf_r, len_r, st_r) < 0) {
		log_warn("read(%s) failed: %s", path, strerror(errno));
	} else {
		ret = 1;
	}
	close(fd);
	return ret;
}

/* Write data to fd (a new file), make it durable, and rename tmp to
 * path; the folder is fsync'd after. tmp is removed on failure. 0 ok,
 * -1 error (logged). */
static int
legacy_commit(int fd, const char *tmp, const char *path, const char *folder,
    const str_t *data)
{
	const char *error;

	if (write_full(fd, data->data != NULL ? data->data : "",
	    data->len) < 0 || fdatasync(fd) < 0) {
		log_warn("write(%s) failed: %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		log_warn("close(%s) failed: %s", tmp, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		log_warn("rename(%s, %s) failed: %s", tmp, path,
		    strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	if (fsync_dir(folder, &error) < 0)
		log_warn("%s", error);
	return 0;
}

/* Dovecot's dot-lock on dovecot-uidlist: the lock file, created
 * exclusively, open in *fd_r. 0 ok, -1 not taken (logged). */
static int
dovecot_lock(const char *lock, mode_t mode, int *fd_r)
{
	struct timespec wait = { 0, LOCK_WAIT_NS };
	bool broke = false;
	struct stat st;
	int i, fd;

	for (i = 0; i < LOCK_TRIES; i++) {
		fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOFOLLOW, mode);
		if (fd >= 0) {
			/* the umask may have taken bits the list had */
			(void)fchmod(fd, mode);
			*fd_r = fd;
			return 0;
		}
		if (errno != EEXIST) {
			log_warn("open(%s) failed: %s", lock, strerror(errno));
			return -1;
		}
		if (!broke && lstat(lock, &st) == 0 &&
		    st.st_mtime + LOCK_STALE_SEC < time(NULL)) {
			log_warn("%s: removing a stale lock", lock);
			(void)unlink(lock);
			broke = true;
			continue;
		}
		nanosleep(&wait, NULL);
	}
	log_warn("%s: held too long by another process; the list is "
	    "brought up to date at the next new message", lock);
	return -1;
}

/* Parse the version 3 header "3 V<v> N<n> ...": 0 ok (*uidv_r, *next_r;
 * *next_r 0 when absent), -1 not a list we write. */
static int
dovecot_header(const char *line, size_t len, uint32_t *uidv_r,
    uint32_t *next_r)
{
	const char *p = line + 2, *end = line + len;

	*uidv_r = *next_r = 0;
	if (len < 2 || line[0] != '3' || line[1] != ' ')
		return -1;
	while (p < end) {
		char k = *p++;
		uint32_t v;

		if ((k == 'V' || k == 'N') && legacy_u32(&p, end, &v) &&
		    (p == end || *p == ' ')) {
			if (k == 'V')
				*uidv_r = v;
			else
				*next_r = v;
		}
		while (p < end && *p != ' ')
			p++;
		while (p < end && *p == ' ')
			p++;
	}
	return *uidv_r != 0 ? 0 : -1;
}

int
mbox_legacy_uidlist_lock(struct mbox *mb, int *fd_r)
{
	char *path = xasprintf("%s/%s", mb->path, MBOX_DOVECOT_UIDLIST);
	char *lock = xasprintf("%s.lock", path);
	struct stat st;
	int ret = 0;

	*fd_r = -1;
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		ret = dovecot_lock(lock, st.st_mode & 0666, fd_r) < 0 ? -1 : 1;
	free(lock);
	free(path);
	return ret;
}

void
mbox_legacy_uidlist_unlock(struct mbox *mb, int fd)
{
	char *lock;

	if (fd < 0)
		return;
	lock = xasprintf("%s/%s.lock", mb->path, MBOX_DOVECOT_UIDLIST);
	close(fd);
	(void)unlink(lock);
	free(lock);
}

static void
dovecot_update(struct mbox *mb)
{
	char *path = xasprintf("%s/%s", mb->path, MBOX_DOVECOT_UIDLIST);
	char *lock = xasprintf("%s.lock", path);
	const char *p, *end, *nl, *hend, *q, *body;
	uint32_t uidv, next, uid, last = 0, newnext;
	str_t out = STR_INIT;
	char *buf = NULL;
	struct stat st;
	bool added = false;
	size_t len, i;
	int fd = -1;

	if (legacy_read(path, &buf, &len, &st) <= 0)
		goto out;
	free(buf);
	buf = NULL;
	if (dovecot_lock(lock, st.st_mode & 0666, &fd) < 0)
		goto out;
	/* read again: Dovecot may have changed it before we had the lock */
	if (legacy_read(path, &buf, &len, &st) <= 0)
		goto unlock;
	end = buf + len;
	nl = memchr(buf, '\n', len);
	hend = nl != NULL ? nl : end;
	body = nl != NULL ? nl + 1 : end;
	if (hend > buf && hend[-1] == '\r')
		hend--;
	if (dovecot_header(buf, (size_t)(hend - buf), &uidv, &next) < 0) {
		log_warn("%s: not a version 3 list, left alone", path);
		goto unlock;
	}
	if (uidv != mb->uidvalidity)
		goto unlock;	/* another generation's */
	for (p = body; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		q = p;
		/* a record: "<uid> [<field> ...] :<name>" */
		if (legacy_u32(&q, nl, &uid) && uid > last && q < nl &&
		    *q == ' ' && memmem(q, (size_t)(nl - q), " :", 2) != NULL)
			last = uid;
		if (nl == end)
			break;
	}
	newnext = next > mb->uidnext ? next : mb->uidnext;
	/* the header, with N raised; every other field as it was */
	str_append(&out, "3");
	for (p = buf + 2; p < hend;) {
		q = p;
		while (q < hend && *q != ' ')
			q++;
		if (q > p && *p != 'N') {
			str_append(&out, " ");
			str_append_n(&out, p, (size_t)(q - p));
		}
		p = q;
		while (p < hend && *p == ' ')
			p++;
	}
	str_printf(&out, " N%" PRIu32 "\n", newnext);
	if (body < end) {
		str_append_n(&out, body, (size_t)(end - body));
		if (end[-1] != '\n')
			str_append(&out, "\n");
	}
	for (i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);

		if (m->expunged || m->uid <= last)
			continue;
		str_printf(&out, "%" PRIu32 " :", m->uid);
		str_append_n(&out, m->name, legacy_key_len(m->name));
		str_append(&out, "\n");
		added = true;
	}
	if (!added && newnext == next)
		goto unlock;
	/* the lock file is the new list (Dovecot's own way to replace it) */
	if (legacy_commit(fd, lock, path, mb->path, &out) == 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
unlock:
	if (fd >= 0) {
		close(fd);
		(void)unlink(lock);
	}
out:
	str_free(&out);
	free(buf);
	free(lock);
	free(path);
}

static void
courier_update(struct mbox *mb)
{
	char *path = xasprintf("%s/%s", mb->path, MBOX_COURIER_UIDDB);
	char *tmp = NULL;
	const char *p, *end;
	uint32_t uidv, next;
	str_t out = STR_INIT;
	char *buf = NULL;
	struct stat st;
	size_t len, i;
	int fd;

	if (legacy_read(path, &buf, &len, &st) <= 0)
		goto out;
	p = buf;
	end = buf + len;
	if (len < 2 || buf[0] != '1' || buf[1] != ' ' ||
	    (p += 2, !legacy_u32(&p, end, &uidv)) || p == end || *p++ != ' ' ||
	    !legacy_u32(&p, end, &next)) {
		log_warn("%s: not a version 1 list, left alone", path);
		goto out;
	}
	if (uidv != mb->uidvalidity)
		goto out;	/* another generation's */
	str_printf(&out, "1 %" PRIu32 " %" PRIu32 "\n", uidv,
	    next > mb->uidnext ? next : mb->uidnext);
	for (i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);

		if (m->expunged)
			continue;
		str_printf(&out, "%" PRIu32 " ", m->uid);
		str_append_n(&out, m->name, legacy_key_len(m->name));
		str_append(&out, "\n");
	}
	if (out.len == len && memcmp(out.data, buf, len) == 0)
		goto out;
	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    st.st_mode & 0666);
	if (fd < 0) {
		log_warn("open(%s) failed: %s", tmp, strerror(errno));
		goto out;
	}
	(void)fchmod(fd, st.st_mode & 0666);
	(void)legacy_commit(fd, tmp, path, mb->path, &out);
out:
	str_free(&out);
	free(tmp);
	free(buf);
	free(path);
}

/* ---- Courier keywords ---- */

static bool
courier_kw_dir(const struct mbox *mb)
{
	char *dir = xasprintf("%s/%s", mb->path, COURIER_KW_DIR);
	struct stat st;
	bool ok = lstat(dir, &st) == 0 && S_ISDIR(st.st_mode);

	free(dir);
	return ok;
}

/* The message's keywords, as Courier's newest update file for it: made
 * in tmp/ and renamed into courierimapkeywords/. Lock held. */
static void
courier_kw_write(struct mbox *mb, const struct mbox_msg *m)
{
	size_t klen = legacy_key_len(m->name);
	char *key = xstrndup(m->name, klen);
	char *tmp = xasprintf("%s/tmp/%ld.petrel-keywords", mb->path,
	    (long)getpid());
	char *path = xasprintf("%s/%s/%s", mb->path, COURIER_KW_DIR, key);
	char *dir = xasprintf("%s/%s", mb->path, COURIER_KW_DIR);
	str_t s = STR_INIT;
	int fd;

	if (klen == 0 || key[0] == '.' || strchr(key, '/') != NULL)
		goto out;
	for (char f = 'a'; f <= 'z'; f++) {
		if (mbox_msg_has(m, f) && mb->keywords[f - 'a'] != NULL)
			str_printf(&s, "%s\n", mb->keywords[f - 'a']);
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		log_warn("open(%s) failed: %s", tmp, strerror(errno));
		goto out;
	}
	(void)legacy_commit(fd, tmp, path, dir, &s);
out:
	str_free(&s);
	free(dir);
	free(path);
	free(tmp);
	free(key);
}

/* Whether the keyword letters (a-z) of a and b are the same. */
static bool
kw_letters_equal(uint64_t a, uint64_t b)
{
	return ((a ^ b) & mbox_flags_bits("abcdefghijklmnopqrstuvwxyz")) == 0;
}

void
mbox_legacy_kw_changed(struct mbox *mb, size_t i, const char *old_flags)
{
	struct mbox_priv *p = mb->priv;

	if (p->courier_kw_importing ||
	    kw_letters_equal(mbox_flags_bits(old_flags),
	    mbox_msg(mb, i)->flagbits) ||
	    !courier_kw_dir(mb))
		return;
	courier_kw_write(mb, mbox_msg(mb, i));
}

void
mbox_legacy_update(struct mbox *mb, uint32_t from_uid)
{
	dovecot_update(mb);
	courier_update(mb);
	if (!courier_kw_dir(mb))
		return;
	/* APPENDed, COPYed or MOVEd in with keywords */
	for (size_t i = mb->n; i > 0 && mbox_msg(mb, i - 1)->uid >= from_uid; i--) {
		const struct mbox_msg *m = mbox_msg(mb, i - 1);
		bool kw = (m->flagbits &
		    mbox_flags_bits("abcdefghijklmnopqrstuvwxyz")) != 0;

		if (kw && !m->expunged)
			courier_kw_write(mb, m);
	}
}

/* An update file: its key (the message's name before ':') and rank. */
struct kw_update {
	char *fname;
	const char *key;
	uint64_t rank;
};

static int
kw_update_cmp(const void *a, const void *b)
{
	const struct kw_update *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->rank < y->rank ? 1 : x->rank > y->rank ? -1 : 0;
}

/* A :list entry: "<key>:<indexes>" (both point into the buffer). */
struct kw_entry {
	const char *key;
	const char *idx;
};

static int
kw_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kw_entry *)a)->key,
	    ((const struct kw_entry *)b)->key);
}

struct kw_courier {
	char *list;		/* :list, NUL-terminated lines */
	char **names;		/* its keyword names */
	size_t nnames;
	struct kw_entry *ents;	/* sorted by key */
	size_t nents;
	struct kw_update *ups;	/* sorted by key, newest first */
	size_t nups;
};

static void
kw_courier_free(struct kw_courier *c)
{
	for (size_t i = 0; i < c->nups; i++)
		free(c->ups[i].fname);
	free(c->ups);
	free(c->ents);
	free(c->names);
	free(c->list);
	memset(c, 0, sizeof(*c));
}

static void
kw_read_list(const char *dir, struct kw_courier *c)
{
	char *path = xasprintf("%s/%s", dir, COURIER_KW_LIST);
	size_t len, cap = 0, ecap = 0;
	char *line, *next, *colon;
	bool names = true;
	struct stat st;

	if (legacy_read(path, &c->list, &len, &st) <= 0) {
		free(path);
		return;
	}
	free(path);
	for (line = c->list; *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		else
			next = line + strlen(line);
		if (names) {
			if (*line == '\0') {
				names = false;
				continue;
			}
			if (c->nnames == cap) {
				cap = cap < 16 ? 16 : cap * 2;
				c->names = xrealloc(c->names,
				    cap * sizeof(*c->names));
			}
			c->names[c->nnames++] = line;
			continue;
		}
		if ((colon = strchr(line, ':')) == NULL)
			continue;
		*colon = '\0';
		if (c->nents == ecap) {
			ecap = ecap < 64 ? 64 : ecap * 2;
			c->ents = xrealloc(c->ents, ecap * sizeof(*c->ents));
		}
		c->ents[c->nents].key = line;
		c->ents[c->nents].idx = colon + 1;
		c->nents++;
	}
	if (c->nents > 1)
		qsort(c->ents, c->nents, sizeof(*c->ents), kw_entry_cmp);
}

static void
kw_read_updates(const char *dir, struct kw_courier *c)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;

	if (d == NULL) {
		log_warn("opendir(%s) failed: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name, *key = n;
		uint64_t rank = UINT64_MAX;
		uint32_t t;

		if (n[0] == ':' || strncmp(n, ".tmp.", 5) == 0 ||
		    strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (n[0] == '.') {
			const char *q = n + 1, *end = n + strlen(n);

			if (!legacy_u32(&q, end, &t) || *q != '.' ||
			    q[1] == '\0')
				continue;
			rank = t;
			key = q + 1;
		}
		if (c->nups == cap) {
			cap = cap < 64 ? 64 : cap * 2;
			c->ups = xrealloc(c->ups, cap * sizeof(*c->ups));
		}
		c->ups[c->nups].fname = xstrdup(n);
		c->ups[c->nups].key = c->ups[c->nups].fname +
		    (size_t)(key - n);
		c->ups[c->nups].rank = rank;
		c->nups++;
	}
	closedir(d);
	if (c->nups > 1)
		qsort(c->ups, c->nups, sizeof(*c->ups), kw_update_cmp);
}

/* Add to flags the letter of keyword name (made when new). */
static void
kw_add(struct mbox *mb, const char *name, char flags[MAILDIR_FLAGS_MAX + 1])
{
	char letter = mbox_keyword_letter(mb, name, true);
	size_t len = strlen(flags);

	if (letter == 0) {
		log_warn("%s: Courier keyword \"%s\" cannot be kept "
		    "(not an atom, or 26 keywords already)", mb->path, name);
		return;
	}
	if (strchr(flags, letter) == NULL && len < MAILDIR_FLAGS_MAX) {
		flags[len] = letter;
		flags[len + 1] = '\0';
	}
}

/* The keywords Courier has for message key, added to flags. */
static void
kw_message(struct mbox *mb, const char *dir, struct kw_courier *c,
    const char *key, char flags[MAILDIR_FLAGS_MAX + 1])
{
	struct kw_update *u = NULL;
	struct kw_entry ek = { key, NULL }, *e;
	size_t lo = 0, hi = c->nups, mid;

	/* the newest update file of key: the first of its run */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (strcmp(c->ups[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < c->nups && strcmp(c->ups[lo].key, key) == 0)
		u = &c->ups[lo];
	if (u != NULL) {
		char *path = xasprintf("%s/%s", dir, u->fname);
		char *buf, *line, *next;
		struct stat st;
		size_t len;

		if (legacy_read(path, &buf, &len, &st) > 0 &&
		    len <= COURIER_KW_FILE_MAX) {
			for (line = buf; *line != '\0'; line = next) {
				next = strchr(line, '\n');
				if (next != NULL)
					*next++ = '\0';
				else
					next = line + strlen(line);
				if (*line == '\0')
					break;
				kw_add(mb, line, flags);
			}
		}
		free(buf);
		free(path);
		return;
	}
	e = c->nents == 0 ? NULL : bsearch(&ek, c->ents, c->nents,
	    sizeof(*c->ents), kw_entry_cmp);
	if (e == NULL)
		return;
	for (const char *p = e->idx, *end = p + strlen(p); p < end;) {
		uint32_t n;

		while (p < end && *p == ' ')
			p++;
		if (!legacy_u32(&p, end, &n)) {
			while (p < end && *p != ' ')
				p++;
			continue;
		}
		if (n < c->nnames)
			kw_add(mb, c->names[n], flags);
	}
}

void
mbox_legacy_kw_import(struct mbox *mb)
{
	struct mbox_priv *p = mb->priv;
	char *dir = xasprintf("%s/%s", mb->path, COURIER_KW_DIR);
	char *mark = xasprintf("%s/%s", mb->path, COURIER_KW_MARK);
	char flags[MAILDIR_FLAGS_MAX + 1];
	struct kw_courier c;
	const char *error;
	struct stat st;
	size_t n = mb->n, i;
	bool failed = false;
	int fd;

	memset(&c, 0, sizeof(c));
	if (mb->readonly || !courier_kw_dir(mb) || lstat(mark, &st) == 0)
		goto out;
	kw_read_list(dir, &c);
	kw_read_updates(dir, &c);
	p->courier_kw_importing = true;
	for (i = 0; i < n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);
		char *key;

		if (m->expunged)
			continue;
		key = xstrndup(m->name, legacy_key_len(m->name));
		mbox_msg_flags(m, flags);
		kw_message(mb, dir, &c, key, flags);
		free(key);
		if (mbox_flags_bits(flags) != mbox_msg(mb, i)->flagbits &&
		    mbox_set_flags(mb, i, flags, &error) < 0) {
			log_warn("%s", error);
			failed = true;
		}
	}
	p->courier_kw_importing = false;
	if (mbox_flush(mb, &error) < 0) {
		log_warn("%s", error);
		failed = true;
	}
	if (failed)
		goto out;	/* tried again at the next open */
	fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		log_warn("open(%s) failed: %s", mark, strerror(errno));
	else
		close(fd);
	log_info("%s: Courier keywords read", mb->path);
out:
	kw_courier_free(&c);
	free(mark);
	free(dir);
}

/* The maildir (INBOX) a Maildir++ folder belongs to, or NULL when the
 * folder is no such folder (it has no "maildirfolder"). */
static char *
legacy_root(const char *folder)
{
	char *marker = xasprintf("%s/maildirfolder", folder);
	char *root = NULL, *slash;

	if (access(marker, F_OK) == 0) {
		root = xstrdup(folder);
		while ((slash = strrchr(root, '/')) != NULL && slash[1] == '\0')
			*slash = '\0';
		if ((slash = strrchr(root, '/')) != NULL && slash != root)
			*slash = '\0';
		else
			xfree(&root);
	}
	free(marker);
	return root;
}

/* Make folder/name with the text in data unless it exists, when the
 * root has a regular file of that name (whose permission bits it
 * gets). */
static void
legacy_make(const char *root, const char *folder, const char *name,
    const str_t *data)
{
	char *rpath = xasprintf("%s/%s", root, name);
	char *path = xasprintf("%s/%s", folder, name);
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	struct stat st;
	int fd;

	if (lstat(rpath, &st) < 0 || !S_ISREG(st.st_mode) ||
	    lstat(path, &st) == 0 || errno != ENOENT)
		goto out;
	(void)lstat(rpath, &st);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    st.st_mode & 0666);
	if (fd < 0) {
		log_warn("open(%s) failed: %s", tmp, strerror(errno));
		goto out;
	}
	(void)fchmod(fd, st.st_mode & 0666);
	if (legacy_commit(fd, tmp, path, folder, data) == 0)
		log_info("%s: made %s for the folder's UIDVALIDITY", folder,
		    name);
out:
	free(tmp);
	free(path);
	free(rpath);
}

/* courierimapkeywords/ for the folder when its INBOX has one (with the
 * folder's mode, as Courier makes it), and the mark that there is
 * nothing to read from it. */
static void
kw_make_dir(const char *root, const char *folder)
{
	char *rdir = xasprintf("%s/%s", root, COURIER_KW_DIR);
	char *dir = xasprintf("%s/%s", folder, COURIER_KW_DIR);
	char *mark = xasprintf("%s/%s", folder, COURIER_KW_MARK);
	struct stat st;
	int fd;

	if (lstat(rdir, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    stat(folder, &st) < 0)
		goto out;
	if (mkdir(dir, st.st_mode & 0777) < 0) {
		if (errno != EEXIST)
			log_warn("mkdir(%s) failed: %s", dir, strerror(errno));
		goto out;
	}
	fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0)
		close(fd);
out:
	free(mark);
	free(dir);
	free(rdir);
}

void
mbox_legacy_create(struct mbox *mb)
{
	char *root = legacy_root(mb->path);
	str_t s = STR_INIT;

	if (root == NULL)
		return;
	str_printf(&s, "3 V%" PRIu32 " N%" PRIu32 "\n", mb->uidvalidity,
	    mb->uidnext);
	legacy_make(root, mb->path, MBOX_DOVECOT_UIDLIST, &s);
	str_truncate(&s, 0);
	str_printf(&s, "1 %" PRIu32 " %" PRIu32 "\n", mb->uidvalidity,
	    mb->uidnext);
	legacy_make(root, mb->path, MBOX_COURIER_UIDDB, &s);
	str_free(&s);
	kw_make_dir(root, mb->path);
	free(root);
}
