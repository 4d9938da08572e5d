#ifndef PETREL_SCAN_H
#define PETREL_SCAN_H
/* Listing the messages of one maildir folder (new/ and cur/), for POP3
 * and IMAP. Call from a job thread: it reads directories and, for files
 * without a W= size, the files themselves. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct maildir_msg {
	char *name;		/* file name in new/ or cur/ */
	bool in_cur;
	uint64_t size;		/* bytes on disk (LF line ends) */
	uint64_t vsize;		/* bytes with CRLF line ends (RFC822.SIZE) */
	size_t key_len;		/* name[0..key_len): stable across flag changes */
	char flags[64];		/* ":2," flags, sorted */
};

/* Messages sorted by their stable key (delivery order for our names).
 * 0 ok, -1 error. */
int maildir_scan(const char *maildir, struct maildir_msg **msgs_r,
    size_t *n_r, const char **error_r);
void maildir_msgs_free(struct maildir_msg **msgs, size_t n);
/* The full path of a message. malloc'd. */
char *maildir_msg_path(const char *maildir, const struct maildir_msg *m);
/* Give the message the flags (letters, sorted): a message in new/ moves
 * to cur/ (Maildir: a read message is in cur/ with ":2,<flags>").
 * Updates m. 0 ok, -1 error (e.g. the file is gone). */
int maildir_msg_set_flags(const char *maildir, struct maildir_msg *m,
    const char *flags, const char **error_r);

#endif
