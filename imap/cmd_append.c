/*
 * cmd_append.c: APPEND, with APPENDUID (RFC 4315). It runs on a job
 * thread.
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

/* ---- APPEND ---- */

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	const struct imap_arg *msg, *flags_arg = NULL, *date_arg = NULL;
	long long date = -1;
	char letters[64] = "", norm[MAILDIR_FLAGS_MAX + 1];
	struct mbox *dst;
	struct mbox *saved;
	bool own;
	struct maildir_tmp *tmp = NULL;
	char *newpath = NULL;
	uint32_t uid;
	str_t lf = STR_INIT;

	if (c->nargs < 2 || c->nargs > 4 ||
	    (name = imap_arg_astring(&c->args[0])) == NULL ||
	    (msg = &c->args[c->nargs - 1])->type != IMAP_ARG_STRING) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	for (size_t i = 1; i + 1 < c->nargs; i++) {
		if (c->args[i].type == IMAP_ARG_LIST && flags_arg == NULL &&
		    date_arg == NULL)
			flags_arg = &c->args[i];
		else if (c->args[i].type == IMAP_ARG_STRING &&
		    date_arg == NULL)
			date_arg = &c->args[i];
		else {
			imap_bad(s, "Invalid APPEND arguments");
			return;
		}
	}
	if (date_arg != NULL &&
	    imap_datetime_parse(date_arg->str, &date) < 0) {
		imap_bad(s, "Invalid date-time");
		return;
	}
	if (msg->len == 0) {
		imap_no(s, "Cannot append an empty message");
		return;
	}
	if (msg->len > s->srv->size_limit) {
		imap_no(s, "[TOOBIG] Message too large");
		return;
	}
	if ((dst = imap_open_target(s, name, &own)) == NULL)
		return;
	if (flags_arg != NULL) {
		/* keywords belong to the target mailbox */
		saved = s->mb;
		s->mb = dst;
		if (imap_flags_to_letters(s, flags_arg->list, flags_arg->nlist,
		    true, letters, sizeof(letters)) < 0) {
			s->mb = saved;
			goto out;
		}
		s->mb = saved;
	}
	if (maildir_flags_normalize(letters, strlen(letters), norm) < 0)
		norm[0] = '\0';
	if (s->quota > 0 && maildir_quota_check(s->maildir, s->quota,
	    msg->len, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	/* Stored with LF line ends, as delivered mail is. */
	for (size_t i = 0; i < msg->len; i++) {
		if (msg->str[i] == '\r' && i + 1 < msg->len &&
		    msg->str[i + 1] == '\n')
			continue;
		str_append_c(&lf, msg->str[i]);
	}
	if (maildir_tmp_open(dst->path, &tmp, &err) == 0 && date >= 0) {
		/* its date before its name: INTERNALDATE never changes */
		maildir_tmp_set_mtime(tmp, (time_t)date, 0);
	}
	if (tmp == NULL ||
	    maildir_tmp_write(tmp, lf.data, lf.len, &err) < 0 ||
	    maildir_tmp_commit_flags(&tmp, norm, &newpath, &err) < 0) {
		maildir_tmp_abort(&tmp);
		log_error("%016llx: append to %s: %s", SID(&s->base), dst->path, err);
		imap_no(s, "[SERVERBUG] Cannot save the message");
		goto out;
	}
	if (s->quota > 0)
		maildir_quota_add(s->maildir, (int64_t)lf.len, 1, &err);
	uid = mbox_uid_of_added(dst, imap_basename_of(newpath), &err);
	if (uid == 0)
		imap_ok(s, "Append completed.");
	else
		imap_ok(s, "[APPENDUID %u %u] Append completed.",
		    dst->uidvalidity, uid);
out:
	free(newpath);
	str_free(&lf);
	if (!own)
		mbox_close(&dst);
}
