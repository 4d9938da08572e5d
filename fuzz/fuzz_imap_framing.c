/*
 * fuzz_imap_framing.c: IMAP command framing (lib/imap/framing.c) on the
 * input as what a client sends, with small bounds (so short inputs reach
 * every one of them) and with the real ones, checking:
 *  - the same events (commands, plain lines, continuations, refusals,
 *    closes, and the lines counted for the deadline) whether the bytes
 *    come at once, split at a point the input chooses, in pieces whose
 *    size comes from the input, or one by one;
 *  - each event within its bounds (imap_framing_sim.h): no command over
 *    cmd_max unless an APPEND by a logged-in client (append_max +
 *    cmd_max), every literal within literal_max (append_max), every line
 *    of a command announcing a literal but the last, no plain line over
 *    line_max + 1, a refusal's tag a plausible one, nothing after a
 *    close, the buffer bounded (before login, by preauth_max);
 *  - with spool_min, each of a logged-in APPEND's (or REPLACE's)
 *    messages over it, at most IMAP_FRAMER_SPOOLS, handed out whole
 *    (SPOOL, then DATA up to its size) and kept out of the command, the
 *    command saying where each was, and what stays in memory bounded by
 *    spool_min + cmd_max;
 *  - every byte consumed wiped, unless an APPEND's message was taken.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/imap_framing_sim.h"
#include "lib/base/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct imap_framer_limits small = {
	.line_max = 40, .literal_max = 20, .cmd_max = 100, .append_max = 60,
};
static const struct imap_framer_limits real = {
	.line_max = 64 * 1024, .literal_max = 64 * 1024,
	.cmd_max = 1024 * 1024, .append_max = 10 * 1024 * 1024,
	.preauth_max = 8 * 1024,
};
/* A bound before login below the line and literal bounds. */
static const struct imap_framer_limits small_pre = {
	.line_max = 40, .literal_max = 20, .cmd_max = 100, .append_max = 60,
	.preauth_max = 30,
};
/* APPEND messages over 10 bytes handed out (spooled), as the session
 * does past IMAP_APPEND_MEM_MAX. */
static const struct imap_framer_limits small_spool = {
	.line_max = 40, .literal_max = 20, .cmd_max = 100, .append_max = 60,
	.preauth_max = 30, .spool_min = 10,
};

static void
check_limits(const struct imap_framer_limits *lim, const char *in,
    size_t len, size_t split, size_t piece)
{
	struct sim whole, other;
	size_t *cuts = xcalloc(len + 1, sizeof(*cuts));
	size_t n = 0;
	bool wiped;

	sim_run(lim, in, len, NULL, 0, &whole, &wiped);
	if (!wiped && !whole.appended)
		abort();
	/* one split */
	if (split > 0 && split < len) {
		cuts[0] = split;
		sim_run(lim, in, len, cuts, 1, &other, &wiped);
		if (!sim_same(&whole, &other))
			abort();
		str_free(&other.log);
	}
	/* pieces */
	for (size_t i = piece; i < len; i += piece)
		cuts[n++] = i;
	sim_run(lim, in, len, cuts, n, &other, &wiped);
	if (!sim_same(&whole, &other))
		abort();
	str_free(&other.log);
	/* byte by byte: a step per byte, short inputs only */
	if (len <= 2048) {
		n = 0;
		for (size_t i = 1; i < len; i++)
			cuts[n++] = i;
		sim_run(lim, in, len, cuts, n, &other, &wiped);
		if (!sim_same(&whole, &other))
			abort();
		str_free(&other.log);
	}
	str_free(&whole.log);
	free(cuts);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t split, piece;

	if (size < 2)
		return 0;
	/* the first two bytes choose the cuts; the rest is the input */
	split = data[0] * (size - 2) / 256;
	piece = (size_t)data[1] % 13 + 1;
	check_limits(&small, (const char *)data + 2, size - 2, split, piece);
	check_limits(&small_pre, (const char *)data + 2, size - 2, split,
	    piece);
	check_limits(&small_spool, (const char *)data + 2, size - 2, split,
	    piece);
	check_limits(&real, (const char *)data + 2, size - 2, split, piece);
	return 0;
}
