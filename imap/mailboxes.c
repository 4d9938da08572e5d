/*
 * mailboxes.c: the IMAP commands on whole mailboxes: CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS and the QUOTA
 * commands (RFC 3501 6.3, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN,
 * RFC 2087 QUOTA). They run on job threads.
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
static bool
name_valid(const char *name)
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
	if (!name_valid(name)) {
		imap_no(s, "[CANNOT] Invalid mailbox name");
		return NULL;
	}
	path = maildir_folder_path(s->maildir, name);
	if (path == NULL)
		imap_no(s, "[CANNOT] Invalid mailbox name");
	return path;
}

static bool
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- the folder list ---- */

struct names {
	char **v;
	size_t n, cap;
};

static void
names_add(struct names *l, const char *name)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(name);
}

static void
names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
names_has(const struct names *l, const char *name)
{
	return bsearch(&name, l->v, l->n, sizeof(*l->v), cmp_str) != NULL;
}

/* Every Maildir++ folder of the maildir, sorted. */
static int
list_folders(const char *maildir, struct names *out)
{
	DIR *d = opendir(maildir);
	struct dirent *de;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)) != NULL) {
		char *path;

		if (de->d_name[0] != '.' || !name_valid(de->d_name + 1))
			continue;
		path = xasprintf("%s/%s", maildir, de->d_name);
		if (de->d_type == DT_DIR ||
		    (de->d_type == DT_UNKNOWN && is_dir(path)))
			names_add(out, de->d_name + 1);
		free(path);
	}
	closedir(d);
	qsort(out->v, out->n, sizeof(*out->v), cmp_str);
	return 0;
}

static bool
has_children(const struct names *l, const char *name)
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

static const char *
special_attr(const char *name)
{
	for (size_t i = 0; i < NSPECIAL; i++)
		if (strcmp(name, special[i].name) == 0)
			return special[i].attr;
	return NULL;
}

/* ---- subscriptions ---- */

static void
read_subscriptions(const struct imap_session *s, struct names *out)
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
		if (n > 0 && (imap_is_inbox(line) || name_valid(line)))
			names_add(out, imap_is_inbox(line) ? "INBOX" : line);
	}
	free(line);
	fclose(fp);
	qsort(out->v, out->n, sizeof(*out->v), cmp_str);
}

static int
write_subscriptions(const struct imap_session *s, const struct names *l)
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
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
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
		log_error("%lu: %s", s->sid, err);
		return -1;
	}
	subs = xasprintf("%s/%s", s->maildir, SUBSCRIPTIONS);
	first = access(subs, F_OK) < 0;
	free(subs);
	if (!first)
		return 0;
	/* First login: the special-use folders, subscribed with INBOX. */
	{
		struct names l = { 0 };

		names_add(&l, "INBOX");
		for (size_t i = 0; i < NSPECIAL; i++) {
			if (maildir_make_folder(s->maildir, special[i].name,
			    &err) < 0) {
				log_error("%lu: %s", s->sid, err);
				names_free(&l);
				return -1;
			}
			names_add(&l, special[i].name);
		}
		qsort(l.v, l.n, sizeof(*l.v), cmp_str);
		if (write_subscriptions(s, &l) < 0) {
			names_free(&l);
			return -1;
		}
		names_free(&l);
	}
	return 0;
}

/* ---- CREATE, DELETE, RENAME ---- */

void
imap_cmd_create(struct imap_session *s, struct imap_cmd *c)
{
	const char *arg, *err;
	char *name, *path;
	size_t len;

	if (c->nargs != 1 || (arg = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "CREATE needs a mailbox name");
		return;
	}
	name = xstrdup(arg);
	len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		name[len - 1] = '\0';	/* "foo." announces children */
	if (imap_is_inbox(name)) {
		imap_no(s, "[ALREADYEXISTS] INBOX always exists");
		free(name);
		return;
	}
	if ((path = imap_mailbox_path(s, name)) == NULL) {
		free(name);
		return;
	}
	if (is_dir(path)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
	} else if (maildir_make_folder(s->maildir, name, &err) < 0) {
		log_error("%lu: %s", s->sid, err);
		imap_no(s, "[SERVERBUG] Cannot create the mailbox");
	} else {
		imap_ok(s, "Create completed.");
	}
	free(path);
	free(name);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

void
imap_cmd_delete(struct imap_session *s, struct imap_cmd *c)
{
	const char *name;
	char *path, *gone;
	struct names l = { 0 };

	if (c->nargs != 1 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "DELETE needs a mailbox name");
		return;
	}
	if (imap_is_inbox(name)) {
		imap_no(s, "[CANNOT] INBOX cannot be deleted");
		return;
	}
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (!is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return;
	}
	list_folders(s->maildir, &l);
	if (has_children(&l, name)) {
		imap_no(s, "[INUSE] Mailbox has children, delete them first");
		goto out;
	}
	if (s->mb != NULL && strcmp(s->mb->path, path) == 0) {
		imap_close_mailbox(s);
		s->state = S_AUTH;
	}
	/* Out of sight first (a name LIST never shows), then removed. */
	{
		char *u = maildir_unique_name();

		gone = xasprintf("%s/..deleted-%s", s->maildir, u);
		free(u);
	}
	if (rename(path, gone) < 0) {
		log_error_errno("%lu: rename %s", s->sid, path);
		imap_no(s, "[SERVERBUG] Cannot delete the mailbox");
	} else {
		if (nftw(gone, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
			log_warn_errno("%lu: removing %s", s->sid, gone);
		imap_ok(s, "Delete completed.");
	}
	free(gone);
out:
	names_free(&l);
	free(path);
}

/* RENAME INBOX: its messages move to the new folder, INBOX stays. */
static void
rename_inbox(struct imap_session *s, const char *to)
{
	static const char *const subs[] = { "cur", "new" };
	const char *err;
	char *dst = imap_mailbox_path(s, to);
	bool failed = false;

	if (dst == NULL)
		return;
	if (is_dir(dst)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
		free(dst);
		return;
	}
	if (maildir_make_folder(s->maildir, to, &err) < 0) {
		log_error("%lu: %s", s->sid, err);
		imap_no(s, "[SERVERBUG] Cannot create the mailbox");
		free(dst);
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		char *from = xasprintf("%s/%s", s->maildir, subs[i]);
		DIR *d = opendir(from);
		struct dirent *de;

		while (d != NULL && (de = readdir(d)) != NULL) {
			char *a, *b;

			if (de->d_name[0] == '.')
				continue;
			a = xasprintf("%s/%s", from, de->d_name);
			b = xasprintf("%s/%s/%s", dst, subs[i], de->d_name);
			if (rename(a, b) < 0 && errno != ENOENT) {
				log_error_errno("%lu: rename %s", s->sid, a);
				failed = true;
			}
			free(a);
			free(b);
		}
		if (d != NULL)
			closedir(d);
		free(from);
	}
	if (failed)
		imap_no(s, "[SERVERBUG] Some messages could not be moved");
	else
		imap_ok(s, "Rename completed.");
	free(dst);
}

void
imap_cmd_rename(struct imap_session *s, struct imap_cmd *c)
{
	const char *from, *to;
	char *src = NULL, *dst = NULL;
	struct names l = { 0 };
	size_t flen;

	if (c->nargs != 2 || (from = imap_arg_astring(&c->args[0])) == NULL ||
	    (to = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "RENAME needs two mailbox names");
		return;
	}
	if (imap_is_inbox(to)) {
		imap_no(s, "[ALREADYEXISTS] INBOX always exists");
		return;
	}
	if (imap_is_inbox(from)) {
		rename_inbox(s, to);
		return;
	}
	if ((src = imap_mailbox_path(s, from)) == NULL ||
	    (dst = imap_mailbox_path(s, to)) == NULL)
		goto out;
	if (!is_dir(src)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		goto out;
	}
	if (is_dir(dst)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
		goto out;
	}
	list_folders(s->maildir, &l);	/* the children, before the move */
	if (rename(src, dst) < 0) {
		log_error_errno("%lu: rename %s", s->sid, src);
		imap_no(s, "[SERVERBUG] Cannot rename the mailbox");
		goto out;
	}
	flen = strlen(from);
	for (size_t i = 0; i < l.n; i++) {
		char *a, *b;

		if (strncmp(l.v[i], from, flen) != 0 || l.v[i][flen] != '.')
			continue;
		a = xasprintf("%s/.%s", s->maildir, l.v[i]);
		b = xasprintf("%s/.%s%s", s->maildir, to, l.v[i] + flen);
		if (rename(a, b) < 0)
			log_error_errno("%lu: rename %s", s->sid, a);
		free(a);
		free(b);
	}
	if (s->mb != NULL && strcmp(s->mb->path, src) == 0) {
		imap_close_mailbox(s);
		s->state = S_AUTH;
	}
	imap_ok(s, "Rename completed.");
out:
	names_free(&l);
	free(src);
	free(dst);
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ---- */

static void
subscription(struct imap_session *s, struct imap_cmd *c, bool add)
{
	const char *name;
	struct names l = { 0 };
	char *path;

	if (c->nargs != 1 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "A mailbox name is needed");
		return;
	}
	if (imap_is_inbox(name))
		name = "INBOX";
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	free(path);
	read_subscriptions(s, &l);
	if (add) {
		if (!names_has(&l, name))
			names_add(&l, name);
	} else {
		size_t j = 0;

		for (size_t i = 0; i < l.n; i++) {
			if (strcmp(l.v[i], name) == 0)
				free(l.v[i]);
			else
				l.v[j++] = l.v[i];
		}
		l.n = j;
	}
	qsort(l.v, l.n, sizeof(*l.v), cmp_str);
	if (write_subscriptions(s, &l) < 0)
		imap_no(s, "[SERVERBUG] Cannot save subscriptions");
	else if (add)
		imap_ok(s, "Subscribe completed.");
	else
		imap_ok(s, "Unsubscribe completed.");
	names_free(&l);
}

void
imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *c)
{
	subscription(s, c, true);
}

void
imap_cmd_unsubscribe(struct imap_session *s, struct imap_cmd *c)
{
	subscription(s, c, false);
}

/* ---- LIST, LSUB ---- */

/* INBOX matches any case of itself: canonicalise the pattern. */
static char *
canonical_pattern(const char *ref, const char *pat)
{
	char *p;

	if (pat[0] == '.' && ref[0] == '\0')
		pat++;
	p = xasprintf("%s%s", ref, pat);
	if (strncasecmp(p, "INBOX", 5) == 0 && (p[5] == '\0' || p[5] == '.'))
		memcpy(p, "INBOX", 5);
	return p;
}

static void
list_line(struct imap_session *s, const char *cmd, const char *name,
    const char *attrs)
{
	str_t line = STR_INIT;

	str_printf(&line, "%s (%s) \".\" ", cmd, attrs);
	imap_append_astring(&line, name, strlen(name));
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
}

enum { SEL_SUBSCRIBED = 1, SEL_SPECIAL = 2 };

static void
do_list(struct imap_session *s, struct imap_cmd *c, bool lsub)
{
	const struct imap_arg *a = c->args;
	size_t n = c->nargs;
	const char *ref, *pat;
	char *pattern;
	struct names all = { 0 }, subs = { 0 }, shown = { 0 };
	unsigned sel = 0;

	if (!lsub && n >= 1 && a[0].type == IMAP_ARG_LIST) {
		/* RFC 5258 selection options, as far as we have them */
		for (size_t i = 0; i < a[0].nlist; i++) {
			const char *o = imap_arg_astring(&a[0].list[i]);

			if (o != NULL && strcasecmp(o, "SUBSCRIBED") == 0)
				sel |= SEL_SUBSCRIBED;
			else if (o != NULL && strcasecmp(o, "SPECIAL-USE") == 0)
				sel |= SEL_SPECIAL;
		}
		a++;
		n--;
	}
	if (!lsub && n == 4 && a[2].type == IMAP_ARG_ATOM &&
	    strcasecmp(a[2].str, "RETURN") == 0)
		n = 2;		/* RETURN options: the attributes are there */
	if (n != 2 || (ref = imap_arg_astring(&a[0])) == NULL ||
	    (pat = imap_arg_astring(&a[1])) == NULL) {
		imap_bad(s, "%s needs a reference and a pattern",
		    lsub ? "LSUB" : "LIST");
		return;
	}
	if (pat[0] == '\0' && !lsub) {
		/* the hierarchy delimiter and root (RFC 3501 6.3.8) */
		imap_untagged(s, "LIST (\\Noselect) \".\" \"\"");
		imap_ok(s, "List completed.");
		return;
	}
	pattern = canonical_pattern(ref, pat);
	if (list_folders(s->maildir, &all) < 0) {
		imap_no(s, "[SERVERBUG] Cannot list mailboxes");
		free(pattern);
		return;
	}
	if (lsub || (sel & SEL_SUBSCRIBED))
		read_subscriptions(s, &subs);

	/* INBOX first, then the folders, then parents that exist only as
	 * a level of deeper names (\Noselect, as '%' must show them). */
	{
		struct names cand = { 0 };

		names_add(&cand, "INBOX");
		for (size_t i = 0; i < all.n; i++)
			names_add(&cand, all.v[i]);
		if (lsub) {
			for (size_t i = 0; i < subs.n; i++)
				if (!names_has(&all, subs.v[i]) &&
				    strcmp(subs.v[i], "INBOX") != 0)
					names_add(&cand, subs.v[i]);
		}
		for (size_t i = 0; i < cand.n; i++) {
			const char *name = cand.v[i];
			bool exists = strcmp(name, "INBOX") == 0 ||
			    names_has(&all, name);
			bool subscribed = subs.n > 0 && names_has(&subs, name);
			const char *sp = special_attr(name);
			str_t attrs = STR_INIT;

			if (!imap_list_match(pattern, name, '.'))
				continue;
			if ((lsub || (sel & SEL_SUBSCRIBED)) && !subscribed)
				continue;
			if ((sel & SEL_SPECIAL) && sp == NULL)
				continue;
			if (!exists)
				str_append(&attrs, "\\NonExistent \\Noselect");
			else
				str_append(&attrs, has_children(&all, name) ?
				    "\\HasChildren" : "\\HasNoChildren");
			if (sp != NULL && !lsub) {
				str_append_c(&attrs, ' ');
				str_append(&attrs, sp);
			}
			if (sel & SEL_SUBSCRIBED)
				str_append(&attrs, " \\Subscribed");
			list_line(s, lsub ? "LSUB" : "LIST", name,
			    str_c(&attrs));
			names_add(&shown, name);
			str_free(&attrs);
		}
		/* parents of deeper names that match where the name
		 * itself does not exist (LSUB: is not subscribed), as '%'
		 * must show them (RFC 3501 6.3.8, 6.3.9) */
		{
			const struct names *src = lsub ? &subs : &all;

			for (size_t i = 0; i < src->n; i++) {
				char *p = xstrdup(src->v[i]);
				char *dot;

				while ((dot = strrchr(p, '.')) != NULL) {
					*dot = '\0';
					if (names_has(src, p) ||
					    !imap_list_match(pattern, p, '.'))
						continue;
					qsort(shown.v, shown.n,
					    sizeof(*shown.v), cmp_str);
					if (names_has(&shown, p))
						continue;
					list_line(s, lsub ? "LSUB" : "LIST", p,
					    lsub ? "\\Noselect" :
					    "\\Noselect \\HasChildren");
					names_add(&shown, p);
				}
				free(p);
			}
		}
		names_free(&cand);
	}
	imap_ok(s, "%s completed.", lsub ? "Lsub" : "List");
	names_free(&all);
	names_free(&subs);
	names_free(&shown);
	free(pattern);
}

void
imap_cmd_list(struct imap_session *s, struct imap_cmd *c)
{
	do_list(s, c, false);
}

void
imap_cmd_lsub(struct imap_session *s, struct imap_cmd *c)
{
	do_list(s, c, true);
}

/* ---- STATUS ---- */

void
imap_cmd_status(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	char *path;
	uint32_t uidvalidity, uidnext, messages, unseen, recent;
	str_t line = STR_INIT;

	if (c->nargs != 2 || (name = imap_arg_astring(&c->args[0])) == NULL ||
	    c->args[1].type != IMAP_ARG_LIST || c->args[1].nlist == 0) {
		imap_bad(s, "STATUS needs a mailbox and a list of items");
		return;
	}
	for (size_t i = 0; i < c->args[1].nlist; i++) {
		const struct imap_arg *it = &c->args[1].list[i];

		if (it->type != IMAP_ARG_ATOM ||
		    (strcasecmp(it->str, "MESSAGES") != 0 &&
		    strcasecmp(it->str, "RECENT") != 0 &&
		    strcasecmp(it->str, "UIDNEXT") != 0 &&
		    strcasecmp(it->str, "UIDVALIDITY") != 0 &&
		    strcasecmp(it->str, "UNSEEN") != 0)) {
			imap_bad(s, "Unknown STATUS item");
			return;
		}
	}
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (!is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return;
	}
	if (mbox_status(path, &uidvalidity, &uidnext, &messages, &unseen,
	    &recent, &err) < 0) {
		log_error("%lu: status %s: %s", s->sid, path, err);
		imap_no(s, "[SERVERBUG] Cannot read the mailbox");
		free(path);
		return;
	}
	free(path);
	str_append(&line, "STATUS ");
	imap_append_astring(&line, imap_is_inbox(name) ? "INBOX" : name,
	    strlen(imap_is_inbox(name) ? "INBOX" : name));
	str_append(&line, " (");
	for (size_t i = 0; i < c->args[1].nlist; i++) {
		const char *it = c->args[1].list[i].str;
		uint32_t v;

		if (strcasecmp(it, "MESSAGES") == 0)
			v = messages;
		else if (strcasecmp(it, "RECENT") == 0)
			v = recent;
		else if (strcasecmp(it, "UIDNEXT") == 0)
			v = uidnext;
		else if (strcasecmp(it, "UIDVALIDITY") == 0)
			v = uidvalidity;
		else
			v = unseen;
		str_printf(&line, "%s%s %u", i > 0 ? " " : "",
		    c->args[1].list[i].str, v);
	}
	str_append_c(&line, ')');
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
	imap_ok(s, "Status completed.");
}

/* ---- QUOTA (RFC 2087) ---- */

static void
quota_line(struct imap_session *s)
{
	struct maildir_quota q;
	const char *err;

	if (s->quota == 0) {
		imap_untagged(s, "QUOTA \"\" ()");
		return;
	}
	/* Recalculate when missing or stale, as delivery does. */
	if (maildir_quota_check(s->maildir, s->quota, 0, &err) < 0 ||
	    maildir_quota_read(s->maildir, &q, &err) <= 0) {
		log_warn("%lu: quota of %s: %s", s->sid, s->login, err);
		q.bytes = 0;
	}
	imap_untagged(s, "QUOTA \"\" (STORAGE %llu %llu)",
	    (unsigned long long)(q.bytes > 0 ? (uint64_t)q.bytes / 1024 : 0),
	    (unsigned long long)(s->quota / 1024));
}

void
imap_cmd_getquotaroot(struct imap_session *s, struct imap_cmd *c)
{
	const char *name;
	char *path;
	str_t line = STR_INIT;

	if (c->nargs != 1 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "GETQUOTAROOT needs a mailbox name");
		return;
	}
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (!is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return;
	}
	free(path);
	str_append(&line, "QUOTAROOT ");
	imap_append_astring(&line, imap_is_inbox(name) ? "INBOX" : name,
	    strlen(imap_is_inbox(name) ? "INBOX" : name));
	str_append(&line, " \"\"");
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
	quota_line(s);
	imap_ok(s, "Getquotaroot completed.");
}

void
imap_cmd_getquota(struct imap_session *s, struct imap_cmd *c)
{
	const char *root;

	if (c->nargs != 1 || (root = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "GETQUOTA needs a quota root");
		return;
	}
	if (root[0] != '\0') {
		imap_no(s, "[NONEXISTENT] No such quota root");
		return;
	}
	quota_line(s);
	imap_ok(s, "Getquota completed.");
}

void
imap_cmd_setquota(struct imap_session *s, struct imap_cmd *c)
{
	imap_no(s, "[NOPERM] Quotas are set in the directory");
}
