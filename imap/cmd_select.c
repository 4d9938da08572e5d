/*
 * cmd_select.c: SELECT, EXAMINE, CLOSE, UNSELECT, NOOP and CHECK. They
 * run on job threads.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/mime/mime.h"

/* ---- SELECT / EXAMINE ---- */

void
imap_cmd_select(struct imap_session *s, struct imap_cmd *c)
{
	bool examine = strcmp(c->name, "EXAMINE") == 0;
	const char *name, *err;
	char *path;
	long unseen = -1;
	size_t recent = 0;

	if (c->nargs < 1 || c->nargs > 2 ||
	    (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "%s needs a mailbox name", c->name);
		return;
	}
	/* Selecting closes the current mailbox, without expunging; an
	 * IMAP4rev2 client is told where the old one's responses end (RFC
	 * 9051 6.3.2) */
	if (s->rev2 && s->state == S_SELECTED)
		imap_untagged(s, "OK [CLOSED] Previous mailbox closed.");
	imap_close_mailbox(s);
	s->state = S_AUTH;
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (mbox_open(path, examine, &s->mb, &err) < 0) {
		/* no directory there (lstat: a symbolic link is none) */
		if (!imap_is_dir(path)) {
			imap_no(s, "[NONEXISTENT] No such mailbox");
		} else {
			log_error("%016llx: open %s: %s", SID(&s->base), path, err);
			imap_no(s, "[SERVERBUG] Cannot open the mailbox");
		}
		free(path);
		return;
	}
	if (!examine) {
		/* what writers that died left in tmp/ (as Dovecot does) */
		char who[32];

		snprintf(who, sizeof(who), "%016llx", SID(&s->base));
		maildir_clean_tmp(path, who);
	}
	free(path);
	mbox_purge(s->mb, NULL, NULL);
	s->readonly = examine;
	s->mbox_name = xstrdup(imap_is_inbox(name) ? "INBOX" : name);
	s->state = S_SELECTED;
	{
		uint32_t *uids;

		(void)mbox_take_changed(s->mb, &uids);	/* all are new */
		free(uids);
	}
	for (size_t i = 0; i < s->mb->n; i++) {
		struct mbox_msg *m = &s->mb->msgs[i];

		m->flags_changed = false;
		if (examine && !m->in_cur)
			m->recent = true;	/* shown, not taken */
		if (m->recent)
			recent++;
		if (unseen < 0 && strchr(m->flags, 'S') == NULL)
			unseen = (long)i + 1;
	}
	imap_report_flags(s);
	imap_untagged(s, "%zu EXISTS", s->mb->n);
	s->mb->nrecent = recent;
	/* RFC 9051 removed RECENT and the UNSEEN code; it lists the
	 * mailbox instead */
	if (!s->rev2)
		imap_untagged(s, "%zu RECENT", recent);
	if (unseen > 0 && !s->rev2)
		imap_untagged(s, "OK [UNSEEN %ld] First unseen.", unseen);
	if (s->rev2)
		imap_list_one(s, s->mbox_name);
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid.", s->mb->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID.", s->mb->uidnext);
	{
		char id[MBOX_OBJECTID_MAX + 1];
		const char *iderr;

		/* RFC 8474 4.2 */
		if (mbox_mailboxid(s->mb->path, id, &iderr) == 0)
			imap_untagged(s, "OK [MAILBOXID (%s)] Ok.", id);
		else
			log_warn("%016llx: %s", SID(&s->base), iderr);
	}
	s->known = s->mb->n;
	imap_ok(s, "[%s] %s completed.", examine ? "READ-ONLY" : "READ-WRITE",
	    examine ? "Examine" : "Select");
}

void
imap_cmd_noop(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "%s takes no arguments", c->name);
		return;
	}
	imap_ok(s, "%s completed.", strcmp(c->name, "CHECK") == 0 ? "Check" :
	    "NOOP");
}

/* ---- CLOSE, UNSELECT ---- */

void
imap_cmd_close(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "CLOSE takes no arguments");
		return;
	}
	if (!s->readonly)
		imap_expunge_deleted(s, NULL, false);
	imap_close_mailbox(s);
	s->state = S_AUTH;
	imap_ok(s, "Close completed.");
}

void
imap_cmd_unselect(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "UNSELECT takes no arguments");
		return;
	}
	imap_close_mailbox(s);
	s->state = S_AUTH;
	imap_ok(s, "Unselect completed.");
}
