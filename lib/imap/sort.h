#ifndef PETREL_IMAP_SORT_H
#define PETREL_IMAP_SORT_H
/*
 * SORT (RFC 5256, with DISPLAYFROM and DISPLAYTO of RFC 5957) and
 * THREAD=ORDEREDSUBJECT / THREAD=REFERENCES (RFC 5256):
 * the sort program, the keys of one message taken from its header, base
 * subject extraction (RFC 5256 section 2.1), the comparison and the
 * threading. Pure computation: no I/O, no global state, safe on any
 * bytes; the callers read the headers.
 *
 * Strings compare with the i;ascii-casemap collation (RFC 4790 9.2:
 * ASCII letters folded, every other byte as it is, UTF-8 included).
 * RFC 5256 asks for I18NLEVEL=1's collation (RFC 5255, i;unicode-
 * casemap): a known gap, non-ASCII letters that differ only in case
 * (E and e with an acute accent) sort apart here.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/limits.h"
#include "lib/base/str.h"
#include "lib/imap/parse.h"

enum sort_kind {
	SORTK_ARRIVAL, SORTK_CC, SORTK_DATE, SORTK_FROM, SORTK_SIZE,
	SORTK_SUBJECT, SORTK_TO, SORTK_DISPLAYFROM, SORTK_DISPLAYTO,
};

struct sort_prog {
	struct {
		enum sort_kind kind;
		bool reverse;
	} keys[IMAP_SORT_KEYS_MAX];
	size_t n;
};

/* What imap_sort_msg_fill() takes from a header (bits). */
#define SORT_NEED_SUBJECT	0x01
#define SORT_NEED_DATE		0x02
#define SORT_NEED_FROM		0x04
#define SORT_NEED_TO		0x08
#define SORT_NEED_CC		0x10
#define SORT_NEED_DISPLAYFROM	0x20
#define SORT_NEED_DISPLAYTO	0x40
#define SORT_NEED_IDS		0x80	/* Message-ID, References,
					   In-Reply-To */

/* A sort program: the parenthesised list of keys ("(REVERSE DATE
 * SUBJECT)"); REVERSE applies to the key after it. 0 ok, -1 with
 * *error_r a static message for BAD. */
int imap_sort_parse_program(const struct imap_arg *arg, struct sort_prog *p,
    const char **error_r);
/* The SORT_NEED_* bits the program needs from the header. */
unsigned imap_sort_needs(const struct sort_prog *p);
/* True if the program needs RFC822.SIZE or INTERNALDATE. */
bool imap_sort_needs_info(const struct sort_prog *p);

/* The keys of one message. seq, uid, size and internaldate are set by
 * the caller; the strings by imap_sort_msg_fill() (never NULL after it
 * for what it was asked for: "" when absent), already case-mapped. */
struct sort_msg {
	uint32_t seq, uid;
	uint64_t size;
	long long internaldate;
	long long date;		/* the sent date in UTC: the Date field,
				   or internaldate without a usable one
				   (RFC 5256 2.2) */
	char *subject;		/* the base subject */
	bool reply;		/* its extraction removed a "Re:", "Fwd:",
				   "(fwd)" or "[fwd: ...]" */
	char *from, *to, *cc;	/* the first mailbox's local part */
	char *display_from, *display_to;
	char *msgid;		/* NULL: none */
	char **refs;		/* References (else In-Reply-To's first
				   ID), oldest first */
	size_t nrefs;
	bool has_date;		/* date is the Date field's */
	bool borrowed;		/* the strings and refs point into a sort
				   record and the caller's array
				   (imap_sort_rec_decode): not freed */
};

/* Fill the keys named by need from a header section (hdr, len: LF or
 * CRLF line ends; the scan stops at its empty line). */
void imap_sort_msg_fill(struct sort_msg *m, const char *hdr, size_t len,
    unsigned need);
/* The same from a message's ENVELOPE as FETCH gives it (the store
 * caches it), for every need but SORT_NEED_IDS: 0 ok, -1 when that is
 * asked for or env is not an ENVELOPE (nothing filled). */
int imap_sort_msg_fill_envelope(struct sort_msg *m, const char *env,
    unsigned need);
/* Free what imap_sort_msg_fill() allocated. */
void imap_sort_msg_clear(struct sort_msg *m);

/* Every key but the IDs, for imap_sort_msg_fill*(). */
#define SORT_NEED_KEYS		0x7f

/* A message's keys as a compact record (the store keeps one per
 * message in petrel-sort, so that no session parses an ENVELOPE or a
 * header for them again): appended to out. m was filled with
 * SORT_NEED_KEYS, and with ids also SORT_NEED_IDS, which the record
 * then holds. */
void imap_sort_rec_encode(const struct sort_msg *m, bool ids, str_t *out);
/* The keys of a record, without copying: the strings point into rec
 * (m->borrowed; imap_sort_msg_clear() leaves them), and when need
 * has SORT_NEED_IDS the Message-ID and the References (into refs,
 * room for refs_cap; else none are set). m->internaldate is set by the caller
 * (the date without a Date field). 1 done; 0 need asks for the IDs and
 * the record has none; -1 the record is malformed (nothing set). */
int imap_sort_rec_decode(struct sort_msg *m, const unsigned char *rec,
    size_t len, unsigned need, char **refs, size_t refs_cap);
/* How many References IDs a record holds (the refs room its decoding
 * needs); 0 for a malformed one. */
size_t imap_sort_rec_nrefs(const unsigned char *rec, size_t len);

/* The base subject (RFC 5256 section 2.1) of a Subject field's raw
 * value: RFC 2047 words decoded, white space collapsed, the reply and
 * forward markers and [blobs] removed; case-mapped. Appends to out;
 * *reply_r (may be NULL) as for sort_msg.reply. */
void imap_base_subject(const char *value, str_t *out, bool *reply_r);

/* Order v (n pointers) by the program, ties by ascending sequence
 * number (RFC 5256, SORT). Stable, O(n log n). */
void imap_sort(const struct sort_prog *p, struct sort_msg **v, size_t n);

enum thread_algo { THREAD_ORDEREDSUBJECT, THREAD_REFERENCES };
/* "ORDEREDSUBJECT" / "REFERENCES" (any case); -1 if unknown. */
int imap_thread_algo_parse(const char *name);
/* Thread the n messages (ascending sequence numbers) and append the
 * response's thread lists ("(1 2)(3 (4)(5))", RFC 5256's thread-list;
 * nothing for n == 0) with sequence numbers or, with uid, UIDs.
 * Iterative: no recursion on the depth of a thread. */
void imap_thread(enum thread_algo algo, struct sort_msg *msgs, size_t n,
    bool uid, str_t *out);

#endif
