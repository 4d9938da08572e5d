/*
 * xmove.c: XMOVE, the LMTP listener's part of `petrel user move` across
 * machines (docs/scale-out.md, "Moving a user"): the old backend writes
 * the user's staging copy, <mail_root>/<maildir>.petrel-move, on this
 * backend and at the end puts it in place of the maildir.
 *
 * Only a peer in proxy_trusted_networks may start it, and only after it
 * has shown that it knows proxy_secret: XMOVE MAILDIR is answered with
 * "334 NONCE" (32 random hex digits) and the next line must be the hex
 * HMAC-SHA256 under proxy_secret of "petrel-xmove:NONCE:MAILDIR"; the
 * secret itself never crosses the network. MAILDIR is the users row's
 * maildir column, resolved under this backend's own mail_root as
 * deliveries resolve it (route_maildir_path): nothing outside it.
 *
 * Then, one command a line, every PATH relative to the staging directory
 * ("." is the staging directory), percent-encoded (%XX for a space, '%'
 * and control characters):
 *   LIST PATH             250-TYPE SIZE SEC NSEC NAME ... 250 2.0.0 end
 *   PUT MODE SEC NSEC SIZE PATH, then exactly SIZE bytes: a temporary
 *                         file, fsync'd, renamed over PATH, the
 *                         directory fsync'd
 *   LINK PATH TARGET      a symbolic link (TARGET relative, inside)
 *   MKDIR MODE PATH       a directory (one there already is fine)
 *   DEL PATH              PATH and everything below it removed
 *   RENAME FROM TO        within the staging directory
 *   SYNC PATH             a directory fsync'd
 *   FINISH                the staging directory becomes the maildir
 *                         (a "moved" marker left there by an earlier
 *                         move is replaced, an empty maildir kept aside)
 *   UNFINISH              FINISH undone (the directory could not be
 *                         updated afterwards)
 *   ABORT                 the staging directory removed
 *   QUIT
 * A path with "." or ".." components, an absolute one, an empty
 * component or a NUL is refused (501 5.5.4); each directory on the way
 * is opened without following symbolic links, so a link in the copy
 * never leads out of it. A file larger than XMOVE_FILE_MAX is refused
 * (552 5.3.4) and the session ends; so does one whose bytes stop coming:
 * its temporary file is removed, no partial file is ever renamed into
 * place. The file work runs on the disk job threads.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/route/route.h"
#include "lib/session/session.h"
#include "lib/tls/tls.h"
#include "smtp/smtp-private.h"

#define XMOVE_STAGE	".petrel-move"
#define XMOVE_TMP	".petrel-move.tmp"
#define XMOVE_LINE_MAX	(3 * 4096 * 2 + 64)	/* two encoded paths */
#define XMOVE_PATH_MAX	4096
/* The largest file taken: a message at the size limit with room to
 * spare, or an index or cache of a large folder. */
#define XMOVE_FILE_MIN_LIMIT ((uint64_t)256 << 20)
/* The whole move, however busy, ends by then. */
#define XMOVE_MAX_SECONDS (6 * 3600)

enum xmove_op {
	XOP_BEGIN, XOP_LIST, XOP_PUT, XOP_LINK, XOP_MKDIR, XOP_DEL,
	XOP_RENAME, XOP_SYNC, XOP_FINISH, XOP_UNFINISH, XOP_ABORT,
};

struct xmove {
	bool ready;		/* proven: the commands are taken */
	char nonce[33];
	char *maildir;		/* as named by XMOVE */
	char *dst;		/* <mail_root>/<maildir>, no trailing '/' */
	char *stage;		/* dst + XMOVE_STAGE */
	char *aside;		/* FINISH kept an empty maildir here */
	bool marker_swapped;	/* FINISH exchanged a moved marker */
	time_t deadline;

	/* the job: its operation and arguments, its reply */
	enum xmove_op op;
	char *a, *b;
	unsigned mode;
	struct timespec mtime;
	str_t out;

	/* PUT: the bytes still to come, into fd (the temporary file in
	 * dirfd) */
	uint64_t left;
	int fd, dirfd;
	bool put_failed;	/* write error: the bytes are dropped */
	int put_errno;
};

static uint64_t
file_max(const struct smtp_session *s)
{
	uint64_t m = s->srv->size_limit + ((uint64_t)1 << 20);

	return m > XMOVE_FILE_MIN_LIMIT ? m : XMOVE_FILE_MIN_LIMIT;
}

void
smtp_xmove_free(struct smtp_session *s)
{
	struct xmove *x = s->xmove;

	if (x == NULL)
		return;
	if (x->fd >= 0) {
		close(x->fd);
		(void)unlinkat(x->dirfd, XMOVE_TMP, 0);
	}
	if (x->dirfd >= 0)
		close(x->dirfd);
	free(x->maildir);
	free(x->dst);
	free(x->stage);
	free(x->aside);
	free(x->a);
	free(x->b);
	str_free(&x->out);
	free(x);
	s->xmove = NULL;
}

/* %XX decoded in place; -1 for a bad escape or a NUL. */
static int
pct_decode(char *p)
{
	char *w = p;

	for (; *p != '\0'; p++) {
		if (*p == '%') {
			int h = str_hexval(p[1]), l = h < 0 ? -1 :
			    str_hexval(p[2]);

			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			*w++ = (char)(h * 16 + l);
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return 0;
}

static void
pct_encode(str_t *o, const char *p)
{
	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= ' ' || c == '%' || c == 0x7f)
			str_printf(o, "%%%02X", c);
		else
			str_append_c(o, (char)c);
	}
}

/* A relative path inside the staging directory: "." alone, or
 * components that are neither empty, "." nor "..". */
static bool
path_ok(const char *p, bool root_ok)
{
	const char *c = p;

	if (strcmp(p, ".") == 0)
		return root_ok;
	if (*p == '\0' || *p == '/' || strlen(p) > XMOVE_PATH_MAX)
		return false;
	for (;;) {
		const char *e = strchr(c, '/');
		size_t n = e != NULL ? (size_t)(e - c) : strlen(c);

		if (n == 0 || n > 255 || (n == 1 && c[0] == '.') ||
		    (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (e == NULL)
			return true;
		c = e + 1;
	}
}

/* The directory holding path's last component, opened by walking down
 * from the staging directory without following links; *leaf_r its last
 * component (in path). For ".": the staging directory's parent and its
 * name. -1 with errno. */
static int
open_parent(struct xmove *x, char *path, const char **leaf_r)
{
	char *c = path, *slash;
	int fd, nfd;

	if (strcmp(path, ".") == 0) {
		char *p = xstrdup(x->stage), *sl = strrchr(p, '/');

		*sl = '\0';
		fd = open(p[0] != '\0' ? p : "/", O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC);
		free(p);
		*leaf_r = strrchr(x->stage, '/') + 1;
		return fd;
	}
	fd = open(x->stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while ((slash = strchr(c, '/')) != NULL) {
		*slash = '\0';
		nfd = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
		*slash = '/';
		close(fd);
		if (nfd < 0)
			return -1;
		fd = nfd;
		c = slash + 1;
	}
	*leaf_r = c;
	return fd;
}

static int
remove_at(int dfd, const char *name)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int fd, r = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (remove_at(dirfd(d), de->d_name) < 0)
			r = -1;
	}
	closedir(d);
	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 &&
	    errno != ENOENT)
		r = -1;
	return r;
}

/* A full path removed, with everything below it. */
static int
remove_tree_path(const char *path)
{
	char *p = xstrdup(path), *leaf = strrchr(p, '/');
	int fd, r;

	*leaf++ = '\0';
	fd = open(p[0] != '\0' ? p : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = fd < 0 ? -1 : remove_at(fd, leaf);
	if (fd >= 0)
		close(fd);
	free(p);
	return r;
}

static void
fail_reply(struct xmove *x, const char *what)
{
	int e = errno;

	str_truncate(&x->out, 0);
	str_printf(&x->out, "451 4.3.0 %s: %s\r\n", what, strerror(e));
}

static bool
holds_mail_at(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool r = false;

	if (d == NULL)
		return false;
	while (!r && (de = readdir(d)) != NULL) {
		char *p;
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		p = xasprintf("%s/%s", dir, de->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (strcmp(de->d_name, "cur") == 0 ||
			    strcmp(de->d_name, "new") == 0) {
				DIR *m = opendir(p);
				struct dirent *e;

				while (m != NULL && (e = readdir(m)) != NULL)
					if (strcmp(e->d_name, ".") != 0 &&
					    strcmp(e->d_name, "..") != 0)
						r = true;
				if (m != NULL)
					closedir(m);
			} else if (de->d_name[0] == '.') {
				r = holds_mail_at(p);
			}
		}
		free(p);
	}
	closedir(d);
	return r;
}

static void
sync_path(const char *dir)
{
	const char *err;

	(void)fsync_dir(dir, &err);
}

static void
sync_parent_of(const char *path)
{
	char *p = xstrdup(path), *sl = strrchr(p, '/');

	if (sl != NULL) {
		*sl = '\0';
		sync_path(p[0] != '\0' ? p : "/");
	}
	free(p);
}

/* The destination checked, the domain's directory made, an old staging
 * directory (an interrupted move's) removed, a new one made. */
static void
op_begin(struct xmove *x)
{
	struct stat st;
	char *parent = xstrdup(x->dst), *sl = strrchr(parent, '/');

	if (lstat(x->dst, &st) == 0 && !(S_ISREG(st.st_mode) &&
	    route_moved_marker(x->dst)) &&
	    (!S_ISDIR(st.st_mode) || holds_mail_at(x->dst))) {
		str_printf(&x->out, "550 5.7.0 the maildir is not empty here\r\n");
		goto done;
	}
	*sl = '\0';
	if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
		fail_reply(x, "cannot create the domain's directory");
		goto done;
	}
	{
		char *sp = xstrdup(x->stage), *leaf = strrchr(sp, '/');
		int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		*leaf++ = '\0';
		if (fd < 0 || remove_at(fd, leaf) < 0) {
			fail_reply(x, "cannot remove the old staging copy");
			if (fd >= 0)
				close(fd);
			free(sp);
			goto done;
		}
		close(fd);
		free(sp);
	}
	if (mkdir(x->stage, 0700) < 0) {
		fail_reply(x, "cannot create the staging directory");
		goto done;
	}
	str_printf(&x->out, "250 2.0.0 staging ready\r\n");
done:
	free(parent);
}

static void
op_list(struct xmove *x)
{
	const char *leaf;
	int pfd = open_parent(x, x->a, &leaf), fd;
	DIR *d;
	struct dirent *de;

	if (pfd < 0) {
		fail_reply(x, "cannot open");
		return;
	}
	fd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(pfd);
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		fail_reply(x, "cannot list");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, XMOVE_TMP) == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		str_printf(&x->out, "250-%c %lld %lld %ld ",
		    S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' :
		    S_ISLNK(st.st_mode) ? 'l' : '?', (long long)st.st_size,
		    (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
		pct_encode(&x->out, de->d_name);
		str_append(&x->out, "\r\n");
	}
	closedir(d);
	str_append(&x->out, "250 2.0.0 end\r\n");
}

/* The end of a PUT: the temporary file made durable and renamed. */
static void
op_put(struct xmove *x)
{
	struct timespec ts[2] = { x->mtime, x->mtime };
	const char *leaf = strrchr(x->a, '/');

	leaf = leaf != NULL ? leaf + 1 : x->a;
	if (x->put_failed) {
		errno = x->put_errno;
		fail_reply(x, "cannot write");
	} else if (fchmod(x->fd, x->mode & 07777) < 0 ||
	    futimens(x->fd, ts) < 0 || fdatasync(x->fd) < 0) {
		fail_reply(x, "cannot finish the file");
	} else if (close(x->fd) < 0) {
		x->fd = -1;
		fail_reply(x, "cannot write");
	} else {
		x->fd = -1;
		if (renameat(x->dirfd, XMOVE_TMP, x->dirfd, leaf) < 0)
			fail_reply(x, "cannot rename into place");
		else if (fsync(x->dirfd) < 0)
			fail_reply(x, "cannot sync the directory");
		else
			str_printf(&x->out, "250 2.0.0 stored\r\n");
	}
	if (x->fd >= 0) {
		close(x->fd);
		x->fd = -1;
	}
	(void)unlinkat(x->dirfd, XMOVE_TMP, 0);
	close(x->dirfd);
	x->dirfd = -1;
}

static void
op_simple(struct xmove *x)
{
	const char *leaf, *leaf2;
	int fd = -1, fd2 = -1;

	if (x->op == XOP_FINISH || x->op == XOP_UNFINISH ||
	    x->op == XOP_ABORT)
		goto whole;
	if ((fd = open_parent(x, x->a, &leaf)) < 0) {
		fail_reply(x, "cannot open the directory of");
		return;
	}
	switch (x->op) {
	case XOP_LINK:
		(void)unlinkat(fd, leaf, 0);
		if (symlinkat(x->b, fd, leaf) < 0)
			fail_reply(x, "cannot create the link");
		break;
	case XOP_MKDIR:
		if (mkdirat(fd, leaf, x->mode & 07777) < 0 && errno != EEXIST)
			fail_reply(x, "cannot create the directory");
		else {
			int dfd = openat(fd, leaf, O_RDONLY | O_DIRECTORY |
			    O_NOFOLLOW | O_CLOEXEC);

			if (dfd < 0 || fchmod(dfd, x->mode & 07777) < 0)
				fail_reply(x, "cannot create the directory");
			if (dfd >= 0)
				close(dfd);
		}
		break;
	case XOP_DEL:
		if (remove_at(fd, leaf) < 0)
			fail_reply(x, "cannot remove");
		break;
	case XOP_RENAME:
		if ((fd2 = open_parent(x, x->b, &leaf2)) < 0)
			fail_reply(x, "cannot open the directory of");
		else if (renameat(fd, leaf, fd2, leaf2) < 0)
			fail_reply(x, "cannot rename");
		break;
	case XOP_SYNC: {
		int dfd = openat(fd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);

		if (dfd < 0 || fsync(dfd) < 0)
			fail_reply(x, "cannot sync");
		if (dfd >= 0)
			close(dfd);
		break;
	}
	default:
		break;
	}
	close(fd);
	if (fd2 >= 0)
		close(fd2);
	if (x->out.len == 0)
		str_printf(&x->out, "250 2.0.0 done\r\n");
	return;
whole:
	if (x->op == XOP_ABORT) {
		if (remove_tree_path(x->stage) < 0)
			fail_reply(x, "cannot remove the staging directory");
	} else if (x->op == XOP_FINISH) {
		struct stat st;

		if (lstat(x->dst, &st) == 0 && S_ISREG(st.st_mode)) {
			/* the marker of a move away from here earlier */
			if (renameat2(AT_FDCWD, x->stage, AT_FDCWD, x->dst,
			    RENAME_EXCHANGE) < 0) {
				fail_reply(x, "cannot exchange into place");
				return;
			}
			x->marker_swapped = true;
		} else {
			if (lstat(x->dst, &st) == 0) {
				char stamp[32];
				time_t now = time(NULL);
				struct tm tm;

				gmtime_r(&now, &tm);
				strftime(stamp, sizeof(stamp),
				    "%Y%m%dT%H%M%SZ", &tm);
				free(x->aside);
				x->aside = xasprintf("%s.unused-%s", x->dst,
				    stamp);
				if (rename(x->dst, x->aside) < 0) {
					fail_reply(x, "cannot keep aside the "
					    "empty maildir");
					xfree(&x->aside);
					return;
				}
			}
			if (renameat2(AT_FDCWD, x->stage, AT_FDCWD, x->dst,
			    RENAME_NOREPLACE) < 0) {
				fail_reply(x, "cannot rename into place");
				if (x->aside != NULL)
					(void)rename(x->aside, x->dst);
				xfree(&x->aside);
				return;
			}
		}
		sync_parent_of(x->dst);
	} else {
		/* UNFINISH */
		if (x->marker_swapped)
			(void)renameat2(AT_FDCWD, x->stage, AT_FDCWD, x->dst,
			    RENAME_EXCHANGE);
		else if (rename(x->dst, x->stage) == 0 && x->aside != NULL)
			(void)rename(x->aside, x->dst);
		x->marker_swapped = false;
		xfree(&x->aside);
		sync_parent_of(x->dst);
	}
	if (x->out.len == 0)
		str_printf(&x->out, "250 2.0.0 done%s%s\r\n",
		    x->aside != NULL ? "; the empty maildir kept as " : "",
		    x->aside != NULL ? strrchr(x->aside, '/') + 1 : "");
}

static void
xmove_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct xmove *x = s->xmove;

	(void)state;
	str_truncate(&x->out, 0);
	switch (x->op) {
	case XOP_BEGIN:
		op_begin(x);
		break;
	case XOP_LIST:
		op_list(x);
		break;
	case XOP_PUT:
		op_put(x);
		break;
	default:
		op_simple(x);
		break;
	}
}

static void
xmove_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct xmove *x = s->xmove;

	xfree(&x->a);
	xfree(&x->b);
	if (!s->base.dead) {
		evbuffer_add(session_output(&s->base), str_c(&x->out),
		    x->out.len);
		if (x->op == XOP_BEGIN && x->out.data[0] == '2')
			x->ready = true;
		else if (x->op == XOP_BEGIN) {
			smtp_xmove_free(s);
			session_quit(&s->base);
		} else if (x->op == XOP_FINISH && x->out.data[0] == '2')
			log_info("%016llx: XMOVE: %s now holds the maildir %s",
			    SID(&s->base), s->base.peer, x->maildir);
	}
	/* x may be gone (a refused BEGIN) */
	session_job_finished(&s->base);
}

static void
submit(struct smtp_session *s, enum xmove_op op)
{
	s->xmove->op = op;
	s->job.run = xmove_run;
	s->job.done = xmove_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* XMOVE MAILDIR, on the LMTP listener. */
void
smtp_cmd_xmove(struct smtp_session *s, const char *arg)
{
	struct xmove *x;
	unsigned char rnd[16];
	char *dst;
	size_t n;

	if (!s->base.proxy_trusted || s->srv->xmove_secret == NULL ||
	    s->srv->xmove_secret[0] == '\0') {
		log_warn("%016llx: XMOVE refused: %s is not in "
		    "proxy_trusted_networks or proxy_secret is not set",
		    SID(&s->base), s->base.peer);
		reply_error(s, "550 5.7.1 XMOVE not allowed from this address");
		return;
	}
	if (s->have_mail || s->xmove != NULL) {
		reply_error(s, "503 5.5.1 Error: XMOVE not now");
		return;
	}
	if (*arg == '\0' || strchr(arg, ' ') != NULL ||
	    (dst = route_maildir_path(s->srv->rc.mail_root, arg)) == NULL) {
		reply_error(s, "501 5.5.4 Syntax: XMOVE maildir (under "
		    "mail_root)");
		return;
	}
	n = strlen(dst);
	while (n > 1 && dst[n - 1] == '/')
		dst[--n] = '\0';
	if (strrchr(dst, '/') == NULL || strrchr(dst, '/') == dst) {
		free(dst);
		reply_error(s, "501 5.5.4 Syntax: XMOVE maildir (under "
		    "mail_root)");
		return;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		free(dst);
		reply(s, "454 4.7.0 no randomness");
		return;
	}
	x = xcalloc(1, sizeof(*x));
	x->fd = x->dirfd = -1;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(x->nonce + 2 * i, 3, "%02x", rnd[i]);
	x->maildir = xstrdup(arg);
	x->dst = dst;
	x->stage = xasprintf("%s" XMOVE_STAGE, dst);
	x->deadline = time(NULL) + XMOVE_MAX_SECONDS;
	s->xmove = x;
	reply(s, "334 %s", x->nonce);
}

/* The answer to the challenge. */
static void
xmove_proof(struct smtp_session *s, const char *line)
{
	struct xmove *x = s->xmove;
	const char *secret = s->srv->xmove_secret;
	unsigned char mac[32], got[32];
	char *msg = xasprintf("petrel-xmove:%s:%s", x->nonce, x->maildir);
	unsigned diff = strlen(line) != 64;

	crypto_hmac_sha256(secret, strlen(secret), msg, strlen(msg), mac);
	free(msg);
	for (size_t i = 0; i < 32; i++) {
		int h = diff ? 0 : str_hexval(line[2 * i]);
		int l = diff ? 0 : str_hexval(line[2 * i + 1]);

		if (h < 0 || l < 0)
			diff = 1;
		got[i] = (unsigned char)(diff ? 0 : h * 16 + l);
	}
	for (size_t i = 0; i < 32; i++)
		diff |= (unsigned)(got[i] ^ mac[i]);
	if (diff != 0) {
		log_warn("%016llx: XMOVE from %s: wrong proof of proxy_secret",
		    SID(&s->base), s->base.peer);
		smtp_xmove_free(s);
		reply(s, "535 5.7.8 XMOVE refused");
		session_quit(&s->base);
		return;
	}
	log_info("%016llx: XMOVE from %s: maildir %s%s", SID(&s->base),
	    s->base.peer, x->maildir, s->base.tls ? " (TLS)" : "");
	submit(s, XOP_BEGIN);
}

/* The next word of *p (spaces end it); NULL when there is none. */
static char *
word(char **p)
{
	char *w = *p, *e;

	if (w == NULL || *w == '\0')
		return NULL;
	e = strchr(w, ' ');
	if (e != NULL) {
		*e = '\0';
		*p = e + 1;
	} else {
		*p = w + strlen(w);
	}
	return w;
}

static bool
number(const char *w, int base, unsigned long long max,
    unsigned long long *v)
{
	char *end;

	if (w == NULL || *w == '\0' || *w == '-' || *w == '+')
		return false;
	errno = 0;
	*v = strtoull(w, &end, base);
	return errno == 0 && *end == '\0' && *v <= max;
}

/* A decoded, checked path argument; NULL (answered) when bad. */
static char *
path_arg(struct smtp_session *s, char **p, bool root_ok)
{
	char *w = word(p);

	if (w == NULL || pct_decode(w) < 0 || !path_ok(w, root_ok)) {
		reply_error(s, "501 5.5.4 bad path (relative to the staging "
		    "directory, no \".\" or \"..\" components)");
		return NULL;
	}
	return xstrdup(w);
}

/* A line in XMOVE mode: the proof, then the commands. */
void
smtp_xmove_line(struct smtp_session *s, char *line)
{
	struct xmove *x = s->xmove;
	char *p, *verb;
	unsigned long long mode, sec, nsec, size;

	if (!x->ready) {
		xmove_proof(s, line);
		return;
	}
	if (time(NULL) > x->deadline) {
		reply(s, "421 4.4.2 XMOVE took too long");
		smtp_xmove_free(s);
		session_quit(&s->base);
		return;
	}
	p = line;
	verb = word(&p);
	if (verb == NULL) {
		reply_error(s, "500 5.5.2 Error: empty command");
		return;
	}
	if (strcasecmp(verb, "QUIT") == 0) {
		reply(s, "221 2.0.0 Bye");
		smtp_xmove_free(s);
		session_quit(&s->base);
	} else if (strcasecmp(verb, "LIST") == 0) {
		if ((x->a = path_arg(s, &p, true)) != NULL)
			submit(s, XOP_LIST);
	} else if (strcasecmp(verb, "PUT") == 0) {
		const char *leaf;

		if (!number(word(&p), 8, 07777, &mode) ||
		    !number(word(&p), 10, (unsigned long long)1 << 40, &sec) ||
		    !number(word(&p), 10, 999999999, &nsec) ||
		    !number(word(&p), 10, UINT64_MAX, &size)) {
			/* the bytes that follow cannot be told from
			 * commands: the session ends */
			reply(s, "501 5.5.4 Syntax: PUT mode sec nsec size "
			    "path");
			smtp_xmove_free(s);
			session_quit(&s->base);
			return;
		}
		if (size > file_max(s)) {
			/* its bytes cannot be skipped sensibly */
			reply(s, "552 5.3.4 file larger than %llu bytes",
			    (unsigned long long)file_max(s));
			smtp_xmove_free(s);
			session_quit(&s->base);
			return;
		}
		x->left = size;
		x->put_failed = false;
		if ((x->a = path_arg(s, &p, false)) == NULL) {
			/* the bytes follow all the same: dropped */
			x->put_failed = true;
			x->put_errno = EINVAL;
			x->dirfd = -1;
			s->state = ST_XMOVE_PUT;
			x->a = NULL;
			return;
		}
		x->mode = (unsigned)mode;
		x->mtime.tv_sec = (time_t)sec;
		x->mtime.tv_nsec = (long)nsec;
		x->dirfd = open_parent(x, x->a, &leaf);
		if (x->dirfd >= 0)
			x->fd = openat(x->dirfd, XMOVE_TMP, O_WRONLY |
			    O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (x->dirfd < 0 || x->fd < 0) {
			x->put_failed = true;
			x->put_errno = errno;
		}
		s->state = ST_XMOVE_PUT;
	} else if (strcasecmp(verb, "LINK") == 0) {
		if ((x->a = path_arg(s, &p, false)) == NULL)
			return;
		/* the target: relative and inside, as a path is */
		if ((x->b = path_arg(s, &p, false)) == NULL) {
			xfree(&x->a);
			return;
		}
		submit(s, XOP_LINK);
	} else if (strcasecmp(verb, "MKDIR") == 0) {
		if (!number(word(&p), 8, 07777, &mode)) {
			reply_error(s, "501 5.5.4 Syntax: MKDIR mode path");
			return;
		}
		x->mode = (unsigned)mode;
		if ((x->a = path_arg(s, &p, true)) != NULL)
			submit(s, XOP_MKDIR);
	} else if (strcasecmp(verb, "DEL") == 0) {
		if ((x->a = path_arg(s, &p, false)) != NULL)
			submit(s, XOP_DEL);
	} else if (strcasecmp(verb, "RENAME") == 0) {
		if ((x->a = path_arg(s, &p, false)) == NULL)
			return;
		if ((x->b = path_arg(s, &p, false)) == NULL) {
			xfree(&x->a);
			return;
		}
		submit(s, XOP_RENAME);
	} else if (strcasecmp(verb, "SYNC") == 0) {
		if ((x->a = path_arg(s, &p, true)) != NULL)
			submit(s, XOP_SYNC);
	} else if (strcasecmp(verb, "FINISH") == 0) {
		submit(s, XOP_FINISH);
	} else if (strcasecmp(verb, "UNFINISH") == 0) {
		submit(s, XOP_UNFINISH);
	} else if (strcasecmp(verb, "ABORT") == 0) {
		submit(s, XOP_ABORT);
	} else {
		reply_error(s, "500 5.5.2 Error: unknown XMOVE command");
	}
}

/* PUT's bytes, into the temporary file. true when all are in (the
 * job then finishes the file). */
bool
smtp_xmove_read(struct smtp_session *s, struct evbuffer *in)
{
	struct xmove *x = s->xmove;

	while (x->left > 0) {
		size_t avail = evbuffer_get_length(in), n;
		char *buf;

		if (avail == 0)
			return false;
		n = avail < x->left ? avail : (size_t)x->left;
		if (n > 65536)
			n = 65536;
		buf = xmalloc(n);
		evbuffer_remove(in, buf, n);
		x->left -= n;
		if (!x->put_failed && write_full(x->fd, buf, n) < 0) {
			x->put_failed = true;
			x->put_errno = errno;
		}
		free(buf);
	}
	return true;
}

/* All of a PUT's bytes are in. */
void
smtp_xmove_put_done(struct smtp_session *s)
{
	struct xmove *x = s->xmove;

	if (x->a == NULL) {
		/* a bad path: answered already */
		return;
	}
	if (x->put_failed && x->dirfd < 0) {
		errno = x->put_errno;
		reply(s, "451 4.3.0 cannot open the directory of %s: %s",
		    x->a, strerror(errno));
		if (x->fd >= 0)
			close(x->fd);
		x->fd = -1;
		xfree(&x->a);
		return;
	}
	submit(s, XOP_PUT);
}
