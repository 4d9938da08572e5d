#ifndef PETREL_AUTHD_CLIENT_H
#define PETREL_AUTHD_CLIENT_H
/*
 * The workers' and the queue manager's side of the auth channel
 * (lib/authd/proto.h): blocking, typed calls to the auth process, one
 * connection per job thread (the job-thread state, lib/io/jobs.h). Each
 * call reconnects once when the auth process closed the connection (it
 * was restarted) and has a timeout (AUTHD_CALL_TIMEOUT); when the auth
 * process cannot answer, the call reports a temporary failure.
 * Call from a job thread, never from the event loop.
 */
#include <stdbool.h>
#include <stdint.h>

struct authc;
struct dir_user;
struct quota_limit;
struct route_result;

/* Seconds a call may wait for the auth process (connect, send, answer). */
#define AUTHD_CALL_TIMEOUT 20

/* The socket name the master gives its children (PETREL_AUTH_SOCKET). */
#define AUTHD_SOCKET_ENV "PETREL_AUTH_SOCKET"

/* Job-thread state: arg unused; the socket named by PETREL_AUTH_SOCKET. */
void *authc_thread_init(void *arg);
void authc_thread_deinit(void *state);

/* route_resolve() through the auth process; ROUTE_TEMPFAIL when it
 * cannot answer. Clear res with route_result_clear. */
void authc_route(struct authc *ac, const char *address, bool may_relay,
    struct route_result *res);
/* auth_login() through the auth process (auth_login_cram() when
 * challenge is not NULL: password is then the CRAM-MD5 digest, hex): an
 * enum auth_result (AUTH_OK,
 * AUTH_FAIL, AUTH_TEMPFAIL, AUTH_THROTTLED when the auth process's
 * password-guessing limits refused it without a check). On AUTH_OK u_r
 * holds address, home, maildir, uid, gid (never the hash) and *quota_r
 * the quota (none set = none). password is not kept. */
int authc_login(struct authc *ac, const char *login, const char *password,
    const char *challenge, const char *ip, const char *protocol,
    struct dir_user *u_r, struct quota_limit *quota_r);
/* A frontend's session for login (AUTHD_PROXY_REQ): secret is what it
 * gave as proxy_secret; the rest as authc_login. */
int authc_login_proxy(struct authc *ac, const char *login, const char *secret,
    const char *ip, const char *protocol, struct dir_user *u_r,
    struct quota_limit *quota_r);
/* Whether the directory returns cleartext passwords (CRAM-MD5 can be
 * offered): 1 yes, 0 no, -1 cannot tell now (directory or auth process
 * unavailable). */
int authc_caps_cleartext(struct authc *ac);
/* dir_lookup_quota() through the auth process (DIR_* codes). */
int authc_quota(struct authc *ac, const char *address,
    struct quota_limit *quota_r,
    const char **error_r);
/* The first hosted domain (for <postmaster>): DIR_OK with a malloc'd
 * *domain_r, DIR_NOTFOUND, DIR_FAIL or DIR_TEMPFAIL. */
int authc_postmaster_domain(struct authc *ac, char **domain_r);

#endif
