#ifndef PETREL_TRUST_SPF_H
#define PETREL_TRUST_SPF_H
/*
 * SPF (RFC 7208) with libspf2, its DNS layer fed by lib/trust/dnsq (so
 * `dns_resolver` applies). Blocks: job threads only.
 */

enum spf_result {
	SPF_R_NONE,
	SPF_R_NEUTRAL,
	SPF_R_PASS,
	SPF_R_FAIL,
	SPF_R_SOFTFAIL,
	SPF_R_TEMPERROR,
	SPF_R_PERMERROR,
};

/* Check the client ip (text, IPv4 or IPv6) against sender's domain, or
 * against helo's when sender is "" (the identity is then
 * postmaster@helo). receiver: this host's name (the %{r} macro). */
enum spf_result spf_check(const char *ip, const char *helo,
    const char *sender, const char *receiver);

/* "pass", "fail", ... (RFC 8601 2.7.2). */
const char *spf_result_name(enum spf_result r);

#endif
