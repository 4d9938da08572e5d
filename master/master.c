/*
 * master.c: petrel serve — the master process.
 *
 * The master binds every configured listener, drops to user/group when
 * started as root, then starts `workers` worker processes (worker.c) and
 * the queue manager (queue/) by re-executing this binary with the same
 * command line (a fresh image for each; the listening sockets are
 * inherited and named in PETREL_WORKER_FDS, the queue manager is
 * PETREL_ROLE=queue). It restarts a process that dies (with a back-off),
 * on SIGHUP replaces all of them gracefully (new ones read the new
 * configuration; old ones drain), and on SIGTERM/SIGINT drains them and
 * exits 0. serve_run() is where the binary decides which of the three it
 * is. Under systemd (Type=notify) the master reports READY=1 once its
 * listeners are bound and its children started, RELOADING=1 then READY=1
 * around a SIGHUP, and STOPPING=1 on SIGTERM/SIGINT (notify_*).
 *
 * Trust: the master never reads from the network.
 */
#include <errno.h>
#include <limits.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/config/context.h"
#include "lib/dir/dir.h"
#include "lib/route/writable.h"
#include "lib/session/counters.h"
#include "lib/trust/domain_policy.h"
#include "master/master.h"
#include "master/serve.h"
#include "queue/manager.h"

#define MAX_WORKERS 256
#define MAX_ERRORS 5		/* kept for petrel status */

/* Services the workers run, by listener key. */
const struct service serve_services[] = {
	{ "smtp_listen", "smtp" },
	{ "submission_listen", "submission" },
	{ "submissions_listen", "submissions" },
	{ "pop3_listen", "pop3" },
	{ "pop3s_listen", "pop3s" },
	{ "imap_listen", "imap" },
	{ "imaps_listen", "imaps" },
	{ "http_listen", "http" },
	{ "https_listen", "https" },
	{ "lmtp_listen", "lmtp" },
	{ "managesieve_listen", "managesieve" },
};
const size_t serve_nservices = sizeof(serve_services) /
    sizeof(serve_services[0]);

struct listener {
	int fd;
	const char *service;
	char addr[128];
};

struct worker {
	bool queue;		/* the queue manager, not a protocol worker */
	bool auth;		/* the auth/directory process */
	pid_t pid;
	time_t started;
	bool retiring;		/* replaced after SIGHUP: do not restart */
};

struct master {
	struct petrel_ctx *ctx;
	struct event_base *base;
	struct listener listeners[MAX_LISTENERS];
	size_t nlisteners;
	struct worker workers[MAX_WORKERS];
	size_t nworkers;
	bool stopping;
	unsigned restarts;
	pid_t retiring[MAX_WORKERS];	/* replaced workers finishing up */
	size_t nretiring;
	struct event *ev_restart;
	struct node_counters *nc;	/* connections, shared by workers */
	int auth_fd;			/* the auth channel's listening socket */
	bool setids;			/* started as root: children set ids */
	uid_t wuid, auid;		/* workers' and auth process's uid */
	gid_t wgid, agid;		/* and gid */
	char auth_name[64];		/* its abstract name (no leading NUL) */
	size_t nproto;			/* protocol workers */
	time_t started;
	struct event *ev_control;	/* the control socket (petrel status) */
	int control_fd;
	char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	/* the last few children that died, for petrel status */
	struct {
		time_t at;
		char what[96];
	} errors[MAX_ERRORS];
	unsigned nerrors;		/* ever recorded */
};

/* ---- binding ---- */

static int
bind_one(const char *host, unsigned port, char *desc, size_t desclen)
{
	struct addrinfo hints, *res, *ai;
	char portstr[8];
	int fd = -1, one = 1, r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	r = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
	if (r != 0)
		fatal("cannot resolve listener %s:%u: %s", host, port,
		    gai_strerror(r));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1024) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fatal_errno("cannot listen on %s:%u", host, port);
	snprintf(desc, desclen, "%s:%u", host, port);
	return fd;
}

/* ---- socket activation: sockets passed by systemd (sd_listen_fds(3)) ----
 *
 * With LISTEN_PID naming this process, descriptors 3 .. 3+LISTEN_FDS-1 are
 * listening sockets opened for it, named in LISTEN_FDNAMES (a socket
 * unit's FileDescriptorName=, else the unit's name). A socket named after
 * a service (smtp, imaps, https, ...) serves that service; any other one
 * takes the place of the configured listener address it is bound to. One
 * that matches neither is an error: clients would connect to a socket no
 * one accepts on. */
#define LISTEN_FDS_START 3

struct inherited {
	int fd;
	const char *service;	/* the service it serves; NULL: not yet */
	char name[64];		/* from LISTEN_FDNAMES */
	char addr[128];		/* its address, for the log and errors */
	struct sockaddr_storage ss;
	socklen_t sslen;
};

static struct inherited inherited[MAX_LISTENERS];
static size_t ninherited;

static void
inherit_sockets(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	char *end;
	unsigned long n;
	long p;

	if (pid == NULL || fds == NULL)
		return;
	errno = 0;
	p = strtol(pid, &end, 10);
	if (errno != 0 || *end != '\0' || p != (long)getpid()) {
		/* meant for another process (a parent that forked us) */
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		return;
	}
	n = strtoul(fds, &end, 10);
	if (*end != '\0' || fds[0] == '\0' || n > MAX_LISTENERS)
		fatal("LISTEN_FDS: bad count '%s' (at most %d)", fds,
		    MAX_LISTENERS);
	for (unsigned long i = 0; i < n; i++) {
		struct inherited *in = &inherited[ninherited++];
		int type = 0, acc = 0, fl;
		socklen_t len = sizeof(int);
		char host[INET6_ADDRSTRLEN], port[8];

		in->fd = LISTEN_FDS_START + (int)i;
		/* the i-th name: ':'-separated, possibly fewer than n */
		if (names != NULL) {
			const char *q = names;

			for (unsigned long k = 0; k < i && q != NULL; k++) {
				q = strchr(q, ':');
				if (q != NULL)
					q++;
			}
			if (q != NULL)
				snprintf(in->name, sizeof(in->name), "%.*s",
				    (int)strcspn(q, ":"), q);
		}
		in->sslen = sizeof(in->ss);
		if (getsockopt(in->fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
		    getsockopt(in->fd, SOL_SOCKET, SO_ACCEPTCONN, &acc,
		    &len) < 0 || type != SOCK_STREAM || !acc ||
		    getsockname(in->fd, (struct sockaddr *)&in->ss,
		    &in->sslen) < 0 ||
		    (in->ss.ss_family != AF_INET &&
		    in->ss.ss_family != AF_INET6))
			fatal("socket activation: descriptor %d (%s) is not a "
			    "listening TCP socket", in->fd,
			    in->name[0] ? in->name : "unnamed");
		if (getnameinfo((struct sockaddr *)&in->ss, in->sslen, host,
		    sizeof(host), port, sizeof(port),
		    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			fatal("socket activation: descriptor %d: no address",
			    in->fd);
		snprintf(in->addr, sizeof(in->addr),
		    in->ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
		    port);
		fl = fcntl(in->fd, F_GETFL);
		fcntl(in->fd, F_SETFL, fl | O_NONBLOCK);
		fcntl(in->fd, F_SETFD, FD_CLOEXEC);
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

static bool
same_address(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (b->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	} else {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
}

/* The inherited socket bound to host:port, or NULL. */
static struct inherited *
inherited_at(const char *host, unsigned port)
{
	struct addrinfo hints, *res, *ai;
	struct inherited *found = NULL;
	char portstr[8];

	if (ninherited == 0)
		return NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res) != 0)
		return NULL;	/* bind_one says why */
	for (ai = res; ai != NULL && found == NULL; ai = ai->ai_next)
		for (size_t i = 0; i < ninherited && found == NULL; i++)
			if (same_address(&inherited[i].ss, ai->ai_addr))
				found = &inherited[i];
	freeaddrinfo(res);
	return found;
}

static struct listener *
listener_add(struct master *m, const char *service)
{
	struct listener *li;

	if (m->nlisteners == MAX_LISTENERS)
		fatal("too many listeners");
	li = &m->listeners[m->nlisteners++];
	li->service = service;
	return li;
}

static void
bind_all(struct master *m)
{
	inherit_sockets();
	/* sockets named after a service serve it */
	for (size_t i = 0; i < ninherited; i++)
		for (size_t s = 0; s < serve_nservices; s++) {
			struct listener *li;

			if (strcmp(inherited[i].name,
			    serve_services[s].name) != 0)
				continue;
			inherited[i].service = serve_services[s].name;
			li = listener_add(m, inherited[i].service);
			li->fd = inherited[i].fd;
			snprintf(li->addr, sizeof(li->addr), "%s",
			    inherited[i].addr);
			log_info("listening on %s (%s, from systemd)",
			    li->addr, li->service);
		}
	for (size_t s = 0; s < serve_nservices; s++) {
		struct config_listen *l = NULL;
		size_t n = 0;
		char *err = NULL;

		if (config_parse_listen(config_get(m->ctx->cfg,
		    serve_services[s].key), &l, &n, &err) < 0)
			fatal("%s", err);
		for (size_t i = 0; i < n; i++) {
			struct inherited *in = inherited_at(l[i].host,
			    l[i].port);
			struct listener *li;

			if (in != NULL && in->service != NULL) {
				if (strcmp(in->service,
				    serve_services[s].name) == 0)
					continue;	/* named already */
				fatal("socket activation: %s (%s) is for %s "
				    "but %s lists it", in->addr, in->name,
				    in->service, serve_services[s].key);
			}
			li = listener_add(m, serve_services[s].name);
			if (in != NULL) {
				in->service = li->service;
				li->fd = in->fd;
				snprintf(li->addr, sizeof(li->addr), "%s",
				    in->addr);
				log_info("listening on %s (%s, from systemd)",
				    li->addr, li->service);
				continue;
			}
			li->fd = bind_one(l[i].host, l[i].port, li->addr,
			    sizeof(li->addr));
			log_info("listening on %s (%s)", li->addr, li->service);
		}
		config_listen_free(&l, n);
	}
	for (size_t i = 0; i < ninherited; i++)
		if (inherited[i].service == NULL)
			fatal("socket activation: %s (%s) is no listener's: "
			    "name it after a service (FileDescriptorName=smtp, "
			    "imaps, ...) or list its address in a *_listen "
			    "key", inherited[i].addr, inherited[i].name[0] ?
			    inherited[i].name : "unnamed");
}

/* The auth channel: a listening socket in the abstract namespace (no
 * file to clean up or to protect with modes; the auth process checks
 * each peer's uid with SO_PEERCRED), bound once so that it outlives
 * restarts of the auth process. */
static void
bind_auth(struct master *m)
{
	struct sockaddr_un sun;
	size_t n;

	snprintf(m->auth_name, sizeof(m->auth_name), "petrel-auth.%ld.%ld",
	    (long)getpid(), (long)time(NULL));
	n = strlen(m->auth_name);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path + 1, m->auth_name, n);
	m->auth_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (m->auth_fd < 0 || bind(m->auth_fd, (struct sockaddr *)&sun,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) < 0 ||
	    listen(m->auth_fd, 1024) < 0)
		fatal_errno("cannot create the auth channel");
}

/* ---- the control socket: petrel status ---- */

/* What `petrel status` shows, written to each client that connects to
 * QUEUE_DIR/control; the master reads nothing from it. Lines of "name
 * value..." words, stable for scripts. */
static void
control_status(struct master *m, str_t *out)
{
	time_t now = time(NULL);

	str_printf(out, "petrel %s\npid %ld\nuptime %lld\nconfig %s\n",
	    PETREL_VERSION, (long)getpid(), (long long)(now - m->started),
	    m->ctx->conf_path ? m->ctx->conf_path : "(defaults)");
	for (size_t i = 0; i < m->nworkers; i++) {
		const struct worker *w = &m->workers[i];
		const char *role = w->auth ? "auth" : w->queue ? "queue" :
		    "worker";

		if (w->pid > 0)
			str_printf(out, "process %s %ld up %lld\n", role,
			    (long)w->pid, (long long)(now - w->started));
		else
			str_printf(out, "process %s - down\n", role);
	}
	for (size_t i = 0; i < m->nretiring; i++)
		str_printf(out, "process retiring %ld draining\n",
		    (long)m->retiring[i]);
	for (size_t i = 0; i < m->nlisteners; i++)
		str_printf(out, "listener %s %s\n", m->listeners[i].service,
		    m->listeners[i].addr);
	for (size_t s = 0; s < serve_nservices; s++) {
		char key[64];

		snprintf(key, sizeof(key), "%s_max_connections",
		    serve_services[s].name);
		str_printf(out, "connections %s %u max %llu\n",
		    serve_services[s].name,
		    m->nc != NULL ? node_counters_total(m->nc, (unsigned)s) : 0,
		    (unsigned long long)config_get_uint(m->ctx->cfg, key));
	}
	str_printf(out, "logins ok %llu failed %llu\n"
	    "messages received %llu\nrestarts %u\n",
	    (unsigned long long)node_counters_events(m->nc,
	    NODE_EVENT_LOGIN_OK),
	    (unsigned long long)node_counters_events(m->nc,
	    NODE_EVENT_LOGIN_FAILED),
	    (unsigned long long)node_counters_events(m->nc,
	    NODE_EVENT_MESSAGE_RECEIVED), m->restarts);
	/* the last errors, oldest first: "error SECONDS-AGO text" */
	for (unsigned k = m->nerrors > MAX_ERRORS ? m->nerrors - MAX_ERRORS :
	    0; k < m->nerrors; k++)
		str_printf(out, "error %lld %s\n",
		    (long long)(now - m->errors[k % MAX_ERRORS].at),
		    m->errors[k % MAX_ERRORS].what);
}

static void
control_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct master *m = arg;
	str_t out = STR_INIT;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	control_status(m, &out);
	/* a few hundred octets into an empty socket buffer: one send, and a
	 * client that does not read cannot hold the master up */
	(void)!send(fd, out.data, out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	str_free(&out);
	close(fd);
}

/* QUEUE_DIR/control, made by the workers' account (after the drop), mode
 * 0660: root and the service account may ask. A socket there that
 * answers belongs to another running master: left alone. */
static void
control_open(struct master *m)
{
	struct sockaddr_un sun;
	const char *qdir = config_get(m->ctx->cfg, "queue_dir");
	int fd;

	m->control_fd = -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control",
	    qdir) >= sizeof(sun.sun_path)) {
		log_warn("%s/control: path too long for a socket; no petrel "
		    "status", qdir);
		return;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		log_warn("%s: another petrel serve answers there; no petrel "
		    "status for this one", sun.sun_path);
		close(fd);
		return;
	}
	close(fd);
	unlink(sun.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(sun.sun_path, 0660) < 0 || listen(fd, 16) < 0) {
		log_warn("%s: cannot make the control socket: %s; no petrel "
		    "status", sun.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	m->control_fd = fd;
	snprintf(m->control_path, sizeof(m->control_path), "%s",
	    sun.sun_path);
	m->ev_control = event_new(m->base, fd, EV_READ | EV_PERSIST,
	    control_accept, m);
	event_add(m->ev_control, NULL);
}

static void
control_close(struct master *m)
{
	if (m->ev_control != NULL)
		event_free(m->ev_control);
	if (m->control_fd >= 0) {
		close(m->control_fd);
		unlink(m->control_path);
	}
}

/* ---- systemd notifications ---- */

/* sd_notify(3)'s protocol: one datagram per state change to the socket
 * named in $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace).
 * A dozen lines, so no libsystemd. The socket is connected before the
 * privileges are dropped (the check of its mode happens then), and the
 * variable is removed so that the children, which are not the service's
 * main process, say nothing. */
static int notify_fd = -1;

static void
notify_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	size_t n;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	n = strlen(path);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (n < 2 || n >= sizeof(sun.sun_path)) {
		log_warn("NOTIFY_SOCKET: unusable address");
		unsetenv("NOTIFY_SOCKET");
		return;
	}
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd < 0 || connect(notify_fd, (struct sockaddr *)&sun,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0) {
		log_warn("NOTIFY_SOCKET %s: %s", path, strerror(errno));
		if (notify_fd >= 0)
			close(notify_fd);
		notify_fd = -1;
	}
	unsetenv("NOTIFY_SOCKET");
}

static void
notify(const char *state)
{
	if (notify_fd < 0)
		return;
	if (send(notify_fd, state, strlen(state), MSG_NOSIGNAL) < 0)
		log_warn("NOTIFY_SOCKET: %s", strerror(errno));
}

/* RELOADING=1 with the time systemd 253 and later want beside it (older
 * ones ignore the field). */
static void
notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	notify(msg);
}

/* ---- privileges ---- */

/* The auth process's account: auth_user, or `user` (with a warning) when
 * that account does not exist. */
static struct passwd *
auth_account(struct petrel_ctx *ctx, const char *user)
{
	const char *auth_user = config_get(ctx->cfg, "auth_user");
	struct passwd *pw = NULL;

	if (auth_user[0] != '\0')
		pw = getpwnam(auth_user);
	if (pw == NULL) {
		log_warn("auth_user %s does not exist: the auth process runs "
		    "as %s and shares the workers' uid (create the account, "
		    "e.g. with `petrel init` as root)", auth_user, user);
		pw = getpwnam(user);
	}
	return pw;
}

/* Started as root: become `user`/`group`, keeping the auth account in the
 * saved set-user-ID (and its group in the saved set-group-ID), so that a
 * child can take either identity with no privilege (setresuid(2) lets a
 * process pick any of its real, effective and saved ids) and nothing can
 * become root again. A child then drops the other one for good before it
 * executes (spawn_worker). Not root: every process keeps the current
 * ids. */
static void
drop_privileges(struct master *m, struct petrel_ctx *ctx)
{
	const char *user = config_get(ctx->cfg, "user");
	const char *group = config_get(ctx->cfg, "group");
	struct passwd *pw, *apw;
	struct group *gr;

	if (geteuid() != 0)
		return;
	if (user[0] == '\0')
		fatal("started as root: set `user` (and `group`) to the "
		    "account petrel runs as");
	pw = getpwnam(user);
	if (pw == NULL)
		fatal("user %s does not exist", user);
	gr = getgrnam(group[0] ? group : user);
	if (gr == NULL)
		fatal("group %s does not exist", group[0] ? group : user);
	if (pw->pw_uid == 0) {
		/* the workers can read everything: there is no boundary
		 * for a separate auth account to keep */
		log_warn("user = %s: running as root, the auth process too",
		    user);
		return;
	}
	m->wuid = pw->pw_uid;
	m->wgid = gr->gr_gid;
	apw = auth_account(ctx, user);
	if (apw == NULL)
		fatal("user %s does not exist", user);
	m->auid = apw->pw_uid;
	/* (getpwnam's record was overwritten: compare with the saved uid) */
	m->agid = apw->pw_uid == m->wuid ? m->wgid : apw->pw_gid;
	if (m->auid == 0)
		fatal("auth_user %s is root: name an unprivileged account",
		    apw->pw_name);
	m->setids = true;
	if (setgroups(0, NULL) < 0 || setresgid(m->wgid, m->wgid,
	    m->agid) < 0 || setresuid(m->wuid, m->wuid, m->auid) < 0)
		fatal_errno("cannot drop privileges to %s:%s", user,
		    gr->gr_name);
	if (setuid(0) == 0)
		fatal("privileges not dropped: setuid(0) succeeded");
	log_info("running as %s:%s, the auth process as uid %ld gid %ld",
	    user, gr->gr_name, (long)m->auid, (long)m->agid);
}

/* In a child before it executes: keep one identity for good. */
static int
child_setids(const struct master *m, bool auth)
{
	uid_t uid = auth ? m->auid : m->wuid;
	gid_t gid = auth ? m->agid : m->wgid;

	if (!m->setids)
		return 0;
	if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -1;
	return 0;
}

/* The command line for a child that is not the auth process: a database
 * URL given with -o loses its password (the child re-reads the
 * configuration from argv; it must not see it). */
static char **
child_argv(char **argv)
{
	size_t n = 0;
	char **out;

	while (argv[n] != NULL)
		n++;
	out = xcalloc(n + 1, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		const char *a = argv[i], *v;

		if (strncmp(a, "-o", 2) == 0 && a[2] != '\0')
			a += 2;
		v = a;
		while (*v == ' ' || *v == '\t')
			v++;
		if (strncmp(v, "database", 8) == 0) {
			const char *e = v + 8;

			while (*e == ' ' || *e == '\t')
				e++;
			if (*e == '=') {
				e++;
				while (*e == ' ' || *e == '\t')
					e++;
				out[i] = xasprintf("%.*sdatabase=%s",
				    (int)(a - argv[i]), argv[i],
				    dir_url_redacted(e));
				continue;
			}
		}
		out[i] = argv[i];
	}
	return out;
}

/* ---- workers ---- */

static pid_t
spawn_worker(struct master *m, size_t slot)
{
	str_t fds = STR_INIT;
	pid_t pid, parent;
	int region = -1;

	/* every child counts in a region of its own (the queue manager
	 * and the auth process their events, /metrics their memory) */
	if (m->nc != NULL)
		region = node_counters_take(m->nc);
	for (size_t i = 0; i < m->nlisteners; i++)
		str_printf(&fds, "%s%s=%d", i ? "," : "",
		    m->listeners[i].service, m->listeners[i].fd);
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		log_error_errno("fork");
		str_free(&fds);
		node_counters_owner(m->nc, region, 0);
		return -1;
	}
	if (pid == 0) {
		char slotstr[24];
		char **argv = m->ctx->argv;

		/* The auth process's account may not read the configuration
		 * file: it gets a descriptor opened with the workers' ids. */
		if (m->workers[slot].auth && m->setids &&
		    m->ctx->conf_path != NULL) {
			int cfd = open(m->ctx->conf_path, O_RDONLY);
			char cfdstr[16];

			if (cfd < 0) {
				log_error_errno("auth process: %s",
				    m->ctx->conf_path);
				_exit(1);
			}
			snprintf(cfdstr, sizeof(cfdstr), "%d", cfd);
			setenv("PETREL_CONF_FD", cfdstr, 1);
		}
		/* First the ids (a change of ids clears the parent-death
		 * signal set below). */
		if (child_setids(m, m->workers[slot].auth) < 0) {
			log_error_errno("worker %zu: cannot set its ids", slot);
			_exit(1);
		}
		if (!m->workers[slot].auth)
			argv = child_argv(m->ctx->argv);
		/* If the master dies (even by SIGKILL), its children stop
		 * too: a worker drains like on SIGTERM and closes its
		 * listeners at once, so a new master can bind the ports, and
		 * no queue manager is left to race a new one. The signal
		 * survives exec; the getppid() check closes the race with a
		 * master that died before prctl(). */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 ||
		    getppid() != parent)
			_exit(1);
		/* Only protocol workers inherit the listening sockets. */
		for (size_t i = 0; i < m->nlisteners &&
		    !m->workers[slot].queue && !m->workers[slot].auth; i++) {
			int fl = fcntl(m->listeners[i].fd, F_GETFD);

			fcntl(m->listeners[i].fd, F_SETFD, fl & ~FD_CLOEXEC);
		}
		if (region >= 0) {
			int cfd = node_counters_fd(m->nc);
			char env[48];

			fcntl(cfd, F_SETFD, fcntl(cfd, F_GETFD) & ~FD_CLOEXEC);
			snprintf(env, sizeof(env), "%d:%d", cfd, region);
			setenv("PETREL_COUNTERS", env, 1);
		}
		snprintf(slotstr, sizeof(slotstr), "%zu", slot);
		setenv("PETREL_AUTH_SOCKET", m->auth_name, 1);
		if (m->workers[slot].auth) {
			char fdstr[16];

			fcntl(m->auth_fd, F_SETFD, 0);
			snprintf(fdstr, sizeof(fdstr), "%d", m->auth_fd);
			setenv("PETREL_AUTH_FD", fdstr, 1);
			setenv("PETREL_ROLE", "auth", 1);
		} else if (m->workers[slot].queue)
			setenv("PETREL_ROLE", "queue", 1);
		else
			setenv("PETREL_WORKER_FDS", str_c(&fds), 1);
		setenv("PETREL_WORKER_SLOT", slotstr, 1);
		snprintf(slotstr, sizeof(slotstr), "%zu", m->nproto > 0 ?
		    m->nproto : 1);
		setenv("PETREL_WORKERS", slotstr, 1);
		/* The binary's own path rather than "/proc/self/exe": the
		 * same file, but a tool that runs petrel (valgrind) sees an
		 * exec of petrel and follows it. A binary replaced since
		 * start ("... (deleted)") is run as before, by its inode. */
		{
			char self[PATH_MAX];
			ssize_t n = readlink("/proc/self/exe", self,
			    sizeof(self) - 1);

			if (n > 0) {
				self[n] = '\0';
				if (strstr(self, " (deleted)") == NULL)
					execv(self, argv);
			}
		}
		execv("/proc/self/exe", argv);
		log_error_errno("exec /proc/self/exe");
		_exit(127);
	}
	str_free(&fds);
	if (region >= 0)
		node_counters_owner(m->nc, region, pid);
	m->workers[slot].pid = pid;
	m->workers[slot].started = time(NULL);
	m->workers[slot].retiring = false;
	return pid;
}

/* kill(2) a child. The auth process runs under the auth account, which
 * the master may signal only with that effective uid (kept as its saved
 * uid for this, drop_privileges). */
static void
master_kill(const struct master *m, pid_t pid, int sig)
{
	if (kill(pid, sig) == 0 || errno != EPERM || !m->setids)
		return;
	if (seteuid(m->auid) == 0) {
		kill(pid, sig);
		if (seteuid(m->wuid) < 0)
			fatal_errno("cannot return to uid %ld", (long)m->wuid);
	}
}

/* Signal every child but the auth process, which the others may still
 * need while they drain (stop_auth_when_alone). */
static void
signal_workers(struct master *m, int sig)
{
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid > 0 && !m->workers[i].auth)
			master_kill(m, m->workers[i].pid, sig);
	for (size_t i = 0; i < m->nretiring; i++)
		master_kill(m, m->retiring[i], sig);
}

static size_t
live_workers(const struct master *m)
{
	size_t n = m->nretiring;

	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid > 0)
			n++;
	return n;
}

/* Stopping: once the workers and the queue manager are gone (their last
 * sessions answered, with routes and logins from the auth process), stop
 * the auth process too. */
static void
stop_auth_when_alone(struct master *m)
{
	size_t others = m->nretiring;

	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid > 0 && !m->workers[i].auth)
			others++;
	if (others > 0)
		return;
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid > 0 && m->workers[i].auth)
			master_kill(m, m->workers[i].pid, SIGTERM);
}

static void
master_respawn(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;

	if (m->stopping)
		return;
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid == 0 && spawn_worker(m, i) > 0)
			log_info("worker %zu restarted (pid %ld)", i,
			    (long)m->workers[i].pid);
}

/* Log an error about a child and keep it for petrel status. */
static void __attribute__((format(printf, 2, 3)))
record_error(struct master *m, const char *fmt, ...)
{
	unsigned slot = m->nerrors++ % MAX_ERRORS;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->errors[slot].what, sizeof(m->errors[slot].what), fmt,
	    ap);
	va_end(ap);
	m->errors[slot].at = time(NULL);
	log_error("%s", m->errors[slot].what);
}

static void
master_child(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		/* its sessions are gone: they stop counting */
		if (m->nc != NULL)
			node_counters_release(m->nc, pid);
		for (size_t i = 0; i < m->nretiring; i++) {
			if (m->retiring[i] == pid) {
				m->retiring[i] = m->retiring[--m->nretiring];
				log_info("retired worker (pid %ld) finished",
				    (long)pid);
				break;
			}
		}
		for (size_t i = 0; i < m->nworkers; i++) {
			struct worker *w = &m->workers[i];

			if (w->pid != pid)
				continue;
			if (WIFSIGNALED(status) && m->stopping &&
			    WTERMSIG(status) == SIGTERM)
				;	/* stopped before its handler was set */
			else if (WIFSIGNALED(status))
				record_error(m, "worker %zu (pid %ld) killed by "
				    "signal %d", i, (long)pid, WTERMSIG(status));
			else if (WEXITSTATUS(status) != 0 && !m->stopping)
				record_error(m, "worker %zu (pid %ld) exited "
				    "with status %d", i, (long)pid,
				    WEXITSTATUS(status));
			w->pid = 0;
			if (!m->stopping) {
				/* Back off when workers die young. */
				struct timeval tv = { 0, 100000 };

				if (time(NULL) - w->started < 5 &&
				    ++m->restarts > 3)
					tv.tv_sec = 5;
				event_add(m->ev_restart, &tv);
			}
		}
	}
	if (m->stopping)
		stop_auth_when_alone(m);
	if (m->stopping && live_workers(m) == 0)
		event_base_loopbreak(m->base);
}

static void
master_stop(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;

	log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	if (!m->stopping)
		notify("STOPPING=1");
	m->stopping = true;
	signal_workers(m, SIGTERM);
	stop_auth_when_alone(m);
	if (live_workers(m) == 0)
		event_base_loopbreak(m->base);
}

static void
master_reload(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	struct config *cfg;
	struct domain_policies *pol;
	char *err = NULL;

	if (m->stopping)
		return;
	notify_reloading();
	if (m->ctx->conf_path != NULL) {
		cfg = config_new();
		if (config_load_file(cfg, m->ctx->conf_path, &err) < 0) {
			log_error("SIGHUP: keeping the old configuration: %s",
			    err);
			free(err);
			config_free(&cfg);
			/* the reload is over: the old configuration runs */
			notify("READY=1\nSTATUS=SIGHUP: configuration "
			    "unchanged (an error in the file)");
			return;
		}
		/* the new workers take the command line's -o over the
		 * file: so does this look at what they will load */
		for (int i = 1; i + 1 < m->ctx->argc &&
		    m->ctx->argv[i][0] == '-'; i++) {
			char *oerr = NULL;

			if (strcmp(m->ctx->argv[i], "-c") == 0) {
				i++;
			} else if (strcmp(m->ctx->argv[i], "-o") == 0) {
				if (config_override(cfg, m->ctx->argv[++i],
				    &oerr) < 0)
					free(oerr);
			} else if (strncmp(m->ctx->argv[i], "-o", 2) == 0 &&
			    config_override(cfg, m->ctx->argv[i] + 2, &oerr) <
			    0) {
				free(oerr);
			}
		}
		if (domain_policies_load(config_get(cfg, "domain_policy_file"),
		    &pol, &err) < 0) {
			/* the file admins edit before a SIGHUP: a line
			 * wrong there must not take the workers down */
			log_error("SIGHUP: keeping the old configuration: "
			    "domain_policy_file: %s", err);
			free(err);
			config_free(&cfg);
			notify("READY=1\nSTATUS=SIGHUP: configuration "
			    "unchanged (an error in domain_policy_file)");
			return;
		}
		domain_policies_free(pol);
		config_free(&cfg);
	}
	/* Replace the workers: the new ones read the file afresh, the old
	 * ones finish their sessions. Listener changes need a restart. */
	log_info("SIGHUP: configuration reloaded, replacing workers");
	for (size_t i = 0; i < m->nworkers; i++) {
		pid_t old = m->workers[i].pid;

		if (old <= 0)
			continue;
		/* Retire: stop accepting, finish every session. The queue
		 * manager just stops: its state is on disk. */
		master_kill(m, old, m->workers[i].queue || m->workers[i].auth ?
		    SIGTERM : SIGUSR1);
		if (m->nretiring < MAX_WORKERS)
			m->retiring[m->nretiring++] = old;
		/* The old process is reaped by master_child; its slot is
		 * taken over now. */
		spawn_worker(m, i);
	}
	notify("READY=1\nSTATUS=configuration reloaded");
}

static int
run_master(struct petrel_ctx *ctx, const char **error_r)
{
	struct master m;
	struct event *ev_term, *ev_int, *ev_hup, *ev_chld;
	struct dir_url url;
	const char *err;

	memset(&m, 0, sizeof(m));
	m.ctx = ctx;
	/* The URL is checked here; only the auth process opens it. */
	if (dir_url_parse(config_get(ctx->cfg, "database"), &url, &err) < 0) {
		*error_r = xasprintf("bad database URL: %s", err);
		return -1;
	}
	dir_url_clear(&url);

	bind_all(&m);
	bind_auth(&m);
	notify_open();
	drop_privileges(&m, ctx);

	m.base = event_base_new();
	if (m.base == NULL)
		fatal("cannot create the event loop");
	m.started = time(NULL);
	control_open(&m);
	ev_term = evsignal_new(m.base, SIGTERM, master_stop, &m);
	ev_int = evsignal_new(m.base, SIGINT, master_stop, &m);
	ev_hup = evsignal_new(m.base, SIGHUP, master_reload, &m);
	ev_chld = evsignal_new(m.base, SIGCHLD, master_child, &m);
	m.ev_restart = evtimer_new(m.base, master_respawn, &m);
	if (event_add(ev_term, NULL) < 0 || event_add(ev_int, NULL) < 0 ||
	    event_add(ev_hup, NULL) < 0 || event_add(ev_chld, NULL) < 0)
		fatal("cannot install signal handlers");

	m.nworkers = m.nlisteners > 0 ?
	    (size_t)config_get_uint(ctx->cfg, "workers") : 0;
	if (m.nworkers > MAX_WORKERS - 2)
		m.nworkers = MAX_WORKERS - 2;
	if (m.nlisteners > 0 && m.nworkers == 0)
		m.nworkers = 1;
	/* Connection limits hold for the node: one count shared by the
	 * workers, with room for the replaced ones still draining after a
	 * few reloads. */
	if (m.nworkers > 0) {
		m.nc = node_counters_create((unsigned)(m.nworkers + 2) * 4,
		    (unsigned)serve_nservices, &err);
		if (m.nc == NULL)
			log_warn("%s; connection limits counted per worker", err);
	}
	m.nproto = m.nworkers;
	/* The queue manager runs in the slot after the workers, the auth
	 * process in the last one; it starts first. */
	m.workers[m.nworkers].queue = true;
	m.nworkers++;
	m.workers[m.nworkers].auth = true;
	m.nworkers++;
	spawn_worker(&m, m.nworkers - 1);
	for (size_t i = 0; i < m.nworkers - 1; i++)
		spawn_worker(&m, i);
	log_info("petrel %s started (pid %ld, %zu worker(s), config %s, "
	    "database %s)", PETREL_VERSION, (long)getpid(), m.nworkers,
	    ctx->conf_path ? ctx->conf_path : "(defaults)",
	    config_get(ctx->cfg, "database"));
	/* The listeners were bound and listen(2)ed before the workers
	 * started: a client that connects from now on is served. */
	notify("READY=1\nSTATUS=accepting connections");
	event_base_dispatch(m.base);

	/* Wait for workers that are still draining. */
	while (live_workers(&m) > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);

		if (pid < 0 && errno != EINTR)
			break;
		for (size_t i = 0; i < m.nworkers; i++)
			if (m.workers[i].pid == pid)
				m.workers[i].pid = 0;
		for (size_t i = 0; i < m.nretiring; i++)
			if (m.retiring[i] == pid)
				m.retiring[i] = m.retiring[--m.nretiring];
	}
	for (size_t i = 0; i < m.nlisteners; i++)
		close(m.listeners[i].fd);
	close(m.auth_fd);
	/* No child to start or signal any more: give up the auth account's
	 * saved ids too (a process whose saved ids differ from its real
	 * ones cannot be traced by its own uid, which LeakSanitizer's check
	 * at exit needs). */
	if (m.setids && (setresgid(m.wgid, m.wgid, m.wgid) < 0 ||
	    setresuid(m.wuid, m.wuid, m.wuid) < 0))
		log_warn("cannot give up the auth account's ids: %s",
		    strerror(errno));
	control_close(&m);
	node_counters_free(&m.nc);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(ev_chld);
	event_free(m.ev_restart);
	event_base_free(m.base);
	if (notify_fd >= 0)
		close(notify_fd);
	log_info("stopped");
	return 0;
}

/* Every connection is a descriptor: take the hard limit as the soft one
 * (a shell's default of 1024 would refuse the 1025th IMAP client). */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("setrlimit(RLIMIT_NOFILE): %s",
			    strerror(errno));
	}
}

/* Before anything listens: the maildirs the workers cannot write (SPEC
 * 6.1). A delivery to one would answer 451 for as long as it lasts, so
 * serve does not start; `petrel check` lists every one. */
#define MAILDIRS_NAMED 5

static int
check_maildirs(struct petrel_ctx *ctx, const char **error_r)
{
	struct writable_report rep;
	const char *user = config_get(ctx->cfg, "user");
	char *err = NULL;
	str_t msg = STR_INIT;

	if (writable_check(ctx->cfg, &rep, &err) < 0) {
		log_warn("maildirs not checked: %s", err);
		free(err);
		return 0;
	}
	if (rep.skipped != NULL)
		log_warn("maildirs not checked: %s", rep.skipped);
	if (rep.truncated)
		log_warn("maildirs of the first %u users checked, the rest "
		    "not", (unsigned)WRITABLE_USERS_MAX);
	if (rep.npaths == 0) {
		writable_report_clear(&rep);
		return 0;
	}
	str_printf(&msg, "%zu maildir(s) not writable by %s: ", rep.npaths,
	    geteuid() == 0 && user[0] != '\0' ? user : "this account");
	for (size_t i = 0; i < rep.npaths && i < MAILDIRS_NAMED; i++)
		str_printf(&msg, "%s%s", i > 0 ? ", " : "", rep.paths[i]);
	if (rep.npaths > MAILDIRS_NAMED)
		str_printf(&msg, " and %zu more",
		    rep.npaths - MAILDIRS_NAMED);
	str_append(&msg, " (give them to that account, or see petrel check; "
	    "not starting)");
	*error_r = str_steal(&msg);
	writable_report_clear(&rep);
	return -1;
}

int
serve_run(struct petrel_ctx *ctx, const char **error_r)
{
	const char *fds = getenv("PETREL_WORKER_FDS");
	enum log_level lvl;

	raise_fd_limit();
	log_init(fds ? "petrel/worker" : "petrel", true);
	if (log_parse_level(config_get(ctx->cfg, "log_level"), &lvl) == 0)
		log_set_level(lvl);
	if (strcmp(config_get(ctx->cfg, "log_target"), "syslog") == 0 &&
	    log_open_syslog(config_get(ctx->cfg, "syslog_socket"), error_r) <
	    0)
		return -1;
	if (strcmp(config_get(ctx->cfg, "log_target"), "journald") == 0 &&
	    log_open_journald(config_get(ctx->cfg, "journald_socket"),
	    error_r) < 0)
		return -1;
	/* syslog program names (Postfix's where they exist); the
	 * protocols' sessions set their own (lib/session) */
	if (getenv("PETREL_ROLE") == NULL && fds == NULL)
		log_service_set("master");
	signal(SIGPIPE, SIG_IGN);
	if (config_get(ctx->cfg, "hostname")[0] == '\0') {
		char host[256] = "localhost", *err = NULL;

		gethostname(host, sizeof(host) - 1);
		config_set(ctx->cfg, "hostname", host, &err);
		free(err);
	}
	if (getenv("PETREL_ROLE") != NULL &&
	    strcmp(getenv("PETREL_ROLE"), "auth") == 0) {
		log_init("petrel/auth", true);
		log_service_set("auth");
		return authd_run(ctx);
	}
	if (getenv("PETREL_ROLE") == NULL && fds == NULL &&
	    check_maildirs(ctx, error_r) < 0)
		return -1;
	/* Every other process (master, workers, queue manager) forgets the
	 * database password at once (the value is wiped, config.c): only
	 * the auth process opens the directory. */
	{
		char *redacted = xstrdup(dir_url_redacted(config_get(ctx->cfg,
		    "database")));
		char *err = NULL;

		if (config_set(ctx->cfg, "database", redacted, &err) < 0)
			free(err);
		free(redacted);
	}
	if (getenv("PETREL_ROLE") != NULL &&
	    strcmp(getenv("PETREL_ROLE"), "queue") == 0) {
		log_init("petrel/queue", true);
		log_service_set("qmgr");
		return queue_manager_run(ctx);
	}
	if (fds != NULL)
		return worker_run(ctx, fds);
	return run_master(ctx, error_r);
}
