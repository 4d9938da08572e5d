/*
 * fuzz_session_line.c: the command-line reader of SMTP and POP3
 * (lib/session/line.c), fed what a client sends before or after login.
 * The first byte picks the line bound (small ones and the protocols'
 * own) and how the rest arrives: at once, in pieces of varying sizes, or
 * byte by byte. Checks against a model (split at LF): a line is given
 * exactly when it fits the bound counting its LF, with its bytes (NULs
 * kept) less the LF and one CR before it; any longer line is refused
 * once, also when no LF has come yet and it is already over the bound;
 * the same events whichever way the bytes arrive.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/str.h"
#include "lib/session/line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t bounds[8] = {
	1, 2, 3, 8, 64, 513, SMTP_LINE_MAX, POP3_LINE_MAX,
};

/* Events as text: "L<len>:" and the bytes for a line, "X" refused. */
static void
model(const uint8_t *p, size_t n, size_t max, str_t *ev)
{
	size_t i = 0;

	while (i < n) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		size_t len;

		if (nl == NULL) {
			if (n - i > max)
				str_append_c(ev, 'X');
			return;
		}
		len = (size_t)(nl - (p + i));
		if (len + 1 > max) {
			str_append_c(ev, 'X');
		} else {
			size_t l = len > 0 && p[i + len - 1] == '\r' ? len - 1 :
			    len;

			str_printf(ev, "L%zu:", l);
			str_append_n(ev, p + i, l);
		}
		i += len + 1;
	}
}

static void
take_all(struct evbuffer *in, size_t max, bool *skip, str_t *ev)
{
	char *line;
	size_t len;
	int r;

	while ((r = line_take(in, max, skip, &line, &len)) != 0) {
		if (r < 0) {
			str_append_c(ev, 'X');
			continue;
		}
		if (len > max || line[len] != '\0' ||
		    memchr(line, '\n', len) != NULL)
			abort();
		str_printf(ev, "L%zu:", len);
		str_append_n(ev, line, len);
		free(line);
	}
	/* what stays is an incomplete line within the bound */
	if (evbuffer_get_length(in) > max ||
	    evbuffer_search(in, "\n", 1, NULL).pos >= 0)
		abort();
}

static void
feed(const uint8_t *p, size_t n, size_t max, unsigned mode, str_t *ev)
{
	struct evbuffer *in = evbuffer_new();
	bool skip = false;
	uint32_t rnd = mode * 2654435761u + 1;
	size_t i = 0;

	while (i < n) {
		size_t k;

		if (mode == 0)
			k = n - i;
		else if (mode == 1)
			k = 1;
		else {
			rnd = rnd * 1103515245u + 12345u;
			k = 1 + (rnd >> 16) % (2 * max + 3);
		}
		if (k > n - i)
			k = n - i;
		evbuffer_add(in, p + i, k);
		i += k;
		take_all(in, max, &skip, ev);
	}
	evbuffer_free(in);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	str_t want = STR_INIT, got = STR_INIT;
	size_t max;

	if (size == 0)
		return 0;
	max = bounds[data[0] & 7];
	model(data + 1, size - 1, max, &want);
	for (unsigned mode = 0; mode < 4; mode++) {
		if (mode == 1 && size > 4096)
			continue;	/* byte by byte: short inputs only */
		str_truncate(&got, 0);
		feed(data + 1, size - 1, max, mode == 3 ? data[0] >> 3 | 4 :
		    mode, &got);
		if (got.len != want.len ||
		    memcmp(str_c(&got), str_c(&want), got.len) != 0)
			abort();
	}
	str_free(&want);
	str_free(&got);
	return 0;
}
