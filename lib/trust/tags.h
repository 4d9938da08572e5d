#ifndef PETREL_TRUST_TAGS_H
#define PETREL_TRUST_TAGS_H
/*
 * Tag lists (RFC 6376 3.2): "tag=value; tag=value", as in DKIM and ARC
 * header fields and DKIM key records. The spans point into the text
 * parsed (folded or not), so that a caller can cut a value out of the
 * raw field (the b= of a signature).
 */
#include <stdbool.h>
#include <stddef.h>

#define TAGS_MAX 32	/* more tags than this: not a usable list */

struct tag {
	const char *name;
	size_t nlen;
	const char *value;	/* without the FWS around it */
	size_t vlen;
};

struct tag_list {
	struct tag t[TAGS_MAX];
	size_t n;
};

/* Parse text as a tag list: 0, or -1 when it is not one (a spec without
 * '=', a name that is not ALPHA *(ALPHA / DIGIT / "_"), a duplicate
 * name, an empty spec other than after the last ';', more than
 * TAGS_MAX). */
int tags_parse(const char *text, size_t len, struct tag_list *tl);

/* The tag named name (case-sensitive, as RFC 6376 says), or NULL. */
const struct tag *tags_get(const struct tag_list *tl, const char *name);

/* Does the value equal s (exactly)? */
bool tag_is(const struct tag *t, const char *s);

/* The value without any white space (CR, LF, SP, HTAB), malloc'd and
 * NUL-terminated: base64 values such as b= and bh= may be folded. */
char *tag_squeeze(const struct tag *t);

#endif
