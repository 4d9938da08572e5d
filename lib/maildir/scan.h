#ifndef PETREL_SCAN_H
#define PETREL_SCAN_H
/* Listing the messages of one maildir folder (new/ and cur/), for POP3
 * and IMAP. Call from a job thread: it reads directories and, for files
 * without a W= size, the files themselves. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/maildir/maildir.h"

/* Messages sorted by their stable key (delivery order for our names).
 * 0 ok, -1 error. */
int maildir_scan(const char *maildir, struct maildir_msg **msgs_r,
    size_t *n_r, const char **error_r);
/* Give the message the flags (letters, sorted): a message in new/ moves
 * to cur/ (Maildir: a read message is in cur/ with ":2,<flags>").
 * Updates m. 0 ok, -1 error (e.g. the file is gone). */
int maildir_msg_set_flags(const char *maildir, struct maildir_msg *m,
    const char *flags, const char **error_r);

#endif
