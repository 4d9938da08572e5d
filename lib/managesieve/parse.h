#ifndef PETREL_MANAGESIEVE_PARSE_H
#define PETREL_MANAGESIEVE_PARSE_H
/*
 * ManageSieve (RFC 5804 4) command syntax: a command name (an atom) and
 * its arguments, atoms, quoted strings and literals ("{n+}" or "{n}",
 * CRLF, n octets). The session gathers one whole command (its lines, and
 * after a line that ends in a literal announcement the CRLF and the
 * literal's octets) and hands it here; its literals' sizes were checked
 * on the way in. Pure computation on bounded input, safe on any bytes.
 */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

#define MSIEVE_ARGS_MAX 4	/* no command takes more */
#define MSIEVE_QUOTED_MAX 1024	/* RFC 5804 4: a quoted string's octets */

enum msieve_arg_type { MSIEVE_ATOM, MSIEVE_STRING };

struct msieve_arg {
	enum msieve_arg_type type;
	const char *s;		/* NUL-terminated copy (may hold NUL: len) */
	size_t len;
};

struct msieve_cmd {
	char name[32];		/* upper-cased */
	struct msieve_arg args[MSIEVE_ARGS_MAX];
	size_t nargs;
	str_t buf;		/* the arguments' text */
};

/* Parse buf[0..len). 0, or -1 with *error_r (a static text for a BAD
 * reply). msieve_cmd_clear() frees (and wipes: a SASL response) what a
 * parse kept, either way. */
int msieve_parse(const char *buf, size_t len, struct msieve_cmd *c,
    const char **error_r);
void msieve_cmd_clear(struct msieve_cmd *c);

/* A string for a response (RFC 5804 4): quoted when it can be, else a
 * literal "{n}" CRLF octets. */
void msieve_put_string(str_t *out, const char *s, size_t len);

#endif
