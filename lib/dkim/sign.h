#ifndef PETREL_DKIM_SIGN_H
#define PETREL_DKIM_SIGN_H
/* DKIM signing (RFC 6376: rsa-sha256, relaxed/relaxed) of outgoing mail
 * with libopendkim. Keys live in DKIM_DIR/<domain>.pem with the selector
 * in DKIM_DIR/<domain>.selector (`petrel dkim keygen`). */
#include <stdbool.h>

#include "lib/base/str.h"

struct spool;

/* Sign the message made of `prefix` (header fields we add, LF line ends)
 * followed by `body` (the received message). On success appends the
 * DKIM-Signature field (LF line ends, folded) to out and returns 1;
 * 0 when the domain has no key; -1 on error (*error_r). */
int dkim_sign_message(const char *dkim_dir, const char *domain,
    const char *prefix, struct spool *body, str_t *out, const char **error_r);

/* The key of domain (PEM) and its selector, malloc'd: 1; 0 when the
 * domain has none; -1 on error (*error_r). The caller wipes the key. */
int dkim_key_load(const char *dkim_dir, const char *domain, char **key_r,
    char **selector_r, const char **error_r);

/* Make a key for domain (RSA 2048) and the selector; prints nothing.
 * txt_r gets the DNS TXT record value ("v=DKIM1; k=rsa; p=..."). */
int dkim_keygen(const char *dkim_dir, const char *domain,
    const char *selector, char **txt_r, const char **error_r);

#endif
