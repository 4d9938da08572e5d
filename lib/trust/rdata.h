#ifndef PETREL_TRUST_RDATA_H
#define PETREL_TRUST_RDATA_H
/*
 * The rdata of DNS answers as libunbound hands them over (names
 * uncompressed), made text for libspf2 and libopendkim. Whoever answers
 * for a sender's domain chooses these bytes: every length is checked
 * against the rdata.
 */
#include <stddef.h>

/* The character-strings of one TXT rdata joined, NUL-terminated, at most
 * max octets (longer: cut, *truncated_r set). A string whose length runs
 * past the rdata gives what there is. Embedded NULs are kept; *out_len
 * is the length. */
char *rdata_txt_join(const char *rdata, size_t len, size_t max,
    size_t *out_len, int *truncated_r);

/* A domain name in wire form (labels, a root label) as dotted text in
 * out (outlen >= 2), without the final dot ("." for the root); octets
 * other than printable ASCII and dots inside labels become '?'. 0, or -1
 * when it runs past len, a label is over 63 or the text over outlen. */
int rdata_name_text(const unsigned char *p, size_t len, char *out,
    size_t outlen);

#endif
