/* Unit tests for lib/trust/dnsbl.c (the dnsbl_sites syntax, RFC 5782
 * query names, answer filters) and lib/trust/greylist.c (triplets in the
 * state database). */
#include <stdio.h>
#include <stdlib.h>

#include "lib/base/alloc.h"
#include "lib/trust/dnsbl.h"
#include "lib/trust/greylist.h"
#include "test.h"

static bool
parses(const char *list)
{
	struct dnsbl_site *s;
	size_t n;
	const char *err;

	if (dnsbl_sites_parse(list, &s, &n, &err) < 0)
		return false;
	dnsbl_sites_free(s, n);
	return true;
}

static void
test_parse(void)
{
	struct dnsbl_site *s;
	size_t n;
	const char *err;
	const unsigned char a2[4] = { 127, 0, 0, 2 }, a12[4] = { 127, 0, 0, 12 },
	    a11[4] = { 127, 0, 0, 11 }, a4[4] = { 127, 0, 1, 4 },
	    a5[4] = { 127, 0, 1, 5 }, a9[4] = { 127, 0, 1, 9 },
	    pub[4] = { 192, 0, 2, 1 };

	test_begin("dnsbl: sites, weights, filters");
	test_assert(dnsbl_sites_parse("zen.example=127.0.0.[2..11]*3, "
	    "bl.example*2 wl.example=127.0.[1;3].[4;6..8]*-5,plain.example",
	    &s, &n, &err) == 0);
	test_assert(n == 4);
	test_assert_streq(s[0].zone, "zen.example");
	test_assert(s[0].weight == 3 && s[0].filter);
	test_assert(dnsbl_answer_matches(&s[0], a2));
	test_assert(dnsbl_answer_matches(&s[0], a11));
	test_assert(!dnsbl_answer_matches(&s[0], a12));
	test_assert_streq(s[1].zone, "bl.example");
	test_assert(s[1].weight == 2 && !s[1].filter);
	test_assert(dnsbl_answer_matches(&s[1], a12));
	test_assert(!dnsbl_answer_matches(&s[1], pub));
	test_assert(s[2].weight == -5);
	dnsbl_sites_free(s, n);
	/* a list of values and ranges in one octet */
	test_assert(dnsbl_sites_parse("wl.example=127.0.[1;3].[4;6..8]*-5",
	    &s, &n, &err) == 0 && n == 1);
	test_assert(dnsbl_answer_matches(&s[0], a4));
	test_assert(!dnsbl_answer_matches(&s[0], a5));
	test_assert(dnsbl_answer_matches(&s[0], (const unsigned char[4]){
	    127, 0, 3, 7 }));
	test_assert(!dnsbl_answer_matches(&s[0], a9));
	dnsbl_sites_free(s, n);
	test_assert(dnsbl_sites_parse("", &s, &n, &err) == 0 && n == 0);
	test_assert(dnsbl_sites_parse(" , ", &s, &n, &err) == 0 && n == 0);
	test_assert(parses("a.example=127.0.0.2"));
	test_assert(!parses("a.example=127.0.0"));
	test_assert(!parses("a.example=127.0.0.256"));
	test_assert(!parses("a.example=127.0.0.[3..2]"));
	test_assert(!parses("a.example=127.0.0.[2..11"));
	test_assert(!parses("a.example=127.0.0.2.5"));
	test_assert(!parses("a.example=127.0.[1;3]. [4]"));
	test_assert(!parses("a.example*"));
	test_assert(!parses("a.example*x"));
	test_assert(!parses("a.example*1001"));
	test_assert(!parses("a..example"));
	test_assert(!parses(".a.example"));
	test_assert(!parses("a.ex/ample"));
	test_assert(!parses("=127.0.0.2"));
	test_end();
}

static void
test_names(void)
{
	char buf[200];

	test_begin("dnsbl: query names (RFC 5782 2.1, 2.4)");
	test_assert(dnsbl_query_name("192.0.2.99", "bl.example", buf,
	    sizeof(buf)) == 0);
	test_assert_streq(buf, "99.2.0.192.bl.example");
	test_assert(dnsbl_query_name("::ffff:127.0.0.2", "bl.example", buf,
	    sizeof(buf)) == 0);
	test_assert_streq(buf, "2.0.0.127.bl.example");
	/* RFC 5782 2.4's example */
	test_assert(dnsbl_query_name("2001:db8:1:2:3:4:567:89ab",
	    "ugly.example.com", buf, sizeof(buf)) == 0);
	test_assert_streq(buf, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0."
	    "0.0.8.b.d.0.1.0.0.2.ugly.example.com");
	test_assert(dnsbl_query_name("not-an-ip", "bl.example", buf,
	    sizeof(buf)) < 0);
	test_assert(dnsbl_query_name("192.0.2.99", "bl.example", buf, 10) < 0);
	test_assert(dnsbl_query_name("::1", "bl.example", buf, 40) < 0);
	test_end();
}

static void
test_greylist(void)
{
	char *path = xasprintf("%s/state.db", test_tmpdir());
	char net[80];
	unsigned w;
	const int64_t t = 2000000000;

	test_begin("greylist: networks");
	test_assert(greylist_network("198.51.100.7", net, sizeof(net)) == 0);
	test_assert_streq(net, "198.51.100.0/24");
	test_assert(greylist_network("::ffff:10.1.2.3", net, sizeof(net)) ==
	    0);
	test_assert_streq(net, "10.1.2.0/24");
	test_assert(greylist_network("2001:db8:1:2:3:4:5:6", net,
	    sizeof(net)) == 0);
	test_assert_streq(net, "2001:db8:1:2::/64");
	test_assert(greylist_network("x", net, sizeof(net)) < 0);
	test_end();

	test_begin("greylist: whitelist networks");
	{
		struct greylist_net *g;
		size_t n;
		const char *err;

		test_assert(greylist_nets_parse("192.0.2.0/24, 198.51.100.7 "
		    "2001:db8::/32,10.0.0.0/7", &g, &n, &err) == 0 && n == 4);
		test_assert(greylist_nets_match(g, n, "192.0.2.200"));
		test_assert(greylist_nets_match(g, n, "::ffff:192.0.2.1"));
		test_assert(!greylist_nets_match(g, n, "192.0.3.1"));
		test_assert(greylist_nets_match(g, n, "198.51.100.7"));
		test_assert(!greylist_nets_match(g, n, "198.51.100.8"));
		test_assert(greylist_nets_match(g, n, "2001:db8:ffff::1"));
		test_assert(!greylist_nets_match(g, n, "2001:db9::1"));
		test_assert(greylist_nets_match(g, n, "11.255.0.1"));
		test_assert(!greylist_nets_match(g, n, "12.0.0.1"));
		test_assert(!greylist_nets_match(g, n, "junk"));
		free(g);
		test_assert(greylist_nets_parse("", &g, &n, &err) == 0 &&
		    n == 0);
		test_assert(greylist_nets_parse("192.0.2.0/33", &g, &n, &err)
		    < 0);
		test_assert(greylist_nets_parse("192.0.2.0/", &g, &n, &err) <
		    0);
		test_assert(greylist_nets_parse("example.org", &g, &n, &err) <
		    0);
		test_assert(greylist_nets_parse("::/129", &g, &n, &err) < 0);
	}
	test_end();

	test_begin("greylist: first, early, after the delay, expiry");
	test_assert(greylist_check(path, "n", "s@x", "r@y", t, 300, 1000, &w)
	    == GREYLIST_DEFER && w == 300);
	test_assert(greylist_check(path, "n", "s@x", "r@y", t + 100, 300, 1000,
	    &w) == GREYLIST_DEFER && w == 200);
	test_assert(greylist_check(path, "n", "s@x", "r@y", t + 300, 300, 1000,
	    &w) == GREYLIST_PASS);
	/* passed: known, whatever the delay */
	test_assert(greylist_check(path, "n", "s@x", "r@y", t + 900, 300, 1000,
	    &w) == GREYLIST_PASS);
	/* another recipient, another sender, another network: new */
	test_assert(greylist_check(path, "n", "s@x", "r2@y", t + 900, 300,
	    1000, &w) == GREYLIST_DEFER);
	test_assert(greylist_check(path, "n", "", "r@y", t + 900, 300, 1000,
	    &w) == GREYLIST_DEFER);
	test_assert(greylist_check(path, "m", "s@x", "r@y", t + 900, 300,
	    1000, &w) == GREYLIST_DEFER);
	/* unused for longer than expire: forgotten */
	test_assert(greylist_check(path, "n", "s@x", "r@y", t + 2000, 300,
	    1000, &w) == GREYLIST_DEFER);
	/* an unpassed triplet retried after the window starts over */
	test_assert(greylist_check(path, "m", "s@x", "r@y",
	    t + 900 + GREYLIST_RETRY_WINDOW + 1, 300, 1000, &w) ==
	    GREYLIST_DEFER && w == 300);
	test_end();
	free(path);
}

int
main(void)
{
	test_parse();
	test_names();
	test_greylist();
	return test_done();
}
