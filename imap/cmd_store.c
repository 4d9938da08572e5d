/*
 * cmd_store.c: STORE and UID STORE. They run on job threads.
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

/* ---- STORE ---- */

/* "(UNCHANGEDSINCE n)" (RFC 7162 3.1.3). 0 ok, -1 not valid. */
static int
store_mods(const struct imap_arg *a, uint64_t *since_r)
{
	char *end;

	if (a->nlist != 2 || a->list[0].type != IMAP_ARG_ATOM ||
	    strcasecmp(a->list[0].str, "UNCHANGEDSINCE") != 0 ||
	    a->list[1].type != IMAP_ARG_ATOM ||
	    a->list[1].str[0] < '0' || a->list[1].str[0] > '9')
		return -1;
	errno = 0;
	*since_r = strtoull(a->list[1].str, &end, 10);
	if (errno != 0 || *end != '\0' || *since_r > INT64_MAX)
		return -1;
	return 0;
}

void
imap_cmd_store(struct imap_session *s, struct imap_cmd *c)
{
	const char *item, *err;
	char want[64];
	size_t *idx = NULL, n = 0, nshow = 0, nmod = 0;
	uint32_t *modified = NULL;
	bool silent, add, del, cond = false;
	uint64_t since = 0;
	const struct imap_arg *args = c->args;
	size_t nargs = c->nargs;

	if (nargs >= 2 && args[1].type == IMAP_ARG_LIST) {
		if (store_mods(&args[1], &since) < 0) {
			imap_bad(s, "Invalid STORE modifiers");
			return;
		}
		cond = true;
		/* the modifier out of the way: set, item, flags */
		args++;
		nargs--;
	}
	if (nargs < 3 || c->args[0].type != IMAP_ARG_ATOM ||
	    args[1].type != IMAP_ARG_ATOM) {
		imap_bad(s, "STORE needs a sequence set, an item and flags");
		return;
	}
	item = args[1].str;
	add = item[0] == '+';
	del = item[0] == '-';
	if (add || del)
		item++;
	if (strcasecmp(item, "FLAGS") == 0)
		silent = false;
	else if (strcasecmp(item, "FLAGS.SILENT") == 0)
		silent = true;
	else {
		imap_bad(s, "Unknown STORE item");
		return;
	}
	if (s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		return;
	}
	if (imap_flags_to_letters(s, args + 2, nargs - 2, !del, want,
	    sizeof(want)) < 0)
		return;
	if (imap_resolve_set(s, c->args[0].str, c->uid, &idx, &n) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	if (cond)
		imap_condstore_enable(s);
	for (size_t k = 0; k < n; k++) {
		struct mbox_msg *m = mbox_msg(s->mb, idx[k]);
		char next[64], norm[MAILDIR_FLAGS_MAX + 1];
		char cur[MAILDIR_FLAGS_MAX + 1];
		size_t len = 0;
		int r = 0;

		if (m->expunged)
			continue;
		for (const char *p = mbox_msg_flags(m, cur); *p != '\0'; p++) {
			bool keep;

			if (add || del)
				keep = !del || strchr(want, *p) == NULL;
			else	/* FLAGS replaces what IMAP shows */
				keep = strchr("DFRST", *p) == NULL &&
				    !(*p >= 'a' && *p <= 'z');
			if (keep && len + 1 < sizeof(next))
				next[len++] = *p;
		}
		if (!del)
			for (const char *p = want; *p != '\0'; p++)
				if (len + 1 < sizeof(next) &&
				    memchr(next, *p, len) == NULL)
					next[len++] = *p;
		next[len] = '\0';
		/* UNCHANGEDSINCE: a message changed since fails the test
		 * even when the store would change nothing; 0 fails for
		 * every message (RFC 7162 3.1.3) */
		if (cond && (since == 0 || m->modseq > since))
			r = 2;
		else if (maildir_flags_normalize(next, len, norm) == 0 &&
		    mbox_flags_bits(norm) != m->flagbits &&
		    (r = mbox_set_flags_cond(s->mb, idx[k], norm, cond ?
		    since : 0, &err)) < 0)
			log_warn("%016llx: %s", SID(&s->base), err);
		m = mbox_msg(s->mb, idx[k]);
		if (r == 2) {
			modified = xrealloc(modified, (nmod + 1) *
			    sizeof(*modified));
			modified[nmod++] = c->uid ? m->uid :
			    (uint32_t)(idx[k] + 1);
			continue;
		}
		m->flags_changed = false;
		idx[nshow++] = idx[k];
	}
	/* published first, so that the FETCH responses name the new
	 * modseqs */
	mbox_flush(s->mb, &err);
	for (size_t k = 0; k < nshow; k++) {
		const struct mbox_msg *m = mbox_msg(s->mb, idx[k]);

		if (!silent) {
			imap_fetch_flags_line(s, idx[k], c->uid);
			continue;
		}
		/* RFC 7162 3.1.3: the new modseq even with .SILENT */
		if (s->condstore && !m->expunged) {
			if (c->uid)
				imap_untagged(s, "%zu FETCH (UID %u MODSEQ "
				    "(%llu))", idx[k] + 1, m->uid,
				    (unsigned long long)m->modseq);
			else
				imap_untagged(s, "%zu FETCH (MODSEQ (%llu))",
				    idx[k] + 1,
				    (unsigned long long)m->modseq);
		}
	}
	free(idx);
	if (nmod > 0) {
		str_t set = STR_INIT;

		/* ascending (idx was) */
		imap_seqset_format(modified, nmod, &set);
		imap_ok(s, "[MODIFIED %s] Conditional STORE failed.",
		    str_c(&set));
		str_free(&set);
	} else {
		imap_ok(s, "Store completed.");
	}
	free(modified);
}
