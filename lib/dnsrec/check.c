/*
 * check.c: a published record compared with what a resolver answers
 * (`petrel dns check DOMAIN`, see dnsrec.h). The answers' rdata is made
 * text the way dnsrec writes its values, so that one comparison serves:
 * names lower-case with the final dot, TXT strings joined, TLSA data in
 * lower-case hex. Whoever serves the zone chooses these bytes: every
 * length is checked, and text that dnsrec never writes (quotes,
 * backslashes, control and non-ASCII octets) is escaped as in a zone
 * file, so it can never equal a value made here and prints safely.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/dnsrec/dnsrec.h"
#include "lib/trust/rdata.h"

int
dnsrec_type_code(const char *type)
{
	static const struct {
		const char *name;
		int code;
	} types[] = {
		{ "CNAME", 5 }, { "MX", 15 }, { "TXT", 16 }, { "SRV", 33 },
		{ "TLSA", 52 },
	};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(types[i].name, type) == 0)
			return types[i].code;
	return 0;
}

/* A name in wire form at p as "labels." (the root "."), lower-case; -1
 * when malformed or when bytes follow it. */
static int
name_value(const unsigned char *p, size_t len, str_t *out)
{
	char name[256];
	size_t i = 0;

	/* the name must fill the rest of the rdata exactly */
	while (i < len && p[i] != 0) {
		if (p[i] > 63)
			return -1;
		i += 1 + (size_t)p[i];
	}
	if (i + 1 != len || rdata_name_text(p, len, name, sizeof(name)) < 0)
		return -1;
	str_lower(name);
	str_append(out, name);
	if (strcmp(name, ".") != 0)
		str_append_c(out, '.');
	return 0;
}

static unsigned
u16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

char *
dnsrec_wire_value(const char *type, const unsigned char *p, size_t len)
{
	str_t s = STR_INIT;
	int ok = 0;

	switch (dnsrec_type_code(type)) {
	case 5:
		ok = name_value(p, len, &s);
		break;
	case 15:
		if (len < 3)
			return NULL;
		str_printf(&s, "%u ", u16(p));
		ok = name_value(p + 2, len - 2, &s);
		break;
	case 33:
		if (len < 7)
			return NULL;
		str_printf(&s, "%u %u %u ", u16(p), u16(p + 2), u16(p + 4));
		ok = name_value(p + 6, len - 6, &s);
		break;
	case 52:
		if (len < 4)
			return NULL;
		str_printf(&s, "%u %u %u ", p[0], p[1], p[2]);
		for (size_t i = 3; i < len; i++)
			str_printf(&s, "%02x", p[i]);
		break;
	case 16: {
		size_t i = 0;

		while (i < len) {
			size_t n = p[i++];

			if (n > len - i) {
				ok = -1;
				break;
			}
			for (size_t k = 0; k < n; k++) {
				unsigned char c = p[i + k];

				if (c == '"' || c == '\\')
					str_printf(&s, "\\%c", c);
				else if (c < 32 || c > 126)
					str_printf(&s, "\\%03u", c);
				else
					str_append_c(&s, (char)c);
			}
			i += n;
		}
		break;
	}
	default:
		return NULL;
	}
	if (ok < 0) {
		str_free(&s);
		return NULL;
	}
	if (s.data == NULL)
		return xstrdup("");
	return str_steal(&s);
}

/* A TXT value's kind: its first tag ("v=spf1", "v=DKIM1"), up to a ';'
 * or a space. */
static size_t
txt_kind(const char *v)
{
	return strcspn(v, "; ");
}

bool
dnsrec_same_kind(const struct dnsrec *want, const char *found)
{
	size_t n = txt_kind(want->value);

	if (strcmp(want->type, "TXT") != 0)
		return true;
	return txt_kind(found) == n && strncasecmp(want->value, found, n) == 0;
}

enum dnsrec_verdict
dnsrec_compare(const struct dnsrec *want, char *const *found, size_t n)
{
	bool txt = strcmp(want->type, "TXT") == 0, seen = false;

	for (size_t i = 0; i < n; i++) {
		if (found[i] == NULL || !dnsrec_same_kind(want, found[i]))
			continue;
		seen = true;
		if (txt ? strcmp(want->value, found[i]) == 0 :
		    strcasecmp(want->value, found[i]) == 0)
			return DNSREC_OK;
	}
	return seen ? DNSREC_DIFFERENT : DNSREC_MISSING;
}
