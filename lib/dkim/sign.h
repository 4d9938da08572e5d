#ifndef PETREL_DKIM_SIGN_H
#define PETREL_DKIM_SIGN_H
/* DKIM signing (RFC 6376: rsa-sha256, relaxed/relaxed) of outgoing mail
 * with libopendkim. The selector signing for a domain is in
 * DKIM_DIR/<domain>.selector, its key in DKIM_DIR/<domain>@<selector>.pem
 * or else DKIM_DIR/<domain>.pem (`petrel dkim keygen`). A rotation
 * (`petrel dkim rotate`) adds <domain>.selector.next (a key made and
 * published, not yet signing) and then <domain>.selector.old (the
 * previous key, still published until it is retired). */
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

/* The selector in DKIM_DIR/<domain>.<which> ("selector",
 * "selector.next", "selector.old"), malloc'd; NULL when there is none. */
char *dkim_selector_read(const char *dkim_dir, const char *domain,
    const char *which);
bool dkim_selector_valid(const char *selector);
/* The key file of the selector (malloc'd; it may not exist). */
char *dkim_key_path(const char *dkim_dir, const char *domain,
    const char *selector);

/* Rotation: a new key for selector, published but not signing yet;
 * then the switch to it (the previous one kept as selector.old); then
 * the previous one's removal. Each step is durable when it returns. */
int dkim_rotate_begin(const char *dkim_dir, const char *domain,
    const char *selector, char **txt_r, const char **error_r);
int dkim_rotate_activate(const char *dkim_dir, const char *domain,
    const char **error_r);
int dkim_rotate_retire(const char *dkim_dir, const char *domain,
    const char **error_r);

/* Make a key for domain (RSA 2048) and the selector, ending any
 * rotation in progress; prints nothing.
 * txt_r gets the DNS TXT record value ("v=DKIM1; k=rsa; p=..."). */
int dkim_keygen(const char *dkim_dir, const char *domain,
    const char *selector, char **txt_r, const char **error_r);

#endif
