/*
 * session.c: one SMTP session (RFC 5321, with RFC 1870 SIZE, RFC 2920
 * PIPELINING, RFC 6152 8BITMIME, RFC 2034 ENHANCEDSTATUSCODES, RFC 6531
 * SMTPUTF8, RFC 3030 CHUNKING).
 *
 * Trust: every byte from the client is hostile. Command lines are bounded
 * (SMTP_LINE_MAX), as are recipients, errors, message size and time.
 * Only <CRLF>.<CRLF> ends DATA: a dot line after a bare LF or a bare CR is
 * message content (no SMTP smuggling). Commands are handled strictly in
 * order; a command that needs the directory or the disk parks the session
 * (no further input is read) until its job is done, so pipelined clients
 * get their replies in order.
 *
 * Messages are stored with LF line endings (the Maildir convention);
 * "250 after DATA" is sent only when every copy is fsync'd (file and
 * directory).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/auth/login.h"
#include "lib/base/addr.h"
#include "lib/base/base64.h"
#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/deliver/deliver.h"
#include "lib/dir/dir.h"
#include "lib/io/conn.h"
#include "lib/io/jobs.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"
#include "lib/smtp/parse.h"
#include "lib/tls/tls.h"
#include "smtp/smtp.h"

enum smtp_state {
	ST_CMD,		/* reading commands */
	ST_DATA,	/* reading DATA lines */
	ST_BDAT,	/* reading a BDAT chunk */
};

struct smtp_rcpt {
	char *address;		/* as given (lower-cased) */
	struct route_result route;
};

struct smtp_session {
	struct session base;	/* first: the connection (lib/session) */
	struct smtp_server *srv;
	enum smtp_state state;
	bool esmtp;
	char *helo;
	bool submission;	/* a submission port: AUTH required */
	char *auth_user;	/* authenticated address */
	char *auth_maildir;	/* its maildir (sender ownership check) */
	struct sasl sasl;	/* an AUTH exchange in progress */

	/* transaction */
	bool have_mail;
	char *sender;
	uint64_t size_hint;
	bool smtputf8;
	struct smtp_rcpt *rcpts;
	size_t nrcpts;
	char qid[17];

	/* message reception */
	struct spool body;
	bool too_big;
	bool spool_failed;	/* the body could not be stored while read */
	struct smtp_dot dot;	/* DATA: dot-unstuffing state */
	bool pending_cr;	/* BDAT: a CR at the end of the last chunk */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_failed;	/* a BDAT transaction already failed */

	/* job in flight */
	struct job job;
	int job_kind;		/* JOB_RCPT, JOB_DATA, JOB_SENDER */
	char *job_addr;
	bool job_postmaster;	/* RCPT TO:<postmaster> without domain */
	struct route_result job_route;
	int job_status;
	char *job_error;
	int job_code;		/* enum err_code or errno of job_error */
	size_t job_delivered;
};

enum { JOB_RCPT, JOB_DATA, JOB_SENDER };

static void mail_accept(struct smtp_session *s, char *addr);
static bool auth_allowed(const struct smtp_session *s);
static void sender_run(struct job *job, void *state);
static void sender_done(struct job *job);

#define reply(s, ...) session_reply(&(s)->base, __VA_ARGS__)
/* A reply that counts as an error; too many and the session ends. */
#define reply_error(s, ...) session_error(&(s)->base, "", __VA_ARGS__)

static void
transaction_reset(struct smtp_session *s)
{
	s->have_mail = false;
	xfree(&s->sender);
	for (size_t i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].address);
		route_result_clear(&s->rcpts[i].route);
	}
	xfree(&s->rcpts);
	s->nrcpts = 0;
	s->size_hint = 0;
	s->smtputf8 = false;
	s->too_big = false;
	s->spool_failed = false;
	s->bdat_failed = false;
	s->pending_cr = false;
	s->qid[0] = '\0';
	spool_reset(&s->body);
}

/* ---- jobs ---- */

static void
rcpt_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct dir *dir = state;
	const char *err;

	route_resolve(dir, &s->srv->rc, s->job_addr, s->auth_user != NULL,
	    &s->job_route);
	if (s->job_route.status == ROUTE_RELAY_DENIED && s->job_postmaster) {
		/* RFC 5321 4.5.1: <postmaster> must be accepted. When the
		 * host name is not a hosted domain, use the first hosted one. */
		struct dir_rows *rows = NULL;

		if (dir_query(dir, "SELECT domain FROM transport ORDER BY domain",
		    NULL, 0, &rows, &err) == DIR_OK && rows->nrows > 0) {
			free(s->job_addr);
			s->job_addr = xasprintf("postmaster@%s",
			    dir_rows_get(rows, 0, 0));
			route_result_clear(&s->job_route);
			route_resolve(dir, &s->srv->rc, s->job_addr, false,
			    &s->job_route);
		}
		dir_rows_free(&rows);
	}
	if (s->job_route.status != ROUTE_OK)
		return;
	/* Quota (452 4.2.2) at RCPT time, with the SIZE= hint. */
	for (size_t i = 0; i < s->job_route.ndests; i++) {
		struct route_dest *d = &s->job_route.dests[i];
		int r;

		if (d->kind != ROUTE_MAILDIR || d->quota == 0)
			continue;
		r = maildir_quota_check(d->maildir, d->quota,
		    s->size_hint ? s->size_hint : 1, &err);
		if (r < 0)
			log_warn("quota check %s: %s", d->maildir, err);
		if (r == 0) {
			s->job_status = 452;
			return;
		}
	}
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
		session_job_finished(&s->base);
		return;
	}
	if (r->status == ROUTE_OK && s->job_status == 452) {
		reply_error(s, "452 4.2.2 <%s>: Recipient address rejected: "
		    "Mailbox full", s->job_addr);
		route_result_clear(r);
	} else if (r->status == ROUTE_OK) {
		s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) *
		    sizeof(*s->rcpts));
		s->rcpts[s->nrcpts].address = s->job_addr;
		s->rcpts[s->nrcpts].route = *r;
		memset(r, 0, sizeof(*r));
		s->job_addr = NULL;
		s->nrcpts++;
		reply(s, "250 2.1.5 Ok");
	} else {
		switch (r->status) {
		case ROUTE_UNKNOWN:
			reply_error(s, "550 5.1.1 <%s>: Recipient address "
			    "rejected: User unknown in virtual mailbox table",
			    s->job_addr);
			break;
		case ROUTE_RELAY_DENIED:
			reply_error(s, "554 5.7.1 <%s>: Relay access denied",
			    s->job_addr);
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
	session_job_finished(&s->base);
}

static void
received_header(struct smtp_session *s, str_t *h, const char *for_addr)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	str_printf(h, "Received: from %s ([%s])\n\tby %s (petrel) with %s%s%s%s "
	    "id %s", s->helo ? s->helo : "unknown", s->base.ip, s->srv->hostname,
	    s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
	    s->esmtp && s->base.tls ? "S" : "", s->esmtp && s->auth_user ? "A" : "",
	    "", s->qid);
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
	str_t received = STR_INIT;
	const char *err = NULL;

	received_header(s, &received, s->nrcpts == 1 ?
	    s->rcpts[0].address : NULL);
	if (s->submission) {
		/* RFC 6409 8.2, 8.3: complete the message. */
		if (!spool_header_has(&s->body, "Message-ID"))
			str_printf(&received, "Message-ID: <%s@%s>\n", s->qid,
			    s->srv->hostname);
		if (!spool_header_has(&s->body, "Date")) {
			char date[64];
			time_t now = time(NULL);
			struct tm tm;

			localtime_r(&now, &tm);
			strftime(date, sizeof(date),
			    "%a, %d %b %Y %H:%M:%S %z", &tm);
			str_printf(&received, "Date: %s\n", date);
		}
	}
	rcpts = xcalloc(s->nrcpts, sizeof(*rcpts));
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
	s->job_status = deliver_message(&s->srv->deliver, &msg, &res, &err);
	s->job_delivered = res.delivered;
	if (s->job_status < 0) {
		/* err lives in this job thread's buffer: copy it. */
		s->job_error = xstrdup(err);
		s->job_code = res.code;
	}
	free(rcpts);
	str_free(&received);
}

static void
data_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));

	if (s->job_status == 0) {
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
	s->job_code = ERR_NONE;
	transaction_reset(s);
	session_job_finished(&s->base);
}

static void
start_delivery(struct smtp_session *s)
{
	if (s->spool_failed) {
		reply(s, "452 4.3.1 Insufficient system storage");
		transaction_reset(s);
		return;
	}
	if (s->too_big) {
		reply_error(s, "552 5.3.4 Message size exceeds fixed limit");
		transaction_reset(s);
		return;
	}
	s->job.run = data_run;
	s->job.done = data_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* ---- commands ---- */

static void
cmd_helo_ehlo(struct smtp_session *s, const char *arg, bool esmtp)
{
	struct smtp_server *srv = s->srv;

	if (*arg == '\0') {
		reply_error(s, "501 5.5.4 Syntax: %s hostname",
		    esmtp ? "EHLO" : "HELO");
		return;
	}
	transaction_reset(s);
	free(s->helo);
	s->helo = xstrndup(arg, strcspn(arg, " "));
	/* The HELO name goes into a header: keep it printable. */
	for (char *p = s->helo; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e ||
		    *p == '(' || *p == ')')
			*p = '?';
	s->esmtp = esmtp;
	if (!esmtp) {
		reply(s, "250 %s", srv->hostname);
		return;
	}
	reply(s, "250-%s", srv->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)srv->size_limit);
	reply(s, "250-VRFY");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	reply(s, "250-SMTPUTF8");
	if (!s->base.tls && srv->sv.tls != NULL)
		reply(s, "250-STARTTLS");
	if (auth_allowed(s))
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 CHUNKING");
}

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

static void
cmd_mail(struct smtp_session *s, const char *arg)
{
	struct smtp_mail_params params;
	const char *rest, *err;
	char *addr, *local, *domain;

	if (s->helo == NULL) {
		reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->have_mail) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0 ||
	    (addr = smtp_parse_path(arg + 5, &rest)) == NULL) {
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
	if (!s->esmtp && *rest != '\0' && rest[strspn(rest, " ")] != '\0') {
		reply_error(s, "555 5.5.4 Parameters need EHLO");
		free(addr);
		return;
	}
	if ((err = smtp_mail_params(rest, s->srv->size_limit, &params)) !=
	    NULL) {
		reply_error(s, "%s", err);
		free(addr);
		return;
	}
	s->size_hint = params.size;
	s->smtputf8 = params.smtputf8;
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
	mail_accept(s, addr);
}

static void
mail_accept(struct smtp_session *s, char *addr)
{
	s->sender = addr;
	s->have_mail = true;
	s->bdat_failed = false;
	queue_id_new(s->qid);
	spool_init(&s->body, s->srv->spool_dir);
	if (s->auth_user != NULL)
		log_info("%s: client=%s, helo=%s, sasl_username=%s", s->qid,
		    s->base.peer, s->helo, s->auth_user);
	else
		log_info("%s: client=%s, helo=%s", s->qid, s->base.peer, s->helo);
	reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct smtp_session *s, const char *arg)
{
	const char *rest, *err;
	char *addr, *local, *domain;

	if (!s->have_mail) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0 ||
	    (addr = smtp_parse_path(arg + 3, &rest)) == NULL) {
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
	s->job.run = rcpt_run;
	s->job.done = rcpt_done;
	session_job_submit(&s->base, s->srv->sv.dir_jobs, &s->job);
}

static void
cmd_data(struct smtp_session *s, const char *arg)
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
	s->state = ST_DATA;
	smtp_dot_init(&s->dot);
	s->too_big = false;
}

static void
cmd_bdat(struct smtp_session *s, const char *arg)
{
	uint64_t n;
	bool last;

	if (smtp_parse_bdat(arg, &n, &last) < 0) {
		reply_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		session_quit(&s->base);	/* the chunk length is unknown */
		return;
	}
	s->bdat_left = n;
	s->bdat_last = last;
	s->state = ST_BDAT;
	if (!s->have_mail || s->nrcpts == 0)
		s->bdat_failed = true;	/* read the chunk, then refuse */
}

static void
cmd_rset(struct smtp_session *s, const char *arg)
{
	transaction_reset(s);
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, const char *arg)
{
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, const char *arg)
{
	reply(s, "221 2.0.0 Bye");
	session_quit(&s->base);
}

static void
cmd_vrfy(struct smtp_session *s, const char *arg)
{
	/* RFC 5321 3.5.3: 252 when we will not verify. */
	reply(s, "252 2.5.2 Cannot VRFY user, but will accept message");
}

static void
cmd_help(struct smtp_session *s, const char *arg)
{
	reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET "
	    "NOOP QUIT VRFY HELP");
}


/* ---- AUTH (RFC 4954) and STARTTLS (RFC 3207) ---- */

/* After query_login and the password check, on the job thread. */
static int
auth_job(struct session *base, struct dir *dir, const struct dir_user *u)
{
	struct smtp_session *s = (struct smtp_session *)base;

	free(s->auth_user);
	s->auth_user = xstrdup(u->address);
	free(s->auth_maildir);
	s->auth_maildir = route_maildir_path(s->srv->rc.mail_root, u->maildir);
	return AUTH_OK;
}

static void
auth_done(struct session *base, int result)
{
	struct smtp_session *s = (struct smtp_session *)base;

	if (result == AUTH_OK) {
		log_info("%016llx: client=%s, sasl_method=PLAIN, "
		    "sasl_username=%s", SID(&s->base), s->base.peer,
		    s->auth_user);
		reply(s, "235 2.7.0 Authentication successful");
	} else if (result == AUTH_TEMPFAIL) {
		reply(s, "454 4.7.0 Temporary authentication failure");
	} else {
		xfree(&s->auth_user);
		xfree(&s->auth_maildir);
		reply_error(s, "535 5.7.8 Error: authentication failed");
	}
}

static bool
auth_allowed(const struct smtp_session *s)
{
	/* Submission: AUTH only over TLS (RFC 8314, SPEC section 4). */
	return s->submission && s->base.tls;
}

static void
auth_error(struct session *base, const char *line)
{
	reply_error((struct smtp_session *)base, "%s", line);
}

static const struct session_sasl_words sasl_words = {
	.challenge = "334 ",
	.aborted = "501 5.7.0 Authentication aborted",
	.bad = "501 5.5.2 Cannot decode response",
	.nomech = "535 5.7.8 Error: authentication mechanism not supported",
	.error = auth_error,
};

static void
cmd_auth(struct smtp_session *s, const char *arg)
{
	char mech[32];
	const char *ir;
	size_t n = strcspn(arg, " ");

	if (!auth_allowed(s)) {
		reply_error(s, s->submission ?
		    "530 5.7.0 Must issue a STARTTLS command first" :
		    "502 5.5.1 Error: authentication not enabled");
		return;
	}
	if (s->helo == NULL || !s->esmtp) {
		reply_error(s, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (s->auth_user != NULL) {
		reply_error(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (s->have_mail) {
		reply_error(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (n == 0 || n >= sizeof(mech)) {
		reply_error(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	memcpy(mech, arg, n);
	mech[n] = '\0';
	ir = arg[n] == ' ' ? arg + n + 1 : NULL;
	session_sasl_start(&s->base, &s->sasl, &sasl_words,
	    SASL_MECH_PLAIN | SASL_MECH_LOGIN, mech, ir);
}

static void
cmd_starttls(struct smtp_session *s, const char *arg)
{
	if (*arg != '\0') {
		reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->base.tls) {
		reply_error(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (s->srv->sv.tls == NULL) {
		reply_error(s, "454 4.7.0 TLS not available due to local "
		    "problem");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	if (session_starttls(&s->base) < 0)
		return;
	/* RFC 3207 4.2: forget everything learned before TLS. */
	transaction_reset(s);
	xfree(&s->helo);
	s->esmtp = false;
}

/* Submission: may the authenticated user send as this envelope sender?
 * Yes for the user's own address, or an address (alias) that delivers
 * into the user's maildir. */
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
	route_resolve(state, &s->srv->rc, s->job_addr, false, &r);
	if (r.status == ROUTE_TEMPFAIL)
		s->job_status = 451;
	for (size_t i = 0; i < r.ndests && s->auth_maildir != NULL; i++)
		if (r.dests[i].kind == ROUTE_MAILDIR &&
		    strcmp(r.dests[i].maildir, s->auth_maildir) == 0)
			s->job_status = 250;
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

static void
cmd_ehlo(struct smtp_session *s, const char *arg)
{
	cmd_helo_ehlo(s, arg, true);
}

static void
cmd_helo(struct smtp_session *s, const char *arg)
{
	cmd_helo_ehlo(s, arg, false);
}

static void
cmd_http(struct smtp_session *s, const char *arg)
{
	/* A web client talking to the mail port. */
	reply(s, "421 4.7.0 %s Error: not an HTTP server", s->srv->hostname);
	session_quit(&s->base);
}

static void
cmd_unknown(struct smtp_session *s, const char *arg)
{
	reply_error(s, "502 5.5.2 Error: command not recognized");
}

/* The command table, indexed by lib/smtp's verb. */
static void (*const commands[])(struct smtp_session *, const char *) = {
	[SMTP_UNKNOWN] = cmd_unknown,
	[SMTP_HELO] = cmd_helo,
	[SMTP_EHLO] = cmd_ehlo,
	[SMTP_MAIL] = cmd_mail,
	[SMTP_RCPT] = cmd_rcpt,
	[SMTP_DATA] = cmd_data,
	[SMTP_BDAT] = cmd_bdat,
	[SMTP_RSET] = cmd_rset,
	[SMTP_NOOP] = cmd_noop,
	[SMTP_QUIT] = cmd_quit,
	[SMTP_VRFY] = cmd_vrfy,
	[SMTP_HELP] = cmd_help,
	[SMTP_AUTH] = cmd_auth,
	[SMTP_STARTTLS] = cmd_starttls,
	[SMTP_HTTP] = cmd_http,
};

static void
dispatch(struct smtp_session *s, char *line, size_t len)
{
	const char *arg;
	enum smtp_verb v;

	if (sasl_active(&s->sasl)) {
		/* a continuation line during AUTH (RFC 4954 4) */
		session_sasl_step(&s->base, &s->sasl, &sasl_words, line);
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		reply_error(s, "500 5.5.2 Error: NUL character in command");
		return;
	}
	v = smtp_verb(line, &arg);
	if ((size_t)v >= sizeof(commands) / sizeof(commands[0]) ||
	    commands[v] == NULL)
		v = SMTP_UNKNOWN;
	commands[v](s, arg);
}

/* ---- input ---- */

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
static bool
read_data(struct smtp_session *s, struct evbuffer *in)
{
	for (;;) {
		struct evbuffer_ptr eol;
		size_t avail = evbuffer_get_length(in), n;
		char *line;
		bool end;

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
static bool
read_bdat(struct smtp_session *s, struct evbuffer *in)
{
	while (s->bdat_left > 0) {
		size_t avail = evbuffer_get_length(in), n;
		char *buf;

		if (avail == 0)
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
static void
bdat_chunk_done(struct smtp_session *s)
{
	if (s->bdat_failed && s->spool_failed) {
		reply(s, "452 4.3.1 Insufficient system storage");
		if (s->bdat_last)
			transaction_reset(s);
		return;
	}
	if (s->bdat_failed) {
		reply_error(s, "554 5.5.1 Error: no valid recipients");
		/* Outside a transaction, or at its end, the failure is
		 * over; inside one, later chunks of it fail too (RFC 3030
		 * 2). */
		if (s->bdat_last || !s->have_mail)
			transaction_reset(s);
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
	start_delivery(s);
}

/* The command lines, DATA and BDAT (lib/session calls this while no job
 * runs). Returns whether a command line is partly buffered. */
static bool
smtp_process(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;
	struct evbuffer *in = session_input(base);

	while (!base->busy && !base->quit && !session_output_full(base)) {
		if (s->state == ST_DATA) {
			if (!read_data(s, in))
				break;
			s->state = ST_CMD;
			start_delivery(s);
			continue;
		}
		if (s->state == ST_BDAT) {
			if (!read_bdat(s, in))
				break;
			s->state = ST_CMD;
			bdat_chunk_done(s);
			continue;
		}
		/* ST_CMD */
		{
			char *line;
			size_t n;
			int r = session_take_line(base, SMTP_LINE_MAX, &line,
			    &n);

			if (r == 0)
				break;
			if (r < 0) {
				sasl_reset(&s->sasl);
				reply_error(s, "500 5.5.2 Error: line too "
				    "long");
				continue;
			}
			dispatch(s, line, n);
			session_line_free(line, n);
		}
	}
	return s->state == ST_CMD && evbuffer_get_length(in) > 0;
}

static void
smtp_timeout(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;

	log_info("%016llx: timeout after %s from %s", SID(base),
	    s->state == ST_DATA || s->state == ST_BDAT ? "DATA" : "command",
	    base->peer);
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->srv->hostname);
}

static bool
smtp_drain(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;

	if (s->state != ST_CMD || s->have_mail)
		return false;	/* a transaction finishes first */
	reply(s, "421 4.3.2 %s Service shutting down", s->srv->hostname);
	return true;
}

static void
smtp_cleanup(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;

	transaction_reset(s);
	sasl_reset(&s->sasl);
	free(s->helo);
	free(s->job_addr);
	free(s->auth_user);
	free(s->auth_maildir);
}

static void
smtp_greet(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;

	s->srv = base->srv->owner;
	/* submission and submissions: AUTH required */
	s->submission = base->listener != &base->srv->listeners[0];
	spool_init(&s->body, s->srv->spool_dir);
	reply(s, "220 %s ESMTP petrel", s->srv->hostname);
}

static const struct session_ops smtp_ops = {
	.size = sizeof(struct smtp_session), .proto = "smtp",
	.listeners = { "smtp", "submission", "submissions" },
	.implicit_tls = { false, false, true },
	.timeout_key = "smtp_timeout", .default_timeout = SMTP_TIMEOUT,
	.errors_max = SMTP_ERRORS_MAX,
	.too_many_errors = "421 4.7.0 Error: too many errors",
	.refusal = "421 4.7.0 Error: too many connections, try again later",
	.greet = smtp_greet, .process = smtp_process, .timeout = smtp_timeout,
	.drain = smtp_drain, .cleanup = smtp_cleanup,
	.login_job = auth_job, .login_done = auth_done,
};

void
smtp_server_init(struct smtp_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	const char *err;

	memset(srv, 0, sizeof(*srv));
	session_server_init(&srv->sv, &smtp_ops, srv, base, jobs, cfg, tls);
	srv->hostname = srv->sv.hostname;
	srv->cfg = cfg;
	srv->queue_dir = xstrdup(config_get(cfg, "queue_dir"));
	srv->dkim_dir = config_get(cfg, "dkim_dir");
	srv->spool_dir = xasprintf("%s/tmp", srv->queue_dir);
	srv->deliver.queue_dir = srv->queue_dir;
	srv->deliver.dkim_dir = srv->dkim_dir;
	if (queue_dirs_make(srv->queue_dir, &err) < 0)
		fatal("%s", err);
	srv->rc.mail_root = config_get(cfg, "mail_root");
	srv->rc.delimiter = config_get(cfg, "recipient_delimiter");
	srv->size_limit = config_get_uint(cfg, "message_size_limit");
}

void
smtp_server_deinit(struct smtp_server *srv)
{
	session_server_deinit(&srv->sv);
	free(srv->queue_dir);
	free(srv->spool_dir);
}
