#ifndef PETREL_SUBSCRIPTIONS_H
#define PETREL_SUBSCRIPTIONS_H
/*
 * IMAP subscriptions of a Maildir++ (SUBSCRIBE, LSUB), kept in the files
 * the servers before petrel left at the maildir's root, so that a move
 * to petrel and back loses none:
 *
 *  "subscriptions" (Dovecot; petrel's own file too):
 *    version 1: one folder name a line, '.' between levels
 *               ("Work.Projects");
 *    version 2: the first line "V\t2", an empty line, then one name a
 *               line with a TAB between levels ("Work\tProjects") and
 *               \001 escaping \001, TAB, CR and LF.
 *  "courierimapsubscribed" (Courier-IMAP): the names in Courier's
 *    namespace, one a line: "INBOX", "INBOX.Work.Projects" ("INBOX" in
 *    any case); other lines ("shared.*", "#shared.*") are other
 *    namespaces.
 *
 * Names here are folders: "INBOX" (the maildir itself) or a Maildir++
 * folder's name without its leading dot, modified UTF-7 as on disk,
 * whatever the IMAP client calls them (imap/folders.c maps names).
 * A line that names no such folder is never shown and is kept as it is
 * when the file is rewritten.
 *
 * Errors: error_r as in maildir.h.
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

#define MAILDIR_SUBS_DOVECOT "subscriptions"
#define MAILDIR_SUBS_COURIER "courierimapsubscribed"

enum maildir_subs_format {
	MAILDIR_SUBS_DOVECOT1,	/* "subscriptions" without a header */
	MAILDIR_SUBS_DOVECOT2,	/* "subscriptions" starting "V\t2\n\n" */
	MAILDIR_SUBS_COURIER1,	/* "courierimapsubscribed" */
};

/* Does the maildir have a subscription file of either kind? */
bool maildir_subs_exist(const char *maildir);

/* The folder one line of a file in format fmt names (line without its
 * LF): 1 with *folder_r set (emptied first), 0 when it names none. */
int maildir_subs_parse_line(enum maildir_subs_format fmt, const char *line,
    size_t len, str_t *folder_r);
/* The line (without LF) that names folder in format fmt, appended to
 * out. folder: "INBOX" or a valid Maildir++ folder name. */
void maildir_subs_format_line(enum maildir_subs_format fmt,
    const char *folder, str_t *out);

/* Call fn(ctx, folder) for every folder subscribed in either file (both
 * when both exist: a folder may come twice). No file: no call. 0 ok, -1
 * when a file cannot be read. */
typedef void maildir_subs_fn(void *ctx, const char *folder);
int maildir_subs_read(const char *maildir, maildir_subs_fn *fn, void *ctx,
    const char **error_r);

/* Subscribe (on) or unsubscribe the n folders in every file the maildir
 * has, each in its own format and version, its other lines kept; when
 * it has neither, "subscriptions" is made (version 1). Each file is
 * replaced whole: written in tmp/, fsync'd, renamed over, the directory
 * fsync'd; an exclusive lock on the maildir keeps two sessions from
 * losing each other's change. A file that would not change is not
 * written. 0 ok, -1 error. */
int maildir_subs_set(const char *maildir, const char *const *folders,
    size_t n, bool on, const char **error_r);

#endif
