#ifndef PETREL_ROUTE_H
#define PETREL_ROUTE_H
/*
 * Recipient resolution (SPEC section 1, Postfix virtual(5)/transport(5)
 * semantics): transport map, virtual aliases (recursive, 1->N, loop
 * detection, catch-all), recipient delimiter, users. Runs synchronously
 * on a directory handle: call it from a job thread, not the event loop.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/maildir/quota.h"

struct dir;

enum route_status {
	ROUTE_OK,		/* dests filled */
	ROUTE_UNKNOWN,		/* 550 5.1.1 unknown user of a hosted domain */
	ROUTE_RELAY_DENIED,	/* 554 5.7.1 foreign domain, not authenticated */
	ROUTE_ERROR,		/* 550 5.1.1 error:text transport (text) */
	ROUTE_LOOP,		/* 554 5.4.6 alias loop */
	ROUTE_TEMPFAIL,		/* 451 4.3.0 directory unavailable */
	ROUTE_CONFIG,		/* 451 4.3.5 broken query or transport */
};

enum route_kind {
	ROUTE_MAILDIR,		/* the user's Maildir (virtual:, local:) */
	ROUTE_REMOTE,		/* the outbound queue (MX or smtp:/relay:) */
	ROUTE_DISCARD,		/* discard: accepted and dropped */
	ROUTE_KIND_LAST = ROUTE_DISCARD
};

/* What a transport value (transport table, Postfix transport(5)) means
 * to petrel. */
enum route_transport {
	TRANSPORT_LOCAL,	/* "", virtual:, local: -> the users' Maildirs */
	TRANSPORT_MAILDROP,	/* maildrop: delivered as virtual: (filters
				 * of Courier maildrop are not run) */
	TRANSPORT_RELAY,	/* smtp:, relay: */
	TRANSPORT_LMTP,		/* lmtp:[host]:port, lmtp:inet:host:port,
				 * lmtp:host[:port] (RFC 2033 over TCP) */
	TRANSPORT_ERROR,	/* error:text */
	TRANSPORT_DISCARD,	/* discard: */
	TRANSPORT_UNSUPPORTED,	/* lmtp:unix:, pipe:, anything else:
				 * 451 4.3.5 */
};

enum route_transport route_transport_kind(const char *transport);

struct route_dest {
	enum route_kind kind;
	char *address;		/* the final address (Delivered-To / RCPT) */
	char *maildir;		/* ROUTE_MAILDIR: full path */
	char *home;		/* ROUTE_MAILDIR: the user's home, %h of the
				 * Sieve paths: the home column, or the
				 * maildir's parent when that is empty, "/"
				 * or mail_root itself (shared by all) */
	struct quota_limit quota;	/* ROUTE_MAILDIR (none set = none) */
	char *transport;	/* ROUTE_REMOTE: "" (MX), "smtp:[h]:p" or
				 * "lmtp:[h]:p" (a user's backend);
				 * ROUTE_DISCARD: the discard: value */
};

struct route_result {
	enum route_status status;
	char *text;		/* detail for the reply/log (may be NULL) */
	struct route_dest *dests;
	size_t ndests;
	bool logged;		/* the failure is logged already (with the
				 * address): the caller need not say it */
};

struct route_config {
	const char *mail_root;
	const char *delimiter;	/* recipient_delimiter ("" = none) */
	bool catchall_first;	/* catchall_order = postfix */
	const char *local_domain;	/* bare alias targets' domain
					 * (NULL or "": the alias's own) */
	/* role = frontend: a user's mail goes to the user's backend by
	 * LMTP on this port (the host column, else backend_default; 451
	 * 4.3.0 with neither), never to a Maildir here. 0: not a
	 * frontend. */
	unsigned lmtp_port;
	const char *backend_default;
	/* A maildir here that `petrel user move` moved away (see
	 * route_moved_read): mail for it goes by
	 * LMTP on this port to the host named there (0: port 24). */
	unsigned moved_lmtp_port;
};

/* `petrel user move` replaces the maildir it moves away by a regular
 * file of the same name (the maildir path without its trailing '/'):
 * "moving HOST" while the copy is finished, "moved HOST" once the
 * directory names HOST. Being a file, nothing can create a maildir
 * there again (a delivery's mkdir fails). route_moved_read: 1 = moved
 * (*host_r malloc'd), 0 = moving (*host_r NULL), -1 = no marker.
 * route_moved_marker: only whether there is one (one stat()). */
int route_moved_read(const char *maildir, char **host_r);
bool route_moved_marker(const char *maildir);

/* Resolve one RCPT address. may_relay: the client is authenticated (or
 * otherwise trusted) and foreign domains are accepted as remote. */
void route_resolve(struct dir *dir, const struct route_config *rc,
    const char *address, bool may_relay, struct route_result *res);
void route_result_clear(struct route_result *res);
const char *route_status_name(enum route_status status);

/* Resolve a maildir column value under mail_root, refusing any path
 * that climbs out ("..") or is empty, full paths outside mail_root, and
 * forwards (route_maildir_is_forward). NULL if refused. */
char *route_maildir_path(const char *mail_root, const char *maildir);

/* %h of the Sieve paths (SPEC 6.1): the home column, or the parent of
 * maildir (a full path) when the home is empty, "/" or mail_root itself
 * (a home every user shares is no home). malloc'd. */
char *route_user_home(const char *mail_root, const char *home,
    const char *maildir);

/* Is a maildir column value a forward: one address or a comma-separated
 * list of them, and no '/' (the Exim howto keeps redirects of users in
 * the maildir column)? Mail for such a user goes to the addresses; the
 * user has no mailbox. */
bool route_maildir_is_forward(const char *maildir);

#endif
