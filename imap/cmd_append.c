/*
 * cmd_append.c: APPEND, with APPENDUID (RFC 4315). It runs on a job
 * thread. A message larger than IMAP_APPEND_MEM_MAX was written to a
 * file in the user's tmp/ while it arrived (the spool, below); a smaller
 * one is in the command and written here. Either way the file gets its
 * date (INTERNALDATE) before it is linked into the folder's cur/.
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

/* ---- the spool of a large message ---- */

void
imap_spool_begin(struct imap_session *s, uint64_t size)
{
	struct imap_spool *sp;

	imap_spool_free(&s->spool);
	sp = xcalloc(1, sizeof(*sp));
	sp->size = size;
	sp->buf = xmalloc(IMAP_SPOOL_CHUNK);
	s->spool = sp;
}

/* The NO text for a message that could not be written (a full disk
 * too: the user's quota is checked before, docs/reliability.md). */
#define SAVE_FAILED "[SERVERBUG] Cannot save the message"

void
imap_spool_write(struct imap_session *s)
{
	struct imap_spool *sp = s->spool;
	const char *err;

	if (sp == NULL || sp->failed != NULL)
		return;
	if (sp->tmp == NULL) {
		/* the message's size is known: refuse it before writing
		 * anything when it cannot fit */
		if (maildir_quota_check(s->maildir, &s->quota, sp->size,
		    &err) == 0) {
			sp->failed = "[OVERQUOTA] Quota exceeded";
			goto out;
		}
		if (maildir_tmp_open(s->maildir, &sp->tmp, &err) < 0) {
			log_error("%016llx: append: spool in %s: %s",
			    SID(&s->base), s->maildir, err);
			sp->failed = SAVE_FAILED;
			goto out;
		}
	}
	if (maildir_tmp_write_lf(sp->tmp, sp->buf, sp->len, &err) < 0) {
		log_error("%016llx: append: spool in %s: %s", SID(&s->base),
		    s->maildir, err);
		sp->failed = SAVE_FAILED;
		maildir_tmp_abort(&sp->tmp);
	}
out:
	sp->len = 0;
	if (sp->failed != NULL || sp->done) {
		/* nothing more will be written */
		free(sp->buf);
		sp->buf = NULL;
	}
}

void
imap_spool_free(struct imap_spool **spp)
{
	struct imap_spool *sp = *spp;

	if (sp == NULL)
		return;
	maildir_tmp_abort(&sp->tmp);
	free(sp->buf);
	free(sp);
	*spp = NULL;
}

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
	struct imap_spool *sp = s->spool;
	char *newpath = NULL;
	uint64_t size, stored;
	uint32_t uid;

	if (c->nargs < 2 || c->nargs > 4 ||
	    (name = imap_arg_astring(&c->args[0])) == NULL ||
	    (msg = &c->args[c->nargs - 1])->type != IMAP_ARG_STRING) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	/* the framer spools at most one literal: it must be the message */
	if (msg->spooled != (sp != NULL) || (sp != NULL && !sp->done)) {
		imap_bad(s, "Invalid APPEND arguments");
		return;
	}
	size = sp != NULL ? sp->size : msg->len;
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
	if (size == 0) {
		imap_no(s, "Cannot append an empty message");
		return;
	}
	if (size > s->srv->size_limit) {
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
	if (sp != NULL && sp->failed != NULL) {
		imap_no(s, "%s", sp->failed);
		goto out;
	}
	if (maildir_quota_check(s->maildir, &s->quota, size, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	/* Stored with LF line ends, as delivered mail is: the spool is
	 * already; a message in the command is written now. */
	if (sp != NULL) {
		tmp = sp->tmp;
		sp->tmp = NULL;
		if (tmp == NULL) {
			err = "no spool file";
			goto failed;
		}
	} else if (maildir_tmp_open(dst->path, &tmp, &err) < 0 ||
	    maildir_tmp_write_lf(tmp, msg->str, msg->len, &err) < 0) {
		goto failed;
	}
	/* its date before its name: INTERNALDATE never changes */
	if (date >= 0)
		maildir_tmp_set_mtime(tmp, (time_t)date, 0);
	stored = maildir_tmp_size(tmp);
	if (maildir_tmp_commit_to(&tmp, dst->path, norm, &newpath, &err) < 0)
		goto failed;
	if (quota_limit_set(&s->quota))
		maildir_quota_add(s->maildir, (int64_t)stored, 1, &err);
	uid = mbox_uid_of_added(dst, imap_basename_of(newpath), &err);
	if (uid == 0)
		imap_ok(s, "Append completed.");
	else
		imap_ok(s, "[APPENDUID %u %u] Append completed.",
		    dst->uidvalidity, uid);
	goto out;
failed:
	log_error("%016llx: append to %s: %s", SID(&s->base), dst->path, err);
	imap_no(s, SAVE_FAILED);
out:
	maildir_tmp_abort(&tmp);
	if (sp != NULL)
		maildir_tmp_abort(&sp->tmp);	/* not kept after the command */
	free(newpath);
	if (!own)
		mbox_close(&dst);
}
