/*
 * cmd_fetch.c: FETCH and UID FETCH. A long answer is made in chunks
 * across continuations of the job (s->cmd_state). They run on job
 * threads.
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
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/mime/mime.h"

/* ---- FETCH ---- */

struct fetch_state {
	size_t *idx;
	size_t n, pos;
	struct fetch_att att;
	bool modseq;		/* MODSEQ asked for, or CHANGEDSINCE */
	bool changedsince;	/* RFC 7162 3.1.4.1: only messages whose */
	uint64_t since;		/* modseq is above since */
	bool gone;		/* a message could not be read */
	bool unknown_cte;	/* a BINARY section had an encoding not
				   known (RFC 3516: NO [UNKNOWN-CTE]) */
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
void
imap_section_bytes(const char *wire, size_t wlen, const struct mime_part *root,
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
	uint64_t vsize;		/* the index's RFC822.SIZE, 0 if not known */
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

/* BINARY[section], BINARY.SIZE[section] (RFC 3516): the section with
 * its transfer encoding undone, into out; [] is the whole message, a
 * part that does not exist is empty. -1 for an encoding not known. */
static int
binary_bytes(struct fetch_msg *fm, const struct fetch_item *it, str_t *out)
{
	const str_t *w = msg_wire(fm);
	const struct mime_part *p;

	if (it->npart == 0) {
		str_append_n(out, w->data, w->len);
		return 0;
	}
	p = mime_part_find(mime_tree(fm), it->part, it->npart);
	if (p == NULL)
		return 0;
	return mime_part_decoded(w->data, p, out);
}

/* A literal, or a literal8 ("~{n}") when the data holds a NUL. */
static void
append_literal8(str_t *out, const char *data, size_t len)
{
	if (len > 0 && memchr(data, '\0', len) != NULL)
		str_append_c(out, '~');
	append_literal(out, data, len);
}

/* The whole message as a literal, in CRLF form: in one pass over the
 * file's bytes when the index knows its size (RFC822.SIZE is the CRLF
 * size), else sized by a pass first. */
static void
append_message(str_t *out, struct fetch_msg *fm)
{
	if (fm->have_wire) {
		append_literal(out, fm->wire.data, fm->wire.len);
		return;
	}
	mime_append_crlf_literal_expect(fm->raw, fm->rawlen, fm->vsize, out);
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

/* Can every item be answered without the message's file: from the
 * index (FLAGS, UID, and INTERNALDATE and RFC822.SIZE once learned) and
 * the cache (ENVELOPE, BODY, BODYSTRUCTURE, looked up again into
 * cached)? */
static bool
answer_without_file(struct imap_session *s, const struct fetch_att *att,
    size_t i, char *cached[MBOX_CACHE_KINDS])
{
	const struct mbox_msg *m = mbox_msg(s->mb, i);

	for (size_t k = 0; k < att->n; k++) {
		enum mbox_cache_kind ck;

		switch (att->items[k].kind) {
		case FETCH_FLAGS:
		case FETCH_UID:
		case FETCH_EMAILID:
		case FETCH_THREADID:
		case FETCH_SAVEDATE:
		case FETCH_MODSEQ:
			continue;
		case FETCH_INTERNALDATE:
		case FETCH_RFC822_SIZE:
			if (m->info_pending)
				return false;
			continue;
		case FETCH_ENVELOPE:
			ck = MBOX_CACHE_ENVELOPE;
			break;
		case FETCH_BODY:
			ck = MBOX_CACHE_BODY;
			break;
		case FETCH_BODYSTRUCTURE:
			ck = MBOX_CACHE_BODYSTRUCTURE;
			break;
		case FETCH_PREVIEW:
			if (att->items[k].lazy)
				continue;	/* NIL will do */
			ck = MBOX_CACHE_PREVIEW;
			break;
		default:
			return false;	/* the message's bytes */
		}
		if (cached[ck] == NULL)
			cached[ck] = mbox_cache_get(s->mb, i, ck);
		if (cached[ck] == NULL)
			return false;
	}
	return true;
}

static bool
fetch_one(struct imap_session *s, struct fetch_state *fs, size_t i)
{
	struct mbox_msg *m = mbox_msg(s->mb, i);
	const struct fetch_att *att = &fs->att;
	char *cached[MBOX_CACHE_KINDS] = { NULL };
	bool need_data = false, need_info = false, set_seen = false;
	bool flags_shown = false, modseq_shown = false;
	struct fetch_msg fm = { NULL, 0, 0, STR_INIT, false, NULL };
	str_t *line = &s->out, *bin = NULL;
	bool first = true, ok = true;

	for (size_t k = 0; k < att->n; k++) {
		enum fetch_kind kd = att->items[k].kind;
		enum mbox_cache_kind ck;

		if (kd == FETCH_ENVELOPE)
			ck = MBOX_CACHE_ENVELOPE;
		else if (kd == FETCH_BODY)
			ck = MBOX_CACHE_BODY;
		else if (kd == FETCH_BODYSTRUCTURE)
			ck = MBOX_CACHE_BODYSTRUCTURE;
		else if (kd == FETCH_PREVIEW) {
			ck = MBOX_CACHE_PREVIEW;
			if (cached[ck] == NULL)
				cached[ck] = mbox_cache_get(s->mb, i, ck);
			/* LAZY (RFC 8970 3.2): NIL rather than a read */
			if (cached[ck] == NULL && !att->items[k].lazy)
				need_data = true;
			continue;
		} else {
			if (kd == FETCH_RFC822 || kd == FETCH_RFC822_HEADER ||
			    kd == FETCH_RFC822_TEXT || kd == FETCH_SECTION ||
			    kd == FETCH_BINARY || kd == FETCH_BINARY_SIZE)
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
	if (need_data &&
	    imap_read_message(s, i, &fm.raw, &fm.rawlen) < 0) {
		/* The file is gone: expunged by another session (RFC 2180
		 * 4.1.1, 4.1.2). Until this session is told, answer from
		 * what the index and the cache still hold (the sync that
		 * found it gone may have learned more); NO [EXPUNGEISSUED]
		 * only when an item is left that only the file had. */
		m = mbox_msg(s->mb, i);
		if (!answer_without_file(s, att, i, cached)) {
			for (size_t k = 0; k < MBOX_CACHE_KINDS; k++)
				free(cached[k]);
			fs->gone = true;
			return false;
		}
		need_data = false;
	} else if (need_data) {
		m = mbox_msg(s->mb, i);
		if (!m->info_pending)
			fm.vsize = m->vsize;
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
			log_warn("%016llx: %s", SID(&s->base), err);
		if (r != 0) {
			for (size_t k = 0; k < MBOX_CACHE_KINDS; k++)
				free(cached[k]);
			fs->gone = true;
			return false;
		}
		m = mbox_msg(s->mb, i);
	}
	/* BINARY sections decoded before anything is written: one whose
	 * encoding is not known fails the FETCH, and this message gets no
	 * response at all */
	for (size_t k = 0; need_data && k < att->n; k++) {
		const struct fetch_item *it = &att->items[k];

		if (it->kind != FETCH_BINARY && it->kind != FETCH_BINARY_SIZE)
			continue;
		if (bin == NULL)
			bin = xcalloc(att->n, sizeof(*bin));
		if (binary_bytes(&fm, it, &bin[k]) < 0) {
			fs->unknown_cte = true;
			ok = false;
			goto out;
		}
	}
	if (att->sets_seen && !s->readonly && !m->expunged &&
	    !mbox_msg_has(m, 'S')) {
		char flags[MAILDIR_FLAGS_MAX + 1];
		const char *err;

		mbox_bits_flags(m->flagbits | mbox_flag_bit('S'), flags);
		if (mbox_set_flags(s->mb, i, flags, &err) < 0)
			log_warn("%016llx: %s", SID(&s->base), err);
		/* published now, so that the MODSEQ shown is the new one */
		if (s->condstore && mbox_flush(s->mb, &err) < 0)
			log_warn("%016llx: %s", SID(&s->base), err);
		m = mbox_msg(s->mb, i);
		m->flags_changed = false;
		set_seen = true;
	}
	/* The MIME tree is built only for an item that needs it. Nothing
	 * below fails: the response is written into s->out as it goes,
	 * after FLAGS if the flags may name a keyword not announced yet
	 * (one another session made, or a sync just learned). */
	imap_announce_keywords(s);
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
			imap_flags_string(s, m, line);
			str_append_c(line, ')');
			flags_shown = true;
			break;
		case FETCH_UID:
			str_printf(line, "UID %u", m->uid);
			break;
		case FETCH_MODSEQ:
			str_printf(line, "MODSEQ (%llu)",
			    (unsigned long long)m->modseq);
			modseq_shown = true;
			break;
		case FETCH_EMAILID: {
			char id[MBOX_OBJECTID_MAX + 1];

			mbox_emailid(m->name, id);
			str_printf(line, "EMAILID (%s)", id);
			break;
		}
		case FETCH_THREADID:
			/* RFC 8474 5.2: threads are not tracked */
			str_append(line, "THREADID NIL");
			break;
		case FETCH_PREVIEW:
			str_append(line, "PREVIEW ");
			if (cached[MBOX_CACHE_PREVIEW] == NULL &&
			    (fm.raw != NULL || fm.have_wire)) {
				str_t pv = STR_INIT;

				mime_preview(msg_wire(&fm)->data,
				    mime_tree(&fm), &pv);
				mbox_cache_put(s->mb, i, MBOX_CACHE_PREVIEW,
				    str_c(&pv));
				cached[MBOX_CACHE_PREVIEW] = str_steal(&pv);
			}
			if (cached[MBOX_CACHE_PREVIEW] == NULL)
				str_append(line, "NIL");	/* LAZY */
			else
				imap_append_string(line,
				    cached[MBOX_CACHE_PREVIEW],
				    strlen(cached[MBOX_CACHE_PREVIEW]));
			break;
		case FETCH_SAVEDATE: {
			/* RFC 8514: from the file name (mbox_objectid.c) */
			long long t = mbox_savedate(m->name);

			str_append(line, "SAVEDATE ");
			if (t >= 0)
				imap_datetime_format(t, line);
			else
				str_append(line, "NIL");
			break;
		}
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
				imap_section_bytes(fm.wire.data, fm.wire.len,
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
		case FETCH_BINARY: {
			size_t off = 0, len = bin[k].len;

			if (it->partial) {
				off = it->origin < len ? it->origin : len;
				len -= off;
				if (len > it->count)
					len = it->count;
			}
			str_append(line, it->label);
			str_append_c(line, ' ');
			append_literal8(line, bin[k].data != NULL ?
			    bin[k].data + off : "", len);
			break;
		}
		case FETCH_BINARY_SIZE:
			str_printf(line, "%s %zu", it->label, bin[k].len);
			break;
		}
		if (ck != MBOX_CACHE_KINDS) {
			if (cached[ck] == NULL)
				cached[ck] = structure(s, i, ck, &fm);
			str_append(line, cached[ck]);
		}
	}
	if (set_seen && !flags_shown) {
		str_append(line, first ? "FLAGS (" : " FLAGS (");
		imap_flags_string(s, m, line);
		str_append_c(line, ')');
		first = false;
	}
	if (((set_seen && s->condstore) || fs->modseq) && !modseq_shown)
		str_printf(line, "%sMODSEQ (%llu)", first ? "" : " ",
		    (unsigned long long)m->modseq);
	str_append(line, ")\r\n");
out:
	for (size_t k = 0; k < MBOX_CACHE_KINDS; k++)
		free(cached[k]);
	for (size_t k = 0; bin != NULL && k < att->n; k++)
		str_free(&bin[k]);
	free(bin);
	if (fm.root != NULL)
		mime_free(fm.root);
	str_free(&fm.wire);
	free(fm.raw);
	return ok;
}

void
imap_fetch_messages(struct imap_session *s, const struct fetch_att *att,
    size_t from, size_t to)
{
	struct fetch_state fs = { 0 };
	const char *err;

	fs.att = *att;		/* borrowed: not freed here */
	for (size_t i = from; i < to && s->mb != NULL && i < s->mb->n; i++)
		fetch_one(s, &fs, i);
	if (s->mb != NULL && mbox_flush(s->mb, &err) < 0)
		log_warn("%016llx: %s", SID(&s->base), err);
}

void
imap_cmd_fetch(struct imap_session *s, struct imap_cmd *c)
{
	struct fetch_state *fs = s->cmd_state;
	const char *err = NULL;

	if (fs == NULL) {
		const char *set;

		/* "FETCH 1 PREVIEW (LAZY)": one item with its modifiers
		 * (RFC 8970 4), read as the list "(PREVIEW (LAZY))" */
		struct imap_arg one = { .type = IMAP_ARG_LIST,
		    .list = c->args + 1, .nlist = 2 };
		bool mods = c->nargs == 3 &&
		    c->args[1].type == IMAP_ARG_ATOM &&
		    strcasecmp(c->args[1].str, "PREVIEW") == 0 &&
		    c->args[2].type == IMAP_ARG_LIST;

		const struct imap_arg *fmods = NULL;
		bool vanished = false;

		/* FETCH modifiers (RFC 4466): "(CHANGEDSINCE n [VANISHED])" */
		if (c->nargs == 3 && !mods)
			fmods = &c->args[2];
		if ((c->nargs != 2 && !mods && fmods == NULL) ||
		    c->args[0].type != IMAP_ARG_ATOM ||
		    (fmods != NULL && fmods->type != IMAP_ARG_LIST)) {
			imap_bad(s, "FETCH needs a sequence set and items");
			return;
		}
		set = c->args[0].str;
		fs = xcalloc(1, sizeof(*fs));
		for (size_t k = 0; fmods != NULL && k < fmods->nlist; k++) {
			const struct imap_arg *a = &fmods->list[k];
			char *end;

			if (a->type == IMAP_ARG_ATOM &&
			    strcasecmp(a->str, "CHANGEDSINCE") == 0 &&
			    k + 1 < fmods->nlist && !fs->changedsince &&
			    fmods->list[k + 1].type == IMAP_ARG_ATOM &&
			    fmods->list[k + 1].str[0] >= '0' &&
			    fmods->list[k + 1].str[0] <= '9') {
				errno = 0;
				fs->since = strtoull(fmods->list[k + 1].str,
				    &end, 10);
				if (errno != 0 || *end != '\0' ||
				    fs->since > INT64_MAX)
					goto bad_mods;
				fs->changedsince = true;
				k++;
			} else if (a->type == IMAP_ARG_ATOM &&
			    strcasecmp(a->str, "VANISHED") == 0 &&
			    !vanished) {
				vanished = true;
			} else {
				goto bad_mods;
			}
		}
		/* RFC 7162 3.2.6: VANISHED needs UID FETCH, CHANGEDSINCE
		 * and QRESYNC enabled */
		if (vanished && (!c->uid || !fs->changedsince ||
		    !s->qresync)) {
bad_mods:
			free(fs);
			imap_bad(s, "Invalid FETCH modifiers");
			return;
		}
		if (imap_fetch_parse(mods ? &one : &c->args[1], &fs->att,
		    &err) < 0) {
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
		if (vanished && mbox_sync(s->mb, NULL, &err) < 0)
			/* the answer is then as of the last sync; what is
			 * left is reported after the command */
			log_warn("%016llx: %s", SID(&s->base), err);
		if (imap_resolve_set(s, set, c->uid, &fs->idx,
		    &fs->n) < 0) {
			imap_fetch_free(&fs->att);
			free(fs);
			imap_bad(s, "Invalid sequence set");
			return;
		}
		for (size_t k = 0; k < fs->att.n; k++)
			if (fs->att.items[k].kind == FETCH_MODSEQ)
				fs->modseq = true;
		if (fs->changedsince) {
			/* only the messages changed since (RFC 7162
			 * 3.1.4.1), MODSEQ implied */
			size_t out = 0;

			fs->modseq = true;
			for (size_t k = 0; k < fs->n; k++)
				if (mbox_msg(s->mb, fs->idx[k])->modseq >
				    fs->since && fs->idx[k] < s->known)
					fs->idx[out++] = fs->idx[k];
			fs->n = out;
		}
		if (fs->modseq)
			imap_condstore_enable(s);
		if (vanished) {
			struct imap_seqset uset;

			if (imap_seqset_parse(set, &uset) == 0) {
				imap_report_vanished_since(s, fs->since,
				    &uset);
				imap_seqset_free(&uset);
			}
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
	if (fs->unknown_cte)
		imap_no(s, "[UNKNOWN-CTE] A section has an unknown "
		    "Content-Transfer-Encoding.");
	else if (fs->gone)
		imap_no(s, "[EXPUNGEISSUED] Some messages were expunged.");
	else
		imap_ok(s, "Fetch completed.");
}
