/*
 * arc.c: ARC (RFC 8617). Debian 12 has no ARC library (no OpenARC
 * package), and libopendkim checks DKIM-Signature fields only, so the
 * chain is taken apart and checked here, on OpenSSL's libcrypto (SHA-256,
 * RSA PKCS #1 v1.5), with lib/trust/canon (RFC 6376 canonicalization)
 * and lib/trust/tags (tag lists). Its verdicts are tested against
 * dkimpy's (tests/integration/test_arc.py).
 *
 * Validation (RFC 8617 5.2): the ARC sets (ARC-Authentication-Results,
 * ARC-Message-Signature, ARC-Seal sharing an i=) must be i=1..N without
 * gap or repetition, N <= 50, each complete; the seals say cv=none for
 * i=1 and cv=pass above it; the newest AMS must validate (body hash and
 * signature, as a DKIM signature with the AMS's tags); every seal must
 * validate over the sets 1..i in order, its own b= empty and last. An
 * older AMS that fails sets header.oldest-pass. A field named like an
 * ARC field without any i= tag belongs to no set and is left aside.
 *
 * Trust: every field is the sender's, every key record its DNS's: tag
 * lists are bounded (lib/trust/tags), the header section read is at most
 * HEAD_MAX, at most ARC_MAX_SETS sets and their keys are looked up, each
 * key name once.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound.h>

#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/err.h"
#include "lib/base/str.h"
#include "lib/queue/spool.h"
#include "lib/trust/arc.h"
#include "lib/trust/authres.h"
#include "lib/trust/canon.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/rdata.h"
#include "lib/trust/tags.h"

#define HEAD_MAX (1024 * 1024)	/* the header section read */
#define H_MAX 256		/* names in an AMS's h= */
#define KEY_TXT_MAX 4096

enum { F_AAR, F_AMS, F_AS };

static const char *const arc_names[] = {
	"ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal",
};

/* The header fields an AMS of ours signs when present (RFC 6376 5.4.1's
 * list, as for DKIM signatures). */
static const char *const seal_headers[] = {
	"from", "sender", "reply-to", "subject", "date", "message-id", "to",
	"cc", "mime-version", "content-type", "content-transfer-encoding",
	"content-id", "content-description", "resent-date", "resent-from",
	"resent-sender", "resent-to", "resent-cc", "resent-message-id",
	"in-reply-to", "references", "list-id", "list-help",
	"list-unsubscribe", "list-subscribe", "list-post", "list-owner",
	"list-archive", NULL
};

const char *
arc_result_name(enum arc_result r)
{
	switch (r) {
	case ARC_R_PASS:
		return "pass";
	case ARC_R_FAIL:
		return "fail";
	default:
		return "none";
	}
}

static bool
is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- the header section ---- */

struct field {
	const char *p;		/* the whole field, line ends included */
	size_t len;
	size_t nlen;		/* its name's length (0: no colon) */
	size_t voff;		/* its value: after the colon */
};

struct head {
	str_t text;
	uint64_t body_off;	/* where the body starts in the spool */
	uint64_t seen;
	bool bol, done, cut;
	struct field *f;
	size_t nf;
};

static int
head_cb(void *ctx, const void *data, size_t len)
{
	struct head *h = ctx;
	const char *p = data;

	for (size_t i = 0; i < len; i++) {
		h->seen++;
		if (h->bol && p[i] == '\n') {
			h->done = true;
			h->body_off = h->seen;
			return -1;
		}
		if (h->text.len < HEAD_MAX)
			str_append_c(&h->text, p[i]);
		else
			h->cut = true;
		h->bol = p[i] == '\n';
	}
	return 0;
}

/* Split h->text into fields. */
static void
head_split(struct head *h)
{
	const char *p = h->text.data, *end = p + h->text.len;

	while (p != NULL && p < end) {
		const char *q = header_field_end(p, end);
		const char *colon = memchr(p, ':', (size_t)(q - p));
		const char *nl = memchr(p, '\n', (size_t)(q - p));
		struct field *f;

		if (*p == ' ' || *p == '\t') {
			p = q;	/* a continuation without a field */
			continue;
		}
		if (h->nf % 64 == 0)
			h->f = xrealloc(h->f, (h->nf + 64) * sizeof(*h->f));
		f = &h->f[h->nf++];
		f->p = p;
		f->len = (size_t)(q - p);
		f->nlen = 0;
		f->voff = f->len;
		if (colon != NULL && (nl == NULL || colon < nl)) {
			size_t n = (size_t)(colon - p);

			while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
				n--;
			f->nlen = n;
			f->voff = (size_t)(colon - p) + 1;
		}
		p = q;
	}
}

static void
head_read(struct head *h, const char *prefix, struct spool *msg)
{
	memset(h, 0, sizeof(*h));
	str_append(&h->text, prefix);
	h->bol = true;
	spool_each(msg, head_cb, h);
	if (!h->done)
		h->body_off = h->seen;
	if (h->text.len > 0 && h->text.data[h->text.len - 1] != '\n')
		str_append_c(&h->text, '\n');
	head_split(h);
}

static void
head_free(struct head *h)
{
	str_free(&h->text);
	free(h->f);
}

static bool
field_is(const struct field *f, const char *name)
{
	return f->nlen == strlen(name) && strncasecmp(f->p, name, f->nlen) == 0;
}

/* ---- the sets ---- */

struct set {
	const struct field *f[3];
	unsigned count[3];
	struct tag_list tl[3];	/* AMS and AS */
};

struct chain {
	struct set *s;		/* s[1..n] */
	unsigned n;
};

/* The instance of an ARC field: its i= (1..ARC_MAX_SETS), 0 without one,
 * -1 when it is not a number in that range. Found the way other
 * validators find it, in a list that may not parse as a whole. */
static int
instance_of(const char *v, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t s = i, e;

		while (i < len && v[i] != ';')
			i++;
		e = i++;
		while (s < e && is_fws(v[s]))
			s++;
		while (e > s && is_fws(v[e - 1]))
			e--;
		if (s < e && v[s] == 'i') {
			size_t k = s + 1;
			unsigned long n = 0;

			while (k < e && is_fws(v[k]))
				k++;
			if (k == e || v[k] != '=')
				continue;
			k++;
			while (k < e && is_fws(v[k]))
				k++;
			if (k == e || e - k > 3)
				return -1;
			for (; k < e; k++) {
				if (v[k] < '0' || v[k] > '9')
					return -1;
				n = n * 10 + (unsigned long)(v[k] - '0');
			}
			return n >= 1 && n <= ARC_MAX_SETS ? (int)n : -1;
		}
	}
	return 0;
}

static void fail(struct arc_verdict *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
fail(struct arc_verdict *v, const char *fmt, ...)
{
	va_list ap;

	v->result = ARC_R_FAIL;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

/* Sort the ARC fields into sets. 0 (v->n = 0 without any), or -1 with
 * v failed. */
static int
chain_collect(const struct head *h, struct chain *c, struct arc_verdict *v)
{
	bool bad = false;

	c->n = 0;
	c->s = xcalloc(ARC_MAX_SETS + 1, sizeof(*c->s));
	for (size_t k = 0; k < h->nf; k++) {
		const struct field *f = &h->f[k];

		for (int t = 0; t < 3; t++) {
			int i;

			if (!field_is(f, arc_names[t]))
				continue;
			i = instance_of(f->p + f->voff, f->len - f->voff);
			if (i < 0) {
				bad = true;
			} else if (i > 0) {
				c->s[i].f[t] = f;
				c->s[i].count[t]++;
				if ((unsigned)i > c->n)
					c->n = (unsigned)i;
			}
		}
	}
	v->n = c->n;
	if (bad) {
		fail(v, "an ARC field without a usable instance");
		return -1;
	}
	if (c->n > 0 && h->cut) {
		fail(v, "header section too large");
		return -1;
	}
	for (unsigned i = 1; i <= c->n; i++)
		for (int t = 0; t < 3; t++) {
			if (c->s[i].count[t] == 0) {
				fail(v, "ARC set %u incomplete", i);
				return -1;
			}
			if (c->s[i].count[t] > 1) {
				fail(v, "ARC set %u repeated", i);
				return -1;
			}
		}
	return 0;
}

/* d= and s=: names fit for a DNS query. */
static bool
dns_label_ok(const struct tag *t)
{
	if (t == NULL || t->vlen == 0 || t->vlen > 253)
		return false;
	for (size_t i = 0; i < t->vlen; i++) {
		char c = t->value[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static bool
b64_ok(const struct tag *t, str_t *out)
{
	char *s = tag_squeeze(t);
	bool ok = s[0] != '\0' && base64_decode(out, s, strlen(s)) == 0;

	free(s);
	return ok;
}

/* The AMS and AS of set i: their tags and what they must have. */
static int
set_parse(struct set *s, unsigned i, struct arc_verdict *v)
{
	static const char *const ams_req[] = { "i", "a", "b", "bh", "d", "h",
	    "s", NULL };
	static const char *const as_req[] = { "i", "a", "b", "cv", "d", "s",
	    NULL };
	const struct tag *t;
	str_t tmp = STR_INIT;
	bool ok;
	int ret = -1;

	for (int k = F_AMS; k <= F_AS; k++) {
		const struct field *f = s->f[k];
		const char *const *req = k == F_AMS ? ams_req : as_req;

		if (tags_parse(f->p + f->voff, f->len - f->voff,
		    &s->tl[k]) < 0) {
			fail(v, k == F_AMS ? "AMS %u malformed" :
			    "AS %u malformed", i);
			goto out;
		}
		for (; *req != NULL; req++)
			if (tags_get(&s->tl[k], *req) == NULL) {
				fail(v, k == F_AMS ? "AMS %u lacks a tag" :
				    "AS %u lacks a tag", i);
				goto out;
			}
		if (!tag_is(tags_get(&s->tl[k], "a"), "rsa-sha256")) {
			fail(v, "ARC set %u: algorithm not rsa-sha256", i);
			goto out;
		}
		str_truncate(&tmp, 0);
		ok = b64_ok(tags_get(&s->tl[k], "b"), &tmp);
		if (ok && k == F_AMS) {
			str_truncate(&tmp, 0);
			ok = b64_ok(tags_get(&s->tl[k], "bh"), &tmp);
		}
		if (!ok || !dns_label_ok(tags_get(&s->tl[k], "d")) ||
		    !dns_label_ok(tags_get(&s->tl[k], "s"))) {
			fail(v, k == F_AMS ? "AMS %u malformed" :
			    "AS %u malformed", i);
			goto out;
		}
	}
	if (tags_get(&s->tl[F_AS], "h") != NULL) {
		fail(v, "AS %u has h=", i);
		goto out;
	}
	t = tags_get(&s->tl[F_AS], "cv");
	if (!tag_is(t, "none") && !tag_is(t, "pass") && !tag_is(t, "fail")) {
		fail(v, "AS %u has an unknown cv=", i);
		goto out;
	}
	t = tags_get(&s->tl[F_AMS], "l");
	if (t != NULL) {
		if (t->vlen == 0 || t->vlen > 18) {
			fail(v, "AMS %u malformed", i);
			goto out;
		}
		for (size_t k = 0; k < t->vlen; k++)
			if (t->value[k] < '0' || t->value[k] > '9') {
				fail(v, "AMS %u malformed", i);
				goto out;
			}
	}
	ret = 0;
out:
	str_free(&tmp);
	return ret;
}

/* c= of an AMS: header and body relaxed? -1 when unknown. Without c=,
 * relaxed/relaxed (what ARC signers write). */
static int
canon_of(const struct tag_list *tl, bool *hrel, bool *brel)
{
	const struct tag *c = tags_get(tl, "c");
	const char *slash;
	size_t hl;

	*hrel = *brel = true;
	if (c == NULL)
		return 0;
	slash = memchr(c->value, '/', c->vlen);
	hl = slash != NULL ? (size_t)(slash - c->value) : c->vlen;
	if (hl == 7 && memcmp(c->value, "relaxed", 7) == 0)
		*hrel = true;
	else if (hl == 6 && memcmp(c->value, "simple", 6) == 0)
		*hrel = false;
	else
		return -1;
	if (slash == NULL) {
		*brel = false;	/* RFC 6376 3.5: the body's default */
		return 0;
	}
	hl = c->vlen - hl - 1;
	if (hl == 7 && memcmp(slash + 1, "relaxed", 7) == 0)
		*brel = true;
	else if (hl == 6 && memcmp(slash + 1, "simple", 6) == 0)
		*brel = false;
	else
		return -1;
	return 0;
}

/* ---- body hashes ---- */

struct bh {
	EVP_MD_CTX *md;
	bool relaxed, limited;
	uint64_t limit, done;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen;
};

struct bh_run {
	struct bh *bh;		/* [1..n]; md NULL: none */
	unsigned n;
	bool relaxed;		/* of the canonicalizer emitting */
};

static void
bh_emit(void *ctx, const char *data, size_t len)
{
	struct bh_run *r = ctx;

	for (unsigned i = 1; i <= r->n; i++) {
		struct bh *b = &r->bh[i];
		size_t n = len;

		if (b->md == NULL || b->relaxed != r->relaxed)
			continue;
		if (b->limited) {
			if (b->done >= b->limit)
				continue;
			if (n > b->limit - b->done)
				n = (size_t)(b->limit - b->done);
		}
		EVP_DigestUpdate(b->md, data, n);
		b->done += n;
	}
}

struct body_feed {
	uint64_t skip;
	struct canon_body cb[2];	/* simple, relaxed */
};

static int
body_cb(void *ctx, const void *data, size_t len)
{
	struct body_feed *bf = ctx;
	const char *p = data;

	if (bf->skip >= len) {
		bf->skip -= len;
		return 0;
	}
	p += bf->skip;
	len -= (size_t)bf->skip;
	bf->skip = 0;
	canon_body_feed(&bf->cb[0], p, len);
	canon_body_feed(&bf->cb[1], p, len);
	return 0;
}

/* Hash the body (after body_off) for every bh with an md. */
static void
body_hash(struct spool *msg, uint64_t body_off, struct bh *bh, unsigned n)
{
	struct bh_run run[2] = { { bh, n, false }, { bh, n, true } };
	struct body_feed bf;

	bf.skip = body_off;
	canon_body_init(&bf.cb[0], false, bh_emit, &run[0]);
	canon_body_init(&bf.cb[1], true, bh_emit, &run[1]);
	spool_each(msg, body_cb, &bf);
	canon_body_end(&bf.cb[0]);
	canon_body_end(&bf.cb[1]);
	for (unsigned i = 1; i <= n; i++)
		if (bh[i].md != NULL)
			EVP_DigestFinal_ex(bh[i].md, bh[i].digest,
			    &bh[i].dlen);
}

/* ---- keys ---- */

struct key {
	char *name;
	EVP_PKEY *pk;		/* NULL: none usable */
	const char *why;
};

struct keys {
	struct key *k;
	size_t n;
};

/* Any item of a colon-separated list equal to one of a or b? */
static bool
list_has(const struct tag *t, const char *a, const char *b)
{
	size_t i = 0;

	while (i <= t->vlen) {
		size_t s = i, e;

		while (i < t->vlen && t->value[i] != ':')
			i++;
		e = i++;
		while (s < e && is_fws(t->value[s]))
			s++;
		while (e > s && is_fws(t->value[e - 1]))
			e--;
		if ((e - s == strlen(a) && memcmp(t->value + s, a, e - s) == 0)
		    || (b != NULL && e - s == strlen(b) &&
		    memcmp(t->value + s, b, e - s) == 0))
			return true;
	}
	return false;
}

/* A key record (RFC 6376 3.6.1) made an RSA key of at least 1024 bits. */
static EVP_PKEY *
key_parse(const char *txt, size_t len, const char **why)
{
	struct tag_list tl;
	const struct tag *t;
	str_t der = STR_INIT;
	const unsigned char *p;
	EVP_PKEY *pk = NULL;

	if (tags_parse(txt, len, &tl) < 0) {
		*why = "key record malformed";
		return NULL;
	}
	t = tags_get(&tl, "v");
	if (t != NULL && !tag_is(t, "DKIM1")) {
		*why = "key record malformed";
		return NULL;
	}
	t = tags_get(&tl, "k");
	if (t != NULL && !tag_is(t, "rsa")) {
		*why = "key not rsa";
		return NULL;
	}
	t = tags_get(&tl, "h");
	if (t != NULL && !list_has(t, "sha256", NULL)) {
		*why = "key not for sha256";
		return NULL;
	}
	t = tags_get(&tl, "s");
	if (t != NULL && !list_has(t, "*", "email")) {
		*why = "key not for email";
		return NULL;
	}
	t = tags_get(&tl, "p");
	if (t == NULL || t->vlen == 0) {
		*why = t == NULL ? "key record malformed" : "key revoked";
		return NULL;
	}
	if (!b64_ok(t, &der)) {
		*why = "key record malformed";
		str_free(&der);
		return NULL;
	}
	p = (const unsigned char *)der.data;
	pk = d2i_PUBKEY(NULL, &p, (long)der.len);
	if (pk == NULL) {
		/* a bare RSAPublicKey, as some publish */
		p = (const unsigned char *)der.data;
		pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)der.len);
	}
	str_free(&der);
	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pk);
		*why = "key record malformed";
		return NULL;
	}
	if (EVP_PKEY_get_bits(pk) < 1024) {
		EVP_PKEY_free(pk);
		*why = "key too short";
		return NULL;
	}
	return pk;
}

static EVP_PKEY *
key_get(struct keys *ks, const struct tag_list *tl, const char **why)
{
	const struct tag *s = tags_get(tl, "s"), *d = tags_get(tl, "d");
	char *name = xasprintf("%.*s._domainkey.%.*s", (int)s->vlen, s->value,
	    (int)d->vlen, d->value);
	struct ub_result *res = NULL;
	enum dnsq_status st;
	struct key *k;
	char *txt;
	size_t tlen;
	int trunc;

	for (size_t i = 0; i < ks->n; i++)
		if (strcasecmp(ks->k[i].name, name) == 0) {
			free(name);
			*why = ks->k[i].why;
			return ks->k[i].pk;
		}
	ks->k = xrealloc(ks->k, (ks->n + 1) * sizeof(*ks->k));
	k = &ks->k[ks->n++];
	k->name = name;
	k->pk = NULL;
	k->why = NULL;
	if (strlen(name) > 253) {
		k->why = "no key";
	} else if ((st = dnsq_lookup(name, 16 /* TXT */, &res)) ==
	    DNSQ_TEMPFAIL) {
		k->why = "key lookup failed";
	} else if (st != DNSQ_OK) {
		k->why = "no key";
	} else {
		/* the first record (RFC 6376 3.6.2.2) */
		txt = rdata_txt_join(res->data[0], (size_t)res->len[0],
		    KEY_TXT_MAX, &tlen, &trunc);
		ub_resolve_free(res);
		k->pk = trunc ? NULL : key_parse(txt, tlen, &k->why);
		if (trunc)
			k->why = "key record too long";
		free(txt);
	}
	*why = k->why;
	return k->pk;
}

static void
keys_free(struct keys *ks)
{
	for (size_t i = 0; i < ks->n; i++) {
		free(ks->k[i].name);
		EVP_PKEY_free(ks->k[i].pk);
	}
	free(ks->k);
}

/* ---- header hashes ---- */

/* The field with its b= value cut out (RFC 6376 3.7: hashed with an
 * empty b=), canonicalized, without the final CRLF. */
static void
canon_unsigned(str_t *out, bool relaxed, const struct field *f,
    const struct tag *b)
{
	const char *eq = b->value;
	str_t raw = STR_INIT;

	while (eq > f->p && *eq != '=')
		eq--;
	str_append_n(&raw, f->p, (size_t)(eq + 1 - f->p));
	str_append_n(&raw, b->value + b->vlen,
	    f->len - (size_t)(b->value + b->vlen - f->p));
	canon_header(out, relaxed, raw.data, raw.len, false);
	str_free(&raw);
}

/* Append the fields an h= list names (RFC 6376 5.4.2: the last unused
 * one of each name, from the bottom), canonicalized. -1 when h= is not
 * a usable list (an AMS must not sign ARC-Seal, RFC 8617 4.1.2). */
static int
canon_selected(str_t *out, bool relaxed, const struct head *h,
    const struct tag *ht)
{
	const char *names[H_MAX + 1];
	size_t nlens[H_MAX + 1], used[H_MAX + 1], nn = 0, i = 0;
	bool from = false;

	while (i <= ht->vlen) {
		size_t s = i, e;

		while (i < ht->vlen && ht->value[i] != ':')
			i++;
		e = i++;
		while (s < e && is_fws(ht->value[s]))
			s++;
		while (e > s && is_fws(ht->value[e - 1]))
			e--;
		if (s == e || nn == H_MAX)
			return -1;
		if (e - s == 8 && strncasecmp(ht->value + s, "arc-seal", 8) == 0)
			return -1;
		if (e - s == 4 && strncasecmp(ht->value + s, "from", 4) == 0)
			from = true;
		names[nn] = ht->value + s;
		nlens[nn++] = e - s;
	}
	/* From once more: a second From field, which a signer cannot have
	 * meant, is hashed too and breaks the signature (as dkimpy does) */
	if (from) {
		names[nn] = "from";
		nlens[nn++] = 4;
	}
	for (size_t k = 0; k < nn; k++) {
		size_t start = h->nf;

		/* where the last one of this name was taken */
		for (size_t j = k; j-- > 0;)
			if (nlens[j] == nlens[k] &&
			    strncasecmp(names[j], names[k], nlens[k]) == 0) {
				start = used[j];
				break;
			}
		used[k] = start;
		while (used[k] > 0) {
			const struct field *f = &h->f[--used[k]];

			if (f->nlen == nlens[k] &&
			    strncasecmp(f->p, names[k], nlens[k]) == 0) {
				canon_header(out, relaxed, f->p, f->len, true);
				break;
			}
		}
	}
	return 0;
}

static bool
sig_ok(EVP_PKEY *pk, const str_t *data, const struct tag *b)
{
	str_t sig = STR_INIT;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = false;

	if (md != NULL && b64_ok(b, &sig) &&
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
	    EVP_DigestVerify(md, (const unsigned char *)sig.data, sig.len,
	    (const unsigned char *)data->data, data->len) == 1)
		ok = true;
	EVP_MD_CTX_free(md);
	str_free(&sig);
	return ok;
}

/* Does the AMS of set i validate? NULL, or why not. */
static const char *
ams_check(const struct head *h, struct chain *c, unsigned i, struct bh *bh,
    struct keys *ks)
{
	struct set *s = &c->s[i];
	const struct tag *b = tags_get(&s->tl[F_AMS], "b");
	str_t want = STR_INIT, data = STR_INIT;
	const char *why = NULL;
	bool hrel, brel;
	EVP_PKEY *pk;

	(void)canon_of(&s->tl[F_AMS], &hrel, &brel);
	b64_ok(tags_get(&s->tl[F_AMS], "bh"), &want);
	if (want.len != bh[i].dlen ||
	    memcmp(want.data, bh[i].digest, want.len) != 0) {
		why = "body hash mismatch";
		goto out;
	}
	if (canon_selected(&data, hrel, h, tags_get(&s->tl[F_AMS], "h")) < 0) {
		why = "h= unusable";
		goto out;
	}
	canon_unsigned(&data, hrel, s->f[F_AMS], b);
	pk = key_get(ks, &s->tl[F_AMS], &why);
	if (pk != NULL && !sig_ok(pk, &data, b))
		why = "signature did not verify";
out:
	str_free(&want);
	str_free(&data);
	return why;
}

/* The sets 1..i as an ARC-Seal of set i covers them (RFC 8617 5.1.1),
 * its own b= empty and last. */
static void
seal_data(str_t *data, struct chain *c, unsigned i,
    const struct field *own_as, const struct tag *own_b)
{
	for (unsigned k = 1; k <= i; k++) {
		const struct set *s = &c->s[k];

		canon_header(data, true, s->f[F_AAR]->p, s->f[F_AAR]->len, true);
		canon_header(data, true, s->f[F_AMS]->p, s->f[F_AMS]->len, true);
		if (k < i)
			canon_header(data, true, s->f[F_AS]->p, s->f[F_AS]->len,
			    true);
	}
	canon_unsigned(data, true, own_as, own_b);
}

static const char *
as_check(struct chain *c, unsigned i, struct keys *ks)
{
	struct set *s = &c->s[i];
	const struct tag *b = tags_get(&s->tl[F_AS], "b");
	str_t data = STR_INIT;
	const char *why = NULL;
	EVP_PKEY *pk;

	seal_data(&data, c, i, s->f[F_AS], b);
	pk = key_get(ks, &s->tl[F_AS], &why);
	if (pk != NULL && !sig_ok(pk, &data, b))
		why = "did not validate";
	str_free(&data);
	return why;
}

/* RFC 8617 5.2 steps 1 to 3: the sets, their tags, their cv=. 0 (with
 * c->n = 0 when there is no set), or -1 with v failed. */
static int
structure(const struct head *h, struct chain *c, struct arc_verdict *v)
{
	if (chain_collect(h, c, v) < 0)
		return -1;
	for (unsigned i = 1; i <= c->n; i++)
		if (set_parse(&c->s[i], i, v) < 0)
			return -1;
	for (unsigned i = c->n; i >= 1; i--) {
		const struct tag *cv = tags_get(&c->s[i].tl[F_AS], "cv");

		if (tag_is(cv, "fail")) {
			v->terminated = true;
			fail(v, "AS %u says cv=fail", i);
			return -1;
		}
		if (i == 1 ? !tag_is(cv, "none") : !tag_is(cv, "pass")) {
			fail(v, i == 1 ? "AS %u cv= is not none" :
			    "AS %u cv= is not pass", i);
			return -1;
		}
	}
	return 0;
}

int
arc_structure(const char *text, size_t len, struct arc_verdict *v)
{
	struct head h;
	struct chain c = { NULL, 0 };
	int r;

	memset(&h, 0, sizeof(h));
	memset(v, 0, sizeof(*v));
	v->checked = true;
	str_append_n(&h.text, text, len);
	if (h.text.len > 0 && h.text.data[h.text.len - 1] != '\n')
		str_append_c(&h.text, '\n');
	head_split(&h);
	r = structure(&h, &c, v);
	free(c.s);
	head_free(&h);
	return r;
}

void
arc_verify_message(struct spool *msg, struct arc_verdict *v)
{
	struct head h;
	struct chain c = { NULL, 0 };
	struct keys ks = { NULL, 0 };
	struct bh *bh = NULL;
	const char *why;

	memset(v, 0, sizeof(*v));
	v->checked = true;
	v->result = ARC_R_NONE;
	head_read(&h, "", msg);
	if (structure(&h, &c, v) < 0 || c.n == 0)
		goto out;
	/* body hashes of every AMS (the newest, and the older ones for
	 * oldest-pass), in one pass over the body */
	bh = xcalloc(c.n + 1, sizeof(*bh));
	for (unsigned i = 1; i <= c.n; i++) {
		const struct tag *l = tags_get(&c.s[i].tl[F_AMS], "l");
		bool hrel;

		if (canon_of(&c.s[i].tl[F_AMS], &hrel, &bh[i].relaxed) < 0) {
			fail(v, "AMS %u has an unknown c=", i);
			goto out;
		}
		if (l != NULL) {
			bh[i].limited = true;
			bh[i].limit = strtoull(l->value, NULL, 10);
		}
		bh[i].md = EVP_MD_CTX_new();
		if (bh[i].md == NULL ||
		    EVP_DigestInit_ex(bh[i].md, EVP_sha256(), NULL) != 1) {
			fail(v, "AMS %u: no digest", i);
			goto out;
		}
	}
	body_hash(msg, h.body_off, bh, c.n);
	if ((why = ams_check(&h, &c, c.n, bh, &ks)) != NULL) {
		v->result = ARC_R_FAIL;
		snprintf(v->reason, sizeof(v->reason), "AMS %u %s", c.n, why);
		goto out;
	}
	for (unsigned i = c.n - 1; i >= 1; i--)
		if (ams_check(&h, &c, i, bh, &ks) != NULL) {
			v->oldest_pass = i + 1;
			break;
		}
	for (unsigned i = c.n; i >= 1; i--)
		if ((why = as_check(&c, i, &ks)) != NULL) {
			v->result = ARC_R_FAIL;
			snprintf(v->reason, sizeof(v->reason), "AS %u %s", i,
			    why);
			goto out;
		}
	v->result = ARC_R_PASS;
out:
	if (v->result != ARC_R_PASS)
		v->oldest_pass = 0;
	for (unsigned i = 1; bh != NULL && i <= c.n; i++)
		EVP_MD_CTX_free(bh[i].md);
	free(bh);
	keys_free(&ks);
	free(c.s);
	head_free(&h);
}

/* ---- sealing ---- */

static int
sign(EVP_PKEY *pk, const str_t *data, str_t *b64)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t len = 0;
	int ret = -1;

	if (md != NULL &&
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
	    EVP_DigestSign(md, NULL, &len, (const unsigned char *)data->data,
	    data->len) == 1) {
		sig = xmalloc(len);
		if (EVP_DigestSign(md, sig, &len,
		    (const unsigned char *)data->data, data->len) == 1) {
			base64_encode(b64, sig, len);
			ret = 0;
		}
	}
	free(sig);
	EVP_MD_CTX_free(md);
	return ret;
}

/* Append b64 folded: 72 octets a line. */
static void
append_folded(str_t *out, const str_t *b64)
{
	for (size_t i = 0; i < b64->len; i += 72) {
		if (i > 0)
			str_append(out, "\n\t");
		str_append_n(out, b64->data + i,
		    b64->len - i > 72 ? 72 : b64->len - i);
	}
}

int
arc_seal(const struct arc_verdict *v, const char *authres,
    const char *domain, const char *selector, const char *key_pem,
    const char *prefix, struct spool *body, time_t now, str_t *out,
    const char **error_r)
{
	struct head h;
	struct chain c = { NULL, 0 };
	struct arc_verdict cv_check;
	struct bh bh[2];
	str_t aar = STR_INIT, ams = STR_INIT, as = STR_INIT, data = STR_INIT,
	    b64 = STR_INIT, hlist = STR_INIT;
	const char *cv;
	unsigned i;
	BIO *bio = NULL;
	EVP_PKEY *pk = NULL;
	int ret = -1;
	size_t col;

	if (!v->checked || v->terminated || v->n >= ARC_MAX_SETS ||
	    (v->result == ARC_R_FAIL && v->n == 0))
		return 0;
	i = v->n + 1;
	cv = i == 1 ? "none" : v->result == ARC_R_PASS ? "pass" : "fail";
	bio = BIO_new_mem_buf(key_pem, -1);
	pk = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) :
	    NULL;
	if (pk == NULL) {
		BIO_free(bio);
		err_fail(error_r, ERR_OTHER, "ARC: the key of %s is not usable",
		    domain);
		return -1;
	}
	head_read(&h, prefix, body);
	memset(&cv_check, 0, sizeof(cv_check));
	if (strcmp(cv, "pass") == 0 && (chain_collect(&h, &c, &cv_check) < 0 ||
	    c.n != v->n)) {
		err_fail(error_r, ERR_OTHER, "ARC: the chain changed");
		goto out;
	}
	/* ARC-Authentication-Results: i=; our field's value */
	while (*authres == ' ' || *authres == '\t')
		authres++;
	str_printf(&aar, "ARC-Authentication-Results: i=%u; %s", i, authres);
	while (aar.len > 0 && aar.data[aar.len - 1] == '\n')
		str_truncate(&aar, aar.len - 1);
	/* ARC-Message-Signature over the message as it leaves */
	memset(bh, 0, sizeof(bh));
	bh[1].relaxed = true;
	bh[1].md = EVP_MD_CTX_new();
	if (bh[1].md == NULL ||
	    EVP_DigestInit_ex(bh[1].md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(bh[1].md);
		err_fail(error_r, ERR_OTHER, "ARC: no digest");
		goto out;
	}
	body_hash(body, h.body_off, bh, 1);
	EVP_MD_CTX_free(bh[1].md);
	col = 0;
	for (size_t k = 0; k < h.nf; k++)
		for (const char *const *n = seal_headers; *n != NULL; n++)
			if (field_is(&h.f[k], *n)) {
				if (hlist.len > 0) {
					str_append(&hlist, col > 60 ?
					    ":\n\t  " : ":");
					if (col > 60)
						col = 0;
				}
				str_append(&hlist, *n);
				col += strlen(*n) + 1;
			}
	if (hlist.len == 0)
		str_append(&hlist, "from");	/* none: From, absent */
	base64_encode(&b64, bh[1].digest, bh[1].dlen);
	str_printf(&ams, "ARC-Message-Signature: i=%u; a=rsa-sha256; "
	    "c=relaxed/relaxed;\n\td=%s; s=%s; t=%lld;\n\th=%s;\n\tbh=%s;\n\tb=",
	    i, domain, selector, (long long)now, str_c(&hlist), str_c(&b64));
	{
		struct tag ht;

		ht.name = "h";
		ht.nlen = 1;
		ht.value = hlist.data;
		ht.vlen = hlist.len;
		canon_selected(&data, true, &h, &ht);
	}
	canon_header(&data, true, ams.data, ams.len, false);
	str_truncate(&b64, 0);
	if (sign(pk, &data, &b64) < 0) {
		err_fail(error_r, ERR_OTHER, "ARC: signing failed");
		goto out;
	}
	append_folded(&ams, &b64);
	/* ARC-Seal over the sets 1..i (only ours after a failed chain) */
	str_printf(&as, "ARC-Seal: i=%u; a=rsa-sha256; t=%lld; cv=%s;\n\t"
	    "d=%s; s=%s;\n\tb=", i, (long long)now, cv, domain, selector);
	str_truncate(&data, 0);
	if (strcmp(cv, "pass") == 0)
		for (unsigned k = 1; k < i; k++)
			for (int t = 0; t < 3; t++)
				canon_header(&data, true, c.s[k].f[t]->p,
				    c.s[k].f[t]->len, true);
	canon_header(&data, true, aar.data, aar.len, true);
	canon_header(&data, true, ams.data, ams.len, true);
	canon_header(&data, true, as.data, as.len, false);
	str_truncate(&b64, 0);
	if (sign(pk, &data, &b64) < 0) {
		err_fail(error_r, ERR_OTHER, "ARC: signing failed");
		goto out;
	}
	append_folded(&as, &b64);
	str_printf(out, "%s\n%s\n%s\n", str_c(&as), str_c(&ams), str_c(&aar));
	ret = 1;
out:
	EVP_PKEY_free(pk);
	BIO_free(bio);
	free(c.s);
	head_free(&h);
	str_free(&aar);
	str_free(&ams);
	str_free(&as);
	str_free(&data);
	str_free(&b64);
	str_free(&hlist);
	return ret;
}
