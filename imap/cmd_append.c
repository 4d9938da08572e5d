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

void
imap_msg_scan(struct imap_msg_scan *sc, const char *p, size_t n)
{
	if (n > 0 && memchr(p, '\0', n) != NULL)
		sc->nul = true;
	for (const char *q = p; !sc->bare_lf &&
	    (q = memchr(q, '\n', n - (size_t)(q - p))) != NULL; q++)
		if ((q > p ? q[-1] : sc->last) != '\r')
			sc->bare_lf = true;
	if (n > 0)
		sc->last = p[n - 1];
}

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

/* Cut the arguments from c->args[first] on into messages: a date-time
 * is a quoted string, a message a literal (RFC 3501 9, RFC 3502 3).
 * Returns the count, or -1 with a BAD (or NO) set. */
static int
split_messages(struct imap_session *s, struct imap_cmd *c, size_t first,
    struct append_msg *m, size_t max)
{
	size_t i = first, n = 0, nsp = 0;

	while (i < c->nargs) {
		struct append_msg *a;

		if (n == max && max == 1) {
			imap_bad(s, "%s takes one message", c->name);
			return -1;
		}
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
			imap_bad(s, "Invalid %s arguments", c->name);
			return -1;
		}
		a->msg = &c->args[i++];
		if (a->msg->spooled) {
			/* the framer spools message literals only, in order */
			if (nsp == s->nspools || !s->spools[nsp]->done) {
				imap_bad(s, "Invalid %s arguments", c->name);
				return -1;
			}
			a->sp = s->spools[nsp++];
		}
		a->size = a->sp != NULL ? a->sp->size : a->msg->len;
	}
	if (n == 0 || nsp != s->nspools) {
		imap_bad(s, "%s needs a mailbox and a message", c->name);
		return -1;
	}
	for (i = first; i < c->nargs; i++)
		if (c->args[i].spooled && c->args[i].type == IMAP_ARG_STRING) {
			bool msg = false;

			for (size_t k = 0; k < n; k++)
				msg |= m[k].msg == &c->args[i];
			if (!msg) {
				imap_bad(s, "Invalid %s arguments", c->name);
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

/* What store() did: the UIDVALIDITY of the target and the UIDs of the
 * messages (set empty when they could not all be known in order). */
struct stored {
	uint32_t uidvalidity;
	str_t set;
};

/*
 * Store the messages given from c->args[first] on (one, or several:
 * MULTIAPPEND) in the mailbox name, all or none. With old_path
 * (REPLACE: one message), that file of the selected mailbox is removed
 * with it, under the same lock(s), and credit (its size) does not count
 * against the quota. Returns 0 with *out filled, or -1 with a NO or BAD
 * set and nothing changed.
 */
static int
store(struct imap_session *s, struct imap_cmd *c, size_t first,
    const char *name, const char *old_path, uint64_t credit,
    struct stored *out)
{
	const char *err = NULL;
	struct append_msg *m;
	struct mbox *dst = NULL;
	bool own = false, locked = false, locked_sel = false;
	uint64_t total = 0, stored = 0;
	uint32_t *uids = NULL;
	size_t n = 0, nuid = 0, max;
	int rc, ret = -1;

	max = old_path != NULL ? 1 : IMAP_APPEND_MSGS_MAX;
	m = xcalloc(max, sizeof(*m));
	if ((rc = split_messages(s, c, first, m, max)) < 0)
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
	/* NUL is no CHAR8 (RFC 3501 9): a literal8 (RFC 3516 4.4) may hold
	 * it, and bare LFs, but a Maildir file keeps neither as sent */
	for (size_t k = 0; k < n; k++) {
		struct imap_msg_scan sc = { false, false, 0 };

		if (m[k].sp != NULL)
			sc = m[k].sp->scan;
		else
			imap_msg_scan(&sc, m[k].msg->str, m[k].msg->len);
		if (m[k].msg->literal8 && (sc.nul || sc.bare_lf)) {
			imap_no(s, "[UNKNOWN-CTE] Binary content cannot be "
			    "stored; send it encoded");
			goto out;
		}
		if (sc.nul) {
			imap_bad(s, "NUL in a literal (only a literal8 may "
			    "hold it)");
			goto out;
		}
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
	/* REPLACE: only the net growth counts (RFC 8508 3.4) */
	if (total > credit && maildir_quota_check(s->maildir, &s->quota,
	    total - credit, &err) == 0) {
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
	/* several files, or one for another: no sync sees half of it */
	if (n > 1 || old_path != NULL) {
		if (mbox_lock(dst, &err) < 0)
			goto failed;
		locked = true;
	}
	if (old_path != NULL && dst != s->mb) {
		if (mbox_lock(s->mb, &err) < 0)
			goto failed;
		locked_sel = true;
	}
	for (size_t k = 0; k < n; k++) {
		if (maildir_tmp_commit_to(&m[k].tmp, dst->path, m[k].norm,
		    &m[k].path, &err) < 0) {
			take_back(m, k);
			goto failed;
		}
	}
	/* the replaced message's file goes with them (renamed meanwhile:
	 * the caller's expunge finds it) */
	if (old_path != NULL && unlink(old_path) < 0 && errno != ENOENT)
		log_warn("%016llx: replace: unlink(%s): %s", SID(&s->base),
		    old_path, strerror(errno));
	if (locked_sel) {
		mbox_unlock(s->mb);
		locked_sel = false;
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
	out->uidvalidity = dst->uidvalidity;
	if (nuid == n)
		imap_seqset_format(uids, nuid, &out->set);
	ret = 0;
	goto out;
failed:
	if (locked_sel)
		mbox_unlock(s->mb);
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
	if (dst != NULL && !own)
		mbox_close(&dst);
	return ret;
}

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const char *name;
	struct stored st = { .set = STR_INIT };

	if (c->nargs < 2 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	if (store(s, c, 1, name, NULL, 0, &st) < 0)
		return;
	if (st.set.len == 0)
		imap_ok(s, "Append completed.");
	else
		imap_ok(s, "[APPENDUID %u %s] Append completed.",
		    st.uidvalidity, str_c(&st.set));
	str_free(&st.set);
}

/* ---- REPLACE (RFC 8508) ---- */

/* A message number or UID: digits (no leading 0) or "*". */
static bool
one_number(const char *p)
{
	if (strcmp(p, "*") == 0)
		return true;
	if (*p < '1' || *p > '9' || strlen(p) > 10)
		return false;
	for (; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/*
 * REPLACE and UID REPLACE: the new message is stored as APPEND stores
 * it and the old one removed, both under the folders' locks, so no
 * session ever sees both or neither; on any failure nothing changes.
 * The responses come in RFC 8508's order: the untagged OK with
 * APPENDUID, EXISTS (the new message when it went into this mailbox),
 * then the EXPUNGE of the old one.
 */
void
imap_cmd_replace(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	size_t *idx = NULL, n = 0;
	struct stored st = { .set = STR_INIT };
	char *old_path = NULL;
	uint64_t old_size;
	uint32_t old_uid;
	long i;

	if (c->nargs < 3 || c->args[0].type != IMAP_ARG_ATOM ||
	    !one_number(c->args[0].str) ||
	    (name = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "%sREPLACE needs a message, a mailbox and a "
		    "message", c->uid ? "UID " : "");
		return;
	}
	if (imap_resolve_set(s, c->args[0].str, c->uid, &idx, &n) < 0 ||
	    (n == 0 && !c->uid)) {
		imap_bad(s, "Invalid message number");
		goto out;
	}
	if (n == 0 || s->mb->msgs[idx[0]].expunged) {
		imap_no(s, "[NONEXISTENT] No such message");
		goto out;
	}
	if (s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		goto out;
	}
	/* its size (the quota counts the net growth) */
	if (s->mb->msgs[idx[0]].info_pending &&
	    mbox_msg_info(s->mb, idx[0], &err) < 0)
		log_warn("%016llx: %s", SID(&s->base), err);
	if (s->mb->msgs[idx[0]].expunged) {
		imap_no(s, "[EXPUNGEISSUED] The message was expunged");
		goto out;
	}
	old_uid = s->mb->msgs[idx[0]].uid;
	old_size = s->mb->msgs[idx[0]].size;
	old_path = mbox_msg_path(s->mb, &s->mb->msgs[idx[0]]);
	if (store(s, c, 2, name, old_path, old_size, &st) < 0)
		goto out;
	if (st.set.len > 0)
		imap_untagged(s, "OK [APPENDUID %u %s] Replacement Message "
		    "ready", st.uidvalidity, str_c(&st.set));
	else
		imap_untagged(s, "OK Replacement Message ready");
	/* The index learns of the expunge. The file is gone already,
	 * unless another session renamed it (a flag change) before the
	 * lock: mbox_expunge finds its new name and removes it. */
	if ((i = mbox_find_uid(s->mb, old_uid)) >= 0) {
		size_t k = (size_t)i;

		if (mbox_expunge(s->mb, &k, 1, &err) < 0)
			log_error("%016llx: replace: %s", SID(&s->base), err);
	}
	maildir_quota_add(s->maildir, -(int64_t)old_size, -1, &err);
	/* EXISTS first, then EXPUNGE */
	imap_sync_report(s, false);
	imap_report_expunges(s);
	imap_ok(s, "Replace completed.");
out:
	str_free(&st.set);
	free(old_path);
	free(idx);
}
