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

/* The QRESYNC parameter (RFC 7162 3.2.5): "(uidvalidity modseq
 * [known-uids [(known-sequence-set known-uid-set)]])". */
struct qresync {
	bool on;
	uint32_t uidvalidity;
	uint64_t modseq;
	struct imap_seqset known;	/* n == 0: not given */
};

static bool
number_arg(const struct imap_arg *a, uint64_t max, uint64_t *v_r)
{
	char *end;

	if (a->type != IMAP_ARG_ATOM || a->str[0] < '0' || a->str[0] > '9')
		return false;
	errno = 0;
	*v_r = strtoull(a->str, &end, 10);
	return errno == 0 && *end == '\0' && *v_r <= max;
}

/* The parameter list of SELECT/EXAMINE: (CONDSTORE) and/or (QRESYNC
 * (...)). 0 ok, -1 BAD. */
static int
select_params(struct imap_session *s, const struct imap_arg *l,
    bool *condstore, struct qresync *q)
{
	for (size_t k = 0; k < l->nlist; k++) {
		const struct imap_arg *a = &l->list[k], *p;
		uint64_t v;

		if (a->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(a->str, "CONDSTORE") == 0) {
			*condstore = true;
			continue;
		}
		/* QRESYNC only once enabled (RFC 7162 3.2.5) */
		if (strcasecmp(a->str, "QRESYNC") != 0 || !s->qresync ||
		    q->on || k + 1 == l->nlist ||
		    l->list[k + 1].type != IMAP_ARG_LIST)
			return -1;
		p = &l->list[++k];
		if (p->nlist < 2 || p->nlist > 4 ||
		    !number_arg(&p->list[0], UINT32_MAX, &v) || v == 0)
			return -1;
		q->uidvalidity = (uint32_t)v;
		if (!number_arg(&p->list[1], INT64_MAX, &q->modseq) ||
		    q->modseq == 0)
			return -1;
		if (p->nlist >= 3 && (p->list[2].type != IMAP_ARG_ATOM ||
		    imap_seqset_parse(p->list[2].str, &q->known) < 0))
			return -1;
		/* seq-match-data: checked, not used (it only narrows
		 * what a server that forgot expunges may report) */
		if (p->nlist == 4) {
			const struct imap_arg *m = &p->list[3];
			struct imap_seqset a1, a2;
			int r1, r2;

			if (m->type != IMAP_ARG_LIST || m->nlist != 2 ||
			    m->list[0].type != IMAP_ARG_ATOM ||
			    m->list[1].type != IMAP_ARG_ATOM)
				return -1;
			r1 = imap_seqset_parse(m->list[0].str, &a1);
			r2 = imap_seqset_parse(m->list[1].str, &a2);
			if (r1 == 0)
				imap_seqset_free(&a1);
			if (r2 == 0)
				imap_seqset_free(&a2);
			if (r1 < 0 || r2 < 0)
				return -1;
		}
		q->on = true;
	}
	return 0;
}

/* After the SELECT responses: what changed since the client's modseq
 * (RFC 7162 3.2.5.1), VANISHED (EARLIER) first, then FETCH. */
static void
qresync_report(struct imap_session *s, const struct qresync *q)
{
	const struct imap_seqset *set = q->known.n > 0 ? &q->known : NULL;
	uint32_t star = s->mb->uidnext > 1 ? s->mb->uidnext - 1 : 1;

	if (q->uidvalidity != s->mb->uidvalidity)
		return;		/* a full resync: nothing to add */
	imap_report_vanished_since(s, q->modseq, set);
	for (size_t i = 0; i < s->mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(s->mb, i);

		if (m->modseq <= q->modseq ||
		    (set != NULL && !imap_seqset_has(set, m->uid, star)))
			continue;
		imap_fetch_flags_line(s, i, true);
	}
}

void
imap_cmd_select(struct imap_session *s, struct imap_cmd *c)
{
	bool examine = strcmp(c->name, "EXAMINE") == 0;
	bool condstore = false, was = s->mb != NULL;
	struct qresync q;
	const char *name, *err;
	char *path;
	long unseen = -1;
	size_t recent = 0;

	memset(&q, 0, sizeof(q));
	if (c->nargs < 1 || c->nargs > 2 ||
	    (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "%s needs a mailbox name", c->name);
		return;
	}
	if (c->nargs == 2 && (c->args[1].type != IMAP_ARG_LIST ||
	    select_params(s, &c->args[1], &condstore, &q) < 0)) {
		imap_seqset_free(&q.known);
		imap_bad(s, "Invalid %s parameters", c->name);
		return;
	}
	/* Selecting closes the current mailbox, without expunging; with
	 * QRESYNC or IMAP4rev2 the client is told where the old one's
	 * responses end (RFC 7162 3.2.11, RFC 9051 6.3.2) */
	imap_close_mailbox(s);
	if (was && (s->qresync || s->rev2))
		imap_untagged(s, "OK [CLOSED] Previous mailbox closed.");
	s->state = S_AUTH;
	if (condstore || q.on)
		s->condstore = true;
	if ((path = imap_mailbox_path(s, name)) == NULL) {
		imap_seqset_free(&q.known);
		return;
	}
	if (mbox_open(path, examine, &s->mb, &err) < 0) {
		/* no directory there (lstat: a symbolic link is none) */
		if (!imap_is_dir(path)) {
			imap_no(s, "[NONEXISTENT] No such mailbox");
		} else {
			log_error("%016llx: open %s: %s", SID(&s->base), path, err);
			imap_no(s, "[SERVERBUG] Cannot open the mailbox");
		}
		free(path);
		imap_seqset_free(&q.known);
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
		struct mbox_msg *m = mbox_msg(s->mb, i);

		m->flags_changed = false;
		if (examine && !m->in_cur)
			m->recent = true;	/* shown, not taken */
		if (m->recent)
			recent++;
		if (unseen < 0 && !mbox_msg_has(m, 'S'))
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
	if (s->condstore)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest.",
		    (unsigned long long)mbox_highestmodseq(s->mb));
	s->known = s->mb->n;
	s->told_modseq = mbox_highestmodseq(s->mb);
	if (q.on)
		qresync_report(s, &q);
	imap_seqset_free(&q.known);
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
