#ifndef PETREL_STORE_MBOX_INT_H
#define PETREL_STORE_MBOX_INT_H
/*
 * Internals of the mailbox index (lib/store/mailbox.h), shared by
 * mailbox.c (sync and the public API), mbox_index.c (the petrel-index
 * file, dovecot-uidlist and courierimapuiddb import), mbox_log.c (the
 * petrel-index.log change log) and mbox_cache.c (petrel-cache). Nothing outside lib/store/mailbox*.c and mbox_*.c
 * includes this.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/base/err.h"
#include "lib/base/str.h"
#include "lib/store/mailbox.h"
#include "lib/maildir/maildir.h"

#define MBOX_INDEX_NAME		"petrel-index"
#define MBOX_LOG_NAME		"petrel-index.log"
#define MBOX_CACHE_NAME		"petrel-cache"
#define MBOX_SORT_NAME		"petrel-sort"
#define MBOX_LOCK_NAME		"petrel-lock"
#define MBOX_KEYWORDS_NAME	"dovecot-keywords"
#define MBOX_DOVECOT_UIDLIST	"dovecot-uidlist"
#define MBOX_COURIER_UIDDB	"courierimapuiddb"
#define MBOX_RECENT_NAME	"petrel-recent"
#define MBOX_EXPUNGED_NAME	"petrel-expunged"

/* An index (or uidlist) larger than this is garbage, not a folder: a
 * 100,000-message index is about 12 MB. */
#define MBOX_INDEX_MAX		((size_t)1 << 30)

struct mbox_priv {
	int lock_fd;		/* petrel-lock, flock()ed during changes */
	int index_fd;		/* the petrel-index last read or written
				   (kept open: its inode cannot be reused
				   while we hold it, so stat(path) telling
				   the same dev/ino means the same file) */
	bool loaded;		/* msgs hold a known state of the folder */
	bool dirty;		/* msgs differ from what petrel-index says */
	bool durable;		/* the pending write records new UIDs:
				   fsync it */
	size_t slab_cap;	/* allocated entries of mb->slab */
	size_t nslab;		/* slots of slab used or freed */
	uint32_t *seq_mem;	/* the allocation mb->seq points into */
	size_t seq_off;		/* mb->seq - seq_mem */
	size_t seq_cap;		/* allocated entries of seq_mem */
	uint32_t *freeslots;	/* slab slots purged, for the next
				   messages added */
	size_t nfree, free_cap;
	char *buf;		/* index text the names of the first
				   loaded entries point into */
	size_t buflen;
	struct timespec cur_mtime;	/* cur/ mtime when last listed, or
					   {0, 0}: list it next time */
	struct timespec new_mtime;
	uint32_t cache_id;	/* petrel-cache the cache_offs refer to
				   (0: unknown) */
	uint32_t cache_dead;	/* messages removed with cache records */
	uint32_t cache_recount_at;	/* cache_dead at which to count the
					   live records again */
	int cache_fd;		/* petrel-cache, O_APPEND, or -1 */
	bool cache_failed;	/* it cannot be opened or created: stop
				   trying (and logging) in this handle */
	uint32_t cache_fd_id;	/* its id */
	str_t cache_pend;	/* records put but not yet appended: a FETCH
				   of many messages appends them in a few
				   writes (mbox_cache_flush) */
	uint32_t *pend_uid;	/* per pending record: its message's uid */
	size_t *pend_off;	/* and its offset in cache_pend */
	size_t npend, pend_cap;
	struct stat kw_st;	/* dovecot-keywords when last read */
	bool kw_seen;
	size_t *touched;	/* msgs whose name changed in this sync */
	size_t ntouched, touched_cap;
	bool keep_new;		/* writable, but new/ files stay in new/
				   (a POP3 maildrop takes no \Recent) */
	bool dead;		/* the folder was deleted, re-created or
				   re-indexed: every sync fails with -2 and
				   nothing is written any more */
	dev_t cur_dev;		/* cur/ when opened: another one there */
	ino_t cur_ino;		/* means the folder was re-created */
	char *mailboxid;	/* petrel-mailboxid when opened, or NULL:
				   cur/ may get the old inode number back
				   when the folder is re-created, the id
				   does not come back */
	uint32_t recent_uid;	/* petrel-recent as last read or written:
				   no session has taken the messages from
				   this uid on as \Recent (0: not read) */
	/* the change log (mbox_log.c) */
	int log_fd;		/* petrel-index.log of log_id, or -1 */
	uint32_t log_id;	/* the log the base names (0: none yet) */
	uint64_t log_seq;	/* last record applied (or in the base) */
	uint64_t log_off;	/* bytes of log_fd read and applied */
	bool log_torn;		/* garbage after log_off: truncate it
				   before appending */
	uint64_t base_size;	/* bytes of the base last read or written */
	uint64_t modseq;	/* the folder's highest modseq (RFC 7162)
				   as last read or published; 0: none yet
				   (a new or an older index) */
	uint32_t *mod;		/* uids changed in a way that takes a new
				   modseq at the next publication (arrival,
				   flags; also in chg) */
	size_t nmod, mod_cap;
	bool xlog_reset;	/* the index was rebuilt: petrel-expunged
				   starts over at the next publication */
	bool rewrite;		/* the base must be rewritten (rebuilt,
				   cache offsets reset): no log record */
	uint32_t *chg;		/* uids whose entry changed (may repeat) */
	size_t nchg, chg_cap;
	uint32_t *gone;		/* uids expunged here, to log */
	size_t ngone, gone_cap;
	uint32_t messages, unseen, recent;	/* of msgs, not expunged */
	size_t nexpunged;	/* msgs marked expunged, until mbox_purge */
	uint32_t *xuids;	/* their uids (for mbox_purge) */
	size_t nxuids, xuids_cap;
	uint32_t *fchg;		/* uids that got flags_changed (for
				   mbox_take_changed) */
	size_t nfchg, fchg_cap;
	bool fchg_over;		/* more than FCHG_MAX: not kept */
	bool courier_kw_importing;	/* mbox_legacy_kw_import() runs:
					   nothing to write back */
	uint32_t *del;		/* uids that had T (\Deleted) in their name
				   (may repeat or be stale: mbox_deleted) */
	size_t ndel, del_cap;
};

static inline struct mbox_priv *
mbox_priv(const struct mbox *mb)
{
	return mb->priv;
}

/* ---- mailbox.c ---- */

/* The shared error helper (lib/base/err) with no finer code. */
#define mbox_fail(error_r, ...) err_fail((error_r), ERR_OTHER, __VA_ARGS__)
/* mbox_open for a handle that may change files (flags, expunges) but
 * never moves new/ to cur/ nor marks anything recent: the POP3
 * maildrop (maildrop.c). */
int mbox_open_keep_new(const char *path, struct mbox **mb_r,
    const char **error_r);
/* A 64-bit hash of data, chained from seed (checksums and hash
 * tables; not cryptographic). Byte-order independent. */
uint64_t mbox_hash64(uint64_t seed, const void *data, size_t len);
/* Maildir flags of a file name ("" without a valid ":2," info). */
void mbox_name_flags(const char *name, char flags[MAILDIR_FLAGS_MAX + 1]);
/* Free a msgs[] name unless it points into the index buffer. */
void mbox_name_free(struct mbox_priv *p, char *name);
/* msgs[] entry of uid changed (name, sizes, cache offset): it goes
 * into the next log record. */
void mbox_chg_add(struct mbox *mb, uint32_t uid);
/* msgs[] entry of uid changed in a way that gives it a new modseq
 * (and goes into the next log record). */
void mbox_mod_add(struct mbox *mb, uint32_t uid);
/* The modseq a folder whose history is unknown starts above: the
 * microseconds since the epoch (see mbox_expunged.c). */
uint64_t mbox_modseq_floor(void);
/* A random non-zero 32-bit id. */
uint32_t mbox_random_id(void);

/* ---- mbox_index.c ---- */

enum mbox_index_result {
	MBOX_INDEX_OK,
	MBOX_INDEX_MISSING,
	MBOX_INDEX_CORRUPT,
};

struct mbox_index {
	bool header_ok;		/* the header line parsed (even if the
				   rest is corrupt) */
	uint32_t version;	/* 1 or 2 */
	uint32_t log_id;	/* version 2: its petrel-index.log */
	uint64_t log_seq;	/* the last log record it contains */
	uint64_t modseq;	/* version 2: highest modseq (0: none) */
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct timespec cur_mtime;
	struct timespec new_mtime;
	uint32_t cache_id;
	uint32_t cache_dead;
	uint32_t messages, unseen, recent;
	struct mbox_msg *msgs;	/* names point into buf */
	size_t n;
	size_t cap;		/* entries msgs has room for (>= n) */
	char *buf;
	size_t buflen;
};

/* Read folder/petrel-index into *idx. With header_only only the first
 * line is read (STATUS). *fd_r (if not NULL) receives the open file on
 * MBOX_INDEX_OK, and on MBOX_INDEX_CORRUPT when a regular file was read
 * (else -1). Returns an mbox_index_result, or -1 on an I/O error other
 * than a missing file. */
int mbox_index_read(const char *folder, bool header_only, int *fd_r,
    struct mbox_index *idx, const char **error_r);
void mbox_index_free(struct mbox_index *idx);
/* Write mb (without expunged messages) to petrel-index via a temporary
 * file and rename(). *fd_r receives the new file (the caller closes
 * the old one). 0 ok, -1 error. */
int mbox_index_write(const struct mbox *mb, bool durable, uint32_t log_id,
    uint64_t log_seq, int *fd_r, const char **error_r);
/* One entry line (version 2), and its parser (the '\n' becomes NUL,
 * m->name points into the buffer). */
void mbox_index_put_entry(str_t *s, const struct mbox_msg *m);
bool mbox_index_parse_entry(char **pp, char *end, int version,
    struct mbox_msg *m);

/* UIDs to keep when the index is rebuilt, by stable name part. */
struct mbox_import_ent {
	const char *key;
	size_t key_len;
	uint32_t uid;
	bool used;
};
struct mbox_import {
	const char *source;	/* file name, for logging */
	uint32_t uidvalidity;	/* 0: nothing to import */
	uint32_t uidnext;
	struct mbox_import_ent *ents;	/* sorted by key */
	size_t n;
	char *buf;
};

/* From the lines of a corrupt petrel-index whose header parsed (the
 * buffer moves from idx to imp), else dovecot-uidlist, else
 * courierimapuiddb. imp->uidvalidity is 0 when there is nothing. */
void mbox_import_load(const char *folder, struct mbox_index *idx,
    struct mbox_import *imp);
/* The entry for a stable key, or NULL. */
struct mbox_import_ent *mbox_import_find(struct mbox_import *imp,
    const char *key, size_t key_len);
void mbox_import_free(struct mbox_import *imp);

/* ---- mbox_legacy.c ---- */

/* New UIDs (from_uid on) were published (lock held): bring the
 * folder's dovecot-uidlist and courierimapuiddb, those it has, up to
 * date, and the Courier keywords of the new messages. */
void mbox_legacy_update(struct mbox *mb, uint32_t from_uid);
/* msgs[i]'s flags changed from old_flags (lock held): write its
 * keywords for Courier when they changed in a folder that has
 * courierimapkeywords/. */
void mbox_legacy_kw_changed(struct mbox *mb, size_t i,
    const char *old_flags);
/* Dovecot's dot-lock on dovecot-uidlist, which it holds while it
 * names a new keyword (petrel-lock held): 1 taken (*fd_r, for
 * mbox_legacy_uidlist_unlock), 0 the folder has no dovecot-uidlist, -1
 * not taken (logged). */
int mbox_legacy_uidlist_lock(struct mbox *mb, int *fd_r);
void mbox_legacy_uidlist_unlock(struct mbox *mb, int fd);
/* A writable handle was opened (no lock held): read Courier's keywords
 * into keyword letters, once per folder. */
void mbox_legacy_kw_import(struct mbox *mb);
/* The folder got a fresh UIDVALIDITY (lock held): when its maildir's
 * INBOX has a dovecot-uidlist or courierimapuiddb, make one for it. */
void mbox_legacy_create(struct mbox *mb);

/* ---- mbox_log.c ---- */

/* The folder state an "s" line carries. */
struct mbox_log_state {
	uint32_t uidnext;
	uint64_t modseq;
	struct timespec cur_mtime, new_mtime;
	uint32_t cache_id, cache_dead;
	uint32_t messages, unseen, recent;
};
/* One decoded line of a record: 's' (st), 'e' (m.uid) or 'm' (m, name
 * valid only during the callback). */
struct mbox_log_item {
	char type;
	struct mbox_log_state st;
	struct mbox_msg m;
};
typedef void mbox_log_apply_fn(void *ctx, const struct mbox_log_item *it);

/* Building a record's payload: the state first, then the changes. */
void mbox_log_put_state(str_t *b, const struct mbox_log_state *st);
void mbox_log_put_expunge(str_t *b, uint32_t uid);
void mbox_log_put_msg(str_t *b, const struct mbox_msg *m);
/* A new, empty log for the base naming id (temporary file + rename),
 * opened O_APPEND in *fd_r. 0 ok, -1 error. */
int mbox_log_create(const char *folder, uint32_t id, bool durable,
    int *fd_r, const char **error_r);
/* Open the log if it belongs to the base naming id: 1 (*fd_r), 0
 * missing or another's, -1 error. */
int mbox_log_open(const char *folder, uint32_t id, int *fd_r,
    const char **error_r);
/* Offset of the first record. */
uint64_t mbox_log_start(void);
/* Append record seq (one write; fdatasync with durable). Lock held,
 * and the file read up to its end first. 0 ok, -1 error. */
int mbox_log_append(int fd, uint64_t seq, const str_t *payload,
    bool durable, const char **error_r);
/* Apply the records after *off whose seq follows *seq, in order, item
 * by item through fn; *off and *seq advance past them. *torn_r: bytes
 * after the last good record (a torn write, or a gap). Returns the
 * number of records applied, -1 on an I/O error. */
int mbox_log_read(int fd, uint64_t *off, uint64_t *seq,
    mbox_log_apply_fn *fn, void *ctx, bool *torn_r, const char **error_r);

/* ---- mbox_expunged.c ---- */

/* Record that uids (ascending) were expunged at modseq; before is the
 * folder's modseq before it. Lock held. Failures are logged: they only
 * make later answers less exact. */
void mbox_xlog_append(struct mbox *mb, const uint32_t *uids, size_t n,
    uint64_t modseq, uint64_t before);
/* Start petrel-expunged over: nothing is known at or below floor. */
void mbox_xlog_reset(struct mbox *mb, uint64_t floor);

/* ---- mbox_cache.c ---- */

void mbox_cache_close(struct mbox *mb);
/* Append the pending records (one write) and point their messages at
 * them. Called at every sync, flush and close, and when a message gets
 * a second record (its chain needs the first one's offset). */
void mbox_cache_flush(struct mbox *mb);
/* Free what mbox_cache_put() keeps pending (on close). */
void mbox_cache_free(struct mbox *mb);
/* Rewrite petrel-cache with only the live records when it holds many
 * more dead ones. Called with the lock held. */
void mbox_cache_maybe_compact(struct mbox *mb);

#endif
