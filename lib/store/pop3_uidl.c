/*
 * pop3_uidl.c: the POP3 UIDLs (RFC 1939 7) of a maildrop as the server
 * it came from answers them, so that leave-on-server clients fetch
 * nothing twice when a host moves to petrel or back (see maildrop.h and
 * docs/migration.md, "POP3 UIDLs").
 *
 * Courier pop3d (courier-imap, imap/pop3dserver.C) keeps its own list,
 * "courierpop3dsizelist" in the maildir:
 *   /<version> <nextuid> <uidv>        header (version 2 and 3; version 1
 *                                      may lack <uidv>; version 0 files
 *                                      have no header)
 *   <file> <size> <n>:<uidv>:<utf8>    version 3 (2: "<n>:<uidv>",
 *                                      1: "<n>", 0: "<file> <size>")
 * <file> is the base name; it matches a message by the part before ':'.
 * The UIDL is "UID<n>-<uidv>", "UID<n>" when <uidv> is 0, and for n = 0
 * the name before ':' with bytes outside 0x21..0x7e and ' " + written
 * as "+XX". Messages it does not list get <nextuid>, <nextuid> + 1, ...
 * in delivery order with the header's <uidv> (the current time when the
 * list is made), and the list is rewritten, without the messages gone.
 *
 * Dovecot answers the "P<uidl>" field of the message's dovecot-uidlist
 * line when it has one (Dovecot's POP3 migration keeps UIDLs there),
 * else its pop3_uidl_format, by default "%08Xu%08Xv": the IMAP UID and
 * UIDVALIDITY in 8 hex digits each, lower case as Dovecot 2.3 writes
 * them. petrel's UIDs and UIDVALIDITY are those of dovecot-uidlist
 * (lib/store/mailbox.h).
 *
 * Trust: the files belong to the mailbox and are read as data: lines
 * are bounded, numbers must parse completely, entries that do not are
 * skipped, a header that does not parse means no list. Nothing is
 * written through a symbolic link.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "lib/maildir/maildir.h"
#include "lib/store/maildrop.h"

#define COURIER_LIST	"courierpop3dsizelist"
#define COURIER_TMP	"courierpop3dsizelist.petrel-tmp"
#define DOVECOT_LIST	"dovecot-uidlist"
#define COURIER_UIDDB	"courierimapuiddb"
/* Larger lists are garbage, not a maildrop (about 100 bytes a message). */
#define UIDL_FILE_MAX	((off_t)1 << 30)
/* Courier reads lines into 2048 bytes; longer ones are no entry. */
#define UIDL_LINE_MAX	4096

int
store_uidl_format_parse(const char *name, enum store_uidl_format *fmt_r)
{
	static const char *const names[] = {
		[STORE_UIDL_FILENAME] = "filename",
		[STORE_UIDL_COURIER] = "courier",
		[STORE_UIDL_DOVECOT] = "dovecot",
		[STORE_UIDL_AUTO] = "auto",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			*fmt_r = (enum store_uidl_format)i;
			return 0;
		}
	}
	return -1;
}

/* The part of a file name before ':' (the Maildir info). */
static size_t
key_len_of(const char *name, size_t len)
{
	const char *colon = memchr(name, ':', len);

	return colon != NULL ? (size_t)(colon - name) : len;
}

static bool
file_exists(const char *maildir, const char *name)
{
	char *path = xasprintf("%s/%s", maildir, name);
	struct stat st;
	bool r = lstat(path, &st) == 0 && S_ISREG(st.st_mode);

	free(path);
	return r;
}

/* The whole file maildir/name: 1 read (*buf_r malloc'd), 0 missing or
 * not a regular file, -1 error (logged). */
static int
read_list(const char *maildir, const char *name, char **buf_r,
    size_t *len_r)
{
	char *path = xasprintf("%s/%s", maildir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	int r = 1;

	*buf_r = NULL;
	if (fd < 0) {
		if (errno != ENOENT && errno != ELOOP) {
			log_warn("open %s: %s", path, strerror(errno));
			r = -1;
		} else {
			r = 0;
		}
	} else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > UIDL_FILE_MAX) {
		log_warn("%s: not a readable list", path);
		r = -1;
	} else if (read_fd_all(fd, buf_r, len_r, &st) < 0) {
		log_warn("read %s: %s", path, strerror(errno));
		r = -1;
	}
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

/* Next line of [*pp, end) without its '\n' (NUL-terminated in place). */
static char *
next_line(char **pp, char *end)
{
	char *p = *pp, *nl;

	if (p >= end)
		return NULL;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL)
		nl = end;
	*nl = '\0';
	*pp = nl < end ? nl + 1 : end;
	return p;
}

/* A decimal unsigned long at *pp (no sign, no overflow). */
static bool
get_ulong(const char **pp, unsigned long *v_r)
{
	const char *p = *pp;
	unsigned long v = 0;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (~0UL - 9) / 10)
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	*pp = p;
	*v_r = v;
	return true;
}

/* One entry of a list (Courier's or Dovecot's) by key. */
struct uidl_ent {
	const char *file;	/* base name (points into the file buffer) */
	size_t key_len;
	unsigned long size, n, uidv, utf8;
	const char *uidl;	/* Dovecot: the P field (NUL-terminated) */
	size_t line;		/* order in the file */
	bool used;
};

struct uidl_list {
	char *buf;
	struct uidl_ent *ents;
	size_t n, cap;
	int version;		/* Courier: -1 no usable list */
	unsigned long nextuid, uidv;
};

static void
list_add(struct uidl_list *l, const struct uidl_ent *e)
{
	if (l->n == l->cap) {
		l->cap = l->cap < 64 ? 64 : l->cap * 2;
		l->ents = xrealloc(l->ents, l->cap * sizeof(*l->ents));
	}
	l->ents[l->n] = *e;
	l->ents[l->n].line = l->n;
	l->n++;
}

static int
ent_cmp(const void *a, const void *b)
{
	const struct uidl_ent *x = a, *y = b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->file, y->file, n);

	if (c != 0)
		return c;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	/* equal keys: the first line first */
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Sort by key (a message's first entry first). */
static void
list_sort(struct uidl_list *l)
{
	if (l->n > 1)
		qsort(l->ents, l->n, sizeof(*l->ents), ent_cmp);
}

/* The first unused entry for a file name's key, or NULL. */
static struct uidl_ent *
list_find(struct uidl_list *l, const char *name)
{
	size_t klen = key_len_of(name, strlen(name));
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct uidl_ent *e = &l->ents[mid];
		size_t n = e->key_len < klen ? e->key_len : klen;
		int c = memcmp(name, e->file, n);

		if (c == 0 && e->key_len != klen)
			c = klen < e->key_len ? -1 : 1;
		if (c <= 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo < l->n && l->ents[lo].key_len == klen &&
	    memcmp(l->ents[lo].file, name, klen) == 0 && !l->ents[lo].used)
		return &l->ents[lo];
	return NULL;
}

static void
list_free(struct uidl_list *l)
{
	free(l->buf);
	free(l->ents);
	memset(l, 0, sizeof(*l));
}

/* ---- Courier ---- */

/* "/<version> <nextuid> [<uidv>]" */
static bool
courier_header(const char *line, struct uidl_list *l)
{
	const char *p = line + 1;
	unsigned long v = 0;

	if (line[0] != '/' || !get_ulong(&p, &v) || v < 1 || v > 3 ||
	    *p++ != ' ' || !get_ulong(&p, &l->nextuid))
		return false;
	l->version = (int)v;
	if (*p == ' ') {
		p++;
		if (!get_ulong(&p, &l->uidv))
			return false;
	}
	return *p == '\0';
}

/* "<file> <size> <n>[:<uidv>[:<utf8>]]" ("<file> <size>" in version
 * 0), split at the last spaces as Courier does. */
static bool
courier_entry(char *line, int version, struct uidl_ent *e)
{
	char *sp1 = strrchr(line, ' '), *sp2 = NULL;
	const char *p, *num, *slash;

	memset(e, 0, sizeof(*e));
	if (sp1 == NULL)
		return false;
	if (version == 0) {
		num = sp1 + 1;
		*sp1 = '\0';
	} else {
		*sp1 = '\0';
		sp2 = strrchr(line, ' ');
		*sp1 = ' ';
		if (sp2 == NULL)
			return false;
		num = sp2 + 1;
		*sp2 = '\0';
	}
	p = num;
	if (!get_ulong(&p, &e->size))
		return false;
	if (version > 0) {
		if (*p++ != ' ' || !get_ulong(&p, &e->n))
			return false;
		/* versions 2 and 3 carry <uidv> (Courier skips entries
		 * without it) */
		if (version >= 2 && *p != ':')
			return false;
		if (*p == ':') {
			p++;
			if (!get_ulong(&p, &e->uidv))
				return false;
		}
		if (version == 3 && *p == ':') {
			p++;
			if (!get_ulong(&p, &e->utf8))
				return false;
		}
	}
	if (*p != '\0')
		return false;
	slash = strrchr(line, '/');
	e->file = slash != NULL ? slash + 1 : line;
	e->key_len = key_len_of(e->file, strlen(e->file));
	return e->key_len > 0;
}

/* Read courierpop3dsizelist; l->version -1 when there is none that
 * Courier would read (a new one is then started). */
static void
courier_read(const char *maildir, struct uidl_list *l)
{
	char *p, *end, *line;
	size_t len;

	memset(l, 0, sizeof(*l));
	l->version = -1;
	if (read_list(maildir, COURIER_LIST, &l->buf, &len) <= 0)
		return;
	p = l->buf;
	end = l->buf + len;
	if (len > 0 && l->buf[0] != '/') {
		/* version 0: no header, entries from the first line */
		l->version = 0;
		l->nextuid = 1;
	} else if ((line = next_line(&p, end)) == NULL ||
	    !courier_header(line, l)) {
		l->version = -1;
		return;
	}
	if (l->uidv == 0)
		l->uidv = (unsigned long)time(NULL);
	if (l->nextuid == 0)
		l->nextuid = 1;
	while ((line = next_line(&p, end)) != NULL) {
		struct uidl_ent e;

		if (strlen(line) > UIDL_LINE_MAX)
			continue;
		if (courier_entry(line, l->version, &e))
			list_add(l, &e);
	}
	list_sort(l);
}

/* Courier's UIDL of an entry, for the message named name. */
static char *
courier_uidl(const struct uidl_ent *e, const char *name)
{
	str_t s = STR_INIT;

	if (e->n != 0 && e->uidv != 0)
		return xasprintf("UID%lu-%lu", e->n, e->uidv);
	if (e->n != 0)
		return xasprintf("UID%lu", e->n);
	/* version 0: the name, escaped */
	for (const char *p = name; *p != '\0' && *p != ':'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x21 || c > 0x7e || c == '\'' || c == '"' || c == '+')
			str_printf(&s, "+%02X", c);
		else
			str_append_c(&s, (char)c);
	}
	return str_steal(&s);
}

/* Write the list for msgs[0..n) (each with its entry in ents[i]) via a
 * temporary file, fsync'd and renamed, and the directory fsync'd: the
 * numbers handed out must never be handed out again. 0 ok, -1 error
 * (logged). */
static int
courier_write(const char *maildir, int version, unsigned long nextuid,
    unsigned long uidv, const struct maildir_msg *msgs,
    const struct uidl_ent *ents, size_t n)
{
	char *tmp = xasprintf("%s/%s", maildir, COURIER_TMP);
	char *path = xasprintf("%s/%s", maildir, COURIER_LIST);
	const char *err;
	str_t s = STR_INIT;
	int fd, ret = -1;

	str_printf(&s, "/%d %lu %lu\n", version, nextuid, uidv);
	for (size_t i = 0; i < n; i++) {
		const struct uidl_ent *e = &ents[i];

		/* a name Courier could not read back is left out (it gets
		 * a new number next time) */
		if (strpbrk(msgs[i].name, " \n") != NULL)
			continue;
		str_printf(&s, "%s %lu %lu:%lu", msgs[i].name, e->size, e->n,
		    e->uidv);
		if (version == 3)
			str_printf(&s, ":%lu", e->utf8);
		str_append_c(&s, '\n');
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		log_error("open %s: %s", tmp, strerror(errno));
	} else if (write_full(fd, str_c(&s), s.len) < 0 || fsync(fd) < 0) {
		log_error("write %s: %s", tmp, strerror(errno));
	} else if (close(fd) < 0) {
		fd = -1;
		log_error("close %s: %s", tmp, strerror(errno));
	} else if ((fd = -1, rename(tmp, path) < 0)) {
		log_error("rename %s: %s", tmp, strerror(errno));
	} else if (fsync_dir(maildir, &err) < 0) {
		log_error("%s", err);
		ret = 0;	/* renamed: the numbers are in use now */
	} else {
		ret = 0;
	}
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		(void)unlink(tmp);
	str_free(&s);
	free(tmp);
	free(path);
	return ret;
}

/*
 * As Courier pop3d: listed messages get their UIDL from the list, the
 * others the next numbers; the list is rewritten when it changed. When
 * it cannot be written, the messages that would have needed a new
 * number are left out of the maildrop (Courier does the same): showing
 * them with a number that is not on disk could give that number to
 * another message later.
 */
static void
courier_assign(const char *maildir, struct maildir_msg *msgs, size_t *n)
{
	struct uidl_list l;
	struct uidl_ent *ents;
	bool changed, *fresh;
	unsigned long nextuid;
	size_t out = 0, used = 0;
	int version;

	courier_read(maildir, &l);
	if (l.version < 0 && *n == 0) {
		list_free(&l);
		return;		/* made with the first message */
	}
	if (l.version < 0) {
		l.nextuid = 1;
		l.uidv = (unsigned long)time(NULL);
	}
	/* what Courier 5 reads is kept (2, 3); older lists become 2,
	 * which both old Courier and Courier 5 read; a new one is 3 */
	version = l.version == 3 || l.version < 0 ? 3 : 2;
	changed = l.version != version;
	nextuid = l.nextuid;
	ents = xcalloc(*n + 1, sizeof(*ents));
	fresh = xcalloc(*n + 1, sizeof(*fresh));
	for (size_t i = 0; i < *n; i++) {
		struct uidl_ent *e = list_find(&l, msgs[i].name);

		if (e != NULL) {
			e->used = true;
			used++;
			ents[i] = *e;
		} else {
			ents[i].size = (unsigned long)msgs[i].vsize;
			ents[i].n = nextuid++;
			ents[i].uidv = l.uidv;
			fresh[i] = true;
			changed = true;
		}
		msgs[i].uidl = courier_uidl(&ents[i], msgs[i].name);
	}
	if (used < l.n)
		changed = true;	/* messages gone */
	if (changed && courier_write(maildir, version, nextuid, l.uidv, msgs,
	    ents, *n) < 0) {
		log_error("%s: %s not written: new messages are not shown "
		    "until it can be", maildir, COURIER_LIST);
		for (size_t i = 0; i < *n; i++) {
			if (fresh[i]) {
				free(msgs[i].name);
				free(msgs[i].uidl);
				continue;
			}
			msgs[out++] = msgs[i];
		}
		*n = out;
	}
	free(fresh);
	free(ents);
	list_free(&l);
}

/* ---- Dovecot ---- */

/* The P fields of dovecot-uidlist (version 3: "<uid> [<ext> ...]
 * :<file>"); an empty list without one. */
static void
dovecot_read(const char *maildir, struct uidl_list *l)
{
	char *p, *end, *line;
	size_t len;

	memset(l, 0, sizeof(*l));
	if (read_list(maildir, DOVECOT_LIST, &l->buf, &len) <= 0)
		return;
	p = l->buf;
	end = l->buf + len;
	line = next_line(&p, end);
	if (line == NULL || strncmp(line, "3 ", 2) != 0)
		return;
	while ((line = next_line(&p, end)) != NULL) {
		char *file = strstr(line, " :"), *q, *tok;
		struct uidl_ent e;

		if (file == NULL || strlen(line) > UIDL_LINE_MAX)
			continue;
		*file = '\0';
		file += 2;
		memset(&e, 0, sizeof(e));
		/* the fields after the uid */
		q = line + strcspn(line, " ");
		while (*q == ' ') {
			tok = ++q;
			q += strcspn(q, " ");
			if (*tok == 'P' && q - tok > 1 && q - tok <= 71) {
				if (*q != '\0')
					*q++ = '\0';
				e.uidl = tok + 1;
				break;
			}
		}
		if (e.uidl == NULL)
			continue;
		e.file = file;
		e.key_len = key_len_of(file, strlen(file));
		if (e.key_len > 0)
			list_add(l, &e);
	}
	list_sort(l);
}

static void
dovecot_assign(const char *maildir, uint32_t uidvalidity,
    struct maildir_msg *msgs, size_t n)
{
	struct uidl_list l;

	dovecot_read(maildir, &l);
	for (size_t i = 0; i < n; i++) {
		struct uidl_ent *e = l.n > 0 ? list_find(&l, msgs[i].name) :
		    NULL;

		if (e != NULL) {
			e->used = true;
			msgs[i].uidl = xstrdup(e->uidl);
		} else if (msgs[i].uid != 0) {
			msgs[i].uidl = xasprintf("%08x%08x", msgs[i].uid,
			    uidvalidity);
		}
		/* else: not in the index; the file-name form */
	}
	list_free(&l);
}

/* ---- the choice ---- */

enum store_uidl_format
store_uidl_format_of(const char *maildir, enum store_uidl_format fmt)
{
	if (fmt != STORE_UIDL_AUTO)
		return fmt;
	if (file_exists(maildir, COURIER_LIST))
		return STORE_UIDL_COURIER;
	if (file_exists(maildir, DOVECOT_LIST))
		return STORE_UIDL_DOVECOT;
	if (file_exists(maildir, COURIER_UIDDB))
		return STORE_UIDL_COURIER;
	return STORE_UIDL_FILENAME;
}

void
store_drop_uidls(const char *maildir, enum store_uidl_format fmt,
    uint32_t uidvalidity, struct maildir_msg *msgs, size_t *n)
{
	switch (store_uidl_format_of(maildir, fmt)) {
	case STORE_UIDL_COURIER:
		courier_assign(maildir, msgs, n);
		break;
	case STORE_UIDL_DOVECOT:
		dovecot_assign(maildir, uidvalidity, msgs, *n);
		break;
	case STORE_UIDL_FILENAME:
	case STORE_UIDL_AUTO:
		break;
	}
}
