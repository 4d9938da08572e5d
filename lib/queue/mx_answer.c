/*
 * mx_answer.c: MX records from DNS rdata (see mx_answer.h).
 */
#include <ctype.h>
#include <string.h>

#include "lib/queue/mx_answer.h"

static bool
host_octet(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '_';
}

bool
mx_rdata_parse(const unsigned char *p, size_t len, struct mx_record *r)
{
	size_t o = 0, i = 2;

	if (len < 3)
		return false;
	r->pref = (unsigned)(p[0] << 8 | p[1]);
	while (i < len && p[i] != 0) {
		size_t l = p[i++];

		/* 0xc0 and up: a compression pointer, never in rdata that
		 * unbound hands over, and not a label either */
		if (l > 63 || l > len - i || o + l + 2 > sizeof(r->name))
			return false;
		for (size_t k = 0; k < l; k++)
			if (!host_octet(p[i + k]))
				return false;
		if (o > 0)
			r->name[o++] = '.';
		memcpy(r->name + o, p + i, l);
		o += l;
		i += l;
	}
	/* the root label ends the name, and the rdata */
	if (i + 1 != len)
		return false;
	r->name[o] = '\0';
	return true;
}

size_t
mx_answer_sort(const unsigned char *const *data, const size_t *len,
    size_t n, struct mx_record *out)
{
	size_t nmx = 0;

	for (size_t i = 0; i < n && nmx < MX_RECORDS_MAX; i++)
		if (mx_rdata_parse(data[i], len[i], &out[nmx]))
			nmx++;
	/* insertion sort, stable: at most MX_RECORDS_MAX */
	for (size_t i = 1; i < nmx; i++)
		for (size_t j = i; j > 0 && out[j].pref < out[j - 1].pref;
		    j--) {
			struct mx_record t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return nmx;
}

bool
mx_answer_null(const struct mx_record *mx, size_t n)
{
	return n == 1 && mx[0].name[0] == '\0';
}
