/*
 * dkim_verify.c: every DKIM-Signature of a message checked with
 * libopendkim. The message is fed as received (libopendkim turns its LF
 * line ends into CRLF); the keys come from our key lookup callback
 * (selector._domainkey.domain TXT through dnsq) rather than libopendkim's
 * own resolver. A lookup that fails (as opposed to finding nothing) is
 * remembered per signature so that its verdict is temperror, not
 * permerror.
 *
 * Trust: the signatures and the keys are the sender's: tags are copied
 * into the verdict only as sanitized, bounded tokens; at most
 * DKIM_VERIFY_MAX_SIGS signatures cost a lookup and a check.
 */
#include <opendkim/dkim.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "lib/base/alloc.h"
#include "lib/queue/spool.h"
#include "lib/trust/dkim_verify.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/rdata.h"

struct verify_ctx {
	DKIM_SIGINFO *tempfail[DKIM_VERIFY_MAX_SIGS];
	size_t ntempfail;
};

static DKIM_CBSTAT
key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	struct verify_ctx *vc = dkim_get_user_context(dkim);
	const char *sel = (const char *)dkim_sig_getselector(sig);
	const char *dom = (const char *)dkim_sig_getdomain(sig);
	struct ub_result *res = NULL;
	enum dnsq_status st;
	char *name, *txt;
	size_t tlen;
	int trunc;

	if (sel == NULL || dom == NULL || buflen == 0 ||
	    strlen(sel) + strlen(dom) > 240)
		return DKIM_CBSTAT_NOTFOUND;
	name = xasprintf("%s._domainkey.%s", sel, dom);
	st = dnsq_lookup(name, 16 /* TXT */, &res);
	free(name);
	if (st == DNSQ_TEMPFAIL) {
		if (vc != NULL && vc->ntempfail < DKIM_VERIFY_MAX_SIGS)
			vc->tempfail[vc->ntempfail++] = sig;
		return DKIM_CBSTAT_NOTFOUND;
	}
	if (st != DNSQ_OK)
		return DKIM_CBSTAT_NOTFOUND;
	/* the first record (RFC 6376 3.6.2.2: more is undefined) */
	txt = rdata_txt_join(res->data[0], (size_t)res->len[0], buflen - 1,
	    &tlen, &trunc);
	ub_resolve_free(res);
	memcpy(buf, txt, tlen);
	buf[tlen] = '\0';
	free(txt);
	return DKIM_CBSTAT_CONTINUE;
}

/* Signatures past the first DKIM_VERIFY_MAX_SIGS are not evaluated. */
static DKIM_CBSTAT
prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	for (int i = DKIM_VERIFY_MAX_SIGS; i < nsigs; i++)
		dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

static int
feed_chunk(void *ctx, const void *data, size_t len)
{
	DKIM_STAT st = dkim_chunk(ctx, (u_char *)data, len);

	return st == DKIM_STAT_OK ? 0 : -1;
}

/* A tag value fit for a header field token: printable ASCII without
 * white space, quotes, parentheses or ';', at most 255 octets; NULL
 * when empty or with anything else. */
static char *
token(const unsigned char *v)
{
	size_t n;

	if (v == NULL || v[0] == '\0')
		return NULL;
	n = strlen((const char *)v);
	if (n > 255)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (v[i] <= 32 || v[i] >= 127 || strchr("\"();\\", v[i]))
			return NULL;
	return xstrdup((const char *)v);
}

static void
judge(DKIM_SIGINFO *sig, const struct verify_ctx *vc, struct dkim_verdict *v)
{
	unsigned flags = dkim_sig_getflags(sig);
	int bh = dkim_sig_getbh(sig);
	DKIM_SIGERROR e = dkim_sig_geterror(sig);
	bool tempfail = false;

	for (size_t i = 0; i < vc->ntempfail; i++)
		if (vc->tempfail[i] == sig)
			tempfail = true;
	v->domain = token(dkim_sig_getdomain(sig));
	v->identity = token(dkim_sig_gettagvalue(sig, 0, (u_char *)"i"));
	v->selector = token(dkim_sig_getselector(sig));
	if ((flags & DKIM_SIGFLAG_IGNORE) != 0) {
		v->result = "policy";
		v->reason = "not evaluated";
	} else if ((flags & DKIM_SIGFLAG_PASSED) != 0 &&
	    bh == DKIM_SIGBH_MATCH) {
		v->result = "pass";
		v->reason = NULL;
	} else if (tempfail) {
		v->result = "temperror";
		v->reason = "key lookup failed";
	} else if (e == DKIM_SIGERROR_NOKEY) {
		v->result = "permerror";
		v->reason = "no key";
	} else if (e == DKIM_SIGERROR_KEYFAIL) {
		v->result = "temperror";
		v->reason = "key lookup failed";
	} else if (bh == DKIM_SIGBH_MISMATCH) {
		v->result = "fail";
		v->reason = "body hash mismatch";
	} else if (e == DKIM_SIGERROR_BADSIG ||
	    ((flags & DKIM_SIGFLAG_PROCESSED) != 0 && e == DKIM_SIGERROR_OK)) {
		v->result = "fail";
		v->reason = "signature verification failed";
	} else if (e == DKIM_SIGERROR_EXPIRED) {
		v->result = "fail";
		v->reason = "signature expired";
	} else if (e == DKIM_SIGERROR_DNSSYNTAX ||
	    e == DKIM_SIGERROR_MULTIREPLY) {
		v->result = "permerror";
		v->reason = "key record unusable";
	} else {
		/* RFC 8601 2.7.1: a signature with syntax errors */
		v->result = "neutral";
		v->reason = "signature not usable";
	}
}

/* The message has signatures libopendkim could not take apart: one
 * verdict, neutral (RFC 8601 2.7.1: syntax errors); none without any
 * DKIM-Signature field. 0. */
static int
unusable(struct spool *msg, struct dkim_verdict **v, size_t *n)
{
	if (!spool_header_has(msg, "DKIM-Signature"))
		return 0;
	*v = xcalloc(1, sizeof(**v));
	(*v)[0].result = "neutral";
	(*v)[0].reason = "signature not usable";
	*n = 1;
	return 0;
}

int
dkim_verify_message(struct spool *msg, struct dkim_verdict **v, size_t *n)
{
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	DKIM *dkim = NULL;
	DKIM_SIGINFO **sigs = NULL;
	DKIM_STAT st;
	struct verify_ctx vc = { .ntempfail = 0 };
	unsigned int flags = DKIM_LIBFLAGS_FIXCRLF;
	int nsigs = 0, ret = -1;

	*v = NULL;
	*n = 0;
	if (lib == NULL)
		return -1;
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags,
	    sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_set_key_lookup(lib, key_lookup) != DKIM_STAT_OK ||
	    dkim_set_prescreen(lib, prescreen) != DKIM_STAT_OK)
		goto out;
	dkim = dkim_verify(lib, (const u_char *)"petrel", NULL, &st);
	if (dkim == NULL)
		goto out;
	dkim_set_user_context(dkim, &vc);
	if (spool_each(msg, feed_chunk, dkim) < 0 ||
	    dkim_chunk(dkim, NULL, 0) != DKIM_STAT_OK) {
		/* a header libopendkim refuses (a signature it cannot
		 * parse, too long, too many fields) */
		ret = unusable(msg, v, n);
		goto out;
	}
	st = dkim_eom(dkim, NULL);
	if (st == DKIM_STAT_NOSIG) {
		ret = 0;
		goto out;
	}
	if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK ||
	    nsigs <= 0) {
		ret = unusable(msg, v, n);
		goto out;
	}
	*v = xcalloc((size_t)nsigs, sizeof(**v));
	for (int i = 0; i < nsigs; i++)
		judge(sigs[i], &vc, &(*v)[i]);
	*n = (size_t)nsigs;
	ret = 0;
out:
	if (dkim != NULL)
		dkim_free(dkim);
	if (lib != NULL)
		dkim_close(lib);
	return ret;
}

void
dkim_verdicts_free(struct dkim_verdict *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].domain);
		free(v[i].identity);
		free(v[i].selector);
	}
	free(v);
}
