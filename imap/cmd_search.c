/*
 * cmd_search.c: SEARCH and UID SEARCH (keys parsed and matched by
 * lib/imap/search.c). They run on job threads.
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

/* ---- SEARCH ---- */

struct search_ctx {
	struct imap_session *s;
	size_t i;
	str_t wire;
	int loaded;		/* 0 not yet, 1 ok, -1 failed */
};

static char
search_keyword(void *ctx, const char *name)
{
	struct search_ctx *sc = ctx;

	return mbox_keyword_letter(sc->s->mb, name, false);
}

static const char *
search_load(void *ctx, size_t *len)
{
	struct search_ctx *sc = ctx;

	if (sc->loaded == 0)
		sc->loaded = imap_load_message(sc->s, sc->i, &sc->wire) == 0 ?
		    1 : -1;
	if (sc->loaded < 0)
		return NULL;
	*len = sc->wire.len;
	return sc->wire.data != NULL ? sc->wire.data : "";
}

void
imap_cmd_search(struct imap_session *s, struct imap_cmd *c)
{
	struct search_key *root = NULL;
	const char *err = NULL;
	str_t res = STR_INIT;
	bool need_info;
	size_t n;
	int rc;

	rc = imap_search_parse(c->args, c->nargs, &root, &err);
	if (rc == -2) {
		imap_no(s, "%s", err);
		return;
	}
	if (rc < 0) {
		imap_bad(s, "%s", err != NULL ? err : "Invalid search");
		return;
	}
	str_append(&res, "SEARCH");
	need_info = imap_search_needs_info(root);
	/* a re-sync below may append messages: they are not the client's
	 * yet */
	n = s->mb->n;
	for (size_t i = 0; i < n; i++) {
		struct mbox_msg *m = &s->mb->msgs[i];
		struct search_ctx sc = { s, i, STR_INIT, 0 };

		if (need_info && m->info_pending) {
			int r = mbox_msg_info(s->mb, i, &err);

			if (r < 0)
				log_warn("%016llx: %s", SID(&s->base), err);
			if (r != 0)
				continue;	/* gone: no match */
			m = &s->mb->msgs[i];
		}
		/* loading the message may re-sync and move msgs: keep
		 * nothing that points into it */
		char flags[sizeof(m->flags)];
		uint32_t uid = m->uid;

		memcpy(flags, m->flags, sizeof(flags));
		struct search_msg sm = {
			.seq = (uint32_t)(i + 1), .uid = uid,
			.max_seq = (uint32_t)n,
			.max_uid = n > 0 ? s->mb->msgs[n - 1].uid : 0,
			.flags = flags, .recent = m->recent,
			.size = m->vsize, .internaldate = m->internaldate,
			.keyword_letter = search_keyword, .load = search_load,
			.ctx = &sc,
		};

		if (imap_search_match(root, &sm))
			str_printf(&res, " %u", c->uid ? uid :
			    (uint32_t)(i + 1));
		str_free(&sc.wire);
	}
	imap_untagged(s, "%s", str_c(&res));
	str_free(&res);
	imap_search_free(root);
	imap_ok(s, "Search completed.");
}
