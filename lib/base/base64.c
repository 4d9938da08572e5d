/*
 * base64.c: RFC 4648 section 4 encoding, for SASL (RFC 4422) exchanges.
 * The decoder is strict (rejects junk, bad padding, non-zero pad bits) since
 * its input is an unauthenticated client's.
 */
#include <stdbool.h>
#include <stdint.h>

#include "lib/base/base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void
base64_encode(str_t *out, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		str_append_c(out, alphabet[v >> 18]);
		str_append_c(out, alphabet[(v >> 12) & 63]);
		str_append_c(out, alphabet[(v >> 6) & 63]);
		str_append_c(out, alphabet[v & 63]);
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		str_append_c(out, alphabet[v >> 18]);
		str_append_c(out, alphabet[(v >> 12) & 63]);
		str_append_c(out, i + 1 < len ? alphabet[(v >> 6) & 63] : '=');
		str_append_c(out, '=');
	}
}

static int
value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
base64_decode(str_t *out, const char *in, size_t len)
{
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int a = value(in[i]), b = value(in[i + 1]);
		int c = in[i + 2] == '=' ? -2 : value(in[i + 2]);
		int d = in[i + 3] == '=' ? -2 : value(in[i + 3]);
		bool last = i + 4 == len;
		uint32_t v;

		if (a < 0 || b < 0 || c == -1 || d == -1)
			return -1;
		if ((c == -2 || d == -2) && !last)
			return -1;
		if (c == -2 && d != -2)
			return -1;
		v = (uint32_t)a << 18 | (uint32_t)b << 12;
		if (c >= 0)
			v |= (uint32_t)c << 6;
		if (d >= 0)
			v |= (uint32_t)d;
		str_append_c(out, (char)(v >> 16));
		if (c >= 0)
			str_append_c(out, (char)(v >> 8 & 0xff));
		else if ((v >> 8 & 0xff) != 0)
			return -1;
		if (d >= 0)
			str_append_c(out, (char)(v & 0xff));
		else if (c >= 0 && (v & 0xff) != 0)
			return -1;
	}
	return 0;
}
