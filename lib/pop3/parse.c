/*
 * parse.c: the POP3 command parser (see parse.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/pop3/parse.h"

static const char *const verb_names[] = {
	[POP3_CAPA] = "CAPA", [POP3_QUIT] = "QUIT", [POP3_USER] = "USER",
	[POP3_PASS] = "PASS", [POP3_AUTH] = "AUTH", [POP3_STLS] = "STLS",
	[POP3_NOOP] = "NOOP", [POP3_STAT] = "STAT", [POP3_LIST] = "LIST",
	[POP3_UIDL] = "UIDL", [POP3_RETR] = "RETR", [POP3_TOP] = "TOP",
	[POP3_DELE] = "DELE", [POP3_RSET] = "RSET",
	[POP3_XCLIENT] = "XCLIENT",
};

#define NVERBS (sizeof(verb_names) / sizeof(verb_names[0]))
_Static_assert(NVERBS == POP3_VERB_COUNT, "a name for every verb");

const char *
pop3_verb_name(enum pop3_verb verb)
{
	return (size_t)verb < NVERBS ? verb_names[verb] : NULL;
}

enum pop3_verb
pop3_verb(char *line, size_t len, char **arg_r)
{
	char *arg;

	if (memchr(line, '\0', len) != NULL) {
		*arg_r = line + len;
		return POP3_NUL;
	}
	arg = line + strcspn(line, " ");
	if (*arg == ' ')
		*arg++ = '\0';
	*arg_r = arg;
	for (size_t i = 0; i < NVERBS; i++)
		if (verb_names[i] != NULL && strcasecmp(line, verb_names[i]) == 0)
			return (enum pop3_verb)i;
	return POP3_UNKNOWN;
}

enum pop3_msgno
pop3_msgno(const char *arg, size_t nmsgs, size_t *n_r)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*arg))
		return POP3_MSGNO_SYNTAX;
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ' ') || v == 0 ||
	    v > nmsgs)
		return POP3_MSGNO_RANGE;
	*n_r = (size_t)v;
	return POP3_MSGNO_OK;
}

int
pop3_top_lines(const char *arg, long *lines_r)
{
	const char *sp = strchr(arg, ' ');
	char *end;
	long n;

	if (sp == NULL || !isdigit((unsigned char)sp[1]))
		return -1;
	errno = 0;
	n = strtol(sp + 1, &end, 10);
	if (*end != '\0' || errno != 0 || n < 0)
		return -1;
	*lines_r = n;
	return 0;
}

void
pop3_auth_split(char *arg, char **mech_r, char **resp_r)
{
	char *resp = strchr(arg, ' ');

	if (resp != NULL)
		*resp++ = '\0';
	*mech_r = arg;
	*resp_r = resp != NULL && *resp != '\0' ? resp : NULL;
}
