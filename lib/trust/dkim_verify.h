#ifndef PETREL_TRUST_DKIM_VERIFY_H
#define PETREL_TRUST_DKIM_VERIFY_H
/*
 * DKIM verification (RFC 6376) of every signature of a message with
 * libopendkim, the keys looked up through lib/trust/dnsq (so
 * `dns_resolver` applies). Blocks: job threads only.
 */
#include <stddef.h>

struct spool;

#define DKIM_VERIFY_MAX_SIGS 8	/* the first ones are checked, the rest
				 * reported as policy (not evaluated) */

struct dkim_verdict {
	const char *result;	/* RFC 8601: pass, fail, neutral, policy,
				 * temperror, permerror */
	char *domain;		/* d=, sanitized; NULL: none */
	char *identity;		/* i=, sanitized; NULL: none */
	char *selector;		/* s=, sanitized; NULL: none */
	const char *reason;	/* a short text for the comment */
};

/* Verify msg (LF line ends). 0 with *v / *n (n = 0: no signature), or -1
 * when libopendkim could not be used (then dkim=temperror). Free with
 * dkim_verdicts_free. */
int dkim_verify_message(struct spool *msg, struct dkim_verdict **v,
    size_t *n);
void dkim_verdicts_free(struct dkim_verdict *v, size_t n);

#endif
