/*
 * session.c: POP3 (RFC 1939) with CAPA (RFC 2449: RESP-CODES, PIPELINING,
 * AUTH-RESP-CODE), STLS (RFC 2595), AUTH PLAIN (RFC 5034, RFC 4616) and
 * AUTH CRAM-MD5 (RFC 2195, when the directory has cleartext passwords).
 *
 * States: AUTHORIZATION -> TRANSACTION -> UPDATE (at QUIT only: deletions
 * and \Seen flags are applied then, never on a dropped connection).
 * The maildrop is locked against a second POP3 session (flock on a lock
 * file in the maildir: [IN-USE]) but not against IMAP. UIDL is the stable
 * part of the Maildir file name, unchanged by flag changes, or the form
 * Courier or Dovecot gave (pop3_uidl_format, lib/store/maildrop.h).
 *
 * Trust: client input is bounded (POP3_LINE_MAX, message numbers checked
 * against the listing); login and file work run on job threads; failed
 * logins are answered after a delay that grows per client address.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/auth/login.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/io/conn.h"
#include "lib/io/jobs.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/pop3/parse.h"
#include "lib/route/route.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"
#include "lib/store/maildrop.h"
#include "lib/tls/tls.h"
#include "pop3/pop3.h"

enum pop3_state { P_AUTH, P_TRANS };

enum pop3_job { J_RETR, J_QUIT };

/* Codes of login_run beyond enum auth_result. */
#define LOGIN_IN_USE 100

struct pop3_session {
	struct session base;	/* first: the connection (lib/session) */
	struct pop3_server *srv;
	enum pop3_state state;
	char *user;		/* USER argument */
	struct sasl sasl;	/* AUTH exchange in progress */

	/* the maildrop */
	char *login;		/* authenticated address */
	char *maildir;
	int lock_fd;
	struct maildir_msg *msgs;
	size_t nmsgs;
	bool *deleted, *seen;

	/* job in flight */
	struct job job;
	enum pop3_job job_kind;
	int job_result;
	size_t job_msg;
	long job_lines;		/* TOP: body lines, -1 = all */
	struct evbuffer *job_out;
};


#define reply(s, ...) session_reply(&(s)->base, __VA_ARGS__)
/* -ERR, counted: too many and the session ends. */
#define reply_err(s, ...) session_error(&(s)->base, "-ERR ", __VA_ARGS__)

/* ---- jobs ---- */

/* After a good password, on the job thread: lock and list the maildrop.
 * Returns an enum auth_result or LOGIN_IN_USE. */
static int
login_run(struct session *base, struct authc *ac, const struct dir_user *u)
{
	struct pop3_session *s = (struct pop3_session *)base;
	const char *err;

	free(s->login);
	s->login = xstrdup(u->address);
	free(s->maildir);
	s->maildir = route_maildir_path(s->srv->mail_root, u->maildir);
	if (s->maildir == NULL) {
		log_error("%016llx: user %s has an unusable maildir", SID(&s->base),
		    s->login);
		return AUTH_TEMPFAIL;
	}
	/* Lock the maildrop (RFC 2449 [IN-USE]). */
	switch (store_drop_lock(s->maildir, &s->lock_fd, &err)) {
	case 0:
		break;
	case 1:
		return LOGIN_IN_USE;
	default:
		log_error("%016llx: %s", SID(&s->base), err);
		return AUTH_TEMPFAIL;
	}
	if (s->lock_fd >= 0) {
		char who[32];

		snprintf(who, sizeof(who), "%016llx", SID(&s->base));
		maildir_clean_tmp(s->maildir, who);
	}
	/* INBOX's index: the UIDs IMAP sees */
	if (store_drop_list_uidl(s->maildir, s->srv->uidl_format, &s->msgs,
	    &s->nmsgs, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		return AUTH_TEMPFAIL;
	}
	s->deleted = xcalloc(s->nmsgs + 1, sizeof(bool));
	s->seen = xcalloc(s->nmsgs + 1, sizeof(bool));
	return AUTH_OK;
}

/* RETR / TOP: the message with CRLF line ends and dot-stuffing, built in
 * one buffer that the socket's queue takes over (no further copy). */
static void
retr_run(struct pop3_session *s)
{
	struct maildir_msg *m = &s->msgs[s->job_msg];
	struct evbuffer *out = evbuffer_new();
	str_t o = STR_INIT;
	char *data;
	const char *p, *end, *err;
	size_t len;
	bool in_body = false;
	long body_lines = 0;
	int r = store_drop_read(s->maildir, m, &data, &len, &err);

	s->job_out = out;
	if (r != 0) {
		if (r < 0)
			log_error("%016llx: %s", SID(&s->base), err);
		s->job_result = -1;
		return;
	}
	/* room for the usual case (LF files): one CR per 32 bytes */
	str_reserve(&o, len + len / 32 + 64);
	str_printf(&o, "+OK %llu octets\r\n", (unsigned long long)m->vsize);
	for (p = data, end = data + len; p < end;) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((lf != NULL ? lf : end) - p);

		if (lf != NULL && n > 0 && p[n - 1] == '\r')
			n--;
		if (in_body && s->job_lines >= 0 && body_lines++ >= s->job_lines)
			break;
		if (n > 0 && p[0] == '.')
			str_append_c(&o, '.');
		str_append_n(&o, p, n);
		str_append_n(&o, "\r\n", 2);
		if (!in_body && n == 0)
			in_body = true;
		p = lf != NULL ? lf + 1 : end;
	}
	free(data);
	str_append_n(&o, ".\r\n", 3);
	conn_add_str(out, &o);
	str_free(&o);
	s->job_result = 0;
}

/* UPDATE state (RFC 1939 6): deletions, then \Seen for what was read. */
static void
quit_run(struct pop3_session *s)
{
	const char *err;
	size_t gone = 0;

	/* expunged through INBOX's index; maildirsize lowered */
	s->job_result = store_drop_update(s->maildir, s->msgs, s->nmsgs,
	    s->deleted, s->seen, &gone, &err);
	if (s->job_result < 0)
		log_error("%016llx: update of %s: %s", SID(&s->base), s->maildir,
		    err);
	s->job_msg = gone;
	/* Unlock before the +OK: a client that reconnects at once must not
	 * find its own maildrop [IN-USE]. */
	if (s->lock_fd >= 0) {
		close(s->lock_fd);
		s->lock_fd = -1;
	}
}

static void
session_job_run(struct job *job, void *state)
{
	struct pop3_session *s = (struct pop3_session *)((char *)job -
	    offsetof(struct pop3_session, job));

	switch (s->job_kind) {
	case J_RETR:
		retr_run(s);
		break;
	case J_QUIT:
		quit_run(s);
		break;
	}
}

/* The outcome of a login (lib/session), on the loop. */
static void
login_done(struct session *base, int result)
{
	struct pop3_session *s = (struct pop3_session *)base;

	if (result == AUTH_OK) {
		s->state = P_TRANS;
		log_info("%016llx: pop3 login: user=<%s>, %s, messages=%zu",
		    SID(&s->base), s->login, s->base.peer, s->nmsgs);
		reply(s, "+OK Logged in, %zu messages", s->nmsgs);
	} else if (result == LOGIN_IN_USE) {
		log_info("%016llx: pop3 login: user=<%s>, maildrop in use",
		    SID(&s->base), s->login);
		reply_err(s, "[IN-USE] Mailbox is locked by another POP3 "
		    "session");
	} else if (result == AUTH_TEMPFAIL) {
		reply_err(s, "[SYS/TEMP] Temporary authentication failure, "
		    "try again later");
	} else {
		reply_err(s, "[AUTH] Authentication failed");
	}
}

/* A frontend: the user's backend session is open and bytes are relayed
 * from now on, or it is not (caps NULL; lib/session). */
static void
proxied(struct session *base, const char *user, const char *caps)
{
	struct pop3_session *s = (struct pop3_session *)base;

	if (caps != NULL) {
		s->state = P_TRANS;
		reply(s, "+OK Logged in");
	} else {
		reply_err(s, "[SYS/TEMP] The mail server of this account "
		    "cannot be reached, try again later");
	}
}

static void
session_job_done(struct job *job)
{
	struct pop3_session *s = (struct pop3_session *)((char *)job -
	    offsetof(struct pop3_session, job));

	switch (s->job_kind) {
	case J_RETR:
		if (!s->base.dead && s->job_result == 0) {
			if (s->job_lines < 0)
				s->seen[s->job_msg] = true;
			bufferevent_write_buffer(s->base.bev, s->job_out);
		} else if (!s->base.dead) {
			reply_err(s, "Message is gone");
		}
		evbuffer_free(s->job_out);
		s->job_out = NULL;
		break;
	case J_QUIT:
		log_info("%016llx: pop3 logout: user=<%s>, deleted=%zu",
		    SID(&s->base), s->login, s->job_msg);
		if (!s->base.dead) {
			if (s->job_result == 0)
				reply(s, "+OK Logging out, %zu deleted",
				    s->job_msg);
			else
				reply_err(s, "[SYS/TEMP] Some deleted messages "
				    "not removed");
		}
		session_quit(&s->base);
		break;
	}
	session_job_finished(&s->base);
}

static void
submit(struct pop3_session *s, enum pop3_job kind)
{
	s->job_kind = kind;
	s->job.run = session_job_run;
	s->job.done = session_job_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* ---- commands ---- */

/* A message number argument: 1..nmsgs, not deleted. */
static bool
msgno(struct pop3_session *s, const char *arg, size_t *idx_r)
{
	size_t v;

	switch (pop3_msgno(arg, s->nmsgs, &v)) {
	case POP3_MSGNO_SYNTAX:
		reply_err(s, "Invalid message number");
		return false;
	case POP3_MSGNO_RANGE:
		reply_err(s, "No such message");
		return false;
	case POP3_MSGNO_OK:
		break;
	}
	if (s->deleted[v - 1]) {
		reply_err(s, "Message %zu already deleted", v);
		return false;
	}
	*idx_r = v - 1;
	return true;
}

static void
cmd_capa(struct pop3_session *s, char *arg)
{
	reply(s, "+OK Capability list follows");
	reply(s, "CAPA");
	reply(s, "TOP");
	reply(s, "UIDL");
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	if (s->state == P_AUTH) {
		if (session_plaintext_ok(&s->base)) {
			reply(s, "USER");
			reply(s, session_cram_ok(&s->base) ?
			    "SASL PLAIN CRAM-MD5" : "SASL PLAIN");
		} else if (session_cram_ok(&s->base)) {
			reply(s, "SASL CRAM-MD5");
		}
		if (!s->base.tls && s->srv->sv.tls != NULL)
			reply(s, "STLS");
	}
	reply(s, "IMPLEMENTATION petrel");
	reply(s, ".");
}

static void
cmd_user(struct pop3_session *s, char *arg)
{
	if (!session_plaintext_ok(&s->base)) {
		reply_err(s, "[AUTH] Plaintext authentication disallowed "
		    "without TLS (use STLS)");
		return;
	}
	if (*arg == '\0') {
		reply_err(s, "USER needs a name");
		return;
	}
	free(s->user);
	s->user = xstrdup(arg);
	reply(s, "+OK");
}

static void
cmd_pass(struct pop3_session *s, char *arg)
{
	if (s->user == NULL) {
		reply_err(s, "USER first");
		return;
	}
	session_login_start(&s->base, s->user, xstrdup(arg));
	s->user = NULL;
}

static void
auth_error(struct session *base, const char *line)
{
	reply_err((struct pop3_session *)base, "%s", line);
}

static const struct session_sasl_words sasl_words = {
	.challenge = "+ ",
	.aborted = "Authentication aborted",
	.bad = "[AUTH] Invalid SASL response",
	.nomech = "Unsupported authentication mechanism",
	.error = auth_error,
};

static void
cmd_auth(struct pop3_session *s, char *arg)
{
	char *mech, *resp;

	pop3_auth_split(arg, &mech, &resp);
	if (*mech == '\0') {
		/* RFC 5034 4: list the mechanisms. */
		reply(s, "+OK");
		if (session_plaintext_ok(&s->base))
			reply(s, "PLAIN");
		if (session_cram_ok(&s->base))
			reply(s, "CRAM-MD5");
		reply(s, ".");
		return;
	}
	if (strcasecmp(mech, "CRAM-MD5") == 0 && session_cram_ok(&s->base)) {
		/* RFC 2195: the server speaks first, no initial response */
		if (resp != NULL) {
			reply_err(s, "[AUTH] Invalid SASL response");
			return;
		}
		session_sasl_start(&s->base, &s->sasl, &sasl_words,
		    SASL_MECH_CRAM_MD5, mech, NULL);
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		reply_err(s, "Unsupported authentication mechanism");
		return;
	}
	if (!session_plaintext_ok(&s->base)) {
		reply_err(s, "[AUTH] Plaintext authentication disallowed "
		    "without TLS (use STLS)");
		return;
	}
	session_sasl_start(&s->base, &s->sasl, &sasl_words, SASL_MECH_PLAIN,
	    mech, resp);
}

static void
cmd_stls(struct pop3_session *s, char *arg)
{
	if (s->base.tls) {
		reply_err(s, "Already using TLS");
		return;
	}
	if (s->srv->sv.tls == NULL) {
		reply_err(s, "TLS not available");
		return;
	}
	reply(s, "+OK Begin TLS negotiation");
	if (session_starttls(&s->base) < 0)
		return;
	free(s->user);
	s->user = NULL;
}

/* XCLIENT ADDR=a PORT=p: a frontend (proxy_trusted_networks) names its
 * client before login; refused to anyone else. */
static void
cmd_xclient(struct pop3_session *s, char *arg)
{
	char *ip = NULL, *tok, *save = NULL;
	unsigned port = 0;

	if (!s->base.proxy_trusted) {
		reply_err(s, "XCLIENT not allowed from this address");
		return;
	}
	for (tok = strtok_r(arg, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		if (strncasecmp(tok, "ADDR=", 5) == 0)
			ip = tok + 5;
		else if (strncasecmp(tok, "PORT=", 5) == 0)
			port = (unsigned)strtoul(tok + 5, NULL, 10) & 0xffff;
	}
	if (ip == NULL || !session_set_client(&s->base, ip, port)) {
		reply_err(s, "XCLIENT needs ADDR=address");
		return;
	}
	reply(s, "+OK");
}

static void
cmd_stat(struct pop3_session *s, char *arg)
{
	size_t n = 0;
	uint64_t bytes = 0;

	for (size_t i = 0; i < s->nmsgs; i++)
		if (!s->deleted[i]) {
			n++;
			bytes += s->msgs[i].vsize;
		}
	reply(s, "+OK %zu %llu", n, (unsigned long long)bytes);
}

/* RFC 1939 7: a unique-id is 1 to 70 characters in 0x21..0x7E. Maildir
 * names that do not qualify (long host names, names made by other
 * programs) are given a stable digest of the name instead. A UIDL in
 * another server's form (m->uidl) is answered as that server gave it. */
static const char *
uidl_of(const struct maildir_msg *m, char buf[72])
{
	unsigned char d[32];
	bool ok = m->key_len > 0 && m->key_len <= 70;

	if (m->uidl != NULL)
		return m->uidl;
	for (size_t i = 0; ok && i < m->key_len; i++)
		if ((unsigned char)m->name[i] < 0x21 ||
		    (unsigned char)m->name[i] > 0x7e)
			ok = false;
	if (ok) {
		snprintf(buf, 72, "%.*s", (int)m->key_len, m->name);
		return buf;
	}
	crypto_hmac_sha256("petrel-uidl", 11, m->name, m->key_len, d);
	for (size_t i = 0; i < 20; i++)
		snprintf(buf + 2 * i, 3, "%02x", d[i]);
	return buf;
}

static void
cmd_list(struct pop3_session *s, char *arg, bool uidl)
{
	char ubuf[72];

	size_t i;

	if (*arg != '\0') {
		if (!msgno(s, arg, &i))
			return;
		if (uidl)
			reply(s, "+OK %zu %s", i + 1, uidl_of(&s->msgs[i], ubuf));
		else
			reply(s, "+OK %zu %llu", i + 1,
			    (unsigned long long)s->msgs[i].vsize);
		return;
	}
	reply(s, "+OK");
	for (i = 0; i < s->nmsgs; i++) {
		if (s->deleted[i])
			continue;
		if (uidl)
			reply(s, "%zu %s", i + 1, uidl_of(&s->msgs[i], ubuf));
		else
			reply(s, "%zu %llu", i + 1,
			    (unsigned long long)s->msgs[i].vsize);
	}
	reply(s, ".");
}

static void
cmd_retr(struct pop3_session *s, char *arg, bool top)
{
	size_t i;

	if (!msgno(s, arg, &i))
		return;
	s->job_lines = -1;
	if (top) {
		if (pop3_top_lines(arg, &s->job_lines) < 0) {
			reply_err(s, "Syntax: TOP msg n");
			return;
		}
	} else if (strchr(arg, ' ') != NULL) {
		reply_err(s, "Syntax: RETR msg");
		return;
	}
	s->job_msg = i;
	submit(s, J_RETR);
}

static void
cmd_dele(struct pop3_session *s, char *arg)
{
	size_t i;

	if (!msgno(s, arg, &i))
		return;
	s->deleted[i] = true;
	reply(s, "+OK Marked to be deleted");
}

static void
cmd_rset(struct pop3_session *s, char *arg)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		s->deleted[i] = false;
	reply(s, "+OK");
}

static void
cmd_quit(struct pop3_session *s, char *arg)
{
	if (s->state == P_TRANS) {
		submit(s, J_QUIT);
		return;
	}
	reply(s, "+OK Bye");
	session_quit(&s->base);
}

static void
cmd_uidl(struct pop3_session *s, char *arg)
{
	cmd_list(s, arg, true);
}

static void
cmd_list_sizes(struct pop3_session *s, char *arg)
{
	cmd_list(s, arg, false);
}

static void
cmd_retr_msg(struct pop3_session *s, char *arg)
{
	cmd_retr(s, arg, false);
}

static void
cmd_top(struct pop3_session *s, char *arg)
{
	cmd_retr(s, arg, true);
}

static void
cmd_noop(struct pop3_session *s, char *arg)
{
	reply(s, "+OK");
}

/* Where a command may run (bits). */
#define IN_AUTH		0x1	/* AUTHORIZATION */
#define IN_TRANS	0x2	/* TRANSACTION */

static const struct pop3_command {
	void (*fn)(struct pop3_session *s, char *arg);
	unsigned states;
} commands[] = {
	[POP3_CAPA] = { cmd_capa, IN_AUTH | IN_TRANS },
	[POP3_QUIT] = { cmd_quit, IN_AUTH | IN_TRANS },
	[POP3_USER] = { cmd_user, IN_AUTH },
	[POP3_PASS] = { cmd_pass, IN_AUTH },
	[POP3_AUTH] = { cmd_auth, IN_AUTH },
	[POP3_STLS] = { cmd_stls, IN_AUTH },
	[POP3_NOOP] = { cmd_noop, IN_TRANS },
	[POP3_STAT] = { cmd_stat, IN_TRANS },
	[POP3_LIST] = { cmd_list_sizes, IN_TRANS },
	[POP3_UIDL] = { cmd_uidl, IN_TRANS },
	[POP3_RETR] = { cmd_retr_msg, IN_TRANS },
	[POP3_TOP] = { cmd_top, IN_TRANS },
	[POP3_DELE] = { cmd_dele, IN_TRANS },
	[POP3_RSET] = { cmd_rset, IN_TRANS },
	[POP3_XCLIENT] = { cmd_xclient, IN_AUTH },
};

static void
dispatch(struct pop3_session *s, char *line, size_t len)
{
	char *arg;
	enum pop3_verb verb;
	unsigned in = s->state == P_AUTH ? IN_AUTH : IN_TRANS;

	if (sasl_active(&s->sasl)) {
		session_sasl_step(&s->base, &s->sasl, &sasl_words, line);
		return;
	}
	verb = pop3_verb(line, len, &arg);
	if (verb == POP3_NUL) {
		reply_err(s, "NUL character in command");
		return;
	}
	if (verb != POP3_UNKNOWN && (commands[verb].states & in)) {
		commands[verb].fn(s, arg);
		return;
	}
	reply_err(s, "Unknown command or not allowed %s login",
	    s->state == P_AUTH ? "before" : "after");
}

/* Command lines (lib/session calls this while no job runs). Returns
 * whether a command line is partly buffered. */
static bool
pop3_process(struct session *base)
{
	struct pop3_session *s = (struct pop3_session *)base;

	while (!base->busy && !base->quit && !session_output_full(base)) {
		char *line;
		size_t n;
		int r = session_take_line(base, POP3_LINE_MAX, &line, &n);

		if (r == 0)
			break;
		if (r < 0) {
			sasl_reset(&s->sasl);
			reply_err(s, "Line too long");
			continue;
		}
		dispatch(s, line, n);
		session_line_free(line, n);
	}
	return evbuffer_get_length(session_input(base)) > 0;
}

static void
pop3_timeout(struct session *base)
{
	reply((struct pop3_session *)base, "-ERR Disconnected for inactivity");
}

static bool
pop3_drain(struct session *base)
{
	/* Never in UPDATE: a shutdown is not a QUIT (RFC 1939 6). */
	reply((struct pop3_session *)base,
	    "-ERR [SYS/TEMP] Server shutting down");
	return true;
}

static void
pop3_cleanup(struct session *base)
{
	struct pop3_session *s = (struct pop3_session *)base;

	if (s->lock_fd >= 0)
		close(s->lock_fd);	/* releases the flock */
	maildir_msgs_free(&s->msgs, s->nmsgs);
	sasl_reset(&s->sasl);
	free(s->deleted);
	free(s->seen);
	free(s->user);
	free(s->login);
	free(s->maildir);
}

static void
pop3_greet(struct session *base)
{
	struct pop3_session *s = (struct pop3_session *)base;

	s->srv = base->srv->owner;
	s->lock_fd = -1;
	reply(s, "+OK %s petrel POP3 ready", base->srv->hostname);
}

static const struct session_ops pop3_ops = {
	.size = sizeof(struct pop3_session), .proto = "pop3",
	.listeners = { "pop3", "pop3s" }, .implicit_tls = { false, true },
	.timeout_key = "pop3_timeout", .login_timeout = true,
	.errors_max = POP3_ERRORS_MAX,
	.too_many_errors = "-ERR Too many errors, closing",
	.refusal = "-ERR [SYS/TEMP] Too many connections, try again later",
	.greet = pop3_greet, .process = pop3_process, .timeout = pop3_timeout,
	.drain = pop3_drain, .cleanup = pop3_cleanup,
	.login_job = login_run, .login_done = login_done,
	.proxied = proxied, .backend_port_field = 2,
};

void
pop3_server_init(struct pop3_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	srv->mail_root = config_get(cfg, "mail_root");
	if (store_uidl_format_parse(config_get(cfg, "pop3_uidl_format"),
	    &srv->uidl_format) < 0)
		fatal("pop3_uidl_format: unknown value");
	session_server_init(&srv->sv, &pop3_ops, srv, base, jobs, cfg, tls);
}

void
pop3_server_deinit(struct pop3_server *srv)
{
	session_server_deinit(&srv->sv);
}
