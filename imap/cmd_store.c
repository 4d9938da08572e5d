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

void
imap_cmd_store(struct imap_session *s, struct imap_cmd *c)
{
	const char *item, *err;
	char want[64];
	size_t *idx = NULL, n = 0;
	bool silent, add, del;

	if (c->nargs < 3 || c->args[0].type != IMAP_ARG_ATOM ||
	    c->args[1].type != IMAP_ARG_ATOM) {
		imap_bad(s, "STORE needs a sequence set, an item and flags");
		return;
	}
	item = c->args[1].str;
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
	if (imap_flags_to_letters(s, c->args + 2, c->nargs - 2, !del, want,
	    sizeof(want)) < 0)
		return;
	if (imap_resolve_set(s, c->args[0].str, c->uid, &idx, &n) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	for (size_t k = 0; k < n; k++) {
		struct mbox_msg *m = &s->mb->msgs[idx[k]];
		char next[64];
		size_t len = 0;

		if (m->expunged)
			continue;
		for (const char *p = m->flags; *p != '\0'; p++) {
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
		{
			char norm[MAILDIR_FLAGS_MAX + 1];

			if (maildir_flags_normalize(next, len, norm) == 0 &&
			    strcmp(norm, m->flags) != 0 &&
			    mbox_set_flags(s->mb, idx[k], norm, &err) < 0)
				log_warn("%016llx: %s", SID(&s->base), err);
		}
		m = &s->mb->msgs[idx[k]];
		m->flags_changed = false;
		if (!silent)
			imap_fetch_flags_line(s, idx[k], c->uid);
	}
	free(idx);
	mbox_flush(s->mb, &err);
	imap_ok(s, "Store completed.");
}
