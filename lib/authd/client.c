/*
 * client.c: blocking calls to the auth process (lib/authd/client.h).
 *
 * SECURITY: this runs in processes that read the network; they hold no
 * database credentials and see no password hash. Replies are decoded with
 * the same bounds as requests (lib/authd/proto.c); a malformed reply
 * closes the connection and the call fails temporarily. The password of
 * a LOGIN request is wiped from the frame buffer once it is sent.
 */
#include "lib/authd/client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/auth/login.h"
#include "lib/authd/proto.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"

struct authc {
	int fd;
	char *name;		/* abstract socket name, without the NUL */
};

void *
authc_thread_init(void *arg)
{
	struct authc *ac = xcalloc(1, sizeof(*ac));
	const char *name = getenv(AUTHD_SOCKET_ENV);

	(void)arg;
	ac->fd = -1;
	ac->name = xstrdup(name != NULL ? name : "");
	return ac;
}

void
authc_thread_deinit(void *state)
{
	struct authc *ac = state;

	if (ac == NULL)
		return;
	if (ac->fd >= 0)
		close(ac->fd);
	free(ac->name);
	free(ac);
}

static void
authc_disconnect(struct authc *ac)
{
	if (ac->fd >= 0)
		close(ac->fd);
	ac->fd = -1;
}

static int
authc_connect(struct authc *ac)
{
	struct sockaddr_un sun;
	struct timeval tv = { AUTHD_CALL_TIMEOUT, 0 };
	size_t n = strlen(ac->name);
	int fd;

	if (n == 0 || n + 1 > sizeof(sun.sun_path))
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path + 1, ac->name, n);	/* abstract namespace */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) < 0) {
		close(fd);
		return -1;
	}
	ac->fd = fd;
	return 0;
}



/* One request and its reply, of the kind want. 0, or -1 (the auth
 * process did not answer: a temporary failure). */
static int
authc_call(struct authc *ac, const struct authd_msg *req,
    enum authd_kind want, struct authd_msg *rep)
{
	str_t out = STR_INIT;
	int ret = -1;

	memset(rep, 0, sizeof(*rep));
	if (authd_encode(&out, req) < 0) {
		log_warn("auth request %s: a field is over its bound",
		    authd_kind_name(req->kind));
		authd_buf_wipe(&out);
		return -1;
	}
	for (int attempt = 0; attempt < 2 && ret < 0; attempt++) {
		char hdr[4], *frame;
		uint32_t size;
		size_t used;
		int r;

		if (ac->fd < 0 && authc_connect(ac) < 0)
			break;
		/* a connection the auth process closed (it restarted)
		 * shows here as an error or EOF: reconnect once */
		if (send_full(ac->fd, out.data, out.len) < 0) {
			authc_disconnect(ac);
			continue;
		}
		r = recv_full(ac->fd, hdr, 4);
		if (r == 0 && attempt == 0) {
			authc_disconnect(ac);
			continue;
		}
		if (r <= 0) {
			authc_disconnect(ac);
			break;
		}
		size = (uint32_t)(unsigned char)hdr[0] << 24 |
		    (uint32_t)(unsigned char)hdr[1] << 16 |
		    (uint32_t)(unsigned char)hdr[2] << 8 |
		    (unsigned char)hdr[3];
		if (size < 1 || size > AUTHD_FRAME_MAX) {
			authc_disconnect(ac);
			break;
		}
		frame = xmalloc((size_t)size + 4);
		memcpy(frame, hdr, 4);
		if (recv_full(ac->fd, frame + 4, size) != 1 ||
		    authd_decode(frame, (size_t)size + 4, rep, &used) != 1 ||
		    rep->kind != want) {
			authd_msg_clear(rep);
			authc_disconnect(ac);
			free(frame);
			log_warn("auth process: no valid answer to %s",
			    authd_kind_name(req->kind));
			break;
		}
		free(frame);
		ret = 0;
	}
	authd_buf_wipe(&out);
	return ret;
}

void
authc_route(struct authc *ac, const char *address, bool may_relay,
    struct route_result *res)
{
	struct authd_msg req = { .kind = AUTHD_ROUTE_REQ,
	    .address = (char *)address, .may_relay = may_relay };
	struct authd_msg rep;

	memset(res, 0, sizeof(*res));
	if (authc_call(ac, &req, AUTHD_ROUTE_REP, &rep) < 0) {
		res->status = ROUTE_TEMPFAIL;
		res->text = xstrdup("auth process unavailable");
		return;
	}
	res->status = (enum route_status)rep.status;
	res->text = rep.text;
	rep.text = NULL;
	if (rep.ndests > 0) {
		res->dests = xcalloc(rep.ndests, sizeof(*res->dests));
		res->ndests = rep.ndests;
	}
	for (size_t i = 0; i < rep.ndests; i++) {
		struct authd_dest *d = &rep.dests[i];

		res->dests[i].kind = (enum route_kind)d->kind;
		res->dests[i].address = d->address;
		res->dests[i].maildir = d->maildir;
		res->dests[i].home = d->home;
		res->dests[i].transport = d->transport;
		res->dests[i].quota = d->quota;
		d->address = d->maildir = d->home = d->transport = NULL;
	}
	authd_msg_clear(&rep);
}

static int
login_call(struct authc *ac, enum authd_kind kind, const char *login,
    const char *password, const char *challenge, const char *ip,
    const char *protocol, struct dir_user *u_r, struct quota_limit *quota_r)
{
	struct authd_msg req = { .kind = kind,
	    .login = (char *)login, .password = (char *)password,
	    .ip = (char *)(ip != NULL ? ip : ""),
	    .protocol = (char *)protocol, .challenge = (char *)challenge };
	struct authd_msg rep;
	int result;

	memset(u_r, 0, sizeof(*u_r));
	memset(quota_r, 0, sizeof(*quota_r));
	if (authc_call(ac, &req, AUTHD_LOGIN_REP, &rep) < 0)
		return AUTH_TEMPFAIL;
	switch (rep.status) {
	case AUTHD_LOGIN_OK:
		result = AUTH_OK;
		break;
	case AUTHD_LOGIN_TEMPFAIL:
		result = AUTH_TEMPFAIL;
		break;
	case AUTHD_LOGIN_THROTTLED:
		/* answered like a failure, after a delay (session.c) */
		result = AUTH_THROTTLED;
		break;
	default:
		result = AUTH_FAIL;
	}
	if (result == AUTH_OK && (rep.address == NULL ||
	    rep.maildir == NULL)) {
		log_warn("auth process: login reply without a user");
		result = AUTH_TEMPFAIL;
	}
	if (result == AUTH_OK) {
		u_r->address = rep.address;
		u_r->maildir = rep.maildir;
		u_r->home = rep.home;
		/* the backend a frontend would send this user to */
		u_r->host = rep.host != NULL ? rep.host : xstrdup("");
		u_r->uid = (long)rep.uid;
		u_r->gid = (long)rep.gid;
		*quota_r = rep.quota;
		rep.address = rep.maildir = rep.home = rep.host = NULL;
	}
	authd_msg_clear(&rep);
	return result;
}

int
authc_login(struct authc *ac, const char *login, const char *password,
    const char *challenge, const char *ip, const char *protocol,
    struct dir_user *u_r, struct quota_limit *quota_r)
{
	return login_call(ac, AUTHD_LOGIN_REQ, login, password, challenge, ip,
	    protocol, u_r, quota_r);
}

int
authc_login_proxy(struct authc *ac, const char *login, const char *secret,
    const char *ip, const char *protocol, struct dir_user *u_r,
    struct quota_limit *quota_r)
{
	return login_call(ac, AUTHD_PROXY_REQ, login, secret, NULL, ip,
	    protocol, u_r, quota_r);
}

static int
status_to_dir(uint8_t status)
{
	switch (status) {
	case AUTHD_OK: return DIR_OK;
	case AUTHD_NOTFOUND: return DIR_NOTFOUND;
	case AUTHD_FAIL: return DIR_FAIL;
	}
	return DIR_TEMPFAIL;
}

int
authc_quota(struct authc *ac, const char *address,
    struct quota_limit *quota_r, const char **error_r)
{
	struct authd_msg req = { .kind = AUTHD_QUOTA_REQ,
	    .address = (char *)address };
	struct authd_msg rep;
	int r;

	memset(quota_r, 0, sizeof(*quota_r));
	if (authc_call(ac, &req, AUTHD_QUOTA_REP, &rep) < 0) {
		*error_r = "auth process unavailable";
		return DIR_TEMPFAIL;
	}
	r = status_to_dir(rep.status);
	*quota_r = rep.quota;
	if (r < 0)
		*error_r = "directory lookup failed";
	authd_msg_clear(&rep);
	return r;
}

int
authc_caps_cleartext(struct authc *ac)
{
	struct authd_msg req = { .kind = AUTHD_CAPS_REQ };
	struct authd_msg rep;
	int r;

	if (authc_call(ac, &req, AUTHD_CAPS_REP, &rep) < 0)
		return -1;
	r = rep.status == AUTHD_OK ? 1 : rep.status == AUTHD_NOTFOUND ? 0 :
	    -1;
	authd_msg_clear(&rep);
	return r;
}

int
authc_postmaster_domain(struct authc *ac, char **domain_r)
{
	struct authd_msg req = { .kind = AUTHD_POSTMASTER_REQ };
	struct authd_msg rep;
	int r;

	*domain_r = NULL;
	if (authc_call(ac, &req, AUTHD_POSTMASTER_REP, &rep) < 0)
		return DIR_TEMPFAIL;
	r = status_to_dir(rep.status);
	if (r == DIR_OK && rep.domain != NULL) {
		*domain_r = rep.domain;
		rep.domain = NULL;
	} else if (r == DIR_OK) {
		r = DIR_NOTFOUND;
	}
	authd_msg_clear(&rep);
	return r;
}
