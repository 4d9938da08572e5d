/*
 * mta_sts.c: the MTA-STS (RFC 8461) record and policy parsers, and the
 * MX pattern match. Everything here is bounded by the input's length;
 * nothing is read past it and nothing is allocated.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/trust/mta_sts.h"

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

int
mta_sts_txt_parse(const char *txt, size_t len, char id[33])
{
	size_t i = 0;
	bool have_id = false;

	/* sts-text-record = sts-version 1*(sts-sep sts-field) [sts-sep];
	 * sts-version = %s"v=STSv1" first */
	if (len < 7 || memcmp(txt, "v=STSv1", 7) != 0)
		return 0;
	i = 7;
	if (i < len && txt[i] != ';' && !is_wsp(txt[i]))
		return 0;	/* "v=STSv10": another version */
	while (i < len) {
		size_t ks, ke, vs, ve;

		while (i < len && is_wsp(txt[i]))
			i++;
		if (i == len)
			break;
		if (txt[i] != ';')
			return -1;
		i++;
		while (i < len && is_wsp(txt[i]))
			i++;
		if (i == len)
			break;	/* a final separator */
		ks = i;
		while (i < len && (isalnum((unsigned char)txt[i]) ||
		    txt[i] == '_' || txt[i] == '-' || txt[i] == '.'))
			i++;
		ke = i;
		if (ke == ks || i == len || txt[i] != '=')
			return -1;
		i++;
		vs = i;
		while (i < len && txt[i] != ';' && !is_wsp(txt[i])) {
			/* sts-ext-value: VCHAR other than ';' and '=' */
			if ((unsigned char)txt[i] < 0x21 ||
			    (unsigned char)txt[i] > 0x7e || txt[i] == '=')
				return -1;
			i++;
		}
		ve = i;
		if (ke - ks == 2 && memcmp(txt + ks, "id", 2) == 0 &&
		    !have_id) {
			if (ve == vs || ve - vs > 32)
				return -1;
			for (size_t k = vs; k < ve; k++)
				if (!isalnum((unsigned char)txt[k]))
					return -1;
			memcpy(id, txt + vs, ve - vs);
			id[ve - vs] = '\0';
			have_id = true;
		}
	}
	return have_id ? 1 : -1;
}

/* A host name pattern of an mx line: letters, digits, '-' and dots, an
 * optional leading "*." (RFC 8461 3.2). */
static bool
mx_pattern_ok(const char *v, size_t n)
{
	size_t i = 0, lab = 0;

	if (n >= 2 && v[0] == '*' && v[1] == '.')
		i = 2;
	if (i == n || n > 253)
		return false;
	for (; i < n; i++) {
		if (v[i] == '.') {
			if (lab == 0)
				return false;
			lab = 0;
			continue;
		}
		if (!isalnum((unsigned char)v[i]) && v[i] != '-' &&
		    v[i] != '_')
			return false;
		if (++lab > 63)
			return false;
	}
	return true;
}

int
mta_sts_policy_parse(const char *buf, size_t len, struct mta_sts_policy *p,
    const char **err_r)
{
	bool have_version = false, have_mode = false, have_age = false;
	size_t i = 0;

	memset(p, 0, sizeof(*p));
	if (len > MTA_STS_POLICY_MAX) {
		*err_r = "policy too long";
		return -1;
	}
	while (i < len) {
		size_t ls = i, le, ks, ke, vs, ve;

		while (i < len && buf[i] != '\n')
			i++;
		le = i;
		if (i < len)
			i++;	/* the LF */
		if (le > ls && buf[le - 1] == '\r')
			le--;
		if (le == ls)
			continue;	/* an empty line (the last one) */
		ks = ls;
		while (ks < le && buf[ks] != ':') {
			if (!isalnum((unsigned char)buf[ks]) &&
			    buf[ks] != '_' && buf[ks] != '-' &&
			    buf[ks] != '.') {
				*err_r = "malformed line";
				return -1;
			}
			ks++;
		}
		ke = ks;
		ks = ls;
		if (ke == le || ke == ks) {
			*err_r = "malformed line";
			return -1;
		}
		vs = ke + 1;
		while (vs < le && is_wsp(buf[vs]))
			vs++;
		ve = le;
		while (ve > vs && is_wsp(buf[ve - 1]))
			ve--;
		for (size_t k = vs; k < ve; k++)
			if ((unsigned char)buf[k] < 0x20 ||
			    (unsigned char)buf[k] > 0x7e) {
				*err_r = "control or non-ASCII octet";
				return -1;
			}
#define KEY(s) (ke - ks == sizeof(s) - 1 && memcmp(buf + ks, s, ke - ks) == 0)
#define VAL(s) (ve - vs == sizeof(s) - 1 && memcmp(buf + vs, s, ve - vs) == 0)
		if (KEY("version")) {
			if (have_version)
				continue;
			if (!VAL("STSv1")) {
				*err_r = "version is not STSv1";
				return -1;
			}
			have_version = true;
		} else if (KEY("mode")) {
			if (have_mode)
				continue;
			if (VAL("enforce"))
				p->mode = MTA_STS_ENFORCE;
			else if (VAL("testing"))
				p->mode = MTA_STS_TESTING;
			else if (VAL("none"))
				p->mode = MTA_STS_NONE;
			else {
				*err_r = "unknown mode";
				return -1;
			}
			have_mode = true;
		} else if (KEY("max_age")) {
			unsigned long v = 0;

			if (have_age)
				continue;
			if (ve == vs || ve - vs > 10) {
				*err_r = "malformed max_age";
				return -1;
			}
			for (size_t k = vs; k < ve; k++) {
				if (!isdigit((unsigned char)buf[k])) {
					*err_r = "malformed max_age";
					return -1;
				}
				v = v * 10 + (unsigned long)(buf[k] - '0');
			}
			p->max_age = v > MTA_STS_MAX_AGE ? MTA_STS_MAX_AGE : v;
			have_age = true;
		} else if (KEY("mx")) {
			if (!mx_pattern_ok(buf + vs, ve - vs)) {
				*err_r = "malformed mx pattern";
				return -1;
			}
			if (p->nmx < MTA_STS_MX_MAX) {
				size_t n = ve - vs;

				if (buf[vs + n - 1] == '.')
					n--;
				for (size_t k = 0; k < n; k++)
					p->mx[p->nmx][k] = (char)tolower(
					    (unsigned char)buf[vs + k]);
				p->mx[p->nmx][n] = '\0';
				p->nmx++;
			}
		}
		/* other keys: extensions, ignored */
#undef KEY
#undef VAL
	}
	if (!have_version || !have_mode || !have_age) {
		*err_r = !have_version ? "no version" : !have_mode ?
		    "no mode" : "no max_age";
		return -1;
	}
	if (p->mode != MTA_STS_NONE && p->nmx == 0) {
		*err_r = "no mx";
		return -1;
	}
	return 0;
}

bool
mta_sts_mx_match(const struct mta_sts_policy *p, const char *host)
{
	char h[256];
	size_t n = strlen(host);

	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(h))
		return false;
	for (size_t k = 0; k < n; k++)
		h[k] = (char)tolower((unsigned char)host[k]);
	h[n] = '\0';
	for (size_t i = 0; i < p->nmx; i++) {
		const char *pat = p->mx[i], *dot;

		if (strcmp(pat, h) == 0)
			return true;
		if (pat[0] != '*' || pat[1] != '.')
			continue;
		/* "*.example.com": one label, then ".example.com" */
		dot = strchr(h, '.');
		if (dot != NULL && dot != h && strcmp(dot, pat + 1) == 0)
			return true;
	}
	return false;
}

const char *
mta_sts_mode_name(enum mta_sts_mode m)
{
	return m == MTA_STS_ENFORCE ? "enforce" : m == MTA_STS_TESTING ?
	    "testing" : "none";
}
