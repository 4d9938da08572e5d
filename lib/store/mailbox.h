#ifndef PETREL_STORE_MAILBOX_H
#define PETREL_STORE_MAILBOX_H
/*
 * One Maildir folder as an IMAP mailbox: UIDs, UIDVALIDITY, flags and
 * keywords, \Recent, and a per-folder index and cache so that opening a
 * large folder does not read every message file or directory entry.
 *
 * Files in the folder directory (next to cur/ new/ tmp/):
 *   petrel-index   UIDVALIDITY, UIDNEXT, the mtimes of cur/ and new/
 *                  when last synced, and per message: uid, file name,
 *                  size, vsize (RFC822.SIZE), internaldate (or "not
 *                  looked at yet": a sync only lists directories, and
 *                  a message's file is read when a command first needs
 *                  it). Written to a temporary name and renamed, only
 *                  when it is first built and when the log has grown
 *                  to a quarter of it (compaction).
 *   petrel-index.log  append-only change log beside petrel-index: one
 *                  record per change (flags, expunges, new UIDs, learned
 *                  sizes, cache offsets, the directory mtimes after the
 *                  change), so that a change costs the same in a folder
 *                  of 1,000 and of 1,000,000 messages; every handle
 *                  applies only the records it has not seen.
 *   petrel-cache   append-only records of cached per-message strings
 *                  (ENVELOPE, BODYSTRUCTURE, BODY, Date), by uid.
 *   petrel-sort    append-only per-message sort records (the SORT and
 *                  THREAD keys, made by lib/imap/sort.c), by uid.
 *   petrel-lock    flock()ed around every sync and change, so several
 *                  processes agree on UIDs.
 *   petrel-recent  the first UID no session has taken as \Recent
 *                  (see mailbox.c).
 *   petrel-expunged  the UIDs expunged and the modseq of each expunge
 *                  (RFC 7162 VANISHED), bounded (mbox_expunged.c).
 *   dovecot-keywords  keyword names for the letters a..z (Dovecot's
 *                  format: "<index> <name>" lines; index 0 = 'a'),
 *                  shared with Dovecot.
 * A missing or corrupt index is rebuilt from the Maildir. When it is
 * rebuilt and a Dovecot "dovecot-uidlist" or Courier "courierimapuiddb"
 * exists in the folder, their UIDVALIDITY and the UIDs of the messages
 * they list are kept (matched on the file name before ':'). Those files
 * are then kept current when UIDs are given out, and made for a folder
 * created beside folders that have them (mbox_legacy.c), so that the
 * old server shows the same UIDs after a rollback.
 *
 * Flags are the Maildir ":2," letters in the file names (D F P R S T
 * and keywords a-z), so other Maildir tools agree.
 *
 * Functions do blocking I/O: call them from a job thread. One struct
 * mbox is used by one thread at a time.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/base/str.h"

struct mbox_msg {
	/* (ordered for size: 72 bytes on LP64, one per message and
	   session) */
	char *name;		/* current file name */
	uint64_t size;		/* bytes on disk */
	uint64_t vsize;		/* RFC822.SIZE: CRLF line ends */
	long long internaldate;	/* seconds since the epoch: the file's
				   mtime when first looked at */
	uint64_t cache_off;	/* internal: offset in petrel-cache, 0 none */
	uint64_t modseq;	/* CONDSTORE (RFC 7162): the folder's modseq
				   at the message's last change (arrival,
				   flags), >= 1 once published */
	uint64_t flagbits;	/* the Maildir letters: bit k for 'A' + k
				   (k < 26), bit 26 + k for 'a' + k; see
				   mbox_msg_flags() */
	uint32_t uid;
	bool in_cur;		/* in cur/ (else new/) */
	bool recent;		/* \Recent for this mbox handle (RFC 3501
				   2.3.2: this handle took it, being the
				   first read-write one to sync after it
				   arrived, see petrel-recent; a read-only
				   handle shows those nobody took) */
	bool expunged;		/* the file is gone (see mbox_sync) */
	bool flags_changed;	/* flags differ from the last time the
				   caller cleared this */
	bool info_pending;	/* size, vsize and internaldate are not
				   known yet (all 0): a sync only lists
				   the directories; mbox_msg_info() or
				   mbox_msg_learn() fills them in */
	bool cache_pend;	/* internal: has a record not yet written */
};

#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct mbox_msg) == 72,
    "struct mbox_msg: 72 bytes on LP64, one per message and session");
#endif

/* The bit of a Maildir flag letter in mbox_msg's flagbits, 0 for a
 * character that is not an ASCII letter. */
static inline uint64_t
mbox_flag_bit(char letter)
{
	unsigned char c = (unsigned char)letter;

	if (c >= 'A' && c <= 'Z')
		return (uint64_t)1 << (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (uint64_t)1 << (26 + (c - 'a'));
	return 0;
}

/* The bits of a string of flag letters (other characters are
 * ignored). */
static inline uint64_t
mbox_flags_bits(const char *letters)
{
	uint64_t bits = 0;

	for (; *letters != '\0'; letters++)
		bits |= mbox_flag_bit(*letters);
	return bits;
}

/* The letters of bits, sorted as Maildir names have them (ASCII order:
 * A-Z, then a-z), NUL-terminated into out, which is returned. */
static inline const char *
mbox_bits_flags(uint64_t bits, char out[53])
{
	size_t n = 0;

	for (unsigned int k = 0; k < 52; k++)
		if ((bits & ((uint64_t)1 << k)) != 0)
			out[n++] = (char)(k < 26 ? 'A' + k : 'a' + (k - 26));
	out[n] = '\0';
	return out;
}

/* Whether the message has the flag letter (false for a non-letter). */
static inline bool
mbox_msg_has(const struct mbox_msg *m, char letter)
{
	return (m->flagbits & mbox_flag_bit(letter)) != 0;
}

/* The message's flag letters, sorted, into out (returned). */
static inline const char *
mbox_msg_flags(const struct mbox_msg *m, char out[53])
{
	return mbox_bits_flags(m->flagbits, out);
}

struct mbox {
	char *path;		/* the folder directory */
	uint32_t uidvalidity;
	uint32_t uidnext;
	/* The messages, ascending uid (expunged ones included until
	 * mbox_purge), are mbox_msg(mb, 0) .. mbox_msg(mb, n - 1). The
	 * entries (72 bytes) sit in slab in no particular order and seq
	 * holds their slot numbers in sequence order, so removing a
	 * message moves 4 bytes per later message instead of 72: at
	 * 1,000,000 messages an EXPUNGE moved about 50 MB per session
	 * that had the folder open. */
	struct mbox_msg *slab;
	uint32_t *seq;		/* slot in slab of message i + 1 */
	size_t n;
	char *keywords[26];	/* names for 'a'..'z', NULL if unused */
	bool readonly;		/* opened for EXAMINE: never moves new/ to
				   cur/, never changes files */
	size_t nrecent;		/* msgs with recent set (a caller that sets
				   or clears recent itself adjusts it) */
	void *priv;		/* internal */
};

/* The entry of the message at index i (< n): sequence number i + 1.
 * The pointer stays valid until the next sync, purge or other call that
 * may add messages. */
static inline struct mbox_msg *
mbox_msg(const struct mbox *mb, size_t i)
{
	return &mb->slab[mb->seq[i]];
}

/* Open the folder at path (it must exist with cur/ and new/) and sync
 * it (see mbox_sync). With readonly, new/ messages stay where they are
 * and nothing is written except the index and cache. 0 ok, -1 error
 * (*error_r: static or per-thread message). */
int mbox_open(const char *path, bool readonly, struct mbox **mb_r,
    const char **error_r);
void mbox_close(struct mbox **mb);

/*
 * Bring the handle up to date with the folder, under the lock:
 *  - when the mtimes of cur/ and new/ (nanoseconds) and the index file
 *    are unchanged since the last sync, nothing is read;
 *  - otherwise the index is re-read if another process rewrote it, and
 *    the directories that changed are listed;
 *  - new files get the next UIDs in order of their name's stable part;
 *    unless readonly, files in new/ are moved to cur/ (keeping their
 *    name, with ":2," appended) and marked recent in this handle;
 *  - files that disappeared are marked expunged (kept in msgs until
 *    mbox_purge), files whose flags changed get flags_changed.
 * The index is written back if anything changed. *added_r (if not NULL)
 * is the number of messages appended to msgs. 0 ok, -1 error, -2 the
 * folder was deleted, re-created (its cur/ is another directory, or it
 * got another UIDVALIDITY) or must be re-indexed: the handle is then
 * useless, every later sync fails the same way at once, and nothing is
 * written to the folder any more (the caller closes it). Other calls
 * that sync fail (< 0) then too.
 */
int mbox_sync(struct mbox *mb, size_t *added_r, const char **error_r);

/* Remove the expunged entries from msgs. seqs_r (malloc'd, may be
 * NULL) receives their 1-based positions before removal, in
 * descending order, as EXPUNGE responses must be sent; *n_r their
 * count. */
void mbox_purge(struct mbox *mb, uint32_t **seqs_r, size_t *n_r);
/* The same, with their uids (in the same order) in *uids_r. */
void mbox_purge_uids(struct mbox *mb, uint32_t **seqs_r, uint32_t **uids_r,
    size_t *n_r);

/* The uids of the messages that got flags_changed since the last
 * call (malloc'd into *uids_r, ascending, may name messages expunged or
 * purged since), and their count. Returns -1 when more changed than
 * were kept track of: the caller then looks at every message's
 * flags_changed. So a session that reports flag changes after each
 * command does not walk the whole folder. */
long mbox_take_changed(struct mbox *mb, uint32_t **uids_r);

/* The indexes (ascending, malloc'd into *idx_r, may be NULL when 0) of
 * the messages that are not expunged and have the T (\Deleted) flag,
 * and their count: EXPUNGE without a walk of the whole folder. */
size_t mbox_deleted(struct mbox *mb, size_t **idx_r);

/* Index of the message with this uid in msgs, or -1. Binary search. */
long mbox_find_uid(const struct mbox *mb, uint32_t uid);

/* Set a message's flags (Maildir letters; sorted and de-duplicated
 * here) by renaming its file in cur/ (a message in new/ moves to cur/).
 * A file that has vanished marks the message expunged and returns 1.
 * 0 ok, -1 error. Updates msgs[i]; the index is written at the next
 * mbox_sync or mbox_flush. When the file was renamed by someone else
 * this re-syncs, so (as after mbox_expunge and mbox_flush) new messages
 * may have been appended to msgs: existing entries never move. */
int mbox_set_flags(struct mbox *mb, size_t i, const char *flags,
    const char **error_r);
/* mbox_set_flags, but only when the message's modseq is not above
 * unchangedsince (CONDSTORE's UNCHANGEDSINCE, RFC 7162 3.1.3), checked
 * under the lock against the published state: 2 when it is (nothing
 * changed). unchangedsince 0: no condition. */
int mbox_set_flags_cond(struct mbox *mb, size_t i, const char *flags,
    uint64_t unchangedsince, const char **error_r);
/* Write the index now if it has unwritten changes (after merging what
 * other processes wrote: msgs may grow). */
int mbox_flush(struct mbox *mb, const char **error_r);

/* Unlink the files of messages i (an array of indexes into msgs) and
 * mark them expunged; the index is written at once. Files already gone
 * count as done. 0 ok, -1 error. */
int mbox_expunge(struct mbox *mb, const size_t *idx, size_t n,
    const char **error_r);

/* Make size, vsize and internaldate of msgs[i] known (see
 * info_pending): stat() the file, and read it when its name carries
 * no W=. A file that has vanished re-syncs once (it may have been
 * renamed for a flag change), so msgs may grow as after mbox_sync.
 * Learned values are written to the index at the next sync, flush or
 * close. 0 ok, 1 the message is gone, -1 error. */
int mbox_msg_info(struct mbox *mb, size_t i, const char **error_r);
/* The caller has read the whole file of msgs[i]: st from its fstat(),
 * vsize the bytes with every bare LF counted as CRLF. Fills in what is
 * pending, without another look at the file. */
void mbox_msg_learn(struct mbox *mb, size_t i, const struct stat *st,
    uint64_t vsize);

/* Full path of a message's file (malloc'd). */
char *mbox_msg_path(const struct mbox *mb, const struct mbox_msg *m);

/* Keyword name -> its letter 'a'..'z'. With create, an unknown keyword
 * gets the first free letter (dovecot-keywords is rewritten); 0 when
 * unknown (and not created) or all 26 letters are taken. Names compare
 * case-insensitively (RFC 3501 says keywords are case-insensitive). */
char mbox_keyword_letter(struct mbox *mb, const char *name, bool create);

/* Cached strings per message, by kind. get returns a malloc'd copy or
 * NULL when not cached (it still works for expunged messages until
 * mbox_purge); put appends to petrel-cache. Failures to write the
 * cache are not errors (it is only a cache). */
enum mbox_cache_kind {
	MBOX_CACHE_ENVELOPE, MBOX_CACHE_BODYSTRUCTURE, MBOX_CACHE_BODY,
	MBOX_CACHE_PREVIEW,	/* RFC 8970 PREVIEW text (UTF-8) */
	MBOX_CACHE_KINDS
};
char *mbox_cache_get(struct mbox *mb, size_t i, enum mbox_cache_kind kind);
void mbox_cache_put(struct mbox *mb, size_t i, enum mbox_cache_kind kind,
    const char *value);

/* Sort records (petrel-sort, see mbox_sort.c): a short opaque record
 * per message that the SORT and THREAD code makes from the message's
 * keys, kept for every session. A command loads them all (one read of
 * one file), adds the ones it had to make, and finishes (the new ones
 * are appended; the file is rewritten when damaged or mostly dead).
 * Failures only cost speed. */
#define MBOX_SORTREC_MAX (32 * 1024)	/* bytes of one record */
struct mbox_sortrecs {
	/* per msgs[i] for i < n: its record (NULL: none) and length;
	   valid until mbox_sortrecs_finish */
	const unsigned char **rec;
	uint32_t *len;
	size_t n;
	/* internal */
	struct mbox *mb;
	char *buf;
	struct sort_cached *cached;	/* the contents, when shared */
	size_t nrecs, live, npend;
	size_t next;		/* where the next record's UID may be */
	bool bad, missing;
	str_t pend;
};
void mbox_sortrecs_load(struct mbox *mb, struct mbox_sortrecs *sr);
/* A new record for msgs[i] (written by mbox_sortrecs_finish). */
void mbox_sortrecs_add(struct mbox_sortrecs *sr, size_t i, const void *rec,
    size_t len);
/* Write what was added, and free. The handle must still be the one
 * loaded with (msgs not purged meanwhile). */
void mbox_sortrecs_finish(struct mbox_sortrecs *sr);
/* The file's parser, for the fuzzer: fn for every record of a
 * petrel-sort image in buf, in order. 0 the whole image was good, -1 it
 * stopped at a bad header or record. */
typedef void mbox_sortrec_fn(void *ctx, uint32_t uid,
    const unsigned char *rec, size_t len);
int mbox_sortrec_parse(const unsigned char *buf, size_t len,
    uint32_t uidvalidity, mbox_sortrec_fn *fn, void *ctx);

/* After the caller has added files itself (APPEND, COPY, MOVE into
 * this folder): sync, then the uid of the message whose file name
 * starts with the stable part of name (up to ':'), or 0 if not found.
 * The file's mtime is its internaldate: the caller sets it before the
 * file has its name (maildir_tmp_set_mtime), so no session ever sees
 * another. */
uint32_t mbox_uid_of_added(struct mbox *mb, const char *name,
    const char **error_r);

/* The folder's lock (petrel-lock), which every sync takes: a caller
 * that adds several files itself holds it around adding them, so no
 * sync (of any handle, in any process) sees some and not the others.
 * Nothing else may be called on mb (nor on another handle of the same
 * folder) while it is held. 0 ok, -1 error. */
int mbox_lock(struct mbox *mb, const char **error_r);
void mbox_unlock(struct mbox *mb);

/* UIDVALIDITY and UIDNEXT and the message count of a folder without
 * keeping a handle (STATUS): cheap when the index is current. unseen_r
 * counts messages without S, recent_r those no session has taken as
 * \Recent yet (and those in new/). */
int mbox_status(const char *path, uint32_t *uidvalidity_r,
    uint32_t *uidnext_r, uint32_t *messages_r, uint32_t *unseen_r,
    uint32_t *recent_r, const char **error_r);

/*
 * Modification sequences (RFC 7162). Every published change to the
 * folder -- a message's arrival, a flag or keyword change, an expunge --
 * raises the folder's modseq by one, and a changed message takes the
 * new value (all the changes published in one index write share it).
 * Changes are published by mbox_flush, mbox_sync and mbox_expunge.
 */
/* Does msgs hold expunged messages not purged yet? */
bool mbox_has_expunged(const struct mbox *mb);
/* The folder's highest modseq as this handle knows it (>= 1). */
uint64_t mbox_highestmodseq(const struct mbox *mb);
/* The same for STATUS, without keeping a handle (cheap when the index
 * is current). 0 ok, -1 error. */
int mbox_status_modseq(const char *path, uint64_t *modseq_r,
    const char **error_r);
/* The UIDs expunged after modseq since (ascending, malloc'd into
 * *uids_r, NULL when none), from petrel-expunged (mbox_expunged.c).
 * *exact_r false: the folder does not remember that far back (or the
 * record is damaged), and the caller must take every UID below UIDNEXT
 * that is not in the folder as possibly expunged (RFC 7162 3.2.5.1
 * allows reporting more). 0 ok (also when not exact). */
int mbox_vanished(struct mbox *mb, uint64_t since, uint32_t **uids_r,
    size_t *n_r, bool *exact_r);

/* The sum of the RFC822.SIZEs of a folder's messages (STATUS SIZE, RFC
 * 8438), from the index: a message whose size the index does not know
 * yet takes it from the W= of its file name, or else its file is read
 * once (and the size kept in the index). 0 ok, -1 error. */
int mbox_status_size(const char *path, uint64_t *size_r,
    const char **error_r);
/* STATUS DELETED (RFC 9051 6.3.11): the messages flagged \Deleted. */
int mbox_status_deleted(const char *path, uint32_t *deleted_r,
    const char **error_r);

/* Object ids (RFC 8474) and the save date (RFC 8514), see
 * mbox_objectid.c. An id is 1 to MBOX_OBJECTID_MAX letters, digits, '-'
 * and '_'. */
#define MBOX_OBJECTID_MAX 255
bool mbox_objectid_valid(const char *s, size_t len);
/* The folder's MAILBOXID (made and kept in petrel-mailboxid the first
 * time). 0 ok, -1 error. */
int mbox_mailboxid(const char *path, char id[MBOX_OBJECTID_MAX + 1],
    const char **error_r);
/* The MAILBOXID if the folder has one already (nothing is written):
 * 1 read, 0 none yet, -1 error or a damaged file. */
int mbox_mailboxid_peek(const char *path, char id[MBOX_OBJECTID_MAX + 1],
    const char **error_r);
/* The EMAILID of the message whose file has this name (no I/O). */
void mbox_emailid(const char *name, char id[MBOX_OBJECTID_MAX + 1]);
/* The time the message was saved into its folder, from its file name,
 * or -1 when the name does not tell. */
long long mbox_savedate(const char *name);

#endif
