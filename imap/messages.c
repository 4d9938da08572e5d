/*
 * messages.c: the IMAP commands on the selected mailbox and on messages:
 * SELECT, EXAMINE, FETCH, STORE, SEARCH, COPY, MOVE (RFC 6851),
 * EXPUNGE (and UID EXPUNGE, RFC 4315), CLOSE, UNSELECT, APPEND, NOOP,
 * and the report of changes made by others (untagged EXISTS, RECENT,
 * EXPUNGE, FETCH FLAGS). They run on job threads.
 *
 * Flags are Maildir letters: \Draft D, \Flagged F, \Answered R,
 * \Seen S, \Deleted T; keywords a-z through the mailbox's
 * dovecot-keywords. Other upper-case letters (P, "passed") are kept
 * untouched but not shown.
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
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/mime/mime.h"

static const struct {
	char letter;
	const char *name;
} sysflags[] = {
	{ 'R', "\\Answered" },
	{ 'F', "\\Flagged" },
	{ 'T', "\\Deleted" },
	{ 'S', "\\Seen" },
	{ 'D', "\\Draft" },
};
#define NSYSFLAGS (sizeof(sysflags) / sizeof(sysflags[0]))

static const char *
basename_of(const char *path)
{
	const char *p = strrchr(path, '/');

	return p != NULL ? p + 1 : path;
}

void
imap_flags_string(const struct mbox *mb, const struct mbox_msg *m, str_t *out)
{
	bool first = true;

	for (size_t i = 0; i < NSYSFLAGS; i++) {
		if (strchr(m->flags, sysflags[i].letter) == NULL)
			continue;
		if (!first)
			str_append_c(out, ' ');
		str_append(out, sysflags[i].name);
		first = false;
	}
	for (const char *p = m->flags; *p != '\0'; p++) {
		const char *kw;

		if (*p < 'a' || *p > 'z' || (kw = mb->keywords[*p - 'a']) == NULL)
			continue;
		if (!first)
			str_append_c(out, ' ');
		str_append(out, kw);
		first = false;
	}
	if (m->recent) {
		if (!first)
			str_append_c(out, ' ');
		str_append(out, "\\Recent");
	}
}

static unsigned
count_keywords(const struct mbox *mb)
{
	unsigned n = 0;

	for (size_t i = 0; i < 26; i++)
		if (mb->keywords[i] != NULL)
			n++;
	return n;
}

static void
report_flags(struct imap_session *s)
{
	str_t kw = STR_INIT;

	for (size_t i = 0; i < 26; i++) {
		if (s->mb->keywords[i] == NULL)
			continue;
		str_append_c(&kw, ' ');
		str_append(&kw, s->mb->keywords[i]);
	}
	imap_untagged(s, "FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft%s)", str_c(&kw));
	if (s->readonly)
		imap_untagged(s, "OK [PERMANENTFLAGS ()] Read-only mailbox.");
	else
		imap_untagged(s, "OK [PERMANENTFLAGS (\\Answered \\Flagged "
		    "\\Deleted \\Seen \\Draft%s \\*)] Flags permitted.",
		    str_c(&kw));
	str_free(&kw);
	s->known_keywords = count_keywords(s->mb);
}

static void
fetch_flags_line(struct imap_session *s, size_t i, bool uid)
{
	const struct mbox_msg *m = &s->mb->msgs[i];
	str_t f = STR_INIT;

	imap_flags_string(s->mb, m, &f);
	if (uid)
		imap_untagged(s, "%zu FETCH (UID %u FLAGS (%s))", i + 1, m->uid,
		    str_c(&f));
	else
		imap_untagged(s, "%zu FETCH (FLAGS (%s))", i + 1, str_c(&f));
	str_free(&f);
}

/* Drop the expunged messages and tell the client of those it knew:
 * one that arrived and went between two reports was never announced,
 * so it gets no EXPUNGE (its number was never valid for the client). */
void
imap_report_expunges(struct imap_session *s)
{
	uint32_t *seqs = NULL;
	size_t n = 0;

	mbox_purge(s->mb, &seqs, &n);
	/* descending, so each number is the client's at that moment */
	for (size_t i = 0; i < n; i++) {
		if (seqs[i] > s->known)
			continue;
		imap_untagged(s, "%u EXPUNGE", seqs[i]);
		s->known--;
	}
	free(seqs);
}

void
imap_sync_report(struct imap_session *s, bool allow_expunge)
{
	const char *err;
	size_t added = 0;
	size_t recent = 0;

	if (s->mb == NULL)
		return;
	if (mbox_sync(s->mb, &added, &err) < 0) {
		log_error("%lu: sync %s: %s", s->sid, s->mb->path, err);
		return;
	}
	if (allow_expunge)
		imap_report_expunges(s);
	if (count_keywords(s->mb) != s->known_keywords)
		report_flags(s);
	if (s->mb->n != s->known) {
		for (size_t i = s->known; s->readonly && i < s->mb->n; i++)
			s->mb->msgs[i].recent = !s->mb->msgs[i].in_cur;
		for (size_t i = 0; i < s->mb->n; i++)
			if (s->mb->msgs[i].recent)
				recent++;
		imap_untagged(s, "%zu EXISTS", s->mb->n);
		imap_untagged(s, "%zu RECENT", recent);
		s->known = s->mb->n;
	}
	for (size_t i = 0; i < s->mb->n; i++) {
		struct mbox_msg *m = &s->mb->msgs[i];

		if (!m->flags_changed || m->expunged)
			continue;
		m->flags_changed = false;
		fetch_flags_line(s, i, true);
	}
}

void
imap_close_mailbox(struct imap_session *s)
{
	if (s->mb != NULL)
		mbox_close(&s->mb);
	free(s->mbox_name);
	s->mbox_name = NULL;
	s->readonly = false;
	s->known = 0;
}

/* ---- sequence sets ---- */

/* The indexes of the messages a set names, ascending, without repeats.
 * A sequence number beyond the mailbox is an error (-1); UIDs that do
 * not exist are simply not there (RFC 3501 6.4.8). */
static int
resolve_set(const struct mbox *mb, const char *text, bool uid,
    size_t **idx_r, size_t *n_r)
{
	struct imap_seqset set;
	unsigned char *mark;
	size_t *idx, n = 0;

	*idx_r = NULL;
	*n_r = 0;
	if (imap_seqset_parse(text, &set) < 0)
		return -1;
	mark = xcalloc(mb->n + 1, 1);
	for (size_t r = 0; r < set.n; r++) {
		uint32_t lo = set.r[r].lo, hi = set.r[r].hi;
		uint32_t star = uid ? (mb->n > 0 ? mb->msgs[mb->n - 1].uid : 0) :
		    (uint32_t)mb->n;

		if (lo == IMAP_SEQ_STAR)
			lo = star;
		if (hi == IMAP_SEQ_STAR)
			hi = star;
		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (!uid) {
			if (hi > mb->n || lo == 0) {
				free(mark);
				imap_seqset_free(&set);
				return -1;
			}
			for (uint32_t q = lo; q <= hi; q++)
				mark[q - 1] = 1;
			continue;
		}
		/* first message with uid >= lo */
		{
			size_t a = 0, b = mb->n;

			while (a < b) {
				size_t mid = a + (b - a) / 2;

				if (mb->msgs[mid].uid < lo)
					a = mid + 1;
				else
					b = mid;
			}
			for (; a < mb->n && mb->msgs[a].uid <= hi; a++)
				mark[a] = 1;
		}
	}
	imap_seqset_free(&set);
	idx = xmalloc((mb->n + 1) * sizeof(*idx));
	for (size_t i = 0; i < mb->n; i++)
		if (mark[i])
			idx[n++] = i;
	free(mark);
	*idx_r = idx;
	*n_r = n;
	return 0;
}

/* ---- reading a message ---- */

/* The message file's bytes as stored (LF or CRLF line ends) into *raw
 * (malloc'd, NUL-terminated) and *len; a message whose sizes were still
 * pending learns them. On a vanished file the mailbox is synced once
 * (another session may have renamed it for a flag change) and the read
 * retried. 0 ok, -1 gone. */
static int
read_message(struct imap_session *s, size_t i, char **raw, size_t *len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct mbox_msg *m = &s->mb->msgs[i];
		char *path = mbox_msg_path(s->mb, m);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		int r;

		free(path);
		if (fd < 0) {
			const char *err;

			if (m->expunged || attempt > 0 ||
			    mbox_sync(s->mb, NULL, &err) < 0)
				return -1;
			continue;
		}
		r = read_fd_all(fd, raw, len, &st);
		close(fd);
		if (r < 0)
			return -1;
		if (*len == (size_t)st.st_size && m->info_pending)
			mbox_msg_learn(s->mb, i, &st, mime_crlf_size(*raw, *len));
		return 0;
	}
	return -1;
}

/* The message in wire form (CRLF) into out. 0 ok, -1 gone. */
static int
load_message(struct imap_session *s, size_t i, str_t *out)
{
	char *raw;
	size_t len;

	if (read_message(s, i, &raw, &len) < 0)
		return -1;
	str_truncate(out, 0);
	mime_to_crlf(raw, len, out);
	free(raw);
	return 0;
}

/* ---- SELECT / EXAMINE ---- */

void
imap_cmd_select(struct imap_session *s, struct imap_cmd *c)
{
	bool examine = strcmp(c->name, "EXAMINE") == 0;
	const char *name, *err;
	char *path;
	long unseen = -1;
	size_t recent = 0;

	if (c->nargs < 1 || c->nargs > 2 ||
	    (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "%s needs a mailbox name", c->name);
		return;
	}
	/* Selecting closes the current mailbox, without expunging. */
	imap_close_mailbox(s);
	s->state = S_AUTH;
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (mbox_open(path, examine, &s->mb, &err) < 0) {
		struct stat st;

		if (stat(path, &st) < 0 && errno == ENOENT) {
			imap_no(s, "[NONEXISTENT] No such mailbox");
		} else {
			log_error("%lu: open %s: %s", s->sid, path, err);
			imap_no(s, "[SERVERBUG] Cannot open the mailbox");
		}
		free(path);
		return;
	}
	if (!examine) {
		/* what writers that died left in tmp/ (as Dovecot does) */
		char who[32];

		snprintf(who, sizeof(who), "%lu", s->sid);
		maildir_clean_tmp(path, who);
	}
	free(path);
	mbox_purge(s->mb, NULL, NULL);
	s->readonly = examine;
	s->mbox_name = xstrdup(imap_is_inbox(name) ? "INBOX" : name);
	s->state = S_SELECTED;
	for (size_t i = 0; i < s->mb->n; i++) {
		struct mbox_msg *m = &s->mb->msgs[i];

		m->flags_changed = false;
		if (examine)
			m->recent = !m->in_cur;	/* shown, not taken */
		if (m->recent)
			recent++;
		if (unseen < 0 && strchr(m->flags, 'S') == NULL)
			unseen = (long)i + 1;
	}
	report_flags(s);
	imap_untagged(s, "%zu EXISTS", s->mb->n);
	imap_untagged(s, "%zu RECENT", recent);
	if (unseen > 0)
		imap_untagged(s, "OK [UNSEEN %ld] First unseen.", unseen);
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid.", s->mb->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID.", s->mb->uidnext);
	s->known = s->mb->n;
	imap_ok(s, "[%s] %s completed.", examine ? "READ-ONLY" : "READ-WRITE",
	    examine ? "Examine" : "Select");
}

void
imap_cmd_noop(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "%s takes no arguments", c->name);
		return;
	}
	imap_ok(s, "%s completed.", strcmp(c->name, "CHECK") == 0 ? "Check" :
	    "NOOP");
}

/* ---- FETCH ---- */

struct fetch_state {
	size_t *idx;
	size_t n, pos;
	struct fetch_att att;
	bool gone;		/* a message could not be read */
};

static void
fetch_state_free(void *p)
{
	struct fetch_state *fs = p;

	free(fs->idx);
	imap_fetch_free(&fs->att);
	free(fs);
}

static void
append_literal(str_t *out, const char *data, size_t len)
{
	str_printf(out, "{%zu}\r\n", len);
	str_append_n(out, data, len);
}

/* The bytes a BODY[section] names, into sect (pointers into wire). */
static void
section_bytes(const char *wire, size_t wlen, const struct mime_part *root,
    const struct fetch_item *it, str_t *out)
{
	const struct mime_part *p = mime_part_find(root, it->part, it->npart);
	const struct mime_part *msg;

	if (p == NULL)
		return;		/* no such part: an empty string */
	switch (it->spec) {
	case SECT_ALL:
		if (it->npart == 0)
			str_append_n(out, wire, wlen);
		else
			str_append_n(out, wire + p->body_off, p->body_len);
		return;
	case SECT_MIME:
		str_append_n(out, wire + p->hdr_off, p->hdr_len);
		return;
	default:
		break;
	}
	msg = it->npart == 0 ? root : p->message;
	if (msg == NULL)
		return;
	switch (it->spec) {
	case SECT_HEADER:
		str_append_n(out, wire + msg->hdr_off, msg->hdr_len);
		break;
	case SECT_TEXT:
		str_append_n(out, wire + msg->body_off, msg->body_len);
		break;
	case SECT_HEADER_FIELDS:
	case SECT_HEADER_FIELDS_NOT:
		mime_header_fields(wire + msg->hdr_off, msg->hdr_len,
		    (const char *const *)it->fields, it->nfields,
		    it->spec == SECT_HEADER_FIELDS_NOT, out);
		break;
	default:
		break;
	}
}

/* One message being fetched: the file's bytes as read, and what is
 * derived from them on first use (the CRLF form, the MIME tree). BODY[]
 * and RFC822 go out straight from the file's bytes, converted once into
 * the reply. */
struct fetch_msg {
	char *raw;
	size_t rawlen;
	str_t wire;
	bool have_wire;
	struct mime_part *root;
};

static const str_t *
msg_wire(struct fetch_msg *fm)
{
	if (!fm->have_wire) {
		mime_to_crlf(fm->raw, fm->rawlen, &fm->wire);
		fm->have_wire = true;
	}
	return &fm->wire;
}

/* The message's MIME tree, parsed on first use. */
static struct mime_part *
mime_tree(struct fetch_msg *fm)
{
	if (fm->root == NULL) {
		const str_t *w = msg_wire(fm);

		fm->root = mime_parse(w->data, w->len);
	}
	return fm->root;
}

/* The whole message as a literal, in CRLF form. */
static void
append_message(str_t *out, struct fetch_msg *fm)
{
	if (fm->have_wire) {
		append_literal(out, fm->wire.data, fm->wire.len);
		return;
	}
	mime_append_crlf_literal(fm->raw, fm->rawlen, out);
}

/* ENVELOPE / BODY / BODYSTRUCTURE computed (and cached). ENVELOPE
 * needs only the header: no MIME tree is built for it. */
static char *
structure(struct imap_session *s, size_t i, enum mbox_cache_kind kind,
    struct fetch_msg *fm)
{
	const str_t *wire = msg_wire(fm);
	str_t v = STR_INIT;

	if (kind == MBOX_CACHE_ENVELOPE && fm->root == NULL)
		mime_envelope_header(wire->data, wire->len, &v);
	else if (kind == MBOX_CACHE_ENVELOPE)
		mime_envelope(wire->data, fm->root, &v);
	else
		mime_bodystructure(wire->data, mime_tree(fm),
		    kind == MBOX_CACHE_BODYSTRUCTURE, &v);
	mbox_cache_put(s->mb, i, kind, str_c(&v));
	return str_steal(&v);
}

static bool
fetch_one(struct imap_session *s, struct fetch_state *fs, size_t i)
{
	struct mbox_msg *m = &s->mb->msgs[i];
	const struct fetch_att *att = &fs->att;
	char *cached[MBOX_CACHE_KINDS] = { NULL };
	bool need_data = false, need_info = false, set_seen = false;
	bool flags_shown = false;
	struct fetch_msg fm = { NULL, 0, STR_INIT, false, NULL };
	str_t *line = &s->out;
	bool first = true;

	for (size_t k = 0; k < att->n; k++) {
		enum fetch_kind kd = att->items[k].kind;
		enum mbox_cache_kind ck;

		if (kd == FETCH_ENVELOPE)
			ck = MBOX_CACHE_ENVELOPE;
		else if (kd == FETCH_BODY)
			ck = MBOX_CACHE_BODY;
		else if (kd == FETCH_BODYSTRUCTURE)
			ck = MBOX_CACHE_BODYSTRUCTURE;
		else {
			if (kd == FETCH_RFC822 || kd == FETCH_RFC822_HEADER ||
			    kd == FETCH_RFC822_TEXT || kd == FETCH_SECTION)
				need_data = true;
			if (kd == FETCH_RFC822_SIZE || kd == FETCH_INTERNALDATE)
				need_info = true;
			continue;
		}
		if (cached[ck] == NULL)
			cached[ck] = mbox_cache_get(s->mb, i, ck);
		if (cached[ck] == NULL)
			need_data = true;
	}
	if (need_data) {
		if (read_message(s, i, &fm.raw, &fm.rawlen) < 0) {
			for (size_t k = 0; k < MBOX_CACHE_KINDS; k++)
				free(cached[k]);
			fs->gone = true;
			return false;
		}
		m = &s->mb->msgs[i];
		/* the reply goes straight into s->out: room for this message
		 * (and, at the start of a chunk of a longer FETCH, for the
		 * whole chunk) at once rather than by doubling */
		str_reserve(&s->out, fm.rawlen + fm.rawlen / 8 + 256 +
		    (s->out.len == 0 && fs->pos < fs->n ? IMAP_FETCH_CHUNK :
		    0));
	}
	if (need_info && m->info_pending) {
		/* not read above (the cached items were enough) */
		const char *err = NULL;
		int r = mbox_msg_info(s->mb, i, &err);

		if (r < 0)
			log_warn("%lu: %s", s->sid, err);
		if (r != 0) {
			for (size_t k = 0; k < MBOX_CACHE_KINDS; k++)
				free(cached[k]);
			fs->gone = true;
			return false;
		}
		m = &s->mb->msgs[i];
	}
	if (att->sets_seen && !s->readonly && strchr(m->flags, 'S') == NULL) {
		char flags[64];
		const char *err;

		snprintf(flags, sizeof(flags), "%sS", m->flags);
		if (mbox_set_flags(s->mb, i, flags, &err) < 0)
			log_warn("%lu: %s", s->sid, err);
		m = &s->mb->msgs[i];
		m->flags_changed = false;
		set_seen = true;
	}
	/* The MIME tree is built only for an item that needs it. Nothing
	 * below fails: the response is written into s->out as it goes. */
	str_printf(line, "* %zu FETCH (", i + 1);
	for (size_t k = 0; k < att->n; k++) {
		const struct fetch_item *it = &att->items[k];
		enum mbox_cache_kind ck = MBOX_CACHE_KINDS;

		if (!first)
			str_append_c(line, ' ');
		first = false;
		switch (it->kind) {
		case FETCH_FLAGS:
			str_append(line, "FLAGS (");
			imap_flags_string(s->mb, m, line);
			str_append_c(line, ')');
			flags_shown = true;
			break;
		case FETCH_UID:
			str_printf(line, "UID %u", m->uid);
			break;
		case FETCH_INTERNALDATE:
			str_append(line, "INTERNALDATE ");
			imap_datetime_format(m->internaldate, line);
			break;
		case FETCH_RFC822_SIZE:
			str_printf(line, "RFC822.SIZE %llu",
			    (unsigned long long)m->vsize);
			break;
		case FETCH_ENVELOPE:
			ck = MBOX_CACHE_ENVELOPE;
			str_append(line, "ENVELOPE ");
			break;
		case FETCH_BODY:
			ck = MBOX_CACHE_BODY;
			str_append(line, "BODY ");
			break;
		case FETCH_BODYSTRUCTURE:
			ck = MBOX_CACHE_BODYSTRUCTURE;
			str_append(line, "BODYSTRUCTURE ");
			break;
		case FETCH_RFC822:
			str_append(line, "RFC822 ");
			append_message(line, &fm);
			break;
		case FETCH_RFC822_HEADER:
			str_append(line, "RFC822.HEADER ");
			mime_tree(&fm);
			append_literal(line, fm.wire.data + fm.root->hdr_off,
			    fm.root->hdr_len);
			break;
		case FETCH_RFC822_TEXT:
			str_append(line, "RFC822.TEXT ");
			mime_tree(&fm);
			append_literal(line, fm.wire.data + fm.root->body_off,
			    fm.root->body_len);
			break;
		case FETCH_SECTION: {
			str_t sect = STR_INIT;
			const char *data;
			size_t off = 0, len;

			if (it->spec == SECT_ALL && it->npart == 0 &&
			    !it->partial) {
				str_append(line, it->label);
				str_append_c(line, ' ');
				append_message(line, &fm);
				break;
			}
			if (it->spec == SECT_ALL && it->npart == 0) {
				data = msg_wire(&fm)->data;
				len = fm.wire.len;
			} else {
				mime_tree(&fm);
				section_bytes(fm.wire.data, fm.wire.len,
				    fm.root, it, &sect);
				data = sect.data;
				len = sect.len;
			}
			if (it->partial) {
				off = it->origin < len ? it->origin : len;
				len -= off;
				if (len > it->count)
					len = it->count;
			}
			str_append(line, it->label);
			str_append_c(line, ' ');
			append_literal(line, data != NULL ? data + off : "",
			    len);
			str_free(&sect);
			break;
		}
		}
		if (ck != MBOX_CACHE_KINDS) {
			if (cached[ck] == NULL)
				cached[ck] = structure(s, i, ck, &fm);
			str_append(line, cached[ck]);
		}
	}
	if (set_seen && !flags_shown) {
		str_append(line, first ? "FLAGS (" : " FLAGS (");
		imap_flags_string(s->mb, m, line);
		str_append_c(line, ')');
	}
	str_append(line, ")\r\n");
	for (size_t k = 0; k < MBOX_CACHE_KINDS; k++)
		free(cached[k]);
	if (fm.root != NULL)
		mime_free(fm.root);
	str_free(&fm.wire);
	free(fm.raw);
	return true;
}

void
imap_cmd_fetch(struct imap_session *s, struct imap_cmd *c)
{
	struct fetch_state *fs = s->cmd_state;
	const char *err = NULL;

	if (fs == NULL) {
		const char *set;

		if (c->nargs != 2 || c->args[0].type != IMAP_ARG_ATOM) {
			imap_bad(s, "FETCH needs a sequence set and items");
			return;
		}
		set = c->args[0].str;
		fs = xcalloc(1, sizeof(*fs));
		if (imap_fetch_parse(&c->args[1], &fs->att, &err) < 0) {
			imap_bad(s, "%s", err != NULL ? err :
			    "Invalid FETCH items");
			free(fs);
			return;
		}
		if (c->uid) {
			/* UID FETCH always returns the UID (RFC 3501
			 * 6.4.8): put it first unless asked for. */
			bool has = false;

			for (size_t k = 0; k < fs->att.n; k++)
				if (fs->att.items[k].kind == FETCH_UID)
					has = true;
			if (!has) {
				fs->att.items = xrealloc(fs->att.items,
				    (fs->att.n + 1) * sizeof(*fs->att.items));
				memmove(fs->att.items + 1, fs->att.items,
				    fs->att.n * sizeof(*fs->att.items));
				memset(&fs->att.items[0], 0,
				    sizeof(fs->att.items[0]));
				fs->att.items[0].kind = FETCH_UID;
				fs->att.n++;
			}
		}
		if (resolve_set(s->mb, set, c->uid, &fs->idx, &fs->n) < 0) {
			imap_fetch_free(&fs->att);
			free(fs);
			imap_bad(s, "Invalid sequence set");
			return;
		}
		s->cmd_state = fs;
		s->cmd_state_free = fetch_state_free;
	}
	s->more = false;
	while (fs->pos < fs->n) {
		size_t i = fs->idx[fs->pos++];

		if (i < s->mb->n)
			fetch_one(s, fs, i);
		if (s->out.len >= IMAP_FETCH_CHUNK && fs->pos < fs->n) {
			s->more = true;
			return;
		}
	}
	mbox_flush(s->mb, &err);
	if (fs->gone)
		imap_no(s, "[EXPUNGEISSUED] Some messages were expunged.");
	else
		imap_ok(s, "Fetch completed.");
}

/* ---- STORE ---- */

/* A flag list into Maildir letters. 0 ok; -1 BAD (set on s). */
static int
flags_to_letters(struct imap_session *s, const struct imap_arg *args,
    size_t n, bool create, char *out, size_t outsz)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		char letter = 0;

		if (a->type == IMAP_ARG_LIST) {
			if (i != 0 || n != 1)
				goto bad;
			return flags_to_letters(s, a->list, a->nlist, create,
			    out, outsz);
		}
		if (a->type != IMAP_ARG_ATOM || a->str[0] == '\0')
			goto bad;
		if (a->str[0] == '\\') {
			for (size_t k = 0; k < NSYSFLAGS; k++)
				if (strcasecmp(a->str, sysflags[k].name) == 0)
					letter = sysflags[k].letter;
			if (letter == 0)
				goto bad;
		} else {
			/* a keyword is an atom (RFC 3501 9) */
			for (const char *k = a->str; *k != '\0'; k++)
				if ((unsigned char)*k <= 0x20 ||
				    (unsigned char)*k >= 0x7f ||
				    strchr("(){%*\"\\[]", *k) != NULL)
					goto bad;
			letter = mbox_keyword_letter(s->mb, a->str, create);
			if (letter == 0) {
				if (create) {
					imap_no(s, "[LIMIT] Too many keywords "
					    "in this mailbox");
					return -1;
				}
				continue;	/* removing an unknown one */
			}
		}
		if (len + 1 < outsz && strchr(out, letter) == NULL) {
			out[len++] = letter;
			out[len] = '\0';
		}
	}
	return 0;
bad:
	imap_bad(s, "Invalid flag list");
	return -1;
}

void
imap_cmd_store(struct imap_session *s, struct imap_cmd *c)
{
	const char *item, *err;
	char want[64];
	size_t *idx = NULL, n = 0;
	bool silent, add, del;

	if (c->nargs < 3 || c->args[0].type != IMAP_ARG_ATOM ||
	    c->args[1].type != IMAP_ARG_ATOM) {
		imap_bad(s, "STORE needs a sequence set, an item and flags");
		return;
	}
	item = c->args[1].str;
	add = item[0] == '+';
	del = item[0] == '-';
	if (add || del)
		item++;
	if (strcasecmp(item, "FLAGS") == 0)
		silent = false;
	else if (strcasecmp(item, "FLAGS.SILENT") == 0)
		silent = true;
	else {
		imap_bad(s, "Unknown STORE item");
		return;
	}
	if (s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		return;
	}
	if (flags_to_letters(s, c->args + 2, c->nargs - 2, !del, want,
	    sizeof(want)) < 0)
		return;
	if (resolve_set(s->mb, c->args[0].str, c->uid, &idx, &n) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	for (size_t k = 0; k < n; k++) {
		struct mbox_msg *m = &s->mb->msgs[idx[k]];
		char next[64];
		size_t len = 0;

		if (m->expunged)
			continue;
		for (const char *p = m->flags; *p != '\0'; p++) {
			bool keep;

			if (add || del)
				keep = !del || strchr(want, *p) == NULL;
			else	/* FLAGS replaces what IMAP shows */
				keep = strchr("DFRST", *p) == NULL &&
				    !(*p >= 'a' && *p <= 'z');
			if (keep && len + 1 < sizeof(next))
				next[len++] = *p;
		}
		if (!del)
			for (const char *p = want; *p != '\0'; p++)
				if (len + 1 < sizeof(next) &&
				    memchr(next, *p, len) == NULL)
					next[len++] = *p;
		next[len] = '\0';
		{
			char norm[MAILDIR_FLAGS_MAX + 1];

			if (maildir_flags_normalize(next, len, norm) == 0 &&
			    strcmp(norm, m->flags) != 0 &&
			    mbox_set_flags(s->mb, idx[k], norm, &err) < 0)
				log_warn("%lu: %s", s->sid, err);
		}
		m = &s->mb->msgs[idx[k]];
		m->flags_changed = false;
		if (!silent)
			fetch_flags_line(s, idx[k], c->uid);
	}
	free(idx);
	mbox_flush(s->mb, &err);
	imap_ok(s, "Store completed.");
}

/* ---- SEARCH ---- */

struct search_ctx {
	struct imap_session *s;
	size_t i;
	str_t wire;
	int loaded;		/* 0 not yet, 1 ok, -1 failed */
};

static char
search_keyword(void *ctx, const char *name)
{
	struct search_ctx *sc = ctx;

	return mbox_keyword_letter(sc->s->mb, name, false);
}

static const char *
search_load(void *ctx, size_t *len)
{
	struct search_ctx *sc = ctx;

	if (sc->loaded == 0)
		sc->loaded = load_message(sc->s, sc->i, &sc->wire) == 0 ? 1 :
		    -1;
	if (sc->loaded < 0)
		return NULL;
	*len = sc->wire.len;
	return sc->wire.data != NULL ? sc->wire.data : "";
}

void
imap_cmd_search(struct imap_session *s, struct imap_cmd *c)
{
	struct search_key *root = NULL;
	const char *err = NULL;
	str_t res = STR_INIT;
	bool need_info;
	size_t n;
	int rc;

	rc = imap_search_parse(c->args, c->nargs, &root, &err);
	if (rc == -2) {
		imap_no(s, "%s", err);
		return;
	}
	if (rc < 0) {
		imap_bad(s, "%s", err != NULL ? err : "Invalid search");
		return;
	}
	str_append(&res, "SEARCH");
	need_info = imap_search_needs_info(root);
	/* a re-sync below may append messages: they are not the client's
	 * yet */
	n = s->mb->n;
	for (size_t i = 0; i < n; i++) {
		struct mbox_msg *m = &s->mb->msgs[i];
		struct search_ctx sc = { s, i, STR_INIT, 0 };

		if (need_info && m->info_pending) {
			int r = mbox_msg_info(s->mb, i, &err);

			if (r < 0)
				log_warn("%lu: %s", s->sid, err);
			if (r != 0)
				continue;	/* gone: no match */
			m = &s->mb->msgs[i];
		}
		/* loading the message may re-sync and move msgs: keep
		 * nothing that points into it */
		char flags[sizeof(m->flags)];
		uint32_t uid = m->uid;

		memcpy(flags, m->flags, sizeof(flags));
		struct search_msg sm = {
			.seq = (uint32_t)(i + 1), .uid = uid,
			.max_seq = (uint32_t)n,
			.max_uid = n > 0 ? s->mb->msgs[n - 1].uid : 0,
			.flags = flags, .recent = m->recent,
			.size = m->vsize, .internaldate = m->internaldate,
			.keyword_letter = search_keyword, .load = search_load,
			.ctx = &sc,
		};

		if (imap_search_match(root, &sm))
			str_printf(&res, " %u", c->uid ? uid :
			    (uint32_t)(i + 1));
		str_free(&sc.wire);
	}
	imap_untagged(s, "%s", str_c(&res));
	str_free(&res);
	imap_search_free(root);
	imap_ok(s, "Search completed.");
}

/* ---- COPY / MOVE ---- */

/* Open the target of COPY, MOVE or APPEND: the selected mailbox's own
 * handle when it is the same folder. NULL with a NO set. */
static struct mbox *
open_target(struct imap_session *s, const char *name, bool *own_r)
{
	const char *err;
	char *path;
	struct mbox *mb = NULL;
	struct stat st;

	*own_r = false;
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return NULL;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		imap_no(s, "[TRYCREATE] No such mailbox");
		free(path);
		return NULL;
	}
	if (s->mb != NULL && strcmp(s->mb->path, path) == 0 && !s->readonly) {
		free(path);
		*own_r = true;
		return s->mb;
	}
	if (mbox_open(path, true, &mb, &err) < 0) {
		log_error("%lu: open %s: %s", s->sid, path, err);
		imap_no(s, "[SERVERBUG] Cannot open the mailbox");
		mb = NULL;
	}
	free(path);
	return mb;
}

/* Flags of a message for another mailbox: keywords by name. */
static void
translate_flags(struct mbox *from, struct mbox *to, const char *flags,
    char out[MAILDIR_FLAGS_MAX + 1])
{
	char tmp[MAILDIR_FLAGS_MAX + 1];
	size_t n = 0;

	for (const char *p = flags; *p != '\0' && n < MAILDIR_FLAGS_MAX; p++) {
		char l = *p;

		if (l >= 'a' && l <= 'z') {
			if (from == to)
				;
			else if (from->keywords[l - 'a'] == NULL ||
			    (l = mbox_keyword_letter(to,
			    from->keywords[l - 'a'], true)) == 0)
				continue;
		}
		tmp[n++] = l;
	}
	if (maildir_flags_normalize(tmp, n, out) < 0)
		out[0] = '\0';
}

static void
copy_messages(struct imap_session *s, struct imap_cmd *c, bool move)
{
	const char *name, *err;
	size_t *idx = NULL, n = 0, copied = 0, failed = 0, gone = 0, nmade = 0;
	char **made = NULL;
	struct mbox *dst;
	bool own;
	uint32_t *src_uids, *dst_uids;
	uint64_t bytes = 0;
	str_t su = STR_INIT, du = STR_INIT;

	if (c->nargs != 2 || c->args[0].type != IMAP_ARG_ATOM ||
	    (name = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "%s needs a sequence set and a mailbox", c->name);
		return;
	}
	if (move && s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		return;
	}
	if (resolve_set(s->mb, c->args[0].str, c->uid, &idx, &n) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	if ((dst = open_target(s, name, &own)) == NULL) {
		free(idx);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		/* S= of the copies, and the quota: sizes not looked at
		 * yet are needed now (a file found gone is dealt with
		 * below) */
		if (mbox_msg_info(s->mb, idx[k], &err) < 0)
			log_warn("%lu: %s", s->sid, err);
		bytes += s->mb->msgs[idx[k]].size;
	}
	if (!move && s->quota > 0 &&
	    maildir_quota_check(s->maildir, s->quota, bytes, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	src_uids = xcalloc(n + 1, sizeof(*src_uids));
	dst_uids = xcalloc(n + 1, sizeof(*dst_uids));
	made = xcalloc(n + 1, sizeof(*made));
	for (size_t k = 0; k < n; k++) {
		struct mbox_msg *m = &s->mb->msgs[idx[k]];
		char flags[MAILDIR_FLAGS_MAX + 1];
		char *src = mbox_msg_path(s->mb, m), *newpath = NULL;
		uint32_t uid;

		if (m->expunged) {
			free(src);
			gone++;
			continue;
		}
		translate_flags(s->mb, dst, m->flags, flags);
		for (int tries = 0; maildir_link_into_flags(src, m->size,
		    dst->path, flags, &newpath, &err) < 0; tries++) {
			const char *serr;

			/* Another session may have renamed the file (new
			 * flags) or expunged it: look again, then retry. */
			free(src);
			src = NULL;
			if (tries == 3 || mbox_sync(s->mb, NULL, &serr) < 0)
				break;
			m = &s->mb->msgs[idx[k]];
			if (m->expunged)
				break;
			src = mbox_msg_path(s->mb, m);
			translate_flags(s->mb, dst, m->flags, flags);
		}
		if (src == NULL) {
			if (s->mb->msgs[idx[k]].expunged) {
				gone++;
			} else {
				log_error("%lu: copy: %s", s->sid, err);
				failed++;
			}
			continue;
		}
		free(src);
		made[nmade++] = newpath;
		uid = mbox_uid_of_added(dst, basename_of(newpath), -1, &err);
		m = &s->mb->msgs[idx[k]];
		if (uid == 0) {
			log_error("%lu: copy into %s: %s", s->sid, dst->path,
			    err);
			failed++;
			continue;
		}
		src_uids[copied] = m->uid;
		dst_uids[copied] = uid;
		copied++;
	}
	if (failed > 0 || gone > 0) {
		/* RFC 3501 6.4.7: a failed COPY leaves the target as it
		 * was (a MOVE, the source too): take back what was made. */
		for (size_t k = 0; k < nmade; k++)
			if (unlink(made[k]) < 0 && errno != ENOENT)
				log_warn("unlink(%s): %s", made[k],
				    strerror(errno));
		copied = 0;
	}
	for (size_t k = 0; k < nmade; k++)
		free(made[k]);
	free(made);
	if (copied > 0) {
		imap_seqset_format(src_uids, copied, &su);
		imap_seqset_format(dst_uids, copied, &du);
	}
	if (!move && copied > 0 && s->quota > 0)
		maildir_quota_add(s->maildir, (int64_t)bytes, (int64_t)copied,
		    &err);
	if (failed > 0) {
		imap_no(s, "[SERVERBUG] The messages could not be copied, "
		    "none was");
	} else if (gone > 0) {
		imap_no(s, "[EXPUNGEISSUED] Some of the requested messages "
		    "no longer exist; nothing was copied");
	} else if (!move) {
		if (copied > 0)
			imap_ok(s, "[COPYUID %u %s %s] Copy completed.",
			    dst->uidvalidity, str_c(&su), str_c(&du));
		else
			imap_ok(s, "Copy completed.");
	} else {
		if (copied > 0)
			imap_untagged(s, "OK [COPYUID %u %s %s] Moved.",
			    dst->uidvalidity, str_c(&su), str_c(&du));
		if (mbox_expunge(s->mb, idx, n, &err) < 0)
			log_error("%lu: move: %s", s->sid, err);
		imap_report_expunges(s);
		imap_ok(s, "Move completed.");
	}
	free(src_uids);
	free(dst_uids);
out:
	str_free(&su);
	str_free(&du);
	if (!own)
		mbox_close(&dst);
	free(idx);
}

void
imap_cmd_copy(struct imap_session *s, struct imap_cmd *c)
{
	copy_messages(s, c, false);
}

void
imap_cmd_move(struct imap_session *s, struct imap_cmd *c)
{
	copy_messages(s, c, true);
}

/* ---- EXPUNGE, CLOSE, UNSELECT ---- */

/* Remove the \Deleted messages (those in uidset too, when given). */
static int
expunge_deleted(struct imap_session *s, const char *uidset, bool report)
{
	size_t *idx = NULL, n = 0, k = 0;
	const char *err;
	int64_t bytes = 0;

	if (uidset != NULL) {
		if (resolve_set(s->mb, uidset, true, &idx, &n) < 0)
			return -1;
	} else {
		idx = xmalloc((s->mb->n + 1) * sizeof(*idx));
		for (size_t i = 0; i < s->mb->n; i++)
			idx[n++] = i;
	}
	for (size_t j = 0; j < n; j++) {
		const struct mbox_msg *m = &s->mb->msgs[idx[j]];

		if (strchr(m->flags, 'T') == NULL || m->expunged)
			continue;
		/* the quota needs the size (0 when the file is gone) */
		if (m->info_pending &&
		    mbox_msg_info(s->mb, idx[j], &err) < 0)
			log_warn("%lu: %s", s->sid, err);
		m = &s->mb->msgs[idx[j]];
		bytes += (int64_t)m->size;
		idx[k++] = idx[j];
	}
	if (k > 0 && mbox_expunge(s->mb, idx, k, &err) < 0)
		log_error("%lu: expunge: %s", s->sid, err);
	if (k > 0)
		maildir_quota_add(s->maildir, -bytes, -(int64_t)k, &err);
	free(idx);
	if (!report)
		return 0;
	imap_report_expunges(s);
	return 0;
}

void
imap_cmd_expunge(struct imap_session *s, struct imap_cmd *c)
{
	const char *set = NULL;

	if (c->uid) {
		if (c->nargs != 1 || c->args[0].type != IMAP_ARG_ATOM) {
			imap_bad(s, "UID EXPUNGE needs a UID set");
			return;
		}
		set = c->args[0].str;
	} else if (c->nargs != 0) {
		imap_bad(s, "EXPUNGE takes no arguments");
		return;
	}
	if (s->readonly) {
		imap_no(s, "[READ-ONLY] The mailbox is read-only");
		return;
	}
	if (expunge_deleted(s, set, true) < 0) {
		imap_bad(s, "Invalid UID set");
		return;
	}
	imap_ok(s, "Expunge completed.");
}

void
imap_cmd_close(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "CLOSE takes no arguments");
		return;
	}
	if (!s->readonly)
		expunge_deleted(s, NULL, false);
	imap_close_mailbox(s);
	s->state = S_AUTH;
	imap_ok(s, "Close completed.");
}

void
imap_cmd_unselect(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "UNSELECT takes no arguments");
		return;
	}
	imap_close_mailbox(s);
	s->state = S_AUTH;
	imap_ok(s, "Unselect completed.");
}

/* ---- APPEND ---- */

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const char *name, *err;
	const struct imap_arg *msg, *flags_arg = NULL, *date_arg = NULL;
	long long date = -1;
	char letters[64] = "", norm[MAILDIR_FLAGS_MAX + 1];
	struct mbox *dst;
	struct mbox *saved;
	bool own;
	struct maildir_tmp *tmp = NULL;
	char *newpath = NULL;
	uint32_t uid;
	str_t lf = STR_INIT;

	if (c->nargs < 2 || c->nargs > 4 ||
	    (name = imap_arg_astring(&c->args[0])) == NULL ||
	    (msg = &c->args[c->nargs - 1])->type != IMAP_ARG_STRING) {
		imap_bad(s, "APPEND needs a mailbox and a message");
		return;
	}
	for (size_t i = 1; i + 1 < c->nargs; i++) {
		if (c->args[i].type == IMAP_ARG_LIST && flags_arg == NULL &&
		    date_arg == NULL)
			flags_arg = &c->args[i];
		else if (c->args[i].type == IMAP_ARG_STRING &&
		    date_arg == NULL)
			date_arg = &c->args[i];
		else {
			imap_bad(s, "Invalid APPEND arguments");
			return;
		}
	}
	if (date_arg != NULL &&
	    imap_datetime_parse(date_arg->str, &date) < 0) {
		imap_bad(s, "Invalid date-time");
		return;
	}
	if (msg->len == 0) {
		imap_no(s, "Cannot append an empty message");
		return;
	}
	if (msg->len > s->srv->size_limit) {
		imap_no(s, "[TOOBIG] Message too large");
		return;
	}
	if ((dst = open_target(s, name, &own)) == NULL)
		return;
	if (flags_arg != NULL) {
		/* keywords belong to the target mailbox */
		saved = s->mb;
		s->mb = dst;
		if (flags_to_letters(s, flags_arg->list, flags_arg->nlist,
		    true, letters, sizeof(letters)) < 0) {
			s->mb = saved;
			goto out;
		}
		s->mb = saved;
	}
	if (maildir_flags_normalize(letters, strlen(letters), norm) < 0)
		norm[0] = '\0';
	if (s->quota > 0 && maildir_quota_check(s->maildir, s->quota,
	    msg->len, &err) == 0) {
		imap_no(s, "[OVERQUOTA] Quota exceeded");
		goto out;
	}
	/* Stored with LF line ends, as delivered mail is. */
	for (size_t i = 0; i < msg->len; i++) {
		if (msg->str[i] == '\r' && i + 1 < msg->len &&
		    msg->str[i + 1] == '\n')
			continue;
		str_append_c(&lf, msg->str[i]);
	}
	if (maildir_tmp_open(dst->path, &tmp, &err) < 0 ||
	    maildir_tmp_write(tmp, lf.data, lf.len, &err) < 0 ||
	    maildir_tmp_commit_flags(&tmp, norm, &newpath, &err) < 0) {
		maildir_tmp_abort(&tmp);
		log_error("%lu: append to %s: %s", s->sid, dst->path, err);
		imap_no(s, "[SERVERBUG] Cannot save the message");
		goto out;
	}
	if (s->quota > 0)
		maildir_quota_add(s->maildir, (int64_t)lf.len, 1, &err);
	uid = mbox_uid_of_added(dst, basename_of(newpath), date, &err);
	if (uid == 0)
		imap_ok(s, "Append completed.");
	else
		imap_ok(s, "[APPENDUID %u %u] Append completed.",
		    dst->uidvalidity, uid);
out:
	free(newpath);
	str_free(&lf);
	if (!own)
		mbox_close(&dst);
}
