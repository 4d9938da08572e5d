#ifndef PETREL_IMAP_H
#define PETREL_IMAP_H
/* The IMAP server (RFC 3501 IMAP4rev1 with IDLE, UIDPLUS, MOVE,
 * NAMESPACE, LITERAL+, ENABLE, ID, UNSELECT, CHILDREN, SPECIAL-USE,
 * QUOTA, SASL-IR) for one worker process, on the Maildir store. */
#include <stdbool.h>
#include <stdint.h>

#include "lib/session/session.h"

struct config;
struct event;
struct event_base;
struct jobs;
struct sockaddr;
struct tls_server;

struct imap_server {
	struct session_server sv;	/* sessions, limits, TLS, jobs */
	const char *mail_root;
	uint64_t size_limit;		/* message_size_limit (APPEND) */
	const char *ns_prefix;		/* imap_namespace_prefix: "" or
					   "INBOX." (imap/folders.c) */

	/* change notification: one inotify descriptor per worker */
	int inotify_fd;
	struct event *inotify_ev;
	struct imap_watch *watches;
};

void imap_server_init(struct imap_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
void imap_server_deinit(struct imap_server *srv);

#endif
