/*
 * fuzz_milter_reply.c: what a mail filter sends back (lib/milter): the
 * input is a message (its length in the first two octets) and then a
 * stream of reply packets, with checks:
 *  - packets are cut the same whether the bytes come at once or one
 *    piece at a time, never past the input, never longer than
 *    MILTER_PACKET_MAX;
 *  - a decoded header change has a valid name and its strings end inside
 *    the packet; a reply code becomes one printable line with a 4xx/5xx
 *    code and an enhanced code of its class, or is refused;
 *  - the header changes and a new body, applied to the message, give a
 *    header section of fields and continuation lines, ended by an empty
 *    line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/milter/milter.h"
#include "lib/queue/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_line(const char *line, char cls)
{
	size_t n = strlen(line);

	if (n < 9 || line[0] != cls || line[3] != ' ' || line[4] != cls ||
	    line[5] != '.')
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f)
			abort();
}

/* Cut packets from in[0..len) fed `piece` octets at a time; the number of
 * packets and where it stopped. */
static size_t
cut(const uint8_t *in, size_t len, size_t piece, size_t *npackets, int *end)
{
	size_t off = 0, have = piece == 0 ? len : 0;

	*npackets = 0;
	for (;;) {
		struct milter_packet p;
		const char *err = NULL;
		size_t used = 0;
		int r = milter_frame(in + off, have - off, &p, &used, &err);

		if (r < 0) {
			if (err == NULL)
				abort();
			*end = -1;
			return off;
		}
		if (r == 0) {
			if (have == len) {
				*end = 0;
				return off;
			}
			have = have + piece < len ? have + piece : len;
			continue;
		}
		if (used > have - off || used < 5 || p.len != used - 5 ||
		    p.len >= MILTER_PACKET_MAX)
			abort();
		off += used;
		(*npackets)++;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct milter_result res;
	struct spool msg, out;
	const uint8_t *stream;
	size_t mlen, slen, off = 0, n1, n2;
	int e1, e2;
	const char *err;

	if (size < 2)
		return 0;
	mlen = ((size_t)data[0] << 8 | data[1]) % (size - 1);
	stream = data + 2 + mlen;
	slen = size - 2 - mlen;
	if (cut(stream, slen, 0, &n1, &e1) !=
	    cut(stream, slen, slen > 0 ? stream[0] % 7 + 1 : 1, &n2, &e2) ||
	    n1 != n2 || e1 != e2)
		abort();

	memset(&res, 0, sizeof(res));
	for (;;) {
		struct milter_packet p;
		struct milter_reply r;
		unsigned char *copy;
		size_t used;

		if (milter_frame(stream + off, slen - off, &p, &used, &err) <= 0)
			break;
		off += used;
		copy = xmalloc(p.len + 1);
		memcpy(copy, p.data, p.len);
		if (milter_decode(p.cmd, copy, p.len, &r, &err) < 0) {
			free(copy);
			continue;
		}
		switch (r.cmd) {
		case SMFIR_ADDHEADER:
		case SMFIR_INSHEADER:
		case SMFIR_CHGHEADER:
			if (!milter_header_name_ok(r.name) ||
			    r.value < (const char *)copy ||
			    r.value + strlen(r.value) >= (const char *)copy + p.len)
				abort();
			if (res.nedits < 64) {
				res.edits = xrealloc(res.edits, (res.nedits + 1) *
				    sizeof(*res.edits));
				res.edits[res.nedits].kind = r.cmd == SMFIR_ADDHEADER ?
				    MILTER_ADD : r.cmd == SMFIR_INSHEADER ?
				    MILTER_INSERT : MILTER_CHANGE;
				res.edits[res.nedits].index = r.index;
				res.edits[res.nedits].name = xstrdup(r.name);
				res.edits[res.nedits].value = xstrdup(r.value);
				res.nedits++;
			}
			break;
		case SMFIR_REPLYCODE:
			for (int t = 0; t < 2; t++) {
				char *line = milter_reply_line(r.name, t == 1);

				if (line != NULL) {
					check_line(line, t == 1 ? '4' : '5');
					free(line);
				}
			}
			break;
		case SMFIR_REPLBODY:
			res.body_replaced = true;
			str_append_n(&res.body, r.body, r.body_len);
			break;
		default:
			break;
		}
		free(copy);
	}

	/* the changes applied to the message (in memory: it is small) */
	spool_init(&msg, "/tmp");
	spool_init(&out, "/tmp");
	if (spool_append(&msg, data + 2, mlen, &err) < 0)
		abort();
	if (milter_apply(&msg, &res, &out, &err) < 0)
		abort();
	{
		const char *t = out.mem.data, *end = t + out.mem.len;
		bool first = true;

		/* a header section of fields and continuations */
		while (t < end && *t != '\n') {
			const char *nl = memchr(t, '\n', (size_t)(end - t));

			if (nl == NULL)
				abort();
			if ((*t == ' ' || *t == '\t') ? first :
			    memchr(t, ':', (size_t)(nl - t)) == NULL)
				abort();
			first = false;
			t = nl + 1;
		}
		if (t == end)
			abort();	/* no empty line */
	}
	spool_reset(&msg);
	spool_reset(&out);
	milter_result_free(&res);
	return 0;
}
