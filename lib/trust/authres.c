/*
 * authres.c: the Authentication-Results field (RFC 8601 2.2):
 *   Authentication-Results: authserv-id; method=result ptype.property=value
 * one method per clause, folded one clause per line. Values that come
 * from the client (the MAIL FROM address, the HELO name) or the signer
 * (d=, i=, s=) are written only when they are plain tokens; otherwise
 * the property is left out, so that nothing the sender wrote can add a
 * clause or end the field.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "lib/trust/arc.h"
#include "lib/trust/authres.h"
#include "lib/trust/dkim_verify.h"
#include "lib/trust/dmarc.h"

bool
authres_value_ok(const char *v)
{
	if (v == NULL || v[0] == '\0' || strlen(v) > 255)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p <= 32 || *p >= 127 || strchr("\"();\\,<>[]:", *p))
			return false;
	return true;
}

/* The domain of an address (after its last '@'), or NULL. */
static const char *
domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

void
authres_format(str_t *out, const struct authres *ar)
{
	bool any = false;

	str_printf(out, "Authentication-Results: %s", ar->authserv_id);
	if (ar->auth_user != NULL) {
		str_append(out, ";\n\tauth=pass");
		if (authres_value_ok(ar->auth_user))
			str_printf(out, " smtp.auth=%s", ar->auth_user);
		any = true;
	}
	if (ar->spf != NULL) {
		str_printf(out, ";\n\tspf=%s", ar->spf);
		if (ar->spf_helo) {
			if (authres_value_ok(ar->helo))
				str_printf(out, " smtp.helo=%s", ar->helo);
		} else if (authres_value_ok(ar->mailfrom)) {
			str_printf(out, " smtp.mailfrom=%s", ar->mailfrom);
		} else if (authres_value_ok(domain_of(ar->mailfrom))) {
			str_printf(out, " smtp.mailfrom=%s",
			    domain_of(ar->mailfrom));
		}
		any = true;
	}
	if (ar->dkim_checked) {
		if (ar->dkim_error) {
			str_append(out, ";\n\tdkim=temperror (verifier "
			    "unavailable)");
		} else if (ar->ndkim == 0) {
			str_append(out, ";\n\tdkim=none");
		}
		for (size_t i = 0; !ar->dkim_error && i < ar->ndkim; i++) {
			const struct dkim_verdict *v = &ar->dkim[i];

			str_printf(out, ";\n\tdkim=%s", v->result);
			if (v->reason != NULL)
				str_printf(out, " (%s)", v->reason);
			if (authres_value_ok(v->domain))
				str_printf(out, " header.d=%s", v->domain);
			if (authres_value_ok(v->identity))
				str_printf(out, " header.i=%s", v->identity);
			if (authres_value_ok(v->selector))
				str_printf(out, " header.s=%s", v->selector);
		}
		any = true;
	}
	if (ar->arc != NULL) {
		/* RFC 8617 7.2: header.oldest-pass, smtp.remote-ip */
		const struct arc_verdict *a = ar->arc;

		str_printf(out, ";\n\tarc=%s", arc_result_name(a->result));
		if (a->result == ARC_R_FAIL && a->reason[0] != '\0')
			str_printf(out, " (%s)", a->reason);
		if (a->result == ARC_R_PASS && a->oldest_pass > 0)
			str_printf(out, " header.oldest-pass=%u",
			    a->oldest_pass);
		if (ar->remote_ip != NULL && ar->remote_ip[0] != '\0' &&
		    strlen(ar->remote_ip) < 64 &&
		    strspn(ar->remote_ip, "0123456789abcdefABCDEF.:") ==
		    strlen(ar->remote_ip))
			/* an IPv6 address has ':': quoted (RFC 2045 token) */
			str_printf(out, strchr(ar->remote_ip, ':') != NULL ?
			    " smtp.remote-ip=\"%s\"" : " smtp.remote-ip=%s",
			    ar->remote_ip);
		any = true;
	}
	if (ar->dmarc != NULL) {
		const struct dmarc_verdict *d = ar->dmarc;

		str_printf(out, ";\n\tdmarc=%s", dmarc_result_name(d->result));
		if (d->policy != 0)
			str_printf(out, " (%s=%s dis=%s)", d->subdomain_policy ?
			    "sp" : "p", dmarc_policy_name(d->policy),
			    dmarc_disposition_name(d->disposition));
		else if (d->reason != NULL)
			str_printf(out, " (%s)", d->reason);
		if (authres_value_ok(d->from))
			str_printf(out, " header.from=%s", d->from);
		any = true;
	}
	if (!any)
		str_append(out, "; none");
	str_append_c(out, '\n');
}

/* Skip white space (folds included) and comments, nested. */
static size_t
skip_cfws(const char *v, size_t len, size_t i)
{
	int depth = 0;

	while (i < len) {
		char c = v[i];

		if (depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			i++;
		} else if (c == '(') {
			depth = 1;
			i++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
		} else {
			break;
		}
	}
	return i;
}

bool
authres_claims(const char *value, size_t len, const char *authserv_id)
{
	size_t i = skip_cfws(value, len, 0), start, idlen = strlen(authserv_id);

	if (i < len && value[i] == '"') {
		/* quoted-string: compare without the quotes (no escapes in a
		 * host name) */
		start = ++i;
		while (i < len && value[i] != '"')
			i++;
		return i < len && i - start == idlen &&
		    strncasecmp(value + start, authserv_id, idlen) == 0;
	}
	start = i;
	while (i < len && value[i] != ';' && value[i] != '(' &&
	    !isspace((unsigned char)value[i]))
		i++;
	return i - start == idlen &&
	    strncasecmp(value + start, authserv_id, idlen) == 0;
}

const char *
header_field_end(const char *p, const char *end)
{
	const char *q = p;

	for (;;) {
		q = memchr(q, '\n', (size_t)(end - q));
		if (q == NULL)
			return end;
		q++;
		if (q >= end || (*q != ' ' && *q != '\t'))
			return q;
	}
}
