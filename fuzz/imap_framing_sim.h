#ifndef PETREL_IMAP_FRAMING_SIM_H
#define PETREL_IMAP_FRAMING_SIM_H
/*
 * imap_framing_sim.h: a model of the IMAP session around the framer
 * (lib/imap/framing), shared by the unit test (tests/unit/
 * test_imap_framing.c) and the fuzz target (fuzz/fuzz_imap_framing.c).
 *
 * It feeds input cut at given points, as reads from the network would
 * cut it, and plays the session: "tag IDLE" and "tag AUTHENTICATE mech"
 * make the next line a plain line, "tag LOGIN ..." logs in (APPEND may
 * carry large literals from then on; before it, preauth_max bounds a
 * command). Every event goes into a log, so
 * two runs over the same bytes cut differently can be compared. The
 * bounds every event must keep are checked here (abort on a breach).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/imap/framing.h"
#include "lib/imap/parse.h"

struct sim {
	str_t log;		/* the events, one after the other */
	unsigned lines;		/* whole lines, over the whole run */
	unsigned commands;
	bool plain, logged_in, closed;
	bool appended;		/* APPEND literal data was taken */
	/* a spooled APPEND literal (IMAP_FRAME_SPOOL, then DATA) */
	bool spooling;
	uint64_t spool_size;
	str_t spool;
};

/* The n-th word (0: the tag) of a command's first line, upper-cased,
 * in out: as the framer, and the session, read the command's name (the
 * words of a literal's data are not the command's; a line ends at LF). */
static void
sim_word(const char *p, size_t len, unsigned n, char *out, size_t outsz)
{
	size_t i = 0, o = 0;

	for (unsigned w = 0; w < n; w++) {
		while (i < len && p[i] != ' ' && p[i] != '\n')
			i++;
		if (i == len || p[i] != ' ') {
			out[0] = '\0';
			return;
		}
		i++;
	}
	/* a NUL inside the word makes it another word (the framer
	 * compares the bytes, "APPEND\0" is not APPEND) */
	while (i < len && p[i] != ' ' && p[i] != '\n' &&
	    o + 1 < outsz) {
		out[o++] = p[i] == '\0' ? '?' :
		    (char)toupper((unsigned char)p[i]);
		i++;
	}
	out[o] = '\0';
}

static void
sim_check_command(const struct imap_framer_limits *lim, const char *p,
    size_t len, bool append, bool noauth, const size_t *spools,
    size_t nspools)
{
	const char *line = p, *end = p + len;
	uint64_t max = lim->cmd_max;
	size_t k = 0;

	if (append)
		max += lim->spool_min > 0 ? lim->spool_min : lim->append_max;
	if (len > max || nspools > IMAP_FRAMER_SPOOLS ||
	    (nspools > 0 && !append))
		abort();
	for (size_t i = 0; i < nspools; i++)
		if (spools[i] >= len || p[spools[i]] != '{' ||
		    (i > 0 && spools[i] <= spools[i - 1]))
			abort();
	if (noauth && lim->preauth_max > 0 && len > lim->preauth_max)
		abort();
	/* every line but the last announces a literal, within its bound;
	 * the last announces none */
	for (;;) {
		const char *crlf = memmem(line, (size_t)(end - line), "\r\n",
		    2);
		uint64_t size;
		bool nonsync;

		if (crlf == NULL) {
			if (imap_line_literal(line, (size_t)(end - line),
			    &size, &nonsync) || k != nspools)
				abort();
			return;
		}
		if (!imap_line_literal(line, (size_t)(crlf - line), &size,
		    &nonsync))
			abort();
		if ((size_t)(crlf - line) > lim->line_max + 1 ||
		    size > (append ? lim->append_max : lim->literal_max))
			abort();
		if (k < nspools && memrchr(line, '{',
		    (size_t)(crlf - line)) == p + spools[k]) {
			/* spooled: larger than spool_min, its data
			 * elsewhere */
			if (size <= lim->spool_min || lim->spool_min == 0)
				abort();
			size = 0;
			k++;
		}
		if (size > (uint64_t)(end - crlf - 2))
			abort();
		/* in memory, an APPEND literal is at most spool_min */
		if (append && lim->spool_min > 0 && size > lim->spool_min)
			abort();
		line = crlf + 2 + size;
	}
}

static void
sim_event(struct sim *m, const struct imap_framer_limits *lim,
    const struct imap_frame *ev)
{
	char word[16], mech[16], ir[16];
	str_t *log = &m->log;

	switch (ev->type) {
	case IMAP_FRAME_NONE:
		abort();
	case IMAP_FRAME_COMMAND:
		sim_word(ev->data, ev->len, 1, word, sizeof(word));
		sim_word(ev->data, ev->len, 2, mech, sizeof(mech));
		sim_word(ev->data, ev->len, 3, ir, sizeof(ir));
		sim_check_command(lim, ev->data, ev->len,
		    m->logged_in && (strcmp(word, "APPEND") == 0 ||
		    strcmp(word, "REPLACE") == 0 || (strcmp(word, "UID") == 0 &&
		    strcmp(mech, "REPLACE") == 0)),
		    !m->logged_in, ev->spools, ev->nspools);
		if ((ev->nspools > 0) != (ev->spool_at != SIZE_MAX) ||
		    (ev->nspools > 0 && ev->spool_at != ev->spools[0]))
			abort();
		if (m->spooling)
			abort();
		if (ev->data[ev->len] != '\0')
			abort();
		str_append(log, "C:");
		str_append_n(log, ev->data, ev->len);
		str_append(log, "|");
		m->commands++;
		/* IDLE waits for DONE; AUTHENTICATE without an initial
		 * response for the client's response to "+ " */
		if (strcmp(word, "IDLE") == 0 ||
		    (strcmp(word, "AUTHENTICATE") == 0 && mech[0] != '\0' &&
		    ir[0] == '\0'))
			m->plain = true;
		if (strcmp(word, "LOGIN") == 0)
			m->logged_in = true;
		if (strcmp(word, "APPEND") == 0)
			m->appended = true;
		break;
	case IMAP_FRAME_LINE:
		if (!m->plain || ev->len > lim->line_max + 1 ||
		    ev->data[ev->len] != '\0')
			abort();
		str_append(log, "L:");
		str_append_n(log, ev->data, ev->len);
		str_append(log, "|");
		m->plain = false;
		break;
	case IMAP_FRAME_CONTINUE:
		str_append(log, "+|");
		break;
	case IMAP_FRAME_REFUSE:
		if (ev->tag == NULL || ev->tag[0] == '\0' ||
		    strlen(ev->tag) > 63 || strchr(ev->tag, ' ') != NULL ||
		    ev->status == NULL || ev->text == NULL)
			abort();
		str_printf(log, "R:%s %s %s%s%s|", ev->tag, ev->status,
		    ev->text, ev->bye != NULL ? " BYE:" : "",
		    ev->bye != NULL ? ev->bye : "");
		if (ev->bye != NULL)
			m->closed = true;
		break;
	case IMAP_FRAME_LONG_LINE:
		if (!m->plain)
			abort();
		str_append(log, "X|");
		m->plain = false;
		break;
	case IMAP_FRAME_CLOSE:
		if (ev->bye == NULL)
			abort();
		str_printf(log, "B:%s|", ev->bye);
		m->closed = true;
		break;
	case IMAP_FRAME_SPOOL:
		if (!m->logged_in || m->spooling || lim->spool_min == 0 ||
		    ev->size <= lim->spool_min || ev->size > lim->append_max)
			abort();
		str_printf(log, "S:%llu%s|", (unsigned long long)ev->size,
		    ev->cont ? "" : "+");
		m->spooling = true;
		m->spool_size = ev->size;
		str_truncate(&m->spool, 0);
		break;
	case IMAP_FRAME_DATA:
		/* logged whole at its end: the same however it is cut */
		if (!m->spooling || ev->len == 0 ||
		    m->spool.len + ev->len > m->spool_size ||
		    ev->last != (m->spool.len + ev->len == m->spool_size))
			abort();
		str_append_n(&m->spool, ev->data, ev->len);
		if (ev->last) {
			str_append(log, "D:");
			str_append_n(log, m->spool.data, m->spool.len);
			str_append(log, "|");
			m->spooling = false;
		}
		break;
	}
}

/*
 * Run in[0..len) through a fresh framer in pieces ending at cuts[0..n)
 * (ascending; the last piece runs to len), each piece a fresh copy (as
 * a read from the network). *wiped_r: every byte consumed was wiped
 * (meaningful when no APPEND was logged in). The caller frees m->log.
 */
static void
sim_run(const struct imap_framer_limits *lim, const char *in, size_t len,
    const size_t *cuts, size_t ncuts, struct sim *m, bool *wiped_r)
{
	struct imap_framer f;
	size_t start = 0;
	uint64_t nonzero = 0;

	memset(m, 0, sizeof(*m));
	*wiped_r = true;
	imap_framer_init(&f, lim);
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t n = end - start, off = 0;
		char *piece = xmalloc(n + 1);

		memcpy(piece, in + start, n);
		/* a piece is handed over until it is all consumed; the
		 * session stops at an event and comes back */
		do {
			struct imap_frame ev;
			size_t used = 99999999;
			unsigned flags = (m->plain ? IMAP_FRAMER_PLAIN : 0) |
			    (m->logged_in ? IMAP_FRAMER_APPEND :
			    IMAP_FRAMER_NOAUTH);
			enum imap_frame_type t;

			t = imap_framer_step(&f, piece + off, n - off, flags,
			    &used, &ev);
			if (t != ev.type || used > n - off ||
			    (t == IMAP_FRAME_NONE && used != n - off) ||
			    (t != IMAP_FRAME_NONE && m->closed))
				abort();
			off += used;
			m->lines += ev.lines;
			if (t == IMAP_FRAME_NONE)
				break;
			sim_event(m, lim, &ev);
			if (t == IMAP_FRAME_COMMAND || t == IMAP_FRAME_LINE) {
				char word[16];

				sim_word(ev.data, ev.len, 1, word,
				    sizeof(word));
				imap_framer_release(&f,
				    t == IMAP_FRAME_LINE ||
				    strcmp(word, "APPEND") != 0);
			}
			/* bounded memory: a partial line, a command and a
			 * literal, never more */
			if (f.buf.len > lim->line_max + 2 + lim->cmd_max +
			    lim->literal_max + lim->append_max)
				abort();
			/* before login: about preauth_max, whatever comes */
			if (!m->logged_in && lim->preauth_max > 0 &&
			    f.buf.len > lim->preauth_max + 2)
				abort();
		} while (off < n);
		for (size_t i = 0; i < n; i++)
			if (piece[i] != '\0')
				nonzero++;
		free(piece);
		start = end;
	}
	/* nothing but APPEND literal data is left as it was */
	if (nonzero > f.unwiped)
		abort();
	m->appended = f.unwiped > 0;
	*wiped_r = nonzero == 0;
	str_free(&m->spool);
	imap_framer_deinit(&f);
}

/* Whether two runs gave the same events. */
static bool
sim_same(const struct sim *a, const struct sim *b)
{
	return a->log.len == b->log.len && a->lines == b->lines &&
	    a->closed == b->closed &&
	    (a->log.len == 0 || memcmp(a->log.data, b->log.data,
	    a->log.len) == 0);
}

#endif
