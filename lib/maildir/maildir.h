#ifndef PETREL_MAILDIR_H
#define PETREL_MAILDIR_H
/*
 * Maildir store: creation, Maildir++ folders, durable delivery
 * (tmp/ -> fsync -> link into new/ or cur/ -> fsync directory) and
 * file name parsing.
 *
 * Errors: functions taking `const char **error_r` set it (when error_r is
 * not NULL) to a message in the per-thread buffer of lib/base/err, with
 * the errno of a failed system call (ENOSPC, EDQUOT, ...) as its code
 * (err_last_code()). It stays valid until the next failure on the same
 * thread; copy it if you need it longer. Never free it.
 *
 * File names written by petrel:
 *   <secs>.M<usecs>P<pid>Q<counter>R<8 hex>.<host>,S=<size>,W=<vsize>[:2,<flags>]
 * <host> is gethostname() with '/', ':' and ',' written as \057, \072,
 * \054. S= is the file's size in bytes, W= its size with every bare LF
 * counted as CRLF (RFC822.SIZE for IMAP), as Dovecot writes them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Every flag is one ASCII letter: A-Z (D draft, F flagged, P passed,
 * R replied, S seen, T trashed, others reserved) and a-z (keywords, as
 * Courier and Dovecot use them), so at most 52 distinct flags. */
#define MAILDIR_FLAGS_MAX 52

/* mkdir -p path (new directories mode 0700), then path/cur, path/new,
 * path/tmp. Idempotent. A trailing '/' on path is fine. 0 ok, -1 error
 * (including "exists but is not a directory"). */
int maildir_make(const char *path, const char **error_r);

/* Remove the regular files in dir (a Maildir's or the queue's tmp/)
 * whose mtime and ctime are both more than max_age seconds old: what
 * writers that died left behind. Anything else (directories, symlinks,
 * newer files) stays. The number removed, or -1 with *error_r if dir
 * cannot be read (errno kept: ENOENT for a missing tmp/). */
int maildir_tmp_cleanup(const char *dir, time_t max_age,
    const char **error_r);

/* maildir_tmp_cleanup(dir/tmp, TMP_MAX_AGE), what it did logged (info)
 * or why it failed (warning; a missing tmp/ is not worth a line), each
 * line starting with "who: ". For a Maildir or the queue directory. */
void maildir_clean_tmp(const char *dir, const char *who);

/* A Maildir++ folder name as IMAP sees it below INBOX, '.' separating
 * levels ("Sent", "Archive.2024"). Valid: non-empty, no '/', no control
 * character, no leading or trailing '.', no "..", every level at most
 * MAILDIR_FOLDER_MAX bytes, the whole ".name" within NAME_MAX (it is one
 * directory entry), and not "INBOX" (any case: that is the maildir
 * itself). */
bool maildir_folder_name_valid(const char *folder);

/* Symbolic links (docs/security.md): the maildir itself and its cur/
 * new/ tmp/ must not be symbolic links (lstat). A missing one is fine
 * (it is made later). 0 ok, -1 refused (error_r says which path). */
int maildir_check_dirs(const char *maildir, const char **error_r);

/* The same for every path component of maildir below root (root itself,
 * the admin's choice, may be a symbolic link), then maildir_check_dirs().
 * root NULL, or maildir not under root: only maildir_check_dirs(). */
int maildir_check_under(const char *root, const char *maildir,
    const char **error_r);

/* Create maildir/.<folder> with cur/ new/ tmp/ and an empty
 * "maildirfolder" file, making the parent maildir first if missing.
 * Parent levels ("Archive" for "Archive.2024") are not created, as with
 * Courier's maildirmake -f. Idempotent. An invalid name is refused before
 * anything is created. 0 ok, -1 error. */
int maildir_make_folder(const char *maildir, const char *folder,
			const char **error_r);

/* The directory of a folder: the maildir itself for "INBOX" (any case),
 * else maildir/.<folder>. NULL if the name is invalid. malloc'd. */
char *maildir_folder_path(const char *maildir, const char *folder);

/* A new unique base name (see above, without ,S= and info). malloc'd.
 * Unique across processes (time, pid, random) and across calls within a
 * process (an atomic counter). */
char *maildir_unique_name(void);

/*
 * Streaming delivery. maildir_tmp_open() creates maildir/tmp/<unique>
 * (O_CREAT|O_EXCL, 0600; the maildir is created first if it does not
 * exist, like Postfix virtual(8)). Write the message with
 * maildir_tmp_write(), then either commit or abort. After a failed write
 * the handle is poisoned: commit fails, abort is the only useful call.
 */
struct maildir_tmp;

int maildir_tmp_open(const char *maildir, struct maildir_tmp **tmp_r,
		     const char **error_r);
/* Writes all of data (retries short writes and EINTR). 0 ok, -1 error. */
int maildir_tmp_write(struct maildir_tmp *tmp, const void *data, size_t len,
		      const char **error_r);
/* fsync + close the file, link() it into new/ as <unique>,S=,W=, fsync
 * new/, unlink the tmp name. Returns 0 only once the message is on stable
 * storage. On failure everything created is removed and -1 returned.
 * *path_r (if path_r is not NULL) = malloc'd full path in new/. *tmp is
 * freed and set to NULL in every case. */
int maildir_tmp_commit(struct maildir_tmp **tmp, char **path_r,
		       const char **error_r);
/* As maildir_tmp_commit(), but with flags != NULL the message goes to
 * cur/ with ":2,<flags>" (sorted, de-duplicated; letters only, else -1):
 * IMAP APPEND. flags == NULL means new/, no info. */
int maildir_tmp_commit_flags(struct maildir_tmp **tmp, const char *flags,
			     char **path_r, const char **error_r);
/* As maildir_tmp_commit_flags(), but into maildir (NULL: the one the
 * file was opened in): a message spooled in one folder's tmp/ and saved
 * into another (IMAP APPEND). Across file systems (EXDEV) it is copied. */
int maildir_tmp_commit_to(struct maildir_tmp **tmp, const char *maildir,
			  const char *flags, char **path_r,
			  const char **error_r);
/*
 * One message into many mailboxes (an alias list): each copy committed
 * with maildir_tmp_commit_batch() has its data durable and its name in
 * new/ (or cur/), but its directory is not fsync'd yet; the batch
 * remembers the directory, once however many copies went there.
 * maildir_batch_sync() then fsyncs each directory once (on ext4/XFS the
 * first one commits the journal for every link, the rest find nothing
 * left to commit): only after it returns 0 are the copies on stable
 * storage. If it fails, or the batch is freed without a sync, every copy
 * linked through the batch is removed again (nothing was acknowledged).
 */
struct maildir_batch;

struct maildir_batch *maildir_batch_new(void);
/* As maildir_tmp_commit_flags(), the directory's fsync left to b; the
 * file's writeback is started, waited for and the file linked when b
 * holds 64 such copies or at maildir_batch_sync() (*path_r: NULL). */
int maildir_tmp_commit_batch(struct maildir_tmp **tmp, const char *flags,
			     struct maildir_batch *b, char **path_r,
			     const char **error_r);
/* The distinct directories waiting for their fsync. */
size_t maildir_batch_dirs(const struct maildir_batch *b);
/* fsync every directory of b once (grouped with other threads' fsyncs
 * of the same directory); b is empty afterwards. 0 ok, -1 error (the
 * copies removed). */
int maildir_batch_sync(struct maildir_batch *b, const char **error_r);
/* Remove the copies not synced, free, set *b NULL. NULL-safe. */
void maildir_batch_free(struct maildir_batch **b);

/* Writes data with every CRLF stored as LF (bare CRs kept): the form
 * delivered mail has. Data may come in pieces split anywhere: a CR that
 * ends one piece is held until the next shows whether LF follows, and
 * commit writes a CR still held. 0 ok, -1 error. */
int maildir_tmp_write_lf(struct maildir_tmp *tmp, const void *data,
			 size_t len, const char **error_r);
/* The file gets this mtime at commit, before it has its name in new/ or
 * cur/ (IMAP INTERNALDATE: set once, never seen to change). */
void maildir_tmp_set_mtime(struct maildir_tmp *tmp, time_t sec, long nsec);
/* Close and unlink the tmp file, free, set *tmp NULL. NULL-safe. */
void maildir_tmp_abort(struct maildir_tmp **tmp);
/* The open file (read and write: a spooled IMAP literal is read back
 * for CATENATE). */
int maildir_tmp_fd(const struct maildir_tmp *tmp);
/* Bytes of the file (and with bare LFs counted as CRLF), a CR held by
 * maildir_tmp_write_lf() included. */
uint64_t maildir_tmp_size(const struct maildir_tmp *tmp);
uint64_t maildir_tmp_vsize(const struct maildir_tmp *tmp);

/* open + write + commit. 0 ok, -1 error (nothing left behind). */
int maildir_deliver(const char *maildir, const void *data, size_t len,
		    char **path_r, const char **error_r);

/* Put another copy of the already-delivered file src_path (size bytes;
 * used for S=) into maildir/new under a new unique name: link() when on
 * the same file system (one write for N local recipients), else copy via
 * tmp/ with fsync. W= is carried over from src_path's name when present.
 * new/ is fsync'd before returning 0. -1 error, nothing left behind. */
int maildir_link_into(const char *src_path, uint64_t size,
		      const char *maildir, char **path_r,
		      const char **error_r);
/* The same into cur/ with ":2,<flags>" when flags != NULL (IMAP COPY).
 * A copy (EXDEV) gets src's mtime before its name, as a link shares it. */
int maildir_link_into_flags(const char *src_path, uint64_t size,
			    const char *maildir, const char *flags,
			    char **path_r, const char **error_r);
/* The same with ",<extra>" (a name field such as "E=<id>", which the
 * caller has checked holds no ',', ':', '/' or NUL) after S= and W=, so
 * that a message keeps an attribute across MOVE. A copy made because
 * the file system has no hard links gets no extra field. */
int maildir_link_into_extra(const char *src_path, uint64_t size,
			    const char *maildir, const char *flags,
			    const char *extra, char **path_r,
			    const char **error_r);

/*
 * File name parsing. A name is
 *   <base>[,<field>]...[:2,<flags>]
 * base: non-empty, does not start with '.', no ',' ':' '/' NUL.
 * fields: "S=<digits>", "W=<digits>" (each at most once, fits uint64_t);
 *   other non-empty fields are skipped (kept by maildir_name_set_flags).
 * info: ":2," followed by ASCII letters only; they are returned sorted
 *   (ASCII order: A-Z then a-z) with duplicates removed.
 * Any other info (":1,...", a bare ':') is malformed. The whole name is
 * at most NAME_MAX bytes.
 */
struct maildir_name {
	const char *base;	/* points into the parsed name, not terminated */
	size_t base_len;
	size_t prefix_len;	/* bytes before ':' (base and fields): the
				   stable key of a message, e.g. for uidlists */
	uint64_t size;		/* S= */
	bool has_size;
	uint64_t vsize;		/* W= */
	bool has_vsize;
	bool has_info;		/* ":2," present */
	char flags[MAILDIR_FLAGS_MAX + 1];	/* sorted, NUL-terminated */
};

/* name need not be NUL-terminated; any bytes are safe. 0 ok, -1
 * malformed (*out is then unspecified). A reader may still treat a
 * malformed name in cur/ as a message without flags. */
int maildir_name_parse(const char *name, size_t len, struct maildir_name *out);

/* *new_name_r = name with its info replaced by ":2," + flags sorted and
 * de-duplicated (malloc'd). The part before ':' must parse; flags must be
 * letters only; the result must fit NAME_MAX. 0 ok, -1 invalid (nothing
 * allocated). */
int maildir_name_set_flags(const char *name, const char *flags,
			   char **new_name_r);

/* Sort and de-duplicate flag letters into out. -1 on a non-letter. */
int maildir_flags_normalize(const char *flags, size_t len,
			    char out[MAILDIR_FLAGS_MAX + 1]);

/* True if the normalized flag string contains flag. */
bool maildir_flags_has(const char *flags, char flag);

/* One message file of a folder as a listing gives it (the POP3
 * maildrop, lib/store/maildrop.h). */
struct maildir_msg {
	char *name;		/* file name in new/ or cur/ */
	bool in_cur;
	uint32_t uid;		/* its UID in the folder's index, 0 if none */
	uint64_t size;		/* bytes on disk (LF line ends) */
	uint64_t vsize;		/* bytes with CRLF line ends (RFC822.SIZE) */
	size_t key_len;		/* name[0..key_len): stable across flag changes */
	char flags[64];		/* ":2," flags, sorted */
	char *uidl;		/* POP3 UIDL when another server's form
				   applies (lib/store/maildrop.h), or
				   NULL: the caller's file-name form */
};

void maildir_msgs_free(struct maildir_msg **msgs, size_t n);
/* The full path of a message. malloc'd. */
char *maildir_msg_path(const char *maildir, const struct maildir_msg *m);

#endif
