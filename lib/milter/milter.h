#ifndef PETREL_MILTER_H
#define PETREL_MILTER_H
/*
 * A client of the Sendmail milter protocol (version 6), as Postfix's
 * smtpd_milters speaks it: the MTA sends each stage of an SMTP
 * transaction (connect, HELO, MAIL, RCPT, header fields, body chunks,
 * end of message) with its macros to a filter (rspamd's proxy, OpenDKIM,
 * ClamAV...), which answers continue, accept, reject, tempfail, discard,
 * a reply code of its own, or quarantine, and at the end of the message
 * may add, change or insert header fields, replace the body, change the
 * sender or remove recipients.
 *
 * Debian's libmilter is the filter's side of the protocol; the MTA's side
 * is written here. Three parts:
 * - the wire form (no I/O, fuzzed): milter_frame() cuts one packet out of
 *   received bytes, milter_decode() checks one reply packet against the
 *   shape of its command, milter_reply_line() makes a filter's reply text
 *   a safe one-line SMTP reply;
 * - milter_run(): one blocking conversation with one filter about one
 *   message (from a job thread: connect, each write and each reply wait at
 *   most milter_timeout seconds, the whole conversation ten times that);
 * - milter_apply(): the header and body changes a filter asked for,
 *   written into a new copy of the message.
 *
 * Trust: the filter is a separate program; every length it sends is
 * checked against what arrived and against MILTER_PACKET_MAX, header
 * names and values against MILTER_NAME_MAX / MILTER_VALUE_MAX, a new
 * body against the message size limit. A filter that breaks the protocol
 * or goes silent is a failure, handled by milter_default_action.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

struct spool;

/* The largest packet read from a filter (a body replacement chunk is
 * usually 64 KiB; libmilter never sends more than that). */
#define MILTER_PACKET_MAX (1024 * 1024)
/* Body chunks sent to a filter (libmilter's MILTER_CHUNK_SIZE). */
#define MILTER_CHUNK 65535
/* A header field name / value a filter may set. */
#define MILTER_NAME_MAX 256
#define MILTER_VALUE_MAX (64 * 1024)
/* Header changes one filter may make for one message. */
#define MILTER_EDITS_MAX 1000
/* Filters in the milters list. */
#define MILTER_MAX 16
/* The header section read for the HEADER commands and the edits; past
 * it the rest is body. */
#define MILTER_HEADER_MAX (1024 * 1024)

/* Commands (MTA -> filter). */
#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'

/* Replies (filter -> MTA). */
#define SMFIR_ADDRCPT '+'
#define SMFIR_DELRCPT '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN '4'
#define SMFIR_ACCEPT 'a'
#define SMFIR_REPLBODY 'b'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_CHGFROM 'e'
#define SMFIR_CONN_FAIL 'f'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_PROGRESS 'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

/* Actions a filter may take (OPTNEG). */
#define SMFIF_ADDHDRS 0x01
#define SMFIF_CHGBODY 0x02
#define SMFIF_ADDRCPT 0x04
#define SMFIF_DELRCPT 0x08
#define SMFIF_CHGHDRS 0x10
#define SMFIF_QUARANTINE 0x20
#define SMFIF_CHGFROM 0x40
#define SMFIF_ADDRCPT_PAR 0x80
#define SMFIF_SETSYMLIST 0x100

/* Protocol steps (OPTNEG): a stage the filter does not want, or one it
 * will not answer. */
#define SMFIP_NOCONNECT 0x01
#define SMFIP_NOHELO 0x02
#define SMFIP_NOMAIL 0x04
#define SMFIP_NORCPT 0x08
#define SMFIP_NOBODY 0x10
#define SMFIP_NOHDRS 0x20
#define SMFIP_NOEOH 0x40
#define SMFIP_NR_HDR 0x80
#define SMFIP_NOUNKNOWN 0x100
#define SMFIP_NODATA 0x200
#define SMFIP_SKIP 0x400
#define SMFIP_RCPT_REJ 0x800
#define SMFIP_NR_CONN 0x1000
#define SMFIP_NR_HELO 0x2000
#define SMFIP_NR_MAIL 0x4000
#define SMFIP_NR_RCPT 0x8000
#define SMFIP_NR_DATA 0x10000
#define SMFIP_NR_UNKN 0x20000
#define SMFIP_NR_EOH 0x40000
#define SMFIP_NR_BODY 0x80000
#define SMFIP_HDR_LEADSPC 0x100000

/* What petrel offers: every action but adding recipients; every step
 * flag but RCPT_REJ and HDR_LEADSPC (values are sent without the space
 * after the colon, and a filter's values get one). */
#define MILTER_ACTIONS_OFFERED (SMFIF_ADDHDRS | SMFIF_CHGBODY | \
	SMFIF_DELRCPT | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM | \
	SMFIF_SETSYMLIST)
#define MILTER_PROTOCOL_OFFERED 0xff7ffu
#define MILTER_VERSION 6

/* One packet: its command and its data (pointing into the input). */
struct milter_packet {
	char cmd;
	const unsigned char *data;
	size_t len;
};

/* Cut one packet from buf (a 4-byte big-endian length counting the
 * command byte, the command, the data). 1 with *p and *used (bytes
 * taken); 0 when more bytes are needed; -1 with *error_r when the length
 * is 0 or over MILTER_PACKET_MAX. */
int milter_frame(const unsigned char *buf, size_t len,
    struct milter_packet *p, size_t *used, const char **error_r);

/* A reply packet, decoded. Strings point into a copy owned by the
 * caller's buffer (NUL-terminated in place by milter_decode). */
struct milter_reply {
	char cmd;		/* SMFIR_* or SMFIC_OPTNEG */
	uint32_t index;		/* INSHEADER, CHGHEADER */
	const char *name;	/* header name; ADDRCPT/DELRCPT/CHGFROM: the
				 * address; QUARANTINE: the reason;
				 * REPLYCODE: the reply text */
	const char *value;	/* header value (CHGHEADER: "" deletes) */
	const unsigned char *body;	/* REPLBODY */
	size_t body_len;
	uint32_t version, actions, protocol;	/* OPTNEG */
};

/* Decode one packet from a filter. data must be writable (strings are
 * checked to end with their NUL inside the packet). 0, or -1 with
 * *error_r for an unknown command or a packet of the wrong shape. */
int milter_decode(char cmd, unsigned char *data, size_t len,
    struct milter_reply *r, const char **error_r);

/* A filter's reply text ("550 5.7.1 go away", perhaps multi-line) as one
 * SMTP reply line: its first line, printable ASCII, at most 400 octets,
 * with an enhanced status code of its class added when it has none.
 * NULL when the code is not 4xx/5xx (or not 4xx for want_temp). */
char *milter_reply_line(const char *text, bool want_temp);

/* Is this a header field name a filter may set (1..MILTER_NAME_MAX
 * printable ASCII octets, no colon)? */
bool milter_header_name_ok(const char *name);

/* ---- one conversation ---- */

struct milter_spec {
	char *text;		/* as configured: inet:host:port, unix:path */
	char *host, *port;	/* inet: / inet6: */
	char *path;		/* unix: */
};

/* Parse a `milters` value: comma-separated specs (inet:HOST:PORT,
 * inet6:[HOST]:PORT, unix:PATH). 0 with *specs, *n; -1 with *error_r. */
int milter_specs_parse(const char *value, struct milter_spec **specs,
    size_t *n, const char **error_r);
void milter_specs_free(struct milter_spec *specs, size_t n);

/* The message and its transaction, as the filter sees them. */
struct milter_msg {
	const char *hostname;	/* macro j */
	const char *daemon;	/* {daemon_name}: the listener's name */
	const char *client_ip;	/* {client_addr} */
	unsigned client_port;
	int client_family;	/* AF_INET, AF_INET6 */
	const char *helo;	/* NULL: none */
	const char *qid;	/* macro i */
	const char *auth_user;	/* {auth_authen}, NULL: none */
	bool tls;
	const char *sender;
	const char *const *rcpts;
	size_t nrcpts;
	struct spool *body;	/* the message, LF line ends */
};

enum milter_verdict {
	MILTER_ACCEPT,		/* deliver (with the changes) */
	MILTER_REJECT,
	MILTER_TEMPFAIL,
	MILTER_DISCARD,		/* 250, nothing stored */
	MILTER_FAILED,		/* no verdict: unreachable, silent, broken */
};

enum milter_edit_kind { MILTER_ADD, MILTER_INSERT, MILTER_CHANGE };

struct milter_edit {
	enum milter_edit_kind kind;
	uint32_t index;	/* INSERT: position; CHANGE: nth field of the name */
	char *name;
	char *value;	/* CHANGE: "" deletes */
};

struct milter_result {
	enum milter_verdict verdict;
	char *reply;		/* REJECT/TEMPFAIL: the filter's own line, or
				 * NULL for the default */
	char *quarantine;	/* the reason, NULL: none */
	char *error;		/* MILTER_FAILED: why */
	struct milter_edit *edits;
	size_t nedits;
	bool body_replaced;
	str_t body;		/* the new body (LF line ends) */
	char *new_sender;	/* CHGFROM */
	char **del_rcpts;	/* DELRCPT */
	size_t ndel_rcpts;
};

/* A conversation in stages, for a transaction: milter_begin at MAIL
 * (connect, negotiate, CONNECT, HELO, MAIL), milter_rcpt for each RCPT,
 * milter_end after the message (DATA, the header, the body, the end of
 * the message; it closes). Each call blocks (a job thread) for at most
 * ten timeouts and fills *r (MILTER_FAILED with r->error when the filter
 * gave no verdict).
 * milter_begin: 1 with *conn_r when the conversation goes on; 0 when it
 * ended with the verdict in *r (ACCEPT: nothing more to ask this filter
 * about the message).
 * milter_rcpt: 1 when the recipient is fine; 0 with the verdict in *r:
 * REJECT or TEMPFAIL for this recipient (the conversation goes on), or
 * ACCEPT, DISCARD, FAILED for the message (close the conversation).
 * milter_close: ends a conversation without waiting (from any thread). */
struct milter_conn;
int milter_begin(const struct milter_spec *spec, const struct milter_msg *msg,
    unsigned timeout_s, uint64_t body_max, struct milter_conn **conn_r,
    struct milter_result *r);
int milter_rcpt(struct milter_conn *conn, const struct milter_msg *msg,
    const char *rcpt, struct milter_result *r);
void milter_end(struct milter_conn *conn, const struct milter_msg *msg,
    struct milter_result *r);
void milter_close(struct milter_conn *conn);

/* Talk to one filter about msg in one go (the stages above). Blocks:
 * from a job thread only.
 * body_max bounds a replaced body. Always fills *r (verdict
 * MILTER_FAILED with r->error when the filter gave none). */
void milter_run(const struct milter_spec *spec, const struct milter_msg *msg,
    unsigned timeout_s, uint64_t body_max, struct milter_result *r);
void milter_result_free(struct milter_result *r);

/* Write msg's text with r's header edits and body into out (LF line
 * ends); 0, or -1 with *error_r (a spool write failed). */
int milter_apply(struct spool *msg, const struct milter_result *r,
    struct spool *out, const char **error_r);

#endif
