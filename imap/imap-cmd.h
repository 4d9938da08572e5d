#ifndef PETREL_IMAP_CMD_H
#define PETREL_IMAP_CMD_H
/* Helpers shared by the IMAP command files (cmd_*.c): the selected
 * mailbox's view (mailbox_view.c) and folders and names (folders.c). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/imap-private.h"
#include "lib/imap/sort.h"
#include "lib/maildir/maildir.h"
#include "lib/mime/mime.h"

/* ---- mailbox_view.c ---- */

const char *imap_basename_of(const char *path);
/* Untagged FLAGS and PERMANENTFLAGS for the selected mailbox. */
void imap_report_flags(struct imap_session *s);
/* The same when the mailbox has a keyword the last FLAGS did not name:
 * called before any FETCH response that shows flags, so a client never
 * sees a keyword before FLAGS announces it (RFC 3501 7.2.6, 7.4.2). */
void imap_announce_keywords(struct imap_session *s);
/* Untagged "n FETCH (FLAGS ...)" (with the UID when uid). */
void imap_fetch_flags_line(struct imap_session *s, size_t i, bool uid);
/* The indexes of the messages a set names in the selected mailbox,
 * ascending, without repeats ("$": the saved search result, RFC 5182);
 * -1 on a bad set or a sequence number beyond the mailbox. */
int imap_resolve_set(const struct imap_session *s, const char *text,
    bool uid, size_t **idx_r, size_t *n_r);
/* A message's stored bytes (malloc'd) / its wire form. 0 ok, -1 gone. */
int imap_read_message(struct imap_session *s, size_t i, char **raw,
    size_t *len);
int imap_load_message(struct imap_session *s, size_t i, str_t *out);
/* The start of a message's file, up to the end of its header (the line
 * before the empty line; at most max bytes), as stored (LF or CRLF),
 * into *raw (malloc'd, NUL-terminated) and *len. 0 ok, -1 gone. */
int imap_read_header(struct imap_session *s, size_t i, size_t max,
    char **raw, size_t *len);
/* Flag names and keywords to Maildir letters; -1 with a BAD/NO set. */
int imap_flags_to_letters(struct imap_session *s, const struct imap_arg *args,
    size_t n, bool create, char *out, size_t outsz);
/* The target of COPY, MOVE, APPEND (the selected handle when the same
 * folder, *own_r true). NULL with a NO set. */
struct mbox *imap_open_target(struct imap_session *s, const char *name,
    bool *own_r);

/* ---- cmd_fetch.c ---- */

/* The bytes BODY[section] (it: a parsed section item) names in a
 * message's wire form and its MIME tree; nothing for a part that does
 * not exist. Appends to out. */
void imap_section_bytes(const char *wire, size_t wlen,
    const struct mime_part *root, const struct fetch_item *it, str_t *out);

/* FETCH responses with att's items for the messages from..to-1 of the
 * selected mailbox (NOTIFY's MessageNew attributes). */
void imap_fetch_messages(struct imap_session *s, const struct fetch_att *att,
    size_t from, size_t to);

/* ---- cmd_mailbox.c ---- */

/* STATUS items (RFC 3501 6.3.10, RFC 8438 SIZE, RFC 7889 APPENDLIMIT):
 * true when every one is known and there is at least one. */
bool imap_status_items_valid(const struct imap_arg *items, size_t n);
/* The untagged STATUS of the folder at path, under name, for the items
 * (valid), in their order; -1 with *error_r when it cannot be read. */
int imap_status_append(struct imap_session *s, const char *name,
    const char *path, const struct imap_arg *items, size_t n,
    const char **error_r);

/* ---- cmd_expunge.c ---- */

/* Remove the \Deleted messages (only those in uidset, when given). */
int imap_expunge_deleted(struct imap_session *s, const char *uidset,
    bool report);

/* ---- cmd_search.c ---- */

/* RETURN options of ESEARCH (RFC 4731) and ESORT (RFC 5267); SAVE
 * (SEARCHRES, RFC 5182) is for SEARCH only. */
enum {
	RET_MIN = 1, RET_MAX = 2, RET_ALL = 4, RET_COUNT = 8, RET_SAVE = 16,
	RET_PARTIAL = 32, RET_UPDATE = 64,
};
/* The range of PARTIAL (RFC 5267 4.4, negative ranges RFC 9394 3.1):
 * positions lo..hi (1-based, lo <= hi) of the result, counted from its
 * end when neg. */
struct imap_partial {
	bool neg;
	uint32_t lo, hi;
};
/* The RETURN option list at args[0..1], if any: *ret_r 0 when there is
 * none (the classic answer); *skip_r the arguments it took; *part_r
 * the range when RET_PARTIAL. -1 with *error_r on a bad list. */
int imap_search_parse_return(const struct imap_arg *args, size_t n,
    unsigned *ret_r, struct imap_partial *part_r, size_t *skip_r,
    const char **error_r);
/* The positions [*from, *to) of a result of n that a PARTIAL range
 * takes (empty when it is past the end). */
void imap_partial_span(const struct imap_partial *p, size_t n, size_t *from,
    size_t *to);
/* "* ESEARCH (TAG ...) [UID] MIN MAX COUNT ALL PARTIAL" for the hits
 * in the order given: MIN is the first, MAX the last, PARTIAL those in
 * the range of part; then "MODSEQ modseq" unless modseq is 0 (RFC 7162
 * 3.1.5). */
void imap_esearch_reply(struct imap_session *s, const struct imap_cmd *c,
    unsigned ret, const struct imap_partial *part, const uint32_t *hits,
    size_t nhits, uint64_t modseq);
/* CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4): an updating search or
 * sort, the result as UIDs in its order. */
struct imap_context {
	char *tag;
	bool uid, sort;
	struct search_key *root;
	struct sort_prog prog;
	uint32_t *uids;
	size_t n;
	/* the mailbox when last computed: nothing to do while unchanged */
	uint64_t modseq;
	size_t nmsgs;
	uint32_t uidnext;
};
/* RETURN (UPDATE) on a SEARCH or SORT with tag c->tag: keep root (taken
 * over) and prog (NULL for a SEARCH) with the result uids[0..n) (copied);
 * an untagged NO [NOUPDATE] when the session has too many. */
void imap_context_add(struct imap_session *s, const struct imap_cmd *c,
    struct search_key *root, const struct sort_prog *prog,
    const uint32_t *uids, size_t n);
/* After the client was told of every change (EXISTS, EXPUNGE, FETCH):
 * ADDTO and REMOVEFROM for every updating search whose result changed. */
void imap_contexts_report(struct imap_session *s);
void imap_contexts_clear(struct imap_session *s);
/* cmd_sort.c: the UIDs root finds in the order of prog, malloc'd. */
size_t imap_sort_uids(struct imap_session *s, const struct search_key *root,
    const struct sort_prog *prog, uint32_t **uids_r);
/* The indexes (ascending, malloc'd, NULL when none) of the messages
 * the search keys match, and their count. */
void imap_search_run(struct imap_session *s, const struct search_key *root,
    size_t **idx_r, size_t *n_r);

/* ---- folders.c ---- */

struct imap_names {
	char **v;
	size_t n, cap;
};

void imap_names_add(struct imap_names *l, const char *name);
void imap_names_free(struct imap_names *l);
int imap_names_cmp(const void *a, const void *b);
bool imap_names_has(const struct imap_names *l, const char *name);
bool imap_name_valid(const char *name);
bool imap_is_dir(const char *path);
/* Every Maildir++ folder of the maildir, sorted. */
int imap_list_folders(const char *maildir, struct imap_names *out);
bool imap_has_children(const struct imap_names *l, const char *name);
/* The special-use attribute of a folder ("\Sent"), or NULL. */
const char *imap_special_attr(const char *folder);
/* The special-use attributes of a folder (malloc'd, "\Drafts \Sent"),
 * or NULL: those CREATE gave it (its IMAP_SPECIAL_USE_FILE), else the
 * one of its name. At most IMAP_SPECIAL_USE_MAX (lib/base/limits.h)
 * bytes of the file are read, and only the attributes of imap_use_attr() are taken. */
#define IMAP_SPECIAL_USE_FILE "petrel-special-use"
char *imap_folder_special(const struct imap_session *s, const char *folder);
/* Keep attrs (valid, space-separated) as the folder's special use:
 * written to a temporary file, synced, renamed. 0 ok, -1 *error_r. */
int imap_folder_set_special(const struct imap_session *s, const char *folder,
    const char *attrs, const char **error_r);
/* A special-use attribute a folder may be given (RFC 6154 2), in its
 * canonical case, or NULL (unknown, or \All and \Flagged). */
const char *imap_use_attr(const char *attr);
/* Folders to the names the client sees, in place, sorted again. */
void imap_names_to_client(const struct imap_session *s,
    struct imap_names *l);
/* The folder of a name as LIST showed it (imap_mailbox_name's
 * inverse), pointing into name; NULL if no folder has that name. */
const char *imap_folder_listed(const struct imap_session *s,
    const char *name);
/* The subscribed folders, sorted, each once; -1 (logged) when a file
 * cannot be read. */
int imap_read_subscriptions(const struct imap_session *s,
    struct imap_names *out);
/* Subscribe (on) or unsubscribe one folder; -1 (logged) on failure. */
int imap_set_subscription(const struct imap_session *s, const char *folder,
    bool on);

#endif
