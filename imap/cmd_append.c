/*
 * cmd_append.c: APPEND, with APPENDUID (RFC 4315) and MULTIAPPEND (RFC
 * 3502: several messages in one command, all stored or none). It runs
 * on a job thread. A message larger than IMAP_APPEND_MEM_MAX was written
 * to a file in the user's tmp/ while it arrived (the spool, below); a
 * smaller one is in the command and written here. Either way the file
 * gets its date (INTERNALDATE) before it is linked into the folder's
 * cur/, and the files of one command are linked under the folder's
 * lock, so no session sees some of them without the others.
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

/* ---- the spools of large messages ---- */

void
imap_spool_begin(struct imap_session *s, uint64_t size)
{
	struct imap_spool *sp;

	if (s->nspools == IMAP_FRAMER_SPOOLS)	/* the framer refuses more */
		imap_spools_free(s);
	sp = xcalloc(1, sizeof(*sp));
	sp->size = size;
	sp->buf = xmalloc(IMAP_SPOOL_CHUNK);
	s->spools[s->nspools++] = sp;
}

struct imap_spool *
imap_spool_cur(const struct imap_session *s)
{
	return s->nspools > 0 ? s->spools[s->nspools - 1] : NULL;
}

/* The NO text for a message that could not be written (a full disk
 * too: the user's quota is checked before, docs/reliability.md). */
#define SAVE_FAILED "[SERVERBUG] Cannot save the message"

void
imap_spool_write(struct imap_session *s)
{
	struct imap_spool *sp = imap_spool_cur(s);
	const char *err;
	uint64_t before = 0;

	if (sp == NULL || sp->failed != NULL)
		return;
	if (sp->tmp == NULL) {
		/* the message's size is known: refuse it before writing
		 * anything when it cannot fit, with the command's earlier
		 * ones */
		for (size_t i = 0; i + 1 < s->nspools; i++)
			before += s->spools[i]->size;
		if (maildir_quota_check(s->maildir, &s->quota,
		    before + sp->size, &err) == 0) {
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
imap_spools_free(struct imap_session *s)
{
	for (size_t i = 0; i < s->nspools; i++) {
		struct imap_spool *sp = s->spools[i];

		maildir_tmp_abort(&sp->tmp);
		free(sp->buf);
		free(sp);
		s->spools[i] = NULL;
	}
	s->nspools = 0;
}

/* ---- APPEND ---- */

/* One message of the command: [flags] [date-time] message. */
struct append_msg {
	const struct imap_arg *msg, *flags;
	long long date;			/* -1: now */
	struct imap_spool *sp;		/* its spool, or NULL */
	uint64_t size;
	char norm[MAILDIR_FLAGS_MAX + 1];
	struct maildir_tmp *tmp;
	char *path;			/* once linked into the folder */
};

/* Cut the arguments after the mailbox into messages: a date-time is a
 * quoted string, a message a literal (RFC 3501 9, RFC 3502 3). Returns
 * the count, or -1 with a BAD (or NO) set. */
static int
split_messages(struct imap_session *s, struct imap_cmd *c,
    struct append_msg *m, size_t max)
{
	size_t i = 1, n = 0, nsp = 0;

	while (i < c->nargs) {
		struct append_msg *a;

		if (n == max) {
			imap_no(s, "[LIMIT] At most %zu messages in one APPEND",
			    max);
			return -1;
		}
		a = &m[n++];
		a->date = -1;
		if (c->args[i].type == IMAP_ARG_LIST)
			a->flags = &c->args[i++];
		if (i < c->nargs && c->args[i].type == IMAP_ARG_STRING &&
		    !c->args[i].literal) {
			if (imap_datetime_parse(c->args[i].str, &a->date) < 0) {
				imap_bad(s, "Invalid date-time");
				return -1;
			}
			i++;
		}
		if (i == c->nargs || c->args[i].type != IMAP_ARG_STRING ||
		    !c->args[i].literal) {
			imap_bad(s, "Invalid APPEND arguments");
			return -1;
		}
		a->msg = &c->args[i++];
		if (a->msg->spooled) {
			/* the framer spools message literals only, in order */
			if (nsp == s->nspools || !s->spools[nsp]->done) {
				imap_bad(s, "Invalid APPEND arguments");
				return -1;
			}
			a->sp = s->spools[nsp++];
		}
		a->size = a->sp != NULL ? a->sp->size : a->msg->len;
	}
	if (n == 0 || nsp != s->nspools) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return -1;
	}
	for (i = 1; i < c->nargs; i++)
		if (c->args[i].spooled && c->args[i].type == IMAP_ARG_STRING) {
			bool msg = false;

			for (size_t k = 0; k < n; k++)
				msg |= m[k].msg == &c->args[i];
			if (!msg) {
				imap_bad(s, "Invalid APPEND arguments");
				return -1;
			}
		}
	return (int)n;
}

/* Remove the files of the messages linked so far (a later one failed):
 * under the lock, so no sync saw them. */
static void
take_back(struct append_msg *m, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (m[k].path != NULL && unlink(m[k].path) < 0 &&
		    errno != ENOENT)
			log_warn("unlink(%s): %s", m[k].path, strerror(errno));
		free(m[k].path);
		m[k].path = NULL;
	}
}

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err = NULL;
	struct append_msg *m;
	struct mbox *dst = NULL;
	bool own = false, locked = false;
	uint64_t total = 0, stored = 0;
	uint32_t *uids = NULL;
	size_t n = 0, nuid = 0;
	int rc;
	str_t set = STR_INIT;

	if (c->nargs < 2 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	m = xcalloc(IMAP_APPEND_MSGS_MAX, sizeof(*m));
	if ((rc = split_messages(s, c, m, IMAP_APPEND_MSGS_MAX)) < 0)
		goto out;
	n = (size_t)rc;
	for (size_t k = 0; k < n; k++) {
		if (m[k].size == 0) {
			imap_no(s, "Cannot append an empty message");
			goto out;
		}
		if (m[k].size > s->srv->size_limit) {
			imap_no(s, "[TOOBIG] Message too large");
			goto out;
		}
		total += m[k].size;
	}
	if ((dst = imap_open_target(s, name, &own)) == NULL)
		goto out;
	for (size_t k = 0; k < n; k++) {
		char letters[64] = "";

		if (m[k].flags != NULL) {
			/* keywords belong to the target mailbox */
			struct mbox *saved = s->mb;

			s->mb = dst;
			rc = imap_flags_to_letters(s, m[k].flags->list,
			    m[k].flags->nlist, true, letters, sizeof(letters));
			s->mb = saved;
			if (rc < 0)
				goto out;
		}
		if (maildir_flags_normalize(letters, strlen(letters),
		    m[k].norm) < 0)
			m[k].norm[0] = '\0';
		if (m[k].sp != NULL && m[k].sp->failed != NULL) {
			imap_no(s, "%s", m[k].sp->failed);
			goto out;
		}
	}
	if (maildir_quota_check(s->maildir, &s->quota, total, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	/* Stored with LF line ends, as delivered mail is: a spool is
	 * already; a message in the command is written now. Each gets its
	 * date before its name: INTERNALDATE never changes. */
	for (size_t k = 0; k < n; k++) {
		if (m[k].sp != NULL) {
			m[k].tmp = m[k].sp->tmp;
			m[k].sp->tmp = NULL;
			if (m[k].tmp == NULL) {
				err = "no spool file";
				goto failed;
			}
		} else if (maildir_tmp_open(dst->path, &m[k].tmp, &err) < 0 ||
		    maildir_tmp_write_lf(m[k].tmp, m[k].msg->str,
		    m[k].msg->len, &err) < 0) {
			goto failed;
		}
		if (m[k].date >= 0)
			maildir_tmp_set_mtime(m[k].tmp, (time_t)m[k].date, 0);
		stored += maildir_tmp_size(m[k].tmp);
	}
	if (n > 1) {
		if (mbox_lock(dst, &err) < 0)
			goto failed;
		locked = true;
	}
	for (size_t k = 0; k < n; k++) {
		if (maildir_tmp_commit_to(&m[k].tmp, dst->path, m[k].norm,
		    &m[k].path, &err) < 0) {
			take_back(m, k);
			goto failed;
		}
	}
	if (locked) {
		mbox_unlock(dst);
		locked = false;
	}
	if (quota_limit_set(&s->quota))
		maildir_quota_add(s->maildir, (int64_t)stored, (int64_t)n,
		    &err);
	uids = xcalloc(n, sizeof(*uids));
	for (size_t k = 0; k < n; k++) {
		uint32_t uid = mbox_uid_of_added(dst,
		    imap_basename_of(m[k].path), &err);

		if (uid == 0) {
			log_warn("%016llx: append to %s: %s", SID(&s->base),
			    dst->path, err);
			break;
		}
		if (nuid > 0 && uid <= uids[nuid - 1])
			break;	/* not in order: no UID set to give */
		uids[nuid++] = uid;
	}
	if (nuid < n) {
		imap_ok(s, "Append completed.");
	} else {
		imap_seqset_format(uids, nuid, &set);
		imap_ok(s, "[APPENDUID %u %s] Append completed.",
		    dst->uidvalidity, str_c(&set));
	}
	goto out;
failed:
	if (locked)
		mbox_unlock(dst);
	log_error("%016llx: append to %s: %s", SID(&s->base), dst->path, err);
	imap_no(s, SAVE_FAILED);
out:
	for (size_t k = 0; k < n; k++) {
		maildir_tmp_abort(&m[k].tmp);
		free(m[k].path);
	}
	imap_spools_free(s);	/* not kept after the command */
	free(m);
	free(uids);
	str_free(&set);
	if (dst != NULL && !own)
		mbox_close(&dst);
}
