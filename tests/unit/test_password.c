/* Unit tests for lib/auth/password.c: every scheme libxcrypt verifies. */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/auth/password.h"
#include "test.h"

static void
test_known_hashes(void)
{
	char *h;
	struct crypt_data cd;

	test_begin("password verify: DES (Exim howto example), $1$, $5$");
	/* The Exim + Courier howto's MySQL ENCRYPT() example. */
	test_assert(password_verify("lrepsak", "jnk.l3QByZvdk"));
	test_assert(!password_verify("lrepsaK", "jnk.l3QByZvdk"));
	test_assert(!password_verify("", "jnk.l3QByZvdk"));
	test_assert(!password_verify("lrepsak ", "jnk.l3QByZvdk"));
	memset(&cd, 0, sizeof(cd));
	h = strdup(crypt_r("secret", "$1$abcdefgh$", &cd));
	test_assert(strncmp(h, "$1$", 3) == 0);
	test_assert(password_verify("secret", h));
	test_assert(!password_verify("Secret", h));
	free(h);
	memset(&cd, 0, sizeof(cd));
	h = strdup(crypt_r("secret", "$5$saltsaltsalt$", &cd));
	test_assert(password_verify("secret", h));
	test_assert(!password_verify("secret2", h));
	free(h);
	test_end();

	test_begin("password verify: Dovecot's {SCHEME} prefix before crypt(3)");
	memset(&cd, 0, sizeof(cd));
	h = malloc(200);
	snprintf(h, 200, "{SHA512-CRYPT}%s",
	    crypt_r("secret", "$6$saltsalt$", &cd));
	test_assert(password_verify("secret", h));
	test_assert(!password_verify("secreT", h));
	test_assert(password_verify("secret", h + strlen("{SHA512-CRYPT}")));
	memcpy(h, "{sha512-crypt}", 14);	/* the prefix in any case */
	test_assert(password_verify("secret", h));
	free(h);
	test_assert(password_verify("lrepsak", "{CRYPT}jnk.l3QByZvdk"));
	test_assert(!password_verify("secret", "{PLAIN}secret"));
	test_assert(!password_verify("", "{CRYPT}"));
	test_assert(!password_verify("x", "{CRYPT}*"));
	test_end();
}

static void
test_new_hashes(void)
{
	static const struct { const char *name; const char *prefix; } s[] = {
		{ "yescrypt", "$y$" }, { "sha512", "$6$" }, { "bcrypt", "$2b$" },
	};
	const char *err;

	test_begin("password hash: yescrypt, sha512, bcrypt round-trip");
	for (size_t i = 0; i < 3; i++) {
		enum password_scheme scheme;
		char *h, *h2;

		test_assert(password_scheme_parse(s[i].name, &scheme) == 0);
		h = password_hash("p\xc3\xa4ss word", scheme, &err);
		test_assert(h != NULL);
		if (h == NULL)
			continue;
		test_assert(strncmp(h, s[i].prefix, strlen(s[i].prefix)) == 0);
		test_assert(password_verify("p\xc3\xa4ss word", h));
		test_assert(!password_verify("p\xc3\xa4ss wordx", h));
		h2 = password_hash("p\xc3\xa4ss word", scheme, &err);
		test_assert(h2 != NULL && strcmp(h, h2) != 0); /* salted */
		free(h);
		free(h2);
	}
	{
		enum password_scheme scheme;

		test_assert(password_scheme_parse("md5", &scheme) == -1);
	}
	test_end();
}

static void
test_unusable(void)
{
	test_begin("password: empty, locked and garbage hashes never match");
	test_assert(!password_verify("", ""));
	test_assert(!password_verify("x", ""));
	test_assert(!password_verify("x", "*"));
	test_assert(!password_verify("x", "!$y$j9T$abc"));
	test_assert(!password_verify("x", "*0"));
	test_assert(!password_verify("x", "$y$"));
	test_assert(!password_verify("x", "$6$salt"));
	test_assert(!password_verify("x", "x"));
	test_assert(!password_verify("plain", "plain"));
	test_end();
}

static void
test_cleartext(void)
{
	const char *ch = "<1896.697170952@postoffice.reston.mci.net>";

	test_begin("password: cleartext column and CRAM-MD5 (RFC 2195 2)");
	test_assert(password_clear_verify("lrepsak", "lrepsak"));
	test_assert(!password_clear_verify("lrepsa", "lrepsak"));
	test_assert(!password_clear_verify("lrepsakk", "lrepsak"));
	test_assert(!password_clear_verify("", ""));
	test_assert(!password_clear_verify("x", ""));
	/* the RFC's example exchange */
	test_assert(password_cram_md5_verify("tanstaaftanstaaf", ch,
	    "b913a602c7eda7a495b4e6e7334d3890"));
	test_assert(password_cram_md5_verify("tanstaaftanstaaf", ch,
	    "B913A602C7EDA7A495B4E6E7334D3890"));
	test_assert(!password_cram_md5_verify("tanstaaftanstaaf", ch,
	    "b913a602c7eda7a495b4e6e7334d3891"));
	test_assert(!password_cram_md5_verify("tanstaaftanstaaf", ch,
	    "b913a602c7eda7a495b4e6e7334d389"));
	test_assert(!password_cram_md5_verify("tanstaaftanstaa", ch,
	    "b913a602c7eda7a495b4e6e7334d3890"));
	test_assert(!password_cram_md5_verify("", ch,
	    "b913a602c7eda7a495b4e6e7334d3890"));
	test_end();
}

int
main(void)
{
	test_known_hashes();
	test_new_hashes();
	test_unusable();
	test_cleartext();
	return test_done();
}
