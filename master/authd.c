/*
 * authd.c: petrel serve — the auth/directory process.
 *
 * Started by the master (master.c) with PETREL_ROLE=auth and the
 * listening socket of the auth channel in PETREL_AUTH_FD (bound by the
 * master before any child starts, so it outlives a restart of this
 * process: a worker's connection made meanwhile waits in the backlog).
 * It alone opens the SQL directory, reads database_password_file and
 * sees password hashes; workers and the queue manager ask it over
 * lib/authd/proto.h. It runs as auth_user (the master set its ids before
 * executing it) and reads the configuration from a descriptor the master
 * opened (PETREL_CONF_FD, main.c). It checks the passwords, so the
 * password-guessing limits (lib/auth/throttle.h) count here: one count
 * per node, whatever the number of workers. Each connection is served by
 * a thread of its own with its own directory handle, blocking.
 *
 * Trust: a peer is a worker, which reads the network and may be
 * compromised. Only peers running as this process's uid, the workers'
 * `user` or root are served (SO_PEERCRED); a malformed frame closes the
 * connection; a login reply never carries the crypt hash or the cleartext
 * column; the password of a request is wiped from the frame buffer and the
 * decoded message. CRAM-MD5 is checked here: the worker sends the
 * challenge it made and the client's digest, and this process computes
 * the expected digest from the cleartext password and compares.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/auth/login.h"
#include "lib/auth/password.h"
#include "lib/authd/proto.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/config/context.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"
#include "lib/route/route.h"
#include "lib/session/counters.h"
#include "lib/tls/tls.h"
#include "lib/trust/srs.h"
#include "master/serve.h"

struct authd_conn {
	int fd;
	const struct config *cfg;
};

static uid_t worker_uid = (uid_t)-1;
/* proxy_secret, read once at start; NULL or "": proxied sessions are
 * refused */
static char *proxy_secret;

/* Whether given is proxy_secret, in time that does not depend on where
 * they differ (both digested first, then compared whole). */
static bool
proxy_secret_ok(const char *given)
{
	unsigned char a[32], b[32];
	volatile unsigned char diff = 0;

	if (proxy_secret == NULL || proxy_secret[0] == '\0' || given == NULL)
		return false;
	crypto_sha256(given, strlen(given), a);
	crypto_sha256(proxy_secret, strlen(proxy_secret), b);
	for (size_t i = 0; i < sizeof(a); i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static void
observe_query(double seconds)
{
	node_counters_observe(node_counters_self(), NODE_HIST_DIRECTORY,
	    seconds);
}

static uint8_t
dir_to_status(int r)
{
	switch (r) {
	case DIR_OK: return AUTHD_OK;
	case DIR_NOTFOUND: return AUTHD_NOTFOUND;
	case DIR_FAIL: return AUTHD_FAIL;
	}
	return AUTHD_TEMPFAIL;
}

/* Answer one request into out. */
static void
authd_answer(struct dir *dir, const struct config *cfg,
    const struct authd_msg *req, str_t *out)
{
	struct authd_msg rep;
	const char *err;
	int r;

	memset(&rep, 0, sizeof(rep));
	switch (req->kind) {
	case AUTHD_ROUTE_REQ: {
		struct route_config rc;
		struct route_result res;
		struct authd_dest *d = NULL;

		rc.mail_root = config_get(cfg, "mail_root");
		rc.delimiter = config_get(cfg, "recipient_delimiter");
		rc.local_domain = config_get(cfg, "local_domain");
		rc.catchall_first = strcmp(config_get(cfg, "catchall_order"),
		    "postfix") == 0;
		rc.lmtp_port = strcmp(config_get(cfg, "role"), "frontend") ==
		    0 ? config_get_port(cfg, "backend_ports", 0) : 0;
		rc.backend_default = config_get(cfg, "backend_default");
		rc.moved_lmtp_port = config_get_port(cfg, "backend_ports", 0);
		dir_read_begin(dir);
		route_resolve(dir, &rc, req->address, req->may_relay, &res);
		dir_read_end(dir);
		/* the worker says "directory unavailable"; why is said here */
		if (res.status == ROUTE_TEMPFAIL && !res.logged)
			log_warn("route %s: directory unavailable: %s",
			    req->address, res.text ? res.text : "?");
		rep.kind = AUTHD_ROUTE_REP;
		rep.status = (uint8_t)res.status;
		rep.text = res.text;
		if (res.ndests > AUTHD_DESTS_MAX) {
			rep.status = ROUTE_CONFIG;
			rep.text = "too many destinations";
			res.ndests = 0;
		}
		if (res.ndests > 0)
			d = xcalloc(res.ndests, sizeof(*d));
		for (size_t i = 0; i < res.ndests; i++) {
			d[i].kind = (uint8_t)res.dests[i].kind;
			d[i].address = res.dests[i].address;
			d[i].maildir = res.dests[i].maildir;
			d[i].home = res.dests[i].home;
			d[i].transport = res.dests[i].transport;
			d[i].quota = res.dests[i].quota;
		}
		rep.dests = d;
		rep.ndests = res.ndests;
		if (authd_encode(out, &rep) < 0) {
			struct authd_msg tf = { .kind = AUTHD_ROUTE_REP,
			    .status = ROUTE_CONFIG,
			    .text = "directory answer over a bound" };

			log_warn("route %s: answer over a bound", req->address);
			authd_encode(out, &tf);
		}
		free(d);
		route_result_clear(&res);
		return;
	}
	case AUTHD_LOGIN_REQ:
	case AUTHD_PROXY_REQ: {
		struct dir_user u;
		int ar;

		memset(&u, 0, sizeof(u));
		/* the password-guessing limits count here, where the
		 * password is checked: one count per node, whatever the
		 * number of workers */
		if (req->kind == AUTHD_PROXY_REQ)
			ar = auth_login_proxy(dir, req->login,
			    proxy_secret_ok(req->password),
			    req->ip != NULL ? req->ip : "", &u);
		else if (req->challenge != NULL)
			ar = auth_login_cram(dir, req->login, req->challenge,
			    req->password, req->ip != NULL ? req->ip : "",
			    &u);
		else
			ar = auth_login(dir, req->login, req->password,
			    req->ip != NULL ? req->ip : "", &u);
		rep.kind = AUTHD_LOGIN_REP;
		switch (ar) {
		case AUTH_OK:
			rep.status = AUTHD_LOGIN_OK;
			break;
		case AUTH_TEMPFAIL:
			rep.status = AUTHD_LOGIN_TEMPFAIL;
			break;
		case AUTH_THROTTLED:
			rep.status = AUTHD_LOGIN_THROTTLED;
			break;
		default:
			rep.status = AUTHD_LOGIN_FAIL;
		}
		if (ar == AUTH_OK) {
			rep.address = u.address;
			rep.maildir = u.maildir;
			rep.home = u.home;
			rep.host = u.host;
			rep.uid = u.uid;
			rep.gid = u.gid;
			if (dir_has_quota(dir) && dir_lookup_quota(dir,
			    u.address, &rep.quota, &err) < 0) {
				log_warn("quota of %s: %s", u.address, err);
				memset(&rep.quota, 0, sizeof(rep.quota));
			}
		}
		if (authd_encode(out, &rep) < 0) {
			struct authd_msg tf = { .kind = AUTHD_LOGIN_REP,
			    .status = AUTHD_LOGIN_TEMPFAIL };

			log_warn("login %s: user record over a bound",
			    req->login);
			authd_encode(out, &tf);
		}
		dir_user_clear(&u);
		return;
	}
	case AUTHD_QUOTA_REQ:
		rep.kind = AUTHD_QUOTA_REP;
		r = dir_lookup_quota(dir, req->address, &rep.quota, &err);
		if (r < 0)
			log_warn("quota of %s: %s", req->address, err);
		rep.status = dir_to_status(r);
		authd_encode(out, &rep);
		return;
	case AUTHD_POSTMASTER_REQ: {
		const struct dir_schema *sc;
		struct dir_rows *rows = NULL;

		rep.kind = AUTHD_POSTMASTER_REP;
		sc = dir_schema_get(config_get(cfg, "schema"));
		r = dir_query(dir, sc != NULL ? sc->sql_domains :
		    "SELECT domain FROM transport ORDER BY domain", NULL, 0,
		    &rows, &err);
		if (r == DIR_OK && rows->nrows == 0)
			r = DIR_NOTFOUND;
		if (r == DIR_OK)
			rep.domain = (char *)dir_rows_get(rows, 0, 0);
		rep.status = dir_to_status(r);
		if (authd_encode(out, &rep) < 0) {
			rep.domain = NULL;
			rep.status = AUTHD_FAIL;
			authd_encode(out, &rep);
		}
		dir_rows_free(&rows);
		return;
	}
	case AUTHD_CAPS_REQ:
		rep.kind = AUTHD_CAPS_REP;
		r = dir_login_has_clear(dir, &err);
		if (r == DIR_FAIL)
			log_warn("query_login: %s", err);
		rep.status = r == DIR_OK ? AUTHD_OK : r == DIR_NOTFOUND ?
		    AUTHD_NOTFOUND : AUTHD_TEMPFAIL;
		authd_encode(out, &rep);
		return;
	default:
		return;
	}
}

static void *
authd_serve(void *arg)
{
	struct authd_conn *c = arg;
	struct dir *dir = dir_thread_init((void *)c->cfg);
	str_t in = STR_INIT, out = STR_INIT;

	for (;;) {
		struct authd_msg req;
		char hdr[4];
		uint32_t size;
		size_t used;

		if (recv_full(c->fd, hdr, 4) != 1)
			break;
		size = (uint32_t)(unsigned char)hdr[0] << 24 |
		    (uint32_t)(unsigned char)hdr[1] << 16 |
		    (uint32_t)(unsigned char)hdr[2] << 8 |
		    (unsigned char)hdr[3];
		if (size < 1 || size > AUTHD_FRAME_MAX) {
			log_warn("auth channel: frame of %u bytes refused",
			    (unsigned)size);
			break;
		}
		/* reserved whole: a password is never left behind by a
		 * reallocation */
		str_truncate(&in, 0);
		str_reserve(&in, (size_t)size + 4);
		str_append_n(&in, hdr, 4);
		in.data[4] = '\0';
		if (recv_full(c->fd, in.data + 4, size) != 1)
			break;
		in.len = (size_t)size + 4;
		if (authd_decode(in.data, in.len, &req, &used) != 1 ||
		    (req.kind != AUTHD_ROUTE_REQ &&
		    req.kind != AUTHD_LOGIN_REQ &&
		    req.kind != AUTHD_PROXY_REQ &&
		    req.kind != AUTHD_QUOTA_REQ &&
		    req.kind != AUTHD_POSTMASTER_REQ &&
		    req.kind != AUTHD_CAPS_REQ)) {
			log_warn("auth channel: malformed request, closing");
			authd_msg_clear(&req);
			break;
		}
		explicit_bzero(in.data, in.cap);
		str_truncate(&out, 0);
		authd_answer(dir, c->cfg, &req, &out);
		authd_msg_clear(&req);
		if (out.len == 0 || send_full(c->fd, out.data, out.len) < 0)
			break;
	}
	authd_buf_wipe(&in);
	authd_buf_wipe(&out);
	dir_thread_deinit(dir);
	close(c->fd);
	free(c);
	return NULL;
}

/* Whether the peer of fd may use the channel. */
static bool
peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == getuid() ||
	    cred.uid == worker_uid;
}

int
authd_run(struct petrel_ctx *ctx)
{
	const char *env = getenv("PETREL_AUTH_FD");
	struct passwd *pw;
	pthread_attr_t attr;
	int lfd;

	if (env == NULL)
		fatal("auth process without PETREL_AUTH_FD");
	lfd = atoi(env);
	fcntl(lfd, F_SETFD, FD_CLOEXEC);
	pw = getpwnam(config_get(ctx->cfg, "user"));
	if (pw != NULL)
		worker_uid = pw->pw_uid;
	/* Read with the auth account's ids (the master set them before
	 * executing this image): the workers' account cannot. */
	{
		char *perr = NULL;
		struct dir *dir = NULL;
		const char *err;

		if (dir_password_file_load(config_get(ctx->cfg,
		    "database_password_file"), &perr) < 0)
			fatal("%s", perr);
		if (dir_open(config_get(ctx->cfg, "database"), 0, &dir,
		    &perr) < 0)
			fatal("%s", perr);
		dir_set_queries(dir, ctx->cfg);
		if (dir_connect(dir, &err) < 0)
			log_warn("directory unavailable at start (lookups "
			    "answer 4xx until it is back): %s", err);
		dir_close(&dir);
	}
	{
		const char *err = NULL;

		proxy_secret = secret_load("proxy_secret",
		    config_get(ctx->cfg, "proxy_secret"), &err);
		if (proxy_secret == NULL)
			log_error("%s: proxied sessions are refused", err);
	}
	/* its directory queries are the node's (/metrics) */
	node_counters_inherit(NODE_ROLE_AUTH);
	dir_observe_queries(observe_query);
	auth_cache_setup((unsigned)config_get_uint(ctx->cfg,
	    "auth_cache_ttl"));
	auth_throttle_setup(
	    (unsigned)config_get_uint(ctx->cfg, "auth_max_failures_per_ip"),
	    (unsigned)config_get_uint(ctx->cfg, "auth_max_failures_per_user"),
	    (unsigned)config_get_uint(ctx->cfg, "auth_lockout_time"));
	/* One check before the first login: it makes the dummy hash (which
	 * would otherwise cost the first unknown user a second crypt, telling
	 * it apart) and pays crypt's first, slower run. */
	password_verify_dummy("petrel warm-up");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	log_info("auth process started");
	for (;;) {
		struct authd_conn *c;
		pthread_t t;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EMFILE || errno == ENFILE) {
				if (errno == EMFILE || errno == ENFILE)
					usleep(100000);
				continue;
			}
			fatal_errno("auth channel: accept");
		}
		if (!peer_allowed(fd)) {
			log_warn("auth channel: peer refused (uid not a "
			    "worker's)");
			close(fd);
			continue;
		}
		c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->cfg = ctx->cfg;
		if (pthread_create(&t, &attr, authd_serve, c) != 0) {
			log_error("auth channel: cannot start a thread");
			close(fd);
			free(c);
		}
	}
	return 0;
}
