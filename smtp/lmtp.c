/*
 * lmtp.c: LMTP (RFC 2033), the SMTP session in another mode, on
 * lmtp_listen: how an MTA in front (Postfix's virtual_transport =
 * lmtp:inet:127.0.0.1:24) hands mail for hosted users to petrel.
 *
 * What differs from SMTP: LHLO instead of HELO/EHLO (both answered 500),
 * no AUTH, only local recipients (a foreign domain is 550 at RCPT), no
 * filters (the MTA in front ran its own), and after DATA one reply per
 * accepted recipient, in RCPT order (RFC 2033 4.2): each recipient is
 * delivered on its own, with its quota checked against the real size, so
 * that a full mailbox fails alone while the others get 250. Everything
 * else (MAIL, RCPT, DATA, RSET, the limits, STARTTLS) is the SMTP code.
 *
 * Trust: the client is an MTA, but its bytes get the same bounds as any
 * SMTP client's; nothing here reads input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/clock.h"
#include "lib/base/err.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/deliver/deliver.h"
#include "lib/maildir/quota.h"
#include "lib/queue/queue.h"
#include "lib/route/route.h"
#include "lib/session/counters.h"
#include "lib/session/session.h"
#include "lib/smtp/parse.h"
#include "smtp/smtp-private.h"

/* A recipient's outcome (s->lmtp_status). */
enum lmtp_outcome {
	LMTP_SENT,		/* every copy durable (or a duplicate) */
	LMTP_OVER_QUOTA,	/* 452: does not fit now */
	LMTP_QUOTA_NEVER,	/* 552: larger than the whole quota */
	LMTP_NO_SPACE,		/* 452: the disk is full */
	LMTP_FAILED,		/* 451: another failure */
};

void
smtp_cmd_lhlo(struct smtp_session *s, const char *arg)
{
	struct smtp_server *srv = s->srv;

	if (*arg == '\0') {
		reply_error(s, "501 5.5.4 Syntax: LHLO hostname");
		return;
	}
	smtp_helo_set(s, arg, true);
	reply(s, "250-%s", srv->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)srv->size_limit);
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	if (!s->base.tls && srv->sv.tls != NULL)
		reply(s, "250-STARTTLS");
	/* RFC 3030 in LMTP: after BDAT LAST one reply per recipient, as
	 * after DATA's dot (a frontend's cut-through sends the message as
	 * one BDAT LAST pipelined with its envelope) */
	reply(s, "250-CHUNKING");
	reply(s, "250 SMTPUTF8");
}

bool
lmtp_refuses(struct smtp_session *s, enum smtp_verb v)
{
	switch (v) {
	case SMTP_HELO:
	case SMTP_EHLO:
		/* RFC 2033 4.1: a client that takes this for SMTP */
		reply_error(s, "500 5.5.1 Error: this is LMTP, say LHLO");
		return true;
	case SMTP_AUTH:
		reply_error(s, "502 5.5.2 Error: command not recognized");
		return true;
	default:
		return false;
	}
}

void
smtp_reply_message(struct smtp_session *s, bool error, const char *line)
{
	size_t n = s->lmtp && s->nrcpts > 0 ? s->nrcpts : 1;

	/* one error counted, however many recipients hear it */
	for (size_t i = 0; i + 1 < n; i++)
		reply(s, "%s", line);
	if (error)
		reply_error(s, "%s", line);
	else
		reply(s, "%s", line);
}

/* Is every destination of recipient i a maildir copy that an earlier
 * recipient already made (RCPT TO twice, an alias and its target)? */
static bool
lmtp_duplicate(const struct smtp_session *s, size_t i)
{
	const struct route_result *r = &s->rcpts[i].route;

	if (r->ndests == 0)
		return false;
	for (size_t k = 0; k < r->ndests; k++) {
		const struct route_dest *d = &r->dests[k];
		bool seen = false;

		if (d->kind != ROUTE_MAILDIR)
			return false;
		for (size_t j = 0; j < i && !seen; j++) {
			const struct route_result *e = &s->rcpts[j].route;

			if (s->lmtp_status[j] != LMTP_SENT)
				continue;
			for (size_t m = 0; m < e->ndests && !seen; m++)
				seen = e->dests[m].kind == ROUTE_MAILDIR &&
				    strcmp(e->dests[m].maildir,
				    d->maildir) == 0 &&
				    strcmp(e->dests[m].address,
				    d->address) == 0;
		}
		if (!seen)
			return false;
	}
	return true;
}

static bool
lmtp_has_remote(const struct route_result *r)
{
	for (size_t k = 0; k < r->ndests; k++)
		if (r->dests[k].kind == ROUTE_REMOTE)
			return true;
	return false;
}

/* The quota of each maildir of the recipient, with the message's real
 * size (RCPT had only the SIZE= hint). */
static enum lmtp_outcome
lmtp_quota(const struct smtp_session *s, const struct route_result *r,
    uint64_t size)
{
	for (size_t k = 0; k < r->ndests; k++) {
		const struct route_dest *d = &r->dests[k];
		const char *err;
		int q;

		if (d->kind != ROUTE_MAILDIR || !quota_limit_set(&d->quota))
			continue;
		q = maildir_quota_check(d->maildir, &d->quota, size, &err);
		if (q < 0)
			log_warn("%s: quota check %s: %s", s->qid, d->maildir,
			    err);
		if (q == 0)
			return d->quota.bytes > 0 && size > d->quota.bytes ?
			    LMTP_QUOTA_NEVER : LMTP_OVER_QUOTA;
	}
	return LMTP_SENT;
}

/* One recipient: its own Received "for" line, quota and copies. */
static enum lmtp_outcome
lmtp_deliver_one(struct smtp_session *s, size_t i, bool *qid_used,
    int64_t arrival_ms, struct authc *authc)
{
	struct deliver_rcpt rcpt;
	struct deliver_msg msg;
	struct deliver_result res;
	str_t received = STR_INIT;
	enum lmtp_outcome out;
	const char *err = NULL;
	char qid[17];

	smtp_received_header(s, &received, s->rcpts[i].address);
	out = lmtp_quota(s, &s->rcpts[i].route, received.len + s->body.size);
	if (out != LMTP_SENT) {
		log_info("%s: to=<%s>, status=deferred (over quota)", s->qid,
		    s->rcpts[i].address);
		node_counters_event(s->base.listener->nc, NODE_EVENT_DEFERRED);
		str_free(&received);
		return out;
	}
	/* a queue file per id: a second recipient with remote
	 * destinations (an alias that forwards) gets its own */
	memcpy(qid, s->qid, sizeof(qid));
	if (lmtp_has_remote(&s->rcpts[i].route)) {
		if (*qid_used) {
			queue_id_new(qid);
			log_info("%s: to=<%s>: forwarded copy queued as %s",
			    s->qid, s->rcpts[i].address, qid);
		}
		*qid_used = true;
	}
	rcpt.address = s->rcpts[i].address;
	rcpt.route = &s->rcpts[i].route;
	memset(&msg, 0, sizeof(msg));
	msg.qid = qid;
	msg.sender = s->sender;
	msg.rcpts = &rcpt;
	msg.nrcpts = 1;
	msg.prefix = str_c(&received);
	msg.body = &s->body;
	msg.dkim_sign = false;
	msg.arrival_ms = arrival_ms;
	/* Sieve: redirects routed on this thread's auth channel; a reject
	 * becomes a refusal mail to the sender (the 250 is per recipient,
	 * but the other recipients' copies are already made) */
	msg.authc = authc;
	msg.may_refuse = false;
	out = LMTP_SENT;
	if (deliver_message(&s->srv->deliver, &msg, &res, &err) < 0) {
		log_error("%s: to=<%s>: delivery failed after %zu cop%s: %s",
		    s->qid, s->rcpts[i].address, res.delivered,
		    res.delivered == 1 ? "y" : "ies", err ? err : "?");
		out = err_code_is_full(res.code) ? LMTP_NO_SPACE :
		    LMTP_FAILED;
	}
	str_free(&received);
	return out;
}

void
lmtp_data_run(struct smtp_session *s, struct authc *authc)
{
	int64_t arrival_ms = monotonic_ms();
	bool qid_used = false;
	const char *prev = log_service_set("qmgr");

	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)",
	    s->qid, s->sender, (unsigned long long)s->body.size, s->nrcpts);
	log_service_set(prev);
	s->lmtp_status = xcalloc(s->nrcpts, sizeof(*s->lmtp_status));
	for (size_t i = 0; i < s->nrcpts; i++) {
		if (lmtp_duplicate(s, i)) {
			s->lmtp_status[i] = LMTP_SENT;
			continue;
		}
		s->lmtp_status[i] = lmtp_deliver_one(s, i, &qid_used,
		    arrival_ms, authc);
	}
	s->job_status = 0;
}

void
lmtp_data_done(struct smtp_session *s)
{
	size_t sent = 0;

	for (size_t i = 0; i < s->nrcpts; i++)
		if (s->lmtp_status[i] == LMTP_SENT)
			sent++;
	if (sent > 0) {
		node_counters_event(s->base.listener->nc,
		    NODE_EVENT_MESSAGE_RECEIVED);
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (accepted)",
		    s->qid, s->sender, (unsigned long long)s->body.size, sent);
	}
	if (s->base.dead)
		return;
	/* RFC 2033 4.2: one reply per accepted recipient, in RCPT order */
	for (size_t i = 0; i < s->nrcpts; i++) {
		const char *a = s->rcpts[i].address;

		switch (s->lmtp_status[i]) {
		case LMTP_SENT:
			reply(s, "250 2.0.0 <%s> Ok: queued as %s", a, s->qid);
			break;
		case LMTP_OVER_QUOTA:
			reply(s, "452 4.2.2 <%s>: Mailbox full", a);
			break;
		case LMTP_QUOTA_NEVER:
			reply(s, "552 5.2.2 <%s>: Message larger than the "
			    "mailbox quota", a);
			break;
		case LMTP_NO_SPACE:
			reply(s, "452 4.3.1 <%s>: Insufficient system storage",
			    a);
			break;
		default:
			reply(s, "451 4.3.0 <%s>: Error: local delivery "
			    "failed", a);
			break;
		}
	}
}
