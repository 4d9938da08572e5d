#ifndef PETREL_MIME_H
#define PETREL_MIME_H
/*
 * MIME structure of one message for IMAP: the part tree, ENVELOPE,
 * BODY/BODYSTRUCTURE, section extraction and the decoded text SEARCH
 * looks at (RFC 3501 6.4.4, 7.4.2; RFC 2045-2047, RFC 2231).
 *
 * Input is the message in wire form: every line ends in CRLF (the caller
 * converts Maildir's LF files with mime_to_crlf() first), so every offset
 * and size below is what IMAP reports. The data must stay valid and
 * unchanged while a tree made from it is used. Any bytes are accepted:
 * a malformed message gives a best-effort tree, never a failure, and
 * nesting deeper than MIME_DEPTH_MAX is treated as an opaque leaf.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

#define MIME_DEPTH_MAX 32
/* Parts in one message; the rest are folded into the last part's body. */
#define MIME_PARTS_MAX 5000

struct mime_param {
	char *name;		/* lower-case; a joined RFC 2231 name keeps
				   a trailing '*' when its value is in the
				   charset'lang'%XX form ("title*") */
	char *value;		/* RFC 2231 continuations joined; still
				   encoded as it was (IMAP reports raw) */
};

struct mime_part {
	/* Offsets into the message data. The header section runs from
	 * hdr_off for hdr_len bytes and includes the empty line that ends
	 * it (when present); the body follows at body_off. */
	size_t hdr_off, hdr_len;
	size_t body_off, body_len;
	size_t body_lines;	/* CRLF count in the body (LFs counted, so
				   a stray bare LF counts too) */

	/* Content-Type, defaults per RFC 2045 (text/plain; charset=us-ascii,
	 * or message/rfc822 inside multipart/digest). Lower-case. A text/
	 * part without a charset gets charset=us-ascii appended. */
	char *type, *subtype;
	struct mime_param *params;
	size_t nparams;
	char *id, *description;		/* raw header values or NULL */
	char *encoding;			/* Content-Transfer-Encoding,
					   upper-case as IMAP shows it;
					   "7BIT" when absent */
	char *md5;
	char *disposition;		/* lower-case or NULL */
	struct mime_param *disp_params;
	size_t ndisp_params;
	char **languages;		/* Content-Language, or NULL */
	size_t nlanguages;
	char *location;

	struct mime_part *children;	/* multipart/ *: the body parts */
	size_t nchildren;
	struct mime_part *message;	/* message/rfc822: the inner message
					   (its hdr/body offsets are absolute) */
	struct mime_part *parent;
};

/* Wire form of a Maildir file: bare LF -> CRLF, existing CRLF kept.
 * Appends to out. */
void mime_to_crlf(const char *data, size_t len, str_t *out);
/* The same as an IMAP literal: "{size}" CRLF, then the CRLF form (one
 * pass to size it, one to copy). */
void mime_append_crlf_literal(const char *data, size_t len, str_t *out);
/* The same in one pass when the CRLF form has expect bytes (the size the
 * index holds); when it has not, as mime_append_crlf_literal: a wrong
 * expect costs time, never a wrong literal. */
void mime_append_crlf_literal_expect(const char *data, size_t len,
    uint64_t expect, str_t *out);
/* The number of bytes mime_to_crlf would produce. */
uint64_t mime_crlf_size(const char *data, size_t len);

/* The part tree of a whole message (the root is the message itself:
 * its header is the message header). Never NULL. */
struct mime_part *mime_parse(const char *data, size_t len);
void mime_free(struct mime_part *root);

/* IMAP ENVELOPE (RFC 3501 7.4.2), parenthesised, for the message whose
 * header is part->hdr (the root, or a message/rfc822 part's ->message).
 * Strings are IMAP quoted strings or literals ({n}CRLF...) when they
 * contain CR, LF, '"' with 8-bit, etc.; NIL where absent. Addresses are
 * parsed per RFC 5322 with groups as IMAP wants them. */
void mime_envelope(const char *data, const struct mime_part *msg, str_t *out);
/* The same from a header block without a parsed tree: the scan stops
 * at the header's empty line, so a whole message will do. */
void mime_envelope_header(const char *hdr, size_t len, str_t *out);
/* An address header value (From, To, ...) as SEARCH matches it (RFC
 * 5322 parsed: comments, folding and quotes gone): "name <local@host>"
 * or "local@host" per address, "group: " ... ";" for groups, joined by
 * ", ". The names are left RFC 2047-encoded. Appends to out. */
void mime_address_text(const char *value, str_t *out);
/* The first mailbox of an address header value (groups looked into),
 * parsed as for ENVELOPE: its display name ("" when none; still RFC
 * 2047-encoded), local part and domain, malloc'd. false (all NULL) when
 * value is NULL or holds no mailbox. Free with mime_mailbox_clear(). */
struct mime_mailbox {
	char *name, *local, *host;
};
bool mime_first_mailbox(const char *value, struct mime_mailbox *mb_r);
void mime_mailbox_clear(struct mime_mailbox *mb);
/* Every mailbox of an address header value (groups looked into; at most
 * MIME_ADDRESSES_MAX), parsed the same way; *list_r malloc'd (NULL when
 * none). The count; free with mime_mailbox_list_free(). */
#define MIME_ADDRESSES_MAX 1000
size_t mime_mailbox_list(const char *value, struct mime_mailbox **list_r);
void mime_mailbox_list_free(struct mime_mailbox *list, size_t n);
/* BODY (extended = false) or BODYSTRUCTURE (extended = true) of the
 * part, parenthesised, per RFC 3501 7.4.2. */
void mime_bodystructure(const char *data, const struct mime_part *part,
    bool extended, str_t *out);

/* The part named by an IMAP section part specifier "1.2.3" (nums, n
 * numbers; n == 0 is the root). Per RFC 3501 6.4.5: a non-multipart
 * part has part 1 = itself; for a message/rfc822 part the numbers go
 * into the inner message's parts. NULL if there is no such part. */
const struct mime_part *mime_part_find(const struct mime_part *root,
    const uint32_t *nums, size_t n);

/* The body of a part with its Content-Transfer-Encoding undone (RFC
 * 3516 BINARY): 7BIT, 8BIT and BINARY as they are, BASE64 and
 * QUOTED-PRINTABLE decoded (leniently: stray characters skipped), the
 * body of a multipart or message/rfc822 part as it is (never encoded).
 * Appends to out; -1 and nothing appended for another encoding. */
int mime_part_decoded(const char *data, const struct mime_part *part,
    str_t *out);

/* A text part's body transfer-decoded and converted to UTF-8 from its
 * charset (as SEARCH BODY sees it). Appends to out. */
void mime_body_text(const char *data, const struct mime_part *part,
    str_t *out);

/* Header fields of a header block (hdr, len: a header section as
 * above), for BODY[HEADER.FIELDS (...)] and [HEADER.FIELDS.NOT (...)]:
 * appends the fields whose names are (not, if exclude) in names
 * (case-insensitive), each with its continuation lines, then the empty
 * line "\r\n". */
void mime_header_fields(const char *hdr, size_t len, const char *const *names,
    size_t nnames, bool exclude, str_t *out);

/* The first header field named name (case-insensitive) in a header
 * block: its raw value with continuation lines unfolded (CRLF removed),
 * leading white space trimmed. NULL if absent. malloc'd. */
char *mime_header_get(const char *hdr, size_t len, const char *name);
/* The same for n names in one pass over the header:
 * values[i] is the first field named names[i], or NULL. */
void mime_header_get_first(const char *hdr, size_t len,
    const char *const *names, size_t n, char **values);

/* RFC 2047 encoded-words in a header value decoded to UTF-8 (charsets
 * through iconv; unknown charsets and broken words left as they are).
 * Appends to out. */
void mime_decode_header(const char *value, size_t len, str_t *out);

/* Date header parsed per RFC 5322 (with the obsolete forms: two-digit
 * years, named zones). Seconds since the epoch, or -1 if unparseable. */
long long mime_parse_date(const char *value);
/* The same, with the date's own zone in minutes east of UTC in *zone_r
 * (when not NULL). */
long long mime_parse_date_zone(const char *value, int *zone_r);

/* One header field "name: value" CRLF appended to out, folded before
 * column 78 where the value has white space; a value with other than
 * printable ASCII (UTF-8 text) is written as RFC 2047 encoded-words
 * (UTF-8, base64), one a line. */
void mime_field_make(const char *name, const char *value, str_t *out);

/* Case-insensitive substring match for SEARCH (ASCII letters folded;
 * the needle is UTF-8).
 * mime_search_header: name == NULL means any header field (the whole
 *   header, decoded); else the values of the fields named name (all of
 *   them), RFC 2047-decoded. An empty needle matches when the field
 *   exists.
 * mime_search_body: the bodies of all text parts, transfer-decoded
 *   (base64, quoted-printable) and converted to UTF-8 from their
 *   charset; with text = true the headers of every part count too
 *   (SEARCH TEXT). */
bool mime_search_header(const char *data, const struct mime_part *root,
    const char *name, const char *needle);
/* The same over address fields (SEARCH FROM, TO, CC, BCC): each value
 * as mime_address_text() gives it, RFC 2047-decoded, so the address
 * matches without its comments and a display name still matches. */
bool mime_search_address(const char *data, const struct mime_part *root,
    const char *name, const char *needle);
bool mime_search_body(const char *data, const struct mime_part *root,
    const char *needle, bool text);

/* The preview text of a message (RFC 8970, see preview.c): at most
 * MIME_PREVIEW_CHARS characters of valid UTF-8 with no control
 * characters, from the first text/plain (or text/html, its markup
 * removed) part, white space collapsed; nothing when the message has no
 * such part. Decodes at most 64 KiB of the part. Appends to out. */
#define MIME_PREVIEW_CHARS 256
void mime_preview(const char *data, const struct mime_part *root, str_t *out);

#endif
