/*
 * mx.c: where an attempt connects (RFC 5321 5.1). A transport or
 * relayhost names a host (in brackets: no MX lookup); otherwise the
 * recipient domain's MX records are looked up with libunbound and their
 * hosts tried in order of preference (equal preferences in the order the
 * resolver gave), then their AAAA and A addresses (libunbound too), at
 * most MAX_ADDRS in all. No MX records: the domain itself (the implicit
 * MX). NXDOMAIN, a null MX (RFC 7505) and a domain with neither MX nor
 * address fail the recipients at once (5.1.2, 5.1.10); SERVFAIL and
 * other failures to resolve defer them.
 *
 * Runs on a queue manager job thread: it blocks on DNS.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unbound.h>

#include "lib/base/alloc.h"
#include "lib/queue/mx_answer.h"
#include "lib/trust/dnsq.h"
#include "lib/base/log.h"
#include "lib/tls/tls.h"
#include "lib/trust/mta_sts.h"
#include "lib/trust/tls_rpt.h"
#include "queue/delivery.h"

/* Parse "smtp:[host]:port", "smtp:host:port", "smtp:host", "[host]";
 * "lmtp:[host]:port", "lmtp:inet:host:port", "lmtp:host[:port]" (port
 * 24, never an MX lookup). */
bool
nexthop_parse(const char *t, char **host_r, unsigned *port_r, bool *mx_r,
    bool *lmtp_r)
{
	const char *p = t, *end;
	char *host;

	*lmtp_r = false;
	*port_r = 25;
	if (strncasecmp(p, "smtp:", 5) == 0) {
		p += 5;
	} else if (strncasecmp(p, "relay:", 6) == 0) {
		p += 6;
	} else if (strncasecmp(p, "lmtp:", 5) == 0) {
		p += 5;
		if (strncasecmp(p, "inet:", 5) == 0)
			p += 5;
		*lmtp_r = true;
		*port_r = 24;
	}
	*mx_r = !*lmtp_r;
	if (*p == '[') {
		end = strchr(p, ']');
		if (end == NULL)
			return false;
		host = xstrndup(p + 1, (size_t)(end - p - 1));
		*mx_r = false;
		p = end + 1;
	} else {
		end = strrchr(p, ':');
		if (end == NULL)
			end = p + strlen(p);
		host = xstrndup(p, (size_t)(end - p));
		p = end;
	}
	if (*p == ':') {
		unsigned long port = strtoul(p + 1, NULL, 10);

		if (port == 0 || port > 65535) {
			free(host);
			return false;
		}
		*port_r = (unsigned)port;
	}
	if (host[0] == '\0') {
		free(host);
		return false;
	}
	*host_r = host;
	return true;
}


/* A lookup on the manager's context: through its pump thread (the
 * asynchronous mode) when it runs, else ub_resolve. */
int
mx_ub_resolve(struct delivery *d, const char *name, int type, int cls,
    struct ub_result **res_r)
{
	(void)cls;	/* always IN */
	if (d->m->ub_pump != NULL)
		return dnsq_resolve(d->m->ub, name, type, res_r);
	return ub_resolve(d->m->ub, name, type, 1, res_r);
}

static void
add_addr(struct delivery *d, const char *host, int family, const void *a,
    unsigned port)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	struct sockaddr_storage *ss = &d->addrs[d->naddrs];

	if (d->naddrs >= MAX_ADDRS)
		return;
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, a, 4);
		d->addrlen[d->naddrs] = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		memcpy(&sin6->sin6_addr, a, 16);
		d->addrlen[d->naddrs] = sizeof(*sin6);
	}
	inet_ntop(family, a, ip, sizeof(ip));
	snprintf(d->names[d->naddrs], sizeof(d->names[0]), "%s[%s]:%u",
	    host, ip, port);
	d->naddrs++;
}

/* Is a the name b, but for case and a trailing dot? */
static bool
same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* The A and AAAA records of host through libunbound (the resolver the MX
 * records came from: dns_resolver, or the system's), IPv6 first. An
 * address literal is taken as it is. 0: some address (or none exists),
 * -1: the lookup failed (SERVFAIL, timeout) and found nothing. When
 * cname_r is given and the answers came through CNAMEs, *cname_r is the
 * final name (libunbound's canonname; allocated), else NULL. */
static int
add_host_addrs(struct delivery *d, const char *host, unsigned port,
    bool *secure_r, char **cname_r)
{
	static const int types[2] = { 28 /* AAAA */, 1 /* A */ };
	unsigned char a[16];
	size_t before = d->naddrs;
	bool failed = false;

	*secure_r = false;
	if (cname_r != NULL)
		*cname_r = NULL;
	if (inet_pton(AF_INET6, host, a) == 1) {
		add_addr(d, host, AF_INET6, a, port);
		return 0;
	}
	if (inet_pton(AF_INET, host, a) == 1) {
		add_addr(d, host, AF_INET, a, port);
		return 0;
	}
	if (d->m->ub == NULL)
		return -1;
	*secure_r = true;
	for (int t = 0; t < 2; t++) {
		struct ub_result *res = NULL;
		size_t want = types[t] == 1 ? 4 : 16;

		if (mx_ub_resolve(d, host, types[t], 1, &res) != 0 ||
		    res == NULL) {
			failed = true;
			*secure_r = false;
			continue;
		}
		/* DANE: both answers (records or their absence) validated */
		if (!res->secure)
			*secure_r = false;
		if (res->rcode != 0 && !res->nxdomain)
			failed = true;
		if (cname_r != NULL && *cname_r == NULL &&
		    res->canonname != NULL && res->canonname[0] != '\0' &&
		    !same_name(res->canonname, host)) {
			size_t cl = strlen(res->canonname);

			if (res->canonname[cl - 1] == '.')
				cl--;
			*cname_r = xstrndup(res->canonname, cl);
		}
		for (int i = 0; res->havedata && res->data[i] != NULL; i++) {
			if (res->len[i] == (int)want)
				add_addr(d, host, types[t] == 1 ? AF_INET :
				    AF_INET6, res->data[i], port);
		}
		ub_resolve_free(res);
	}
	return d->naddrs == before && failed ? -1 : 0;
}

void
mx_dane_free(struct delivery *d)
{
	for (size_t i = 0; i < d->ndane; i++) {
		for (size_t j = 0; j < d->dane[i].ntlsa; j++)
			free(d->dane[i].tlsa[j].data);
		free(d->dane[i].tlsa);
		free(d->dane[i].name);
		free(d->dane[i].alias);
		free(d->dane[i].why);
	}
	free(d->dane);
	d->dane = NULL;
	d->ndane = 0;
}

/* The association data length a matching type needs (0: any). */
static size_t
tlsa_len(unsigned mtype)
{
	return mtype == 1 ? 32 : mtype == 2 ? 64 : 0;
}

/* The TLSA records at _PORT._tcp.host into h (h->level, h->tlsa, or
 * h->why): 1 when h is filled in (records, or a failure), 0 when there
 * are none to use (no records, or insecure ones). */
static int
tlsa_query(struct delivery *d, const char *host, struct dane_host *h)
{
	struct ub_result *res = NULL;
	size_t hl = strlen(host);
	char *qname;
	int r;

	if (hl > 0 && host[hl - 1] == '.')
		hl--;
	qname = xasprintf("_%u._tcp.%.*s", d->port, (int)hl, host);
	r = mx_ub_resolve(d, qname, 52 /* TLSA */, 1, &res);
	if (r != 0 || res == NULL) {
		h->level = DANE_FAIL;
		h->rpt_result = TLS_RPT_TLSA_INVALID;
		h->why = xasprintf("451 4.7.5 TLSA lookup for %s failed (%s)",
		    qname, ub_strerror(r));
	} else if (res->bogus) {
		h->level = DANE_FAIL;
		h->rpt_result = TLS_RPT_DNSSEC_INVALID;
		h->why = xasprintf("451 4.7.5 TLSA lookup for %s failed "
		    "DNSSEC validation (%s)", qname, res->why_bogus ?
		    res->why_bogus : "bogus");
	} else if (res->rcode != 0 && !res->nxdomain) {
		h->level = DANE_FAIL;
		h->rpt_result = TLS_RPT_TLSA_INVALID;
		h->why = xasprintf("451 4.7.5 TLSA lookup for %s failed "
		    "(DNS rcode %d)", qname, res->rcode);
	} else if (!res->secure || res->nxdomain || !res->havedata) {
		/* no records, or unsigned ones that an attacker could have
		 * made (or removed): as without DANE */
		ub_resolve_free(res);
		free(qname);
		return 0;
	} else {
		for (int i = 0; res->data[i] != NULL; i++) {
			const unsigned char *p =
			    (const unsigned char *)res->data[i];
			size_t len = res->len[i] > 0 ? (size_t)res->len[i] : 0;
			struct tls_tlsa *t;

			/* RFC 7672 3.1.3: only DANE-TA(2) and DANE-EE(3);
			 * selectors 0 and 1, digests of the right length
			 * (a full value with matching type 0) */
			if (len < 4 || (p[0] != 2 && p[0] != 3) || p[1] > 1 ||
			    p[2] > 2 ||
			    (tlsa_len(p[2]) != 0 && len - 3 != tlsa_len(p[2])))
				continue;
			h->tlsa = xrealloc(h->tlsa, (h->ntlsa + 1) *
			    sizeof(*h->tlsa));
			t = &h->tlsa[h->ntlsa++];
			t->usage = p[0];
			t->selector = p[1];
			t->mtype = p[2];
			t->len = len - 3;
			t->data = xmalloc(t->len);
			memcpy(t->data, p + 3, t->len);
		}
		h->level = h->ntlsa > 0 ? DANE_VERIFY : DANE_ENCRYPT;
	}
	if (res != NULL)
		ub_resolve_free(res);
	free(qname);
	return 1;
}

/*
 * RFC 7672 2.2: the TLSA records of a secure MX host, validated. Returns
 * 1 + the index of its dane_host entry, or 0 when none applies (no
 * records, or insecure ones: the host gets opportunistic TLS as without
 * DANE). cname: the host's final name when its (secure) address answers
 * came through CNAMEs: RFC 7672 2.2.2 and RFC 7671 7 make it the TLSA
 * base domain tried first, the MX host name next (only when the first
 * has no records, not when its lookup fails), and both names reference
 * identifiers of the certificate. An insecure CNAME makes the address
 * answer insecure too (libunbound's secure covers the whole chain), and
 * then no TLSA lookup is made at all.
 */
static int
dane_lookup(struct delivery *d, const char *host, const char *cname)
{
	struct dane_host h;
	const char *base = cname != NULL ? cname : host;
	size_t hl = strlen(host);

	memset(&h, 0, sizeof(h));
	if (tlsa_query(d, base, &h) == 0) {
		if (cname == NULL || tlsa_query(d, host, &h) == 0)
			return 0;
		base = host;
	}
	if (hl > 0 && host[hl - 1] == '.')
		hl--;
	if (base == host) {
		h.name = xstrndup(host, hl);
		h.alias = cname != NULL ? xstrdup(cname) : NULL;
	} else {
		h.name = xstrdup(cname);
		h.alias = xstrndup(host, hl);
	}
	d->dane = xrealloc(d->dane, (d->ndane + 1) * sizeof(*d->dane));
	d->dane[d->ndane] = h;
	return (int)++d->ndane;
}

/* MTA-STS: what the policy asks of host's addresses (from index
 * before), those without DANE (RFC 8461 2: DANE wins). */
static void
sts_mark(struct delivery *d, const char *host, size_t before)
{
	bool match = mta_sts_mx_match(d->sts, host);

	for (size_t i = before; i < d->naddrs; i++) {
		if (d->addr_dane[i] != 0)
			continue;
		if (match)
			d->addr_sts[i] = STS_CHECK;
		else if (d->sts->mode == MTA_STS_ENFORCE)
			d->addr_sts[i] = STS_NOMATCH;
		else
			d->addr_sts[i] = STS_TESTING_NOMATCH;
	}
	if (!match && d->addr_dane[before] == 0 &&
	    d->sts->mode == MTA_STS_TESTING)
		log_warn("%s: MTA-STS (testing): %s matches no mx pattern of "
		    "the policy of %s; enforce would not deliver to it",
		    d->msg.id, host, d->host);
}

/* RFC 8689 5: the message says "TLS-Required: No" (and was not sent
 * with REQUIRETLS): no DANE and no MTA-STS policy for it, opportunistic
 * TLS as without them. */
static bool
policies_waived(const struct delivery *d)
{
	return d->msg.tls_optional && !d->msg.requiretls;
}

/* The addresses of one MX host (or the implicit one), with DANE when the
 * MX answer (mx_secure) and the host's addresses are DNSSEC-secure. */
static bool
add_mx_host(struct delivery *d, const char *host, bool mx_secure)
{
	size_t before = d->naddrs;
	char *cname = NULL;
	bool secure, failed = add_host_addrs(d, host, d->port, &secure,
	    &cname) < 0;
	int dh;

	if (d->m->dane && mx_secure && secure && d->naddrs > before &&
	    !policies_waived(d)) {
		dh = dane_lookup(d, host, cname);
		for (size_t i = before; i < d->naddrs; i++)
			d->addr_dane[i] = dh;
	}
	free(cname);
	if (d->sts != NULL && d->naddrs > before)
		sts_mark(d, host, before);
	return failed;
}

void
mx_resolve(struct delivery *d)
{
	bool mx_secure;
	struct ub_result *res = NULL;
	struct mx_record mx[MX_RECORDS_MAX];
	const unsigned char *data[MX_RECORDS_MAX * 4];
	size_t len[MX_RECORDS_MAX * 4], n = 0, nmx;
	int r;

	if (!d->use_mx) {
		bool secure;

		/* as Postfix: a [host] next hop has no MX lookup, and no DANE
		 * either */
		if (add_host_addrs(d, d->host, d->port, &secure, NULL) < 0 ||
		    d->naddrs == 0)
			d->resolve_error = xasprintf("cannot resolve %s",
			    d->host);
		return;
	}
	if (d->m->ub == NULL ||
	    (r = mx_ub_resolve(d, d->host, 15 /* MX */, 1, &res)) != 0) {
		d->resolve_error = xasprintf("MX lookup for %s failed",
		    d->host);
		return;
	}
	if (d->m->dane && res->bogus) {
		/* signed, and the signatures do not hold: not an answer to
		 * deliver by (RFC 7672 2.2.1) */
		d->resolve_error = xasprintf("451 4.7.5 MX lookup for %s "
		    "failed DNSSEC validation (%s)", d->host,
		    res->why_bogus ? res->why_bogus : "bogus");
		ub_resolve_free(res);
		return;
	}
	if (!res->nxdomain && res->rcode != 0) {
		/* SERVFAIL, REFUSED, a timeout: try again later */
		d->resolve_error = xasprintf("451 4.4.3 MX lookup for %s "
		    "failed (DNS rcode %d)", d->host, res->rcode);
		ub_resolve_free(res);
		return;
	}
	if (res->nxdomain) {
		d->resolve_error = xasprintf("550 5.1.2 domain %s does not exist",
		    d->host);
		d->resolve_permanent = true;
		ub_resolve_free(res);
		return;
	}
	for (int i = 0; res->havedata && res->data[i] != NULL &&
	    n < sizeof(data) / sizeof(data[0]); i++) {
		data[n] = (const unsigned char *)res->data[i];
		len[n++] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
	}
	/* malformed records (and names that are not host names) are
	 * skipped; the rest sorted by preference */
	nmx = mx_answer_sort(data, len, n, mx);
	mx_secure = res->secure;
	ub_resolve_free(res);
	/* RFC 7505: a null MX means the domain takes no mail. */
	if (mx_answer_null(mx, nmx)) {
		d->resolve_error = xasprintf("556 5.1.10 domain %s does not "
		    "accept mail (null MX)", d->host);
		d->resolve_permanent = true;
		return;
	}
	bool failed = false;

	/* RFC 8461: the recipient domain's policy, for its MX hosts */
	if (d->m->sts_cache != NULL && !policies_waived(d))
		sts_lookup(d);
	for (size_t i = 0; i < nmx; i++)
		failed |= add_mx_host(d, mx[i].name, mx_secure);
	if (nmx == 0)	/* RFC 5321 5.1: the implicit MX (RFC 7672 2.2.1:
			 * DANE when the absence of MX records is secure) */
		failed |= add_mx_host(d, d->host, mx_secure);
	if (d->naddrs == 0 && !failed && nmx == 0) {
		/* no MX and no address: nothing will ever take it */
		d->resolve_error = xasprintf("550 5.1.2 domain %s has no MX "
		    "and no address", d->host);
		d->resolve_permanent = true;
	} else if (d->naddrs == 0) {
		d->resolve_error = xasprintf("451 4.4.3 no address for the "
		    "MX hosts of %s", d->host);
	}
}
