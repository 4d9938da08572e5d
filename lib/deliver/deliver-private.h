#ifndef PETREL_DELIVER_PRIVATE_H
#define PETREL_DELIVER_PRIVATE_H
/*
 * Between deliver.c (the copies, the queue) and sieve.c (the scripts of
 * each local recipient).
 */
#include <stdbool.h>
#include <stdint.h>

#include "lib/base/str.h"
#include "lib/deliver/deliver.h"

struct route_dest;

/* The message as a script reads it (prefix and body, CRLF), made once
 * per message when a first script runs. */
struct deliver_wire {
	str_t data;
	uint64_t size;		/* as stored (LF form) */
	bool made;
};

/* One copy into folder_dir (the maildir or one of its folders) with the
 * Maildir flag letters (NULL or "": none, into new/). */
int deliver_maildir_to(const struct deliver_ctx *ctx,
    const struct deliver_msg *msg, const struct route_dest *d,
    const char *folder_dir, const char *flags, const char **error_r);

void deliver_log(const struct deliver_msg *msg, const char *orig,
    const char *to, const char *relay, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Run the Sieve scripts of maildir destination d of recipient orig and
 * carry out their actions. 0: no script applies, the caller stores the
 * usual copy; 1: done (result counted, or result->reject set when only
 * is true: d is the message's one destination and may_refuse is set);
 * -1: a copy failed (*error_r).
 */
int deliver_sieve(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *orig, const struct route_dest *d, bool only,
    struct deliver_wire *wire, struct deliver_result *result,
    const char **error_r);

#endif
