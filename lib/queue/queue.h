#ifndef PETREL_QUEUE_H
#define PETREL_QUEUE_H
/*
 * The outbound queue on disk. One file per message in QUEUE_DIR/incoming,
 * written in QUEUE_DIR/tmp, fsync'd, renamed, and the directory fsync'd
 * before the caller acknowledges anything. Format (qmail's "don't parse":
 * line-oriented, trivially read back):
 *
 *   petrel-queue 1\n
 *   id <queue id>\n
 *   arrival <unix seconds>\n
 *   sender <address or empty>\n
 *   rcpt <address> <transport or ->\n      (one per recipient)
 *   \n
 *   <the message, LF line endings>
 *
 * Delivery progress is kept beside it in QUEUE_DIR/state/<id> (rewritten
 * atomically after each attempt), one line per recipient, in order:
 *   <status> <attempts> <next attempt, unix seconds> <last reply>
 * status: P pending, S sent, B bounced. No state file = all pending.
 * A message whose recipients are all S or B is removed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct spool;

struct queue_rcpt {
	const char *address;
	const char *transport;	/* "" = MX lookup */
};

/* The message's envelope flags (a line each in the queue file). */
#define QUEUE_F_REQUIRETLS 0x1u	/* RFC 8689: "requiretls" */
#define QUEUE_F_TLS_OPTIONAL 0x2u /* RFC 8689 TLS-Required: No:
				   "tls-optional" */

/* Write a queue file. flags: QUEUE_F_*. prefix (may be NULL) is written
 * before the body (a Received: header). 0 ok (on stable storage), -1
 * error (nothing left behind). */
int queue_enqueue(const char *queue_dir, const char *id, const char *sender,
    unsigned flags, const struct queue_rcpt *rcpts, size_t nrcpts,
    const char *prefix, struct spool *body, const char **error_r);

/*
 * queue_enqueue in two steps, for a caller that may yet deliver the
 * message itself (lib/deliver/cut.c): queue_write leaves the file
 * written, not synced, under its temporary name in QUEUE_DIR/tmp, where
 * the queue manager does not look; queue_publish then makes it durable
 * and visible exactly as queue_enqueue does (fsync, rename into
 * incoming, fsync of the directory), or queue_discard removes it. Either
 * frees *qf; so does a failed queue_write (nothing left behind).
 */
struct queue_file {
	char *tmp, *final, *dir;
	int fd;			/* open for reading and writing */
	off_t body_offset;	/* where the message (prefix, body) starts */
};
int queue_write(const char *queue_dir, const char *id, const char *sender,
    unsigned flags, const struct queue_rcpt *rcpts, size_t nrcpts,
    const char *prefix, struct spool *body, struct queue_file *qf,
    const char **error_r);
int queue_publish(struct queue_file *qf, const char **error_r);
void queue_discard(struct queue_file *qf);
/* Close and free, leaving the file where it is. */
void queue_file_free(struct queue_file *qf);

/* Make the queue directories (tmp, incoming). */
int queue_dirs_make(const char *queue_dir, const char **error_r);

/* A new queue id: 16 upper-case hex digits, unique across processes. */
void queue_id_new(char id[17]);

enum queue_rcpt_status { QR_PENDING = 'P', QR_SENT = 'S', QR_BOUNCED = 'B' };

struct queue_entry {
	char *address;
	char *transport;	/* "" = MX */
	char status;		/* enum queue_rcpt_status */
	unsigned attempts;
	long long next;		/* unix seconds */
	char *last;		/* last reply or error ("" if none) */
};

struct queue_msg {
	char id[17];
	char *sender;
	long long arrival;
	struct queue_entry *rcpts;
	size_t nrcpts;
	long body_offset;	/* where the message starts in the file */
	bool requiretls;	/* RFC 8689 REQUIRETLS */
	bool tls_optional;	/* RFC 8689 TLS-Required: No (DANE and
				   MTA-STS policies not applied) */
	char *path;		/* QUEUE_DIR/incoming/<id> */
};

/* Read a message's envelope and state. 1 ok, 0 gone, -1 malformed. */
int queue_msg_read(const char *queue_dir, const char *id,
    struct queue_msg *m, const char **error_r);
void queue_msg_clear(struct queue_msg *m);
/* Write the state file (tmp + fsync + rename). 0 ok, -1 error. */
int queue_state_write(const char *queue_dir, const struct queue_msg *m,
    const char **error_r);
/* Remove a message and its state. 0 ok (or already gone), -1 error. */
int queue_remove(const char *queue_dir, const char *id);
/* The ids in the queue, sorted (malloc'd array of malloc'd strings). */
int queue_list(const char *queue_dir, char ***ids_r, size_t *n_r,
    const char **error_r);
void queue_list_free(char ***ids, size_t n);
/* Is this a well-formed queue id (16 upper-case hex digits)? */
bool queue_id_valid(const char *id);

#endif
