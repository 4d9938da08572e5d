/* Unit tests for lib/base/base64.c (the decoder is fed by unauthenticated
 * SASL clients). */
#include <stdlib.h>
#include <string.h>

#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "test.h"

static bool
decodes_to(const char *in, const char *want, size_t wantlen)
{
	str_t out = STR_INIT;
	bool ok;

	ok = base64_decode(&out, in, strlen(in)) == 0 && out.len == wantlen &&
	    (wantlen == 0 || memcmp(out.data, want, wantlen) == 0);
	str_free(&out);
	return ok;
}

static bool
refused(const char *in, size_t len)
{
	str_t out = STR_INIT;
	int r = base64_decode(&out, in, len);

	str_free(&out);
	return r == -1;
}

static void
test_vectors(void)
{
	/* RFC 4648 section 10 */
	static const char *const v[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};

	test_begin("base64: RFC 4648 vectors both ways");
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		str_t enc = STR_INIT;

		base64_encode(&enc, v[i][0], strlen(v[i][0]));
		test_assert(enc.len == strlen(v[i][1]) &&
		    (enc.len == 0 || memcmp(enc.data, v[i][1], enc.len) == 0));
		test_assert(decodes_to(v[i][1], v[i][0], strlen(v[i][0])));
		str_free(&enc);
	}
	/* SASL PLAIN "\0user\0pass" */
	test_assert(decodes_to("AHVzZXIAcGFzcw==", "\0user\0pass", 10));
	test_end();
}

static void
test_round_trip(void)
{
	unsigned char buf[300];

	test_begin("base64: every length and byte value round-trips");
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof(buf); len++) {
		str_t enc = STR_INIT, dec = STR_INIT;

		base64_encode(&enc, buf, len);
		test_assert(enc.len == (len + 2) / 3 * 4);
		test_assert(base64_decode(&dec, enc.data ? enc.data : "",
		    enc.len) == 0);
		test_assert(dec.len == len &&
		    (len == 0 || memcmp(dec.data, buf, len) == 0));
		str_free(&enc);
		str_free(&dec);
	}
	test_end();
}

static void
test_invalid(void)
{
	static const char *const bad[] = {
		"Zg=", "Zg", "Z", "Zm9vY", "Zm9vYg=",	/* lengths */
		"Zm9v\n", "Zm 9v", " Zm9v", "Zm9v ",	/* white space */
		"Zm9-", "Zm9_", "Zm9\x80", "Zm*v", "Z.9v",	/* alphabet */
		"====", "Z===", "Zg=v", "=Zg=", "Zg==Zm9v",	/* padding */
		"Zm9=Zm9v", "Zh==", "Zm9=", "Zm+=",	/* pad bits, place */
	};

	test_begin("base64: invalid input refused");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		test_assert(refused(bad[i], strlen(bad[i])));
	/* a NUL counts as junk, not as the end */
	test_assert(refused("Zm\0v", 4));
	/* the length given is all that is read: a valid prefix of a longer
	 * buffer decodes alone */
	test_assert(!refused("Zm9vYmFy", 4));
	test_assert(refused("Zm9vYmFy", 3));
	test_end();
}

int
main(void)
{
	test_vectors();
	test_round_trip();
	test_invalid();
	return test_done();
}
