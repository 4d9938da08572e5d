/*
 * quota.c: Maildir++ quota (the "maildirsize" file).
 *
 * Implements the Maildir++ quota scheme as Courier's maildirquota and
 * Dovecot's "maildir" quota backend keep it
 * (https://www.courier-mta.org/imap/README.maildirquota.html): the first
 * line is the definition ("<n>S,<n>C"), every further line a signed
 * "<bytes> <count>" delta appended with a single O_APPEND write, usage is
 * the sum. The file is rebuilt from the messages when it is missing, when
 * it grows past MAILDIRSIZE_MAX bytes, or when a message would not fit
 * and the file is older than MAILDIRSIZE_MAX_AGE -- so a stale file can
 * make us recount, never bounce mail wrongly for long. Other programs
 * (Courier, Dovecot, maildrop) may share these maildirs, so we read their
 * formatting leniently (padding, either definition part, any order) and
 * write what they write.
 *
 * Trust: maildirsize and the message file names are untrusted content
 * (any program with access to the maildir may have written them); a
 * malformed file is recalculated, never trusted. The maildir path itself
 * comes from the SQL directory and is trusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"

/* How many times a recalculation is redone because maildirsize changed
 * under it (concurrent deliveries) before we write what we have. */
#define RECALC_RETRIES 3

static char *
path_trim(const char *path)
{
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	return xstrndup(path, len);
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Unsigned decimal in [*pp, end), at least one digit, no overflow. */
static int
parse_u64(const char **pp, const char *end, uint64_t *value_r)
{
	const char *p = *pp;
	uint64_t v = 0;
	unsigned int d;

	if (p == end || *p < '0' || *p > '9')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		d = (unsigned int)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*pp = p;
	*value_r = v;
	return 0;
}

/* Optionally signed decimal that fits int64_t. */
static int
parse_i64(const char **pp, const char *end, int64_t *value_r)
{
	const char *p = *pp;
	bool neg = false;
	uint64_t v;

	if (p < end && (*p == '-' || *p == '+')) {
		neg = *p == '-';
		p++;
	}
	if (parse_u64(&p, end, &v) < 0)
		return -1;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return -1;
		*value_r = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN :
		    -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return -1;
		*value_r = (int64_t)v;
	}
	*pp = p;
	return 0;
}

/* "1000000S,1000C", "1000C", "0S", "" ... */
static int
parse_definition(const char *p, const char *end, struct maildir_quota *q)
{
	bool have_s = false, have_c = false;
	uint64_t v;

	while (p < end && is_blank(*p))
		p++;
	while (end > p && is_blank(end[-1]))
		end--;
	while (p < end) {
		if (parse_u64(&p, end, &v) < 0 || p == end)
			return -1;
		if (*p == 'S' && !have_s) {
			q->limit_bytes = v;
			have_s = true;
		} else if (*p == 'C' && !have_c) {
			q->limit_count = v;
			have_c = true;
		} else {
			return -1;
		}
		p++;
		if (p < end) {
			if (*p != ',' || p + 1 == end)
				return -1;
			p++;
		}
	}
	return 0;
}

/* One "<bytes> <count>" line (blanks around and between). Blank lines
 * are skipped. */
static int
parse_line(const char *p, const char *end, int64_t *bytes, int64_t *count)
{
	int64_t b, c;

	while (p < end && is_blank(*p))
		p++;
	if (p == end)
		return 0;
	if (parse_i64(&p, end, &b) < 0)
		return -1;
	if (p == end || !is_blank(*p))
		return -1;
	while (p < end && is_blank(*p))
		p++;
	if (parse_i64(&p, end, &c) < 0)
		return -1;
	while (p < end && is_blank(*p))
		p++;
	if (p != end)
		return -1;
	if (__builtin_add_overflow(*bytes, b, bytes) ||
	    __builtin_add_overflow(*count, c, count))
		return -1;
	return 0;
}

/* Parse a whole maildirsize. -1 malformed. */
static int
quota_parse(const char *data, size_t len, struct maildir_quota *q,
	    const char **what_r)
{
	const char *p = data, *end = data + len, *nl;
	bool first = true;

	memset(q, 0, sizeof(*q));
	if (memchr(data, '\0', len) != NULL) {
		*what_r = "NUL byte";
		return -1;
	}
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			if (!first) {
				/* torn append (crash) or one in progress */
				*what_r = "incomplete last line";
				return -1;
			}
			nl = end;
		}
		if (first) {
			if (parse_definition(p, nl, q) < 0) {
				*what_r = "bad quota definition";
				return -1;
			}
			first = false;
		} else if (parse_line(p, nl, &q->bytes, &q->count) < 0) {
			/* the limits stay: the caller may keep them */
			q->bytes = 0;
			q->count = 0;
			*what_r = "bad line";
			return -1;
		}
		p = nl + 1;
	}
	return 0;
}

/*
 * Read maildirsize. 1 ok, 0 missing, -1 error; *malformed_r tells a bad
 * file from an I/O error. *st_r is the file's stat when it exists, with
 * st_size = the bytes actually read.
 * On a malformed file whose definition parsed, q keeps the limits.
 */
static int
quota_read_file(const char *root, struct maildir_quota *q, struct stat *st_r,
		bool *malformed_r, const char **error_r)
{
	char *path, *data = NULL;
	const char *what;
	size_t done = 0, cap;
	ssize_t n;
	int fd, ret = -1;

	*malformed_r = false;
	memset(q, 0, sizeof(*q));
	path = xasprintf("%s/maildirsize", root);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		if (errno == ENOENT)
			ret = 0;
		else
			err_fail(error_r, errno, "open(%s) failed: %s", path,
			    strerror(errno));
		free(path);
		return ret;
	}
	if (fstat(fd, st_r) == -1) {
		err_fail(error_r, errno, "fstat(%s) failed: %s", path,
		    strerror(errno));
		goto out;
	}
	if (!S_ISREG(st_r->st_mode) || st_r->st_size > MAILDIRSIZE_READ_MAX) {
		*malformed_r = true;
		err_fail(error_r, ERR_OTHER,
		    "%s: not a regular file or too large",
		    path);
		goto out;
	}
	/* Read to EOF rather than st_size bytes: a delta appended since
	 * fstat() is simply included (and st_size updated to match). */
	cap = (size_t)st_r->st_size + 256;
	data = xmalloc(cap);
	for (;;) {
		if (done == cap) {
			if (cap > MAILDIRSIZE_READ_MAX) {
				*malformed_r = true;
				err_fail(error_r, ERR_OTHER,
				    "%s is too large", path);
				goto out;
			}
			cap *= 2;
			data = xrealloc(data, cap);
		}
		n = read(fd, data + done, cap - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err_fail(error_r, errno, "read(%s) failed: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	st_r->st_size = (off_t)done;
	if (quota_parse(data, done, q, &what) < 0) {
		*malformed_r = true;
		err_fail(error_r, ERR_OTHER, "%s is malformed: %s", path, what);
		goto out;
	}
	ret = 1;
out:
	free(data);
	close(fd);
	free(path);
	return ret;
}

int
maildir_quota_read(const char *maildir, struct maildir_quota *q,
		   const char **error_r)
{
	struct stat st;
	bool malformed;
	char *root;
	int ret;

	root = path_trim(maildir);
	ret = quota_read_file(root, q, &st, &malformed, error_r);
	free(root);
	return ret;
}

/* Count the messages of one new/ or cur/ directory. Missing is empty. */
static int
scan_dir(const char *dir, int64_t *bytes, int64_t *count,
	 const char **error_r)
{
	struct maildir_name name;
	struct dirent *de;
	struct stat st;
	uint64_t size;
	DIR *d;
	int fd;

	/* new/ or cur/ as a symbolic link is not counted (nor followed) */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		errno = e;
		if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
			return 0;
		return err_fail(error_r, errno, "opendir(%s) failed: %s", dir,
		    strerror(errno));
	}
	for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
		if (de->d_name[0] == '.' || de->d_type == DT_LNK)
			continue;	/* a symbolic link is no message */
		if (maildir_name_parse(de->d_name, strlen(de->d_name),
		    &name) == 0 && name.has_size) {
			size = name.size;
		} else {
			if (fstatat(dirfd(d), de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) == -1) {
				if (errno == ENOENT)
					continue;	/* expunged meanwhile */
				err_fail(error_r, errno,
				    "stat(%s/%s) failed: %s",
				    dir, de->d_name, strerror(errno));
				closedir(d);
				return -1;
			}
			if (!S_ISREG(st.st_mode))
				continue;
			size = (uint64_t)st.st_size;
		}
		if (size > (uint64_t)INT64_MAX ||
		    __builtin_add_overflow(*bytes, (int64_t)size, bytes)) {
			closedir(d);
			return err_fail(error_r, ERR_OTHER,
			    "%s: size overflow", dir);
		}
		(*count)++;
	}
	if (errno != 0) {
		err_fail(error_r, errno, "readdir(%s) failed: %s", dir,
		    strerror(errno));
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

static int
scan_mailbox(const char *dir, int64_t *bytes, int64_t *count,
	     const char **error_r)
{
	char *sub;
	int ret;

	sub = xasprintf("%s/new", dir);
	ret = scan_dir(sub, bytes, count, error_r);
	free(sub);
	if (ret < 0)
		return -1;
	sub = xasprintf("%s/cur", dir);
	ret = scan_dir(sub, bytes, count, error_r);
	free(sub);
	return ret;
}

/* Is root/name a Maildir++ folder (a directory with maildirfolder or
 * cur/)? */
static bool
is_folder(int rootfd, const char *name)
{
	struct stat st;
	char *p;
	bool ret;

	if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISDIR(st.st_mode))
		return false;	/* a symbolic link is no folder */
	p = xasprintf("%s/maildirfolder", name);
	ret = fstatat(rootfd, p, &st, 0) == 0;
	free(p);
	if (ret)
		return true;
	p = xasprintf("%s/cur", name);
	ret = fstatat(rootfd, p, &st, 0) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return ret;
}

static int
scan_all(const char *root, int64_t *bytes, int64_t *count,
	 const char **error_r)
{
	struct dirent *de;
	char *sub;
	DIR *d;
	int ret;

	*bytes = 0;
	*count = 0;
	if (scan_mailbox(root, bytes, count, error_r) < 0)
		return -1;
	d = opendir(root);
	if (d == NULL)
		return err_fail(error_r, errno, "opendir(%s) failed: %s", root,
		    strerror(errno));
	for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (!is_folder(dirfd(d), de->d_name))
			continue;
		sub = xasprintf("%s/%s", root, de->d_name);
		ret = scan_mailbox(sub, bytes, count, error_r);
		free(sub);
		if (ret < 0) {
			closedir(d);
			return -1;
		}
	}
	if (errno != 0) {
		err_fail(error_r, errno, "readdir(%s) failed: %s", root,
		    strerror(errno));
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

/* The identity of maildirsize, to notice appends during a scan. */
struct file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

static void
file_id_get(const char *path, struct file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (stat(path, &st) == -1)
		return;
	id->exists = true;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
}

static bool
file_id_equal(const struct file_id *a, const struct file_id *b)
{
	if (a->exists != b->exists)
		return false;
	if (!a->exists)
		return true;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static char *
definition_string(uint64_t limit_bytes, uint64_t limit_count)
{
	if (limit_bytes > 0 && limit_count > 0)
		return xasprintf("%" PRIu64 "S,%" PRIu64 "C", limit_bytes,
		    limit_count);
	if (limit_count > 0)
		return xasprintf("%" PRIu64 "C", limit_count);
	return xasprintf("%" PRIu64 "S", limit_bytes);
}

/* Write content to root/tmp/<unique>, fsync, rename to
 * root/maildirsize, fsync root. */
static int
write_maildirsize(const char *root, const char *content,
		  const char **error_r)
{
	const char *merr;
	char *tmp_path = NULL, *dest, *base;
	size_t len = strlen(content), done = 0;
	bool made = false;
	ssize_t n;
	int fd, ret = -1, saved, dfd;

	dest = xasprintf("%s/maildirsize", root);
	for (;;) {
		base = maildir_unique_name();
		free(tmp_path);
		tmp_path = xasprintf("%s/tmp/%s.maildirsize", root, base);
		free(base);
		fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		if (fd != -1)
			break;
		if (errno == ENOENT && !made) {
			made = true;
			if (maildir_make(root, &merr) < 0) {
				err_fail(error_r, err_last_code(), "%s", merr);
				goto out;
			}
			continue;
		}
		err_fail(error_r, errno, "open(%s) failed: %s", tmp_path,
		    strerror(errno));
		goto out;
	}
	while (done < len) {
		n = write(fd, content + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err_fail(error_r, n < 0 ? errno : ERR_OTHER,
			    "write(%s) failed: %s", tmp_path,
			    n < 0 ? strerror(errno) : "wrote nothing");
			goto fail_fd;
		}
		done += (size_t)n;
	}
	if (fsync(fd) == -1) {
		err_fail(error_r, errno, "fsync(%s) failed: %s", tmp_path,
		    strerror(errno));
		goto fail_fd;
	}
	if (close(fd) == -1) {
		fd = -1;
		err_fail(error_r, errno, "close(%s) failed: %s", tmp_path,
		    strerror(errno));
		goto fail_unlink;
	}
	fd = -1;
	if (rename(tmp_path, dest) == -1) {
		err_fail(error_r, errno, "rename(%s, %s) failed: %s", tmp_path,
		    dest, strerror(errno));
		goto fail_unlink;
	}
	dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1 || (fsync(dfd) == -1 && errno != EINVAL)) {
		saved = errno;
		if (dfd != -1)
			close(dfd);
		/* the file is in place; only its durability is unknown, and
		 * maildirsize can always be recomputed */
		log_warn("fsync(%s) failed: %s", root, strerror(saved));
	} else {
		close(dfd);
	}
	ret = 0;
	goto out;
fail_fd:
	close(fd);
fail_unlink:
	(void)unlink(tmp_path);
out:
	free(tmp_path);
	free(dest);
	return ret;
}

int
maildir_quota_recalc(const char *maildir, uint64_t limit_bytes,
		     uint64_t limit_count, struct maildir_quota *q_r,
		     const char **error_r)
{
	struct file_id before, after;
	int64_t bytes = 0, count = 0;
	char *root, *path, *def, *content;
	int tries, ret = -1;

	root = path_trim(maildir);
	path = xasprintf("%s/maildirsize", root);
	for (tries = 0; tries < RECALC_RETRIES; tries++) {
		file_id_get(path, &before);
		if (scan_all(root, &bytes, &count, error_r) < 0)
			goto out;
		file_id_get(path, &after);
		if (file_id_equal(&before, &after))
			break;
	}
	def = definition_string(limit_bytes, limit_count);
	content = xasprintf("%s\n%" PRId64 " %" PRId64 "\n", def, bytes,
	    count);
	free(def);
	ret = write_maildirsize(root, content, error_r);
	free(content);
	if (ret == 0 && q_r != NULL) {
		q_r->limit_bytes = limit_bytes;
		q_r->limit_count = limit_count;
		q_r->bytes = bytes;
		q_r->count = count;
	}
out:
	free(path);
	free(root);
	return ret;
}

int
maildir_quota_add(const char *maildir, int64_t bytes, int64_t count,
		  const char **error_r)
{
	char line[64], *root, *path;
	ssize_t n;
	int fd, len, ret = -1;

	if (bytes == 0 && count == 0)
		return 0;
	root = path_trim(maildir);
	path = xasprintf("%s/maildirsize", root);
	free(root);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		if (errno == ENOENT)
			ret = 0;
		else
			err_fail(error_r, errno, "open(%s) failed: %s", path,
			    strerror(errno));
		free(path);
		return ret;
	}
	len = snprintf(line, sizeof(line), "%" PRId64 " %" PRId64 "\n",
	    bytes, count);
	/* One write so concurrent appenders never interleave inside a line
	 * (O_APPEND); a short write leaves a torn line that the next read
	 * reports as malformed and the next check recalculates. */
	do {
		n = write(fd, line, (size_t)len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		err_fail(error_r, errno, "write(%s) failed: %s", path,
		    strerror(errno));
	else if (n != len)
		err_fail(error_r, ERR_OTHER, "write(%s) was short", path);
	else
		ret = 1;
	close(fd);
	free(path);
	return ret;
}

int
quota_limit_parse(const char *s, struct quota_limit *l_r)
{
	struct maildir_quota q;
	const char *p = s;
	uint64_t v;

	memset(l_r, 0, sizeof(*l_r));
	while (is_blank(*p))
		p++;
	/* a plain number: bytes */
	if (parse_u64(&p, p + strlen(p), &v) == 0) {
		while (is_blank(*p))
			p++;
		if (*p == '\0') {
			l_r->bytes = v;
			return 0;
		}
	}
	memset(&q, 0, sizeof(q));
	if (parse_definition(s, s + strlen(s), &q) < 0)
		return -1;
	l_r->bytes = q.limit_bytes;
	l_r->count = q.limit_count;
	return 0;
}

/* Would adding_bytes (and one message) fit in q under the byte limit
 * limit_bytes (0: none) and q's count limit? */
static bool
quota_fits(const struct maildir_quota *q, uint64_t limit_bytes,
	   uint64_t adding_bytes)
{
	uint64_t used = q->bytes > 0 ? (uint64_t)q->bytes : 0;
	uint64_t n = q->count > 0 ? (uint64_t)q->count : 0;

	if (limit_bytes > 0 && (adding_bytes > limit_bytes ||
	    used > limit_bytes - adding_bytes))
		return false;
	if (q->limit_count > 0 && n >= q->limit_count)
		return false;
	return true;
}

int
maildir_quota_check(const char *maildir, const struct quota_limit *lim,
		    uint64_t adding_bytes, const char **error_r)
{
	struct maildir_quota q;
	struct stat st;
	bool malformed, recalc;
	uint64_t limit_bytes = lim->bytes, limit_count;
	char *root;
	int ret;

	if (!quota_limit_set(lim))
		return 1;
	root = path_trim(maildir);
	if (stat(root, &st) == -1) {
		if (errno == ENOENT) {
			/* no maildir yet: nothing stored */
			free(root);
			return limit_bytes == 0 || adding_bytes <= limit_bytes ?
			    1 : 0;
		}
		err_fail(error_r, errno, "stat(%s) failed: %s", root,
		    strerror(errno));
		free(root);
		return -1;
	}
	ret = quota_read_file(root, &q, &st, &malformed, error_r);
	if (ret < 0 && !malformed) {
		free(root);
		return -1;
	}
	/* the directory's limits are authoritative; without a count from
	 * it, a count limit from the old definition is kept */
	limit_count = lim->count > 0 ? lim->count : q.limit_count;
	recalc = ret <= 0 || q.limit_bytes != limit_bytes ||
	    q.limit_count != limit_count ||
	    st.st_size > MAILDIRSIZE_MAX ||
	    (!quota_fits(&q, limit_bytes, adding_bytes) &&
	     time(NULL) - st.st_mtime > MAILDIRSIZE_MAX_AGE);
	if (recalc) {
		if (maildir_quota_recalc(root, limit_bytes, limit_count, &q,
		    error_r) < 0) {
			free(root);
			return -1;
		}
	}
	free(root);
	return quota_fits(&q, limit_bytes, adding_bytes) ? 1 : 0;
}
