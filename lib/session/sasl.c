/*
 * sasl.c: PLAIN, LOGIN and CRAM-MD5 exchanges (see sasl.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/session/sasl.h"

/* base64 "Username:" and "Password:", as every LOGIN server sends */
#define LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define LOGIN_PASS_CHALLENGE "UGFzc3dvcmQ6"

bool
sasl_active(const struct sasl *x)
{
	return x->mech != 0;
}

void
sasl_reset(struct sasl *x)
{
	if (x->user != NULL) {
		explicit_bzero(x->user, strlen(x->user));
		free(x->user);
	}
	x->user = NULL;
	x->mech = 0;
	xfree(&x->challenge);
	xfree(&x->challenge_b64);
	xfree(&x->proxy_for);
}

char *
sasl_take_proxy(struct sasl *x)
{
	char *c = x->proxy_for;

	x->proxy_for = NULL;
	return c;
}

char *
sasl_take_challenge(struct sasl *x)
{
	char *c = x->challenge;

	x->challenge = NULL;
	return c;
}

/* RFC 2195 2: a challenge unique to this exchange, in the form of an
 * RFC 822 msg-id: "<random.time@hostname>". */
static void
cram_challenge(struct sasl *x)
{
	unsigned long long rnd = 0;
	str_t b64 = STR_INIT;
	const char *host = x->host != NULL && x->host[0] != '\0' &&
	    strlen(x->host) < SASL_CHALLENGE_MAX - 64 ? x->host : "localhost";

	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd ^= (unsigned long long)clock() << 20 ^ (uintptr_t)x;
	x->challenge = xasprintf("<%llu.%lld@%s>", rnd,
	    (long long)time(NULL), host);
	base64_encode(&b64, x->challenge, strlen(x->challenge));
	x->challenge_b64 = str_steal(&b64);
}

/* A CRAM-MD5 response: base64 of "user SP digest". The user name is
 * everything before the last space (it may hold spaces); the digest is
 * checked by the auth process. -1 if malformed. */
static int
cram_decode(const char *b64, char **login_r, char **digest_r)
{
	str_t dec = STR_INIT;
	size_t len = strlen(b64);
	const char *sp;
	int ret = -1;

	str_reserve(&dec, len / 4 * 3 + 1);
	if (base64_decode(&dec, b64, len) < 0 || dec.len == 0 ||
	    memchr(str_c(&dec), '\0', dec.len) != NULL)
		goto out;
	sp = strrchr(str_c(&dec), ' ');
	if (sp == NULL || sp == dec.data || sp[1] == '\0')
		goto out;
	*login_r = xstrndup(dec.data, (size_t)(sp - dec.data));
	*digest_r = xstrdup(sp + 1);
	ret = 0;
out:
	if (dec.data != NULL)
		explicit_bzero(dec.data, dec.len);
	str_free(&dec);
	return ret;
}

int
sasl_plain_decode(const char *b64, size_t len, char **authcid_r,
    char **passwd_r)
{
	return sasl_plain_decode_as(b64, len, NULL, authcid_r, passwd_r);
}

int
sasl_plain_decode_as(const char *b64, size_t len, char **authzid_r,
    char **authcid_r, char **passwd_r)
{
	str_t raw = STR_INIT;
	const char *p, *nul1, *nul2, *end;
	int ret = -1;

	/* room for all of it up front: growing would free a copy of the
	 * password unwiped */
	str_reserve(&raw, len / 4 * 3 + 1);
	if (base64_decode(&raw, b64, len) < 0 || raw.len == 0)
		goto out;
	p = raw.data;
	end = raw.data + raw.len;
	nul1 = memchr(p, '\0', raw.len);
	if (nul1 == NULL)
		goto out;
	nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
	if (nul2 == NULL || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)))
		goto out;
	if (authzid_r != NULL)
		*authzid_r = NULL;
	/* We do not let one user act for another, but for a frontend
	 * (SASL_PROXY_AUTHCID, whose secret the caller checks). */
	if (nul1 != p && ((size_t)(nul1 - p) != (size_t)(nul2 - nul1 - 1) ||
	    memcmp(p, nul1 + 1, (size_t)(nul1 - p)) != 0)) {
		if (authzid_r == NULL ||
		    (size_t)(nul2 - nul1 - 1) != strlen(SASL_PROXY_AUTHCID) ||
		    memcmp(nul1 + 1, SASL_PROXY_AUTHCID,
		    strlen(SASL_PROXY_AUTHCID)) != 0)
			goto out;
		*authzid_r = xstrndup(p, (size_t)(nul1 - p));
	}
	*authcid_r = xstrndup(nul1 + 1, (size_t)(nul2 - nul1 - 1));
	*passwd_r = xstrndup(nul2 + 1, (size_t)(end - nul2 - 1));
	ret = 0;
out:
	if (raw.data != NULL)
		explicit_bzero(raw.data, raw.len);
	str_free(&raw);
	return ret;
}

/* One LOGIN response: a base64 text without NUL. NULL if malformed. */
static char *
login_decode(const char *b64)
{
	str_t dec = STR_INIT;
	size_t len = strlen(b64);

	/* room for all of it up front: growing would free a copy of the
	 * password unwiped */
	str_reserve(&dec, len / 4 * 3 + 1);
	if (base64_decode(&dec, b64, len) < 0 ||
	    memchr(str_c(&dec), '\0', dec.len) != NULL) {
		if (dec.data != NULL)
			explicit_bzero(dec.data, dec.len);
		str_free(&dec);
		return NULL;
	}
	return str_steal(&dec);
}

enum sasl_status
sasl_step(struct sasl *x, const char *line, const char **challenge_r,
    char **login_r, char **pass_r)
{
	char *dec;

	if (strcmp(line, "*") == 0) {
		sasl_reset(x);
		return SASL_ABORTED;
	}
	if (x->mech == SASL_MECH_PLAIN) {
		sasl_reset(x);
		if (sasl_plain_decode_as(line, strlen(line), &x->proxy_for,
		    login_r, pass_r) < 0)
			return SASL_BAD;
		return SASL_DONE;
	}
	if (x->mech == SASL_MECH_CRAM_MD5) {
		char *challenge = sasl_take_challenge(x);

		sasl_reset(x);
		if (cram_decode(line, login_r, pass_r) < 0) {
			free(challenge);
			return SASL_BAD;
		}
		x->challenge = challenge;
		return SASL_DONE;
	}
	if (x->mech != SASL_MECH_LOGIN) {
		sasl_reset(x);
		return SASL_BAD;
	}
	if ((dec = login_decode(line)) == NULL) {
		sasl_reset(x);
		return SASL_BAD;
	}
	if (x->user == NULL) {
		x->user = dec;
		*challenge_r = LOGIN_PASS_CHALLENGE;
		return SASL_NEXT;
	}
	*login_r = x->user;
	*pass_r = dec;
	x->user = NULL;
	x->mech = 0;
	return SASL_DONE;
}

enum sasl_status
sasl_start(struct sasl *x, unsigned allowed, const char *mech,
    const char *initial, const char **challenge_r, char **login_r,
    char **pass_r)
{
	sasl_reset(x);
	if (strcasecmp(mech, "PLAIN") == 0 && (allowed & SASL_MECH_PLAIN))
		x->mech = SASL_MECH_PLAIN;
	else if (strcasecmp(mech, "LOGIN") == 0 && (allowed & SASL_MECH_LOGIN))
		x->mech = SASL_MECH_LOGIN;
	else if (strcasecmp(mech, "CRAM-MD5") == 0 &&
	    (allowed & SASL_MECH_CRAM_MD5))
		x->mech = SASL_MECH_CRAM_MD5;
	else
		return SASL_NOMECH;
	x->last = x->mech == SASL_MECH_PLAIN ? "PLAIN" :
	    x->mech == SASL_MECH_LOGIN ? "LOGIN" : "CRAM-MD5";
	if (x->mech == SASL_MECH_CRAM_MD5) {
		/* the server speaks first: no initial response (RFC 4954
		 * 4, RFC 4959 3) */
		if (initial != NULL) {
			sasl_reset(x);
			return SASL_BAD;
		}
		cram_challenge(x);
		*challenge_r = x->challenge_b64;
		return SASL_NEXT;
	}
	if (initial == NULL) {
		*challenge_r = x->mech == SASL_MECH_PLAIN ? "" :
		    LOGIN_USER_CHALLENGE;
		return SASL_NEXT;
	}
	if (x->mech == SASL_MECH_PLAIN && strcmp(initial, "=") == 0)
		initial = "";	/* an empty initial response (RFC 4954 4) */
	return sasl_step(x, initial, challenge_r, login_r, pass_r);
}
