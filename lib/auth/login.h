#ifndef PETREL_LOGIN_H
#define PETREL_LOGIN_H
/*
 * Logins for IMAP, POP3 and submission: query_login + crypt(3), with the
 * SPEC's success cache (auth_cache_ttl) so a slow hash is paid once per
 * user per TTL; a changed hash in the directory invalidates the entry.
 * Call from a job thread (it queries the directory and may run crypt).
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

struct dir;
struct dir_user;

enum auth_result { AUTH_OK, AUTH_FAIL, AUTH_TEMPFAIL };

/* Set the cache TTL in seconds (0 = no cache). Thread-safe to call once
 * at start. */
void auth_cache_setup(unsigned ttl);
enum auth_result auth_login(struct dir *dir, const char *login,
    const char *password, struct dir_user *u_r);

/* SASL PLAIN (RFC 4616): base64 of [authzid] NUL authcid NUL passwd.
 * 0 ok (malloc'd strings; an authzid other than empty or authcid is
 * refused), -1 malformed. */
int sasl_plain_decode(const char *b64, size_t len, char **authcid_r,
    char **passwd_r);

/* Per-IP failed-login delay, growing with each failure (SPEC: answered
 * only after a delay). Returns the delay in milliseconds for this failure
 * and remembers it; auth_delay_success() forgets the address. */
unsigned auth_delay_failure(const char *ip, unsigned base_ms);
void auth_delay_success(const char *ip);

#endif
