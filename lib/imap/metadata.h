#ifndef PETREL_IMAP_METADATA_H
#define PETREL_IMAP_METADATA_H
/*
 * METADATA (RFC 5464) without I/O: entry names (section 3.2) and the
 * text form of a user's annotations, as imap/cmd_metadata.c keeps them
 * in the file "petrel-metadata" of the maildir. Pure computation on
 * bounded input, safe on any bytes.
 *
 * The file: a first line "petrel-metadata 1", then one line per entry,
 *   <owner> TAB <entry name> TAB <value> LF
 * where owner is "-" for a server annotation and the MAILBOXID (RFC
 * 8474, lib/store/mbox_objectid.c) of the mailbox otherwise, so the
 * annotations follow the folder through RENAME; the entry name is in
 * its canonical (lower) case; the value has every byte below 0x20,
 * 0x7f and '%' written "%XX" (two upper-case hex digits), so any octets
 * (a literal8's NUL included) fit on the line. A line that does not
 * read back so is skipped.
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

/* One annotation. */
struct md_entry {
	char *owner;		/* "-" (server) or a MAILBOXID */
	char *name;		/* canonical: lower case */
	char *value;		/* value_len octets (NUL-terminated too) */
	size_t value_len;
};

struct md_store {
	struct md_entry *v;
	size_t n, cap;
};

#define MD_SERVER "-"

/* Check an entry name (RFC 5464 3.2): it starts "/private" or
 * "/shared" (any case) as a whole component, has no "*" or "%", no
 * byte under 0x20 or over 0x7e, no "//", does not end with "/", and is
 * at most max bytes. prefix_ok: the bare "/private" or "/shared" is
 * accepted too (a GETMETADATA with DEPTH asks for what is under them);
 * otherwise at least two components. The canonical (lower-case) name
 * is appended to canon when valid. */
bool md_entry_valid(const char *name, size_t len, size_t max, bool prefix_ok,
    str_t *canon);
/* Whether entry is under (or is) base, at most depth levels below
 * (0: itself only, 1: itself and its children, SIZE_MAX: all). */
bool md_entry_under(const char *entry, const char *base, size_t depth);

/* Parse the file's text; what does not read back is skipped (counted
 * into *skipped_r when not NULL). Appends to st. */
void md_parse(struct md_store *st, const char *text, size_t len,
    size_t *skipped_r);
/* The file's text for st. */
void md_format(const struct md_store *st, str_t *out);

/* The entry of an owner, or NULL. */
struct md_entry *md_find(const struct md_store *st, const char *owner,
    const char *name);
/* Set (value != NULL) or remove (value == NULL) an entry. */
void md_set(struct md_store *st, const char *owner, const char *name,
    const char *value, size_t value_len);
/* Remove every entry of an owner; how many went. */
size_t md_drop_owner(struct md_store *st, const char *owner);
/* Copy every entry of from to to (RENAME INBOX). */
void md_copy_owner(struct md_store *st, const char *from, const char *to);
/* The number of entries and the octets of their values. */
void md_usage(const struct md_store *st, size_t *entries_r, size_t *bytes_r);
/* Sort by owner then name (md_parse keeps the file's order). */
void md_sort(struct md_store *st);
void md_free(struct md_store *st);

#endif
