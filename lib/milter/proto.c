/*
 * proto.c: the milter protocol's wire form, without I/O (milter.h):
 * packets cut from received bytes, reply packets decoded and checked
 * against the shape of their command, a filter's reply text made into
 * one safe SMTP line, and the `milters` list parsed.
 *
 * Trust: everything here comes from a filter, a separate program. A
 * length is believed only when the bytes it counts are there and it is
 * within MILTER_PACKET_MAX; every string must end with its NUL inside its
 * packet.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/str.h"
#include "lib/milter/milter.h"

static uint32_t
get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

int
milter_frame(const unsigned char *buf, size_t len, struct milter_packet *p,
    size_t *used, const char **error_r)
{
	uint32_t n;

	if (len < 4)
		return 0;
	n = get_u32(buf);
	if (n == 0)
		return err_fail(error_r, ERR_SYNTAX, "empty packet");
	if (n > MILTER_PACKET_MAX)
		return err_fail(error_r, ERR_SYNTAX, "packet of %lu octets "
		    "(at most %d)", (unsigned long)n, MILTER_PACKET_MAX);
	if (len - 4 < n)
		return 0;
	p->cmd = (char)buf[4];
	p->data = buf + 5;
	p->len = n - 1;
	*used = 4 + (size_t)n;
	return 1;
}

/* The next NUL-terminated string at data[*off], within len. */
static const char *
take_string(unsigned char *data, size_t len, size_t *off)
{
	const unsigned char *nul;
	const char *s;

	if (*off >= len)
		return NULL;
	nul = memchr(data + *off, '\0', len - *off);
	if (nul == NULL)
		return NULL;
	s = (const char *)data + *off;
	*off = (size_t)(nul - data) + 1;
	return s;
}

int
milter_decode(char cmd, unsigned char *data, size_t len,
    struct milter_reply *r, const char **error_r)
{
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	r->cmd = cmd;
	switch (cmd) {
	case SMFIR_ACCEPT:
	case SMFIR_CONTINUE:
	case SMFIR_DISCARD:
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_PROGRESS:
	case SMFIR_SKIP:
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL:
		/* no data; any is ignored */
		return 0;
	case SMFIC_OPTNEG:
		/* version, actions, steps; a version 6 filter may append
		 * the macros it wants per stage, which are not used */
		if (len < 12)
			return err_fail(error_r, ERR_SYNTAX, "option "
			    "negotiation of %zu octets", len);
		r->version = get_u32(data);
		r->actions = get_u32(data + 4);
		r->protocol = get_u32(data + 8);
		return 0;
	case SMFIR_REPLBODY:
		r->body = data;
		r->body_len = len;
		return 0;
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		if (len < 4)
			return err_fail(error_r, ERR_SYNTAX, "header change "
			    "without an index");
		r->index = get_u32(data);
		off = 4;
		/* FALLTHROUGH */
	case SMFIR_ADDHEADER:
		r->name = take_string(data, len, &off);
		r->value = take_string(data, len, &off);
		if (r->name == NULL || r->value == NULL)
			return err_fail(error_r, ERR_SYNTAX, "header change "
			    "'%c' without its name and value", cmd);
		if (!milter_header_name_ok(r->name))
			return err_fail(error_r, ERR_SYNTAX, "bad header "
			    "name in change '%c'", cmd);
		if (strlen(r->value) > MILTER_VALUE_MAX)
			return err_fail(error_r, ERR_SYNTAX, "header value "
			    "over %d octets", MILTER_VALUE_MAX);
		return 0;
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_CHGFROM:
	case SMFIR_QUARANTINE:
	case SMFIR_REPLYCODE:
		/* one string (ESMTP arguments may follow: ignored) */
		r->name = take_string(data, len, &off);
		if (r->name == NULL)
			return err_fail(error_r, ERR_SYNTAX, "reply '%c' "
			    "without its string", cmd);
		return 0;
	default:
		return err_fail(error_r, ERR_SYNTAX, "unknown reply 0x%02x",
		    (unsigned char)cmd);
	}
}

bool
milter_header_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > MILTER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x21 ||
		    (unsigned char)name[i] > 0x7e || name[i] == ':')
			return false;
	return true;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of an enhanced status code "c.s.d" at p (RFC 3463), else 0. */
static size_t
enhanced_len(const char *p)
{
	size_t i = 0, part;

	if (p[0] != '2' && p[0] != '4' && p[0] != '5')
		return 0;
	if (p[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		size_t start = i;

		while (is_digit(p[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0 && p[i++] != '.')
			return 0;
	}
	if (p[i] != ' ' && p[i] != '\0')
		return 0;
	return i;
}

#define REPLY_TEXT_MAX 400

char *
milter_reply_line(const char *text, bool want_temp)
{
	str_t out = STR_INIT;
	const char *p;
	size_t n, elen;

	if (!is_digit(text[0]) || !is_digit(text[1]) || !is_digit(text[2]) ||
	    (text[3] != ' ' && text[3] != '-' && text[3] != '\0' &&
	    text[3] != '\r' && text[3] != '\n'))
		return NULL;
	if (text[0] != '4' && text[0] != '5')
		return NULL;
	if (want_temp != (text[0] == '4'))
		return NULL;
	str_append_n(&out, text, 3);
	str_append_c(&out, ' ');
	p = text + 3;
	if (*p == ' ' || *p == '-')
		p++;
	elen = enhanced_len(p);
	if (elen > 0 && p[0] == text[0]) {
		str_append_n(&out, p, elen);
		p += elen;
		if (*p == ' ')
			p++;
	} else {
		if (elen > 0) {
			/* of another class than the reply: dropped */
			p += elen;
			if (*p == ' ')
				p++;
		}
		str_append(&out, text[0] == '4' ? "4.7.1" : "5.7.1");
	}
	/* the first line only, printable ASCII */
	n = strcspn(p, "\r\n");
	if (n > REPLY_TEXT_MAX)
		n = REPLY_TEXT_MAX;
	if (n > 0)
		str_append_c(&out, ' ');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		str_append_c(&out, c >= 0x20 && c < 0x7f ? (char)c : '?');
	}
	if (n == 0)
		str_append(&out, text[0] == '4' ? " Service unavailable, "
		    "try again later" : " Message rejected");
	return str_steal(&out);
}

/* ---- the milters list ---- */

static int
spec_parse(const char *item, struct milter_spec *sp, const char **error_r)
{
	memset(sp, 0, sizeof(*sp));
	if (strncmp(item, "unix:", 5) == 0) {
		const char *path = item + 5;

		if (path[0] != '/' || strlen(path) >= 108)
			return err_fail(error_r, ERR_SYNTAX, "milter \"%s\": "
			    "unix: needs an absolute path under 108 octets",
			    item);
		sp->path = xstrdup(path);
	} else if (strncmp(item, "inet:", 5) == 0 ||
	    strncmp(item, "inet6:", 6) == 0) {
		const char *rest = strchr(item, ':') + 1, *colon;
		char *end;
		unsigned long port;

		if (rest[0] == '[') {
			const char *close = strchr(rest, ']');

			if (close == NULL || close[1] != ':' || close == rest + 1)
				return err_fail(error_r, ERR_SYNTAX, "milter "
				    "\"%s\": expected inet:[HOST]:PORT", item);
			sp->host = xstrndup(rest + 1, (size_t)(close - rest - 1));
			colon = close + 1;
		} else {
			colon = strrchr(rest, ':');
			if (colon == NULL || colon == rest)
				return err_fail(error_r, ERR_SYNTAX, "milter "
				    "\"%s\": expected inet:HOST:PORT", item);
			sp->host = xstrndup(rest, (size_t)(colon - rest));
		}
		errno = 0;
		port = strtoul(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || errno != 0 ||
		    port == 0 || port > 65535 || !is_digit(colon[1])) {
			xfree(&sp->host);
			return err_fail(error_r, ERR_SYNTAX, "milter \"%s\": "
			    "bad port", item);
		}
		sp->port = xstrdup(colon + 1);
	} else {
		return err_fail(error_r, ERR_SYNTAX, "milter \"%s\": expected "
		    "inet:HOST:PORT or unix:PATH", item);
	}
	sp->text = xstrdup(item);
	return 0;
}

int
milter_specs_parse(const char *value, struct milter_spec **specs, size_t *n,
    const char **error_r)
{
	char *copy = xstrdup(value), *save = NULL, *item;
	struct milter_spec *list = NULL;
	size_t count = 0;

	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		item = str_trim(item);
		if (*item == '\0')
			continue;
		if (count == MILTER_MAX) {
			milter_specs_free(list, count);
			free(copy);
			return err_fail(error_r, ERR_SYNTAX, "more than %d "
			    "milters", MILTER_MAX);
		}
		list = xrealloc(list, (count + 1) * sizeof(*list));
		if (spec_parse(item, &list[count], error_r) < 0) {
			milter_specs_free(list, count);
			free(copy);
			return -1;
		}
		count++;
	}
	free(copy);
	*specs = list;
	*n = count;
	return 0;
}

void
milter_specs_free(struct milter_spec *specs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(specs[i].text);
		free(specs[i].host);
		free(specs[i].port);
		free(specs[i].path);
	}
	free(specs);
}
