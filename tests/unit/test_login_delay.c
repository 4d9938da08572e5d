/* Unit tests for the failed-login delay of lib/auth/login.c: it doubles
 * per failure from one IP, stops doubling after five, never exceeds 15 s
 * (docs/reliability.md, "Password guessing"), and a success takes back
 * only the failures of that login. */
#include "lib/auth/login.h"
#include "test.h"

static void
test_doubling(void)
{
	static const unsigned want[] = { 100, 200, 400, 800, 1600, 3200, 3200,
	    3200 };

	test_begin("login delay: doubles per failure, at most five times");
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		test_assert(auth_delay_failure("10.0.0.1", "a@x", 100) ==
		    want[i]);
	/* another IP starts again at the base */
	test_assert(auth_delay_failure("10.0.0.9", "a@x", 100) == 100);
	test_end();
}

static void
test_cap(void)
{
	static const unsigned want[] = { 1000, 2000, 4000, 8000, 15000,
	    15000, 15000 };

	test_begin("login delay: never more than 15 s");
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		test_assert(auth_delay_failure("10.0.0.2", "b@x", 1000) ==
		    want[i]);
	/* a base above the cap is cut to it from the first failure */
	test_assert(auth_delay_failure("10.0.0.3", "c@x", 60000) == 15000);
	test_assert(auth_delay_failure("10.0.0.3", "c@x", 60000) == 15000);
	test_end();
}

static void
test_success_takes_back_own_failures(void)
{
	test_begin("login delay: a success takes back that login's failures");
	for (int i = 0; i < 3; i++)
		(void)auth_delay_failure("10.0.0.4", "d@x", 10);
	(void)auth_delay_failure("10.0.0.4", "e@x", 10);
	(void)auth_delay_failure("10.0.0.4", "e@x", 10);
	/* five failures from the IP; d@x logs in: two remain (e@x's) */
	auth_delay_success("10.0.0.4", "d@x");
	test_assert(auth_delay_failure("10.0.0.4", "e@x", 10) == 10 << 2);
	/* a success for a login that never failed changes nothing */
	auth_delay_success("10.0.0.4", "f@x");
	test_assert(auth_delay_failure("10.0.0.4", "e@x", 10) == 10 << 3);
	/* e@x logs in: all of the IP's failures were its own */
	auth_delay_success("10.0.0.4", "e@x");
	test_assert(auth_delay_failure("10.0.0.4", "g@x", 10) == 10);
	test_end();
}

int
main(void)
{
	test_doubling();
	test_cap();
	test_success_takes_back_own_failures();
	return test_done();
}
