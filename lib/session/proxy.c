/*
 * proxy.c: a frontend's session on a backend (see proxy.h). One state
 * machine per protocol, one line of the backend at a time; the whole
 * exchange has one deadline (timeout_s), connect included.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/session/proxy.h"
#include "lib/session/sasl.h"
#include "lib/tls/tls.h"

/* A backend line longer than this ends the exchange. */
#define PROXY_LINE_MAX 8192

enum step {
	P_GREET,	/* the greeting */
	P_CAPA,		/* CAPABILITY / CAPA */
	P_STLS,		/* STARTTLS / STLS */
	P_ID,		/* ID / XCLIENT */
	P_AUTH,		/* AUTHENTICATE / AUTH */
	P_POSTCAPA,	/* IMAP: CAPABILITY after login */
};

struct proxy_conn {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *deadline;
	enum proxy_proto proto;
	enum step step;
	bool tls_on, capa_started;
	bool ok;		/* logged in: finish() once the line is handled */
	bool tls_required;	/* the backend's certificate is verified:
				 * no STARTTLS, no session */
	bool notls;		/* ...and it offered none */
	struct tls_client *tls;
	char *host;
	str_t caps;		/* " CAP1 CAP2 ... " (spaces around each) */
	str_t plain;		/* the SASL PLAIN response, base64 */
	char *client_ip;
	unsigned client_port;
	proxy_done_fn *done;
	void *arg;
};

static void
proxy_free(struct proxy_conn *pc)
{
	if (pc->bev != NULL)
		bufferevent_free(pc->bev);
	if (pc->deadline != NULL)
		event_free(pc->deadline);
	free(pc->host);
	free(pc->client_ip);
	str_free(&pc->caps);
	if (pc->plain.data != NULL)
		explicit_bzero(pc->plain.data, pc->plain.len);
	str_free(&pc->plain);
	free(pc);
}

void
proxy_cancel(struct proxy_conn *pc)
{
	if (pc != NULL)
		proxy_free(pc);
}

static void
finish(struct proxy_conn *pc, bool ok, const char *why)
{
	struct bufferevent *bev = NULL;
	char *caps = NULL;

	if (ok) {
		bev = pc->bev;
		pc->bev = NULL;
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		bufferevent_disable(bev, EV_READ);
		bufferevent_set_timeouts(bev, NULL, NULL);
		/* " A B " -> "A B" */
		caps = xstrdup(str_c(&pc->caps) + (pc->caps.len > 0));
		if (caps[0] != '\0')
			caps[strlen(caps) - 1] = '\0';
	}
	pc->done(pc->arg, bev, caps, pc->tls_on, why);
	free(caps);
	proxy_free(pc);
}

static void
send_line(struct proxy_conn *pc, const char *line)
{
	struct evbuffer *out = bufferevent_get_output(pc->bev);

	evbuffer_add(out, line, strlen(line));
	evbuffer_add(out, "\r\n", 2);
}

static bool
has_cap(const struct proxy_conn *pc, const char *cap)
{
	char pat[64];
	const char *p = str_c(&pc->caps);

	snprintf(pat, sizeof(pat), " %s ", cap);
	for (; *p != '\0'; p++)
		if (strncasecmp(p, pat, strlen(pat)) == 0)
			return true;
	return false;
}

/* Capabilities from "[CAPABILITY a b c]" in an IMAP line, or a bare
 * list of them ("* CAPABILITY a b c"), or one POP3 CAPA line. */
static void
caps_add(struct proxy_conn *pc, const char *list, size_t len)
{
	if (pc->caps.len == 0)
		str_append(&pc->caps, " ");
	str_append_n(&pc->caps, list, len);
	str_append(&pc->caps, " ");
}

static bool
caps_from_code(struct proxy_conn *pc, const char *line)
{
	const char *p = strstr(line, "[CAPABILITY ");
	const char *end;

	if (p == NULL)
		return false;
	p += strlen("[CAPABILITY ");
	end = strchr(p, ']');
	if (end == NULL)
		return false;
	str_truncate(&pc->caps, 0);
	caps_add(pc, p, (size_t)(end - p));
	return true;
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* STARTTLS / STLS answered: TLS over the connection. */
static bool
start_tls(struct proxy_conn *pc)
{
	struct bufferevent *tb;

	tb = tls_bev_connect_starttls(pc->tls, pc->base, pc->bev, pc->host);
	if (tb == NULL)
		return false;
	pc->bev = tb;
	pc->tls_on = true;
	bufferevent_setcb(tb, on_read, NULL, on_event, pc);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	str_truncate(&pc->caps, 0);
	return true;
}

/* ---- IMAP ---- */

static void
imap_auth(struct proxy_conn *pc)
{
	str_t line = STR_INIT;

	pc->step = P_AUTH;
	if (has_cap(pc, "SASL-IR")) {
		str_printf(&line, "P AUTHENTICATE PLAIN %s", str_c(&pc->plain));
		send_line(pc, str_c(&line));
		explicit_bzero(line.data, line.len);
		str_free(&line);
	} else {
		send_line(pc, "P AUTHENTICATE PLAIN");
	}
}

/* The capabilities are known: STARTTLS, or the client's address. */
static void
imap_next(struct proxy_conn *pc)
{
	str_t line = STR_INIT;

	if (!pc->tls_on && pc->tls != NULL && has_cap(pc, "STARTTLS")) {
		pc->step = P_STLS;
		send_line(pc, "P STARTTLS");
		return;
	}
	if (!pc->tls_on && pc->tls_required) {
		pc->notls = true;
		return;
	}
	/* Dovecot's field names, which other backends know too */
	str_printf(&line, "P ID (\"x-originating-ip\" \"%s\" "
	    "\"x-originating-port\" \"%u\")", pc->client_ip, pc->client_port);
	pc->step = P_ID;
	send_line(pc, str_c(&line));
	str_free(&line);
}

/* One line from an IMAP backend. Returns a failure text or NULL. */
static const char *
imap_line(struct proxy_conn *pc, const char *line)
{
	bool tagged = strncmp(line, "P ", 2) == 0;
	bool ok = tagged && strncasecmp(line + 2, "OK", 2) == 0;

	switch (pc->step) {
	case P_GREET:
		if (strncasecmp(line, "* OK", 4) != 0)
			return "unexpected greeting";
		if (caps_from_code(pc, line)) {
			imap_next(pc);
		} else {
			pc->step = P_CAPA;
			send_line(pc, "P CAPABILITY");
		}
		return NULL;
	case P_CAPA:
	case P_POSTCAPA:
		if (strncasecmp(line, "* CAPABILITY ", 13) == 0) {
			str_truncate(&pc->caps, 0);
			caps_add(pc, line + 13, strlen(line + 13));
			return NULL;
		}
		if (!tagged)
			return NULL;
		if (!ok)
			return "CAPABILITY refused";
		if (pc->step == P_POSTCAPA) {
			pc->ok = true;
			return NULL;
		}
		imap_next(pc);
		return NULL;
	case P_STLS:
		if (!tagged)
			return NULL;
		if (!ok)
			return "STARTTLS refused";
		if (!start_tls(pc))
			return "TLS could not start";
		pc->step = P_CAPA;
		send_line(pc, "P CAPABILITY");
		return NULL;
	case P_ID:
		if (tagged)
			imap_auth(pc);	/* whatever it said */
		return NULL;
	case P_AUTH:
		if (line[0] == '+') {
			send_line(pc, str_c(&pc->plain));
			return NULL;
		}
		if (!tagged)
			return NULL;
		if (!ok)
			return "login refused";
		if (caps_from_code(pc, line)) {
			pc->ok = true;
		} else {
			pc->step = P_POSTCAPA;
			send_line(pc, "P CAPABILITY");
		}
		return NULL;
	}
	return "unexpected state";
}

/* ---- POP3 ---- */

static void
pop3_next(struct proxy_conn *pc)
{
	str_t line = STR_INIT;

	if (!pc->tls_on && pc->tls != NULL && has_cap(pc, "STLS")) {
		pc->step = P_STLS;
		send_line(pc, "STLS");
		return;
	}
	if (!pc->tls_on && pc->tls_required) {
		pc->notls = true;
		return;
	}
	str_printf(&line, "XCLIENT ADDR=%s PORT=%u", pc->client_ip,
	    pc->client_port);
	pc->step = P_ID;
	send_line(pc, str_c(&line));
	str_free(&line);
}

static const char *
pop3_line(struct proxy_conn *pc, const char *line)
{
	bool ok = strncmp(line, "+OK", 3) == 0;
	str_t auth = STR_INIT;

	switch (pc->step) {
	case P_GREET:
		if (!ok)
			return "unexpected greeting";
		pc->step = P_CAPA;
		pc->capa_started = false;
		send_line(pc, "CAPA");
		return NULL;
	case P_CAPA:
		if (!pc->capa_started) {
			pc->capa_started = true;
			if (!ok) {	/* no CAPA: no STLS either */
				pop3_next(pc);
			}
			return NULL;
		}
		if (strcmp(line, ".") == 0) {
			pop3_next(pc);
			return NULL;
		}
		caps_add(pc, line, strlen(line));
		return NULL;
	case P_STLS:
		if (!ok)
			return "STLS refused";
		if (!start_tls(pc))
			return "TLS could not start";
		pop3_next(pc);
		return NULL;
	case P_ID:
		/* whatever it said: the login tells */
		pc->step = P_AUTH;
		str_printf(&auth, "AUTH PLAIN %s", str_c(&pc->plain));
		send_line(pc, str_c(&auth));
		explicit_bzero(auth.data, auth.len);
		str_free(&auth);
		return NULL;
	case P_AUTH:
		if (line[0] == '+' && line[1] == ' ') {
			send_line(pc, str_c(&pc->plain));
			return NULL;
		}
		if (!ok)
			return "login refused";
		pc->ok = true;
		return NULL;
	case P_POSTCAPA:
		break;
	}
	return "unexpected state";
}

/* ---- ManageSieve (RFC 5804): capabilities are lines before an OK,
 * sent again after STARTTLS; XCLIENT names the client (petrel's own
 * command, shaped as POP3's) ---- */

static void
msieve_auth(struct proxy_conn *pc)
{
	str_t line = STR_INIT;

	pc->step = P_AUTH;
	str_printf(&line, "AUTHENTICATE \"PLAIN\" \"%s\"", str_c(&pc->plain));
	send_line(pc, str_c(&line));
	explicit_bzero(line.data, line.len);
	str_free(&line);
}

static const char *
msieve_line(struct proxy_conn *pc, const char *line)
{
	bool ok = strncasecmp(line, "OK", 2) == 0 &&
	    (line[2] == '\0' || line[2] == ' ');
	bool no = strncasecmp(line, "NO", 2) == 0 ||
	    strncasecmp(line, "BYE", 3) == 0;
	str_t xc = STR_INIT;

	switch (pc->step) {
	case P_GREET:
	case P_CAPA:
		if (no)
			return "refused";
		if (!ok) {
			caps_add(pc, line, strlen(line));
			return NULL;
		}
		if (!pc->tls_on && pc->tls != NULL &&
		    has_cap(pc, "\"STARTTLS\"")) {
			pc->step = P_STLS;
			send_line(pc, "STARTTLS");
			return NULL;
		}
		if (!pc->tls_on && pc->tls_required)
			return "backend offers no STARTTLS (proxy_tls_ca is set)";
		str_printf(&xc, "XCLIENT ADDR=%s PORT=%u", pc->client_ip,
		    pc->client_port);
		pc->step = P_ID;
		send_line(pc, str_c(&xc));
		str_free(&xc);
		return NULL;
	case P_ID:
		/* whatever it said (NO from a backend that has no XCLIENT):
		 * the login tells */
		msieve_auth(pc);
		return NULL;
	case P_STLS:
		if (!ok)
			return "STARTTLS refused";
		if (!start_tls(pc))
			return "TLS could not start";
		pc->step = P_CAPA;
		return NULL;
	case P_AUTH:
		if (line[0] == '"') {	/* a challenge: PLAIN has none */
			send_line(pc, "\"*\"");
			return NULL;
		}
		if (!ok)
			return "login refused";
		str_truncate(&pc->caps, 0);
		pc->ok = true;
		return NULL;
	case P_POSTCAPA:
		break;
	}
	return "unexpected state";
}

/* ---- events ---- */

static void
fail(struct proxy_conn *pc, const char *why)
{
	finish(pc, false, why);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct proxy_conn *pc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		const char *why;

		if (line == NULL) {
			if (evbuffer_get_length(in) > PROXY_LINE_MAX)
				fail(pc, "backend line too long");
			return;
		}
		why = pc->proto == PROXY_IMAP ? imap_line(pc, line) :
		    pc->proto == PROXY_POP3 ? pop3_line(pc, line) :
		    msieve_line(pc, line);
		free(line);
		if (why == NULL && pc->notls)
			why = "backend offers no STARTTLS (proxy_tls_ca is set)";
		if (why != NULL) {
			fail(pc, why);
			return;
		}
		if (pc->ok) {
			finish(pc, true, NULL);
			return;
		}
		if (pc->bev != bev)
			return;	/* TLS started: the new one reads on */
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_conn *pc = arg;
	char why[512];

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (pc->tls_on && (what & BEV_EVENT_ERROR) &&
	    tls_bev_verify_error(bev, why, sizeof(why)) != NULL)
		fail(pc, why);
	else if (what & BEV_EVENT_EOF)
		fail(pc, "backend closed the connection");
	else if (what & BEV_EVENT_TIMEOUT)
		fail(pc, "backend timed out");
	else
		fail(pc, errno != 0 ? strerror(errno) : "connection failed");
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	fail(arg, "backend did not answer in time");
}

struct proxy_conn *
proxy_connect(struct event_base *base, const struct proxy_params *p,
    proxy_done_fn *done, void *arg, const char **why_r)
{
	struct proxy_conn *pc = xcalloc(1, sizeof(*pc));
	struct timeval tv = { (time_t)p->timeout_s, 0 };
	str_t raw = STR_INIT;

	pc->base = base;
	pc->proto = p->proto;
	pc->tls = p->tls;
	pc->tls_required = p->tls != NULL && tls_client_verifies(p->tls);
	pc->host = xstrdup(p->host);
	pc->client_ip = xstrdup(p->client_ip);
	pc->client_port = p->client_port;
	pc->done = done;
	pc->arg = arg;
	pc->step = P_GREET;
	/* authzid NUL authcid NUL secret (RFC 4616) */
	str_reserve(&raw, strlen(p->user) + strlen(p->secret) + 32);
	str_append(&raw, p->user);
	str_append_n(&raw, "", 1);
	str_append(&raw, SASL_PROXY_AUTHCID);
	str_append_n(&raw, "", 1);
	str_append(&raw, p->secret);
	str_reserve(&pc->plain, raw.len * 4 / 3 + 8);
	base64_encode(&pc->plain, raw.data, raw.len);
	explicit_bzero(raw.data, raw.len);
	str_free(&raw);

	pc->bev = bufferevent_socket_new(base, -1,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	pc->deadline = evtimer_new(base, on_deadline, pc);
	if (pc->bev == NULL || pc->deadline == NULL) {
		*why_r = "out of resources";
		proxy_free(pc);
		return NULL;
	}
	bufferevent_setcb(pc->bev, on_read, NULL, on_event, pc);
	bufferevent_enable(pc->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(pc->bev, p->sa, (int)p->salen) < 0) {
		*why_r = strerror(errno);
		proxy_free(pc);
		return NULL;
	}
	evtimer_add(pc->deadline, &tv);
	return pc;
}
