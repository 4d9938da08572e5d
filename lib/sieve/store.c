/*
 * store.c: a user's Sieve scripts on disk (see store.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/str.h"
#include "lib/sieve/store.h"

#define SUFFIX ".sieve"
#define ACTIVE_LINK ".dovecot.sieve"

char *
sieve_path_expand(const char *pat, const char *home, const char *address)
{
	const char *at = strrchr(address, '@');
	str_t out = STR_INIT;

	for (const char *p = pat; *p != '\0'; p++) {
		if (*p != '%' || p[1] == '\0') {
			str_append_c(&out, *p);
			continue;
		}
		switch (*++p) {
		case 'h':
			str_append(&out, home);
			break;
		case 'u':
			str_append(&out, address);
			break;
		case 'n':
			str_append_n(&out, address, at != NULL ?
			    (size_t)(at - address) : strlen(address));
			break;
		case 'd':
			str_append(&out, at != NULL ? at + 1 : "");
			break;
		default:
			str_append_c(&out, *p);
			break;
		}
	}
	if (out.data == NULL)
		str_append(&out, "");
	return str_steal(&out);
}

bool
sieve_name_valid(const char *name)
{
	size_t len;

	if (name == NULL || *name == '\0' || *name == '.')
		return false;
	len = strlen(name);
	if (len > SIEVE_NAME_MAX || !str_utf8_valid(name, len))
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '/')
			return false;
		/* U+0080..U+009F, U+2028, U+2029 (RFC 5804 1.6) */
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return false;
		if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 ||
		    p[2] == 0xa9))
			return false;
	}
	return true;
}

void
sieve_store_init(struct sieve_store *st, const char *dir_pattern,
    const char *home, const char *address)
{
	char *up = xstrdup(home);
	struct stat sb;

	st->dir = sieve_path_expand(dir_pattern, home, address);
	st->home = xstrdup(home);
	st->uid = getuid();
	st->gid = getgid();
	st->max_scripts = 0;
	st->max_storage = 0;
	/* what is made belongs to the owner of the home (or of the nearest
	 * directory above it that exists): the delivery user */
	for (;;) {
		char *slash;

		if (stat(up, &sb) == 0) {
			st->uid = sb.st_uid;
			st->gid = sb.st_gid;
			break;
		}
		slash = strrchr(up, '/');
		if (slash == NULL || slash == up)
			break;
		*slash = '\0';
	}
	free(up);
}

void
sieve_store_clear(struct sieve_store *st)
{
	free(st->dir);
	free(st->home);
	st->dir = st->home = NULL;
}

void
sieve_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

char *
sieve_store_path(const struct sieve_store *st, const char *name)
{
	return xasprintf("%s/%s" SUFFIX, st->dir, name);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *
sieve_store_active(const struct sieve_store *st)
{
	char *link = xasprintf("%s/" ACTIVE_LINK, st->home);
	char target[PATH_MAX], rdir[PATH_MAX], rfile[PATH_MAX];
	char *path, *base, *name = NULL;
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	size_t len;

	free(link);
	if (n <= 0)
		return NULL;
	target[n] = '\0';
	path = target[0] == '/' ? xstrdup(target) :
	    xasprintf("%s/%s", st->home, target);
	if (realpath(path, rfile) == NULL || realpath(st->dir, rdir) == NULL) {
		free(path);
		return NULL;
	}
	free(path);
	base = strrchr(rfile, '/');
	len = strlen(rdir);
	if (base == NULL || (size_t)(base - rfile) != len ||
	    strncmp(rfile, rdir, len) != 0)
		return NULL;
	base++;
	if (!str_has_suffix(base, SUFFIX))
		return NULL;
	name = xstrdup(base);
	name[strlen(name) - strlen(SUFFIX)] = '\0';
	if (!sieve_name_valid(name)) {
		free(name);
		return NULL;
	}
	return name;
}

int
sieve_store_list(const struct sieve_store *st, char ***names_r,
    size_t *n_r, char **active_r, const char **error_r)
{
	DIR *d = opendir(st->dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	*names_r = NULL;
	*n_r = 0;
	*active_r = NULL;
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		return err_fail(error_r, errno, "opendir(%s) failed: %s",
		    st->dir, strerror(errno));
	}
	while ((de = readdir(d)) != NULL) {
		char *name;

		if (!str_has_suffix(de->d_name, SUFFIX))
			continue;
		name = xstrdup(de->d_name);
		name[strlen(name) - strlen(SUFFIX)] = '\0';
		if (!sieve_name_valid(name)) {
			free(name);
			continue;
		}
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = name;
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	*names_r = names;
	*n_r = n;
	*active_r = sieve_store_active(st);
	return 0;
}

/* mkdir -p of st->dir: the levels made get the owner and are synced into
 * their parents. */
static int
make_dir(const struct sieve_store *st, const char **error_r)
{
	char *copy = xstrdup(st->dir);
	int ret = 0;

	for (char *p = copy + 1;; p++) {
		bool end = *p == '\0';

		if (!end && *p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) == 0) {
			char *slash = strrchr(copy, '/');

			if (chown(copy, st->uid, st->gid) < 0) {
				ret = err_fail(error_r, errno,
				    "chown(%s) failed: %s", copy,
				    strerror(errno));
				break;
			}
			if (slash != NULL && slash != copy) {
				*slash = '\0';
				ret = fsync_dir(copy, error_r);
				*slash = '/';
				if (ret < 0)
					break;
			}
		} else if (errno != EEXIST) {
			ret = err_fail(error_r, errno, "mkdir(%s) failed: %s",
			    copy, strerror(errno));
			break;
		}
		if (end)
			break;
		*p = '/';
	}
	free(copy);
	return ret;
}

int
sieve_store_space(const struct sieve_store *st, const char *name,
    uint64_t size, const char **error_r)
{
	char **names, *active;
	size_t n;
	uint64_t total = size;
	bool known = false;
	int ret = 0;

	if (st->max_scripts == 0 && st->max_storage == 0)
		return 0;
	if (sieve_store_list(st, &names, &n, &active, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char *path;
		struct stat sb;

		if (strcmp(names[i], name) == 0) {
			known = true;
			continue;	/* replaced */
		}
		path = sieve_store_path(st, names[i]);
		if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
			total += (uint64_t)sb.st_size;
		free(path);
	}
	if (st->max_scripts > 0 && !known && n >= st->max_scripts)
		ret = err_fail(error_r, ERR_TOO_MANY, "at most %u scripts "
		    "(sieve_max_scripts)", st->max_scripts);
	else if (st->max_storage > 0 && total > st->max_storage)
		ret = err_fail(error_r, ERR_TOO_BIG, "the scripts would take "
		    "%llu bytes, more than sieve_max_storage (%llu)",
		    (unsigned long long)total,
		    (unsigned long long)st->max_storage);
	sieve_names_free(names, n);
	free(active);
	return ret;
}

int
sieve_store_put(const struct sieve_store *st, const char *name,
    const char *text, size_t len, const char **error_r)
{
	char *path, *tmp;
	int fd, ret = -1;

	if (!sieve_name_valid(name))
		return err_fail(error_r, ERR_SYNTAX, "invalid script name");
	if (sieve_store_space(st, name, len, error_r) < 0)
		return -1;
	if (make_dir(st, error_r) < 0)
		return -1;
	path = sieve_store_path(st, name);
	tmp = xasprintf("%s/.%s.tmp.%ld", st->dir, name, (long)getpid());
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		err_fail(error_r, errno, "open(%s) failed: %s", tmp,
		    strerror(errno));
		goto out;
	}
	if (write_full(fd, text, len) < 0 || fchown(fd, st->uid, st->gid) < 0 ||
	    fsync(fd) < 0) {
		err_fail(error_r, errno, "writing %s failed: %s", tmp,
		    strerror(errno));
		close(fd);
		(void)unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		err_fail(error_r, errno, "rename(%s, %s) failed: %s", tmp,
		    path, strerror(errno));
		(void)unlink(tmp);
		goto out;
	}
	ret = fsync_dir(st->dir, error_r);
out:
	free(tmp);
	free(path);
	return ret;
}

int
sieve_store_activate(const struct sieve_store *st, const char *name,
    const char **error_r)
{
	char *link = xasprintf("%s/" ACTIVE_LINK, st->home);
	char *tmp = NULL, *target = NULL, *path = NULL;
	size_t hl = strlen(st->home);
	struct stat sb;
	int ret = -1;

	if (lstat(link, &sb) == 0 && !S_ISLNK(sb.st_mode)) {
		err_fail(error_r, ERR_OTHER, "%s is not a link: move the "
		    "script into %s first", link, st->dir);
		goto out;
	}
	if (name == NULL) {
		if (unlink(link) < 0 && errno != ENOENT) {
			err_fail(error_r, errno, "unlink(%s) failed: %s", link,
			    strerror(errno));
			goto out;
		}
		ret = fsync_dir(st->home, error_r);
		goto out;
	}
	if (!sieve_name_valid(name)) {
		err_fail(error_r, ERR_SYNTAX, "invalid script name");
		goto out;
	}
	path = sieve_store_path(st, name);
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		err_fail(error_r, ENOENT, "no script %s (%s)", name, path);
		goto out;
	}
	/* relative inside the home, as Pigeonhole makes it */
	if (strncmp(st->dir, st->home, hl) == 0 && st->dir[hl] == '/')
		target = xasprintf("%s/%s" SUFFIX, st->dir + hl + 1, name);
	else
		target = xstrdup(path);
	tmp = xasprintf("%s/" ACTIVE_LINK ".tmp.%ld", st->home,
	    (long)getpid());
	(void)unlink(tmp);
	if (symlink(target, tmp) < 0) {
		err_fail(error_r, errno, "symlink(%s) failed: %s", tmp,
		    strerror(errno));
		goto out;
	}
	if (lchown(tmp, st->uid, st->gid) < 0 || rename(tmp, link) < 0) {
		err_fail(error_r, errno, "linking %s failed: %s", link,
		    strerror(errno));
		(void)unlink(tmp);
		goto out;
	}
	ret = fsync_dir(st->home, error_r);
out:
	free(tmp);
	free(target);
	free(path);
	free(link);
	return ret;
}

int
sieve_store_delete(const struct sieve_store *st, const char *name,
    const char **error_r)
{
	char *active, *path;
	int ret;

	if (!sieve_name_valid(name))
		return err_fail(error_r, ERR_SYNTAX, "invalid script name");
	active = sieve_store_active(st);
	if (active != NULL && strcmp(active, name) == 0) {
		free(active);
		return err_fail(error_r, EBUSY, "script %s is active: "
		    "deactivate it first", name);
	}
	free(active);
	path = sieve_store_path(st, name);
	if (unlink(path) < 0) {
		ret = errno == ENOENT ?
		    err_fail(error_r, ENOENT, "no script %s", name) :
		    err_fail(error_r, errno, "unlink(%s) failed: %s", path,
		    strerror(errno));
		free(path);
		return ret;
	}
	free(path);
	return fsync_dir(st->dir, error_r);
}

int
sieve_store_rename(const struct sieve_store *st, const char *from,
    const char *to, const char **error_r)
{
	char *active, *pfrom, *pto;
	int ret = -1;

	if (!sieve_name_valid(from) || !sieve_name_valid(to))
		return err_fail(error_r, ERR_SYNTAX, "invalid script name");
	pfrom = sieve_store_path(st, from);
	pto = sieve_store_path(st, to);
	active = sieve_store_active(st);
	/* a second name first (link refuses one that exists), then the
	 * active link moved to it, then the old name gone: delivery sees
	 * the script under one name or the other at every moment */
	if (link(pfrom, pto) < 0) {
		if (errno == ENOENT)
			err_fail(error_r, ENOENT, "no script %s", from);
		else if (errno == EEXIST)
			err_fail(error_r, EEXIST, "script %s exists", to);
		else
			err_fail(error_r, errno, "link(%s, %s) failed: %s",
			    pfrom, pto, strerror(errno));
		goto out;
	}
	if (fsync_dir(st->dir, error_r) < 0)
		goto out;
	if (active != NULL && strcmp(active, from) == 0 &&
	    sieve_store_activate(st, to, error_r) < 0)
		goto out;
	if (unlink(pfrom) < 0) {
		err_fail(error_r, errno, "unlink(%s) failed: %s", pfrom,
		    strerror(errno));
		goto out;
	}
	ret = fsync_dir(st->dir, error_r);
out:
	free(active);
	free(pfrom);
	free(pto);
	return ret;
}
