/*
 * sign.c: DKIM signatures for outgoing mail (RFC 6376) through libopendkim,
 * which does the canonicalisation (relaxed/relaxed) and the choice of
 * header fields to sign; we feed it the message in SMTP form (CRLF).
 *
 * Trust: the message is the authenticated user's; the key files are the
 * administrator's (mode 0600, read by the unprivileged worker).
 */
#include <errno.h>
#include <opendkim/dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/str.h"
#include "lib/dkim/sign.h"
#include "lib/queue/spool.h"
#include "lib/tls/tls.h"

static const char *sign_headers[] = {
	"from", "sender", "reply-to", "subject", "date", "message-id", "to",
	"cc", "mime-version", "content-type", "content-transfer-encoding",
	"content-id", "content-description", "resent-date", "resent-from",
	"resent-sender", "resent-to", "resent-cc", "resent-message-id",
	"in-reply-to", "references", "list-id", "list-help",
	"list-unsubscribe", "list-subscribe", "list-post", "list-owner",
	"list-archive", NULL
};

static char *
read_small_file(const char *path, size_t max)
{
	FILE *fp = fopen(path, "r");
	str_t s = STR_INIT;
	char buf[4096];
	size_t n;

	if (fp == NULL)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0 && s.len < max)
		str_append_n(&s, buf, n);
	fclose(fp);
	return str_steal(&s);
}

/* Feed bytes of the message (LF line ends) to libopendkim: header fields
 * one at a time (continuation lines joined with CRLF, as on the wire),
 * then the body converted to CRLF. A header line may be split across
 * calls: *midline says the last call ended inside one. */
static int
feed(DKIM *dkim, const char *text, size_t len, bool *in_body, str_t *field,
    bool *midline)
{
	str_t chunk = STR_INIT;
	size_t i = 0;

	while (i < len) {
		const char *nl;
		size_t llen;

		if (*in_body) {
			for (; i < len; i++) {
				if (text[i] == '\n')
					str_append(&chunk, "\r\n");
				else
					str_append_c(&chunk, text[i]);
			}
			break;
		}
		nl = memchr(text + i, '\n', len - i);
		llen = nl ? (size_t)(nl - (text + i)) : len - i;
		if (!*midline) {
			/* The start of a line decides what it is. */
			if (llen == 0 && nl != NULL) {
				if (field->len > 0 && dkim_header(dkim,
				    (u_char *)field->data, field->len) !=
				    DKIM_STAT_OK)
					goto fail;
				str_truncate(field, 0);
				if (dkim_eoh(dkim) != DKIM_STAT_OK)
					goto fail;
				*in_body = true;
				i++;
				continue;
			}
			if (text[i] == ' ' || text[i] == '\t') {
				str_append(field, "\r\n");
			} else {
				if (field->len > 0 && dkim_header(dkim,
				    (u_char *)field->data, field->len) !=
				    DKIM_STAT_OK)
					goto fail;
				str_truncate(field, 0);
			}
		}
		str_append_n(field, text + i, llen);
		*midline = nl == NULL;
		i += llen + (nl ? 1 : 0);
	}
	if (chunk.len > 0 &&
	    dkim_body(dkim, (u_char *)chunk.data, chunk.len) != DKIM_STAT_OK)
		goto fail;
	str_free(&chunk);
	return 0;
fail:
	str_free(&chunk);
	return -1;
}

int
dkim_key_load(const char *dkim_dir, const char *domain, char **key_r,
    char **selector_r, const char **error_r)
{
	char *keypath = xasprintf("%s/%s.pem", dkim_dir, domain);
	char *selpath = xasprintf("%s/%s.selector", dkim_dir, domain);
	char *key, *selector = NULL;
	int ret = -1;

	*key_r = *selector_r = NULL;
	if (strchr(domain, '/') != NULL || domain[0] == '.') {
		ret = 0;	/* no file name: no key */
		goto out;
	}
	key = read_small_file(keypath, 16384);
	if (key == NULL) {
		if (errno == ENOENT)
			ret = 0;
		else
			err_fail(error_r, errno, "cannot read %s: %s", keypath,
			    strerror(errno));
		goto out;
	}
	selector = read_small_file(selpath, 256);
	if (selector == NULL || str_trim(selector)[0] == '\0') {
		err_fail(error_r, ERR_OTHER, "no selector in %s", selpath);
		explicit_bzero(key, strlen(key));
		free(key);
		free(selector);
		goto out;
	}
	*key_r = key;
	*selector_r = xstrdup(str_trim(selector));
	free(selector);
	ret = 1;
out:
	free(keypath);
	free(selpath);
	return ret;
}

int
dkim_sign_message(const char *dkim_dir, const char *domain,
    const char *prefix, struct spool *body, str_t *out, const char **error_r)
{
	char *keypath = xasprintf("%s/%s.pem", dkim_dir, domain);
	char *selpath = xasprintf("%s/%s.selector", dkim_dir, domain);
	char *key = NULL, *selector = NULL;
	DKIM_LIB *lib = NULL;
	DKIM *dkim = NULL;
	DKIM_STAT st;
	str_t field = STR_INIT;
	bool in_body = false, pending = false;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	int ret = -1;

	key = read_small_file(keypath, 16384);
	if (key == NULL) {
		if (errno == ENOENT)
			ret = 0;	/* no key for this domain: unsigned */
		else
			err_fail(error_r, errno, "cannot read %s: %s", keypath,
			    strerror(errno));
		goto out;
	}
	selector = read_small_file(selpath, 256);
	if (selector == NULL || str_trim(selector)[0] == '\0') {
		err_fail(error_r, ERR_OTHER, "no selector in %s", selpath);
		goto out;
	}
	lib = dkim_init(NULL, NULL);
	if (lib == NULL) {
		err_fail(error_r, ERR_OTHER, "dkim_init failed");
		goto out;
	}
	/* Sign the fields RFC 6376 5.4.1 recommends (From first among them),
	 * not every field: a message with hundreds of fields must still get
	 * a signature that covers From. */
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
	    (void *)sign_headers, sizeof(char **)) != DKIM_STAT_OK) {
		err_fail(error_r, ERR_OTHER, "dkim_options failed");
		goto out;
	}
	dkim = dkim_sign(lib, (const unsigned char *)"petrel", NULL,
	    (dkim_sigkey_t)key, (const unsigned char *)str_trim(selector),
	    (const unsigned char *)domain, DKIM_CANON_RELAXED,
	    DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1, &st);
	if (dkim == NULL) {
		err_fail(error_r, ERR_OTHER, "dkim_sign: %s",
		    dkim_getresultstr(st));
		goto out;
	}
	if (feed(dkim, prefix, strlen(prefix), &in_body, &field, &pending) < 0)
		goto dkim_fail;
	{
		/* The body, in chunks, without holding it all in memory. */
		char buf[65536];
		struct spool *sp = body;
		off_t off = 0;

		if (sp->fd < 0) {
			if (feed(dkim, sp->mem.data ? sp->mem.data : "",
			    sp->mem.len, &in_body, &field, &pending) < 0)
				goto dkim_fail;
		} else {
			ssize_t n;

			while ((n = pread(sp->fd, buf, sizeof(buf), off)) > 0) {
				if (feed(dkim, buf, (size_t)n, &in_body, &field,
				    &pending) < 0)
					goto dkim_fail;
				off += n;
			}
		}
	}
	if (!in_body) {
		if (field.len > 0)
			dkim_header(dkim, (u_char *)field.data, field.len);
		dkim_eoh(dkim);
	}
	if (dkim_eom(dkim, NULL) != DKIM_STAT_OK ||
	    dkim_getsighdr_d(dkim, strlen("DKIM-Signature: "), &sig,
	    &siglen) != DKIM_STAT_OK)
		goto dkim_fail;
	str_append(out, "DKIM-Signature: ");
	for (size_t i = 0; i < siglen; i++)
		if (sig[i] != '\r')
			str_append_c(out, (char)sig[i]);
	str_append_c(out, '\n');
	ret = 1;
	goto out;
dkim_fail:
	err_fail(error_r, ERR_OTHER, "DKIM signing failed: %s",
	    dkim_geterror(dkim) ? dkim_geterror(dkim) : "?");
out:
	if (dkim != NULL)
		dkim_free(dkim);
	if (lib != NULL)
		dkim_close(lib);
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	str_free(&field);
	free(selector);
	free(keypath);
	free(selpath);
	return ret;
}

int
dkim_keygen(const char *dkim_dir, const char *domain, const char *selector,
    char **txt_r, const char **error_r)
{
	char *keypath = xasprintf("%s/%s.pem", dkim_dir, domain);
	char *selpath = xasprintf("%s/%s.selector", dkim_dir, domain);
	char *pub = NULL;
	FILE *fp;
	int ret = -1;

	if (mkdir(dkim_dir, 0750) < 0 && errno != EEXIST) {
		err_fail(error_r, errno, "cannot create %s: %s", dkim_dir,
		    strerror(errno));
		goto out;
	}
	if (tls_rsa_keygen(keypath, 2048, &pub, error_r) < 0)
		goto out;
	fp = fopen(selpath, "w");
	if (fp == NULL || fprintf(fp, "%s\n", selector) < 0 || fclose(fp) != 0) {
		err_fail(error_r, errno, "cannot write %s: %s", selpath,
		    strerror(errno));
		goto out;
	}
	*txt_r = xasprintf("v=DKIM1; k=rsa; p=%s", pub);
	ret = 0;
out:
	free(pub);
	free(keypath);
	free(selpath);
	return ret;
}
