/*
 * envelope.c: IMAP ENVELOPE and BODY / BODYSTRUCTURE (RFC 3501 7.4.2)
 * from a part tree made by mime_parse().
 *
 * Addresses are parsed leniently per RFC 5322 (with the obsolete forms:
 * routes, unquoted dots in phrases, comments as names). Display names are
 * shown raw: quotes removed, RFC 2047 words left encoded, as RFC 3501
 * wants. Media types, subtypes, parameter names and disposition types
 * are shown upper-case; values as given.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/mime/mime.h"

#define ENVELOPE_NIL	"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
#define EMPTY_BODY \
	"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0"

/* The address parser's state over one unfolded header value. */
struct addr_parser {
	const char *p;
	str_t *out;
	size_t count;		/* addresses written */
	str_t comment;		/* the last comment seen, for a name */
	bool text;		/* write "name <local@host>" text (SEARCH),
				   not ENVELOPE address lists */
	struct mime_mailbox *first;	/* only take the first mailbox
					   (SORT): nothing is written */
	struct mime_mailbox **all;	/* or collect every mailbox
					   (Sieve's address test) */
	size_t *nall;
};

/* IMAP strings. */

static bool
needs_literal(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			return true;
	}
	return false;
}

/* A quoted string, or a literal when quoting cannot carry the bytes. */
static void
put_string(str_t *out, const char *s, size_t len)
{
	size_t i, start;

	if (needs_literal(s, len)) {
		str_printf(out, "{%zu}\r\n", len);
		str_append_n(out, s, len);
		return;
	}
	str_reserve(out, len + 2);
	str_append_c(out, '"');
	for (i = start = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			/* the run before it, then the escape */
			str_append_n(out, s + start, i - start);
			str_append_c(out, '\\');
			start = i;
		}
	}
	str_append_n(out, s + start, len - start);
	str_append_c(out, '"');
}

static void
put_nstring(str_t *out, const char *s)
{
	if (s == NULL)
		str_append(out, "NIL");
	else
		put_string(out, s, strlen(s));
}

static void
put_upper(str_t *out, const char *s)
{
	char *u = xstrdup(s);

	for (char *c = u; *c != '\0'; c++)
		*c = (char)toupper((unsigned char)*c);
	put_string(out, u, strlen(u));
	free(u);
}

/* Addresses (RFC 5322 3.4, with obs-addr-list). */

static bool
is_atext(unsigned char c)
{
	return c > ' ' && c != 0x7f && strchr("()<>[]:;@\\,\"", c) == NULL;
}

/* Skip white space and comments, keeping the last comment's text. */
static void
skip_cfws(struct addr_parser *ap)
{
	const char *p = ap->p, *start;
	size_t depth;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			break;
		start = p + 1;
		for (depth = 0; *p != '\0'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0)
				break;
		}
		str_truncate(&ap->comment, 0);
		str_append_n(&ap->comment, start, (size_t)(p - start));
		if (*p == ')')
			p++;
	}
	ap->p = p;
}

/* One word: an atom (dots included), a quoted string or a domain
 * literal. name gets it unquoted, raw gets it as written. */
static bool
read_word(struct addr_parser *ap, str_t *name, str_t *raw)
{
	const char *p = ap->p, *start = p;

	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			if (*p != '\r' && *p != '\n')
				str_append_c(name, *p);
		}
		if (*p == '"')
			p++;
	} else if (*p == '[') {
		while (*p != '\0' && *p != ']')
			p++;
		if (*p == ']')
			p++;
		str_append_n(name, start, (size_t)(p - start));
	} else {
		while (is_atext((unsigned char)*p))
			p++;
		if (p == start)
			return false;
		str_append_n(name, start, (size_t)(p - start));
	}
	str_append_n(raw, start, (size_t)(p - start));
	ap->p = p;
	return true;
}

/* A phrase (words joined by one space in name) or, the same tokens, a
 * local part (joined as written in raw). */
static void
read_phrase(struct addr_parser *ap, str_t *name, str_t *raw)
{
	for (;;) {
		skip_cfws(ap);
		if (name->len > 0 && (*ap->p == '"' || *ap->p == '[' ||
		    is_atext((unsigned char)*ap->p)))
			str_append_c(name, ' ');
		if (!read_word(ap, name, raw))
			break;
	}
}

/* A domain: dot-separated atoms or a literal; stops at a word that does
 * not continue the dots, so a missing comma does not glue two
 * addresses together. */
static void
read_domain(struct addr_parser *ap, str_t *host)
{
	str_t dummy = STR_INIT;

	for (;;) {
		skip_cfws(ap);
		if (host->len > 0 && host->data[host->len - 1] != '.' &&
		    *ap->p != '.')
			break;
		if (*ap->p == '"' || !read_word(ap, &dummy, host))
			break;
		/* only a comment after the whole address names it */
		str_truncate(&ap->comment, 0);
	}
	str_free(&dummy);
}

/* The text form: "name <local@host>", "local@host", "group: " and
 * ";", separated by ", ". */
static void
put_address_text(struct addr_parser *ap, const char *name,
    const char *mailbox, const char *host)
{
	str_t *out = ap->out;

	ap->count++;
	if (mailbox == NULL) {		/* a group's end */
		str_append_c(out, ';');
		return;
	}
	if (out->len > 0 && out->data[out->len - 1] != ' ')
		str_append(out, ", ");
	if (host == NULL) {		/* a group's start */
		str_append(out, mailbox);
		str_append(out, ": ");
		return;
	}
	if (name != NULL) {
		str_append(out, name);
		str_append(out, " <");
	}
	str_append(out, mailbox);
	if (*host != '\0') {
		str_append_c(out, '@');
		str_append(out, host);
	}
	if (name != NULL)
		str_append_c(out, '>');
}

static void
put_address(struct addr_parser *ap, const char *name, const char *adl,
    const char *mailbox, const char *host)
{
	if (ap->all != NULL) {
		if (mailbox != NULL && host != NULL &&
		    *ap->nall < MIME_ADDRESSES_MAX) {
			struct mime_mailbox *mb;

			*ap->all = xrealloc(*ap->all,
			    (*ap->nall + 1) * sizeof(**ap->all));
			mb = &(*ap->all)[(*ap->nall)++];
			mb->name = xstrdup(name != NULL ? name : "");
			mb->local = xstrdup(mailbox);
			mb->host = xstrdup(host);
		}
		ap->count++;
		return;
	}
	if (ap->first != NULL) {
		/* groups' start and end markers are not mailboxes */
		if (ap->count == 0 && mailbox != NULL && host != NULL) {
			ap->first->name = xstrdup(name != NULL ? name : "");
			ap->first->local = xstrdup(mailbox);
			ap->first->host = xstrdup(host);
			ap->count = 1;
		}
		return;
	}
	if (ap->text) {
		put_address_text(ap, name, mailbox, host);
		return;
	}
	str_append_c(ap->out, '(');
	put_nstring(ap->out, name);
	str_append_c(ap->out, ' ');
	put_nstring(ap->out, adl);
	str_append_c(ap->out, ' ');
	put_nstring(ap->out, mailbox);
	str_append_c(ap->out, ' ');
	put_nstring(ap->out, host);
	str_append_c(ap->out, ')');
	ap->count++;
}

/* After '<': [route ':'] local-part ['@' domain] '>'. */
static void
parse_angle(struct addr_parser *ap, const str_t *phrase)
{
	str_t adl = STR_INIT, local = STR_INIT, host = STR_INIT, dummy =
	    STR_INIT;
	const char *q;

	skip_cfws(ap);
	if (*ap->p == '@') {
		for (q = ap->p; *q != '\0' && *q != ':' && *q != '>'; q++)
			;
		if (*q == ':') {
			for (; ap->p < q; ap->p++) {
				if (!isspace((unsigned char)*ap->p))
					str_append_c(&adl, *ap->p);
			}
			ap->p++;
		}
	}
	read_phrase(ap, &dummy, &local);
	skip_cfws(ap);
	if (*ap->p == '@') {
		ap->p++;
		read_domain(ap, &host);
	}
	while (*ap->p != '\0' && *ap->p != '>' && *ap->p != ',')
		ap->p++;
	if (*ap->p == '>')
		ap->p++;
	skip_cfws(ap);
	/* The name is the phrase before '<' only: comments inside
	 * "<local (c)@ (c) host>" are not names (RFC 5322 3.4; Dovecot
	 * agrees). */
	put_address(ap, phrase->len > 0 ? str_c(phrase) : NULL,
	    adl.len > 0 ? str_c(&adl) : NULL, str_c(&local), str_c(&host));
	str_free(&adl);
	str_free(&local);
	str_free(&host);
	str_free(&dummy);
}

/* Skip what is left of a malformed address up to the next separator. */
static void
skip_to_separator(struct addr_parser *ap, bool in_group)
{
	while (*ap->p != '\0' && *ap->p != ',' && !(in_group &&
	    *ap->p == ';'))
		ap->p++;
}

static void parse_address(struct addr_parser *, bool);

/* After "name:": mailboxes up to ';', then the group's end marker. */
static void
parse_group(struct addr_parser *ap, const str_t *phrase)
{
	put_address(ap, NULL, NULL, str_c(phrase), NULL);
	for (;;) {
		skip_cfws(ap);
		if (*ap->p == '\0')
			break;
		if (*ap->p == ';') {
			ap->p++;
			break;
		}
		if (*ap->p == ',') {
			ap->p++;
			continue;
		}
		parse_address(ap, true);
	}
	put_address(ap, NULL, NULL, NULL, NULL);
}

static void
parse_address(struct addr_parser *ap, bool in_group)
{
	str_t phrase = STR_INIT, local = STR_INIT, host = STR_INIT;

	str_truncate(&ap->comment, 0);
	read_phrase(ap, &phrase, &local);
	skip_cfws(ap);
	if (*ap->p == ':' && !in_group) {
		ap->p++;
		parse_group(ap, &phrase);
	} else if (*ap->p == '<') {
		ap->p++;
		parse_angle(ap, &phrase);
	} else if (*ap->p == '@' && local.len > 0) {
		ap->p++;
		read_domain(ap, &host);
		skip_cfws(ap);
		put_address(ap, ap->comment.len > 0 ? str_c(&ap->comment) :
		    NULL, NULL, str_c(&local), str_c(&host));
	} else if (local.len > 0) {
		put_address(ap, ap->comment.len > 0 ? str_c(&ap->comment) :
		    NULL, NULL, str_c(&local), "");
	}
	skip_to_separator(ap, in_group);
	str_free(&phrase);
	str_free(&local);
	str_free(&host);
}

/* The address list in a field's value; false if the field is absent
 * (v NULL) or holds no address. */
static bool
put_addresses(str_t *out, const char *v)
{
	struct addr_parser ap;
	size_t mark = out->len;

	if (v == NULL)
		return false;
	memset(&ap, 0, sizeof(ap));
	ap.p = v;
	ap.out = out;
	str_append_c(out, '(');
	while (*ap.p != '\0') {
		skip_cfws(&ap);
		if (*ap.p == ',' || *ap.p == ';')
			ap.p++;
		else if (*ap.p != '\0')
			parse_address(&ap, false);
	}
	str_append_c(out, ')');
	str_free(&ap.comment);
	if (ap.count == 0)
		str_truncate(out, mark);
	return ap.count > 0;
}

void
mime_address_text(const char *value, str_t *out)
{
	struct addr_parser ap;

	memset(&ap, 0, sizeof(ap));
	ap.p = value;
	ap.out = out;
	ap.text = true;
	while (*ap.p != '\0') {
		skip_cfws(&ap);
		if (*ap.p == ',' || *ap.p == ';')
			ap.p++;
		else if (*ap.p != '\0')
			parse_address(&ap, false);
	}
	str_free(&ap.comment);
}

bool
mime_first_mailbox(const char *value, struct mime_mailbox *mb_r)
{
	struct addr_parser ap;
	str_t dummy = STR_INIT;

	memset(mb_r, 0, sizeof(*mb_r));
	if (value == NULL)
		return false;
	memset(&ap, 0, sizeof(ap));
	ap.p = value;
	ap.out = &dummy;
	ap.first = mb_r;
	while (*ap.p != '\0' && ap.count == 0) {
		skip_cfws(&ap);
		if (*ap.p == ',' || *ap.p == ';')
			ap.p++;
		else if (*ap.p != '\0')
			parse_address(&ap, false);
	}
	str_free(&ap.comment);
	str_free(&dummy);
	return mb_r->local != NULL;
}

size_t
mime_mailbox_list(const char *value, struct mime_mailbox **list_r)
{
	struct addr_parser ap;
	str_t dummy = STR_INIT;
	size_t n = 0;

	*list_r = NULL;
	if (value == NULL)
		return 0;
	memset(&ap, 0, sizeof(ap));
	ap.p = value;
	ap.out = &dummy;
	ap.all = list_r;
	ap.nall = &n;
	while (*ap.p != '\0') {
		skip_cfws(&ap);
		if (*ap.p == ',' || *ap.p == ';')
			ap.p++;
		else if (*ap.p != '\0')
			parse_address(&ap, false);
	}
	str_free(&ap.comment);
	str_free(&dummy);
	return n;
}

void
mime_mailbox_list_free(struct mime_mailbox *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mime_mailbox_clear(&list[i]);
	free(list);
}

void
mime_mailbox_clear(struct mime_mailbox *mb)
{
	free(mb->name);
	free(mb->local);
	free(mb->host);
	memset(mb, 0, sizeof(*mb));
}

void
mime_envelope(const char *data, const struct mime_part *msg, str_t *out)
{
	mime_envelope_header(data + msg->hdr_off, msg->hdr_len, out);
}

void
mime_envelope_header(const char *hdr, size_t len, str_t *out)
{
	enum {
		F_DATE, F_SUBJECT, F_FROM, F_SENDER, F_REPLY_TO, F_TO, F_CC,
		F_BCC, F_IN_REPLY_TO, F_MESSAGE_ID, F_N
	};
	static const char *const names[F_N] = {
		"date", "subject", "from", "sender", "reply-to", "to", "cc",
		"bcc", "in-reply-to", "message-id"
	};
	char *v[F_N];
	str_t from = STR_INIT;
	size_t i;

	mime_header_get_first(hdr, len, names, F_N, v);
	str_append_c(out, '(');
	put_nstring(out, v[F_DATE]);
	str_append_c(out, ' ');
	put_nstring(out, v[F_SUBJECT]);
	str_append_c(out, ' ');
	if (!put_addresses(&from, v[F_FROM]))
		str_append(&from, "NIL");
	str_append_n(out, from.data, from.len);
	/* RFC 3501: Sender and Reply-To default to From. */
	str_append_c(out, ' ');
	if (!put_addresses(out, v[F_SENDER]))
		str_append_n(out, from.data, from.len);
	str_append_c(out, ' ');
	if (!put_addresses(out, v[F_REPLY_TO]))
		str_append_n(out, from.data, from.len);
	for (i = F_TO; i <= F_BCC; i++) {
		str_append_c(out, ' ');
		if (!put_addresses(out, v[i]))
			str_append(out, "NIL");
	}
	str_append_c(out, ' ');
	put_nstring(out, v[F_IN_REPLY_TO]);
	str_append_c(out, ' ');
	put_nstring(out, v[F_MESSAGE_ID]);
	str_append_c(out, ')');
	str_free(&from);
	for (i = 0; i < F_N; i++)
		free(v[i]);
}

/* BODY / BODYSTRUCTURE. */

static void
put_params(str_t *out, const struct mime_param *v, size_t n)
{
	size_t i;

	if (n == 0) {
		str_append(out, "NIL");
		return;
	}
	str_append_c(out, '(');
	for (i = 0; i < n; i++) {
		if (i > 0)
			str_append_c(out, ' ');
		put_upper(out, v[i].name);
		str_append_c(out, ' ');
		put_nstring(out, v[i].value);
	}
	str_append_c(out, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void
put_dsp_lang_loc(str_t *out, const struct mime_part *part)
{
	size_t i;

	if (part->disposition == NULL) {
		str_append(out, "NIL");
	} else {
		str_append_c(out, '(');
		put_upper(out, part->disposition);
		str_append_c(out, ' ');
		put_params(out, part->disp_params, part->ndisp_params);
		str_append_c(out, ')');
	}
	str_append_c(out, ' ');
	if (part->nlanguages == 0) {
		str_append(out, "NIL");
	} else {
		str_append_c(out, '(');
		for (i = 0; i < part->nlanguages; i++) {
			if (i > 0)
				str_append_c(out, ' ');
			put_nstring(out, part->languages[i]);
		}
		str_append_c(out, ')');
	}
	str_append_c(out, ' ');
	put_nstring(out, part->location);
}

static void
put_empty_body(str_t *out, bool extended)
{
	str_append(out, EMPTY_BODY);
	if (extended)
		str_append(out, " NIL NIL NIL NIL");
	str_append_c(out, ')');
}

static void
put_multipart(const char *data, const struct mime_part *part,
    bool extended, str_t *out)
{
	size_t i;

	str_append_c(out, '(');
	if (part->nchildren == 0)
		put_empty_body(out, extended);	/* IMAP needs one part */
	for (i = 0; i < part->nchildren; i++)
		mime_bodystructure(data, &part->children[i], extended, out);
	str_append_c(out, ' ');
	put_upper(out, part->subtype);
	if (extended) {
		str_append_c(out, ' ');
		put_params(out, part->params, part->nparams);
		str_append_c(out, ' ');
		put_dsp_lang_loc(out, part);
	}
	str_append_c(out, ')');
}

/* message/rfc822: envelope, body and lines after the size. */
static void
put_message(const char *data, const struct mime_part *part, bool extended,
    str_t *out)
{
	str_append_c(out, ' ');
	if (part->message != NULL) {
		mime_envelope(data, part->message, out);
		str_append_c(out, ' ');
		mime_bodystructure(data, part->message, extended, out);
	} else {
		/* nested too deep to parse: an opaque message */
		str_append(out, ENVELOPE_NIL " ");
		put_empty_body(out, extended);
	}
	str_printf(out, " %zu", part->body_lines);
}

void
mime_bodystructure(const char *data, const struct mime_part *part,
    bool extended, str_t *out)
{
	if (strcmp(part->type, "multipart") == 0) {
		put_multipart(data, part, extended, out);
		return;
	}
	str_append_c(out, '(');
	put_upper(out, part->type);
	str_append_c(out, ' ');
	put_upper(out, part->subtype);
	str_append_c(out, ' ');
	put_params(out, part->params, part->nparams);
	str_append_c(out, ' ');
	put_nstring(out, part->id);
	str_append_c(out, ' ');
	put_nstring(out, part->description);
	str_append_c(out, ' ');
	put_nstring(out, part->encoding);
	str_printf(out, " %zu", part->body_len);
	if (strcmp(part->type, "text") == 0)
		str_printf(out, " %zu", part->body_lines);
	else if (strcmp(part->type, "message") == 0 &&
	    strcmp(part->subtype, "rfc822") == 0)
		put_message(data, part, extended, out);
	if (extended) {
		str_append_c(out, ' ');
		put_nstring(out, part->md5);
		str_append_c(out, ' ');
		put_dsp_lang_loc(out, part);
	}
	str_append_c(out, ')');
}
