/* Unit tests for lib/base/str.c. */
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "test.h"

static void
test_append(void)
{
	str_t s = STR_INIT;

	test_begin("str append, binary data, printf");
	test_assert_streq(str_c(&s), "");
	str_append(&s, "abc");
	str_append_n(&s, "\0x", 2);
	test_assert(s.len == 5);
	test_assert(memcmp(s.data, "abc\0x", 5) == 0);
	test_assert(s.data[5] == '\0');
	str_truncate(&s, 1);
	str_printf(&s, "-%d-%s", 42, "z");
	test_assert_streq(str_c(&s), "a-42-z");
	for (int i = 0; i < 10000; i++)
		str_append_c(&s, 'q');
	test_assert(s.len == 6 + 10000);
	test_assert(s.cap > s.len);
	str_free(&s);
	test_assert(s.data == NULL && s.len == 0);
	test_end();
}

static void
test_u32(void)
{
	str_t s = STR_INIT;

	test_begin("str append u32: zero, one digit, the largest value");
	str_append_u32(&s, 0);
	str_append_c(&s, ' ');
	str_append_u32(&s, 7);
	str_append_c(&s, ' ');
	str_append_u32(&s, 1000000);
	str_append_c(&s, ' ');
	str_append_u32(&s, 4294967295u);
	test_assert_streq(str_c(&s), "0 7 1000000 4294967295");
	str_free(&s);
	test_end();
}

static void
test_json(void)
{
	str_t s = STR_INIT;

	test_begin("str json escaping");
	str_append_json(&s, "a\"b\\c\n\x01\t");
	test_assert_streq(str_c(&s), "\"a\\\"b\\\\c\\n\\u0001\\t\"");
	str_free(&s);
	test_end();
}

static void
test_helpers(void)
{
	char buf[] = "  MiXeD Case \t\n";
	str_t s = STR_INIT;
	char *p;

	test_begin("str trim, lower, suffix, steal");
	test_assert_streq(str_trim(buf), "MiXeD Case");
	str_lower(buf);
	test_assert(strncmp(buf, "  mixed case", 12) == 0);
	test_assert(str_has_suffix("a@example.test", "@example.test"));
	test_assert(!str_has_suffix("test", "example.test"));
	p = str_steal(&s);
	test_assert_streq(p, "");
	free(p);
	str_append(&s, "x");
	p = str_steal(&s);
	test_assert_streq(p, "x");
	test_assert(s.data == NULL);
	free(p);
	test_end();
}

static void
test_reserve_empty(void)
{
	str_t s = STR_INIT;
	char *p;

	/* found by fuzz_sasl: an empty LOGIN response was reserved room,
	 * decoded to nothing and stolen without a terminator */
	test_begin("str reserve on an empty string keeps it \"\"");
	str_reserve(&s, 40);
	test_assert(s.data != NULL && s.len == 0);
	test_assert(s.data[0] == '\0');
	test_assert_streq(str_c(&s), "");
	p = str_steal(&s);
	test_assert_streq(p, "");
	free(p);
	test_end();
}

int
main(void)
{
	test_append();
	test_reserve_empty();
	test_json();
	test_u32();
	test_helpers();
	return test_done();
}
