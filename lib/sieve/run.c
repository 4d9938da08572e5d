/*
 * run.c: the Sieve interpreter. Walks a validated tree over one message
 * (parsed with lib/mime) and collects the actions; applies the implicit
 * keep rules of RFC 5228 2.10.2. Every loop is bounded: the tree by the
 * parser's limits, the comparisons by SIEVE_WORK_MAX, the actions by
 * SIEVE_ACTIONS_MAX and the redirects by the per-user limit.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/mime/mime.h"
#include "lib/sieve/sieve.h"

enum mtype { M_IS, M_CONTAINS, M_MATCHES, M_COUNT, M_VALUE };
enum cmp { C_CASEMAP, C_OCTET, C_NUMERIC };
enum apart { A_ALL, A_LOCAL, A_DOMAIN, A_USER, A_DETAIL };

struct mopts {
	enum mtype mtype;
	const char *rel;
	enum cmp cmp;
	enum apart apart;
	uint64_t index;		/* :index (RFC 5260 6), 0 = none */
	bool last;		/* :last */
};

struct vartab {
	char *name[SIEVE_VARS_MAX], *val[SIEVE_VARS_MAX];
	size_t n;
};

struct run {
	const struct sieve_script *script;
	const struct sieve_msg *msg;
	struct mime_part *root;
	const char *hdr;
	size_t hdrlen;
	struct sieve_result *res;
	unsigned redirects_max, nredirects;
	bool cancel_keep, stopped, failed;
	bool variables;
	struct vartab *vars;	/* the running script's own */
	struct vartab glob;	/* include's global variables */
	const char *decl[SIEVE_VARS_MAX];	/* the names the running
						   script declared global */
	size_t ndecl;
	bool returned;		/* return: out of the running script */
	int inc_depth;
	char *inc_stack[SIEVE_INCLUDE_DEPTH];	/* "p:NAME" / "g:NAME" */
	char *included[SIEVE_INCLUDES_MAX];	/* every one run so far */
	size_t nincluded;
	char *caps[SIEVE_MATCH_CAPS];
	size_t ncaps;
	str_t flags;		/* the internal flags variable, space-separated */
	uint64_t work;
	char *error;
	str_t ehdr;		/* the header as editheader left it */
	bool edited;
	unsigned nadded;
};

static void __attribute__((format(printf, 3, 4)))
run_error(struct run *r, int line, const char *fmt, ...)
{
	va_list ap;
	str_t s = STR_INIT;

	if (r->failed)
		return;
	r->failed = true;
	if (r->inc_depth > 0)	/* in an included script: its name */
		str_printf(&s, "%s: ", r->inc_stack[r->inc_depth - 1] + 2);
	str_printf(&s, "line %d: ", line);
	va_start(ap, fmt);
	str_vprintf(&s, fmt, ap);
	va_end(ap);
	r->error = str_steal(&s);
}

static bool
over_budget(struct run *r, int line)
{
	if (r->work > SIEVE_WORK_MAX) {
		run_error(r, line, "script took too long (work limit)");
		return true;
	}
	return r->failed;
}

/* Wildcard matching. */

static unsigned char
fold(unsigned char c, bool f)
{
	return f && c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static size_t
utf8_len(const char *v, size_t left)
{
	unsigned char c = (unsigned char)v[0];
	size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 :
	    c >= 0xc0 ? 2 : 1;

	if (n > left)
		n = left;
	for (size_t i = 1; i < n; i++)
		if (((unsigned char)v[i] & 0xc0) != 0x80)
			return i;
	return n;
}

bool
sieve_match(const char *v, size_t vlen, const char *pat, size_t plen,
    bool f, char **caps, size_t *ncaps_r, uint64_t *work)
{
	size_t cs[SIEVE_MATCH_CAPS], cl[SIEVE_MATCH_CAPS];
	size_t p = 0, i = 0, k = 0;
	size_t sp = SIZE_MAX, si = 0, sk = 0;

	while (i < vlen) {
		(*work)++;
		if (p < plen && pat[p] == '*') {
			sp = ++p;
			si = i;
			sk = k;
			if (k < SIEVE_MATCH_CAPS) {
				cs[k] = i;
				cl[k] = 0;
			}
			k++;
			continue;
		}
		if (p < plen && pat[p] == '?') {
			size_t n = utf8_len(v + i, vlen - i);

			if (k < SIEVE_MATCH_CAPS) {
				cs[k] = i;
				cl[k] = n;
			}
			k++;
			p++;
			i += n;
			continue;
		}
		if (p < plen) {
			size_t q = p;

			if (pat[q] == '\\' && q + 1 < plen)
				q++;
			if (fold((unsigned char)pat[q], f) ==
			    fold((unsigned char)v[i], f)) {
				p = q + 1;
				i++;
				continue;
			}
		}
		if (sp == SIZE_MAX)
			return false;
		/* the last '*' takes one more character */
		si += utf8_len(v + si, vlen - si);
		i = si;
		p = sp;
		k = sk + 1;
		if (sk < SIEVE_MATCH_CAPS)
			cl[sk] = si - cs[sk];
	}
	while (p < plen && pat[p] == '*') {
		if (k < SIEVE_MATCH_CAPS) {
			cs[k] = i;
			cl[k] = 0;
		}
		k++;
		p++;
	}
	if (p != plen)
		return false;
	if (caps != NULL) {
		size_t n = 0;

		caps[n++] = xstrndup(v, vlen);
		for (size_t j = 0; j < k && n < SIEVE_MATCH_CAPS; j++)
			caps[n++] = xstrndup(v + cs[j], cl[j]);
		*ncaps_r = n;
	}
	return true;
}

/* Variables (RFC 5229). */

/* The table name (n bytes) lives in: the global one when the running
 * script declared it global (RFC 6609 3.3). */
static struct vartab *
var_tab(struct run *r, const char *name, size_t n)
{
	for (size_t i = 0; i < r->ndecl; i++)
		if (strlen(r->decl[i]) == n &&
		    strncasecmp(r->decl[i], name, n) == 0)
			return &r->glob;
	return r->vars;
}

static void
vartab_clear(struct vartab *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->name[i]);
		free(t->val[i]);
	}
	t->n = 0;
}

static const char *
var_get(struct run *r, const char *name, size_t n)
{
	struct vartab *tab;

	if (n > 0 && name[0] >= '0' && name[0] <= '9') {
		size_t idx = 0;

		for (size_t i = 0; i < n; i++) {
			if (name[i] < '0' || name[i] > '9' || idx > 100)
				return NULL;
			idx = idx * 10 + (size_t)(name[i] - '0');
		}
		return idx < r->ncaps ? r->caps[idx] : "";
	}
	tab = var_tab(r, name, n);
	for (size_t i = 0; i < tab->n; i++)
		if (strlen(tab->name[i]) == n &&
		    strncasecmp(tab->name[i], name, n) == 0)
			return tab->val[i];
	return "";
}

static bool
var_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	    (!first && ((c >= '0' && c <= '9') || c == '.'));
}

/* s with ${name} replaced (when the script uses variables). */
static char *
expand(struct run *r, const char *s)
{
	str_t out = STR_INIT;

	if (!r->variables || strstr(s, "${") == NULL)
		return xstrdup(s);
	for (size_t i = 0; s[i] != '\0'; i++) {
		if (s[i] == '$' && s[i + 1] == '{') {
			size_t j = i + 2, n;
			bool digits = s[j] >= '0' && s[j] <= '9';

			while (s[j] != '\0' && (digits ? (s[j] >= '0' &&
			    s[j] <= '9') : var_char(s[j], j == i + 2)))
				j++;
			n = j - (i + 2);
			if (n > 0 && s[j] == '}') {
				const char *val = var_get(r, s + i + 2, n);

				if (val != NULL) {
					str_append(&out, val);
					i = j;
					continue;
				}
			}
		}
		str_append_c(&out, s[i]);
		if (out.len > SIEVE_STRING_MAX)
			break;
	}
	if (out.len > SIEVE_STRING_MAX)
		str_truncate(&out, SIEVE_STRING_MAX);
	return str_steal(&out);
}

static void
var_set(struct run *r, int line, const char *name, const char *val)
{
	size_t i;
	size_t n = strlen(val);
	struct vartab *tab = var_tab(r, name, strlen(name));

	for (i = 0; i < tab->n; i++)
		if (strcasecmp(tab->name[i], name) == 0)
			break;
	if (i == tab->n) {
		if (tab->n == SIEVE_VARS_MAX) {
			run_error(r, line, "more than %d variables",
			    SIEVE_VARS_MAX);
			return;
		}
		tab->name[tab->n++] = xstrdup(name);
	} else {
		free(tab->val[i]);
	}
	if (n > SIEVE_VAR_SIZE_MAX)
		n = SIEVE_VAR_SIZE_MAX;
	tab->val[i] = xstrndup(val, n);
}

/* Arguments. */

static const struct sieve_tag *
tag(const struct sieve_node *n, const char *name)
{
	for (size_t i = 0; i < n->ntags; i++)
		if (strcmp(n->tags[i].name, name) == 0)
			return &n->tags[i];
	return NULL;
}

static void
mopts_get(const struct sieve_node *n, struct mopts *mo)
{
	memset(mo, 0, sizeof(*mo));
	for (size_t i = 0; i < n->ntags; i++) {
		const char *t = n->tags[i].name;
		const struct sieve_arg *v = n->tags[i].value;

		if (strcmp(t, "contains") == 0)
			mo->mtype = M_CONTAINS;
		else if (strcmp(t, "matches") == 0)
			mo->mtype = M_MATCHES;
		else if (strcmp(t, "count") == 0 || strcmp(t, "value") == 0) {
			mo->mtype = t[0] == 'c' ? M_COUNT : M_VALUE;
			mo->rel = v->strs[0];
		} else if (strcmp(t, "comparator") == 0) {
			const char *c = v->strs[0];

			mo->cmp = strcmp(c, "i;octet") == 0 ? C_OCTET :
			    strcmp(c, "i;ascii-numeric") == 0 ? C_NUMERIC :
			    C_CASEMAP;
		} else if (strcmp(t, "localpart") == 0)
			mo->apart = A_LOCAL;
		else if (strcmp(t, "domain") == 0)
			mo->apart = A_DOMAIN;
		else if (strcmp(t, "user") == 0)
			mo->apart = A_USER;
		else if (strcmp(t, "detail") == 0)
			mo->apart = A_DETAIL;
		else if (strcmp(t, "index") == 0)
			mo->index = v->num;
		else if (strcmp(t, "last") == 0)
			mo->last = true;
	}
}

/* i;ascii-numeric: the leading digits, or "infinity" (-1) */
static int
num_cmp(const char *a, const char *b)
{
	size_t la = 0, lb = 0;

	while (a[la] >= '0' && a[la] <= '9')
		la++;
	while (b[lb] >= '0' && b[lb] <= '9')
		lb++;
	if (la == 0 || lb == 0)
		return (la == 0) - (lb == 0) == 0 ? 0 : la == 0 ? 1 : -1;
	while (la > 1 && *a == '0') {
		a++;
		la--;
	}
	while (lb > 1 && *b == '0') {
		b++;
		lb--;
	}
	if (la != lb)
		return la < lb ? -1 : 1;
	return strncmp(a, b, la) < 0 ? -1 : strncmp(a, b, la) > 0;
}

static int
str_cmp(const char *a, const char *b, enum cmp c)
{
	if (c == C_NUMERIC)
		return num_cmp(a, b);
	for (;; a++, b++) {
		unsigned char x = fold((unsigned char)*a, c == C_CASEMAP);
		unsigned char y = fold((unsigned char)*b, c == C_CASEMAP);

		if (x != y)
			return x < y ? -1 : 1;
		if (x == '\0')
			return 0;
	}
}

static bool
rel_ok(const char *rel, int c)
{
	if (strcmp(rel, "gt") == 0)
		return c > 0;
	if (strcmp(rel, "ge") == 0)
		return c >= 0;
	if (strcmp(rel, "lt") == 0)
		return c < 0;
	if (strcmp(rel, "le") == 0)
		return c <= 0;
	if (strcmp(rel, "eq") == 0)
		return c == 0;
	return c != 0;
}

static bool
contains(const char *v, const char *k, bool f, uint64_t *work)
{
	size_t vl = strlen(v), kl = strlen(k);

	if (kl == 0)
		return true;
	for (size_t i = 0; i + kl <= vl; i++) {
		size_t j = 0;

		*work += 1;
		while (j < kl && fold((unsigned char)v[i + j], f) ==
		    fold((unsigned char)k[j], f))
			j++;
		if (j == kl)
			return true;
	}
	return false;
}

static void
caps_clear(struct run *r)
{
	for (size_t i = 0; i < r->ncaps; i++)
		free(r->caps[i]);
	r->ncaps = 0;
}

/* One value against one (expanded) key. */
static bool
match_value(struct run *r, const struct mopts *mo, const char *v,
    const char *k)
{
	r->work += strlen(v) + 1;
	switch (mo->mtype) {
	case M_IS:
		return str_cmp(v, k, mo->cmp) == 0;
	case M_CONTAINS:
		if (mo->cmp == C_NUMERIC)
			return false;
		return contains(v, k, mo->cmp == C_CASEMAP, &r->work);
	case M_MATCHES: {
		char *caps[SIEVE_MATCH_CAPS];
		size_t n = 0;
		bool ok;

		if (mo->cmp == C_NUMERIC)
			return false;
		ok = sieve_match(v, strlen(v), k, strlen(k),
		    mo->cmp == C_CASEMAP, r->variables ? caps : NULL, &n,
		    &r->work);
		if (ok && r->variables) {
			caps_clear(r);
			memcpy(r->caps, caps, n * sizeof(*caps));
			r->ncaps = n;
		}
		return ok;
	}
	case M_VALUE:
		return rel_ok(mo->rel, str_cmp(v, k, mo->cmp));
	default:
		return false;
	}
}

/* Values against the keys list: any value matching any key, or for
 * :count the number of values compared with each key. */
static bool
match_values(struct run *r, const struct mopts *mo, char **vals,
    size_t nvals, const struct sieve_arg *keys)
{
	for (size_t k = 0; k < keys->nstrs; k++) {
		char *key = expand(r, keys->strs[k]);
		bool ok = false;

		if (mo->mtype == M_COUNT) {
			char num[32];

			snprintf(num, sizeof(num), "%zu", nvals);
			ok = rel_ok(mo->rel, str_cmp(num, key, mo->cmp));
		} else {
			for (size_t i = 0; i < nvals && !ok; i++)
				ok = match_value(r, mo, vals[i], key);
		}
		free(key);
		if (ok)
			return true;
	}
	return false;
}

/* Values collected from the message. */
struct vals {
	char **v;
	size_t n;
};

/* Room for element n (doubling at powers of two: O(n) for n appends). */
static void *
grow(void *p, size_t n, size_t size)
{
	if (n == 0 || (n & (n - 1)) == 0)
		return xrealloc(p, (n == 0 ? 1 : 2 * n) * size);
	return p;
}

static void
vals_add(struct vals *vs, char *s)
{
	if (vs->n >= 10000) {
		free(s);
		return;
	}
	vs->v = grow(vs->v, vs->n, sizeof(*vs->v));
	vs->v[vs->n++] = s;
}

static void
vals_free(struct vals *vs)
{
	for (size_t i = 0; i < vs->n; i++)
		free(vs->v[i]);
	free(vs->v);
	memset(vs, 0, sizeof(*vs));
}

/* Raw values (unfolded, trimmed) of every field called name. */
static void
header_raw(struct run *r, const char *name, struct vals *vs)
{
	const char *p = r->hdr, *end = r->hdr + r->hdrlen;
	size_t nl = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol != NULL ? eol + 1 : end;

		if (*p == '\r' || *p == '\n')
			break;
		r->work += (size_t)(line_end - p);
		if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0) {
			const char *q = p + nl;

			while (q < line_end && (*q == ' ' || *q == '\t'))
				q++;
			if (q < line_end && *q == ':') {
				str_t v = STR_INIT;
				const char *s = q + 1;

				/* the field with its continuation lines */
				while (line_end < end &&
				    (*line_end == ' ' || *line_end == '\t')) {
					const char *e2 = memchr(line_end, '\n',
					    (size_t)(end - line_end));

					line_end = e2 != NULL ? e2 + 1 : end;
				}
				for (; s < line_end; s++)
					if (*s != '\r' && *s != '\n')
						str_append_c(&v, *s);
				{
					char *all = str_steal(&v);

					vals_add(vs, xstrdup(str_trim(
					    all != NULL ? all : (char *)"")));
					free(all);
				}
				p = line_end;
				continue;
			}
		}
		p = line_end;
	}
}

static void
header_decoded(struct run *r, const char *name, struct vals *vs)
{
	struct vals raw = { 0 };

	header_raw(r, name, &raw);
	for (size_t i = 0; i < raw.n; i++) {
		str_t d = STR_INIT;

		mime_decode_header(raw.v[i], strlen(raw.v[i]), &d);
		vals_add(vs, str_steal(&d));
	}
	vals_free(&raw);
}

/* :index N [:last] (RFC 5260 6): keep only the N-th field of vs (from
 * the end with :last), or none when there are fewer. */
static void
pick_index(struct vals *vs, const struct mopts *mo)
{
	size_t keep;

	if (mo->index == 0)
		return;
	if (mo->index > vs->n) {
		for (size_t i = 0; i < vs->n; i++)
			free(vs->v[i]);
		vs->n = 0;
		return;
	}
	keep = mo->last ? vs->n - (size_t)mo->index : (size_t)mo->index - 1;
	for (size_t i = 0; i < vs->n; i++)
		if (i != keep)
			free(vs->v[i]);
	vs->v[0] = vs->v[keep];
	vs->n = 1;
}

/* The address part of local@host, or NULL when it has none. */
static char *
addr_part(enum apart ap, const char *local, const char *host)
{
	const char *plus = strchr(local, '+');

	switch (ap) {
	case A_LOCAL:
		return xstrdup(local);
	case A_DOMAIN:
		return xstrdup(host);
	case A_USER:
		return plus != NULL ? xstrndup(local, (size_t)(plus - local)) :
		    xstrdup(local);
	case A_DETAIL:
		return plus != NULL ? xstrdup(plus + 1) : NULL;
	default:
		return *host != '\0' ? xasprintf("%s@%s", local, host) :
		    xstrdup(local);
	}
}

static bool
test_address(struct run *r, const struct sieve_node *n, bool envelope)
{
	struct mopts mo;
	struct vals vs = { 0 };
	bool ok;

	mopts_get(n, &mo);
	for (size_t i = 0; i < n->pos[0]->nstrs; i++) {
		char *name = expand(r, n->pos[0]->strs[i]);

		if (envelope) {
			const char *a = NULL;

			if (strcasecmp(name, "from") == 0)
				a = r->msg->env_from;
			else if (strcasecmp(name, "to") == 0)
				a = r->msg->env_to;
			if (a != NULL) {
				const char *at = strrchr(a, '@');
				char *local = at != NULL ?
				    xstrndup(a, (size_t)(at - a)) : xstrdup(a);
				char *p;

				if (*a == '\0')	/* <> is "" for every part */
					p = mo.apart == A_DETAIL ? NULL :
					    xstrdup("");
				else
					p = addr_part(mo.apart, local,
					    at != NULL ? at + 1 : "");
				if (p != NULL)
					vals_add(&vs, p);
				free(local);
			}
		} else {
			struct vals raw = { 0 };

			header_raw(r, name, &raw);
			pick_index(&raw, &mo);
			for (size_t j = 0; j < raw.n; j++) {
				struct mime_mailbox *mbs;
				size_t nmb = mime_mailbox_list(raw.v[j], &mbs);

				for (size_t m = 0; m < nmb; m++) {
					char *p = addr_part(mo.apart,
					    mbs[m].local, mbs[m].host);

					if (p != NULL)
						vals_add(&vs, p);
				}
				mime_mailbox_list_free(mbs, nmb);
			}
			vals_free(&raw);
		}
		free(name);
	}
	ok = match_values(r, &mo, vs.v, vs.n, n->pos[1]);
	vals_free(&vs);
	return ok;
}

static bool
test_header(struct run *r, const struct sieve_node *n)
{
	struct mopts mo;
	struct vals vs = { 0 };
	bool ok;

	mopts_get(n, &mo);
	for (size_t i = 0; i < n->pos[0]->nstrs; i++) {
		char *name = expand(r, n->pos[0]->strs[i]);
		struct vals one = { 0 };

		header_decoded(r, name, &one);
		pick_index(&one, &mo);
		for (size_t k = 0; k < one.n; k++)
			vals_add(&vs, one.v[k]);
		free(one.v);
		free(name);
	}
	ok = match_values(r, &mo, vs.v, vs.n, n->pos[1]);
	vals_free(&vs);
	return ok;
}

/* date and currentdate (RFC 5260 4, 5). */

/* "+hhmm" / "-hhmm" in minutes east of UTC; false if malformed. */
static bool
zone_parse(const char *s, int *min_r)
{
	int v = 0;

	if ((s[0] != '+' && s[0] != '-') || strlen(s) != 5)
		return false;
	for (int i = 1; i < 5; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v / 100 > 23 || v % 100 > 59)
		return false;
	*min_r = (s[0] == '-' ? -1 : 1) * (v / 100 * 60 + v % 100);
	return true;
}

/* The local zone's offset at t, in minutes east of UTC. */
static int
local_zone(long long t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (localtime_r(&tt, &tm) == NULL)
		return 0;
	return (int)(tm.tm_gmtoff / 60);
}

/* One date-part of t (UTC seconds) seen in zone (minutes east); NULL
 * for an unknown part. */
static char *
date_part(long long t, int zone, const char *part)
{
	static const char *const wday[] = { "Sun", "Mon", "Tue", "Wed",
		"Thu", "Fri", "Sat" };
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr",
		"May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	long long lt = t + (long long)zone * 60;
	time_t tt = (time_t)lt;
	struct tm tm;
	char z[16];
	int az = (zone < 0 ? -zone : zone) % (100 * 60);

	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 < 0 ||
	    tm.tm_year + 1900 > 9999)
		return NULL;
	snprintf(z, sizeof(z), "%c%02d%02d", zone < 0 ? '-' : '+', az / 60,
	    az % 60);
	if (strcasecmp(part, "year") == 0)
		return xasprintf("%04d", tm.tm_year + 1900);
	if (strcasecmp(part, "month") == 0)
		return xasprintf("%02d", tm.tm_mon + 1);
	if (strcasecmp(part, "day") == 0)
		return xasprintf("%02d", tm.tm_mday);
	if (strcasecmp(part, "date") == 0)
		return xasprintf("%04d-%02d-%02d", tm.tm_year + 1900,
		    tm.tm_mon + 1, tm.tm_mday);
	if (strcasecmp(part, "julian") == 0) {
		/* Modified Julian Day: days since 1858-11-17 */
		long long d = lt >= 0 ? lt / 86400 : -((-lt + 86399) / 86400);

		return xasprintf("%lld", d + 40587);
	}
	if (strcasecmp(part, "hour") == 0)
		return xasprintf("%02d", tm.tm_hour);
	if (strcasecmp(part, "minute") == 0)
		return xasprintf("%02d", tm.tm_min);
	if (strcasecmp(part, "second") == 0)
		return xasprintf("%02d", tm.tm_sec);
	if (strcasecmp(part, "time") == 0)
		return xasprintf("%02d:%02d:%02d", tm.tm_hour, tm.tm_min,
		    tm.tm_sec);
	if (strcasecmp(part, "iso8601") == 0) {
		if (zone == 0)
			return xasprintf("%04d-%02d-%02dT%02d:%02d:%02dZ",
			    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			    tm.tm_hour, tm.tm_min, tm.tm_sec);
		return xasprintf("%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, zone < 0 ? '-' : '+', az / 60,
		    az % 60);
	}
	if (strcasecmp(part, "std11") == 0)
		return xasprintf("%s, %02d %s %04d %02d:%02d:%02d %s",
		    wday[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon],
		    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, z);
	if (strcasecmp(part, "zone") == 0)
		return xstrdup(z);
	if (strcasecmp(part, "weekday") == 0)
		return xasprintf("%d", tm.tm_wday);
	return NULL;
}

/* date: the first field called name (or the :index one), a Received
 * field's date after its last ';'; currentdate: the time of the run.
 * The part is taken in :zone, the field's own zone (:originalzone) or
 * the local zone. A missing field, an unparseable date or an unknown
 * part gives no value (the test is false; :count sees 0). */
static bool
test_date(struct run *r, const struct sieve_node *n, bool current)
{
	struct mopts mo;
	struct vals vs = { 0 };
	const struct sieve_tag *zt = tag(n, "zone");
	const struct sieve_arg *partarg = n->pos[current ? 0 : 1];
	char *part = expand(r, partarg->strs[0]);
	long long t = -1;
	int zone = 0, orig = 0;
	bool ok;

	mopts_get(n, &mo);
	if (current) {
		t = r->msg->now != 0 ? r->msg->now : (long long)time(NULL);
	} else {
		char *name = expand(r, n->pos[0]->strs[0]);
		struct vals raw = { 0 };

		header_raw(r, name, &raw);
		pick_index(&raw, &mo);
		if (raw.n > 0) {
			const char *v = raw.v[0];
			const char *semi = strrchr(v, ';');

			if (strcasecmp(name, "received") == 0 && semi != NULL)
				v = semi + 1;
			t = mime_parse_date_zone(v, &orig);
		}
		vals_free(&raw);
		free(name);
	}
	if (t != -1) {
		char *z = zt != NULL ? expand(r, zt->value->strs[0]) : NULL;
		char *val;

		if (tag(n, "originalzone") != NULL)
			zone = orig;
		else if (z == NULL || !zone_parse(z, &zone))
			zone = local_zone(t);
		free(z);
		if ((val = date_part(t, zone, part)) != NULL)
			vals_add(&vs, val);
	}
	ok = match_values(r, &mo, vs.v, vs.n, n->pos[n->npos - 1]);
	vals_free(&vs);
	free(part);
	return ok;
}

/* duplicate (RFC 7352): the ID is :uniqueid, the first field named by
 * :header, or the Message-ID; without one the test is false and nothing
 * is recorded. The ID is marked for the caller to record after
 * delivery, once per run (the same ID tested again in the run gives the
 * same answer). */
static bool
test_duplicate(struct run *r, const struct sieve_node *n)
{
	const struct sieve_tag *t;
	char *id = NULL, *handle;
	uint64_t secs = SIEVE_DUPLICATE_DEFAULT;
	bool last = tag(n, "last") != NULL, seen;
	struct sieve_result *res = r->res;
	size_t i;

	if ((t = tag(n, "uniqueid")) != NULL) {
		id = expand(r, t->value->strs[0]);
	} else {
		struct vals vs = { 0 };
		char *name;

		t = tag(n, "header");
		name = t != NULL ? expand(r, t->value->strs[0]) :
		    xstrdup("message-id");
		header_raw(r, name, &vs);
		if (vs.n > 0)
			id = xstrdup(vs.v[0]);
		vals_free(&vs);
		free(name);
	}
	if (id == NULL)
		return false;
	if ((t = tag(n, "seconds")) != NULL)
		secs = t->value->num;
	if (secs > SIEVE_DUPLICATE_MAX)
		secs = SIEVE_DUPLICATE_MAX;
	t = tag(n, "handle");
	handle = t != NULL ? expand(r, t->value->strs[0]) : xstrdup("");
	seen = r->msg->duplicate_seen != NULL &&
	    r->msg->duplicate_seen(r->msg->duplicate_ctx, handle, id);
	for (i = 0; i < res->ndups; i++)
		if (strcmp(res->dups[i].handle, handle) == 0 &&
		    strcmp(res->dups[i].id, id) == 0)
			break;
	if (i < res->ndups) {
		struct sieve_dupmark *m = &res->dups[i];

		m->last = m->last || last;
		if (secs > m->seconds)
			m->seconds = secs;
		free(handle);
		free(id);
	} else if (res->ndups >= SIEVE_ACTIONS_MAX) {
		run_error(r, n->line, "more than %d duplicate IDs",
		    SIEVE_ACTIONS_MAX);
		free(handle);
		free(id);
	} else {
		res->dups = xrealloc(res->dups, (res->ndups + 1) *
		    sizeof(*res->dups));
		res->dups[res->ndups].handle = handle;
		res->dups[res->ndups].id = id;
		res->dups[res->ndups].seconds = secs;
		res->dups[res->ndups++].last = last;
	}
	return seen;
}

static bool
test_string(struct run *r, const struct sieve_node *n)
{
	struct mopts mo;
	struct vals vs = { 0 };
	bool ok;

	mopts_get(n, &mo);
	for (size_t i = 0; i < n->pos[0]->nstrs; i++) {
		char *s = expand(r, n->pos[0]->strs[i]);

		/* :count counts the non-empty strings (RFC 5229 5) */
		if (mo.mtype == M_COUNT && *s == '\0')
			free(s);
		else
			vals_add(&vs, s);
	}
	ok = match_values(r, &mo, vs.v, vs.n, n->pos[1]);
	vals_free(&vs);
	return ok;
}

static bool
test_exists(struct run *r, const struct sieve_node *n)
{
	for (size_t i = 0; i < n->pos[0]->nstrs; i++) {
		struct vals vs = { 0 };
		char *name = expand(r, n->pos[0]->strs[i]);
		bool found;

		header_raw(r, name, &vs);
		found = vs.n > 0;
		vals_free(&vs);
		free(name);
		if (!found)
			return false;
	}
	return true;
}

/* Flags: space-separated words, compared case-insensitively. */
static bool
flag_in(const str_t *flags, const char *f, size_t fl)
{
	const char *p = str_c(flags);

	while (*p != '\0') {
		size_t k = strcspn(p, " ");

		if (k == fl && strncasecmp(p, f, fl) == 0)
			return true;
		p += k;
		while (*p == ' ')
			p++;
	}
	return false;
}

/* Add (or remove) every word of s to/from flags. */
static void
flags_edit(str_t *flags, const char *s, bool add)
{
	str_t out = STR_INIT, rm = STR_INIT;
	const char *p;

	if (add) {
		for (p = s; *p != '\0';) {
			size_t k;

			while (*p == ' ')
				p++;
			k = strcspn(p, " ");
			if (k > 0 && !flag_in(flags, p, k) && flags->len < 4096) {
				if (flags->len > 0)
					str_append_c(flags, ' ');
				str_append_n(flags, p, k);
			}
			p += k;
		}
		return;
	}
	str_append(&rm, s);
	for (p = str_c(flags); *p != '\0';) {
		size_t k;

		while (*p == ' ')
			p++;
		k = strcspn(p, " ");
		if (k > 0 && !flag_in(&rm, p, k)) {
			if (out.len > 0)
				str_append_c(&out, ' ');
			str_append_n(&out, p, k);
		}
		p += k;
	}
	str_free(&rm);
	str_truncate(flags, 0);
	str_append_n(flags, out.data ? out.data : "", out.len);
	str_free(&out);
}

/* The flags of a list argument (expanded) or of the variable. */
static void
flags_from_list(struct run *r, const struct sieve_arg *a, str_t *out)
{
	for (size_t i = 0; i < a->nstrs; i++) {
		char *s = expand(r, a->strs[i]);

		flags_edit(out, s, true);
		free(s);
	}
}

static bool
test_hasflag(struct run *r, const struct sieve_node *n)
{
	struct mopts mo;
	struct vals vs = { 0 };
	str_t fl = STR_INIT;
	const struct sieve_arg *keys = n->pos[n->npos - 1];
	bool ok;

	mopts_get(n, &mo);
	if (n->npos == 2) {
		for (size_t i = 0; i < n->pos[0]->nstrs; i++)
			flags_edit(&fl, var_get(r, n->pos[0]->strs[i],
			    strlen(n->pos[0]->strs[i])), true);
	} else {
		str_append_n(&fl, r->flags.data ? r->flags.data : "",
		    r->flags.len);
	}
	for (const char *p = str_c(&fl); *p != '\0';) {
		size_t k = strcspn(p, " ");

		if (k > 0)
			vals_add(&vs, xstrndup(p, k));
		p += k;
		while (*p == ' ')
			p++;
	}
	ok = match_values(r, &mo, vs.v, vs.n, keys);
	vals_free(&vs);
	str_free(&fl);
	return ok;
}

static bool
type_matches(const struct mime_part *part, const char *want)
{
	size_t tl = strlen(part->type);

	if (*want == '\0')
		return true;
	if (strchr(want, '/') == NULL)
		return strcasecmp(want, part->type) == 0;
	return strncasecmp(want, part->type, tl) == 0 && want[tl] == '/' &&
	    strcasecmp(want + tl + 1, part->subtype) == 0;
}

static void
body_parts(struct run *r, const struct mime_part *p,
    const struct sieve_arg *types, struct vals *vs, int depth)
{
	bool want = false;

	if (depth > MIME_DEPTH_MAX)
		return;
	if (p->nchildren > 0) {
		for (size_t i = 0; i < p->nchildren; i++)
			body_parts(r, &p->children[i], types, vs, depth + 1);
		return;
	}
	if (p->message != NULL) {
		body_parts(r, p->message, types, vs, depth + 1);
		return;
	}
	if (types == NULL) {
		want = strcmp(p->type, "text") == 0;
	} else {
		for (size_t i = 0; i < types->nstrs && !want; i++) {
			char *t = expand(r, types->strs[i]);

			want = type_matches(p, t);
			free(t);
		}
	}
	if (want) {
		str_t t = STR_INIT;

		mime_body_text(r->msg->data, p, &t);
		r->work += t.len;
		vals_add(vs, str_steal(&t));
	}
}

static bool
test_body(struct run *r, const struct sieve_node *n)
{
	struct mopts mo;
	struct vals vs = { 0 };
	const struct sieve_tag *c = tag(n, "content");
	bool ok;

	mopts_get(n, &mo);
	if (tag(n, "raw") != NULL) {
		vals_add(&vs, xstrndup(r->msg->data + r->root->body_off,
		    r->root->body_len));
	} else {
		body_parts(r, r->root, c != NULL ? c->value : NULL, &vs, 0);
	}
	ok = match_values(r, &mo, vs.v, vs.n, n->pos[0]);
	vals_free(&vs);
	return ok;
}

static bool
test_eval(struct run *r, const struct sieve_node *n)
{
	const char *t = n->name;

	if (over_budget(r, n->line))
		return false;
	r->work++;
	if (strcmp(t, "true") == 0)
		return true;
	if (strcmp(t, "false") == 0)
		return false;
	if (strcmp(t, "not") == 0)
		return !test_eval(r, &n->tests[0]);
	if (strcmp(t, "allof") == 0) {
		for (size_t i = 0; i < n->ntests; i++)
			if (!test_eval(r, &n->tests[i]))
				return false;
		return true;
	}
	if (strcmp(t, "anyof") == 0) {
		for (size_t i = 0; i < n->ntests; i++)
			if (test_eval(r, &n->tests[i]))
				return true;
		return false;
	}
	if (strcmp(t, "size") == 0) {
		uint64_t size = r->msg->size > 0 ? r->msg->size :
		    r->msg->len;

		return tag(n, "over") != NULL ? size > n->pos[0]->num :
		    size < n->pos[0]->num;
	}
	if (strcmp(t, "address") == 0)
		return test_address(r, n, false);
	if (strcmp(t, "envelope") == 0)
		return test_address(r, n, true);
	if (strcmp(t, "header") == 0)
		return test_header(r, n);
	if (strcmp(t, "exists") == 0)
		return test_exists(r, n);
	if (strcmp(t, "hasflag") == 0)
		return test_hasflag(r, n);
	if (strcmp(t, "string") == 0)
		return test_string(r, n);
	if (strcmp(t, "body") == 0)
		return test_body(r, n);
	if (strcmp(t, "date") == 0)
		return test_date(r, n, false);
	if (strcmp(t, "currentdate") == 0)
		return test_date(r, n, true);
	if (strcmp(t, "duplicate") == 0)
		return test_duplicate(r, n);
	run_error(r, n->line, "test '%s' cannot run", t);
	return false;
}

/* Actions. */

static struct sieve_action *
action_add(struct run *r, int line, enum sieve_action_type type,
    const char *arg)
{
	struct sieve_result *res = r->res;
	struct sieve_action *a;

	if (res->nactions >= SIEVE_ACTIONS_MAX) {
		run_error(r, line, "more than %d actions", SIEVE_ACTIONS_MAX);
		return NULL;
	}
	res->actions = xrealloc(res->actions,
	    (res->nactions + 1) * sizeof(*res->actions));
	a = &res->actions[res->nactions++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->arg = arg != NULL ? xstrdup(arg) : NULL;
	return a;
}

/* The message an action delivers: as editheader has left it so far. */
static void
action_header(struct run *r, struct sieve_action *a)
{
	free(a->header);
	a->header = r->edited ? xstrndup(r->ehdr.data != NULL ?
	    r->ehdr.data : "", r->ehdr.len) : NULL;
}

static struct sieve_action *
action_find(struct run *r, enum sieve_action_type type, const char *arg)
{
	for (size_t i = 0; i < r->res->nactions; i++) {
		struct sieve_action *a = &r->res->actions[i];

		if (a->type == type && (arg == NULL ||
		    (type == SIEVE_ACT_STORE ? strcmp(a->arg, arg) == 0 :
		    strcasecmp(a->arg, arg) == 0)))
			return a;
	}
	return NULL;
}

/* vacation (RFC 5230, :seconds RFC 6131): one per run; the period is
 * bounded to [SIEVE_VACATION_SECONDS_MIN, SIEVE_VACATION_DAYS_MAX days]
 * (RFC 5230 4.1 lets the site bound it). The implicit keep stays. */
static void
cmd_vacation(struct run *r, const struct sieve_node *n, const char *reason)
{
	const struct sieve_tag *t;
	struct sieve_vacation *v;
	struct sieve_action *a;
	uint64_t secs = (uint64_t)SIEVE_VACATION_DAYS_DEFAULT * 86400;
	const uint64_t max = (uint64_t)SIEVE_VACATION_DAYS_MAX * 86400;

	if (action_find(r, SIEVE_ACT_VACATION, NULL) != NULL) {
		run_error(r, n->line, "more than one vacation action");
		return;
	}
	if (action_find(r, SIEVE_ACT_REJECT, NULL) != NULL ||
	    action_find(r, SIEVE_ACT_EREJECT, NULL) != NULL) {
		run_error(r, n->line, "vacation conflicts with reject");
		return;
	}
	if ((t = tag(n, "days")) != NULL)
		secs = t->value->num > max / 86400 ? max :
		    t->value->num * 86400;
	else if ((t = tag(n, "seconds")) != NULL)
		secs = t->value->num > max ? max : t->value->num;
	if (secs < SIEVE_VACATION_SECONDS_MIN)
		secs = SIEVE_VACATION_SECONDS_MIN;
	if ((a = action_add(r, n->line, SIEVE_ACT_VACATION, reason)) == NULL)
		return;
	v = a->vacation = xcalloc(1, sizeof(*v));
	v->seconds = secs;
	v->mime = tag(n, "mime") != NULL;
	if ((t = tag(n, "subject")) != NULL)
		v->subject = expand(r, t->value->strs[0]);
	if ((t = tag(n, "from")) != NULL)
		v->from = expand(r, t->value->strs[0]);
	if ((t = tag(n, "handle")) != NULL)
		v->handle = expand(r, t->value->strs[0]);
	if ((t = tag(n, "addresses")) != NULL && t->value->nstrs > 0) {
		v->addresses = xcalloc(t->value->nstrs, sizeof(char *));
		for (size_t i = 0; i < t->value->nstrs; i++)
			v->addresses[v->naddresses++] = expand(r,
			    t->value->strs[i]);
	}
}

void
sieve_vacation_free(struct sieve_vacation *v)
{
	if (v == NULL)
		return;
	free(v->subject);
	free(v->from);
	free(v->handle);
	for (size_t i = 0; i < v->naddresses; i++)
		free(v->addresses[i]);
	free(v->addresses);
	free(v);
}

struct sieve_vacation *
sieve_vacation_dup(const struct sieve_vacation *v)
{
	struct sieve_vacation *c;

	if (v == NULL)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->seconds = v->seconds;
	c->mime = v->mime;
	c->subject = v->subject != NULL ? xstrdup(v->subject) : NULL;
	c->from = v->from != NULL ? xstrdup(v->from) : NULL;
	c->handle = v->handle != NULL ? xstrdup(v->handle) : NULL;
	if (v->naddresses > 0)
		c->addresses = xcalloc(v->naddresses, sizeof(char *));
	for (size_t i = 0; i < v->naddresses; i++)
		c->addresses[c->naddresses++] = xstrdup(v->addresses[i]);
	return c;
}

static void
set_flags(struct sieve_action *a, const str_t *fl)
{
	for (size_t i = 0; i < a->nflags; i++)
		free(a->flags[i]);
	free(a->flags);
	a->flags = NULL;
	a->nflags = 0;
	for (const char *p = str_c(fl); *p != '\0';) {
		size_t k = strcspn(p, " ");

		if (k > 0) {
			a->flags = xrealloc(a->flags,
			    (a->nflags + 1) * sizeof(*a->flags));
			a->flags[a->nflags++] = xstrndup(p, k);
		}
		p += k;
		while (*p == ' ')
			p++;
	}
}

static bool
has_reject(struct run *r)
{
	return action_find(r, SIEVE_ACT_REJECT, NULL) != NULL ||
	    action_find(r, SIEVE_ACT_EREJECT, NULL) != NULL;
}

static void
do_store(struct run *r, const struct sieve_node *n, const char *folder)
{
	const struct sieve_tag *ft = tag(n, "flags");
	str_t fl = STR_INIT;
	struct sieve_action *a;

	if (has_reject(r)) {
		run_error(r, n->line, "%s conflicts with reject", n->name);
		return;
	}
	if (ft != NULL)
		flags_from_list(r, ft->value, &fl);
	else
		str_append_n(&fl, r->flags.data ? r->flags.data : "",
		    r->flags.len);
	a = action_find(r, SIEVE_ACT_STORE, folder);
	if (a == NULL)
		a = action_add(r, n->line, SIEVE_ACT_STORE, folder);
	if (a != NULL) {
		set_flags(a, &fl);
		action_header(r, a);
		if (tag(n, "create") != NULL)
			a->create = true;
	}
	str_free(&fl);
}

static void
cmd_setflag(struct run *r, const struct sieve_node *n)
{
	const struct sieve_arg *list = n->pos[n->npos - 1];
	str_t cur = STR_INIT, arg = STR_INIT;
	const char *var = n->npos == 2 ? n->pos[0]->strs[0] : NULL;

	if (var != NULL)
		str_append(&cur, var_get(r, var, strlen(var)));
	else
		str_append_n(&cur, r->flags.data ? r->flags.data : "",
		    r->flags.len);
	flags_from_list(r, list, &arg);
	if (strcmp(n->name, "setflag") == 0) {
		str_truncate(&cur, 0);
		flags_edit(&cur, str_c(&arg), true);
	} else {
		flags_edit(&cur, str_c(&arg), strcmp(n->name, "addflag") == 0);
	}
	if (var != NULL) {
		var_set(r, n->line, var, str_c(&cur));
	} else {
		str_truncate(&r->flags, 0);
		str_append_n(&r->flags, cur.data ? cur.data : "", cur.len);
	}
	str_free(&cur);
	str_free(&arg);
}

static void
cmd_set(struct run *r, const struct sieve_node *n)
{
	char *v = expand(r, n->pos[1]->strs[0]);
	str_t out = STR_INIT;
	bool q = tag(n, "quotewildcard") != NULL;

	/* modifiers by precedence: lower/upper, lowerfirst/upperfirst,
	 * quotewildcard, length (RFC 5229 4.1) */
	for (char *p = v; *p != '\0'; p++) {
		if (tag(n, "lower") != NULL && *p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
		if (tag(n, "upper") != NULL && *p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	}
	if (tag(n, "lowerfirst") != NULL && *v >= 'A' && *v <= 'Z')
		*v = (char)(*v - 'A' + 'a');
	if (tag(n, "upperfirst") != NULL && *v >= 'a' && *v <= 'z')
		*v = (char)(*v - 'a' + 'A');
	for (char *p = v; *p != '\0'; p++) {
		if (q && (*p == '*' || *p == '?' || *p == '\\'))
			str_append_c(&out, '\\');
		str_append_c(&out, *p);
	}
	if (tag(n, "length") != NULL) {
		size_t chars = 0;

		for (size_t i = 0; i < out.len; i++)
			if (((unsigned char)out.data[i] & 0xc0) != 0x80)
				chars++;
		str_truncate(&out, 0);
		str_printf(&out, "%zu", chars);
	}
	var_set(r, n->line, n->pos[0]->strs[0], str_c(&out));
	str_free(&out);
	free(v);
}

/* editheader (RFC 5293). The header is copied on the first change;
 * the tests that follow read the copy (r->hdr), the body stays where it
 * was. */

static void
edit_begin(struct run *r)
{
	const char *h = r->hdr;
	size_t len = r->hdrlen;

	if (r->edited)
		return;
	/* without the empty line that ends the section */
	if (len >= 2 && h[len - 2] == '\r' && h[len - 1] == '\n' &&
	    (len == 2 || h[len - 3] == '\n'))
		len -= 2;
	else if (len >= 1 && h[len - 1] == '\n' && (len == 1 ||
	    h[len - 2] == '\n'))
		len -= 1;
	str_append_n(&r->ehdr, h, len);
	if (r->ehdr.data == NULL)
		str_append(&r->ehdr, "");
	r->edited = true;
	r->hdr = r->ehdr.data;
	r->hdrlen = r->ehdr.len;
}

static void
cmd_addheader(struct run *r, const struct sieve_node *n)
{
	char *name = expand(r, n->pos[0]->strs[0]);
	char *value = expand(r, n->pos[1]->strs[0]);
	str_t f = STR_INIT;

	if (!sieve_field_name_ok(name)) {
		run_error(r, n->line, "addheader: bad field name '%.64s'",
		    name);
	} else if (sieve_header_protected(name)) {
		;	/* refused, as RFC 5293 6 asks; the script goes on */
	} else if (r->nadded >= SIEVE_ADDHEADER_MAX) {
		run_error(r, n->line, "addheader: more than %d fields added",
		    SIEVE_ADDHEADER_MAX);
	} else {
		mime_field_make(name, value, &f);
		if (f.len > SIEVE_FIELD_MAX) {
			run_error(r, n->line, "addheader: field longer than "
			    "%d bytes", SIEVE_FIELD_MAX);
		} else {
			edit_begin(r);
			r->nadded++;
			if (tag(n, "last") != NULL) {
				str_append_n(&r->ehdr, f.data, f.len);
			} else {
				str_t all = STR_INIT;

				str_append_n(&all, f.data, f.len);
				str_append_n(&all, r->ehdr.data, r->ehdr.len);
				str_free(&r->ehdr);
				r->ehdr = all;
			}
			r->hdr = r->ehdr.data;
			r->hdrlen = r->ehdr.len;
		}
	}
	str_free(&f);
	free(name);
	free(value);
}

/* The end of the field starting at p (after its continuation lines). */
static const char *
field_end(const char *p, const char *end)
{
	for (;;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));

		p = eol != NULL ? eol + 1 : end;
		if (p >= end || (*p != ' ' && *p != '\t'))
			return p;
	}
}

/* Is the field at p (up to e) called name? */
static bool
field_is(const char *p, const char *e, const char *name)
{
	size_t nl = strlen(name);
	const char *q = p + nl;

	if ((size_t)(e - p) <= nl || strncasecmp(p, name, nl) != 0)
		return false;
	while (q < e && (*q == ' ' || *q == '\t'))
		q++;
	return q < e && *q == ':';
}

static void
cmd_deleteheader(struct run *r, const struct sieve_node *n)
{
	char *name = expand(r, n->pos[0]->strs[0]);
	const struct sieve_arg *pats = n->npos > 1 ? n->pos[1] : NULL;
	struct mopts mo;
	str_t out = STR_INIT;
	size_t total = 0, seen = 0;
	const char *p, *end;

	mopts_get(n, &mo);
	if (!sieve_field_name_ok(name)) {
		run_error(r, n->line, "deleteheader: bad field name '%.64s'",
		    name);
		free(name);
		return;
	}
	if (sieve_header_protected(name)) {
		free(name);	/* refused (RFC 5293 6) */
		return;
	}
	edit_begin(r);
	end = r->ehdr.data + r->ehdr.len;
	for (p = r->ehdr.data; p < end; p = field_end(p, end))
		if (field_is(p, field_end(p, end), name))
			total++;
	for (p = r->ehdr.data; p < end;) {
		const char *e = field_end(p, end);
		bool del = false;

		r->work += (size_t)(e - p);
		if (field_is(p, e, name)) {
			seen++;
			del = mo.index == 0 || (mo.last ?
			    total - seen + 1 == mo.index : seen == mo.index);
			if (del && pats != NULL) {
				const char *c = memchr(p, ':',
				    (size_t)(e - p));
				str_t raw = STR_INIT, dec = STR_INIT;
				char *v;

				for (c++; c < e; c++)
					if (*c != '\r' && *c != '\n')
						str_append_c(&raw, *c);
				v = str_trim(raw.data != NULL ? raw.data :
				    (char *)"");
				mime_decode_header(v, strlen(v), &dec);
				if (dec.data == NULL)
					str_append(&dec, "");
				del = match_values(r, &mo, &dec.data, 1, pats);
				str_free(&raw);
				str_free(&dec);
			}
		}
		if (!del)
			str_append_n(&out, p, (size_t)(e - p));
		p = e;
	}
	if (out.data == NULL)
		str_append(&out, "");
	str_free(&r->ehdr);
	r->ehdr = out;
	r->hdr = r->ehdr.data;
	r->hdrlen = r->ehdr.len;
	free(name);
}

static void run_block(struct run *r, const struct sieve_node *cmds, size_t n);

/* include (RFC 6609): the script runs with its own variables (but the
 * global ones) and match variables, on the same message, actions and
 * implicit keep; return ends it, stop ends everything. Bounded: depth,
 * count, and a script never includes itself. */
static void
cmd_include(struct run *r, const struct sieve_node *n)
{
	bool global = tag(n, "global") != NULL;
	const char *name = n->pos[0]->strs[0];
	char *key = xasprintf("%c:%s", global ? 'g' : 'p', name);
	const struct sieve_script *sc;
	struct vartab *saved_vars;
	const char *saved_decl[SIEVE_VARS_MAX];
	size_t saved_ndecl = r->ndecl, saved_ncaps = r->ncaps;
	char *saved_caps[SIEVE_MATCH_CAPS];
	bool saved_variables = r->variables, missing = false, once;
	char *err = NULL;

	once = tag(n, "once") != NULL;
	for (size_t i = 0; once && i < r->nincluded; i++)
		if (strcmp(r->included[i], key) == 0) {
			free(key);
			return;
		}
	for (int i = 0; i < r->inc_depth; i++)
		if (strcmp(r->inc_stack[i], key) == 0) {
			run_error(r, n->line, "include: '%.64s' includes "
			    "itself", name);
			free(key);
			return;
		}
	if (r->inc_depth >= SIEVE_INCLUDE_DEPTH ||
	    r->nincluded >= SIEVE_INCLUDES_MAX) {
		run_error(r, n->line, "include: more than %d includes "
		    "(or %d deep)", SIEVE_INCLUDES_MAX, SIEVE_INCLUDE_DEPTH);
		free(key);
		return;
	}
	sc = r->msg->include_load != NULL ? r->msg->include_load(
	    r->msg->include_ctx, global, name, &missing, &err) : NULL;
	if (r->msg->include_load == NULL)
		missing = true;
	if (sc == NULL) {
		if (err != NULL)	/* its first error */
			run_error(r, n->line, "include '%.64s': %.*s", name,
			    (int)strcspn(err, "\n"), err);
		else if (!tag(n, "optional"))
			run_error(r, n->line, "include: no %s script "
			    "'%.64s'", global ? "global" : "personal", name);
		free(err);
		free(key);
		return;
	}
	r->included[r->nincluded++] = xstrdup(key);
	r->inc_stack[r->inc_depth++] = key;
	saved_vars = r->vars;
	memcpy(saved_decl, r->decl, sizeof(saved_decl));
	memcpy(saved_caps, r->caps, sizeof(saved_caps));
	r->vars = xcalloc(1, sizeof(*r->vars));
	r->ndecl = 0;
	r->ncaps = 0;
	r->variables = (sc->exts & SIEVE_EXT_VARIABLES) != 0;
	run_block(r, sc->cmds, sc->ncmds);
	caps_clear(r);
	vartab_clear(r->vars);
	free(r->vars);
	r->vars = saved_vars;
	memcpy(r->decl, saved_decl, sizeof(saved_decl));
	r->ndecl = saved_ndecl;
	memcpy(r->caps, saved_caps, sizeof(saved_caps));
	r->ncaps = saved_ncaps;
	r->variables = saved_variables;
	r->returned = false;
	r->inc_depth--;
	free(key);
}

static void
cmd_global(struct run *r, const struct sieve_node *n)
{
	for (size_t i = 0; i < n->pos[0]->nstrs; i++) {
		const char *v = n->pos[0]->strs[i];
		size_t k;

		for (k = 0; k < r->ndecl; k++)
			if (strcasecmp(r->decl[k], v) == 0)
				break;
		if (k < r->ndecl)
			continue;
		if (r->ndecl >= SIEVE_VARS_MAX) {
			run_error(r, n->line, "more than %d global variables",
			    SIEVE_VARS_MAX);
			return;
		}
		r->decl[r->ndecl++] = v;
	}
}

static void
run_command(struct run *r, const struct sieve_node *n)
{
	const char *c = n->name;
	char *arg = n->npos > 0 && n->pos[0]->type == SIEVE_ARG_STRING ?
	    expand(r, n->pos[0]->strs[0]) : NULL;

	r->work++;
	if (strcmp(c, "stop") == 0) {
		r->stopped = true;
	} else if (strcmp(c, "keep") == 0) {
		do_store(r, n, "INBOX");
		r->cancel_keep = true;
	} else if (strcmp(c, "discard") == 0) {
		if (action_find(r, SIEVE_ACT_DISCARD, NULL) == NULL)
			action_add(r, n->line, SIEVE_ACT_DISCARD, NULL);
		r->cancel_keep = true;
	} else if (strcmp(c, "fileinto") == 0) {
		if (*arg == '\0')
			run_error(r, n->line, "fileinto: empty folder name");
		else
			do_store(r, n, arg);
		if (tag(n, "copy") == NULL)
			r->cancel_keep = true;
	} else if (strcmp(c, "redirect") == 0) {
		const char *at = strrchr(arg, '@');

		if (at == NULL || at == arg || at[1] == '\0' ||
		    strpbrk(arg, " <>\r\n\t,") != NULL) {
			run_error(r, n->line, "redirect: bad address '%.100s'",
			    arg);
		} else if (action_find(r, SIEVE_ACT_REDIRECT, arg) == NULL) {
			struct sieve_action *a;

			if (++r->nredirects > r->redirects_max)
				run_error(r, n->line, "more than %u "
				    "redirects", r->redirects_max);
			else if ((a = action_add(r, n->line,
			    SIEVE_ACT_REDIRECT, arg)) != NULL) {
				a->copy = tag(n, "copy") != NULL;
				action_header(r, a);
			}
		}
		if (tag(n, "copy") == NULL)
			r->cancel_keep = true;
	} else if (strcmp(c, "reject") == 0 || strcmp(c, "ereject") == 0) {
		if (has_reject(r) || action_find(r, SIEVE_ACT_STORE, NULL))
			run_error(r, n->line, "%s conflicts with another "
			    "action", c);
		else
			action_add(r, n->line, c[0] == 'e' ?
			    SIEVE_ACT_EREJECT : SIEVE_ACT_REJECT, arg);
		r->cancel_keep = true;
	} else if (strcmp(c, "vacation") == 0) {
		cmd_vacation(r, n, arg);
	} else if (strcmp(c, "setflag") == 0 || strcmp(c, "addflag") == 0 ||
	    strcmp(c, "removeflag") == 0) {
		cmd_setflag(r, n);
	} else if (strcmp(c, "set") == 0) {
		cmd_set(r, n);
	} else if (strcmp(c, "include") == 0) {
		cmd_include(r, n);
	} else if (strcmp(c, "return") == 0) {
		r->returned = true;
	} else if (strcmp(c, "global") == 0) {
		cmd_global(r, n);
	} else if (strcmp(c, "addheader") == 0) {
		cmd_addheader(r, n);
	} else if (strcmp(c, "deleteheader") == 0) {
		cmd_deleteheader(r, n);
	}
	free(arg);
}

static void
run_block(struct run *r, const struct sieve_node *cmds, size_t n)
{
	bool skip_else = false;

	for (size_t i = 0; i < n && !r->stopped && !r->failed && !r->returned;
	    i++) {
		const struct sieve_node *c = &cmds[i];

		if (over_budget(r, c->line))
			return;
		if (strcmp(c->name, "if") == 0 || strcmp(c->name, "elsif") == 0 ||
		    strcmp(c->name, "else") == 0) {
			bool cond;

			if (c->name[0] == 'i')
				skip_else = false;
			if (skip_else)
				continue;
			cond = c->name[0] == 'e' && c->name[1] == 'l' &&
			    c->name[2] == 's' && c->name[3] == 'e' ?
			    true : test_eval(r, &c->tests[0]);
			if (r->failed)
				return;
			if (cond) {
				skip_else = true;
				run_block(r, c->block, c->nblock);
			}
			continue;
		}
		skip_else = false;
		if (strcmp(c->name, "require") == 0)
			continue;
		run_command(r, c);
	}
}

void
sieve_run(const struct sieve_script *script, const struct sieve_msg *msg,
    const struct sieve_limits *limits, struct sieve_result *res)
{
	struct run r;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	r.script = script;
	r.msg = msg;
	r.res = res;
	r.variables = (script->exts & SIEVE_EXT_VARIABLES) != 0;
	r.vars = xcalloc(1, sizeof(*r.vars));
	r.redirects_max = limits != NULL && limits->redirects > 0 ?
	    limits->redirects : SIEVE_REDIRECTS_DEFAULT;
	r.root = mime_parse(msg->data, msg->len);
	r.hdr = msg->data + r.root->hdr_off;
	r.hdrlen = r.root->hdr_len;
	run_block(&r, script->cmds, script->ncmds);
	if (r.failed) {
		sieve_result_clear(res);
		res->error = r.error;
		r.error = NULL;
		r.cancel_keep = false;
		str_truncate(&r.flags, 0);
		r.edited = false;	/* the message as it came */
	}
	if (!r.cancel_keep) {
		struct sieve_action *a = action_find(&r, SIEVE_ACT_STORE,
		    "INBOX");

		if (a == NULL) {
			res->actions = xrealloc(res->actions,
			    (res->nactions + 1) * sizeof(*res->actions));
			a = &res->actions[res->nactions++];
			memset(a, 0, sizeof(*a));
			a->type = SIEVE_ACT_STORE;
			a->arg = xstrdup("INBOX");
			set_flags(a, &r.flags);
		}
		a->implicit = true;
		action_header(&r, a);
	}
	if (r.edited)
		res->header = str_steal(&r.ehdr);
	mime_free(r.root);
	caps_clear(&r);
	vartab_clear(r.vars);
	free(r.vars);
	vartab_clear(&r.glob);
	for (size_t i = 0; i < r.nincluded; i++)
		free(r.included[i]);
	str_free(&r.flags);
	str_free(&r.ehdr);
	free(r.error);
}

void
sieve_result_clear(struct sieve_result *res)
{
	for (size_t i = 0; i < res->nactions; i++) {
		struct sieve_action *a = &res->actions[i];

		free(a->arg);
		for (size_t k = 0; k < a->nflags; k++)
			free(a->flags[k]);
		free(a->flags);
		sieve_vacation_free(a->vacation);
		free(a->header);
	}
	free(res->actions);
	free(res->error);
	free(res->header);
	for (size_t i = 0; i < res->ndups; i++) {
		free(res->dups[i].handle);
		free(res->dups[i].id);
	}
	free(res->dups);
	memset(res, 0, sizeof(*res));
}

static void
put_text(str_t *out, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n')
			str_append(out, "\\n");
		else if (c < 0x20 || c == 0x7f)
			str_printf(out, "\\x%02x", c);
		else
			str_append_c(out, (char)c);
	}
}

void
sieve_result_text(const struct sieve_result *res, str_t *out)
{
	if (res->error != NULL) {
		str_append(out, "error ");
		put_text(out, res->error);
		str_append_c(out, '\n');
	}
	for (size_t i = 0; i < res->nactions; i++) {
		const struct sieve_action *a = &res->actions[i];

		switch (a->type) {
		case SIEVE_ACT_STORE:
			str_append(out, "store ");
			put_text(out, a->arg);
			if (a->create)
				str_append(out, " :create");
			if (a->implicit)
				str_append(out, " (implicit keep)");
			for (size_t k = 0; k < a->nflags; k++) {
				str_append(out, k == 0 ? " flags " : " ");
				put_text(out, a->flags[k]);
			}
			break;
		case SIEVE_ACT_REDIRECT:
			str_append(out, "redirect ");
			put_text(out, a->arg);
			if (a->copy)
				str_append(out, " :copy");
			break;
		case SIEVE_ACT_REJECT:
		case SIEVE_ACT_EREJECT:
			str_append(out, a->type == SIEVE_ACT_REJECT ?
			    "reject " : "ereject ");
			put_text(out, a->arg);
			break;
		case SIEVE_ACT_DISCARD:
			str_append(out, "discard");
			break;
		case SIEVE_ACT_VACATION:
			str_printf(out, "vacation %llu",
			    (unsigned long long)a->vacation->seconds);
			if (a->vacation->subject != NULL) {
				str_append(out, " subject ");
				put_text(out, a->vacation->subject);
			}
			str_append(out, " reason ");
			put_text(out, a->arg);
			break;
		}
		str_append_c(out, '\n');
		for (const char *h = a->header; h != NULL && *h != '\0';) {
			const char *eol = strchr(h, '\n');
			size_t k = eol != NULL ? (size_t)(eol - h) : strlen(h);
			char *line = xstrndup(h, k > 0 && h[k - 1] == '\r' ?
			    k - 1 : k);

			str_append(out, "  | ");
			put_text(out, line);
			str_append_c(out, '\n');
			free(line);
			h += eol != NULL ? k + 1 : k;
		}
	}
}
