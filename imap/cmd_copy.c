/*
 * cmd_copy.c: COPY, MOVE (RFC 6851) and their UID forms, with COPYUID
 * (RFC 4315). They run on job threads.
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

/* ---- COPY / MOVE ---- */


/* Flags of a message for another mailbox: keywords by name. */
static void
translate_flags(struct mbox *from, struct mbox *to, const struct mbox_msg *m,
    char out[MAILDIR_FLAGS_MAX + 1])
{
	char flags[MAILDIR_FLAGS_MAX + 1], tmp[MAILDIR_FLAGS_MAX + 1];
	size_t n = 0;

	mbox_msg_flags(m, flags);
	for (const char *p = flags; *p != '\0' && n < MAILDIR_FLAGS_MAX; p++) {
		char l = *p;

		if (l >= 'a' && l <= 'z') {
			if (from == to)
				;
			else if (from->keywords[l - 'a'] == NULL ||
			    (l = mbox_keyword_letter(to,
			    from->keywords[l - 'a'], true)) == 0)
				continue;
		}
		tmp[n++] = l;
	}
	if (maildir_flags_normalize(tmp, n, out) < 0)
		out[0] = '\0';
}

static void
copy_messages(struct imap_session *s, struct imap_cmd *c, bool move)
{
	const char *name, *err;
	size_t *idx = NULL, n = 0, copied = 0, failed = 0, gone = 0, nmade = 0;
	char **made = NULL;
	struct mbox *dst;
	bool own;
	uint32_t *src_uids, *dst_uids;
	uint64_t bytes = 0;
	str_t su = STR_INIT, du = STR_INIT;

	if (c->nargs != 2 || c->args[0].type != IMAP_ARG_ATOM ||
	    (name = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "%s needs a sequence set and a mailbox", c->name);
		return;
	}
	if (move && s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		return;
	}
	if (imap_resolve_set(s, c->args[0].str, c->uid, &idx, &n) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	if ((dst = imap_open_target(s, name, &own)) == NULL) {
		free(idx);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		/* S= of the copies, and the quota: sizes not looked at
		 * yet are needed now (a file found gone is dealt with
		 * below) */
		if (mbox_msg_info(s->mb, idx[k], &err) < 0)
			log_warn("%016llx: %s", SID(&s->base), err);
		bytes += mbox_msg(s->mb, idx[k])->size;
	}
	if (!move &&
	    maildir_quota_check(s->maildir, &s->quota, bytes, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	src_uids = xcalloc(n + 1, sizeof(*src_uids));
	dst_uids = xcalloc(n + 1, sizeof(*dst_uids));
	made = xcalloc(n + 1, sizeof(*made));
	for (size_t k = 0; k < n; k++) {
		struct mbox_msg *m = mbox_msg(s->mb, idx[k]);
		char flags[MAILDIR_FLAGS_MAX + 1];
		char *src = mbox_msg_path(s->mb, m), *newpath = NULL;
		uint32_t uid;

		if (m->expunged) {
			free(src);
			gone++;
			continue;
		}
		translate_flags(s->mb, dst, m, flags);
		/* MOVE keeps the EMAILID (RFC 8474 5.1): the new name
		 * carries it in an E= field; COPY makes a new message */
		char extra[MBOX_OBJECTID_MAX + 3];

		extra[0] = '\0';
		if (move) {
			char id[MBOX_OBJECTID_MAX + 1];

			mbox_emailid(m->name, id);
			if (strlen(id) <= 64)
				snprintf(extra, sizeof(extra), "E=%s", id);
		}
		for (int tries = 0; maildir_link_into_extra(src, m->size,
		    dst->path, flags, extra[0] != '\0' ? extra : NULL,
		    &newpath, &err) < 0; tries++) {
			const char *serr;

			/* Another session may have renamed the file (new
			 * flags) or expunged it: look again, then retry. */
			free(src);
			src = NULL;
			if (tries == 3 || mbox_sync(s->mb, NULL, &serr) < 0)
				break;
			m = mbox_msg(s->mb, idx[k]);
			if (m->expunged)
				break;
			src = mbox_msg_path(s->mb, m);
			translate_flags(s->mb, dst, m, flags);
		}
		if (src == NULL) {
			if (mbox_msg(s->mb, idx[k])->expunged) {
				gone++;
			} else {
				log_error("%016llx: copy: %s", SID(&s->base), err);
				failed++;
			}
			continue;
		}
		free(src);
		made[nmade++] = newpath;
		uid = mbox_uid_of_added(dst, imap_basename_of(newpath), &err);
		m = mbox_msg(s->mb, idx[k]);
		if (uid == 0) {
			log_error("%016llx: copy into %s: %s", SID(&s->base), dst->path,
			    err);
			failed++;
			continue;
		}
		src_uids[copied] = m->uid;
		dst_uids[copied] = uid;
		copied++;
	}
	if (failed > 0 || gone > 0) {
		/* RFC 3501 6.4.7: a failed COPY leaves the target as it
		 * was (a MOVE, the source too): take back what was made. */
		for (size_t k = 0; k < nmade; k++)
			if (unlink(made[k]) < 0 && errno != ENOENT)
				log_warn("unlink(%s): %s", made[k],
				    strerror(errno));
		copied = 0;
	}
	for (size_t k = 0; k < nmade; k++)
		free(made[k]);
	free(made);
	if (copied > 0) {
		imap_seqset_format(src_uids, copied, &su);
		imap_seqset_format(dst_uids, copied, &du);
	}
	if (!move && copied > 0 && quota_limit_set(&s->quota))
		maildir_quota_add(s->maildir, (int64_t)bytes, (int64_t)copied,
		    &err);
	if (failed > 0) {
		imap_no(s, "[SERVERBUG] The messages could not be copied, "
		    "none was");
	} else if (gone > 0) {
		imap_no(s, "[EXPUNGEISSUED] Some of the requested messages "
		    "no longer exist; nothing was copied");
	} else if (!move) {
		if (copied > 0)
			imap_ok(s, "[COPYUID %u %s %s] Copy completed.",
			    dst->uidvalidity, str_c(&su), str_c(&du));
		else
			imap_ok(s, "Copy completed.");
	} else {
		if (copied > 0)
			imap_untagged(s, "OK [COPYUID %u %s %s] Moved.",
			    dst->uidvalidity, str_c(&su), str_c(&du));
		if (mbox_expunge(s->mb, idx, n, &err) < 0)
			log_error("%016llx: move: %s", SID(&s->base), err);
		imap_report_expunges(s);
		imap_ok(s, "Move completed.");
	}
	free(src_uids);
	free(dst_uids);
out:
	str_free(&su);
	str_free(&du);
	if (!own)
		mbox_close(&dst);
	free(idx);
}

void
imap_cmd_copy(struct imap_session *s, struct imap_cmd *c)
{
	copy_messages(s, c, false);
}

void
imap_cmd_move(struct imap_session *s, struct imap_cmd *c)
{
	copy_messages(s, c, true);
}
