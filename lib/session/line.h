/*
 * line.h: taking command lines out of a connection's input buffer (SMTP
 * and POP3, before and after login), apart from the session so that it
 * can be tested and fuzzed alone.
 */
#ifndef PETREL_SESSION_LINE_H
#define PETREL_SESSION_LINE_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

/* The next line of at most max bytes counting its LF, out of in: the LF
 * and one CR before it removed, NUL-terminated, malloc'd (*len_r bytes,
 * which may hold NULs). Returns 1 a line, 0 none complete yet, -1 an
 * overlong line, answered once: *skip (false at the start of a
 * connection) then drops the rest of it as it arrives. */
int line_take(struct evbuffer *in, size_t max, bool *skip, char **line_r,
    size_t *len_r);

#endif
