/*
 * cmd_expunge.c: EXPUNGE and UID EXPUNGE (RFC 4315), and the removal of
 * \Deleted messages CLOSE shares. They run on job threads.
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

/* ---- EXPUNGE ---- */

/* Remove the \Deleted messages (those in uidset too, when given). */
int
imap_expunge_deleted(struct imap_session *s, const char *uidset, bool report)
{
	size_t *idx = NULL, n = 0, k = 0;
	const char *err;
	int64_t bytes = 0;

	if (uidset != NULL) {
		if (imap_resolve_set(s, uidset, true, &idx, &n) < 0)
			return -1;
	} else {
		/* the \Deleted ones, without a walk of the folder */
		n = mbox_deleted(s->mb, &idx);
	}
	for (size_t j = 0; j < n; j++) {
		const struct mbox_msg *m = mbox_msg(s->mb, idx[j]);

		if (!mbox_msg_has(m, 'T') || m->expunged)
			continue;
		/* the quota needs the size (0 when the file is gone) */
		if (m->info_pending &&
		    mbox_msg_info(s->mb, idx[j], &err) < 0)
			log_warn("%016llx: %s", SID(&s->base), err);
		m = mbox_msg(s->mb, idx[j]);
		bytes += (int64_t)m->size;
		idx[k++] = idx[j];
	}
	if (k > 0 && mbox_expunge(s->mb, idx, k, &err) < 0)
		log_error("%016llx: expunge: %s", SID(&s->base), err);
	if (k > 0)
		maildir_quota_add(s->maildir, -bytes, -(int64_t)k, &err);
	free(idx);
	if (!report)
		return 0;
	imap_report_expunges(s);
	return 0;
}

void
imap_cmd_expunge(struct imap_session *s, struct imap_cmd *c)
{
	const char *set = NULL;

	if (c->uid) {
		if (c->nargs != 1 || c->args[0].type != IMAP_ARG_ATOM) {
			imap_bad(s, "UID EXPUNGE needs a UID set");
			return;
		}
		set = c->args[0].str;
	} else if (c->nargs != 0) {
		imap_bad(s, "EXPUNGE takes no arguments");
		return;
	}
	if (s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		return;
	}
	if (imap_expunge_deleted(s, set, true) < 0) {
		imap_bad(s, "Invalid UID set");
		return;
	}
	imap_ok(s, "Expunge completed.");
}
