/*
 * cmd_auth.c: AUTH (RFC 4954) with PLAIN and LOGIN (and CRAM-MD5, RFC
 * 2195, when the directory has cleartext passwords), on submission only
 * and only over TLS (RFC 8314): the SMTP words of lib/session's SASL
 * exchange and the hooks of its login path (the authenticated address
 * and its maildir, kept for the sender ownership check of MAIL).
 *
 * Trust: the exchange and the password check are lib/session's and
 * lib/auth's; this file sees the user only once the password is
 * verified, and logs the address, never a payload.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lib/auth/login.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"
#include "smtp/smtp-private.h"

/* After query_login and the password check, on the job thread. */
int
smtp_auth_job(struct session *base, struct authc *ac, const struct dir_user *u)
{
	struct smtp_session *s = (struct smtp_session *)base;

	free(s->auth_user);
	s->auth_user = xstrdup(u->address);
	free(s->auth_maildir);
	s->auth_maildir = route_maildir_path(s->srv->rc.mail_root, u->maildir);
	return AUTH_OK;
}

void
smtp_auth_done(struct session *base, int result)
{
	struct smtp_session *s = (struct smtp_session *)base;

	if (result == AUTH_OK) {
		log_info("%016llx: client=%s, sasl_method=%s, "
		    "sasl_username=%s", SID(&s->base), s->base.peer,
		    s->sasl.last != NULL ? s->sasl.last : "PLAIN",
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

bool
smtp_auth_allowed(const struct smtp_session *s)
{
	/* Submission: AUTH only over TLS (RFC 8314, SPEC section 4). */
	return s->submission && s->base.tls;
}

static void
auth_error(struct session *base, const char *line)
{
	reply_error((struct smtp_session *)base, "%s", line);
}

const struct session_sasl_words smtp_sasl_words = {
	.challenge = "334 ",
	.aborted = "501 5.7.0 Authentication aborted",
	.bad = "501 5.5.2 Cannot decode response",
	.nomech = "535 5.7.8 Error: authentication mechanism not supported",
	.error = auth_error,
};

void
smtp_cmd_auth(struct smtp_session *s, const char *arg)
{
	char mech[32];
	const char *ir;
	size_t n = strcspn(arg, " ");

	if (!smtp_auth_allowed(s)) {
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
	session_sasl_start(&s->base, &s->sasl, &smtp_sasl_words,
	    SASL_MECH_PLAIN | SASL_MECH_LOGIN |
	    (session_cram_ok(&s->base) ? SASL_MECH_CRAM_MD5 : 0), mech, ir);
}
