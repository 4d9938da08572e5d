/*
 * sasl.c: PLAIN and LOGIN exchanges (see sasl.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
}

int
sasl_plain_decode(const char *b64, size_t len, char **authcid_r,
    char **passwd_r)
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
	/* We do not let one user act for another. */
	if (nul1 != p && ((size_t)(nul1 - p) != (size_t)(nul2 - nul1 - 1) ||
	    memcmp(p, nul1 + 1, (size_t)(nul1 - p)) != 0))
		goto out;
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
		if (sasl_plain_decode(line, strlen(line), login_r, pass_r) < 0)
			return SASL_BAD;
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
	else
		return SASL_NOMECH;
	x->last = x->mech == SASL_MECH_PLAIN ? "PLAIN" : "LOGIN";
	if (initial == NULL) {
		*challenge_r = x->mech == SASL_MECH_PLAIN ? "" :
		    LOGIN_USER_CHALLENGE;
		return SASL_NEXT;
	}
	if (x->mech == SASL_MECH_PLAIN && strcmp(initial, "=") == 0)
		initial = "";	/* an empty initial response (RFC 4954 4) */
	return sasl_step(x, initial, challenge_r, login_r, pass_r);
}
