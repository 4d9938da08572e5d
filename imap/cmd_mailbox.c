/*
 * cmd_mailbox.c: CREATE (with USE, RFC 6154 3), DELETE, RENAME and
 * STATUS (RFC 3501 6.3, with SIZE from RFC 8438 and APPENDLIMIT from RFC
 * 7889). They run on job threads.
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

/* ---- CREATE, DELETE, RENAME ---- */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* CREATE's parameters (RFC 4466 2.2): USE (RFC 6154 3), the one known.
 * The attributes go into uses, space-separated; 0 none, 1 some, -1 with
 * a BAD or NO set. */
static int
create_params(struct imap_session *s, const struct imap_arg *params,
    str_t *uses)
{
	const struct imap_arg *p = params->list;
	size_t n = params->nlist, nseen = 0;
	bool have_use = false;
	const char *seen[8];	/* each attribute once: there are five */

	if (n == 0) {
		imap_bad(s, "Empty CREATE parameters");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *v;

		if (p[i].type != IMAP_ARG_ATOM ||
		    strcasecmp(p[i].str, "USE") != 0 || have_use ||
		    i + 1 == n || p[i + 1].type != IMAP_ARG_LIST ||
		    p[i + 1].nlist == 0) {
			imap_bad(s, "Unknown or invalid CREATE parameter");
			return -1;
		}
		have_use = true;
		v = &p[++i];
		for (size_t k = 0; k < v->nlist; k++) {
			const char *attr;

			if (v->list[k].type != IMAP_ARG_ATOM ||
			    v->list[k].str[0] != '\\') {
				imap_bad(s, "Invalid special-use attribute");
				return -1;
			}
			/* RFC 6154 3: NO [USEATTR] for one we cannot give */
			if ((attr = imap_use_attr(v->list[k].str)) == NULL) {
				imap_no(s, "[USEATTR] Unsupported special-use "
				    "attribute");
				return -1;
			}
			for (size_t j = 0; j < nseen && attr != NULL; j++)
				if (seen[j] == attr)
					attr = NULL;
			if (attr == NULL || nseen == sizeof(seen) /
			    sizeof(seen[0]))
				continue;
			seen[nseen++] = attr;
			if (uses->len > 0)
				str_append_c(uses, ' ');
			str_append(uses, attr);
		}
	}
	return 1;
}

void
imap_cmd_create(struct imap_session *s, struct imap_cmd *c)
{
	const char *arg, *err;
	char *name, *path, *folder;
	size_t len;
	str_t uses = STR_INIT;
	int use = 0;

	if (c->nargs < 1 || c->nargs > 2 ||
	    (arg = imap_arg_astring(&c->args[0])) == NULL ||
	    (c->nargs == 2 && c->args[1].type != IMAP_ARG_LIST)) {
		imap_bad(s, "CREATE needs a mailbox name");
		return;
	}
	if (c->nargs == 2 && (use = create_params(s, &c->args[1], &uses)) < 0) {
		str_free(&uses);
		return;
	}
	name = xstrdup(arg);
	len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		name[len - 1] = '\0';	/* "foo." announces children */
	if (imap_is_inbox(name)) {
		imap_no(s, "[ALREADYEXISTS] INBOX always exists");
		free(name);
		str_free(&uses);
		return;
	}
	if ((path = imap_mailbox_locate(s, name, true, &folder)) == NULL) {
		free(name);
		str_free(&uses);
		return;
	}
	if (imap_is_dir(path)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
	} else if (maildir_make_folder(s->maildir, folder, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		imap_no(s, "[SERVERBUG] Cannot create the mailbox");
	} else if (use > 0 &&
	    imap_folder_set_special(s, folder, str_c(&uses), &err) < 0) {
		/* RFC 6154 3: not created when its use cannot be kept */
		log_error("%016llx: %s: %s", SID(&s->base), path, err);
		if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
			log_warn_errno("%016llx: removing %s", SID(&s->base),
			    path);
		imap_no(s, "[SERVERBUG] Cannot keep the special use");
	} else {
		char id[MBOX_OBJECTID_MAX + 1];

		/* RFC 8474 4.1: the new folder's id in the OK */
		if (mbox_mailboxid(path, id, &err) == 0) {
			imap_ok(s, "[MAILBOXID (%s)] Create completed.", id);
		} else {
			log_warn("%016llx: %s", SID(&s->base), err);
			imap_ok(s, "Create completed.");
		}
	}
	str_free(&uses);
	free(folder);
	free(path);
	free(name);
}

void
imap_cmd_delete(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	char *path, *gone, *folder;
	char id[MBOX_OBJECTID_MAX + 1];
	struct imap_names l = { 0 };

	if (c->nargs != 1 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "DELETE needs a mailbox name");
		return;
	}
	if (imap_is_inbox(name)) {
		imap_no(s, "[CANNOT] INBOX cannot be deleted");
		return;
	}
	if ((path = imap_mailbox_locate(s, name, false, &folder)) == NULL)
		return;
	if (!imap_is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(folder);
		free(path);
		return;
	}
	imap_list_folders(s->maildir, &l);
	if (imap_has_children(&l, folder)) {
		imap_no(s, "[INUSE] Mailbox has children, delete them first");
		goto out;
	}
	if (s->mb != NULL && strcmp(s->mb->path, path) == 0) {
		imap_close_mailbox(s);
		s->state = S_AUTH;
	}
	/* its annotations (METADATA) go with it, found by its id */
	if (mbox_mailboxid(path, id, &err) < 0) {
		log_warn("%016llx: %s", SID(&s->base), err);
		id[0] = '\0';
	}
	/* Out of sight first (a name LIST never shows), then removed. */
	{
		char *u = maildir_unique_name();

		gone = xasprintf("%s/..deleted-%s", s->maildir, u);
		free(u);
	}
	if (rename(path, gone) < 0) {
		log_error_errno("%016llx: rename %s", SID(&s->base), path);
		imap_no(s, "[SERVERBUG] Cannot delete the mailbox");
	} else {
		if (nftw(gone, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
			log_warn_errno("%016llx: removing %s", SID(&s->base), gone);
		if (id[0] != '\0')
			imap_metadata_forget(s, id);
		imap_ok(s, "Delete completed.");
	}
	free(gone);
out:
	imap_names_free(&l);
	free(folder);
	free(path);
}

/* RENAME INBOX: its messages move to the new folder, INBOX stays. */
static void
rename_inbox(struct imap_session *s, const char *to)
{
	static const char *const subs[] = { "cur", "new" };
	const char *err;
	char *folder;
	char *dst = imap_mailbox_locate(s, to, true, &folder);
	bool failed = false;

	if (dst == NULL)
		return;
	if (imap_is_dir(dst)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
		free(folder);
		free(dst);
		return;
	}
	if (maildir_make_folder(s->maildir, folder, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		imap_no(s, "[SERVERBUG] Cannot create the mailbox");
		free(folder);
		free(dst);
		return;
	}
	free(folder);
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
				log_error_errno("%016llx: rename %s", SID(&s->base), a);
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
	/* RFC 5464 4.1: INBOX's annotations are copied to the new folder */
	{
		char from[MBOX_OBJECTID_MAX + 1], to_id[MBOX_OBJECTID_MAX + 1];

		if (mbox_mailboxid(s->maildir, from, &err) == 0 &&
		    mbox_mailboxid(dst, to_id, &err) == 0)
			imap_metadata_copy(s, from, to_id);
		else
			log_warn("%016llx: %s", SID(&s->base), err);
	}
	free(dst);
}

void
imap_cmd_rename(struct imap_session *s, struct imap_cmd *c)
{
	const char *from, *to;
	char *src = NULL, *dst = NULL, *ffrom = NULL, *fto = NULL;
	struct imap_names l = { 0 };
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
	if ((src = imap_mailbox_locate(s, from, false, &ffrom)) == NULL ||
	    (dst = imap_mailbox_locate(s, to, true, &fto)) == NULL)
		goto out;
	if (!imap_is_dir(src)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		goto out;
	}
	if (imap_is_dir(dst)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
		goto out;
	}
	/* the children, before the move */
	imap_list_folders(s->maildir, &l);
	if (rename(src, dst) < 0) {
		log_error_errno("%016llx: rename %s", SID(&s->base), src);
		imap_no(s, "[SERVERBUG] Cannot rename the mailbox");
		goto out;
	}
	flen = strlen(ffrom);
	for (size_t i = 0; i < l.n; i++) {
		char *a, *b;

		if (strncmp(l.v[i], ffrom, flen) != 0 || l.v[i][flen] != '.')
			continue;
		a = xasprintf("%s/.%s", s->maildir, l.v[i]);
		b = xasprintf("%s/.%s%s", s->maildir, fto, l.v[i] + flen);
		if (rename(a, b) < 0)
			log_error_errno("%016llx: rename %s", SID(&s->base), a);
		free(a);
		free(b);
	}
	if (s->mb != NULL && strcmp(s->mb->path, src) == 0) {
		imap_close_mailbox(s);
		s->state = S_AUTH;
	}
	imap_ok(s, "Rename completed.");
out:
	imap_names_free(&l);
	free(ffrom);
	free(fto);
	free(src);
	free(dst);
}

/* ---- STATUS ---- */

/* The STATUS items: RFC 3501 6.3.10, SIZE (RFC 8438), APPENDLIMIT (RFC
 * 7889), MAILBOXID (RFC 8474), HIGHESTMODSEQ (RFC 7162). */
static const char *const status_items[] = {
	"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE",
	"APPENDLIMIT", "MAILBOXID", "DELETED", "HIGHESTMODSEQ",
};
enum { ST_MESSAGES, ST_RECENT, ST_UIDNEXT, ST_UIDVALIDITY, ST_UNSEEN,
	ST_SIZE, ST_APPENDLIMIT, ST_MAILBOXID, ST_DELETED, ST_HIGHESTMODSEQ,
	ST_NONE };

static int
status_item(const struct imap_arg *it)
{
	if (it->type != IMAP_ARG_ATOM)
		return ST_NONE;
	for (int i = 0; i < ST_NONE; i++)
		if (strcasecmp(it->str, status_items[i]) == 0)
			return i;
	return ST_NONE;
}

bool
imap_status_items_valid(const struct imap_arg *items, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (status_item(&items[i]) == ST_NONE)
			return false;
	return true;
}

int
imap_status_append(struct imap_session *s, const char *name,
    const char *path, const struct imap_arg *items, size_t n,
    const char **error_r)
{
	uint32_t uidvalidity = 0, uidnext = 0, messages = 0, unseen = 0;
	uint32_t recent = 0;
	uint64_t size = 0, modseq = 0;
	uint32_t deleted = 0;
	bool counts = false, want_size = false, want_id = false;
	bool want_deleted = false, want_modseq = false;
	char mailboxid[MBOX_OBJECTID_MAX + 1];
	str_t line = STR_INIT;

	for (size_t i = 0; i < n; i++) {
		int k = status_item(&items[i]);

		if (k == ST_SIZE)
			want_size = true;
		else if (k == ST_MAILBOXID)
			want_id = true;
		else if (k == ST_DELETED)
			want_deleted = true;
		else if (k == ST_HIGHESTMODSEQ)
			want_modseq = true;
		else if (k != ST_APPENDLIMIT)
			counts = true;
	}
	if (want_id && mbox_mailboxid(path, mailboxid, error_r) < 0)
		return -1;
	if (counts && mbox_status(path, &uidvalidity, &uidnext, &messages,
	    &unseen, &recent, error_r) < 0)
		return -1;
	if (want_size && mbox_status_size(path, &size, error_r) < 0)
		return -1;
	if (want_deleted && mbox_status_deleted(path, &deleted, error_r) < 0)
		return -1;
	if (want_modseq) {
		if (mbox_status_modseq(path, &modseq, error_r) < 0)
			return -1;
		imap_condstore_enable(s);	/* RFC 7162 3.1 */
	}
	str_append(&line, "STATUS ");
	imap_append_mailbox(s, &line, name);
	str_append(&line, " (");
	{
		const uint64_t v[ST_NONE] = {
			[ST_MESSAGES] = messages, [ST_RECENT] = recent,
			[ST_UIDNEXT] = uidnext, [ST_UIDVALIDITY] = uidvalidity,
			[ST_UNSEEN] = unseen, [ST_SIZE] = size,
			[ST_APPENDLIMIT] = s->srv->size_limit,
			[ST_DELETED] = deleted,
			[ST_HIGHESTMODSEQ] = modseq,
		};

		for (size_t i = 0; i < n; i++) {
			int k = status_item(&items[i]);

			if (k == ST_MAILBOXID) {
				str_printf(&line, "%sMAILBOXID (%s)",
				    i > 0 ? " " : "", mailboxid);
				continue;
			}
			str_printf(&line, "%s%s %llu", i > 0 ? " " : "",
			    status_items[k], (unsigned long long)v[k]);
		}
	}
	str_append_c(&line, ')');
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
	return 0;
}

void
imap_cmd_status(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	char *path;

	if (c->nargs != 2 || (name = imap_arg_astring(&c->args[0])) == NULL ||
	    c->args[1].type != IMAP_ARG_LIST || c->args[1].nlist == 0) {
		imap_bad(s, "STATUS needs a mailbox and a list of items");
		return;
	}
	if (!imap_status_items_valid(c->args[1].list, c->args[1].nlist)) {
		imap_bad(s, "Unknown STATUS item");
		return;
	}
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (!imap_is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return;
	}
	if (imap_status_append(s, imap_is_inbox(name) ? "INBOX" : name, path,
	    c->args[1].list, c->args[1].nlist, &err) < 0) {
		log_error("%016llx: status %s: %s", SID(&s->base), path, err);
		imap_no(s, "[SERVERBUG] Cannot read the mailbox");
		free(path);
		return;
	}
	free(path);
	imap_ok(s, "Status completed.");
}
