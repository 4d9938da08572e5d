#ifndef PETREL_POP3_H
#define PETREL_POP3_H
/* The POP3 server (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL) for one
 * worker process, on the shared Maildir store and login code. */
#include <stdbool.h>

#include "lib/session/session.h"
#include "lib/store/maildrop.h"

struct config;
struct event_base;
struct jobs;
struct sockaddr;
struct tls_server;

struct pop3_server {
	struct session_server sv;	/* sessions, limits, TLS, jobs */
	const char *mail_root;
	enum store_uidl_format uidl_format;	/* pop3_uidl_format */
};

void pop3_server_init(struct pop3_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
void pop3_server_deinit(struct pop3_server *srv);

#endif
