#ifndef PETREL_ADDR_H
#define PETREL_ADDR_H
/* Mail address syntax (RFC 5321 4.1.2 Mailbox, dot-atom local parts;
 * RFC 6531 lets UTF-8 through as atext) and domain names. */
#include <stdbool.h>

/* A dot-atom local part, 1..64 octets. */
bool addr_local_valid(const char *local);
/* A domain: dot-separated labels of letters, digits, '-' (or UTF-8),
 * no empty label, no label starting or ending with '-', <= 255 octets. */
bool addr_domain_valid(const char *domain);
/* Split "local@domain" (validated, lower-cased copies). -1 if malformed.
 * local_r may be NULL. */
int addr_split(const char *address, char **local_r, char **domain_r);
/* "@domain" (a catch-all alias source): domain_r gets the domain. */
int addr_split_catchall(const char *address, char **domain_r);

#endif
