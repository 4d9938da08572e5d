/*
 * worker.c: petrel serve — a protocol worker.
 *
 * Started by the master (master.c) with the listening sockets named in
 * PETREL_WORKER_FDS. A worker serves many sessions (SMTP, submission,
 * POP3, IMAP, LMTP, HTTP, ManageSieve) on one libevent loop, dispatching each accepted connection
 * to its protocol by listener; blocking work (SQL, fsync) runs on its job
 * threads (lib/io/jobs.c), directory queries on a pool of their own. On
 * SIGTERM it stops accepting, closes idle sessions with 421, lets
 * transactions in flight finish (up to DRAIN_GRACE seconds) and exits; on
 * SIGUSR1 (replaced after a reload) it stops accepting and lets its
 * sessions end when their clients end them.
 *
 * Trust: a worker is unprivileged before it accepts a connection.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/authd/client.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/config/context.h"
#include "lib/dir/dir.h"
#include "lib/io/jobs.h"
#include "lib/session/counters.h"
#include "lib/session/session.h"
#include "lib/tls/tls.h"
#include "imap/imap.h"
#include "master/serve.h"
#include "http/http.h"
#include "managesieve/managesieve.h"
#include "pop3/pop3.h"
#include "smtp/smtp.h"


/* A job pool's waiting jobs, the node's gauge arg in this process's
 * region (/metrics). */
static void
jobs_waiting(void *arg, size_t n)
{
	node_counters_gauge_set(node_counters_self(),
	    (enum node_gauge)(intptr_t)arg, n);
}

/* The index of a service in serve_services (the counts' order). */
static unsigned
services_index(const char *name)
{
	for (size_t i = 0; i < serve_nservices; i++)
		if (strcmp(serve_services[i].name, name) == 0)
			return (unsigned)i;
	fatal("unknown service '%s'", name);
}

/* The static service name for a name from PETREL_WORKER_FDS. */
static const char *
services_name(const char *name)
{
	for (size_t i = 0; i < serve_nservices; i++)
		if (strcmp(serve_services[i].name, name) == 0)
			return serve_services[i].name;
	fatal("unknown service '%s' in PETREL_WORKER_FDS", name);
}

/* ---- worker ---- */

struct worker_ctx;

struct worker_listener {
	struct worker_ctx *w;
	const char *service;
	struct session_server *sv;	/* the protocol serving it */
	unsigned index;			/* its listener there */
	struct evconnlistener *lev;
	struct event *ev_resume;	/* accept again after EMFILE */
};

struct worker_ctx {
	struct event_base *base;
	struct smtp_server smtp;
	struct pop3_server pop3;
	struct imap_server imap;
	struct http_server http;
	struct msieve_server msieve;
	struct tls_server *tls;
	struct jobs *jobs, *dir_jobs;
	struct worker_listener lis[MAX_LISTENERS];
	size_t nlev;
	struct event *ev_drain;
	struct event *ev_caps;	/* asking again what logins are possible */
	struct job caps_job;
	bool caps_pending;
	int caps_answer;
	time_t drain_started;
	bool retiring;		/* SIGUSR1: replaced after a reload */
};

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct worker_listener *l = arg;

	evconnlistener_enable(l->lev);
}

/* accept() failed. Out of descriptors or memory: stop accepting for a
 * moment rather than spin on a listening socket that stays readable; the
 * waiting clients stay in the kernel's backlog. */
static void
accept_error(struct evconnlistener *lev, void *arg)
{
	struct worker_listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();
	static time_t last_log;
	struct timeval pause = { 0, 100 * 1000 };

	if (err != EMFILE && err != ENFILE && err != ENOBUFS &&
	    err != ENOMEM)
		return;
	if (time(NULL) != last_log) {
		last_log = time(NULL);
		log_warn("%s: accept: %s; pausing new connections",
		    l->service, strerror(err));
	}
	evconnlistener_disable(lev);
	evtimer_add(l->ev_resume, &pause);
}

/* The protocol server and listener index for a service name. */
static bool
worker_find_server(struct worker_ctx *w, const char *service,
    struct session_server **sv_r, unsigned *index_r)
{
	struct session_server *servers[] = { &w->smtp.sv, &w->pop3.sv,
	    &w->imap.sv, &w->http.sv, &w->msieve.sv };

	for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
		int idx = session_server_listener(servers[i], service);

		if (idx >= 0) {
			*sv_r = servers[i];
			*index_r = (unsigned)idx;
			return true;
		}
	}
	return false;
}

static void
worker_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct worker_listener *l = arg;

	evutil_make_socket_nonblocking(fd);
	/* Replies are small and pipelined: no Nagle delay on them. */
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	session_accept(l->sv, l->index, fd, sa);
}

static void
worker_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker_ctx *w = arg;
	unsigned left;

	if (w->retiring) {
		/* After a reload: sessions end when their clients end them. */
		if (w->smtp.sv.nsessions + w->pop3.sv.nsessions +
		    w->imap.sv.nsessions + w->http.sv.nsessions +
		    w->msieve.sv.nsessions == 0 &&
		    jobs_pending(w->jobs) == 0)
			event_base_loopbreak(w->base);
		return;
	}
	left = session_server_drain(&w->smtp.sv) +
	    session_server_drain(&w->pop3.sv) +
	    session_server_drain(&w->imap.sv) +
	    session_server_drain(&w->http.sv) +
	    session_server_drain(&w->msieve.sv);

	if ((left == 0 && jobs_pending(w->jobs) == 0) ||
	    (time(NULL) - w->drain_started > DRAIN_GRACE &&
	    jobs_pending(w->jobs) == 0)) {
		if (left > 0)
			log_warn("drain: closing %u session(s) still open", left);
		event_base_loopbreak(w->base);
	}
}

/* Whether the directory returns cleartext passwords (CRAM-MD5): asked
 * of the auth process once at start; while it cannot tell (the database
 * is down), again every CAPS_RETRY seconds on a directory thread. */
#define CAPS_RETRY 15

static void
caps_run(struct job *job, void *state)
{
	struct worker_ctx *w = (struct worker_ctx *)((char *)job -
	    offsetof(struct worker_ctx, caps_job));

	w->caps_answer = authc_caps_cleartext(state);
}

static void
caps_done(struct job *job)
{
	struct worker_ctx *w = (struct worker_ctx *)((char *)job -
	    offsetof(struct worker_ctx, caps_job));

	w->caps_pending = false;
	session_cleartext_set(w->caps_answer);
	if (w->caps_answer >= 0 && w->ev_caps != NULL)
		event_del(w->ev_caps);
}

static void
caps_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker_ctx *w = arg;

	if (w->caps_pending || w->drain_started != 0)
		return;
	w->caps_pending = true;
	w->caps_job.run = caps_run;
	w->caps_job.done = caps_done;
	w->caps_job.next = NULL;
	jobs_submit(w->dir_jobs, &w->caps_job);
}

static void
worker_stop(evutil_socket_t sig, short what, void *arg)
{
	struct worker_ctx *w = arg;
	struct timeval tv = { 0, 100000 };

	if (sig != SIGUSR1 && w->retiring) {
		/* A stop while retiring: drain for real now. */
		w->retiring = false;
		w->drain_started = time(NULL);
		worker_drain_tick(-1, 0, w);
		return;
	}
	if (w->drain_started != 0)
		return;
	w->retiring = sig == SIGUSR1;
	for (size_t i = 0; i < w->nlev; i++) {
		evconnlistener_free(w->lis[i].lev);
		event_free(w->lis[i].ev_resume);
	}
	w->nlev = 0;
	w->drain_started = time(NULL);
	w->ev_drain = event_new(w->base, -1, EV_PERSIST, worker_drain_tick, w);
	event_add(w->ev_drain, &tv);
	worker_drain_tick(-1, 0, w);
}

int
worker_run(struct petrel_ctx *ctx, const char *fdlist)
{
	struct worker_ctx w;
	struct event *ev_term, *ev_int, *ev_usr1;
	char *copy = xstrdup(fdlist), *save = NULL, *item;
	struct node_counters *nc = node_counters_inherit(NODE_ROLE_WORKER);

	memset(&w, 0, sizeof(w));
	signal(SIGPIPE, SIG_IGN);
	if (geteuid() == 0 && getpwnam(config_get(ctx->cfg, "user")) != NULL &&
	    getpwnam(config_get(ctx->cfg, "user"))->pw_uid != 0)
		fatal("worker started as root");
	w.base = event_base_new();
	if (w.base == NULL)
		fatal("cannot create the event loop");
	if (config_get(ctx->cfg, "hostname")[0] == '\0') {
		char host[256] = "localhost", *err = NULL;

		gethostname(host, sizeof(host) - 1);
		config_set(ctx->cfg, "hostname", host, &err);
		free(err);
	}
	{
		const char *err;

		w.tls = tls_server_new(config_get(ctx->cfg, "tls_cert"),
		    config_get(ctx->cfg, "tls_key"),
		    config_get(ctx->cfg, "tls_profile"),
		    config_get(ctx->cfg, "tls_sni_dir"), &err);
		if (w.tls == NULL)
			log_error("TLS unavailable: %s", err);
	}
	/* the login cache and the password-guessing limits live in the
	 * auth process (authd.c), which checks the passwords */
	w.jobs = jobs_create(w.base, (size_t)config_get_uint(ctx->cfg,
	    "worker_threads"), authc_thread_init, authc_thread_deinit, ctx->cfg);
	smtp_server_init(&w.smtp, w.base, w.jobs, ctx->cfg, w.tls);
	pop3_server_init(&w.pop3, w.base, w.jobs, ctx->cfg, w.tls);
	imap_server_init(&w.imap, w.base, w.jobs, ctx->cfg, w.tls);
	http_server_init(&w.http, w.base, w.jobs, ctx->cfg, w.tls);
	msieve_server_init(&w.msieve, w.base, w.jobs, ctx->cfg, w.tls);
	{
		static const char *names[MAX_LISTENERS];

		for (size_t i = 0; i < serve_nservices && i < MAX_LISTENERS;
		    i++)
			names[i] = serve_services[i].name;
		http_server_metrics(&w.http, nc, names,
		    (unsigned)serve_nservices);
	}
	/* Directory queries get threads of their own: a database that
	 * hangs holds up logins and RCPT lookups, not deliveries or
	 * mailbox work. */
	w.dir_jobs = jobs_create(w.base, (size_t)config_get_uint(ctx->cfg,
	    "worker_threads"), authc_thread_init, authc_thread_deinit, ctx->cfg);
	w.smtp.sv.dir_jobs = w.pop3.sv.dir_jobs = w.imap.sv.dir_jobs =
	    w.http.sv.dir_jobs = w.msieve.sv.dir_jobs = w.dir_jobs;
	jobs_on_waiting(w.jobs, jobs_waiting,
	    (void *)(intptr_t)NODE_GAUGE_JOBS_WAITING);
	jobs_on_waiting(w.dir_jobs, jobs_waiting,
	    (void *)(intptr_t)NODE_GAUGE_DIR_JOBS_WAITING);
	{
		struct authc *ac = authc_thread_init(NULL);
		struct timeval tv = { CAPS_RETRY, 0 };

		session_cleartext_set(authc_caps_cleartext(ac));
		authc_thread_deinit(ac);
		if (session_cleartext_get() < 0) {
			w.ev_caps = event_new(w.base, -1, EV_PERSIST,
			    caps_tick, &w);
			event_add(w.ev_caps, &tv);
		}
	}
	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		int fd;

		if (eq == NULL)
			fatal("bad PETREL_WORKER_FDS");
		*eq = '\0';
		fd = atoi(eq + 1);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (w.nlev == MAX_LISTENERS)
			fatal("too many listeners");
		w.lis[w.nlev].w = &w;
		w.lis[w.nlev].service = services_name(item);
		if (!worker_find_server(&w, w.lis[w.nlev].service,
		    &w.lis[w.nlev].sv, &w.lis[w.nlev].index))
			fatal("no server for listener %s", item);
		/* its limits hold for the node: counted with the other
		 * workers' sessions */
		if (nc != NULL)
			session_server_count(w.lis[w.nlev].sv,
			    w.lis[w.nlev].index, nc,
			    services_index(w.lis[w.nlev].service));
		w.lis[w.nlev].lev = evconnlistener_new(w.base, worker_accept,
		    &w.lis[w.nlev], LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (w.lis[w.nlev].lev == NULL)
			fatal("cannot listen on fd %d", fd);
		evconnlistener_set_error_cb(w.lis[w.nlev].lev, accept_error);
		w.lis[w.nlev].ev_resume = evtimer_new(w.base, accept_resume,
		    &w.lis[w.nlev]);
		w.nlev++;
	}
	free(copy);
	ev_term = evsignal_new(w.base, SIGTERM, worker_stop, &w);
	ev_int = evsignal_new(w.base, SIGINT, worker_stop, &w);
	ev_usr1 = evsignal_new(w.base, SIGUSR1, worker_stop, &w);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_usr1, NULL);
	/* The master replaces workers on SIGHUP; a worker ignores it (a
	 * terminal's ^C reaches the whole group: SIGINT drains like TERM). */
	signal(SIGHUP, SIG_IGN);
	event_base_dispatch(w.base);

	for (size_t i = 0; i < w.nlev; i++) {
		evconnlistener_free(w.lis[i].lev);
		event_free(w.lis[i].ev_resume);
	}
	jobs_destroy(&w.dir_jobs);
	jobs_destroy(&w.jobs);
	/* Sessions still open after the grace period are cut here; nothing
	 * they had not been told 250 for is lost. */
	smtp_server_deinit(&w.smtp);
	pop3_server_deinit(&w.pop3);
	imap_server_deinit(&w.imap);
	http_server_deinit(&w.http);
	msieve_server_deinit(&w.msieve);
	tls_server_free(&w.tls);
	node_counters_free(&nc);
	if (w.ev_drain != NULL)
		event_free(w.ev_drain);
	if (w.ev_caps != NULL)
		event_free(w.ev_caps);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_usr1);
	event_base_free(w.base);
	return 0;
}
