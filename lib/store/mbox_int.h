#ifndef PETREL_STORE_MBOX_INT_H
#define PETREL_STORE_MBOX_INT_H
/*
 * Internals of the mailbox index (lib/store/mailbox.h), shared by
 * mailbox.c (sync and the public API), mbox_index.c (the petrel-index
 * file, dovecot-uidlist and courierimapuiddb import) and mbox_cache.c
 * (petrel-cache). Nothing outside lib/store/mailbox*.c and mbox_*.c
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
#define MBOX_CACHE_NAME		"petrel-cache"
#define MBOX_LOCK_NAME		"petrel-lock"
#define MBOX_KEYWORDS_NAME	"dovecot-keywords"
#define MBOX_DOVECOT_UIDLIST	"dovecot-uidlist"
#define MBOX_COURIER_UIDDB	"courierimapuiddb"

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
	size_t msgs_cap;	/* allocated entries of msgs */
	char *buf;		/* index text the names of the first
				   loaded entries point into */
	size_t buflen;
	struct timespec cur_mtime;	/* cur/ mtime when last listed, or
					   {0, 0}: list it next time */
	struct timespec new_mtime;
	uint32_t cache_id;	/* petrel-cache the cache_offs refer to
				   (0: unknown) */
	uint32_t cache_dead;	/* messages removed with cache records */
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
int mbox_lock(struct mbox *mb, const char **error_r);
void mbox_unlock(struct mbox *mb);
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
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct timespec cur_mtime;
	struct timespec new_mtime;
	uint32_t cache_id;
	uint32_t cache_dead;
	uint32_t messages, unseen, recent;
	struct mbox_msg *msgs;	/* names point into buf */
	size_t n;
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
int mbox_index_write(const struct mbox *mb, bool durable, int *fd_r,
    const char **error_r);

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
