/*
 * fuzz_queue_file.c: the queue file reader (queue_msg_read in
 * lib/queue/queue.c) on a queue file and a state file made from the input
 * (split at the first "\n%%state\n"; no state file without it), written
 * under a directory made with mkdtemp in $TMPDIR or, without it, the
 * current directory (removed at exit). Checks:
 *  - the result is 1 (read) or -1 (refused, with a reason, nothing kept);
 *  - a file read has a sender, recipients with a status each, and its
 *    body starts right after the empty line that ends the envelope, which
 *    is the first one in the file;
 *  - a file whose envelope is cut anywhere before that empty line is
 *    refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/queue/queue.h"

#define ID "0123456789ABCDEF"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *qdir, *ipath, *spath;

static void
cleanup(void)
{
	char *p;

	if (qdir == NULL)
		return;
	unlink(ipath);
	unlink(spath);
	for (const char *const *s = (const char *const[]){ "tmp", "incoming",
	    "state", NULL }; *s != NULL; s++) {
		p = xasprintf("%s/%s", qdir, *s);
		rmdir(p);
		free(p);
	}
	rmdir(qdir);
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");
	const char *err;

	if (qdir != NULL)
		return;
	qdir = xasprintf("%s/fuzz-queue-XXXXXX", tmp && tmp[0] ? tmp : ".");
	if (mkdtemp(qdir) == NULL || queue_dirs_make(qdir, &err) < 0) {
		perror(qdir);
		abort();
	}
	ipath = xasprintf("%s/incoming/%s", qdir, ID);
	spath = xasprintf("%s/state/%s", qdir, ID);
	atexit(cleanup);
}

static void
put(const char *path, const uint8_t *p, size_t n)
{
	FILE *fp = fopen(path, "wb");

	if (fp == NULL || (n > 0 && fwrite(p, 1, n, fp) != n) ||
	    fclose(fp) != 0)
		abort();
}

static int
read_back(struct queue_msg *m)
{
	const char *err = NULL;
	int r = queue_msg_read(qdir, ID, m, &err);

	if (r != 1 && r != -1)
		abort();
	if (r == -1 && (err == NULL || m->rcpts != NULL || m->sender != NULL ||
	    m->path != NULL))
		abort();
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char sep[] = "\n%%state\n";
	const uint8_t *st = memmem(data, size, sep, sizeof(sep) - 1);
	size_t qlen = st ? (size_t)(st - data) + 1 : size;
	const uint8_t *blank = memmem(data, qlen, "\n\n", 2);
	struct queue_msg m;

	setup();
	put(ipath, data, qlen);
	if (st != NULL) {
		size_t off = (size_t)(st - data) + sizeof(sep) - 1;

		put(spath, data + off, size - off);
	} else {
		unlink(spath);
	}
	if (read_back(&m) == 1) {
		/* the envelope ends at the first empty line */
		if (blank == NULL || m.body_offset != (long)(blank - data) + 2 ||
		    m.sender == NULL || m.nrcpts == 0 || strcmp(m.id, ID) != 0)
			abort();
		for (size_t i = 0; i < m.nrcpts; i++) {
			const struct queue_entry *e = &m.rcpts[i];

			if (e->address[0] == '\0' || e->last == NULL ||
			    (e->status != QR_PENDING && e->status != QR_SENT &&
			    e->status != QR_BOUNCED) || e->next < 0 ||
			    strchr(e->address, '\n') != NULL)
				abort();
		}
		queue_msg_clear(&m);
		/* cut before the end of the envelope: refused */
		put(ipath, data, (size_t)(blank - data) + 1);
		if (read_back(&m) != -1)
			abort();
		if (blank > data) {
			put(ipath, data, (size_t)(data[0]) %
			    (size_t)(blank - data));
			if (read_back(&m) != -1)
				abort();
		}
	}
	return 0;
}
