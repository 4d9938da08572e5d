/*
 * parse.h: the POP3 command parser (RFC 1939, RFC 2449 CAPA, RFC 2595
 * STLS, RFC 5034 AUTH), apart from the session so that it can be tested
 * and fuzzed alone. Everything here reads what a client sent, before and
 * after login.
 */
#ifndef PETREL_POP3_PARSE_H
#define PETREL_POP3_PARSE_H

#include <stddef.h>

enum pop3_verb {
	POP3_UNKNOWN, POP3_NUL, POP3_CAPA, POP3_QUIT, POP3_USER, POP3_PASS,
	POP3_AUTH, POP3_STLS, POP3_NOOP, POP3_STAT, POP3_LIST, POP3_UIDL,
	POP3_RETR, POP3_TOP, POP3_DELE, POP3_RSET, POP3_XCLIENT,
	POP3_VERB_COUNT		/* not a verb: one past the last */
};

/* Split a command line of len bytes (NUL-terminated at len) in place: the
 * verb, case-insensitive, ends at the first space, which is overwritten;
 * *arg_r is what follows it ("" if nothing). POP3_NUL (and *arg_r "") if
 * the line holds a NUL byte, POP3_UNKNOWN if no verb matches. */
enum pop3_verb pop3_verb(char *line, size_t len, char **arg_r);

/* The name of a verb ("RETR"); NULL for POP3_UNKNOWN and POP3_NUL. */
const char *pop3_verb_name(enum pop3_verb verb);

enum pop3_msgno {
	POP3_MSGNO_OK,		/* *n_r is 1..nmsgs */
	POP3_MSGNO_SYNTAX,	/* does not start with a digit */
	POP3_MSGNO_RANGE,	/* 0, > nmsgs, overflow, or not followed by
				 * the end or a space */
};

/* A message-number argument, "N" or "N ...". */
enum pop3_msgno pop3_msgno(const char *arg, size_t nmsgs, size_t *n_r);

/* TOP's "msg n" (msg already checked by pop3_msgno): *lines_r = n. -1 if
 * n is missing, not all digits, or does not fit a long. */
int pop3_top_lines(const char *arg, long *lines_r);

/* AUTH's "mechanism [initial-response]", split in place: *resp_r is NULL
 * when there is no initial response (or an empty one). */
void pop3_auth_split(char *arg, char **mech_r, char **resp_r);

#endif
