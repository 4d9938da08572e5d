/*
 * fuzz_trust_fields.c: what the trust checks take from the sender's side
 * (lib/trust/rdata.c, lib/trust/authres.c, lib/trust/dmarc.c): TXT rdata
 * and names in DNS answers, Authentication-Results fields and the From
 * field found in a message, and the client's and signer's values written
 * into petrel's own field. The first octet chooses the part, the rest is
 * the input.
 * Checks:
 *  - TXT: the joined text is exactly the strings' octets in order (a
 *    string cut by the end of the rdata gives what there is), at most
 *    max octets, truncation said when and only when octets were left;
 *  - names: an accepted name re-encodes to the same labels (with
 *    unprintable octets and dots as '?'), fits the buffer, and nothing
 *    follows the root label that was read;
 *  - the same bytes as the rdata of an MX, SRV, CNAME, TLSA or TXT answer
 *    made text for `petrel dns check` (lib/dnsrec/check.c, the type from
 *    the first octet's upper bits): printable ASCII only; TXT unescaped
 *    gives back exactly the strings' octets; a name ends with its dot;
 *  - claims: a field said to claim the authserv-id contains it;
 *  - From (the same input as a header section): a domain found is a
 *    plain lower-case name of at most 253 octets whose labels the input
 *    contains;
 *  - our field: one line per clause, every line after the first begins
 *    with a tab, nothing but the clauses' own ';', no CR, no empty line,
 *    whatever the values;
 *  - ARC (first octet's high bit; lib/trust/arc.c, tags.c, canon.c): the
 *    input as a header section gives a verdict (no set, well-formed sets,
 *    or fail with a printable reason), at most ARC_MAX_SETS sets; as a tag
 *    list every span lies inside it, names begin with a letter, values
 *    have no white space at their ends; as a body its canonical forms
 *    have CRLF line ends only, no empty line at the end, and (relaxed) no
 *    tab, no two spaces, no space before a line end; as a header field
 *    its relaxed form is one line with a lower-case name.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/str.h"
#include "lib/dnsrec/dnsrec.h"
#include "lib/trust/arc.h"
#include "lib/trust/authres.h"
#include "lib/trust/canon.h"
#include "lib/trust/dkim_verify.h"
#include "lib/trust/dmarc.h"
#include "lib/trust/rdata.h"
#include "lib/trust/tags.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_txt(const unsigned char *p, size_t len, size_t max)
{
	size_t out_len, i = 0, o = 0;
	int trunc;
	char *t = rdata_txt_join((const char *)p, len, max, &out_len, &trunc);
	size_t total = 0;

	if (out_len > max || t[out_len] != '\0')
		abort();
	while (i < len) {
		size_t n = p[i++];

		if (n > len - i)
			n = len - i;
		for (size_t k = 0; k < n && o < out_len; k++, o++)
			if ((unsigned char)t[o] != p[i + k])
				abort();
		total += n;
		i += n;
	}
	if (o != out_len || (trunc != 0) != (total > max))
		abort();
	free(t);
}

static void
check_name(const unsigned char *p, size_t len)
{
	char out[256];
	size_t i = 0;
	const char *s = out;

	if (rdata_name_text(p, len, out, sizeof(out)) < 0)
		return;
	if (strlen(out) >= sizeof(out))
		abort();
	if (strcmp(out, ".") == 0) {
		if (len < 1 || p[0] != 0)
			abort();
		return;
	}
	while (*s != '\0') {
		size_t l = strcspn(s, ".");

		if (l == 0 || l > 63 || i >= len || p[i] != l)
			abort();
		for (size_t k = 0; k < l; k++) {
			unsigned char c = p[i + 1 + k];
			char want = c > 32 && c < 127 && c != '.' ? (char)c : '?';

			if (s[k] != want)
				abort();
		}
		i += 1 + l;
		s += l;
		if (*s == '.')
			s++;
	}
	if (i >= len || p[i] != 0)
		abort();
}

static void
check_from(const unsigned char *p, size_t len)
{
	char dom[256];
	size_t n;
	int found;

	if (dmarc_from_domain((const char *)p, len, dom, sizeof(dom)) !=
	    DMARC_FROM_OK)
		return;
	n = strlen(dom);
	if (n == 0 || n > 253)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)dom[i]) ||
		    isdigit((unsigned char)dom[i]) || strchr("-_.", dom[i])))
			abort();
	/* each label is in the input (white space may sit around dots) */
	for (const char *l = dom; *l != '\0';) {
		size_t ln = strcspn(l, ".");

		found = 0;
		for (size_t i = 0; i + ln <= len && !found; i++)
			found = strncasecmp((const char *)p + i, l, ln) == 0;
		if (!found)
			abort();
		l += ln;
		if (*l == '.')
			l++;
	}
}

static void
check_wire(unsigned sel, const unsigned char *p, size_t len)
{
	static const char *const types[] = { "MX", "SRV", "CNAME", "TLSA",
	    "TXT" };
	const char *type = types[sel % 5];
	char *v = dnsrec_wire_value(type, p, len);
	size_t n;

	if (v == NULL)
		return;
	n = strlen(v);
	for (size_t i = 0; i < n; i++)
		if (v[i] < 32 || v[i] > 126)
			abort();
	if (strcmp(type, "TXT") == 0) {
		/* unescape and compare with the strings' octets */
		size_t i = 0, o = 0;

		while (i < len) {
			size_t k = p[i++];

			if (k > len - i)
				abort();	/* should have been refused */
			for (size_t j = 0; j < k; j++) {
				unsigned c;

				if (o >= n)
					abort();
				if (v[o] == '"')
					abort();	/* a bare quote */
				if (v[o] != '\\') {
					c = (unsigned char)v[o++];
				} else if (o + 1 < n && (v[o + 1] == '"' ||
				    v[o + 1] == '\\')) {
					c = (unsigned char)v[o + 1];
					o += 2;
				} else if (o + 3 < n && isdigit(
				    (unsigned char)v[o + 1])) {
					c = (unsigned)(v[o + 1] - '0') * 100 +
					    (unsigned)(v[o + 2] - '0') * 10 +
					    (unsigned)(v[o + 3] - '0');
					o += 4;
				} else {
					abort();
				}
				if (c != p[i + j])
					abort();
			}
			i += k;
		}
		if (o != n)
			abort();
	} else if (strcmp(type, "TLSA") != 0) {
		if (n == 0 || v[n - 1] != '.')
			abort();
		for (size_t i = 0; i < n; i++)
			if (v[i] >= 'A' && v[i] <= 'Z')
				abort();
	}
	free(v);
}

static void
check_claims(const unsigned char *p, size_t len)
{
	const char *id = "mx.example.org";

	check_from(p, len);

	if (authres_claims((const char *)p, len, id)) {
		size_t n = strlen(id);
		int found = 0;

		for (size_t i = 0; i + n <= len && !found; i++)
			found = strncasecmp((const char *)p + i, id, n) == 0;
		if (!found)
			abort();
	}
}

/* Up to five NUL-separated values: mailfrom, helo, d=, i=, s=. */
static void
check_format(const unsigned char *p, size_t len)
{
	char *buf = malloc(len + 1), *v[5] = { "", "", "", "", "" };
	struct dkim_verdict dv[2];
	struct dmarc_verdict dm;
	struct authres ar;
	str_t out = STR_INIT;
	size_t nv = 0, semis = 0, lines = 0;

	memcpy(buf, p, len);
	buf[len] = '\0';
	for (char *q = buf; nv < 5 && q <= buf + len; q += strlen(q) + 1)
		v[nv++] = q;
	memset(dv, 0, sizeof(dv));
	memset(&ar, 0, sizeof(ar));
	dv[0].result = "pass";
	dv[0].domain = v[2];
	dv[0].identity = v[3];
	dv[0].selector = v[4];
	dv[1].result = "fail";
	dv[1].reason = "body hash mismatch";
	dv[1].domain = v[3];
	ar.authserv_id = "mx.example.org";
	ar.spf = "pass";
	ar.mailfrom = v[0];
	ar.helo = v[1];
	ar.spf_helo = len > 0 && (p[0] & 1);
	ar.dkim_checked = true;
	ar.dkim = dv;
	ar.ndkim = 2;
	memset(&dm, 0, sizeof(dm));
	dm.result = DMARC_R_FAIL;
	dm.policy = 'r';
	dm.disposition = DMARC_D_REJECT;
	snprintf(dm.from, sizeof(dm.from), "%s", v[1]);
	ar.dmarc = &dm;
	authres_format(&out, &ar);
	if (out.len == 0 || out.data[out.len - 1] != '\n' ||
	    strncmp(out.data, "Authentication-Results: mx.example.org;\n",
	    40) != 0)
		abort();
	for (size_t i = 0; i < out.len; i++) {
		if (out.data[i] == '\r' || out.data[i] == '\0')
			abort();
		if (out.data[i] == ';')
			semis++;
		if (out.data[i] == '\n') {
			lines++;
			if (i + 1 < out.len && out.data[i + 1] != '\t')
				abort();
		}
	}
	if (semis != 4 || lines != 5)
		abort();
	str_free(&out);
	free(buf);
}

static bool
fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void
collect(void *ctx, const char *data, size_t len)
{
	str_append_n(ctx, data, len);
}

static void
check_arc(const unsigned char *up, size_t len)
{
	const char *p = (const char *)up;
	struct arc_verdict v;
	struct tag_list tl;
	str_t out = STR_INIT;
	int r = arc_structure(p, len, &v);

	if (v.n > ARC_MAX_SETS || strlen(v.reason) >= sizeof(v.reason))
		abort();
	if (r == 0 && v.result != ARC_R_NONE)
		abort();
	if (r < 0 && (v.result != ARC_R_FAIL || v.reason[0] == '\0'))
		abort();
	for (const char *c = v.reason; *c != '\0'; c++)
		if (*c < 32 || *c > 126)
			abort();
	if (tags_parse(p, len, &tl) == 0) {
		if (tl.n > TAGS_MAX)
			abort();
		for (size_t i = 0; i < tl.n; i++) {
			const struct tag *t = &tl.t[i];

			if (t->name < p || t->name + t->nlen > p + len ||
			    t->value < p || t->value + t->vlen > p + len ||
			    t->nlen == 0 || !isalpha((unsigned char)t->name[0]))
				abort();
			if (t->vlen > 0 && (fws(t->value[0]) ||
			    fws(t->value[t->vlen - 1])))
				abort();
		}
	}
	for (int relaxed = 0; relaxed < 2; relaxed++) {
		struct canon_body cb;

		str_truncate(&out, 0);
		canon_body_init(&cb, relaxed, collect, &out);
		canon_body_feed(&cb, p, len / 2);
		canon_body_feed(&cb, p + len / 2, len - len / 2);
		canon_body_end(&cb);
		if (!relaxed && out.len < 2)
			abort();
		if (out.len > 0 && (out.len < 2 ||
		    memcmp(out.data + out.len - 2, "\r\n", 2) != 0))
			abort();
		if (out.len >= 4 &&
		    memcmp(out.data + out.len - 4, "\r\n\r\n", 4) == 0)
			abort();
		for (size_t i = 0; i < out.len; i++) {
			if (out.data[i] == '\n' && (i == 0 ||
			    out.data[i - 1] != '\r'))
				abort();
			if (relaxed && (out.data[i] == '\t' ||
			    (out.data[i] == ' ' && i + 1 < out.len &&
			    (out.data[i + 1] == ' ' || (out.data[i + 1] == '\r'
			    && i + 2 < out.len && out.data[i + 2] == '\n')))))
				abort();
		}
	}
	str_truncate(&out, 0);
	if (memchr(p, ':', len) != NULL && (memchr(p, '\n', len) == NULL ||
	    (const char *)memchr(p, ':', len) < (const char *)memchr(p, '\n',
	    len))) {
		canon_header(&out, true, p, len, true);
		for (size_t i = 0; i + 2 < out.len; i++)
			if (out.data[i] == '\n' || (out.data[i] == '\r' &&
			    out.data[i + 1] == '\n'))
				abort();
		for (size_t i = 0; i < out.len && out.data[i] != ':'; i++)
			if (out.data[i] >= 'A' && out.data[i] <= 'Z')
				abort();
	}
	str_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (data[0] & 0x80) {
		check_arc(data + 1, size - 1);
		return 0;
	}
	switch (data[0] & 3) {
	case 0:
		check_txt(data + 2, size - 2, (size_t)data[1] * 16);
		break;
	case 1:
		check_name(data + 1, size - 1);
		check_wire(data[0] >> 2, data + 1, size - 1);
		break;
	case 2:
		check_claims(data + 1, size - 1);
		break;
	default:
		check_format(data + 1, size - 1);
		break;
	}
	return 0;
}
