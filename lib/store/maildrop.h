#ifndef PETREL_STORE_MAILDROP_H
#define PETREL_STORE_MAILDROP_H
/*
 * A POP3 maildrop (RFC 1939) on INBOX's index (lib/store/mailbox.h), so
 * that POP3 and IMAP see the same messages under the same UIDs. The
 * maildrop is a snapshot taken at login (struct maildir_msg, from
 * lib/maildir/maildir.h, each with its UID); messages are found again by
 * UID when IMAP or another program renamed their files meanwhile.
 *
 * Listing never moves new/ to cur/ (IMAP keeps its \Recent); only the
 * UPDATE state changes files: the deleted messages are expunged through
 * the index and the maildirsize quota is lowered, the retrieved ones get
 * \Seen (and so move to cur/).
 *
 * Functions do blocking I/O: call them from a job thread. Errors:
 * *error_r as in lib/store/mailbox.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/maildir/maildir.h"

/* The lock file in the maildir that keeps a second POP3 session out. */
#define STORE_DROP_LOCK_NAME	"petrel-pop3.lock"

/* Lock the maildrop at maildir against another POP3 session (flock, not
 * waiting; IMAP is not locked out). 0 locked: *fd_r holds the lock until
 * it is closed; 0 with *fd_r = -1: there is no maildir yet (an empty
 * maildrop, nothing locked); 1 another session holds it; -1 error. */
int store_drop_lock(const char *maildir, int *fd_r, const char **error_r);

/* The messages of INBOX (the maildir itself) in delivery order (the
 * time in the file name, then its stable part: for mail petrel
 * delivered, UID order; a file another program dropped in with an older
 * name sorts before newer mail although its UID is higher), each with
 * its UID, size, vsize (RFC822.SIZE: the POP3 octet count), flags, file
 * name and the length of its stable part (key_len). Sizes not known yet
 * are learned (and kept in the index). A maildir without cur/ or new/
 * is an empty maildrop. Free with maildir_msgs_free(). 0 ok, -1 error. */
int store_drop_list(const char *maildir, struct maildir_msg **msgs_r,
    size_t *n_r, const char **error_r);

/*
 * POP3 UIDLs (pop3_uidl.c; docs/migration.md, "POP3 UIDLs"). A message
 * keeps its UIDL while it exists:
 *   filename  the stable part of the file name (m->uidl stays NULL:
 *             the POP3 server makes it);
 *   courier   as Courier pop3d: "UID<n>-<uidv>" from the maildir's
 *             courierpop3dsizelist, which is kept current (and made
 *             with the first message) as Courier keeps it: messages it
 *             does not list get its next numbers;
 *   dovecot   as Dovecot: the P field of the message's dovecot-uidlist
 *             line, else "%08X%08X" of the IMAP UID and UIDVALIDITY;
 *   auto      per maildrop: courier when it has courierpop3dsizelist,
 *             else dovecot when it has dovecot-uidlist, else courier
 *             when it has courierimapuiddb, else filename.
 */
enum store_uidl_format {
	STORE_UIDL_FILENAME,
	STORE_UIDL_COURIER,
	STORE_UIDL_DOVECOT,
	STORE_UIDL_AUTO,
};

/* The value of pop3_uidl_format. 0 ok, -1 unknown. */
int store_uidl_format_parse(const char *name, enum store_uidl_format *fmt_r);
/* The form that applies to the maildrop (auto resolved). */
enum store_uidl_format store_uidl_format_of(const char *maildir,
    enum store_uidl_format fmt);
/* Set msgs[i].uidl (malloc'd) for the form fmt takes in maildir, the
 * listing being in delivery order (store_drop_list). courier may write
 * courierpop3dsizelist; when that fails, the messages that needed a new
 * number are left out of msgs (*n lowered) and the error is logged. */
void store_drop_uidls(const char *maildir, enum store_uidl_format fmt,
    uint32_t uidvalidity, struct maildir_msg *msgs, size_t *n);
/* store_drop_list, then store_drop_uidls with INBOX's UIDVALIDITY. */
int store_drop_list_uidl(const char *maildir, enum store_uidl_format fmt,
    struct maildir_msg **msgs_r, size_t *n_r, const char **error_r);

/* A message's bytes as stored (LF or CRLF line ends) into *data_r
 * (malloc'd, NUL-terminated) and *len_r. A file renamed since the
 * listing is found again by UID (m->name and m->in_cur are updated).
 * 0 ok, 1 the message is gone, -1 error. */
int store_drop_read(const char *maildir, struct maildir_msg *m,
    char **data_r, size_t *len_r, const char **error_r);

/* The UPDATE state (RFC 1939 6): expunge the messages with deleted[i],
 * lower the maildirsize quota by what was removed, add \Seen to those
 * with seen[i] (and not deleted). A message already gone counts as
 * deleted. *deleted_r is the number of messages marked deleted.
 * 0 ok, -1 some deletions were not done (flag failures are only
 * logged). */
int store_drop_update(const char *maildir, const struct maildir_msg *msgs,
    size_t n, const bool *deleted, const bool *seen, size_t *deleted_r,
    const char **error_r);

#endif
