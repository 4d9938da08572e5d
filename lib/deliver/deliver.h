#ifndef PETREL_DELIVER_H
#define PETREL_DELIVER_H
/*
 * The one delivery path: a message whose recipients are routed (lib/route)
 * becomes Maildir copies (durable: file and directory fsync'd, the
 * maildirsize quota updated) and, for the remote destinations, one file
 * in the outbound queue (lib/queue), DKIM-signed when the sender is one
 * of our authenticated users. SMTP DATA/BDAT and bounces (RFC 3464 DSNs)
 * use it; LMTP is meant to. Each local recipient's Sieve scripts run here
 * (sieve.c) when ctx->sieve is set.
 *
 * It blocks (fsync, the queue write): call it from a job thread, never
 * from the event loop. It needs no event loop and no directory handle.
 *
 * Duplicates are eliminated: the same final address into the same
 * maildir gets one copy per message, however many recipients (RCPT TO
 * twice, an alias and its target) lead there.
 */
#include <stdbool.h>
#include <stddef.h>

struct arc_verdict;
struct authc;
struct config;
struct deliver_cut;
struct route_result;
struct spool;

/* Sieve at delivery (lib/deliver/sieve.c, docs/sieve.md): the settings
 * sieve_dir, sieve_before, sieve_after, sieve_global,
 * sieve_max_redirects. */
struct deliver_sieve {
	const char *dir;	/* sieve_dir, with %h %u %n %d */
	const char *before, *after;	/* comma-separated files/dirs */
	const char *global;	/* sieve_global: include :global's dir */
	unsigned max_redirects;
	const char *hostname;	/* in refusals (RFC 5429) */
};

/* What does not change from message to message (a server's settings). */
struct deliver_ctx {
	const char *queue_dir;	/* the outbound queue (QUEUE_DIR) */
	const char *dkim_dir;	/* DKIM keys (lib/dkim); NULL: never sign */
	const char *mail_root;	/* no symbolic link below it on the way to
				 * a maildir; NULL: only the maildir's own
				 * directories are checked */
	/* Run the recipients' Sieve scripts; NULL: never. */
	const struct deliver_sieve *sieve;
	/* SRS (lib/trust/srs): the secret (NULL or "": off) and the domain
	 * of the addresses. The queued copy of a forward (an unsigned
	 * message whose sender is not of a hosted domain) leaves with an
	 * SRS0/SRS1 sender; <> stays. */
	const char *srs_secret;
	const char *srs_domain;
	/* ARC (lib/trust/arc, `arc = seal`): the queued copy of a message
	 * received from outside (msg->arc, msg->authres set) gets an ARC
	 * set signed with the DKIM key (dkim_dir) of the forwarding
	 * domain. */
	bool arc_seal;
	/* lmtp_cut_through (lib/deliver/cut.h): the lmtp: recipients
	 * handed to their backend before the reply; NULL: queued. */
	const struct deliver_cut *cut;
};

/* Fill *sv from the configuration (the strings stay the config's). */
void deliver_sieve_init(struct deliver_sieve *sv, const struct config *cfg,
    const char *hostname);

struct deliver_rcpt {
	const char *address;	/* as the client gave it (orig_to in logs) */
	const struct route_result *route;	/* resolved, ROUTE_OK */
};

struct deliver_msg {
	const char *qid;	/* queue id: logs, and the queue file's id */
	const char *sender;	/* envelope sender, "" for the null sender */
	const struct deliver_rcpt *rcpts;
	size_t nrcpts;
	/* Header fields put before the body in every copy, after the
	 * Return-Path: and Delivered-To: of a maildir copy (Received:, ...;
	 * LF line ends). NULL: none. */
	const char *prefix;
	struct spool *body;	/* the message, LF line ends */
	/* Sign the queued copy for the sender's domain (RFC 6376) when it
	 * has a key: mail our authenticated users send out. */
	bool dkim_sign;
	/* CLOCK_MONOTONIC ms when the message arrived (0: now): the delay=
	 * of the delivery log lines. */
	long long arrival_ms;
	/* Resolves the addresses of Sieve redirects and refusals (the
	 * calling thread's auth channel); NULL: they go to the queue as
	 * remote mail. */
	struct authc *authc;
	/* The caller can still refuse the message (SMTP before its reply
	 * to DATA): a Sieve reject of the only recipient becomes
	 * result.reject instead of a refusal mail. */
	bool may_refuse;
	bool no_sieve;		/* a Sieve redirect's copy: no scripts */
	/* ARC: the validation of the message as received and the value of
	 * our Authentication-Results field (after its colon); both NULL:
	 * never sealed. arc_domain: whose key seals (NULL: the first
	 * recipient's domain with a key, else srs_domain's). */
	const struct arc_verdict *arc;
	const char *authres;
	const char *arc_domain;
	/* Quarantined (DMARC p=quarantine): the copies stored without a
	 * Sieve script go to each maildir's Junk folder, made when
	 * missing; a script's own actions are kept as they are. */
	bool junk;
	/* RFC 8689 REQUIRETLS: the queued copy goes out only over TLS with
	 * a verified certificate to a server that offers REQUIRETLS. */
	bool requiretls;
	/* Set by deliver_message() itself (callers leave it NULL): the
	 * copies of this message whose directories are fsync'd together
	 * at its end, and the quota each adds once they are. */
	struct deliver_batch *batch;
};

struct deliver_result {
	size_t delivered;	/* maildir copies on stable storage */
	size_t duplicates;	/* copies not made: already delivered */
	size_t queued;		/* remote recipients in the queue file */
	size_t handed;		/* lmtp: recipients handed to their
				 * backend by cut-through (not queued) */
	int code;		/* after a failure its errno or ERR_* code
				 * (lib/base/err), else ERR_NONE */
	/* With may_refuse: the reason of the Sieve reject/ereject of the
	 * only recipient (malloc'd, one printable line; the caller frees
	 * it and answers 550 5.7.1); nothing was delivered. */
	char *reject;
};

/*
 * Deliver msg to every destination of every recipient: the maildir
 * copies first, in order, then one queue file for all remote ones. The
 * first failure stops it (copies already made stay: a duplicate beats a
 * loss when the client retries); nothing is queued after a failed copy.
 * 0 when every copy is on stable storage, -1 with *error_r (valid until
 * the next lib/base/err failure on this thread) and result->code.
 */
int deliver_message(const struct deliver_ctx *ctx,
    const struct deliver_msg *msg, struct deliver_result *result,
    const char **error_r);

#endif
