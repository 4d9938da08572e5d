/*
 * log.c: line-oriented logging to stderr, syslog or journald.
 *
 * Each record is formatted into one buffer and written with a single
 * write(2) so lines from several processes sharing stderr never
 * interleave. For syslog the record is one datagram on the syslog socket
 * ("<PRI>Mmm dd hh:mm:ss ident[pid]: text", RFC 3164 as syslog(3)
 * writes it); the socket is ours rather than syslog(3)'s so that its
 * path is a setting and a full socket never blocks. For journald the
 * record is one datagram of the native protocol (systemd's "Native
 * Journal Protocol": KEY=VALUE lines, a value holding a newline in the
 * length-prefixed form) with the fields log_journal_record() lists.
 * Written here rather than with libsystemd's sd_journal_send(): that
 * function has no way to name the socket (a setting here, like
 * syslog_socket, and how the tests reach a journald of their own), and
 * the protocol is these few lines.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
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
static int syslog_fd = -1;	/* syslog or journald, by log_journald */
static bool log_journald;
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

/* The pid in every line, asked of the kernel once per process (a
 * system call per line otherwise): forgotten in a child of fork(). */
static pid_t pid_cached;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void
pid_forget(void)
{
	__atomic_store_n(&pid_cached, 0, __ATOMIC_RELAXED);
}

static void
pid_watch_forks(void)
{
	(void)pthread_atfork(NULL, NULL, pid_forget);
}

static long
log_pid(void)
{
	pid_t p;

	pthread_once(&pid_once, pid_watch_forks);
	p = __atomic_load_n(&pid_cached, __ATOMIC_RELAXED);
	if (p == 0) {
		p = getpid();
		__atomic_store_n(&pid_cached, p, __ATOMIC_RELAXED);
	}
	return (long)p;
}

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

static int
open_socket(const char *key, const char *path, bool journald,
    const char **error_r)
{
	static char msg[300];
	int fd;

	if (strlen(path) >= sizeof(syslog_addr.sun_path)) {
		snprintf(msg, sizeof(msg), "%s %.200s: path too long", key,
		    path);
		*error_r = msg;
		return -1;
	}
	memset(&syslog_addr, 0, sizeof(syslog_addr));
	syslog_addr.sun_family = AF_UNIX;
	memcpy(syslog_addr.sun_path, path, strlen(path) + 1);
	fd = syslog_connect();
	if (fd < 0) {
		snprintf(msg, sizeof(msg), "%s %.200s: %s", key, path,
		    strerror(errno));
		*error_r = msg;
		return -1;
	}
	if (syslog_fd >= 0)
		close(syslog_fd);
	syslog_fd = fd;
	log_journald = journald;
	return 0;
}

int
log_open_syslog(const char *path, const char **error_r)
{
	return open_socket("syslog_socket", path, false, error_r);
}

int
log_open_journald(const char *path, const char **error_r)
{
	return open_socket("journald_socket", path, true, error_r);
}

/* One KEY=value field; a value with a newline in the binary-safe form
 * (KEY, newline, its length as 64-bit little-endian, the value). */
static size_t
jfield(char *buf, size_t size, size_t n, const char *key, const char *val,
    size_t len)
{
	size_t klen = strlen(key);

	if (memchr(val, '\n', len) == NULL) {
		if (n + klen + 1 + len + 1 > size)
			return n;
		memcpy(buf + n, key, klen);
		buf[n + klen] = '=';
		memcpy(buf + n + klen + 1, val, len);
		buf[n + klen + 1 + len] = '\n';
		return n + klen + 1 + len + 1;
	}
	if (n + klen + 1 + 8 + len + 1 > size)
		return n;
	memcpy(buf + n, key, klen);
	buf[n + klen] = '\n';
	for (int i = 0; i < 8; i++)
		buf[n + klen + 1 + i] = (char)(((uint64_t)len >> (8 * i)) &
		    0xff);
	memcpy(buf + n + klen + 9, val, len);
	buf[n + klen + 9 + len] = '\n';
	return n + klen + 9 + len + 1;
}

/* The value after tag in text, up to one of the stop characters; NULL
 * when absent. */
static const char *
jvalue(const char *text, const char *tag, const char *stop, size_t *len_r)
{
	const char *p = strstr(text, tag);

	if (p == NULL || (p != text && isalnum((unsigned char)p[-1])))
		return NULL;
	p += strlen(tag);
	*len_r = strcspn(p, stop);
	return *len_r > 0 ? p : NULL;
}

/* The address in the first "[...]" of text that holds only what an IPv4
 * or IPv6 address is made of. */
static const char *
jbracket_ip(const char *text, size_t *len_r)
{
	for (const char *p = strchr(text, '['); p != NULL;
	    p = strchr(p + 1, '[')) {
		size_t n = strspn(p + 1, "0123456789abcdefABCDEF.:");

		if (n > 0 && p[1 + n] == ']' && strpbrk(p + 1, ".:") != NULL &&
		    (size_t)(strpbrk(p + 1, ".:") - (p + 1)) < n) {
			*len_r = n;
			return p + 1;
		}
	}
	return NULL;
}

static bool
all_of(const char *p, size_t n, const char *set)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\0' || strchr(set, p[i]) == NULL)
			return false;
	return true;
}

size_t
log_journal_record(char *buf, size_t size, int priority, const char *ident,
    const char *service, long pid, const char *text)
{
	char num[32];
	const char *v;
	size_t n = 0, len;
	bool server = service != NULL && strcmp(service, "qmgr") != 0 &&
	    strcmp(service, "smtp") != 0 && strcmp(service, "virtual") != 0 &&
	    strcmp(service, "master") != 0 && strcmp(service, "auth") != 0;

	n = jfield(buf, size, n, "MESSAGE", text, strlen(text));
	snprintf(num, sizeof(num), "%d", priority);
	n = jfield(buf, size, n, "PRIORITY", num, strlen(num));
	n = jfield(buf, size, n, "SYSLOG_FACILITY", "2", 1);
	if (service != NULL) {
		char id[64];

		snprintf(id, sizeof(id), "petrel/%s", service);
		n = jfield(buf, size, n, "SYSLOG_IDENTIFIER", id, strlen(id));
		n = jfield(buf, size, n, "PROTOCOL", service, strlen(service));
	} else
		n = jfield(buf, size, n, "SYSLOG_IDENTIFIER", ident,
		    strlen(ident));
	snprintf(num, sizeof(num), "%ld", pid);
	n = jfield(buf, size, n, "SYSLOG_PID", num, strlen(num));
	/* "%016llx: " starts a session's lines, "%016llX: " a message's */
	if (strlen(text) > 18 && text[16] == ':' && text[17] == ' ') {
		if (all_of(text, 16, "0123456789abcdef"))
			n = jfield(buf, size, n, "SESSION_ID", text, 16);
		else if (all_of(text, 16, "0123456789ABCDEF"))
			n = jfield(buf, size, n, "QUEUE_ID", text, 16);
	}
	if ((v = jvalue(text, "client=", ", \t", &len)) != NULL) {
		const char *b = memchr(v, '[', len);
		const char *e = b != NULL ? memchr(b, ']', len - (size_t)(b - v)) :
		    NULL;

		if (b != NULL && e != NULL && e > b + 1) {
			v = b + 1;
			len = (size_t)(e - b - 1);
		}
		n = jfield(buf, size, n, "CLIENT", v, len);
	} else if (server && (v = jbracket_ip(text, &len)) != NULL)
		n = jfield(buf, size, n, "CLIENT", v, len);
	if ((v = jvalue(text, "user=<", ">", &len)) != NULL ||
	    (v = jvalue(text, "sasl_username=", ", \t", &len)) != NULL)
		n = jfield(buf, size, n, "USER", v, len);
	return n;
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
	if (syslog_fd >= 0 && log_journald) {
		char text[4096], rec[8192];
		size_t len;

		r = snprintf(text, sizeof(text), "%s%s",
		    level == LOG_LVL_INFO ? "" : level_names[level],
		    level == LOG_LVL_INFO ? "" : ": ");
		n = r > 0 ? (size_t)r : 0;
		r = vsnprintf(text + n, sizeof(text) - n, fmt, ap);
		if (r > 0)
			n = n + (size_t)r < sizeof(text) ? n + (size_t)r :
			    sizeof(text) - 1;
		if (errnum != 0 && n < sizeof(text) - 1)
			snprintf(text + n, sizeof(text) - n, ": %s",
			    strerror(errnum));
		n = log_journal_record(rec, sizeof(rec), severity[level],
		    log_ident, log_service, log_pid(), text);
		if (syslog_send(rec, n) == 0)
			return;
		r = snprintf(buf, sizeof(buf), "%s[%ld]: ", log_ident,
		    log_pid());
		n = r > 0 && (size_t)r < sizeof(buf) ? (size_t)r : 0;
		len = strlen(text);
		if (len > sizeof(buf) - n - 1)
			len = sizeof(buf) - n - 1;
		memcpy(buf + n, text, len);
		buf[n + len] = '\n';
		(void)!write(STDERR_FILENO, buf, n + len + 1);
		return;
	}
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
		    log_pid(), level == LOG_LVL_INFO ? "" :
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
	    log_pid(), level_names[level]);
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
