#ifndef PETREL_BASE64_H
#define PETREL_BASE64_H
/* RFC 4648 base64 (standard alphabet, padding required on decode). */
#include <stddef.h>

#include "lib/base/str.h"

void base64_encode(str_t *out, const void *data, size_t len);
/* Strict decode: no white space, correct padding. 0 ok, -1 malformed. */
int base64_decode(str_t *out, const char *in, size_t len);

#endif
