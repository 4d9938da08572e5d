/*
 * err.c: the per-thread error message and code behind every
 * `const char **error_r` (see err.h).
 *
 * Trust: the messages quote paths and names that may come from the
 * network; they are bounded (ERR_MSG_MAX) and only ever logged or put
 * in a reply by callers that already sanitise what they send.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/base/err.h"
#include "lib/base/limits.h"

static _Thread_local char err_msg[ERR_MSG_MAX];
static _Thread_local int err_code;

int
err_fail(const char **error_r, int code, const char *fmt, ...)
{
	char tmp[ERR_MSG_MAX];
	va_list ap;

	/* Through a local copy: err_last() may be one of the arguments. */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(err_msg, tmp, sizeof(err_msg));
	err_code = code != ERR_NONE ? code : ERR_OTHER;
	if (error_r != NULL)
		*error_r = err_msg;
	return -1;
}

int
err_last_code(void)
{
	return err_code;
}

const char *
err_last(void)
{
	return err_msg;
}

void
err_clear(void)
{
	err_msg[0] = '\0';
	err_code = ERR_NONE;
}

bool
err_code_is_full(int code)
{
	return code == ENOSPC || code == EDQUOT;
}
