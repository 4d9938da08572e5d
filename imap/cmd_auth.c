/*
 * cmd_auth.c: leaving the not-authenticated state: STARTTLS (RFC 3501
 * 6.2.1; input pipelined after it is dropped, CVE-2011-0411), LOGIN
 * (6.2.3) and AUTHENTICATE PLAIN (6.2.2, RFC 4959 SASL-IR) or CRAM-MD5
 * (RFC 2195, when the directory has cleartext passwords), and what a
 * login does on the job thread (the maildir, the quota) and then on the
 * loop (the tagged reply).
 *
 * Passwords: LOGIN's arguments and AUTHENTICATE's initial response live
 * in the parsed command, which session.c wipes (imap_cmd_wipe) before
 * freeing it; the copies handed to session_login_start() are wiped there
 * on every path; SASL response lines are wiped by the framer.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap-private.h"
#include "lib/auth/login.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"
#include "lib/session/session.h"

void
imap_cmd_starttls(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "STARTTLS takes no arguments");
		return;
	}
	if (s->base.tls) {
		imap_bad(s, "TLS is already active");
		return;
	}
	if (s->srv->sv.tls == NULL) {
		imap_no(s, "TLS is not available");
		return;
	}
	session_printf(&s->base, "%s OK Begin TLS negotiation now.\r\n",
	    c->tag);
	if (session_starttls(&s->base) < 0) {
		imap_logout(s);
		return;
	}
	/* Anything pipelined after STARTTLS was dropped with the plaintext
	 * buffer (CVE-2011-0411): the framer stopped right after this
	 * command's line and holds nothing of what followed. */
}

void
imap_cmd_login(struct imap_session *s, struct imap_cmd *c)
{
	const char *user, *pass;

	if (c->nargs != 2 || (user = imap_arg_astring(&c->args[0])) == NULL ||
	    (pass = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "LOGIN needs a user name and a password");
		return;
	}
	if (!session_plaintext_ok(&s->base)) {
		imap_no(s, "[PRIVACYREQUIRED] Plain-text login is not allowed "
		    "without TLS");
		return;
	}
	session_login_start(&s->base, xstrdup(user), xstrdup(pass));
}


static void
auth_error(struct session *base, const char *line)
{
	struct imap_session *s = (struct imap_session *)base;

	if (strncmp(line, "BAD ", 4) == 0)
		imap_bad(s, "%s", line + 4);
	else
		imap_no(s, "%s", line);
}

static const struct session_sasl_words sasl_words = {
	.challenge = "+ ",
	.aborted = "BAD Authentication cancelled",
	/* undecodable, or an authorization identity that is not the
	 * user's own: a failed authentication (no delay: no password was
	 * tried) */
	.bad = "[AUTHENTICATIONFAILED] Authentication failed.",
	.nomech = "Unsupported authentication mechanism",
	.error = auth_error,
};

void
imap_cmd_authenticate(struct imap_session *s, struct imap_cmd *c)
{
	const char *mech, *ir = NULL;

	if (c->nargs < 1 || c->nargs > 2 ||
	    (mech = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "AUTHENTICATE needs a mechanism");
		return;
	}
	if (strcasecmp(mech, "CRAM-MD5") == 0 && session_cram_ok(&s->base)) {
		/* RFC 2195: the server speaks first, no initial response */
		if (c->nargs == 2) {
			imap_bad(s, "CRAM-MD5 takes no initial response");
			return;
		}
		session_sasl_start(&s->base, &s->sasl, &sasl_words,
		    SASL_MECH_CRAM_MD5, mech, NULL);
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		imap_no(s, "Unsupported authentication mechanism");
		return;
	}
	if (!session_plaintext_ok(&s->base)) {
		imap_no(s, "[PRIVACYREQUIRED] Plain-text authentication is not "
		    "allowed without TLS");
		return;
	}
	if (c->nargs == 2 && (ir = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "Invalid initial response");
		return;
	}
	session_sasl_start(&s->base, &s->sasl, &sasl_words, SASL_MECH_PLAIN,
	    mech, ir);
}


void
imap_sasl_response(struct imap_session *s, const char *line)
{
	session_sasl_step(&s->base, &s->sasl, &sasl_words, line);
	if (!s->base.busy && !sasl_active(&s->sasl)) {
		imap_flush(s);
		imap_end_command(s);
	}
}

/* After a good password, on the job thread: the maildir, the quota,
 * the special-use folders. */
int
imap_login_job(struct session *base, struct authc *ac,
    const struct dir_user *u)
{
	struct imap_session *s = (struct imap_session *)base;

	free(s->login);
	s->login = xstrdup(u->address);
	free(s->maildir);
	s->maildir = route_maildir_path(s->srv->mail_root, u->maildir);
	if (s->maildir == NULL) {
		log_error("%016llx: user %s has an unusable maildir",
		    SID(&s->base), s->login);
		return AUTH_TEMPFAIL;
	}
	/* the quota came with the login reply */
	s->quota = s->base.login_quota;
	if (imap_prepare_maildir(s) < 0)
		return AUTH_TEMPFAIL;
	return AUTH_OK;
}

/* The outcome of LOGIN or AUTHENTICATE, on the loop. */
void
imap_login_done(struct session *base, int result)
{
	struct imap_session *s = (struct imap_session *)base;

	if (result == AUTH_OK) {
		str_t caps = STR_INIT;

		s->state = S_AUTH;
		s->logged_in = true;
		log_info("%016llx: imap login: user=<%s>, %s%s", SID(&s->base),
		    s->login, s->base.peer, s->base.tls ? ", TLS" : "");
		imap_capabilities(s, &caps);
		imap_ok(s, "[CAPABILITY %s] Logged in", str_c(&caps));
		str_free(&caps);
	} else if (result == AUTH_TEMPFAIL) {
		xfree(&s->login);
		imap_no(s, "[UNAVAILABLE] Temporary authentication failure, "
		    "try again later.");
	} else {
		xfree(&s->login);
		imap_no(s, "[AUTHENTICATIONFAILED] Authentication failed.");
	}
	imap_flush(s);
	imap_end_command(s);
}

/* A frontend: the user's backend session is open (caps: its
 * capabilities) and bytes are relayed from now on, or it is not (caps
 * NULL) and the session stays before login (lib/session). */
void
imap_proxied(struct session *base, const char *user, const char *caps)
{
	struct imap_session *s = (struct imap_session *)base;

	if (caps != NULL) {
		s->state = S_AUTH;
		if (caps[0] != '\0')
			imap_ok(s, "[CAPABILITY %s] Logged in", caps);
		else
			imap_ok(s, "Logged in");
	} else {
		imap_no(s, "[UNAVAILABLE] The mail server of this account "
		    "cannot be reached, try again later.");
	}
	imap_flush(s);
	imap_end_command(s);
}
