/*
 * folders.c: mailbox names and folders, shared by the IMAP command files
 * (cmd_*.c) and the login: the one mapping between the names a client
 * uses and the folders on disk, name validity, the folder list, the
 * special-use folders (RFC 6154), subscriptions, the maildir prepared at
 * the first login.
 *
 * Folders: "INBOX" is the maildir itself, any other folder a Maildir++
 * folder named without its leading dot ("Sent" is ".Sent", levels
 * separated by '.': "Archive.2024"); names are stored in modified UTF-7
 * as Courier and Dovecot store them, so a maildir moves between the
 * three unchanged.
 *
 * Mailbox names (what the client says and sees), by
 * imap_namespace_prefix (RFC 2342 NAMESPACE, separator '.'):
 *  "INBOX." (Courier-IMAP's view): INBOX is the maildir and INBOX.<f>
 *    (INBOX in any case) the folder f; every other name lies outside the
 *    namespace and names nothing: NO [NONEXISTENT], and NO [CANNOT] for
 *    a new name (CREATE, RENAME's target). A folder ".INBOX.x" left by a
 *    server with a "" namespace shows as INBOX.INBOX.x, as Courier shows
 *    it.
 *  "" (the default; Dovecot's usual view): the name of folder f is f.
 *    INBOX.<x> is the folder "INBOX.x" (a child of INBOX, as Dovecot
 *    keeps it) when that folder exists; when it does not and folder x
 *    does, it is x. So a client set up under Courier that still says
 *    INBOX.Sent finds ".Sent", and its CREATE INBOX.Sent answers
 *    [ALREADYEXISTS] instead of making a second ".INBOX.Sent" beside
 *    ".Sent". A name that is neither takes the form its nearest
 *    existing parent level has (INBOX.Work.New beside ".Work" makes
 *    ".Work.New"), and is "INBOX.x" when no level exists. LIST shows
 *    every folder under its one name.
 *
 * Special use (RFC 6154): the folders made at the first login have the
 * attribute of their name (Sent is \Sent ...); a folder made by CREATE
 * with USE has a file "petrel-special-use" in its directory (beside
 * cur/, new/ and tmp/) holding its attributes on one line, which then
 * wins over the name. It moves with RENAME and goes with DELETE.
 *
 * Subscriptions: lib/maildir/subscriptions.c keeps Dovecot's and
 * Courier's files, in the formats the maildir has; here they hold
 * folders, and LSUB shows them by their mailbox names.
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
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/maildir/subscriptions.h"

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

bool
imap_is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

/* Validity of a folder name, INBOX aside. */
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

/* ---- UTF-8 mailbox names (IMAP4rev2, RFC 9051 5.1) ---- */

/* Argument i a mailbox name (made modified UTF-7), or with pattern a
 * LIST/LSUB reference or pattern(s) (left UTF-8: cmd_list.c matches
 * them against the names' UTF-8 form), checked. */
static bool
name_ok(struct imap_cmd *c, struct imap_arg *a, bool pattern)
{
	if (imap_arg_astring(a) == NULL)
		return true;	/* the command says what is wrong */
	if (pattern)
		return str_utf8_valid(a->str, a->len);
	return imap_arg_to_mutf7(c, a) == 0;
}

static int
name_arg(struct imap_session *s, struct imap_cmd *c, size_t i, bool pattern)
{
	struct imap_arg *a;

	if (i >= c->nargs)
		return 0;	/* the command reports what is missing */
	a = &c->args[i];
	if (a->type == IMAP_ARG_LIST) {
		for (size_t k = 0; k < a->nlist; k++)
			if (a->list[k].type != IMAP_ARG_LIST &&
			    !name_ok(c, &a->list[k], pattern))
				goto bad;
		return 0;
	}
	if (name_ok(c, a, pattern))
		return 0;
bad:
	imap_bad(s, "Mailbox name is not valid UTF-8");
	return -1;
}

int
imap_names_from_client(struct imap_session *s, struct imap_cmd *c)
{
	static const struct {
		const char *cmd;
		signed char arg[2];	/* positions; -1 none */
	} pos[] = {
		{ "SELECT", { 0, -1 } }, { "EXAMINE", { 0, -1 } },
		{ "CREATE", { 0, -1 } }, { "DELETE", { 0, -1 } },
		{ "RENAME", { 0, 1 } }, { "SUBSCRIBE", { 0, -1 } },
		{ "UNSUBSCRIBE", { 0, -1 } }, { "STATUS", { 0, -1 } },
		{ "APPEND", { 0, -1 } }, { "GETQUOTAROOT", { 0, -1 } },
		{ "COPY", { 1, -1 } }, { "MOVE", { 1, -1 } },
		{ "SETMETADATA", { 0, -1 } },
	};

	if (!s->rev2)
		return 0;
	if (strcmp(c->name, "LIST") == 0) {
		/* LIST [(selection)] reference (pattern / (patterns)) ... */
		size_t i = c->nargs > 0 && c->args[0].type == IMAP_ARG_LIST;

		return name_arg(s, c, i, true) < 0 ||
		    name_arg(s, c, i + 1, true) < 0 ? -1 : 0;
	}
	if (strcmp(c->name, "GETMETADATA") == 0)
		/* GETMETADATA [(options)] mailbox ... (cmd_metadata.c) */
		return name_arg(s, c, c->nargs > 0 &&
		    c->args[0].type == IMAP_ARG_LIST, false);
	if (strcmp(c->name, "LSUB") == 0)
		return name_arg(s, c, 0, true) < 0 ||
		    name_arg(s, c, 1, true) < 0 ? -1 : 0;
	for (size_t k = 0; k < sizeof(pos) / sizeof(pos[0]); k++) {
		if (strcmp(c->name, pos[k].cmd) != 0)
			continue;
		for (size_t j = 0; j < 2 && pos[k].arg[j] >= 0; j++)
			if (name_arg(s, c, (size_t)pos[k].arg[j], false) < 0)
				return -1;
		return 0;
	}
	return 0;
}

void
imap_append_mailbox(const struct imap_session *s, str_t *out,
    const char *name)
{
	str_t u = STR_INIT;

	if (s->rev2 && imap_mutf7_to_utf8(name, strlen(name), &u) == 0 &&
	    u.len > 0)
		imap_append_astring_utf8(out, u.data, u.len);
	else
		imap_append_astring(out, name, strlen(name));
	str_free(&u);
}

/* ---- mailbox names and folders: the mapping (see the top) ---- */

/* What follows "INBOX." (any case) in name, or NULL. */
static const char *
inbox_child(const char *name)
{
	if (strncasecmp(name, "INBOX.", 6) != 0 || name[6] == '\0')
		return NULL;
	return name + 6;
}

static bool
folder_exists(const struct imap_session *s, const char *folder)
{
	char *path;
	bool there;

	if (!imap_name_valid(folder))
		return false;
	path = maildir_folder_path(s->maildir, folder);
	there = path != NULL && imap_is_dir(path);
	free(path);
	return there;
}

/* With the "" prefix, the folder of INBOX.<rest>: "INBOX.<rest>" if it
 * exists, else <rest> if that exists (Courier's name for it); for a name
 * that is neither, the form in which its nearest parent level exists
 * (INBOX.Work.New beside ".Work" is ".Work.New"), else "INBOX.<rest>".
 * At most two lstat()s per level. */
static char *
inbox_child_folder(const struct imap_session *s, const char *rest)
{
	char *level = xstrdup(rest), *dot, *mine;
	bool theirs = false;

	for (;;) {
		mine = xasprintf("INBOX.%s", level);
		if (folder_exists(s, mine))
			break;
		if (folder_exists(s, level)) {
			theirs = true;
			break;
		}
		free(mine);
		mine = NULL;
		if ((dot = strrchr(level, '.')) == NULL)
			break;
		*dot = '\0';
	}
	free(mine);
	free(level);
	return theirs ? xstrdup(rest) : xasprintf("INBOX.%s", rest);
}

char *
imap_folder_of(struct imap_session *s, const char *name, bool create)
{
	const char *rest = inbox_child(name);
	char *folder;

	if (imap_is_inbox(name))
		return xstrdup("INBOX");
	if (s->srv->ns_prefix[0] != '\0') {
		/* "INBOX.": nothing outside it */
		if (rest == NULL) {
			if (create)
				imap_no(s, "[CANNOT] Mailbox names begin "
				    "with %s", s->srv->ns_prefix);
			else
				imap_no(s, "[NONEXISTENT] No such mailbox "
				    "(names begin with %s)",
				    s->srv->ns_prefix);
			return NULL;
		}
		folder = xstrdup(rest);
	} else if (rest != NULL) {
		folder = inbox_child_folder(s, rest);
	} else {
		folder = xstrdup(name);
	}
	if (!imap_name_valid(folder)) {
		imap_no(s, "[CANNOT] Invalid mailbox name");
		free(folder);
		return NULL;
	}
	return folder;
}

char *
imap_mailbox_locate(struct imap_session *s, const char *name, bool create,
    char **folder_r)
{
	char *folder = imap_folder_of(s, name, create);
	char *path;

	if (folder_r != NULL)
		*folder_r = NULL;
	if (folder == NULL)
		return NULL;
	path = maildir_folder_path(s->maildir, folder);
	if (path == NULL) {
		imap_no(s, "[CANNOT] Invalid mailbox name");
		free(folder);
		return NULL;
	}
	if (folder_r != NULL)
		*folder_r = folder;
	else
		free(folder);
	return path;
}

char *
imap_mailbox_path(struct imap_session *s, const char *name)
{
	return imap_mailbox_locate(s, name, false, NULL);
}

char *
imap_mailbox_name(const struct imap_session *s, const char *folder)
{
	if (strcmp(folder, "INBOX") == 0)
		return xstrdup("INBOX");
	return xasprintf("%s%s", s->srv->ns_prefix, folder);
}

const char *
imap_folder_listed(const struct imap_session *s, const char *name)
{
	size_t plen = strlen(s->srv->ns_prefix);

	if (strcmp(name, "INBOX") == 0)
		return name;
	if (strncmp(name, s->srv->ns_prefix, plen) != 0)
		return NULL;
	return name + plen;
}

void
imap_names_to_client(const struct imap_session *s, struct imap_names *l)
{
	for (size_t i = 0; i < l->n; i++) {
		char *n = imap_mailbox_name(s, l->v[i]);

		free(l->v[i]);
		l->v[i] = n;
	}
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), imap_names_cmp);
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
	return l->n > 0 &&
	    bsearch(&name, l->v, l->n, sizeof(*l->v), imap_names_cmp) !=
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
	if (out->n > 1)
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

/* ---- special use given by CREATE (RFC 6154 3) ---- */

/* The attributes a client may give a folder: RFC 6154 2 less \All and
 * \Flagged, which name virtual mailboxes petrel does not have. */
static const char *const use_attrs[] = {
	"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash",
};
#define NUSE_ATTRS (sizeof(use_attrs) / sizeof(use_attrs[0]))

const char *
imap_use_attr(const char *attr)
{
	for (size_t i = 0; i < NUSE_ATTRS; i++)
		if (strcasecmp(attr, use_attrs[i]) == 0)
			return use_attrs[i];
	return NULL;
}

/* The attributes of a petrel-special-use file's text, each once, in
 * the order of use_attrs ("" when none is valid). */
static char *
parse_use_attrs(const char *text)
{
	bool have[NUSE_ATTRS] = { false };
	const char *p = text;
	str_t out = STR_INIT;
	char *r;

	while (*p != '\0') {
		size_t len = strcspn(p, " \t\r\n");

		for (size_t i = 0; i < NUSE_ATTRS; i++)
			if (len == strlen(use_attrs[i]) &&
			    strncasecmp(p, use_attrs[i], len) == 0)
				have[i] = true;
		p += len;
		p += strspn(p, " \t\r\n");
	}
	for (size_t i = 0; i < NUSE_ATTRS; i++) {
		if (!have[i])
			continue;
		if (out.len > 0)
			str_append_c(&out, ' ');
		str_append(&out, use_attrs[i]);
	}
	r = xstrdup(str_c(&out));
	str_free(&out);
	return r;
}

char *
imap_folder_special(const struct imap_session *s, const char *folder)
{
	char *dir, *path, buf[IMAP_SPECIAL_USE_MAX + 1], *attrs;
	ssize_t n;
	int fd;

	if (strcmp(folder, "INBOX") == 0 ||
	    (dir = maildir_folder_path(s->maildir, folder)) == NULL)
		return NULL;
	path = xasprintf("%s/%s", dir, IMAP_SPECIAL_USE_FILE);
	free(dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn_errno("%016llx: open %s", SID(&s->base),
			    path);
		free(path);
		/* none given: the attribute of the folder's name */
		return imap_special_attr(folder) != NULL ?
		    xstrdup(imap_special_attr(folder)) : NULL;
	}
	free(path);
	do
		n = read(fd, buf, IMAP_SPECIAL_USE_MAX);
	while (n < 0 && errno == EINTR);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	attrs = parse_use_attrs(buf);
	if (attrs[0] == '\0') {
		free(attrs);
		return NULL;
	}
	return attrs;
}

int
imap_folder_set_special(const struct imap_session *s, const char *folder,
    const char *attrs, const char **error_r)
{
	char *dir, *path, *tmp;
	int fd, e, ret = -1;
	str_t text = STR_INIT;

	if ((dir = maildir_folder_path(s->maildir, folder)) == NULL)
		return err_fail(error_r, ERR_OTHER, "invalid folder name");
	path = xasprintf("%s/%s", dir, IMAP_SPECIAL_USE_FILE);
	tmp = xasprintf("%s.tmp", path);
	str_printf(&text, "%s\n", attrs);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		err_fail(error_r, errno, "open(%s) failed: %s", tmp,
		    strerror(errno));
		goto out;
	}
	if (write_full(fd, text.data, text.len) < 0 || fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		err_fail(error_r, e, "write(%s) failed: %s", tmp, strerror(e));
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		err_fail(error_r, e, "rename(%s) failed: %s", tmp,
		    strerror(e));
		goto out;
	}
	ret = fsync_dir(dir, error_r);
out:
	str_free(&text);
	free(tmp);
	free(path);
	free(dir);
	return ret;
}

/* ---- subscriptions ---- */

static void
add_name(void *ctx, const char *folder)
{
	imap_names_add(ctx, folder);
}

int
imap_read_subscriptions(const struct imap_session *s, struct imap_names *out)
{
	const char *err;
	size_t j = 0;

	if (maildir_subs_read(s->maildir, add_name, out, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		return -1;
	}
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), imap_names_cmp);
	for (size_t i = 0; i < out->n; i++) {	/* once each */
		if (j > 0 && strcmp(out->v[i], out->v[j - 1]) == 0)
			free(out->v[i]);
		else
			out->v[j++] = out->v[i];
	}
	out->n = j;
	return 0;
}

int
imap_set_subscription(const struct imap_session *s, const char *folder,
    bool on)
{
	const char *err;

	if (maildir_subs_set(s->maildir, &folder, 1, on, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		return -1;
	}
	return 0;
}

/* Did Dovecot or Courier-IMAP keep UIDs in this maildir's INBOX? Then
 * it was used before, even without a subscription file (Dovecot makes
 * none until the first SUBSCRIBE). */
static bool
legacy_used(const char *maildir)
{
	static const char *const names[] = {
		"dovecot-uidlist", "courierimapuiddb"
	};
	bool used = false;

	for (size_t i = 0; !used && i < 2; i++) {
		char *path = xasprintf("%s/%s", maildir, names[i]);

		used = access(path, F_OK) == 0;
		free(path);
	}
	return used;
}

int
imap_prepare_maildir(struct imap_session *s)
{
	const char *err, *subs[1 + NSPECIAL];

	if (maildir_make(s->maildir, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		return -1;
	}
	/* A maildir with a subscription file of either kind, or the UID
	 * list of Dovecot or Courier, was used before (by petrel, Dovecot
	 * or Courier): left as it is. */
	if (maildir_subs_exist(s->maildir) || legacy_used(s->maildir))
		return 0;
	/* First login: the special-use folders, subscribed with INBOX. */
	subs[0] = "INBOX";
	for (size_t i = 0; i < NSPECIAL; i++) {
		if (maildir_make_folder(s->maildir, special[i].name,
		    &err) < 0) {
			log_error("%016llx: %s", SID(&s->base), err);
			return -1;
		}
		subs[1 + i] = special[i].name;
	}
	if (maildir_subs_set(s->maildir, subs, 1 + NSPECIAL, true, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		return -1;
	}
	return 0;
}
