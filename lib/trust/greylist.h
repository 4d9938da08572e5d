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

/* The triplet's verdict at time now (seconds): first seen -> DEFER
 * (recorded); seen at least delay seconds ago -> PASS, and passed
 * triplets stay known until expire seconds after their last use.
 * *wait_r: seconds until a DEFER would pass. The database at path is
 * made on first use. */
enum greylist_verdict greylist_check(const char *path, const char *net,
    const char *sender, const char *rcpt, int64_t now, unsigned delay,
    unsigned expire, unsigned *wait_r);

#endif
