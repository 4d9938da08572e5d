#ifndef PETREL_IMAP_PARSE_H
#define PETREL_IMAP_PARSE_H
/*
 * IMAP4rev1 (RFC 3501) command syntax: the generic argument parser,
 * sequence sets, FETCH attributes, SEARCH keys (parsing and matching),
 * modified UTF-7 mailbox names (RFC 3501 5.1.3), dates, LIST patterns
 * and the quoting of strings in responses.
 *
 * The session reads one whole command before parsing it: the command
 * line, and for every literal ("{n}" or "{n+}" ending a line) CRLF and
 * the n literal bytes, then the rest of the command line, until a line
 * ends without a literal. That buffer (without the final CRLF) is what
 * imap_cmd_parse() takes. Everything here is pure computation on
 * bounded input: no I/O, no global state, safe on any bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

/* Nesting of parenthesised lists (and of SEARCH keys) beyond this is
 * refused with BAD. */
#define IMAP_NEST_MAX 32
/* Arguments (atoms, strings, lists, counted over all levels). */
#define IMAP_ARGS_MAX 10000

/* If line (one input line, CRLF removed) ends with a literal
 * announcement "{n}" or "{n+}", return true with *size_r = n and
 * *nonsync_r = whether it was "{n+}" (LITERAL+). n must be decimal
 * digits only and fit in uint64_t; "{}" or "{x}" is not a literal. */
bool imap_line_literal(const char *line, size_t len, uint64_t *size_r,
    bool *nonsync_r);

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* also flags (\Seen), NIL, numbers, and
				   FETCH atoms with [...] and <...> */
	IMAP_ARG_STRING,	/* quoted string (unescaped) or literal */
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	bool literal;		/* a STRING that came as a literal */
	bool spooled;		/* ... whose data the framer handed out
				   (imap_cmd_parse_spooled): str is "" */
	bool literal8;		/* ... sent as "~{n}" (RFC 3516), taken
				   only in APPEND, [UID] REPLACE and
				   SETMETADATA (RFC 5464) */
	char *str;		/* ATOM/STRING: NUL-terminated copy (a literal
				   may contain NUL: use len) */
	size_t len;
	struct imap_arg *list;	/* LIST: the elements */
	size_t nlist;
};

struct imap_cmd {
	char *tag;
	char *name;		/* upper-cased; for "UID <cmd>" this is <cmd>
				   upper-cased and uid = true */
	bool uid;
	struct imap_arg *args;	/* the arguments after the name */
	size_t nargs;
	void *pool;		/* internal: every allocation of this command */
};

/*
 * Parse buf (see above). Atoms: a run of bytes other than SP, '(', ')',
 * '"', CTLs and 0x7f, where '[' starts a bracketed part that runs to its
 * matching ']' (it may hold spaces, parentheses and quoted strings, as in
 * BODY[HEADER.FIELDS (From To)]<0.100>), and '{' may not start an atom.
 * Quoted strings: '\' escapes only '"' and '\'; no CR, LF or NUL inside.
 * Literals: "{n}\r\n" or "{n+}\r\n" then exactly n bytes; in APPEND,
 * [UID] REPLACE and SETMETADATA also a literal8, "~{n}\r\n" (RFC 3516), elsewhere an
 * error. Exactly one
 * SP between arguments; no SP right after '(' or before ')' is required,
 * but stray spaces are tolerated. 8-bit bytes in atoms are refused.
 * A '[' with no ']' before the end of the buffer (or before a CTL or an
 * 8-bit byte outside quotes) is an ordinary atom character ("LOGIN u
 * pa[ss"), and so is every later '[' of the same command (keeps the
 * parser linear).
 *
 * Returns 0 on success. On error -1 with *error_r a short static message
 * suitable for "tag BAD <message>", and cmd->tag set when a tag could be
 * read (else NULL: the reply is "* BAD"). Free with imap_cmd_free() in
 * both cases.
 */
int imap_cmd_parse(const char *buf, size_t len, struct imap_cmd *cmd,
    const char **error_r);
/* The same, where the literal announced by the "{" at buf[spooled_at]
 * is followed by its CRLF but not by its data (the framer spooled it to
 * a file: IMAP_FRAME_SPOOL): that argument is an empty STRING with
 * spooled set. SIZE_MAX: none (imap_cmd_parse). */
int imap_cmd_parse_spooled(const char *buf, size_t len, size_t spooled_at,
    struct imap_cmd *cmd, const char **error_r);
/* The same with nspools such literals, at the ascending offsets spools
 * (MULTIAPPEND); a literal not parsed where one is announced leaves the
 * later ones ordinary literals (short of data: the command fails). */
int imap_cmd_parse_spools(const char *buf, size_t len, const size_t *spools,
    size_t nspools, struct imap_cmd *cmd, const char **error_r);
void imap_cmd_free(struct imap_cmd *cmd);
/* Keep only the tag and the name (in one allocation of their size), for
 * a command that waits long after its arguments were used (IDLE); args
 * become NULL, nargs 0. */
void imap_cmd_compact(struct imap_cmd *cmd);
/* Zero every byte the command holds (tag, name, arguments, the argument
 * arrays: after this only imap_cmd_free() may be called), for a command
 * that carried a password (LOGIN, AUTHENTICATE's initial response).
 * imap_cmd_free() alone does not wipe: APPEND's message is large. */
void imap_cmd_wipe(struct imap_cmd *cmd);

/* An astring argument (atom or string) as a C string; NULL if arg is a
 * list or holds a NUL byte. */
const char *imap_arg_astring(const struct imap_arg *arg);

/* ---- sequence sets (RFC 3501 9: sequence-set) ---- */
struct imap_range {
	uint32_t lo, hi;	/* lo <= hi after parsing; '*' is
				   IMAP_SEQ_STAR until resolved */
};
#define IMAP_SEQ_STAR UINT32_MAX
struct imap_seqset {
	struct imap_range *r;
	size_t n;
};
/* "1,3:5,7:*". 0 is invalid, as is anything but digits, ',', ':', '*'.
 * 0 ok, -1 invalid. malloc'd ranges (imap_seqset_free).
 * The result is normalised: the ranges without '*' come first, sorted
 * and merged; then at most two ranges with hi == IMAP_SEQ_STAR (a bare
 * "*" is lo == hi == IMAP_SEQ_STAR). An explicit 4294967295 would be
 * indistinguishable from '*' and is stored as 4294967294. At most
 * 100000 ranges. */
int imap_seqset_parse(const char *s, struct imap_seqset *set);
void imap_seqset_free(struct imap_seqset *set);
/* Membership with '*' standing for star (the largest sequence number
 * or UID in the mailbox; a range n:* contains every value >= min(n,
 * star) and <= max(n, star), as RFC 3501 says "*:4" equals "4:*").
 * O(log n): needs the normalised form imap_seqset_parse() produces. */
bool imap_seqset_has(const struct imap_seqset *set, uint32_t v, uint32_t star);
/* Append a set in compact form ("1:3,7") from sorted uids to out. */
void imap_seqset_format(const uint32_t *v, size_t n, str_t *out);

/* ---- FETCH (RFC 3501 6.4.5) ---- */
enum fetch_kind {
	FETCH_FLAGS, FETCH_UID, FETCH_INTERNALDATE, FETCH_RFC822_SIZE,
	FETCH_ENVELOPE, FETCH_BODY, FETCH_BODYSTRUCTURE,
	FETCH_RFC822,		/* = BODY[] but answered as RFC822 */
	FETCH_RFC822_HEADER,	/* = BODY.PEEK[HEADER] */
	FETCH_RFC822_TEXT,	/* = BODY[TEXT] */
	FETCH_SECTION,		/* BODY[...] / BODY.PEEK[...] */
	FETCH_BINARY,		/* BINARY[...] / BINARY.PEEK[...] (RFC
				   3516): part numbers only, spec SECT_ALL */
	FETCH_BINARY_SIZE,	/* BINARY.SIZE[...] */
	FETCH_EMAILID, FETCH_THREADID,	/* RFC 8474 */
	FETCH_SAVEDATE,			/* RFC 8514 */
	FETCH_PREVIEW,			/* RFC 8970 */
	FETCH_MODSEQ,			/* RFC 7162 */
};
enum fetch_spec {
	SECT_ALL,		/* BODY[] or BODY[1.2] (the part's content) */
	SECT_HEADER, SECT_HEADER_FIELDS, SECT_HEADER_FIELDS_NOT,
	SECT_TEXT, SECT_MIME,
};
struct fetch_item {
	enum fetch_kind kind;
	bool peek;		/* BODY.PEEK: does not set \Seen */
	bool lazy;		/* PREVIEW (LAZY): NIL unless at hand */
	uint32_t part[32];	/* section part numbers, npart of them */
	size_t npart;
	enum fetch_spec spec;
	char **fields;		/* HEADER.FIELDS(.NOT) names as given */
	size_t nfields;
	bool partial;		/* <origin.count> */
	uint32_t origin, count;
	char *label;		/* the response item name: "BODY[1.HEADER]<0>",
				   "BODY[HEADER.FIELDS (FROM TO)]", "RFC822" */
};
struct fetch_att {
	struct fetch_item *items;
	size_t n;
	bool need_body;		/* any item needs the message data */
	bool sets_seen;		/* a non-PEEK body item (RFC822, BODY[...],
				   RFC822.TEXT) */
};
/* The argument after the sequence set: a macro (ALL, FAST, FULL), one
 * item, or a parenthesised list of items (where PREVIEW may be followed
 * by its modifier list "(LAZY)", RFC 8970). UID is not added here (UID
 * FETCH adds it). 0 ok, -1 invalid with *error_r a static message. */
int imap_fetch_parse(const struct imap_arg *arg, struct fetch_att *att,
    const char **error_r);
void imap_fetch_free(struct fetch_att *att);

/* ---- SEARCH (RFC 3501 6.4.4) ---- */
enum search_op {
	SK_ALL, SK_AND /* a parenthesised list or the top level */, SK_OR,
	SK_NOT, SK_SEQSET, SK_UID,
	SK_FLAG,		/* ANSWERED DELETED DRAFT FLAGGED SEEN:
				   flag = the Maildir letter */
	SK_UNFLAG,		/* UNANSWERED ... UNSEEN */
	SK_KEYWORD, SK_UNKEYWORD,
	SK_NEW, SK_OLD, SK_RECENT,
	SK_LARGER, SK_SMALLER,
	SK_BEFORE, SK_ON, SK_SINCE,		/* INTERNALDATE */
	SK_SENTBEFORE, SK_SENTON, SK_SENTSINCE,	/* Date: header */
	SK_HEADER,		/* also BCC CC FROM SUBJECT TO */
	SK_BODY, SK_TEXT,
	SK_EMAILID, SK_THREADID,		/* RFC 8474 */
	SK_SAVEDBEFORE, SK_SAVEDON, SK_SAVEDSINCE,	/* RFC 8514: the save
					   date, or the INTERNALDATE for a
					   message without one */
	SK_SAVEDATESUPPORTED,		/* every message: every folder has
					   save dates */
	SK_MODSEQ,			/* RFC 7162: modseq >= num */
};
struct search_key {
	enum search_op op;
	struct search_key *kids;	/* AND: n of them; OR: 2; NOT: 1 */
	size_t nkids;
	char flag;			/* SK_FLAG / SK_UNFLAG */
	char *str;			/* keyword, needle (UTF-8) */
	char *header;			/* SK_HEADER field name */
	bool address;			/* SK_HEADER: BCC CC FROM TO, matched
					   on the parsed addresses */
	uint64_t num;			/* LARGER / SMALLER / MODSEQ */
	int date;			/* days since 1970-01-01 */
	struct imap_seqset set;		/* SK_SEQSET, SK_UID */
	bool saved;			/* SK_SEQSET, SK_UID: "$", the saved
					   result (RFC 5182), not set */
};
/* Every argument after "SEARCH": an optional "CHARSET <name>" first
 * (UTF-8 and US-ASCII accepted; any other: -2 with *error_r
 * "[BADCHARSET (UTF-8 US-ASCII)] ..."), then keys ANDed. 0 ok, -1 BAD
 * with a static message. Free with imap_search_free. The root is always
 * SK_AND. NOT, OR and parenthesised lists each count one level towards
 * IMAP_NEST_MAX (so "OR a OR b ..." takes at most 32 ORs). */
int imap_search_parse(const struct imap_arg *args, size_t n,
    struct search_key **root_r, const char **error_r);
void imap_search_free(struct search_key *root);

/* What a SEARCH needs to decide about one message. The message data
 * (wire form, CRLF) is loaded only when a key needs it, through load. */
struct search_msg {
	uint32_t seq, uid;
	uint32_t max_seq, max_uid;	/* the values of '*' */
	const char *flags;		/* Maildir letters, sorted: "FRS" */
	const char *emailid;		/* EMAILID (RFC 8474), or NULL when
					   no key needs it */
	bool recent;
	uint64_t size;			/* RFC822.SIZE */
	long long internaldate;		/* seconds since the epoch */
	long long savedate;		/* RFC 8514, -1 unknown */
	uint64_t modseq;		/* RFC 7162 */
	/* Keyword name -> its Maildir letter 'a'..'z', or 0 if the mailbox
	 * has no such keyword (then KEYWORD never matches). */
	char (*keyword_letter)(void *ctx, const char *name);
	/* Returns the message in wire form and sets *len, or NULL when it
	 * cannot be read (the key then does not match). The result stays
	 * valid until the message is done with. */
	const char *(*load)(void *ctx, size_t *len);
	void *ctx;
	/* "$" (RFC 5182): the UIDs of the saved search result, ascending */
	const uint32_t *saved;
	size_t nsaved;
};
/* The MIME tree is built at most once per message and freed before
 * returning. */
bool imap_search_match(const struct search_key *root,
    const struct search_msg *m);
/* True if any key needs the message data (header, body, sent dates). */
bool imap_search_needs_data(const struct search_key *root);
/* True if any key needs RFC822.SIZE or INTERNALDATE. */
bool imap_search_needs_info(const struct search_key *root);
/* True if the keys have a MODSEQ criterion (RFC 7162 3.1.5: the reply
 * then names the highest modseq of the messages found). */
bool imap_search_has_modseq(const struct search_key *root);
/* True if any key needs the EMAILID (search_msg.emailid may be NULL
 * otherwise). */
bool imap_search_needs_emailid(const struct search_key *root);
/* True if any key needs the save date (search_msg.savedate may be -1
 * otherwise). */
bool imap_search_needs_savedate(const struct search_key *root);

/* ---- mailbox names ---- */
/* Modified UTF-7 (RFC 3501 5.1.3) to UTF-8; -1 if malformed (bad
 * base64, unterminated shift, "&" encoding plain ASCII, non-shortest
 * forms, bad UTF-16, U+0000, two adjacent shifts, CTL or 8-bit bytes
 * outside a shift). Appends to out (nothing on error). What this
 * accepts, imap_utf8_to_mutf7() gives back byte for byte. */
int imap_mutf7_to_utf8(const char *in, size_t len, str_t *out);
/* UTF-8 to modified UTF-7; -1 if in is not valid UTF-8 (overlong forms,
 * surrogates, > U+10FFFF) or holds NUL. Appends (nothing on error). */
int imap_utf8_to_mutf7(const char *in, size_t len, str_t *out);
/* The mailbox name in arg (an atom or string, not a list), sent by a
 * client that uses UTF-8 names (IMAP4rev2, RFC 9051 5.1), replaced by its
 * modified UTF-7 form, allocated with the command. -1 (arg unchanged) if
 * it is not valid UTF-8 or holds NUL. */
int imap_arg_to_mutf7(struct imap_cmd *cmd, struct imap_arg *arg);
/* LIST/LSUB pattern match: '*' matches anything, '%' anything but sep.
 * Case-sensitive except that a name starting "INBOX" matches any case of
 * it (the caller passes names with INBOX already canonical): when name
 * is "INBOX" or starts "INBOX<sep>", its first five bytes match the
 * pattern case-insensitively. O(strlen(pattern) * strlen(name)). */
bool imap_list_match(const char *pattern, const char *name, char sep);

/* ---- dates ---- */
/* "1-Feb-1994" or "01-Feb-1994" (also quoted by the caller's arg):
 * days since 1970-01-01, -1 if invalid. Earlier dates are negative;
 * 31-Dec-1969, whose value is the error value, gives -2. */
int imap_date_parse(const char *s);
/* "dd-Mon-yyyy hh:mm:ss +hhmm" (day may be " 1"): seconds since the
 * epoch (UTC) in *t_r. 0 ok, -1 invalid. */
int imap_datetime_parse(const char *s, long long *t_r);
/* Appends "\"21-Nov-2026 10:00:00 +0000\"" (UTC), quotes included. */
void imap_datetime_format(long long t, str_t *out);

/* ---- response strings ---- */
/* A string as IMAP quoted string when it can be one (no CR, LF, NUL,
 * 8-bit, at most 1024 bytes), else as a literal {n}CRLF<bytes>. */
void imap_append_string(str_t *out, const char *s, size_t len);
/* NIL for s == NULL, else imap_append_string. */
void imap_append_nstring(str_t *out, const char *s, size_t len);
/* An astring: a bare atom when every byte is an ATOM-CHAR (and s is not
 * empty or "NIL"), else imap_append_string. */
void imap_append_astring(str_t *out, const char *s, size_t len);
/* As imap_append_astring, but valid UTF-8 may be quoted (IMAP4rev2's
 * quoted strings, RFC 9051 9: QUOTED-CHAR takes UTF8-2..4). */
void imap_append_astring_utf8(str_t *out, const char *s, size_t len);

#endif
