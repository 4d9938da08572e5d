/*
 * fuzz_mbox_index.c: the files a folder's index is read from
 * (lib/store/mbox_index.c): petrel-index, and when it is corrupt the UIDs
 * salvaged from it or imported from dovecot-uidlist / courierimapuiddb.
 * Whoever can write the maildir (a user with shell access, another
 * server sharing it, a torn write) chooses these bytes.
 *
 * The first byte picks what the rest is: bit 0 set, a petrel-index whose
 * first line is given without its body length and checksum (the target
 * appends both, so the entries are parsed); bits 1-2: 0 the rest as
 * petrel-index as is, 1 as dovecot-uidlist, 2 as courierimapuiddb, 3
 * split at "\n%%uidlist\n" into a petrel-index and a dovecot-uidlist.
 * The files go to a mkdtemp directory under $TMPDIR (or the working
 * directory). Checks:
 *  - the header alone (STATUS) parses exactly when the full read's
 *    header does, to the same values;
 *  - an index read OK has `messages` entries, UIDs ascending below
 *    uidnext, names that are plain file names;
 *  - imported UIDs are 1..uidnext-1, keys unique, sorted, plain names
 *    without ':', and mbox_import_find finds each.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/store/mbox_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir;

static void
cleanup(void)
{
	static const char *const names[] = {
		MBOX_INDEX_NAME, MBOX_DOVECOT_UIDLIST, MBOX_COURIER_UIDDB,
	};

	if (dir == NULL)
		return;
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", dir, names[i]);

		unlink(p);
		free(p);
	}
	rmdir(dir);
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char *t = xasprintf("%s/petrel-fuzz-index.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : ".");

	dir = mkdtemp(t);
	if (dir == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(cleanup);
}

static void
put(const char *name, const void *p, size_t n)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *fp;

	if (p == NULL) {
		unlink(path);
		free(path);
		return;
	}
	fp = fopen(path, "wb");
	if (fp == NULL || (n > 0 && fwrite(p, 1, n, fp) != n) ||
	    fclose(fp) != 0) {
		perror(path);
		abort();
	}
	free(path);
}

static bool
plain_name(const char *p, size_t len)
{
	if (len == 0 || len > NAME_MAX || p[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '/')
			return false;
	return true;
}

/* petrel-index from a first line without "<body_len> <hash>" */
static char *
with_checksum(const char *in, size_t n, size_t *len_r)
{
	const char *nl = memchr(in, '\n', n);
	size_t hlen = nl != NULL ? (size_t)(nl - in) : n;
	const char *body = nl != NULL ? nl + 1 : in + n;
	size_t blen = (size_t)(in + n - body);
	str_t s = STR_INIT;
	uint64_t h;

	str_append_n(&s, in, hlen);
	str_printf(&s, "%zu ", blen);
	h = mbox_hash64(mbox_hash64(0, s.data, s.len), body, blen);
	str_printf(&s, "%016llx\n", (unsigned long long)h);
	str_append_n(&s, body, blen);
	*len_r = s.len;
	return str_steal(&s);
}

static void
check_index(struct mbox_index *idx, int r)
{
	struct mbox_index head;
	const char *error;
	int hr;

	hr = mbox_index_read(dir, true, NULL, &head, &error);
	if (hr < 0)
		abort();
	if ((hr == MBOX_INDEX_OK) != idx->header_ok ||
	    (r == MBOX_INDEX_MISSING) != (hr == MBOX_INDEX_MISSING))
		abort();
	if (idx->header_ok && (head.uidvalidity != idx->uidvalidity ||
	    head.uidnext != idx->uidnext || head.messages != idx->messages ||
	    head.unseen != idx->unseen || head.recent != idx->recent ||
	    head.cache_id != idx->cache_id ||
	    head.cache_dead != idx->cache_dead ||
	    head.cur_mtime.tv_sec != idx->cur_mtime.tv_sec ||
	    head.cur_mtime.tv_nsec != idx->cur_mtime.tv_nsec ||
	    head.new_mtime.tv_nsec != idx->new_mtime.tv_nsec ||
	    idx->uidvalidity == 0 || idx->uidnext == 0))
		abort();
	mbox_index_free(&head);
	if (r != MBOX_INDEX_OK) {
		if (idx->msgs != NULL || idx->n != 0)
			abort();
		return;
	}
	if (idx->n != idx->messages)
		abort();
	for (size_t i = 0; i < idx->n; i++) {
		const struct mbox_msg *m = &idx->msgs[i];

		if (m->uid == 0 || m->uid >= idx->uidnext ||
		    (i > 0 && m->uid <= idx->msgs[i - 1].uid) ||
		    !plain_name(m->name, strlen(m->name)) ||
		    m->name < idx->buf || m->name >= idx->buf + idx->buflen)
			abort();
	}
}

static void
check_import(struct mbox_import *imp)
{
	if (imp->uidvalidity == 0) {
		if (imp->n != 0)
			abort();
		return;
	}
	if (imp->uidnext == 0)
		abort();
	for (size_t i = 0; i < imp->n; i++) {
		struct mbox_import_ent *e = &imp->ents[i];

		if (e->uid == 0 || e->uid == UINT32_MAX ||
		    e->uid >= imp->uidnext ||
		    !plain_name(e->key, e->key_len) ||
		    memchr(e->key, ':', e->key_len) != NULL)
			abort();
		if (i > 0) {
			const struct mbox_import_ent *a = &imp->ents[i - 1];
			size_t n = a->key_len < e->key_len ? a->key_len :
			    e->key_len;
			int c = memcmp(a->key, e->key, n);

			if (c > 0 || (c == 0 && a->key_len >= e->key_len))
				abort();
		}
		if (mbox_import_find(imp, e->key, e->key_len) != e)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 1, *index = NULL,
	    *uidlist = NULL, *courier = NULL;
	size_t n, ilen = 0, ulen = 0, clen = 0;
	char *fixed = NULL;
	struct mbox_index idx;
	struct mbox_import imp;
	const char *error;
	int r;

	if (size == 0)
		return 0;
	if (dir == NULL)
		setup();
	n = size - 1;
	switch (data[0] >> 1 & 3) {
	case 0:
		index = in;
		ilen = n;
		break;
	case 1:
		uidlist = in;
		ulen = n;
		break;
	case 2:
		courier = in;
		clen = n;
		break;
	case 3: {
		const char *sep = memmem(in, n, "\n%%uidlist\n", 11);

		index = in;
		ilen = sep != NULL ? (size_t)(sep - in) + 1 : n;
		if (sep != NULL) {
			uidlist = sep + 11;
			ulen = (size_t)(in + n - uidlist);
		}
		break;
	}
	}
	if (index != NULL && (data[0] & 1))
		index = fixed = with_checksum(index, ilen, &ilen);
	put(MBOX_INDEX_NAME, index, ilen);
	put(MBOX_DOVECOT_UIDLIST, uidlist, ulen);
	put(MBOX_COURIER_UIDDB, courier, clen);
	free(fixed);

	r = mbox_index_read(dir, false, NULL, &idx, &error);
	if (r < 0)
		abort();
	check_index(&idx, r);
	mbox_import_load(dir, r == MBOX_INDEX_OK ? NULL : &idx, &imp);
	check_import(&imp);
	mbox_import_free(&imp);
	mbox_index_free(&idx);
	return 0;
}
