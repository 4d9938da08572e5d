/*
 * session.c: the IMAP connection: greeting, reading commands (lines and
 * literals, LITERAL+), the state machine of RFC 3501 3, CAPABILITY,
 * NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE PLAIN (SASL-IR), ID,
 * ENABLE, NAMESPACE and IDLE. Mailbox and message commands live in
 * cmd_*.c, one file per command family.
 *
 * A command is read whole (bounded: IMAP_LINE_MAX per line,
 * IMAP_LITERAL_MAX per literal, message_size_limit for each APPEND
 * message, and one past IMAP_APPEND_MEM_MAX is written to a file as it
 * arrives;
 * before login IMAP_PREAUTH_CMD_MAX for all of it) and
 * parsed on the loop thread; everything that touches the disk runs as a
 * job on a pool thread, which writes its responses into s->out. The
 * session reads no further input while a job runs, so a job owns the
 * session's state. A selected mailbox is synced after every command, so
 * changes by others are reported (untagged EXISTS, EXPUNGE, FETCH) before
 * the tagged reply; in IDLE, inotify triggers the sync, and with NOTIFY
 * (cmd_notify.c) it starts a report job between commands.
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

enum job_kind { J_CMD, J_IDLE_SYNC, J_SPOOL, J_NOTIFY };

static void submit(struct imap_session *s, enum job_kind kind);

/* LOGOUT, too many errors, a failed STARTTLS: close once flushed. */
void
imap_logout(struct imap_session *s)
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
void
imap_flush(struct imap_session *s)
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
			imap_logout(s);
		}
	} else {
		s->bad_in_row = 0;
	}
	s->status = NULL;
	str_truncate(&s->text, 0);
}

void
imap_idle_begin(struct imap_session *s)
{
	session_printf(&s->base, "+ idling\r\n");
	s->idling = true;
	if (s->have_cmd)
		imap_cmd_compact(&s->cmd);
	if (s->out.len == 0)
		str_free(&s->out);
	if (s->text.len == 0)
		str_free(&s->text);
	imap_framer_shrink(&s->fr);
}

void
imap_end_command(struct imap_session *s)
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
	if (s->have_cmd) {
		/* LOGIN's password, AUTHENTICATE's initial response */
		if (s->cmd.name != NULL && (strcmp(s->cmd.name, "LOGIN") == 0 ||
		    strcmp(s->cmd.name, "AUTHENTICATE") == 0))
			imap_cmd_wipe(&s->cmd);
		imap_cmd_free(&s->cmd);
	}
	s->have_cmd = false;
	s->def = NULL;
	/* an APPEND took its files; any other end removes them */
	imap_spools_free(s);
	/* between commands a session holds no response buffers: most
	 * sessions wait far longer than they work */
	if (s->out.len == 0)
		str_free(&s->out);
	if (s->text.len == 0)
		str_free(&s->text);
}


static const struct imap_command commands[] = {
	{ "CAPABILITY", imap_cmd_capability, IN_ANY | ON_LOOP },
	{ "NOOP", imap_cmd_noop, IN_ANY },
	{ "LOGOUT", imap_cmd_logout, IN_ANY | ON_LOOP },
	{ "ID", imap_cmd_id, IN_ANY | ON_LOOP },
	{ "STARTTLS", imap_cmd_starttls, IN_NOAUTH | ON_LOOP },
	{ "LOGIN", imap_cmd_login, IN_NOAUTH | ON_LOOP },
	{ "AUTHENTICATE", imap_cmd_authenticate, IN_NOAUTH | ON_LOOP },
	{ "ENABLE", imap_cmd_enable, IN_LOGGED | ON_LOOP },
	{ "NAMESPACE", imap_cmd_namespace, IN_LOGGED | ON_LOOP },
	{ "COMPRESS", imap_cmd_compress, IN_LOGGED | ON_LOOP },
	{ "IDLE", imap_cmd_idle, IN_LOGGED | ON_LOOP },
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
	{ "GETMETADATA", imap_cmd_getmetadata, IN_LOGGED },
	{ "SETMETADATA", imap_cmd_setmetadata, IN_LOGGED },
	{ "NOTIFY", imap_cmd_notify, IN_LOGGED },
	{ "CHECK", imap_cmd_noop, IN_SELECTED },
	{ "CLOSE", imap_cmd_close, IN_SELECTED },
	{ "UNSELECT", imap_cmd_unselect, IN_SELECTED },
	{ "EXPUNGE", imap_cmd_expunge, IN_SELECTED },
	{ "SEARCH", imap_cmd_search, IN_SELECTED | NO_EXPUNGE },
	{ "SORT", imap_cmd_sort, IN_SELECTED | NO_EXPUNGE },
	{ "CANCELUPDATE", imap_cmd_cancelupdate, IN_SELECTED | NO_EXPUNGE },
	{ "THREAD", imap_cmd_thread, IN_SELECTED | NO_EXPUNGE },
	{ "FETCH", imap_cmd_fetch, IN_SELECTED | NO_EXPUNGE },
	{ "STORE", imap_cmd_store, IN_SELECTED | NO_EXPUNGE },
	{ "COPY", imap_cmd_copy, IN_SELECTED },
	{ "MOVE", imap_cmd_move, IN_SELECTED },
	{ "REPLACE", imap_cmd_replace, IN_SELECTED },
};

/* Commands that have a UID form (RFC 3501 6.4.8, RFC 4315, RFC 6851,
 * RFC 5256, RFC 8508). */
static bool
has_uid_form(const char *name)
{
	return strcmp(name, "FETCH") == 0 || strcmp(name, "STORE") == 0 ||
	    strcmp(name, "SEARCH") == 0 || strcmp(name, "COPY") == 0 ||
	    strcmp(name, "MOVE") == 0 || strcmp(name, "EXPUNGE") == 0 ||
	    strcmp(name, "SORT") == 0 || strcmp(name, "THREAD") == 0 ||
	    strcmp(name, "REPLACE") == 0;
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

/* `petrel user move` replaces the maildir it moves away by a file
 * (route_moved_read): a session on it must not change it any more,
 * its changes would not reach the copy. One stat() per command. */
static bool
moved_away(struct imap_session *s)
{
	return (s->state == S_AUTH || s->state == S_SELECTED) &&
	    s->maildir != NULL && route_moved_marker(s->maildir);
}

/* One complete command (from the framer). */
static void
execute(struct imap_session *s, const struct imap_frame *ev)
{
	const char *err = NULL;
	const struct imap_command *def = NULL;
	int rc;

	s->have_cmd = true;
	if (ev->nspools != s->nspools)
		imap_spools_free(s);	/* not this command's */
	rc = imap_cmd_parse_spools(ev->data, ev->len, ev->spools, ev->nspools,
	    &s->cmd, &err);
	/* The arguments are copies: the framer's buffer can go, wiped (a
	 * LOGIN's password, or one in a command that did not parse) unless
	 * it holds an APPEND's or REPLACE's message (large, not a
	 * secret). */
	imap_framer_release(&s->fr, rc < 0 || s->cmd.name == NULL ||
	    (strcmp(s->cmd.name, "APPEND") != 0 &&
	    strcmp(s->cmd.name, "REPLACE") != 0));
	if (rc < 0) {
		imap_bad(s, "%s", err != NULL ? err : "Syntax error");
		imap_flush(s);
		imap_end_command(s);
		return;
	}
	if (moved_away(s)) {
		/* RFC 9051 7.1.5: the client reconnects, and the frontend
		 * now opens its session on the new backend */
		session_printf(&s->base, "* BYE [UNAVAILABLE] This mailbox "
		    "moved to another server, please reconnect\r\n");
		log_info("%016llx: imap: user=<%s>: the mailbox moved to "
		    "another backend, session closed", SID(&s->base),
		    s->login != NULL ? s->login : "?");
		imap_logout(s);
		imap_end_command(s);
		return;
	}
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
	} else if (s->state == S_SELECTED && s->mb == NULL &&
	    (def->flags & IN_AUTH) == 0) {
		imap_lost_command(s, def);
	} else if (imap_names_from_client(s, &s->cmd) < 0) {
		;	/* BAD set */
	} else {
		s->def = def;
		/* NOTIFY's state is made here, on the loop, which reads it
		 * while jobs run (cmd_notify.c) */
		if (def->fn == imap_cmd_notify && s->notify == NULL)
			imap_notify_new(s);
		if (def->flags & ON_LOOP) {
			def->fn(s, &s->cmd);
		} else {
			submit(s, J_CMD);
		}
	}
	if (s->base.busy || sasl_active(&s->sasl) || s->idling)
		return;
	imap_flush(s);
	imap_end_command(s);
}


/* ---- jobs ---- */

static void
job_run(struct job *job, void *state)
{
	struct imap_session *s = (struct imap_session *)((char *)job -
	    offsetof(struct imap_session, job));

	if (s->job_kind == J_IDLE_SYNC) {
		imap_sync_report(s, true);
		return;
	}
	if (s->job_kind == J_SPOOL) {
		imap_spool_write(s);
		return;
	}
	if (s->job_kind == J_NOTIFY) {
		imap_notify_run(s);
		if (s->idling)
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

	if (s->base.dead || s->job_kind == J_SPOOL) {
		session_job_finished(&s->base);
		return;
	}
	/* Watch the selected folder for changes (or stop watching). */
	if (s->watch != NULL && (s->state != S_SELECTED || s->mb == NULL ||
	    strcmp(imap_watch_path(s->watch), s->mb->path) != 0))
		imap_watch_release(s->srv, &s->watch);
	if (s->state == S_SELECTED && s->mb != NULL && s->watch == NULL)
		s->watch = imap_watch_add(s->srv, s->mb->path);

	if (s->job_kind == J_NOTIFY) {
		/* untagged responses only */
		imap_flush(s);
		imap_notify_after(s);
		if (s->changed && s->idling)
			imap_session_changed(s);
		session_job_finished(&s->base);
		return;
	}
	if (s->job_kind == J_IDLE_SYNC) {
		/* untagged responses only; the first one starts the IDLE */
		imap_flush(s);
		if (!s->idling)
			imap_idle_begin(s);
		if (s->changed)
			imap_session_changed(s);
		imap_notify_after(s);
		session_job_finished(&s->base);
		return;
	}
	imap_flush(s);
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
	imap_end_command(s);
	imap_notify_after(s);
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

void
imap_idle_sync(struct imap_session *s)
{
	submit(s, J_IDLE_SYNC);
}

/* ---- change notification ---- */

static void
sync_tick(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;

	if (s->base.busy || s->base.dead || s->state == S_LOGOUT)
		return;
	if (s->idling && moved_away(s)) {
		/* `petrel user move` touched the folders it froze: an IDLE
		 * client learns now, not at its next command */
		session_printf(&s->base, "* BYE [UNAVAILABLE] This mailbox "
		    "moved to another server, please reconnect\r\n");
		log_info("%016llx: imap: user=<%s>: the mailbox moved to "
		    "another backend, session closed", SID(&s->base),
		    s->login != NULL ? s->login : "?");
		imap_logout(s);
		return;
	}
	/* NOTIFY's reports: between commands, or in IDLE (which they
	 * then sync too); not while the client is not reading (they are
	 * differences against what was sent: they wait, nothing queues) */
	if (imap_notify_pending(s) && (!s->have_cmd || s->idling)) {
		if (session_output_full(&s->base))
			return;
		s->changed = false;
		submit(s, J_NOTIFY);
		return;
	}
	if (s->idling) {
		s->changed = false;
		submit(s, J_IDLE_SYNC);
	}
}

static void
arm_tick(struct imap_session *s)
{
	struct timeval tv = { 0, 30000 };

	/* Debounce: one delivery is several directory events. */
	if (s->sync_ev == NULL)
		s->sync_ev = evtimer_new(s->srv->sv.base, sync_tick, s);
	if (!evtimer_pending(s->sync_ev, NULL))
		evtimer_add(s->sync_ev, &tv);
}

void
imap_session_changed(struct imap_session *s)
{
	s->changed = true;
	if (!s->idling || s->base.busy)
		return;
	arm_tick(s);
}

void
imap_session_kick(struct imap_session *s)
{
	if (s->base.busy || !imap_notify_pending(s))
		return;
	arm_tick(s);
}

/* ---- input ---- */

/* Answer a command the framer refused (before it was parsed): its
 * tagged reply now, counted as a BAD in a row; then, for a LITERAL+
 * literal too large even to drop, the goodbye. */
static void
refused(struct imap_session *s, const struct imap_frame *ev)
{
	struct evbuffer *out = session_output(&s->base);

	evbuffer_add_printf(out, "%s %s %s\r\n", ev->tag, ev->status,
	    ev->text);
	if (++s->bad_in_row >= IMAP_BAD_MAX) {
		evbuffer_add_printf(out, "* BYE Too many invalid commands\r\n");
		imap_logout(s);
	}
	if (ev->bye != NULL) {
		evbuffer_add_printf(out, "* BYE %s\r\n", ev->bye);
		imap_logout(s);
	}
}

/* A plain line (IDLE, AUTHENTICATE) over IMAP_LINE_MAX: the exchange
 * ends with a BAD. */
static void
plain_line_too_long(struct imap_session *s)
{
	if (s->idling) {
		imap_idle_done(s, "");	/* BAD, IDLE over */
	} else if (sasl_active(&s->sasl)) {
		sasl_reset(&s->sasl);
		imap_bad(s, "Authentication response too long");
		imap_flush(s);
		imap_end_command(s);
	}
}

/* The bytes of a spooled APPEND literal (IMAP_FRAME_DATA), before the
 * input holding them is dropped: into the spool's buffer, unless writing
 * failed already (then only counted). */
static void
spool_take(struct imap_session *s, const struct imap_frame *ev)
{
	struct imap_spool *sp = imap_spool_cur(s);

	if (sp == NULL)
		return;
	if (sp->failed == NULL) {
		memcpy(sp->buf + sp->len, ev->data, ev->len);
		sp->len += ev->len;
		imap_msg_scan(&sp->scan, ev->data, ev->len);
	}
	sp->got += ev->len;
	sp->done = ev->last;
}

/* Commands, literals and plain lines, cut by the framer (lib/imap/
 * framing); lib/session calls this while no job runs. Returns whether a
 * command line is partly in (its deadline runs). A spooled APPEND
 * literal is taken at most IMAP_SPOOL_CHUNK bytes at a time, each
 * written by a job before more input is read. */
static bool
imap_process(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;
	struct evbuffer *in = session_input(base);

	while (!base->busy && !s->more && !base->quit &&
	    !session_output_full(base)) {
		struct evbuffer_iovec v;
		struct imap_frame ev;
		unsigned flags = 0;
		size_t used = 0;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		if (s->idling || sasl_active(&s->sasl))
			flags |= IMAP_FRAMER_PLAIN;
		if (s->state != S_NOAUTH)
			flags |= IMAP_FRAMER_APPEND;
		else
			flags |= IMAP_FRAMER_NOAUTH;
		struct imap_spool *sp = imap_spool_cur(s);

		if (sp != NULL && !sp->done && sp->failed == NULL) {
			size_t room = IMAP_SPOOL_CHUNK - sp->len;

			if (room == 0) {
				submit(s, J_SPOOL);
				break;
			}
			if (v.iov_len > room)
				v.iov_len = room;
		}
		/* the framer wipes what it takes in place (it may be a
		 * password) */
		imap_framer_step(&s->fr, v.iov_base, v.iov_len, flags, &used,
		    &ev);
		if (ev.type == IMAP_FRAME_DATA)
			spool_take(s, &ev);
		evbuffer_drain(in, used);
		if (ev.lines > 0)
			session_line_taken(base);
		switch (ev.type) {
		case IMAP_FRAME_NONE:
			break;
		case IMAP_FRAME_COMMAND:
			execute(s, &ev);
			break;
		case IMAP_FRAME_SPOOL:
			imap_spool_begin(s, ev.size);
			if (ev.cont)
				session_printf(base,
				    "+ Ready for literal data\r\n");
			break;
		case IMAP_FRAME_DATA:
			sp = imap_spool_cur(s);
			if (sp != NULL && sp->failed == NULL &&
			    (sp->len == IMAP_SPOOL_CHUNK ||
			    (sp->done && sp->len > 0)))
				submit(s, J_SPOOL);
			break;
		case IMAP_FRAME_LINE:
			if (s->idling)
				imap_idle_done(s, ev.data);
			else
				imap_sasl_response(s, ev.data);
			imap_framer_release(&s->fr, true);
			break;
		case IMAP_FRAME_CONTINUE:
			session_printf(base, "+ Ready for literal data\r\n");
			break;
		case IMAP_FRAME_REFUSE:
			imap_spools_free(s);
			refused(s, &ev);
			break;
		case IMAP_FRAME_LONG_LINE:
			plain_line_too_long(s);
			break;
		case IMAP_FRAME_CLOSE:
			imap_spools_free(s);
			session_printf(base, "* BYE %s\r\n", ev.bye);
			imap_logout(s);
			break;
		}
	}
	return !s->more && imap_framer_partial(&s->fr,
	    evbuffer_get_length(in));
}

/* The output queue went down: a long FETCH makes its next chunk once
 * the queue is short. */
static bool
imap_writable(struct session *base)
{
	struct imap_session *s = (struct imap_session *)base;

	if (!s->more) {
		imap_session_kick(s);	/* NOTIFY reports that waited */
		return false;
	}
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
	imap_notify_free(s);
	if (s->watch != NULL)
		imap_watch_release(s->srv, &s->watch);
	if (s->sync_ev != NULL)
		event_free(s->sync_ev);
	imap_end_command(s);
	imap_close_mailbox(s);
	sasl_reset(&s->sasl);
	imap_framer_deinit(&s->fr);
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

	struct imap_framer_limits lim = {
		.line_max = IMAP_LINE_MAX, .literal_max = IMAP_LITERAL_MAX,
		.cmd_max = IMAP_CMD_MAX, .preauth_max = IMAP_PREAUTH_CMD_MAX,
		.spool_min = IMAP_APPEND_MEM_MAX,
	};

	s->srv = base->srv->owner;
	lim.append_max = s->srv->size_limit;
	imap_framer_init(&s->fr, &lim);
	imap_capabilities(s, &caps);
	session_printf(base, "* OK [CAPABILITY %s] %s petrel IMAP4rev1 "
	    "ready\r\n", str_c(&caps), base->srv->hostname);
	str_free(&caps);
}

static const struct session_ops imap_ops = {
	.size = sizeof(struct imap_session), .proto = "imap",
	.listeners = { "imap", "imaps" }, .implicit_tls = { false, true },
	.timeout_key = "imap_timeout", .login_timeout = true,
	.refusal = "* BYE [UNAVAILABLE] Too many connections, try again later",
	.greet = imap_greet, .process = imap_process, .writable = imap_writable,
	.timeout = imap_timeout, .drain = imap_drain, .cleanup = imap_cleanup,
	.login_job = imap_login_job, .login_done = imap_login_done,
	.proxied = imap_proxied, .backend_port_field = 1,
};

void
imap_server_init(struct imap_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	memset(srv, 0, sizeof(*srv));
	srv->mail_root = config_get(cfg, "mail_root");
	srv->size_limit = config_get_uint(cfg, "message_size_limit");
	srv->ns_prefix = config_get(cfg, "imap_namespace_prefix");
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
