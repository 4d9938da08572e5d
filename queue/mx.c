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

/* The A and AAAA records of host through libunbound (the resolver the MX
 * records came from: dns_resolver, or the system's), IPv6 first. An
 * address literal is taken as it is. 0: some address (or none exists),
 * -1: the lookup failed (SERVFAIL, timeout) and found nothing. */
static int
add_host_addrs(struct delivery *d, const char *host, unsigned port)
{
	static const int types[2] = { 28 /* AAAA */, 1 /* A */ };
	unsigned char a[16];
	size_t before = d->naddrs;
	bool failed = false;

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
	for (int t = 0; t < 2; t++) {
		struct ub_result *res = NULL;
		size_t want = types[t] == 1 ? 4 : 16;

		if (ub_resolve(d->m->ub, host, types[t], 1, &res) != 0 ||
		    res == NULL) {
			failed = true;
			continue;
		}
		if (res->rcode != 0 && !res->nxdomain)
			failed = true;
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
mx_resolve(struct delivery *d)
{
	struct ub_result *res = NULL;
	struct mx_record mx[MX_RECORDS_MAX];
	const unsigned char *data[MX_RECORDS_MAX * 4];
	size_t len[MX_RECORDS_MAX * 4], n = 0, nmx;
	int r;

	if (!d->use_mx) {
		if (add_host_addrs(d, d->host, d->port) < 0 || d->naddrs == 0)
			d->resolve_error = xasprintf("cannot resolve %s",
			    d->host);
		return;
	}
	if (d->m->ub == NULL ||
	    (r = ub_resolve(d->m->ub, d->host, 15 /* MX */, 1, &res)) != 0) {
		d->resolve_error = xasprintf("MX lookup for %s failed",
		    d->host);
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
	ub_resolve_free(res);
	/* RFC 7505: a null MX means the domain takes no mail. */
	if (mx_answer_null(mx, nmx)) {
		d->resolve_error = xasprintf("556 5.1.10 domain %s does not "
		    "accept mail (null MX)", d->host);
		d->resolve_permanent = true;
		return;
	}
	bool failed = false;

	for (size_t i = 0; i < nmx; i++)
		failed |= add_host_addrs(d, mx[i].name, d->port) < 0;
	if (nmx == 0)	/* RFC 5321 5.1: the implicit MX */
		failed |= add_host_addrs(d, d->host, d->port) < 0;
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
