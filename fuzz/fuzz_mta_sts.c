/*
 * fuzz_mta_sts.c: MTA-STS (lib/trust/mta_sts.c) as the queue gets it from
 * a recipient domain: the input as a policy file (what its web server
 * sends) and as the text of its _mta-sts TXT record. Checks:
 *  - a policy parsed OK has a known mode, max_age at most a year, at
 *    most MTA_STS_MX_MAX patterns and at least one unless mode is none;
 *    each pattern lower case, letters, digits, '-', '_' and dots with no
 *    empty label, "*." only in front; each pattern without "*." matches
 *    itself (and in upper case, with a final dot), and "*.S" matches
 *    "x.S" but neither "S" nor "a.x.S";
 *  - a refused policy says why;
 *  - an accepted TXT record's id is 1 to 32 letters and digits, and the
 *    input starts with "v=STSv1";
 *  - the input as a host name is matched against the policy without
 *    reading past it.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/trust/mta_sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_pattern(const struct mta_sts_policy *p, const char *pat)
{
	char buf[300];
	size_t n = strlen(pat), lab = 0;
	const char *s = pat;

	if (n == 0 || n > 253)
		abort();
	if (s[0] == '*') {
		if (s[1] != '.')
			abort();
		s += 2;
	}
	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (lab == 0)
				abort();
			lab = 0;
			continue;
		}
		if ((!isalnum((unsigned char)*s) && *s != '-' && *s != '_') ||
		    isupper((unsigned char)*s))
			abort();
		lab++;
	}
	if (lab == 0)
		abort();
	if (pat[0] != '*') {
		if (!mta_sts_mx_match(p, pat))
			abort();
		for (size_t k = 0; k <= n; k++)
			buf[k] = (char)toupper((unsigned char)pat[k]);
		buf[n] = '.';
		buf[n + 1] = '\0';
		if (!mta_sts_mx_match(p, buf))
			abort();
		return;
	}
	if (n + 1 >= sizeof(buf) - 4)
		return;
	memcpy(buf, "x", 1);
	memcpy(buf + 1, pat + 1, n);	/* "x.S" and its NUL */
	if (strlen(buf) < 254 && !mta_sts_mx_match(p, buf))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mta_sts_policy p;
	const char *err = NULL;
	char id[33], *host;
	int r;

	if (mta_sts_policy_parse((const char *)data, size, &p, &err) == 0) {
		if (p.mode != MTA_STS_NONE && p.mode != MTA_STS_TESTING &&
		    p.mode != MTA_STS_ENFORCE)
			abort();
		if (p.max_age > MTA_STS_MAX_AGE || p.nmx > MTA_STS_MX_MAX ||
		    (p.mode != MTA_STS_NONE && p.nmx == 0))
			abort();
		for (size_t i = 0; i < p.nmx; i++)
			check_pattern(&p, p.mx[i]);
		host = malloc(size + 1);
		if (host == NULL)
			return 0;
		memcpy(host, data, size);
		host[size] = '\0';
		(void)mta_sts_mx_match(&p, host);
		free(host);
	} else if (err == NULL || err[0] == '\0') {
		abort();
	}
	r = mta_sts_txt_parse((const char *)data, size, id);
	if (r == 1) {
		size_t n = strlen(id);

		if (n == 0 || n > 32 || size < 7 ||
		    memcmp(data, "v=STSv1", 7) != 0)
			abort();
		for (size_t k = 0; k < n; k++)
			if (!isalnum((unsigned char)id[k]))
				abort();
	} else if (r != 0 && r != -1) {
		abort();
	}
	return 0;
}
