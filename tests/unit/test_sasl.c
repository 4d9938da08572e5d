/*
 * test_sasl.c: unit tests for lib/session/sasl.c -- the PLAIN and LOGIN
 * exchanges behind SMTP AUTH, POP3 AUTH and IMAP AUTHENTICATE.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/session/sasl.h"
#include "tests/unit/test.h"

#define BOTH (SASL_MECH_PLAIN | SASL_MECH_LOGIN)

static char *
b64(const char *data, size_t len)
{
	str_t s = STR_INIT;

	base64_encode(&s, data, len);
	return str_steal(&s);
}

static void
test_plain(void)
{
	struct sasl x = { 0 };
	const char *ch = NULL;
	char *login = NULL, *pass = NULL;
	char *ir = b64("\0alice@example.test\0secret", 26);
	char *other = b64("bob@example.test\0alice@example.test\0secret", 42);

	test_begin("PLAIN: initial response, continuation, empty, authzid");
	test_assert(sasl_start(&x, BOTH, "plain", ir, &ch, &login, &pass) ==
	    SASL_DONE);
	test_assert_streq(login, "alice@example.test");
	test_assert_streq(pass, "secret");
	test_assert(!sasl_active(&x));
	test_assert_streq(x.last, "PLAIN");
	free(login);
	free(pass);

	/* no initial response: an empty challenge, then the response */
	test_assert(sasl_start(&x, BOTH, "PLAIN", NULL, &ch, &login, &pass) ==
	    SASL_NEXT);
	test_assert_streq(ch, "");
	test_assert(sasl_active(&x));
	test_assert(sasl_step(&x, ir, &ch, &login, &pass) == SASL_DONE);
	test_assert_streq(pass, "secret");
	free(login);
	free(pass);

	/* "=" is an empty initial response: nothing to decode */
	test_assert(sasl_start(&x, BOTH, "PLAIN", "=", &ch, &login, &pass) ==
	    SASL_BAD);
	/* acting for another user is refused */
	test_assert(sasl_start(&x, BOTH, "PLAIN", other, &ch, &login, &pass) ==
	    SASL_BAD);
	test_assert(!sasl_active(&x));
	free(ir);
	free(other);
	test_end();
}

static void
test_login(void)
{
	struct sasl x = { 0 };
	const char *ch = NULL;
	char *login = NULL, *pass = NULL;
	char *user = b64("alice@example.test", 18), *pw = b64("secret", 6);

	test_begin("LOGIN: user then password, with and without initial");
	test_assert(sasl_start(&x, BOTH, "LOGIN", NULL, &ch, &login, &pass) ==
	    SASL_NEXT);
	test_assert_streq(ch, "VXNlcm5hbWU6");	/* "Username:" */
	test_assert(sasl_step(&x, user, &ch, &login, &pass) == SASL_NEXT);
	test_assert_streq(ch, "UGFzc3dvcmQ6");	/* "Password:" */
	test_assert(sasl_step(&x, pw, &ch, &login, &pass) == SASL_DONE);
	test_assert_streq(login, "alice@example.test");
	test_assert_streq(pass, "secret");
	test_assert_streq(x.last, "LOGIN");
	free(login);
	free(pass);

	test_assert(sasl_start(&x, BOTH, "login", user, &ch, &login, &pass) ==
	    SASL_NEXT);
	test_assert_streq(ch, "UGFzc3dvcmQ6");
	test_assert(sasl_step(&x, "*", &ch, &login, &pass) == SASL_ABORTED);
	test_assert(!sasl_active(&x) && x.user == NULL);
	free(user);
	free(pw);
	test_end();
}

/* Leave a freed, dirty block of the size a short decode allocates, so a
 * result that is not terminated shows (ASan fills new blocks anyway). */
static void
dirty_heap(void)
{
	char *p = malloc(32);

	memset(p, 'x', 32);
	free(p);
}

static void
test_login_empty(void)
{
	struct sasl x = { 0 };
	const char *ch = NULL;
	char *login = NULL, *pass = NULL;

	/* found by fuzz_sasl: an empty response decoded to an
	 * unterminated buffer */
	test_begin("LOGIN: empty user name and password are \"\"");
	test_assert(sasl_start(&x, BOTH, "LOGIN", NULL, &ch, &login, &pass) ==
	    SASL_NEXT);
	dirty_heap();
	test_assert(sasl_step(&x, "", &ch, &login, &pass) == SASL_NEXT);
	test_assert_streq(x.user, "");
	dirty_heap();
	test_assert(sasl_step(&x, "", &ch, &login, &pass) == SASL_DONE);
	test_assert_streq(login, "");
	test_assert_streq(pass, "");
	free(login);
	free(pass);
	test_end();
}

static void
test_refusals(void)
{
	struct sasl x = { 0 };
	const char *ch = NULL;
	char *login = NULL, *pass = NULL;
	char *nul = b64("al\0ice", 6);

	test_begin("unknown or not offered mechanisms, bad base64, NUL, abort");
	test_assert(sasl_start(&x, BOTH, "CRAM-MD5", NULL, &ch, &login,
	    &pass) == SASL_NOMECH);
	test_assert(sasl_start(&x, SASL_MECH_PLAIN, "LOGIN", NULL, &ch, &login,
	    &pass) == SASL_NOMECH);
	test_assert(!sasl_active(&x));
	test_assert(sasl_start(&x, BOTH, "PLAIN", "not base64!", &ch, &login,
	    &pass) == SASL_BAD);
	test_assert(sasl_start(&x, BOTH, "PLAIN", "*", &ch, &login, &pass) ==
	    SASL_ABORTED);
	test_assert(sasl_start(&x, BOTH, "LOGIN", NULL, &ch, &login, &pass) ==
	    SASL_NEXT);
	test_assert(sasl_step(&x, nul, &ch, &login, &pass) == SASL_BAD);
	test_assert(!sasl_active(&x));
	test_assert(login == NULL && pass == NULL);
	free(nul);
	sasl_reset(&x);
	test_end();
}

/* A frontend's PLAIN: authzid the user, authcid SASL_PROXY_AUTHCID; the
 * exchange hands the user on (the secret is the password). */
static void
test_plain_proxy(void)
{
	struct sasl x = { 0 };
	const char *ch = NULL;
	char *login = NULL, *pass = NULL, *user;
	char *ir = b64("alice@example.test\0petrel-proxy\0k3y", 35);
	char *self = b64("\0alice@example.test\0pw", 22);

	test_begin("PLAIN: petrel-proxy acting for a user");
	test_assert(sasl_start(&x, BOTH, "PLAIN", ir, &ch, &login, &pass) ==
	    SASL_DONE);
	test_assert_streq(login, "petrel-proxy");
	test_assert_streq(pass, "k3y");
	user = sasl_take_proxy(&x);
	test_assert_streq(user, "alice@example.test");
	test_assert(sasl_take_proxy(&x) == NULL);
	free(user);
	free(login);
	free(pass);
	/* an ordinary PLAIN leaves none */
	test_assert(sasl_start(&x, BOTH, "PLAIN", self, &ch, &login, &pass) ==
	    SASL_DONE);
	test_assert(sasl_take_proxy(&x) == NULL);
	free(login);
	free(pass);
	/* sasl_plain_decode (SMTP AUTH, fuzzed) still refuses it */
	test_assert(sasl_plain_decode(ir, strlen(ir), &login, &pass) < 0);
	sasl_reset(&x);
	free(ir);
	free(self);
	test_end();
}

int
main(void)
{
	test_plain();
	test_plain_proxy();
	test_login();
	test_login_empty();
	test_refusals();
	return test_done();
}
