#ifndef PETREL_TRUST_GREYLIST_H
#define PETREL_TRUST_GREYLIST_H
/*
 * greylist: the greylisting triplets (client network, sender, recipient)
 * in petrel's own state database (SQLite, WAL, under queue_dir; never
 * the directory). Blocking: job threads only. One connection per
 * process, used under a lock; several processes share the file.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GREYLIST_RETRY_WINDOW (2 * 86400)	/* an unpassed triplet is
						 * forgotten after this */
#define GREYLIST_ROWS_MAX 1000000		/* the table's bound */

enum greylist_verdict {
	GREYLIST_PASS,		/* known: let it through */
	GREYLIST_DEFER,		/* new or retried too early: 451 */
	GREYLIST_ERROR,		/* the database failed: let it through */
};

/* The network a client address is counted in: a.b.c.0/24 for IPv4
 * (also ::ffff:a.b.c.d), the /64 for IPv6. 0, or -1 if ip is not an
 * address. */
int greylist_network(const char *ip, char *out, size_t outlen);

/* A network of greylist_whitelist: an address and a prefix length. */
struct greylist_net {
	int family;		/* AF_INET, AF_INET6 */
	unsigned char addr[16];	/* masked to bits */
	unsigned bits;
};

#define GREYLIST_NETS_MAX 256

/* A comma- or space-separated list of addresses and networks
 * (192.0.2.0/24, 2001:db8::/32, 198.51.100.7). 0 with the networks
 * (free()), or -1 with *error_r (static text). */
int greylist_nets_parse(const char *list, struct greylist_net **nets_r,
    size_t *n_r, const char **error_r);
/* Is ip (an IPv4-mapped IPv6 address counts as IPv4) in one of them? */
bool greylist_nets_match(const struct greylist_net *nets, size_t n,
    const char *ip);

/* The triplet's verdict at time now (seconds): first seen -> DEFER
 * (recorded); seen at least delay seconds ago -> PASS, and passed
 * triplets stay known until expire seconds after their last use.
 * *wait_r: seconds until a DEFER would pass. The database at path is
 * made on first use. */
enum greylist_verdict greylist_check(const char *path, const char *net,
    const char *sender, const char *rcpt, int64_t now, unsigned delay,
    unsigned expire, unsigned *wait_r);

#endif
