/*
 * password.c: crypt(3) verification and hashing (libxcrypt).
 *
 * The plain-text password is untrusted input; it never reaches a log.
 * crypt_r's failure tokens ("*0", "*1") and locked hashes never match.
 * A cleartext password from the directory (the howto's `clear` column)
 * is compared by digest, and CRAM-MD5 (RFC 2195) is computed here, in the
 * auth process: the workers relay the challenge and the response only.
 */
#include <crypt.h>
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/auth/password.h"
#include "lib/tls/tls.h"

int
password_scheme_parse(const char *name, enum password_scheme *scheme_r)
{
	if (strcmp(name, "yescrypt") == 0)
		*scheme_r = PASSWORD_YESCRYPT;
	else if (strcmp(name, "sha512") == 0 || strcmp(name, "sha512-crypt") == 0)
		*scheme_r = PASSWORD_SHA512;
	else if (strcmp(name, "bcrypt") == 0)
		*scheme_r = PASSWORD_BCRYPT;
	else
		return -1;
	return 0;
}

bool
password_hash_usable(const char *hash)
{
	if (hash == NULL || hash[0] == '\0' || hash[0] == '*' || hash[0] == '!')
		return false;
	return true;
}

/* Dovecot's scheme prefix before a crypt(3) string ("{SHA512-CRYPT}$6$...",
 * as PostfixAdmin writes with its dovecot: schemes): the string after it.
 * Other schemes ({PLAIN}, {SSHA}, ...) are not crypt(3): left as they
 * are, so that they never verify. */
static const char *
strip_scheme(const char *hash)
{
	static const char *const crypt_schemes[] = { "{CRYPT}", "{DES-CRYPT}",
	    "{MD5-CRYPT}", "{SHA256-CRYPT}", "{SHA512-CRYPT}", "{BLF-CRYPT}" };

	for (size_t i = 0; hash[0] == '{' &&
	    i < sizeof(crypt_schemes) / sizeof(crypt_schemes[0]); i++) {
		size_t n = strlen(crypt_schemes[i]);

		if (strncasecmp(hash, crypt_schemes[i], n) == 0)
			return hash + n;
	}
	return hash;
}

bool
password_verify(const char *plain, const char *hash)
{
	struct crypt_data *data;
	const char *out;
	size_t hlen, olen;
	unsigned char diff = 0;
	bool ok;

	if (!password_hash_usable(hash))
		return false;
	hash = strip_scheme(hash);
	if (!password_hash_usable(hash))
		return false;
	data = xmalloc(sizeof(*data));
	out = crypt_r(plain, hash, data);
	if (out == NULL || out[0] == '*') {
		explicit_bzero(data, sizeof(*data));
		free(data);
		return false;
	}
	hlen = strlen(hash);
	olen = strlen(out);
	for (size_t i = 0; i < olen; i++)
		diff |= (unsigned char)(out[i] ^ (i < hlen ? hash[i] : 0));
	ok = diff == 0 && olen == hlen;
	explicit_bzero(data, sizeof(*data));
	free(data);
	return ok;
}

bool
password_clear_verify(const char *plain, const char *stored)
{
	unsigned char a[32], b[32], diff = 0;

	if (stored == NULL || stored[0] == '\0')
		return false;
	crypto_sha256(plain, strlen(plain), a);
	crypto_sha256(stored, strlen(stored), b);
	for (size_t i = 0; i < sizeof(a); i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	explicit_bzero(a, sizeof(a));
	explicit_bzero(b, sizeof(b));
	return diff == 0;
}

bool
password_cram_md5_verify(const char *stored, const char *challenge,
    const char *response)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[16], diff = 0;
	char want[33];

	if (stored == NULL || stored[0] == '\0' || strlen(response) != 32)
		return false;
	crypto_hmac_md5(stored, strlen(stored), challenge, strlen(challenge),
	    mac);
	for (size_t i = 0; i < 16; i++) {
		want[2 * i] = hex[mac[i] >> 4];
		want[2 * i + 1] = hex[mac[i] & 0xf];
	}
	want[32] = '\0';
	/* RFC 2195 2: lowercase hex; upper case is taken too */
	for (size_t i = 0; i < 32; i++)
		diff |= (unsigned char)(want[i] ^ tolower((unsigned char)
		    response[i]));
	explicit_bzero(mac, sizeof(mac));
	explicit_bzero(want, sizeof(want));
	return diff == 0;
}

char *
password_hash(const char *plain, enum password_scheme scheme,
    const char **error_r)
{
	static const char *const prefixes[] = {
		[PASSWORD_YESCRYPT] = "$y$",
		[PASSWORD_SHA512] = "$6$",
		[PASSWORD_BCRYPT] = "$2b$",
	};
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data;
	const char *out;
	char *result;

	/* libxcrypt's default costs, except bcrypt whose default (5) is
	 * too cheap today; 10 matches common practice. */
	unsigned long cost = scheme == PASSWORD_BCRYPT ? 10 : 0;

	if (crypt_gensalt_rn(prefixes[scheme], cost, NULL, 0, salt,
	    sizeof(salt)) == NULL) {
		*error_r = "cannot make a salt (crypt_gensalt failed)";
		return NULL;
	}
	data = xmalloc(sizeof(*data));
	out = crypt_r(plain, salt, data);
	if (out == NULL || out[0] == '*') {
		*error_r = "crypt failed";
		free(data);
		return NULL;
	}
	result = xstrdup(out);
	explicit_bzero(data, sizeof(*data));
	free(data);
	return result;
}

/* A hash of the default scheme for logins that have none to check (an
 * unknown user, a login not allowed), so that they cost the same crypt()
 * as a wrong password for a real user. */
static char *dummy_hash;
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static atomic_ulong dummy_checks;

static void
dummy_make(void)
{
	const char *err;

	dummy_hash = password_hash("petrel dummy password",
	    PASSWORD_DEFAULT_SCHEME, &err);
}

void
password_verify_dummy(const char *plain)
{
	pthread_once(&dummy_once, dummy_make);
	atomic_fetch_add(&dummy_checks, 1);
	if (dummy_hash != NULL)
		(void)password_verify(plain, dummy_hash);
}

unsigned long
password_dummy_checks(void)
{
	return atomic_load(&dummy_checks);
}
