/* Unit tests for lib/trust/mta_sts.c: the _mta-sts TXT record, the policy
 * file (RFC 8461 3.1, 3.2) and the mx pattern match (4.1). */
#include <stdio.h>
#include <string.h>

#include "lib/trust/mta_sts.h"
#include "test.h"

static int
txt(const char *s, char id[33])
{
	return mta_sts_txt_parse(s, strlen(s), id);
}

static void
test_txt(void)
{
	char id[33];

	test_begin("txt");
	test_assert(txt("v=STSv1; id=20160831085700Z;", id) == 1);
	test_assert_streq(id, "20160831085700Z");
	test_assert(txt("v=STSv1;id=abc", id) == 1);
	test_assert_streq(id, "abc");
	test_assert(txt("v=STSv1; ext=1; id=X9 ", id) == 1);
	test_assert_streq(id, "X9");
	/* not an STS record at all */
	test_assert(txt("v=spf1 -all", id) == 0);
	test_assert(txt("v=STSv10; id=1", id) == 0);
	test_assert(txt("", id) == 0);
	/* STSv1, but malformed */
	test_assert(txt("v=STSv1", id) == -1);		/* no id */
	test_assert(txt("v=STSv1; id=", id) == -1);
	test_assert(txt("v=STSv1; id=a-b", id) == -1);	/* not alnum */
	/* 33 characters */
	test_assert(txt("v=STSv1; id=123456789012345678901234567890123",
	    id) == -1);
	test_assert(txt("v=STSv1 id=1", id) == -1);	/* no separator */
	test_assert(txt("v=STSv1; =1", id) == -1);
	test_end();
}

static int
pol(const char *s, struct mta_sts_policy *p)
{
	const char *err;

	return mta_sts_policy_parse(s, strlen(s), p, &err);
}

static void
test_policy(void)
{
	struct mta_sts_policy p;

	test_begin("policy");
	test_assert(pol("version: STSv1\r\nmode: enforce\r\nmx: mail.example."
	    "com\r\nmx: *.example.net\r\nmax_age: 604800\r\n", &p) == 0);
	test_assert(p.mode == MTA_STS_ENFORCE && p.max_age == 604800);
	test_assert(p.nmx == 2);
	test_assert_streq(p.mx[0], "mail.example.com");
	test_assert_streq(p.mx[1], "*.example.net");
	/* LF line ends, no final one, spaces, unknown keys, order free */
	test_assert(pol("mode:testing\nmax_age:  86400 \nversion: STSv1\n"
	    "foo: bar\nmx: MX.Example.ORG.", &p) == 0);
	test_assert(p.mode == MTA_STS_TESTING && p.max_age == 86400);
	test_assert(p.nmx == 1);
	test_assert_streq(p.mx[0], "mx.example.org");
	/* the first version/mode/max_age counts */
	test_assert(pol("version: STSv1\nmode: none\nmode: enforce\n"
	    "max_age: 1\n", &p) == 0);
	test_assert(p.mode == MTA_STS_NONE && p.nmx == 0);
	/* max_age over a year: a year */
	test_assert(pol("version: STSv1\nmode: testing\nmx: a.b\n"
	    "max_age: 9999999999\n", &p) == 0);
	test_assert(p.max_age == MTA_STS_MAX_AGE);
	/* refused */
	test_assert(pol("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
	    &p) < 0);
	test_assert(pol("mode: enforce\nmx: a.b\nmax_age: 1\n", &p) < 0);
	test_assert(pol("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
	    &p) < 0);
	test_assert(pol("version: STSv1\nmode: enforce\nmax_age: 1\n", &p) <
	    0);					/* no mx */
	test_assert(pol("version: STSv1\nmode: enforce\nmx: a.b\n", &p) < 0);
	test_assert(pol("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: "
	    "-1\n", &p) < 0);
	test_assert(pol("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: "
	    "12345678901\n", &p) < 0);		/* 11 digits */
	test_assert(pol("version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n",
	    &p) < 0);
	test_assert(pol("version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: "
	    "1\n", &p) < 0);
	test_assert(pol("version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
	    &p) < 0);
	test_assert(pol("version: STSv1\nno colon here\n", &p) < 0);
	test_assert(pol("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n"
	    "x: \x01\n", &p) < 0);
	test_assert(pol("", &p) < 0);
	test_end();
}

static void
test_match(void)
{
	struct mta_sts_policy p;

	test_begin("match");
	test_assert(pol("version: STSv1\nmode: enforce\nmx: mail.example.com\n"
	    "mx: *.example.net\nmax_age: 1\n", &p) == 0);
	test_assert(mta_sts_mx_match(&p, "mail.example.com"));
	test_assert(mta_sts_mx_match(&p, "MAIL.Example.com."));
	test_assert(!mta_sts_mx_match(&p, "mail2.example.com"));
	test_assert(!mta_sts_mx_match(&p, "example.com"));
	test_assert(mta_sts_mx_match(&p, "mx1.example.net"));
	/* one label for the wildcard, no fewer, no more */
	test_assert(!mta_sts_mx_match(&p, "example.net"));
	test_assert(!mta_sts_mx_match(&p, ".example.net"));
	test_assert(!mta_sts_mx_match(&p, "a.b.example.net"));
	test_assert(!mta_sts_mx_match(&p, "xexample.net"));
	test_assert(!mta_sts_mx_match(&p, ""));
	test_end();
}

int
main(void)
{
	test_txt();
	test_policy();
	test_match();
	return test_done();
}
