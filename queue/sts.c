/*
 * sts.c: MTA-STS (RFC 8461) for the queue's MX deliveries, on a job
 * thread (it blocks on DNS and HTTPS): the _mta-sts.DOMAIN TXT record,
 * the policy fetched from https://mta-sts.DOMAIN/.well-known/mta-sts.txt
 * (lib/tls: the certificate verified against smtp_tls_ca or the system's
 * store, no redirects, MTA_STS_POLICY_MAX octets, STS_FETCH_TIMEOUT
 * seconds), parsed strictly (lib/trust/mta_sts), and kept in memory per
 * domain with its record's id: fetched again when the id changes or
 * max_age runs out. A cached policy that has not expired is used when
 * the record is gone or the fetch fails (RFC 8461 5.1); with none, a
 * failure means "no policy": the mail goes as without MTA-STS. Nothing
 * is kept on disk: after a restart the first delivery to a domain
 * fetches its policy again.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unbound.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/tls/tls.h"
#include "lib/trust/mta_sts.h"
#include "lib/trust/rdata.h"
#include "lib/trust/tls_rpt.h"
#include "queue/delivery.h"

#define STS_FETCH_TIMEOUT 10	/* seconds for one policy fetch */
#define STS_CACHE_MAX 4096	/* domains kept */
#define STS_ADDRS_MAX 4		/* addresses of mta-sts.DOMAIN tried */

struct sts_entry {
	char *domain;
	char id[33];
	time_t expires;
	struct mta_sts_policy policy;
};

struct sts_cache {
	pthread_mutex_t lock;
	struct sts_entry *e;
	size_t n;
};

void
sts_cache_init(struct mgr *m)
{
	m->sts_cache = xcalloc(1, sizeof(*m->sts_cache));
	pthread_mutex_init(&m->sts_cache->lock, NULL);
}

void
sts_cache_free(struct mgr *m)
{
	struct sts_cache *c = m->sts_cache;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->e[i].domain);
	free(c->e);
	pthread_mutex_destroy(&c->lock);
	free(c);
	m->sts_cache = NULL;
}

/* The unexpired cached policy of domain (with id, or any id when id is
 * NULL) copied into *p: true when there is one. */
static bool
cache_get(struct sts_cache *c, const char *domain, const char *id,
    struct mta_sts_policy *p)
{
	time_t now = time(NULL);
	bool found = false;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++) {
		if (strcasecmp(c->e[i].domain, domain) != 0)
			continue;
		if (c->e[i].expires > now &&
		    (id == NULL || strcmp(c->e[i].id, id) == 0)) {
			*p = c->e[i].policy;
			found = true;
		}
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

static void
cache_put(struct sts_cache *c, const char *domain, const char *id,
    const struct mta_sts_policy *p)
{
	time_t now = time(NULL);
	struct sts_entry *e = NULL;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n && e == NULL; i++)
		if (strcasecmp(c->e[i].domain, domain) == 0)
			e = &c->e[i];
	if (e == NULL && c->n == STS_CACHE_MAX) {
		/* full: the entry that expires first makes room */
		size_t v = 0;

		for (size_t i = 1; i < c->n; i++)
			if (c->e[i].expires < c->e[v].expires)
				v = i;
		e = &c->e[v];
		free(e->domain);
		e->domain = xstrdup(domain);
	}
	if (e == NULL) {
		c->e = xrealloc(c->e, (c->n + 1) * sizeof(*c->e));
		e = &c->e[c->n++];
		e->domain = xstrdup(domain);
	}
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->expires = now + (time_t)p->max_age;
	e->policy = *p;
	pthread_mutex_unlock(&c->lock);
}

/* The TXT record at _mta-sts.domain: 1 with its id, 0 when there is no
 * (single, valid) STSv1 record, -1 when the lookup failed. */
static int
txt_lookup(struct delivery *d, const char *domain, char id[33])
{
	struct ub_result *res = NULL;
	char *q = xasprintf("_mta-sts.%s", domain);
	int found = 0, bad = 0, r;

	r = mx_ub_resolve(d, q, 16 /* TXT */, 1, &res);
	free(q);
	if (r != 0 || res == NULL)
		return -1;
	if (res->rcode != 0 && !res->nxdomain) {
		ub_resolve_free(res);
		return -1;
	}
	for (int i = 0; res->havedata && res->data[i] != NULL; i++) {
		size_t tl;
		int trunc = 0;
		char *t = rdata_txt_join(res->data[i], res->len[i] > 0 ?
		    (size_t)res->len[i] : 0, 1024, &tl, &trunc);
		char tid[33];
		int pr = trunc ? -1 : mta_sts_txt_parse(t, tl, tid);

		free(t);
		if (pr == 0)
			continue;	/* another kind of record */
		if (pr < 0 || found++ > 0) {
			bad = 1;
			continue;
		}
		memcpy(id, tid, sizeof(tid));
	}
	ub_resolve_free(res);
	/* RFC 8461 3.1: several STSv1 records, or a malformed one, are as
	 * none */
	if (bad) {
		log_warn("mta-sts: %s: _mta-sts TXT record malformed or "
		    "given more than once; as none", domain);
		return 0;
	}
	return found == 1 ? 1 : 0;
}

/* Fetch and parse the policy of domain: 0 with *p, or -1 (logged) with
 * the TLS report's result type in *rpt_r and the reason in rerr. */
static int
fetch_policy(struct delivery *d, const char *domain,
    struct mta_sts_policy *p, const char **rpt_r, char *rerr, size_t rlen)
{
	static const int types[2] = { 28 /* AAAA */, 1 /* A */ };
	char *host = xasprintf("mta-sts.%s", domain), err[300] = "";
	struct sockaddr_storage ss[STS_ADDRS_MAX];
	unsigned sl[STS_ADDRS_MAX];
	size_t n = 0;
	int ret = -1;

	if (d->m->pkix_tls == NULL) {
		snprintf(err, sizeof(err), "%s", d->m->pkix_tls_error);
		goto out;
	}
	for (int t = 0; t < 2; t++) {
		struct ub_result *res = NULL;
		size_t want = types[t] == 1 ? 4 : 16;

		if (mx_ub_resolve(d, host, types[t], 1, &res) != 0 ||
		    res == NULL)
			continue;
		for (int i = 0; res->havedata && res->data[i] != NULL &&
		    n < STS_ADDRS_MAX; i++) {
			if (res->len[i] != (int)want)
				continue;
			memset(&ss[n], 0, sizeof(ss[n]));
			if (want == 4) {
				struct sockaddr_in *s4 =
				    (struct sockaddr_in *)(void *)&ss[n];

				s4->sin_family = AF_INET;
				s4->sin_port = htons(443);
				memcpy(&s4->sin_addr, res->data[i], 4);
				sl[n++] = sizeof(*s4);
			} else {
				struct sockaddr_in6 *s6 =
				    (struct sockaddr_in6 *)(void *)&ss[n];

				s6->sin6_family = AF_INET6;
				s6->sin6_port = htons(443);
				memcpy(&s6->sin6_addr, res->data[i], 16);
				sl[n++] = sizeof(*s6);
			}
		}
		ub_resolve_free(res);
	}
	if (n == 0) {
		snprintf(err, sizeof(err), "no address for %s", host);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char *body = NULL;
		size_t len;
		const char *perr;

		if (tls_https_get(d->m->pkix_tls,
		    (const struct sockaddr *)&ss[i], sl[i], host,
		    "/.well-known/mta-sts.txt", MTA_STS_POLICY_MAX,
		    STS_FETCH_TIMEOUT, &body, &len, err, sizeof(err)) < 0)
			continue;
		if (mta_sts_policy_parse(body, len, p, &perr) < 0) {
			snprintf(err, sizeof(err), "invalid policy: %s", perr);
			*rpt_r = TLS_RPT_STS_INVALID;
			free(body);
			break;	/* the server answered: not another */
		}
		free(body);
		ret = 0;
		break;
	}
out:
	if (ret < 0 && *rpt_r == NULL)
		*rpt_r = strncmp(err, "certificate not verified", 24) == 0 ?
		    TLS_RPT_STS_WEBPKI : TLS_RPT_STS_FETCH;
	snprintf(rerr, rlen, "%s", err);
	if (ret < 0)
		log_warn("mta-sts: policy of %s not fetched from https://%s/"
		    ".well-known/mta-sts.txt: %s", domain, host, err);
	free(host);
	return ret;
}

void
sts_lookup(struct delivery *d)
{
	struct sts_cache *c = d->m->sts_cache;
	struct mta_sts_policy p;
	const char *domain = d->host;
	char id[33], rerr[300];
	const char *rpt = NULL;
	int t;

	if (c == NULL || domain[0] == '\0' || strlen(domain) > 240 ||
	    strspn(domain, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != strlen(domain))
		return;	/* not a host name to put in a query or a request
			 * (an address literal has no MX either) */
	t = txt_lookup(d, domain, id);
	if (t <= 0) {
		/* no record (or its lookup failed): a cached policy that has
		 * not expired still holds (RFC 8461 5.1) */
		if (!cache_get(c, domain, NULL, &p))
			return;
	} else if (!cache_get(c, domain, id, &p)) {
		if (fetch_policy(d, domain, &p, &rpt, rerr, sizeof(rerr)) ==
		    0) {
			cache_put(c, domain, id, &p);
			log_info("mta-sts: policy of %s (id %s): mode %s, "
			    "max_age %lu, %zu mx", domain, id,
			    mta_sts_mode_name(p.mode), p.max_age, p.nmx);
		} else {
			rpt_policy_error(d, rpt, rerr);
			if (!cache_get(c, domain, NULL, &p)) {
				log_warn("mta-sts: %s: no policy cached; "
				    "delivering as without MTA-STS", domain);
				return;
			}
		}
	}
	if (p.mode == MTA_STS_NONE)
		return;
	d->sts = xmalloc(sizeof(*d->sts));
	*d->sts = p;
}
