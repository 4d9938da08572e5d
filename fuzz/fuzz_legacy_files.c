/*
 * fuzz_legacy_files.c: the old servers' files that petrel keeps current
 * in a folder (lib/store/mbox_legacy.c): a hostile dovecot-uidlist,
 * courierimapuiddb and courierimapkeywords/ (":list" and update files).
 * Whoever can write the maildir (the old server, a user with shell
 * access, a torn write) chooses these bytes.
 *
 * Input: parts separated by "\n%%\n": dovecot-uidlist, courierimapuiddb,
 * courierimapkeywords/:list, then update files, each "<name>\n<content>"
 * (name: a message key such as "1700000001.M2P1.fuzz" or ".<t>.<key>";
 * names with '/' are skipped). A part that is absent leaves the file out.
 * Three messages are put in a maildir made with mkdtemp under $TMPDIR
 * (or the working directory); the folder is opened for writing (reading
 * Courier's keywords), a fourth message arrives and is synced (the UID
 * lists are updated), message 1 gets a keyword (written back for
 * Courier), and the folder is closed and opened again. Checks:
 *  - every keyword name is an IMAP atom; flag letters are known;
 *  - the messages are the four files, in ascending UID order below
 *    UIDNEXT;
 *  - no lock or temporary file is left behind;
 *  - a dovecot-uidlist that petrel rewrote still holds every line it had,
 *    and lists the fourth message with its UID; a rewritten
 *    courierimapuiddb lists every message with its UID.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/store/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NMSG 4
#define SEP "\n%%\n"

static char *tmp, *folder;

static const char *const msg_sub[NMSG] = { "cur", "cur", "new", "new" };
static const char *const msg_name[NMSG] = {
	"1700000000.M1P1.fuzz:2,S", "1700000001.M2P1.fuzz:2,",
	"1700000002.M3P1.fuzz", "1700000003.M4P1.fuzz",
};

/* Every file in dir, and in its subdirectories one level down. */
static void
rm_tree(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d != NULL && (de = readdir(d)) != NULL) {
		char *f;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		f = xasprintf("%s/%s", dir, de->d_name);
		if (de->d_type == DT_DIR) {
			if (depth > 0)
				rm_tree(f, depth - 1);
			if (strcmp(de->d_name, "cur") != 0 &&
			    strcmp(de->d_name, "new") != 0 &&
			    strcmp(de->d_name, "tmp") != 0)
				rmdir(f);
		} else {
			unlink(f);
		}
		free(f);
	}
	if (d != NULL)
		closedir(d);
}

static void
cleanup(void)
{
	static const char *const subs[] = { "cur", "new", "tmp" };

	if (folder == NULL)
		return;
	rm_tree(folder, 1);
	for (size_t s = 0; s < 3; s++) {
		char *p = xasprintf("%s/%s", folder, subs[s]);

		rmdir(p);
		free(p);
	}
	rmdir(folder);
	rmdir(tmp);
}

static void
setup(void)
{
	const char *t = getenv("TMPDIR"), *error;

	log_set_level(LOG_LVL_ERROR);
	tmp = mkdtemp(xasprintf("%s/petrel-fuzz-legacy.XXXXXX",
	    t != NULL && *t != '\0' ? t : "."));
	if (tmp == NULL) {
		perror("mkdtemp");
		abort();
	}
	folder = xasprintf("%s/f", tmp);
	if (maildir_make(folder, &error) < 0) {
		fprintf(stderr, "maildir_make: %s\n", error);
		abort();
	}
	atexit(cleanup);
}

static void
put(const char *name, const void *p, size_t n)
{
	char *path = xasprintf("%s/%s", folder, name);
	FILE *fp = fopen(path, "wb");

	if (fp == NULL || (n > 0 && fwrite(p, 1, n, fp) != n) ||
	    fclose(fp) != 0) {
		perror(path);
		abort();
	}
	free(path);
}

/* An update file the input names: one the file system refuses ("..",
 * too long) is simply not there. */
static void
put_update(const char *name, const void *p, size_t n)
{
	char *path = xasprintf("%s/%s", folder, name);
	FILE *fp = fopen(path, "wb");

	if (fp != NULL) {
		if (n > 0)
			(void)fwrite(p, 1, n, fp);
		fclose(fp);
	}
	free(path);
}

static char *
slurp(const char *name, size_t *len_r)
{
	char *path = xasprintf("%s/%s", folder, name);
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	long size;

	free(path);
	*len_r = 0;
	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0 &&
	    fseek(fp, 0, SEEK_SET) == 0) {
		buf = xmalloc((size_t)size + 1);
		*len_r = fread(buf, 1, (size_t)size, fp);
		buf[*len_r] = '\0';
	}
	fclose(fp);
	return buf;
}

static bool
atom(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f ||
		    strchr("(){%*\"\\]", *s) != NULL)
			return false;
	return true;
}

static bool
exists(const char *name)
{
	char *p = xasprintf("%s/%s", folder, name);
	bool r = access(p, F_OK) == 0;

	free(p);
	return r;
}

static void
check(const struct mbox *mb, size_t want)
{
	size_t live = 0;

	for (int k = 0; k < 26; k++) {
		if (mb->keywords[k] != NULL && !atom(mb->keywords[k]))
			abort();
	}
	for (size_t i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);

		if (i > 0 && m->uid <= mbox_msg(mb, i - 1)->uid)
			abort();
		if (m->uid == 0 || m->uid >= mb->uidnext)
			abort();
		char fl[53];

		if (m->flagbits >> 52 != 0)
			abort();
		for (const char *f = mbox_msg_flags(m, fl); *f != '\0'; f++)
			if (strchr("DFPRST", *f) == NULL &&
			    (*f < 'a' || *f > 'z'))
				abort();
		live += !m->expunged;
	}
	if (live != want)
		abort();
	if (exists("dovecot-uidlist.lock") || exists("dovecot-keywords.lock"))
		abort();
}

/* "<uid> " then the key at a line start in text (after a header line). */
static bool
listed(const char *text, uint32_t uid, const char *sep, const char *name)
{
	size_t klen = strcspn(name, ":");
	char *want = xasprintf("\n%u%s%.*s\n", uid, sep, (int)klen, name);
	bool r = strstr(text, want) != NULL;

	free(want);
	return r;
}

/* The highest UID of a record line ("<uid> ... :<name>") in a list. */
static uint32_t
max_record(const char *text)
{
	const char *line = strchr(text, '\n');
	uint32_t max = 0;

	while (line != NULL) {
		const char *p = line + 1, *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		unsigned long long v = 0;
		const char *q = p;

		while (q < p + len && *q >= '0' && *q <= '9' && v <= UINT32_MAX)
			v = v * 10 + (unsigned long long)(*q++ - '0');
		if (q > p && v <= UINT32_MAX && q < p + len && *q == ' ' &&
		    memmem(q, len - (size_t)(q - p), " :", 2) != NULL &&
		    v > max)
			max = (uint32_t)v;
		line = nl;
	}
	return max;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *end = in + size, *sep;
	const char *part[3] = { NULL, NULL, NULL };
	size_t plen[3] = { 0, 0, 0 };
	char *before = NULL, *after, *path;
	size_t blen = 0, alen;
	struct mbox *mb = NULL;
	const char *error;
	int np = 0;
	char flags[8];

	if (folder == NULL)
		setup();
	rm_tree(folder, 1);
	for (int i = 0; i < NMSG - 1; i++) {
		path = xasprintf("%s/%s", msg_sub[i], msg_name[i]);
		put(path, "Subject: x\n\nbody\n", 17);
		free(path);
	}
	/* the three files, then the update files */
	while (in <= end && np < 3) {
		sep = memmem(in, (size_t)(end - in), SEP, strlen(SEP));
		part[np] = in;
		plen[np] = sep != NULL ? (size_t)(sep - in) : (size_t)(end - in);
		np++;
		in = sep != NULL ? sep + strlen(SEP) : end + 1;
	}
	if (part[0] != NULL && plen[0] > 0)
		put("dovecot-uidlist", part[0], plen[0]);
	if (part[1] != NULL && plen[1] > 0)
		put("courierimapuiddb", part[1], plen[1]);
	if (part[2] != NULL) {
		path = xasprintf("%s/courierimapkeywords", folder);
		mkdir(path, 0700);
		free(path);
		put("courierimapkeywords/:list", part[2], plen[2]);
	}
	while (part[2] != NULL && in < end) {
		const char *nl, *stop;
		char *name;

		sep = memmem(in, (size_t)(end - in), SEP, strlen(SEP));
		stop = sep != NULL ? sep : end;
		nl = memchr(in, '\n', (size_t)(stop - in));
		if (nl != NULL && nl > in && memchr(in, '/',
		    (size_t)(nl - in)) == NULL && memchr(in, '\0',
		    (size_t)(nl - in)) == NULL) {
			name = xasprintf("courierimapkeywords/%.*s",
			    (int)(nl - in), in);
			put_update(name, nl + 1, (size_t)(stop - nl - 1));
			free(name);
		}
		in = sep != NULL ? sep + strlen(SEP) : end;
	}
	before = slurp("dovecot-uidlist", &blen);

	if (mbox_open(folder, false, &mb, &error) < 0)
		goto out;
	check(mb, NMSG - 1);
	path = xasprintf("new/%s", msg_name[NMSG - 1]);
	put(path, "Subject: y\n\nbody\n", 17);
	free(path);
	if (mbox_sync(mb, NULL, &error) < 0)
		goto out;
	check(mb, NMSG);
	/* a keyword on message 1, written back for Courier */
	if (mb->n >= 2) {
		char letter = mbox_keyword_letter(mb, "fuzzkw", true);

		snprintf(flags, sizeof(flags), "S%c", letter);
		if (letter != 0)
			(void)mbox_set_flags(mb, 1, flags, &error);
	}
	(void)mbox_flush(mb, &error);
	check(mb, NMSG);
	/* a dovecot-uidlist of this folder's UIDVALIDITY that petrel
	 * rewrote keeps its lines and lists the new message */
	after = slurp("dovecot-uidlist", &alen);
	if (before != NULL && after != NULL &&
	    memchr(before, '\0', blen) == NULL &&
	    (alen != blen || memcmp(before, after, blen) != 0)) {
		const char *body = memchr(before, '\n', blen);
		const struct mbox_msg *last = mbox_msg(mb, mb->n - 1);

		if (body != NULL) {
			char *b = xstrndup(body + 1,
			    blen - (size_t)(body - before) - 1);

			if (strstr(after, b) == NULL)
				abort();
			free(b);
		}
		if (strncmp(after, "3 ", 2) != 0)
			abort();
		if (!last->expunged && max_record(before) < last->uid &&
		    !listed(after, last->uid, " :", last->name))
			abort();
	}
	free(after);
	after = slurp("courierimapuiddb", &alen);
	if (after != NULL && alen > 0 && part[1] != NULL &&
	    (alen != plen[1] || memcmp(after, part[1], alen) != 0)) {
		for (size_t i = 0; i < mb->n; i++) {
			if (!mbox_msg(mb, i)->expunged &&
			    !listed(after, mbox_msg(mb, i)->uid, " ",
			    mbox_msg(mb, i)->name))
				abort();
		}
	}
	free(after);
	mbox_close(&mb);
	if (mbox_open(folder, false, &mb, &error) == 0)
		check(mb, NMSG);
out:
	mbox_close(&mb);
	free(before);
	if (exists("tmp/") && folder != NULL) {
		DIR *d;
		struct dirent *de;

		path = xasprintf("%s/tmp", folder);
		d = opendir(path);
		free(path);
		while (d != NULL && (de = readdir(d)) != NULL) {
			if (de->d_name[0] != '.')
				abort();	/* a temporary file left */
		}
		if (d != NULL)
			closedir(d);
	}
	return 0;
}
