/*
 * parse.c: the Sieve lexer and parser (RFC 5228 section 8) and the
 * validator: each command and test against its table entry (extension,
 * tags, positional argument types, tests, block), require handling and
 * encoded-character (RFC 5228 2.4.2.4) decoding.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/sieve/sieve.h"
#include "lib/sieve/spec.h"
#include "lib/sieve/store.h"

enum tok { T_EOF, T_ERR, T_IDENT, T_TAG, T_NUM, T_STR, T_PUNCT };

struct lexer {
	const char *p, *end;
	int line;
	enum tok tok;
	int tok_line;
	char punct;
	uint64_t num;
	str_t text;		/* IDENT, TAG (lower-cased), STR */
	str_t *errors;
	int nerrors;
	size_t nodes;
	bool failed;
};

static void __attribute__((format(printf, 3, 4)))
error_at(struct lexer *lx, int line, const char *fmt, ...)
{
	va_list ap;
	size_t mark;

	lx->failed = true;
	if (lx->nerrors++ >= SIEVE_ERRORS_MAX)
		return;
	str_printf(lx->errors, "line %d: ", line);
	mark = lx->errors->len;
	va_start(ap, fmt);
	str_vprintf(lx->errors, fmt, ap);
	va_end(ap);
	/* one line, whatever the script's strings hold */
	for (size_t i = mark; i < lx->errors->len; i++)
		if ((unsigned char)lx->errors->data[i] < 0x20 ||
		    lx->errors->data[i] == 0x7f)
			lx->errors->data[i] = '?';
	str_append_c(lx->errors, '\n');
}

static bool
is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_ident(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* White space and comments; false on an unterminated comment. */
static bool
skip_space(struct lexer *lx)
{
	while (lx->p < lx->end) {
		char c = *lx->p;

		if (c == '\n') {
			lx->line++;
			lx->p++;
		} else if (c == ' ' || c == '\t' || c == '\r') {
			lx->p++;
		} else if (c == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else if (c == '/' && lx->p + 1 < lx->end && lx->p[1] == '*') {
			int start = lx->line;

			lx->p += 2;
			for (;;) {
				if (lx->p + 1 >= lx->end) {
					error_at(lx, start,
					    "unterminated comment");
					return false;
				}
				if (lx->p[0] == '*' && lx->p[1] == '/')
					break;
				if (*lx->p == '\n')
					lx->line++;
				lx->p++;
			}
			lx->p += 2;
		} else {
			break;
		}
	}
	return true;
}

static bool
str_add(struct lexer *lx, char c)
{
	if (lx->text.len >= SIEVE_STRING_MAX) {
		error_at(lx, lx->tok_line, "string longer than %d bytes",
		    SIEVE_STRING_MAX);
		return false;
	}
	str_append_c(&lx->text, c);
	return true;
}

static enum tok
lex_quoted(struct lexer *lx)
{
	lx->p++;
	for (;;) {
		char c;

		if (lx->p >= lx->end) {
			error_at(lx, lx->tok_line, "unterminated string");
			return T_ERR;
		}
		c = *lx->p++;
		if (c == '"')
			return T_STR;
		if (c == '\\') {
			if (lx->p >= lx->end)
				continue;
			/* "\\" and "\"" quote; any other escaped
			 * character stands for itself (RFC 5228 2.4.2) */
			c = *lx->p++;
		}
		if (c == '\n')
			lx->line++;
		if (!str_add(lx, c))
			return T_ERR;
	}
}

/* text: [comment] CRLF lines "." CRLF; a leading ".." is one dot. */
static enum tok
lex_multiline(struct lexer *lx)
{
	lx->p += 5;
	while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t'))
		lx->p++;
	if (lx->p < lx->end && *lx->p == '#')
		while (lx->p < lx->end && *lx->p != '\n')
			lx->p++;
	if (lx->p < lx->end && *lx->p == '\r')
		lx->p++;
	if (lx->p >= lx->end || *lx->p != '\n') {
		error_at(lx, lx->tok_line, "text: must be followed by a "
		    "line end");
		return T_ERR;
	}
	lx->p++;
	lx->line++;
	for (;;) {
		const char *eol = memchr(lx->p, '\n', (size_t)(lx->end - lx->p));
		const char *q = lx->p;
		size_t n;

		if (eol == NULL) {
			error_at(lx, lx->tok_line, "unterminated text: string");
			return T_ERR;
		}
		n = (size_t)(eol - q);
		if (n > 0 && q[n - 1] == '\r')
			n--;
		lx->line++;
		lx->p = eol + 1;
		if (n == 1 && q[0] == '.')
			return T_STR;
		if (n > 0 && q[0] == '.') {
			q++;
			n--;
		}
		for (size_t i = 0; i < n; i++)
			if (!str_add(lx, q[i]))
				return T_ERR;
		if (!str_add(lx, '\r') || !str_add(lx, '\n'))
			return T_ERR;
	}
}

static enum tok
lex_next(struct lexer *lx)
{
	char c;

	str_truncate(&lx->text, 0);
	if (!skip_space(lx))
		return lx->tok = T_ERR;
	lx->tok_line = lx->line;
	if (lx->p >= lx->end)
		return lx->tok = T_EOF;
	c = *lx->p;
	if (c == '"')
		return lx->tok = lex_quoted(lx);
	if (lx->end - lx->p >= 5 && strncasecmp(lx->p, "text:", 5) == 0)
		return lx->tok = lex_multiline(lx);
	if (c == ':' || is_ident_start(c)) {
		bool tag = c == ':';

		if (tag)
			lx->p++;
		if (lx->p >= lx->end || !is_ident_start(*lx->p)) {
			error_at(lx, lx->tok_line, "bad tag");
			return lx->tok = T_ERR;
		}
		while (lx->p < lx->end && is_ident(*lx->p)) {
			char l = *lx->p++;

			if (l >= 'A' && l <= 'Z')
				l = (char)(l - 'A' + 'a');
			if (lx->text.len > 64) {
				error_at(lx, lx->tok_line, "name too long");
				return lx->tok = T_ERR;
			}
			str_append_c(&lx->text, l);
		}
		return lx->tok = tag ? T_TAG : T_IDENT;
	}
	if (c >= '0' && c <= '9') {
		uint64_t v = 0;

		while (lx->p < lx->end && *lx->p >= '0' && *lx->p <= '9') {
			if (v > (UINT64_MAX - 9) / 10) {
				error_at(lx, lx->tok_line, "number too large");
				return lx->tok = T_ERR;
			}
			v = v * 10 + (uint64_t)(*lx->p++ - '0');
		}
		if (lx->p < lx->end) {
			int shift = 0;

			switch (*lx->p) {
			case 'k': case 'K': shift = 10; break;
			case 'm': case 'M': shift = 20; break;
			case 'g': case 'G': shift = 30; break;
			}
			if (shift > 0) {
				lx->p++;
				if (v > (UINT64_MAX >> shift)) {
					error_at(lx, lx->tok_line,
					    "number too large");
					return lx->tok = T_ERR;
				}
				v <<= shift;
			}
		}
		if (lx->p < lx->end && is_ident(*lx->p)) {
			error_at(lx, lx->tok_line, "bad number");
			return lx->tok = T_ERR;
		}
		lx->num = v;
		return lx->tok = T_NUM;
	}
	if (c != '\0' && strchr("[](),;{}", c) != NULL) {
		lx->p++;
		lx->punct = c;
		return lx->tok = T_PUNCT;
	}
	if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
		error_at(lx, lx->tok_line, "unexpected character '%c'", c);
	else
		error_at(lx, lx->tok_line, "unexpected byte 0x%02x",
		    (unsigned char)c);
	return lx->tok = T_ERR;
}

static bool
is_punct(const struct lexer *lx, char c)
{
	return lx->tok == T_PUNCT && lx->punct == c;
}

static void
expect_error(struct lexer *lx, const char *what)
{
	if (lx->tok == T_ERR)
		return;
	if (lx->tok == T_EOF)
		error_at(lx, lx->tok_line, "expected %s, found end of script",
		    what);
	else if (lx->tok == T_PUNCT)
		error_at(lx, lx->tok_line, "expected %s, found '%c'", what,
		    lx->punct);
	else if (lx->tok == T_IDENT)
		error_at(lx, lx->tok_line, "expected %s, found '%s'", what,
		    str_c(&lx->text));
	else
		error_at(lx, lx->tok_line, "expected %s", what);
}

/* Room for element n of an array of n: doubled at each power of two,
 * so that n appends cost O(n). */
static void *
grow(void *p, size_t n, size_t size)
{
	if (n == 0 || (n & (n - 1)) == 0)
		return xrealloc(p, (n == 0 ? 1 : 2 * n) * size);
	return p;
}

static void
arg_free(struct sieve_arg *a)
{
	free(a->tag);
	for (size_t i = 0; i < a->nstrs; i++)
		free(a->strs[i]);
	free(a->strs);
}

static void node_free(struct sieve_node *n);

static void
nodes_free(struct sieve_node *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		node_free(&v[i]);
	free(v);
}

static void
node_free(struct sieve_node *n)
{
	free(n->name);
	for (size_t i = 0; i < n->nargs; i++)
		arg_free(&n->args[i]);
	free(n->args);
	free(n->tags);
	free(n->pos);
	nodes_free(n->tests, n->ntests);
	nodes_free(n->block, n->nblock);
}

static void
push_str(struct sieve_arg *a, struct lexer *lx)
{
	a->strs = grow(a->strs, a->nstrs, sizeof(*a->strs));
	a->strs[a->nstrs++] = xstrndup(lx->text.data ? lx->text.data : "",
	    lx->text.len);
}

/* One argument at the current token; false when the token is not one
 * (nothing consumed) or on error (lx->failed). */
static bool
parse_arg(struct lexer *lx, struct sieve_arg *a)
{
	memset(a, 0, sizeof(*a));
	a->line = lx->tok_line;
	if (lx->tok == T_NUM) {
		a->type = SIEVE_ARG_NUMBER;
		a->num = lx->num;
	} else if (lx->tok == T_TAG) {
		a->type = SIEVE_ARG_TAG;
		a->tag = xstrdup(str_c(&lx->text));
	} else if (lx->tok == T_STR) {
		a->type = SIEVE_ARG_STRING;
		push_str(a, lx);
	} else if (is_punct(lx, '[')) {
		a->type = SIEVE_ARG_LIST;
		for (;;) {
			if (lex_next(lx) != T_STR) {
				expect_error(lx, "a string in the list");
				arg_free(a);
				return false;
			}
			if (a->nstrs >= SIEVE_LIST_MAX) {
				error_at(lx, lx->tok_line, "more than %d "
				    "strings in a list", SIEVE_LIST_MAX);
				arg_free(a);
				return false;
			}
			push_str(a, lx);
			lex_next(lx);
			if (is_punct(lx, ']'))
				break;
			if (!is_punct(lx, ',')) {
				expect_error(lx, "',' or ']'");
				arg_free(a);
				return false;
			}
		}
	} else {
		return false;
	}
	lex_next(lx);
	return true;
}

static bool parse_test(struct lexer *lx, struct sieve_node *n, int depth);

/* Arguments, then a test or a test list (tests only when allowed). */
static bool
parse_args(struct lexer *lx, struct sieve_node *n, int depth)
{
	for (;;) {
		struct sieve_arg a;

		if (!parse_arg(lx, &a)) {
			if (lx->failed)
				return false;
			break;
		}
		if (n->nargs >= 64) {
			arg_free(&a);
			error_at(lx, a.line, "too many arguments");
			return false;
		}
		n->args = grow(n->args, n->nargs, sizeof(*n->args));
		n->args[n->nargs++] = a;
	}
	if (lx->tok == T_IDENT) {
		n->tests = xcalloc(1, sizeof(*n->tests));
		n->ntests = 1;
		return parse_test(lx, &n->tests[0], depth + 1);
	}
	if (is_punct(lx, '(')) {
		n->test_list = true;
		for (;;) {
			struct sieve_node t;
			bool ok;

			lex_next(lx);
			if (lx->tok != T_IDENT) {
				expect_error(lx, "a test");
				return false;
			}
			ok = parse_test(lx, &t, depth + 1);
			n->tests = grow(n->tests, n->ntests,
			    sizeof(*n->tests));
			n->tests[n->ntests++] = t;
			if (!ok)
				return false;
			if (is_punct(lx, ')'))
				break;
			if (!is_punct(lx, ',')) {
				expect_error(lx, "',' or ')'");
				return false;
			}
		}
		lex_next(lx);
	}
	return true;
}

static bool
node_start(struct lexer *lx, struct sieve_node *n, int depth)
{
	memset(n, 0, sizeof(*n));
	n->name = xstrdup(str_c(&lx->text));
	n->line = lx->tok_line;
	if (depth > SIEVE_DEPTH_MAX) {
		error_at(lx, n->line, "nesting deeper than %d",
		    SIEVE_DEPTH_MAX);
		return false;
	}
	if (++lx->nodes > SIEVE_NODES_MAX) {
		error_at(lx, n->line, "more than %d commands and tests",
		    SIEVE_NODES_MAX);
		return false;
	}
	lex_next(lx);
	return true;
}

static bool
parse_test(struct lexer *lx, struct sieve_node *n, int depth)
{
	if (!node_start(lx, n, depth))
		return false;
	return parse_args(lx, n, depth);
}

static bool parse_commands(struct lexer *lx, struct sieve_node **v,
    size_t *nv, int depth, bool top);

static bool
parse_command(struct lexer *lx, struct sieve_node *n, int depth)
{
	if (!node_start(lx, n, depth) || !parse_args(lx, n, depth))
		return false;
	if (is_punct(lx, ';')) {
		lex_next(lx);
		return true;
	}
	if (is_punct(lx, '{')) {
		int line = lx->tok_line;

		n->has_block = true;
		lex_next(lx);
		if (!parse_commands(lx, &n->block, &n->nblock, depth + 1,
		    false))
			return false;
		if (!is_punct(lx, '}')) {
			if (lx->tok == T_EOF)
				error_at(lx, line, "block not closed "
				    "(missing '}')");
			else
				expect_error(lx, "'}'");
			return false;
		}
		lex_next(lx);
		return true;
	}
	expect_error(lx, "';' or '{'");
	return false;
}

static bool
parse_commands(struct lexer *lx, struct sieve_node **v, size_t *nv,
    int depth, bool top)
{
	while (lx->tok == T_IDENT) {
		struct sieve_node n;
		bool ok = parse_command(lx, &n, depth);

		*v = grow(*v, *nv, sizeof(**v));
		(*v)[(*nv)++] = n;
		if (!ok)
			return false;
	}
	if (lx->tok == T_ERR)
		return false;
	if (top && lx->tok != T_EOF) {
		expect_error(lx, "a command");
		return false;
	}
	return true;
}

/* Validation. */

struct validator {
	struct lexer *lx;
	unsigned exts;
};

static const struct {
	const char *name;
	unsigned ext;
} known_exts[] = {
	{ "fileinto", SIEVE_EXT_FILEINTO }, { "reject", SIEVE_EXT_REJECT },
	{ "ereject", SIEVE_EXT_EREJECT }, { "envelope", SIEVE_EXT_ENVELOPE },
	{ "encoded-character", SIEVE_EXT_ENCODED },
	{ "copy", SIEVE_EXT_COPY }, { "body", SIEVE_EXT_BODY },
	{ "variables", SIEVE_EXT_VARIABLES },
	{ "relational", SIEVE_EXT_RELATIONAL },
	{ "subaddress", SIEVE_EXT_SUBADDRESS },
	{ "imap4flags", SIEVE_EXT_IMAP4FLAGS },
	{ "mailbox", SIEVE_EXT_MAILBOX },
	{ "comparator-i;ascii-numeric", SIEVE_EXT_NUMERIC },
	{ "vacation", SIEVE_EXT_VACATION },
	{ "vacation-seconds", SIEVE_EXT_VACATION | SIEVE_EXT_VACATION_SECONDS },
	{ "date", SIEVE_EXT_DATE }, { "index", SIEVE_EXT_INDEX },
	{ "editheader", SIEVE_EXT_EDITHEADER },
	{ "duplicate", SIEVE_EXT_DUPLICATE },
	{ "include", SIEVE_EXT_INCLUDE },
	{ "comparator-i;octet", 0 }, { "comparator-i;ascii-casemap", 0 },
};

void
sieve_extensions(str_t *out)
{
	for (size_t i = 0; i < sizeof(known_exts) / sizeof(known_exts[0]);
	    i++) {
		if (i > 0)
			str_append_c(out, ' ');
		str_append(out, known_exts[i].name);
	}
}

static const char *const unsupported_exts[] = {
	"regex", "enotify", "notify", "spamtest",
	"spamtestplus", "virustest", "environment", "ihave", "foreverypart",
	"mime", "extracttext", "imapflags", "fcc", "special-use", "mboxmetadata",
	"servermetadata", "extlists", "convert", "imapsieve", "vnd.dovecot.debug",
};

static const char *
ext_name(unsigned ext)
{
	for (size_t i = 0; i < sizeof(known_exts) / sizeof(known_exts[0]); i++)
		if (known_exts[i].ext == ext)
			return known_exts[i].name;
	for (size_t i = 0; i < sizeof(known_exts) / sizeof(known_exts[0]); i++)
		if ((known_exts[i].ext & ext) != 0)
			return known_exts[i].name;
	return "?";
}

static void
do_require(struct validator *v, const struct sieve_node *n)
{
	const struct sieve_arg *a = n->nargs == 1 ? &n->args[0] : NULL;

	if (a == NULL || n->ntests > 0 || n->has_block ||
	    (a->type != SIEVE_ARG_STRING && a->type != SIEVE_ARG_LIST)) {
		error_at(v->lx, n->line, "require needs one string list "
		    "argument");
		return;
	}
	for (size_t i = 0; i < a->nstrs; i++) {
		const char *e = a->strs[i];
		size_t k;
		bool found = false;

		for (k = 0; k < sizeof(known_exts) / sizeof(known_exts[0]); k++)
			if (strcmp(known_exts[k].name, e) == 0) {
				v->exts |= known_exts[k].ext;
				found = true;
			}
		if (found)
			continue;
		for (k = 0; k < sizeof(unsupported_exts) /
		    sizeof(unsupported_exts[0]); k++)
			if (strcmp(unsupported_exts[k], e) == 0)
				break;
		if (k < sizeof(unsupported_exts) / sizeof(unsupported_exts[0]))
			error_at(v->lx, n->line, "unsupported extension '%s'",
			    e);
		else
			error_at(v->lx, n->line, "unknown extension '%.64s'",
			    e);
	}
}


static void
put_utf8(str_t *out, unsigned cp)
{
	if (cp < 0x80) {
		str_append_c(out, (char)cp);
	} else if (cp < 0x800) {
		str_append_c(out, (char)(0xc0 | (cp >> 6)));
		str_append_c(out, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		str_append_c(out, (char)(0xe0 | (cp >> 12)));
		str_append_c(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
		str_append_c(out, (char)(0x80 | (cp & 0x3f)));
	} else {
		str_append_c(out, (char)(0xf0 | (cp >> 18)));
		str_append_c(out, (char)(0x80 | ((cp >> 12) & 0x3f)));
		str_append_c(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
		str_append_c(out, (char)(0x80 | (cp & 0x3f)));
	}
}

/* One "${hex:...}" or "${unicode:...}" body (between ':' and '}'):
 * false when malformed (the text is then left as it is). */
static bool
decode_encoded(const char *s, size_t n, bool unicode, str_t *out)
{
	size_t i = 0, count = 0;

	for (;;) {
		unsigned v = 0;
		size_t digits = 0;

		while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
		    s[i] == '\n'))
			i++;
		if (i == n)
			break;
		while (i < n && str_hexval(s[i]) >= 0) {
			if (++digits > (unicode ? 6 : 2))
				return false;
			v = v * 16 + (unsigned)str_hexval(s[i++]);
		}
		if (digits == 0)
			return false;
		if (unicode && (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)))
			return false;
		if (unicode)
			put_utf8(out, v);
		else
			str_append_c(out, (char)v);
		count++;
	}
	return true;
}

static void
decode_string(char **sp)
{
	const char *s = *sp;
	str_t out = STR_INIT;
	bool changed = false;

	for (size_t i = 0; s[i] != '\0'; i++) {
		if (s[i] == '$' && s[i + 1] == '{') {
			bool unicode = strncasecmp(s + i + 2, "unicode:", 8) == 0;
			size_t off = unicode ? 10 : 6;
			const char *close;

			if ((unicode || strncasecmp(s + i + 2, "hex:", 4) == 0) &&
			    (close = strchr(s + i + off, '}')) != NULL) {
				size_t mark = out.len;

				if (decode_encoded(s + i + off,
				    (size_t)(close - (s + i + off)), unicode,
				    &out)) {
					i = (size_t)(close - s);
					changed = true;
					continue;
				}
				str_truncate(&out, mark);
			}
		}
		str_append_c(&out, s[i]);
	}
	if (changed) {
		free(*sp);
		*sp = str_steal(&out);
	} else {
		str_free(&out);
	}
}

static const struct sieve_tagspec *
tag_find(const char *name)
{
	for (size_t i = 0; sieve_tagspecs[i].name != NULL; i++)
		if (strcmp(sieve_tagspecs[i].name, name) == 0)
			return &sieve_tagspecs[i];
	return NULL;
}

static bool
word_in(const char *list, const char *w)
{
	size_t n = strlen(w);

	for (const char *p = list; p != NULL && *p != '\0';) {
		size_t k = strcspn(p, " ");

		if (k == n && strncmp(p, w, n) == 0)
			return true;
		p += k;
		while (*p == ' ')
			p++;
	}
	return false;
}

static const char *
type_name(enum sieve_arg_type t)
{
	switch (t) {
	case SIEVE_ARG_NUMBER: return "number";
	case SIEVE_ARG_STRING: return "string";
	case SIEVE_ARG_LIST: return "string list";
	default: return "tag";
	}
}

static bool
arg_fits(const struct sieve_arg *a, char want)
{
	if (want == 'N')
		return a->type == SIEVE_ARG_NUMBER;
	if (want == 'S')
		return a->type == SIEVE_ARG_STRING;
	return a->type == SIEVE_ARG_STRING || a->type == SIEVE_ARG_LIST;
}

static bool
var_name_ok(const char *s)
{
	if (!is_ident_start(*s))
		return false;
	for (; *s != '\0'; s++)
		if (!is_ident(*s))
			return false;
	return true;
}

static void validate_test(struct validator *v, struct sieve_node *n);

static void
check_tag_value(struct validator *v, const struct sieve_node *n,
    const struct sieve_tagspec *ts, const struct sieve_arg *val)
{
	const char *s;

	if (val->type == SIEVE_ARG_NUMBER || val->nstrs == 0)
		return;		/* :days, :seconds: any number */
	s = val->strs[0];

	if (strcmp(ts->name, "comparator") == 0) {
		if (strcmp(s, "i;ascii-numeric") == 0 &&
		    !(v->exts & SIEVE_EXT_NUMERIC))
			error_at(v->lx, val->line, "comparator "
			    "'i;ascii-numeric' requires "
			    "'comparator-i;ascii-numeric' (missing require)");
		else if (strcmp(s, "i;octet") != 0 &&
		    strcmp(s, "i;ascii-casemap") != 0 &&
		    strcmp(s, "i;ascii-numeric") != 0)
			error_at(v->lx, val->line, "unknown comparator "
			    "'%.64s'", s);
	} else if (strcmp(ts->name, "count") == 0 ||
	    strcmp(ts->name, "value") == 0) {
		if (!word_in("gt ge lt le eq ne", s))
			error_at(v->lx, val->line, "%s: unknown relational "
			    "operator '%.64s'", n->name, s);
	}
}

/* Split args into tags and positional arguments per the spec. */
static void
validate_args(struct validator *v, struct sieve_node *n,
    const struct sieve_spec *sp)
{
	const struct sieve_tagspec *seen[SIEVE_TAG_GROUPS] = { 0 };
	size_t want = strlen(sp->pos), opt = sp->optional_pos;

	n->tags = xcalloc(n->nargs + 1, sizeof(*n->tags));
	n->pos = xcalloc(n->nargs + 1, sizeof(*n->pos));
	for (size_t i = 0; i < n->nargs; i++) {
		struct sieve_arg *a = &n->args[i];
		const struct sieve_tagspec *ts;

		if (a->type != SIEVE_ARG_TAG) {
			n->pos[n->npos++] = a;
			continue;
		}
		if (n->npos > 0) {
			error_at(v->lx, a->line, "%s: tag ':%s' after "
			    "positional arguments", n->name, a->tag);
			continue;
		}
		ts = tag_find(a->tag);
		if (ts == NULL || !word_in(sp->tags, a->tag)) {
			if (ts != NULL || strcmp(a->tag, "regex") != 0)
				error_at(v->lx, a->line, "%s: unknown tag "
				    "':%.64s'", n->name, a->tag);
			else
				error_at(v->lx, a->line, "%s: ':regex' needs "
				    "the unsupported extension 'regex'",
				    n->name);
			continue;
		}
		if (ts->ext != 0 && !(v->exts & ts->ext)) {
			error_at(v->lx, a->line, "%s: tag ':%s' requires "
			    "extension '%s' (missing require)", n->name,
			    a->tag, ext_name(ts->ext));
			continue;
		}
		if (seen[ts->group] != NULL) {
			error_at(v->lx, a->line, "%s: tag ':%s' conflicts "
			    "with ':%s'", n->name, a->tag,
			    seen[ts->group]->name);
			continue;
		}
		seen[ts->group] = ts;
		n->tags[n->ntags].name = ts->name;
		if (ts->value != 0) {
			struct sieve_arg *val = i + 1 < n->nargs ?
			    &n->args[i + 1] : NULL;

			if (val == NULL || !arg_fits(val, ts->value)) {
				error_at(v->lx, a->line, "%s: tag ':%s' needs "
				    "a %s argument", n->name, a->tag,
				    ts->value == 'S' ? "string" :
				    ts->value == 'N' ? "number" :
				    "string list");
				continue;
			}
			i++;
			n->tags[n->ntags].value = val;
			check_tag_value(v, n, ts, val);
		}
		n->ntags++;
	}
	/* index (RFC 5260 6): fields count from 1; :last needs :index */
	if (seen[SIEVE_GROUP_LAST] != NULL &&
	    seen[SIEVE_GROUP_INDEX] == NULL &&
	    strcmp(n->name, "addheader") != 0 &&
	    strcmp(n->name, "duplicate") != 0)
		error_at(v->lx, n->line, "%s: ':last' needs ':index'",
		    n->name);
	for (size_t i = 0; i < n->ntags; i++)
		if (strcmp(n->tags[i].name, "index") == 0 &&
		    n->tags[i].value->num == 0)
			error_at(v->lx, n->tags[i].value->line, "%s: ':index' "
			    "counts from 1", n->name);
	if (sp->need_group >= 0 && seen[sp->need_group] == NULL)
		error_at(v->lx, n->line, "%s: needs one of %s", n->name,
		    sp->need_text);
	if (n->npos > want || n->npos + opt < want) {
		error_at(v->lx, n->line, "%s: expected %zu positional "
		    "argument%s, found %zu", n->name, want - opt,
		    want - opt == 1 ? "" : "s", n->npos);
		return;
	}
	for (size_t i = 0; i < n->npos; i++) {
		char t = sp->pos[want - n->npos + i];

		if (!arg_fits(n->pos[i], t))
			error_at(v->lx, n->pos[i]->line, "%s: argument %zu "
			    "must be a %s, found a %s", n->name, i + 1,
			    t == 'N' ? "number" : t == 'S' ? "string" :
			    "string list", type_name(n->pos[i]->type));
	}
}

static void
decode_node_strings(struct validator *v, struct sieve_node *n)
{
	if (!(v->exts & SIEVE_EXT_ENCODED))
		return;
	for (size_t i = 0; i < n->nargs; i++)
		for (size_t k = 0; k < n->args[i].nstrs; k++)
			decode_string(&n->args[i].strs[k]);
}

static void
validate_common(struct validator *v, struct sieve_node *n,
    const struct sieve_spec *sp)
{
	n->spec = sp;
	if (sp->ext != 0 && !(v->exts & sp->ext)) {
		error_at(v->lx, n->line, "%s '%s' requires extension '%s' "
		    "(missing require)", sp->test ? "test" : "command",
		    n->name, ext_name(sp->ext));
		return;
	}
	decode_node_strings(v, n);
	validate_args(v, n, sp);
	if (sp->tests == 0 && n->ntests > 0)
		error_at(v->lx, n->line, "%s takes no test", n->name);
	else if (sp->tests == 1 && (n->ntests != 1 || n->test_list))
		error_at(v->lx, n->line, "%s needs one test", n->name);
	else if (sp->tests == 2 && !n->test_list)
		error_at(v->lx, n->line, "%s needs a test list in ( )",
		    n->name);
	for (size_t i = 0; i < n->ntests; i++)
		validate_test(v, &n->tests[i]);
	if (strcmp(n->name, "set") == 0 && n->npos == 2 &&
	    n->pos[0]->type == SIEVE_ARG_STRING &&
	    !var_name_ok(n->pos[0]->strs[0]))
		error_at(v->lx, n->line, "set: bad variable name '%.64s'",
		    n->pos[0]->strs[0]);
	if ((strcmp(n->name, "addheader") == 0 ||
	    strcmp(n->name, "deleteheader") == 0) && n->npos >= 1) {
		const struct sieve_arg *f = n->pos[0];

		if (f->type != SIEVE_ARG_STRING)
			error_at(v->lx, f->line, "%s: the field name must be "
			    "a string", n->name);
		else if (strstr(f->strs[0], "${") == NULL &&
		    !sieve_field_name_ok(f->strs[0]))
			error_at(v->lx, f->line, "%s: bad field name '%.64s'",
			    n->name, f->strs[0]);
	}
	if (strcmp(n->name, "include") == 0 && n->npos == 1 &&
	    n->pos[0]->type == SIEVE_ARG_STRING &&
	    !sieve_name_valid(n->pos[0]->strs[0]))
		error_at(v->lx, n->line, "include: bad script name '%.64s'",
		    n->pos[0]->strs[0]);
	if (strcmp(n->name, "global") == 0 && n->npos == 1) {
		if (!(v->exts & SIEVE_EXT_VARIABLES))
			error_at(v->lx, n->line, "global requires extension "
			    "'variables' (missing require)");
		for (size_t i = 0; i < n->pos[0]->nstrs; i++)
			if (!var_name_ok(n->pos[0]->strs[i]))
				error_at(v->lx, n->line, "global: bad "
				    "variable name '%.64s'",
				    n->pos[0]->strs[i]);
	}
	/* tags shared by extensions: each command's own */
	for (size_t i = 0; i < n->ntags; i++) {
		const char *t = n->tags[i].name;

		if (strcmp(n->name, "vacation") == 0 &&
		    strcmp(t, "seconds") == 0 &&
		    !(v->exts & SIEVE_EXT_VACATION_SECONDS))
			error_at(v->lx, n->line, "vacation: tag ':seconds' "
			    "requires extension 'vacation-seconds' (missing "
			    "require)");
		else if (strcmp(n->name, "duplicate") != 0 &&
		    strcmp(t, "handle") == 0 && !(v->exts & SIEVE_EXT_VACATION))
			error_at(v->lx, n->line, "%s: tag ':handle' requires "
			    "extension 'vacation' (missing require)",
			    n->name);
		else if (strcmp(n->name, "addheader") != 0 &&
		    strcmp(n->name, "duplicate") != 0 &&
		    strcmp(n->name, "deleteheader") != 0 &&
		    (strcmp(t, "last") == 0 || strcmp(t, "index") == 0) &&
		    !(v->exts & SIEVE_EXT_INDEX))
			error_at(v->lx, n->line, "%s: tag ':%s' requires "
			    "extension 'index' (missing require)", n->name, t);
	}
	if (strcmp(n->name, "envelope") == 0 && n->npos == 2)
		for (size_t i = 0; i < n->pos[0]->nstrs; i++) {
			const char *p = n->pos[0]->strs[i];

			if (strcasecmp(p, "from") != 0 &&
			    strcasecmp(p, "to") != 0 && strchr(p, '$') == NULL)
				error_at(v->lx, n->line, "envelope: unknown "
				    "envelope part '%.64s'", p);
		}
}

bool
sieve_field_name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 200)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 ||
		    *s == ':')
			return false;
	return true;
}

bool
sieve_header_protected(const char *name)
{
	return strcasecmp(name, "received") == 0 ||
	    strcasecmp(name, "auto-submitted") == 0 ||
	    strcasecmp(name, "return-path") == 0 ||
	    strcasecmp(name, "delivered-to") == 0;
}

static const struct sieve_spec *
spec_find(const char *name, bool test)
{
	for (size_t i = 0; sieve_specs[i].name != NULL; i++)
		if (sieve_specs[i].test == test &&
		    strcmp(sieve_specs[i].name, name) == 0)
			return &sieve_specs[i];
	return NULL;
}

static void
validate_test(struct validator *v, struct sieve_node *n)
{
	const struct sieve_spec *sp = spec_find(n->name, true);

	if (sp == NULL) {
		if (spec_find(n->name, false) != NULL)
			error_at(v->lx, n->line, "'%s' is a command, not a "
			    "test", n->name);
		else
			error_at(v->lx, n->line, "unknown test '%s'",
			    n->name);
		return;
	}
	validate_common(v, n, sp);
}

static void
validate_block(struct validator *v, struct sieve_node *cmds, size_t n,
    bool top)
{
	bool preamble = top;

	for (size_t i = 0; i < n; i++) {
		struct sieve_node *c = &cmds[i];
		const struct sieve_spec *sp;

		if (strcmp(c->name, "require") == 0) {
			if (!preamble)
				error_at(v->lx, c->line, "require must come "
				    "before the other commands, at the top "
				    "level");
			else
				do_require(v, c);
			continue;
		}
		preamble = false;
		sp = spec_find(c->name, false);
		if (sp == NULL) {
			if (spec_find(c->name, true) != NULL)
				error_at(v->lx, c->line, "'%s' is a test, not "
				    "a command", c->name);
			else if (strcmp(c->name, "vacation") == 0 ||
			    strcmp(c->name, "notify") == 0)
				error_at(v->lx, c->line, "command '%s' needs "
				    "an unsupported extension", c->name);
			else
				error_at(v->lx, c->line, "unknown command "
				    "'%s'", c->name);
			continue;
		}
		if ((strcmp(c->name, "elsif") == 0 ||
		    strcmp(c->name, "else") == 0) && (i == 0 ||
		    (strcmp(cmds[i - 1].name, "if") != 0 &&
		    strcmp(cmds[i - 1].name, "elsif") != 0)))
			error_at(v->lx, c->line, "%s without a preceding if",
			    c->name);
		validate_common(v, c, sp);
		if (sp->block && !c->has_block)
			error_at(v->lx, c->line, "%s needs a block", c->name);
		else if (!sp->block && c->has_block)
			error_at(v->lx, c->line, "%s takes no block", c->name);
		validate_block(v, c->block, c->nblock, false);
	}
}

int
sieve_parse(const char *text, size_t len, struct sieve_script **script_r,
    str_t *errors)
{
	struct sieve_script *s = xcalloc(1, sizeof(*s));
	struct lexer lx;
	struct validator v;

	*script_r = NULL;
	memset(&lx, 0, sizeof(lx));
	lx.errors = errors;
	lx.line = 1;
	if (len > SIEVE_SCRIPT_MAX) {
		error_at(&lx, 1, "script larger than %d bytes",
		    SIEVE_SCRIPT_MAX);
		free(s);
		return -1;
	}
	lx.p = text;
	lx.end = text + len;
	lex_next(&lx);
	if (parse_commands(&lx, &s->cmds, &s->ncmds, 0, true) && !lx.failed) {
		memset(&v, 0, sizeof(v));
		v.lx = &lx;
		validate_block(&v, s->cmds, s->ncmds, true);
		s->exts = v.exts;
	}
	str_free(&lx.text);
	if (lx.failed) {
		if (lx.nerrors > SIEVE_ERRORS_MAX)
			str_printf(errors, "(%d more errors)\n",
			    lx.nerrors - SIEVE_ERRORS_MAX);
		sieve_free(s);
		return -1;
	}
	*script_r = s;
	return 0;
}

void
sieve_free(struct sieve_script *s)
{
	if (s == NULL)
		return;
	nodes_free(s->cmds, s->ncmds);
	free(s);
}
