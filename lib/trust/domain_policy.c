/*
 * domain_policy.c: `domain_policy_file`, the recipient domains' own SPF
 * and DMARC policies (domain_policy.h). A sorted array looked up with
 * bsearch: one lookup per RCPT, a few per domain name (its parents).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/trust/domain_policy.h"

#define DP_DOMAIN_MAX 253
#define DP_FILE_MAX (16 * 1024 * 1024)

struct dp_entry {
	char *name;		/* lower case; ".example.org" for subdomains */
	struct domain_policy pol;
};

struct domain_policies {
	struct dp_entry *e;
	size_t n;
};

static const char *const spf_words[] = { "mark", "reject", "ignore", NULL };
static const char *const dmarc_words[] = { "mark", "enforce", "ignore",
    NULL };

static int
word_index(const char *const *words, const char *w, size_t len)
{
	for (int i = 0; words[i] != NULL; i++)
		if (strlen(words[i]) == len && strncmp(words[i], w, len) == 0)
			return i;
	return DP_UNSET;
}

/* A domain name as the file may give it: labels of letters, digits,
 * '-' (not first or last) and '_', no empty label; lower-cased into
 * out. */
static bool
domain_ok(const char *s, size_t len, char *out)
{
	size_t label = 0;

	if (len == 0 || len > DP_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (c == '-' && label == 0) {
			return false;	/* no label starts with '-' */
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
		out[i] = (char)tolower(c);
	}
	out[len] = '\0';
	return label > 0 && s[len - 1] != '-';
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dp_entry *)a)->name,
	    ((const struct dp_entry *)b)->name);
}

void
domain_policies_free(struct domain_policies *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->e[i].name);
	free(p->e);
	free(p);
}

static int
parse_fail(struct domain_policies *p, char **error_r, const char *name,
    size_t line, const char *what)
{
	*error_r = xasprintf("%s:%zu: %s", name, line, what);
	domain_policies_free(p);
	return -1;
}

/* One line's settings (after its domain): into pol. NULL, or what is
 * wrong. */
static const char *
parse_settings(const char *s, const char *end, struct domain_policy *pol)
{
	bool any = false;

	for (;;) {
		const char *w, *eq, *v;
		int *slot, idx;
		const char *const *words;

		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		if (s == end)
			break;
		w = s;
		while (s < end && *s != ' ' && *s != '\t')
			s++;
		eq = memchr(w, '=', (size_t)(s - w));
		if (eq == NULL)
			return "expected KEY=VALUE after the domain";
		v = eq + 1;
		if ((size_t)(eq - w) == 10 && strncmp(w, "spf_policy", 10) == 0) {
			slot = &pol->spf;
			words = spf_words;
		} else if ((size_t)(eq - w) == 12 &&
		    strncmp(w, "dmarc_policy", 12) == 0) {
			slot = &pol->dmarc;
			words = dmarc_words;
		} else {
			return "unknown key (spf_policy or dmarc_policy)";
		}
		if (*slot != DP_UNSET)
			return "a key given twice";
		idx = word_index(words, v, (size_t)(s - v));
		if (idx == DP_UNSET)
			return words == spf_words ?
			    "spf_policy must be mark, reject or ignore" :
			    "dmarc_policy must be enforce, mark or ignore";
		*slot = idx;
		any = true;
	}
	return any ? NULL : "a domain without settings";
}

int
domain_policies_parse(const char *text, size_t len, const char *name,
    struct domain_policies **r, char **error_r)
{
	struct domain_policies *p = xcalloc(1, sizeof(*p));
	const char *s = text, *end = text + len;
	size_t line = 0, cap = 0;

	*r = NULL;
	*error_r = NULL;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *le = nl != NULL ? nl : end, *hash, *d, *de;
		struct dp_entry e;
		char dom[DP_DOMAIN_MAX + 2];
		bool sub = false;
		const char *err;

		line++;
		if (memchr(s, '\0', (size_t)(le - s)) != NULL)
			return parse_fail(p, error_r, name, line,
			    "a NUL byte");
		hash = memchr(s, '#', (size_t)(le - s));
		if (hash != NULL)
			le = hash;
		while (le > s && (le[-1] == ' ' || le[-1] == '\t' ||
		    le[-1] == '\r'))
			le--;
		d = s;
		while (d < le && (*d == ' ' || *d == '\t'))
			d++;
		s = nl != NULL ? nl + 1 : end;
		if (d == le)
			continue;
		de = d;
		while (de < le && *de != ' ' && *de != '\t')
			de++;
		if (*d == '.') {
			sub = true;
			d++;
		}
		if (de > d && de[-1] == '.')
			de--;	/* a final dot: the same name */
		if (!domain_ok(d, (size_t)(de - d), dom + 1))
			return parse_fail(p, error_r, name, line,
			    "not a domain name (DOMAIN or .DOMAIN)");
		while (de < le && *de != ' ' && *de != '\t')
			de++;	/* the final dot skipped above */
		e.pol.spf = DP_UNSET;
		e.pol.dmarc = DP_UNSET;
		if ((err = parse_settings(de, le, &e.pol)) != NULL)
			return parse_fail(p, error_r, name, line, err);
		dom[0] = '.';
		e.name = xstrdup(sub ? dom : dom + 1);
		for (size_t i = 0; i < p->n; i++) {
			if (strcmp(p->e[i].name, e.name) == 0) {
				free(e.name);
				return parse_fail(p, error_r, name, line,
				    "the domain has a line already");
			}
		}
		if (p->n == cap) {
			cap = cap ? cap * 2 : 16;
			p->e = xrealloc(p->e, cap * sizeof(*p->e));
		}
		p->e[p->n++] = e;
	}
	if (p->n == 0) {
		domain_policies_free(p);
		return 0;
	}
	qsort(p->e, p->n, sizeof(*p->e), entry_cmp);
	*r = p;
	return 0;
}

int
domain_policies_load(const char *path, struct domain_policies **r,
    char **error_r)
{
	char *data;
	size_t len;
	struct stat st;
	int fd, ret;

	*r = NULL;
	*error_r = NULL;
	if (path == NULL || path[0] == '\0')
		return 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		*error_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	if (read_fd_all(fd, &data, &len, &st) < 0) {
		*error_r = xasprintf("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (!S_ISREG(st.st_mode) || len > DP_FILE_MAX) {
		*error_r = xasprintf("%s: %s", path, !S_ISREG(st.st_mode) ?
		    "not a regular file" : "larger than 16 MiB");
		free(data);
		return -1;
	}
	ret = domain_policies_parse(data, len, path, r, error_r);
	free(data);
	return ret;
}

static const struct dp_entry *
find(const struct domain_policies *p, const char *name)
{
	struct dp_entry key = { (char *)name, { 0, 0 } };

	return bsearch(&key, p->e, p->n, sizeof(*p->e), entry_cmp);
}

struct domain_policy
domain_policy_of(const struct domain_policies *p, const char *domain)
{
	struct domain_policy pol = { DP_UNSET, DP_UNSET };
	char name[DP_DOMAIN_MAX + 2];
	size_t len;
	const struct dp_entry *e;
	const char *dot;

	if (p == NULL || domain == NULL)
		return pol;
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > DP_DOMAIN_MAX)
		return pol;
	name[0] = '.';
	for (size_t i = 0; i < len; i++)
		name[i + 1] = (char)tolower((unsigned char)domain[i]);
	name[len + 1] = '\0';
	/* the domain's own line, then .PARENT lines, nearest first; each
	 * key from the most specific line that sets it */
	if ((e = find(p, name + 1)) != NULL)
		pol = e->pol;
	for (dot = name + 1; (dot = strchr(dot, '.')) != NULL; dot++) {
		if ((e = find(p, dot)) == NULL)
			continue;
		if (pol.spf == DP_UNSET)
			pol.spf = e->pol.spf;
		if (pol.dmarc == DP_UNSET)
			pol.dmarc = e->pol.dmarc;
	}
	return pol;
}

int
domain_policies_sets_spf(const struct domain_policies *p, int except)
{
	for (size_t i = 0; p != NULL && i < p->n; i++)
		if (p->e[i].pol.spf != DP_UNSET && p->e[i].pol.spf != except)
			return 1;
	return 0;
}

int
domain_policies_sets_dmarc(const struct domain_policies *p, int except)
{
	for (size_t i = 0; p != NULL && i < p->n; i++)
		if (p->e[i].pol.dmarc != DP_UNSET &&
		    p->e[i].pol.dmarc != except)
			return 1;
	return 0;
}
