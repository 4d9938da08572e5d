#ifndef PETREL_LOGIN_H
#define PETREL_LOGIN_H
/*
 * Logins for IMAP, POP3 and submission: query_login + crypt(3) (or the
 * cleartext column when a row has no usable hash), with the
 * SPEC's success cache (auth_cache_ttl) so a slow hash is paid once per
 * user per TTL; a changed hash in the directory invalidates the entry.
 * Call from a job thread (it queries the directory and may run crypt).
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

struct dir;
struct dir_user;

/* AUTH_THROTTLED: refused by the password-guessing limits without a
 * check (see throttle.h); callers answer it exactly like AUTH_FAIL. */
enum auth_result { AUTH_OK, AUTH_FAIL, AUTH_TEMPFAIL, AUTH_THROTTLED };

/* Set the cache TTL in seconds (0 = no cache). Thread-safe to call once
 * at start. */
void auth_cache_setup(unsigned ttl);
/* Set the password-guessing limits (0 = no limit); without a call, none. */
void auth_throttle_setup(unsigned max_per_ip, unsigned max_per_user,
    unsigned lockout_s);
/* ip: the client's address, for the limits. An unknown user or one that
 * may not log in costs the same crypt() as a wrong password. */
enum auth_result auth_login(struct dir *dir, const char *login,
    const char *password, const char *ip, struct dir_user *u_r);
/* CRAM-MD5 (RFC 2195): response (hex) must be HMAC-MD5 of challenge
 * keyed by the user's cleartext password (query_login's clear column);
 * a user without one cannot log in this way. Counted by the guessing
 * limits like auth_login(). */
enum auth_result auth_login_cram(struct dir *dir, const char *login,
    const char *challenge, const char *response, const char *ip,
    struct dir_user *u_r);

/* A frontend's session for login (SPEC 6.1, scale-out): secret_ok says
 * whether it gave proxy_secret (the caller compared it). The user must be
 * one query_login returns; no password is checked. A wrong secret is a
 * failed login for the guessing limits. */
enum auth_result auth_login_proxy(struct dir *dir, const char *login,
    bool secret_ok, const char *ip, struct dir_user *u_r);

/* About how long a failed check takes (ms, a moving average): what a
 * caller adds to the delay of an AUTH_THROTTLED answer so that it takes
 * as long as a wrong password without spending the CPU. */
unsigned auth_check_ms(void);
/* Fold the time of one failed check (ms) into auth_check_ms(): the auth
 * process times auth_login(), a worker the round trip to it. */
void auth_check_ms_note(long ms);

/* Failed-login delay per client IP, growing with each failure (SPEC:
 * answered only after a delay). Returns the delay in milliseconds for this
 * failure and remembers it; auth_delay_success() takes back the failures
 * of that (IP, login) only, not those for other logins. */
unsigned auth_delay_failure(const char *ip, const char *login,
    unsigned base_ms);
void auth_delay_success(const char *ip, const char *login);

#endif
