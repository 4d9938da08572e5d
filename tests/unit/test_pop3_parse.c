/* Unit tests for lib/pop3/parse.c: POP3 verbs, message numbers, TOP and
 * AUTH arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/pop3/parse.h"
#include "tests/unit/test.h"

static enum pop3_verb
verb(const char *text, char *arg_out, size_t size)
{
	char line[64], *arg;
	size_t len = strlen(text);
	enum pop3_verb v;

	memcpy(line, text, len + 1);
	v = pop3_verb(line, len, &arg);
	snprintf(arg_out, size, "%s", arg);
	return v;
}

static void
test_verbs(void)
{
	char arg[64], nul[] = "USER a\0b";

	test_begin("pop3 verbs: case, argument, unknown, NUL");
	test_assert(verb("retr 3", arg, sizeof(arg)) == POP3_RETR);
	test_assert_streq(arg, "3");
	test_assert(verb("TOP 1 10", arg, sizeof(arg)) == POP3_TOP);
	test_assert_streq(arg, "1 10");
	test_assert(verb("Capa", arg, sizeof(arg)) == POP3_CAPA);
	test_assert_streq(arg, "");
	test_assert(verb("PASS  two  spaces", arg, sizeof(arg)) == POP3_PASS);
	test_assert_streq(arg, " two  spaces");
	test_assert(verb("USERS x", arg, sizeof(arg)) == POP3_UNKNOWN);
	test_assert(verb(" QUIT", arg, sizeof(arg)) == POP3_UNKNOWN);
	test_assert(verb("", arg, sizeof(arg)) == POP3_UNKNOWN);
	{
		char *a;

		test_assert(pop3_verb(nul, 8, &a) == POP3_NUL);
		test_assert_streq(a, "");
	}
	test_assert_streq(pop3_verb_name(POP3_DELE), "DELE");
	test_assert(pop3_verb_name(POP3_UNKNOWN) == NULL);
	test_end();
}

static void
test_numbers(void)
{
	size_t n = 0;
	long lines = 0;

	test_begin("pop3 message numbers and TOP line counts");
	test_assert(pop3_msgno("2", 3, &n) == POP3_MSGNO_OK && n == 2);
	test_assert(pop3_msgno("3 10", 3, &n) == POP3_MSGNO_OK && n == 3);
	test_assert(pop3_msgno("4", 3, &n) == POP3_MSGNO_RANGE);
	test_assert(pop3_msgno("0", 3, &n) == POP3_MSGNO_RANGE);
	test_assert(pop3_msgno("1x", 3, &n) == POP3_MSGNO_RANGE);
	test_assert(pop3_msgno("18446744073709551617", 3, &n) ==
	    POP3_MSGNO_RANGE);
	test_assert(pop3_msgno("+1", 3, &n) == POP3_MSGNO_SYNTAX);
	test_assert(pop3_msgno(" 1", 3, &n) == POP3_MSGNO_SYNTAX);
	test_assert(pop3_msgno("", 3, &n) == POP3_MSGNO_SYNTAX);
	test_assert(pop3_top_lines("1 10", &lines) == 0 && lines == 10);
	test_assert(pop3_top_lines("1 0", &lines) == 0 && lines == 0);
	test_assert(pop3_top_lines("1", &lines) < 0);
	test_assert(pop3_top_lines("1 -1", &lines) < 0);
	test_assert(pop3_top_lines("1 2 3", &lines) < 0);
	test_assert(pop3_top_lines("1 99999999999999999999", &lines) < 0);
	test_end();
}

static void
test_auth(void)
{
	char a1[] = "PLAIN AGEAYgBj", a2[] = "PLAIN ", a3[] = "", *mech, *resp;

	test_begin("pop3 AUTH argument split");
	pop3_auth_split(a1, &mech, &resp);
	test_assert_streq(mech, "PLAIN");
	test_assert(resp != NULL && strcmp(resp, "AGEAYgBj") == 0);
	pop3_auth_split(a2, &mech, &resp);
	test_assert_streq(mech, "PLAIN");
	test_assert(resp == NULL);
	pop3_auth_split(a3, &mech, &resp);
	test_assert_streq(mech, "");
	test_assert(resp == NULL);
	test_end();
}

int
main(void)
{
	test_verbs();
	test_numbers();
	test_auth();
	return test_done();
}
