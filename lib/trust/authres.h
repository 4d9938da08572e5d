#ifndef PETREL_TRUST_AUTHRES_H
#define PETREL_TRUST_AUTHRES_H
/*
 * The Authentication-Results header field (RFC 8601): petrel's one field
 * with its verdicts, and the test that tells whether a field found in a
 * message claims petrel's authserv-id (such a field is forged or stale,
 * and removed).
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

struct arc_verdict;
struct dkim_verdict;
struct dmarc_verdict;

struct authres {
	const char *authserv_id;	/* this host's name */
	const char *spf;	/* spf= result; NULL: not checked */
	const char *mailfrom;	/* the MAIL FROM address ("" = <>) */
	const char *helo;	/* the HELO/EHLO name; NULL: none */
	bool spf_helo;		/* the HELO identity was checked (<>) */
	bool dkim_checked;	/* dkim_verify = yes */
	bool dkim_error;	/* the verifier could not run */
	const struct dkim_verdict *dkim;
	size_t ndkim;
	const char *auth_user;	/* an authenticated sender: smtp.auth */
	const struct dmarc_verdict *dmarc;	/* NULL: not checked */
	const struct arc_verdict *arc;	/* NULL: not checked */
	const char *remote_ip;	/* the client's address (arc=) */
};

/* Append "Authentication-Results: ...\n" (LF line ends, folded) to out. */
void authres_format(str_t *out, const struct authres *ar);

/* Does the field value (what follows "Authentication-Results:", possibly
 * folded) name authserv_id as its authserv-id (case-insensitive)? */
bool authres_claims(const char *value, size_t len, const char *authserv_id);

/* v as an RFC 8601 property value: v itself when it is a dot-atom-ish
 * token (printable ASCII without specials or white space; '@' allowed),
 * else NULL. */
bool authres_value_ok(const char *v);

/* The end of the header field that starts at p (before end): just after
 * the LF of its last line, continuation lines included; end when the
 * text ends first. */
const char *header_field_end(const char *p, const char *end);

#endif
