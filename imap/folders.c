/*
 * folders.c: mailbox names and folders, shared by the IMAP command files
 * (cmd_*.c) and the login: name validity, the folder list, the
 * special-use folders (RFC 6154), subscriptions, the maildir prepared at
 * the first login.
 *
 * Names: the hierarchy separator is '.', and a mailbox is the Maildir++
 * folder of the same name (".Sent", ".Archive.2024"); names are stored
 * in modified UTF-7 as Courier and Dovecot store them, so a maildir
 * moves between the three unchanged. INBOX is the maildir itself.
 * Subscriptions are kept one name per line in "subscriptions" at the
 * maildir's root (Dovecot's Maildir++ file).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/imap-private.h"
#include "imap/imap-cmd.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"

static const struct {
	const char *name, *attr;
} special[] = {
	{ "Sent", "\\Sent" },
	{ "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" },
	{ "Junk", "\\Junk" },
	{ "Archive", "\\Archive" },
};
#define NSPECIAL (sizeof(special) / sizeof(special[0]))

#define SUBSCRIPTIONS "subscriptions"

bool
imap_is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

/* Validity of a mailbox name, INBOX aside. */
bool
imap_name_valid(const char *name)
{
	str_t utf8 = STR_INIT;
	bool ok;

	if (strpbrk(name, "%*\\\"") != NULL)
		return false;
	ok = imap_mutf7_to_utf8(name, strlen(name), &utf8) == 0 &&
	    maildir_folder_name_valid(name);
	str_free(&utf8);
	return ok;
}

char *
imap_mailbox_path(struct imap_session *s, const char *name)
{
	char *path;

	if (imap_is_inbox(name))
		return xstrdup(s->maildir);
	if (!imap_name_valid(name)) {
		imap_no(s, "[CANNOT] Invalid mailbox name");
		return NULL;
	}
	path = maildir_folder_path(s->maildir, name);
	if (path == NULL)
		imap_no(s, "[CANNOT] Invalid mailbox name");
	return path;
}

bool
imap_is_dir(const char *path)
{
	struct stat st;

	/* lstat: a symbolic link is no mailbox (it could lead into another
	 * user's maildir): LIST skips it, SELECT, STATUS, DELETE, RENAME...
	 * find no such mailbox */
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- the folder list ---- */


void
imap_names_add(struct imap_names *l, const char *name)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(name);
}

void
imap_names_free(struct imap_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int
imap_names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool
imap_names_has(const struct imap_names *l, const char *name)
{
	return bsearch(&name, l->v, l->n, sizeof(*l->v), imap_names_cmp) !=
	    NULL;
}

/* Every Maildir++ folder of the maildir, sorted. */
int
imap_list_folders(const char *maildir, struct imap_names *out)
{
	DIR *d = opendir(maildir);
	struct dirent *de;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)) != NULL) {
		char *path;

		if (de->d_name[0] != '.' || !imap_name_valid(de->d_name + 1))
			continue;
		path = xasprintf("%s/%s", maildir, de->d_name);
		if (de->d_type == DT_DIR ||
		    (de->d_type == DT_UNKNOWN && imap_is_dir(path)))
			imap_names_add(out, de->d_name + 1);
		free(path);
	}
	closedir(d);
	qsort(out->v, out->n, sizeof(*out->v), imap_names_cmp);
	return 0;
}

bool
imap_has_children(const struct imap_names *l, const char *name)
{
	size_t len = strlen(name);

	if (strcmp(name, "INBOX") == 0) {
		for (size_t i = 0; i < l->n; i++)
			if (strncasecmp(l->v[i], "INBOX.", 6) == 0)
				return true;
		return false;
	}
	for (size_t i = 0; i < l->n; i++)
		if (strncmp(l->v[i], name, len) == 0 && l->v[i][len] == '.')
			return true;
	return false;
}

const char *
imap_special_attr(const char *name)
{
	for (size_t i = 0; i < NSPECIAL; i++)
		if (strcmp(name, special[i].name) == 0)
			return special[i].attr;
	return NULL;
}

/* ---- subscriptions ---- */

void
imap_read_subscriptions(const struct imap_session *s, struct imap_names *out)
{
	char *path = xasprintf("%s/%s", s->maildir, SUBSCRIPTIONS);
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	free(path);
	if (fp == NULL)
		return;
	while ((n = getline(&line, &cap, fp)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n > 0 && (imap_is_inbox(line) || imap_name_valid(line)))
			imap_names_add(out, imap_is_inbox(line) ? "INBOX" :
			    line);
	}
	free(line);
	fclose(fp);
	qsort(out->v, out->n, sizeof(*out->v), imap_names_cmp);
}

int
imap_write_subscriptions(const struct imap_session *s,
    const struct imap_names *l)
{
	char *path = xasprintf("%s/%s", s->maildir, SUBSCRIPTIONS);
	char *u = maildir_unique_name();	/* threads share the pid */
	char *tmp = xasprintf("%s/tmp/%s.subscriptions", s->maildir, u);
	str_t body = STR_INIT;
	int fd, rc = -1;

	for (size_t i = 0; i < l->n; i++) {
		if (i > 0 && strcmp(l->v[i], l->v[i - 1]) == 0)
			continue;
		str_append(&body, l->v[i]);
		str_append_c(&body, '\n');
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd >= 0) {
		if (write_full(fd, body.data, body.len) == 0 &&
		    fsync(fd) == 0 && close(fd) == 0) {
			fd = -1;
			rc = rename(tmp, path);
		}
		if (fd >= 0)
			close(fd);
	}
	if (rc < 0) {
		log_error_errno("imap: writing %s", path);
		unlink(tmp);
	}
	str_free(&body);
	free(tmp);
	free(u);
	free(path);
	return rc;
}

int
imap_prepare_maildir(struct imap_session *s)
{
	const char *err;
	char *subs;
	bool first;

	if (maildir_make(s->maildir, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		return -1;
	}
	subs = xasprintf("%s/%s", s->maildir, SUBSCRIPTIONS);
	first = access(subs, F_OK) < 0;
	free(subs);
	if (!first)
		return 0;
	/* First login: the special-use folders, subscribed with INBOX. */
	{
		struct imap_names l = { 0 };

		imap_names_add(&l, "INBOX");
		for (size_t i = 0; i < NSPECIAL; i++) {
			if (maildir_make_folder(s->maildir, special[i].name,
			    &err) < 0) {
				log_error("%016llx: %s", SID(&s->base), err);
				imap_names_free(&l);
				return -1;
			}
			imap_names_add(&l, special[i].name);
		}
		qsort(l.v, l.n, sizeof(*l.v), imap_names_cmp);
		if (imap_write_subscriptions(s, &l) < 0) {
			imap_names_free(&l);
			return -1;
		}
		imap_names_free(&l);
	}
	return 0;
}
