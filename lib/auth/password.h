#ifndef PETREL_PASSWORD_H
#define PETREL_PASSWORD_H
/* crypt(3) passwords through libxcrypt: verify any scheme it knows
 * (traditional DES as made by MySQL ENCRYPT(), $1$, $5$, $6$, $2b$, $y$),
 * hash new ones with yescrypt by default. */
#include <stdbool.h>

enum password_scheme {
	PASSWORD_YESCRYPT,
	PASSWORD_SHA512,
	PASSWORD_BCRYPT,
};
/* The scheme new hashes use unless told otherwise. */
#define PASSWORD_DEFAULT_SCHEME PASSWORD_YESCRYPT

int password_scheme_parse(const char *name, enum password_scheme *scheme_r);
/* true only if hash is a usable crypt(3) hash and plain matches it.
 * An empty hash, "*", "!..." (locked) never match. Constant-time compare.
 * Dovecot's prefix of a crypt(3) scheme ({CRYPT}, {MD5-CRYPT},
 * {SHA256-CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}) is skipped. */
bool password_verify(const char *plain, const char *hash);
/* Whether a cleartext password from the directory (query_login's clear
 * column) equals plain: digests compared in constant time, so that
 * neither the content nor the length tells. An empty stored value never
 * matches. */
bool password_clear_verify(const char *plain, const char *stored);
/* CRAM-MD5 (RFC 2195): whether response (hex digits) is HMAC-MD5 of
 * challenge keyed by the cleartext password stored; constant time. */
bool password_cram_md5_verify(const char *stored, const char *challenge,
    const char *response);
/* A new hash (malloc'd) or NULL with *error_r set. */
char *password_hash(const char *plain, enum password_scheme scheme,
    const char **error_r);
/* Whether a stored value looks like a crypt(3) hash we can verify. */
bool password_hash_usable(const char *hash);
/* Runs the same crypt() as password_verify() against a dummy hash of
 * the default scheme and throws the result away: for logins without a
 * hash to check, so that their timing does not tell. */
void password_verify_dummy(const char *plain);
/* How many dummy checks ran (for tests). */
unsigned long password_dummy_checks(void);

#endif
