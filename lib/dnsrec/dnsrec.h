#ifndef PETREL_DNSREC_H
#define PETREL_DNSREC_H
/*
 * The DNS records a hosted domain publishes so that mail reaches petrel
 * and clients find it (`petrel dns DOMAIN`): MX, SPF, DKIM, DMARC,
 * MTA-STS (RFC 8461) and TLS-RPT (RFC 8460), SRV for client services
 * (RFC 6186, 8314; ManageSieve's, RFC 5804), autoconfig/autodiscover names, and TLSA 3 1 1 for
 * DANE on the MX host (RFC 7672). Pure: no file or network access; the
 * caller passes keys and ports in.
 */
#include <stdbool.h>
#include <stddef.h>

struct dnsrec_input {
	const char *domain;		/* lower-case, valid */
	const char *hostname;		/* the MX host, a full name */
	const char *dkim_selector;	/* NULL: no DKIM key */
	const char *dkim_pub_b64;	/* the key's p= value */
	/* a rotation's next key (published, not signing yet) and old key
	 * (retiring, still published); NULL: none */
	const char *dkim_more_selector[2];
	const char *dkim_more_pub_b64[2];
	const char *tlsa_sha256;	/* NULL: no certificate */
	/* listener ports; 0 = the service is not offered */
	unsigned submission, submissions, imap, imaps, pop3, pop3s;
	unsigned sieve;			/* ManageSieve (RFC 5804 1.8) */
};

struct dnsrec {
	char *name;		/* owner, absolute, with the final dot */
	const char *type;	/* "MX", "TXT", ... */
	char *rdata;		/* presentation form (TXT in quoted pieces) */
	char *value;		/* TXT: the whole text unquoted; else rdata */
	bool in_zone;		/* owner lies in the domain's zone */
};

#define DNSREC_TTL 3600

/* The records, in the order to print them. */
struct dnsrec *dnsrec_build(const struct dnsrec_input *in, size_t *n_r);
void dnsrec_free(struct dnsrec *recs, size_t n);

/* The MTA-STS policy text (RFC 8461 section 3.2, "testing" mode until
 * the admin changes it) and the id that names this text in the
 * _mta-sts TXT record: it changes exactly when the policy does. */
char *dnsrec_mta_sts_policy(const char *hostname);
void dnsrec_mta_sts_id(const char *policy, char id_r[21]);

/* `petrel dns check` (check.c). The RR type number of a type dnsrec
 * makes (0 for another). */
int dnsrec_type_code(const char *type);

/* An answer's rdata (wire form, names uncompressed, as libunbound gives
 * it) as the text dnsrec's `value` holds for that type; NULL when it is
 * malformed. Octets dnsrec never writes are escaped (\" \\ \DDD). */
char *dnsrec_wire_value(const char *type, const unsigned char *p,
    size_t len);

/* Is a found value of the same kind as the wanted record: for TXT the
 * same first tag ("v=spf1"), other types always. */
bool dnsrec_same_kind(const struct dnsrec *want, const char *found);

enum dnsrec_verdict {
	DNSREC_OK,		/* one found value equals it */
	DNSREC_MISSING,		/* nothing of its kind at its name */
	DNSREC_DIFFERENT,	/* values of its kind, none equal */
};

/* The wanted record against the values found at its name and type
 * (NULL entries: malformed rdata, ignored). */
enum dnsrec_verdict dnsrec_compare(const struct dnsrec *want,
    char *const *found, size_t n);

#endif
