#ifndef PETREL_SESSION_H
#define PETREL_SESSION_H
/*
 * The life cycle every line protocol shares (SMTP, submission, POP3,
 * IMAP, LMTP, ManageSieve): accept with total and per-address
 * limits per listener, the idle timeout, the deadline for one command
 * line and the one for logging in (login_timeout), STARTTLS, "close
 * once the replies are out", drain at shutdown,
 * unique 64-bit session ids in the logs, and one login path (a directory
 * job, the failed-login delay, the password wiped on every path).
 *
 * A protocol embeds struct session as the first member of its own
 * session struct and gives a table of callbacks (struct session_ops).
 * The base owns the bufferevent and the session's memory: a session is
 * freed in exactly one place (session.c), after ops->cleanup.
 *
 * Flow: input or drained output calls ops->process unless a job runs
 * (busy) or the session is closing (quit). A protocol that starts a job
 * sets busy through session_job_submit; its done callback ends with
 * session_job_finished, which frees a session whose client went away
 * meanwhile, or carries on reading.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/auth/login.h"
#include "lib/io/jobs.h"
#include "lib/maildir/quota.h"
#include "lib/session/sasl.h"

struct bufferevent;
struct config;
struct authc;
struct dir_user;
struct event;
struct event_base;
struct evbuffer;
struct evbuffer_cb_entry;
struct node_counters;
struct session;
struct sockaddr;
struct tls_server;
struct tls_client;
struct greylist_net;
struct proxy_conn;
struct sockaddr_storage;

#define SESSION_LISTENERS_MAX 4

/* A listener's limits (X_max_connections, X_max_connections_per_ip),
 * held for the whole node through shared counts (lib/session/counters). */
struct session_listener {
	const char *name;	/* "smtp", "imaps", ...: config key prefix */
	unsigned max_conn;
	unsigned max_conn_per_ip;
	unsigned nsessions;	/* open now, this worker */
	struct node_counters *nc;
	unsigned service;	/* its index in nc */
	const char *log_service;	/* syslog program: "smtpd",
					   "submission/smtpd", "imap", ... */
};

struct session_ops {
	size_t size;		/* of the protocol's session struct */
	const char *proto;	/* in log lines: "smtp", "imap", "pop3" */
	/* Its listeners (config key prefixes), the key of its timeout and
	 * the line (without CRLF) a client refused at a limit gets. */
	const char *listeners[SESSION_LISTENERS_MAX];
	bool implicit_tls[SESSION_LISTENERS_MAX];	/* TLS from the start */
	const char *timeout_key;
	/* Whether login_timeout applies: a session that has not logged in
	 * within it is closed with the timeout's goodbye (IMAP, POP3). */
	bool login_timeout;
	const char *refusal;
	/* Timeout used when the configured one is 0. */
	unsigned default_timeout;
	/* Error replies (session_error) a session may get before it is
	 * closed with the too_many_errors line; 0 = no limit. */
	unsigned errors_max;
	const char *too_many_errors;
	/* A new session is live: fill the protocol's part (zeroed) and
	 * greet. */
	void (*greet)(struct session *s);
	/* Read and handle input (called while !busy && !quit). Returns
	 * true when a command line is partly buffered (its deadline
	 * runs). */
	bool (*process)(struct session *s);
	/* Output went below the low watermark while !busy && !quit; NULL
	 * or false: process as usual. */
	bool (*writable)(struct session *s);
	/* The idle timeout: write the protocol's goodbye. */
	void (*timeout)(struct session *s);
	/* Shutting down: write the goodbye and return true if the session
	 * can close now; false keeps it (e.g. an SMTP transaction). */
	bool (*drain)(struct session *s);
	/* Free the protocol's state (not the struct itself). */
	void (*cleanup)(struct session *s);

	/* Logins (session_login_start). On the job thread after a good
	 * password: fill the session from the user row (maildir, ...);
	 * return AUTH_OK, AUTH_TEMPFAIL or a protocol code (>= 100) that
	 * login_done gets back. NULL: nothing to do. */
	int (*login_job)(struct session *s, struct authc *ac,
	    const struct dir_user *u);
	/* On the loop: the outcome (AUTH_OK, AUTH_TEMPFAIL, AUTH_FAIL
	 * after the failed-login delay, or login_job's own code). */
	void (*login_done)(struct session *s, int result);
	/* On a frontend (role = frontend), instead of login_job and
	 * login_done after a good password: the backend session is open
	 * (caps: its capabilities after login, "" for POP3) and the
	 * protocol answers the login, after which bytes are relayed both
	 * ways; or it could not be opened (caps NULL): the protocol answers
	 * with its temporary error and stays before login. NULL: this
	 * protocol is not proxied. user: the address logged in. */
	void (*proxied)(struct session *s, const char *user,
	    const char *caps);
	/* Its field in backend_ports (1 IMAP, 2 POP3, 3 ManageSieve). */
	unsigned backend_port_field;
};

/* One protocol's sessions in one worker. */
struct session_server {
	struct event_base *base;
	struct jobs *jobs;		/* the disk: delivery, mailbox work */
	struct jobs *dir_jobs;		/* directory queries (logins) */
	struct tls_server *tls;		/* NULL: no STARTTLS / implicit TLS */
	const struct session_ops *ops;
	void *owner;			/* the protocol's server */
	struct session_listener listeners[SESSION_LISTENERS_MAX];
	char *hostname;
	unsigned timeout;		/* seconds idle / per command line */
	unsigned login_timeout;		/* seconds to log in; 0: none */
	unsigned fail_delay_ms;		/* auth_fail_delay */
	const char *plaintext;		/* allow_plaintext_auth */
	unsigned nsessions;
	struct session *sessions;	/* all live sessions */
	struct node_counters *own;	/* counts until the node's are set */
	bool draining;

	/* scale-out (SPEC 6): proxy_trusted_networks (may pass a client's
	 * address and log in with proxy_secret); on a frontend, the
	 * secret, backend_default, the port and a TLS client context */
	struct greylist_net *proxy_nets;
	size_t nproxy_nets;
	bool frontend;
	char *proxy_secret;
	char *backend_default;
	unsigned backend_port;
	struct tls_client *proxy_tls;	/* verifying when proxy_tls_ca is
					 * set */
	char *proxy_tls_error;	/* proxy_tls_ca set but not loaded: every
				 * proxied login fails with this */
};

struct session {
	struct session_server *srv;
	const struct session_listener *listener;
	struct bufferevent *bev;
	struct session *next, *prev;
	char ip[64];
	char peer[80];		/* "[ip]:port" for logs */
	unsigned port;
	bool proxy_trusted;	/* from proxy_trusted_networks, until a
				 * login */
	bool client_set;	/* ip/peer/port are the frontend's client's */
	unsigned bucket;	/* of ip in the listener's counts */
	uint64_t sid;		/* unique on this node: %016llx in logs */
	bool tls, loopback;
	bool compressed;	/* COMPRESS=DEFLATE is on (RFC 4978) */
	bool busy;		/* a job or a timer owns the session */
	bool dead;		/* the client is gone: free when not busy */
	bool quit;		/* goodbye written: close once flushed */
	bool timed_out;		/* timeout while busy: goodbye after it */
	bool skip_line;		/* dropping the rest of an overlong line */
	unsigned errors;	/* error replies so far */
	struct event *close_ev, *line_ev, *delay_ev;
	struct event *login_ev;	/* login_timeout, until a login */
	/* A plain socket's replies are written by the session itself, at
	 * the end of the loop round that made them (flush_ev), without
	 * arming EV_WRITE: the bufferevent writes only what the socket did
	 * not take at once. Off under TLS and COMPRESS (their layers write). */
	struct event *flush_ev;
	struct evbuffer_cb_entry *flush_cb;
	const char *log_service;	/* its listener's (log_service_set) */
	void (*hold_fn)(struct session *s);	/* at the end of a hold */
	long long quit_at_ms;	/* when quit was set (bounded flush) */

	/* login in flight (session_login_start) */
	struct job login_job;
	char *login_name, *login_pass;
	char *login_challenge;	/* CRAM-MD5's; NULL for a password */
	struct quota_limit login_quota;	/* the user's quota */
	int login_result;
	bool login_proxy;	/* login_pass is proxy_secret */

	/* a frontend: the user's backend (resolved on the login job),
	 * the connection being opened, then the one relayed to */
	char *proxy_user, *proxy_host, *proxy_why;
	struct sockaddr_storage *proxy_addr;
	unsigned proxy_addrlen;
	struct proxy_conn *proxy;
	struct bufferevent *relay;
};

/* "%016llx" of a session id, for log lines. */
#define SID(s) ((unsigned long long)(s)->sid)

/* The listeners' limits come from the configuration. Until
 * session_server_count names the node's counts, the server counts its
 * own sessions only. */
void session_server_init(struct session_server *srv,
    const struct session_ops *ops, void *owner, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
/* Count a listener's sessions in the node's counts (service: its index
 * there). Call before the first accept. */
void session_server_count(struct session_server *srv, unsigned listener,
    struct node_counters *nc, unsigned service);
void session_server_deinit(struct session_server *srv);

/* The index of a listener by its name ("imaps"), -1 if not this
 * protocol's. */
int session_server_listener(const struct session_server *srv,
    const char *name);
/* A new connection (fd non-blocking) on a listener: refused with the
 * protocol's line past its limits (the fd is closed), else a live
 * session greeted by ops->greet. */
void session_accept(struct session_server *srv, unsigned listener, int fd,
    const struct sockaddr *sa);
/* Idle sessions get the protocol's goodbye and close; busy ones when
 * done. Returns the number of sessions still open. */
unsigned session_server_drain(struct session_server *srv);

/* Output */
void session_printf(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* fmt + CRLF */
void session_reply(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void session_vreply(struct session *s, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* prefix, fmt, CRLF: an error reply. Past ops->errors_max of them the
 * session says too_many_errors and closes. */
void session_error(struct session *s, const char *prefix, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
struct evbuffer *session_output(struct session *s);
struct evbuffer *session_input(struct session *s);
/* Too many replies wait for a slow reader: stop taking commands. */
bool session_output_full(struct session *s);

/* The next command line of at most max bytes (CRLF or LF removed, NUL
 * terminated; free with session_line_free, which wipes it). Returns 1 a
 * line, 0 none complete yet, -1 an overlong line: the caller answers it
 * once (the rest of it is dropped without another -1). */
int session_take_line(struct session *s, size_t max, char **line_r,
    size_t *len_r);
void session_line_free(char *line, size_t len);
/* A protocol that frames its own input took a whole command line: the
 * line deadline starts again with the next partial one. */
void session_line_taken(struct session *s);

/* Close once the replies written so far are out (bounded in time). */
void session_quit(struct session *s);
/* Read and handle input now (after a job, after STARTTLS). May free s. */
void session_resume(struct session *s);

/* Jobs: busy while it runs; the done callback ends with
 * session_job_finished (which may free s). */
void session_job_submit(struct session *s, struct jobs *pool,
    struct job *job);
void session_job_finished(struct session *s);
/* A timer that holds the session (busy) for ms, then calls fn. */
void session_hold(struct session *s, unsigned ms,
    void (*fn)(struct session *s));

/* STARTTLS: the reply is written; switch the connection to TLS (the
 * replies already written go out in clear first, unread input is
 * discarded). -1: TLS could not start (the session quits). */
int session_starttls(struct session *s);
/* Put a raw-deflate layer over the connection (RFC 4978); what is
 * already queued leaves uncompressed. -1 (and the session quits) when
 * zlib cannot start. */
int session_compress(struct session *s);

/* Whether a plain-text password may be used here (allow_plaintext_auth:
 * always over TLS; "yes"; "loopback" from 127/8 and ::1). */
bool session_plaintext_ok(const struct session *s);

/* Logins: query_login + crypt on the directory job pool, then
 * ops->login_job; ops->login_done on the loop (after the growing
 * failed-login delay for a wrong password). Takes both strings; the
 * password is wiped and freed on every path. */
void session_login_start(struct session *s, char *login, char *pass);
/* The same for CRAM-MD5 (RFC 2195): the client's digest (hex) and the
 * challenge it answers; the auth process checks them. Takes all three. */
void session_login_start_cram(struct session *s, char *login, char *digest,
    char *challenge);

/* A frontend's session for user (SASL PLAIN from SASL_PROXY_AUTHCID on
 * a connection from proxy_trusted_networks): secret is checked by the
 * auth process as a password would be. Takes both strings. */
void session_login_start_proxy(struct session *s, char *user, char *secret);
/* A frontend passed its client's address (IMAP ID, POP3 XCLIENT): from
 * now on logs, the guessing limits and the login use it. false (nothing
 * changed) unless the connection is from proxy_trusted_networks, has
 * not logged in nor set a client yet, and ip is an address. */
bool session_set_client(struct session *s, const char *ip, unsigned port);

/* Whether the directory returns cleartext passwords, so that CRAM-MD5
 * can be offered (asked of the auth process when the worker starts):
 * 1 yes, 0 no, -1 not known yet. */
void session_cleartext_set(int known);
int session_cleartext_get(void);
/* Whether CRAM-MD5 may be offered to s: the directory returns
 * cleartext, and s is over TLS or from loopback (SPEC 6.1). */
bool session_cram_ok(const struct session *s);
/* A protocol's words for the steps of a SASL exchange (lib/session/sasl):
 * what goes before a challenge ("334 ", "+ ") and after it (NULL:
 * nothing; ManageSieve quotes it), and the
 * lines for an aborted exchange, an undecodable response and an unknown
 * mechanism, which error() sends. */
struct session_sasl_words {
	const char *challenge, *challenge_end;
	const char *aborted, *bad, *nomech;
	void (*error)(struct session *s, const char *line);
};

/* AUTH mech [initial]: start an exchange; it ends in a login
 * (session_login_start) or an error reply. */
void session_sasl_start(struct session *s, struct sasl *x,
    const struct session_sasl_words *w, unsigned allowed, const char *mech,
    const char *initial);
/* A response line while sasl_active(x). */
void session_sasl_step(struct session *s, struct sasl *x,
    const struct session_sasl_words *w, const char *line);

/* Free and wipe a secret string; NULL is fine. */
void session_wipe(char **p);

#endif
