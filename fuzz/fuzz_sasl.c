/*
 * fuzz_sasl.c: the SASL exchanges every protocol's AUTH/AUTHENTICATE runs
 * before login (lib/session/sasl.c, sasl_plain_decode), fed what an
 * unauthenticated client sends. The first byte picks the mechanisms
 * offered (its low three bits); the rest is lines: a line while no exchange runs starts one
 * ("MECH" or "MECH initial-response"), any other is a response. Checks:
 *  - the status and sasl_active() agree: only SASL_NEXT leaves an
 *    exchange running, and its challenge is LOGIN's or PLAIN's empty one;
 *  - a mechanism is started only if offered (case-insensitively);
 *  - PLAIN gives the authcid and password of the response as decoded
 *    here, only when the authzid is empty or the same as the authcid and
 *    the response has exactly two NULs;
 *  - LOGIN gives the two decoded responses, neither holding a NUL;
 *  - CRAM-MD5 refuses an initial response, sends the base64 of a
 *    "<...@host>" challenge, and gives the user name (before the last
 *    space) and digest (after it) of a response that decodes without a
 *    NUL, with the challenge it sent (sasl_take_challenge);
 *  - "*" aborts any exchange.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/session/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode as the exchange should; false if it should be refused. */
static bool
decode(const char *b64, str_t *out)
{
	str_truncate(out, 0);
	return base64_decode(out, b64, strlen(b64)) == 0;
}

static void
check_plain(const char *resp, const char *login, const char *pass,
    enum sasl_status st)
{
	str_t dec = STR_INIT;
	const char *p, *n1, *n2, *end;
	bool ok = false;

	if (decode(resp, &dec) && dec.len > 0) {
		p = str_c(&dec);
		end = p + dec.len;
		n1 = memchr(p, '\0', dec.len);
		n2 = n1 == NULL ? NULL : memchr(n1 + 1, '\0',
		    (size_t)(end - n1 - 1));
		if (n2 != NULL && memchr(n2 + 1, '\0',
		    (size_t)(end - n2 - 1)) == NULL &&
		    (n1 == p || ((size_t)(n1 - p) == (size_t)(n2 - n1 - 1) &&
		    memcmp(p, n1 + 1, (size_t)(n1 - p)) == 0))) {
			ok = true;
			if (st == SASL_DONE &&
			    (strlen(login) != (size_t)(n2 - n1 - 1) ||
			    memcmp(login, n1 + 1, strlen(login)) != 0 ||
			    strlen(pass) != (size_t)(end - n2 - 1) ||
			    memcmp(pass, n2 + 1, strlen(pass)) != 0))
				abort();
		}
	}
	if (ok != (st == SASL_DONE))
		abort();
	str_free(&dec);
}

static void
check_login(const char *resp, const char *got)
{
	str_t dec = STR_INIT;

	if (!decode(resp, &dec) || memchr(str_c(&dec), '\0', dec.len) != NULL
	    || strcmp(str_c(&dec), got) != 0)
		abort();
	str_free(&dec);
}

static void
check_refused_login(const char *resp)
{
	str_t dec = STR_INIT;

	if (decode(resp, &dec) && memchr(str_c(&dec), '\0', dec.len) == NULL)
		abort();
	str_free(&dec);
}

/* CRAM-MD5: a response gives user and digest exactly when it decodes
 * without a NUL and has a space that is neither first nor last. */
static void
check_cram(struct sasl *x, const char *resp, const char *login,
    const char *pass, enum sasl_status st, const char *sent)
{
	str_t dec = STR_INIT;
	const char *sp = NULL;
	bool ok = false;
	char *ch;

	if (decode(resp, &dec) && dec.len > 0 &&
	    memchr(str_c(&dec), '\0', dec.len) == NULL) {
		sp = strrchr(str_c(&dec), ' ');
		ok = sp != NULL && sp != str_c(&dec) && sp[1] != '\0';
	}
	if (ok != (st == SASL_DONE))
		abort();
	if (ok) {
		if (strlen(login) != (size_t)(sp - str_c(&dec)) ||
		    memcmp(login, str_c(&dec), strlen(login)) != 0 ||
		    strcmp(pass, sp + 1) != 0)
			abort();
		ch = sasl_take_challenge(x);
		if (ch == NULL || strcmp(ch, sent) != 0)
			abort();
		free(ch);
	} else if (st != SASL_BAD) {
		abort();
	}
	str_free(&dec);
}

static void
run(unsigned allowed, char *text, size_t len)
{
	struct sasl x = { 0 };
	char *line = text, *end = text + len;
	char *login_name = NULL;	/* LOGIN: the user name response */
	char *sent = NULL;	/* CRAM-MD5: the challenge, decoded */
	unsigned mech = 0;

	x.host = "fuzz.example";

	while (line <= end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *challenge = NULL, *resp;
		char *login = NULL, *pass = NULL;
		enum sasl_status st;

		if (nl == NULL)
			nl = end;
		*nl = '\0';
		if (!sasl_active(&x)) {
			char *sp = strchr(line, ' ');
			const char *initial = NULL;

			if (sp != NULL) {
				*sp = '\0';
				initial = sp + 1;
			}
			mech = strcasecmp(line, "PLAIN") == 0 ? SASL_MECH_PLAIN :
			    strcasecmp(line, "LOGIN") == 0 ? SASL_MECH_LOGIN :
			    strcasecmp(line, "CRAM-MD5") == 0 ?
			    SASL_MECH_CRAM_MD5 : 0;
			mech &= allowed;
			st = sasl_start(&x, allowed, line, initial, &challenge,
			    &login, &pass);
			if (mech == 0) {
				if (st != SASL_NOMECH || sasl_active(&x))
					abort();
				goto next;
			}
			if (strcmp(x.last, mech == SASL_MECH_PLAIN ? "PLAIN" :
			    mech == SASL_MECH_LOGIN ? "LOGIN" : "CRAM-MD5") != 0)
				abort();
			if (mech == SASL_MECH_CRAM_MD5) {
				str_t dec = STR_INIT;

				if (initial != NULL) {
					if (st != SASL_BAD || sasl_active(&x))
						abort();
					goto next;
				}
				if (st != SASL_NEXT || !decode(challenge, &dec) ||
				    dec.len < 3 || str_c(&dec)[0] != '<' ||
				    strstr(str_c(&dec), "@fuzz.example>") == NULL)
					abort();
				free(sent);
				sent = str_steal(&dec);
				goto next;
			}
			if (initial == NULL) {
				if (st != SASL_NEXT || strcmp(challenge,
				    mech == SASL_MECH_PLAIN ? "" :
				    "VXNlcm5hbWU6") != 0)
					abort();
				goto next;
			}
			resp = mech == SASL_MECH_PLAIN &&
			    strcmp(initial, "=") == 0 ? "" : initial;
		} else {
			resp = line;
			st = sasl_step(&x, line, &challenge, &login, &pass);
		}
		if (strcmp(resp, "*") == 0) {
			if (st != SASL_ABORTED)
				abort();
		} else if (mech == SASL_MECH_CRAM_MD5) {
			check_cram(&x, resp, login, pass, st, sent);
		} else if (mech == SASL_MECH_PLAIN) {
			check_plain(resp, login, pass, st);
		} else if (login_name == NULL) {
			if (st == SASL_NEXT) {
				if (strcmp(challenge, "UGFzc3dvcmQ6") != 0)
					abort();
				check_login(resp, x.user);
				login_name = xstrdup(x.user);
			} else if (st == SASL_BAD) {
				check_refused_login(resp);
			} else {
				abort();
			}
		} else {
			if (st == SASL_DONE) {
				check_login(resp, pass);
				if (strcmp(login, login_name) != 0)
					abort();
			} else if (st == SASL_BAD) {
				check_refused_login(resp);
			} else {
				abort();
			}
		}
		if ((st == SASL_NEXT) != sasl_active(&x) ||
		    (st == SASL_DONE) != (login != NULL && pass != NULL))
			abort();
		if (st != SASL_NEXT) {
			free(login_name);
			login_name = NULL;
		}
next:
		free(login);
		free(pass);
		line = nl + 1;
	}
	free(login_name);
	free(sent);
	sasl_reset(&x);
	if (sasl_active(&x) || x.user != NULL || x.challenge != NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *login = NULL, *pass = NULL;

	if (size == 0)
		return 0;
	text = xmalloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	/* the whole input as one PLAIN response, NULs and all */
	if (sasl_plain_decode(text, size - 1, &login, &pass) == 0) {
		free(login);
		free(pass);
	}
	run(data[0] & 7, text, size - 1);
	free(text);
	return 0;
}
