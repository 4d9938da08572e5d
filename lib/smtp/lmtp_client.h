#ifndef PETREL_LMTP_CLIENT_H
#define PETREL_LMTP_CLIENT_H
/*
 * A small blocking client for a line protocol of SMTP's shape (LMTP,
 * RFC 2033, and the XMOVE commands on the same listener): connect within
 * a bound, command lines out, reply lines in, STARTTLS over the same
 * socket. For threads that may block (a delivery job, a command-line
 * tool), never for an event loop. Every wait is bounded by the socket's
 * SO_RCVTIMEO/SO_SNDTIMEO, set at connect.
 *
 * Trust: the server's lines are bounded (LMTPC_LINE_MAX), checked for
 * a reply code where a reply is read, and only ever logged or quoted.
 * Nothing read before TLS is read after it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/base/str.h"

struct tls_client;
struct tls_fd;

#define LMTPC_LINE_MAX 8192

struct lmtp_client {
	int fd;			/* -1: not connected */
	struct tls_fd *tls;	/* after STARTTLS */
	size_t rlen;
	char rbuf[16384];
	char line[LMTPC_LINE_MAX];	/* the last line, CRLF removed */
	char why[320];		/* after a failure: why (one line) */
	char relay[300];	/* host[address]:port, for the logs */
};

void lmtpc_init(struct lmtp_client *c);
/* Connect to host:port (a name or an address, brackets allowed), each
 * address within connect_ms; the reads and writes after it wait at most
 * io_ms each. 0, or -1 with c->why. */
int lmtpc_connect(struct lmtp_client *c, const char *host, unsigned port,
    unsigned connect_ms, unsigned io_ms);
/* Send len bytes. 0, or -1 with c->why (the connection closed). */
int lmtpc_send(struct lmtp_client *c, const void *buf, size_t len);
/* Send a command line (CRLF added). */
int lmtpc_cmd(struct lmtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line into c->line. 0, or -1 with c->why (the connection closed). */
int lmtpc_line(struct lmtp_client *c);
/* A whole reply: its code (the first line's; every line must have it),
 * with c->line its last line and, when text is not NULL, every line's
 * text after the code joined by a space in *text (reset first). When
 * keywords (NULL-terminated) is not NULL, has[i] says whether a line after
 * the first is keywords[i], alone or followed by a space (an EHLO/LHLO
 * keyword). -1 with c->why when the connection failed or the reply is
 * malformed (the connection is then closed: what follows cannot be
 * trusted). */
int lmtpc_reply(struct lmtp_client *c, str_t *text,
    const char *const *keywords, bool *has);
/* After the server's 220 to STARTTLS: the handshake, host checked as
 * tls_fd_connect does. Anything the server sent in plaintext after its
 * 220 is dropped. 0, or -1 with c->why (closed). */
int lmtpc_starttls(struct lmtp_client *c, struct tls_client *tc,
    const char *host);
void lmtpc_close(struct lmtp_client *c);

#endif
