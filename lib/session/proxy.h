#ifndef PETREL_PROXY_H
#define PETREL_PROXY_H
/*
 * A frontend's session on a backend (SPEC 6, scale-out): connect without
 * blocking, read the greeting, STARTTLS when the backend offers it (the
 * certificate is not checked, as for opportunistic SMTP; with a
 * verifying tls client, proxy_tls_ca, STARTTLS is required and the
 * certificate must chain to the CA and name host), pass on the
 * client's address (IMAP ID x-originating-ip/-port, POP3 and ManageSieve
 * XCLIENT), log in
 * as the user with SASL PLAIN, authorization identity the user,
 * authentication identity SASL_PROXY_AUTHCID, password proxy_secret.
 * The user's own password never goes to the backend.
 */
#include <stdbool.h>
#include <sys/socket.h>

struct bufferevent;
struct event_base;
struct tls_client;

enum proxy_proto { PROXY_IMAP, PROXY_POP3, PROXY_MANAGESIEVE };

struct proxy_params {
	enum proxy_proto proto;
	const struct sockaddr *sa;	/* the backend */
	socklen_t salen;
	const char *host;		/* its name: SNI, logs */
	struct tls_client *tls;		/* NULL: never STARTTLS */
	const char *user, *secret;
	const char *client_ip;
	unsigned client_port;
	unsigned timeout_s;		/* for all of the above */
};

/* The outcome, once: bev is the logged-in connection (the caller owns
 * it; no callbacks set, reading disabled), with caps the IMAP
 * capabilities after login (POP3: "") and tls whether it runs over TLS;
 * or bev NULL and why says what failed. Strings live until the callback
 * returns. */
typedef void proxy_done_fn(void *arg, struct bufferevent *bev,
    const char *caps, bool tls, const char *why);

struct proxy_conn;
/* Start; NULL (done not called) when no socket could be made, *why_r
 * set. */
struct proxy_conn *proxy_connect(struct event_base *base,
    const struct proxy_params *p, proxy_done_fn *done, void *arg,
    const char **why_r);
/* Give up (done is not called). */
void proxy_cancel(struct proxy_conn *pc);

#endif
