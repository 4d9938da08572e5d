/*
 * parse.c: the SMTP command and message-data parsers (see parse.h).
 *
 * Trust: every byte is the client's. Nothing here reads past the given
 * length or a NUL, allocates more than the input's size, or keeps state
 * beyond the small structs the caller owns.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/smtp/parse.h"

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{ "HELO", SMTP_HELO }, { "EHLO", SMTP_EHLO }, { "MAIL", SMTP_MAIL },
	{ "RCPT", SMTP_RCPT }, { "DATA", SMTP_DATA }, { "BDAT", SMTP_BDAT },
	{ "RSET", SMTP_RSET }, { "NOOP", SMTP_NOOP }, { "QUIT", SMTP_QUIT },
	{ "VRFY", SMTP_VRFY }, { "HELP", SMTP_HELP }, { "AUTH", SMTP_AUTH },
	{ "STARTTLS", SMTP_STARTTLS }, { "LHLO", SMTP_LHLO },
};

enum smtp_verb
smtp_verb(const char *line, const char **arg)
{
	size_t vlen = strcspn(line, " ");
	const char *a = line + vlen;

	while (*a == ' ')
		a++;
	*arg = a;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (vlen == strlen(verbs[i].name) &&
		    strncasecmp(line, verbs[i].name, vlen) == 0)
			return verbs[i].verb;
	if (strncasecmp(line, "GET ", 4) == 0 ||
	    strncasecmp(line, "POST ", 5) == 0)
		return SMTP_HTTP;
	return SMTP_UNKNOWN;
}

char *
smtp_parse_path(const char *arg, const char **rest)
{
	const char *p = arg, *end;

	while (*p == ' ')
		p++;
	if (*p != '<')
		return NULL;
	p++;
	end = strchr(p, '>');
	if (end == NULL)
		return NULL;
	if (*p == '@') {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon == NULL)
			return NULL;
		p = colon + 1;
	}
	*rest = end + 1;
	return xstrndup(p, (size_t)(end - p));
}

char *
smtp_parse_path_loose(const char *arg, const char **rest)
{
	const char *p = arg;
	size_t n;

	while (*p == ' ')
		p++;
	if (*p == '<')
		return smtp_parse_path(p, rest);
	n = strcspn(p, " ");
	if (n == 0 || memchr(p, '<', n) != NULL || memchr(p, '>', n) != NULL)
		return NULL;
	*rest = p + n;
	return xstrndup(p, n);
}

const char *
smtp_mail_params(const char *rest, uint64_t size_limit, bool tls,
    struct smtp_mail_params *p)
{
	char *copy = xstrdup(rest), *save = NULL, *tok;
	const char *err = NULL;

	memset(p, 0, sizeof(*p));
	for (tok = strtok_r(copy, " ", &save); tok != NULL && err == NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		const char *val = eq ? eq + 1 : NULL;

		if (eq != NULL)
			*eq = '\0';
		if (strcasecmp(tok, "SIZE") == 0) {
			char *e;

			if (val == NULL || !isdigit((unsigned char)*val)) {
				err = "501 5.5.4 Bad SIZE parameter";
				break;
			}
			errno = 0;
			p->size = strtoull(val, &e, 10);
			if (*e != '\0' || errno != 0)
				err = "501 5.5.4 Bad SIZE parameter";
			else if (p->size > size_limit)
				err = "552 5.3.4 Message size exceeds fixed "
				    "limit";
		} else if (strcasecmp(tok, "BODY") == 0) {
			if (val == NULL || (strcasecmp(val, "7BIT") != 0 &&
			    strcasecmp(val, "8BITMIME") != 0 &&
			    strcasecmp(val, "BINARYMIME") != 0))
				err = "501 5.5.4 Bad BODY parameter";
		} else if (strcasecmp(tok, "SMTPUTF8") == 0 && val == NULL) {
			p->smtputf8 = true;
		} else if (strcasecmp(tok, "REQUIRETLS") == 0 && val == NULL &&
		    tls) {
			/* RFC 8689: the message may only travel over TLS
			 * with a verified certificate (kept in the queue
			 * file; queue/outbound.c). Offered only under TLS:
			 * elsewhere it is an option this server lacks. */
			p->requiretls = true;
		} else if (strcasecmp(tok, "AUTH") == 0 ||
		    strcasecmp(tok, "RET") == 0 ||
		    strcasecmp(tok, "ENVID") == 0) {
			/* Accepted and ignored (RFC 4954 5, RFC 3461). */
		} else {
			err = "555 5.5.4 Unsupported option";
		}
	}
	free(copy);
	return err;
}

int
smtp_parse_bdat(const char *arg, uint64_t *size, bool *last)
{
	char *end;
	unsigned long long n;

	if (!isdigit((unsigned char)*arg))
		return -1;
	errno = 0;
	n = strtoull(arg, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ' '))
		return -1;
	while (*end == ' ')
		end++;
	if (*end != '\0' && strcasecmp(end, "LAST") != 0)
		return -1;
	*size = n;
	*last = *end != '\0';
	return 0;
}

void
smtp_dot_init(struct smtp_dot *d)
{
	d->bol = true;
	d->prev_crlf = true;
}

bool
smtp_dot_line(struct smtp_dot *d, const char *line, size_t n,
    smtp_sink_fn sink, void *ctx)
{
	bool crlf = n >= 2 && line[n - 2] == '\r';

	if (d->bol && d->prev_crlf && crlf && n == 3 && line[0] == '.')
		return true;	/* <CRLF>.<CRLF> */
	/* RFC 5321 4.5.2: remove one leading dot, where a client stuffs one:
	 * at the start of a line after CRLF. A dot after a bare LF is
	 * content, kept (the outbound client stuffs it for the next hop). */
	if (d->bol && d->prev_crlf && n > 0 && line[0] == '.') {
		line++;
		n--;
	}
	if (crlf) {
		if (n > 2)
			sink(ctx, line, n - 2);
		sink(ctx, "\n", 1);
	} else if (n > 0) {
		sink(ctx, line, n);
	}
	d->prev_crlf = crlf;
	d->bol = true;
	return false;
}

void
smtp_dot_partial(struct smtp_dot *d, const char *p, size_t n,
    smtp_sink_fn sink, void *ctx)
{
	if (d->bol && d->prev_crlf && n > 0 && p[0] == '.') {
		p++;
		n--;
	}
	if (n > 0)
		sink(ctx, p, n);
	d->bol = false;
}

void
smtp_bdat_bytes(bool *pending_cr, const char *buf, size_t n,
    smtp_sink_fn sink, void *ctx)
{
	size_t i, start = 0;

	if (n == 0)
		return;
	if (*pending_cr) {
		*pending_cr = false;
		if (buf[0] != '\n')
			sink(ctx, "\r", 1);
	}
	for (i = 0; i < n; i++) {
		if (buf[i] != '\r')
			continue;
		if (i + 1 == n) {
			if (i > start)
				sink(ctx, buf + start, i - start);
			*pending_cr = true;
			return;
		}
		if (buf[i + 1] == '\n') {
			if (i > start)
				sink(ctx, buf + start, i - start);
			start = i + 1;
		}
	}
	if (start < n)
		sink(ctx, buf + start, n - start);
}

void
smtp_bdat_end(bool *pending_cr, smtp_sink_fn sink, void *ctx)
{
	if (*pending_cr)
		sink(ctx, "\r", 1);
	*pending_cr = false;
}
