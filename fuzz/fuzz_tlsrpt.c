/*
 * fuzz_tlsrpt.c: the _smtp._tls TXT record (RFC 8460 3) as `petrel
 * tlsrpt report` gets it from a policy domain's DNS
 * (lib/trust/tls_rpt.c), and the JSON strings the report is made of.
 * Checks:
 *  - a record accepted starts with "v=TLSRPTv1" and its rua= value is a
 *    non-empty list of non-empty URIs, comma-separated, without white
 *    space or control characters, no longer than the input; a record
 *    not taken leaves no value;
 *  - the input (up to its first NUL) as a JSON string starts and ends
 *    with '"', holds no raw control character, no byte outside ASCII and
 *    no '"' that is not escaped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/trust/tls_rpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *rua = (char *)"x", *s;
	str_t js = STR_INIT;
	int r;

	r = tls_rpt_txt_parse((const char *)data, size, &rua);
	if (r == 1) {
		size_t n = strlen(rua);

		if (size < 10 || memcmp(data, "v=TLSRPTv1", 10) != 0 ||
		    n == 0 || n > size || rua[0] == ',' || rua[n - 1] == ',' ||
		    strstr(rua, ",,") != NULL)
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)rua[i] <= ' ')
				abort();
		free(rua);
	} else if ((r != 0 && r != -1) || rua != NULL) {
		abort();
	}
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	tls_rpt_json_str(&js, s);
	if (js.len < 2 || js.data[0] != '"' || js.data[js.len - 1] != '"')
		abort();
	for (size_t i = 1; i + 1 < js.len; i++) {
		unsigned char c = (unsigned char)js.data[i];

		if (c < ' ' || c >= 0x7f)
			abort();
		if (c == '\\') {
			i++;	/* what it escapes */
			continue;
		}
		if (c == '"')
			abort();
	}
	str_free(&js);
	free(s);
	return 0;
}
