/*
 * session.c: POP3 (RFC 1939) with CAPA (RFC 2449: RESP-CODES, PIPELINING,
 * AUTH-RESP-CODE), STLS (RFC 2595), AUTH PLAIN (RFC 5034, RFC 4616).
 *
 * States: AUTHORIZATION -> TRANSACTION -> UPDATE (at QUIT only: deletions
 * and \Seen flags are applied then, never on a dropped connection).
 * The maildrop is locked against a second POP3 session (flock on a lock
 * file in the maildir: [IN-USE]) but not against IMAP. UIDL is the stable
 * part of the Maildir file name, unchanged by flag changes.
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
#include "lib/route/route.h"
#include "lib/store/maildrop.h"
#include "lib/tls/tls.h"
#include "pop3/pop3.h"

enum pop3_state { P_AUTH, P_TRANS, P_QUIT };

enum pop3_job { J_LOGIN, J_RETR, J_QUIT };

struct pop3_session {
	struct pop3_server *srv;
	struct bufferevent *bev;
	struct pop3_session *next, *prev;
	char ip[64];
	char peer[80];
	unsigned long sid;
	enum pop3_state state;
	bool tls, loopback;
	bool busy, dead;
	bool skip_line;
	unsigned errors;
	char *user;		/* USER argument */
	bool sasl_wait;		/* AUTH PLAIN without initial response */
	struct event *delay_ev;	/* failed-login delay */
	struct event *close_ev;	/* waiting for TLS output to drain */
	struct event *line_ev;	/* deadline for a partial command line */

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
	char *job_login, *job_pass;
	int job_result;		/* J_LOGIN: enum auth_result or -1 in use */
	size_t job_msg;
	long job_lines;		/* TOP: body lines, -1 = all */
	struct evbuffer *job_out;
};

static unsigned long next_sid;

static void session_process(struct pop3_session *s);
static void session_free(struct pop3_session *s);

__attribute__((format(printf, 2, 3)))
static void
reply(struct pop3_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

__attribute__((format(printf, 2, 3)))
static void
reply_err(struct pop3_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	evbuffer_add(out, "-ERR ", 5);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	if (++s->errors >= POP3_ERRORS_MAX) {
		reply(s, "-ERR Too many errors, closing");
		s->state = P_QUIT;
	}
}

static bool
plaintext_ok(struct pop3_session *s)
{
	const char *p = s->srv->plaintext;

	if (s->tls || strcmp(p, "yes") == 0)
		return true;
	return strcmp(p, "loopback") == 0 && s->loopback;
}

/* ---- jobs ---- */

static void
login_run(struct pop3_session *s, struct dir *dir)
{
	struct dir_user u;
	const char *err;

	s->job_result = auth_login(dir, s->job_login, s->job_pass, &u);
	if (s->job_result != AUTH_OK)
		return;
	free(s->login);
	s->login = xstrdup(u.address);
	free(s->maildir);
	s->maildir = route_maildir_path(config_get(s->srv->cfg, "mail_root"),
	    u.maildir);
	dir_user_clear(&u);
	if (s->maildir == NULL) {
		log_error("%lu: user %s has an unusable maildir", s->sid,
		    s->login);
		s->job_result = AUTH_TEMPFAIL;
		return;
	}
	/* Lock the maildrop (RFC 2449 [IN-USE]). */
	switch (store_drop_lock(s->maildir, &s->lock_fd, &err)) {
	case 0:
		break;
	case 1:
		s->job_result = -1;
		return;
	default:
		log_error("%lu: %s", s->sid, err);
		s->job_result = AUTH_TEMPFAIL;
		return;
	}
	if (s->lock_fd >= 0) {
		char who[32];

		snprintf(who, sizeof(who), "%lu", s->sid);
		maildir_clean_tmp(s->maildir, who);
	}
	/* INBOX's index: the UIDs IMAP sees */
	if (store_drop_list(s->maildir, &s->msgs, &s->nmsgs, &err) < 0) {
		log_error("%lu: %s", s->sid, err);
		s->job_result = AUTH_TEMPFAIL;
		return;
	}
	s->deleted = xcalloc(s->nmsgs + 1, sizeof(bool));
	s->seen = xcalloc(s->nmsgs + 1, sizeof(bool));
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
			log_error("%lu: %s", s->sid, err);
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
		log_error("%lu: update of %s: %s", s->sid, s->maildir, err);
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
	case J_LOGIN:
		login_run(s, state);
		break;
	case J_RETR:
		retr_run(s);
		break;
	case J_QUIT:
		quit_run(s);
		break;
	}
}

static void
delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;

	s->busy = false;
	event_free(s->delay_ev);
	s->delay_ev = NULL;
	if (s->dead) {
		session_free(s);
		return;
	}
	reply_err(s, "[AUTH] Authentication failed");
	session_process(s);
}

static void
login_done(struct pop3_session *s)
{
	if (s->job_pass != NULL) {
		explicit_bzero(s->job_pass, strlen(s->job_pass));
		xfree(&s->job_pass);
	}
	if (s->job_result == AUTH_OK) {
		auth_delay_success(s->ip);
		s->state = P_TRANS;
		log_info("%lu: pop3 login: user=<%s>, %s, messages=%zu",
		    s->sid, s->login, s->peer, s->nmsgs);
		if (!s->dead)
			reply(s, "+OK Logged in, %zu messages", s->nmsgs);
	} else if (s->job_result == -1) {
		log_info("%lu: pop3 login: user=<%s>, maildrop in use",
		    s->sid, s->login);
		if (!s->dead)
			reply_err(s, "[IN-USE] Mailbox is locked by another "
			    "POP3 session");
	} else if (s->job_result == AUTH_TEMPFAIL) {
		log_warn("%lu: pop3 login: user=<%s>: temporary failure",
		    s->sid, s->job_login);
		if (!s->dead)
			reply_err(s, "[SYS/TEMP] Temporary authentication "
			    "failure, try again later");
	} else {
		struct timeval tv;
		unsigned ms = auth_delay_failure(s->ip, s->srv->fail_delay_ms);

		log_info("%lu: pop3 login failed: user=<%s>, %s (delay %u ms)",
		    s->sid, s->job_login, s->peer, ms);
		xfree(&s->job_login);
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		s->busy = true;
		s->delay_ev = evtimer_new(s->srv->base, delay_done, s);
		evtimer_add(s->delay_ev, &tv);
		return;
	}
	xfree(&s->job_login);
}

static void
session_job_done(struct job *job)
{
	struct pop3_session *s = (struct pop3_session *)((char *)job -
	    offsetof(struct pop3_session, job));

	s->busy = false;
	switch (s->job_kind) {
	case J_LOGIN:
		login_done(s);
		break;
	case J_RETR:
		if (!s->dead && s->job_result == 0) {
			if (s->job_lines < 0)
				s->seen[s->job_msg] = true;
			bufferevent_write_buffer(s->bev, s->job_out);
		} else if (!s->dead) {
			reply_err(s, "Message is gone");
		}
		evbuffer_free(s->job_out);
		s->job_out = NULL;
		break;
	case J_QUIT:
		log_info("%lu: pop3 logout: user=<%s>, deleted=%zu", s->sid,
		    s->login, s->job_msg);
		if (!s->dead) {
			if (s->job_result == 0)
				reply(s, "+OK Logging out, %zu deleted",
				    s->job_msg);
			else
				reply_err(s, "[SYS/TEMP] Some deleted messages "
				    "not removed");
		}
		s->state = P_QUIT;
		break;
	}
	if (s->busy)
		return;		/* a login delay is running */
	if (s->dead) {
		session_free(s);
		return;
	}
	session_process(s);
}

static void
submit(struct pop3_session *s, enum pop3_job kind)
{
	s->job_kind = kind;
	s->busy = true;
	s->job.run = session_job_run;
	s->job.done = session_job_done;
	/* Logins query the directory: their own pool, so that a hung
	 * database cannot hold up the maildrop work of others. */
	jobs_submit(kind == J_LOGIN ? s->srv->dir_jobs : s->srv->jobs,
	    &s->job);
}

/* ---- commands ---- */

static void
start_login(struct pop3_session *s, char *login, char *pass)
{
	s->job_login = login;
	s->job_pass = pass;
	submit(s, J_LOGIN);
}

/* A message number argument: 1..nmsgs, not deleted. */
static bool
msgno(struct pop3_session *s, const char *arg, size_t *idx_r)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*arg)) {
		reply_err(s, "Invalid message number");
		return false;
	}
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ' ') || v == 0 ||
	    v > s->nmsgs) {
		reply_err(s, "No such message");
		return false;
	}
	if (s->deleted[v - 1]) {
		reply_err(s, "Message %lu already deleted", v);
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
		if (plaintext_ok(s)) {
			reply(s, "USER");
			reply(s, "SASL PLAIN");
		}
		if (!s->tls && s->srv->tls != NULL)
			reply(s, "STLS");
	}
	reply(s, "IMPLEMENTATION petrel");
	reply(s, ".");
}

static void
cmd_user(struct pop3_session *s, char *arg)
{
	if (!plaintext_ok(s)) {
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
	start_login(s, s->user, xstrdup(arg));
	s->user = NULL;
}

static void
sasl_plain(struct pop3_session *s, const char *b64)
{
	char *login, *pass;

	if (strcmp(b64, "*") == 0) {
		reply_err(s, "Authentication aborted");
		return;
	}
	if (sasl_plain_decode(b64, strlen(b64), &login, &pass) < 0) {
		reply_err(s, "[AUTH] Invalid SASL PLAIN response");
		return;
	}
	start_login(s, login, pass);
}

static void
cmd_auth(struct pop3_session *s, char *arg)
{
	char *mech = arg, *resp = strchr(arg, ' ');

	if (resp != NULL)
		*resp++ = '\0';
	if (*mech == '\0') {
		/* RFC 5034 4: list the mechanisms. */
		reply(s, "+OK");
		if (plaintext_ok(s))
			reply(s, "PLAIN");
		reply(s, ".");
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		reply_err(s, "Unsupported authentication mechanism");
		return;
	}
	if (!plaintext_ok(s)) {
		reply_err(s, "[AUTH] Plaintext authentication disallowed "
		    "without TLS (use STLS)");
		return;
	}
	if (resp == NULL || *resp == '\0') {
		reply(s, "+ ");
		s->sasl_wait = true;
		return;
	}
	sasl_plain(s, strcmp(resp, "=") == 0 ? "" : resp);
}

static void session_read(struct bufferevent *bev, void *arg);
static void session_write(struct bufferevent *bev, void *arg);
static void session_event(struct bufferevent *bev, short what, void *arg);

static void
cmd_stls(struct pop3_session *s, char *arg)
{
	struct bufferevent *tb;

	if (s->tls) {
		reply_err(s, "Already using TLS");
		return;
	}
	if (s->srv->tls == NULL) {
		reply_err(s, "TLS not available");
		return;
	}
	reply(s, "+OK Begin TLS negotiation");
	tb = tls_bev_starttls(s->srv->tls, s->srv->base, s->bev);
	if (tb == NULL) {
		s->state = P_QUIT;
		return;
	}
	s->bev = tb;
	s->tls = true;
	bufferevent_setcb(s->bev, session_read, session_write, session_event, s);
	conn_set_watermarks(s->bev);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	free(s->user);
	s->user = NULL;
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
 * programs) are given a stable digest of the name instead. */
static const char *
uidl_of(const struct maildir_msg *m, char buf[72])
{
	unsigned char d[32];
	bool ok = m->key_len > 0 && m->key_len <= 70;

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
	char *sp;

	if (!msgno(s, arg, &i))
		return;
	s->job_lines = -1;
	if (top) {
		char *end;

		sp = strchr(arg, ' ');
		if (sp == NULL || !isdigit((unsigned char)sp[1])) {
			reply_err(s, "Syntax: TOP msg n");
			return;
		}
		errno = 0;
		s->job_lines = strtol(sp + 1, &end, 10);
		if (*end != '\0' || errno != 0 || s->job_lines < 0) {
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
	s->state = P_QUIT;
}

static void
dispatch(struct pop3_session *s, char *line, size_t len)
{
	char *arg;
	size_t vlen;

	if (s->sasl_wait) {
		s->sasl_wait = false;
		sasl_plain(s, line);
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		reply_err(s, "NUL character in command");
		return;
	}
	vlen = strcspn(line, " ");
	arg = line + vlen;
	if (*arg == ' ')
		*arg++ = '\0';
	if (strcasecmp(line, "CAPA") == 0)
		cmd_capa(s, arg);
	else if (strcasecmp(line, "QUIT") == 0)
		cmd_quit(s, arg);
	else if (strcasecmp(line, "NOOP") == 0 && s->state == P_TRANS)
		reply(s, "+OK");
	else if (s->state == P_AUTH) {
		if (strcasecmp(line, "USER") == 0)
			cmd_user(s, arg);
		else if (strcasecmp(line, "PASS") == 0)
			cmd_pass(s, arg);
		else if (strcasecmp(line, "AUTH") == 0)
			cmd_auth(s, arg);
		else if (strcasecmp(line, "STLS") == 0)
			cmd_stls(s, arg);
		else
			reply_err(s, "Unknown command or not allowed before "
			    "login");
	} else {
		if (strcasecmp(line, "STAT") == 0)
			cmd_stat(s, arg);
		else if (strcasecmp(line, "LIST") == 0)
			cmd_list(s, arg, false);
		else if (strcasecmp(line, "UIDL") == 0)
			cmd_list(s, arg, true);
		else if (strcasecmp(line, "RETR") == 0)
			cmd_retr(s, arg, false);
		else if (strcasecmp(line, "TOP") == 0)
			cmd_retr(s, arg, true);
		else if (strcasecmp(line, "DELE") == 0)
			cmd_dele(s, arg);
		else if (strcasecmp(line, "RSET") == 0)
			cmd_rset(s, arg);
		else
			reply_err(s, "Unknown command or not allowed after "
			    "login");
	}
}

static void close_when_flushed(struct pop3_session *s);

static void
close_tick(evutil_socket_t fd, short what, void *arg)
{
	close_when_flushed(arg);
}

/* Free the session once its replies have reached the socket: with TLS
 * over STLS the bytes sit in the underlying bufferevent after the TLS
 * one has drained, so poll that briefly (bounded by the timeout). */
static void
close_when_flushed(struct pop3_session *s)
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
	struct pop3_session *s = arg;

	log_info("%lu: pop3: command line not completed in %u s, from %s",
	    s->sid, s->srv->timeout, s->peer);
	session_event(s->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, s);
}

static void
session_process(struct pop3_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (!s->busy && s->state != P_QUIT &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) < OUTPUT_MAX) {
		struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
		size_t n;
		char *line;

		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > POP3_LINE_MAX) {
				evbuffer_drain(in, evbuffer_get_length(in));
				s->sasl_wait = false;
				if (!s->skip_line)
					reply_err(s, "Line too long");
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
		if (n > POP3_LINE_MAX) {
			evbuffer_drain(in, n);
			s->sasl_wait = false;
			reply_err(s, "Line too long");
			continue;
		}
		line = xmalloc(n + 1);
		evbuffer_remove(in, line, n);
		conn_line_deadline(&s->line_ev, s->srv->base, false, 0, NULL,
		    NULL);
		n--;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		dispatch(s, line, n);
		explicit_bzero(line, n);
		free(line);
	}
	conn_line_deadline(&s->line_ev, s->srv->base, !s->busy &&
	    s->state != P_QUIT && evbuffer_get_length(in) > 0,
	    s->srv->timeout, line_expired, s);
	if (s->state == P_QUIT) {
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
	struct pop3_session *s = arg;

	if (s->state == P_QUIT && !s->busy)
		close_when_flushed(s);
	else if (!s->busy && s->state != P_QUIT)
		session_process(s);	/* output drained: read on */
}

static void
session_event(struct bufferevent *bev, short what, void *arg)
{
	struct pop3_session *s = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;		/* the TLS handshake completed */
	if (what & BEV_EVENT_TIMEOUT) {
		reply(s, "-ERR Disconnected for inactivity");
		s->state = P_QUIT;
		bufferevent_disable(bev, EV_READ);
		bufferevent_set_timeouts(bev, NULL, NULL);
		return;
	}
	if (s->busy) {
		s->dead = true;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

static void
session_free(struct pop3_session *s)
{
	struct pop3_server *srv = s->srv;

	if (s->busy) {
		s->dead = true;
		return;
	}
	log_info("%lu: pop3 disconnect from %s", s->sid, s->peer);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	srv->nsessions--;
	if (s->lock_fd >= 0)
		close(s->lock_fd);	/* releases the flock */
	if (s->delay_ev != NULL)
		event_free(s->delay_ev);
	if (s->close_ev != NULL)
		event_free(s->close_ev);
	if (s->line_ev != NULL)
		event_free(s->line_ev);
	maildir_msgs_free(&s->msgs, s->nmsgs);
	bufferevent_free(s->bev);
	free(s->deleted);
	free(s->seen);
	free(s->user);
	free(s->login);
	free(s->maildir);
	free(s->job_login);
	free(s->job_pass);
	free(s);
}

void
pop3_session_accept(struct pop3_server *srv, int fd, const struct sockaddr *sa,
    bool implicit_tls)
{
	struct pop3_session *s;
	struct timeval tv = { (time_t)srv->timeout, 0 };
	char ip[64];
	unsigned port;
	bool loopback;

	conn_peer(sa, ip, sizeof(ip), &port, &loopback);
	if (srv->draining || (implicit_tls && srv->tls == NULL)) {
		close(fd);
		return;
	}
	s = xmalloc(sizeof(*s));
	s->srv = srv;
	s->sid = ++next_sid;
	s->lock_fd = -1;
	s->loopback = loopback;
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->peer, sizeof(s->peer), "[%s]:%u", ip, port);
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
	srv->nsessions++;
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	bufferevent_setcb(s->bev, session_read, session_write, session_event, s);
	conn_set_watermarks(s->bev);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_info("%lu: pop3 connect from %s%s", s->sid, s->peer,
	    implicit_tls ? " (TLS)" : "");
	reply(s, "+OK %s petrel POP3 ready", srv->hostname);
}

unsigned
pop3_server_drain(struct pop3_server *srv)
{
	struct pop3_session *s, *next;

	srv->draining = true;
	for (s = srv->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->busy || s->state == P_QUIT)
			continue;
		/* Never in UPDATE: a shutdown is not a QUIT (RFC 1939 6). */
		reply(s, "-ERR [SYS/TEMP] Server shutting down");
		s->state = P_QUIT;
		bufferevent_disable(s->bev, EV_READ);
	}
	return srv->nsessions;
}

void
pop3_server_init(struct pop3_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	memset(srv, 0, sizeof(*srv));
	srv->base = base;
	srv->jobs = jobs;
	srv->dir_jobs = jobs;	/* serve gives directory work its own */
	srv->cfg = cfg;
	srv->tls = tls;
	srv->hostname = xstrdup(config_get(cfg, "hostname"));
	srv->mail_root = config_get(cfg, "mail_root");
	srv->plaintext = config_get(cfg, "allow_plaintext_auth");
	srv->fail_delay_ms = (unsigned)config_get_uint(cfg, "auth_fail_delay");
	srv->timeout = (unsigned)config_get_uint(cfg, "pop3_timeout");
}

void
pop3_server_deinit(struct pop3_server *srv)
{
	while (srv->sessions != NULL) {
		srv->sessions->busy = false;
		session_free(srv->sessions);
	}
	free(srv->hostname);
}
