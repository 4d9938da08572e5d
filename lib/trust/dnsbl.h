#ifndef PETREL_TRUST_DNSBL_H
#define PETREL_TRUST_DNSBL_H
/*
 * dnsbl: the `dnsbl_sites` list (DNS block and allow lists by client
 * address, RFC 5782) without any I/O: the list parsed in the subset of
 * Postfix postscreen's syntax petrel takes, the query name of a client
 * address in a zone, and whether an answer matches a site's filter.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSBL_SITES_MAX 32
#define DNSBL_WEIGHT_MAX 1000

struct dnsbl_site {
	char *zone;		/* "zen.example", no final dot */
	char *spec;		/* as written, for logs */
	int weight;		/* default 1; negative: an allow list */
	bool filter;		/* an answer filter was given */
	uint8_t allow[4][32];	/* per octet: a bit per value allowed */
};

/* Parse a comma- or space-separated list of ZONE[=FILTER][*WEIGHT]
 * (FILTER: four dot-separated octets, each N, [N..M] or [A;B..C;...]).
 * 0 with the sites (free with dnsbl_sites_free; none for an empty
 * list), or -1 with *error_r (static text naming what is wrong). */
int dnsbl_sites_parse(const char *list, struct dnsbl_site **sites_r,
    size_t *n_r, const char **error_r);
void dnsbl_sites_free(struct dnsbl_site *sites, size_t n);

/* The name to look up for a client address in zone: an IPv4 address
 * (also ::ffff:a.b.c.d) as d.c.b.a.zone, an IPv6 address as its 32
 * nibbles in reverse order (RFC 5782 2.1, 2.4). 0, or -1 when ip is not
 * an address or the name does not fit. */
int dnsbl_query_name(const char *ip, const char *zone, char *out,
    size_t outlen);

/* Does an A record (4 octets) match the site's filter (any 127.0.0.0/8
 * answer when it has none)? */
bool dnsbl_answer_matches(const struct dnsbl_site *site,
    const unsigned char a[4]);

#endif
