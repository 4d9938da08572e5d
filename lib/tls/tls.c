/*
 * tls.c: certificate handling for `petrel init` and `petrel check`.
 * (The TLS session layer for the protocols builds on this module.)
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <strings.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/log.h"
#include "lib/tls/tls.h"

static const char *
tls_error(const char *what, const char *path)
{
	unsigned long e = ERR_peek_last_error();
	char reason[256] = "unknown error";

	if (e != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	err_fail(NULL, ERR_OTHER, "%s %s: %s", what, path, reason);
	ERR_clear_error();
	return err_last();
}

static int
add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return -1;
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return 0;
}

/* PEM, mode 0600, fsync'd. */
static int
write_private_key(const char *path, EVP_PKEY *pkey, const char **error_r)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (fp == NULL) {
		err_fail(error_r, errno, "cannot write %s: %m", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL) ||
	    fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		*error_r = tls_error("cannot write", path);
		fclose(fp);
		return -1;
	}
	fclose(fp);
	return 0;
}

int
tls_make_selfsigned(const char *cert_path, const char *key_path,
    const char *hostname, const char **error_r)
{
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	X509_NAME *name;
	FILE *fp = NULL;
	char san[600];
	int ret = -1;

	pkey = EVP_RSA_gen(2048);
	if (pkey == NULL) {
		*error_r = tls_error("cannot generate a key for", key_path);
		goto out;
	}
	cert = X509_new();
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3650L * 24 * 3600);
	X509_set_pubkey(cert, pkey);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)hostname, -1, -1, 0);
	X509_set_issuer_name(cert, name);
	snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1",
	    hostname);
	if (add_ext(cert, NID_subject_alt_name, san) < 0 ||
	    add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0) {
		*error_r = tls_error("cannot make certificate", cert_path);
		goto out;
	}
	if (X509_sign(cert, pkey, EVP_sha256()) == 0) {
		*error_r = tls_error("cannot sign", cert_path);
		goto out;
	}
	if (write_private_key(key_path, pkey, error_r) < 0)
		goto out;
	fp = fopen(cert_path, "w");
	if (fp == NULL) {
		err_fail(error_r, errno, "cannot write %s: %m", cert_path);
		goto out;
	}
	if (!PEM_write_X509(fp, cert) || fflush(fp) != 0 ||
	    fsync(fileno(fp)) != 0) {
		*error_r = tls_error("cannot write", cert_path);
		fclose(fp);
		fp = NULL;
		goto out;
	}
	fclose(fp);
	fp = NULL;
	ret = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return ret;
}

int
tls_check_pair(const char *cert_path, const char *key_path, int *days_left_r,
    const char **error_r)
{
	FILE *fp;
	X509 *cert = NULL;
	EVP_PKEY *pkey = NULL;
	int ret = -1, days = 0, secs = 0;

	fp = fopen(cert_path, "r");
	if (fp == NULL) {
		return err_fail(error_r, errno,
		    "cannot open TLS certificate %s: %m", cert_path);
	}
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (cert == NULL) {
		*error_r = tls_error("no PEM certificate in", cert_path);
		goto out;
	}
	fp = fopen(key_path, "r");
	if (fp == NULL) {
		err_fail(error_r, errno, "cannot open TLS key %s: %m",
		    key_path);
		goto out;
	}
	pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (pkey == NULL) {
		*error_r = tls_error("no PEM private key in", key_path);
		goto out;
	}
	if (X509_check_private_key(cert, pkey) != 1) {
		err_fail(error_r, ERR_OTHER,
		    "TLS key %s does not match certificate %s", key_path,
		    cert_path);
		ERR_clear_error();
		goto out;
	}
	if (days_left_r != NULL) {
		ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert));
		*days_left_r = days;
	}
	ret = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return ret;
}

static size_t sni_list(const char *dir, char ***names_r);

int
tls_check_sni_dir(const char *sni_dir, size_t *count_r, int *days_left_r,
    const char **error_r)
{
	char **names, cert[PATH_MAX], key[PATH_MAX];
	size_t n;
	int ret = 0, days;

	*count_r = 0;
	*days_left_r = INT32_MAX;
	if (access(sni_dir, R_OK | X_OK) < 0)
		return err_fail(error_r, errno, "tls_sni_dir %s: %m", sni_dir);
	n = sni_list(sni_dir, &names);
	for (size_t i = 0; i < n; i++) {
		if (ret == 0) {
			snprintf(cert, sizeof(cert), "%s/%s/fullchain.pem",
			    sni_dir, names[i]);
			snprintf(key, sizeof(key), "%s/%s/privkey.pem", sni_dir,
			    names[i]);
			if (tls_check_pair(cert, key, &days, error_r) < 0)
				ret = -1;
			else if (days < *days_left_r)
				*days_left_r = days;
		}
		free(names[i]);
	}
	free(names);
	*count_r = n;
	return ret;
}

void
crypto_hmac_md5(const void *key, size_t keylen, const void *msg,
    size_t msglen, unsigned char out[16])
{
	unsigned int len = 16;

	if (HMAC(EVP_md5(), key, (int)keylen, msg, msglen, out, &len) ==
	    NULL)
		memset(out, 0, 16);
}

void
crypto_hmac_sha1(const void *key, size_t keylen, const void *msg,
    size_t msglen, unsigned char out[20])
{
	unsigned int len = 20;

	if (HMAC(EVP_sha1(), key, (int)keylen, msg, msglen, out, &len) ==
	    NULL)
		memset(out, 0, 20);
}

void
crypto_hmac_sha256(const void *key, size_t keylen, const void *msg,
    size_t msglen, unsigned char out[32])
{
	unsigned int len = 32;

	if (HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &len) ==
	    NULL)
		memset(out, 0, 32);
}

/* SNI: a certificate chosen by the name the client asks for. */
struct tls_sni {
	SSL_CTX *ctx;
	char **names;		/* lower case; "*.example.org" wildcards */
	size_t nnames;
};

/* The contexts built from one reading of the files. */
struct tls_set {
	SSL_CTX *ctx;		/* tls_cert: the default */
	struct tls_sni *sni;
	size_t nsni;
};

struct tls_server {
	struct tls_set set;
	char *cert_path, *key_path, *profile, *sni_dir;
	uint64_t sig;		/* the files' identity when set was built */
	uint64_t failed_sig;	/* a reading that failed (logged once) */
	time_t checked;		/* last look at the files (at most 1/s) */
};

#define TLS_SNI_MAX 256		/* certificates in tls_sni_dir */
#define TLS_SNI_NAMES_MAX 100	/* names per certificate */

/* Mozilla "intermediate" (server side, v5.7): forward secrecy and AEAD
 * only for TLS 1.2 -- no static RSA key exchange, no CBC. TLS 1.3 keeps
 * OpenSSL's default suites (all AEAD, all forward secret). */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:" \
	"DHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:prime256v1:secp384r1"
#define TLS_SESSION_CACHE_SIZE 20480	/* sessions per worker */
#define TLS_SESSION_TIMEOUT 7200	/* seconds */

/* Session ticket keys (name, HMAC and AES key, 80 bytes) derived from
 * the certificate's private key: every worker process loads the same
 * key, so a ticket issued by one worker resumes with another, and
 * replacing the key replaces the ticket keys. */
static int
set_ticket_keys(SSL_CTX *ctx)
{
	static const char *const labels[] = { "petrel ticket name",
	    "petrel ticket hmac", "petrel ticket aes" };
	EVP_PKEY *pkey = SSL_CTX_get0_privatekey(ctx);
	unsigned char *der = NULL, h[32], keys[80];
	int len, ret;

	if (pkey == NULL || (len = i2d_PrivateKey(pkey, &der)) <= 0)
		return -1;
	crypto_hmac_sha256(der, (size_t)len, labels[0], strlen(labels[0]), h);
	memcpy(keys, h, 16);
	crypto_hmac_sha256(der, (size_t)len, labels[1], strlen(labels[1]), h);
	memcpy(keys + 16, h, 32);
	crypto_hmac_sha256(der, (size_t)len, labels[2], strlen(labels[2]), h);
	memcpy(keys + 48, h, 32);
	OPENSSL_clear_free(der, (size_t)len);
	ret = SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) == 1 ?
	    0 : -1;
	OPENSSL_cleanse(keys, sizeof(keys));
	OPENSSL_cleanse(h, sizeof(h));
	return ret;
}

/* One server context for a certificate chain and key. */
static SSL_CTX *
ctx_new(const char *cert_path, const char *key_path, const char *profile,
    const char **error_r)
{
	static const unsigned char sid_ctx[] = "petrel";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	bool modern = profile != NULL && strcmp(profile, "modern") == 0;

	if (ctx == NULL) {
		*error_r = tls_error("cannot create a TLS context for",
		    cert_path);
		return NULL;
	}
	/* tls_profile: intermediate = TLS 1.2 and 1.3, modern = TLS 1.3
	 * only; no renegotiation, no compression. The client's cipher
	 * order is followed, as Mozilla's intermediate profile says: every
	 * suite offered is strong. */
	SSL_CTX_set_min_proto_version(ctx, modern ? TLS1_3_VERSION :
	    TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 ||
	    SSL_CTX_set_dh_auto(ctx, 1) != 1) {
		*error_r = tls_error("cannot set the ciphers for", cert_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Resumption: tickets (keys shared by the workers, see above) and
	 * a server-side cache; the same session id context everywhere. */
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, TLS_SESSION_CACHE_SIZE);
	SSL_CTX_set_timeout(ctx, TLS_SESSION_TIMEOUT);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		*error_r = tls_error("cannot load certificate", cert_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = tls_error("cannot load key", key_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (set_ticket_keys(ctx) < 0) {
		*error_r = tls_error("cannot set session ticket keys for",
		    key_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The DNS names of the context's certificate (subjectAltName dNSName,
 * else the common name), lower case. */
static void
sni_names(SSL_CTX *ctx, struct tls_sni *e)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	GENERAL_NAMES *gens;
	char buf[256];

	if (cert == NULL)
		return;
	e->names = xcalloc(TLS_SNI_NAMES_MAX, sizeof(char *));
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) &&
	    e->nnames < TLS_SNI_NAMES_MAX; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int len;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		if (len <= 0 || (size_t)len >= sizeof(buf) ||
		    memchr(d, '\0', (size_t)len) != NULL)
			continue;
		memcpy(buf, d, (size_t)len);
		buf[len] = '\0';
		e->names[e->nnames++] = xstrdup(buf);
	}
	GENERAL_NAMES_free(gens);
	if (e->nnames == 0 && X509_NAME_get_text_by_NID(
	    X509_get_subject_name(cert), NID_commonName, buf,
	    (int)sizeof(buf)) > 0)
		e->names[e->nnames++] = xstrdup(buf);
	for (size_t i = 0; i < e->nnames; i++)
		for (char *c = e->names[i]; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
}

/* RFC 6125 6.4.3, the common subset: exact (case-insensitive), or a
 * wildcard "*.rest" standing for exactly one left-most label. */
static bool
sni_match(const char *pattern, const char *name)
{
	const char *dot;

	if (strcasecmp(pattern, name) == 0)
		return true;
	if (pattern[0] != '*' || pattern[1] != '.')
		return false;
	dot = strchr(name, '.');
	return dot != NULL && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

static void
set_clear(struct tls_set *set)
{
	SSL_CTX_free(set->ctx);
	for (size_t i = 0; i < set->nsni; i++) {
		SSL_CTX_free(set->sni[i].ctx);
		for (size_t j = 0; j < set->sni[i].nnames; j++)
			free(set->sni[i].names[j]);
		free(set->sni[i].names);
	}
	free(set->sni);
	memset(set, 0, sizeof(*set));
}

static int
sni_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The subdirectories of tls_sni_dir, sorted (certbot's live/ layout:
 * NAME/fullchain.pem and NAME/privkey.pem); README and dot files are not
 * certificates. */
static size_t
sni_list(const char *dir, char ***names_r)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	*names_r = NULL;
	if (d == NULL)
		return 0;
	names = xcalloc(TLS_SNI_MAX, sizeof(char *));
	while ((de = readdir(d)) != NULL && n < TLS_SNI_MAX) {
		char path[PATH_MAX];
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(char *), sni_cmp);
	*names_r = names;
	return n;
}

/* Fold one file's identity into h: a replaced or rewritten file (inode,
 * size, times) changes it, as does one that disappears. */
static uint64_t
sig_add(uint64_t h, const char *path)
{
	struct stat st;
	uint64_t v[6] = { 0 };

	if (stat(path, &st) == 0) {
		v[0] = (uint64_t)st.st_dev;
		v[1] = (uint64_t)st.st_ino;
		v[2] = (uint64_t)st.st_size;
		v[3] = (uint64_t)st.st_mtim.tv_sec * 1000000000u +
		    (uint64_t)st.st_mtim.tv_nsec;
		v[4] = (uint64_t)st.st_ctim.tv_sec * 1000000000u +
		    (uint64_t)st.st_ctim.tv_nsec;
	} else
		v[5] = (uint64_t)errno + 1;
	for (size_t i = 0; i < 6; i++) {
		for (int b = 0; b < 8; b++) {
			h ^= (v[i] >> (b * 8)) & 0xff;
			h *= 1099511628211u;	/* FNV-1a */
		}
	}
	return h;
}

static uint64_t
files_sig(const struct tls_server *ts)
{
	uint64_t h = 14695981039346656037u;
	char **names, path[PATH_MAX];
	size_t n;

	h = sig_add(h, ts->cert_path);
	h = sig_add(h, ts->key_path);
	if (ts->sni_dir == NULL)
		return h;
	h = sig_add(h, ts->sni_dir);
	n = sni_list(ts->sni_dir, &names);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s/fullchain.pem",
		    ts->sni_dir, names[i]);
		h = sig_add(h, path);
		snprintf(path, sizeof(path), "%s/%s/privkey.pem",
		    ts->sni_dir, names[i]);
		h = sig_add(h, path);
		free(names[i]);
	}
	free(names);
	return h;
}

static int sni_callback(SSL *ssl, int *alert, void *arg);

/* Read every certificate afresh into set: all or nothing. */
static int
set_load(struct tls_server *ts, struct tls_set *set, const char **error_r)
{
	char **names = NULL, cert[PATH_MAX], key[PATH_MAX];
	size_t n = 0;
	int ret = -1;

	memset(set, 0, sizeof(*set));
	set->ctx = ctx_new(ts->cert_path, ts->key_path, ts->profile, error_r);
	if (set->ctx == NULL)
		return -1;
	SSL_CTX_set_tlsext_servername_callback(set->ctx, sni_callback);
	SSL_CTX_set_tlsext_servername_arg(set->ctx, ts);
	if (ts->sni_dir == NULL)
		return 0;
	if (access(ts->sni_dir, R_OK | X_OK) < 0) {
		err_fail(error_r, errno, "tls_sni_dir %s: %m", ts->sni_dir);
		goto out;
	}
	n = sni_list(ts->sni_dir, &names);
	set->sni = xcalloc(n > 0 ? n : 1, sizeof(*set->sni));
	for (size_t i = 0; i < n; i++) {
		struct tls_sni *e = &set->sni[set->nsni];

		snprintf(cert, sizeof(cert), "%s/%s/fullchain.pem",
		    ts->sni_dir, names[i]);
		snprintf(key, sizeof(key), "%s/%s/privkey.pem", ts->sni_dir,
		    names[i]);
		e->ctx = ctx_new(cert, key, ts->profile, error_r);
		if (e->ctx == NULL)
			goto out;
		set->nsni++;
		sni_names(e->ctx, e);
	}
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (ret < 0)
		set_clear(set);
	return ret;
}

/* The server name the client asked for picks the certificate; no name,
 * or one no certificate carries, gets tls_cert. */
static int
sni_callback(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < ts->set.nsni; i++) {
		for (size_t j = 0; j < ts->set.sni[i].nnames; j++) {
			if (sni_match(ts->set.sni[i].names[j], name)) {
				SSL_set_SSL_CTX(ssl, ts->set.sni[i].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

struct tls_server *
tls_server_new(const char *cert_path, const char *key_path,
    const char *profile, const char *sni_dir, const char **error_r)
{
	struct tls_server *ts = xcalloc(1, sizeof(*ts));

	ts->cert_path = xstrdup(cert_path);
	ts->key_path = xstrdup(key_path);
	ts->profile = xstrdup(profile != NULL ? profile : "intermediate");
	ts->sni_dir = sni_dir != NULL && sni_dir[0] != '\0' ?
	    xstrdup(sni_dir) : NULL;
	ts->sig = files_sig(ts);
	if (set_load(ts, &ts->set, error_r) < 0) {
		tls_server_free(&ts);
		return NULL;
	}
	ts->checked = time(NULL);
	return ts;
}

/* At most once a second, before a handshake: when a certificate or key
 * file changed (certbot's renewal, a deploy hook copying files in place),
 * read them all again; handshakes from then on get the new ones, sessions
 * in flight keep theirs (each holds its context). A reading that fails
 * (a pair written half, a key that does not match yet) keeps the old set
 * and is tried again the next second, logged once. */
static void
tls_server_refresh(struct tls_server *ts)
{
	struct tls_set set;
	const char *err;
	time_t now = time(NULL);
	uint64_t sig;

	if (now == ts->checked)
		return;
	ts->checked = now;
	sig = files_sig(ts);
	if (sig == ts->sig)
		return;
	if (set_load(ts, &set, &err) < 0) {
		if (sig != ts->failed_sig)
			log_error("TLS: keeping the certificates in use: %s",
			    err);
		ts->failed_sig = sig;
		return;
	}
	set_clear(&ts->set);
	ts->set = set;
	ts->sig = sig;
	ts->failed_sig = 0;
	log_info("TLS: certificates read again (%s%s%s)", ts->cert_path,
	    ts->sni_dir != NULL ? ", " : "",
	    ts->sni_dir != NULL ? ts->sni_dir : "");
}

void
tls_server_free(struct tls_server **tsp)
{
	struct tls_server *ts = *tsp;

	if (ts == NULL)
		return;
	set_clear(&ts->set);
	free(ts->cert_path);
	free(ts->key_path);
	free(ts->profile);
	free(ts->sni_dir);
	free(ts);
	*tsp = NULL;
}

struct bufferevent *
tls_bev_accept(struct tls_server *ts, struct event_base *base, int fd)
{
	SSL *ssl;

	tls_server_refresh(ts);
	ssl = SSL_new(ts->set.ctx);
	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

struct bufferevent *
tls_bev_starttls(struct tls_server *ts, struct event_base *base,
    struct bufferevent *plain)
{
	struct evbuffer *in = bufferevent_get_input(plain);
	SSL *ssl;

	tls_server_refresh(ts);
	ssl = SSL_new(ts->set.ctx);
	if (ssl == NULL)
		return NULL;
	/* Plaintext pipelined after STARTTLS must not be executed later as
	 * if it had come over TLS. */
	evbuffer_drain(in, evbuffer_get_length(in));
	return bufferevent_openssl_filter_new(base, plain, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

const char *
tls_bev_describe(struct bufferevent *bev, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl == NULL) {
		snprintf(buf, len, "plaintext");
		return buf;
	}
	snprintf(buf, len, "%s with cipher %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
	return buf;
}

struct tls_client {
	SSL_CTX *ctx;
	bool verify;	/* the server's certificate must chain to the CA
			 * file and name the host connected to */
	bool dane;	/* SSL_CTX_dane_enable worked */
};

static struct tls_client *
client_new(const char *ca_file, const char **error_r)
{
	struct tls_client *tc;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		*error_r = tls_error("cannot create a TLS client context", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (ca_file != NULL && ca_file[0] != '\0' &&
	    SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		*error_r = tls_error("cannot load the CA certificates of",
		    ca_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (ca_file != NULL && ca_file[0] == '\0' &&
	    SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*error_r = tls_error("cannot load the system's CA "
		    "certificates", "");
		SSL_CTX_free(ctx);
		return NULL;
	}
	tc = xmalloc(sizeof(*tc));
	tc->ctx = ctx;
	tc->verify = ca_file != NULL;
	/* OpenSSL's DANE: the digests of RFC 6698 (SHA2-256, SHA2-512) */
	tc->dane = SSL_CTX_dane_enable(ctx) > 0;
	return tc;
}

struct tls_client *
tls_client_new(const char **error_r)
{
	return client_new(NULL, error_r);
}

struct tls_client *
tls_client_new_verify(const char *ca_file, const char **error_r)
{
	return client_new(ca_file, error_r);
}

bool
tls_client_verifies(const struct tls_client *tc)
{
	return tc != NULL && tc->verify;
}

int
tls_client_dane(const struct tls_client *tc)
{
	return tc != NULL && tc->dane;
}

struct bufferevent *
tls_bev_connect_dane(struct tls_client *tc, struct event_base *base,
    struct bufferevent *plain, const char *refid, const char *refid2,
    const struct tls_tlsa *recs, size_t nrecs)
{
	SSL *ssl;
	int usable = 0;

	if (!tc->dane || refid == NULL || refid[0] == '\0')
		return NULL;
	ssl = SSL_new(tc->ctx);
	if (ssl == NULL)
		return NULL;
	/* The MX host name: the SNI name and the reference identifier a
	 * DANE-TA(2) match checks the certificate for (RFC 7672 3.2.3);
	 * DANE-EE(3) matches the key alone (3.2.1). */
	if (SSL_dane_enable(ssl, refid) <= 0) {
		SSL_free(ssl);
		return NULL;
	}
	/* RFC 7671 7: a CNAME'd MX host's certificate may name either the
	 * MX host or its target */
	if (refid2 != NULL && refid2[0] != '\0' &&
	    SSL_add1_host(ssl, refid2) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	SSL_set_tlsext_host_name(ssl, refid);
	for (size_t i = 0; i < nrecs; i++) {
		/* RFC 7672 3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable in
		 * SMTP; OpenSSL says 0 for a record it cannot use */
		if (recs[i].usage != 2 && recs[i].usage != 3)
			continue;
		if (SSL_dane_tlsa_add(ssl, recs[i].usage, recs[i].selector,
		    recs[i].mtype, recs[i].data, recs[i].len) > 0)
			usable++;
	}
	ERR_clear_error();
	if (usable == 0) {
		SSL_free(ssl);
		return NULL;
	}
	return bufferevent_openssl_filter_new(base, plain, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
}

int
tls_bev_dane_verified(struct bufferevent *tb, const char **how_r)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tb);
	long vr;
	int depth;
	uint8_t usage = 0;

	if (ssl == NULL) {
		*how_r = "no TLS session";
		return 0;
	}
	vr = SSL_get_verify_result(ssl);
	depth = SSL_get0_dane_tlsa(ssl, &usage, NULL, NULL, NULL, NULL);
	if (vr != X509_V_OK || depth < 0) {
		*how_r = vr != X509_V_OK ? X509_verify_cert_error_string(vr) :
		    "no TLSA record matched";
		return 0;
	}
	/* the usage of the record that matched */
	*how_r = usage == 3 ? "DANE-EE" : "DANE-TA";
	return 1;
}

void
tls_client_free(struct tls_client **tcp)
{
	if (*tcp == NULL)
		return;
	SSL_CTX_free((*tcp)->ctx);
	free(*tcp);
	*tcp = NULL;
}

/* The host as written ("mx.example", "192.0.2.1", "[2001:db8::1]",
 * "2001:db8::1") without its brackets, into buf. */
static const char *
host_unbracket(const char *host, char *buf, size_t len)
{
	size_t n = strlen(host);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		snprintf(buf, len, "%.*s", (int)(n - 2), host + 1);
		return buf;
	}
	snprintf(buf, len, "%s", host);
	return buf;
}

/* A client SSL for host: SNI for a name, with a verifying context the
 * host checked. NULL when it cannot be made. */
static SSL *
client_ssl_new(struct tls_client *tc, const char *sni)
{
	SSL *ssl = SSL_new(tc->ctx);
	char host[256];

	if (ssl == NULL)
		return NULL;
	if (sni == NULL)
		sni = "";
	host_unbracket(sni, host, sizeof(host));
	if (tc->verify) {
		/* OpenSSL's own checks: the chain to the CA file, then the
		 * host as an address (iPAddress) or as a DNS name (subject
		 * alternative names, RFC 6125) */
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

		X509_VERIFY_PARAM_set_hostflags(vp,
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (host[0] == '\0' ||
		    (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 &&
		    X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)) {
			SSL_free(ssl);
			return NULL;
		}
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	}
	if (host[0] != '\0' && strchr(host, ':') == NULL &&
	    strspn(host, "0123456789.") != strlen(host))
		SSL_set_tlsext_host_name(ssl, host);
	return ssl;
}

struct bufferevent *
tls_bev_connect_starttls(struct tls_client *tc, struct event_base *base,
    struct bufferevent *plain, const char *sni)
{
	SSL *ssl = client_ssl_new(tc, sni);

	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_filter_new(base, plain, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
}

struct tls_fd {
	SSL *ssl;
};

struct tls_fd *
tls_fd_connect(struct tls_client *tc, int fd, const char *host,
    const char **error_r)
{
	static _Thread_local char why[300];	/* job threads: one each */
	struct tls_fd *t;
	SSL *ssl = client_ssl_new(tc, host);
	long r;

	*error_r = "TLS cannot start";
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
		if (ssl != NULL)
			SSL_free(ssl);
		return NULL;
	}
	/* one read() for the records already in the socket (pipelined
	 * replies), not a header and a body read per record: the callers
	 * read on to the line they need and never poll the descriptor */
	SSL_set_read_ahead(ssl, 1);
	ERR_clear_error();
	if (SSL_connect(ssl) != 1) {
		r = SSL_get_verify_result(ssl);
		if (r != X509_V_OK && tc->verify)
			snprintf(why, sizeof(why), "certificate not verified: %s",
			    X509_verify_cert_error_string(r));
		else
			snprintf(why, sizeof(why), "TLS handshake failed: %s",
			    ERR_peek_error() != 0 ?
			    ERR_reason_error_string(ERR_peek_error()) :
			    "connection closed");
		*error_r = why;
		SSL_free(ssl);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->ssl = ssl;
	return t;
}

ssize_t
tls_fd_read(struct tls_fd *t, void *buf, size_t len)
{
	int n = SSL_read(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);

	if (n > 0)
		return n;
	return SSL_get_error(t->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

int
tls_fd_write(struct tls_fd *t, const void *buf, size_t len)
{
	while (len > 0) {
		int n = SSL_write(t->ssl, buf, len > INT_MAX ? INT_MAX :
		    (int)len);

		if (n <= 0)
			return -1;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

void
tls_fd_free(struct tls_fd **tp)
{
	if (*tp == NULL)
		return;
	SSL_free((*tp)->ssl);
	free(*tp);
	*tp = NULL;
}

const char *
tls_bev_verify_error(struct bufferevent *bev, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e;
	long r;

	if (ssl == NULL)
		return NULL;
	r = SSL_get_verify_result(ssl);
	if (r != X509_V_OK && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE) {
		snprintf(buf, len, "certificate not verified: %s",
		    X509_verify_cert_error_string(r));
		return buf;
	}
	e = bufferevent_get_openssl_error(bev);
	if (e == 0)
		return NULL;
	ERR_error_string_n(e, buf, len);
	return buf;
}

/* The public key as base64 DER SubjectPublicKeyInfo (DKIM's p=). */
static char *
pubkey_b64(EVP_PKEY *pkey)
{
	unsigned char *der = NULL;
	int derlen = i2d_PUBKEY(pkey, &der);
	char *b64;

	if (derlen <= 0)
		return NULL;
	b64 = xmalloc((size_t)derlen * 2 + 8);
	EVP_EncodeBlock((unsigned char *)b64, der, derlen);
	OPENSSL_free(der);
	return b64;
}

int
tls_key_public_b64(const char *path, char **pub_b64_r, const char **error_r)
{
	EVP_PKEY *pkey = NULL;
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		err_fail(error_r, errno, "cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (pkey == NULL) {
		*error_r = tls_error("cannot read a private key from", path);
		return -1;
	}
	*pub_b64_r = pubkey_b64(pkey);
	EVP_PKEY_free(pkey);
	if (*pub_b64_r == NULL) {
		*error_r = tls_error("cannot encode the public key of", path);
		return -1;
	}
	return 0;
}

int
tls_cert_spki_sha256(const char *cert_path, char hex_r[65],
    const char **error_r)
{
	unsigned char *der = NULL, md[32];
	X509 *x;
	int derlen;
	FILE *fp = fopen(cert_path, "r");

	if (fp == NULL) {
		err_fail(error_r, errno, "cannot open %s: %s", cert_path,
		    strerror(errno));
		return -1;
	}
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (x == NULL) {
		*error_r = tls_error("cannot read a certificate from",
		    cert_path);
		return -1;
	}
	derlen = i2d_PUBKEY(X509_get0_pubkey(x), &der);
	X509_free(x);
	if (derlen <= 0) {
		*error_r = tls_error("cannot encode the public key of",
		    cert_path);
		return -1;
	}
	SHA256(der, (size_t)derlen, md);
	OPENSSL_free(der);
	for (int i = 0; i < 32; i++)
		snprintf(hex_r + 2 * i, 3, "%02x", md[i]);
	return 0;
}

void
crypto_sha256(const void *msg, size_t len, unsigned char out[32])
{
	SHA256(msg, len, out);
}

int
tls_rsa_keygen(const char *path, unsigned bits, char **pub_b64_r,
    const char **error_r)
{
	EVP_PKEY *pkey = EVP_RSA_gen(bits);
	int ret = -1;

	if (pkey == NULL) {
		*error_r = tls_error("cannot generate a key for", path);
		return -1;
	}
	if (write_private_key(path, pkey, error_r) < 0)
		goto out;
	*pub_b64_r = pubkey_b64(pkey);
	if (*pub_b64_r == NULL) {
		*error_r = tls_error("cannot encode the public key of", path);
		goto out;
	}
	ret = 0;
out:
	EVP_PKEY_free(pkey);
	return ret;
}

/* Host-name checks on ssl for host (a DNS name), the SNI too. */
static int
ssl_set_host(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (host == NULL || host[0] == '\0' ||
	    X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
		return -1;
	SSL_set_tlsext_host_name(ssl, host);
	return 0;
}

struct bufferevent *
tls_bev_connect_check(struct tls_client *tc, struct event_base *base,
    struct bufferevent *plain, const char *host)
{
	SSL *ssl;

	if (tc == NULL || !tc->verify)
		return NULL;
	ssl = SSL_new(tc->ctx);
	if (ssl == NULL)
		return NULL;
	if (ssl_set_host(ssl, host) < 0) {
		SSL_free(ssl);
		return NULL;
	}
	/* SSL_VERIFY_NONE: OpenSSL still builds and checks the chain and
	 * the name, and keeps the result for tls_bev_pkix_verified */
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	return bufferevent_openssl_filter_new(base, plain, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
}

int
tls_bev_pkix_verified(struct bufferevent *tb, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tb);
	long vr;

	if (ssl == NULL) {
		snprintf(buf, len, "no TLS session");
		return 0;
	}
	if (SSL_get0_peer_certificate(ssl) == NULL) {
		snprintf(buf, len, "no certificate");
		return 0;
	}
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		snprintf(buf, len, "%s", X509_verify_cert_error_string(vr));
		return 0;
	}
	return 1;
}

enum tls_verify_kind
tls_bev_verify_kind(struct bufferevent *tb)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tb);

	if (ssl == NULL || SSL_get0_peer_certificate(ssl) == NULL)
		return TLS_VERIFY_OTHER;
	switch (SSL_get_verify_result(ssl)) {
	case X509_V_OK:
		return TLS_VERIFY_OK;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return TLS_VERIFY_HOST;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS_VERIFY_EXPIRED;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return TLS_VERIFY_UNTRUSTED;
	default:
		return TLS_VERIFY_OTHER;
	}
}

/* Seconds left before deadline (at least 1 while any is left), 0 when
 * it has passed. */
static int
secs_left(time_t deadline)
{
	time_t now = time(NULL);

	return now >= deadline ? 0 : (int)(deadline - now);
}

static void
set_sock_timeout(int fd, int secs)
{
	struct timeval tv = { secs, 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A TCP connection to sa within the deadline: the socket (blocking,
 * with send and receive timeouts), or -1. */
static int
connect_deadline(const struct sockaddr *sa, unsigned salen, time_t deadline,
    char *err, size_t errlen)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0);
	struct pollfd pfd;
	int soerr = 0, r;
	socklen_t sl = sizeof(soerr);

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, sa, (socklen_t)salen) < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	do {
		r = poll(&pfd, 1, secs_left(deadline) * 1000);
	} while (r < 0 && errno == EINTR);
	if (r <= 0) {
		snprintf(err, errlen, "connect: %s", r == 0 ? "timed out" :
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ||
	    soerr != 0) {
		snprintf(err, errlen, "connect: %s", strerror(soerr));
		close(fd);
		return -1;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	set_sock_timeout(fd, secs_left(deadline) > 0 ? secs_left(deadline) :
	    1);
	return fd;
}

/* The status line and headers of an HTTP response ending at hl (the
 * blank line excluded): 0 when it is "HTTP/1.x 200" with Content-Type
 * text/plain. */
static int
http_head_ok(const char *h, size_t hl, long long *clen_r, char *err,
    size_t errlen)
{
	size_t i = 0;

	*clen_r = -1;
	bool text_plain = false;

	if (hl < 12 || (memcmp(h, "HTTP/1.0 ", 9) != 0 &&
	    memcmp(h, "HTTP/1.1 ", 9) != 0)) {
		snprintf(err, errlen, "not an HTTP response");
		return -1;
	}
	if (memcmp(h + 9, "200", 3) != 0 || (hl > 12 && h[12] != ' ')) {
		/* redirects too: RFC 8461 3.3 forbids following them */
		snprintf(err, errlen, "HTTP status %.3s", h + 9);
		return -1;
	}
	while (i < hl) {
		size_t ls = i, le;

		while (i < hl && h[i] != '\n')
			i++;
		le = i;
		if (i < hl)
			i++;
		if (le > ls && h[le - 1] == '\r')
			le--;
		if (le - ls >= 13 && strncasecmp(h + ls, "content-type:",
		    13) == 0) {
			size_t v = ls + 13;

			while (v < le && (h[v] == ' ' || h[v] == '\t'))
				v++;
			text_plain = le - v >= 10 &&
			    strncasecmp(h + v, "text/plain", 10) == 0 &&
			    (le - v == 10 || h[v + 10] == ';' ||
			    h[v + 10] == ' ');
		}
		if (le - ls >= 15 && strncasecmp(h + ls, "content-length:",
		    15) == 0) {
			size_t v = ls + 15;
			long long n = 0;

			while (v < le && (h[v] == ' ' || h[v] == '\t'))
				v++;
			if (v == le)
				n = -2;
			for (; v < le && n >= 0; v++) {
				if (h[v] < '0' || h[v] > '9' ||
				    n > 100000000LL)
					n = -2;
				else
					n = n * 10 + (h[v] - '0');
			}
			if (n == -2) {
				snprintf(err, errlen, "malformed "
				    "Content-Length");
				return -1;
			}
			*clen_r = n;
		}
	}
	if (!text_plain) {
		snprintf(err, errlen, "Content-Type is not text/plain");
		return -1;
	}
	return 0;
}

/* One HTTPS exchange: the request (head, then body of bodylen octets)
 * sent to host at sa, the whole response read (at most max octets of
 * body and 8 KiB of headers) within the deadline. 0 with *buf_r (the
 * response, NUL-terminated; free it), the length of its headers in
 * *hl_r (the blank line excluded) and the offset of its body in
 * *body_r; -1 with the reason in err. */
static int
https_exchange(struct tls_client *tc, const struct sockaddr *sa,
    unsigned salen, const char *host, const char *head, const void *body,
    size_t bodylen, size_t max, time_t deadline, char **buf_r,
    size_t *len_r, size_t *hl_r, size_t *body_r, char *err, size_t errlen)
{
	size_t cap = max + 8192, len = 0;	/* the headers: 8 KiB */
	char *buf = NULL, *eoh;
	SSL *ssl = NULL;
	int fd, r, ret = -1;
	long vr;

	if (tc == NULL || !tc->verify) {
		snprintf(err, errlen, "no verifying TLS context");
		return -1;
	}
	fd = connect_deadline(sa, salen, deadline, err, errlen);
	if (fd < 0)
		return -1;
	ssl = SSL_new(tc->ctx);
	if (ssl == NULL || ssl_set_host(ssl, host) < 0 ||
	    SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errlen, "TLS setup failed");
		goto out;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	ERR_clear_error();
	if (SSL_connect(ssl) != 1) {
		vr = SSL_get_verify_result(ssl);
		if (vr != X509_V_OK)
			snprintf(err, errlen, "certificate not verified: %s",
			    X509_verify_cert_error_string(vr));
		else
			snprintf(err, errlen, "TLS handshake failed%s",
			    secs_left(deadline) == 0 ? " (timed out)" : "");
		goto out;
	}
	if (SSL_write(ssl, head, (int)strlen(head)) != (int)strlen(head) ||
	    (bodylen > 0 && SSL_write(ssl, body, (int)bodylen) !=
	    (int)bodylen)) {
		snprintf(err, errlen, "cannot send the request");
		goto out;
	}
	buf = xmalloc(cap + 1);
	for (;;) {
		if (secs_left(deadline) == 0) {
			snprintf(err, errlen, "timed out");
			goto out;
		}
		if (len == cap) {
			snprintf(err, errlen, "response over %zu octets",
			    max);
			goto out;
		}
		r = SSL_read(ssl, buf + len, (int)(cap - len));
		if (r > 0) {
			len += (size_t)r;
			continue;
		}
		/* the end (a server that closes without close_notify too:
		 * SSL_OP_IGNORE_UNEXPECTED_EOF; a Content-Length, when
		 * given, must then match) */
		if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN)
			break;
		snprintf(err, errlen, "%s", secs_left(deadline) == 0 ?
		    "timed out" : "connection failed while reading");
		goto out;
	}
	buf[len] = '\0';
	eoh = NULL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] == '\n' && buf[i + 1] == '\n') {
			eoh = buf + i;
			break;
		}
		if (i + 3 < len && memcmp(buf + i, "\r\n\r\n", 4) == 0) {
			eoh = buf + i;
			break;
		}
	}
	if (eoh == NULL) {
		snprintf(err, errlen, "no end of the HTTP headers");
		goto out;
	}
	*hl_r = (size_t)(eoh - buf);
	*body_r = *hl_r + (eoh[0] == '\r' ? 4 : 2);
	*buf_r = buf;
	*len_r = len;
	buf = NULL;
	ret = 0;
out:
	if (ssl != NULL) {
		if (ret == 0)
			(void)SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	ERR_clear_error();
	close(fd);
	free(buf);
	return ret;
}

int
tls_https_get(struct tls_client *tc, const struct sockaddr *sa,
    unsigned salen, const char *host, const char *path, size_t max,
    unsigned timeout_s, char **body_r, size_t *len_r, char *err,
    size_t errlen)
{
	time_t deadline = time(NULL) + (time_t)timeout_s;
	char *buf = NULL, *req;
	size_t len, hl, off;
	long long clen;
	int r;

	req = xasprintf("GET %s HTTP/1.0\r\nHost: %s\r\n"
	    "User-Agent: petrel\r\nConnection: close\r\n\r\n", path, host);
	r = https_exchange(tc, sa, salen, host, req, NULL, 0, max, deadline,
	    &buf, &len, &hl, &off, err, errlen);
	free(req);
	if (r < 0)
		return -1;
	if (http_head_ok(buf, hl, &clen, err, errlen) < 0)
		goto fail;
	len -= off;
	if (clen >= 0 && (size_t)clen != len) {
		snprintf(err, errlen, "body of %zu octets, Content-Length "
		    "%lld", len, clen);
		goto fail;
	}
	if (len > max) {
		snprintf(err, errlen, "policy over %zu octets", max);
		goto fail;
	}
	memmove(buf, buf + off, len);
	buf[len] = '\0';
	*body_r = buf;
	*len_r = len;
	return 0;
fail:
	free(buf);
	return -1;
}

int
tls_https_post(struct tls_client *tc, const struct sockaddr *sa,
    unsigned salen, const char *host, const char *path, const char *ctype,
    const void *body, size_t len, unsigned timeout_s, char *err,
    size_t errlen)
{
	time_t deadline = time(NULL) + (time_t)timeout_s;
	char *buf = NULL, *req;
	size_t rlen, hl, off;
	int r;

	req = xasprintf("POST %s HTTP/1.0\r\nHost: %s\r\n"
	    "User-Agent: petrel\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", path, host,
	    ctype, len);
	/* the answer's body is not wanted: 4 KiB of it at most */
	r = https_exchange(tc, sa, salen, host, req, body, len, 4096,
	    deadline, &buf, &rlen, &hl, &off, err, errlen);
	free(req);
	if (r < 0)
		return -1;
	if (hl < 12 || (memcmp(buf, "HTTP/1.0 ", 9) != 0 &&
	    memcmp(buf, "HTTP/1.1 ", 9) != 0)) {
		snprintf(err, errlen, "not an HTTP response");
		r = -1;
	} else if (buf[9] != '2' || buf[10] < '0' || buf[10] > '9' ||
	    buf[11] < '0' || buf[11] > '9') {
		snprintf(err, errlen, "HTTP status %.3s", buf + 9);
		r = -1;
	}
	free(buf);
	return r;
}
