#ifndef PETREL_TRUST_MTA_STS_H
#define PETREL_TRUST_MTA_STS_H
/*
 * MTA-STS (RFC 8461) for outgoing mail: the _mta-sts TXT record and the
 * policy file, parsed strictly (what a recipient domain's web server
 * sends is untrusted input), and the match of an MX host against the
 * policy's mx patterns. The fetch and the cache live in queue/sts.c.
 */
#include <stdbool.h>
#include <stddef.h>

#define MTA_STS_POLICY_MAX 65536	/* octets of a policy file */
#define MTA_STS_MX_MAX 32		/* mx lines kept */
#define MTA_STS_MAX_AGE 31557600	/* RFC 8461 3.2: a year */

enum mta_sts_mode { MTA_STS_NONE, MTA_STS_TESTING, MTA_STS_ENFORCE };

struct mta_sts_policy {
	enum mta_sts_mode mode;
	unsigned long max_age;	/* seconds, at most MTA_STS_MAX_AGE */
	size_t nmx;
	char mx[MTA_STS_MX_MAX][256];	/* lower case, no final dot */
};

/* The text of one TXT record at _mta-sts.DOMAIN: 1 when it is an STSv1
 * record (id copied into id, 1 to 32 letters and digits), 0 when it is
 * not one (another v=, or none), -1 when it starts with v=STSv1 but
 * does not parse. */
int mta_sts_txt_parse(const char *txt, size_t len, char id[33]);

/* A policy file (RFC 8461 3.2): lines "key: value" ending in CRLF or LF;
 * version STSv1, mode enforce|testing|none, max_age (digits; above a
 * year: a year), one mx line or more unless mode is none. Unknown keys
 * are ignored; a field given twice counts the first time (mx excepted).
 * 0, or -1 with *err_r (static) when it is not a valid policy. */
int mta_sts_policy_parse(const char *buf, size_t len,
    struct mta_sts_policy *p, const char **err_r);

/* Whether host (an MX host name, any case, a final dot allowed) matches
 * one of the policy's mx patterns: an exact name, or "*.suffix" for one
 * more label, no fewer and no more (RFC 8461 4.1). */
bool mta_sts_mx_match(const struct mta_sts_policy *p, const char *host);

const char *mta_sts_mode_name(enum mta_sts_mode m);

#endif
