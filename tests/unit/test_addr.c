/* Unit tests for lib/base/addr.c. */
#include <stdlib.h>
#include <string.h>

#include "lib/base/addr.h"
#include "test.h"

static void
test_split(void)
{
	char *l, *d;

	test_begin("addr split and lower-case");
	test_assert(addr_split("Alice.B+tag@Example.TEST", &l, &d) == 0);
	test_assert_streq(l, "alice.b+tag");
	test_assert_streq(d, "example.test");
	free(l);
	free(d);
	test_assert(addr_split("o'brien@example.test", &l, &d) == 0);
	free(l);
	free(d);
	test_end();
}

static void
test_invalid(void)
{
	static const char *const bad[] = {
		"", "noat", "a@", "@b", "a b@example.test", "a@@example.test",
		".a@example.test", "a.@example.test", "a..b@example.test",
		"a@-example.test", "a@example-.test", "a@example..test",
		"a@exa mple.test", "\"q\"@example.test", "a;b@example.test",
		"a@[127.0.0.1]", "a(b)@example.test", "a@example.test.",
		"a@b@c",
	};
	char long_local[80], long_addr[320];
	char *l, *d;

	test_begin("addr rejects malformed addresses");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = addr_split(bad[i], &l, &d);

		test_assert(r == -1);
		if (r == 0) {
			free(l);
			free(d);
		}
	}
	memset(long_local, 'a', 65);
	long_local[65] = '\0';
	test_assert(!addr_local_valid(long_local));
	long_local[64] = '\0';
	test_assert(addr_local_valid(long_local));
	memset(long_addr, 'b', sizeof(long_addr));
	long_addr[0] = 'x';
	long_addr[1] = '@';
	long_addr[sizeof(long_addr) - 1] = '\0';
	test_assert(addr_split(long_addr, &l, &d) == -1);
	test_end();
}

static void
test_domains(void)
{
	test_begin("addr domain syntax");
	test_assert(addr_domain_valid("example.test"));
	test_assert(addr_domain_valid("a-b.c1.example"));
	test_assert(addr_domain_valid("localhost"));
	test_assert(!addr_domain_valid("%"));
	test_assert(!addr_domain_valid("a/b"));
	test_assert(!addr_domain_valid(".example"));
	test_assert(!addr_domain_valid("x'y.test"));
	test_end();
}

static void
test_catchall(void)
{
	char *d;

	test_begin("addr catch-all form");
	test_assert(addr_split_catchall("@Example.Test", &d) == 0);
	test_assert_streq(d, "example.test");
	free(d);
	test_assert(addr_split_catchall("x@example.test", &d) == -1);
	test_assert(addr_split_catchall("@", &d) == -1);
	test_end();
}

int
main(void)
{
	test_split();
	test_invalid();
	test_domains();
	test_catchall();
	return test_done();
}
