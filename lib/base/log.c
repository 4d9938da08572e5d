/*
 * log.c: line-oriented logging to stderr or syslog.
 *
 * Each record is formatted into one buffer and written with a single
 * write(2) so lines from several processes sharing stderr never
 * interleave. For syslog the record is one datagram on the syslog socket
 * ("<PRI>Mmm dd hh:mm:ss ident[pid]: text", RFC 3164 as syslog(3)
 * writes it); the socket is ours rather than syslog(3)'s so that its
 * path is a setting and a full socket never blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/log.h"

static const char *log_ident = "petrel";
static bool log_timestamps;
static enum log_level log_level = LOG_LVL_INFO;
static int syslog_fd = -1;
static struct sockaddr_un syslog_addr;
static __thread const char *log_service;

/* syslog severities (RFC 5424 6.2.1) by level, facility mail (2) */
static const int severity[] = {
	[LOG_LVL_ERROR] = 3, [LOG_LVL_WARN] = 4, [LOG_LVL_INFO] = 6,
	[LOG_LVL_DEBUG] = 7,
};
#define FACILITY_MAIL (2 << 3)

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

const char *
log_service_set(const char *service)
{
	const char *prev = log_service;

	log_service = service;
	return prev;
}

static int
syslog_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&syslog_addr,
	    sizeof(syslog_addr)) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
log_open_syslog(const char *path, const char **error_r)
{
	static char msg[300];
	int fd;

	if (strlen(path) >= sizeof(syslog_addr.sun_path)) {
		snprintf(msg, sizeof(msg), "syslog_socket %.200s: path too "
		    "long", path);
		*error_r = msg;
		return -1;
	}
	memset(&syslog_addr, 0, sizeof(syslog_addr));
	syslog_addr.sun_family = AF_UNIX;
	memcpy(syslog_addr.sun_path, path, strlen(path) + 1);
	fd = syslog_connect();
	if (fd < 0) {
		snprintf(msg, sizeof(msg), "syslog_socket %.200s: %s", path,
		    strerror(errno));
		*error_r = msg;
		return -1;
	}
	if (syslog_fd >= 0)
		close(syslog_fd);
	syslog_fd = fd;
	return 0;
}

/* One datagram; 0 when the socket took it. A socket whose reader went
 * away (syslog restarted) is connected again once. */
static int
syslog_send(const char *buf, size_t n)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (send(syslog_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    (ssize_t)n)
			return 0;
		if (errno != ECONNREFUSED && errno != ENOTCONN &&
		    errno != ECONNRESET)
			return -1;
		int fd = syslog_connect();

		if (fd < 0)
			return -1;
		/* another thread may do the same: the old fd stays open
		 * (rare; a datagram socket) rather than racing a close */
		syslog_fd = fd;
	}
	return -1;
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
	if (syslog_fd >= 0) {
		time_t now = time(NULL);
		struct tm tm;
		char stamp[32];

		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		r = snprintf(buf, sizeof(buf), "<%d>%s %s%s%s[%ld]: %s%s",
		    FACILITY_MAIL | severity[level], stamp,
		    log_service != NULL ? "petrel/" : log_ident,
		    log_service != NULL ? log_service : "", "",
		    (long)getpid(), level == LOG_LVL_INFO ? "" :
		    level_names[level], level == LOG_LVL_INFO ? "" : ": ");
		if (r > 0 && (size_t)r < sizeof(buf)) {
			n = (size_t)r;
			r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
			if (r > 0)
				n = n + (size_t)r < sizeof(buf) ? n +
				    (size_t)r : sizeof(buf) - 1;
			if (errnum != 0 && n < sizeof(buf) - 1) {
				r = snprintf(buf + n, sizeof(buf) - n,
				    ": %s", strerror(errnum));
				if (r > 0)
					n = n + (size_t)r < sizeof(buf) ?
					    n + (size_t)r : sizeof(buf) - 1;
			}
			if (syslog_send(buf, n) == 0)
				return;
			buf[n++] = '\n';
			(void)!write(STDERR_FILENO, buf, n);
			return;
		}
		n = 0;
	}
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
