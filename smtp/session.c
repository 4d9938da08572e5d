/*
 * session.c: one SMTP session (RFC 5321, with RFC 1870 SIZE, RFC 2920
 * PIPELINING, RFC 6152 8BITMIME, RFC 2034 ENHANCEDSTATUSCODES, RFC 6531
 * SMTPUTF8, RFC 3030 CHUNKING): the connection on lib/session (greeting,
 * reading command lines, DATA and BDAT, timeout, drain, cleanup), the
 * command table, HELO/EHLO, RSET, NOOP, QUIT, VRFY, HELP and STARTTLS
 * (RFC 3207), and the server's set-up. MAIL and RCPT are in cmd_mail.c,
 * DATA and BDAT in cmd_data.c, AUTH in cmd_auth.c; LMTP (RFC 2033), the
 * same session on lmtp_listen, in lmtp.c.
 *
 * Trust: every byte from the client is hostile. Command lines are bounded
 * (SMTP_LINE_MAX), as are recipients, errors, message size and time.
 * Commands are handled strictly in order; a command that needs the
 * directory or the disk parks the session (no further input is read)
 * until its job is done, so pipelined clients get their replies in order.
 */
#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/deliver/cut.h"
#include "lib/milter/milter.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"
#include "lib/smtp/parse.h"
#include "lib/trust/srs.h"
#include "lib/trust/dmarc_report.h"
#include "lib/trust/domain_policy.h"
#include "smtp/smtp-private.h"
#include "smtp/smtp.h"

void
smtp_transaction_reset(struct smtp_session *s)
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
	s->requiretls = false;
	s->too_big = false;
	s->spool_failed = false;
	s->bdat_failed = false;
	s->pending_cr = false;
	s->data_deadline_ms = 0;
	s->qid[0] = '\0';
	s->dmarc_rcpt = 0;
	smtp_milter_close(s);
	spool_reset(&s->body);
	xfree(&s->lmtp_status);
}

/* ---- commands ---- */

void
smtp_helo_set(struct smtp_session *s, const char *arg, bool esmtp)
{
	smtp_transaction_reset(s);
	free(s->helo);
	s->helo = xstrndup(arg, strcspn(arg, " "));
	/* The HELO name goes into a header: keep it printable. */
	for (char *p = s->helo; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e ||
		    *p == '(' || *p == ')')
			*p = '?';
	s->esmtp = esmtp;
	smtp_rhsbl_helo(s, s->helo);	/* answers awaited at RCPT */
}

static void
cmd_helo_ehlo(struct smtp_session *s, const char *arg, bool esmtp)
{
	struct smtp_server *srv = s->srv;

	if (*arg == '\0') {
		reply_error(s, "501 5.5.4 Syntax: %s hostname",
		    esmtp ? "EHLO" : "HELO");
		return;
	}
	smtp_helo_set(s, arg, esmtp);
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
	if (s->base.tls)
		reply(s, "250-REQUIRETLS");
	if (smtp_auth_allowed(s))
		reply(s, session_cram_ok(&s->base) ?
		    "250-AUTH PLAIN LOGIN CRAM-MD5" : "250-AUTH PLAIN LOGIN");
	reply(s, "250 CHUNKING");
}

static void
cmd_rset(struct smtp_session *s, const char *arg)
{
	smtp_transaction_reset(s);
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

/* ---- STARTTLS (RFC 3207) ---- */

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
	smtp_transaction_reset(s);
	xfree(&s->helo);
	s->esmtp = false;
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

static void
cmd_lhlo(struct smtp_session *s, const char *arg)
{
	if (!s->lmtp) {
		cmd_unknown(s, arg);
		return;
	}
	smtp_cmd_lhlo(s, arg);
}

/* The command table, indexed by lib/smtp's verb. */
static void (*const commands[])(struct smtp_session *, const char *) = {
	[SMTP_UNKNOWN] = cmd_unknown,
	[SMTP_HELO] = cmd_helo,
	[SMTP_EHLO] = cmd_ehlo,
	[SMTP_MAIL] = smtp_cmd_mail,
	[SMTP_RCPT] = smtp_cmd_rcpt,
	[SMTP_DATA] = smtp_cmd_data,
	[SMTP_BDAT] = smtp_cmd_bdat,
	[SMTP_RSET] = cmd_rset,
	[SMTP_NOOP] = cmd_noop,
	[SMTP_QUIT] = cmd_quit,
	[SMTP_VRFY] = cmd_vrfy,
	[SMTP_HELP] = cmd_help,
	[SMTP_AUTH] = smtp_cmd_auth,
	[SMTP_STARTTLS] = cmd_starttls,
	[SMTP_HTTP] = cmd_http,
	[SMTP_LHLO] = cmd_lhlo,
};

static void
dispatch(struct smtp_session *s, char *line, size_t len)
{
	const char *arg;
	enum smtp_verb v;

	if (sasl_active(&s->sasl)) {
		/* a continuation line during AUTH (RFC 4954 4) */
		session_sasl_step(&s->base, &s->sasl, &smtp_sasl_words, line);
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		reply_error(s, "500 5.5.2 Error: NUL character in command");
		return;
	}
	if (s->xmove != NULL) {
		smtp_xmove_line(s, line);
		return;
	}
	if (s->lmtp && strncasecmp(line, "XMOVE", 5) == 0 &&
	    (line[5] == ' ' || line[5] == '\0')) {
		smtp_cmd_xmove(s, line[5] == ' ' ? line + 6 : line + 5);
		return;
	}
	v = smtp_verb(line, &arg);
	if ((size_t)v >= sizeof(commands) / sizeof(commands[0]) ||
	    commands[v] == NULL)
		v = SMTP_UNKNOWN;
	if (s->lmtp && lmtp_refuses(s, v))
		return;
	commands[v](s, arg);
}

/* ---- input ---- */

/* The command lines, DATA and BDAT (lib/session calls this while no job
 * runs). Returns whether a command line is partly buffered. */
static bool
smtp_process(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;
	struct evbuffer *in = session_input(base);

	while (!base->busy && !base->quit && !session_output_full(base)) {
		if (s->state == ST_DATA) {
			if (!smtp_read_data(s, in))
				break;
			s->state = ST_CMD;
			smtp_start_delivery(s);
			continue;
		}
		if (s->state == ST_XMOVE_PUT) {
			if (!smtp_xmove_read(s, in))
				break;
			s->state = ST_CMD;
			smtp_xmove_put_done(s);
			continue;
		}
		if (s->state == ST_BDAT) {
			if (!smtp_read_bdat(s, in))
				break;
			s->state = ST_CMD;
			smtp_bdat_chunk_done(s);
			continue;
		}
		/* ST_CMD */
		{
			char *line;
			size_t n;
			int r = session_take_line(base, s->xmove != NULL ?
			    SMTP_XMOVE_LINE_MAX : SMTP_LINE_MAX, &line, &n);

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

	smtp_transaction_reset(s);
	sasl_reset(&s->sasl);
	free(s->helo);
	free(s->job_addr);
	free(s->job_milter_reply);
	free(s->auth_user);
	free(s->auth_maildir);
	smtp_xmove_free(s);
	smtp_dnsbl_end(s);
}

static void
smtp_greet(struct session *base)
{
	struct smtp_session *s = (struct smtp_session *)base;

	s->srv = base->srv->owner;
	/* LMTP (lmtp.c): a mode of this server, for MTAs handing mail in */
	s->lmtp = strcmp(base->listener->name, "lmtp") == 0;
	/* submission and submissions: AUTH required */
	s->submission = base->listener != &base->srv->listeners[0] &&
	    !s->lmtp;
	spool_init(&s->body, s->srv->spool_dir);
	smtp_dnsbl_start(s);
	reply(s, "220 %s %s petrel", s->srv->hostname,
	    s->lmtp ? "LMTP" : "ESMTP");
}

static const struct session_ops smtp_ops = {
	.size = sizeof(struct smtp_session), .proto = "smtp",
	.listeners = { "smtp", "submission", "submissions", "lmtp" },
	.implicit_tls = { false, false, true, false },
	.timeout_key = "smtp_timeout", .default_timeout = SMTP_TIMEOUT,
	.errors_max = SMTP_ERRORS_MAX,
	.too_many_errors = "421 4.7.0 Error: too many errors",
	.refusal = "421 4.7.0 Error: too many connections, try again later",
	.greet = smtp_greet, .process = smtp_process, .timeout = smtp_timeout,
	.drain = smtp_drain, .cleanup = smtp_cleanup,
	.login_job = smtp_auth_job, .login_done = smtp_auth_done,
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
	srv->deliver.mail_root = config_get(cfg, "mail_root");
	deliver_sieve_init(&srv->sieve, cfg, srv->hostname);
	srv->deliver.sieve = &srv->sieve;
	srv->srs_secret = srs_secret_load(config_get(cfg, "srs_secret"), &err);
	if (srv->srs_secret == NULL)
		fatal("%s", err);
	srv->deliver.srs_secret = srv->srs_secret;
	/* XMOVE (xmove.c): a peer in proxy_trusted_networks proves it
	 * knows proxy_secret; only the LMTP listener takes it */
	if (srv->sv.nproxy_nets > 0) {
		srv->xmove_secret = secret_load("proxy_secret",
		    config_get(cfg, "proxy_secret"), &err);
		if (srv->xmove_secret == NULL) {
			log_error("%s: XMOVE is refused", err);
			srv->xmove_secret = xstrdup("");
		}
	}
	srv->deliver.arc_seal = strcmp(config_get(cfg, "arc"), "seal") == 0;
	if (strcmp(config_get(cfg, "lmtp_cut_through"), "yes") == 0)
		srv->deliver.cut = srv->cut = deliver_cut_new(cfg,
		    srv->hostname);
	srv->deliver.srs_domain = config_get(cfg, "srs_domain")[0] != '\0' ?
	    config_get(cfg, "srs_domain") : srv->hostname;
	if (queue_dirs_make(srv->queue_dir, &err) < 0)
		fatal("%s", err);
	srv->rc.mail_root = config_get(cfg, "mail_root");
	srv->rc.delimiter = config_get(cfg, "recipient_delimiter");
	srv->rc.local_domain = config_get(cfg, "local_domain");
	srv->rc.catchall_first = strcmp(config_get(cfg, "catchall_order"),
	    "postfix") == 0;
	srv->size_limit = config_get_uint(cfg, "message_size_limit");
	srv->data_timeout = (unsigned)config_get_uint(cfg,
	    "smtp_data_timeout");
	srv->helo_required = strcmp(config_get(cfg, "smtp_helo_required"),
	    "yes") == 0;
	srv->strict_envelopes = strcmp(config_get(cfg,
	    "smtp_strict_envelopes"), "yes") == 0;
	if (milter_specs_parse(config_get(cfg, "milters"), &srv->milters,
	    &srv->nmilters, &err) < 0)
		fatal("milters: %s", err);
	srv->milter_accept = strcmp(config_get(cfg, "milter_default_action"),
	    "accept") == 0;
	srv->milter_timeout = (unsigned)config_get_uint(cfg, "milter_timeout");
	smtp_trust_init(srv, cfg);
	smtp_dnsbl_init(srv, cfg);
}

void
smtp_server_deinit(struct smtp_server *srv)
{
	session_server_deinit(&srv->sv);
	deliver_cut_free(&srv->cut);
	free(srv->srs_secret);
	if (srv->xmove_secret != NULL)
		explicit_bzero(srv->xmove_secret, strlen(srv->xmove_secret));
	free(srv->xmove_secret);
	dmarc_report_flush();
	free(srv->dmarc_report_db);
	free(srv->queue_dir);
	free(srv->spool_dir);
	milter_specs_free(srv->milters, srv->nmilters);
	smtp_dnsbl_deinit(srv);
	domain_policies_free(srv->policies);
}
