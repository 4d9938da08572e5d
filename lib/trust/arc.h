#ifndef PETREL_TRUST_ARC_H
#define PETREL_TRUST_ARC_H
/*
 * ARC, the Authenticated Received Chain (RFC 8617): validation of the
 * chain of a received message (section 5.2) and the ARC set petrel adds
 * when it forwards a message (section 5.1), rsa-sha256 only (as RFC 8617
 * and the other implementations have it). Keys are looked up through
 * lib/trust/dnsq (so `dns_resolver` applies): blocks, job threads only.
 */
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib/base/str.h"

struct spool;

#define ARC_MAX_SETS 50		/* RFC 8617 4.2.1: i=1..50 */

enum arc_result {
	ARC_R_NONE,	/* no ARC set */
	ARC_R_PASS,
	ARC_R_FAIL,
};

struct arc_verdict {
	bool checked;		/* validated (false: ARC off, or not asked) */
	enum arc_result result;
	unsigned n;		/* the highest instance found (0: none) */
	/* pass: the oldest instance from which every AMS up to n still
	 * validates, when an older one does not (RFC 8617 5.2 step 5);
	 * 0 when they all do */
	unsigned oldest_pass;
	bool terminated;	/* a seal says cv=fail: the chain has ended,
				 * no seal is added after it */
	char reason[80];	/* fail: why, one short line */
};

const char *arc_result_name(enum arc_result r);

/* Validate the chain of msg (LF line ends). Always gives a verdict:
 * anything malformed, a key not found or a lookup that failed is fail. */
void arc_verify_message(struct spool *msg, struct arc_verdict *v);

/* The checks that need no key (RFC 8617 5.2 steps 1 to 3) on a header
 * section (text, LF or CRLF line ends): 0 when its sets are well formed
 * (v->n of them; 0: none), -1 with v->result fail and v->reason. */
int arc_structure(const char *text, size_t len, struct arc_verdict *v);

/* Seal a forwarded message: the next ARC set (AS, AMS, AAR, in that
 * order, LF line ends, folded) appended to out, for the message made of
 * `prefix` (header fields added here) and `body` (as received). v is the
 * validation of the message as received, authres the value of our
 * Authentication-Results field (after "Authentication-Results:", with
 * its arc= clause), key_pem the private key of domain's selector. 1 when
 * sealed; 0 when the chain cannot be continued (it has ended with
 * cv=fail, it has 50 sets, or its failure left no instance to follow);
 * -1 on error (*error_r). */
int arc_seal(const struct arc_verdict *v, const char *authres,
    const char *domain, const char *selector, const char *key_pem,
    const char *prefix, struct spool *body, time_t now, str_t *out,
    const char **error_r);

#endif
