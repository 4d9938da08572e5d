#ifndef PETREL_TRUST_SRS_H
#define PETREL_TRUST_SRS_H
/*
 * srs: the Sender Rewriting Scheme (Shevek's SRS paper, the format of
 * libsrs2 and postsrsd), so that mail forwarded off-host passes the
 * SPF check of the next hop and its bounces come back through us.
 *
 *   SRS0=HHHH=TT=orig-domain=orig-local@srs_domain
 *   SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@srs_domain
 *
 * TT: the day (time / 86400) modulo 1024 in two base32 characters
 * (A-Z2-7); HHHH: the first four base64 characters of HMAC-SHA-1 with
 * the secret over the lower-cased fields (SRS0: TT, domain, local; SRS1:
 * the first forwarder's domain and the rest of its SRS0 local part).
 * Hashes compare without regard to case (a relay may fold it). Pure
 * functions: no I/O, the time is given.
 */
#include <stddef.h>
#include <time.h>

#define SRS_MAX_AGE_DAYS 21	/* older addresses are refused */
#define SRS_LOCAL_MAX 64	/* RFC 5321 4.5.3.1.1 */

/* Is local (a local part) an SRS0 or SRS1 address's? */
int srs_is_srs(const char *local);

/* The SRS address that stands for sender (local@domain) in mail that
 * srs_domain forwards: SRS0, or SRS1 when sender is another host's SRS
 * address. malloc'd, or NULL with *why_r when sender is not rewritten
 * (no '@', an SRS address of srs_domain itself, or a result whose local
 * part would pass SRS_LOCAL_MAX). */
char *srs_forward(const char *secret, const char *srs_domain,
    const char *sender, time_t now, const char **why_r);

/* The address an SRS local part (of an address at srs_domain) stands
 * for: SRS0 gives the original sender, SRS1 the first forwarder's SRS0
 * address. malloc'd, or NULL with *why_r (not SRS, malformed, a bad
 * hash, older than SRS_MAX_AGE_DAYS). */
char *srs_reverse(const char *secret, const char *local, time_t now,
    const char **why_r);

/* The secret of an srs_secret value: the string itself, or the first
 * line of the file of "file:/path". malloc'd ("" when off), or NULL
 * with *error_r (a static buffer). */
char *srs_secret_load(const char *value, const char **error_r);
/* The same for any secret key's value (proxy_secret): key names it in
 * the error. */
char *secret_load(const char *key, const char *value, const char **error_r);

#endif
