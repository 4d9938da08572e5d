/*
 * srs.c: the Sender Rewriting Scheme's addresses (see srs.h): SRS0 and
 * SRS1 made for forwarded mail and checked when bounces come back.
 * HMAC-SHA-1 comes from lib/tls (OpenSSL); nothing here does I/O but
 * srs_secret_load's one read.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/tls/tls.h"
#include "lib/trust/srs.h"

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#define SRS_HASH_LEN 4
#define SRS_TIME_SLOTS 1024

/* HMAC-SHA-1 over the lower-cased concatenation of a and b (and c),
 * base64, the first SRS_HASH_LEN characters into out. */
static void
srs_hash(const char *secret, const char *a, const char *b, const char *c,
    char out[SRS_HASH_LEN + 1])
{
	const char *parts[3] = { a, b, c };
	unsigned char mac[20];
	str_t data = STR_INIT, enc = STR_INIT;

	for (size_t i = 0; i < 3; i++)
		for (const char *p = parts[i]; p != NULL && *p != '\0'; p++) {
			char ch = (char)tolower((unsigned char)*p);

			str_append_n(&data, &ch, 1);
		}
	crypto_hmac_sha1(secret, strlen(secret), str_c(&data), data.len, mac);
	base64_encode(&enc, mac, sizeof(mac));
	memcpy(out, str_c(&enc), SRS_HASH_LEN);
	out[SRS_HASH_LEN] = '\0';
	str_free(&data);
	str_free(&enc);
}

static unsigned
srs_day(time_t now)
{
	return (unsigned)((now / 86400) % SRS_TIME_SLOTS);
}

static int
is_sep(char c)
{
	return c == '=' || c == '+' || c == '-';
}

int
srs_is_srs(const char *local)
{
	return (strncasecmp(local, "SRS0", 4) == 0 ||
	    strncasecmp(local, "SRS1", 4) == 0) && is_sep(local[4]);
}

char *
srs_forward(const char *secret, const char *srs_domain, const char *sender,
    time_t now, const char **why_r)
{
	const char *at = strrchr(sender, '@');
	char hash[SRS_HASH_LEN + 1], *local, *res = NULL;
	const char *domain;

	if (at == NULL || at == sender || at[1] == '\0') {
		*why_r = "not a local@domain address";
		return NULL;
	}
	local = xstrndup(sender, (size_t)(at - sender));
	domain = at + 1;
	if (srs_is_srs(local) && strcasecmp(domain, srs_domain) == 0) {
		/* ours already: a bounce path through this host stays */
		*why_r = "already an SRS address of this domain";
		free(local);
		return NULL;
	}
	if (strncasecmp(local, "SRS0", 4) == 0 && is_sep(local[4])) {
		/* SRS1: the first forwarder's domain and its SRS0 rest */
		const char *rest = local + 4;

		srs_hash(secret, domain, rest, NULL, hash);
		res = xasprintf("SRS1=%s=%s=%s@%s", hash, domain, rest,
		    srs_domain);
	} else if (strncasecmp(local, "SRS1", 4) == 0 && is_sep(local[4])) {
		/* re-forwarding SRS1: keep the first forwarder, hash anew */
		const char *h = local + 5, *host, *rest;
		char *hostd;

		host = strchr(h, '=');
		rest = host != NULL ? strchr(host + 1, '=') : NULL;
		if (host == NULL || rest == NULL || rest == host + 1) {
			*why_r = "a malformed SRS1 address";
			free(local);
			return NULL;
		}
		hostd = xstrndup(host + 1, (size_t)(rest - host - 1));
		srs_hash(secret, hostd, rest + 1, NULL, hash);
		res = xasprintf("SRS1=%s=%s=%s@%s", hash, hostd, rest + 1,
		    srs_domain);
		free(hostd);
	} else {
		unsigned d = srs_day(now);
		char tt[3] = { b32[(d >> 5) & 31], b32[d & 31], '\0' };

		srs_hash(secret, tt, domain, local, hash);
		res = xasprintf("SRS0=%s=%s=%s=%s@%s", hash, tt, domain,
		    local, srs_domain);
	}
	free(local);
	if ((size_t)(strrchr(res, '@') - res) > SRS_LOCAL_MAX) {
		*why_r = "the SRS local part would pass 64 characters";
		free(res);
		return NULL;
	}
	return res;
}

static int
b32_value(char c)
{
	const char *p = strchr(b32, toupper((unsigned char)c));

	return c != '\0' && p != NULL ? (int)(p - b32) : -1;
}

char *
srs_reverse(const char *secret, const char *local, time_t now,
    const char **why_r)
{
	const char *h, *e, *f, *g;
	char want[SRS_HASH_LEN + 1];

	if (!srs_is_srs(local)) {
		*why_r = "not an SRS address";
		return NULL;
	}
	h = local + 5;
	e = strchr(h, '=');
	if (e == NULL || e - h != SRS_HASH_LEN) {
		*why_r = "malformed SRS address";
		return NULL;
	}
	if (local[3] == '1') {
		/* SRS1=HHHH=host=rest: back to SRS0rest@host */
		char *host;

		f = strchr(e + 1, '=');
		if (f == NULL || f == e + 1 || f[1] == '\0') {
			*why_r = "malformed SRS1 address";
			return NULL;
		}
		host = xstrndup(e + 1, (size_t)(f - e - 1));
		srs_hash(secret, host, f + 1, NULL, want);
		if (strncasecmp(want, h, SRS_HASH_LEN) != 0) {
			free(host);
			*why_r = "bad SRS hash";
			return NULL;
		}
		{
			char *res = xasprintf("SRS0%s@%s", f + 1, host);

			free(host);
			return res;
		}
	}
	/* SRS0=HHHH=TT=domain=local */
	f = strchr(e + 1, '=');
	if (f == NULL || f - e - 1 != 2) {
		*why_r = "malformed SRS0 address";
		return NULL;
	}
	g = strchr(f + 1, '=');
	if (g == NULL || g == f + 1 || g[1] == '\0') {
		*why_r = "malformed SRS0 address";
		return NULL;
	}
	{
		char tt[3] = { e[1], e[2], '\0' };
		char *domain = xstrndup(f + 1, (size_t)(g - f - 1));
		int hi = b32_value(tt[0]), lo = b32_value(tt[1]);
		unsigned then, age;
		char *res;

		if (hi < 0 || lo < 0) {
			free(domain);
			*why_r = "bad SRS timestamp";
			return NULL;
		}
		srs_hash(secret, tt, domain, g + 1, want);
		if (strncasecmp(want, h, SRS_HASH_LEN) != 0) {
			free(domain);
			*why_r = "bad SRS hash";
			return NULL;
		}
		then = (unsigned)(hi << 5 | lo);
		age = (srs_day(now) + SRS_TIME_SLOTS - then) % SRS_TIME_SLOTS;
		if (age > SRS_MAX_AGE_DAYS) {
			free(domain);
			*why_r = "expired SRS address";
			return NULL;
		}
		res = xasprintf("%s@%s", g + 1, domain);
		free(domain);
		return res;
	}
}

char *
srs_secret_load(const char *value, const char **error_r)
{
	return secret_load("srs_secret", value, error_r);
}

char *
secret_load(const char *key, const char *value, const char **error_r)
{
	static char ebuf[512];
	char line[1024];
	FILE *fp;
	size_t n;

	if (strncmp(value, "file:", 5) != 0)
		return xstrdup(value);
	fp = fopen(value + 5, "r");
	if (fp == NULL) {
		snprintf(ebuf, sizeof(ebuf), "%s: %s: %s", key,
		    value + 5, strerror(errno));
		*error_r = ebuf;
		return NULL;
	}
	if (fgets(line, sizeof(line), fp) == NULL)
		line[0] = '\0';
	fclose(fp);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (n == 0) {
		snprintf(ebuf, sizeof(ebuf), "%s: %s: empty", key,
		    value + 5);
		*error_r = ebuf;
		return NULL;
	}
	return xstrdup(line);
}
