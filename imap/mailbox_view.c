/*
 * mailbox_view.c: the selected mailbox as the client sees it, shared by
 * the IMAP command files (cmd_*.c): flags as IMAP names, the report of
 * changes made by others (untagged EXISTS, RECENT, EXPUNGE, FETCH FLAGS),
 * sequence sets, reading a message, opening the target of COPY, MOVE and
 * APPEND.
 *
 * Flags are Maildir letters: \Draft D, \Flagged F, \Answered R,
 * \Seen S, \Deleted T; keywords a-z through the mailbox's
 * dovecot-keywords. Other upper-case letters (P, "passed") are kept
 * untouched but not shown.
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

static const struct {
	char letter;
	const char *name;
} sysflags[] = {
	{ 'R', "\\Answered" },
	{ 'F', "\\Flagged" },
	{ 'T', "\\Deleted" },
	{ 'S', "\\Seen" },
	{ 'D', "\\Draft" },
};
#define NSYSFLAGS (sizeof(sysflags) / sizeof(sysflags[0]))

const char *
imap_basename_of(const char *path)
{
	const char *p = strrchr(path, '/');

	return p != NULL ? p + 1 : path;
}

void
imap_flags_string(const struct imap_session *s, const struct mbox_msg *m,
    str_t *out)
{
	const struct mbox *mb = s->mb;
	bool first = true;

	for (size_t i = 0; i < NSYSFLAGS; i++) {
		if (!mbox_msg_has(m, sysflags[i].letter))
			continue;
		if (!first)
			str_append_c(out, ' ');
		str_append(out, sysflags[i].name);
		first = false;
	}
	for (char c = 'a'; c <= 'z'; c++) {
		const char *kw;

		if (!mbox_msg_has(m, c) || (kw = mb->keywords[c - 'a']) == NULL)
			continue;
		if (!first)
			str_append_c(out, ' ');
		str_append(out, kw);
		first = false;
	}
	if (m->recent && !s->rev2) {	/* RFC 9051 removed \Recent */
		if (!first)
			str_append_c(out, ' ');
		str_append(out, "\\Recent");
	}
}

/* The keywords the mailbox has: bit k for letter 'a' + k. */
static uint32_t
keyword_mask(const struct mbox *mb)
{
	uint32_t mask = 0;

	for (size_t i = 0; i < 26; i++)
		if (mb->keywords[i] != NULL)
			mask |= (uint32_t)1 << i;
	return mask;
}

void
imap_report_flags(struct imap_session *s)
{
	str_t kw = STR_INIT;

	for (size_t i = 0; i < 26; i++) {
		if (s->mb->keywords[i] == NULL)
			continue;
		str_append_c(&kw, ' ');
		str_append(&kw, s->mb->keywords[i]);
	}
	imap_untagged(s, "FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft%s)", str_c(&kw));
	if (s->readonly)
		imap_untagged(s, "OK [PERMANENTFLAGS ()] Read-only mailbox.");
	else
		imap_untagged(s, "OK [PERMANENTFLAGS (\\Answered \\Flagged "
		    "\\Deleted \\Seen \\Draft%s \\*)] Flags permitted.",
		    str_c(&kw));
	str_free(&kw);
	s->known_keywords = keyword_mask(s->mb);
}

void
imap_announce_keywords(struct imap_session *s)
{
	if ((keyword_mask(s->mb) & ~s->known_keywords) != 0)
		imap_report_flags(s);
}

void
imap_fetch_flags_line(struct imap_session *s, size_t i, bool uid)
{
	const struct mbox_msg *m = mbox_msg(s->mb, i);
	str_t f = STR_INIT;

	imap_announce_keywords(s);
	imap_flags_string(s, m, &f);
	/* RFC 7162 3.1.4: with CONDSTORE, every FETCH that reports flags
	 * names the message's modseq */
	if (s->condstore)
		str_printf(&f, ") MODSEQ (%llu", (unsigned long long)m->modseq);
	if (uid)
		imap_untagged(s, "%zu FETCH (UID %u FLAGS (%s))", i + 1, m->uid,
		    str_c(&f));
	else
		imap_untagged(s, "%zu FETCH (FLAGS (%s))", i + 1, str_c(&f));
	str_free(&f);
}

void
imap_condstore_enable(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = true;
	if (s->mb != NULL)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest.",
		    (unsigned long long)mbox_highestmodseq(s->mb));
}

/* The last UID a '*' stands for. */
static uint32_t
uid_star(const struct imap_session *s)
{
	return s->mb->uidnext > 1 ? s->mb->uidnext - 1 : 1;
}

static void
range_add(str_t *line, uint32_t lo, uint32_t hi)
{
	if (line->len > 0)
		str_append_c(line, ',');
	if (hi > lo)
		str_printf(line, "%u:%u", lo, hi);
	else
		str_printf(line, "%u", lo);
}

/* The UIDs from lo to hi (below UIDNEXT) that are not in the view. */
static void
gaps_add(const struct mbox *mb, uint32_t lo, uint32_t hi, str_t *line)
{
	size_t a = 0, b = mb->n, i;
	uint32_t next = lo, stop;

	while (a < b) {
		size_t mid = a + (b - a) / 2;

		if (mbox_msg(mb, mid)->uid < lo)
			a = mid + 1;
		else
			b = mid;
	}
	for (i = a; next <= hi; i++) {
		stop = i < mb->n && mbox_msg(mb, i)->uid <= hi ? mbox_msg(mb, i)->uid :
		    hi + 1;
		if (stop > next)
			range_add(line, next, stop - 1);
		if (stop > hi)
			break;
		next = stop + 1;
	}
}

void
imap_report_vanished_since(struct imap_session *s, uint64_t since,
    const struct imap_seqset *set)
{
	uint32_t *uids = NULL, star = uid_star(s), lo, hi;
	size_t n = 0, k, no = 0;
	bool exact;
	str_t line = STR_INIT;

	(void)mbox_vanished(s->mb, since, &uids, &n, &exact);
	if (exact) {
		for (k = 0; k < n; k++) {
			long i = mbox_find_uid(s->mb, uids[k]);

			if ((set == NULL ||
			    imap_seqset_has(set, uids[k], star)) &&
			    (i < 0 || mbox_msg(s->mb, i)->expunged))
				uids[no++] = uids[k];
		}
		if (no > 0)
			imap_seqset_format(uids, no, &line);
	} else if (s->mb->uidnext > 1) {
		/* not known that far back: every UID below UIDNEXT that
		 * is not here (RFC 7162 3.2.5.1 allows reporting more
		 * than were expunged) */
		if (set == NULL)
			gaps_add(s->mb, 1, star, &line);
		for (k = 0; set != NULL && k < set->n; k++) {
			lo = set->r[k].lo;
			hi = set->r[k].hi;
			if (hi == IMAP_SEQ_STAR) {
				if (lo == IMAP_SEQ_STAR || lo > star) {
					hi = lo == IMAP_SEQ_STAR ? star : lo;
					lo = star;
				} else {
					hi = star;
				}
			}
			if (hi > star)
				hi = star;
			if (lo <= hi)
				gaps_add(s->mb, lo, hi, &line);
		}
	}
	if (line.len > 0)
		imap_untagged(s, "VANISHED (EARLIER) %s", str_c(&line));
	str_free(&line);
	free(uids);
}

/* Drop the expunged messages and tell the client of those it knew:
 * one that arrived and went between two reports was never announced,
 * so it gets no EXPUNGE (its number was never valid for the client). */
void
imap_report_expunges(struct imap_session *s)
{
	uint32_t *seqs = NULL, *uids = NULL;
	size_t n = 0, nv = 0;

	mbox_purge_uids(s->mb, &seqs, s->qresync ? &uids : NULL, &n);
	/* descending, so each number is the client's at that moment */
	for (size_t i = 0; i < n; i++) {
		if (seqs[i] > s->known)
			continue;
		if (uids != NULL)
			uids[nv++] = uids[i];	/* VANISHED, RFC 7162 3.2.10 */
		else
			imap_untagged(s, "%u EXPUNGE", seqs[i]);
		s->known--;
	}
	if (nv > 0) {
		str_t line = STR_INIT;

		/* ascending for the set */
		for (size_t a = 0, b = nv - 1; a < b; a++, b--) {
			uint32_t t = uids[a];

			uids[a] = uids[b];
			uids[b] = t;
		}
		imap_seqset_format(uids, nv, &line);
		imap_untagged(s, "VANISHED %s", str_c(&line));
		str_free(&line);
	}
	free(seqs);
	free(uids);
}

/*
 * The selected folder was deleted or re-created under the session
 * (another session's DELETE and CREATE, or a new UIDVALIDITY). Dovecot
 * ends such a session with BYE; here it goes on as if the folder had
 * become unavailable: it is told once, with an untagged NO
 * [UNAVAILABLE], its view is closed (the handle, and with it the IDLE
 * watch, released; nothing more is written to the folder), and until it
 * SELECTs again, CLOSEs or UNSELECTs, every command that needs the
 * selected folder gets NO [UNAVAILABLE] at once (imap_lost_command),
 * without touching the disk. One log line per session, not one per
 * command or IDLE wakeup.
 */
static void
mailbox_lost(struct imap_session *s, const char *err)
{
	log_info("%016llx: %s: mailbox %s closed", SID(&s->base), err,
	    s->mbox_name != NULL ? s->mbox_name : "");
	imap_untagged(s, "NO [UNAVAILABLE] The selected mailbox was deleted "
	    "or re-created; select it again");
	mbox_close(&s->mb);
	s->known = 0;
	imap_searchres_clear(s);	/* RFC 5182 2.1: a new UIDVALIDITY */
	imap_contexts_clear(s);
}

void
imap_lost_command(struct imap_session *s, const struct imap_command *def)
{
	if (strcmp(def->name, "CLOSE") == 0 ||
	    strcmp(def->name, "UNSELECT") == 0) {
		imap_close_mailbox(s);
		s->state = S_AUTH;
		imap_ok(s, "%s completed.", strcmp(def->name, "CLOSE") == 0 ?
		    "Close" : "Unselect");
		return;
	}
	imap_no(s, "[UNAVAILABLE] The selected mailbox was deleted or "
	    "re-created; select it again");
}

void
imap_sync_report(struct imap_session *s, bool allow_expunge)
{
	const char *err;
	size_t added = 0;
	uint32_t *uids;
	long nchanged;
	size_t announced;
	int r;

	if (s->mb == NULL)
		return;
	if ((r = mbox_sync(s->mb, &added, &err)) < 0) {
		if (r == -2)
			mailbox_lost(s, err);
		else
			log_error("%016llx: sync %s: %s", SID(&s->base),
			    s->mb->path, err);
		return;
	}
	if (allow_expunge)
		imap_report_expunges(s);
	if (keyword_mask(s->mb) != s->known_keywords)
		imap_report_flags(s);
	announced = s->known;
	if (s->mb->n != s->known) {
		for (size_t i = s->known; s->readonly && i < s->mb->n; i++) {
			struct mbox_msg *m = mbox_msg(s->mb, i);

			if (!m->in_cur && !m->recent) {
				m->recent = true;
				s->mb->nrecent++;
			}
		}
		imap_untagged(s, "%zu EXISTS", s->mb->n);
		if (!s->rev2)
			imap_untagged(s, "%zu RECENT", s->mb->nrecent);
		s->known = s->mb->n;
	}
	/* the messages whose flags changed, without a walk of the whole
	 * folder (unless too many changed to keep track of) */
	nchanged = mbox_take_changed(s->mb, &uids);
	for (long k = 0; nchanged < 0 ? k < (long)s->mb->n : k < nchanged;
	    k++) {
		long i = nchanged < 0 ? k : mbox_find_uid(s->mb, uids[k]);
		struct mbox_msg *m;

		if (i < 0)
			continue;
		m = mbox_msg(s->mb, i);
		if (!m->flags_changed || m->expunged)
			continue;
		m->flags_changed = false;
		/* one just announced: the client has not seen its flags */
		if ((size_t)i >= announced)
			continue;
		imap_fetch_flags_line(s, (size_t)i, true);
	}
	free(uids);
	/* RFC 7162 3.2: expunges held back (FETCH, STORE, SEARCH) while
	 * MODSEQs went out: a HIGHESTMODSEQ from before them, so that a
	 * client that loses the connection asks again from there */
	if (!mbox_has_expunged(s->mb)) {
		s->told_modseq = mbox_highestmodseq(s->mb);
		/* RFC 5267: the client knows every message now */
		imap_contexts_report(s);
	} else if (s->qresync)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Expunges pending.",
		    (unsigned long long)s->told_modseq);
}

void
imap_close_mailbox(struct imap_session *s)
{
	if (s->mb != NULL)
		mbox_close(&s->mb);
	free(s->mbox_name);
	s->mbox_name = NULL;
	s->readonly = false;
	s->known = 0;
	imap_searchres_clear(s);
	imap_contexts_clear(s);
}

void
imap_searchres_clear(struct imap_session *s)
{
	free(s->searchres);
	s->searchres = NULL;
	s->nsearchres = 0;
}

/* ---- sequence sets ---- */

/* The indexes of the messages a set names, ascending, without repeats.
 * A sequence number beyond the mailbox is an error (-1); UIDs that do
 * not exist are simply not there (RFC 3501 6.4.8). "$" (RFC 5182) is
 * the saved search result, in either form: the messages still there. */
/* First index in msgs with uid >= v. */
static size_t
uid_lower_bound(const struct mbox *mb, uint64_t v)
{
	size_t a = 0, b = mb->n;

	while (a < b) {
		size_t mid = a + (b - a) / 2;

		if (mbox_msg(mb, mid)->uid < v)
			a = mid + 1;
		else
			b = mid;
	}
	return a;
}

struct span {
	size_t a, b;		/* indexes [a, b) */
};

static int
span_cmp(const void *x, const void *y)
{
	const struct span *p = x, *q = y;

	return p->a < q->a ? -1 : p->a > q->a;
}

static void
resolve_saved(const struct imap_session *s, size_t **idx_r, size_t *n_r)
{
	size_t *idx = xmalloc((s->nsearchres + 1) * sizeof(*idx)), n = 0;

	for (size_t k = 0; k < s->nsearchres; k++) {
		long i = mbox_find_uid(s->mb, s->searchres[k]);

		if (i >= 0)
			idx[n++] = (size_t)i;
	}
	*idx_r = idx;
	*n_r = n;
}

int
imap_resolve_set(const struct imap_session *s, const char *text, bool uid,
    size_t **idx_r, size_t *n_r)
{
	const struct mbox *mb = s->mb;
	struct imap_seqset set;
	struct span *sp;
	size_t *idx, n = 0, ns = 0, total = 0, end = 0;

	*idx_r = NULL;
	*n_r = 0;
	if (strcmp(text, "$") == 0) {
		resolve_saved(s, idx_r, n_r);
		return 0;
	}
	if (imap_seqset_parse(text, &set) < 0)
		return -1;
	/* each range becomes a span of indexes; sorted and merged, they
	 * give the answer in the size of the answer, not of the folder */
	sp = xcalloc(set.n + 1, sizeof(*sp));
	for (size_t r = 0; r < set.n; r++) {
		uint32_t lo = set.r[r].lo, hi = set.r[r].hi;
		uint32_t star = uid ? (mb->n > 0 ? mbox_msg(mb, mb->n - 1)->uid : 0) :
		    (uint32_t)mb->n;

		if (lo == IMAP_SEQ_STAR)
			lo = star;
		if (hi == IMAP_SEQ_STAR)
			hi = star;
		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (!uid) {
			if (hi > mb->n || lo == 0) {
				free(sp);
				imap_seqset_free(&set);
				return -1;
			}
			sp[ns].a = lo - 1;
			sp[ns].b = hi;
		} else {
			sp[ns].a = uid_lower_bound(mb, lo);
			sp[ns].b = uid_lower_bound(mb, (uint64_t)hi + 1);
		}
		if (sp[ns].a < sp[ns].b)
			ns++;
	}
	imap_seqset_free(&set);
	qsort(sp, ns, sizeof(*sp), span_cmp);
	for (size_t r = 0; r < ns; r++) {
		size_t a = sp[r].a > end ? sp[r].a : end;

		if (sp[r].b > a)
			total += sp[r].b - a;
		if (sp[r].b > end)
			end = sp[r].b;
	}
	idx = xmalloc((total + 1) * sizeof(*idx));
	end = 0;
	for (size_t r = 0; r < ns; r++) {
		for (size_t i = sp[r].a > end ? sp[r].a : end; i < sp[r].b; i++)
			idx[n++] = i;
		if (sp[r].b > end)
			end = sp[r].b;
	}
	free(sp);
	*idx_r = idx;
	*n_r = n;
	return 0;
}

/* ---- reading a message ---- */

/* Open a message's file: a regular file, never through a symbolic link
 * (one may replace it after the listing). On a vanished file the
 * mailbox is synced once (another session may have renamed it for a
 * flag change) and the open retried. The fd and its fstat() in *st, or
 * -1 when the message is gone. */
static int
open_message(struct imap_session *s, size_t i, struct stat *st)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct mbox_msg *m = mbox_msg(s->mb, i);
		char *path = mbox_msg_path(s->mb, m);
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
		    O_NONBLOCK);

		free(path);
		if (fd >= 0 && (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))) {
			close(fd);
			return -1;
		}
		if (fd < 0 && errno == ELOOP)
			return -1;
		if (fd < 0) {
			const char *err;

			if (m->expunged || attempt > 0 ||
			    mbox_sync(s->mb, NULL, &err) < 0)
				return -1;
			continue;
		}
		return fd;
	}
	return -1;
}

/* The message file's bytes as stored (LF or CRLF line ends) into *raw
 * (malloc'd, NUL-terminated) and *len; a message whose sizes were still
 * pending learns them. 0 ok, -1 gone. */
int
imap_read_message(struct imap_session *s, size_t i, char **raw, size_t *len)
{
	struct stat st;
	int fd = open_message(s, i, &st), r;

	if (fd < 0)
		return -1;
	r = read_fd_all(fd, raw, len, &st);
	close(fd);
	if (r < 0)
		return -1;
	if (*len == (size_t)st.st_size && mbox_msg(s->mb, i)->info_pending)
		mbox_msg_learn(s->mb, i, &st, mime_crlf_size(*raw, *len));
	return 0;
}

int
imap_read_header(struct imap_session *s, size_t i, size_t max, char **raw,
    size_t *len)
{
	struct stat st;
	int fd = open_message(s, i, &st);
	size_t n = 0, cap = 0;
	char *buf = NULL;

	if (fd < 0)
		return -1;
	while (n < max) {
		size_t want = max - n < 8192 ? max - n : 8192;
		size_t from = n > 2 ? n - 2 : 0;
		ssize_t got;

		if (cap < n + want + 1) {
			cap = n + want + 1;
			buf = xrealloc(buf, cap);
		}
		got = read(fd, buf + n, want);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			close(fd);
			free(buf);
			return -1;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		/* no header at all: the file starts with the empty line */
		if (from == 0 && (buf[0] == '\n' || (n > 1 &&
		    buf[0] == '\r' && buf[1] == '\n'))) {
			n = 0;
			goto done;
		}
		/* the empty line that ends the header */
		for (size_t k = from; k + 1 < n; k++) {
			if (buf[k] == '\n' && (buf[k + 1] == '\n' ||
			    (buf[k + 1] == '\r' && k + 2 < n &&
			    buf[k + 2] == '\n'))) {
				n = k + 1;
				goto done;
			}
		}
	}
done:
	close(fd);
	if (buf == NULL)
		buf = xcalloc(1, 1);
	buf[n] = '\0';
	*raw = buf;
	*len = n;
	return 0;
}

/* The message in wire form (CRLF) into out. 0 ok, -1 gone. */
int
imap_load_message(struct imap_session *s, size_t i, str_t *out)
{
	char *raw;
	size_t len;

	if (imap_read_message(s, i, &raw, &len) < 0)
		return -1;
	str_truncate(out, 0);
	mime_to_crlf(raw, len, out);
	free(raw);
	return 0;
}

/* ---- flag names (STORE, APPEND) ---- */

/* A flag list into Maildir letters. 0 ok; -1 BAD (set on s). */
int
imap_flags_to_letters(struct imap_session *s, const struct imap_arg *args,
    size_t n, bool create, char *out, size_t outsz)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		char letter = 0;

		if (a->type == IMAP_ARG_LIST) {
			if (i != 0 || n != 1)
				goto bad;
			return imap_flags_to_letters(s, a->list, a->nlist,
			    create, out, outsz);
		}
		if (a->type != IMAP_ARG_ATOM || a->str[0] == '\0')
			goto bad;
		if (a->str[0] == '\\') {
			for (size_t k = 0; k < NSYSFLAGS; k++)
				if (strcasecmp(a->str, sysflags[k].name) == 0)
					letter = sysflags[k].letter;
			if (letter == 0)
				goto bad;
		} else {
			/* a keyword is an atom (RFC 3501 9) */
			for (const char *k = a->str; *k != '\0'; k++)
				if ((unsigned char)*k <= 0x20 ||
				    (unsigned char)*k >= 0x7f ||
				    strchr("(){%*\"\\[]", *k) != NULL)
					goto bad;
			letter = mbox_keyword_letter(s->mb, a->str, create);
			if (letter == 0) {
				if (create) {
					imap_no(s, "[LIMIT] Too many keywords "
					    "in this mailbox");
					return -1;
				}
				continue;	/* removing an unknown one */
			}
		}
		if (len + 1 < outsz && strchr(out, letter) == NULL) {
			out[len++] = letter;
			out[len] = '\0';
		}
	}
	return 0;
bad:
	imap_bad(s, "Invalid flag list");
	return -1;
}

/* ---- the target of COPY, MOVE, APPEND ---- */

/* Open the target of COPY, MOVE or APPEND: the selected mailbox's own
 * handle when it is the same folder. NULL with a NO set. */
struct mbox *
imap_open_target(struct imap_session *s, const char *name, bool *own_r)
{
	const char *err;
	char *path;
	struct mbox *mb = NULL;
	struct stat st;

	*own_r = false;
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return NULL;
	/* lstat: a symbolic link is no mailbox (docs/security.md) */
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		imap_no(s, "[TRYCREATE] No such mailbox");
		free(path);
		return NULL;
	}
	if (s->mb != NULL && strcmp(s->mb->path, path) == 0 && !s->readonly) {
		free(path);
		*own_r = true;
		return s->mb;
	}
	if (mbox_open(path, true, &mb, &err) < 0) {
		log_error("%016llx: open %s: %s", SID(&s->base), path, err);
		imap_no(s, "[SERVERBUG] Cannot open the mailbox");
		mb = NULL;
	}
	free(path);
	return mb;
}
