/*
 * sort.c: SORT and THREAD for IMAP (RFC 5256, RFC 5957) -- the sort
 * program, per-message keys from a header, base subjects, ordering and
 * the two threading algorithms (see sort.h).
 *
 * Trust: the header text comes from messages anyone can send, the sort
 * program from a client. A key string keeps at most IMAP_SORT_KEY_MAX
 * bytes, References at most IMAP_THREAD_REFS_MAX IDs (of at most
 * IMAP_MSGID_MAX bytes, IMAP_THREAD_REFS_BYTES together); the sort is a
 * merge sort (O(n log n) whatever the keys) and the thread trees are
 * walked with explicit stacks, so a chain of 100,000 replies costs no
 * stack.
 * A References field that would make a loop is not followed there
 * (RFC 5256: "do not add a link if adding that link would introduce a
 * loop").
 */
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/imap/sort.h"
#include "lib/mime/mime.h"

/* ---- the sort program ---- */

static const struct {
	const char *name;
	enum sort_kind kind;
	unsigned need;
} sortkeys[] = {
	{ "ARRIVAL", SORTK_ARRIVAL, 0 },
	{ "CC", SORTK_CC, SORT_NEED_CC },
	{ "DATE", SORTK_DATE, SORT_NEED_DATE },
	{ "FROM", SORTK_FROM, SORT_NEED_FROM },
	{ "SIZE", SORTK_SIZE, 0 },
	{ "SUBJECT", SORTK_SUBJECT, SORT_NEED_SUBJECT },
	{ "TO", SORTK_TO, SORT_NEED_TO },
	{ "DISPLAYFROM", SORTK_DISPLAYFROM, SORT_NEED_DISPLAYFROM },
	{ "DISPLAYTO", SORTK_DISPLAYTO, SORT_NEED_DISPLAYTO },
};
#define NSORTKEYS (sizeof(sortkeys) / sizeof(sortkeys[0]))

static unsigned char
upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

static bool
caseeq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		if (upper((unsigned char)*a) != upper((unsigned char)*b))
			return false;
	}
	return *a == *b;
}

static bool
caseeq_n(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (upper((unsigned char)a[i]) != upper((unsigned char)b[i]))
			return false;
	}
	return true;
}

int
imap_sort_parse_program(const struct imap_arg *arg, struct sort_prog *p,
    const char **error_r)
{
	bool reverse = false;
	size_t i, k;

	memset(p, 0, sizeof(*p));
	if (arg->type != IMAP_ARG_LIST || arg->nlist == 0) {
		*error_r = "Sort criteria must be a non-empty list";
		return -1;
	}
	for (i = 0; i < arg->nlist; i++) {
		const struct imap_arg *a = &arg->list[i];

		if (a->type != IMAP_ARG_ATOM) {
			*error_r = "Invalid sort criterion";
			return -1;
		}
		if (caseeq(a->str, "REVERSE")) {
			if (reverse) {
				*error_r = "REVERSE REVERSE";
				return -1;
			}
			reverse = true;
			continue;
		}
		for (k = 0; k < NSORTKEYS; k++) {
			if (caseeq(a->str, sortkeys[k].name))
				break;
		}
		if (k == NSORTKEYS) {
			*error_r = "Unknown sort criterion";
			return -1;
		}
		if (p->n == IMAP_SORT_KEYS_MAX) {
			*error_r = "Too many sort criteria";
			return -1;
		}
		p->keys[p->n].kind = sortkeys[k].kind;
		p->keys[p->n].reverse = reverse;
		p->n++;
		reverse = false;
	}
	if (reverse) {
		*error_r = "REVERSE must precede a sort criterion";
		return -1;
	}
	return 0;
}

unsigned
imap_sort_needs(const struct sort_prog *p)
{
	unsigned need = 0;

	for (size_t i = 0; i < p->n; i++) {
		for (size_t k = 0; k < NSORTKEYS; k++) {
			if (sortkeys[k].kind == p->keys[i].kind)
				need |= sortkeys[k].need;
		}
	}
	return need;
}

bool
imap_sort_needs_info(const struct sort_prog *p)
{
	for (size_t i = 0; i < p->n; i++) {
		/* DATE falls back to INTERNALDATE */
		if (p->keys[i].kind == SORTK_ARRIVAL ||
		    p->keys[i].kind == SORTK_SIZE ||
		    p->keys[i].kind == SORTK_DATE)
			return true;
	}
	return false;
}

/* ---- base subject (RFC 5256 section 2.1) ---- */

/* subj-blob = "[" *BLOBCHAR "]" *WSP, BLOBCHAR = any CHAR (%x01-7F)
 * but "[" and "]": its length at s (n bytes), 0 if none. */
static size_t
blob_len(const char *s, size_t n)
{
	size_t i = 1;

	if (n == 0 || s[0] != '[')
		return 0;
	while (i < n && s[i] != '[' && s[i] != ']' && s[i] != '\0' &&
	    (unsigned char)s[i] < 0x80)
		i++;
	if (i == n || s[i] != ']')
		return 0;
	i++;
	while (i < n && s[i] == ' ')
		i++;
	return i;
}

/* subj-leader = (*subj-blob subj-refwd) / WSP, with
 * subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":". Its length
 * at s, 0 if none; *refwd_r true when it was a subj-refwd. */
static size_t
leader_len(const char *s, size_t n, bool *refwd_r)
{
	size_t i = 0, b;

	*refwd_r = false;
	if (n > 0 && s[0] == ' ')
		return 1;
	while ((b = blob_len(s + i, n - i)) > 0)
		i += b;
	if (n - i >= 2 && upper((unsigned char)s[i]) == 'R' &&
	    upper((unsigned char)s[i + 1]) == 'E')
		i += 2;
	else if (n - i >= 2 && upper((unsigned char)s[i]) == 'F' &&
	    upper((unsigned char)s[i + 1]) == 'W') {
		i += 2;
		if (i < n && upper((unsigned char)s[i]) == 'D')
			i++;
	} else
		return 0;
	while (i < n && s[i] == ' ')
		i++;
	i += blob_len(s + i, n - i);
	if (i == n || s[i] != ':')
		return 0;
	*refwd_r = true;
	return i + 1;
}

void
imap_base_subject(const char *value, str_t *out, bool *reply_r)
{
	str_t dec = STR_INIT, norm = STR_INIT;
	bool reply = false, refwd;
	size_t start = 0, end, k;
	const char *s;

	/* (1) RFC 2047 words to UTF-8; tabs and line breaks to spaces,
	 * runs of spaces to one */
	if (value != NULL)
		mime_decode_header(value, strlen(value), &dec);
	for (size_t i = 0; i < dec.len; i++) {
		char c = dec.data[i];

		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == '\0' || (c == ' ' && norm.len > 0 &&
		    norm.data[norm.len - 1] == ' '))
			continue;
		str_append_c(&norm, c);
	}
	str_free(&dec);
	s = str_c(&norm);
	end = norm.len;
	for (;;) {
		/* (2) subj-trailer = "(fwd)" / WSP, from the end */
		for (;;) {
			if (end > start && s[end - 1] == ' ')
				end--;
			else if (end - start >= 5 &&
			    caseeq_n(s + end - 5, "(fwd)", 5)) {
				end -= 5;
				reply = true;
			} else
				break;
		}
		/* (3)-(5) subj-leader, then a subj-blob when something is
		 * left after it */
		for (;;) {
			if ((k = leader_len(s + start, end - start,
			    &refwd)) > 0) {
				start += k;
				reply = reply || refwd;
				continue;
			}
			if ((k = blob_len(s + start, end - start)) > 0 &&
			    start + k < end) {
				start += k;
				continue;
			}
			break;
		}
		/* (6) subj-fwd-hdr "[fwd:" ... subj-fwd-trl "]" */
		if (end - start >= 6 && caseeq_n(s + start, "[fwd:", 5) &&
		    s[end - 1] == ']') {
			start += 5;
			end--;
			reply = true;
			continue;
		}
		break;
	}
	for (k = start; k < end; k++)
		str_append_c(out, (char)upper((unsigned char)s[k]));
	str_free(&norm);
	if (reply_r != NULL)
		*reply_r = reply;
}

/* ---- the keys of one message ---- */

/* A key string: case-mapped, at most IMAP_SORT_KEY_MAX bytes. */
static char *
casemapped(const char *s)
{
	size_t n = strlen(s);
	char *r;

	if (n > IMAP_SORT_KEY_MAX)
		n = IMAP_SORT_KEY_MAX;
	r = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		r[i] = (char)upper((unsigned char)s[i]);
	r[n] = '\0';
	return r;
}

/* The base subject as a key: at most IMAP_SORT_KEY_MAX bytes, without
 * a space at the end where it was cut. */
static char *
subject_key(const char *value, bool *reply_r)
{
	str_t subj = STR_INIT;

	imap_base_subject(value, &subj, reply_r);
	if (subj.len > IMAP_SORT_KEY_MAX) {
		str_truncate(&subj, IMAP_SORT_KEY_MAX);
		while (subj.len > 0 && subj.data[subj.len - 1] == ' ')
			str_truncate(&subj, subj.len - 1);
	}
	return str_steal(&subj);
}

/* The local part of the first mailbox (RFC 5256: the addr-mailbox of
 * the first address), "" when there is none. */
static char *
first_local(const char *value)
{
	struct mime_mailbox mb;
	char *r;

	if (!mime_first_mailbox(value, &mb))
		return xstrdup("");
	r = casemapped(mb.local);
	mime_mailbox_clear(&mb);
	return r;
}

/* RFC 5957: the first mailbox's display name, RFC 2047-decoded, or
 * when that is empty its addr-spec; "" when there is no mailbox. */
static char *
display_of(const struct mime_mailbox *mb)
{
	str_t d = STR_INIT;
	char *r;

	mime_decode_header(mb->name, strlen(mb->name), &d);
	if (d.len == 0) {
		str_append(&d, mb->local);
		if (*mb->host != '\0') {
			str_append_c(&d, '@');
			str_append(&d, mb->host);
		}
	}
	r = casemapped(str_c(&d));
	str_free(&d);
	return r;
}

static char *
first_display(const char *value)
{
	struct mime_mailbox mb;
	char *r;

	if (!mime_first_mailbox(value, &mb))
		return xstrdup("");
	r = display_of(&mb);
	mime_mailbox_clear(&mb);
	return r;
}

/* The next "<id>" at *p: its text without the brackets and without
 * white space, malloc'd, or NULL at the end. Empty and over-long IDs
 * are skipped. */
static char *
next_msgid(const char **p)
{
	const char *s = *p, *lt, *gt;
	str_t id = STR_INIT;

	for (;;) {
		if ((lt = strchr(s, '<')) == NULL) {
			*p = s + strlen(s);
			str_free(&id);
			return NULL;
		}
		gt = lt + 1;
		while (*gt != '\0' && *gt != '>' && *gt != '<')
			gt++;
		if (*gt != '>') {	/* "<<id>" or unterminated */
			s = gt;
			continue;
		}
		str_truncate(&id, 0);
		for (const char *q = lt + 1; q < gt; q++) {
			if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
				str_append_c(&id, *q);
		}
		s = gt + 1;
		if (id.len > 0 && id.len <= IMAP_MSGID_MAX) {
			*p = s;
			return str_steal(&id);
		}
	}
}

static void
fill_ids(struct sort_msg *m, const char *msgid, const char *refs,
    const char *in_reply_to)
{
	const char *p;
	char *id;

	if (msgid != NULL) {
		p = msgid;
		m->msgid = next_msgid(&p);
	}
	/* RFC 5256 REFERENCES step 1B: the References IDs, or without any
	 * the first ID of In-Reply-To; the last ones kept (at most
	 * IMAP_THREAD_REFS_MAX, IMAP_THREAD_REFS_BYTES together) */
	m->refs = xcalloc(IMAP_THREAD_REFS_MAX, sizeof(*m->refs));
	if (refs != NULL) {
		size_t bytes = 0;

		p = refs;
		while ((id = next_msgid(&p)) != NULL) {
			bytes += strlen(id);
			while (m->nrefs > 0 && (m->nrefs ==
			    IMAP_THREAD_REFS_MAX ||
			    bytes > IMAP_THREAD_REFS_BYTES)) {
				bytes -= strlen(m->refs[0]);
				free(m->refs[0]);
				memmove(m->refs, m->refs + 1,
				    (m->nrefs - 1) * sizeof(*m->refs));
				m->nrefs--;
			}
			m->refs[m->nrefs++] = id;
		}
	}
	if (m->nrefs == 0 && in_reply_to != NULL) {
		p = in_reply_to;
		if ((id = next_msgid(&p)) != NULL)
			m->refs[m->nrefs++] = id;
	}
}

void
imap_sort_msg_fill(struct sort_msg *m, const char *hdr, size_t len,
    unsigned need)
{
	enum {
		F_SUBJECT, F_DATE, F_FROM, F_TO, F_CC, F_MSGID, F_REFS,
		F_IRT, F_N
	};
	static const char *const names[F_N] = {
		"subject", "date", "from", "to", "cc", "message-id",
		"references", "in-reply-to",
	};
	char *v[F_N];
	str_t wire = STR_INIT;
	long long t;

	/* the header only, in CRLF form as lib/mime reads it */
	for (size_t i = 0; i + 1 < len; i++) {
		if (hdr[i] == '\n' && (hdr[i + 1] == '\n' || (hdr[i + 1] ==
		    '\r' && i + 2 < len && hdr[i + 2] == '\n'))) {
			len = i + 1;
			break;
		}
	}
	mime_to_crlf(hdr, len, &wire);
	str_append(&wire, "\r\n");
	mime_header_get_first(wire.data, wire.len, names, F_N, v);
	m->date = m->internaldate;
	if ((need & SORT_NEED_DATE) && v[F_DATE] != NULL &&
	    (t = mime_parse_date(v[F_DATE])) != -1) {
		m->date = t;
		m->has_date = true;
	}
	if (need & SORT_NEED_SUBJECT)
		m->subject = subject_key(v[F_SUBJECT], &m->reply);
	if (need & SORT_NEED_FROM)
		m->from = first_local(v[F_FROM]);
	if (need & SORT_NEED_TO)
		m->to = first_local(v[F_TO]);
	if (need & SORT_NEED_CC)
		m->cc = first_local(v[F_CC]);
	if (need & SORT_NEED_DISPLAYFROM)
		m->display_from = first_display(v[F_FROM]);
	if (need & SORT_NEED_DISPLAYTO)
		m->display_to = first_display(v[F_TO]);
	if (need & SORT_NEED_IDS)
		fill_ids(m, v[F_MSGID], v[F_REFS], v[F_IRT]);
	for (size_t i = 0; i < F_N; i++)
		free(v[i]);
	str_free(&wire);
}

/* An nstring of an ENVELOPE: the string, or NULL for NIL (and for
 * anything else, or a string holding a NUL). */
static const char *
env_nstring(const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_STRING || strlen(a->str) != a->len)
		return NULL;
	return a->str;
}

/* The first mailbox of an ENVELOPE address list (NIL or a list of
 * (name adl mailbox host); a group's start and end have a NIL host). */
static bool
env_first_mailbox(const struct imap_arg *a, struct mime_mailbox *mb_r)
{
	memset(mb_r, 0, sizeof(*mb_r));
	if (a->type != IMAP_ARG_LIST)
		return false;
	for (size_t i = 0; i < a->nlist; i++) {
		const struct imap_arg *x = &a->list[i];
		const char *name, *local, *host;

		if (x->type != IMAP_ARG_LIST || x->nlist != 4)
			continue;
		name = env_nstring(&x->list[0]);
		local = env_nstring(&x->list[2]);
		host = env_nstring(&x->list[3]);
		if (local == NULL || host == NULL)
			continue;
		mb_r->name = xstrdup(name != NULL ? name : "");
		mb_r->local = xstrdup(local);
		mb_r->host = xstrdup(host);
		return true;
	}
	return false;
}

static char *
env_local(const struct imap_arg *a)
{
	struct mime_mailbox mb;
	char *r;

	if (!env_first_mailbox(a, &mb))
		return xstrdup("");
	r = casemapped(mb.local);
	mime_mailbox_clear(&mb);
	return r;
}

static char *
env_display(const struct imap_arg *a)
{
	struct mime_mailbox mb;
	char *r;

	if (!env_first_mailbox(a, &mb))
		return xstrdup("");
	r = display_of(&mb);
	mime_mailbox_clear(&mb);
	return r;
}

/* An ENVELOPE with a space put between adjacent address lists ")(",
 * which the command parser (one space between arguments) wants;
 * quoted strings and literals are copied as they are. */
static void
env_spaced(const char *env, str_t *out)
{
	size_t len = strlen(env), i = 0;

	while (i < len) {
		char c = env[i];

		if (c == '"') {
			size_t j = i + 1;

			while (j < len && env[j] != '"')
				j += env[j] == '\\' && j + 1 < len ? 2 : 1;
			j = j < len ? j + 1 : len;
			str_append_n(out, env + i, j - i);
			i = j;
			continue;
		}
		if (c == '{') {
			/* {n}CRLF and n bytes */
			size_t j = i + 1, n = 0;

			while (j < len && env[j] >= '0' && env[j] <= '9' &&
			    n < len)
				n = n * 10 + (size_t)(env[j++] - '0');
			if (j + 2 < len && env[j] == '}' &&
			    env[j + 1] == '\r' && env[j + 2] == '\n') {
				j += 3;
				j = n < len - j ? j + n : len;
				str_append_n(out, env + i, j - i);
				i = j;
				continue;
			}
		}
		str_append_c(out, c);
		if (c == ')' && i + 1 < len && env[i + 1] == '(')
			str_append_c(out, ' ');
		i++;
	}
}

int
imap_sort_msg_fill_envelope(struct sort_msg *m, const char *env,
    unsigned need)
{
	enum {
		E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC,
		E_BCC, E_IN_REPLY_TO, E_MESSAGE_ID, E_N
	};
	struct imap_cmd cmd;
	const struct imap_arg *e;
	const char *err = NULL, *v;
	str_t buf = STR_INIT;
	long long t;
	int r = -1;

	if (need & SORT_NEED_IDS)
		return -1;	/* References is not in it */
	str_append(&buf, "x X ");
	env_spaced(env, &buf);
	memset(&cmd, 0, sizeof(cmd));
	if (imap_cmd_parse(buf.data, buf.len, &cmd, &err) < 0 ||
	    cmd.nargs != 1 || cmd.args[0].type != IMAP_ARG_LIST ||
	    cmd.args[0].nlist != E_N)
		goto out;
	e = cmd.args[0].list;
	m->date = m->internaldate;
	if ((need & SORT_NEED_DATE) && (v = env_nstring(&e[E_DATE])) != NULL &&
	    (t = mime_parse_date(v)) != -1) {
		m->date = t;
		m->has_date = true;
	}
	if (need & SORT_NEED_SUBJECT)
		m->subject = subject_key(env_nstring(&e[E_SUBJECT]), &m->reply);
	if (need & SORT_NEED_FROM)
		m->from = env_local(&e[E_FROM]);
	if (need & SORT_NEED_TO)
		m->to = env_local(&e[E_TO]);
	if (need & SORT_NEED_CC)
		m->cc = env_local(&e[E_CC]);
	if (need & SORT_NEED_DISPLAYFROM)
		m->display_from = env_display(&e[E_FROM]);
	if (need & SORT_NEED_DISPLAYTO)
		m->display_to = env_display(&e[E_TO]);
	r = 0;
out:
	imap_cmd_free(&cmd);
	str_free(&buf);
	return r;
}

void
imap_sort_msg_clear(struct sort_msg *m)
{
	if (m->borrowed) {
		/* they point into a record and the caller's refs array */
		m->subject = m->from = m->to = m->cc = NULL;
		m->display_from = m->display_to = m->msgid = NULL;
		m->refs = NULL;
		m->nrefs = 0;
		m->borrowed = false;
		return;
	}
	free(m->subject);
	free(m->from);
	free(m->to);
	free(m->cc);
	free(m->display_from);
	free(m->display_to);
	free(m->msgid);
	for (size_t i = 0; i < m->nrefs; i++)
		free(m->refs[i]);
	free(m->refs);
	m->subject = m->from = m->to = m->cc = NULL;
	m->display_from = m->display_to = m->msgid = NULL;
	m->refs = NULL;
	m->nrefs = 0;
}

/* ---- sort records ---- */

/*
 * A message's keys as the store keeps them (petrel-sort): integers
 * little-endian, every string its u16 length, its bytes and a NUL (so
 * that a decoded key points into the record).
 *   u8 version (1), u8 flags (REC_*), u16 nrefs, i64 sent date
 *   subject, from, to, cc, display from, display to
 *   with REC_IDS: the Message-ID (empty: none) and nrefs References
 */
#define REC_VERSION	1
#define REC_DATE	0x01	/* the date is the Date field's */
#define REC_REPLY	0x02
#define REC_IDS		0x04	/* the IDs are there */
#define REC_MSGID	0x08	/* a Message-ID */
#define REC_FIXED	12
#define REC_NSTR	6

static void
rec_put_str(str_t *out, const char *v, size_t max)
{
	size_t n = v != NULL ? strlen(v) : 0;
	unsigned char l[2];

	if (n > max)
		n = max;
	l[0] = (unsigned char)n;
	l[1] = (unsigned char)(n >> 8);
	str_append_n(out, l, 2);
	str_append_n(out, v != NULL ? v : "", n);
	str_append_c(out, '\0');
}

void
imap_sort_rec_encode(const struct sort_msg *m, bool ids, str_t *out)
{
	unsigned char h[REC_FIXED];
	uint64_t d = (uint64_t)m->date;
	size_t nrefs = ids ? m->nrefs : 0;
	const char *strs[REC_NSTR] = {
		m->subject, m->from, m->to, m->cc, m->display_from,
		m->display_to,
	};

	if (nrefs > IMAP_THREAD_REFS_MAX)
		nrefs = IMAP_THREAD_REFS_MAX;
	h[0] = REC_VERSION;
	h[1] = (unsigned char)((m->has_date ? REC_DATE : 0) |
	    (m->reply ? REC_REPLY : 0) | (ids ? REC_IDS : 0) |
	    (ids && m->msgid != NULL ? REC_MSGID : 0));
	h[2] = (unsigned char)nrefs;
	h[3] = (unsigned char)(nrefs >> 8);
	for (size_t i = 0; i < 8; i++)
		h[4 + i] = (unsigned char)(d >> (8 * i));
	str_append_n(out, h, sizeof(h));
	for (size_t i = 0; i < REC_NSTR; i++)
		rec_put_str(out, strs[i], IMAP_SORT_KEY_MAX);
	if (!ids)
		return;
	rec_put_str(out, m->msgid, IMAP_MSGID_MAX);
	for (size_t i = 0; i < nrefs; i++)
		rec_put_str(out, m->refs[i], IMAP_MSGID_MAX);
}

size_t
imap_sort_rec_nrefs(const unsigned char *rec, size_t len)
{
	size_t n;

	if (len < REC_FIXED || rec[0] != REC_VERSION || !(rec[1] & REC_IDS))
		return 0;
	n = (size_t)rec[2] | (size_t)rec[3] << 8;
	return n > IMAP_THREAD_REFS_MAX ? 0 : n;
}

/* The string at *off: its length checked against max and what is left,
 * its NUL where it should be and none inside. NULL when bad. */
static char *
rec_get_str(const unsigned char *rec, size_t len, size_t *off, size_t max)
{
	size_t n, o = *off;

	if (len - o < 3)
		return NULL;
	n = (size_t)rec[o] | (size_t)rec[o + 1] << 8;
	o += 2;
	if (n > max || len - o < n + 1 || rec[o + n] != '\0' ||
	    memchr(rec + o, '\0', n) != NULL)
		return NULL;
	*off = o + n + 1;
	return (char *)(uintptr_t)(rec + o);
}

int
imap_sort_rec_decode(struct sort_msg *m, const unsigned char *rec,
    size_t len, unsigned need, char **refs, size_t refs_cap)
{
	char *strs[REC_NSTR], *msgid = NULL;
	size_t off = REC_FIXED, nrefs;
	uint64_t d = 0;

	if (len < REC_FIXED || rec[0] != REC_VERSION || (rec[1] & 0xf0))
		return -1;
	if ((need & SORT_NEED_IDS) && !(rec[1] & REC_IDS))
		return 0;
	nrefs = (size_t)rec[2] | (size_t)rec[3] << 8;
	if (nrefs > IMAP_THREAD_REFS_MAX || (!(rec[1] & REC_IDS) &&
	    (nrefs > 0 || (rec[1] & REC_MSGID))))
		return -1;
	for (size_t i = 0; i < REC_NSTR; i++) {
		if ((strs[i] = rec_get_str(rec, len, &off,
		    IMAP_SORT_KEY_MAX)) == NULL)
			return -1;
	}
	if (rec[1] & REC_IDS) {
		if ((msgid = rec_get_str(rec, len, &off,
		    IMAP_MSGID_MAX)) == NULL ||
		    (*msgid == '\0') != !(rec[1] & REC_MSGID))
			return -1;
		if (!(rec[1] & REC_MSGID))
			msgid = NULL;
		if (need & SORT_NEED_IDS) {
			if (nrefs > refs_cap)
				return -1;
		} else
			refs_cap = 0;	/* checked, not kept */
		for (size_t i = 0; i < nrefs; i++) {
			char *id = rec_get_str(rec, len, &off,
			    IMAP_MSGID_MAX);

			if (id == NULL || *id == '\0')
				return -1;
			if (i < refs_cap)
				refs[i] = id;
		}
		if (!(need & SORT_NEED_IDS)) {
			msgid = NULL;
			nrefs = 0;
		}
	}
	if (off != len)
		return -1;
	for (size_t i = 0; i < 8; i++)
		d |= (uint64_t)rec[4 + i] << (8 * i);
	m->borrowed = true;
	m->has_date = (rec[1] & REC_DATE) != 0;
	m->date = m->has_date ? (long long)d : m->internaldate;
	m->reply = (rec[1] & REC_REPLY) != 0;
	m->subject = strs[0];
	m->from = strs[1];
	m->to = strs[2];
	m->cc = strs[3];
	m->display_from = strs[4];
	m->display_to = strs[5];
	m->msgid = msgid;
	m->refs = nrefs > 0 ? refs : NULL;
	m->nrefs = nrefs;
	return 1;
}

/* ---- ordering ---- */

typedef int sort_cmp_fn(const void *a, const void *b, const void *ctx);

/* Stable bottom-up merge sort of n pointers. */
static void
merge_sort(void **v, size_t n, sort_cmp_fn *cmp, const void *ctx)
{
	void **tmp, **src = v, **dst;

	if (n < 2)
		return;
	tmp = xcalloc(n, sizeof(*tmp));
	dst = tmp;
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n;
			size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t a = lo, b = mid, o = lo;

			while (a < mid && b < hi)
				dst[o++] = cmp(src[b], src[a], ctx) < 0 ?
				    src[b++] : src[a++];
			while (a < mid)
				dst[o++] = src[a++];
			while (b < hi)
				dst[o++] = src[b++];
		}
		void **t = src;

		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
	free(tmp);
}

static int
cmp_num(long long a, long long b)
{
	return a < b ? -1 : a > b ? 1 : 0;
}

static int
cmp_str(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

static int
cmp_key(enum sort_kind kind, const struct sort_msg *a,
    const struct sort_msg *b)
{
	switch (kind) {
	case SORTK_ARRIVAL:
		return cmp_num(a->internaldate, b->internaldate);
	case SORTK_CC:
		return cmp_str(a->cc, b->cc);
	case SORTK_DATE:
		return cmp_num(a->date, b->date);
	case SORTK_FROM:
		return cmp_str(a->from, b->from);
	case SORTK_SIZE:
		return a->size < b->size ? -1 : a->size > b->size ? 1 : 0;
	case SORTK_SUBJECT:
		return cmp_str(a->subject, b->subject);
	case SORTK_TO:
		return cmp_str(a->to, b->to);
	case SORTK_DISPLAYFROM:
		return cmp_str(a->display_from, b->display_from);
	case SORTK_DISPLAYTO:
		return cmp_str(a->display_to, b->display_to);
	}
	return 0;
}

static int
cmp_prog(const void *pa, const void *pb, const void *ctx)
{
	const struct sort_prog *p = ctx;
	const struct sort_msg *a = pa, *b = pb;
	int r;

	for (size_t i = 0; i < p->n; i++) {
		if ((r = cmp_key(p->keys[i].kind, a, b)) != 0)
			return p->keys[i].reverse ? -r : r;
	}
	return cmp_num(a->seq, b->seq);
}

static size_t
id_hash(const char *s, size_t tsize)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return (size_t)(h & (tsize - 1));
}

/* SORT: each key of the program becomes a column of integers, one per
 * message, whose order is the key's order: numbers as they are (signed
 * ones with the top bit flipped), strings by their rank among the
 * distinct values (found once each through a hash table, then the
 * distinct values sorted); a reversed key has the complement. The
 * messages are then merge-sorted by those columns and the sequence
 * number, comparing integers only: with 100,000 messages, following
 * pointers to messages and comparing their (often equal) strings again
 * at every level was most of a SORT's time. */

static const char *
key_str(enum sort_kind kind, const struct sort_msg *m)
{
	const char *s = NULL;

	switch (kind) {
	case SORTK_CC:
		s = m->cc;
		break;
	case SORTK_FROM:
		s = m->from;
		break;
	case SORTK_SUBJECT:
		s = m->subject;
		break;
	case SORTK_TO:
		s = m->to;
		break;
	case SORTK_DISPLAYFROM:
		s = m->display_from;
		break;
	case SORTK_DISPLAYTO:
		s = m->display_to;
		break;
	default:
		break;
	}
	return s != NULL ? s : "";
}

struct distinct {
	uint64_t prefix[2];	/* the first 16 bytes, big-endian, padded
				   with zeros */
	uint64_t hash;
	const char *s;
	uint32_t id;
};

static int
distinct_cmp(const void *pa, const void *pb)
{
	const struct distinct *a = pa, *b = pb;

	for (size_t k = 0; k < 2; k++)
		if (a->prefix[k] != b->prefix[k])
			return a->prefix[k] < b->prefix[k] ? -1 : 1;
	/* equal prefixes of different strings: both go on past them */
	return strcmp(a->s + 16, b->s + 16);
}

static uint64_t
str_hash64(const char *s)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* col[i] = the rank of message i's string for kind among the distinct
 * strings of v. */
static void
rank_strings(enum sort_kind kind, struct sort_msg *const *v, size_t n,
    uint64_t *col)
{
	size_t tsize = 16, nd = 0;
	uint32_t *table, *id = xcalloc(n, sizeof(*id));
	struct distinct *d = xcalloc(n, sizeof(*d));
	uint64_t *rank;

	while (tsize < 2 * n)
		tsize *= 2;
	table = xcalloc(tsize, sizeof(*table));	/* distinct index + 1 */
	for (size_t i = 0; i < n; i++) {
		const char *str = key_str(kind, v[i]);
		uint64_t hash = str_hash64(str);
		size_t h = (size_t)(hash & (tsize - 1));

		while (table[h] != 0 && (d[table[h] - 1].hash != hash ||
		    strcmp(d[table[h] - 1].s, str) != 0))
			h = (h + 1) & (tsize - 1);
		if (table[h] == 0) {
			size_t b = 0;

			d[nd].prefix[0] = d[nd].prefix[1] = 0;
			for (; b < 16 && str[b] != '\0'; b++)
				d[nd].prefix[b / 8] |=
				    (uint64_t)(unsigned char)str[b] <<
				    (56 - 8 * (b % 8));
			d[nd].hash = hash;
			d[nd].s = str;
			d[nd].id = (uint32_t)nd;
			table[h] = (uint32_t)++nd;
		}
		id[i] = table[h] - 1;
	}
	qsort(d, nd, sizeof(*d), distinct_cmp);	/* distinct: no ties */
	rank = xcalloc(nd > 0 ? nd : 1, sizeof(*rank));
	for (size_t r = 0; r < nd; r++)
		rank[d[r].id] = r;
	for (size_t i = 0; i < n; i++)
		col[i] = rank[id[i]];
	free(rank);
	free(table);
	free(d);
	free(id);
}

static void
key_column(enum sort_kind kind, struct sort_msg *const *v, size_t n,
    uint64_t *col)
{
	const uint64_t bias = UINT64_C(1) << 63;

	switch (kind) {
	case SORTK_ARRIVAL:
		for (size_t i = 0; i < n; i++)
			col[i] = (uint64_t)v[i]->internaldate ^ bias;
		return;
	case SORTK_DATE:
		for (size_t i = 0; i < n; i++)
			col[i] = (uint64_t)v[i]->date ^ bias;
		return;
	case SORTK_SIZE:
		for (size_t i = 0; i < n; i++)
			col[i] = v[i]->size;
		return;
	default:
		rank_strings(kind, v, n, col);
		return;
	}
}

struct keyed {
	uint64_t k;		/* the first column's value */
	uint32_t i;		/* the message's place in v */
	uint32_t seq;
};

struct key_cols {
	uint64_t *col[IMAP_SORT_KEYS_MAX];	/* [0] unused: in keyed.k */
	size_t n;
};

static int
cmp_keyed(const struct keyed *a, const struct keyed *b,
    const struct key_cols *kc)
{
	if (a->k != b->k)
		return a->k < b->k ? -1 : 1;
	for (size_t j = 1; j < kc->n; j++) {
		uint64_t x = kc->col[j][a->i], y = kc->col[j][b->i];

		if (x != y)
			return x < y ? -1 : 1;
	}
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void
imap_sort(const struct sort_prog *p, struct sort_msg **v, size_t n)
{
	struct key_cols kc = { .n = p->n };
	struct keyed *a, *b, *src, *dst;
	struct sort_msg **out;

	if (n < 2)
		return;
	if (p->n == 0 || n > UINT32_MAX) {
		merge_sort((void **)v, n, cmp_prog, p);
		return;
	}
	for (size_t j = 0; j < p->n; j++) {
		kc.col[j] = xcalloc(n, sizeof(*kc.col[j]));
		key_column(p->keys[j].kind, v, n, kc.col[j]);
		if (p->keys[j].reverse)
			for (size_t i = 0; i < n; i++)
				kc.col[j][i] = ~kc.col[j][i];
	}
	a = xcalloc(n, sizeof(*a));
	b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < n; i++) {
		a[i].k = kc.col[0][i];
		a[i].i = (uint32_t)i;
		a[i].seq = v[i]->seq;
	}
	src = a;
	dst = b;
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n;
			size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t x = lo, y = mid, o = lo;

			while (x < mid && y < hi)
				dst[o++] = cmp_keyed(&src[y], &src[x], &kc) <
				    0 ? src[y++] : src[x++];
			while (x < mid)
				dst[o++] = src[x++];
			while (y < hi)
				dst[o++] = src[y++];
		}
		struct keyed *t = src;

		src = dst;
		dst = t;
	}
	out = xcalloc(n, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		out[i] = v[src[i].i];
	memcpy(v, out, n * sizeof(*v));
	free(out);
	free(a);
	free(b);
	for (size_t j = 0; j < p->n; j++)
		free(kc.col[j]);
}

/* ---- threads ---- */

int
imap_thread_algo_parse(const char *name)
{
	if (caseeq(name, "ORDEREDSUBJECT"))
		return THREAD_ORDEREDSUBJECT;
	if (caseeq(name, "REFERENCES"))
		return THREAD_REFERENCES;
	return -1;
}

/* A container (RFC 5256's word): a message, or a dummy standing for a
 * message that is referred to but not in the mailbox. Children are a
 * singly linked list in no particular order until the final sort. */
struct thr_node {
	struct thr_node *parent, *child, *next, *prev;	/* siblings both
							   ways: unlinking
							   costs no walk */
	struct thr_node *hnext;		/* the ID table's chain */
	const struct sort_msg *msg;	/* NULL: a dummy */
	const char *id;			/* in the ID table: its key */
	const struct sort_msg *key;	/* what it sorts by: msg, or for a
					   dummy its earliest child's */
};

struct thr_ctx {
	struct thr_node root;		/* its children: the root set */
	struct thr_node **all;		/* every node, for freeing */
	size_t nall, capall;
	struct thr_node **table;	/* Message-ID -> node */
	size_t tsize;			/* a power of two */
};

static struct thr_node *
node_new(struct thr_ctx *t)
{
	struct thr_node *x = xcalloc(1, sizeof(*x));

	if (t->nall == t->capall) {
		t->capall = t->capall == 0 ? 64 : t->capall * 2;
		t->all = xrealloc(t->all, t->capall * sizeof(*t->all));
	}
	t->all[t->nall++] = x;
	return x;
}

static void
link_child(struct thr_node *parent, struct thr_node *c)
{
	c->parent = parent;
	c->prev = NULL;
	c->next = parent->child;
	if (c->next != NULL)
		c->next->prev = c;
	parent->child = c;
}

static void
unlink_child(struct thr_node *c)
{
	if (c->parent == NULL)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		c->parent->child = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->parent = NULL;
	c->next = c->prev = NULL;
}

/* The prev links of x's children again, after a splice. */
static void
relink_prev(struct thr_node *x)
{
	struct thr_node *before = NULL;

	for (struct thr_node *c = x->child; c != NULL; c = c->next) {
		c->prev = before;
		before = c;
	}
}

/* Is a equal to b or one of b's ancestors? (A node without children
 * is no one's ancestor: a new message costs no walk.) */
static bool
is_ancestor(const struct thr_node *a, const struct thr_node *b)
{
	if (a->child == NULL)
		return a == b;
	for (; b != NULL; b = b->parent) {
		if (a == b)
			return true;
	}
	return false;
}

/* The node for an ID, made (as a dummy) when there is none. */
static struct thr_node *
id_node(struct thr_ctx *t, const char *id)
{
	size_t h = id_hash(id, t->tsize);
	struct thr_node *x;

	for (x = t->table[h]; x != NULL; x = x->hnext) {
		if (strcmp(x->id, id) == 0)
			return x;
	}
	x = node_new(t);
	x->id = id;
	x->hnext = t->table[h];
	t->table[h] = x;
	return x;
}

static int
cmp_date(const void *pa, const void *pb, const void *ctx)
{
	const struct thr_node *a = pa, *b = pb;
	int r;

	(void)ctx;
	if ((r = cmp_num(a->key->date, b->key->date)) != 0)
		return r;
	return cmp_num(a->key->seq, b->key->seq);
}

/* Order x's children by sent date, ties by sequence number. */
static void
sort_children(struct thr_node *x, struct thr_node ***buf, size_t *cap)
{
	struct thr_node *c;
	size_t n = 0;

	for (c = x->child; c != NULL; c = c->next) {
		if (n == *cap) {
			*cap = *cap == 0 ? 64 : *cap * 2;
			*buf = xrealloc(*buf, *cap * sizeof(**buf));
		}
		(*buf)[n++] = c;
	}
	if (n < 2)
		return;
	merge_sort((void **)*buf, n, cmp_date, NULL);
	x->child = NULL;
	for (size_t i = n; i-- > 0;) {
		(*buf)[i]->next = x->child;
		x->child = (*buf)[i];
	}
	relink_prev(x);
}

/* Every node below the root, parents before children (an explicit
 * stack: no recursion on depth). malloc'd. */
static struct thr_node **
preorder(struct thr_ctx *t, size_t *n_r)
{
	struct thr_node **out = xcalloc(t->nall + 1, sizeof(*out));
	struct thr_node **stack = xcalloc(t->nall + 1, sizeof(*stack));
	size_t n = 0, sp = 0;

	for (struct thr_node *c = t->root.child; c != NULL; c = c->next)
		stack[sp++] = c;
	while (sp > 0) {
		struct thr_node *x = stack[--sp];

		out[n++] = x;
		for (struct thr_node *c = x->child; c != NULL; c = c->next)
			stack[sp++] = c;
	}
	free(stack);
	*n_r = n;
	return out;
}

/* RFC 5256 REFERENCES step 6 (and the order of ORDEREDSUBJECT's
 * threads): siblings by sent date; a dummy (only ever in the root set)
 * by its earliest child. */
static void
sort_tree(struct thr_ctx *t)
{
	struct thr_node **buf = NULL, **order;
	size_t cap = 0, n;

	order = preorder(t, &n);
	for (size_t i = 0; i < n; i++) {
		struct thr_node *x = order[i];

		if (x->msg != NULL)
			x->key = x->msg;
	}
	for (size_t i = 0; i < n; i++)
		sort_children(order[i], &buf, &cap);
	for (struct thr_node *c = t->root.child; c != NULL; c = c->next) {
		if (c->msg == NULL)
			c->key = c->child->key;
	}
	sort_children(&t->root, &buf, &cap);
	free(buf);
	free(order);
}

static void
append_num(str_t *out, const struct thr_node *x, bool uid)
{
	if (out->len > 0 && out->data[out->len - 1] >= '0' &&
	    out->data[out->len - 1] <= '9')
		str_append_c(out, ' ');
	str_append_u32(out, uid ? x->msg->uid : x->msg->seq);
}

/* One thread as a thread-list: a node's number, then its one child's
 * members in line, or with two or more children each in parentheses
 * (RFC 5256: "(3 6 (4 23)(44 7 96))"). Iterative. */
static void
emit_thread(struct thr_node *top, bool uid, str_t *out,
    struct thr_node **stack)
{
	struct thr_node *cur = top;
	size_t sp = 0;

	str_append_c(out, '(');
	stack[sp++] = top;
	for (;;) {
		for (;;) {
			if (cur->msg != NULL)
				append_num(out, cur, uid);
			if (cur->child == NULL)
				break;
			if (cur->child->next == NULL) {
				cur = cur->child;
				continue;
			}
			if (cur->msg != NULL)
				str_append_c(out, ' ');
			str_append_c(out, '(');
			cur = cur->child;
			stack[sp++] = cur;
		}
		/* close the groups that are complete */
		for (;;) {
			struct thr_node *g = stack[--sp];

			str_append_c(out, ')');
			if (sp == 0)
				return;
			if (g->next != NULL) {
				str_append_c(out, '(');
				cur = g->next;
				stack[sp++] = cur;
				break;
			}
		}
	}
}

static void
emit_all(struct thr_ctx *t, bool uid, str_t *out)
{
	struct thr_node **stack = xcalloc(t->nall + 1, sizeof(*stack));

	for (struct thr_node *c = t->root.child; c != NULL; c = c->next)
		emit_thread(c, uid, out, stack);
	free(stack);
}

static void
thr_free(struct thr_ctx *t)
{
	for (size_t i = 0; i < t->nall; i++)
		free(t->all[i]);
	free(t->all);
	free(t->table);
}

static int
cmp_subject_date(const void *pa, const void *pb, const void *ctx)
{
	const struct sort_msg *a = pa, *b = pb;
	int r;

	(void)ctx;
	if ((r = cmp_str(a->subject, b->subject)) != 0)
		return r;
	if ((r = cmp_num(a->date, b->date)) != 0)
		return r;
	return cmp_num(a->seq, b->seq);
}

/* ORDEREDSUBJECT: messages with the same base subject form a thread,
 * the earliest (by sent date, then sequence number) its parent and the
 * others its children in that order; threads by their first
 * message's sent date. */
static void
thread_orderedsubject(struct thr_ctx *t, struct sort_msg *msgs, size_t n)
{
	struct sort_msg **v = xcalloc(n, sizeof(*v));
	struct thr_node *parent = NULL, *x;

	for (size_t i = 0; i < n; i++)
		v[i] = &msgs[i];
	merge_sort((void **)v, n, cmp_subject_date, NULL);
	for (size_t i = 0; i < n; i++) {
		x = node_new(t);
		x->msg = v[i];
		if (parent != NULL &&
		    cmp_str(parent->msg->subject, v[i]->subject) == 0)
			link_child(parent, x);
		else {
			link_child(&t->root, x);
			parent = x;
		}
	}
	free(v);
}

/* REFERENCES steps 1 and 2: containers for the messages and for the
 * IDs they refer to, linked as References says without making loops. */
static void
refs_link(struct thr_ctx *t, struct sort_msg *msgs, size_t n)
{
	size_t want = 64;

	for (size_t i = 0; i < n; i++)
		want += 1 + msgs[i].nrefs;
	t->tsize = 64;
	while (t->tsize < want)
		t->tsize *= 2;
	t->table = xcalloc(t->tsize, sizeof(*t->table));
	for (size_t i = 0; i < n; i++) {
		struct sort_msg *m = &msgs[i];
		struct thr_node *x = NULL, *prev = NULL;

		/* 1A: the message's container; a missing or a duplicate
		 * Message-ID gets one of its own, not in the table */
		if (m->msgid != NULL) {
			x = id_node(t, m->msgid);
			if (x->msg != NULL)
				x = NULL;
		}
		if (x == NULL)
			x = node_new(t);
		x->msg = m;
		/* 1B: each referenced ID the child of the one before it,
		 * unless already linked or making a loop */
		for (size_t r = 0; r < m->nrefs; r++) {
			struct thr_node *c = id_node(t, m->refs[r]);

			if (prev != NULL && c->parent == NULL &&
			    !is_ancestor(c, prev))
				link_child(prev, c);
			prev = c;
		}
		/* 1C: the last reference is the parent (replacing one
		 * presumed from another message's References), unless
		 * that would make a loop; without references, none */
		if (prev != NULL && is_ancestor(x, prev))
			continue;	/* a loop: the links stay as they are */
		if (x->parent != prev) {
			unlink_child(x);
			if (prev != NULL)
				link_child(prev, x);
		}
	}
	/* 2: the root set */
	for (size_t i = 0; i < t->nall; i++) {
		if (t->all[i]->parent == NULL)
			link_child(&t->root, t->all[i]);
	}
}

/* REFERENCES step 4: dummies without children go; a dummy's children
 * take its place, except that in the root set a dummy with two or more
 * children stays. */
static void
refs_prune(struct thr_ctx *t)
{
	struct thr_node **stack = xcalloc(t->nall + 1, sizeof(*stack));
	size_t sp = 0;

	stack[sp++] = &t->root;
	while (sp > 0) {
		struct thr_node *p = stack[--sp], **pp = &p->child;

		while (*pp != NULL) {
			struct thr_node *c = *pp, *k, *last = NULL;

			if (c->msg == NULL && (c->child == NULL ||
			    p != &t->root || c->child->next == NULL)) {
				for (k = c->child; k != NULL; k = k->next) {
					k->parent = p;
					last = k;
				}
				if (last != NULL) {
					last->next = c->next;
					*pp = c->child;
				} else
					*pp = c->next;
				c->child = NULL;
				c->parent = NULL;
				continue;	/* what took its place */
			}
			stack[sp++] = c;
			pp = &c->next;
		}
		relink_prev(p);
	}
	free(stack);
}

struct subj_ent {
	struct thr_node *x;
	const struct sort_msg *m;	/* the message giving the subject */
	size_t order;
};

static int
cmp_ent_date(const void *pa, const void *pb, const void *ctx)
{
	const struct subj_ent *a = pa, *b = pb;
	int r;

	(void)ctx;
	if ((r = cmp_num(a->m->date, b->m->date)) != 0)
		return r;
	return cmp_num(a->m->seq, b->m->seq);
}

static int
cmp_subj_ent(const void *pa, const void *pb, const void *ctx)
{
	const struct subj_ent *a = pa, *b = pb;
	int r;

	(void)ctx;
	if ((r = cmp_str(a->m->subject, b->m->subject)) != 0)
		return r;
	return cmp_num((long long)a->order, (long long)b->order);
}

/* Make c a child of p (c leaves the root set). */
static void
adopt(struct thr_node *p, struct thr_node *c)
{
	unlink_child(c);
	link_child(p, c);
}

/* REFERENCES step 5: threads in the root set with the same base subject
 * are merged. The root set is visited in sent date order (a dummy by
 * its earliest child), so that the result does not depend on how the
 * containers happened to be stored. */
static void
refs_subjects(struct thr_ctx *t)
{
	struct thr_node *c, *k;
	struct subj_ent *e, **v;
	size_t n = 0, i, j;

	for (c = t->root.child; c != NULL; c = c->next)
		n++;
	if (n < 2)
		return;
	e = xcalloc(n, sizeof(*e));
	v = xcalloc(n, sizeof(*v));
	n = 0;
	for (c = t->root.child; c != NULL; c = c->next) {
		const struct sort_msg *m = c->msg;

		/* a dummy: its earliest child's subject and date */
		for (k = c->child; c->msg == NULL && k != NULL; k = k->next) {
			const struct sort_msg *km = k->msg;

			if (km != NULL && (m == NULL || km->date < m->date ||
			    (km->date == m->date && km->seq < m->seq)))
				m = km;
		}
		e[n].x = c;
		e[n].m = m;
		v[n] = &e[n];
		n++;
	}
	/* the visiting order: by date, then sequence number */
	merge_sort((void **)v, n, cmp_ent_date, NULL);
	for (i = 0; i < n; i++)
		v[i]->order = i;
	merge_sort((void **)v, n, cmp_subj_ent, NULL);
	for (i = 0; i < n; i = j) {
		struct thr_node *tab;

		for (j = i + 1; j < n && cmp_str(v[j]->m->subject,
		    v[i]->m->subject) == 0; j++)
			;
		if (v[i]->m->subject == NULL || *v[i]->m->subject == '\0')
			continue;	/* 5B: no subject, no merging */
		/* 5C: the container the subject table keeps */
		tab = v[i]->x;
		for (size_t q = i + 1; q < j; q++) {
			struct thr_node *x = v[q]->x;

			if (tab->msg != NULL && (x->msg == NULL ||
			    (tab->msg->reply && !x->msg->reply)))
				tab = x;
		}
		/* 5D: merge the others into it */
		for (size_t q = i; q < j; q++) {
			struct thr_node *x = v[q]->x, *d;

			if (x == tab)
				continue;
			if (tab->msg == NULL && x->msg == NULL) {
				while ((k = x->child) != NULL)
					adopt(tab, k);
				unlink_child(x);
			} else if (tab->msg == NULL || (x->msg != NULL &&
			    x->msg->reply && !tab->msg->reply)) {
				adopt(tab, x);
			} else {
				d = node_new(t);
				link_child(&t->root, d);
				adopt(d, tab);
				adopt(d, x);
				tab = d;
			}
		}
	}
	free(v);
	free(e);
}

void
imap_thread(enum thread_algo algo, struct sort_msg *msgs, size_t n,
    bool uid, str_t *out)
{
	struct thr_ctx t;

	memset(&t, 0, sizeof(t));
	if (algo == THREAD_ORDEREDSUBJECT)
		thread_orderedsubject(&t, msgs, n);
	else {
		refs_link(&t, msgs, n);
		refs_prune(&t);
		refs_subjects(&t);
	}
	sort_tree(&t);
	emit_all(&t, uid, out);
	thr_free(&t);
}
