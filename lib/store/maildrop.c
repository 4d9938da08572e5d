/*
 * maildrop.c: a POP3 maildrop on INBOX's index (see maildrop.h).
 *
 * Trust: file names come from the index, which only holds names that
 * can be stored in it (see mailbox.c); nothing outside new/ and cur/ is
 * read or changed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/store/maildrop.h"
#include "lib/store/mailbox.h"
#include "lib/store/mbox_int.h"

int
store_drop_lock(const char *maildir, int *fd_r, const char **error_r)
{
	char *path;
	int fd;

	*fd_r = -1;
	/* nothing is created through a symbolic link (docs/security.md) */
	if (maildir_check_dirs(maildir, error_r) < 0)
		return -1;
	path = xasprintf("%s/%s", maildir, STORE_DROP_LOCK_NAME);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == ENOENT) {
		free(path);
		return 0;	/* no maildir yet: an empty drop */
	}
	if (fd < 0) {
		mbox_fail(error_r, "open %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		close(fd);
		if (err == EWOULDBLOCK)
			return 1;
		return mbox_fail(error_r, "flock %s/%s: %s", maildir,
		    STORE_DROP_LOCK_NAME, strerror(err));
	}
	*fd_r = fd;
	return 0;
}

/* Both cur/ and new/ there (else an empty maildrop). */
static bool
drop_exists(const char *maildir)
{
	for (int d = 0; d < 2; d++) {
		char *path = xasprintf("%s/%s", maildir, d ? "cur" : "new");
		struct stat st;
		int r = stat(path, &st);

		free(path);
		if (r < 0 && errno == ENOENT)
			return false;
	}
	return true;
}

/* The stable part of a file name: before the info (":2,"), size fields
 * included, as the UIDL has always been made. */
static size_t
key_len_of(const char *name)
{
	struct maildir_name mn;
	size_t len = strlen(name);
	const char *colon;

	if (maildir_name_parse(name, len, &mn) == 0)
		return mn.prefix_len;
	colon = strchr(name, ':');
	return colon != NULL ? (size_t)(colon - name) : len;
}

/* "<secs>.M<usecs>..." as a number pair; 0 if the name has another
 * form. */
static void
name_time(const char *name, unsigned long long *sec, unsigned long *usec)
{
	char *end;

	*sec = strtoull(name, &end, 10);
	*usec = 0;
	if (end[0] == '.' && end[1] == 'M')
		*usec = strtoul(end + 2, NULL, 10);
}

/* Delivery order: the time in the name, then the stable part. */
static int
cmp_delivery(const void *a, const void *b)
{
	const struct maildir_msg *x = a, *y = b;
	unsigned long long xs, ys;
	unsigned long xu, yu;
	size_t n;
	int c;

	name_time(x->name, &xs, &xu);
	name_time(y->name, &ys, &yu);
	if (xs != ys)
		return xs < ys ? -1 : 1;
	if (xu != yu)
		return xu < yu ? -1 : 1;
	n = x->key_len < y->key_len ? x->key_len : y->key_len;
	c = memcmp(x->name, y->name, n);
	if (c != 0)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* Files of new/ and cur/ the listing lacks: messages the index could not
 * record yet (a full disk keeps new UIDs from being written). POP3 shows
 * them all the same, without a UID; the UIDL is the name's stable part. */
static void
add_unindexed(const char *maildir, struct maildir_msg **msgs, size_t *n,
    size_t *cap)
{
	static const char *const subs[] = { "new", "cur" };

	for (size_t k = 0; k < 2; k++) {
		char *dir = xasprintf("%s/%s", maildir, subs[k]);
		DIR *d = opendir(dir);
		struct dirent *de;

		while (d != NULL && (de = readdir(d)) != NULL) {
			struct maildir_name mn;
			struct maildir_msg *m;
			struct stat st;
			size_t klen;
			bool known = false;
			char *path;

			if (de->d_name[0] == '.')
				continue;
			klen = key_len_of(de->d_name);
			for (size_t i = 0; i < *n && !known; i++)
				known = (*msgs)[i].key_len == klen &&
				    strncmp((*msgs)[i].name, de->d_name,
				    klen) == 0;
			if (known)
				continue;
			path = xasprintf("%s/%s", dir, de->d_name);
			/* lstat: a symbolic link is no message */
			if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
				free(path);
				continue;
			}
			free(path);
			if (*n + 1 >= *cap) {
				*cap = *cap * 2 + 8;
				*msgs = xrealloc(*msgs, *cap * sizeof(**msgs));
			}
			m = &(*msgs)[(*n)++];
			memset(m, 0, sizeof(*m));
			m->name = xstrdup(de->d_name);
			m->in_cur = k == 1;
			m->size = (uint64_t)st.st_size;
			m->key_len = klen;
			if (maildir_name_parse(de->d_name, strlen(de->d_name),
			    &mn) == 0) {
				m->vsize = mn.has_vsize ? mn.vsize : m->size;
				snprintf(m->flags, sizeof(m->flags), "%s",
				    mn.flags);
			} else {
				m->vsize = m->size;
			}
		}
		if (d != NULL)
			closedir(d);
		free(dir);
	}
}

static int
drop_list(const char *maildir, struct maildir_msg **msgs_r, size_t *n_r,
    uint32_t *uidvalidity_r, const char **error_r)
{
	struct maildir_msg *msgs;
	struct mbox *mb;
	size_t n = 0, cap;

	*msgs_r = NULL;
	*n_r = 0;
	*uidvalidity_r = 0;
	if (!drop_exists(maildir))
		return 0;
	if (mbox_open(maildir, true, &mb, error_r) < 0)
		return -1;
	/* mb->n may grow while sizes are learned (a re-sync) */
	for (size_t i = 0; i < mb->n; i++) {
		if (mbox_msg(mb, i)->expunged || !mbox_msg(mb, i)->info_pending)
			continue;
		if (mbox_msg_info(mb, i, error_r) < 0) {
			mbox_close(&mb);
			return -1;
		}
	}
	msgs = xcalloc(mb->n + 1, sizeof(*msgs));
	for (size_t i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);
		struct maildir_msg *d = &msgs[n];

		if (m->expunged || m->info_pending)
			continue;	/* vanished while listed */
		d->name = xstrdup(m->name);
		d->in_cur = m->in_cur;
		d->uid = m->uid;
		d->size = m->size;
		d->vsize = m->vsize;
		d->key_len = key_len_of(m->name);
		mbox_msg_flags(m, d->flags);
		n++;
	}
	cap = mb->n + 1;
	*uidvalidity_r = mb->uidvalidity;
	mbox_close(&mb);
	add_unindexed(maildir, &msgs, &n, &cap);
	if (n > 0)
		qsort(msgs, n, sizeof(*msgs), cmp_delivery);
	*msgs_r = msgs;
	*n_r = n;
	return 0;
}

int
store_drop_list(const char *maildir, struct maildir_msg **msgs_r,
    size_t *n_r, const char **error_r)
{
	uint32_t uidvalidity;

	return drop_list(maildir, msgs_r, n_r, &uidvalidity, error_r);
}

int
store_drop_list_uidl(const char *maildir, enum store_uidl_format fmt,
    struct maildir_msg **msgs_r, size_t *n_r, const char **error_r)
{
	uint32_t uidvalidity;

	if (drop_list(maildir, msgs_r, n_r, &uidvalidity, error_r) < 0)
		return -1;
	if (*n_r > 0 || fmt != STORE_UIDL_FILENAME)
		store_drop_uidls(maildir, fmt, uidvalidity, *msgs_r, n_r);
	return 0;
}

/* Where the message with m's UID is now: m updated. 0 found, 1 gone. */
static int
relocate(const char *maildir, struct maildir_msg *m, const char **error_r)
{
	struct mbox *mb;
	long k;
	int ret = 1;

	if (m->uid == 0)
		return 1;
	if (mbox_open(maildir, true, &mb, error_r) < 0)
		return -1;
	k = mbox_find_uid(mb, m->uid);
	if (k >= 0 && !mbox_msg(mb, k)->expunged) {
		free(m->name);
		m->name = xstrdup(mbox_msg(mb, k)->name);
		m->in_cur = mbox_msg(mb, k)->in_cur;
		ret = 0;
	}
	mbox_close(&mb);
	return ret;
}

int
store_drop_read(const char *maildir, struct maildir_msg *m,
    char **data_r, size_t *len_r, const char **error_r)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		char *path = maildir_msg_path(maildir, m);
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
		    O_NONBLOCK);
		struct stat st;
		int r;

		if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
			close(fd);
			fd = -1;
			errno = EINVAL;
		}
		if (fd < 0 && errno == ELOOP)
			errno = EINVAL;
		if (fd < 0) {
			if (errno != ENOENT) {
				mbox_fail(error_r, "open %s: %s", path,
				    strerror(errno));
				free(path);
				return -1;
			}
			free(path);
			if (attempt > 0)
				return 1;
			r = relocate(maildir, m, error_r);
			if (r != 0)
				return r;
			continue;
		}
		r = read_fd_all(fd, data_r, len_r, &st);
		if (r < 0)
			mbox_fail(error_r, "read %s: %s", path,
			    strerror(errno));
		close(fd);
		free(path);
		return r;
	}
	return 1;
}

int
store_drop_update(const char *maildir, const struct maildir_msg *msgs,
    size_t n, const bool *deleted, const bool *seen, size_t *deleted_r,
    const char **error_r)
{
	struct mbox *mb;
	size_t *idx, nx = 0, ndel = 0, nunlinked = 0;
	bool work = false;
	int64_t bytes = 0;
	const char *err;
	int ret = 0;

	*deleted_r = 0;
	for (size_t i = 0; i < n; i++) {
		if (deleted[i])
			ndel++;
		if (deleted[i] || (seen[i] &&
		    !maildir_flags_has(msgs[i].flags, 'S')))
			work = true;
	}
	if (!work)
		return 0;
	if (mbox_open_keep_new(maildir, &mb, error_r) < 0)
		return -1;
	idx = xmalloc((n + 1) * sizeof(*idx));
	for (size_t i = 0; i < n; i++) {
		long k = msgs[i].uid != 0 ? mbox_find_uid(mb, msgs[i].uid) : -1;
		struct mbox_msg *m;

		if (msgs[i].uid == 0 && deleted[i]) {
			/* not in the index (it could not be written): the
			 * file itself goes; unlink needs no space */
			char *path = maildir_msg_path(maildir, &msgs[i]);

			if (unlink(path) == 0) {
				bytes += (int64_t)msgs[i].size;
				nunlinked++;
			} else if (errno != ENOENT) {
				ret = err_fail(error_r, errno, "unlink %s: %s",
				    path, strerror(errno));
			}
			free(path);
			continue;
		}
		if (k < 0 || mbox_msg(mb, k)->expunged)
			continue;	/* gone already */
		m = mbox_msg(mb, k);
		if (deleted[i]) {
			idx[nx++] = (size_t)k;
			bytes += (int64_t)msgs[i].size;
		} else if (seen[i] && !mbox_msg_has(m, 'S')) {
			char flags[MAILDIR_FLAGS_MAX + 1];

			mbox_bits_flags(m->flagbits | mbox_flag_bit('S'), flags);
			if (mbox_set_flags(mb, (size_t)k, flags, &err) < 0)
				log_warn("%s: \\Seen for uid %u: %s", maildir,
				    msgs[i].uid, err);
		}
	}
	if (nx > 0 && mbox_expunge(mb, idx, nx, error_r) < 0) {
		ret = -1;
	} else if (nx + nunlinked > 0 && maildir_quota_add(maildir, -bytes,
	    -(int64_t)(nx + nunlinked), &err) < 0) {
		/* Maildir++ quota: the deletions count. */
		log_warn("%s: %s", maildir, err);
	}
	free(idx);
	mbox_close(&mb);
	if (ret == 0)
		*deleted_r = ndel;
	return ret;
}
