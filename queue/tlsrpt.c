/*
 * tlsrpt.c: the rows of SMTP TLS reports (RFC 8460, lib/trust/tls_rpt)
 * for the queue's MX deliveries, with `tls_rpt_reports = yes`.
 *
 * A session is a connection to one address of the recipient domain's
 * MX hosts whose TLS outcome is known: a success once TLS is up and the
 * policy held (or, without a policy, once STARTTLS worked); a failure
 * with its result type when a DANE or MTA-STS requirement was not met or
 * the server offered no STARTTLS. The policy is the one that governed the
 * address: "tlsa" (the MX host's TLSA records), "sts" (the domain's
 * MTA-STS policy, also in testing mode), else "no-policy-found". A kept
 * connection taken again is no new session. Relayhosts, transports and
 * LMTP next hops are not reported: they have no policy domain.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/tls/tls.h"
#include "lib/trust/mta_sts.h"
#include "lib/trust/tls_rpt.h"
#include "queue/delivery.h"

static bool
rpt_wanted(const struct delivery *d)
{
	return d->m->tls_rpt_db != NULL && d->use_mx && !d->lmtp;
}

static void
row_init(struct delivery *d, struct tls_rpt_row *r, const char *result,
    const char *detail)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	r->time = (int64_t)time(NULL);
	for (i = 0; d->host[i] != '\0' && i + 1 < sizeof(r->domain); i++)
		r->domain[i] = (char)tolower((unsigned char)d->host[i]);
	if (i > 0 && r->domain[i - 1] == '.')
		i--;
	r->domain[i] = '\0';
	snprintf(r->result, sizeof(r->result), "%s", result ? result : "");
	snprintf(r->detail, sizeof(r->detail), "%s", detail ? detail : "");
}

/* The policy as RFC 8461 3.2 writes it: what the report's
 * policy-string holds. */
static void
sts_text(const struct mta_sts_policy *p, struct tls_rpt_row *r)
{
	str_t s = STR_INIT, mx = STR_INIT;

	str_printf(&s, "version: STSv1\nmode: %s\n",
	    mta_sts_mode_name(p->mode));
	for (size_t i = 0; i < p->nmx; i++) {
		str_printf(&s, "mx: %s\n", p->mx[i]);
		str_printf(&mx, "%s%s", i > 0 ? "\n" : "", p->mx[i]);
	}
	str_printf(&s, "max_age: %lu", p->max_age);
	snprintf(r->policy, sizeof(r->policy), "%s", str_c(&s));
	snprintf(r->mx, sizeof(r->mx), "%s", str_c(&mx));
	str_free(&s);
	str_free(&mx);
}

static void
tlsa_text(const struct dane_host *dh, struct tls_rpt_row *r)
{
	str_t s = STR_INIT;

	for (size_t i = 0; i < dh->ntlsa; i++) {
		const struct tls_tlsa *t = &dh->tlsa[i];

		str_printf(&s, "%s%u %u %u ", i > 0 ? "\n" : "", t->usage,
		    t->selector, t->mtype);
		for (size_t k = 0; k < t->len; k++)
			str_printf(&s, "%02x", t->data[k]);
	}
	/* a record cut short would misstate the policy: none then */
	if (s.len < sizeof(r->policy))
		snprintf(r->policy, sizeof(r->policy), "%s", str_c(&s));
	str_free(&s);
}

void
rpt_session(struct delivery *d, const struct dane_host *dh,
    const char *result, const char *detail)
{
	struct tls_rpt_row r;
	const struct sockaddr_storage *ss;
	const char *n, *b;

	if (!rpt_wanted(d) || d->rpt_done || d->cur >= d->naddrs)
		return;
	d->rpt_done = true;
	row_init(d, &r, result, detail);
	if (dh != NULL) {
		snprintf(r.policy_type, sizeof(r.policy_type), "tlsa");
		tlsa_text(dh, &r);
	} else if (d->sts != NULL) {
		snprintf(r.policy_type, sizeof(r.policy_type), "sts");
		sts_text(d->sts, &r);
	} else {
		snprintf(r.policy_type, sizeof(r.policy_type),
		    "no-policy-found");
	}
	snprintf(r.sending_ip, sizeof(r.sending_ip), "%s", d->local_ip);
	n = d->names[d->cur];
	b = strchr(n, '[');
	snprintf(r.receiving_mx, sizeof(r.receiving_mx), "%.*s",
	    (int)(b != NULL ? (size_t)(b - n) : strlen(n)), n);
	ss = &d->addrs[d->cur];
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)
		    ss)->sin_addr, r.receiving_ip, sizeof(r.receiving_ip));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
		    (const void *)ss)->sin6_addr, r.receiving_ip,
		    sizeof(r.receiving_ip));
	tls_rpt_record(d->m->tls_rpt_db, &r);
}

void
rpt_policy_error(struct delivery *d, const char *result, const char *detail)
{
	struct tls_rpt_row r;

	if (!rpt_wanted(d))
		return;
	row_init(d, &r, result, detail);
	/* the policy could not be had: the report says so under "sts"
	 * without its text (RFC 8460 4.3.2.2) */
	snprintf(r.policy_type, sizeof(r.policy_type), "sts");
	tls_rpt_record(d->m->tls_rpt_db, &r);
}
