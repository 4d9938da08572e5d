#ifndef PETREL_DELIVER_CUT_H
#define PETREL_DELIVER_CUT_H
/*
 * Cut-through (lmtp_cut_through): the recipients of a message whose next
 * hop is lmtp: (a frontend's users on their backend) handed over by LMTP
 * from the delivery job itself, before the client's 250, instead of
 * through the queue manager. The queue file stays the fallback: the
 * caller writes it unpublished (queue_write), this hands the message
 * over from that file, and the caller publishes the file for the
 * recipients not delivered (docs/scale-out.md, "Cut-through").
 *
 * One blocking LMTP client (lib/smtp/lmtp_client) per job thread and
 * next hop, kept between messages for CUT_IDLE seconds as the queue's
 * connections are; STARTTLS as the queue's LMTP leg decides it; every
 * wait bounded by smtp_timeout, the queue's own bound.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;
struct deliver_cut;
struct queue_rcpt;

/* The settings (smtp_timeout, proxy_tls_ca) and the TLS contexts. */
struct deliver_cut *deliver_cut_new(const struct config *cfg,
    const char *hostname);
/* After the job threads have ended (their kept connections close with
 * them). */
void deliver_cut_free(struct deliver_cut **cut);

/* Is this transport an lmtp: next hop cut-through takes? */
bool deliver_cut_wanted(const char *transport);

/*
 * Hand the message over: the queue file open on fd, its message (prefix
 * and body, LF line ends) from body_offset to the end, from sender to
 * the recipients whose transport deliver_cut_wanted(). done[i] is set
 * for each recipient the backend answered 2xx after the data (RFC 2033:
 * it is on the backend's stable storage), with its line logged; every
 * other recipient is left to the queue. arrival_ms: CLOCK_MONOTONIC ms
 * of the message's arrival (the delay= of the logs).
 */
void deliver_cut_run(const struct deliver_cut *cut, const char *qid,
    const char *sender, const struct queue_rcpt *rcpts, size_t nrcpts,
    int fd, off_t body_offset, long long arrival_ms, bool *done);

#endif
