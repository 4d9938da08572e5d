/*
 * cmd_append.c: APPEND, with APPENDUID (RFC 4315) and MULTIAPPEND (RFC
 * 3502: several messages in one command, all stored or none). It runs
 * on a job thread. A message larger than IMAP_APPEND_MEM_MAX was written
 * to a file in the user's tmp/ while it arrived (the spool, below); a
 * smaller one is in the command and written here. Either way the file
 * gets its date (INTERNALDATE) before it is linked into the folder's
 * cur/, and the files of one command are linked under the folder's
 * lock, so no session sees some of them without the others.
 *
 * CATENATE (RFC 4469): a message made of TEXT literals and URL parts,
 * IMAP URLs (RFC 5092) of the logged-in user's own messages, read
 * through a read-only handle of their folder and cut as FETCH would;
 * written into a file in tmp/ part by part, never more than
 * message_size_limit ([TOOBIG]); a URL that names nothing of this
 * user's is [BADURL]. The URL is the client's: its mailbox goes through
 * the same name rules as SELECT, and URLAUTH is not taken.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/imap-private.h"
#include "imap/imap-cmd.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/str.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/mime/mime.h"

/* ---- the spools of large messages ---- */

void
imap_spool_begin(struct imap_session *s, uint64_t size)
{
	struct imap_spool *sp;

	if (s->nspools == IMAP_FRAMER_SPOOLS)	/* the framer refuses more */
		imap_spools_free(s);
	sp = xcalloc(1, sizeof(*sp));
	sp->size = size;
	sp->buf = xmalloc(IMAP_SPOOL_CHUNK);
	s->spools[s->nspools++] = sp;
}

struct imap_spool *
imap_spool_cur(const struct imap_session *s)
{
	return s->nspools > 0 ? s->spools[s->nspools - 1] : NULL;
}

/* The NO text for a message that could not be written (a full disk
 * too: the user's quota is checked before, docs/reliability.md). */
#define SAVE_FAILED "[SERVERBUG] Cannot save the message"

void
imap_spool_write(struct imap_session *s)
{
	struct imap_spool *sp = imap_spool_cur(s);
	const char *err;
	uint64_t before = 0;

	if (sp == NULL || sp->failed != NULL)
		return;
	if (sp->tmp == NULL) {
		/* the message's size is known: refuse it before writing
		 * anything when it cannot fit, with the command's earlier
		 * ones */
		for (size_t i = 0; i + 1 < s->nspools; i++)
			before += s->spools[i]->size;
		if (maildir_quota_check(s->maildir, &s->quota,
		    before + sp->size, &err) == 0) {
			sp->failed = "[OVERQUOTA] Quota exceeded";
			goto out;
		}
		if (maildir_tmp_open(s->maildir, &sp->tmp, &err) < 0) {
			log_error("%016llx: append: spool in %s: %s",
			    SID(&s->base), s->maildir, err);
			sp->failed = SAVE_FAILED;
			goto out;
		}
	}
	if (maildir_tmp_write_lf(sp->tmp, sp->buf, sp->len, &err) < 0) {
		log_error("%016llx: append: spool in %s: %s", SID(&s->base),
		    s->maildir, err);
		sp->failed = SAVE_FAILED;
		maildir_tmp_abort(&sp->tmp);
	}
out:
	sp->len = 0;
	if (sp->failed != NULL || sp->done) {
		/* nothing more will be written */
		free(sp->buf);
		sp->buf = NULL;
	}
}

void
imap_spools_free(struct imap_session *s)
{
	for (size_t i = 0; i < s->nspools; i++) {
		struct imap_spool *sp = s->spools[i];

		maildir_tmp_abort(&sp->tmp);
		free(sp->buf);
		free(sp);
		s->spools[i] = NULL;
	}
	s->nspools = 0;
}

/* ---- APPEND ---- */

void
imap_msg_scan(struct imap_msg_scan *sc, const char *p, size_t n)
{
	if (n > 0 && memchr(p, '\0', n) != NULL)
		sc->nul = true;
	for (const char *q = p; !sc->bare_lf &&
	    (q = memchr(q, '\n', n - (size_t)(q - p))) != NULL; q++)
		if ((q > p ? q[-1] : sc->last) != '\r')
			sc->bare_lf = true;
	if (n > 0)
		sc->last = p[n - 1];
}

/* One message of the command: [flags] [date-time] message, or
 * CATENATE (parts) (RFC 4469). */
struct append_msg {
	const struct imap_arg *msg, *flags;
	const struct imap_arg *cat;	/* CATENATE's list, or NULL (msg is
					   then NULL) */
	struct imap_spool *cat_sp[IMAP_FRAMER_SPOOLS];	/* the spools of
					   its TEXT parts, in order */
	size_t ncat_sp;
	long long date;			/* -1: now */
	struct imap_spool *sp;		/* its spool, or NULL */
	uint64_t size;
	char norm[MAILDIR_FLAGS_MAX + 1];
	struct maildir_tmp *tmp;
	char *path;			/* once linked into the folder */
};

/* CATENATE's list (RFC 4469 5): one or more "TEXT" literal and "URL"
 * astring parts; counts the spooled TEXT literals into a->ncat_sp. 0
 * ok, -1 invalid. */
static int
cat_parts(const struct imap_arg *list, struct append_msg *a)
{
	if (list->nlist == 0 || list->nlist % 2 != 0)
		return -1;
	a->ncat_sp = 0;
	for (size_t k = 0; k < list->nlist; k += 2) {
		const struct imap_arg *w = &list->list[k];
		const struct imap_arg *v = &list->list[k + 1];

		if (w->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(w->str, "TEXT") == 0) {
			if (v->type != IMAP_ARG_STRING || !v->literal)
				return -1;
			if (v->spooled)
				a->ncat_sp++;
		} else if (strcasecmp(w->str, "URL") == 0) {
			if (imap_arg_astring(v) == NULL || v->spooled)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Cut the arguments from c->args[first] on into messages: a date-time
 * is a quoted string, a message a literal (RFC 3501 9, RFC 3502 3).
 * Returns the count, or -1 with a BAD (or NO) set. */
static int
split_messages(struct imap_session *s, struct imap_cmd *c, size_t first,
    struct append_msg *m, size_t max)
{
	size_t i = first, n = 0, nsp = 0;

	while (i < c->nargs) {
		struct append_msg *a;

		if (n == max && max == 1) {
			imap_bad(s, "%s takes one message", c->name);
			return -1;
		}
		if (n == max) {
			imap_no(s, "[LIMIT] At most %zu messages in one APPEND",
			    max);
			return -1;
		}
		a = &m[n++];
		a->date = -1;
		if (c->args[i].type == IMAP_ARG_LIST)
			a->flags = &c->args[i++];
		if (i < c->nargs && c->args[i].type == IMAP_ARG_STRING &&
		    !c->args[i].literal) {
			if (imap_datetime_parse(c->args[i].str, &a->date) < 0) {
				imap_bad(s, "Invalid date-time");
				return -1;
			}
			i++;
		}
		if (i + 1 < c->nargs && c->args[i].type == IMAP_ARG_ATOM &&
		    strcasecmp(c->args[i].str, "CATENATE") == 0 &&
		    c->args[i + 1].type == IMAP_ARG_LIST &&
		    strcmp(c->name, "APPEND") == 0) {
			if (cat_parts(&c->args[i + 1], a) < 0) {
				imap_bad(s, "Invalid CATENATE parts");
				return -1;
			}
			for (size_t k = 0; k < a->ncat_sp; k++) {
				if (nsp == s->nspools ||
				    !s->spools[nsp]->done) {
					imap_bad(s, "Invalid %s arguments",
					    c->name);
					return -1;
				}
				a->cat_sp[k] = s->spools[nsp++];
			}
			a->cat = &c->args[i + 1];
			i += 2;
			continue;
		}
		if (i == c->nargs || c->args[i].type != IMAP_ARG_STRING ||
		    !c->args[i].literal) {
			imap_bad(s, "Invalid %s arguments", c->name);
			return -1;
		}
		a->msg = &c->args[i++];
		if (a->msg->spooled) {
			/* the framer spools message literals only, in order */
			if (nsp == s->nspools || !s->spools[nsp]->done) {
				imap_bad(s, "Invalid %s arguments", c->name);
				return -1;
			}
			a->sp = s->spools[nsp++];
		}
		a->size = a->sp != NULL ? a->sp->size : a->msg->len;
	}
	if (n == 0 || nsp != s->nspools) {
		imap_bad(s, "%s needs a mailbox and a message", c->name);
		return -1;
	}
	for (i = first; i < c->nargs; i++)
		if (c->args[i].spooled && c->args[i].type == IMAP_ARG_STRING) {
			bool msg = false;

			for (size_t k = 0; k < n; k++)
				msg |= m[k].msg == &c->args[i];
			if (!msg) {
				imap_bad(s, "Invalid %s arguments", c->name);
				return -1;
			}
		}
	return (int)n;
}

/* ---- CATENATE (RFC 4469) ---- */


/* %XX decoded (RFC 5092 enc-mailbox, enc-section); -1 on a bad escape
 * or a NUL. Appends to out. */
static int
url_unescape(const char *s, size_t len, str_t *out)
{
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] != '%') {
			str_append_c(out, s[i]);
			continue;
		}
		if (len - i < 3)
			return -1;
		hi = str_hexval(s[i + 1]);
		lo = str_hexval(s[i + 2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		str_append_c(out, (char)(hi << 4 | lo));
		i += 2;
	}
	return 0;
}

/* A decimal number of at most 10 digits (a UID, UIDVALIDITY or
 * partial range) at *p up to end; advances *p. -1 when none. */
static long long
url_number(const char **p, const char *end)
{
	long long v = 0;
	int n = 0;

	while (*p < end && **p >= '0' && **p <= '9' && n < 10) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n == 0 ? -1 : v;
}

static bool
url_word(const char **p, const char *end, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(end - *p) < n || strncasecmp(*p, word, n) != 0)
		return false;
	*p += n;
	return true;
}

/* The parts of an IMAP URL (RFC 5092) naming one of the user's own
 * messages: "imap://[user[;AUTH=..]@]host[:port]/..." (user, if given,
 * the one logged in) or the absolute path "/mailbox[;UIDVALIDITY=n]
 * /;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]". */
struct cat_url {
	str_t mailbox;		/* decoded (UTF-8) */
	long long uidvalidity;	/* -1: not given */
	long long uid;
	str_t section;		/* decoded; empty: the whole message */
	bool has_section;
	long long origin, length;	/* partial; length -1: to the end */
};

static int
url_parse(const struct imap_session *s, const char *url, struct cat_url *u)
{
	const char *p = url, *end = url + strlen(url), *mb, *q;

	u->uidvalidity = -1;
	u->origin = 0;
	u->length = -1;
	if (url_word(&p, end, "imap://")) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *at;

		if (slash == NULL)
			return -1;
		/* the last '@': a client may leave the one of an address
		 * unescaped */
		at = memrchr(p, '@', (size_t)(slash - p));
		if (at != NULL) {
			const char *semi = memchr(p, ';', (size_t)(at - p));
			str_t user = STR_INIT;
			bool same;

			if (url_unescape(p, (size_t)((semi != NULL ? semi :
			    at) - p), &user) < 0) {
				str_free(&user);
				return -1;
			}
			/* the user's own messages only (RFC 4469 5) */
			same = user.len == 0 ||
			    strcasecmp(str_c(&user), s->login) == 0;
			str_free(&user);
			if (!same)
				return -1;
		}
		p = slash;
	}
	if (p == end || *p != '/')
		return -1;
	mb = ++p;
	/* the mailbox runs to ";UIDVALIDITY=" or "/;UID=" (';' is never
	 * in an enc-mailbox) */
	while (p < end && *p != ';')
		p++;
	if (p == end)
		return -1;
	q = p;
	if (p > mb && p[-1] == '/')
		q = p - 1;		/* "/;UID=" follows the name */
	if (url_unescape(mb, (size_t)(q - mb), &u->mailbox) < 0 ||
	    u->mailbox.len == 0 || memchr(u->mailbox.data, '\0',
	    u->mailbox.len) != NULL)
		return -1;
	if (q == p) {
		if (!url_word(&p, end, ";UIDVALIDITY=") ||
		    (u->uidvalidity = url_number(&p, end)) <= 0)
			return -1;
		q = p;
	}
	p = q;
	if (!url_word(&p, end, "/;UID=") ||
	    (u->uid = url_number(&p, end)) <= 0 || u->uid > UINT32_MAX)
		return -1;
	if (url_word(&p, end, "/;SECTION=")) {
		const char *e = p;

		while (e < end && !(e[0] == '/' && e + 1 < end && e[1] == ';'))
			e++;
		if (url_unescape(p, (size_t)(e - p), &u->section) < 0 ||
		    u->section.len == 0)
			return -1;
		u->has_section = true;
		p = e;
	}
	if (url_word(&p, end, "/;PARTIAL=")) {
		if ((u->origin = url_number(&p, end)) < 0)
			return -1;
		if (p < end && *p == '.') {
			p++;
			if ((u->length = url_number(&p, end)) <= 0)
				return -1;
		}
	}
	/* URLAUTH and anything else: not taken */
	return p == end ? 0 : -1;
}

/* The bytes an IMAP URL names, into out: 1 ok, 0 a bad or unusable URL,
 * -2 the message is too large (its file, before it is read). */
static int
url_fetch(struct imap_session *s, const char *url, str_t *out)
{
	struct cat_url u = { .mailbox = STR_INIT, .section = STR_INIT };
	str_t name = STR_INIT, wire = STR_INIT;
	struct mbox *mb = NULL;
	char *path = NULL, *file = NULL, *raw = NULL;
	const char *err;
	struct stat st;
	size_t rawlen = 0;
	long idx;
	int fd = -1, ret = 0;

	if (url_parse(s, url, &u) < 0 ||
	    imap_utf8_to_mutf7(u.mailbox.data, u.mailbox.len, &name) < 0)
		goto out;
	/* a name not taken sets a NO, which the caller's BADURL replaces */
	if ((path = imap_mailbox_path(s, str_c(&name))) == NULL ||
	    !imap_is_dir(path) || mbox_open(path, true, &mb, &err) < 0)
		goto out;
	if ((u.uidvalidity >= 0 && u.uidvalidity != mb->uidvalidity) ||
	    (idx = mbox_find_uid(mb, (uint32_t)u.uid)) < 0 ||
	    mbox_msg(mb, idx)->expunged)
		goto out;
	file = mbox_msg_path(mb, mbox_msg(mb, idx));
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		goto out;
	if ((uint64_t)st.st_size > s->srv->size_limit) {
		ret = -2;
		goto out;
	}
	if (read_fd_all(fd, &raw, &rawlen, &st) < 0)
		goto out;
	mime_to_crlf(raw, rawlen, &wire);
	if (u.has_section) {
		char *atom = xasprintf("BODY.PEEK[%s]", str_c(&u.section));
		struct imap_arg a = { .type = IMAP_ARG_ATOM, .str = atom,
		    .len = strlen(atom) };
		struct fetch_att att;
		const char *perr;
		struct mime_part *root;

		if (imap_fetch_parse(&a, &att, &perr) < 0) {
			free(atom);
			goto out;
		}
		free(atom);
		if (att.n != 1 || att.items[0].kind != FETCH_SECTION ||
		    att.items[0].partial) {
			imap_fetch_free(&att);
			goto out;
		}
		root = mime_parse(wire.data != NULL ? wire.data : "",
		    wire.len);
		imap_section_bytes(wire.data != NULL ? wire.data : "",
		    wire.len, root, &att.items[0], out);
		mime_free(root);
		imap_fetch_free(&att);
	} else {
		str_append_n(out, wire.data != NULL ? wire.data : "",
		    wire.len);
	}
	if (u.origin > 0 || u.length >= 0) {
		size_t o = (uint64_t)u.origin > out->len ? out->len :
		    (size_t)u.origin;
		size_t l = out->len - o;

		if (u.length >= 0 && (uint64_t)u.length < l)
			l = (size_t)u.length;
		memmove(out->data, out->data + o, l);
		str_truncate(out, l);
	}
	ret = 1;
out:
	if (fd >= 0)
		close(fd);
	free(raw);
	free(file);
	free(path);
	if (mb != NULL)
		mbox_close(&mb);
	str_free(&u.mailbox);
	str_free(&u.section);
	str_free(&name);
	str_free(&wire);
	return ret;
}

/* A url as the BADURL response code may carry it (no ']', CR, LF). */
static void
badurl(struct imap_session *s, const char *url, const char *why)
{
	str_t t = STR_INIT;

	for (size_t i = 0; url[i] != '\0' && i < 1024; i++) {
		unsigned char ch = (unsigned char)url[i];

		str_append_c(&t, ch == ']' || ch < 0x20 || ch == 0x7f ? '?' :
		    url[i]);
	}
	if (t.len == 0)
		str_append_c(&t, '?');
	imap_no(s, "[BADURL %s] %s", str_c(&t), why);
	str_free(&t);
}

/* Make a CATENATE message into a->tmp (the user's tmp/), its wire size
 * into a->size. 0 ok, -1 with a NO or BAD set. */
static int
catenate(struct imap_session *s, struct append_msg *a)
{
	const struct imap_arg *l = a->cat;
	struct maildir_tmp *tmp = NULL;
	const char *err;
	uint64_t total = 0;
	size_t nsp = 0;
	str_t data = STR_INIT;
	char *buf = NULL;

	if (maildir_tmp_open(s->maildir, &tmp, &err) < 0)
		goto failed;
	for (size_t k = 0; k < l->nlist; k += 2) {
		const struct imap_arg *v = &l->list[k + 1];

		if (strcasecmp(l->list[k].str, "URL") == 0) {
			const char *url = imap_arg_astring(v);
			int r;

			str_truncate(&data, 0);
			r = url_fetch(s, url, &data);
			if (r == -2 || (r == 1 &&
			    total + data.len > s->srv->size_limit)) {
				imap_no(s, "[TOOBIG] Message too large");
				goto out;
			}
			if (r == 0) {
				badurl(s, url, "The URL names no message of "
				    "this user");
				goto out;
			}
			total += data.len;
			if (data.len > 0 && maildir_tmp_write_lf(tmp, data.data,
			    data.len, &err) < 0)
				goto failed;
		} else if (!v->spooled) {
			if (v->len > 0 &&
			    memchr(v->str, '\0', v->len) != NULL) {
				imap_bad(s, "NUL in a literal");
				goto out;
			}
			total += v->len;
			if (total > s->srv->size_limit) {
				imap_no(s, "[TOOBIG] Message too large");
				goto out;
			}
			if (v->len > 0 && maildir_tmp_write_lf(tmp, v->str,
			    v->len, &err) < 0)
				goto failed;
		} else {
			struct imap_spool *sp = a->cat_sp[nsp++];
			struct stat st;
			int fd;
			uint64_t off = 0, size;

			if (sp->failed != NULL) {
				imap_no(s, "%s", sp->failed);
				goto out;
			}
			if (sp->scan.nul) {
				imap_bad(s, "NUL in a literal");
				goto out;
			}
			total += sp->size;
			if (total > s->srv->size_limit) {
				imap_no(s, "[TOOBIG] Message too large");
				goto out;
			}
			if (sp->tmp == NULL) {
				err = "no spool file";
				goto failed;
			}
			/* the spool holds it with LF line ends already (a
			 * last lone CR held back, not yet in the file) */
			fd = maildir_tmp_fd(sp->tmp);
			if (fstat(fd, &st) < 0) {
				err = "cannot read the spool";
				goto failed;
			}
			size = (uint64_t)st.st_size;
			if (buf == NULL)
				buf = xmalloc(IMAP_SPOOL_CHUNK);
			while (off < size) {
				size_t want = size - off < IMAP_SPOOL_CHUNK ?
				    (size_t)(size - off) : IMAP_SPOOL_CHUNK;
				ssize_t got = pread(fd, buf, want, (off_t)off);

				if (got <= 0) {
					err = "cannot read the spool";
					goto failed;
				}
				if (maildir_tmp_write_lf(tmp, buf, (size_t)got,
				    &err) < 0)
					goto failed;
				off += (uint64_t)got;
			}
			if (maildir_tmp_size(sp->tmp) > size &&
			    maildir_tmp_write_lf(tmp, "\r", 1, &err) < 0)
				goto failed;
		}
	}
	a->tmp = tmp;
	a->size = total;
	str_free(&data);
	free(buf);
	return 0;
failed:
	log_error("%016llx: append: catenate in %s: %s", SID(&s->base),
	    s->maildir, err);
	imap_no(s, SAVE_FAILED);
out:
	maildir_tmp_abort(&tmp);
	str_free(&data);
	free(buf);
	return -1;
}

/* Remove the files of the messages linked so far (a later one failed):
 * under the lock, so no sync saw them. */
static void
take_back(struct append_msg *m, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (m[k].path != NULL && unlink(m[k].path) < 0 &&
		    errno != ENOENT)
			log_warn("unlink(%s): %s", m[k].path, strerror(errno));
		free(m[k].path);
		m[k].path = NULL;
	}
}

/* What store() did: the UIDVALIDITY of the target and the UIDs of the
 * messages (set empty when they could not all be known in order). */
struct stored {
	uint32_t uidvalidity;
	str_t set;
};

/*
 * Store the messages given from c->args[first] on (one, or several:
 * MULTIAPPEND) in the mailbox name, all or none. With old_path
 * (REPLACE: one message), that file of the selected mailbox is removed
 * with it, under the same lock(s), and credit (its size) does not count
 * against the quota. Returns 0 with *out filled, or -1 with a NO or BAD
 * set and nothing changed.
 */
static int
store(struct imap_session *s, struct imap_cmd *c, size_t first,
    const char *name, const char *old_path, uint64_t credit,
    struct stored *out)
{
	const char *err = NULL;
	struct append_msg *m;
	struct mbox *dst = NULL;
	bool own = false, locked = false, locked_sel = false;
	uint64_t total = 0, stored = 0;
	uint32_t *uids = NULL;
	size_t n = 0, nuid = 0, max;
	int rc, ret = -1;

	max = old_path != NULL ? 1 : IMAP_APPEND_MSGS_MAX;
	m = xcalloc(max, sizeof(*m));
	if ((rc = split_messages(s, c, first, m, max)) < 0)
		goto out;
	n = (size_t)rc;
	for (size_t k = 0; k < n; k++)
		if (m[k].cat != NULL && catenate(s, &m[k]) < 0)
			goto out;
	for (size_t k = 0; k < n; k++) {
		if (m[k].size == 0) {
			imap_no(s, "Cannot append an empty message");
			goto out;
		}
		if (m[k].size > s->srv->size_limit) {
			imap_no(s, "[TOOBIG] Message too large");
			goto out;
		}
		total += m[k].size;
	}
	/* NUL is no CHAR8 (RFC 3501 9): a literal8 (RFC 3516 4.4) may hold
	 * it, and bare LFs, but a Maildir file keeps neither as sent */
	for (size_t k = 0; k < n; k++) {
		struct imap_msg_scan sc = { false, false, 0 };

		if (m[k].cat != NULL)
			continue;	/* checked part by part */
		if (m[k].sp != NULL)
			sc = m[k].sp->scan;
		else
			imap_msg_scan(&sc, m[k].msg->str, m[k].msg->len);
		if (m[k].msg->literal8 && (sc.nul || sc.bare_lf)) {
			imap_no(s, "[UNKNOWN-CTE] Binary content cannot be "
			    "stored; send it encoded");
			goto out;
		}
		if (sc.nul) {
			imap_bad(s, "NUL in a literal (only a literal8 may "
			    "hold it)");
			goto out;
		}
	}
	if ((dst = imap_open_target(s, name, &own)) == NULL)
		goto out;
	for (size_t k = 0; k < n; k++) {
		char letters[64] = "";

		if (m[k].flags != NULL) {
			/* keywords belong to the target mailbox */
			struct mbox *saved = s->mb;

			s->mb = dst;
			rc = imap_flags_to_letters(s, m[k].flags->list,
			    m[k].flags->nlist, true, letters, sizeof(letters));
			s->mb = saved;
			if (rc < 0)
				goto out;
		}
		if (maildir_flags_normalize(letters, strlen(letters),
		    m[k].norm) < 0)
			m[k].norm[0] = '\0';
		if (m[k].sp != NULL && m[k].sp->failed != NULL) {
			imap_no(s, "%s", m[k].sp->failed);
			goto out;
		}
	}
	/* REPLACE: only the net growth counts (RFC 8508 3.4) */
	if (total > credit && maildir_quota_check(s->maildir, &s->quota,
	    total - credit, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	/* Stored with LF line ends, as delivered mail is: a spool is
	 * already; a message in the command is written now. Each gets its
	 * date before its name: INTERNALDATE never changes. */
	for (size_t k = 0; k < n; k++) {
		if (m[k].cat != NULL) {
			/* made by catenate() */
		} else if (m[k].sp != NULL) {
			m[k].tmp = m[k].sp->tmp;
			m[k].sp->tmp = NULL;
			if (m[k].tmp == NULL) {
				err = "no spool file";
				goto failed;
			}
		} else if (maildir_tmp_open(dst->path, &m[k].tmp, &err) < 0 ||
		    maildir_tmp_write_lf(m[k].tmp, m[k].msg->str,
		    m[k].msg->len, &err) < 0) {
			goto failed;
		}
		if (m[k].date >= 0)
			maildir_tmp_set_mtime(m[k].tmp, (time_t)m[k].date, 0);
		stored += maildir_tmp_size(m[k].tmp);
	}
	/* several files, or one for another: no sync sees half of it */
	if (n > 1 || old_path != NULL) {
		if (mbox_lock(dst, &err) < 0)
			goto failed;
		locked = true;
	}
	if (old_path != NULL && dst != s->mb) {
		if (mbox_lock(s->mb, &err) < 0)
			goto failed;
		locked_sel = true;
	}
	for (size_t k = 0; k < n; k++) {
		if (maildir_tmp_commit_to(&m[k].tmp, dst->path, m[k].norm,
		    &m[k].path, &err) < 0) {
			take_back(m, k);
			goto failed;
		}
	}
	/* the replaced message's file goes with them (renamed meanwhile:
	 * the caller's expunge finds it) */
	if (old_path != NULL && unlink(old_path) < 0 && errno != ENOENT)
		log_warn("%016llx: replace: unlink(%s): %s", SID(&s->base),
		    old_path, strerror(errno));
	if (locked_sel) {
		mbox_unlock(s->mb);
		locked_sel = false;
	}
	if (locked) {
		mbox_unlock(dst);
		locked = false;
	}
	if (quota_limit_set(&s->quota))
		maildir_quota_add(s->maildir, (int64_t)stored, (int64_t)n,
		    &err);
	uids = xcalloc(n, sizeof(*uids));
	for (size_t k = 0; k < n; k++) {
		uint32_t uid = mbox_uid_of_added(dst,
		    imap_basename_of(m[k].path), &err);

		if (uid == 0) {
			log_warn("%016llx: append to %s: %s", SID(&s->base),
			    dst->path, err);
			break;
		}
		if (nuid > 0 && uid <= uids[nuid - 1])
			break;	/* not in order: no UID set to give */
		uids[nuid++] = uid;
	}
	out->uidvalidity = dst->uidvalidity;
	if (nuid == n)
		imap_seqset_format(uids, nuid, &out->set);
	ret = 0;
	goto out;
failed:
	if (locked_sel)
		mbox_unlock(s->mb);
	if (locked)
		mbox_unlock(dst);
	log_error("%016llx: append to %s: %s", SID(&s->base), dst->path, err);
	imap_no(s, SAVE_FAILED);
out:
	for (size_t k = 0; k < n; k++) {
		maildir_tmp_abort(&m[k].tmp);
		free(m[k].path);
	}
	imap_spools_free(s);	/* not kept after the command */
	free(m);
	free(uids);
	if (dst != NULL && !own)
		mbox_close(&dst);
	return ret;
}

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const char *name;
	struct stored st = { .set = STR_INIT };

	if (c->nargs < 2 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	if (store(s, c, 1, name, NULL, 0, &st) < 0)
		return;
	if (st.set.len == 0)
		imap_ok(s, "Append completed.");
	else
		imap_ok(s, "[APPENDUID %u %s] Append completed.",
		    st.uidvalidity, str_c(&st.set));
	str_free(&st.set);
}

/* ---- REPLACE (RFC 8508) ---- */

/* A message number or UID: digits (no leading 0) or "*". */
static bool
one_number(const char *p)
{
	if (strcmp(p, "*") == 0)
		return true;
	if (*p < '1' || *p > '9' || strlen(p) > 10)
		return false;
	for (; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/*
 * REPLACE and UID REPLACE: the new message is stored as APPEND stores
 * it and the old one removed, both under the folders' locks, so no
 * session ever sees both or neither; on any failure nothing changes.
 * The responses come in RFC 8508's order: the untagged OK with
 * APPENDUID, EXISTS (the new message when it went into this mailbox),
 * then the EXPUNGE of the old one.
 */
void
imap_cmd_replace(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	size_t *idx = NULL, n = 0;
	struct stored st = { .set = STR_INIT };
	char *old_path = NULL;
	uint64_t old_size;
	uint32_t old_uid;
	long i;

	if (c->nargs < 3 || c->args[0].type != IMAP_ARG_ATOM ||
	    !one_number(c->args[0].str) ||
	    (name = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "%sREPLACE needs a message, a mailbox and a "
		    "message", c->uid ? "UID " : "");
		return;
	}
	if (imap_resolve_set(s, c->args[0].str, c->uid, &idx, &n) < 0 ||
	    (n == 0 && !c->uid)) {
		imap_bad(s, "Invalid message number");
		goto out;
	}
	if (n == 0 || mbox_msg(s->mb, idx[0])->expunged) {
		imap_no(s, "[NONEXISTENT] No such message");
		goto out;
	}
	if (s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		goto out;
	}
	/* its size (the quota counts the net growth) */
	if (mbox_msg(s->mb, idx[0])->info_pending &&
	    mbox_msg_info(s->mb, idx[0], &err) < 0)
		log_warn("%016llx: %s", SID(&s->base), err);
	if (mbox_msg(s->mb, idx[0])->expunged) {
		imap_no(s, "[EXPUNGEISSUED] The message was expunged");
		goto out;
	}
	old_uid = mbox_msg(s->mb, idx[0])->uid;
	old_size = mbox_msg(s->mb, idx[0])->size;
	old_path = mbox_msg_path(s->mb, mbox_msg(s->mb, idx[0]));
	if (store(s, c, 2, name, old_path, old_size, &st) < 0)
		goto out;
	if (st.set.len > 0)
		imap_untagged(s, "OK [APPENDUID %u %s] Replacement Message "
		    "ready", st.uidvalidity, str_c(&st.set));
	else
		imap_untagged(s, "OK Replacement Message ready");
	/* The index learns of the expunge. The file is gone already,
	 * unless another session renamed it (a flag change) before the
	 * lock: mbox_expunge finds its new name and removes it. */
	if ((i = mbox_find_uid(s->mb, old_uid)) >= 0) {
		size_t k = (size_t)i;

		if (mbox_expunge(s->mb, &k, 1, &err) < 0)
			log_error("%016llx: replace: %s", SID(&s->base), err);
	}
	maildir_quota_add(s->maildir, -(int64_t)old_size, -1, &err);
	/* EXISTS first, then EXPUNGE */
	imap_sync_report(s, false);
	imap_report_expunges(s);
	imap_ok(s, "Replace completed.");
out:
	str_free(&st.set);
	free(old_path);
	free(idx);
}
