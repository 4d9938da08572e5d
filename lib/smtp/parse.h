/*
 * parse.h: the SMTP command and message-data parsers (RFC 5321, RFC 1870
 * SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3030 BDAT), apart from
 * the session so that they can be tested and fuzzed alone.
 */
#ifndef PETREL_SMTP_PARSE_H
#define PETREL_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	SMTP_UNKNOWN, SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA,
	SMTP_BDAT, SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_HELP,
	SMTP_AUTH, SMTP_STARTTLS, SMTP_HTTP,
	SMTP_LHLO,	/* LMTP (RFC 2033) */
};

/* The command verb of a NUL-terminated line; *arg is its argument with
 * leading spaces skipped. SMTP_HTTP for "GET " / "POST " (a web client on
 * the mail port). */
enum smtp_verb smtp_verb(const char *line, const char **arg);

/* "<path>" after "FROM:" / "TO:" (spaces allowed before '<'). A source
 * route "<@a,@b:u@d>" is dropped (RFC 5321 4.1.2). Returns the address
 * (malloc'd, possibly empty) and sets *rest to what follows '>'; NULL if
 * malformed. */
char *smtp_parse_path(const char *arg, const char **rest);

/* Like smtp_parse_path, but also a bare address without angle brackets
 * ("MAIL FROM: u@d", as Postfix takes with strict_rfc821_envelopes = no):
 * the address ends at the first space; an empty one, or one holding '<'
 * or '>', is malformed (NULL). */
char *smtp_parse_path_loose(const char *arg, const char **rest);

/* The ESMTP parameters of MAIL FROM. */
struct smtp_mail_params {
	uint64_t size;		/* SIZE=, 0 if absent */
	bool smtputf8;
	bool requiretls;	/* RFC 8689 REQUIRETLS */
};

/* Parse "KEY[=VALUE] ..." into *p against a message size limit; tls:
 * the session is under TLS (REQUIRETLS is offered only then). Returns
 * NULL, or the complete reply line (static) for the first error. */
const char *smtp_mail_params(const char *rest, uint64_t size_limit,
    bool tls, struct smtp_mail_params *p);

/* "BDAT size [LAST]": 0 and *size / *last, or -1 if malformed. */
int smtp_parse_bdat(const char *arg, uint64_t *size, bool *last);

/* Where message bytes go; returns nothing: a sink that fails remembers
 * it itself. */
typedef void (*smtp_sink_fn)(void *ctx, const char *p, size_t n);

/* DATA: dot-unstuffing and end-of-data detection. Only <CRLF>.<CRLF> ends
 * the data (a dot line after a bare LF or CR is content: no smuggling);
 * one leading dot is removed only after CRLF, where clients stuff it;
 * CRLF is stored as LF, every other byte as it came (queue/outbound.c
 * sends a bare CR or LF as a line end, dot-stuffed). */
struct smtp_dot {
	bool bol;		/* at the beginning of a line */
	bool prev_crlf;		/* the previous line ended in CRLF */
};

void smtp_dot_init(struct smtp_dot *d);

/* One complete line (ending in LF). Returns true if it is the final dot
 * line, which is not passed on. */
bool smtp_dot_line(struct smtp_dot *d, const char *line, size_t n,
    smtp_sink_fn sink, void *ctx);

/* A long piece of a line that has no LF yet (n > 0); must not end in the
 * CR of a CRLF (keep that byte for the next call). */
void smtp_dot_partial(struct smtp_dot *d, const char *p, size_t n,
    smtp_sink_fn sink, void *ctx);

/* BDAT chunk bytes: CRLF is stored as LF, also across chunk boundaries;
 * *pending_cr carries a CR that ended the previous chunk. */
void smtp_bdat_bytes(bool *pending_cr, const char *buf, size_t n,
    smtp_sink_fn sink, void *ctx);

/* At the end of the last chunk: a CR still pending is content. */
void smtp_bdat_end(bool *pending_cr, smtp_sink_fn sink, void *ctx);

#endif
