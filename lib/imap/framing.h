#ifndef PETREL_IMAP_FRAMING_H
#define PETREL_IMAP_FRAMING_H
/*
 * IMAP command framing (RFC 3501 2.2, 4.3, 7.5; RFC 7888 LITERAL+): the
 * bytes a client sends cut into whole commands (lines and literals, as
 * imap_cmd_parse() takes them), the continuation requests for
 * synchronising literals, and the refusals of commands that exceed a
 * bound. A pure state machine: no I/O, no clock, no session. The same
 * bytes give the same events however they are split into reads.
 *
 * The caller owns the input buffer and hands over what it has;
 * imap_framer_step() consumes bytes up to the next event (or all of
 * them) and says how many it took. The caller drops those and calls
 * again. Bytes of a partial line are copied into the framer, so the
 * caller keeps nothing but what is not consumed yet.
 *
 * Bounds (struct imap_framer_limits; the session uses lib/base/limits.h):
 *  - a line (without its LF) of line_max + 2 bytes or more is refused
 *    as soon as that many are in ("BAD Line too long"), and dropped up
 *    to its LF; only its last 32 bytes are kept, so a LITERAL+ literal
 *    announced at its end is dropped too;
 *  - a literal over literal_max ("BAD Literal too large"), or over
 *    append_max in an APPEND by a logged-in client ("NO [TOOBIG]"), is
 *    refused before its data is read: a synchronising one gets no
 *    continuation, a LITERAL+ one is read and dropped, unless it is over
 *    cmd_max ("* BYE Literal too large" and close: RFC 7888 4);
 *  - a command whose lines and literals exceed cmd_max (append_max +
 *    cmd_max for an APPEND) is refused ("BAD Command too long").
 *  - before login (IMAP_FRAMER_NOAUTH), preauth_max takes the place of
 *    each of line_max, literal_max and cmd_max where it is smaller, and
 *    the command is refused as soon as its size would pass it: a line
 *    that would ("BAD Command too long", dropped up to its LF), a literal
 *    that would (refused before its data is read, as above; a LITERAL+
 *    one over preauth_max closes). A client that has not logged in never
 *    holds more than about preauth_max bytes of the framer.
 *  - with spool_min set, each literal of a logged-in client's APPEND
 *    (MULTIAPPEND: several) that is larger than spool_min is not kept:
 *    IMAP_FRAME_SPOOL announces it, IMAP_FRAME_DATA events hand its
 *    bytes to the caller (to write to a file) as they come, and the
 *    command keeps only its "{n}" and CRLF (imap_cmd_parse_spools() at
 *    spools). At most IMAP_FRAMER_SPOOLS literals of one command are
 *    spooled; one more over spool_min is refused ("NO [LIMIT]"). The
 *    rest of such an APPEND, in memory, is bounded by spool_min +
 *    cmd_max: a logged-in client holds about that much of the framer,
 *    not message_size_limit.
 * After a refusal the rest of the command (its later lines and LITERAL+
 * literals) is dropped unread as commands, so literal data never runs as
 * a command.
 *
 * Consumed input is wiped in place (it may carry a password, in LOGIN or
 * a SASL response), except the data of APPEND literals (large, and
 * wiping every message would cost).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

/* What the last bytes of a dropped overlong line are checked for: a
 * literal announcement at its end ("{n+}"). */
#define IMAP_FRAMER_TAIL 32
/* The most literals of one APPEND that are spooled (each is a file the
 * caller keeps open until the command ends). */
#define IMAP_FRAMER_SPOOLS 16

struct imap_framer_limits {
	size_t line_max;	/* IMAP_LINE_MAX */
	uint64_t literal_max;	/* IMAP_LITERAL_MAX */
	uint64_t cmd_max;	/* IMAP_CMD_MAX */
	uint64_t append_max;	/* message_size_limit */
	/* Before login (IMAP_FRAMER_NOAUTH): the whole command, lines and
	 * literals, is at most this (IMAP_PREAUTH_CMD_MAX), and so is each
	 * line and literal; 0: no such bound. */
	uint64_t preauth_max;
	/* APPEND literals larger than this are handed out as they come
	 * (IMAP_APPEND_MEM_MAX); 0: every literal is kept. */
	uint64_t spool_min;
};

/* Flags for imap_framer_step(), as the session stands. */
/* The next line is a plain line, not a command: IDLE's "DONE", a SASL
 * response to a "+" challenge. */
#define IMAP_FRAMER_PLAIN	0x1
/* Logged in: an APPEND (or REPLACE, UID REPLACE: "APPEND" below means
 * any of them) may carry literals up to append_max. */
#define IMAP_FRAMER_APPEND	0x2
/* Not logged in: preauth_max bounds the command as it arrives. */
#define IMAP_FRAMER_NOAUTH	0x4

enum imap_frame_type {
	IMAP_FRAME_NONE,	/* all input consumed, no event */
	IMAP_FRAME_COMMAND,	/* data/len: a whole command */
	IMAP_FRAME_LINE,	/* data/len: a plain line (IMAP_FRAMER_PLAIN) */
	IMAP_FRAME_CONTINUE,	/* send "+ Ready for literal data" */
	IMAP_FRAME_REFUSE,	/* answer "tag status text" now; then, if
				   bye, "* BYE bye" and close */
	IMAP_FRAME_LONG_LINE,	/* IMAP_FRAMER_PLAIN: the line was too long
				   (dropped); the exchange it answered ends */
	IMAP_FRAME_CLOSE,	/* "* BYE bye" and close */
	IMAP_FRAME_SPOOL,	/* an APPEND literal of size bytes will be
				   handed out (IMAP_FRAME_DATA); if cont,
				   send "+ Ready for literal data" */
	IMAP_FRAME_DATA,	/* data/len: the next bytes of that literal,
				   pointing into the caller's input (use
				   them before dropping it); last: its end */
};

struct imap_frame {
	enum imap_frame_type type;
	/* COMMAND, LINE: CRLF removed, NUL-terminated (the text may hold
	 * NUL: use len); valid until imap_framer_release() */
	const char *data;
	size_t len;
	/* REFUSE: the command's tag ("*" when it has no plausible one),
	 * "BAD" or "NO", the text */
	const char *tag, *status, *text;
	const char *bye;	/* REFUSE, CLOSE: the BYE text, else NULL */
	uint64_t size;		/* SPOOL: the literal's size */
	bool cont;		/* SPOOL: synchronising: send "+" */
	bool last;		/* DATA: the literal is complete */
	/* COMMAND: where the "{" of its first spooled literal is in data
	 * (imap_cmd_parse_spooled); SIZE_MAX when none. spools: those of
	 * all nspools of them, in order (imap_cmd_parse_spools). */
	size_t spool_at;
	const size_t *spools;
	size_t nspools;
	/* Whole lines (not literal data, not the end of a dropped line)
	 * consumed by this step: the line deadline starts again. */
	unsigned lines;
};

struct imap_framer {
	struct imap_framer_limits lim;
	str_t buf;		/* the command so far, then the current line */
	size_t line_start;	/* where the current line starts in buf */
	uint64_t lit_left;	/* literal bytes still to come */
	bool lit_skip;		/* ... to drop (refused command) */
	bool skip_line;		/* dropping an overlong line up to its LF */
	bool refused;		/* dropping the rest of a refused command */
	bool append;		/* buf holds an APPEND's literal (not wiped) */
	bool spooling;		/* the literal being read is handed out */
	size_t spool_at;	/* the "{" of the command's first spooled
				   literal in buf, SIZE_MAX when none */
	size_t spools[IMAP_FRAMER_SPOOLS];	/* the "{" of each */
	size_t nspools;
	bool delivered;		/* buf holds a COMMAND or LINE given out */
	bool closed;		/* CLOSE given: input is dropped */
	bool noauth;		/* this step: IMAP_FRAMER_NOAUTH */
	uint64_t unwiped;	/* APPEND literal bytes taken and not wiped,
				   in all (for tests) */
	char tail[IMAP_FRAMER_TAIL];	/* skip_line: its last bytes */
	size_t tail_len;
	char tag[65];		/* REFUSE */
};

void imap_framer_init(struct imap_framer *f,
    const struct imap_framer_limits *lim);
/* Frees the buffer, wiped unless it holds an APPEND. */
void imap_framer_deinit(struct imap_framer *f);

/* Consume in[0..len) up to the next event (*used_r bytes, all of them
 * when the result is IMAP_FRAME_NONE), wiping what it consumed (see
 * above; not the bytes of IMAP_FRAME_DATA). flags: IMAP_FRAMER_*. ev is
 * filled for every result. */
enum imap_frame_type imap_framer_step(struct imap_framer *f, char *in,
    size_t len, unsigned flags, size_t *used_r, struct imap_frame *ev);

/* The caller is done with a COMMAND's or LINE's text: drop it (wiped
 * first when wipe; a large buffer is freed). The next step does this
 * with wipe when the caller did not. */
void imap_framer_release(struct imap_framer *f, bool wipe);
/* Free the buffer when it holds nothing (a session that starts waiting
 * for a long time, as in IDLE, keeps no capacity). */
void imap_framer_shrink(struct imap_framer *f);

/* Whether the client owes the rest of a line (the command-line deadline
 * runs): part of one is in, or pending bytes the caller has not handed
 * over yet start one; never while literal data is awaited. */
bool imap_framer_partial(const struct imap_framer *f, size_t pending);

#endif
