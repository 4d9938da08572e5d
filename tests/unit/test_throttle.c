/* Unit tests for lib/auth/throttle.c (password-guessing limits) and the
 * dummy hash check of lib/auth/password.c. */
#include <pthread.h>
#include <stdio.h>

#include "lib/auth/password.h"
#include "lib/auth/throttle.h"
#include "test.h"

#define T0 1000000

static unsigned
fail_n(struct throttle *t, const char *ip, const char *user, unsigned n,
    time_t now)
{
	unsigned allowed = 0;

	for (unsigned i = 0; i < n; i++) {
		if (throttle_begin(t, ip, user, now) != THROTTLE_ALLOW)
			continue;
		allowed++;
		throttle_end(t, ip, user, THROTTLE_FAILURE, now);
	}
	return allowed;
}

static void
test_limits_and_window(void)
{
	struct throttle *t = throttle_new(5, 100, 600);

	test_begin("throttle: per-IP limit, lockout, leak");
	test_assert(fail_n(t, "10.0.0.1", "a@x", 20, T0) == 5);
	/* another account from that IP: refused too */
	test_assert(throttle_begin(t, "10.0.0.1", "b@x", T0) ==
	    THROTTLE_REFUSE);
	/* another IP: fine */
	test_assert(fail_n(t, "10.0.0.2", "a@x", 1, T0) == 1);
	/* locked for the lockout time, then free again */
	test_assert(throttle_begin(t, "10.0.0.1", "a@x", T0 + 599) ==
	    THROTTLE_REFUSE);
	test_assert(throttle_begin(t, "10.0.0.1", "a@x", T0 + 601) ==
	    THROTTLE_ALLOW);
	throttle_end(t, "10.0.0.1", "a@x", THROTTLE_ABORT, T0 + 601);
	throttle_free(t);
	test_end();

	t = throttle_new(0, 3, 300);
	test_begin("throttle: per-account limit, case-insensitive");
	test_assert(fail_n(t, "10.0.0.1", "Victim@x", 2, T0) == 2);
	test_assert(fail_n(t, "10.0.0.1", "victim@X", 5, T0) == 1);
	test_assert(throttle_begin(t, "10.0.0.1", "victim@x", T0 + 10) ==
	    THROTTLE_REFUSE);
	throttle_free(t);
	test_end();
}

static void
test_nat_policy(void)
{
	struct throttle *t = throttle_new(10, 10, 900);

	test_begin("throttle: account locked, other IPs still checked");
	test_assert(fail_n(t, "192.0.2.66", "victim@x", 30, T0) == 10);
	/* the owner, from an IP that never failed for the account */
	test_assert(throttle_begin(t, "192.0.2.7", "victim@x", T0 + 1) ==
	    THROTTLE_ALLOW);
	throttle_end(t, "192.0.2.7", "victim@x", THROTTLE_SUCCESS, T0 + 1);
	/* and again at once: trusted for it now */
	test_assert(throttle_begin(t, "192.0.2.7", "victim@x", T0 + 2) ==
	    THROTTLE_ALLOW);
	throttle_end(t, "192.0.2.7", "victim@x", THROTTLE_SUCCESS, T0 + 2);
	/* a third IP that fails once is then refused while locked */
	test_assert(fail_n(t, "192.0.2.8", "victim@x", 3, T0 + 3) == 1);
	test_end();

	throttle_free(t);
	test_begin("throttle: IP locked, accounts it logged into still work");
	/* the attacker IP is over its limit; a user behind the same NAT who
	 * logged in before is still checked */
	t = throttle_new(10, 10, 900);
	test_assert(throttle_begin(t, "198.51.100.1", "nat@x", T0) ==
	    THROTTLE_ALLOW);
	throttle_end(t, "198.51.100.1", "nat@x", THROTTLE_SUCCESS, T0);
	test_assert(fail_n(t, "198.51.100.1", "victim@x", 30, T0 + 1) == 10);
	test_assert(throttle_begin(t, "198.51.100.1", "other@x", T0 + 2) ==
	    THROTTLE_REFUSE);
	test_assert(throttle_begin(t, "198.51.100.1", "nat@x", T0 + 2) ==
	    THROTTLE_ALLOW);
	throttle_end(t, "198.51.100.1", "nat@x", THROTTLE_SUCCESS, T0 + 2);
	throttle_free(t);
	test_end();
}

static void
test_pair_reset(void)
{
	struct throttle *t = throttle_new(10, 10, 900);
	unsigned allowed = 0;

	test_begin("throttle: own-account success does not reset the count");
	/* attacker guesses the victim's password and logs into its own
	 * account between guesses */
	for (int i = 0; i < 50; i++) {
		if (throttle_begin(t, "203.0.113.5", "victim@x", T0) ==
		    THROTTLE_ALLOW) {
			allowed++;
			throttle_end(t, "203.0.113.5", "victim@x",
			    THROTTLE_FAILURE, T0);
		}
		test_assert(throttle_begin(t, "203.0.113.5", "own@x", T0)
		    == THROTTLE_ALLOW || allowed >= 9);
		throttle_end(t, "203.0.113.5", "own@x", THROTTLE_SUCCESS,
		    T0);
	}
	test_assert(allowed == 10);
	throttle_free(t);
	test_end();
}

static void
test_cap(void)
{
	struct throttle *t = throttle_new(3, 3, 900);
	char ip[64];

	test_begin("throttle: bounded tables evict, stay usable");
	for (unsigned i = 0; i < 4 * THROTTLE_CAP; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255,
		    i & 255);
		(void)fail_n(t, ip, ip, 1, T0);
	}
	/* a fresh IP is counted as before */
	test_assert(fail_n(t, "172.16.0.1", "z@x", 10, T0 + 1) == 3);
	throttle_free(t);
	test_end();
}

struct race {
	struct throttle *t;
	pthread_barrier_t *bar;
	unsigned allowed;
};

static void *
racer(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(r->bar);
	for (int i = 0; i < 20; i++) {
		if (throttle_begin(r->t, "127.0.0.1", "victim@x", T0) ==
		    THROTTLE_ALLOW) {
			r->allowed++;
			/* the check is under way when others begin */
			throttle_end(r->t, "127.0.0.1", "victim@x",
			    THROTTLE_FAILURE, T0);
		}
	}
	return NULL;
}

static void
test_concurrency(void)
{
	enum { N = 16 };
	struct throttle *t = throttle_new(10, 10, 900);
	pthread_t th[N];
	struct race r[N];
	pthread_barrier_t bar;
	unsigned total = 0;

	test_begin("throttle: reservation holds under concurrent checks");
	pthread_barrier_init(&bar, NULL, N);
	for (int i = 0; i < N; i++) {
		r[i] = (struct race){ t, &bar, 0 };
		pthread_create(&th[i], NULL, racer, &r[i]);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		total += r[i].allowed;
	}
	test_assert(total == 10);
	pthread_barrier_destroy(&bar);
	/* reservations held, not yet ended, already refuse */
	throttle_free(t);
	t = throttle_new(10, 10, 900);
	for (int i = 0; i < 10; i++)
		test_assert(throttle_begin(t, "127.0.0.1", "v@x", T0) ==
		    THROTTLE_ALLOW);
	test_assert(throttle_begin(t, "127.0.0.1", "v@x", T0) ==
	    THROTTLE_REFUSE);
	/* successes give the reservations back */
	for (int i = 0; i < 10; i++)
		throttle_end(t, "127.0.0.1", "v@x", THROTTLE_SUCCESS, T0);
	test_assert(throttle_begin(t, "127.0.0.1", "v@x", T0) ==
	    THROTTLE_ALLOW);
	throttle_end(t, "127.0.0.1", "v@x", THROTTLE_SUCCESS, T0);
	throttle_free(t);
	test_end();
}

static void
test_dummy(void)
{
	unsigned long before = password_dummy_checks();

	test_begin("password: dummy check runs crypt");
	password_verify_dummy("guess");
	password_verify_dummy("guess2");
	test_assert(password_dummy_checks() == before + 2);
	test_end();
}

int
main(void)
{
	test_limits_and_window();
	test_nat_policy();
	test_pair_reset();
	test_cap();
	test_concurrency();
	test_dummy();
	return test_done();
}
