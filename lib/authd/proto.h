#ifndef PETREL_AUTHD_PROTO_H
#define PETREL_AUTHD_PROTO_H
/*
 * The typed channel between the processes that read the network (workers,
 * queue manager) and the auth/directory process, which alone opens the SQL
 * directory and sees password hashes (SPEC section 5 and 6.1, privilege
 * separation; OpenSMTPD mproc.c marshalling, Postfix proxymap).
 *
 * One frame:  u32 length (big-endian, of what follows) | u8 kind | fields
 * Fields:     u8, u64 (big-endian), str = u32 length | bytes, where the
 *             length 0xffffffff is NULL. Strings hold no NUL byte.
 * Every string has a bound (below); the fields of a kind come in a fixed
 * order and fill the frame exactly. Anything else is malformed, and the
 * receiver closes the connection.
 *
 * A LOGIN reply carries what a worker needs to serve the user and never
 * the crypt hash or a cleartext password. Buffers holding a LOGIN or PROXY
 * request contain a password:
 * authd_buf_wipe() them, and authd_msg_clear() wipes the decoded one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"
#include "lib/maildir/quota.h"

/* A frame larger than this is refused (a route reply with every alias
 * target at its longest fits: AUTHD_DESTS_MAX * ~6 KiB). */
#define AUTHD_FRAME_MAX (8u * 1024 * 1024)
#define AUTHD_DESTS_MAX 1000		/* lib/base/limits.h ALIAS_TARGETS_MAX */
#define AUTHD_ADDRESS_MAX 1024		/* an RCPT/login address, with slack */
#define AUTHD_PASSWORD_MAX 1024		/* PASSWORD_MAX */
#define AUTHD_PATH_MAX 4096		/* maildir, home (PATH_MAX) */
#define AUTHD_TEXT_MAX 1024		/* a reply/log detail, a transport */
#define AUTHD_IP_MAX 64			/* an IPv6 literal with scope */
#define AUTHD_PROTO_MAX 16		/* "imap", "pop3", "submission" */

enum authd_kind {
	AUTHD_ROUTE_REQ = 1,	/* address, may_relay */
	AUTHD_ROUTE_REP,	/* a route_result */
	AUTHD_LOGIN_REQ,	/* login, password, ip, protocol, challenge */
	AUTHD_LOGIN_REP,	/* result + user fields, no hash */
	AUTHD_QUOTA_REQ,	/* address */
	AUTHD_QUOTA_REP,	/* status, quota bytes, quota count */
	AUTHD_POSTMASTER_REQ,	/* (none): the first hosted domain */
	AUTHD_POSTMASTER_REP,	/* status, domain */
	AUTHD_CAPS_REQ,		/* (none): what logins the directory allows */
	AUTHD_CAPS_REP,		/* status: AUTHD_OK = query_login returns
				 * cleartext (CRAM-MD5 possible),
				 * AUTHD_NOTFOUND = it does not,
				 * AUTHD_TEMPFAIL = cannot tell yet */
	AUTHD_PROXY_REQ,	/* as LOGIN_REQ: a frontend's session for the
				 * user login, password = proxy_secret (no
				 * challenge); answered by a LOGIN_REP */
};

/* Results of LOGIN (lib/auth/login.h enum auth_result, plus THROTTLED:
 * the account or address is locked out, answered like a failure). */
enum authd_login_result {
	AUTHD_LOGIN_OK, AUTHD_LOGIN_FAIL, AUTHD_LOGIN_TEMPFAIL,
	AUTHD_LOGIN_THROTTLED,
};

/* Status of QUOTA and POSTMASTER: the directory's answer. */
enum authd_status {
	AUTHD_OK, AUTHD_NOTFOUND, AUTHD_FAIL, AUTHD_TEMPFAIL,
};

struct authd_dest {
	uint8_t kind;		/* enum route_kind */
	char *address, *maildir, *transport;
	struct quota_limit quota;
	char *home;		/* ROUTE_MAILDIR: %h (lib/route) */
};

struct authd_msg {
	enum authd_kind kind;
	/* requests */
	char *address;		/* ROUTE_REQ, QUOTA_REQ */
	bool may_relay;		/* ROUTE_REQ */
	char *login, *password, *ip, *protocol;	/* LOGIN_REQ */
	/* LOGIN_REQ: NULL for a password; for CRAM-MD5 (RFC 2195) the
	 * challenge the worker sent, password then holds the response's
	 * hex digest */
	char *challenge;
	/* replies */
	uint8_t status;		/* ROUTE_REP: enum route_status;
				 * LOGIN_REP: enum authd_login_result;
				 * QUOTA_REP, POSTMASTER_REP: enum authd_status */
	char *text;		/* ROUTE_REP detail (may be NULL) */
	struct authd_dest *dests;	/* ROUTE_REP */
	size_t ndests;
	/* LOGIN_REP (address is the user's), QUOTA_REP (quota) */
	char *maildir, *home;
	char *host;		/* LOGIN_REP: the user's backend (may be
				 * NULL: none; lib/dir's host column) */
	int64_t uid, gid;
	struct quota_limit quota;
	char *domain;		/* POSTMASTER_REP */
};

/* Append the frame for m to out. Returns 0, or -1 when a field is over
 * its bound or holds a NUL (nothing appended then). For a LOGIN request
 * the whole frame is reserved first, so out is never reallocated while
 * it holds the password (the caller wipes it with authd_buf_wipe). */
int authd_encode(str_t *out, const struct authd_msg *m);

/* Decode one frame from buf. Returns 1 (a frame; *used_r bytes of buf;
 * m filled, free it with authd_msg_clear), 0 (need more bytes), -1
 * (malformed: close the connection). */
int authd_decode(const void *buf, size_t len, struct authd_msg *m,
    size_t *used_r);

/* Wipe the password (if any) and free every field; m is zeroed. */
void authd_msg_clear(struct authd_msg *m);
/* Zero all of s's storage (not only len bytes) and free it. */
void authd_buf_wipe(str_t *s);
const char *authd_kind_name(enum authd_kind kind);

#endif
