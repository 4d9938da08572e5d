#ifndef PETREL_ERR_H
#define PETREL_ERR_H
/*
 * Error text and a typed code for functions that report failure through
 * `const char **error_r`. err_fail() formats a one-line message into a
 * per-thread buffer, records a code beside it, sets *error_r (when not
 * NULL) to the message and returns -1, so a failing function ends with
 *
 *	return err_fail(error_r, errno, "open(%s) failed: %s", path,
 *	    strerror(errno));
 *
 * The message stays valid until the next err_fail() on the same thread;
 * a caller that keeps it longer (or hands it to another thread) copies
 * it. An earlier message may be an argument of the next one.
 *
 * Codes: an errno value (ENOSPC, EDQUOT, EIO, ...) when a system call
 * failed, else one of the ERR_* values below, which lie above every
 * errno value. Callers decide on the code (err_last_code()), never on
 * the text.
 */

#include <stdbool.h>

enum err_code {
	ERR_NONE = 0,		/* no error recorded on this thread */
	ERR_OTHER = 0x10000,	/* a failure with no finer code */
	ERR_UTF8,		/* invalid UTF-8 */
	ERR_8BIT,		/* 8-bit data that was not declared as such */
	ERR_SYNTAX,		/* malformed input (a file, a name, a value) */
	ERR_TOO_MANY,		/* a configured count limit reached */
	ERR_TOO_BIG,		/* a configured size limit reached */
};

int err_fail(const char **error_r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The code and the message of the last err_fail() on this thread
 * (ERR_NONE and "" if there was none since the last err_clear()). */
int err_last_code(void);
const char *err_last(void);
void err_clear(void);
/* Is this code "no room to write" (RFC 3463 X.3.1 / X.2.2)? */
bool err_code_is_full(int code);

#endif
