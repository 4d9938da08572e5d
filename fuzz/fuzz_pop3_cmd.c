/*
 * fuzz_pop3_cmd.c: the POP3 command parser (lib/pop3/parse.c) over every
 * line of the input, as the session gets them (the line end and a CR
 * before it dropped). The first byte picks the number of messages in the
 * maildrop. Checks, against a plain reimplementation here:
 *  - a line with a NUL is POP3_NUL; otherwise the verb is the text up to
 *    the first space matched case-insensitively, and the argument what
 *    follows that space;
 *  - a message number is accepted exactly when it is all digits up to
 *    the end or a space and 1..nmsgs (no overflow wraps into range);
 *  - TOP's line count is all digits after the first space and fits;
 *  - AUTH's split gives back the mechanism and initial response.
 */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/pop3/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t nmsgs_of[8] = {
	0, 1, 2, 9, 10, 4294967295u, 4294967296u, SIZE_MAX
};

/* Digits from p into *v; false on overflow of max. */
static bool
digits(const char **pp, unsigned long max, unsigned long *v)
{
	const char *p = *pp;
	bool ok = true;

	*v = 0;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (*v > (max - d) / 10)
			ok = false;
		else
			*v = *v * 10 + d;
	}
	*pp = p;
	return ok;
}

static void
check_msgno(const char *arg, size_t nmsgs)
{
	size_t n = 0;
	enum pop3_msgno r = pop3_msgno(arg, nmsgs, &n);
	const char *p = arg;
	unsigned long v;
	bool fits;

	if (!isdigit((unsigned char)*arg)) {
		if (r != POP3_MSGNO_SYNTAX)
			abort();
		return;
	}
	fits = digits(&p, ULONG_MAX, &v);
	if (fits && (*p == '\0' || *p == ' ') && v >= 1 && v <= nmsgs) {
		if (r != POP3_MSGNO_OK || n != v)
			abort();
	} else if (r != POP3_MSGNO_RANGE) {
		abort();
	}
}

static void
check_top(const char *arg)
{
	const char *sp = strchr(arg, ' '), *p;
	long n = -2;
	int r = pop3_top_lines(arg, &n);
	unsigned long v;

	if (sp == NULL || !isdigit((unsigned char)sp[1])) {
		if (r != -1)
			abort();
		return;
	}
	p = sp + 1;
	if (digits(&p, LONG_MAX, &v) && *p == '\0') {
		if (r != 0 || n != (long)v)
			abort();
	} else if (r != -1) {
		abort();
	}
}

static void
check_auth(const char *arg)
{
	char *copy = xstrdup(arg), *mech, *resp;
	const char *sp = strchr(arg, ' ');

	pop3_auth_split(copy, &mech, &resp);
	if (sp == NULL) {
		if (strcmp(mech, arg) != 0 || resp != NULL)
			abort();
	} else if (strlen(mech) != (size_t)(sp - arg) ||
	    memcmp(mech, arg, strlen(mech)) != 0 ||
	    (sp[1] == '\0' ? resp != NULL : resp == NULL ||
	    strcmp(resp, sp + 1) != 0)) {
		abort();
	}
	free(copy);
}

static void
one_line(const char *line, size_t len, size_t nmsgs)
{
	char *copy = xmalloc(len + 1), *arg;
	enum pop3_verb verb, want = POP3_UNKNOWN;
	size_t vlen = strcspn(line, " ");

	memcpy(copy, line, len);
	copy[len] = '\0';
	verb = pop3_verb(copy, len, &arg);
	if (memchr(line, '\0', len) != NULL) {
		if (verb != POP3_NUL || *arg != '\0')
			abort();
		free(copy);
		return;
	}
	for (int v = POP3_CAPA; v < POP3_VERB_COUNT; v++) {
		const char *name = pop3_verb_name((enum pop3_verb)v);

		if (strlen(name) == vlen && strncasecmp(line, name, vlen) == 0)
			want = (enum pop3_verb)v;
	}
	if (verb != want || strcmp(arg, line[vlen] == ' ' ? line + vlen + 1 :
	    "") != 0)
		abort();
	if (verb != POP3_UNKNOWN && strcasecmp(copy, pop3_verb_name(verb)))
		abort();
	/* every argument through every argument parser */
	check_msgno(arg, nmsgs);
	check_top(arg);
	check_auth(arg);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p, *end;
	size_t nmsgs;

	if (size == 0)
		return 0;
	nmsgs = nmsgs_of[data[0] & 7];
	p = (const char *)data + 1;
	end = (const char *)data + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl != NULL ? nl : end) - p);

		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (memchr(p, '\0', len) == NULL) {
			char *s = xmalloc(len + 1);

			memcpy(s, p, len);
			s[len] = '\0';
			one_line(s, len, nmsgs);
			free(s);
		} else {
			one_line(p, len, nmsgs);
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}
