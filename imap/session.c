/*
 * session.c: the IMAP connection: greeting, reading commands (lines and
 * literals, LITERAL+), the state machine of RFC 3501 3, CAPABILITY,
 * NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE PLAIN (SASL-IR), ID,
 * ENABLE, NAMESPACE and IDLE. Mailbox and message commands live in
 * cmd_*.c, one file per command family.
 *
 * A command is read whole (bounded: IMAP_LINE_MAX per line,
 * IMAP_LITERAL_MAX per literal, message_size_limit for APPEND) and
 * parsed on the loop thread; everything that touches the disk runs as a
 * job on a pool thread, which writes its responses into s->out. The
 * session reads no further input while a job runs, so a job owns the
 * session's state. A selected mailbox is synced after every command, so
 * changes by others are reported (untagged EXISTS, EXPUNGE, FETCH) before
 * the tagged reply; in IDLE, inotify triggers the sync.
 */
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "imap/imap-private.h"
#include "lib/auth/login.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/io/conn.h"
#include "lib/route/route.h"
#include "lib/session/session.h"
#include "lib/tls/tls.h"

enum job_kind { J_CMD, J_IDLE_SYNC };

static void submit(struct imap_session *s, enum job_kind kind);

/* LOGOUT, too many errors, a failed STARTTLS: close once flushed. */
static void
logout(struct imap_session *s)
{
	s->state = S_LOGOUT;
	session_quit(&s->base);
}

/* ---- responses ---- */

void
imap_untagged(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	str_append(&s->out, "* ");
	va_start(ap, fmt);
	str_vprintf(&s->out, fmt, ap);
	va_end(ap);
	str_append(&s->out, "\r\n");
}

void
imap_done(struct imap_session *s, const char *status, const char *fmt, ...)
{
	va_list ap;

	s->status = status;
	str_truncate(&s->text, 0);
	va_start(ap, fmt);
	str_vprintf(&s->text, fmt, ap);
	va_end(ap);
}

/* Write what the command produced, and its tagged reply unless it has
 * more to say. */
static void
flush_out(struct imap_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->base.bev);

	conn_add_str(out, &s->out);	/* a FETCH chunk: no copy */
	if (s->out.cap > 64 * 1024)
		str_free(&s->out);	/* idle sessions stay small */
	if (s->more || s->status == NULL)
		return;
	evbuffer_add_printf(out, "%s %s %s\r\n",
	    s->have_cmd && s->cmd.tag != NULL ? s->cmd.tag : "*", s->status,
	    str_c(&s->text));
	if (strcmp(s->status, "BAD") == 0) {
		if (++s->bad_in_row >= IMAP_BAD_MAX) {
			evbuffer_add_printf(out,
			    "* BYE Too many invalid commands\r\n");
			logout(s);
		}
	} else {
		s->bad_in_row = 0;
	}
	s->status = NULL;
	str_truncate(&s->text, 0);
}

static void
end_command(struct imap_session *s)
{
	if (s->cmd_state_free != NULL && s->cmd_state != NULL)
		s->cmd_state_free(s->cmd_state);
	s->cmd_state = NULL;
	s->cmd_state_free = NULL;
	s->cursor = 0;
	s->more = false;
	if (s->streaming) {
		bufferevent_setwatermark(s->base.bev, EV_WRITE, 0, 0);
		s->streaming = false;
	}
	if (s->have_cmd)
		imap_cmd_free(&s->cmd);
	s->have_cmd = false;
	s->def = NULL;
}

static void
capabilities(const struct imap_session *s, str_t *out)
{
	str_append(out, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE "
	    "UNSELECT");
	if (s->state == S_NOAUTH) {
		if (!s->base.tls && s->srv->sv.tls != NULL)
			str_append(out, " STARTTLS");
		if (session_plaintext_ok(&s->base))
			str_append(out, " AUTH=PLAIN");
		else
			str_append(out, " LOGINDISABLED");
	} else {
		str_append(out, " UIDPLUS MOVE CHILDREN SPECIAL-USE QUOTA");
	}
}

/* ---- commands on the loop thread ---- */

static void
cmd_capability(struct imap_session *s, struct imap_cmd *c)
{
	str_t caps = STR_INIT;

	if (c->nargs != 0) {
		imap_bad(s, "CAPABILITY takes no arguments");
		return;
	}
	capabilities(s, &caps);
	imap_untagged(s, "CAPABILITY %s", str_c(&caps));
	str_free(&caps);
	imap_ok(s, "Capability completed.");
}

static void
cmd_logout(struct imap_session *s, struct imap_cmd *c)
{
	imap_untagged(s, "BYE Logging out");
	imap_ok(s, "Logout completed.");
	if (s->logged_in) {
		log_info("%016llx: imap logout: user=<%s>", SID(&s->base), s->login);
		s->logged_out = true;
	}
	logout(s);
}

static void
cmd_id(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 1) {
		imap_bad(s, "ID takes one argument");
		return;
	}
	imap_untagged(s, "ID (\"name\" \"petrel\" \"version\" \"%s\")",
	    PETREL_VERSION);
	imap_ok(s, "ID completed.");
}

static void
cmd_enable(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs == 0) {
		imap_bad(s, "ENABLE needs capability names");
		return;
	}
	/* Nothing we offer needs enabling (RFC 5161: unknown names are
	 * ignored). */
	imap_untagged(s, "ENABLED");
	imap_ok(s, "Enabled.");
}

static void
cmd_namespace(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "NAMESPACE takes no arguments");
		return;
	}
	imap_untagged(s, "NAMESPACE ((\"\" \".\")) NIL NIL");
	imap_ok(s, "Namespace completed.");
}

static void
cmd_starttls(struct imap_session *s, struct imap_cmd *c)
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
		logout(s);
		return;
	}
	/* Anything pipelined after STARTTLS was dropped with the plaintext
	 * buffer (CVE-2011-0411). */
	str_truncate(&s->in, 0);
}

static void
cmd_login(struct imap_session *s, struct imap_cmd *c)
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

/* A SASL exchange ended without a login: the tagged reply. */
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

static void
cmd_authenticate(struct imap_session *s, struct imap_cmd *c)
{
	const char *mech, *ir = NULL;

	if (c->nargs < 1 || c->nargs > 2 ||
	    (mech = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "AUTHENTICATE needs a mechanism");
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

static void
sasl_response(struct imap_session *s, const char *line)
{
	session_sasl_step(&s->base, &s->sasl, &sasl_words, line);
	if (!s->base.busy && !sasl_active(&s->sasl)) {
		flush_out(s);
		end_command(s);
	}
}

static void
cmd_idle(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "IDLE takes no arguments");
		return;
	}
	if (s->state == S_SELECTED) {
		submit(s, J_IDLE_SYNC);
		return;
	}
	evbuffer_add(bufferevent_get_output(s->base.bev), "+ idling\r\n", 10);
	s->idling = true;
}

static void
idle_done(struct imap_session *s, const char *line)
{
	s->idling = false;
	if (s->sync_ev != NULL)
		evtimer_del(s->sync_ev);
	if (strcasecmp(line, "DONE") != 0)
		imap_bad(s, "Expected DONE");
	else
		imap_ok(s, "IDLE terminated.");
	flush_out(s);
	end_command(s);
}

static const struct imap_command commands[] = {
	{ "CAPABILITY", cmd_capability, IN_ANY | ON_LOOP },
	{ "NOOP", imap_cmd_noop, IN_ANY },
	{ "LOGOUT", cmd_logout, IN_ANY | ON_LOOP },
	{ "ID", cmd_id, IN_ANY | ON_LOOP },
	{ "STARTTLS", cmd_starttls, IN_NOAUTH | ON_LOOP },
	{ "LOGIN", cmd_login, IN_NOAUTH | ON_LOOP },
	{ "AUTHENTICATE", cmd_authenticate, IN_NOAUTH | ON_LOOP },
	{ "ENABLE", cmd_enable, IN_LOGGED | ON_LOOP },
	{ "NAMESPACE", cmd_namespace, IN_LOGGED | ON_LOOP },
	{ "IDLE", cmd_idle, IN_LOGGED | ON_LOOP },
	{ "SELECT", imap_cmd_select, IN_LOGGED },
	{ "EXAMINE", imap_cmd_select, IN_LOGGED },
	{ "CREATE", imap_cmd_create, IN_LOGGED },
	{ "DELETE", imap_cmd_delete, IN_LOGGED },
	{ "RENAME", imap_cmd_rename, IN_LOGGED },
	{ "SUBSCRIBE", imap_cmd_subscribe, IN_LOGGED },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, IN_LOGGED },
	{ "LIST", imap_cmd_list, IN_LOGGED },
	{ "LSUB", imap_cmd_lsub, IN_LOGGED },
	{ "STATUS", imap_cmd_status, IN_LOGGED },
	{ "APPEND", imap_cmd_append, IN_LOGGED },
	{ "GETQUOTAROOT", imap_cmd_getquotaroot, IN_LOGGED },
	{ "GETQUOTA", imap_cmd_getquota, IN_LOGGED },
	{ "SETQUOTA", imap_cmd_setquota, IN_LOGGED },
	{ "CHECK", imap_cmd_noop, IN_SELECTED },
	{ "CLOSE", imap_cmd_close, IN_SELECTED },
	{ "UNSELECT", imap_cmd_unselect, IN_SELECTED },
	{ "EXPUNGE", imap_cmd_expunge, IN_SELECTED },
	{ "SEARCH", imap_cmd_search, IN_SELECTED | NO_EXPUNGE },
	{ "FETCH", imap_cmd_fetch, IN_SELECTED | NO_EXPUNGE },
	{ "STORE", imap_cmd_store, IN_SELECTED | NO_EXPUNGE },
	{ "COPY", imap_cmd_copy, IN_SELECTED },
	{ "MOVE", imap_cmd_move, IN_SELECTED },
};

/* Commands that have a UID form (RFC 3501 6.4.8, RFC 4315, RFC 6851). */
static bool
has_uid_form(const char *name)
{
	return strcmp(name, "FETCH") == 0 || strcmp(name, "STORE") == 0 ||
	    strcmp(name, "SEARCH") == 0 || strcmp(name, "COPY") == 0 ||
	    strcmp(name, "MOVE") == 0 || strcmp(name, "EXPUNGE") == 0;
}

static unsigned
state_bit(enum imap_state st)
{
	switch (st) {
	case S_NOAUTH:
		return IN_NOAUTH;
	case S_AUTH:
		return IN_AUTH;
	case S_SELECTED:
		return IN_SELECTED;
	default:
		return 0;
	}
}

/* One complete command in s->in. */
static void
execute(struct imap_session *s)
{
	const char *err = NULL;
	const struct imap_command *def = NULL;

	s->have_cmd = true;
	if (imap_cmd_parse(s->in.data, s->in.len, &s->cmd, &err) < 0) {
		str_truncate(&s->in, 0);
		imap_bad(s, "%s", err != NULL ? err : "Syntax error");
		flush_out(s);
		end_command(s);
		return;
	}
	/* The arguments are copies: the input buffer can go (an APPEND's
	 * may be large; idle sessions should cost little). */
	if (s->in.cap > 4096)
		str_free(&s->in);
	else
		str_truncate(&s->in, 0);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, s->cmd.name) == 0)
			def = &commands[i];
	if (def == NULL || (s->cmd.uid && !has_uid_form(def->name))) {
		imap_bad(s, "Unknown command");
	} else if ((def->flags & state_bit(s->state)) == 0) {
		if (s->state == S_NOAUTH)
			imap_bad(s, "Log in first");
		else if (def->flags & IN_SELECTED)
			imap_bad(s, "No mailbox selected");
		else
			imap_bad(s, "Not allowed now");
	} else {
		s->def = def;
		if (def->flags & ON_LOOP) {
			def->fn(s, &s->cmd);
		} else {
			submit(s, J_CMD);
		}
	}
	if (s->base.busy || sasl_active(&s->sasl) || s->idling)
		return;
	flush_out(s);
	end_command(s);
}

/* ---- jobs ---- */

/* After a good password, on the job thread: the maildir, the quota,
 * the special-use folders. */
static int
login_run(struct session *base, struct dir *dir, const struct dir_user *u)
{
	struct imap_session *s = (struct imap_session *)base;
	const char *err;

	free(s->login);
	s->login = xstrdup(u->address);
	free(s->maildir);
	s->maildir = route_maildir_path(s->srv->mail_root, u->maildir);
	if (s->maildir == NULL) {
		log_error("%016llx: user %s has an unusable maildir",
		    SID(&s->base), s->login);
		return AUTH_TEMPFAIL;
	}
	if (dir_lookup_quota(dir, s->login, &s->quota, &err) < 0) {
		log_warn("%016llx: quota of %s: %s", SID(&s->base), s->login,
		    err);
		s->quota = 0;
	}
	if (imap_prepare_maildir(s) < 0)
		return AUTH_TEMPFAIL;
	return AUTH_OK;
}

/* The outcome of LOGIN or AUTHENTICATE, on the loop. */
static void
login_done(struct session *base, int result)
{
	struct imap_session *s = (struct imap_session *)base;

	if (result == AUTH_OK) {
		str_t caps = STR_INIT;

		s->state = S_AUTH;
		s->logged_in = true;
		log_info("%016llx: imap login: user=<%s>, %s%s", SID(&s->base),
		    s->login, s->base.peer, s->base.tls ? ", TLS" : "");
		capabilities(s, &caps);
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
	flush_out(s);
	end_command(s);
}

static void
job_run(struct job *job, void *state)
{
	struct imap_session *s = (struct imap_session *)((char *)job -
	    offsetof(struct imap_session, job));

	if (s->job_kind == J_IDLE_SYNC) {
		imap_sync_report(s, true);
		return;
	}
	s->def->fn(s, &s->cmd);
	if (s->state == S_SELECTED && !s->more && s->mb != NULL)
		imap_sync_report(s, (s->def->flags & NO_EXPUNGE) == 0 ||
		    s->cmd.uid);
}

static void
job_done(struct job *job)
{
	struct imap_session *s = (struct imap_session *)((char *)job -
	    offsetof(struct imap_session, job));

	if (s->base.dead) {
		session_job_finished(&s->base);
		return;
	}
	/* Watch the selected folder for changes (or stop watching). */
	if (s->watch != NULL && (s->state != S_SELECTED || s->mb == NULL ||
	    strcmp(imap_watch_path(s->watch), s->mb->path) != 0))
		imap_watch_release(s->srv, &s->watch);
	if (s->state == S_SELECTED && s->mb != NULL && s->watch == NULL)
		s->watch = imap_watch_add(s->srv, s->mb->path);

	if (s->job_kind == J_IDLE_SYNC) {
		/* untagged responses only; the first one starts the IDLE */
		flush_out(s);
		if (!s->idling) {
			session_printf(&s->base, "+ idling\r\n");
			s->idling = true;
		}
		if (s->changed)
			imap_session_changed(s);
		session_job_finished(&s->base);
		return;
	}
	flush_out(s);
	if (s->more) {
		/* a long FETCH: the next chunk is made while this one goes
		 * out, unless two are queued already; then when the queue is
		 * down to one (imap_writable, at the low watermark) */
		if (!s->streaming) {
			bufferevent_setwatermark(s->base.bev, EV_WRITE,
			    IMAP_FETCH_CHUNK, 0);
			s->streaming = true;
		}
		s->base.busy = false;
		if (evbuffer_get_length(session_output(&s->base)) <
		    2 * IMAP_FETCH_CHUNK)
			submit(s, J_CMD);
		if (!s->base.busy)
			session_job_finished(&s->base);
		return;
	}
	end_command(s);
	session_job_finished(&s->base);
}

static void
submit(struct imap_session *s, enum job_kind kind)
{
	s->job_kind = (int)kind;
	s->job.run = job_run;
	s->job.done = job_done;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* ---- change notification ---- */

static void
sync_tick(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;

	if (s->idling && !s->base.busy && !s->base.dead) {
		s->changed = false;
		submit(s, J_IDLE_SYNC);
	}
}

void
imap_session_changed(struct imap_session *s)
{
	struct timeval tv = { 0, 30000 };

	s->changed = true;
	if (!s->idling || s->base.busy)
		return;
	/* Debounce: one delivery is several directory events. */
	if (s->sync_ev == NULL)
		s->sync_ev = evtimer_new(s->srv->sv.base, sync_tick, s);
	if (!evtimer_pending(s->sync_ev, NULL))
		evtimer_add(s->sync_ev, &tv);
}

/* ---- input ---- */

/* Whether the command being assembled is an APPEND by a logged-in
 * client (only that may carry a literal up to message_size_limit). */
static bool
assembling_append(const struct imap_session *s)
{
	const char *p;
	size_t rest;

	if (s->in.len == 0 || s->state == S_NOAUTH)
		return false;
	p = memchr(s->in.data, ' ', s->in.len);
	if (p == NULL)
		return false;
	p++;
	rest = s->in.len - (size_t)(p - s->in.data);
	return rest > 7 && strncasecmp(p, "APPEND ", 7) == 0;
}

/* The tag at the start of buf, for answering a command that will not be
 * parsed; "*" when there is no plausible one. */
static char *
tag_of(const char *buf, size_t len)
{
	size_t n = 0;

	while (n < len && n < 64 && buf[n] != ' ' &&
	    (unsigned char)buf[n] > 0x20 && (unsigned char)buf[n] < 0x7f)
		n++;
	if (n == 0 || n >= 64 || n >= len)
		return xstrdup("*");
	return xstrndup(buf, n);
}

/* The tag of the command being read: from what is assembled, else from
 * the start of the pending input line. */
static char *
current_tag(struct imap_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->base.bev);
	char head[72];
	ev_ssize_t n;

	if (s->in.len > 0)
		return tag_of(s->in.data, s->in.len);
	n = evbuffer_copyout(in, head, sizeof(head));
	return tag_of(head, n > 0 ? (size_t)n : 0);
}

/*
 * Refuse the command being read, answering it now with its tag. What
 * the client still sends of it is dropped unread as commands: the rest
 * of the line (skip_line), LITERAL+ literals and the lines that follow
 * them (cmd_refused), so literal data never runs as commands.
 */
static void
refuse(struct imap_session *s, const char *status, const char *text)
{
	char *tag = current_tag(s);
	struct evbuffer *out = bufferevent_get_output(s->base.bev);

	evbuffer_add_printf(out, "%s %s %s\r\n", tag, status, text);
	free(tag);
	str_free(&s->in);
	s->cmd_refused = true;
	if (++s->bad_in_row >= IMAP_BAD_MAX) {
		evbuffer_add_printf(out, "* BYE Too many invalid commands\r\n");
		logout(s);
	}
}

/* A line of a refused command (CRLF removed): a LITERAL+ literal at its
 * end is dropped too; a line without one ends the command. A
 * synchronising literal is never sent: we give no "+". */
static void
refused_line(struct imap_session *s, const char *line, size_t n)
{
	uint64_t size;
	bool nonsync;

	if (imap_line_literal(line, n, &size, &nonsync) && nonsync) {
		if (size > IMAP_CMD_MAX) {
			/* not worth reading (RFC 7888 4 allows closing) */
			evbuffer_add_printf(bufferevent_get_output(s->base.bev),
			    "* BYE Literal too large\r\n");
			logout(s);
			return;
		}
		s->lit_left = size;
		s->lit_skip = true;
		return;
	}
	s->cmd_refused = false;
}

/* One input line (CRLF removed) of the command being assembled. */
static void
input_line(struct imap_session *s, char *line, size_t n)
{
	uint64_t size;
	bool nonsync;
	bool append;

	if (s->cmd_refused) {
		refused_line(s, line, n);
		return;
	}
	if (s->in.len + n > (assembling_append(s) ? s->srv->size_limit +
	    IMAP_CMD_MAX : IMAP_CMD_MAX)) {
		refuse(s, "BAD", "Command too long");
		refused_line(s, line, n);
		return;
	}
	str_append_n(&s->in, line, n);
	if (!imap_line_literal(line, n, &size, &nonsync)) {
		execute(s);
		return;
	}
	append = assembling_append(s);
	if (size > (append ? s->srv->size_limit : IMAP_LITERAL_MAX)) {
		if (append)
			refuse(s, "NO", "[TOOBIG] Message too large");
		else
			refuse(s, "BAD", "Literal too large");
		refused_line(s, line, n);
		return;
	}
	str_append(&s->in, "\r\n");
	s->lit_left = size;
	s->lit_skip = false;
	if (!nonsync)
		evbuffer_add(bufferevent_get_output(s->base.bev),
		    "+ Ready for literal data\r\n", 26);
}

/* A line over IMAP_LINE_MAX: answered at once, then dropped up to its
 * end (the last bytes are kept in the buffer so a literal announced at
 * its end is still seen). */
static void
line_too_long(struct imap_session *s)
{
	if (s->idling) {
		idle_done(s, "");	/* BAD, IDLE over */
	} else if (sasl_active(&s->sasl)) {
		sasl_reset(&s->sasl);
		imap_bad(s, "Authentication response too long");
		flush_out(s);
		end_command(s);
	} else if (!s->cmd_refused) {
		refuse(s, "BAD", "Line too long");
	}
	s->cmd_refused = true;
	s->skip_line = true;
}

/* Lines and literals of commands (lib/session calls this while no job
 * runs). Returns whether a command line is partly buffered. */
static bool
imap_process(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;
	struct evbuffer *in = session_input(base);

	while (!base->busy && !s->more && !base->quit &&
	    !session_output_full(base)) {
		struct evbuffer_ptr eol;
		size_t n;
		char *line;

		if (s->lit_left > 0) {
			size_t avail = evbuffer_get_length(in);

			if (avail == 0)
				break;
			n = avail < s->lit_left ? avail : (size_t)s->lit_left;
			if (s->lit_skip) {
				evbuffer_drain(in, n);
			} else {
				str_reserve(&s->in, n);
				evbuffer_remove(in, s->in.data + s->in.len, n);
				s->in.len += n;
				s->in.data[s->in.len] = '\0';
			}
			s->lit_left -= n;
			continue;
		}
		eol = evbuffer_search(in, "\n", 1, NULL);
		if (eol.pos < 0) {
			size_t have = evbuffer_get_length(in);

			if (!s->skip_line && have > IMAP_LINE_MAX)
				line_too_long(s);
			if (s->skip_line && have > 32)
				evbuffer_drain(in, have - 32);
			break;
		}
		n = (size_t)eol.pos + 1;
		if (!s->skip_line && n > IMAP_LINE_MAX + 2)
			line_too_long(s);
		if (s->skip_line) {
			/* the end of an overlong line: only its tail
			 * matters (a literal announced there) */
			char tail[34];
			size_t keep = n > 32 ? 32 : n;

			evbuffer_drain(in, n - keep);
			evbuffer_remove(in, tail, keep);
			keep--;
			if (keep > 0 && tail[keep - 1] == '\r')
				keep--;
			tail[keep] = '\0';
			s->skip_line = false;
			if (s->cmd_refused)
				refused_line(s, tail, keep);
			continue;
		}
		line = xmalloc(n + 1);
		evbuffer_remove(in, line, n);
		session_line_taken(base);
		n--;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		if (s->idling)
			idle_done(s, line);
		else if (sasl_active(&s->sasl))
			sasl_response(s, line);
		else
			input_line(s, line, n);
		session_line_free(line, n);
	}
	return !s->more && s->lit_left == 0 && evbuffer_get_length(in) > 0;
}

/* The output queue went down: a long FETCH makes its next chunk once
 * the queue is short. */
static bool
imap_writable(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;

	if (!s->more)
		return false;
	if (evbuffer_get_length(session_output(base)) < 2 * IMAP_FETCH_CHUNK)
		submit(s, J_CMD);
	return true;
}

static void
imap_timeout(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;

	session_printf(base, "* BYE Disconnected for inactivity.\r\n");
	s->state = S_LOGOUT;
}

static bool
imap_drain(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;

	session_printf(base, "* BYE [UNAVAILABLE] Server shutting down\r\n");
	s->state = S_LOGOUT;
	return true;
}

static void
imap_cleanup(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;

	if (s->logged_in && !s->logged_out)
		log_info("%016llx: imap logout: user=<%s>, disconnected",
		    SID(base), s->login);
	if (s->watch != NULL)
		imap_watch_release(s->srv, &s->watch);
	if (s->sync_ev != NULL)
		event_free(s->sync_ev);
	end_command(s);
	imap_close_mailbox(s);
	sasl_reset(&s->sasl);
	str_free(&s->in);
	str_free(&s->out);
	str_free(&s->text);
	free(s->login);
	free(s->maildir);
}

static void
imap_greet(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;
	str_t caps = STR_INIT;

	s->srv = base->srv->owner;
	capabilities(s, &caps);
	session_printf(base, "* OK [CAPABILITY %s] %s petrel IMAP4rev1 "
	    "ready\r\n", str_c(&caps), base->srv->hostname);
	str_free(&caps);
}

static const struct session_ops imap_ops = {
	.size = sizeof(struct imap_session), .proto = "imap",
	.listeners = { "imap", "imaps" }, .implicit_tls = { false, true },
	.timeout_key = "imap_timeout",
	.refusal = "* BYE [UNAVAILABLE] Too many connections, try again later",
	.greet = imap_greet, .process = imap_process, .writable = imap_writable,
	.timeout = imap_timeout, .drain = imap_drain, .cleanup = imap_cleanup,
	.login_job = login_run, .login_done = login_done,
};

void
imap_server_init(struct imap_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	memset(srv, 0, sizeof(*srv));
	srv->mail_root = config_get(cfg, "mail_root");
	srv->size_limit = config_get_uint(cfg, "message_size_limit");
	srv->inotify_fd = -1;
	session_server_init(&srv->sv, &imap_ops, srv, base, jobs, cfg, tls);
	if (imap_notify_init(srv) < 0)
		log_warn_errno("imap: inotify unavailable; IDLE will report "
		    "changes only on the next command");
}

void
imap_server_deinit(struct imap_server *srv)
{
	session_server_deinit(&srv->sv);
	imap_notify_deinit(srv);
}
