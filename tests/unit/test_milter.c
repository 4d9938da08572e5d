/* Unit tests for lib/milter/proto.c: the milters list, packets, reply
 * decoding and reply lines. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/milter/milter.h"
#include "test.h"

static void
test_specs(void)
{
	struct milter_spec *sp;
	size_t n;
	const char *err;

	test_begin("milter: the milters list");
	test_assert(milter_specs_parse("", &sp, &n, &err) == 0 && n == 0);
	milter_specs_free(sp, n);
	test_assert(milter_specs_parse("inet:127.0.0.1:11332, unix:/run/m.sock,"
	    "inet6:[::1]:8891", &sp, &n, &err) == 0);
	test_assert(n == 3);
	test_assert_streq(sp[0].host, "127.0.0.1");
	test_assert_streq(sp[0].port, "11332");
	test_assert_streq(sp[1].path, "/run/m.sock");
	test_assert_streq(sp[2].host, "::1");
	test_assert_streq(sp[2].port, "8891");
	test_assert_streq(sp[0].text, "inet:127.0.0.1:11332");
	milter_specs_free(sp, n);
	test_assert(milter_specs_parse("tcp:1.2.3.4:5", &sp, &n, &err) < 0);
	test_assert(milter_specs_parse("inet:host", &sp, &n, &err) < 0);
	test_assert(milter_specs_parse("inet:host:0", &sp, &n, &err) < 0);
	test_assert(milter_specs_parse("inet:host:70000", &sp, &n, &err) < 0);
	test_assert(milter_specs_parse("inet:host:12x", &sp, &n, &err) < 0);
	test_assert(milter_specs_parse("inet:[::1:25", &sp, &n, &err) < 0);
	test_assert(milter_specs_parse("unix:relative", &sp, &n, &err) < 0);
	test_end();
}

static void
test_frame(void)
{
	struct milter_packet p;
	size_t used;
	const char *err;
	const unsigned char ok[] = { 0, 0, 0, 3, 'h', 'a', 0, 'x' };
	const unsigned char zero[] = { 0, 0, 0, 0, 'c' };
	const unsigned char huge[] = { 0x7f, 0xff, 0xff, 0xff, 'b' };

	test_begin("milter: packets");
	test_assert(milter_frame(ok, 3, &p, &used, &err) == 0);
	test_assert(milter_frame(ok, 6, &p, &used, &err) == 0);
	test_assert(milter_frame(ok, sizeof(ok), &p, &used, &err) == 1);
	test_assert(used == 7 && p.cmd == 'h' && p.len == 2);
	test_assert(milter_frame(zero, sizeof(zero), &p, &used, &err) < 0);
	test_assert(milter_frame(huge, sizeof(huge), &p, &used, &err) < 0);
	test_end();
}

static void
test_decode(void)
{
	struct milter_reply r;
	const char *err;
	unsigned char add[] = "X-A\0one";	/* with its final NUL */
	unsigned char chg[] = "\0\0\0\2Subject\0";
	unsigned char nonul[] = { 'X', '-', 'A', 0, 'v' };
	unsigned char badname[] = "Bad Name\0v";
	unsigned char opt[] = { 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x0f, 0xf0, 0x80 };

	test_begin("milter: replies");
	test_assert(milter_decode('h', add, sizeof(add), &r, &err) == 0);
	test_assert_streq(r.name, "X-A");
	test_assert_streq(r.value, "one");
	/* index 2, "Subject" and an empty value: delete the second */
	test_assert(milter_decode('m', chg, sizeof(chg), &r, &err) == 0);
	test_assert(r.index == 2);
	test_assert_streq(r.name, "Subject");
	test_assert_streq(r.value, "");
	/* the value's NUL missing, the index cut short */
	test_assert(milter_decode('m', chg, sizeof(chg) - 1, &r, &err) < 0);
	test_assert(milter_decode('m', chg, 3, &r, &err) < 0);
	test_assert(milter_decode('h', nonul, sizeof(nonul), &r, &err) < 0);
	test_assert(milter_decode('h', badname, sizeof(badname), &r, &err) < 0);
	test_assert(milter_decode('O', opt, sizeof(opt), &r, &err) == 0);
	test_assert(r.version == 6 && r.actions == 0x1ff &&
	    r.protocol == 0xff080);
	test_assert(milter_decode('O', opt, 11, &r, &err) < 0);
	test_assert(milter_decode('Z', opt, 0, &r, &err) < 0);
	test_assert(milter_decode('c', opt, 0, &r, &err) == 0);
	test_assert(milter_decode('y', nonul + 4, 1, &r, &err) < 0);
	test_end();
}

static void
line_is(const char *in, bool temp, const char *want)
{
	char *got = milter_reply_line(in, temp);

	if (want == NULL)
		test_assert(got == NULL);
	else
		test_assert_streq(got, want);
	free(got);
}

static void
test_reply_line(void)
{
	test_begin("milter: reply lines");
	line_is("550 5.7.1 Go away", false, "550 5.7.1 Go away");
	line_is("554 spam", false, "554 5.7.1 spam");
	line_is("550-5.7.1 one\r\n550 5.7.1 two", false, "550 5.7.1 one");
	line_is("550 4.7.1 wrong class", false, "550 5.7.1 wrong class");
	line_is("451 4.7.0 later", true, "451 4.7.0 later");
	line_is("451", true, "451 4.7.1 Service unavailable, try again later");
	line_is("550 a\x01" "b\x80", false, "550 5.7.1 a?b?");
	line_is("250 ok", false, NULL);
	line_is("451 later", false, NULL);
	line_is("55 x", false, NULL);
	line_is("5500 x", false, NULL);
	line_is("", false, NULL);
	test_end();
}

int
main(void)
{
	test_specs();
	test_frame();
	test_decode();
	test_reply_line();
	return test_done();
}
