/*
 * subscriptions.c: the subscription files of a Maildir++, Dovecot's
 * "subscriptions" (versions 1 and 2) and Courier-IMAP's
 * "courierimapsubscribed", read and kept current in the format each one
 * has (subscriptions.h).
 *
 * Trusts nothing in the files: they are the user's (the old server wrote
 * them, or anyone with access to the maildir). Each is read whole up to
 * MAILDIR_SUBS_READ_MAX, never through a symbolic link; a line that
 * names no valid folder is shown to no one and written back unchanged
 * (another namespace, a name of a server we do not know).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/subscriptions.h"

/* Dovecot's version 2 header: "V", TAB, "2", then an empty line. */
#define DOVECOT2_HEADER "V\t2\n\n"
#define DOVECOT2_HEADER_LEN (sizeof(DOVECOT2_HEADER) - 1)

static const char *const files[] = {
	MAILDIR_SUBS_DOVECOT,
	MAILDIR_SUBS_COURIER,
};
#define NFILES (sizeof(files) / sizeof(files[0]))

bool
maildir_subs_exist(const char *maildir)
{
	for (size_t i = 0; i < NFILES; i++) {
		char *path = xasprintf("%s/%s", maildir, files[i]);
		struct stat st;
		bool there = lstat(path, &st) == 0;

		free(path);
		if (there)
			return true;
	}
	return false;
}

int
maildir_subs_parse_line(enum maildir_subs_format fmt, const char *line,
    size_t len, str_t *folder_r)
{
	str_truncate(folder_r, 0);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0 || memchr(line, '\0', len) != NULL)
		return 0;
	switch (fmt) {
	case MAILDIR_SUBS_COURIER1:
		/* Courier's namespace: INBOX and INBOX.<folder> */
		if (len == 5 && strncasecmp(line, "INBOX", 5) == 0) {
			str_append(folder_r, "INBOX");
			return 1;
		}
		if (len <= 6 || strncasecmp(line, "INBOX.", 6) != 0)
			return 0;
		str_append_n(folder_r, line + 6, len - 6);
		return maildir_folder_name_valid(str_c(folder_r)) ? 1 : 0;
	case MAILDIR_SUBS_DOVECOT1:
		str_append_n(folder_r, line, len);
		break;
	case MAILDIR_SUBS_DOVECOT2:
		/* a TAB between levels; \001 escapes only characters that
		 * no folder name holds, and a level cannot hold the '.'
		 * that separates levels on disk */
		for (size_t i = 0; i < len; i++) {
			if (line[i] == '\001' || line[i] == '.')
				return 0;
			str_append_c(folder_r, line[i] == '\t' ? '.' : line[i]);
		}
		break;
	}
	/* Dovecot drops a trailing separator, written by old versions */
	if (folder_r->len > 1 && folder_r->data[folder_r->len - 1] == '.')
		str_truncate(folder_r, folder_r->len - 1);
	if (strcasecmp(str_c(folder_r), "INBOX") == 0) {
		str_truncate(folder_r, 0);
		str_append(folder_r, "INBOX");
		return 1;
	}
	return maildir_folder_name_valid(str_c(folder_r)) ? 1 : 0;
}

void
maildir_subs_format_line(enum maildir_subs_format fmt, const char *folder,
    str_t *out)
{
	bool inbox = strcmp(folder, "INBOX") == 0;

	switch (fmt) {
	case MAILDIR_SUBS_COURIER1:
		str_append(out, "INBOX");
		if (!inbox) {
			str_append_c(out, '.');
			str_append(out, folder);
		}
		break;
	case MAILDIR_SUBS_DOVECOT1:
		str_append(out, folder);
		break;
	case MAILDIR_SUBS_DOVECOT2:
		for (const char *p = folder; *p != '\0'; p++)
			str_append_c(out, *p == '.' ? '\t' : *p);
		break;
	}
}

/* A subscription file, read whole: 1 read (*data_r malloc'd), 0 there
 * is none, -1 error. */
static int
subs_load(const char *path, char **data_r, size_t *len_r, struct stat *st_r,
    const char **error_r)
{
	int fd, e;

	*data_r = NULL;
	*len_r = 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		e = errno;
		return err_fail(error_r, e, "open(%s) failed: %s", path,
		    strerror(e));
	}
	if (fstat(fd, st_r) < 0) {
		e = errno;
		close(fd);
		return err_fail(error_r, e, "fstat(%s) failed: %s", path,
		    strerror(e));
	}
	if (!S_ISREG(st_r->st_mode) || st_r->st_size > MAILDIR_SUBS_READ_MAX) {
		close(fd);
		return err_fail(error_r, ERR_OTHER, "%s: %s", path,
		    !S_ISREG(st_r->st_mode) ? "not a regular file" :
		    "larger than MAILDIR_SUBS_READ_MAX");
	}
	if (read_fd_all(fd, data_r, len_r, st_r) < 0) {
		e = errno;
		close(fd);
		return err_fail(error_r, e, "read(%s) failed: %s", path,
		    strerror(e));
	}
	close(fd);
	return 1;
}

/* The format of a file's contents, and where its names begin. */
static enum maildir_subs_format
subs_format(size_t file, const char *data, size_t len, size_t *start_r)
{
	*start_r = 0;
	if (file == 1)
		return MAILDIR_SUBS_COURIER1;
	if (len >= DOVECOT2_HEADER_LEN &&
	    memcmp(data, DOVECOT2_HEADER, DOVECOT2_HEADER_LEN) == 0) {
		*start_r = DOVECOT2_HEADER_LEN;
		return MAILDIR_SUBS_DOVECOT2;
	}
	return MAILDIR_SUBS_DOVECOT1;
}

/* The next line of data[*pos..len) (without its LF); false at the end. */
static bool
next_line(const char *data, size_t len, size_t *pos, const char **line_r,
    size_t *llen_r)
{
	const char *nl;

	if (*pos >= len)
		return false;
	*line_r = data + *pos;
	nl = memchr(*line_r, '\n', len - *pos);
	*llen_r = nl != NULL ? (size_t)(nl - *line_r) : len - *pos;
	*pos += *llen_r + 1;
	return true;
}

int
maildir_subs_read(const char *maildir, maildir_subs_fn *fn, void *ctx,
    const char **error_r)
{
	str_t folder = STR_INIT;

	for (size_t f = 0; f < NFILES; f++) {
		char *path = xasprintf("%s/%s", maildir, files[f]);
		char *data;
		size_t len, pos, llen;
		const char *line;
		enum maildir_subs_format fmt;
		struct stat st;
		int r = subs_load(path, &data, &len, &st, error_r);

		free(path);
		if (r < 0) {
			str_free(&folder);
			return -1;
		}
		if (r == 0)
			continue;
		fmt = subs_format(f, data, len, &pos);
		while (next_line(data, len, &pos, &line, &llen))
			if (maildir_subs_parse_line(fmt, line, llen,
			    &folder) == 1)
				fn(ctx, str_c(&folder));
		free(data);
	}
	str_free(&folder);
	return 0;
}

static bool
in_list(const char *const *folders, size_t n, const char *folder)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(folders[i], folder) == 0)
			return true;
	return false;
}

/* Write body as the file at path, atomically: 0 ok, -1 error. */
static int
replace_file(const char *maildir, const char *path, const char *name,
    const str_t *body, mode_t mode, const char **error_r)
{
	char *u = maildir_unique_name();
	char *tmp = xasprintf("%s/tmp/%s%s", maildir, u, name);
	int fd, e, rc = -1;

	free(u);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    mode);
	if (fd < 0) {
		e = errno;
		err_fail(error_r, e, "open(%s) failed: %s", tmp, strerror(e));
		free(tmp);
		return -1;
	}
	if (fchmod(fd, mode) < 0 || write_full(fd, body->data, body->len) < 0 ||
	    fsync(fd) < 0) {
		e = errno;
		err_fail(error_r, e, "writing %s failed: %s", tmp,
		    strerror(e));
		close(fd);
	} else if (close(fd) < 0) {
		e = errno;
		err_fail(error_r, e, "close(%s) failed: %s", tmp, strerror(e));
	} else if (rename(tmp, path) < 0) {
		e = errno;
		err_fail(error_r, e, "rename(%s) failed: %s", path,
		    strerror(e));
	} else {
		rc = 0;
	}
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* One file: the change applied to its contents (data NULL: a new file).
 * 1 written, 0 nothing to change, -1 error. */
static int
subs_rewrite(const char *maildir, size_t f, const char *data, size_t len,
    mode_t mode, const char *const *folders, size_t n, bool on,
    const char **error_r)
{
	char *path = xasprintf("%s/%s", maildir, files[f]);
	str_t body = STR_INIT, folder = STR_INIT;
	bool *found = xcalloc(n > 0 ? n : 1, sizeof(*found));
	bool changed = false;
	size_t pos, llen;
	const char *line;
	enum maildir_subs_format fmt = subs_format(f, data, len, &pos);
	int rc = 0;

	if (pos > 0)
		str_append_n(&body, data, pos);	/* the header */
	while (data != NULL && next_line(data, len, &pos, &line, &llen)) {
		if (maildir_subs_parse_line(fmt, line, llen, &folder) == 1) {
			bool match = false;

			for (size_t i = 0; i < n; i++) {
				if (strcmp(folders[i], str_c(&folder)) == 0) {
					found[i] = true;
					match = true;
				}
			}
			if (match && !on) {
				changed = true;
				continue;
			}
		}
		str_append_n(&body, line, llen);
		str_append_c(&body, '\n');
	}
	for (size_t i = 0; on && i < n; i++) {
		if (found[i] || in_list(folders, i, folders[i]))
			continue;
		maildir_subs_format_line(fmt, folders[i], &body);
		str_append_c(&body, '\n');
		changed = true;
	}
	if (changed)
		rc = replace_file(maildir, path, files[f], &body, mode,
		    error_r) < 0 ? -1 : 1;
	free(found);
	str_free(&folder);
	str_free(&body);
	free(path);
	return rc;
}

int
maildir_subs_set(const char *maildir, const char *const *folders,
    size_t n, bool on, const char **error_r)
{
	bool any = false, written = false;
	int dfd, rc = 0, e;

	for (size_t i = 0; i < n; i++)
		if (strcmp(folders[i], "INBOX") != 0 &&
		    !maildir_folder_name_valid(folders[i]))
			return err_fail(error_r, ERR_SYNTAX,
			    "invalid folder name \"%s\"", folders[i]);
	/* the maildir's directory as the lock: flock() excludes other
	 * open descriptors, in this process (threads) and in others */
	dfd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		e = errno;
		return err_fail(error_r, e, "open(%s) failed: %s", maildir,
		    strerror(e));
	}
	while (flock(dfd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			e = errno;
			close(dfd);
			return err_fail(error_r, e, "flock(%s) failed: %s",
			    maildir, strerror(e));
		}
	}
	for (size_t f = 0; f < NFILES && rc == 0; f++) {
		char *path = xasprintf("%s/%s", maildir, files[f]);
		char *data;
		size_t len;
		struct stat st;
		int r = subs_load(path, &data, &len, &st, error_r);

		free(path);
		if (r < 0) {
			rc = -1;
			break;
		}
		if (r == 0)
			continue;
		any = true;
		r = subs_rewrite(maildir, f, data, len, st.st_mode & 07777,
		    folders, n, on, error_r);
		free(data);
		if (r < 0)
			rc = -1;
		else if (r > 0)
			written = true;
	}
	if (rc == 0 && !any && on) {
		/* neither file: petrel's own, Dovecot's version 1 */
		rc = subs_rewrite(maildir, 0, NULL, 0, 0600, folders, n, on,
		    error_r);
		if (rc > 0) {
			written = true;
			rc = 0;
		}
	}
	if (rc == 0 && written && fsync_dir(maildir, error_r) < 0)
		rc = -1;
	close(dfd);		/* releases the lock */
	return rc;
}
