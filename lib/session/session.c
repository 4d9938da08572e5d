/*
 * session.c: the connection life cycle shared by every line protocol
 * (see session.h).
 *
 * Trust: the client is hostile. Connections are counted per listener,
 * in total and per address, before a byte is read; a command line has a
 * deadline from its first byte (a client trickling bytes cannot hold a
 * session for ever); a protocol with login_timeout closes a session that
 * has not logged in within it; replies that a client does not read are
 * given a bounded time to leave after the goodbye, then the session is
 * freed.
 * Passwords are wiped from memory on every path (session_wipe).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/auth/login.h"
#include "lib/authd/client.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/session/counters.h"
#include "lib/session/line.h"
#include "lib/io/conn.h"
#include "lib/io/deflate.h"
#include "lib/session/proxy.h"
#include "lib/session/session.h"
#include "lib/tls/tls.h"
#include "lib/trust/greylist.h"
#include "lib/trust/srs.h"

/* After the goodbye, replies get this long to leave (a client that
 * stops reading cannot keep its session). */
#define CLOSE_GRACE_MS 10000
#define CLOSE_POLL_MS 20

static uint64_t sid_next;

/* Session ids are unique across the workers of a node and across
 * restarts: a random 64-bit start per process, counting up. */
static uint64_t
sid_new(void)
{
	if (sid_next == 0) {
		uint64_t r = 0;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = ((uint64_t)getpid() << 40) ^
			    ((uint64_t)time(NULL) << 8);
		sid_next = r | 1;
	}
	return sid_next++;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- setup ---- */

/* A listener's limits from X_max_connections and X_max_connections_per_ip
 * (for the node: the counts are shared by its workers). */
static void
listener_init(struct session_listener *l, const struct config *cfg,
    const char *name, struct node_counters *own, unsigned service)
{
	char key[64];

	l->name = name;
	snprintf(key, sizeof(key), "%s_max_connections", name);
	l->max_conn = (unsigned)config_get_uint(cfg, key);
	snprintf(key, sizeof(key), "%s_max_connections_per_ip", name);
	l->max_conn_per_ip = (unsigned)config_get_uint(cfg, key);
	l->nc = own;
	l->service = service;
	/* Postfix's program names, which log readers know: smtpd for mail
	 * in, under submission/ and smtps/ for the submission ports */
	if (strcmp(name, "smtp") == 0)
		l->log_service = "smtpd";
	else if (strcmp(name, "submission") == 0)
		l->log_service = "submission/smtpd";
	else if (strcmp(name, "submissions") == 0)
		l->log_service = "smtps/smtpd";
	else if (strncmp(name, "imap", 4) == 0)
		l->log_service = "imap";
	else if (strncmp(name, "pop3", 4) == 0)
		l->log_service = "pop3";
	else if (strcmp(name, "lmtp") == 0)
		l->log_service = "lmtp";
	else if (strcmp(name, "managesieve") == 0)
		l->log_service = "managesieve";
	else
		l->log_service = NULL;
}

/* Seconds a frontend gives a backend to connect, greet and log in. */
#define PROXY_TIMEOUT 15

/* Scale-out (SPEC 6): who may act as a frontend here, and on a frontend
 * where the users' sessions go. */
static void
proxy_setup(struct session_server *srv, const struct config *cfg)
{
	const char *err = NULL;
	const char *role = config_get(cfg, "role");

	if (greylist_nets_parse(config_get(cfg, "proxy_trusted_networks"),
	    &srv->proxy_nets, &srv->nproxy_nets, &err) < 0) {
		log_error("proxy_trusted_networks: %s", err);
		srv->nproxy_nets = 0;
	}
	if (role == NULL || strcmp(role, "frontend") != 0 ||
	    srv->ops->proxied == NULL)
		return;
	srv->frontend = true;
	srv->backend_default = xstrdup(config_get(cfg, "backend_default"));
	{
		const char *p = config_get(cfg, "backend_ports");

		for (unsigned i = 0; i < srv->ops->backend_port_field &&
		    p != NULL; i++) {
			p = strchr(p, ',');
			if (p != NULL)
				p++;
		}
		srv->backend_port = p != NULL ? (unsigned)atoi(p) : 0;
	}
	srv->proxy_secret = secret_load("proxy_secret",
	    config_get(cfg, "proxy_secret"), &err);
	if (srv->proxy_secret == NULL) {
		log_error("%s: logins cannot reach the backends", err);
		srv->proxy_secret = xstrdup("");
	}
	{
		const char *ca = config_get(cfg, "proxy_tls_ca");

		if (ca != NULL && ca[0] != '\0') {
			/* no unverified fallback: a CA that does not load
			 * stops the proxied logins, with the reason */
			srv->proxy_tls = tls_client_new_verify(ca, &err);
			if (srv->proxy_tls == NULL) {
				srv->proxy_tls_error = xasprintf(
				    "proxy_tls_ca: %s", err);
				log_error("%s: %s", srv->ops->proto,
				    srv->proxy_tls_error);
			}
			return;
		}
	}
	srv->proxy_tls = tls_client_new(&err);
	if (srv->proxy_tls == NULL)
		log_warn("%s: no TLS to the backends: %s", srv->ops->proto,
		    err);
}

void
session_server_init(struct session_server *srv, const struct session_ops *ops,
    void *owner, struct event_base *base, struct jobs *jobs,
    const struct config *cfg, struct tls_server *tls)
{
	memset(srv, 0, sizeof(*srv));
	srv->ops = ops;
	srv->owner = owner;
	srv->base = base;
	srv->jobs = jobs;
	srv->dir_jobs = jobs;	/* serve gives directory work its own */
	srv->tls = tls;
	srv->hostname = xstrdup(config_get(cfg, "hostname"));
	if (srv->hostname[0] == '\0') {
		char host[256] = "localhost";

		gethostname(host, sizeof(host) - 1);
		free(srv->hostname);
		srv->hostname = xstrdup(host);
	}
	srv->timeout = (unsigned)config_get_uint(cfg, ops->timeout_key);
	if (srv->timeout == 0)
		srv->timeout = ops->default_timeout;
	if (ops->login_timeout)
		srv->login_timeout = (unsigned)config_get_uint(cfg,
		    "login_timeout");
	srv->fail_delay_ms = (unsigned)config_get_uint(cfg, "auth_fail_delay");
	srv->plaintext = config_get(cfg, "allow_plaintext_auth");
	proxy_setup(srv, cfg);
	srv->own = node_counters_private(SESSION_LISTENERS_MAX);
	for (unsigned i = 0; i < SESSION_LISTENERS_MAX &&
	    ops->listeners[i] != NULL; i++)
		listener_init(&srv->listeners[i], cfg, ops->listeners[i],
		    srv->own, i);
}

void
session_server_count(struct session_server *srv, unsigned listener,
    struct node_counters *nc, unsigned service)
{
	srv->listeners[listener].nc = nc;
	srv->listeners[listener].service = service;
}

static void session_free(struct session *s);

void
session_server_deinit(struct session_server *srv)
{
	/* Sessions still open after the drain grace period. */
	while (srv->sessions != NULL) {
		srv->sessions->busy = false;
		session_free(srv->sessions);
	}
	node_counters_free(&srv->own);
	free(srv->hostname);
	free(srv->proxy_nets);
	free(srv->backend_default);
	session_wipe(&srv->proxy_secret);
	if (srv->proxy_tls != NULL)
		tls_client_free(&srv->proxy_tls);
	free(srv->proxy_tls_error);
}

/* ---- output ---- */

struct evbuffer *
session_output(struct session *s)
{
	return bufferevent_get_output(s->bev);
}

struct evbuffer *
session_input(struct session *s)
{
	return bufferevent_get_input(s->bev);
}

bool
session_output_full(struct session *s)
{
	return evbuffer_get_length(session_output(s)) >= OUTPUT_MAX;
}

void
session_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(session_output(s), fmt, ap);
	va_end(ap);
}

/* The line and its CRLF in one evbuffer_add: a TLS bufferevent writes
 * each addition as a record of its own, with a system call. */
static void
vreply_prefixed(struct session *s, const char *prefix, const char *fmt,
    va_list ap)
{
	char buf[512];
	size_t pl = strlen(prefix);
	va_list aq;
	int n;

	va_copy(aq, ap);
	n = pl < sizeof(buf) ? vsnprintf(buf + pl, sizeof(buf) - pl, fmt,
	    aq) : -1;
	va_end(aq);
	if (n >= 0 && pl + (size_t)n + 2 <= sizeof(buf)) {
		memcpy(buf, prefix, pl);
		memcpy(buf + pl + (size_t)n, "\r\n", 2);
		evbuffer_add(session_output(s), buf, pl + (size_t)n + 2);
		return;
	}
	{
		struct evbuffer *out = session_output(s);
		struct evbuffer *line = evbuffer_new();

		evbuffer_add(line, prefix, pl);
		evbuffer_add_vprintf(line, fmt, ap);
		evbuffer_add(line, "\r\n", 2);
		evbuffer_pullup(line, -1);	/* one record */
		evbuffer_add_buffer(out, line);
		evbuffer_free(line);
	}
}

void
session_vreply(struct session *s, const char *fmt, va_list ap)
{
	vreply_prefixed(s, "", fmt, ap);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_vreply(s, fmt, ap);
	va_end(ap);
}

void
session_error(struct session *s, const char *prefix, const char *fmt, ...)
{
	const struct session_ops *ops = s->srv->ops;
	va_list ap;

	va_start(ap, fmt);
	vreply_prefixed(s, prefix, fmt, ap);
	va_end(ap);
	if (ops->errors_max == 0 || ++s->errors < ops->errors_max || s->quit)
		return;
	session_reply(s, "%s", ops->too_many_errors);
	log_info("%016llx: %s: too many errors from %s", SID(s), ops->proto,
	    s->peer);
	session_quit(s);
}

/* ---- input ---- */

int
session_take_line(struct session *s, size_t max, char **line_r,
    size_t *len_r)
{
	int r = line_take(session_input(s), max, &s->skip_line, line_r, len_r);

	if (r == 1)
		session_line_taken(s);
	return r;
}

void
session_line_taken(struct session *s)
{
	if (s->line_ev != NULL)
		evtimer_del(s->line_ev);
}

void
session_line_free(char *line, size_t len)
{
	if (line == NULL)
		return;
	explicit_bzero(line, len);	/* it may have carried a password */
	free(line);
}

void
session_wipe(char **p)
{
	if (*p == NULL)
		return;
	explicit_bzero(*p, strlen(*p));
	free(*p);
	*p = NULL;
}

/* ---- closing ---- */

static void close_when_flushed(struct session *s);
static void close_tick_cb(evutil_socket_t fd, short what, void *arg);
static void line_expired_cb(evutil_socket_t fd, short what, void *arg);

static void
close_tick(evutil_socket_t fd, short what, void *arg)
{
	close_when_flushed(arg);
}

/* Free the session once its replies reached the socket (through a TLS
 * filter they sit in the bufferevent beneath it for a while), or when
 * the client has not taken them within CLOSE_GRACE_MS. */
static void
close_when_flushed(struct session *s)
{
	struct timeval tv = { 0, CLOSE_POLL_MS * 1000 };

	if (s->busy)
		return;		/* the job's end comes back here */
	if (s->dead || conn_output_pending(s->bev) == 0 ||
	    now_ms() - s->quit_at_ms > CLOSE_GRACE_MS) {
		session_free(s);
		return;
	}
	if (s->close_ev == NULL)
		s->close_ev = evtimer_new(s->srv->base, close_tick_cb, s);
	evtimer_add(s->close_ev, &tv);
}

void
session_quit(struct session *s)
{
	if (s->quit)
		return;
	s->quit = true;
	s->quit_at_ms = now_ms();
	if (s->line_ev != NULL)
		evtimer_del(s->line_ev);
}

/* ---- the loop ---- */

static void session_event(struct bufferevent *bev, short what, void *arg);

static void
line_expired(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	log_info("%016llx: %s: command line not completed in %u s, from %s",
	    SID(s), s->srv->ops->proto, s->srv->timeout, s->peer);
	session_event(s->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, s);
}

/* ---- relaying (a frontend, after login) ---- */

/* What the client sent goes to the backend; past OUTPUT_MAX waiting for
 * the backend, the client is not read until it drains. */
static void
relay_from_client(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->relay);

	evbuffer_add_buffer(out, session_input(s));
	if (evbuffer_get_length(out) >= OUTPUT_MAX)
		bufferevent_disable(s->bev, EV_READ);
}

static void
relay_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	evbuffer_add_buffer(session_output(s), bufferevent_get_input(bev));
	if (session_output_full(s))
		bufferevent_disable(bev, EV_READ);
}

static void
relay_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	/* the backend took what waited: read the client again */
	if (!s->quit)
		bufferevent_enable(s->bev, EV_READ);
}

/* The backend closed (or failed): what it sent goes out, then the
 * client's connection closes. */
static void
relay_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	const char *prev = log_service_set(s->log_service);

	if (what & BEV_EVENT_CONNECTED) {
		log_service_set(prev);
		return;
	}
	evbuffer_add_buffer(session_output(s), bufferevent_get_input(bev));
	log_info("%016llx: %s proxy: backend %s closed the session%s",
	    SID(s), s->srv->ops->proto, s->proxy_host,
	    (what & BEV_EVENT_EOF) ? "" : " (error)");
	bufferevent_free(s->relay);
	s->relay = NULL;
	session_quit(s);
	bufferevent_disable(s->bev, EV_READ);
	close_when_flushed(s);
	log_service_set(prev);
}

void
session_resume(struct session *s)
{
	bool partial = false;

	if (s->busy || s->dead)
		return;
	if (s->relay != NULL) {
		relay_from_client(s);
		return;
	}
	if (!s->quit)
		partial = s->srv->ops->process(s);
	if (s->busy)
		return;		/* a job took over: it resumes us */
	conn_line_deadline(&s->line_ev, s->srv->base, partial && !s->quit,
	    s->srv->timeout, line_expired_cb, s);
	if (s->quit) {
		bufferevent_disable(s->bev, EV_READ);
		close_when_flushed(s);
	}
}

/* login_timeout: not logged in yet. A login in flight gets its answer
 * first (a second later, again). */
static void
login_expired(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct timeval tv = { 1, 0 };

	if (s->quit)
		return;		/* closing anyway, in bounded time */
	if (s->busy && !s->dead) {
		evtimer_add(s->login_ev, &tv);
		return;
	}
	log_info("%016llx: %s: not logged in within %u s, from %s", SID(s),
	    s->srv->ops->proto, s->srv->login_timeout, s->peer);
	session_event(s->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, s);
}

static void
session_read(struct bufferevent *bev, void *arg)
{
	session_resume(arg);
}

/* The event callbacks log for the session's service (log_service_set);
 * they may free the session, so the service is put back from a copy. */
static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	const char *prev = log_service_set(((struct session *)arg)->log_service);

	session_read(bev, arg);
	log_service_set(prev);
}

static void session_write(struct bufferevent *bev, void *arg);
static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	const char *prev = log_service_set(((struct session *)arg)->log_service);

	session_write(bev, arg);
	log_service_set(prev);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	const char *prev = log_service_set(((struct session *)arg)->log_service);

	session_event(bev, what, arg);
	log_service_set(prev);
}

#define TIMER_CB(name, fn)						\
	static void							\
	name(evutil_socket_t fd, short what, void *arg)			\
	{								\
		const char *prev = log_service_set(			\
		    ((struct session *)arg)->log_service);		\
		fn(fd, what, arg);					\
		log_service_set(prev);					\
	}
TIMER_CB(close_tick_cb, close_tick)
TIMER_CB(login_expired_cb, login_expired)
TIMER_CB(line_expired_cb, line_expired)

static void
session_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	/* the bufferevent wrote what a direct write left: back to direct */
	if (s->flush_ev != NULL &&
	    evbuffer_get_length(session_output(s)) == 0)
		bufferevent_disable(s->bev, EV_WRITE);
	if (s->busy)
		return;
	if (s->quit) {
		close_when_flushed(s);
		return;
	}
	if (s->relay != NULL) {
		/* the client took what waited: read the backend again */
		bufferevent_enable(s->relay, EV_READ);
		return;
	}
	if (s->srv->ops->writable != NULL && s->srv->ops->writable(s))
		return;
	session_resume(s);	/* output drained: read on */
}

/* The idle timeout, or a command line's deadline: the protocol's
 * goodbye, then close. */
static void
timed_out(struct session *s)
{
	s->timed_out = false;
	if (s->relay == NULL)
		s->srv->ops->timeout(s);
	session_quit(s);
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	bufferevent_enable(s->bev, EV_WRITE);
	close_when_flushed(s);
}

static void
session_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;		/* the TLS handshake completed */
	if ((what & BEV_EVENT_TIMEOUT) && !s->quit) {
		if (s->busy) {
			/* our own work, not the client, took the time: the
			 * goodbye follows its answer */
			s->timed_out = true;
			bufferevent_enable(s->bev, EV_READ | EV_WRITE);
			return;
		}
		timed_out(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && !s->busy) {
		session_free(s);	/* not even the goodbye left */
		return;
	}
	/* EOF or error: the client is gone. */
	if (s->busy) {
		s->dead = true;	/* the job's end frees it */
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

static void direct_off(struct session *s, bool writing);

static void
session_free(struct session *s)
{
	struct session_server *srv = s->srv;
	struct session_listener *l = (struct session_listener *)s->listener;

	if (s->busy) {
		s->dead = true;
		return;
	}
	srv->ops->cleanup(s);
	log_info("%016llx: %s disconnect from %s", SID(s), srv->ops->proto,
	    s->peer);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	node_counters_add(l->nc, l->service, s->bucket, -1);
	l->nsessions--;
	srv->nsessions--;
	if (s->delay_ev != NULL)
		event_free(s->delay_ev);
	if (s->close_ev != NULL)
		event_free(s->close_ev);
	if (s->line_ev != NULL)
		event_free(s->line_ev);
	if (s->login_ev != NULL)
		event_free(s->login_ev);
	direct_off(s, false);
	proxy_cancel(s->proxy);
	if (s->relay != NULL)
		bufferevent_free(s->relay);
	free(s->proxy_user);
	free(s->proxy_host);
	free(s->proxy_why);
	free(s->proxy_addr);
	bufferevent_free(s->bev);
	free(s->login_name);
	session_wipe(&s->login_pass);
	free(s->login_challenge);
	explicit_bzero(s, srv->ops->size);
	free(s);
}

/* ---- direct writes (struct session's flush_ev) ---- */

static void
flush_run(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct evbuffer *out = session_output(s);
	size_t low = 0, len;
	int n, err;

	if (bufferevent_get_enabled(s->bev) & EV_WRITE)
		return;		/* the bufferevent is writing: its turn */
	if (evbuffer_get_length(out) == 0)
		return;
	/* the bufferevent keeps its output's start frozen against writes
	 * behind its back, and thaws it around its own, as here */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(s->bev));
	err = errno;
	evbuffer_freeze(out, 1);
	/* a full socket: the bufferevent writes the rest; an error: it
	 * meets it again and reports it (session_event) */
	if (n < 0 && err != EAGAIN && err != EINTR) {
		bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	len = evbuffer_get_length(out);
	if (len > 0)
		bufferevent_enable(s->bev, EV_WRITE);
	bufferevent_getwatermark(s->bev, EV_WRITE, &low, NULL);
	/* what the bufferevent's own write would have called */
	if (len <= low)
		session_write_cb(s->bev, s);
}

static void
flush_want(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct session *s = arg;

	if (info->n_added > 0)
		event_active(s->flush_ev, EV_WRITE, 0);
}

static void
direct_on(struct session *s)
{
	s->flush_ev = event_new(s->srv->base, -1, 0, flush_run, s);
	if (s->flush_ev == NULL)
		return;
	s->flush_cb = evbuffer_add_cb(session_output(s), flush_want, s);
	if (s->flush_cb == NULL) {
		event_free(s->flush_ev);
		s->flush_ev = NULL;
		return;
	}
	bufferevent_disable(s->bev, EV_WRITE);
}

/* At the end, or (writing) before a layer (TLS, COMPRESS) is put over
 * the socket's bufferevent: it must write again, what waits included. */
static void
direct_off(struct session *s, bool writing)
{
	if (s->flush_ev == NULL)
		return;
	evbuffer_remove_cb_entry(session_output(s), s->flush_cb);
	event_free(s->flush_ev);
	s->flush_ev = NULL;
	s->flush_cb = NULL;
	if (writing)
		bufferevent_enable(s->bev, EV_WRITE);
}

/* ---- accept and drain ---- */

int
session_server_listener(const struct session_server *srv, const char *name)
{
	for (int i = 0; i < SESSION_LISTENERS_MAX; i++)
		if (srv->ops->listeners[i] != NULL &&
		    strcmp(srv->ops->listeners[i], name) == 0)
			return i;
	return -1;
}

void
session_accept(struct session_server *srv, unsigned listener, int fd,
    const struct sockaddr *sa)
{
	struct session_listener *l = &srv->listeners[listener];
	bool implicit_tls = srv->ops->implicit_tls[listener];
	struct session *s;
	struct timeval tv = { (time_t)srv->timeout, 0 };
	char ip[64];
	unsigned port, bucket;
	bool loopback;
	const char *why = NULL;

	if (implicit_tls && srv->tls == NULL) {
		close(fd);
		return;
	}
	conn_peer(sa, ip, sizeof(ip), &port, &loopback);
	bucket = node_counters_bucket(l->nc, ip);
	if (srv->draining)
		why = "shutting down";
	else if (node_counters_total(l->nc, l->service) >= l->max_conn)
		why = "server busy";
	else if (node_counters_address(l->nc, l->service, bucket) >=
	    l->max_conn_per_ip)
		why = "too many connections from this address";
	if (why != NULL) {
		str_t line = STR_INIT;
		const char *prev = log_service_set(l->log_service);

		log_warn("%s connection from [%s]:%u refused: %s", l->name, ip,
		    port, why);
		str_printf(&line, "%s\r\n", srv->ops->refusal);
		/* best effort: the socket is new, its buffer empty. A client
		 * of an implicit-TLS listener waits for a handshake, not a
		 * line: its refusal is the closed connection. */
		if (!implicit_tls)
			(void)!write(fd, line.data, line.len);
		str_free(&line);
		close(fd);
		log_service_set(prev);
		return;
	}
	s = xcalloc(1, srv->ops->size);
	s->srv = srv;
	s->listener = l;
	s->log_service = l->log_service;
	s->sid = sid_new();
	s->loopback = loopback;
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->peer, sizeof(s->peer), "[%s]:%u", ip, port);
	s->port = port;
	s->proxy_trusted = srv->nproxy_nets > 0 &&
	    greylist_nets_match(srv->proxy_nets, srv->nproxy_nets, ip);
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
	s->bucket = bucket;
	node_counters_add(l->nc, l->service, bucket, +1);
	l->nsessions++;
	srv->nsessions++;
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	conn_set_watermarks(s->bev);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	if (!implicit_tls)
		direct_on(s);
	bufferevent_enable(s->bev, s->flush_ev != NULL ? EV_READ :
	    EV_READ | EV_WRITE);
	if (srv->login_timeout > 0) {
		struct timeval ltv = { (time_t)srv->login_timeout, 0 };

		s->login_ev = evtimer_new(srv->base, login_expired_cb, s);
		evtimer_add(s->login_ev, &ltv);
	}
	{
		const char *prev = log_service_set(s->log_service);

		log_info("%016llx: %s connect from %s (%s)", SID(s),
		    srv->ops->proto, s->peer, l->name);
		srv->ops->greet(s);
		log_service_set(prev);
	}
}

unsigned
session_server_drain(struct session_server *srv)
{
	struct session *s, *next;

	srv->draining = true;
	for (s = srv->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->busy || s->quit)
			continue;
		/* a relayed session's goodbye is the closed connection (a
		 * line of ours could fall inside the backend's answer) */
		if (s->relay == NULL && !srv->ops->drain(s))
			continue;
		session_quit(s);
		bufferevent_disable(s->bev, EV_READ);
		close_when_flushed(s);
	}
	return srv->nsessions;
}

/* ---- jobs, timers, TLS ---- */

void
session_job_submit(struct session *s, struct jobs *pool, struct job *job)
{
	s->busy = true;
	if (s->line_ev != NULL)
		evtimer_del(s->line_ev);
	job->log_service = s->log_service;
	jobs_submit(pool, job);
}

/* After a job or a timer: free a session whose client left, say goodbye
 * to one that timed out meanwhile, or read on. */
static void
carry_on(struct session *s)
{
	if (s->busy)
		return;		/* the callback started another job */
	if (s->dead) {
		session_free(s);
		return;
	}
	if (s->timed_out && !s->quit) {
		timed_out(s);
		return;
	}
	session_resume(s);
}

void
session_job_finished(struct session *s)
{
	s->busy = false;
	carry_on(s);
}

static void
hold_done(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	void (*fn)(struct session *) = s->hold_fn;

	event_free(s->delay_ev);
	s->delay_ev = NULL;
	s->hold_fn = NULL;
	s->busy = false;
	if (!s->dead && fn != NULL)
		fn(s);
	carry_on(s);
}

TIMER_CB(hold_done_cb, hold_done)

void
session_hold(struct session *s, unsigned ms, void (*fn)(struct session *s))
{
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	s->busy = true;
	s->hold_fn = fn;
	s->delay_ev = evtimer_new(s->srv->base, hold_done_cb, s);
	evtimer_add(s->delay_ev, &tv);
}

int
session_starttls(struct session *s)
{
	struct bufferevent *tb;

	direct_off(s, true);
	tb = tls_bev_starttls(s->srv->tls, s->srv->base, s->bev);
	if (tb == NULL) {
		session_quit(s);
		return -1;
	}
	s->bev = tb;
	s->tls = true;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	conn_set_watermarks(s->bev);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	s->skip_line = false;
	return 0;
}

int
session_compress(struct session *s)
{
	struct bufferevent *cb;

	direct_off(s, true);
	cb = deflate_layer_new(s->srv->base, s->bev);
	if (cb == NULL) {
		session_quit(s);
		return -1;
	}
	s->bev = cb;
	s->compressed = true;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	conn_set_watermarks(s->bev);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	return 0;
}

bool
session_plaintext_ok(const struct session *s)
{
	const char *p = s->srv->plaintext;

	if (s->tls || strcmp(p, "yes") == 0)
		return true;
	return strcmp(p, "loopback") == 0 && s->loopback;
}

/* ---- logins ---- */

/* On the login job of a frontend: the user's backend (the host column,
 * else backend_default), resolved here where blocking is fine. Leaves
 * proxy_addr NULL and proxy_why set when there is none. */
static void
proxy_resolve(struct session *s, const struct dir_user *u)
{
	const char *host = u->host != NULL && u->host[0] != '\0' ? u->host :
	    s->srv->backend_default;
	struct addrinfo hints, *res = NULL;
	char port[16];
	int rc;

	free(s->proxy_user);
	s->proxy_user = xstrdup(u->address);
	free(s->proxy_host);
	s->proxy_host = xstrdup(host);
	xfree(&s->proxy_why);
	xfree(&s->proxy_addr);
	if (host[0] == '\0') {
		s->proxy_why = xstrdup("no backend for this user (no host "
		    "column, no backend_default)");
		return;
	}
	if (s->srv->backend_port == 0) {
		s->proxy_why = xstrdup("no port in backend_ports");
		return;
	}
	snprintf(port, sizeof(port), "%u", s->srv->backend_port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		str_t why = STR_INIT;

		str_printf(&why, "cannot resolve %s: %s", host,
		    rc != 0 ? gai_strerror(rc) : "no address");
		s->proxy_why = str_steal(&why);
		if (res != NULL)
			freeaddrinfo(res);
		return;
	}
	s->proxy_addr = xcalloc(1, sizeof(*s->proxy_addr));
	memcpy(s->proxy_addr, res->ai_addr, res->ai_addrlen);
	s->proxy_addrlen = (unsigned)res->ai_addrlen;
	freeaddrinfo(res);
}

static void login_proxy_failed(struct session *s, const char *why);

/* The backend session is open (or not). */
static void
proxy_done(void *arg, struct bufferevent *bev, const char *caps,
    bool tls, const char *why)
{
	struct session *s = arg;
	const char *prev = log_service_set(s->log_service);

	s->proxy = NULL;
	s->busy = false;
	if (s->dead) {
		if (bev != NULL)
			bufferevent_free(bev);
		session_free(s);
		log_service_set(prev);
		return;
	}
	if (bev == NULL) {
		login_proxy_failed(s, why);
		carry_on(s);
		log_service_set(prev);
		return;
	}
	log_info("%016llx: %s proxy: user=<%s>, %s%s, to backend %s port %u%s",
	    SID(s), s->srv->ops->proto, s->proxy_user, s->peer,
	    s->tls ? " (TLS)" : "", s->proxy_host, s->srv->backend_port,
	    !tls ? "" : tls_client_verifies(s->srv->proxy_tls) ?
	    " over TLS, certificate verified" : " over TLS");
	s->srv->ops->proxied(s, s->proxy_user, caps);
	s->relay = bev;
	{
		struct timeval tv = { (time_t)s->srv->timeout, 0 };

		bufferevent_setcb(bev, relay_read, relay_write, relay_event, s);
		/* the client's idle timeout governs; a backend that stops
		 * reading is dropped after as long */
		bufferevent_set_timeouts(bev, NULL, &tv);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
	}
	/* what the backend sent after its login reply */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		relay_read(bev, s);
	if (s->line_ev != NULL)
		evtimer_del(s->line_ev);
	carry_on(s);
	log_service_set(prev);
}

static void
login_proxy_failed(struct session *s, const char *why)
{
	log_warn("%016llx: %s proxy: user=<%s>, %s: backend %s unavailable: "
	    "%s", SID(s), s->srv->ops->proto,
	    s->proxy_user != NULL ? s->proxy_user : "?", s->peer,
	    s->proxy_host != NULL && s->proxy_host[0] != '\0' ?
	    s->proxy_host : "(none)", why);
	s->srv->ops->proxied(s, s->proxy_user, NULL);
	/* still not logged in: login_timeout runs again */
	if (s->login_ev != NULL) {
		struct timeval ltv = { (time_t)s->srv->login_timeout, 0 };

		evtimer_add(s->login_ev, &ltv);
	}
}

/* After a good login on a frontend, on the loop: open the backend
 * session (the session is busy meanwhile). */
static void
proxy_start(struct session *s)
{
	struct proxy_params p;
	const char *why = NULL;

	if (s->proxy_addr == NULL) {
		login_proxy_failed(s, s->proxy_why != NULL ? s->proxy_why :
		    "no backend");
		return;
	}
	if (s->srv->proxy_tls_error != NULL) {
		login_proxy_failed(s, s->srv->proxy_tls_error);
		return;
	}
	memset(&p, 0, sizeof(p));
	p.proto = s->srv->ops->backend_port_field == 2 ? PROXY_POP3 :
	    s->srv->ops->backend_port_field == 3 ? PROXY_MANAGESIEVE :
	    PROXY_IMAP;
	p.sa = (const struct sockaddr *)s->proxy_addr;
	p.salen = (socklen_t)s->proxy_addrlen;
	p.host = s->proxy_host;
	p.tls = s->srv->proxy_tls;
	p.user = s->proxy_user;
	p.secret = s->srv->proxy_secret;
	p.client_ip = s->ip;
	p.client_port = s->port;
	p.timeout_s = PROXY_TIMEOUT;
	s->proxy = proxy_connect(s->srv->base, &p, proxy_done, s, &why);
	if (s->proxy == NULL) {
		login_proxy_failed(s, why);
		return;
	}
	s->busy = true;
}

static void
login_run(struct job *job, void *state)
{
	struct session *s = (struct session *)((char *)job -
	    offsetof(struct session, login_job));
	struct authc *ac = state;
	struct dir_user u;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (s->login_proxy)
		s->login_result = authc_login_proxy(ac, s->login_name,
		    s->login_pass, s->ip, s->srv->ops->proto, &u,
		    &s->login_quota);
	else
		s->login_result = authc_login(ac, s->login_name,
		    s->login_pass, s->login_challenge, s->ip,
		    s->srv->ops->proto, &u, &s->login_quota);
	if (s->login_result == AUTH_FAIL) {
		/* what a checked wrong password costs, round trip included:
		 * a refusal (AUTH_THROTTLED) is held that much longer */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		auth_check_ms_note((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
	}
	/* the password is not needed beyond the check */
	session_wipe(&s->login_pass);
	xfree(&s->login_challenge);
	if (s->login_result != AUTH_OK)
		return;
	if (s->srv->frontend) {
		proxy_resolve(s, &u);
		dir_user_clear(&u);
		return;
	}
	if (s->srv->ops->login_job != NULL)
		s->login_result = s->srv->ops->login_job(s, ac, &u);
	dir_user_clear(&u);
}

static void
login_failed(struct session *s)
{
	s->srv->ops->login_done(s, AUTH_FAIL);
	xfree(&s->login_name);
}

static void
login_finished(struct job *job)
{
	struct session *s = (struct session *)((char *)job -
	    offsetof(struct session, login_job));

	session_wipe(&s->login_pass);
	s->busy = false;
	if (s->login_result == AUTH_FAIL ||
	    s->login_result == AUTH_THROTTLED) {
		unsigned ms = auth_delay_failure(s->ip, s->login_name,
		    s->srv->fail_delay_ms);

		if (s->login_result == AUTH_THROTTLED)
			ms += auth_check_ms();
		node_counters_event(s->listener->nc, NODE_EVENT_LOGIN_FAILED);

		/* a refusal answers exactly like a wrong password */
		log_info("%016llx: %s login %s: user=<%s>, %s (delay %u ms)",
		    SID(s), s->srv->ops->proto,
		    s->login_result == AUTH_THROTTLED ? "refused (locked)" :
		    "failed", s->login_name, s->peer, ms);
		if (!s->dead) {
			session_hold(s, ms, login_failed);
			return;
		}
	} else if (s->login_result == AUTH_TEMPFAIL) {
		log_warn("%016llx: %s login: user=<%s>: temporary failure",
		    SID(s), s->srv->ops->proto, s->login_name);
	} else if (s->login_result == AUTH_OK) {
		/* a frontend's part ends with its login: after an
		 * UNAUTHENTICATE, what its client sends is the client's */
		s->proxy_trusted = false;
		node_counters_event(s->listener->nc, NODE_EVENT_LOGIN_OK);
		auth_delay_success(s->ip, s->login_name);
		if (s->login_ev != NULL)
			evtimer_del(s->login_ev);
		if (s->srv->frontend) {
			if (!s->dead)
				proxy_start(s);
			xfree(&s->login_name);
			carry_on(s);
			return;
		}
	}
	if (!s->dead)
		s->srv->ops->login_done(s, s->login_result);
	xfree(&s->login_name);
	carry_on(s);
}

static void
login_submit(struct session *s, char *login, char *pass, char *challenge,
    bool proxy)
{
	s->login_proxy = proxy;
	free(s->login_name);
	session_wipe(&s->login_pass);
	free(s->login_challenge);
	s->login_name = login;
	s->login_pass = pass;
	s->login_challenge = challenge;
	s->login_job.run = login_run;
	s->login_job.done = login_finished;
	s->login_job.next = NULL;
	session_job_submit(s, s->srv->dir_jobs, &s->login_job);
}

void
session_login_start(struct session *s, char *login, char *pass)
{
	login_submit(s, login, pass, NULL, false);
}

void
session_login_start_proxy(struct session *s, char *user, char *secret)
{
	login_submit(s, user, secret, NULL, true);
}

bool
session_set_client(struct session *s, const char *ip, unsigned port)
{
	unsigned char buf[16];

	if (!s->proxy_trusted || s->client_set)
		return false;
	if (inet_pton(AF_INET, ip, buf) != 1 &&
	    inet_pton(AF_INET6, ip, buf) != 1)
		return false;
	log_info("%016llx: %s: client [%s]:%u, via frontend %s", SID(s),
	    s->srv->ops->proto, ip, port, s->peer);
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->peer, sizeof(s->peer), "[%s]:%u", ip, port);
	s->port = port;
	s->client_set = true;
	return true;
}

void
session_login_start_cram(struct session *s, char *login, char *digest,
    char *challenge)
{
	login_submit(s, login, digest, challenge, false);
}

static int cleartext_known = -1;

void
session_cleartext_set(int known)
{
	cleartext_known = known;
}

int
session_cleartext_get(void)
{
	return cleartext_known;
}

bool
session_cram_ok(const struct session *s)
{
	return cleartext_known == 1 && (s->tls || s->loopback);
}

/* ---- SASL ---- */

static void
sasl_next(struct session *s, struct sasl *x,
    const struct session_sasl_words *w, enum sasl_status st,
    const char *challenge, char *login, char *pass)
{
	char *cram, *proxy_for;

	switch (st) {
	case SASL_DONE:
		cram = sasl_take_challenge(x);
		proxy_for = sasl_take_proxy(x);
		if (proxy_for != NULL && s->proxy_trusted) {
			free(login);
			session_login_start_proxy(s, proxy_for, pass);
		} else if (proxy_for != NULL) {
			/* not a frontend: a login as SASL_PROXY_AUTHCID,
			 * which fails as any unknown user's does */
			free(proxy_for);
			session_login_start(s, login, pass);
		} else if (cram != NULL)
			session_login_start_cram(s, login, pass, cram);
		else
			session_login_start(s, login, pass);
		break;
	case SASL_NEXT:
		session_printf(s, "%s%s%s\r\n", w->challenge, challenge,
		    w->challenge_end != NULL ? w->challenge_end : "");
		break;
	case SASL_ABORTED:
		w->error(s, w->aborted);
		break;
	case SASL_BAD:
		w->error(s, w->bad);
		break;
	case SASL_NOMECH:
		w->error(s, w->nomech);
		break;
	}
}

void
session_sasl_start(struct session *s, struct sasl *x,
    const struct session_sasl_words *w, unsigned allowed, const char *mech,
    const char *initial)
{
	const char *challenge = NULL;
	char *login = NULL, *pass = NULL;
	enum sasl_status st;

	x->host = s->srv->hostname;
	st = sasl_start(x, allowed, mech, initial, &challenge, &login, &pass);
	sasl_next(s, x, w, st, challenge, login, pass);
}

void
session_sasl_step(struct session *s, struct sasl *x,
    const struct session_sasl_words *w, const char *line)
{
	const char *challenge = NULL;
	char *login = NULL, *pass = NULL;
	enum sasl_status st;

	st = sasl_step(x, line, &challenge, &login, &pass);
	sasl_next(s, x, w, st, challenge, login, pass);
}
