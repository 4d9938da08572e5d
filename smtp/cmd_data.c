/*
 * cmd_data.c: DATA (RFC 5321 4.1.1.4) and BDAT (RFC 3030 CHUNKING): the
 * body read into the spool up to message_size_limit, then one delivery
 * job through lib/deliver with a Received header (RFC 5321 4.4) and, on
 * submission, a Message-ID and a Date when the message has none
 * (RFC 6409 8.2, 8.3).
 *
 * Trust: only <CRLF>.<CRLF> ends DATA: a dot line after a bare LF or a
 * bare CR is message content (no SMTP smuggling). A BDAT chunk is read
 * whole, by its announced length, even when it is refused.
 *
 * Messages are stored with LF line endings (the Maildir convention);
 * "250 after DATA" is sent only when every copy is fsync'd (file and
 * directory); 452 4.3.1 when the disk is full, 451 4.3.0 on other
 * failures.
 *
 * The whole data phase (DATA to the final dot, the first BDAT to the
 * LAST chunk) must end within smtp_data_timeout seconds, whatever the
 * idle timer says: a client sending one line every smtp_timeout/2 cannot
 * hold a session and a spool file for ever. When it has passed the
 * partial message is discarded, never acknowledged, and the session ends
 * with 421 4.4.2.
 */
#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/clock.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/deliver/deliver.h"
#include "lib/trust/arc.h"
#include "lib/trust/dmarc.h"
#include "lib/io/jobs.h"
#include "lib/queue/spool.h"
#include "lib/session/counters.h"
#include "lib/session/session.h"
#include "lib/smtp/parse.h"
#include "smtp/smtp-private.h"

/* The data phase begins (DATA, or the first BDAT of a transaction). */
static void
data_deadline_start(struct smtp_session *s)
{
	if (s->data_deadline_ms != 0 || s->srv->data_timeout == 0)
		return;
	s->data_deadline_ms = monotonic_ms() +
	    (int64_t)s->srv->data_timeout * 1000;
}

/* Has the data phase outlived smtp_data_timeout? Then the partial message
 * is dropped unacknowledged and the session ends. */
static bool
data_deadline_passed(struct smtp_session *s)
{
	if (s->data_deadline_ms == 0 || monotonic_ms() < s->data_deadline_ms)
		return false;
	log_info("%016llx: data timeout (smtp_data_timeout=%u) from %s%s%s",
	    SID(&s->base), s->srv->data_timeout, s->base.peer,
	    s->qid[0] != '\0' ? ", discarded " : "", s->qid);
	reply(s, "421 4.4.2 %s Error: data timeout exceeded",
	    s->srv->hostname);
	smtp_transaction_reset(s);
	session_quit(&s->base);
	return true;
}

/* Now as an RFC 5322 date-time, local time with its offset. */
static void
rfc5322_now(char *date, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

void
smtp_received_header(struct smtp_session *s, str_t *h, const char *for_addr)
{
	char date[64];
	/* RFC 3848 (and RFC 6531's UTF8 forms) name the protocol */
	const char *with = s->lmtp ? (s->smtputf8 ? "UTF8LMTP" : "LMTP") :
	    s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP";

	rfc5322_now(date, sizeof(date));
	str_printf(h, "Received: from %s ([%s])\n\tby %s (petrel) with %s%s%s "
	    "id %s", s->helo ? s->helo : "unknown", s->base.ip, s->srv->hostname,
	    with,
	    s->esmtp && s->base.tls ? "S" : "", s->esmtp && s->auth_user ? "A" : "",
	    s->qid);
	if (for_addr != NULL)
		str_printf(h, "\n\tfor <%s>", for_addr);
	str_printf(h, "; %s\n", date);
}

static void
data_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct deliver_rcpt *rcpts;
	struct deliver_msg msg;
	struct deliver_result res;
	str_t received = STR_INIT, authres = STR_INIT;
	struct arc_verdict arc;
	char *authres_value = NULL;
	const char *err = NULL;

	s->job_milter = SMTP_MILTER_DELIVER;
	if (s->lmtp) {
		lmtp_data_run(s, state);	/* each recipient on its own */
		return;
	}
	/* DKIM and Authentication-Results (trust.c), then the filters */
	if (smtp_trust_data(s, &authres, &arc) < 0) {
		s->job_milter = SMTP_MILTER_ERROR;
		return;
	}
	if (s->job_dmarc == DMARC_D_REJECT) {
		/* dmarc_policy = enforce, p=reject: refused in data_done */
		str_free(&authres);
		return;
	}
	if (s->srv->nmilters > 0) {
		/* the filters' verdict and changes before anything is
		 * stored */
		s->job_milter = smtp_milter_check(s, &s->job_milter_reply);
		if (s->job_milter != SMTP_MILTER_DELIVER) {
			str_free(&authres);
			return;
		}
	}
	smtp_received_header(s, &received, s->nrcpts == 1 ?
	    s->rcpts[0].address : NULL);
	/* this hop's trace: Received, then what it found */
	str_append_n(&received, authres.data, authres.len);
	if (arc.checked && authres.len > 23)
		authres_value = xstrdup(authres.data + 23);	/* past
						 * "Authentication-Results:" */
	str_free(&authres);
	if (s->submission) {
		/* RFC 6409 8.2, 8.3: complete the message. */
		if (!spool_header_has(&s->body, "Message-ID"))
			str_printf(&received, "Message-ID: <%s@%s>\n", s->qid,
			    s->srv->hostname);
		if (!spool_header_has(&s->body, "Date")) {
			char date[64];

			rfc5322_now(date, sizeof(date));
			str_printf(&received, "Date: %s\n", date);
		}
	}
	rcpts = xcalloc(s->nrcpts, sizeof(*rcpts));
	memset(&msg, 0, sizeof(msg));
	for (size_t i = 0; i < s->nrcpts; i++) {
		rcpts[i].address = s->rcpts[i].address;
		rcpts[i].route = &s->rcpts[i].route;
	}
	msg.qid = s->qid;
	msg.sender = s->sender;
	msg.rcpts = rcpts;
	msg.nrcpts = s->nrcpts;
	msg.prefix = str_c(&received);
	msg.body = &s->body;
	msg.dkim_sign = s->auth_user != NULL;
	msg.arrival_ms = monotonic_ms();
	/* Sieve: redirects routed on this thread's auth channel; a reject
	 * of the one recipient is still ours to answer */
	msg.authc = state;
	msg.may_refuse = true;
	msg.junk = s->job_dmarc == DMARC_D_QUARANTINE;
	msg.requiretls = s->requiretls;
	if (authres_value != NULL) {
		msg.arc = &arc;
		msg.authres = authres_value;
	}
	{
		/* Postfix's qmgr line, before the deliveries it counts */
		const char *prev = log_service_set("qmgr");

		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)",
		    s->qid, s->sender, (unsigned long long)s->body.size,
		    s->nrcpts);
		log_service_set(prev);
	}
	s->job_status = deliver_message(&s->srv->deliver, &msg, &res, &err);
	s->job_delivered = res.delivered;
	s->job_reject = res.reject;
	if (s->job_status < 0) {
		/* err lives in this job thread's buffer: copy it. */
		s->job_error = xstrdup(err);
		s->job_code = res.code;
	}
	free(rcpts);
	free(authres_value);
	str_free(&received);
}

/* The reply to a message a filter refused or discarded (milter.c). */
static void
milter_done(struct smtp_session *s)
{
	const char *line = s->job_milter_reply;

	switch (s->job_milter) {
	case SMTP_MILTER_REJECT:
		if (line == NULL)
			line = "550 5.7.1 Message rejected by a mail filter";
		log_info("%s: milter-reject: END-OF-MESSAGE from %s: %s; "
		    "from=<%s>", s->qid, s->base.peer, line + 4, s->sender);
		if (!s->base.dead)
			reply_error(s, "%s", line);
		break;
	case SMTP_MILTER_TEMPFAIL:
		if (line == NULL)
			line = "451 4.7.1 Service unavailable, try again later";
		log_info("%s: milter-reject: END-OF-MESSAGE from %s: %s; "
		    "from=<%s>", s->qid, s->base.peer, line + 4, s->sender);
		if (!s->base.dead)
			reply(s, "%s", line);
		break;
	case SMTP_MILTER_DISCARD:
		/* accepted, and dropped on the filter's word */
		log_info("%s: milter-discard: END-OF-MESSAGE from %s: "
		    "from=<%s>, size=%llu (discarded)", s->qid, s->base.peer,
		    s->sender, (unsigned long long)s->body.size);
		if (!s->base.dead)
			reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
		break;
	default:
		log_error("%s: the message as the filters changed it could "
		    "not be written", s->qid);
		if (!s->base.dead)
			reply(s, "451 4.3.0 Error: queue file write error");
		break;
	}
	xfree(&s->job_milter_reply);
}

static void
data_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));

	if (s->lmtp) {
		lmtp_data_done(s);
	} else if (s->job_milter == SMTP_MILTER_DELIVER &&
	    s->job_dmarc == DMARC_D_REJECT) {
		/* RFC 7489 10.3: the reply names DMARC */
		log_info("%s: dmarc-reject: END-OF-MESSAGE from %s: 5.7.1 "
		    "DMARC policy of %s; from=<%s>", s->qid, s->base.peer,
		    s->job_dmarc_from, s->sender);
		if (!s->base.dead)
			reply_error(s, "550 5.7.1 Message rejected by the DMARC "
			    "policy of %s", s->job_dmarc_from);
	} else if (s->job_milter != SMTP_MILTER_DELIVER) {
		milter_done(s);
	} else if (s->job_status == 0 && s->job_reject != NULL) {
		log_info("%s: sieve-reject: END-OF-MESSAGE from %s: %s; "
		    "from=<%s>", s->qid, s->base.peer, s->job_reject,
		    s->sender);
		if (!s->base.dead)
			reply_error(s, "550 5.7.1 %s", s->job_reject);
	} else if (s->job_status == 0) {
		node_counters_event(s->base.listener->nc,
		    NODE_EVENT_MESSAGE_RECEIVED);
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (accepted)",
		    s->qid, s->sender, (unsigned long long)s->body.size,
		    s->nrcpts);
		if (!s->base.dead)
			reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
	} else {
		/* Some copies may exist: the client retries, and a duplicate
		 * beats a loss. */
		log_error("%s: delivery failed after %zu cop%s: %s", s->qid,
		    s->job_delivered, s->job_delivered == 1 ? "y" : "ies",
		    s->job_error ? s->job_error : "?");
		/* RFC 3463 4.3.1: a write refused for want of space. */
		if (!s->base.dead && err_code_is_full(s->job_code))
			reply(s, "452 4.3.1 Insufficient system storage");
		else if (!s->base.dead)
			reply(s, "451 4.3.0 Error: queue file write error");
	}
	xfree(&s->job_error);
	xfree(&s->job_reject);
	s->job_dmarc = 0;
	s->job_code = ERR_NONE;
	smtp_transaction_reset(s);
	session_job_finished(&s->base);
}

void
smtp_start_delivery(struct smtp_session *s)
{
	if (s->spool_failed) {
		smtp_reply_message(s, false,
		    "452 4.3.1 Insufficient system storage");
		smtp_transaction_reset(s);
		return;
	}
	if (s->too_big) {
		smtp_reply_message(s, true,
		    "552 5.3.4 Message size exceeds fixed limit");
		smtp_transaction_reset(s);
		return;
	}
	s->job.run = data_run;
	s->job.done = data_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

void
smtp_cmd_data(struct smtp_session *s, const char *arg)
{
	if (*arg != '\0') {
		reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!s->have_mail) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->nrcpts == 0) {
		reply_error(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->body.size > 0 || s->bdat_failed) {
		reply_error(s, "503 5.5.1 Error: BDAT in progress");
		return;
	}
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	data_deadline_start(s);
	s->state = ST_DATA;
	smtp_dot_init(&s->dot);
	s->too_big = false;
}

void
smtp_cmd_bdat(struct smtp_session *s, const char *arg)
{
	uint64_t n;
	bool last;

	if (smtp_parse_bdat(arg, &n, &last) < 0) {
		reply_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		session_quit(&s->base);	/* the chunk length is unknown */
		return;
	}
	if (data_deadline_passed(s))
		return;
	data_deadline_start(s);
	s->bdat_left = n;
	s->bdat_last = last;
	s->state = ST_BDAT;
	if (!s->have_mail || s->nrcpts == 0)
		s->bdat_failed = true;	/* read the chunk, then refuse */
}

static void
body_append(struct smtp_session *s, const char *p, size_t n)
{
	const char *err;

	if (s->too_big || s->spool_failed || n == 0)
		return;
	if (s->body.size + n > s->srv->size_limit) {
		s->too_big = true;
		spool_reset(&s->body);
		return;
	}
	if (spool_append(&s->body, p, n, &err) < 0) {
		log_error("%s: %s", s->qid, err);
		s->spool_failed = true;	/* refused below, never half-taken */
		spool_reset(&s->body);
	}
}

static void
body_sink(void *ctx, const char *p, size_t n)
{
	body_append(ctx, p, n);
}

/* Consume DATA lines from in. Returns true at the end of DATA. */
bool
smtp_read_data(struct smtp_session *s, struct evbuffer *in)
{
	for (;;) {
		struct evbuffer_ptr eol;
		size_t avail = evbuffer_get_length(in), n;
		char *line;
		bool end;

		if (data_deadline_passed(s))
			return false;
		eol = evbuffer_search(in, "\n", 1, NULL);
		if (eol.pos < 0) {
			/* No LF yet: take a big partial line as content,
			 * keeping one byte that may be a CR of a CRLF. */
			if (avail < SMTP_DATA_CHUNK)
				return false;
			n = avail - 1;
			line = xmalloc(n);
			evbuffer_remove(in, line, n);
			smtp_dot_partial(&s->dot, line, n, body_sink, s);
			free(line);
			continue;
		}
		n = (size_t)eol.pos + 1;
		line = xmalloc(n);
		evbuffer_remove(in, line, n);
		end = smtp_dot_line(&s->dot, line, n, body_sink, s);
		free(line);
		if (end)
			return true;
	}
}

/* Consume BDAT chunk bytes. Returns true when the chunk is complete. */
bool
smtp_read_bdat(struct smtp_session *s, struct evbuffer *in)
{
	while (s->bdat_left > 0) {
		size_t avail = evbuffer_get_length(in), n;
		char *buf;

		if (avail == 0 || data_deadline_passed(s))
			return false;
		n = avail < s->bdat_left ? avail : (size_t)s->bdat_left;
		if (n > SMTP_DATA_CHUNK)
			n = SMTP_DATA_CHUNK;
		buf = xmalloc(n);
		evbuffer_remove(in, buf, n);
		s->bdat_left -= n;
		if (!s->bdat_failed)
			smtp_bdat_bytes(&s->pending_cr, buf, n, body_sink, s);
		free(buf);
	}
	return true;
}

/* A BDAT chunk has been read: answer it, or deliver after the last. */
void
smtp_bdat_chunk_done(struct smtp_session *s)
{
	/* the last chunk's answer is the message's: in LMTP one reply per
	 * accepted recipient (smtp_reply_message), as after DATA */
	if (s->bdat_failed && s->spool_failed) {
		if (s->bdat_last) {
			smtp_reply_message(s, false,
			    "452 4.3.1 Insufficient system storage");
			smtp_transaction_reset(s);
		} else {
			reply(s, "452 4.3.1 Insufficient system storage");
		}
		return;
	}
	if (s->bdat_failed) {
		if (s->bdat_last && s->have_mail)
			smtp_reply_message(s, true,
			    "554 5.5.1 Error: no valid recipients");
		else
			reply_error(s, "554 5.5.1 Error: no valid recipients");
		/* Outside a transaction, or at its end, the failure is
		 * over; inside one, later chunks of it fail too (RFC 3030
		 * 2). */
		if (s->bdat_last || !s->have_mail)
			smtp_transaction_reset(s);
		return;
	}
	if (s->spool_failed && !s->bdat_last) {
		reply(s, "452 4.3.1 Insufficient system storage");
		s->bdat_failed = true;
		return;
	}
	if (s->too_big && !s->bdat_last) {
		reply_error(s, "552 5.3.4 Message size exceeds fixed limit");
		s->bdat_failed = true;
		return;
	}
	if (!s->bdat_last) {
		reply(s, "250 2.0.0 %llu octets received",
		    (unsigned long long)s->body.size);
		return;
	}
	smtp_bdat_end(&s->pending_cr, body_sink, s);
	smtp_start_delivery(s);
}
