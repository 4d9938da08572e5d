/*
 * log.c: line-oriented logging to stderr.
 *
 * Each record is formatted into one buffer and written with a single
 * write(2) so lines from several processes sharing stderr never interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/log.h"

static const char *log_ident = "petrel";
static bool log_timestamps;
static enum log_level log_level = LOG_LVL_INFO;

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error", [LOG_LVL_WARN] = "warning",
	[LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug",
};

void
log_init(const char *ident, bool timestamps)
{
	log_ident = ident;
	log_timestamps = timestamps;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

int
log_parse_level(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(name, "warn") == 0) {
		*level_r = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

__attribute__((format(printf, 3, 0)))
static void
log_emit(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char buf[4096];
	size_t n = 0;
	int r;

	if (level > log_level)
		return;
	if (log_timestamps) {
		struct timeval tv;
		struct tm tm;

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		n += strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(buf + n, sizeof(buf) - n, ".%03ld ",
		    (long)(tv.tv_usec / 1000));
		if (r > 0)
			n += (size_t)r;
	}
	r = snprintf(buf + n, sizeof(buf) - n, "%s[%ld]: %s: ", log_ident,
	    (long)getpid(), level_names[level]);
	if (r > 0 && (size_t)r < sizeof(buf) - n)
		n += (size_t)r;
	r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	if (r > 0)
		n = n + (size_t)r < sizeof(buf) ? n + (size_t)r : sizeof(buf) - 1;
	if (errnum != 0 && n < sizeof(buf) - 1) {
		r = snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(errnum));
		if (r > 0)
			n = n + (size_t)r < sizeof(buf) ? n + (size_t)r : sizeof(buf) - 1;
	}
	if (n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, n);
}

#define LOG_FN(name, level, use_errno)				\
	void name(const char *fmt, ...)				\
	{							\
		int saved = errno;				\
		va_list ap;					\
		va_start(ap, fmt);				\
		log_emit(level, use_errno ? saved : 0, fmt, ap);\
		va_end(ap);					\
		errno = saved;					\
	}

LOG_FN(log_error, LOG_LVL_ERROR, 0)
LOG_FN(log_error_errno, LOG_LVL_ERROR, 1)
LOG_FN(log_warn, LOG_LVL_WARN, 0)
LOG_FN(log_warn_errno, LOG_LVL_WARN, 1)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatal_errno(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	abort();
}
