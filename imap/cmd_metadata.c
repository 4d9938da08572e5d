/*
 * cmd_metadata.c: GETMETADATA and SETMETADATA (RFC 5464 METADATA and
 * METADATA-SERVER). They run on job threads.
 *
 * A user's annotations, server ones (mailbox "") and those of every
 * mailbox, /private and /shared alike, are kept in one file beside the
 * folders, "petrel-metadata" in the maildir (its format:
 * lib/imap/metadata.h). A mailbox's entries are filed under its
 * MAILBOXID (RFC 8474), which lives in the folder's directory: they
 * follow the folder through RENAME with nothing to rewrite, and a
 * folder deleted and created again has a new id, so it never inherits
 * the old entries; DELETE removes them. RENAME INBOX copies INBOX's
 * entries to the new folder and INBOX keeps its own (RFC 5464 4.1).
 *
 * petrel has no shared folders and no ACLs, so /shared entries are
 * seen by the same user alone, exactly like /private ones (RFC 5464
 * 3.3 requires /shared support; both are stored apart by name).
 *
 * Every change is read-modify-write under an flock on
 * "petrel-metadata.lock" (two sessions of the user, in one worker or
 * two), written to a temporary file, synced, renamed over the file and
 * the directory synced; readers take the file as it is, whole. The
 * limits (lib/base/limits.h): IMAP_METADATA_VALUE_MAX a value ([METADATA
 * MAXSIZE n]), IMAP_METADATA_ENTRIES_MAX entries and
 * IMAP_METADATA_TOTAL_MAX octets of values a user ([METADATA TOOMANY]).
 * A SETMETADATA that fails changes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/imap-private.h"
#include "imap/imap-cmd.h"
#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/imap/metadata.h"

#define MD_FILE "petrel-metadata"
#define MD_LOCK "petrel-metadata.lock"

/* ---- the file ---- */

/* The user's annotations into st: 0 (none yet is an empty store), -1
 * logged. */
static int
md_load(const struct imap_session *s, struct md_store *st)
{
	char *path = xasprintf("%s/%s", s->maildir, MD_FILE), *data;
	struct stat sb;
	size_t len, skipped = 0;
	int fd, ret = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			ret = 0;
		else
			log_error_errno("%016llx: open %s", SID(&s->base), path);
		free(path);
		return ret;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
	    sb.st_size > IMAP_METADATA_FILE_MAX) {
		log_error("%016llx: %s: not a file, or over %d bytes",
		    SID(&s->base), path, IMAP_METADATA_FILE_MAX);
		goto out;
	}
	if (read_fd_all(fd, &data, &len, &sb) < 0) {
		log_error_errno("%016llx: read %s", SID(&s->base), path);
		goto out;
	}
	md_parse(st, data, len, &skipped);
	free(data);
	if (skipped > 0)
		log_warn("%016llx: %s: %zu damaged lines skipped",
		    SID(&s->base), path, skipped);
	ret = 0;
out:
	close(fd);
	free(path);
	return ret;
}

/* Write st as the user's file: temporary file, fsync, rename, fsync of
 * the directory. 0 ok, -1 logged. Called under the lock. */
static int
md_save(const struct imap_session *s, const struct md_store *st)
{
	char *path = xasprintf("%s/%s", s->maildir, MD_FILE);
	char *tmp = xasprintf("%s.tmp", path);
	const char *err;
	str_t text = STR_INIT;
	int fd, ret = -1;

	md_format(st, &text);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		log_error_errno("%016llx: open %s", SID(&s->base), tmp);
		goto out;
	}
	if (write_full(fd, text.data, text.len) < 0 || fsync(fd) < 0) {
		log_error_errno("%016llx: write %s", SID(&s->base), tmp);
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		log_error_errno("%016llx: rename %s", SID(&s->base), tmp);
		unlink(tmp);
		goto out;
	}
	if (fsync_dir(s->maildir, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		goto out;
	}
	ret = 0;
out:
	str_free(&text);
	free(tmp);
	free(path);
	return ret;
}

/* The lock for a change: its descriptor, -1 logged. */
static int
md_lock(const struct imap_session *s)
{
	char *path = xasprintf("%s/%s", s->maildir, MD_LOCK);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		log_error_errno("%016llx: open %s", SID(&s->base), path);
	} else if (flock(fd, LOCK_EX) < 0) {
		log_error_errno("%016llx: flock %s", SID(&s->base), path);
		close(fd);
		fd = -1;
	}
	free(path);
	return fd;
}

/* ---- mailboxes ---- */

/* The owner of a mailbox's entries (its MAILBOXID) into id, or
 * MD_SERVER for "". 0 ok, -1 with a NO set. */
static int
md_owner(struct imap_session *s, const char *name,
    char id[MBOX_OBJECTID_MAX + 1])
{
	const char *err;
	char *path;

	if (name[0] == '\0') {
		snprintf(id, MBOX_OBJECTID_MAX + 1, "%s", MD_SERVER);
		return 0;
	}
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return -1;
	if (!imap_is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return -1;
	}
	if (mbox_mailboxid(path, id, &err) < 0) {
		log_error("%016llx: %s", SID(&s->base), err);
		imap_no(s, "[SERVERBUG] Cannot read the mailbox");
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

/* Change the file under the lock: drop (to NULL) or copy from -> to.
 * Logged on failure. */
static void
md_owner_change(struct imap_session *s, const char *from, const char *to)
{
	struct md_store st = { 0 };
	size_t before;
	int fd = md_lock(s);

	if (fd < 0)
		return;
	if (md_load(s, &st) == 0) {
		before = st.n;
		if (to == NULL) {
			if (md_drop_owner(&st, from) > 0)
				md_save(s, &st);
		} else {
			md_copy_owner(&st, from, to);
			if (st.n != before)
				md_save(s, &st);
		}
	}
	md_free(&st);
	close(fd);
}

void
imap_metadata_forget(struct imap_session *s, const char *id)
{
	md_owner_change(s, id, NULL);
}

void
imap_metadata_copy(struct imap_session *s, const char *from, const char *to)
{
	md_owner_change(s, from, to);
}

/* ---- GETMETADATA ---- */

struct md_opts {
	uint64_t maxsize;	/* UINT64_MAX: none */
	size_t depth;		/* SIZE_MAX: infinity */
};

/* 0 ok, -1 with a BAD set. */
static int
md_parse_opts(struct imap_session *s, const struct imap_arg *list,
    struct md_opts *o)
{
	bool have_max = false, have_depth = false;

	if (list->nlist == 0) {
		imap_bad(s, "Empty GETMETADATA options");
		return -1;
	}
	for (size_t i = 0; i < list->nlist; i += 2) {
		const struct imap_arg *k = &list->list[i], *v;
		char *end;

		if (k->type != IMAP_ARG_ATOM || i + 1 == list->nlist ||
		    (v = &list->list[i + 1])->type != IMAP_ARG_ATOM) {
			imap_bad(s, "Invalid GETMETADATA option");
			return -1;
		}
		if (strcasecmp(k->str, "MAXSIZE") == 0 && !have_max) {
			have_max = true;
			errno = 0;
			if (v->str[0] < '0' || v->str[0] > '9' ||
			    (o->maxsize = strtoull(v->str, &end, 10),
			    *end != '\0') || errno != 0 ||
			    o->maxsize == UINT64_MAX) {
				imap_bad(s, "Invalid MAXSIZE");
				return -1;
			}
		} else if (strcasecmp(k->str, "DEPTH") == 0 && !have_depth) {
			have_depth = true;
			if (strcmp(v->str, "0") == 0)
				o->depth = 0;
			else if (strcmp(v->str, "1") == 0)
				o->depth = 1;
			else if (strcasecmp(v->str, "infinity") == 0)
				o->depth = SIZE_MAX;
			else {
				imap_bad(s, "DEPTH is 0, 1 or infinity");
				return -1;
			}
		} else {
			imap_bad(s, "Unknown or repeated GETMETADATA option");
			return -1;
		}
	}
	return 0;
}

/* The value as a METADATA response shows it: NIL, a string, or a
 * literal8 when it holds a NUL (RFC 5464 5: value = nstring /
 * literal8). */
static void
md_append_value(str_t *out, const char *v, size_t len)
{
	if (v == NULL) {
		str_append(out, "NIL");
	} else if (memchr(v, '\0', len) != NULL) {
		str_printf(out, "~{%zu}\r\n", len);
		str_append_n(out, v, len);
	} else {
		imap_append_string(out, v, len);
	}
}

static void
md_append_item(str_t *out, bool *first, const char *name, const char *v,
    size_t len)
{
	if (!*first)
		str_append_c(out, ' ');
	*first = false;
	imap_append_astring(out, name, strlen(name));
	str_append_c(out, ' ');
	md_append_value(out, v, len);
}

static int
entry_ptr_cmp(const void *a, const void *b)
{
	const struct md_entry *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

void
imap_cmd_getmetadata(struct imap_session *s, struct imap_cmd *c)
{
	struct md_opts o = { .maxsize = UINT64_MAX, .depth = 0 };
	const struct imap_arg *opts = NULL, *ents;
	const struct imap_arg *one;
	const char *name;
	char id[MBOX_OBJECTID_MAX + 1];
	struct md_store st = { 0 };
	struct imap_names want = { 0 };
	const struct md_entry **mine = NULL;
	bool *shown = NULL, first = true;
	size_t i = 0, nwant, nmine = 0;
	uint64_t longest = 0;
	str_t line = STR_INIT;

	/* RFC 5464 5: the options come before the mailbox; its examples
	 * put them after it: both are taken */
	if (c->nargs > 0 && c->args[0].type == IMAP_ARG_LIST)
		opts = &c->args[i++];
	if (i >= c->nargs || (name = imap_arg_astring(&c->args[i])) == NULL) {
		imap_bad(s, "GETMETADATA needs a mailbox name and entries");
		return;
	}
	i++;
	if (opts == NULL && i + 2 == c->nargs &&
	    c->args[i].type == IMAP_ARG_LIST)
		opts = &c->args[i++];
	if (i + 1 != c->nargs) {
		imap_bad(s, "GETMETADATA needs a mailbox name and entries");
		return;
	}
	ents = &c->args[i];
	if (opts != NULL && md_parse_opts(s, opts, &o) < 0)
		return;
	one = ents->type == IMAP_ARG_LIST ? ents->list : ents;
	nwant = ents->type == IMAP_ARG_LIST ? ents->nlist : 1;
	if (nwant == 0) {
		imap_bad(s, "GETMETADATA needs entries");
		return;
	}
	for (size_t k = 0; k < nwant; k++) {
		const char *e = imap_arg_astring(&one[k]);
		str_t canon = STR_INIT;

		if (e == NULL || !md_entry_valid(e, strlen(e),
		    IMAP_METADATA_NAME_MAX, true, &canon)) {
			imap_bad(s, "Invalid entry name");
			str_free(&canon);
			goto out;
		}
		imap_names_add(&want, str_c(&canon));
		str_free(&canon);
	}
	if (md_owner(s, name, id) < 0)
		goto out;
	if (md_load(s, &st) < 0) {
		imap_no(s, "[SERVERBUG] Cannot read the annotations");
		goto out;
	}
	/* this owner's entries by name, each shown once */
	mine = xcalloc(st.n + 1, sizeof(*mine));
	for (size_t k = 0; k < st.n; k++)
		if (strcmp(st.v[k].owner, id) == 0)
			mine[nmine++] = &st.v[k];
	if (nmine > 1)
		qsort(mine, nmine, sizeof(*mine), entry_ptr_cmp);
	shown = xcalloc(nmine + 1, sizeof(*shown));

	str_append(&line, "METADATA ");
	if (name[0] == '\0')
		str_append(&line, "\"\"");
	else
		imap_append_mailbox(s, &line, imap_is_inbox(name) ? "INBOX" :
		    name);
	str_append(&line, " (");
	for (size_t k = 0; k < want.n; k++) {
		const char *w = want.v[k];
		bool found = false;

		for (size_t j = 0; j < nmine; j++) {
			const struct md_entry *e = mine[j];

			if (!md_entry_under(e->name, w, o.depth))
				continue;
			if (strcmp(e->name, w) == 0)
				found = true;
			if (shown[j])
				continue;
			shown[j] = true;
			if (e->value_len > o.maxsize) {
				if (e->value_len > longest)
					longest = e->value_len;
				continue;
			}
			md_append_item(&line, &first, e->name, e->value,
			    e->value_len);
		}
		/* an entry asked for by name that has no value: NIL; not
		 * below a DEPTH (RFC 5464 4.2.2's example) nor for the bare
		 * "/private" and "/shared", which never hold one */
		if (!found && o.depth == 0 && strchr(w + 1, '/') != NULL) {
			bool dup = false;

			for (size_t j = 0; j < k; j++)
				dup = dup || strcmp(want.v[j], w) == 0;
			if (!dup)
				md_append_item(&line, &first, w, NULL, 0);
		}
	}
	str_append_c(&line, ')');
	if (!first) {
		/* not imap_untagged(): a literal8 may hold a NUL */
		str_append(&s->out, "* ");
		str_append_n(&s->out, line.data, line.len);
		str_append(&s->out, "\r\n");
	}
	if (longest > 0)
		imap_ok(s, "[METADATA LONGENTRIES %llu] Getmetadata completed.",
		    (unsigned long long)longest);
	else
		imap_ok(s, "Getmetadata completed.");
out:
	str_free(&line);
	free(shown);
	free(mine);
	md_free(&st);
	imap_names_free(&want);
}

/* ---- SETMETADATA ---- */

void
imap_cmd_setmetadata(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_arg *l;
	const char *name;
	char id[MBOX_OBJECTID_MAX + 1];
	struct md_store st = { 0 };
	struct imap_names names = { 0 };
	size_t n0, b0, n1, b1;
	int fd = -1;

	if (c->nargs != 2 || (name = imap_arg_astring(&c->args[0])) == NULL ||
	    c->args[1].type != IMAP_ARG_LIST) {
		imap_bad(s, "SETMETADATA needs a mailbox name and a list");
		return;
	}
	l = &c->args[1];
	if (l->nlist == 0 || l->nlist % 2 != 0) {
		imap_bad(s, "SETMETADATA needs entry and value pairs");
		return;
	}
	/* everything is checked before anything changes */
	for (size_t k = 0; k < l->nlist; k += 2) {
		const char *e = imap_arg_astring(&l->list[k]);
		const struct imap_arg *v = &l->list[k + 1];
		str_t canon = STR_INIT;

		if (e == NULL || !md_entry_valid(e, strlen(e),
		    IMAP_METADATA_NAME_MAX, false, &canon)) {
			imap_bad(s, "Invalid entry name");
			str_free(&canon);
			goto out;
		}
		imap_names_add(&names, str_c(&canon));
		str_free(&canon);
		if (v->type == IMAP_ARG_ATOM && strcasecmp(v->str, "NIL") == 0)
			continue;
		if (v->type != IMAP_ARG_STRING) {
			imap_bad(s, "A value is a string, a literal or NIL");
			goto out;
		}
	}
	for (size_t k = 0; k < l->nlist; k += 2) {
		const struct imap_arg *v = &l->list[k + 1];

		if (v->type == IMAP_ARG_STRING &&
		    v->len > IMAP_METADATA_VALUE_MAX) {
			imap_no(s, "[METADATA MAXSIZE %d] Value too large",
			    IMAP_METADATA_VALUE_MAX);
			goto out;
		}
		if (name[0] == '\0' &&
		    strcmp(names.v[k / 2], "/shared/admin") == 0) {
			/* RFC 5464 3.2.1.1: read-only */
			imap_no(s, "[NOPERM] /shared/admin is read-only");
			goto out;
		}
	}
	if (md_owner(s, name, id) < 0)
		goto out;
	if ((fd = md_lock(s)) < 0 || md_load(s, &st) < 0) {
		imap_no(s, "[SERVERBUG] Cannot read the annotations");
		goto out;
	}
	md_usage(&st, &n0, &b0);
	for (size_t k = 0; k < l->nlist; k += 2) {
		const struct imap_arg *v = &l->list[k + 1];

		if (v->type == IMAP_ARG_STRING)
			md_set(&st, id, names.v[k / 2], v->str, v->len);
		else
			md_set(&st, id, names.v[k / 2], NULL, 0);
	}
	md_usage(&st, &n1, &b1);
	/* over a limit: refused if it grew that way (removing entries
	 * is always allowed) */
	if ((n1 > IMAP_METADATA_ENTRIES_MAX && n1 > n0) ||
	    (b1 > IMAP_METADATA_TOTAL_MAX && b1 > b0)) {
		imap_no(s, "[METADATA TOOMANY] Too many annotations");
		goto out;
	}
	md_sort(&st);
	if (md_save(s, &st) < 0) {
		imap_no(s, "[SERVERBUG] Cannot keep the annotations");
		goto out;
	}
	imap_ok(s, "Setmetadata completed.");
out:
	if (fd >= 0)
		close(fd);
	md_free(&st);
	imap_names_free(&names);
}
