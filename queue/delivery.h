#ifndef PETREL_QUEUE_DELIVERY_H
#define PETREL_QUEUE_DELIVERY_H
/*
 * delivery.h: what the parts of the queue manager share (private to
 * queue/): the manager (scheduler.c), one delivery attempt to one
 * destination, its resolution (mx.c) and its SMTP (or LMTP) client
 * session (outbound.c).
 *
 * An attempt goes: scheduler.c starts it and submits JOB_RESOLVE; mx.c
 * fills in the addresses on a job thread; outbound.c connects and talks
 * SMTP on the loop, then delivery_finish() submits JOB_FINISH, which
 * scheduler.c runs (state file, bounces) and completes.
 */
#include <event2/bufferevent.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/io/jobs.h"
#include "lib/queue/queue.h"

#define MAX_ADDRS 8

enum cstate {
	C_CONNECT, C_GREETING, C_EHLO /* or LHLO */, C_HELO, C_STARTTLS,
	C_RSET /* a kept connection's RSET, answer pending */, C_MAIL, C_RCPT,
	C_DATA, C_BODY, C_QUIT, C_DONE
};

struct mgr;
struct dnsq_pump;
struct node_counters;
struct tls_tlsa;
struct mta_sts_policy;
struct sts_cache;
struct ub_result;

/* MTA-STS (RFC 8461, sts.c) for an address: what its session must do. */
enum {
	STS_NONE,	/* no policy (or DANE governs the host) */
	STS_CHECK,	/* the host matches the policy: STARTTLS, the
			 * certificate verified for its name (enforce: or
			 * not this host; testing: logged) */
	STS_NOMATCH,	/* enforce, and the host matches no mx pattern:
			 * not this host */
	STS_TESTING_NOMATCH,	/* testing, and the host matches no mx
				 * pattern: as STS_NONE, but the TLS report
				 * counts a failure */
};

/*
 * DANE (RFC 7672) for one MX host, found by mx.c when `dane` is on and
 * the MX records and the host's addresses are DNSSEC-secure: what a
 * session to its addresses must do.
 */
enum dane_level {
	DANE_VERIFY,	/* usable TLSA records: STARTTLS, and the
			 * certificate must match one */
	DANE_ENCRYPT,	/* secure TLSA records, none usable: STARTTLS
			 * without a match (RFC 7672 2.2) */
	DANE_FAIL,	/* the TLSA lookup failed: not this host now */
};

struct dane_host {
	enum dane_level level;
	char *name;		/* the TLSA base domain (SNI name, reference
				   identifier): the MX host or its CNAME
				   target (RFC 7672 2.2.2) */
	char *alias;		/* the other of the two when the MX host is a
				   CNAME (a reference identifier too), or NULL */
	struct tls_tlsa *tlsa;
	size_t ntlsa;
	char *why;		/* DANE_FAIL: the reason (a 4xx reply) */
	const char *rpt_result;	/* DANE_FAIL: its TLS report result type */
};

/*
 * A destination (a transport, or a domain for MX delivery): the key of
 * the per-destination concurrency limit. One record per name, shared by
 * the attempts in flight and by the queued messages that wait for it, so
 * "may a message start now" is a pointer and a count, not a walk of the
 * attempts in flight (scheduler.c).
 */
struct dest {
	struct dest *next;	/* hash chain */
	unsigned active;	/* attempts in flight to it */
	unsigned limit;		/* how many at once: lmtp_destination_
				 * concurrency for an lmtp: transport (a
				 * backend of ours), else
				 * queue_destination_concurrency */
	unsigned mark;		/* last sweep that found it in use */
	char name[];
};

#define DEST_BUCKETS 1024

struct delivery {
	struct mgr *m;
	struct delivery *next;
	struct queue_msg msg;
	size_t *idx;		/* recipients (indexes into msg.rcpts) */
	size_t nidx;
	struct dest *dest;	/* concurrency key */
	char *host;		/* what to resolve */
	unsigned port;
	bool use_mx;
	bool lmtp;		/* RFC 2033: LHLO, a reply per recipient
				 * after the data */
	/* resolved */
	struct sockaddr_storage addrs[MAX_ADDRS];
	socklen_t addrlen[MAX_ADDRS];
	char names[MAX_ADDRS][300];
	size_t naddrs, cur;
	char *resolve_error;
	bool resolve_permanent;
	/* DANE: per address, its MX host's requirement (1 + an index
	 * into dane; 0: none, i.e. opportunistic TLS) */
	int addr_dane[MAX_ADDRS];
	struct dane_host *dane;
	size_t ndane;
	/* MTA-STS: the recipient domain's policy (NULL: none, or mode
	 * none), and per address what it means (STS_*) */
	struct mta_sts_policy *sts;
	unsigned char addr_sts[MAX_ADDRS];
	const char *tls_note;	/* for the log: "dane-verified", ... */
	/* `tls_rpt_reports = yes` (tlsrpt.c): this session is recorded;
	 * the local address of its connection */
	bool rpt_done;
	char local_ip[64];
	bool rt_offered;	/* the server's EHLO lists REQUIRETLS */
	bool gave_up_temp;	/* an address was given up for a reason
				   that may pass (addr_next) */
	/* session */
	struct bufferevent *bev;
	enum cstate state;
	bool pipelining, starttls, tls, esmtp;
	size_t rcpt_sent, rcpt_replied, accepted;
	size_t data_next, data_replied;	/* LMTP: the next recipient (index
					 * into idx) and how many got their
					 * reply after the data */
	int *codes;		/* per recipient: 0 = none yet */
	char **texts;
	char *relay;		/* "host[ip]:port" for logs */
	unsigned conn_uses;	/* transactions on this connection before
				   this one (0: a new connection) */
	time_t started;
	struct job job;
	int job_kind;
	bool job_pending;
	time_t hold_until;	/* the state could not be written: not
				   before this (set by the finish job) */
	bool removed;		/* every recipient done, the files removed
				   (set by the finish job) */
};

/* An LMTP connection kept open after a delivery (RSET sent), for the next
 * delivery to the same backend (outbound.c). */
struct conn_cache;

struct mgr {
	struct petrel_ctx *ctx;
	struct node_counters *nc;	/* the node's counts (NULL: none) */
	const struct config *cfg;
	struct event_base *base;
	struct jobs *jobs;
	struct tls_client *tls;
	/* proxy_tls_ca set: LMTP always over STARTTLS, the server's
	 * certificate verified (lmtp_tls; NULL when the CA did not load,
	 * lmtp_tls_error says why and LMTP deliveries are deferred) */
	bool lmtp_verify;
	struct tls_client *lmtp_tls;
	char *lmtp_tls_error;
	/* REQUIRETLS (RFC 8689) messages: the certificates of MX hosts
	 * without DANE are checked against smtp_tls_ca (the system's store
	 * by default); NULL when that did not load (pkix_tls_error) */
	struct tls_client *pkix_tls;
	char *pkix_tls_error;
	/* `mta_sts = on`: MX deliveries look up the recipient domain's
	 * MTA-STS policy (sts.c; NULL: off) */
	struct sts_cache *sts_cache;
	/* `tls_rpt_reports = yes`: queue_dir/state.db (NULL: off) */
	char *tls_rpt_db;
	char *queue_dir;
	const char *hostname;
	struct event *ev_scan, *ev_inotify, *ev_usr1, *ev_term;
	int ifd;
	struct delivery *active;
	unsigned nactive;
	bool stopping, flush;
	time_t tmp_cleaned;	/* last sweep of QUEUE_DIR/tmp */
	unsigned retry_min, retry_max, lifetime, scan_interval;
	unsigned max_active, max_per_dest, max_per_lmtp, timeout;
	struct ub_ctx *ub;
	struct dnsq_pump *ub_pump;	/* NULL: lookups by ub_resolve */
	bool dane;		/* `dane = opportunistic`, and validating */
	struct hold *holds;
	/* The queue in memory: every queued message by id (sorted), with
	 * what its last reading showed (scheduler.c). The directory is
	 * listed at start, on the timer, on a flush and when inotify lost
	 * events; new messages come in by their inotify events and
	 * finished ones leave by their attempt, so a scan costs a walk of
	 * this array, not a listing of the queue. */
	struct seen *seen;
	size_t nseen, seen_cap, ngone;
	bool relist;		/* list the directory before the next scan */
	struct event *ev_kick;	/* a scan at the next turn of the loop */
	struct dest *dests[DEST_BUCKETS];
	unsigned dest_gen;
	struct conn_cache *cache;	/* idle LMTP connections */
	unsigned ncache;
};

/*
 * A queued message as last read and not started: the destinations of
 * its pending recipients and the earliest time one is due. With
 * hundreds of messages waiting for a destination at its concurrency
 * limit, every scan (one after each attempt) used to read every one of
 * them again to find that none could start; now it reads only those
 * that can. An attempt drops the entry (its state file changes), so the
 * message is read afresh after it; a flush reads everything.
 */
struct seen {
	char id[17];
	bool known;
	bool active;		/* an attempt is in flight */
	bool gone;		/* removed from the queue (a hole until the
				   array is compacted) */
	struct dest **dests;
	size_t ndests;
	long long due;		/* the earliest next attempt; LLONG_MAX: none */
	long long arrival;
	bool flush;		/* queued when a flush was asked for and not
				   attempted since: due now, whatever its
				   back-off or hold says */
};

/*
 * Messages whose state file could not be rewritten after an attempt (disk
 * full): the file on disk still says "due now", so without this the next
 * scan would try again at once, over and over. The back-off is kept here
 * instead, in memory, growing with each failure, until a state write
 * works again (or the manager restarts, which retries once).
 */
struct hold {
	struct hold *next;
	char *id;
	time_t until;
	unsigned fails;
};

enum { JOB_RESOLVE, JOB_FINISH };

/* scheduler.c */
/* Run JOB_RESOLVE or JOB_FINISH for d on a job thread. */
void delivery_submit(struct delivery *d, int kind);

/* mx.c */
/* A transport or relayhost: "smtp:[host]:port", "smtp:host:port",
 * "smtp:host", "[host]" ("relay:" as "smtp:"); brackets mean no MX
 * lookup. "lmtp:[host]:port", "lmtp:inet:host:port", "lmtp:host": LMTP
 * (*lmtp_r), port 24 by default, never an MX lookup. false if
 * malformed. */
bool nexthop_parse(const char *t, char **host_r, unsigned *port_r,
    bool *mx_r, bool *lmtp_r);
/* On a job thread: fill d->addrs from d->host (MX records, or the host itself), or set
 * d->resolve_error (d->resolve_permanent for a domain that takes no mail). */
void mx_resolve(struct delivery *d);
/* Free what mx_resolve found for DANE. */
void mx_dane_free(struct delivery *d);
/* A lookup (class IN) on the manager's resolver, as ub_resolve. */
int mx_ub_resolve(struct delivery *d, const char *name, int type, int cls,
    struct ub_result **res_r);

/* sts.c */
void sts_cache_init(struct mgr *m);
void sts_cache_free(struct mgr *m);
/* On a job thread: d->sts from the policy of d->host (cached, or its
 * record and policy fetched), or left NULL. */
void sts_lookup(struct delivery *d);

/* tlsrpt.c: SMTP TLS reporting (RFC 8460) rows, handed to the state
 * database's writer thread (never blocks) */
/* The session to the address being tried (dh: its DANE requirement):
 * result NULL for a success, else an RFC 8460 result type with detail.
 * Once per session; nothing unless the manager records. */
void rpt_session(struct delivery *d, const struct dane_host *dh,
    const char *result, const char *detail);
/* The recipient domain's MTA-STS policy could not be had (sts.c). */
void rpt_policy_error(struct delivery *d, const char *result,
    const char *detail);

/* outbound.c (on the loop) */
/* Connect to d->addrs[d->cur] and deliver; the next address when a
 * connection fails. */
void delivery_connect(struct delivery *d);
/* Record the outcome for every recipient still without a reply, close
 * the connection and write the state. code 0: a normal end. */
void delivery_finish(struct delivery *d, int code, const char *text);
/* Close every kept connection (the manager stops). */
void conn_cache_clear(struct mgr *m);

#endif
