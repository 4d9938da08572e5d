/*
 * search.c: IMAP SEARCH keys (RFC 3501 6.4.4) -- parsing the arguments
 * into a key tree and matching one message against it (see parse.h).
 *
 * Trust: the arguments come from a client. Nesting (NOT, OR and
 * parenthesised lists) is bounded by IMAP_NEST_MAX, so the recursive
 * parser, matcher and free are bounded too. The message data comes from
 * the mailbox and is only looked at through lib/mime.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/imap/parse.h"
#include "lib/mime/mime.h"

enum key_arg {
	KA_NONE, KA_STRING, KA_DATE, KA_NUMBER, KA_HEADER, KA_KEYWORD,
	KA_SEQSET, KA_NOT, KA_OR,
	KA_OBJECTID,	/* RFC 8474: 1-255 letters, digits, '-', '_' */
	KA_MODSEQ,	/* RFC 7162 3.1.5: [<entry-name> <entry-type>]
			   <mod-sequence-valzer> */
};

static const struct keydef {
	const char *name;
	enum search_op op;
	enum key_arg arg;
	char flag;
	const char *header;	/* BCC CC FROM SUBJECT TO */
} keydefs[] = {
	/* BCC CC FROM TO match the parsed addresses (address_field()) */
	{ "ALL", SK_ALL, KA_NONE, 0, NULL },
	{ "ANSWERED", SK_FLAG, KA_NONE, 'R', NULL },
	{ "BCC", SK_HEADER, KA_STRING, 0, "Bcc" },
	{ "BEFORE", SK_BEFORE, KA_DATE, 0, NULL },
	{ "BODY", SK_BODY, KA_STRING, 0, NULL },
	{ "CC", SK_HEADER, KA_STRING, 0, "Cc" },
	{ "DELETED", SK_FLAG, KA_NONE, 'T', NULL },
	{ "DRAFT", SK_FLAG, KA_NONE, 'D', NULL },
	{ "EMAILID", SK_EMAILID, KA_OBJECTID, 0, NULL },
	{ "FLAGGED", SK_FLAG, KA_NONE, 'F', NULL },
	{ "FROM", SK_HEADER, KA_STRING, 0, "From" },
	{ "HEADER", SK_HEADER, KA_HEADER, 0, NULL },
	{ "KEYWORD", SK_KEYWORD, KA_KEYWORD, 0, NULL },
	{ "LARGER", SK_LARGER, KA_NUMBER, 0, NULL },
	{ "MODSEQ", SK_MODSEQ, KA_MODSEQ, 0, NULL },
	{ "NEW", SK_NEW, KA_NONE, 0, NULL },
	{ "NOT", SK_NOT, KA_NOT, 0, NULL },
	{ "OLD", SK_OLD, KA_NONE, 0, NULL },
	{ "ON", SK_ON, KA_DATE, 0, NULL },
	{ "OR", SK_OR, KA_OR, 0, NULL },
	{ "RECENT", SK_RECENT, KA_NONE, 0, NULL },
	{ "SAVEDATESUPPORTED", SK_SAVEDATESUPPORTED, KA_NONE, 0, NULL },
	{ "SAVEDBEFORE", SK_SAVEDBEFORE, KA_DATE, 0, NULL },
	{ "SAVEDON", SK_SAVEDON, KA_DATE, 0, NULL },
	{ "SAVEDSINCE", SK_SAVEDSINCE, KA_DATE, 0, NULL },
	{ "SEEN", SK_FLAG, KA_NONE, 'S', NULL },
	{ "SENTBEFORE", SK_SENTBEFORE, KA_DATE, 0, NULL },
	{ "SENTON", SK_SENTON, KA_DATE, 0, NULL },
	{ "SENTSINCE", SK_SENTSINCE, KA_DATE, 0, NULL },
	{ "SINCE", SK_SINCE, KA_DATE, 0, NULL },
	{ "SMALLER", SK_SMALLER, KA_NUMBER, 0, NULL },
	{ "SUBJECT", SK_HEADER, KA_STRING, 0, "Subject" },
	{ "TEXT", SK_TEXT, KA_STRING, 0, NULL },
	{ "THREADID", SK_THREADID, KA_OBJECTID, 0, NULL },
	{ "TO", SK_HEADER, KA_STRING, 0, "To" },
	{ "UID", SK_UID, KA_SEQSET, 0, NULL },
	{ "UNANSWERED", SK_UNFLAG, KA_NONE, 'R', NULL },
	{ "UNDELETED", SK_UNFLAG, KA_NONE, 'T', NULL },
	{ "UNDRAFT", SK_UNFLAG, KA_NONE, 'D', NULL },
	{ "UNFLAGGED", SK_UNFLAG, KA_NONE, 'F', NULL },
	{ "UNKEYWORD", SK_UNKEYWORD, KA_KEYWORD, 0, NULL },
	{ "UNSEEN", SK_UNFLAG, KA_NONE, 'S', NULL },
};

/* The arguments being read: one level (the top or a list). */
struct sargs {
	const struct imap_arg *args;
	size_t n, i;
};

static bool
ascii_caseeq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (x >= 'a' && x <= 'z')
			x = (unsigned char)(x - 'a' + 'A');
		if (y >= 'a' && y <= 'z')
			y = (unsigned char)(y - 'a' + 'A');
		if (x != y)
			return false;
	}
	return *a == *b;
}

/* SEARCH BCC, CC, FROM, TO: matched against the addresses as parsed
 * (RFC 5322: comments and folding removed, as ENVELOPE shows them),
 * with their display names, so "FROM user@domain.org" finds
 * "<user (c)@ (c) domain.org>" and "FROM John" finds "John Doe <j@x>"
 * (as Dovecot does). SUBJECT and HEADER match the raw decoded text. */
static bool
address_field(const char *name)
{
	return ascii_caseeq(name, "From") || ascii_caseeq(name, "To") ||
	    ascii_caseeq(name, "Cc") || ascii_caseeq(name, "Bcc");
}

/* Free what k holds (not k itself). */
static void
key_clear(struct search_key *k)
{
	size_t i;

	for (i = 0; i < k->nkids; i++)
		key_clear(&k->kids[i]);
	free(k->kids);
	free(k->str);
	free(k->header);
	imap_seqset_free(&k->set);
	memset(k, 0, sizeof(*k));
}

void
imap_search_free(struct search_key *root)
{
	if (root == NULL)
		return;
	key_clear(root);
	free(root);
}

/* The next argument as an astring (atom, quoted or literal; no NUL). */
static const char *
next_astring(struct sargs *sa, const char **error_r)
{
	const char *s;

	if (sa->i == sa->n) {
		*error_r = "Missing search key argument";
		return NULL;
	}
	if ((s = imap_arg_astring(&sa->args[sa->i])) == NULL) {
		*error_r = "Invalid search key argument";
		return NULL;
	}
	sa->i++;
	return s;
}

static int parse_key(struct sargs *sa, unsigned depth, struct search_key *k,
    const char **error_r);

/* Every key of sa (a list or the top level) into k as SK_AND. */
static int
parse_and(struct sargs *sa, unsigned depth, struct search_key *k,
    const char **error_r)
{
	size_t cap = 0;

	k->op = SK_AND;
	while (sa->i < sa->n) {
		if (k->nkids == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			k->kids = xrealloc(k->kids, cap * sizeof(*k->kids));
		}
		memset(&k->kids[k->nkids], 0, sizeof(*k->kids));
		k->nkids++;
		if (parse_key(sa, depth, &k->kids[k->nkids - 1], error_r) < 0)
			return -1;
	}
	if (k->nkids == 0) {
		*error_r = "Missing search key";
		return -1;
	}
	return 0;
}

static int
parse_number(const char *s, uint64_t *v_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*s < '0' || *s > '9' || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*v_r = v;
	return 0;
}

/* The argument(s) a key takes. */
static int
parse_key_arg(struct sargs *sa, unsigned depth, const struct keydef *kd,
    struct search_key *k, const char **error_r)
{
	const char *s = NULL;

	if (kd->arg != KA_NONE && kd->arg != KA_NOT && kd->arg != KA_OR &&
	    (s = next_astring(sa, error_r)) == NULL)
		return -1;
	switch (kd->arg) {
	case KA_NONE:
		return 0;
	case KA_OBJECTID:
		for (const char *p = s; *p != '\0'; p++)
			if (!((*p >= 'a' && *p <= 'z') ||
			    (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' ||
			    *p == '_')) {
				*error_r = "Invalid object id";
				return -1;
			}
		if (*s == '\0' || strlen(s) > 255) {
			*error_r = "Invalid object id";
			return -1;
		}
		k->str = xstrdup(s);
		return 0;
	case KA_STRING:
	case KA_KEYWORD:
		k->str = xstrdup(s);
		if (kd->header != NULL) {
			k->header = xstrdup(kd->header);
			k->address = address_field(kd->header);
		}
		return 0;
	case KA_HEADER:
		k->header = xstrdup(s);
		if ((s = next_astring(sa, error_r)) == NULL)
			return -1;
		k->str = xstrdup(s);
		return 0;
	case KA_DATE:
		if ((k->date = imap_date_parse(s)) == -1) {
			*error_r = "Invalid date";
			return -1;
		}
		return 0;
	case KA_NUMBER:
		if (parse_number(s, &k->num) < 0) {
			*error_r = "Invalid number";
			return -1;
		}
		return 0;
	case KA_MODSEQ:
		/* an entry name ("/flags/\\seen") and type (priv, shared,
		 * all) first, maybe: every flag of a message has the
		 * message's modseq here, so they change nothing */
		if (!(*s >= '0' && *s <= '9')) {
			if ((s = next_astring(sa, error_r)) == NULL)
				return -1;
			if (!ascii_caseeq(s, "priv") &&
			    !ascii_caseeq(s, "shared") &&
			    !ascii_caseeq(s, "all")) {
				*error_r = "Invalid MODSEQ entry type";
				return -1;
			}
			if ((s = next_astring(sa, error_r)) == NULL)
				return -1;
		}
		/* mod-sequence-valzer: 0 to 2^63 - 1 */
		if (parse_number(s, &k->num) < 0 || k->num > INT64_MAX) {
			*error_r = "Invalid mod-sequence";
			return -1;
		}
		return 0;
	case KA_SEQSET:
		if (strcmp(s, "$") == 0) {
			k->saved = true;
			return 0;
		}
		if (imap_seqset_parse(s, &k->set) < 0) {
			*error_r = "Invalid sequence set";
			return -1;
		}
		return 0;
	case KA_NOT:
	case KA_OR:
		k->nkids = kd->arg == KA_NOT ? 1 : 2;
		k->kids = xcalloc(k->nkids, sizeof(*k->kids));
		if (parse_key(sa, depth + 1, &k->kids[0], error_r) < 0)
			return -1;
		if (kd->arg == KA_OR &&
		    parse_key(sa, depth + 1, &k->kids[1], error_r) < 0)
			return -1;
		return 0;
	}
	return -1;
}

/* One key at sa->args[sa->i], with its arguments. On error k may hold
 * allocations: the caller clears it. */
static int
parse_key(struct sargs *sa, unsigned depth, struct search_key *k,
    const char **error_r)
{
	const struct imap_arg *arg;
	struct sargs sub;
	size_t i;

	if (depth > IMAP_NEST_MAX) {
		*error_r = "Too deep nesting";
		return -1;
	}
	if (sa->i == sa->n) {
		*error_r = "Missing search key";
		return -1;
	}
	arg = &sa->args[sa->i++];
	if (arg->type == IMAP_ARG_LIST) {
		if (arg->nlist == 0) {
			*error_r = "Empty search key list";
			return -1;
		}
		sub.args = arg->list;
		sub.n = arg->nlist;
		sub.i = 0;
		return parse_and(&sub, depth + 1, k, error_r);
	}
	if (arg->type != IMAP_ARG_ATOM || imap_arg_astring(arg) == NULL) {
		*error_r = "Invalid search key";
		return -1;
	}
	if (strcmp(arg->str, "$") == 0) {
		k->op = SK_SEQSET;
		k->saved = true;
		return 0;
	}
	if ((arg->str[0] >= '0' && arg->str[0] <= '9') || arg->str[0] == '*') {
		k->op = SK_SEQSET;
		if (imap_seqset_parse(arg->str, &k->set) < 0) {
			*error_r = "Invalid sequence set";
			return -1;
		}
		return 0;
	}
	for (i = 0; i < sizeof(keydefs) / sizeof(keydefs[0]); i++) {
		if (ascii_caseeq(arg->str, keydefs[i].name))
			break;
	}
	if (i == sizeof(keydefs) / sizeof(keydefs[0])) {
		*error_r = "Unknown search key";
		return -1;
	}
	k->op = keydefs[i].op;
	k->flag = keydefs[i].flag;
	return parse_key_arg(sa, depth, &keydefs[i], k, error_r);
}

int
imap_search_parse(const struct imap_arg *args, size_t n,
    struct search_key **root_r, const char **error_r)
{
	struct sargs sa = { args, n, 0 };
	struct search_key *root;
	const char *cs;

	*root_r = NULL;
	if (n > 0 && args[0].type == IMAP_ARG_ATOM &&
	    ascii_caseeq(args[0].str, "CHARSET")) {
		sa.i = 1;
		if ((cs = next_astring(&sa, error_r)) == NULL)
			return -1;
		if (!ascii_caseeq(cs, "UTF-8") &&
		    !ascii_caseeq(cs, "US-ASCII")) {
			*error_r = "[BADCHARSET (UTF-8 US-ASCII)] "
			    "Unsupported charset";
			return -2;
		}
	}
	root = xcalloc(1, sizeof(*root));
	if (parse_and(&sa, 0, root, error_r) < 0) {
		imap_search_free(root);
		return -1;
	}
	*root_r = root;
	return 0;
}

/* ---- matching ---- */

static bool
key_needs_data(enum search_op op)
{
	switch (op) {
	case SK_SENTBEFORE:
	case SK_SENTON:
	case SK_SENTSINCE:
	case SK_HEADER:
	case SK_BODY:
	case SK_TEXT:
		return true;
	default:
		return false;
	}
}

static bool
key_needs_info(enum search_op op)
{
	switch (op) {
	case SK_LARGER:
	case SK_SMALLER:
	case SK_SAVEDBEFORE:	/* the INTERNALDATE stands in */
	case SK_SAVEDON:
	case SK_SAVEDSINCE:
	case SK_BEFORE:
	case SK_ON:
	case SK_SINCE:
		return true;
	default:
		return false;
	}
}

static bool
tree_has(const struct search_key *root, bool (*pred)(enum search_op))
{
	size_t i;

	if (pred(root->op))
		return true;
	for (i = 0; i < root->nkids; i++) {
		if (tree_has(&root->kids[i], pred))
			return true;
	}
	return false;
}

bool
imap_search_needs_data(const struct search_key *root)
{
	return tree_has(root, key_needs_data);
}

bool
imap_search_needs_info(const struct search_key *root)
{
	return tree_has(root, key_needs_info);
}

static bool
key_is_modseq(enum search_op op)
{
	return op == SK_MODSEQ;
}

bool
imap_search_has_modseq(const struct search_key *root)
{
	return tree_has(root, key_is_modseq);
}

static bool
key_needs_emailid(enum search_op op)
{
	return op == SK_EMAILID;
}

static bool
key_needs_savedate(enum search_op op)
{
	return op == SK_SAVEDBEFORE || op == SK_SAVEDON ||
	    op == SK_SAVEDSINCE;
}

bool
imap_search_needs_savedate(const struct search_key *root)
{
	return tree_has(root, key_needs_savedate);
}

bool
imap_search_needs_emailid(const struct search_key *root)
{
	return tree_has(root, key_needs_emailid);
}

struct match_ctx {
	const struct search_msg *m;
	int loaded;		/* 0 not tried, 1 ok, -1 unreadable */
	const char *data;
	size_t len;
	struct mime_part *root;
	int sent;		/* 0 not computed, 1 sent_day set, -1 none */
	long long sent_day;
};

static bool
ensure_data(struct match_ctx *c)
{
	if (c->loaded == 0) {
		c->loaded = -1;
		if (c->m->load != NULL &&
		    (c->data = c->m->load(c->m->ctx, &c->len)) != NULL) {
			c->root = mime_parse(c->data, c->len);
			c->loaded = 1;
		}
	}
	return c->loaded == 1;
}

static long long
day_of(long long t)
{
	long long d = t / 86400;

	return t % 86400 < 0 ? d - 1 : d;
}

static bool
digit_at(const char *s, size_t i)
{
	return s[i] >= '0' && s[i] <= '9';
}

/*
 * The offset of the zone written in a Date value, in seconds east of
 * UTC: the token after the time of day ("+0200", "-0500", or one of the
 * RFC 5322 obsolete names). 0 when there is none or it is unknown.
 */
static long long
date_zone(const char *v)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = {
		{ "UT", 0 }, { "GMT", 0 }, { "EST", -5 }, { "EDT", -4 },
		{ "CST", -6 }, { "CDT", -5 }, { "MST", -7 }, { "MDT", -6 },
		{ "PST", -8 }, { "PDT", -7 },
	};
	const char *t = strchr(v, ':');
	char name[4];
	size_t i, n;
	long long off;

	if (t == NULL)
		return 0;
	while (*t == ':' || (*t >= '0' && *t <= '9'))
		t++;
	while (*t == ' ' || *t == '\t')
		t++;
	if ((*t == '+' || *t == '-') && digit_at(t, 1) && digit_at(t, 2) &&
	    digit_at(t, 3) && digit_at(t, 4)) {
		off = ((t[1] - '0') * 10 + (t[2] - '0')) * 3600 +
		    ((t[3] - '0') * 10 + (t[4] - '0')) * 60;
		return *t == '-' ? -off : off;
	}
	for (n = 0; n < 3 && ((t[n] >= 'A' && t[n] <= 'Z') ||
	    (t[n] >= 'a' && t[n] <= 'z')); n++)
		name[n] = t[n];
	name[n] = '\0';
	for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (ascii_caseeq(name, zones[i].name))
			return zones[i].hours * 3600LL;
	}
	return 0;
}

/* The day of the Date header, as written (RFC 3501: disregarding time
 * and timezone); false when there is no parsable Date. */
static bool
sent_day(struct match_ctx *c, long long *day_r)
{
	const struct mime_part *r;
	long long t;
	char *v;

	if (c->sent == 0) {
		c->sent = -1;
		if (!ensure_data(c))
			return false;
		r = c->root;
		v = mime_header_get(c->data + r->hdr_off, r->hdr_len, "Date");
		if (v != NULL && (t = mime_parse_date(v)) != -1) {
			c->sent_day = day_of(t + date_zone(v));
			c->sent = 1;
		}
		free(v);
	}
	*day_r = c->sent_day;
	return c->sent == 1;
}

static bool
has_flag(const struct search_msg *m, char flag)
{
	return flag != 0 && m->flags != NULL && strchr(m->flags, flag) != NULL;
}

static bool
has_keyword(const struct search_msg *m, const char *name)
{
	char letter;

	if (m->keyword_letter == NULL)
		return false;
	letter = m->keyword_letter(m->ctx, name);
	return letter != 0 && has_flag(m, letter);
}

static bool match_key(const struct search_key *k, struct match_ctx *c);

/* AND / OR: keys that need no message data first, so that a message
 * ruled out by its flags is never read. */
static bool
match_list(const struct search_key *k, struct match_ctx *c, bool any)
{
	size_t i;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < k->nkids; i++) {
			const struct search_key *kid = &k->kids[i];
			bool cheap = kid->nkids == 0 &&
			    !key_needs_data(kid->op);

			if (cheap != (pass == 0))
				continue;
			if (match_key(kid, c) == any)
				return any;
		}
	}
	return !any;
}

static bool
match_date(const struct search_key *k, struct match_ctx *c)
{
	long long day;

	long long saved = c->m->savedate >= 0 ? c->m->savedate :
	    c->m->internaldate;

	switch (k->op) {
	case SK_SAVEDBEFORE:
		return day_of(saved) < k->date;
	case SK_SAVEDON:
		return day_of(saved) == k->date;
	case SK_SAVEDSINCE:
		return day_of(saved) >= k->date;
	case SK_BEFORE:
		return day_of(c->m->internaldate) < k->date;
	case SK_ON:
		return day_of(c->m->internaldate) == k->date;
	case SK_SINCE:
		return day_of(c->m->internaldate) >= k->date;
	default:
		break;
	}
	if (!sent_day(c, &day))
		return false;
	if (k->op == SK_SENTBEFORE)
		return day < k->date;
	if (k->op == SK_SENTON)
		return day == k->date;
	return day >= k->date;
}

/* The message is in the saved result "$" (binary search). */
static bool
in_saved(const struct search_msg *m)
{
	size_t a = 0, b = m->nsaved;

	while (a < b) {
		size_t mid = a + (b - a) / 2;

		if (m->saved[mid] == m->uid)
			return true;
		if (m->saved[mid] < m->uid)
			a = mid + 1;
		else
			b = mid;
	}
	return false;
}

static bool
match_key(const struct search_key *k, struct match_ctx *c)
{
	const struct search_msg *m = c->m;

	switch (k->op) {
	case SK_ALL:
		return true;
	case SK_AND:
		return match_list(k, c, false);
	case SK_OR:
		return match_list(k, c, true);
	case SK_NOT:
		return !match_key(&k->kids[0], c);
	case SK_SEQSET:
		if (k->saved)
			return in_saved(m);
		return imap_seqset_has(&k->set, m->seq, m->max_seq);
	case SK_UID:
		if (k->saved)
			return in_saved(m);
		return imap_seqset_has(&k->set, m->uid, m->max_uid);
	case SK_FLAG:
		return has_flag(m, k->flag);
	case SK_UNFLAG:
		return !has_flag(m, k->flag);
	case SK_KEYWORD:
		return has_keyword(m, k->str);
	case SK_UNKEYWORD:
		return !has_keyword(m, k->str);
	case SK_NEW:
		return m->recent && !has_flag(m, 'S');
	case SK_OLD:
		return !m->recent;
	case SK_RECENT:
		return m->recent;
	case SK_LARGER:
		return m->size > k->num;
	case SK_SMALLER:
		return m->size < k->num;
	case SK_MODSEQ:
		return m->modseq >= k->num;
	case SK_BEFORE:
	case SK_ON:
	case SK_SINCE:
	case SK_SENTBEFORE:
	case SK_SENTON:
	case SK_SENTSINCE:
	case SK_SAVEDBEFORE:
	case SK_SAVEDON:
	case SK_SAVEDSINCE:
		return match_date(k, c);
	case SK_SAVEDATESUPPORTED:
		return true;
	case SK_HEADER:
		if (k->address)
			return ensure_data(c) && mime_search_address(c->data,
			    c->root, k->header, k->str);
		return ensure_data(c) &&
		    mime_search_header(c->data, c->root, k->header, k->str);
	case SK_BODY:
	case SK_TEXT:
		return ensure_data(c) && mime_search_body(c->data, c->root,
		    k->str, k->op == SK_TEXT);
	case SK_EMAILID:
		return m->emailid != NULL && strcmp(m->emailid, k->str) == 0;
	case SK_THREADID:
		return false;	/* threads have no ids: THREADID is NIL */
	}
	return false;
}

bool
imap_search_match(const struct search_key *root, const struct search_msg *m)
{
	struct match_ctx c;
	bool ret;

	memset(&c, 0, sizeof(c));
	c.m = m;
	ret = match_key(root, &c);
	if (c.root != NULL)
		mime_free(c.root);
	return ret;
}
