#ifndef PETREL_STR_H
#define PETREL_STR_H
/* str_t: one growable, length-carrying byte string. The data is always
 * NUL-terminated so it can be handed to C APIs, but the length is
 * authoritative and the bytes may contain NUL (network input). */
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct str {
	char *data;
	size_t len;
	size_t cap;
} str_t;

#define STR_INIT { NULL, 0, 0 }

void str_reserve(str_t *s, size_t extra);
void str_append(str_t *s, const char *cstr);
void str_append_n(str_t *s, const void *data, size_t len);
void str_append_u32(str_t *s, uint32_t v);
void str_append_c_grow(str_t *s, char c);

/* One byte: inline, as builders call it for every byte they emit. */
static inline void
str_append_c(str_t *s, char c)
{
	if (s->len + 1 < s->cap) {
		s->data[s->len++] = c;
		s->data[s->len] = '\0';
	} else {
		str_append_c_grow(s, c);
	}
}
void str_printf(str_t *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void str_vprintf(str_t *s, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
void str_truncate(str_t *s, size_t len);
/* The contents as a C string ("" when empty, never NULL). */
const char *str_c(const str_t *s);
/* Hand the buffer to the caller (a malloc'd C string) and reset s. */
char *str_steal(str_t *s);
void str_free(str_t *s);

/* Append s as a JSON string literal, quotes included. */
void str_append_json(str_t *s, const char *cstr);

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at
 * most U+10FFFF). */
bool str_utf8_valid(const char *s, size_t len);
/* The UTF-8 sequence at p (left > 0 bytes): its length and code point in
 * *cp_r, or 0 when it is not valid UTF-8 (overlong, surrogate, above
 * U+10FFFF, truncated). */
size_t str_utf8_next(const unsigned char *p, size_t left, unsigned *cp_r);
/* Any byte >= 0x80. */
bool str_has_8bit(const char *s, size_t len);

/* Small helpers for trusted C strings. */
void str_lower(char *cstr);
char *str_trim(char *cstr);
bool str_has_suffix(const char *cstr, const char *suffix);

/* The value of hexadecimal digit c (either case), or -1. */
int str_hexval(int c);

#endif
