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
 */
#include <stddef.h>
#include <stdint.h>

struct spool;

struct queue_rcpt {
	const char *address;
	const char *transport;	/* "" = MX lookup */
};

/* Write a queue file. prefix (may be NULL) is written before the body
 * (a Received: header). 0 ok (on stable storage), -1 error (nothing left
 * behind). */
int queue_enqueue(const char *queue_dir, const char *id, const char *sender,
    const struct queue_rcpt *rcpts, size_t nrcpts, const char *prefix,
    struct spool *body, const char **error_r);

/* Make the queue directories (tmp, incoming). */
int queue_dirs_make(const char *queue_dir, const char **error_r);

/* A new queue id: 16 upper-case hex digits, unique across processes. */
void queue_id_new(char id[17]);

#endif
