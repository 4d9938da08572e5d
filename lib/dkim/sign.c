/*
 * sign.c: DKIM signatures for outgoing mail (RFC 6376) through libopendkim,
 * which does the canonicalisation (relaxed/relaxed) and the choice of
 * header fields to sign; we feed it the message in SMTP form (CRLF).
 *
 * Trust: the message is the authenticated user's; the key files are the
 * administrator's (mode 0600, read by the unprivileged worker).
 */
#include <errno.h>
#include <fcntl.h>
#include <opendkim/dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
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

char *
dkim_selector_read(const char *dkim_dir, const char *domain,
    const char *which)
{
	char *path = xasprintf("%s/%s.%s", dkim_dir, domain, which);
	char *text = read_small_file(path, 256), *sel = NULL;

	free(path);
	if (text == NULL)
		return NULL;
	if (dkim_selector_valid(str_trim(text)))
		sel = xstrdup(str_trim(text));
	free(text);
	return sel;
}

bool
dkim_selector_valid(const char *sel)
{
	size_t len = strlen(sel);

	if (len == 0 || len > 63 || sel[0] == '-' || sel[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((sel[i] >= 'a' && sel[i] <= 'z') ||
		    (sel[i] >= 'A' && sel[i] <= 'Z') ||
		    (sel[i] >= '0' && sel[i] <= '9') || sel[i] == '-' ||
		    sel[i] == '_'))
			return false;
	return true;
}

char *
dkim_key_path(const char *dkim_dir, const char *domain, const char *selector)
{
	char *path = xasprintf("%s/%s@%s.pem", dkim_dir, domain, selector);

	if (access(path, F_OK) == 0 || errno != ENOENT)
		return path;
	free(path);
	return xasprintf("%s/%s.pem", dkim_dir, domain);
}

int
dkim_key_load(const char *dkim_dir, const char *domain, char **key_r,
    char **selector_r, const char **error_r)
{
	char *keypath = NULL, *selpath;
	char *key, *selector = NULL;
	int ret = -1;

	*key_r = *selector_r = NULL;
	if (strchr(domain, '/') != NULL || domain[0] == '.')
		return 0;	/* no file name: no key */
	/* The selector first, then its key: a rotation switches the
	 * selector file last, when the new key's file is in place. */
	selpath = xasprintf("%s/%s.selector", dkim_dir, domain);
	selector = read_small_file(selpath, 256);
	if (selector == NULL) {
		if (errno != ENOENT) {
			err_fail(error_r, errno, "cannot read %s: %s", selpath,
			    strerror(errno));
			goto out;
		}
		/* a key without a selector file is a mistake; none at all
		 * is a domain without DKIM */
		keypath = xasprintf("%s/%s.pem", dkim_dir, domain);
		if (access(keypath, F_OK) < 0 && errno == ENOENT)
			ret = 0;
		else
			err_fail(error_r, ERR_OTHER, "no selector in %s",
			    selpath);
		goto out;
	}
	if (!dkim_selector_valid(str_trim(selector))) {
		err_fail(error_r, ERR_OTHER, "no selector in %s", selpath);
		goto out;
	}
	keypath = dkim_key_path(dkim_dir, domain, str_trim(selector));
	key = read_small_file(keypath, 16384);
	if (key == NULL) {
		if (errno == ENOENT)
			ret = 0;	/* a selector without a key: unsigned */
		else
			err_fail(error_r, errno, "cannot read %s: %s", keypath,
			    strerror(errno));
		goto out;
	}
	*key_r = key;
	*selector_r = xstrdup(str_trim(selector));
	ret = 1;
out:
	free(selector);
	free(keypath);
	free(selpath);
	return ret;
}

int
dkim_sign_message(const char *dkim_dir, const char *domain,
    const char *prefix, struct spool *body, str_t *out, const char **error_r)
{
	char *key = NULL, *selector = NULL;
	DKIM_LIB *lib = NULL;
	DKIM *dkim = NULL;
	DKIM_STAT st;
	str_t field = STR_INIT;
	bool in_body = false, pending = false;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	int ret;

	ret = dkim_key_load(dkim_dir, domain, &key, &selector, error_r);
	if (ret <= 0)
		return ret;	/* 0: no key for this domain, unsigned */
	ret = -1;
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
	    (dkim_sigkey_t)key, (const unsigned char *)selector,
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
	return ret;
}

/* Replace DIR/DOMAIN.WHICH with the line "text" (write, fsync, rename):
 * a reader sees the old selector or the new one, never a part. */
static int
put_selector(const char *dkim_dir, const char *domain, const char *which,
    const char *text, const char **error_r)
{
	char *path = xasprintf("%s/%s.%s", dkim_dir, domain, which);
	char *tmp = xasprintf("%s.tmp", path);
	char *line = xasprintf("%s\n", text);
	int fd, ret = -1;

	struct stat st;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	/* readable by the workers that sign from the moment it is in place:
	 * owned like the directory (petrel dkim keygen gives it to them) */
	if (fd >= 0 && geteuid() == 0 && stat(dkim_dir, &st) == 0 &&
	    fchown(fd, st.st_uid, st.st_gid) < 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0 || write_full(fd, line, strlen(line)) < 0 ||
	    fsync(fd) < 0) {
		err_fail(error_r, errno, "cannot write %s: %s", tmp,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		err_fail(error_r, errno, "cannot rename %s: %s", tmp,
		    strerror(errno));
		unlink(tmp);
		goto out;
	}
	ret = 0;
out:
	free(path);
	free(tmp);
	free(line);
	return ret;
}

static int
remove_file(const char *path, const char **error_r)
{
	if (unlink(path) < 0 && errno != ENOENT) {
		err_fail(error_r, errno, "cannot remove %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* Forget the rotation state under DOMAIN.WHICH (the selector file and
 * the key of the selector it names). */
static int
drop_rotation(const char *dkim_dir, const char *domain, const char *which,
    const char **error_r)
{
	char *sel = dkim_selector_read(dkim_dir, domain, which);
	char *path;
	int ret = 0;

	if (sel != NULL) {
		path = xasprintf("%s/%s@%s.pem", dkim_dir, domain, sel);
		ret = remove_file(path, error_r);
		free(path);
		free(sel);
	}
	path = xasprintf("%s/%s.%s", dkim_dir, domain, which);
	if (ret == 0)
		ret = remove_file(path, error_r);
	free(path);
	return ret;
}

int
dkim_keygen(const char *dkim_dir, const char *domain, const char *selector,
    char **txt_r, const char **error_r)
{
	char *keypath = xasprintf("%s/%s.pem", dkim_dir, domain);
	char *rotated = xasprintf("%s/%s@%s.pem", dkim_dir, domain, selector);
	char *pub = NULL;
	int ret = -1;

	if (mkdir(dkim_dir, 0750) < 0 && errno != EEXIST) {
		err_fail(error_r, errno, "cannot create %s: %s", dkim_dir,
		    strerror(errno));
		goto out;
	}
	/* a new key starts over: no rotation in progress, and no older key
	 * file of this selector that would be found before DOMAIN.pem */
	if (drop_rotation(dkim_dir, domain, "selector.next", error_r) < 0 ||
	    drop_rotation(dkim_dir, domain, "selector.old", error_r) < 0 ||
	    remove_file(rotated, error_r) < 0)
		goto out;
	if (tls_rsa_keygen(keypath, 2048, &pub, error_r) < 0 ||
	    put_selector(dkim_dir, domain, "selector", selector, error_r) < 0 ||
	    fsync_dir(dkim_dir, error_r) < 0)
		goto out;
	*txt_r = xasprintf("v=DKIM1; k=rsa; p=%s", pub);
	ret = 0;
out:
	free(pub);
	free(keypath);
	free(rotated);
	return ret;
}

int
dkim_rotate_begin(const char *dkim_dir, const char *domain,
    const char *selector, char **txt_r, const char **error_r)
{
	char *keypath = xasprintf("%s/%s@%s.pem", dkim_dir, domain, selector);
	char *pub = NULL;
	int ret = -1;

	if (tls_rsa_keygen(keypath, 2048, &pub, error_r) < 0 ||
	    fsync_dir(dkim_dir, error_r) < 0 ||
	    put_selector(dkim_dir, domain, "selector.next", selector,
	    error_r) < 0 || fsync_dir(dkim_dir, error_r) < 0) {
		unlink(keypath);
		goto out;
	}
	*txt_r = xasprintf("v=DKIM1; k=rsa; p=%s", pub);
	ret = 0;
out:
	free(pub);
	free(keypath);
	return ret;
}

int
dkim_rotate_activate(const char *dkim_dir, const char *domain,
    const char **error_r)
{
	char *cur = dkim_selector_read(dkim_dir, domain, "selector");
	char *next = dkim_selector_read(dkim_dir, domain, "selector.next");
	char *legacy = xasprintf("%s/%s.pem", dkim_dir, domain);
	char *curkey = NULL;
	int ret = -1;

	if (cur == NULL || next == NULL) {
		err_fail(error_r, ERR_OTHER, "%s has no key waiting to be "
		    "used", domain);
		goto out;
	}
	/* The current key under its selector's own name first (signers
	 * look there before DOMAIN.pem), then the old selector kept for
	 * petrel dns, then the switch: one rename of DOMAIN.selector. */
	curkey = xasprintf("%s/%s@%s.pem", dkim_dir, domain, cur);
	if (access(curkey, F_OK) < 0) {
		if (errno != ENOENT || link(legacy, curkey) < 0) {
			err_fail(error_r, errno, "cannot keep %s as %s: %s",
			    legacy, curkey, strerror(errno));
			goto out;
		}
	}
	if (fsync_dir(dkim_dir, error_r) < 0 ||
	    put_selector(dkim_dir, domain, "selector.old", cur, error_r) < 0 ||
	    put_selector(dkim_dir, domain, "selector", next, error_r) < 0 ||
	    fsync_dir(dkim_dir, error_r) < 0)
		goto out;
	{
		char *nextpath = xasprintf("%s/%s.selector.next", dkim_dir,
		    domain);

		ret = remove_file(nextpath, error_r);
		free(nextpath);
	}
	if (ret == 0)
		ret = remove_file(legacy, error_r);
	if (ret == 0)
		ret = fsync_dir(dkim_dir, error_r);
out:
	free(cur);
	free(next);
	free(legacy);
	free(curkey);
	return ret;
}

int
dkim_rotate_retire(const char *dkim_dir, const char *domain,
    const char **error_r)
{
	if (drop_rotation(dkim_dir, domain, "selector.old", error_r) < 0)
		return -1;
	return fsync_dir(dkim_dir, error_r);
}
