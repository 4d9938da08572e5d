#ifndef PETREL_LIMITS_H
#define PETREL_LIMITS_H
/* Every fixed bound in one place, each with its reason. */

/* RFC 5321 4.5.3.1.1/4.5.3.1.2: 64-octet local part, 255-octet domain. */
#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including <>. */
#define ADDR_MAX 254

/* A configuration line longer than this is a mistake, not a setting. */
#define CONFIG_LINE_MAX 8192

/* One error message (lib/base/err): a line for a log or a reply that
 * quotes a path or two; longer ones are cut, never overflow. */
#define ERR_MSG_MAX 2048

/* Password input from stdin (CLI); longer is refused, not truncated. */
#define PASSWORD_MAX 1024

/* Alias expansion: recursion depth before we call it a loop (Postfix
 * virtual_alias_recursion_limit is 1000 expansions, depth 100). */
#define ALIAS_DEPTH_MAX 100
/* A single goto list with more targets than this is refused. */
#define ALIAS_TARGETS_MAX 1000

/* Maildir++ maildirsize: recalculate when the file grows past this
 * (the Maildir++ spec says 5120 bytes). */
#define MAILDIRSIZE_MAX 5120
/* ... or when it is older than this many seconds (15 minutes). */
#define MAILDIRSIZE_MAX_AGE (15 * 60)

/* Maildir++ folder name length (one component after the leading '.'). */
#define MAILDIR_FOLDER_MAX 255

/* A file in a Maildir's or the queue's tmp/ this much older than now
 * (seconds) was left by a writer that died: removed (the Maildir
 * convention of qmail and Dovecot). */
#define TMP_MAX_AGE (36 * 3600)

/* maildirsize is read whole into memory; a well-kept one is under
 * MAILDIRSIZE_MAX, so one this large is garbage and gets recalculated. */
#define MAILDIRSIZE_READ_MAX (1024 * 1024)

/* A subscription file ("subscriptions", "courierimapsubscribed") is read
 * whole into memory: one larger than this (some 4000 names of the
 * longest kind) is refused, never read. */
#define MAILDIR_SUBS_READ_MAX (1024 * 1024)


/* Queue files (lib/queue/queue.c): an envelope line holds one address
 * and a transport, so a longer one means a damaged file. A state line
 * holds the last reply, which may be a whole multi-line SMTP reply
 * (SMTP_REPLY_MAX, 100 lines of 1000 octets) plus a note on expiry; a
 * longer one is skipped (its recipient is retried). */
#define QUEUE_LINE_MAX 8192
#define QUEUE_STATE_LINE_MAX (256 * 1024)

/* A message body is kept in memory up to this size, then spilled to a
 * temporary file (1 MiB: most mail is far smaller). */
#define SPOOL_MEM_MAX (1024 * 1024)

/* SMTP (RFC 5321 4.5.3.1.4-6, 4.5.3.2): a command line is at most 512
 * octets; we allow extensions' parameters up to 1000 (the text line
 * limit). More recipients than 1000 get 452 4.5.3 (Postfix uses 1000
 * too), and a session with more than 20 errors is closed with 421. */
#define SMTP_LINE_MAX 1000
#define SMTP_RCPT_MAX 1000
#define SMTP_ERRORS_MAX 20
/* Read this much of a DATA line before treating it as a partial line
 * (lines may be longer than 1000 octets; we must not buffer without
 * bound waiting for LF). */
#define SMTP_DATA_CHUNK (64 * 1024)
/* Seconds (default of smtp_timeout): RFC 5321 4.5.3.2 asks for 5 minutes
 * per command and 10 for the DATA terminator; one timeout for both. */
#define SMTP_TIMEOUT 300
/* POP3: RFC 2449 4 allows 255-octet command lines; AUTH PLAIN initial
 * responses need more, so 2048. 20 errors close the session. */
#define POP3_LINE_MAX 2048
#define POP3_ERRORS_MAX 20

/* IMAP: a command line (without its literals) may be this long; Dovecot
 * allows 64 KiB too (long UID sets from clients resyncing). A literal
 * outside APPEND is at most IMAP_LITERAL_MAX (SEARCH strings, names,
 * passwords); an APPEND literal at most message_size_limit. One command
 * with all its literals, APPEND excepted, stays under IMAP_CMD_MAX.
 * 20 bad commands in a row close the session (as Dovecot does). */
#define IMAP_LINE_MAX (64 * 1024)
#define IMAP_LITERAL_MAX (64 * 1024)
#define IMAP_CMD_MAX (1024 * 1024)
#define IMAP_BAD_MAX 20
/* IMAP before login: a whole command (its lines and literals) is at
 * most this; LOGIN and AUTHENTICATE need far less. A client that has
 * not logged in holds no more of the server's memory than this. */
#define IMAP_PREAUTH_CMD_MAX (8 * 1024)
/* IMAP after login: an APPEND message larger than this is not kept in
 * memory while it arrives but written, IMAP_SPOOL_CHUNK bytes at a time,
 * to a file in the user's tmp/ (lib/imap/framing spool_min), so a
 * session holds about this plus IMAP_CMD_MAX, IMAP_SPOOL_CHUNK and
 * INPUT_MAX whatever the message's size (a 40 MB APPEND used to hold
 * 40 MB, more than once, until it was complete). */
#define IMAP_APPEND_MEM_MAX (64 * 1024)
#define IMAP_SPOOL_CHUNK (128 * 1024)
/* MULTIAPPEND (RFC 3502): the most messages in one APPEND (each a file
 * in tmp/, open until all are stored); of them at most
 * IMAP_FRAMER_SPOOLS (lib/imap/framing.h) over IMAP_APPEND_MEM_MAX.
 * Each message is bounded as a single APPEND's. */
#define IMAP_APPEND_MSGS_MAX 64
/* IMAP LIST: at most this many mailbox patterns in one command (RFC
 * 5258 3: "(" pattern *(SP pattern) ")"), each at most this long (a
 * mailbox name is far shorter); each pattern is matched against every
 * folder name at O(pattern * name) cost, so these bound a LIST's CPU. */
#define IMAP_LIST_PATTERNS_MAX 32
#define IMAP_LIST_PATTERN_LEN_MAX 1024
/* IMAP: a folder's special-use file (RFC 6154 CREATE ... USE, see
 * imap/folders.c) is read up to this many bytes; the five attributes a
 * folder may have take 40. */
#define IMAP_SPECIAL_USE_MAX 256

/* METADATA (RFC 5464, imap/cmd_metadata.c): an entry's value is at most
 * IMAP_METADATA_VALUE_MAX octets (the RFC asks for at least 1024; the
 * answer to more is NO [METADATA MAXSIZE n]); an entry name at most
 * IMAP_METADATA_NAME_MAX; a user has at most IMAP_METADATA_ENTRIES_MAX
 * entries (the RFC asks for at least 10 per mailbox) holding at most
 * IMAP_METADATA_TOTAL_MAX octets of values together, over the server
 * and every mailbox (NO [METADATA TOOMANY] beyond either). So the
 * user's file, rewritten on every change, stays under 2 MiB (values
 * escaped at most threefold, names);
 * one larger than IMAP_METADATA_FILE_MAX is refused, never read. */
#define IMAP_METADATA_VALUE_MAX (16 * 1024)
#define IMAP_METADATA_NAME_MAX 256
#define IMAP_METADATA_ENTRIES_MAX 1000
#define IMAP_METADATA_TOTAL_MAX (512 * 1024)
#define IMAP_METADATA_FILE_MAX (4 * 1024 * 1024)
/* NOTIFY (RFC 5465, imap/cmd_notify.c): the changes a session hears of
 * while one of its jobs runs are kept as a list of the watches that
 * fired, each once; past this many, every watched folder is looked at
 * again once the job is done instead. */
#define IMAP_NOTIFY_PENDING_MAX 1024
/* NOTIFY: mailbox names in one NOTIFY SET's SUBTREE and MAILBOXES
 * groups together; every report matches each folder against them. */
#define IMAP_NOTIFY_NAMES_MAX 1000
/* A FETCH answer is produced this many bytes at a time, so a big FETCH
 * neither holds the whole answer in memory nor starves other sessions. */
#define IMAP_FETCH_CHUNK (256 * 1024)
/* SORT and THREAD (RFC 5256) read only a message's header, at most this
 * much of it: a header beyond it is not looked at (Subject, Date, From
 * and the others come early in real messages). A sort program has at
 * most IMAP_SORT_KEYS_MAX keys (REVERSE not counted; the nine keys each
 * once, and then some), and THREAD=REFERENCES keeps the last
 * IMAP_THREAD_REFS_MAX message IDs of a References field (the nearest
 * ancestors; a long thread's field grows with every reply) of at most
 * IMAP_MSGID_MAX bytes each (RFC 5322 2.1.1's line length) and at most
 * IMAP_THREAD_REFS_BYTES of them together. A string key (base subject,
 * address, display name) keeps its first IMAP_SORT_KEY_MAX bytes. So a
 * message costs SORT and THREAD a few KiB at most, however its header
 * was made (ties beyond 1 KiB of a subject are broken by sequence
 * number, as any other tie). */
#define IMAP_SORT_HEADER_MAX (256 * 1024)
/* Updating SEARCHes and SORTs (RFC 5267 CONTEXT=SEARCH/SORT) a session
 * keeps at once; each holds the UIDs of its result, at most one per
 * message of the mailbox. */
#define IMAP_CONTEXTS_MAX 5
#define IMAP_SORT_KEYS_MAX 16
#define IMAP_SORT_KEY_MAX 1024
#define IMAP_THREAD_REFS_MAX 64
#define IMAP_THREAD_REFS_BYTES 4096
#define IMAP_MSGID_MAX 998

/* Per session: stop reading commands while more than OUTPUT_MAX bytes
 * of replies wait for a slow reader, and stop reading the socket when
 * INPUT_MAX bytes of unprocessed input are buffered (pipelining is still
 * far below both). */
#define OUTPUT_MAX (1024 * 1024)
#define INPUT_MAX (256 * 1024)
/* At most this much of a session's queued output is handed to one write
 * (or, over TLS, to the TLS layer) per turn of the event loop; libevent's
 * own default, 16 KiB, costs a system call and a wake-up of the reader
 * every 16 KiB of a big FETCH or RETR. What is queued is bounded by
 * OUTPUT_MAX and the watermarks, not by this. */
#define WRITE_SINGLE_MAX (256 * 1024)

/* Seconds a draining worker waits for sessions in a transaction. */
#define DRAIN_GRACE 20

#endif
