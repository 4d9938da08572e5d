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
#include "lib/smtp/parse.h"
#include "lib/tls/tls.h"
#include "smtp/smtp.h"

enum smtp_state {
	ST_CMD,		/* reading commands */
	ST_DATA,	/* reading DATA lines */
	ST_BDAT,	/* reading a BDAT chunk */
	ST_QUIT,	/* reply flushed, then close */
};

struct smtp_rcpt {
	char *address;		/* as given (lower-cased) */
	struct route_result route;
};

struct smtp_session {
	struct smtp_server *srv;
	struct bufferevent *bev;
	struct smtp_session *next, *prev;
	char ip[64];
	char peer[80];		/* "[ip]:port" for logs */
	unsigned long sid;
	enum smtp_state state;
	bool busy;		/* a job is running for this session */
	bool dead;		/* connection gone; free when the job ends */
	bool skip_line;		/* discarding the rest of an overlong line */
	bool esmtp;
	char *helo;
	unsigned errors;
	bool tls;		/* STARTTLS done or implicit TLS */
	bool submission;	/* a submission port: AUTH required */
	bool loopback;
	char *auth_user;	/* authenticated address */
	char *auth_maildir;	/* its maildir (sender ownership check) */
	enum { AUTH_NONE, AUTH_PLAIN_WAIT, AUTH_LOGIN_USER,
	    AUTH_LOGIN_PASS } auth_step;
	char *auth_login_name;
	struct event *delay_ev;
	struct event *close_ev;
	struct event *line_ev;	/* deadline for a partial command line */

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
	int job_kind;		/* JOB_RCPT, JOB_DATA, JOB_AUTH, JOB_SENDER */
	char *job_login, *job_pass;
	char *job_addr;
	bool job_postmaster;	/* RCPT TO:<postmaster> without domain */
	struct route_result job_route;
	int job_status;
	char *job_error;
	int job_code;		/* enum err_code or errno of job_error */
	size_t job_delivered;
};

enum { JOB_RCPT, JOB_DATA, JOB_AUTH, JOB_SENDER };

static unsigned long next_sid;

static void session_process(struct smtp_session *s);
static void mail_accept(struct smtp_session *s, char *addr);
static bool auth_allowed(const struct smtp_session *s);
static void sender_run(struct job *job, void *state);
static void sender_done(struct job *job);
static void session_free(struct smtp_session *s);

__attribute__((format(printf, 2, 3)))
static void
reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* A reply that counts as an error; too many and the session ends. */
__attribute__((format(printf, 2, 3)))
static void
reply_error(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	if (++s->errors >= SMTP_ERRORS_MAX) {
		reply(s, "421 4.7.0 %s Error: too many errors",
		    s->srv->hostname);
		log_info("%lu: too many errors from %s", s->sid, s->peer);
		s->state = ST_QUIT;
	}
}

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

	s->busy = false;
	if (s->dead) {
		route_result_clear(r);
		xfree(&s->job_addr);
		session_free(s);
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
			log_info("%lu: reject: RCPT from %s: <%s>: %s",
			    s->sid, s->peer, s->job_addr,
			    route_status_name(r->status));
		route_result_clear(r);
	}
	xfree(&s->job_addr);
	session_process(s);
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
	    "id %s", s->helo ? s->helo : "unknown", s->ip, s->srv->hostname,
	    s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
	    s->esmtp && s->tls ? "S" : "", s->esmtp && s->auth_user ? "A" : "",
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

	s->busy = false;
	if (s->job_status == 0) {
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (accepted)",
		    s->qid, s->sender, (unsigned long long)s->body.size,
		    s->nrcpts);
		if (!s->dead)
			reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
	} else {
		/* Some copies may exist: the client retries, and a duplicate
		 * beats a loss. */
		log_error("%s: delivery failed after %zu cop%s: %s", s->qid,
		    s->job_delivered, s->job_delivered == 1 ? "y" : "ies",
		    s->job_error ? s->job_error : "?");
		/* RFC 3463 4.3.1: a write refused for want of space. */
		if (!s->dead && err_code_is_full(s->job_code))
			reply(s, "452 4.3.1 Insufficient system storage");
		else if (!s->dead)
			reply(s, "451 4.3.0 Error: queue file write error");
	}
	xfree(&s->job_error);
	s->job_code = ERR_NONE;
	transaction_reset(s);
	if (s->dead) {
		session_free(s);
		return;
	}
	session_process(s);
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
	s->busy = true;
	s->job.run = data_run;
	s->job.done = data_done;
	jobs_submit(s->srv->jobs, &s->job);
}

/* ---- commands ---- */

static void
cmd_helo(struct smtp_session *s, const char *arg, bool esmtp)
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
	if (!s->tls && srv->tls != NULL)
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
		s->busy = true;
		s->job.run = sender_run;
		s->job.done = sender_done;
		jobs_submit(s->srv->dir_jobs, &s->job);
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
		    s->peer, s->helo, s->auth_user);
	else
		log_info("%s: client=%s, helo=%s", s->qid, s->peer, s->helo);
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
	s->busy = true;
	s->job.run = rcpt_run;
	s->job.done = rcpt_done;
	jobs_submit(s->srv->dir_jobs, &s->job);
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
		s->state = ST_QUIT;	/* the chunk length is unknown */
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
	s->state = ST_QUIT;
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

static void
auth_run(struct job *job, void *state)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));
	struct dir_user u;

	s->job_status = auth_login(state, s->job_login, s->job_pass, &u);
	if (s->job_status != AUTH_OK)
		return;
	free(s->auth_user);
	s->auth_user = xstrdup(u.address);
	free(s->auth_maildir);
	s->auth_maildir = route_maildir_path(s->srv->rc.mail_root, u.maildir);
	dir_user_clear(&u);
}

static void
auth_delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	s->busy = false;
	event_free(s->delay_ev);
	s->delay_ev = NULL;
	if (s->dead) {
		session_free(s);
		return;
	}
	reply_error(s, "535 5.7.8 Error: authentication failed");
	session_process(s);
}

static void
auth_done(struct job *job)
{
	struct smtp_session *s = (struct smtp_session *)((char *)job -
	    offsetof(struct smtp_session, job));

	s->busy = false;
	if (s->job_pass != NULL) {
		explicit_bzero(s->job_pass, strlen(s->job_pass));
		xfree(&s->job_pass);
	}
	if (s->job_status == AUTH_OK) {
		auth_delay_success(s->ip);
		log_info("%lu: client=%s, sasl_method=PLAIN, "
		    "sasl_username=%s", s->sid, s->peer, s->auth_user);
		if (!s->dead)
			reply(s, "235 2.7.0 Authentication successful");
	} else if (s->job_status == AUTH_TEMPFAIL) {
		log_warn("%lu: authentication of %s: directory unavailable",
		    s->sid, s->job_login);
		if (!s->dead)
			reply(s, "454 4.7.0 Temporary authentication failure");
	} else {
		struct timeval tv;
		unsigned ms = auth_delay_failure(s->ip, s->srv->fail_delay_ms);

		log_info("%lu: %s: SASL authentication failed for %s (delay "
		    "%u ms)", s->sid, s->peer, s->job_login, ms);
		xfree(&s->job_login);
		if (s->dead) {
			session_free(s);
			return;
		}
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		s->busy = true;
		s->delay_ev = evtimer_new(s->srv->base, auth_delay_done, s);
		evtimer_add(s->delay_ev, &tv);
		return;
	}
	xfree(&s->job_login);
	if (s->dead) {
		session_free(s);
		return;
	}
	session_process(s);
}

static void
auth_start(struct smtp_session *s, char *login, char *pass)
{
	s->job_login = login;
	s->job_pass = pass;
	s->busy = true;
	s->job.run = auth_run;
	s->job.done = auth_done;
	jobs_submit(s->srv->dir_jobs, &s->job);
}

static bool
auth_allowed(const struct smtp_session *s)
{
	/* Submission: AUTH only over TLS (RFC 8314, SPEC section 4). */
	return s->submission && s->tls;
}

static void
auth_plain_response(struct smtp_session *s, const char *b64)
{
	char *login, *pass;

	if (strcmp(b64, "*") == 0) {
		reply_error(s, "501 5.7.0 Authentication aborted");
		return;
	}
	if (sasl_plain_decode(b64, strlen(b64), &login, &pass) < 0) {
		reply_error(s, "501 5.5.2 Cannot decode response");
		return;
	}
	auth_start(s, login, pass);
}

/* A continuation line during AUTH (RFC 4954 4). */
static void
auth_continue(struct smtp_session *s, const char *line)
{
	str_t dec = STR_INIT;
	int step = s->auth_step;

	s->auth_step = AUTH_NONE;
	if (step == AUTH_PLAIN_WAIT) {
		auth_plain_response(s, line);
		return;
	}
	if (strcmp(line, "*") == 0) {
		reply_error(s, "501 5.7.0 Authentication aborted");
		xfree(&s->auth_login_name);
		return;
	}
	if (base64_decode(&dec, line, strlen(line)) < 0 ||
	    memchr(str_c(&dec), '\0', dec.len) != NULL) {
		reply_error(s, "501 5.5.2 Cannot decode response");
		str_free(&dec);
		xfree(&s->auth_login_name);
		return;
	}
	if (step == AUTH_LOGIN_USER) {
		s->auth_login_name = str_steal(&dec);
		s->auth_step = AUTH_LOGIN_PASS;
		reply(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
		return;
	}
	auth_start(s, s->auth_login_name, str_steal(&dec));
	s->auth_login_name = NULL;
}

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
	if (strcasecmp(mech, "PLAIN") == 0) {
		if (ir == NULL) {
			s->auth_step = AUTH_PLAIN_WAIT;
			reply(s, "334 ");
			return;
		}
		auth_plain_response(s, strcmp(ir, "=") == 0 ? "" : ir);
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		if (ir != NULL) {
			s->auth_step = AUTH_LOGIN_USER;
			auth_continue(s, ir);
			return;
		}
		s->auth_step = AUTH_LOGIN_USER;
		reply(s, "334 VXNlcm5hbWU6");	/* "Username:" */
	} else {
		reply_error(s, "535 5.7.8 Error: authentication mechanism "
		    "not supported");
	}
}

static void session_read(struct bufferevent *bev, void *arg);
static void session_write(struct bufferevent *bev, void *arg);
static void session_event(struct bufferevent *bev, short what, void *arg);

static void
cmd_starttls(struct smtp_session *s, const char *arg)
{
	struct bufferevent *tb;

	if (*arg != '\0') {
		reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls) {
		reply_error(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (s->srv->tls == NULL) {
		reply_error(s, "454 4.7.0 TLS not available due to local "
		    "problem");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	tb = tls_bev_starttls(s->srv->tls, s->srv->base, s->bev);
	if (tb == NULL) {
		s->state = ST_QUIT;
		return;
	}
	s->bev = tb;
	s->tls = true;
	bufferevent_setcb(s->bev, session_read, session_write, session_event, s);
	conn_set_watermarks(s->bev);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
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

	s->busy = false;
	s->job_addr = NULL;
	if (s->dead) {
		free(addr);
		session_free(s);
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
		log_info("%lu: reject: MAIL from %s: <%s> not owned by %s",
		    s->sid, s->peer, addr, s->auth_user);
		free(addr);
	}
	session_process(s);
}

static void
dispatch(struct smtp_session *s, char *line, size_t len)
{
	const char *arg;

	if (s->auth_step != AUTH_NONE) {
		auth_continue(s, line);
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		reply_error(s, "500 5.5.2 Error: NUL character in command");
		return;
	}
	switch (smtp_verb(line, &arg)) {
	case SMTP_EHLO: cmd_helo(s, arg, true); break;
	case SMTP_HELO: cmd_helo(s, arg, false); break;
	case SMTP_MAIL: cmd_mail(s, arg); break;
	case SMTP_RCPT: cmd_rcpt(s, arg); break;
	case SMTP_DATA: cmd_data(s, arg); break;
	case SMTP_BDAT: cmd_bdat(s, arg); break;
	case SMTP_RSET: cmd_rset(s, arg); break;
	case SMTP_NOOP: cmd_noop(s, arg); break;
	case SMTP_QUIT: cmd_quit(s, arg); break;
	case SMTP_VRFY: cmd_vrfy(s, arg); break;
	case SMTP_HELP: cmd_help(s, arg); break;
	case SMTP_AUTH: cmd_auth(s, arg); break;
	case SMTP_STARTTLS: cmd_starttls(s, arg); break;
	case SMTP_HTTP:
		/* A web client talking to the mail port. */
		reply(s, "421 4.7.0 %s Error: not an HTTP server",
		    s->srv->hostname);
		s->state = ST_QUIT;
		break;
	case SMTP_UNKNOWN:
		reply_error(s, "502 5.5.2 Error: command not recognized");
		break;
	}
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

static void close_when_flushed(struct smtp_session *s);

static void
close_tick(evutil_socket_t fd, short what, void *arg)
{
	close_when_flushed(arg);
}

/* Free the session once its replies reached the socket (with STARTTLS
 * they pass through an underlying bufferevent after the TLS one). */
static void
close_when_flushed(struct smtp_session *s)
{
	struct timeval tv = { 0, 20000 };

	if (conn_output_pending(s->bev) == 0 || s->dead) {
		session_free(s);
		return;
	}
	if (s->close_ev == NULL)
		s->close_ev = evtimer_new(s->srv->base, close_tick, s);
	evtimer_add(s->close_ev, &tv);
}

/* A command line still incomplete after the whole timeout (a client
 * trickling bytes): the same as an idle timeout. */
static void
line_expired(evutil_socket_t fd, short what, void *arg)
{
	session_event(((struct smtp_session *)arg)->bev,
	    BEV_EVENT_TIMEOUT | BEV_EVENT_READING, arg);
}

static void
session_process(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (!s->busy && s->state != ST_QUIT &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) < OUTPUT_MAX) {
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
			if (s->bdat_failed && s->spool_failed) {
				reply(s, "452 4.3.1 Insufficient system "
				    "storage");
				if (s->bdat_last)
					transaction_reset(s);
				continue;
			}
			if (s->bdat_failed) {
				reply_error(s, "554 5.5.1 Error: no valid "
				    "recipients");
				/* Outside a transaction, or at its end, the
				 * failure is over; inside one, later chunks
				 * of it fail too (RFC 3030 2). */
				if (s->bdat_last || !s->have_mail)
					transaction_reset(s);
				continue;
			}
			if (s->spool_failed && !s->bdat_last) {
				reply(s, "452 4.3.1 Insufficient system "
				    "storage");
				s->bdat_failed = true;
				continue;
			}
			if (s->too_big && !s->bdat_last) {
				reply_error(s, "552 5.3.4 Message size "
				    "exceeds fixed limit");
				s->bdat_failed = true;
				continue;
			}
			if (!s->bdat_last) {
				reply(s, "250 2.0.0 %llu octets received",
				    (unsigned long long)s->body.size);
				continue;
			}
			smtp_bdat_end(&s->pending_cr, body_sink, s);
			start_delivery(s);
			continue;
		}
		/* ST_CMD */
		{
			struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1,
			    NULL);
			size_t n;
			char *line;

			if (eol.pos < 0) {
				if (evbuffer_get_length(in) > SMTP_LINE_MAX) {
					evbuffer_drain(in, evbuffer_get_length(in));
					s->auth_step = AUTH_NONE;
					if (!s->skip_line)
						reply_error(s, "500 5.5.2 Error: "
						    "line too long");
					s->skip_line = true;
				}
				break;
			}
			n = (size_t)eol.pos + 1;
			if (s->skip_line) {
				evbuffer_drain(in, n);
				s->skip_line = false;
				continue;
			}
			if (n > SMTP_LINE_MAX) {
				evbuffer_drain(in, n);
				reply_error(s, "500 5.5.2 Error: line too long");
				continue;
			}
			line = xmalloc(n + 1);
			evbuffer_remove(in, line, n);
			conn_line_deadline(&s->line_ev, s->srv->base, false, 0,
			    NULL, NULL);
			n--;
			if (n > 0 && line[n - 1] == '\r')
				n--;
			line[n] = '\0';
			dispatch(s, line, n);
			free(line);
		}
	}
	conn_line_deadline(&s->line_ev, s->srv->base, !s->busy &&
	    s->state == ST_CMD && evbuffer_get_length(in) > 0,
	    s->srv->timeout, line_expired, s);
	if (s->state == ST_QUIT) {
		/* Flush the replies, then close. */
		bufferevent_disable(s->bev, EV_READ);
		close_when_flushed(s);
	}
}

static void
session_read(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void
session_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == ST_QUIT && !s->busy)
		close_when_flushed(s);
	else if (!s->busy && s->state != ST_QUIT)
		session_process(s);	/* output drained: read on */
}

static void
session_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;		/* the TLS handshake completed */
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("%lu: timeout after %s from %s", s->sid,
		    s->state == ST_DATA || s->state == ST_BDAT ? "DATA" :
		    "command", s->peer);
		reply(s, "421 4.4.2 %s Error: timeout exceeded",
		    s->srv->hostname);
		s->state = ST_QUIT;
		bufferevent_disable(bev, EV_READ);
		bufferevent_set_timeouts(bev, NULL, NULL);
		return;
	}
	/* EOF or error: the client is gone. */
	if (s->busy) {
		s->dead = true;	/* the job's done callback frees it */
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

static struct smtp_ipcount *
ipcount(struct smtp_server *srv, const char *ip, bool create)
{
	struct smtp_ipcount *c;

	for (c = srv->ips; c != NULL; c = c->next)
		if (strcmp(c->ip, ip) == 0)
			return c;
	if (!create)
		return NULL;
	c = xmalloc(sizeof(*c));
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
	c->next = srv->ips;
	srv->ips = c;
	return c;
}

static void
session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	struct smtp_ipcount *c, **pp;

	if (s->busy) {
		s->dead = true;
		return;
	}
	log_info("%lu: disconnect from %s", s->sid, s->peer);
	transaction_reset(s);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	c = ipcount(srv, s->ip, false);
	if (c != NULL && --c->count == 0) {
		for (pp = &srv->ips; *pp != c; pp = &(*pp)->next)
			;
		*pp = c->next;
		free(c);
	}
	srv->nsessions--;
	if (s->delay_ev != NULL)
		event_free(s->delay_ev);
	if (s->close_ev != NULL)
		event_free(s->close_ev);
	if (s->line_ev != NULL)
		event_free(s->line_ev);
	bufferevent_free(s->bev);
	free(s->helo);
	free(s->job_addr);
	free(s->job_login);
	if (s->job_pass != NULL)
		explicit_bzero(s->job_pass, strlen(s->job_pass));
	free(s->job_pass);
	free(s->auth_user);
	free(s->auth_maildir);
	free(s->auth_login_name);
	free(s);
}

void
smtp_session_accept(struct smtp_server *srv, int fd, const struct sockaddr *sa,
    int salen, bool submission, bool implicit_tls)
{
	struct smtp_session *s;
	struct smtp_ipcount *c;
	struct timeval tv = { (time_t)srv->timeout, 0 };
	char ip[64];
	unsigned port;
	bool loopback;

	if (implicit_tls && srv->tls == NULL) {
		close(fd);
		return;
	}
	conn_peer(sa, ip, sizeof(ip), &port, &loopback);
	c = ipcount(srv, ip, true);
	if (srv->draining || srv->nsessions >= srv->max_conn ||
	    c->count >= srv->max_conn_per_ip) {
		static const char busy[] = "421 4.7.0 Error: too many "
		    "connections, try again later\r\n";

		log_warn("connection from [%s]:%u refused: %s", ip, port,
		    srv->draining ? "shutting down" :
		    srv->nsessions >= srv->max_conn ? "server busy" :
		    "too many connections from this address");
		(void)!write(fd, busy, sizeof(busy) - 1);
		close(fd);
		if (c->count == 0) {
			srv->ips = c->next;
			free(c);
		}
		return;
	}
	s = xmalloc(sizeof(*s));
	s->srv = srv;
	s->sid = ++next_sid;
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->peer, sizeof(s->peer), "[%s]:%u", ip, port);
	s->submission = submission;
	s->loopback = loopback;
	if (implicit_tls) {
		s->bev = tls_bev_accept(srv->tls, srv->base, fd);
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->bev == NULL) {
		close(fd);
		free(s);
		return;
	}
	spool_init(&s->body, srv->spool_dir);
	c->count++;
	srv->nsessions++;
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	bufferevent_setcb(s->bev, session_read, session_write, session_event, s);
	conn_set_watermarks(s->bev);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_info("%lu: connect from %s%s%s", s->sid, s->peer,
	    submission ? " (submission)" : "", implicit_tls ? " (TLS)" : "");
	reply(s, "220 %s ESMTP petrel", srv->hostname);
}

unsigned
smtp_server_drain(struct smtp_server *srv)
{
	struct smtp_session *s, *next;

	srv->draining = true;
	for (s = srv->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->busy || s->state == ST_QUIT)
			continue;
		if (s->state == ST_CMD && !s->have_mail) {
			reply(s, "421 4.3.2 %s Service shutting down",
			    srv->hostname);
			s->state = ST_QUIT;
			bufferevent_disable(s->bev, EV_READ);
		}
	}
	return srv->nsessions;
}

void
smtp_server_init(struct smtp_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, unsigned nworkers,
    struct tls_server *tls)
{
	const char *err;

	memset(srv, 0, sizeof(*srv));
	srv->tls = tls;
	srv->fail_delay_ms = (unsigned)config_get_uint(cfg, "auth_fail_delay");
	srv->base = base;
	srv->jobs = jobs;
	srv->dir_jobs = jobs;	/* serve gives directory work its own */
	srv->cfg = cfg;
	srv->hostname = xstrdup(config_get(cfg, "hostname"));
	if (srv->hostname[0] == '\0') {
		char host[256] = "localhost";

		gethostname(host, sizeof(host) - 1);
		free(srv->hostname);
		srv->hostname = xstrdup(host);
	}
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
	srv->timeout = (unsigned)config_get_uint(cfg, "smtp_timeout");
	if (srv->timeout == 0)
		srv->timeout = SMTP_TIMEOUT;
	if (nworkers == 0)
		nworkers = 1;
	srv->max_conn = (unsigned)((config_get_uint(cfg, "smtp_max_connections")
	    + nworkers - 1) / nworkers);
	/* Counted per worker. Which worker accepts a connection is up to
	 * the kernel, so a share of limit/nworkers would refuse a client
	 * well below the limit when the spread is uneven (100 sessions from
	 * one host did hit it): each worker allows the whole limit. */
	srv->max_conn_per_ip = (unsigned)config_get_uint(cfg,
	    "smtp_max_connections_per_ip");
}

void
smtp_server_deinit(struct smtp_server *srv)
{
	struct smtp_ipcount *c, *next;

	/* Sessions still open after the drain grace period. */
	while (srv->sessions != NULL) {
		srv->sessions->busy = false;
		session_free(srv->sessions);
	}
	for (c = srv->ips; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(srv->hostname);
	free(srv->queue_dir);
	free(srv->spool_dir);
}
