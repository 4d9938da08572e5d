#ifndef PETREL_TRUST_CANON_H
#define PETREL_TRUST_CANON_H
/*
 * DKIM canonicalization (RFC 6376 3.4), "simple" and "relaxed", of
 * header fields and, streaming, of a body, for ARC (lib/trust/arc.c).
 * Input lines end in LF or CRLF (the spool keeps LF); the output is what
 * is hashed, with CRLF.
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

/* Append the canonical form of one header field (name, ':', value with
 * its continuation lines, the final line end optional) to out, followed
 * by CRLF when crlf is set (a signature's own field is hashed without
 * it). */
void canon_header(str_t *out, bool relaxed, const char *field, size_t len,
    bool crlf);

/* A body canonicalizer: feed it the body in pieces; it passes the
 * canonical octets to emit (a few KiB at a time), withholding empty
 * lines until something follows them. */
struct canon_body {
	bool relaxed;
	void (*emit)(void *ctx, const char *data, size_t len);
	void *ctx;
	/* state */
	bool line_content;	/* the current line has had a non-WSP */
	bool wsp;		/* relaxed: white space seen, not written */
	bool cr;		/* a CR seen, not yet known to end a line */
	bool any;		/* something written */
	size_t empty_lines;	/* empty lines withheld */
	str_t wsp_run;		/* simple: the white space withheld */
	char buf[4096];
	size_t blen;
};

void canon_body_init(struct canon_body *cb, bool relaxed,
    void (*emit)(void *ctx, const char *data, size_t len), void *ctx);
void canon_body_feed(struct canon_body *cb, const char *data, size_t len);
/* The end of the body: the last line's CRLF, simple's CRLF for an empty
 * body; everything emitted. Frees the state. */
void canon_body_end(struct canon_body *cb);

#endif
