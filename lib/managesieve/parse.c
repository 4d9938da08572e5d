/*
 * parse.c: ManageSieve command syntax (see parse.h).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/managesieve/parse.h"

/* RFC 5804 4: ATOM-SPECIALS and CTL end an atom. */
static bool
atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' &&
	    c != '"' && c != '\\';
}

static int
fail(const char **error_r, const char *text)
{
	*error_r = text;
	return -1;
}

int
msieve_parse(const char *buf, size_t len, struct msieve_cmd *c,
    const char **error_r)
{
	size_t i = 0, n = 0;
	size_t offs[MSIEVE_ARGS_MAX];

	memset(c, 0, sizeof(*c));
	/* room for every argument at once: the text is never moved (and
	 * left unwiped) by a realloc */
	str_reserve(&c->buf, len + MSIEVE_ARGS_MAX + 1);
	while (i < len && atom_char((unsigned char)buf[i])) {
		if (n + 1 >= sizeof(c->name))
			return fail(error_r, "Unknown command");
		c->name[n++] = (char)toupper((unsigned char)buf[i++]);
	}
	if (n == 0)
		return fail(error_r, "Expected a command name");
	while (i < len) {
		struct msieve_arg *a;

		if (buf[i] != ' ')
			return fail(error_r, "Expected a space between "
			    "arguments");
		i++;
		if (i == len)
			return fail(error_r, "Expected an argument after the "
			    "space");
		if (c->nargs == MSIEVE_ARGS_MAX)
			return fail(error_r, "Too many arguments");
		a = &c->args[c->nargs];
		offs[c->nargs] = c->buf.len;
		if (buf[i] == '"') {
			size_t start = c->buf.len;

			for (i++;; i++) {
				unsigned char ch;

				if (i == len)
					return fail(error_r, "Unterminated "
					    "quoted string");
				ch = (unsigned char)buf[i];
				if (ch == '"')
					break;
				if (ch == '\\') {
					if (i + 1 == len || (buf[i + 1] != '"' &&
					    buf[i + 1] != '\\'))
						return fail(error_r, "Invalid "
						    "escape in quoted string");
					ch = (unsigned char)buf[++i];
				} else if (ch == '\0' || ch == '\r' ||
				    ch == '\n') {
					return fail(error_r, "Invalid character "
					    "in quoted string");
				}
				if (c->buf.len - start >= MSIEVE_QUOTED_MAX)
					return fail(error_r, "Quoted string "
					    "too long");
				str_append_c(&c->buf, (char)ch);
			}
			i++;
			a->type = MSIEVE_STRING;
			a->len = c->buf.len - start;
		} else if (buf[i] == '{') {
			uint64_t size = 0;
			size_t digits = 0;

			for (i++; i < len && buf[i] >= '0' && buf[i] <= '9';
			    i++, digits++) {
				if (size > (UINT64_MAX - 9) / 10)
					return fail(error_r, "Invalid literal");
				size = size * 10 + (uint64_t)(buf[i] - '0');
			}
			if (i < len && buf[i] == '+')
				i++;
			if (digits == 0 || len - i < 3 || buf[i] != '}' ||
			    buf[i + 1] != '\r' || buf[i + 2] != '\n')
				return fail(error_r, "Invalid literal");
			i += 3;
			if (size > len - i)
				return fail(error_r, "Literal ends early");
			str_append_n(&c->buf, buf + i, (size_t)size);
			i += (size_t)size;
			a->type = MSIEVE_STRING;
			a->len = (size_t)size;
		} else if (atom_char((unsigned char)buf[i])) {
			size_t start = c->buf.len;

			while (i < len && atom_char((unsigned char)buf[i]))
				str_append_c(&c->buf, buf[i++]);
			a->type = MSIEVE_ATOM;
			a->len = c->buf.len - start;
		} else {
			return fail(error_r, "Invalid argument");
		}
		str_append_c(&c->buf, '\0');
		c->nargs++;
	}
	/* the buffer no longer moves: point into it */
	for (size_t k = 0; k < c->nargs; k++)
		c->args[k].s = c->buf.data + offs[k];
	return 0;
}

void
msieve_cmd_clear(struct msieve_cmd *c)
{
	if (c->buf.data != NULL)
		explicit_bzero(c->buf.data, c->buf.cap);
	str_free(&c->buf);
	memset(c, 0, sizeof(*c));
}

void
msieve_put_string(str_t *out, const char *s, size_t len)
{
	bool quoted = len <= MSIEVE_QUOTED_MAX;

	for (size_t i = 0; quoted && i < len; i++)
		if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
			quoted = false;
	if (!quoted) {
		str_printf(out, "{%zu}\r\n", len);
		str_append_n(out, s, len);
		return;
	}
	str_append_c(out, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			str_append_c(out, '\\');
		str_append_c(out, s[i]);
	}
	str_append_c(out, '"');
}
