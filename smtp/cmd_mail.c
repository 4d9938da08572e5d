/*
 * cmd_mail.c: MAIL FROM and RCPT TO (RFC 5321 4.1.1.2, 4.1.1.3): the
 * path and its parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531
 * SMTPUTF8), non-ASCII addresses only in an SMTPUTF8 transaction; on
 * submission the envelope sender must belong to the authenticated user
 * (a directory job); each recipient is routed on a directory job, with
 * the quota checked against the SIZE hint (452 4.2.2) and <postmaster>
 * always accepted (RFC 5321 4.5.1). With `milters`, a sender that passed
 * these checks goes to the filters on a delivery job, and each routed
 * recipient in its routing job (milter.c); their refusals are the
 * replies.
 *
 * Trust: the addresses are the client's; they are checked for syntax
 * here and looked up only through lib/route (parameters bound, never
 * interpolated).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/authd/client.h"
#include "lib/dir/dir.h"
#include "lib/io/jobs.h"
#include "lib/maildir/quota.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/session/session.h"
#include "lib/smtp/parse.h"
#include "lib/trust/srs.h"
#include "smtp/smtp-private.h"

static void mail_accept(struct smtp_session *s, char *addr);
static void mail_filter(struct smtp_session *s, char *addr);
static void sender_run(struct job *job, void *state);
static void sender_done(struct job *job);

/* Non-ASCII in an address: only well-formed UTF-8, and only in a
 * transaction that declared SMTPUTF8 (RFC 6531 3.3, 3.4). 0 if fine,
 * else -1 with the reason in *error_r and its code ERR_UTF8 (malformed)
 * or ERR_8BIT (not declared). */
static int
address_8bit_check(const struct smtp_session *s, const char *addr,
    const char **error_r)
{
	size_t len = strlen(addr);

	if (!str_has_8bit(addr, len))
		return 0;
	if (!str_utf8_valid(addr, len))
		return err_fail(error_r, ERR_UTF8, "invalid UTF-8");
	if (!s->smtputf8)
		return err_fail(error_r, ERR_8BIT,
		    "non-ASCII address without SMTPUTF8");
	return 0;
}

/* The path after "FROM:" / "TO:": "<address>" (RFC 5321 4.1.2), or
 * also a bare address with smtp_strict_envelopes = no. */
static char *
envelope_path(const struct smtp_session *s, const char *arg,
    const char **rest)
{
	if (s->srv->strict_envelopes)
		return smtp_parse_path(arg, rest);
	return smtp_parse_path_loose(arg, rest);
}

void
smtp_cmd_mail(struct smtp_session *s, const char *arg)
{
	struct smtp_mail_params params;
	const char *rest, *err;
	char *addr, *local, *domain;

	/* RFC 5321 4.1.4 wants EHLO/HELO first; smtp_helo_required = no
	 * takes MAIL without it, as Postfix and Exim do by default. */
	if (s->helo == NULL && (s->srv->helo_required || s->lmtp)) {
		reply_error(s, "503 5.5.1 Error: send %s first",
		    s->lmtp ? "LHLO" : "HELO/EHLO");
		return;
	}
	if (s->have_mail) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0 ||
	    (addr = envelope_path(s, arg + 5, &rest)) == NULL) {
		reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (addr[0] != '\0') {
		if (addr_split(addr, &local, &domain) < 0) {
			reply_error(s, "553 5.1.7 <%s>: Sender address "
			    "rejected: bad address syntax", addr);
			free(addr);
			return;
		}
		free(local);
		free(domain);
	}
	if (*rest != '\0' && *rest != ' ') {
		reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		free(addr);
		return;
	}
	if (!s->esmtp && s->helo != NULL && *rest != '\0' &&
	    rest[strspn(rest, " ")] != '\0') {
		reply_error(s, "555 5.5.4 Parameters need EHLO");
		free(addr);
		return;
	}
	if ((err = smtp_mail_params(rest, s->srv->size_limit, s->base.tls,
	    &params)) != NULL) {
		reply_error(s, "%s", err);
		free(addr);
		return;
	}
	s->size_hint = params.size;
	s->smtputf8 = params.smtputf8;
	s->requiretls = params.requiretls;
	if (address_8bit_check(s, addr, &err) < 0) {
		/* 5.1.7 bad sender address syntax (RFC 3463); 5.6.7 a
		 * non-ASCII address the transaction did not declare
		 * (RFC 6531). */
		reply_error(s, "553 %s <%s>: Sender address rejected: %s",
		    err_last_code() == ERR_UTF8 ? "5.1.7" : "5.6.7", addr,
		    err);
		s->smtputf8 = false;
		free(addr);
		return;
	}
	if (s->submission && s->auth_user == NULL) {
		reply_error(s, "530 5.7.0 Authentication required");
		free(addr);
		return;
	}
	if (s->submission) {
		/* The envelope sender must belong to the user. */
		if (addr[0] == '\0') {
			reply_error(s, "553 5.7.1 <>: Sender address rejected: "
			    "not owned by user %s", s->auth_user);
			free(addr);
			return;
		}
		str_lower(addr);
		s->job_addr = addr;
		s->job.run = sender_run;
		s->job.done = sender_done;
		session_job_submit(&s->base, s->srv->sv.dir_jobs, &s->job);
		return;
	}
	smtp_rhsbl_mail(s, addr);	/* answers awaited at RCPT */
	mail_filter(s, addr);
}

static void
mail_accept(struct smtp_session *s, char *addr)
{
	s->sender = addr;
	s->have_mail = true;
	s->bdat_failed = false;
	if (s->qid[0] == '\0')	/* the filters may have it already */
		queue_id_new(s->qid);
	spool_init(&s->body, s->srv->spool_dir);
	reply(s, "250 2.1.0 Ok");
}

/* The filters (milters) asked about the sender on the delivery pool. */
static void
milter_mail_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));

	s->job_milter = smtp_milter_mail(s, s->job_addr,
	    &s->job_milter_reply);
}

static void
milter_mail_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	char *addr = s->job_addr;
	const char *line = s->job_milter_reply;

	s->job_addr = NULL;
	if (s->base.dead) {
		free(addr);
	} else if (s->job_milter == SMTP_MILTER_DELIVER) {
		mail_accept(s, addr);
	} else {
		if (line == NULL)
			line = s->job_milter == SMTP_MILTER_REJECT ?
			    "550 5.7.1 Sender address rejected by a mail filter" :
			    "451 4.7.1 Service unavailable, try again later";
		log_info("NOQUEUE: milter-reject: MAIL from %s: %s; from=<%s>",
		    s->base.peer, line + 4, addr);
		if (line[0] == '5')
			reply_error(s, "%s", line);
		else
			reply(s, "%s", line);
		smtp_milter_close(s);
		s->qid[0] = '\0';
		free(addr);
	}
	xfree(&s->job_milter_reply);
	session_job_finished(&s->base);
}

/* A sender that passed petrel's checks: SPF first (trust.c), then
 * smtp_mail_filter. */
static void
mail_filter(struct smtp_session *s, char *addr)
{
	if (s->lmtp || !smtp_trust_mail(s, addr))
		smtp_mail_filter(s, addr);
}

/* To the filters first, if any. */
void
smtp_mail_filter(struct smtp_session *s, char *addr)
{
	if (s->srv->nmilters == 0 || s->lmtp) {
		/* LMTP: the MTA handing the mail in has filtered it */
		mail_accept(s, addr);
		return;
	}
	queue_id_new(s->qid);	/* the filters' macro i */
	s->job_addr = addr;
	s->job.run = milter_mail_run;
	s->job.done = milter_mail_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* Submission: may the authenticated user send as this envelope sender?
 * Yes for the user's own address, or an address (alias) that delivers
 * into the user's maildir (on a frontend: to the user, on a backend). */
static void
sender_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct route_result r;

	s->job_status = 553;
	if (strcasecmp(s->job_addr, s->auth_user) == 0) {
		s->job_status = 250;
		return;
	}
	authc_route(state, s->job_addr, false, &r);
	if (r.status == ROUTE_TEMPFAIL)
		s->job_status = 451;
	for (size_t i = 0; i < r.ndests; i++) {
		const struct route_dest *d = &r.dests[i];

		if (d->kind == ROUTE_MAILDIR && s->auth_maildir != NULL &&
		    strcmp(d->maildir, s->auth_maildir) == 0)
			s->job_status = 250;
		/* a frontend: the user's mailbox is on a backend */
		if (d->kind == ROUTE_REMOTE &&
		    strncasecmp(d->transport, "lmtp:", 5) == 0 &&
		    strcasecmp(d->address, s->auth_user) == 0)
			s->job_status = 250;
	}
	route_result_clear(&r);
}

static void
sender_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	char *addr = s->job_addr;

	s->job_addr = NULL;
	if (s->base.dead) {
		free(addr);
		session_job_finished(&s->base);
		return;
	}
	if (s->job_status == 250 &&
	    (s->srv->nmilters > 0 || smtp_trust_spf_wanted(s))) {
		/* the filters' job goes on from here; it ends the wait */
		mail_filter(s, addr);
		return;
	}
	if (s->job_status == 250) {
		mail_accept(s, addr);
	} else {
		if (s->job_status == 451)
			reply(s, "451 4.3.0 <%s>: Temporary lookup failure",
			    addr);
		else
			reply_error(s, "553 5.7.1 <%s>: Sender address "
			    "rejected: not owned by user %s", addr,
			    s->auth_user);
		log_info("%016llx: reject: MAIL from %s: <%s> not owned by %s",
		    SID(&s->base), s->base.peer, addr, s->auth_user);
		free(addr);
	}
	session_job_finished(&s->base);
}

/* A bounce coming back to an SRS address of srs_domain (lib/trust/srs):
 * a good one is routed to the address it stands for (relayed as a
 * forward), a bad or expired one gets 550 5.1.1 with the reason. Any
 * sender is taken, as postsrsd does. false: not an SRS address of ours
 * (or SRS off). */
static bool
srs_rcpt(struct smtp_session *s, struct authc *ac)
{
	const struct deliver_ctx *dc = &s->srv->deliver;
	const char *at = strrchr(s->job_addr, '@'), *why;
	char *local, *orig;

	if (dc->srs_secret == NULL || dc->srs_secret[0] == '\0' ||
	    at == NULL || strcasecmp(at + 1, dc->srs_domain) != 0)
		return false;
	local = xstrndup(s->job_addr, (size_t)(at - s->job_addr));
	if (!srs_is_srs(local)) {
		free(local);
		return false;
	}
	orig = srs_reverse(dc->srs_secret, local, time(NULL), &why);
	free(local);
	if (orig == NULL) {
		memset(&s->job_route, 0, sizeof(s->job_route));
		s->job_route.status = ROUTE_ERROR;
		s->job_route.text = xasprintf("invalid SRS address (%s)",
		    why);
		return true;
	}
	authc_route(ac, orig, true, &s->job_route);
	/* a remote local part keeps its case (RFC 5321 2.4) */
	if (s->job_route.status == ROUTE_OK && s->job_route.ndests == 1 &&
	    s->job_route.dests[0].kind == ROUTE_REMOTE &&
	    strcasecmp(s->job_route.dests[0].address, orig) == 0) {
		free(s->job_route.dests[0].address);
		s->job_route.dests[0].address = xstrdup(orig);
	}
	log_info("%016llx: srs: <%s> stands for <%s>", SID(&s->base),
	    s->job_addr, orig);
	free(orig);
	return true;
}

static void
rcpt_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct authc *ac = state;
	const char *err;

	if (!srs_rcpt(s, ac))
		authc_route(ac, s->job_addr, s->auth_user != NULL,
		    &s->job_route);
	if (s->job_route.status == ROUTE_RELAY_DENIED && s->job_postmaster) {
		/* RFC 5321 4.5.1: <postmaster> must be accepted. When the
		 * host name is not a hosted domain, use the first hosted one. */
		char *domain = NULL;

		if (authc_postmaster_domain(ac, &domain) == DIR_OK) {
			free(s->job_addr);
			s->job_addr = xasprintf("postmaster@%s", domain);
			route_result_clear(&s->job_route);
			authc_route(ac, s->job_addr, false, &s->job_route);
		}
		free(domain);
	}
	if (s->job_route.status != ROUTE_OK)
		return;
	/* Quota (452 4.2.2) at RCPT time, with the SIZE= hint. */
	for (size_t i = 0; i < s->job_route.ndests; i++) {
		struct route_dest *d = &s->job_route.dests[i];
		int r;

		if (d->kind != ROUTE_MAILDIR || !quota_limit_set(&d->quota))
			continue;
		r = maildir_quota_check(d->maildir, &d->quota,
		    s->size_hint ? s->size_hint : 1, &err);
		if (r < 0)
			log_warn("quota check %s: %s", d->maildir, err);
		if (r == 0) {
			s->job_status = 452;
			return;
		}
	}
	if (smtp_greylist_rcpt(s, s->job_addr)) {
		s->job_status = 451;
		return;
	}
	if (s->srv->nmilters > 0 && !s->lmtp)
		s->job_milter = smtp_milter_rcpt(s, s->job_addr,
		    &s->job_milter_reply);
}

static void
rcpt_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct route_result *r = &s->job_route;

	if (s->base.dead) {
		route_result_clear(r);
		xfree(&s->job_addr);
		xfree(&s->job_milter_reply);
		session_job_finished(&s->base);
		return;
	}
	if (r->status == ROUTE_OK && (s->job_milter == SMTP_MILTER_REJECT ||
	    s->job_milter == SMTP_MILTER_TEMPFAIL)) {
		const char *line = s->job_milter_reply;

		if (line == NULL)
			line = s->job_milter == SMTP_MILTER_REJECT ?
			    "550 5.7.1 Recipient address rejected by a mail "
			    "filter" : "451 4.7.1 Service unavailable, try "
			    "again later";
		log_info("%s: milter-reject: RCPT from %s: %s; from=<%s> "
		    "to=<%s>", s->qid, s->base.peer, line + 4, s->sender,
		    s->job_addr);
		if (line[0] == '5')
			reply_error(s, "%s", line);
		else
			reply(s, "%s", line);
		route_result_clear(r);
	} else if (r->status == ROUTE_OK && s->job_status == 452) {
		reply_error(s, "452 4.2.2 <%s>: Recipient address rejected: "
		    "Mailbox full", s->job_addr);
		route_result_clear(r);
	} else if (r->status == ROUTE_OK && s->job_status == 451) {
		/* greylisted (dnsbl.c) */
		reply(s, "451 4.7.1 <%s>: Recipient address rejected: "
		    "Greylisted, try again later", s->job_addr);
		route_result_clear(r);
	} else if (r->status == ROUTE_OK && smtp_trust_rcpt(s, s->job_addr)) {
		route_result_clear(r);
	} else if (r->status == ROUTE_OK) {
		s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) *
		    sizeof(*s->rcpts));
		s->rcpts[s->nrcpts].address = s->job_addr;
		s->rcpts[s->nrcpts].route = *r;
		memset(r, 0, sizeof(*r));
		s->job_addr = NULL;
		if (s->nrcpts++ == 0) {
			/* the message exists from its first recipient on,
			 * as in Postfix's logs (which count it received) */
			if (s->auth_user != NULL)
				log_info("%s: client=%s, helo=%s, "
				    "sasl_username=%s", s->qid, s->base.peer,
				    s->helo != NULL ? s->helo : "none",
				    s->auth_user);
			else
				log_info("%s: client=%s, helo=%s", s->qid,
				    s->base.peer,
				    s->helo != NULL ? s->helo : "none");
		}
		reply(s, "250 2.1.5 Ok");
	} else {
		switch (r->status) {
		case ROUTE_UNKNOWN:
			reply_error(s, "550 5.1.1 <%s>: Recipient address "
			    "rejected: User unknown in virtual mailbox table",
			    s->job_addr);
			break;
		case ROUTE_RELAY_DENIED:
			/* LMTP takes local recipients only: a permanent
			 * 550 for the MTA in front */
			reply_error(s, "%s 5.7.1 <%s>: Relay access denied",
			    s->lmtp ? "550" : "554", s->job_addr);
			break;
		case ROUTE_ERROR:
			reply_error(s, "550 5.1.1 <%s>: Recipient address "
			    "rejected: %s", s->job_addr, r->text ? r->text :
			    "rejected");
			break;
		case ROUTE_LOOP:
			reply_error(s, "554 5.4.6 <%s>: Recipient address "
			    "rejected: alias loop", s->job_addr);
			break;
		case ROUTE_TEMPFAIL:
			reply(s, "451 4.3.0 <%s>: Temporary lookup failure",
			    s->job_addr);
			break;
		default:
			reply(s, "451 4.3.5 <%s>: Server configuration error",
			    s->job_addr);
			break;
		}
		if (r->status != ROUTE_OK)
			log_info("%016llx: reject: RCPT from %s: <%s>: %s",
			    SID(&s->base), s->base.peer, s->job_addr,
			    route_status_name(r->status));
		route_result_clear(r);
	}
	xfree(&s->job_addr);
	xfree(&s->job_milter_reply);
	s->job_milter = SMTP_MILTER_DELIVER;
	session_job_finished(&s->base);
}

void
smtp_cmd_rcpt(struct smtp_session *s, const char *arg)
{
	const char *rest, *err;
	char *addr, *local, *domain;

	if (!s->have_mail) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (smtp_dnsbl_rcpt(s, arg))	/* listed, or held for the answers */
		return;
	if (strncasecmp(arg, "TO:", 3) != 0 ||
	    (addr = envelope_path(s, arg + 3, &rest)) == NULL) {
		reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->nrcpts >= SMTP_RCPT_MAX) {
		reply(s, "452 4.5.3 Error: too many recipients");
		free(addr);
		return;
	}
	/* RFC 5321 4.5.1: "postmaster" without a domain must work. */
	s->job_postmaster = strcasecmp(addr, "postmaster") == 0;
	if (s->job_postmaster) {
		free(addr);
		addr = xasprintf("postmaster@%s", s->srv->hostname);
	}
	if (address_8bit_check(s, addr, &err) < 0) {
		reply_error(s, "553 5.6.7 <%s>: Recipient address rejected: "
		    "%s", addr, err);
		free(addr);
		return;
	}
	if (addr_split(addr, &local, &domain) < 0) {
		reply_error(s, "501 5.1.3 <%s>: Bad recipient address syntax",
		    addr);
		free(addr);
		return;
	}
	free(addr);
	s->job_addr = xasprintf("%s@%s", local, domain);
	free(local);
	free(domain);
	memset(&s->job_route, 0, sizeof(s->job_route));
	s->job_status = 0;
	s->job_milter = SMTP_MILTER_DELIVER;
	s->job.run = rcpt_run;
	s->job.done = rcpt_done;
	session_job_submit(&s->base, s->srv->sv.dir_jobs, &s->job);
}
