#ifndef PETREL_SASL_H
#define PETREL_SASL_H
/*
 * SASL exchanges for every protocol's AUTH/AUTHENTICATE: PLAIN (RFC 4616),
 * LOGIN (draft-murchison-sasl-login) and CRAM-MD5 (RFC 2195). The
 * protocol frames the challenges ("334 x", "+ x") and lines; this decodes
 * what the client sends. Everything that held a password is wiped.
 * CRAM-MD5 makes the challenge here and hands it on with the client's
 * user name and digest; the digest is checked by the auth process, which
 * alone sees the cleartext password.
 */
#include <stdbool.h>
#include <stddef.h>

#define SASL_MECH_PLAIN 0x1
#define SASL_MECH_LOGIN 0x2
#define SASL_MECH_CRAM_MD5 0x4
/* A CRAM-MD5 challenge's bound (RFC 2195: "<random.time@hostname>"). */
#define SASL_CHALLENGE_MAX 300

enum sasl_status {
	SASL_DONE,	/* *login_r and *pass_r are set (malloc'd); for
			 * CRAM-MD5 *pass_r is the digest (hex) and
			 * sasl_take_challenge() gives the challenge */
	SASL_NEXT,	/* send *challenge_r (base64, may be "") */
	SASL_BAD,	/* the response cannot be decoded */
	SASL_ABORTED,	/* the client sent "*" */
	SASL_NOMECH,	/* the mechanism is not offered */
};

struct sasl {
	unsigned mech;	/* 0: no exchange running */
	char *user;	/* LOGIN: the user name given first */
	const char *last;	/* the last mechanism started ("PLAIN") */
	const char *host;	/* CRAM-MD5: the challenge's host name */
	char *challenge;	/* CRAM-MD5: the challenge sent (raw) */
	char *challenge_b64;	/* ... and as sent (base64) */
	char *proxy_for;	/* PLAIN from SASL_PROXY_AUTHCID: the user
				 * it acts for (sasl_take_proxy) */
};

/* The authentication identity of a frontend's SASL PLAIN (its password
 * is proxy_secret, its authorization identity the user). */
#define SASL_PROXY_AUTHCID "petrel-proxy"

/* Start mech (case-insensitive, one of allowed) with an initial
 * response (NULL: none; "=": an empty one, RFC 4954). */
enum sasl_status sasl_start(struct sasl *x, unsigned allowed,
    const char *mech, const char *initial, const char **challenge_r,
    char **login_r, char **pass_r);
/* A response line while an exchange runs (sasl_active). */
enum sasl_status sasl_step(struct sasl *x, const char *line,
    const char **challenge_r, char **login_r, char **pass_r);
bool sasl_active(const struct sasl *x);
/* After SASL_DONE for CRAM-MD5: the challenge (malloc'd), else NULL. */
char *sasl_take_challenge(struct sasl *x);
/* After SASL_DONE for PLAIN sent by SASL_PROXY_AUTHCID for another
 * user: that user (malloc'd), else NULL. */
char *sasl_take_proxy(struct sasl *x);
/* End an exchange (wipes what it held). */
void sasl_reset(struct sasl *x);
/* SASL PLAIN (RFC 4616): base64 of [authzid] NUL authcid NUL passwd.
 * 0 ok (malloc'd strings; an authzid other than empty or authcid is
 * refused), -1 malformed. */
int sasl_plain_decode(const char *b64, size_t len, char **authcid_r,
    char **passwd_r);
/* The same, but an authzid other than authcid is also taken when authcid
 * is SASL_PROXY_AUTHCID: *authzid_r is then that user (malloc'd), else
 * NULL. */
int sasl_plain_decode_as(const char *b64, size_t len, char **authzid_r,
    char **authcid_r, char **passwd_r);

#endif
