/*
 * fuzz_imap_sort.c: SORT and THREAD (lib/imap/sort.c) over a mailbox
 * whose headers come from the input: the input is cut at every NUL byte
 * into at most 64 headers (message i gets INTERNALDATE from its length
 * and the first byte, so dates repeat and ties happen). Checks:
 *  - every sort program tried gives a permutation of the messages, and
 *    sorting that again, or its reverse, gives the same order (the
 *    comparison is a total order: ties end at the sequence number);
 *  - both threading algorithms name every message exactly once, in
 *    balanced parentheses with no empty group, with sequence numbers
 *    and, the same shape, with UIDs;
 *  - a base subject has no leading or trailing space;
 *  - the keys taken from the ENVELOPE made of a header (what SORT uses
 *    when the store has it cached) are the keys taken from the header;
 *  - a message's sort record (what petrel-sort keeps) decodes to the
 *    same keys, IDs included;
 *  - the whole input read as a petrel-sort file (lib/store/mbox_sort.c),
 *    and as one sort record, is parsed and decoded without harm.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/imap/parse.h"
#include "lib/imap/sort.h"
#include "lib/mime/mime.h"
#include "lib/store/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSGS_MAX 64

static const char *const programs[] = {
	"(SUBJECT)", "(REVERSE DATE)", "(FROM TO CC)", "(ARRIVAL SIZE)",
	"(REVERSE DISPLAYFROM DISPLAYTO)", "(REVERSE CC REVERSE SUBJECT)",
};

static void
load_program(const char *text, struct sort_prog *p)
{
	struct imap_cmd cmd;
	const char *err = NULL;
	str_t buf = STR_INIT;

	str_printf(&buf, "a SORT %s UTF-8 ALL", text);
	if (imap_cmd_parse(buf.data, buf.len, &cmd, &err) < 0 ||
	    imap_sort_parse_program(&cmd.args[0], p, &err) < 0)
		abort();
	imap_cmd_free(&cmd);
	str_free(&buf);
}

/* The order is the program's: each pair in order, ties by seq. */
static void
check_sorted(const struct sort_prog *p, struct sort_msg **v, size_t n)
{
	struct sort_msg *again[MSGS_MAX];
	bool seen[MSGS_MAX + 1];

	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < n; i++) {
		if (v[i]->seq < 1 || v[i]->seq > n || seen[v[i]->seq])
			abort();
		seen[v[i]->seq] = true;
	}
	memcpy(again, v, n * sizeof(*v));
	imap_sort(p, again, n);
	if (memcmp(again, v, n * sizeof(*v)) != 0)
		abort();
	/* the same result from the reversed input: the order is total */
	for (size_t i = 0; i < n; i++)
		again[i] = v[n - 1 - i];
	imap_sort(p, again, n);
	if (memcmp(again, v, n * sizeof(*v)) != 0)
		abort();
}

/* Every number 1..n (or its UID) once, balanced, no "()". */
static void
check_threads(const char *s, const struct sort_msg *msgs, size_t n, bool uid)
{
	unsigned count[MSGS_MAX + 1];
	long depth = 0;

	memset(count, 0, sizeof(count));
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '(') {
			if (p[1] == ')')
				abort();
			depth++;
		} else if (*p == ')') {
			if (--depth < 0)
				abort();
		} else if (*p >= '0' && *p <= '9') {
			unsigned long v = strtoul(p, NULL, 10);
			size_t k;

			if (depth == 0)
				abort();
			for (k = 0; k < n; k++) {
				if ((uid ? msgs[k].uid : msgs[k].seq) == v)
					break;
			}
			if (k == n)
				abort();
			count[k]++;
			while (p[1] >= '0' && p[1] <= '9')
				p++;
		} else if (*p != ' ')
			abort();
	}
	if (depth != 0)
		abort();
	for (size_t k = 0; k < n; k++) {
		if (count[k] != 1)
			abort();
	}
}

static bool
same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The keys from the ENVELOPE of the header agree with m's. */
static void
check_envelope(const struct sort_msg *m, const char *hdr, size_t len)
{
	struct sort_msg e;
	str_t wire = STR_INIT, env = STR_INIT;

	memset(&e, 0, sizeof(e));
	e.internaldate = m->internaldate;
	mime_to_crlf(hdr, len, &wire);
	str_append(&wire, "\r\n");
	mime_envelope_header(wire.data, wire.len, &env);
	if (imap_sort_msg_fill_envelope(&e, str_c(&env),
	    0xff & ~SORT_NEED_IDS) == 0 && (e.date != m->date ||
	    e.reply != m->reply || !same(e.subject, m->subject) ||
	    !same(e.from, m->from) || !same(e.to, m->to) ||
	    !same(e.cc, m->cc) || !same(e.display_from, m->display_from) ||
	    !same(e.display_to, m->display_to)))
		abort();
	imap_sort_msg_clear(&e);
	str_free(&wire);
	str_free(&env);
}

/* m's record decodes to m's keys. */
static void
check_record(const struct sort_msg *m)
{
	char *refs[IMAP_THREAD_REFS_MAX];
	struct sort_msg d;
	str_t rec = STR_INIT;

	memset(&d, 0, sizeof(d));
	d.internaldate = m->internaldate;
	imap_sort_rec_encode(m, true, &rec);
	if (rec.len > MBOX_SORTREC_MAX ||
	    imap_sort_rec_nrefs((const unsigned char *)rec.data, rec.len) !=
	    m->nrefs ||
	    imap_sort_rec_decode(&d, (const unsigned char *)rec.data,
	    rec.len, 0xff, refs, IMAP_THREAD_REFS_MAX) != 1 ||
	    d.date != m->date || d.reply != m->reply ||
	    !same(d.subject, m->subject) || !same(d.from, m->from) ||
	    !same(d.to, m->to) || !same(d.cc, m->cc) ||
	    !same(d.display_from, m->display_from) ||
	    !same(d.display_to, m->display_to) ||
	    (m->msgid == NULL) != (d.msgid == NULL) ||
	    (m->msgid != NULL && !same(d.msgid, m->msgid)) ||
	    d.nrefs != m->nrefs)
		abort();
	for (size_t i = 0; i < m->nrefs; i++) {
		if (!same(d.refs[i], m->refs[i]))
			abort();
	}
	imap_sort_msg_clear(&d);
	str_free(&rec);
}

/* A record from the input: decoded or refused, nothing else. */
static void
decode_any(void *ctx, uint32_t uid, const unsigned char *rec, size_t len)
{
	char *refs[IMAP_THREAD_REFS_MAX];
	struct sort_msg d;
	size_t *count = ctx;

	(void)uid;
	memset(&d, 0, sizeof(d));
	if (imap_sort_rec_decode(&d, rec, len, 0xff, refs,
	    IMAP_THREAD_REFS_MAX) > 0) {
		if (d.subject == NULL || d.display_to == NULL ||
		    d.nrefs > IMAP_THREAD_REFS_MAX)
			abort();
		for (size_t i = 0; i < d.nrefs; i++) {
			if (strlen(d.refs[i]) > IMAP_MSGID_MAX)
				abort();
		}
	}
	imap_sort_msg_clear(&d);
	(*count)++;
}

/* The thread shape without the numbers. */
static void
shape(const char *s, str_t *out)
{
	for (; *s != '\0'; s++) {
		if (*s >= '0' && *s <= '9') {
			while (s[1] >= '0' && s[1] <= '9')
				s++;
			str_append_c(out, 'n');
		} else
			str_append_c(out, *s);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sort_msg msgs[MSGS_MAX], *v[MSGS_MAX];
	const char *p = (const char *)data, *end = p + size;
	char *copy;
	size_t n = 0;

	memset(msgs, 0, sizeof(msgs));
	if (size >= 12) {
		size_t count = 0;

		(void)mbox_sortrec_parse(data, size, (uint32_t)data[8] |
		    (uint32_t)data[9] << 8 | (uint32_t)data[10] << 16 |
		    (uint32_t)data[11] << 24, decode_any, &count);
	}
	{
		size_t count = 0;

		decode_any(&count, 0, data, size);
	}
	while (p < end && n < MSGS_MAX) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		size_t len = z != NULL ? (size_t)(z - p) : (size_t)(end - p);

		copy = xmalloc(len + 1);
		memcpy(copy, p, len);
		copy[len] = '\0';
		msgs[n].seq = (uint32_t)(n + 1);
		msgs[n].uid = (uint32_t)(n * 3 + 7);
		msgs[n].size = len % 7;
		msgs[n].internaldate = len > 0 ? (unsigned char)copy[0] % 4 :
		    0;
		imap_sort_msg_fill(&msgs[n], copy, len, 0xff);
		check_envelope(&msgs[n], copy, len);
		check_record(&msgs[n]);
		if (msgs[n].subject[0] == ' ' || (msgs[n].subject[0] != '\0' &&
		    msgs[n].subject[strlen(msgs[n].subject) - 1] == ' '))
			abort();
		free(copy);
		n++;
		p += len + 1;
	}
	for (size_t k = 0; k < sizeof(programs) / sizeof(programs[0]); k++) {
		struct sort_prog prog;

		load_program(programs[k], &prog);
		for (size_t i = 0; i < n; i++)
			v[i] = &msgs[i];
		imap_sort(&prog, v, n);
		check_sorted(&prog, v, n);
	}
	for (int algo = THREAD_ORDEREDSUBJECT; algo <= THREAD_REFERENCES;
	    algo++) {
		str_t a = STR_INIT, b = STR_INIT, sa = STR_INIT, sb = STR_INIT;

		imap_thread((enum thread_algo)algo, msgs, n, false, &a);
		imap_thread((enum thread_algo)algo, msgs, n, true, &b);
		check_threads(str_c(&a), msgs, n, false);
		check_threads(str_c(&b), msgs, n, true);
		shape(str_c(&a), &sa);
		shape(str_c(&b), &sb);
		if (strcmp(str_c(&sa), str_c(&sb)) != 0)
			abort();
		str_free(&a);
		str_free(&b);
		str_free(&sa);
		str_free(&sb);
	}
	for (size_t i = 0; i < n; i++)
		imap_sort_msg_clear(&msgs[i]);
	return 0;
}
