/*
 * mx.c: where an attempt connects (RFC 5321 5.1). A transport or
 * relayhost names a host (in brackets: no MX lookup); otherwise the
 * recipient domain's MX records are looked up with libunbound and their
 * hosts tried in order of preference (equal preferences in the order the
 * resolver gave), then their A/AAAA addresses (getaddrinfo), at most
 * MAX_ADDRS in all. No MX records: the domain itself (the implicit MX).
 * NXDOMAIN and a null MX (RFC 7505) fail the recipients at once (5.1.2,
 * 5.1.10); any other failure to resolve defers them.
 *
 * Runs on a queue manager job thread: it blocks on DNS.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unbound.h>

#include "lib/base/alloc.h"
#include "lib/queue/mx_answer.h"
#include "queue/delivery.h"

/* Parse "smtp:[host]:port", "smtp:host:port", "smtp:host", "[host]". */
bool
nexthop_parse(const char *t, char **host_r, unsigned *port_r, bool *mx_r)
{
	const char *p = t, *end;
	char *host;

	if (strncmp(p, "smtp:", 5) == 0)
		p += 5;
	else if (strncmp(p, "relay:", 6) == 0)
		p += 6;
	*port_r = 25;
	*mx_r = true;
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

static int
add_host_addrs(struct delivery *d, const char *host, unsigned port)
{
	struct addrinfo hints, *res, *ai;
	char portstr[8];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	r = getaddrinfo(host, portstr, &hints, &res);
	if (r != 0)
		return r == EAI_NONAME ? -2 : -1;
	for (ai = res; ai != NULL && d->naddrs < MAX_ADDRS; ai = ai->ai_next) {
		char ip[INET6_ADDRSTRLEN] = "?";

		if (ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)
			    ai->ai_addr)->sin_addr, ip, sizeof(ip));
		else if (ai->ai_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)
			    ai->ai_addr)->sin6_addr, ip, sizeof(ip));
		else
			continue;
		memcpy(&d->addrs[d->naddrs], ai->ai_addr, ai->ai_addrlen);
		d->addrlen[d->naddrs] = ai->ai_addrlen;
		snprintf(d->names[d->naddrs], sizeof(d->names[0]), "%s[%s]:%u",
		    host, ip, port);
		d->naddrs++;
	}
	freeaddrinfo(res);
	return 0;
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
	for (size_t i = 0; i < nmx; i++)
		add_host_addrs(d, mx[i].name, d->port);
	if (nmx == 0)	/* RFC 5321 5.1: the implicit MX */
		add_host_addrs(d, d->host, d->port);
	if (d->naddrs == 0)
		d->resolve_error = xasprintf("no address for %s", d->host);
}
