/*
 * parse.c: IMAP4rev1 command syntax (see parse.h) -- the argument
 * parser, sequence sets, FETCH attributes, modified UTF-7, dates, LIST
 * patterns and response quoting. SEARCH keys are in search.c.
 *
 * Trust: every input here comes straight from a client. The parser
 * works on a whole buffer with explicit lengths, never reads past it,
 * bounds nesting (IMAP_NEST_MAX, so recursion is bounded) and argument
 * counts (IMAP_ARGS_MAX), and allocates each command from one pool so
 * that error paths cannot leak. Nothing depends on the locale: case
 * folding is ASCII only.
 */
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/imap/parse.h"

/* Sets of ranges beyond this are refused (a line limit makes far fewer
 * possible; this is the backstop for the fuzzer and the unit tests). */
#define SEQSET_RANGES_MAX 100000

/* ---- ASCII helpers (locale-independent) ---- */

static inline bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline unsigned char
up(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* Case-insensitive compare of s[0..len) with the C string word. */
static bool
word_eq(const char *s, size_t len, const char *word)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (word[i] == '\0' ||
		    up((unsigned char)s[i]) != up((unsigned char)word[i]))
			return false;
	}
	return word[len] == '\0';
}

/* RFC 3501 ATOM-CHAR: any CHAR except atom-specials. */
static bool
is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

/* ---- per-command pool: linked chunks, freed all at once ---- */

#define POOL_CHUNK 1024

struct pool_chunk {
	struct pool_chunk *next;
	size_t size, used;
	max_align_t data[];
};

struct pool {
	struct pool_chunk *head;
};

static void *
pool_alloc(struct pool *pool, size_t size)
{
	const size_t align = alignof(max_align_t);
	struct pool_chunk *c = pool->head, *n;
	size_t csize;

	if (size > SIZE_MAX / 2)
		fatal("imap: allocation of %zu bytes", size);
	size = size == 0 ? align : (size + align - 1) / align * align;
	if (c != NULL && c->size - c->used >= size) {
		c->used += size;
		return (char *)c->data + c->used - size;
	}
	csize = size > POOL_CHUNK / 4 ? size : POOL_CHUNK;
	n = xmalloc(sizeof(*n) + csize);
	n->size = csize;
	n->used = size;
	if (c != NULL && csize == size) {
		/* A big block gets a chunk of its own; keep filling the
		 * current one with small allocations. */
		n->next = c->next;
		c->next = n;
	} else {
		n->next = c;
		pool->head = n;
	}
	return n->data;
}

static char *
pool_strndup(struct pool *pool, const void *s, size_t n)
{
	char *p = pool_alloc(pool, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void
pool_destroy(struct pool *pool)
{
	struct pool_chunk *c, *next;

	if (pool == NULL)
		return;
	for (c = pool->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(pool);
}

/* ---- literal announcements ---- */

bool
imap_line_literal(const char *line, size_t len, uint64_t *size_r,
    bool *nonsync_r)
{
	size_t i = len, digits_end;
	bool nonsync = false;
	uint64_t n = 0;

	if (i == 0 || line[i - 1] != '}')
		return false;
	i--;
	if (i > 0 && line[i - 1] == '+') {
		nonsync = true;
		i--;
	}
	digits_end = i;
	while (i > 0 && is_digit((unsigned char)line[i - 1]))
		i--;
	if (i == digits_end || i == 0 || line[i - 1] != '{')
		return false;
	for (; i < digits_end; i++) {
		unsigned d = (unsigned)(line[i] - '0');

		if (n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*size_r = n;
	*nonsync_r = nonsync;
	return true;
}

/* ---- the command parser ---- */

struct parser {
	const unsigned char *p, *end;
	const unsigned char *base;	/* the start of the command */
	const size_t *spools;	/* the '{' of each spooled literal, in
				   order (offsets from base) */
	size_t nspools, next_spool;
	bool literal8_ok;	/* APPEND, [UID] REPLACE, SETMETADATA:
				   "~{n}" taken */
	struct pool *pool;
	size_t nargs;		/* over all levels */
	bool no_brackets;	/* a '[' had no ']': see parse_atom() */
	const char *error;
};

static const char *
bad_char_error(unsigned char c)
{
	if (c == '\0')
		return "NUL byte in command";
	if (c >= 0x80)
		return "8-bit characters not allowed in atoms";
	return "Invalid characters in atom";
}

static bool
skip_spaces(struct parser *ps)
{
	const unsigned char *start = ps->p;

	while (ps->p < ps->end && *ps->p == ' ')
		ps->p++;
	return ps->p != start;
}

/*
 * From p at '[' to just after its ']', with quoted strings inside
 * skipped whole; NULL if there is no ']' before the end or a byte that
 * cannot be in a bracketed part (CTL, 8-bit outside quotes, CR/LF/NUL).
 */
static const unsigned char *
skip_bracket(const unsigned char *p, const unsigned char *end)
{
	for (p++; p < end; p++) {
		if (*p == ']')
			return p + 1;
		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++) {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (*p == '\0' || *p == '\r' || *p == '\n')
					return NULL;
			}
			if (p == end)
				return NULL;
		} else if (*p < 0x20 || *p >= 0x7f)
			return NULL;
	}
	return NULL;
}

/*
 * An atom. A '[' with a matching ']' swallows what is between them; one
 * without (a '[' in a password, say) is an ordinary character, and so
 * is every later '[' of the command: a failed search for ']' may have
 * looked at the whole rest of the buffer, and doing that again for
 * every '[' would take quadratic time.
 */
static int
parse_atom(struct parser *ps, struct imap_arg *arg)
{
	const unsigned char *start = ps->p, *q;

	while (ps->p < ps->end) {
		unsigned char c = *ps->p;

		if (c == '[' && !ps->no_brackets) {
			q = skip_bracket(ps->p, ps->end);
			if (q != NULL) {
				ps->p = q;
				continue;
			}
			ps->no_brackets = true;
		} else if (c == ' ' || c == '(' || c == ')' || c == '"')
			break;
		else if (c < 0x20 || c >= 0x7f) {
			ps->error = bad_char_error(c);
			return -1;
		}
		ps->p++;
	}
	arg->type = IMAP_ARG_ATOM;
	arg->len = (size_t)(ps->p - start);
	arg->str = pool_strndup(ps->pool, start, arg->len);
	return 0;
}

static int
parse_quoted(struct parser *ps, struct imap_arg *arg)
{
	const unsigned char *p, *start = ps->p + 1;
	size_t n = 0;
	char *dst;

	for (p = start;; p++) {
		if (p == ps->end) {
			ps->error = "Invalid quoted string";
			return -1;
		}
		if (*p == '"')
			break;
		if (*p == '\\') {
			if (++p == ps->end || (*p != '"' && *p != '\\')) {
				ps->error = "Invalid quoted string";
				return -1;
			}
		} else if (*p == '\0') {
			ps->error = "NUL byte in command";
			return -1;
		} else if (*p == '\r' || *p == '\n') {
			ps->error = "Invalid quoted string";
			return -1;
		}
		n++;
	}
	ps->p = p + 1;
	arg->type = IMAP_ARG_STRING;
	arg->len = n;
	arg->str = dst = pool_alloc(ps->pool, n + 1);
	for (p = start; *p != '"'; p++) {
		if (*p == '\\')
			p++;
		*dst++ = (char)*p;
	}
	*dst = '\0';
	return 0;
}

/* "{n}" or "{n+}", CRLF, then exactly n bytes, all in the buffer. */
static int
parse_literal(struct parser *ps, struct imap_arg *arg)
{
	const unsigned char *p = ps->p + 1, *end = ps->end;
	uint64_t n = 0;
	bool digits = false;

	for (; p < end && is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			goto bad;
		n = n * 10 + d;
		digits = true;
	}
	if (!digits)
		goto bad;
	if (p < end && *p == '+')
		p++;
	if (p == end || *p != '}')
		goto bad;
	p++;
	if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
		goto bad;
	p += 2;
	if (ps->next_spool < ps->nspools &&
	    ps->p == ps->base + ps->spools[ps->next_spool]) {
		ps->next_spool++;
		/* its data went elsewhere: an empty string here */
		arg->type = IMAP_ARG_STRING;
		arg->literal = true;
		arg->spooled = true;
		arg->len = 0;
		arg->str = pool_strndup(ps->pool, p, 0);
		ps->p = p;
		return 0;
	}
	if ((uint64_t)(end - p) < n)
		goto bad;
	arg->type = IMAP_ARG_STRING;
	arg->literal = true;
	arg->len = (size_t)n;
	arg->str = pool_strndup(ps->pool, p, arg->len);
	ps->p = p + n;
	return 0;
bad:
	ps->error = "Invalid literal";
	return -1;
}

static int parse_list(struct parser *ps, unsigned depth, bool in_list,
    struct imap_arg **args_r, size_t *n_r);

static int
parse_arg(struct parser *ps, unsigned depth, struct imap_arg *arg)
{
	switch (*ps->p) {
	case '(':
		if (depth >= IMAP_NEST_MAX) {
			ps->error = "Too deep nesting";
			return -1;
		}
		ps->p++;
		arg->type = IMAP_ARG_LIST;
		return parse_list(ps, depth + 1, true, &arg->list,
		    &arg->nlist);
	case '"':
		return parse_quoted(ps, arg);
	case '{':
		return parse_literal(ps, arg);
	case '~':
		if (ps->end - ps->p < 2 || ps->p[1] != '{')
			return parse_atom(ps, arg);
		if (!ps->literal8_ok) {
			ps->error = "literal8 is only for APPEND, REPLACE and SETMETADATA";
			return -1;
		}
		ps->p++;
		arg->literal8 = true;
		return parse_literal(ps, arg);
	default:
		return parse_atom(ps, arg);
	}
}

/*
 * Arguments up to the end of the buffer (in_list false) or the ')'
 * closing the list (in_list true). The elements are collected in a
 * temporary array and copied into the pool at the end.
 */
static int
parse_list(struct parser *ps, unsigned depth, bool in_list,
    struct imap_arg **args_r, size_t *n_r)
{
	struct imap_arg *tmp = NULL;
	size_t n = 0, cap = 0;
	bool sep = true;
	int ret = -1;

	for (;;) {
		if (skip_spaces(ps))
			sep = true;
		if (ps->p == ps->end) {
			if (in_list) {
				ps->error = "Unbalanced parentheses";
				goto out;
			}
			break;
		}
		if (*ps->p == ')') {
			if (!in_list) {
				ps->error = "Unbalanced parentheses";
				goto out;
			}
			ps->p++;
			break;
		}
		if (!sep) {
			ps->error = "Missing space between arguments";
			goto out;
		}
		if (++ps->nargs > IMAP_ARGS_MAX) {
			ps->error = "Too many arguments";
			goto out;
		}
		if (n == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			tmp = xrealloc(tmp, cap * sizeof(*tmp));
		}
		memset(&tmp[n], 0, sizeof(tmp[n]));
		if (parse_arg(ps, depth, &tmp[n]) < 0)
			goto out;
		n++;
		sep = false;
	}
	*args_r = NULL;
	if (n > 0) {
		*args_r = pool_alloc(ps->pool, n * sizeof(*tmp));
		memcpy(*args_r, tmp, n * sizeof(*tmp));
	}
	*n_r = n;
	ret = 0;
out:
	free(tmp);
	return ret;
}

static bool
is_tag_char(unsigned char c)
{
	return (is_atom_char(c) || c == ']') && c != '+';
}

static int
parse_tag(struct parser *ps, struct imap_cmd *cmd)
{
	const unsigned char *start = ps->p;

	while (ps->p < ps->end && *ps->p != ' ') {
		if (!is_tag_char(*ps->p)) {
			ps->error = *ps->p == '\0' ? "NUL byte in command" :
			    "Invalid tag";
			return -1;
		}
		ps->p++;
	}
	if (ps->p == start) {
		ps->error = "Missing tag";
		return -1;
	}
	cmd->tag = pool_strndup(ps->pool, start, (size_t)(ps->p - start));
	return 0;
}

/* A command name (an atom), upper-cased, followed by SP or the end.
 * Exactly one SP precedes it (RFC 3501 9: tag SP command): a line that
 * gets this wrong is more likely garbage than a command. */
static char *
parse_name(struct parser *ps)
{
	const unsigned char *start;
	char *name;
	size_t i, n;

	if (ps->p < ps->end && *ps->p == ' ')
		ps->p++;
	if (ps->p < ps->end && *ps->p == ' ') {
		ps->error = "Invalid command name";
		return NULL;
	}
	start = ps->p;
	while (ps->p < ps->end && is_atom_char(*ps->p))
		ps->p++;
	if (ps->p < ps->end && *ps->p != ' ') {
		unsigned char c = *ps->p;

		ps->error = c == '\0' || c >= 0x80 ? bad_char_error(c) :
		    "Invalid command name";
		return NULL;
	}
	if (ps->p == start) {
		ps->error = "Missing command";
		return NULL;
	}
	n = (size_t)(ps->p - start);
	name = pool_strndup(ps->pool, start, n);
	for (i = 0; i < n; i++)
		name[i] = (char)up((unsigned char)name[i]);
	return name;
}

int
imap_cmd_parse(const char *buf, size_t len, struct imap_cmd *cmd,
    const char **error_r)
{
	return imap_cmd_parse_spooled(buf, len, SIZE_MAX, cmd, error_r);
}

int
imap_cmd_parse_spooled(const char *buf, size_t len, size_t spooled_at,
    struct imap_cmd *cmd, const char **error_r)
{
	return imap_cmd_parse_spools(buf, len, &spooled_at,
	    spooled_at < len ? 1 : 0, cmd, error_r);
}

int
imap_cmd_parse_spools(const char *buf, size_t len, const size_t *spools,
    size_t nspools, struct imap_cmd *cmd, const char **error_r)
{
	struct parser ps;

	memset(cmd, 0, sizeof(*cmd));
	memset(&ps, 0, sizeof(ps));
	ps.p = (const unsigned char *)buf;
	ps.end = ps.p + len;
	ps.base = ps.p;
	ps.spools = spools;
	ps.nspools = nspools;
	ps.pool = xmalloc(sizeof(*ps.pool));
	cmd->pool = ps.pool;

	if (parse_tag(&ps, cmd) < 0)
		goto fail;
	if ((cmd->name = parse_name(&ps)) == NULL)
		goto fail;
	if (strcmp(cmd->name, "UID") == 0) {
		cmd->uid = true;
		if ((cmd->name = parse_name(&ps)) == NULL) {
			if (strcmp(ps.error, "Missing command") == 0)
				ps.error = "Missing command after UID";
			goto fail;
		}
	}
	ps.literal8_ok = strcmp(cmd->name, "REPLACE") == 0 ||
	    (!cmd->uid && (strcmp(cmd->name, "APPEND") == 0 ||
	    strcmp(cmd->name, "SETMETADATA") == 0));
	if (parse_list(&ps, 0, false, &cmd->args, &cmd->nargs) < 0)
		goto fail;
	return 0;
fail:
	*error_r = ps.error;
	return -1;
}

void
imap_cmd_wipe(struct imap_cmd *cmd)
{
	struct pool *pool = cmd->pool;

	if (pool == NULL)
		return;
	for (struct pool_chunk *c = pool->head; c != NULL; c = c->next)
		explicit_bzero(c->data, c->used);
}

void
imap_cmd_free(struct imap_cmd *cmd)
{
	pool_destroy(cmd->pool);
	memset(cmd, 0, sizeof(*cmd));
}

void
imap_cmd_compact(struct imap_cmd *cmd)
{
	const char *tag = cmd->tag != NULL ? cmd->tag : "";
	const char *name = cmd->name != NULL ? cmd->name : "";
	size_t tlen = strlen(tag), nlen = strlen(name);
	struct pool *pool = xcalloc(1, sizeof(*pool));
	struct pool_chunk *c = xmalloc(sizeof(*c) + tlen + nlen + 2);
	char *p = (char *)c->data;
	bool had_name = cmd->name != NULL, had_tag = cmd->tag != NULL;

	c->next = NULL;
	c->size = c->used = tlen + nlen + 2;
	pool->head = c;
	memcpy(p, tag, tlen + 1);
	memcpy(p + tlen + 1, name, nlen + 1);
	pool_destroy(cmd->pool);
	cmd->pool = pool;
	cmd->tag = had_tag ? p : NULL;
	cmd->name = had_name ? p + tlen + 1 : NULL;
	cmd->args = NULL;
	cmd->nargs = 0;
}

const char *
imap_arg_astring(const struct imap_arg *arg)
{
	if (arg->type == IMAP_ARG_LIST || arg->str == NULL)
		return NULL;
	if (memchr(arg->str, '\0', arg->len) != NULL)
		return NULL;
	return arg->str;
}

int
imap_arg_to_mutf7(struct imap_cmd *cmd, struct imap_arg *arg)
{
	str_t m = STR_INIT;

	if (imap_arg_astring(arg) == NULL ||
	    imap_utf8_to_mutf7(arg->str, arg->len, &m) < 0) {
		str_free(&m);
		return -1;
	}
	arg->str = pool_strndup(cmd->pool, m.len > 0 ? m.data : "", m.len);
	arg->len = m.len;
	str_free(&m);
	return 0;
}

/* ---- sequence sets ---- */

/* nz-number or '*' at *sp; advances *sp. An explicit 4294967295 would
 * be indistinguishable from '*' and becomes 4294967294 (no message can
 * have either: UIDNEXT must stay representable). */
static int
seq_number(const char **sp, uint32_t *v_r)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s == '*') {
		*v_r = IMAP_SEQ_STAR;
		*sp = s + 1;
		return 0;
	}
	if (!is_digit((unsigned char)*s))
		return -1;
	for (; is_digit((unsigned char)*s); s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	if (v == 0)
		return -1;
	*v_r = v == IMAP_SEQ_STAR ? IMAP_SEQ_STAR - 1 : (uint32_t)v;
	*sp = s;
	return 0;
}

static int
cmp_range(const void *a, const void *b)
{
	const struct imap_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

/*
 * Sort and merge the ranges without '*'; of those with '*' keep only
 * what matters: every "n:*" contains star, so their union is
 * [min(lo, star), max(lo', star)] for the smallest lo and the largest
 * lo', and a bare "*" adds nothing to them.
 */
static void
seqset_normalise(struct imap_seqset *set)
{
	struct imap_range *r = set->r;
	size_t i, n = 0;
	uint32_t smin = IMAP_SEQ_STAR, smax = 0;
	bool bare_star = false;

	qsort(r, set->n, sizeof(*r), cmp_range);
	for (i = 0; i < set->n; i++) {
		if (r[i].hi == IMAP_SEQ_STAR) {
			if (r[i].lo == IMAP_SEQ_STAR) {
				bare_star = true;
				continue;
			}
			if (r[i].lo < smin)
				smin = r[i].lo;
			if (r[i].lo > smax)
				smax = r[i].lo;
			continue;
		}
		if (n > 0 && r[i].lo <= r[n - 1].hi + 1) {
			if (r[i].hi > r[n - 1].hi)
				r[n - 1].hi = r[i].hi;
			continue;
		}
		r[n++] = r[i];
	}
	if (smin != IMAP_SEQ_STAR) {
		r[n].lo = smin;
		r[n++].hi = IMAP_SEQ_STAR;
		if (smax != smin) {
			r[n].lo = smax;
			r[n++].hi = IMAP_SEQ_STAR;
		}
	} else if (bare_star) {
		r[n].lo = r[n].hi = IMAP_SEQ_STAR;
		n++;
	}
	set->n = n;
}

int
imap_seqset_parse(const char *s, struct imap_seqset *set)
{
	const char *p;
	size_t n = 1;

	set->r = NULL;
	set->n = 0;
	for (p = s; *p != '\0'; p++) {
		if (*p == ',' && ++n > SEQSET_RANGES_MAX)
			return -1;
	}
	set->r = xcalloc(n, sizeof(*set->r));
	for (p = s;;) {
		struct imap_range *r = &set->r[set->n];
		uint32_t t;

		if (seq_number(&p, &r->lo) < 0)
			goto bad;
		r->hi = r->lo;
		if (*p == ':') {
			p++;
			if (seq_number(&p, &r->hi) < 0)
				goto bad;
		}
		if (r->lo > r->hi) {
			t = r->lo;
			r->lo = r->hi;
			r->hi = t;
		}
		set->n++;
		if (*p == '\0')
			break;
		if (*p++ != ',')
			goto bad;
	}
	seqset_normalise(set);
	return 0;
bad:
	imap_seqset_free(set);
	return -1;
}

void
imap_seqset_free(struct imap_seqset *set)
{
	free(set->r);
	set->r = NULL;
	set->n = 0;
}

bool
imap_seqset_has(const struct imap_seqset *set, uint32_t v, uint32_t star)
{
	const struct imap_range *r = set->r;
	size_t lo = 0, hi = set->n, i;

	/* The ranges with '*' are last (at most two of them); the others
	 * are sorted and disjoint. */
	while (hi > 0 && r[hi - 1].hi == IMAP_SEQ_STAR)
		hi--;
	for (i = hi; i < set->n; i++) {
		uint32_t a = r[i].lo == IMAP_SEQ_STAR ? star : r[i].lo;
		uint32_t b = star;

		if (a > b) {
			b = a;
			a = star;
		}
		if (v >= a && v <= b)
			return true;
	}
	/* The last range with lo <= v. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r[mid].lo <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && v <= r[lo - 1].hi;
}

void
imap_seqset_format(const uint32_t *v, size_t n, str_t *out)
{
	size_t i = 0, j;
	bool first = true;

	while (i < n) {
		for (j = i; j + 1 < n && v[j + 1] >= v[j] &&
		    v[j + 1] - v[j] <= 1; j++)
			;
		if (!first)
			str_append_c(out, ',');
		first = false;
		if (v[i] == v[j])
			str_printf(out, "%u", (unsigned)v[i]);
		else
			str_printf(out, "%u:%u", (unsigned)v[i],
			    (unsigned)v[j]);
		i = j + 1;
	}
}

/* ---- FETCH attributes ---- */

static const struct {
	const char *name;
	enum fetch_kind kind;
} fetch_names[] = {
	{ "FLAGS", FETCH_FLAGS },
	{ "UID", FETCH_UID },
	{ "INTERNALDATE", FETCH_INTERNALDATE },
	{ "RFC822.SIZE", FETCH_RFC822_SIZE },
	{ "ENVELOPE", FETCH_ENVELOPE },
	{ "BODY", FETCH_BODY },
	{ "BODYSTRUCTURE", FETCH_BODYSTRUCTURE },
	{ "RFC822", FETCH_RFC822 },
	{ "RFC822.HEADER", FETCH_RFC822_HEADER },
	{ "RFC822.TEXT", FETCH_RFC822_TEXT },
	{ "EMAILID", FETCH_EMAILID },
	{ "THREADID", FETCH_THREADID },
	{ "SAVEDATE", FETCH_SAVEDATE },
	{ "PREVIEW", FETCH_PREVIEW },
	{ "MODSEQ", FETCH_MODSEQ },
};

static const char *const fetch_all[] = {
	"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", NULL
};
static const char *const fetch_fast[] = {
	"FLAGS", "INTERNALDATE", "RFC822.SIZE", NULL
};
static const char *const fetch_full[] = {
	"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", NULL
};

static const char *const sect_words[] = {
	[SECT_ALL] = "",
	[SECT_HEADER] = "HEADER",
	[SECT_HEADER_FIELDS] = "HEADER.FIELDS",
	[SECT_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
	[SECT_TEXT] = "TEXT",
	[SECT_MIME] = "MIME",
};

static void
fetch_item_free(struct fetch_item *it)
{
	size_t i;

	for (i = 0; i < it->nfields; i++)
		free(it->fields[i]);
	free(it->fields);
	free(it->label);
	memset(it, 0, sizeof(*it));
}

/* A number of at most 32 bits at *sp (nz: no leading 0 and not 0). */
static int
fetch_number(const char **sp, bool nz, uint32_t *v_r)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (!is_digit((unsigned char)*s) || (nz && *s == '0'))
		return -1;
	for (; is_digit((unsigned char)*s); s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*sp = s;
	*v_r = (uint32_t)v;
	return 0;
}

/* A header field name as RFC 5322 has them: printable, no ':'. */
static bool
field_name_valid(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
		    *s == ':')
			return false;
	}
	return true;
}

/* One astring of a header list at s[*ip..len): quoted or atom. */
static char *
field_name(const char *s, size_t len, size_t *ip)
{
	size_t i = *ip, start;
	str_t name = STR_INIT;

	if (s[i] == '"') {
		for (i++; i < len && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < len)
				i++;
			str_append_c(&name, s[i]);
		}
		if (i == len) {
			str_free(&name);
			return NULL;
		}
		i++;
	} else {
		for (start = i; i < len && s[i] != ' ' && s[i] != '(' &&
		    s[i] != ')' && s[i] != '"'; i++)
			;
		str_append_n(&name, s + start, i - start);
	}
	*ip = i;
	return str_steal(&name);
}

/* " (name name ...)" ending the section text s[i..len). */
static int
fetch_fields(const char *s, size_t len, size_t i, struct fetch_item *it,
    const char **error_r)
{
	size_t cap = 0;
	char *name;

	*error_r = "Invalid header field list";
	if (i == len || s[i] != ' ')
		return -1;
	while (i < len && s[i] == ' ')
		i++;
	if (i == len || s[i++] != '(')
		return -1;
	for (;;) {
		while (i < len && s[i] == ' ')
			i++;
		if (i == len)
			return -1;
		if (s[i] == ')')
			break;
		if ((name = field_name(s, len, &i)) == NULL)
			return -1;
		if (it->nfields == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			it->fields = xrealloc(it->fields,
			    cap * sizeof(*it->fields));
		}
		it->fields[it->nfields++] = name;
		if (!field_name_valid(name)) {
			*error_r = "Invalid header field name";
			return -1;
		}
		if (i < len && s[i] != ' ' && s[i] != ')')
			return -1;
	}
	if (it->nfields == 0 || i + 1 != len)
		return -1;
	return 0;
}

/* The section text between '[' and ']': s[0..len). */
static int
fetch_section(const char *s, size_t len, struct fetch_item *it,
    const char **error_r)
{
	const char *p = s, *end = s + len, *w;
	size_t wlen;

	*error_r = "Invalid section";
	it->spec = SECT_ALL;
	while (p < end && is_digit((unsigned char)*p)) {
		if (it->npart == sizeof(it->part) / sizeof(it->part[0])) {
			*error_r = "Too many section parts";
			return -1;
		}
		if (fetch_number(&p, true, &it->part[it->npart]) < 0)
			return -1;
		it->npart++;
		if (p == end)
			return 0;
		if (*p++ != '.' || p == end)
			return -1;
	}
	if (p == end)
		return 0;
	for (w = p; p < end && *p != ' '; p++)
		;
	wlen = (size_t)(p - w);
	if (word_eq(w, wlen, "HEADER.FIELDS"))
		it->spec = SECT_HEADER_FIELDS;
	else if (word_eq(w, wlen, "HEADER.FIELDS.NOT"))
		it->spec = SECT_HEADER_FIELDS_NOT;
	else if (p != end)
		return -1;
	else if (word_eq(w, wlen, "HEADER"))
		it->spec = SECT_HEADER;
	else if (word_eq(w, wlen, "TEXT"))
		it->spec = SECT_TEXT;
	else if (word_eq(w, wlen, "MIME") && it->npart > 0)
		it->spec = SECT_MIME;
	else
		return -1;
	if (it->spec == SECT_HEADER_FIELDS ||
	    it->spec == SECT_HEADER_FIELDS_NOT)
		return fetch_fields(s, len, (size_t)(p - s), it, error_r);
	return 0;
}

/* The ']' ending a section at s (after '['), quoted strings skipped. */
static const char *
section_end(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == ']')
			return s;
		if (*s == '"') {
			for (s++; *s != '"'; s++) {
				if (*s == '\0')
					return NULL;
				if (*s == '\\' && s[1] != '\0')
					s++;
			}
		}
	}
	return NULL;
}

static char *
section_label(const struct fetch_item *it)
{
	str_t l = STR_INIT;
	size_t i;

	str_append(&l, it->kind == FETCH_BINARY ? "BINARY[" :
	    it->kind == FETCH_BINARY_SIZE ? "BINARY.SIZE[" : "BODY[");
	for (i = 0; i < it->npart; i++)
		str_printf(&l, i > 0 ? ".%u" : "%u", (unsigned)it->part[i]);
	if (it->spec != SECT_ALL) {
		if (it->npart > 0)
			str_append_c(&l, '.');
		str_append(&l, sect_words[it->spec]);
	}
	if (it->nfields > 0) {
		str_append(&l, " (");
		for (i = 0; i < it->nfields; i++) {
			char *u = xstrdup(it->fields[i]), *c;

			for (c = u; *c != '\0'; c++)
				*c = (char)up((unsigned char)*c);
			if (i > 0)
				str_append_c(&l, ' ');
			imap_append_astring(&l, u, strlen(u));
			free(u);
		}
		str_append_c(&l, ')');
	}
	str_append_c(&l, ']');
	if (it->partial)
		str_printf(&l, "<%u>", (unsigned)it->origin);
	return str_steal(&l);
}

/* BODY[...] / BODY.PEEK[...], BINARY[...] / BINARY.PEEK[...] /
 * BINARY.SIZE[...] (it->kind set: a section-binary is part numbers
 * only, and BINARY.SIZE takes no partial): s at '['. */
static int
fetch_section_item(const char *s, struct fetch_item *it,
    const char **error_r)
{
	const char *close = section_end(s + 1);

	if (close == NULL) {
		*error_r = "Invalid section";
		return -1;
	}
	if (fetch_section(s + 1, (size_t)(close - s - 1), it, error_r) < 0)
		return -1;
	if (it->kind != FETCH_SECTION && (it->spec != SECT_ALL ||
	    (close[1] == '<' && it->kind == FETCH_BINARY_SIZE))) {
		*error_r = "Invalid binary section";
		return -1;
	}
	s = close + 1;
	if (*s == '<') {
		s++;
		it->partial = true;
		if (fetch_number(&s, false, &it->origin) < 0 || *s++ != '.' ||
		    fetch_number(&s, true, &it->count) < 0 || *s++ != '>') {
			*error_r = "Invalid partial";
			return -1;
		}
	}
	if (*s != '\0') {
		*error_r = "Invalid fetch attribute";
		return -1;
	}
	it->label = section_label(it);
	return 0;
}

static int
fetch_item_parse(const char *s, struct fetch_item *it, const char **error_r)
{
	const char *br = strchr(s, '[');
	size_t i, nlen = br != NULL ? (size_t)(br - s) : strlen(s);

	if (br != NULL) {
		it->kind = FETCH_SECTION;
		if (word_eq(s, nlen, "BODY.PEEK"))
			it->peek = true;
		else if (word_eq(s, nlen, "BINARY.PEEK")) {
			it->kind = FETCH_BINARY;
			it->peek = true;
		} else if (word_eq(s, nlen, "BINARY"))
			it->kind = FETCH_BINARY;
		else if (word_eq(s, nlen, "BINARY.SIZE")) {
			it->kind = FETCH_BINARY_SIZE;
			it->peek = true;
		} else if (!word_eq(s, nlen, "BODY")) {
			*error_r = "Invalid fetch attribute";
			return -1;
		}
		return fetch_section_item(br, it, error_r);
	}
	for (i = 0; i < sizeof(fetch_names) / sizeof(fetch_names[0]); i++) {
		if (word_eq(s, nlen, fetch_names[i].name))
			break;
	}
	if (i == sizeof(fetch_names) / sizeof(fetch_names[0])) {
		*error_r = "Invalid fetch attribute";
		return -1;
	}
	it->kind = fetch_names[i].kind;
	it->label = xstrdup(fetch_names[i].name);
	if (it->kind == FETCH_RFC822_HEADER) {
		it->peek = true;
		it->spec = SECT_HEADER;
	} else if (it->kind == FETCH_RFC822_TEXT)
		it->spec = SECT_TEXT;
	return 0;
}

static int
fetch_add(struct fetch_att *att, const char *s, const char **error_r)
{
	struct fetch_item *it = &att->items[att->n];

	if (fetch_item_parse(s, it, error_r) < 0) {
		fetch_item_free(it);
		return -1;
	}
	att->n++;
	switch (it->kind) {
	case FETCH_FLAGS:
	case FETCH_UID:
	case FETCH_INTERNALDATE:
	case FETCH_RFC822_SIZE:
	case FETCH_EMAILID:
	case FETCH_THREADID:
	case FETCH_SAVEDATE:
	case FETCH_MODSEQ:
	case FETCH_PREVIEW:	/* cmd_fetch.c decides (the cache, LAZY) */
		break;
	case FETCH_RFC822:
	case FETCH_RFC822_TEXT:
		att->sets_seen = true;
		/* FALLTHROUGH */
	default:
		att->need_body = true;
		break;
	}
	if ((it->kind == FETCH_SECTION || it->kind == FETCH_BINARY) &&
	    !it->peek)
		att->sets_seen = true;
	return 0;
}

static const char *const *
fetch_macro(const char *s)
{
	if (word_eq(s, strlen(s), "ALL"))
		return fetch_all;
	if (word_eq(s, strlen(s), "FAST"))
		return fetch_fast;
	if (word_eq(s, strlen(s), "FULL"))
		return fetch_full;
	return NULL;
}

static bool
is_fetch_atom(const struct imap_arg *arg)
{
	return arg->type == IMAP_ARG_ATOM && arg->str != NULL &&
	    strlen(arg->str) == arg->len;
}

/* PREVIEW's modifiers (RFC 8970 3): one or more, LAZY the only one
 * known; an unknown one is an error. */
static int
preview_mods(const struct imap_arg *mods, struct fetch_item *it,
    const char **error_r)
{
	if (mods->nlist == 0) {
		*error_r = "Empty PREVIEW modifier list";
		return -1;
	}
	for (size_t k = 0; k < mods->nlist; k++) {
		if (!is_fetch_atom(&mods->list[k]) ||
		    strcasecmp(mods->list[k].str, "LAZY") != 0) {
			*error_r = "Unknown PREVIEW modifier";
			return -1;
		}
		it->lazy = true;
	}
	return 0;
}

int
imap_fetch_parse(const struct imap_arg *arg, struct fetch_att *att,
    const char **error_r)
{
	const char *const *macro;
	size_t i, n;

	memset(att, 0, sizeof(*att));
	if (arg->type == IMAP_ARG_LIST) {
		if (arg->nlist == 0) {
			*error_r = "Empty fetch attribute list";
			return -1;
		}
		att->items = xcalloc(arg->nlist, sizeof(*att->items));
		for (i = 0; i < arg->nlist; i++) {
			if (!is_fetch_atom(&arg->list[i])) {
				*error_r = "Invalid fetch attribute";
				goto fail;
			}
			if (fetch_add(att, arg->list[i].str, error_r) < 0)
				goto fail;
			if (att->items[att->n - 1].kind == FETCH_PREVIEW &&
			    i + 1 < arg->nlist &&
			    arg->list[i + 1].type == IMAP_ARG_LIST) {
				i++;
				if (preview_mods(&arg->list[i],
				    &att->items[att->n - 1], error_r) < 0)
					goto fail;
			}
		}
		return 0;
	}
	if (!is_fetch_atom(arg)) {
		*error_r = "Invalid fetch attribute";
		return -1;
	}
	if ((macro = fetch_macro(arg->str)) != NULL) {
		for (n = 0; macro[n] != NULL; n++)
			;
		att->items = xcalloc(n, sizeof(*att->items));
		for (i = 0; i < n; i++)
			(void)fetch_add(att, macro[i], error_r);
		return 0;
	}
	att->items = xcalloc(1, sizeof(*att->items));
	if (fetch_add(att, arg->str, error_r) < 0)
		goto fail;
	return 0;
fail:
	imap_fetch_free(att);
	return -1;
}

void
imap_fetch_free(struct fetch_att *att)
{
	size_t i;

	for (i = 0; i < att->n; i++)
		fetch_item_free(&att->items[i]);
	free(att->items);
	memset(att, 0, sizeof(*att));
}

/* ---- modified UTF-7 (RFC 3501 5.1.3) ---- */

static const char mb64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
mb64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static void
utf8_put(str_t *out, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	str_append_n(out, b, n);
}

/* One UTF-16 unit of a shift: pairs surrogates in *high. */
static int
mutf7_unit(uint32_t u, uint32_t *high, str_t *out)
{
	if (*high != 0) {
		if (u < 0xdc00 || u > 0xdfff)
			return -1;
		utf8_put(out, 0x10000 + ((*high - 0xd800) << 10) +
		    (u - 0xdc00));
		*high = 0;
		return 0;
	}
	if (u >= 0xd800 && u <= 0xdbff) {
		*high = u;
		return 0;
	}
	/* Lone low surrogates, NUL and what must be written directly. */
	if ((u >= 0xdc00 && u <= 0xdfff) || u == 0 || (u >= 0x20 && u <= 0x7e))
		return -1;
	utf8_put(out, u);
	return 0;
}

/* A shift from in[*ip] (just after '&') to its '-', in canonical form:
 * at least one unit, fewer than 6 left-over bits, all of them zero. */
static int
mutf7_shift(const char *in, size_t len, size_t *ip, str_t *out)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;
	size_t i = *ip, units = 0;
	int v;

	for (;; i++) {
		if (i == len)
			return -1;
		if (in[i] == '-')
			break;
		if ((v = mb64_value((unsigned char)in[i])) < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 16) {
			nbits -= 16;
			if (mutf7_unit((bits >> nbits) & 0xffff, &high,
			    out) < 0)
				return -1;
			bits &= (1u << nbits) - 1;
			units++;
		}
	}
	if (units == 0 || high != 0 || nbits >= 6 || bits != 0)
		return -1;
	*ip = i + 1;
	return 0;
}

int
imap_mutf7_to_utf8(const char *in, size_t len, str_t *out)
{
	size_t i = 0, start = out->len;
	bool after_shift = false;

	while (i < len) {
		unsigned char c = (unsigned char)in[i];

		if (c == '&' && i + 1 < len && in[i + 1] == '-') {
			str_append_c(out, '&');
			i += 2;
			after_shift = false;
		} else if (c == '&') {
			/* Two adjacent shifts should have been one. */
			if (after_shift)
				goto bad;
			i++;
			if (mutf7_shift(in, len, &i, out) < 0)
				goto bad;
			after_shift = true;
		} else if (c >= 0x20 && c <= 0x7e) {
			str_append_c(out, (char)c);
			i++;
			after_shift = false;
		} else
			goto bad;
	}
	return 0;
bad:
	str_truncate(out, start);
	return -1;
}

/* One code point of strict UTF-8 at s[*ip]; -1 if malformed. */
static int
utf8_get(const unsigned char *s, size_t len, size_t *ip, uint32_t *cp_r)
{
	size_t i = *ip, n, k;
	uint32_t cp, min;
	unsigned char c = s[i];

	if (c < 0x80) {
		n = 0;
		cp = c;
		min = 0;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
		min = 0x10000;
	} else
		return -1;
	if (len - i - 1 < n)
		return -1;
	for (k = 1; k <= n; k++) {
		if ((s[i + k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[i + k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*ip = i + n + 1;
	*cp_r = cp;
	return 0;
}

struct b64w {
	uint32_t bits;
	unsigned nbits;
};

static void
mutf7_put16(struct b64w *w, uint32_t u, str_t *out)
{
	w->bits = (w->bits << 16) | u;
	w->nbits += 16;
	while (w->nbits >= 6) {
		w->nbits -= 6;
		str_append_c(out, mb64[(w->bits >> w->nbits) & 0x3f]);
	}
	w->bits &= (1u << w->nbits) - 1;
}

static bool
mutf7_direct(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e;
}

int
imap_utf8_to_mutf7(const char *in, size_t len, str_t *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, start = out->len;
	struct b64w w;
	uint32_t cp;

	while (i < len) {
		if (mutf7_direct(s[i])) {
			if (s[i] == '&')
				str_append(out, "&-");
			else
				str_append_c(out, (char)s[i]);
			i++;
			continue;
		}
		str_append_c(out, '&');
		memset(&w, 0, sizeof(w));
		while (i < len && !mutf7_direct(s[i])) {
			if (utf8_get(s, len, &i, &cp) < 0 || cp == 0)
				goto bad;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				mutf7_put16(&w, 0xd800 + (cp >> 10), out);
				mutf7_put16(&w, 0xdc00 + (cp & 0x3ff), out);
			} else
				mutf7_put16(&w, cp, out);
		}
		if (w.nbits > 0)
			str_append_c(out,
			    mb64[(w.bits << (6 - w.nbits)) & 0x3f]);
		str_append_c(out, '-');
	}
	return 0;
bad:
	str_truncate(out, start);
	return -1;
}

/* ---- LIST patterns ---- */

static bool
list_char_eq(char pc, const char *name, size_t j, bool inbox)
{
	if (pc == name[j])
		return true;
	/* name starts with a canonical "INBOX": any case of it matches */
	return inbox && j < 5 &&
	    up((unsigned char)pc) == (unsigned char)name[j];
}

/*
 * Dynamic programming over the name: cur[j] says whether the pattern
 * so far matches the first j bytes of the name. O(pattern * name) time
 * whatever the wildcards, O(name) memory.
 */
bool
imap_list_match(const char *pattern, const char *name, char sep)
{
	size_t nlen = strlen(name), j;
	bool inbox, any, stackbuf[2][256], *cur, *nxt, *t, *heap = NULL;
	bool result;
	const char *p;

	inbox = strncmp(name, "INBOX", 5) == 0 &&
	    (name[5] == '\0' || name[5] == sep);
	if (nlen + 1 <= sizeof(stackbuf[0]) / sizeof(bool)) {
		cur = stackbuf[0];
		nxt = stackbuf[1];
	} else {
		heap = xcalloc(2 * (nlen + 1), sizeof(bool));
		cur = heap;
		nxt = heap + nlen + 1;
	}
	memset(cur, 0, (nlen + 1) * sizeof(bool));
	cur[0] = true;
	for (p = pattern; *p != '\0'; p++) {
		if (*p == '*' && p > pattern && p[-1] == '*')
			continue;
		any = false;
		if (*p == '*' || *p == '%') {
			nxt[0] = cur[0];
			for (j = 1; j <= nlen; j++) {
				nxt[j] = cur[j] || (nxt[j - 1] &&
				    (*p == '*' || name[j - 1] != sep));
			}
		} else {
			nxt[0] = false;
			for (j = 1; j <= nlen; j++) {
				nxt[j] = cur[j - 1] &&
				    list_char_eq(*p, name, j - 1, inbox);
			}
		}
		for (j = 0; j <= nlen && !any; j++)
			any = nxt[j];
		t = cur;
		cur = nxt;
		nxt = t;
		if (!any)
			break;
	}
	result = cur[nlen];
	free(heap);
	return result;
}

/* ---- dates ---- */

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(long long z, long long *y_r, unsigned *m_r, unsigned *d_r)
{
	long long era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d_r = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m_r = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y_r = yoe + era * 400 + (*m_r <= 2);
}

static unsigned
month_length(long long y, unsigned m)
{
	static const unsigned len[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : len[m - 1];
}

/* n digits at *sp exactly. */
static int
fixed_digits(const char **sp, unsigned n, unsigned *v_r)
{
	const char *s = *sp;
	unsigned v = 0, i;

	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*sp = s + n;
	*v_r = v;
	return 0;
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy" at *sp (one_digit_only: the day was
 * space-padded, so exactly one digit follows). */
static int
date_part(const char **sp, bool one_digit_only, long long *days_r)
{
	const char *s = *sp;
	unsigned day, month, year, m;

	if (fixed_digits(&s, 1, &day) < 0)
		return -1;
	if (!one_digit_only && is_digit((unsigned char)*s))
		day = day * 10 + (unsigned)(*s++ - '0');
	if (*s++ != '-')
		return -1;
	for (m = 0; m < 12; m++) {
		if (strlen(s) >= 3 && word_eq(s, 3, month_names[m]))
			break;
	}
	if (m == 12)
		return -1;
	month = m + 1;
	s += 3;
	if (*s++ != '-' || fixed_digits(&s, 4, &year) < 0)
		return -1;
	if (day < 1 || day > month_length(year, month))
		return -1;
	*days_r = days_from_civil(year, month, day);
	*sp = s;
	return 0;
}

int
imap_date_parse(const char *s)
{
	long long days;

	if (date_part(&s, false, &days) < 0 || *s != '\0')
		return -1;
	/* -1 is the error value: 31-Dec-1969 becomes a day earlier. */
	return days == -1 ? -2 : (int)days;
}

int
imap_datetime_parse(const char *s, long long *t_r)
{
	unsigned hh, mm, ss, zh, zm;
	long long days, zone;
	bool pad = false;
	char sign;

	if (*s == ' ') {
		pad = true;
		s++;
	}
	if (date_part(&s, pad, &days) < 0 || *s++ != ' ')
		return -1;
	if (fixed_digits(&s, 2, &hh) < 0 || *s++ != ':' ||
	    fixed_digits(&s, 2, &mm) < 0 || *s++ != ':' ||
	    fixed_digits(&s, 2, &ss) < 0 || *s++ != ' ')
		return -1;
	sign = *s++;
	if ((sign != '+' && sign != '-') || fixed_digits(&s, 2, &zh) < 0 ||
	    fixed_digits(&s, 2, &zm) < 0 || *s != '\0')
		return -1;
	if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	zone = (long long)zh * 3600 + zm * 60;
	*t_r = days * 86400 + hh * 3600 + mm * 60 + ss -
	    (sign == '+' ? zone : -zone);
	return 0;
}

void
imap_datetime_format(long long t, str_t *out)
{
	/* 0000-01-01 .. 9999-12-31T23:59:59: four-digit years only */
	const long long tmin = -62167219200LL, tmax = 253402300799LL;
	long long days, secs, y;
	unsigned m, d;

	if (t < tmin)
		t = tmin;
	if (t > tmax)
		t = tmax;
	days = t / 86400;
	secs = t % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	str_printf(out, "\"%02u-%s-%04lld %02lld:%02lld:%02lld +0000\"", d,
	    month_names[m - 1], y, secs / 3600, secs / 60 % 60, secs % 60);
}

/* ---- response strings ---- */

void
imap_append_string(str_t *out, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len && len <= 1024; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			break;
	}
	if (i < len || len > 1024) {
		str_printf(out, "{%zu}\r\n", len);
		str_append_n(out, s, len);
		return;
	}
	str_append_c(out, '"');
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			str_append_c(out, '\\');
		str_append_c(out, s[i]);
	}
	str_append_c(out, '"');
}

void
imap_append_astring_utf8(str_t *out, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			break;
	if (i == len || len > 1024 || !str_utf8_valid(s, len)) {
		imap_append_astring(out, s, len);
		return;
	}
	for (i = 0; i < len; i++)
		if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
			break;
	if (i < len) {
		imap_append_string(out, s, len);
		return;
	}
	str_append_c(out, '"');
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			str_append_c(out, '\\');
		str_append_c(out, s[i]);
	}
	str_append_c(out, '"');
}

void
imap_append_nstring(str_t *out, const char *s, size_t len)
{
	if (s == NULL)
		str_append(out, "NIL");
	else
		imap_append_string(out, s, len);
}

void
imap_append_astring(str_t *out, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (!is_atom_char((unsigned char)s[i]))
			break;
	}
	if (len == 0 || i < len || word_eq(s, len, "NIL"))
		imap_append_string(out, s, len);
	else
		str_append_n(out, s, len);
}
