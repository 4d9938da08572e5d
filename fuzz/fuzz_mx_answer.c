/*
 * fuzz_mx_answer.c: the MX records of a DNS answer (lib/queue/mx_answer.c)
 * as the outbound queue gets their rdata from libunbound: whoever answers
 * for a recipient domain chooses these bytes. The input is records, each
 * a 9-bit length (two octets, big-endian) and that many octets of rdata.
 * Checks:
 *  - an accepted rdata encodes back to exactly its bytes (preference,
 *    labels, root label, nothing after) and its name is a host name:
 *    labels of 1..63 letters, digits, '-' or '_', at most 253 octets;
 *  - the answer's records are the accepted ones, the first
 *    MX_RECORDS_MAX of them, by preference, equal preferences in the
 *    order given;
 *  - a null MX is exactly one record naming the root.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/queue/mx_answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NMAX 64

static void
check_record(const unsigned char *p, size_t len, const struct mx_record *r)
{
	unsigned char wire[300];
	size_t o = 2, nlen = strlen(r->name);
	const char *s = r->name;

	if (nlen > 253 || r->pref > 0xffff)
		abort();
	wire[0] = (unsigned char)(r->pref >> 8);
	wire[1] = (unsigned char)r->pref;
	while (*s != '\0') {
		size_t l = strcspn(s, ".");

		if (l == 0 || l > 63)
			abort();
		for (size_t k = 0; k < l; k++)
			if (!isalnum((unsigned char)s[k]) && s[k] != '-' &&
			    s[k] != '_')
				abort();
		wire[o++] = (unsigned char)l;
		memcpy(wire + o, s, l);
		o += l;
		s += l;
		if (*s == '.') {
			s++;
			if (*s == '\0')
				abort();	/* no trailing dot */
		}
	}
	wire[o++] = 0;
	if (o != len || memcmp(wire, p, len) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *rec[NMAX] = { 0 };
	size_t len[NMAX] = { 0 }, n = 0, nmx, ngood = 0;
	struct mx_record mx[MX_RECORDS_MAX], one, good[MX_RECORDS_MAX];
	size_t i = 0;

	while (i + 1 < size && n < NMAX) {
		size_t l = (size_t)(data[i] & 1) << 8 | data[i + 1];

		i += 2;
		if (l > size - i)
			l = size - i;
		/* a copy of exactly the record's size: ASan sees any read
		 * past it */
		rec[n] = malloc(l > 0 ? l : 1);
		memcpy((unsigned char *)rec[n], data + i, l);
		len[n++] = l;
		i += l;
	}
	for (size_t k = 0; k < n; k++) {
		if (!mx_rdata_parse(rec[k], len[k], &one))
			continue;
		check_record(rec[k], len[k], &one);
		if (ngood < MX_RECORDS_MAX)
			good[ngood++] = one;
	}
	nmx = mx_answer_sort(rec, len, n, mx);
	if (nmx != ngood)
		abort();
	/* the same records, stably sorted: take them by preference */
	{
		size_t o = 0;

		for (unsigned pref = 0; o < nmx; ) {
			unsigned next = 0x10000;

			for (size_t k = 0; k < ngood; k++) {
				if (good[k].pref == pref) {
					if (mx[o].pref != pref ||
					    strcmp(mx[o].name, good[k].name))
						abort();
					o++;
				} else if (good[k].pref > pref &&
				    good[k].pref < next) {
					next = good[k].pref;
				}
			}
			if (o < nmx && next == 0x10000)
				abort();
			pref = next;
		}
	}
	if (mx_answer_null(mx, nmx) != (nmx == 1 && mx[0].name[0] == '\0'))
		abort();
	for (size_t k = 0; k < n; k++)
		free((void *)rec[k]);
	return 0;
}
