/*
 * dnsrec.c: the records of `petrel dns DOMAIN` (see dnsrec.h).
 *
 * Choices, stated once: SPF "mx -all" (the domain's mail leaves through
 * its MX host only); DMARC p=quarantine when the domain signs with DKIM
 * and p=none when it does not (a forwarded message would fail SPF with
 * nothing to save it), aggregate reports to postmaster@ (RFC 5321 says
 * it exists); TLS-RPT reports to postmaster@ too. RFC 6186 section 4:
 * a service that is not offered is published with the target ".".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/dnsrec/dnsrec.h"
#include "lib/tls/tls.h"

struct list {
	struct dnsrec *r;
	size_t n;
	const char *domain;
};

/* Does name (absolute, final dot) lie in the zone of domain? */
static bool
in_zone(const char *name, const char *domain)
{
	size_t n = strlen(name) - 1, d = strlen(domain);

	if (n == d)
		return strncmp(name, domain, d) == 0;
	return n > d && name[n - d - 1] == '.' &&
	    strncmp(name + n - d, domain, d) == 0;
}

static void
add(struct list *l, char *name, const char *type, char *rdata, char *value)
{
	struct dnsrec *r;

	l->r = xrealloc(l->r, (l->n + 1) * sizeof(*l->r));
	r = &l->r[l->n++];
	r->name = name;
	r->type = type;
	r->rdata = rdata;
	r->value = value != NULL ? value : xstrdup(rdata);
	r->in_zone = in_zone(name, l->domain);
}

/* TXT data: quoted pieces of at most 255 bytes (RFC 1035 3.3.14). The
 * values made here hold no quote or backslash. */
static void
add_txt(struct list *l, char *name, const char *text)
{
	str_t s = STR_INIT;
	size_t len = strlen(text);

	for (size_t off = 0; off < len || off == 0; off += 255) {
		size_t k = len - off < 255 ? len - off : 255;

		if (off > 0)
			str_append(&s, " ");
		str_append(&s, "\"");
		str_append_n(&s, text + off, k);
		str_append(&s, "\"");
		if (len == 0)
			break;
	}
	add(l, name, "TXT", str_steal(&s), xstrdup(text));
}

static void
add_srv(struct list *l, const char *service, unsigned port,
    const char *host)
{
	char *name = xasprintf("_%s._tcp.%s.", service, l->domain);

	if (port == 0)
		add(l, name, "SRV", xstrdup("0 0 0 ."), NULL);
	else
		add(l, name, "SRV", xasprintf("0 1 %u %s.", port, host),
		    NULL);
}

char *
dnsrec_mta_sts_policy(const char *hostname)
{
	return xasprintf("version: STSv1\r\nmode: testing\r\nmx: %s\r\n"
	    "max_age: 604800\r\n", hostname);
}

void
dnsrec_mta_sts_id(const char *policy, char id_r[21])
{
	unsigned char md[32];

	crypto_sha256(policy, strlen(policy), md);
	for (int i = 0; i < 10; i++)
		snprintf(id_r + 2 * i, 3, "%02x", md[i]);
}

struct dnsrec *
dnsrec_build(const struct dnsrec_input *in, size_t *n_r)
{
	struct list l = { NULL, 0, in->domain };
	const char *d = in->domain, *h = in->hostname;
	char *policy, id[21], *t;

	add(&l, xasprintf("%s.", d), "MX", xasprintf("10 %s.", h), NULL);
	add_txt(&l, xasprintf("%s.", d), "v=spf1 mx -all");
	if (in->dkim_selector != NULL) {
		t = xasprintf("v=DKIM1; k=rsa; p=%s", in->dkim_pub_b64);
		add_txt(&l, xasprintf("%s._domainkey.%s.", in->dkim_selector,
		    d), t);
		free(t);
		/* a rotation's other key, published during the overlap */
		for (size_t i = 0; i < 2; i++) {
			if (in->dkim_more_selector[i] == NULL)
				continue;
			t = xasprintf("v=DKIM1; k=rsa; p=%s",
			    in->dkim_more_pub_b64[i]);
			add_txt(&l, xasprintf("%s._domainkey.%s.",
			    in->dkim_more_selector[i], d), t);
			free(t);
		}
	}
	t = xasprintf("v=DMARC1; p=%s; rua=mailto:postmaster@%s",
	    in->dkim_selector != NULL ? "quarantine" : "none", d);
	add_txt(&l, xasprintf("_dmarc.%s.", d), t);
	free(t);
	policy = dnsrec_mta_sts_policy(h);
	dnsrec_mta_sts_id(policy, id);
	free(policy);
	t = xasprintf("v=STSv1; id=%s", id);
	add_txt(&l, xasprintf("_mta-sts.%s.", d), t);
	free(t);
	add(&l, xasprintf("mta-sts.%s.", d), "CNAME", xasprintf("%s.", h),
	    NULL);
	t = xasprintf("v=TLSRPTv1; rua=mailto:postmaster@%s", d);
	add_txt(&l, xasprintf("_smtp._tls.%s.", d), t);
	free(t);
	add_srv(&l, "submissions", in->submissions, h);
	add_srv(&l, "submission", in->submission, h);
	add_srv(&l, "imaps", in->imaps, h);
	add_srv(&l, "imap", in->imap, h);
	add_srv(&l, "pop3s", in->pop3s, h);
	add_srv(&l, "pop3", in->pop3, h);
	add_srv(&l, "sieve", in->sieve, h);
	add(&l, xasprintf("autoconfig.%s.", d), "CNAME", xasprintf("%s.", h),
	    NULL);
	add(&l, xasprintf("autodiscover.%s.", d), "CNAME",
	    xasprintf("%s.", h), NULL);
	if (in->tlsa_sha256 != NULL)
		add(&l, xasprintf("_25._tcp.%s.", h), "TLSA",
		    xasprintf("3 1 1 %s", in->tlsa_sha256), NULL);
	*n_r = l.n;
	return l.r;
}

void
dnsrec_free(struct dnsrec *recs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(recs[i].name);
		free(recs[i].rdata);
		free(recs[i].value);
	}
	free(recs);
}
