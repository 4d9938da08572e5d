/*
 * cmd_sort.c: SORT and UID SORT (RFC 5256; RETURN options of ESORT, RFC
 * 5267 section 3; DISPLAYFROM and DISPLAYTO, RFC 5957), THREAD and UID
 * THREAD (RFC 5256: ORDEREDSUBJECT and REFERENCES). The search keys are
 * SEARCH's (lib/imap/search.c); the keys, base subjects and threads are
 * computed by lib/imap/sort.c from each matching message's ENVELOPE in
 * the store's cache, or its header (read up to IMAP_SORT_HEADER_MAX
 * bytes) when the cache has none or THREAD=REFERENCES needs References.
 * They run on job threads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap-private.h"
#include "imap/imap-cmd.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/imap/sort.h"
#include "lib/mime/mime.h"

/* The charset argument of SORT and THREAD (RFC 5256: required, before
 * the search keys). 0 ok; -1 with the reply sent. */
static int
check_charset(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	const char *cs;

	if (n == 0 || (cs = imap_arg_astring(&args[0])) == NULL ||
	    args[0].type == IMAP_ARG_LIST) {
		imap_bad(s, "Missing charset");
		return -1;
	}
	if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
		imap_no(s, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		return -1;
	}
	if (n == 1) {
		imap_bad(s, "Missing search criteria");
		return -1;
	}
	/* the charset is given once, not again as SEARCH's CHARSET */
	if (args[1].type == IMAP_ARG_ATOM &&
	    strcasecmp(args[1].str, "CHARSET") == 0) {
		imap_bad(s, "Unknown search key");
		return -1;
	}
	return 0;
}

/* The search keys after the charset; NULL with the reply sent. */
static struct search_key *
parse_criteria(struct imap_session *s, const struct imap_arg *args,
    size_t n)
{
	struct search_key *root = NULL;
	const char *err = NULL;

	if (check_charset(s, args, n) < 0)
		return NULL;
	if (imap_search_parse(args + 1, n - 1, &root, &err) < 0) {
		imap_bad(s, "%s", err != NULL ? err : "Invalid search");
		return NULL;
	}
	return root;
}

/* The keys of message i made from its cached ENVELOPE (what FETCH
 * ENVELOPE stored), or else from its header, whose ENVELOPE is then
 * cached for the next FETCH: every key (so that one record serves every
 * sort program), and from a header the IDs too. The record of them is
 * added to sr. A file that has gone sorts with empty fields. */
static void
make_keys(struct imap_session *s, size_t i, struct sort_msg *sm,
    unsigned need, struct mbox_sortrecs *sr)
{
	char *env = NULL, *hdr = NULL;
	size_t len = 0;
	str_t wire = STR_INIT, v = STR_INIT, rec = STR_INIT;
	int r;

	if ((need & SORT_NEED_IDS) == 0 &&
	    (env = mbox_cache_get(s->mb, i, MBOX_CACHE_ENVELOPE)) != NULL &&
	    imap_sort_msg_fill_envelope(sm, env, SORT_NEED_KEYS) == 0) {
		imap_sort_rec_encode(sm, false, &rec);
		mbox_sortrecs_add(sr, i, rec.data, rec.len);
		free(env);
		str_free(&rec);
		return;
	}
	if ((r = imap_read_header(s, i, IMAP_SORT_HEADER_MAX, &hdr, &len)) < 0)
		len = 0;
	imap_sort_msg_fill(sm, hdr != NULL ? hdr : "", len,
	    SORT_NEED_KEYS | SORT_NEED_IDS);
	if (r >= 0) {
		/* the same keys every time: the file never changes */
		imap_sort_rec_encode(sm, true, &rec);
		mbox_sortrecs_add(sr, i, rec.data, rec.len);
	}
	/* a header cut at IMAP_SORT_HEADER_MAX may lack what FETCH
	 * ENVELOPE would show: not cached */
	if (env == NULL && hdr != NULL && len < IMAP_SORT_HEADER_MAX) {
		mime_to_crlf(hdr, len, &wire);
		str_append(&wire, "\r\n");
		mime_envelope_header(wire.data, wire.len, &v);
		mbox_cache_put(s->mb, i, MBOX_CACHE_ENVELOPE, str_c(&v));
	}
	free(env);
	free(hdr);
	str_free(&wire);
	str_free(&v);
	str_free(&rec);
}

/* The keys of the matching messages. */
struct sort_keys {
	struct sort_msg *v;	/* n of them */
	char **refs;		/* the References of decoded records */
	struct mbox_sortrecs sr;
};

/* The keys of the matching messages idx[0..n): from the folder's sort
 * records (no allocation per message), else made and recorded for the
 * next command, in this session or another; the header fields need
 * names, and INTERNALDATE and RFC822.SIZE when info. */
static void
load_keys(struct imap_session *s, const size_t *idx, size_t n,
    unsigned need, bool info, struct sort_keys *k)
{
	struct mbox_sortrecs *sr = &k->sr;
	const char *err = NULL;
	size_t nrefs = 0, used = 0;

	k->v = xcalloc(n > 0 ? n : 1, sizeof(*k->v));
	k->refs = NULL;
	if (need != 0)
		mbox_sortrecs_load(s->mb, sr);
	else
		memset(sr, 0, sizeof(*sr));
	if (need & SORT_NEED_IDS) {
		for (size_t j = 0; j < n; j++) {
			if (idx[j] < sr->n && sr->rec[idx[j]] != NULL)
				nrefs += imap_sort_rec_nrefs(sr->rec[idx[j]],
				    sr->len[idx[j]]);
		}
		k->refs = xcalloc(nrefs + 1, sizeof(*k->refs));
	}
	for (size_t j = 0; j < n; j++) {
		size_t i = idx[j];
		struct mbox_msg *m = mbox_msg(s->mb, i);
		struct sort_msg *sm = &k->v[j];

		if (info && m->info_pending &&
		    mbox_msg_info(s->mb, i, &err) < 0)
			log_warn("%016llx: %s", SID(&s->base), err);
		/* the reads may re-sync: msgs may have moved */
		m = mbox_msg(s->mb, i);
		sm->seq = (uint32_t)(i + 1);
		sm->uid = m->uid;
		sm->size = m->vsize;
		sm->internaldate = m->internaldate;
		if (need == 0) {
			imap_sort_msg_fill(sm, "", 0, need);
			continue;
		}
		if (i < sr->n && sr->rec[i] != NULL &&
		    imap_sort_rec_decode(sm, sr->rec[i], sr->len[i], need,
		    k->refs + used, nrefs - used) > 0) {
			used += sm->nrefs;
			continue;
		}
		make_keys(s, i, sm, need, sr);
	}
}

/* Write the new records and free the keys of n messages. */
static void
free_keys(struct sort_keys *k, size_t n)
{
	for (size_t j = 0; j < n; j++)
		imap_sort_msg_clear(&k->v[j]);
	free(k->v);
	free(k->refs);
	mbox_sortrecs_finish(&k->sr);
}

/* ---- the order of recent SORTs ----
 *
 * A message's sort keys never change (its file does not; INTERNALDATE
 * and the size neither), so the order of a set of messages by a program
 * depends on nothing else: a process keeps the order (as UIDs) of its
 * last SORTs, keyed by folder, UIDVALIDITY, program and the set of UIDs
 * found (its count and two 64-bit hashes of the list), and a SORT of the
 * same set, in any session of the process, answers from it without
 * reading a record or sorting. At most SORT_ORDERS orders and
 * SORT_ORDER_BYTES of UIDs; the least recently used go first. */
#define SORT_ORDERS 16
#define SORT_ORDER_BYTES ((size_t)16 << 20)

struct sort_order {
	char *path;		/* NULL: a free slot */
	uint32_t uidvalidity;
	char prog[2 * IMAP_SORT_KEYS_MAX + 1];
	uint64_t h1, h2;
	size_t n;
	uint32_t *uids;		/* n, in order */
	uint64_t used;
};

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sort_order orders[SORT_ORDERS];
static size_t order_bytes;
static uint64_t order_tick;

struct order_key {
	const char *path;
	uint32_t uidvalidity;
	char prog[2 * IMAP_SORT_KEYS_MAX + 1];
	uint64_t h1, h2;
	size_t n;
};

static void
order_key_make(const struct imap_session *s, const struct sort_prog *prog,
    const size_t *idx, size_t n, struct order_key *k)
{
	uint64_t h1 = 14695981039346656037ULL, h2 = 0x9e3779b97f4a7c15ULL;
	size_t j = 0;

	k->path = s->mb->path;
	k->uidvalidity = s->mb->uidvalidity;
	for (size_t i = 0; i < prog->n; i++) {
		k->prog[j++] = (char)('a' + (int)prog->keys[i].kind);
		k->prog[j++] = prog->keys[i].reverse ? 'r' : '-';
	}
	k->prog[j] = '\0';
	for (size_t i = 0; i < n; i++) {
		uint64_t u = mbox_msg(s->mb, idx[i])->uid;

		h1 = (h1 ^ u) * 1099511628211ULL;
		h2 = (h2 ^ u) * 0xbf58476d1ce4e5b9ULL;
		h2 ^= h2 >> 31;
	}
	k->h1 = h1;
	k->h2 = h2;
	k->n = n;
}

static bool
order_match(const struct sort_order *o, const struct order_key *k)
{
	return o->path != NULL && o->n == k->n && o->h1 == k->h1 &&
	    o->h2 == k->h2 && o->uidvalidity == k->uidvalidity &&
	    strcmp(o->prog, k->prog) == 0 && strcmp(o->path, k->path) == 0;
}

/* A copy of the order kept for k, or NULL. */
static uint32_t *
order_get(const struct order_key *k)
{
	uint32_t *uids = NULL;

	pthread_mutex_lock(&order_lock);
	for (size_t i = 0; i < SORT_ORDERS; i++) {
		if (order_match(&orders[i], k)) {
			uids = xmalloc((k->n > 0 ? k->n : 1) * sizeof(*uids));
			memcpy(uids, orders[i].uids, k->n * sizeof(*uids));
			orders[i].used = ++order_tick;
			break;
		}
	}
	pthread_mutex_unlock(&order_lock);
	return uids;
}

static void
order_free(struct sort_order *o)
{
	order_bytes -= o->n * sizeof(*o->uids);
	free(o->path);
	free(o->uids);
	memset(o, 0, sizeof(*o));
}

/* Keep a copy of uids as the order for k. */
static void
order_put(const struct order_key *k, const uint32_t *uids)
{
	size_t bytes = k->n * sizeof(*uids);
	struct sort_order *slot = NULL;

	if (k->n < 2 || bytes > SORT_ORDER_BYTES / 4)
		return;
	pthread_mutex_lock(&order_lock);
	for (size_t i = 0; i < SORT_ORDERS; i++)
		if (order_match(&orders[i], k))
			order_free(&orders[i]);
	for (;;) {
		struct sort_order *lru = NULL;

		slot = NULL;
		for (size_t i = 0; i < SORT_ORDERS; i++) {
			if (orders[i].path == NULL) {
				if (slot == NULL)
					slot = &orders[i];
			} else if (lru == NULL || orders[i].used < lru->used)
				lru = &orders[i];
		}
		if (slot != NULL && order_bytes + bytes <= SORT_ORDER_BYTES)
			break;
		if (lru == NULL)
			break;	/* cannot happen: bytes fits an empty cache */
		order_free(lru);
	}
	if (slot != NULL && order_bytes + bytes <= SORT_ORDER_BYTES) {
		slot->path = xstrdup(k->path);
		slot->uidvalidity = k->uidvalidity;
		memcpy(slot->prog, k->prog, sizeof(slot->prog));
		slot->h1 = k->h1;
		slot->h2 = k->h2;
		slot->n = k->n;
		slot->uids = xmalloc(bytes);
		memcpy(slot->uids, uids, bytes);
		slot->used = ++order_tick;
		order_bytes += bytes;
	}
	pthread_mutex_unlock(&order_lock);
}

/* The UIDs of the messages idx[0..n) of the selected folder in the order
 * of prog (malloc'd, n of them): kept from an earlier SORT of the same
 * set, or the keys loaded and sorted. */
static uint32_t *
sorted_uids(struct imap_session *s, const struct sort_prog *prog,
    const size_t *idx, size_t n)
{
	struct order_key key;
	struct sort_keys keys;
	struct sort_msg **order;
	uint32_t *uids;

	order_key_make(s, prog, idx, n, &key);
	if ((uids = order_get(&key)) != NULL)
		return uids;
	load_keys(s, idx, n, imap_sort_needs(prog),
	    imap_sort_needs_info(prog), &keys);
	order = xcalloc(n > 0 ? n : 1, sizeof(*order));
	for (size_t k = 0; k < n; k++)
		order[k] = &keys.v[k];
	imap_sort(prog, order, n);
	uids = xcalloc(n > 0 ? n : 1, sizeof(*uids));
	for (size_t k = 0; k < n; k++)
		uids[k] = order[k]->uid;
	free_keys(&keys, n);
	free(order);
	order_put(&key, uids);
	return uids;
}

void
imap_cmd_sort(struct imap_session *s, struct imap_cmd *c)
{
	struct sort_prog prog;
	struct search_key *root;
	const char *err = NULL;
	uint32_t *hits = NULL, *uids;
	size_t *idx, n, skip;
	uint64_t modseq = 0;
	struct imap_partial part;
	unsigned ret;
	str_t res = STR_INIT;

	if (imap_search_parse_return(c->args, c->nargs, &ret, &part, &skip,
	    &err) < 0) {
		imap_bad(s, "%s", err);
		return;
	}
	if (ret & RET_SAVE) {
		imap_bad(s, "RETURN (SAVE) is for SEARCH");
		return;
	}
	if (c->nargs - skip == 0) {
		imap_bad(s, "Missing sort criteria");
		return;
	}
	if (imap_sort_parse_program(&c->args[skip], &prog, &err) < 0) {
		imap_bad(s, "%s", err);
		return;
	}
	skip++;
	if ((root = parse_criteria(s, c->args + skip, c->nargs - skip)) ==
	    NULL)
		return;
	imap_search_run(s, root, &idx, &n);
	if (imap_search_has_modseq(root)) {
		/* RFC 7162 3.1.5: the highest modseq of those found */
		imap_condstore_enable(s);
		for (size_t k = 0; k < n; k++)
			if (mbox_msg(s->mb, idx[k])->modseq > modseq)
				modseq = mbox_msg(s->mb, idx[k])->modseq;
	}
	uids = sorted_uids(s, &prog, idx, n);
	hits = xcalloc(n > 0 ? n : 1, sizeof(*hits));
	for (size_t k = 0; k < n; k++)
		hits[k] = c->uid ? uids[k] :
		    (uint32_t)(mbox_find_uid(s->mb, uids[k]) + 1);
	if (ret == 0) {
		str_append(&res, "SORT");
		for (size_t k = 0; k < n; k++) {
			str_append_c(&res, ' ');
			str_append_u32(&res, hits[k]);
		}
		if (n > 0 && modseq != 0)
			str_printf(&res, " (MODSEQ %llu)",
			    (unsigned long long)modseq);
		imap_untagged(s, "%s", str_c(&res));
	} else {
		/* RFC 5267 section 3: ESEARCH in sort order, MIN and MAX
		 * the first and the last message of it, PARTIAL positions
		 * in it (4.4) */
		imap_esearch_reply(s, c, ret, &part, hits, n, modseq);
	}
	if (ret & RET_UPDATE) {
		imap_context_add(s, c, root, &prog, uids, n);
		root = NULL;
	}
	imap_search_free(root);
	free(uids);
	free(hits);
	free(idx);
	str_free(&res);
	imap_ok(s, "Sort completed.");
}

size_t
imap_sort_uids(struct imap_session *s, const struct search_key *root,
    const struct sort_prog *prog, uint32_t **uids_r)
{
	size_t *idx, n;

	imap_search_run(s, root, &idx, &n);
	*uids_r = sorted_uids(s, prog, idx, n);
	free(idx);
	return n;
}

void
imap_cmd_thread(struct imap_session *s, struct imap_cmd *c)
{
	struct search_key *root;
	struct sort_keys keys;
	const char *algo_name;
	size_t *idx, n;
	str_t res = STR_INIT;
	int algo;

	if (c->nargs == 0 || c->args[0].type != IMAP_ARG_ATOM ||
	    (algo_name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "Missing threading algorithm");
		return;
	}
	if ((algo = imap_thread_algo_parse(algo_name)) < 0) {
		imap_bad(s, "Unknown threading algorithm");
		return;
	}
	if ((root = parse_criteria(s, c->args + 1, c->nargs - 1)) == NULL)
		return;
	imap_search_run(s, root, &idx, &n);
	imap_search_free(root);
	/* threads need the sent date (INTERNALDATE without a Date) and
	 * the base subject; REFERENCES the IDs too */
	load_keys(s, idx, n, SORT_NEED_SUBJECT | SORT_NEED_DATE |
	    (algo == THREAD_REFERENCES ? SORT_NEED_IDS : 0), true, &keys);
	str_append(&res, "THREAD");
	if (n > 0)
		str_append_c(&res, ' ');
	imap_thread((enum thread_algo)algo, keys.v, n, c->uid, &res);
	imap_untagged(s, "%s", str_c(&res));
	free_keys(&keys, n);
	free(idx);
	str_free(&res);
	imap_ok(s, "Thread completed.");
}
