/*
 * milter.c: the configured mail filters (`milters`, lib/milter), one
 * conversation each per transaction, in stages on job threads: begun at
 * MAIL (connect, HELO and MAIL replayed then; a refusal is MAIL's reply),
 * asked at each routed RCPT (a refusal is that recipient's reply), ended
 * after the data, before anything is stored. RSET, a new HELO and the end
 * of the session close them.
 *
 * A filter's changes (header fields added, changed, inserted or deleted,
 * a new body, a new envelope sender, recipients removed) are applied to
 * the message before the next filter sees it and before it is stored.
 * Quarantine marks the stored copy with an X-Quarantine: field (its
 * reason). A filter that cannot be reached, goes silent or breaks the
 * protocol gets milter_default_action: tempfail (451, for the rest of the
 * transaction) or accept (as if it were not configured).
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/milter/milter.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "smtp/smtp-private.h"

static const char *
verdict_name(enum milter_verdict v)
{
	switch (v) {
	case MILTER_ACCEPT:
		return "accept";
	case MILTER_REJECT:
		return "reject";
	case MILTER_TEMPFAIL:
		return "tempfail";
	case MILTER_DISCARD:
		return "discard";
	default:
		return "failed";
	}
}

/* Take the filter's changes into the transaction. 0, or -1 when the new
 * copy of the message could not be written. */
static int
apply(struct smtp_session *s, struct milter_result *r)
{
	const char *err;

	if (r->nedits > 0 || r->body_replaced || r->quarantine != NULL) {
		struct spool out;

		if (r->quarantine != NULL) {
			/* marked at the top, where a filter rule sees it */
			r->edits = xrealloc(r->edits, (r->nedits + 1) *
			    sizeof(*r->edits));
			memmove(&r->edits[1], &r->edits[0],
			    r->nedits * sizeof(*r->edits));
			r->edits[0].kind = MILTER_INSERT;
			r->edits[0].index = 0;
			r->edits[0].name = xstrdup("X-Quarantine");
			r->edits[0].value = xstrdup(r->quarantine[0] != '\0' ?
			    r->quarantine : "quarantined by a milter");
			r->nedits++;
		}
		spool_init(&out, s->srv->spool_dir);
		if (milter_apply(&s->body, r, &out, &err) < 0) {
			log_error("%s: milter changes: %s", s->qid, err);
			spool_reset(&out);
			return -1;
		}
		if (out.size > s->srv->size_limit) {
			log_error("%s: milter changes make the message %llu "
			    "octets (over message_size_limit)", s->qid,
			    (unsigned long long)out.size);
			spool_reset(&out);
			return -1;
		}
		spool_reset(&s->body);
		s->body = out;
	}
	if (r->new_sender != NULL) {
		log_info("%s: milter: sender <%s> changed to <%s>", s->qid,
		    s->sender, r->new_sender);
		free(s->sender);
		s->sender = xstrdup(r->new_sender);
	}
	for (size_t d = 0; d < r->ndel_rcpts; d++) {
		for (size_t i = 0; i < s->nrcpts; i++) {
			if (strcasecmp(s->rcpts[i].address, r->del_rcpts[d]) != 0)
				continue;
			log_info("%s: milter: recipient <%s> removed", s->qid,
			    s->rcpts[i].address);
			free(s->rcpts[i].address);
			route_result_clear(&s->rcpts[i].route);
			memmove(&s->rcpts[i], &s->rcpts[i + 1],
			    (s->nrcpts - i - 1) * sizeof(*s->rcpts));
			s->nrcpts--;
			break;
		}
	}
	return 0;
}

/* The transaction as the filters see it. */
static void
msg_fill(struct smtp_session *s, struct milter_msg *m, const char *sender,
    const char **rcpts)
{
	const char *colon = strrchr(s->base.peer, ':');

	for (size_t k = 0; k < s->nrcpts; k++)
		rcpts[k] = s->rcpts[k].address;
	memset(m, 0, sizeof(*m));
	m->hostname = s->srv->hostname;
	m->daemon = s->submission ? "submission" : "smtp";
	m->client_ip = s->base.ip;
	m->client_port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
	m->client_family = strchr(s->base.ip, ':') ? AF_INET6 : AF_INET;
	m->helo = s->helo;
	m->qid = s->qid;
	m->auth_user = s->auth_user;
	m->tls = s->base.tls;
	m->sender = sender;
	m->rcpts = rcpts;
	m->nrcpts = s->nrcpts;
	m->body = &s->body;
}

void
smtp_milter_close(struct smtp_session *s)
{
	for (size_t i = 0; i < MILTER_MAX; i++) {
		milter_close(s->mconn[i]);
		s->mconn[i] = NULL;
	}
	s->milter_discard = false;
	s->milter_tempfail = false;
}

/* A filter that failed: its conversation is over; with default
 * tempfail, so is the transaction. */
static enum smtp_milter_outcome
failed(struct smtp_session *s, size_t i, const char *stage,
    struct milter_result *r)
{
	log_warn("%s: milter %s at %s: %s; default action %s",
	    s->qid[0] ? s->qid : "NOQUEUE", s->srv->milters[i].text, stage,
	    r->error, s->srv->milter_accept ? "accept" : "tempfail");
	milter_close(s->mconn[i]);
	s->mconn[i] = NULL;
	if (s->srv->milter_accept)
		return SMTP_MILTER_DELIVER;
	s->milter_tempfail = true;
	return SMTP_MILTER_TEMPFAIL;
}

enum smtp_milter_outcome
smtp_milter_mail(struct smtp_session *s, const char *sender, char **reply_r)
{
	struct smtp_server *srv = s->srv;
	const char *rcpts[1];
	struct milter_msg m;

	*reply_r = NULL;
	smtp_milter_close(s);
	msg_fill(s, &m, sender, rcpts);
	m.nrcpts = 0;
	for (size_t i = 0; i < srv->nmilters; i++) {
		struct milter_result r;
		enum smtp_milter_outcome out = SMTP_MILTER_DELIVER;

		if (milter_begin(&srv->milters[i], &m, srv->milter_timeout,
		    srv->size_limit, &s->mconn[i], &r)) {
			milter_result_free(&r);
			continue;
		}
		switch (r.verdict) {
		case MILTER_FAILED:
			out = failed(s, i, "MAIL", &r);
			break;
		case MILTER_REJECT:
			out = SMTP_MILTER_REJECT;
			break;
		case MILTER_TEMPFAIL:
			out = SMTP_MILTER_TEMPFAIL;
			break;
		case MILTER_DISCARD:
			s->milter_discard = true;
			break;
		default:
			break;	/* accepted: not asked again */
		}
		if (out != SMTP_MILTER_DELIVER) {
			*reply_r = r.reply;
			r.reply = NULL;
			milter_result_free(&r);
			smtp_milter_close(s);
			return out;
		}
		milter_result_free(&r);
	}
	return SMTP_MILTER_DELIVER;
}

enum smtp_milter_outcome
smtp_milter_rcpt(struct smtp_session *s, const char *rcpt, char **reply_r)
{
	struct smtp_server *srv = s->srv;
	const char **rcpts = xcalloc(s->nrcpts + 1, sizeof(char *));
	enum smtp_milter_outcome out = SMTP_MILTER_DELIVER;
	struct milter_msg m;

	*reply_r = NULL;
	if (s->milter_tempfail) {
		free(rcpts);
		return SMTP_MILTER_TEMPFAIL;
	}
	msg_fill(s, &m, s->sender, rcpts);
	for (size_t i = 0; i < srv->nmilters && out == SMTP_MILTER_DELIVER;
	    i++) {
		struct milter_result r;

		if (s->mconn[i] == NULL)
			continue;
		if (milter_rcpt(s->mconn[i], &m, rcpt, &r)) {
			milter_result_free(&r);
			continue;
		}
		switch (r.verdict) {
		case MILTER_FAILED:
			out = failed(s, i, "RCPT", &r);
			break;
		case MILTER_REJECT:
			out = SMTP_MILTER_REJECT;
			break;
		case MILTER_TEMPFAIL:
			out = SMTP_MILTER_TEMPFAIL;
			break;
		case MILTER_DISCARD:
			s->milter_discard = true;
			/* FALLTHROUGH */
		default:
			/* accepted: not asked again */
			milter_close(s->mconn[i]);
			s->mconn[i] = NULL;
			break;
		}
		if (out != SMTP_MILTER_DELIVER) {
			*reply_r = r.reply;
			r.reply = NULL;
		}
		milter_result_free(&r);
	}
	free(rcpts);
	return out;
}

enum smtp_milter_outcome
smtp_milter_check(struct smtp_session *s, char **reply_r)
{
	struct smtp_server *srv = s->srv;

	*reply_r = NULL;
	if (s->milter_tempfail) {
		smtp_milter_close(s);
		return SMTP_MILTER_TEMPFAIL;
	}
	if (s->milter_discard) {
		smtp_milter_close(s);
		return SMTP_MILTER_DISCARD;
	}
	for (size_t i = 0; i < srv->nmilters; i++) {
		const char **rcpts;
		struct milter_msg m;
		struct milter_result r;
		enum smtp_milter_outcome out = SMTP_MILTER_DELIVER;

		if (s->mconn[i] == NULL)
			continue;	/* accepted before DATA, or skipped */
		rcpts = xcalloc(s->nrcpts + 1, sizeof(char *));
		msg_fill(s, &m, s->sender, rcpts);
		milter_end(s->mconn[i], &m, &r);
		s->mconn[i] = NULL;
		free(rcpts);
		if (r.verdict == MILTER_FAILED) {
			log_warn("%s: milter %s: %s; default action %s", s->qid,
			    srv->milters[i].text, r.error,
			    srv->milter_accept ? "accept" : "tempfail");
			milter_result_free(&r);
			if (srv->milter_accept)
				continue;
			smtp_milter_close(s);
			return SMTP_MILTER_TEMPFAIL;
		}
		if (r.verdict != MILTER_ACCEPT || r.nedits > 0 ||
		    r.body_replaced || r.quarantine || r.new_sender ||
		    r.ndel_rcpts > 0)
			log_info("%s: milter %s: %s%s%s%s%s", s->qid,
			    srv->milters[i].text, verdict_name(r.verdict),
			    r.reply ? ": " : "", r.reply ? r.reply : "",
			    r.quarantine ? "; quarantine: " : "",
			    r.quarantine ? r.quarantine : "");
		switch (r.verdict) {
		case MILTER_REJECT:
			out = SMTP_MILTER_REJECT;
			break;
		case MILTER_TEMPFAIL:
			out = SMTP_MILTER_TEMPFAIL;
			break;
		case MILTER_DISCARD:
			out = SMTP_MILTER_DISCARD;
			break;
		default:
			if (apply(s, &r) < 0)
				out = SMTP_MILTER_ERROR;
			else if (s->nrcpts == 0)
				out = SMTP_MILTER_DISCARD;
			break;
		}
		if (out != SMTP_MILTER_DELIVER) {
			*reply_r = r.reply;
			r.reply = NULL;
			milter_result_free(&r);
			smtp_milter_close(s);
			return out;
		}
		milter_result_free(&r);
	}
	return SMTP_MILTER_DELIVER;
}
