/*
 * cmd_mailbox.c: CREATE, DELETE, RENAME and STATUS (RFC 3501 6.3). They
 * run on job threads.
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

void
imap_cmd_create(struct imap_session *s, struct imap_cmd *c)
{
	const char *arg, *err;
	char *name, *path, *folder;
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
	if ((path = imap_mailbox_locate(s, name, true, &folder)) == NULL) {
		free(name);
		return;
	}
	if (imap_is_dir(path)) {
		imap_no(s, "[ALREADYEXISTS] Mailbox exists");
	} else if (maildir_make_folder(s->maildir, folder, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		imap_no(s, "[SERVERBUG] Cannot create the mailbox");
	} else {
		imap_ok(s, "Create completed.");
	}
	free(folder);
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
	char *path, *gone, *folder;
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
	if (!imap_is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return;
	}
	if (mbox_status(path, &uidvalidity, &uidnext, &messages, &unseen,
	    &recent, &err) < 0) {
		log_error("%016llx: status %s: %s", SID(&s->base), path, err);
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
