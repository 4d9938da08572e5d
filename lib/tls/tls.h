#ifndef PETREL_TLS_H
#define PETREL_TLS_H
/* TLS (OpenSSL 3): the only module that includes OpenSSL headers. */

/* Make a self-signed certificate (RSA 2048, SHA-256, 10 years) for
 * hostname and write cert and key (key mode 0600). 0 ok, -1 error. */
int tls_make_selfsigned(const char *cert_path, const char *key_path,
    const char *hostname, const char **error_r);
/* Load the pair and check that the key matches the certificate.
 * 0 ok, -1 with *error_r (static buffer) set. days_left_r may be NULL. */
int tls_check_pair(const char *cert_path, const char *key_path,
    int *days_left_r, const char **error_r);

#endif
