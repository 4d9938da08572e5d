#ifndef PETREL_TLS_H
#define PETREL_TLS_H
/* TLS (OpenSSL 3): the only module that includes OpenSSL headers. */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Make a self-signed certificate (RSA 2048, SHA-256, 10 years) for
 * hostname and write cert and key (key mode 0600). 0 ok, -1 error. */
int tls_make_selfsigned(const char *cert_path, const char *key_path,
    const char *hostname, const char **error_r);
/* Load the pair and check that the key matches the certificate.
 * 0 ok, -1 with *error_r (static buffer) set. days_left_r may be NULL. */
int tls_check_pair(const char *cert_path, const char *key_path,
    int *days_left_r, const char **error_r);
/* Every pair of tls_sni_dir (see tls_server_new) checked as
 * tls_check_pair does; *count_r the number of pairs, *days_left_r the
 * fewest days left among them. 0 ok, -1 with *error_r set. */
int tls_check_sni_dir(const char *sni_dir, size_t *count_r, int *days_left_r,
    const char **error_r);

/* HMAC-MD5 (RFC 2104), for CRAM-MD5 (RFC 2195) alone. */
void crypto_hmac_md5(const void *key, size_t keylen, const void *msg,
    size_t msglen, unsigned char out[16]);
/* HMAC-SHA-1, for SRS (lib/trust/srs) alone. */
void crypto_hmac_sha1(const void *key, size_t keylen, const void *msg,
    size_t msglen, unsigned char out[20]);
/* HMAC-SHA-256 (for keyed digests such as the login cache's). */
void crypto_hmac_sha256(const void *key, size_t keylen, const void *msg,
    size_t msglen, unsigned char out[32]);

/* A server TLS context: the configured certificate chain and key;
 * profile (tls_profile) "intermediate" (TLS 1.2 with forward-secret AEAD
 * suites only, and 1.3) or "modern" (TLS 1.3 only); session resumption
 * by tickets (keys derived from the private key, the same in every
 * worker) and a server-side cache. sni_dir (tls_sni_dir; NULL or "" for
 * none): subdirectories NAME/fullchain.pem + NAME/privkey.pem (certbot's
 * live/ layout), each served to clients whose SNI name its certificate
 * carries. Files that change are read again before the next handshake
 * (at most once a second). NULL with *error_r set on failure. */
struct tls_server;
struct tls_server *tls_server_new(const char *cert_path, const char *key_path,
    const char *profile, const char *sni_dir, const char **error_r);
void tls_server_free(struct tls_server **ts);

struct bufferevent;
struct event_base;
/* Implicit TLS on an accepted socket (imaps, pop3s, submissions). */
struct bufferevent *tls_bev_accept(struct tls_server *ts,
    struct event_base *base, int fd);
/* STARTTLS: put TLS over an existing plain bufferevent. Whatever the
 * client sent after the command and before the handshake is discarded
 * (CVE-2011-0411). The plain bufferevent is owned (freed) by the result. */
struct bufferevent *tls_bev_starttls(struct tls_server *ts,
    struct event_base *base, struct bufferevent *plain);
/* The negotiated protocol and cipher for logs ("TLSv1.3 with ..."). */
const char *tls_bev_describe(struct bufferevent *bev, char *buf, size_t len);

/* A client TLS context for opportunistic STARTTLS to other servers (no
 * certificate check: RFC 7435 opportunistic security). */
struct tls_client;
struct tls_client *tls_client_new(const char **error_r);
/* One that verifies (proxy_tls_ca, smtp_tls_ca): the server's
 * certificate must chain to a certificate of ca_file (PEM, one or more;
 * "": the system's store, /etc/ssl/certs) and carry the host given to
 * tls_bev_connect_starttls: an address as an iPAddress, a name as a DNS
 * name. NULL with *error_r when ca_file cannot be loaded. */
struct tls_client *tls_client_new_verify(const char *ca_file,
    const char **error_r);
bool tls_client_verifies(const struct tls_client *tc);
void tls_client_free(struct tls_client **tc);
/* host: the server's name or address as written (brackets allowed); the
 * SNI when it is a name, and what a verifying context checks. NULL when
 * TLS cannot start (with a verifying context: no host). */
struct bufferevent *tls_bev_connect_starttls(struct tls_client *tc,
    struct event_base *base, struct bufferevent *plain, const char *host);
/* TLS over a connected blocking socket (its timeouts set by the
 * caller), for a command-line client: after STARTTLS was answered, the
 * handshake, the host checked as for tls_bev_connect_starttls. NULL
 * with *error_r. The socket stays the caller's. It reads ahead: data
 * may wait in the TLS layer, so read with tls_fd_read rather than poll
 * the socket for more. */
struct tls_fd;
struct tls_fd *tls_fd_connect(struct tls_client *tc, int fd,
    const char *host, const char **error_r);
/* As read(2) (0: closed), and a full write (0, or -1). */
ssize_t tls_fd_read(struct tls_fd *t, void *buf, size_t len);
int tls_fd_write(struct tls_fd *t, const void *buf, size_t len);
void tls_fd_free(struct tls_fd **t);

/* After a failed handshake on bev: why ("certificate not verified:
 * REASON" or OpenSSL's error), into buf; NULL when OpenSSL has no
 * reason. */
const char *tls_bev_verify_error(struct bufferevent *bev, char *buf,
    size_t len);

/* DANE (RFC 7672) on the client side, with OpenSSL's own DANE support
 * (SSL_dane_enable, SSL_dane_tlsa_add): one TLSA record as published
 * (certificate usage, selector, matching type, association data). */
struct tls_tlsa {
	unsigned char usage, selector, mtype;
	unsigned char *data;
	size_t len;
};
/* Whether tc can check TLSA records (SSL_CTX_dane_enable worked). */
int tls_client_dane(const struct tls_client *tc);
/* STARTTLS as tls_bev_connect_starttls, the peer's chain to be matched
 * against the records (usages DANE-TA(2) and DANE-EE(3); DANE-EE without
 * name checks, DANE-TA with refid, the TLSA base domain, as the reference
 * identifier, which is also the SNI name, and refid2 when not NULL: the
 * other name of a CNAME'd MX host). NULL when no record is usable
 * or on failure. The handshake itself never fails on a mismatch: ask
 * tls_bev_dane_verified once it is done. */
struct bufferevent *tls_bev_connect_dane(struct tls_client *tc,
    struct event_base *base, struct bufferevent *plain, const char *refid,
    const char *refid2, const struct tls_tlsa *recs, size_t nrecs);
/* After the handshake on a tls_bev_connect_dane bufferevent: 1 when a
 * record matched the peer's chain (*how_r "DANE-EE" or "DANE-TA"), else 0
 * with *how_r saying why (OpenSSL's verification error; static). */
int tls_bev_dane_verified(struct bufferevent *tb, const char **how_r);

/* A new RSA key written (PEM, mode 0600) to path; *pub_b64_r gets the
 * public key (DER SubjectPublicKeyInfo) in base64, for a DKIM record. */
int tls_rsa_keygen(const char *path, unsigned bits, char **pub_b64_r,
    const char **error_r);

/* The public half of the PEM private key at path, as base64 DER
 * SubjectPublicKeyInfo (the p= of a DKIM record). */
int tls_key_public_b64(const char *path, char **pub_b64_r,
    const char **error_r);
/* SHA-256 of the certificate's SubjectPublicKeyInfo in lower-case hex:
 * the data of a TLSA 3 1 1 record (RFC 6698, 7671). */
int tls_cert_spki_sha256(const char *cert_path, char hex_r[65],
    const char **error_r);
void crypto_sha256(const void *msg, size_t len, unsigned char out[32]);

/* A blocking HTTPS GET (HTTP/1.0, so never chunked) of path from host at
 * the address sa, for the MTA-STS policy (RFC 8461 3.3): the server's
 * certificate must chain to tc's CA file (a verifying context) and carry
 * host; only a 200 with Content-Type text/plain is taken (no redirects),
 * a body of at most max octets, all within timeout_s seconds. 0 with
 * *body_r (NUL-terminated, *len_r octets; free it), or -1 with the reason
 * in err. For a job thread. */
struct sockaddr;
int tls_https_get(struct tls_client *tc, const struct sockaddr *sa,
    unsigned salen, const char *host, const char *path, size_t max,
    unsigned timeout_s, char **body_r, size_t *len_r, char *err,
    size_t errlen);
/* After the handshake: what kind of failure the verification of the
 * peer's certificate was (chain and name; what SMTP TLS reports tell
 * apart, RFC 8460 4.3.1). */
enum tls_verify_kind {
	TLS_VERIFY_OK, TLS_VERIFY_HOST, TLS_VERIFY_EXPIRED,
	TLS_VERIFY_UNTRUSTED, TLS_VERIFY_OTHER
};
enum tls_verify_kind tls_bev_verify_kind(struct bufferevent *tb);
/* A blocking HTTPS POST (HTTP/1.0) of len octets of body, of type
 * ctype, to path on host at sa, as tls_https_get connects (tc verifying,
 * no redirects), for TLS reports (RFC 8460 3): 0 when the answer is a
 * 2xx, else -1 with the reason in err. For a command or a job thread. */
int tls_https_post(struct tls_client *tc, const struct sockaddr *sa,
    unsigned salen, const char *host, const char *path, const char *ctype,
    const void *body, size_t len, unsigned timeout_s, char *err,
    size_t errlen);
/* STARTTLS for MTA-STS: the chain to tc's CA file and the host name are
 * checked, but the handshake does not fail on them (a policy in testing
 * mode only reports): ask tls_bev_pkix_verified once it is done. */
struct bufferevent *tls_bev_connect_check(struct tls_client *tc,
    struct event_base *base, struct bufferevent *plain, const char *host);
/* After the handshake: 1 when the peer's certificate verified (chain
 * and name), else 0 with OpenSSL's reason in buf. */
int tls_bev_pkix_verified(struct bufferevent *tb, char *buf, size_t len);

#endif
