/*
 * milter.c: the configured mail filters (`milters`, lib/milter) asked
 * about a message at the end of DATA/BDAT, on the delivery job thread,
 * before anything is stored: one conversation per filter and message,
 * with the connection, HELO, MAIL and RCPT stages replayed then (so a
 * filter's refusal at MAIL or RCPT is given at the end of DATA, for the
 * whole message).
 *
 * A filter's changes (header fields added, changed, inserted or deleted,
 * a new body, a new envelope sender, recipients removed) are applied to
 * the message before the next filter sees it and before it is stored.
 * Quarantine marks the stored copy with an X-Quarantine: field (its
 * reason). A filter that cannot be reached, goes silent or breaks the
 * protocol gets milter_default_action: tempfail (451) or accept (as if
 * it were not configured).
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

enum smtp_milter_outcome
smtp_milter_check(struct smtp_session *s, char **reply_r)
{
	struct smtp_server *srv = s->srv;
	const char *colon = strrchr(s->base.peer, ':');

	*reply_r = NULL;
	for (size_t i = 0; i < srv->nmilters; i++) {
		const char **rcpts = xcalloc(s->nrcpts + 1, sizeof(char *));
		struct milter_msg m;
		struct milter_result r;
		enum smtp_milter_outcome out = SMTP_MILTER_DELIVER;

		for (size_t k = 0; k < s->nrcpts; k++)
			rcpts[k] = s->rcpts[k].address;
		memset(&m, 0, sizeof(m));
		m.hostname = srv->hostname;
		m.daemon = s->submission ? "submission" : "smtp";
		m.client_ip = s->base.ip;
		m.client_port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) :
		    0;
		m.client_family = strchr(s->base.ip, ':') ? AF_INET6 : AF_INET;
		m.helo = s->helo;
		m.qid = s->qid;
		m.auth_user = s->auth_user;
		m.tls = s->base.tls;
		m.sender = s->sender;
		m.rcpts = rcpts;
		m.nrcpts = s->nrcpts;
		m.body = &s->body;
		milter_run(&srv->milters[i], &m, srv->milter_timeout,
		    srv->size_limit, &r);
		free(rcpts);
		if (r.verdict == MILTER_FAILED) {
			log_warn("%s: milter %s: %s; default action %s", s->qid,
			    srv->milters[i].text, r.error,
			    srv->milter_accept ? "accept" : "tempfail");
			milter_result_free(&r);
			if (srv->milter_accept)
				continue;
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
			return out;
		}
		milter_result_free(&r);
	}
	return SMTP_MILTER_DELIVER;
}
