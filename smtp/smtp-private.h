#ifndef PETREL_SMTP_PRIVATE_H
#define PETREL_SMTP_PRIVATE_H
/*
 * smtp-private.h: what the parts of the SMTP server share, private to
 * smtp/: the session (session.c: the connection, the command table,
 * HELO/EHLO, RSET, NOOP, QUIT, VRFY, HELP, STARTTLS), MAIL and RCPT
 * (cmd_mail.c), DATA and BDAT (cmd_data.c), AUTH (cmd_auth.c) and the
 * LMTP mode (lmtp.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"
#include "lib/io/jobs.h"
#include "lib/milter/milter.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"
#include "lib/smtp/parse.h"
#include "smtp/smtp.h"

struct authc;
struct config;
struct dir_user;
struct evbuffer;
struct smtp_dnsbl;

enum smtp_state {
	ST_CMD,		/* reading commands */
	ST_DATA,	/* reading DATA lines */
	ST_BDAT,	/* reading a BDAT chunk */
	ST_XMOVE_PUT,	/* reading the bytes of an XMOVE PUT (xmove.c) */
};

struct smtp_rcpt {
	char *address;		/* as given (lower-cased) */
	struct route_result route;
};

struct smtp_session {
	struct session base;	/* first: the connection (lib/session) */
	struct smtp_server *srv;
	enum smtp_state state;
	bool esmtp;
	char *helo;
	bool submission;	/* a submission port: AUTH required */
	bool lmtp;		/* lmtp_listen: LMTP (RFC 2033), lmtp.c */
	char *auth_user;	/* authenticated address */
	char *auth_maildir;	/* its maildir (sender ownership check) */
	struct sasl sasl;	/* an AUTH exchange in progress */

	/* transaction */
	bool have_mail;
	char *sender;
	uint64_t size_hint;
	bool smtputf8;
	bool requiretls;	/* MAIL FROM ... REQUIRETLS (RFC 8689) */
	struct smtp_rcpt *rcpts;
	size_t nrcpts;
	char qid[17];

	/* the filters' conversations about this transaction (milter.c):
	 * NULL when not talking to that filter (none configured, it
	 * accepted the message, or it failed with default accept) */
	struct milter_conn *mconn[MILTER_MAX];
	bool milter_discard;	/* a filter said discard before DATA */
	bool milter_tempfail;	/* a filter failed (default tempfail) */

	/* trust.c: the SPF verdict of this transaction (enum spf_result,
	 * -1 = not checked) and whether it was the HELO identity's */
	int spf_result;
	bool spf_helo;
	/* trust.c: this transaction's dmarc_policy from domain_policy_file
	 * (its first recipient's), plus 1; 0: the server-wide one */
	int dmarc_rcpt;

	/* dnsbl.c: the block lists' answers for this client */
	struct smtp_dnsbl *dnsbl;

	/* message reception */
	struct spool body;
	bool too_big;
	bool spool_failed;	/* the body could not be stored while read */
	struct smtp_dot dot;	/* DATA: dot-unstuffing state */
	bool pending_cr;	/* BDAT: a CR at the end of the last chunk */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_failed;	/* a BDAT transaction already failed */
	int64_t data_deadline_ms; /* end of the data phase (monotonic), 0 = none */

	/* job in flight */
	struct job job;
	char *job_addr;
	bool job_postmaster;	/* RCPT TO:<postmaster> without domain */
	struct route_result job_route;
	int job_status;
	char *job_error;
	int job_code;		/* enum err_code or errno of job_error */
	size_t job_delivered;
	char *job_reject;	/* a Sieve reject's reason: 550 */
	int job_milter;		/* enum smtp_milter_outcome */
	char *job_milter_reply;	/* a filter's own reply line */
	/* trust.c: what DMARC asks of this message with dmarc_policy =
	 * enforce (enum dmarc_disposition; 0: deliver as usual) */
	int job_dmarc;
	char job_dmarc_from[256];	/* its From domain, for the reply */
	int *lmtp_status;	/* LMTP: each recipient's outcome (lmtp.c) */
	struct xmove *xmove;	/* LMTP: an XMOVE session (xmove.c) */
};


#define reply(s, ...) session_reply(&(s)->base, __VA_ARGS__)
/* A reply that counts as an error; too many and the session ends. */
#define reply_error(s, ...) session_error(&(s)->base, "", __VA_ARGS__)

/* session.c: forget the transaction (sender, recipients, body). */
void smtp_transaction_reset(struct smtp_session *s);
/* session.c: HELO, EHLO or LHLO named the client (a new start). */
void smtp_helo_set(struct smtp_session *s, const char *arg, bool esmtp);

/* cmd_mail.c */
void smtp_cmd_mail(struct smtp_session *s, const char *arg);
void smtp_cmd_rcpt(struct smtp_session *s, const char *arg);

/* cmd_data.c */
void smtp_cmd_data(struct smtp_session *s, const char *arg);
void smtp_cmd_bdat(struct smtp_session *s, const char *arg);
/* The Received header field (RFC 5321 4.4) of this transaction, "for"
 * for_addr when not NULL, appended to h. */
void smtp_received_header(struct smtp_session *s, str_t *h,
    const char *for_addr);
/* Consume DATA lines from in. Returns true at the end of DATA; false
 * when more is needed, or when smtp_data_timeout has passed (the session
 * then ends with 421). */
bool smtp_read_data(struct smtp_session *s, struct evbuffer *in);
/* Consume BDAT chunk bytes. Returns true when the chunk is complete. */
bool smtp_read_bdat(struct smtp_session *s, struct evbuffer *in);
/* A BDAT chunk has been read: answer it, or deliver after the last. */
void smtp_bdat_chunk_done(struct smtp_session *s);
/* The body is complete: refuse it, or submit the delivery job. */
void smtp_start_delivery(struct smtp_session *s);

/* milter.c: what the filters (`milters`) say of the message, asked on
 * the delivery job thread before it is stored; their changes are applied
 * to the transaction (body, sender, recipients). A filter's own reply
 * line in *reply_r (REJECT, TEMPFAIL), else NULL. */
enum smtp_milter_outcome {
	SMTP_MILTER_DELIVER,
	SMTP_MILTER_REJECT,
	SMTP_MILTER_TEMPFAIL,
	SMTP_MILTER_DISCARD,
	SMTP_MILTER_ERROR,	/* the changed message could not be written */
};
enum smtp_milter_outcome smtp_milter_check(struct smtp_session *s,
    char **reply_r);
/* At MAIL (job thread): the conversations begin; REJECT or TEMPFAIL
 * refuses the sender (the conversations closed). */
enum smtp_milter_outcome smtp_milter_mail(struct smtp_session *s,
    const char *sender, char **reply_r);
/* At RCPT (job thread), for a routed recipient: REJECT or TEMPFAIL
 * refuses this recipient. */
enum smtp_milter_outcome smtp_milter_rcpt(struct smtp_session *s,
    const char *rcpt, char **reply_r);
/* The conversations end (never waits; from the loop). */
void smtp_milter_close(struct smtp_session *s);

/* cmd_mail.c: a sender that passed petrel's own checks and SPF goes to
 * the filters (a job when there are any), else is accepted. */
void smtp_mail_filter(struct smtp_session *s, char *addr);

/* trust.c: SPF, DKIM and the Authentication-Results field. */
void smtp_trust_init(struct smtp_server *srv, const struct config *cfg);
/* Is the client this host itself (127.0.0.1 or ::1 exactly, like
 * Postfix's permit_mynetworks default): no SPF, DMARC, block lists or
 * greylisting for it. */
bool smtp_local_client(const struct smtp_session *s);
/* Will smtp_trust_mail check SPF for this session (a job)? */
bool smtp_trust_spf_wanted(const struct smtp_session *s);
/* At MAIL: true when an SPF job was started for addr (it takes addr and
 * goes on with smtp_mail_filter, or refuses the sender); false when
 * there is nothing to check (addr untouched). */
bool smtp_trust_mail(struct smtp_session *s, char *addr);
/* The transaction's dmarc_policy (SMTP_DMARC_*): its recipients' from
 * domain_policy_file, else the server's. */
int smtp_dmarc_policy(const struct smtp_session *s);
/* At RCPT, a recipient about to be accepted: the policies of its domain
 * (domain_policy_file). true when it was refused here (SPF: 550 5.7.23
 * or 451 4.7.24; another DMARC policy than the transaction's: 452). */
bool smtp_trust_rcpt(struct smtp_session *s, const char *addr);
/* At the end of the data (job thread, before the filters): verify the
 * DKIM signatures and the ARC chain (*arc: its verdict, arc->checked
 * false when not validated), check DMARC (s->job_dmarc: what enforce
 * asks), remove Authentication-Results fields that claim this host's
 * authserv-id, append ours to prefix. 0, or -1 when the message could
 * not be rewritten. */
struct arc_verdict;
int smtp_trust_data(struct smtp_session *s, str_t *prefix,
    struct arc_verdict *arc);
/* dmarc_failure.c: DMARC failure reports (`dmarc_failure_reports`). */
struct dmarc_verdict;
struct dkim_verdict;
void smtp_dmarc_failure_init(struct smtp_server *srv,
    const struct config *cfg);
/* Does fo= (RFC 7489 6.3) ask for a report of these results? *what: the
 * report's Auth-Failure type. */
bool smtp_dmarc_failure_fo(const char *fo, const struct dmarc_verdict *v,
    const char *spf, const struct dkim_verdict *dk, size_t ndk,
    const char **what);
/* At the end of the data (job thread): a report of this message handed
 * to the report thread when its record and results ask for one (never
 * waits for DNS, the database or the queue). headers: the header
 * section as received; authres: our Authentication-Results field. */
void smtp_dmarc_failure(struct smtp_session *s,
    const struct dmarc_verdict *dv, const struct dkim_verdict *dk,
    size_t ndk, const char *headers, size_t hlen, const char *authres,
    size_t alen);
/* dnsbl.c: block lists (`dnsbl_sites`) and greylisting (`greylist`). */
void smtp_dnsbl_init(struct smtp_server *srv, const struct config *cfg);
void smtp_dnsbl_deinit(struct smtp_server *srv);
/* At connect: the lookups sent (never waits). */
void smtp_dnsbl_start(struct smtp_session *s);
/* At MAIL (a sender that passed the syntax checks): rhsbl_sites asked
 * about its domain (never waits). */
void smtp_rhsbl_mail(struct smtp_session *s, const char *addr);
/* rhsbl_helo_sites asked about the HELO/EHLO name, answers awaited at RCPT. */
void smtp_rhsbl_helo(struct smtp_session *s, const char *name);
/* At the session's end: lookups still out cancelled. */
void smtp_dnsbl_end(struct smtp_session *s);
/* At RCPT: true when the command was answered here (554: listed) or is
 * held until the answers are in (smtp_cmd_rcpt is then called again). */
bool smtp_dnsbl_rcpt(struct smtp_session *s, const char *arg);
/* At RCPT, on the routing job thread, for a recipient that exists:
 * true when the triplet is greylisted (451). */
bool smtp_greylist_rcpt(struct smtp_session *s, const char *rcpt);
/* lmtp.c: the LMTP mode (RFC 2033) of the session. */
/* LHLO: the capabilities (no AUTH). */
void smtp_cmd_lhlo(struct smtp_session *s, const char *arg);
/* Commands LMTP does not have (HELO, EHLO, AUTH): answered and true. */
bool lmtp_refuses(struct smtp_session *s, enum smtp_verb v);
/* A reply to the whole message after DATA: once per recipient in LMTP
 * (RFC 2033 4.2), once in SMTP. */
void smtp_reply_message(struct smtp_session *s, bool error,
    const char *line);
/* The delivery job of an LMTP message: each recipient on its own, its
 * own quota check with the real size; lmtp_data_done replies in RCPT
 * order. */
void lmtp_data_run(struct smtp_session *s, struct authc *authc);
void lmtp_data_done(struct smtp_session *s);

/* xmove.c: XMOVE on the LMTP listener, `petrel user move` writing a
 * maildir here from another backend. The longest line it takes. */
#define SMTP_XMOVE_LINE_MAX 32768
void smtp_cmd_xmove(struct smtp_session *s, const char *arg);
/* A command line while s->xmove is set. */
void smtp_xmove_line(struct smtp_session *s, char *line);
/* PUT's bytes: true when all are in; then smtp_xmove_put_done. */
bool smtp_xmove_read(struct smtp_session *s, struct evbuffer *in);
void smtp_xmove_put_done(struct smtp_session *s);
/* At the session's end: a PUT's temporary file removed. */
void smtp_xmove_free(struct smtp_session *s);

/* cmd_auth.c */
void smtp_cmd_auth(struct smtp_session *s, const char *arg);
/* May this session authenticate (and say so in EHLO)? */
bool smtp_auth_allowed(const struct smtp_session *s);
/* lib/session's login hooks (session_ops.login_job, .login_done). */
int smtp_auth_job(struct session *base, struct authc *ac,
    const struct dir_user *u);
void smtp_auth_done(struct session *base, int result);
/* The AUTH replies of the SASL exchange (lib/session). */
extern const struct session_sasl_words smtp_sasl_words;

#endif
