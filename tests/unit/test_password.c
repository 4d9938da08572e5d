/* Unit tests for lib/auth/password.c: every scheme libxcrypt verifies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/auth/password.h"
#include "test.h"

/* Hashes made by other implementations than the libxcrypt that
 * password_verify() uses: MySQL's ENCRYPT() (DES), `openssl passwd -1/-5/-6`
 * (MD5-crypt, SHA-crypt) and the published bcrypt test vectors of
 * OpenBSD's bcrypt and jBCrypt. */
static const struct {
	const char *pass, *hash;
} known[] = {
	/* The Exim + Courier howto's MySQL ENCRYPT() example. */
	{ "lrepsak", "jnk.l3QByZvdk" },
	{ "secret", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1" },
	{ "secret", "$5$saltsaltsalt$"
	    "TihBZCRsJxAxHgKub.mCOdu9X7QLi980jJxe7T2aZg7" },
	{ "correct horse", "$6$kG1Ew/ZTmWOxLq6V$/DGx4HUgL.0pjCoVLLH2lK3vzGyFj5D"
	    "NTNiuqEhMHv9K1s8Gv76JZitDjyEJXMdPphVQKZDKRxld.rA1Uoh6Z0" },
	{ "secret", "$6$rounds=5000$x$mQUKLCQR1S846TztirS7Ejo4KyTtZWzcyuF2/"
	    "43jqoJTDZXRb8L.bXBNxX9GCZhKdADbfqEnGZyv89igC73DL/" },
	{ "", "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s." },
	{ "abc", "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i" },
	{ "abcdefghijklmnopqrstuvwxyz",
	    "$2a$06$.rCVZVOThsIa97pEDOxvGuRRgzG64bvtJ0938xuqzv18d3ZpQhstC" },
};

static void
test_known_hashes(void)
{
	test_begin("password verify: DES, $1$, $5$, $6$, $2a$ made elsewhere");
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		size_t n = strlen(known[i].pass);
		char *other = malloc(n + 2);

		test_assert(password_verify(known[i].pass, known[i].hash));
		/* one more character, one changed, one fewer: refused */
		memcpy(other, known[i].pass, n);
		other[n] = 'x';
		other[n + 1] = '\0';
		test_assert(!password_verify(other, known[i].hash));
		if (n > 0) {
			other[n] = '\0';
			other[0] ^= 0x20;
			test_assert(!password_verify(other, known[i].hash));
			other[0] ^= 0x20;
			other[n - 1] = '\0';
			test_assert(!password_verify(other, known[i].hash));
		}
		free(other);
	}
	test_assert(!password_verify("", "jnk.l3QByZvdk"));
	test_end();

	test_begin("password verify: Dovecot's {SCHEME} prefix before crypt(3)");
	{
		/* the $6$ entry of known[], made by openssl passwd -6 */
		char h[200];

		snprintf(h, sizeof(h), "{SHA512-CRYPT}%s", known[3].hash);
		test_assert(password_verify("correct horse", h));
		test_assert(!password_verify("correct horsE", h));
		memcpy(h, "{sha512-crypt}", 14);	/* the prefix in any case */
		test_assert(password_verify("correct horse", h));
	}
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
