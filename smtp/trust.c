/*
 * trust.c: the SMTP server's checks of who sent a message (SPEC 6,
 * "trust"): SPF at MAIL FROM (lib/trust/spf), DKIM and DMARC at the end
 * of the data (lib/trust/dkim_verify, lib/trust/dmarc), and the one
 * Authentication-Results field (lib/trust/authres) that records them, put
 * on top of the stored copy. With dmarc_policy = enforce, DMARC's p=reject
 * refuses the message and p=quarantine files it in Junk (cmd_data.c).
 * Every check that looks something up runs on a job thread: the event
 * loop never waits for DNS.
 *
 * Not checked (as Postfix setups put permit_sasl_authenticated and
 * permit_mynetworks before the SPF policy): authenticated sessions
 * (submission), and clients connecting from this host itself (127.0.0.1,
 * ::1: local injection, a content filter handing mail back): neither SPF
 * nor DMARC. Other loopback addresses are checked like any client.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/io/jobs.h"
#include "lib/milter/milter.h"
#include "lib/queue/spool.h"
#include "lib/session/session.h"
#include "lib/trust/arc.h"
#include "lib/trust/authres.h"
#include "lib/trust/dkim_verify.h"
#include "lib/trust/dmarc.h"
#include "lib/trust/dmarc_report.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/domain_policy.h"
#include "lib/trust/spf.h"
#include "smtp/smtp-private.h"

#define HEADER_SCAN_MAX (1024 * 1024)	/* Authentication-Results looked
					 * for in the first MiB */

void
smtp_trust_init(struct smtp_server *srv, const struct config *cfg)
{
	const char *p = config_get(cfg, "spf_policy");
	char *err = NULL;

	srv->spf_policy = strcmp(p, "reject") == 0 ? SMTP_SPF_REJECT :
	    strcmp(p, "ignore") == 0 ? SMTP_SPF_IGNORE : SMTP_SPF_MARK;
	srv->dkim_verify = strcmp(config_get(cfg, "dkim_verify"), "yes") == 0;
	srv->arc_verify = strcmp(config_get(cfg, "arc"), "off") != 0;
	p = config_get(cfg, "dmarc_policy");
	srv->dmarc_policy = strcmp(p, "enforce") == 0 ? SMTP_DMARC_ENFORCE :
	    strcmp(p, "ignore") == 0 ? SMTP_DMARC_IGNORE : SMTP_DMARC_MARK;
	if (domain_policies_load(config_get(cfg, "domain_policy_file"),
	    &srv->policies, &err) < 0)
		fatal("domain_policy_file: %s", err);
	srv->spf_at_rcpt = domain_policies_sets_spf(srv->policies, DP_UNSET);
	srv->spf_any = srv->spf_policy != SMTP_SPF_IGNORE ||
	    domain_policies_sets_spf(srv->policies, SMTP_SPF_IGNORE);
	srv->dmarc_split = domain_policies_sets_dmarc(srv->policies,
	    DP_UNSET);
	srv->dmarc_any = srv->dmarc_policy != SMTP_DMARC_IGNORE ||
	    domain_policies_sets_dmarc(srv->policies, SMTP_DMARC_IGNORE);
	if (dnsq_setup(config_get(cfg, "dns_resolver"), &err) < 0)
		fatal("%s", err);
	if (srv->dmarc_any && dmarc_setup(DMARC_PSL_FILE, &err) < 0)
		fatal("dmarc_policy: %s", err);
	if (srv->dmarc_any &&
	    strcmp(config_get(cfg, "dmarc_reports"), "yes") == 0)
		srv->dmarc_report_db = xasprintf("%s/state.db",
		    srv->queue_dir);
}

bool
smtp_local_client(const struct smtp_session *s)
{
	return strcmp(s->base.ip, "127.0.0.1") == 0 ||
	    strcmp(s->base.ip, "::1") == 0 ||
	    strcmp(s->base.ip, "::ffff:127.0.0.1") == 0;
}

/* The transaction's dmarc_policy: its recipients' (domain_policy_file),
 * else the server's. */
static int
dmarc_policy(const struct smtp_session *s)
{
	return s->dmarc_rcpt > 0 ? s->dmarc_rcpt - 1 :
	    (int)s->srv->dmarc_policy;
}

static bool
dmarc_wanted(const struct smtp_session *s)
{
	return dmarc_policy(s) != SMTP_DMARC_IGNORE &&
	    s->auth_user == NULL && !s->submission && !smtp_local_client(s);
}

bool
smtp_trust_spf_wanted(const struct smtp_session *s)
{
	return s->srv->spf_any && s->auth_user == NULL &&
	    !s->submission && !smtp_local_client(s);
}

static void
spf_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));

	s->spf_helo = s->job_addr[0] == '\0';
	s->spf_result = (int)spf_check(s->base.ip, s->helo, s->job_addr,
	    s->srv->hostname);
}

static void
spf_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	char *addr = s->job_addr;
	enum spf_result r = (enum spf_result)s->spf_result;
	const char *dom = s->spf_helo ? (s->helo ? s->helo : "") :
	    strrchr(addr, '@') ? strrchr(addr, '@') + 1 : addr;
	bool filters = s->srv->nmilters > 0;

	s->job_addr = NULL;
	if (s->base.dead) {
		free(addr);
		session_job_finished(&s->base);
		return;
	}
	log_info("%016llx: spf=%s for %s=<%s> from %s", SID(&s->base),
	    spf_result_name(r), s->spf_helo ? "helo" : "mailfrom",
	    s->spf_helo ? (s->helo ? s->helo : "") : addr, s->base.peer);
	if (s->srv->spf_policy == SMTP_SPF_REJECT && !s->srv->spf_at_rcpt &&
	    (r == SPF_R_FAIL || r == SPF_R_TEMPERROR)) {
		/* RFC 7372 3.2: 5.7.23 SPF failed, 4.7.24 SPF error */
		if (r == SPF_R_FAIL) {
			log_info("NOQUEUE: reject: MAIL from %s: 550 5.7.23 "
			    "SPF fail for %s; from=<%s>", s->base.peer, dom,
			    addr);
			reply_error(s, "550 5.7.23 <%s>: Sender address "
			    "rejected: SPF check failed: %s does not allow "
			    "[%s] to send its mail", addr, dom, s->base.ip);
		} else {
			log_info("NOQUEUE: reject: MAIL from %s: 451 4.7.24 "
			    "SPF temperror for %s; from=<%s>", s->base.peer,
			    dom, addr);
			reply(s, "451 4.7.24 <%s>: Sender address rejected: "
			    "SPF lookup failed for %s, try again later", addr,
			    dom);
		}
		s->qid[0] = '\0';
		free(addr);
		session_job_finished(&s->base);
		return;
	}
	smtp_mail_filter(s, addr);
	if (!filters)
		session_job_finished(&s->base);
	/* else the filters' job goes on from here; it ends the wait */
}

bool
smtp_trust_mail(struct smtp_session *s, char *addr)
{
	s->spf_result = -1;
	s->spf_helo = false;
	if (!smtp_trust_spf_wanted(s))
		return false;
	s->job_addr = addr;
	s->job.run = spf_run;
	s->job.done = spf_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
	return true;
}

/* ---- RCPT: the recipient domain's policies ---- */

bool
smtp_trust_rcpt(struct smtp_session *s, const char *addr)
{
	const char *at = strrchr(addr, '@');
	struct domain_policy pol;
	int spf, dmarc;

	if (s->srv->policies == NULL || at == NULL)
		return false;
	pol = domain_policy_of(s->srv->policies, at + 1);
	spf = pol.spf != DP_UNSET ? pol.spf : (int)s->srv->spf_policy;
	if (s->srv->spf_at_rcpt && spf == SMTP_SPF_REJECT &&
	    (s->spf_result == SPF_R_FAIL ||
	    s->spf_result == SPF_R_TEMPERROR)) {
		const char *dom = s->spf_helo ? (s->helo ? s->helo : "") :
		    strrchr(s->sender, '@') ? strrchr(s->sender, '@') + 1 :
		    s->sender;

		/* RFC 7372 3.2, as at MAIL, for this recipient only */
		if (s->spf_result == SPF_R_FAIL) {
			log_info("%s: reject: RCPT from %s: 550 5.7.23 SPF "
			    "fail for %s; from=<%s> to=<%s>", s->qid,
			    s->base.peer, dom, s->sender, addr);
			reply_error(s, "550 5.7.23 <%s>: Recipient address "
			    "rejected: SPF check failed: %s does not allow "
			    "[%s] to send mail to %s", addr, dom, s->base.ip,
			    at + 1);
		} else {
			log_info("%s: reject: RCPT from %s: 451 4.7.24 SPF "
			    "temperror for %s; from=<%s> to=<%s>", s->qid,
			    s->base.peer, dom, s->sender, addr);
			reply(s, "451 4.7.24 <%s>: Recipient address "
			    "rejected: SPF lookup failed for %s, try again "
			    "later", addr, dom);
		}
		return true;
	}
	if (!s->srv->dmarc_split)
		return false;
	dmarc = pol.dmarc != DP_UNSET ? pol.dmarc : (int)s->srv->dmarc_policy;
	if (s->nrcpts == 0) {
		s->dmarc_rcpt = dmarc + 1;
		return false;
	}
	if (dmarc == dmarc_policy(s))
		return false;
	/* One reply ends the data for all recipients: a transaction holds
	 * the recipients of one DMARC policy; the client sends this one
	 * again in a transaction of its own (RFC 5321 4.5.3.1.10) */
	log_info("%s: defer: RCPT from %s: 452 4.5.3 dmarc_policy %s, the "
	    "transaction's is %s; to=<%s>", s->qid, s->base.peer,
	    dmarc == SMTP_DMARC_ENFORCE ? "enforce" :
	    dmarc == SMTP_DMARC_MARK ? "mark" : "ignore",
	    dmarc_policy(s) == SMTP_DMARC_ENFORCE ? "enforce" :
	    dmarc_policy(s) == SMTP_DMARC_MARK ? "mark" : "ignore", addr);
	reply(s, "452 4.5.3 <%s>: Recipient address deferred: its domain "
	    "has another DMARC policy than this transaction's recipients; "
	    "send it in a transaction of its own", addr);
	return true;
}

/* ---- the end of the data ---- */

struct header_scan {
	str_t text;	/* the header section so far */
	bool done;
};

static int
header_cb(void *ctx, const void *data, size_t len)
{
	struct header_scan *h = ctx;
	const char *p = data;

	for (size_t i = 0; i < len; i++) {
		size_t n = h->text.len;

		str_append_c(&h->text, p[i]);
		if (p[i] == '\n' && (n == 0 || h->text.data[n - 1] == '\n')) {
			h->done = true;
			return -1;	/* stop: the end of the header */
		}
		if (h->text.len >= HEADER_SCAN_MAX) {
			h->done = true;
			return -1;
		}
	}
	return 0;
}

/* Which Authentication-Results fields (1-based among theirs) claim our
 * authserv-id? Their indexes in *idx (highest first), their count. */
static size_t
forged_fields(struct smtp_session *s, uint32_t **idx)
{
	struct header_scan h = { STR_INIT, false };
	const char *name = "Authentication-Results:";
	size_t nlen = strlen(name), n = 0, cap = 0;
	uint32_t seen = 0;
	const char *p, *end;

	*idx = NULL;
	if (!spool_header_has(&s->body, "Authentication-Results"))
		return 0;
	spool_each(&s->body, header_cb, &h);
	p = h.text.data;
	end = p + h.text.len;
	while (p != NULL && p < end) {
		const char *f = p, *q;

		/* the field: this line and its continuation lines */
		q = header_field_end(f, end);
		if ((size_t)(q - f) > nlen && strncasecmp(f, name, nlen) == 0) {
			seen++;
			if (authres_claims(f + nlen, (size_t)(q - f) - nlen,
			    s->srv->hostname)) {
				if (n == cap) {
					cap = cap ? cap * 2 : 4;
					*idx = xrealloc(*idx, cap *
					    sizeof(**idx));
				}
				(*idx)[n++] = seen;
			}
		} else if (strncasecmp(f, "Authentication-Results", nlen - 1)
		    == 0) {
			/* "Authentication-Results :" with space before the
			 * colon: still that field */
			const char *c = f + nlen - 1;

			while (c < q && (*c == ' ' || *c == '\t'))
				c++;
			if (c < q && *c == ':') {
				seen++;
				if (authres_claims(c + 1, (size_t)(q - c - 1),
				    s->srv->hostname)) {
					if (n == cap) {
						cap = cap ? cap * 2 : 4;
						*idx = xrealloc(*idx, cap *
						    sizeof(**idx));
					}
					(*idx)[n++] = seen;
				}
			}
		}
		p = q;
	}
	str_free(&h.text);
	/* highest first: deleting one does not renumber the next */
	for (size_t i = 0; i < n / 2; i++) {
		uint32_t t = (*idx)[i];

		(*idx)[i] = (*idx)[n - 1 - i];
		(*idx)[n - 1 - i] = t;
	}
	return n;
}

/* Remove the fields that claim our authserv-id. 0, or -1 (a spool write
 * failed). */
static int
strip_forged(struct smtp_session *s)
{
	uint32_t *idx;
	size_t n = forged_fields(s, &idx);
	struct milter_result r;
	struct spool out;
	const char *err;
	int ret = 0;

	if (n == 0)
		return 0;
	memset(&r, 0, sizeof(r));
	r.edits = xcalloc(n, sizeof(*r.edits));
	r.nedits = n;
	for (size_t i = 0; i < n; i++) {
		r.edits[i].kind = MILTER_CHANGE;
		r.edits[i].index = idx[i];
		r.edits[i].name = xstrdup("Authentication-Results");
		r.edits[i].value = xstrdup("");
	}
	free(idx);
	spool_init(&out, s->srv->spool_dir);
	if (milter_apply(&s->body, &r, &out, &err) < 0) {
		log_error("%s: removing Authentication-Results: %s", s->qid,
		    err);
		spool_reset(&out);
		ret = -1;
	} else {
		log_info("%s: removed %zu Authentication-Results field%s "
		    "claiming %s", s->qid, n, n == 1 ? "" : "s",
		    s->srv->hostname);
		spool_reset(&s->body);
		s->body = out;
	}
	milter_result_free(&r);
	return ret;
}

/* dmarc_reports = yes: the message's row of the aggregate report its
 * policy domain asks for (rua=). Queued for the writer thread
 * (lib/trust/dmarc_report): nothing here waits for the database. */
static void
dmarc_report_row(struct smtp_session *s, const struct dkim_verdict *v,
    size_t nv, const struct dmarc_verdict *dv, const char *spf_domain)
{
	struct dmarc_report_row *r;
	const char *at = strrchr(s->sender, '@');
	bool enforce = dmarc_policy(s) == SMTP_DMARC_ENFORCE;

	if (s->srv->dmarc_report_db == NULL || dv->pub.rua[0] == '\0' ||
	    (dv->result != DMARC_R_PASS && dv->result != DMARC_R_FAIL))
		return;
	r = xcalloc(1, sizeof(*r));
	r->time = (int64_t)time(NULL);
	r->pub = dv->pub;
	snprintf(r->ip, sizeof(r->ip), "%s", s->base.ip);
	snprintf(r->header_from, sizeof(r->header_from), "%s", dv->from);
	snprintf(r->envelope_from, sizeof(r->envelope_from), "%s",
	    at != NULL ? at + 1 : "");
	/* what was done: mark applies nothing the policy asked for */
	r->disposition = dv->result == DMARC_R_FAIL && enforce ?
	    dv->disposition : DMARC_D_NONE;
	r->local_policy = dv->result == DMARC_R_FAIL && !enforce &&
	    dv->disposition != DMARC_D_NONE;
	r->dkim_pass = dv->dkim_aligned;
	r->spf_pass = dv->spf_aligned;
	for (size_t i = 0; i < nv && r->ndkim < DMARC_REPORT_DKIM_MAX; i++) {
		struct dmarc_report_dkim *d = &r->dkim[r->ndkim++];

		snprintf(d->domain, sizeof(d->domain), "%s",
		    v[i].domain ? v[i].domain : "");
		snprintf(d->selector, sizeof(d->selector), "%s",
		    v[i].selector ? v[i].selector : "");
		snprintf(d->result, sizeof(d->result), "%s", v[i].result);
	}
	/* SPF not checked (spf_policy = ignore): the identity it would
	 * have checked, with the result none */
	if (spf_domain == NULL)
		spf_domain = at != NULL ? at + 1 : s->helo;
	snprintf(r->spf_domain, sizeof(r->spf_domain), "%s",
	    spf_domain ? spf_domain : "");
	r->spf_helo = s->spf_helo;
	snprintf(r->spf_result, sizeof(r->spf_result), "%s",
	    s->spf_result >= 0 ?
	    spf_result_name((enum spf_result)s->spf_result) : "none");
	dmarc_report_record(s->srv->dmarc_report_db, r);
	free(r);
}

/* DMARC of the message as received, with the SPF and DKIM results. */
static void
dmarc_run(struct smtp_session *s, const struct dkim_verdict *v, size_t nv,
    struct dmarc_verdict *dv)
{
	struct header_scan h = { STR_INIT, false };
	struct dmarc_input in;
	const char *at = strrchr(s->sender, '@');

	memset(&in, 0, sizeof(in));
	in.ip = s->base.ip;
	if (s->spf_result >= 0) {
		in.spf = spf_result_name((enum spf_result)s->spf_result);
		in.spf_helo = s->spf_helo;
		in.spf_domain = s->spf_helo ? s->helo : at ? at + 1 : NULL;
	}
	in.dkim = v;
	in.ndkim = nv;
	spool_each(&s->body, header_cb, &h);
	dmarc_check(h.text.data != NULL ? h.text.data : "", h.text.len, &in,
	    dv);
	str_free(&h.text);
	log_info("%s: dmarc=%s%s%s%s policy=%s disposition=%s header.from=%s",
	    s->qid, dmarc_result_name(dv->result), dv->reason ? " (" : "",
	    dv->reason ? dv->reason : "", dv->reason ? ")" : "",
	    dv->policy ? dmarc_policy_name(dv->policy) : "-",
	    dmarc_disposition_name(dv->disposition),
	    dv->from[0] ? dv->from : "-");
	dmarc_report_row(s, v, nv, dv, in.spf_domain);
	if (dmarc_policy(s) == SMTP_DMARC_ENFORCE &&
	    dv->result == DMARC_R_FAIL) {
		s->job_dmarc = (int)dv->disposition;
		snprintf(s->job_dmarc_from, sizeof(s->job_dmarc_from), "%s",
		    dv->from);
	}
}

int
smtp_trust_data(struct smtp_session *s, str_t *prefix,
    struct arc_verdict *arc)
{
	struct authres ar;
	struct dkim_verdict *v = NULL;
	struct dmarc_verdict dv;
	size_t nv = 0;
	bool dmarc = dmarc_wanted(s);
	bool record = s->auth_user == NULL &&
	    (s->spf_result >= 0 || s->srv->dkim_verify || dmarc ||
	    s->srv->arc_verify);
	int ret = 0;

	memset(&ar, 0, sizeof(ar));
	memset(arc, 0, sizeof(*arc));
	s->job_dmarc = DMARC_D_NONE;
	if (record && s->srv->dkim_verify) {
		/* before any field is removed: a signature may cover it */
		ar.dkim_checked = true;
		ar.dkim_error = dkim_verify_message(&s->body, &v, &nv) < 0;
		ar.dkim = v;
		ar.ndkim = nv;
		for (size_t i = 0; i < nv; i++)
			log_info("%s: dkim=%s%s%s%s header.d=%s", s->qid,
			    v[i].result, v[i].reason ? " (" : "",
			    v[i].reason ? v[i].reason : "",
			    v[i].reason ? ")" : "",
			    v[i].domain ? v[i].domain : "?");
	}
	if (record && s->srv->arc_verify) {
		/* RFC 8617 5.2, on the message as received */
		arc_verify_message(&s->body, arc);
		ar.arc = arc;
		ar.remote_ip = s->base.ip;
		log_info("%s: arc=%s%s%s%s sets=%u", s->qid,
		    arc_result_name(arc->result), arc->reason[0] ? " (" : "",
		    arc->reason, arc->reason[0] ? ")" : "", arc->n);
	}
	if (dmarc) {
		dmarc_run(s, v, nv, &dv);
		ar.dmarc = &dv;
	}
	if (strip_forged(s) < 0) {
		ret = -1;
	} else if (record) {
		/* our own users' mail (authenticated) gets none */
		ar.authserv_id = s->srv->hostname;
		ar.mailfrom = s->sender;
		ar.helo = s->helo;
		if (s->spf_result >= 0) {
			ar.spf = spf_result_name(
			    (enum spf_result)s->spf_result);
			ar.spf_helo = s->spf_helo;
		}
		authres_format(prefix, &ar);
	}
	dkim_verdicts_free(v, nv);
	return ret;
}
