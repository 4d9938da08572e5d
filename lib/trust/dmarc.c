/*
 * dmarc.c: DMARC (RFC 7489) for one message.
 *
 *   1. the RFC5322.From domain (6.6.1): exactly one From field holding
 *      one address with a domain, else permerror and no policy;
 *   2. policy discovery (6.6.3): the TXT records of _dmarc.FROM through
 *      dnsq, else those of _dmarc.ORG (the organizational domain, 3.2,
 *      from the Public Suffix List through libpsl); only records that
 *      start with v=DMARC1 count; several of them is a permerror, a
 *      lookup without an answer a temperror;
 *   3. identifier alignment (3.1): the SPF identity (the MAIL FROM
 *      domain, or the HELO name for <>) when SPF passed, and the d= of
 *      each passing DKIM signature, strict (the same name) or relaxed
 *      (the same organizational domain) as adkim=/aspf= say;
 *   4. the policy (6.6.4): libopendmarc parses the record (a record it
 *      refuses is a permerror) and says pass, or which of p= / sp=
 *      applies; pct= then picks the messages it applies to.
 *
 * libopendmarc is given the record (opendmarc_policy_store_dmarc) and
 * only the aligned passes, named by the From domain itself: its own
 * relaxed check reads the suffix list without its wildcard rules and
 * would align names under a wildcard suffix; libpsl's reading is used
 * instead. Nothing here lets libopendmarc query DNS.
 *
 * Trust: the header and the records are the sender's. The From value is
 * walked with bounds (comments, quoted strings, angle brackets, groups);
 * a domain is kept only when it is plain ASCII letters, digits, '-', '_'
 * and dots, at most 253 octets. Records are cut at 4 KiB.
 */
#include <ctype.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound.h>

#include <opendmarc/dmarc.h>

#include "lib/base/alloc.h"
#include "lib/trust/authres.h"
#include "lib/trust/dkim_verify.h"
#include "lib/trust/dmarc.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/rdata.h"
#include "lib/trust/tags.h"

#define TXT_MAX 4096	/* joined strings of one TXT record */
#define TXT_RECORDS_MAX 16	/* TXT records of a name looked at */
#define ADDR_MAX 512	/* one address as read from the From field */

static psl_ctx_t *psl;	/* loaded once, read-only after */

int
dmarc_setup(const char *psl_file, char **error_r)
{
	if (psl != NULL)
		return 0;
	psl = psl_load_file(psl_file);
	if (psl == NULL) {
		*error_r = xasprintf("cannot read the Public Suffix List %s "
		    "(Debian package publicsuffix)", psl_file);
		return -1;
	}
	return 0;
}

/* ---- the From domain ---- */

struct addr_buf {
	char text[ADDR_MAX];
	size_t len;
	size_t at;		/* 1 + the index of the last '@' outside
				 * quotes; 0: none */
	bool space;		/* white space since the last octet */
	bool over;		/* too long, or words without an address's
				 * '@' or '.' between them */
};

static void
addr_put(struct addr_buf *b, char c, bool quoted)
{
	if (b->len + 1 >= sizeof(b->text)) {
		b->over = true;
		return;
	}
	/* "a @ b . c" is an address with white space (RFC 5322 obs-
	 * syntax); "a@b c" is not one */
	if (b->space && b->len > 0 && c != '.' && c != '@' &&
	    b->text[b->len - 1] != '.' && b->text[b->len - 1] != '@')
		b->over = true;
	b->space = false;
	if (c == '@' && !quoted)
		b->at = b->len + 1;
	b->text[b->len++] = c;
}

/* The domain of address b in dom, lower case: 0, or -1 when there is
 * none or it is not a plain domain name. */
static int
addr_domain(const struct addr_buf *b, char *dom, size_t domlen)
{
	const char *d;
	size_t n, label = 0;

	if (b->over || b->at == 0)
		return -1;
	d = b->text + b->at;
	n = b->len - b->at;
	while (n > 0 && d[n - 1] == '.')
		n--;	/* an absolute name */
	if (n == 0 || n > 253 || n + 1 > domlen)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
		} else {
			return -1;
		}
		dom[i] = (char)tolower(c);
	}
	dom[n] = '\0';
	return 0;
}

/* One From value: its mailboxes counted, the first one's address in
 * *first. Comments and white space outside quotes are dropped; a group's
 * display name (before its ':') is not an address. */
static size_t
from_addresses(const char *v, size_t len, struct addr_buf *first)
{
	struct addr_buf plain, angle;
	bool in_angle = false, has_angle = false;
	size_t count = 0;

	memset(&plain, 0, sizeof(plain));
	memset(&angle, 0, sizeof(angle));
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? v[i] : ',';

		if (c == '(') {
			int depth = 1;

			for (i++; i < len && depth > 0; i++) {
				if (v[i] == '\\')
					i++;
				else if (v[i] == '(')
					depth++;
				else if (v[i] == ')')
					depth--;
			}
			i--;
			/* a comment is white space (CFWS) */
			(in_angle ? &angle : &plain)->space = true;
			continue;
		}
		if (c == '"') {
			struct addr_buf *b = in_angle ? &angle : &plain;

			addr_put(b, c, true);
			for (i++; i < len && v[i] != '"'; i++) {
				if (v[i] == '\\' && i + 1 < len)
					addr_put(b, v[i++], true);
				addr_put(b, v[i], true);
			}
			addr_put(b, '"', true);
			continue;
		}
		if (c == '<' && !in_angle) {
			in_angle = has_angle = true;
			memset(&angle, 0, sizeof(angle));
			continue;
		}
		if (c == '>' && in_angle) {
			in_angle = false;
			continue;
		}
		if (!in_angle && (c == ',' || c == ';' || c == ':')) {
			/* the end of a mailbox (a group's ':' ends its
			 * display name, which is no address) */
			struct addr_buf *b = has_angle ? &angle : &plain;

			if (c != ':' && b->len > 0) {
				if (count == 0)
					*first = *b;
				count++;
			}
			memset(&plain, 0, sizeof(plain));
			memset(&angle, 0, sizeof(angle));
			has_angle = false;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			(in_angle ? &angle : &plain)->space = true;
			continue;
		}
		addr_put(in_angle ? &angle : &plain, c, false);
	}
	return count;
}

enum dmarc_from
dmarc_from_domain(const char *header, size_t len, char *dom, size_t domlen)
{
	const char *p = header, *end = header + len;
	const char *val = NULL;
	size_t vlen = 0, nfrom = 0;
	struct addr_buf first;

	dom[0] = '\0';
	while (p < end) {
		const char *f = p, *q, *colon;

		if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
			break;	/* the empty line: the end of the header */
		/* the field: this line and its continuation lines */
		q = header_field_end(f, end);
		colon = memchr(f, ':', (size_t)(q - f));
		if (colon != NULL) {
			const char *ne = colon;

			while (ne > f && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			if (ne - f == 4 && strncasecmp(f, "From", 4) == 0) {
				if (nfrom++ == 0) {
					val = colon + 1;
					vlen = (size_t)(q - val);
				}
			}
		}
		p = q;
	}
	if (nfrom == 0)
		return DMARC_FROM_ABSENT;
	if (nfrom > 1)
		return DMARC_FROM_MULTIPLE;
	memset(&first, 0, sizeof(first));
	if (from_addresses(val, vlen, &first) != 1)
		return DMARC_FROM_ADDRESSES;
	if (addr_domain(&first, dom, domlen) < 0) {
		dom[0] = '\0';
		return DMARC_FROM_BAD;
	}
	return DMARC_FROM_OK;
}

/* ---- records, pct, alignment ---- */

size_t
dmarc_record_pick(const char *const *txt, size_t n, size_t *pick)
{
	size_t count = 0;

	*pick = 0;
	for (size_t i = 0; i < n; i++) {
		const char *t = txt[i];

		/* "v" *WSP "=" *WSP "DMARC1" then the end, white space or
		 * ';' (RFC 7489 6.4: v= first, its value exactly DMARC1) */
		if (t[0] != 'v')
			continue;
		t++;
		t += strspn(t, " \t");
		if (*t != '=')
			continue;
		t++;
		t += strspn(t, " \t");
		if (strncmp(t, "DMARC1", 6) != 0 ||
		    (t[6] != '\0' && t[6] != ';' && t[6] != ' ' &&
		    t[6] != '\t'))
			continue;
		if (count++ == 0)
			*pick = i;
	}
	return count;
}

enum dmarc_disposition
dmarc_apply_pct(enum dmarc_disposition d, int pct, int roll)
{
	if (pct < 0 || pct > 100)
		pct = 100;
	if (roll < pct)
		return d;
	return d == DMARC_D_REJECT ? DMARC_D_QUARANTINE : DMARC_D_NONE;
}

void
dmarc_org_domain(const char *dom, char *out, size_t outlen)
{
	char low[256];
	const char *org = NULL;
	size_t n = strlen(dom);

	if (n >= sizeof(low) || outlen == 0) {
		if (outlen > 0)
			out[0] = '\0';
		return;
	}
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)tolower((unsigned char)dom[i]);
	while (n > 0 && low[n - 1] == '.')
		low[--n] = '\0';
	if (psl != NULL)
		org = psl_registrable_domain(psl, low);
	if (org == NULL)
		org = low;
	if (strlen(org) + 1 > outlen) {
		out[0] = '\0';
		return;
	}
	memcpy(out, org, strlen(org) + 1);
}

bool
dmarc_aligned(const char *from, const char *id, bool strict)
{
	char a[256], b[256];

	if (from == NULL || id == NULL || from[0] == '\0' || id[0] == '\0')
		return false;
	if (strcasecmp(from, id) == 0)
		return true;
	if (strict)
		return false;
	dmarc_org_domain(from, a, sizeof(a));
	dmarc_org_domain(id, b, sizeof(b));
	return a[0] != '\0' && strcasecmp(a, b) == 0;
}

/* ---- the check ---- */

int
dmarc_fetch_record(const char *name, char **rec)
{
	struct ub_result *res = NULL;
	enum dnsq_status st = dnsq_lookup(name, 16 /* TXT */, &res);
	char *txt[TXT_RECORDS_MAX];
	size_t n = 0, pick, count;
	int ret;

	*rec = NULL;
	if (st == DNSQ_TEMPFAIL)
		return -1;
	if (st != DNSQ_OK)
		return 0;
	for (int i = 0; res->data[i] != NULL && n < TXT_RECORDS_MAX; i++) {
		size_t tlen;
		int trunc;

		txt[n] = rdata_txt_join(res->data[i], (size_t)res->len[i],
		    TXT_MAX, &tlen, &trunc);
		if (strlen(txt[n]) != tlen) {
			/* a NUL inside: not a record of ours */
			free(txt[n]);
			continue;
		}
		n++;
	}
	ub_resolve_free(res);
	count = dmarc_record_pick((const char *const *)txt, n, &pick);
	ret = count == 0 ? 0 : count > 1 ? -2 : 1;
	for (size_t i = 0; i < n; i++) {
		if (ret == 1 && i == pick)
			*rec = txt[i];
		else
			free(txt[i]);
	}
	return ret;
}

/* The DMARC record at _dmarc.dom, as dmarc_fetch_record. */
static int
fetch_record(const char *dom, char **rec)
{
	char *name = xasprintf("_dmarc.%s", dom);
	int r = dmarc_fetch_record(name, rec);

	free(name);
	return r;
}

/* The record's tag (rua=, ruf=, fo=: RFC 7489 6.3), white space
 * removed, in out ("" when absent or too long, or when the record is no
 * tag list libopendmarc would also read). */
static void
record_tag(const char *record, const char *tag, char *out, size_t outlen)
{
	struct tag_list tl;
	const struct tag *t;
	size_t n = 0;

	out[0] = '\0';
	if (tags_parse(record, strlen(record), &tl) < 0 ||
	    (t = tags_get(&tl, tag)) == NULL)
		return;
	for (size_t i = 0; i < t->vlen; i++) {
		char c = t->value[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (n + 1 >= outlen) {
			out[0] = '\0';	/* cut, it would name other places */
			return;
		}
		out[n++] = c;
	}
	out[n] = '\0';
}

static enum dmarc_disposition
disposition_of(OPENDMARC_STATUS_T st)
{
	return st == DMARC_POLICY_REJECT ? DMARC_D_REJECT :
	    st == DMARC_POLICY_QUARANTINE ? DMARC_D_QUARANTINE : DMARC_D_NONE;
}

/* Apply record (found at org's name when org is not NULL). */
static void
evaluate(const char *record, const char *org, const struct dmarc_input *in,
    struct dmarc_verdict *v)
{
	DMARC_POLICY_T *pctx;
	OPENDMARC_STATUS_T st;
	int adkim = 0, aspf = 0, p = 0, sp = 0, pct = 100;
	bool spf_pass, dkim_pass = false;

	pctx = opendmarc_policy_connect_init((u_char *)in->ip,
	    strchr(in->ip, ':') != NULL);
	if (pctx == NULL) {
		v->result = DMARC_R_TEMPERROR;
		v->reason = "evaluation failed";
		return;
	}
	st = opendmarc_policy_store_dmarc(pctx, (u_char *)record,
	    (u_char *)v->from, (u_char *)org);
	if (st != DMARC_PARSE_OKAY) {
		v->result = DMARC_R_PERMERROR;
		v->reason = "record not usable";
		goto out;
	}
	(void)opendmarc_policy_fetch_adkim(pctx, &adkim);
	(void)opendmarc_policy_fetch_aspf(pctx, &aspf);
	(void)opendmarc_policy_fetch_p(pctx, &p);
	(void)opendmarc_policy_fetch_sp(pctx, &sp);
	(void)opendmarc_policy_fetch_pct(pctx, &pct);
	snprintf(v->pub.domain, sizeof(v->pub.domain), "%s", org != NULL ?
	    org : v->from);
	v->pub.p = (char)p;
	v->pub.sp = (char)sp;
	v->pub.adkim = adkim == 's' ? 's' : 'r';
	v->pub.aspf = aspf == 's' ? 's' : 'r';
	v->pub.pct = pct < 0 || pct > 100 ? 100 : pct;
	record_tag(record, "rua", v->pub.rua, sizeof(v->pub.rua));
	record_tag(record, "ruf", v->pub.ruf, sizeof(v->pub.ruf));
	record_tag(record, "fo", v->pub.fo, sizeof(v->pub.fo));
	/* only aligned passes reach libopendmarc, named by the From domain
	 * (an exact match for it, whatever the mode) */
	spf_pass = in->spf != NULL && strcmp(in->spf, "pass") == 0 &&
	    dmarc_aligned(v->from, in->spf_domain, aspf == 's');
	if (spf_pass)
		(void)opendmarc_policy_store_spf(pctx, (u_char *)v->from,
		    DMARC_POLICY_SPF_OUTCOME_PASS, in->spf_helo ?
		    DMARC_POLICY_SPF_ORIGIN_HELO :
		    DMARC_POLICY_SPF_ORIGIN_MAILFROM, NULL);
	for (size_t i = 0; i < in->ndkim && !dkim_pass; i++) {
		const struct dkim_verdict *d = &in->dkim[i];

		if (strcmp(d->result, "pass") == 0 &&
		    dmarc_aligned(v->from, d->domain, adkim == 's')) {
			dkim_pass = true;
			(void)opendmarc_policy_store_dkim(pctx,
			    (u_char *)v->from, (u_char *)d->selector,
			    DMARC_POLICY_DKIM_OUTCOME_PASS, NULL);
		}
	}
	v->spf_aligned = spf_pass;
	v->dkim_aligned = dkim_pass;
	st = opendmarc_get_policy_to_enforce(pctx);
	v->subdomain_policy = org != NULL && sp != DMARC_RECORD_P_UNSPECIFIED;
	v->policy = (char)(v->subdomain_policy ? sp : p);
	switch (st) {
	case DMARC_POLICY_PASS:
		v->result = DMARC_R_PASS;
		break;
	case DMARC_POLICY_REJECT:
	case DMARC_POLICY_QUARANTINE:
	case DMARC_POLICY_NONE:
		v->result = DMARC_R_FAIL;
		v->disposition = dmarc_apply_pct(disposition_of(st), pct,
		    (int)arc4random_uniform(100));
		break;
	default:
		v->result = DMARC_R_PERMERROR;
		v->reason = "record not usable";
		v->policy = 0;
		v->pub.domain[0] = '\0';
		break;
	}
out:
	opendmarc_policy_connect_shutdown(pctx);
}

void
dmarc_check(const char *header, size_t len, const struct dmarc_input *in,
    struct dmarc_verdict *v)
{
	char org[256], *rec = NULL;
	const char *used_org = NULL;
	int r;

	memset(v, 0, sizeof(*v));
	switch (dmarc_from_domain(header, len, v->from, sizeof(v->from))) {
	case DMARC_FROM_OK:
		break;
	case DMARC_FROM_ABSENT:
		v->result = DMARC_R_PERMERROR;
		v->reason = "no From field";
		return;
	case DMARC_FROM_MULTIPLE:
		v->result = DMARC_R_PERMERROR;
		v->reason = "several From fields";
		return;
	case DMARC_FROM_ADDRESSES:
		v->result = DMARC_R_PERMERROR;
		v->reason = "not one From address";
		return;
	default:
		v->result = DMARC_R_PERMERROR;
		v->reason = "no usable From domain";
		return;
	}
	r = fetch_record(v->from, &rec);
	if (r == 0) {
		dmarc_org_domain(v->from, org, sizeof(org));
		if (org[0] != '\0' && strcmp(org, v->from) != 0) {
			r = fetch_record(org, &rec);
			used_org = org;
		}
	}
	if (r == -1) {
		v->result = DMARC_R_TEMPERROR;
		v->reason = "record lookup failed";
	} else if (r == -2) {
		v->result = DMARC_R_PERMERROR;
		v->reason = "several DMARC records";
	} else if (r == 0) {
		v->result = DMARC_R_NONE;
	} else {
		evaluate(rec, used_org, in, v);
	}
	free(rec);
}

const char *
dmarc_result_name(enum dmarc_result r)
{
	switch (r) {
	case DMARC_R_PASS:
		return "pass";
	case DMARC_R_FAIL:
		return "fail";
	case DMARC_R_TEMPERROR:
		return "temperror";
	case DMARC_R_PERMERROR:
		return "permerror";
	default:
		return "none";
	}
}

const char *
dmarc_policy_name(char p)
{
	return p == 'r' ? "reject" : p == 'q' ? "quarantine" : "none";
}

const char *
dmarc_disposition_name(enum dmarc_disposition d)
{
	return d == DMARC_D_REJECT ? "reject" : d == DMARC_D_QUARANTINE ?
	    "quarantine" : "none";
}
