/* Unit tests for lib/queue/mx_answer.c: MX rdata as libunbound gives it. */
#include <string.h>

#include "lib/queue/mx_answer.h"
#include "tests/unit/test.h"

/* rdata for preference 10 and the labels in `wire` (ending with 0) */
#define RD(wire) ((const unsigned char *)"\0\x0a" wire), (sizeof("\0\x0a" wire) - 1)

static void
test_rdata(void)
{
	struct mx_record r;

	test_begin("MX rdata: names, root, malformed");
	test_assert(mx_rdata_parse(RD("\x02mx\x07""example\x04test\0"), &r));
	test_assert(r.pref == 10);
	test_assert_streq(r.name, "mx.example.test");
	test_assert(mx_rdata_parse(RD("\0"), &r));
	test_assert_streq(r.name, "");
	test_assert(!mx_rdata_parse((const unsigned char *)"\0\x0a", 2, &r));
	/* a label running past the rdata, a compression pointer */
	test_assert(!mx_rdata_parse(RD("\x05mx"), &r));
	test_assert(!mx_rdata_parse(RD("\xc0\x0c"), &r));
	/* no root label */
	test_assert(!mx_rdata_parse(RD("\x02mx"), &r));
	test_end();
}

static void
test_hostile_names(void)
{
	struct mx_record r;

	/* found by fuzz_mx_answer: any octet went into the host name, so
	 * a hostile DNS answer put a line end (or a NUL, cutting the name
	 * short) into getaddrinfo(), the relay= of the logs and the
	 * delivery status texts */
	test_begin("MX rdata: a name must be a host name");
	test_assert(!mx_rdata_parse(RD("\x07mx\nevil\x04test\0"), &r));
	test_assert(!mx_rdata_parse(RD("\x04mx\0x\x04test\0"), &r));
	test_assert(!mx_rdata_parse(RD("\x04mx.x\x04test\0"), &r));
	test_assert(!mx_rdata_parse(RD("\x04mx x\x04test\0"), &r));
	test_assert(!mx_rdata_parse(RD("\x02mx\0junk"), &r));
	test_assert(mx_rdata_parse(RD("\x04_m-x\x04test\0"), &r));
	test_assert_streq(r.name, "_m-x.test");
	test_end();
}

static void
test_answer(void)
{
	const unsigned char *data[4] = {
		(const unsigned char *)"\0\x14\x01""b\0",
		(const unsigned char *)"\0\x0a\x01""a\0",
		(const unsigned char *)"\0\x05\x03""b\na\0",
		(const unsigned char *)"\0\x0a\x01""c\0",
	};
	const size_t len[4] = { 5, 5, 7, 5 };
	const unsigned char *null[1] = { (const unsigned char *)"\0\0\0" };
	const size_t nlen[1] = { 3 };
	struct mx_record mx[MX_RECORDS_MAX];
	size_t n;

	test_begin("MX answer: bad records skipped, sorted, null MX");
	n = mx_answer_sort(data, len, 4, mx);
	test_assert(n == 3);
	test_assert_streq(mx[0].name, "a");
	test_assert_streq(mx[1].name, "c");
	test_assert_streq(mx[2].name, "b");
	test_assert(!mx_answer_null(mx, n));
	n = mx_answer_sort(null, nlen, 1, mx);
	test_assert(n == 1 && mx_answer_null(mx, n));
	test_end();
}

int
main(void)
{
	test_rdata();
	test_hostile_names();
	test_answer();
	return test_done();
}
