#ifndef PETREL_THROTTLE_H
#define PETREL_THROTTLE_H
/*
 * Password-guessing limits: failed logins counted per client IP, per
 * account and per (IP, account) pair, decided before the password check.
 * See docs/security.md "Password guessing" for the policy.
 *
 * Counts leak away linearly: a limit of N failures per lockout time means
 * each failure is forgotten after lockout_s / N seconds, and reaching N
 * locks the IP or account for lockout_s seconds. A check counts as a
 * failure from the moment throttle_begin() allows it; throttle_end() with
 * THROTTLE_SUCCESS or THROTTLE_ABORT gives the reservation back.
 *
 * Memory is bounded: each of the three tables holds THROTTLE_CAP entries;
 * when full, the least recently used entry of the probed slots goes.
 * Thread-safe (one mutex per struct throttle). Pure: time is passed in.
 */
#include <stddef.h>
#include <time.h>

#define THROTTLE_CAP 4096	/* entries per table (IPs, accounts, pairs) */

struct throttle;

enum throttle_verdict { THROTTLE_ALLOW, THROTTLE_REFUSE };
enum throttle_outcome { THROTTLE_SUCCESS, THROTTLE_FAILURE, THROTTLE_ABORT };

/* A limit of 0 disables that limit. */
struct throttle *throttle_new(unsigned max_per_ip, unsigned max_per_user,
    unsigned lockout_s);
void throttle_free(struct throttle *t);
/* ALLOW reserves one failure for ip, login and the pair; every ALLOW must
 * be followed by exactly one throttle_end(). */
enum throttle_verdict throttle_begin(struct throttle *t, const char *ip,
    const char *login, time_t now);
void throttle_end(struct throttle *t, const char *ip, const char *login,
    enum throttle_outcome outcome, time_t now);

#endif
