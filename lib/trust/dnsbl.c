/*
 * dnsbl.c: `dnsbl_sites` parsed, query names made from client addresses
 * (RFC 5782) and answers matched against a site's filter. Pure functions:
 * the lookups themselves run in smtp/dnsbl.c.
 *
 * The subset of postscreen_dnsbl_sites' syntax taken: ZONE, ZONE*WEIGHT,
 * ZONE=FILTER, ZONE=FILTER*WEIGHT, where FILTER is four octets, each a
 * number, a range [N..M] or a list [A;B..C] of numbers and ranges, and
 * WEIGHT an integer (negative for an allow list). Not taken: the
 * domain-with-port forms and per-site reply texts.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/trust/dnsbl.h"

void
dnsbl_sites_free(struct dnsbl_site *sites, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(sites[i].zone);
		free(sites[i].spec);
	}
	free(sites);
}

static bool
zone_ok(const char *z, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 200 || z[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)z[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* A number 0..255 at *p; -1 if none. */
static int
octet_num(const char **p, const char *end)
{
	int v = 0, digits = 0;

	while (*p < end && isdigit((unsigned char)**p) && digits < 4) {
		v = v * 10 + (**p - '0');
		(*p)++;
		digits++;
	}
	return digits == 0 || digits > 3 || v > 255 ? -1 : v;
}

static void
allow_range(uint8_t bits[32], int lo, int hi)
{
	for (int v = lo; v <= hi; v++)
		bits[v / 8] |= (uint8_t)(1u << (v % 8));
}

/* One octet of a filter: N, [N..M] or [A;B..C;...]. */
static int
octet_parse(const char *p, const char *end, uint8_t bits[32])
{
	int lo, hi;

	if (p < end && *p != '[') {
		if ((lo = octet_num(&p, end)) < 0 || p != end)
			return -1;
		allow_range(bits, lo, lo);
		return 0;
	}
	if (end - p < 3 || end[-1] != ']')
		return -1;
	p++;
	end--;
	for (;;) {
		if ((lo = octet_num(&p, end)) < 0)
			return -1;
		hi = lo;
		if (end - p >= 2 && p[0] == '.' && p[1] == '.') {
			p += 2;
			if ((hi = octet_num(&p, end)) < 0 || hi < lo)
				return -1;
		}
		allow_range(bits, lo, hi);
		if (p == end)
			return 0;
		if (*p != ';')
			return -1;
		p++;
	}
}

static int
filter_parse(const char *p, const char *end, struct dnsbl_site *site)
{
	for (int i = 0; i < 4; i++) {
		const char *dot = i < 3 ? memchr(p, '.', (size_t)(end - p)) :
		    end;

		/* a dot inside [..] is not a separator */
		if (dot != NULL && i < 3) {
			const char *br = memchr(p, '[', (size_t)(end - p));

			if (br != NULL && br < dot) {
				const char *close = memchr(br, ']',
				    (size_t)(end - br));

				if (close == NULL)
					return -1;
				dot = close + 1;
				if (dot >= end || *dot != '.')
					return -1;
			}
		}
		if (dot == NULL || dot == p)
			return -1;
		if (octet_parse(p, dot, site->allow[i]) < 0)
			return -1;
		p = dot + (i < 3 ? 1 : 0);
	}
	site->filter = true;
	return 0;
}

static int
site_parse(const char *p, size_t len, struct dnsbl_site *site,
    const char **error_r)
{
	const char *end = p + len, *star, *eq;

	memset(site, 0, sizeof(*site));
	site->weight = 1;
	star = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == '*')
			star = q;
	if (star != NULL) {
		const char *w = star + 1;
		bool neg = w < end && *w == '-';
		long v = 0;

		if (neg)
			w++;
		if (w == end)
			goto bad_weight;
		for (; w < end; w++) {
			if (!isdigit((unsigned char)*w) || v > DNSBL_WEIGHT_MAX)
				goto bad_weight;
			v = v * 10 + (*w - '0');
		}
		if (v > DNSBL_WEIGHT_MAX)
			goto bad_weight;
		site->weight = neg ? (int)-v : (int)v;
		end = star;
	}
	eq = memchr(p, '=', (size_t)(end - p));
	if (!zone_ok(p, (size_t)((eq ? eq : end) - p))) {
		*error_r = "a zone is not a domain name";
		return -1;
	}
	if (eq != NULL && filter_parse(eq + 1, end, site) < 0) {
		*error_r = "an answer filter is not four octets "
		    "(each N, [N..M] or [A;B..C])";
		return -1;
	}
	site->zone = xstrndup(p, (size_t)((eq ? eq : end) - p));
	site->spec = xstrndup(p, len);
	return 0;
bad_weight:
	*error_r = "a weight (after *) is not an integer "
	    "between -1000 and 1000";
	return -1;
}

int
dnsbl_sites_parse(const char *list, struct dnsbl_site **sites_r,
    size_t *n_r, const char **error_r)
{
	struct dnsbl_site *sites = NULL;
	size_t n = 0;
	const char *p = list ? list : "";

	*sites_r = NULL;
	*n_r = 0;
	for (;;) {
		size_t len;

		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t");
		if (n == DNSBL_SITES_MAX) {
			*error_r = "more than 32 sites";
			dnsbl_sites_free(sites, n);
			return -1;
		}
		sites = xrealloc(sites, (n + 1) * sizeof(*sites));
		if (site_parse(p, len, &sites[n], error_r) < 0) {
			dnsbl_sites_free(sites, n);
			return -1;
		}
		n++;
		p += len;
	}
	*sites_r = sites;
	*n_r = n;
	return 0;
}

int
dnsbl_query_name(const char *ip, const char *zone, char *out, size_t outlen)
{
	unsigned char a[16];
	int n;

	if (strncasecmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, ':') == NULL)
		ip += 7;
	if (inet_pton(AF_INET, ip, a) == 1) {
		n = snprintf(out, outlen, "%u.%u.%u.%u.%s", a[3], a[2], a[1],
		    a[0], zone);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (inet_pton(AF_INET6, ip, a) == 1) {
		static const char hex[] = "0123456789abcdef";
		size_t zl = strlen(zone), k = 0;

		if (outlen < 64 + zl + 1)
			return -1;
		for (int i = 15; i >= 0; i--) {
			out[k++] = hex[a[i] & 0xf];
			out[k++] = '.';
			out[k++] = hex[a[i] >> 4];
			out[k++] = '.';
		}
		memcpy(out + k, zone, zl + 1);
		return 0;
	}
	return -1;
}

bool
dnsbl_answer_matches(const struct dnsbl_site *site, const unsigned char a[4])
{
	if (!site->filter)
		return a[0] == 127;
	for (int i = 0; i < 4; i++)
		if (!(site->allow[i][a[i] / 8] & (1u << (a[i] % 8))))
			return false;
	return true;
}
