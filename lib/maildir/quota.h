#ifndef PETREL_QUOTA_H
#define PETREL_QUOTA_H
/*
 * Maildir++ quota: the "maildirsize" file at the root of a maildir, as
 * Courier (maildirquota) and Dovecot (quota backend "maildir") keep it.
 *
 *   line 1:  the quota definition, "<bytes>S,<count>C" (either part
 *            optional, in any order; "0S", "0C" or an empty line = none)
 *   then:    "<bytes> <count>" lines (signed); usage is their sum.
 *
 * Errors: `const char **error_r` is set (when not NULL) to a message in
 * the per-thread buffer of lib/base/err (code: errno or ERR_*), valid
 * until the next failure on the same thread. Never free it.
 */
#include <stdbool.h>
#include <stdint.h>

/* A user's quota as the directory gives it. */
struct quota_limit {
	uint64_t bytes;		/* 0 = no byte limit */
	uint64_t count;		/* 0 = no message-count limit */
};

static inline bool
quota_limit_set(const struct quota_limit *l)
{
	return l->bytes > 0 || l->count > 0;
}

/* The quota column: a number of bytes ("1048576", the Postfix howto) or
 * a Maildir++ definition as Courier's howtos store it ("1000000S,1000C",
 * "5C": a count only, "1000S"). Empty, "0", "0S" = none. 0 ok, -1
 * malformed (*l_r is then no quota). */
int quota_limit_parse(const char *s, struct quota_limit *l_r);

struct maildir_quota {
	uint64_t limit_bytes;	/* 0 = no byte limit */
	uint64_t limit_count;	/* 0 = no message-count limit */
	int64_t bytes;		/* current usage (sum of the lines) */
	int64_t count;
};

/* Read maildir/maildirsize. 1 read ok, 0 no maildirsize file, -1 error
 * or malformed (a bad definition, a bad line, an incomplete last line,
 * overflow, a file larger than MAILDIRSIZE_READ_MAX). */
int maildir_quota_read(const char *maildir, struct maildir_quota *q,
		       const char **error_r);

/* Count the messages (and their bytes: the S= of the name, else stat)
 * in new/ and cur/ of the maildir and of every Maildir++ folder (.xxx
 * directories having maildirfolder or cur/), then replace maildirsize
 * atomically (tmp/ file, fsync, rename, fsync the maildir) with the
 * definition from limit_bytes/limit_count and one total line. If the old
 * maildirsize changes during the scan (a concurrent delivery appended to
 * it) the scan is repeated, a few times at most. q_r may be NULL. 0 ok,
 * -1 error. */
int maildir_quota_recalc(const char *maildir, uint64_t limit_bytes,
			 uint64_t limit_count, struct maildir_quota *q_r,
			 const char **error_r);

/* Append "<bytes> <count>\n" with one O_APPEND write (delivery: +size +1;
 * expunge: -size -1). If there is no maildirsize file nothing is done:
 * the next maildir_quota_check() recalculates from the files anyway.
 * 1 appended, 0 no maildirsize file (or nothing to add), -1 error. */
int maildir_quota_add(const char *maildir, int64_t bytes, int64_t count,
		      const char **error_r);

/*
 * May a message of adding_bytes be delivered? lim is the user's quota
 * (the directory is authoritative; none set: returns 1 without touching
 * the disk): bytes, and a message count (the message must not make the
 * count exceed it, as Courier's maildirquota). When the directory gives
 * no count, a count limit in the existing definition (written by
 * Courier, say) is honoured and kept. maildirsize is recalculated when
 * it is missing or malformed, when its limits are not the directory's,
 * when it is larger than MAILDIRSIZE_MAX bytes, or when the message
 * would not fit and the file is older than MAILDIRSIZE_MAX_AGE seconds
 * (the Maildir++ rules); the definition is then written as
 * "<bytes>S,<count>C" with the parts that are set. A maildir that does
 * not exist yet holds nothing. 1 fits, 0 would exceed the quota, -1
 * error.
 */
int maildir_quota_check(const char *maildir, const struct quota_limit *lim,
			uint64_t adding_bytes, const char **error_r);

#endif
