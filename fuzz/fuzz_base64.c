/*
 * fuzz_base64.c: the base64 decoder (fed by unauthenticated SASL clients)
 * and encoder, with checks:
 *  - decode(encode(x)) == x for the input as bytes;
 *  - the input as base64: if it decodes, encoding the result gives the
 *    input back (the decoder accepts one spelling per value: padding
 *    required, pad bits zero), and it was made of the alphabet and '='
 *    only; if it is refused, it is not such a spelling.
 * libFuzzer hands the input in a buffer of exactly its size, so ASan
 * reports any read past it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/base64.h"
#include "lib/base/str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
alphabet_only(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' &&
		    p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
		    p[i] == '+' || p[i] == '/' || p[i] == '='))
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	str_t enc = STR_INIT, dec = STR_INIT, again = STR_INIT;

	/* bytes -> base64 -> the same bytes */
	base64_encode(&enc, data, size);
	if (enc.len != (size + 2) / 3 * 4 || !alphabet_only(
	    (const uint8_t *)enc.data, enc.len))
		abort();
	if (base64_decode(&dec, enc.data ? enc.data : "", enc.len) != 0 ||
	    dec.len != size || (size > 0 && memcmp(dec.data, data, size) != 0))
		abort();
	str_free(&enc);
	str_free(&dec);

	/* the input as base64 */
	if (base64_decode(&dec, (const char *)data, size) == 0) {
		if (size % 4 != 0 || !alphabet_only(data, size) ||
		    dec.len > size / 4 * 3)
			abort();
		base64_encode(&again, dec.data, dec.len);
		if (again.len != size || (size > 0 &&
		    memcmp(again.data, data, size) != 0))
			abort();
	}
	str_free(&dec);
	str_free(&again);
	return 0;
}
