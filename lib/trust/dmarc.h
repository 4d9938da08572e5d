#ifndef PETREL_TRUST_DMARC_H
#define PETREL_TRUST_DMARC_H
/*
 * DMARC (RFC 7489) at the end of the data: the RFC5322.From domain, the
 * policy record found through lib/trust/dnsq (the From domain's, else the
 * organizational domain's, from the Public Suffix List through libpsl),
 * parsed and applied by libopendmarc with the SPF and DKIM results already
 * computed. libopendmarc never looks anything up itself. Blocks (DNS):
 * job threads only.
 */
#include <stdbool.h>
#include <stddef.h>

struct dkim_verdict;

#define DMARC_PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"

enum dmarc_from {
	DMARC_FROM_OK,		/* one From field, one address with a domain */
	DMARC_FROM_ABSENT,	/* no From field */
	DMARC_FROM_MULTIPLE,	/* several From fields */
	DMARC_FROM_ADDRESSES,	/* one field, several addresses (or none) */
	DMARC_FROM_BAD,		/* an address without a usable domain */
};

enum dmarc_result {
	DMARC_R_NONE,		/* no policy record */
	DMARC_R_PASS,
	DMARC_R_FAIL,
	DMARC_R_TEMPERROR,	/* the record lookup got no answer */
	DMARC_R_PERMERROR,	/* no single From address, a record that
				 * cannot be used, several records */
};

enum dmarc_disposition {
	DMARC_D_NONE,		/* deliver as usual */
	DMARC_D_QUARANTINE,
	DMARC_D_REJECT,
};

/* The record a verdict applied (RFC 7489 6.3), for aggregate reports
 * (lib/trust/dmarc_report). */
struct dmarc_published {
	char domain[256];	/* _dmarc.DOMAIN held it; "" none */
	char p, sp;		/* 'n', 'q', 'r'; sp 0: not given */
	char adkim, aspf;	/* 'r', 's' */
	int pct;
	char rua[1024];		/* the rua= value, white space removed;
				 * "" none (or too long) */
	char ruf[1024];		/* ruf= (failure reports), the same way */
	char fo[32];		/* fo=, the same way; "" not given (0) */
};

struct dmarc_verdict {
	enum dmarc_result result;
	char policy;		/* the policy that applies: 'n', 'q', 'r';
				 * 0 without a usable record */
	bool subdomain_policy;	/* it was sp= (the organizational domain's
				 * record, for a subdomain) */
	enum dmarc_disposition disposition;	/* after pct= */
	char from[256];		/* the From domain, lower case; "" none */
	const char *reason;	/* a short comment, or NULL */
	/* pass or fail: the record, and which identifier passed aligned */
	struct dmarc_published pub;
	bool dkim_aligned, spf_aligned;
};

/* What the other checks found. */
struct dmarc_input {
	const char *ip;		/* the client, text */
	const char *spf;	/* spf= result name ("pass", ...), NULL: not
				 * checked */
	const char *spf_domain;	/* the identity SPF checked */
	bool spf_helo;		/* that identity was the HELO name */
	const struct dkim_verdict *dkim;
	size_t ndkim;
};

/* Load the Public Suffix List (once, before any check). -1 with *error_r
 * when it cannot be read. */
int dmarc_setup(const char *psl_file, char **error_r);

/* The header section of a message (LF or CRLF line ends, up to its empty
 * line or len): the domain of its one From address in dom (lower case). */
enum dmarc_from dmarc_from_domain(const char *header, size_t len, char *dom,
    size_t domlen);

/* Of n TXT record texts, the DMARC ones (RFC 7489 6.6.3: starting with
 * "v=DMARC1"): their count, *pick the index of the first. */
size_t dmarc_record_pick(const char *const *txt, size_t n, size_t *pick);

/* RFC 7489 6.6.4: a policy applied to pct percent of the messages; roll
 * in [0, 100) picks this one; not picked, the next weaker policy applies
 * (reject -> quarantine, quarantine -> none). */
enum dmarc_disposition dmarc_apply_pct(enum dmarc_disposition d, int pct,
    int roll);

/* The organizational domain of dom (RFC 7489 3.2), lower case, in out;
 * dom itself when it is a public suffix or the list is not loaded. */
void dmarc_org_domain(const char *dom, char *out, size_t outlen);
/* The one DMARC record (v=DMARC1 TXT) at name, through dnsq (a job
 * thread's call): 1 with *rec (malloc'd), 0 none, -1 no answer, -2
 * several records. */
int dmarc_fetch_record(const char *name, char **rec);

/* Identifier alignment (RFC 7489 3.1): strict, the same name; relaxed,
 * the same organizational domain. */
bool dmarc_aligned(const char *from, const char *id, bool strict);

/* Check the message whose header section is given. */
void dmarc_check(const char *header, size_t len, const struct dmarc_input *in,
    struct dmarc_verdict *v);

/* "pass", "fail", ... (RFC 8601 / RFC 7489 11.2) */
const char *dmarc_result_name(enum dmarc_result r);
/* "none", "quarantine", "reject" */
const char *dmarc_policy_name(char p);
const char *dmarc_disposition_name(enum dmarc_disposition d);

#endif
