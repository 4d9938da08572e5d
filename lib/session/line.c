/*
 * line.c: command lines out of an input buffer (see line.h).
 */
#include <event2/buffer.h>
#include <stdlib.h>

#include "lib/base/alloc.h"
#include "lib/session/line.h"

int
line_take(struct evbuffer *in, size_t max, bool *skip, char **line_r,
    size_t *len_r)
{
	struct evbuffer_ptr eol;
	size_t n;
	char *line;

	for (;;) {
		eol = evbuffer_search(in, "\n", 1, NULL);
		if (eol.pos < 0) {
			size_t have = evbuffer_get_length(in);

			if (have <= max)
				return 0;
			/* no end in sight: drop what there is */
			evbuffer_drain(in, have);
			if (*skip)
				return 0;
			*skip = true;
			return -1;
		}
		n = (size_t)eol.pos + 1;
		if (*skip) {
			/* the end of an overlong line already answered */
			evbuffer_drain(in, n);
			*skip = false;
			continue;
		}
		if (n > max) {
			evbuffer_drain(in, n);
			return -1;
		}
		break;
	}
	line = xmalloc(n + 1);
	evbuffer_remove(in, line, n);
	n--;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	*line_r = line;
	*len_r = n;
	return 1;
}
