/*
 * framing.c: IMAP command framing (see framing.h) -- lines, literals
 * (RFC 3501 4.3: "{n}" waits for "+", RFC 7888 "{n+}" does not), and the
 * bounds on each.
 *
 * Trust: every byte comes from a client. Nothing is buffered beyond the
 * limits: a partial line is at most line_max + 1 bytes, a command at most
 * cmd_max plus one literal (for an APPEND spool_min + cmd_max plus one
 * literal, or append_max + cmd_max plus one literal without spool_min;
 * its literals over spool_min, at most IMAP_FRAMER_SPOOLS, are not kept);
 * dropped input costs IMAP_FRAMER_TAIL bytes. A refused
 * command's later lines and LITERAL+ data are never taken as commands
 * (the client cannot smuggle a command inside a literal we refused).
 * Input and buffers that may hold a password are wiped before they are
 * freed or reused.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/imap/framing.h"
#include "lib/imap/parse.h"

/* A buffer larger than this is freed between commands (idle sessions
 * stay small). */
#define BUF_KEEP 4096

/* The bounds of this step: before login, preauth_max caps each. */
static uint64_t
cap(const struct imap_framer *f, uint64_t v)
{
	if (f->noauth && f->lim.preauth_max > 0 && f->lim.preauth_max < v)
		return f->lim.preauth_max;
	return v;
}

static uint64_t
cmd_max(const struct imap_framer *f)
{
	return cap(f, f->lim.cmd_max);
}

void
imap_framer_init(struct imap_framer *f, const struct imap_framer_limits *lim)
{
	memset(f, 0, sizeof(*f));
	f->lim = *lim;
	f->spool_at = SIZE_MAX;
}

/* Drop the command being assembled (wiped when wipe). */
static void
buf_reset(struct imap_framer *f, bool wipe)
{
	if (f->buf.data != NULL && wipe)
		explicit_bzero(f->buf.data, f->buf.len);
	if (f->buf.cap > BUF_KEEP)
		str_free(&f->buf);
	else
		str_truncate(&f->buf, 0);
	f->line_start = 0;
	f->append = false;
	f->delivered = false;
	f->spool_at = SIZE_MAX;
	f->nspools = 0;
}

void
imap_framer_deinit(struct imap_framer *f)
{
	buf_reset(f, !f->append);
	str_free(&f->buf);
	explicit_bzero(f->tail, sizeof(f->tail));
}

void
imap_framer_release(struct imap_framer *f, bool wipe)
{
	buf_reset(f, wipe);
}

void
imap_framer_shrink(struct imap_framer *f)
{
	if (f->buf.len == 0)
		str_free(&f->buf);
}

bool
imap_framer_partial(const struct imap_framer *f, size_t pending)
{
	if (f->closed || f->lit_left > 0)
		return false;
	return pending > 0 || f->skip_line ||
	    (!f->delivered && f->buf.len > f->line_start);
}

/* Append to the command; growing the buffer wipes the old copy (it may
 * hold a password) unless it holds an APPEND's message. */
static void
buf_add(struct imap_framer *f, const char *p, size_t n)
{
	str_t *b = &f->buf;

	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap < 256 ? 256 : b->cap;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = xmalloc(cap);
		if (b->len > 0)
			memcpy(d, b->data, b->len);
		if (b->data != NULL) {
			if (!f->append)
				explicit_bzero(b->data, b->len);
			free(b->data);
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* Keep the last IMAP_FRAMER_TAIL bytes of a line being dropped. */
static void
tail_push(struct imap_framer *f, const char *p, size_t n)
{
	if (n >= IMAP_FRAMER_TAIL) {
		memcpy(f->tail, p + n - IMAP_FRAMER_TAIL, IMAP_FRAMER_TAIL);
		f->tail_len = IMAP_FRAMER_TAIL;
		return;
	}
	if (f->tail_len + n > IMAP_FRAMER_TAIL) {
		size_t drop = f->tail_len + n - IMAP_FRAMER_TAIL;

		memmove(f->tail, f->tail + drop, f->tail_len - drop);
		f->tail_len -= drop;
	}
	memcpy(f->tail + f->tail_len, p, n);
	f->tail_len += n;
}

/* A command whose literals are messages: APPEND, REPLACE or UID
 * REPLACE (RFC 8508), the second word of the command's first line (its
 * tag comes first; the data of a literal is never the command's name). */
static bool
is_append(const char *buf, size_t len)
{
	const char *p, *nl;
	size_t rest;

	if ((nl = memchr(buf, '\n', len)) != NULL)
		len = (size_t)(nl - buf);
	if (len == 0 || (p = memchr(buf, ' ', len)) == NULL)
		return false;
	p++;
	rest = len - (size_t)(p - buf);
	if (rest > 4 && strncasecmp(p, "UID ", 4) == 0) {
		p += 4;
		rest -= 4;
		return rest > 8 && strncasecmp(p, "REPLACE ", 8) == 0;
	}
	return (rest > 7 && strncasecmp(p, "APPEND ", 7) == 0) ||
	    (rest > 8 && strncasecmp(p, "REPLACE ", 8) == 0);
}

/* The tag at the start of the command, for answering a command that
 * will not be parsed; "*" when there is no plausible one. */
static void
set_tag(struct imap_framer *f)
{
	const char *b = f->buf.data;
	size_t len = f->buf.len, n = 0;

	while (n < len && n < 64 && b[n] != ' ' &&
	    (unsigned char)b[n] > 0x20 && (unsigned char)b[n] < 0x7f)
		n++;
	if (n == 0 || n >= 64 || n >= len)
		n = 0;
	memcpy(f->tag, n > 0 ? b : "*", n > 0 ? n : 1);
	f->tag[n > 0 ? n : 1] = '\0';
}

/*
 * The end of a line of a refused command (the line itself, or the tail
 * of an overlong one): a LITERAL+ literal it announces is dropped too,
 * and the command goes on; a line without one ends the command. A
 * synchronising literal is never sent: it gets no "+". Returns true when
 * the literal is too large even to drop (RFC 7888 4 allows closing).
 */
static bool
refused_end(struct imap_framer *f, bool lit, uint64_t size, bool nonsync,
    struct imap_frame *ev)
{
	if (lit && nonsync) {
		if (size > cmd_max(f)) {
			ev->bye = "Literal too large";
			f->closed = true;
			return true;
		}
		f->lit_left = size;
		f->lit_skip = true;
		return false;
	}
	f->refused = false;
	return false;
}

/* Refuse the command being assembled, whose current line is line. */
static void
refuse(struct imap_framer *f, struct imap_frame *ev, const char *status,
    const char *text, const char *line, size_t n)
{
	uint64_t size = 0;
	bool nonsync = false, lit;

	lit = imap_line_literal(line, n, &size, &nonsync);
	set_tag(f);
	ev->type = IMAP_FRAME_REFUSE;
	ev->tag = f->tag;
	ev->status = status;
	ev->text = text;
	buf_reset(f, !f->append);
	f->refused = true;
	refused_end(f, lit, size, nonsync, ev);
}

/* The current line reached line_max + 2 bytes without its LF (or, before
 * login, the command reached preauth_max + 2: text says which): drop it
 * up to its end. Returns true with an event to give. */
static bool
line_too_long(struct imap_framer *f, unsigned flags, const char *text,
    struct imap_frame *ev)
{
	bool answer = false;

	f->tail_len = 0;
	tail_push(f, f->buf.data + f->line_start, f->buf.len - f->line_start);
	if (flags & IMAP_FRAMER_PLAIN) {
		ev->type = IMAP_FRAME_LONG_LINE;
		answer = true;
	} else if (!f->refused) {
		set_tag(f);
		ev->type = IMAP_FRAME_REFUSE;
		ev->tag = f->tag;
		ev->status = "BAD";
		ev->text = text;
		answer = true;
	}
	buf_reset(f, !f->append);
	f->refused = true;
	f->skip_line = true;
	return answer;
}

static void
literal_begin(struct imap_framer *f, uint64_t size)
{
	f->lit_left = size;
	f->lit_skip = false;
	if (size == 0)
		f->line_start = f->buf.len;
}

/* A whole line (CRLF removed) at buf + line_start. Returns true with an
 * event to give. */
static bool
line_done(struct imap_framer *f, unsigned flags, struct imap_frame *ev)
{
	const char *line = f->buf.data + f->line_start;
	size_t n = f->buf.len - f->line_start;
	uint64_t size = 0, limit;
	bool nonsync = false, append;

	if (flags & IMAP_FRAMER_PLAIN) {
		ev->type = IMAP_FRAME_LINE;
		ev->data = line;
		ev->len = n;
		f->delivered = true;
		return true;
	}
	if (f->refused) {
		bool lit = imap_line_literal(line, n, &size, &nonsync);

		buf_reset(f, true);
		if (!refused_end(f, lit, size, nonsync, ev))
			return false;
		ev->type = IMAP_FRAME_CLOSE;
		return true;
	}
	append = (flags & IMAP_FRAMER_APPEND) &&
	    is_append(f->buf.data, f->line_start);
	/* an APPEND's message beyond spool_min is not in buf */
	if (!append)
		limit = cmd_max(f);
	else if (f->lim.spool_min > 0)
		limit = f->lim.spool_min + f->lim.cmd_max;
	else
		limit = f->lim.append_max + f->lim.cmd_max;
	if (f->buf.len > limit) {
		refuse(f, ev, "BAD", "Command too long", line, n);
		return true;
	}
	if (!imap_line_literal(line, n, &size, &nonsync)) {
		ev->type = IMAP_FRAME_COMMAND;
		ev->data = f->buf.data;
		ev->len = f->buf.len;
		ev->spool_at = f->spool_at;
		ev->spools = f->spools;
		ev->nspools = f->nspools;
		f->delivered = true;
		return true;
	}
	append = (flags & IMAP_FRAMER_APPEND) &&
	    is_append(f->buf.data, f->buf.len);
	limit = append ? f->lim.append_max : cap(f, f->lim.literal_max);
	if (append && f->lim.spool_min > 0 && size > f->lim.spool_min &&
	    size <= limit && f->nspools == IMAP_FRAMER_SPOOLS) {
		refuse(f, ev, "NO", "[LIMIT] Too many large messages in one "
		    "APPEND", line, n);
		return true;
	}
	if (size > limit) {
		if (append)
			refuse(f, ev, "NO", "[TOOBIG] Message too large", line,
			    n);
		else
			refuse(f, ev, "BAD", "Literal too large", line, n);
		return true;
	}
	/* before login, a literal that would take the command past its
	 * bound is refused before its data comes */
	if (f->noauth && f->lim.preauth_max > 0 &&
	    f->buf.len + 2 + size > cmd_max(f)) {
		refuse(f, ev, "BAD", "Command too long", line, n);
		return true;
	}
	if (append && f->lim.spool_min > 0 && size > f->lim.spool_min) {
		/* handed out as it comes; buf keeps "{n}" CRLF */
		f->spools[f->nspools] = (size_t)((const char *)memrchr(line,
		    '{', n) - f->buf.data);
		if (f->nspools++ == 0)
			f->spool_at = f->spools[0];
		buf_add(f, "\r\n", 2);
		f->append = true;
		f->spooling = true;
		literal_begin(f, size);
		ev->type = IMAP_FRAME_SPOOL;
		ev->size = size;
		ev->cont = !nonsync;
		return true;
	}
	buf_add(f, "\r\n", 2);
	if (append)
		f->append = true;
	literal_begin(f, size);
	if (nonsync)
		return false;
	ev->type = IMAP_FRAME_CONTINUE;
	return true;
}

/* The LF of a line being dropped (the tail holds its last bytes, LF
 * included). Returns true with an event to give. */
static bool
skipped_line_done(struct imap_framer *f, struct imap_frame *ev)
{
	size_t keep = f->tail_len - 1;
	uint64_t size = 0;
	bool nonsync = false, lit;

	f->skip_line = false;
	if (keep > 0 && f->tail[keep - 1] == '\r')
		keep--;
	lit = imap_line_literal(f->tail, keep, &size, &nonsync);
	explicit_bzero(f->tail, sizeof(f->tail));
	f->tail_len = 0;
	if (!f->refused || !refused_end(f, lit, size, nonsync, ev))
		return false;
	ev->type = IMAP_FRAME_CLOSE;
	return true;
}

enum imap_frame_type
imap_framer_step(struct imap_framer *f, char *in, size_t len, unsigned flags,
    size_t *used_r, struct imap_frame *ev)
{
	size_t used = 0;

	memset(ev, 0, sizeof(*ev));
	ev->spool_at = SIZE_MAX;
	f->noauth = (flags & IMAP_FRAMER_NOAUTH) != 0;
	if (f->delivered)
		buf_reset(f, true);
	if (f->closed) {
		explicit_bzero(in, len);
		*used_r = len;
		return IMAP_FRAME_NONE;
	}
	for (;;) {
		char *p = in + used, *lf;
		size_t avail = len - used, n, k, line, ck;
		const char *why = "Line too long";

		if (f->lit_left > 0) {
			if (avail == 0)
				break;
			n = avail < f->lit_left ? avail : (size_t)f->lit_left;
			if (f->spooling) {
				/* the caller takes these bytes; not wiped */
				ev->type = IMAP_FRAME_DATA;
				ev->data = p;
				ev->len = n;
				f->unwiped += n;
				used += n;
				f->lit_left -= n;
				if (f->lit_left == 0) {
					f->spooling = false;
					f->line_start = f->buf.len;
					ev->last = true;
				}
				break;
			}
			if (!f->lit_skip)
				buf_add(f, p, n);
			if (f->lit_skip || !f->append)
				explicit_bzero(p, n);
			else
				f->unwiped += n;
			used += n;
			f->lit_left -= n;
			if (f->lit_left == 0 && !f->lit_skip)
				f->line_start = f->buf.len;
			continue;
		}
		if (f->skip_line) {
			lf = memchr(p, '\n', avail);
			n = lf != NULL ? (size_t)(lf - p) + 1 : avail;
			tail_push(f, p, n);
			explicit_bzero(p, n);
			used += n;
			if (lf == NULL)
				break;
			if (skipped_line_done(f, ev))
				break;
			continue;
		}
		if (avail == 0)
			break;
		/* k more bytes without a LF make the line too long (before
		 * login: or the command) */
		line = f->buf.len - f->line_start;
		k = line < cap(f, f->lim.line_max) + 2 ?
		    (size_t)cap(f, f->lim.line_max) + 2 - line : 0;
		if (f->noauth && f->lim.preauth_max > 0 &&
		    !(flags & IMAP_FRAMER_PLAIN)) {
			ck = f->buf.len < cmd_max(f) + 2 ?
			    (size_t)cmd_max(f) + 2 - f->buf.len : 0;
			if (ck < k) {
				k = ck;
				why = "Command too long";
			}
		}
		lf = memchr(p, '\n', avail < k ? avail : k);
		if (lf == NULL) {
			n = avail < k ? avail : k;
			buf_add(f, p, n);
			explicit_bzero(p, n);
			used += n;
			if (n < k)
				break;
			if (line_too_long(f, flags, why, ev))
				break;
			continue;
		}
		n = (size_t)(lf - p);
		buf_add(f, p, n);
		explicit_bzero(p, n + 1);
		used += n + 1;
		ev->lines++;
		if (f->buf.len > f->line_start &&
		    f->buf.data[f->buf.len - 1] == '\r')
			f->buf.data[--f->buf.len] = '\0';
		if (line_done(f, flags, ev))
			break;
	}
	*used_r = used;
	return ev->type;
}
