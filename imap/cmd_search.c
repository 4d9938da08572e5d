/*
 * cmd_search.c: SEARCH and UID SEARCH (keys parsed and matched by
 * lib/imap/search.c), their RETURN options (ESEARCH, SEARCHRES, RFC
 * 5267's PARTIAL and UPDATE), the updating searches and sorts of
 * CONTEXT=SEARCH/SORT and CANCELUPDATE. They run on job threads.
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

/* One end of a PARTIAL range: an nz-number, after "-" when negative
 * (RFC 9394 3.1); the rest of the text at *end. 0 when bad. */
static uint32_t
partial_end(const char *p, bool *neg, const char **end)
{
	uint64_t v = 0;

	*neg = *p == '-';
	if (*neg)
		p++;
	if (*p < '1' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return 0;
	}
	*end = p;
	return (uint32_t)v;
}

/* "x:y" or "-x:-y" (either order) into p; -1 when bad. */
static int
parse_partial(const struct imap_arg *a, struct imap_partial *p)
{
	const char *s, *e;
	uint32_t x, y;
	bool nx, ny;

	if (a->type != IMAP_ARG_ATOM)
		return -1;
	s = a->str;
	if ((x = partial_end(s, &nx, &e)) == 0 || *e != ':')
		return -1;
	if ((y = partial_end(e + 1, &ny, &e)) == 0 || *e != '\0' || nx != ny)
		return -1;
	p->neg = nx;
	p->lo = x < y ? x : y;
	p->hi = x < y ? y : x;
	return 0;
}

void
imap_partial_span(const struct imap_partial *p, size_t n, size_t *from,
    size_t *to)
{
	size_t lo = p->lo, hi = p->hi;

	if (lo > n) {
		*from = *to = 0;
		return;
	}
	if (hi > n)
		hi = n;
	if (p->neg) {
		*from = n - hi;
		*to = n - lo + 1;
	} else {
		*from = lo - 1;
		*to = hi;
	}
}

/* ESEARCH (RFC 4731): SEARCH RETURN (MIN MAX ALL COUNT) answers with
 * one "* ESEARCH (TAG ...)" line instead of "* SEARCH" with every
 * number. SEARCHRES (RFC 5182): SAVE keeps the result as "$" for later
 * commands (alone, it answers nothing but the tagged OK). PARTIAL x:y
 * (RFC 5267 4.4; -x:-y counting from the end, RFC 9394) answers the
 * x-th to the y-th message found; not with ALL. */
int
imap_search_parse_return(const struct imap_arg *args, size_t n, unsigned *ret_r,
    struct imap_partial *part_r, size_t *skip_r, const char **error_r)
{
	static const struct { const char *name; unsigned bit; } opts[] = {
		{ "MIN", RET_MIN }, { "MAX", RET_MAX }, { "ALL", RET_ALL },
		{ "COUNT", RET_COUNT }, { "SAVE", RET_SAVE },
		{ "PARTIAL", RET_PARTIAL }, { "UPDATE", RET_UPDATE },
	};
	const struct imap_arg *l;

	*ret_r = 0;
	*skip_r = 0;
	memset(part_r, 0, sizeof(*part_r));
	if (n == 0 || args[0].type != IMAP_ARG_ATOM ||
	    strcasecmp(args[0].str, "RETURN") != 0)
		return 0;
	if (n < 2 || args[1].type != IMAP_ARG_LIST) {
		*error_r = "RETURN needs a list of options";
		return -1;
	}
	l = &args[1];
	for (size_t i = 0; i < l->nlist; i++) {
		size_t k;

		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
			if (l->list[i].type == IMAP_ARG_ATOM &&
			    strcasecmp(l->list[i].str, opts[k].name) == 0)
				break;
		}
		if (k == sizeof(opts) / sizeof(opts[0])) {
			*error_r = "Unknown RETURN option";
			return -1;
		}
		if (opts[k].bit == RET_PARTIAL) {
			if ((*ret_r & RET_PARTIAL) || i + 1 == l->nlist ||
			    parse_partial(&l->list[i + 1], part_r) < 0) {
				*error_r = "PARTIAL needs one range x:y or "
				    "-x:-y of nonzero numbers";
				return -1;
			}
			i++;
		}
		*ret_r |= opts[k].bit;
	}
	if (*ret_r == 0)
		*ret_r = RET_ALL;	/* "RETURN ()" means ALL */
	if ((*ret_r & (RET_ALL | RET_PARTIAL)) == (RET_ALL | RET_PARTIAL)) {
		*error_r = "PARTIAL and ALL cannot be combined";
		return -1;
	}
	*skip_r = 2;
	return 0;
}

void
imap_esearch_reply(struct imap_session *s, const struct imap_cmd *c,
    unsigned ret, const struct imap_partial *part, const uint32_t *hits,
    size_t nhits, uint64_t modseq)
{
	str_t res = STR_INIT;

	str_printf(&res, "ESEARCH (TAG \"%s\")%s", c->tag,
	    c->uid ? " UID" : "");
	if (nhits > 0 && (ret & RET_MIN))
		str_printf(&res, " MIN %u", (unsigned)hits[0]);
	if (nhits > 0 && (ret & RET_MAX))
		str_printf(&res, " MAX %u", (unsigned)hits[nhits - 1]);
	if (ret & RET_COUNT)
		str_printf(&res, " COUNT %zu", nhits);
	if (nhits > 0 && (ret & RET_ALL)) {
		str_append(&res, " ALL ");
		imap_seqset_format(hits, nhits, &res);
	}
	if (ret & RET_PARTIAL) {
		size_t from, to;
		const char *sign = part->neg ? "-" : "";

		/* always there, NIL when the range holds nothing */
		imap_partial_span(part, nhits, &from, &to);
		str_printf(&res, " PARTIAL (%s%u:%s%u ", sign,
		    (unsigned)part->lo, sign, (unsigned)part->hi);
		if (from < to)
			imap_seqset_format(hits + from, to - from, &res);
		else
			str_append(&res, "NIL");
		str_append_c(&res, ')');
	}
	if (nhits > 0 && modseq != 0)
		str_printf(&res, " MODSEQ %llu", (unsigned long long)modseq);
	imap_untagged(s, "%s", str_c(&res));
	str_free(&res);
}

void
imap_search_run(struct imap_session *s, const struct search_key *root,
    size_t **idx_r, size_t *n_r)
{
	size_t *idx = NULL, nidx = 0, cap = 0;
	const char *err = NULL;
	bool need_info = imap_search_needs_info(root);
	bool need_emailid = imap_search_needs_emailid(root);
	bool need_savedate = imap_search_needs_savedate(root);
	/* a re-sync below may append messages: they are not the client's
	 * yet */
	size_t n = s->mb->n;

	for (size_t i = 0; i < n; i++) {
		struct mbox_msg *m = mbox_msg(s->mb, i);
		struct search_ctx sc = { s, i, STR_INIT, 0 };

		if (need_info && m->info_pending) {
			int r = mbox_msg_info(s->mb, i, &err);

			if (r < 0)
				log_warn("%016llx: %s", SID(&s->base), err);
			if (r != 0)
				continue;	/* gone: no match */
			m = mbox_msg(s->mb, i);
		}
		/* loading the message may re-sync and move msgs: keep
		 * nothing that points into it */
		char flags[MAILDIR_FLAGS_MAX + 1];
		char emailid[MBOX_OBJECTID_MAX + 1];
		uint32_t uid = m->uid;

		mbox_msg_flags(m, flags);
		if (need_emailid)
			mbox_emailid(m->name, emailid);
		struct search_msg sm = {
			.seq = (uint32_t)(i + 1), .uid = uid,
			.max_seq = (uint32_t)n,
			.max_uid = n > 0 ? mbox_msg(s->mb, n - 1)->uid : 0,
			.flags = flags,
			.emailid = need_emailid ? emailid : NULL,
			.recent = m->recent,
			.size = m->vsize, .internaldate = m->internaldate,
			.savedate = need_savedate ? mbox_savedate(m->name) :
			    -1,
			.modseq = m->modseq,
			.keyword_letter = search_keyword, .load = search_load,
			.ctx = &sc, .saved = s->searchres,
			.nsaved = s->nsearchres,
		};

		if (imap_search_match(root, &sm)) {
			if (nidx == cap) {
				cap = cap ? cap * 2 : 64;
				idx = xrealloc(idx, cap * sizeof(*idx));
			}
			idx[nidx++] = i;
		}
		str_free(&sc.wire);
	}
	*idx_r = idx;
	*n_r = nidx;
}

/* Whether the k-th of n messages found is one the answer returns:
 * all of them with ALL or COUNT or nothing else; else those MIN, MAX
 * and PARTIAL return (RFC 5182 2.4; PARTIAL likewise, RFC 9394 3.2). */
static bool
returned(unsigned ret, const struct imap_partial *part, size_t k, size_t n)
{
	size_t from, to;

	if ((ret & (RET_ALL | RET_COUNT)) != 0 ||
	    (ret & (RET_MIN | RET_MAX | RET_PARTIAL)) == 0)
		return true;
	if (((ret & RET_MIN) && k == 0) || ((ret & RET_MAX) && k == n - 1))
		return true;
	if (ret & RET_PARTIAL) {
		imap_partial_span(part, n, &from, &to);
		return k >= from && k < to;
	}
	return false;
}

/* SEARCHRES: "$" becomes what the SEARCH found (the messages idx, all
 * n of them, ascending), as UIDs; with MIN, MAX and/or PARTIAL but
 * neither ALL nor COUNT, only those. */
static void
save_result(struct imap_session *s, unsigned ret,
    const struct imap_partial *part, const size_t *idx, size_t n)
{
	size_t k = 0;

	imap_searchres_clear(s);
	if (n == 0)
		return;
	s->searchres = xmalloc(n * sizeof(*s->searchres));
	for (size_t j = 0; j < n; j++) {
		if (returned(ret, part, j, n))
			s->searchres[k++] = mbox_msg(s->mb, idx[j])->uid;
	}
	s->nsearchres = k;
}

void
imap_cmd_search(struct imap_session *s, struct imap_cmd *c)
{
	struct search_key *root = NULL;
	const char *err = NULL;
	str_t res = STR_INIT;
	uint32_t *hits = NULL;
	size_t *idx, nidx, skip;
	uint64_t modseq = 0;
	struct imap_partial part;
	unsigned ret;
	int rc;

	if (imap_search_parse_return(c->args, c->nargs, &ret, &part, &skip,
	    &err) < 0) {
		imap_bad(s, "%s", err);
		return;
	}
	/* RFC 9051 6.4.4: without RETURN, IMAP4rev2 answers ESEARCH ALL */
	if (ret == 0 && s->rev2)
		ret = RET_ALL;
	rc = imap_search_parse(c->args + skip, c->nargs - skip, &root, &err);
	if (rc == -2) {
		/* a failed SEARCH with SAVE empties "$" (RFC 5182 2.1) */
		if (ret & RET_SAVE)
			imap_searchres_clear(s);
		imap_no(s, "%s", err);
		return;
	}
	if (rc < 0) {
		imap_bad(s, "%s", err != NULL ? err : "Invalid search");
		return;
	}
	imap_search_run(s, root, &idx, &nidx);
	if (nidx > 0)
		hits = xcalloc(nidx, sizeof(*hits));
	for (size_t k = 0; k < nidx; k++)
		hits[k] = c->uid ? mbox_msg(s->mb, idx[k])->uid :
		    (uint32_t)(idx[k] + 1);
	if (imap_search_has_modseq(root)) {
		/* RFC 7162 3.1.5: the highest modseq of the messages
		 * returned (MIN, MAX and PARTIAL alone: of those) */
		imap_condstore_enable(s);
		for (size_t k = 0; k < nidx; k++) {
			uint64_t v = mbox_msg(s->mb, idx[k])->modseq;

			if (ret != 0 && !returned(ret, &part, k, nidx))
				continue;
			if (v > modseq)
				modseq = v;
		}
	}
	if (ret == 0) {
		str_append(&res, "SEARCH");
		for (size_t k = 0; k < nidx; k++)
			str_printf(&res, " %u", (unsigned)hits[k]);
		if (nidx > 0 && modseq != 0)
			str_printf(&res, " (MODSEQ %llu)",
			    (unsigned long long)modseq);
		imap_untagged(s, "%s", str_c(&res));
	} else if (ret != RET_SAVE) {
		imap_esearch_reply(s, c, ret, &part, hits, nidx, modseq);
	}
	if (ret & RET_SAVE)
		save_result(s, ret, &part, idx, nidx);
	if (ret & RET_UPDATE) {
		uint32_t *uids = xcalloc(nidx > 0 ? nidx : 1, sizeof(*uids));

		for (size_t k = 0; k < nidx; k++)
			uids[k] = mbox_msg(s->mb, idx[k])->uid;
		imap_context_add(s, c, root, NULL, uids, nidx);
		root = NULL;
		free(uids);
	}
	free(idx);
	free(hits);
	str_free(&res);
	imap_search_free(root);
	imap_ok(s, "Search completed.");
}

/* ---- CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4) ---- */

static void
context_free(struct imap_context *x)
{
	free(x->tag);
	imap_search_free(x->root);
	free(x->uids);
}

static void
context_mark(struct imap_session *s, struct imap_context *x)
{
	x->modseq = mbox_highestmodseq(s->mb);
	x->nmsgs = s->mb->n;
	x->uidnext = s->mb->uidnext;
}

void
imap_context_add(struct imap_session *s, const struct imap_cmd *c,
    struct search_key *root, const struct sort_prog *prog,
    const uint32_t *uids, size_t n)
{
	struct imap_context *x = NULL;

	/* a tag used again: the new search replaces the old one */
	for (size_t k = 0; k < s->ncontexts; k++) {
		if (strcmp(s->contexts[k].tag, c->tag) == 0) {
			x = &s->contexts[k];
			context_free(x);
			break;
		}
	}
	if (x == NULL) {
		if (s->ncontexts >= IMAP_CONTEXTS_MAX) {
			imap_untagged(s, "NO [NOUPDATE \"%s\"] At most %d "
			    "updating searches at once", c->tag,
			    IMAP_CONTEXTS_MAX);
			imap_search_free(root);
			return;
		}
		s->contexts = xrealloc(s->contexts, (s->ncontexts + 1) *
		    sizeof(*s->contexts));
		x = &s->contexts[s->ncontexts++];
	}
	memset(x, 0, sizeof(*x));
	x->tag = xstrdup(c->tag);
	x->uid = c->uid;
	x->root = root;
	if (prog != NULL) {
		x->sort = true;
		x->prog = *prog;
	}
	x->uids = xcalloc(n > 0 ? n : 1, sizeof(*x->uids));
	memcpy(x->uids, uids, n * sizeof(*uids));
	x->n = n;
	context_mark(s, x);
}

void
imap_contexts_clear(struct imap_session *s)
{
	for (size_t k = 0; k < s->ncontexts; k++)
		context_free(&s->contexts[k]);
	free(s->contexts);
	s->contexts = NULL;
	s->ncontexts = 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Whether uid is in v (sorted copy, n of them). */
static bool
has_uid(const uint32_t *v, size_t n, uint32_t uid)
{
	return n > 0 && bsearch(&uid, v, n, sizeof(*v), cmp_u32) != NULL;
}

/* The number the client knows a message by: its UID for a UID search,
 * else its sequence number (0 when it is gone). */
static uint32_t
client_number(struct imap_session *s, const struct imap_context *x,
    uint32_t uid)
{
	long i;

	if (x->uid)
		return uid;
	i = mbox_find_uid(s->mb, uid);
	return i < 0 ? 0 : (uint32_t)(i + 1);
}

/* SEARCH: one REMOVEFROM (0 set) and one ADDTO (0 set), the sets
 * ascending. A search by sequence numbers reports no REMOVEFROM for an
 * expunged message: its EXPUNGE told the client. */
static void
report_search(struct imap_session *s, const struct imap_context *x,
    const uint32_t *nw, size_t nn, str_t *line)
{
	uint32_t *v = xcalloc(x->n + nn + 1, sizeof(*v));
	size_t nv = 0;

	for (size_t k = 0; k < x->n; k++) {
		uint32_t num;

		if (!has_uid(nw, nn, x->uids[k]) &&
		    (num = client_number(s, x, x->uids[k])) != 0)
			v[nv++] = num;
	}
	if (nv > 0) {
		str_append(line, " REMOVEFROM (0 ");
		imap_seqset_format(v, nv, line);
		str_append_c(line, ')');
	}
	nv = 0;
	for (size_t k = 0; k < nn; k++) {
		if (!has_uid(x->uids, x->n, nw[k]))
			v[nv++] = client_number(s, x, nw[k]);
	}
	if (nv > 0) {
		str_append(line, " ADDTO (0 ");
		imap_seqset_format(v, nv, line);
		str_append_c(line, ')');
	}
	free(v);
}

/* SORT: REMOVEFROM (position number) from the last to the first, each
 * position the message's in the list as it is then; then ADDTO
 * (position number) in the order of the new list, each position its
 * place in the list once added. A message's sort keys never change, so
 * those that stay keep their order. */
static void
report_sort(struct imap_session *s, const struct imap_context *x,
    const uint32_t *nw, size_t nn, str_t *line)
{
	uint32_t *os = xcalloc(x->n + 1, sizeof(*os));
	uint32_t *ns = xcalloc(nn + 1, sizeof(*ns));

	memcpy(os, x->uids, x->n * sizeof(*os));
	qsort(os, x->n, sizeof(*os), cmp_u32);
	memcpy(ns, nw, nn * sizeof(*ns));
	qsort(ns, nn, sizeof(*ns), cmp_u32);
	for (size_t k = x->n; k-- > 0;) {
		uint32_t num;

		if (has_uid(ns, nn, x->uids[k]))
			continue;
		if ((num = client_number(s, x, x->uids[k])) == 0 && !x->uid)
			continue;	/* expunged: the client knows */
		str_printf(line, " REMOVEFROM (%zu %u)", k + 1, num);
	}
	for (size_t k = 0; k < nn; k++) {
		if (!has_uid(os, x->n, nw[k]))
			str_printf(line, " ADDTO (%zu %u)", k + 1,
			    client_number(s, x, nw[k]));
	}
	free(os);
	free(ns);
}

void
imap_contexts_report(struct imap_session *s)
{
	for (size_t k = 0; s->mb != NULL && k < s->ncontexts; k++) {
		struct imap_context *x = &s->contexts[k];
		uint32_t *nw = NULL;
		size_t nn = 0;
		str_t line = STR_INIT;

		if (x->modseq == mbox_highestmodseq(s->mb) &&
		    x->nmsgs == s->mb->n && x->uidnext == s->mb->uidnext)
			continue;
		if (x->sort) {
			nn = imap_sort_uids(s, x->root, &x->prog, &nw);
		} else {
			size_t *idx;

			imap_search_run(s, x->root, &idx, &nn);
			nw = xcalloc(nn > 0 ? nn : 1, sizeof(*nw));
			for (size_t j = 0; j < nn; j++)
				nw[j] = mbox_msg(s->mb, idx[j])->uid;
			free(idx);
		}
		if (x->sort)
			report_sort(s, x, nw, nn, &line);
		else
			report_search(s, x, nw, nn, &line);
		if (line.len > 0)
			imap_untagged(s, "ESEARCH (TAG \"%s\")%s%s", x->tag,
			    x->uid ? " UID" : "", str_c(&line));
		str_free(&line);
		free(x->uids);
		x->uids = nw;
		x->n = nn;
		context_mark(s, x);
	}
}

/* CANCELUPDATE "tag" ... (RFC 5267 4.3): every tag must name an
 * updating search of the session. */
void
imap_cmd_cancelupdate(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs == 0) {
		imap_bad(s, "CANCELUPDATE needs the tags of searches");
		return;
	}
	for (size_t a = 0; a < c->nargs; a++) {
		const char *tag = c->args[a].type == IMAP_ARG_LIST ? NULL :
		    imap_arg_astring(&c->args[a]);
		size_t k;

		for (k = 0; tag != NULL && k < s->ncontexts; k++)
			if (strcmp(s->contexts[k].tag, tag) == 0)
				break;
		if (tag == NULL || k == s->ncontexts) {
			imap_bad(s, "No updating search with that tag");
			return;
		}
	}
	for (size_t a = 0; a < c->nargs; a++) {
		const char *tag = imap_arg_astring(&c->args[a]);

		for (size_t k = 0; k < s->ncontexts; k++) {
			if (strcmp(s->contexts[k].tag, tag) != 0)
				continue;
			context_free(&s->contexts[k]);
			s->contexts[k] = s->contexts[--s->ncontexts];
			break;
		}
	}
	imap_ok(s, "Updates cancelled.");
}
