/* Unit tests for lib/trust/dmarc.c: the From domain, the record pick,
 * pct=, organizational domains and alignment (no DNS). */
#include <string.h>

#include "lib/trust/dmarc.h"
#include "tests/unit/test.h"

static enum dmarc_from
from(const char *header, char *dom)
{
	return dmarc_from_domain(header, strlen(header), dom, 256);
}

static void
test_from(void)
{
	char d[256];

	test_begin("DMARC: the From domain");
	test_assert(from("From: a@Example.COM\n\nbody", d) == DMARC_FROM_OK);
	test_assert_streq(d, "example.com");
	test_assert(from("Subject: x\r\nfrom :  \"Doe, J@x\" (c@d.e) "
	    "<j@mail.example.org.>\r\n\r\n", d) == DMARC_FROM_OK);
	test_assert_streq(d, "mail.example.org");
	/* folded, a comment with an '@' and a quoted local part */
	test_assert(from("From: Joe\n\t<\"a@b\"@ex.test> (x@y.z)\n", d) ==
	    DMARC_FROM_OK);
	test_assert_streq(d, "ex.test");
	/* a group of one */
	test_assert(from("From: team: x@grp.test;\n", d) == DMARC_FROM_OK);
	test_assert_streq(d, "grp.test");
	/* RFC 7489 6.6.1: no From, several From fields, several addresses */
	test_assert(from("To: a@b.c\n\nFrom: x@y.z\n", d) ==
	    DMARC_FROM_ABSENT);
	test_assert(from("From: a@b.c\nFrom: d@e.f\n", d) ==
	    DMARC_FROM_MULTIPLE);
	test_assert(from("From: a@b.c, d@e.f\n", d) == DMARC_FROM_ADDRESSES);
	test_assert(from("From: undisclosed:;\n", d) == DMARC_FROM_ADDRESSES);
	test_assert(from("From: \n", d) == DMARC_FROM_ADDRESSES);
	/* no domain, a literal, non-ASCII, an empty label */
	test_assert(from("From: joe\n", d) == DMARC_FROM_BAD);
	test_assert(from("From: joe@[192.0.2.1]\n", d) == DMARC_FROM_BAD);
	test_assert(from("From: joe@b\xc3\xa4r.test\n", d) == DMARC_FROM_BAD);
	test_assert(from("From: joe@a..test\n", d) == DMARC_FROM_BAD);
	/* white space: around dots and '@' (obsolete syntax), not between
	 * words (found by fuzz_trust_fields) */
	test_assert(from("From: joe @ ex . test\n", d) == DMARC_FROM_OK);
	test_assert_streq(d, "ex.test");
	test_assert(from("From: joe@mx.ex\tmelex.test\n", d) ==
	    DMARC_FROM_BAD);
	test_assert(from("From: Joe Doe joe@ex.test\n", d) == DMARC_FROM_BAD);
	test_assert(from("From: joe@ex(c)ample.test\n", d) == DMARC_FROM_BAD);
	test_assert(d[0] == '\0');
	/* a From-like field name is not From; bounds */
	test_assert(from("From-X: a@b.c\nFrom: <z@ok.test>\n", d) ==
	    DMARC_FROM_OK);
	test_assert_streq(d, "ok.test");
	test_assert(from("From: (unclosed comment a@b.c\n", d) ==
	    DMARC_FROM_ADDRESSES);
	test_assert(from("From: \"unclosed a@b.c\n", d) ==
	    DMARC_FROM_ADDRESSES || d[0] == '\0');
	test_end();
}

static void
test_from_long(void)
{
	char big[4096], d[256];

	test_begin("DMARC: long From values are bounded");
	memcpy(big, "From: a@", 8);
	memset(big + 8, 'x', 3000);
	memcpy(big + 3008, ".test\n", 7);
	test_assert(from(big, d) == DMARC_FROM_BAD);
	memcpy(big, "From: <", 7);
	memset(big + 7, '<', 3000);
	memcpy(big + 3007, "a@b.c>\n", 8);
	test_assert(from(big, d) != DMARC_FROM_OK || strlen(d) < 256);
	test_end();
}

static void
test_pick(void)
{
	const char *txt[] = { "v=spf1 -all", "v=DMARC1; p=none",
	    "v = DMARC1;p=reject", "v=DMARC10; p=none", "V=DMARC1; p=none",
	    "v=dmarc1; p=none", "v=DMARC1" };
	size_t pick;

	test_begin("DMARC: records that start with v=DMARC1");
	test_assert(dmarc_record_pick(txt, 1, &pick) == 0);
	test_assert(dmarc_record_pick(txt, 2, &pick) == 1 && pick == 1);
	test_assert(dmarc_record_pick(txt, 3, &pick) == 2 && pick == 1);
	test_assert(dmarc_record_pick(txt + 3, 3, &pick) == 0);
	test_assert(dmarc_record_pick(txt + 6, 1, &pick) == 1 && pick == 0);
	test_end();
}

static void
test_pct(void)
{
	test_begin("DMARC: pct= (RFC 7489 6.6.4)");
	test_assert(dmarc_apply_pct(DMARC_D_REJECT, 100, 99) == DMARC_D_REJECT);
	test_assert(dmarc_apply_pct(DMARC_D_REJECT, 0, 0) ==
	    DMARC_D_QUARANTINE);
	test_assert(dmarc_apply_pct(DMARC_D_QUARANTINE, 0, 0) == DMARC_D_NONE);
	test_assert(dmarc_apply_pct(DMARC_D_QUARANTINE, 50, 49) ==
	    DMARC_D_QUARANTINE);
	test_assert(dmarc_apply_pct(DMARC_D_QUARANTINE, 50, 50) ==
	    DMARC_D_NONE);
	test_assert(dmarc_apply_pct(DMARC_D_NONE, 0, 0) == DMARC_D_NONE);
	test_assert(dmarc_apply_pct(DMARC_D_REJECT, 300, 99) ==
	    DMARC_D_REJECT);
	test_end();
}

static void
test_org_and_alignment(void)
{
	char org[256], *err = NULL;

	test_begin("DMARC: organizational domains and alignment");
	test_assert(dmarc_setup(DMARC_PSL_FILE, &err) == 0);
	dmarc_org_domain("a.b.Example.co.uk", org, sizeof(org));
	test_assert_streq(org, "example.co.uk");
	dmarc_org_domain("mail.example.com.", org, sizeof(org));
	test_assert_streq(org, "example.com");
	dmarc_org_domain("co.uk", org, sizeof(org));
	test_assert_streq(org, "co.uk");
	/* a wildcard rule (*.ck) and its exception (!www.ck) */
	dmarc_org_domain("x.a.b.ck", org, sizeof(org));
	test_assert_streq(org, "a.b.ck");
	dmarc_org_domain("x.www.ck", org, sizeof(org));
	test_assert_streq(org, "www.ck");
	/* a name under an unlisted top-level label: the default rule */
	dmarc_org_domain("x.y.trusttest", org, sizeof(org));
	test_assert_streq(org, "y.trusttest");

	test_assert(dmarc_aligned("example.com", "EXAMPLE.com", true));
	test_assert(!dmarc_aligned("example.com", "mail.example.com", true));
	test_assert(dmarc_aligned("example.com", "mail.example.com", false));
	test_assert(dmarc_aligned("a.example.com", "b.example.com", false));
	test_assert(!dmarc_aligned("example.com", "com", false));
	test_assert(!dmarc_aligned("a.example.co.uk", "b.other.co.uk",
	    false));
	test_assert(!dmarc_aligned("x.a.b.ck", "y.c.b.ck", false));
	test_assert(dmarc_aligned("x.a.b.ck", "y.a.b.ck", false));
	test_assert(!dmarc_aligned("example.com", NULL, false));
	test_assert(!dmarc_aligned("example.com", "", false));
	test_end();
}

int
main(void)
{
	test_from();
	test_from_long();
	test_pick();
	test_pct();
	test_org_and_alignment();
	return test_done();
}
