/*
 * mbox_expunged.c: petrel-expunged, the UIDs a folder expunged and the
 * modseq at which it did (RFC 7162 QRESYNC: VANISHED (EARLIER)), and
 * where a folder's modseqs start.
 *
 * The file is text:
 *
 *   petrel-expunged 1 <uidvalidity> <floor>\n
 *   <modseq> <uid-set>\n                 (one per published expunge)
 *   ...
 *
 * where <uid-set> is "a:b,c,..." (ascending). Every expunge published
 * at modseq m appends one line (a single write, under the folder's
 * lock). What the file holds is exact for modseqs from <floor> on: a
 * client that last saw modseq s >= floor learns exactly the UIDs on the
 * lines with a modseq above s; for an older s (or a file that is
 * missing, damaged or of another UIDVALIDITY) the answer is "not
 * exact", and the caller reports every UID below UIDNEXT that is not in
 * the folder, which RFC 7162 3.2.5.1 allows. The file is bounded: when
 * a line would take it past XLOG_MAX it is started over with the floor
 * at the modseq before that expunge (so only clients that last synced
 * before it get the longer answer). It is also started over, with the
 * floor at the new start, when the index is rebuilt.
 *
 * Where modseqs start: a folder whose index is new or rebuilt (deleted,
 * corrupt, lost log) cannot know the modseqs it gave out before, and
 * must not go back below any of them (a client would miss changes). It
 * starts at the microseconds since the epoch at that moment
 * (mbox_modseq_floor), above any earlier value as long as the folder
 * had fewer than a million changes per second of its life on average
 * and the clock does not go back; a readable header of a corrupt index
 * is taken when higher. This needs no file that could itself be lost
 * with the index, and keeps values below 2^53 (some clients keep them
 * in doubles) until the year 2255.
 *
 * Trust: the file is untrusted bytes; parsing is bounded and strict,
 * and anything odd only makes the answer "not exact".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/store/mbox_int.h"

#define XLOG_MAGIC "petrel-expunged 1 "
/* The file is started over before it grows past this. */
#define XLOG_MAX (64 * 1024)
/* More UIDs than this in an answer: "not exact" instead. */
#define XLOG_UIDS_MAX 1000000

uint64_t
mbox_modseq_floor(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec < 1)
		return 1;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static char *
xlog_path(const struct mbox *mb)
{
	return xasprintf("%s/%s", mb->path, MBOX_EXPUNGED_NAME);
}

static void
put_set(str_t *b, const uint32_t *uids, size_t n)
{
	size_t k = 0, j;

	while (k < n) {
		for (j = k; j + 1 < n && uids[j + 1] == uids[j] + 1; j++)
			;
		if (k > 0)
			str_append_c(b, ',');
		if (j > k)
			str_printf(b, "%" PRIu32 ":%" PRIu32, uids[k], uids[j]);
		else
			str_printf(b, "%" PRIu32, uids[k]);
		k = j + 1;
	}
}

/* Replace the file with a header and, if line is not NULL, one line. */
static void
xlog_write(struct mbox *mb, uint64_t floor, const str_t *line)
{
	char *path = xlog_path(mb);
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	str_t b = STR_INIT;
	int fd;

	str_printf(&b, "%s%" PRIu32 " %" PRIu64 "\n", XLOG_MAGIC,
	    mb->uidvalidity, floor);
	if (line != NULL)
		str_append_n(&b, str_c(line), line->len);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0 || write_full(fd, str_c(&b), b.len) < 0 ||
	    rename(tmp, path) < 0) {
		log_warn("%s: cannot write %s: %s", mb->path,
		    MBOX_EXPUNGED_NAME, strerror(errno));
		(void)unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	str_free(&b);
	free(tmp);
	free(path);
}

void
mbox_xlog_reset(struct mbox *mb, uint64_t floor)
{
	xlog_write(mb, floor, NULL);
}

/* Does the open file have our header and end with a whole line? */
static bool
xlog_usable(const struct mbox *mb, int fd, const struct stat *st)
{
	char head[64], want[64], last;
	int wl;

	wl = snprintf(want, sizeof(want), "%s%" PRIu32 " ", XLOG_MAGIC,
	    mb->uidvalidity);
	if (!S_ISREG(st->st_mode) || st->st_size < wl + 2 ||
	    pread(fd, head, (size_t)wl, 0) != wl ||
	    memcmp(head, want, (size_t)wl) != 0)
		return false;
	return pread(fd, &last, 1, st->st_size - 1) == 1 && last == '\n';
}

void
mbox_xlog_append(struct mbox *mb, const uint32_t *uids, size_t n,
    uint64_t modseq, uint64_t before)
{
	char *path;
	str_t line = STR_INIT;
	struct stat st;
	int fd;

	if (n == 0)
		return;
	str_printf(&line, "%" PRIu64 " ", modseq);
	put_set(&line, uids, n);
	str_append_c(&line, '\n');
	path = xlog_path(mb);
	fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd >= 0 && fstat(fd, &st) == 0 && xlog_usable(mb, fd, &st) &&
	    (uint64_t)st.st_size + line.len <= XLOG_MAX) {
		if (write_full(fd, str_c(&line), line.len) < 0)
			log_warn("%s: cannot write %s: %s", mb->path,
			    MBOX_EXPUNGED_NAME, strerror(errno));
	} else {
		/* missing, damaged, another UIDVALIDITY's or full: what
		 * it held is forgotten, exact again from before */
		xlog_write(mb, before, &line);
	}
	if (fd >= 0)
		close(fd);
	str_free(&line);
}

/* ---- reading ---- */

static bool
get_num(const char **pp, const char *end, uint64_t max, uint64_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (p == end || *p < '0' || *p > '9')
		return false;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (max - (uint64_t)(*p - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*pp = p;
	*v_r = v;
	return true;
}

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* One "<modseq> <set>" line [p, end): its UIDs below uidnext are added
 * when modseq > since. false: malformed, or too many UIDs. */
static bool
xlog_line(const char *p, const char *end, uint64_t since, uint32_t uidnext,
    uint32_t **v, size_t *n, size_t *cap)
{
	uint64_t modseq, lo, hi;

	if (!get_num(&p, end, UINT64_MAX, &modseq) || p == end || *p++ != ' ')
		return false;
	for (;;) {
		if (!get_num(&p, end, UINT32_MAX, &lo) || lo == 0)
			return false;
		hi = lo;
		if (p < end && *p == ':') {
			p++;
			if (!get_num(&p, end, UINT32_MAX, &hi) || hi < lo)
				return false;
		}
		if (modseq > since) {
			if (hi >= uidnext)
				return false;	/* never given out */
			if (*n + (hi - lo + 1) > XLOG_UIDS_MAX)
				return false;
			for (uint64_t u = lo; u <= hi; u++) {
				if (*n == *cap) {
					*cap = *cap < 64 ? 64 : *cap * 2;
					*v = xrealloc(*v, *cap * sizeof(**v));
				}
				(*v)[(*n)++] = (uint32_t)u;
			}
		}
		if (p == end)
			return true;
		if (*p++ != ',')
			return false;
	}
}

int
mbox_vanished(struct mbox *mb, uint64_t since, uint32_t **uids_r,
    size_t *n_r, bool *exact_r)
{
	char *path = xlog_path(mb), *buf = NULL;
	const char *p, *end, *nl;
	uint32_t *v = NULL;
	size_t n = 0, cap = 0, k, out;
	uint64_t uidv, floor;
	struct stat st;
	ssize_t r;
	bool exact = false;
	int fd;

	*uids_r = NULL;
	*n_r = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > 2 * XLOG_MAX)
		goto out;
	buf = xmalloc((size_t)st.st_size + 1);
	r = pread(fd, buf, (size_t)st.st_size, 0);
	if (r != st.st_size)
		goto out;
	p = buf;
	end = buf + r;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL || (size_t)(nl - p) < sizeof(XLOG_MAGIC) - 1 ||
	    memcmp(p, XLOG_MAGIC, sizeof(XLOG_MAGIC) - 1) != 0)
		goto out;
	p += sizeof(XLOG_MAGIC) - 1;
	if (!get_num(&p, nl, UINT32_MAX, &uidv) || p == nl || *p++ != ' ' ||
	    !get_num(&p, nl, UINT64_MAX, &floor) || p != nl ||
	    uidv != mb->uidvalidity || since < floor)
		goto out;
	for (p = nl + 1; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL ||
		    !xlog_line(p, nl, since, mb->uidnext, &v, &n, &cap))
			goto out;
	}
	exact = true;
	if (n > 1)
		qsort(v, n, sizeof(*v), u32_cmp);
	for (k = out = 0; k < n; k++)
		if (out == 0 || v[k] != v[out - 1])
			v[out++] = v[k];
	n = out;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	*exact_r = exact;
	if (!exact || n == 0) {
		free(v);
		return 0;
	}
	*uids_r = v;
	*n_r = n;
	return 0;
}
