/* Unit tests for lib/dnsrec: answers' rdata as text and the comparison of
 * `petrel dns check`. */
#include <stdlib.h>
#include <string.h>

#include "lib/dnsrec/dnsrec.h"
#include "tests/unit/test.h"

#define W(s) (const unsigned char *)(s), (sizeof(s) - 1)

static void
test_wire_value(void)
{
	char *v;

	test_begin("dnsrec_wire_value: each type, malformed rdata");
	v = dnsrec_wire_value("MX", W("\0\x0a\x04MAIL\x07""example\x03org\0"));
	test_assert_streq(v, "10 mail.example.org.");
	free(v);
	v = dnsrec_wire_value("SRV", W("\0\0\0\x01\x03\xe1\x01m\x01x\0"));
	test_assert_streq(v, "0 1 993 m.x.");
	free(v);
	v = dnsrec_wire_value("SRV", W("\0\0\0\0\0\0\0"));
	test_assert_streq(v, "0 0 0 .");
	free(v);
	v = dnsrec_wire_value("CNAME", W("\x01h\x01x\0"));
	test_assert_streq(v, "h.x.");
	free(v);
	v = dnsrec_wire_value("TLSA", W("\x03\x01\x01\xab\x0c"));
	test_assert_streq(v, "3 1 1 ab0c");
	free(v);
	/* TXT strings joined; what dnsrec never writes is escaped */
	v = dnsrec_wire_value("TXT", W("\x03v=s\x04pf1 \0"));
	test_assert_streq(v, "v=spf1 ");
	free(v);
	v = dnsrec_wire_value("TXT", W("\x05\"\\\n\0\xff"));
	test_assert_streq(v, "\\\"\\\\\\010\\000\\255");
	free(v);
	/* lengths past the rdata, bytes after a name, compression */
	test_assert(dnsrec_wire_value("TXT", W("\x05""ab")) == NULL);
	test_assert(dnsrec_wire_value("MX", W("\0\x0a\x01m\0junk")) == NULL);
	test_assert(dnsrec_wire_value("MX", W("\0\x0a\xc0\x0c")) == NULL);
	test_assert(dnsrec_wire_value("MX", W("\0\x0a\x05m")) == NULL);
	test_assert(dnsrec_wire_value("SRV", W("\0\0\0")) == NULL);
	test_assert(dnsrec_wire_value("TLSA", W("\x03\x01")) == NULL);
	test_assert(dnsrec_wire_value("A", W("\x7f\0\0\x01")) == NULL);
	test_end();
}

static void
test_compare(void)
{
	struct dnsrec spf = { "d.", "TXT", "\"v=spf1 mx -all\"",
		"v=spf1 mx -all", true };
	struct dnsrec mx = { "d.", "MX", "10 m.d.", "10 m.d.", true };
	char *found[3];

	test_begin("dnsrec_compare: ok, missing, different; TXT by kind");
	found[0] = "site-verification=1";
	found[1] = "v=spf1 mx -all";
	test_assert(dnsrec_compare(&spf, found, 2) == DNSREC_OK);
	test_assert(dnsrec_compare(&spf, found, 1) == DNSREC_MISSING);
	test_assert(dnsrec_compare(&spf, found, 0) == DNSREC_MISSING);
	found[1] = "V=SPF1 a -all";
	test_assert(dnsrec_compare(&spf, found, 2) == DNSREC_DIFFERENT);
	test_assert(!dnsrec_same_kind(&spf, found[0]));
	test_assert(dnsrec_same_kind(&spf, found[1]));
	/* TXT is compared exactly, names without regard to case */
	found[1] = "v=spf1 MX -all";
	test_assert(dnsrec_compare(&spf, found, 2) == DNSREC_DIFFERENT);
	found[0] = "20 other.d.";
	found[1] = NULL;
	found[2] = "10 M.D.";
	test_assert(dnsrec_compare(&mx, found, 3) == DNSREC_OK);
	test_assert(dnsrec_compare(&mx, found, 2) == DNSREC_DIFFERENT);
	test_assert(dnsrec_compare(&mx, found + 1, 1) == DNSREC_MISSING);
	test_end();
}

int
main(void)
{
	test_wire_value();
	test_compare();
	return test_done();
}
