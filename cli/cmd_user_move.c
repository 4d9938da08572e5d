/*
 * cmd_user_move.c: petrel user move ADDRESS HOST — a user's mailbox to
 * another backend (docs/scale-out.md, "Moving a user").
 *
 * The command runs where the source maildir is, under mail_root (or
 * --source-root). The copy goes to the destination backend's LMTP
 * listener (XMOVE, smtp/xmove.c: the backend writes it under its own
 * mail_root, dest_remote below), or with --dest-root through the file
 * system to that directory, a mount of the destination's mail_root
 * (dest_local). The passes are the same for both. The maildir is copied as
 * it is, file by file: message files keep their names (the UIDs are
 * petrel-index's, keyed by name) and their mtimes (INTERNALDATE), the
 * index, its log, the cache, dovecot-keywords, petrel-uidvalidity, the
 * subscriptions and any other file or directory (Sieve scripts) go
 * along. Nothing is changed in the files: UIDs, UIDVALIDITY, flags and
 * keywords are the same on the new backend.
 *
 * The steps, each safe to stop after:
 *  1. two passes copy the live maildir into a staging directory next to
 *     the destination (<maildir>.petrel-move), the second taking what
 *     changed during the first;
 *  2. the source maildir is exchanged (renameat2 RENAME_EXCHANGE, one
 *     atomic step) with a file "moving HOST" and renamed
 *     <maildir>.moved-<UTC time>. From then on the source changes
 *     nothing of it: its IMAP sessions of the user end with * BYE
 *     [UNAVAILABLE] at their next command, a delivery there is deferred
 *     (451 4.3.0; one under way fails at its rename and is retried), and
 *     no delivery can make a new maildir at that name (it is a file);
 *  3. the last pass, holding every folder's petrel-lock (the lock each
 *     change of a folder is made under), makes the staging copy equal to
 *     the renamed maildir: new files copied, flag renames and moves from
 *     new/ to cur/ repeated, removed files removed;
 *  4. the staging directory becomes the destination maildir, then the
 *     row's host column is set to HOST: the frontends send the user's
 *     logins and mail there;
 *  5. the source's file becomes "moved HOST": mail a frontend had queued
 *     for the old backend is passed on there by LMTP.
 * A failure before step 4 undoes what was done (the maildir back in
 * place) and changes nothing. The source copy is never deleted.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"
#include "lib/smtp/lmtp_client.h"
#include "lib/tls/tls.h"
#include "lib/trust/srs.h"

#define STAGE_SUFFIX	".petrel-move"
#define MARKER_SUFFIX	".petrel-moving"
#define COPY_TMP	".petrel-move.tmp"
#define CONNECT_TIMEOUT_MS 5000

struct move {
	const char *err;	/* the first failure (static or errbuf) */
	char errbuf[512];
	bool lock;		/* the last pass: take each folder's lock */
	int *locks;		/* petrel-lock fds held until the end */
	size_t nlocks;
	unsigned long files, bytes;
};

static int
fail(struct move *m, const char *what, const char *path)
{
	snprintf(m->errbuf, sizeof(m->errbuf), "%s %s: %s", what, path,
	    strerror(errno));
	m->err = m->errbuf;
	return -1;
}

static char *
strip_slash(const char *p)
{
	char *s = xstrdup(p);
	size_t n = strlen(s);

	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

static char *
parent_of(const char *p)
{
	char *s = xstrdup(p), *slash = strrchr(s, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == s)
		slash[1] = '\0';
	else
		*slash = '\0';
	return s;
}

/* ---- the destination ----
 *
 * The passes below read the source as files and change the staging copy
 * only through these operations, on paths relative to the staging
 * directory ("" is the staging directory itself): what it holds, a file
 * put (bytes, mode, mtime), a symbolic link, a directory, a removal, a
 * rename within it and a directory made durable. dest_local is the
 * staging directory as a directory of this machine (--dest-root). */

struct dent {
	char *name;
	char type;		/* 'd', 'f', 'l' or '?' */
	off_t size;
	struct timespec mtime;
};

struct dest;
struct dest_ops {
	/* the entries of directory rel, sorted by name; -1 (errno) if
	 * it cannot be read */
	int (*list)(struct dest *, const char *rel, struct dent **v_r,
	    size_t *n_r);
	/* rel made a copy of in (st its stat): written to a temporary
	 * name, made durable, renamed over rel */
	int (*put)(struct dest *, const char *rel, int in,
	    const struct stat *st);
	int (*link)(struct dest *, const char *rel, const char *target,
	    const struct stat *st);
	/* rel made a directory (existing already is fine) */
	int (*mkdir)(struct dest *, const char *rel, const struct stat *st);
	/* rel removed, with everything below it; gone already is fine */
	int (*remove)(struct dest *, const char *rel);
	int (*rename)(struct dest *, const char *from, const char *to);
	int (*sync)(struct dest *, const char *rel);
};

struct dest {
	const struct dest_ops *ops;
	struct move *m;
	char *root;		/* dest_local: the staging directory */
	/* dest_remote: the connection to HOST, what was read of it, the
	 * last reply line */
	const char *host;
	struct lmtp_client lc;	/* lib/smtp/lmtp_client */
	struct tls_client *tc;	/* STARTTLS (proxy_tls_ca verifies) */
};

static char *
rel_join(const char *rel, const char *name)
{
	return rel[0] == '\0' ? xstrdup(name) : xasprintf("%s/%s", rel, name);
}

static int
cmp_dent(const void *a, const void *b)
{
	return strcmp(((const struct dent *)a)->name,
	    ((const struct dent *)b)->name);
}

static void
free_dents(struct dent *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

static struct dent *
find_dent(struct dent *v, size_t n, const char *name)
{
	struct dent key = { (char *)name, 0, 0, { 0, 0 } };

	return n == 0 ? NULL : bsearch(&key, v, n, sizeof(*v), cmp_dent);
}

static char *
local_path(struct dest *d, const char *rel)
{
	return rel[0] == '\0' ? xstrdup(d->root) :
	    xasprintf("%s/%s", d->root, rel);
}

static int
local_list(struct dest *d, const char *rel, struct dent **v_r, size_t *n_r)
{
	char *path = local_path(d, rel);
	DIR *dir = opendir(path);
	struct dirent *de;
	struct dent *v = NULL;
	size_t n = 0, cap = 0;

	*v_r = NULL;
	*n_r = 0;
	if (dir == NULL) {
		free(path);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, COPY_TMP) == 0)
			continue;
		if (fstatat(dirfd(dir), de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n++] = (struct dent){ xstrdup(de->d_name),
		    S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' :
		    S_ISLNK(st.st_mode) ? 'l' : '?', st.st_size, st.st_mtim };
	}
	closedir(dir);
	free(path);
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_dent);
	*v_r = v;
	*n_r = n;
	return 0;
}

/* in to rel (through its directory's COPY_TMP, fsync'd, renamed): mode,
 * mtime and (as root) owner kept. */
static int
local_put(struct dest *d, const char *rel, int in, const struct stat *st)
{
	struct move *m = d->m;
	char buf[65536], *dst = local_path(d, rel), *dir = parent_of(dst);
	char *tmp = xasprintf("%s/" COPY_TMP, dir);
	struct timespec ts[2];
	int out, r = -1;
	ssize_t n;

	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    st->st_mode & 0777);
	if (out < 0) {
		fail(m, "cannot create", tmp);
		goto done;
	}
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail(m, "cannot read the source of", dst);
			goto done;
		}
		if (write_full(out, buf, (size_t)n) < 0) {
			fail(m, "cannot write", tmp);
			goto done;
		}
		m->bytes += (unsigned long)n;
	}
	ts[0] = st->st_atim;
	ts[1] = st->st_mtim;
	if (geteuid() == 0 && fchown(out, st->st_uid, st->st_gid) < 0) {
		fail(m, "cannot chown", tmp);
		goto done;
	}
	if (fchmod(out, st->st_mode & 07777) < 0 || futimens(out, ts) < 0 ||
	    fdatasync(out) < 0) {
		fail(m, "cannot finish", tmp);
		goto done;
	}
	if (close(out) < 0) {
		out = -1;
		fail(m, "cannot write", tmp);
		goto done;
	}
	out = -1;
	if (rename(tmp, dst) < 0) {
		fail(m, "cannot rename to", dst);
		goto done;
	}
	r = 0;
done:
	if (out >= 0)
		close(out);
	if (r < 0)
		unlink(tmp);
	free(tmp);
	free(dir);
	free(dst);
	return r;
}

static int
local_link(struct dest *d, const char *rel, const char *target,
    const struct stat *st)
{
	char *dst = local_path(d, rel);
	int r = 0;

	unlink(dst);
	if (symlink(target, dst) < 0)
		r = fail(d->m, "cannot create the link", dst);
	else if (geteuid() == 0 && lchown(dst, st->st_uid, st->st_gid) < 0)
		r = fail(d->m, "cannot chown", dst);
	free(dst);
	return r;
}

static int
local_mkdir(struct dest *d, const char *rel, const struct stat *st)
{
	char *p = local_path(d, rel);
	int r = 0;

	if (mkdir(p, st->st_mode & 07777) < 0 && errno != EEXIST)
		r = fail(d->m, "cannot create", p);
	else if (geteuid() == 0 && lchown(p, st->st_uid, st->st_gid) < 0)
		r = fail(d->m, "cannot chown", p);
	free(p);
	return r;
}

static int remove_tree(const char *path);

static int
local_remove(struct dest *d, const char *rel)
{
	char *p = local_path(d, rel);
	int r = 0;

	if (remove_tree(p) < 0)
		r = fail(d->m, "cannot remove", p);
	free(p);
	return r;
}

static int
local_rename(struct dest *d, const char *from, const char *to)
{
	char *f = local_path(d, from), *t = local_path(d, to);
	int r = 0;

	if (rename(f, t) < 0)
		r = fail(d->m, "cannot rename", f);
	free(f);
	free(t);
	return r;
}

static int
local_sync(struct dest *d, const char *rel)
{
	char *p = local_path(d, rel);
	int r = 0, fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0)
		r = fail(d->m, "cannot sync", p);
	if (fd >= 0)
		close(fd);
	free(p);
	return r;
}

static const struct dest_ops dest_local = {
	local_list, local_put, local_link, local_mkdir, local_remove,
	local_rename, local_sync,
};

/* ---- the passes ---- */

static int
remove_tree(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char *p;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		p = xasprintf("%s/%s", path, de->d_name);
		if (remove_tree(p) < 0)
			r = -1;
		free(p);
	}
	closedir(d);
	if (r == 0 && rmdir(path) < 0)
		r = -1;
	return r;
}

/* The names in a directory (NULL-terminated, sorted); NULL on error. */
static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **
list_dir(const char *path, size_t *n_r)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0, cap = 0;

	*n_r = 0;
	if (d == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, COPY_TMP) == 0)
			continue;
		if (n + 1 >= cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, (cap) * sizeof(*v));
		}
		v[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (v == NULL)
		v = xcalloc(1, sizeof(*v));
	v[n] = NULL;
	qsort(v, n, sizeof(*v), cmp_str);
	*n_r = n;
	return v;
}

static void
free_list(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static bool
in_list(char **v, size_t n, const char *name)
{
	return bsearch(&name, v, n, sizeof(*v), cmp_str) != NULL;
}

/* A message's identity: its name up to the ':' of the info (flags). */
static size_t
base_len(const char *name)
{
	const char *c = strchr(name, ':');

	return c != NULL ? (size_t)(c - name) : strlen(name);
}

struct msg {
	char *name;
	bool cur;	/* in cur/ (else new/) */
	bool used;
};

static int
cmp_msg(const void *a, const void *b)
{
	const struct msg *x = a, *y = b;
	size_t lx = base_len(x->name), ly = base_len(y->name);
	int c = memcmp(x->name, y->name, lx < ly ? lx : ly);

	return c != 0 ? c : (lx > ly) - (lx < ly);
}

/* The messages of a folder: of the source folder (dest NULL) or of the
 * destination's folder rel. */
static struct msg *
list_msgs(struct dest *dest, const char *folder, size_t *n_r)
{
	struct msg *v = NULL;
	size_t n = 0;

	for (int cur = 0; cur < 2; cur++) {
		char *p = dest != NULL ? rel_join(folder, cur ? "cur" : "new") :
		    xasprintf("%s/%s", folder, cur ? "cur" : "new");
		size_t k = 0;
		char **names = NULL;

		if (dest == NULL) {
			names = list_dir(p, &k);
		} else {
			struct dent *dv;

			if (dest->ops->list(dest, p, &dv, &k) == 0) {
				names = xcalloc(k + 1, sizeof(*names));
				for (size_t i = 0; i < k; i++) {
					names[i] = dv[i].name;
					dv[i].name = NULL;
				}
				free_dents(dv, k);
			}
		}
		free(p);
		if (names == NULL)
			continue;
		v = xrealloc(v, (n + k + 1) * sizeof(*v));
		for (size_t i = 0; i < k; i++)
			v[n++] = (struct msg){ names[i], cur != 0, false };
		free(names);
	}
	if (v == NULL)
		v = xcalloc(1, sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_msg);
	*n_r = n;
	return v;
}

/* A regular file of the source to rel. */
static int
copy_file(struct move *m, struct dest *dest, const char *src,
    const char *rel)
{
	struct stat st;
	int in, r;

	in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		/* a message renamed or removed under us: the next pass
		 * (the last one holds the lock) sees its new name */
		if (errno == ENOENT && !m->lock)
			return 0;
		return fail(m, "cannot open", src);
	}
	if (fstat(in, &st) < 0) {
		close(in);
		return fail(m, "cannot stat", src);
	}
	r = dest->ops->put(dest, rel, in, &st);
	if (r == 0)
		m->files++;
	close(in);
	return r;
}

static int
copy_link(struct move *m, struct dest *dest, const char *src,
    const char *rel)
{
	char target[4096];
	ssize_t n = readlink(src, target, sizeof(target) - 1);
	struct stat st;

	if (n < 0 || (size_t)n >= sizeof(target) - 1)
		return errno == ENOENT && !m->lock ? 0 :
		    fail(m, "cannot read the link", src);
	target[n] = '\0';
	if (lstat(src, &st) < 0)
		return errno == ENOENT && !m->lock ? 0 :
		    fail(m, "cannot stat", src);
	return dest->ops->link(dest, rel, target, &st);
}

/* cur/ and new/ of dst made equal to src's: a file dst already has
 * under another name or in the other directory (a flag change, a move
 * from new/ to cur/) is renamed there, not copied again. */
static int
sync_msgs(struct move *m, struct dest *dest, const char *src,
    const char *dst)
{
	size_t ns, nd;
	struct msg *s = list_msgs(NULL, src, &ns);
	struct msg *d = list_msgs(dest, dst, &nd);
	int r = 0;

	for (size_t i = 0; i < ns && r == 0; i++) {
		const char *sub = s[i].cur ? "cur" : "new";
		struct msg key = { s[i].name, false, false }, *hit;
		char *to = xasprintf("%s%s%s/%s", dst, dst[0] ? "/" : "", sub,
		    s[i].name);

		hit = bsearch(&key, d, nd, sizeof(*d), cmp_msg);
		/* one base twice in dst (should not be): take any unused */
		if (hit != NULL && hit->used)
			hit = NULL;
		if (hit != NULL) {
			hit->used = true;
			if (hit->cur != s[i].cur ||
			    strcmp(hit->name, s[i].name) != 0) {
				char *from = xasprintf("%s%s%s/%s", dst,
				    dst[0] ? "/" : "",
				    hit->cur ? "cur" : "new", hit->name);

				r = dest->ops->rename(dest, from, to);
				free(from);
			}
		} else {
			char *sp = xasprintf("%s/%s/%s", src, sub, s[i].name);

			r = copy_file(m, dest, sp, to);
			free(sp);
		}
		free(to);
	}
	/* what src no longer has: expunged */
	for (size_t i = 0; i < nd && r == 0; i++) {
		char *p;

		if (d[i].used)
			continue;
		p = xasprintf("%s%s%s/%s", dst, dst[0] ? "/" : "",
		    d[i].cur ? "cur" : "new", d[i].name);
		r = dest->ops->remove(dest, p);
		free(p);
	}
	for (size_t i = 0; i < ns; i++)
		free(s[i].name);
	for (size_t i = 0; i < nd; i++)
		free(d[i].name);
	free(s);
	free(d);
	return r;
}

static bool
is_folder(const char *dir)
{
	char *p = xasprintf("%s/cur", dir);
	struct stat st;
	bool r = lstat(p, &st) == 0 && S_ISDIR(st.st_mode);

	free(p);
	return r;
}

static int sync_tree(struct move *m, struct dest *dest, const char *src,
    const char *dst);

/* One entry of src (not cur/, new/ or tmp/ of a folder); have: what the
 * destination has under that name, if anything. */
static int
sync_entry(struct move *m, struct dest *dest, const char *src,
    const char *dst, const char *name, const struct dent *have)
{
	char *sp = xasprintf("%s/%s", src, name);
	char *dp = rel_join(dst, name);
	struct stat ss;
	int r = 0;

	if (lstat(sp, &ss) < 0) {
		if (errno != ENOENT || m->lock)
			r = fail(m, "cannot stat", sp);
	} else if (S_ISDIR(ss.st_mode)) {
		if (have != NULL && have->type != 'd')
			r = dest->ops->remove(dest, dp);
		if (r == 0)
			r = sync_tree(m, dest, sp, dp);
	} else if (S_ISLNK(ss.st_mode)) {
		if (have != NULL && have->type == 'd')
			r = dest->ops->remove(dest, dp);
		if (r == 0)
			r = copy_link(m, dest, sp, dp);
	} else if (S_ISREG(ss.st_mode)) {
		/* unchanged since the last pass: same size and mtime (the
		 * last pass, under the locks, copies all: a rewrite within
		 * one timestamp tick could keep both) */
		if (m->lock || have == NULL || have->type != 'f' ||
		    have->size != ss.st_size ||
		    have->mtime.tv_sec != ss.st_mtim.tv_sec ||
		    have->mtime.tv_nsec != ss.st_mtim.tv_nsec) {
			if (have != NULL && have->type == 'd')
				r = dest->ops->remove(dest, dp);
			if (r == 0)
				r = copy_file(m, dest, sp, dp);
		}
	}
	/* sockets, fifos: not mail */
	free(sp);
	free(dp);
	return r;
}

static int
take_lock(struct move *m, const char *folder)
{
	char *p = xasprintf("%s/petrel-lock", folder);
	int r, fd = open(p, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		/* a folder never opened by petrel has no lock file: nobody
		 * changes it under a lock either */
		r = errno == ENOENT ? 0 : fail(m, "cannot open", p);
		free(p);
		return r;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			close(fd);
			fail(m, "cannot lock", p);
			free(p);
			return -1;
		}
	}
	free(p);
	m->locks = xrealloc(m->locks, (m->nlocks + 1) * sizeof(int));
	m->locks[m->nlocks++] = fd;
	return 0;
}

/* The destination's dst made equal to the source directory src,
 * directory by directory. */
static int
sync_tree(struct move *m, struct dest *dest, const char *src,
    const char *dst)
{
	struct stat st;
	size_t ns, nd = 0;
	char **s = NULL;
	struct dent *d = NULL;
	bool folder = is_folder(src);
	int r = 0;

	if (lstat(src, &st) < 0)
		return fail(m, "cannot stat", src);
	if (dest->ops->mkdir(dest, dst, &st) < 0)
		return -1;
	if (folder) {
		if (m->lock && take_lock(m, src) < 0)
			return -1;
		for (int i = 0; i < 3 && r == 0; i++) {
			static const char *const sub[] = { "cur", "new", "tmp" };
			char *p = rel_join(dst, sub[i]);
			char *q = xasprintf("%s/%s", src, sub[i]);
			struct stat qs;

			/* as the source's (its owner: the account that
			 * delivers there), else as the folder's */
			if (lstat(q, &qs) < 0 || !S_ISDIR(qs.st_mode))
				qs = st;
			r = dest->ops->mkdir(dest, p, &qs);
			free(p);
			free(q);
		}
		if (r == 0)
			r = sync_msgs(m, dest, src, dst);
		if (r < 0)
			return -1;
	}
	s = list_dir(src, &ns);
	if (s == NULL) {
		r = fail(m, "cannot list", src);
		goto done;
	}
	if (dest->ops->list(dest, dst, &d, &nd) < 0) {
		r = m->err != NULL ? -1 : fail(m, "cannot list", dst);
		goto done;
	}
	for (size_t i = 0; i < ns && r == 0; i++) {
		if (folder && (strcmp(s[i], "cur") == 0 ||
		    strcmp(s[i], "new") == 0 || strcmp(s[i], "tmp") == 0))
			continue;
		r = sync_entry(m, dest, src, dst, s[i], find_dent(d, nd, s[i]));
	}
	/* gone from src (a deleted or renamed folder, an old file) */
	for (size_t i = 0; i < nd && r == 0; i++) {
		char *p;

		if (in_list(s, ns, d[i].name) ||
		    (folder && strcmp(d[i].name, "tmp") == 0))
			continue;
		p = rel_join(dst, d[i].name);
		r = dest->ops->remove(dest, p);
		free(p);
	}
	/* the directory entries made durable */
	for (int i = 0; r == 0 && i < (folder ? 3 : 1); i++) {
		char *p = i == 0 ? xstrdup(dst) :
		    rel_join(dst, i == 1 ? "cur" : "new");

		r = dest->ops->sync(dest, p);
		free(p);
	}
done:
	free_list(s);
	free_dents(d, nd);
	return r;
}

/* Any message file in cur/ or new/ of dir or of a folder below it? */
static bool
holds_mail(const char *dir)
{
	size_t n;
	char **v = list_dir(dir, &n);
	bool r = false;

	if (v == NULL)
		return false;
	for (size_t i = 0; i < n && !r; i++) {
		char *p = xasprintf("%s/%s", dir, v[i]);
		struct stat st;

		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (strcmp(v[i], "cur") == 0 || strcmp(v[i], "new") == 0) {
				size_t k;
				char **m = list_dir(p, &k);

				r = k > 0;
				free_list(m);
			} else if (v[i][0] == '.') {
				r = holds_mail(p);
			}
		}
		free(p);
	}
	free_list(v);
	return r;
}

/* ---- the new backend answers ---- */

/* Connect to host:port and read a 220 greeting, within 5 s. */
static const char *
probe_host(const char *host, unsigned port)
{
	static char why[sizeof(((struct lmtp_client *)0)->why)];
	struct lmtp_client c;
	const char *r = NULL;

	lmtpc_init(&c);
	if (lmtpc_connect(&c, host, port, CONNECT_TIMEOUT_MS,
	    CONNECT_TIMEOUT_MS) < 0) {
		snprintf(why, sizeof(why), "%s", c.why);
		return why;
	}
	if (lmtpc_reply(&c, NULL, NULL, NULL) != 220)
		r = "no LMTP greeting";
	else
		(void)lmtpc_cmd(&c, "QUIT");
	lmtpc_close(&c);
	return r;
}

/* ---- dest_remote: the staging copy on the new backend, over LMTP ----
 *
 * The destination backend's LMTP listener takes XMOVE (smtp/xmove.c)
 * from a peer in its proxy_trusted_networks that proves it knows
 * proxy_secret (an HMAC of the server's nonce; the secret is not sent).
 * Each operation is one command line and its reply; PUT sends the file's
 * bytes after its line. */

#define REMOTE_TIMEOUT_MS 300000

static void
remote_fail(struct dest *d, const char *what, const char *line)
{
	if (d->m->err != NULL)
		return;
	snprintf(d->m->errbuf, sizeof(d->m->errbuf), "%s %s: %.300s", d->host,
	    what, line);
	d->m->err = d->m->errbuf;
}

static void
remote_drop(struct dest *d)
{
	lmtpc_close(&d->lc);
	tls_client_free(&d->tc);
}

static int
remote_send(struct dest *d, const char *buf, size_t len)
{
	if (d->lc.fd < 0)
		return -1;
	if (lmtpc_send(&d->lc, buf, len) < 0) {
		remote_fail(d, "connection", d->lc.why);
		remote_drop(d);
		return -1;
	}
	return 0;
}

/* One reply line (CRLF removed) into d->lc.line; -1 when the connection
 * failed or REMOTE_TIMEOUT_MS passed. */
static int
remote_line(struct dest *d)
{
	if (lmtpc_line(&d->lc) < 0) {
		remote_fail(d, "connection", d->lc.why);
		remote_drop(d);
		return -1;
	}
	return 0;
}

/* The final line of a reply (continuation lines skipped) in d->lc.line;
 * its code, or -1. */
static int
remote_reply(struct dest *d)
{
	do {
		if (remote_line(d) < 0)
			return -1;
	} while (strlen(d->lc.line) >= 4 && d->lc.line[3] == '-');
	return atoi(d->lc.line);
}

static void
remote_path(str_t *o, const char *rel)
{
	const char *p = rel[0] == '\0' ? "." : rel;

	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= ' ' || c == '%' || c == 0x7f)
			str_printf(o, "%%%02X", c);
		else
			str_append_c(o, (char)c);
	}
}

/* Send a command made of a verb, words and paths; 0 when answered 2xx. */
static int
remote_cmd(struct dest *d, str_t *cmd, const char *what)
{
	int code;

	str_append(cmd, "\r\n");
	code = remote_send(d, str_c(cmd), cmd->len) < 0 ? -1 :
	    remote_reply(d);
	str_free(cmd);
	if (code < 200 || code > 299) {
		if (code > 0)
			remote_fail(d, what, d->lc.line);
		return -1;
	}
	return 0;
}

static int
pct_decode_name(char *p)
{
	char *w = p;

	for (; *p != '\0'; p++) {
		if (*p == '%' && isxdigit((unsigned char)p[1]) &&
		    isxdigit((unsigned char)p[2])) {
			char hex[3] = { p[1], p[2], '\0' };

			*w++ = (char)strtoul(hex, NULL, 16);
			p += 2;
		} else if (*p == '%') {
			return -1;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return 0;
}

static int
remote_list(struct dest *d, const char *rel, struct dent **v_r, size_t *n_r)
{
	str_t cmd = STR_INIT;
	struct dent *v = NULL;
	size_t n = 0, cap = 0;

	*v_r = NULL;
	*n_r = 0;
	str_append(&cmd, "LIST ");
	remote_path(&cmd, rel);
	str_append(&cmd, "\r\n");
	if (remote_send(d, str_c(&cmd), cmd.len) < 0) {
		str_free(&cmd);
		return -1;
	}
	str_free(&cmd);
	for (;;) {
		char type, name[4096];
		long long size, sec;
		long nsec;

		if (remote_line(d) < 0)
			goto fail;
		if (strncmp(d->lc.line, "250 ", 4) == 0)
			break;
		if (strncmp(d->lc.line, "250-", 4) != 0) {
			/* not there (yet): as an empty directory is for
			 * the callers that take that */
			errno = ENOENT;
			goto fail;
		}
		if (sscanf(d->lc.line + 4, "%c %lld %lld %ld %4095s", &type, &size,
		    &sec, &nsec, name) != 5 || pct_decode_name(name) < 0) {
			remote_fail(d, "LIST", d->lc.line);
			errno = EPROTO;
			goto fail;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n++] = (struct dent){ xstrdup(name), type, (off_t)size,
		    { (time_t)sec, nsec } };
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_dent);
	*v_r = v;
	*n_r = n;
	return 0;
fail:
	free_dents(v, n);
	return -1;
}

static int
remote_put(struct dest *d, const char *rel, int in, const struct stat *st)
{
	str_t cmd = STR_INIT;
	char buf[65536];
	off_t off = 0;
	bool shrunk = false;
	int code;

	str_printf(&cmd, "PUT %o %lld %ld %lld ", (unsigned)(st->st_mode & 07777),
	    (long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec,
	    (long long)st->st_size);
	remote_path(&cmd, rel);
	str_append(&cmd, "\r\n");
	if (remote_send(d, str_c(&cmd), cmd.len) < 0) {
		str_free(&cmd);
		return -1;
	}
	str_free(&cmd);
	while (off < st->st_size) {
		size_t want = st->st_size - off < (off_t)sizeof(buf) ?
		    (size_t)(st->st_size - off) : sizeof(buf);
		ssize_t k = shrunk ? 0 : pread(in, buf, want, off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			/* the file shrank while copied: the promised bytes
			 * are sent all the same, the copy fails */
			shrunk = true;
			memset(buf, 0, want);
			k = (ssize_t)want;
		}
		if (remote_send(d, buf, (size_t)k) < 0)
			return -1;
		off += k;
	}
	code = remote_reply(d);
	if (code < 200 || code > 299) {
		if (code > 0)
			remote_fail(d, "PUT", d->lc.line);
		return -1;
	}
	if (shrunk) {
		snprintf(d->m->errbuf, sizeof(d->m->errbuf), "%s changed while "
		    "copied", rel);
		d->m->err = d->m->errbuf;
		return -1;
	}
	d->m->bytes += (unsigned long)st->st_size;
	return 0;
}

static int
remote_link(struct dest *d, const char *rel, const char *target,
    const struct stat *st)
{
	str_t cmd = STR_INIT;

	(void)st;
	str_append(&cmd, "LINK ");
	remote_path(&cmd, rel);
	str_append_c(&cmd, ' ');
	remote_path(&cmd, target);
	return remote_cmd(d, &cmd, "LINK");
}

static int
remote_mkdir(struct dest *d, const char *rel, const struct stat *st)
{
	str_t cmd = STR_INIT;

	str_printf(&cmd, "MKDIR %o ", (unsigned)(st->st_mode & 07777));
	remote_path(&cmd, rel);
	return remote_cmd(d, &cmd, "MKDIR");
}

static int
remote_remove(struct dest *d, const char *rel)
{
	str_t cmd = STR_INIT;

	str_append(&cmd, "DEL ");
	remote_path(&cmd, rel);
	return remote_cmd(d, &cmd, "DEL");
}

static int
remote_rename(struct dest *d, const char *from, const char *to)
{
	str_t cmd = STR_INIT;

	str_append(&cmd, "RENAME ");
	remote_path(&cmd, from);
	str_append_c(&cmd, ' ');
	remote_path(&cmd, to);
	return remote_cmd(d, &cmd, "RENAME");
}

static int
remote_sync(struct dest *d, const char *rel)
{
	str_t cmd = STR_INIT;

	str_append(&cmd, "SYNC ");
	remote_path(&cmd, rel);
	return remote_cmd(d, &cmd, "SYNC");
}

static const struct dest_ops dest_remote = {
	remote_list, remote_put, remote_link, remote_mkdir, remote_remove,
	remote_rename, remote_sync,
};

/* A whole-staging command (FINISH, UNFINISH, ABORT). */
static int
remote_word(struct dest *d, const char *verb)
{
	str_t cmd = STR_INIT;

	str_append(&cmd, verb);
	return remote_cmd(d, &cmd, verb);
}

/* Connected to host:port, greeted, LHLO said, XMOVE begun: the staging
 * directory is ready there. NULL, or why not. */
static const char *
remote_open(struct dest *d, const char *host, unsigned port,
    const char *maildir, const char *secret, const char *ca)
{
	static char why[600];
	const char *err;
	unsigned char mac[32];
	char *msg, hex[80];
	str_t cmd = STR_INIT;
	bool starttls = false;
	int code;

	if (lmtpc_connect(&d->lc, host, port, CONNECT_TIMEOUT_MS,
	    REMOTE_TIMEOUT_MS) < 0) {
		snprintf(why, sizeof(why), "%s", d->lc.why);
		return why;
	}
	if (remote_reply(d) != 220)
		goto bad;
	/* STARTTLS as the frontends use it: when offered, and always
	 * (the certificate verified) with proxy_tls_ca */
	if (remote_send(d, "LHLO petrel-user-move\r\n", 23) < 0)
		goto bad;
	do {
		if (remote_line(d) < 0)
			goto bad;
		if (strncasecmp(d->lc.line + (strlen(d->lc.line) >= 4 ? 4 : 0),
		    "STARTTLS", 8) == 0)
			starttls = true;
	} while (strlen(d->lc.line) >= 4 && d->lc.line[3] == '-');
	if (strncmp(d->lc.line, "250", 3) != 0) {
		remote_fail(d, "LHLO", d->lc.line);
		goto bad;
	}
	if (ca != NULL && ca[0] != '\0' && !starttls) {
		remote_fail(d, "LHLO", "no STARTTLS (proxy_tls_ca is set)");
		goto bad;
	}
	if (starttls) {
		str_append(&cmd, "STARTTLS");
		if (remote_cmd(d, &cmd, "STARTTLS") < 0)
			goto bad;
		d->tc = ca != NULL && ca[0] != '\0' ?
		    tls_client_new_verify(ca, &err) : tls_client_new(&err);
		if (d->tc == NULL) {
			remote_fail(d, "STARTTLS", err);
			goto bad;
		}
		if (lmtpc_starttls(&d->lc, d->tc, host) < 0) {
			remote_fail(d, "STARTTLS", d->lc.why);
			goto bad;
		}
		str_append(&cmd, "LHLO petrel-user-move");
		if (remote_cmd(d, &cmd, "LHLO") < 0)
			goto bad;
	}
	str_printf(&cmd, "XMOVE %s\r\n", maildir);
	if (remote_send(d, str_c(&cmd), cmd.len) < 0) {
		str_free(&cmd);
		goto bad;
	}
	str_free(&cmd);
	if ((code = remote_reply(d)) != 334 || strlen(d->lc.line) < 5) {
		if (code > 0)
			remote_fail(d, "refused XMOVE", d->lc.line);
		goto bad;
	}
	msg = xasprintf("petrel-xmove:%s:%s", d->lc.line + 4, maildir);
	crypto_hmac_sha256(secret, strlen(secret), msg, strlen(msg), mac);
	free(msg);
	for (size_t i = 0; i < sizeof(mac); i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	str_append(&cmd, hex);
	if (remote_cmd(d, &cmd, "refused XMOVE") < 0)
		goto bad;
	return NULL;
bad:
	snprintf(why, sizeof(why), "%s", d->m->err != NULL ? d->m->err :
	    "no answer");
	d->m->err = NULL;
	remote_drop(d);
	return why;
}

static void
remote_close(struct dest *d)
{
	if (d->lc.fd >= 0)
		(void)remote_send(d, "QUIT\r\n", 6);
	remote_drop(d);
}

/* A file made and removed in new/ of every folder of the frozen
 * maildir: IMAP sessions in IDLE there watch these directories (by
 * inode, so they still do) and so look at once, see the marker and say
 * BYE. The name starts with '.', which no Maildir reader takes for a
 * message. */
static void
wake_folders(const char *dir)
{
	size_t n;
	char **v = list_dir(dir, &n);
	char *p;
	int fd;

	if (is_folder(dir)) {
		p = xasprintf("%s/new/.petrel-moved", dir);
		fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			close(fd);
			unlink(p);
		}
		free(p);
	}
	for (size_t i = 0; v != NULL && i < n; i++) {
		if (v[i][0] != '.')
			continue;
		p = xasprintf("%s/%s", dir, v[i]);
		if (is_folder(p))
			wake_folders(p);
		free(p);
	}
	free_list(v);
}

/* ---- the marker ---- */

static int
write_marker(const char *path, const char *text, const char **err_r)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	int r = -1;

	*err_r = NULL;
	if (fd >= 0 && write_full(fd, text, strlen(text)) == 0 &&
	    fdatasync(fd) == 0 && close(fd) == 0) {
		fd = -1;
		if (rename(tmp, path) == 0)
			r = 0;
	}
	if (r < 0) {
		*err_r = strerror(errno);
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	free(tmp);
	return r;
}

static void
sync_parent(const char *path)
{
	char *p = parent_of(path);
	const char *err;

	(void)fsync_dir(p, &err);
	free(p);
}

static bool
host_ok(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)h[i]) || strchr(".-_:", h[i]) != NULL))
			return false;
	return true;
}

/* The staging copy removed: a failure before it was put in place. */
static void
drop_stage(struct dest *d, const char *stage)
{
	if (d->ops == &dest_remote) {
		if (d->lc.fd >= 0)
			(void)remote_word(d, "ABORT");
		remote_close(d);
	} else {
		remove_tree(stage);
	}
}

int
cmd_user_move(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "dest-root=", "source-root=",
	    NULL };
	struct cli_args a;
	struct dir_rows *rows;
	struct move m = { 0 };
	struct dest dest;
	char *local, *domain, *address, *maildir, *cur_host, stamp[32];
	char *src, *dst, *stage, *moved, *marker, *text, *aside = NULL;
	const char *host, *src_root, *dst_root, *why, *err;
	char *secret = NULL;
	bool remote;
	struct stat st;
	struct dir_param params[2];
	unsigned port;
	time_t now = time(NULL);
	struct tm tm;
	bool dst_marker = false;
	int r;

	cli_schema_writable(cli, "petrel user move");
	cli_parse(argc, argv, allowed, 2, 2,
	    "petrel user move ADDRESS HOST [--dest-root DIR] "
	    "[--source-root DIR]", &a);
	cli_check_text("the address", a.pos[0]);
	if (addr_split(a.pos[0], &local, &domain) < 0)
		cli_die("'%s' is not a valid mail address (local@domain)",
		    a.pos[0]);
	address = xasprintf("%s@%s", local, domain);
	host = a.pos[1];
	cli_check_text("the host", host);
	if (!host_ok(host))
		cli_die("'%s' is not a host name or an address", host);
	dst_root = cli_opt(&a, "dest-root");
	if (dst_root != NULL && dst_root[0] == '\0')
		cli_die("--dest-root DIR: the new backend's mail_root as this "
		    "machine reaches it");
	remote = dst_root == NULL;
	if (remote) {
		secret = secret_load("proxy_secret",
		    config_get(cli->cfg, "proxy_secret"), &err);
		if (secret == NULL)
			cli_die("proxy_secret: %s", err);
		if (secret[0] == '\0')
			cli_die("proxy_secret is not set: it is needed to copy "
			    "to HOST over the network (or give --dest-root)");
	}
	src_root = cli_opt(&a, "source-root");
	if (src_root == NULL)
		src_root = config_get(cli->cfg, "mail_root");

	rows = cli_query(cli, "user move",
	    "SELECT maildir, host FROM users WHERE address = :address",
	    (const char *[]){ "address", address, NULL });
	if (rows->nrows == 0)
		cli_die("no such user %s", address);
	maildir = xstrdup(dir_rows_get(rows, 0, 0) ?
	    dir_rows_get(rows, 0, 0) : "");
	cur_host = xstrdup(dir_rows_get(rows, 0, 1) ?
	    dir_rows_get(rows, 0, 1) : "");
	dir_rows_free(&rows);
	if (cur_host[0] == '\0') {
		free(cur_host);
		cur_host = xstrdup(config_get(cli->cfg, "backend_default"));
	}
	if (strcasecmp(cur_host, host) == 0)
		cli_die("user %s is already on %s", address, host);

	if (!remote && (stat(dst_root, &st) < 0 || !S_ISDIR(st.st_mode)))
		cli_die("--dest-root %s is not a directory", dst_root);
	src = route_maildir_path(src_root, maildir);
	/* remote: the new backend resolves the maildir under its own
	 * mail_root; the name here is for messages */
	dst = route_maildir_path(remote ? src_root : dst_root, maildir);
	if (src == NULL || dst == NULL)
		cli_die("user %s has an unusable maildir '%s'", address,
		    maildir);
	{
		char *s = strip_slash(src), *d = strip_slash(dst);

		free(src);
		free(dst);
		src = s;
		dst = d;
	}
	if (!remote) {
		char *rs = realpath(src_root, NULL), *rd = realpath(dst_root,
		    NULL);
		bool same = rs != NULL && rd != NULL && strcmp(rs, rd) == 0;

		free(rs);
		free(rd);
		if (same)
			cli_die("--dest-root is this backend's own mail_root");
	}
	if (lstat(src, &st) < 0 || !S_ISDIR(st.st_mode))
		cli_die("%s: the maildir %s is not here (%s)", address, src,
		    route_moved_marker(src) ? "moved away already" :
		    "no such directory");
	if (!remote && lstat(dst, &st) == 0) {
		if (S_ISREG(st.st_mode) && route_moved_marker(dst))
			dst_marker = true;	/* moved from there before */
		else if (!S_ISDIR(st.st_mode) || holds_mail(dst))
			cli_die("%s: the destination maildir %s is not empty",
			    address, dst);
	}
	port = config_get_port(cli->cfg, "backend_ports", 0);
	if ((why = probe_host(host, port)) != NULL)
		cli_die("host %s unreachable on the LMTP port %u: %s", host,
		    port, why);

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	stage = xasprintf("%s" STAGE_SUFFIX, dst);
	moved = xasprintf("%s.moved-%s", src, stamp);
	marker = xasprintf("%s" MARKER_SUFFIX, src);
	if (lstat(moved, &st) == 0)
		cli_die("%s exists already; try again in a second", moved);
	memset(&dest, 0, sizeof(dest));
	dest.m = &m;
	lmtpc_init(&dest.lc);
	dest.host = host;
	if (remote) {
		/* the new backend checks its maildir, makes the domain's
		 * directory and a fresh staging directory */
		dest.ops = &dest_remote;
		if ((why = remote_open(&dest, host, port, maildir,
		    secret, config_get(cli->cfg, "proxy_tls_ca"))) != NULL)
			cli_die("%s: %s (nothing changed)", address, why);
	} else {
		/* the domain's directory on the new backend, owned as the
		 * source's is */
		char *p = parent_of(dst), *sp = parent_of(src);
		struct stat ps;

		if (mkdir(p, 0755) < 0) {
			if (errno != EEXIST)
				cli_die("cannot create %s: %s", p,
				    strerror(errno));
		} else if (geteuid() == 0 && stat(sp, &ps) == 0 &&
		    chown(p, ps.st_uid, ps.st_gid) < 0) {
			cli_die("cannot chown %s: %s", p, strerror(errno));
		}
		free(p);
		free(sp);
	}
	/* a staging copy left by an interrupted move is ours */
	if (!remote && remove_tree(stage) < 0)
		cli_die("cannot remove the old staging copy %s: %s", stage,
		    strerror(errno));
	if (!remote) {
		dest.ops = &dest_local;
		dest.root = stage;
	}

	/* 1. two passes while the mailbox is in use */
	if (sync_tree(&m, &dest, src, "") < 0 ||
	    sync_tree(&m, &dest, src, "") < 0) {
		drop_stage(&dest, stage);
		cli_die("%s: copy failed: %s (nothing changed)", address, m.err);
	}

	/* 2. the source frozen: its maildir exchanged with the marker */
	text = xasprintf("moving %s\n", host);
	if (write_marker(marker, text, &err) < 0) {
		drop_stage(&dest, stage);
		cli_die("cannot write %s: %s (nothing changed)", marker, err);
	}
	free(text);
	if (renameat2(AT_FDCWD, marker, AT_FDCWD, src, RENAME_EXCHANGE) < 0) {
		r = errno;
		unlink(marker);
		drop_stage(&dest, stage);
		cli_die("cannot exchange %s with its marker: %s (nothing "
		    "changed)", src, strerror(r));
	}
	/* marker now names the maildir */
	if (rename(marker, moved) < 0) {
		r = errno;
		renameat2(AT_FDCWD, marker, AT_FDCWD, src, RENAME_EXCHANGE);
		unlink(marker);
		drop_stage(&dest, stage);
		cli_die("cannot rename %s: %s (nothing changed)", src,
		    strerror(r));
	}
	sync_parent(src);
	wake_folders(moved);

	/* 3. the last pass, each folder locked */
	m.lock = true;
	if (sync_tree(&m, &dest, moved, "") < 0)
		goto undo;

	/* 4. the copy in place, then the row */
	if (remote) {
		if (remote_word(&dest, "FINISH") < 0)
			goto undo;
		/* "250 2.0.0 done; the empty maildir kept as NAME" */
		if ((why = strstr(dest.lc.line, "kept as ")) != NULL)
			aside = xstrdup(why + 8);
	} else if (dst_marker) {
		if (renameat2(AT_FDCWD, stage, AT_FDCWD, dst,
		    RENAME_EXCHANGE) < 0) {
			fail(&m, "cannot exchange into place", dst);
			goto undo;
		}
		/* stage is the old marker now; removed once the row names
		 * HOST */
	} else {
		if (lstat(dst, &st) == 0) {
			/* a maildir without mail (made by `user add` on
			 * that machine, say): kept aside */
			aside = xasprintf("%s.unused-%s", dst, stamp);
			if (rename(dst, aside) < 0) {
				fail(&m, "cannot rename", dst);
				goto undo;
			}
		}
		if (renameat2(AT_FDCWD, stage, AT_FDCWD, dst,
		    RENAME_NOREPLACE) < 0) {
			fail(&m, "cannot rename into place", dst);
			if (aside != NULL)
				rename(aside, dst);
			goto undo;
		}
	}
	if (!remote)
		sync_parent(dst);
	params[0] = (struct dir_param){ "host", host };
	params[1] = (struct dir_param){ "address", address };
	rows = NULL;
	r = dir_query(cli_dir(cli), "UPDATE users SET host = :host "
	    "WHERE address = :address", params, 2, &rows, &err);
	if (r < 0 || rows == NULL || rows->affected == 0) {
		snprintf(m.errbuf, sizeof(m.errbuf), "the directory: %s",
		    r < 0 ? err : "the user's row is gone");
		m.err = m.errbuf;
		dir_rows_free(&rows);
		/* the copy back to staging, so that the undo finds it */
		if (remote)
			(void)remote_word(&dest, "UNFINISH");
		else if (dst_marker)
			(void)renameat2(AT_FDCWD, stage, AT_FDCWD, dst,
			    RENAME_EXCHANGE);
		else if (rename(dst, stage) == 0 && aside != NULL)
			(void)rename(aside, dst);
		goto undo;
	}
	dir_rows_free(&rows);
	if (dst_marker)
		unlink(stage);
	if (remote) {
		/* a marker of an earlier move away from there, exchanged
		 * by FINISH, goes */
		(void)remote_word(&dest, "ABORT");
		remote_close(&dest);
	}

	/* 5. mail still sent here goes on to the new backend */
	text = xasprintf("moved %s\n", host);
	if (write_marker(src, text, &err) < 0)
		cli_warn("cannot mark %s as moved to %s (%s): mail still "
		    "delivered here waits (451)", src, host, err);
	free(text);
	for (size_t i = 0; i < m.nlocks; i++)
		close(m.locks[i]);
	printf("moved user %s to %s (%lu files, %lu bytes copied; the old "
	    "maildir kept as %s)\n", address, host, m.files, m.bytes, moved);
	if (aside != NULL)
		printf("the empty maildir found there was kept as %s\n", aside);
	free(m.locks);
	free(src);
	free(dst);
	free(stage);
	free(moved);
	free(marker);
	free(aside);
	free(maildir);
	free(cur_host);
	free(address);
	free(local);
	free(domain);
	if (secret != NULL)
		explicit_bzero(secret, strlen(secret));
	free(secret);
	return 0;

undo:
	/* the maildir back in its place: sessions and mail resume there */
	for (size_t i = 0; i < m.nlocks; i++)
		close(m.locks[i]);
	if (rename(moved, marker) == 0 &&
	    renameat2(AT_FDCWD, marker, AT_FDCWD, src, RENAME_EXCHANGE) == 0)
		unlink(marker);
	else
		cli_warn("could not put %s back in place: it is %s now",
		    src, moved);
	sync_parent(src);
	drop_stage(&dest, stage);
	cli_die("%s: move failed: %s (nothing changed)", address, m.err);
}
