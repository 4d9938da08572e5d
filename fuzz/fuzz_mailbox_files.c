/*
 * fuzz_mailbox_files.c: a folder opened over hostile or damaged files of
 * its own (lib/store/mailbox.c, mbox_index.c, mbox_cache.c,
 * mbox_expunged.c): dovecot-keywords as the input gives it, and
 * petrel-index, petrel-cache and petrel-expunged as petrel wrote them,
 * then corrupted by the input. Whoever
 * can write the maildir (another server sharing it, a user with shell
 * access, a torn write) chooses these bytes.
 *
 * Input: a mode byte (bit 0: open read-only; bit 1: store the values),
 * the keywords file up to "\n%%\n", then patches of 4 octets each: a
 * 16-bit offset, an octet to XOR there, an octet choosing the file
 * (odd: petrel-index, else bit 1: petrel-expunged, else petrel-cache;
 * an offset past the end goes round). Three messages are put in a maildir made with mkdtemp under
 * $TMPDIR (or the working directory); with bit 1 the folder is opened
 * and an ENVELOPE, BODYSTRUCTURE and BODY value stored per message, and
 * closed; the patches are applied; the folder is opened again. Checks:
 *  - every keyword name is an IMAP atom; every flag letter is a system
 *    flag's or a lower-case keyword letter;
 *  - the messages are the three files, in ascending UID order below
 *    UIDNEXT;
 *  - a cached value is the one stored for that file, or none: never
 *    another message's, never garbage, however the files were damaged;
 *  - the UIDs petrel-expunged names (RFC 7162 VANISHED) ascend, below
 *    UIDNEXT; every modseq is at most the folder's highest.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/maildir/maildir.h"
#include "lib/store/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NMSG 3

static char *tmp, *folder;

static const char *const msg_sub[NMSG] = { "cur", "cur", "new" };
static const char *const msg_name[NMSG] = {
	"1700000000.M1P1.fuzz:2,S", "1700000001.M2P1.fuzz:2,a",
	"1700000002.M3P1.fuzz",
};
static const char *const msg_text[NMSG] = {
	"Subject: one\n\nbody\n", "Subject: two\r\n\r\nb\r\n", "x",
};
/* Every file in dir (not the subdirectories). */
static void
rm_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d != NULL && (de = readdir(d)) != NULL) {
		char *f;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 || de->d_type == DT_DIR)
			continue;
		f = xasprintf("%s/%s", dir, de->d_name);
		unlink(f);
		free(f);
	}
	if (d != NULL)
		closedir(d);
}

static void
rm_folder_files(void)
{
	static const char *const subs[] = { "cur", "new", "tmp" };

	rm_files(folder);
	for (size_t s = 0; s < 3; s++) {
		char *p = xasprintf("%s/%s", folder, subs[s]);

		rm_files(p);
		free(p);
	}
}

static void
cleanup(void)
{
	static const char *const subs[] = { "cur", "new", "tmp" };

	if (folder == NULL)
		return;
	rm_folder_files();
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

	tmp = mkdtemp(xasprintf("%s/petrel-fuzz-mailbox.XXXXXX",
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

static void
patch(const char *name, size_t off, uint8_t x)
{
	char *path = xasprintf("%s/%s", folder, name);
	FILE *fp = fopen(path, "r+b");
	long size;
	int c;

	free(path);
	if (fp == NULL)
		return;
	if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) > 0) {
		off %= (size_t)size;
		fseek(fp, (long)off, SEEK_SET);
		c = fgetc(fp);
		fseek(fp, (long)off, SEEK_SET);
		fputc(c ^ x, fp);
	}
	fclose(fp);
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

/* Which of our files is this message? -1 if none. */
static int
which(const char *name)
{
	size_t k = strcspn(name, ":");

	for (int i = 0; i < NMSG; i++)
		if (strncmp(msg_name[i], name, k) == 0 &&
		    strcspn(msg_name[i], ":") == k)
			return i;
	return -1;
}

static char *
value(int msg, int kind)
{
	return xasprintf("(\"value %d of kind %d\" NIL)", msg, kind);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 1, *sep, *error;
	size_t n, klen;
	struct mbox *mb = NULL;
	bool stored;

	if (size == 0)
		return 0;
	if (folder == NULL)
		setup();
	n = size - 1;
	rm_folder_files();
	for (int i = 0; i < NMSG; i++) {
		char *p = xasprintf("%s/%s/%s", folder, msg_sub[i],
		    msg_name[i]);
		FILE *fp = fopen(p, "wb");

		if (fp == NULL || fputs(msg_text[i], fp) < 0 ||
		    fclose(fp) != 0)
			abort();
		free(p);
	}
	sep = memmem(in, n, "\n%%\n", 4);
	klen = sep != NULL ? (size_t)(sep - in) + 1 : n;
	put("dovecot-keywords", in, klen);
	stored = (data[0] & 2) != 0;
	if (stored) {
		if (mbox_open(folder, false, &mb, &error) < 0)
			abort();
		for (size_t i = 0; i < mb->n; i++) {
			int w = which(mbox_msg(mb, i)->name);

			for (int k = 0; k < MBOX_CACHE_KINDS; k++) {
				char *v = value(w, k);

				mbox_cache_put(mb, i, k, v);
				free(v);
			}
		}
		{
			/* expunges on record, for the patches to damage */
			char *x = xasprintf("petrel-expunged 1 %u 1\n"
			    "2 1\n3 2:3,1\n", mb->uidvalidity);

			put("petrel-expunged", x, strlen(x));
			free(x);
		}
		mbox_close(&mb);
	}
	if (sep != NULL) {
		const uint8_t *p = (const uint8_t *)sep + 4,
		    *end = data + size;

		for (; end - p >= 4; p += 4)
			patch(p[3] & 1 ? "petrel-index" : p[3] & 2 ?
			    "petrel-expunged" : "petrel-cache",
			    (size_t)(p[0] << 8 | p[1]), p[2]);
	}

	if (mbox_open(folder, data[0] & 1, &mb, &error) < 0)
		return 0;	/* a folder it cannot use is refused */
	for (size_t k = 0; k < 26; k++)
		if (mb->keywords[k] != NULL && !atom(mb->keywords[k]))
			abort();
	if (mb->n != NMSG)
		abort();
	for (uint64_t since = 0; since < 3; since++) {
		uint32_t *uids;
		size_t nv;
		bool exact;

		mbox_vanished(mb, since, &uids, &nv, &exact);
		for (size_t k = 0; k < nv; k++)
			if (!exact || uids[k] == 0 || uids[k] >= mb->uidnext ||
			    (k > 0 && uids[k] <= uids[k - 1]))
				abort();
		free(uids);
	}
	for (size_t i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = mbox_msg(mb, i);
		int w = which(m->name);

		if (m->modseq == 0 || m->modseq > mbox_highestmodseq(mb))
			abort();
		if (w < 0 || m->uid == 0 || m->uid >= mb->uidnext ||
		    (i > 0 && m->uid <= mbox_msg(mb, i - 1)->uid))
			abort();
		char fl[53];

		if (m->flagbits >> 52 != 0)
			abort();
		for (const char *f = mbox_msg_flags(m, fl); *f != '\0'; f++)
			if (strchr("DFPRST", *f) == NULL &&
			    (*f < 'a' || *f > 'z'))
				abort();
		for (int k = 0; k < MBOX_CACHE_KINDS; k++) {
			char *got = mbox_cache_get(mb, i, k), *want;

			if (got == NULL)
				continue;
			want = value(w, k);
			if (!stored || strcmp(got, want) != 0)
				abort();
			free(want);
			free(got);
		}
	}
	mbox_close(&mb);
	return 0;
}
