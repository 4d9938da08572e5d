/*
 * tls.c: certificate handling for `petrel init` and `petrel check`.
 * (The TLS session layer for the protocols builds on this module.)
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/tls/tls.h"

static char tls_errbuf[512];

static const char *
tls_error(const char *what, const char *path)
{
	unsigned long e = ERR_get_error();

	snprintf(tls_errbuf, sizeof(tls_errbuf), "%s %s: %s", what, path,
	    e ? ERR_reason_error_string(e) : "unknown error");
	ERR_clear_error();
	return tls_errbuf;
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

int
tls_make_selfsigned(const char *cert_path, const char *key_path,
    const char *hostname, const char **error_r)
{
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	X509_NAME *name;
	FILE *fp = NULL;
	char san[600];
	int fd, ret = -1;

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
	fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
		snprintf(tls_errbuf, sizeof(tls_errbuf), "cannot write %s: %m",
		    key_path);
		*error_r = tls_errbuf;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (!PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL) ||
	    fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		*error_r = tls_error("cannot write", key_path);
		fclose(fp);
		fp = NULL;
		goto out;
	}
	fclose(fp);
	fp = fopen(cert_path, "w");
	if (fp == NULL) {
		snprintf(tls_errbuf, sizeof(tls_errbuf), "cannot write %s: %m",
		    cert_path);
		*error_r = tls_errbuf;
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
		snprintf(tls_errbuf, sizeof(tls_errbuf),
		    "cannot open TLS certificate %s: %m", cert_path);
		*error_r = tls_errbuf;
		return -1;
	}
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (cert == NULL) {
		*error_r = tls_error("no PEM certificate in", cert_path);
		goto out;
	}
	fp = fopen(key_path, "r");
	if (fp == NULL) {
		snprintf(tls_errbuf, sizeof(tls_errbuf),
		    "cannot open TLS key %s: %m", key_path);
		*error_r = tls_errbuf;
		goto out;
	}
	pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (pkey == NULL) {
		*error_r = tls_error("no PEM private key in", key_path);
		goto out;
	}
	if (X509_check_private_key(cert, pkey) != 1) {
		snprintf(tls_errbuf, sizeof(tls_errbuf),
		    "TLS key %s does not match certificate %s", key_path,
		    cert_path);
		ERR_clear_error();
		*error_r = tls_errbuf;
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
