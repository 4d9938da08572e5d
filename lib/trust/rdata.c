/*
 * rdata.c: TXT strings and domain names from DNS rdata, bounded.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/trust/rdata.h"

char *
rdata_txt_join(const char *rdata, size_t len, size_t max, size_t *out_len,
    int *truncated_r)
{
	str_t s = STR_INIT;
	size_t i = 0;

	*truncated_r = 0;
	while (i < len) {
		size_t n = (unsigned char)rdata[i++];

		if (n > len - i)
			n = len - i;	/* a string cut short: what there is */
		if (s.len + n > max) {
			n = max - s.len;
			*truncated_r = 1;
		}
		str_append_n(&s, rdata + i, n);
		i += n;
		if (*truncated_r)
			break;
	}
	*out_len = s.len;
	if (s.data == NULL)
		return xstrdup("");
	return str_steal(&s);
}

int
rdata_name_text(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	if (outlen < 2)
		return -1;
	while (i < len) {
		size_t n = p[i++];

		if (n == 0) {
			if (o == 0)
				out[o++] = '.';
			out[o] = '\0';
			return 0;
		}
		if (n > 63 || n > len - i || o + n + 2 > outlen)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t k = 0; k < n; k++) {
			unsigned char c = p[i + k];

			out[o++] = c > 32 && c < 127 && c != '.' ? (char)c :
			    '?';
		}
		i += n;
	}
	return -1;
}
